/* Debug level 3: full invariant walks of the calling thread's heaps, pages, segments and
 * statistics, run on slow paths (each housekeeping round), at every collect, and before a
 * thread's pages are abandoned. A violation stops the program (lm_check -> lm_assert_fail,
 * which names the invariant, file and line). Cost: proportional to the blocks in free lists. */
#include "core.h"

/* A free list of the page: blocks of the page, at block starts, without a cycle. */
static size_t list_length(const lm_page_t* page, const lm_block_t* list) {
  size_t n = 0;
  for (const lm_block_t* b = list; b != NULL; b = lm_block_next(page, b)) {
    lm_check(lm_page_holds(page, b));
    lm_check((size_t)((const uint8_t*)b - page->page_start) % page->block_size == 0);
    lm_check(++n <= page->capacity);
  }
  return n;
}

static void page_check(lm_heap_t* heap, lm_page_queue_t* pq, lm_page_t* page) {
  lm_check(lm_page_heap(page) == heap);
  lm_check(!(lm_page_flags(page) & LM_PAGE_ABANDONED));
  lm_check(lm_heap_queue_for(heap, page) == pq);
  lm_check(page->block_size > 0 && page->capacity <= page->reserved);
  lm_check(page->used <= page->capacity);
  lm_check(lm_segment_owner(lm_segment_of(page)) == heap->thread_id);
  /* Every block is handed out, or in `free` or `local_free` (blocks waiting in the thread-free
   * and delayed lists still count as used). */
  size_t listed = list_length(page, page->free) + list_length(page, page->local_free);
  lm_check(listed + page->used == page->capacity);
}

static void queue_check(lm_heap_t* heap, lm_page_queue_t* pq) {
  lm_page_t* prev = NULL;
  for (lm_page_t* page = pq->first; page != NULL; page = page->next) {
    lm_check(page->prev == prev);
    page_check(heap, pq, page);
    prev = page;
  }
  lm_check(pq->last == prev);
}

/* The direct table mirrors the first page of each small bin (what the fast path reads). */
static void direct_check(lm_heap_t* heap) {
  for (size_t w = 1; w < LM_PAGES_DIRECT; w++) {
    uint8_t bin = lm_bin(w * 8);
    if (heap->pages[bin].block_size > LM_SMALL_SIZE_MAX) continue;
    lm_page_t* first = heap->pages[bin].first;
    lm_check(heap->pages_free_direct[w] == (first != NULL ? first : &lm_page_empty));
  }
}

/* Each segment once (pages of one segment mostly follow each other in the queues). */
static void segments_check(lm_heap_t* heap) {
  lm_segment_t* seen[16] = {NULL};
  size_t next = 0;
  for (size_t bin = 0; bin < LM_BIN_COUNT; bin++) {
    for (lm_page_t* page = heap->pages[bin].first; page != NULL; page = page->next) {
      lm_segment_t* segment = lm_segment_of(page);
      bool checked = false;
      for (size_t i = 0; i < 16 && !checked; i++) checked = seen[i] == segment;
      if (checked) continue;
      lm_segment_check(&lm_process.segments, segment);
      seen[next++ % 16] = segment;
    }
  }
}

/* After a merge every page is folded: the thread's live blocks and pages per size class are
 * exactly those of the pages it holds. */
static void stats_check(lm_tld_t* tld) {
  lm_stats_merge_thread(tld);
  int64_t blocks[LM_STAT_BINS] = {0}, pages[LM_STAT_BINS] = {0};
  for (lm_heap_t* heap = tld->heaps; heap != NULL; heap = heap->next) {
    for (size_t bin = 0; bin < LM_BIN_COUNT; bin++) {
      for (lm_page_t* page = heap->pages[bin].first; page != NULL; page = page->next) {
        bool huge = page->is_huge || page->block_size > LM_MEDIUM_OBJ_SIZE_MAX;
        uint8_t sbin = huge ? LM_BIN_HUGE : lm_bin(page->block_size);
        lm_check(page->bin == sbin);
        lm_check(page->stat_used == page->used && page->stat_allocs == 0);
        blocks[sbin] += page->used;
        pages[sbin]++;
      }
    }
  }
  for (size_t bin = 0; bin < LM_STAT_BINS; bin++) {
    lm_check(tld->stats.malloc_bins[bin].current == blocks[bin]);
    lm_check(tld->stats.page_bins[bin].current == pages[bin]);
  }
}

void lm_heap_check_all(lm_tld_t* tld) {
  if (tld == NULL) return;
  size_t count = 0;
  for (lm_heap_t* heap = tld->heaps; heap != NULL; heap = heap->next) {
    lm_check(heap->tld == tld);
    size_t pages = 0;
    for (size_t bin = 0; bin < LM_BIN_COUNT; bin++) {
      queue_check(heap, &heap->pages[bin]);
      for (lm_page_t* page = heap->pages[bin].first; page != NULL; page = page->next) pages++;
    }
    lm_check(pages == heap->page_count);
    direct_check(heap);
    segments_check(heap);
    count++;
  }
  lm_check(count >= 1);
  stats_check(tld);
}
