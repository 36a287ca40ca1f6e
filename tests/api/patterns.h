/* Byte patterns the API tests write into blocks and check later: a seeded sequence that is never
 * 0, so a pattern cannot pass for zeroed memory. Shared by test_api, test_posix and test_heap. */
#pragma once
#include <stddef.h>
#include <stdint.h>

static inline uint8_t pattern_byte(uint64_t seed, size_t i) {
  uint64_t x = seed + (uint64_t)i * 0x9E3779B97F4A7C15ull;
  x ^= x >> 29;
  return (uint8_t)(x ^ (x >> 17)) | 1;
}

static inline void fill_pattern(void* p, size_t n, uint64_t seed) {
  uint8_t* b = p;
  for (size_t i = 0; i < n; i++) b[i] = pattern_byte(seed, i);
}

/* Index of the first byte that differs from the pattern, or n when all match. */
static inline size_t check_pattern(const void* p, size_t n, uint64_t seed) {
  const uint8_t* b = p;
  for (size_t i = 0; i < n; i++) {
    if (b[i] != pattern_byte(seed, i)) return i;
  }
  return n;
}
