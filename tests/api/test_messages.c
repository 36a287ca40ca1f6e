/* Integration tests of messages and errors (facts 4.21; mimalloc.h: mi_register_output,
 * mi_register_error, mi_options_print): the output sink and the replay of early messages, the
 * error handler with its errno-style codes, show_errors, verbose, max_errors and max_warnings.
 * Public header only, static library.
 *
 * The first argument picks the run (each one its own Meson registration, since the
 * environment is read when the process starts):
 *   plain    no MIMALLOC_ variable: sinks, the error handler, the caps, mi_options_print.
 *   early    MIMALLOC_SHOW_ERRORS=1 MIMALLOC_PURGE_DELAY=banana MIMALLOC_MAX_WARNINGS=1
 *            MIMALLOC_GENERIC_COLLECT=zz: the warning printed while the process started is
 *            replayed to the first sink, once; the cap on warnings holds from the start.
 *   verbose  MIMALLOC_VERBOSE=1: the library printed every option when the process started.
 *
 * EINVAL, EAGAIN and EFAULT come from misuse and corruption: tests/attacks covers them. Here
 * the codes that come from requests: ENOMEM and EOVERFLOW.
 *
 * Sizes that would trip the compiler's alloc_size checks are read through volatile variables
 * so that the calls really reach the allocator. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
/* cmocka after the standard headers it expects; UNIT_TESTING stays undefined on purpose. */
#include <cmocka.h>

#include "mimalloc.h"
#include "observe.h"

static volatile size_t v_size_max = SIZE_MAX;
/* past PTRDIFF_MAX: refused on every target (PTRDIFF_MAX itself, 2 GiB - 1, can be had in a
 * 32-bit process) */
static volatile size_t v_half = SIZE_MAX / 2 + 1;
static volatile size_t v_align_48 = 48; /* not a power of two */

/* ---- sinks -------------------------------------------------------------------------------------- */

static capture_t cap_a, cap_b;

static size_t count_occurrences(const char* hay, const char* needle) {
  size_t count = 0, n = strlen(needle);
  if (n == 0) return 0;
  for (const char* p = strstr(hay, needle); p != NULL; p = strstr(p + n, needle)) count++;
  return count;
}

/* What the process wrote to stderr while `fn` ran (the default output), into `out`. */
static void capture_stderr(void (*fn)(void), char* out, size_t size) {
  fflush(stderr);
  char path[] = "/tmp/lm-test-messages-XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  unlink(path);
  int saved = dup(STDERR_FILENO);
  assert_true(saved >= 0);
  assert_true(dup2(fd, STDERR_FILENO) >= 0);
  fn();
  fflush(stderr);
  dup2(saved, STDERR_FILENO);
  close(saved);
  off_t end = lseek(fd, 0, SEEK_END);
  assert_true(end >= 0);
  size_t n = (size_t)end < size - 1 ? (size_t)end : size - 1;
  assert_int_equal(pread(fd, out, n, 0), (ssize_t)n);
  out[n] = 0;
  close(fd);
}

/* ---- the error handler ------------------------------------------------------------------------ */

typedef struct errors_s {
  size_t calls;
  int last;
  int codes[64];
  void* arg_seen;
} errors_t;

static errors_t errs;

static void error_handler(int err, void* arg) {
  if (errs.calls < sizeof(errs.codes) / sizeof(errs.codes[0])) errs.codes[errs.calls] = err;
  errs.calls++;
  errs.last = err;
  errs.arg_seen = arg;
}

static void errors_reset(void) { memset(&errs, 0, sizeof(errs)); }

/* An ENOMEM error: a request larger than any allocation can be. */
static void provoke_enomem(void) {
  errno = 0;
  void* p = mi_malloc(v_half);
  assert_null(p);
  assert_int_equal(errno, ENOMEM);
}

/* An EOVERFLOW error: count * size overflows. */
static void provoke_eoverflow(void) {
  errno = 0;
  void* p = mi_calloc(v_size_max, 2);
  assert_null(p);
  assert_int_equal(errno, ENOMEM);
}

/* A warning: an alignment that is not a power of two. */
static void provoke_warning(void) {
  void* p = mi_malloc_aligned(64, v_align_48);
  assert_null(p);
}

static size_t error_lines(const char* text) { return count_occurrences(text, "error: "); }
static size_t warning_lines(const char* text) { return count_occurrences(text, "warning: "); }

/* Quiet, predictable settings for a test; the caps high enough not to matter. */
static void settings(bool show_errors, bool verbose) {
  mi_option_set_enabled(mi_option_show_errors, show_errors);
  mi_option_set_enabled(mi_option_verbose, verbose);
  mi_option_set(mi_option_max_errors, 1000000);
  mi_option_set(mi_option_max_warnings, 1000000);
}

/* ======================================================================================= */
/* ---- mode "plain" ----------------------------------------------------------------------- */
/* ======================================================================================= */

/* First of the group: the caps count every error (and warning) shown since the start, and
 * nothing was shown before this test. */
static void test_max_errors_caps_printing_but_not_the_handler(void** state) {
  (void)state;
  capture_reset(&cap_a);
  errors_reset();
  mi_register_output(capture_sink, &cap_a);
  mi_register_error(error_handler, &errs);
  mi_option_enable(mi_option_show_errors);
  mi_option_disable(mi_option_verbose);
  mi_option_set(mi_option_max_errors, 3);
  for (int i = 0; i < 10; i++) {
    if (i % 2 == 0) provoke_enomem();
    else provoke_eoverflow();
  }
  assert_int_equal(errs.calls, 10);
  size_t printed = error_lines(cap_a.text);
  if (printed != 3) print_error("printed %zu errors with max_errors=3:\n%s\n", printed, cap_a.text);
  assert_int_equal(printed, 3);
  mi_register_error(NULL, NULL);
  mi_register_output(NULL, NULL);
  settings(false, false);
}

static void test_max_warnings_caps_printing(void** state) {
  (void)state;
  capture_reset(&cap_a);
  mi_register_output(capture_sink, &cap_a);
  mi_option_enable(mi_option_show_errors);
  mi_option_disable(mi_option_verbose);
  mi_option_set(mi_option_max_warnings, 2);
  for (int i = 0; i < 6; i++) provoke_warning();
  size_t printed = warning_lines(cap_a.text);
  if (printed != 2) {
    print_error("printed %zu warnings with max_warnings=2:\n%s\n", printed, cap_a.text);
  }
  assert_int_equal(printed, 2);
  mi_register_output(NULL, NULL);
  settings(false, false);
}

static void test_error_handler_receives_enomem(void** state) {
  (void)state;
  settings(false, false);
  errors_reset();
  int token = 0;
  mi_register_error(error_handler, &token);
  provoke_enomem();
  assert_int_equal(errs.calls, 1);
  assert_int_equal(errs.last, ENOMEM);
  assert_ptr_equal(errs.arg_seen, &token);
  /* the same through other entry points */
  errno = 0;
  assert_null(mi_zalloc(v_half));
  assert_int_equal(errno, ENOMEM);
  errno = 0;
  assert_null(mi_realloc(NULL, v_half));
  assert_int_equal(errno, ENOMEM);
  assert_int_equal(errs.calls, 3);
  for (size_t i = 0; i < 3; i++) assert_int_equal(errs.codes[i], ENOMEM);
  mi_register_error(NULL, NULL);
}

static void test_error_handler_receives_eoverflow(void** state) {
  (void)state;
  settings(false, false);
  errors_reset();
  mi_register_error(error_handler, NULL);
  provoke_eoverflow();
  assert_int_equal(errs.calls, 1);
  assert_int_equal(errs.last, EOVERFLOW);
  assert_null(errs.arg_seen);
  errno = 0;
  assert_null(mi_mallocn(v_size_max, 2));
  assert_int_equal(errno, ENOMEM);
  errno = 0;
  assert_null(mi_heap_calloc(mi_heap_get_default(), 3, v_size_max / 2));
  assert_int_equal(errno, ENOMEM);
  assert_int_equal(errs.calls, 3);
  for (size_t i = 0; i < 3; i++) assert_int_equal(errs.codes[i], EOVERFLOW);
  mi_register_error(NULL, NULL);
}

static void test_unregistered_handler_is_not_called(void** state) {
  (void)state;
  settings(false, false);
  errors_reset();
  mi_register_error(error_handler, NULL);
  mi_register_error(NULL, NULL);
  provoke_enomem();
  provoke_eoverflow();
  assert_int_equal(errs.calls, 0);
}

static void test_show_errors_decides_whether_errors_are_printed(void** state) {
  (void)state;
  capture_reset(&cap_a);
  errors_reset();
  mi_register_output(capture_sink, &cap_a);
  mi_register_error(error_handler, NULL);
  settings(false, false);
  provoke_enomem();
  provoke_eoverflow();
  provoke_warning();
  assert_int_equal(errs.calls, 2);   /* the handler is called regardless */
  assert_int_equal(cap_a.len, 0);    /* but nothing is printed */
  settings(true, false);
  provoke_enomem();
  assert_int_equal(error_lines(cap_a.text), 1);
  assert_non_null(strstr(cap_a.text, "mimalloc: error: "));
  provoke_eoverflow();
  assert_int_equal(error_lines(cap_a.text), 2);
  provoke_warning();
  assert_int_equal(warning_lines(cap_a.text), 1);
  assert_non_null(strstr(cap_a.text, "mimalloc: warning: "));
  assert_int_equal(errs.calls, 4);
  /* every message is a whole line */
  assert_int_equal(cap_a.text[cap_a.len - 1], '\n');
  mi_register_error(NULL, NULL);
  mi_register_output(NULL, NULL);
  settings(false, false);
}

static void test_verbose_prints_errors_without_show_errors_and_uncapped(void** state) {
  (void)state;
  capture_reset(&cap_a);
  mi_register_output(capture_sink, &cap_a);
  settings(false, true);
  mi_option_set(mi_option_max_errors, 0);
  mi_option_set(mi_option_max_warnings, 0);
  provoke_enomem();
  provoke_enomem();
  provoke_warning();
  assert_int_equal(error_lines(cap_a.text), 2);
  assert_int_equal(warning_lines(cap_a.text), 1);
  settings(false, false);
  mi_register_output(NULL, NULL);
}

static void test_output_sink_receives_messages_with_its_argument(void** state) {
  (void)state;
  capture_reset(&cap_a);
  capture_reset(&cap_b);
  mi_register_output(capture_sink, &cap_a);
  settings(true, false);
  provoke_warning();
  assert_int_equal(warning_lines(cap_a.text), 1);
  /* a second sink replaces the first */
  mi_register_output(capture_sink, &cap_b);
  provoke_warning();
  assert_int_equal(warning_lines(cap_a.text), 1);
  assert_int_equal(warning_lines(cap_b.text), 1);
  mi_register_output(NULL, NULL);
  settings(false, false);
}

static void print_options_now(void) { mi_options_print(); }
static void warn_now(void) {
  settings(true, false);
  provoke_warning();
  settings(false, false);
}

static void test_null_output_restores_stderr(void** state) {
  (void)state;
  capture_reset(&cap_a);
  mi_register_output(capture_sink, &cap_a);
  mi_register_output(NULL, NULL);
  static char err[64 * 1024];
  capture_stderr(warn_now, err, sizeof(err));
  assert_int_equal(cap_a.len, 0); /* the old sink no longer hears anything */
  assert_non_null(strstr(err, "mimalloc: warning: "));
  capture_stderr(print_options_now, err, sizeof(err));
  assert_int_equal(cap_a.len, 0);
  assert_non_null(strstr(err, "option 'purge_delay'"));
}

static const char* const option_names[] = {
    "show_errors", "show_stats", "verbose", "eager_commit", "arena_eager_commit",
    "purge_decommits", "allow_large_os_pages", "reserve_huge_os_pages",
    "reserve_huge_os_pages_at", "reserve_os_memory", "deprecated_segment_cache",
    "deprecated_page_reset", "abandoned_page_purge", "deprecated_segment_reset",
    "eager_commit_delay", "purge_delay", "use_numa_nodes", "disallow_os_alloc", "os_tag",
    "max_errors", "max_warnings", "max_segment_reclaim", "destroy_on_exit", "arena_reserve",
    "arena_purge_mult", "purge_extend_delay", "abandoned_reclaim_on_free",
    "disallow_arena_alloc", "retry_on_oom", "visit_abandoned", "guarded_min", "guarded_max",
    "guarded_precise", "guarded_sample_rate", "guarded_sample_seed",
    "target_segments_per_thread", "generic_collect", "allow_thp"};

/* `text` has exactly one line per option, "option 'NAME': VALUE", with the current values. */
static void check_option_lines(const char* text) {
  assert_int_equal(sizeof(option_names) / sizeof(option_names[0]), _mi_option_last);
  size_t lines = count_occurrences(text, "option '");
  if (lines != _mi_option_last) print_error("%zu option lines:\n%s\n", lines, text);
  assert_int_equal(lines, _mi_option_last);
  for (int i = 0; i < _mi_option_last; i++) {
    char key[96];
    snprintf(key, sizeof(key), "option '%s':", option_names[i]);
    assert_int_equal(count_occurrences(text, key), 1);
    const char* at = strstr(text, key) + strlen(key);
    char* end = NULL;
    long v = strtol(at, &end, 10);
    assert_true(end != at);
    if (v != mi_option_get((mi_option_t)i)) {
      print_error("%s printed as %ld, mi_option_get says %ld\n", option_names[i], v,
                  mi_option_get((mi_option_t)i));
    }
    assert_int_equal(v, mi_option_get((mi_option_t)i));
    /* the rest of its line: a unit at most */
    const char* eol = strchr(at, '\n');
    assert_non_null(eol);
  }
}

static void test_options_print_writes_one_line_per_option(void** state) {
  (void)state;
  settings(false, false);
  capture_reset(&cap_a);
  mi_register_output(capture_sink, &cap_a);
  mi_option_set(mi_option_os_tag, 123);
  mi_options_print();
  mi_register_output(NULL, NULL);
  check_option_lines(cap_a.text);
  assert_non_null(strstr(cap_a.text, "option 'os_tag': 123"));
  mi_option_set(mi_option_os_tag, 100);
  /* printing does not depend on show_errors or verbose */
  assert_true(cap_a.calls >= (size_t)_mi_option_last);
}

/* ======================================================================================= */
/* ---- mode "early" ----------------------------------------------------------------------- */
/* ======================================================================================= */

static void test_early_warning_is_replayed_once_to_the_first_sink(void** state) {
  (void)state;
  /* main() registered cap_a before running the tests */
  assert_int_equal(count_occurrences(cap_a.text, "banana"), 1);
  assert_int_equal(count_occurrences(cap_a.text, "mimalloc_purge_delay"), 1);
  assert_non_null(strstr(cap_a.text, "mimalloc: warning: "));
  /* the value is the default */
  assert_int_equal(mi_option_get(mi_option_purge_delay), 10);
  assert_int_equal(mi_option_get(mi_option_generic_collect), 10000);
  /* a new sink after the first gets no replay */
  mi_register_output(NULL, NULL);
  capture_reset(&cap_b);
  mi_register_output(capture_sink, &cap_b);
  assert_int_equal(cap_b.len, 0);
  /* and is live: the cap of one warning was spent at the start */
  mi_option_set(mi_option_max_warnings, 100);
  provoke_warning();
  assert_int_equal(warning_lines(cap_b.text), 1);
  assert_null(strstr(cap_b.text, "banana"));
  mi_register_output(NULL, NULL);
}

static void test_early_max_warnings_from_the_environment(void** state) {
  (void)state;
  /* MIMALLOC_MAX_WARNINGS=1: the invalid generic_collect gave no second warning */
  assert_int_equal(warning_lines(cap_a.text), 1);
  assert_null(strstr(cap_a.text, "zz"));
}

/* ======================================================================================= */
/* ---- mode "verbose" --------------------------------------------------------------------- */
/* ======================================================================================= */

static void test_verbose_prints_options_at_start(void** state) {
  (void)state;
  assert_int_equal(mi_option_get(mi_option_verbose), 1);
  /* main() registered cap_a first: it got what was printed while the process started */
  if (strstr(cap_a.text, "option '") == NULL) {
    print_error("MIMALLOC_VERBOSE=1 printed no options at start; replayed:\n%s\n", cap_a.text);
  }
  check_option_lines(cap_a.text);
  /* and something about the process before the options */
  const char* first_option = strstr(cap_a.text, "option '");
  const char* process = strstr(cap_a.text, "process");
  assert_non_null(process);
  assert_true(process < first_option);
}

static void test_verbose_shows_warnings_without_show_errors(void** state) {
  (void)state;
  capture_reset(&cap_b);
  mi_register_output(capture_sink, &cap_b);
  mi_option_disable(mi_option_show_errors);
  provoke_warning();
  assert_int_equal(warning_lines(cap_b.text), 1);
  mi_register_output(NULL, NULL);
}

/* ---- main ------------------------------------------------------------------------------------ */

int main(int argc, char** argv) {
  const char* mode = argc > 1 ? argv[1] : "plain";
  if (strcmp(mode, "plain") == 0) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_max_errors_caps_printing_but_not_the_handler),
        cmocka_unit_test(test_max_warnings_caps_printing),
        cmocka_unit_test(test_error_handler_receives_enomem),
        cmocka_unit_test(test_error_handler_receives_eoverflow),
        cmocka_unit_test(test_unregistered_handler_is_not_called),
        cmocka_unit_test(test_show_errors_decides_whether_errors_are_printed),
        cmocka_unit_test(test_verbose_prints_errors_without_show_errors_and_uncapped),
        cmocka_unit_test(test_output_sink_receives_messages_with_its_argument),
        cmocka_unit_test(test_null_output_restores_stderr),
        cmocka_unit_test(test_options_print_writes_one_line_per_option),
    };
    return cmocka_run_group_tests_name("messages", tests, NULL, NULL);
  }
  if (strcmp(mode, "early") == 0 || strcmp(mode, "verbose") == 0) {
    /* first thing: this sink gets the replay of everything printed so far */
    capture_reset(&cap_a);
    mi_register_output(capture_sink, &cap_a);
    mi_register_output(NULL, NULL);
    if (strcmp(mode, "early") == 0) {
      const struct CMUnitTest tests[] = {
          cmocka_unit_test(test_early_max_warnings_from_the_environment),
          cmocka_unit_test(test_early_warning_is_replayed_once_to_the_first_sink),
      };
      return cmocka_run_group_tests_name("messages-early", tests, NULL, NULL);
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_verbose_prints_options_at_start),
        cmocka_unit_test(test_verbose_shows_warnings_without_show_errors),
    };
    return cmocka_run_group_tests_name("messages-verbose", tests, NULL, NULL);
  }
  fprintf(stderr, "usage: %s [plain | early | verbose]\n", argv[0]);
  return 2;
}
