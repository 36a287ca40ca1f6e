/* override_c: run under LD_PRELOAD=libmimalloc.so, without linking the library. Every libc
 * allocation name must now be served by our allocator: the preloaded library's mi_usable_size
 * (found with dlsym) must agree with malloc_usable_size on each block, and its mi_free must
 * accept blocks from the libc names (and free() blocks from mi_malloc).
 *
 * Built with -fno-builtin so the compiler leaves the libc calls alone.
 * Prints "N passed, N failed"; exit 0 only when nothing failed, 77 (skip) when LD_PRELOAD is
 * unset, so that running it by hand says what it needs. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "../support/check.h"

typedef size_t usable_fn(const void*);
typedef void free_fn(void*);
typedef void* malloc_fn(size_t);

static usable_fn* mi_usable;
static free_fn* mi_free_p;
static malloc_fn* mi_malloc_p;
static malloc_fn* pvalloc_p;

static bool aligned(const void* p, size_t a) {
  return (uintptr_t)p % a == 0;
}

static bool all_zero(const void* p, size_t n) {
  const unsigned char* b = p;
  for (size_t i = 0; i < n; i++) {
    if (b[i] != 0) return false;
  }
  return true;
}

/* The block is ours, big enough, and writable throughout. */
static void check_ours(void* p, size_t size, const char* fn) {
  char what[128];
  snprintf(what, sizeof(what), "%s returned a block", fn);
  check(p != NULL, what, size);
  if (p == NULL) return;
  size_t mine = mi_usable(p), libc = malloc_usable_size(p);
  snprintf(what, sizeof(what), "%s: mi_usable_size == malloc_usable_size", fn);
  check(mine == libc, what, size);
  snprintf(what, sizeof(what), "%s: usable size covers the request", fn);
  check(mine >= size, what, size);
  memset(p, 0x3C, mine);
}

int main(void) {
  const char* where = "(not found)";
  mi_usable = (usable_fn*)dlsym(RTLD_DEFAULT, "mi_usable_size");
  mi_free_p = (free_fn*)dlsym(RTLD_DEFAULT, "mi_free");
  mi_malloc_p = (malloc_fn*)dlsym(RTLD_DEFAULT, "mi_malloc");
  /* pvalloc is glibc's: through dlsym, so that the program also links where libc lacks it
   * (musl) and the preloaded library provides it */
  pvalloc_p = (malloc_fn*)dlsym(RTLD_DEFAULT, "pvalloc");
  if (mi_usable == NULL || mi_free_p == NULL || mi_malloc_p == NULL || pvalloc_p == NULL) {
    const char* pre = getenv("LD_PRELOAD");
    if (pre == NULL || pre[0] == '\0') {
      printf("LD_PRELOAD is not set; skipping\n");
      return 77;
    }
    printf("FAIL: LD_PRELOAD=%s, but mi_usable_size/mi_free/mi_malloc/pvalloc are not visible\n", pre);
    printf("0 passed, 1 failed\n");
    return 1;
  }
  Dl_info info;
  void* malloc_def = dlsym(RTLD_DEFAULT, "malloc");
  if (malloc_def != NULL && dladdr(malloc_def, &info) != 0 && info.dli_fname != NULL) {
    where = info.dli_fname;
  }
  Dl_info mi_info;
  bool same_object = dladdr((void*)mi_malloc_p, &mi_info) != 0 && mi_info.dli_fname != NULL &&
                     strcmp(mi_info.dli_fname, where) == 0;
  printf("malloc is defined in %s\n", where);
  check(same_object, "malloc resolves to the object that defines mi_malloc", 0);
  if (!same_object) {
    printf("0 passed, %d failed\n", failed);
    return 1; /* the remaining checks would hand foreign blocks to mi_free */
  }
  const size_t ps = (size_t)sysconf(_SC_PAGESIZE);

  const size_t sizes[] = {0, 1, 8, 100, 1000, 5000, 70000, 600000, 5u << 20};
  for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
    size_t n = sizes[i];
    void* p = malloc(n);
    check_ours(p, n, "malloc");
    mi_free_p(p); /* a malloc block goes back through mi_free */

    p = calloc(n, 1);
    check_ours(p, 0, "calloc");
    free(p);
    p = calloc(1, n);
    check(p != NULL && all_zero(p, n), "calloc zeroes", n);
    free(p);

    p = malloc(n / 2 + 1);
    memset(p, 0x77, n / 2 + 1);
    void* q = realloc(p, n + 10);
    check_ours(q, n + 10, "realloc");
    q = realloc(q, n / 3 + 1);
    check_ours(q, n / 3 + 1, "realloc (shrink)");
    free(q);

    void* a = NULL;
    int rc = posix_memalign(&a, 256, n);
    check(rc == 0 && aligned(a, 256), "posix_memalign aligns", n);
    if (n > 0 || a != NULL) check_ours(a, n, "posix_memalign");
    mi_free_p(a);

    a = aligned_alloc(64, n);
    check(aligned(a, 64), "aligned_alloc aligns", n);
    check_ours(a, n, "aligned_alloc");
    free(a);

    a = memalign(4096, n);
    check(aligned(a, 4096), "memalign aligns", n);
    check_ours(a, n, "memalign");
    free(a);

    a = valloc(n);
    check(aligned(a, ps), "valloc is page aligned", n);
    check_ours(a, n, "valloc");
    free(a);

    a = pvalloc_p(n);
    check(aligned(a, ps), "pvalloc is page aligned", n);
    check_ours(a, (n + ps - 1) / ps * ps, "pvalloc (rounded to pages)");
    free(a);

    a = mi_malloc_p(n); /* and an mi_malloc block goes back through free */
    check_ours(a, n, "mi_malloc");
    free(a);
  }

  void* sentinel = (void*)(uintptr_t)0x1000;
  void* out = sentinel;
  check(posix_memalign(&out, 24, 16) == EINVAL && out == sentinel,
        "posix_memalign rejects alignment 24 and leaves the pointer", 24);
  check(malloc_usable_size(NULL) == 0, "malloc_usable_size(NULL) == 0", 0);
  free(NULL);

  char* s = strdup("strdup goes through the overridden malloc");
  check_ours(s, strlen(s) + 1, "strdup");
  mi_free_p(s);

  printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
