/* Allocation: the fast path, the generic slow path, and the malloc-family API built on them.
 * With LM_OVERRIDE the libc names are aliases of the mi_ functions (one symbol, no extra jump);
 * override.h lists them.
 */
#include <string.h>

#include "core.h"

/* Hand out `block`, the head of the page's free list, whose successor is `next`; `size` is
 * what the caller asked for. */
static inline void* page_pop_finish(lm_page_t* page, lm_block_t* block, lm_block_t* next,
                                    size_t size, bool zero) {
  page->free = next;
  page->used++;
  page->stat_allocs++; /* the statistics' only cost on this path */
  lm_track_malloc(block, page->block_size, zero && lm_page_free_is_zero(page));
  /* Hardened builds wipe the encoded link: it must not leak, and a live block whose first word
   * still decoded as a link would look like a double free when it is freed. */
  if (LM_ENCODE_FREELIST) block->next = NULL;
  if (LM_DEBUG_FILL) lm_debug_check_reused(page, block);
  if (lm_unlikely(zero)) {
    /* Fresh OS memory is zero except the link word; otherwise clear what the caller asked. */
    if (lm_page_free_is_zero(page)) block->next = NULL;
    else memset(block, 0, page->block_size);
  } else if (LM_DEBUG_FILL) {
    memset(block, 0xD0, lm_min(size, page->block_size - LM_PADDING_SIZE));
  }
  if (LM_PADDING) {
    lm_padding_init(page, block, size);
    if (LM_DEBUG_FILL) lm_stat_increase(&lm_process.stats.malloc_requested, (int64_t)size);
  } else if (LM_TRACK_ASAN && size < page->block_size) {
    lm_track_redzone((uint8_t*)block + size, page->block_size - size);
  }
  return block;
}

/* A corrupted link (hardened builds): report it, cut the list there, hand the block out. Out
 * of line so the fast path needs no saved registers. */
static lm_noinline void* page_pop_corrupt(lm_page_t* page, lm_block_t* block, size_t size,
                                          bool zero) {
  lm_free_list_corrupt(page, block);
  return page_pop_finish(page, block, NULL, size, zero);
}

/* Pop a block from a page known to have one. */
static inline void* page_pop(lm_page_t* page, lm_block_t* block, size_t size, bool zero) {
  if (LM_ENCODE_FREELIST && !LM_TRACK) {
    uintptr_t x = lm_block_decode(page, (uintptr_t)block->next);
    if (x == (uintptr_t)page) return page_pop_finish(page, block, NULL, size, zero);
    if (lm_unlikely(!lm_page_holds(page, (void*)x))) return page_pop_corrupt(page, block, size, zero);
    return page_pop_finish(page, block, (lm_block_t*)x, size, zero);
  }
  return page_pop_finish(page, block, lm_block_next(page, block), size, zero);
}

static void* malloc_generic(lm_heap_t* heap, size_t size, bool zero, size_t huge_alignment);

/* Guarded builds count mallocs down to the next guarded sample (a decrement and a branch); the
 * empty heap (read-only) never gets here: its pages have no free block. */
static inline bool guarded_sample_due(lm_heap_t* heap) {
  return LM_GUARDED && lm_unlikely(--heap->guarded_countdown == 0);
}

/* The page the direct table gives for a small size (the empty page when there is none). */
static inline lm_page_t* direct_page(lm_heap_t* heap, size_t size) {
  return heap->pages_free_direct[(size + LM_PADDING_SIZE + 7) >> 3];
}

static inline void* heap_malloc_small(lm_heap_t* heap, size_t size, bool zero) {
  lm_page_t* page = direct_page(heap, size);
  lm_block_t* block = page->free;
  /* Frees other threads made into this heap's full pages wait on its delayed list: take them
   * over at the next malloc, not only when a free list runs out. Local frees are handed out
   * again at once (free.c), so a thread that idles on a heartbeat never runs out, and that
   * memory would stay out of reach of the purge (bench server: idle RSS 22-24 MiB without
   * this look, 13-14 MiB with it; 3 instructions per malloc/free pair). */
  if (lm_unlikely(block == NULL ||
                  atomic_load_explicit(&heap->thread_delayed_free, memory_order_relaxed) != NULL)) {
    return lm_malloc_generic(heap, size, zero, 0);
  }
  if (guarded_sample_due(heap)) return lm_heap_malloc_sampled(heap, size, zero);
  return page_pop(page, block, size, zero);
}

void* lm_heap_malloc(lm_heap_t* heap, size_t size, bool zero) {
  if (lm_likely(size <= LM_SMALL_SIZE_MAX)) return heap_malloc_small(heap, size, zero);
  return lm_malloc_generic(heap, size, zero, 0);
}

void* lm_heap_malloc_unsampled(lm_heap_t* heap, size_t size, bool zero) {
  if (lm_likely(size <= LM_SMALL_SIZE_MAX)) {
    lm_page_t* page = direct_page(heap, size);
    if (page->free != NULL) return page_pop(page, page->free, size, zero);
  }
  return malloc_generic(heap, size, zero, 0);
}

void* lm_malloc_generic(lm_heap_t* heap, size_t size, bool zero, size_t huge_alignment) {
  if (huge_alignment == 0 && lm_heap_is_initialized(heap) && guarded_sample_due(heap)) {
    return lm_heap_malloc_sampled(heap, size, zero);
  }
  return malloc_generic(heap, size, zero, huge_alignment);
}

static void* heap_malloc_slow(lm_heap_t* heap, size_t size, bool zero, size_t huge_alignment);

static void* malloc_generic(lm_heap_t* heap, size_t size, bool zero, size_t huge_alignment) {
  if (lm_unlikely(!lm_heap_is_initialized(heap))) {
    heap = lm_heap_default_init();
    if (!lm_heap_is_initialized(heap)) {
      errno = ENOMEM;
      return NULL;
    }
  }
  if (lm_unlikely(size > LM_MAX_ALLOC_SIZE)) {
    lm_error(ENOMEM, "allocation request is too large (%zu bytes)", size);
    errno = ENOMEM;
    return NULL;
  }
  lm_tld_t* tld = heap->tld;
  lm_tld_enter(tld); /* full pages may move: not while the drainer looks at them */
  void* p = heap_malloc_slow(heap, size, zero, huge_alignment);
  lm_tld_leave(tld);
  return p;
}

static void* heap_malloc_slow(lm_heap_t* heap, size_t size, bool zero, size_t huge_alignment) {
  lm_heap_check_drained(heap);
  /* Housekeeping, amortised over slow-path calls. */
  if (lm_unlikely(++heap->generic_count >= 100)) {
    if (LM_DEBUG >= 3) lm_heap_check_all(heap->tld);
    heap->generic_collect_count += heap->generic_count;
    heap->generic_count = 0;
    long every = lm_option_get(mi_option_generic_collect);
    if (every > 0 && heap->generic_collect_count >= (size_t)every) {
      heap->generic_collect_count = 0;
      lm_heap_collect(heap, LM_COLLECT_NORMAL); /* runs the deferred-free hook too */
    } else {
      lm_deferred_free(heap, false);
      lm_heap_collect_retired(heap, false);
    }
    lm_heap_shed_segments(heap);
  }
  lm_heap_delayed_free(heap);

  size_t padded = size + LM_PADDING_SIZE; /* no overflow: size <= PTRDIFF_MAX */
  lm_page_t* page = lm_heap_find_page(heap, padded, huge_alignment);
  if (lm_unlikely(page == NULL)) {
    lm_heap_collect(heap, LM_COLLECT_FORCE); /* give everything back, then one more try */
    page = lm_heap_find_page(heap, padded, huge_alignment);
  }
  if (lm_unlikely(page == NULL)) {
    lm_error(ENOMEM, "unable to allocate memory (%zu bytes)", size);
    errno = ENOMEM;
    return NULL;
  }
  /* Huge blocks (above 16 MiB, a segment each) on large pages, unless zeroed: a program
   * writes what it mallocs, mostly from the start (buffers, arrays, realloc's copy), so a
   * 2 MiB page is rarely resident for nothing and takes one fault instead of 512 (bench large:
   * 50k -> 14k faults, half the time); zeroed memory is often used sparsely (bitmaps, hash
   * tables, sparse arrays), where each touched 2 MiB would become resident. Blocks up to
   * 16 MiB never ask (segment.c). */
  if (lm_unlikely(page->is_huge) && !zero && page->used == 0) {
    lm_segment_huge_advise_large(&lm_process.segments, page);
  }
  void* p = page_pop(page, page->free, size, zero);
  if (page->reserved == page->used && page->free == NULL && page->local_free == NULL) {
    lm_page_stats_fold(page, &heap->tld->stats); /* a high point: sample the peaks */
    lm_page_to_full(heap, page); /* single-block pages are full at once */
  }
  return p;
}

/* ---- the standard API ------------------------------------------------------------------------ */

void* mi_malloc(size_t size) mi_attr_noexcept {
  return lm_heap_malloc(lm_heap_get_default(), size, false);
}

void* mi_malloc_small(size_t size) mi_attr_noexcept {
  lm_assert(size <= LM_SMALL_SIZE_MAX);
  return heap_malloc_small(lm_heap_get_default(), size, false);
}

void* mi_zalloc_small(size_t size) mi_attr_noexcept {
  lm_assert(size <= LM_SMALL_SIZE_MAX);
  return heap_malloc_small(lm_heap_get_default(), size, true);
}

void* mi_zalloc(size_t size) mi_attr_noexcept {
  return lm_heap_malloc(lm_heap_get_default(), size, true);
}

void* mi_calloc(size_t count, size_t size) mi_attr_noexcept {
  size_t total;
  if (!lm_count_size(count, size, &total)) return NULL;
  return lm_heap_malloc(lm_heap_get_default(), total, true);
}

void* mi_mallocn(size_t count, size_t size) mi_attr_noexcept {
  size_t total;
  if (!lm_count_size(count, size, &total)) return NULL;
  return mi_malloc(total);
}

/* ---- reallocation ---------------------------------------------------------------------------- */

/* The block p starts a page of one large or huge block of ours (what a move may take). */
static lm_page_t* single_block_page(void* p) {
  if (!lm_arenas_region_contains(&lm_process.arenas, p) && !lm_is_in_heap_region(p)) return NULL;
  lm_page_t* page = lm_segment_page_of(lm_segment_of(p), p);
  bool single = page->block_size > LM_MEDIUM_OBJ_SIZE_MAX && p == page->page_start &&
                (lm_page_flags(page) & LM_PAGE_HAS_ALIGNED) == 0;
  return single ? page : NULL;
}

/* A large block of this thread's heap grows into the free slices right after it, or gives
 * its tail back, without a copy. Not in builds that pad or track blocks (their bookkeeping
 * follows the requested size). */
static bool realloc_in_place(lm_heap_t* heap, void* p, size_t size, size_t newsize, bool zero) {
  if (LM_PADDING || LM_TRACK || newsize <= LM_MEDIUM_OBJ_SIZE_MAX ||
      newsize > LM_LARGE_OBJ_SIZE_MAX || size <= LM_MEDIUM_OBJ_SIZE_MAX) {
    return false;
  }
  lm_page_t* page = single_block_page(p); /* (NULL for a block of another allocator) */
  if (page == NULL || page->is_huge || lm_page_heap(page) != heap ||
      heap->thread_id != lm_thread_id()) {
    return false;
  }
  lm_segment_t* segment = lm_segment_of(p);
  size_t slices = lm_segment_page_slices(lm_good_size_large(newsize) + segment->guard_size);
  if (!lm_segment_page_resize(&heap->tld->segments, page, slices)) return false;
  size_t area;
  lm_page_area(page, &area);
  lm_page_stats_resize(page, &heap->tld->stats, area);
  if (zero && area > size) memset((uint8_t*)p + size, 0, area - size);
  return true;
}

/* A large or huge block that moves takes its memory along instead of a copy, where the backend
 * can move memory (Linux: mremap): no byte is copied and the new block's pages are not
 * faulted in one by one. Worth it where a copy would fault them in: a huge block (a copy
 * faults in 2 MiB pages at best, and copies megabytes), or a large one whose memory is not
 * resident (untouched or purged). Into resident memory a copy of a large block is cheaper:
 * the moved-out source would fault its pages in again when it is reused (bench grow, 40
 * rounds of 64 buffers grown to 2 MiB, moving every block: 56k -> 870k faults, 1.5 -> 2.3 s).
 * Returns the bytes moved, from the start, in whole slices (moved ranges end on 64 KiB
 * boundaries); the caller copies the rest. Not in builds that pad or track blocks, whose
 * bookkeeping follows the requested size. */
static size_t realloc_move(void* newp, void* p, size_t copy) {
  /* Below 1 MiB a copy into memory already resident is as quick (512 KiB: 17 us either
   * way; 1 MiB: a move 30 us, a copy 43; 4 MiB: 126 and 317). */
  static const size_t move_min = LM_MiB;
  if (LM_PADDING || LM_TRACK || copy < move_min) return 0;
  lm_page_t* to = single_block_page(newp);
  lm_page_t* from = single_block_page(p);
  if (to == NULL || from == NULL || (!to->is_huge && !to->is_zero_init)) return 0;
  return lm_segment_move(&lm_process.segments, to, from, lm_align_down(copy, LM_SLICE_SIZE));
}

void* lm_heap_realloc(lm_heap_t* heap, void* p, size_t newsize, bool zero) {
  if (p == NULL) return lm_heap_malloc(heap, newsize, zero);
  /* A block written past its end is reported here, whether or not it moves; it is left as it
   * is (as free leaves it) and the caller gets NULL. */
  if (LM_PADDING && lm_unlikely(!lm_padding_ok_at(p))) return NULL;
  size_t size = lm_usable_size(p);
  /* Keep the block when the new size still fits and does not waste more than half of it. */
  if (newsize <= size && newsize >= size / 2 && newsize > 0) return p;
  if (LM_PADDING) {
    /* Padded blocks report their request as their size: measure against what the block can
     * hold (its room), and record the new request, so growing a little at a time does not copy
     * every time (bench reallocgrow: 76x the time of an unpadded build without this). */
    size_t room = lm_padding_room_at(p);
    if (newsize <= room && newsize >= room / 2 && newsize > 0) {
      lm_padding_resize(p, newsize);
      if (zero && newsize > size) memset((uint8_t*)p + size, 0, newsize - size);
      return p;
    }
  }
  if (realloc_in_place(heap, p, size, newsize, zero)) return p;
  void* newp = lm_heap_malloc(heap, newsize, false);
  if (lm_unlikely(newp == NULL)) return NULL; /* p is untouched */
  size_t copy = size < newsize ? size : newsize;
  /* Zero everything past the copied part, to the end of the block, so a later in-place growth
   * of a zero-allocated block reads zeros too. */
  if (zero) memset((uint8_t*)newp + copy, 0, lm_usable_size(newp) - copy);
  if (newsize == 0) {
    lm_track_usable(newp, 1);
    *(uint8_t*)newp = 0;
  }
  size_t moved = realloc_move(newp, p, copy);
  memcpy((uint8_t*)newp + moved, (uint8_t*)p + moved, copy - moved);
  mi_free(p);
  return newp;
}

void* mi_realloc(void* p, size_t newsize) mi_attr_noexcept {
  return lm_heap_realloc(lm_heap_get_default(), p, newsize, false);
}

void* mi_reallocn(void* p, size_t count, size_t size) mi_attr_noexcept {
  size_t total;
  if (!lm_count_size(count, size, &total)) return NULL;
  return mi_realloc(p, total);
}

void* mi_reallocf(void* p, size_t newsize) mi_attr_noexcept {
  void* newp = mi_realloc(p, newsize);
  if (newp == NULL && p != NULL) mi_free(p);
  return newp;
}

void* mi_expand(void* p, size_t newsize) mi_attr_noexcept {
  if (p == NULL) return NULL;
  return newsize <= lm_usable_size(p) ? p : NULL;
}

/* ---- libc names ------------------------------------------------------------------------------ */
LM_OVERRIDE_NAMES(mi_malloc)
LM_OVERRIDE_NAMES(mi_calloc)
LM_OVERRIDE_NAMES(mi_realloc)
LM_OVERRIDE_NAMES(mi_expand)
