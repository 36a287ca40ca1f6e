/* Integration tests of the public API: this file sees only <mimalloc.h> and links the static
 * library. Each test asserts a documented property (header comments and the v2 facts, sections
 * 1.1, 1.2, 1.5 and 4.2), not an implementation detail; where a property is only guaranteed
 * for part of the size range (usable size versus mi_good_size) the test says so.
 *
 * Sizes that would trip the compiler's alloc_size checks are read through volatile variables
 * so that the calls really reach the allocator. */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
/* cmocka after the standard headers it expects; UNIT_TESTING stays undefined on purpose. */
#include <cmocka.h>

#include "mimalloc.h"
#include "patterns.h"

#define KiB ((size_t)1024)
#define MiB (KiB * KiB)

/* Values the compiler must not see as constants (see the note at the top). */
static volatile size_t v_size_max = SIZE_MAX;
static volatile size_t v_half_plus_one = SIZE_MAX / 2 + 1;
/* 2^(half the word): its square is the first product that overflows a size_t */
static volatile size_t v_two_pow_half_word = (size_t)1 << (4 * sizeof(size_t));
/* A size below the overflow limits that no address space here can hold: 2^60 on 64-bit
 * targets; on 32-bit ones 3.75 GiB, which only the PTRDIFF_MAX bound stops */
static volatile size_t v_unmappable = SIZE_MAX > UINT32_MAX ? (size_t)(1ULL << 60)
                                                            : (size_t)0xF0000000u;
static volatile size_t v_ptrdiff_max = PTRDIFF_MAX;

/* The size-class sizes up to 64 KiB (facts 4.2), smallest first. */
static const size_t size_classes[] = {
    8,     16,    32,    48,    64,    80,    96,    112,   128,   160,   192,   224,
    256,   320,   384,   448,   512,   640,   768,   896,   1024,  1280,  1536,  1792,
    2048,  2560,  3072,  3584,  4096,  5120,  6144,  7168,  8192,  10240, 12288, 14336,
    16384, 20480, 24576, 28672, 32768, 40960, 49152, 57344, 65536,
};
#define N_CLASSES (sizeof(size_classes) / sizeof(size_classes[0]))

/* ---- helpers ------------------------------------------------------------------------------ */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rng_next(void) {
  /* xorshift64*: deterministic, so a failing run can be repeated. */
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * 2685821657736338717ull;
}


/* Index of the first nonzero byte, or n when all are zero. */
static size_t first_nonzero(const void* p, size_t n) {
  const uint8_t* b = p;
  for (size_t i = 0; i < n; i++) {
    if (b[i] != 0) return i;
  }
  return n;
}

static bool is_aligned(const void* p, size_t alignment) {
  return ((uintptr_t)p % alignment) == 0;
}

/* The guaranteed minimum alignment of a plain block: 16 bytes (MI_MAX_ALIGN_SIZE), except that
 * requests of at most 8 bytes land in the 8-byte class (facts 4.2), whose blocks are only
 * 8-byte aligned -- still enough for any object that fits. */
static size_t min_alignment(size_t requested) {
  return requested <= 8 ? 8 : 16;
}

static int compare_pointers(const void* a, const void* b) {
  uintptr_t x = (uintptr_t) * (void*const*)a, y = (uintptr_t) * (void*const*)b;
  return (x > y) - (x < y);
}

/* Writes every usable byte, then checks the first and last requested ones read back. */
static void touch_block(void* p, size_t requested) {
  size_t usable = mi_usable_size(p);
  memset(p, 0xA5, usable);
  if (requested > 0) {
    assert_int_equal(((uint8_t*)p)[0], 0xA5);
    assert_int_equal(((uint8_t*)p)[requested - 1], 0xA5);
  }
}

/* The smallest documented class that holds n (n <= 64 KiB). */
static size_t class_for(size_t n) {
  for (size_t i = 0; i < N_CLASSES; i++) {
    if (size_classes[i] >= n) return size_classes[i];
  }
  return 0;
}

/* ---- malloc, free, usable size ------------------------------------------------------------- */

static void test_malloc_zero_returns_unique_non_null_blocks(void** state) {
  (void)state;
  enum { N = 1000 };
  void* ps[N];
  for (int i = 0; i < N; i++) {
    ps[i] = mi_malloc(0);
    assert_non_null(ps[i]);
    assert_true(is_aligned(ps[i], min_alignment(0)));
  }
  qsort(ps, N, sizeof(ps[0]), compare_pointers);
  for (int i = 1; i < N; i++) assert_ptr_not_equal(ps[i - 1], ps[i]);
  for (int i = 0; i < N; i++) mi_free(ps[i]);
}

static void test_free_null_is_a_noop(void** state) {
  (void)state;
  mi_free(NULL);
  mi_free(NULL);
  assert_int_equal(mi_usable_size(NULL), 0);
  void* p = mi_malloc(32); /* the allocator still works afterwards */
  assert_non_null(p);
  mi_free(p);
}

/* Requests at, just below and just above every class, and then a ladder of large sizes up to
 * 64 MiB: each must come back aligned (16 bytes above 8) with at least the requested usable
 * bytes, every one of them writable. */
static void test_malloc_every_size_class_is_writable_and_aligned(void** state) {
  (void)state;
  size_t sizes[3 * N_CLASSES + 32];
  size_t n = 0;
  for (size_t i = 0; i < N_CLASSES; i++) {
    sizes[n++] = size_classes[i] - 1;
    sizes[n++] = size_classes[i];
    sizes[n++] = size_classes[i] + 1;
  }
  const size_t large[] = {100 * KiB,     128 * KiB, 256 * KiB,    512 * KiB - 1, 512 * KiB,
                          512 * KiB + 1, 1 * MiB,   2 * MiB - 1,  3000000,       4 * MiB,
                          8 * MiB + 1,   16 * MiB,  16 * MiB + 1, 32 * MiB - 1,  32 * MiB,
                          32 * MiB + 1,  48 * MiB,  64 * MiB};
  for (size_t i = 0; i < sizeof(large) / sizeof(large[0]); i++) sizes[n++] = large[i];

  for (size_t i = 0; i < n; i++) {
    size_t sz = sizes[i];
    void* p = mi_malloc(sz);
    if (p == NULL) fail_msg("mi_malloc(%zu) returned NULL", sz);
    if (!is_aligned(p, min_alignment(sz))) {
      fail_msg("mi_malloc(%zu) = %p is not %zu-byte aligned", sz, p, min_alignment(sz));
    }
    if (mi_usable_size(p) < sz) {
      fail_msg("mi_usable_size(mi_malloc(%zu)) = %zu", sz, mi_usable_size(p));
    }
    touch_block(p, sz);
    mi_free(p);
  }
}

/* mi_good_size is "the usable size a request would get"; for the binned sizes (<= 64 KiB) a
 * block is never larger than its class (padding builds may make it smaller), and never smaller
 * than the request. */
static void test_usable_size_is_between_request_and_good_size_up_to_64k(void** state) {
  (void)state;
  for (size_t sz = 1; sz <= 64 * KiB; sz++) {
    void* p = mi_malloc(sz);
    assert_non_null(p);
    size_t usable = mi_usable_size(p);
    if (usable < sz || usable > mi_good_size(sz)) {
      fail_msg("size %zu: usable %zu, good size %zu", sz, usable, mi_good_size(sz));
    }
    mi_free(p);
  }
}

/* Above 64 KiB only the request is a lower bound: huge blocks may be rounded further. */
static void test_usable_size_covers_request_above_64k(void** state) {
  (void)state;
  const size_t sizes[] = {64 * KiB + 1, 65537, 69632, 100000, 3000000, 16 * MiB + 1};
  for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
    void* p = mi_malloc(sizes[i]);
    assert_non_null(p);
    assert_true(mi_usable_size(p) >= sizes[i]);
    mi_free(p);
  }
}

/* ---- mi_good_size -------------------------------------------------------------------------- */

static void test_good_size_documented_values(void** state) {
  (void)state;
  assert_int_equal(mi_good_size(65537), 69632);
  assert_int_equal(mi_good_size(3000000), 3002368);
}

static void test_good_size_matches_the_documented_classes_up_to_64k(void** state) {
  (void)state;
  for (size_t i = 0; i < N_CLASSES; i++) {
    if (mi_good_size(size_classes[i]) != size_classes[i]) {
      fail_msg("mi_good_size(%zu) = %zu, expected the class itself", size_classes[i],
               mi_good_size(size_classes[i]));
    }
  }
  for (size_t sz = 1; sz <= 64 * KiB; sz++) {
    if (mi_good_size(sz) != class_for(sz)) {
      fail_msg("mi_good_size(%zu) = %zu, expected class %zu", sz, mi_good_size(sz), class_for(sz));
    }
  }
}

static void test_good_size_rounds_to_4k_pages_above_64k(void** state) {
  (void)state;
  for (size_t sz = 64 * KiB + 1; sz <= 4 * MiB; sz += 4093) {
    size_t expected = (sz + 4095) & ~(size_t)4095;
    if (mi_good_size(sz) != expected) {
      fail_msg("mi_good_size(%zu) = %zu, expected %zu", sz, mi_good_size(sz), expected);
    }
  }
  assert_int_equal(mi_good_size(64 * MiB), 64 * MiB);
  assert_int_equal(mi_good_size(64 * MiB + 1), 64 * MiB + 4096);
}

/* ---- calloc and the zeroing allocators ------------------------------------------------------ */

static const size_t zero_sizes[] = {1,         8,         24,      100,     1000,
                                    1024,      4000,      8 * KiB, 10000,   64 * KiB,
                                    100 * KiB, 600 * KiB, 3 * MiB, 17 * MiB};
#define N_ZERO_SIZES (sizeof(zero_sizes) / sizeof(zero_sizes[0]))

static void test_calloc_returns_zeroed_memory(void** state) {
  (void)state;
  for (size_t i = 0; i < N_ZERO_SIZES; i++) {
    size_t sz = zero_sizes[i];
    uint8_t* p = mi_calloc(1, sz);
    assert_non_null(p);
    if (first_nonzero(p, sz) != sz)
      fail_msg("mi_calloc(1,%zu): byte %zu is nonzero", sz, first_nonzero(p, sz));
    mi_free(p);
    p = mi_calloc(sz, 1);
    assert_non_null(p);
    assert_int_equal(first_nonzero(p, sz), sz);
    mi_free(p);
  }
}

typedef void* (*zero_alloc_fn)(size_t size);

static void* calloc_one(size_t size) {
  return mi_calloc(1, size);
}
static void* calloc_bytes(size_t size) {
  return mi_calloc(size, 1);
}
static void* zalloc(size_t size) {
  return mi_zalloc(size);
}
static void* calloc_aligned_64(size_t size) {
  return mi_calloc_aligned(1, size, 64);
}
static void* zalloc_aligned_4k(size_t size) {
  return mi_zalloc_aligned(size, 4096);
}

/* Dirty many blocks of a size, free them, then allocate the same size zeroed: the freed
 * (dirty, likely reused) memory must come back zero. */
static void check_zeroing_after_dirty_reuse(zero_alloc_fn zero_alloc, const char* name) {
  enum { N = 48 };
  void* ps[N];
  for (size_t i = 0; i < N_ZERO_SIZES; i++) {
    size_t sz = zero_sizes[i];
    size_t count = sz >= MiB ? 3 : N;
    for (int round = 0; round < 3; round++) {
      for (size_t k = 0; k < count; k++) {
        ps[k] = mi_malloc(sz);
        assert_non_null(ps[k]);
        memset(ps[k], 0xFF, mi_usable_size(ps[k]));
      }
      for (size_t k = 0; k < count; k++) mi_free(ps[k]);
      for (size_t k = 0; k < count; k++) {
        ps[k] = zero_alloc(sz);
        assert_non_null(ps[k]);
        size_t nz = first_nonzero(ps[k], sz);
        if (nz != sz) fail_msg("%s(%zu): byte %zu of a reused block is nonzero", name, sz, nz);
      }
      for (size_t k = 0; k < count; k++) mi_free(ps[k]);
    }
  }
}

static void test_calloc_zeroes_reused_dirty_memory(void** state) {
  (void)state;
  check_zeroing_after_dirty_reuse(calloc_one, "mi_calloc(1,n)");
  check_zeroing_after_dirty_reuse(calloc_bytes, "mi_calloc(n,1)");
}

static void test_zalloc_zeroes_reused_dirty_memory(void** state) {
  (void)state;
  check_zeroing_after_dirty_reuse(zalloc, "mi_zalloc");
}

static void test_calloc_aligned_zeroes_reused_dirty_memory(void** state) {
  (void)state;
  check_zeroing_after_dirty_reuse(calloc_aligned_64, "mi_calloc_aligned(.,64)");
  check_zeroing_after_dirty_reuse(zalloc_aligned_4k, "mi_zalloc_aligned(.,4096)");
}

static void test_calloc_overflow_returns_null_with_enomem(void** state) {
  (void)state;
  const size_t pairs[][2] = {{v_half_plus_one, 2},
                             {2, v_half_plus_one},
                             {v_size_max, v_size_max},
                             {v_two_pow_half_word, v_two_pow_half_word},
                             {v_size_max, 2}};
  for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
    errno = 0;
    void* p = mi_calloc(pairs[i][0], pairs[i][1]);
    if (p != NULL) fail_msg("mi_calloc(%zu,%zu) did not fail", pairs[i][0], pairs[i][1]);
    assert_int_equal(errno, ENOMEM);
  }
}

static void test_mallocn_overflow_returns_null_with_enomem(void** state) {
  (void)state;
  errno = 0;
  assert_null(mi_mallocn(v_half_plus_one, 2));
  assert_int_equal(errno, ENOMEM);
  errno = 0;
  assert_null(mi_mallocn(v_two_pow_half_word, v_two_pow_half_word));
  assert_int_equal(errno, ENOMEM);
  void* p = mi_mallocn(100, 8); /* and the non-overflowing product works */
  assert_non_null(p);
  assert_true(mi_usable_size(p) >= 800);
  touch_block(p, 800);
  mi_free(p);
}

static void test_malloc_impossible_size_returns_null_with_enomem(void** state) {
  (void)state;
  /* (PTRDIFF_MAX is 2 GiB - 1 on a 32-bit target, which a 32-bit process can be given) */
  const size_t sizes[] = {v_size_max, v_size_max - 4096, v_half_plus_one,
                          sizeof(void*) == 8 ? v_ptrdiff_max : v_half_plus_one,
                          v_unmappable};
  for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
    /* (PTRDIFF_MAX bytes fit a 32-bit address space: wasm32's memory grows to 4 GiB) */
    if (sizes[i] == v_ptrdiff_max && SIZE_MAX <= UINT32_MAX) continue;
    errno = 0;
    void* p = mi_malloc(sizes[i]);
    if (p != NULL) fail_msg("mi_malloc(%zu) did not fail", sizes[i]);
    assert_int_equal(errno, ENOMEM);
  }
  errno = 0;
  assert_null(mi_zalloc(v_size_max));
  assert_int_equal(errno, ENOMEM);
}

/* ---- realloc family ----------------------------------------------------------------------- */

static void test_realloc_grows_and_shrinks_preserving_content(void** state) {
  (void)state;
  const size_t ladder[] = {1,        7,        16,       100,      1000,      4096,
                           8 * KiB,  60 * KiB, 64 * KiB, 65 * KiB, 300 * KiB, 1 * MiB,
                           5 * MiB,  17 * MiB, 64 * MiB, 20 * MiB, 2 * MiB,   100 * KiB,
                           64 * KiB, 9 * KiB,  500,      33,       8,         1};
  const uint64_t seed = 0xC0FFEE;
  size_t cur = ladder[0];
  uint8_t* p = mi_realloc(NULL, cur);
  assert_non_null(p);
  fill_pattern(p, cur, seed);
  for (size_t i = 1; i < sizeof(ladder) / sizeof(ladder[0]); i++) {
    size_t next = ladder[i];
    uint8_t* q = mi_realloc(p, next);
    if (q == NULL) fail_msg("mi_realloc(%zu -> %zu) failed", cur, next);
    assert_true(is_aligned(q, min_alignment(next)));
    assert_true(mi_usable_size(q) >= next);
    size_t keep = cur < next ? cur : next;
    size_t bad = check_pattern(q, keep, seed);
    if (bad != keep) fail_msg("mi_realloc(%zu -> %zu) lost byte %zu", cur, next, bad);
    fill_pattern(q, next, seed); /* the whole new block carries the pattern now */
    p = q;
    cur = next;
  }
  mi_free(p);
}

static void test_realloc_null_acts_as_malloc(void** state) {
  (void)state;
  void* p = mi_realloc(NULL, 200);
  assert_non_null(p);
  assert_true(mi_usable_size(p) >= 200);
  touch_block(p, 200);
  mi_free(p);
  p = mi_realloc(NULL, 0);
  assert_non_null(p);
  mi_free(p);
}

/* Upstream v2.4: realloc(p, 0) frees p and returns a fresh minimal block, never NULL. */
static void test_realloc_to_zero_returns_freeable_minimal_block(void** state) {
  (void)state;
  const size_t sizes[] = {1, 100, 5000, 200 * KiB, 3 * MiB};
  for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
    void* p = mi_malloc(sizes[i]);
    assert_non_null(p);
    memset(p, 0x5A, sizes[i]);
    void* q = mi_realloc(p, 0);
    assert_non_null(q);
    assert_true(is_aligned(q, min_alignment(0)));
    mi_free(q);
  }
}

static void test_realloc_failure_returns_null_and_keeps_block(void** state) {
  (void)state;
  uint8_t* p = mi_malloc(300);
  assert_non_null(p);
  fill_pattern(p, 300, 77);
  errno = 0;
  assert_null(mi_realloc(p, v_size_max));
  assert_int_equal(errno, ENOMEM);
  assert_int_equal(check_pattern(p, 300, 77), 300);
  errno = 0;
  assert_null(mi_realloc(p, v_unmappable));
  assert_int_equal(errno, ENOMEM);
  assert_int_equal(check_pattern(p, 300, 77), 300);
  mi_free(p);
}

static void test_reallocf_frees_block_and_returns_null_on_failure(void** state) {
  (void)state;
  for (int i = 0; i < 1000; i++) { /* a leak per iteration would be visible under a checker */
    void* p = mi_malloc(64 + (size_t)i);
    assert_non_null(p);
    errno = 0;
    assert_null(mi_reallocf(p, v_size_max));
    assert_int_equal(errno, ENOMEM);
  }
  uint8_t* p = mi_malloc(10); /* and the success path behaves like realloc */
  assert_non_null(p);
  fill_pattern(p, 10, 5);
  p = mi_reallocf(p, 100000);
  assert_non_null(p);
  assert_int_equal(check_pattern(p, 10, 5), 10);
  mi_free(p);
}

static void test_reallocn_overflow_returns_null_and_keeps_block(void** state) {
  (void)state;
  uint8_t* p = mi_malloc(50);
  assert_non_null(p);
  fill_pattern(p, 50, 9);
  errno = 0;
  assert_null(mi_reallocn(p, v_half_plus_one, 2));
  assert_int_equal(errno, ENOMEM);
  errno = 0;
  assert_null(mi_reallocn(p, v_two_pow_half_word, v_two_pow_half_word));
  assert_int_equal(errno, ENOMEM);
  assert_int_equal(check_pattern(p, 50, 9), 50);
  uint8_t* q = mi_reallocn(p, 1000, 16);
  assert_non_null(q);
  assert_true(mi_usable_size(q) >= 16000);
  assert_int_equal(check_pattern(q, 50, 9), 50);
  mi_free(q);
}

/* mi_expand never moves: p itself for any size the block already holds, NULL beyond. */
static void test_expand_succeeds_in_place_only_within_usable_size(void** state) {
  (void)state;
  const size_t sizes[] = {1, 40, 1000, 20 * KiB, 200 * KiB, 2 * MiB};
  for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
    uint8_t* p = mi_malloc(sizes[i]);
    assert_non_null(p);
    size_t usable = mi_usable_size(p);
    fill_pattern(p, sizes[i], 3);
    assert_ptr_equal(mi_expand(p, usable), p);
    assert_ptr_equal(mi_expand(p, sizes[i]), p);
    assert_ptr_equal(mi_expand(p, 1), p);
    assert_null(mi_expand(p, usable + 1));
    assert_null(mi_expand(p, usable + 64 * MiB));
    assert_int_equal(check_pattern(p, sizes[i], 3), sizes[i]);
    mi_free(p);
  }
}

/* ---- strings and paths -------------------------------------------------------------------- */

static void test_strdup_copies_string(void** state) {
  (void)state;
  char* s = mi_strdup("hello, allocator");
  assert_non_null(s);
  assert_string_equal(s, "hello, allocator");
  assert_true(mi_usable_size(s) >= sizeof("hello, allocator"));
  mi_free(s);
  s = mi_strdup("");
  assert_non_null(s);
  assert_string_equal(s, "");
  mi_free(s);
  char big[5000];
  memset(big, 'x', sizeof(big) - 1);
  big[sizeof(big) - 1] = '\0';
  s = mi_strdup(big);
  assert_non_null(s);
  assert_string_equal(s, big);
  mi_free(s);
  assert_null(mi_strdup(NULL));
}

static void test_strndup_truncates_and_terminates(void** state) {
  (void)state;
  char* s = mi_strndup("abcdefgh", 3);
  assert_non_null(s);
  assert_string_equal(s, "abc");
  mi_free(s);
  s = mi_strndup("abc", 100); /* n beyond the string: a full copy */
  assert_non_null(s);
  assert_string_equal(s, "abc");
  mi_free(s);
  s = mi_strndup("abc", 0);
  assert_non_null(s);
  assert_string_equal(s, "");
  mi_free(s);
  const char unterminated[4] = {'w', 'x', 'y', 'z'}; /* must not read past n */
  s = mi_strndup(unterminated, 4);
  assert_non_null(s);
  assert_string_equal(s, "wxyz");
  mi_free(s);
}

#if defined(_WIN32)
/* Windows: the C runtime's _fullpath, which does not look whether the path exists. */
#define realpath(name, buf) _fullpath(buf, name, PATH_MAX)
#endif

static void test_realpath_matches_libc_realpath(void** state) {
  (void)state;
  const char* paths[] = {"/tmp", "/", "/usr/../tmp/", "."};
  for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
    char expected[PATH_MAX];
    assert_non_null(realpath(paths[i], expected)); /* a caller buffer: no libc allocation */
    char* ours = mi_realpath(paths[i], NULL);
    assert_non_null(ours);
    assert_string_equal(ours, expected);
    assert_true(mi_usable_size(ours) > strlen(expected));
    mi_free(ours);
    char buf[PATH_MAX];
    assert_ptr_equal(mi_realpath(paths[i], buf), buf);
    assert_string_equal(buf, expected);
  }
#if !defined(_WIN32)
  errno = 0;
  assert_null(mi_realpath("/nonexistent-dir-for-lm-tests/x", NULL));
  assert_int_equal(errno, ENOENT);
#endif
}

/* ---- small and zeroing entry points --------------------------------------------------------- */

static void test_malloc_small_serves_every_small_size(void** state) {
  (void)state;
  void* ps[MI_SMALL_SIZE_MAX + 1];
  for (size_t sz = 0; sz <= MI_SMALL_SIZE_MAX; sz++) {
    ps[sz] = mi_malloc_small(sz);
    assert_non_null(ps[sz]);
    assert_true(is_aligned(ps[sz], min_alignment(sz)));
    assert_true(mi_usable_size(ps[sz]) >= sz);
    fill_pattern(ps[sz], sz, sz);
  }
  for (size_t sz = 0; sz <= MI_SMALL_SIZE_MAX; sz++) {
    assert_int_equal(check_pattern(ps[sz], sz, sz), sz);
    mi_free(ps[sz]);
  }
}

static void test_zalloc_small_returns_zeroed_memory_even_when_reused(void** state) {
  (void)state;
  for (size_t sz = 0; sz <= MI_SMALL_SIZE_MAX; sz += (sz < 64 ? 1 : 24)) {
    void* dirty[16];
    for (int k = 0; k < 16; k++) {
      dirty[k] = mi_malloc_small(sz);
      assert_non_null(dirty[k]);
      memset(dirty[k], 0xFF, mi_usable_size(dirty[k]));
    }
    for (int k = 0; k < 16; k++) mi_free(dirty[k]);
    for (int k = 0; k < 16; k++) {
      dirty[k] = mi_zalloc_small(sz);
      assert_non_null(dirty[k]);
      if (first_nonzero(dirty[k], sz) != sz) fail_msg("mi_zalloc_small(%zu) not zeroed", sz);
    }
    for (int k = 0; k < 16; k++) mi_free(dirty[k]);
  }
}

static void test_zalloc_returns_zeroed_memory(void** state) {
  (void)state;
  for (size_t i = 0; i < N_ZERO_SIZES; i++) {
    uint8_t* p = mi_zalloc(zero_sizes[i]);
    assert_non_null(p);
    assert_int_equal(first_nonzero(p, zero_sizes[i]), zero_sizes[i]);
    mi_free(p);
  }
  void* p = mi_zalloc(0);
  assert_non_null(p);
  mi_free(p);
}

/* ---- aligned allocation --------------------------------------------------------------------- */

#define ALIGN_MAX_TESTED (32 * MiB)

/* Sizes tried at each alignment: 0, 1, align-1, align, align+1 and 100 KiB. */
static size_t aligned_sizes(size_t align, size_t out[6]) {
  size_t n = 0;
  out[n++] = 0;
  out[n++] = 1;
  if (align > 2) out[n++] = align - 1;
  if (align > 1) out[n++] = align;
  out[n++] = align + 1;
  out[n++] = 100 * KiB;
  return n;
}

static void check_aligned_block(void* p, size_t size, size_t align, size_t offset, const char* fn) {
  if (p == NULL)
    fail_msg("%s(size %zu, align %zu, offset %zu) returned NULL", fn, size, align, offset);
  if (!is_aligned((uint8_t*)p + offset, align)) {
    fail_msg("%s(size %zu, align %zu, offset %zu) = %p: p+offset is not aligned", fn, size, align,
             offset, p);
  }
  if (mi_usable_size(p) < size) {
    fail_msg("%s(size %zu, align %zu): usable size %zu", fn, size, align, mi_usable_size(p));
  }
  if (size > 0) {
    memset(p, 0xC3, size);
    assert_int_equal(((uint8_t*)p)[size - 1], 0xC3);
  }
}

static void check_zero_block(void* p, size_t size, const char* fn, size_t align) {
  size_t nz = first_nonzero(p, size);
  if (nz != size) fail_msg("%s(size %zu, align %zu): byte %zu is nonzero", fn, size, align, nz);
}

static void test_aligned_allocations_are_aligned_for_every_power_of_two(void** state) {
  (void)state;
  for (size_t align = 1; align <= ALIGN_MAX_TESTED; align *= 2) {
    size_t sizes[6];
    size_t n = aligned_sizes(align, sizes);
    for (size_t i = 0; i < n; i++) {
      size_t sz = sizes[i];
      void* p = mi_malloc_aligned(sz, align);
      check_aligned_block(p, sz, align, 0, "mi_malloc_aligned");
      mi_free(p);

      p = mi_zalloc_aligned(sz, align);
      if (p != NULL) check_zero_block(p, sz, "mi_zalloc_aligned", align);
      check_aligned_block(p, sz, align, 0, "mi_zalloc_aligned");
      mi_free(p);

      p = mi_calloc_aligned(1, sz, align);
      if (p != NULL) check_zero_block(p, sz, "mi_calloc_aligned", align);
      check_aligned_block(p, sz, align, 0, "mi_calloc_aligned");
      mi_free(p);

      p = mi_realloc_aligned(NULL, sz, align);
      check_aligned_block(p, sz, align, 0, "mi_realloc_aligned(NULL)");
      mi_free(p);

      p = mi_malloc_aligned_at(sz, align, 0);
      check_aligned_block(p, sz, align, 0, "mi_malloc_aligned_at(offset 0)");
      mi_free(p);
    }
  }
}

/* Several live aligned blocks at once, so an allocator cannot pass by reusing one slot. */
static void test_many_live_aligned_blocks_are_distinct_and_aligned(void** state) {
  (void)state;
  enum { N = 64 };
  void* ps[N];
  for (size_t align = 16; align <= 1 * MiB; align *= 4) {
    for (int k = 0; k < N; k++) {
      size_t sz = 1 + (size_t)k * 37;
      ps[k] = mi_malloc_aligned(sz, align);
      check_aligned_block(ps[k], sz, align, 0, "mi_malloc_aligned");
      fill_pattern(ps[k], sz, (uint64_t)k);
    }
    for (int k = 0; k < N; k++) {
      size_t sz = 1 + (size_t)k * 37;
      assert_int_equal(check_pattern(ps[k], sz, (uint64_t)k), sz);
      mi_free(ps[k]);
    }
  }
}

/* `_at` variants align p+offset. Offsets are not supported above 16 MiB alignment (facts 1.5),
 * so those stop there. */
static void test_aligned_at_offsets_align_the_offset_pointer(void** state) {
  (void)state;
  const size_t offsets[] = {0, 1, 8, 16, 24, 100, 4096};
  for (size_t align = 1; align <= 16 * MiB; align *= 2) {
    for (size_t o = 0; o < sizeof(offsets) / sizeof(offsets[0]); o++) {
      size_t off = offsets[o];
      const size_t sizes[] = {off + 1, off + align, 100 * KiB + off};
      for (size_t i = 0; i < 3; i++) {
        size_t sz = sizes[i];
        void* p = mi_malloc_aligned_at(sz, align, off);
        check_aligned_block(p, sz, align, off, "mi_malloc_aligned_at");
        mi_free(p);

        p = mi_zalloc_aligned_at(sz, align, off);
        if (p != NULL) check_zero_block(p, sz, "mi_zalloc_aligned_at", align);
        check_aligned_block(p, sz, align, off, "mi_zalloc_aligned_at");
        mi_free(p);

        p = mi_calloc_aligned_at(sz, 1, align, off);
        if (p != NULL) check_zero_block(p, sz, "mi_calloc_aligned_at", align);
        check_aligned_block(p, sz, align, off, "mi_calloc_aligned_at");
        mi_free(p);

        p = mi_realloc_aligned_at(NULL, sz, align, off);
        check_aligned_block(p, sz, align, off, "mi_realloc_aligned_at(NULL)");
        mi_free(p);
      }
    }
  }
}

static void test_aligned_allocation_rejects_non_power_of_two_alignment(void** state) {
  (void)state;
  const size_t bad[] = {3, 5, 6, 7, 12, 24, 48, 100, 4095, 4097, 3 * 4096, MiB + 1};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    size_t a = bad[i];
    if (mi_malloc_aligned(64, a) != NULL) fail_msg("mi_malloc_aligned(64, %zu) succeeded", a);
    assert_null(mi_malloc_aligned_at(64, a, 8));
    assert_null(mi_zalloc_aligned(64, a));
    assert_null(mi_zalloc_aligned_at(64, a, 8));
    assert_null(mi_calloc_aligned(4, 16, a));
    assert_null(mi_calloc_aligned_at(4, 16, a, 8));
    if (a >= 16) {
      /* With a block, small alignments may be served by plain realloc; with NULL it is an
       * allocation like the others. */
      assert_null(mi_realloc_aligned(NULL, 64, a));
      assert_null(mi_realloc_aligned_at(NULL, 64, a, 8));
    }
  }
}

static void test_aligned_overflowing_sizes_return_null(void** state) {
  (void)state;
  assert_null(mi_malloc_aligned(v_size_max, 64));
  assert_null(mi_malloc_aligned(v_size_max - 10, 4096));
  assert_null(mi_zalloc_aligned(v_size_max, 16));
  assert_null(mi_calloc_aligned(v_half_plus_one, 2, 64));
  assert_null(mi_calloc_aligned_at(v_two_pow_half_word, v_two_pow_half_word, 64, 8));
  assert_null(mi_malloc_aligned_at(v_size_max, 1 * MiB, 16));
}

static void test_realloc_aligned_keeps_alignment_and_content(void** state) {
  (void)state;
  const size_t ladder[] = {10, 100, 5000, 70 * KiB, 2 * MiB, 300, 17 * MiB, 64, 1};
  for (size_t align = 16; align <= 4 * MiB; align *= 8) {
    size_t cur = ladder[0];
    uint8_t* p = mi_malloc_aligned(cur, align);
    check_aligned_block(p, cur, align, 0, "mi_malloc_aligned");
    fill_pattern(p, cur, align);
    for (size_t i = 1; i < sizeof(ladder) / sizeof(ladder[0]); i++) {
      size_t next = ladder[i];
      uint8_t* q = mi_realloc_aligned(p, next, align);
      if (q == NULL) fail_msg("mi_realloc_aligned(%zu -> %zu, %zu) failed", cur, next, align);
      if (!is_aligned(q, align))
        fail_msg("mi_realloc_aligned(-> %zu, %zu) = %p unaligned", next, align, q);
      assert_true(mi_usable_size(q) >= next);
      size_t keep = cur < next ? cur : next;
      assert_int_equal(check_pattern(q, keep, align), keep);
      fill_pattern(q, next, align);
      p = q;
      cur = next;
    }
    mi_free(p);
  }
  /* the _at form keeps p+offset aligned */
  uint8_t* p = mi_malloc_aligned_at(100, 256, 16);
  assert_non_null(p);
  fill_pattern(p, 100, 1);
  p = mi_realloc_aligned_at(p, 50000, 256, 16);
  assert_non_null(p);
  assert_true(is_aligned(p + 16, 256));
  assert_int_equal(check_pattern(p, 100, 1), 100);
  mi_free(p);
}

/* ---- process and thread control ----------------------------------------------------------- */

static void test_version_matches_header(void** state) {
  (void)state;
  assert_int_equal(mi_version(), MI_MALLOC_VERSION);
}

static void test_collect_is_callable_and_allocation_works_afterwards(void** state) {
  (void)state;
  void* keep = mi_malloc(1000);
  assert_non_null(keep);
  for (int i = 0; i < 1000; i++) mi_free(mi_malloc((size_t)i * 13));
  mi_collect(false);
  mi_collect(true);
  mi_collect(true);
  memset(keep, 1, 1000); /* a live block survives collection */
  mi_free(keep);
  void* p = mi_malloc(5 * MiB);
  assert_non_null(p);
  touch_block(p, 5 * MiB);
  mi_free(p);
  mi_collect(true);
}

struct thread_result {
  void* leftover;
  size_t leftover_size;
  bool ok;
};

static void* explicit_init_thread(void* arg) {
  struct thread_result* r = arg;
  mi_thread_init();
  mi_thread_init(); /* idempotent */
  r->ok = true;
  void* ps[200];
  for (int i = 0; i < 200; i++) {
    ps[i] = mi_malloc((size_t)i * 50 + 1);
    if (ps[i] == NULL)
      r->ok = false;
    else
      fill_pattern(ps[i], (size_t)i * 50 + 1, (uint64_t)i);
  }
  for (int i = 0; i < 200; i++) {
    if (ps[i] != NULL &&
        check_pattern(ps[i], (size_t)i * 50 + 1, (uint64_t)i) != (size_t)i * 50 + 1)
      r->ok = false;
    if (i % 2 == 0) mi_free(ps[i]);
  }
  for (int i = 1; i < 200; i += 2) {
    if (i != 199) mi_free(ps[i]);
  }
  r->leftover = ps[199];
  r->leftover_size = 199 * 50 + 1;
  mi_thread_done();
  /* allocation after mi_thread_done still works (the thread is re-initialized lazily) */
  void* again = mi_malloc(123);
  if (again == NULL) r->ok = false;
  mi_free(again);
  return NULL;
}

static void test_thread_init_and_done_on_a_thread(void** state) {
  (void)state;
  for (int round = 0; round < 4; round++) {
    struct thread_result r = {0};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, explicit_init_thread, &r), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_true(r.ok);
    assert_non_null(r.leftover);
    /* a block of the finished thread is intact and can be freed here */
    assert_int_equal(check_pattern(r.leftover, r.leftover_size, 199), r.leftover_size);
    mi_free(r.leftover);
  }
}

/* ---- random workload ---------------------------------------------------------------------- */

struct slot {
  uint8_t* p;
  size_t size;
  uint64_t seed;
};

static size_t random_size(void) {
  uint64_t r = rng_next() % 1000;
  if (r < 700) return (size_t)(rng_next() % 256);
  if (r < 950) return 256 + (size_t)(rng_next() % (8 * KiB));
  if (r < 995) return 8 * KiB + (size_t)(rng_next() % (120 * KiB));
  return 128 * KiB + (size_t)(rng_next() % (3 * MiB));
}

static void verify_slot(const struct slot* s) {
  size_t bad = check_pattern(s->p, s->size, s->seed);
  if (bad != s->size)
    fail_msg("block %p of %zu bytes corrupted at byte %zu", (void*)s->p, s->size, bad);
}

static void test_random_allocations_keep_their_contents(void** state) {
  (void)state;
  enum { SLOTS = 4096, OPS = 200000 };
  struct slot* slots = mi_calloc(SLOTS, sizeof(struct slot));
  assert_non_null(slots);
  for (int op = 0; op < OPS; op++) {
    struct slot* s = &slots[rng_next() % SLOTS];
    uint64_t action = rng_next() % 10;
    if (s->p != NULL) verify_slot(s);
    if (s->p != NULL && action < 2) { /* realloc keeps the common prefix */
      size_t next = random_size();
      uint8_t* q = mi_realloc(s->p, next);
      assert_non_null(q);
      size_t keep = s->size < next ? s->size : next;
      assert_int_equal(check_pattern(q, keep, s->seed), keep);
      s->p = q;
      s->size = next;
      fill_pattern(q, next, s->seed);
    } else if (s->p != NULL && action < 6) {
      mi_free(s->p);
      s->p = NULL;
    } else {
      mi_free(s->p);
      s->size = random_size();
      s->seed = rng_next();
      s->p = (action == 9) ? mi_malloc_aligned(s->size, (size_t)64 << (rng_next() % 8))
                           : mi_malloc(s->size);
      assert_non_null(s->p);
      assert_true(mi_usable_size(s->p) >= s->size);
      fill_pattern(s->p, s->size, s->seed);
    }
  }
  for (int i = 0; i < SLOTS; i++) {
    if (slots[i].p != NULL) {
      verify_slot(&slots[i]);
      mi_free(slots[i].p);
    }
  }
  mi_free(slots);
  mi_collect(true);
}

/* mi_realloc_aligned to a small alignment of a block that is not aligned to it (one from
 * mi_malloc_aligned_at, its start at an odd address): the result is aligned, whether or not the
 * size changes, and keeps the contents. (The API fuzzer found it coming back misaligned.) */
static void test_realloc_aligned_aligns_a_block_that_was_not(void** state) {
  (void)state;
  static const size_t aligns[] = {2, 8, 16};
  for (size_t a = 0; a < 3; a++) {
    for (size_t newsize = 30; newsize <= 50; newsize += 20) {
      uint8_t* p = mi_malloc_aligned_at(40, 64, 1); /* p + 1 is 64-aligned: p is odd */
      assert_non_null(p);
      assert_int_equal((uintptr_t)p % 2, 1);
      for (int i = 0; i < 30; i++) p[i] = (uint8_t)(i + 1);
      uint8_t* q = mi_realloc_aligned(p, newsize, aligns[a]);
      assert_non_null(q);
      assert_int_equal((uintptr_t)q % aligns[a], 0);
      for (int i = 0; i < 30; i++) assert_int_equal(q[i], i + 1);
      mi_free(q);
    }
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_malloc_zero_returns_unique_non_null_blocks),
      cmocka_unit_test(test_free_null_is_a_noop),
      cmocka_unit_test(test_malloc_every_size_class_is_writable_and_aligned),
      cmocka_unit_test(test_usable_size_is_between_request_and_good_size_up_to_64k),
      cmocka_unit_test(test_usable_size_covers_request_above_64k),
      cmocka_unit_test(test_good_size_documented_values),
      cmocka_unit_test(test_good_size_matches_the_documented_classes_up_to_64k),
      cmocka_unit_test(test_good_size_rounds_to_4k_pages_above_64k),
      cmocka_unit_test(test_calloc_returns_zeroed_memory),
      cmocka_unit_test(test_calloc_zeroes_reused_dirty_memory),
      cmocka_unit_test(test_zalloc_zeroes_reused_dirty_memory),
      cmocka_unit_test(test_calloc_aligned_zeroes_reused_dirty_memory),
      cmocka_unit_test(test_calloc_overflow_returns_null_with_enomem),
      cmocka_unit_test(test_mallocn_overflow_returns_null_with_enomem),
      cmocka_unit_test(test_malloc_impossible_size_returns_null_with_enomem),
      cmocka_unit_test(test_realloc_grows_and_shrinks_preserving_content),
      cmocka_unit_test(test_realloc_null_acts_as_malloc),
      cmocka_unit_test(test_realloc_to_zero_returns_freeable_minimal_block),
      cmocka_unit_test(test_realloc_failure_returns_null_and_keeps_block),
      cmocka_unit_test(test_reallocf_frees_block_and_returns_null_on_failure),
      cmocka_unit_test(test_reallocn_overflow_returns_null_and_keeps_block),
      cmocka_unit_test(test_expand_succeeds_in_place_only_within_usable_size),
      cmocka_unit_test(test_strdup_copies_string),
      cmocka_unit_test(test_strndup_truncates_and_terminates),
      cmocka_unit_test(test_realpath_matches_libc_realpath),
      cmocka_unit_test(test_malloc_small_serves_every_small_size),
      cmocka_unit_test(test_zalloc_small_returns_zeroed_memory_even_when_reused),
      cmocka_unit_test(test_zalloc_returns_zeroed_memory),
      cmocka_unit_test(test_aligned_allocations_are_aligned_for_every_power_of_two),
      cmocka_unit_test(test_realloc_aligned_aligns_a_block_that_was_not),
      cmocka_unit_test(test_many_live_aligned_blocks_are_distinct_and_aligned),
      cmocka_unit_test(test_aligned_at_offsets_align_the_offset_pointer),
      cmocka_unit_test(test_aligned_allocation_rejects_non_power_of_two_alignment),
      cmocka_unit_test(test_aligned_overflowing_sizes_return_null),
      cmocka_unit_test(test_realloc_aligned_keeps_alignment_and_content),
      cmocka_unit_test(test_version_matches_header),
      cmocka_unit_test(test_collect_is_callable_and_allocation_works_afterwards),
      cmocka_unit_test(test_thread_init_and_done_on_a_thread),
      cmocka_unit_test(test_random_allocations_keep_their_contents),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
