/* prodcons: one thread allocates, another frees; every free is a remote free.
 *
 *   prodcons ITEMS [PAIRS=1] [SEED=42]
 *
 * PAIRS producer/consumer pairs. Each producer allocates ITEMS/PAIRS objects (sizes 24..1024
 * bytes, skewed small), writes a header and fills the block, and passes it through a bounded
 * single-producer single-consumer ring (1024 entries) to its consumer, which checks the block
 * and frees it. A full or empty ring yields the CPU, so the pair also runs on one core.
 * Exit status 0 on success, 2 on bad arguments, 1 if malloc returned NULL or a block lost its
 * contents.
 */
#include "bench.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#define RING 1024

typedef struct msg_s {
  uint64_t seq;
  uint32_t size;
  uint32_t pad;
} msg_t;

typedef struct pair_s {
  _Alignas(64) _Atomic(uint64_t) head; /* consumer position */
  _Alignas(64) _Atomic(uint64_t) tail; /* producer position */
  _Alignas(64) msg_t* ring[RING];
  uint64_t items;
  uint64_t seed;
  uint64_t checksum;
  int failed;
  pthread_t prod, cons;
} pair_t;

static size_t pick(uint64_t* s) {
  uint64_t r = bench_rnd(s);
  if (r % 8 != 0) return 24 + (size_t)((r >> 8) % 105);  /* 24..128 */
  return 129 + (size_t)((r >> 8) % (1024 - 129 + 1));    /* 129..1024 */
}

static void* producer(void* arg) {
  pair_t* p = arg;
  uint64_t rs = p->seed;
  for (uint64_t i = 0; i < p->items; i++) {
    size_t sz = pick(&rs);
    msg_t* m = malloc(sz);
    if (m == NULL) {
      p->failed = 1;
      sz = 0;
    } else {
      m->seq = i;
      m->size = (uint32_t)sz;
      memset((char*)m + sizeof(msg_t), bench_tag(i), sz - sizeof(msg_t));
    }
    uint64_t t = atomic_load_explicit(&p->tail, memory_order_relaxed);
    while (t - atomic_load_explicit(&p->head, memory_order_acquire) >= RING) sched_yield();
    p->ring[t % RING] = m;
    atomic_store_explicit(&p->tail, t + 1, memory_order_release);
  }
  return NULL;
}

static void* consumer(void* arg) {
  pair_t* p = arg;
  uint64_t sum = 0;
  for (uint64_t i = 0; i < p->items; i++) {
    uint64_t h = atomic_load_explicit(&p->head, memory_order_relaxed);
    while (atomic_load_explicit(&p->tail, memory_order_acquire) == h) sched_yield();
    msg_t* m = p->ring[h % RING];
    atomic_store_explicit(&p->head, h + 1, memory_order_release);
    if (m == NULL) continue; /* the producer failed */
    unsigned char* b = (unsigned char*)m;
    if (m->seq != i || m->size < 24 || m->size > 1024 || b[sizeof(msg_t)] != bench_tag(i) ||
        b[m->size - 1] != bench_tag(i)) {
      p->failed = 2;
    }
    sum += m->size + b[m->size - 1];
    free(m);
  }
  p->checksum = sum;
  return NULL;
}

int main(int argc, char** argv) {
  unsigned long long items = 0, pairs = 1, seed = 42;
  if (argc < 2 || !bench_arg(argc, argv, 1, &items) || !bench_arg(argc, argv, 2, &pairs) ||
      !bench_arg(argc, argv, 3, &seed) || pairs == 0 || pairs > 256) {
    fprintf(stderr, "usage: %s ITEMS [PAIRS=1] [SEED=42]\n", argv[0]);
    return 2;
  }
  pair_t* ps = aligned_alloc(64, sizeof(pair_t) * pairs);
  if (ps == NULL) BENCH_FAIL("prodcons: malloc returned NULL");
  memset(ps, 0, sizeof(pair_t) * pairs);
  for (unsigned long long k = 0; k < pairs; k++) {
    ps[k].items = items / pairs + (k < items % pairs ? 1 : 0);
    ps[k].seed = seed * 1000003ULL + k;
    if (pthread_create(&ps[k].cons, NULL, consumer, &ps[k]) != 0 ||
        pthread_create(&ps[k].prod, NULL, producer, &ps[k]) != 0) {
      BENCH_FAIL("prodcons: pthread_create failed");
    }
  }
  uint64_t checksum = 0;
  int failed = 0;
  for (unsigned long long k = 0; k < pairs; k++) {
    pthread_join(ps[k].prod, NULL);
    pthread_join(ps[k].cons, NULL);
    checksum += ps[k].checksum;
    if (ps[k].failed) failed = ps[k].failed;
  }
  free(ps);
  if (failed) BENCH_FAIL("prodcons: %s", failed == 1 ? "malloc returned NULL" : "a block was corrupted");
  printf("prodcons items=%llu pairs=%llu checksum=%llu malloc=%s\n", items, pairs,
         (unsigned long long)checksum, bench_malloc_provider());
  return 0;
}
