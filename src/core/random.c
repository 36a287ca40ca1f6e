/* Randomness for cookies, keys and randomised choices: xoshiro256** seeded from the backend's
 * strong random source (or, failing that, from the clock and addresses). Not for cryptography;
 * secrets derive from the seed. */
#include "core.h"

static uint64_t splitmix(uint64_t* x) {
  uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

void lm_random_init(lm_random_t* rnd, const lm_backend_t* backend) {
  if (backend != NULL && backend->random_bytes != NULL &&
      backend->random_bytes(rnd->s, sizeof(rnd->s)) && (rnd->s[0] | rnd->s[1]) != 0) {
    return;
  }
  uint64_t x = (uint64_t)(uintptr_t)rnd ^ (uint64_t)lm_thread_id();
  if (backend != NULL) x ^= (uint64_t)backend->clock_ms() << 17;
  for (int i = 0; i < 4; i++) rnd->s[i] = splitmix(&x);
}

uint64_t lm_random_next(lm_random_t* rnd) {
  uint64_t* s = rnd->s;
  uint64_t result = lm_rotl64(s[1] * 5, 7) * 9;
  uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = lm_rotl64(s[3], 45);
  return result;
}
