/* First-class heaps: creation, deletion (blocks move to the backing heap), destruction (every
 * block freed at once, no per-block walk), the mi_heap_* allocation variants, ownership
 * queries and block visiting. A heap belongs to the thread that created it: only that thread
 * allocates from it; any thread may free its blocks. */
#include <string.h>

#include "core.h"

/* ---- creation ------------------------------------------------------------------------------ */

mi_heap_t* mi_heap_new_ex(int heap_tag, bool allow_destroy, mi_arena_id_t arena_id) {
  lm_heap_t* backing = mi_heap_get_backing();
  if (backing == NULL || !lm_heap_is_initialized(backing)) return NULL;
  lm_heap_t* heap = lm_heap_malloc(backing, sizeof(lm_heap_t), false);
  if (heap == NULL) return NULL;
  lm_tld_enter(backing->tld); /* (the drainer walks the thread's heaps) */
  lm_heap_init(heap, backing->tld, arena_id, allow_destroy, (uint8_t)heap_tag);
  lm_tld_leave(backing->tld);
  return heap;
}

mi_heap_t* mi_heap_new_in_arena(mi_arena_id_t arena_id) {
  return mi_heap_new_ex(0, false, arena_id);
}

mi_heap_t* mi_heap_new(void) { return mi_heap_new_ex(0, true, 0); }

mi_heap_t* mi_heap_get_default(void) { return lm_heap_default_init(); }

mi_heap_t* mi_heap_get_backing(void) {
  lm_heap_t* heap = lm_heap_default_init();
  return lm_heap_is_initialized(heap) ? heap->tld->heap_backing : NULL;
}

mi_heap_t* mi_heap_set_default(mi_heap_t* heap) {
  lm_heap_t* old = lm_heap_default_init();
  if (heap == NULL || !lm_heap_is_initialized(heap)) return old;
  lm_heap_set_default(heap);
  return old;
}

void mi_heap_collect(mi_heap_t* heap, bool force) mi_attr_noexcept {
  if (heap == NULL) return;
  lm_heap_collect(heap, force ? LM_COLLECT_FORCE : LM_COLLECT_NORMAL);
}

/* ---- deletion and destruction ------------------------------------------------------------------ */

/* Stop remote frees from using the heap's delayed list, then finish what is in flight. */
static void heap_quiesce(lm_heap_t* heap) {
  for (size_t bin = 0; bin < LM_BIN_COUNT; bin++) {
    for (lm_page_t* page = heap->pages[bin].first; page != NULL; page = page->next) {
      lm_page_set_delayed(page, LM_TF_NEVER_DELAYED, false);
    }
  }
  lm_heap_delayed_free(heap);
}

static void heap_unlink(lm_heap_t* heap) {
  lm_tld_t* tld = heap->tld;
  for (lm_heap_t** p = &tld->heaps; *p != NULL; p = &(*p)->next) {
    if (*p == heap) {
      *p = heap->next;
      break;
    }
  }
  if (lm_heap_get_default() == heap) lm_heap_set_default(tld->heap_backing);
}

/* Move every page of `from` into `into` (same thread, compatible tag and arena). */
static void heap_absorb(lm_heap_t* into, lm_heap_t* from) {
  heap_quiesce(from);
  for (size_t bin = 0; bin < LM_BIN_COUNT; bin++) {
    lm_page_queue_t* pq = &from->pages[bin];
    while (pq->first != NULL) {
      lm_page_t* page = pq->first;
      bool full = (lm_page_flags(page) & LM_PAGE_IN_FULL) != 0;
      lm_queue_remove(from, pq, page);
      from->page_count--;
      atomic_store_explicit(&page->xheap, (uintptr_t)into, memory_order_release);
      lm_queue_push_back(into, full ? &into->pages[LM_BIN_FULL] : lm_heap_queue_for(into, page),
                         page);
      into->page_count++;
      lm_page_set_delayed(page, full ? LM_TF_USE_DELAYED : LM_TF_NO_DELAYED, true);
    }
  }
}

void mi_heap_delete(mi_heap_t* heap) {
  if (heap == NULL || !lm_heap_is_initialized(heap)) return;
  lm_tld_t* tld = heap->tld;
  lm_heap_t* backing = tld->heap_backing;
  if (heap == backing) return; /* the backing heap lives as long as its thread */
  lm_tld_enter(tld);
  lm_heap_check_drained(heap);
  if (heap->tag == backing->tag && heap->arena_id == backing->arena_id) {
    heap_absorb(backing, heap);
  } else {
    lm_heap_collect(heap, LM_COLLECT_ABANDON); /* live blocks stay valid, owned by nobody */
  }
  heap_unlink(heap);
  lm_tld_leave(tld);
  mi_free(heap);
}

/* A block that dies with its heap: tell the memory checker, and the requested-bytes count. */
static bool block_dies(const mi_heap_t* heap, const mi_heap_area_t* area, void* block,
                       size_t block_size, void* arg) {
  (void)heap, (void)area, (void)arg, (void)block_size;
  if (block == NULL) return true;
  const lm_page_t* page = lm_segment_page_of(lm_segment_of(block), block);
  const lm_block_t* base = lm_page_block_of(page, block); /* (a guarded block: its start) */
  if (LM_GUARDED) lm_guarded_unguard(page, block); /* open before the page is reused */
  if (LM_DEBUG_FILL) {
    lm_stat_decrease(&lm_process.stats.malloc_requested,
                     (int64_t)lm_padding_requested(page, base));
  }
  lm_track_free(base, page->block_size);
  return true;
}

void mi_heap_destroy(mi_heap_t* heap) {
  if (heap == NULL || !lm_heap_is_initialized(heap)) return;
  if (!heap->allow_destroy) {
    lm_warning("mi_heap_destroy on a heap that does not allow it: deleting it instead");
    mi_heap_delete(heap);
    return;
  }
  lm_tld_t* tld = heap->tld;
  if (heap == tld->heap_backing) return;
  lm_tld_enter(tld);
  heap_quiesce(heap);
  if (LM_TRACK_VALGRIND || LM_DEBUG_FILL || LM_GUARDED) {
    mi_heap_visit_blocks(heap, true, block_dies, NULL);
  }
  /* Give every page back whole: its blocks die with it, no walk over them. */
  for (size_t bin = 0; bin < LM_BIN_COUNT; bin++) {
    lm_page_queue_t* pq = &heap->pages[bin];
    while (pq->first != NULL) lm_heap_page_free(heap, pq->first);
  }
  heap_unlink(heap);
  lm_tld_leave(tld);
  mi_free(heap);
}

/* ---- allocation ---------------------------------------------------------------------------------- */


void* mi_heap_malloc(mi_heap_t* heap, size_t size) mi_attr_noexcept {
  return lm_heap_malloc(heap, size, false);
}
void* mi_heap_zalloc(mi_heap_t* heap, size_t size) mi_attr_noexcept {
  return lm_heap_malloc(heap, size, true);
}
void* mi_heap_calloc(mi_heap_t* heap, size_t count, size_t size) mi_attr_noexcept {
  size_t total;
  return lm_count_size(count, size, &total) ? lm_heap_malloc(heap, total, true) : NULL;
}
void* mi_heap_mallocn(mi_heap_t* heap, size_t count, size_t size) mi_attr_noexcept {
  size_t total;
  return lm_count_size(count, size, &total) ? lm_heap_malloc(heap, total, false) : NULL;
}
void* mi_heap_malloc_small(mi_heap_t* heap, size_t size) mi_attr_noexcept {
  lm_assert(size <= LM_SMALL_SIZE_MAX);
  return lm_heap_malloc(heap, size, false);
}
void* mi_heap_zalloc_small(mi_heap_t* heap, size_t size) mi_attr_noexcept {
  lm_assert(size <= LM_SMALL_SIZE_MAX);
  return lm_heap_malloc(heap, size, true);
}
void* mi_heap_realloc(mi_heap_t* heap, void* p, size_t newsize) mi_attr_noexcept {
  return lm_heap_realloc(heap, p, newsize, false);
}
void* mi_heap_reallocn(mi_heap_t* heap, void* p, size_t count, size_t size) mi_attr_noexcept {
  size_t total;
  return lm_count_size(count, size, &total) ? lm_heap_realloc(heap, p, total, false) : NULL;
}
void* mi_heap_reallocf(mi_heap_t* heap, void* p, size_t newsize) mi_attr_noexcept {
  void* newp = lm_heap_realloc(heap, p, newsize, false);
  if (newp == NULL && p != NULL) mi_free(p);
  return newp;
}
char* mi_heap_strdup(mi_heap_t* heap, const char* s) mi_attr_noexcept {
  if (s == NULL) return NULL;
  size_t n = strlen(s);
  char* t = lm_heap_malloc(heap, n + 1, false);
  if (t != NULL) memcpy(t, s, n + 1);
  return t;
}
char* mi_heap_strndup(mi_heap_t* heap, const char* s, size_t n) mi_attr_noexcept {
  if (s == NULL) return NULL;
  const char* end = memchr(s, 0, n);
  size_t len = end != NULL ? (size_t)(end - s) : n;
  char* t = lm_heap_malloc(heap, len + 1, false);
  if (t == NULL) return NULL;
  memcpy(t, s, len);
  t[len] = 0;
  return t;
}
char* mi_heap_realpath(mi_heap_t* heap, const char* fname, char* resolved_name) mi_attr_noexcept {
  char* r = mi_realpath(fname, resolved_name);
  if (r == NULL || resolved_name != NULL) return r;
  char* copy = mi_heap_strdup(heap, r); /* mi_realpath allocated from the default heap */
  mi_free(r);
  return copy;
}

void* mi_heap_malloc_aligned_at(mi_heap_t* heap, size_t size, size_t alignment, size_t offset)
    mi_attr_noexcept {
  return lm_heap_malloc_aligned_at(heap, size, alignment, offset, false);
}
void* mi_heap_malloc_aligned(mi_heap_t* heap, size_t size, size_t alignment) mi_attr_noexcept {
  return lm_heap_malloc_aligned_at(heap, size, alignment, 0, false);
}
void* mi_heap_zalloc_aligned_at(mi_heap_t* heap, size_t size, size_t alignment, size_t offset)
    mi_attr_noexcept {
  return lm_heap_malloc_aligned_at(heap, size, alignment, offset, true);
}
void* mi_heap_zalloc_aligned(mi_heap_t* heap, size_t size, size_t alignment) mi_attr_noexcept {
  return lm_heap_malloc_aligned_at(heap, size, alignment, 0, true);
}
void* mi_heap_calloc_aligned_at(mi_heap_t* heap, size_t count, size_t size, size_t alignment,
                                size_t offset) mi_attr_noexcept {
  size_t total;
  if (!lm_count_size(count, size, &total)) return NULL;
  return lm_heap_malloc_aligned_at(heap, total, alignment, offset, true);
}
void* mi_heap_calloc_aligned(mi_heap_t* heap, size_t count, size_t size, size_t alignment)
    mi_attr_noexcept {
  return mi_heap_calloc_aligned_at(heap, count, size, alignment, 0);
}
void* mi_heap_realloc_aligned_at(mi_heap_t* heap, void* p, size_t newsize, size_t alignment,
                                 size_t offset) mi_attr_noexcept {
  return lm_heap_realloc_aligned_at(heap, p, newsize, alignment, offset, false);
}
void* mi_heap_realloc_aligned(mi_heap_t* heap, void* p, size_t newsize, size_t alignment)
    mi_attr_noexcept {
  return lm_heap_realloc_aligned_at(heap, p, newsize, alignment, 0, false);
}

/* Zero-preserving reallocation: the grown part reads as zero. */
void* mi_heap_rezalloc(mi_heap_t* heap, void* p, size_t newsize) mi_attr_noexcept {
  return lm_heap_realloc(heap, p, newsize, true);
}
void* mi_heap_recalloc(mi_heap_t* heap, void* p, size_t count, size_t size) mi_attr_noexcept {
  size_t total;
  return lm_count_size(count, size, &total) ? lm_heap_realloc(heap, p, total, true) : NULL;
}
void* mi_heap_rezalloc_aligned_at(mi_heap_t* heap, void* p, size_t newsize, size_t alignment,
                                  size_t offset) mi_attr_noexcept {
  return lm_heap_realloc_aligned_at(heap, p, newsize, alignment, offset, true);
}
void* mi_heap_rezalloc_aligned(mi_heap_t* heap, void* p, size_t newsize, size_t alignment)
    mi_attr_noexcept {
  return lm_heap_realloc_aligned_at(heap, p, newsize, alignment, 0, true);
}
void* mi_heap_recalloc_aligned_at(mi_heap_t* heap, void* p, size_t count, size_t size,
                                  size_t alignment, size_t offset) mi_attr_noexcept {
  size_t total;
  if (!lm_count_size(count, size, &total)) return NULL;
  return lm_heap_realloc_aligned_at(heap, p, total, alignment, offset, true);
}
void* mi_heap_recalloc_aligned(mi_heap_t* heap, void* p, size_t count, size_t size,
                               size_t alignment) mi_attr_noexcept {
  return mi_heap_recalloc_aligned_at(heap, p, count, size, alignment, 0);
}

/* ---- ownership --------------------------------------------------------------------------------- */

static lm_page_t* page_of_ours(const void* p) {
  if (p == NULL || !lm_is_in_heap_region(p)) return NULL;
  lm_segment_t* segment = lm_segment_of(p);
  if (!lm_segment_is_valid(&lm_process.segments, segment)) return NULL;
  return lm_segment_page_of(segment, p);
}

bool mi_heap_contains_block(mi_heap_t* heap, const void* p) {
  lm_page_t* page = page_of_ours(p);
  return page != NULL && lm_page_heap(page) == heap;
}

bool mi_heap_check_owned(mi_heap_t* heap, const void* p) {
  if (heap == NULL || !lm_heap_is_initialized(heap) || ((uintptr_t)p & 7) != 0) return false;
  for (size_t bin = 0; bin < LM_BIN_COUNT; bin++) {
    for (lm_page_t* page = heap->pages[bin].first; page != NULL; page = page->next) {
      const uint8_t* start = page->page_start;
      if ((const uint8_t*)p >= start && (const uint8_t*)p < start + page->reserved * page->block_size) {
        return true;
      }
    }
  }
  return false;
}

bool mi_check_owned(const void* p) { return mi_heap_check_owned(mi_heap_get_default(), p); }

bool mi_unsafe_heap_page_is_under_utilized(mi_heap_t* heap, void* p, size_t perc_threshold)
    mi_attr_noexcept {
  lm_page_t* page = page_of_ours(p);
  if (page == NULL || lm_page_heap(page) != heap) return false;
  if (page->capacity < page->reserved) return false; /* still growing */
  lm_page_queue_t* pq = lm_heap_queue_for(heap, page);
  if (pq->first == page) return false; /* the page being allocated from */
  return (size_t)page->used * 100 <= perc_threshold * page->capacity;
}

/* ---- visiting ------------------------------------------------------------------------------------ */

/* A live block as the program holds it: a guarded block is the pointer handed out (the size
 * is the area's block size, as for every block). */
static bool visit_block(const lm_heap_t* heap, const lm_page_t* page, const mi_heap_area_t* area,
                        uint8_t* block, mi_block_visit_fun* visitor, void* arg) {
  void* p = block;
  if (LM_GUARDED && (lm_page_flags(page) & LM_PAGE_HAS_ALIGNED)) {
    size_t usable = 0;
    lm_guarded_block(page, block, &p, &usable);
  }
  return visitor(heap, area, p, page->block_size, arg);
}

bool lm_page_visit(const lm_heap_t* heap, lm_page_t* page, bool visit_blocks,
                   mi_block_visit_fun* visitor, void* arg) {
  lm_page_collect(page, true); /* so `used` is exact and every free block is in `free` */
  size_t bsize = page->block_size;
  mi_heap_area_t area = {.blocks = page->page_start,
                         .reserved = (size_t)page->reserved * bsize,
                         .committed = (size_t)page->capacity * bsize,
                         .used = page->used,
                         .block_size = bsize,
                         .full_block_size = bsize,
                         .heap_tag = page->heap_tag};
  if (!visitor(heap, &area, NULL, bsize, arg)) return false;
  if (!visit_blocks || page->used == 0) return true;
  if (page->reserved == 1) return visit_block(heap, page, &area, page->page_start, visitor, arg);
  /* Mark the free blocks in a bitmap, then visit the others. The map covers the most blocks
   * a page can count (`reserved` is 16 bits: 8 KiB of stack), so no page is ever too big. */
  uint64_t free_map[((size_t)UINT16_MAX + 1) / 64];
  _Static_assert(sizeof(page->reserved) == sizeof(uint16_t), "free_map holds UINT16_MAX blocks");
  size_t words = lm_divide_up(page->capacity, 64);
  memset(free_map, 0, words * sizeof(uint64_t));
  for (lm_block_t* b = page->free; b != NULL; b = lm_block_next(page, b)) {
    size_t i = (size_t)((uint8_t*)b - page->page_start) / bsize;
    if (i < page->capacity) free_map[i / 64] |= (uint64_t)1 << (i % 64);
  }
  for (size_t i = 0; i < page->capacity; i++) {
    if (free_map[i / 64] & ((uint64_t)1 << (i % 64))) continue;
    if (!visit_block(heap, page, &area, page->page_start + i * bsize, visitor, arg)) return false;
  }
  return true;
}

bool mi_heap_visit_blocks(const mi_heap_t* heap, bool visit_all_blocks,
                          mi_block_visit_fun* visitor, void* arg) {
  if (heap == NULL || visitor == NULL || !lm_heap_is_initialized(heap)) return false;
  lm_heap_t* h = (lm_heap_t*)heap;
  lm_tld_enter(h->tld); /* (the visitor may allocate: the enter nests) */
  lm_heap_check_drained(h);
  /* Frees other threads made into full pages wait on the heap's delayed list (a collect of
   * another heap never takes them): free them now, so `used` and the walk are exact. Each
   * page's own thread-free list is taken by lm_page_visit. */
  lm_heap_delayed_free(h);
  bool complete = true;
  for (size_t bin = 0; bin < LM_BIN_COUNT && complete; bin++) {
    lm_page_t* page = h->pages[bin].first;
    while (page != NULL) {
      lm_page_t* next = page->next;
      if (!lm_page_visit(heap, page, visit_all_blocks, visitor, arg)) {
        complete = false;
        break;
      }
      page = next;
    }
  }
  lm_tld_leave(h->tld);
  return complete;
}
