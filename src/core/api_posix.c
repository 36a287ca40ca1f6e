/* The mi_-prefixed equivalents of POSIX, BSD, Windows CRT and glibc allocation calls, the "u"
 * variants that also report the usable size, sized and aligned frees, and the zero-preserving
 * reallocations on the default heap (facts 1.3, 1.7, 1.13). All of it is a thin layer over the
 * core's lm_heap_* paths; nothing here is on a fast path except the sized frees, which are
 * mi_free once the debug checks are compiled out.
 *
 * With LM_OVERRIDE the libc names of this family are exported too (facts 3), as aliases of the
 * functions here; override.h lists them.
 */
#include <stdlib.h> /* getenv: mi_dupenv_s only, never on an allocation path */
#include <string.h>

#include "core.h"

/* count*size, reporting an overflow the way the allocation calls do (facts 4.21). */
static bool total_size(size_t count, size_t size, size_t* total) {
  if (lm_likely(!lm_mul_overflow(count, size, total))) return true;
  lm_error(EOVERFLOW, "allocation size overflow (%zu * %zu bytes)", count, size);
  return false;
}

/* ---- checked and plain frees ----------------------------------------------------------------- */

void mi_cfree(void* p) mi_attr_noexcept {
  if (mi_is_in_heap_region(p)) mi_free(p);
}

/* Sizes and alignments are promises the caller makes; only a debug build checks them. */
void mi_free_size(void* p, size_t size) mi_attr_noexcept {
  lm_assert(p == NULL || size <= lm_usable_size(p));
  (void)size;
  mi_free(p);
}

void mi_free_size_aligned(void* p, size_t size, size_t alignment) mi_attr_noexcept {
  lm_assert(p == NULL || size <= lm_usable_size(p));
  lm_assert(((uintptr_t)p & (alignment - 1)) == 0);
  (void)size;
  (void)alignment;
  mi_free(p);
}

void mi_free_aligned(void* p, size_t alignment) mi_attr_noexcept {
  lm_assert(((uintptr_t)p & (alignment - 1)) == 0);
  (void)alignment;
  mi_free(p);
}

void mi_free_small(void* p) mi_attr_noexcept { mi_free(p); }

/* ---- sizes ----------------------------------------------------------------------------------- */

void* mi__expand(void* p, size_t newsize) mi_attr_noexcept {
  void* q = mi_expand(p, newsize);
  if (q == NULL) errno = ENOMEM;
  return q;
}

size_t mi_malloc_size(const void* p) mi_attr_noexcept { return lm_usable_size(p); }
/* A function of its own, not an alias: Mach-O has no symbol aliases. */
size_t mi_malloc_usable_size(const void* p) mi_attr_noexcept { return lm_usable_size(p); }
size_t mi_malloc_good_size(size_t size) mi_attr_noexcept { return mi_good_size(size); }

/* ---- array reallocation ---------------------------------------------------------------------- */

/* BSD: NULL on overflow (errno EOVERFLOW) or when memory runs out (ENOMEM); p stays valid. */
void* mi_reallocarray(void* p, size_t count, size_t size) mi_attr_noexcept {
  size_t total;
  if (lm_unlikely(!total_size(count, size, &total))) {
    errno = EOVERFLOW;
    return NULL;
  }
  return lm_heap_realloc(lm_heap_get_default(), p, total, false);
}

/* NetBSD: `pptr` points at the pointer; the result is 0 or an errno value, and errno itself is
 * left as it was. On failure *pptr keeps the old block; a zero-sized request frees it and
 * stores NULL. */
int mi_reallocarr(void* pptr, size_t count, size_t size) mi_attr_noexcept {
  if (lm_unlikely(pptr == NULL)) return EINVAL;
  int saved = errno;
  void* p;
  memcpy(&p, pptr, sizeof(p)); /* pptr need not be aligned for a void** */
  void* q = NULL;
  int err = 0;
  if (count == 0 || size == 0) {
    mi_free(p);
  } else {
    size_t total;
    if (lm_unlikely(!total_size(count, size, &total))) {
      err = EOVERFLOW;
    } else {
      q = lm_heap_realloc(lm_heap_get_default(), p, total, false);
      if (lm_unlikely(q == NULL)) err = ENOMEM;
    }
  }
  if (err == 0) memcpy(pptr, &q, sizeof(q));
  errno = saved;
  return err;
}

/* ---- zero-preserving reallocation (only for blocks that were allocated zeroed) --------------- */

void* mi_rezalloc(void* p, size_t newsize) mi_attr_noexcept {
  return lm_heap_realloc(lm_heap_get_default(), p, newsize, true);
}

void* mi_recalloc(void* p, size_t count, size_t size) mi_attr_noexcept {
  size_t total;
  if (lm_unlikely(!total_size(count, size, &total))) {
    errno = ENOMEM;
    return NULL;
  }
  return mi_rezalloc(p, total);
}

void* mi_rezalloc_aligned_at(void* p, size_t newsize, size_t alignment,
                             size_t offset) mi_attr_noexcept {
  return lm_heap_realloc_aligned_at(lm_heap_get_default(), p, newsize, alignment, offset, true);
}

void* mi_rezalloc_aligned(void* p, size_t newsize, size_t alignment) mi_attr_noexcept {
  return mi_rezalloc_aligned_at(p, newsize, alignment, 0);
}

void* mi_recalloc_aligned_at(void* p, size_t count, size_t size, size_t alignment,
                             size_t offset) mi_attr_noexcept {
  size_t total;
  if (lm_unlikely(!total_size(count, size, &total))) {
    errno = ENOMEM;
    return NULL;
  }
  return mi_rezalloc_aligned_at(p, total, alignment, offset);
}

void* mi_recalloc_aligned(void* p, size_t count, size_t size, size_t alignment) mi_attr_noexcept {
  return mi_recalloc_aligned_at(p, count, size, alignment, 0);
}

/* MSVC's _aligned_recalloc and _aligned_offset_recalloc: the same calls in another order. */
void* mi_aligned_recalloc(void* p, size_t count, size_t size, size_t alignment) mi_attr_noexcept {
  return mi_recalloc_aligned_at(p, count, size, alignment, 0);
}

void* mi_aligned_offset_recalloc(void* p, size_t count, size_t size, size_t alignment,
                                 size_t offset) mi_attr_noexcept {
  return mi_recalloc_aligned_at(p, count, size, alignment, offset);
}

/* ---- "u" variants: the usable size of the result (0 when there is none) ---------------------- */

static inline void* report_size(void* p, size_t* block_size) {
  if (block_size != NULL) *block_size = p != NULL ? lm_usable_size(p) : 0;
  return p;
}

void* mi_umalloc(size_t size, size_t* block_size) mi_attr_noexcept {
  return report_size(lm_heap_malloc(lm_heap_get_default(), size, false), block_size);
}

void* mi_ucalloc(size_t count, size_t size, size_t* block_size) mi_attr_noexcept {
  size_t total;
  if (lm_unlikely(!total_size(count, size, &total))) {
    errno = ENOMEM;
    return report_size(NULL, block_size);
  }
  return report_size(lm_heap_malloc(lm_heap_get_default(), total, true), block_size);
}

/* `block_size_pre` is the usable size of p before the call (0 for NULL); `block_size_post` that
 * of the result (0 on failure, when p is still valid). */
void* mi_urealloc(void* p, size_t newsize, size_t* block_size_pre,
                  size_t* block_size_post) mi_attr_noexcept {
  if (block_size_pre != NULL) *block_size_pre = lm_usable_size(p);
  return report_size(lm_heap_realloc(lm_heap_get_default(), p, newsize, false), block_size_post);
}

void mi_ufree(void* p, size_t* block_size) mi_attr_noexcept {
  if (block_size != NULL) *block_size = lm_usable_size(p);
  mi_free(p);
}

void* mi_umalloc_aligned(size_t size, size_t alignment, size_t* block_size) mi_attr_noexcept {
  void* p = lm_heap_malloc_aligned_at(lm_heap_get_default(), size, alignment, 0, false);
  return report_size(p, block_size);
}

void* mi_uzalloc_aligned(size_t size, size_t alignment, size_t* block_size) mi_attr_noexcept {
  void* p = lm_heap_malloc_aligned_at(lm_heap_get_default(), size, alignment, 0, true);
  return report_size(p, block_size);
}

void* mi_umalloc_small(size_t size, size_t* block_size) mi_attr_noexcept {
  return report_size(mi_malloc_small(size), block_size);
}

void* mi_uzalloc_small(size_t size, size_t* block_size) mi_attr_noexcept {
  return report_size(mi_zalloc_small(size), block_size);
}

/* ---- Windows CRT string and environment helpers ---------------------------------------------- */

unsigned short* mi_wcsdup(const unsigned short* s) mi_attr_noexcept {
  if (s == NULL) return NULL;
  size_t len = 0;
  while (s[len] != 0) len++;
  size_t bytes = (len + 1) * sizeof(unsigned short);
  unsigned short* t = lm_heap_malloc(lm_heap_get_default(), bytes, false);
  if (t != NULL) memcpy(t, s, bytes);
  return t;
}

unsigned char* mi_mbsdup(const unsigned char* s) mi_attr_noexcept {
  return (unsigned char*)mi_strdup((const char*)s);
}

/* _dupenv_s: *buf is a copy of the variable (NULL, with *size 0, when it is not set) and *size
 * counts the terminating zero. EINVAL without buf or name, ENOMEM when the copy fails. */
int mi_dupenv_s(char** buf, size_t* size, const char* name) mi_attr_noexcept {
  if (buf == NULL || name == NULL) return EINVAL;
  *buf = NULL;
  if (size != NULL) *size = 0;
  const char* value = getenv(name);
  if (value == NULL) return 0;
  size_t n = strlen(value) + 1;
  char* copy = lm_heap_malloc(lm_heap_get_default(), n, false);
  if (copy == NULL) return ENOMEM;
  memcpy(copy, value, n);
  *buf = copy;
  if (size != NULL) *size = n;
  return 0;
}

/* Wide environment strings exist only on Windows. */
int mi_wdupenv_s(unsigned short** buf, size_t* size, const unsigned short* name) mi_attr_noexcept {
  (void)name;
  if (buf != NULL) *buf = NULL;
  if (size != NULL) *size = 0;
  return EINVAL;
}

/* ---- libc names ------------------------------------------------------------------------------ */
/* BSD reallocf: realloc that frees p when it fails (exported as reallocf: override.h). */
void* lm_reallocf(void* p, size_t newsize) {
  void* q = lm_heap_realloc(lm_heap_get_default(), p, newsize, false);
  if (q == NULL && p != NULL) mi_free(p);
  return q;
}

/* The CRT's _aligned_malloc: size first, then alignment (exported as such: override.h). */
void* lm_crt_aligned_malloc(size_t size, size_t alignment) {
  return lm_heap_malloc_aligned_at(lm_heap_get_default(), size, alignment, 0, false);
}

LM_OVERRIDE_NAMES(mi_reallocarray)
LM_OVERRIDE_NAMES(mi_reallocarr)
LM_OVERRIDE_NAMES(mi_malloc_size)
LM_OVERRIDE_NAMES(mi_malloc_good_size)
LM_OVERRIDE_NAMES(mi_free_small)
LM_OVERRIDE_NAMES(mi_recalloc)
LM_OVERRIDE_NAMES(lm_reallocf)
LM_OVERRIDE_NAMES(lm_crt_aligned_malloc)
