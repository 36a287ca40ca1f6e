/* torture_signals: signals interrupting threads in the middle of allocating and freeing.
 *
 * THREADS threads allocate, fill, check and free blocks (8 B .. 256 KiB, remote frees through
 * a shared slot array, mi_collect now and then, so slow paths, the purger's waits and OS calls
 * are all under way) while the main thread sends them SIGUSR1 and SIGUSR2 as fast as it can for
 * SECONDS. The handlers do what a handler may: count, and read the block the thread last
 * allocated (checking it was fully set up before the pointer was published). SIGUSR2's handler
 * is installed without SA_RESTART, so blocking calls return EINTR. Every block must keep its
 * contents, the counts must balance, and no thread may get stuck (the test has a deadline).
 *
 * usage: torture_signals [threads=4] [seconds=3] [seed=1]
 * Prints a summary and "N passed, N failed"; exit status 0 only when nothing failed. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mimalloc.h"
#include "../stress/rng.h"

#define MAX_THREADS 32
#define SLOTS 4096

static _Atomic(unsigned char*) slots[SLOTS];
static _Atomic(bool) stop;
static _Atomic(size_t) allocated, freed, bad, signals_seen, handler_bad;

struct worker {
  pthread_t tid;
  uint64_t rng;
  _Atomic(unsigned char*) last; /* read by the signal handler */
};

static struct worker workers[MAX_THREADS];
static _Thread_local struct worker* self;

/* A block holds its size in its first word and a pattern byte in its last (at least 16 bytes,
 * so the two never overlap). */
static unsigned char* make(size_t size) {
  unsigned char* p = mi_malloc(size);
  if (p == NULL) return NULL;
  memcpy(p, &size, sizeof(size));
  p[size - 1] = (unsigned char)(size * 7 + 1);
  return p;
}

static bool intact(const unsigned char* p) {
  size_t size;
  memcpy(&size, p, sizeof(size));
  return size >= 16 && size <= 256 * 1024 && mi_usable_size(p) >= size &&
         p[size - 1] == (unsigned char)(size * 7 + 1);
}

static void on_signal(int sig) {
  (void)sig;
  int saved = errno;
  atomic_fetch_add_explicit(&signals_seen, 1, memory_order_relaxed);
  if (self != NULL) {
    const unsigned char* p = atomic_load_explicit(&self->last, memory_order_acquire);
    if (p != NULL) {
      size_t size;
      memcpy(&size, p, sizeof(size));
      if (size < 16 || size > 256 * 1024 || p[size - 1] != (unsigned char)(size * 7 + 1)) {
        atomic_fetch_add_explicit(&handler_bad, 1, memory_order_relaxed);
      }
    }
  }
  errno = saved;
}

static size_t pick_size(uint64_t* rng) {
  uint64_t r = rng_next(rng);
  if (r % 32 == 0) return 8192 + (r >> 8) % (248 * 1024);
  return 16 + (r >> 8) % 1024;
}

static void* worker_main(void* arg) {
  struct worker* w = arg;
  self = w;
  uint64_t n = 0;
  while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
    size_t size = pick_size(&w->rng);
    unsigned char* p = make(size);
    if (p == NULL) {
      atomic_fetch_add(&bad, 1);
      continue;
    }
    atomic_fetch_add_explicit(&allocated, 1, memory_order_relaxed);
    atomic_store_explicit(&w->last, p, memory_order_release);
    size_t k = (size_t)(rng_next(&w->rng) % SLOTS);
    if (!intact(p)) atomic_fetch_add(&bad, 1);
    /* (no longer the handler's to read once another thread may free it) */
    atomic_store_explicit(&w->last, NULL, memory_order_release);
    unsigned char* old = atomic_exchange(&slots[k], p); /* often another thread's block */
    if (old != NULL) {
      if (!intact(old)) atomic_fetch_add(&bad, 1);
      mi_free(old);
      atomic_fetch_add_explicit(&freed, 1, memory_order_relaxed);
    }
    if (++n % 20000 == 0) mi_collect(n % 100000 == 0);
  }
  return NULL;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int main(int argc, char** argv) {
  int threads = argc > 1 ? atoi(argv[1]) : 4;
  double seconds = argc > 2 ? atof(argv[2]) : 3;
  uint64_t seed = argc > 3 ? strtoull(argv[3], NULL, 10) : 1;
  if (threads < 1 || threads > MAX_THREADS || seconds <= 0) {
    fprintf(stderr, "usage: %s [threads 1..%d] [seconds] [seed]\n", argv[0], MAX_THREADS);
    return 2;
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGUSR1, &sa, NULL);
  sa.sa_flags = 0; /* interrupted system calls fail with EINTR */
  sigaction(SIGUSR2, &sa, NULL);

  for (int i = 0; i < threads; i++) {
    workers[i].rng = seed * 0x9E3779B97F4A7C15ull + (uint64_t)i * 7919 + 1;
    if (pthread_create(&workers[i].tid, NULL, worker_main, &workers[i]) != 0) {
      fprintf(stderr, "pthread_create failed\n");
      return 1;
    }
  }
  size_t sent = 0;
  double end = now_s() + seconds;
  while (now_s() < end) {
    for (int i = 0; i < threads; i++) {
      if (pthread_kill(workers[i].tid, (sent & 1) ? SIGUSR2 : SIGUSR1) == 0) sent++;
    }
    if (sent % 64 == 0) sched_yield();
  }
  atomic_store(&stop, true);
  for (int i = 0; i < threads; i++) pthread_join(workers[i].tid, NULL);
  for (size_t k = 0; k < SLOTS; k++) {
    unsigned char* p = atomic_exchange(&slots[k], NULL);
    if (p == NULL) continue;
    if (!intact(p)) atomic_fetch_add(&bad, 1);
    mi_free(p);
    atomic_fetch_add(&freed, 1);
  }
  mi_collect(true);

  int passed = 0, failed = 0;
  printf("torture_signals: %d threads, %.1f s: %zu signals sent, %zu handled, %zu blocks "
         "allocated, %zu freed\n",
         threads, seconds, sent, atomic_load(&signals_seen), atomic_load(&allocated),
         atomic_load(&freed));
  if (atomic_load(&bad) == 0 && atomic_load(&handler_bad) == 0) passed++;
  else {
    failed++;
    printf("FAIL: %zu blocks lost their contents (%zu seen so by a handler)\n",
           atomic_load(&bad), atomic_load(&handler_bad));
  }
  if (atomic_load(&allocated) == atomic_load(&freed)) passed++;
  else {
    failed++;
    printf("FAIL: %zu blocks allocated, %zu freed\n", atomic_load(&allocated),
           atomic_load(&freed));
  }
  if (atomic_load(&signals_seen) > 0) passed++;
  else {
    failed++;
    printf("FAIL: no signal reached a thread\n");
  }
  printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
