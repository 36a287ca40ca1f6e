/* Free spans of slices and the per-thread span queues. Private to the segment layer. */
#pragma once
#ifndef LM_SPAN_H
#define LM_SPAN_H

#include "segment.h"

void lm_span_queues_init(lm_segments_tld_t* tld);
/* Make [idx, idx+n) one free span and queue it (no coalescing). */
void lm_span_free(lm_segments_tld_t* tld, lm_segment_t* segment, size_t idx, size_t n);
/* The same, merged with free neighbours; returns the resulting span. */
lm_page_t* lm_span_free_coalesce(lm_segments_tld_t* tld, lm_segment_t* segment, size_t idx,
                                 size_t n);
/* Take `slices` slices from the best-fitting queued span (splitting it). The result has its
 * slice fields set and block_size 1 (in use); NULL when no queued span is big enough. */
lm_page_t* lm_span_alloc(lm_segments_tld_t* tld, size_t slices, int arena_id);
/* The same from the first free span of `segment` (one just made: its whole free area), or NULL
 * when that span is not free or too short. */
lm_page_t* lm_span_alloc_in(lm_segments_tld_t* tld, lm_segment_t* segment, size_t slices);
/* Resize the page in place to `slices` slices: growing takes the front of the free span right
 * after it (false when there is none or it is too short); shrinking returns the tail as a free
 * span, merged with a free neighbour. The page keeps its core fields. */
bool lm_span_resize(lm_segments_tld_t* tld, lm_segment_t* segment, lm_page_t* page, size_t slices);
/* Is a span of at least `slices` queued, in a segment suitable for `arena_id`? */
bool lm_span_available(lm_segments_tld_t* tld, size_t slices, int arena_id);
/* Take every free span of the segment out of the queues, or put them (back) in. */
void lm_span_remove_all(lm_segments_tld_t* tld, lm_segment_t* segment);
void lm_span_queue_all(lm_segments_tld_t* tld, lm_segment_t* segment);

#endif
