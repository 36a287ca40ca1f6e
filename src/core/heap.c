/* Heap slow paths: finding a page with room, fresh pages, retiring empty pages, the delayed
 * list of remote frees into full pages, collection, abandonment at thread exit, and reclaiming
 * abandoned segments. All of it runs on the heap's own thread; what may touch a full page runs
 * between lm_tld_enter and lm_tld_leave (drain.c), which the callers of malloc_generic,
 * free_generic and the heap API take. */
#include "core.h"

/* ---- fresh pages -------------------------------------------------------------------------- */

static lm_page_t* page_fresh(lm_heap_t* heap, lm_page_queue_t* pq, size_t block_size,
                             size_t page_alignment) {
  lm_segments_tld_t* stld = &heap->tld->segments;
  if (!heap->no_reclaim && !lm_segment_span_available(stld, block_size, heap->arena_id)) {
    lm_heap_reclaim(heap, block_size);
    /* A reclaimed page of this size may now be in the queue. */
    if (pq != NULL && pq->first != NULL && block_size <= LM_MEDIUM_OBJ_SIZE_MAX) {
      for (lm_page_t* page = pq->first; page != NULL; page = page->next) {
        lm_page_collect(page, false);
        if (page->free == NULL) lm_page_extend(page);
        if (page->free != NULL) return page;
      }
    }
  }
  lm_purger_tick();
  lm_page_t* page = lm_segment_page_alloc(stld, block_size, page_alignment, heap->arena_id);
  if (page == NULL) return NULL;
  lm_page_init(heap, page, block_size);
  heap->page_count++;
  if (pq == NULL) pq = lm_heap_queue_for(heap, page);
  lm_queue_push(heap, pq, page);
  return page;
}

/* ---- finding a page with a free block ------------------------------------------------------ */

static lm_page_t* queue_find_free(lm_heap_t* heap, lm_page_queue_t* pq, size_t block_size) {
  lm_thread_stats_t* ts = &heap->tld->stats;
  lm_counter_add(&ts->page_searches_count, 1);
  lm_page_t* page = pq->first;
  /* Retired pages age when pages of a size class ran out, not when a class merely has none
   * yet: otherwise each expired page, made again, aged the others, and a program cycling
   * through many sizes re-made a page every few mallocs (fastpath pairs: 531k pages for 2M
   * pairs; a helper thread's stray blocks happened to break the cycle). */
  bool ran_out = page != NULL;
  while (page != NULL) {
    lm_counter_add(&ts->page_searches, 1);
    lm_page_t* next = page->next;
    lm_page_stats_sample(page, ts); /* its free list ran out */
    lm_page_collect(page, false);
    if (page->free == NULL) lm_page_extend(page);
    if (page->free != NULL) {
      page->retire_expire = 0;
      lm_queue_move_to_front(heap, pq, page);
      return page;
    }
    lm_page_to_full(heap, page); /* no room and cannot grow: out of the way */
    if (page->free != NULL) return page; /* a racing remote free made room after all */
    page = next;
  }
  if (ran_out) lm_heap_collect_retired(heap, false);
  return page_fresh(heap, pq, block_size, 0);
}

/* Secure builds vary where the next blocks come from, so that neither a program nor someone
 * grooming its heap can count on the block just freed being handed back, or on staying in the
 * same page: when a page's free list runs out, one time in four the next page of the size
 * class is used instead, and one time in two a page that can still grow hands out fresh blocks
 * before its freed ones. One random draw then; the fast paths are untouched. */
static lm_page_t* secure_pick_page(lm_heap_t* heap, lm_page_queue_t* pq, uint64_t r) {
  lm_page_t* page = pq->first;
  if ((r & 3) == 0 && page->next != NULL) {
    page = page->next;
    lm_queue_move_to_front(heap, pq, page);
  }
  return page;
}

lm_page_t* lm_heap_find_page(lm_heap_t* heap, size_t size, size_t huge_alignment) {
  if (lm_unlikely(size > LM_MEDIUM_OBJ_SIZE_MAX || huge_alignment > 0)) {
    size_t block_size = lm_good_size_large(size > 0 ? size : 1);
    if (block_size < size) return NULL; /* overflow */
    return page_fresh(heap, &heap->pages[LM_BIN_HUGE], block_size, huge_alignment);
  }
  uint8_t bin = lm_bin(size);
  lm_page_queue_t* pq = &heap->pages[bin];
  lm_page_t* page = pq->first;
  if (page != NULL) {
    uint64_t r = 0;
    if (page->free == NULL) { /* (medium sizes come here even when it did not) */
      /* Its free list ran out: the statistics may look at the page. */
      lm_page_stats_sample(page, &heap->tld->stats);
      if (LM_SECURE_SHUFFLE) {
        r = lm_random_next(&heap->random);
        page = secure_pick_page(heap, pq, r);
      }
    }
    if (page->free == NULL) lm_page_collect(page, false); /* (a page with room waits) */
    if (page->free != NULL) {
      if (LM_SECURE_SHUFFLE && (r & 4) != 0) lm_page_extend(page); /* fresh blocks first */
      page->retire_expire = 0;
      return page;
    }
  }
  return queue_find_free(heap, pq, pq->block_size);
}

/* ---- retiring and freeing pages ------------------------------------------------------------ */

void lm_heap_segment_check_abandoned(lm_segments_tld_t* tld, lm_segment_t* segment) {
  /* Every page left belongs to no heap (a deleted heap's, say): let other threads have it. */
  if (segment->used > 0 && segment->used == segment->abandoned) lm_segment_abandon_again(segment, tld);
}

void lm_heap_page_free(lm_heap_t* heap, lm_page_t* page) {
  lm_queue_remove(heap, lm_heap_queue_for(heap, page), page);
  heap->page_count--;
  lm_page_stats_release(page, &heap->tld->stats);
  atomic_store_explicit(&page->xheap, 0, memory_order_relaxed);
  lm_page_flags_update(page, 0, 0xFF);
  lm_track_page_gone(page);
  lm_segment_t* segment = lm_segment_of(page);
  if (!lm_segment_page_free(page, &heap->tld->segments)) {
    lm_heap_segment_check_abandoned(&heap->tld->segments, segment);
  }
  lm_purger_tick();
}

/* Called from the free fast path: the queues change, so not while the drainer walks them. */
void lm_page_retire_slow(lm_page_t* page) {
  lm_heap_t* heap = lm_page_heap(page);
  lm_tld_enter(heap->tld);
  lm_page_queue_t* pq = lm_heap_queue_for(heap, page);
  size_t bin = (size_t)(pq - heap->pages);
  lm_counter_add(&heap->tld->stats.pages_retire, 1);
  /* The only page of its size: keep it a little, an alloc/free cycle would churn it. */
  if (bin < LM_BIN_HUGE && pq->first == page && pq->last == page) {
    page->retire_expire = page->block_size <= LM_SMALL_OBJ_SIZE_MAX ? 16 : 4;
    if (bin < heap->page_retired_min) heap->page_retired_min = bin;
    if (bin > heap->page_retired_max) heap->page_retired_max = bin;
  } else {
    lm_heap_page_free(heap, page);
  }
  lm_tld_leave(heap->tld);
}

void lm_heap_collect_retired(lm_heap_t* heap, bool force) {
  size_t min = LM_BIN_FULL, max = 0;
  for (size_t bin = heap->page_retired_min; bin <= heap->page_retired_max && bin < LM_BIN_HUGE;
       bin++) {
    lm_page_t* page = heap->pages[bin].first;
    if (page == NULL || page->retire_expire == 0) continue;
    if (page->used == 0 && (force || --page->retire_expire == 0)) {
      lm_heap_page_free(heap, page);
      continue;
    }
    if (page->used != 0) {
      page->retire_expire = 0;
      continue;
    }
    if (bin < min) min = bin;
    if (bin > max) max = bin;
  }
  heap->page_retired_min = min;
  heap->page_retired_max = max;
}

/* ---- the delayed list ------------------------------------------------------------------------ */

void lm_heap_delayed_free(lm_heap_t* heap) {
  if (atomic_load_explicit(&heap->thread_delayed_free, memory_order_relaxed) == NULL) return;
  lm_block_t* block = atomic_exchange_explicit(&heap->thread_delayed_free, NULL,
                                               memory_order_acquire);
  while (block != NULL) {
    lm_block_t* next = lm_delayed_next(block);
    lm_page_t* page = lm_segment_page_of(lm_segment_of(block), block);
    /* First wait out a remote free that may still be handing a block of this page over
     * (DELAYED_FREEING): the page may be freed below, under it (TSan, stress_threads). */
    lm_page_set_delayed(page, LM_TF_USE_DELAYED, false);
    /* The page has room: out of the full queue. The block goes where a plain remote free
     * would have put it, onto the page's thread-free list (the next search of its size takes
     * it), not onto its free list: a page every block of which came back from other threads
     * then stays one the drainer may give back while this thread allocates other sizes. */
    uintptr_t waiting = lm_tf_count(lm_page_push_thread_free(page, block));
    lm_page_unfull(heap, page);
    /* Every block it handed out is back: free it now, as a local free of its last block would
     * (a thread that keeps allocating from its other pages would not search this one soon).
     * Without a count on the list (32-bit targets), collect it as before. */
    if (!LM_TF_COUNTED || waiting == page->used) {
      lm_page_collect(page, true);
      if (page->used == 0) lm_page_retire(page);
    }
    block = next;
  }
}

/* ---- collection -------------------------------------------------------------------------------- */

/* Give a page up (its remote frees already push plainly: NEVER_DELAYED). */
static void heap_page_abandon(lm_heap_t* heap, lm_page_t* page) {
  lm_queue_remove(heap, lm_heap_queue_for(heap, page), page);
  heap->page_count--;
  lm_page_stats_move(page, &heap->tld->stats, false);
  /* Frees, even from this thread, now take the remote path (the page has no heap). */
  lm_page_flags_update(page, LM_PAGE_ABANDONED, LM_PAGE_IN_FULL);
  atomic_store_explicit(&page->xheap, 0, memory_order_release);
  /* Remote frees from now on push plainly; the first one wakes the purger. */
  atomic_fetch_or_explicit(&page->xthread_free, LM_TF_NOTIFY, memory_order_release);
  lm_segment_page_abandon(page, &heap->tld->segments);
}

/* Visit every page: collect, free empty ones, and in ABANDON mode give up the rest. Abandoning
 * is a second pass so that no page is freed between two abandonments of one segment: a segment
 * is handed over exactly when its last live page is abandoned. */
static void heap_visit_pages(lm_heap_t* heap, lm_collect_t mode) {
  for (size_t bin = 0; bin < LM_BIN_COUNT; bin++) {
    if (bin == LM_BIN_FULL && mode == LM_COLLECT_NORMAL) continue;
    lm_page_t* page = heap->pages[bin].first;
    while (page != NULL) {
      lm_page_t* next = page->next;
      lm_page_collect(page, mode >= LM_COLLECT_FORCE);
      if (page->used == 0) lm_heap_page_free(heap, page);
      else if (mode == LM_COLLECT_FORCE) {
        lm_segment_collect(&heap->tld->segments, lm_segment_of(page), true);
      }
      page = next;
    }
  }
  if (mode != LM_COLLECT_ABANDON) return;
  /* The thread's figures reach the process before its pages leave: a collector of abandoned
   * pages subtracts from the process figures what this thread added. */
  lm_stats_merge_thread(heap->tld);
  for (size_t bin = 0; bin < LM_BIN_COUNT; bin++) {
    lm_page_queue_t* pq = &heap->pages[bin];
    while (pq->first != NULL) heap_page_abandon(heap, pq->first);
  }
}

static void heap_collect(lm_heap_t* heap, lm_collect_t mode);

void lm_heap_collect(lm_heap_t* heap, lm_collect_t mode) {
  if (!lm_heap_is_initialized(heap)) return;
  lm_tld_t* tld = heap->tld;
  lm_tld_enter(tld);
  heap_collect(heap, mode);
  lm_tld_leave(tld);
}

static void heap_collect(lm_heap_t* heap, lm_collect_t mode) {
  lm_heap_check_drained(heap);
  if (LM_DEBUG >= 3) lm_heap_check_all(heap->tld);
  lm_deferred_free(heap, mode >= LM_COLLECT_FORCE);
  if (mode == LM_COLLECT_ABANDON) {
    /* No more handing blocks to this heap; then finish what is in flight. */
    for (size_t bin = 0; bin < LM_BIN_COUNT; bin++) {
      for (lm_page_t* page = heap->pages[bin].first; page != NULL; page = page->next) {
        lm_page_set_delayed(page, LM_TF_NEVER_DELAYED, false);
      }
    }
  }
  lm_heap_delayed_free(heap);
  lm_heap_collect_retired(heap, mode >= LM_COLLECT_FORCE);
  heap_visit_pages(heap, mode);
  if (mode == LM_COLLECT_FORCE) lm_purge_now(true);
  else lm_purger_tick();
}

/* ---- target_segments_per_thread ------------------------------------------------------------- */

static size_t target_segments(void) {
  long target = lm_option_get(mi_option_target_segments_per_thread);
  return target > 0 ? (size_t)target : 0;
}

/* A thread above its target gives up the segment with the fewest pages in use, so that other
 * threads can take it over (and it takes over none while above the target). */
void lm_heap_shed_segments(lm_heap_t* heap) {
  lm_tld_t* tld = heap->tld;
  size_t target = target_segments();
  if (target == 0 || tld->segments.count <= target) return;
  lm_segment_t* fewest = NULL;
  for (lm_heap_t* h = tld->heaps; h != NULL; h = h->next) {
    for (size_t bin = 0; bin < LM_BIN_COUNT; bin++) {
      for (lm_page_t* page = h->pages[bin].first; page != NULL; page = page->next) {
        lm_segment_t* segment = lm_segment_of(page);
        if (segment->kind == LM_SEGMENT_NORMAL && (fewest == NULL || segment->used < fewest->used)) {
          fewest = segment;
        }
      }
    }
  }
  if (fewest == NULL) return;
  /* No more remote frees to the heaps' delayed lists for these pages; then empty those lists
   * (they may hold blocks of these pages). */
  for (lm_page_t* page = lm_segment_next_page(fewest, NULL); page != NULL;
       page = lm_segment_next_page(fewest, page)) {
    if (lm_page_heap(page) != NULL) lm_page_set_delayed(page, LM_TF_NEVER_DELAYED, false);
  }
  for (lm_heap_t* h = tld->heaps; h != NULL; h = h->next) lm_heap_delayed_free(h);
  lm_stats_merge_thread(tld); /* (as at thread exit: figures first, then the pages leave) */
  /* First free the empty pages, then abandon the rest: the segment changes hands exactly when
   * its last page is abandoned. */
  for (int pass = 0; pass < 2; pass++) {
    lm_page_t* page = lm_segment_next_page(fewest, NULL);
    while (page != NULL) {
      lm_page_t* next = lm_segment_next_page(fewest, page);
      lm_heap_t* owner = lm_page_heap(page);
      if (owner != NULL && pass == 0) {
        lm_page_collect(page, true);
        if (page->used == 0) {
          bool last = fewest->used == 1;
          lm_heap_page_free(owner, page);
          if (last) return;
        }
      } else if (owner != NULL) {
        heap_page_abandon(owner, page);
      }
      page = next;
    }
  }
}

/* ---- reclaiming abandoned segments ---------------------------------------------------------- */

/* Take over the abandoned pages of a reclaimed segment. First every page joins the heap (so the
 * segment is never "all abandoned" half-way), then empty pages are freed; returns false if that
 * freed the segment. */
bool lm_heap_adopt_segment(lm_heap_t* heap, lm_segment_t* segment) {
  for (lm_page_t* page = lm_segment_next_page(segment, NULL); page != NULL;
       page = lm_segment_next_page(segment, page)) {
    if (lm_page_heap(page) != NULL) continue;
    lm_segment_page_unabandon(page, &heap->tld->segments);
    atomic_store_explicit(&page->xheap, (uintptr_t)heap, memory_order_release);
    page->heap_tag = heap->tag;
    lm_page_stats_move(page, &heap->tld->stats, true);
    /* (HAS_ALIGNED stays: interior pointers of aligned blocks must keep the slow free path) */
    lm_page_flags_update(page, 0, LM_PAGE_ABANDONED | LM_PAGE_IN_FULL);
    lm_page_set_delayed(page, LM_TF_NO_DELAYED, true);
    atomic_fetch_and_explicit(&page->xthread_free, ~(uintptr_t)LM_TF_NOTIFY, memory_order_relaxed);
    heap->page_count++;
    lm_queue_push_back(heap, lm_heap_queue_for(heap, page), page);
  }
  lm_page_t* page = lm_segment_next_page(segment, NULL);
  while (page != NULL) {
    lm_page_t* next = lm_segment_next_page(segment, page);
    lm_page_collect(page, false);
    if (page->used == 0) {
      bool last = segment->used == 1;
      lm_heap_page_free(heap, page);
      if (last) return false;
    } else if (page->free == NULL && page->capacity >= page->reserved) {
      lm_page_to_full(heap, page);
    }
    page = next;
  }
  return true;
}

void lm_heap_reclaim(lm_heap_t* heap, size_t block_size) {
  lm_segments_tld_t* stld = &heap->tld->segments;
  size_t target = target_segments();
  if (target > 0 && stld->count >= target) return;
  size_t abandoned = lm_segments_abandoned_count(stld->shared);
  if (abandoned == 0) return;
  size_t tries = lm_max(8, abandoned * stld->shared->config.max_reclaim_percent / 100);
  if (tries > 1024) tries = 1024;
  for (size_t i = 0; i < tries; i++) {
    lm_segment_t* segment = lm_segment_reclaim(stld, &heap->tld->reclaim_cursor);
    if (segment == NULL) {
      heap->tld->reclaim_cursor = LM_ARENA_CURSOR_START;
      return;
    }
    if (!lm_memid_suits(&segment->memid, heap->arena_id)) { /* not ours to use: put it back */
      lm_segment_abandon_again(segment, stld);
      continue;
    }
    lm_heap_adopt_segment(heap, segment);
    if (lm_segment_span_available(stld, block_size, heap->arena_id)) return;
  }
}

/* ---- collecting abandoned segments without adopting them (purger, mi_collect) ------------- */

/* Collect the abandoned pages of a claimed segment, free the empty ones, and abandon the rest
 * again. */
static void abandoned_segment_collect(lm_segments_tld_t* tld, lm_segment_t* segment) {
  lm_page_t* page = lm_segment_next_page(segment, NULL);
  while (page != NULL) {
    lm_page_t* next = lm_segment_next_page(segment, page);
    lm_page_collect(page, true);
    lm_page_stats_fold(page, NULL); /* nobody's page: straight into the process figures */
    if (page->used == 0) {
      lm_page_stats_release(page, NULL);
      lm_segment_page_unabandon(page, tld);
      bool last = segment->used == 1;
      lm_page_flags_update(page, 0, 0xFF);
      lm_track_page_gone(page);
      lm_segment_page_free(page, tld);
      if (last) return;
    } else {
      atomic_fetch_or_explicit(&page->xthread_free, LM_TF_NOTIFY, memory_order_release);
    }
    page = next;
  }
  lm_segment_abandon_again(segment, tld);
}

void lm_abandoned_collect(lm_segments_tld_t* tld, size_t max_visits) {
  size_t count = lm_segments_abandoned_count(tld->shared);
  if (count < max_visits) max_visits = count;
  lm_arena_cursor_t cursor = LM_ARENA_CURSOR_START;
  for (size_t i = 0; i < max_visits; i++) {
    lm_segment_t* segment = lm_segment_reclaim(tld, &cursor);
    if (segment == NULL) break;
    abandoned_segment_collect(tld, segment);
  }
}
