/* single_thread: the preloaded allocator never makes a single-threaded program multi-threaded,
 * and still returns the memory it frees.
 *
 * 1. Allocate 64 MiB in large and small blocks, touching every page, free it all, wait past
 *    the purge delays and allocate once more (a slow path): the process must still have one
 *    thread (/proc/self/task), and its resident memory must have dropped by most of the 64 MiB
 *    (the purge ran inline, on the allocating thread).
 * 2. unshare(CLONE_NEWUSER) needs a single-threaded caller: it must not fail with EINVAL (what
 *    a helper thread causes). Where user namespaces are not allowed at all (EPERM, ENOSPC,
 *    ENOSYS) that check is reported as skipped.
 * 3. Once the program starts a thread of its own that allocates, a background purger may join
 *    it: after the thread is joined the process has at most two threads.
 *
 * Run under LD_PRELOAD=libmimalloc.so (exit 77 without it). Prints "N passed, N failed". */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../support/proc_self.h"
#include "../support/check.h"

#define MiB ((size_t)1024 * 1024)
#define LARGE_COUNT 64   /* blocks of 1 MiB - 8 (large pages in segments) */
#define SMALL_COUNT 8192 /* blocks of 1000 bytes */

static void* worker(void* arg) {
  (void)arg;
  for (int i = 0; i < 1000; i++) {
    char* p = malloc(100 + (size_t)i);
    if (p == NULL) return (void*)1;
    memset(p, i, 100);
    free(p);
  }
  return NULL;
}

int main(void) {
  if (getenv("LD_PRELOAD") == NULL) {
    printf("single_thread: run it under LD_PRELOAD=libmimalloc.so\n");
    return 77;
  }
  static char* large[LARGE_COUNT];
  static char* small[SMALL_COUNT];
  size_t before = proc_self_rss_bytes();
  for (int i = 0; i < LARGE_COUNT; i++) {
    large[i] = malloc(MiB - 8);
    if (large[i] != NULL) memset(large[i], 1, MiB - 8);
  }
  for (int i = 0; i < SMALL_COUNT; i++) {
    small[i] = malloc(1000);
    if (small[i] != NULL) memset(small[i], 2, 1000);
  }
  size_t peak = proc_self_rss_bytes();
  for (int i = 0; i < LARGE_COUNT; i++) free(large[i]);
  for (int i = 0; i < SMALL_COUNT; i++) free(small[i]);
  /* Past the segment purge delay and the arena's (10 ms x 10 by default), then one slow path:
   * a fresh large page. */
  size_t after = 0;
  for (int round = 0; round < 10; round++) {
    proc_sleep_ms(60);
    char* volatile fresh = malloc(4 * MiB); /* volatile: the pair must not be optimised away */
    free(fresh);
    after = proc_self_rss_bytes();
    if (after + (peak - before) / 2 < peak) break;
  }
  check(proc_self_threads() == 1, "threads after allocating and freeing 64 MiB", proc_self_threads());
  check(peak > before + 48 * MiB, "64 MiB allocated and touched (RSS growth, KiB)",
        (long)((peak - before) / 1024));
  check(after + (peak - before) / 2 < peak, "RSS after freeing, waiting and one malloc (KiB)",
        (long)(after / 1024));

  if (unshare(CLONE_NEWUSER) == 0) {
    check(true, "unshare(CLONE_NEWUSER)", 0);
  } else if (errno == EINVAL) {
    check(false, "unshare(CLONE_NEWUSER) failed with EINVAL (the process has threads)",
          proc_self_threads());
  } else {
    printf("skipped: unshare(CLONE_NEWUSER): %s (user namespaces not allowed here)\n",
           strerror(errno));
  }

  pthread_t t;
  void* result = (void*)1;
  check(pthread_create(&t, NULL, worker, NULL) == 0 && pthread_join(t, &result) == 0 &&
            result == NULL,
        "a worker thread allocates", 0);
  long after_join = proc_self_threads();
  check(after_join >= 1 && after_join <= 2, "threads after the worker ended", after_join);

  printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
