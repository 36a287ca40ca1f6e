/* bench.h: small helpers shared by the benchmark workloads (header only).
 *
 * Every workload calls nothing but the plain C allocation functions, so that any allocator can
 * be put under it with LD_PRELOAD. The helpers here: a seeded random generator, argument
 * parsing, a wall clock, the resident set size from /proc/self/statm, and the name of the
 * object that provides malloc (printed as `malloc=PATH`, so a runner can check that a preload
 * took effect).
 */
#ifndef BENCH_H
#define BENCH_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* splitmix64: small, fast, and good enough for picking sizes and slots */
static inline uint64_t bench_rnd(uint64_t* s) {
  uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

/* a value in [lo, hi] */
static inline uint64_t bench_range(uint64_t* s, uint64_t lo, uint64_t hi) {
  return lo + bench_rnd(s) % (hi - lo + 1);
}

/* A size skewed small: 90% 8..256 bytes, 9% 257 bytes..8 KiB, 1% 8..64 KiB. */
static inline size_t bench_small_size(uint64_t* s) {
  uint64_t r = bench_rnd(s);
  uint32_t bucket = (uint32_t)(r % 100);
  uint32_t v = (uint32_t)(r >> 32);
  if (bucket < 90) return 8 + v % (256 - 8 + 1);
  if (bucket < 99) return 257 + v % (8192 - 257 + 1);
  return 8193 + v % (65536 - 8193 + 1);
}

static inline double bench_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static inline void bench_sleep_ms(unsigned ms) {
  struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0) {
  }
}

/* Resident set size in KiB, from /proc/self/statm (0 where it cannot be read). */
static inline long bench_rss_kib(void) {
  FILE* f = fopen("/proc/self/statm", "r");
  if (f == NULL) return 0;
  long size = 0, resident = 0;
  int n = fscanf(f, "%ld %ld", &size, &resident);
  fclose(f);
  if (n != 2) return 0;
  return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

static inline const char* bench_malloc_provider(void) {
  Dl_info info;
  void* (*volatile fn)(size_t) = malloc;
  if (dladdr((void*)fn, &info) != 0 && info.dli_fname != NULL) return info.dli_fname;
  return "?";
}

/* Parses argv[i] as an unsigned number into *out when present; 0 on a malformed one. */
static inline int bench_arg(int argc, char** argv, int i, unsigned long long* out) {
  if (i >= argc) return 1;
  char* end = NULL;
  unsigned long long v = strtoull(argv[i], &end, 10);
  if (end == argv[i] || *end != '\0') return 0;
  *out = v;
  return 1;
}

/* A byte pattern that depends on a block's identity, to detect a block that lost its contents. */
static inline unsigned char bench_tag(uint64_t id) {
  return (unsigned char)((id * 0x9E3779B97F4A7C15ULL) >> 56);
}

#define BENCH_FAIL(...)                    \
  do {                                     \
    fprintf(stderr, __VA_ARGS__);          \
    fputc('\n', stderr);                   \
    exit(1);                               \
  } while (0)

#endif
