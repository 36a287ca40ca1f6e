/* The arena and OS-memory API (reserving, managing external memory, huge OS pages, printing
 * arena maps), sub-processes, and the experimental entry points that are no-ops here. */
#include "core.h"

static bool ready(void) { return lm_process_ensure_init(); }

/* A node the arenas do not tell apart is bad input: reported, and refused as ENOMEM (not
 * EINVAL, which hardened builds treat as heap misuse and abort on). */
static bool node_ok(int numa_node) {
  if (lm_arenas_node_valid(&lm_process.arenas, numa_node)) return true;
  lm_error(ENOMEM, "numa node %d is not one of the %d nodes told apart", numa_node,
           lm_process.arenas.numa_count);
  return false;
}

int mi_reserve_os_memory_ex(size_t size, bool commit, bool allow_large, bool exclusive,
                            mi_arena_id_t* arena_id) mi_attr_noexcept {
  if (!ready()) return ENOMEM;
  /* Large OS pages only when allow_large_os_pages is set too (and then committed). */
  int err = lm_arena_reserve_ex(&lm_process.arenas, size, commit, allow_large, exclusive, -1,
                                arena_id);
  if (err != 0) lm_warning("unable to reserve OS memory (%zu bytes): error %d", size, err);
  return err;
}

int mi_reserve_os_memory(size_t size, bool commit, bool allow_large) mi_attr_noexcept {
  return mi_reserve_os_memory_ex(size, commit, allow_large, false, NULL);
}

bool mi_manage_os_memory_ex(void* start, size_t size, bool is_committed, bool is_large,
                            bool is_zero, int numa_node, bool exclusive,
                            mi_arena_id_t* arena_id) mi_attr_noexcept {
  if (arena_id != NULL) *arena_id = 0;
  if (!ready() || !node_ok(numa_node)) return false;
  int err = lm_arena_manage(&lm_process.arenas, start, size, is_committed, is_large, is_zero,
                            numa_node, exclusive, arena_id);
  if (err != 0) lm_warning("unable to manage memory at %p (%zu bytes): error %d", start, size, err);
  return err == 0;
}

bool mi_manage_os_memory(void* start, size_t size, bool is_committed, bool is_large,
                         bool is_zero, int numa_node) mi_attr_noexcept {
  return mi_manage_os_memory_ex(start, size, is_committed, is_large, is_zero, numa_node, false,
                                NULL);
}

void* mi_arena_area(mi_arena_id_t arena_id, size_t* size) {
  return lm_arena_area(&lm_process.arenas, arena_id, size);
}

int lm_huge_reserve_at(size_t pages, int numa_node, size_t timeout_ms, bool exclusive,
                       int* arena_id, size_t* reserved) {
  if (arena_id != NULL) *arena_id = 0;
  if (reserved != NULL) *reserved = 0;
  if (!node_ok(numa_node)) return ENOMEM;
  size_t got = 0;
  uint64_t ms = timeout_ms; /* (a size_t is 32 bits on 32-bit targets) */
  int64_t timeout = ms > INT64_MAX ? INT64_MAX : (int64_t)ms;
  int err = lm_arena_reserve_huge(&lm_process.arenas, pages, numa_node, exclusive, timeout, &got,
                                  arena_id);
  if (reserved != NULL) *reserved = got;
  if (err == 0) {
    if (pages > 0) lm_verbose("reserved %zu huge (1 GiB) OS pages (numa node %d)", pages, numa_node);
  } else if (!LM_HUGE_PAGES) {
    lm_warning("huge (1 GiB) OS pages asked for, but this build has them compiled out "
               "(-Dhuge_pages=disabled)");
  } else if (got == 0) {
    lm_warning("huge (1 GiB) OS pages asked for (%zu), but none could be had: the OS has no "
               "free ones (an administrator must set a pool of them aside)", pages);
  } else {
    lm_warning("reserved only %zu of %zu huge (1 GiB) OS pages (numa node %d): %s", got, pages,
               numa_node, timeout > 0 ? "the OS refused more, or the time limit passed"
                                      : "the OS refused more");
  }
  return err == 0 ? 0 : ENOMEM;
}

int lm_huge_reserve_interleave(size_t pages, size_t numa_nodes, size_t timeout_ms,
                               size_t* reserved) {
  if (reserved != NULL) *reserved = 0;
  size_t known = (size_t)lm_process.arenas.numa_count;
  size_t nodes = numa_nodes == 0 || numa_nodes > known ? known : numa_nodes;
  for (size_t node = 0; node < nodes && pages > 0; node++) {
    size_t n = pages / nodes + (node < pages % nodes ? 1 : 0);
    if (n == 0) continue;
    size_t got = 0;
    int err = lm_huge_reserve_at(n, nodes > 1 ? (int)node : -1, timeout_ms / nodes + 50, false,
                                 NULL, &got);
    if (reserved != NULL) *reserved += got;
    if (err != 0) return err;
  }
  return 0;
}

int mi_reserve_huge_os_pages_at_ex(size_t pages, int numa_node, size_t timeout_msecs,
                                   bool exclusive, mi_arena_id_t* arena_id) mi_attr_noexcept {
  if (arena_id != NULL) *arena_id = 0;
  if (!ready()) return ENOMEM;
  return lm_huge_reserve_at(pages, numa_node, timeout_msecs, exclusive, arena_id, NULL);
}

int mi_reserve_huge_os_pages_at(size_t pages, int numa_node, size_t timeout_msecs)
    mi_attr_noexcept {
  return mi_reserve_huge_os_pages_at_ex(pages, numa_node, timeout_msecs, false, NULL);
}

/* `numa_nodes` 0: every node the arenas tell apart (use_numa_nodes counts); more nodes than
 * that are not asked for. */
int mi_reserve_huge_os_pages_interleave(size_t pages, size_t numa_nodes, size_t timeout_msecs)
    mi_attr_noexcept {
  if (!ready()) return ENOMEM;
  return lm_huge_reserve_interleave(pages, numa_nodes, timeout_msecs, NULL);
}

/* Deprecated: the pages had are counted even when fewer than asked (ENOMEM then). A time
 * limit that is not a positive number of seconds means none. */
int mi_reserve_huge_os_pages(size_t pages, double max_secs, size_t* pages_reserved)
    mi_attr_noexcept {
  size_t got = 0;
  if (pages_reserved != NULL) *pages_reserved = 0;
  if (!ready()) return ENOMEM;
  size_t timeout = max_secs > 0 && max_secs < 1e9 ? (size_t)(max_secs * 1000.0) : 0;
  int err = lm_huge_reserve_interleave(pages, 0, timeout, &got);
  if (pages_reserved != NULL) *pages_reserved = got;
  return err;
}

void mi_collect_reduce(size_t target_thread_owned) mi_attr_noexcept {
  (void)target_thread_owned;
  mi_collect(true);
}

/* One line per arena: "x" for a block (32 MiB) in use, "." for a free one. */
void mi_debug_show_arenas(void) mi_attr_noexcept {
  size_t count = lm_arena_count(&lm_process.arenas);
  for (size_t i = 1; i <= count; i++) {
    size_t size = 0;
    void* start = lm_arena_area(&lm_process.arenas, (int)i, &size);
    if (start == NULL) continue;
    char map[129];
    size_t blocks = size / LM_ARENA_BLOCK_SIZE, n = 0, used = 0;
    for (size_t b = 0; b < blocks; b++) {
      bool in_use = lm_arena_block_in_use(&lm_process.arenas, (int)i, b);
      used += in_use;
      if (n < sizeof(map) - 1) map[n++] = in_use ? 'x' : '.';
    }
    map[n] = 0;
    lm_message("arena %zu at %p: %zu blocks of 32 MiB, %zu in use: %s%s", i, start, blocks, used,
               map, blocks > n ? "..." : "");
  }
}

void mi_arenas_print(void) mi_attr_noexcept { mi_debug_show_arenas(); }

/* ---- sub-processes --------------------------------------------------------------------------- */
/* A sub-process is an id that threads join before allocating; this build keeps one shared set
 * of abandoned segments, so the ids only group threads (documented as shallower than upstream). */
typedef struct lm_subproc_s {
  uint64_t magic;
} lm_subproc_t;
#define SUBPROC_MAGIC 0x5355425052435321ull

mi_subproc_id_t mi_subproc_main(void) { return NULL; }

mi_subproc_id_t mi_subproc_new(void) {
  lm_subproc_t* sp = mi_zalloc(sizeof(lm_subproc_t));
  if (sp != NULL) sp->magic = SUBPROC_MAGIC;
  return sp;
}

void mi_subproc_delete(mi_subproc_id_t subproc) {
  lm_subproc_t* sp = subproc;
  if (sp == NULL || sp->magic != SUBPROC_MAGIC) return;
  sp->magic = 0;
  mi_free(sp);
}

void mi_subproc_add_current_thread(mi_subproc_id_t subproc) { (void)subproc; }

/* Visit the blocks of abandoned segments: each is claimed (so no thread reclaims it while we
 * look), its abandoned pages of the wanted tag visited, and then abandoned again. */
bool mi_abandoned_visit_blocks(mi_subproc_id_t subproc_id, int heap_tag, bool visit_blocks,
                               mi_block_visit_fun* visitor, void* arg) {
  (void)subproc_id;
  if (!mi_option_is_enabled(mi_option_visit_abandoned)) {
    lm_error(EFAULT, "mi_abandoned_visit_blocks requires the option visit_abandoned");
    return false;
  }
  if (visitor == NULL || !ready()) return false;
  lm_segments_tld_t tld;
  lm_segments_tld_init(&tld, &lm_process.segments);
  lm_arena_cursor_t cursor = LM_ARENA_CURSOR_START;
  size_t count = lm_segments_abandoned_count(&lm_process.segments);
  bool ok = true;
  for (size_t i = 0; i < count && ok; i++) {
    lm_segment_t* segment = lm_segment_reclaim(&tld, &cursor);
    if (segment == NULL) break;
    for (lm_page_t* page = lm_segment_next_page(segment, NULL); page != NULL && ok;
         page = lm_segment_next_page(segment, page)) {
      if (heap_tag >= 0 && page->heap_tag != heap_tag) continue;
      ok = lm_page_visit(NULL, page, visit_blocks, visitor, arg);
    }
    lm_segment_abandon_again(segment, &tld);
  }
  return ok;
}

void mi_thread_set_in_threadpool(void) mi_attr_noexcept {}

/* ---- fault injection: the test hook -------------------------------------------------------- */
/* Tests linked with the static library set the fault plan at run time (MIMALLOC_FAULT_OS sets
 * it at start): nth > 0 fails the nth OS memory call from now, `kinds` (LM_FAULT_RESERVE |
 * LM_FAULT_COMMIT) every call of a kind; returns the faults injected so far. */
int64_t lm_fault_os(int64_t nth, unsigned kinds) {
  lm_arenas_fault_set(&lm_process.arenas, nth, kinds);
  return atomic_load(&lm_process.arenas.fault.injected);
}
