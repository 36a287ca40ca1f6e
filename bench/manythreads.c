/* manythreads: many more threads than cores (oversubscription), with cross-thread frees.
 *
 *   manythreads OPERATIONS [THREADS=16] [LIVE=64000] [SEED=42]
 *
 * THREADS threads (16 or 64 on a 2-core machine: most are preempted at any time, possibly
 * inside the allocator) share OPERATIONS between them. Each owns LIVE/THREADS slots of small
 * objects (16..512 bytes) and replaces one at random per operation. One replacement in 16
 * instead sends the old object to another thread's mailbox (a lock-free stack), and every 64
 * operations a thread empties its own mailbox and frees what it found there (remote frees).
 * Exit status 0 on success, 2 on bad arguments, 1 if malloc returned NULL or a block lost its
 * contents.
 */
#include "bench.h"

#include <pthread.h>
#include <stdatomic.h>

typedef struct obj_s {
  struct obj_s* next; /* mailbox link */
  uint32_t size;
  uint32_t owner;
  uint64_t id;
} obj_t;

typedef struct worker_s {
  _Alignas(64) _Atomic(obj_t*) mailbox;
  pthread_t thread;
  uint32_t id;
  uint64_t ops;
  size_t live;
  uint64_t seed;
  uint64_t checksum;
  int failed;
} worker_t;

static worker_t* workers;
static size_t nthreads;

static obj_t* make(uint64_t id, uint32_t owner, uint64_t* rs) {
  uint32_t sz = (uint32_t)bench_range(rs, 16, 512);
  if (sz < sizeof(obj_t)) sz = sizeof(obj_t);
  obj_t* o = malloc(sz);
  if (o == NULL) return NULL;
  o->next = NULL;
  o->size = sz;
  o->owner = owner;
  o->id = id;
  memset((unsigned char*)o + sizeof(obj_t), bench_tag(id), sz - sizeof(obj_t));
  return o;
}

static int drop(obj_t* o, uint64_t* sum) {
  if (o == NULL) return 0;
  unsigned char* b = (unsigned char*)o;
  int bad = o->size < sizeof(obj_t) || o->size > 512 ||
            (o->size > sizeof(obj_t) && b[o->size - 1] != bench_tag(o->id));
  *sum += o->size + o->owner;
  free(o);
  return bad;
}

static int drain(worker_t* w) {
  obj_t* o = atomic_exchange_explicit(&w->mailbox, NULL, memory_order_acquire);
  int bad = 0;
  while (o != NULL) {
    obj_t* next = o->next;
    bad |= drop(o, &w->checksum);
    o = next;
  }
  return bad;
}

static void* worker_main(void* arg) {
  worker_t* w = arg;
  uint64_t rs = w->seed;
  obj_t** slots = calloc(w->live, sizeof(obj_t*));
  if (slots == NULL) {
    w->failed = 1;
    return NULL;
  }
  uint64_t next_id = (uint64_t)w->id << 40;
  for (size_t i = 0; i < w->live; i++) {
    if ((slots[i] = make(next_id++, w->id, &rs)) == NULL) w->failed = 1;
  }
  for (uint64_t op = 0; op < w->ops && !w->failed; op++) {
    uint64_t r = bench_rnd(&rs);
    size_t i = (size_t)((r >> 8) % w->live);
    obj_t* old = slots[i];
    if ((r & 15) == 0 && nthreads > 1) {
      worker_t* to = &workers[(w->id + 1 + (r >> 40) % (nthreads - 1)) % nthreads];
      old->next = atomic_load_explicit(&to->mailbox, memory_order_relaxed);
      while (!atomic_compare_exchange_weak_explicit(&to->mailbox, &old->next, old,
                                                    memory_order_release,
                                                    memory_order_relaxed)) {
      }
    } else if (drop(old, &w->checksum)) {
      w->failed = 2;
    }
    if ((slots[i] = make(next_id++, w->id, &rs)) == NULL) w->failed = 1;
    if ((op & 63) == 63 && drain(w)) w->failed = 2;
  }
  for (size_t i = 0; i < w->live; i++) {
    if (drop(slots[i], &w->checksum)) w->failed = 2;
  }
  free(slots);
  if (drain(w)) w->failed = 2;
  /* what others send after this point is freed by the main thread after the joins */
  return NULL;
}

int main(int argc, char** argv) {
  unsigned long long ops = 0, threads = 16, live = 64000, seed = 42;
  if (argc < 2 || !bench_arg(argc, argv, 1, &ops) || !bench_arg(argc, argv, 2, &threads) ||
      !bench_arg(argc, argv, 3, &live) || !bench_arg(argc, argv, 4, &seed) || threads == 0 ||
      threads > 1024 || live < threads) {
    fprintf(stderr, "usage: %s OPERATIONS [THREADS=16] [LIVE=64000] [SEED=42]\n", argv[0]);
    return 2;
  }
  nthreads = threads;
  workers = aligned_alloc(64, sizeof(worker_t) * threads);
  if (workers == NULL) BENCH_FAIL("manythreads: malloc returned NULL");
  memset(workers, 0, sizeof(worker_t) * threads);
  for (size_t t = 0; t < threads; t++) {
    workers[t].id = (uint32_t)t;
    workers[t].ops = ops / threads + (t < ops % threads ? 1 : 0);
    workers[t].live = live / threads + (t < live % threads ? 1 : 0);
    workers[t].seed = seed * 0x100000001B3ULL + t;
  }
  for (size_t t = 0; t < threads; t++) {
    if (pthread_create(&workers[t].thread, NULL, worker_main, &workers[t]) != 0)
      BENCH_FAIL("manythreads: pthread_create failed");
  }
  uint64_t checksum = 0;
  int failed = 0;
  for (size_t t = 0; t < threads; t++) pthread_join(workers[t].thread, NULL);
  for (size_t t = 0; t < threads; t++) {
    failed |= drain(&workers[t]); /* whatever arrived after its owner's last drain */
    checksum += workers[t].checksum;
    if (workers[t].failed) failed = workers[t].failed;
  }
  free(workers);
  if (failed) BENCH_FAIL("manythreads: %s", failed == 1 ? "malloc returned NULL" : "a block was corrupted");
  printf("manythreads operations=%llu threads=%llu live=%llu checksum=%llu malloc=%s\n", ops,
         threads, live, (unsigned long long)checksum, bench_malloc_provider());
  return 0;
}
