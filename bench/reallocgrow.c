/* reallocgrow: vectors and string builders growing to megabytes with realloc.
 *
 *   reallocgrow ROUNDS [MAX_KIB=4096] [SEED=42]
 *
 * Each round:
 *   vector:  one array of 64-bit numbers grown one element at a time with realloc to 1.5x its
 *            capacity, up to MAX_KIB, then every element is checked;
 *   strings: 8 string builders appended to in turn, pieces of 1..64 bytes, each append a
 *            realloc to the exact new length (so neighbours stand in the way of in-place growth),
 *            until the builders hold MAX_KIB/2 together, then checked;
 *   shrink:  the builders are shrunk with realloc to an eighth, checked and freed.
 * Exit status 0 on success, 2 on bad arguments, 1 if realloc returned NULL or data was lost.
 */
#include "bench.h"

#define BUILDERS 8

static uint64_t vector_round(size_t max_bytes, uint64_t salt) {
  size_t cap = 4, n = 0;
  uint64_t* v = malloc(cap * sizeof(uint64_t));
  if (v == NULL) BENCH_FAIL("reallocgrow: malloc returned NULL");
  while (n * sizeof(uint64_t) < max_bytes) {
    if (n == cap) {
      cap = cap + cap / 2;
      v = realloc(v, cap * sizeof(uint64_t));
      if (v == NULL) BENCH_FAIL("reallocgrow: realloc returned NULL");
    }
    v[n] = n * 2654435761ULL + salt;
    n++;
  }
  uint64_t sum = 0;
  for (size_t i = 0; i < n; i++) {
    if (v[i] != i * 2654435761ULL + salt) BENCH_FAIL("reallocgrow: vector lost its contents");
    sum += v[i];
  }
  free(v);
  return sum;
}

/* the byte at position i of builder b: a function of both, so a misplaced copy shows */
static inline char byte_at(size_t b, size_t i) { return (char)('a' + (i * 7 + b * 3) % 26); }

static uint64_t string_round(size_t max_bytes, uint64_t* rs) {
  char* s[BUILDERS];
  size_t len[BUILDERS];
  for (size_t b = 0; b < BUILDERS; b++) {
    s[b] = malloc(1);
    if (s[b] == NULL) BENCH_FAIL("reallocgrow: malloc returned NULL");
    s[b][0] = '\0';
    len[b] = 0;
  }
  size_t total = 0;
  while (total < max_bytes) {
    for (size_t b = 0; b < BUILDERS; b++) {
      size_t piece = (size_t)bench_range(rs, 1, 64);
      char* t = realloc(s[b], len[b] + piece + 1);
      if (t == NULL) BENCH_FAIL("reallocgrow: realloc returned NULL");
      for (size_t i = 0; i < piece; i++) t[len[b] + i] = byte_at(b, len[b] + i);
      len[b] += piece;
      t[len[b]] = '\0';
      s[b] = t;
      total += piece;
    }
  }
  uint64_t sum = 0;
  for (size_t b = 0; b < BUILDERS; b++) {
    for (size_t i = 0; i < len[b]; i += 97) {
      if (s[b][i] != byte_at(b, i)) BENCH_FAIL("reallocgrow: a string lost its contents");
    }
    if (s[b][len[b] - 1] != byte_at(b, len[b] - 1) || s[b][len[b]] != '\0')
      BENCH_FAIL("reallocgrow: a string lost its tail");
    /* shrink to an eighth */
    size_t keep = len[b] / 8 + 1;
    char* t = realloc(s[b], keep + 1);
    if (t == NULL) BENCH_FAIL("reallocgrow: realloc returned NULL");
    for (size_t i = 0; i < keep; i += 13) {
      if (t[i] != byte_at(b, i)) BENCH_FAIL("reallocgrow: shrinking lost the contents");
    }
    sum += len[b] + (unsigned char)t[keep - 1];
    free(t);
  }
  return sum;
}

int main(int argc, char** argv) {
  unsigned long long rounds = 0, max_kib = 4096, seed = 42;
  if (argc < 2 || !bench_arg(argc, argv, 1, &rounds) || !bench_arg(argc, argv, 2, &max_kib) ||
      !bench_arg(argc, argv, 3, &seed) || max_kib == 0) {
    fprintf(stderr, "usage: %s ROUNDS [MAX_KIB=4096] [SEED=42]\n", argv[0]);
    return 2;
  }
  uint64_t rs = seed;
  uint64_t checksum = 0;
  size_t max_bytes = (size_t)max_kib * 1024;
  for (unsigned long long r = 0; r < rounds; r++) {
    checksum += vector_round(max_bytes, r);
    checksum += string_round(max_bytes / 2, &rs);
  }
  printf("reallocgrow rounds=%llu max_kib=%llu checksum=%llu malloc=%s\n", rounds, max_kib,
         (unsigned long long)checksum, bench_malloc_provider());
  return 0;
}
