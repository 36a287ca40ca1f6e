/* latency: per-call malloc and free latency percentiles on a mixed workload.
 *
 *   latency OPERATIONS [THREADS=2] [LIVE=20000] [SEED=42]
 *
 * THREADS threads share OPERATIONS. Each owns LIVE/THREADS slots and, per operation, frees the
 * object in a random slot and allocates a new one; sizes are mixed: 85% 8..256 bytes, 12%
 * 257 bytes..16 KiB, 2.9% 16..256 KiB, 0.1% 256 KiB..2 MiB. With more than one thread, one
 * operation in 16 swaps its new object into a shared exchange array and frees the object that
 * comes out (most often another thread's: a remote free).
 *
 * Every malloc and every free is timed on its own (the time stamp counter on x86-64, calibrated
 * against CLOCK_MONOTONIC over the run; clock_gettime elsewhere) and counted in a histogram of
 * about 0.4% resolution, set up before the run: no allocation per sample. Writing and checking
 * the blocks happens outside the timed calls. The output line gives, in nanoseconds, p50, p99,
 * p99.99 and the maximum for malloc and for free, and timer_ns, the median of an empty timed
 * section (included in every figure).
 * Exit status 0 on success, 2 on bad arguments, 1 if malloc returned NULL or a block lost its
 * contents.
 */
#include "bench.h"

#include <pthread.h>
#include <stdatomic.h>

/* (lfence is an SSE2 instruction: a plain i686 target falls back to the clock) */
#if defined(__x86_64__) || (defined(__i386__) && defined(__SSE2__))
#include <x86intrin.h>
#define USE_TSC 1
static inline uint64_t ticks(void) {
  _mm_lfence();
  uint64_t t = __rdtsc();
  _mm_lfence();
  return t;
}
#else
#define USE_TSC 0
static inline uint64_t ticks(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}
#endif

/* histogram: exact below 512 ticks, then 256 sub-buckets per power of two */
#define EXACT 512
#define SUB 256
#define NBUCKETS (EXACT + (64 - 9) * SUB)

typedef struct hist_s {
  uint64_t count[NBUCKETS];
  uint64_t n;
  uint64_t max;
} hist_t;

static inline void hist_add(hist_t* h, uint64_t v) {
  size_t idx;
  if (v < EXACT) {
    idx = (size_t)v;
  } else {
    int e = 63 - __builtin_clzll(v);
    idx = EXACT + (size_t)(e - 9) * SUB + (size_t)((v >> (e - 8)) & (SUB - 1));
  }
  h->count[idx]++;
  h->n++;
  if (v > h->max) h->max = v;
}

static uint64_t bucket_low(size_t idx) {
  if (idx < EXACT) return idx;
  size_t e = 9 + (idx - EXACT) / SUB, m = (idx - EXACT) % SUB;
  return (uint64_t)(SUB + m) << (e - 8);
}

static uint64_t hist_quantile(const hist_t* h, double q) {
  if (h->n == 0) return 0;
  uint64_t want = (uint64_t)(q * (double)h->n);
  if (want >= h->n) want = h->n - 1;
  uint64_t seen = 0;
  for (size_t i = 0; i < NBUCKETS; i++) {
    seen += h->count[i];
    if (seen > want) return bucket_low(i);
  }
  return h->max;
}

static void hist_merge(hist_t* into, const hist_t* from) {
  for (size_t i = 0; i < NBUCKETS; i++) into->count[i] += from->count[i];
  into->n += from->n;
  if (from->max > into->max) into->max = from->max;
}

#define EXCHANGE_SLOTS 256
static _Atomic(unsigned char*) exchange[EXCHANGE_SLOTS];
static int use_exchange;

typedef struct worker_s {
  pthread_t thread;
  uint64_t ops;
  size_t live;
  uint64_t seed;
  hist_t* hmalloc;
  hist_t* hfree;
  uint64_t checksum;
  int failed;
} worker_t;

static size_t pick_size(uint64_t* rs) {
  uint64_t r = bench_rnd(rs);
  uint32_t b = (uint32_t)(r % 1000);
  uint64_t v = r >> 20;
  if (b < 850) return 8 + (size_t)(v % 249);
  if (b < 970) return 257 + (size_t)(v % (16384 - 257 + 1));
  if (b < 999) return 16385 + (size_t)(v % (262144 - 16385 + 1));
  return 262145 + (size_t)(v % (2097152 - 262145 + 1));
}

/* a block: its size in the first 4 bytes, a tag in the last byte */
static unsigned char* timed_make(worker_t* w, uint64_t* rs) {
  size_t sz = pick_size(rs);
  uint64_t t0 = ticks();
  unsigned char* p = malloc(sz);
  uint64_t t1 = ticks();
  hist_add(w->hmalloc, t1 - t0);
  if (p == NULL) {
    w->failed = 1;
    return NULL;
  }
  uint32_t s32 = (uint32_t)sz;
  memcpy(p, &s32, 4);
  p[sz - 1] = (unsigned char)(sz * 131u + 7u);
  return p;
}

static void timed_drop(worker_t* w, unsigned char* p) {
  if (p == NULL) return;
  uint32_t sz;
  memcpy(&sz, p, 4);
  if (sz < 8 || sz > 2097152 || p[sz - 1] != (unsigned char)(sz * 131u + 7u)) w->failed = 2;
  w->checksum += sz;
  uint64_t t0 = ticks();
  free(p);
  uint64_t t1 = ticks();
  hist_add(w->hfree, t1 - t0);
}

static void* worker_main(void* arg) {
  worker_t* w = arg;
  uint64_t rs = w->seed;
  unsigned char** slots = calloc(w->live, sizeof(*slots));
  if (slots == NULL) {
    w->failed = 1;
    return NULL;
  }
  for (size_t i = 0; i < w->live && !w->failed; i++) slots[i] = timed_make(w, &rs);
  for (uint64_t op = 0; op < w->ops && !w->failed; op++) {
    uint64_t r = bench_rnd(&rs);
    if (use_exchange && (r & 15) == 0) {
      unsigned char* p = timed_make(w, &rs);
      unsigned char* out = atomic_exchange(&exchange[(r >> 8) % EXCHANGE_SLOTS], p);
      timed_drop(w, out);
      continue;
    }
    size_t i = (size_t)((r >> 8) % w->live);
    timed_drop(w, slots[i]);
    slots[i] = timed_make(w, &rs);
  }
  for (size_t i = 0; i < w->live; i++) timed_drop(w, slots[i]);
  free(slots);
  return NULL;
}

static double timer_overhead_ticks(void) {
  static hist_t h; /* zero-initialized, not allocated */
  for (int i = 0; i < 100000; i++) {
    uint64_t t0 = ticks();
    uint64_t t1 = ticks();
    hist_add(&h, t1 - t0);
  }
  return (double)hist_quantile(&h, 0.5);
}

int main(int argc, char** argv) {
  unsigned long long ops = 0, threads = 2, live = 20000, seed = 42;
  if (argc < 2 || !bench_arg(argc, argv, 1, &ops) || !bench_arg(argc, argv, 2, &threads) ||
      !bench_arg(argc, argv, 3, &live) || !bench_arg(argc, argv, 4, &seed) || threads == 0 ||
      threads > 256 || live < threads) {
    fprintf(stderr, "usage: %s OPERATIONS [THREADS=2] [LIVE=20000] [SEED=42]\n", argv[0]);
    return 2;
  }
  use_exchange = threads > 1;
  worker_t* ws = calloc(threads, sizeof(worker_t));
  hist_t* hs = calloc(2 * threads + 2, sizeof(hist_t));
  if (ws == NULL || hs == NULL) BENCH_FAIL("latency: malloc returned NULL");
  for (size_t t = 0; t < threads; t++) {
    ws[t].ops = ops / threads + (t < ops % threads ? 1 : 0);
    ws[t].live = live / threads + (t < live % threads ? 1 : 0);
    ws[t].seed = seed * 0x9E3779B97F4A7C15ULL + t;
    ws[t].hmalloc = &hs[2 * t];
    ws[t].hfree = &hs[2 * t + 1];
  }
  double overhead = timer_overhead_ticks();
  double ns0 = bench_now();
  uint64_t tk0 = ticks();
  for (size_t t = 0; t < threads; t++) {
    if (pthread_create(&ws[t].thread, NULL, worker_main, &ws[t]) != 0)
      BENCH_FAIL("latency: pthread_create failed");
  }
  for (size_t t = 0; t < threads; t++) pthread_join(ws[t].thread, NULL);
  hist_t* all_malloc = &hs[2 * threads];
  hist_t* all_free = &hs[2 * threads + 1];
  worker_t rest = {0};
  rest.hmalloc = all_malloc;
  rest.hfree = all_free;
  for (size_t k = 0; k < EXCHANGE_SLOTS; k++) timed_drop(&rest, atomic_exchange(&exchange[k], NULL));
  uint64_t tk1 = ticks();
  double ns1 = bench_now();
  double ns_per_tick = USE_TSC ? (ns1 - ns0) * 1e9 / (double)(tk1 - tk0) : 1.0;
  uint64_t checksum = rest.checksum;
  int failed = rest.failed;
  for (size_t t = 0; t < threads; t++) {
    hist_merge(all_malloc, ws[t].hmalloc);
    hist_merge(all_free, ws[t].hfree);
    checksum += ws[t].checksum;
    if (ws[t].failed) failed = ws[t].failed;
  }
  if (failed) BENCH_FAIL("latency: %s", failed == 1 ? "malloc returned NULL" : "a block was corrupted");
#define NS(x) ((double)(x) * ns_per_tick)
  printf("latency operations=%llu threads=%llu live=%llu timer_ns=%.0f "
         "malloc_calls=%llu malloc_p50_ns=%.0f malloc_p99_ns=%.0f malloc_p9999_ns=%.0f "
         "malloc_max_ns=%.0f free_calls=%llu free_p50_ns=%.0f free_p99_ns=%.0f "
         "free_p9999_ns=%.0f free_max_ns=%.0f checksum=%llu malloc=%s\n",
         ops, threads, live, NS(overhead), (unsigned long long)all_malloc->n,
         NS(hist_quantile(all_malloc, 0.5)), NS(hist_quantile(all_malloc, 0.99)),
         NS(hist_quantile(all_malloc, 0.9999)), NS(all_malloc->max),
         (unsigned long long)all_free->n, NS(hist_quantile(all_free, 0.5)),
         NS(hist_quantile(all_free, 0.99)), NS(hist_quantile(all_free, 0.9999)),
         NS(all_free->max), (unsigned long long)checksum, bench_malloc_provider());
  free(hs);
  free(ws);
  return 0;
}
