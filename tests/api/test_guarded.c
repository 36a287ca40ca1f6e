/* Guarded sampling (the guarded_* options, mi_heap_guarded_set_*): a sampled block sits right
 * before an inaccessible page, so a write one past its end faults; everything else about it
 * (free, realloc, usable size, zeroing, heap destroy) behaves as for any block. Runs under
 * MIMALLOC_GUARDED_SAMPLE_RATE=1 (and once more with MIMALLOC_GUARDED_PRECISE=1). Builds
 * without guarded sampling (plain release) must then guard nothing. Public headers only. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "mimalloc-stats.h"
#include "mimalloc.h"
#include "observe.h"

#if (defined(LM_GUARDED_BUILD) && LM_GUARDED_BUILD) || (defined(LM_DEBUG) && LM_DEBUG > 0)
#define GUARDED 1
#else
#define GUARDED 0
#endif

static bool precise(void) { return getenv("MIMALLOC_GUARDED_PRECISE") != NULL; }

static int64_t guarded_count(void) {
  mi_stats_t st;
  get_stats(&st);
  return st.malloc_guarded_count.total;
}

/* Run fn in a child; its exit status, or 128 + the signal that ended it. */
static int in_child(void (*fn)(size_t), size_t arg) {
  fflush(NULL);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    signal(SIGSEGV, SIG_DFL); /* cmocka catches it in tests: here it is the expected end */
    signal(SIGBUS, SIG_DFL);
    fn(arg);
    _exit(0);
  }
  int status = 0;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
}

static void write_one_past(size_t size) {
  volatile unsigned char* p = mi_malloc(size);
  size_t usable = mi_usable_size((void*)p);
  for (size_t i = 0; i < usable; i++) p[i] = (unsigned char)i; /* all of it is ours */
  p[usable] = 1;                                               /* the guard page */
  _exit(3); /* not stopped: a failure */
}

static void test_a_write_past_a_sampled_block_faults(void** state) {
  (void)state;
  static const size_t sizes[] = {1, 100, 4000, 20000};
  for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
    int result = in_child(write_one_past, sizes[i]);
    if (GUARDED) assert_int_equal(result, 128 + SIGSEGV);
#if defined(__SANITIZE_ADDRESS__)
    else assert_true(result != 0); /* ASan reports the write into the slack (exit 1) */
#else
    else assert_int_equal(result, 3); /* nothing guarded: the write lands, the child goes on */
#endif
  }
}

static void test_sampled_blocks_behave_like_any_other(void** state) {
  (void)state;
  int64_t before = guarded_count();
  unsigned char* p = mi_malloc(100);
  assert_non_null(p);
  size_t usable = mi_usable_size(p);
  if (GUARDED) {
    assert_int_equal(guarded_count() - before, 1);
    assert_int_equal(usable, precise() ? 100 : 112); /* to the guard page exactly */
    if (!precise()) assert_int_equal((uintptr_t)p % 16, 0);
  } else {
    assert_int_equal(guarded_count(), 0);
  }
  memset(p, 0x5A, 100);
  unsigned char* q = mi_realloc(p, 5000); /* grows into a new (guarded) block, data kept */
  assert_non_null(q);
  for (size_t i = 0; i < 100; i++) assert_int_equal(q[i], 0x5A);
  mi_free(q);
  unsigned char* z = mi_calloc(50, 3);
  for (size_t i = 0; i < 150; i++) assert_int_equal(z[i], 0);
  mi_free(z);
  /* Freed blocks are reused with their guard pages open again: fill many. */
  for (int round = 0; round < 3; round++) {
    void* blocks[500];
    for (size_t i = 0; i < 500; i++) {
      blocks[i] = mi_malloc(16 + i * 37);
      assert_non_null(blocks[i]);
      memset(blocks[i], (int)i, mi_usable_size(blocks[i]));
    }
    for (size_t i = 0; i < 500; i++) mi_free(blocks[i]);
  }
}

/* A heap's own rate: 1 in 10 of 1000 mallocs, and only within the size bounds. */
static void test_heap_sample_rate_and_size_bounds(void** state) {
  (void)state;
  mi_heap_t* heap = mi_heap_new();
  assert_non_null(heap);
  mi_heap_guarded_set_sample_rate(heap, 10, 1);
  int64_t before = guarded_count();
  static void* blocks[1000];
  for (size_t i = 0; i < 1000; i++) blocks[i] = mi_heap_malloc(heap, 64);
  int64_t sampled = guarded_count() - before;
  assert_int_equal(sampled, GUARDED ? 100 : 0);
  for (size_t i = 0; i < 1000; i++) mi_free(blocks[i]);

  mi_heap_guarded_set_sample_rate(heap, 1, 0);
  mi_heap_guarded_set_size_bound(heap, 200, 300);
  before = guarded_count();
  for (size_t i = 0; i < 100; i++) blocks[i] = mi_heap_malloc(heap, 100);  /* below */
  for (size_t i = 100; i < 110; i++) blocks[i] = mi_heap_malloc(heap, 250); /* inside */
  for (size_t i = 110; i < 120; i++) blocks[i] = mi_heap_malloc(heap, 400); /* above */
  assert_int_equal(guarded_count() - before, GUARDED ? 10 : 0);
  for (size_t i = 0; i < 120; i++) mi_free(blocks[i]);
  mi_heap_delete(heap);
}

/* mi_heap_destroy gives the pages back whole: their guard pages must be open again, or the
 * next blocks placed there fault. */
static void test_destroyed_heap_leaves_no_guard_behind(void** state) {
  (void)state;
  for (int round = 0; round < 4; round++) {
    mi_heap_t* heap = mi_heap_new();
    assert_non_null(heap);
    mi_heap_guarded_set_sample_rate(heap, 1, 0);
    for (size_t i = 0; i < 200; i++) assert_non_null(mi_heap_malloc(heap, 24 + i * 50));
    mi_heap_destroy(heap);
    for (size_t i = 0; i < 400; i++) {
      size_t size = 24 + (i % 200) * 50;
      unsigned char* p = mi_malloc(size);
      memset(p, 1, mi_usable_size(p));
      mi_free(p);
    }
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_a_write_past_a_sampled_block_faults),
      cmocka_unit_test(test_sampled_blocks_behave_like_any_other),
      cmocka_unit_test(test_heap_sample_rate_and_size_bounds),
      cmocka_unit_test(test_destroyed_heap_leaves_no_guard_behind),
  };
  return cmocka_run_group_tests_name(precise() ? "guarded-precise" : "guarded", tests, NULL, NULL);
}
