/* OS memory calls that fail, against the real backend (fault injection: lm_fault_os, the test
 * hook of the static library; MIMALLOC_FAULT_OS sets the same plan from the environment):
 *  - with every reservation and commit failing, each allocation path runs out: it returns NULL
 *    with errno = ENOMEM (posix_memalign returns ENOMEM), and works again once memory comes
 *    back;
 *  - failing the Nth memory call, for each N along a run of allocations of every kind, leaves
 *    no reservation behind once the blocks are freed and the heap collected;
 *  - one kind failing alone (reservations, or commits) is survived the same way.
 * Run with segments straight from the OS and committed on demand (see meson.build), so that
 * running out comes after a few MiB and every run makes OS calls. */
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

#include "mimalloc-stats.h"
#include "mimalloc.h"

/* The test hook (src/core/arena_api.c; hidden, reached through the static library). */
int64_t lm_fault_os(int64_t nth, unsigned kinds);
enum { FAULT_RESERVE = 1, FAULT_COMMIT = 2, FAULT_ALL = 3 };

#define KiB ((size_t)1024)
#define MiB (KiB * KiB)

/* ---- the allocation paths ------------------------------------------------------------------ */

typedef void* alloc_fn(size_t size);

static mi_heap_t* test_heap; /* for the heap path */

static void* by_malloc(size_t n) { return mi_malloc(n); }
static void* by_zalloc(size_t n) { return mi_zalloc(n); }
static void* by_calloc(size_t n) { return mi_calloc(n / 16, 16); }
static void* by_mallocn(size_t n) { return mi_mallocn(n / 8, 8); }
static void* by_realloc(size_t n) { return mi_realloc(NULL, n); }
static void* by_realloc_grow(size_t n) {
  void* p = mi_malloc(16);
  if (p == NULL) return NULL;
  void* q = mi_realloc(p, n);
  int err = errno;
  if (q == NULL) mi_free(p); /* (p stays valid when realloc fails) */
  errno = err;
  return q;
}
static void* by_aligned(size_t n) { return mi_malloc_aligned(n, 4096); }
static void* by_aligned_huge(size_t n) { return mi_malloc_aligned(n, 8 * MiB); }
static void* by_zalloc_aligned(size_t n) { return mi_zalloc_aligned(n, 256); }
static void* by_aligned_at(size_t n) { return mi_malloc_aligned_at(n, 128, 16); }
static void* by_heap(size_t n) { return mi_heap_malloc(test_heap, n); }
static void* by_heap_zalloc(size_t n) { return mi_heap_zalloc(test_heap, n); }
static void* by_posix_memalign(size_t n) {
  void* p = NULL;
  int rc = mi_posix_memalign(&p, 64, n);
  if (rc != 0) {
    errno = rc; /* the return value is the error; checked like errno below */
    return NULL;
  }
  return p;
}

typedef struct path_s {
  const char* name;
  alloc_fn* fn;
} path_t;

static const path_t paths[] = {
    {"malloc", by_malloc},
    {"zalloc", by_zalloc},
    {"calloc", by_calloc},
    {"mallocn", by_mallocn},
    {"realloc(NULL)", by_realloc},
    {"realloc grow", by_realloc_grow},
    {"malloc_aligned 4 KiB", by_aligned},
    {"malloc_aligned 8 MiB", by_aligned_huge},
    {"zalloc_aligned", by_zalloc_aligned},
    {"malloc_aligned_at", by_aligned_at},
    {"heap_malloc", by_heap},
    {"heap_zalloc", by_heap_zalloc},
    {"posix_memalign", by_posix_memalign},
};
enum { NPATHS = sizeof(paths) / sizeof(paths[0]) };

/* small, medium, large and huge blocks */
static const size_t sizes[] = {16, 1000, 40 * KiB, 400 * KiB, 5 * MiB};
enum { NSIZES = sizeof(sizes) / sizeof(sizes[0]) };

/* ---- helpers -------------------------------------------------------------------------------- */

/* Blocks kept live, in static storage: the test's own bookkeeping must not allocate while
 * allocation is failing on purpose (malloc is ours in this program). */
enum { KEEP_MAX = 1 << 21 };
typedef struct blocks_s {
  void** p;
  size_t n;
} blocks_t;
static void* kept_store[2][KEEP_MAX];

static bool keep(blocks_t* b, void* p) {
  if (b->n == KEEP_MAX) return false;
  b->p[b->n++] = p;
  return true;
}

static void free_all(blocks_t* b) {
  for (size_t i = 0; i < b->n; i++) mi_free(b->p[i]);
  b->n = 0;
}

static int64_t reserved_now(void) {
  mi_stats_t_decl(st);
  assert_true(mi_stats_get(&st));
  return st.reserved.current;
}

/* Allocate through `path` until it fails (at most `limit` bytes), keeping the blocks; true
 * when it failed with ENOMEM. */
static bool exhaust(const path_t* path, size_t size, size_t limit, blocks_t* kept) {
  for (size_t total = 0; total < limit; total += size) {
    errno = 0;
    void* p = path->fn(size);
    if (p == NULL) {
      if (errno != ENOMEM) fail_msg("%s(%zu) failed with errno %d, not ENOMEM", path->name, size, errno);
      return true;
    }
    if (!keep(kept, p)) return false;
  }
  return false;
}

/* ---- tests ------------------------------------------------------------------------------------ */

static void test_every_path_runs_out_with_enomem_and_recovers(void** state) {
  (void)state;
  test_heap = mi_heap_new();
  assert_non_null(test_heap);
  blocks_t kept = {kept_store[0], 0};
  for (size_t s = 0; s < NSIZES; s++) {
    for (size_t i = 0; i < NPATHS; i++) {
      size_t size = sizes[s];
      int64_t before = lm_fault_os(0, FAULT_ALL);
      bool ran_out = exhaust(&paths[i], size, 256 * MiB, &kept);
      int64_t injected = lm_fault_os(0, 0) - before;
      if (!ran_out) fail_msg("%s(%zu) never ran out", paths[i].name, size);
      assert_true(injected > 0);
      /* memory is back: the same path works at once */
      void* p = paths[i].fn(size);
      if (p == NULL) fail_msg("%s(%zu) still fails after the faults stopped", paths[i].name, size);
      memset(p, 0x5A, mi_usable_size(p));
      mi_free(p);
      free_all(&kept);
      mi_heap_collect(test_heap, true);
      mi_collect(true);
    }
  }
  mi_heap_delete(test_heap);
}

/* A run of allocations of every kind, freed again. */
static void mixed_run(blocks_t* kept) {
  test_heap = mi_heap_new(); /* (may fail: heap_malloc then takes the default heap's path) */
  for (size_t s = 0; s < NSIZES; s++) {
    for (size_t i = 0; i < NPATHS; i++) {
      if (paths[i].fn == by_heap || paths[i].fn == by_heap_zalloc) {
        if (test_heap == NULL) continue;
      }
      for (int k = 0; k < 3; k++) {
        void* p = paths[i].fn(sizes[s]);
        if (p != NULL) assert_true(keep(kept, p));
      }
    }
  }
  free_all(kept);
  if (test_heap != NULL) mi_heap_delete(test_heap);
  mi_collect(true);
}

static void test_failing_the_nth_os_call_leaks_no_reservation(void** state) {
  (void)state;
  blocks_t kept = {kept_store[0], 0};
  mixed_run(&kept); /* fault-free: arenas as the run needs them */
  mixed_run(&kept);
  int64_t base = reserved_now();
  int64_t before = lm_fault_os(0, 0);
  /* N = 1, 2, ... until the run makes fewer than N memory calls: each one failed once */
  int64_t n = 1;
  for (; n <= 1000; n++) {
    int64_t at = lm_fault_os(n, 0);
    mixed_run(&kept);
    bool hit = lm_fault_os(0, 0) > at;
    mixed_run(&kept); /* and everything works again */
    int64_t now = reserved_now();
    if (now > base) {
      fail_msg("failing OS call %lld left %lld bytes reserved", (long long)n,
               (long long)(now - base));
    }
    if (!hit) break;
  }
  int64_t injected = lm_fault_os(0, 0) - before;
  assert_true(injected >= 10); /* the run makes more memory calls than a few */
  assert_true(n <= 1000);
  printf("Nth-call sweep: %lld faults injected, one at each memory call of the run\n",
         (long long)injected);
}

static void test_one_kind_failing_alone_is_survived(void** state) {
  (void)state;
  blocks_t kept = {kept_store[0], 0};
  int64_t base = 0;
  mixed_run(&kept);
  base = reserved_now();
  const unsigned kinds[] = {FAULT_RESERVE, FAULT_COMMIT};
  for (size_t k = 0; k < 2; k++) {
    int64_t before = lm_fault_os(0, kinds[k]);
    blocks_t big = {kept_store[1], 0};
    bool ran_out = exhaust(&paths[0], 4 * MiB, 1024 * MiB, &big);
    int64_t injected = lm_fault_os(0, 0) - before;
    /* reservations failing alone: the arenas' memory still serves until it is used up */
    assert_true(ran_out);
    assert_true(injected > 0);
    free_all(&big);
    mi_collect(true);
    void* p = mi_malloc(4 * MiB);
    assert_non_null(p);
    mi_free(p);
  }
  mi_collect(true);
  assert_true(reserved_now() <= base);
}

/* `cap` mode, run with MIMALLOC_DISALLOW_OS_ALLOC=1 and MIMALLOC_RESERVE_OS_MEMORY=64MiB: the
 * memory reserved at start is all there is. Blocks of every class run out with ENOMEM within
 * it, nothing more is reserved, and freed memory serves again. */
enum { CAP = 64 };
static void test_disallow_os_alloc_caps_the_heap_at_the_reserved_memory(void** state) {
  (void)state;
  int64_t reserved = reserved_now();
  assert_true(reserved >= (int64_t)(CAP * MiB));
  blocks_t kept = {kept_store[0], 0};
  const size_t cap_sizes[] = {64, 20 * KiB, 1 * MiB, 9 * MiB};
  for (size_t s = 0; s < 4; s++) {
    size_t before = kept.n;
    bool ran_out = exhaust(&paths[0], cap_sizes[s], 4 * CAP * MiB, &kept);
    if (!ran_out) fail_msg("malloc(%zu) never ran out under the cap", cap_sizes[s]);
    size_t got = (kept.n - before) * cap_sizes[s];
    assert_true(got <= CAP * MiB);
    assert_true(reserved_now() == reserved); /* the OS was not asked for more */
    free_all(&kept);
    mi_collect(true);
    void* p = mi_malloc(cap_sizes[s]); /* the freed memory serves again */
    assert_non_null(p);
    mi_free(p);
  }
}

/* `env` mode, run with MIMALLOC_FAULT_OS=1: the plan is read when the library starts, so the
 * very first memory call fails (a plan that kept failing would leave the C library itself
 * without memory where malloc is ours). That call is made before main where the C library
 * allocates through us, or by the first allocation here (under a sanitizer); either way
 * exactly one fault is injected, and allocation works afterwards. */
static void test_fault_plan_from_the_environment(void** state) {
  (void)state;
  errno = 0;
  void* p = mi_malloc(1 * MiB); /* (NULL with ENOMEM if its memory call is the first) */
  if (p == NULL) assert_int_equal(errno, ENOMEM);
  mi_free(p);
  assert_int_equal(lm_fault_os(0, 0), 1);
  p = mi_malloc(1 * MiB);
  assert_non_null(p);
  mi_free(p);
}

int main(int argc, char** argv) {
  mi_option_disable(mi_option_show_errors); /* (the ENOMEM reports are expected) */
  if (argc > 1 && strcmp(argv[1], "cap") == 0) {
    const struct CMUnitTest cap[] = {
        cmocka_unit_test(test_disallow_os_alloc_caps_the_heap_at_the_reserved_memory),
    };
    return cmocka_run_group_tests(cap, NULL, NULL);
  }
  if (argc > 1 && strcmp(argv[1], "env") == 0) {
    const struct CMUnitTest env[] = {cmocka_unit_test(test_fault_plan_from_the_environment)};
    return cmocka_run_group_tests(env, NULL, NULL);
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_every_path_runs_out_with_enomem_and_recovers),
      cmocka_unit_test(test_failing_the_nth_os_call_leaks_no_reservation),
      cmocka_unit_test(test_one_kind_failing_alone_is_survived),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
