/* churn: a random working set of live objects, replaced at random.
 *
 *   churn OPERATIONS [THREADS] [LIVE] [SEED]
 *
 * Each thread owns LIVE/THREADS slots (LIVE defaults to 100000, THREADS to 1, SEED to 42) and
 * does OPERATIONS/THREADS replacements: pick a slot at random, free its object (after checking
 * the tag bytes written when it was allocated), allocate a new one and write it. Sizes are
 * skewed small: 90% are 8..256 bytes, 9% 257 bytes..8 KiB, 1% 8..64 KiB.
 * The slots are filled first, so the live set stays at its full size for the whole run.
 *
 * With more than one thread, one replacement in 16 goes through a shared exchange array
 * instead: the new object is swapped into a random shared slot and the object that comes out
 * (most often allocated by another thread) is freed here, so cross-thread frees are exercised.
 *
 * Only plain malloc/free are called, so any allocator can be put under it with LD_PRELOAD.
 * It prints one line with the totals and which object provides malloc. Exit status 0 on
 * success, 2 on bad arguments, 1 if malloc returned NULL or a block lost its contents.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXCHANGE_SLOTS 1024
#define EXCHANGE_EVERY 16

typedef struct obj_s {
  unsigned char* p;
  uint32_t size;
} obj_t;

typedef struct worker_s {
  pthread_t thread;
  int id;
  uint64_t ops;
  size_t live;
  uint64_t seed;
  /* results */
  uint64_t bytes_allocated;
  uint64_t checksum;
  int failed; /* 1: NULL from malloc, 2: corrupted block */
} worker_t;

static _Atomic(unsigned char*) exchange[EXCHANGE_SLOTS];
static int use_exchange;

/* splitmix64: small, fast, and good enough for picking sizes and slots */
static inline uint64_t rnd_next(uint64_t* s) {
  uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

static inline uint32_t pick_size(uint64_t* s) {
  uint64_t r = rnd_next(s);
  uint32_t bucket = (uint32_t)(r % 100);
  uint32_t v = (uint32_t)(r >> 32);
  if (bucket < 90) return 8 + v % (256 - 8 + 1);
  if (bucket < 99) return 257 + v % (8192 - 257 + 1);
  return 8193 + v % (65536 - 8193 + 1);
}

/* The first 4 bytes of every block hold its size, the last byte a tag derived from it; blocks
 * up to 1 KiB are filled completely, larger ones get one write per 4 KiB page. */
static inline unsigned char tag_of(uint32_t size) { return (unsigned char)(size * 131u + 7u); }

static unsigned char* make_obj(uint32_t size, worker_t* w) {
  unsigned char* p = malloc(size);
  if (p == NULL) {
    w->failed = 1;
    return NULL;
  }
  if (size <= 1024) {
    memset(p, (int)(size & 0xFF), size);
  } else {
    for (uint32_t off = 0; off < size; off += 4096) p[off] = (unsigned char)off;
  }
  memcpy(p, &size, sizeof(size));
  p[size - 1] = tag_of(size);
  w->bytes_allocated += size;
  return p;
}

static void drop_obj(unsigned char* p, worker_t* w) {
  if (p == NULL) return;
  uint32_t size;
  memcpy(&size, p, sizeof(size));
  if (size < 8 || size > 65536 || p[size - 1] != tag_of(size)) {
    w->failed = 2;
  } else {
    w->checksum += p[size - 1];
  }
  free(p);
}

static void* worker_main(void* arg) {
  worker_t* w = arg;
  uint64_t rs = w->seed * 0x100000001B3ULL + (uint64_t)w->id * 0x9E3779B97F4A7C15ULL + 1;
  obj_t* slots = calloc(w->live, sizeof(*slots));
  if (slots == NULL) {
    w->failed = 1;
    return NULL;
  }
  for (size_t i = 0; i < w->live && !w->failed; i++) {
    uint32_t sz = pick_size(&rs);
    slots[i].p = make_obj(sz, w);
    slots[i].size = sz;
  }
  for (uint64_t op = 0; op < w->ops && !w->failed; op++) {
    uint64_t r = rnd_next(&rs);
    uint32_t sz = pick_size(&rs);
    if (use_exchange && (r & (EXCHANGE_EVERY - 1)) == 0) {
      unsigned char* p = make_obj(sz, w);
      unsigned char* out = atomic_exchange_explicit(&exchange[(r >> 8) % EXCHANGE_SLOTS], p,
                                                    memory_order_acq_rel);
      drop_obj(out, w);
      continue;
    }
    size_t i = (size_t)((r >> 8) % w->live);
    drop_obj(slots[i].p, w);
    slots[i].p = make_obj(sz, w);
    slots[i].size = sz;
  }
  for (size_t i = 0; i < w->live; i++) drop_obj(slots[i].p, w);
  free(slots);
  return NULL;
}

static const char* malloc_provider(void) {
  Dl_info info;
  void* (*volatile fn)(size_t) = malloc;
  if (dladdr((void*)fn, &info) != 0 && info.dli_fname != NULL) return info.dli_fname;
  return "?";
}

static int parse_u64(const char* s, unsigned long long* out) {
  char* end = NULL;
  *out = strtoull(s, &end, 10);
  return end != s && *end == '\0';
}

int main(int argc, char** argv) {
  unsigned long long ops = 0, threads = 1, live = 100000, seed = 42;
  if (argc < 2 || !parse_u64(argv[1], &ops) || (argc > 2 && !parse_u64(argv[2], &threads)) ||
      (argc > 3 && !parse_u64(argv[3], &live)) || (argc > 4 && !parse_u64(argv[4], &seed)) ||
      threads == 0 || threads > 1024 || live < threads) {
    fprintf(stderr, "usage: %s OPERATIONS [THREADS=1] [LIVE=100000] [SEED=42]\n", argv[0]);
    return 2;
  }
  use_exchange = threads > 1;

  worker_t* ws = calloc(threads, sizeof(*ws));
  if (ws == NULL) return 1;
  for (unsigned long long t = 0; t < threads; t++) {
    ws[t].id = (int)t;
    ws[t].ops = ops / threads + (t < ops % threads ? 1 : 0);
    ws[t].live = live / threads + (t < live % threads ? 1 : 0);
    ws[t].seed = seed;
  }
  if (threads == 1) {
    worker_main(&ws[0]);
  } else {
    for (unsigned long long t = 0; t < threads; t++) {
      if (pthread_create(&ws[t].thread, NULL, worker_main, &ws[t]) != 0) {
        fprintf(stderr, "churn: pthread_create failed\n");
        return 1;
      }
    }
    for (unsigned long long t = 0; t < threads; t++) pthread_join(ws[t].thread, NULL);
  }

  uint64_t bytes = 0, checksum = 0;
  int failed = 0;
  worker_t leftovers = {0};
  for (size_t k = 0; k < EXCHANGE_SLOTS; k++) {
    drop_obj(atomic_exchange(&exchange[k], NULL), &leftovers);
  }
  if (leftovers.failed) failed = leftovers.failed;
  checksum += leftovers.checksum;
  for (unsigned long long t = 0; t < threads; t++) {
    bytes += ws[t].bytes_allocated;
    checksum += ws[t].checksum;
    if (ws[t].failed && !failed) failed = ws[t].failed;
  }
  free(ws);
  if (failed) {
    fprintf(stderr, "churn: %s\n", failed == 1 ? "malloc returned NULL" : "a block was corrupted");
    return 1;
  }
  printf("churn operations=%llu threads=%llu live=%llu seed=%llu allocated_mib=%.1f checksum=%llu "
         "malloc=%s\n",
         ops, threads, live, seed, (double)bytes / (1024.0 * 1024.0), (unsigned long long)checksum,
         malloc_provider());
  return 0;
}
