/* Integration tests of first-class heaps through the public API only (<mimalloc.h>, static
 * library): creation, the default and backing heaps, delete (blocks survive in the backing
 * heap), destroy (blocks die at once), frees from other threads, block visiting, ownership
 * queries, every mi_heap_* allocation variant, and heaps bound to an exclusive arena.
 * Each test asserts a documented property (header comments and the v2 facts, sections 1.6,
 * 1.9 and 4.17), not an implementation detail.
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

#if defined(_WIN32)
/* Windows (mingw-w64, run under wine): memory from the OS, and the process heap standing for
 * "another allocator's blocks". */
#include <windows.h>
#define PROT_READ 0
#define PROT_WRITE 0
#define MAP_PRIVATE 0
#define MAP_ANONYMOUS 0
#define MAP_FAILED NULL
static void* mmap(void* addr, size_t size, int prot, int flags, int fd, long off) {
  (void)addr, (void)prot, (void)flags, (void)fd, (void)off;
  return VirtualAlloc(NULL, size, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE);
}
static int munmap(void* p, size_t size) {
  (void)size;
  return VirtualFree(p, 0, MEM_RELEASE) ? 0 : -1;
}
/* the C runtime's _fullpath, which does not look whether the path exists */
#define realpath(name, buf) _fullpath(buf, name, PATH_MAX)
static void* other_malloc(size_t n) { return HeapAlloc(GetProcessHeap(), 0, n); }
static void other_free(void* p) { HeapFree(GetProcessHeap(), 0, p); }
#else
#include <dlfcn.h>
#include <sys/mman.h>
#endif

#include <setjmp.h>
/* cmocka after the standard headers it expects; UNIT_TESTING stays undefined on purpose. */
#include <cmocka.h>

#include "mimalloc.h"
#include "patterns.h"

#define KiB ((size_t)1024)
#define MiB (KiB * KiB)

static volatile size_t v_size_max = SIZE_MAX;
static volatile size_t v_half_plus_one = SIZE_MAX / 2 + 1;
static volatile size_t v_ptrdiff_max_plus_one = (size_t)PTRDIFF_MAX + 1;

static int a_static_int = 42; /* an address in the data segment */

/* ---- helpers ------------------------------------------------------------------------------ */


/* Index of the first nonzero byte in [from, to), or `to` when all are zero. */
static size_t first_nonzero_in(const void* p, size_t from, size_t to) {
  const uint8_t* b = p;
  for (size_t i = from; i < to; i++) {
    if (b[i] != 0) return i;
  }
  return to;
}

static bool is_aligned(const void* p, size_t alignment) { return ((uintptr_t)p % alignment) == 0; }

static int compare_pointers(const void* a, const void* b) {
  uintptr_t x = (uintptr_t) * (void* const*)a, y = (uintptr_t) * (void* const*)b;
  return (x > y) - (x < y);
}

static void sort_pointers(void** ptrs, size_t n) {
  if (n > 1) qsort(ptrs, n, sizeof(void*), compare_pointers);
}

static bool in_range(const void* p, const void* start, size_t size) {
  return (uintptr_t)p >= (uintptr_t)start && (uintptr_t)p < (uintptr_t)start + size;
}

/* Fills a size class of `heap` with dirty blocks, then frees all but one (returned, to be freed
 * by the caller), so later zeroing allocations of that size likely reuse dirty memory. */
static void* dirty_size_class(mi_heap_t* heap, size_t size) {
  enum { N = 32 };
  void* blocks[N];
  for (int i = 0; i < N; i++) {
    blocks[i] = mi_heap_malloc(heap, size);
    assert_non_null(blocks[i]);
    memset(blocks[i], 0xDB, mi_usable_size(blocks[i]));
  }
  for (int i = 1; i < N; i++) mi_free(blocks[i]);
  return blocks[0];
}

/* ---- counting and collecting live blocks through mi_heap_visit_blocks -------------------- */

struct visit_state {
  void** blocks; /* every visited block, in visiting order */
  size_t count;
  size_t capacity;
  size_t areas;
  size_t used_sum; /* sum of area->used over the areas */
  /* the area whose blocks are being visited */
  bool have_area;
  void* area_start;
  size_t area_reserved;
  size_t area_used;
  size_t area_block_size;
  size_t area_visited;
  /* violations of the visiting contract, counted (asserting inside the callback would jump out
   * of the library) */
  size_t block_before_area;
  size_t block_outside_area;
  size_t block_size_mismatch;
  size_t used_mismatch;
  size_t area_of_zero_block_size;
  size_t overflow;
};

/* The record lives in memory mapped here, not allocated: it must not become (or reuse the
 * address of) a block of the heaps being walked. */
static void visit_state_init(struct visit_state* st, size_t capacity) {
  memset(st, 0, sizeof(*st));
  st->capacity = capacity;
  void* m = mmap(NULL, capacity * sizeof(void*), PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  assert_true(m != MAP_FAILED);
  st->blocks = m;
}

static void visit_state_done(struct visit_state* st) {
  munmap(st->blocks, st->capacity * sizeof(void*));
  st->blocks = NULL;
}

/* Closes the current area: with block visiting, its block count must equal area->used. */
static void close_area(struct visit_state* st, bool visiting_blocks) {
  if (st->have_area && visiting_blocks && st->area_visited != st->area_used) st->used_mismatch++;
  st->have_area = false;
}

static bool record_visit(const mi_heap_t* heap, const mi_heap_area_t* area, void* block,
                         size_t block_size, void* arg) {
  (void)heap;
  struct visit_state* st = arg;
  if (block == NULL) {
    close_area(st, true);
    st->areas++;
    st->used_sum += area->used;
    st->have_area = true;
    st->area_start = area->blocks;
    st->area_reserved = area->reserved;
    st->area_used = area->used;
    st->area_block_size = area->block_size;
    st->area_visited = 0;
    if (area->block_size == 0) st->area_of_zero_block_size++;
    return true;
  }
  if (!st->have_area) {
    st->block_before_area++;
  } else {
    st->area_visited++;
    if (area->blocks != st->area_start || !in_range(block, area->blocks, area->reserved)) {
      st->block_outside_area++;
    }
    if (block_size != st->area_block_size || area->block_size != st->area_block_size) {
      st->block_size_mismatch++;
    }
  }
  if (st->count < st->capacity) {
    st->blocks[st->count] = block;
  } else {
    st->overflow++;
  }
  st->count++;
  return true;
}

/* Visits every block of `heap` into `st` (capacity for `capacity` blocks) and checks the
 * visiting contract. */
static void visit_all(mi_heap_t* heap, struct visit_state* st, size_t capacity) {
  visit_state_init(st, capacity);
  assert_true(mi_heap_visit_blocks(heap, true, record_visit, st));
  close_area(st, true);
  assert_int_equal(st->block_before_area, 0);
  assert_int_equal(st->block_outside_area, 0);
  assert_int_equal(st->block_size_mismatch, 0);
  assert_int_equal(st->used_mismatch, 0);
  assert_int_equal(st->area_of_zero_block_size, 0);
  assert_int_equal(st->overflow, 0);
  assert_int_equal(st->used_sum, st->count);
}

/* Asserts that the blocks visited in `heap` are exactly the `n` pointers of `live` (as sets,
 * each visited once). `live` is sorted in place. */
static void assert_heap_holds_exactly(mi_heap_t* heap, void** live, size_t n) {
  struct visit_state st;
  visit_all(heap, &st, n + 64);
  assert_int_equal(st.count, n);
  sort_pointers(st.blocks, st.count);
  sort_pointers(live, n);
  for (size_t i = 0; i < n; i++) {
    if (st.blocks[i] != live[i]) {
      fail_msg("visited block %zu is %p, expected live block %p", i, st.blocks[i], live[i]);
    }
  }
  visit_state_done(&st);
}

/* How many of the `n` pointers of `ptrs` are visited as live blocks of `heap`. */
static size_t count_visited_among(mi_heap_t* heap, void** ptrs, size_t n, size_t capacity) {
  struct visit_state st;
  visit_all(heap, &st, capacity);
  sort_pointers(st.blocks, st.count);
  size_t found = 0;
  for (size_t i = 0; i < n; i++) {
    if (bsearch(&ptrs[i], st.blocks, st.count, sizeof(void*), compare_pointers) != NULL) found++;
  }
  visit_state_done(&st);
  return found;
}

/* ---- a thread that frees blocks (remote frees) --------------------------------------------- */

struct remote_free_job {
  void** ptrs;
  size_t n;
  const size_t* sizes; /* when set, verify the pattern (seed = index) before freeing */
  pthread_barrier_t* start; /* when set, wait on it before freeing */
  size_t corrupted;
};

static void* remote_free_thread(void* arg) {
  struct remote_free_job* job = arg;
  if (job->start != NULL) pthread_barrier_wait(job->start);
  for (size_t i = 0; i < job->n; i++) {
    if (job->sizes != NULL && check_pattern(job->ptrs[i], job->sizes[i], i) != job->sizes[i]) {
      job->corrupted++;
    }
    mi_free(job->ptrs[i]);
  }
  return NULL;
}

static void free_on_another_thread(void** ptrs, size_t n) {
  struct remote_free_job job = {.ptrs = ptrs, .n = n};
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, remote_free_thread, &job), 0);
  assert_int_equal(pthread_join(t, NULL), 0);
}

/* ---- creation, backing and default heaps --------------------------------------------------- */

static void test_heap_new_variants_return_distinct_heaps(void** state) {
  (void)state;
  mi_heap_t* backing = mi_heap_get_backing();
  assert_non_null(backing);
  enum { N = 5 };
  mi_heap_t* heaps[N] = {mi_heap_new(), mi_heap_new_ex(0, true, 0), mi_heap_new_ex(0, false, 0),
                         mi_heap_new_ex(7, false, 0), mi_heap_new_in_arena(0)};
  void* blocks[N];
  for (int i = 0; i < N; i++) {
    assert_non_null(heaps[i]);
    assert_ptr_not_equal(heaps[i], backing);
    for (int j = 0; j < i; j++) assert_ptr_not_equal(heaps[i], heaps[j]);
    blocks[i] = mi_heap_malloc(heaps[i], 48);
    assert_non_null(blocks[i]);
  }
  for (int i = 0; i < N; i++) {
    for (int j = 0; j < N; j++) {
      assert_int_equal(mi_heap_contains_block(heaps[j], blocks[i]), i == j);
    }
    assert_false(mi_heap_contains_block(backing, blocks[i]));
  }
  /* creating heaps does not change the default heap */
  assert_ptr_equal(mi_heap_get_default(), backing);
  for (int i = 0; i < N; i++) mi_free(blocks[i]);
  for (int i = 0; i < N; i++) mi_heap_delete(heaps[i]);
  assert_ptr_equal(mi_heap_get_backing(), backing);
}

struct backing_probe {
  pthread_barrier_t* alive; /* every prober is alive at the same time: no reuse of thread data */
  mi_heap_t* backing;
  mi_heap_t* backing_again;
  mi_heap_t* default_heap;
  bool block_in_backing;
  bool block_in_main_backing;
  mi_heap_t* main_backing;
};

static void* backing_probe_thread(void* arg) {
  struct backing_probe* pr = arg;
  pr->backing = mi_heap_get_backing();
  pr->default_heap = mi_heap_get_default();
  void* p = mi_malloc(64);
  pr->block_in_backing = mi_heap_contains_block(pr->backing, p);
  pr->block_in_main_backing = mi_heap_contains_block(pr->main_backing, p);
  pthread_barrier_wait(pr->alive);
  pr->backing_again = mi_heap_get_backing();
  mi_free(p);
  pthread_barrier_wait(pr->alive);
  return NULL;
}

static void test_heap_backing_is_stable_per_thread_and_differs_between_threads(void** state) {
  (void)state;
  mi_heap_t* main_backing = mi_heap_get_backing();
  assert_non_null(main_backing);
  assert_ptr_equal(mi_heap_get_backing(), main_backing);
  void* p = mi_malloc(64);
  assert_true(mi_heap_contains_block(main_backing, p));
  mi_free(p);

  enum { T = 3 };
  pthread_barrier_t alive;
  assert_int_equal(pthread_barrier_init(&alive, NULL, T), 0);
  struct backing_probe probes[T];
  pthread_t threads[T];
  for (int i = 0; i < T; i++) {
    probes[i] = (struct backing_probe){.alive = &alive, .main_backing = main_backing};
    assert_int_equal(pthread_create(&threads[i], NULL, backing_probe_thread, &probes[i]), 0);
  }
  for (int i = 0; i < T; i++) assert_int_equal(pthread_join(threads[i], NULL), 0);
  pthread_barrier_destroy(&alive);
  for (int i = 0; i < T; i++) {
    assert_non_null(probes[i].backing);
    assert_ptr_equal(probes[i].backing_again, probes[i].backing);
    assert_ptr_equal(probes[i].default_heap, probes[i].backing);
    assert_ptr_not_equal(probes[i].backing, main_backing);
    assert_true(probes[i].block_in_backing);
    assert_false(probes[i].block_in_main_backing);
    for (int j = 0; j < i; j++) assert_ptr_not_equal(probes[i].backing, probes[j].backing);
  }
  assert_ptr_equal(mi_heap_get_backing(), main_backing);
}

static void test_heap_set_default_returns_previous_and_redirects_malloc(void** state) {
  (void)state;
  mi_heap_t* backing = mi_heap_get_backing();
  assert_ptr_equal(mi_heap_get_default(), backing);
  mi_heap_t* h1 = mi_heap_new();
  mi_heap_t* h2 = mi_heap_new();
  assert_non_null(h1);
  assert_non_null(h2);

  assert_ptr_equal(mi_heap_set_default(h1), backing);
  assert_ptr_equal(mi_heap_get_default(), h1);
  assert_ptr_equal(mi_heap_get_backing(), backing); /* the backing heap does not change */
  void* a = mi_malloc(40);
  void* b = mi_zalloc(3000);
  void* c = mi_calloc(10, 30 * KiB);
  assert_true(mi_heap_contains_block(h1, a));
  assert_true(mi_heap_contains_block(h1, b));
  assert_true(mi_heap_contains_block(h1, c));
  assert_false(mi_heap_contains_block(backing, a));
  /* malloc is ours only when the static library's libc names are linked in (not under
   * sanitizers, whose runtime interposes malloc) */
  void* m = malloc(40);
  assert_non_null(m);
  if (mi_is_in_heap_region(m)) assert_true(mi_heap_contains_block(h1, m));
  free(m);

  assert_ptr_equal(mi_heap_set_default(h2), h1);
  void* d = mi_malloc(40);
  assert_true(mi_heap_contains_block(h2, d));
  assert_ptr_equal(mi_heap_set_default(backing), h2);
  assert_ptr_equal(mi_heap_get_default(), backing);
  void* e = mi_malloc(40);
  assert_true(mi_heap_contains_block(backing, e));

  mi_free(a);
  mi_free(b);
  mi_free(c);
  mi_free(d);
  mi_free(e);
  mi_heap_delete(h1);
  mi_heap_delete(h2);
}

static void test_heap_delete_of_the_default_heap_makes_the_backing_heap_default(void** state) {
  (void)state;
  mi_heap_t* backing = mi_heap_get_backing();
  mi_heap_t* h = mi_heap_new();
  assert_non_null(h);
  assert_ptr_equal(mi_heap_set_default(h), backing);
  void* p = mi_malloc(100);
  assert_true(mi_heap_contains_block(h, p));
  fill_pattern(p, 100, 5);
  mi_heap_delete(h);
  assert_ptr_equal(mi_heap_get_default(), backing);
  assert_true(mi_heap_contains_block(backing, p));
  assert_int_equal(check_pattern(p, 100, 5), 100);
  void* q = mi_malloc(100);
  assert_true(mi_heap_contains_block(backing, q));
  mi_free(p);
  mi_free(q);

  /* the same with a heap that may not be destroyed, removed through mi_heap_destroy */
  h = mi_heap_new_ex(0, false, 0);
  assert_non_null(h);
  assert_ptr_equal(mi_heap_set_default(h), backing);
  p = mi_malloc(100);
  assert_true(mi_heap_contains_block(h, p));
  mi_heap_destroy(h);
  assert_ptr_equal(mi_heap_get_default(), backing);
  assert_true(mi_heap_contains_block(backing, p));
  mi_free(p);

  /* and with a destroyable heap: the default heap is the backing one again */
  h = mi_heap_new();
  assert_non_null(h);
  assert_ptr_equal(mi_heap_set_default(h), backing);
  p = mi_malloc(100);
  assert_true(mi_heap_contains_block(h, p));
  mi_heap_destroy(h);
  assert_ptr_equal(mi_heap_get_default(), backing);
  q = mi_malloc(100);
  assert_non_null(q);
  assert_true(mi_heap_contains_block(backing, q));
  mi_free(q);
}

/* ---- delete ------------------------------------------------------------------------------- */

/* A spread of sizes: small (several of which fill whole pages), medium, large and huge. */
static const size_t spread_sizes[] = {1,    8,     24,    48,      100,      256,     1000,
                                      4000, 10000, 20480, 60000,   100000,   MiB,     5 * MiB};

struct block_set {
  void** ptrs;
  size_t* sizes;
  size_t n;
};

/* Allocates `per_small` blocks of each small size (fewer of the big ones) from `heap`, each
 * filled with its pattern (seed = index). */
static struct block_set alloc_spread(mi_heap_t* heap, size_t per_small) {
  size_t total = 0;
  for (size_t s = 0; s < sizeof(spread_sizes) / sizeof(spread_sizes[0]); s++) {
    total += spread_sizes[s] <= 1000 ? per_small : spread_sizes[s] <= 100000 ? 8 : 2;
  }
  struct block_set set = {mi_malloc(total * sizeof(void*)), mi_malloc(total * sizeof(size_t)), 0};
  assert_non_null(set.ptrs);
  assert_non_null(set.sizes);
  for (size_t s = 0; s < sizeof(spread_sizes) / sizeof(spread_sizes[0]); s++) {
    size_t size = spread_sizes[s];
    size_t count = size <= 1000 ? per_small : size <= 100000 ? 8 : 2;
    for (size_t i = 0; i < count; i++) {
      void* p = mi_heap_malloc(heap, size);
      assert_non_null(p);
      assert_true(mi_heap_contains_block(heap, p));
      fill_pattern(p, size, set.n);
      set.ptrs[set.n] = p;
      set.sizes[set.n] = size;
      set.n++;
    }
  }
  return set;
}

static void verify_set(const struct block_set* set) {
  for (size_t i = 0; i < set->n; i++) {
    size_t bad = check_pattern(set->ptrs[i], set->sizes[i], i);
    if (bad != set->sizes[i]) {
      fail_msg("block %zu (%p, %zu bytes) corrupted at byte %zu", i, set->ptrs[i], set->sizes[i],
               bad);
    }
  }
}

static void free_set_arrays(struct block_set* set) {
  mi_free(set->ptrs);
  mi_free(set->sizes);
}

static void test_heap_delete_keeps_blocks_valid_in_the_backing_heap(void** state) {
  (void)state;
  mi_heap_t* backing = mi_heap_get_backing();
  mi_heap_t* h = mi_heap_new();
  assert_non_null(h);
  struct block_set set = alloc_spread(h, 1500); /* 1500 x 48 bytes fills whole pages */
  mi_heap_delete(h);
  assert_ptr_equal(mi_heap_get_default(), backing);
  verify_set(&set);
  for (size_t i = 0; i < set.n; i++) {
    if (!mi_heap_contains_block(backing, set.ptrs[i])) {
      fail_msg("block %zu (%p) is not in the backing heap after delete", i, set.ptrs[i]);
    }
  }
  /* the backing heap's walk sees them as live blocks */
  assert_int_equal(count_visited_among(backing, set.ptrs, set.n, set.n + 100000), set.n);
  /* still writable; then free half now, allocate some more, free the rest later */
  for (size_t i = 0; i < set.n; i++) fill_pattern(set.ptrs[i], set.sizes[i], i);
  for (size_t i = 0; i < set.n; i += 2) mi_free(set.ptrs[i]);
  void* more[64];
  for (int i = 0; i < 64; i++) {
    more[i] = mi_malloc(48);
    assert_non_null(more[i]);
    memset(more[i], 0x77, 48);
  }
  for (size_t i = 1; i < set.n; i += 2) {
    size_t bad = check_pattern(set.ptrs[i], set.sizes[i], i);
    if (bad != set.sizes[i]) fail_msg("block %zu corrupted at byte %zu", i, bad);
    mi_free(set.ptrs[i]);
  }
  for (int i = 0; i < 64; i++) mi_free(more[i]);
  free_set_arrays(&set);
}

static void test_heap_delete_of_a_tagged_heap_keeps_blocks_valid(void** state) {
  (void)state;
  /* a heap with another tag cannot hand its blocks to the backing heap: they are abandoned,
   * yet stay valid and freeable */
  mi_heap_t* h = mi_heap_new_ex(3, false, 0);
  assert_non_null(h);
  struct block_set set = alloc_spread(h, 200);
  mi_heap_delete(h);
  verify_set(&set);
  /* free half here and half on another thread */
  size_t half = set.n / 2;
  for (size_t i = 0; i < half; i++) mi_free(set.ptrs[i]);
  struct remote_free_job job = {.ptrs = set.ptrs + half, .n = set.n - half};
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, remote_free_thread, &job), 0);
  assert_int_equal(pthread_join(t, NULL), 0);
  free_set_arrays(&set);
  void* p = mi_malloc(48);
  assert_non_null(p);
  mi_free(p);
}

static void test_heap_delete_leaves_blocks_freeable_by_another_thread(void** state) {
  (void)state;
  mi_heap_t* backing = mi_heap_get_backing();
  mi_heap_t* h = mi_heap_new();
  assert_non_null(h);
  struct block_set set = alloc_spread(h, 1500);
  mi_heap_delete(h);
  /* another thread checks every block, then frees it */
  struct remote_free_job job = {.ptrs = set.ptrs, .n = set.n, .sizes = set.sizes};
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, remote_free_thread, &job), 0);
  assert_int_equal(pthread_join(t, NULL), 0);
  assert_int_equal(job.corrupted, 0);
  /* once the owner collects, none of them is live in the backing heap any more */
  mi_heap_collect(backing, true);
  assert_int_equal(count_visited_among(backing, set.ptrs, set.n, 200000), 0);
  free_set_arrays(&set);
}

static void test_heap_delete_races_cleanly_with_remote_frees(void** state) {
  (void)state;
  mi_heap_t* backing = mi_heap_get_backing();
  for (int round = 0; round < 20; round++) {
    mi_heap_t* h = mi_heap_new();
    assert_non_null(h);
    enum { N = 3000 };
    void** ptrs = mi_malloc(N * sizeof(void*));
    size_t* sizes = mi_malloc(N * sizeof(size_t));
    assert_non_null(ptrs);
    assert_non_null(sizes);
    for (size_t i = 0; i < N; i++) {
      sizes[i] = i % 10 == 9 ? 2000 : 16 + (i % 4) * 16;
      ptrs[i] = mi_heap_malloc(h, sizes[i]);
      assert_non_null(ptrs[i]);
      fill_pattern(ptrs[i], sizes[i], i);
    }
    pthread_barrier_t start;
    assert_int_equal(pthread_barrier_init(&start, NULL, 2), 0);
    struct remote_free_job job = {.ptrs = ptrs, .n = N, .sizes = sizes, .start = &start};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, remote_free_thread, &job), 0);
    pthread_barrier_wait(&start);
    mi_heap_delete(h); /* while the other thread frees the heap's blocks */
    assert_int_equal(pthread_join(t, NULL), 0);
    pthread_barrier_destroy(&start);
    assert_int_equal(job.corrupted, 0);
    mi_heap_collect(backing, true);
    assert_int_equal(count_visited_among(backing, ptrs, N, 200000), 0);
    mi_free(ptrs);
    mi_free(sizes);
  }
}

/* ---- destroy ------------------------------------------------------------------------------ */

static void test_heap_destroy_frees_blocks_of_every_size_at_once(void** state) {
  (void)state;
  mi_heap_t* backing = mi_heap_get_backing();
  static const size_t sizes[] = {8, 16, 32, 64, 100, 200, 512, 1000, 2000, 5000, 8000};
  for (int round = 0; round < 2; round++) {
    mi_heap_t* h = mi_heap_new();
    assert_non_null(h);
    size_t n = 0;
    for (int rep = 0; rep < 300; rep++) {
      for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
        uint8_t* p = mi_heap_malloc(h, sizes[s]);
        assert_non_null(p);
        p[0] = 1;
        p[sizes[s] - 1] = 2;
        n++;
      }
    }
    for (int i = 0; i < 16; i++) {
      uint8_t* p = mi_heap_malloc(h, 20 * KiB);
      assert_non_null(p);
      memset(p, 0x11, 20 * KiB);
      n++;
    }
    for (int i = 0; i < 4; i++) {
      uint8_t* p = mi_heap_malloc(h, MiB);
      assert_non_null(p);
      assert_true(mi_heap_contains_block(h, p));
      p[0] = 1;
      p[MiB - 1] = 2;
      n++;
    }
    uint8_t* huge = mi_heap_malloc(h, 40 * MiB);
    assert_non_null(huge);
    assert_true(mi_heap_contains_block(h, huge));
    for (size_t off = 0; off < 40 * MiB; off += 4 * KiB) huge[off] = 3;
    n++;
    /* a few blocks freed before the destroy, one of them remotely */
    void* early = mi_heap_malloc(h, 64);
    void* remote = mi_heap_malloc(h, 64);
    mi_free(early);
    free_on_another_thread(&remote, 1);

    struct visit_state st;
    visit_all(h, &st, n + 16);
    assert_int_equal(st.count, n);
    visit_state_done(&st);

    mi_heap_destroy(h);
    assert_ptr_equal(mi_heap_get_default(), backing);
    /* allocation works afterwards, from the default heap and from a new heap */
    void* p = mi_malloc(64);
    assert_non_null(p);
    assert_true(mi_heap_contains_block(backing, p));
    mi_heap_t* h2 = mi_heap_new();
    assert_non_null(h2);
    for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
      void* q = mi_heap_malloc(h2, sizes[s]);
      assert_non_null(q);
      memset(q, 0x22, sizes[s]);
      assert_true(mi_heap_contains_block(h2, q));
    }
    void* big = mi_heap_malloc(h2, 40 * MiB);
    assert_non_null(big);
    memset(big, 0x33, 64 * KiB);
    mi_heap_destroy(h2);
    mi_free(p);
  }
}

static void test_heap_destroy_without_allow_destroy_falls_back_to_delete(void** state) {
  (void)state;
  mi_heap_t* backing = mi_heap_get_backing();
  mi_heap_t* h = mi_heap_new_ex(0, false, 0);
  assert_non_null(h);
  struct block_set set = alloc_spread(h, 300);
  mi_heap_destroy(h);
  verify_set(&set);
  for (size_t i = 0; i < set.n; i++) {
    if (!mi_heap_contains_block(backing, set.ptrs[i])) {
      fail_msg("block %zu (%p) is not in the backing heap after a delete-like destroy", i,
               set.ptrs[i]);
    }
  }
  for (size_t i = 0; i < set.n; i++) fill_pattern(set.ptrs[i], set.sizes[i], i + 1);
  for (size_t i = 0; i < set.n; i++) {
    assert_int_equal(check_pattern(set.ptrs[i], set.sizes[i], i + 1), set.sizes[i]);
    mi_free(set.ptrs[i]);
  }
  free_set_arrays(&set);
}

/* ---- frees from other threads ------------------------------------------------------------- */

static void test_heap_remote_frees_then_collect_leave_exactly_the_live_blocks(void** state) {
  (void)state;
  mi_heap_t* h = mi_heap_new();
  assert_non_null(h);
  /* 3000 x 64 bytes fill whole pages: remote frees into full pages take the delayed path */
  enum { N = 3000 + 300 + 24 + 3 };
  void** ptrs = mi_malloc(N * sizeof(void*));
  assert_non_null(ptrs);
  size_t n = 0;
  for (int i = 0; i < 3000; i++) ptrs[n++] = mi_heap_malloc(h, 64);
  for (int i = 0; i < 300; i++) ptrs[n++] = mi_heap_malloc(h, 1000);
  for (int i = 0; i < 24; i++) ptrs[n++] = mi_heap_malloc(h, 20 * KiB);
  for (int i = 0; i < 3; i++) ptrs[n++] = mi_heap_malloc(h, MiB);
  assert_int_equal(n, N);
  for (size_t i = 0; i < n; i++) assert_non_null(ptrs[i]);

  /* every other block freed by another thread; the rest stays live */
  void** to_free = mi_malloc(N * sizeof(void*));
  void** live = mi_malloc(N * sizeof(void*));
  assert_non_null(to_free);
  assert_non_null(live);
  size_t nf = 0, nl = 0;
  for (size_t i = 0; i < n; i++) {
    if (i % 2 == 1) {
      to_free[nf++] = ptrs[i];
    } else {
      live[nl++] = ptrs[i];
    }
  }
  free_on_another_thread(to_free, nf);
  mi_heap_collect(h, true);
  assert_heap_holds_exactly(h, live, nl);

  /* once more, on the blocks that are left */
  nf = 0;
  size_t still = 0;
  for (size_t i = 0; i < nl; i++) {
    if (i % 3 == 0) {
      to_free[nf++] = live[i];
    } else {
      live[still++] = live[i];
    }
  }
  free_on_another_thread(to_free, nf);
  mi_heap_collect(h, true);
  assert_heap_holds_exactly(h, live, still);

  mi_heap_destroy(h);
  void* p = mi_malloc(64);
  assert_non_null(p);
  mi_free(p);
  mi_free(ptrs);
  mi_free(to_free);
  mi_free(live);
}

/* ---- visiting ----------------------------------------------------------------------------- */

/* The issue-14 case: remote frees into full pages sit on the owner heap's delayed list, and a
 * collect of another heap (mi_collect collects the default heap) does not take them in; the
 * walk itself must, or it counts them as live. */
static void test_heap_visit_takes_in_remote_frees_into_full_pages(void** state) {
  (void)state;
  mi_heap_t* h = mi_heap_new();
  assert_non_null(h);
  enum { N = 3000 };
  void** ptrs = mi_malloc(N * sizeof(void*));
  void** to_free = mi_malloc(N / 2 * sizeof(void*));
  void** live = mi_malloc(N / 2 * sizeof(void*));
  assert_non_null(ptrs);
  assert_non_null(to_free);
  assert_non_null(live);
  for (size_t i = 0; i < N; i++) {
    ptrs[i] = mi_heap_malloc(h, 64);
    assert_non_null(ptrs[i]);
  }
  size_t nf = 0, nl = 0;
  for (size_t i = 0; i < N; i++) {
    if (i % 2 == 1) to_free[nf++] = ptrs[i];
    else live[nl++] = ptrs[i];
  }
  free_on_another_thread(to_free, nf); /* joins the thread */
  mi_collect(true);
  assert_heap_holds_exactly(h, live, nl);
  assert_int_equal(nl, N / 2);
  mi_heap_destroy(h);
  mi_free(ptrs);
  mi_free(to_free);
  mi_free(live);
}

static void test_heap_visit_blocks_visits_each_live_block_exactly_once(void** state) {
  (void)state;
  static const size_t sizes[] = {1,    8,     16,    40,    100,    512,    1000,    3000,
                                 8192, 12000, 20000, 60000, 100000, 300000, MiB + 1};
  enum { NS = sizeof(sizes) / sizeof(sizes[0]) };
  mi_heap_t* h = mi_heap_new();
  assert_non_null(h);
  size_t cap = 0;
  for (size_t s = 0; s < NS; s++) cap += sizes[s] <= 1000 ? 1200 : sizes[s] <= 20000 ? 60 : 6;
  void** ptrs = mi_malloc(cap * sizeof(void*));
  size_t* req = mi_malloc(cap * sizeof(size_t));
  void** remote = mi_malloc(cap * sizeof(void*));
  assert_non_null(ptrs);
  assert_non_null(req);
  assert_non_null(remote);
  size_t n = 0;
  for (size_t s = 0; s < NS; s++) {
    size_t count = sizes[s] <= 1000 ? 1200 : sizes[s] <= 20000 ? 60 : 6;
    for (size_t i = 0; i < count; i++) {
      ptrs[n] = mi_heap_malloc(h, sizes[s]);
      assert_non_null(ptrs[n]);
      req[n] = sizes[s];
      n++;
    }
  }
  /* a mixed pattern: every third freed here, every fifth of the others by another thread,
   * and a few blocks allocated again into the holes */
  size_t nl = 0, nr = 0;
  for (size_t i = 0; i < n; i++) {
    if (i % 3 == 0) {
      mi_free(ptrs[i]);
    } else if (i % 5 == 0) {
      remote[nr++] = ptrs[i];
    } else {
      ptrs[nl] = ptrs[i];
      req[nl] = req[i];
      nl++;
    }
  }
  free_on_another_thread(remote, nr);
  /* remote frees into full pages reach the owner heap's delayed list; the collect settles
   * them before the holes are allocated again (the walk would take them in too) */
  mi_heap_collect(h, true);
  for (size_t s = 0; s < NS && nl < cap; s++) {
    ptrs[nl] = mi_heap_malloc(h, sizes[s]);
    assert_non_null(ptrs[nl]);
    req[nl] = sizes[s];
    nl++;
  }

  /* collect every visited block with its area's block size */
  struct visit_state st;
  visit_all(h, &st, nl + 64);
  assert_int_equal(st.count, nl);
  assert_true(st.areas >= NS);
  /* each block's area holds blocks at least as big as the request */
  for (size_t i = 0; i < nl; i++) {
    size_t usable = mi_usable_size(ptrs[i]);
    assert_true(usable >= req[i]);
  }
  sort_pointers(st.blocks, st.count);
  void** live = mi_malloc(nl * sizeof(void*));
  assert_non_null(live);
  memcpy(live, ptrs, nl * sizeof(void*));
  sort_pointers(live, nl);
  for (size_t i = 0; i < nl; i++) {
    if (st.blocks[i] != live[i]) fail_msg("visited %p, expected %p", st.blocks[i], live[i]);
  }
  visit_state_done(&st);
  mi_free(live);
  for (size_t i = 0; i < nl; i++) mi_free(ptrs[i]);
  mi_free(ptrs);
  mi_free(req);
  mi_free(remote);
  mi_heap_delete(h);
}

/* Checks each area against the request its blocks were allocated for, and for consistency. */
struct area_size_check {
  size_t requested;
  size_t areas;
  size_t violations;
  size_t blocks;
};

static bool check_area_size(const mi_heap_t* heap, const mi_heap_area_t* area, void* block,
                            size_t block_size, void* arg) {
  (void)heap;
  (void)block_size;
  struct area_size_check* c = arg;
  if (block == NULL) {
    c->areas++;
    if (area->block_size < c->requested) c->violations++;
    if (area->full_block_size < area->block_size) c->violations++;
    if (area->committed > area->reserved) c->violations++;
    if (area->used * area->block_size > area->reserved) c->violations++;
  } else {
    c->blocks++;
  }
  return true;
}

static void test_heap_visit_area_block_size_covers_the_request(void** state) {
  (void)state;
  static const size_t sizes[] = {1, 17, 100, 1000, 5000, 20 * KiB, 70000, MiB, 3 * MiB + 5};
  for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
    mi_heap_t* h = mi_heap_new();
    assert_non_null(h);
    void* p[5];
    for (int i = 0; i < 5; i++) {
      p[i] = mi_heap_malloc(h, sizes[s]);
      assert_non_null(p[i]);
    }
    struct area_size_check c = {.requested = sizes[s]};
    assert_true(mi_heap_visit_blocks(h, true, check_area_size, &c));
    assert_true(c.areas >= 1);
    assert_int_equal(c.violations, 0);
    assert_int_equal(c.blocks, 5);
    mi_heap_destroy(h);
  }
}

struct stop_after {
  size_t calls;
  size_t stop_at;
};

static bool stop_visitor(const mi_heap_t* heap, const mi_heap_area_t* area, void* block,
                         size_t block_size, void* arg) {
  (void)heap;
  (void)area;
  (void)block;
  (void)block_size;
  struct stop_after* s = arg;
  s->calls++;
  return s->calls < s->stop_at;
}

static void test_heap_visit_blocks_stops_when_the_visitor_returns_false(void** state) {
  (void)state;
  mi_heap_t* h = mi_heap_new();
  assert_non_null(h);
  void* p[300];
  for (int i = 0; i < 300; i++) {
    p[i] = mi_heap_malloc(h, i < 100 ? 32 : i < 200 ? 500 : 4000);
    assert_non_null(p[i]);
  }
  for (size_t stop_at = 1; stop_at <= 150; stop_at += 37) {
    struct stop_after s = {0, stop_at};
    assert_false(mi_heap_visit_blocks(h, true, stop_visitor, &s));
    assert_int_equal(s.calls, stop_at);
  }
  /* areas only: stopping at the first area */
  struct stop_after s = {0, 1};
  assert_false(mi_heap_visit_blocks(h, false, stop_visitor, &s));
  assert_int_equal(s.calls, 1);
  /* never stopping: the walk succeeds */
  struct stop_after all = {0, SIZE_MAX};
  assert_true(mi_heap_visit_blocks(h, true, stop_visitor, &all));
  assert_true(all.calls >= 300 + 3);
  mi_heap_destroy(h);
}

struct area_only {
  size_t areas;
  size_t blocks;
  size_t used_sum;
};

static bool area_only_visitor(const mi_heap_t* heap, const mi_heap_area_t* area, void* block,
                              size_t block_size, void* arg) {
  (void)heap;
  (void)block_size;
  struct area_only* a = arg;
  if (block == NULL) {
    a->areas++;
    a->used_sum += area->used;
  } else {
    a->blocks++;
  }
  return true;
}

static void test_heap_visit_without_visit_all_blocks_sees_only_areas(void** state) {
  (void)state;
  mi_heap_t* h = mi_heap_new();
  assert_non_null(h);
  enum { N = 2000 };
  void** p = mi_malloc(N * sizeof(void*));
  assert_non_null(p);
  for (int i = 0; i < N; i++) {
    p[i] = mi_heap_malloc(h, i % 4 == 0 ? 48 : i % 4 == 1 ? 700 : i % 4 == 2 ? 9000 : 24);
    assert_non_null(p[i]);
  }
  size_t live = N;
  for (int i = 0; i < N; i += 7) {
    mi_free(p[i]);
    live--;
  }
  struct area_only a = {0};
  assert_true(mi_heap_visit_blocks(h, false, area_only_visitor, &a));
  assert_true(a.areas >= 4);
  assert_int_equal(a.blocks, 0);
  assert_int_equal(a.used_sum, live);
  /* an empty new heap has nothing to visit */
  mi_heap_t* empty = mi_heap_new();
  assert_non_null(empty);
  struct area_only e = {0};
  assert_true(mi_heap_visit_blocks(empty, true, area_only_visitor, &e));
  assert_int_equal(e.blocks, 0);
  assert_int_equal(e.used_sum, 0);
  mi_heap_delete(empty);
  mi_heap_destroy(h);
  mi_free(p);
}

/* ---- ownership ---------------------------------------------------------------------------- */

static void test_heap_contains_block_only_for_its_own_blocks(void** state) {
  (void)state;
  mi_heap_t* h1 = mi_heap_new();
  mi_heap_t* h2 = mi_heap_new();
  assert_non_null(h1);
  assert_non_null(h2);
  static const size_t sizes[] = {8, 100, 5000, 30 * KiB, 200 * KiB, 2 * MiB};
  for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
    void* a = mi_heap_malloc(h1, sizes[s]);
    void* b = mi_heap_malloc(h2, sizes[s]);
    assert_non_null(a);
    assert_non_null(b);
    assert_true(mi_heap_contains_block(h1, a));
    assert_false(mi_heap_contains_block(h1, b));
    assert_true(mi_heap_contains_block(h2, b));
    assert_false(mi_heap_contains_block(h2, a));
    assert_false(mi_heap_contains_block(mi_heap_get_backing(), a));
    mi_free(a);
    mi_free(b);
  }
  int on_stack = 0;
  assert_false(mi_heap_contains_block(h1, &on_stack));
  assert_false(mi_heap_contains_block(mi_heap_get_backing(), &on_stack));
  assert_false(mi_heap_contains_block(h1, &a_static_int));
  assert_false(mi_heap_contains_block(h1, NULL));
  mi_heap_delete(h1);
  mi_heap_delete(h2);
}

static void test_heap_check_owned_accepts_interior_pointers_of_its_blocks(void** state) {
  (void)state;
  mi_heap_t* h1 = mi_heap_new();
  mi_heap_t* h2 = mi_heap_new();
  assert_non_null(h1);
  assert_non_null(h2);
  static const size_t sizes[] = {16, 256, 3000, 40 * KiB, 300 * KiB, 2 * MiB};
  for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
    uint8_t* a = mi_heap_malloc(h1, sizes[s]);
    uint8_t* b = mi_heap_malloc(h2, sizes[s]);
    assert_non_null(a);
    assert_non_null(b);
    /* word-aligned interior pointers: start, middle, last word */
    size_t offsets[] = {0, 8, (sizes[s] / 2) & ~(size_t)7, (sizes[s] - 8) & ~(size_t)7};
    for (size_t k = 0; k < sizeof(offsets) / sizeof(offsets[0]); k++) {
      assert_true(mi_heap_check_owned(h1, a + offsets[k]));
      assert_false(mi_heap_check_owned(h1, b + offsets[k]));
      assert_true(mi_heap_check_owned(h2, b + offsets[k]));
      assert_false(mi_heap_check_owned(h2, a + offsets[k]));
    }
    mi_free(a);
    mi_free(b);
  }
  int on_stack = 0;
  assert_false(mi_heap_check_owned(h1, &on_stack));
  assert_false(mi_heap_check_owned(h1, &a_static_int));
  assert_false(mi_heap_check_owned(h1, NULL));

  /* mi_check_owned asks the default heap */
  void* d = mi_malloc(100);
  void* x = mi_heap_malloc(h1, 100);
  assert_non_null(d);
  assert_non_null(x);
  assert_true(mi_check_owned(d));
  assert_true(mi_check_owned((uint8_t*)d + 40));
  assert_false(mi_check_owned(x));
  assert_false(mi_check_owned(&on_stack));
  assert_ptr_equal(mi_heap_set_default(h1), mi_heap_get_backing());
  assert_true(mi_check_owned(x));
  assert_false(mi_check_owned(d));
  mi_heap_set_default(mi_heap_get_backing());
  mi_free(d);
  mi_free(x);
  mi_heap_delete(h1);
  mi_heap_delete(h2);
}

static void test_is_in_heap_region_only_for_our_memory(void** state) {
  (void)state;
  mi_heap_t* h = mi_heap_new();
  assert_non_null(h);
  static const size_t sizes[] = {1, 64, 4000, 50 * KiB, 500 * KiB, 4 * MiB, 20 * MiB};
  for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
    uint8_t* p = mi_malloc(sizes[s]);
    uint8_t* q = mi_heap_malloc(h, sizes[s]);
    assert_non_null(p);
    assert_non_null(q);
    assert_true(mi_is_in_heap_region(p));
    assert_true(mi_is_in_heap_region(p + sizes[s] - 1));
    assert_true(mi_is_in_heap_region(q));
    assert_true(mi_is_in_heap_region(q + sizes[s] / 2));
    mi_free(p);
    mi_free(q);
  }
  mi_heap_delete(h);
  int on_stack = 0;
  assert_false(mi_is_in_heap_region(&on_stack));
  assert_false(mi_is_in_heap_region(&a_static_int));
  assert_false(mi_is_in_heap_region(NULL));
  /* memory mapped by someone else */
  void* m = mmap(NULL, 64 * KiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  assert_true(m != MAP_FAILED);
  assert_false(mi_is_in_heap_region(m));
  munmap(m, 64 * KiB);
  /* libc's own malloc (not the one this executable may export); on Windows the process heap */
#if defined(_WIN32)
  void* libc = (void*)1;
  void* (*libc_malloc)(size_t) = other_malloc;
  void (*libc_free)(void*) = other_free;
  {
#else
  void* libc = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
  if (libc == NULL) libc = dlopen("libc.so.6", RTLD_NOW);
  if (libc != NULL) {
    void* (*libc_malloc)(size_t) = (void* (*)(size_t))dlsym(libc, "malloc");
    void (*libc_free)(void*) = (void (*)(void*))dlsym(libc, "free");
#endif
    if (libc_malloc != NULL && libc_free != NULL) {
      static const size_t libc_sizes[] = {32, 4000, 200 * KiB};
      for (size_t s = 0; s < sizeof(libc_sizes) / sizeof(libc_sizes[0]); s++) {
        void* lp = libc_malloc(libc_sizes[s]);
        assert_non_null(lp);
        assert_false(mi_is_in_heap_region(lp));
        assert_false(mi_heap_contains_block(mi_heap_get_backing(), lp));
        assert_false(mi_check_owned(lp));
        libc_free(lp);
      }
    }
#if !defined(_WIN32)
    dlclose(libc);
#endif
  }
  (void)libc;
}

/* ---- the mi_heap_* allocation variants ----------------------------------------------------- */

static void test_heap_malloc_zalloc_calloc_mallocn_allocate_from_that_heap(void** state) {
  (void)state;
  mi_heap_t* h = mi_heap_new();
  assert_non_null(h);
  static const size_t sizes[] = {0, 1, 8, 24, 100, 1000, 5000, 20 * KiB, 100 * KiB, 2 * MiB};
  for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
    size_t n = sizes[s];
    void* keep = n > 0 ? dirty_size_class(h, n) : NULL;
    void* m = mi_heap_malloc(h, n);
    void* z = mi_heap_zalloc(h, n);
    void* c = mi_heap_calloc(h, n == 0 ? 0 : n / 4 + 1, 4);
    void* mn = mi_heap_mallocn(h, 3, n);
    assert_non_null(m);
    assert_non_null(z);
    assert_non_null(c);
    assert_non_null(mn);
    assert_true(mi_heap_contains_block(h, m));
    assert_true(mi_heap_contains_block(h, z));
    assert_true(mi_heap_contains_block(h, c));
    assert_true(mi_heap_contains_block(h, mn));
    assert_true(mi_usable_size(m) >= n);
    assert_true(mi_usable_size(mn) >= 3 * n);
    assert_true(is_aligned(m, n <= 8 ? 8 : 16));
    assert_int_equal(first_nonzero_in(z, 0, n), n);
    size_t cn = n == 0 ? 0 : (n / 4 + 1) * 4;
    assert_int_equal(first_nonzero_in(c, 0, cn), cn);
    memset(m, 0x5A, n);
    memset(mn, 0x5A, 3 * n);
    mi_free(m);
    mi_free(z);
    mi_free(c);
    mi_free(mn);
    mi_free(keep);
  }
  /* the small variants */
  for (size_t n = 1; n <= 1024; n += 73) {
    void* keep = dirty_size_class(h, n);
    void* m = mi_heap_malloc_small(h, n);
    void* z = mi_heap_zalloc_small(h, n);
    assert_non_null(m);
    assert_non_null(z);
    assert_true(mi_heap_contains_block(h, m));
    assert_true(mi_heap_contains_block(h, z));
    assert_true(mi_usable_size(m) >= n);
    assert_int_equal(first_nonzero_in(z, 0, n), n);
    mi_free(m);
    mi_free(z);
    mi_free(keep);
  }
  /* overflow and impossible sizes: NULL with ENOMEM */
  errno = 0;
  assert_null(mi_heap_calloc(h, v_half_plus_one, 2));
  assert_int_equal(errno, ENOMEM);
  errno = 0;
  assert_null(mi_heap_calloc(h, 2, v_half_plus_one));
  assert_int_equal(errno, ENOMEM);
  errno = 0;
  assert_null(mi_heap_mallocn(h, v_half_plus_one, 4));
  assert_int_equal(errno, ENOMEM);
  errno = 0;
  assert_null(mi_heap_malloc(h, v_ptrdiff_max_plus_one));
  assert_int_equal(errno, ENOMEM);
  errno = 0;
  assert_null(mi_heap_zalloc(h, v_size_max));
  assert_int_equal(errno, ENOMEM);
  /* nothing is left in the heap */
  assert_heap_holds_exactly(h, NULL, 0);
  mi_heap_delete(h);
}

static void test_heap_realloc_variants_allocate_from_that_heap(void** state) {
  (void)state;
  mi_heap_t* h = mi_heap_new();
  assert_non_null(h);
  /* realloc(NULL) acts as malloc, in the heap */
  void* p = mi_heap_realloc(h, NULL, 50);
  assert_non_null(p);
  assert_true(mi_heap_contains_block(h, p));
  fill_pattern(p, 50, 1);
  /* growing through every size range keeps the contents and stays in the heap */
  size_t cur = 50;
  static const size_t grow[] = {200, 3000, 30 * KiB, 300 * KiB, 3 * MiB, 100, 17};
  for (size_t g = 0; g < sizeof(grow) / sizeof(grow[0]); g++) {
    size_t keep = cur < grow[g] ? cur : grow[g];
    p = mi_heap_realloc(h, p, grow[g]);
    assert_non_null(p);
    assert_true(mi_heap_contains_block(h, p));
    assert_int_equal(check_pattern(p, keep, 1), keep);
    fill_pattern(p, grow[g], 1);
    cur = grow[g];
  }
  /* a block of another heap moves into this heap when it must move */
  void* other = mi_malloc(40);
  assert_non_null(other);
  fill_pattern(other, 40, 2);
  void* moved = mi_heap_realloc(h, other, 4000);
  assert_non_null(moved);
  assert_true(mi_heap_contains_block(h, moved));
  assert_int_equal(check_pattern(moved, 40, 2), 40);
  mi_free(moved);

  /* reallocn */
  void* r = mi_heap_reallocn(h, NULL, 10, 12);
  assert_non_null(r);
  assert_true(mi_heap_contains_block(h, r));
  fill_pattern(r, 120, 3);
  r = mi_heap_reallocn(h, r, 1000, 12);
  assert_non_null(r);
  assert_true(mi_heap_contains_block(h, r));
  assert_true(mi_usable_size(r) >= 12000);
  assert_int_equal(check_pattern(r, 120, 3), 120);
  assert_null(mi_heap_reallocn(h, r, v_half_plus_one, 2)); /* overflow: block kept */
  assert_int_equal(check_pattern(r, 120, 3), 120);
  assert_null(mi_heap_realloc(h, r, v_size_max)); /* failure: block kept */
  assert_int_equal(check_pattern(r, 120, 3), 120);

  /* reallocf: on success like realloc, on failure the block is freed */
  void* f = mi_heap_reallocf(h, NULL, 30);
  assert_non_null(f);
  assert_true(mi_heap_contains_block(h, f));
  fill_pattern(f, 30, 4);
  f = mi_heap_reallocf(h, f, 9000);
  assert_non_null(f);
  assert_true(mi_heap_contains_block(h, f));
  assert_int_equal(check_pattern(f, 30, 4), 30);
  void* live_now[2] = {p, r};
  void* all_three[3] = {p, r, f};
  assert_heap_holds_exactly(h, all_three, 3);
  assert_null(mi_heap_reallocf(h, f, v_size_max));
  /* f is gone: only p and r are live */
  assert_heap_holds_exactly(h, live_now, 2);
  mi_free(p);
  mi_free(r);
  assert_heap_holds_exactly(h, NULL, 0);
  mi_heap_delete(h);
}

static void test_heap_string_variants_allocate_from_that_heap(void** state) {
  (void)state;
  mi_heap_t* h = mi_heap_new();
  assert_non_null(h);
  const char* text = "first-class heaps keep their blocks";
  char* s = mi_heap_strdup(h, text);
  assert_non_null(s);
  assert_true(mi_heap_contains_block(h, s));
  assert_string_equal(s, text);
  assert_null(mi_heap_strdup(h, NULL));
  char* t = mi_heap_strndup(h, text, 11);
  assert_non_null(t);
  assert_true(mi_heap_contains_block(h, t));
  assert_string_equal(t, "first-class");
  char* u = mi_heap_strndup(h, "short", 100);
  assert_non_null(u);
  assert_true(mi_heap_contains_block(h, u));
  assert_string_equal(u, "short");
  char* e = mi_heap_strndup(h, text, 0);
  assert_non_null(e);
  assert_string_equal(e, "");
  /* a long string */
  size_t big_len = 70000;
  char* big = mi_malloc(big_len + 1);
  assert_non_null(big);
  memset(big, 'x', big_len);
  big[big_len] = 0;
  char* bd = mi_heap_strdup(h, big);
  assert_non_null(bd);
  assert_true(mi_heap_contains_block(h, bd));
  assert_int_equal(strlen(bd), big_len);

  /* realpath: allocated in the heap when no buffer is given */
  char expected[PATH_MAX];
  assert_non_null(realpath(".", expected));
  char* rp = mi_heap_realpath(h, ".", NULL);
  assert_non_null(rp);
  assert_true(mi_heap_contains_block(h, rp));
  assert_string_equal(rp, expected);
  char buf[PATH_MAX];
  assert_ptr_equal(mi_heap_realpath(h, ".", buf), buf);
  assert_string_equal(buf, expected);
#if !defined(_WIN32)
  errno = 0;
  assert_null(mi_heap_realpath(h, "/no/such/dir/for/libmimalloc/tests", NULL));
  assert_int_equal(errno, ENOENT);
#endif

  void* live[] = {s, t, u, e, bd, rp};
  assert_heap_holds_exactly(h, live, sizeof(live) / sizeof(live[0]));
  mi_free(s);
  mi_free(t);
  mi_free(u);
  mi_free(e);
  mi_free(bd);
  mi_free(big);
  mi_free(rp);
  mi_heap_delete(h);
}

static const size_t test_alignments[] = {8, 16, 32, 64, 128, 256, 4096, 64 * KiB, MiB};
static const size_t aligned_sizes[] = {1, 24, 100, 1000, 5000, 70000};
static const size_t aligned_offsets[] = {0, 8, 16, 40};
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static void test_heap_aligned_variants_allocate_from_that_heap(void** state) {
  (void)state;
  mi_heap_t* h = mi_heap_new();
  assert_non_null(h);
  for (size_t a = 0; a < COUNT(test_alignments); a++) {
    size_t al = test_alignments[a];
    for (size_t s = 0; s < COUNT(aligned_sizes); s++) {
      size_t n = aligned_sizes[s];
      void* keep = dirty_size_class(h, n);
      void* m = mi_heap_malloc_aligned(h, n, al);
      void* z = mi_heap_zalloc_aligned(h, n, al);
      void* c = mi_heap_calloc_aligned(h, n, 3, al);
      assert_non_null(m);
      assert_non_null(z);
      assert_non_null(c);
      assert_true(is_aligned(m, al));
      assert_true(is_aligned(z, al));
      assert_true(is_aligned(c, al));
      assert_true(mi_heap_contains_block(h, m));
      assert_true(mi_heap_contains_block(h, z));
      assert_true(mi_heap_contains_block(h, c));
      assert_true(mi_usable_size(m) >= n);
      assert_int_equal(first_nonzero_in(z, 0, n), n);
      assert_int_equal(first_nonzero_in(c, 0, 3 * n), 3 * n);
      memset(m, 0xA1, n);
      /* realloc_aligned keeps alignment, content and heap */
      fill_pattern(m, n, 7);
      void* g = mi_heap_realloc_aligned(h, m, 2 * n + 100, al);
      assert_non_null(g);
      assert_true(is_aligned(g, al));
      assert_true(mi_heap_contains_block(h, g));
      assert_int_equal(check_pattern(g, n, 7), n);
      mi_free(g);
      mi_free(z);
      mi_free(c);
      for (size_t o = 0; o < COUNT(aligned_offsets); o++) {
        size_t off = aligned_offsets[o];
        uint8_t* ma = mi_heap_malloc_aligned_at(h, n + off, al, off);
        uint8_t* za = mi_heap_zalloc_aligned_at(h, n + off, al, off);
        uint8_t* ca = mi_heap_calloc_aligned_at(h, n + off, 2, al, off);
        assert_non_null(ma);
        assert_non_null(za);
        assert_non_null(ca);
        assert_true(is_aligned(ma + off, al));
        assert_true(is_aligned(za + off, al));
        assert_true(is_aligned(ca + off, al));
        assert_true(mi_heap_contains_block(h, ma));
        assert_true(mi_heap_contains_block(h, za));
        assert_true(mi_heap_contains_block(h, ca));
        assert_int_equal(first_nonzero_in(za, 0, n + off), n + off);
        assert_int_equal(first_nonzero_in(ca, 0, 2 * (n + off)), 2 * (n + off));
        fill_pattern(ma, n + off, 8);
        uint8_t* ga = mi_heap_realloc_aligned_at(h, ma, 3 * n + off, al, off);
        assert_non_null(ga);
        assert_true(is_aligned(ga + off, al));
        assert_true(mi_heap_contains_block(h, ga));
        assert_int_equal(check_pattern(ga, n + off, 8), n + off);
        mi_free(ga);
        mi_free(za);
        mi_free(ca);
      }
      mi_free(keep);
    }
  }
  /* a non-power-of-two alignment is refused */
  assert_null(mi_heap_malloc_aligned(h, 64, 48));
  assert_null(mi_heap_zalloc_aligned(h, 64, 3));
  /* overflow in calloc_aligned */
  errno = 0;
  assert_null(mi_heap_calloc_aligned(h, v_half_plus_one, 2, 64));
  assert_int_equal(errno, ENOMEM);
  assert_heap_holds_exactly(h, NULL, 0);
  mi_heap_delete(h);
}

/* Zero-preserving reallocation: a zero-allocated block grows with zeros. The pattern covers
 * the first n-8 bytes (the last word of the old size may be re-zeroed, facts 1.7). */
static void check_zero_growth(const void* p, size_t n, size_t newsize, uint64_t seed) {
  assert_int_equal(check_pattern(p, n - 8, seed), n - 8);
  size_t nz = first_nonzero_in(p, n - 8, newsize);
  if (nz != newsize) fail_msg("byte %zu of the grown block is not zero (n=%zu, new=%zu)", nz, n,
                              newsize);
}

static void test_heap_rezalloc_and_recalloc_grow_with_zeros_in_that_heap(void** state) {
  (void)state;
  mi_heap_t* h = mi_heap_new();
  assert_non_null(h);
  static const size_t sizes[] = {16, 100, 1000, 5000, 30 * KiB, 200 * KiB}; /* (large: in place) */
  static const size_t factors[] = {2, 5, 40};
  for (size_t s = 0; s < COUNT(sizes); s++) {
    for (size_t f = 0; f < COUNT(factors); f++) {
      size_t n = sizes[s], m = sizes[s] * factors[f];
      void* keep = dirty_size_class(h, m);
      /* rezalloc */
      uint8_t* p = mi_heap_zalloc(h, n);
      assert_non_null(p);
      fill_pattern(p, n - 8, 11);
      p = mi_heap_rezalloc(h, p, m);
      assert_non_null(p);
      assert_true(mi_heap_contains_block(h, p));
      check_zero_growth(p, n, m, 11);
      mi_free(p);
      /* recalloc (count x 4 bytes) */
      uint8_t* q = mi_heap_calloc(h, n / 4, 4);
      assert_non_null(q);
      fill_pattern(q, n - 8, 12);
      q = mi_heap_recalloc(h, q, m / 4, 4);
      assert_non_null(q);
      assert_true(mi_heap_contains_block(h, q));
      check_zero_growth(q, n, m, 12);
      mi_free(q);
      /* the aligned forms */
      for (size_t a = 0; a < 4; a++) {
        size_t al = (size_t)32 << (3 * a); /* 32, 256, 2 KiB, 16 KiB */
        uint8_t* za = mi_heap_zalloc_aligned(h, n, al);
        assert_non_null(za);
        fill_pattern(za, n - 8, 13);
        za = mi_heap_rezalloc_aligned(h, za, m, al);
        assert_non_null(za);
        assert_true(is_aligned(za, al));
        assert_true(mi_heap_contains_block(h, za));
        check_zero_growth(za, n, m, 13);
        mi_free(za);

        uint8_t* ca = mi_heap_calloc_aligned(h, n / 4, 4, al);
        assert_non_null(ca);
        fill_pattern(ca, n - 8, 14);
        ca = mi_heap_recalloc_aligned(h, ca, m / 4, 4, al);
        assert_non_null(ca);
        assert_true(is_aligned(ca, al));
        assert_true(mi_heap_contains_block(h, ca));
        check_zero_growth(ca, n, m, 14);
        mi_free(ca);

        size_t off = 16;
        uint8_t* zo = mi_heap_zalloc_aligned_at(h, n, al, off);
        assert_non_null(zo);
        fill_pattern(zo, n - 8, 15);
        zo = mi_heap_rezalloc_aligned_at(h, zo, m, al, off);
        assert_non_null(zo);
        assert_true(is_aligned(zo + off, al));
        assert_true(mi_heap_contains_block(h, zo));
        check_zero_growth(zo, n, m, 15);
        mi_free(zo);

        uint8_t* co = mi_heap_calloc_aligned_at(h, n / 4, 4, al, off);
        assert_non_null(co);
        fill_pattern(co, n - 8, 16);
        co = mi_heap_recalloc_aligned_at(h, co, m / 4, 4, al, off);
        assert_non_null(co);
        assert_true(is_aligned(co + off, al));
        assert_true(mi_heap_contains_block(h, co));
        check_zero_growth(co, n, m, 16);
        mi_free(co);
      }
      mi_free(keep);
    }
  }
  /* recalloc overflow: NULL, block kept */
  uint8_t* z = mi_heap_zalloc(h, 64);
  assert_non_null(z);
  fill_pattern(z, 64, 17);
  assert_null(mi_heap_recalloc(h, z, v_half_plus_one, 2));
  assert_int_equal(check_pattern(z, 64, 17), 64);
  mi_free(z);
  assert_heap_holds_exactly(h, NULL, 0);
  mi_heap_delete(h);
}

/* ---- heaps in an exclusive arena ------------------------------------------------------------ */

static void test_heap_new_in_arena_allocates_only_inside_its_exclusive_arena(void** state) {
  (void)state;
  mi_arena_id_t id = 0;
  assert_int_equal(mi_reserve_os_memory_ex(64 * MiB, true, false, true, &id), 0);
  assert_true(id != 0);
  size_t arena_size = 0;
  void* arena = mi_arena_area(id, &arena_size);
  assert_non_null(arena);
  assert_true(arena_size >= 32 * MiB);

  mi_heap_t* h = mi_heap_new_in_arena(id);
  assert_non_null(h);
  assert_ptr_not_equal(h, mi_heap_get_backing());
  static const size_t sizes[] = {8, 100, 1000, 9000, 20 * KiB, 60 * KiB, 200 * KiB, MiB};
  enum { PER = 20 };
  void* in_arena[COUNT(sizes) * PER];
  size_t n = 0;
  for (size_t s = 0; s < COUNT(sizes); s++) {
    for (int i = 0; i < PER; i++) {
      void* p = mi_heap_malloc(h, sizes[s]);
      assert_non_null(p);
      if (!in_range(p, arena, arena_size)) {
        fail_msg("block of %zu bytes at %p is outside the arena [%p, +%zu)", sizes[s], p, arena,
                 arena_size);
      }
      assert_true(mi_heap_contains_block(h, p));
      memset(p, 0x44, sizes[s]);
      in_arena[n++] = p;
    }
  }
  /* the default heap never allocates there, not even when it needs fresh memory */
  enum { DN = 64 };
  void* outside[COUNT(sizes) * 8 + DN];
  size_t nd = 0;
  for (size_t s = 0; s < COUNT(sizes); s++) {
    for (int i = 0; i < 8; i++) {
      void* p = mi_malloc(sizes[s]);
      assert_non_null(p);
      assert_false(in_range(p, arena, arena_size));
      outside[nd++] = p;
    }
  }
  for (int i = 0; i < DN; i++) {
    void* p = mi_malloc(MiB);
    assert_non_null(p);
    assert_false(in_range(p, arena, arena_size));
    outside[nd++] = p;
  }
  /* filling the arena: every block is still inside; when it is full, NULL rather than
   * memory from elsewhere */
  void* fill[160];
  size_t nfill = 0;
  while (nfill < COUNT(fill)) {
    void* p = mi_heap_malloc(h, MiB);
    if (p == NULL) break;
    if (!in_range(p, arena, arena_size)) {
      fail_msg("1 MiB block %zu at %p is outside the arena [%p, +%zu)", nfill, p, arena,
               arena_size);
    }
    fill[nfill++] = p;
  }
  assert_true(nfill > 4);
  assert_true(nfill < COUNT(fill));
  for (size_t i = 0; i < nfill; i++) mi_free(fill[i]);
  /* a second heap in the same arena also stays inside */
  mi_heap_t* h2 = mi_heap_new_ex(0, true, id);
  assert_non_null(h2);
  void* p2 = mi_heap_malloc(h2, 5000);
  assert_non_null(p2);
  assert_true(in_range(p2, arena, arena_size));
  mi_heap_destroy(h2);

  for (size_t i = 0; i < nd; i++) mi_free(outside[i]);
  for (size_t i = 0; i < n; i++) mi_free(in_arena[i]);
  mi_heap_delete(h);
}

/* ---- page utilisation ----------------------------------------------------------------------- */

static void test_unsafe_heap_page_is_under_utilized_is_false_for_the_current_page(void** state) {
  (void)state;
  mi_heap_t* h = mi_heap_new();
  assert_non_null(h);
  static const size_t sizes[] = {16, 64, 500, 4000, 20 * KiB};
  for (size_t s = 0; s < COUNT(sizes); s++) {
    void* a = mi_heap_malloc(h, sizes[s]);
    void* b = mi_heap_malloc(h, sizes[s]);
    assert_non_null(a);
    assert_non_null(b);
    /* the page being allocated from is never reported, whatever the threshold */
    assert_false(mi_unsafe_heap_page_is_under_utilized(h, b, 100));
    assert_false(mi_unsafe_heap_page_is_under_utilized(h, a, 100));
    assert_false(mi_unsafe_heap_page_is_under_utilized(h, b, 0));
    /* nor a block of another heap */
    assert_false(mi_unsafe_heap_page_is_under_utilized(mi_heap_get_backing(), b, 100));
    mi_free(a);
    mi_free(b);
  }
  int on_stack = 0;
  assert_false(mi_unsafe_heap_page_is_under_utilized(h, &on_stack, 100));
  mi_heap_destroy(h);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_heap_new_variants_return_distinct_heaps),
      cmocka_unit_test(test_heap_backing_is_stable_per_thread_and_differs_between_threads),
      cmocka_unit_test(test_heap_set_default_returns_previous_and_redirects_malloc),
      cmocka_unit_test(test_heap_delete_of_the_default_heap_makes_the_backing_heap_default),
      cmocka_unit_test(test_heap_delete_keeps_blocks_valid_in_the_backing_heap),
      cmocka_unit_test(test_heap_delete_of_a_tagged_heap_keeps_blocks_valid),
      cmocka_unit_test(test_heap_delete_leaves_blocks_freeable_by_another_thread),
      cmocka_unit_test(test_heap_delete_races_cleanly_with_remote_frees),
      cmocka_unit_test(test_heap_destroy_frees_blocks_of_every_size_at_once),
      cmocka_unit_test(test_heap_destroy_without_allow_destroy_falls_back_to_delete),
      cmocka_unit_test(test_heap_remote_frees_then_collect_leave_exactly_the_live_blocks),
      cmocka_unit_test(test_heap_visit_takes_in_remote_frees_into_full_pages),
      cmocka_unit_test(test_heap_visit_blocks_visits_each_live_block_exactly_once),
      cmocka_unit_test(test_heap_visit_area_block_size_covers_the_request),
      cmocka_unit_test(test_heap_visit_blocks_stops_when_the_visitor_returns_false),
      cmocka_unit_test(test_heap_visit_without_visit_all_blocks_sees_only_areas),
      cmocka_unit_test(test_heap_contains_block_only_for_its_own_blocks),
      cmocka_unit_test(test_heap_check_owned_accepts_interior_pointers_of_its_blocks),
      cmocka_unit_test(test_is_in_heap_region_only_for_our_memory),
      cmocka_unit_test(test_heap_malloc_zalloc_calloc_mallocn_allocate_from_that_heap),
      cmocka_unit_test(test_heap_realloc_variants_allocate_from_that_heap),
      cmocka_unit_test(test_heap_string_variants_allocate_from_that_heap),
      cmocka_unit_test(test_heap_aligned_variants_allocate_from_that_heap),
      cmocka_unit_test(test_heap_rezalloc_and_recalloc_grow_with_zeros_in_that_heap),
      cmocka_unit_test(test_heap_new_in_arena_allocates_only_inside_its_exclusive_arena),
      cmocka_unit_test(test_unsafe_heap_page_is_under_utilized_is_false_for_the_current_page),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
