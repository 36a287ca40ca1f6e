/* The Haiku backend: POSIX mmap and pthreads (src/backend/posix/), the kernel kit's clock.
 *
 * Memory comes from mmap rather than create_area: an area can only be deleted whole or shrunk
 * from its end, while the arena layer gives back aligned parts of a reservation (munmap cuts
 * areas as needed). Haiku does not overcommit: a writable private mapping is charged at once,
 * so reservations are made inaccessible and with MAP_NORESERVE, and committed by mprotect.
 * A decommit maps fresh inaccessible pages over the range (MAP_FIXED), which drops the old
 * ones for certain; posix_madvise's advice may be ignored. No reset, so every purge decommits.
 * wait_on/wake_all are the mutex and condition fallback. Compiled against declarations of our
 * own (tests/haiku/), never run.
 */
#include "../backend.h"
#include "../../common/common.h"
#include "../posix/posix.h"

#include <OS.h>
#include <errno.h>
#include <sys/mman.h>

extern char** environ;

static const int map_flags = MAP_PRIVATE | MAP_ANONYMOUS;

static int haiku_reserve(void* hint, size_t size, size_t try_align, bool commit, void** addr,
                         bool* is_zero) {
  int prot = commit ? PROT_READ | PROT_WRITE : PROT_NONE;
  int err = lm_posix_map(hint, size, try_align, B_PAGE_SIZE, prot,
                         map_flags | (commit ? 0 : MAP_NORESERVE), -1, addr);
  if (err == 0) *is_zero = true;
  return err;
}

static int haiku_commit(void* addr, size_t size, bool* is_zero) {
  int err = lm_posix_protect(addr, size, true);
  /* Decommitted ranges were replaced by fresh pages, but a range may also be committed twice. */
  if (err == 0) *is_zero = false;
  return err;
}

static int haiku_decommit(void* addr, size_t size, bool* needs_recommit) {
  void* p = mmap(addr, size, PROT_NONE, map_flags | MAP_FIXED | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return errno;
  *needs_recommit = true;
  return 0;
}

static int haiku_protect(void* addr, size_t size, bool protect) {
  return lm_posix_protect(addr, size, !protect);
}

static int64_t haiku_clock_ms(void) { return system_time() / 1000; }

static bool haiku_getenv(const char* name, char* buf, size_t size) {
  return lm_posix_getenv(environ, name, buf, size);
}

static void haiku_process_info(size_t* user_ms, size_t* system_ms, size_t* current_rss,
                               size_t* peak_rss, size_t* page_faults) {
  long maxrss = 0; /* not kept by Haiku's getrusage: left unknown */
  lm_posix_process_times(user_ms, system_ms, &maxrss);
  (void)current_rss, (void)peak_rss, (void)page_faults;
}

static void haiku_init(lm_backend_caps_t* caps) {
  *caps = (lm_backend_caps_t){
      .page_size = B_PAGE_SIZE,
      .alloc_granularity = B_PAGE_SIZE,
      .has_overcommit = false,
      .has_partial_release = true,
      .has_virtual_reserve = true,
      .has_decommit = true,
      .has_threads = true,
  };
}

static const lm_backend_t haiku_backend = {
    .name = "haiku",
    .init = haiku_init,
    .reserve = haiku_reserve,
    .release = lm_posix_unmap,
    .commit = haiku_commit,
    .decommit = haiku_decommit,
    .protect = haiku_protect,
    .clock_ms = haiku_clock_ms,
    .random_bytes = lm_posix_random_bytes,
    .getenv = haiku_getenv,
    .output = lm_posix_output,
    .process_info = haiku_process_info,
    .thread_exit_register = lm_posix_thread_exit_register,
    .thread_exit_arm = lm_posix_thread_exit_arm,
    .thread_start = lm_posix_thread_start,
    .wait_on = lm_posix_wait_on,
    .wake_all = lm_posix_wake_all,
    .atfork = lm_posix_atfork,
};

const lm_backend_t* lm_backend_default(void) { return &haiku_backend; }
