/* Aligned allocation. Alignments up to 64 KiB are often natural (a block size that is a
 * multiple of the alignment, in a page starting on a 64 KiB boundary); otherwise the block is
 * over-allocated and an interior pointer returned (the page is flagged so free finds the block
 * start). Alignments above 16 MiB get a huge segment placed so the block itself is aligned. */
#include <string.h>

#include "core.h"

void* lm_heap_malloc_aligned_at(lm_heap_t* heap, size_t size, size_t align, size_t offset,
                                bool zero) {
  if (lm_unlikely(align == 0 || !lm_is_power_of_two(align))) {
    /* A bad argument, not heap corruption: a warning and NULL, never a stop. */
    lm_warning("aligned allocation requires a power-of-two alignment (%zu)", align);
    errno = EINVAL;
    return NULL;
  }
  if (lm_unlikely(size > LM_MAX_ALLOC_SIZE || align > LM_MAX_ALLOC_SIZE)) {
    errno = ENOMEM;
    return NULL;
  }
  if (offset == 0) {
    if (align <= LM_MAX_ALIGN_SIZE) {
      return lm_heap_malloc_unsampled(heap, size < align ? align : size, zero);
    }
    if (align <= LM_MEDIUM_OBJ_SIZE_MAX && size + LM_PADDING_SIZE <= LM_MEDIUM_OBJ_SIZE_MAX) {
      size_t bsize = lm_bin_size(lm_bin(size + LM_PADDING_SIZE)); /* the block it will get */
      if (bsize % align == 0) return lm_heap_malloc_unsampled(heap, size, zero);
    }
    if (align > LM_BLOCK_ALIGNMENT_MAX) {
      if (!lm_heap_is_initialized(heap)) heap = lm_heap_default_init();
      return lm_malloc_generic(heap, size, zero, align);
    }
  } else if (align > LM_BLOCK_ALIGNMENT_MAX) {
    lm_error(EOVERFLOW, "an offset is not supported with alignments above %zu",
             (size_t)LM_BLOCK_ALIGNMENT_MAX);
    errno = ENOMEM;
    return NULL;
  }
  size_t oversize = size + align - 1 + (offset % align);
  if (oversize < size) {
    errno = ENOMEM;
    return NULL;
  }
  uint8_t* p = lm_heap_malloc_unsampled(heap, oversize, zero);
  if (p == NULL) return NULL;
  uintptr_t aligned = lm_align_up((uintptr_t)p + offset, align) - offset;
  if (aligned != (uintptr_t)p) {
    lm_page_t* page = lm_segment_page_of(lm_segment_of(p), p);
    lm_page_flags_update(page, LM_PAGE_HAS_ALIGNED, 0);
  }
  return (void*)aligned;
}

void* lm_heap_realloc_aligned_at(lm_heap_t* heap, void* p, size_t newsize, size_t align,
                                 size_t offset, bool zero) {
  if (align <= LM_MAX_ALIGN_SIZE && offset == 0 && ((uintptr_t)p & (align - 1)) == 0) {
    /* Blocks of 16 bytes and more are 16-aligned; smaller ones only 8. (Not for a p that is
     * not aligned already, such as one from mi_malloc_aligned_at: kept in place, it would come
     * back misaligned; found by the API fuzzer.) */
    return lm_heap_realloc(heap, p, newsize < align ? align : newsize, zero);
  }
  if (p == NULL) return lm_heap_malloc_aligned_at(heap, newsize, align, offset, zero);
  size_t size = lm_usable_size(p);
  bool aligned = lm_is_power_of_two(align) && (((uintptr_t)p + offset) & (align - 1)) == 0;
  if (aligned && newsize <= size && newsize >= size / 2) return p;
  void* newp = lm_heap_malloc_aligned_at(heap, newsize, align, offset, false);
  if (newp == NULL) return NULL;
  if (zero) { /* to the end of the block: see lm_heap_realloc */
    size_t start = size < newsize ? size : newsize;
    memset((uint8_t*)newp + start, 0, lm_usable_size(newp) - start);
  }
  memcpy(newp, p, size < newsize ? size : newsize);
  mi_free(p);
  return newp;
}

/* ---- API --------------------------------------------------------------------------------------- */

void* mi_malloc_aligned_at(size_t size, size_t align, size_t offset) mi_attr_noexcept {
  return lm_heap_malloc_aligned_at(lm_heap_get_default(), size, align, offset, false);
}
void* mi_malloc_aligned(size_t size, size_t align) mi_attr_noexcept {
  return mi_malloc_aligned_at(size, align, 0);
}
void* mi_zalloc_aligned_at(size_t size, size_t align, size_t offset) mi_attr_noexcept {
  return lm_heap_malloc_aligned_at(lm_heap_get_default(), size, align, offset, true);
}
void* mi_zalloc_aligned(size_t size, size_t align) mi_attr_noexcept {
  return mi_zalloc_aligned_at(size, align, 0);
}
void* mi_calloc_aligned_at(size_t count, size_t size, size_t align, size_t offset)
    mi_attr_noexcept {
  size_t total;
  if (!lm_count_size(count, size, &total)) return NULL;
  return mi_zalloc_aligned_at(total, align, offset);
}
void* mi_calloc_aligned(size_t count, size_t size, size_t align) mi_attr_noexcept {
  return mi_calloc_aligned_at(count, size, align, 0);
}
void* mi_realloc_aligned_at(void* p, size_t newsize, size_t align, size_t offset)
    mi_attr_noexcept {
  return lm_heap_realloc_aligned_at(lm_heap_get_default(), p, newsize, align, offset, false);
}
void* mi_realloc_aligned(void* p, size_t newsize, size_t align) mi_attr_noexcept {
  return mi_realloc_aligned_at(p, newsize, align, 0);
}

/* ---- POSIX and libc aligned entry points ------------------------------------------------------ */

int mi_posix_memalign(void** p, size_t align, size_t size) mi_attr_noexcept {
  if (p == NULL || align % sizeof(void*) != 0 || !lm_is_power_of_two(align)) return EINVAL;
  void* q = mi_malloc_aligned(size, align);
  if (q == NULL && size != 0) return ENOMEM;
  *p = q;
  return 0;
}
void* mi_memalign(size_t align, size_t size) mi_attr_noexcept {
  return mi_malloc_aligned(size, align);
}
void* mi_aligned_alloc(size_t align, size_t size) mi_attr_noexcept {
  return mi_malloc_aligned(size, align); /* lenient: size need not be a multiple */
}
void* mi_valloc(size_t size) mi_attr_noexcept {
  return mi_malloc_aligned(size, lm_os_page_size(&lm_process.arenas) ?: 4096);
}
void* mi_pvalloc(size_t size) mi_attr_noexcept {
  size_t page = lm_os_page_size(&lm_process.arenas) ?: 4096;
  size_t rounded = lm_align_up(size, page);
  if (rounded < size) {
    errno = ENOMEM;
    return NULL;
  }
  return mi_malloc_aligned(rounded == 0 ? page : rounded, page);
}

LM_OVERRIDE_NAMES(mi_posix_memalign)
LM_OVERRIDE_NAMES(mi_memalign)
LM_OVERRIDE_NAMES(mi_aligned_alloc)
LM_OVERRIDE_NAMES(mi_valloc)
LM_OVERRIDE_NAMES(mi_pvalloc)
