/* server: a long-running server with busy and idle phases; does memory go back to the OS?
 *
 *   server PHASES [REQUESTS=40000] [IDLE_MS=300] [WORKERS=2] [SESSIONS=20000] [SEED=42]
 *
 * WORKERS threads serve requests; a table of SESSIONS session slots is shared between them
 * (one mutex). Each busy phase, the workers handle REQUESTS requests together. A request
 * reads a buffer of 1..16 KiB, splits it into 4..16 small tokens, builds a response by
 * appending the tokens with realloc, and in one request of two opens a session (256 bytes to
 * 4 KiB of state, plus a name) in a random slot, closing the session that was there, whoever
 * opened it; one request in 20 also appends a record of 48..96 bytes to its worker's log, which
 * lives until the end (long-lived objects among the short-lived ones). Then traffic drops: the
 * workers close every session in their share of the table and block until the next phase (idle
 * threads, as in a real server).
 * Idle phase: for IDLE_MS every thread (the main thread and the workers) wakes every 10 ms and
 * allocates and frees one small block (a heartbeat, as a timer or a keep-alive would), which
 * gives an allocator that purges lazily, on its next call, the chance to do so.
 *
 * The resident set size (from /proc/self/statm) is sampled at the end of each busy phase, after
 * the sessions expired, and at the end of each idle phase, and printed, one line per phase:
 *   server phase=N busy_rss_kib=B dropped_rss_kib=D idle_rss_kib=I
 * then a summary line. Exit status 0 on success, 2 on bad arguments, 1 if malloc returned NULL
 * or a block lost its contents.
 */
#include "bench.h"

#include <pthread.h>
#include <stdatomic.h>

typedef struct session_s {
  uint64_t id;
  uint32_t size;
  uint32_t pad;
  char* name;
  unsigned char* state;
} session_t;

static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
static session_t** table;
static size_t nsessions;

static pthread_mutex_t ctl_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t ctl_cond = PTHREAD_COND_INITIALIZER;
static int ctl_step = 0;  /* step the workers are asked to run; -1: exit */
static int ctl_done = 0;  /* workers done with the current phase */

static unsigned long long requests_per_worker, nworkers;
static _Atomic int failed;

typedef struct logrec_s {
  struct logrec_s* next;
  uint64_t id;
  uint32_t size;
} logrec_t;

typedef struct worker_s {
  pthread_t thread;
  int id;
  uint64_t rs;
  uint64_t checksum;
  logrec_t* log;
  uint64_t nlog;
  uint64_t heartbeats;
} worker_t;

static session_t* session_open(uint64_t id, uint64_t* rs) {
  session_t* s = malloc(sizeof(session_t));
  if (s == NULL) return NULL;
  s->id = id;
  s->size = (uint32_t)bench_range(rs, 256, 4096);
  s->state = malloc(s->size);
  size_t nlen = (size_t)bench_range(rs, 8, 48);
  s->name = malloc(nlen);
  if (s->state == NULL || s->name == NULL) return NULL;
  memset(s->state, bench_tag(id), s->size);
  memset(s->name, 'A' + (int)(id % 26), nlen - 1);
  s->name[nlen - 1] = '\0';
  return s;
}

static uint64_t session_close(session_t* s) {
  if (s == NULL) return 0;
  if (s->state[0] != bench_tag(s->id) || s->state[s->size - 1] != bench_tag(s->id) ||
      s->name[0] != 'A' + (int)(s->id % 26)) {
    failed = 2;
  }
  uint64_t v = s->size + (unsigned char)s->name[0];
  free(s->name);
  free(s->state);
  free(s);
  return v;
}

/* one request: read, tokenize, respond, maybe open a session */
static int handle(worker_t* w, uint64_t req_id) {
  size_t len = (size_t)bench_range(&w->rs, 1024, 16384);
  unsigned char* buf = malloc(len);
  if (buf == NULL) return 1;
  for (size_t i = 0; i < len; i += 64) buf[i] = (unsigned char)(i + req_id);
  buf[len - 1] = 0x5A;
  size_t ntok = (size_t)bench_range(&w->rs, 4, 16);
  char* toks[16];
  size_t tlen[16];
  for (size_t t = 0; t < ntok; t++) {
    tlen[t] = (size_t)bench_range(&w->rs, 16, 128);
    toks[t] = malloc(tlen[t]);
    if (toks[t] == NULL) return 1;
    memset(toks[t], 'a' + (int)(t % 26), tlen[t]);
  }
  char* resp = NULL;
  size_t rlen = 0;
  for (size_t t = 0; t < ntok; t++) {
    char* r = realloc(resp, rlen + tlen[t] + 1);
    if (r == NULL) return 1;
    memcpy(r + rlen, toks[t], tlen[t]);
    rlen += tlen[t];
    r[rlen] = '\0';
    resp = r;
  }
  if (buf[len - 1] != 0x5A || resp[0] != 'a' || resp[rlen - 1] != 'a' + (int)((ntok - 1) % 26))
    failed = 2;
  w->checksum += rlen + buf[0];
  for (size_t t = 0; t < ntok; t++) free(toks[t]);
  free(resp);
  free(buf);
  uint64_t r = bench_rnd(&w->rs);
  if (r % 20 == 19) {
    uint32_t sz = (uint32_t)bench_range(&w->rs, 48, 96);
    logrec_t* l = malloc(sz);
    if (l == NULL) return 1;
    l->id = req_id;
    l->size = sz;
    memset((unsigned char*)l + sizeof(logrec_t), bench_tag(req_id), sz - sizeof(logrec_t));
    l->next = w->log;
    w->log = l;
    w->nlog++;
  }
  if (r & 1) {
    session_t* s = session_open(req_id, &w->rs);
    if (s == NULL) return 1;
    size_t slot = (size_t)((r >> 1) % nsessions);
    pthread_mutex_lock(&table_lock);
    session_t* old = table[slot];
    table[slot] = s;
    pthread_mutex_unlock(&table_lock);
    w->checksum += session_close(old);
  }
  return 0;
}

/* one small block allocated, written and freed: what a timer or a keep-alive does */
static void heartbeat(uint64_t* count) {
  volatile unsigned char* hb = malloc(64);
  if (hb == NULL) {
    failed = 1;
    return;
  }
  hb[0] = (unsigned char)*count;
  hb[63] = hb[0];
  if (hb[63] != (unsigned char)*count) failed = 2;
  free((void*)hb);
  (*count)++;
}

/* Worker loop: step 2N-1 serves phase N's requests, step 2N expires its sessions. */
static void* worker_main(void* arg) {
  worker_t* w = arg;
  int seen = 0;
  for (;;) {
    pthread_mutex_lock(&ctl_lock);
    while (ctl_step == seen) {
      if (seen == 0 || (seen & 1)) {
        pthread_cond_wait(&ctl_cond, &ctl_lock);
        continue;
      }
      /* idle after an expiry: wake every 10 ms for a heartbeat, as a timer would */
      struct timespec ts;
      clock_gettime(CLOCK_REALTIME, &ts);
      ts.tv_nsec += 10 * 1000000L;
      if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
      }
      pthread_cond_timedwait(&ctl_cond, &ctl_lock, &ts);
      if (ctl_step != seen) break;
      pthread_mutex_unlock(&ctl_lock);
      heartbeat(&w->heartbeats);
      pthread_mutex_lock(&ctl_lock);
    }
    int step = ctl_step;
    pthread_mutex_unlock(&ctl_lock);
    if (step < 0) return NULL;
    seen = step;
    uint64_t phase = (uint64_t)(step + 1) / 2;
    if (step & 1) {
      for (uint64_t k = 0; k < requests_per_worker && !failed; k++) {
        uint64_t req_id = (phase << 40) | ((uint64_t)w->id << 32) | k;
        if (handle(w, req_id)) failed = 1;
      }
    } else {
      /* traffic drops: every session in this worker's share of the table times out */
      for (size_t slot = (size_t)w->id; slot < nsessions; slot += nworkers) {
        pthread_mutex_lock(&table_lock);
        session_t* old = table[slot];
        table[slot] = NULL;
        pthread_mutex_unlock(&table_lock);
        w->checksum += session_close(old);
      }
    }
    pthread_mutex_lock(&ctl_lock);
    ctl_done++;
    pthread_cond_broadcast(&ctl_cond);
    pthread_mutex_unlock(&ctl_lock);
  }
}

/* runs one step in every worker and waits for all of them */
static void run_step(int step, unsigned long long workers) {
  pthread_mutex_lock(&ctl_lock);
  ctl_done = 0;
  ctl_step = step;
  pthread_cond_broadcast(&ctl_cond);
  while (ctl_done < (int)workers) pthread_cond_wait(&ctl_cond, &ctl_lock);
  pthread_mutex_unlock(&ctl_lock);
}

int main(int argc, char** argv) {
  unsigned long long phases = 0, requests = 40000, idle_ms = 300, workers = 2, sessions = 20000,
                     seed = 42;
  if (argc < 2 || !bench_arg(argc, argv, 1, &phases) || !bench_arg(argc, argv, 2, &requests) ||
      !bench_arg(argc, argv, 3, &idle_ms) || !bench_arg(argc, argv, 4, &workers) ||
      !bench_arg(argc, argv, 5, &sessions) || !bench_arg(argc, argv, 6, &seed) ||
      workers == 0 || workers > 256 || sessions == 0 || phases > 1000) {
    fprintf(stderr,
            "usage: %s PHASES [REQUESTS=40000] [IDLE_MS=300] [WORKERS=2] [SESSIONS=20000] "
            "[SEED=42]\n",
            argv[0]);
    return 2;
  }
  nworkers = workers;
  nsessions = sessions;
  requests_per_worker = requests / workers;
  table = calloc(sessions, sizeof(session_t*));
  worker_t* ws = calloc(workers, sizeof(worker_t));
  if (table == NULL || ws == NULL) BENCH_FAIL("server: malloc returned NULL");
  for (size_t i = 0; i < workers; i++) {
    ws[i].id = (int)i;
    ws[i].rs = seed * 31ULL + i;
    if (pthread_create(&ws[i].thread, NULL, worker_main, &ws[i]) != 0)
      BENCH_FAIL("server: pthread_create failed");
  }
  long start_rss = bench_rss_kib();
  long max_busy = 0, last_idle = 0;
  uint64_t heartbeats = 0;
  for (unsigned long long ph = 1; ph <= phases; ph++) {
    run_step((int)(2 * ph - 1), workers);
    if (failed) break;
    long busy = bench_rss_kib();
    if (busy > max_busy) max_busy = busy;
    run_step((int)(2 * ph), workers);
    long dropped = bench_rss_kib();
    double until = bench_now() + (double)idle_ms / 1000.0;
    while (bench_now() < until) {
      bench_sleep_ms(10);
      heartbeat(&heartbeats);
    }
    last_idle = bench_rss_kib();
    printf("server phase=%llu busy_rss_kib=%ld dropped_rss_kib=%ld idle_rss_kib=%ld\n", ph, busy,
           dropped, last_idle);
    fflush(stdout);
  }
  pthread_mutex_lock(&ctl_lock);
  ctl_step = -1;
  pthread_cond_broadcast(&ctl_cond);
  pthread_mutex_unlock(&ctl_lock);
  uint64_t checksum = 0;
  for (size_t i = 0; i < workers; i++) {
    pthread_join(ws[i].thread, NULL);
    checksum += ws[i].checksum;
    heartbeats += ws[i].heartbeats;
  }
  for (size_t slot = 0; slot < nsessions; slot++) checksum += session_close(table[slot]);
  for (size_t i = 0; i < workers; i++) {
    uint64_t n = 0;
    for (logrec_t* l = ws[i].log; l != NULL; n++) {
      logrec_t* next = l->next;
      if (((unsigned char*)l)[l->size - 1] != bench_tag(l->id)) failed = 2;
      checksum += l->size;
      free(l);
      l = next;
    }
    if (n != ws[i].nlog) failed = 2;
  }
  free(table);
  free(ws);
  if (failed) BENCH_FAIL("server: %s", failed == 1 ? "malloc returned NULL" : "a block was corrupted");
  printf("server phases=%llu requests=%llu idle_ms=%llu workers=%llu start_rss_kib=%ld "
         "max_busy_rss_kib=%ld last_idle_rss_kib=%ld heartbeats=%llu checksum=%llu malloc=%s\n",
         phases, requests, idle_ms, workers, start_rss, max_busy, last_idle,
         (unsigned long long)heartbeats, (unsigned long long)checksum, bench_malloc_provider());
  return 0;
}
