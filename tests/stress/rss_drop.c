/* rss_drop: freed memory goes back to the OS on its own, without the program calling into the
 * allocator again.
 *
 * Phase 1 (abandoned memory): several threads allocate about TOTAL MiB in small and medium
 *   blocks, touching every byte, and exit with the blocks live. The main thread frees every
 *   block (remote frees into abandoned pages) and then makes no allocator call at all -- no
 *   mi_collect -- while it polls resident memory (/proc/self/statm) for up to 1.5 s.
 * Phase 2 (idle owner): one thread allocates about TOTAL MiB, frees it all locally and then
 *   blocks on a condition variable; the main thread polls likewise.
 * Phase 3 (idle owner, remote frees): one thread allocates about TOTAL MiB and blocks; the main
 *   thread frees every block (into the full pages of a live thread that does not allocate) and
 *   polls likewise. Then the thread wakes, allocates as much again and checks every block: the
 *   pages given back while it slept are used again.
 * Each phase runs in a child process of its own and passes when RSS falls below baseline + 10%
 * of the peak growth within 1 s of the last free. The RSS timeline is printed afterwards (collected
 * first, so that printing does not disturb the measurement). Bookkeeping arrays are mmapped, not
 * allocated from the allocator.
 *
 * usage: rss_drop [total-MiB=256] [threads=4] [phase: 1, 2 or 3; default all]
 * Prints "N passed, N failed" (one check per phase); exit status 0 only when all passed. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mimalloc.h"
#include "rng.h"
#include "../support/proc_self.h"

#define MiB ((size_t)1024 * 1024)
#define MAX_THREADS 64
#define POLL_MS 20
#define POLL_TOTAL_MS 1500
#define DEADLINE_MS 1000
#define MAX_SAMPLES (POLL_TOTAL_MS / POLL_MS + 2)


static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static double mib(size_t bytes) {
  return (double)bytes / (double)MiB;
}

/* ---- a set of blocks, kept in an mmapped array ----------------------------------------------- */

struct block_set {
  void** ptrs;
  size_t count, cap, bytes;
};

static bool set_init(struct block_set* s, size_t cap) {
  void* mem =
      mmap(NULL, cap * sizeof(void*), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) return false;
  s->ptrs = mem;
  s->count = 0;
  s->cap = cap;
  s->bytes = 0;
  return true;
}

static void set_unmap(struct block_set* s) {
  munmap(s->ptrs, s->cap * sizeof(void*));
  s->ptrs = NULL;
}

/* Half the bytes in small blocks (16 B .. 1 KiB), half in medium ones (1 KiB .. 64 KiB); every
 * byte is written so it is resident. Returns false if an allocation failed. */
static bool fill_set(struct block_set* s, size_t target_bytes, uint64_t seed) {
  size_t small_target = target_bytes / 2;
  while (s->bytes < target_bytes && s->count < s->cap) {
    size_t size = s->bytes < small_target ? 16 + rng_next(&seed) % 1009
                                          : 1024 + rng_next(&seed) % (63 * 1024);
    void* p = mi_malloc(size);
    if (p == NULL) return false;
    memset(p, (int)(size & 0xFF) | 1, size);
    s->ptrs[s->count++] = p;
    s->bytes += size;
  }
  return true;
}

static void free_set(struct block_set* s) {
  for (size_t i = 0; i < s->count; i++) mi_free(s->ptrs[i]);
  s->count = 0;
}

/* Worst case pointers for `bytes` of small blocks averaging ~500 B, with margin. */
static size_t set_capacity(size_t bytes) {
  return bytes / 256 + 1024;
}

/* ---- polling and judging ------------------------------------------------------------------ */

struct sample {
  double t_ms; /* since the last free */
  size_t rss;
};

struct phase_result {
  const char* name;
  size_t baseline, peak, threshold;
  struct sample samples[MAX_SAMPLES];
  int n_samples;
  double passed_at_ms; /* < 0: never below the threshold within the deadline */
};

/* No allocator call in here. */
static void poll_rss(struct phase_result* r, double t_last_free) {
  r->n_samples = 0;
  r->passed_at_ms = -1;
  for (;;) {
    double t = now_ms() - t_last_free;
    size_t rss = proc_self_rss_bytes();
    if (r->n_samples < MAX_SAMPLES) r->samples[r->n_samples++] = (struct sample){t, rss};
    if (r->passed_at_ms < 0 && t <= DEADLINE_MS && rss < r->threshold) r->passed_at_ms = t;
    if (t >= POLL_TOTAL_MS) break;
    proc_sleep_ms(POLL_MS);
  }
}

static bool report(const struct phase_result* r) {
  printf("\n== %s\n", r->name);
  printf("baseline %.1f MiB, peak %.1f MiB (growth %.1f MiB), threshold %.1f MiB\n",
         mib(r->baseline), mib(r->peak), mib(r->peak - r->baseline), mib(r->threshold));
  printf("RSS after the last free (every %d ms; unchanged samples between 100 ms marks elided):\n",
         POLL_MS);
  size_t shown = SIZE_MAX;
  for (int i = 0; i < r->n_samples; i++) {
    const struct sample* s = &r->samples[i];
    bool changed = shown == SIZE_MAX || (s->rss > shown ? s->rss - shown : shown - s->rss) >= MiB;
    if (!changed && i % (100 / POLL_MS) != 0 && i != r->n_samples - 1) continue;
    printf("  t=%7.1f ms  rss=%8.1f MiB%s\n", s->t_ms, mib(s->rss),
           s->rss < r->threshold ? "  (below threshold)" : "");
    shown = s->rss;
  }
  bool ok = r->passed_at_ms >= 0;
  if (ok) {
    printf("PASS: %s: RSS below threshold %.1f ms after the last free\n", r->name, r->passed_at_ms);
  } else {
    printf("FAIL: %s: RSS stayed above %.1f MiB for %d ms after the last free\n", r->name,
           mib(r->threshold), DEADLINE_MS);
  }
  return ok;
}

static size_t threshold_of(size_t baseline, size_t peak) {
  return baseline + (peak > baseline ? (peak - baseline) / 10 : 0);
}

/* ---- phase 1: threads allocate and exit; main frees ------------------------------------------ */

struct alloc_job {
  struct block_set set;
  size_t target;
  uint64_t seed;
  bool ok;
};

static void* alloc_and_exit(void* arg) {
  struct alloc_job* job = arg;
  job->ok = fill_set(&job->set, job->target, job->seed);
  return NULL; /* exits with every block live: its pages are abandoned */
}

static bool phase_abandoned(size_t total, int n_threads, struct phase_result* r) {
  struct alloc_job jobs[MAX_THREADS];
  pthread_t tids[MAX_THREADS];
  r->name = "phase 1: blocks of exited threads freed by main";
  r->baseline = proc_self_rss_bytes();
  for (int i = 0; i < n_threads; i++) {
    jobs[i].target = total / (size_t)n_threads;
    jobs[i].seed = 0x1234567ull + (uint64_t)i * 7777;
    jobs[i].ok = false;
    if (!set_init(&jobs[i].set, set_capacity(jobs[i].target))) return false;
  }
  for (int i = 0; i < n_threads; i++) {
    if (pthread_create(&tids[i], NULL, alloc_and_exit, &jobs[i]) != 0) return false;
  }
  bool ok = true;
  for (int i = 0; i < n_threads; i++) {
    pthread_join(tids[i], NULL);
    ok = ok && jobs[i].ok;
  }
  r->peak = proc_self_rss_bytes();
  r->threshold = threshold_of(r->baseline, r->peak);
  for (int i = 0; i < n_threads; i++) free_set(&jobs[i].set);
  double t_last_free = now_ms();
  for (int i = 0; i < n_threads; i++) set_unmap(&jobs[i].set); /* not the allocator */
  poll_rss(r, t_last_free);
  return ok;
}

/* ---- phase 2: one thread allocates, frees locally, then idles ---------------------------- */

struct idle_job {
  pthread_mutex_t lock;
  pthread_cond_t cond;
  int stage; /* 0 start, 1 allocated, 2 may free, 3 freed, 4 may exit */
  struct block_set set;
  size_t target;
  double t_last_free;
  bool ok;
};

static void set_stage(struct idle_job* job, int stage) {
  pthread_mutex_lock(&job->lock);
  job->stage = stage;
  pthread_cond_broadcast(&job->cond);
  pthread_mutex_unlock(&job->lock);
}

static void wait_stage(struct idle_job* job, int stage) {
  pthread_mutex_lock(&job->lock);
  while (job->stage < stage) pthread_cond_wait(&job->cond, &job->lock);
  pthread_mutex_unlock(&job->lock);
}

static void* alloc_free_idle(void* arg) {
  struct idle_job* job = arg;
  job->ok = fill_set(&job->set, job->target, 0xABCDEFull);
  set_stage(job, 1);
  wait_stage(job, 2);
  free_set(&job->set);
  job->t_last_free = now_ms();
  set_stage(job, 3);
  wait_stage(job, 4); /* idle: alive, but no further allocator calls */
  return NULL;
}

static bool phase_idle_owner(size_t total, struct phase_result* r) {
  struct idle_job job;
  memset(&job, 0, sizeof(job));
  pthread_mutex_init(&job.lock, NULL);
  pthread_cond_init(&job.cond, NULL);
  job.target = total;
  r->name = "phase 2: blocks freed locally by a thread that then idles";
  if (!set_init(&job.set, set_capacity(total))) return false;
  r->baseline = proc_self_rss_bytes();
  pthread_t tid;
  if (pthread_create(&tid, NULL, alloc_free_idle, &job) != 0) return false;
  wait_stage(&job, 1);
  r->peak = proc_self_rss_bytes();
  r->threshold = threshold_of(r->baseline, r->peak);
  set_stage(&job, 2);
  wait_stage(&job, 3);
  set_unmap(&job.set);
  poll_rss(r, job.t_last_free);
  set_stage(&job, 4);
  pthread_join(tid, NULL);
  return job.ok;
}

/* ---- phase 3: one thread allocates and idles; main frees; the thread allocates again ------- */

/* Fill a fresh set, then check that every block still holds its pattern. */
static bool fill_and_check(size_t target) {
  struct block_set s;
  if (!set_init(&s, set_capacity(target))) return false;
  bool ok = fill_set(&s, target, 0x5151ull);
  for (size_t i = 0; ok && i < s.count; i++) {
    size_t size = mi_usable_size(s.ptrs[i]);
    const unsigned char* b = s.ptrs[i];
    ok = size > 0 && b[0] != 0 && b[0] == b[size / 2 > 0 ? size / 4 : 0];
  }
  free_set(&s);
  set_unmap(&s);
  return ok;
}

static void* alloc_idle_reuse(void* arg) {
  struct idle_job* job = arg;
  job->ok = fill_set(&job->set, job->target, 0xFEEDull);
  set_stage(job, 1);
  wait_stage(job, 4); /* idle while main frees what it allocated */
  job->ok = job->ok && fill_and_check(job->target);
  return NULL;
}

static bool phase_idle_remote(size_t total, struct phase_result* r) {
  struct idle_job job;
  memset(&job, 0, sizeof(job));
  pthread_mutex_init(&job.lock, NULL);
  pthread_cond_init(&job.cond, NULL);
  job.target = total;
  r->name = "phase 3: blocks of an idle thread freed by main";
  if (!set_init(&job.set, set_capacity(total))) return false;
  r->baseline = proc_self_rss_bytes();
  pthread_t tid;
  if (pthread_create(&tid, NULL, alloc_idle_reuse, &job) != 0) return false;
  wait_stage(&job, 1);
  r->peak = proc_self_rss_bytes();
  r->threshold = threshold_of(r->baseline, r->peak);
  free_set(&job.set);
  double t_last_free = now_ms();
  set_unmap(&job.set);
  poll_rss(r, t_last_free);
  set_stage(&job, 4);
  pthread_join(tid, NULL);
  if (!job.ok) printf("FAIL: %s: the blocks allocated after the wake-up were wrong\n", r->name);
  return job.ok;
}

/* Each phase runs in its own child process, forked before the allocator is used, so that one
 * phase's leftovers cannot blur the other's baseline. */
static int run_phase(int phase, size_t total, int n_threads) {
  static struct phase_result r;
  bool allocated = phase == 1   ? phase_abandoned(total, n_threads, &r)
                   : phase == 2 ? phase_idle_owner(total, &r)
                                : phase_idle_remote(total, &r);
  bool ok = report(&r);
  if (!allocated) printf("FAIL: %s: an allocation failed\n", r.name);
  fflush(stdout);
  return ok && allocated ? 0 : 1;
}

int main(int argc, char** argv) {
  size_t total_mib = argc > 1 ? (size_t)strtoul(argv[1], NULL, 10) : 256;
  int n_threads = argc > 2 ? atoi(argv[2]) : 4;
  int only = argc > 3 ? atoi(argv[3]) : 0;
  if (total_mib < 16 || n_threads < 1 || n_threads > MAX_THREADS || only < 0 || only > 3) {
    fprintf(stderr, "usage: %s [total-MiB >= 16] [threads 1..%d] [phase 1|2|3, default all]\n",
            argv[0], MAX_THREADS);
    return 2;
  }
  if (proc_self_rss_bytes() == 0) {
    printf("cannot read /proc/self/statm; skipping\n");
    return 77;
  }
  printf("rss_drop: phase 1: %zu MiB in %d threads; phases 2 and 3: %zu MiB in one idle thread\n",
         total_mib, n_threads, total_mib);
  fflush(stdout); /* nothing buffered may be duplicated into the children */

  int passed = 0, failed = 0;
  for (int phase = 1; phase <= 3; phase++) {
    if (only != 0 && phase != only) continue;
    pid_t pid = fork();
    if (pid < 0) {
      perror("fork");
      return 1;
    }
    if (pid == 0) {
      fflush(stdout);
      _exit(run_phase(phase, total_mib * MiB, n_threads));
    }
    int status = 0;
    if (waitpid(pid, &status, 0) < 0) status = -1;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
      passed++;
    } else {
      failed++;
      if (!WIFEXITED(status)) printf("FAIL: phase %d: child did not exit normally\n", phase);
    }
  }
  printf("\n%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
