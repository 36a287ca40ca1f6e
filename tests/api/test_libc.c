/* The libc allocation names exported by the shared library (facts 1.13 and 3). This program is
 * linked with libmimalloc.so, which the linker places before libc, so every malloc, free,
 * posix_memalign, ... in the process resolves to ours. The group setup first proves that (the
 * names live in the same object as mi_malloc); then the tests check the POSIX/glibc semantics
 * and that blocks cross freely between the libc names and the mi_ API.
 *
 * Built with -fno-builtin so the compiler does not reason about malloc or calloc itself. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <setjmp.h>
#include <cmocka.h>

#include "mimalloc.h"

/* glibc's, exported by the library; musl's headers do not declare it */
void* pvalloc(size_t size);

#define KiB ((size_t)1024)
#define MiB (KiB * KiB)

static volatile size_t v_size_max = SIZE_MAX;
static volatile size_t v_half_plus_one = SIZE_MAX / 2 + 1;

static size_t page_size(void) {
  return (size_t)sysconf(_SC_PAGESIZE);
}

static int is_aligned(const void* p, size_t alignment) {
  return ((uintptr_t)p % alignment) == 0;
}

static size_t first_nonzero(const void* p, size_t n) {
  const unsigned char* b = p;
  for (size_t i = 0; i < n; i++) {
    if (b[i] != 0) return i;
  }
  return n;
}

/* A block from a libc name is ours: both usable-size functions agree, the size fits, and the
 * whole usable area is writable. */
static void check_ours(void* p, size_t size, const char* fn) {
  if (p == NULL) fail_msg("%s(%zu) returned NULL", fn, size);
  size_t mine = mi_usable_size(p);
  size_t libc = malloc_usable_size(p);
  if (mine != libc)
    fail_msg("%s(%zu): mi_usable_size %zu != malloc_usable_size %zu", fn, size, mine, libc);
  if (mine < size) fail_msg("%s(%zu): usable size %zu", fn, size, mine);
  memset(p, 0x6B, mine);
}

static const char* object_of(void* addr) {
  Dl_info info;
  if (dladdr(addr, &info) == 0 || info.dli_fname == NULL) return "?";
  return info.dli_fname;
}

/* Runs before every test: without our malloc in place, the later checks would hand glibc
 * blocks to mi_free. dlsym(RTLD_DEFAULT) gives the definition the process resolved to (never a
 * PLT stub of this executable), and dladdr names the object that holds it. */
static int names_resolve_to_our_library(void** state) {
  (void)state;
  void* mi = dlsym(RTLD_DEFAULT, "mi_malloc");
  if (mi == NULL) {
    fprintf(stderr, "mi_malloc is not visible to dlsym\n");
    return -1;
  }
  char ours[4096];
  snprintf(ours, sizeof(ours), "%s", object_of(mi));
  const char* names[] = {"malloc",        "calloc",   "realloc", "free",    "posix_memalign",
                         "aligned_alloc", "memalign", "valloc",  "pvalloc", "malloc_usable_size"};
  for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
    void* addr = dlsym(RTLD_DEFAULT, names[i]);
    const char* where = addr == NULL ? "(nowhere)" : object_of(addr);
    if (strcmp(where, ours) != 0) {
      fprintf(stderr, "%s resolves to %s, not to %s (where mi_malloc is)\n", names[i], where, ours);
      return -1;
    }
  }
  return 0;
}

/* ---- posix_memalign ------------------------------------------------------------------------- */

static void test_posix_memalign_rejects_bad_alignment_and_leaves_pointer_untouched(void** state) {
  (void)state;
  /* 0; not powers of two; powers of two below sizeof(void*) */
  const size_t bad[] = {0, 3, 24, 1, 2, sizeof(void*) / 2, 12, 48, 4097, 3 * 4096};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    void* sentinel = (void*)(uintptr_t)0xDEADBEE0u;
    void* out = sentinel;
    int rc = posix_memalign(&out, bad[i], 64);
    if (rc != EINVAL)
      fail_msg("posix_memalign(align %zu) returned %d, expected EINVAL", bad[i], rc);
    assert_ptr_equal(out, sentinel);
  }
}

static void test_posix_memalign_returns_aligned_blocks(void** state) {
  (void)state;
  for (size_t align = sizeof(void*); align <= 32 * MiB; align *= 2) {
    const size_t sizes[] = {1, align - 1, align, align + 1, 100 * KiB};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
      void* p = NULL;
      int rc = posix_memalign(&p, align, sizes[i]);
      if (rc != 0) fail_msg("posix_memalign(align %zu, size %zu) = %d", align, sizes[i], rc);
      if (!is_aligned(p, align)) fail_msg("posix_memalign(align %zu) = %p", align, p);
      check_ours(p, sizes[i], "posix_memalign");
      free(p);
    }
  }
  void* p = (void*)1; /* size 0 succeeds with NULL or a freeable block */
  assert_int_equal(posix_memalign(&p, 64, 0), 0);
  free(p);
}

static void test_posix_memalign_reports_enomem_for_impossible_size(void** state) {
  (void)state;
  void* sentinel = (void*)(uintptr_t)0xDEADBEE0u;
  void* out = sentinel;
  assert_int_equal(posix_memalign(&out, 64, v_size_max), ENOMEM);
  assert_ptr_equal(out, sentinel);
}

/* ---- the other aligned names ------------------------------------------------------------- */

static void test_aligned_alloc_returns_aligned_blocks(void** state) {
  (void)state;
  for (size_t align = 1; align <= 16 * MiB; align *= 2) {
    const size_t sizes[] = {align, 2 * align, 100 * KiB};
    for (size_t i = 0; i < 3; i++) {
      void* p = aligned_alloc(align, sizes[i]);
      if (!is_aligned(p, align)) fail_msg("aligned_alloc(%zu, %zu) = %p", align, sizes[i], p);
      check_ours(p, sizes[i], "aligned_alloc");
      free(p);
    }
  }
  void* p = aligned_alloc(64, 100); /* the size need not be a multiple of the alignment */
  assert_true(is_aligned(p, 64));
  check_ours(p, 100, "aligned_alloc");
  free(p);
}

static void test_memalign_returns_aligned_blocks(void** state) {
  (void)state;
  for (size_t align = 8; align <= 16 * MiB; align *= 2) {
    const size_t sizes[] = {1, align + 1, 70 * KiB};
    for (size_t i = 0; i < 3; i++) {
      void* p = memalign(align, sizes[i]);
      if (!is_aligned(p, align)) fail_msg("memalign(%zu, %zu) = %p", align, sizes[i], p);
      check_ours(p, sizes[i], "memalign");
      free(p);
    }
  }
}

static void test_valloc_returns_page_aligned_blocks(void** state) {
  (void)state;
  const size_t sizes[] = {1, 100, 4095, 4096, 4097, 100 * KiB, 3 * MiB};
  for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
    void* p = valloc(sizes[i]);
    if (!is_aligned(p, page_size())) fail_msg("valloc(%zu) = %p", sizes[i], p);
    check_ours(p, sizes[i], "valloc");
    free(p);
  }
}

static void test_pvalloc_rounds_size_up_to_whole_pages(void** state) {
  (void)state;
  const size_t ps = page_size();
  const size_t sizes[] = {1, 100, ps - 1, ps, ps + 1, 100 * KiB + 3, 3 * MiB + 5};
  for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
    size_t rounded = (sizes[i] + ps - 1) / ps * ps;
    void* p = pvalloc(sizes[i]);
    if (!is_aligned(p, ps)) fail_msg("pvalloc(%zu) = %p", sizes[i], p);
    check_ours(p, rounded, "pvalloc"); /* the whole rounded size is usable */
    free(p);
  }
}

/* ---- malloc_usable_size and crossing between the two APIs ----------------------------------- */

static void test_malloc_usable_size_agrees_with_mi_usable_size(void** state) {
  (void)state;
  assert_int_equal(malloc_usable_size(NULL), 0);
  for (size_t sz = 0; sz <= 70 * KiB; sz = sz * 3 / 2 + 1) {
    void* p = malloc(sz);
    check_ours(p, sz, "malloc");
    free(p);
    p = calloc(1, sz);
    check_ours(p, sz, "calloc");
    free(p);
  }
  void* p = malloc(5 * MiB);
  check_ours(p, 5 * MiB, "malloc");
  p = realloc(p, 9 * MiB);
  check_ours(p, 9 * MiB, "realloc");
  free(p);
}

static void test_blocks_cross_between_libc_names_and_mi_api(void** state) {
  (void)state;
  for (size_t sz = 1; sz <= 4 * MiB; sz *= 5) {
    void* p = malloc(sz); /* libc name -> mi_free */
    check_ours(p, sz, "malloc");
    mi_free(p);
    p = mi_malloc(sz); /* mi_ API -> free */
    check_ours(p, sz, "mi_malloc");
    free(p);
    p = mi_malloc(sz); /* mi_ API -> realloc -> mi_realloc -> free */
    memset(p, 0x11, sz);
    p = realloc(p, sz * 2);
    check_ours(p, sz * 2, "realloc");
    p = mi_realloc(p, sz + 3);
    check_ours(p, sz + 3, "mi_realloc");
    free(p);
    void* q = NULL;
    assert_int_equal(posix_memalign(&q, 256, sz), 0);
    mi_free(q);
    q = mi_malloc_aligned(sz, 4096);
    free(q);
  }
  char* s = strdup("libc strdup allocates through malloc"); /* glibc's strdup calls our malloc */
  assert_non_null(s);
  assert_int_equal(mi_usable_size(s), malloc_usable_size(s));
  mi_free(s);
}

static void test_calloc_zeroes_reused_dirty_memory(void** state) {
  (void)state;
  const size_t sizes[] = {16, 200, 3000, 40 * KiB, 300 * KiB, 5 * MiB};
  for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
    void* ps[16];
    for (int k = 0; k < 16; k++) {
      ps[k] = malloc(sizes[i]);
      assert_non_null(ps[k]);
      memset(ps[k], 0xFF, sizes[i]);
    }
    for (int k = 0; k < 16; k++) free(ps[k]);
    for (int k = 0; k < 16; k++) {
      ps[k] = calloc(sizes[i], 1);
      assert_non_null(ps[k]);
      if (first_nonzero(ps[k], sizes[i]) != sizes[i]) fail_msg("calloc(%zu) not zeroed", sizes[i]);
    }
    for (int k = 0; k < 16; k++) free(ps[k]);
  }
}

static void test_calloc_and_malloc_overflow_return_null_with_enomem(void** state) {
  (void)state;
  errno = 0;
  assert_null(calloc(v_half_plus_one, 2));
  assert_int_equal(errno, ENOMEM);
  errno = 0;
  assert_null(malloc(v_size_max));
  assert_int_equal(errno, ENOMEM);
  void* p = malloc(10);
  assert_non_null(p);
  errno = 0;
  assert_null(realloc(p, v_size_max)); /* and p survives */
  assert_int_equal(errno, ENOMEM);
  free(p);
}

int main(void) {
#define T(f) cmocka_unit_test_setup(f, names_resolve_to_our_library)
  const struct CMUnitTest tests[] = {
      T(test_posix_memalign_rejects_bad_alignment_and_leaves_pointer_untouched),
      T(test_posix_memalign_returns_aligned_blocks),
      T(test_posix_memalign_reports_enomem_for_impossible_size),
      T(test_aligned_alloc_returns_aligned_blocks),
      T(test_memalign_returns_aligned_blocks),
      T(test_valloc_returns_page_aligned_blocks),
      T(test_pvalloc_rounds_size_up_to_whole_pages),
      T(test_malloc_usable_size_agrees_with_mi_usable_size),
      T(test_blocks_cross_between_libc_names_and_mi_api),
      T(test_calloc_zeroes_reused_dirty_memory),
      T(test_calloc_and_malloc_overflow_return_null_with_enomem),
  };
#undef T
  return cmocka_run_group_tests(tests, NULL, NULL);
}
