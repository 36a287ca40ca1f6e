/* What memory is ours: the hinted region (fast test), arenas and the map of OS-allocated
 * segments (exact test), and what happens to pointers that are not ours. Also the
 * deferred-free hook, which other runtimes use to free lazily from our slow paths. */
#include "core.h"

bool lm_is_in_heap_region(const void* p) {
  if (p == NULL) return false;
  return lm_arenas_contain(&lm_process.arenas, p) ||
         lm_segment_map_contains(&lm_process.segments, p);
}

bool mi_is_in_heap_region(const void* p) mi_attr_noexcept { return lm_is_in_heap_region(p); }

bool mi_is_redirected(void) mi_attr_noexcept { return false; /* a Windows notion */ }

void lm_free_foreign(void* p) {
  const lm_backend_t* backend = lm_process.backend;
  if (backend != NULL && backend->foreign_free != NULL && backend->foreign_free(p)) return;
  lm_warning("free of a pointer that was not allocated here (%p): ignored", p);
}

size_t lm_foreign_usable_size(const void* p) {
  const lm_backend_t* backend = lm_process.backend;
  if (backend == NULL || backend->foreign_usable_size == NULL) return 0;
  return backend->foreign_usable_size(p);
}

/* ---- deferred free ----------------------------------------------------------------------------- */
static _Atomic(mi_deferred_free_fun*) deferred_fun;
static _Atomic(void*) deferred_arg;

void mi_register_deferred_free(mi_deferred_free_fun* fn, void* arg) mi_attr_noexcept {
  atomic_store(&deferred_arg, arg);
  atomic_store(&deferred_fun, fn);
}

void lm_deferred_free(lm_heap_t* heap, bool force) {
  lm_tld_t* tld = heap->tld;
  tld->heartbeat++;
  mi_deferred_free_fun* fn = atomic_load_explicit(&deferred_fun, memory_order_relaxed);
  if (fn == NULL || tld->recurse) return;
  tld->recurse = true;
  fn(force, tld->heartbeat, atomic_load_explicit(&deferred_arg, memory_order_relaxed));
  tld->recurse = false;
}
