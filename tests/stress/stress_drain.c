/* stress_drain: owners that idle while other threads free their blocks, with the drainer of
 * idle heaps running all the time.
 *
 * O owner threads repeat: allocate a batch of blocks (8 B .. 96 KiB, skewed small, so pages
 * fill up and go to the full queue), write a pattern into each, keep a few of them live across
 * rounds, hand the rest to the freer threads, and then idle (sleep) until the freers are done
 * with the batch. F freer threads verify each handed block and free it (remote frees into the
 * owner's full pages, through its delayed list). A collector thread calls mi_collect(true) in a
 * loop, which drains idle heaps at once, so that drains race with owners waking up (entering
 * slow paths, freeing their kept blocks locally into full pages) and with remote frees.
 * Meanwhile a churner starts short-lived threads one after another, each of which allocates,
 * frees most of it, and ends with some blocks live (the churner checks and frees them), so
 * that threads join and leave the drainer's list while it walks it and drains them.
 * Every kept block is verified before the owner frees it; at the end every count must balance.
 *
 * usage: stress_drain [owners=3] [freers=2] [rounds=200] [batch=3000] [seed=1]
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

#define MAX_OWNERS 16
#define MAX_FREERS 16
#define KEEP_SLOTS 256

struct item {
  unsigned char* p;
  size_t size;
};

struct owner {
  int id;
  uint64_t rng;
  struct item* batch; /* handed to the freers: [0, count) */
  size_t count;
  _Atomic(size_t) next;    /* the next item a freer takes */
  _Atomic(size_t) done;    /* items freed by freers this round */
  _Atomic(int) round;      /* published round (a freer may take items of it) */
  struct item keep[KEEP_SLOTS];
  size_t allocated, freed_local, bad;
};

static struct owner owners[MAX_OWNERS];
static int n_owners, n_freers, n_rounds;
static size_t batch_size;
static _Atomic(bool) stop_collector;
static _Atomic(size_t) remote_freed, remote_bad;

static size_t block_size(uint64_t* rng) {
  uint64_t r = rng_next(rng);
  if (r % 100 < 85) return 8 + (r >> 8) % 500;
  if (r % 100 < 98) return 512 + (r >> 8) % 8000;
  return 8192 + (r >> 8) % (96 * 1024 - 8192);
}

static unsigned char tag(const struct item* it) {
  return (unsigned char)(((uintptr_t)it->p >> 4) ^ it->size ^ 0x5A) | 1;
}

static void fill(struct item* it) {
  unsigned char t = tag(it);
  it->p[0] = t;
  it->p[it->size / 2] = t;
  it->p[it->size - 1] = t;
}

static bool intact(const struct item* it) {
  unsigned char t = tag(it);
  return it->p[0] == t && it->p[it->size / 2] == t && it->p[it->size - 1] == t;
}

static void sleep_us(long us) {
  struct timespec ts = {0, us * 1000};
  nanosleep(&ts, NULL);
}

static void* owner_main(void* arg) {
  struct owner* o = arg;
  for (int round = 1; round <= n_rounds; round++) {
    for (size_t i = 0; i < o->count; i++) {
      struct item it = {NULL, block_size(&o->rng)};
      it.p = mi_malloc(it.size);
      if (it.p == NULL) {
        o->bad++;
        it.size = 0;
      } else {
        fill(&it);
        o->allocated++;
      }
      /* Now and then a block replaces one kept from earlier rounds: freed locally, perhaps
       * into a full page that a drain is looking at. */
      size_t k = (size_t)(rng_next(&o->rng) % (KEEP_SLOTS * 8));
      if (k < KEEP_SLOTS && it.p != NULL) {
        struct item old = o->keep[k];
        if (old.p != NULL) {
          if (!intact(&old)) o->bad++;
          mi_free(old.p);
          o->freed_local++;
        }
        o->keep[k] = it;
        it = (struct item){NULL, 0};
      }
      o->batch[i] = it;
    }
    atomic_store(&o->done, 0);
    atomic_store(&o->next, 0);
    atomic_store(&o->round, round); /* publish */
    /* idle until the freers are through, and a little longer: the heap's delayed list waits
     * unread, and the collector drains the pages the freers emptied */
    while (atomic_load(&o->done) < o->count) sleep_us(200);
    sleep_us(500);
  }
  for (size_t k = 0; k < KEEP_SLOTS; k++) {
    if (o->keep[k].p == NULL) continue;
    if (!intact(&o->keep[k])) o->bad++;
    mi_free(o->keep[k].p);
    o->freed_local++;
  }
  atomic_store(&o->round, -1);
  return NULL;
}

static void* freer_main(void* arg) {
  int id = (int)(intptr_t)arg;
  for (;;) {
    bool all_finished = true, worked = false;
    for (int j = 0; j < n_owners; j++) {
      struct owner* o = &owners[(j + id) % n_owners];
      int round = atomic_load(&o->round);
      if (round >= 0) all_finished = false;
      if (round <= 0) continue;
      size_t i;
      while ((i = atomic_fetch_add(&o->next, 1)) < o->count) {
        struct item* it = &o->batch[i];
        if (it->p != NULL) {
          if (!intact(it)) atomic_fetch_add(&remote_bad, 1);
          mi_free(it->p);
          atomic_fetch_add(&remote_freed, 1);
        }
        atomic_fetch_add(&o->done, 1);
        worked = true;
      }
    }
    if (all_finished) break;
    if (!worked) sleep_us(100);
  }
  return NULL;
}

#define CHURN_BLOCKS 200
#define CHURN_LEFT 16

struct churn_job {
  uint64_t rng;
  struct item left[CHURN_LEFT]; /* live when the thread ends */
  size_t allocated;
};

static void* churn_thread_main(void* arg) {
  struct churn_job* job = arg;
  struct item items[CHURN_BLOCKS];
  for (size_t i = 0; i < CHURN_BLOCKS; i++) {
    items[i].size = block_size(&job->rng);
    items[i].p = mi_malloc(items[i].size);
    if (items[i].p == NULL) { /* counted as a failure; nothing is left live */
      while (i > 0) mi_free(items[--i].p);
      return NULL;
    }
    job->allocated++;
    fill(&items[i]);
  }
  for (size_t i = 0; i < CHURN_BLOCKS; i++) {
    if (i < CHURN_LEFT) job->left[i] = items[i];
    else mi_free(items[i].p);
  }
  return NULL;
}

static _Atomic(size_t) churn_threads, churn_bad;

static void* churner_main(void* arg) {
  (void)arg;
  uint64_t rng = 0x5eed;
  while (!atomic_load(&stop_collector)) {
    struct churn_job job = {.rng = rng_next(&rng)};
    pthread_t t;
    if (pthread_create(&t, NULL, churn_thread_main, &job) != 0) break;
    pthread_join(t, NULL);
    if (job.allocated != CHURN_BLOCKS) { /* (a malloc failed: `left` was never filled) */
      atomic_fetch_add(&churn_bad, 1);
      continue;
    }
    for (size_t i = 0; i < CHURN_LEFT; i++) {
      if (!intact(&job.left[i])) atomic_fetch_add(&churn_bad, 1);
      mi_free(job.left[i].p);
    }
    atomic_fetch_add(&churn_threads, 1);
  }
  return NULL;
}

static void* collector_main(void* arg) {
  (void)arg;
  size_t n = 0;
  while (!atomic_load(&stop_collector)) {
    mi_collect(true); /* drains every idle heap now */
    if (++n % 16 == 0) mi_stats_merge();
    sleep_us(300);
  }
  return NULL;
}

int main(int argc, char** argv) {
  n_owners = argc > 1 ? atoi(argv[1]) : 3;
  n_freers = argc > 2 ? atoi(argv[2]) : 2;
  n_rounds = argc > 3 ? atoi(argv[3]) : 200;
  batch_size = argc > 4 ? (size_t)strtoul(argv[4], NULL, 10) : 3000;
  uint64_t seed = argc > 5 ? strtoull(argv[5], NULL, 10) : 1;
  if (n_owners < 1 || n_owners > MAX_OWNERS || n_freers < 1 || n_freers > MAX_FREERS ||
      n_rounds < 1 || batch_size < 1) {
    fprintf(stderr, "usage: %s [owners 1..%d] [freers 1..%d] [rounds] [batch] [seed]\n", argv[0],
            MAX_OWNERS, MAX_FREERS);
    return 2;
  }
  pthread_t ot[MAX_OWNERS], ft[MAX_FREERS], ct;
  for (int i = 0; i < n_owners; i++) {
    owners[i].id = i;
    owners[i].rng = seed * 0x9E3779B97F4A7C15ull + (uint64_t)i * 7919 + 1;
    owners[i].count = batch_size;
    owners[i].batch = calloc(batch_size, sizeof(struct item));
    if (owners[i].batch == NULL) return 1;
  }
  pthread_t churner;
  pthread_create(&ct, NULL, collector_main, NULL);
  pthread_create(&churner, NULL, churner_main, NULL);
  for (int i = 0; i < n_freers; i++) pthread_create(&ft[i], NULL, freer_main, (void*)(intptr_t)i);
  for (int i = 0; i < n_owners; i++) pthread_create(&ot[i], NULL, owner_main, &owners[i]);
  for (int i = 0; i < n_owners; i++) pthread_join(ot[i], NULL);
  for (int i = 0; i < n_freers; i++) pthread_join(ft[i], NULL);
  atomic_store(&stop_collector, true);
  pthread_join(ct, NULL);
  pthread_join(churner, NULL);

  int passed = 0, failed = 0;
  size_t allocated = 0, freed_local = 0, bad = 0;
  for (int i = 0; i < n_owners; i++) {
    allocated += owners[i].allocated;
    freed_local += owners[i].freed_local;
    bad += owners[i].bad;
    free(owners[i].batch);
  }
  size_t freed = freed_local + atomic_load(&remote_freed);
  printf("stress_drain: %d owners, %d freers, %d rounds of %zu: %zu allocated, %zu freed "
         "(%zu by their owner)\n",
         n_owners, n_freers, n_rounds, batch_size, allocated, freed, freed_local);
  if (bad == 0 && atomic_load(&remote_bad) == 0) passed++;
  else {
    failed++;
    printf("FAIL: %zu blocks lost their contents or failed to allocate (%zu seen by freers)\n",
           bad + atomic_load(&remote_bad), atomic_load(&remote_bad));
  }
  if (allocated == freed) passed++;
  else {
    failed++;
    printf("FAIL: %zu blocks allocated but %zu freed\n", allocated, freed);
  }
  printf("stress_drain: %zu short-lived threads came and went during the drains\n",
         atomic_load(&churn_threads));
  if (atomic_load(&churn_bad) == 0 && atomic_load(&churn_threads) > 0) passed++;
  else {
    failed++;
    printf("FAIL: %zu blocks of short-lived threads lost their contents or failed to allocate "
           "(%zu threads ran)\n", atomic_load(&churn_bad), atomic_load(&churn_threads));
  }
  mi_collect(true);
  printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
