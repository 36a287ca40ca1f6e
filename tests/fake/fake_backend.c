/* The fake backend (see fake_backend.h for its rules).
 *
 * State: one buffer reserved once with real mmap (VirtualAlloc on Windows; 1 GiB aligned), a
 * sorted table of live reservations (offsets into the buffer), and one state byte per real OS
 * page of the buffer. Real protections always match the state bytes: only COMMITTED and
 * DECOMMITTED (Linux-like: accessible, reads zero) pages are accessible. Released ranges are
 * MADV_DONTNEED'ed, so a new reservation really is zero and may honestly report is_zero.
 * Everything is under one mutex; this is test code, so clarity beats speed (page-wise loops).
 */
#define _GNU_SOURCE
#include "fake_backend.h"

#include "common/common.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h> /* winpthreads on Windows */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef _WIN32
#include <windows.h>
#else
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
/* kernel ABI values: <linux/futex.h> is a kernel header, which a musl toolchain need not have */
#define LINUX_FUTEX_WAIT_PRIVATE 128
#define LINUX_FUTEX_WAKE_PRIVATE 129
#endif

/* Address space only; each quarter of it down to BUFFER_MIN is a fallback. A 32-bit process has
 * 4 GiB in all (the 1 GiB alignment costs another GiB while the buffer is placed). */
#if LM_INTPTR_BITS == 64
#define BUFFER_SIZE (16 * LM_GiB)
#define BUFFER_MIN LM_GiB
#else
#define BUFFER_SIZE LM_GiB
#define BUFFER_MIN (256 * LM_MiB)
#endif
#define MAX_RESERVATIONS 8192
#define SCRIBBLE 0xAB
#define OUTPUT_MAX (64 * LM_KiB)
#define ENV_MAX 32

/* PG_DECOMMITTED: accessible, its memory given back (Linux's MADV_DONTNEED); PG_PROTECTED_GONE:
 * the same for a page that was protected, which stays protected (so a later protect(false)
 * is legal, as mprotect is on Linux) */
enum { PG_FREE, PG_RESERVED, PG_COMMITTED, PG_DECOMMITTED, PG_PROTECTED, PG_PROTECTED_GONE };
static const char* const op_names[FAKE_OP_COUNT] = {"reserve", "release",   "commit",
                                                    "decommit", "reset",    "protect",
                                                    "reserve_huge", "advise_large", "move"};

typedef struct res_s {
  size_t start; /* offset from the buffer base */
  size_t size;
} res_t;

typedef struct env_s {
  char name[64];
  char value[256];
} env_t;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t buffer_once = PTHREAD_ONCE_INIT;
static uint8_t* base;  /* the buffer */
static size_t span;    /* its size */
static size_t unit;    /* the real OS page: granule of `pages` */
static uint8_t* pages; /* one PG_* per unit */
static uint8_t* advice; /* one byte per unit: 1 = advised to use large pages */

static res_t res[MAX_RESERVATIONS]; /* sorted by start */
static size_t res_count, reserved_bytes, committed_units;

static lm_backend_caps_t caps;
static bool needs_recommit, unaligned, reserve_zero = true, huge_pages;
static int64_t huge_page_ms; /* clock time each reserve_huge call takes */
static bool placing_huge_at_hint; /* inside reserve_huge: see find_place */
static int large_pages; /* 0 none, 1 transparent (purgeable), 2 explicit (pinned) */
static int numa_bound = -1; /* the node of the last numa_bind */
static size_t numa_binds;
static size_t calls[FAKE_OP_COUNT], fail_at[FAKE_OP_COUNT], failures[FAKE_OP_COUNT];
static bool fail_always[FAKE_OP_COUNT];

static _Atomic(int64_t) clock_now;
static uint64_t seed = 0x5eed, counter;
static bool random_fails;
static int numa_count = 1, numa_current;
static env_t env[ENV_MAX];
static char output[OUTPUT_MAX];
static size_t output_len;

static lm_thread_exit_fun* _Atomic exit_fn;
static _Thread_local void* armed_arg;
static size_t arm_calls, thread_starts, atfork_calls;
static _Atomic(bool) real_thread_exit;
static pthread_key_t exit_key;
static pthread_once_t exit_key_once = PTHREAD_ONCE_INIT;
static void (*atfork_fns[3])(void);

static const lm_backend_caps_t default_caps = {
    .page_size = 4096,
    .alloc_granularity = 4096,
    .large_page_size = 2 * LM_MiB,
    .has_overcommit = false,
    .has_partial_release = true,
    .has_virtual_reserve = true,
    .has_decommit = true,
    .has_threads = true,
    .has_numa = false,
};

/* Windows' rules (FAKE_BACKEND_OS=windows): 64 KiB reservations released only whole, decommitted
 * memory inaccessible until committed again, no overcommit, no large pages without the
 * privilege. */
static const lm_backend_caps_t windows_caps = {
    .page_size = 4096,
    .alloc_granularity = 64 * 1024,
    .large_page_size = 0,
    .large_pages_absent = "imitating Windows without SeLockMemoryPrivilege",
    .has_overcommit = false,
    .has_partial_release = false,
    .has_virtual_reserve = true,
    .has_decommit = true,
    .has_threads = true,
    .has_numa = false,
};

/* wasm's rules (FAKE_BACKEND_OS=wasm): linear memory only grows, in 64 KiB pages, so every
 * reservation comes back committed, nothing can be decommitted or released in part, and there
 * are no threads or large pages. */
static const lm_backend_caps_t wasm_caps = {
    .page_size = 64 * 1024,
    .alloc_granularity = 64 * 1024,
    .large_page_size = 0,
    .has_overcommit = false,
    .has_partial_release = false,
    .has_virtual_reserve = false,
    .has_decommit = false,
    .has_threads = false,
    .has_numa = false,
};

static bool imitates(const char* name) {
  const char* os = getenv("FAKE_BACKEND_OS");
  return os != NULL && strcmp(os, name) == 0;
}
static bool imitate_windows(void) { return imitates("windows"); }

bool fake_backend_imitates_windows(void) { return imitate_windows(); }
bool fake_backend_imitates_wasm(void) { return imitates("wasm"); }

static _Noreturn void violation(const char* fmt, ...) {
  va_list args;
  va_start(args, fmt);
  fputs("fake_backend: contract violation: ", stderr);
  vfprintf(stderr, fmt, args);
  fputs("\n", stderr);
  va_end(args);
  abort();
}

/* ---- the buffer and its page states ------------------------------------------------------ */

/* ---- the real memory under the fake: the few OS calls it needs, for Linux and Windows ------ */
#ifdef _WIN32
static size_t real_page_size(void) {
  SYSTEM_INFO si;
  GetSystemInfo(&si);
  return si.dwPageSize;
}
/* Inaccessible address space, 1 GiB aligned (the over-reservation stays: no partial release). */
static uint8_t* real_reserve_aligned(size_t size) {
  uint8_t* p = VirtualAlloc(NULL, size + LM_GiB, MEM_RESERVE, PAGE_NOACCESS);
  return p == NULL ? NULL : lm_align_up_ptr(p, LM_GiB);
}
static void* real_table(size_t size) {
  return VirtualAlloc(NULL, size, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE);
}
#else
static size_t real_page_size(void) {
  long ps = sysconf(_SC_PAGESIZE);
  return ps > 0 ? (size_t)ps : 4096;
}
static uint8_t* real_reserve_aligned(size_t size) {
  /* Over-reserve by 1 GiB and trim, so alignments up to 1 GiB can be honoured. */
  uint8_t* p = mmap(NULL, size + LM_GiB, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                    -1, 0);
  if (p == MAP_FAILED) return NULL;
  uint8_t* b = lm_align_up_ptr(p, LM_GiB);
  if (b > p) munmap(p, (size_t)(b - p));
  munmap(b + size, (size_t)(p + LM_GiB - b));
  return b;
}
static void* real_table(size_t size) {
  void* p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                 -1, 0);
  return p == MAP_FAILED ? NULL : p;
}
#endif

static void buffer_init(void) {
  unit = real_page_size();
  caps = default_caps;
  for (span = BUFFER_SIZE; span >= BUFFER_MIN; span /= 4) {
    base = real_reserve_aligned(span);
    if (base != NULL) break;
  }
  if (base == NULL) violation("cannot reserve the fake's buffer (ulimit -v?)");
  pages = real_table(span / unit);
  if (pages == NULL) violation("cannot map the page-state table");
  advice = real_table(span / unit);
  if (advice == NULL) violation("cannot map the advice table");
}

static void enter(void) {
  pthread_once(&buffer_once, buffer_init);
  pthread_mutex_lock(&lock);
}
static void leave(void) { pthread_mutex_unlock(&lock); }

static size_t off_of(const void* p) { return (size_t)((const uint8_t*)p - base); }

/* Write the "OS's" bytes over a unit: what a kernel does to memory it reclaims, which a
 * sanitizer must not see as the program's write (the allocator may have poisoned free blocks
 * there in ASan builds). A plain loop through a volatile pointer: memset is intercepted. */
#if LM_ASAN
__attribute__((no_sanitize("address"))) static void os_fill(uint8_t* p, int byte, size_t n) {
  volatile uint8_t* v = p;
  for (size_t i = 0; i < n; i++) v[i] = (uint8_t)byte;
}
#else
static void os_fill(uint8_t* p, int byte, size_t n) { memset(p, byte, n); }
#endif

static bool count_committed(uint8_t s) { return s == PG_COMMITTED || s == PG_PROTECTED; }
static bool accessible(uint8_t s) { return s == PG_COMMITTED || s == PG_DECOMMITTED; }

/* Set the state of units [first, first+n), keeping the committed count in step; pages that
 * become committed from an uncommitted state are scribbled (their RW protection is set first
 * by the caller). */
static void set_state(size_t first, size_t n, uint8_t to, bool scribble_new) {
  for (size_t i = first; i < first + n; i++) {
    uint8_t from = pages[i];
    committed_units += count_committed(to) - count_committed(from);
    if (scribble_new && to == PG_COMMITTED && !count_committed(from)) {
      os_fill(base + i * unit, SCRIBBLE, unit);
    }
    pages[i] = (uint8_t)to;
  }
}

/* The real protection follows the fake's states: accessible (rw) or not. */
#ifdef _WIN32
static void real_access(size_t off, size_t size, bool rw) {
  DWORD old;
  bool ok = rw ? VirtualAlloc(base + off, size, MEM_COMMIT, PAGE_READWRITE) != NULL &&
                     VirtualProtect(base + off, size, PAGE_READWRITE, &old)
               : VirtualProtect(base + off, size, PAGE_NOACCESS, &old) ||
                     VirtualFree(base + off, size, MEM_DECOMMIT); /* partly gone already */
  if (!ok) violation("real VirtualAlloc/VirtualProtect failed: %lu", GetLastError());
}
/* Inaccessible and given back: the range reads zero when it is made accessible again. */
static void real_drop(size_t off, size_t size) { VirtualFree(base + off, size, MEM_DECOMMIT); }
/* The accessible pages of the range read zero from now on; protected ones lose their memory
 * (made accessible again, they read zero too); the others keep their state. */
static void real_zero_accessible(size_t off, size_t size) {
  for (size_t i = off / unit; i < (off + size) / unit; i++) {
    if (accessible(pages[i])) os_fill(base + i * unit, 0, unit);
    else if (pages[i] == PG_PROTECTED) VirtualFree(base + i * unit, unit, MEM_DECOMMIT);
  }
}
#else
static void real_access(size_t off, size_t size, bool rw) {
  if (mprotect(base + off, size, rw ? PROT_READ | PROT_WRITE : PROT_NONE) != 0) {
    violation("real mprotect failed: %d", errno);
  }
}
static void real_drop(size_t off, size_t size) {
  madvise(base + off, size, MADV_DONTNEED);
  real_access(off, size, false);
}
static void real_zero_accessible(size_t off, size_t size) {
  madvise(base + off, size, MADV_DONTNEED); /* physical pages back: they refault as zero */
}
#endif

/* ---- argument checks ------------------------------------------------------------------------ */

static void check_aligned(fake_op_t op, const void* p, size_t size, size_t align,
                          const char* what) {
  if (size == 0 || ((uintptr_t)p % align) != 0 || size % align != 0) {
    violation("%s(%p, %zu): address and size must be non-zero multiples of %s (%zu)",
              op_names[op], p, size, what, align);
  }
}

/* Index of the live reservation that holds the whole range, or SIZE_MAX. */
static size_t find_reservation(const void* p, size_t size) {
  const uint8_t* q = p;
  if (q < base || q >= base + span) return SIZE_MAX;
  size_t off = off_of(p), lo = 0, hi = res_count;
  while (lo < hi) { /* count the reservations starting at or below off */
    size_t mid = (lo + hi) / 2;
    if (res[mid].start <= off) lo = mid + 1;
    else hi = mid;
  }
  if (lo == 0) return SIZE_MAX;
  const res_t* r = &res[lo - 1];
  return off - r->start < r->size && size <= r->size - (off - r->start) ? lo - 1 : SIZE_MAX;
}

/* The same, aborting when the range is not inside one live reservation. */
static size_t containing(fake_op_t op, const void* p, size_t size) {
  size_t i = find_reservation(p, size);
  if (i == SIZE_MAX) {
    violation("%s(%p, %zu): range is not inside one live reservation", op_names[op], p, size);
  }
  return i;
}

/* Count the call and decide whether an injected failure hits it. */
static bool inject_failure(fake_op_t op) {
  calls[op]++;
  bool fail = fail_always[op] || (fail_at[op] != 0 && calls[op] == fail_at[op]);
  if (fail_at[op] != 0 && calls[op] == fail_at[op]) fail_at[op] = 0;
  if (fail) failures[op]++;
  return fail;
}

/* ---- memory ---------------------------------------------------------------------------------- */

/* First fit of `size` at `align` (offset `misalign` from it), keeping a guard gap of one
 * granule to each neighbour. The hint wins when its place is free. */
static bool find_place(size_t size, size_t align, size_t misalign, const void* hint,
                       size_t* start, size_t* index) {
  /* A huge page asked for right after the previous one may adjoin it (arenas of several 1 GiB
   * pages are made so); everything else keeps a guard gap to its neighbours. */
  const size_t guard = placing_huge_at_hint && hint != NULL ? 0 : caps.alloc_granularity;
  for (int pass = (hint != NULL ? 0 : 1); pass < 2; pass++) {
    for (size_t i = 0; i <= res_count; i++) {
      size_t lo = i == 0 ? 0 : res[i - 1].start + res[i - 1].size + guard;
      size_t hi = i == res_count ? span : (res[i].start >= guard ? res[i].start - guard : 0);
      size_t s;
      if (pass == 0) {
        const uint8_t* h = hint;
        if (h < base || h >= base + span || off_of(h) % caps.alloc_granularity != 0) break;
        s = off_of(h);
        if (s < lo) break; /* sorted: the hint is not free */
        if (s >= hi) continue;
      } else {
        s = lm_align_up(lo, align) + misalign;
      }
      if (s < hi && size <= hi - s) {
        *start = s;
        *index = i;
        return true;
      }
      if (pass == 0) break;
    }
  }
  return false;
}

static int place(void* hint, size_t size, size_t try_align, bool commit, void** addr,
                 bool* is_zero) {
  const size_t gran = caps.alloc_granularity;
  bool wants_align = try_align > gran && lm_is_power_of_two(try_align) && try_align <= LM_GiB;
  size_t start, index;
  bool found;
  if (unaligned && wants_align) { /* land halfway between two try_align boundaries */
    found = find_place(size, try_align, try_align / 2, NULL, &start, &index) ||
            find_place(size, gran, 0, NULL, &start, &index);
  } else {
    found = (wants_align && find_place(size, try_align, 0, hint, &start, &index)) ||
            find_place(size, gran, 0, hint, &start, &index);
  }
  if (!found) return ENOMEM;
  if (res_count == MAX_RESERVATIONS) violation("more than %d live reservations", MAX_RESERVATIONS);
  memmove(&res[index + 1], &res[index], (res_count - index) * sizeof(res_t));
  res[index] = (res_t){start, size};
  res_count++;
  reserved_bytes += size;
  commit = commit || !caps.has_virtual_reserve; /* wasm-like: everything is committed */
  if (commit) real_access(start, size, true);
  set_state(start / unit, size / unit, commit ? PG_COMMITTED : PG_RESERVED, !reserve_zero);
  *addr = base + start;
  *is_zero = reserve_zero;
  return 0;
}

static int fake_reserve(void* hint, size_t size, size_t try_align, bool commit, void** addr,
                        bool* is_zero) {
  enter();
  check_aligned(FAKE_OP_RESERVE, hint, size, caps.alloc_granularity, "alloc_granularity");
  int err = inject_failure(FAKE_OP_RESERVE) ? ENOMEM
                                             : place(hint, size, try_align, commit, addr, is_zero);
  leave();
  return err;
}

static int fake_release(void* addr, size_t size) {
  enter();
  check_aligned(FAKE_OP_RELEASE, addr, size, caps.alloc_granularity, "alloc_granularity");
  size_t i = containing(FAKE_OP_RELEASE, addr, size);
  res_t r = res[i];
  size_t off = off_of(addr), end = off + size, r_end = r.start + r.size;
  if (!caps.has_partial_release && (off != r.start || size != r.size)) {
    violation("release(%p, %zu): without has_partial_release, release must cover exactly the "
              "reservation [%p, +%zu)", addr, size, (void*)(base + r.start), r.size);
  }
  if (inject_failure(FAKE_OP_RELEASE)) {
    leave();
    return ENOMEM;
  }
  real_drop(off, size);
  set_state(off / unit, size / unit, PG_FREE, false);
  memset(advice + off / unit, 0, size / unit);
  reserved_bytes -= size;
  if (off == r.start && end == r_end) { /* whole */
    memmove(&res[i], &res[i + 1], (res_count - i - 1) * sizeof(res_t));
    res_count--;
  } else if (off == r.start) { /* head */
    res[i] = (res_t){end, r_end - end};
  } else if (end == r_end) { /* tail */
    res[i].size = off - r.start;
  } else { /* middle: split in two */
    if (res_count == MAX_RESERVATIONS) violation("too many live reservations");
    memmove(&res[i + 2], &res[i + 1], (res_count - i - 1) * sizeof(res_t));
    res[i].size = off - r.start;
    res[i + 1] = (res_t){end, r_end - end};
    res_count++;
  }
  leave();
  return 0;
}

/* Common entry of the page-granular operations: checks, then the injected failure. */
static bool page_op(fake_op_t op, void* addr, size_t size) {
  enter();
  check_aligned(op, addr, size, caps.page_size, "page_size");
  containing(op, addr, size);
  if (!inject_failure(op)) return true;
  leave();
  return false;
}

static int fake_commit(void* addr, size_t size, bool* is_zero) {
  if (!page_op(FAKE_OP_COMMIT, addr, size)) return ENOMEM;
  real_access(off_of(addr), size, true);
  set_state(off_of(addr) / unit, size / unit, PG_COMMITTED, true);
  *is_zero = false; /* pages committed before keep their contents; new ones are scribbled */
  leave();
  return 0;
}

static int fake_decommit(void* addr, size_t size, bool* recommit) {
  if (!page_op(FAKE_OP_DECOMMIT, addr, size)) return ENOMEM;
  size_t off = off_of(addr), first = off / unit, n = size / unit;
  if (!caps.has_decommit) { /* wasm-like: nothing is returned, contents become undefined */
    for (size_t i = first; i < first + n; i++) {
      if (accessible(pages[i])) os_fill(base + i * unit, SCRIBBLE, unit);
    }
  } else if (needs_recommit) { /* Windows-like: inaccessible until committed again */
    real_drop(off, size);
    set_state(first, n, PG_RESERVED, false);
  } else { /* Linux-like: accessible pages stay accessible and read zero */
    real_zero_accessible(off, size);
    for (size_t i = first; i < first + n; i++) {
      uint8_t to = accessible(pages[i])                                     ? PG_DECOMMITTED
                   : pages[i] == PG_PROTECTED || pages[i] == PG_PROTECTED_GONE ? PG_PROTECTED_GONE
                                                                              : PG_RESERVED;
      set_state(i, 1, to, false);
    }
  }
  *recommit = needs_recommit && caps.has_decommit;
  leave();
  return 0;
}

static int fake_reset(void* addr, size_t size) {
  enter();
  check_aligned(FAKE_OP_RESET, addr, size, caps.page_size, "page_size");
  containing(FAKE_OP_RESET, addr, size);
  size_t first = off_of(addr) / unit, n = size / unit;
  for (size_t i = first; i < first + n; i++) {
    if (!accessible(pages[i])) violation("reset(%p, %zu): page %p is not committed", addr, size,
                                         (void*)(base + i * unit));
  }
  if (inject_failure(FAKE_OP_RESET)) {
    leave();
    return ENOMEM;
  }
  /* The contents may be gone: make sure nobody relies on them (or on zeros). */
  for (size_t i = first; i < first + n; i++) {
    if (pages[i] == PG_COMMITTED) os_fill(base + i * unit, SCRIBBLE, unit);
  }
  leave();
  return 0;
}

static int fake_protect(void* addr, size_t size, bool protect) {
  enter();
  check_aligned(FAKE_OP_PROTECT, addr, size, caps.page_size, "page_size");
  containing(FAKE_OP_PROTECT, addr, size);
  size_t first = off_of(addr) / unit, n = size / unit;
  for (size_t i = first; i < first + n; i++) {
    if (pages[i] == PG_FREE || pages[i] == PG_RESERVED) {
      violation("protect(%p, %zu, %d): page %p is not committed", addr, size, (int)protect,
                (void*)(base + i * unit));
    }
  }
  if (inject_failure(FAKE_OP_PROTECT)) {
    leave();
    return ENOMEM;
  }
  real_access(off_of(addr), size, !protect);
  for (size_t i = first; i < first + n; i++) { /* a page whose memory is gone stays so */
    bool gone = pages[i] == PG_DECOMMITTED || pages[i] == PG_PROTECTED_GONE;
    set_state(i, 1, protect ? (gone ? PG_PROTECTED_GONE : PG_PROTECTED)
                            : (gone ? PG_DECOMMITTED : PG_COMMITTED), false);
  }
  leave();
  return 0;
}

static int fake_reserve_huge(void* hint, size_t size, int numa_node, void** addr,
                             bool* is_zero) {
  enter();
  if (size == 0 || size % LM_GiB != 0) {
    violation("reserve_huge(%p, %zu): size must be a non-zero multiple of 1 GiB", hint, size);
  }
  int err = ENOMEM;
  atomic_fetch_add(&clock_now, huge_page_ms); /* the kernel zeroes each page: it takes time */
  if (!inject_failure(FAKE_OP_RESERVE_HUGE) && huge_pages) {
    bool ignored;
    bool saved_zero = reserve_zero, saved_unaligned = unaligned;
    reserve_zero = true; /* huge pages come zeroed and aligned */
    unaligned = false;
    placing_huge_at_hint = true;
    err = place(hint, size, LM_GiB, true, addr, &ignored);
    placing_huge_at_hint = false;
    reserve_zero = saved_zero;
    unaligned = saved_unaligned;
    if (err == 0) *is_zero = true;
  }
  if (err == 0 && numa_node >= 0) { /* binding is part of the call, as on Linux */
    numa_bound = numa_node;
    numa_binds++;
  }
  leave();
  return err;
}

static int fake_reserve_large(void* hint, size_t size, size_t try_align, void** addr,
                              bool* is_zero, bool* is_pinned) {
  enter();
  if (caps.large_page_size == 0 || size == 0 || size % caps.large_page_size != 0) {
    violation("reserve_large(%p, %zu): size must be a non-zero multiple of the large page size",
              hint, size);
  }
  int err = ENOMEM;
  if (!inject_failure(FAKE_OP_RESERVE) && large_pages != 0) {
    bool ignored;
    size_t align = try_align > caps.large_page_size ? try_align : caps.large_page_size;
    err = place(NULL, size, align, true, addr, &ignored);
    if (err == 0) {
      *is_zero = ignored;
      *is_pinned = large_pages == 2;
    }
  }
  leave();
  return err;
}

static int fake_large_pages_advise(void* addr, size_t size, bool on) {
  enter();
  if (!caps.has_large_page_advice) {
    violation("large_pages_advise called but caps.has_large_page_advice is false");
  }
  check_aligned(FAKE_OP_ADVISE_LARGE, addr, size, caps.large_page_size, "large_page_size");
  containing(FAKE_OP_ADVISE_LARGE, addr, size);
  if (inject_failure(FAKE_OP_ADVISE_LARGE)) {
    leave();
    return EINVAL;
  }
  memset(advice + off_of(addr) / unit, on ? 1 : 0, size / unit);
  leave();
  return 0;
}

/* Copy what the "OS" moves: the allocator may have poisoned free blocks there in ASan builds,
 * as for os_fill. */
#if LM_ASAN
__attribute__((no_sanitize("address"))) static void os_copy(uint8_t* to, const uint8_t* from,
                                                             size_t n) {
  volatile uint8_t* v = to;
  for (size_t i = 0; i < n; i++) v[i] = from[i];
}
#else
static void os_copy(uint8_t* to, const uint8_t* from, size_t n) { memcpy(to, from, n); }
#endif

/* Every unit of [p, p+size) is accessible (committed, or decommitted Linux-like). */
static void check_accessible(const void* p, size_t size) {
  for (size_t i = off_of(p) / unit; i < (off_of(p) + size) / unit; i++) {
    if (!accessible(pages[i])) {
      violation("move: page %p is not committed", (void*)(base + i * unit));
    }
  }
}

static int fake_move(void* dst, void* src, size_t size, size_t* moved) {
  enter();
  *moved = 0;
  check_aligned(FAKE_OP_MOVE, dst, size, caps.page_size, "page_size");
  check_aligned(FAKE_OP_MOVE, src, size, caps.page_size, "page_size");
  containing(FAKE_OP_MOVE, dst, size);
  containing(FAKE_OP_MOVE, src, size);
  if ((uint8_t*)dst < (uint8_t*)src + size && (uint8_t*)src < (uint8_t*)dst + size) {
    violation("move(%p, %p, %zu): the ranges overlap", dst, src, size);
  }
  check_accessible(dst, size);
  check_accessible(src, size);
  /* Windows and wasm have no such call; an injected failure strikes half-way, so that callers
   * copy the rest themselves. */
  bool no_move = imitate_windows() || fake_backend_imitates_wasm();
  bool fail = inject_failure(FAKE_OP_MOVE);
  size_t n = no_move ? 0 : fail ? lm_align_down(size / 2, caps.page_size) : size;
  os_copy(dst, src, n);
  /* the advice is the mapping's: it goes along (and stays on the source, which keeps its) */
  memmove(advice + off_of(dst) / unit, advice + off_of(src) / unit, n / unit);
  set_state(off_of(dst) / unit, n / unit, PG_COMMITTED, false);
  real_zero_accessible(off_of(src), n); /* its physical memory went to dst */
  set_state(off_of(src) / unit, n / unit, PG_DECOMMITTED, false);
  *moved = n;
  leave();
  return no_move ? ENOSYS : fail ? ENOMEM : 0;
}

static int fake_numa_bind(void* addr, size_t size, int node) {
  enter();
  if (find_reservation(addr, size) == SIZE_MAX) {
    violation("numa_bind(%p, %zu, %d): not inside one reservation", addr, size, node);
  }
  numa_bound = node;
  numa_binds++;
  leave();
  return node >= 0 && node < numa_count ? 0 : EINVAL;
}

/* ---- machine ------------------------------------------------------------------------------- */

static void fake_init(lm_backend_caps_t* out) {
  enter();
  *out = caps;
  leave();
}

static int fake_numa_node(void) { return numa_current; }
static int fake_numa_node_count(void) { return numa_count; }
static int64_t fake_clock_ms(void) { return atomic_load(&clock_now); }

static bool fake_random_bytes(void* buf, size_t len) {
  enter();
  bool ok = !random_fails;
  for (size_t i = 0; ok && i < len; i += 8) { /* splitmix64 over a counter */
    uint64_t z = seed + (++counter) * 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    memcpy((uint8_t*)buf + i, &z, lm_min(8, len - i));
  }
  leave();
  return ok;
}

static bool same_name(const char* a, const char* b) {
  for (; *a != 0 && *b != 0; a++, b++) {
    char x = (*a >= 'A' && *a <= 'Z') ? (char)(*a + 32) : *a;
    char y = (*b >= 'A' && *b <= 'Z') ? (char)(*b + 32) : *b;
    if (x != y) return false;
  }
  return *a == *b;
}

static bool fake_getenv(const char* name, char* buf, size_t size) {
  enter();
  bool found = false;
  for (size_t i = 0; i < ENV_MAX && !found; i++) {
    if (env[i].name[0] == 0 || !same_name(env[i].name, name) || size == 0) continue;
    snprintf(buf, size, "%s", env[i].value);
    found = true;
  }
  leave();
  return found;
}

static void fake_output(const char* msg) {
  enter();
  size_t len = lm_min(strlen(msg), OUTPUT_MAX - 1 - output_len);
  memcpy(output + output_len, msg, len);
  output_len += len;
  output[output_len] = 0;
  leave();
  if (getenv("FAKE_BACKEND_VERBOSE") != NULL) fputs(msg, stderr);
}

/* ---- threads ------------------------------------------------------------------------------- */

static void exit_destructor(void* arg) {
  lm_thread_exit_fun* fn = atomic_load(&exit_fn);
  if (fn != NULL) fn(arg);
}
static void exit_key_create(void) { pthread_key_create(&exit_key, exit_destructor); }

static int fake_thread_exit_register(lm_thread_exit_fun* fn) {
  atomic_store(&exit_fn, fn);
  return 0;
}

static void fake_thread_exit_arm(void* arg) {
  enter();
  arm_calls++;
  leave();
  armed_arg = arg;
  if (atomic_load(&real_thread_exit)) {
    pthread_once(&exit_key_once, exit_key_create);
    pthread_setspecific(exit_key, arg);
  }
}

typedef struct start_s {
  lm_thread_fun* fn;
  void* arg;
} start_t;

static void* thread_main(void* p) {
  start_t start = *(start_t*)p;
  free(p);
  start.fn(start.arg);
  return NULL;
}

static int fake_thread_start(lm_thread_fun* fn, void* arg) {
  enter();
  if (!caps.has_threads) violation("thread_start called but caps.has_threads is false");
  thread_starts++;
  leave();
  start_t* start = malloc(sizeof(*start));
  if (start == NULL) return ENOMEM;
  *start = (start_t){fn, arg};
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_t thread;
  int err = pthread_create(&thread, &attr, thread_main, start);
  pthread_attr_destroy(&attr);
  if (err != 0) free(start);
  return err;
}

#ifdef _WIN32
static void fake_wait_on(_Atomic(uint32_t)* addr, uint32_t expected, int64_t timeout_ms) {
  WaitOnAddress((volatile void*)addr, &expected, sizeof(expected),
                timeout_ms < 0 ? INFINITE : (DWORD)timeout_ms);
}

static void fake_wake_all(_Atomic(uint32_t)* addr) { WakeByAddressAll((void*)addr); }
#else
static void fake_wait_on(_Atomic(uint32_t)* addr, uint32_t expected, int64_t timeout_ms) {
  struct timespec ts = {(time_t)(timeout_ms / 1000), (long)(timeout_ms % 1000) * 1000000};
  syscall(SYS_futex, (uint32_t*)addr, LINUX_FUTEX_WAIT_PRIVATE, expected, timeout_ms < 0 ? NULL : &ts,
          NULL, 0);
}

static void fake_wake_all(_Atomic(uint32_t)* addr) {
  syscall(SYS_futex, (uint32_t*)addr, LINUX_FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}
#endif

static int fake_atfork(void (*prepare)(void), void (*parent)(void), void (*child)(void)) {
  enter();
  atfork_fns[0] = prepare;
  atfork_fns[1] = parent;
  atfork_fns[2] = child;
  atfork_calls++;
  leave();
  return 0;
}

static const lm_backend_t fake = {
    .name = "fake",
    .init = fake_init,
    .reserve = fake_reserve,
    .release = fake_release,
    .commit = fake_commit,
    .decommit = fake_decommit,
    .reset = fake_reset,
    .protect = fake_protect,
    .move = fake_move,
    .reserve_huge = fake_reserve_huge,
    .reserve_large = fake_reserve_large,
    .numa_bind = fake_numa_bind,
    .large_pages_advise = fake_large_pages_advise,
    .numa_node = fake_numa_node,
    .numa_node_count = fake_numa_node_count,
    .clock_ms = fake_clock_ms,
    .random_bytes = fake_random_bytes,
    .getenv = fake_getenv,
    .output = fake_output,
    .thread_exit_register = fake_thread_exit_register,
    .thread_exit_arm = fake_thread_exit_arm,
    .thread_start = fake_thread_start,
    .wait_on = fake_wait_on,
    .wake_all = fake_wake_all,
    .atfork = fake_atfork,
};

const lm_backend_t* fake_backend(void) { return &fake; }
const lm_backend_t* lm_backend_default(void) { return &fake; }

/* ---- control --------------------------------------------------------------------------------- */

void fake_backend_reset(void) {
  enter();
  for (size_t i = 0; i < res_count; i++) {
    real_drop(res[i].start, res[i].size);
    memset(pages + res[i].start / unit, PG_FREE, res[i].size / unit);
    memset(advice + res[i].start / unit, 0, res[i].size / unit);
  }
  res_count = reserved_bytes = committed_units = 0;
  caps = imitate_windows() ? windows_caps : fake_backend_imitates_wasm() ? wasm_caps : default_caps;
  needs_recommit = unaligned = huge_pages = random_fails = false;
  needs_recommit = imitate_windows();
  huge_page_ms = 0;
  large_pages = 0;
  numa_bound = -1;
  numa_binds = 0;
  reserve_zero = true;
  memset(calls, 0, sizeof(calls));
  memset(fail_at, 0, sizeof(fail_at));
  memset(failures, 0, sizeof(failures));
  memset(fail_always, 0, sizeof(fail_always));
  atomic_store(&clock_now, 0);
  seed = 0x5eed;
  counter = 0;
  numa_count = 1;
  numa_current = 0;
  memset(env, 0, sizeof(env));
  output_len = 0;
  output[0] = 0;
  atomic_store(&exit_fn, NULL);
  atomic_store(&real_thread_exit, false);
  armed_arg = NULL;
  arm_calls = thread_starts = atfork_calls = 0;
  memset(atfork_fns, 0, sizeof(atfork_fns));
  leave();
}

bool fake_backend_check_clean(void) {
  enter();
  for (size_t i = 0; i < res_count; i++) {
    size_t committed = 0;
    for (size_t u = res[i].start / unit; u < (res[i].start + res[i].size) / unit; u++) {
      committed += count_committed(pages[u]) ? unit : 0;
    }
    fprintf(stderr, "fake_backend: leaked reservation [%p, +%zu), %zu bytes committed\n",
            (void*)(base + res[i].start), res[i].size, committed);
  }
  bool clean = res_count == 0;
  leave();
  return clean;
}

void fake_backend_assert_clean(void) {
  if (!fake_backend_check_clean()) violation("reservations left at teardown (listed above)");
}

void fake_backend_set_caps(const lm_backend_caps_t* c) {
  enter();
  if (!lm_is_power_of_two(c->page_size) || c->page_size % unit != 0 ||
      !lm_is_power_of_two(c->alloc_granularity) || c->alloc_granularity % c->page_size != 0 ||
      c->alloc_granularity > LM_GiB) {
    violation("set_caps: page_size %zu / alloc_granularity %zu must be powers of two, page_size"
              " a multiple of the real page (%zu), granularity of page_size", c->page_size,
              c->alloc_granularity, unit);
  }
  caps = *c;
  leave();
}

void fake_backend_get_caps(lm_backend_caps_t* c) { fake_init(c); }

static void set_flag(bool* flag, bool on) {
  enter();
  *flag = on;
  leave();
}
void fake_backend_set_needs_recommit(bool on) { set_flag(&needs_recommit, on); }
void fake_backend_set_unaligned(bool on) { set_flag(&unaligned, on); }
void fake_backend_set_reserve_zero(bool on) { set_flag(&reserve_zero, on); }
void fake_backend_set_huge_pages(bool available) { set_flag(&huge_pages, available); }

void fake_backend_set_large_pages(bool available, bool pinned) {
  enter();
  large_pages = !available ? 0 : pinned ? 2 : 1;
  leave();
}

int fake_backend_numa_bound(size_t* binds) {
  enter();
  int node = numa_bound;
  if (binds != NULL) *binds = numa_binds;
  leave();
  return node;
}
void fake_backend_set_random_fails(bool fails) { set_flag(&random_fails, fails); }

void fake_backend_set_seed(uint64_t s) {
  enter();
  seed = s;
  counter = 0;
  leave();
}

void fake_backend_set_numa(int node_count, int current_node) {
  enter();
  numa_count = node_count < 1 ? 1 : node_count;
  numa_current = current_node;
  leave();
}

static size_t locked_read(const size_t* value) {
  enter();
  size_t v = *value;
  leave();
  return v;
}
size_t fake_backend_calls(fake_op_t op) { return locked_read(&calls[op]); }
size_t fake_backend_failures(fake_op_t op) { return locked_read(&failures[op]); }

void fake_backend_fail_nth(fake_op_t op, size_t n) {
  enter();
  fail_at[op] = n == 0 ? 0 : calls[op] + n;
  leave();
}

void fake_backend_fail_always(fake_op_t op, bool on) {
  enter();
  fail_always[op] = on;
  leave();
}

size_t fake_backend_reserved_bytes(void) { return locked_read(&reserved_bytes); }
size_t fake_backend_live_reservations(void) { return locked_read(&res_count); }
size_t fake_backend_committed_bytes(void) { return locked_read(&committed_units) * unit; }

/* Every unit of the range in a state that `want` accepts; false for memory outside the buffer. */
static bool range_all(const void* p, size_t size, bool (*want)(uint8_t)) {
  enter();
  const uint8_t* q = p;
  bool ok = q >= base && size <= span && q <= base + span - size;
  if (ok && size > 0) {
    size_t first = off_of(p) / unit, last = (off_of(p) + size - 1) / unit;
    for (size_t i = first; ok && i <= last; i++) ok = want(pages[i]);
  }
  leave();
  return ok;
}
bool fake_backend_is_committed(const void* p, size_t size) {
  return range_all(p, size, count_committed);
}
bool fake_backend_is_reserved(const void* p, size_t size) {
  enter();
  bool found = find_reservation(p, size) != SIZE_MAX;
  leave();
  return found;
}

void fake_backend_set_huge_page_ms(int64_t ms) {
  enter();
  huge_page_ms = ms;
  leave();
}

void fake_backend_set_clock(int64_t ms) { atomic_store(&clock_now, ms); }
void fake_backend_advance_clock(int64_t ms) { atomic_fetch_add(&clock_now, ms); }

void fake_backend_setenv(const char* name, const char* value) {
  enter();
  env_t* slot = NULL;
  for (size_t i = 0; i < ENV_MAX; i++) {
    if (env[i].name[0] != 0 && same_name(env[i].name, name)) slot = &env[i];
  }
  for (size_t i = 0; i < ENV_MAX && slot == NULL && value != NULL; i++) {
    if (env[i].name[0] == 0) slot = &env[i];
  }
  if (slot == NULL && value != NULL) violation("setenv(%s): more than %d names", name, ENV_MAX);
  if (slot != NULL && value == NULL) memset(slot, 0, sizeof(*slot));
  if (slot != NULL && value != NULL) {
    snprintf(slot->name, sizeof(slot->name), "%s", name);
    snprintf(slot->value, sizeof(slot->value), "%s", value);
  }
  leave();
}

const char* fake_backend_output(void) { return output; }
void fake_backend_clear_output(void) {
  enter();
  output_len = 0;
  output[0] = 0;
  leave();
}

void fake_backend_run_thread_exit(void* arg) {
  lm_thread_exit_fun* fn = atomic_load(&exit_fn);
  if (fn == NULL) violation("run_thread_exit: no thread exit function registered");
  fn(arg);
}
lm_thread_exit_fun* fake_backend_thread_exit_fun(void) { return atomic_load(&exit_fn); }
void* fake_backend_armed_arg(void) { return armed_arg; }
size_t fake_backend_arm_calls(void) { return locked_read(&arm_calls); }
void fake_backend_set_real_thread_exit(bool on) { atomic_store(&real_thread_exit, on); }
size_t fake_backend_thread_starts(void) { return locked_read(&thread_starts); }
size_t fake_backend_atfork_calls(void) { return locked_read(&atfork_calls); }

void fake_backend_run_atfork(int phase) {
  enter();
  void (*fn)(void) = phase >= 0 && phase < 3 ? atfork_fns[phase] : NULL;
  leave();
  if (fn != NULL) fn();
}

bool fake_backend_is_large_advised(const void* p, size_t size) {
  enter();
  bool all = size > 0 && (const uint8_t*)p >= base && off_of(p) + size <= span;
  for (size_t i = 0; all && i < lm_divide_up(size, unit); i++) {
    if (advice[off_of(p) / unit + i] == 0) all = false;
  }
  leave();
  return all;
}

size_t fake_backend_large_advised_bytes(void) {
  enter();
  size_t n = 0;
  for (size_t r = 0; r < res_count; r++) {
    for (size_t i = res[r].start / unit; i < (res[r].start + res[r].size) / unit; i++) {
      n += advice[i];
    }
  }
  leave();
  return n * unit;
}
