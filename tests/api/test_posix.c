/* Integration tests of the mi_-prefixed POSIX, BSD and Windows CRT equivalents, the "u"
 * variants, the sized and aligned frees, and the zero-preserving reallocations (facts 1.3, 1.7,
 * 1.13). Public header only, static library.
 *
 * Whether a free really released a block is observed on a fresh default heap: the heap's live
 * blocks are counted with mi_heap_visit_blocks before and after.
 *
 * Sizes that would trip the compiler's alloc_size checks are read through volatile variables
 * so that the calls really reach the allocator. */
#define _GNU_SOURCE
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
/* cmocka after the standard headers it expects; UNIT_TESTING stays undefined on purpose. */
#include <cmocka.h>

#include "mimalloc.h"
#include "patterns.h"

static volatile size_t v_size_max = SIZE_MAX;
static volatile size_t v_half_plus_one = SIZE_MAX / 2 + 1;
/* no address space here can hold it: 2^60 on 64-bit targets, 3.75 GiB on 32-bit ones */
static volatile size_t v_unmappable = SIZE_MAX > UINT32_MAX ? (size_t)(1ULL << 60)
                                                            : (size_t)0xF0000000u;
static volatile size_t v_align_48 = 48; /* not a power of two */

/* ---- helpers --------------------------------------------------------------------------------- */


/* Index of the first nonzero byte in [from, to), or `to` when all are zero. */
static size_t first_nonzero(const void* p, size_t from, size_t to) {
  const uint8_t* b = p;
  for (size_t i = from; i < to; i++) {
    if (b[i] != 0) return i;
  }
  return to;
}

static bool is_aligned(const void* p, size_t alignment) { return (uintptr_t)p % alignment == 0; }

/* Leave blocks of `size` dirty in the free lists, so that the next allocations of that size
 * get memory that is not zero unless the allocator clears it. */
static void dirty_size(size_t size, size_t count) {
  void* blocks[64];
  if (count > 64) count = 64;
  for (size_t i = 0; i < count; i++) {
    blocks[i] = mi_malloc(size);
    assert_non_null(blocks[i]);
    memset(blocks[i], 0xEE, mi_usable_size(blocks[i]));
  }
  for (size_t i = 0; i < count; i++) mi_free(blocks[i]);
}

static bool count_block(const mi_heap_t* heap, const mi_heap_area_t* area, void* block,
                        size_t block_size, void* arg) {
  (void)heap;
  (void)area;
  (void)block_size;
  if (block != NULL) (*(size_t*)arg)++;
  return true;
}

static size_t live_blocks(mi_heap_t* heap) {
  size_t n = 0;
  assert_true(mi_heap_visit_blocks(heap, true, count_block, &n));
  return n;
}

/* A fresh heap made the default for the duration of one check. */
typedef struct scratch_heap_s {
  mi_heap_t* heap;
  mi_heap_t* previous;
} scratch_heap_t;

static scratch_heap_t scratch_begin(void) {
  scratch_heap_t s;
  s.heap = mi_heap_new();
  assert_non_null(s.heap);
  s.previous = mi_heap_set_default(s.heap);
  assert_int_equal(live_blocks(s.heap), 0);
  return s;
}

static void scratch_end(scratch_heap_t s) {
  assert_int_equal(live_blocks(s.heap), 0);
  mi_heap_set_default(s.previous);
  mi_heap_delete(s.heap);
}

/* ---- frees ----------------------------------------------------------------------------------- */

static void test_cfree_frees_own_blocks(void** state) {
  (void)state;
  scratch_heap_t s = scratch_begin();
  void* p = mi_malloc(100);
  void* q = mi_malloc(100000);
  assert_non_null(p);
  assert_non_null(q);
  assert_int_equal(live_blocks(s.heap), 2);
  mi_cfree(p);
  mi_cfree(q);
  assert_int_equal(live_blocks(s.heap), 0);
  scratch_end(s);
}

static void test_cfree_ignores_foreign_pointers(void** state) {
  (void)state;
  mi_cfree(NULL);
  int on_stack = 42;
  mi_cfree(&on_stack);
  assert_int_equal(on_stack, 42);
  static char in_data[64] = "static";
  mi_cfree(in_data);
  assert_string_equal(in_data, "static");
  /* memory straight from the OS (malloc itself may be ours: the static library can carry the
   * libc names) */
  size_t len = 1 << 16;
  char* mapped = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  assert_true(mapped != MAP_FAILED);
  strcpy(mapped + 64, "mapped");
  mi_cfree(mapped);
  mi_cfree(mapped + 64);
  assert_string_equal(mapped + 64, "mapped");
  munmap(mapped, len);
}

static void test_sized_and_aligned_frees_release_the_block(void** state) {
  (void)state;
  scratch_heap_t s = scratch_begin();
  static const size_t sizes[] = {1, 8, 24, 100, 1000, 5000, 70000, 1 << 20};
  for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
    size_t n = sizes[i];
    void* a = mi_malloc(n);
    void* b = mi_malloc_aligned(n, 64);
    void* c = mi_malloc_aligned(n, 4096);
    void* d = mi_malloc(n);
    assert_true(a && b && c && d);
    assert_int_equal(live_blocks(s.heap), 4);
    mi_free_size(a, n);
    mi_free_size_aligned(b, n, 64);
    mi_free_aligned(c, 4096);
    mi_free_small(d);
    assert_int_equal(live_blocks(s.heap), 0);
  }
  mi_free_size(NULL, 0);
  mi_free_size_aligned(NULL, 0, 16);
  mi_free_aligned(NULL, 16);
  mi_free_small(NULL);
  scratch_end(s);
}

static void test_free_small_releases_small_blocks(void** state) {
  (void)state;
  scratch_heap_t s = scratch_begin();
  void* blocks[MI_SMALL_SIZE_MAX / 8];
  for (size_t i = 0; i < MI_SMALL_SIZE_MAX / 8; i++) {
    blocks[i] = mi_malloc_small((i + 1) * 8);
    assert_non_null(blocks[i]);
  }
  assert_int_equal(live_blocks(s.heap), MI_SMALL_SIZE_MAX / 8);
  for (size_t i = 0; i < MI_SMALL_SIZE_MAX / 8; i++) mi_free_small(blocks[i]);
  scratch_end(s);
}

/* ---- sizes ----------------------------------------------------------------------------------- */

static void test_expand_underscore_sets_enomem_on_failure(void** state) {
  (void)state;
  uint8_t* p = mi_malloc(100);
  assert_non_null(p);
  size_t usable = mi_usable_size(p);
  fill_pattern(p, 100, 1);
  errno = 0;
  assert_ptr_equal(mi__expand(p, usable), p); /* fits: in place, errno untouched */
  assert_ptr_equal(mi__expand(p, 50), p);
  assert_int_equal(errno, 0);
  errno = 0;
  assert_null(mi__expand(p, usable + 1)); /* does not fit: NULL, ENOMEM, block unchanged */
  assert_int_equal(errno, ENOMEM);
  assert_int_equal(check_pattern(p, 100, 1), 100);
  assert_int_equal(mi_usable_size(p), usable);
  errno = 0;
  assert_null(mi__expand(p, v_size_max));
  assert_int_equal(errno, ENOMEM);
  errno = 0;
  assert_null(mi__expand(NULL, 10));
  assert_int_equal(errno, ENOMEM);
  mi_free(p);
}

static void test_malloc_size_functions_equal_usable_size(void** state) {
  (void)state;
  assert_int_equal(mi_malloc_size(NULL), 0);
  assert_int_equal(mi_malloc_usable_size(NULL), 0);
  for (size_t n = 0; n < 300000; n = n * 3 / 2 + 1) {
    void* p = mi_malloc(n);
    assert_non_null(p);
    assert_int_equal(mi_malloc_size(p), mi_usable_size(p));
    assert_int_equal(mi_malloc_usable_size(p), mi_usable_size(p));
    assert_true(mi_malloc_size(p) >= n);
    mi_free(p);
  }
  void* q = mi_malloc_aligned(1000, 256);
  assert_non_null(q);
  assert_int_equal(mi_malloc_size(q), mi_usable_size(q));
  mi_free(q);
}

static void test_malloc_good_size_equals_good_size(void** state) {
  (void)state;
  for (size_t n = 0; n < (size_t)64 << 20; n = n * 5 / 4 + 1) {
    assert_int_equal(mi_malloc_good_size(n), mi_good_size(n));
    assert_true(mi_malloc_good_size(n) >= n);
  }
}

/* ---- reallocarray (BSD) ---------------------------------------------------------------------- */

static void test_reallocarray_grows_and_keeps_content(void** state) {
  (void)state;
  uint32_t* a = mi_reallocarray(NULL, 10, sizeof(uint32_t)); /* NULL: like mallocarray */
  assert_non_null(a);
  assert_true(mi_usable_size(a) >= 10 * sizeof(uint32_t));
  for (uint32_t i = 0; i < 10; i++) a[i] = i * 7;
  a = mi_reallocarray(a, 100000, sizeof(uint32_t));
  assert_non_null(a);
  assert_true(mi_usable_size(a) >= 100000 * sizeof(uint32_t));
  for (uint32_t i = 0; i < 10; i++) assert_int_equal(a[i], i * 7);
  a = mi_reallocarray(a, 3, sizeof(uint32_t));
  assert_non_null(a);
  for (uint32_t i = 0; i < 3; i++) assert_int_equal(a[i], i * 7);
  void* z = mi_reallocarray(a, 0, sizeof(uint32_t)); /* like realloc(p, 0): a minimal block */
  assert_non_null(z);
  mi_free(z);
}

static void test_reallocarray_overflow_is_eoverflow_and_keeps_block(void** state) {
  (void)state;
  uint8_t* p = mi_malloc(200);
  assert_non_null(p);
  fill_pattern(p, 200, 2);
  errno = 0;
  assert_null(mi_reallocarray(p, v_half_plus_one, 2));
  assert_int_equal(errno, EOVERFLOW);
  errno = 0;
  assert_null(mi_reallocarray(p, 3, v_size_max / 2));
  assert_int_equal(errno, EOVERFLOW);
  errno = 0;
  assert_null(mi_reallocarray(NULL, v_size_max, v_size_max));
  assert_int_equal(errno, EOVERFLOW);
  assert_int_equal(check_pattern(p, 200, 2), 200);
  /* no overflow, but more than can be had: ENOMEM, block kept */
  errno = 0;
  assert_null(mi_reallocarray(p, v_unmappable, 1));
  assert_int_equal(errno, ENOMEM);
  assert_int_equal(check_pattern(p, 200, 2), 200);
  mi_free(p);
}

/* ---- reallocarr (NetBSD) --------------------------------------------------------------------- */

static void test_reallocarr_updates_the_pointer_and_returns_zero(void** state) {
  (void)state;
  uint64_t* a = NULL;
  errno = 1234;
  assert_int_equal(mi_reallocarr(&a, 16, sizeof(uint64_t)), 0); /* from NULL: allocates */
  assert_int_equal(errno, 1234);
  assert_non_null(a);
  assert_true(mi_usable_size(a) >= 16 * sizeof(uint64_t));
  for (uint64_t i = 0; i < 16; i++) a[i] = i * i;
  assert_int_equal(mi_reallocarr(&a, 50000, sizeof(uint64_t)), 0);
  assert_non_null(a);
  assert_true(mi_usable_size(a) >= 50000 * sizeof(uint64_t));
  for (uint64_t i = 0; i < 16; i++) assert_int_equal(a[i], i * i);
  assert_int_equal(mi_reallocarr(&a, 4, sizeof(uint64_t)), 0);
  for (uint64_t i = 0; i < 4; i++) assert_int_equal(a[i], i * i);
  assert_int_equal(errno, 1234);
  mi_free(a);
}

static void test_reallocarr_failure_returns_errno_and_keeps_pointer(void** state) {
  (void)state;
  uint8_t* p = mi_malloc(300);
  assert_non_null(p);
  fill_pattern(p, 300, 3);
  uint8_t* q = p;
  errno = 4321;
  assert_int_equal(mi_reallocarr(&q, v_half_plus_one, 2), EOVERFLOW);
  assert_ptr_equal(q, p);
  assert_int_equal(errno, 4321); /* errno is preserved */
  assert_int_equal(mi_reallocarr(&q, v_unmappable, 1), ENOMEM);
  assert_ptr_equal(q, p);
  assert_int_equal(errno, 4321);
  assert_int_equal(check_pattern(p, 300, 3), 300);
  assert_int_equal(mi_reallocarr(NULL, 1, 1), EINVAL);
  assert_int_equal(errno, 4321);
  mi_free(p);
}

static void test_reallocarr_zero_frees_and_stores_null(void** state) {
  (void)state;
  scratch_heap_t s = scratch_begin();
  void* p = mi_malloc(64);
  assert_non_null(p);
  assert_int_equal(mi_reallocarr(&p, 0, 8), 0);
  assert_null(p);
  p = mi_malloc(64);
  assert_int_equal(mi_reallocarr(&p, 8, 0), 0);
  assert_null(p);
  scratch_end(s); /* both blocks were freed */
}

static void test_reallocarr_accepts_an_unaligned_pointer_slot(void** state) {
  (void)state;
  unsigned char slot[sizeof(void*) + 1];
  void* p = NULL;
  memcpy(slot + 1, &p, sizeof(p));
  assert_int_equal(mi_reallocarr(slot + 1, 10, 10), 0);
  memcpy(&p, slot + 1, sizeof(p));
  assert_non_null(p);
  assert_true(mi_usable_size(p) >= 100);
  mi_free(p);
}

/* ---- zero-preserving reallocation ------------------------------------------------------------ */

/* The zeroing rule: growing a block that was allocated zeroed yields zeroes after the old
 * content, also when the block grows again in place (the result of one growth is itself a
 * zeroed allocation). `rez` reallocates p to n bytes with a zeroing function under test. */
typedef void* rez_fun(void* p, size_t n);

static void check_zero_preserving_growth(rez_fun* rez, size_t alignment) {
  static const size_t steps[] = {10, 100, 110, 200, 1000, 1010, 3000, 70000, 70010, 300000};
  const size_t nsteps = sizeof(steps) / sizeof(steps[0]);
  /* Dirty the free blocks of every size the steps will use. */
  for (size_t i = 0; i < nsteps; i++) dirty_size(steps[i], 8);
  uint8_t* p = mi_calloc(1, steps[0]);
  assert_non_null(p);
  assert_int_equal(first_nonzero(p, 0, steps[0]), steps[0]);
  for (size_t i = 1; i < nsteps; i++) {
    size_t old = steps[i - 1], n = steps[i];
    fill_pattern(p, old, i);
    p = rez(p, n);
    assert_non_null(p);
    assert_true(is_aligned(p, alignment));
    assert_true(mi_usable_size(p) >= n);
    assert_int_equal(check_pattern(p, old, i), old);
    assert_int_equal(first_nonzero(p, old, n), n);
  }
  /* and shrinking keeps the content */
  fill_pattern(p, 100, 99);
  p = rez(p, 100);
  assert_non_null(p);
  assert_int_equal(check_pattern(p, 100, 99), 100);
  mi_free(p);
}

static void* rez_rezalloc(void* p, size_t n) { return mi_rezalloc(p, n); }
static void* rez_recalloc(void* p, size_t n) { return mi_recalloc(p, n, 1); }
static void* rez_recalloc_words(void* p, size_t n) { return mi_recalloc(p, (n + 7) / 8, 8); }
static void* rez_rezalloc_aligned(void* p, size_t n) { return mi_rezalloc_aligned(p, n, 64); }
static void* rez_recalloc_aligned(void* p, size_t n) { return mi_recalloc_aligned(p, n, 1, 64); }
static void* rez_aligned_recalloc(void* p, size_t n) { return mi_aligned_recalloc(p, n, 1, 64); }
static void* rez_rezalloc_aligned_big(void* p, size_t n) { return mi_rezalloc_aligned(p, n, 4096); }

static void test_rezalloc_zeroes_the_grown_tail(void** state) {
  (void)state;
  check_zero_preserving_growth(rez_rezalloc, 8);
}
static void test_recalloc_zeroes_the_grown_tail(void** state) {
  (void)state;
  check_zero_preserving_growth(rez_recalloc, 8);
  check_zero_preserving_growth(rez_recalloc_words, 8);
}
static void test_rezalloc_aligned_zeroes_the_grown_tail(void** state) {
  (void)state;
  check_zero_preserving_growth(rez_rezalloc_aligned, 64);
  check_zero_preserving_growth(rez_rezalloc_aligned_big, 4096);
}
static void test_recalloc_aligned_zeroes_the_grown_tail(void** state) {
  (void)state;
  check_zero_preserving_growth(rez_recalloc_aligned, 64);
  check_zero_preserving_growth(rez_aligned_recalloc, 64);
}

/* The _at forms: the pointer plus the offset is aligned, and the tail is zeroed. */
static void test_zero_preserving_realloc_at_offsets(void** state) {
  (void)state;
  static const size_t offsets[] = {0, 8, 16, 24, 100};
  for (size_t k = 0; k < sizeof(offsets) / sizeof(offsets[0]); k++) {
    size_t off = offsets[k];
    for (int variant = 0; variant < 3; variant++) {
      dirty_size(5000, 8);
      uint8_t* p = mi_calloc_aligned_at(1, 200, 128, off);
      assert_non_null(p);
      assert_true(is_aligned(p + off, 128));
      fill_pattern(p, 200, off);
      if (variant == 0)
        p = mi_rezalloc_aligned_at(p, 5000, 128, off);
      else if (variant == 1)
        p = mi_recalloc_aligned_at(p, 1000, 5, 128, off);
      else
        p = mi_aligned_offset_recalloc(p, 2500, 2, 128, off);
      assert_non_null(p);
      assert_true(is_aligned(p + off, 128));
      assert_int_equal(check_pattern(p, 200, off), 200);
      assert_int_equal(first_nonzero(p, 200, 5000), 5000);
      mi_free(p);
    }
  }
}

static void test_zero_preserving_realloc_of_null_allocates_zeroed(void** state) {
  (void)state;
  dirty_size(4000, 8);
  uint8_t* a = mi_rezalloc(NULL, 4000);
  uint8_t* b = mi_recalloc(NULL, 1000, 4);
  uint8_t* c = mi_rezalloc_aligned(NULL, 4000, 256);
  uint8_t* d = mi_recalloc_aligned(NULL, 4, 1000, 256);
  uint8_t* e = mi_aligned_recalloc(NULL, 4, 1000, 256);
  assert_true(a && b && c && d && e);
  assert_true(is_aligned(c, 256) && is_aligned(d, 256) && is_aligned(e, 256));
  assert_int_equal(first_nonzero(a, 0, 4000), 4000);
  assert_int_equal(first_nonzero(b, 0, 4000), 4000);
  assert_int_equal(first_nonzero(c, 0, 4000), 4000);
  assert_int_equal(first_nonzero(d, 0, 4000), 4000);
  assert_int_equal(first_nonzero(e, 0, 4000), 4000);
  mi_free(a);
  mi_free(b);
  mi_free(c);
  mi_free(d);
  mi_free(e);
}

static void test_recalloc_overflow_returns_null_and_keeps_block(void** state) {
  (void)state;
  uint8_t* p = mi_calloc(1, 100);
  assert_non_null(p);
  fill_pattern(p, 100, 4);
  errno = 0;
  assert_null(mi_recalloc(p, v_half_plus_one, 2));
  assert_int_equal(errno, ENOMEM);
  errno = 0;
  assert_null(mi_recalloc_aligned(p, v_half_plus_one, 2, 64));
  assert_int_equal(errno, ENOMEM);
  errno = 0;
  assert_null(mi_recalloc_aligned_at(p, v_half_plus_one, 2, 64, 8));
  assert_int_equal(errno, ENOMEM);
  errno = 0;
  assert_null(mi_aligned_recalloc(p, 2, v_half_plus_one, 64));
  assert_int_equal(errno, ENOMEM);
  errno = 0;
  assert_null(mi_aligned_offset_recalloc(p, 2, v_half_plus_one, 64, 8));
  assert_int_equal(errno, ENOMEM);
  errno = 0;
  assert_null(mi_rezalloc(p, v_size_max)); /* impossible size: ENOMEM, block kept */
  assert_int_equal(errno, ENOMEM);
  assert_int_equal(check_pattern(p, 100, 4), 100);
  mi_free(p);
}

/* ---- "u" variants ---------------------------------------------------------------------------- */

static void test_umalloc_and_ucalloc_report_the_usable_size(void** state) {
  (void)state;
  for (size_t n = 0; n < 500000; n = n * 3 / 2 + 1) {
    size_t bs = 0;
    void* p = mi_umalloc(n, &bs);
    assert_non_null(p);
    assert_int_equal(bs, mi_usable_size(p));
    assert_true(bs >= n);
    mi_free(p);
    dirty_size(n, 4);
    bs = 0;
    uint8_t* z = mi_ucalloc(n, 1, &bs);
    assert_non_null(z);
    assert_int_equal(bs, mi_usable_size(z));
    assert_true(bs >= n);
    assert_int_equal(first_nonzero(z, 0, n), n);
    mi_free(z);
  }
  void* p = mi_umalloc(10, NULL); /* the out-parameter is optional */
  assert_non_null(p);
  mi_free(p);
  p = mi_ucalloc(10, 10, NULL);
  assert_non_null(p);
  mi_free(p);
}

static void test_u_variants_report_zero_on_failure(void** state) {
  (void)state;
  size_t bs = 123;
  errno = 0;
  assert_null(mi_umalloc(v_size_max, &bs));
  assert_int_equal(bs, 0);
  assert_int_equal(errno, ENOMEM);
  bs = 123;
  errno = 0;
  assert_null(mi_ucalloc(v_half_plus_one, 2, &bs));
  assert_int_equal(bs, 0);
  assert_int_equal(errno, ENOMEM);
  bs = 123;
  assert_null(mi_umalloc_aligned(v_size_max, 64, &bs));
  assert_int_equal(bs, 0);
  bs = 123;
  assert_null(mi_uzalloc_aligned(100, v_align_48, &bs));
  assert_int_equal(bs, 0);
}

static void test_urealloc_reports_sizes_before_and_after(void** state) {
  (void)state;
  size_t pre = 1, post = 1;
  uint8_t* p = mi_urealloc(NULL, 100, &pre, &post);
  assert_non_null(p);
  assert_int_equal(pre, 0);
  assert_int_equal(post, mi_usable_size(p));
  assert_true(post >= 100);
  fill_pattern(p, 100, 5);
  size_t before = mi_usable_size(p);
  p = mi_urealloc(p, 100000, &pre, &post);
  assert_non_null(p);
  assert_int_equal(pre, before);
  assert_int_equal(post, mi_usable_size(p));
  assert_true(post >= 100000);
  assert_int_equal(check_pattern(p, 100, 5), 100);
  /* failure: NULL, post 0, pre the live block's size, block kept */
  before = mi_usable_size(p);
  assert_null(mi_urealloc(p, v_size_max, &pre, &post));
  assert_int_equal(pre, before);
  assert_int_equal(post, 0);
  assert_int_equal(check_pattern(p, 100, 5), 100);
  p = mi_urealloc(p, 50, NULL, NULL);
  assert_non_null(p);
  assert_int_equal(check_pattern(p, 50, 5), 50);
  mi_free(p);
}

static void test_ufree_reports_the_size_and_frees(void** state) {
  (void)state;
  scratch_heap_t s = scratch_begin();
  void* p = mi_malloc(777);
  assert_non_null(p);
  size_t usable = mi_usable_size(p), bs = 0;
  mi_ufree(p, &bs);
  assert_int_equal(bs, usable);
  assert_int_equal(live_blocks(s.heap), 0);
  p = mi_malloc(10);
  mi_ufree(p, NULL);
  assert_int_equal(live_blocks(s.heap), 0);
  bs = 5;
  mi_ufree(NULL, &bs);
  assert_int_equal(bs, 0);
  scratch_end(s);
}

static void test_umalloc_aligned_and_uzalloc_aligned(void** state) {
  (void)state;
  for (size_t align = 8; align <= ((size_t)1 << 20); align *= 4) {
    for (size_t n = 1; n < 200000; n = n * 7 + 3) {
      size_t bs = 0;
      void* p = mi_umalloc_aligned(n, align, &bs);
      assert_non_null(p);
      assert_true(is_aligned(p, align));
      assert_int_equal(bs, mi_usable_size(p));
      assert_true(bs >= n);
      memset(p, 0xAB, bs);
      mi_free(p);
      bs = 0;
      uint8_t* z = mi_uzalloc_aligned(n, align, &bs);
      assert_non_null(z);
      assert_true(is_aligned(z, align));
      assert_int_equal(bs, mi_usable_size(z));
      assert_true(bs >= n);
      assert_int_equal(first_nonzero(z, 0, n), n);
      mi_free(z);
    }
  }
}

static void test_umalloc_small_and_uzalloc_small(void** state) {
  (void)state;
  for (size_t n = 0; n <= MI_SMALL_SIZE_MAX; n++) {
    size_t bs = 0;
    void* p = mi_umalloc_small(n, &bs);
    assert_non_null(p);
    assert_int_equal(bs, mi_usable_size(p));
    assert_true(bs >= n);
    memset(p, 0xCD, bs);
    mi_free(p);
    bs = 0;
    uint8_t* z = mi_uzalloc_small(n, &bs);
    assert_non_null(z);
    assert_int_equal(bs, mi_usable_size(z));
    assert_int_equal(first_nonzero(z, 0, n), n);
    mi_free(z);
  }
  void* p = mi_umalloc_small(16, NULL);
  assert_non_null(p);
  mi_free(p);
}

/* ---- Windows CRT helpers --------------------------------------------------------------------- */

static void test_wcsdup_copies_wide_strings(void** state) {
  (void)state;
  const unsigned short s[] = {'w', 'i', 0x00E9, 0x4E2D, 'e', 0};
  unsigned short* t = mi_wcsdup(s);
  assert_non_null(t);
  assert_ptr_not_equal(t, s);
  assert_memory_equal(t, s, sizeof(s));
  assert_true(mi_usable_size(t) >= sizeof(s));
  mi_free(t);
  const unsigned short empty[] = {0};
  t = mi_wcsdup(empty);
  assert_non_null(t);
  assert_int_equal(t[0], 0);
  mi_free(t);
  assert_null(mi_wcsdup(NULL));
}

static void test_mbsdup_copies_byte_strings(void** state) {
  (void)state;
  const unsigned char s[] = {'m', 'b', 0xC3, 0xA9, 's', 0};
  unsigned char* t = mi_mbsdup(s);
  assert_non_null(t);
  assert_ptr_not_equal(t, s);
  assert_memory_equal(t, s, sizeof(s));
  mi_free(t);
  assert_null(mi_mbsdup(NULL));
}

static void test_dupenv_s_copies_the_variable(void** state) {
  (void)state;
  assert_int_equal(setenv("LM_TEST_DUPENV", "some value", 1), 0);
  char* buf = NULL;
  size_t size = 0;
  assert_int_equal(mi_dupenv_s(&buf, &size, "LM_TEST_DUPENV"), 0);
  assert_non_null(buf);
  assert_string_equal(buf, "some value");
  assert_int_equal(size, strlen("some value") + 1); /* counts the terminating zero */
  assert_ptr_not_equal(buf, getenv("LM_TEST_DUPENV"));
  mi_free(buf);
  buf = NULL;
  assert_int_equal(mi_dupenv_s(&buf, NULL, "LM_TEST_DUPENV"), 0); /* size is optional */
  assert_string_equal(buf, "some value");
  mi_free(buf);
  /* set but empty: an empty copy */
  assert_int_equal(setenv("LM_TEST_DUPENV", "", 1), 0);
  assert_int_equal(mi_dupenv_s(&buf, &size, "LM_TEST_DUPENV"), 0);
  assert_non_null(buf);
  assert_string_equal(buf, "");
  assert_int_equal(size, 1);
  mi_free(buf);
  unsetenv("LM_TEST_DUPENV");
}

static void test_dupenv_s_unset_variable_gives_null(void** state) {
  (void)state;
  unsetenv("LM_TEST_DUPENV_UNSET");
  char* buf = (char*)&buf;
  size_t size = 99;
  assert_int_equal(mi_dupenv_s(&buf, &size, "LM_TEST_DUPENV_UNSET"), 0);
  assert_null(buf);
  assert_int_equal(size, 0);
}

static void test_dupenv_s_rejects_missing_arguments(void** state) {
  (void)state;
  size_t size = 0;
  char* buf = NULL;
  assert_int_equal(mi_dupenv_s(NULL, &size, "PATH"), EINVAL);
  assert_int_equal(mi_dupenv_s(&buf, &size, NULL), EINVAL);
}

static void test_wdupenv_s_is_einval_off_windows(void** state) {
  (void)state;
  const unsigned short name[] = {'P', 'A', 'T', 'H', 0};
  unsigned short* buf = (unsigned short*)&buf;
  size_t size = 99;
  assert_int_equal(mi_wdupenv_s(&buf, &size, name), EINVAL);
  assert_null(buf);
  assert_int_equal(size, 0);
  assert_int_equal(mi_wdupenv_s(NULL, NULL, NULL), EINVAL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_cfree_frees_own_blocks),
      cmocka_unit_test(test_cfree_ignores_foreign_pointers),
      cmocka_unit_test(test_sized_and_aligned_frees_release_the_block),
      cmocka_unit_test(test_free_small_releases_small_blocks),
      cmocka_unit_test(test_expand_underscore_sets_enomem_on_failure),
      cmocka_unit_test(test_malloc_size_functions_equal_usable_size),
      cmocka_unit_test(test_malloc_good_size_equals_good_size),
      cmocka_unit_test(test_reallocarray_grows_and_keeps_content),
      cmocka_unit_test(test_reallocarray_overflow_is_eoverflow_and_keeps_block),
      cmocka_unit_test(test_reallocarr_updates_the_pointer_and_returns_zero),
      cmocka_unit_test(test_reallocarr_failure_returns_errno_and_keeps_pointer),
      cmocka_unit_test(test_reallocarr_zero_frees_and_stores_null),
      cmocka_unit_test(test_reallocarr_accepts_an_unaligned_pointer_slot),
      cmocka_unit_test(test_rezalloc_zeroes_the_grown_tail),
      cmocka_unit_test(test_recalloc_zeroes_the_grown_tail),
      cmocka_unit_test(test_rezalloc_aligned_zeroes_the_grown_tail),
      cmocka_unit_test(test_recalloc_aligned_zeroes_the_grown_tail),
      cmocka_unit_test(test_zero_preserving_realloc_at_offsets),
      cmocka_unit_test(test_zero_preserving_realloc_of_null_allocates_zeroed),
      cmocka_unit_test(test_recalloc_overflow_returns_null_and_keeps_block),
      cmocka_unit_test(test_umalloc_and_ucalloc_report_the_usable_size),
      cmocka_unit_test(test_u_variants_report_zero_on_failure),
      cmocka_unit_test(test_urealloc_reports_sizes_before_and_after),
      cmocka_unit_test(test_ufree_reports_the_size_and_frees),
      cmocka_unit_test(test_umalloc_aligned_and_uzalloc_aligned),
      cmocka_unit_test(test_umalloc_small_and_uzalloc_small),
      cmocka_unit_test(test_wcsdup_copies_wide_strings),
      cmocka_unit_test(test_mbsdup_copies_byte_strings),
      cmocka_unit_test(test_dupenv_s_copies_the_variable),
      cmocka_unit_test(test_dupenv_s_unset_variable_gives_null),
      cmocka_unit_test(test_dupenv_s_rejects_missing_arguments),
      cmocka_unit_test(test_wdupenv_s_is_einval_off_windows),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
