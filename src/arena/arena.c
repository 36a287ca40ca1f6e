/* Arenas: large aligned reservations handed out in segment-sized blocks.
 *
 * Per arena, one bit per block in each bitmap:
 *   inuse      claimed by a segment (or, briefly, by the purger while it purges the block)
 *   committed  accessible (only tracked when the backend needs recommits)
 *   dirty      handed out before, so not known to be zero
 *   purge      freed and waiting for its purge delay
 *   flags[]    segment-layer marks (abandoned, purge pending), claimed by atomic clear
 * Invariant: a block with its purge bit set is not in use, except while the purger holds it.
 * Arenas are never unmapped while the process runs; their blocks are purged instead.
 */
#include <errno.h>

#include "arena.h"
#include "bitmap.h"

typedef struct lm_arena_s {
  uint8_t* start;
  size_t block_count;
  int id;                   /* index + 1 */
  bool exclusive;           /* used only when asked for by id */
  bool is_pinned;           /* large OS pages: never purged */
  int numa_node;            /* the node it serves first, -1 any */
  bool track_commit;        /* the committed bitmap matters (recommit or lazy commit) */
  lm_memid_t memid;         /* of the reserved range */
  lm_memid_t meta_memid;    /* of this struct and its bitmaps */
  size_t meta_size;
  _Atomic(int64_t) purge_expire;    /* the earliest deadline of a pending block (0: none) */
  _Atomic(int64_t)* block_expire;   /* each pending block's own deadline */
  _Atomic(lm_thread_id_t)* block_freer; /* the thread that freed each pending block */
  lm_bitmap_field_t* inuse;
  lm_bitmap_field_t* committed;
  lm_bitmap_field_t* dirty;
  lm_bitmap_field_t* purge;
  lm_bitmap_field_t* flags[LM_BLOCK_FLAG_COUNT];
} lm_arena_t;

void lm_mem_config_default(lm_mem_config_t* config) {
  *config = (lm_mem_config_t){.purge_delay_ms = 10,
                              .arena_purge_mult = 10,
                              .purge_decommits = true,
                              .arena_reserve = LM_ARENA_RESERVE_DEFAULT,
                              .arena_eager_commit = 2,
                              .disallow_os_alloc = false};
}

static void backend_message(const lm_backend_t* backend, const char* msg) {
  if (backend != NULL && backend->output != NULL) backend->output(msg);
}

int lm_arenas_init(lm_arenas_t* arenas, const lm_backend_t* backend,
                   const lm_mem_config_t* config) {
  *arenas = (lm_arenas_t){0};
  if (backend == NULL || backend->init == NULL || backend->reserve == NULL ||
      backend->release == NULL || backend->commit == NULL || backend->decommit == NULL ||
      backend->clock_ms == NULL || backend->output == NULL) {
    backend_message(backend, "libmimalloc: error: the OS backend lacks a required function\n");
    return EINVAL;
  }
  backend->init(&arenas->caps);
  const lm_backend_caps_t* caps = &arenas->caps;
  bool caps_ok = lm_is_power_of_two(caps->page_size) &&
                 lm_is_power_of_two(caps->alloc_granularity) &&
                 caps->alloc_granularity >= caps->page_size &&
                 caps->alloc_granularity <= LM_ARENA_BLOCK_SIZE &&
                 (!caps->has_threads ||
                  (backend->thread_start != NULL && backend->wait_on != NULL &&
                   backend->wake_all != NULL));
  if (!caps_ok) {
    backend_message(backend, "libmimalloc: error: the OS backend declares inconsistent "
                             "capabilities\n");
    return EINVAL;
  }
  arenas->backend = backend;
  atomic_store(&arenas->purger_idle, 1); /* nothing scheduled yet */
  if (config != NULL) arenas->config = *config;
  else lm_mem_config_default(&arenas->config);
  int nodes = arenas->config.numa_nodes;
  if (nodes <= 0) {
    nodes = caps->has_numa && backend->numa_node_count != NULL ? backend->numa_node_count() : 1;
  }
  arenas->numa_count = nodes > 0 ? nodes : 1;
  return 0;
}

static lm_arena_t* arena_at(lm_arenas_t* arenas, size_t i) {
  return atomic_load_explicit(&arenas->arenas[i], memory_order_acquire);
}
static size_t arena_count(lm_arenas_t* arenas) {
  return atomic_load_explicit(&arenas->arena_count, memory_order_acquire);
}

static void arena_release(lm_arenas_t* arenas, lm_arena_t* arena) {
  lm_memid_t memid = arena->memid;
  lm_memid_t meta = arena->meta_memid;
  size_t bytes = arena->block_count * LM_ARENA_BLOCK_SIZE;
  lm_os_free(arenas, arena->start, bytes, &memid);
  lm_os_free(arenas, arena, arena->meta_size, &meta);
}

void lm_arenas_destroy(lm_arenas_t* arenas) {
  size_t n = arena_count(arenas);
  for (size_t i = 0; i < n; i++) {
    lm_arena_t* arena = arena_at(arenas, i);
    if (arena == NULL) continue;
    atomic_store(&arenas->arenas[i], NULL);
    arena_release(arenas, arena);
  }
  atomic_store(&arenas->arena_count, 0);
}

/* ---- creating arenas ------------------------------------------------------------------- */

static bool eager_commit(const lm_arenas_t* arenas) {
  int mode = arenas->config.arena_eager_commit;
  return mode == 1 || (mode == 2 && arenas->caps.has_overcommit);
}

/* Register `start` as an arena; returns its id or 0 on failure. */
static int arena_add(lm_arenas_t* arenas, void* start, size_t size, bool committed, bool is_zero,
                     bool exclusive, int numa_node, const lm_memid_t* memid) {
  size_t blocks = size / LM_ARENA_BLOCK_SIZE;
  size_t fields = lm_divide_up(blocks, LM_BITMAP_FIELD_BITS);
  size_t bitmaps = 4 + LM_BLOCK_FLAG_COUNT;
  size_t meta_size = sizeof(lm_arena_t) + bitmaps * fields * sizeof(lm_bitmap_field_t) +
                     blocks * (sizeof(_Atomic(int64_t)) + sizeof(_Atomic(lm_thread_id_t)));
  lm_memid_t meta_memid;
  lm_arena_t* arena = lm_os_alloc(arenas, meta_size, true, &meta_memid);
  if (arena == NULL) return 0;
  lm_bitmap_field_t* bits = (lm_bitmap_field_t*)(arena + 1);
  _Atomic(int64_t)* block_expire = (_Atomic(int64_t)*)(bits + bitmaps * fields);
  _Atomic(lm_thread_id_t)* block_freer = (_Atomic(lm_thread_id_t)*)(block_expire + blocks);
  /* Fresh OS memory may not be zero (the backend says so): clear the metadata explicitly. */
  for (size_t i = 0; i < bitmaps * fields; i++) atomic_init(&bits[i], 0);
  for (size_t i = 0; i < blocks; i++) {
    atomic_init(&block_expire[i], 0);
    atomic_init(&block_freer[i], 0);
  }
  *arena = (lm_arena_t){.start = start,
                        .block_count = blocks,
                        .is_pinned = memid->is_pinned,
                        .numa_node = numa_node < 0 ? -1 : numa_node,
                        .exclusive = exclusive,
                        .memid = *memid,
                        .meta_memid = meta_memid,
                        .meta_size = meta_size,
                        .block_expire = block_expire,
                        .block_freer = block_freer,
                        .inuse = bits,
                        .committed = bits + fields,
                        .dirty = bits + 2 * fields,
                        .purge = bits + 3 * fields};
  for (size_t f = 0; f < LM_BLOCK_FLAG_COUNT; f++) arena->flags[f] = bits + (4 + f) * fields;
  arena->track_commit = !committed || !arenas->caps.has_overcommit;
  if (committed) lm_bitmap_set(arena->committed, 0, blocks);
  if (!is_zero) lm_bitmap_set(arena->dirty, 0, blocks);
  /* Mark the tail bits of the last field as in use so no claim runs past the end. */
  size_t tail = fields * LM_BITMAP_FIELD_BITS - blocks;
  if (tail > 0) lm_bitmap_set(arena->inuse, blocks, tail);

  lm_spin_lock(&arenas->reserve_lock);
  size_t i = arena_count(arenas);
  if (i >= LM_MAX_ARENAS) {
    lm_spin_unlock(&arenas->reserve_lock);
    lm_os_free(arenas, arena, meta_size, &meta_memid);
    return 0;
  }
  arena->id = (int)i + 1;
  atomic_store_explicit(&arenas->arenas[i], arena, memory_order_release);
  atomic_store_explicit(&arenas->arena_count, i + 1, memory_order_release);
  lm_spin_unlock(&arenas->reserve_lock);
  atomic_fetch_add_explicit(&arenas->stats.arena_count, 1, memory_order_relaxed);
  return arena->id;
}

/* Large OS pages were asked for (allow_large_os_pages) and the backend had no explicit ones:
 * said once in verbose output, with what the arena got instead. */
static void large_pages_missed(lm_arenas_t* arenas, bool transparent) {
  if (arenas->config.notice == NULL || atomic_exchange(&arenas->large_missed_said, true)) return;
  arenas->config.notice(transparent
      ? "large OS pages asked for (allow_large_os_pages) but no explicit 2 MiB pages could be "
        "had (the OS keeps no free pool of them): arenas ask for transparent huge pages instead"
      : "large OS pages asked for (allow_large_os_pages) but none could be had: arenas use "
        "ordinary pages");
}

/* Register memory reserved from the OS as an arena, or give it back when that fails. */
static int arena_add_reserved(lm_arenas_t* arenas, void* start, size_t size, bool committed,
                              bool exclusive, int numa_node, const lm_memid_t* memid,
                              int* arena_id) {
  int id = arena_add(arenas, start, size, committed, memid->initially_zero, exclusive, numa_node,
                     memid);
  if (id == 0) {
    lm_os_free(arenas, start, size, memid);
    return ENOMEM;
  }
  if (arena_id != NULL) *arena_id = id;
  return 0;
}

int lm_arena_reserve_ex(lm_arenas_t* arenas, size_t size, bool commit, bool allow_large,
                        bool exclusive, int numa_node, int* arena_id) {
  if (arena_id != NULL) *arena_id = 0;
  if (!lm_arenas_node_valid(arenas, numa_node)) return EINVAL;
  size = lm_align_up(size, LM_ARENA_BLOCK_SIZE);
  if (size == 0) return ENOMEM;
  lm_memid_t memid;
  void* start = NULL;
  bool want_large = LM_HUGE_PAGES && allow_large && commit && arenas->config.allow_large;
  if (want_large) start = lm_os_alloc_large(arenas, size, LM_ARENA_BLOCK_SIZE, &memid);
  if (want_large && (start == NULL || !memid.is_pinned)) {
    large_pages_missed(arenas, start != NULL);
  }
  if (start == NULL) start = lm_os_alloc_aligned(arenas, size, LM_ARENA_BLOCK_SIZE, 0, commit, &memid);
  if (start == NULL) return ENOMEM;
  if (numa_node >= 0 && arenas->caps.has_numa && arenas->backend->numa_bind != NULL) {
    arenas->backend->numa_bind(start, size, numa_node); /* a preference: failure is harmless */
  }
  /* (the OS layer commits what it cannot reserve without committing: wasm) */
  return arena_add_reserved(arenas, start, size, memid.initially_committed, exclusive, numa_node,
                            &memid, arena_id);
}

int lm_arena_reserve(lm_arenas_t* arenas, size_t size, bool commit, bool exclusive,
                     int* arena_id) {
  return lm_arena_reserve_ex(arenas, size, commit, false, exclusive, -1, arena_id);
}

int lm_arena_manage(lm_arenas_t* arenas, void* start, size_t size, bool is_committed,
                    bool is_pinned, bool is_zero, int numa_node, bool exclusive, int* arena_id) {
  if (arena_id != NULL) *arena_id = 0;
  uintptr_t lo = lm_align_up((uintptr_t)start, LM_ARENA_BLOCK_SIZE);
  uintptr_t hi = lm_align_down((uintptr_t)start + size, LM_ARENA_BLOCK_SIZE);
  if (start == NULL || hi <= lo || hi > (uintptr_t)start + size) return EINVAL;
  if (!lm_arenas_node_valid(arenas, numa_node)) return EINVAL;
  lm_memid_t memid = {.kind = LM_MEM_EXTERNAL,
                      .is_pinned = is_pinned,
                      .initially_committed = is_committed,
                      .initially_zero = is_zero};
  int id = arena_add(arenas, (void*)lo, hi - lo, is_committed, is_zero, exclusive, numa_node,
                     &memid);
  if (id == 0) return ENOMEM;
  if (arena_id != NULL) *arena_id = id;
  return 0;
}

int lm_arena_reserve_huge(lm_arenas_t* arenas, size_t pages, int numa_node, bool exclusive,
                          int64_t timeout_ms, size_t* reserved, int* arena_id) {
  if (arena_id != NULL) *arena_id = 0;
  if (reserved != NULL) *reserved = 0;
  if (pages == 0) return 0;
  if (!lm_arenas_node_valid(arenas, numa_node)) return EINVAL;
  if (!LM_HUGE_PAGES || arenas->backend->reserve_huge == NULL || pages > ((size_t)1 << 20)) {
    return ENOMEM;
  }
  /* Pretended nodes (use_numa_nodes on a machine without NUMA) are told apart, never bound. */
  int bind = arenas->caps.has_numa ? numa_node : -1;
  /* Page by page: the kernel zeroes each 1 GiB page as it hands it out (about 0.1-0.5 s), so a
   * caller's time limit is kept between pages. */
  uint8_t* start = NULL;
  size_t got = 0;
  bool all_zero = true;
  int64_t began = lm_os_clock(arenas);
  while (got < pages) {
    if (got > 0 && timeout_ms > 0 && lm_os_clock(arenas) - began >= timeout_ms) break;
    void* want = start == NULL ? NULL : start + got * LM_GiB;
    void* p = NULL;
    bool is_zero = false;
    atomic_fetch_add_explicit(&arenas->stats.reserve_calls, 1, memory_order_relaxed);
    if (lm_arenas_fault_due(arenas, LM_FAULT_RESERVE) ||
        arenas->backend->reserve_huge(want, LM_GiB, bind, &p, &is_zero) != 0 || p == NULL) {
      break;
    }
    if (start != NULL && p != want) { /* not contiguous: the arena ends before it */
      arenas->backend->release(p, LM_GiB);
      break;
    }
    if (start == NULL) start = p;
    all_zero = all_zero && is_zero;
    got++;
  }
  if (reserved != NULL) *reserved = got;
  if (got == 0) return ENOMEM;
  size_t size = got * LM_GiB;
  lm_stat_increase(&arenas->stats.reserved, (int64_t)size);
  lm_stat_increase(&arenas->stats.committed, (int64_t)size);
  lm_stat_increase(&arenas->stats.large_explicit, (int64_t)size);
  lm_memid_t memid = {.kind = LM_MEM_OS, .os_base = start, .os_size = size, .is_pinned = true,
                      .is_large = true, .is_huge = true, .initially_committed = true,
                      .initially_zero = all_zero};
  int err = arena_add_reserved(arenas, start, size, true, exclusive, numa_node, &memid, arena_id);
  if (err != 0) return err;
  return got == pages ? 0 : ENOMEM;
}

void* lm_arena_area(lm_arenas_t* arenas, int arena_id, size_t* size) {
  if (size != NULL) *size = 0;
  if (arena_id <= 0 || (size_t)arena_id > arena_count(arenas)) return NULL;
  lm_arena_t* arena = arena_at(arenas, (size_t)arena_id - 1);
  if (arena == NULL) return NULL;
  if (size != NULL) *size = arena->block_count * LM_ARENA_BLOCK_SIZE;
  return arena->start;
}

size_t lm_arena_count(lm_arenas_t* arenas) { return arena_count(arenas); }

int lm_arenas_numa_node(lm_arenas_t* arenas) {
  if (arenas->numa_count <= 1) return -1;
  int node = arenas->backend->numa_node != NULL ? arenas->backend->numa_node() : 0;
  return node >= 0 ? node % arenas->numa_count : 0;
}

int lm_arena_numa_node(lm_arenas_t* arenas, int arena_id) {
  if (arena_id <= 0 || (size_t)arena_id > arena_count(arenas)) return -1;
  lm_arena_t* arena = arena_at(arenas, (size_t)arena_id - 1);
  return arena != NULL ? arena->numa_node : -1;
}

bool lm_arena_is_large(lm_arenas_t* arenas, int arena_id, bool* is_pinned) {
  if (is_pinned != NULL) *is_pinned = false;
  if (arena_id <= 0 || (size_t)arena_id > arena_count(arenas)) return false;
  lm_arena_t* arena = arena_at(arenas, (size_t)arena_id - 1);
  if (arena == NULL) return false;
  if (is_pinned != NULL) *is_pinned = arena->is_pinned;
  return arena->memid.is_large;
}

bool lm_arena_block_in_use(lm_arenas_t* arenas, int arena_id, size_t block) {
  if (arena_id <= 0 || (size_t)arena_id > arena_count(arenas)) return false;
  lm_arena_t* arena = arena_at(arenas, (size_t)arena_id - 1);
  return arena != NULL && block < arena->block_count && lm_bitmap_is_any_set(arena->inuse, block, 1);
}

/* The size of a new automatic arena. With virtual reservations an arena is address space
 * reserved ahead (arena_reserve), and later ones grow so a big heap needs few of them. Without
 * them (wasm) every reserved byte is committed memory the program keeps for good, so an arena
 * is only as big as the request that makes it. */
static size_t arena_auto_size(const lm_arenas_t* arenas, size_t n, size_t min_size) {
  size_t size = arenas->config.arena_reserve;
  if (!arenas->caps.has_virtual_reserve) return min_size;
  /* (the growth stops short of overflow: on 32-bit targets a few doublings pass 4 GiB) */
  size_t shift = n >= 8 ? lm_min(n / 8, 16) : 0;
  size = size > (SIZE_MAX >> 1) >> shift ? (SIZE_MAX >> 1) + 1 : size << shift;
  return size < min_size ? min_size : size;
}

/* A new automatic arena. */
static bool arena_reserve_auto(lm_arenas_t* arenas, size_t min_size, int numa_node) {
  if (arenas->config.arena_reserve == 0) return false;
  size_t n = arena_count(arenas);
  if (n >= LM_MAX_ARENAS - 4) return false;
  size_t size = arena_auto_size(arenas, n, min_size);
  return lm_arena_reserve_ex(arenas, size, eager_commit(arenas), true, false, numa_node, NULL) == 0;
}

/* ---- claiming and freeing blocks ---------------------------------------------------------- */

/* Claim a single block that was freed a moment ago and waits for its purge (still resident). */
static bool arena_try_claim_warm(lm_arena_t* arena, size_t* idx) {
  for (size_t i = 0; i < arena->block_count; i++) {
    if (lm_bitmap_is_any_set(arena->purge, i, 1) && lm_bitmap_try_set_range(arena->inuse, i, 1)) {
      *idx = i;
      return true;
    }
  }
  return false;
}

static void* arena_try_claim(lm_arenas_t* arenas, lm_arena_t* arena, size_t blocks, bool commit,
                             lm_memid_t* memid) {
  /* A block freed a moment ago (still resident, its purge pending) first, then the lowest:
   * untouched memory would be faulted in anew while the freed block gets purged. */
  size_t idx;
  bool warm = blocks == 1 && arena_try_claim_warm(arena, &idx);
  if (!warm && !lm_bitmap_try_claim(arena->inuse, arena->block_count, 0, blocks, &idx)) {
    return NULL;
  }
  uint8_t* p = arena->start + idx * LM_ARENA_BLOCK_SIZE;
  /* Claiming cancels any pending purge of these blocks. */
  bool was_pending = lm_bitmap_clear(arena->purge, idx, blocks);
  bool was_clean = lm_bitmap_set(arena->dirty, idx, blocks);
  /* Blocks handed out before may have been purged without a recommit since (by the arena or
   * by the segment that had them): the backend's reuse step, where it has one, for all of it. */
  bool reuse = !was_clean && lm_os_has_reuse(arenas);
  bool committed = lm_bitmap_is_all_set(arena->committed, idx, blocks);
  if (commit && !committed) {
    bool is_zero = false;
    if (!lm_os_commit(arenas, p, blocks * LM_ARENA_BLOCK_SIZE, &is_zero)) {
      lm_bitmap_clear(arena->inuse, idx, blocks);
      return NULL;
    }
    if (!is_zero) was_clean = false; /* the OS may hand back old contents on commit */
    lm_bitmap_set(arena->committed, idx, blocks);
    committed = true;
  }
  if (reuse) lm_os_reuse(arenas, p, blocks * LM_ARENA_BLOCK_SIZE);
  *memid = (lm_memid_t){.kind = LM_MEM_ARENA,
                        .arena_index = (uint32_t)(arena->id - 1),
                        .block_index = (uint32_t)idx,
                        .block_count = (uint32_t)blocks,
                        .is_pinned = arena->is_pinned,
                        .is_large = arena->memid.is_large,
                        .is_exclusive = arena->exclusive,
                        .initially_committed = committed,
                        .initially_zero = was_clean,
                        .was_pending = was_pending};
  return p;
}

/* Arenas of the caller's NUMA node (or of none) first; with `far`, then any other. */
static void* arenas_try_alloc(lm_arenas_t* arenas, size_t blocks, bool commit, int arena_id,
                              int numa_node, bool far, lm_memid_t* memid) {
  size_t n = arena_count(arenas);
  for (int pass = 0; pass < (far && numa_node >= 0 ? 2 : 1); pass++) {
    for (size_t i = 0; i < n; i++) {
      lm_arena_t* arena = arena_at(arenas, i);
      if (arena == NULL) continue;
      bool suitable = arena_id > 0 ? arena->id == arena_id : !arena->exclusive;
      bool near = numa_node < 0 || arena->numa_node < 0 || arena->numa_node == numa_node;
      if (!suitable || near == (pass == 1)) continue;
      void* p = arena_try_claim(arenas, arena, blocks, commit, memid);
      if (p != NULL) return p;
    }
  }
  return NULL;
}

void* lm_arena_alloc(lm_arenas_t* arenas, size_t size, size_t align, size_t offset, bool commit,
                     int arena_id, lm_memid_t* memid) {
  *memid = (lm_memid_t){.kind = LM_MEM_NONE};
  if (size == 0) return NULL;
  bool arena_fit = align <= LM_ARENA_BLOCK_SIZE && offset == 0 && size >= LM_ARENA_BLOCK_SIZE / 2;
  if (arena_fit) {
    size_t blocks = lm_divide_up(size, LM_ARENA_BLOCK_SIZE);
    /* Memory of another NUMA node only when no arena of ours can be made. */
    int node = arena_id > 0 ? -1 : lm_arenas_numa_node(arenas);
    void* p = arenas_try_alloc(arenas, blocks, commit, arena_id, node, false, memid);
    if (p != NULL) return p;
    if (arena_id <= 0 && !arenas->config.disallow_os_alloc) {
      lm_spin_lock(&arenas->reserve_lock); /* one thread reserves; the others then find room */
      p = arenas_try_alloc(arenas, blocks, commit, arena_id, node, false, memid);
      lm_spin_unlock(&arenas->reserve_lock);
      if (p != NULL) return p;
      if (arena_reserve_auto(arenas, blocks * LM_ARENA_BLOCK_SIZE, node)) {
        p = arenas_try_alloc(arenas, blocks, commit, arena_id, node, false, memid);
        if (p != NULL) return p;
      }
    }
    if (node >= 0) {
      p = arenas_try_alloc(arenas, blocks, commit, arena_id, node, true, memid);
      if (p != NULL) return p;
    }
  }
  if (arena_id > 0 || arenas->config.disallow_os_alloc) return NULL;
  return lm_os_alloc_aligned(arenas, size, align, offset, commit, memid);
}

static lm_arena_t* arena_of(lm_arenas_t* arenas, const lm_memid_t* memid) {
  if (memid->kind != LM_MEM_ARENA || memid->arena_index >= arena_count(arenas)) return NULL;
  return arena_at(arenas, memid->arena_index);
}

static void arena_purge_blocks(lm_arenas_t* arenas, lm_arena_t* arena, size_t idx, size_t n) {
  uint8_t* start = arena->start + idx * LM_ARENA_BLOCK_SIZE;
  /* A reset needs committed memory: blocks committed only in part (lazily, per page) are
   * decommitted instead, which every backend accepts for any reserved range. */
  bool needs_recommit = lm_bitmap_is_all_set(arena->committed, idx, n)
                            ? lm_os_purge(arenas, start, n * LM_ARENA_BLOCK_SIZE)
                            : lm_os_decommit(arenas, start, n * LM_ARENA_BLOCK_SIZE);
  if (needs_recommit) lm_bitmap_clear(arena->committed, idx, n);
}

/* Lower the deadline `*at` to `expire` (0 there: none yet). */
static void note_earliest(_Atomic(int64_t)* at, int64_t expire) {
  int64_t cur = lm_load_relaxed(at);
  while ((cur == 0 || expire < cur) &&
         !atomic_compare_exchange_weak_explicit(at, &cur, expire, memory_order_acq_rel,
                                                memory_order_relaxed)) {
  }
}

static void arena_free(lm_arenas_t* arenas, void* p, size_t size, const lm_memid_t* memid,
                       int64_t mult, int64_t purge_not_before) {
  if (p == NULL || size == 0) return;
  if (memid->kind == LM_MEM_OS) {
    lm_os_free(arenas, p, size, memid);
    return;
  }
  lm_arena_t* arena = arena_of(arenas, memid);
  if (arena == NULL) return;
  size_t idx = memid->block_index;
  size_t n = memid->block_count;
  /* Given back with parts decommitted: commit it again before it is handed out committed. */
  if (!memid->initially_committed) lm_bitmap_clear(arena->committed, idx, n);
  /* The purger's BUSY flag is its own to clear (the owner waited for it before freeing). */
  lm_bitmap_clear(arena->flags[LM_BLOCK_ABANDONED], idx, n);
  lm_bitmap_clear(arena->flags[LM_BLOCK_PURGE_PENDING], idx, n);
  int64_t delay = lm_arenas_purge_delay(arenas, arenas->config.purge_delay_ms);
  if (!arena->is_pinned && delay >= 0 && arenas->caps.has_decommit) {
    if (delay == 0) {
      arena_purge_blocks(arenas, arena, idx, n);
    } else {
      int64_t expire = lm_os_clock(arenas) + delay * mult;
      if (purge_not_before > expire) expire = purge_not_before;
      /* Each block keeps its own deadline: one freed a moment ago is not purged with one whose
       * delay has passed (bench grow: a segment given back and taken again within the delay
       * was purged and faulted back in, 96 MiB a run). */
      lm_thread_id_t freer = lm_thread_id();
      for (size_t i = idx; i < idx + n; i++) {
        atomic_store_explicit(&arena->block_expire[i], expire, memory_order_release);
        atomic_store_explicit(&arena->block_freer[i], freer, memory_order_relaxed);
      }
      lm_bitmap_set(arena->purge, idx, n);
      note_earliest(&arena->purge_expire, expire);
      note_earliest(&arenas->purge_expire, expire);
      lm_arenas_wake_purger(arenas);
    }
  }
  lm_bitmap_clear(arena->inuse, idx, n);
}

void lm_arena_free(lm_arenas_t* arenas, void* p, size_t size, const lm_memid_t* memid) {
  int64_t mult = arenas->config.arena_purge_mult > 0 ? arenas->config.arena_purge_mult : 1;
  arena_free(arenas, p, size, memid, mult, 0);
}

void lm_arena_free_soon(lm_arenas_t* arenas, void* p, size_t size, const lm_memid_t* memid,
                        int64_t purge_not_before) {
  arena_free(arenas, p, size, memid, 1, purge_not_before);
}

/* ---- purging ------------------------------------------------------------------------------ */

/* Purge this arena's pending blocks whose deadline passed (all with `force`), except those
 * thread `keep` freed (none when 0); returns true if some remain pending. */
static bool arena_try_purge(lm_arenas_t* arenas, lm_arena_t* arena, int64_t now, bool force,
                            lm_thread_id_t keep) {
  int64_t expire = lm_load_relaxed(&arena->purge_expire);
  if (expire == 0) return false;
  if (!force && expire > now) return true;
  lm_store_relaxed(&arena->purge_expire, 0);
  int64_t next = 0;
  for (size_t idx = 0; idx < arena->block_count; idx++) {
    if (!lm_bitmap_is_any_set(arena->purge, idx, 1)) continue;
    int64_t due = atomic_load_explicit(&arena->block_expire[idx], memory_order_acquire);
    bool kept = keep != 0 &&
                atomic_load_explicit(&arena->block_freer[idx], memory_order_relaxed) == keep;
    if ((!force || kept) && due > now) {
      if (next == 0 || due < next) next = due;
      continue;
    }
    /* Claim the block as in use so no thread allocates it while we purge it. */
    if (!lm_bitmap_try_set_range(arena->inuse, idx, 1)) {
      if (next == 0 || now + 1 < next) next = now + 1; /* taken meanwhile, or busy */
      continue;
    }
    if (lm_bitmap_clear(arena->purge, idx, 1)) arena_purge_blocks(arenas, arena, idx, 1);
    lm_bitmap_clear(arena->inuse, idx, 1);
  }
  if (next != 0) note_earliest(&arena->purge_expire, next);
  return next != 0 || lm_bitmap_count(arena->purge, arena->block_count) > 0;
}

static bool arenas_purge(lm_arenas_t* arenas, bool force, lm_thread_id_t keep) {
  int64_t expire = lm_load_acquire(&arenas->purge_expire);
  if (expire == 0) return false;
  int64_t now = lm_os_clock(arenas);
  if (!force && expire > now) return true;
  if (!lm_spin_try_lock(&arenas->purge_guard)) return true;
  lm_store_relaxed(&arenas->purge_expire, 0);
  bool pending = false;
  int64_t next = 0;
  size_t n = arena_count(arenas);
  for (size_t i = 0; i < n; i++) {
    lm_arena_t* arena = arena_at(arenas, i);
    if (arena == NULL) continue;
    if (arena_try_purge(arenas, arena, now, force, keep)) {
      pending = true;
      int64_t e = lm_load_relaxed(&arena->purge_expire);
      if (e != 0 && (next == 0 || e < next)) next = e;
    }
  }
  lm_spin_unlock(&arenas->purge_guard);
  if (pending) note_earliest(&arenas->purge_expire, next != 0 ? next : now + 1);
  return pending;
}

bool lm_arenas_try_purge(lm_arenas_t* arenas, bool force) { return arenas_purge(arenas, force, 0); }

void lm_arenas_purge_early(lm_arenas_t* arenas, lm_thread_id_t keep) {
  arenas_purge(arenas, true, keep);
}

size_t lm_arenas_purge_pending(lm_arenas_t* arenas) {
  size_t blocks = 0;
  size_t n = arena_count(arenas);
  for (size_t i = 0; i < n; i++) {
    lm_arena_t* arena = arena_at(arenas, i);
    if (arena != NULL) blocks += lm_bitmap_count(arena->purge, arena->block_count);
  }
  return blocks * LM_ARENA_BLOCK_SIZE;
}

int64_t lm_arenas_purge_deadline(lm_arenas_t* arenas) {
  return lm_load_acquire(&arenas->purge_expire);
}

/* ---- block flags ------------------------------------------------------------------------ */

static lm_arena_t* arena_containing(lm_arenas_t* arenas, const void* p, size_t* idx) {
  size_t n = arena_count(arenas);
  for (size_t i = 0; i < n; i++) {
    lm_arena_t* arena = arena_at(arenas, i);
    if (arena == NULL) continue;
    const uint8_t* q = (const uint8_t*)p;
    if (q >= arena->start && q < arena->start + arena->block_count * LM_ARENA_BLOCK_SIZE) {
      *idx = (size_t)(q - arena->start) / LM_ARENA_BLOCK_SIZE;
      return arena;
    }
  }
  return NULL;
}

bool lm_arena_flag_set(lm_arenas_t* arenas, const void* block, lm_block_flag_t flag) {
  size_t idx;
  lm_arena_t* arena = arena_containing(arenas, block, &idx);
  if (arena == NULL) return false;
  atomic_fetch_or(&arena->flags[flag][idx / 64], (uint64_t)1 << (idx % 64));
  return true;
}

bool lm_arena_flag_clear(lm_arenas_t* arenas, const void* block, lm_block_flag_t flag) {
  size_t idx;
  lm_arena_t* arena = arena_containing(arenas, block, &idx);
  if (arena == NULL) return false;
  uint64_t mask = (uint64_t)1 << (idx % 64);
  return (atomic_fetch_and(&arena->flags[flag][idx / 64], ~mask) & mask) != 0;
}

bool lm_arena_flag_is_set(lm_arenas_t* arenas, const void* block, lm_block_flag_t flag) {
  size_t idx;
  lm_arena_t* arena = arena_containing(arenas, block, &idx);
  if (arena == NULL) return false;
  return (atomic_load(&arena->flags[flag][idx / 64]) & ((uint64_t)1 << (idx % 64))) != 0;
}

void* lm_arena_flag_find_next(lm_arenas_t* arenas, lm_block_flag_t flag,
                              lm_arena_cursor_t* cursor) {
  size_t n = arena_count(arenas);
  for (size_t i = cursor->arena; i < n; i++) {
    lm_arena_t* arena = arena_at(arenas, i);
    size_t b = i == cursor->arena ? cursor->block : 0;
    for (; arena != NULL && b < arena->block_count; b++) {
      uint64_t field = atomic_load_explicit(&arena->flags[flag][b / 64], memory_order_acquire);
      if ((field >> (b % 64)) == 0) {
        b = lm_align_up(b + 1, 64) - 1; /* nothing more in this field */
        continue;
      }
      if (field & ((uint64_t)1 << (b % 64))) {
        *cursor = (lm_arena_cursor_t){(uint32_t)i, (uint32_t)(b + 1)};
        return arena->start + b * LM_ARENA_BLOCK_SIZE;
      }
    }
  }
  *cursor = (lm_arena_cursor_t){(uint32_t)n, 0};
  return NULL;
}

size_t lm_arena_flag_count(lm_arenas_t* arenas, lm_block_flag_t flag) {
  size_t count = 0;
  size_t n = arena_count(arenas);
  for (size_t i = 0; i < n; i++) {
    lm_arena_t* arena = arena_at(arenas, i);
    if (arena != NULL) count += lm_bitmap_count(arena->flags[flag], arena->block_count);
  }
  return count;
}

bool lm_arenas_contain(lm_arenas_t* arenas, const void* p) {
  size_t idx;
  return arena_containing(arenas, p, &idx) != NULL;
}

void lm_arenas_wake_purger(lm_arenas_t* arenas) {
  if (lm_load_relaxed(&arenas->purger_idle) == 0) return;
  if (atomic_exchange(&arenas->purger_idle, 0) == 1 && arenas->backend->wake_all != NULL &&
      lm_load_relaxed(&arenas->purger_thread)) {
    arenas->backend->wake_all(&arenas->purger_idle);
  }
}
