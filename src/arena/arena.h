/* The arena layer: every byte the engine gets from the OS passes through here.
 *
 * Two services:
 *  - OS memory with policy and statistics (os.c): aligned reservations (over-allocate and trim
 *    where the backend cannot align), commit, decommit/reset ("purge" per the configuration),
 *    protect; all page-rounded, all counted.
 *  - Arenas (arena.c): large aligned reservations (1 GiB by default) handed out in blocks of one
 *    segment (32 MiB) through atomic bitmaps, so that claiming and freeing a segment is
 *    lock-free. Freed blocks are purged after a delay (purge_delay x arena_purge_mult); a single
 *    purger at a time (try-guard) does the purging. Per-block flag bitmaps let the segment layer
 *    mark segments as abandoned or as having purges pending, and claim them back atomically.
 *
 * Everything is reached through an `lm_arenas_t` context that holds the backend, so tests build
 * a fresh context over a fake backend. This layer calls only the backend.
 */
#pragma once
#ifndef LM_ARENA_H
#define LM_ARENA_H

#include "../backend/backend.h"
#include "../common/common.h"

/* ---- geometry shared by the layers above ------------------------------------------------- */
#define LM_SEGMENT_SHIFT 25                            /* 32 MiB */
#define LM_SEGMENT_SIZE ((size_t)1 << LM_SEGMENT_SHIFT)
#define LM_SEGMENT_MASK (LM_SEGMENT_SIZE - 1)
#define LM_ARENA_BLOCK_SIZE LM_SEGMENT_SIZE            /* an arena hands out whole segments */
#define LM_MAX_ARENAS 128
/* Bytes of the first automatic arenas (mi_option_arena_reserve's default). A 32-bit process
 * has 4 GiB of address space in all, shared with the program: 1 GiB blocks there would take a
 * quarter of it for a small program and soon find no hole that large, so arenas come in
 * 128 MiB (4 segments) and grow from there (arena.c). */
#if LM_INTPTR_BITS == 64
#define LM_ARENA_RESERVE_DEFAULT LM_GiB
#else
#define LM_ARENA_RESERVE_DEFAULT (128 * LM_MiB)
#endif
#define LM_BITMAP_FIELD_BITS 64

/* ---- where a piece of memory came from, so it can be given back the same way ------------- */
typedef enum lm_mem_kind_e {
  LM_MEM_NONE,   /* nothing (a failed allocation) */
  LM_MEM_OS,     /* a direct OS reservation */
  LM_MEM_ARENA,  /* blocks of an arena */
  LM_MEM_STATIC, /* static storage (never freed) */
  LM_MEM_EXTERNAL, /* provided by the program (never freed by us) */
} lm_mem_kind_t;

typedef struct lm_memid_s {
  lm_mem_kind_t kind;
  void* os_base;        /* LM_MEM_OS: the whole reservation (may exceed the memory handed out) */
  size_t os_size;
  uint32_t arena_index; /* LM_MEM_ARENA */
  uint32_t block_index;
  uint32_t block_count;
  bool is_pinned;           /* large/huge OS pages: never decommitted */
  bool is_large;            /* on large OS pages (pinned or transparent) */
  bool is_huge;             /* 1 GiB OS pages, reserved (and released) one page at a time */
  bool is_exclusive;        /* from an arena used only when asked for by id */
  bool initially_committed; /* the whole range was committed when handed out */
  bool initially_zero;      /* the whole range read as zero when handed out */
  bool was_pending;         /* freed and claimed again before its purge: as its last user left it */
} lm_memid_t;

/* ---- policy, copied from the options once at start ---------------------------------------- */
typedef struct lm_mem_config_s {
  int64_t purge_delay_ms;   /* < 0: never purge; 0: purge at once */
  int64_t arena_purge_mult; /* arena purge delay = purge_delay_ms * this */
  bool purge_decommits;     /* purge = decommit (MADV_DONTNEED); else reset (MADV_FREE) */
  size_t arena_reserve;     /* bytes per new arena; 0 disables automatic arenas */
  int arena_eager_commit;   /* 0 no, 1 yes, 2 when the OS overcommits */
  bool disallow_os_alloc;   /* only pre-reserved arenas may be used */
  bool allow_large;         /* arenas may use large OS pages (allow_large_os_pages) */
  int numa_nodes;           /* nodes to tell apart: 0 asks the backend, 1 ignores NUMA */
  /* Verbose messages of this layer (a whole line, no prefix), or NULL for none: the core
   * passes its own output down, so this layer never reaches up. */
  void (*notice)(const char* msg);
} lm_mem_config_t;

/* ---- statistics of OS traffic (all atomic: updated from any thread) ----------------------- */
typedef struct lm_stat_count_s {
  _Atomic(int64_t) current;
  _Atomic(int64_t) peak;
  _Atomic(int64_t) total;
} lm_stat_count_t;

typedef struct lm_os_stats_s {
  lm_stat_count_t reserved;
  lm_stat_count_t committed;
  _Atomic(int64_t) purged;        /* bytes purged (decommit or reset) */
  _Atomic(int64_t) reserve_calls;
  _Atomic(int64_t) commit_calls;
  _Atomic(int64_t) purge_calls;
  _Atomic(int64_t) arena_count;
  /* Memory on large OS pages: explicit ones (pinned: 2 MiB from the pool, 1 GiB) and ranges
   * reserved with a request for transparent ones (the kernel decides what backs them; the
   * backend's large_pages_resident says what it did). */
  lm_stat_count_t large_explicit;
  lm_stat_count_t large_transparent;
} lm_os_stats_t;

void lm_stat_increase(lm_stat_count_t* s, int64_t amount);
void lm_stat_decrease(lm_stat_count_t* s, int64_t amount);

/* ---- fault injection (tests; MIMALLOC_FAULT_OS) -------------------------------------------- */
/* The OS calls that get memory (reservations, large and huge page reservations, commits) can be
 * made to fail with ENOMEM, so that every path that handles a failed one can be tested against
 * the real backend: the Nth such call from when the plan is set (counting from 1), and every
 * call of the kinds in `kinds`. Releases, purges and protection never fail this way. */
enum { LM_FAULT_RESERVE = 1u, LM_FAULT_COMMIT = 2u };
typedef struct lm_fault_plan_s {
  _Atomic(int64_t) countdown; /* the call that takes it from 1 to 0 fails; <= 0: none */
  _Atomic(unsigned) kinds;    /* LM_FAULT_* bits: every such call fails */
  _Atomic(int64_t) injected;  /* calls failed so far */
} lm_fault_plan_t;

/* Parse "N", "reserve", "commit" or "all", comma-separated (MIMALLOC_FAULT_OS): false, with
 * nothing set, on anything else. */
bool lm_fault_parse(const char* spec, int64_t* nth, unsigned* kinds);

struct lm_arena_s;

/* The arena context: the backend, its capabilities, the policy, and the arenas. */
typedef struct lm_arenas_s {
  const lm_backend_t* backend;
  lm_backend_caps_t caps;
  lm_mem_config_t config;
  lm_os_stats_t stats;
  _Atomic(struct lm_arena_s*) arenas[LM_MAX_ARENAS];
  _Atomic(size_t) arena_count;
  _Atomic(int64_t) purge_expire; /* earliest pending arena purge (0: none) */
  lm_spinlock_t purge_guard;     /* at most one thread purges arenas at a time (try-lock) */
  lm_spinlock_t reserve_lock;    /* serialises creating new arenas (rare) */
  _Atomic(uint32_t) purger_idle; /* 1: nothing scheduled since the purger last looked (a wake
                                  * clears it) */
  _Atomic(bool) purger_thread;   /* a purger thread exists that sleeps on purger_idle */
  /* Segment-aligned reservations are placed at hinted addresses in one region of the address
   * space, [region_lo, region_lo + region_size): a pointer outside it is not from an arena or a
   * hinted segment, which the free path tests with one subtraction and one compare. */
  uintptr_t region_lo;
  _Atomic(uintptr_t) region_size;
  _Atomic(uintptr_t) hint_next;
  int numa_count; /* NUMA nodes arenas are told apart by (1: none) */
  _Atomic(bool) large_missed_said; /* the notice that large pages could not be had was given */
  /* Memory is short (the container nears its limit; set by the core): purges do not wait. */
  _Atomic(bool) pressure;
  lm_fault_plan_t fault;
} lm_arenas_t;

/* Set the fault plan (see lm_fault_plan_t): nth > 0 fails the nth memory call from now, 0
 * none; `kinds` replaces the kinds that always fail. */
void lm_arenas_fault_set(lm_arenas_t* arenas, int64_t nth, unsigned kinds);
/* True when this memory call of `kind` (LM_FAULT_*) is to fail; counts it. */
bool lm_arenas_fault_due(lm_arenas_t* arenas, unsigned kind);

/* Validate `backend` (required functions present, capabilities consistent), read its
 * capabilities and set up an empty context. Returns 0 or EINVAL with a message written to the
 * backend's output. */
int lm_arenas_init(lm_arenas_t* arenas, const lm_backend_t* backend,
                   const lm_mem_config_t* config);
/* Release every arena (tests; destroy at exit). Memory still in use becomes invalid. */
void lm_arenas_destroy(lm_arenas_t* arenas);
void lm_mem_config_default(lm_mem_config_t* config);

/* The purge delay to apply now: none while memory is short (see `pressure`). */
static inline int64_t lm_arenas_purge_delay(lm_arenas_t* arenas, int64_t delay) {
  return delay > 0 && atomic_load_explicit(&arenas->pressure, memory_order_relaxed) ? 0 : delay;
}

/* Set the start of the hinted region (0: no hints, e.g. under sanitizers or on 32-bit). */
void lm_arenas_set_region(lm_arenas_t* arenas, uintptr_t region_start);
/* Is p inside the hinted region? A fast, conservative test: false means "maybe not ours". */
static inline bool lm_arenas_region_contains(const lm_arenas_t* arenas, const void* p) {
  return (uintptr_t)p - arenas->region_lo <
         atomic_load_explicit(&((lm_arenas_t*)arenas)->region_size, memory_order_relaxed);
}

/* ---- OS memory (os.c) ---------------------------------------------------------------------- */
/* Reserve (and commit when asked) `size` bytes such that `p + offset` is aligned to `align`.
 * Returns NULL with memid->kind == LM_MEM_NONE on failure. */
void* lm_os_alloc_aligned(lm_arenas_t* arenas, size_t size, size_t align, size_t offset,
                          bool commit, lm_memid_t* memid);
static inline void* lm_os_alloc(lm_arenas_t* arenas, size_t size, bool commit,
                                lm_memid_t* memid) {
  return lm_os_alloc_aligned(arenas, size, 0, 0, commit, memid);
}
/* Give back memory from lm_os_alloc*; `size` is the size that was asked for. */
void lm_os_free(lm_arenas_t* arenas, void* p, size_t size, const lm_memid_t* memid);
/* Committed memory on large OS pages (`size` rounded up to them), or NULL when the backend
 * has none to give: the caller falls back to lm_os_alloc_aligned. */
void* lm_os_alloc_large(lm_arenas_t* arenas, size_t size, size_t align, lm_memid_t* memid);
/* Commit (liberal rounding: outward to pages). False on failure. */
bool lm_os_commit(lm_arenas_t* arenas, void* p, size_t size, bool* is_zero);
/* Purge per the policy (conservative rounding: inward). Returns whether the range must be
 * committed again before use. */
bool lm_os_purge(lm_arenas_t* arenas, void* p, size_t size);
/* The contents of a range in use are no longer needed: give its physical memory back where
 * the OS can do so while the range stays accessible (conservative rounding), else nothing. False only when
 * the OS took the range and then refused it back (it is inaccessible). */
bool lm_os_discard(lm_arenas_t* arenas, void* p, size_t size);
/* Decommit regardless of policy; returns whether a recommit is needed. */
bool lm_os_decommit(lm_arenas_t* arenas, void* p, size_t size);
/* Whether memory purged without a recommit needs lm_os_reuse before it is used again (the
 * backend has a reuse step: macOS). */
bool lm_os_has_reuse(const lm_arenas_t* arenas);
/* Such memory is about to be used again (liberal rounding, as commit); nothing where the
 * backend has no reuse step. Harmless on pages that were not purged. */
void lm_os_reuse(lm_arenas_t* arenas, void* p, size_t size);
bool lm_os_protect(lm_arenas_t* arenas, void* p, size_t size, bool protect);
/* Move the memory of [src, src+size) to [dst, dst+size) without copying it, where the backend
 * can (both committed and page-aligned, apart): returns the bytes moved from the start, after
 * which those of `src` read as zero; the caller copies the rest. */
size_t lm_os_move(lm_arenas_t* arenas, void* dst, void* src, size_t size);
/* Ask for large pages (on) or ordinary pages over the large-page-aligned inside of a range;
 * false when the backend takes no such advice. */
bool lm_os_advise_large(lm_arenas_t* arenas, void* p, size_t size, bool on);
int64_t lm_os_clock(lm_arenas_t* arenas);
size_t lm_os_page_size(const lm_arenas_t* arenas);

/* ---- arenas (arena.c) ---------------------------------------------------------------------- */
/* Allocate `size` bytes aligned to `align` (<= LM_SEGMENT_SIZE, offset 0) from an arena, or from
 * the OS when no arena fits (unless disallowed). `arena_id` > 0 restricts to that arena. */
void* lm_arena_alloc(lm_arenas_t* arenas, size_t size, size_t align, size_t offset, bool commit,
                     int arena_id, lm_memid_t* memid);
/* Free memory from lm_arena_alloc (purged later). `memid->initially_committed` false says that
 * parts of it may be decommitted now: it is committed again before its next use. */
void lm_arena_free(lm_arenas_t* arenas, void* p, size_t size, const lm_memid_t* memid);
/* The same for memory that comes and goes by many pages at a time, not a few large blocks:
 * purged after the plain purge delay (not x arena_purge_mult), or at `purge_not_before` (a
 * clock time, 0: none) if that is later. */
void lm_arena_free_soon(lm_arenas_t* arenas, void* p, size_t size, const lm_memid_t* memid,
                        int64_t purge_not_before);
/* Purge the arena blocks whose purge delay expired (all pending ones when `force`). Returns
 * true if some purge is still pending. Only one thread purges at a time. */
bool lm_arenas_try_purge(lm_arenas_t* arenas, bool force);
/* Purge every pending block now, before its deadline, except those that thread `keep` freed
 * (it is the likeliest to take them again). Only one thread purges at a time: a no-op while
 * another does. */
void lm_arenas_purge_early(lm_arenas_t* arenas, lm_thread_id_t keep);
/* Bytes of free arena blocks waiting for their purge (address space: parts of them may have
 * been purged by their segment before it was freed). */
size_t lm_arenas_purge_pending(lm_arenas_t* arenas);
/* The time of the earliest pending arena purge, or 0 if none. */
int64_t lm_arenas_purge_deadline(lm_arenas_t* arenas);
/* May memory with this memid serve a request for `arena_id` (0: any non-exclusive arena)? */
static inline bool lm_memid_suits(const lm_memid_t* memid, int arena_id) {
  if (arena_id <= 0) return !(memid->kind == LM_MEM_ARENA && memid->is_exclusive);
  return memid->kind == LM_MEM_ARENA && (int)memid->arena_index + 1 == arena_id;
}
/* Is p inside any arena? */
bool lm_arenas_contain(lm_arenas_t* arenas, const void* p);
/* Reserve a new arena of `size` bytes now (mi_reserve_os_memory). Returns 0 or ENOMEM. */
int lm_arena_reserve(lm_arenas_t* arenas, size_t size, bool commit, bool exclusive,
                     int* arena_id);
/* The same, on large OS pages when `allow_large` and the policy allows them (committed
 * arenas only), for NUMA node `numa_node` (-1: any; EINVAL for a node not told apart). */
int lm_arena_reserve_ex(lm_arenas_t* arenas, size_t size, bool commit, bool allow_large,
                        bool exclusive, int numa_node, int* arena_id);
/* The NUMA node of the calling thread as arenas see it (-1 when NUMA is not told apart), and
 * the node an arena serves (-1: any). */
int lm_arenas_numa_node(lm_arenas_t* arenas);
/* A node an arena may be given: -1 (any) or one of the nodes told apart. */
static inline bool lm_arenas_node_valid(const lm_arenas_t* arenas, int numa_node) {
  return numa_node >= -1 && numa_node < arenas->numa_count;
}
int lm_arena_numa_node(lm_arenas_t* arenas, int arena_id);
/* Was the arena's memory given large OS pages, and are they pinned (never purged)? */
bool lm_arena_is_large(lm_arenas_t* arenas, int arena_id, bool* is_pinned);

/* Register memory the program provides (mi_manage_os_memory): never released by us. The
 * start is aligned up to a block; at least one block must remain. Returns 0 or EINVAL. */
int lm_arena_manage(lm_arenas_t* arenas, void* start, size_t size, bool is_committed,
                    bool is_pinned, bool is_zero, int numa_node, bool exclusive, int* arena_id);
/* Reserve up to `pages` 1 GiB huge OS pages as one pinned arena (bound to numa_node when
 * >= 0): one page at a time at consecutive addresses, stopping at the first refusal, at a page
 * that lands elsewhere, or once `timeout_ms` (0: no limit) has passed. `*reserved` (may be
 * NULL) says how many pages the arena got. Returns 0 when all were had, ENOMEM when fewer
 * (the arena keeps those that were), EINVAL for a node not told apart. */
int lm_arena_reserve_huge(lm_arenas_t* arenas, size_t pages, int numa_node, bool exclusive,
                          int64_t timeout_ms, size_t* reserved, int* arena_id);
/* Start and size of arena `arena_id` (NULL if there is none); how many arenas exist; whether
 * a block of an arena is in use (for printing maps). */
void* lm_arena_area(lm_arenas_t* arenas, int arena_id, size_t* size);
size_t lm_arena_count(lm_arenas_t* arenas);
bool lm_arena_block_in_use(lm_arenas_t* arenas, int arena_id, size_t block);

/* ---- per-block flags for the segment layer ------------------------------------------------- */
typedef enum lm_block_flag_e {
  LM_BLOCK_ABANDONED,     /* the segment at this block was abandoned by its thread */
  LM_BLOCK_PURGE_PENDING, /* the segment at this block has segment-level purges scheduled */
  LM_BLOCK_PURGER_BUSY,   /* the background purger is looking at the segment at this block */
  LM_BLOCK_FLAG_COUNT
} lm_block_flag_t;

/* Flags are addressed by the start of an arena block; memory outside arenas has no flags (set
 * returns false). Set and clear are sequentially consistent: the segment layer builds a
 * Dekker-style handshake from them (purger: set BUSY, then claim PENDING; owner: clear PENDING,
 * then wait for BUSY to clear). */
bool lm_arena_flag_set(lm_arenas_t* arenas, const void* block, lm_block_flag_t flag);
/* Clear a flag; returns true if this call cleared it (a claim). */
bool lm_arena_flag_clear(lm_arenas_t* arenas, const void* block, lm_block_flag_t flag);
bool lm_arena_flag_is_set(lm_arenas_t* arenas, const void* block, lm_block_flag_t flag);
/* A position in a scan of the arenas' blocks: two fields, not one word split in halves, so it
 * holds on 32-bit targets too. Start at LM_ARENA_CURSOR_START. */
typedef struct lm_arena_cursor_s {
  uint32_t arena; /* index of the arena */
  uint32_t block; /* next block of it to look at */
} lm_arena_cursor_t;
#define LM_ARENA_CURSOR_START ((lm_arena_cursor_t){0, 0})
/* The next block with `flag` set at or after *cursor, without claiming it; NULL after a full
 * scan found none. Advances *cursor past the result. */
void* lm_arena_flag_find_next(lm_arenas_t* arenas, lm_block_flag_t flag, lm_arena_cursor_t* cursor);
/* How many flags of this kind are set (for bounding searches). */
size_t lm_arena_flag_count(lm_arenas_t* arenas, lm_block_flag_t flag);

/* ---- waking the background purger ---------------------------------------------------------- */
/* The purger sleeps on `purger_idle` (backend wait_on) when it has nothing scheduled; code that
 * schedules a purge or notices abandoned memory calls this: one relaxed load when it is awake.
 * Without a purger thread it only clears `purger_idle` (the inline purger looks at it). */
void lm_arenas_wake_purger(lm_arenas_t* arenas);

#endif
