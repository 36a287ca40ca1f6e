/* The common layer's bit helpers, on both operand widths in every build, and the word forms
 * against the width this target has: a 32-bit build (cross/i686-linux-gnu.txt) checks that the
 * word forms are the 32-bit ones, a 64-bit build that they are the 64-bit ones. Also the
 * platform's word-size facts they rest on. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "common/common.h"

/* Values the compiler must not fold, so the builtins run as the engine runs them. */
static volatile uint64_t v64[] = {0, 1, 2, 3, 0x80, 0xFFFFFFFFull, 0x100000000ull,
                                  0x8000000000000000ull, 0xFFFFFFFFFFFFFFFFull,
                                  0x0123456789ABCDEFull};

/* Straightforward references, one bit at a time. */
static size_t ref_clz(uint64_t x, unsigned bits) {
  size_t n = 0;
  for (int b = (int)bits - 1; b >= 0 && !((x >> b) & 1); b--) n++;
  return n;
}
static size_t ref_ctz(uint64_t x, unsigned bits) {
  size_t n = 0;
  while (n < bits && !((x >> n) & 1)) n++;
  return n;
}
static size_t ref_popcount(uint64_t x) {
  size_t n = 0;
  for (; x != 0; x >>= 1) n += x & 1;
  return n;
}
static uint64_t ref_rotl(uint64_t x, unsigned r, unsigned bits) {
  uint64_t mask = bits == 64 ? ~0ull : ((1ull << bits) - 1);
  x &= mask;
  r %= bits;
  return r == 0 ? x : ((x << r) | (x >> (bits - r))) & mask;
}

static void test_common_word_size_matches_the_target(void** state) {
  (void)state;
  assert_int_equal(LM_INTPTR_BITS, 8 * sizeof(uintptr_t));
  assert_int_equal(LM_INTPTR_BITS, 8 * sizeof(void*));
  /* no hinted region where it would not fit the address space */
  if (LM_INTPTR_BITS == 32) {
    assert_int_equal(LM_ADDRESS_BITS, 32);
    assert_int_equal(lm_region_span(), 0);
  } else {
    assert_true(lm_region_start() != 0 && lm_region_span() != 0);
    assert_true(lm_region_start() + lm_region_span() <= ((uintptr_t)1 << (LM_ADDRESS_BITS - 1)));
  }
}

static void test_common_bit_helpers_32_bit_operands(void** state) {
  (void)state;
  for (size_t i = 0; i < sizeof(v64) / sizeof(v64[0]); i++) {
    uint32_t x = (uint32_t)v64[i];
    assert_int_equal(lm_clz32(x), ref_clz(x, 32));
    assert_int_equal(lm_ctz32(x), ref_ctz(x, 32));
    assert_int_equal(lm_bsr32(x), x == 0 ? 32 : 31 - ref_clz(x, 32));
    assert_int_equal(lm_popcount32(x), ref_popcount(x));
    for (unsigned r = 0; r < 70; r += 7) {
      assert_int_equal(lm_rotl32(x, r), ref_rotl(x, r, 32));
      assert_int_equal(lm_rotr32(lm_rotl32(x, r), r), x);
    }
  }
}

static void test_common_bit_helpers_64_bit_operands(void** state) {
  (void)state;
  for (size_t i = 0; i < sizeof(v64) / sizeof(v64[0]); i++) {
    uint64_t x = v64[i];
    assert_int_equal(lm_clz64(x), ref_clz(x, 64));
    assert_int_equal(lm_ctz64(x), ref_ctz(x, 64));
    assert_int_equal(lm_bsr64(x), x == 0 ? 64 : 63 - ref_clz(x, 64));
    assert_int_equal(lm_popcount64(x), ref_popcount(x));
    for (unsigned r = 0; r < 140; r += 13) {
      assert_true(lm_rotl64(x, r) == ref_rotl(x, r, 64));
      assert_true(lm_rotr64(lm_rotl64(x, r), r) == x);
    }
  }
}

/* The word forms are the helpers of the target's width: on a 32-bit target a value with only
 * its top bit set has no leading zeros, and zero has 32. */
static void test_common_word_forms_follow_the_word_size(void** state) {
  (void)state;
  const unsigned bits = LM_INTPTR_BITS;
  volatile uintptr_t top = (uintptr_t)1 << (bits - 1), zero = 0, one = 1;
  assert_int_equal(lm_clz(top), 0);
  assert_int_equal(lm_clz(zero), bits);
  assert_int_equal(lm_ctz(zero), bits);
  assert_int_equal(lm_bsr(top), bits - 1);
  assert_int_equal(lm_bsr(one), 0);
  assert_int_equal(lm_popcount(UINTPTR_MAX), bits);
  assert_true(lm_rotl(top, 1) == 1); /* the top bit wraps to bit 0 at the word's width */
  assert_true(lm_rotr(one, 1) == top);
  for (size_t i = 0; i < sizeof(v64) / sizeof(v64[0]); i++) {
    uintptr_t x = (uintptr_t)v64[i];
    assert_int_equal(lm_clz(x), ref_clz(x, bits));
    assert_int_equal(lm_ctz(x), ref_ctz(x, bits));
    assert_int_equal(lm_popcount(x), ref_popcount(x));
    assert_true(lm_rotl(x, 5) == (uintptr_t)ref_rotl(x, 5, bits));
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_common_word_size_matches_the_target),
      cmocka_unit_test(test_common_bit_helpers_32_bit_operands),
      cmocka_unit_test(test_common_bit_helpers_64_bit_operands),
      cmocka_unit_test(test_common_word_forms_follow_the_word_size),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
