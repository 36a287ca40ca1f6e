/* torture_threads: many more threads than cores, created and exiting while they exchange
 * blocks.
 *
 * WAVES times, the main thread starts THREADS threads at once (256 by default, on however few
 * cores there are). Each thread allocates blocks of 8 B .. 64 KiB (skewed small), writes a
 * pattern into each, puts most of them into a shared exchange and takes blocks out of it that
 * other threads put there -- threads of this wave, or of earlier waves that have exited since,
 * whose memory is abandoned -- checks them and frees them; then it exits with a few blocks still
 * in the exchange and a few of its own live (freed by the main thread at the end of the wave,
 * into abandoned pages). Every block is checked before it is freed; at the end the counts must
 * balance and the exchange must be empty.
 *
 * usage: torture_threads [threads=256] [waves=4] [blocks-per-thread=2000] [seed=1]
 * Prints a summary and "N passed, N failed"; exit status 0 only when nothing failed. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mimalloc.h"
#include "../stress/rng.h"

#define MAX_THREADS 1024
#define EXCHANGE_CAP 8192
#define KEPT 8

struct item {
  unsigned char* p;
  size_t size;
};

static struct {
  pthread_mutex_t lock;
  struct item items[EXCHANGE_CAP];
  size_t count;
} exchange = {.lock = PTHREAD_MUTEX_INITIALIZER};

struct job {
  pthread_t tid;
  uint64_t rng;
  size_t blocks;
  struct item kept[KEPT];
  size_t allocated, freed, bad;
};

static unsigned char tag(const struct item* it) {
  return (unsigned char)(((uintptr_t)it->p >> 3) ^ (it->size * 31)) | 1;
}

static bool intact(const struct item* it) {
  unsigned char t = tag(it);
  return it->p[0] == t && it->p[it->size - 1] == t && it->p[it->size / 2] == t;
}

static size_t pick_size(uint64_t* rng) {
  uint64_t r = rng_next(rng);
  if (r % 16 != 0) return 8 + (r >> 8) % 256;
  return 8 + (r >> 8) % (64 * 1024);
}

/* Put `it` into the exchange, or, when it is full, take one out in its place: returns the
 * block the caller must check and free (NULL if none). */
static struct item swap_exchange(struct item it, uint64_t* rng, bool take) {
  struct item out = {NULL, 0};
  pthread_mutex_lock(&exchange.lock);
  if (take && exchange.count > 0) {
    size_t k = (size_t)(rng_next(rng) % exchange.count);
    out = exchange.items[k];
    exchange.items[k] = exchange.items[--exchange.count];
  }
  if (it.p != NULL) {
    /* (full only when none was taken: then the caller frees its own block) */
    if (exchange.count < EXCHANGE_CAP) exchange.items[exchange.count++] = it;
    else out = it;
  }
  pthread_mutex_unlock(&exchange.lock);
  return out;
}

static void release(struct job* j, struct item it) {
  if (it.p == NULL) return;
  if (!intact(&it)) j->bad++;
  mi_free(it.p);
  j->freed++;
}

static void* thread_main(void* arg) {
  struct job* j = arg;
  for (size_t i = 0; i < j->blocks; i++) {
    struct item it = {NULL, pick_size(&j->rng)};
    it.p = mi_malloc(it.size);
    if (it.p == NULL) {
      j->bad++;
      continue;
    }
    j->allocated++;
    unsigned char t = tag(&it);
    it.p[0] = it.p[it.size / 2] = it.p[it.size - 1] = t;
    if (i < KEPT) {
      j->kept[i] = it; /* outlives the thread */
      continue;
    }
    release(j, swap_exchange(it, &j->rng, rng_next(&j->rng) % 4 != 0));
  }
  return NULL;
}

int main(int argc, char** argv) {
  int threads = argc > 1 ? atoi(argv[1]) : 256;
  int waves = argc > 2 ? atoi(argv[2]) : 4;
  size_t blocks = argc > 3 ? (size_t)strtoul(argv[3], NULL, 10) : 2000;
  uint64_t seed = argc > 4 ? strtoull(argv[4], NULL, 10) : 1;
  if (threads < 1 || threads > MAX_THREADS || waves < 1 || blocks < KEPT) {
    fprintf(stderr, "usage: %s [threads 1..%d] [waves] [blocks >= %d] [seed]\n", argv[0],
            MAX_THREADS, KEPT);
    return 2;
  }
  static struct job jobs[MAX_THREADS];
  size_t allocated = 0, freed = 0, bad = 0, create_failed = 0;
  for (int w = 0; w < waves; w++) {
    for (int i = 0; i < threads; i++) {
      memset(&jobs[i], 0, sizeof(jobs[i]));
      jobs[i].rng = seed * 0x9E3779B97F4A7C15ull + (uint64_t)(w * MAX_THREADS + i) * 104729 + 1;
      jobs[i].blocks = blocks;
      if (pthread_create(&jobs[i].tid, NULL, thread_main, &jobs[i]) != 0) {
        jobs[i].tid = 0;
        create_failed++;
      }
    }
    for (int i = 0; i < threads; i++) {
      if (jobs[i].tid == 0) continue;
      pthread_join(jobs[i].tid, NULL);
      /* their kept blocks, freed into the pages of a thread that has exited */
      for (int k = 0; k < KEPT; k++) release(&jobs[i], jobs[i].kept[k]);
      allocated += jobs[i].allocated;
      freed += jobs[i].freed;
      bad += jobs[i].bad;
    }
  }
  struct job last = {0};
  for (size_t i = 0; i < exchange.count; i++) release(&last, exchange.items[i]);
  freed += last.freed;
  bad += last.bad;
  exchange.count = 0;
  mi_collect(true);

  int passed = 0, failed = 0;
  printf("torture_threads: %d waves of %d threads, %zu blocks each: %zu allocated, %zu freed\n",
         waves, threads, blocks, allocated, freed);
  if (create_failed == 0) passed++;
  else {
    failed++;
    printf("FAIL: %zu threads could not be created\n", create_failed);
  }
  if (bad == 0) passed++;
  else {
    failed++;
    printf("FAIL: %zu blocks lost their contents or could not be allocated\n", bad);
  }
  if (allocated == freed) passed++;
  else {
    failed++;
    printf("FAIL: %zu blocks allocated, %zu freed\n", allocated, freed);
  }
  printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
