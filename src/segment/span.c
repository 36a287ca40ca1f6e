/* Free spans: runs of free slices in a segment, queued per thread by length (bins spaced like
 * the size classes, four per power of two). Allocation takes the lowest-addressed span that
 * fits among the first SPAN_CANDIDATES found upward from the best-fitting bin; the remainder of
 * a split goes back to its queue; freeing merges with free neighbours. */
#include "span.h"

static size_t span_bin(size_t slices) {
  if (slices <= 8) return slices;
  size_t w = slices - 1;
  size_t b = lm_bsr(w);
  size_t bin = (b << 2) + ((w >> (b - 2)) & 3) - 3;
  return bin < LM_SPAN_QUEUES ? bin : LM_SPAN_QUEUES - 1;
}

/* The most slices a span of a bin above 8 has (span_bin backwards): 4 bins per power of two. */
static size_t span_bin_max(size_t bin) {
  size_t b = (bin + 3) >> 2, m = (bin + 3) & 3;
  return (5 + m) << (b - 2);
}

/* Debug builds check the bins against span_bin: the bin of n slices takes n, and n is its
 * largest when n + 1 falls in the next bin. */
static lm_unused bool span_queue_holds(const lm_segments_tld_t* tld, size_t n) {
  size_t bin = span_bin(n);
  bool largest = n == LM_SLICES_PER_SEGMENT || span_bin(n + 1) != bin;
  return largest ? tld->spans[bin].slice_count == n : tld->spans[bin].slice_count > n;
}

/* Every thread does this at its first allocation: bin by bin, not slice count by slice count
 * (512 span_bin calls were 8k instructions a thread: bench threadchurn). Bins past the one
 * holding a whole segment stay at 0. */
void lm_span_queues_init(lm_segments_tld_t* tld) {
  for (size_t i = 0; i < LM_SPAN_QUEUES; i++) tld->spans[i] = (lm_span_queue_t){0};
  for (size_t bin = 1; bin < LM_SPAN_QUEUES; bin++) {
    size_t max = bin <= 8 ? bin : span_bin_max(bin);
    tld->spans[bin].slice_count = lm_min(max, LM_SLICES_PER_SEGMENT);
    if (max >= LM_SLICES_PER_SEGMENT) break;
  }
  if (LM_DEBUG > 0) {
    for (size_t n = 1; n <= LM_SLICES_PER_SEGMENT; n++) lm_assert(span_queue_holds(tld, n));
  }
}

static void queue_push(lm_span_queue_t* q, lm_page_t* span) {
  span->prev = NULL;
  span->next = q->first;
  if (q->first != NULL) q->first->prev = span;
  else q->last = span;
  q->first = span;
}

static void queue_remove(lm_span_queue_t* q, lm_page_t* span) {
  if (span->prev != NULL) span->prev->next = span->next;
  else q->first = span->next;
  if (span->next != NULL) span->next->prev = span->prev;
  else q->last = span->prev;
  span->next = span->prev = NULL;
}

/* Write the slice fields of a span or page over [idx, idx+n). */
static lm_page_t* mark_run(lm_segment_t* segment, size_t idx, size_t n, size_t block_size) {
  lm_page_t* first = &segment->slices[idx];
  first->slice_count = (uint32_t)n;
  first->slice_offset = 0;
  first->block_size = block_size;
  /* Pages get back-offsets on every slice (interior pointers of aligned blocks); free spans
   * only on their last slice (what coalescing looks at). */
  size_t from = block_size == 0 ? idx + n - 1 : idx + 1;
  for (size_t i = lm_max(from, idx + 1); i < idx + n; i++) {
    lm_page_t* s = &segment->slices[i];
    s->slice_count = 0;
    s->slice_offset = (uint32_t)((i - idx) * sizeof(lm_page_t));
    s->block_size = block_size == 0 ? 0 : 1;
  }
  return first;
}

void lm_span_free(lm_segments_tld_t* tld, lm_segment_t* segment, size_t idx, size_t n) {
  if (n == 0) return;
  lm_page_t* span = mark_run(segment, idx, n, 0);
  span->next = span->prev = NULL;
  queue_push(&tld->spans[span_bin(n)], span);
}

lm_page_t* lm_span_free_coalesce(lm_segments_tld_t* tld, lm_segment_t* segment, size_t idx,
                                 size_t n) {
  size_t end = idx + n;
  if (end < segment->segment_slices) {
    lm_page_t* next = &segment->slices[end];
    if (next->block_size == 0 && next->slice_count > 0) {
      queue_remove(&tld->spans[span_bin(next->slice_count)], next);
      n += next->slice_count;
    }
  }
  if (idx > segment->info_slices) {
    lm_page_t* last = &segment->slices[idx - 1];
    lm_page_t* prev = (lm_page_t*)((uint8_t*)last - last->slice_offset);
    if (prev->block_size == 0 && prev->slice_count > 0) {
      queue_remove(&tld->spans[span_bin(prev->slice_count)], prev);
      size_t prev_idx = (size_t)(prev - segment->slices);
      n += idx - prev_idx;
      idx = prev_idx;
    }
  }
  lm_span_free(tld, segment, idx, n);
  return &segment->slices[idx];
}

static bool segment_suits(const lm_segment_t* segment, int arena_id) {
  return lm_memid_suits(&segment->memid, arena_id);
}

/* Lowest address first, not smallest first: memory that was just freed (and is still
 * resident) is used again before a segment's untouched tail, and the used part of each segment
 * stays compact. Best fit took the tail whenever it was the smaller span: a program that frees
 * everything and allocates it again touched a third more memory (bench traverse: peak RSS 33.5
 * -> 22.1 MiB with this order). The scan is bounded: a page allocation stays cheap. */
enum { SPAN_CANDIDATES = 64 };

/* Take the front `slices` of a queued free span; the rest stays free. */
static lm_page_t* span_take(lm_segments_tld_t* tld, lm_page_t* span, size_t bin, size_t slices) {
  lm_segment_t* segment = lm_segment_of(span);
  queue_remove(&tld->spans[bin], span);
  size_t idx = (size_t)(span - segment->slices);
  size_t rest = span->slice_count - slices;
  if (rest > 0) lm_span_free(tld, segment, idx + slices, rest);
  return mark_run(segment, idx, slices, 1);
}

lm_page_t* lm_span_alloc(lm_segments_tld_t* tld, size_t slices, int arena_id) {
  lm_page_t* best = NULL;
  size_t best_bin = 0, seen = 0;
  for (size_t bin = span_bin(slices); bin < LM_SPAN_QUEUES && seen < SPAN_CANDIDATES; bin++) {
    for (lm_page_t* span = tld->spans[bin].first; span != NULL && seen < SPAN_CANDIDATES;
         span = span->next) {
      if (span->slice_count < slices || !segment_suits(lm_segment_of(span), arena_id)) continue;
      seen++;
      if (best == NULL || (uintptr_t)span < (uintptr_t)best) { best = span; best_bin = bin; }
    }
  }
  if (best == NULL) return NULL;
  return span_take(tld, best, best_bin, slices);
}

lm_page_t* lm_span_alloc_in(lm_segments_tld_t* tld, lm_segment_t* segment, size_t slices) {
  lm_page_t* span = &segment->slices[segment->info_slices];
  if (span->block_size != 0 || span->slice_count < slices) return NULL;
  return span_take(tld, span, span_bin(span->slice_count), slices);
}

bool lm_span_resize(lm_segments_tld_t* tld, lm_segment_t* segment, lm_page_t* page, size_t slices) {
  size_t idx = (size_t)(page - segment->slices);
  size_t n = page->slice_count;
  if (slices > n) {
    size_t end = idx + n;
    if (end >= segment->segment_slices) return false;
    lm_page_t* next = &segment->slices[end];
    if (next->block_size != 0 || next->slice_count < slices - n) return false;
    size_t rest = next->slice_count - (slices - n);
    queue_remove(&tld->spans[span_bin(next->slice_count)], next);
    if (rest > 0) lm_span_free(tld, segment, idx + slices, rest);
  } else if (slices < n) {
    /* The tail merges with a free span after it; the page before it is not free. */
    lm_span_free_coalesce(tld, segment, idx + slices, n - slices);
  }
  mark_run(segment, idx, slices, page->block_size);
  return true;
}

bool lm_span_available(lm_segments_tld_t* tld, size_t slices, int arena_id) {
  for (size_t bin = span_bin(slices); bin < LM_SPAN_QUEUES; bin++) {
    for (lm_page_t* span = tld->spans[bin].first; span != NULL; span = span->next) {
      if (span->slice_count >= slices && segment_suits(lm_segment_of(span), arena_id)) return true;
    }
  }
  return false;
}

/* Visit the free spans of a normal segment. */
static void for_each_span(lm_segments_tld_t* tld, lm_segment_t* segment, bool queue) {
  size_t idx = segment->info_slices;
  while (idx < segment->segment_slices) {
    lm_page_t* slice = &segment->slices[idx];
    size_t n = slice->slice_count > 0 ? slice->slice_count : 1;
    if (slice->block_size == 0) {
      lm_span_queue_t* q = &tld->spans[span_bin(n)];
      if (queue) queue_push(q, slice);
      else queue_remove(q, slice);
    }
    idx += n;
  }
}

void lm_span_remove_all(lm_segments_tld_t* tld, lm_segment_t* segment) {
  for_each_span(tld, segment, false);
}
void lm_span_queue_all(lm_segments_tld_t* tld, lm_segment_t* segment) {
  for_each_span(tld, segment, true);
}
