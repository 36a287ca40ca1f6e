/* torture_soak: a long run whose live set rises and falls, with resident memory sampled.
 *
 * THREADS threads replace blocks (8 B .. 128 KiB skewed small, and now and then a 1-4 MiB block)
 * in slot arrays of their own, freeing about a third of the old blocks through a shared
 * exchange (remote frees), and keep the bytes they hold near a target that follows a wave
 * between 10% and 100% of LIVE MiB over PERIOD seconds. Each thread also ends and a fresh one
 * takes its slots over every few seconds (abandoned memory). The main thread samples the
 * resident size every 100 ms beside the exact live size (the sum of the requested sizes).
 *
 * Checks, besides every block's contents: resident memory stays within the live set's
 * envelope -- at every sample below ENVELOPE x (the largest live size of the last two seconds)
 * plus the resident size before the run plus 24 MiB (the purge delays' worth of lag) -- and does
 * not creep: the highest resident size of the last period is at most 1.5x that of the second
 * period, plus 8 MiB (a period's peak varies by a quarter between periods of a 30-second run on
 * a busy machine: 112.6 then 145.9 MiB in one CI run; the 10-minute run shows no creep). The envelope is wide because a live set that shrinks at random leaves
 * pages with a few live blocks each, which no allocator that does not move blocks can give
 * back: at 2.5 one sample in 6,000 of a 10-minute run reached the bound, on the way up from a
 * trough.
 *
 * usage: torture_soak [seconds=30] [threads=4] [live-MiB=96] [period=10] [envelope=3]
 * Prints the samples (every second), a summary and "N passed, N failed". */
#define _GNU_SOURCE
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "mimalloc.h"
#include "../stress/rng.h"
#include "../support/proc_self.h"

#define MiB ((size_t)1024 * 1024)
#define MAX_THREADS 32
#define SLOTS 65536
#define EXCHANGE_CAP 4096
#define LIFETIME_S 3.0 /* a worker hands its slots to a fresh thread this often */

struct item {
  unsigned char* p;
  size_t size;
};

static struct {
  pthread_mutex_t lock;
  struct item items[EXCHANGE_CAP];
  size_t count;
} exchange = {.lock = PTHREAD_MUTEX_INITIALIZER};

struct share {
  struct item slots[SLOTS];
  uint64_t rng;
  size_t held; /* bytes in slots */
};

static struct share* shares; /* mmapped: not the allocator's memory */
static int n_threads;
static double period_s, t_start, t_end;
static size_t live_max;
static _Atomic(int64_t) live_bytes; /* requested bytes of every block not yet freed */
static _Atomic(size_t) bad, allocated, freed;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static size_t target_at(double t) {
  double phase = sin(2.0 * M_PI * (t - t_start) / period_s); /* -1 .. 1 */
  return (size_t)((double)live_max * (0.55 + 0.45 * phase));
}

static unsigned char tag(const struct item* it) {
  return (unsigned char)(((uintptr_t)it->p >> 4) ^ it->size) | 1;
}

static void drop(struct item* it) {
  unsigned char t = tag(it);
  if (it->p[0] != t || it->p[it->size - 1] != t) atomic_fetch_add(&bad, 1);
  mi_free(it->p);
  atomic_fetch_sub(&live_bytes, (int64_t)it->size);
  atomic_fetch_add_explicit(&freed, 1, memory_order_relaxed);
  it->p = NULL;
}

/* A block this thread no longer needs: a third go to another thread to free. */
static void retire(struct item it, uint64_t* rng) {
  if (rng_next(rng) % 3 == 0) {
    struct item out = {NULL, 0};
    pthread_mutex_lock(&exchange.lock);
    if (exchange.count < EXCHANGE_CAP) {
      exchange.items[exchange.count++] = it;
    } else { /* full: it takes the place of one that this thread frees instead */
      size_t k = (size_t)(rng_next(rng) % EXCHANGE_CAP);
      out = exchange.items[k];
      exchange.items[k] = it;
    }
    pthread_mutex_unlock(&exchange.lock);
    if (out.p != NULL) drop(&out);
    return;
  }
  drop(&it);
}

/* Take one block from the exchange (another thread's) and free it. */
static void take_one(uint64_t* rng) {
  struct item it = {NULL, 0};
  pthread_mutex_lock(&exchange.lock);
  if (exchange.count > 0) {
    size_t k = (size_t)(rng_next(rng) % exchange.count);
    it = exchange.items[k];
    exchange.items[k] = exchange.items[--exchange.count];
  }
  pthread_mutex_unlock(&exchange.lock);
  if (it.p != NULL) drop(&it);
}

static size_t pick_size(uint64_t* rng) {
  uint64_t r = rng_next(rng);
  if (r % 2048 == 0) return MiB + (r >> 11) % (3 * MiB);
  if (r % 16 == 0) return 1024 + (r >> 8) % (127 * 1024);
  return 8 + (r >> 8) % 512;
}

static void* worker_main(void* arg) {
  struct share* s = arg;
  double until = now_s() + LIFETIME_S;
  size_t per_thread_div = (size_t)n_threads;
  for (uint64_t n = 0;; n++) {
    double t = now_s();
    if (t >= t_end || t >= until) break;
    size_t target = target_at(t) / per_thread_div;
    size_t k = (size_t)(rng_next(&s->rng) % SLOTS);
    struct item* slot = &s->slots[k];
    if (slot->p != NULL) {
      s->held -= slot->size;
      retire(*slot, &s->rng);
      slot->p = NULL;
    }
    if (s->held < target) {
      struct item it = {NULL, pick_size(&s->rng)};
      it.p = mi_malloc(it.size);
      if (it.p == NULL) {
        atomic_fetch_add(&bad, 1);
        continue;
      }
      unsigned char tg = tag(&it);
      memset(it.p, tg, it.size < 4096 ? it.size : 4096); /* touched as programs do */
      it.p[it.size - 1] = tg;
      atomic_fetch_add(&live_bytes, (int64_t)it.size);
      atomic_fetch_add_explicit(&allocated, 1, memory_order_relaxed);
      *slot = it;
      s->held += it.size;
    }
    if (n % 4 == 0) take_one(&s->rng);
  }
  return NULL;
}

/* Keeps THREADS workers alive, each replaced by a fresh thread when its lifetime is over. */
static void* spawner_main(void* arg) {
  struct share* s = arg;
  while (now_s() < t_end) {
    pthread_t tid;
    if (pthread_create(&tid, NULL, worker_main, s) != 0) {
      atomic_fetch_add(&bad, 1);
      break;
    }
    pthread_join(tid, NULL);
  }
  return NULL;
}

struct sample {
  double t;
  size_t rss, live, recent_max;
};

int main(int argc, char** argv) {
  double seconds = argc > 1 ? atof(argv[1]) : 30;
  n_threads = argc > 2 ? atoi(argv[2]) : 4;
  live_max = (argc > 3 ? (size_t)strtoul(argv[3], NULL, 10) : 96) * MiB;
  period_s = argc > 4 ? atof(argv[4]) : 10;
  double envelope = argc > 5 ? atof(argv[5]) : 3;
  if (seconds < 2 * period_s || n_threads < 1 || n_threads > MAX_THREADS || live_max == 0 ||
      envelope < 1) {
    fprintf(stderr,
            "usage: %s [seconds >= 2 periods] [threads 1..%d] [live-MiB] [period-s] [envelope]\n",
            argv[0], MAX_THREADS);
    return 2;
  }
  if (proc_self_rss_bytes() == 0) {
    printf("cannot read /proc/self/statm; skipping\n");
    return 77;
  }
  size_t n_samples_max = (size_t)(seconds * 10) + 16;
  shares = mmap(NULL, sizeof(struct share) * (size_t)n_threads, PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  struct sample* samples = mmap(NULL, sizeof(struct sample) * n_samples_max,
                                PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (shares == MAP_FAILED || samples == MAP_FAILED) return 1;
  size_t base = proc_self_rss_bytes();
  t_start = now_s();
  t_end = t_start + seconds;
  pthread_t spawners[MAX_THREADS];
  for (int i = 0; i < n_threads; i++) {
    shares[i].rng = 0x9E3779B97F4A7C15ull * (uint64_t)(i + 1);
    pthread_create(&spawners[i], NULL, spawner_main, &shares[i]);
  }
  size_t n = 0;
  while (now_s() < t_end && n < n_samples_max) {
    proc_sleep_ms(100);
    struct sample* sm = &samples[n++];
    sm->t = now_s() - t_start;
    sm->rss = proc_self_rss_bytes();
    int64_t live = atomic_load(&live_bytes);
    sm->live = live > 0 ? (size_t)live : 0;
  }
  for (int i = 0; i < n_threads; i++) pthread_join(spawners[i], NULL);
  /* what is left: the slots and the exchange */
  for (int i = 0; i < n_threads; i++) {
    for (size_t k = 0; k < SLOTS; k++) {
      if (shares[i].slots[k].p != NULL) drop(&shares[i].slots[k]);
    }
  }
  for (size_t i = 0; i < exchange.count; i++) drop(&exchange.items[i]);
  exchange.count = 0;
  mi_collect(true);

  /* judge */
  size_t worst_i = 0;
  double worst = 0;
  size_t first_peak = 0, last_peak = 0, live_peak = 0, rss_peak = 0;
  for (size_t i = 0; i < n; i++) {
    size_t recent = 0;
    for (size_t j = i + 1; j-- > 0 && samples[i].t - samples[j].t <= 2.0;) {
      if (samples[j].live > recent) recent = samples[j].live;
    }
    samples[i].recent_max = recent;
    double allowed = envelope * (double)recent + (double)base + 24.0 * (double)MiB;
    double ratio = (double)samples[i].rss / allowed;
    if (ratio > worst) {
      worst = ratio;
      worst_i = i;
    }
    if (samples[i].t >= period_s && samples[i].t < 2 * period_s && samples[i].rss > first_peak) {
      first_peak = samples[i].rss;
    }
    if (samples[i].t >= seconds - period_s && samples[i].rss > last_peak) last_peak = samples[i].rss;
    if (samples[i].live > live_peak) live_peak = samples[i].live;
    if (samples[i].rss > rss_peak) rss_peak = samples[i].rss;
  }
  printf("torture_soak: %.0f s, %d threads (each replaced every %.0f s), live up to %zu MiB in "
         "waves of %.0f s; resident before the run %.1f MiB\n",
         seconds, n_threads, LIFETIME_S, live_max / MiB, period_s, (double)base / MiB);
  for (size_t i = 0; i < n; i += 10) {
    printf("  t=%5.1f s  live %7.1f MiB  rss %7.1f MiB\n", samples[i].t,
           (double)samples[i].live / MiB, (double)samples[i].rss / MiB);
  }
  printf("peak live %.1f MiB, peak rss %.1f MiB; rss peaks: first period %.1f MiB, last %.1f "
         "MiB; %zu blocks allocated, %zu freed\n",
         (double)live_peak / MiB, (double)rss_peak / MiB, (double)first_peak / MiB,
         (double)last_peak / MiB, atomic_load(&allocated), atomic_load(&freed));
  int passed = 0, failed = 0;
  if (atomic_load(&bad) == 0 && atomic_load(&allocated) == atomic_load(&freed)) passed++;
  else {
    failed++;
    printf("FAIL: %zu blocks bad or not allocated; %zu allocated, %zu freed\n",
           atomic_load(&bad), atomic_load(&allocated), atomic_load(&freed));
  }
  if (n > 0 && worst <= 1.0) passed++;
  else {
    failed++;
    printf("FAIL: at t=%.1f s rss %.1f MiB is above the envelope (%.1f x %.1f MiB live + base "
           "+ 24 MiB)\n",
           n > 0 ? samples[worst_i].t : 0.0, n > 0 ? (double)samples[worst_i].rss / MiB : 0.0,
           envelope, n > 0 ? (double)samples[worst_i].recent_max / MiB : 0.0);
  }
  printf("envelope: worst sample at %.0f%% of what is allowed\n", worst * 100);
  if (last_peak <= first_peak + first_peak / 2 + 8 * MiB) passed++;
  else {
    failed++;
    printf("FAIL: resident memory crept up: peak %.1f MiB in the last period, %.1f MiB in the "
           "second\n",
           (double)last_peak / MiB, (double)first_peak / MiB);
  }
  printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
