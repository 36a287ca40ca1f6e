/* Segments: allocation, page placement, commit and purge bookkeeping.
 *
 * Invariants:
 *  - every slice in [info_slices, segment_slices) belongs to exactly one page or free span;
 *    the first slice of each carries slice_count, every slice carries slice_offset back to it;
 *  - a free span has block_size == 0 and, while its segment is owned, sits in the owner's span
 *    queue of its length's bin;
 *  - used counts pages; abandoned <= used; the segment is freed when used drops to 0;
 *  - commit_mask/purge_mask/dirty_mask change only under `lock`, which the background purger
 *    takes with try-lock; purge bits are a subset of commit bits.
 */
#include <string.h>

#include "segment.h"
#include "span.h"

void lm_segment_config_default(lm_segment_config_t* config) {
  *config = (lm_segment_config_t){
      .eager_commit = true, .purge_delay_ms = 10, .purge_extend_ms = 1, .max_reclaim_percent = 10,
      .abandoned_purge = true};
}

void lm_segments_init(lm_segments_t* segs, lm_arenas_t* arenas, const lm_segment_config_t* config,
                      uintptr_t cookie_key) {
  *segs = (lm_segments_t){.arenas = arenas, .cookie_key = cookie_key};
  if (config != NULL) segs->config = *config;
  else lm_segment_config_default(&segs->config);
}

void lm_segments_tld_init(lm_segments_tld_t* tld, lm_segments_t* segs) {
  *tld = (lm_segments_tld_t){.shared = segs};
  lm_span_queues_init(tld);
}

/* ---- masks ---------------------------------------------------------------------------------- */

/* The masks are worked on a 64-bit word at a time: a coalesced free span is hundreds of slices,
 * and the span is scheduled for purging again each time a page beside it is freed (bit by bit
 * that was 3,400 instructions a page free in bench/tree). */

/* The bits of word `f` that fall in [idx, end). */
static inline uint64_t word_bits(size_t f, size_t idx, size_t end) {
  size_t lo = f * 64;
  size_t a = idx > lo ? idx - lo : 0;
  size_t b = end < lo + 64 ? end - lo : 64;
  if (a >= b) return 0;
  uint64_t upto = b == 64 ? ~(uint64_t)0 : ((uint64_t)1 << b) - 1;
  return upto & ~(((uint64_t)1 << a) - 1);
}
static void mask_set(lm_commit_mask_t* m, size_t idx, size_t n, bool on) {
  for (size_t f = idx / 64; f * 64 < idx + n; f++) {
    uint64_t bits = word_bits(f, idx, idx + n);
    m->bits[f] = on ? m->bits[f] | bits : m->bits[f] & ~bits;
  }
}
static bool mask_get(const lm_commit_mask_t* m, size_t i) {
  return (m->bits[i / 64] >> (i % 64)) & 1;
}
static size_t mask_count(const lm_commit_mask_t* m, size_t idx, size_t n) {
  size_t count = 0;
  for (size_t f = idx / 64; f * 64 < idx + n; f++) {
    count += lm_popcount64(m->bits[f] & word_bits(f, idx, idx + n));
  }
  return count;
}
/* The first slice at or after `i` (below `end`) whose bit is `on`; `end` if none. */
static size_t mask_next(const lm_commit_mask_t* m, size_t i, size_t end, bool on) {
  while (i < end) {
    size_t f = i / 64;
    uint64_t word = (on ? m->bits[f] : ~m->bits[f]) & word_bits(f, i, end);
    if (word != 0) return f * 64 + lm_ctz64(word);
    i = (f + 1) * 64;
  }
  return end;
}
/* Purge bits are counted process-wide: committed memory that is free but not purged yet. */
static void purge_pending_add(lm_segments_t* segs, int64_t slices) {
  if (slices == 0) return;
  atomic_fetch_add_explicit(&segs->purge_pending, slices * (int64_t)LM_SLICE_SIZE,
                            memory_order_relaxed);
}
static void purge_mask_clear(lm_segments_t* segs, lm_segment_t* segment, size_t idx, size_t n) {
  size_t was_set = mask_count(&segment->purge_mask, idx, n);
  mask_set(&segment->purge_mask, idx, n, false);
  mask_set(&segment->young_mask, idx, n, false);
  purge_pending_add(segs, -(int64_t)was_set);
}
/* Mark the committed slices of [idx, idx+n) for purging; `young`: not at the next pass (see
 * segment_purge_now). Slices already waiting keep their age. */
static void purge_mask_set_committed(lm_segments_t* segs, lm_segment_t* segment, size_t idx,
                                     size_t n, bool young) {
  size_t added = 0;
  for (size_t f = idx / 64; f * 64 < idx + n; f++) {
    uint64_t add = segment->commit_mask.bits[f] & word_bits(f, idx, idx + n) &
                   ~segment->purge_mask.bits[f];
    segment->purge_mask.bits[f] |= add;
    if (young) segment->young_mask.bits[f] |= add;
    added += lm_popcount64(add);
  }
  purge_pending_add(segs, (int64_t)added);
}
static bool mask_all(const lm_commit_mask_t* m, size_t n) {
  return mask_count(m, 0, n) == n;
}
static bool mask_any(const lm_commit_mask_t* m) {
  for (size_t f = 0; f < LM_COMMIT_MASK_FIELDS; f++) {
    if (m->bits[f] != 0) return true;
  }
  return false;
}

/* ---- commit and purge ------------------------------------------------------------------- */

static uint8_t* slice_address(lm_segment_t* segment, size_t idx) {
  return (uint8_t*)segment + idx * LM_SLICE_SIZE;
}

/* Purge the runs of purge_mask (caller holds the lock): all of them, or only those that were
 * free when the deadline was set. Those freed since are spared one more delay: a busy thread
 * often takes again at once what it frees, and purging that only makes it fault back in; what
 * stays free a whole delay goes at the next pass, whatever else is freed meanwhile. Returns
 * the new deadline, 0 when nothing waits any more. */
static int64_t segment_purge_now(lm_segments_t* segs, lm_segment_t* segment, int64_t now,
                                 bool all) {
  lm_arenas_t* arenas = segs->arenas;
  lm_commit_mask_t due = segment->purge_mask;
  if (!all) {
    for (size_t f = 0; f < LM_COMMIT_MASK_FIELDS; f++) due.bits[f] &= ~segment->young_mask.bits[f];
  }
  size_t end = LM_SLICES_PER_SEGMENT;
  for (size_t start, i = 0; (start = mask_next(&due, i, end, true)) < end;) {
    i = mask_next(&due, start, end, false);
    bool needs_recommit =
        lm_os_purge(arenas, slice_address(segment, start), (i - start) * LM_SLICE_SIZE);
    if (needs_recommit) mask_set(&segment->commit_mask, start, i - start, false);
    else if (lm_os_has_reuse(arenas)) mask_set(&segment->reuse_mask, start, i - start, true);
    purge_mask_clear(segs, segment, start, i - start);
  }
  memset(&segment->young_mask, 0, sizeof(segment->young_mask));
  int64_t delay = lm_arenas_purge_delay(arenas, segs->config.purge_delay_ms);
  if (!mask_any(&segment->purge_mask) || delay < 0) {
    segment->purge_expire = 0;
  } else {
    segment->purge_expire = now + (delay > 0 ? delay : 1);
    segment->purge_latest = segment->purge_expire;
  }
  return segment->purge_expire;
}

/* Purge if due (caller holds the lock); returns the remaining deadline, 0 if none. */
static int64_t segment_try_purge_locked(lm_segments_t* segs, lm_segment_t* segment, int64_t now,
                                        bool force) {
  if (segment->purge_expire == 0) return 0;
  if (!force && segment->purge_expire > now) return segment->purge_expire;
  return segment_purge_now(segs, segment, now, force);
}

/* Make sure the page's slices are committed and not about to be purged. */
static bool segment_commit_range(lm_segments_t* segs, lm_segment_t* segment, size_t idx, size_t n,
                                 bool* is_zero) {
  bool ok = true;
  bool zero = true;
  lm_spin_lock(&segment->lock);
  purge_mask_clear(segs, segment, idx, n);
  if (!mask_any(&segment->purge_mask)) segment->purge_expire = 0;
  size_t end = idx + n;
  for (size_t start, i = idx; (start = mask_next(&segment->commit_mask, i, end, false)) < end;) {
    i = mask_next(&segment->commit_mask, start, end, true);
    bool run_zero = false;
    if (!lm_os_commit(segs->arenas, slice_address(segment, start), (i - start) * LM_SLICE_SIZE,
                      &run_zero)) {
      ok = false;
      break;
    }
    mask_set(&segment->commit_mask, start, i - start, true);
    mask_set(&segment->guard_mask, start, i - start, false); /* commit made them accessible */
    /* Recommitted memory is not dirty unless the backend says so. */
    if (run_zero) mask_set(&segment->dirty_mask, start, i - start, false);
  }
  /* Slices purged but kept committed go through the backend's reuse step (macOS). */
  for (size_t start, i = idx;
       ok && (start = mask_next(&segment->reuse_mask, i, end, true)) < end;) {
    i = mask_next(&segment->reuse_mask, start, end, false);
    lm_os_reuse(segs->arenas, slice_address(segment, start), (i - start) * LM_SLICE_SIZE);
    mask_set(&segment->reuse_mask, start, i - start, false);
  }
  if (mask_count(&segment->dirty_mask, idx, n) > 0) zero = false;
  if (ok) mask_set(&segment->dirty_mask, idx, n, true);
  lm_spin_unlock(&segment->lock);
  *is_zero = ok && zero;
  return ok;
}

/* Free slices [idx, idx+n) will be purged after the delay (or now). The memory of a large
 * block (over 512 KiB) waits as long as arena memory does (purge_delay x arena_purge_mult):
 * such blocks come and go in bursts of a few per second where small pages come and go by
 * thousands, and one purged too early is faulted in again page by page (bench large: 63k ->
 * 50k faults, 128 -> 96 ms, the same peak). The deadline is the segment's, so it holds back
 * the purge of the small pages freed beside it as well. */
/* Each free while a purge waits pushes it back a little (purge_extend_delay), so a busy burst
 * does not give back what it takes again at once; but at most to this many purge delays after
 * the first free, or a program that frees pages more often than once per extend delay never
 * purges at all: a 30-second soak whose live set fell from 96 to 12 MiB kept 110-150 MiB
 * resident through every trough (tests/torture/torture_soak.c). Two, not more: the pass spares
 * what was freed since its deadline was set (segment_purge_now), so a short deadline no longer
 * purges a busy thread's memory under it; at 50 delays the free pages of bench threadchurn,
 * whose threads free pages every few microseconds, could stay resident up to half a second
 * (12-25 MiB of its 55 MiB peak were free pages waiting). */
#define PURGE_EXTEND_LIMIT 2

static void segment_schedule_purge(lm_segments_tld_t* tld, lm_segment_t* segment, size_t idx,
                                   size_t n, bool large_block) {
  lm_segments_t* segs = tld->shared;
  int64_t delay = segs->config.purge_delay_ms;
  int64_t mult = segs->arenas->config.arena_purge_mult;
  if (large_block && delay > 0 && mult > 1) delay *= mult;
  delay = lm_arenas_purge_delay(segs->arenas, delay); /* none while memory is short */
  if (delay < 0 || !segs->arenas->caps.has_decommit || segment->memid.is_pinned) return;
  lm_spin_lock(&segment->lock);
  if (delay == 0) {
    purge_mask_set_committed(segs, segment, idx, n, false);
    segment_purge_now(segs, segment, 0, true);
    lm_spin_unlock(&segment->lock);
    return;
  }
  int64_t now = lm_os_clock(segs->arenas);
  /* A deadline set for these slices purges them; one that runs already, set for slices freed
   * earlier, spares them (they wait for the pass after). */
  bool renew = segment->purge_expire == 0 || (large_block && segment->purge_expire < now + delay);
  purge_mask_set_committed(segs, segment, idx, n, !renew);
  if (renew) {
    if (segment->purge_expire == 0) segment->purge_latest = now + PURGE_EXTEND_LIMIT * delay;
    segment->purge_expire = now + delay;
    if (segment->purge_latest < segment->purge_expire) segment->purge_latest = segment->purge_expire;
  } else if (segment->purge_expire > now) {
    int64_t later = segment->purge_expire + segs->config.purge_extend_ms;
    segment->purge_expire = later < segment->purge_latest ? later : segment->purge_latest;
  }
  bool wake = false;
  if (!segment->purge_flagged &&
      lm_arena_flag_set(segs->arenas, segment, LM_BLOCK_PURGE_PENDING)) {
    segment->purge_flagged = true;
    wake = true;
  }
  /* Segments outside arenas (or without a purger) are purged by their owner as time passes. */
  if (!segment->purge_flagged) segment_try_purge_locked(segs, segment, now, false);
  lm_spin_unlock(&segment->lock);
  if (wake) lm_arenas_wake_purger(segs->arenas);
}

void lm_segment_collect(lm_segments_tld_t* tld, lm_segment_t* segment, bool force) {
  lm_segments_t* segs = tld->shared;
  lm_spin_lock(&segment->lock);
  segment_try_purge_locked(segs, segment, lm_os_clock(segs->arenas), force);
  lm_spin_unlock(&segment->lock);
}

/* The purger may be looking at this segment: unflag it and wait until it is done, so the
 * segment's memory can be handed back. Spins only while the purger holds BUSY (a purge). */
static void segment_unflag_purge(lm_segments_t* segs, lm_segment_t* segment) {
  lm_spin_lock(&segment->lock);
  bool flagged = segment->purge_flagged;
  if (flagged) lm_arena_flag_clear(segs->arenas, segment, LM_BLOCK_PURGE_PENDING);
  segment->purge_flagged = false;
  lm_spin_unlock(&segment->lock);
  if (!flagged) return;
  while (lm_arena_flag_is_set(segs->arenas, segment, LM_BLOCK_PURGER_BUSY)) lm_cpu_relax();
}

bool lm_segment_purge_is_flagged(lm_segment_t* segment) {
  lm_spin_lock(&segment->lock);
  bool flagged = segment->purge_flagged;
  lm_spin_unlock(&segment->lock);
  return flagged;
}

/* Visit a segment flagged PURGE_PENDING, with the handshake (the owner waits for BUSY before
 * freeing it): purge what is due (all with `force`). Returns the deadline left (0: none, the
 * flag is off); adds the purged slices that lay below touched_end (resident, unless purged
 * before) to `*resident` unless it is NULL. */
static int64_t flagged_segment_purge(lm_segments_t* segs, void* block, int64_t now, bool force,
                                     size_t* resident) {
  lm_arenas_t* arenas = segs->arenas;
  int64_t due = 0;
  lm_arena_flag_set(arenas, block, LM_BLOCK_PURGER_BUSY);
  if (lm_arena_flag_clear(arenas, block, LM_BLOCK_PURGE_PENDING)) {
    lm_segment_t* segment = (lm_segment_t*)block;
    due = now + 1;
    if (lm_spin_try_lock(&segment->lock)) {
      size_t below = 0;
      if (resident != NULL) {
        size_t touched = lm_min(lm_load_relaxed(&segment->touched_end), LM_SLICES_PER_SEGMENT);
        below = mask_count(&segment->purge_mask, 0, touched);
      }
      due = segment_try_purge_locked(segs, segment, now, force);
      if (due == 0) {
        segment->purge_flagged = false;
        if (resident != NULL) *resident += below;
      }
      lm_spin_unlock(&segment->lock);
    }
    if (due != 0) lm_arena_flag_set(arenas, block, LM_BLOCK_PURGE_PENDING);
  }
  lm_arena_flag_clear(arenas, block, LM_BLOCK_PURGER_BUSY);
  return due;
}

int64_t lm_segments_purge_flagged(lm_segments_t* segs, int64_t now, bool force) {
  int64_t next = 0;
  lm_arena_cursor_t cursor = LM_ARENA_CURSOR_START;
  void* block;
  while ((block = lm_arena_flag_find_next(segs->arenas, LM_BLOCK_PURGE_PENDING, &cursor)) !=
         NULL) {
    int64_t due = flagged_segment_purge(segs, block, now, force, NULL);
    if (due != 0 && (next == 0 || due < next)) next = due;
  }
  return next;
}

void lm_segments_offset_growth(lm_segments_t* segs) {
  if (atomic_load_explicit(&segs->growth_debt, memory_order_relaxed) < LM_GROWTH_OFFSET_STEP) {
    return;
  }
  int64_t debt = atomic_exchange_explicit(&segs->growth_debt, 0, memory_order_relaxed);
  lm_thread_id_t grower = atomic_load_explicit(&segs->growth_thread, memory_order_relaxed);
  int64_t now = lm_os_clock(segs->arenas);
  size_t resident = 0;
  lm_arena_cursor_t cursor = LM_ARENA_CURSOR_START;
  void* block;
  while ((int64_t)(resident * LM_SLICE_SIZE) < debt &&
         (block = lm_arena_flag_find_next(segs->arenas, LM_BLOCK_PURGE_PENDING, &cursor)) !=
             NULL) {
    lm_segment_t* segment = (lm_segment_t*)block;
    if (atomic_load_explicit(&segment->thread_id, memory_order_relaxed) == grower) continue;
    flagged_segment_purge(segs, block, now, true, &resident);
  }
  /* Whole segments freed by other threads: the grower spread into its own free tail rather
   * than take one, and its growth shows they are not needed now. All of them: only the
   * debt's worth (one block at the most, the oldest) left bench exchange's peak at 74 MiB even
   * with 4 MiB steps, where all of them give 69 (81 without the offset; medians of 9 runs). */
  lm_arenas_purge_early(segs->arenas, grower);
}

/* ---- the map of OS-allocated segments ------------------------------------------------------ */
#define MAP_BITS ((size_t)1 << (LM_ADDRESS_BITS - LM_SEGMENT_SHIFT))

static _Atomic(uint64_t)* segment_map(lm_segments_t* segs, bool create) {
  _Atomic(uint64_t)* map = atomic_load_explicit(&segs->map, memory_order_acquire);
  if (map != NULL || !create) return map;
  lm_spin_lock(&segs->map_lock);
  map = atomic_load_explicit(&segs->map, memory_order_acquire);
  if (map == NULL) {
    size_t bytes = MAP_BITS / 8;
    map = lm_os_alloc(segs->arenas, bytes, true, &segs->map_memid);
    if (map != NULL && !segs->map_memid.initially_zero) memset((void*)map, 0, bytes);
    atomic_store_explicit(&segs->map, map, memory_order_release);
  }
  lm_spin_unlock(&segs->map_lock);
  return map;
}

/* Record (or forget) an OS-allocated segment; false if the map could not be had. */
static bool segment_map_set(lm_segments_t* segs, lm_segment_t* segment, bool on) {
  if (segment->memid.kind != LM_MEM_OS) return true;
  _Atomic(uint64_t)* map = segment_map(segs, on);
  if (map == NULL) return !on;
  size_t first = (uintptr_t)segment >> LM_SEGMENT_SHIFT;
  size_t count = lm_divide_up(segment->segment_size, LM_SEGMENT_SIZE);
  for (size_t i = first; i < first + count && i < MAP_BITS; i++) {
    uint64_t bit = (uint64_t)1 << (i % 64);
    if (on) atomic_fetch_or_explicit(&map[i / 64], bit, memory_order_release);
    else atomic_fetch_and_explicit(&map[i / 64], ~bit, memory_order_release);
  }
  return true;
}

void lm_segments_done(lm_segments_t* segs) {
  _Atomic(uint64_t)* map = atomic_exchange(&segs->map, NULL);
  if (map != NULL) lm_os_free(segs->arenas, (void*)map, MAP_BITS / 8, &segs->map_memid);
}

bool lm_segment_map_contains(lm_segments_t* segs, const void* p) {
  _Atomic(uint64_t)* map = segment_map(segs, false);
  size_t i = (uintptr_t)p >> LM_SEGMENT_SHIFT;
  if (map == NULL || i >= MAP_BITS) return false;
  return (atomic_load_explicit(&map[i / 64], memory_order_acquire) >> (i % 64)) & 1;
}

/* ---- guard pages (secure builds) ------------------------------------------------------------ */

/* Guard pages stay protected while their slice is free, so a page made again over the same
 * slices (the common case) costs no system call; only guards that end up inside a bigger page
 * are lifted. */
static uint8_t* slice_guard(lm_segment_t* segment, size_t slice) {
  return (uint8_t*)segment + (slice + 1) * LM_SLICE_SIZE - segment->guard_size;
}

static void page_guard(lm_segments_t* segs, lm_segment_t* segment, lm_page_t* page) {
  size_t idx = (size_t)(page - segment->slices);
  if (page->is_huge) {
    size_t size;
    uint8_t* area = lm_page_area(page, &size);
    page->has_guard = lm_os_protect(segs->arenas, area + size - segment->guard_size,
                                    segment->guard_size, true);
    return;
  }
  size_t last = idx + page->slice_count - 1;
  lm_spin_lock(&segment->lock);
  for (size_t i = idx; i < last; i++) {
    if (mask_get(&segment->guard_mask, i) &&
        lm_os_protect(segs->arenas, slice_guard(segment, i), segment->guard_size, false)) {
      mask_set(&segment->guard_mask, i, 1, false);
    }
  }
  if (!mask_get(&segment->guard_mask, last) &&
      lm_os_protect(segs->arenas, slice_guard(segment, last), segment->guard_size, true)) {
    mask_set(&segment->guard_mask, last, 1, true);
  }
  /* Without it (the OS refused: too many mappings, say) the page still works, unguarded. */
  page->has_guard = mask_get(&segment->guard_mask, last);
  lm_spin_unlock(&segment->lock);
}

/* Lift every guard (the segment goes back to its arena, which may hand it out differently). */
static void segment_unguard(lm_segments_t* segs, lm_segment_t* segment) {
  size_t end = LM_SLICES_PER_SEGMENT;
  for (size_t i = 0; (i = mask_next(&segment->guard_mask, i, end, true)) < end; i++) {
    lm_os_protect(segs->arenas, slice_guard(segment, i), segment->guard_size, false);
  }
  memset(&segment->guard_mask, 0, sizeof(segment->guard_mask));
}

/* ---- segment allocation -------------------------------------------------------------------- */

/* Large pages may be asked for in this segment at all: they are on (large_pages_from), its
 * memory is not on large pages already, and it has no guard pages (each would split one). */
static bool segment_may_advise_large(const lm_segments_t* segs, const lm_segment_t* segment) {
  return segs->config.large_pages_from != 0 && !segment->memid.is_large &&
         segment->guard_size == 0;
}

static size_t segment_info_slices(void) {
  return lm_divide_up(sizeof(lm_segment_t), LM_SLICE_SIZE);
}

/* `outgrown`: the thread had no room left for a small or medium page in the segments it owns. */
static lm_segment_t* segment_alloc(lm_segments_tld_t* tld, size_t required, size_t page_alignment,
                                   int arena_id, bool outgrown, lm_page_t** huge_page) {
  lm_segments_t* segs = tld->shared;
  size_t info_slices = segment_info_slices();
  size_t info_size = info_slices * LM_SLICE_SIZE;
  bool huge = required > 0;
  size_t size = LM_SEGMENT_SIZE;
  size_t align = LM_SEGMENT_SIZE;
  size_t offset = 0;
  if (huge) {
    if (page_alignment > LM_BLOCK_ALIGNMENT_MAX) {
      /* Place the block exactly one segment past the header, at an aligned address; lookups
       * mask (p - 1), which still lands on this header. */
      align = page_alignment;
      offset = LM_SEGMENT_SIZE;
      size = lm_align_up(LM_SEGMENT_SIZE + required, LM_SLICE_SIZE);
    } else {
      size = lm_align_up(info_size + required, LM_SLICE_SIZE);
    }
    if (size < required) return NULL; /* overflow */
  }
  /* A thread's first segments are committed page by page: a short-lived thread then never
   * commits a whole segment (this matters where arenas are not committed up front). */
  bool commit = huge || (segs->config.eager_commit && tld->eager_delay == 0);
  if (!huge && tld->eager_delay > 0) tld->eager_delay--;
  lm_memid_t memid;
  uint8_t* start = lm_arena_alloc(segs->arenas, size, align, offset, commit, arena_id, &memid);
  if (start == NULL) return NULL;
  lm_segment_t* segment = (lm_segment_t*)start;
  /* A segment that a thread needs because its others are full of small and medium pages is on
   * large pages from its start (see below). Ask before the header is written: its first touch
   * would map ordinary pages for the whole first chunk (burst 3 500000: 4.2k -> 3.2k faults). */
  size_t advised = 0;
  if (outgrown && !huge && segs->config.large_pages_from != 0 && !memid.is_large &&
      !segs->config.guard_pages && memid.initially_committed) {
    size_t chunk = segs->arenas->caps.large_page_size;
    if (chunk > 0 && chunk <= size && lm_os_advise_large(segs->arenas, start, chunk, true)) {
      advised = chunk;
    }
  }
  if (!memid.initially_committed) {
    bool is_zero = false;
    if (!lm_os_commit(segs->arenas, start, info_size, &is_zero)) {
      lm_arena_free(segs->arenas, start, size, &memid);
      return NULL;
    }
    if (!is_zero) memid.initially_zero = false;
  }
  size_t slices = huge ? lm_min(size / LM_SLICE_SIZE, LM_SLICES_PER_SEGMENT) : LM_SLICES_PER_SEGMENT;
  /* A block claimed back before its purge still holds what its last segment touched (its
   * header says how far; a value out of range is ignored). */
  size_t touched = info_slices;
  size_t last_touched = memid.was_pending && !huge ? lm_load_relaxed(&segment->touched_end) : 0;
  if (last_touched <= LM_SLICES_PER_SEGMENT) touched = lm_max(touched, last_touched);
  /* Only the header and the descriptors in use need clearing (the sentinel included). */
  if (!memid.initially_zero) {
    memset(segment, 0, offsetof(lm_segment_t, slices) + (slices + 1) * sizeof(lm_page_t));
  }
  /* The counters and purge state are set explicitly even on zeroed memory: they must never
   * depend on what the OS (or an earlier segment) left there. */
  segment->used = 0;
  segment->abandoned = 0;
  segment->abandoned_visits = 0;
  segment->abandoned_next = NULL;
  segment->purge_flagged = false;
  segment->purge_expire = 0;
  lm_store_relaxed(&segment->touched_end, touched);
  memset(&segment->purge_mask, 0, sizeof(segment->purge_mask));
  memset(&segment->young_mask, 0, sizeof(segment->young_mask));
  memset(&segment->guard_mask, 0, sizeof(segment->guard_mask));
  memset(&segment->reuse_mask, 0, sizeof(segment->reuse_mask)); /* the arena's claim reused it */
  segment->memid = memid;
  segment->segment_size = size;
  segment->segment_slices = slices;
  segment->info_slices = info_slices;
  segment->kind = huge ? LM_SEGMENT_HUGE : LM_SEGMENT_NORMAL;
  segment->cookie = (uintptr_t)segment ^ segs->cookie_key;
  segment->guard_size = 0;
  if (segs->config.guard_pages) {
    /* Guard the rest of the header's slices: nothing below the first page is accessible. */
    size_t page_size = lm_os_page_size(segs->arenas);
    size_t used = lm_align_up(offsetof(lm_segment_t, slices) + (slices + 1) * sizeof(lm_page_t),
                              page_size);
    if (used < info_size) lm_os_protect(segs->arenas, start + used, info_size - used, true);
    segment->guard_size = page_size;
  }
  atomic_store_explicit(&segment->thread_id, lm_thread_id(), memory_order_release);
  lm_spinlock_t unlocked = {0};
  segment->lock = unlocked;
  if (memid.initially_committed) mask_set(&segment->commit_mask, 0, LM_SLICES_PER_SEGMENT, true);
  else mask_set(&segment->commit_mask, 0, info_slices, true);
  if (!memid.initially_zero) mask_set(&segment->dirty_mask, 0, LM_SLICES_PER_SEGMENT, true);
  mask_set(&segment->dirty_mask, 0, info_slices, true);
  if (!segment_map_set(segs, segment, true)) {
    lm_arena_free(segs->arenas, start, size, &memid);
    return NULL;
  }
  /* Large pages only past config.large_pages_from (see segment_advise_large), or from the
   * start in a segment that a thread needs because its others are full of small and medium
   * pages (its heap is large already: bench burst 84 -> 69 ms); huge segments only once the
   * core says how the block will be used (lm_segment_huge_advise_large); never memory already
   * on large pages, or segments with guard pages (each guard would split a large page). */
  size_t from = segs->config.large_pages_from;
  if (huge || !segment_may_advise_large(segs, segment)) from = size;
  else if (outgrown) from = 0;
  segment->large_from = from;
  segment->large_end = lm_max(from, advised);
  atomic_fetch_add_explicit(&segs->count, 1, memory_order_relaxed);
  lm_stat_increase(&segs->segment_stats, 1);
  tld->count++;
  if (tld->count > tld->peak_count) tld->peak_count = tld->count;

  if (huge) {
    /* One page over every slice after the header (or from the aligned block on). */
    size_t first = offset > 0 ? LM_SLICES_PER_SEGMENT : info_slices;
    lm_page_t* page = &segment->slices[first];
    page->slice_count = (uint32_t)(slices + (offset > 0 ? 1 : 0) - first);
    page->slice_offset = 0;
    page->is_huge = 1;
    for (size_t i = first + 1; i <= slices; i++) {
      segment->slices[i].slice_offset = (uint32_t)((uint8_t*)&segment->slices[i] - (uint8_t*)page);
      segment->slices[i].slice_count = 0;
      segment->slices[i].block_size = 1;
    }
    *huge_page = page;
  } else {
    lm_span_free(tld, segment, info_slices, slices - info_slices);
  }
  return segment;
}

/* `large_last`: its last page held a large block (its memory waits the arena's longer delay). */
static void segment_free(lm_segments_tld_t* tld, lm_segment_t* segment, bool large_last) {
  lm_segments_t* segs = tld->shared;
  if (segment->kind == LM_SEGMENT_NORMAL) lm_span_remove_all(tld, segment);
  segment_unflag_purge(segs, segment);
  int64_t purge_was_due = segment->purge_expire; /* (the large blocks' longer wait, if any) */
  purge_mask_clear(segs, segment, 0, LM_SLICES_PER_SEGMENT); /* the arena takes it over */
  segment_map_set(segs, segment, false);
  atomic_fetch_sub_explicit(&segs->count, 1, memory_order_relaxed);
  lm_stat_decrease(&segs->segment_stats, 1);
  tld->count--;
  if (segment->guard_size > 0) {
    segment_unguard(segs, segment);
    size_t page_size = segment->guard_size;
    size_t info_size = segment->info_slices * LM_SLICE_SIZE;
    size_t used = lm_align_up(offsetof(lm_segment_t, slices) +
                                  (segment->segment_slices + 1) * sizeof(lm_page_t), page_size);
    if (used < info_size) lm_os_protect(segs->arenas, (uint8_t*)segment + used, info_size - used, false);
  }
  /* The next segment placed here decides afresh. */
  if (segment->large_end > segment->large_from) {
    lm_os_advise_large(segs->arenas, (uint8_t*)segment + segment->large_from,
                       segment->large_end - segment->large_from, false);
  }
  lm_memid_t memid = segment->memid;
  /* Slices purged with a decommit (Windows; Linux in strict modes) are not committed any more:
   * the arena must commit the block again before it hands it out as committed. (It did not:
   * the next segment there took every slice as committed and faulted on the purged ones,
   * tests/api test_random_allocations_keep_their_contents under wine.) */
  if (segment->kind == LM_SEGMENT_NORMAL &&
      !mask_all(&segment->commit_mask, segment->segment_slices)) {
    memid.initially_committed = false;
  }
  segment->cookie = 0; /* a stale pointer into freed memory no longer looks like a segment */
  /* A segment that held pages is worth taking back before its purge (span_prefer_warm). */
  if (segment->kind == LM_SEGMENT_NORMAL && memid.kind == LM_MEM_ARENA &&
      lm_load_relaxed(&segment->touched_end) > segment->info_slices) {
    tld->freed_warm++;
  }
  /* The pages of a normal segment come and go by the thousand: its memory waits the plain
   * purge delay in the arena, not the arena's longer one, made for large blocks that come and
   * go a few at a time (which keep theirs: a large last page, or purge_was_due for one freed
   * before). With the arena's, every segment that short-lived threads emptied stayed resident
   * 100 ms: bench exchange peak 65 -> 58 MiB (medians of 15 runs), page faults 48k -> 38k. */
  if (segment->kind == LM_SEGMENT_NORMAL && !large_last) {
    lm_arena_free_soon(segs->arenas, segment, segment->segment_size, &memid, purge_was_due);
  } else {
    lm_arena_free(segs->arenas, segment, segment->segment_size, &memid);
  }
}

/* ---- pages ------------------------------------------------------------------------------------ */



/* Large pages follow the small and medium pages of a segment: when one is placed past the
 * part already advised, the 2 MiB chunks up to its end are asked to use large pages. Such
 * pages are taken lowest address first and fill their blocks densely, so a chunk costs what
 * 512 ordinary pages would, in one fault and one TLB entry instead of 512 (an alloc-all/
 * free-all loop of small objects: half the faults, 17% less time). Large blocks never ask: a
 * block of a few megabytes is often touched sparsely (a vector's spare capacity, a hash
 * table's unused entries), and a large page would make all of it resident. The advised range
 * is one run that grows upward only, so a segment splits its mapping in three at most. */
static void segment_advise_large(lm_segments_t* segs, lm_segment_t* segment, size_t idx,
                                 size_t slices) {
  size_t end = (idx + slices) * LM_SLICE_SIZE;
  if (end <= segment->large_end) return;
  size_t chunk = segs->arenas->caps.large_page_size;
  if (chunk == 0) return;
  end = lm_min(lm_align_up(end, chunk), segment->segment_size);
  size_t start = segment->large_end;
  if (end <= start) return;
  lm_os_advise_large(segs->arenas, (uint8_t*)segment + start, end - start, true);
  segment->large_end = end; /* also when refused: do not ask again */
}

void lm_segment_huge_advise_large(lm_segments_t* segs, lm_page_t* page) {
  lm_segment_t* segment = lm_segment_of(page);
  size_t chunk = segs->arenas->caps.large_page_size;
  if (!page->is_huge || chunk == 0 || !segment_may_advise_large(segs, segment) ||
      segment->large_end > segment->large_from) {
    return;
  }
  size_t from = lm_align_up((size_t)(page - segment->slices) * LM_SLICE_SIZE, chunk);
  size_t end = segment->segment_size / chunk * chunk;
  if (end <= from) return;
  lm_os_advise_large(segs->arenas, (uint8_t*)segment + from, end - from, true);
  segment->large_from = from; /* segment_free takes the advice back */
  segment->large_end = end;
}

bool lm_segment_discard(lm_segments_t* segs, const lm_page_t* page, void* p, size_t size) {
  const lm_segment_t* segment = lm_segment_of(page);
  if (segment->memid.is_pinned) return true; /* large OS pages cannot be given back */
  return lm_os_discard(segs->arenas, p, size);
}

/* [lo, hi) advised as `on`, less [cut_lo, cut_hi) (a range on each side at most). */
static void advise_except(lm_segments_t* segs, uint8_t* lo, uint8_t* hi, uint8_t* cut_lo,
                          uint8_t* cut_hi, bool on) {
  if (hi <= lo) return;
  if (cut_hi <= cut_lo || cut_hi <= lo || cut_lo >= hi) {
    lm_os_advise_large(segs->arenas, lo, (size_t)(hi - lo), on);
    return;
  }
  if (lo < cut_lo) lm_os_advise_large(segs->arenas, lo, (size_t)(cut_lo - lo), on);
  if (cut_hi < hi) lm_os_advise_large(segs->arenas, cut_hi, (size_t)(hi - cut_hi), on);
}

/* The part of [lo, lo+size) that `segment` advised to use large pages, shifted by `shift`. */
static void advised_part(const lm_segment_t* segment, uint8_t* lo, size_t size, ptrdiff_t shift,
                         uint8_t** from, uint8_t** to) {
  uint8_t* a = (uint8_t*)segment + segment->large_from;
  uint8_t* b = (uint8_t*)segment + segment->large_end;
  if (segment->large_end <= segment->large_from || b <= lo || a >= lo + size) {
    *from = *to = lo + shift;
    return;
  }
  *from = (a > lo ? a : lo) + shift;
  *to = (b < lo + size ? b : lo + size) + shift;
}

size_t lm_segment_move(lm_segments_t* segs, lm_page_t* to, lm_page_t* from, size_t size) {
  const lm_segment_t* dst = lm_segment_of(to);
  const lm_segment_t* src = lm_segment_of(from);
  /* (large OS pages cannot move: the kernel refuses) */
  if (dst->memid.is_pinned || src->memid.is_pinned) return 0;
  uint8_t* to_start = lm_page_area(to, NULL);
  uint8_t* from_start = lm_page_area(from, NULL);
  size_t moved = lm_os_move(segs->arenas, to_start, from_start, size);
  if (moved == 0 || segs->config.large_pages_from == 0) return moved;
  /* The memory came with its source's advice (a mapping's property, which a move takes
   * along): where the two segments disagree, set the destination's, so that its free takes
   * back exactly what it asked for and later pages there get the pages it meant them to. */
  uint8_t *want_lo, *want_hi, *came_lo, *came_hi;
  advised_part(dst, to_start, moved, 0, &want_lo, &want_hi);
  advised_part(src, from_start, moved, to_start - from_start, &came_lo, &came_hi);
  advise_except(segs, want_lo, want_hi, came_lo, came_hi, true);
  advise_except(segs, came_lo, came_hi, want_lo, want_hi, false);
  return moved;
}

/* A page takes `slices` never touched before. While free memory waits for its purge, count
 * them towards the next early purge (lm_segments_offset_growth) and wake the purger each
 * LM_GROWTH_OFFSET_STEP: threads spreading into fresh memory while memory that threads before
 * them freed stayed resident made short-lived threads' programs peak at 1.6x the memory of
 * the best other allocator (bench exchange). Pages reusing purged slices below touched_end
 * do not count: an early purge never causes another. */
static void note_growth(lm_segments_t* segs, size_t slices) {
  if (atomic_load_explicit(&segs->purge_pending, memory_order_relaxed) <= 0 &&
      lm_arenas_purge_deadline(segs->arenas) == 0) {
    return;
  }
  int64_t add = (int64_t)(slices * LM_SLICE_SIZE);
  int64_t debt = atomic_fetch_add_explicit(&segs->growth_debt, add, memory_order_relaxed) + add;
  if (debt >= LM_GROWTH_OFFSET_STEP && debt - add < LM_GROWTH_OFFSET_STEP) {
    atomic_store_explicit(&segs->growth_thread, lm_thread_id(), memory_order_relaxed);
    lm_arenas_wake_purger(segs->arenas);
  }
}

static lm_page_t* page_init_common(lm_segments_tld_t* tld, lm_segment_t* segment, lm_page_t* page,
                                   size_t block_size) {
  size_t idx = (size_t)(page - segment->slices);
  bool is_zero = segment->memid.initially_zero;
  /* Huge segments are committed whole when allocated. */
  if (!page->is_huge && !segment_commit_range(tld->shared, segment, idx, page->slice_count,
                                              &is_zero)) {
    return NULL;
  }
  if (block_size <= LM_MEDIUM_OBJ_SIZE_MAX && segment->large_end < segment->segment_size) {
    segment_advise_large(tld->shared, segment, idx, page->slice_count);
  }
  size_t end = idx + page->slice_count;
  size_t touched = lm_load_relaxed(&segment->touched_end);
  if (end > touched) {
    if (!page->is_huge) note_growth(tld->shared, end - lm_max(idx, touched));
    lm_store_relaxed(&segment->touched_end, end);
  }
  page->is_committed = 1;
  page->is_zero_init = is_zero;
  page->has_guard = 0;
  if (segment->guard_size > 0) page_guard(tld->shared, segment, page);
  page->block_size = block_size;
  segment->used++;
  lm_stat_increase(&tld->shared->page_stats, 1);
  return page;
}

/* Does the span at `idx` start in memory that is resident: below the segment's touched end
 * and not decommitted since (a purge still pending leaves it resident)? */
static bool segment_span_resident(lm_segment_t* segment, size_t idx) {
  if (idx >= lm_load_relaxed(&segment->touched_end)) return false;
  lm_spin_lock(&segment->lock); /* the purger changes the masks */
  bool resident = mask_get(&segment->commit_mask, idx);
  lm_spin_unlock(&segment->lock);
  return resident;
}

/* The span found for a new page lies in memory that is not resident (a segment's untouched
 * tail, or purged) while a whole segment this thread emptied waits in an arena, still
 * resident, for its purge: take that one instead. A thread that frees everything and allocates
 * again then reuses the memory it had, where it used to spread into the untouched tail of the
 * segment it kept while the segments it had emptied were purged (burst 2 1000000 42 forward
 * 32-96: peak 99.7 -> 83 MiB, the first round's). */
static lm_page_t* span_prefer_warm(lm_segments_tld_t* tld, lm_page_t* span, size_t slices,
                                   int arena_id) {
  lm_segment_t* segment = lm_segment_of(span);
  size_t idx = (size_t)(span - segment->slices);
  if (tld->freed_warm == 0 || segment_span_resident(segment, idx) ||
      lm_arenas_purge_pending(tld->shared->arenas) == 0) {
    return span;
  }
  tld->freed_warm--; /* taken or not, this try used it up: no retry on every page */
  lm_page_t* unused = NULL;
  lm_segment_t* warm = segment_alloc(tld, 0, 0, arena_id, false, &unused);
  if (warm == NULL) return span;
  if (warm->memid.was_pending) {
    lm_page_t* page = lm_span_alloc_in(tld, warm, slices);
    if (page != NULL) {
      lm_span_free_coalesce(tld, segment, idx, slices); /* the cold span goes back */
      return page;
    }
  }
  /* A cold block after all (another thread took the warm one), or no room in it: given back
   * unused, it is not a segment this thread emptied (segment_free would count it as one). */
  size_t left = tld->freed_warm;
  segment_free(tld, warm, false);
  tld->freed_warm = left;
  return span;
}

lm_page_t* lm_segment_page_alloc(lm_segments_tld_t* tld, size_t block_size,
                                 size_t page_alignment, int arena_id) {
  /* Room for the guard page after a single-block page (small and medium pages just hold a few
   * blocks less). */
  size_t guard = tld->shared->config.guard_pages ? lm_os_page_size(tld->shared->arenas) : 0;
  if (block_size > LM_LARGE_OBJ_SIZE_MAX || page_alignment > LM_BLOCK_ALIGNMENT_MAX) {
    lm_page_t* page = NULL;
    lm_segment_t* segment =
        segment_alloc(tld, lm_max(block_size, 1) + guard, page_alignment, arena_id, false, &page);
    if (segment == NULL) return NULL;
    if (page_init_common(tld, segment, page, block_size) == NULL) {
      segment_free(tld, segment, false);
      return NULL;
    }
    return page;
  }
  size_t slices = lm_segment_page_slices(block_size > LM_MEDIUM_OBJ_SIZE_MAX ? block_size + guard
                                                                          : block_size);
  lm_page_t* page = lm_span_alloc(tld, slices, arena_id);
  if (page != NULL && arena_id <= 0) page = span_prefer_warm(tld, page, slices, arena_id);
  if (page == NULL) {
    lm_page_t* unused = NULL;
    bool outgrown = block_size <= LM_MEDIUM_OBJ_SIZE_MAX && tld->count > 0;
    lm_segment_t* segment = segment_alloc(tld, 0, 0, arena_id, outgrown, &unused);
    if (segment == NULL) return NULL;
    page = lm_span_alloc(tld, slices, arena_id);
    if (page == NULL) return NULL;
  }
  lm_segment_t* segment = lm_segment_of(page);
  if (page_init_common(tld, segment, page, block_size) == NULL) {
    size_t idx = (size_t)(page - segment->slices);
    lm_span_free_coalesce(tld, segment, idx, page->slice_count);
    if (segment->used == 0) segment_free(tld, segment, false);
    return NULL;
  }
  return page;
}

bool lm_segment_page_resize(lm_segments_tld_t* tld, lm_page_t* page, size_t slices) {
  lm_segment_t* segment = lm_segment_of(page);
  size_t idx = (size_t)(page - segment->slices);
  size_t n = page->slice_count;
  if (page->is_huge || segment->kind != LM_SEGMENT_NORMAL || slices == 0) return false;
  if (slices == n) return true;
  if (slices > n) {
    if (!lm_span_resize(tld, segment, page, slices)) return false;
    bool is_zero;
    if (!segment_commit_range(tld->shared, segment, idx + n, slices - n, &is_zero)) {
      lm_span_resize(tld, segment, page, n);
      return false;
    }
  } else {
    lm_span_resize(tld, segment, page, slices);
    lm_page_t* tail = &segment->slices[idx + slices];
    segment_schedule_purge(tld, segment, idx + slices, tail->slice_count, true);
  }
  if (segment->guard_size > 0) page_guard(tld->shared, segment, page);
  return true;
}

static void page_unguard(lm_segments_tld_t* tld, lm_page_t* page) {
  if (!page->has_guard) return;
  if (page->is_huge) { /* huge segments go back whole: lift the guard now */
    lm_segment_t* segment = lm_segment_of(page);
    size_t size;
    uint8_t* area = lm_page_area(page, &size);
    lm_os_protect(tld->shared->arenas, area + size, segment->guard_size, false);
  }
  page->has_guard = 0; /* a normal page's guard stays with its slice (guard_mask) */
}

bool lm_segment_page_free(lm_page_t* page, lm_segments_tld_t* tld) {
  lm_segment_t* segment = lm_segment_of(page);
  lm_assert(segment->used > 0);
  page_unguard(tld, page);
  segment->used--;
  lm_stat_decrease(&tld->shared->page_stats, 1);
  if (segment->kind == LM_SEGMENT_HUGE) {
    segment_free(tld, segment, true);
    return true;
  }
  size_t idx = (size_t)(page - segment->slices);
  size_t n = page->slice_count;
  bool large = n > LM_MEDIUM_PAGE_SIZE / LM_SLICE_SIZE;
  uint8_t tag = page->heap_tag;
  /* Clear the core's fields; the span code rewrites the slice fields. */
  *page = (lm_page_t){.slice_count = (uint32_t)n, .heap_tag = tag};
  lm_page_t* span = lm_span_free_coalesce(tld, segment, idx, n);
  if (segment->used == 0) {
    segment_free(tld, segment, large);
    return true;
  }
  size_t span_idx = (size_t)(span - segment->slices);
  segment_schedule_purge(tld, segment, span_idx, span->slice_count, large);
  return false;
}

/* ---- iteration ------------------------------------------------------------------------------- */

/* ---- invariants (debug level 3) ---------------------------------------------------------------- */

bool lm_segment_check(lm_segments_t* segs, lm_segment_t* segment) {
  lm_check(lm_segment_is_valid(segs, segment));
  lm_check(segment->abandoned <= segment->used);
  lm_spin_lock(&segment->lock);
  bool masks_ok = true;
  for (size_t f = 0; f < LM_COMMIT_MASK_FIELDS; f++) {
    /* purge bits are a subset of commit bits */
    if ((segment->purge_mask.bits[f] & ~segment->commit_mask.bits[f]) != 0) masks_ok = false;
  }
  lm_spin_unlock(&segment->lock);
  lm_check(masks_ok);
  if (segment->kind == LM_SEGMENT_HUGE) return true;
  /* The slices tile [info_slices, segment_slices): runs with back-offsets, pages counted. */
  size_t pages = 0;
  size_t idx = segment->info_slices;
  while (idx < segment->segment_slices) {
    const lm_page_t* run = &segment->slices[idx];
    lm_check(run->slice_count >= 1 && run->slice_offset == 0);
    lm_check(idx + run->slice_count <= segment->segment_slices);
    if (run->block_size != 0) {
      pages++;
      for (size_t i = 1; i < run->slice_count; i++) {
        lm_check(segment->slices[idx + i].slice_offset == i * sizeof(lm_page_t));
      }
    } else if (run->slice_count > 1) {
      const lm_page_t* last = &segment->slices[idx + run->slice_count - 1];
      lm_check(last->slice_offset == (run->slice_count - 1) * sizeof(lm_page_t));
    }
    idx += run->slice_count;
  }
  lm_check(pages == segment->used);
  return true;
}

lm_page_t* lm_segment_next_page(lm_segment_t* segment, lm_page_t* prev) {
  size_t idx;
  if (prev == NULL) {
    idx = segment->info_slices;
    if (segment->kind == LM_SEGMENT_HUGE) {
      /* The single page sits after the header, or one segment in when hugely aligned. */
      lm_page_t* first = &segment->slices[idx];
      if (first->block_size == 0) first = &segment->slices[LM_SLICES_PER_SEGMENT];
      return first->block_size != 0 ? first : NULL;
    }
  } else {
    if (segment->kind == LM_SEGMENT_HUGE) return NULL;
    idx = (size_t)(prev - segment->slices) + prev->slice_count;
  }
  while (idx < segment->segment_slices) {
    lm_page_t* slice = &segment->slices[idx];
    if (slice->block_size != 0) return slice;
    idx += slice->slice_count > 0 ? slice->slice_count : 1;
  }
  return NULL;
}
