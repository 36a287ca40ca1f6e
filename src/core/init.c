/* Process and thread start and end.
 *
 * The thread-local default heap starts as the read-only empty heap, so the first allocation of
 * every thread takes the slow path, which initialises the process (once) and the thread. The
 * main thread uses static heap and thread data; other threads get theirs from the OS (with a
 * small cache so thread churn is not mmap churn). At thread exit (backend hook) the thread's
 * pages with live blocks are abandoned for other threads to reclaim.
 */
#include <string.h>

#include "core.h"

lm_process_t lm_process;

const lm_page_t lm_page_empty;

const lm_heap_t lm_heap_empty = {
    .tld = NULL,
    .pages_free_direct = {[0 ... LM_PAGES_DIRECT - 1] = (lm_page_t*)&lm_page_empty},
};

#if LM_HEAP_SLOT_NATIVE
_Thread_local lm_heap_t* lm_heap_default = (lm_heap_t*)&lm_heap_empty;
#endif

static lm_heap_t heap_main;
static lm_tld_t tld_main;

/* ---- thread data: heap + tld, from the OS with a small cache ------------------------------- */
typedef struct lm_thread_data_s {
  lm_heap_t heap;
  lm_tld_t tld;
  lm_memid_t memid;
} lm_thread_data_t;

#define TD_CACHE_SIZE 16
static _Atomic(lm_thread_data_t*) td_cache[TD_CACHE_SIZE];

static lm_thread_data_t* thread_data_alloc(void) {
  for (size_t i = 0; i < TD_CACHE_SIZE; i++) {
    lm_thread_data_t* td = atomic_load_explicit(&td_cache[i], memory_order_relaxed);
    if (td != NULL && atomic_compare_exchange_strong(&td_cache[i], &td, NULL)) return td;
  }
  lm_memid_t memid;
  lm_thread_data_t* td =
      lm_os_alloc(&lm_process.arenas, sizeof(lm_thread_data_t), true, &memid);
  if (td == NULL) return NULL;
  td->memid = memid;
  return td;
}

/* Cached thread data serves threads that start as others end: a quota of a few CPUs keeps a
 * few in flight, whatever the host's core count. */
static size_t td_cache_slots(void) {
  size_t cpus = lm_container_cpus();
  return cpus != 0 ? lm_min(lm_max(2 * cpus, 2), TD_CACHE_SIZE) : TD_CACHE_SIZE;
}

static void thread_data_free(lm_thread_data_t* td) {
  size_t slots = td_cache_slots();
  for (size_t i = 0; i < slots; i++) {
    lm_thread_data_t* expected = NULL;
    if (atomic_compare_exchange_strong(&td_cache[i], &expected, td)) return;
  }
  lm_memid_t memid = td->memid;
  lm_os_free(&lm_process.arenas, td, sizeof(*td), &memid);
}

/* ---- heaps ------------------------------------------------------------------------------------ */

void lm_heap_init(lm_heap_t* heap, lm_tld_t* tld, int arena_id, bool allow_destroy, uint8_t tag) {
  memset(heap, 0, sizeof(*heap));
  heap->tld = tld;
  heap->thread_id = lm_thread_id();
  heap->arena_id = arena_id;
  /* A heap that may be destroyed must never hold blocks it did not allocate itself. */
  heap->allow_destroy = allow_destroy;
  heap->no_reclaim = allow_destroy;
  heap->tag = tag;
  heap->page_retired_min = LM_BIN_FULL;
  lm_random_init(&heap->random, lm_process.backend);
  heap->cookie = (uintptr_t)lm_random_next(&heap->random) | 1;
  lm_heap_guarded_init(heap);
  for (size_t i = 0; i < LM_PAGES_DIRECT; i++) {
    heap->pages_free_direct[i] = (lm_page_t*)&lm_page_empty;
  }
  for (uint8_t bin = 0; bin < LM_BIN_COUNT; bin++) {
    size_t size = bin == 0                ? 8
                  : bin <= 48             ? lm_bin_size(bin)
                  : bin == LM_BIN_FULL    ? LM_MEDIUM_OBJ_SIZE_MAX + 16
                                          : LM_MEDIUM_OBJ_SIZE_MAX + 8;
    heap->pages[bin] = (lm_page_queue_t){NULL, NULL, size};
  }
  heap->next = tld->heaps;
  tld->heaps = heap;
}

static void tld_init(lm_tld_t* tld, lm_heap_t* backing) {
  memset(tld, 0, sizeof(*tld));
  tld->heap_backing = backing;
  lm_segments_tld_init(&tld->segments, &lm_process.segments);
}

/* ---- process -------------------------------------------------------------------------------- */

static void thread_exit_hook(void* arg);

/* The arena layer's verbose messages, through our output. */
static void arena_notice(const char* msg) { lm_verbose("%s", msg); }

/* MIMALLOC_FAULT_OS: OS memory calls that fail on purpose (see lm_fault_plan_t), to test how
 * a program, or this library, copes with running out: "N" fails the Nth, "reserve", "commit"
 * or "all" every call of that kind, comma-separated. */
static void fault_plan_from_env(const lm_backend_t* backend) {
  char spec[64];
  if (backend->getenv == NULL || !backend->getenv("MIMALLOC_FAULT_OS", spec, sizeof(spec))) return;
  int64_t nth = 0;
  unsigned kinds = 0;
  if (!lm_fault_parse(spec, &nth, &kinds)) {
    lm_warning("MIMALLOC_FAULT_OS=%s is not understood (N, reserve, commit or all, "
               "comma-separated): no faults injected", spec);
    return;
  }
  lm_arenas_fault_set(&lm_process.arenas, nth, kinds);
}

static void process_setup(void) {
  const lm_backend_t* backend = lm_backend_default();
  lm_process.backend = backend;
  atomic_store(&lm_assert_reporter, lm_assert_report);
  lm_platform_process_setup();
  lm_options_init();
  lm_mem_config_t mem;
  lm_mem_config_default(&mem);
  mem.purge_delay_ms = lm_option_get(mi_option_purge_delay);
  mem.arena_purge_mult = lm_option_get(mi_option_arena_purge_mult);
  mem.purge_decommits = lm_option_get(mi_option_purge_decommits) != 0;
  mem.arena_reserve = (size_t)lm_option_get(mi_option_arena_reserve) * LM_KiB;
  mem.arena_eager_commit = (int)lm_option_get(mi_option_arena_eager_commit);
  mem.disallow_os_alloc = lm_option_get(mi_option_disallow_os_alloc) != 0;
  if (lm_option_get(mi_option_disallow_arena_alloc) != 0) mem.arena_reserve = 0;
  mem.allow_large = lm_option_get(mi_option_allow_large_os_pages) != 0;
  mem.numa_nodes = (int)lm_option_get(mi_option_use_numa_nodes);
  mem.notice = arena_notice;
  if (lm_option_get(mi_option_allow_thp) == 0 && backend->large_pages_allow != NULL) {
    backend->large_pages_allow(false);
  }
  if (lm_arenas_init(&lm_process.arenas, backend, &mem) != 0) return;
  lm_container_init();
  fault_plan_from_env(backend);

  uintptr_t key = 0;
  if (backend->random_bytes == NULL || !backend->random_bytes(&key, sizeof(key))) {
    key = (uintptr_t)backend->clock_ms() * 0x9E3779B97F4A7C15ull ^ (uintptr_t)&key;
  }
  lm_process.cookie_key = key | 1;
  /* Segments and arenas go to hinted addresses in the platform's region (randomised within
   * it), so "ours" is one range test in free. Not under sanitizers, whose runtimes own parts of
   * the address space; none on 32-bit targets (platform.h). */
  if (lm_region_span() != 0 && !LM_SANITIZED) {
    uintptr_t slots = lm_region_span() / LM_SEGMENT_SIZE;
    lm_arenas_set_region(&lm_process.arenas, lm_region_start() + (uintptr_t)((key >> 17) % slots) *
                                                                     LM_SEGMENT_SIZE);
  }
  lm_segment_config_t seg;
  lm_segment_config_default(&seg);
  seg.eager_commit = lm_option_get(mi_option_eager_commit) != 0;
  seg.purge_delay_ms = mem.purge_delay_ms;
  seg.purge_extend_ms = lm_option_get(mi_option_purge_extend_delay);
  seg.max_reclaim_percent = (size_t)lm_option_get(mi_option_max_segment_reclaim);
  /* A linear overflow out of a page faults: each page gives its last OS page to a guard, so
   * only where memory can be protected and an OS page is a small part of a slice (not wasm,
   * whose 64 KiB pages would take a small page whole). */
  seg.guard_pages = LM_SECURE && backend->protect != NULL &&
                    lm_os_page_size(&lm_process.arenas) * 4 <= LM_SLICE_SIZE;
  seg.abandoned_purge = lm_option_get(mi_option_abandoned_page_purge) != 0;
  /* Large pages from 12 MiB into a segment on: a heap that stays under that keeps its 4 KiB
   * granularity, a larger one takes far fewer page faults and TLB misses. From 16 MiB, the
   * quick python3 workload took 1.2x and traverse 1.1x the time; from 8 MiB, tree's 10 MiB
   * heap grew by a 2 MiB page it barely touches (11.7 -> 13.6 MiB); from 4 MiB, threadchurn
   * grew by a quarter. MIMALLOC_ALLOW_THP=0 turns it off. */
  seg.large_pages_from = lm_option_get(mi_option_allow_thp) != 0 ? LM_SEGMENT_SIZE / 8 * 3 : 0;
  lm_segments_init(&lm_process.segments, &lm_process.arenas, &seg, lm_process.cookie_key);

  lm_stats_process_start();
  tld_init(&tld_main, &heap_main);
  lm_heap_init(&heap_main, &tld_main, 0, false, 0);
  lm_tld_register(&tld_main);
  lm_process.heap_main = &heap_main;
  lm_stat_increase(&lm_process.threads, 1); /* the main thread */
  atomic_store(&lm_process.main_thread, lm_thread_id());
  if (backend->thread_exit_register != NULL) backend->thread_exit_register(thread_exit_hook);

  long reserve = lm_option_get(mi_option_reserve_os_memory);
  if (reserve > 0) {
    lm_arena_reserve_ex(&lm_process.arenas, (size_t)reserve * LM_KiB, true, true, false, -1, NULL);
  }
  /* 1 GiB pages at start: all on one node, or spread over them; half a second a page at most
   * (the kernel zeroes each one). What could not be had is reported by the call. */
  long huge_pages = lm_option_get(mi_option_reserve_huge_os_pages);
  if (huge_pages > 0) {
    long node = lm_option_get(mi_option_reserve_huge_os_pages_at);
    size_t timeout = (size_t)huge_pages * 500;
    if (node >= 0) lm_huge_reserve_at((size_t)huge_pages, (int)node, timeout, false, NULL, NULL);
    else lm_huge_reserve_interleave((size_t)huge_pages, 0, timeout, NULL);
  }
}

bool lm_process_ensure_init(void) {
  int state = atomic_load_explicit(&lm_process.init_state, memory_order_acquire);
  if (lm_likely(state == 2)) return lm_process.backend != NULL && lm_process.heap_main != NULL;
  int expected = 0;
  if (atomic_compare_exchange_strong(&lm_process.init_state, &expected, 1)) {
    process_setup();
    atomic_store_explicit(&lm_process.init_state, 2, memory_order_release);
  } else {
    while (atomic_load_explicit(&lm_process.init_state, memory_order_acquire) != 2) {
      lm_cpu_relax();
    }
  }
  return lm_process.heap_main != NULL;
}

/* ---- threads ----------------------------------------------------------------------------------- */

void lm_heap_set_default(lm_heap_t* heap) {
  lm_heap_slot_set(heap);
  /* Arm the exit hook with the backing heap (it outlives the others) of a non-main thread. */
  const lm_backend_t* backend = lm_process.backend;
  if (backend == NULL || backend->thread_exit_arm == NULL || !lm_heap_is_initialized(heap)) return;
  lm_heap_t* backing = heap->tld->heap_backing;
  if (backing != lm_process.heap_main) backend->thread_exit_arm(backing);
}

lm_heap_t* lm_heap_default_init(void) {
  lm_heap_t* heap = lm_heap_get_default();
  if (lm_heap_is_initialized(heap)) return heap;
  if (!lm_process_ensure_init()) return heap;
  if (lm_thread_id() == atomic_load(&lm_process.main_thread)) {
    lm_heap_set_default(&heap_main);
    return &heap_main;
  }
  lm_thread_data_t* td = thread_data_alloc();
  if (td == NULL) return heap;
  tld_init(&td->tld, &td->heap);
  long delay = lm_option_get(mi_option_eager_commit_delay); /* (the main thread: none) */
  td->tld.segments.eager_delay = delay > 0 ? (size_t)delay : 0;
  td->tld.memid = td->memid;
  lm_heap_init(&td->heap, &td->tld, 0, false, 0);
  lm_tld_register(&td->tld);
  lm_heap_set_default(&td->heap);
  lm_stat_increase(&lm_process.threads, 1);
  lm_purger_thread_seen();
  return &td->heap;
}

void lm_thread_done_heap(lm_heap_t* heap) {
  if (heap == NULL || !lm_heap_is_initialized(heap)) return;
  lm_tld_t* tld = heap->tld;
  lm_heap_t* backing = tld->heap_backing;
  lm_heap_t* current = lm_heap_get_default();
  if (current == backing || current == heap) lm_heap_slot_set((lm_heap_t*)&lm_heap_empty);
  /* Abandon every heap of the thread (only the backing heap exists for now). */
  lm_tld_enter(tld);
  for (lm_heap_t* h = tld->heaps; h != NULL; h = h->next) lm_heap_collect(h, LM_COLLECT_ABANDON);
  lm_stats_merge_thread(tld); /* what is left: counters of the last collection */
  lm_tld_leave(tld);
  if (backing == &heap_main) return; /* the main thread's data is static */
  lm_tld_unregister(tld);
  lm_stat_decrease(&lm_process.threads, 1);
  lm_thread_data_t* td = (lm_thread_data_t*)((uint8_t*)backing - offsetof(lm_thread_data_t, heap));
  thread_data_free(td);
}

static void thread_exit_hook(void* arg) { lm_thread_done_heap((lm_heap_t*)arg); }

/* ---- public ------------------------------------------------------------------------------------ */

void mi_process_init(void) mi_attr_noexcept {
  lm_process_ensure_init();
  lm_heap_default_init();
}

void mi_thread_init(void) mi_attr_noexcept { lm_heap_default_init(); }

void mi_thread_done(void) mi_attr_noexcept {
  lm_heap_t* heap = lm_heap_get_default();
  if (!lm_heap_is_initialized(heap)) return;
  if (heap == &heap_main) return; /* the main thread lives as long as the process */
  const lm_backend_t* backend = lm_process.backend;
  if (backend != NULL && backend->thread_exit_arm != NULL) backend->thread_exit_arm(NULL);
  lm_thread_done_heap(heap->tld->heap_backing);
}

int mi_version(void) mi_attr_noexcept { return MI_MALLOC_VERSION; }

/* At exit: the statistics when asked for, and the memory back with destroy_on_exit. */
void mi_process_done(void) mi_attr_noexcept {
  static _Atomic(int) done;
  if (atomic_exchange(&done, 1)) return;
  if (!lm_process_ensure_init()) return;
  if (mi_option_is_enabled(mi_option_show_stats) || mi_option_is_enabled(mi_option_verbose)) {
    mi_stats_print(NULL);
  }
  if (mi_option_is_enabled(mi_option_destroy_on_exit)) {
    /* Give the physical memory back now. The address space itself stays: destructors that
     * run after this one may still free (upstream unmaps here, and such programs crash). */
    mi_collect(true);
  }
}

void mi_collect(bool force) mi_attr_noexcept {
  lm_heap_collect(lm_heap_get_default(), force ? LM_COLLECT_FORCE : LM_COLLECT_NORMAL);
  mi_stats_merge();
}

/* Runs when the library is loaded (the platform's start hook, src/core/start.c):
 * by then libc (and the environment) are ready, so the options are read again in case an early
 * allocation initialised the process before. */
void lm_process_attach(void) {
  bool was_ready = atomic_load(&lm_process.init_state) == 2;
  lm_process.constructed = true;
  mi_process_init();
  lm_fork_setup();
  if (was_ready) lm_options_init();
  if (mi_option_is_enabled(mi_option_verbose)) {
    lm_message("libmimalloc %d.%d.%d (%s, %s backend), process %p started", MI_MALLOC_VERSION / 10000,
               (MI_MALLOC_VERSION / 100) % 100, MI_MALLOC_VERSION % 100,
               LM_SECURE_SHUFFLE ? "secure build"
               : LM_SECURE    ? "secure build, blocks in address order"
               : LM_DEBUG > 0 ? "debug build"
                              : "release build",
               lm_process.backend != NULL ? lm_process.backend->name : "no", (void*)&lm_process);
    const lm_backend_caps_t* caps = &lm_process.arenas.caps;
    lm_message("os: page size %zu KiB, large pages %zu KiB, overcommit %s, numa nodes %d, "
               "threads %s, segments at %p",
               caps->page_size / 1024, caps->large_page_size / 1024,
               caps->has_overcommit ? "yes" : "no", lm_process.arenas.numa_count,
               caps->has_threads ? "yes" : "no", (void*)lm_process.arenas.region_lo);
    if (caps->large_pages_absent != NULL) {
      lm_message("os: no large pages: %s", caps->large_pages_absent);
    }
    mi_options_print();
  }
}

/* Runs when the library is unloaded or the process ends (the platform's end hook). */
void lm_process_detach(void) { mi_process_done(); }
