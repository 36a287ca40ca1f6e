/* stress_remote: most frees are remote. T threads allocate blocks of 8 B .. 1 MiB (skewed
 * small), fill each with a pattern derived from its address and size, and hand most of them
 * to another thread through a mutex-protected ring; the receiving thread verifies the pattern
 * and frees the block. A few blocks stay local for a while and are freed by their owner.
 * At the end every block is freed, the counts must balance, and mi_collect(true) runs.
 *
 * usage: stress_remote [threads=4] [iterations-per-thread=200000] [seed=1]
 * Prints a summary and "N passed, N failed"; exit status 0 only when nothing failed. */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mimalloc.h"
#include "rng.h"

#define MAX_THREADS 64
#define RING_CAP 2048 /* blocks in flight towards one thread */
#define LOCAL_SLOTS 64

struct item {
  void* p;
  size_t size;
};

struct ring {
  pthread_mutex_t lock;
  size_t head, count;
  struct item items[RING_CAP];
};

struct worker {
  int id;
  uint64_t rng;
  size_t allocated, freed_local, freed_remote, bounced, null_allocs, corrupt;
  size_t bytes;
};

static int n_threads = 4;
static long iterations = 200000;
static struct ring rings[MAX_THREADS];
static struct worker workers[MAX_THREADS];
static atomic_int finished;

/* 8 B .. 1 MiB, most of them small. */
static size_t random_size(uint64_t* s) {
  uint64_t r = rng_next(s) % 1000;
  uint64_t v = rng_next(s);
  if (r < 600) return 8 + v % 121;              /* 8 .. 128 */
  if (r < 850) return 129 + v % 896;            /* .. 1 KiB */
  if (r < 950) return 1025 + v % (15 * 1024);   /* .. 16 KiB */
  if (r < 994) return 16385 + v % (112 * 1024); /* .. 128 KiB */
  return 131073 + v % (1024 * 1024 - 131072);   /* .. 1 MiB */
}

static uint64_t block_seed(const void* p, size_t size) {
  uint64_t x =
      (uint64_t)(uintptr_t)p * 0x9E3779B97F4A7C15ull ^ (uint64_t)size * 0xC2B2AE3D27D4EB4Full;
  return x ^ (x >> 31);
}

static void fill(void* p, size_t size) {
  uint64_t seed = block_seed(p, size);
  uint8_t* b = p;
  size_t words = size / 8;
  for (size_t i = 0; i < words; i++) {
    uint64_t w = seed + i * 0xD6E8FEB86659FD93ull;
    memcpy(b + i * 8, &w, 8);
  }
  for (size_t i = words * 8; i < size; i++) b[i] = (uint8_t)(seed >> (i % 8));
}

static bool verify(const void* p, size_t size) {
  uint64_t seed = block_seed(p, size);
  const uint8_t* b = p;
  size_t words = size / 8;
  for (size_t i = 0; i < words; i++) {
    uint64_t w;
    memcpy(&w, b + i * 8, 8);
    if (w != seed + i * 0xD6E8FEB86659FD93ull) return false;
  }
  for (size_t i = words * 8; i < size; i++) {
    if (b[i] != (uint8_t)(seed >> (i % 8))) return false;
  }
  return true;
}

static void release(struct worker* w, void* p, size_t size, bool remote) {
  if (!verify(p, size)) {
    w->corrupt++;
    if (w->corrupt <= 5)
      fprintf(stderr, "thread %d: corrupt block %p (%zu bytes)\n", w->id, p, size);
  }
  mi_free(p);
  if (remote)
    w->freed_remote++;
  else
    w->freed_local++;
}

static bool ring_push(struct ring* r, struct item it) {
  bool ok = false;
  pthread_mutex_lock(&r->lock);
  if (r->count < RING_CAP) {
    r->items[(r->head + r->count) % RING_CAP] = it;
    r->count++;
    ok = true;
  }
  pthread_mutex_unlock(&r->lock);
  return ok;
}

/* Takes everything queued for this thread, then verifies and frees it outside the lock. */
static size_t drain(struct worker* w) {
  static _Thread_local struct item batch[RING_CAP];
  struct ring* r = &rings[w->id];
  size_t n = 0;
  pthread_mutex_lock(&r->lock);
  while (r->count > 0) {
    batch[n++] = r->items[r->head];
    r->head = (r->head + 1) % RING_CAP;
    r->count--;
  }
  pthread_mutex_unlock(&r->lock);
  for (size_t i = 0; i < n; i++) release(w, batch[i].p, batch[i].size, true);
  return n;
}

static void* alloc_block(struct worker* w, size_t size) {
  uint64_t kind = rng_next(&w->rng) % 16;
  void* p;
  if (kind == 0) {
    p = mi_zalloc(size);
    if (p != NULL) {
      const uint8_t* b = p;
      for (size_t i = 0; i < size; i++) {
        if (b[i] != 0) {
          w->corrupt++;
          fprintf(stderr, "thread %d: mi_zalloc(%zu) byte %zu nonzero\n", w->id, size, i);
          break;
        }
      }
    }
  } else if (kind == 1) {
    p = mi_malloc_aligned(size, (size_t)16 << (rng_next(&w->rng) % 9));
  } else {
    p = mi_malloc(size);
  }
  return p;
}

static void* worker_main(void* arg) {
  struct worker* w = arg;
  struct item local[LOCAL_SLOTS];
  memset(local, 0, sizeof(local));
  for (long it = 0; it < iterations; it++) {
    size_t size = random_size(&w->rng);
    void* p = alloc_block(w, size);
    if (p == NULL) {
      w->null_allocs++;
      continue;
    }
    w->allocated++;
    w->bytes += size;
    fill(p, size);
    struct item item = {p, size};
    uint64_t where = rng_next(&w->rng) % 8;
    if (where != 0 && n_threads > 1) { /* 7 in 8 go to another thread */
      int target = (int)(rng_next(&w->rng) % (uint64_t)(n_threads - 1));
      if (target >= w->id) target++;
      if (!ring_push(&rings[target], item)) {
        w->bounced++;
        release(w, p, size, false);
      }
    } else {
      struct item* slot = &local[rng_next(&w->rng) % LOCAL_SLOTS];
      if (slot->p != NULL) release(w, slot->p, slot->size, false);
      *slot = item;
    }
    if ((it & 7) == 0) drain(w);
  }
  for (int i = 0; i < LOCAL_SLOTS; i++) {
    if (local[i].p != NULL) release(w, local[i].p, local[i].size, false);
  }
  atomic_fetch_add(&finished, 1);
  /* Others may still send to us until they finish; after that one last drain empties the ring. */
  while (atomic_load(&finished) < n_threads) {
    if (drain(w) == 0) sched_yield();
  }
  drain(w);
  return NULL;
}

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int main(int argc, char** argv) {
  if (argc > 1) n_threads = atoi(argv[1]);
  if (argc > 2) iterations = atol(argv[2]);
  uint64_t seed = argc > 3 ? strtoull(argv[3], NULL, 0) : 1;
  if (n_threads < 1 || n_threads > MAX_THREADS || iterations < 0) {
    fprintf(stderr, "usage: %s [threads 1..%d] [iterations] [seed]\n", argv[0], MAX_THREADS);
    return 2;
  }
  printf("stress_remote: %d threads, %ld iterations each, seed %llu\n", n_threads, iterations,
         (unsigned long long)seed);
  fflush(stdout);

  double t0 = now_seconds();
  pthread_t tids[MAX_THREADS];
  for (int i = 0; i < n_threads; i++) {
    pthread_mutex_init(&rings[i].lock, NULL);
    workers[i].id = i;
    workers[i].rng = seed * 0x9E3779B97F4A7C15ull + (uint64_t)i * 7919 + 1;
  }
  for (int i = 0; i < n_threads; i++) {
    if (pthread_create(&tids[i], NULL, worker_main, &workers[i]) != 0) {
      fprintf(stderr, "pthread_create failed\n");
      return 1;
    }
  }
  for (int i = 0; i < n_threads; i++) pthread_join(tids[i], NULL);
  double elapsed = now_seconds() - t0;

  size_t allocated = 0, freed_local = 0, freed_remote = 0, bounced = 0, nulls = 0, corrupt = 0;
  size_t bytes = 0, left_in_rings = 0;
  for (int i = 0; i < n_threads; i++) {
    allocated += workers[i].allocated;
    freed_local += workers[i].freed_local;
    freed_remote += workers[i].freed_remote;
    bounced += workers[i].bounced;
    nulls += workers[i].null_allocs;
    corrupt += workers[i].corrupt;
    bytes += workers[i].bytes;
    left_in_rings += rings[i].count;
  }
  mi_collect(true);
  /* the allocator is still usable after the storm */
  void* after = mi_malloc(1000);
  bool usable_after = after != NULL;
  mi_free(after);

  printf(
      "allocated %zu blocks (%.1f MiB), freed %zu remotely and %zu locally (%zu ring-full), "
      "%.2f s\n",
      allocated, (double)bytes / (1024.0 * 1024.0), freed_remote, freed_local, bounced, elapsed);
  int passed = 0, failed = 0;
#define CHECK(cond, what)         \
  do {                            \
    if (cond) {                   \
      passed++;                   \
    } else {                      \
      failed++;                   \
      printf("FAIL: %s\n", what); \
    }                             \
  } while (0)
  CHECK(corrupt == 0, "every block kept its pattern until freed");
  CHECK(nulls == 0, "no allocation failed");
  CHECK(allocated == freed_local + freed_remote && left_in_rings == 0, "every block was freed");
  CHECK(n_threads == 1 || freed_remote > allocated / 2, "most frees were remote");
  CHECK(usable_after, "allocation works after mi_collect(true)");
  printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
