/* burst: millions of objects allocated, all freed, repeated (page reuse and purge).
 *
 *   burst ROUNDS [OBJECTS=1000000] [SEED=42]
 *
 * Each round allocates OBJECTS small objects (70% 16..64 bytes, 30% 65..256), writes them,
 * then frees them all: in allocation order, in reverse, or scattered (a fixed permutation),
 * by turns. Odd rounds use sizes twice as large, so the pages that the previous burst emptied
 * are wanted again by other size classes.
 * Exit status 0 on success, 2 on bad arguments, 1 if malloc returned NULL or a block lost its
 * contents.
 */
#include "bench.h"

static size_t gcd(size_t a, size_t b) {
  while (b != 0) {
    size_t t = a % b;
    a = b;
    b = t;
  }
  return a;
}

int main(int argc, char** argv) {
  unsigned long long rounds = 0, objects = 1000000, seed = 42;
  if (argc < 2 || !bench_arg(argc, argv, 1, &rounds) || !bench_arg(argc, argv, 2, &objects) ||
      !bench_arg(argc, argv, 3, &seed) || objects == 0) {
    fprintf(stderr, "usage: %s ROUNDS [OBJECTS=1000000] [SEED=42]\n", argv[0]);
    return 2;
  }
  size_t n = (size_t)objects;
  uint64_t** objs = malloc(n * sizeof(uint64_t*));
  uint16_t* sizes = malloc(n * sizeof(uint16_t));
  if (objs == NULL || sizes == NULL) BENCH_FAIL("burst: malloc returned NULL");
  /* a stride coprime with n visits every index once: the scattered order */
  size_t stride = (n / 2) | 1;
  while (gcd(stride, n) != 1) stride += 2;
  uint64_t rs = seed, checksum = 0;
  for (unsigned long long r = 0; r < rounds; r++) {
    size_t scale = (r & 1) ? 2 : 1;
    for (size_t i = 0; i < n; i++) {
      uint64_t v = bench_rnd(&rs);
      size_t sz = (v % 10 < 7 ? 16 + (v >> 8) % 49 : 65 + (v >> 8) % 192) * scale;
      uint64_t* p = malloc(sz);
      if (p == NULL) BENCH_FAIL("burst: malloc returned NULL");
      p[0] = i ^ r;
      ((unsigned char*)p)[sz - 1] = bench_tag(i);
      objs[i] = p;
      sizes[i] = (uint16_t)sz;
    }
    int order = (int)(r % 3);
    for (size_t k = 0; k < n; k++) {
      size_t i = order == 0 ? k : order == 1 ? n - 1 - k : (size_t)((k * (uint64_t)stride) % n);
      uint64_t* p = objs[i];
      if (p[0] != (i ^ r) || ((unsigned char*)p)[sizes[i] - 1] != bench_tag(i))
        BENCH_FAIL("burst: a block was corrupted");
      checksum += sizes[i];
      free(p);
    }
  }
  free(objs);
  free(sizes);
  printf("burst rounds=%llu objects=%llu checksum=%llu malloc=%s\n", rounds, objects,
         (unsigned long long)checksum, bench_malloc_provider());
  return 0;
}
