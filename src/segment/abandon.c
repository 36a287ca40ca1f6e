/* Abandonment and reclamation of segments.
 *
 * When a thread exits, the core abandons its pages that still hold live blocks. Once every page
 * of a segment is abandoned, the segment itself is: its free spans leave the thread's queues,
 * pending purges run, its owner becomes 0, and it is marked in its arena's ABANDONED bitmap (or,
 * outside arenas, put on a list under a spin lock). Another thread claims it by clearing that
 * bit (or popping the list): exactly one claimer wins, without locks on the arena path.
 */
#include "segment.h"
#include "span.h"

void lm_segment_page_abandon(lm_page_t* page, lm_segments_tld_t* tld) {
  lm_segment_t* segment = lm_segment_of(page);
  segment->abandoned++;
  lm_stat_increase(&tld->shared->pages_abandoned_stats, 1);
  lm_assert(segment->abandoned <= segment->used);
  if (segment->abandoned == segment->used) lm_segment_abandon_again(segment, tld);
}

void lm_segment_abandon_again(lm_segment_t* segment, lm_segments_tld_t* tld) {
  lm_segments_t* segs = tld->shared;
  lm_assert(segment->abandoned == segment->used && segment->used > 0);
  if (segment->kind == LM_SEGMENT_NORMAL) lm_span_remove_all(tld, segment);
  /* Nobody will allocate here for a while: purge the free spans now, or leave them to their
   * delay where the background purger will see to them (segments in arenas). */
  if (segs->config.abandoned_purge || !lm_segment_purge_is_flagged(segment)) {
    lm_segment_collect(tld, segment, true);
  }
  tld->count--;
  atomic_store_explicit(&segment->thread_id, 0, memory_order_release);
  atomic_fetch_add_explicit(&segs->abandoned_count, 1, memory_order_relaxed);
  lm_stat_increase(&segs->abandoned_stats, 1);
  if (!lm_arena_flag_set(segs->arenas, segment, LM_BLOCK_ABANDONED)) {
    lm_spin_lock(&segs->abandoned_os_lock);
    segment->abandoned_next = segs->abandoned_os;
    segs->abandoned_os = segment;
    lm_spin_unlock(&segs->abandoned_os_lock);
  }
}

static lm_segment_t* claim_abandoned(lm_segments_t* segs, lm_arena_cursor_t* cursor) {
  void* block;
  while ((block = lm_arena_flag_find_next(segs->arenas, LM_BLOCK_ABANDONED, cursor)) != NULL) {
    if (lm_arena_flag_clear(segs->arenas, block, LM_BLOCK_ABANDONED)) return block;
  }
  if (segs->abandoned_os == NULL) return NULL; /* racy peek: a miss only delays a reclaim */
  lm_spin_lock(&segs->abandoned_os_lock);
  lm_segment_t* segment = segs->abandoned_os;
  if (segment != NULL) segs->abandoned_os = segment->abandoned_next;
  lm_spin_unlock(&segs->abandoned_os_lock);
  return segment;
}

/* Take over a claimed segment. */
static void segment_take(lm_segments_tld_t* tld, lm_segment_t* segment) {
  lm_segments_t* segs = tld->shared;
  atomic_fetch_sub_explicit(&segs->abandoned_count, 1, memory_order_relaxed);
  lm_stat_decrease(&segs->abandoned_stats, 1);
  segment->abandoned_next = NULL;
  segment->abandoned_visits++;
  atomic_store_explicit(&segment->thread_id, lm_thread_id(), memory_order_release);
  tld->count++;
  if (tld->count > tld->peak_count) tld->peak_count = tld->count;
  tld->reclaim_count++;
  if (segment->kind == LM_SEGMENT_NORMAL) lm_span_queue_all(tld, segment);
}

lm_segment_t* lm_segment_reclaim(lm_segments_tld_t* tld, lm_arena_cursor_t* cursor) {
  lm_segments_t* segs = tld->shared;
  if (atomic_load_explicit(&segs->abandoned_count, memory_order_relaxed) == 0) return NULL;
  lm_segment_t* segment = claim_abandoned(segs, cursor);
  if (segment == NULL) return NULL;
  segment_take(tld, segment);
  return segment;
}

bool lm_segment_reclaim_this(lm_segments_tld_t* tld, lm_segment_t* segment) {
  lm_segments_t* segs = tld->shared;
  bool claimed = false;
  if (lm_arena_flag_is_set(segs->arenas, segment, LM_BLOCK_ABANDONED)) {
    claimed = lm_arena_flag_clear(segs->arenas, segment, LM_BLOCK_ABANDONED);
  } else {
    lm_spin_lock(&segs->abandoned_os_lock);
    for (lm_segment_t** p = &segs->abandoned_os; *p != NULL; p = &(*p)->abandoned_next) {
      if (*p == segment) {
        *p = segment->abandoned_next;
        claimed = true;
        break;
      }
    }
    lm_spin_unlock(&segs->abandoned_os_lock);
  }
  if (claimed) segment_take(tld, segment);
  return claimed;
}

size_t lm_segments_abandoned_count(lm_segments_t* segs) {
  return atomic_load_explicit(&segs->abandoned_count, memory_order_relaxed);
}

bool lm_segment_span_available(lm_segments_tld_t* tld, size_t block_size, int arena_id) {
  if (block_size > LM_LARGE_OBJ_SIZE_MAX) return true; /* huge: always a fresh segment */
  return lm_span_available(tld, lm_segment_page_slices(block_size), arena_id);
}
