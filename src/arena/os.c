/* OS memory with policy and statistics: the only file that calls the backend's memory
 * functions. Owns page rounding (liberal outward for commit, conservative inward for purge and
 * protect), aligned reservations, and the OS counters in lm_os_stats_t.
 */
#include <errno.h>

#include "arena.h"

void lm_stat_increase(lm_stat_count_t* s, int64_t amount) {
  int64_t cur = atomic_fetch_add_explicit(&s->current, amount, memory_order_relaxed) + amount;
  atomic_fetch_add_explicit(&s->total, amount, memory_order_relaxed);
  int64_t peak = lm_load_relaxed(&s->peak);
  while (cur > peak &&
         !atomic_compare_exchange_weak_explicit(&s->peak, &peak, cur, memory_order_relaxed,
                                                memory_order_relaxed)) {
  }
}
void lm_stat_decrease(lm_stat_count_t* s, int64_t amount) {
  atomic_fetch_sub_explicit(&s->current, amount, memory_order_relaxed);
}

/* ---- fault injection ------------------------------------------------------------------------ */

void lm_arenas_fault_set(lm_arenas_t* arenas, int64_t nth, unsigned kinds) {
  atomic_store(&arenas->fault.countdown, nth > 0 ? nth : 0);
  atomic_store(&arenas->fault.kinds, kinds);
}

bool lm_arenas_fault_due(lm_arenas_t* arenas, unsigned kind) {
  lm_fault_plan_t* f = &arenas->fault;
  bool fail = (atomic_load_explicit(&f->kinds, memory_order_relaxed) & kind) != 0;
  /* (one decrement per call while a count is set; racing callers may take it below zero) */
  if (atomic_load_explicit(&f->countdown, memory_order_relaxed) > 0 &&
      atomic_fetch_sub_explicit(&f->countdown, 1, memory_order_relaxed) == 1) {
    fail = true;
  }
  if (fail) atomic_fetch_add_explicit(&f->injected, 1, memory_order_relaxed);
  return fail;
}

static bool word_is(const char* s, size_t n, const char* word) {
  size_t i = 0;
  for (; i < n && word[i] != 0; i++) {
    if ((s[i] | 0x20) != word[i]) return false;
  }
  return i == n && word[i] == 0;
}

bool lm_fault_parse(const char* spec, int64_t* nth, unsigned* kinds) {
  int64_t n = 0;
  unsigned k = 0;
  const char* s = spec;
  while (*s != 0) {
    size_t len = 0;
    while (s[len] != 0 && s[len] != ',') len++;
    if (len > 0 && s[0] >= '0' && s[0] <= '9') {
      int64_t v = 0;
      for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9' || v > INT64_MAX / 10 - 9) return false;
        v = v * 10 + (s[i] - '0');
      }
      n = v;
    } else if (word_is(s, len, "reserve")) {
      k |= LM_FAULT_RESERVE;
    } else if (word_is(s, len, "commit")) {
      k |= LM_FAULT_COMMIT;
    } else if (word_is(s, len, "all")) {
      k |= LM_FAULT_RESERVE | LM_FAULT_COMMIT;
    } else {
      return false;
    }
    s += len;
    if (*s == ',') s++;
  }
  *nth = n;
  *kinds = k;
  return true;
}

size_t lm_os_page_size(const lm_arenas_t* arenas) { return arenas->caps.page_size; }
int64_t lm_os_clock(lm_arenas_t* arenas) { return arenas->backend->clock_ms(); }

static size_t granular(const lm_arenas_t* arenas, size_t size) {
  return lm_align_up(size, lm_max(arenas->caps.alloc_granularity, arenas->caps.page_size));
}

void lm_arenas_set_region(lm_arenas_t* arenas, uintptr_t region_start) {
  arenas->region_lo = region_start;
  atomic_store(&arenas->region_size, 0);
  atomic_store(&arenas->hint_next, region_start);
}

/* The next hinted address for a segment-aligned reservation (0 when hints are off). */
static uintptr_t region_hint(lm_arenas_t* arenas, size_t size, size_t align) {
  if (arenas->region_lo == 0 || align < LM_SEGMENT_SIZE) return 0;
  uintptr_t hint = atomic_load_explicit(&arenas->hint_next, memory_order_relaxed);
  uintptr_t start, next;
  do {
    start = lm_align_up(hint, align);
    next = start + lm_align_up(size, LM_SEGMENT_SIZE) + LM_SEGMENT_SIZE; /* keep a gap */
    if (next < start) return 0;
  } while (!atomic_compare_exchange_weak(&arenas->hint_next, &hint, next));
  return start;
}

/* A reservation landed at its hint: the region now reaches its end. */
static void region_extend(lm_arenas_t* arenas, uintptr_t end) {
  uintptr_t size = end - arenas->region_lo;
  uintptr_t cur = atomic_load_explicit(&arenas->region_size, memory_order_relaxed);
  while (size > cur && !atomic_compare_exchange_weak(&arenas->region_size, &cur, size)) {
  }
}

/* One backend reservation, counted. */
static void* os_reserve(lm_arenas_t* arenas, size_t size, size_t try_align, bool commit,
                        bool* is_zero) {
  void* p = NULL;
  bool zero = false;
  uintptr_t hint = region_hint(arenas, size, try_align);
  atomic_fetch_add_explicit(&arenas->stats.reserve_calls, 1, memory_order_relaxed);
  if (lm_arenas_fault_due(arenas, LM_FAULT_RESERVE)) return NULL;
  int err = arenas->backend->reserve((void*)hint, size, try_align, commit, &p, &zero);
  if (err != 0 || p == NULL) return NULL;
  if (hint != 0 && (uintptr_t)p == hint) region_extend(arenas, hint + size);
  lm_stat_increase(&arenas->stats.reserved, (int64_t)size);
  if (commit) lm_stat_increase(&arenas->stats.committed, (int64_t)size);
  *is_zero = zero;
  return p;
}

static void os_release(lm_arenas_t* arenas, void* p, size_t size, bool committed) {
  if (arenas->backend->release(p, size) != 0) return; /* nothing changed: keep counts true */
  lm_stat_decrease(&arenas->stats.reserved, (int64_t)size);
  if (committed) lm_stat_decrease(&arenas->stats.committed, (int64_t)size);
}

static bool is_aligned_at(void* p, size_t align, size_t offset) {
  return align <= 1 || (((uintptr_t)p + offset) & (align - 1)) == 0;
}

void* lm_os_alloc_aligned(lm_arenas_t* arenas, size_t size, size_t align, size_t offset,
                          bool commit, lm_memid_t* memid) {
  *memid = (lm_memid_t){.kind = LM_MEM_NONE};
  if (size == 0 || (align > 1 && !lm_is_power_of_two(align))) return NULL;
  size = granular(arenas, size);
  if (align < arenas->caps.page_size) align = 0;
  /* Without virtual reservations the backend hands out committed memory: count it so. */
  if (!arenas->caps.has_virtual_reserve) commit = true;
  bool is_zero = false;
  void* base = os_reserve(arenas, size, align, commit, &is_zero);
  if (base == NULL) return NULL;
  void* p = base;
  size_t base_size = size;
  if (!is_aligned_at(base, align, offset)) {
    /* Over-allocate and place the aligned part inside. */
    os_release(arenas, base, size, commit);
    size_t over = granular(arenas, size + align);
    if (over < size) return NULL; /* overflow */
    base = os_reserve(arenas, over, align, commit, &is_zero);
    if (base == NULL) return NULL;
    uintptr_t aligned = lm_align_up((uintptr_t)base + offset, align) - offset;
    p = (void*)aligned;
    base_size = over;
    if (arenas->caps.has_partial_release) {
      size_t pre = aligned - (uintptr_t)base;
      size_t post = over - pre - size;
      if (pre > 0) os_release(arenas, base, pre, commit);
      if (post > 0) os_release(arenas, (uint8_t*)p + size, post, commit);
      base = p;
      base_size = size;
    }
  }
  *memid = (lm_memid_t){.kind = LM_MEM_OS,
                        .os_base = base,
                        .os_size = base_size,
                        .initially_committed = commit,
                        .initially_zero = is_zero};
  return p;
}

void* lm_os_alloc_large(lm_arenas_t* arenas, size_t size, size_t align, lm_memid_t* memid) {
  *memid = (lm_memid_t){.kind = LM_MEM_NONE};
  size_t large = arenas->caps.large_page_size;
  if (!LM_HUGE_PAGES || arenas->backend->reserve_large == NULL || large == 0 || size == 0) {
    return NULL;
  }
  size = lm_align_up(size, large);
  uintptr_t hint = region_hint(arenas, size, align);
  void* p = NULL;
  bool zero = false, pinned = false;
  atomic_fetch_add_explicit(&arenas->stats.reserve_calls, 1, memory_order_relaxed);
  if (lm_arenas_fault_due(arenas, LM_FAULT_RESERVE)) return NULL;
  if (arenas->backend->reserve_large((void*)hint, size, align, &p, &zero, &pinned) != 0 ||
      p == NULL) {
    return NULL;
  }
  if (!is_aligned_at(p, align, 0)) { /* rare: not worth over-allocating large pages */
    arenas->backend->release(p, size);
    return NULL;
  }
  if (hint != 0 && (uintptr_t)p == hint) region_extend(arenas, hint + size);
  lm_stat_increase(&arenas->stats.reserved, (int64_t)size);
  lm_stat_increase(&arenas->stats.committed, (int64_t)size);
  lm_stat_increase(pinned ? &arenas->stats.large_explicit : &arenas->stats.large_transparent,
                   (int64_t)size);
  *memid = (lm_memid_t){.kind = LM_MEM_OS,
                        .os_base = p,
                        .os_size = size,
                        .is_pinned = pinned,
                        .is_large = true,
                        .initially_committed = true,
                        .initially_zero = zero};
  return p;
}

void lm_os_free(lm_arenas_t* arenas, void* p, size_t size, const lm_memid_t* memid) {
  (void)p;
  (void)size;
  if (memid->kind != LM_MEM_OS) return;
  if (memid->is_large) {
    lm_stat_decrease(memid->is_pinned ? &arenas->stats.large_explicit
                                      : &arenas->stats.large_transparent,
                     (int64_t)memid->os_size);
  }
  if (!memid->is_huge) {
    os_release(arenas, memid->os_base, memid->os_size, memid->initially_committed);
    return;
  }
  /* 1 GiB pages were reserved one by one: give them back the same way (an OS without partial
   * release needs each reservation whole). */
  for (size_t off = 0; off < memid->os_size; off += LM_GiB) {
    os_release(arenas, (uint8_t*)memid->os_base + off, LM_GiB, true);
  }
}

bool lm_os_commit(lm_arenas_t* arenas, void* p, size_t size, bool* is_zero) {
  size_t page = arenas->caps.page_size;
  uintptr_t start = lm_align_down((uintptr_t)p, page);
  uintptr_t end = lm_align_up((uintptr_t)p + size, page);
  bool zero = false;
  atomic_fetch_add_explicit(&arenas->stats.commit_calls, 1, memory_order_relaxed);
  if (lm_arenas_fault_due(arenas, LM_FAULT_COMMIT)) return false;
  if (arenas->backend->commit((void*)start, end - start, &zero) != 0) return false;
  lm_stat_increase(&arenas->stats.committed, (int64_t)(end - start));
  if (is_zero != NULL) *is_zero = zero;
  return true;
}

/* Inward rounding: never touch a page that is partly outside the range. */
static bool inner_range(const lm_arenas_t* arenas, void* p, size_t size, uintptr_t* start,
                        uintptr_t* end) {
  size_t page = arenas->caps.page_size;
  *start = lm_align_up((uintptr_t)p, page);
  *end = lm_align_down((uintptr_t)p + size, page);
  return *end > *start;
}

bool lm_os_decommit(lm_arenas_t* arenas, void* p, size_t size) {
  uintptr_t start, end;
  if (!inner_range(arenas, p, size, &start, &end)) return false;
  bool needs_recommit = true;
  atomic_fetch_add_explicit(&arenas->stats.purge_calls, 1, memory_order_relaxed);
  if (arenas->backend->decommit((void*)start, end - start, &needs_recommit) != 0) return false;
  atomic_fetch_add_explicit(&arenas->stats.purged, (int64_t)(end - start), memory_order_relaxed);
  /* "committed" counts accessible memory: a range that stays accessible stays counted (its
   * physical pages are gone, which `purged` records). */
  if (needs_recommit) lm_stat_decrease(&arenas->stats.committed, (int64_t)(end - start));
  return needs_recommit;
}

/* Let the OS take the pages of a range lazily; it stays accessible and committed. */
static void os_reset(lm_arenas_t* arenas, void* p, size_t size) {
  uintptr_t start, end;
  if (!inner_range(arenas, p, size, &start, &end)) return;
  atomic_fetch_add_explicit(&arenas->stats.purge_calls, 1, memory_order_relaxed);
  if (arenas->backend->reset((void*)start, end - start) == 0) {
    atomic_fetch_add_explicit(&arenas->stats.purged, (int64_t)(end - start),
                              memory_order_relaxed);
  }
}

bool lm_os_purge(lm_arenas_t* arenas, void* p, size_t size) {
  if (!arenas->caps.has_decommit) return false;
  if (arenas->config.purge_decommits || arenas->backend->reset == NULL) {
    return lm_os_decommit(arenas, p, size);
  }
  os_reset(arenas, p, size);
  return false; /* a reset range stays committed */
}

bool lm_os_has_reuse(const lm_arenas_t* arenas) { return arenas->backend->reuse != NULL; }

void lm_os_reuse(lm_arenas_t* arenas, void* p, size_t size) {
  if (arenas->backend->reuse == NULL) return;
  size_t page = arenas->caps.page_size;
  uintptr_t start = lm_align_down((uintptr_t)p, page);
  uintptr_t end = lm_align_up((uintptr_t)p + size, page);
  /* A refusal leaves the pages usable, only counted low by the OS: nothing to undo. */
  arenas->backend->reuse((void*)start, end - start);
}

bool lm_os_discard(lm_arenas_t* arenas, void* p, size_t size) {
  if (!arenas->caps.has_decommit) return true;
  /* Where purged memory needs a reuse step (macOS), a range that stays in use would need it at
   * once, undoing the purge: its pages are purged with their segment's free slices instead. */
  if (lm_os_has_reuse(arenas)) return true;
  /* Where memory is overcommitted (Linux), a decommit frees the pages at once and the range
   * refaults as zero; elsewhere a decommit would make it inaccessible, so only a reset (lazy,
   * where the OS takes the pages under pressure) keeps it usable. */
  if (arenas->caps.has_overcommit && arenas->config.purge_decommits) {
    return !lm_os_decommit(arenas, p, size) || lm_os_commit(arenas, p, size, NULL);
  }
  if (arenas->backend->reset != NULL) os_reset(arenas, p, size);
  return true;
}

bool lm_os_protect(lm_arenas_t* arenas, void* p, size_t size, bool protect) {
  uintptr_t start, end;
  if (arenas->backend->protect == NULL) return false;
  if (!inner_range(arenas, p, size, &start, &end)) return false;
  return arenas->backend->protect((void*)start, end - start, protect) == 0;
}

size_t lm_os_move(lm_arenas_t* arenas, void* dst, void* src, size_t size) {
  size_t page = arenas->caps.page_size;
  if (arenas->backend->move == NULL || size == 0 || size % page != 0 ||
      (uintptr_t)dst % page != 0 || (uintptr_t)src % page != 0) {
    return 0;
  }
  size_t moved = 0;
  arenas->backend->move(dst, src, size, &moved); /* (an error leaves the rest to copy) */
  lm_assert(moved <= size && moved % page == 0);
  return moved;
}

bool lm_os_advise_large(lm_arenas_t* arenas, void* p, size_t size, bool on) {
  size_t large = arenas->caps.large_page_size;
  if (!arenas->caps.has_large_page_advice || arenas->backend->large_pages_advise == NULL ||
      large == 0) {
    return false;
  }
  uintptr_t start = lm_align_up((uintptr_t)p, large);
  uintptr_t end = lm_align_down((uintptr_t)p + size, large);
  if (end <= start) return false;
  return arenas->backend->large_pages_advise((void*)start, end - start, on) == 0;
}
