/* The stress tests' random numbers: xorshift64*, seeded per thread, so a failing run repeats. */
#pragma once
#include <stdint.h>

static inline uint64_t rng_next(uint64_t* state) {
  uint64_t x = *state;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *state = x;
  return x * 2685821657736338717ull;
}
