/* Unit test of the core layer (src/core/) over the segment and arena layers and the fake
 * backend, which also provides lm_backend_default(): the whole allocator runs over the fake.
 *
 * The core keeps process-wide state (lm_process), and the library's constructor initialises it
 * when the executable loads, before main and before cmocka's group setup. The fake is therefore
 * configured by a constructor of higher priority (configure_fake below), and the group setup
 * checks that the configuration took. All tests share one process, so they run in an order
 * where each leaves the heap as it found it: blocks freed, nothing abandoned.
 *
 * Configuration: no overcommit (arenas are committed lazily, so commits happen and can fail),
 * no background purger thread (has_threads=false: deterministic), 64 MiB arenas (a new arena is
 * needed soon), segments committed per page (eager_commit=0).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "core/core.h"
#include "fake_backend.h"

#define SEG LM_SEGMENT_SIZE
#define ARENA_RESERVE (64 * LM_MiB)

__attribute__((constructor(101))) static void configure_fake(void) {
  fake_backend_reset();
  lm_backend_caps_t caps;
  fake_backend_get_caps(&caps);
  caps.has_overcommit = false;
  caps.has_threads = false;
  fake_backend_set_caps(&caps);
  fake_backend_setenv("MIMALLOC_ARENA_RESERVE", "64MiB");
  fake_backend_setenv("MIMALLOC_EAGER_COMMIT", "0");
}

static int group_setup(void** state) {
  (void)state;
  mi_process_init(); /* normally done already by the library's constructor */
  if (atomic_load(&lm_process.init_state) != 2 || lm_process.backend != fake_backend()) {
    fprintf(stderr, "group setup: the process is not running over the fake backend\n");
    return -1;
  }
  if (lm_process.arenas.config.arena_reserve != ARENA_RESERVE ||
      lm_process.segments.config.eager_commit || lm_process.arenas.caps.has_overcommit ||
      lm_process.arenas.caps.has_threads) {
    fprintf(stderr, "group setup: the process was initialised before the fake was configured\n");
    return -1;
  }
  return 0;
}

static int group_teardown(void** state) {
  (void)state;
  mi_collect(true);
  return lm_segments_abandoned_count(&lm_process.segments) == 0 ? 0 : -1;
}

/* ---- helpers --------------------------------------------------------------------------------- */

static lm_page_t* page_of(const void* p) { return lm_segment_page_of(lm_segment_of(p), p); }

/* Links are encoded in secure and debug builds: follow them through the core's accessor. */
static size_t list_length(const lm_page_t* page, const lm_block_t* b) {
  size_t n = 0;
  for (; b != NULL && n < 100000; b = lm_block_next(page, b)) n++;
  return n;
}
static size_t thread_free_length(const lm_page_t* page) {
  return list_length(page, lm_tf_block(atomic_load(&((lm_page_t*)page)->xthread_free)));
}

/* Every block threaded into the page is in exactly one place: handed out (used, which includes
 * blocks waiting in the thread-free and delayed lists), or in `free`, or in `local_free`. */
static void check_page_accounting(const lm_page_t* page) {
  size_t f = list_length(page, page->free);
  size_t l = list_length(page, page->local_free);
  assert_int_equal((size_t)page->used + f + l, page->capacity);
  assert_true(page->capacity <= page->reserved);
  assert_true(thread_free_length(page) <= page->used);
}

static bool all_zero(const void* p, size_t size) {
  const uint8_t* b = p;
  for (size_t i = 0; i < size; i++) {
    if (b[i] != 0) return false;
  }
  return true;
}

static size_t live_reservations_expected_delta(size_t arenas_before) {
  return 2 * (atomic_load(&lm_process.arenas.arena_count) - arenas_before);
}

typedef struct free_job_s {
  void** blocks;
  size_t count;
} free_job_t;

static void* free_blocks_main(void* arg) {
  free_job_t* job = arg;
  for (size_t i = 0; i < job->count; i++) mi_free(job->blocks[i]);
  return NULL;
}

/* Free blocks from another thread (which allocates nothing itself). */
static void free_remotely(void** blocks, size_t count) {
  free_job_t job = {blocks, count};
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, free_blocks_main, &job), 0);
  assert_int_equal(pthread_join(t, NULL), 0);
}

/* ---- size classes ---------------------------------------------------------------------------- */

static void test_core_size_class_of_every_size_fits_and_bounds_waste(void** state) {
  (void)state;
  for (size_t size = 0; size <= LM_MEDIUM_OBJ_SIZE_MAX; size++) {
    uint8_t bin = lm_bin(size);
    size_t bsize = lm_bin_size(bin);
    assert_true(bin >= 1 && bin < LM_BIN_HUGE);
    assert_true(bsize >= size);
    assert_true(bsize >= 8 && bsize % 8 == 0);
    if (size > 64) {
      /* four classes per power of two: a block is less than 25% larger than the request */
      assert_true(4 * bsize < 5 * size);
    } else {
      assert_true(bsize - size < 16 || size == 0);
    }
    if (size > 0) assert_true(lm_bin(size) >= lm_bin(size - 1)); /* monotone */
    assert_int_equal(mi_good_size(size), bsize);
    assert_int_equal(lm_bin(bsize), bin); /* a class size maps to its own bin */
  }
  assert_int_equal(lm_bin(LM_MEDIUM_OBJ_SIZE_MAX + 1), LM_BIN_HUGE);
  assert_int_equal(lm_bin(LM_MiB), LM_BIN_HUGE);
}

static void test_core_size_classes_match_mimalloc(void** state) {
  (void)state;
  /* mimalloc v2's classes up to 64 KiB (spec §4.2), as measured through mi_good_size. */
  static const size_t classes[] = {
      8,     16,    32,    48,    64,    80,    96,    112,   128,   160,   192,   224,
      256,   320,   384,   448,   512,   640,   768,   896,   1024,  1280,  1536,  1792,
      2048,  2560,  3072,  3584,  4096,  5120,  6144,  7168,  8192,  10240, 12288, 14336,
      16384, 20480, 24576, 28672, 32768, 40960, 49152, 57344, 65536};
  const size_t n = sizeof(classes) / sizeof(classes[0]);
  assert_int_equal(n, 45);
  size_t k = 0;
  size_t last = 0;
  for (size_t size = 1; size <= LM_MEDIUM_OBJ_SIZE_MAX; size++) {
    size_t good = mi_good_size(size);
    if (good != last) {
      /* a new class starts right after the previous one: each size gets the smallest fit */
      assert_int_equal(size, last + 1);
      assert_true(k < n);
      assert_int_equal(good, classes[k]);
      k++;
      last = good;
    }
  }
  assert_int_equal(k, n);
  for (size_t i = 0; i < n; i++) assert_int_equal(lm_bin_size(lm_bin(classes[i])), classes[i]);
  assert_int_equal(mi_good_size(0), 8);
  /* Above 64 KiB: OS pages. */
  assert_int_equal(mi_good_size(65537), 69632);
  assert_int_equal(mi_good_size(3000000), 3002368);
  assert_int_equal(mi_good_size(SIZE_MAX), SIZE_MAX);
}

/* ---- pointer to page ------------------------------------------------------------------------- */

static void check_block_lookup(const lm_page_t* page, const uint8_t* block) {
  const uint8_t* probes[] = {block, block + page->block_size / 2, block + page->block_size - 1};
  for (size_t i = 0; i < 3; i++) {
    assert_ptr_equal(page_of(probes[i]), page);
    assert_ptr_equal(lm_page_block_of(page, probes[i]), block);
  }
}

static void test_core_pointer_to_page_lookup_for_first_interior_and_last_blocks(void** state) {
  (void)state;
  static const size_t sizes[] = {8, 100, 1000, 5000, 30000, 100000, LM_MiB,
                                 LM_LARGE_OBJ_SIZE_MAX + LM_MiB};
  for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
    uint8_t* p = mi_malloc(sizes[i]);
    assert_non_null(p);
    lm_page_t* page = page_of(p);
    assert_true(page->block_size >= sizes[i] + LM_PADDING_SIZE);
    /* debug builds pad each block and report exactly the requested size */
    assert_int_equal(mi_usable_size(p), LM_PADDING ? sizes[i] : page->block_size);
    assert_ptr_equal(lm_page_heap(page), lm_heap_get_default());
    assert_true(page->used >= 1);
    uint8_t* start = page->page_start;
    size_t bsize = page->block_size;
    assert_true(p >= start && p < start + (size_t)page->reserved * bsize);
    assert_int_equal((size_t)(p - start) % bsize, 0);
    check_block_lookup(page, p);
    check_block_lookup(page, start);                                      /* first */
    check_block_lookup(page, start + (size_t)(page->reserved / 2) * bsize); /* interior */
    check_block_lookup(page, start + (size_t)(page->reserved - 1) * bsize); /* last */
    memset(p, 0x5c, sizes[i]);
    mi_free(p);
  }
}

/* ---- free lists ------------------------------------------------------------------------------ */

static void test_core_page_accounting_holds_after_local_and_remote_frees(void** state) {
  (void)state;
  enum { N = 200, LOCAL = 50, REMOTE = 50 };
  const size_t size = 112 - LM_PADDING_SIZE; /* the 112-byte class, unused elsewhere: a fresh page */
  static void* blocks[N];
  for (size_t i = 0; i < N; i++) {
    blocks[i] = mi_malloc(size);
    assert_non_null(blocks[i]);
  }
  lm_page_t* page = page_of(blocks[0]);
  for (size_t i = 0; i < N; i++) assert_ptr_equal(page_of(blocks[i]), page);
  assert_int_equal(page->block_size, 112);
  assert_int_equal(page->used, N);
  check_page_accounting(page);

  for (size_t i = 0; i < LOCAL; i++) mi_free(blocks[i]);
  assert_int_equal(page->used, N - LOCAL);
  check_page_accounting(page);

  free_remotely(&blocks[LOCAL], REMOTE);
  assert_int_equal(thread_free_length(page), REMOTE);
  assert_int_equal(page->used, N - LOCAL); /* remote frees count until collected */
  check_page_accounting(page);

  lm_page_collect(page, true);
  assert_int_equal(thread_free_length(page), 0);
  assert_int_equal(page->used, N - LOCAL - REMOTE);
  check_page_accounting(page);

  /* The freed blocks are handed out again, and the lists stay consistent. */
  for (size_t i = 0; i < LOCAL + REMOTE; i++) {
    blocks[i] = mi_malloc(size);
    assert_ptr_equal(page_of(blocks[i]), page);
  }
  check_page_accounting(page);
  free_remotely(&blocks[0], 10);
  for (size_t i = 10; i < N; i++) mi_free(blocks[i]);
  check_page_accounting(page);
  mi_collect(false);
}

/* The thread-free word carries the list's length (64-bit), so taking the list over needs no
 * walk: the length counts pushes, survives state changes, and stops counting (0: walk) when it
 * would overflow. Then a page whose blocks are all handed out gets exactly the remote frees back
 * in `free`, with `used` right, by a collect that does not force. */
static void test_core_thread_free_list_carries_its_length(void** state) {
  (void)state;
  static lm_block_t b1, b2;
  uintptr_t tf = LM_TF_NO_DELAYED;
  tf = lm_tf_push(tf, &b1);
  tf = lm_tf_push(tf, &b2);
  assert_ptr_equal(lm_tf_block(tf), &b2);
  assert_int_equal(lm_tf_state(tf), LM_TF_NO_DELAYED);
#if LM_INTPTR_BITS == 64
  {
    assert_int_equal(lm_tf_count(tf), 2);
    tf = (tf & ~(uintptr_t)LM_TF_STATE_MASK) | LM_TF_NEVER_DELAYED; /* a state change */
    assert_int_equal(lm_tf_count(tf), 2);
    assert_ptr_equal(lm_tf_block(tf), &b2);
    uintptr_t full = (uintptr_t)&b1 | LM_TF_NO_DELAYED | ((uintptr_t)0xFFFF << 48);
    assert_int_equal(lm_tf_count(lm_tf_push(full, &b2)), 0);
    assert_int_equal(lm_tf_count(lm_tf_push(lm_tf_push(full, &b2), &b1)), 0);
    assert_ptr_equal(lm_tf_block(lm_tf_push(full, &b2)), &b2);
  }
#else
  assert_int_equal(lm_tf_count(tf), 0); /* 32-bit: no room for a length; the owner walks */
#endif

  mi_heap_t* heap = mi_heap_new();
  assert_non_null(heap);
  mi_heap_guarded_set_sample_rate(heap, 0, 0);
  const size_t size = 208 - LM_PADDING_SIZE;
  enum { MAX = 1024, REMOTE = 37 };
  static void* blocks[MAX];
  size_t n = 0;
  blocks[n++] = mi_heap_malloc(heap, size);
  lm_page_t* page = page_of(blocks[0]);
  while (n < MAX) { /* every block of the page handed out: its free list is empty */
    void* p = mi_heap_malloc(heap, size);
    if (page_of(p) != page) {
      mi_free(p);
      break;
    }
    blocks[n++] = p;
  }
  assert_true(n > REMOTE && n < MAX);
  assert_null(page->free);
  /* (the page sits in the full queue: the first remote free goes to the heap's delayed list) */
  free_remotely(&blocks[3], REMOTE);
  size_t listed = thread_free_length(page);
  assert_true(listed >= REMOTE - 1 && listed <= REMOTE);
  if (sizeof(void*) == 8) assert_int_equal(lm_tf_count(atomic_load(&page->xthread_free)), listed);
  lm_page_collect(page, false);
  assert_int_equal(thread_free_length(page), 0);
  assert_int_equal(list_length(page, page->free), listed);
  assert_int_equal(page->used, n - listed);
  check_page_accounting(page);
  mi_heap_destroy(heap);
}

/* Outside secure builds a block freed by its owner is the next one of its size handed out, so
 * what a program makes after dropping a temporary lands in the temporary's place; secure
 * builds never hand a freed block straight back. */
static void test_core_freed_block_is_reused_first_outside_secure_builds(void** state) {
  (void)state;
  mi_heap_t* heap = mi_heap_new();
  assert_non_null(heap);
  mi_heap_guarded_set_sample_rate(heap, 0, 0);
  const size_t size = 240 - LM_PADDING_SIZE;
  void* keep[8];
  for (size_t i = 0; i < 8; i++) keep[i] = mi_heap_malloc(heap, size);
  void* temp = mi_heap_malloc(heap, size);
  lm_page_t* page = page_of(temp);
  mi_free(temp);
  void* next = mi_heap_malloc(heap, size);
  assert_ptr_equal(page_of(next), page);
  if (LM_SECURE) assert_ptr_not_equal(next, temp);
  else assert_ptr_equal(next, temp);
  check_page_accounting(page);
  mi_free(next);
  for (size_t i = 0; i < 8; i++) mi_free(keep[i]);
  mi_heap_destroy(heap);
}

/* A fresh heap (so fresh pages) with guarded sampling off: a sampled block would come from
 * another size class. */
static mi_heap_t* unsampled_heap(void) {
  mi_heap_t* heap = mi_heap_new();
  assert_non_null(heap);
  mi_heap_guarded_set_sample_rate(heap, 0, 0);
  return heap;
}

/* Secure builds hand a fresh page's blocks out in an order an overflow cannot count on: few
 * consecutive allocations are memory neighbours. Other builds (and secure builds made with
 * -Dsecure_shuffle=false) go in address order. */

static void test_core_fresh_blocks_come_in_random_order_in_secure_builds(void** state) {
  (void)state;
  enum { N = 300 }; /* one 64 KiB page */
  /* 112-byte blocks: 36 to an extent, so 8 runs (smaller extents have fewer) */
  const size_t size = 112 - LM_PADDING_SIZE;
  static uint8_t* blocks[N];
  mi_heap_t* heap = unsampled_heap();
  for (size_t i = 0; i < N; i++) {
    blocks[i] = mi_heap_malloc(heap, size);
    assert_non_null(blocks[i]);
  }
  lm_page_t* page = page_of(blocks[0]);
  assert_int_equal(page->block_size, 112);
  size_t neighbours = 0;
  for (size_t i = 0; i + 1 < N; i++) {
    assert_ptr_equal(page_of(blocks[i + 1]), page);
    if (blocks[i + 1] == blocks[i] + page->block_size) neighbours++;
  }
  check_page_accounting(page);
  /* 8 runs: a simulation of the draw gives 53 neighbours of 299 on average, at most 89 in
   * 20000 runs */
  if (LM_SECURE_SHUFFLE) assert_true(neighbours < N / 3);
  else assert_true(neighbours > N * 9 / 10);
  mi_heap_destroy(heap);
}

/* Secure builds also vary the slow path (when a page's free list runs out): half the time a
 * page that can still grow hands out fresh blocks before the block just freed, and a quarter
 * of the time the next page of the size class takes over. Other builds are deterministic: the
 * freed block comes back, and a page is used until it is full. */
static void test_core_slow_path_varies_reuse_and_page_in_secure_builds(void** state) {
  (void)state;
  const size_t size = 1000;
  enum { TRIALS = 64, PAGE_TRIALS = 4 };
  size_t reused = 0;
  for (size_t t = 0; t < TRIALS; t++) {
    mi_heap_t* heap = unsampled_heap();
    uint8_t* first = mi_heap_malloc(heap, size);
    assert_non_null(first);
    lm_page_t* page = page_of(first);
    for (size_t n = 0; page->free != NULL; n++) { /* use up the page's free list */
      assert_true(n < 1000);
      assert_ptr_equal(page_of(mi_heap_malloc(heap, size)), page);
    }
    assert_true(page->capacity < page->reserved); /* it could grow */
    mi_free(first);
    uint8_t* again = mi_heap_malloc(heap, size);
    if (again == first) reused++;
    mi_heap_destroy(heap);
  }
  if (LM_SECURE_SHUFFLE) assert_in_range(reused, TRIALS / 8, TRIALS * 7 / 8); /* about half */
  else assert_int_equal(reused, TRIALS);

  /* Two pages with room: the second one in use, one block freed in the first (full) one. */
  size_t switched = 0;
  for (size_t t = 0; t < PAGE_TRIALS; t++) {
    mi_heap_t* heap = unsampled_heap();
    void* first = mi_heap_malloc(heap, size);
    lm_page_t* page1 = page_of(first);
    lm_page_t* page2 = NULL;
    for (size_t n = 0; page2 == NULL; n++) {
      assert_true(n < 1000);
      void* p = mi_heap_malloc(heap, size);
      if (page_of(p) != page1) page2 = page_of(p);
    }
    mi_free(first); /* page1 has room again, behind page2 */
    size_t left = page2->reserved - page2->used, from2 = 0;
    for (size_t n = 0; n < left; n++) {
      if (page_of(mi_heap_malloc(heap, size)) != page2) break;
      from2++;
    }
    if (from2 < left) switched++;
    mi_heap_destroy(heap);
  }
  if (LM_SECURE_SHUFFLE) assert_true(switched > 0); /* each trial misses about 1 time in 75 */
  else assert_int_equal(switched, 0);
}

/* Allocate blocks of `size` until one lands on a second page: the first page is then full.
 * Returns the count; blocks[count - 1] opened the second page. */
static size_t fill_page(size_t size, void** blocks, size_t max) {
  blocks[0] = mi_malloc(size);
  assert_non_null(blocks[0]);
  lm_page_t* page = page_of(blocks[0]);
  size_t n = 1;
  while (page_of(blocks[n - 1]) == page) {
    assert_true(n < max);
    blocks[n] = mi_malloc(size);
    assert_non_null(blocks[n]);
    n++;
  }
  return n;
}

static void test_core_remote_free_into_a_full_page_reaches_its_owner(void** state) {
  (void)state;
  const size_t size = 8192 - LM_PADDING_SIZE; /* 8 blocks per small page */
  lm_heap_t* heap = lm_heap_get_default();
  void* blocks[16];
  size_t n = fill_page(size, blocks, 16);
  lm_page_t* page = page_of(blocks[0]);
  assert_int_equal(n - 1, page->reserved); /* the last one opened a second page */
  assert_true(page->flags & LM_PAGE_IN_FULL);
  check_page_accounting(page);

  free_remotely(&blocks[3], 1);
  /* The owner is told through its delayed list; the page still counts the block. */
  assert_ptr_equal(atomic_load(&heap->thread_delayed_free), blocks[3]);
  assert_int_equal(page->used, page->reserved);
  check_page_accounting(page);

  void* more = mi_malloc(size); /* the slow path takes the delayed free */
  assert_non_null(more);
  assert_null(atomic_load(&heap->thread_delayed_free));
  assert_false(page->flags & LM_PAGE_IN_FULL);
  /* The block waits on the page's thread-free list, as a plain remote free would (counted in
   * use until the page is collected): the drainer may give back a page all of whose blocks
   * came back that way. */
  if (LM_TF_COUNTED) { /* (32-bit targets, without a count on that list, collect it at once) */
    assert_int_equal(thread_free_length(page), 1);
    assert_int_equal(page->used, page->reserved);
    check_page_accounting(page);
  }
  lm_page_collect(page, true);
  assert_int_equal(page->used, page->reserved - 1);
  check_page_accounting(page);
  mi_free(more);
  for (size_t i = 0; i < n; i++) {
    if (i != 3) mi_free(blocks[i]);
  }
  mi_collect(false);
}

#define DRAIN_TEST_SIZE (8192 - LM_PADDING_SIZE) /* 8 blocks per small page */

/* A full page of DRAIN_TEST_SIZE blocks, blocks[0 .. *in_page); blocks[*in_page] opened the next
 * page. */
static lm_page_t* fill_full_page(void** blocks, size_t* in_page) {
  size_t n = fill_page(DRAIN_TEST_SIZE, blocks, 16);
  lm_page_t* page = page_of(blocks[0]);
  *in_page = n - 1;
  assert_true(page->flags & LM_PAGE_IN_FULL);
  return page;
}

static void* drain_heaps_main(void* arg) {
  (void)arg;
  lm_drain_idle_heaps(true); /* (as mi_collect(true) on another thread does) */
  return NULL;
}

/* A page that is not full any more, all of whose blocks other threads freed while its owner
 * allocates only other sizes (or nothing: a main thread in pthread_join), is given back by the
 * drainer: reset in place, its memory discarded, left in its queue for the owner to start
 * afresh. Before, it stayed resident until the owner searched that size again (bench
 * threadchurn: main's first pages, 14.6 MiB, for the whole run). */
static void test_core_page_other_threads_emptied_is_given_back_while_its_owner_idles(void** state) {
  (void)state;
  if (!LM_TF_COUNTED) skip(); /* 32-bit: the owner collects delayed frees at once (heap.c) */
  const size_t size = DRAIN_TEST_SIZE;
  lm_heap_t* heap = lm_heap_get_default();
  void* blocks[16];
  size_t in_page;
  lm_page_t* page = fill_full_page(blocks, &in_page);
  free_remotely(&blocks[0], 1);
  void* other = mi_malloc(48); /* takes the delayed free: the page has room again */
  assert_non_null(other);
  assert_false(page->flags & LM_PAGE_IN_FULL);
  lm_page_queue_t* pq = &heap->pages[lm_bin(page->block_size)];
  assert_ptr_not_equal(pq->first, page); /* (the first page of a size is never taken) */
  free_remotely(&blocks[1], in_page - 1);
  assert_int_equal(thread_free_length(page), page->capacity);
  size_t discards = fake_backend_calls(FAKE_OP_RESET) + fake_backend_calls(FAKE_OP_DECOMMIT);
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, drain_heaps_main, NULL), 0);
  assert_int_equal(pthread_join(t, NULL), 0);
  assert_int_equal(page->used, 0);
  assert_int_equal(page->capacity, 0);
  assert_int_equal(thread_free_length(page), 0);
  lm_backend_caps_t caps;
  fake_backend_get_caps(&caps);
  if (caps.has_decommit) { /* (wasm's memory cannot be given back: it stays for reuse) */
    assert_true(fake_backend_calls(FAKE_OP_RESET) + fake_backend_calls(FAKE_OP_DECOMMIT) > discards);
  }
  /* Still the owner's page, and usable: the owner fills it again when the next page is full. */
  void* again[16];
  size_t m = 0;
  while (m < 16) {
    again[m] = mi_malloc(size);
    assert_non_null(again[m]);
    memset(again[m], 0x5a, size);
    if (page_of(again[m++]) == page) break;
  }
  assert_ptr_equal(page_of(again[m - 1]), page);
  check_page_accounting(page);
  for (size_t i = 0; i < m; i++) mi_free(again[i]);
  mi_free(blocks[in_page]);
  mi_free(other);
  mi_collect(true);
}

static void* free_then_drain_main(void* arg) {
  free_blocks_main(arg);
  lm_drain_idle_heaps(false); /* a purger pass, a purge delay after that first remote free */
  return NULL;
}

/* The owner counts as idle from the remote free that started its delayed list: the drainer's
 * first look after it gives back a full page other threads emptied, if the owner took no slow
 * path in between. Before, that look only noted the owner's count of slow paths, and the page
 * went back one purge delay later (bench threadchurn: main's pages, 15 MiB, resident past the
 * run's peak). */
static void test_core_idle_owner_is_drained_at_the_first_look(void** state) {
  (void)state;
  if (!LM_TF_COUNTED) skip(); /* 32-bit: the owner collects delayed frees at once (heap.c) */
  lm_heap_t* heap = lm_heap_get_default();
  void* blocks[16];
  size_t in_page;
  lm_page_t* page = fill_full_page(blocks, &in_page);
  /* The first free goes onto the delayed list, the rest onto the page's thread-free list; the
   * owner waits in pthread_join meanwhile. */
  free_job_t job = {blocks, in_page};
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, free_then_drain_main, &job), 0);
  assert_int_equal(pthread_join(t, NULL), 0);
  assert_int_equal(page->used, 0);
  assert_int_equal(page->capacity, 0);
  assert_true(atomic_load(&heap->drained));
  void* more = mi_malloc(DRAIN_TEST_SIZE); /* the owner takes the reset page over */
  assert_non_null(more);
  assert_false(atomic_load(&heap->drained));
  mi_free(more);
  mi_free(blocks[in_page]);
  mi_collect(true);
}

/* A full page with blocks still live, of an owner that idles: the drainer gives back the memory
 * inside the blocks other threads freed (each keeps the OS page of its link, and of its canary
 * where blocks have padding), leaves live blocks and lists as they were, and gives nothing back
 * twice. Before, such pages stayed resident whole for as long as any block in them lived
 * (bench threadchurn: the main thread's first objects, freed by its workers). */
static void test_core_idle_owner_gives_back_blocks_others_freed_in_pages_still_used(void** state) {
  (void)state;
  if (!LM_TF_COUNTED) skip(); /* 32-bit: the owner collects delayed frees at once (heap.c) */
  const size_t size = 32 * 1024 - LM_PADDING_SIZE; /* 8 blocks of 8 OS pages a medium page */
  const size_t os_page = lm_os_page_size(&lm_process.arenas);
  void* blocks[16];
  size_t in_page = fill_page(size, blocks, 16) - 1;
  lm_page_t* page = page_of(blocks[0]);
  assert_true(page->flags & LM_PAGE_IN_FULL);
  for (size_t i = 0; i < in_page; i++) memset(blocks[i], 0x77, size);
  void* freed[8];
  size_t nfreed = 0;
  for (size_t i = 0; i < in_page; i += 2) freed[nfreed++] = blocks[i];
  free_remotely(freed, nfreed);
  size_t discards = fake_backend_calls(FAKE_OP_RESET) + fake_backend_calls(FAKE_OP_DECOMMIT);
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, drain_heaps_main, NULL), 0);
  assert_int_equal(pthread_join(t, NULL), 0);
  size_t after = fake_backend_calls(FAKE_OP_RESET) + fake_backend_calls(FAKE_OP_DECOMMIT);
  lm_backend_caps_t caps;
  fake_backend_get_caps(&caps);
  if (caps.has_decommit && os_page * 4 <= size) { /* (wasm: nothing goes back) */
    assert_int_equal(after - discards, nfreed);
    for (size_t i = 0; i < nfreed; i++) { /* zero (decommitted) or scribbled (reset) */
      uint8_t* middle = (uint8_t*)freed[i] + size / 2;
      lm_track_open(middle, 1); /* (a freed block: sanitizers would object) */
      assert_int_not_equal(*middle, 0x77);
      lm_track_close(middle, 1);
    }
  }
  for (size_t i = 1; i < in_page; i += 2) { /* the live blocks are untouched */
    for (size_t k = 0; k < size; k += 512) assert_int_equal(((uint8_t*)blocks[i])[k], 0x77);
  }
  assert_int_equal(page->used, page->reserved); /* (still counted until the owner collects) */
  check_page_accounting(page);

  assert_int_equal(pthread_create(&t, NULL, drain_heaps_main, NULL), 0);
  assert_int_equal(pthread_join(t, NULL), 0);
  assert_int_equal(fake_backend_calls(FAKE_OP_RESET) + fake_backend_calls(FAKE_OP_DECOMMIT),
                   after); /* marked: not again */

  /* The owner frees a live block above a freed one (checked builds check the canary below),
   * then takes the freed blocks back (after the room of the page blocks[in_page] opened) and
   * uses them whole (debug builds check their freed fill). */
  mi_free(blocks[1]);
  void* again[24];
  size_t nagain = 0, found = 0;
  while (found < nfreed && nagain < 24) {
    void* p = mi_malloc(size);
    assert_non_null(p);
    memset(p, 0x11, size);
    for (size_t i = 0; i < nfreed; i++) found += p == freed[i];
    again[nagain++] = p;
  }
  assert_int_equal(found, nfreed);
  check_page_accounting(page);
  for (size_t i = 3; i < in_page; i += 2) {
    for (size_t k = 0; k < size; k += 512) assert_int_equal(((uint8_t*)blocks[i])[k], 0x77);
  }
  for (size_t i = 0; i < nagain; i++) mi_free(again[i]);
  for (size_t i = 3; i < in_page; i += 2) mi_free(blocks[i]);
  mi_free(blocks[in_page]);
  mi_collect(true);
}

/* A remote free into a full page hands its block to the owner heap's delayed list while the
 * page's state says DELAYED_FREEING, and ends that state with a CAS on the page's list word
 * afterwards. A drainer that takes the delayed list meanwhile waits for that end before it
 * moves the block onto the page's thread-free list: from there the owner may free the page,
 * under the remote free still writing to it (TSan caught it in stress_threads: lm_heap_undrain
 * freed the page while lm_free_block_remote read its list word). */
static void test_core_drainer_waits_for_a_remote_free_to_end_its_hand_over(void** state) {
  (void)state;
  lm_heap_t* heap = lm_heap_get_default();
  void* blocks[16];
  size_t in_page;
  lm_page_t* page = fill_full_page(blocks, &in_page);
  /* The first half of lm_free_block_remote, as a thread stopped in the middle would leave it. */
  lm_block_t* block = lm_page_block_of(page, blocks[0]);
  uintptr_t tfree = atomic_load(&page->xthread_free);
  assert_int_equal(lm_tf_state(tfree), LM_TF_USE_DELAYED);
  uintptr_t freeing = (tfree & ~(uintptr_t)LM_TF_STATE_MASK) | LM_TF_DELAYED_FREEING;
  assert_true(atomic_compare_exchange_strong(&page->xthread_free, &tfree, freeing));
  lm_heap_delayed_push(heap, block);
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, drain_heaps_main, NULL), 0);
  struct timespec pause = {0, 50 * 1000 * 1000};
  nanosleep(&pause, NULL);
  /* (seen now, asserted once the hand-over has ended: a failed assertion must not leave the
   * page in DELAYED_FREEING for the tests that follow) */
  lm_block_t* listed = atomic_load(&heap->thread_delayed_free);
  size_t moved = thread_free_length(page);
  /* The second half: the state ends, and the block goes its way. */
  tfree = atomic_load(&page->xthread_free);
  assert_int_equal(lm_tf_state(tfree), LM_TF_DELAYED_FREEING);
  uintptr_t ended = (tfree & ~(uintptr_t)LM_TF_STATE_MASK) | LM_TF_NO_DELAYED;
  assert_true(atomic_compare_exchange_strong(&page->xthread_free, &tfree, ended));
  assert_int_equal(pthread_join(t, NULL), 0);
  /* The drainer had taken the list, and held the block until the hand-over ended. */
  assert_null(listed);
  assert_int_equal(moved, 0);
  /* A page with live blocks: its freed block is back on the delayed list for the owner. */
  assert_ptr_equal(atomic_load(&heap->thread_delayed_free), block);
  assert_true(atomic_load(&heap->drained));
  void* more = mi_malloc(DRAIN_TEST_SIZE); /* the owner takes the freed block over */
  assert_non_null(more);
  assert_false(atomic_load(&heap->drained));
  assert_null(atomic_load(&heap->thread_delayed_free));
  check_page_accounting(page);
  mi_free(more);
  for (size_t i = 1; i <= in_page; i++) mi_free(blocks[i]);
  mi_collect(true);
}

typedef struct unregister_job_s {
  lm_tld_t* tld;
  _Atomic(bool) done;
} unregister_job_t;

static void* unregister_main(void* arg) {
  unregister_job_t* job = arg;
  lm_tld_unregister(job->tld);
  atomic_store(&job->done, true);
  return NULL;
}

static bool tld_is_listed(const lm_tld_t* tld) {
  lm_spin_lock(&lm_process.tlds_lock);
  bool found = false;
  for (const lm_tld_t* t = lm_process.tlds; t != NULL; t = t->live_next) found |= t == tld;
  lm_spin_unlock(&lm_process.tlds_lock);
  return found;
}

/* The drainer drops the list lock while it drains a thread (draining up) and steps to the next
 * thread through it afterwards: a thread that ends meanwhile stays listed, its data intact,
 * until the drainer lowers the flag under the lock. */
static void test_core_thread_being_drained_leaves_the_list_after_the_drainer(void** state) {
  (void)state;
  /* No purger pass may drain the list meanwhile (it would claim the flag raised below): the
   * fake clock stands still, so a drain an earlier test scheduled stays in the future (one
   * already due is waited out); nothing here schedules another. */
  const lm_backend_t* backend = lm_process.backend;
  struct timespec tick = {0, 1000 * 1000};
  for (int i = 0; i < 5000; i++) {
    int64_t due = atomic_load(&lm_process.drain_due);
    if (due == 0 || due > backend->clock_ms()) break;
    nanosleep(&tick, NULL);
  }
  int64_t due = atomic_load(&lm_process.drain_due);
  assert_true(due == 0 || due > backend->clock_ms());
  static lm_tld_t tld; /* a thread's data with no heaps: the list and the flags are tested */
  memset(&tld, 0, sizeof(tld));
  lm_tld_register(&tld);
  assert_true(tld_is_listed(&tld));
  atomic_store(&tld.draining, true); /* as drain_claim does */
  unregister_job_t job = {&tld, false};
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, unregister_main, &job), 0);
  struct timespec pause = {0, 50 * 1000 * 1000};
  nanosleep(&pause, NULL);
  assert_false(atomic_load(&job.done));
  assert_true(tld_is_listed(&tld));
  lm_spin_lock(&lm_process.tlds_lock); /* the drainer's step to the next thread */
  atomic_store(&tld.draining, false);
  lm_spin_unlock(&lm_process.tlds_lock);
  assert_int_equal(pthread_join(t, NULL), 0);
  assert_true(atomic_load(&job.done));
  assert_false(tld_is_listed(&tld));
}

/* A remote free into a full page is taken over at the owner's next malloc of any size, even
 * one the fast path could serve: a thread that only ever frees and re-allocates one small block
 * (a heartbeat) would otherwise never look, and memory other threads freed into its full pages
 * would stay out of reach of the purge while it idles (bench server: idle RSS 22-24 MiB without
 * this, 13-14 MiB with it). */
static void test_core_delayed_free_is_taken_at_the_next_malloc_of_any_size(void** state) {
  (void)state;
  const size_t size = 8192 - LM_PADDING_SIZE; /* 8 blocks per small page */
  lm_heap_t* heap = lm_heap_get_default();
  void* small = mi_malloc(48); /* a page of 48-byte blocks with room: the fast path serves it */
  assert_non_null(small);
  mi_free(small);
  void* blocks[16];
  size_t n = fill_page(size, blocks, 16);
  lm_page_t* page = page_of(blocks[0]);
  assert_true(page->flags & LM_PAGE_IN_FULL);
  free_remotely(&blocks[2], 1);
  assert_ptr_equal(atomic_load(&heap->thread_delayed_free), blocks[2]);
  small = mi_malloc(48);
  assert_non_null(small);
  assert_null(atomic_load(&heap->thread_delayed_free));
  assert_false(page->flags & LM_PAGE_IN_FULL);
  assert_int_equal(thread_free_length(page), LM_TF_COUNTED ? 1 : 0); /* (see the test above) */
  check_page_accounting(page);
  mi_free(small);
  for (size_t i = 0; i < n; i++) {
    if (i != 2) mi_free(blocks[i]);
  }
  mi_collect(false);
}

/* A program cycling malloc/free pairs through many size classes keeps one retired page per
 * class: the pages are not freed and made again (each made page must not age the others). */
static void test_core_pairs_over_many_sizes_keep_their_retired_pages(void** state) {
  (void)state;
  mi_heap_t* heap = mi_heap_new();
  assert_non_null(heap);
  int64_t made_before = atomic_load(&lm_process.segments.page_stats.total);
  for (size_t i = 0; i < 200000; i++) {
    size_t size = 8 + (i % 64) * 8; /* 8..512 bytes */
    uint8_t* p = mi_heap_malloc(heap, size);
    assert_non_null(p);
    p[0] = (uint8_t)i;
    mi_free(p);
  }
  int64_t made = atomic_load(&lm_process.segments.page_stats.total) - made_before;
  if (made > 200) fail_msg("%lld pages made for 200000 pairs over 64 sizes", (long long)made);
  mi_heap_destroy(heap); /* its pages go back whole (delete would hand them to the default heap) */
}

static void test_core_freed_page_is_retired_and_direct_entry_follows_queue_head(void** state) {
  (void)state;
  const size_t size = 640 - LM_PADDING_SIZE; /* a size class no other test uses */
  lm_heap_t* heap = lm_heap_get_default();
  uint8_t bin = lm_bin(size + LM_PADDING_SIZE);
  lm_page_queue_t* pq = &heap->pages[bin];
  const size_t wsize = (size + LM_PADDING_SIZE + 7) / 8;
  assert_null(pq->first);
  assert_ptr_equal(heap->pages_free_direct[wsize], &lm_page_empty);

  static void* a[200];
  size_t n = 0;
  a[n++] = mi_malloc(size);
  lm_page_t* page1 = page_of(a[0]);
  assert_ptr_equal(pq->first, page1);
  assert_ptr_equal(heap->pages_free_direct[wsize], page1);
  void* b = NULL;
  while (b == NULL) {
    void* p = mi_malloc(size);
    assert_non_null(p);
    if (page_of(p) == page1) a[n++] = p;
    else b = p;
    assert_true(n < 200);
  }
  lm_page_t* page2 = page_of(b);
  assert_int_equal(n, page1->reserved);
  assert_true(page1->flags & LM_PAGE_IN_FULL);
  assert_ptr_equal(pq->first, page2);
  /* Every word size of the bin reads the queue head. */
  for (size_t w = 1; w < LM_PAGES_DIRECT && w * 8 <= LM_SMALL_SIZE_MAX; w++) {
    if (lm_bin(w * 8) == bin) assert_ptr_equal(heap->pages_free_direct[w], page2);
  }

  mi_free(a[0]); /* page1 leaves the full queue, behind page2 */
  assert_false(page1->flags & LM_PAGE_IN_FULL);
  assert_ptr_equal(pq->first, page2);
  assert_ptr_equal(pq->last, page1);
  assert_ptr_equal(heap->pages_free_direct[wsize], page2);

  mi_free(b); /* page2 is empty and not alone in its queue: freed, page1 becomes the head */
  assert_ptr_equal(pq->first, page1);
  assert_ptr_equal(pq->last, page1);
  for (size_t w = 1; w < LM_PAGES_DIRECT && w * 8 <= LM_SMALL_SIZE_MAX; w++) {
    if (lm_bin(w * 8) == bin) assert_ptr_equal(heap->pages_free_direct[w], page1);
  }

  for (size_t i = 1; i < n; i++) mi_free(a[i]);
  /* The only page of its size: retired (kept a while), still the head. */
  assert_int_equal(page1->used, 0);
  assert_true(page1->retire_expire > 0);
  assert_ptr_equal(pq->first, page1);
  assert_ptr_equal(heap->pages_free_direct[wsize], page1);

  mi_collect(false); /* then freed: the direct entries fall back to the empty page */
  assert_null(pq->first);
  for (size_t w = 1; w < LM_PAGES_DIRECT && w * 8 <= LM_SMALL_SIZE_MAX; w++) {
    if (lm_bin(w * 8) == bin) assert_ptr_equal(heap->pages_free_direct[w], &lm_page_empty);
  }
}

/* Every word size of the direct table reads the head of its bin's queue, for every small bin
 * (the 16-byte steps of the smallest bins included), while pages come and go. */
static void test_core_direct_table_maps_every_word_size_to_its_bin(void** state) {
  (void)state;
  mi_heap_t* mheap = mi_heap_new();
  assert_non_null(mheap);
  mi_heap_guarded_set_sample_rate(mheap, 0, 0);
  lm_heap_t* heap = (lm_heap_t*)mheap;
  enum { SIZES = LM_SMALL_SIZE_MAX + 1 };
  static void* blocks[SIZES];
  for (size_t size = 0; size + LM_PADDING_SIZE <= LM_SMALL_SIZE_MAX; size++) {
    blocks[size] = mi_heap_malloc(mheap, size);
    assert_non_null(blocks[size]);
  }
  for (size_t w = 0; w * 8 <= LM_SMALL_SIZE_MAX; w++) {
    lm_page_t* first = heap->pages[lm_bin(w * 8)].first;
    assert_non_null(first);
    assert_ptr_equal(heap->pages_free_direct[w], first);
  }
  for (size_t size = 0; size + LM_PADDING_SIZE <= LM_SMALL_SIZE_MAX; size++) mi_free(blocks[size]);
  mi_heap_collect(mheap, true); /* every page freed: each entry falls back to the empty page */
  for (size_t w = 0; w * 8 <= LM_SMALL_SIZE_MAX; w++) {
    assert_ptr_equal(heap->pages_free_direct[w], &lm_page_empty);
  }
  mi_heap_delete(mheap);
}

/* ---- aligned allocation ---------------------------------------------------------------------- */

static void test_core_aligned_allocation_for_every_power_of_two(void** state) {
  (void)state;
  static const size_t sizes[] = {1, 24, 1000, 70000};
  for (size_t align = 1; align <= 32 * LM_MiB; align *= 2) {
    for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
      size_t size = sizes[s];
      uint8_t* p = mi_malloc_aligned(size, align);
      assert_non_null(p);
      assert_int_equal((uintptr_t)p % align, 0);
      assert_true(mi_usable_size(p) >= size);
      /* Beyond 16 MiB alignment only the block start maps back (it sits one segment past its
       * header); below, every byte of the block does. */
      if (align <= LM_BLOCK_ALIGNMENT_MAX) assert_ptr_equal(page_of(p), page_of(p + size - 1));
      assert_true(page_of(p)->block_size >= size);
      memset(p, 0xcd, size);
      mi_free(p);

      const size_t offset = 16;
      p = mi_malloc_aligned_at(size + offset, align, offset);
      if (align > LM_BLOCK_ALIGNMENT_MAX) {
        assert_null(p); /* as upstream: no offset with alignments beyond 16 MiB */
        continue;
      }
      assert_non_null(p);
      assert_int_equal(((uintptr_t)p + offset) % align, 0);
      assert_true(mi_usable_size(p) >= size + offset);
      memset(p, 0xce, size + offset);
      mi_free(p);
    }
  }
  errno = 0;
  assert_null(mi_malloc_aligned(16, 3));
  assert_int_equal(errno, EINVAL);
  mi_collect(false);
}

/* ---- errors ---------------------------------------------------------------------------------- */

static void test_core_calloc_overflow_returns_null_with_enomem(void** state) {
  (void)state;
  /* volatile: keep the compiler from judging the sizes at compile time */
  volatile size_t half = SIZE_MAX / 2 + 1, eighth = SIZE_MAX / 8, max = SIZE_MAX;
  errno = 0;
  assert_null(mi_calloc(half, 2));
  assert_int_equal(errno, ENOMEM);
  errno = 0;
  assert_null(mi_calloc(2, half));
  assert_int_equal(errno, ENOMEM);
  errno = 0;
  assert_null(mi_mallocn(eighth, 16));
  assert_int_equal(errno, ENOMEM);
  errno = 0;
  assert_null(mi_malloc(max));
  assert_int_equal(errno, ENOMEM);
  void* p = mi_calloc(0, 100);
  assert_non_null(p); /* like malloc(0): a unique block */
  mi_free(p);
}

/* ---- fault injection ------------------------------------------------------------------------- */

#define MAX_CLAIMS 512
static void* claimed[MAX_CLAIMS];
static lm_memid_t claimed_memid[MAX_CLAIMS];
static size_t claimed_count;

/* Take every free block of the existing arenas (without committing anything), so that the next
 * segment needs a new arena. Reserve must be failing, or arenas would be added forever. */
static void claim_all_arena_blocks(void) {
  claimed_count = 0;
  for (;;) {
    assert_true(claimed_count < MAX_CLAIMS);
    lm_memid_t m;
    void* p = lm_arena_alloc(&lm_process.arenas, SEG, SEG, 0, false, 0, &m);
    if (p == NULL) break;
    assert_int_equal(m.kind, LM_MEM_ARENA);
    claimed[claimed_count] = p;
    claimed_memid[claimed_count++] = m;
  }
}
static void release_claimed_blocks(void) {
  for (size_t i = 0; i < claimed_count; i++) {
    lm_arena_free(&lm_process.arenas, claimed[i], SEG, &claimed_memid[i]);
  }
  claimed_count = 0;
}

#define MAX_HELD 32
static void* held[MAX_HELD];
static size_t held_count;

/* Allocate blocks of `size` while the thread's segments still have room for them, so that the
 * next one needs a new segment. */
static void fill_spans_for(size_t size) {
  lm_segments_tld_t* stld = &lm_heap_get_default()->tld->segments;
  held_count = 0;
  while (lm_segment_span_available(stld, lm_good_size_large(size + LM_PADDING_SIZE), 0)) {
    assert_true(held_count < MAX_HELD);
    held[held_count] = mi_malloc(size);
    assert_non_null(held[held_count]);
    held_count++;
  }
}
static void free_held(void) {
  for (size_t i = 0; i < held_count; i++) mi_free(held[i]);
  held_count = 0;
}

/* a page of half a segment (debug builds add their padding to every request) */
static const size_t large = LM_LARGE_OBJ_SIZE_MAX - LM_PADDING_SIZE;

/* mi_malloc, mi_calloc and mi_malloc_aligned all need a new segment now, and must fail. */
static void check_allocations_fail_with_enomem(void) {
  errno = 0;
  assert_null(mi_malloc(large));
  assert_int_equal(errno, ENOMEM);
  errno = 0;
  assert_null(mi_calloc(1, large));
  assert_int_equal(errno, ENOMEM);
  errno = 0;
  assert_null(mi_malloc_aligned(large - 64 * LM_KiB, 64 * LM_KiB));
  assert_int_equal(errno, ENOMEM);
  errno = 0;
  assert_null(mi_malloc(100 * LM_MiB)); /* huge */
  assert_int_equal(errno, ENOMEM);
}

static void check_allocation_works_again(void) {
  void* p = mi_malloc(large);
  assert_non_null(p);
  memset(p, 1, large);
  void* q = mi_calloc(1, large);
  assert_non_null(q);
  void* r = mi_malloc_aligned(large - 64 * LM_KiB, 64 * LM_KiB);
  assert_non_null(r);
  assert_int_equal((uintptr_t)r % (64 * LM_KiB), 0);
  mi_free(p);
  mi_free(q);
  mi_free(r);
}

static void test_core_allocation_fails_cleanly_when_reserve_fails(void** state) {
  (void)state;
  mi_collect(true);
  size_t reservations = fake_backend_live_reservations();
  size_t arenas_before = atomic_load(&lm_process.arenas.arena_count);
  size_t failures = fake_backend_failures(FAKE_OP_RESERVE);

  fake_backend_fail_always(FAKE_OP_RESERVE, true);
  claim_all_arena_blocks();
  fill_spans_for(large);
  check_allocations_fail_with_enomem();
  assert_true(fake_backend_failures(FAKE_OP_RESERVE) > failures);
  assert_int_equal(fake_backend_live_reservations(), reservations);
  fake_backend_fail_always(FAKE_OP_RESERVE, false);

  free_held();
  release_claimed_blocks();
  check_allocation_works_again();
  mi_collect(true);
  /* Nothing partial stayed reserved: only whole arenas were added. */
  assert_int_equal(fake_backend_live_reservations(),
                   reservations + live_reservations_expected_delta(arenas_before));
}

static void test_core_allocation_fails_cleanly_when_commit_fails(void** state) {
  (void)state;
  if (fake_backend_imitates_wasm()) skip(); /* committed at reserve: no commit */
  mi_collect(true);
  size_t reservations = fake_backend_live_reservations();
  size_t arenas_before = atomic_load(&lm_process.arenas.arena_count);
  size_t failures = fake_backend_failures(FAKE_OP_COMMIT);

  fake_backend_fail_always(FAKE_OP_RESERVE, true);
  claim_all_arena_blocks(); /* the next segment goes into a new, lazily committed arena */
  fake_backend_fail_always(FAKE_OP_RESERVE, false);
  fill_spans_for(large);
  fake_backend_fail_always(FAKE_OP_COMMIT, true);
  errno = 0;
  assert_null(mi_malloc(large));
  assert_int_equal(errno, ENOMEM);
  errno = 0;
  assert_null(mi_calloc(1, large));
  assert_int_equal(errno, ENOMEM);
  errno = 0;
  assert_null(mi_malloc_aligned(large - 64 * LM_KiB, 64 * LM_KiB));
  assert_int_equal(errno, ENOMEM);
  assert_true(fake_backend_failures(FAKE_OP_COMMIT) > failures);
  fake_backend_fail_always(FAKE_OP_COMMIT, false);

  free_held();
  release_claimed_blocks();
  check_allocation_works_again();
  mi_collect(true);
  assert_int_equal(fake_backend_live_reservations(),
                   reservations + live_reservations_expected_delta(arenas_before));
}

/* Arena blocks (segments) in use, over every arena. */
static size_t arena_blocks_in_use(void) {
  size_t used = 0;
  for (size_t id = 1; id <= lm_arena_count(&lm_process.arenas); id++) {
    size_t size = 0;
    if (lm_arena_area(&lm_process.arenas, (int)id, &size) == NULL) continue;
    for (size_t b = 0; b < size / LM_ARENA_BLOCK_SIZE; b++) {
      used += lm_arena_block_in_use(&lm_process.arenas, (int)id, b) ? 1 : 0;
    }
  }
  return used;
}

/* Each memory call of a run of allocations failed in turn (the Nth reservation, then the Nth
 * commit, for N = 1, 2, ... until the run makes fewer): every allocation succeeds or returns
 * NULL with ENOMEM, and once its blocks are freed and collected nothing partial stays
 * reserved, in the backend or in an arena. */
static void test_core_failing_each_memory_call_in_turn_leaks_nothing(void** state) {
  (void)state;
  if (fake_backend_imitates_wasm()) skip(); /* no commit calls to fail in turn */
  static const size_t sizes[] = {64, 3000, 40 * LM_KiB, 300 * LM_KiB, 5 * LM_MiB, 40 * LM_MiB};
  enum { NS = sizeof(sizes) / sizeof(sizes[0]), PER = 3 };
  const fake_op_t ops[] = {FAKE_OP_RESERVE, FAKE_OP_COMMIT};
  for (size_t o = 0; o < 2; o++) {
    size_t swept = 0;
    for (size_t n = 1; n <= 200; n++) {
      mi_collect(true);
      size_t reservations = fake_backend_live_reservations();
      size_t arenas_before = atomic_load(&lm_process.arenas.arena_count);
      size_t blocks_used = arena_blocks_in_use();
      size_t failures = fake_backend_failures(ops[o]);
      fake_backend_fail_nth(ops[o], n);
      void* blocks[NS * PER];
      for (size_t s = 0; s < NS; s++) {
        for (size_t k = 0; k < PER; k++) {
          errno = 0;
          void* p = k == 0   ? mi_malloc(sizes[s])
                    : k == 1 ? mi_calloc(1, sizes[s])
                             : mi_malloc_aligned(sizes[s], 4096);
          if (p == NULL) assert_int_equal(errno, ENOMEM);
          blocks[s * PER + k] = p;
        }
      }
      fake_backend_fail_nth(ops[o], 0);
      for (size_t i = 0; i < NS * PER; i++) mi_free(blocks[i]);
      mi_collect(true);
      assert_int_equal(fake_backend_live_reservations(),
                       reservations + live_reservations_expected_delta(arenas_before));
      assert_int_equal(arena_blocks_in_use(), blocks_used); /* no segment left behind */
      if (fake_backend_failures(ops[o]) == failures) break; /* fewer than n calls: done */
      swept++;
    }
    print_message("fake backend, %s: %lu calls failed in turn\n", /* (no %zu in mingw's C library) */
                  ops[o] == FAKE_OP_RESERVE ? "reserve" : "commit", (unsigned long)swept);
    assert_true(swept > 0);
  }
}

/* ---- threads --------------------------------------------------------------------------------- */

typedef struct thread_result_s {
  void* first;
  int first_errno;
  void* second;
} thread_result_t;

static void* thread_reserve_fails_main(void* arg) {
  thread_result_t* r = arg;
  /* The thread's heap data comes from the OS: with reserve failing, nothing can start. */
  fake_backend_fail_always(FAKE_OP_RESERVE, true);
  errno = 0;
  r->first = mi_malloc(64);
  r->first_errno = errno;
  fake_backend_fail_always(FAKE_OP_RESERVE, false);
  r->second = mi_malloc(64);
  if (r->second != NULL) memset(r->second, 7, 64);
  mi_free(r->second);
  mi_thread_done();
  return NULL;
}

static void test_core_thread_start_fails_cleanly_when_reserve_fails(void** state) {
  (void)state;
  thread_result_t r = {0};
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, thread_reserve_fails_main, &r), 0);
  assert_int_equal(pthread_join(t, NULL), 0);
  assert_null(r.first);
  assert_int_equal(r.first_errno, ENOMEM);
  assert_non_null(r.second);
  assert_int_equal(lm_segments_abandoned_count(&lm_process.segments), 0);
}

typedef struct page_commit_result_s {
  void* first;
  void* failed[3];
  int failed_errno[3];
  size_t failures;
  void* after;
} page_commit_result_t;

static void* thread_page_commit_fails_main(void* arg) {
  page_commit_result_t* r = arg;
  /* A fresh thread has no segments: its first page opens one in the fresh arena, and the rest
   * of that segment is not committed yet (eager_commit=0). */
  r->first = mi_malloc(64);
  size_t failures = fake_backend_failures(FAKE_OP_COMMIT);
  fake_backend_fail_always(FAKE_OP_COMMIT, true);
  errno = 0;
  r->failed[0] = mi_malloc(2560);
  r->failed_errno[0] = errno;
  errno = 0;
  r->failed[1] = mi_calloc(1, 2560);
  r->failed_errno[1] = errno;
  errno = 0;
  r->failed[2] = mi_malloc_aligned(3000, 1024);
  r->failed_errno[2] = errno;
  r->failures = fake_backend_failures(FAKE_OP_COMMIT) - failures;
  fake_backend_fail_always(FAKE_OP_COMMIT, false);
  r->after = mi_malloc(2560);
  if (r->after != NULL) memset(r->after, 9, 2560);
  mi_free(r->after);
  mi_free(r->first);
  mi_thread_done();
  return NULL;
}

static void test_core_page_allocation_fails_cleanly_when_page_commit_fails(void** state) {
  (void)state;
  if (fake_backend_imitates_wasm()) skip(); /* committed at reserve: no commit */
  mi_collect(true);
  size_t reservations = fake_backend_live_reservations();
  size_t arenas_before = atomic_load(&lm_process.arenas.arena_count);
  fake_backend_fail_always(FAKE_OP_RESERVE, true);
  claim_all_arena_blocks(); /* the thread's segment goes into a new arena */
  fake_backend_fail_always(FAKE_OP_RESERVE, false);

  page_commit_result_t r = {0};
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, thread_page_commit_fails_main, &r), 0);
  assert_int_equal(pthread_join(t, NULL), 0);
  release_claimed_blocks();
  mi_collect(true);

  assert_non_null(r.first);
  for (size_t i = 0; i < 3; i++) {
    assert_null(r.failed[i]);
    assert_int_equal(r.failed_errno[i], ENOMEM);
  }
  assert_true(r.failures > 0);
  assert_non_null(r.after);
  assert_int_equal(lm_segments_abandoned_count(&lm_process.segments), 0);
  /* The thread data is cached for reuse (the previous test left it there): only whole arenas
   * were added. */
  assert_int_equal(fake_backend_live_reservations(),
                   reservations + live_reservations_expected_delta(arenas_before));
}

enum { EXIT_BLOCKS = 64 };
static void* exit_blocks[EXIT_BLOCKS];
static size_t exit_sizes[EXIT_BLOCKS];

static void* thread_alloc_and_exit_main(void* arg) {
  (void)arg;
  static const size_t sizes[] = {16, 200, 3000, 20000, 300000};
  for (size_t i = 0; i < EXIT_BLOCKS; i++) {
    exit_sizes[i] = sizes[i % 5];
    exit_blocks[i] = mi_malloc(exit_sizes[i]);
    if (exit_blocks[i] != NULL) memset(exit_blocks[i], (int)i, exit_sizes[i]);
  }
  return NULL; /* exits with every block live */
}

static void test_core_thread_exit_abandons_live_pages_and_collect_reclaims_them(void** state) {
  (void)state;
  if (fake_backend_imitates_wasm()) skip(); /* no threads */
  mi_collect(true);
  assert_int_equal(lm_segments_abandoned_count(&lm_process.segments), 0);
  size_t segments_before = atomic_load(&lm_process.segments.count);

  fake_backend_set_real_thread_exit(true); /* run the exit hook at real thread exit */
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, thread_alloc_and_exit_main, NULL), 0);
  assert_int_equal(pthread_join(t, NULL), 0);
  fake_backend_set_real_thread_exit(false);

  assert_true(lm_segments_abandoned_count(&lm_process.segments) > 0);
  for (size_t i = 0; i < EXIT_BLOCKS; i++) {
    uint8_t* p = exit_blocks[i];
    assert_non_null(p);
    assert_int_equal(lm_segment_owner(lm_segment_of(p)), 0); /* nobody owns them now */
    assert_null(lm_page_heap(page_of(p)));
    assert_int_equal(p[0], (uint8_t)i); /* the blocks are intact */
    assert_int_equal(p[exit_sizes[i] - 1], (uint8_t)i);
  }
  for (size_t i = 0; i < EXIT_BLOCKS; i++) mi_free(exit_blocks[i]);
  mi_collect(true);
  assert_int_equal(lm_segments_abandoned_count(&lm_process.segments), 0);
  assert_int_equal(atomic_load(&lm_process.segments.count), segments_before);
}

/* ---- zeroed memory --------------------------------------------------------------------------- */

static void test_core_calloc_returns_zeroed_memory(void** state) {
  (void)state;
  /* The fake scribbles memory it never promised to be zero (fresh commits, resets), so a
   * wrongly trusted is_zero shows here. Fresh pages, reused blocks, large and huge blocks. */
  static const size_t sizes[] = {8, 48, 700, 4000, 40000, 200000, 3 * LM_MiB,
                                 LM_LARGE_OBJ_SIZE_MAX + LM_MiB};
  for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
    size_t size = sizes[i];
    uint8_t* p = mi_calloc(1, size);
    assert_non_null(p);
    assert_true(all_zero(p, size));
    memset(p, 0xee, size);
    mi_free(p);
    p = mi_calloc(size, 1); /* likely the same block again, now dirty */
    assert_non_null(p);
    assert_true(all_zero(p, size));
    mi_free(p);
    p = mi_zalloc_aligned(size, 4096);
    assert_non_null(p);
    assert_true(all_zero(p, size));
    mi_free(p);
  }
  mi_collect(true);
}

/* A page of memory known zero (fresh from the OS) hands its blocks to calloc without clearing
 * them again. The first block that comes back dirties its free list: that free takes the
 * generic path once and ends it (the fast path stores nothing but the list and the count). */
static void test_core_page_known_zero_until_a_block_comes_back(void** state) {
  (void)state;
  /* (a heap of its own arena: fresh memory, which the fake reports zero) */
  mi_arena_id_t id;
  assert_int_equal(mi_reserve_os_memory_ex(64 * LM_MiB, true, false, true, &id), 0);
  mi_heap_t* heap = mi_heap_new_in_arena(id);
  assert_non_null(heap);
  uint8_t* first = mi_heap_malloc(heap, 200);
  assert_non_null(first);
  lm_page_t* page = page_of(first);
  assert_true(page->is_zero_init);
  /* (debug builds fill fresh blocks as freed ones: their lists are never known zero) */
  const bool known = !LM_DEBUG_FILL;
  assert_int_equal(lm_page_free_is_zero(page), known);
  uint8_t* second = mi_heap_calloc(heap, 1, 200);
  assert_non_null(second);
  assert_ptr_equal(page_of(second), page);
  assert_true(all_zero(second, 200));
  assert_int_equal(lm_page_free_is_zero(page), known); /* handing out does not end it */
  memset(first, 0xee, 200);
  mi_free(first);
  assert_false(lm_page_free_is_zero(page));
  /* The dirty block comes back cleared: at once (secure builds: once the free list ran out and
   * the page's local frees were collected; every block on the way is zero too). */
  static uint8_t* taken[1024];
  size_t n = 0;
  do {
    taken[n] = mi_heap_calloc(heap, 1, 200);
    assert_non_null(taken[n]);
    assert_true(all_zero(taken[n], 200));
  } while (taken[n++] != first && n < 1024);
  assert_ptr_equal(taken[n - 1], first);
  if (!LM_SECURE) assert_int_equal(n, 1);
  for (size_t i = 0; i < n; i++) mi_free(taken[i]);
  mi_free(second);
  mi_heap_delete(heap);
  mi_collect(true);
}

static void test_core_calloc_of_a_huge_block_in_a_fresh_arena_is_zeroed(void** state) {
  (void)state;
  /* A block of a new (lazily committed) arena, committed when the segment claims it: the fake
   * scribbles it and its commit reports is_zero=false. */
  mi_collect(true);
  fake_backend_fail_always(FAKE_OP_RESERVE, true);
  claim_all_arena_blocks();
  fake_backend_fail_always(FAKE_OP_RESERVE, false);
  const size_t size = LM_LARGE_OBJ_SIZE_MAX + LM_MiB;
  uint8_t* p = mi_calloc(1, size);
  assert_non_null(p);
  bool zero = all_zero(p, size);
  lm_segment_t* segment = lm_segment_of(p);
  size_t used = segment->used;
  mi_free(p);
  release_claimed_blocks();
  mi_collect(true);
  assert_true(zero);
  assert_int_equal(used, 1); /* the segment header was initialised */
}

static uint64_t word_at(size_t i) { return i * 2654435761u + 17; }
static void fill_words(uint8_t* p, size_t size) {
  for (size_t i = 0; i < size / 8; i++) ((uint64_t*)p)[i] = word_at(i);
}
static bool words_kept(const uint8_t* p, size_t size) {
  for (size_t i = 0; i < size / 8; i++) {
    if (((const uint64_t*)p)[i] != word_at(i)) return false;
  }
  return true;
}

/* realloc to a huge block takes the old block's memory along with the backend's move, one call
 * per realloc (builds that pad or track blocks copy); a move that stops half-way (injected), or
 * a backend without one (Windows' and wasm's rules), leaves the rest to a copy; rezalloc's new
 * tail reads zero either way. A large block moves only into memory known zero. */
static void test_core_realloc_to_a_huge_block_moves_its_memory(void** state) {
  (void)state;
  const bool moves = !LM_PADDING && !LM_TRACK;
  const size_t mib = LM_MiB;
  uint8_t* p = mi_malloc(18 * mib);
  assert_non_null(p);
  fill_words(p, 18 * mib);
  size_t calls = fake_backend_calls(FAKE_OP_MOVE);
  uint8_t* q = mi_realloc(p, 40 * mib);
  assert_non_null(q);
  assert_true(words_kept(q, 18 * mib));
  assert_int_equal(fake_backend_calls(FAKE_OP_MOVE) - calls, moves ? 1 : 0);
  fill_words(q, 40 * mib);
  fake_backend_fail_nth(FAKE_OP_MOVE, 1);
  uint8_t* r = mi_realloc(q, 60 * mib);
  fake_backend_fail_nth(FAKE_OP_MOVE, 0);
  assert_non_null(r);
  assert_true(words_kept(r, 40 * mib));
  mi_free(r);
  /* a large block that becomes huge, zero-allocated */
  p = mi_zalloc(3 * mib);
  assert_non_null(p);
  fill_words(p, 3 * mib);
  q = mi_rezalloc(p, 24 * mib);
  assert_non_null(q);
  assert_true(words_kept(q, 3 * mib));
  assert_true(all_zero(q + 3 * mib, 21 * mib));
  mi_free(q);
  /* A large block moves only into memory known zero (untouched or purged), where a copy
   * would fault every page in; into memory in use before, it is copied. (Here pages are
   * committed one by one and the fake scribbles what it commits: never known zero.) */
  for (int round = 0; round < 2; round++) {
    uint8_t* a = mi_malloc(2 * mib);
    uint8_t* b = mi_malloc(2 * mib); /* in the way of growing in place */
    assert_true(a != NULL && b != NULL);
    fill_words(a, 2 * mib);
    calls = fake_backend_calls(FAKE_OP_MOVE);
    uint8_t* c = mi_realloc(a, 5 * mib);
    assert_non_null(c);
    assert_true(words_kept(c, 2 * mib));
    bool zero = page_of(c)->is_zero_init;
    assert_int_equal(fake_backend_calls(FAKE_OP_MOVE) - calls, moves && zero ? 1 : 0);
    mi_free(b);
    mi_free(c);
  }
  mi_collect(true);
}

/* The deprecated mi_reserve_huge_os_pages counts the 1 GiB pages it had, also when a refusal
 * part way stops it (ENOMEM then). Last: the pinned arena it leaves serves later allocations. */
static void test_core_deprecated_huge_reserve_counts_the_pages_had(void** state) {
  (void)state;
  if (!LM_HUGE_PAGES) skip(); /* -Dhuge_pages=disabled */
  if (LM_INTPTR_BITS == 32) skip(); /* the fake's buffer is 1 GiB at most there: too small */
  fake_backend_set_huge_pages(true);
  size_t got = 99;
  assert_int_equal(mi_reserve_huge_os_pages(2, 10.0, &got), 0);
  assert_int_equal(got, 2);
  fake_backend_fail_nth(FAKE_OP_RESERVE_HUGE, 2); /* the second page asked for is refused */
  assert_int_equal(mi_reserve_huge_os_pages(2, -1.0, &got), ENOMEM);
  assert_int_equal(got, 1);
  fake_backend_fail_nth(FAKE_OP_RESERVE_HUGE, 0);
  fake_backend_set_huge_pages(false);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_core_size_class_of_every_size_fits_and_bounds_waste),
      cmocka_unit_test(test_core_size_classes_match_mimalloc),
      cmocka_unit_test(test_core_pointer_to_page_lookup_for_first_interior_and_last_blocks),
      cmocka_unit_test(test_core_page_accounting_holds_after_local_and_remote_frees),
      cmocka_unit_test(test_core_thread_free_list_carries_its_length),
      cmocka_unit_test(test_core_freed_block_is_reused_first_outside_secure_builds),
      cmocka_unit_test(test_core_remote_free_into_a_full_page_reaches_its_owner),
      cmocka_unit_test(test_core_delayed_free_is_taken_at_the_next_malloc_of_any_size),
      cmocka_unit_test(test_core_page_other_threads_emptied_is_given_back_while_its_owner_idles),
      cmocka_unit_test(test_core_idle_owner_is_drained_at_the_first_look),
      cmocka_unit_test(test_core_idle_owner_gives_back_blocks_others_freed_in_pages_still_used),
      cmocka_unit_test(test_core_drainer_waits_for_a_remote_free_to_end_its_hand_over),
      cmocka_unit_test(test_core_thread_being_drained_leaves_the_list_after_the_drainer),
      cmocka_unit_test(test_core_pairs_over_many_sizes_keep_their_retired_pages),
      cmocka_unit_test(test_core_freed_page_is_retired_and_direct_entry_follows_queue_head),
      cmocka_unit_test(test_core_direct_table_maps_every_word_size_to_its_bin),
      cmocka_unit_test(test_core_aligned_allocation_for_every_power_of_two),
      cmocka_unit_test(test_core_calloc_overflow_returns_null_with_enomem),
      cmocka_unit_test(test_core_allocation_fails_cleanly_when_reserve_fails),
      cmocka_unit_test(test_core_allocation_fails_cleanly_when_commit_fails),
      cmocka_unit_test(test_core_failing_each_memory_call_in_turn_leaks_nothing),
      cmocka_unit_test(test_core_thread_start_fails_cleanly_when_reserve_fails),
      cmocka_unit_test(test_core_page_allocation_fails_cleanly_when_page_commit_fails),
      cmocka_unit_test(test_core_thread_exit_abandons_live_pages_and_collect_reclaims_them),
      cmocka_unit_test(test_core_calloc_returns_zeroed_memory),
      cmocka_unit_test(test_core_fresh_blocks_come_in_random_order_in_secure_builds),
      cmocka_unit_test(test_core_slow_path_varies_reuse_and_page_in_secure_builds),
      cmocka_unit_test(test_core_calloc_of_a_huge_block_in_a_fresh_arena_is_zeroed),
      cmocka_unit_test(test_core_realloc_to_a_huge_block_moves_its_memory),
      cmocka_unit_test(test_core_page_known_zero_until_a_block_comes_back),
      cmocka_unit_test(test_core_deprecated_huge_reserve_counts_the_pages_had),
  };
  return cmocka_run_group_tests_name("core", tests, group_setup, group_teardown);
}
