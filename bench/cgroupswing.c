/* cgroupswing: a live set that swings between size classes under a simulated container limit.
 *
 *   cgroupswing PHASES [LIVE_MIB=96] [LIMIT_MIB=128] [SEED=42]
 *
 * Each phase fills LIVE_MIB with blocks of one size class (24 B, 200 B, 3 KiB, 40 KiB or
 * 300 KiB, by turns), writes them, frees them all, and moves to the next class: memory freed by
 * one phase is wanted back by the next only as far as the allocator reuses it across classes,
 * and the rest waits for its purge. A sampler thread plays the kernel's part of a cgroup: every
 * 2 ms it writes the process's resident size into the simulated memory.current, and counts the
 * samples above the limit (memory.max = LIMIT_MIB) and above 90% of it.
 *
 * The simulated tree is the folder in MIMALLOC_CGROUP_ROOT (bench/run.py writes it); without
 * that variable the program writes one in a scratch folder and runs itself again over it.
 * Prints one line of figures (peak RSS, time, the share of samples over the limit and over
 * 90%), and malloc=PATH. Exit status 0 on success, 2 on bad arguments, 1 if malloc returned
 * NULL or a block lost its contents. Real cgroups are never touched.
 */
#include "bench.h" /* first: it sets _GNU_SOURCE */

#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define MiB (1024UL * 1024UL)

static const size_t class_sizes[] = {24, 200, 3 * 1024, 40 * 1024, 300 * 1024};
#define CLASSES (sizeof(class_sizes) / sizeof(class_sizes[0]))

static char usage_path[512];
static unsigned long limit_bytes;
static atomic_bool sampling = true;
static unsigned long samples, over_limit, over_90;
static unsigned long peak_rss;

/* RSS in bytes from /proc/self/statm, with read() (no stdio buffer in the sampler). */
static unsigned long rss_bytes(int statm) {
  char buf[128];
  ssize_t n = pread(statm, buf, sizeof(buf) - 1, 0);
  if (n <= 0) return 0;
  buf[n] = 0;
  const char* p = strchr(buf, ' ');
  return p == NULL ? 0 : strtoul(p + 1, NULL, 10) * (unsigned long)sysconf(_SC_PAGESIZE);
}

static void* sampler(void* arg) {
  (void)arg;
  int statm = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
  while (atomic_load(&sampling)) {
    unsigned long rss = rss_bytes(statm);
    char text[32];
    int len = snprintf(text, sizeof(text), "%lu\n", rss);
    int fd = open(usage_path, O_WRONLY | O_TRUNC | O_CLOEXEC);
    if (fd >= 0) {
      if (write(fd, text, (size_t)len) != len) { /* a short write is one stale sample */
      }
      close(fd);
    }
    samples++;
    if (rss > limit_bytes) over_limit++;
    if (rss / 9 > limit_bytes / 10) over_90++;
    if (rss > peak_rss) peak_rss = rss;
    bench_sleep_ms(2);
  }
  if (statm >= 0) close(statm);
  return NULL;
}

static int run(unsigned long phases, unsigned long live_mib, uint64_t seed) {
  pthread_t t;
  if (pthread_create(&t, NULL, sampler, NULL) != 0) BENCH_FAIL("cannot start the sampler");
  size_t max_blocks = live_mib * MiB / class_sizes[0] + 1;
  unsigned char** blocks = malloc(max_blocks * sizeof(*blocks));
  if (blocks == NULL) BENCH_FAIL("malloc failed");
  double t0 = bench_now();
  for (unsigned long ph = 0; ph < phases; ph++) {
    size_t size = class_sizes[(ph + bench_rnd(&seed) % 2) % CLASSES]; /* mostly the next class */
    size_t n = live_mib * MiB / size;
    for (size_t i = 0; i < n; i++) {
      blocks[i] = malloc(size);
      if (blocks[i] == NULL) BENCH_FAIL("malloc(%zu) returned NULL", size);
      memset(blocks[i], bench_tag(i), size);
    }
    for (size_t i = 0; i < n; i += 7) {
      if (blocks[i][size - 1] != bench_tag(i)) BENCH_FAIL("block %zu lost its contents", i);
    }
    for (size_t i = 0; i < n; i++) free(blocks[i]);
  }
  double elapsed = bench_now() - t0;
  free(blocks);
  bench_sleep_ms(20); /* a last few samples after the work */
  atomic_store(&sampling, false);
  pthread_join(t, NULL);
  printf("cgroupswing: phases=%lu live=%luMiB limit=%luMiB time=%.3fs peak_rss=%.1fMiB "
         "samples=%lu over_limit=%.1f%% over_90=%.1f%%\n",
         phases, live_mib, limit_bytes / MiB, elapsed, (double)peak_rss / MiB, samples,
         samples ? 100.0 * over_limit / samples : 0.0, samples ? 100.0 * over_90 / samples : 0.0);
  printf("malloc=%s\n", bench_malloc_provider());
  return 0;
}

static void put(const char* root, const char* rel, const char* text) {
  char path[600];
  snprintf(path, sizeof(path), "%s/%s", root, rel);
  for (char* p = path + strlen(root) + 1; *p != 0; p++) {
    if (*p != '/') continue;
    *p = 0;
    mkdir(path, 0755);
    *p = '/';
  }
  FILE* f = fopen(path, "w");
  if (f == NULL) BENCH_FAIL("cannot write %s", path);
  fputs(text, f);
  fclose(f);
}

int main(int argc, char** argv) {
  unsigned long long phases = 0, live = 96, limit = 128, seed = 42;
  if (argc < 2 || !bench_arg(argc, argv, 1, &phases) || !bench_arg(argc, argv, 2, &live) ||
      !bench_arg(argc, argv, 3, &limit) || !bench_arg(argc, argv, 4, &seed) || phases == 0 ||
      live == 0 || limit == 0) {
    fprintf(stderr, "usage: cgroupswing PHASES [LIVE_MIB=96] [LIMIT_MIB=128] [SEED=42]\n");
    return 2;
  }
  limit_bytes = (unsigned long)limit * MiB;
  const char* root = getenv("MIMALLOC_CGROUP_ROOT");
  char scratch[256] = "";
  if (root == NULL) { /* write a tree, and run again over it */
    snprintf(scratch, sizeof(scratch), "%s/cgroupswing-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (mkdtemp(scratch) == NULL) BENCH_FAIL("mkdtemp failed");
  }
  const char* tree = root != NULL ? root : scratch;
  char text[32];
  snprintf(text, sizeof(text), "%lu\n", limit_bytes);
  put(tree, "proc/self/cgroup", "0::/bench\n");
  put(tree, "sys/fs/cgroup/cgroup.controllers", "memory\n");
  put(tree, "sys/fs/cgroup/bench/memory.max", text);
  put(tree, "sys/fs/cgroup/bench/memory.current", "0\n");
  snprintf(usage_path, sizeof(usage_path), "%s/sys/fs/cgroup/bench/memory.current", tree);
  if (root != NULL) return run((unsigned long)phases, (unsigned long)live, seed);
  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0) {
    setenv("MIMALLOC_CGROUP_ROOT", scratch, 1);
    execv("/proc/self/exe", argv);
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  char cmd[300];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", scratch);
  if (system(cmd) != 0) return 1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}
