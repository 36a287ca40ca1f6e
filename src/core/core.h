/* The core layer: size classes, pages, page queues, thread-local heaps, the allocation and free
 * paths, options, messages, process and thread start and end, and the background purger.
 *
 * The fast paths live in alloc.c and free.c: malloc of a small size is a TLS load, a table load,
 * a look at the heap's delayed list, a list pop and a counter update; a local free is a mask,
 * an owner compare and a list push; a remote free is one CAS onto the page's thread_free list.
 * Everything else is a slow path here.
 *
 * Thread-free state (low 3 bits of page->xthread_free; blocks are at least 8-byte aligned):
 *   USE_DELAYED    the page is full: the next remote free goes to the owner heap's delayed list
 *                  so the owner notices the page has room again
 *   DELAYED_FREEING a remote free is moving a block to that list (transient)
 *   NO_DELAYED     plain push onto the page's list
 *   NEVER_DELAYED  abandoned or being torn down: plain push, always
 *   NOTIFY (bit 2) abandoned page: the first remote free wakes the purger to collect it
 * This layer calls only the segment layer (and through it, arenas) and common helpers.
 */
#pragma once
#ifndef LM_CORE_H
#define LM_CORE_H

#include <errno.h>
#include <stdarg.h>
#include <string.h>

#include "mimalloc.h"
#include "../segment/segment.h"
#include "override.h"

/* ---- size classes ------------------------------------------------------------------------- */
#define LM_SMALL_SIZE_MAX 1024                               /* the direct-table fast path */
#define LM_PAGES_DIRECT (LM_SMALL_SIZE_MAX / 8 + 2)          /* word sizes 0..128, padded */
#define LM_BIN_HUGE 73                                       /* large and huge single-block pages */
#define LM_BIN_FULL 74                                       /* pages without free blocks */
#define LM_BIN_COUNT 75
#define LM_MAX_ALLOC_SIZE ((size_t)PTRDIFF_MAX)
#define LM_MAX_ALIGN_SIZE 16

/* The bin of a size (up to LM_MEDIUM_OBJ_SIZE_MAX; larger sizes are LM_BIN_HUGE). Four bins per
 * power of two above 64 bytes: the waste of a request in [2^b, 2^(b+1)) is below 2^(b-2), i.e.
 * at most 12.5% of its power-of-two ceiling (under 25% of the request, 20% of the block). These
 * are mimalloc v2's classes, which mi_good_size exposes. */
static inline uint8_t lm_bin(size_t size) {
  size_t w = (size + 7) >> 3;
  if (w <= 1) return 1;
  if (w <= 8) return (uint8_t)((w + 1) & ~(size_t)1); /* 16-byte multiples for alignment */
  if (w > LM_MEDIUM_OBJ_SIZE_MAX / 8) return LM_BIN_HUGE;
  w--;
  size_t b = lm_bsr(w);
  return (uint8_t)((b << 2) + ((w >> (b - 2)) & 3) - 3);
}
/* The block size of a bin (1..48). */
size_t lm_bin_size(uint8_t bin);
/* Size handed out for a request above the medium limit: rounded to OS pages, or coarser for
 * very large requests (at most 12.5% waste). */
size_t lm_good_size_large(size_t size);

/* ---- thread-free list state ---------------------------------------------------------------- */
#define LM_TF_USE_DELAYED 0
#define LM_TF_DELAYED_FREEING 1
#define LM_TF_NO_DELAYED 2
#define LM_TF_NEVER_DELAYED 3
#define LM_TF_STATE_MASK 3
#define LM_TF_NOTIFY 4
#define LM_TF_BITS 7
/* On 64-bit targets the length of the list rides in the top 16 bits of the word (user
 * addresses stay below 2^48 unless a program asks the kernel for more, and segments never do),
 * so the owner takes the list over without walking it: a walk is a chain of cache misses over
 * blocks other threads wrote, and it was an eighth of the time of a program handing objects
 * between threads (bench threadchurn). 0 means "not counted" (32-bit, or too many). */
#if UINTPTR_MAX > 0xFFFFFFFFu
#define LM_TF_COUNTED 1
#define LM_TF_COUNT_SHIFT 48
#define LM_TF_COUNT_MAX ((uintptr_t)0xFFFF)
#define LM_TF_PTR_MASK ((((uintptr_t)1 << LM_TF_COUNT_SHIFT) - 1) & ~(uintptr_t)LM_TF_BITS)
static inline size_t lm_tf_count(uintptr_t tf) { return (size_t)(tf >> LM_TF_COUNT_SHIFT); }
/* The word after pushing `block` onto the list of `tf`, state bits kept, NOTIFY dropped. */
static inline uintptr_t lm_tf_push(uintptr_t tf, const lm_block_t* block) {
  uintptr_t n = tf >> LM_TF_COUNT_SHIFT;
  /* an empty list starts counting; a list that is not counted (0) stays so */
  n = (tf & LM_TF_PTR_MASK) == 0 ? 1 : (n == 0 || n == LM_TF_COUNT_MAX) ? 0 : n + 1;
  return (uintptr_t)block | (tf & LM_TF_STATE_MASK) | (n << LM_TF_COUNT_SHIFT);
}
/* The word after taking the first block off the list of `tf`, whose successor is `next`. */
static inline uintptr_t lm_tf_pop(uintptr_t tf, const lm_block_t* next) {
  uintptr_t n = tf >> LM_TF_COUNT_SHIFT;
  if (next == NULL) return tf & LM_TF_STATE_MASK;
  return (uintptr_t)next | (tf & LM_TF_STATE_MASK) | ((n > 1 ? n - 1 : 0) << LM_TF_COUNT_SHIFT);
}
#else
#define LM_TF_COUNTED 0
#define LM_TF_PTR_MASK (~(uintptr_t)LM_TF_BITS)
static inline size_t lm_tf_count(uintptr_t tf) { (void)tf; return 0; }
static inline uintptr_t lm_tf_push(uintptr_t tf, const lm_block_t* block) {
  return (uintptr_t)block | (tf & LM_TF_STATE_MASK);
}
static inline uintptr_t lm_tf_pop(uintptr_t tf, const lm_block_t* next) {
  return (uintptr_t)next | (tf & LM_TF_STATE_MASK);
}
#endif
static inline lm_block_t* lm_tf_block(uintptr_t tf) { return (lm_block_t*)(tf & LM_TF_PTR_MASK); }
static inline uintptr_t lm_tf_state(uintptr_t tf) { return tf & LM_TF_STATE_MASK; }

/* ---- heaps and thread data ------------------------------------------------------------------- */
typedef struct lm_page_queue_s {
  lm_page_t* first;
  lm_page_t* last;
  size_t block_size;
} lm_page_queue_t;

typedef struct lm_random_s {
  uint64_t s[4];
} lm_random_t;

typedef struct mi_heap_s lm_heap_t;

/* ---- statistics of the heaps (stats.c) --------------------------------------------------------
 * Pages count what they hand out (one add on the malloc path: page->stat_allocs) and the owner
 * folds that, with the change of page->used, into its thread's figures on slow paths; a
 * thread's figures reach the process figures (atomics) when it merges: on exit, mi_collect,
 * mi_stats_merge and whenever statistics are read. A thread's `current` is the live blocks of
 * the pages it owns: abandoning and adopting a page move its share without touching the
 * process figures, so those are never negative. Huge blocks count in bin LM_BIN_HUGE. */
typedef struct lm_stat_local_s {
  int64_t total, current, peak;   /* this thread's figures */
  int64_t merged_total;           /* total and current at the last merge, and the highest */
  int64_t merged_current;         /* current since then: what the next merge adds */
  int64_t merge_peak;
} lm_stat_local_t;

typedef struct lm_counter_local_s {
  int64_t total, merged;
} lm_counter_local_t;

#define LM_STAT_BINS (LM_BIN_HUGE + 1)

typedef struct lm_thread_stats_s {
  lm_stat_local_t malloc_bins[LM_STAT_BINS]; /* blocks per size class */
  lm_stat_local_t page_bins[LM_STAT_BINS];   /* pages per size class */
  lm_stat_local_t malloc_normal;             /* bytes in blocks of bins 1..48 */
  lm_stat_local_t malloc_huge;               /* bytes in single-block pages */
  lm_counter_local_t malloc_normal_count, malloc_huge_count;
  lm_counter_local_t pages_extended, pages_retire, page_searches, page_searches_count;
  lm_counter_local_t malloc_guarded_count;
} lm_thread_stats_t;

typedef struct lm_heap_stats_s {
  lm_stat_count_t malloc_bins[LM_STAT_BINS];
  lm_stat_count_t page_bins[LM_STAT_BINS];
  lm_stat_count_t malloc_normal, malloc_huge;
  lm_stat_count_t malloc_requested; /* debug builds: the padding knows each block's request */
  _Atomic(int64_t) malloc_normal_count, malloc_huge_count;
  _Atomic(int64_t) pages_extended, pages_retire, page_searches, page_searches_count;
  _Atomic(int64_t) malloc_guarded_count;
} lm_heap_stats_t;

/* Thread-local data: one per thread, reached from its heaps. */
typedef struct lm_tld_s {
  uint64_t heartbeat;
  bool recurse;              /* inside the deferred-free hook */
  /* The handshake with the drainer of idle heaps (drain.c): the thread raises `busy` while it
   * may touch its full pages or its list of heaps (slow paths, nested `busy_depth` deep), the
   * drainer raises `draining` while it does. */
  unsigned busy_depth;
  _Atomic(bool) busy;
  _Atomic(bool) draining;
  _Atomic(uint32_t) slow_epoch; /* slow paths entered (the owner's count) */
  /* slow_epoch at the drainer's last look, or when a remote free started a delayed list */
  _Atomic(uint32_t) drain_epoch;
  struct lm_tld_s* live_next; /* the threads the drainer may visit (lm_process.tlds) */
  struct lm_tld_s* live_prev;
  lm_heap_t* heap_backing;   /* the thread's own heap */
  lm_heap_t* heaps;          /* all heaps of the thread */
  lm_segments_tld_t segments;
  lm_arena_cursor_t reclaim_cursor;
  lm_memid_t memid;          /* of the thread data (OS) or static for the main thread */
  lm_thread_stats_t stats;
} lm_tld_t;

struct mi_heap_s {
  lm_tld_t* tld;
  _Atomic(lm_block_t*) thread_delayed_free; /* remote frees into full pages */
  lm_thread_id_t thread_id;
  int arena_id;
  uintptr_t cookie;
  lm_random_t random;
  size_t page_count;
  size_t page_retired_min; /* range of bins that may hold retired pages */
  size_t page_retired_max;
  size_t guarded_countdown;      /* mallocs until the next guarded sample (guarded builds) */
  size_t guarded_sample_rate;    /* 0: none */
  size_t guarded_size_min, guarded_size_max;
  size_t generic_count;          /* slow-path calls since the last housekeeping */
  size_t generic_collect_count;  /* slow-path calls since the last collect (generic_collect) */
  lm_heap_t* next;
  _Atomic(bool) drained; /* the drainer emptied full pages or moved frees: see lm_heap_undrain */
  _Atomic(lm_block_t*) drain_kept; /* the block the drainer left on the delayed list */
  bool no_reclaim;    /* never takes over abandoned memory (heaps that may be destroyed) */
  bool allow_destroy; /* mi_heap_destroy frees its blocks at once */
  uint8_t tag;
  lm_page_t* pages_free_direct[LM_PAGES_DIRECT];
  lm_page_queue_t pages[LM_BIN_COUNT];
};

/* The statically initialised empty heap: every direct entry points at an empty page, so the
 * malloc fast path needs no "initialised?" test; the first malloc takes the slow path. */
extern const lm_heap_t lm_heap_empty;
extern const lm_page_t lm_page_empty;
/* The calling thread's default heap (the empty heap until the thread's first allocation), in
 * the slot that common/platform.h provides. */
#if LM_HEAP_SLOT_NATIVE
extern _Thread_local lm_heap_t* lm_heap_default;
static inline lm_heap_t* lm_heap_get_default(void) { return lm_heap_default; }
static inline void lm_heap_slot_set(lm_heap_t* heap) { lm_heap_default = heap; }
#else
static inline lm_heap_t* lm_heap_get_default(void) {
  lm_heap_t* heap = (lm_heap_t*)lm_tls_slot_get();
  return heap != NULL ? heap : (lm_heap_t*)&lm_heap_empty;
}
static inline void lm_heap_slot_set(lm_heap_t* heap) { lm_tls_slot_set(heap); }
#endif
static inline bool lm_heap_is_initialized(const lm_heap_t* heap) { return heap != &lm_heap_empty; }

/* ---- the process ------------------------------------------------------------------------------ */
typedef struct lm_process_s {
  const lm_backend_t* backend;
  lm_arenas_t arenas;
  lm_segments_t segments;
  _Atomic(int) init_state; /* 0 none, 1 initialising, 2 ready */
  bool constructed;        /* the library constructor ran (libc is usable) */
  uintptr_t cookie_key;
  lm_heap_t* heap_main;
  _Atomic(lm_thread_id_t) main_thread;
  /* background purger */
  _Atomic(int) purger_state;          /* 0 not started, 1 running, -1 unavailable */
  _Atomic(bool) multi_threaded;       /* a thread besides the first allocated (since fork) */
  _Atomic(int64_t) abandoned_due;     /* when to visit abandoned segments (0: no need) */
  _Atomic(int64_t) drain_due;         /* when to look at idle heaps (0: no need) */
  lm_spinlock_t tlds_lock;            /* the live threads' data, for the drainer */
  lm_tld_t* tlds;
  lm_stat_count_t threads;            /* threads that allocated (current: still running) */
  lm_heap_stats_t stats;              /* the merged figures of every thread */
} lm_process_t;

extern lm_process_t lm_process;

/* Initialise the process once (idempotent, thread-safe); false if the backend is unusable. */
bool lm_process_ensure_init(void);
/* The heap for the calling thread, initialising the thread (and process) on first use. */
lm_heap_t* lm_heap_default_init(void);
void lm_heap_init(lm_heap_t* heap, lm_tld_t* tld, int arena_id, bool allow_destroy, uint8_t tag);
/* target_segments_per_thread: give up segments above the target (housekeeping). */
void lm_heap_shed_segments(lm_heap_t* heap);
/* Take over the abandoned pages of a segment the caller reclaimed; false if that freed it. */
bool lm_heap_adopt_segment(lm_heap_t* heap, lm_segment_t* segment);
/* Make `heap` the calling thread's default heap. */
void lm_heap_set_default(lm_heap_t* heap);

/* ---- pages (page.c) -------------------------------------------------------------------------- */
/* Move thread frees and local frees into the free list (always when `force`, otherwise only
 * when `free` is empty). */
void lm_page_collect(lm_page_t* page, bool force);
/* Push a freed block onto its page's thread-free list, as a remote free does (its state bits
 * stay: a remote free may be finishing its own delayed hand-over); returns the list's new word. */
uintptr_t lm_page_push_thread_free(lm_page_t* page, lm_block_t* block);
/* Set up a fresh page from the segment layer for blocks of `block_size`. */
void lm_page_init(lm_heap_t* heap, lm_page_t* page, size_t block_size);
/* Thread more blocks into the free list (lazily: about one OS page per step). */
void lm_page_extend(lm_page_t* page);
/* Wait until no remote free is handing a block of this page to its heap (DELAYED_FREEING);
 * returns the list's word then. Whoever takes a block off a delayed list waits so before the
 * page can be freed: the remote free still reads and writes the page's list word. */
uintptr_t lm_page_wait_handover(lm_page_t* page);
/* Change the delayed-free state (after any hand-over under way); `override_never` also
 * replaces NEVER_DELAYED. */
void lm_page_set_delayed(lm_page_t* page, uintptr_t state, bool override_never);
/* Give back the physical memory inside the free blocks of `list` (a page's thread-free list)
 * while other blocks keep the page in use: the pages of an idle owner (drain.c), which nobody
 * else may allocate from. Each block keeps its first OS page (its link and a mark that it was
 * done, so that a later look skips it) and, with padding, the OS page of its canary; blocks
 * too small to give two OS pages are left, a system call being dearer than what it returns.
 * The caller holds the owner off. Returns the bytes given back. */
size_t lm_page_discard_free(lm_page_t* page, lm_block_t* list);
static inline lm_heap_t* lm_page_heap(const lm_page_t* page) {
  return (lm_heap_t*)atomic_load_explicit(&((lm_page_t*)page)->xheap, memory_order_relaxed);
}
static inline uint8_t lm_page_flags(const lm_page_t* page) {
  return atomic_load_explicit(&((lm_page_t*)page)->flags, memory_order_relaxed);
}
/* Owner-only update (single writer): a relaxed load and store, no atomic RMW needed. */
static inline void lm_page_flags_update(lm_page_t* page, uint8_t set, uint8_t clear) {
  uint8_t f = lm_page_flags(page);
  atomic_store_explicit(&page->flags, (uint8_t)((f | set) & (uint8_t)~clear), memory_order_relaxed);
}
static inline bool lm_page_free_is_zero(const lm_page_t* page) {
  return (lm_page_flags(page) & LM_PAGE_FREE_ZERO) != 0;
}
/* Blocks that were handed out join `free`: it is not known zero any more. */
static inline void lm_page_free_dirty(lm_page_t* page) {
  if (lm_page_flags(page) & LM_PAGE_FREE_ZERO) lm_page_flags_update(page, 0, LM_PAGE_FREE_ZERO);
}
/* A block's start from an interior (aligned) pointer into it. */
static inline lm_block_t* lm_page_block_of(const lm_page_t* page, const void* p) {
  size_t diff = (size_t)((const uint8_t*)p - page->page_start);
  size_t adjust = page->block_size_shift != 0 ? diff & (((size_t)1 << page->block_size_shift) - 1)
                                              : diff % page->block_size;
  return (lm_block_t*)((uintptr_t)p - adjust);
}
/* A page of one block (large and huge pages). */
static inline bool lm_page_is_single(const lm_page_t* page) {
  return page->bin == LM_BIN_HUGE;
}
/* Is p the start of a block of the page? One multiply (Lemire's test): for d < 2^32 and
 * c = floor((2^64-1)/size) + 1, d is a multiple of size exactly when d*c mod 2^64 < c. */
static inline bool lm_page_is_block_start(const lm_page_t* page, const void* p) {
#if LM_PAGE_CHECKED
  uint64_t diff = (uint64_t)((const uint8_t*)p - page->page_start);
  if (page->block_size_inv == 0) return diff == 0; /* a single-block page */
  return diff * page->block_size_inv < page->block_size_inv;
#else
  return (const void*)lm_page_block_of(page, p) == p; /* (only checked builds ask) */
#endif
}
static inline size_t lm_page_usable_size_of(const lm_page_t* page, const void* p) {
  const lm_block_t* block = lm_page_block_of(page, p);
  return page->block_size - (size_t)((const uint8_t*)p - (const uint8_t*)block);
}

/* ---- memory-checker annotations (the `valgrind` build option) --------------------------------- */
/* With LM_TRACK_VALGRIND, blocks are announced to Valgrind's memcheck as they are handed out and
 * freed, and free blocks are inaccessible except for the moments the allocator reads or writes
 * their link: memcheck then reports use-after-free, overflows and leaks in the program, and
 * nothing for the allocator's own bookkeeping. Without it every hook is empty. */
#ifndef LM_TRACK_VALGRIND
#define LM_TRACK_VALGRIND 0
#endif
/* An AddressSanitizer build poisons free blocks the same way, so ASan reports use-after-free
 * and overflows into free blocks made with our blocks (not only with its own malloc's). */
#define LM_TRACK_ASAN LM_ASAN
#define LM_TRACK (LM_TRACK_VALGRIND || LM_TRACK_ASAN)
#if LM_TRACK_VALGRIND
#include <valgrind/memcheck.h>
#define lm_track_malloc(p, size, zero) VALGRIND_MALLOCLIKE_BLOCK(p, size, 0, zero)
#define lm_track_free(p, size) VALGRIND_FREELIKE_BLOCK(p, 0)
#define lm_track_open(p, size) VALGRIND_MAKE_MEM_DEFINED(p, size)
#define lm_track_close(p, size) VALGRIND_MAKE_MEM_NOACCESS(p, size)
#define lm_track_reset(p, size) VALGRIND_MAKE_MEM_UNDEFINED(p, size)
#elif LM_TRACK_ASAN
#include <sanitizer/asan_interface.h>
#define lm_track_malloc(p, size, zero) ((void)(zero), ASAN_UNPOISON_MEMORY_REGION(p, size))
#define lm_track_free(p, size) ASAN_POISON_MEMORY_REGION(p, size)
#define lm_track_open(p, size) ASAN_UNPOISON_MEMORY_REGION(p, size)
#define lm_track_close(p, size) ASAN_POISON_MEMORY_REGION(p, size)
#define lm_track_reset(p, size) ASAN_UNPOISON_MEMORY_REGION(p, size)
/* The slack of a live block past what was asked for is a red zone until the program asks for
 * its usable size (which hands it over). */
#define lm_track_redzone(p, size) ASAN_POISON_MEMORY_REGION(p, size)
#define lm_track_usable(p, size) ASAN_UNPOISON_MEMORY_REGION(p, size)
#else
#define lm_track_malloc(p, size, zero) ((void)(p), (void)(size), (void)(zero))
#define lm_track_free(p, size) ((void)(p), (void)(size))
#define lm_track_open(p, size) ((void)(p), (void)(size))
#define lm_track_close(p, size) ((void)(p), (void)(size))
#define lm_track_reset(p, size) ((void)(p), (void)(size))
#endif
#ifndef lm_track_redzone
#define lm_track_redzone(p, size) ((void)(p), (void)(size))
#define lm_track_usable(p, size) ((void)(p), (void)(size))
#endif
/* A page goes back to its segment: its memory is plain (accessible, undefined) memory again. */
static inline void lm_track_page_gone(const lm_page_t* page) {
  (void)page;
#if LM_TRACK
  size_t size;
  uint8_t* area = lm_page_area(page, &size);
  lm_track_reset(area, size);
#endif
}

/* ---- free-list links ------------------------------------------------------------------------ */
/* In secure and debug builds the link in a free block is encoded with two per-page random keys,
 * so an overflow or a use-after-free write into a free block cannot steer the allocator to an
 * address of the attacker's choice: a decoded link must point into the same page, or the list
 * is reported corrupt (EFAULT) and cut. NULL is encoded as the page address, so the encoding of
 * NULL does not expose the keys. */
#define LM_ENCODE_FREELIST (LM_SECURE || LM_DEBUG > 0)

void lm_free_list_corrupt(const lm_page_t* page, const lm_block_t* block);

static inline bool lm_page_holds(const lm_page_t* page, const void* p) {
  return (const uint8_t*)p >= page->page_start &&
         (const uint8_t*)p < page->page_start + (size_t)page->reserved * page->block_size;
}

/* The link a raw (encoded) word stands for; the page's address stands for NULL. */
static inline uintptr_t lm_block_decode(const lm_page_t* page, uintptr_t raw) {
#if LM_PAGE_CHECKED
  return lm_rotr(raw - page->keys[0], page->keys[0]) ^ page->keys[1];
#else
  (void)page; /* (only checked builds encode) */
  return raw;
#endif
}

static inline lm_block_t* lm_block_next(const lm_page_t* page, const lm_block_t* block) {
  lm_track_open(block, sizeof(lm_block_t));
  uintptr_t raw = (uintptr_t)block->next;
  lm_track_close(block, sizeof(lm_block_t));
#if LM_ENCODE_FREELIST
  uintptr_t x = lm_block_decode(page, raw);
  if (x == (uintptr_t)page) return NULL;
  if (lm_unlikely(!lm_page_holds(page, (void*)x))) {
    lm_free_list_corrupt(page, block);
    return NULL;
  }
  return (lm_block_t*)x;
#else
  (void)page;
  return (lm_block_t*)raw;
#endif
}

static inline void lm_block_set_next(const lm_page_t* page, lm_block_t* block,
                                     const lm_block_t* next) {
  lm_track_open(block, sizeof(lm_block_t));
#if LM_ENCODE_FREELIST
  uintptr_t x = next == NULL ? (uintptr_t)page : (uintptr_t)next;
  block->next = (lm_block_t*)(lm_rotl(x ^ page->keys[1], page->keys[0]) + page->keys[0]);
#else
  (void)page;
  block->next = (lm_block_t*)next;
#endif
  lm_track_close(block, sizeof(lm_block_t));
}

/* ---- padding and canaries (secure and debug builds), fill patterns (debug) (page.c) ---------- */
/* Secure and debug builds put 8 bytes of padding at the end of every block: a keyed canary and
 * the slack between the requested size and the block. Up to 8 bytes of slack are filled with
 * 0xDE. A free or realloc checks both and reports a write past the requested size (EFAULT,
 * with the first damaged byte); a free by the page's owner also checks the canary of the block
 * just below, so a write through a block into a live neighbour is caught when either is freed.
 * Every block of a page carries a canary from the moment the page grows to it (fresh blocks
 * with no request), and frees leave it in place. mi_usable_size reports the requested size
 * exactly. Debug builds also fill fresh blocks with 0xD0 and freed ones with 0xDF (up to the
 * padding), checked when handed out again (a write after free is EFAULT), and count the bytes
 * requested. */
#define LM_PADDING (LM_SECURE || LM_DEBUG > 0)
#define LM_PADDING_SIZE ((size_t)(LM_PADDING ? 8 : 0))
#define LM_DEBUG_FILL (LM_DEBUG > 0)
#define LM_DEBUG_FILL_CHECK 64 /* bytes of a freed block checked on reuse */
typedef struct lm_padding_s {
  uint32_t canary;
  uint32_t delta; /* block size - padding - requested size */
} lm_padding_t;

static inline lm_padding_t* lm_padding_of(const lm_page_t* page, const void* block) {
  return (lm_padding_t*)((uint8_t*)block + page->block_size - LM_PADDING_SIZE);
}
/* Keyed by the page and the block's address; the low byte is zero, so a string that runs on
 * past its block stops at the canary instead of reading on. */
static inline uint32_t lm_padding_canary(const lm_page_t* page, const void* block) {
#if LM_PAGE_CHECKED
  return (uint32_t)(((uintptr_t)block ^ page->keys[1]) >> 3) & ~(uint32_t)0xFF;
#else
  (void)page; /* (only checked builds pad) */
  return (uint32_t)((uintptr_t)block >> 3) & ~(uint32_t)0xFF;
#endif
}
/* The canary and a plausible slack, without the fill: what every block of a page keeps. */
static inline bool lm_padding_canary_ok(const lm_page_t* page, const void* block) {
  const lm_padding_t* pad = lm_padding_of(page, block);
  return pad->canary == lm_padding_canary(page, block) &&
         pad->delta <= page->block_size - LM_PADDING_SIZE;
}
/* A free block's link leaves its canary alone, except in blocks of 8 bytes (a request of 0):
 * those are all padding, and only their own canary is checked. */
static inline bool lm_padding_kept_when_free(const lm_page_t* page) {
  return page->block_size >= LM_PADDING_SIZE + sizeof(void*);
}
/* The slack after a request is filled with 0xDE up to 8 bytes: one word store and one word
 * compare when the slack holds a word (the usual case), a few bytes otherwise. */
#define LM_PADDING_FILL_WORD ((uint64_t)0xDEDEDEDEDEDEDEDEull)
static inline void lm_padding_fill(uint8_t* fill, uint32_t delta) {
  if (lm_likely(delta >= sizeof(uint64_t))) {
    uint64_t word = LM_PADDING_FILL_WORD;
    memcpy(fill, &word, sizeof(word));
  } else {
    for (uint32_t i = 0; i < delta; i++) fill[i] = 0xDE;
  }
}
static inline bool lm_padding_fill_ok(const uint8_t* fill, uint32_t delta) {
  if (lm_likely(delta >= sizeof(uint64_t))) {
    uint64_t word;
    memcpy(&word, fill, sizeof(word));
    return word == LM_PADDING_FILL_WORD;
  }
  for (uint32_t i = 0; i < delta; i++) {
    if (fill[i] != 0xDE) return false;
  }
  return true;
}
/* The whole padding of a live block, filled slack included; no report. */
static inline bool lm_padding_intact(const lm_page_t* page, const void* block) {
  if (!lm_padding_canary_ok(page, block)) return false;
  const lm_padding_t* pad = lm_padding_of(page, block);
  return lm_padding_fill_ok((const uint8_t*)pad - pad->delta, pad->delta);
}
/* Set up the padding of a block handed out for `requested` bytes. */
static inline void lm_padding_init(const lm_page_t* page, lm_block_t* block, size_t requested) {
  size_t room = page->block_size - LM_PADDING_SIZE;
  if (requested > room) requested = room;
  lm_padding_t* pad = lm_padding_of(page, block);
  pad->canary = lm_padding_canary(page, block);
  pad->delta = (uint32_t)(room - requested);
  lm_padding_fill((uint8_t*)block + requested, pad->delta);
}
void lm_padding_fresh(const lm_page_t* page, lm_block_t* block);
/* Check a live block's padding; a damaged one is reported (EFAULT) and false returned. */
bool lm_padding_ok(const lm_page_t* page, const lm_block_t* block);
/* Check the canary of the block below `block` (a block of a page with several); a damaged one
 * is reported (EFAULT) and false returned. */
bool lm_padding_below_ok(const lm_page_t* page, const lm_block_t* block);
size_t lm_padding_requested(const lm_page_t* page, const lm_block_t* block);
bool lm_padding_ok_at(const void* p); /* free.c: realloc's check of a pointer */
size_t lm_padding_room_at(const void* p);         /* free.c: realloc in place */
void lm_padding_resize(void* p, size_t newsize); /* free.c */
void lm_debug_fill_freed(const lm_page_t* page, lm_block_t* block);
void lm_debug_check_reused(const lm_page_t* page, const lm_block_t* block);

/* ---- page queues (page_queue.c) ---------------------------------------------------------------- */
lm_page_queue_t* lm_heap_queue_for(lm_heap_t* heap, const lm_page_t* page);
void lm_queue_push(lm_heap_t* heap, lm_page_queue_t* pq, lm_page_t* page);
void lm_queue_push_back(lm_heap_t* heap, lm_page_queue_t* pq, lm_page_t* page);
void lm_queue_remove(lm_heap_t* heap, lm_page_queue_t* pq, lm_page_t* page);
void lm_queue_move_to_front(lm_heap_t* heap, lm_page_queue_t* pq, lm_page_t* page);
void lm_page_to_full(lm_heap_t* heap, lm_page_t* page);
void lm_page_unfull(lm_heap_t* heap, lm_page_t* page);

/* ---- heap slow paths (heap.c) --------------------------------------------------------------- */
/* Find a page with a free block of `size` (<= medium) or a fresh single-block page. */
lm_page_t* lm_heap_find_page(lm_heap_t* heap, size_t size, size_t huge_alignment);
/* The page's last block was freed locally: keep it a while (only page of its size) or free. */
void lm_page_retire_slow(lm_page_t* page);
static inline void lm_page_retire(lm_page_t* page) {
  /* Already retired (an alloc/free cycle on the only page of its size): just renew it. */
  if (lm_likely(page->retire_expire != 0)) {
    page->retire_expire = page->block_size <= LM_SMALL_OBJ_SIZE_MAX ? 16 : 4;
    return;
  }
  lm_page_retire_slow(page);
}
/* Return an empty page to its segment. */
void lm_heap_page_free(lm_heap_t* heap, lm_page_t* page);
/* After a page left it: a segment whose remaining pages all belong to no heap is abandoned. */
void lm_heap_segment_check_abandoned(lm_segments_tld_t* tld, lm_segment_t* segment);
/* Free retired pages whose time is up (all with force). */
void lm_heap_collect_retired(lm_heap_t* heap, bool force);
/* Process the remote frees handed to this heap (into its full pages). Blocks still in flight
 * arrive later; callers that must see them all first stop new ones (NEVER_DELAYED). */
void lm_heap_delayed_free(lm_heap_t* heap);
/* Push a block onto the heap's delayed list; returns the block that was first before. */
static inline lm_block_t* lm_heap_delayed_push(lm_heap_t* heap, lm_block_t* block) {
  lm_block_t* head = atomic_load_explicit(&heap->thread_delayed_free, memory_order_relaxed);
  lm_track_open(block, sizeof(lm_block_t));
  do {
    block->next = head;
  } while (!atomic_compare_exchange_weak_explicit(&heap->thread_delayed_free, &head, block,
                                                  memory_order_release, memory_order_relaxed));
  lm_track_close(block, sizeof(lm_block_t));
  return head;
}
/* The next block of a delayed list (a plain link: only the list's taker reads it). */
static inline lm_block_t* lm_delayed_next(lm_block_t* block) {
  lm_track_open(block, sizeof(lm_block_t));
  lm_block_t* next = block->next;
  lm_track_close(block, sizeof(lm_block_t));
  return next;
}
/* The fault-injection test hook (arena_api.c): see lm_fault_plan_t. */
int64_t lm_fault_os(int64_t nth, unsigned kinds);
typedef enum lm_collect_e { LM_COLLECT_NORMAL, LM_COLLECT_FORCE, LM_COLLECT_ABANDON } lm_collect_t;
void lm_heap_collect(lm_heap_t* heap, lm_collect_t mode);
/* Try to take over abandoned segments until one has room for `block_size`. */
void lm_heap_reclaim(lm_heap_t* heap, size_t block_size);

/* C++ names used from C (api_cxx.c, override.h). Itanium names carry the platform's symbol
 * prefix (empty on ELF). */
#define LM_STR2(x) #x
#define LM_STR(x) LM_STR2(x)
#ifdef __USER_LABEL_PREFIX__
#define LM_CXX_NAME(name) LM_STR(__USER_LABEL_PREFIX__) name
#else
#define LM_CXX_NAME(name) name
#endif
/* size_t mangles as `m` (unsigned long) on LP64 and `j` (unsigned int) on ILP32. std::align_val_t
 * is an enum of size_t and std::nothrow_t an empty struct passed by reference, so the prototypes
 * of the operators (override.h) are those of the C++ declarations. */
#if __SIZEOF_SIZE_T__ == __SIZEOF_LONG__
#define LM_SZ "m"
#elif __SIZEOF_SIZE_T__ == 8
#define LM_SZ "y" /* unsigned long long: 64-bit Windows (LLP64) */
#else
#define LM_SZ "j"
#endif

/* ---- allocation and free (alloc.c, free.c, aligned.c) -------------------------------------- */
void* lm_malloc_generic(lm_heap_t* heap, size_t size, bool zero, size_t huge_alignment);
void* lm_heap_malloc(lm_heap_t* heap, size_t size, bool zero);
/* The same, never a guarded sample (aligned allocation, guarded blocks themselves). */
void* lm_heap_malloc_unsampled(lm_heap_t* heap, size_t size, bool zero);

/* ---- guarded sampling (guarded.c; guarded builds) -------------------------------------------- */
/* The countdown reached zero: a guarded block when the heap samples this size, else a plain
 * one; the countdown starts again. */
void* lm_heap_malloc_sampled(lm_heap_t* heap, size_t size, bool zero);
/* Set a heap's sampling from the options (at heap creation). */
void lm_heap_guarded_init(lm_heap_t* heap);
/* If p is a guarded block (an interior pointer of `block`), open its guard page again before
 * the block is freed (heap destroy too). */
void lm_guarded_unguard(const lm_page_t* page, const void* p);
/* If the block at `base` is guarded: the pointer handed out and its usable size. */
void lm_guarded_block(const lm_page_t* page, void* base, void** p, size_t* size);
/* The usable size of a guarded block at p (to its guard page), or 0 if p is none. */
size_t lm_guarded_usable_size(const lm_page_t* page, const void* p);
void* lm_heap_malloc_aligned_at(lm_heap_t* heap, size_t size, size_t align, size_t offset,
                                bool zero);
void* lm_heap_realloc_aligned_at(lm_heap_t* heap, void* p, size_t newsize, size_t align,
                                 size_t offset, bool zero);
void* lm_heap_realloc(lm_heap_t* heap, void* p, size_t newsize, bool zero);
/* Free a block into a page from the owner thread (slow cases: full or aligned pages). */
void lm_free_block_local(lm_page_t* page, lm_block_t* block);
/* Free from a thread that does not own the page. */
void lm_free_block_remote(lm_page_t* page, lm_block_t* block);
size_t lm_usable_size(const void* p);

/* Call the registered deferred-free hook with a rising heartbeat (not recursively). */
void lm_deferred_free(lm_heap_t* heap, bool force);
/* Is p inside memory this allocator manages (arenas, or segments straight from the OS)? */
bool lm_is_in_heap_region(const void* p);
/* A pointer we never handed out: give it to the next allocator, or ignore it with a warning. */
void lm_free_foreign(void* p);
size_t lm_foreign_usable_size(const void* p);

/* Call `visitor` for the page as an area, then (with visit_blocks) for each live block. */
bool lm_page_visit(const lm_heap_t* heap, lm_page_t* page, bool visit_blocks,
                   mi_block_visit_fun* visitor, void* arg);

/* Record the process start time (elapsed time in mi_process_info). */
void lm_stats_process_start(void);
/* Fold what the page handed out and gave back since the last look into `ts` (the owner's
 * figures), or into the process figures when `ts` is NULL (a collector of abandoned pages). */
void lm_page_stats_fold(lm_page_t* page, lm_thread_stats_t* ts);
/* The page is counted for the first time (a fresh page of a heap). */
void lm_page_stats_fresh(lm_page_t* page, lm_thread_stats_t* ts);
/* The page goes back to its segment: fold, and drop its share (live blocks die with it). */
void lm_page_stats_release(lm_page_t* page, lm_thread_stats_t* ts);
/* A large page's block grew or shrank in place to `block_size` (sets it). */
void lm_page_stats_resize(lm_page_t* page, lm_thread_stats_t* ts, size_t block_size);
/* The page leaves (abandon, `into` false) or joins (adopt) the thread's pages. */
void lm_page_stats_move(lm_page_t* page, lm_thread_stats_t* ts, bool into);
/* Fold every page of the thread's heaps and add its figures to the process figures. */
void lm_stats_merge_thread(lm_tld_t* tld);
/* Debug level 3 (check.c): walk every invariant of the thread's heaps, pages, segments and
 * statistics; a violation stops the program. */
void lm_heap_check_all(lm_tld_t* tld);
/* The calling thread's data, or NULL if it never allocated. */
lm_tld_t* lm_tld_current(void);
static inline void lm_counter_add(lm_counter_local_t* c, int64_t n) { c->total += n; }
/* On slow paths (a page's free list ran out, a page search): fold when the page's live count
 * rose since the last look, so peaks are seen within one free list of their height, or when its
 * unseen count grows large. A steady alloc/free churn then costs two loads and a compare. */
static inline void lm_page_stats_sample(lm_page_t* page, lm_thread_stats_t* ts) {
  if (page->used > page->stat_used || page->stat_allocs >= ((uint32_t)1 << 30)) {
    lm_page_stats_fold(page, ts);
  }
}

/* ---- thread start and end (init.c) --------------------------------------------------------- */
void lm_thread_done_heap(lm_heap_t* heap);

/* ---- idle heaps (drain.c) ------------------------------------------------------------------- */
/* The owner's side of the handshake with the drainer, around every slow path that may touch
 * a full page or the thread's list of heaps (they nest). Entering waits while the drainer
 * works on this thread; the fast paths never enter. */
void lm_tld_wait_drainer(lm_tld_t* tld);
static inline void lm_tld_enter(lm_tld_t* tld) {
  if (tld->busy_depth++ != 0) return;
  uint32_t epoch = atomic_load_explicit(&tld->slow_epoch, memory_order_relaxed);
  atomic_store_explicit(&tld->slow_epoch, epoch + 1, memory_order_relaxed);
  atomic_store_explicit(&tld->busy, true, memory_order_seq_cst);
  if (lm_unlikely(atomic_load_explicit(&tld->draining, memory_order_seq_cst))) {
    lm_tld_wait_drainer(tld);
  }
}
static inline void lm_tld_leave(lm_tld_t* tld) {
  if (--tld->busy_depth == 0) atomic_store_explicit(&tld->busy, false, memory_order_release);
}
/* A thread's data joins (thread start) or leaves (thread end) the drainer's list. */
void lm_tld_register(lm_tld_t* tld);
void lm_tld_unregister(lm_tld_t* tld);
/* Purger pass: reset the full pages of idle heaps that other threads freed completely
 * (`force`: of every heap whose owner is not in a slow path right now: mi_collect(true)). */
void lm_drain_idle_heaps(bool force);
/* Owner, in a slow path: free the pages the drainer emptied, take over the frees it moved. */
void lm_heap_undrain(lm_heap_t* heap);
static inline void lm_heap_check_drained(lm_heap_t* heap) {
  if (lm_unlikely(atomic_load_explicit(&heap->drained, memory_order_relaxed))) {
    lm_heap_undrain(heap);
  }
}

/* ---- background purger (purger.c) ---------------------------------------------------------- */
/* On slow paths (a fresh page, a page freed, a collect): start the purger thread once the
 * program has threads of its own, else purge inline what is due. One relaxed load when the
 * thread runs. */
void lm_purger_tick(void);
/* A second thread allocates: from now on a background purger may start. */
void lm_purger_thread_seen(void);
/* A remote free hit an abandoned page: schedule a visit of abandoned segments. */
void lm_purger_notify_abandoned(void);
/* A remote free went to a heap's delayed list: schedule a look at idle heaps. */
void lm_purger_notify_delayed(void);
/* Do a purger pass on the calling thread (mi_collect(true), malloc_trim); `force` purges
 * everything pending regardless of delays. Serialised with the background purger. */
void lm_purge_now(bool force);
/* ---- the container (container.c) ------------------------------------------------------------ */
/* Decide whether to watch the container at all (at process start); nothing is read yet. */
void lm_container_init(void);
/* CPUs to size caches for (the CPU quota's, else the affinity's); 0 when unknown (not read
 * yet: a purger pass reads them). */
size_t lm_container_cpus(void);
/* A memory limit is known: purger passes should poll usage. */
bool lm_container_watching(void);
/* Is a usage poll (or the first read of the limits) due (cheap: no read)? */
bool lm_container_poll_due(int64_t now);
/* In a purger pass (serialised by its lock): read the limits the first time, re-read limits and
 * usage when due, switch the arenas' pressure on or off. True when the pass should purge
 * everything waiting now. */
bool lm_container_poll(int64_t now);

/* Register the fork handlers (once libc is up). */
void lm_fork_setup(void);

/* ---- process start and end (init.c), called by the platform's hooks ---------------------------
 * src/core/start.c expands LM_PROCESS_HOOKS (src/common/platform.h) once: an ELF constructor
 * and destructor, DllMain in the Windows DLL, a CRT constructor in a Windows static link. */
void lm_process_attach(void); /* the library is loaded: libc and the environment are ready */
void lm_process_detach(void); /* the library is unloaded or the process ends */
/* Collect abandoned segments once (also used by mi_collect when no purger runs). */
void lm_abandoned_collect(lm_segments_tld_t* tld, size_t max_visits);

/* ---- randomness (random.c) ------------------------------------------------------------------ */
void lm_random_init(lm_random_t* rnd, const lm_backend_t* backend);
uint64_t lm_random_next(lm_random_t* rnd);

/* ---- options (options.c) --------------------------------------------------------------------- */
/* Read every option from the environment (again). */
void lm_options_init(void);
long lm_option_get(int option);

/* ---- huge OS pages (arena_api.c) ---------------------------------------------------------- */
/* Reserve `pages` 1 GiB pages spread over the first `nodes` NUMA nodes (0: all told apart),
 * each node's share within its part of `timeout_ms` (0: no limit); `*reserved` (may be NULL)
 * gets how many pages were had; reports what could not be had. For
 * process start (no init check) and the mi_reserve_huge_os_pages_* calls. */
int lm_huge_reserve_interleave(size_t pages, size_t nodes, size_t timeout_ms,
                               size_t* reserved);
int lm_huge_reserve_at(size_t pages, int numa_node, size_t timeout_ms, bool exclusive,
                       int* arena_id, size_t* reserved);

/* ---- messages (output.c) ---------------------------------------------------------------------- */
/* Write a message as it is (no prefix) to the registered output or stderr. */
void lm_output_raw(const char* msg);
/* Report a failed assertion (the reporter lm_assert_fail calls; installed at process setup). */
void lm_assert_report(const char* expr, const char* file, int line, const char* func);
void lm_message(const char* fmt, ...) LM_ATTR_PRINTF(1, 2);
void lm_warning(const char* fmt, ...) LM_ATTR_PRINTF(1, 2);
/* A message only with MIMALLOC_VERBOSE (what the allocator decided, and why). */
void lm_verbose(const char* fmt, ...) LM_ATTR_PRINTF(1, 2);
/* Report an error through the registered error handler (and the output when shown). */
void lm_error(int err, const char* fmt, ...) LM_ATTR_PRINTF(2, 3);

/* count * size for the calloc-style calls: false, with an EOVERFLOW report and errno ENOMEM,
 * when it does not fit. */
static inline bool lm_count_size(size_t count, size_t size, size_t* total) {
  if (lm_likely(!lm_mul_overflow(count, size, total))) return true;
  lm_error(EOVERFLOW, "allocation size overflow (%zu * %zu bytes)", count, size);
  errno = ENOMEM;
  return false;
}

#endif
