/* Integration tests of the options (facts 1.12): the default of every option, the mi_option_*
 * API, and the MIMALLOC_<NAME> environment variables. Public header only, static library.
 *
 * Options are read from the environment when the process starts, so every environment is its
 * own run of this program (one Meson test() registration each, with `env:`). The first
 * argument says what to check:
 *
 *   defaults            no MIMALLOC_ variable is set: every option has the default of the spec
 *                       table, and the mi_option_* calls behave as documented.
 *   env EXPECT...       the variables Meson set must have taken effect; each EXPECT is one of
 *                         NAME=VALUE       mi_option_get(NAME) == VALUE, and the option counts
 *                                          as set (mi_option_set_default does not change it)
 *                         size:NAME=BYTES  mi_option_get_size(NAME) == BYTES
 *                         default:NAME     the option kept its default (invalid value)
 *                         warn:TEXT        the messages printed so far contain TEXT once
 *                         nowarn:TEXT      ... and do not contain TEXT
 *
 * Messages printed while the process started (a deprecated name, an invalid value) are
 * captured through mi_register_output, which replays the messages printed before a sink is
 * registered. */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
/* cmocka after the standard headers it expects; UNIT_TESTING stays undefined on purpose. */
#include <cmocka.h>

#include "mimalloc.h"

#ifndef TEST_LM_GUARDED_BUILD
#define TEST_LM_GUARDED_BUILD 0 /* set by meson from the guarded option: sampling on by default */
#endif
#ifndef TEST_LM_LARGE_PAGES_DEFAULT
#define TEST_LM_LARGE_PAGES_DEFAULT 0 /* set by meson: 1 with -Dhuge_pages=enabled */
#endif
#ifndef TEST_LM_DEBUG
#define TEST_LM_DEBUG 0 /* set by meson from the debug_level option */
#endif

extern char** environ;

/* ---- the option table of the spec (facts 1.12), Linux x86-64 release defaults ------------- */

typedef struct option_info_s {
  mi_option_t option;
  const char* name;   /* without the mimalloc_ prefix */
  const char* legacy; /* the older environment name, or NULL */
  long def;           /* the default */
  bool kib;           /* a size in KiB */
} option_info_t;

#define GiB_IN_KiB (1024L * 1024L)
/* arena_reserve's default: 1 GiB, 128 MiB on 32-bit targets (4 GiB of address space in all) */
#define ARENA_RESERVE_DEFAULT_KiB (sizeof(void*) == 8 ? GiB_IN_KiB : 128L * 1024L)

static const option_info_t option_table[] = {
    {mi_option_show_errors, "show_errors", NULL, TEST_LM_DEBUG > 0 ? 1 : 0, false},
    {mi_option_show_stats, "show_stats", NULL, 0, false},
    {mi_option_verbose, "verbose", NULL, 0, false},
    {mi_option_eager_commit, "eager_commit", NULL, 1, false},
    {mi_option_arena_eager_commit, "arena_eager_commit", "eager_region_commit", 2, false},
    {mi_option_purge_decommits, "purge_decommits", "reset_decommits", 1, false},
    {mi_option_allow_large_os_pages, "allow_large_os_pages", "large_os_pages",
     TEST_LM_LARGE_PAGES_DEFAULT, false},
    {mi_option_reserve_huge_os_pages, "reserve_huge_os_pages", NULL, 0, false},
    {mi_option_reserve_huge_os_pages_at, "reserve_huge_os_pages_at", NULL, -1, false},
    {mi_option_reserve_os_memory, "reserve_os_memory", NULL, 0, true},
    {mi_option_deprecated_segment_cache, "deprecated_segment_cache", NULL, 0, false},
    {mi_option_deprecated_page_reset, "deprecated_page_reset", NULL, 0, false},
    {mi_option_abandoned_page_purge, "abandoned_page_purge", "abandoned_page_reset", 0, false},
    {mi_option_deprecated_segment_reset, "deprecated_segment_reset", NULL, 0, false},
    {mi_option_eager_commit_delay, "eager_commit_delay", NULL, 1, false},
    {mi_option_purge_delay, "purge_delay", "reset_delay", 10, false},
    {mi_option_use_numa_nodes, "use_numa_nodes", NULL, 0, false},
    {mi_option_disallow_os_alloc, "disallow_os_alloc", "limit_os_alloc", 0, false},
    {mi_option_os_tag, "os_tag", NULL, 100, false},
    {mi_option_max_errors, "max_errors", NULL, 32, false},
    {mi_option_max_warnings, "max_warnings", NULL, 32, false},
    {mi_option_max_segment_reclaim, "max_segment_reclaim", NULL, 10, false},
    {mi_option_destroy_on_exit, "destroy_on_exit", NULL, 0, false},
    {mi_option_arena_reserve, "arena_reserve", NULL, ARENA_RESERVE_DEFAULT_KiB, true},
    {mi_option_arena_purge_mult, "arena_purge_mult", NULL, 10, false},
    {mi_option_purge_extend_delay, "purge_extend_delay", "decommit_extend_delay", 1, false},
    {mi_option_abandoned_reclaim_on_free, "abandoned_reclaim_on_free", NULL, 0, false},
    {mi_option_disallow_arena_alloc, "disallow_arena_alloc", NULL, 0, false},
    {mi_option_retry_on_oom, "retry_on_oom", NULL, 400, false},
    {mi_option_visit_abandoned, "visit_abandoned", NULL, 0, false},
    {mi_option_guarded_min, "guarded_min", NULL, 0, false},
    {mi_option_guarded_max, "guarded_max", NULL, 1024L * 1024L * 1024L, false},
    {mi_option_guarded_precise, "guarded_precise", NULL, 0, false},
    {mi_option_guarded_sample_rate, "guarded_sample_rate", NULL, TEST_LM_GUARDED_BUILD ? 4000 : 0,
     false},
    {mi_option_guarded_sample_seed, "guarded_sample_seed", NULL, 0, false},
    {mi_option_target_segments_per_thread, "target_segments_per_thread", NULL, 0, false},
    {mi_option_generic_collect, "generic_collect", NULL, 10000, false},
    {mi_option_allow_thp, "allow_thp", NULL, 1, false},
};
#define OPTION_COUNT (sizeof(option_table) / sizeof(option_table[0]))

static const option_info_t* option_by_name(const char* name) {
  for (size_t i = 0; i < OPTION_COUNT; i++) {
    if (strcmp(option_table[i].name, name) == 0) return &option_table[i];
  }
  return NULL;
}

/* Whether the environment holds mimalloc_<name>=... in any case. */
static bool env_has(const char* name) {
  if (name == NULL) return false;
  char key[128];
  snprintf(key, sizeof(key), "mimalloc_%s=", name);
  size_t n = strlen(key);
  for (char** e = environ; e != NULL && *e != NULL; e++) {
    if (strncasecmp(*e, key, n) == 0) return true;
  }
  return false;
}

static bool env_has_any_mimalloc(void) {
  for (char** e = environ; e != NULL && *e != NULL; e++) {
    if (strncasecmp(*e, "mimalloc_", 9) == 0) return true;
  }
  return false;
}

/* ---- captured output -------------------------------------------------------------------------- */

static char captured[64 * 1024];
static size_t captured_len;

static void capture_sink(const char* msg, void* arg) {
  (void)arg;
  size_t n = strlen(msg);
  if (n > sizeof(captured) - 1 - captured_len) n = sizeof(captured) - 1 - captured_len;
  memcpy(captured + captured_len, msg, n);
  captured_len += n;
  captured[captured_len] = 0;
}

static size_t count_occurrences(const char* hay, const char* needle) {
  size_t count = 0, n = strlen(needle);
  if (n == 0) return 0;
  for (const char* p = strstr(hay, needle); p != NULL; p = strstr(p + n, needle)) count++;
  return count;
}

/* The allocator still works: a few sizes from small to huge, written and freed. */
static void exercise_allocator(void) {
  static const size_t sizes[] = {8, 64, 1000, 20000, 300000, 5u << 20};
  void* blocks[sizeof(sizes) / sizeof(sizes[0])][8];
  for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
    for (size_t i = 0; i < 8; i++) {
      blocks[s][i] = mi_malloc(sizes[s]);
      assert_non_null(blocks[s][i]);
      memset(blocks[s][i], (int)(s + i), sizes[s]);
    }
  }
  for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
    for (size_t i = 0; i < 8; i++) {
      assert_int_equal(((unsigned char*)blocks[s][i])[sizes[s] - 1], (unsigned char)(s + i));
      mi_free(blocks[s][i]);
    }
  }
  mi_collect(true);
}

/* ======================================================================================= */
/* ---- mode "defaults" -------------------------------------------------------------------- */
/* ======================================================================================= */

static void test_table_matches_the_enum(void** state) {
  (void)state;
  assert_int_equal(OPTION_COUNT, _mi_option_last);
  for (size_t i = 0; i < OPTION_COUNT; i++) assert_int_equal(option_table[i].option, (int)i);
  /* the legacy enum names are aliases of the current ones */
  assert_int_equal(mi_option_large_os_pages, mi_option_allow_large_os_pages);
  assert_int_equal(mi_option_eager_region_commit, mi_option_arena_eager_commit);
  assert_int_equal(mi_option_reset_decommits, mi_option_purge_decommits);
  assert_int_equal(mi_option_reset_delay, mi_option_purge_delay);
  assert_int_equal(mi_option_abandoned_page_reset, mi_option_abandoned_page_purge);
  assert_int_equal(mi_option_limit_os_alloc, mi_option_disallow_os_alloc);
}

static void test_every_option_has_the_spec_default(void** state) {
  (void)state;
  size_t skipped = 0;
  for (size_t i = 0; i < OPTION_COUNT; i++) {
    const option_info_t* o = &option_table[i];
    if (env_has(o->name) || env_has(o->legacy)) {
      /* The runner's environment sets it: its default cannot be observed in this process. */
      print_message("note: MIMALLOC_%s is set in the environment; default not checked\n", o->name);
      skipped++;
      continue;
    }
    long v = mi_option_get(o->option);
    if (v != o->def) {
      print_error("option %s: %ld, expected the default %ld\n", o->name, v, o->def);
    }
    assert_int_equal(v, o->def);
    assert_int_equal(mi_option_is_enabled(o->option), o->def != 0);
  }
  assert_true(skipped < OPTION_COUNT);
}

static void test_sizes_of_the_kib_options_are_in_bytes(void** state) {
  (void)state;
  if (!env_has("arena_reserve")) {
    assert_int_equal(mi_option_get_size(mi_option_arena_reserve),
                     (size_t)ARENA_RESERVE_DEFAULT_KiB * 1024);
  }
  if (!env_has("reserve_os_memory")) {
    assert_int_equal(mi_option_get_size(mi_option_reserve_os_memory), 0);
  }
  /* set in KiB, read back in bytes */
  mi_option_set(mi_option_reserve_os_memory, 5);
  assert_int_equal(mi_option_get(mi_option_reserve_os_memory), 5);
  assert_int_equal(mi_option_get_size(mi_option_reserve_os_memory), 5 * 1024);
  /* a negative size reads as 0 bytes */
  mi_option_set(mi_option_reserve_os_memory, -3);
  assert_int_equal(mi_option_get(mi_option_reserve_os_memory), -3);
  assert_int_equal(mi_option_get_size(mi_option_reserve_os_memory), 0);
  mi_option_set(mi_option_reserve_os_memory, 0);
  /* an option that is not in KiB reads back unscaled */
  if (!env_has("purge_delay") && !env_has("reset_delay")) {
    assert_int_equal(mi_option_get_size(mi_option_purge_delay), 10);
  }
}

static void test_set_overrides_and_get_reads_back(void** state) {
  (void)state;
  long old = mi_option_get(mi_option_os_tag);
  mi_option_set(mi_option_os_tag, 150);
  assert_int_equal(mi_option_get(mi_option_os_tag), 150);
  mi_option_set(mi_option_os_tag, -7);
  assert_int_equal(mi_option_get(mi_option_os_tag), -7);
  mi_option_set(mi_option_os_tag, LONG_MAX);
  assert_true(mi_option_get(mi_option_os_tag) == LONG_MAX);
  mi_option_set(mi_option_os_tag, old);
  assert_int_equal(mi_option_get(mi_option_os_tag), old);
  /* reading through a legacy enum name reads the same option */
  mi_option_set(mi_option_purge_delay, 33);
  assert_int_equal(mi_option_get(mi_option_reset_delay), 33);
  mi_option_set(mi_option_reset_delay, 10);
  assert_int_equal(mi_option_get(mi_option_purge_delay), 10);
}

static void test_set_default_only_affects_options_nobody_set(void** state) {
  (void)state;
  if (env_has("deprecated_segment_cache")) skip();
  /* untouched: the new default is the value */
  assert_int_equal(mi_option_get(mi_option_deprecated_segment_cache), 0);
  mi_option_set_default(mi_option_deprecated_segment_cache, 7);
  assert_int_equal(mi_option_get(mi_option_deprecated_segment_cache), 7);
  mi_option_set_default(mi_option_deprecated_segment_cache, 8); /* still a default: changes */
  assert_int_equal(mi_option_get(mi_option_deprecated_segment_cache), 8);
  /* once the program set it, a default no longer applies */
  mi_option_set(mi_option_deprecated_segment_cache, 3);
  mi_option_set_default(mi_option_deprecated_segment_cache, 9);
  assert_int_equal(mi_option_get(mi_option_deprecated_segment_cache), 3);
  mi_option_set(mi_option_deprecated_segment_cache, 0);
  mi_option_set_default(mi_option_deprecated_segment_cache, 0);
  assert_int_equal(mi_option_get(mi_option_deprecated_segment_cache), 0);
}

static void test_set_enabled_default_only_affects_options_nobody_set(void** state) {
  (void)state;
  if (env_has("deprecated_segment_reset")) skip();
  assert_false(mi_option_is_enabled(mi_option_deprecated_segment_reset));
  mi_option_set_enabled_default(mi_option_deprecated_segment_reset, true);
  assert_true(mi_option_is_enabled(mi_option_deprecated_segment_reset));
  assert_int_equal(mi_option_get(mi_option_deprecated_segment_reset), 1);
  mi_option_set_enabled_default(mi_option_deprecated_segment_reset, false);
  assert_false(mi_option_is_enabled(mi_option_deprecated_segment_reset));
  /* set by the program: the default is ignored */
  mi_option_enable(mi_option_deprecated_segment_reset);
  mi_option_set_enabled_default(mi_option_deprecated_segment_reset, false);
  assert_true(mi_option_is_enabled(mi_option_deprecated_segment_reset));
  mi_option_disable(mi_option_deprecated_segment_reset);
  mi_option_set_enabled_default(mi_option_deprecated_segment_reset, true);
  assert_false(mi_option_is_enabled(mi_option_deprecated_segment_reset));
}

static void test_enable_disable_and_set_enabled(void** state) {
  (void)state;
  mi_option_t o = mi_option_deprecated_page_reset;
  long old = mi_option_get(o);
  mi_option_enable(o);
  assert_true(mi_option_is_enabled(o));
  assert_int_equal(mi_option_get(o), 1);
  mi_option_disable(o);
  assert_false(mi_option_is_enabled(o));
  assert_int_equal(mi_option_get(o), 0);
  mi_option_set_enabled(o, true);
  assert_true(mi_option_is_enabled(o));
  mi_option_set_enabled(o, false);
  assert_false(mi_option_is_enabled(o));
  /* any nonzero value counts as enabled, negative ones too */
  mi_option_set(o, 42);
  assert_true(mi_option_is_enabled(o));
  mi_option_set(o, -1);
  assert_true(mi_option_is_enabled(o));
  mi_option_set(o, old);
}

static void test_get_clamp(void** state) {
  (void)state;
  mi_option_t o = mi_option_os_tag;
  long old = mi_option_get(o);
  mi_option_set(o, 100);
  assert_int_equal(mi_option_get_clamp(o, 0, 50), 50);
  assert_int_equal(mi_option_get_clamp(o, 200, 255), 200);
  assert_int_equal(mi_option_get_clamp(o, 0, 255), 100);
  assert_int_equal(mi_option_get_clamp(o, 100, 100), 100);
  mi_option_set(o, -5);
  assert_int_equal(mi_option_get_clamp(o, 0, 10), 0);
  assert_int_equal(mi_option_get_clamp(o, -10, 10), -5);
  assert_int_equal(mi_option_get(o), -5); /* clamping does not change the option */
  mi_option_set(o, old);
}

static void test_out_of_range_options_are_ignored(void** state) {
  (void)state;
  assert_int_equal(mi_option_get((mi_option_t)_mi_option_last), 0);
  assert_int_equal(mi_option_get((mi_option_t)-1), 0);
  assert_false(mi_option_is_enabled((mi_option_t)_mi_option_last));
  mi_option_set((mi_option_t)_mi_option_last, 5);
  mi_option_set_default((mi_option_t)(_mi_option_last + 3), 5);
  mi_option_enable((mi_option_t)-2);
  assert_int_equal(mi_option_get((mi_option_t)_mi_option_last), 0);
  /* and the real options are untouched */
  if (!env_has("os_tag")) assert_int_equal(mi_option_get(mi_option_os_tag), 100);
}

static void test_no_warning_without_variables(void** state) {
  (void)state;
  if (env_has_any_mimalloc()) skip();
  assert_null(strstr(captured, "warning"));
  assert_null(strstr(captured, "error"));
  exercise_allocator();
}

/* ======================================================================================= */
/* ---- mode "env" ------------------------------------------------------------------------- */
/* ======================================================================================= */

static int g_argc;
static char** g_argv;

/* (long long: a byte size above 2 GiB does not fit a long on 32-bit targets) */
static long long parse_long(const char* s) {
  char* end = NULL;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno != 0 || end == s || *end != 0) fail_msg("bad number in expectation: \"%s\"", s);
  return v;
}

/* Splits "NAME=VALUE" (after an optional prefix) into the option and the number. */
static const option_info_t* split_expectation(const char* arg, long long* value) {
  char name[128];
  const char* eq = strchr(arg, '=');
  if (eq == NULL || (size_t)(eq - arg) >= sizeof(name)) fail_msg("bad expectation: \"%s\"", arg);
  memcpy(name, arg, (size_t)(eq - arg));
  name[eq - arg] = 0;
  const option_info_t* o = option_by_name(name);
  if (o == NULL) fail_msg("unknown option in expectation: \"%s\"", name);
  *value = parse_long(eq + 1);
  return o;
}

static void test_env_values_are_read(void** state) {
  (void)state;
  size_t checked = 0;
  for (int i = 2; i < g_argc; i++) {
    const char* a = g_argv[i];
    long long want;
    if (strncmp(a, "size:", 5) == 0) {
      const option_info_t* o = split_expectation(a + 5, &want);
      size_t got = mi_option_get_size(o->option);
      /* a size past SIZE_MAX (1 TiB on a 32-bit target) saturates */
      size_t expect = (unsigned long long)want > SIZE_MAX ? SIZE_MAX : (size_t)want;
      if (got != expect) print_error("%s: size %zu, expected %zu\n", o->name, got, expect);
      assert_int_equal(got, expect);
      checked++;
    } else if (strncmp(a, "default:", 8) == 0) {
      const option_info_t* o = option_by_name(a + 8);
      if (o == NULL) fail_msg("unknown option: \"%s\"", a + 8);
      long got = mi_option_get(o->option);
      if (got != o->def) print_error("%s: %ld, expected the default %ld\n", o->name, got, o->def);
      assert_int_equal(got, o->def);
      checked++;
    } else if (strchr(a, ':') == NULL) {
      const option_info_t* o = split_expectation(a, &want);
      long got = mi_option_get(o->option);
      if (got != want) print_error("%s: %ld, expected %lld\n", o->name, got, want);
      assert_int_equal(got, want);
      assert_int_equal(mi_option_is_enabled(o->option), want != 0);
      checked++;
    }
  }
  assert_true(checked > 0);
}

static void test_env_set_options_ignore_set_default(void** state) {
  (void)state;
  for (int i = 2; i < g_argc; i++) {
    const char* a = g_argv[i];
    if (strchr(a, ':') != NULL) continue;
    long long want;
    const option_info_t* o = split_expectation(a, &want);
    /* the environment set it: a program default does not apply */
    mi_option_set_default(o->option, (long)want + 1);
    assert_int_equal(mi_option_get(o->option), want);
    mi_option_set_enabled_default(o->option, want == 0);
    assert_int_equal(mi_option_get(o->option), want);
    /* but the program itself may still change it */
    mi_option_set(o->option, want + 1);
    assert_int_equal(mi_option_get(o->option), want + 1);
    mi_option_set(o->option, want);
    assert_int_equal(mi_option_get(o->option), want);
  }
}

static void test_env_messages(void** state) {
  (void)state;
  for (int i = 2; i < g_argc; i++) {
    const char* a = g_argv[i];
    if (strncmp(a, "warn:", 5) == 0) {
      size_t n = count_occurrences(captured, a + 5);
      if (n != 1) {
        print_error("expected \"%s\" once in the messages, found it %zu times; messages:\n%s\n",
                    a + 5, n, captured);
      }
      assert_int_equal(n, 1);
    } else if (strncmp(a, "nowarn:", 7) == 0) {
      if (strstr(captured, a + 7) != NULL) {
        print_error("did not expect \"%s\" in the messages:\n%s\n", a + 7, captured);
      }
      assert_null(strstr(captured, a + 7));
    }
  }
}

static void test_env_allocator_still_works(void** state) {
  (void)state;
  exercise_allocator();
}

/* ---- an allocation before the library's constructor ------------------------------------ */

/* With LM_TEST_EARLY_ALLOC=1 in the environment, this runs before the library's own
 * constructor (a lower priority number runs first), as a program's early constructor does, or
 * libc's own allocations under LD_PRELOAD: the first allocation starts the process (and reads
 * the options); then the program sets an option. The library's later start-up must neither
 * print the environment's warnings again nor undo what the program set. */
__attribute__((constructor(101))) static void allocate_before_the_library_constructor(void) {
  const char* e = getenv("LM_TEST_EARLY_ALLOC");
  if (e == NULL || strcmp(e, "1") != 0) return;
  void* p = mi_malloc(32);
  mi_free(p);
  mi_option_set(mi_option_os_tag, 200);
}

/* ---- main ------------------------------------------------------------------------------------ */

int main(int argc, char** argv) {
  /* Before anything else: collects (by replay) what the library printed while starting. */
  mi_register_output(capture_sink, NULL);
  g_argc = argc;
  g_argv = argv;
  const char* mode = argc > 1 ? argv[1] : "defaults";
  if (strcmp(mode, "defaults") == 0) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_matches_the_enum),
        cmocka_unit_test(test_every_option_has_the_spec_default),
        cmocka_unit_test(test_no_warning_without_variables),
        cmocka_unit_test(test_sizes_of_the_kib_options_are_in_bytes),
        cmocka_unit_test(test_set_overrides_and_get_reads_back),
        cmocka_unit_test(test_set_default_only_affects_options_nobody_set),
        cmocka_unit_test(test_set_enabled_default_only_affects_options_nobody_set),
        cmocka_unit_test(test_enable_disable_and_set_enabled),
        cmocka_unit_test(test_get_clamp),
        cmocka_unit_test(test_out_of_range_options_are_ignored),
    };
    return cmocka_run_group_tests_name("options-defaults", tests, NULL, NULL);
  }
  if (strcmp(mode, "env") == 0) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_env_messages),
        cmocka_unit_test(test_env_values_are_read),
        cmocka_unit_test(test_env_set_options_ignore_set_default),
        cmocka_unit_test(test_env_allocator_still_works),
    };
    return cmocka_run_group_tests_name("options-env", tests, NULL, NULL);
  }
  fprintf(stderr, "usage: %s [defaults | env EXPECTATION...]\n", argv[0]);
  return 2;
}
