/* stress_threads: abandonment and reclamation under thread churn. Waves of short-lived threads
 * each allocate blocks, swap part of them into a shared pool (taking out, verifying and freeing
 * the blocks that earlier -- by now mostly dead -- threads left there), free the rest locally,
 * and exit with their pool blocks still live, so the memory of every dead thread is abandoned
 * and later freed or reused by others. The main thread finally verifies and frees the pool.
 *
 * usage: stress_threads [waves=20] [threads-per-wave=8] [blocks-per-thread=4000] [seed=1]
 * Prints a summary and "N passed, N failed"; exit status 0 only when nothing failed. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mimalloc.h"
#include "rng.h"

#define MAX_THREADS_PER_WAVE 64
#define POOL_SLOTS 8192
#define POOL_LOCKS 64

struct block {
  void* p;
  size_t size;
  uint64_t tag; /* wave*1000+thread of the allocating thread, mixed into the pattern */
};

static struct block pool[POOL_SLOTS];
static pthread_mutex_t pool_locks[POOL_LOCKS];

static int waves = 20, per_wave = 8;
static long blocks_per_thread = 4000;
static uint64_t base_seed = 1;

static atomic_size_t n_allocated, n_freed, n_corrupt, n_null, n_from_dead;
static atomic_int current_wave;

struct thread_arg {
  int wave, index;
};

static size_t random_size(uint64_t* s) {
  uint64_t r = rng_next(s) % 100;
  uint64_t v = rng_next(s);
  if (r < 70) return 1 + v % 256;
  if (r < 95) return 257 + v % 8000;
  if (r < 99) return 8193 + v % (120 * 1024);
  return 128 * 1024 + v % (1024 * 1024);
}

static uint64_t pattern_seed(const struct block* b) {
  uint64_t x =
      (uint64_t)(uintptr_t)b->p ^ (b->tag << 40) ^ (uint64_t)b->size * 0x9E3779B97F4A7C15ull;
  return x ^ (x >> 29);
}

static void fill(const struct block* b) {
  uint64_t seed = pattern_seed(b);
  uint8_t* p = b->p;
  size_t words = b->size / 8;
  for (size_t i = 0; i < words; i++) {
    uint64_t w = seed ^ (i * 0xD6E8FEB86659FD93ull);
    memcpy(p + i * 8, &w, 8);
  }
  for (size_t i = words * 8; i < b->size; i++) p[i] = (uint8_t)(seed >> (i % 8) * 8);
}

static bool verify(const struct block* b) {
  uint64_t seed = pattern_seed(b);
  const uint8_t* p = b->p;
  size_t words = b->size / 8;
  for (size_t i = 0; i < words; i++) {
    uint64_t w;
    memcpy(&w, p + i * 8, 8);
    if (w != (seed ^ (i * 0xD6E8FEB86659FD93ull))) return false;
  }
  for (size_t i = words * 8; i < b->size; i++) {
    if (p[i] != (uint8_t)(seed >> (i % 8) * 8)) return false;
  }
  return true;
}

static void release(const struct block* b) {
  if (!verify(b)) {
    if (atomic_fetch_add(&n_corrupt, 1) < 5) {
      fprintf(stderr, "corrupt block %p (%zu bytes) from wave %llu thread %llu\n", b->p, b->size,
              (unsigned long long)(b->tag / 1000), (unsigned long long)(b->tag % 1000));
    }
  }
  mi_free(b->p);
  atomic_fetch_add(&n_freed, 1);
}

static bool allocate(struct block* b, uint64_t* rng, uint64_t tag) {
  b->size = random_size(rng);
  b->tag = tag;
  b->p = (rng_next(rng) % 8 == 0) ? mi_calloc(1, b->size) : mi_malloc(b->size);
  if (b->p == NULL) {
    atomic_fetch_add(&n_null, 1);
    return false;
  }
  atomic_fetch_add(&n_allocated, 1);
  fill(b);
  return true;
}

static void* thread_main(void* argp) {
  struct thread_arg* arg = argp;
  uint64_t tag = (uint64_t)arg->wave * 1000 + (uint64_t)arg->index;
  uint64_t rng = base_seed * 0x9E3779B97F4A7C15ull + tag * 104729 + 1;
  struct block* mine = mi_calloc((size_t)blocks_per_thread, sizeof(struct block));
  if (mine == NULL) {
    atomic_fetch_add(&n_null, 1);
    return NULL;
  }
  for (long i = 0; i < blocks_per_thread; i++) allocate(&mine[i], &rng, tag);

  for (long i = 0; i < blocks_per_thread; i++) {
    if (mine[i].p == NULL) continue;
    uint64_t what = rng_next(&rng) % 4;
    if (what == 0) { /* swap into the pool; free what an earlier thread left there */
      size_t slot = rng_next(&rng) % POOL_SLOTS;
      pthread_mutex_t* lock = &pool_locks[slot % POOL_LOCKS];
      pthread_mutex_lock(lock);
      struct block old = pool[slot];
      pool[slot] = mine[i];
      pthread_mutex_unlock(lock);
      mine[i].p = NULL;
      if (old.p != NULL) {
        if ((int)(old.tag / 1000) < atomic_load(&current_wave)) atomic_fetch_add(&n_from_dead, 1);
        release(&old);
      }
    } else if (what == 1) { /* free locally and allocate again (reuses, maybe reclaims) */
      release(&mine[i]);
      allocate(&mine[i], &rng, tag);
    }
  }
  for (long i = 0; i < blocks_per_thread; i++) {
    if (mine[i].p != NULL) release(&mine[i]);
  }
  mi_free(mine);
  return NULL; /* blocks left in the pool are now abandoned */
}

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int main(int argc, char** argv) {
  if (argc > 1) waves = atoi(argv[1]);
  if (argc > 2) per_wave = atoi(argv[2]);
  if (argc > 3) blocks_per_thread = atol(argv[3]);
  if (argc > 4) base_seed = strtoull(argv[4], NULL, 0);
  if (waves < 1 || per_wave < 1 || per_wave > MAX_THREADS_PER_WAVE || blocks_per_thread < 1) {
    fprintf(stderr, "usage: %s [waves] [threads-per-wave 1..%d] [blocks-per-thread] [seed]\n",
            argv[0], MAX_THREADS_PER_WAVE);
    return 2;
  }
  printf("stress_threads: %d waves x %d threads, %ld blocks each, seed %llu\n", waves, per_wave,
         blocks_per_thread, (unsigned long long)base_seed);
  fflush(stdout);
  for (int i = 0; i < POOL_LOCKS; i++) pthread_mutex_init(&pool_locks[i], NULL);

  double t0 = now_seconds();
  int create_failures = 0;
  for (int w = 0; w < waves; w++) {
    atomic_store(&current_wave, w);
    pthread_t tids[MAX_THREADS_PER_WAVE];
    struct thread_arg args[MAX_THREADS_PER_WAVE];
    bool started[MAX_THREADS_PER_WAVE];
    for (int t = 0; t < per_wave; t++) {
      args[t].wave = w;
      args[t].index = t;
      started[t] = pthread_create(&tids[t], NULL, thread_main, &args[t]) == 0;
      if (!started[t]) create_failures++;
    }
    for (int t = 0; t < per_wave; t++) {
      if (started[t]) pthread_join(tids[t], NULL);
    }
    /* the main thread also frees a few blocks of the dead threads between waves */
    for (size_t s = (size_t)w; s < POOL_SLOTS; s += 97) {
      if (pool[s].p != NULL) {
        release(&pool[s]);
        pool[s].p = NULL;
      }
    }
  }
  size_t left = 0;
  for (size_t s = 0; s < POOL_SLOTS; s++) {
    if (pool[s].p != NULL) {
      left++;
      release(&pool[s]);
      pool[s].p = NULL;
    }
  }
  mi_collect(true);
  void* after = mi_malloc(4096);
  bool usable_after = after != NULL;
  mi_free(after);
  double elapsed = now_seconds() - t0;

  size_t allocated = atomic_load(&n_allocated), freed = atomic_load(&n_freed);
  printf(
      "allocated %zu, freed %zu (%zu taken from threads of earlier waves, %zu left in the "
      "pool at the end), %.2f s\n",
      allocated, freed, atomic_load(&n_from_dead), left, elapsed);
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
  CHECK(create_failures == 0, "every thread started");
  CHECK(atomic_load(&n_corrupt) == 0, "every block kept its pattern until freed");
  CHECK(atomic_load(&n_null) == 0, "no allocation failed");
  CHECK(allocated == freed, "every block was freed");
  CHECK(waves < 2 || atomic_load(&n_from_dead) > 0, "blocks of dead threads were freed by others");
  CHECK(usable_after, "allocation works after mi_collect(true)");
  printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
