/* Idle heaps: full pages that other threads freed completely while their owner does not
 * allocate.
 *
 * A remote free into a full page reaches the owner through its heap's delayed list, which the
 * owner reads on its next malloc. An owner that stops allocating (a main thread waiting in
 * pthread_join, a worker parked on a queue) never reads it, and pages that other threads free
 * completely stay resident for good: bench threadchurn peaked at twice tcmalloc's memory.
 *
 * The first remote free onto a delayed list schedules a look a purge delay later. Then the
 * purger (the "drainer" here) visits each heap whose delayed list is still unread and whose
 * thread entered no slow path since the drainer's previous look (else it looks again later):
 * it moves the delayed blocks onto their pages' thread-free lists, and resets in place each
 * full page whose thread-free count reached its used count (every block freed): lists empty,
 * `used` and `capacity` zero, its memory given back to the OS while it stays accessible. A
 * full page with blocks still live gets USE_DELAYED again, so the next remote free into it
 * notifies the owner and schedules another look, and one of its freed blocks goes back onto
 * the delayed list, so that the owner's next malloc still takes the slow path. The pages keep
 * their places in the full queue; the owner frees the reset ones, and takes over the moved
 * frees, on its next slow path (`drained`).
 *
 * The owner touches full pages, and its list of heaps, only between lm_tld_enter and
 * lm_tld_leave; the drainer only while it holds the thread's `draining` flag, raised only
 * when the thread is not busy: each side raises its flag, then looks at the other's (both
 * sequentially consistent, so at most one sees the other's flag down). The owner waits for a
 * drainer that got there first; the drainer never waits for the owner: it skips a busy thread.
 * It waits only for a remote free to end its hand-over of a block (a few instructions). */
#include "core.h"

/* ---- the owner's side ------------------------------------------------------------------------- */

void lm_tld_wait_drainer(lm_tld_t* tld) {
  while (atomic_load_explicit(&tld->draining, memory_order_acquire)) lm_cpu_relax();
}

void lm_tld_register(lm_tld_t* tld) {
  lm_spin_lock(&lm_process.tlds_lock);
  tld->live_prev = NULL;
  tld->live_next = lm_process.tlds;
  if (tld->live_next != NULL) tld->live_next->live_prev = tld;
  lm_process.tlds = tld;
  lm_spin_unlock(&lm_process.tlds_lock);
}

/* Waits for a drainer that is visiting this thread (it keeps `draining` up until it has read
 * the next one, under the lock): then none looks at this thread again. */
void lm_tld_unregister(lm_tld_t* tld) {
  lm_spin_lock(&lm_process.tlds_lock);
  while (atomic_load_explicit(&tld->draining, memory_order_acquire)) {
    lm_spin_unlock(&lm_process.tlds_lock);
    lm_tld_wait_drainer(tld);
    lm_spin_lock(&lm_process.tlds_lock);
  }
  if (tld->live_prev != NULL) tld->live_prev->live_next = tld->live_next;
  else if (lm_process.tlds == tld) lm_process.tlds = tld->live_next;
  if (tld->live_next != NULL) tld->live_next->live_prev = tld->live_prev;
  tld->live_next = tld->live_prev = NULL;
  lm_spin_unlock(&lm_process.tlds_lock);
}

void lm_heap_undrain(lm_heap_t* heap) {
  atomic_store_explicit(&heap->drained, false, memory_order_relaxed);
  lm_page_t* page = heap->pages[LM_BIN_FULL].first;
  while (page != NULL) {
    lm_page_t* next = page->next;
    if (lm_tf_block(atomic_load_explicit(&page->xthread_free, memory_order_relaxed)) != NULL) {
      lm_page_collect(page, false);
    }
    /* (empty: drained, or every block came back; else room again: back among its size's pages) */
    if (page->used == 0) lm_heap_page_free(heap, page);
    else if (page->free != NULL) lm_page_unfull(heap, page);
    page = next;
  }
}

/* ---- the drainer's side ----------------------------------------------------------------------- */

static bool drain_claim(lm_tld_t* tld) {
  atomic_store_explicit(&tld->draining, true, memory_order_seq_cst);
  if (!atomic_load_explicit(&tld->busy, memory_order_seq_cst)) return true;
  atomic_store_explicit(&tld->draining, false, memory_order_release);
  return false;
}

/* The length of a thread-free list (its count when it carries one); SIZE_MAX when it is
 * longer than the page could hold (a corrupted list is not followed further). */
static size_t thread_free_length(const lm_page_t* page, uintptr_t tfree) {
  size_t count = lm_tf_count(tfree);
  if (count != 0) return count;
  for (lm_block_t* b = lm_tf_block(tfree); b != NULL; b = lm_block_next(page, b)) {
    if (++count > page->reserved) return SIZE_MAX;
  }
  return count;
}

/* Every block of a full page was freed by other threads: reset it in place. */
static bool page_drain(lm_page_t* page, uintptr_t tfree) {
  uintptr_t emptied = tfree & LM_TF_STATE_MASK;
  if (!atomic_compare_exchange_strong_explicit(&page->xthread_free, &tfree, emptied,
                                               memory_order_acquire, memory_order_relaxed)) {
    return false; /* another free came: a double free; the owner will report it */
  }
  size_t used_bytes = (size_t)page->capacity * page->block_size;
  page->free = NULL;
  page->local_free = NULL;
  page->used = 0;
  page->capacity = 0;
  lm_page_free_dirty(page);
  if (!lm_segment_page_discard(&lm_process.segments, page, used_bytes)) {
    lm_error(ENOMEM, "the memory of page %p could not be made accessible again", (void*)page);
  }
  return true;
}

/* Take the first block off a page's thread-free list (the owner is held off; other threads
 * only push). NULL if the list is empty or a delayed hand-over is under way. */
static lm_block_t* pop_thread_free(lm_page_t* page) {
  uintptr_t tfree = atomic_load_explicit(&page->xthread_free, memory_order_acquire);
  for (;;) {
    lm_block_t* head = lm_tf_block(tfree);
    if (head == NULL || lm_tf_state(tfree) == LM_TF_DELAYED_FREEING) return NULL;
    uintptr_t rest = lm_tf_pop(tfree, lm_block_next(page, head));
    if (atomic_compare_exchange_weak_explicit(&page->xthread_free, &tfree, rest,
                                              memory_order_acquire, memory_order_acquire)) {
      return head;
    }
  }
}

/* Put one block of a page with live blocks back on the heap's delayed list: an owner that
 * still allocates now and then (a worker's heartbeat) takes the slow path on its next malloc,
 * as it would have without the drainer, and takes over what was moved (lm_heap_undrain). A
 * remote free onto it counts as the first, so the drainer is scheduled again. */
static void keep_one(lm_heap_t* heap, lm_page_t* page) {
  lm_block_t* block = pop_thread_free(page);
  if (block == NULL) return;
  lm_heap_delayed_push(heap, block);
  atomic_store_explicit(&heap->drain_kept, block, memory_order_relaxed);
}

/* Returns whether the owner has something to take over (lm_heap_undrain). */
static bool heap_drain(lm_heap_t* heap) {
  bool moved = false;
  lm_page_t* keep = NULL; /* a page with live blocks that other threads freed into */
  lm_block_t* block = atomic_exchange_explicit(&heap->thread_delayed_free, NULL,
                                               memory_order_acquire);
  while (block != NULL) {
    lm_block_t* next = lm_delayed_next(block);
    lm_page_t* page = lm_segment_page_of(lm_segment_of(block), block);
    /* The remote free that put the block here may still be ending its hand-over: once the
     * block is on the thread-free list, the owner may free the page under it (TSan,
     * stress_threads: lm_heap_undrain freed it while lm_free_block_remote read its list). */
    (void)lm_page_wait_handover(page);
    lm_page_push_thread_free(page, block);
    moved = true;
    block = next;
  }
  for (lm_page_t* page = heap->pages[LM_BIN_FULL].first; page != NULL; page = page->next) {
    uintptr_t tfree = atomic_load_explicit(&page->xthread_free, memory_order_acquire);
    /* Pages freed into (the state does not tell: a page's delayed block may have come after
     * the last look set USE_DELAYED again), and no delayed hand-over under way. */
    if (lm_tf_block(tfree) == NULL || lm_tf_state(tfree) == LM_TF_DELAYED_FREEING) continue;
    if (page->free == NULL && page->local_free == NULL &&
        thread_free_length(page, tfree) == page->used && page_drain(page, tfree)) {
      moved = true;
      continue;
    }
    /* Blocks still live: the freed ones give their memory back, and the next remote free
     * notifies the owner (and this drainer) again. */
    (void)lm_page_discard_free(page, lm_tf_block(tfree));
    lm_page_set_delayed(page, LM_TF_USE_DELAYED, false);
    if (keep == NULL) keep = page;
    moved = true;
  }
  if (keep != NULL) keep_one(heap, keep);
  return moved;
}

/* Pages that are not full, every block of which is on the thread-free list (their owner
 * allocates in other sizes, or not at all, while other threads freed them all): reset in
 * place like full ones, and left in their queue, where the owner finds a page with room again
 * (lm_page_extend starts it afresh). Such a page is out of the owner's fast paths: it holds
 * none of its blocks, so it frees none into it (a block it freed itself would be on the free
 * list, and the count short), and the malloc fast path takes blocks only from the first page
 * of a small size, which stays. `capacity` changes on slow paths only. */
static void heap_drain_partial(lm_heap_t* heap) {
  for (size_t bin = 0; bin < LM_BIN_HUGE; bin++) {
    lm_page_queue_t* pq = &heap->pages[bin];
    lm_page_t* page = pq->first;
    if (page != NULL && pq->block_size <= LM_SMALL_SIZE_MAX) page = page->next;
    for (; page != NULL; page = page->next) {
      uintptr_t tfree = atomic_load_explicit(&page->xthread_free, memory_order_acquire);
      if (lm_tf_block(tfree) == NULL || lm_tf_state(tfree) == LM_TF_DELAYED_FREEING) continue;
      if (thread_free_length(page, tfree) == page->capacity) (void)page_drain(page, tfree);
      else (void)lm_page_discard_free(page, lm_tf_block(tfree));
    }
  }
}

static bool delayed_waiting(const lm_tld_t* tld) {
  for (const lm_heap_t* heap = tld->heaps; heap != NULL; heap = heap->next) {
    if (atomic_load_explicit(&heap->thread_delayed_free, memory_order_relaxed) != NULL) return true;
  }
  return false;
}

/* One thread's heaps, held off by `draining`. Returns whether to look again later (frees wait
 * but the owner was not idle). */
static bool tld_drain(lm_tld_t* tld, bool force) {
  /* Idle: no slow path since the last look or since the remote free that started the
   * delayed list (lm_free_block_remote), a purge delay ago or more, while frees wait on a
   * delayed list (which makes the owner's next malloc a slow path). An owner that still
   * allocates now and then reads its list itself, as before: draining it would free and
   * re-make its pages under it (bench server: idle RSS 14 -> 20 MiB when it did). */
  uint32_t epoch = atomic_load_explicit(&tld->slow_epoch, memory_order_relaxed);
  bool idle = epoch == atomic_load_explicit(&tld->drain_epoch, memory_order_relaxed) || force;
  atomic_store_explicit(&tld->drain_epoch, epoch, memory_order_relaxed);
  bool look_again = false;
  if (delayed_waiting(tld)) {
    if (!idle) look_again = true;
    for (lm_heap_t* heap = tld->heaps; heap != NULL && idle; heap = heap->next) {
      if (atomic_load_explicit(&heap->thread_delayed_free, memory_order_relaxed) != NULL &&
          heap_drain(heap)) {
        atomic_store_explicit(&heap->drained, true, memory_order_relaxed);
      }
    }
  }
  for (lm_heap_t* heap = tld->heaps; heap != NULL && idle; heap = heap->next) {
    heap_drain_partial(heap);
  }
  return look_again;
}

/* The list lock is held only to step from thread to thread, not while one is drained (page
 * resets call the OS): threads that start or end wait for the lock, and on a busy machine a
 * drainer preempted while holding it kept them spinning (bench threadchurn: 8% of the samples
 * of one profile in lm_tld_register). The thread being drained stays in the list: lm_tld_unregister waits
 * until `draining` is down, which the drainer lowers under the lock after reading the next. */
void lm_drain_idle_heaps(bool force) {
  bool look_again = false;
  lm_spin_lock(&lm_process.tlds_lock);
  lm_tld_t* tld = lm_process.tlds;
  while (tld != NULL) {
    if (!drain_claim(tld)) {
      tld = tld->live_next;
      continue;
    }
    lm_spin_unlock(&lm_process.tlds_lock);
    if (tld_drain(tld, force)) look_again = true;
    lm_spin_lock(&lm_process.tlds_lock);
    lm_tld_t* next = tld->live_next;
    atomic_store_explicit(&tld->draining, false, memory_order_release);
    tld = next;
  }
  lm_spin_unlock(&lm_process.tlds_lock);
  if (look_again) lm_purger_notify_delayed();
}
