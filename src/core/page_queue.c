/* Page queues: one doubly linked queue per bin, plus the huge and full queues. The first page
 * of each small bin is mirrored in the heap's direct table (pages_free_direct), indexed by word
 * size, which is what the malloc fast path reads. */
#include "core.h"

static bool queue_is_full(const lm_heap_t* heap, const lm_page_queue_t* pq) {
  return pq == &heap->pages[LM_BIN_FULL];
}

lm_page_queue_t* lm_heap_queue_for(lm_heap_t* heap, const lm_page_t* page) {
  if (lm_page_flags(page) & LM_PAGE_IN_FULL) return &heap->pages[LM_BIN_FULL];
  return &heap->pages[page->bin];
}

/* The smallest word size of a small bin (see lm_bin): bins 1..8 step by 16 bytes (bins 3, 5
 * and 7 are unused), the others follow each other, so a bin starts one word above the block
 * size of the bin before it. */
static size_t direct_first_word(const lm_heap_t* heap, uint8_t bin) {
  if (bin <= 2) return bin == 1 ? 0 : 2;
  if (bin <= 8) return (size_t)bin - 1;
  return heap->pages[bin - 1].block_size / 8 + 1;
}

/* Keep the direct table in step with the first page of a small bin: every word size that maps
 * to the bin. (Finding them with lm_bin word by word cost 160 instructions a call, 2% of a
 * program whose pages of 1 KiB blocks fill up and free again: bench manythreads.) */
static void direct_update(lm_heap_t* heap, lm_page_queue_t* pq) {
  if (pq->block_size > LM_SMALL_SIZE_MAX || queue_is_full(heap, pq)) return;
  uint8_t bin = (uint8_t)(pq - heap->pages);
  lm_page_t* page = pq->first != NULL ? pq->first : (lm_page_t*)&lm_page_empty;
  size_t last = pq->block_size / 8;
  if (heap->pages_free_direct[last] == page) return;
  for (size_t w = direct_first_word(heap, bin); w <= last; w++) heap->pages_free_direct[w] = page;
}

void lm_queue_push(lm_heap_t* heap, lm_page_queue_t* pq, lm_page_t* page) {
  page->prev = NULL;
  page->next = pq->first;
  if (pq->first != NULL) pq->first->prev = page;
  else pq->last = page;
  pq->first = page;
  if (queue_is_full(heap, pq)) lm_page_flags_update(page, LM_PAGE_IN_FULL, 0);
  else lm_page_flags_update(page, 0, LM_PAGE_IN_FULL);
  direct_update(heap, pq);
}

void lm_queue_push_back(lm_heap_t* heap, lm_page_queue_t* pq, lm_page_t* page) {
  if (pq->first == NULL) {
    lm_queue_push(heap, pq, page);
    return;
  }
  page->next = NULL;
  page->prev = pq->last;
  pq->last->next = page;
  pq->last = page;
  if (queue_is_full(heap, pq)) lm_page_flags_update(page, LM_PAGE_IN_FULL, 0);
  else lm_page_flags_update(page, 0, LM_PAGE_IN_FULL);
}

void lm_queue_remove(lm_heap_t* heap, lm_page_queue_t* pq, lm_page_t* page) {
  if (page->prev != NULL) page->prev->next = page->next;
  if (page->next != NULL) page->next->prev = page->prev;
  if (pq->last == page) pq->last = page->prev;
  if (pq->first == page) {
    pq->first = page->next;
    direct_update(heap, pq);
  }
  page->next = page->prev = NULL;
}

void lm_queue_move_to_front(lm_heap_t* heap, lm_page_queue_t* pq, lm_page_t* page) {
  if (pq->first == page) return;
  lm_queue_remove(heap, pq, page);
  lm_queue_push(heap, pq, page);
}

void lm_page_to_full(lm_heap_t* heap, lm_page_t* page) {
  lm_queue_remove(heap, lm_heap_queue_for(heap, page), page);
  lm_queue_push_back(heap, &heap->pages[LM_BIN_FULL], page);
  /* From now on remote frees tell the heap; one that came just before is collected here. */
  lm_page_set_delayed(page, LM_TF_USE_DELAYED, false);
  lm_page_collect(page, false);
  if (page->free != NULL) lm_page_unfull(heap, page);
}

void lm_page_unfull(lm_heap_t* heap, lm_page_t* page) {
  if (!(lm_page_flags(page) & LM_PAGE_IN_FULL)) return;
  lm_queue_remove(heap, &heap->pages[LM_BIN_FULL], page);
  lm_page_flags_update(page, 0, LM_PAGE_IN_FULL);
  lm_queue_push_back(heap, lm_heap_queue_for(heap, page), page);
  lm_page_set_delayed(page, LM_TF_NO_DELAYED, false);
}
