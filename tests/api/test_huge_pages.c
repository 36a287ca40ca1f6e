/* Huge OS pages on the real backend, through the public API only.
 *
 *   test_huge_pages compiled|disabled [start]
 *
 * Run with MIMALLOC_VERBOSE=1 and MIMALLOC_ALLOW_LARGE_OS_PAGES=1. What to expect depends on
 * the machine, which is read and never changed: the pools of free 1 GiB and 2 MiB pages
 * (vm.nr_hugepages, set aside by an administrator) and the transparent huge page mode. On a
 * machine without pools (the usual case) every request for explicit pages must fail with
 * ENOMEM and a message saying why; with pools, they must succeed and be counted. "disabled"
 * is a build with -Dhuge_pages=disabled: nothing explicit is ever had, and it says so.
 * "start": run with MIMALLOC_RESERVE_HUGE_OS_PAGES=1 instead; only checks what process start
 * made of that request (a 1 GiB arena, or a message saying why there is none).
 */
#include <errno.h>
#include <mimalloc-stats.h>
#include <mimalloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../support/check.h"
#include "../support/proc_self.h"

#define MiB ((size_t)1 << 20)

static char out[64 * 1024];
static size_t out_len;
static void capture(const char* msg, void* arg) {
  (void)arg;
  size_t n = strlen(msg);
  if (out_len + n >= sizeof(out)) n = sizeof(out) - 1 - out_len;
  memcpy(out + out_len, msg, n);
  out_len += n;
  out[out_len] = 0;
}

static size_t occurrences(const char* hay, const char* needle) {
  size_t n = 0;
  for (const char* p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle)) n++;
  return n;
}

static bool thp_possible(void) {
  char mode[96] = {0};
  FILE* f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
  if (f == NULL) return false;
  size_t n = fread(mode, 1, sizeof(mode) - 1, f);
  fclose(f);
  mode[n] = 0;
  return strstr(mode, "[never]") == NULL;
}

/* A number after "key": in the statistics' JSON. */
static long long json_number(const char* json, const char* key) {
  char k[64];
  snprintf(k, sizeof(k), "\"%s\": ", key);
  const char* p = strstr(json, k);
  return p == NULL ? -1 : atoll(p + strlen(k));
}

int main(int argc, char** argv) {
  bool compiled = argc > 1 && strcmp(argv[1], "compiled") == 0;
  mi_register_output(capture, NULL); /* replays what was said at start */
  char json[64 * 1024];

  if (argc > 2 && strcmp(argv[2], "start") == 0) {
    bool pool = sys_free_huge_pages(1024 * 1024) >= 1 || sys_free_huge_pages(2048) >= 512;
    check(mi_stats_get_json(sizeof(json), json) != NULL, "statistics as JSON", 0);
    long long had = json_number(json, "explicit_current");
    if (compiled && pool) {
      check(had >= (long long)(1024 * MiB), "1 GiB reserved at start", had);
    } else {
      check(had == 0, "nothing reserved at start", had);
      check(strstr(out, compiled ? "none could be had" : "compiled out") != NULL,
            "start says why", 0);
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
  }

  /* 1. allow_large_os_pages (from the environment): arenas asked for large pages at start. */
  check(mi_option_is_enabled(mi_option_allow_large_os_pages), "allow_large_os_pages is set", 0);
  bool pool_2m = sys_free_huge_pages(2048) >= 64; /* covers a 64 MiB arena with room to spare */
  mi_arena_id_t id = 0;
  check(mi_reserve_os_memory_ex(64 * MiB, true, true, true, &id) == 0, "64 MiB arena", 0);
  mi_heap_t* heap = mi_heap_new_in_arena(id);
  check(heap != NULL, "heap in the arena", 0);
  size_t big = 20 * MiB;
  char* p = heap != NULL ? mi_heap_malloc(heap, big) : NULL;
  check(p != NULL, "20 MiB from the arena", 0);
  if (p != NULL) memset(p, 1, big);
  check(mi_stats_get_json(sizeof(json), json) != NULL, "statistics as JSON", 0);
  long long explicit_now = json_number(json, "explicit_current");
  long long transparent = json_number(json, "transparent_asked");
  long long resident = json_number(json, "resident");
  const char* missed = "large OS pages asked for (allow_large_os_pages)";
  if (!compiled) {
    check(explicit_now == 0 && transparent == 0, "compiled out: no large arena", transparent);
    check(occurrences(out, missed) == 0, "compiled out: nothing asked for", 0);
  } else if (pool_2m) {
    check(explicit_now >= (long long)(64 * MiB), "explicit 2 MiB pages counted", explicit_now);
    check(occurrences(out, missed) == 0, "no notice when explicit pages were had", 0);
  } else {
    check(explicit_now == 0, "no explicit pages without a pool", explicit_now);
    check(transparent >= (long long)(64 * MiB), "transparent pages asked for", transparent);
    check(occurrences(out, missed) == 1, "one notice that explicit pages were missed",
          (long long)occurrences(out, missed));
    check(strstr(out, "transparent huge pages instead") != NULL, "the notice says what instead", 0);
    /* the kernel may refuse THP under fragmentation; in madvise/always mode it gives some */
    if (thp_possible()) check(resident >= (long long)(2 * MiB), "touched THP is resident", resident);
  }
  mi_free(p);
  mi_heap_delete(heap);

  /* 2. One 1 GiB page on node 0, within a second. */
  bool pool_1g = sys_free_huge_pages(1024 * 1024) >= 1 || sys_free_huge_pages(2048) >= 512;
  out_len = 0;
  out[0] = 0;
  int err = mi_reserve_huge_os_pages_at(1, 0, 1000);
  check(json_number(mi_stats_get_json(sizeof(json), json), "explicit_current") >= 0, "json", 0);
  if (compiled && pool_1g) {
    check(err == 0, "1 GiB page from the pool", err);
    check(json_number(json, "explicit_current") >= (long long)(1024 * MiB), "counted", 0);
  } else {
    check(err == ENOMEM, "no 1 GiB page: ENOMEM", err);
    check(strstr(out, compiled ? "none could be had" : "compiled out") != NULL,
          "the warning says why", 0);
  }

  /* 3. The printed statistics carry the huge-page line. */
  out_len = 0;
  mi_stats_print_out(capture, NULL);
  check(strstr(out, "huge pages: explicit:") != NULL, "statistics line", 0);

  printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
