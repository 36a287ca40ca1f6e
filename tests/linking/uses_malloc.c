/* Links against libmimalloc statically (the archive or mimalloc.o) and checks that plain
 * malloc/free/realloc/strdup and the glibc introspection calls land in our allocator (mallinfo2
 * and mallopt where the C library declares them: glibc; musl has neither). */
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mimalloc.h"

/* glibc's, exported by the library in every ELF build; musl's headers do not declare it */
int malloc_trim(size_t pad);

static int failed, checks;
#define CHECK(c)                                               \
  do {                                                         \
    checks++;                                                  \
    if (!(c)) {                                                \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #c); \
      failed++;                                                \
    }                                                          \
  } while (0)

/* Allocation from another constructor, possibly before the library's own has run. */
static int early_ok;
__attribute__((constructor(101))) static void early_allocation(void) {
  char* e = malloc(4000);
  if (e == NULL) return;
  memset(e, 1, 4000);
  early_ok = mi_is_in_heap_region(e);
  free(e);
}

int main(void) {
  CHECK(early_ok);
  char* p = malloc(100);
  if (p == NULL) return 1;
  strcpy(p, "static override");
  CHECK(mi_is_in_heap_region(p));
  char* q = strdup(p); /* glibc's strdup calls malloc: ours */
  CHECK(q != NULL && mi_is_in_heap_region(q) && strcmp(q, p) == 0);
  p = realloc(p, 100000);
  CHECK(p != NULL && mi_is_in_heap_region(p) && strcmp(p, "static override") == 0);
  void* a = NULL;
  CHECK(posix_memalign(&a, 4096, 10) == 0 && ((uintptr_t)a % 4096) == 0 && mi_is_in_heap_region(a));
  CHECK(malloc_usable_size(q) == mi_usable_size(q));
  free(a);
  free(q);
  free(p);
  /* A freed 64 MiB block waits for its purge delay (set long by the test's environment);
   * malloc_trim purges it now and says so. */
  char* big = malloc(64 << 20);
  if (big == NULL) return 1;
  memset(big, 1, 64 << 20);
  free(big);
  CHECK(malloc_trim(0) == 1);
#ifdef __GLIBC__
  struct mallinfo2 mi = mallinfo2();
  CHECK(mi.arena > 0);
  CHECK(mallopt(M_MMAP_THRESHOLD, 1 << 20) == 1);
#endif
  printf("%d passed, %d failed\n", checks - failed, failed);
  return failed ? 1 : 0;
}
