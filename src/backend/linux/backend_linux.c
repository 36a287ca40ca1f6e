/* The Linux backend: mmap/madvise/mprotect for memory, futexes and pthreads for threads.
 *
 * Owns the few facts it learns at `init` (page size, overcommit mode) and three one-way
 * switches (MADV_FREE unsupported, 1 GiB huge pages unavailable, VMA naming unsupported).
 * Nothing here calls malloc: files are read with raw syscalls, the environment is scanned
 * directly, numbers are formatted by hand. The exceptions are pthread_create (glibc allocates the
 * new thread's TLS vector) and pthread_atfork: callers must not hold allocator locks there.
 * libnuma is never called (it allocates); LM_HAVE_LIBNUMA only switches NUMA awareness on.
 */
#define _GNU_SOURCE
#include "../backend.h"
#include "../../common/common.h"
#include "../posix/posix.h"
#include "cgroup.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* Kernel ABI values that older (or glibc's own) headers may lack. */
#ifndef MAP_HUGE_1GB
#define MAP_HUGE_2MB (21 << 26)
#define MAP_HUGE_1GB (30 << 26)
#endif
#ifndef PR_SET_VMA
#define PR_SET_VMA 0x53564d41
#define PR_SET_VMA_ANON_NAME 0
#endif
#define LINUX_GRND_NONBLOCK 0x0001
/* <linux/futex.h> is a kernel header, which a musl toolchain need not have */
#define LINUX_FUTEX_WAIT_PRIVATE 128 /* FUTEX_WAIT | FUTEX_PRIVATE_FLAG */
#define LINUX_FUTEX_WAKE_PRIVATE 129 /* FUTEX_WAKE | FUTEX_PRIVATE_FLAG */
#define LINUX_MPOL_PREFERRED 1 /* <numaif.h> belongs to libnuma */
#define MAX_NUMA_NODES 256
#ifndef LM_HAVE_LIBNUMA
#define LM_HAVE_LIBNUMA 0
#endif
#if LM_HAVE_LIBNUMA
#include <numa.h>
#include <numaif.h>
#include <sched.h>
#endif

extern char** environ;

static size_t page_size = 4096;
static bool overcommit = true;
static _Atomic(bool) reset_uses_dontneed; /* MADV_FREE gave EINVAL (kernel < 4.5) */
static _Atomic(bool) naming_unsupported;  /* kernel without CONFIG_ANON_VMA_NAME */
static _Atomic(int) numa_count_cache;     /* 0: not counted yet */

/* ---- raw file reads: open/read/close as syscalls, so no libc layer can buffer or allocate -- */

static long read_file(const char* path, void* buf, size_t len) {
  long fd = syscall(SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  size_t done = 0;
  while (done < len) {
    long n = syscall(SYS_read, (int)fd, (char*)buf + done, len - done);
    if (n > 0) done += (size_t)n;
    else if (n < 0 && errno == EINTR) continue;
    else break;
  }
  syscall(SYS_close, (int)fd);
  return (long)done;
}

/* ---- memory -------------------------------------------------------------------------------- */

static int map_flags(void) {
  /* NORESERVE keeps untouched memory out of the commit charge; under strict accounting
   * (mode 2) it would only turn ENOMEM at mmap into SIGSEGV at first touch, so leave it off. */
  return MAP_PRIVATE | MAP_ANONYMOUS | (overcommit ? MAP_NORESERVE : 0);
}

static void name_mapping(void* p, size_t size) {
  /* "[anon:libmimalloc]" in /proc/<pid>/maps helps whoever reads a memory map. */
  if (!lm_load_relaxed(&naming_unsupported) &&
      prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME, (unsigned long)p, size, "libmimalloc") != 0) {
    lm_store_relaxed(&naming_unsupported, true);
  }
  /* No MADV_HUGEPAGE here: a huge page backs 2 MiB at the first touch of any byte, which
   * multiplies the resident size of small heaps. Large pages are an explicit choice
   * (allow_large_os_pages: reserve_large; reserve_huge) made above the backend. */
}

static int linux_reserve(void* hint, size_t size, size_t try_align, bool commit, void** addr,
                         bool* is_zero) {
  /* (Without MAP_FIXED, EINVAL only means a length the kernel (or valgrind) cannot place: to
   * the caller every failure here is "no memory", as lm_posix_map says.) */
  void* p;
  int err = lm_posix_map(hint, size, try_align, page_size,
                         commit ? PROT_READ | PROT_WRITE : PROT_NONE, map_flags(), -1, &p);
  if (err != 0) return err;
  name_mapping(p, size);
  *addr = p;
  *is_zero = true; /* fresh anonymous memory is always zero-filled */
  return 0;
}

static int linux_commit(void* addr, size_t size, bool* is_zero) {
  if (mprotect(addr, size, PROT_READ | PROT_WRITE) != 0) return errno;
  *is_zero = false; /* the range may have been committed and written before */
  return 0;
}

static int linux_decommit(void* addr, size_t size, bool* needs_recommit) {
  /* DONTNEED frees the pages now; the range stays mapped and refaults as zero pages. */
  if (madvise(addr, size, MADV_DONTNEED) != 0) return errno;
  *needs_recommit = false;
  return 0;
}

static int linux_reset(void* addr, size_t size) {
  /* MADV_FREE is lazy (pages are taken only under memory pressure), hence cheaper. */
  while (!lm_load_relaxed(&reset_uses_dontneed)) {
    if (madvise(addr, size, MADV_FREE) == 0) return 0;
    if (errno == EAGAIN) continue;
    if (errno != EINVAL) return errno;
    lm_store_relaxed(&reset_uses_dontneed, true); /* kernel predates MADV_FREE */
  }
  return madvise(addr, size, MADV_DONTNEED) == 0 ? 0 : errno;
}

/* mremap(2) with MREMAP_DONTUNMAP (Linux 5.7) leaves the source mapped and empty; without it
 * the source would be a hole for a moment, which another thread's mmap could take. */
#ifndef MREMAP_DONTUNMAP
#define MREMAP_DONTUNMAP 4
#endif
static _Atomic(bool) move_unsupported; /* EINVAL: a kernel older than 5.7 */

static bool move_chunk(uint8_t* dst, uint8_t* src, size_t size, int* err) {
  void* p = mremap(src, size, size, MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP, dst);
  *err = p == MAP_FAILED ? errno : 0;
  return p != MAP_FAILED;
}

/* Bytes from `s` to the next multiple of `unit`, at most `left`. */
static size_t to_boundary(const uint8_t* s, size_t unit, size_t left) {
  size_t next = unit - ((uintptr_t)s & (unit - 1));
  return next < left ? next : left;
}

static int linux_move(void* dst, void* src, size_t size, size_t* moved) {
  *moved = 0;
  if (lm_load_relaxed(&move_unsupported)) return ENOSYS;
  uint8_t* d = dst;
  uint8_t* s = src;
  while (*moved < size) {
    /* One call moves a range inside one mapping; EFAULT says the range crosses into the next
     * (advice, such as huge pages from a 2 MiB boundary on, splits mappings): then move up to
     * the next 2 MiB boundary, or 64 KiB one (where moved blocks end), or one page, and go on. */
    size_t left = size - *moved;
    const size_t tries[] = {left, to_boundary(s, 2 * LM_MiB, left),
                            to_boundary(s, 64 * LM_KiB, left), to_boundary(s, page_size, left)};
    size_t chunk = 0;
    int err = 0;
    for (size_t i = 0; i < sizeof(tries) / sizeof(tries[0]); i++) {
      if (tries[i] == chunk) continue; /* tried already */
      chunk = tries[i];
      if (move_chunk(d, s, chunk, &err) || err != EFAULT) break;
    }
    if (err != 0) {
      if (err == EINVAL && *moved == 0) lm_store_relaxed(&move_unsupported, true);
      return err;
    }
    /* The source stays mapped (MREMAP_DONTUNMAP), but an emulator may take it for unmapped:
     * under qemu-user 7.2 the allocator's next use of that memory crashed. Mapped afresh over
     * itself it is mapped for everyone; natively one empty mapping replaces another. */
    if (mmap(s, chunk, PROT_READ | PROT_WRITE, MAP_FIXED | map_flags(), -1, 0) != MAP_FAILED) {
      name_mapping(s, chunk);
    }
    d += chunk;
    s += chunk;
    *moved += chunk;
  }
  return 0;
}

static int linux_protect(void* addr, size_t size, bool protect) {
  return lm_posix_protect(addr, size, !protect);
}

static int linux_numa_bind(void* addr, size_t size, int node) {
  if (node < 0 || node >= MAX_NUMA_NODES) return EINVAL;
  /* Pages are placed at first touch, so binding before that decides where they land.
   * The kernel reads maxnode-1 bits, hence the +1. A mask on the stack: libnuma's own
   * numa_tonode_memory would allocate one. */
  unsigned long mask[MAX_NUMA_NODES / (8 * sizeof(unsigned long))] = {0};
  mask[node / (8 * sizeof(unsigned long))] |= 1UL << (node % (8 * sizeof(long)));
#if LM_HAVE_LIBNUMA
  return mbind(addr, size, MPOL_PREFERRED, mask, MAX_NUMA_NODES + 1, 0) == 0 ? 0 : errno;
#else
  return syscall(SYS_mbind, addr, size, LINUX_MPOL_PREFERRED, mask, MAX_NUMA_NODES + 1, 0) == 0
             ? 0
             : errno;
#endif
}

#if LM_HUGE_PAGES /* -Dhuge_pages=disabled compiles explicit huge pages out */
static _Atomic(bool) huge_1gib_failed; /* stop asking for 1 GiB pages once refused */

static int linux_reserve_huge(void* hint, size_t size, int numa_node, void** addr,
                              bool* is_zero) {
  /* No NORESERVE: a hugetlb mapping without a pool reservation can SIGBUS on first touch. */
  const int flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB;
  void* p = MAP_FAILED;
  if (!lm_load_relaxed(&huge_1gib_failed)) {
    p = mmap(hint, size, PROT_READ | PROT_WRITE, flags | MAP_HUGE_1GB, -1, 0);
    if (p == MAP_FAILED) lm_store_relaxed(&huge_1gib_failed, true);
  }
  if (p == MAP_FAILED) p = mmap(hint, size, PROT_READ | PROT_WRITE, flags | MAP_HUGE_2MB, -1, 0);
  if (p == MAP_FAILED) return ENOMEM; /* no pool configured (nr_hugepages = 0): the usual case */
  if (numa_node >= 0) linux_numa_bind(p, size, numa_node); /* a failed bind is a lost hint */
  *addr = p;
  *is_zero = true;
  return 0;
}

static int linux_reserve_large(void* hint, size_t size, size_t try_align, void** addr,
                               bool* is_zero, bool* is_pinned) {
  /* Explicit 2 MiB pages when the administrator set a pool aside (vm.nr_hugepages); they are
   * committed at once and cannot be given back in parts. No NORESERVE: see reserve_huge. */
  void* p = mmap(hint, size, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | MAP_HUGE_2MB, -1, 0);
  if (p != MAP_FAILED) {
    name_mapping(p, size);
    *addr = p;
    *is_zero = true;
    *is_pinned = true;
    return 0;
  }
  /* Otherwise transparent huge pages: ordinary memory the kernel backs with 2 MiB pages where
   * it can, and splits again when parts are purged. */
  int err = linux_reserve(hint, size, try_align, true, addr, is_zero);
  if (err != 0) return err;
  madvise(*addr, size, MADV_HUGEPAGE); /* EINVAL without THP support: ordinary pages then */
  *is_pinned = false;
  return 0;
}
#endif

static int linux_large_pages_advise(void* addr, size_t size, bool on) {
  return madvise(addr, size, on ? MADV_HUGEPAGE : MADV_NOHUGEPAGE) == 0 ? 0 : errno;
}

/* Transparent huge pages where madvise asks for them and nowhere else: the kernel's "madvise"
 * mode. In "always" mode every mapping gets them anyway; in "never" (or without the file)
 * asking does nothing. */
static bool thp_on_advice(void) {
  char mode[64] = {0};
  long n = read_file("/sys/kernel/mm/transparent_hugepage/enabled", mode, sizeof(mode) - 1);
  if (n <= 0) return false;
  return strstr(mode, "[madvise]") != NULL;
}

/* The sum of the "<name>: <n> kB" lines named in `names` of /proc/self/smaps_rollup. */
static size_t rollup_kib(const char* const* names, size_t count) {
  char buf[2048];
  long n = read_file("/proc/self/smaps_rollup", buf, sizeof(buf) - 1);
  if (n <= 0) return 0;
  buf[n] = 0;
  size_t total = 0;
  for (const char* line = buf; *line != 0;) {
    for (size_t i = 0; i < count; i++) {
      size_t len = lm_strlen(names[i]);
      if (strncmp(line, names[i], len) != 0 || line[len] != ':') continue;
      const char* q = line + len + 1;
      while (*q == ' ') q++;
      size_t kib = 0;
      while (*q >= '0' && *q <= '9') kib = kib * 10 + (size_t)(*q++ - '0');
      total += kib;
    }
    while (*line != 0 && *line != '\n') line++;
    if (*line == '\n') line++;
  }
  return total;
}

static size_t linux_large_pages_resident(void) {
  /* Transparent huge pages, and hugetlb pages (MAP_HUGETLB) private or shared. */
  static const char* const names[] = {"AnonHugePages", "Private_Hugetlb", "Shared_Hugetlb"};
  return rollup_kib(names, sizeof(names) / sizeof(names[0])) * 1024;
}

static int linux_large_pages_allow(bool allow) {
  /* Inherited by children: the process and what it starts keep ordinary pages. */
  return prctl(PR_SET_THP_DISABLE, allow ? 0 : 1, 0, 0, 0) == 0 ? 0 : errno;
}

/* ---- machine ------------------------------------------------------------------------------- */

static int getcpu_node(void) {
  unsigned cpu = 0, node = 0;
  if (syscall(SYS_getcpu, &cpu, &node, NULL) != 0) return 0;
  return (int)node;
}

#if LM_HAVE_LIBNUMA
/* CPU -> node, from libnuma, filled once at load (node ids fit 8 bits: MAX_NUMA_NODES). */
#define CPU_TABLE_SIZE 1024
static uint8_t cpu_node[CPU_TABLE_SIZE];
static _Atomic(int) cpu_table_cpus; /* entries filled; 0 until the constructor ran */

__attribute__((constructor)) static void cpu_table_fill(void) {
  if (numa_available() < 0) return; /* no NUMA support in the kernel: getcpu then */
  int cpus = numa_num_configured_cpus();
  if (cpus <= 0) return;
  if (cpus > CPU_TABLE_SIZE) cpus = CPU_TABLE_SIZE;
  for (int cpu = 0; cpu < cpus; cpu++) {
    int node = numa_node_of_cpu(cpu); /* allocates: fine here, never inside malloc */
    cpu_node[cpu] = (uint8_t)(node >= 0 && node < MAX_NUMA_NODES ? node : 0);
  }
  atomic_store_explicit(&cpu_table_cpus, cpus, memory_order_release);
}

static int linux_numa_node(void) {
  /* sched_getcpu is a vDSO call (no kernel entry); the table turns it into a node. */
  int cpu = sched_getcpu();
  int filled = atomic_load_explicit(&cpu_table_cpus, memory_order_acquire);
  if (cpu >= 0 && cpu < filled) return cpu_node[cpu];
  return getcpu_node(); /* before the constructor ran, or a CPU beyond the table */
}
#else
static int linux_numa_node(void) { return getcpu_node(); }
#endif

/* The highest id in a kernel node list such as "0", "0-3" or "0,2-5\n"; -1 if none. */
static int highest_in_node_list(const char* list, long len) {
  int highest = -1, id = -1;
  for (long i = 0; i <= len; i++) {
    char c = i < len ? list[i] : 0;
    if (c >= '0' && c <= '9') {
      id = (id < 0 ? 0 : id * 10) + (c - '0');
      if (id >= MAX_NUMA_NODES) return MAX_NUMA_NODES - 1;
    } else {
      if (id > highest) highest = id;
      id = -1;
    }
  }
  return highest;
}

/* The raw count: node ids may be sparse, so count up to the highest online id, which keeps
 * numa_node() < count. One read of the kernel's list (probing node0..node255 cost 256
 * syscalls at every start). */
static int sysfs_node_count(void) {
  char list[256];
  long len = read_file("/sys/devices/system/node/online", list, sizeof(list) - 1);
  int highest = len > 0 ? highest_in_node_list(list, len) : -1;
  return highest < 0 ? 1 : highest + 1;
}

static int linux_numa_node_count(void) {
  int count = lm_load_relaxed(&numa_count_cache);
  if (count > 0) return count;
  count = 0;
#if LM_HAVE_LIBNUMA
  /* numa_max_node reads what libnuma's constructor found; it is -1 while that constructor is
   * still running (its own first malloc can start this allocator): the raw count then. */
  if (numa_available() >= 0) {
    int highest = numa_max_node();
    if (highest >= 0) count = highest < MAX_NUMA_NODES ? highest + 1 : MAX_NUMA_NODES;
  }
#endif
  if (count <= 0) count = sysfs_node_count();
  lm_store_relaxed(&numa_count_cache, count);
  return count;
}

static bool linux_random_bytes(void* buf, size_t len) {
  size_t done = 0;
  while (done < len) {
    long n = syscall(SYS_getrandom, (char*)buf + done, len - done, LINUX_GRND_NONBLOCK);
    if (n > 0) done += (size_t)n;
    else if (n < 0 && errno == EINTR) continue;
    else break; /* ENOSYS (old kernel, seccomp) or EAGAIN (pool not yet seeded at boot) */
  }
  if (done == len) return true;
  return read_file("/dev/urandom", (char*)buf + done, len - done) == (long)(len - done);
}

static bool linux_getenv(const char* name, char* buf, size_t size) {
  /* Scanned directly: getenv() is safe too, but this works before libc is fully set up. */
  return lm_posix_getenv(environ, name, buf, size);
}

/* ---- threads ------------------------------------------------------------------------------- */

/* Thread exit: a pthread key (lm_posix_thread_exit_register). glibc keeps keys 0..31 inside
 * the thread descriptor; a key made at process start is one of them, so arming a thread does not
 * allocate. Background threads: lm_posix_thread_start (a static slot, all signals blocked). */

static void linux_wait_on(_Atomic(uint32_t)* addr, uint32_t expected, int64_t timeout_ms) {
  struct timespec ts, *timeout = NULL;
  if (timeout_ms >= 0) {
    ts.tv_sec = (time_t)(timeout_ms / 1000);
    ts.tv_nsec = (long)(timeout_ms % 1000) * 1000000;
    timeout = &ts;
  }
  int saved = errno; /* ETIMEDOUT/EAGAIN are expected; keep the caller's errno */
  syscall(SYS_futex, (uint32_t*)addr, LINUX_FUTEX_WAIT_PRIVATE, expected, timeout, NULL, 0);
  errno = saved;
}

static void linux_wake_all(_Atomic(uint32_t)* addr) {
  syscall(SYS_futex, (uint32_t*)addr, LINUX_FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

static void linux_init(lm_backend_caps_t* caps) {
  long ps = sysconf(_SC_PAGESIZE);
  page_size = ps > 0 ? (size_t)ps : 4096;
  /* Modes 0 (heuristic) and 1 (always) overcommit, 2 (strict) does not; an unreadable file
   * (a sandbox) is taken as the kernel default, 0. */
  char mode = '0';
  read_file("/proc/sys/vm/overcommit_memory", &mode, 1);
  overcommit = mode == '0' || mode == '1';
  *caps = (lm_backend_caps_t){
      .page_size = page_size,
      .alloc_granularity = page_size,
      .large_page_size = 2 * LM_MiB,
      .has_overcommit = overcommit,
      .has_partial_release = true,
      .has_virtual_reserve = true,
      .has_decommit = true,
      .has_threads = true,
      .has_numa = linux_numa_node_count() > 1,
      .has_large_page_advice = thp_on_advice(),
  };
}

/* ---- process figures ------------------------------------------------------------------------ */

static void linux_process_info(size_t* user_ms, size_t* system_ms, size_t* current_rss,
                               size_t* peak_rss, size_t* page_faults) {
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) == 0) {
    *user_ms = (size_t)ru.ru_utime.tv_sec * 1000 + (size_t)ru.ru_utime.tv_usec / 1000;
    *system_ms = (size_t)ru.ru_stime.tv_sec * 1000 + (size_t)ru.ru_stime.tv_usec / 1000;
    *peak_rss = (size_t)ru.ru_maxrss * 1024;
    *page_faults = (size_t)ru.ru_majflt;
  }
  /* The real resident set, not an estimate: the second field of /proc/self/statm, in pages. */
  char buf[128];
  long fd = syscall(SYS_openat, AT_FDCWD, "/proc/self/statm", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  long n = syscall(SYS_read, fd, buf, sizeof(buf) - 1);
  syscall(SYS_close, fd);
  if (n <= 0) return;
  buf[n] = 0;
  const char* q = buf;
  while (*q != 0 && *q != ' ') q++;
  size_t pages = 0;
  while (*q == ' ') q++;
  while (*q >= '0' && *q <= '9') pages = pages * 10 + (size_t)(*q++ - '0');
  *current_rss = pages * page_size;
}

/* ---- the container (cgroup.c) -------------------------------------------------------------- */

static bool linux_container_limits(lm_container_t* out) {
  /* MIMALLOC_CGROUP_ROOT: a folder standing for "/" (tests point it at a tree they write) */
  char root[512];
  if (!linux_getenv("MIMALLOC_CGROUP_ROOT", root, sizeof(root))) root[0] = 0;
  return lm_linux_container_limits(root, out);
}

/* ---- pointers from another allocator ----------------------------------------------------------- */
/* The allocator a preload displaced is the next definition of `free` after this object in the
 * lookup order (glibc's, normally). Looked up once; if it is our own `free`, there is none. */
typedef void free_fun_t(void*);
typedef size_t usable_size_fun_t(void*);
static _Atomic(free_fun_t*) next_free;
static _Atomic(usable_size_fun_t*) next_usable_size;
static _Atomic(int) next_looked_up;

static void look_up_next_allocator(void) {
  if (atomic_load_explicit(&next_looked_up, memory_order_acquire)) return;
  free_fun_t* f = (free_fun_t*)dlsym(RTLD_NEXT, "free");
  usable_size_fun_t* u = (usable_size_fun_t*)dlsym(RTLD_NEXT, "malloc_usable_size");
  if (f == (free_fun_t*)&free) f = NULL;
  atomic_store(&next_free, f);
  atomic_store(&next_usable_size, u);
  atomic_store_explicit(&next_looked_up, 1, memory_order_release);
}

static bool linux_foreign_free(void* p) {
  look_up_next_allocator();
  free_fun_t* f = atomic_load(&next_free);
  if (f == NULL) return false;
  f(p);
  return true;
}

static size_t linux_foreign_usable_size(const void* p) {
  look_up_next_allocator();
  usable_size_fun_t* u = atomic_load(&next_usable_size);
  return (u != NULL && atomic_load(&next_free) != NULL) ? u((void*)p) : 0;
}

static const lm_backend_t linux_backend = {
    .name = "linux",
    .init = linux_init,
    .reserve = linux_reserve,
    .release = lm_posix_unmap,
    .commit = linux_commit,
    .decommit = linux_decommit,
    .reset = linux_reset,
    .protect = linux_protect,
    .move = linux_move,
#if LM_HUGE_PAGES /* else no explicit huge pages; THP advice stays (MIMALLOC_ALLOW_THP) */
    .reserve_huge = linux_reserve_huge,
    .reserve_large = linux_reserve_large,
#endif
    .large_pages_resident = linux_large_pages_resident,
    .numa_bind = linux_numa_bind,
    .large_pages_allow = linux_large_pages_allow,
    .large_pages_advise = linux_large_pages_advise,
    .numa_node = linux_numa_node,
    .numa_node_count = linux_numa_node_count,
    .clock_ms = lm_posix_clock_ms,
    .random_bytes = linux_random_bytes,
    .getenv = linux_getenv,
    .output = lm_posix_output,
    .process_info = linux_process_info,
    .container_limits = linux_container_limits,
    .container_usage = lm_linux_container_usage,
    .foreign_free = linux_foreign_free,
    .foreign_usable_size = linux_foreign_usable_size,
    .thread_exit_register = lm_posix_thread_exit_register,
    .thread_exit_arm = lm_posix_thread_exit_arm,
    .thread_start = lm_posix_thread_start,
    .wait_on = linux_wait_on,
    .wake_all = linux_wake_all,
    .atfork = lm_posix_atfork,
};

const lm_backend_t* lm_backend_default(void) { return &linux_backend; }
