/* C++ allocation semantics, written in C (facts 1.13): when an allocation fails, call the
 * program's std::new_handler and retry, for as long as there is one; without a handler the
 * throwing forms raise std::bad_alloc and the nothrow forms return NULL.
 *
 * The library is C and links no C++ runtime, so the runtime is reached through weak references
 * that stay NULL in a program without one:
 *   - std::get_new_handler()   (libstdc++ and libc++abi share the mangled name);
 *   - std::__throw_bad_alloc()  (libstdc++, and libc++ in its own namespace) to raise the
 *     exception; without it the error is reported and the process aborts.
 * An exception raised here unwinds through C frames: the library needs unwind tables (the
 * x86-64 and AArch64 default; -fexceptions elsewhere). A new_handler that throws from a nothrow
 * call is not caught here (C cannot); the program would see it as thrown from that call.
 *
 * With LM_OVERRIDE the replaceable global operators new and delete are exported under their
 * Itanium-ABI names (facts 3), so that a C++ program linked with or preloading the library uses
 * them: aliases of mi_new and mi_new_aligned or of the nothrow functions below, and the deletes
 * aliases of mi_free (free.c); override.h lists the names. They are weak definitions: a
 * program's own operators take precedence instead of clashing.
 */
#include <stdint.h>
#include <stdlib.h> /* abort */

#include "core.h"

/* Exported for mimalloc compatibility, but not in the header (facts 1.13). */
mi_decl_export void* mi_heap_try_new(mi_heap_t* heap, size_t size, bool nothrow);

/* ---- the C++ runtime, when the program has one ----------------------------------------------- */
typedef void lm_new_handler_t(void);
#define LM_CXX_WEAK __attribute__((weak, visibility("default")))

extern lm_new_handler_t* lm_cxx_get_new_handler(void) __asm__(LM_CXX_NAME("_ZSt15get_new_handlerv"))
    LM_CXX_WEAK;
extern void lm_cxx_throw_bad_alloc(void) __asm__(LM_CXX_NAME("_ZSt17__throw_bad_allocv"))
    LM_CXX_WEAK __attribute__((noreturn));
extern void lm_cxx_throw_bad_alloc_libcxx(void) __asm__(
    LM_CXX_NAME("_ZNSt3__117__throw_bad_allocEv")) LM_CXX_WEAK __attribute__((noreturn));

static lm_noinline __attribute__((noreturn)) void throw_bad_alloc(void) {
  if (lm_cxx_throw_bad_alloc != NULL) lm_cxx_throw_bad_alloc();
  if (lm_cxx_throw_bad_alloc_libcxx != NULL) lm_cxx_throw_bad_alloc_libcxx();
  lm_error(ENOMEM, "out of memory in 'new' (no C++ runtime to throw std::bad_alloc)");
  abort();
}

/* After a failure: run the new handler and return true (retry), or, without one, throw
 * (return false when `nothrow`). */
static lm_noinline bool new_handler_retry(bool nothrow) {
  lm_new_handler_t* handler = lm_cxx_get_new_handler != NULL ? lm_cxx_get_new_handler() : NULL;
  if (handler == NULL) {
    if (!nothrow) throw_bad_alloc();
    return false;
  }
  handler();
  return true;
}

/* A request that can never succeed (size overflow, invalid alignment): no handler can help. */
static lm_noinline void* new_impossible(bool nothrow) {
  if (!nothrow) throw_bad_alloc();
  errno = ENOMEM;
  return NULL;
}

static bool new_count_size(size_t count, size_t size, size_t* total) {
  if (lm_likely(!lm_mul_overflow(count, size, total))) return true;
  lm_error(EOVERFLOW, "allocation size overflow in 'new' (%zu * %zu bytes)", count, size);
  return false;
}

/* ---- heap allocation with new semantics ------------------------------------------------------ */

/* After a failed allocation: the handler loop. */
static lm_noinline void* heap_new_retry(lm_heap_t* heap, size_t size, bool nothrow) {
  void* p = NULL;
  while (p == NULL && new_handler_retry(nothrow)) p = lm_heap_malloc(heap, size, false);
  return p;
}

static inline void* heap_new(lm_heap_t* heap, size_t size, bool nothrow) {
  void* p = lm_heap_malloc(heap, size, false);
  if (lm_unlikely(p == NULL)) return heap_new_retry(heap, size, nothrow);
  return p;
}

/* An allocation attempt first, so that it serves a caller that has not tried yet. */
void* mi_heap_try_new(mi_heap_t* heap, size_t size, bool nothrow) {
  return heap_new(heap, size, nothrow);
}

void* mi_heap_alloc_new(mi_heap_t* heap, size_t size) { return heap_new(heap, size, false); }

void* mi_heap_alloc_new_n(mi_heap_t* heap, size_t count, size_t size) {
  size_t total;
  if (lm_unlikely(!new_count_size(count, size, &total))) return new_impossible(false);
  return heap_new(heap, total, false);
}

void* mi_new(size_t size) { return heap_new(lm_heap_get_default(), size, false); }

void* mi_new_nothrow(size_t size) mi_attr_noexcept {
  return heap_new(lm_heap_get_default(), size, true);
}

void* mi_new_n(size_t count, size_t size) {
  return mi_heap_alloc_new_n(lm_heap_get_default(), count, size);
}

/* ---- aligned --------------------------------------------------------------------------------- */

static lm_noinline void* new_aligned_retry(size_t size, size_t alignment, bool nothrow) {
  if (!lm_is_power_of_two(alignment)) return new_impossible(nothrow);
  void* p = NULL;
  while (p == NULL && new_handler_retry(nothrow)) {
    p = lm_heap_malloc_aligned_at(lm_heap_get_default(), size, alignment, 0, false);
  }
  return p;
}

static inline void* new_aligned(size_t size, size_t alignment, bool nothrow) {
  void* p = lm_heap_malloc_aligned_at(lm_heap_get_default(), size, alignment, 0, false);
  if (lm_unlikely(p == NULL)) return new_aligned_retry(size, alignment, nothrow);
  return p;
}

void* mi_new_aligned(size_t size, size_t alignment) { return new_aligned(size, alignment, false); }

void* mi_new_aligned_nothrow(size_t size, size_t alignment) mi_attr_noexcept {
  return new_aligned(size, alignment, true);
}

/* ---- reallocation: p stays valid until a retry succeeds -------------------------------------- */

void* mi_new_realloc(void* p, size_t newsize) {
  void* q;
  do {
    q = lm_heap_realloc(lm_heap_get_default(), p, newsize, false);
  } while (lm_unlikely(q == NULL) && new_handler_retry(false));
  return q;
}

void* mi_new_reallocn(void* p, size_t count, size_t size) {
  size_t total;
  if (lm_unlikely(!new_count_size(count, size, &total))) return new_impossible(false);
  return mi_new_realloc(p, total);
}

/* ---- the replaceable global operators -------------------------------------------------------- */
#if LM_OVERRIDE
/* The forms whose prototypes differ from their mi_ function; each pair of operators (scalar
 * and array) shares one. Their exported names are in override.h. */
lm_unused static void* cxx_new_nothrow(size_t size, const void* nt) mi_attr_noexcept {
  (void)nt;
  return heap_new(lm_heap_get_default(), size, true);
}
lm_unused static void* cxx_new_aligned_nothrow(size_t size, size_t alignment,
                                     const void* nt) mi_attr_noexcept {
  (void)nt;
  return new_aligned(size, alignment, true);
}
LM_OVERRIDE_NAMES(mi_new)
LM_OVERRIDE_NAMES(cxx_new_nothrow)
LM_OVERRIDE_NAMES(mi_new_aligned)
LM_OVERRIDE_NAMES(cxx_new_aligned_nothrow)
#endif
/* delete and delete[] are aliases of mi_free itself, in free.c (no extra jump). */
