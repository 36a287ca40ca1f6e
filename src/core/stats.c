/* Statistics and process information. This build keeps the OS-level counters (reserved,
 * committed, purged, calls) exactly, in atomics updated where the memory moves; per-size-class
 * counters come with the statistics work. Printing follows mimalloc's layout: a label column,
 * then peak, total and current. */
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

/* "12.3 MiB" style amounts, right-aligned in 11 columns. */
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

static void print_line(printer_t* pr, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
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

static void print_count(printer_t* pr, const char* label, lm_stat_count_t* s, bool bytes) {
  char a[48], b[48], c[48];
  format_amount(a, sizeof(a), lm_load_relaxed(&s->peak), bytes);
  format_amount(b, sizeof(b), lm_load_relaxed(&s->total), bytes);
  format_amount(c, sizeof(c), lm_load_relaxed(&s->current), bytes);
  print_line(pr, "%10s: %s %s %s", label, a, b, c);
}

static void print_counter(printer_t* pr, const char* label, int64_t value, bool bytes) {
  char a[48];
  format_amount(a, sizeof(a), value, bytes);
  print_line(pr, "%10s: %s", label, a);
}

static void stats_print(mi_output_fun* out, void* arg) {
  printer_t pr = {out, arg};
  lm_os_stats_t* st = &lm_process.arenas.stats;
  print_line(&pr, "%10s  %15s %15s %15s", "heap stats:", "peak", "total", "current");
  print_count(&pr, "reserved", &st->reserved, true);
  print_count(&pr, "committed", &st->committed, true);
  print_counter(&pr, "purged", lm_load_relaxed(&st->purged), true);
  print_counter(&pr, "segments", (int64_t)lm_load_relaxed(&lm_process.segments.count), false);
  print_counter(&pr, "-abandoned",
                (int64_t)lm_segments_abandoned_count(&lm_process.segments), false);
  print_counter(&pr, "arenas", lm_load_relaxed(&st->arena_count), false);
  print_counter(&pr, "mmaps", lm_load_relaxed(&st->reserve_calls), false);
  print_counter(&pr, "commits", lm_load_relaxed(&st->commit_calls), false);
  print_counter(&pr, "purges", lm_load_relaxed(&st->purge_calls), false);
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
void mi_thread_stats_print_out(mi_output_fun* out, void* arg) mi_attr_noexcept {
  stats_print(out, arg); /* no per-thread counters yet: the process figures */
}

static void reset_count(lm_stat_count_t* s) {
  int64_t cur = lm_load_relaxed(&s->current);
  lm_store_relaxed(&s->peak, cur);
  lm_store_relaxed(&s->total, cur);
}

void mi_stats_reset(void) mi_attr_noexcept {
  lm_os_stats_t* st = &lm_process.arenas.stats;
  reset_count(&st->reserved);
  reset_count(&st->committed);
  lm_store_relaxed(&st->purged, 0);
  lm_store_relaxed(&st->reserve_calls, 0);
  lm_store_relaxed(&st->commit_calls, 0);
  lm_store_relaxed(&st->purge_calls, 0);
}

void mi_stats_merge(void) mi_attr_noexcept {
  /* Counters are process-wide atomics already: nothing is pending in the thread. */
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

void mi_options_print(void) mi_attr_noexcept {
  static const char* names[_mi_option_last] = {
      "show_errors", "show_stats", "verbose", "eager_commit", "arena_eager_commit",
      "purge_decommits", "allow_large_os_pages", "reserve_huge_os_pages",
      "reserve_huge_os_pages_at", "reserve_os_memory", "deprecated_segment_cache",
      "deprecated_page_reset", "abandoned_page_purge", "deprecated_segment_reset",
      "eager_commit_delay", "purge_delay", "use_numa_nodes", "disallow_os_alloc", "os_tag",
      "max_errors", "max_warnings", "max_segment_reclaim", "destroy_on_exit", "arena_reserve",
      "arena_purge_mult", "purge_extend_delay", "abandoned_reclaim_on_free",
      "disallow_arena_alloc", "retry_on_oom", "visit_abandoned", "guarded_min", "guarded_max",
      "guarded_precise", "guarded_sample_rate", "guarded_sample_seed",
      "target_segments_per_thread", "generic_collect", "allow_thp"};
  for (int i = 0; i < _mi_option_last; i++) {
    lm_message("option '%s': %ld", names[i], mi_option_get((mi_option_t)i));
  }
}

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

/* ---- mi_stats_get and JSON -------------------------------------------------------------------- */

static mi_stat_count_t count_of(lm_stat_count_t* s) {
  mi_stat_count_t c = {lm_load_relaxed(&s->total), lm_load_relaxed(&s->peak),
                       lm_load_relaxed(&s->current)};
  return c;
}

static void stats_fill(mi_stats_t* st) {
  lm_os_stats_t* os = &lm_process.arenas.stats;
  st->reserved = count_of(&os->reserved);
  st->committed = count_of(&os->committed);
  st->purged.total = lm_load_relaxed(&os->purged);
  st->mmap_calls.total = lm_load_relaxed(&os->reserve_calls);
  st->commit_calls.total = lm_load_relaxed(&os->commit_calls);
  st->purge_calls.total = lm_load_relaxed(&os->purge_calls);
  st->arena_count.total = lm_load_relaxed(&os->arena_count);
  st->pages = count_of(&lm_process.segments.page_stats);
  st->segments = count_of(&lm_process.segments.segment_stats);
  st->segments_abandoned = count_of(&lm_process.segments.abandoned_stats);
  st->threads = count_of(&lm_process.threads);
}

bool mi_stats_get(mi_stats_t* stats) mi_attr_noexcept {
  if (stats == NULL || stats->version != MI_STAT_VERSION || stats->size < sizeof(mi_stats_t)) {
    return false;
  }
  size_t size = stats->size;
  memset((uint8_t*)stats + 2 * sizeof(size_t), 0, sizeof(mi_stats_t) - 2 * sizeof(size_t));
  stats->size = size;
  stats_fill(stats);
  return true;
}

typedef struct json_s {
  char* buf;
  size_t size;
  size_t len;
  bool overflow;
} json_t;

static void json_add(json_t* j, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
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
  memset(&st, 0, sizeof(st));
  st.size = sizeof(st);
  st.version = MI_STAT_VERSION;
  stats_fill(&st);
  size_t elapsed, user, sys, rss, peak_rss, commit, peak_commit, faults;
  mi_process_info(&elapsed, &user, &sys, &rss, &peak_rss, &commit, &peak_commit, &faults);
  json_add(j, "{\n  \"stat_version\": %d,\n  \"mimalloc_version\": %d,\n", MI_STAT_VERSION,
           MI_MALLOC_VERSION);
  json_add(j, "  \"process\": {\"elapsed_msecs\": %zu, \"user_msecs\": %zu, "
              "\"system_msecs\": %zu, \"page_faults\": %zu, \"rss_current\": %zu, "
              "\"rss_peak\": %zu, \"commit_current\": %zu, \"commit_peak\": %zu}",
           elapsed, user, sys, faults, rss, peak_rss, commit, peak_commit);
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
      size_t bsize = bin >= 1 && bin <= 48 ? lm_bin_size(bin) : 0;
      size_t psize = bsize == 0 ? 0 : bsize <= LM_SMALL_OBJ_SIZE_MAX ? LM_SMALL_PAGE_SIZE
                                                                   : LM_MEDIUM_PAGE_SIZE;
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
