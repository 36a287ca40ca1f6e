/* larson: a larson-style server, where threads come and go while objects outlive them.
 *
 *   larson GENERATIONS [THREADS=4] [SLOTS=1000] [OPS=20000] [MIN=16] [MAX=1024] [SEED=42]
 *
 * THREADS lanes, each with an array of SLOTS live objects of MIN..MAX bytes (uniform), run at
 * the same time. A lane's thread does OPS random replacements in its array (check and free the
 * old object, allocate and fill a new one), then starts a fresh thread that inherits the array
 * and exits; after GENERATIONS threads the lane is done. So the lanes are never in step: a
 * thread starts or ends somewhere while the others are busy, and nearly every free is of an
 * object that an earlier thread, now gone, allocated. A thread joins the one that started it,
 * and the main thread joins the last of each lane, then frees what is left.
 * Every lane draws from its own seeded generator (lane and generation), so the run is the same
 * whatever the scheduling, and so is the checksum.
 * Exit status 0 on success, 2 on bad arguments, 1 if malloc returned NULL, a block lost its
 * contents or a thread could not be started.
 */
#include "bench.h"

#include <pthread.h>

typedef struct obj_s {
  unsigned char* p;
  uint32_t size;
  uint32_t id;
} obj_t;

typedef struct lane_s {
  obj_t* objs;
  uint64_t next_id;
  uint64_t checksum;
  uint64_t generation;  /* of the thread that runs the lane now */
  pthread_t prev;       /* the thread that started the current one, to be joined by it */
  int has_prev;
  int failed;           /* 1: malloc returned NULL, 2: corrupted, 3: pthread_create failed */
  size_t index;
} lane_t;

static size_t nslots, min_size, max_size;
static uint64_t generations, ops, seed;

static pthread_mutex_t done_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t done_cond = PTHREAD_COND_INITIALIZER;
static size_t lanes_done;
static pthread_t* last_thread; /* per lane: the final thread, for main to join */

static int fill(obj_t* o, uint64_t id, size_t sz) {
  unsigned char* p = malloc(sz);
  if (p == NULL) return 1;
  unsigned char t = bench_tag(id);
  size_t head = sz < 64 ? sz : 64;
  memset(p, t, head);
  p[sz / 2] = t;
  p[sz - 1] = t;
  o->p = p;
  o->size = (uint32_t)sz;
  o->id = (uint32_t)id;
  return 0;
}

static int drop(obj_t* o, uint64_t* sum) {
  if (o->p == NULL) return 0;
  unsigned char t = bench_tag(o->id);
  const unsigned char* p = o->p;
  size_t sz = o->size;
  int bad = p[0] != t || p[sz / 2] != t || p[sz - 1] != t || p[(sz < 64 ? sz : 64) - 1] != t;
  *sum += (uint64_t)sz * 31 + o->id;
  free(o->p);
  o->p = NULL;
  return bad;
}

static void* worker(void* arg) {
  lane_t* l = arg;
  if (l->has_prev) {
    pthread_join(l->prev, NULL);
    l->has_prev = 0;
  }
  uint64_t rs = seed ^ (l->index * 0x9E3779B97F4A7C15ULL) ^ (l->generation * 0xC2B2AE3D27D4EB4FULL);
  for (uint64_t k = 0; k < ops && !l->failed; k++) {
    obj_t* o = &l->objs[bench_rnd(&rs) % nslots];
    if (drop(o, &l->checksum)) l->failed = 2;
    if (fill(o, l->next_id++, (size_t)bench_range(&rs, min_size, max_size))) l->failed = 1;
  }
  l->generation++;
  if (l->generation < generations && !l->failed) {
    /* hand the array to a fresh thread, which joins this one */
    l->prev = pthread_self();
    l->has_prev = 1;
    pthread_t next;
    if (pthread_create(&next, NULL, worker, l) == 0) return NULL;
    l->has_prev = 0;
    l->failed = 3;
  }
  pthread_mutex_lock(&done_lock);
  last_thread[l->index] = pthread_self();
  lanes_done++;
  pthread_cond_signal(&done_cond);
  pthread_mutex_unlock(&done_lock);
  return NULL;
}

int main(int argc, char** argv) {
  unsigned long long gens = 0, threads = 4, slots = 1000, nops = 20000, lo = 16, hi = 1024,
                     sd = 42;
  if (argc < 2 || !bench_arg(argc, argv, 1, &gens) || !bench_arg(argc, argv, 2, &threads) ||
      !bench_arg(argc, argv, 3, &slots) || !bench_arg(argc, argv, 4, &nops) ||
      !bench_arg(argc, argv, 5, &lo) || !bench_arg(argc, argv, 6, &hi) ||
      !bench_arg(argc, argv, 7, &sd) || gens == 0 || threads == 0 || threads > 1024 ||
      slots == 0 || lo < 1 || lo > hi || hi > (1ULL << 30)) {
    fprintf(stderr,
            "usage: %s GENERATIONS [THREADS=4] [SLOTS=1000] [OPS=20000] [MIN=16] [MAX=1024] "
            "[SEED=42]\n",
            argv[0]);
    return 2;
  }
  nslots = slots;
  min_size = lo;
  max_size = hi;
  generations = gens;
  ops = nops;
  seed = sd;
  lane_t* lanes = calloc(threads, sizeof(lane_t));
  last_thread = calloc(threads, sizeof(pthread_t));
  if (lanes == NULL || last_thread == NULL) BENCH_FAIL("larson: malloc returned NULL");
  uint64_t rs = seed;
  for (size_t i = 0; i < threads; i++) {
    lanes[i].index = i;
    lanes[i].objs = calloc(slots, sizeof(obj_t));
    if (lanes[i].objs == NULL) BENCH_FAIL("larson: malloc returned NULL");
    for (size_t s = 0; s < slots; s++) {
      if (fill(&lanes[i].objs[s], lanes[i].next_id++, (size_t)bench_range(&rs, lo, hi)))
        BENCH_FAIL("larson: malloc returned NULL");
    }
  }
  for (size_t i = 0; i < threads; i++) {
    pthread_t t;
    if (pthread_create(&t, NULL, worker, &lanes[i]) != 0)
      BENCH_FAIL("larson: pthread_create failed");
  }
  pthread_mutex_lock(&done_lock);
  while (lanes_done < threads) pthread_cond_wait(&done_cond, &done_lock);
  pthread_mutex_unlock(&done_lock);
  uint64_t checksum = 0;
  static const char* const why[] = {"", "malloc returned NULL", "a block was corrupted",
                                    "pthread_create failed"};
  for (size_t i = 0; i < threads; i++) {
    pthread_join(last_thread[i], NULL);
    if (lanes[i].failed) BENCH_FAIL("larson: %s", why[lanes[i].failed]);
    checksum += lanes[i].checksum;
    for (size_t s = 0; s < slots; s++) {
      if (drop(&lanes[i].objs[s], &checksum)) BENCH_FAIL("larson: a block was corrupted");
    }
    free(lanes[i].objs);
  }
  free(lanes);
  free(last_thread);
  printf("larson generations=%llu threads=%llu slots=%llu ops=%llu sizes=%llu-%llu "
         "checksum=%llu malloc=%s\n",
         gens, threads, slots, nops, lo, hi, (unsigned long long)checksum,
         bench_malloc_provider());
  return 0;
}
