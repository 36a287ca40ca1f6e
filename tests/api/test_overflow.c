/* Byte-precise overflow detection of the builds that pad blocks (secure and debug): a write
 * past the requested size is reported through the error handler (EFAULT) with the block, its
 * size and the first damaged byte, every time, when the block is freed or reallocated; a write
 * through a block into its live neighbour is reported when either of the two is freed. The
 * secure build's random block order stays: the tests find memory neighbours by address.
 * Release builds have no padding: the program skips there (exit 77).
 *
 * The handlers capture each report instead of stopping the process (a padded build stops on
 * these errors when no handler is registered). */
#include <errno.h>
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

#if (defined(LM_SECURE) && LM_SECURE) || (defined(LM_DEBUG) && LM_DEBUG > 0)
#define PADDED 1
#else
#define PADDED 0
#endif

/* ---- capturing reports -------------------------------------------------------------------- */

static int errors;         /* EFAULT reports since the last reset */
static int other_errors;   /* any other error code */
static char last_msg[512]; /* the last message the library printed */

static void on_error(int err, void* arg) {
  (void)arg;
  if (err == EFAULT) errors++;
  else other_errors++;
}

static void on_output(const char* msg, void* arg) {
  (void)arg;
  snprintf(last_msg, sizeof(last_msg), "%s", msg);
}

static void reset_reports(void) {
  errors = 0;
  other_errors = 0;
  last_msg[0] = 0;
}

static int setup(void** state) {
  (void)state;
  mi_register_error(on_error, NULL);
  mi_register_output(on_output, NULL);
  mi_option_enable(mi_option_show_errors);
  mi_option_set(mi_option_max_errors, 1L << 20);
  return 0;
}

/* Keep the compiler from dropping stores into memory it knows came from an allocator. */
static void escape(void* p) { __asm__ volatile("" : : "r"(p) : "memory"); }

static void assert_reported(const char* want) {
  if (strstr(last_msg, want) == NULL) fail_msg("expected \"%s\" in \"%s\"", want, last_msg);
}

/* The last message names `block`, `size` and the first damaged byte `at`. */
static void assert_report(const void* block, size_t size, size_t at) {
  char want[128];
  snprintf(want, sizeof(want), "heap block %p of size %zu: written past its end from byte %zu",
           block, size, at);
  assert_reported(want);
}

/* The last message names `block`, whose padding was overwritten whole (its request lost with
 * it): the report gives the block's room, `room`, as the most it was asked for. */
static void assert_report_all_padding(const void* block, size_t room) {
  char want[160];
  snprintf(want, sizeof(want),
           "heap block %p of size %zu or less: written past its end from byte %zu or before",
           block, room, room);
  assert_reported(want);
}

/* ---- one byte past the end ------------------------------------------------------------------ */

static const size_t sizes[] = {0,   1,    7,    8,     9,      15,     16,    40,
                               63,  64,   100,  1000,  4096,   5000,   40000, 70000,
                               300000, 1 << 20, 3 << 20};
enum { NSIZES = sizeof(sizes) / sizeof(sizes[0]), REPEAT = 20 };

static void test_one_byte_overflow_is_reported_at_free_every_time(void** state) {
  (void)state;
  for (size_t s = 0; s < NSIZES; s++) {
    for (int r = 0; r < REPEAT; r++) {
      size_t n = sizes[s];
      uint8_t* p = mi_malloc(n);
      assert_non_null(p);
      assert_int_equal(mi_usable_size(p), n); /* the request, exactly */
      reset_reports();
      p[n] ^= 0x01; /* one byte past the end */
      escape(p);
      mi_free(p); /* reported, and refused: the block stays allocated */
      assert_int_equal(errors, 1);
      assert_int_equal(other_errors, 0);
      assert_report(p, n, n);
      p[n] ^= 0x01; /* mended: now it frees quietly */
      reset_reports();
      mi_free(p);
      assert_int_equal(errors + other_errors, 0);
    }
  }
}

/* The issue's program: malloc(40), p[40] = 1, free: stopped every time. */
static volatile size_t v_forty = 40; /* (so the compiler sees no bounds to warn about) */
static void test_issue_case_malloc_40_is_stopped_every_time(void** state) {
  (void)state;
  for (int r = 0; r < 200; r++) {
    uint8_t* p = mi_malloc(v_forty);
    assert_non_null(p);
    uint8_t saved = p[v_forty];
    reset_reports();
    p[v_forty] = 1;
    escape(p);
    mi_free(p);
    assert_int_equal(errors, 1);
    assert_report(p, 40, 40);
    p[v_forty] = saved;
    mi_free(p);
  }
}

static void test_one_byte_overflow_is_reported_at_realloc(void** state) {
  (void)state;
  for (size_t s = 0; s < NSIZES; s++) {
    size_t n = sizes[s];
    /* a shrink that keeps the block, a growth that moves it, and the same size */
    const size_t targets[] = {n / 2 + 1, 2 * n + 64, n};
    for (size_t t = 0; t < 3; t++) {
      uint8_t* p = mi_malloc(n);
      assert_non_null(p);
      memset(p, 0x5A, n);
      reset_reports();
      p[n] ^= 0x01;
      escape(p);
      void* q = mi_realloc(p, targets[t]);
      assert_null(q); /* refused: p is left as it was */
      assert_int_equal(errors, 1);
      assert_int_equal(other_errors, 0);
      assert_report(p, n, n);
      for (size_t i = 0; i < n; i++) assert_int_equal(p[i], 0x5A);
      p[n] ^= 0x01;
      reset_reports();
      q = mi_realloc(p, targets[t]);
      assert_non_null(q);
      assert_int_equal(errors + other_errors, 0);
      mi_free(q);
    }
  }
}

/* ---- into a live neighbour ------------------------------------------------------------------ */

static int compare_pointers(const void* a, const void* b) {
  uintptr_t x = (uintptr_t) * (void* const*)a, y = (uintptr_t) * (void* const*)b;
  return (x > y) - (x < y);
}

enum { NBLOCKS = 256, REQ = 64 };

/* From NBLOCKS blocks of REQ bytes (every third one then freed, so that free blocks lie
 * between live ones), two live blocks that are memory neighbours: *a just below *b. The block
 * size is the smallest distance between two of the blocks. */
static bool live_neighbours(void** blocks, uint8_t** a, uint8_t** b) {
  void* all[NBLOCKS];
  for (int i = 0; i < NBLOCKS; i++) {
    blocks[i] = all[i] = mi_malloc(REQ);
    assert_non_null(blocks[i]);
  }
  qsort(all, NBLOCKS, sizeof(void*), compare_pointers);
  uintptr_t bsize = UINTPTR_MAX;
  for (size_t i = 1; i < NBLOCKS; i++) {
    uintptr_t d = (uintptr_t)all[i] - (uintptr_t)all[i - 1];
    if (d < bsize) bsize = d;
  }
  for (int i = 2; i < NBLOCKS; i += 3) {
    mi_free(blocks[i]);
    blocks[i] = NULL;
  }
  void* live[NBLOCKS];
  size_t n = 0;
  for (int i = 0; i < NBLOCKS; i++) {
    if (blocks[i] != NULL) live[n++] = blocks[i];
  }
  qsort(live, n, sizeof(void*), compare_pointers);
  for (size_t i = 1; i < n; i++) {
    if ((uintptr_t)live[i] - (uintptr_t)live[i - 1] == bsize) {
      *a = live[i - 1];
      *b = live[i];
      return true;
    }
  }
  return false;
}

static void free_blocks(void** blocks) {
  for (int i = 0; i < NBLOCKS; i++) mi_free(blocks[i]);
}

/* Write from a's end into b's first 8 bytes; free one of them first; both are reported as a's
 * overflow. The bytes are put back afterwards and everything frees quietly. */
static void neighbour_case(bool free_b_first) {
  void* blocks[NBLOCKS];
  uint8_t *a = NULL, *b = NULL;
  if (!live_neighbours(blocks, &a, &b)) fail_msg("no two live blocks are neighbours");
  size_t span = (size_t)(b - a) - REQ + 8; /* a's slack and padding, then 8 bytes of b */
  uint8_t saved[256];
  assert_true(span <= sizeof(saved));
  memcpy(saved, a + REQ, span);
  reset_reports();
  memset(a + REQ, 'X', span);
  escape(a);
  if (free_b_first) {
    mi_free(b); /* b itself is sound: freed, and a's damage reported */
    assert_int_equal(errors, 1);
    assert_report_all_padding(a, (size_t)(b - a) - 8);
    assert_reported("found when the block above it was freed");
    for (int i = 0; i < NBLOCKS; i++) {
      if (blocks[i] == b) blocks[i] = NULL;
    }
    memcpy(a + REQ, saved, span - 8); /* (b's first bytes are its free-list link now) */
  } else {
    mi_free(a); /* reported and refused */
    assert_int_equal(errors, 1);
    assert_report_all_padding(a, (size_t)(b - a) - 8);
    memcpy(a + REQ, saved, span);
  }
  assert_int_equal(other_errors, 0);
  reset_reports();
  free_blocks(blocks);
  assert_int_equal(errors + other_errors, 0);
}

static void test_write_into_live_neighbour_is_caught_when_it_is_freed(void** state) {
  (void)state;
  for (int r = 0; r < 20; r++) neighbour_case(true);
}

static void test_write_into_live_neighbour_is_caught_when_the_writer_is_freed(void** state) {
  (void)state;
  for (int r = 0; r < 20; r++) neighbour_case(false);
}

/* The issue's neighbour program: 32 blocks of 64 bytes, every other one freed, 16 bytes
 * written past the end of the first: reported when it is freed, in every run. */
static void test_issue_case_sixteen_bytes_past_the_first_block(void** state) {
  (void)state;
  for (int r = 0; r < 20; r++) {
    uint8_t* blocks[32];
    for (int i = 0; i < 32; i++) blocks[i] = mi_malloc(64);
    for (int i = 1; i < 32; i += 2) mi_free(blocks[i]);
    uint8_t saved[16];
    memcpy(saved, blocks[0] + 64, 16);
    reset_reports();
    memset(blocks[0] + 64, 0x41, 16);
    escape(blocks[0]);
    mi_free(blocks[0]);
    assert_int_equal(errors, 1);
    /* 64 + 8 bytes of padding take an 80-byte block: the 16 bytes cover slack and padding */
    assert_report_all_padding(blocks[0], mi_good_size(64 + 8) - 8);
    memcpy(blocks[0] + 64, saved, 16);
    reset_reports();
    for (int i = 0; i < 32; i += 2) mi_free(blocks[i]);
    assert_int_equal(errors + other_errors, 0);
  }
}

int main(void) {
  if (!PADDED) {
    printf("release build: blocks carry no padding; skipped\n");
    return 77;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_one_byte_overflow_is_reported_at_free_every_time),
      cmocka_unit_test(test_issue_case_malloc_40_is_stopped_every_time),
      cmocka_unit_test(test_one_byte_overflow_is_reported_at_realloc),
      cmocka_unit_test(test_write_into_live_neighbour_is_caught_when_it_is_freed),
      cmocka_unit_test(test_write_into_live_neighbour_is_caught_when_the_writer_is_freed),
      cmocka_unit_test(test_issue_case_sixteen_bytes_past_the_first_block),
  };
  return cmocka_run_group_tests(tests, setup, NULL);
}
