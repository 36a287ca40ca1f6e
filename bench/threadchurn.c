/* threadchurn: server-style churn with short-lived threads.
 *
 *   threadchurn ROUNDS [THREADS=4] [SLOTS=4000] [OPS=20000] [SEED=42]
 *
 * THREADS slot arrays of SLOTS live objects each (sizes skewed small). Every round starts
 * THREADS fresh threads; thread i takes over slot array (i + round) % THREADS, does OPS random
 * replacements in it (check and free the old object, allocate and fill a new one) and exits.
 * So every round frees, in a new thread, objects that threads which have since exited
 * allocated (their memory is abandoned and must be reclaimed), and creates and ends THREADS
 * threads under load. Finally the main thread frees everything.
 * Exit status 0 on success, 2 on bad arguments, 1 if malloc returned NULL or a block lost its
 * contents.
 */
#include "bench.h"

#include <pthread.h>

typedef struct slot_s {
  unsigned char* p;
  uint32_t size;
  uint32_t id;
} slot_t;

typedef struct arr_s {
  slot_t* slots;
  uint64_t next_id;
} arr_t;

typedef struct job_s {
  pthread_t thread;
  arr_t* arr;
  uint64_t ops;
  uint64_t seed;
  uint64_t checksum;
  int failed;
} job_t;

static size_t nslots;

static int fill(slot_t* s, uint64_t id, size_t sz) {
  unsigned char* p = malloc(sz);
  if (p == NULL) return 1;
  unsigned char t = bench_tag(id);
  if (sz <= 512) {
    memset(p, t, sz);
  } else {
    for (size_t off = 0; off < sz; off += 4096) p[off] = t;
    p[sz - 1] = t;
  }
  s->p = p;
  s->size = (uint32_t)sz;
  s->id = (uint32_t)id;
  return 0;
}

static int drop(slot_t* s, uint64_t* sum) {
  if (s->p == NULL) return 0;
  unsigned char t = bench_tag(s->id);
  int bad = s->p[0] != t || s->p[s->size - 1] != t || (s->size <= 512 && s->p[s->size / 2] != t);
  *sum += s->p[s->size - 1] + s->size;
  free(s->p);
  s->p = NULL;
  return bad;
}

static void* worker(void* arg) {
  job_t* j = arg;
  uint64_t rs = j->seed;
  for (uint64_t k = 0; k < j->ops && !j->failed; k++) {
    slot_t* s = &j->arr->slots[bench_rnd(&rs) % nslots];
    if (drop(s, &j->checksum)) j->failed = 2;
    if (fill(s, j->arr->next_id++, bench_small_size(&rs))) j->failed = 1;
  }
  return NULL;
}

int main(int argc, char** argv) {
  unsigned long long rounds = 0, threads = 4, slots = 4000, ops = 20000, seed = 42;
  if (argc < 2 || !bench_arg(argc, argv, 1, &rounds) || !bench_arg(argc, argv, 2, &threads) ||
      !bench_arg(argc, argv, 3, &slots) || !bench_arg(argc, argv, 4, &ops) ||
      !bench_arg(argc, argv, 5, &seed) || threads == 0 || threads > 1024 || slots == 0) {
    fprintf(stderr, "usage: %s ROUNDS [THREADS=4] [SLOTS=4000] [OPS=20000] [SEED=42]\n",
            argv[0]);
    return 2;
  }
  nslots = slots;
  uint64_t rs = seed;
  arr_t* arrs = calloc(threads, sizeof(arr_t));
  job_t* jobs = calloc(threads, sizeof(job_t));
  if (arrs == NULL || jobs == NULL) BENCH_FAIL("threadchurn: malloc returned NULL");
  for (size_t a = 0; a < threads; a++) {
    arrs[a].slots = calloc(slots, sizeof(slot_t));
    if (arrs[a].slots == NULL) BENCH_FAIL("threadchurn: malloc returned NULL");
    for (size_t i = 0; i < slots; i++) {
      if (fill(&arrs[a].slots[i], arrs[a].next_id++, bench_small_size(&rs)))
        BENCH_FAIL("threadchurn: malloc returned NULL");
    }
  }
  uint64_t checksum = 0;
  for (unsigned long long r = 0; r < rounds; r++) {
    for (size_t i = 0; i < threads; i++) {
      jobs[i] = (job_t){.arr = &arrs[(i + r) % threads], .ops = ops,
                        .seed = seed ^ (r * 0x10001ULL + i * 0x9E37ULL + 1)};
      if (pthread_create(&jobs[i].thread, NULL, worker, &jobs[i]) != 0)
        BENCH_FAIL("threadchurn: pthread_create failed");
    }
    for (size_t i = 0; i < threads; i++) {
      pthread_join(jobs[i].thread, NULL);
      checksum += jobs[i].checksum;
      if (jobs[i].failed)
        BENCH_FAIL("threadchurn: %s", jobs[i].failed == 1 ? "malloc returned NULL"
                                                          : "a block was corrupted");
    }
  }
  for (size_t a = 0; a < threads; a++) {
    for (size_t i = 0; i < slots; i++) {
      if (drop(&arrs[a].slots[i], &checksum)) BENCH_FAIL("threadchurn: a block was corrupted");
    }
    free(arrs[a].slots);
  }
  free(arrs);
  free(jobs);
  printf("threadchurn rounds=%llu threads=%llu slots=%llu ops=%llu checksum=%llu malloc=%s\n",
         rounds, threads, slots, ops, (unsigned long long)checksum, bench_malloc_provider());
  return 0;
}
