/* Counting for the statistics: per-page counts folded into per-thread figures on slow paths,
 * and per-thread figures merged into the process figures (atomics). The malloc fast path adds
 * one to page->stat_allocs and the free fast path adds nothing: the frees are what `used`
 * lost since the last fold. Reporting is stats_report.c. */
#include "core.h"

/* ---- the process figures (any thread) ---------------------------------------------------- */

static void global_raise_peak(lm_stat_count_t* g, int64_t value) {
  int64_t peak = lm_load_relaxed(&g->peak);
  while (value > peak && !atomic_compare_exchange_weak_explicit(&g->peak, &peak, value,
                                                                memory_order_relaxed,
                                                                memory_order_relaxed)) {
  }
}

/* `above`: how far above the new current the figure is known to have been meanwhile. */
static void global_add(lm_stat_count_t* g, int64_t total, int64_t current, int64_t above) {
  int64_t now = atomic_fetch_add_explicit(&g->current, current, memory_order_relaxed) + current;
  if (total != 0) atomic_fetch_add_explicit(&g->total, total, memory_order_relaxed);
  global_raise_peak(g, now + above);
}

/* ---- a thread's figures (its own thread only) ---------------------------------------------- */

static void local_add(lm_stat_local_t* s, int64_t total, int64_t current, int64_t above) {
  s->total += total;
  s->current += current;
  int64_t high = s->current + above;
  if (high > s->peak) s->peak = high;
  if (high > s->merge_peak) s->merge_peak = high;
}

/* Shares that change hands (abandon, adopt) were merged already: the process figures keep them. */
static void local_move(lm_stat_local_t* s, int64_t current) {
  s->current += current;
  s->merged_current += current;
  s->merge_peak += current;
  if (s->current > s->peak) s->peak = s->current;
}

static void add(lm_stat_local_t* local, lm_stat_count_t* global, int64_t total, int64_t current,
                int64_t above) {
  if (local != NULL) local_add(local, total, current, above);
  else global_add(global, total, current, above);
}

static void add_counter(lm_counter_local_t* local, _Atomic(int64_t)* global, int64_t n) {
  if (local != NULL) local->total += n;
  else atomic_fetch_add_explicit(global, n, memory_order_relaxed);
}

/* ---- pages --------------------------------------------------------------------------------- */

static uint8_t page_bin(const lm_page_t* page) {
  return page->bin; /* (LM_BIN_HUGE for large and huge pages, whose bytes count as huge) */
}

#define LOCAL(ts, field) ((ts) != NULL ? &(ts)->field : NULL)

void lm_page_stats_fold(lm_page_t* page, lm_thread_stats_t* ts) {
  int64_t allocs = page->stat_allocs;
  int64_t before = page->stat_used, after = page->used;
  if (allocs == 0 && before == after) return;
  page->stat_allocs = 0;
  page->stat_used = page->used;
  /* The page's own count was at least `before`, `after`, and 1 right after an allocation:
   * what is known of its peak in between (a lower bound; see lm_page_stats_sample). */
  int64_t high = before > after ? before : after;
  if (allocs > 0 && high == 0) high = 1;
  int64_t live = after - before, above = high - after;
  lm_heap_stats_t* g = &lm_process.stats;
  uint8_t bin = page_bin(page);
  int64_t bsize = (int64_t)page->block_size;
  add(LOCAL(ts, malloc_bins[bin]), &g->malloc_bins[bin], allocs, live, above);
  if (bin == LM_BIN_HUGE) {
    add(LOCAL(ts, malloc_huge), &g->malloc_huge, allocs * bsize, live * bsize, above * bsize);
    add_counter(LOCAL(ts, malloc_huge_count), &g->malloc_huge_count, allocs);
  } else {
    add(LOCAL(ts, malloc_normal), &g->malloc_normal, allocs * bsize, live * bsize, above * bsize);
    add_counter(LOCAL(ts, malloc_normal_count), &g->malloc_normal_count, allocs);
  }
}

void lm_page_stats_fresh(lm_page_t* page, lm_thread_stats_t* ts) {
  page->stat_allocs = 0;
  page->stat_used = 0;
  uint8_t bin = page_bin(page);
  add(LOCAL(ts, page_bins[bin]), &lm_process.stats.page_bins[bin], 1, 1, 0);
}

void lm_page_stats_release(lm_page_t* page, lm_thread_stats_t* ts) {
  lm_page_stats_fold(page, ts);
  lm_heap_stats_t* g = &lm_process.stats;
  uint8_t bin = page_bin(page);
  int64_t live = page->stat_used; /* blocks that die with the page (mi_heap_destroy) */
  int64_t bytes = live * (int64_t)page->block_size;
  add(LOCAL(ts, malloc_bins[bin]), &g->malloc_bins[bin], 0, -live, 0);
  if (bin == LM_BIN_HUGE) add(LOCAL(ts, malloc_huge), &g->malloc_huge, 0, -bytes, 0);
  else add(LOCAL(ts, malloc_normal), &g->malloc_normal, 0, -bytes, 0);
  add(LOCAL(ts, page_bins[bin]), &g->page_bins[bin], 0, -1, 0);
  page->stat_used = 0;
}

void lm_page_stats_resize(lm_page_t* page, lm_thread_stats_t* ts, size_t block_size) {
  lm_page_stats_fold(page, ts);
  int64_t delta = (int64_t)page->stat_used * ((int64_t)block_size - (int64_t)page->block_size);
  add(LOCAL(ts, malloc_huge), &lm_process.stats.malloc_huge, delta > 0 ? delta : 0, delta, 0);
  page->block_size = block_size;
}

void lm_page_stats_move(lm_page_t* page, lm_thread_stats_t* ts, bool into) {
  int64_t sign = into ? 1 : -1;
  uint8_t bin = page_bin(page);
  int64_t live = page->stat_used;
  local_move(&ts->malloc_bins[bin], sign * live);
  local_move(bin == LM_BIN_HUGE ? &ts->malloc_huge : &ts->malloc_normal,
             sign * live * (int64_t)page->block_size);
  local_move(&ts->page_bins[bin], sign);
}

/* ---- merging a thread into the process ------------------------------------------------------ */

static void merge_count(lm_stat_count_t* g, lm_stat_local_t* s) {
  int64_t dtotal = s->total - s->merged_total;
  int64_t dcurrent = s->current - s->merged_current;
  int64_t high = s->merge_peak - s->merged_current; /* the highest this thread added since */
  if (dtotal == 0 && dcurrent == 0 && high <= 0) return;
  int64_t before = atomic_fetch_add_explicit(&g->current, dcurrent, memory_order_relaxed);
  if (dtotal != 0) atomic_fetch_add_explicit(&g->total, dtotal, memory_order_relaxed);
  /* Other threads may have given back meanwhile: the peak is an upper bound, never below now. */
  global_raise_peak(g, before + (high > dcurrent ? high : dcurrent));
  s->merged_total = s->total;
  s->merged_current = s->current;
  s->merge_peak = s->current;
}

static void merge_counter(_Atomic(int64_t)* g, lm_counter_local_t* c) {
  if (c->total == c->merged) return;
  atomic_fetch_add_explicit(g, c->total - c->merged, memory_order_relaxed);
  c->merged = c->total;
}

static void fold_heap_pages(lm_heap_t* heap, lm_thread_stats_t* ts) {
  for (size_t bin = 0; bin < LM_BIN_COUNT; bin++) {
    for (lm_page_t* page = heap->pages[bin].first; page != NULL; page = page->next) {
      lm_page_stats_fold(page, ts);
    }
  }
}

void lm_stats_merge_thread(lm_tld_t* tld) {
  if (tld == NULL) return;
  lm_thread_stats_t* ts = &tld->stats;
  lm_tld_enter(tld); /* (the drainer may be resetting a full page's count) */
  for (lm_heap_t* heap = tld->heaps; heap != NULL; heap = heap->next) fold_heap_pages(heap, ts);
  lm_tld_leave(tld);
  lm_heap_stats_t* g = &lm_process.stats;
  for (size_t bin = 0; bin < LM_STAT_BINS; bin++) {
    merge_count(&g->malloc_bins[bin], &ts->malloc_bins[bin]);
    merge_count(&g->page_bins[bin], &ts->page_bins[bin]);
  }
  merge_count(&g->malloc_normal, &ts->malloc_normal);
  merge_count(&g->malloc_huge, &ts->malloc_huge);
  merge_counter(&g->malloc_normal_count, &ts->malloc_normal_count);
  merge_counter(&g->malloc_huge_count, &ts->malloc_huge_count);
  merge_counter(&g->pages_extended, &ts->pages_extended);
  merge_counter(&g->pages_retire, &ts->pages_retire);
  merge_counter(&g->page_searches, &ts->page_searches);
  merge_counter(&g->page_searches_count, &ts->page_searches_count);
  merge_counter(&g->malloc_guarded_count, &ts->malloc_guarded_count);
}

lm_tld_t* lm_tld_current(void) {
  lm_heap_t* heap = lm_heap_get_default();
  return lm_heap_is_initialized(heap) ? heap->tld : NULL;
}

void mi_stats_merge(void) mi_attr_noexcept { lm_stats_merge_thread(lm_tld_current()); }
