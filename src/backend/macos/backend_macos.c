/* The macOS backend: mmap with a Mach VM tag, madvise's reusable/reuse pair for purging,
 * pthreads for threads (src/backend/posix/), malloc zones for foreign pointers.
 *
 * Memory is tagged (VM_MAKE_TAG as mmap's fd argument, MIMALLOC_OS_TAG, 100 by default) so
 * that vmmap(1) and footprint(1) name it. A purge marks pages MADV_FREE_REUSABLE: the kernel
 * may take them at any time and stops counting them in the task's footprint; they stay mapped
 * with old contents or zeros. Before such pages are used again the engine calls `reuse`
 * (MADV_FREE_REUSE), which counts them again; skipping it would leave the footprint low, not
 * the memory broken. mach_vm_allocate would do as well, but mmap gives the shared POSIX code
 * and partial munmap.
 *
 * No malloc zone is registered: the library replaces the malloc family through dyld
 * interposing (src/common/platform.h, LM_INTERPOSE), so malloc_zone_malloc() and friends,
 * which some frameworks call directly, still go to the system allocator.
 */
#include "../backend.h"
#include "../../common/common.h"
#include "../posix/posix.h"

#include <crt_externs.h>
#include <errno.h>
#include <mach/mach.h>
#include <mach/vm_statistics.h>
#include <malloc/malloc.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <unistd.h>

static size_t page_size = 4096; /* 16 KiB on Apple silicon */
static int vm_tag = 100;

/* ---- memory ------------------------------------------------------------------------------- */

static int macos_reserve(void* hint, size_t size, size_t try_align, bool commit, void** addr,
                         bool* is_zero) {
  int prot = commit ? PROT_READ | PROT_WRITE : PROT_NONE;
  int err = lm_posix_map(hint, size, try_align, page_size, prot, MAP_PRIVATE | MAP_ANON,
                         VM_MAKE_TAG(vm_tag), addr);
  if (err == 0) *is_zero = true; /* fresh anonymous memory */
  return err;
}

static int macos_commit(void* addr, size_t size, bool* is_zero) {
  int err = lm_posix_protect(addr, size, true);
  if (err == 0) *is_zero = false; /* the range may have been written before */
  return err;
}

/* Reusable pages stay mapped: no recommit, but a `reuse` before the next use. */
static int macos_decommit(void* addr, size_t size, bool* needs_recommit) {
  if (madvise(addr, size, MADV_FREE_REUSABLE) != 0) return errno;
  *needs_recommit = false;
  return 0;
}

static int macos_reset(void* addr, size_t size) {
  return madvise(addr, size, MADV_FREE_REUSABLE) == 0 ? 0 : errno;
}

static int macos_reuse(void* addr, size_t size) {
  return madvise(addr, size, MADV_FREE_REUSE) == 0 ? 0 : errno;
}

static int macos_protect(void* addr, size_t size, bool protect) {
  return lm_posix_protect(addr, size, !protect);
}

/* ---- machine ------------------------------------------------------------------------------ */

static bool macos_getenv(const char* name, char* buf, size_t size) {
  /* A dylib cannot name `environ`; _NSGetEnviron is the documented way to reach it. */
  char*** env = _NSGetEnviron();
  return env != NULL && lm_posix_getenv(*env, name, buf, size);
}

static bool macos_random_bytes(void* buf, size_t len) {
  /* getentropy (macOS 10.12) never blocks once the system is up; 256 bytes per call. */
  for (size_t done = 0; done < len;) {
    size_t n = lm_min(len - done, 256);
    if (getentropy((char*)buf + done, n) != 0) return lm_posix_random_bytes(buf, len);
    done += n;
  }
  return true;
}

static void macos_process_info(size_t* user_ms, size_t* system_ms, size_t* current_rss,
                               size_t* peak_rss, size_t* page_faults) {
  long maxrss = 0;
  lm_posix_process_times(user_ms, system_ms, &maxrss);
  *peak_rss = maxrss > 0 ? (size_t)maxrss : 0; /* bytes on macOS */
  struct mach_task_basic_info info;
  mach_msg_type_number_t count = MACH_TASK_BASIC_INFO_COUNT;
  if (task_info(mach_task_self(), MACH_TASK_BASIC_INFO, (task_info_t)&info, &count) ==
      KERN_SUCCESS) {
    *current_rss = (size_t)info.resident_size;
  }
  (void)page_faults;
}

/* ---- pointers from the system allocator ---------------------------------------------------- */
/* Blocks from before the interposing took effect (dyld's own start-up) belong to a system zone,
 * which answers for its pointers; the zone's own entry points are not interposed. */
static bool macos_foreign_free(void* p) {
  malloc_zone_t* zone = malloc_zone_from_ptr(p);
  if (zone == NULL) return false;
  malloc_zone_free(zone, p);
  return true;
}

static size_t macos_foreign_usable_size(const void* p) {
  malloc_zone_t* zone = malloc_zone_from_ptr(p);
  return zone != NULL && zone->size != NULL ? zone->size(zone, p) : 0;
}

/* ---- the backend --------------------------------------------------------------------------- */

static void macos_init(lm_backend_caps_t* caps) {
  long ps = sysconf(_SC_PAGESIZE);
  page_size = ps > 0 ? (size_t)ps : 4096;
  /* The option os_tag (MIMALLOC_OS_TAG): the tags below 100 belong to Apple's own allocators.
   * Read here, once, since a backend never calls up into the engine's options. */
  char buf[16];
  if (macos_getenv("MIMALLOC_OS_TAG", buf, sizeof(buf))) {
    int tag = 0;
    for (const char* s = buf; *s >= '0' && *s <= '9' && tag < 1000; s++) tag = tag * 10 + (*s - '0');
    if (tag >= 100 && tag <= 255) vm_tag = tag;
  }
  *caps = (lm_backend_caps_t){
      .page_size = page_size,
      .alloc_granularity = page_size,
      .has_overcommit = true, /* pages are backed at first touch, and compressed or swapped */
      .has_partial_release = true,
      .has_virtual_reserve = true,
      .has_decommit = true,
      .has_threads = true,
  };
}

static const lm_backend_t macos_backend = {
    .name = "macos",
    .init = macos_init,
    .reserve = macos_reserve,
    .release = lm_posix_unmap,
    .commit = macos_commit,
    .decommit = macos_decommit,
    .reset = macos_reset,
    .reuse = macos_reuse,
    .protect = macos_protect,
    .clock_ms = lm_posix_clock_ms,
    .random_bytes = macos_random_bytes,
    .getenv = macos_getenv,
    .output = lm_posix_output,
    .process_info = macos_process_info,
    .foreign_free = macos_foreign_free,
    .foreign_usable_size = macos_foreign_usable_size,
    .thread_exit_register = lm_posix_thread_exit_register,
    .thread_exit_arm = lm_posix_thread_exit_arm,
    .thread_start = lm_posix_thread_start,
    /* The mutex and condition fallback: __ulock_wait would be a private interface. */
    .wait_on = lm_posix_wait_on,
    .wake_all = lm_posix_wake_all,
    .atfork = lm_posix_atfork,
};

const lm_backend_t* lm_backend_default(void) { return &macos_backend; }
