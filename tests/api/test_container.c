/* The allocator under a simulated container memory limit, through the public API.
 *
 *   test_container aware|off|inline
 *
 * The program writes a cgroup v2 tree in a scratch folder (a 1 GiB memory.max, a CPU quota of
 * one CPU, and memory.current, which it sets itself to stand for the kernel's accounting), then
 * runs itself again with MIMALLOC_CGROUP_ROOT pointing there and MIMALLOC_PURGE_DELAY=5000, so
 * that freed memory normally waits 5 s or more for its purge (longer than the whole test, so
 * no purge falls due while it looks). Then:
 *   0. the limits are read by the first purger pass, not at start;
 *   1. usage at 10%: freed memory waits (nothing purged within 300 ms);
 *   2. usage at 95%: freed memory, and what was waiting, is purged within 2 s, and verbose
 *      output says so once ("off": MIMALLOC_CONTAINER_AWARE=0, nothing changes);
 *   3. usage back at 10%: verbose output says the delays apply again, and they do.
 * "aware" and "off" have a second thread (the background purger runs); "inline" stays
 * single-threaded (purges run on the allocating thread's slow paths). Real cgroups are never
 * touched.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <mimalloc-stats.h>
#include <mimalloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../support/check.h"

#define MiB ((size_t)1 << 20)
#define LIMIT (1024 * MiB)

static char root[256];
static const char* mode;

static void put(const char* rel, const char* text) {
  char path[512];
  snprintf(path, sizeof(path), "%s/%s", root, rel);
  for (char* p = path + strlen(root) + 1; *p != 0; p++) { /* mkdir -p */
    if (*p != '/') continue;
    *p = 0;
    mkdir(path, 0755);
    *p = '/';
  }
  FILE* f = fopen(path, "w");
  if (f == NULL) {
    perror(path);
    exit(2);
  }
  fputs(text, f);
  fclose(f);
}

static void set_usage(size_t bytes) {
  char text[32];
  snprintf(text, sizeof(text), "%zu\n", bytes);
  put("sys/fs/cgroup/job/memory.current", text);
}

/* ---- output capture (the purger thread writes too) ------------------------------------------ */
static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;
static char out[64 * 1024];
static size_t out_len;
static void capture(const char* msg, void* arg) {
  (void)arg;
  pthread_mutex_lock(&out_lock);
  size_t n = strlen(msg);
  if (out_len + n >= sizeof(out)) n = sizeof(out) - 1 - out_len;
  memcpy(out + out_len, msg, n);
  out_len += n;
  out[out_len] = 0;
  pthread_mutex_unlock(&out_lock);
}
static size_t said(const char* needle) {
  pthread_mutex_lock(&out_lock);
  size_t n = 0;
  for (const char* p = out; (p = strstr(p, needle)) != NULL; p += strlen(needle)) n++;
  pthread_mutex_unlock(&out_lock);
  return n;
}

static long long purged(void) {
  mi_stats_t_decl(st);
  mi_stats_get(&st);
  return st.purged.total;
}

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* Single-threaded, purges happen on slow paths (a page allocated or freed, a collect): give it
 * some, as a program that keeps working would. */
static void slow_paths(void) {
  void* p = mi_malloc(300 * 1024);
  if (p != NULL) memset(p, 2, 4096);
  mi_free(p);
  mi_collect(false);
}

/* 48 MiB in 1 MiB blocks, touched, then freed: memory that waits for its purge. */
static void churn(void) {
  void* blocks[48];
  for (int i = 0; i < 48; i++) {
    blocks[i] = mi_malloc(MiB);
    if (blocks[i] != NULL) memset(blocks[i], 1, MiB);
  }
  for (int i = 0; i < 48; i++) mi_free(blocks[i]);
}

/* Wait up to `ms` for `bytes` more to be purged than at `base`; true if it happened.
 * `*seen` gets how much more was purged by then. */
static bool purged_within(long long base, long long bytes, long ms, long long* seen) {
  for (long t = 0; t <= ms; t += 10) {
    if (purged() >= base + bytes) break;
    slow_paths();
    sleep_ms(10);
  }
  *seen = purged() - base;
  return *seen >= bytes;
}

static void* idle_thread(void* arg) {
  void* volatile p = mi_malloc(64); /* volatile: the pair must not be folded away */
  mi_free(p); /* the program now has a thread of its own: the purger may start */
  return arg;
}

static int run(void) {
  bool aware = strcmp(mode, "off") != 0;
  mi_register_output(capture, NULL);
  if (strcmp(mode, "inline") != 0) {
    pthread_t t;
    pthread_create(&t, NULL, idle_thread, NULL);
    pthread_join(t, NULL);
  }
  /* The limits are read by the first purger pass, not at start: single-threaded, not before
   * something waits for its purge (step 1); with threads, by the background purger's first
   * pass, at a time of its own. */
  if (strcmp(mode, "inline") == 0) {
    check(said("container: memory limit") == 0, "limit not read at start", 0);
  }

  /* 1. far from the limit: freed memory waits for its delay. (With threads, the first churn
   * takes fresh memory while the idle thread's emptied segment waits for its purge, so the
   * purger gives that back at once, to make up for it: let that pass before counting.) */
  set_usage(100 * MiB);
  if (strcmp(mode, "inline") != 0) {
    long long before = purged(), settled = 0;
    churn();
    purged_within(before, 1, 300, &settled);
  }
  long long base = purged();
  churn();
  long long seen = 0;
  bool gone = purged_within(base, 16 * MiB, 300, &seen);
  check(!gone, "10%: freed memory waits", seen);
  check(said("container: memory limit 1024 MiB") == (aware ? 1 : 0), "limit read by now", 0);
  check(said("caches sized for 1 cpus") == (aware ? 1 : 0), "caches sized from the quota", 0);

  /* 2. near the limit */
  set_usage(LIMIT / 100 * 95);
  base = purged();
  churn();
  const char* on = "freed memory is purged at once instead of after the delay";
  if (aware) {
    /* the 48 MiB just freed (what waited from step 1 was mostly taken again by churn) */
    gone = purged_within(base, 40 * MiB, 2000, &seen);
    check(gone, "95%: freed memory purged at once", seen);
    check(said(on) == 1, "95%: said once", (long long)said(on));
  } else {
    gone = purged_within(base, 16 * MiB, 300, &seen);
    check(!gone, "off: freed memory still waits", seen);
    check(said(on) == 0, "off: nothing said", 0);
  }

  /* 3. back far from the limit: delays again */
  set_usage(100 * MiB);
  const char* off = "purges wait for their delay";
  if (aware) {
    bool back = false;
    for (int i = 0; i < 100 && !back; i++) {
      slow_paths();
      sleep_ms(10);
      back = said(off) == 1;
    }
    check(back, "10% again: said", 0);
  }
  base = purged();
  churn();
  gone = purged_within(base, 16 * MiB, 300, &seen);
  check(!gone, "10% again: freed memory waits", seen);

  if (failed != 0) fputs(out, stdout);
  printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}

int main(int argc, char** argv) {
  mode = argc > 1 ? argv[1] : "aware";
  if (getenv("MIMALLOC_CGROUP_ROOT") != NULL) {
    snprintf(root, sizeof(root), "%s", getenv("MIMALLOC_CGROUP_ROOT"));
    return run();
  }
  /* the simulated tree, then the same program over it */
  snprintf(root, sizeof(root), "%s/lm-container-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
  if (mkdtemp(root) == NULL) return 2;
  char limit[32];
  snprintf(limit, sizeof(limit), "%zu\n", LIMIT);
  put("proc/self/cgroup", "0::/job\n");
  put("sys/fs/cgroup/cgroup.controllers", "cpu memory\n");
  put("sys/fs/cgroup/job/memory.max", limit);
  put("sys/fs/cgroup/job/memory.high", "max\n");
  put("sys/fs/cgroup/job/cpu.max", "100000 100000\n");
  set_usage(100 * MiB);
  pid_t pid = fork();
  if (pid == 0) {
    setenv("MIMALLOC_CGROUP_ROOT", root, 1);
    setenv("MIMALLOC_PURGE_DELAY", "5000", 1);
    setenv("MIMALLOC_VERBOSE", "1", 1);
    if (strcmp(mode, "off") == 0) setenv("MIMALLOC_CONTAINER_AWARE", "0", 1);
    execv("/proc/self/exe", argv);
    _exit(2);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  char cmd[300];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
  if (system(cmd) != 0) return 2;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}
