/* The container the process runs in: its memory limit and CPU quota, through the backend
 * (cgroups on Linux).
 *
 * Limits are read when first wanted, by the first purger pass (the background purger's first,
 * once the program has threads; the inline one's once something waits for its purge), not at
 * start: a short program that never gives memory back opens no cgroup file. Then again every
 * second, and usage at most every 10 ms, both only by a purger pass (the background purger, or
 * the inline one on slow paths): never on an allocation's fast path. When usage reaches 90% of
 * the limit that bites first (the tighter of the hard limit and the high mark), the arenas'
 * pressure flag makes every free purge at once instead of after its delay, and the pass that
 * noticed purges everything already waiting; below 80% the delays apply again. Both changes
 * are said in verbose output.
 *
 * MIMALLOC_CONTAINER_AWARE=0 turns all of it off (limits, pressure and the CPU quota). It is an
 * environment setting, not an mi_option_t: a new enum value after allow_thp would be a value
 * that newer mimalloc headers give to options of their own, so a program built against one
 * would set ours by mistake.
 */
#include <stdio.h>

#include "core.h"

#define USAGE_INTERVAL_MS 10
#define LIMITS_INTERVAL_MS 1000
#define PRESSURE_ON_PERCENT 90
#define PRESSURE_OFF_PERCENT 80

static bool aware;           /* reading the container's limits at all */
static _Atomic(int) limits_state; /* 0: not read yet; 1: being read (by one thread); 2: read */
static lm_container_t limits; /* as last read */
static _Atomic(size_t) limit; /* the one that bites first; 0: none */
static _Atomic(size_t) cache_cpus; /* CPUs for sizing caches: the quota's, else the affinity's */
static _Atomic(int64_t) next_usage; /* read without the pass lock by poll_due */
static int64_t next_limits;

static size_t first_biting(const lm_container_t* c) {
  if (c->memory_high != 0 && (c->memory_max == 0 || c->memory_high < c->memory_max)) {
    return c->memory_high;
  }
  return c->memory_max;
}

static bool env_says_off(const lm_backend_t* backend, const char* name) {
  char v[16];
  if (backend->getenv == NULL || !backend->getenv(name, v, sizeof(v))) return false;
  return v[0] == '0' || v[0] == 'n' || v[0] == 'N' || v[0] == 'f' || v[0] == 'F' ||
         ((v[0] == 'o' || v[0] == 'O') && (v[1] == 'f' || v[1] == 'F'));
}

static void read_limits(const lm_backend_t* backend) {
  lm_container_t c = {.cpus = 1};
  backend->container_limits(&c);
  limits = c;
  lm_store_relaxed(&limit, first_biting(&c));
  size_t quota_cpus = (c.cpu_quota_milli + 999) / 1000;
  lm_store_relaxed(&cache_cpus, quota_cpus != 0 && quota_cpus < c.cpus ? quota_cpus : c.cpus);
}

static void say_amount(char* buf, size_t size, size_t bytes) {
  if (bytes == 0) snprintf(buf, size, "none");
  else snprintf(buf, size, "%zu MiB", bytes >> 20);
}

void lm_container_init(void) {
  const lm_backend_t* backend = lm_process.backend;
  aware = backend->container_limits != NULL && !env_says_off(backend, "MIMALLOC_CONTAINER_AWARE");
}

/* The limits are known: read them now if nobody has (one thread reads; the others go on as if
 * there were none until it is done). */
static bool limits_known(void) {
  if (!aware) return false;
  int state = atomic_load_explicit(&limits_state, memory_order_acquire);
  if (state == 2) return true;
  if (state != 0 || !atomic_compare_exchange_strong(&limits_state, &state, 1)) return false;
  const lm_backend_t* backend = lm_process.backend;
  read_limits(backend);
  next_limits = backend->clock_ms() + LIMITS_INTERVAL_MS;
  atomic_store_explicit(&limits_state, 2, memory_order_release);
  if (lm_load_relaxed(&limit) == 0 && limits.cpu_quota_milli == 0) return true;
  char max[32], high[32];
  say_amount(max, sizeof(max), limits.memory_max);
  say_amount(high, sizeof(high), limits.memory_high);
  lm_verbose("container: memory limit %s, high mark %s, cpu quota %zu.%03zu (of %zu cpus): "
             "caches sized for %zu cpus", max, high, limits.cpu_quota_milli / 1000,
             limits.cpu_quota_milli % 1000, limits.cpus, lm_load_relaxed(&cache_cpus));
  return true;
}

size_t lm_container_cpus(void) {
  bool known = aware && atomic_load_explicit(&limits_state, memory_order_acquire) == 2;
  return known ? lm_load_relaxed(&cache_cpus) : 0;
}

bool lm_container_watching(void) { return aware && lm_load_relaxed(&limit) != 0; }

bool lm_container_poll_due(int64_t now) {
  if (aware && atomic_load_explicit(&limits_state, memory_order_relaxed) == 0) return true;
  return lm_container_watching() && now >= lm_load_relaxed(&next_usage);
}

static void set_pressure(bool on, size_t usage) {
  atomic_store(&lm_process.arenas.pressure, on);
  char used[32], lim[32];
  say_amount(used, sizeof(used), usage);
  size_t lim_bytes = lm_load_relaxed(&limit);
  say_amount(lim, sizeof(lim), lim_bytes);
  size_t percent = lim_bytes != 0 ? usage / (lim_bytes / 100 + 1) : 0;
  if (on) {
    lm_verbose("container: memory use %s is %zu%% of the limit %s: freed memory is purged at "
               "once instead of after the delay", used, percent, lim);
  } else {
    lm_verbose("container: memory use %s is %zu%% of the limit %s again: purges wait for "
               "their delay", used, percent, lim);
  }
}

bool lm_container_poll(int64_t now) {
  if (!limits_known()) return false;
  const lm_backend_t* backend = lm_process.backend;
  bool pressure = atomic_load_explicit(&lm_process.arenas.pressure, memory_order_relaxed);
  if (now >= next_limits) { /* limits may change while the program runs (a resize) */
    read_limits(backend);
    next_limits = now + LIMITS_INTERVAL_MS;
  }
  size_t lim = lm_load_relaxed(&limit);
  if (lim == 0) {
    if (pressure) set_pressure(false, 0);
    return false;
  }
  if (now < lm_load_relaxed(&next_usage) || backend->container_usage == NULL) return pressure;
  lm_store_relaxed(&next_usage, now + USAGE_INTERVAL_MS);
  size_t usage = backend->container_usage();
  if (usage == 0) return pressure;
  if (!pressure && usage / PRESSURE_ON_PERCENT >= lim / 100) {
    set_pressure(true, usage);
    return true;
  }
  if (pressure && usage / PRESSURE_OFF_PERCENT < lim / 100) {
    set_pressure(false, usage);
    return false;
  }
  return pressure;
}
