/* A stand-in for cmocka on wasm32-wasi, where cmocka cannot be built (no setjmp), so that the
 * cmocka test programs of tests/api compile unchanged for wasm and run under Node's WASI.
 *
 * What differs from cmocka: without setjmp a failed check cannot leave the test, so it is
 * recorded (the first three of a test are printed) and the test goes on; a test that failed
 * any check is reported failed. skip() returns from the test function (it is only used there).
 * A trap (a crash) ends the whole program, which the runner reports as a crash. The program
 * ends with "N passed, N failed" and returns the number of failed tests, as cmocka's runner
 * does. Only what the tests use is here (no mocks). Header-only: one per test program. */
#pragma once
#ifndef LM_WASM_SHIM_CMOCKA_H
#define LM_WASM_SHIM_CMOCKA_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "shim_state.h"

typedef void (*CMUnitTestFunction)(void** state);
typedef int (*CMFixtureFunction)(void** state);

struct CMUnitTest {
  const char* name;
  CMUnitTestFunction test_func;
  CMFixtureFunction setup_func;
  CMFixtureFunction teardown_func;
  void* initial_state;
};

#define cmocka_unit_test(f) {#f, f, NULL, NULL, NULL}
#define cmocka_unit_test_setup(f, setup) {#f, f, setup, NULL, NULL}
#define cmocka_unit_test_teardown(f, teardown) {#f, f, NULL, teardown, NULL}
#define cmocka_unit_test_setup_teardown(f, setup, teardown) {#f, f, setup, teardown, NULL}
#define cmocka_unit_test_prestate(f, state) {#f, f, NULL, NULL, state}

/* ---- failures ------------------------------------------------------------------------------ */

__attribute__((format(printf, 3, 4))) static void shim_fail(const char* file, int line,
                                                            const char* fmt, ...) {
  if (shim_skipped) return;
  shim_failed = true;
  if (shim_reported++ >= 3) return;
  printf("  %s:%d: ", file, line);
  va_list args;
  va_start(args, fmt);
  vprintf(fmt, args);
  va_end(args);
  printf("\n");
}

#define SHIM_CHECK(cond, ...)                                  \
  do {                                                         \
    if (!(cond)) shim_fail(__FILE__, __LINE__, __VA_ARGS__);   \
  } while (0)

static inline void shim_check_int(uintmax_t a, uintmax_t b, bool equal, const char* file,
                                  int line) {
  if ((a == b) != equal) shim_fail(file, line, "%#jx %s %#jx", a, equal ? "!=" : "==", b);
}
static inline void shim_check_string(const char* a, const char* b, const char* file, int line) {
  if (a == NULL || b == NULL || strcmp(a, b) != 0) {
    shim_fail(file, line, "\"%s\" != \"%s\"", a != NULL ? a : "(null)", b != NULL ? b : "(null)");
  }
}

#define assert_true(c) SHIM_CHECK((c), "%s", #c)
#define assert_false(c) SHIM_CHECK(!(c), "!(%s)", #c)
#define assert_null(p) SHIM_CHECK((p) == NULL, "%s is not NULL", #p)
#define assert_non_null(p) SHIM_CHECK((p) != NULL, "%s is NULL", #p)
#define assert_int_equal(a, b) \
  shim_check_int((uintmax_t)(a), (uintmax_t)(b), true, __FILE__, __LINE__)
#define assert_int_not_equal(a, b) \
  shim_check_int((uintmax_t)(a), (uintmax_t)(b), false, __FILE__, __LINE__)
#define assert_ptr_equal(a, b) \
  shim_check_int((uintmax_t)(uintptr_t)(a), (uintmax_t)(uintptr_t)(b), true, __FILE__, __LINE__)
#define assert_ptr_not_equal(a, b) \
  shim_check_int((uintmax_t)(uintptr_t)(a), (uintmax_t)(uintptr_t)(b), false, __FILE__, __LINE__)
#define assert_string_equal(a, b) shim_check_string((a), (b), __FILE__, __LINE__)
#define assert_in_range(v, lo, hi)                                                         \
  SHIM_CHECK((uintmax_t)(v) >= (uintmax_t)(lo) && (uintmax_t)(v) <= (uintmax_t)(hi),       \
             "%#jx not in [%#jx, %#jx]", (uintmax_t)(v), (uintmax_t)(lo), (uintmax_t)(hi))
#define assert_memory_equal(a, b, n) SHIM_CHECK(memcmp((a), (b), (n)) == 0, "memory differs")
#define fail() shim_fail(__FILE__, __LINE__, "failed")
#define fail_msg(...) shim_fail(__FILE__, __LINE__, __VA_ARGS__)
#define print_message(...) printf(__VA_ARGS__)
#define print_error(...) printf(__VA_ARGS__)
/* (in a test function only) */
#define skip()                      \
  do {                              \
    shim_skip_current("skip()");    \
    return;                         \
  } while (0)

/* ---- the runner ---------------------------------------------------------------------------- */

static int shim_run_group(const char* group, const struct CMUnitTest* tests, size_t count,
                          CMFixtureFunction group_setup, CMFixtureFunction group_teardown) {
  void* group_state = NULL;
  int passed = 0, failed = 0, skipped = 0;
  printf("[==========] %s: %zu test(s)\n", group, count);
  if (group_setup != NULL && group_setup(&group_state) != 0) {
    printf("[  FAILED  ] group setup\n%d passed, %zu failed\n", 0, count);
    return (int)count;
  }
  for (size_t i = 0; i < count; i++) {
    const struct CMUnitTest* t = &tests[i];
    void* state = t->initial_state != NULL ? t->initial_state : group_state;
    shim_failed = shim_skipped = false;
    shim_reported = 0;
    printf("[ RUN      ] %s\n", t->name);
    fflush(stdout);
    if (t->setup_func != NULL && t->setup_func(&state) != 0) {
      shim_fail(__FILE__, __LINE__, "setup failed");
    } else {
      t->test_func(&state);
      if (t->teardown_func != NULL && t->teardown_func(&state) != 0 && !shim_skipped) {
        shim_fail(__FILE__, __LINE__, "teardown failed");
      }
    }
    if (shim_skipped) {
      skipped++;
      printf("[  SKIPPED ] %s\n", t->name);
    } else if (shim_failed) {
      failed++;
      printf("[  FAILED  ] %s\n", t->name);
    } else {
      passed++;
      printf("[       OK ] %s\n", t->name);
    }
  }
  if (group_teardown != NULL && group_teardown(&group_state) != 0) {
    printf("[  FAILED  ] group teardown\n");
    failed++;
  }
  printf("%d skipped\n%d passed, %d failed\n", skipped, passed, failed);
  return failed;
}

#define cmocka_run_group_tests_name(name, tests, setup, teardown) \
  shim_run_group(name, tests, sizeof(tests) / sizeof((tests)[0]), setup, teardown)
#define cmocka_run_group_tests(tests, setup, teardown) \
  cmocka_run_group_tests_name(#tests, tests, setup, teardown)

#endif
