/* Free: the fast path (local, plain page), the local slow path (full or aligned pages), and the
 * remote path (one CAS onto the page's thread-free list, or the delayed-free protocol when the
 * page is full so that its owner notices). */
#include "core.h"

/* A block freed by the page's owner is the next one handed out (last in, first out): a program
 * that frees a temporary and then allocates something that lives on puts the new object in the
 * temporary's place, right beside what it made before, so objects made together stay together.
 * Parking frees on local_free until the free list ran out, as upstream mimalloc does, scattered
 * them instead: CPython's cycle collector, walking 200k dict entries, took 2.5x as long as under
 * glibc or tcmalloc (bench/pydict.py 3 200000: 1.15 s -> 0.60 s with this; glibc 0.76 s).
 * Secure builds keep local_free: a freed block must not come straight back to whoever can
 * reach it next. */
static inline void page_push_free(lm_page_t* page, lm_block_t* block) {
  if (LM_SECURE) {
    lm_block_set_next(page, block, page->local_free);
    page->local_free = block;
  } else {
    lm_block_set_next(page, block, page->free);
    page->free = block; /* (a page whose free list is known zero takes the generic path) */
  }
}

void lm_free_block_local(lm_page_t* page, lm_block_t* block) {
  lm_page_free_dirty(page);
  page_push_free(page, block);
  page->used--;
  if (lm_unlikely(lm_page_flags(page) & LM_PAGE_IN_FULL)) {
    lm_page_unfull(lm_page_heap(page), page);
  }
  if (lm_unlikely(page->used == 0)) lm_page_retire(page);
}

void lm_free_block_remote(lm_page_t* page, lm_block_t* block) {
  /* (read while the block is live: the page cannot be made again under us) */
  size_t half = (size_t)page->reserved / 2;
  uintptr_t tfree = atomic_load_explicit(&page->xthread_free, memory_order_relaxed);
  uintptr_t tfreex;
  bool use_delayed;
  do {
    use_delayed = lm_tf_state(tfree) == LM_TF_USE_DELAYED;
    if (lm_unlikely(use_delayed)) {
      tfreex = (tfree & ~(uintptr_t)LM_TF_STATE_MASK) | LM_TF_DELAYED_FREEING;
    } else {
      lm_block_set_next(page, block, lm_tf_block(tfree));
      tfreex = lm_tf_push(tfree, block); /* the NOTIFY bit is consumed */
    }
  } while (!atomic_compare_exchange_weak_explicit(&page->xthread_free, &tfree, tfreex,
                                                  memory_order_release, memory_order_relaxed));
  if (lm_likely(!use_delayed)) {
    if (lm_unlikely(tfree & LM_TF_NOTIFY)) lm_purger_notify_abandoned();
    /* Half the page or more came back from other threads and waits for its owner: should the
     * owner not allocate in this size for a while, the drainer gives the page back once every
     * block has come (one relaxed load while a look is scheduled already). */
    else if (lm_unlikely(lm_tf_count(tfreex) > half)) lm_purger_notify_delayed();
    return;
  }
  /* The page is full: hand the block to its owner heap so the page is noticed. The heap is
   * stable while we hold DELAYED_FREEING (abandoning waits for it to end). Acquire: it pairs
   * with the release that gave the page its heap, so the heap's tld read below is the one its
   * owner set up (the heap's memory may have been another thread's before). */
  lm_heap_t* heap = (lm_heap_t*)atomic_load_explicit(&page->xheap, memory_order_acquire);
  /* the first block on the heap's delayed list since the owner (or the drainer) looked */
  bool first = false;
  if (heap != NULL) {
    lm_block_t* head = lm_heap_delayed_push(heap, block);
    first = head == NULL || head == atomic_load_explicit(&heap->drain_kept, memory_order_relaxed);
    /* The drainer takes the list over once the owner took no slow path for a purge delay
     * from now: the epoch it compares with (set here, while DELAYED_FREEING keeps the owner's
     * data from going away). */
    if (first) {
      lm_tld_t* tld = heap->tld;
      uint32_t epoch = atomic_load_explicit(&tld->slow_epoch, memory_order_relaxed);
      atomic_store_explicit(&tld->drain_epoch, epoch, memory_order_relaxed);
    }
  }
  tfree = atomic_load_explicit(&page->xthread_free, memory_order_relaxed);
  do {
    tfreex = (tfree & ~(uintptr_t)LM_TF_STATE_MASK) | LM_TF_NO_DELAYED;
    if (heap == NULL) { /* no owner to hand it to: a plain push after all */
      lm_block_set_next(page, block, lm_tf_block(tfree));
      tfreex = (uintptr_t)block | LM_TF_NO_DELAYED;
    }
  } while (!atomic_compare_exchange_weak_explicit(&page->xthread_free, &tfree, tfreex,
                                                  memory_order_release, memory_order_relaxed));
  /* An owner that does not allocate never reads the list: then the drainer will. */
  if (first) lm_purger_notify_delayed();
}

/* abandoned_reclaim_on_free: a free into a segment of an exited thread makes the freeing
 * thread its owner, so the memory is used again at once. */
static bool reclaim_on_free(lm_segment_t* segment) {
  if (lm_option_get(mi_option_abandoned_reclaim_on_free) == 0) return false;
  lm_heap_t* heap = lm_heap_get_default();
  if (!lm_heap_is_initialized(heap) || heap->no_reclaim || heap != heap->tld->heap_backing ||
      lm_segment_owner(segment) != 0 || !lm_memid_suits(&segment->memid, heap->arena_id)) {
    return false;
  }
  lm_tld_enter(heap->tld);
  bool reclaimed = lm_segment_reclaim_this(&heap->tld->segments, segment);
  if (reclaimed) lm_heap_adopt_segment(heap, segment); /* the block's page stays: it is live */
  lm_tld_leave(heap->tld);
  return reclaimed;
}

/* Local free into a full page or one with interior pointers, and every remote free. */
static lm_noinline void free_generic(lm_segment_t* segment, lm_page_t* page, bool is_local,
                                     void* p) {
  uint8_t flags = lm_page_flags(page);
  if ((flags & LM_PAGE_ABANDONED) && reclaim_on_free(segment)) {
    flags = lm_page_flags(page);
    is_local = true;
  }
  /* A page of no heap (its heap was deleted) is freed into like a remote page, even by the
   * thread that owns the segment. */
  if (flags & LM_PAGE_ABANDONED) is_local = false;
  /* A remote free always unaligns: the owner may set HAS_ALIGNED at any moment. */
  lm_block_t* block = !is_local || (flags & LM_PAGE_HAS_ALIGNED) ? lm_page_block_of(page, p)
                                                                 : (lm_block_t*)p;
  (void)segment;
  if (!is_local) {
    lm_free_block_remote(page, block);
    return;
  }
  /* A full page is the drainer's to look at: not at the same time. Only this thread moves a
   * page in or out of the full queue, so the flag read here stays true until the call; the
   * frees of aligned blocks into pages that are not full pay no handshake. */
  if (!(flags & LM_PAGE_IN_FULL)) {
    lm_free_block_local(page, block);
    return;
  }
  lm_tld_t* tld = lm_page_heap(page)->tld;
  lm_tld_enter(tld);
  lm_free_block_local(page, block);
  lm_tld_leave(tld);
}

/* ---- checks of secure and debug builds ---------------------------------------------------- */
#define LM_FREE_CHECKS (LM_SECURE || LM_DEBUG > 0)

/* Decode a link without reporting: these walks may race with the owner handing blocks out
 * (a remote free), so an implausible link only ends the walk. */
static bool peek_next(const lm_page_t* page, const lm_block_t* block, const lm_block_t** next) {
  lm_track_open(block, sizeof(lm_block_t));
  uintptr_t raw = (uintptr_t)block->next;
  lm_track_close(block, sizeof(lm_block_t));
  uintptr_t x = lm_block_decode(page, raw);
  if (x == (uintptr_t)page) x = 0;
  else if (!lm_page_holds(page, (void*)x)) return false;
  *next = (const lm_block_t*)x;
  return true;
}

static bool list_contains(const lm_page_t* page, const lm_block_t* list, const lm_block_t* block) {
  for (size_t n = 0; list != NULL && n <= page->capacity; n++) {
    if (list == block) return true;
    if (!peek_next(page, list, &list)) return false;
  }
  return false;
}

/* Search the page's free lists for the block (the owner's lists only on the owner's thread). */
static lm_noinline bool is_in_free_lists(const lm_page_t* page, const lm_block_t* block,
                                         bool is_local) {
  uintptr_t tfree = atomic_load_explicit(&((lm_page_t*)page)->xthread_free, memory_order_acquire);
  if (list_contains(page, lm_tf_block(tfree), block)) return true;
  return is_local &&
         (list_contains(page, page->free, block) || list_contains(page, page->local_free, block));
}

static lm_noinline void report_invalid(const lm_page_t* page, const void* p, bool interior) {
  if (interior) {
    lm_error(EINVAL, "free of an interior pointer %p (a block of size %zu holds it)", p,
             page->block_size);
  } else {
    lm_error(EINVAL, "free of an invalid pointer %p: not a block of this allocator", p);
  }
}

/* True when the free must not go ahead: reported through the error handler (a secure or
 * debug build stops there unless the program handles it). Inline: the common case is a few
 * loads, one multiply and one decode. */
static inline bool free_is_invalid(const lm_segment_t* segment, const lm_page_t* page,
                                   const void* p) {
  if (lm_unlikely(!lm_segment_is_valid(&lm_process.segments, segment) || page->block_size == 0 ||
                  !lm_page_holds(page, p))) {
    report_invalid(page, p, false);
    return true;
  }
  if (lm_unlikely(!lm_page_is_block_start(page, p))) {
    if (!(lm_page_flags(page) & LM_PAGE_HAS_ALIGNED)) {
      report_invalid(page, p, true);
      return true;
    }
    p = lm_page_block_of(page, p);
  }
  /* A block whose first word decodes to a link of its own page (or to the end of a list)
   * looks free: only then search the lists. Allocation wipes the link, and live data almost
   * never decodes that way (the keys are random), so a normal free pays one decode. */
  const lm_block_t* next;
  if (lm_unlikely(peek_next(page, (const lm_block_t*)p, &next))) {
    bool is_local = lm_thread_id() == lm_segment_owner(segment);
    if (is_in_free_lists(page, (const lm_block_t*)p, is_local)) {
      lm_error(EAGAIN, "double free of block %p (size %zu)", p, page->block_size);
      return true;
    }
  }
  /* (after the double-free test: the slack fill of a freed block is not kept) */
  if (LM_PADDING) {
    if (!lm_padding_ok(page, (const lm_block_t*)p)) return true;
    /* the block below, on the owner's thread only (others may be handing it out) */
    if (page->reserved > 1 && lm_thread_id() == lm_segment_owner(segment)) {
      (void)lm_padding_below_ok(page, (const lm_block_t*)p); /* p itself is sound: free it */
    }
  }
  return false;
}

/* Hardened builds, common case: a valid segment, p the start of a block of a page of this
 * thread with no flags, whose first word does not decode as a link of the page (so it cannot
 * be a free block). Pure computation, no call: the compiler keeps it in scratch registers. */
static inline bool free_checked_fast(const lm_segment_t* segment, const lm_page_t* page,
                                     const void* p) {
  if (!lm_segment_is_valid(&lm_process.segments, segment) || !lm_page_holds(page, p) ||
      lm_page_is_single(page) || !lm_page_is_block_start(page, p) ||
      lm_page_flags(page) != 0 || lm_thread_id() != lm_segment_owner(segment)) {
    return false;
  }
  uintptr_t x = lm_block_decode(page, *(const uintptr_t*)p);
  if (x == (uintptr_t)page || lm_page_holds(page, (const void*)x)) return false;
  /* its padding, and the canary of the block below (a page of several) */
  return !LM_PADDING ||
         (lm_padding_intact(page, p) &&
          ((const uint8_t*)p == page->page_start || !lm_padding_kept_when_free(page) ||
           lm_padding_canary_ok(page, (const uint8_t*)p - page->block_size)));
}

/* Push a block onto its page's local free list (the owner, a page without flags). */
static inline void page_push_local(lm_page_t* page, lm_block_t* block) {
  page_push_free(page, block);
  if (lm_unlikely(--page->used == 0)) lm_page_retire(page);
}

/* Every build's free of a pointer in a segment of ours: the checks of hardened builds, guards,
 * debug fill and tracking, then the local fast case or the generic path. */
static inline void free_ours_any(lm_segment_t* segment, lm_page_t* page, void* p) {
  if (LM_FREE_CHECKS && lm_unlikely(free_is_invalid(segment, page, p))) return;
  if (LM_GUARDED && lm_unlikely(lm_page_flags(page) & LM_PAGE_HAS_ALIGNED)) {
    lm_guarded_unguard(page, p); /* (before any write to the block) */
  }
  if (LM_DEBUG_FILL) {
    lm_block_t* block = lm_page_block_of(page, p);
    lm_stat_decrease(&lm_process.stats.malloc_requested,
                     (int64_t)lm_padding_requested(page, block));
    lm_debug_fill_freed(page, block);
  }
  lm_track_free(LM_TRACK ? lm_page_block_of(page, p) : p, page->block_size);
  bool is_local = lm_thread_id() == lm_segment_owner(segment);
  if (lm_likely(is_local && lm_page_flags(page) == 0)) {
    page_push_local(page, (lm_block_t*)p);
    return;
  }
  free_generic(segment, page, is_local, p);
}

/* Secure builds: what free_checked_fast did not pass takes the whole path, out of line. */
static lm_noinline void free_ours_checked(void* p) {
  lm_segment_t* segment = lm_segment_of(p);
  free_ours_any(segment, lm_segment_page_of(segment, p), p);
}

/* The free path for a segment known to be ours. */
static inline void free_ours(void* p) {
  lm_segment_t* segment = lm_segment_of(p);
  lm_page_t* page = lm_segment_page_of(segment, p);
  if (LM_SECURE && !LM_DEBUG_FILL && !LM_TRACK) {
    if (lm_likely(free_checked_fast(segment, page, p))) page_push_local(page, (lm_block_t*)p);
    else free_ours_checked(p);
    return;
  }
  free_ours_any(segment, page, p);
}

/* Outside the hinted region: NULL, a segment placed elsewhere by the OS, or a pointer this
 * allocator never handed out (memory from before a preload took effect, another allocator's
 * block passed to us). The last kind goes to the next allocator, never into our metadata. */
static lm_noinline void free_outside_region(void* p) {
  if (lm_is_in_heap_region(p)) {
    free_ours(p);
    return;
  }
  if (LM_FREE_CHECKS) {
    /* Hardened builds do not pass unknown pointers on: a stack address or another
     * allocator's block is an error here. */
    lm_error(EINVAL, "free of a pointer that was not allocated here (%p)", p);
    return;
  }
  lm_free_foreign(p);
}

void mi_free(void* p) mi_attr_noexcept {
  /* One subtraction and compare: inside the region every segment header is mapped. */
  if (lm_unlikely(!lm_arenas_region_contains(&lm_process.arenas, p))) {
    /* free(NULL) is common (bench tree: 2.2M of its 5.7M frees): answered here, without the
     * call, on the path that is already out of the way. */
    if (p != NULL) free_outside_region(p);
    return;
  }
  free_ours(p);
}

static size_t usable_size_of(const void* p) {
  if (lm_unlikely(!lm_arenas_region_contains(&lm_process.arenas, p))) {
    if (p == NULL) return 0;
    if (!lm_is_in_heap_region(p)) return lm_foreign_usable_size(p);
  }
  const lm_segment_t* segment = lm_segment_of(p);
  const lm_page_t* page = lm_segment_page_of(segment, p);
  if (LM_GUARDED && lm_unlikely(lm_page_flags(page) & LM_PAGE_HAS_ALIGNED)) {
    size_t guarded = lm_guarded_usable_size(page, p);
    if (guarded > 0) return guarded;
  }
  if (LM_PADDING) { /* exactly what was asked for, from p on */
    const lm_block_t* block = lm_page_block_of(page, p);
    size_t end = lm_padding_requested(page, block);
    size_t offset = (size_t)((const uint8_t*)p - (const uint8_t*)block);
    return end > offset ? end - offset : 0;
  }
  if (lm_unlikely(lm_page_flags(page) & LM_PAGE_HAS_ALIGNED)) return lm_page_usable_size_of(page, p);
  return page->block_size;
}

/* Realloc's check of a block's padding (LM_PADDING builds): false when it was reported. A
 * pointer that is not ours has none. */
bool lm_padding_ok_at(const void* p) {
  if (!lm_arenas_region_contains(&lm_process.arenas, p) && !lm_is_in_heap_region(p)) return true;
  const lm_segment_t* segment = lm_segment_of(p);
  if (!lm_segment_is_valid(&lm_process.segments, segment)) return true; /* free reports it */
  const lm_page_t* page = lm_segment_page_of(segment, p);
  if (page->block_size == 0 || !lm_page_holds(page, p)) return true;
  return lm_padding_ok(page, lm_page_block_of(page, p));
}

/* Padded builds: how many bytes the block holding p could hold from p on (its room), and a
 * new request within it, recorded in place (realloc's resize without a move). A pointer that
 * is not ours, or one in a page of aligned or guarded blocks, has no room past its size. */
size_t lm_padding_room_at(const void* p) {
  if (!lm_arenas_region_contains(&lm_process.arenas, p) && !lm_is_in_heap_region(p)) return 0;
  const lm_page_t* page = lm_segment_page_of(lm_segment_of(p), p);
  if (lm_page_flags(page) & LM_PAGE_HAS_ALIGNED) return 0;
  const lm_block_t* block = lm_page_block_of(page, p);
  return page->block_size - LM_PADDING_SIZE - (size_t)((const uint8_t*)p - (const uint8_t*)block);
}

void lm_padding_resize(void* p, size_t newsize) {
  const lm_page_t* page = lm_segment_page_of(lm_segment_of(p), p);
  lm_block_t* block = lm_page_block_of(page, p);
  size_t offset = (size_t)((uint8_t*)p - (uint8_t*)block);
  if (LM_DEBUG_FILL) {
    lm_stat_decrease(&lm_process.stats.malloc_requested,
                     (int64_t)lm_padding_requested(page, block));
    lm_stat_increase(&lm_process.stats.malloc_requested, (int64_t)(offset + newsize));
  }
  lm_padding_init(page, block, offset + newsize);
}

size_t lm_usable_size(const void* p) {
  size_t size = usable_size_of(p);
  if (LM_TRACK_ASAN && size > 0 && lm_is_in_heap_region(p)) lm_track_usable((void*)p, size);
  return size;
}

size_t mi_usable_size(const void* p) mi_attr_noexcept { return lm_usable_size(p); }

/* The CRT's _msize takes a non-const pointer (exported as _msize: override.h). */
size_t lm_crt_msize(void* p) { return mi_usable_size(p); }

LM_OVERRIDE_NAMES(mi_free)
LM_OVERRIDE_NAMES(mi_usable_size)
LM_OVERRIDE_NAMES(lm_crt_msize)
