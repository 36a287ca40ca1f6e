/* Reporting the statistics: mi_stats_get, the printed table, JSON, mi_stats_reset, and
 * process information. Both the process figures and a thread's own figures are first copied
 * into an mi_stats_t; printing and JSON read only that. Counting is stats.c. */
#include <stdio.h>
#include <string.h>

#include "core.h"
#include "mimalloc-stats.h"

static int64_t process_start_ms;

void lm_stats_process_start(void) {
  if (process_start_ms == 0 && lm_process.backend != NULL) {
    process_start_ms = lm_process.backend->clock_ms();
  }
}

/* ---- copying the figures into an mi_stats_t ------------------------------------------------ */

static mi_stat_count_t count_of(lm_stat_count_t* s) {
  mi_stat_count_t c = {lm_load_relaxed(&s->total), lm_load_relaxed(&s->peak),
                       lm_load_relaxed(&s->current)};
  return c;
}
static mi_stat_count_t local_of(const lm_stat_local_t* s) {
  mi_stat_count_t c = {s->total, s->peak, s->current};
  return c;
}

/* Block and page size of a bin as the report shows them (0 for the huge bin: sizes vary). */
static size_t bin_block_size(size_t bin) { return bin >= 1 && bin <= 48 ? lm_bin_size((uint8_t)bin) : 0; }
static size_t bin_page_size(size_t bin) {
  size_t bsize = bin_block_size(bin);
  if (bsize == 0) return 0;
  return lm_segment_page_slices(bsize) * LM_SLICE_SIZE;
}

static void fill_process(mi_stats_t* st) {
  lm_stats_merge_thread(lm_tld_current()); /* the caller's own figures are current */
  lm_os_stats_t* os = &lm_process.arenas.stats;
  lm_segments_t* segs = &lm_process.segments;
  lm_heap_stats_t* h = &lm_process.stats;
  st->reserved = count_of(&os->reserved);
  st->committed = count_of(&os->committed);
  st->purged.total = lm_load_relaxed(&os->purged);
  st->mmap_calls.total = lm_load_relaxed(&os->reserve_calls);
  st->commit_calls.total = lm_load_relaxed(&os->commit_calls);
  st->purge_calls.total = lm_load_relaxed(&os->purge_calls);
  st->arena_count.total = lm_load_relaxed(&os->arena_count);
  st->pages = count_of(&segs->page_stats);
  st->pages_abandoned = count_of(&segs->pages_abandoned_stats);
  st->segments = count_of(&segs->segment_stats);
  st->segments_abandoned = count_of(&segs->abandoned_stats);
  st->threads = count_of(&lm_process.threads);
  for (size_t bin = 0; bin < LM_STAT_BINS; bin++) {
    st->malloc_bins[bin] = count_of(&h->malloc_bins[bin]);
    st->page_bins[bin] = count_of(&h->page_bins[bin]);
  }
  st->malloc_normal = count_of(&h->malloc_normal);
  st->malloc_huge = count_of(&h->malloc_huge);
  st->malloc_requested = count_of(&h->malloc_requested);
  st->malloc_normal_count.total = lm_load_relaxed(&h->malloc_normal_count);
  st->malloc_huge_count.total = lm_load_relaxed(&h->malloc_huge_count);
  st->pages_extended.total = lm_load_relaxed(&h->pages_extended);
  st->pages_retire.total = lm_load_relaxed(&h->pages_retire);
  st->page_searches.total = lm_load_relaxed(&h->page_searches);
  st->page_searches_count.total = lm_load_relaxed(&h->page_searches_count);
  st->malloc_guarded_count.total = lm_load_relaxed(&h->malloc_guarded_count);
}

/* The calling thread's own figures: what it allocated, and the blocks and pages it holds. */
static void fill_thread(mi_stats_t* st, lm_tld_t* tld) {
  if (tld == NULL) return;
  lm_stats_merge_thread(tld); /* folds its pages first */
  lm_thread_stats_t* ts = &tld->stats;
  for (size_t bin = 0; bin < LM_STAT_BINS; bin++) {
    st->malloc_bins[bin] = local_of(&ts->malloc_bins[bin]);
    st->page_bins[bin] = local_of(&ts->page_bins[bin]);
  }
  st->malloc_normal = local_of(&ts->malloc_normal);
  st->malloc_huge = local_of(&ts->malloc_huge);
  st->pages.peak = -1; /* the sum of per-class peaks is no peak */
  for (size_t bin = 0; bin < LM_STAT_BINS; bin++) {
    st->pages.total += ts->page_bins[bin].total;
    st->pages.current += ts->page_bins[bin].current;
  }
  st->malloc_normal_count.total = ts->malloc_normal_count.total;
  st->malloc_huge_count.total = ts->malloc_huge_count.total;
  st->pages_extended.total = ts->pages_extended.total;
  st->pages_retire.total = ts->pages_retire.total;
  st->page_searches.total = ts->page_searches.total;
  st->page_searches_count.total = ts->page_searches_count.total;
  st->malloc_guarded_count.total = ts->malloc_guarded_count.total;
}

static void stats_init(mi_stats_t* st) {
  memset(st, 0, sizeof(*st));
  st->size = sizeof(*st);
  st->version = MI_STAT_VERSION;
}

bool mi_stats_get(mi_stats_t* stats) mi_attr_noexcept {
  if (stats == NULL || stats->version != MI_STAT_VERSION || stats->size < sizeof(mi_stats_t)) {
    return false;
  }
  size_t size = stats->size;
  stats_init(stats);
  stats->size = size;
  fill_process(stats);
  return true;
}

static void reset_count(lm_stat_count_t* s) {
  int64_t cur = lm_load_relaxed(&s->current);
  lm_store_relaxed(&s->peak, cur);
  lm_store_relaxed(&s->total, cur);
}

/* Totals and peaks start again from what is there now; `current` stays true. */
void mi_stats_reset(void) mi_attr_noexcept {
  lm_stats_merge_thread(lm_tld_current());
  lm_os_stats_t* os = &lm_process.arenas.stats;
  reset_count(&os->reserved);
  reset_count(&os->committed);
  lm_store_relaxed(&os->purged, 0);
  lm_store_relaxed(&os->reserve_calls, 0);
  lm_store_relaxed(&os->commit_calls, 0);
  lm_store_relaxed(&os->purge_calls, 0);
  lm_segments_t* segs = &lm_process.segments;
  reset_count(&segs->page_stats);
  reset_count(&segs->pages_abandoned_stats);
  reset_count(&segs->segment_stats);
  reset_count(&segs->abandoned_stats);
  reset_count(&lm_process.threads);
  lm_heap_stats_t* h = &lm_process.stats;
  for (size_t bin = 0; bin < LM_STAT_BINS; bin++) {
    reset_count(&h->malloc_bins[bin]);
    reset_count(&h->page_bins[bin]);
  }
  reset_count(&h->malloc_normal);
  reset_count(&h->malloc_huge);
  reset_count(&h->malloc_requested);
  _Atomic(int64_t)* counters[] = {&h->malloc_normal_count, &h->malloc_huge_count,
                                  &h->pages_extended,      &h->pages_retire,
                                  &h->page_searches,       &h->page_searches_count,
                                  &h->malloc_guarded_count};
  for (size_t i = 0; i < sizeof(counters) / sizeof(counters[0]); i++) {
    lm_store_relaxed(counters[i], 0);
  }
}

/* ---- the printed table ---------------------------------------------------------------------- */

/* "12.3 MiB" style amounts, right-aligned in 15 columns. */
static void format_amount(char* buf, size_t size, int64_t n, bool bytes) {
  const char* units_b[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  const char* units_c[] = {"", "K", "M", "G", "T"};
  int64_t base = bytes ? 1024 : 1000;
  int64_t a = n < 0 ? -n : n;
  int u = 0;
  int64_t div = 1;
  while (a >= base * div && u < 4) {
    div *= base;
    u++;
  }
  if (u == 0) snprintf(buf, size, "%11lld %-3s", (long long)n, n == 0 ? "" : (bytes ? "B" : ""));
  else {
    int64_t whole = n / div, frac = ((a % div) * 10) / div;
    snprintf(buf, size, "%9lld.%lld %-3s", (long long)whole, (long long)frac,
             bytes ? units_b[u] : units_c[u]);
  }
}

typedef struct printer_s {
  mi_output_fun* out;
  void* arg;
} printer_t;

static void print_line(printer_t* pr, const char* fmt, ...) LM_ATTR_PRINTF(2, 3);
static void print_line(printer_t* pr, const char* fmt, ...) {
  char buf[256];
  va_list args;
  va_start(args, fmt);
  vsnprintf(buf, sizeof(buf) - 1, fmt, args);
  va_end(args);
  size_t n = lm_strlen(buf);
  buf[n] = '\n';
  buf[n + 1] = 0;
  if (pr->out != NULL) pr->out(buf, pr->arg);
  else lm_output_raw(buf);
}

/* peak, total and current, each times `unit` (the block size for counts of blocks). */
static void print_count(printer_t* pr, const char* label, const mi_stat_count_t* s, int64_t unit,
                        bool bytes) {
  char a[48], b[48], c[48];
  if (s->peak >= 0) format_amount(a, sizeof(a), s->peak * unit, bytes);
  else snprintf(a, sizeof(a), "%15s", ""); /* no peak known */
  format_amount(b, sizeof(b), s->total * unit, bytes);
  format_amount(c, sizeof(c), s->current * unit, bytes);
  print_line(pr, "%10s: %s %s %s", label, a, b, c);
}

/* A row of blocks: bytes (peak, total, current), the block size, how many, and whether all
 * were freed. */
static void print_blocks(printer_t* pr, const char* label, const mi_stat_count_t* bytes,
                         int64_t block_size, int64_t count) {
  char a[48], b[48], c[48], d[48], e[48];
  if (bytes->peak >= 0) format_amount(a, sizeof(a), bytes->peak, true);
  else snprintf(a, sizeof(a), "%15s", ""); /* no peak known */
  format_amount(b, sizeof(b), bytes->total, true);
  format_amount(c, sizeof(c), bytes->current, true);
  if (block_size > 0) format_amount(d, sizeof(d), block_size, true);
  else snprintf(d, sizeof(d), "%15s", "");
  format_amount(e, sizeof(e), count, false);
  print_line(pr, "%10s: %s %s %s %s %s  %s", label, a, b, c, d, e,
             bytes->current == 0 ? "ok" : "not all freed");
}

static void print_counter(printer_t* pr, const char* label, int64_t value, bool bytes) {
  char a[48];
  format_amount(a, sizeof(a), value, bytes);
  print_line(pr, "%10s: %s", label, a);
}

static void print_heap_rows(printer_t* pr, const mi_stats_t* st) {
  print_line(pr, "%10s: %15s %15s %15s %15s %15s", "blocks", "peak", "total", "current", "block",
             "count");
  for (size_t bin = 1; bin < LM_STAT_BINS; bin++) {
    const mi_stat_count_t* c = &st->malloc_bins[bin];
    if (c->total == 0 && c->current == 0) continue;
    if (bin == LM_BIN_HUGE) continue; /* the `huge` row below */
    int64_t bsize = (int64_t)bin_block_size(bin);
    mi_stat_count_t bytes = {c->total * bsize, c->peak * bsize, c->current * bsize};
    char label[16];
    snprintf(label, sizeof(label), "bin %2zu", bin);
    print_blocks(pr, label, &bytes, bsize, c->total);
  }
  print_blocks(pr, "binned", &st->malloc_normal, 0, st->malloc_normal_count.total);
  print_blocks(pr, "huge", &st->malloc_huge, 0, st->malloc_huge_count.total);
  /* (the two peaks were not at the same moment: their sum is no peak) */
  mi_stat_count_t all = {st->malloc_normal.total + st->malloc_huge.total, -1,
                         st->malloc_normal.current + st->malloc_huge.current};
  print_blocks(pr, "total", &all, 0, st->malloc_normal_count.total + st->malloc_huge_count.total);
  if (LM_DEBUG_FILL) print_count(pr, "requested", &st->malloc_requested, 1, true);
  print_count(pr, "pages", &st->pages, 1, false);
  print_counter(pr, "-extended", st->pages_extended.total, false);
  print_counter(pr, "-retire", st->pages_retire.total, false);
  if (LM_GUARDED) print_counter(pr, "guarded", st->malloc_guarded_count.total, false);
  int64_t searches = st->page_searches_count.total;
  int64_t tenths = searches > 0 ? st->page_searches.total * 10 / searches : 0;
  print_line(pr, "%10s: %9lld.%lld avg", "searches", (long long)(tenths / 10),
             (long long)(tenths % 10));
}

/* Memory on large OS pages: what arenas got as explicit pages, what they asked to have
 * backed by transparent ones, and what the OS says backs the process now. */
static size_t large_resident(void) {
  const lm_backend_t* backend = lm_process.backend;
  return backend != NULL && backend->large_pages_resident != NULL
             ? backend->large_pages_resident()
             : 0;
}

static void print_huge_pages(printer_t* pr) {
  lm_os_stats_t* os = &lm_process.arenas.stats;
  char ex[48], tr[48], res[48];
  format_amount(ex, sizeof(ex), lm_load_relaxed(&os->large_explicit.current), true);
  format_amount(tr, sizeof(tr), lm_load_relaxed(&os->large_transparent.current), true);
  format_amount(res, sizeof(res), (int64_t)large_resident(), true);
  print_line(pr, "%10s: explicit: %s, transparent asked: %s, resident: %s", "huge pages", ex, tr,
             res);
}

static void stats_print(mi_output_fun* out, void* arg) {
  printer_t pr = {out, arg};
  mi_stats_t st;
  stats_init(&st);
  fill_process(&st);
  print_heap_rows(&pr, &st);
  print_line(&pr, "%10s: %15s %15s %15s", "memory", "peak", "total", "current");
  print_count(&pr, "reserved", &st.reserved, 1, true);
  print_count(&pr, "committed", &st.committed, 1, true);
  print_counter(&pr, "purged", st.purged.total, true);
  /* Committed and free, waiting for the purge delay; free arena blocks are counted by their
   * size (their segment may have purged parts of them already). */
  print_counter(&pr, "unpurged", lm_load_relaxed(&lm_process.segments.purge_pending), true);
  print_counter(&pr, "-arenas", (int64_t)lm_arenas_purge_pending(&lm_process.arenas), true);
  print_count(&pr, "segments", &st.segments, 1, false);
  print_count(&pr, "-abandoned", &st.segments_abandoned, 1, false);
  print_count(&pr, "-pages", &st.pages_abandoned, 1, false);
  print_counter(&pr, "arenas", st.arena_count.total, false);
  print_counter(&pr, "mmaps", st.mmap_calls.total, false);
  print_counter(&pr, "commits", st.commit_calls.total, false);
  print_counter(&pr, "purges", st.purge_calls.total, false);
  print_count(&pr, "threads", &st.threads, 1, false);
  print_line(&pr, "%10s: %11d", "numa nodes", lm_process.arenas.numa_count);
  print_huge_pages(&pr);
  size_t elapsed, user, sys, rss, peak_rss, commit, peak_commit, faults;
  mi_process_info(&elapsed, &user, &sys, &rss, &peak_rss, &commit, &peak_commit, &faults);
  char r[48], pk[48];
  format_amount(r, sizeof(r), (int64_t)rss, true);
  format_amount(pk, sizeof(pk), (int64_t)peak_rss, true);
  print_line(&pr, "%10s: %5zu.%03zu s", "elapsed", elapsed / 1000, elapsed % 1000);
  print_line(&pr, "%10s: user: %zu.%03zu s, system: %zu.%03zu s, faults: %zu, rss: %s, peak rss: %s",
             "process", user / 1000, user % 1000, sys / 1000, sys % 1000, faults, r, pk);
}

void mi_stats_print_out(mi_output_fun* out, void* arg) mi_attr_noexcept { stats_print(out, arg); }
void mi_stats_print(void* out) mi_attr_noexcept {
  (void)out; /* kept for compatibility: output goes to the registered sink */
  stats_print(NULL, NULL);
}

/* The calling thread's own blocks and pages (memory rows are process-wide: not repeated). */
void mi_thread_stats_print_out(mi_output_fun* out, void* arg) mi_attr_noexcept {
  printer_t pr = {out, arg};
  mi_stats_t st;
  stats_init(&st);
  fill_thread(&st, lm_tld_current());
  print_line(&pr, "thread %p:", (void*)(uintptr_t)lm_thread_id());
  print_heap_rows(&pr, &st);
}


void mi_process_info(size_t* elapsed_msecs, size_t* user_msecs, size_t* system_msecs,
                     size_t* current_rss, size_t* peak_rss, size_t* current_commit,
                     size_t* peak_commit, size_t* page_faults) mi_attr_noexcept {
  size_t user = 0, sys = 0, rss = 0, prss = 0, faults = 0;
  const lm_backend_t* backend = lm_process.backend;
  if (backend != NULL && backend->process_info != NULL) {
    backend->process_info(&user, &sys, &rss, &prss, &faults);
  }
  if (prss < rss) prss = rss; /* the kernel updates its peak lazily: never report peak < now */
  int64_t now = backend != NULL ? backend->clock_ms() : 0;
  lm_os_stats_t* st = &lm_process.arenas.stats;
  if (elapsed_msecs) *elapsed_msecs = process_start_ms > 0 ? (size_t)(now - process_start_ms) : 0;
  if (user_msecs) *user_msecs = user;
  if (system_msecs) *system_msecs = sys;
  if (current_rss) *current_rss = rss;
  if (peak_rss) *peak_rss = prss;
  if (current_commit) *current_commit = (size_t)lm_load_relaxed(&st->committed.current);
  if (peak_commit) *peak_commit = (size_t)lm_load_relaxed(&st->committed.peak);
  if (page_faults) *page_faults = faults;
}

typedef struct json_s {
  char* buf;
  size_t size;
  size_t len;
  bool overflow;
} json_t;

static void json_add(json_t* j, const char* fmt, ...) LM_ATTR_PRINTF(2, 3);
static void json_add(json_t* j, const char* fmt, ...) {
  if (j->overflow) return;
  va_list args;
  va_start(args, fmt);
  int n = vsnprintf(j->buf + j->len, j->size - j->len, fmt, args);
  va_end(args);
  if (n < 0 || (size_t)n >= j->size - j->len) j->overflow = true;
  else j->len += (size_t)n;
}

static void json_count(json_t* j, const char* name, const mi_stat_count_t* c) {
  json_add(j, ",\n  \"%s\": {\"total\": %lld, \"peak\": %lld, \"current\": %lld}", name,
           (long long)c->total, (long long)c->peak, (long long)c->current);
}
static void json_counter(json_t* j, const char* name, const mi_stat_counter_t* c) {
  json_add(j, ",\n  \"%s\": {\"total\": %lld}", name, (long long)c->total);
}

static bool stats_json(json_t* j) {
  mi_stats_t st;
  stats_init(&st);
  fill_process(&st);
  size_t elapsed, user, sys, rss, peak_rss, commit, peak_commit, faults;
  mi_process_info(&elapsed, &user, &sys, &rss, &peak_rss, &commit, &peak_commit, &faults);
  json_add(j, "{\n  \"stat_version\": %d,\n  \"mimalloc_version\": %d,\n", MI_STAT_VERSION,
           MI_MALLOC_VERSION);
  json_add(j, "  \"process\": {\"elapsed_msecs\": %zu, \"user_msecs\": %zu, "
              "\"system_msecs\": %zu, \"page_faults\": %zu, \"rss_current\": %zu, "
              "\"rss_peak\": %zu, \"commit_current\": %zu, \"commit_peak\": %zu}",
           elapsed, user, sys, faults, rss, peak_rss, commit, peak_commit);
  lm_os_stats_t* os = &lm_process.arenas.stats;
  json_add(j, ",\n  \"huge_pages\": {\"explicit_current\": %lld, \"explicit_peak\": %lld, "
              "\"transparent_asked\": %lld, \"resident\": %zu}",
           (long long)lm_load_relaxed(&os->large_explicit.current),
           (long long)lm_load_relaxed(&os->large_explicit.peak),
           (long long)lm_load_relaxed(&os->large_transparent.current), large_resident());
#define MI_STAT_COUNT(stat) json_count(j, #stat, &st.stat);
#define MI_STAT_COUNTER(stat) json_counter(j, #stat, &st.stat);
  MI_STAT_FIELDS()
#undef MI_STAT_COUNT
#undef MI_STAT_COUNTER
  const char* bins[2] = {"malloc_bins", "page_bins"};
  for (int b = 0; b < 2; b++) {
    json_add(j, ",\n  \"%s\": [", bins[b]);
    for (uint8_t bin = 0; bin < MI_BIN_COUNT - 1; bin++) {
      const mi_stat_count_t* c = b == 0 ? &st.malloc_bins[bin] : &st.page_bins[bin];
      size_t bsize = bin_block_size(bin), psize = bin_page_size(bin);
      json_add(j, "%s\n    {\"total\": %lld, \"peak\": %lld, \"current\": %lld, "
                  "\"block_size\": %zu, \"page_size\": %zu}",
               bin == 0 ? "" : ",", (long long)c->total, (long long)c->peak,
               (long long)c->current, bsize, psize);
    }
    json_add(j, "\n  ]");
  }
  json_add(j, "\n}\n");
  return !j->overflow;
}

char* mi_stats_get_json(size_t buf_size, char* buf) mi_attr_noexcept {
  if (buf != NULL) {
    json_t j = {buf, buf_size, 0, buf_size == 0};
    return stats_json(&j) ? buf : NULL;
  }
  for (size_t size = 16 * 1024; size <= 1024 * 1024; size *= 2) {
    char* b = mi_malloc(size);
    if (b == NULL) return NULL;
    json_t j = {b, size, 0, false};
    if (stats_json(&j)) return b;
    mi_free(b);
  }
  return NULL;
}
