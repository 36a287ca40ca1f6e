/* A tally for the test programs that run without cmocka (under LD_PRELOAD, say) and end with
 * "N passed, N failed": check() counts a result and prints what failed. Header-only. */
#pragma once
#ifndef LM_TESTS_CHECK_H
#define LM_TESTS_CHECK_H

#include <stdbool.h>
#include <stdio.h>

static int passed, failed;

static inline void check(bool cond, const char* what, long long arg) {
  if (cond) {
    passed++;
  } else {
    failed++;
    printf("FAIL: %s (%lld)\n", what, arg);
  }
}

#endif
