/* large: large and huge blocks, 64 KiB to 64 MiB, allocated and freed in a loop.
 *
 *   large ITERATIONS [LIVE=4] [MAX_MIB=64] [SEED=42]
 *
 * Keeps LIVE blocks alive; each iteration frees a random one (after checking it) and
 * allocates a new one whose size is log-uniform between 64 KiB and MAX_MIB, and writes one
 * byte in every 4 KiB page of it (so an allocator that hands the memory back to the OS and maps
 * it anew pays the page faults again, and one that keeps it pays in resident memory).
 * Exit status 0 on success, 2 on bad arguments, 1 if malloc returned NULL or a block lost its
 * contents.
 */
#include "bench.h"

#include <math.h>

typedef struct blk_s {
  unsigned char* p;
  size_t size;
  uint64_t id;
} blk_t;

static void make(blk_t* b, uint64_t id, size_t size) {
  b->p = malloc(size);
  if (b->p == NULL) BENCH_FAIL("large: malloc(%zu) returned NULL", size);
  b->size = size;
  b->id = id;
  unsigned char t = bench_tag(id);
  /* (the last byte holds the tail mark, even where it starts a 4 KiB page) */
  for (size_t off = 0; off + 1 < size; off += 4096) b->p[off] = (unsigned char)(t + (off >> 12));
  b->p[size - 1] = t;
}

static uint64_t drop(blk_t* b) {
  if (b->p == NULL) return 0;
  unsigned char t = bench_tag(b->id);
  uint64_t sum = 0;
  for (size_t off = 0; off + 1 < b->size; off += 4096) {
    if (b->p[off] != (unsigned char)(t + (off >> 12))) BENCH_FAIL("large: a block lost its contents");
    sum += b->p[off];
  }
  if (b->p[b->size - 1] != t) BENCH_FAIL("large: a block lost its tail");
  free(b->p);
  b->p = NULL;
  return sum;
}

int main(int argc, char** argv) {
  unsigned long long iters = 0, live = 4, max_mib = 64, seed = 42;
  if (argc < 2 || !bench_arg(argc, argv, 1, &iters) || !bench_arg(argc, argv, 2, &live) ||
      !bench_arg(argc, argv, 3, &max_mib) || !bench_arg(argc, argv, 4, &seed) || live == 0 ||
      live > 4096 || max_mib == 0) {
    fprintf(stderr, "usage: %s ITERATIONS [LIVE=4] [MAX_MIB=64] [SEED=42]\n", argv[0]);
    return 2;
  }
  blk_t* blks = calloc(live, sizeof(blk_t));
  if (blks == NULL) BENCH_FAIL("large: malloc returned NULL");
  uint64_t rs = seed, checksum = 0;
  double lo = log(64.0 * 1024), hi = log((double)max_mib * 1024 * 1024);
  if (hi < lo) hi = lo;
  for (uint64_t i = 0; i < iters; i++) {
    blk_t* b = &blks[bench_rnd(&rs) % live];
    checksum += drop(b);
    double u = (double)(bench_rnd(&rs) >> 11) / 9007199254740992.0;
    size_t size = (size_t)exp(lo + u * (hi - lo));
    make(b, i, size);
  }
  for (size_t k = 0; k < live; k++) checksum += drop(&blks[k]);
  free(blks);
  printf("large iterations=%llu live=%llu max_mib=%llu checksum=%llu malloc=%s\n", iters, live,
         max_mib, (unsigned long long)checksum, bench_malloc_provider());
  return 0;
}
