/* Size classes: the block size of each bin and the rounding of large requests. */
#include "core.h"

size_t lm_bin_size(uint8_t bin) {
  if (bin <= 8) return (size_t)bin * 8;
  size_t b = ((size_t)bin + 3) >> 2;
  size_t r = ((size_t)bin + 3) & 3;
  return ((5 + r) << (b - 2)) * 8;
}

size_t lm_good_size_large(size_t size) {
  /* OS-page granularity keeps large blocks tight; their pages are slice-rounded anyway. */
  return lm_align_up(size, 4 * LM_KiB);
}

size_t mi_good_size(size_t size) mi_attr_noexcept {
  if (size <= LM_MEDIUM_OBJ_SIZE_MAX) return lm_bin_size(lm_bin(size));
  size_t good = lm_good_size_large(size);
  return good < size ? size : good; /* overflow: the request itself */
}
