/* exchange: rounds of short-lived threads that trade blocks through a shared table (the shape of
 * mimalloc's own stress test, written anew for this suite).
 *
 *   exchange ROUNDS [THREADS=32] [SCALE=10] [SEED=42]
 *
 * Every round starts THREADS threads at once and waits for them. Thread t makes
 * 100 * SCALE * (t % 8 + 1) working blocks (some threads work eight times longer than others)
 * and half as many kept blocks, drawn in random order:
 *   - a working block has 1..16 words (a power of two), a kept block 1..64; one block in 100 is
 *     100 times larger, one in 1,000 a thousand times, one in 10,000 ten thousand times (up to
 *     5 MiB); every block comes from calloc, is filled with a pattern, and is checked when freed;
 *   - the working blocks sit in a list the thread grows with realloc; after each block, two
 *     times in three it frees a random one of them, and one time in four it swaps a random one
 *     with a random slot of a table of 1,000 shared by all threads (an atomic exchange), so
 *     blocks are freed by threads other than their maker, often after the maker exited;
 *   - the kept blocks live until the thread's end, when it frees them and its working blocks.
 * Between rounds the main thread frees half of the table (all of it after the last round).
 * Exit status 0 on success, 2 on bad arguments, 1 if an allocation failed or a block lost its
 * contents.
 */
#include "bench.h" /* first: it sets _GNU_SOURCE */

#include <pthread.h>
#include <stdatomic.h>

#define TABLE 1000
static _Atomic(uint64_t*) table[TABLE];
static unsigned long long scale = 10;
static uint64_t seed = 42;
static atomic_int failed;

/* Word i of an n-word block holds (n - i) ^ KEY: the first word gives the length back. */
#define KEY 0x6a09e667f3bcc908ULL

static uint64_t* make(uint64_t* rs, size_t words) {
  uint64_t r = bench_rnd(rs) % 10000;
  if (r == 0)
    words *= 10000;
  else if (r < 10)
    words *= 1000;
  else if (r < 100)
    words *= 100;
  uint64_t* p = calloc(words, sizeof(uint64_t));
  if (p == NULL) {
    atomic_store(&failed, 1);
    return NULL;
  }
  for (size_t i = 0; i < words; i++) p[i] = (uint64_t)(words - i) ^ KEY;
  return p;
}

/* The most words make() hands out: a kept block of 64 words, ten thousand times larger. */
#define MAX_WORDS (64 * 10000)

/* Check a block's pattern and free it (NULL is fine). A first word that no length could give
 * is reported before the check reads past the block. */
static void drop(uint64_t* p) {
  if (p != NULL) {
    size_t words = (size_t)(p[0] ^ KEY);
    if (words == 0 || words > MAX_WORDS) atomic_store(&failed, 2);
    for (size_t i = 0; i < words && words <= MAX_WORDS; i++) {
      if ((p[i] ^ KEY) != words - i) {
        atomic_store(&failed, 2);
        break;
      }
    }
  }
  free(p);
}

static void* worker(void* arg) {
  uint64_t t = (uint64_t)(uintptr_t)arg;
  uint64_t rs = seed ^ ((t + 1) * 0x9E3779B97F4A7C15ULL);
  size_t work_left = (size_t)(100 * scale * (t % 8 + 1)), keep_left = work_left / 2;
  uint64_t** kept = calloc(keep_left + 1, sizeof(uint64_t*));
  uint64_t** work = NULL;
  size_t work_count = 0, work_cap = 0, kept_count = 0;
  if (kept == NULL) {
    atomic_store(&failed, 1);
    return NULL;
  }
  while ((work_left > 0 || keep_left > 0) &&
         atomic_load_explicit(&failed, memory_order_relaxed) == 0) {
    if (keep_left == 0 || (work_left > 0 && bench_rnd(&rs) % 2 == 0)) {
      if (work_count == work_cap) {
        work_cap += 16384;
        uint64_t** grown = realloc(work, work_cap * sizeof(uint64_t*));
        if (grown == NULL) {
          atomic_store(&failed, 1);
          break;
        }
        work = grown;
      }
      work[work_count++] = make(&rs, (size_t)1 << (bench_rnd(&rs) % 5));
      work_left--;
    } else {
      kept[kept_count++] = make(&rs, (size_t)1 << (bench_rnd(&rs) % 7));
      keep_left--;
    }
    if (work_count > 0 && bench_rnd(&rs) % 3 != 0) {
      size_t i = (size_t)(bench_rnd(&rs) % work_count);
      drop(work[i]);
      work[i] = NULL;
    }
    if (work_count > 0 && bench_rnd(&rs) % 4 == 0) {
      size_t i = (size_t)(bench_rnd(&rs) % work_count);
      work[i] = atomic_exchange(&table[bench_rnd(&rs) % TABLE], work[i]);
    }
  }
  for (size_t i = 0; i < kept_count; i++) drop(kept[i]);
  for (size_t i = 0; i < work_count; i++) drop(work[i]);
  free(kept);
  free(work);
  return NULL;
}

int main(int argc, char** argv) {
  unsigned long long rounds = 0, threads = 32, seed_arg = 42;
  if (argc < 2 || !bench_arg(argc, argv, 1, &rounds) || !bench_arg(argc, argv, 2, &threads) ||
      !bench_arg(argc, argv, 3, &scale) || !bench_arg(argc, argv, 4, &seed_arg) || rounds == 0 ||
      threads == 0 || threads > 4096 || scale == 0) {
    fprintf(stderr, "usage: %s ROUNDS [THREADS=32] [SCALE=10] [SEED=42]\n", argv[0]);
    return 2;
  }
  seed = seed_arg;
  pthread_t* ids = calloc(threads, sizeof(pthread_t));
  if (ids == NULL) BENCH_FAIL("exchange: malloc returned NULL");
  uint64_t rs = seed;
  for (unsigned long long r = 0; r < rounds; r++) {
    for (size_t t = 0; t < threads; t++) {
      if (pthread_create(&ids[t], NULL, worker, (void*)(uintptr_t)t) != 0)
        BENCH_FAIL("exchange: pthread_create failed");
    }
    for (size_t t = 0; t < threads; t++) pthread_join(ids[t], NULL);
    if (atomic_load(&failed) != 0) break;
    for (size_t i = 0; i < TABLE; i++) {
      if (r + 1 == rounds || bench_rnd(&rs) % 2 == 0) drop(atomic_exchange(&table[i], NULL));
    }
    seed = bench_rnd(&rs); /* the next round's threads draw other numbers */
  }
  free(ids);
  if (atomic_load(&failed) != 0)
    BENCH_FAIL("exchange: %s",
               atomic_load(&failed) == 1 ? "an allocation failed" : "a block lost its contents");
  printf("exchange rounds=%llu threads=%llu scale=%llu malloc=%s\n", rounds, threads, scale,
         bench_malloc_provider());
  return 0;
}
