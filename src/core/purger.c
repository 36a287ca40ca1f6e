/* The background purger: one thread that returns memory to the OS when its delay has passed,
 * even when every other thread is idle. It purges expired arena blocks, expired free spans of
 * segments owned by any thread (through the segment layer's BUSY/PENDING handshake), and
 * collects abandoned segments that remote frees have emptied; when a thread grows into fresh
 * memory while memory that others freed waits, it purges that much of it early
 * (lm_segments_offset_growth). It sleeps without a timeout when nothing is scheduled, and is
 * woken when something is. It never allocates.
 *
 * It starts only once the program has a thread of its own besides the first: a single-threaded
 * program stays single-threaded (unshare(CLONE_NEWUSER), sandboxes and some fork-based code
 * require that). Until then, and wherever the backend has no threads, the same pass runs inline
 * on the allocating thread's slow paths (lm_purger_tick) when a deadline has passed, as upstream
 * mimalloc purges: such a process returns memory while it allocates and frees, not while idle.
 *
 * fork(): the prepare handler waits for the end of a purge pass (the pass lock), so the child
 * never inherits a lock held by a thread that does not exist there; the child starts a purger
 * of its own on demand.
 */
#include "core.h"

/* The segments context used to visit abandoned segments; guarded by the pass lock, so the
 * purger thread and lm_purge_now share it. */
static lm_segments_tld_t purger_tld;
static lm_spinlock_t purger_pass_lock;
/* Inline mode: the earliest deadline the last inline pass left (0: nothing known pending). */
static _Atomic(int64_t) inline_next;

static int64_t earliest(int64_t a, int64_t b) {
  if (a == 0) return b;
  if (b == 0) return a;
  return a < b ? a : b;
}

static void purger_pass(int64_t now, int64_t* next) {
  lm_arenas_t* arenas = &lm_process.arenas;
  if (purger_tld.shared == NULL) lm_segments_tld_init(&purger_tld, &lm_process.segments);
  int64_t due = atomic_load(&lm_process.abandoned_due);
  if (due != 0 && due <= now) {
    atomic_store(&lm_process.abandoned_due, 0);
    lm_abandoned_collect(&purger_tld, SIZE_MAX);
  } else {
    *next = earliest(*next, due);
  }
  int64_t drain = atomic_load(&lm_process.drain_due);
  if (drain != 0 && drain <= now) {
    atomic_store(&lm_process.drain_due, 0);
    lm_drain_idle_heaps(false);
  } else {
    *next = earliest(*next, drain);
  }
  /* A thread grew while memory others freed waited: give back as much of that now. */
  lm_segments_offset_growth(&lm_process.segments);
  /* Near the container's limit: what waits for its delay is purged now. */
  bool urgent = lm_container_poll(now);
  *next = earliest(*next, lm_segments_purge_flagged(&lm_process.segments, now, urgent));
  lm_arenas_try_purge(arenas, urgent);
  *next = earliest(*next, lm_arenas_purge_deadline(arenas));
}

static void purger_main(void* arg) {
  (void)arg;
  const lm_backend_t* backend = lm_process.backend;
  lm_arenas_t* arenas = &lm_process.arenas;
  for (;;) {
    atomic_store(&arenas->purger_idle, 1);
    int64_t next = 0;
    lm_spin_lock(&purger_pass_lock);
    purger_pass(backend->clock_ms(), &next);
    lm_spin_unlock(&purger_pass_lock);
    if (atomic_load(&arenas->purger_idle) == 0) continue; /* woken during the pass */
    int64_t now = backend->clock_ms();
    int64_t timeout = next == 0 ? -1 : (next > now ? next - now : 1);
    /* Under a memory limit, look at usage while memory waits for its purge, and while the
     * pressure lasts (to notice its end). */
    bool pressure = atomic_load_explicit(&arenas->pressure, memory_order_relaxed);
    if (lm_container_watching() && (next != 0 || pressure) && (timeout < 0 || timeout > 50)) {
      timeout = 50;
    }
    backend->wait_on(&arenas->purger_idle, 1, timeout);
  }
}

void lm_purge_now(bool force) {
  lm_spin_lock(&purger_pass_lock);
  int64_t now = lm_process.backend->clock_ms();
  if (purger_tld.shared == NULL) lm_segments_tld_init(&purger_tld, &lm_process.segments);
  lm_abandoned_collect(&purger_tld, SIZE_MAX);
  if (force) lm_drain_idle_heaps(true);
  lm_segments_purge_flagged(&lm_process.segments, now, force);
  lm_arenas_try_purge(&lm_process.arenas, force);
  lm_spin_unlock(&purger_pass_lock);
}

/* fork(): no internal lock may be held by a thread that will not exist in the child. The
 * prepare handler takes them all (in a fixed order), parent and child release them; the child
 * then starts its own purger on demand. */
static void fork_prepare(void) {
  lm_spin_lock(&purger_pass_lock);
  lm_spin_lock(&lm_process.tlds_lock);
  lm_spin_lock(&lm_process.arenas.reserve_lock);
  lm_spin_lock(&lm_process.arenas.purge_guard);
  lm_spin_lock(&lm_process.segments.abandoned_os_lock);
  lm_spin_lock(&lm_process.segments.map_lock);
}
static void fork_release(void) {
  lm_spin_unlock(&lm_process.segments.map_lock);
  lm_spin_unlock(&lm_process.segments.abandoned_os_lock);
  lm_spin_unlock(&lm_process.arenas.purge_guard);
  lm_spin_unlock(&lm_process.arenas.reserve_lock);
  lm_spin_unlock(&lm_process.tlds_lock);
  lm_spin_unlock(&purger_pass_lock);
}
static void fork_child(void) {
  fork_release();
  /* The child has one thread: it purges inline until it makes threads of its own. */
  if (atomic_load(&lm_process.purger_state) == 1) atomic_store(&lm_process.purger_state, 0);
  atomic_store(&lm_process.multi_threaded, false);
  atomic_store(&lm_process.arenas.purger_thread, false);
  atomic_store(&lm_process.arenas.purger_idle, 0);
}

void lm_fork_setup(void) {
  static _Atomic(int) done;
  const lm_backend_t* backend = lm_process.backend;
  if (backend == NULL || backend->atfork == NULL || atomic_exchange(&done, 1)) return;
  if (backend->atfork(fork_prepare, fork_release, fork_child) != 0) atomic_store(&done, 0);
}

/* Start the background thread (once; the program has threads of its own). */
static void purger_start(void) {
  int expected = 0;
  if (!atomic_compare_exchange_strong(&lm_process.purger_state, &expected, 1)) return;
  lm_fork_setup();
  atomic_store(&lm_process.arenas.purger_thread, true);
  if (lm_process.backend->thread_start(purger_main, NULL) != 0) {
    atomic_store(&lm_process.arenas.purger_thread, false);
    atomic_store(&lm_process.purger_state, -1);
    lm_warning("unable to start the background purger; memory is returned on allocation");
  }
}

void lm_purger_tick(void) {
  int state = atomic_load_explicit(&lm_process.purger_state, memory_order_relaxed);
  if (lm_likely(state == 1)) return;
  const lm_backend_t* backend = lm_process.backend;
  lm_arenas_t* arenas = &lm_process.arenas;
  int64_t delay = arenas->config.purge_delay_ms;
  /* Only once libc is fully up (the library constructor ran), and only if purging is on: at
   * -1 nothing is purged. At 0 the purges happen where they are scheduled, but the idle heaps'
   * pages and the abandoned segments that other threads emptied still need a visitor (bench
   * threadchurn with MIMALLOC_PURGE_DELAY=0: the idle main thread kept its 15 MiB of emptied
   * pages to the end, peak 46.6 MiB against 44 with the default delay; 37.2 with a visitor). */
  if (backend == NULL || !lm_process.constructed || delay < 0) return;
  if (state == 0 && arenas->caps.has_threads &&
      atomic_load_explicit(&lm_process.multi_threaded, memory_order_relaxed)) {
    purger_start();
    if (atomic_load(&lm_process.purger_state) == 1) return;
  }
  /* Inline: something scheduled since the last look (purger_idle cleared by a wake) is due
   * no sooner than the purge delay from now; a pass runs when the earliest deadline passed. */
  int64_t next = atomic_load_explicit(&inline_next, memory_order_relaxed);
  bool scheduled = atomic_load_explicit(&arenas->purger_idle, memory_order_relaxed) == 0;
  bool pressure = atomic_load_explicit(&arenas->pressure, memory_order_relaxed);
  if (next == 0 && !scheduled && !pressure) return;
  int64_t now = backend->clock_ms();
  if (scheduled) {
    atomic_store_explicit(&arenas->purger_idle, 1, memory_order_relaxed);
    next = earliest(next, now + delay);
    atomic_store_explicit(&inline_next, next, memory_order_relaxed);
  }
  /* Under a memory limit a pass also runs when usage is due for a look (it may purge at once,
   * or end the pressure). */
  bool due = next != 0 && now >= next;
  if ((!due && !lm_container_poll_due(now)) || !lm_spin_try_lock(&purger_pass_lock)) return;
  int64_t pass_next = 0;
  purger_pass(now, &pass_next);
  atomic_store_explicit(&inline_next, pass_next, memory_order_relaxed);
  lm_spin_unlock(&purger_pass_lock);
}

void lm_purger_thread_seen(void) {
  if (!atomic_load_explicit(&lm_process.multi_threaded, memory_order_relaxed)) {
    atomic_store(&lm_process.multi_threaded, true);
  }
}

/* Schedule a visit one purge delay from now, unless one is scheduled already. */
static void notify(_Atomic(int64_t)* due_at, int64_t delay) {
  if (atomic_load_explicit(due_at, memory_order_relaxed) != 0) return;
  int64_t due = lm_process.backend->clock_ms() + (delay > 0 ? delay : 1);
  int64_t expected = 0;
  if (atomic_compare_exchange_strong(due_at, &expected, due)) {
    lm_arenas_wake_purger(&lm_process.arenas);
  }
}

void lm_purger_notify_abandoned(void) {
  notify(&lm_process.abandoned_due, lm_process.arenas.config.purge_delay_ms);
}

/* (With purging off, memory an idle owner holds stays with it, as all freed memory does.) */
void lm_purger_notify_delayed(void) {
  int64_t delay = lm_process.arenas.config.purge_delay_ms;
  if (delay >= 0) notify(&lm_process.drain_due, delay);
}
