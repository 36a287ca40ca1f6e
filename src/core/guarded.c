/* Guarded sampling: one in `guarded_sample_rate` mallocs of a heap (sizes within its bounds) is
 * placed right before an inaccessible OS page, so an overflow out of it faults at the first
 * byte past the block (with guarded_precise; else past its 16-byte rounding). Cheap enough for
 * production at 1 in thousands; compiled into -Dguarded and debug builds.
 *
 * A sampled block is the tail of an ordinary block of a larger class:
 *   base: [tag][guard address][p][16 bytes] ... p: [size bytes][guard page][rest of the block]
 * p is an interior pointer (its page is marked HAS_ALIGNED), which is how free and usable size
 * find `base`; the tag, a keyed hash of `base`, tells them it is guarded and where the guard
 * page is, so it can be opened again before the block is reused. */
#include <string.h>

#include "core.h"

/* tag, guard address, the pointer handed out, then room for the debug padding's fill */
#define GUARDED_HEADER (6 * sizeof(uintptr_t))
#define GUARDED_WORDS 3
#define NEVER SIZE_MAX                            /* a countdown that does not run out */

#if LM_GUARDED

static uintptr_t tag_of(const void* base) {
  return (((uintptr_t)base ^ lm_process.cookie_key) * (uintptr_t)0x9E3779B97F4A7C15ull) | 1;
}

static size_t os_page(void) { return lm_process.arenas.caps.page_size; }

/* The guard page of the guarded block that holds p (p: the block's start or the pointer handed
 * out), or NULL when it is an ordinary block. */
static uint8_t* guard_of(const lm_page_t* page, const void* p, const uintptr_t** header) {
  if (!(lm_page_flags(page) & LM_PAGE_HAS_ALIGNED) || page->block_size < GUARDED_HEADER) {
    return NULL;
  }
  const uintptr_t* base = (const uintptr_t*)lm_page_block_of(page, p);
  if (base[0] != tag_of(base)) return NULL;
  uint8_t* guard = (uint8_t*)base[1];
  /* A forged tag cannot point the unguarding anywhere but inside this very block. */
  uint8_t* end = (uint8_t*)base + page->block_size;
  if (((uintptr_t)guard & (os_page() - 1)) != 0 ||
      guard < (const uint8_t*)base + GUARDED_HEADER || guard + os_page() > end) {
    return NULL;
  }
  if (header != NULL) *header = base;
  return guard;
}

static void* guarded_alloc(lm_heap_t* heap, size_t size, bool zero) {
  size_t psize = os_page();
  bool precise = lm_option_get(mi_option_guarded_precise) != 0;
  size_t gsize = size == 0 ? 1 : size;
  if (!precise) gsize = lm_align_up(gsize, 16); /* keeps malloc's 16-byte alignment */
  size_t request = gsize + GUARDED_HEADER + 2 * psize;
  if (request < size) return NULL; /* overflow */
  uint8_t* base = lm_heap_malloc_unsampled(heap, request, false);
  if (base == NULL) return NULL;
  lm_page_t* page = lm_segment_page_of(lm_segment_of(base), base);
  /* The guard is the last whole OS page before the block's end (and its debug padding). */
  uint8_t* end = base + page->block_size - LM_PADDING_SIZE;
  uint8_t* guard = (uint8_t*)lm_align_down((uintptr_t)(end - psize), psize);
  uint8_t* p = guard - gsize; /* >= base + GUARDED_HEADER: the block has 2 pages to spare */
  if (!lm_os_protect(&lm_process.arenas, guard, psize, true)) {
    mi_free(base);
    return NULL;
  }
  uintptr_t* header = (uintptr_t*)base;
  header[0] = tag_of(base);
  header[1] = (uintptr_t)guard;
  header[2] = (uintptr_t)p;
  if (LM_PADDING) {
    /* Padding: the base block's own request is its header (its canary stays after the
     * guard page, readable); the bytes counted are those. */
    const size_t own = GUARDED_WORDS * sizeof(uintptr_t);
    lm_padding_init(page, (lm_block_t*)base, own);
    if (LM_DEBUG_FILL) {
      atomic_fetch_sub_explicit(&lm_process.stats.malloc_requested.current,
                                (int64_t)(request - own), memory_order_relaxed);
      atomic_fetch_sub_explicit(&lm_process.stats.malloc_requested.total,
                                (int64_t)(request - own), memory_order_relaxed);
    }
  }
  lm_page_flags_update(page, LM_PAGE_HAS_ALIGNED, 0);
  if (zero) memset(p, 0, gsize);
  lm_counter_add(&heap->tld->stats.malloc_guarded_count, 1);
  return p;
}

static void countdown_restart(lm_heap_t* heap) {
  heap->guarded_countdown = heap->guarded_sample_rate > 0 ? heap->guarded_sample_rate : NEVER;
}

void* lm_heap_malloc_sampled(lm_heap_t* heap, size_t size, bool zero) {
  countdown_restart(heap);
  if (heap->guarded_sample_rate > 0 && size >= heap->guarded_size_min &&
      size <= heap->guarded_size_max) {
    void* p = guarded_alloc(heap, size, zero);
    if (p != NULL) return p;
  }
  return lm_heap_malloc_unsampled(heap, size, zero);
}

static void set_sample_rate(lm_heap_t* heap, size_t rate, size_t seed) {
  heap->guarded_sample_rate = rate;
  if (rate == 0) {
    heap->guarded_countdown = NEVER;
    return;
  }
  /* The first sample comes somewhere in the first `rate` mallocs: at random, or fixed by a
   * seed so that runs repeat. */
  uint64_t r = seed != 0 ? seed : lm_random_next(&heap->random);
  heap->guarded_countdown = (size_t)(r % rate) + 1;
}

void lm_heap_guarded_init(lm_heap_t* heap) {
  long min = lm_option_get(mi_option_guarded_min);
  long max = lm_option_get(mi_option_guarded_max);
  heap->guarded_size_min = min > 0 ? (size_t)min : 0;
  heap->guarded_size_max = max > 0 ? (size_t)max : SIZE_MAX;
  long rate = lm_option_get(mi_option_guarded_sample_rate);
  set_sample_rate(heap, rate > 0 ? (size_t)rate : 0,
                  (size_t)lm_option_get(mi_option_guarded_sample_seed));
}

void lm_guarded_unguard(const lm_page_t* page, const void* p) {
  const uintptr_t* header = NULL;
  uint8_t* guard = guard_of(page, p, &header);
  if (guard == NULL) return;
  lm_os_protect(&lm_process.arenas, guard, os_page(), false);
  ((uintptr_t*)header)[0] = 0; /* no longer guarded */
}

void lm_guarded_block(const lm_page_t* page, void* base, void** p, size_t* size) {
  const uintptr_t* header = NULL;
  uint8_t* guard = guard_of(page, base, &header);
  if (guard == NULL || (void*)header != base) return;
  uint8_t* user = (uint8_t*)header[2];
  if (user < (uint8_t*)base + GUARDED_HEADER || user > guard) return;
  *p = user;
  *size = (size_t)(guard - user);
}

size_t lm_guarded_usable_size(const lm_page_t* page, const void* p) {
  const uintptr_t* base = NULL;
  uint8_t* guard = guard_of(page, p, &base);
  if (guard == NULL || (const void*)base == p || (const uint8_t*)p > guard) return 0;
  return (size_t)(guard - (const uint8_t*)p);
}

void mi_heap_guarded_set_sample_rate(mi_heap_t* heap, size_t sample_rate, size_t seed) {
  if (heap == NULL || !lm_heap_is_initialized(heap)) return;
  set_sample_rate(heap, sample_rate, seed);
}

void mi_heap_guarded_set_size_bound(mi_heap_t* heap, size_t min, size_t max) {
  if (heap == NULL || !lm_heap_is_initialized(heap)) return;
  heap->guarded_size_min = min;
  heap->guarded_size_max = max > 0 ? max : SIZE_MAX;
}

#else /* no guarded sampling in this build: the calls are accepted and do nothing */

void* lm_heap_malloc_sampled(lm_heap_t* heap, size_t size, bool zero) {
  heap->guarded_countdown = NEVER;
  return lm_heap_malloc_unsampled(heap, size, zero);
}
void lm_heap_guarded_init(lm_heap_t* heap) { heap->guarded_countdown = NEVER; }
void lm_guarded_unguard(const lm_page_t* page, const void* p) { (void)page, (void)p; }
void lm_guarded_block(const lm_page_t* page, void* base, void** p, size_t* size) {
  (void)page, (void)base, (void)p, (void)size;
}
size_t lm_guarded_usable_size(const lm_page_t* page, const void* p) {
  (void)page, (void)p;
  return 0;
}
void mi_heap_guarded_set_sample_rate(mi_heap_t* heap, size_t sample_rate, size_t seed) {
  (void)heap, (void)sample_rate, (void)seed;
}
void mi_heap_guarded_set_size_bound(mi_heap_t* heap, size_t min, size_t max) {
  (void)heap, (void)min, (void)max;
}

#endif
