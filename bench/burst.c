/* burst: millions of objects allocated, all freed, repeated (page reuse and purge).
 *
 *   burst ROUNDS [OBJECTS=1000000] [SEED=42] [ORDER=mixed] [SIZES=mixed]
 *
 * Each round allocates OBJECTS small objects, writes them, then frees them all in ORDER:
 *   mixed        (default) in allocation order, in reverse, or scattered (a fixed permutation),
 *                by turns;
 *   alternating  in allocation order one round, in reverse the next;
 *   forward, reverse, scattered: always that order.
 * SIZES: mixed (default) draws 70% 16..64 bytes and 30% 65..256, and odd rounds use sizes
 * twice as large, so the pages that the previous burst emptied are wanted again by other size
 * classes; LO-HI (e.g. 32-96, LO at least 16) draws uniformly from LO..HI bytes every round.
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

enum { ORDER_MIXED, ORDER_ALTERNATING, ORDER_FORWARD, ORDER_REVERSE, ORDER_SCATTERED };
static const char* const order_names[] = {"mixed", "alternating", "forward", "reverse",
                                          "scattered"};

/* SIZES: "mixed" (lo = hi = 0) or "LO-HI" with 16 <= LO <= HI <= 65535 */
static int parse_sizes(const char* arg, unsigned long* lo, unsigned long* hi) {
  if (strcmp(arg, "mixed") == 0) {
    *lo = *hi = 0;
    return 1;
  }
  char* end = NULL;
  *lo = strtoul(arg, &end, 10);
  if (end == arg || *end != '-') return 0;
  const char* rest = end + 1;
  *hi = strtoul(rest, &end, 10);
  if (end == rest || *end != '\0') return 0;
  return *lo >= 16 && *lo <= *hi && *hi <= 65535;
}

int main(int argc, char** argv) {
  unsigned long long rounds = 0, objects = 1000000, seed = 42;
  int order_mode = ORDER_MIXED, ok = 1;
  unsigned long lo = 0, hi = 0;
  if (argc > 4) {
    ok = 0;
    for (int m = 0; m < (int)(sizeof(order_names) / sizeof(order_names[0])); m++) {
      if (strcmp(argv[4], order_names[m]) == 0) {
        order_mode = m;
        ok = 1;
      }
    }
  }
  if (argc > 5 && !parse_sizes(argv[5], &lo, &hi)) ok = 0;
  if (argc < 2 || argc > 6 || !ok || !bench_arg(argc, argv, 1, &rounds) ||
      !bench_arg(argc, argv, 2, &objects) || !bench_arg(argc, argv, 3, &seed) || objects == 0) {
    fprintf(stderr,
            "usage: %s ROUNDS [OBJECTS=1000000] [SEED=42] "
            "[mixed|alternating|forward|reverse|scattered] [mixed|LO-HI]\n",
            argv[0]);
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
      size_t sz = hi != 0 ? lo + (size_t)((v >> 8) % (hi - lo + 1))
                          : (v % 10 < 7 ? 16 + (v >> 8) % 49 : 65 + (v >> 8) % 192) * scale;
      uint64_t* p = malloc(sz);
      if (p == NULL) BENCH_FAIL("burst: malloc returned NULL");
      p[0] = i ^ r;
      ((unsigned char*)p)[sz - 1] = bench_tag(i);
      objs[i] = p;
      sizes[i] = (uint16_t)sz;
    }
    int order; /* 0: allocation order, 1: reverse, 2: scattered */
    switch (order_mode) {
      case ORDER_ALTERNATING: order = (int)(r % 2); break;
      case ORDER_FORWARD: order = 0; break;
      case ORDER_REVERSE: order = 1; break;
      case ORDER_SCATTERED: order = 2; break;
      default: order = (int)(r % 3); break;
    }
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
  printf("burst rounds=%llu objects=%llu order=%s sizes=%s checksum=%llu malloc=%s\n", rounds,
         objects, order_names[order_mode], argc > 5 ? argv[5] : "mixed",
         (unsigned long long)checksum, bench_malloc_provider());
  return 0;
}
