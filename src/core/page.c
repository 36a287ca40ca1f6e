/* Pages: setting up a fresh page, threading blocks into its free list lazily, and collecting
 * the blocks freed by the owner (secure builds: local_free; others push them straight onto free)
 * and by other threads (xthread_free).
 * Invariant: used + |free| + |local_free| == capacity <= reserved, where `used` still counts the
 * blocks waiting in the thread-free and delayed lists (the owner subtracts them on collect).
 */
#include <string.h>

#include "core.h"

uintptr_t lm_page_push_thread_free(lm_page_t* page, lm_block_t* block) {
  uintptr_t tfree = atomic_load_explicit(&page->xthread_free, memory_order_relaxed);
  uintptr_t pushed;
  do {
    lm_block_set_next(page, block, lm_tf_block(tfree));
    pushed = lm_tf_push(tfree, block);
  } while (!atomic_compare_exchange_weak_explicit(&page->xthread_free, &tfree, pushed,
                                                  memory_order_release, memory_order_relaxed));
  return pushed;
}

/* Acquire: pairs with the release of the CAS that ends the hand-over, so the remote free's
 * last access to the page comes before whatever the caller does to it next. */
uintptr_t lm_page_wait_handover(lm_page_t* page) {
  uintptr_t tfree = atomic_load_explicit(&page->xthread_free, memory_order_acquire);
  while (lm_tf_state(tfree) == LM_TF_DELAYED_FREEING) {
    lm_cpu_relax();
    tfree = atomic_load_explicit(&page->xthread_free, memory_order_acquire);
  }
  return tfree;
}

void lm_page_set_delayed(lm_page_t* page, uintptr_t state, bool override_never) {
  uintptr_t tfree = lm_page_wait_handover(page);
  uintptr_t tfreex;
  do {
    uintptr_t old = lm_tf_state(tfree);
    if (old == LM_TF_DELAYED_FREEING) { /* another hand-over began since */
      tfree = lm_page_wait_handover(page);
      continue;
    }
    if (old == state || (old == LM_TF_NEVER_DELAYED && !override_never)) return;
    tfreex = (tfree & ~(uintptr_t)LM_TF_STATE_MASK) | state;
    if (atomic_compare_exchange_weak_explicit(&page->xthread_free, &tfree, tfreex,
                                              memory_order_acq_rel, memory_order_relaxed)) {
      return;
    }
  } while (true);
}

/* Take the whole thread-free list over: its first block (NULL if empty); `used` drops by its
 * length. The length comes with the list (see lm_tf_push), else from a walk. */
static lm_block_t* take_thread_free(lm_page_t* page) {
  uintptr_t tfree = atomic_load_explicit(&page->xthread_free, memory_order_relaxed);
  if (lm_tf_block(tfree) == NULL) return NULL;
  while (!atomic_compare_exchange_weak_explicit(&page->xthread_free, &tfree,
                                                tfree & LM_TF_BITS, memory_order_acquire,
                                                memory_order_relaxed)) {
  }
  lm_block_t* head = lm_tf_block(tfree);
  size_t count = lm_tf_count(tfree);
  if (count == 0) {
    count = 1;
    for (lm_block_t* b = head; (b = lm_block_next(page, b)) != NULL && count <= page->capacity;) {
      count++;
    }
  }
  if (count > page->used) {
    lm_error(EFAULT, "corrupted thread-free list in page %p", (void*)page);
    return NULL; /* leak the list rather than follow it further */
  }
  page->used -= (uint16_t)count;
  return head;
}

/* The last block of a non-empty list. */
static lm_block_t* list_tail(lm_page_t* page, lm_block_t* list) {
  for (lm_block_t* next; (next = lm_block_next(page, list)) != NULL;) list = next;
  return list;
}

void lm_page_collect(lm_page_t* page, bool force) {
  lm_block_t* remote = take_thread_free(page);
  if (remote != NULL) {
    if (page->free == NULL && !force) {
      /* Hand the remote blocks out first; local_free (if any) waits for the next collect. */
      page->free = remote;
      lm_page_free_dirty(page);
      return;
    }
    /* Into local_free: in front of it (one walk of the remote list, whose length is bounded
     * by the frees since the last collect; local_free can be long and be walked again and
     * again). */
    if (page->local_free != NULL) lm_block_set_next(page, list_tail(page, remote), page->local_free);
    page->local_free = remote;
  }
  if (page->local_free == NULL) return;
  if (page->free == NULL) {
    page->free = page->local_free;
    page->local_free = NULL;
    lm_page_free_dirty(page);
  } else if (force) {
    lm_block_set_next(page, list_tail(page, page->local_free), page->free);
    page->free = page->local_free;
    page->local_free = NULL;
    lm_page_free_dirty(page);
  }
}

void lm_page_extend(lm_page_t* page) {
  if (page->capacity >= page->reserved) return;
  size_t bsize = page->block_size;
  size_t step = 4 * LM_KiB / (bsize > 0 ? bsize : 1);
  if (step < 4) step = 4;
  size_t extend = lm_min(step, (size_t)(page->reserved - page->capacity));
  lm_heap_t* heap = lm_page_heap(page);
  if (heap != NULL) lm_counter_add(&heap->tld->stats.pages_extended, 1);
  uint8_t* start = page->page_start + (size_t)page->capacity * bsize;
  if (LM_PADDING) {
    /* Every block gets its canary now; debug builds make fresh blocks look freed too, so the
     * reuse check holds for every block. */
    for (size_t i = 0; i < extend; i++) {
      lm_track_open(start + i * bsize, bsize);
      lm_padding_fresh(page, (lm_block_t*)(start + i * bsize));
      if (LM_DEBUG_FILL) lm_debug_fill_freed(page, (lm_block_t*)(start + i * bsize));
      lm_track_close(start + i * bsize, bsize);
    }
    if (LM_DEBUG_FILL) lm_page_free_dirty(page);
  }
  if (LM_SECURE_SHUFFLE && extend > 2 && heap != NULL) {
    /* Secure builds hand new blocks out in an order an overflow cannot count on: the new
     * blocks form up to 8 runs, and each next block comes from a random run (in address order
     * within it). A block's memory neighbour is rarely its neighbour in time, while each run
     * stays a sequential stream the hardware can prefetch (a full shuffle cost up to 60% more
     * time on allocation-heavy loops). One generator draw per extend seeds a cheap mixer. */
    enum { RUNS_MAX = 8 };
    size_t runs = extend >= 32 ? RUNS_MAX : extend >= 8 ? 4 : 2;
    size_t next[RUNS_MAX], end[RUNS_MAX];
    size_t at = 0;
    for (size_t r = 0; r < runs; r++) {
      next[r] = at;
      at += extend / runs + (r < extend % runs ? 1 : 0);
      end[r] = at;
    }
    uint64_t state = lm_random_next(&heap->random);
    lm_block_t* first = NULL;
    lm_block_t* prev = NULL;
    for (size_t left = extend; left > 0; left--) {
      state += 0x9E3779B97F4A7C15ull;
      uint64_t z = (state ^ (state >> 31)) * 0xD6E8FEB86659FD93ull;
      size_t r = (size_t)(((z >> 32) * (uint64_t)runs) >> 32);
      while (next[r] == end[r]) r = (r + 1 == runs ? 0 : r + 1); /* a run with blocks left */
      lm_block_t* block = (lm_block_t*)(start + next[r]++ * bsize);
      if (prev != NULL) lm_block_set_next(page, prev, block);
      else first = block;
      prev = block;
    }
    lm_block_set_next(page, prev, page->free);
    page->free = first;
    page->capacity += (uint16_t)extend;
    return;
  }
  /* Thread [capacity, capacity+extend) in address order in front of the current free list. */
  lm_block_t* first = (lm_block_t*)start;
  lm_block_t* last = (lm_block_t*)(start + (extend - 1) * bsize);
  for (uint8_t* b = start; b < (uint8_t*)last; b += bsize) {
    lm_block_set_next(page, (lm_block_t*)b, (lm_block_t*)(b + bsize));
  }
  lm_block_set_next(page, last, page->free);
  page->free = first;
  page->capacity += (uint16_t)extend;
}

void lm_free_list_corrupt(const lm_page_t* page, const lm_block_t* block) {
  lm_error(EFAULT, "corrupted free list entry in block %p of page %p (block size %zu)",
           (const void*)block, (const void*)page, page->block_size);
}

/* ---- padding (secure and debug builds), fill patterns (debug builds) ------------------------- */
static size_t padding_room(const lm_page_t* page) { return page->block_size - LM_PADDING_SIZE; }

/* A block the page just grew to: a canary and no request, so the check of the block above
 * it holds before it is ever handed out. The rest is left alone (fresh memory stays zero). */
void lm_padding_fresh(const lm_page_t* page, lm_block_t* block) {
  lm_padding_t* pad = lm_padding_of(page, block);
  pad->canary = lm_padding_canary(page, block);
  pad->delta = (uint32_t)padding_room(page);
}

size_t lm_padding_requested(const lm_page_t* page, const lm_block_t* block) {
  const lm_padding_t* pad = lm_padding_of(page, block);
  size_t room = padding_room(page);
  return pad->delta <= room ? room - pad->delta : room;
}

/* The offset in the block of the first byte after the request that differs from what
 * lm_padding_init wrote (the slack fill, then the canary). */
static size_t padding_damage_at(const lm_page_t* page, const lm_block_t* block) {
  const lm_padding_t* pad = lm_padding_of(page, block);
  size_t room = padding_room(page);
  const uint8_t* fill = (const uint8_t*)block + room - pad->delta;
  for (size_t i = 0; i < lm_min(pad->delta, sizeof(uint64_t)); i++) {
    if (fill[i] != 0xDE) return room - pad->delta + i;
  }
  uint32_t canary = lm_padding_canary(page, block);
  for (size_t i = 0; i < sizeof(canary); i++) {
    if (((const uint8_t*)&pad->canary)[i] != ((const uint8_t*)&canary)[i]) return room + i;
  }
  return room + offsetof(lm_padding_t, delta);
}

static lm_noinline void report_overflow(const lm_page_t* page, const lm_block_t* block,
                                        bool by_neighbour) {
  const char* found = by_neighbour ? " (found when the block above it was freed)" : "";
  size_t room = padding_room(page);
  if (lm_padding_of(page, block)->delta > room) {
    /* The write ran over the whole padding, the record of the request with it: what is left
     * to say is the most the block could have been asked for. */
    lm_error(EFAULT,
             "buffer overflow in heap block %p of size %zu or less: written past its end from "
             "byte %zu or before, over its padding%s",
             (const void*)block, room, room, found);
    return;
  }
  lm_error(EFAULT,
           "buffer overflow in heap block %p of size %zu: written past its end from byte %zu%s",
           (const void*)block, lm_padding_requested(page, block),
           padding_damage_at(page, block), found);
}

bool lm_padding_ok(const lm_page_t* page, const lm_block_t* block) {
  if (lm_likely(lm_padding_intact(page, block))) return true;
  report_overflow(page, block, false);
  return false;
}

bool lm_padding_below_ok(const lm_page_t* page, const lm_block_t* block) {
  if (!lm_padding_kept_when_free(page)) return true;
  if ((const uint8_t*)block < page->page_start + page->block_size) return true; /* the first */
  const lm_block_t* below = (const lm_block_t*)((const uint8_t*)block - page->block_size);
  if (lm_likely(lm_padding_canary_ok(page, below))) return true;
  report_overflow(page, below, true);
  return false;
}

void lm_debug_fill_freed(const lm_page_t* page, lm_block_t* block) {
  /* (up to the padding: the canary stays, for the check of the block above) */
  size_t end = lm_min(padding_room(page), LM_DEBUG_FILL_CHECK + sizeof(void*));
  if (end > sizeof(void*)) memset((uint8_t*)block + sizeof(void*), 0xDF, end - sizeof(void*));
}

void lm_debug_check_reused(const lm_page_t* page, const lm_block_t* block) {
  size_t end = lm_min(padding_room(page), LM_DEBUG_FILL_CHECK + sizeof(void*));
  for (size_t i = sizeof(void*); i < end; i++) {
    if (((const uint8_t*)block)[i] != 0xDF) {
      lm_error(EFAULT, "write after free in heap block %p of size %zu (at offset %zu)",
               (const void*)block, page->block_size, i);
      return;
    }
  }
}

/* ---- free blocks of pages that stay in use --------------------------------------------------- */

/* A discarded block keeps a mark past its link and past the freed fill that debug builds check
 * on reuse; its last bytes keep the canary that the owner's free of the block above checks. */
#define DISCARD_MARK_AT (sizeof(void*) + (LM_DEBUG_FILL ? LM_DEBUG_FILL_CHECK : 0))

static uintptr_t discard_mark(const lm_block_t* block) {
  return ((uintptr_t)block ^ lm_process.cookie_key) + (uintptr_t)0x6D61726B64697363ULL;
}

size_t lm_page_discard_free(lm_page_t* page, lm_block_t* list) {
  size_t os_page = lm_os_page_size(&lm_process.arenas);
  size_t bsize = page->block_size;
  size_t front = DISCARD_MARK_AT + sizeof(uintptr_t);
  if (bsize < front + LM_PADDING_SIZE + 2 * os_page) return 0;
  size_t given = 0, count = 0;
  /* (a list is at most `reserved` long; a corrupted one is not followed further) */
  for (lm_block_t* block = list; block != NULL && count < page->reserved;
       block = lm_block_next(page, block), count++) {
    uintptr_t* mark = (uintptr_t*)((uint8_t*)block + DISCARD_MARK_AT);
    lm_track_open(mark, sizeof(*mark));
    bool done = *mark == discard_mark(block);
    *mark = discard_mark(block);
    lm_track_close(mark, sizeof(*mark));
    uintptr_t start = lm_align_up((uintptr_t)block + front, os_page);
    uintptr_t end = lm_align_down((uintptr_t)block + bsize - LM_PADDING_SIZE, os_page);
    if (done || end <= start) continue;
    if (!lm_segment_discard(&lm_process.segments, page, (void*)start, end - start)) {
      lm_error(ENOMEM, "the memory of a free block at %p could not be made accessible again",
               (void*)block);
      return given;
    }
    given += end - start;
  }
  return given;
}

void lm_page_init(lm_heap_t* heap, lm_page_t* page, size_t block_size) {
  size_t area_size;
  uint8_t* area = lm_page_area(page, &area_size);
  page->page_start = area;
  lm_track_close(area, area_size); /* blocks become accessible as they are handed out */
  /* Large and huge pages hold one block (a huge-aligned small request included). A large or
   * huge block is the whole page: its pages are slice-rounded anyway, and realloc then grows
   * into the slack without a copy (string builders that append a little at a time copied
   * the whole block every 4 KiB). */
  bool single = page->is_huge || block_size > LM_MEDIUM_OBJ_SIZE_MAX;
  if (block_size > LM_MEDIUM_OBJ_SIZE_MAX && area_size > block_size) block_size = area_size;
  page->block_size = block_size;
  page->bin = single ? LM_BIN_HUGE : lm_bin(block_size);
  size_t reserved = single ? 1 : area_size / block_size;
  page->reserved = (uint16_t)(reserved > UINT16_MAX ? UINT16_MAX : reserved);
  page->capacity = 0;
  page->used = 0;
  page->free = NULL;
  page->local_free = NULL;
  atomic_store_explicit(&page->flags, page->is_zero_init ? LM_PAGE_FREE_ZERO : 0,
                        memory_order_relaxed);
  page->retire_expire = 0;
  page->block_size_shift = lm_is_power_of_two(block_size) ? (uint8_t)lm_ctz(block_size) : 0;
  page->heap_tag = heap->tag;
  page->next = page->prev = NULL;
#if LM_PAGE_CHECKED
  page->block_size_inv = single ? 0 : UINT64_MAX / block_size + 1;
  page->keys[0] = (uintptr_t)lm_random_next(&heap->random) | 1;
  page->keys[1] = (uintptr_t)lm_random_next(&heap->random);
#endif
  atomic_store_explicit(&page->xthread_free, LM_TF_NO_DELAYED, memory_order_relaxed);
  atomic_store_explicit(&page->xheap, (uintptr_t)heap, memory_order_release);
  lm_page_stats_fresh(page, &heap->tld->stats);
  lm_page_extend(page);
}
