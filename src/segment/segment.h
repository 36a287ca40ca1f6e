/* The segment layer: 32 MiB-aligned regions cut into 64 KiB slices, holding pages.
 *
 * A segment starts with its own metadata (header + one page descriptor per slice) in its first
 * slice(s). Pages are runs of slices: small (1 slice, blocks <= 8 KiB), medium (2-8 slices, room
 * for 8 or more blocks <= 64 KiB), large (a single block of up to 16 MiB, rounded to slices) and huge (a dedicated
 * segment for one bigger block). Because segments are aligned to their size, the page of any
 * pointer is found in constant time: mask to the segment, shift to the slice, and follow the
 * slice's back-offset to the first slice of its page.
 *
 * Free slice runs ("spans") of a thread's segments sit in that thread's span queues, binned by
 * length; page allocation takes the best fit and splits it, page free coalesces neighbours.
 * Freed spans are purged (decommit/reset) after the purge delay, either by the owner or by the
 * background purger through a handshake on arena block flags (see segment.c).
 *
 * A segment belongs to one thread (thread_id). At thread exit the core abandons pages that
 * still hold live blocks; when every page of a segment is abandoned, the whole segment is, and
 * another thread (or the purger) can reclaim it. This layer calls only the arena layer.
 */
#pragma once
#ifndef LM_SEGMENT_H
#define LM_SEGMENT_H

#include "../arena/arena.h"

/* ---- geometry ------------------------------------------------------------------------------ */
#define LM_SLICE_SHIFT 16 /* 64 KiB */
#define LM_SLICE_SIZE ((size_t)1 << LM_SLICE_SHIFT)
#define LM_SLICES_PER_SEGMENT (LM_SEGMENT_SIZE / LM_SLICE_SIZE) /* 512 */
#define LM_SMALL_PAGE_SIZE LM_SLICE_SIZE
#define LM_MEDIUM_PAGE_SIZE (8 * LM_SLICE_SIZE)
#define LM_SMALL_OBJ_SIZE_MAX (LM_SMALL_PAGE_SIZE / 8)   /* 8 KiB */
#define LM_MEDIUM_OBJ_SIZE_MAX (LM_MEDIUM_PAGE_SIZE / 8) /* 64 KiB */
#define LM_LARGE_OBJ_SIZE_MAX (LM_SEGMENT_SIZE / 2)      /* 16 MiB */
#define LM_SPAN_QUEUES 36
#define LM_COMMIT_MASK_FIELDS (LM_SLICES_PER_SEGMENT / 64)
/* Alignments above this get a dedicated huge segment placed so the block is aligned. */
#define LM_BLOCK_ALIGNMENT_MAX (LM_SEGMENT_SIZE / 2)

/* A free block: its first word links to the next free block. */
typedef struct lm_block_s {
  struct lm_block_s* next;
} lm_block_t;

/* Page flags, tested together as one byte on the free path. */
#define LM_PAGE_IN_FULL 0x01     /* in the heap's full queue */
#define LM_PAGE_HAS_ALIGNED 0x02 /* some block was handed out at an interior (aligned) address */
#define LM_PAGE_ABANDONED 0x04   /* belongs to no heap: every free takes the remote path */
/* The blocks in `free` are zero beyond their first word (fresh OS memory). A flag, not a field
 * of its own: the first free into such a page takes the slower path once and clears it, and
 * the free fast path stores nothing but the link, the list head and the count. */
#define LM_PAGE_FREE_ZERO 0x08

/* Builds that check frees and encode free lists (secure and debug) keep two more things per
 * page: its free-list keys and a divisibility constant. Release builds leave them out, so that a
 * descriptor is 96 bytes: the index of a pointer's descriptor is then two cheap instructions,
 * and with the slices 64-byte aligned the fast paths' first 24 bytes never straddle a cache
 * line. */
#define LM_PAGE_CHECKED (LM_SECURE || LM_DEBUG > 0)

/* A page descriptor. Every slice of a segment has one; only the first slice of a page or free
 * span carries a page, the others only `slice_offset` back to it. The slice fields belong to the
 * segment layer, the rest to the core (free lists, owner heap, queue links). */
typedef struct lm_page_s {
  /* The first 24 bytes hold all that the malloc and free fast paths touch, in one cache line
   * for every page of a release build (see LM_PAGE_CHECKED); the 120 bytes of a checked
   * build's descriptor split them for a quarter of the pages. */
  uint32_t slice_count;  /* segment layer: slices in this page or span (0 for interior slices) */
  uint32_t slice_offset; /* segment layer: bytes back to the first slice of the page or span */
  lm_block_t* free;      /* allocation list */
  uint16_t used;         /* blocks in use, including those waiting in xthread_free */
  _Atomic(uint8_t) flags; /* LM_PAGE_IN_FULL | LM_PAGE_HAS_ALIGNED | ...; written by the owner
                           * only, read relaxed (a plain byte load) by any thread */
  uint8_t heap_tag;
  uint32_t stat_allocs;  /* blocks handed out since the statistics last looked */
  /* the rest of the core's */
  uint16_t capacity;     /* blocks threaded into the free lists so far */
  uint16_t reserved;     /* blocks that fit */
  uint16_t stat_used;    /* `used` when the statistics last looked */
  uint8_t retire_expire; /* > 0: kept empty for a while before release (hysteresis) */
  uint8_t block_size_shift; /* log2(block_size) for powers of two, else 0 */
  /* segment layer */
  uint8_t is_committed : 1;
  uint8_t is_zero_init : 1; /* the page memory was known zero when it was allocated */
  uint8_t is_huge : 1;
  uint8_t has_guard : 1;    /* the last OS page of the page's area is inaccessible */
  /* core */
  uint8_t bin;            /* its queue in a heap while not full (fixed at page init) */
  lm_block_t* local_free; /* frees waiting for the next collect (secure builds: the owner's) */
  size_t block_size;      /* 0 marks a free span */
  uint8_t* page_start;
#if LM_PAGE_CHECKED
  uint64_t block_size_inv; /* floor((2^64-1) / block_size) + 1 (0: one block): divisibility */
  uintptr_t keys[2];       /* free-list encoding keys */
#endif
  _Atomic(uintptr_t) xthread_free; /* frees by other threads: block pointer | 3 state bits */
  _Atomic(uintptr_t) xheap;        /* owning heap, 0 when abandoned */
  struct lm_page_s* next; /* page queue (core) or span queue (segment) links */
  struct lm_page_s* prev;
} lm_page_t;

typedef enum lm_segment_kind_e { LM_SEGMENT_NORMAL, LM_SEGMENT_HUGE } lm_segment_kind_t;

typedef struct lm_commit_mask_s {
  uint64_t bits[LM_COMMIT_MASK_FIELDS]; /* one bit per slice */
} lm_commit_mask_t;

typedef struct lm_segment_s {
  lm_memid_t memid;
  size_t segment_size;
  size_t segment_slices; /* slices usable for pages (the descriptors cover these) */
  size_t info_slices;    /* slices taken by this header */
  size_t guard_size;     /* bytes of each guard (an OS page), 0 without guards */
  lm_segment_kind_t kind;
  /* Large pages were asked for over [large_from, large_end) (bytes from the segment start;
   * equal when nothing was). */
  size_t large_from;
  size_t large_end;
  uintptr_t cookie;      /* address ^ process secret: recognises a real segment */
  _Atomic(lm_thread_id_t) thread_id; /* owner, 0 while abandoned */
  size_t used;           /* pages in use */
  size_t abandoned;      /* of those, pages abandoned by their heap */
  size_t abandoned_visits;
  struct lm_segment_s* abandoned_next; /* list of abandoned segments outside arenas */
  /* Commit and purge state; `lock` guards it against the background purger. */
  lm_spinlock_t lock;
  bool purge_flagged;    /* LM_BLOCK_PURGE_PENDING is set for this segment */
  int64_t purge_expire;  /* 0: nothing scheduled */
  int64_t purge_latest;  /* further frees extend purge_expire up to here, no further */
  /* Slices below have held pages: resident, unless purged since. Written by the owner only;
   * atomic because the purger reads it (lm_segments_offset_growth). */
  _Atomic(size_t) touched_end;
  lm_commit_mask_t commit_mask;
  lm_commit_mask_t purge_mask;
  lm_commit_mask_t young_mask; /* purge bits set while a deadline ran: that pass spares them */
  lm_commit_mask_t dirty_mask; /* slices that may hold non-zero bytes */
  lm_commit_mask_t guard_mask; /* slices whose last OS page is protected (kept across reuse) */
  lm_commit_mask_t reuse_mask; /* purged but still committed: the backend's reuse step first */
  _Alignas(64) lm_page_t slices[LM_SLICES_PER_SEGMENT + 1]; /* +1: a sentinel at the end */
} lm_segment_t;

/* Slices of a page for blocks of `block_size` (not huge). A medium page holds about 8 blocks,
 * not always 512 KiB: a size class that has only a few blocks live in each thread then leaves
 * less memory idle in its page (bench python3: peak RSS 58.8 -> 55.6 MiB, threadchurn 55 -> 53). */
static inline size_t lm_segment_page_slices(size_t block_size) {
  if (block_size <= LM_SMALL_OBJ_SIZE_MAX) return 1;
  if (block_size <= LM_MEDIUM_OBJ_SIZE_MAX) return lm_divide_up(8 * block_size, LM_SLICE_SIZE);
  /* Large single-block pages: rounded to 512 KiB above 512 KiB to limit fragmentation. */
  size_t unit = block_size > LM_MEDIUM_PAGE_SIZE ? LM_MEDIUM_PAGE_SIZE : LM_SLICE_SIZE;
  return lm_align_up(block_size, unit) / LM_SLICE_SIZE;
}

/* ---- process-wide segment state, and per-thread state ------------------------------------ */
typedef struct lm_segment_config_s {
  bool eager_commit;         /* commit whole segments when they are allocated */
  int64_t purge_delay_ms;    /* < 0 never, 0 at once */
  int64_t purge_extend_ms;   /* further frees push a pending purge back by this much */
  size_t max_reclaim_percent; /* share of abandoned segments tried per reclaim */
  bool guard_pages;          /* an inaccessible OS page after each page and after the header */
  bool abandoned_purge;      /* purge the free spans of a segment as it is abandoned */
  /* Large pages (2 MiB) for the small and medium pages that a segment holds past this offset
   * (0: never). See segment_advise_large in segment.c. */
  size_t large_pages_from;
} lm_segment_config_t;

typedef struct lm_segments_s {
  lm_arenas_t* arenas;
  lm_segment_config_t config;
  uintptr_t cookie_key;
  _Atomic(size_t) abandoned_count;     /* all abandoned segments */
  lm_spinlock_t abandoned_os_lock;     /* abandoned segments that are not in an arena */
  lm_segment_t* abandoned_os;
  _Atomic(size_t) count;               /* live segments */
  lm_stat_count_t segment_stats;       /* segments allocated and freed */
  lm_stat_count_t page_stats;          /* pages allocated and freed */
  lm_stat_count_t abandoned_stats;     /* segments abandoned and taken back */
  _Atomic(int64_t) purge_pending;      /* bytes of free slices waiting for their purge */
  /* Fresh memory pages took (slices touched for the first time) while purges waited: what the
   * purger should give back early to make up for it (lm_segments_offset_growth). */
  _Atomic(int64_t) growth_debt;
  _Atomic(lm_thread_id_t) growth_thread; /* the thread whose growth made the debt due */
  lm_stat_count_t pages_abandoned_stats; /* pages abandoned and taken back */
  /* One bit per 32 MiB of address space for segments taken straight from the OS (arena memory
   * is known to the arenas): allocated on first need, 1 MiB for a 48-bit address space, 16
   * bytes (one OS page) for a 32-bit one. */
  _Atomic(_Atomic(uint64_t)*) map;
  lm_memid_t map_memid;
  lm_spinlock_t map_lock;
} lm_segments_t;

typedef struct lm_span_queue_s {
  lm_page_t* first;
  lm_page_t* last;
  size_t slice_count; /* the largest span length this queue holds */
} lm_span_queue_t;

typedef struct lm_segments_tld_s {
  lm_segments_t* shared;
  lm_span_queue_t spans[LM_SPAN_QUEUES];
  size_t count;      /* segments owned */
  size_t peak_count;
  size_t reclaim_count;
  size_t eager_delay; /* segments still to come that are not committed whole (eager_commit_delay) */
  size_t freed_warm;  /* segments this thread emptied and gave back, not yet taken again */
} lm_segments_tld_t;

void lm_segments_init(lm_segments_t* segs, lm_arenas_t* arenas, const lm_segment_config_t* config,
                      uintptr_t cookie_key);
void lm_segment_config_default(lm_segment_config_t* config);
/* Release what the segment layer holds itself (the OS-segment map): tests, process teardown. */
void lm_segments_done(lm_segments_t* segs);
void lm_segments_tld_init(lm_segments_tld_t* tld, lm_segments_t* segs);

/* ---- pointer to segment and page: constant time ------------------------------------------ */
static inline lm_segment_t* lm_segment_of(const void* p) {
  /* p - 1: a block that starts exactly one segment past its header (huge alignment) still
   * maps to its own segment. */
  return (lm_segment_t*)(((uintptr_t)p - 1) & ~(uintptr_t)LM_SEGMENT_MASK);
}
static inline lm_page_t* lm_segment_page_of(const lm_segment_t* segment, const void* p) {
  size_t idx = ((uintptr_t)p - (uintptr_t)segment) >> LM_SLICE_SHIFT;
  const lm_page_t* slice = &segment->slices[idx];
  return (lm_page_t*)((uint8_t*)slice - slice->slice_offset);
}
static inline bool lm_segment_is_valid(const lm_segments_t* segs, const lm_segment_t* segment) {
  return segment->cookie == ((uintptr_t)segment ^ segs->cookie_key);
}
/* The first byte of a page's slice range, and its size in bytes. */
static inline uint8_t* lm_page_area(const lm_page_t* page, size_t* size) {
  const lm_segment_t* segment = lm_segment_of(page);
  size_t idx = (size_t)(page - segment->slices);
  if (size != NULL) {
    *size = page->is_huge ? segment->segment_size - idx * LM_SLICE_SIZE
                          : page->slice_count * LM_SLICE_SIZE;
    if (page->has_guard) *size -= segment->guard_size; /* a linear overflow stops there */
  }
  return (uint8_t*)segment + idx * LM_SLICE_SIZE;
}
static inline lm_thread_id_t lm_segment_owner(const lm_segment_t* segment) {
  return atomic_load_explicit(&((lm_segment_t*)segment)->thread_id, memory_order_relaxed);
}

/* ---- pages --------------------------------------------------------------------------------- */
/* A fresh page for blocks of `block_size` (the core sets up its free list). `page_alignment`
 * > LM_BLOCK_ALIGNMENT_MAX asks for a huge segment whose page start is so aligned. The page's
 * area is committed; is_zero_init says whether it is known to be zero. NULL when out of
 * memory. */
lm_page_t* lm_segment_page_alloc(lm_segments_tld_t* tld, size_t block_size,
                                 size_t page_alignment, int arena_id);
/* The block of a huge page will be written from its start (the core knows: malloc, not
 * calloc): ask for large pages over the 2 MiB chunks it covers, where the segment may use
 * them at all. */
void lm_segment_huge_advise_large(lm_segments_t* segs, lm_page_t* page);
/* [p, p+size) of a page in use (OS-page aligned) holds nothing any more: free blocks, or the
 * first bytes of a page whose every block was freed and that was reset in place. Give its
 * physical memory back where that leaves it accessible (reading as zero or as before). Any
 * thread may call it for memory nobody else touches meanwhile. False when the OS left the
 * memory inaccessible (out of memory on a recommit). */
bool lm_segment_discard(lm_segments_t* segs, const lm_page_t* page, void* p, size_t size);
static inline bool lm_segment_page_discard(lm_segments_t* segs, lm_page_t* page, size_t size) {
  return lm_segment_discard(segs, page, page->page_start, size);
}
/* Move the first `size` bytes (a multiple of the OS page) of the single block of page `from`
 * into the single block of page `to`, without a copy where the OS can (lm_os_move): returns
 * the bytes moved, from the start; those of `from` then read zero. The moved memory is given
 * the large-page advice that `to`'s segment asked for there. */
size_t lm_segment_move(lm_segments_t* segs, lm_page_t* to, lm_page_t* from, size_t size);
/* Return an empty page to its segment (coalescing, scheduling a purge); frees the segment
 * when it was the last page, and then returns true. */
bool lm_segment_page_free(lm_page_t* page, lm_segments_tld_t* tld);
/* Grow or shrink a large page (one block, normal segment) in place to `slices` slices: growing
 * takes free slices right after it (committed), shrinking gives its tail back (purged after
 * the delay). Only the segment's owner may call it. False when the page cannot grow there. */
bool lm_segment_page_resize(lm_segments_tld_t* tld, lm_page_t* page, size_t slices);
/* The core takes back an abandoned page (reclaim) or is about to free it. */
static inline void lm_segment_page_unabandon(lm_page_t* page, lm_segments_tld_t* tld) {
  lm_segment_of(page)->abandoned--;
  lm_stat_decrease(&tld->shared->pages_abandoned_stats, 1);
}
/* The core gave up a page with live blocks (thread exit). When all pages of the segment are
 * abandoned, the segment becomes reclaimable by other threads. */
void lm_segment_page_abandon(lm_page_t* page, lm_segments_tld_t* tld);
/* Purge what is due in this thread's segments (all pending when force). */
void lm_segment_collect(lm_segments_tld_t* tld, lm_segment_t* segment, bool force);

/* ---- reclaiming abandoned segments -------------------------------------------------------- */
/* Claim one abandoned segment and make it the calling thread's (its free spans join tld's
 * queues). Returns NULL when none. The core then visits its abandoned pages (heap == 0) with
 * lm_segment_next_page, keeps or frees them, and may call lm_segment_abandon_again. */
lm_segment_t* lm_segment_reclaim(lm_segments_tld_t* tld, lm_arena_cursor_t* cursor);
/* Claim this abandoned segment, if nobody claimed it first (a free into it reclaims it). */
bool lm_segment_reclaim_this(lm_segments_tld_t* tld, lm_segment_t* segment);
/* Iterate the page starts (not free spans) of a segment: start with prev == NULL. */
lm_page_t* lm_segment_next_page(lm_segment_t* segment, lm_page_t* prev);
/* Debug level 3: walk the segment's invariants (slices tile it, pages counted, purge bits a
 * subset of commit bits); a violation stops the program through lm_assert_fail. */
bool lm_segment_check(lm_segments_t* segs, lm_segment_t* segment);
/* Give a reclaimed segment that still has abandoned pages back to the abandoned set. */
void lm_segment_abandon_again(lm_segment_t* segment, lm_segments_tld_t* tld);
/* Would lm_segment_page_alloc find room without a new segment? (Reclaim before allocating.) */
bool lm_segment_span_available(lm_segments_tld_t* tld, size_t block_size, int arena_id);
/* Number of abandoned segments (approximate). */
size_t lm_segments_abandoned_count(lm_segments_t* segs);

/* Does p lie in a segment that came straight from the OS (not from an arena)? */
bool lm_segment_map_contains(lm_segments_t* segs, const void* p);

/* ---- background purge support ------------------------------------------------------------- */
/* Purge due ranges (all pending ones when `force`) of segments flagged as having pending
 * purges (owned by any thread), using the BUSY/PENDING handshake. Returns the earliest
 * remaining deadline, 0 when none. Callers serialise: one purger pass at a time. */
int64_t lm_segments_purge_flagged(lm_segments_t* segs, int64_t now, bool force);
/* Some thread took LM_GROWTH_OFFSET_STEP or more of fresh memory (slices never touched) for
 * pages while memory that other threads freed waited for its purge delay: purge that much of
 * the free spans of segments the grower does not own now, and every arena block it did not
 * free. The grower's own pending memory keeps its delay: it is the likeliest to reuse it.
 * Called by the purger pass (one at a time), with the BUSY/PENDING handshake. */
void lm_segments_offset_growth(lm_segments_t* segs);
/* Every 16 MiB: bench exchange peaked at 69-77 MiB instead of 82-86, for 6-10% more CPU time;
 * every 4 or 8 MiB, at 61-65 MiB for 13-18% more (medians of 9-11 runs, three series). */
#define LM_GROWTH_OFFSET_STEP ((int64_t)16 << 20)
/* Will the background purger see to the segment's pending purge (it is flagged in its arena)? */
bool lm_segment_purge_is_flagged(lm_segment_t* segment);

#endif
