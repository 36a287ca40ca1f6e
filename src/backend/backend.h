/* The OS interface: the only way the engine reaches the operating system.
 *
 * A backend is one `const lm_backend_t` (function pointers) plus a capability record that the
 * backend fills once at start (`init`). The engine never asks "which OS am I on": it reads the
 * capabilities and calls the functions. Exactly one backend is compiled into a build
 * (src/backend/<os>/), and it exports `lm_backend_default()`. Tests link a fake instead.
 *
 * Contracts, shared by every function below:
 *  - Addresses and sizes passed in are multiples of `caps.page_size` (and of
 *    `caps.alloc_granularity` for reserve/release); sizes are > 0.
 *  - Results are 0 on success or an errno value (ENOMEM, EINVAL, ...) on failure; on failure
 *    nothing was changed and out-parameters are left untouched.
 *  - `is_zero` may be set to true only when every byte of the range is guaranteed zero.
 *  - The hot paths (malloc/free fast paths) never call the backend; it is called on page,
 *    segment and arena refills, on purges, and at process/thread start and end.
 *  - No function may call malloc (directly or through libc functions that might), since the
 *    backend serves the allocator that *is* malloc.
 *  - Functions marked optional may be NULL, and the engine tests for NULL before each call;
 *    the others are required. `lm_arenas_init` (arena layer) checks the backend once at start:
 *    the required functions present and the capabilities consistent; it fills no defaults.
 *  - Process start and end are not here: they are the platform header's hooks
 *    (LM_PROCESS_HOOKS in src/common/platform.h, expanded in src/core/start.c), since a
 *    backend never calls up into the engine.
 */
#pragma once
#ifndef LM_BACKEND_H
#define LM_BACKEND_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What the platform can do; filled once by `init`, then read-only. */
typedef struct lm_backend_caps_s {
  size_t page_size;          /* OS page: unit of commit, decommit, reset and protect */
  size_t alloc_granularity;  /* unit (and address alignment) of reserve/release */
  size_t large_page_size;    /* 2 MiB-style large pages, 0 if none */
  bool has_overcommit;       /* committed-but-untouched memory costs nothing (Linux) */
  bool has_partial_release;  /* any aligned subrange of a reservation may be released */
  /* Address space can be reserved without committing it. Without it every reservation comes
   * back committed (wasm), and the arena layer counts it so. */
  bool has_virtual_reserve;
  bool has_decommit;         /* decommit/reset return physical memory (false on wasm) */
  bool has_threads;          /* thread_start works: a background purger may run */
  bool has_numa;             /* numa_node/numa_node_count give real answers */
  /* Large pages back ordinary memory where the program asks for them, and only there
   * (Linux transparent huge pages in "madvise" mode): see large_pages_advise. */
  bool has_large_page_advice;
  /* Why large_page_size is 0 where the OS has large pages (e.g. Windows without
   * SeLockMemoryPrivilege), for the verbose start message; NULL otherwise. */
  const char* large_pages_absent;
} lm_backend_caps_t;

/* The limits of the container (on Linux: the cgroup) the process runs in. */
typedef struct lm_container_s {
  size_t memory_max;      /* hard limit in bytes, the tightest of the process's groups; 0: none */
  size_t memory_high;     /* the mark above which the OS throttles and reclaims; 0: none */
  size_t cpu_quota_milli; /* CPU time the group may use, in thousandths of a CPU; 0: no quota */
  size_t cpus;            /* CPUs the process may run on (its affinity), at least 1 */
} lm_container_t;

/* A function run at thread exit with the value given to `thread_exit_arm`. */
typedef void lm_thread_exit_fun(void* arg);
/* The body of a background thread. */
typedef void lm_thread_fun(void* arg);

typedef struct lm_backend_s {
  const char* name; /* "linux", "windows", "fake", ... for messages */

  /* Fill the capabilities. Called once, before anything else. */
  void (*init)(lm_backend_caps_t* caps);

  /* --- memory ------------------------------------------------------------------------- */

  /* Reserve `size` bytes of address space. `commit` makes it readable and writable at once;
   * otherwise it is inaccessible until `commit`. `try_align` is a hint only: the result may be
   * unaligned (the arena layer over-allocates then). `hint` may be NULL. */
  int (*reserve)(void* hint, size_t size, size_t try_align, bool commit, void** addr,
                 bool* is_zero);
  /* Give a reservation (or, with has_partial_release, an aligned part of one) back. */
  int (*release)(void* addr, size_t size);
  /* Make a reserved range accessible. */
  int (*commit)(void* addr, size_t size, bool* is_zero);
  /* Return the physical memory of a range. `*needs_recommit` says whether `commit` must be
   * called before the range is touched again (Windows, debug builds) or whether it stays
   * accessible (Linux MADV_DONTNEED: it reads back as zero; macOS MADV_FREE_REUSABLE: old
   * contents or zeros, and `reuse` comes first when the backend has it). */
  int (*decommit)(void* addr, size_t size, bool* needs_recommit);
  /* Optional: the contents of the range may be discarded lazily (MADV_FREE, MEM_RESET); it
   * stays accessible. */
  int (*reset)(void* addr, size_t size);
  /* Optional: a range purged by `reset`, or by `decommit` without `needs_recommit`, is about to
   * be used again (macOS MADV_FREE_REUSE, which counts its pages in the footprint again). The
   * engine calls it before it hands such memory out, where it would otherwise skip `commit`;
   * a backend whose purged memory needs no such step leaves it NULL. */
  int (*reuse)(void* addr, size_t size);
  /* Optional: move the memory of the committed range [src, src+size) to the committed range
   * [dst, dst+size) without copying a byte (the ranges do not overlap): the moved part of
   * `dst` then holds what `src` held, and `src` stays accessible and reads as zero, its
   * physical memory handed to `dst` (Linux: mremap with MREMAP_DONTUNMAP). Moves from the
   * start; `*moved` (always set) says how many bytes moved, a multiple of page_size. On an
   * error the rest did not move and the caller copies it. */
  int (*move)(void* dst, void* src, size_t size, size_t* moved);
  /* Optional: make a committed range inaccessible (true) or accessible again (false): guard
   * pages (secure builds, guarded sampling). */
  int (*protect)(void* addr, size_t size, bool protect);
  /* Optional: allocate `size` bytes (a multiple of 1 GiB) of huge OS pages, bound to
   * `numa_node` when >= 0. */
  int (*reserve_huge)(void* hint, size_t size, int numa_node, void** addr, bool* is_zero);
  /* Optional: reserve committed memory backed by large pages (`caps.large_page_size`; `size`
   * is a multiple of it): explicit large pages, which cannot be purged (`is_pinned`), or
   * failing those, memory the OS is asked to back with large pages when it can. */
  int (*reserve_large)(void* hint, size_t size, size_t try_align, void** addr, bool* is_zero,
                       bool* is_pinned);
  /* Optional: prefer physical memory of NUMA node `node` for a reserved range. */
  int (*numa_bind)(void* addr, size_t size, int node);
  /* Optional: allow (or forbid) transparent large pages for the whole process. */
  int (*large_pages_allow)(bool allow);
  /* Optional: bytes of the process's memory backed by large or huge pages right now
   * (transparent and explicit), as the OS counts them; 0 if unknown. */
  size_t (*large_pages_resident)(void);
  /* Optional (has_large_page_advice): ask that a range (aligned to `caps.large_page_size`) be
   * backed by large pages from its next touch on (true), or by ordinary pages (false). */
  int (*large_pages_advise)(void* addr, size_t size, bool on);

  /* --- machine ------------------------------------------------------------------------ */

  int (*numa_node)(void);        /* optional: the node of the calling thread's CPU, or 0 */
  int (*numa_node_count)(void);  /* optional: number of nodes, at least 1 */
  int64_t (*clock_ms)(void);     /* monotonic milliseconds */
  /* Fill `buf` with strong random bytes; false if no strong source is available. */
  bool (*random_bytes)(void* buf, size_t len);
  /* Look `name` up in the environment, case-insensitively, without allocating. Returns true
   * and a NUL-terminated copy in `buf` (truncated to size-1) when found. */
  bool (*getenv)(const char* name, char* buf, size_t size);
  /* Write a NUL-terminated message to the default output (stderr), without allocating. */
  void (*output)(const char* msg);

  /* Optional: fill the container's limits; false when the process is in none the backend can
   * read (then `*out` holds no limit and the affinity's CPU count). Reads a few small files:
   * at start and every second or so, never on an allocation path. Not thread-safe with
   * itself or container_usage: the caller serialises them. */
  bool (*container_limits)(lm_container_t* out);
  /* Optional: the memory the group with the tightest limit uses now, in bytes (0 if unknown);
   * one small file read, after container_limits found that group. */
  size_t (*container_usage)(void);

  /* Optional: process figures for mi_process_info, each in the unit named (0 if unknown). */
  void (*process_info)(size_t* user_ms, size_t* system_ms, size_t* current_rss,
                       size_t* peak_rss, size_t* page_faults);

  /* --- pointers from another allocator ----------------------------------------------------- */

  /* Optional: free a block this allocator never handed out, with the allocator that comes
   * next in the program's symbol lookup order (the one a preload displaced). Returns false
   * when there is no such allocator (the caller then ignores the pointer with a warning). */
  bool (*foreign_free)(void* p);
  /* Optional: the usable size of such a block, 0 if unknown. */
  size_t (*foreign_usable_size)(const void* p);

  /* --- threads ------------------------------------------------------------------------ */

  /* Optional: register the one function to run at thread exit (once, at process init).
   * Without it a thread's heap is abandoned only by mi_thread_done. */
  int (*thread_exit_register)(lm_thread_exit_fun* fn);
  /* Optional (with thread_exit_register): arm the exit function for the calling thread with
   * `arg` (NULL disarms). */
  void (*thread_exit_arm)(void* arg);
  /* Optional (has_threads): start a detached background thread running fn(arg). */
  int (*thread_start)(lm_thread_fun* fn, void* arg);
  /* Optional (has_threads): sleep while `*addr == expected`, at most `timeout_ms`
   * (negative: no limit). Spurious wake-ups are allowed. */
  void (*wait_on)(_Atomic(uint32_t)* addr, uint32_t expected, int64_t timeout_ms);
  /* Optional (has_threads): wake every thread sleeping in wait_on(addr). */
  void (*wake_all)(_Atomic(uint32_t)* addr);
  /* Optional: run prepare/parent/child around fork(). */
  int (*atfork)(void (*prepare)(void), void (*parent)(void), void (*child)(void));
} lm_backend_t;

/* The backend compiled into this build (src/backend/<os>/), or a test's fake. */
const lm_backend_t* lm_backend_default(void);

#endif
