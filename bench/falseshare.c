/* falseshare: threads allocate small objects and write them hard (cache-line effects).
 *
 *   falseshare ITERATIONS [THREADS=2] [WRITES=64] [active|passive] [SEED=42]
 *
 * Each thread, ITERATIONS times: allocates a small object (8..64 bytes), writes every byte of
 * it WRITES times, checks it and frees it. An allocator that hands two threads objects in the
 * same 64-byte cache line makes those writes fight over the line (false sharing).
 *
 * passive: the main thread first allocates 8 small objects per thread back to back (so they
 * share cache lines) and gives thread i the objects i, i+THREADS, ...; each thread frees
 * those first (remote frees) and then runs as above, with the same sizes. An allocator that
 * reuses a remotely freed block in the thread that freed it lets the threads write into
 * neighbouring blocks.
 * Exit status 0 on success, 2 on bad arguments, 1 if malloc returned NULL or a block lost its
 * contents.
 */
#include "bench.h"

#include <pthread.h>

#define GIFTS 8

typedef struct job_s {
  pthread_t thread;
  int id;
  uint64_t iters;
  uint64_t writes;
  uint64_t seed;
  unsigned char* gifts[GIFTS];
  uint64_t checksum;
  int failed;
} job_t;

static void* worker(void* arg) {
  job_t* j = arg;
  for (int g = 0; g < GIFTS; g++) {
    if (j->gifts[g] != NULL) {
      if (j->gifts[g][0] != (unsigned char)(j->id + g)) j->failed = 2;
      free(j->gifts[g]);
    }
  }
  uint64_t rs = j->seed;
  uint64_t sum = 0;
  for (uint64_t i = 0; i < j->iters && !j->failed; i++) {
    size_t sz = 8 * (size_t)bench_range(&rs, 1, 8);
    volatile unsigned char* p = malloc(sz);
    if (p == NULL) {
      j->failed = 1;
      break;
    }
    for (size_t b = 0; b < sz; b++) p[b] = (unsigned char)i;
    for (uint64_t w = 1; w < j->writes; w++) {
      for (size_t b = 0; b < sz; b++) p[b] = (unsigned char)(p[b] + 1);
    }
    unsigned char want = (unsigned char)(i + j->writes - 1);
    if (p[0] != want || p[sz - 1] != want) j->failed = 2;
    sum += p[sz - 1];
    free((void*)p);
  }
  j->checksum = sum;
  return NULL;
}

int main(int argc, char** argv) {
  unsigned long long iters = 0, threads = 2, writes = 64, seed = 42;
  const char* mode = argc > 4 ? argv[4] : "active";
  int passive = strcmp(mode, "passive") == 0;
  if (argc < 2 || !bench_arg(argc, argv, 1, &iters) || !bench_arg(argc, argv, 2, &threads) ||
      !bench_arg(argc, argv, 3, &writes) || !bench_arg(argc, argv, 5, &seed) || threads == 0 ||
      threads > 1024 || writes == 0 || (!passive && strcmp(mode, "active") != 0)) {
    fprintf(stderr, "usage: %s ITERATIONS [THREADS=2] [WRITES=64] [active|passive] [SEED=42]\n",
            argv[0]);
    return 2;
  }
  job_t* jobs = calloc(threads, sizeof(job_t));
  if (jobs == NULL) BENCH_FAIL("falseshare: malloc returned NULL");
  for (size_t t = 0; t < threads; t++) {
    jobs[t].id = (int)t;
    jobs[t].iters = iters;
    jobs[t].writes = writes;
    jobs[t].seed = seed * 7919ULL + t;
  }
  if (passive) {
    uint64_t rs = seed;
    for (int g = 0; g < GIFTS; g++) {
      for (size_t t = 0; t < threads; t++) {
        size_t sz = 8 * (size_t)bench_range(&rs, 1, 8);
        unsigned char* p = malloc(sz);
        if (p == NULL) BENCH_FAIL("falseshare: malloc returned NULL");
        memset(p, (unsigned char)(t + (size_t)g), sz);
        jobs[t].gifts[g] = p;
      }
    }
  }
  for (size_t t = 0; t < threads; t++) {
    if (pthread_create(&jobs[t].thread, NULL, worker, &jobs[t]) != 0)
      BENCH_FAIL("falseshare: pthread_create failed");
  }
  uint64_t checksum = 0;
  for (size_t t = 0; t < threads; t++) {
    pthread_join(jobs[t].thread, NULL);
    checksum += jobs[t].checksum;
    if (jobs[t].failed)
      BENCH_FAIL("falseshare: %s",
                 jobs[t].failed == 1 ? "malloc returned NULL" : "a block was corrupted");
  }
  free(jobs);
  printf("falseshare mode=%s iterations=%llu threads=%llu writes=%llu checksum=%llu malloc=%s\n",
         mode, iters, threads, writes, (unsigned long long)checksum, bench_malloc_provider());
  return 0;
}
