/* Integration tests of the statistics (facts 1.15, 4.16; mimalloc-stats.h): mi_stats_get and
 * its size/version check, the consistency of the counters after a known sequence of
 * allocations, the thread count, mi_stats_get_json (parsed by a small JSON parser below),
 * mi_stats_print_out, mi_stats_reset, and mi_process_info against what the OS reports.
 * With the argument "bins" (its own registration, stats-bins): the exact counts per size
 * class, and a thread's counts merged into the process figures when it exits.
 * Public headers only, static library. */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
/* cmocka after the standard headers it expects; UNIT_TESTING stays undefined on purpose. */
#include <cmocka.h>

#include "mimalloc.h"
#include "mimalloc-stats.h"
#include "observe.h"
#include "../support/proc_self.h"

#define KiB ((size_t)1024)
#define MiB (KiB * KiB)

/* ---- helpers ------------------------------------------------------------------------------------ */


static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

/* A count is sane: nothing negative, the peak and the total at least the current value. */
static void check_count(const char* name, const mi_stat_count_t* c) {
  if (c->current < 0 || c->peak < 0 || c->total < 0 || c->peak < c->current ||
      c->total < c->current) {
    print_error("%s: total %lld, peak %lld, current %lld\n", name, (long long)c->total,
                (long long)c->peak, (long long)c->current);
  }
  assert_true(c->current >= 0);
  assert_true(c->peak >= c->current);
  assert_true(c->total >= c->current);
}

static void check_counter(const char* name, const mi_stat_counter_t* c) {
  if (c->total < 0) print_error("%s: total %lld\n", name, (long long)c->total);
  assert_true(c->total >= 0);
}

/* Every field of the struct, through the header's own field list. */
static void check_all_sane(const mi_stats_t* st) {
#define MI_STAT_COUNT(stat) check_count(#stat, &st->stat);
#define MI_STAT_COUNTER(stat) check_counter(#stat, &st->stat);
  MI_STAT_FIELDS()
#undef MI_STAT_COUNT
#undef MI_STAT_COUNTER
  for (size_t i = 0; i < MI_BIN_COUNT - 1; i++) {
    check_count("malloc_bins[]", &st->malloc_bins[i]);
    check_count("page_bins[]", &st->page_bins[i]);
  }
  assert_true(st->reserved.current >= st->committed.current);
  assert_true(st->reserved.peak >= st->committed.current);
}

/* ---- a small JSON parser: validates the text and notes the top-level members ------------ */

typedef struct json_s {
  const char* p;
  int depth;
  /* members of the top-level object: name, type ('{', '[', 'n' number, ...), array length */
  char names[128][40];
  char types[128];
  size_t lengths[128];
  size_t count;
  char last_key[40];
} json_t;

static bool json_value(json_t* j);

static void json_ws(json_t* j) {
  while (*j->p == ' ' || *j->p == '\n' || *j->p == '\t' || *j->p == '\r') j->p++;
}

static bool json_string(json_t* j, char* out, size_t size) {
  if (*j->p != '"') return false;
  j->p++;
  size_t n = 0;
  while (*j->p != '"') {
    if (*j->p == 0 || (unsigned char)*j->p < 0x20) return false;
    if (*j->p == '\\') {
      j->p++;
      if (*j->p == 'u') {
        for (int i = 1; i <= 4; i++) {
          if (!isxdigit((unsigned char)j->p[i])) return false;
        }
        j->p += 4;
      } else if (strchr("\"\\/bfnrt", *j->p) == NULL || *j->p == 0) {
        return false;
      }
    }
    if (out != NULL && n + 1 < size) out[n++] = *j->p;
    j->p++;
  }
  if (out != NULL) out[n] = 0;
  j->p++;
  return true;
}

static bool json_number(json_t* j) {
  const char* s = j->p;
  if (*j->p == '-') j->p++;
  if (*j->p == '0') j->p++;
  else if (*j->p >= '1' && *j->p <= '9') {
    while (isdigit((unsigned char)*j->p)) j->p++;
  } else return false;
  if (*j->p == '.') {
    j->p++;
    if (!isdigit((unsigned char)*j->p)) return false;
    while (isdigit((unsigned char)*j->p)) j->p++;
  }
  if (*j->p == 'e' || *j->p == 'E') {
    j->p++;
    if (*j->p == '+' || *j->p == '-') j->p++;
    if (!isdigit((unsigned char)*j->p)) return false;
    while (isdigit((unsigned char)*j->p)) j->p++;
  }
  return j->p > s;
}

static bool json_literal(json_t* j, const char* lit) {
  size_t n = strlen(lit);
  if (strncmp(j->p, lit, n) != 0) return false;
  j->p += n;
  return true;
}

static bool json_object(json_t* j) {
  j->p++; /* '{' */
  j->depth++;
  json_ws(j);
  if (*j->p == '}') {
    j->p++;
    j->depth--;
    return true;
  }
  for (;;) {
    char key[40];
    json_ws(j);
    if (!json_string(j, key, sizeof(key))) return false;
    json_ws(j);
    if (*j->p++ != ':') return false;
    json_ws(j);
    size_t slot = j->count;
    if (j->depth == 1 && slot < 128) {
      snprintf(j->names[slot], sizeof(j->names[slot]), "%s", key);
      j->types[slot] = *j->p == '{' || *j->p == '[' || *j->p == '"' ? *j->p : 'n';
      j->lengths[slot] = 0;
      j->count++;
    }
    const char* at = j->p;
    if (!json_value(j)) return false;
    if (j->depth == 1 && slot < 128 && *at == '[') {
      /* count the elements of a top-level array: commas at its own level, plus one */
      size_t elements = 0, level = 0;
      bool any = false;
      for (const char* q = at; q < j->p; q++) {
        if (*q == '"') { /* skip strings */
          for (q++; *q != '"'; q++) {
            if (*q == '\\') q++;
          }
          continue;
        }
        if (*q == '[' || *q == '{') level++;
        else if (*q == ']' || *q == '}') level--;
        else if (level == 1 && *q == ',') elements++;
        else if (level == 1 && *q != ' ' && *q != '\n' && *q != '\t' && *q != '\r') any = true;
        if (level >= 2) any = true;
      }
      j->lengths[slot] = any ? elements + 1 : 0;
    }
    json_ws(j);
    if (*j->p == ',') {
      j->p++;
      continue;
    }
    if (*j->p != '}') return false;
    j->p++;
    j->depth--;
    return true;
  }
}

static bool json_array(json_t* j) {
  j->p++; /* '[' */
  j->depth++;
  json_ws(j);
  if (*j->p == ']') {
    j->p++;
    j->depth--;
    return true;
  }
  for (;;) {
    json_ws(j);
    if (!json_value(j)) return false;
    json_ws(j);
    if (*j->p == ',') {
      j->p++;
      continue;
    }
    if (*j->p != ']') return false;
    j->p++;
    j->depth--;
    return true;
  }
}

static bool json_value(json_t* j) {
  if (j->depth > 64) return false;
  switch (*j->p) {
    case '{': return json_object(j);
    case '[': return json_array(j);
    case '"': return json_string(j, NULL, 0);
    case 't': return json_literal(j, "true");
    case 'f': return json_literal(j, "false");
    case 'n': return json_literal(j, "null");
    default: return json_number(j);
  }
}

/* Parses a whole document: one value, then only white space. */
static bool json_parse(json_t* j, const char* text) {
  memset(j, 0, sizeof(*j));
  j->p = text;
  json_ws(j);
  if (*j->p != '{') return false; /* the statistics are an object */
  if (!json_value(j)) return false;
  json_ws(j);
  return *j->p == 0;
}

static int json_member(const json_t* j, const char* name) {
  for (size_t i = 0; i < j->count; i++) {
    if (strcmp(j->names[i], name) == 0) return (int)i;
  }
  return -1;
}

/* The number right after "\"key\":" (the first occurrence after `from`). */
static long long json_number_after(const char* from, const char* key) {
  char k[64];
  snprintf(k, sizeof(k), "\"%s\":", key);
  const char* at = strstr(from, k);
  assert_non_null(at);
  return strtoll(at + strlen(k), NULL, 10);
}

/* ---- captured output -------------------------------------------------------------------------- */

static capture_t cap;

/* ======================================================================================= */

static void test_stats_get_checks_size_and_version(void** state) {
  (void)state;
  void* live = mi_malloc(100); /* memory is reserved by now */
  assert_non_null(live);
  mi_stats_t_decl(st);
  assert_true(mi_stats_get(&st));
  assert_int_equal(st.size, sizeof(mi_stats_t));
  assert_int_equal(st.version, MI_STAT_VERSION);
  assert_true(st.reserved.current > 0);
  assert_true(st.committed.current > 0);
  mi_free(live);

  assert_false(mi_stats_get(NULL));

  /* a wrong version: false, and the struct is left alone */
  mi_stats_t other;
  memset(&other, 0x5A, sizeof(other));
  other.size = sizeof(mi_stats_t);
  other.version = MI_STAT_VERSION + 1;
  assert_false(mi_stats_get(&other));
  assert_int_equal(other.reserved.current, (int64_t)0x5A5A5A5A5A5A5A5Aull);
  other.version = MI_STAT_VERSION - 1;
  assert_false(mi_stats_get(&other));
  other.version = 0;
  assert_false(mi_stats_get(&other));

  /* a struct smaller than this layout (an older or foreign caller): false */
  other.version = MI_STAT_VERSION;
  other.size = sizeof(mi_stats_t) - sizeof(mi_stat_count_t);
  assert_false(mi_stats_get(&other));
  other.size = 0;
  assert_false(mi_stats_get(&other));
  assert_int_equal(other.reserved.current, (int64_t)0x5A5A5A5A5A5A5A5Aull);
}

static void test_counters_are_consistent_after_a_known_sequence(void** state) {
  (void)state;
  enum { N = 200 };
  static const size_t sizes[] = {16, 48, 100, 1000, 8000, 60000, 400 * KiB, 3 * MiB, 40 * MiB};
  enum { S = sizeof(sizes) / sizeof(sizes[0]) };
  static void* blocks[S][N];

  mi_collect(true);
  mi_stats_t before, during, after;
  get_stats(&before);
  check_all_sane(&before);

  for (size_t s = 0; s < S; s++) {
    size_t n = sizes[s] >= MiB ? 4 : N;
    for (size_t i = 0; i < n; i++) {
      blocks[s][i] = mi_malloc(sizes[s]);
      assert_non_null(blocks[s][i]);
      memset(blocks[s][i], 1, sizes[s] < 4096 ? sizes[s] : 4096);
    }
  }
  get_stats(&during);
  check_all_sane(&during);
  assert_true(during.segments.current >= 1);
  assert_true(during.pages.current > before.pages.current);
  assert_true(during.reserved.current >= before.reserved.current);
  assert_true(during.committed.current > 0);
  /* 40 MiB blocks live: at least that much is committed and reserved */
  assert_true(during.committed.current >= (int64_t)(4 * 40 * MiB));
  assert_true(during.reserved.current >= (int64_t)(4 * 40 * MiB));
  /* peaks and totals only grow */
  assert_true(during.reserved.peak >= before.reserved.peak);
  assert_true(during.committed.peak >= before.committed.peak);
  assert_true(during.reserved.total >= before.reserved.total);
  assert_true(during.committed.total >= before.committed.total);
  assert_true(during.pages.total >= before.pages.total);
  assert_true(during.mmap_calls.total >= before.mmap_calls.total);

  for (size_t s = 0; s < S; s++) {
    size_t n = sizes[s] >= MiB ? 4 : N;
    for (size_t i = 0; i < n; i++) mi_free(blocks[s][i]);
  }
  mi_collect(true);
  get_stats(&after);
  check_all_sane(&after);
  if (after.pages.current != before.pages.current) {
    print_error("pages: %lld before, %lld after freeing everything\n",
                (long long)before.pages.current, (long long)after.pages.current);
  }
  assert_int_equal(after.pages.current, before.pages.current);
  assert_true(after.segments.current <= during.segments.current);
  assert_true(after.pages.peak >= during.pages.current);
  assert_true(after.pages.total >= during.pages.total);
  assert_true(after.committed.peak >= during.committed.current);
  /* the huge blocks' memory went back to the OS: unmapped (less committed than while they
   * lived) or purged (mi_collect(true) purges without waiting for the delay) */
  if (!(after.committed.current < during.committed.current ||
        after.purged.total >= during.purged.total + (int64_t)(4 * 40 * MiB))) {
    print_error("committed %lld -> %lld, purged %lld -> %lld after freeing 4 x 40 MiB\n",
                (long long)during.committed.current, (long long)after.committed.current,
                (long long)during.purged.total, (long long)after.purged.total);
  }
  assert_true(after.committed.current < during.committed.current ||
              after.purged.total >= during.purged.total + (int64_t)(4 * 40 * MiB));
}

/* ---- threads ----------------------------------------------------------------------------------- */

typedef struct thread_arg_s {
  pthread_mutex_t lock;
  pthread_cond_t cond;
  int stage; /* 1: the thread allocated; 2: it may exit */
} thread_arg_t;

static void* allocating_thread(void* p) {
  thread_arg_t* a = p;
  void* blocks[64];
  for (int i = 0; i < 64; i++) {
    blocks[i] = mi_malloc(64 + (size_t)i * 16);
    if (blocks[i] != NULL) memset(blocks[i], 2, 64);
  }
  pthread_mutex_lock(&a->lock);
  a->stage = 1;
  pthread_cond_broadcast(&a->cond);
  while (a->stage != 2) pthread_cond_wait(&a->cond, &a->lock);
  pthread_mutex_unlock(&a->lock);
  for (int i = 0; i < 64; i++) mi_free(blocks[i]);
  return NULL;
}

static void test_thread_count_follows_threads(void** state) {
  (void)state;
  mi_stats_t before, during, after;
  get_stats(&before);
  enum { T = 3 };
  thread_arg_t arg = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};
  pthread_t threads[T];
  thread_arg_t args[T];
  for (int t = 0; t < T; t++) {
    args[t] = arg;
    assert_int_equal(pthread_create(&threads[t], NULL, allocating_thread, &args[t]), 0);
  }
  for (int t = 0; t < T; t++) {
    pthread_mutex_lock(&args[t].lock);
    while (args[t].stage != 1) pthread_cond_wait(&args[t].cond, &args[t].lock);
    pthread_mutex_unlock(&args[t].lock);
  }
  get_stats(&during);
  check_all_sane(&during);
  if (during.threads.current != before.threads.current + T) {
    print_error("threads: %lld before, %lld with %d more threads alive\n",
                (long long)before.threads.current, (long long)during.threads.current, T);
  }
  assert_int_equal(during.threads.current, before.threads.current + T);
  assert_true(during.threads.peak >= before.threads.current + T);
  assert_true(during.threads.total >= before.threads.total + T);
  for (int t = 0; t < T; t++) {
    pthread_mutex_lock(&args[t].lock);
    args[t].stage = 2;
    pthread_cond_broadcast(&args[t].cond);
    pthread_mutex_unlock(&args[t].lock);
    assert_int_equal(pthread_join(threads[t], NULL), 0);
  }
  get_stats(&after);
  check_all_sane(&after);
  assert_int_equal(after.threads.current, before.threads.current);
  assert_true(after.threads.total >= during.threads.total);
  assert_true(after.threads.peak >= during.threads.current);
}

/* A thread that exits with live blocks abandons its segments: the abandoned count is a count
 * like the others (total and peak at least current), and the blocks stay freeable. */
static void* abandoning_thread(void* arg) {
  void** out = arg;
  for (size_t i = 0; i < 256; i++) {
    out[i] = mi_malloc(48 + (i % 8) * 64);
    if (out[i] != NULL) memset(out[i], 3, 48);
  }
  return NULL;
}

static void test_abandoned_segments_are_counted_consistently(void** state) {
  (void)state;
  static void* left[256];
  mi_collect(true);
  mi_stats_t before, abandoned, after;
  get_stats(&before);
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, abandoning_thread, left), 0);
  assert_int_equal(pthread_join(t, NULL), 0);
  get_stats(&abandoned);
  for (size_t i = 0; i < 256; i++) {
    assert_non_null(left[i]);
    mi_free(left[i]);
  }
  /* on the main thread, mi_collect(true) reclaims every abandoned segment (facts 4.7, 4.11) */
  mi_collect(true);
  get_stats(&after);
  print_message("segments_abandoned: %lld/%lld/%lld before, %lld/%lld/%lld with the thread's "
                "blocks, %lld/%lld/%lld after freeing them and mi_collect(true)\n",
                (long long)before.segments_abandoned.total,
                (long long)before.segments_abandoned.peak,
                (long long)before.segments_abandoned.current,
                (long long)abandoned.segments_abandoned.total,
                (long long)abandoned.segments_abandoned.peak,
                (long long)abandoned.segments_abandoned.current,
                (long long)after.segments_abandoned.total,
                (long long)after.segments_abandoned.peak,
                (long long)after.segments_abandoned.current);
  assert_true(abandoned.segments_abandoned.current >= 1); /* its segment held live blocks */
  check_all_sane(&abandoned);
  assert_true(abandoned.segments_abandoned.total >= before.segments_abandoned.total + 1);
  check_all_sane(&after);
  assert_int_equal(after.segments_abandoned.current, before.segments_abandoned.current);
}

/* ---- JSON -------------------------------------------------------------------------------------- */

static void check_json(const char* text) {
  json_t* j = calloc(1, sizeof(json_t));
  assert_non_null(j);
  bool ok = json_parse(j, text);
  if (!ok) {
    print_error("invalid JSON at offset %zu: \"%.40s\"\n", (size_t)(j->p - text), j->p);
  }
  assert_true(ok);
  static const char* const required[] = {"stat_version", "mimalloc_version", "process",
                                         "reserved",     "committed",        "malloc_bins",
                                         "page_bins",    "pages",            "threads",
                                         "segments",     "purged",           "mmap_calls"};
  for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++) {
    if (json_member(j, required[i]) < 0) print_error("no member \"%s\"\n", required[i]);
    assert_true(json_member(j, required[i]) >= 0);
  }
  assert_int_equal(j->types[json_member(j, "process")], '{');
  assert_int_equal(j->types[json_member(j, "reserved")], '{');
  assert_int_equal(j->types[json_member(j, "stat_version")], 'n');
  int mb = json_member(j, "malloc_bins"), pb = json_member(j, "page_bins");
  assert_int_equal(j->types[mb], '[');
  assert_int_equal(j->types[pb], '[');
  assert_int_equal(j->lengths[mb], MI_BIN_COUNT - 1); /* 74 */
  assert_int_equal(j->lengths[pb], MI_BIN_COUNT - 1);
  /* every member name appears once */
  for (size_t a = 0; a < j->count; a++) {
    for (size_t b = a + 1; b < j->count; b++) assert_string_not_equal(j->names[a], j->names[b]);
  }
  free(j);
  /* values */
  assert_int_equal(json_number_after(text, "stat_version"), MI_STAT_VERSION);
  assert_int_equal(json_number_after(text, "mimalloc_version"), mi_version());
  const char* process = strstr(text, "\"process\":");
  static const char* const process_keys[] = {"elapsed_msecs", "user_msecs",  "system_msecs",
                                             "page_faults",   "rss_current", "rss_peak",
                                             "commit_current", "commit_peak"};
  for (size_t i = 0; i < sizeof(process_keys) / sizeof(process_keys[0]); i++) {
    json_number_after(process, process_keys[i]); /* present */
  }
  assert_true(json_number_after(process, "rss_current") > 0);
  const char* reserved = strstr(text, "\"reserved\":");
  assert_non_null(reserved);
  assert_true(json_number_after(reserved, "current") > 0);
  const char* bins = strstr(text, "\"malloc_bins\":");
  json_number_after(bins, "block_size");
  json_number_after(bins, "page_size");
}

static void test_json_with_a_new_buffer(void** state) {
  (void)state;
  char* text = mi_stats_get_json(0, NULL);
  assert_non_null(text);
  assert_true(mi_is_in_heap_region(text));
  check_json(text);
  mi_free(text);
}

static void test_json_with_a_caller_buffer(void** state) {
  (void)state;
  size_t size = 256 * KiB;
  char* buf = malloc(size);
  assert_non_null(buf);
  char* text = mi_stats_get_json(size, buf);
  assert_ptr_equal(text, buf);
  check_json(text);
  size_t len = strlen(text);
  /* a buffer with room to spare works too; one too small gives NULL */
  assert_ptr_equal(mi_stats_get_json(len + 256, buf), buf);
  check_json(buf);
  assert_null(mi_stats_get_json(16, buf));
  assert_null(mi_stats_get_json(len / 2, buf));
  assert_null(mi_stats_get_json(0, buf));
  assert_null(mi_stats_get_json(1, buf));
  free(buf);
}

/* ---- printing ----------------------------------------------------------------------------------- */

static void check_printed_table(const capture_t* c) {
  assert_true(c->len > 0);
  assert_non_null(strstr(c->text, "reserved"));
  assert_non_null(strstr(c->text, "committed"));
  assert_int_equal(c->text[c->len - 1], '\n');
  size_t lines = 0;
  for (const char* p = c->text; *p != 0; p++) lines += *p == '\n';
  assert_true(lines >= 3);
}

static void test_stats_print_out_writes_through_the_sink(void** state) {
  (void)state;
  memset(&cap, 0, sizeof(cap));
  mi_stats_print_out(capture_sink, &cap);
  check_printed_table(&cap);
  /* mi_thread_stats_print_out too */
  memset(&cap, 0, sizeof(cap));
  mi_thread_stats_print_out(capture_sink, &cap);
  assert_true(cap.len > 0);
  /* mi_stats_print goes to the registered output */
  memset(&cap, 0, sizeof(cap));
  mi_register_output(capture_sink, &cap);
  mi_stats_print(NULL);
  mi_register_output(NULL, NULL);
  check_printed_table(&cap);
}

static void test_stats_reset_keeps_figures_non_negative(void** state) {
  (void)state;
  void* big = mi_malloc(8 * MiB);
  assert_non_null(big);
  void* small[100];
  for (int i = 0; i < 100; i++) small[i] = mi_malloc(200);
  mi_stats_reset();
  mi_stats_t st;
  get_stats(&st);
  check_all_sane(&st);
  mi_free(big);
  for (int i = 0; i < 100; i++) mi_free(small[i]);
  mi_collect(true);
  get_stats(&st);
  check_all_sane(&st);
  mi_stats_merge();
  get_stats(&st);
  check_all_sane(&st);
}

/* ---- process information ------------------------------------------------------------------------ */

static void test_process_info_reports_the_os_figures(void** state) {
  (void)state;
  size_t elapsed1 = 0, user = 0, sys = 0, rss = 0, peak_rss = 0, commit = 0, peak_commit = 0,
         faults = 0;
  mi_process_info(&elapsed1, &user, &sys, &rss, &peak_rss, &commit, &peak_commit, &faults);
  assert_true(rss > 0);
  assert_true(peak_rss >= rss);
  assert_true(peak_commit >= commit);
  sleep_ms(30);
  size_t elapsed2 = 0;
  mi_process_info(&elapsed2, NULL, NULL, NULL, NULL, NULL, NULL, NULL); /* NULLs are fine */
  if (elapsed2 < elapsed1 + 20) print_error("elapsed %zu ms then %zu ms\n", elapsed1, elapsed2);
  assert_true(elapsed2 >= elapsed1 + 20);

  /* touch 64 MiB: the resident set grows by (about) that much, as the OS sees it */
  size_t size = 64 * MiB;
  char* p = mi_malloc(size);
  assert_non_null(p);
  for (size_t i = 0; i < size; i += 4096) p[i] = 1;
  size_t rss2 = 0, peak2 = 0;
  mi_process_info(NULL, NULL, NULL, &rss2, &peak2, NULL, NULL, NULL);
  size_t os_rss = proc_self_rss_bytes();
  if (rss2 < rss + size / 2) print_error("rss %zu before, %zu after touching 64 MiB\n", rss, rss2);
  assert_true(rss2 >= rss + size / 2);
  assert_true(peak2 >= rss2);
  if (os_rss != 0) {
    /* the same figure the OS gives (allowing for what moved between the two reads) */
    size_t diff = rss2 > os_rss ? rss2 - os_rss : os_rss - rss2;
    if (diff > 8 * MiB) print_error("rss %zu, /proc/self/statm says %zu\n", rss2, os_rss);
    assert_true(diff <= 8 * MiB);
  }
  mi_free(p);
  /* the peak never goes down */
  size_t peak3 = 0;
  mi_process_info(NULL, NULL, NULL, NULL, &peak3, NULL, NULL, NULL);
  assert_true(peak3 >= peak2);
}

/* ======================================================================================= */
/* ---- mode "bins": exact counts per size class ------------------------------------------- */
/* ======================================================================================= */
/* malloc_bins[b] counts the blocks of size class b (allocated: total; live: current),
 * page_bins[b] the pages of that class, malloc_normal the bytes of binned blocks (their block
 * size) and malloc_normal_count how many were allocated (facts 1.15, 4.16). The class of a
 * request is found through the JSON, whose bin entries carry their block size. */

static size_t bin_block_size[MI_BIN_COUNT - 1];

static void load_bin_block_sizes(void) {
  char* text = mi_stats_get_json(0, NULL);
  assert_non_null(text);
  const char* at = strstr(text, "\"malloc_bins\":");
  assert_non_null(at);
  for (size_t b = 0; b < MI_BIN_COUNT - 1; b++) {
    at = strstr(at, "\"block_size\":");
    assert_non_null(at);
    at += strlen("\"block_size\":");
    bin_block_size[b] = (size_t)strtoull(at, NULL, 10);
  }
  mi_free(text);
}

/* Secure and debug builds put 8 bytes of padding after each block: a request takes that much
 * more. */
#if (defined(LM_DEBUG) && LM_DEBUG > 0) || (defined(LM_SECURE) && LM_SECURE)
#define PADDING 8
#else
#define PADDING 0
#endif

/* The class of a request: the block size mi_good_size gives for it and its padding. */
static size_t bin_of(size_t size) {
  size_t bsize = mi_good_size(size + PADDING);
  for (size_t b = 1; b < MI_BIN_COUNT - 1; b++) {
    if (bin_block_size[b] == bsize) return b;
  }
  fail_msg("no size class with block size %zu (request %zu)", bsize, size);
  return 0;
}

static const size_t bin_sizes[] = {16, 100, 1000, 8000, 30000};
enum { BIN_SIZES = sizeof(bin_sizes) / sizeof(bin_sizes[0]), BIN_N = 100 };

static void test_malloc_bins_count_blocks_exactly(void** state) {
  (void)state;
  load_bin_block_sizes();
  static void* blocks[BIN_SIZES][BIN_N];
  mi_collect(true);
  mi_stats_t before, during, after;
  get_stats(&before);
  int64_t bytes = 0;
  for (size_t s = 0; s < BIN_SIZES; s++) {
    for (size_t i = 0; i < BIN_N; i++) {
      blocks[s][i] = mi_malloc(bin_sizes[s]);
      assert_non_null(blocks[s][i]);
    }
    bytes += (int64_t)(BIN_N * bin_block_size[bin_of(bin_sizes[s])]);
  }
  get_stats(&during);
  check_all_sane(&during);
  for (size_t s = 0; s < BIN_SIZES; s++) {
    size_t b = bin_of(bin_sizes[s]);
    int64_t live = during.malloc_bins[b].current - before.malloc_bins[b].current;
    int64_t made = during.malloc_bins[b].total - before.malloc_bins[b].total;
    if (live != BIN_N || made != BIN_N) {
      print_error("bin %zu (block size %zu): %lld live and %lld allocated, expected %d\n", b,
                  bin_block_size[b], (long long)live, (long long)made, BIN_N);
    }
    assert_int_equal(live, BIN_N);
    assert_int_equal(made, BIN_N);
    assert_true(during.page_bins[b].current >= 1);
  }
  assert_int_equal(during.malloc_normal.current - before.malloc_normal.current, bytes);
  assert_int_equal(during.malloc_normal_count.total - before.malloc_normal_count.total,
                   BIN_SIZES * BIN_N);
  for (size_t s = 0; s < BIN_SIZES; s++) {
    for (size_t i = 0; i < BIN_N; i++) mi_free(blocks[s][i]);
  }
  mi_collect(true);
  get_stats(&after);
  check_all_sane(&after);
  for (size_t s = 0; s < BIN_SIZES; s++) {
    size_t b = bin_of(bin_sizes[s]);
    assert_int_equal(after.malloc_bins[b].current, before.malloc_bins[b].current);
    assert_int_equal(after.malloc_bins[b].total, during.malloc_bins[b].total);
    assert_true(after.malloc_bins[b].peak >= during.malloc_bins[b].current);
    assert_int_equal(after.page_bins[b].current, before.page_bins[b].current);
  }
  assert_int_equal(after.malloc_normal.current, before.malloc_normal.current);
}

/* A thread's counts reach the process figures when it exits, blocks it left alive included. */
static void* bins_thread(void* arg) {
  void** out = arg;
  for (size_t i = 0; i < BIN_N; i++) {
    void* p = mi_malloc(bin_sizes[1]); /* allocated and freed here */
    mi_free(p);
    out[i] = mi_malloc(bin_sizes[2]); /* left alive for the main thread */
  }
  return NULL;
}

static void test_thread_counts_are_merged_at_exit(void** state) {
  (void)state;
  load_bin_block_sizes();
  static void* handed[BIN_N];
  size_t b1 = bin_of(bin_sizes[1]), b2 = bin_of(bin_sizes[2]);
  mi_stats_t before, joined, after;
  get_stats(&before);
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, bins_thread, handed), 0);
  assert_int_equal(pthread_join(t, NULL), 0);
  get_stats(&joined);
  check_all_sane(&joined);
  assert_int_equal(joined.malloc_bins[b1].total - before.malloc_bins[b1].total, BIN_N);
  assert_int_equal(joined.malloc_bins[b1].current, before.malloc_bins[b1].current);
  assert_int_equal(joined.malloc_bins[b2].total - before.malloc_bins[b2].total, BIN_N);
  assert_int_equal(joined.malloc_bins[b2].current - before.malloc_bins[b2].current, BIN_N);
  for (size_t i = 0; i < BIN_N; i++) mi_free(handed[i]);
  mi_collect(true);
  get_stats(&after);
  check_all_sane(&after);
  assert_int_equal(after.malloc_bins[b2].current, before.malloc_bins[b2].current);
}

/* Debug builds know each block's request (its padding records it): malloc_requested counts
 * exactly those bytes. Other builds leave it at zero rather than guess. */
static void test_requested_bytes(void** state) {
  (void)state;
  static const size_t sizes[] = {1, 13, 100, 1000, 5000, 70000, 300000};
  enum { N = sizeof(sizes) / sizeof(sizes[0]) };
  void* blocks[N];
  mi_stats_t before, during, after;
  get_stats(&before);
  int64_t requested = 0;
  for (size_t i = 0; i < N; i++) {
    blocks[i] = mi_malloc(sizes[i]);
    assert_non_null(blocks[i]);
    requested += (int64_t)sizes[i];
  }
  blocks[2] = mi_realloc(blocks[2], 60); /* in place: the block keeps its first request */
  get_stats(&during);
  for (size_t i = 0; i < N; i++) mi_free(blocks[i]);
  get_stats(&after);
  check_all_sane(&during);
  check_all_sane(&after);
#if defined(LM_DEBUG) && LM_DEBUG > 0
  assert_int_equal(during.malloc_requested.current - before.malloc_requested.current, requested);
  assert_int_equal(during.malloc_requested.total - before.malloc_requested.total, requested);
  assert_int_equal(after.malloc_requested.current, before.malloc_requested.current);
  assert_true(after.malloc_requested.peak >= during.malloc_requested.current);
#else
  assert_int_equal(after.malloc_requested.total, 0);
  assert_int_equal(after.malloc_requested.current, 0);
#endif
}

/* A destroyed heap's blocks leave the figures with it, without a free each. */
static void test_heap_destroy_drops_its_blocks(void** state) {
  (void)state;
  load_bin_block_sizes();
  size_t b = bin_of(bin_sizes[2]);
  mi_stats_t before, during, after;
  get_stats(&before);
  mi_heap_t* heap = mi_heap_new();
  assert_non_null(heap);
  for (size_t i = 0; i < BIN_N; i++) assert_non_null(mi_heap_malloc(heap, bin_sizes[2]));
  assert_non_null(mi_heap_malloc(heap, 1 << 20)); /* a huge block too */
  get_stats(&during);
  assert_int_equal(during.malloc_bins[b].current - before.malloc_bins[b].current, BIN_N);
  assert_int_equal(during.malloc_huge_count.total - before.malloc_huge_count.total, 1);
  assert_true(during.malloc_huge.current - before.malloc_huge.current >= 1 << 20);
  mi_heap_destroy(heap);
  get_stats(&after);
  check_all_sane(&after);
  assert_int_equal(after.malloc_bins[b].current, before.malloc_bins[b].current);
  assert_int_equal(after.malloc_bins[b].total, during.malloc_bins[b].total);
  assert_int_equal(after.malloc_huge.current, before.malloc_huge.current);
  assert_int_equal(after.malloc_normal.current, before.malloc_normal.current);
  assert_int_equal(after.malloc_requested.current, before.malloc_requested.current);
}

int main(int argc, char** argv) {
  mi_process_init();
  if (argc > 1 && strcmp(argv[1], "bins") == 0) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_malloc_bins_count_blocks_exactly),
        cmocka_unit_test(test_thread_counts_are_merged_at_exit),
        cmocka_unit_test(test_requested_bytes),
        cmocka_unit_test(test_heap_destroy_drops_its_blocks),
    };
    return cmocka_run_group_tests_name("stats-bins", tests, NULL, NULL);
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_stats_get_checks_size_and_version),
      cmocka_unit_test(test_counters_are_consistent_after_a_known_sequence),
      cmocka_unit_test(test_thread_count_follows_threads),
      cmocka_unit_test(test_abandoned_segments_are_counted_consistently),
      cmocka_unit_test(test_json_with_a_new_buffer),
      cmocka_unit_test(test_json_with_a_caller_buffer),
      cmocka_unit_test(test_stats_print_out_writes_through_the_sink),
      cmocka_unit_test(test_stats_reset_keeps_figures_non_negative),
      cmocka_unit_test(test_process_info_reports_the_os_figures),
  };
  return cmocka_run_group_tests_name("stats", tests, NULL, NULL);
}
