/* Options that change behaviour, each observed from outside (statistics, /proc, prctl).
 * Options are read when the process starts, so each case is its own run with its environment
 * (tests/api/meson.build): `test_option_effects MODE`. Every mode checks what the environment
 * it runs under must give, reading the same variables, so one mode serves the option on and
 * off. Public headers only, static library. */
#define _GNU_SOURCE
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cmocka.h>

#include "mimalloc-stats.h"
#include "mimalloc.h"
#include "observe.h"

#define KiB ((size_t)1024)
#define MiB (1024 * KiB)

static long env_long(const char* name, long otherwise) {
  const char* v = getenv(name);
  return v != NULL && *v != 0 ? strtol(v, NULL, 10) : otherwise;
}


static void* run_thread(void* (*fn)(void*), void* arg) {
  pthread_t t;
  void* result = NULL;
  assert_int_equal(pthread_create(&t, NULL, fn, arg), 0);
  assert_int_equal(pthread_join(t, &result), 0);
  return result;
}

/* ---- allow_thp ------------------------------------------------------------------------------- */
/* MIMALLOC_ALLOW_THP=0 turns transparent huge pages off for the process. */
static void test_allow_thp(void** state) {
  (void)state;
  mi_free(mi_malloc(8));
  int disabled = prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0);
  /* (the setting is inherited: the test command's shell leaves THP allowed) */
  assert_int_equal(disabled, env_long("MIMALLOC_ALLOW_THP", 1) == 0 ? 1 : 0);
}

/* ---- allow_large_os_pages --------------------------------------------------------------------- */
/* The VmFlags of the mapping that holds p: "hg" is MADV_HUGEPAGE, "ht" a hugetlb mapping. */
static bool mapping_flags(const void* p, char* flags, size_t size) { /* size >= 512 */
  FILE* f = fopen("/proc/self/smaps", "r");
  if (f == NULL) return false;
  char line[512];
  bool inside = false, found = false;
  while (fgets(line, sizeof(line), f) != NULL) {
    unsigned long lo, hi;
    if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
      inside = (uintptr_t)p >= lo && (uintptr_t)p < hi;
    } else if (inside && strncmp(line, "VmFlags:", 8) == 0) {
      snprintf(flags, size, "%.500s", line + 8);
      found = true;
      break;
    }
  }
  fclose(f);
  return found;
}

static bool has_flag(const char* flags, const char* flag) {
  char padded[8];
  snprintf(padded, sizeof(padded), " %s", flag);
  return strstr(flags, padded) != NULL;
}

static void test_allow_large_os_pages(void** state) {
  (void)state;
  if (access("/sys/kernel/mm/transparent_hugepage", F_OK) != 0) skip(); /* no THP in this kernel */
  void* p = mi_malloc(100);
  assert_non_null(p);
  char flags[512] = "";
  assert_true(mapping_flags(p, flags, sizeof(flags)));
  bool large = has_flag(flags, "hg") || has_flag(flags, "ht");
  if (env_long("MIMALLOC_ALLOW_LARGE_OS_PAGES", 0) != 0) {
    if (!large) fprintf(stderr, "VmFlags of the arena: %s", flags);
    assert_true(large);
  } else {
    assert_false(large); /* small heaps must not be backed by 2 MiB pages behind our back */
  }
  mi_free(p);
}

/* ---- eager_commit_delay ----------------------------------------------------------------------- */
/* With arenas not committed up front, a thread's first segments are committed page by page
 * when eager_commit_delay > 0, and whole (32 MiB) when it is 0. */
static void* one_small_block(void* arg) {
  mi_stats_t* before = arg;
  get_stats(before);
  void* p = mi_malloc(64);
  mi_stats_t* during = malloc(sizeof(mi_stats_t)); /* (ours too: static link) */
  get_stats(during);
  mi_free(p);
  return during;
}

static void test_eager_commit_delay(void** state) {
  (void)state;
  assert_int_equal(env_long("MIMALLOC_ARENA_EAGER_COMMIT", 2), 0);
  mi_stats_t before;
  mi_stats_t* during = run_thread(one_small_block, &before);
  int64_t committed = during->committed.current - before.committed.current;
  free(during);
  if (env_long("MIMALLOC_EAGER_COMMIT_DELAY", 1) > 0) {
    assert_true(committed < 4 * (int64_t)MiB);
  } else {
    assert_true(committed >= 32 * (int64_t)MiB);
  }
}

/* ---- abandoned_page_purge --------------------------------------------------------------------- */
/* A thread's segment, left with free pages at exit: purged at once when abandoned with
 * abandoned_page_purge=1; otherwise its pending purge waits for the (long) delay. */
static void* leave_free_pages(void* arg) {
  void** keep = arg;
  void* blocks[2048];
  for (size_t i = 0; i < 2048; i++) blocks[i] = mi_malloc(1000); /* ~2 MiB of pages */
  *keep = blocks[0];
  for (size_t i = 1; i < 2048; i++) mi_free(blocks[i]);
  mi_collect(false); /* the empty pages go back to the segment, to be purged after the delay */
  return NULL;
}

static void test_abandoned_page_purge(void** state) {
  (void)state;
  assert_true(env_long("MIMALLOC_PURGE_DELAY", 10) >= 5000);
  mi_stats_t before, after;
  get_stats(&before);
  void* keep = NULL;
  run_thread(leave_free_pages, &keep);
  get_stats(&after);
  int64_t purged = after.purged.total - before.purged.total;
  if (env_long("MIMALLOC_ABANDONED_PAGE_PURGE", 0) != 0) assert_true(purged >= (int64_t)MiB);
  else assert_int_equal(purged, 0);
  mi_free(keep);
}

/* ---- abandoned_reclaim_on_free ---------------------------------------------------------------- */
enum { HANDED = 200 };
typedef struct handed_s {
  void* plain[HANDED];
  void* aligned[HANDED]; /* interior pointers of 128-byte blocks */
} handed_t;

static void* hand_over(void* arg) {
  handed_t* h = arg;
  for (size_t i = 0; i < HANDED; i++) {
    h->plain[i] = mi_malloc(100);
    h->aligned[i] = mi_malloc_aligned(100, 64);
    memset(h->plain[i], 0x11, 100);
    memset(h->aligned[i], 0x22, 100);
  }
  return NULL;
}

static void test_abandoned_reclaim_on_free(void** state) {
  (void)state;
  static handed_t h;
  run_thread(hand_over, &h);
  mi_stats_t before, after;
  get_stats(&before);
  assert_true(before.segments_abandoned.current >= 1);
  mi_free(h.aligned[0]); /* the first free into the exited thread's segment */
  get_stats(&after);
  int64_t taken = before.segments_abandoned.current - after.segments_abandoned.current;
  if (env_long("MIMALLOC_ABANDONED_RECLAIM_ON_FREE", 0) != 0) assert_true(taken >= 1);
  else assert_int_equal(taken, 0);
  /* Either way the blocks stay sound: free the rest (interior pointers included, now local
   * frees when the segment was taken over), then allocate the class again and check that no
   * two blocks overlap. */
  for (size_t i = 1; i < HANDED; i++) mi_free(h.aligned[i]);
  for (size_t i = 0; i < HANDED; i++) mi_free(h.plain[i]);
  static unsigned char* fresh[4 * HANDED];
  for (size_t i = 0; i < 4 * HANDED; i++) {
    fresh[i] = mi_malloc(100);
    assert_non_null(fresh[i]);
    memset(fresh[i], (int)(i & 0xFF), 100);
  }
  for (size_t i = 0; i < 4 * HANDED; i++) {
    for (size_t j = 0; j < 100; j++) {
      if (fresh[i][j] != (unsigned char)(i & 0xFF)) fail_msg("block %zu overlaps another", i);
    }
  }
  for (size_t i = 0; i < 4 * HANDED; i++) mi_free(fresh[i]);
}

/* ---- target_segments_per_thread --------------------------------------------------------------- */
/* A thread holding several segments, most of them nearly empty, gives the emptiest up while it
 * runs when it is above the target. */
static void* spread_over_segments(void* arg) {
  (void)arg;
  /* 100 MiB of 1 KiB blocks: four segments. 40 MiB in a 32-bit process: a thread at its target
   * gives up each fresh segment after a few pages (the one with the fewest pages in use) and
   * takes a new one, so 100 MiB spread this way took about 120 segments, more than 4 GiB of
   * address space holds; 40 MiB peaks at about 35. */
  const size_t N = (sizeof(void*) == 8 ? 100 : 40) * 1024;
  void** blocks = mi_malloc(N * sizeof(void*));
  for (size_t i = 0; i < N; i++) blocks[i] = mi_malloc(1000);
  for (size_t i = 0; i < N; i++) {
    if (i % 64 != 0) mi_free(blocks[i]); /* every segment keeps a few live pages */
  }
  for (size_t i = 0; i < 1000; i++) mi_free(mi_malloc(4000 + i)); /* slow paths: housekeeping */
  mi_stats_t* st = malloc(sizeof(mi_stats_t));
  get_stats(st);
  for (size_t i = 0; i < N; i += 64) mi_free(blocks[i]);
  mi_free(blocks);
  return st;
}

static void test_target_segments_per_thread(void** state) {
  (void)state;
  mi_stats_t before;
  get_stats(&before);
  mi_stats_t* during = run_thread(spread_over_segments, NULL);
  int64_t given_up = during->segments_abandoned.current - before.segments_abandoned.current;
  free(during);
  if (env_long("MIMALLOC_TARGET_SEGMENTS_PER_THREAD", 0) > 0) assert_true(given_up >= 1);
  else assert_int_equal(given_up, 0);
}

int main(int argc, char** argv) {
  const char* mode = argc > 1 ? argv[1] : "";
  const struct CMUnitTest all[] = {
      cmocka_unit_test(test_allow_thp),
      cmocka_unit_test(test_allow_large_os_pages),
      cmocka_unit_test(test_eager_commit_delay),
      cmocka_unit_test(test_abandoned_page_purge),
      cmocka_unit_test(test_abandoned_reclaim_on_free),
      cmocka_unit_test(test_target_segments_per_thread),
  };
  static const char* const modes[] = {"thp", "large", "eager-delay", "abandoned-purge",
                                      "reclaim-on-free", "target-segments"};
  for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
    if (strcmp(mode, modes[i]) == 0) {
      return _cmocka_run_group_tests(modes[i], &all[i], 1, NULL, NULL);
    }
  }
  fprintf(stderr, "usage: %s thp|large|eager-delay|abandoned-purge|reclaim-on-free|target-segments\n",
          argv[0]);
  return 2;
}
