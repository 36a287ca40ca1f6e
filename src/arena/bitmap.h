/* Atomic bitmaps: an array of 64-bit fields; bit index = field * 64 + bit.
 * Used by arenas to claim runs of blocks without locks. A run may cross fields; a claim that
 * loses a race half-way rolls back what it set. Private to the arena layer.
 */
#pragma once
#ifndef LM_BITMAP_H
#define LM_BITMAP_H

#include "../common/common.h"

typedef _Atomic(uint64_t) lm_bitmap_field_t;

/* Find `count` consecutive clear bits among the first `bit_count` bits, starting the search at
 * `start`, and set them atomically. Returns true and the first index in *idx. */
bool lm_bitmap_try_claim(lm_bitmap_field_t* bm, size_t bit_count, size_t start, size_t count,
                         size_t* idx);
/* Set or clear bits [idx, idx+count). Return true if every bit was previously clear (set) or
 * previously set (clear). */
bool lm_bitmap_set(lm_bitmap_field_t* bm, size_t idx, size_t count);
bool lm_bitmap_clear(lm_bitmap_field_t* bm, size_t idx, size_t count);
/* Try to set bits [idx, idx+count) only if all are clear: all-or-nothing. */
bool lm_bitmap_try_set_range(lm_bitmap_field_t* bm, size_t idx, size_t count);
bool lm_bitmap_is_all_set(lm_bitmap_field_t* bm, size_t idx, size_t count);
bool lm_bitmap_is_any_set(lm_bitmap_field_t* bm, size_t idx, size_t count);
size_t lm_bitmap_count(lm_bitmap_field_t* bm, size_t bit_count);

#endif
