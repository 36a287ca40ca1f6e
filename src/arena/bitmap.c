/* Atomic bitmaps (see bitmap.h). Bits of a run inside one field change with one CAS; runs that
 * cross fields are set field by field and rolled back if a later field is taken meanwhile. */
#include "bitmap.h"

static inline uint64_t field_mask(size_t bit, size_t count) {
  return count >= 64 ? ~(uint64_t)0 : (((uint64_t)1 << count) - 1) << bit;
}

/* Apply f over the fields touched by [idx, idx+count): returns the AND of f's results. */
typedef bool field_op_t(lm_bitmap_field_t* field, uint64_t mask);

static bool field_set(lm_bitmap_field_t* field, uint64_t mask) {
  return (atomic_fetch_or_explicit(field, mask, memory_order_acq_rel) & mask) == 0;
}
static bool field_clear(lm_bitmap_field_t* field, uint64_t mask) {
  return (atomic_fetch_and_explicit(field, ~mask, memory_order_acq_rel) & mask) == mask;
}
static bool field_all_set(lm_bitmap_field_t* field, uint64_t mask) {
  return (atomic_load_explicit(field, memory_order_acquire) & mask) == mask;
}
static bool field_any_set(lm_bitmap_field_t* field, uint64_t mask) {
  return (atomic_load_explicit(field, memory_order_acquire) & mask) != 0;
}
static bool field_try_set(lm_bitmap_field_t* field, uint64_t mask) {
  uint64_t old = atomic_load_explicit(field, memory_order_relaxed);
  do {
    if ((old & mask) != 0) return false;
  } while (!atomic_compare_exchange_weak_explicit(field, &old, old | mask, memory_order_acq_rel,
                                                  memory_order_relaxed));
  return true;
}

static bool for_fields(lm_bitmap_field_t* bm, size_t idx, size_t count, field_op_t* op,
                       bool all) {
  bool result = true;
  while (count > 0) {
    size_t bit = idx % 64;
    size_t n = lm_min(count, 64 - bit);
    bool r = op(&bm[idx / 64], field_mask(bit, n));
    if (all) result = result && r;
    else if (r) return true;
    idx += n;
    count -= n;
  }
  return all ? result : false;
}

bool lm_bitmap_set(lm_bitmap_field_t* bm, size_t idx, size_t count) {
  return for_fields(bm, idx, count, field_set, true);
}
bool lm_bitmap_clear(lm_bitmap_field_t* bm, size_t idx, size_t count) {
  return for_fields(bm, idx, count, field_clear, true);
}
bool lm_bitmap_is_all_set(lm_bitmap_field_t* bm, size_t idx, size_t count) {
  return for_fields(bm, idx, count, field_all_set, true);
}
bool lm_bitmap_is_any_set(lm_bitmap_field_t* bm, size_t idx, size_t count) {
  return for_fields(bm, idx, count, field_any_set, false);
}

bool lm_bitmap_try_set_range(lm_bitmap_field_t* bm, size_t idx, size_t count) {
  size_t done = 0;
  while (done < count) {
    size_t at = idx + done;
    size_t n = lm_min(count - done, 64 - at % 64);
    if (!field_try_set(&bm[at / 64], field_mask(at % 64, n))) {
      if (done > 0) lm_bitmap_clear(bm, idx, done); /* roll back the fields we took */
      return false;
    }
    done += n;
  }
  return true;
}

bool lm_bitmap_try_claim(lm_bitmap_field_t* bm, size_t bit_count, size_t start, size_t count,
                         size_t* idx) {
  if (count == 0 || count > bit_count) return false;
  if (start >= bit_count) start = 0;
  /* Scan candidate start positions, wrapping once; a run may not wrap around the end. */
  for (size_t visited = 0; visited < bit_count;) {
    size_t i = (start + visited) % bit_count;
    if (i + count > bit_count) {
      visited += bit_count - i; /* skip to the wrap point */
      continue;
    }
    uint64_t field = atomic_load_explicit(&bm[i / 64], memory_order_relaxed);
    if (field == ~(uint64_t)0 && i % 64 == 0) {
      visited += 64;
      continue;
    }
    if (!lm_bitmap_is_any_set(bm, i, count) && lm_bitmap_try_set_range(bm, i, count)) {
      *idx = i;
      return true;
    }
    visited++;
  }
  return false;
}

size_t lm_bitmap_count(lm_bitmap_field_t* bm, size_t bit_count) {
  size_t n = 0;
  for (size_t f = 0; f < lm_divide_up(bit_count, 64); f++) {
    n += lm_popcount64(atomic_load_explicit(&bm[f], memory_order_relaxed));
  }
  return n;
}
