/* libmimalloc: a general-purpose allocator, API- and ABI-compatible with mimalloc v2.
 *
 * This header declares the public API. Every allocation function returns memory aligned to 16
 * bytes (8 bytes for requests of at most 8 bytes, which is all such an object can need), or NULL
 * with errno set to ENOMEM when memory cannot be had (size overflow included). Any thread may
 * free any block.
 */
#pragma once
#ifndef MIMALLOC_H
#define MIMALLOC_H

#define MI_MALLOC_VERSION 20401 /* major*10000 + minor*100 + patch: the v2 API level we match */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h> /* programs written against mimalloc's header get uintptr_t & co. from it */

#ifdef __cplusplus
#if (__cplusplus >= 201103L) || (defined(_MSC_VER) && _MSC_VER >= 1900)
#define mi_attr_noexcept noexcept
#else
#define mi_attr_noexcept throw()
#endif
#else
#define mi_attr_noexcept
#endif

#if defined(__cplusplus) && (__cplusplus >= 201703L)
#define mi_decl_nodiscard [[nodiscard]]
#elif (defined(__GNUC__) && (__GNUC__ >= 4)) || defined(__clang__)
#define mi_decl_nodiscard __attribute__((warn_unused_result))
#else
#define mi_decl_nodiscard
#endif

#if defined(_WIN32)
/* Windows: what mimalloc.dll exports is what the library was built with dllexport on; a
 * program may declare the imports (MI_SHARED_LIB) or rely on the import library's stubs. */
#if defined(MI_SHARED_LIB_EXPORT)
#define mi_decl_export __declspec(dllexport)
#elif defined(MI_SHARED_LIB)
#define mi_decl_export __declspec(dllimport)
#else
#define mi_decl_export
#endif
#elif defined(__GNUC__) || defined(__clang__)
#define mi_decl_export __attribute__((visibility("default")))
#else
#define mi_decl_export
#endif

#if defined(__GNUC__) || defined(__clang__)
#define mi_decl_restrict
#define mi_attr_malloc __attribute__((malloc))
#if defined(__clang_major__) && (__clang_major__ < 4)
#define mi_attr_alloc_size(s)
#define mi_attr_alloc_size2(s1, s2)
#define mi_attr_alloc_align(p)
#else
#define mi_attr_alloc_size(s) __attribute__((alloc_size(s)))
#define mi_attr_alloc_size2(s1, s2) __attribute__((alloc_size(s1, s2)))
#if defined(__GNUC__) && !defined(__clang__) && (__GNUC__ < 5)
#define mi_attr_alloc_align(p)
#else
#define mi_attr_alloc_align(p) __attribute__((alloc_align(p)))
#endif
#endif
#else
#define mi_decl_restrict
#define mi_attr_malloc
#define mi_attr_alloc_size(s)
#define mi_attr_alloc_size2(s1, s2)
#define mi_attr_alloc_align(p)
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ---- the standard interface ------------------------------------------------------------ */
mi_decl_nodiscard mi_decl_export mi_decl_restrict void* mi_malloc(size_t size) mi_attr_noexcept
    mi_attr_malloc mi_attr_alloc_size(1);
mi_decl_nodiscard mi_decl_export mi_decl_restrict void* mi_calloc(size_t count, size_t size)
    mi_attr_noexcept mi_attr_malloc mi_attr_alloc_size2(1, 2);
mi_decl_nodiscard mi_decl_export void* mi_realloc(void* p, size_t newsize) mi_attr_noexcept
    mi_attr_alloc_size(2);
mi_decl_export void* mi_expand(void* p, size_t newsize) mi_attr_noexcept mi_attr_alloc_size(2);
mi_decl_export void mi_free(void* p) mi_attr_noexcept;
mi_decl_nodiscard mi_decl_export mi_decl_restrict char* mi_strdup(const char* s)
    mi_attr_noexcept mi_attr_malloc;
mi_decl_nodiscard mi_decl_export mi_decl_restrict char* mi_strndup(const char* s, size_t n)
    mi_attr_noexcept mi_attr_malloc;
mi_decl_nodiscard mi_decl_export mi_decl_restrict char* mi_realpath(const char* fname,
                                                                    char* resolved_name)
    mi_attr_noexcept mi_attr_malloc;

/* ---- extended --------------------------------------------------------------------------- */
#define MI_SMALL_WSIZE_MAX (128)
#define MI_SMALL_SIZE_MAX (MI_SMALL_WSIZE_MAX * sizeof(void*))
/* The caller guarantees size <= MI_SMALL_SIZE_MAX: the tightest allocation path. */
mi_decl_nodiscard mi_decl_export mi_decl_restrict void* mi_malloc_small(size_t size)
    mi_attr_noexcept mi_attr_malloc mi_attr_alloc_size(1);
mi_decl_nodiscard mi_decl_export mi_decl_restrict void* mi_zalloc_small(size_t size)
    mi_attr_noexcept mi_attr_malloc mi_attr_alloc_size(1);
mi_decl_nodiscard mi_decl_export mi_decl_restrict void* mi_zalloc(size_t size) mi_attr_noexcept
    mi_attr_malloc mi_attr_alloc_size(1);
mi_decl_nodiscard mi_decl_export mi_decl_restrict void* mi_mallocn(size_t count, size_t size)
    mi_attr_noexcept mi_attr_malloc mi_attr_alloc_size2(1, 2);
mi_decl_nodiscard mi_decl_export void* mi_reallocn(void* p, size_t count, size_t size)
    mi_attr_noexcept mi_attr_alloc_size2(2, 3);
/* Like mi_realloc, but frees p when it fails. */
mi_decl_nodiscard mi_decl_export void* mi_reallocf(void* p, size_t newsize) mi_attr_noexcept
    mi_attr_alloc_size(2);
/* The bytes usable in the block of p (0 for NULL); at least the requested size. */
mi_decl_nodiscard mi_decl_export size_t mi_usable_size(const void* p) mi_attr_noexcept;
/* The usable size a request of `size` bytes would get. */
mi_decl_nodiscard mi_decl_export size_t mi_good_size(size_t size) mi_attr_noexcept;

/* ---- messages and errors ----------------------------------------------------------------- */
typedef void mi_output_fun(const char* msg, void* arg);
/* Send messages to `out` (NULL: back to stderr); earlier buffered messages are flushed to it. */
mi_decl_export void mi_register_output(mi_output_fun* out, void* arg) mi_attr_noexcept;
/* Called with an errno-style code: EAGAIN double free, EFAULT corrupted metadata, EINVAL
 * invalid pointer, ENOMEM out of memory, EOVERFLOW size overflow. */
typedef void mi_error_fun(int err, void* arg);
mi_decl_export void mi_register_error(mi_error_fun* fun, void* arg);

/* ---- internals, process and thread control --------------------------------------------- */
typedef void mi_deferred_free_fun(bool force, unsigned long long heartbeat, void* arg);
/* One global callback, called from the allocation slow path and from collect with a rising
 * heartbeat; lets reference-counting runtimes free lazily. */
mi_decl_export void mi_register_deferred_free(mi_deferred_free_fun* deferred_free, void* arg)
    mi_attr_noexcept;

/* Collect free memory of the calling thread; `force` also purges and reclaims abandoned
 * memory where possible. */
mi_decl_export void mi_collect(bool force) mi_attr_noexcept;
mi_decl_export int mi_version(void) mi_attr_noexcept;
mi_decl_export void mi_stats_reset(void) mi_attr_noexcept;
mi_decl_export void mi_stats_merge(void) mi_attr_noexcept;
mi_decl_export void mi_stats_print(void* out) mi_attr_noexcept; /* `out` is ignored */
mi_decl_export void mi_stats_print_out(mi_output_fun* out, void* arg) mi_attr_noexcept;
mi_decl_export void mi_thread_stats_print_out(mi_output_fun* out, void* arg) mi_attr_noexcept;
mi_decl_export void mi_options_print(void) mi_attr_noexcept;

/* Normally automatic; exported for programs that want to be explicit. */
mi_decl_export void mi_process_init(void) mi_attr_noexcept;
mi_decl_export void mi_process_done(void) mi_attr_noexcept;
mi_decl_export void mi_thread_init(void) mi_attr_noexcept;
mi_decl_export void mi_thread_done(void) mi_attr_noexcept;
mi_decl_export void mi_process_info(size_t* elapsed_msecs, size_t* user_msecs,
                                    size_t* system_msecs, size_t* current_rss, size_t* peak_rss,
                                    size_t* current_commit, size_t* peak_commit,
                                    size_t* page_faults) mi_attr_noexcept;

/* ---- aligned allocation: the alignment must be a power of two ---------------------------- */
#define MI_ALIGNMENT_MAX (16 * 1024 * 1024UL) /* deprecated upstream; kept for source compat */
mi_decl_nodiscard mi_decl_export mi_decl_restrict void* mi_malloc_aligned(size_t size,
                                                                          size_t alignment)
    mi_attr_noexcept mi_attr_malloc mi_attr_alloc_size(1) mi_attr_alloc_align(2);
mi_decl_nodiscard mi_decl_export mi_decl_restrict void* mi_malloc_aligned_at(size_t size,
                                                                             size_t alignment,
                                                                             size_t offset)
    mi_attr_noexcept mi_attr_malloc mi_attr_alloc_size(1);
mi_decl_nodiscard mi_decl_export mi_decl_restrict void* mi_zalloc_aligned(size_t size,
                                                                          size_t alignment)
    mi_attr_noexcept mi_attr_malloc mi_attr_alloc_size(1) mi_attr_alloc_align(2);
mi_decl_nodiscard mi_decl_export mi_decl_restrict void* mi_zalloc_aligned_at(size_t size,
                                                                             size_t alignment,
                                                                             size_t offset)
    mi_attr_noexcept mi_attr_malloc mi_attr_alloc_size(1);
mi_decl_nodiscard mi_decl_export mi_decl_restrict void* mi_calloc_aligned(size_t count,
                                                                          size_t size,
                                                                          size_t alignment)
    mi_attr_noexcept mi_attr_malloc mi_attr_alloc_size2(1, 2) mi_attr_alloc_align(3);
mi_decl_nodiscard mi_decl_export mi_decl_restrict void* mi_calloc_aligned_at(size_t count,
                                                                             size_t size,
                                                                             size_t alignment,
                                                                             size_t offset)
    mi_attr_noexcept mi_attr_malloc mi_attr_alloc_size2(1, 2);
mi_decl_nodiscard mi_decl_export void* mi_realloc_aligned(void* p, size_t newsize,
                                                          size_t alignment) mi_attr_noexcept
    mi_attr_alloc_size(2) mi_attr_alloc_align(3);
mi_decl_nodiscard mi_decl_export void* mi_realloc_aligned_at(void* p, size_t newsize,
                                                             size_t alignment, size_t offset)
    mi_attr_noexcept mi_attr_alloc_size(2);

/* ---- POSIX-style aligned allocation ------------------------------------------------------ */
/* EINVAL if p is NULL or align is not a power of two multiple of sizeof(void*); ENOMEM when
 * the allocation fails. *p is left untouched on error. */
mi_decl_export int mi_posix_memalign(void** p, size_t alignment, size_t size) mi_attr_noexcept;
mi_decl_nodiscard mi_decl_export mi_decl_restrict void* mi_memalign(size_t alignment, size_t size)
    mi_attr_noexcept mi_attr_malloc mi_attr_alloc_size(2) mi_attr_alloc_align(1);
mi_decl_nodiscard mi_decl_export mi_decl_restrict void* mi_aligned_alloc(size_t alignment,
                                                                         size_t size)
    mi_attr_noexcept mi_attr_malloc mi_attr_alloc_size(2) mi_attr_alloc_align(1);
/* Aligned to the OS page; pvalloc also rounds the size up to whole pages. */
mi_decl_nodiscard mi_decl_export mi_decl_restrict void* mi_valloc(size_t size) mi_attr_noexcept
    mi_attr_malloc mi_attr_alloc_size(1);
mi_decl_nodiscard mi_decl_export mi_decl_restrict void* mi_pvalloc(size_t size) mi_attr_noexcept
    mi_attr_malloc mi_attr_alloc_size(1);

/* ---- "u" variants: also return the usable size of the block ------------------------------ */
mi_decl_nodiscard mi_decl_export mi_decl_restrict void* mi_umalloc(size_t size, size_t* block_size)
    mi_attr_noexcept mi_attr_malloc mi_attr_alloc_size(1);
mi_decl_nodiscard mi_decl_export mi_decl_restrict void* mi_ucalloc(size_t count, size_t size,
                                                                   size_t* block_size)
    mi_attr_noexcept mi_attr_malloc mi_attr_alloc_size2(1, 2);
mi_decl_nodiscard mi_decl_export void* mi_urealloc(void* p, size_t newsize,
                                                   size_t* block_size_pre,
                                                   size_t* block_size_post) mi_attr_noexcept
    mi_attr_alloc_size(2);
mi_decl_export void mi_ufree(void* p, size_t* block_size) mi_attr_noexcept;
mi_decl_nodiscard mi_decl_export mi_decl_restrict void* mi_umalloc_aligned(size_t size,
                                                                           size_t alignment,
                                                                           size_t* block_size)
    mi_attr_noexcept mi_attr_malloc mi_attr_alloc_size(1) mi_attr_alloc_align(2);
mi_decl_nodiscard mi_decl_export mi_decl_restrict void* mi_uzalloc_aligned(size_t size,
                                                                           size_t alignment,
                                                                           size_t* block_size)
    mi_attr_noexcept mi_attr_malloc mi_attr_alloc_size(1) mi_attr_alloc_align(2);
mi_decl_nodiscard mi_decl_export mi_decl_restrict void* mi_umalloc_small(size_t size,
                                                                         size_t* block_size)
    mi_attr_noexcept mi_attr_malloc mi_attr_alloc_size(1);
mi_decl_nodiscard mi_decl_export mi_decl_restrict void* mi_uzalloc_small(size_t size,
                                                                         size_t* block_size)
    mi_attr_noexcept mi_attr_malloc mi_attr_alloc_size(1);
/* Same as mi_free (v3 compatibility). */
mi_decl_export void mi_free_small(void* p) mi_attr_noexcept;

/* ---- heaps: first-class, owned by the thread that created them --------------------------- */
struct mi_heap_s;
typedef struct mi_heap_s mi_heap_t;
typedef int mi_arena_id_t; /* arena index + 1; 0 means none */

mi_decl_nodiscard mi_decl_export mi_heap_t* mi_heap_new(void);
mi_decl_nodiscard mi_decl_export mi_heap_t* mi_heap_new_ex(int heap_tag, bool allow_destroy,
                                                           mi_arena_id_t arena_id);
mi_decl_nodiscard mi_decl_export mi_heap_t* mi_heap_new_in_arena(mi_arena_id_t arena_id);
/* Delete the heap; its live blocks move to the backing heap and stay valid. */
mi_decl_export void mi_heap_delete(mi_heap_t* heap);
/* Free every block of the heap at once. */
mi_decl_export void mi_heap_destroy(mi_heap_t* heap);
mi_decl_export mi_heap_t* mi_heap_set_default(mi_heap_t* heap);
mi_decl_export mi_heap_t* mi_heap_get_default(void);
mi_decl_export mi_heap_t* mi_heap_get_backing(void);
mi_decl_export void mi_heap_collect(mi_heap_t* heap, bool force) mi_attr_noexcept;

mi_decl_nodiscard mi_decl_export mi_decl_restrict void* mi_heap_malloc(mi_heap_t* heap,
                                                                       size_t size)
    mi_attr_noexcept mi_attr_malloc mi_attr_alloc_size(2);
mi_decl_nodiscard mi_decl_export mi_decl_restrict void* mi_heap_zalloc(mi_heap_t* heap,
                                                                       size_t size)
    mi_attr_noexcept mi_attr_malloc mi_attr_alloc_size(2);
mi_decl_nodiscard mi_decl_export mi_decl_restrict void* mi_heap_calloc(mi_heap_t* heap,
                                                                       size_t count, size_t size)
    mi_attr_noexcept mi_attr_malloc mi_attr_alloc_size2(2, 3);
mi_decl_nodiscard mi_decl_export mi_decl_restrict void* mi_heap_mallocn(mi_heap_t* heap,
                                                                        size_t count, size_t size)
    mi_attr_noexcept mi_attr_malloc mi_attr_alloc_size2(2, 3);
mi_decl_nodiscard mi_decl_export mi_decl_restrict void* mi_heap_malloc_small(mi_heap_t* heap,
                                                                             size_t size)
    mi_attr_noexcept mi_attr_malloc mi_attr_alloc_size(2);
mi_decl_nodiscard mi_decl_export mi_decl_restrict void* mi_heap_zalloc_small(mi_heap_t* heap,
                                                                             size_t size)
    mi_attr_noexcept mi_attr_malloc mi_attr_alloc_size(2);
mi_decl_nodiscard mi_decl_export void* mi_heap_realloc(mi_heap_t* heap, void* p, size_t newsize)
    mi_attr_noexcept mi_attr_alloc_size(3);
mi_decl_nodiscard mi_decl_export void* mi_heap_reallocn(mi_heap_t* heap, void* p, size_t count,
                                                        size_t size) mi_attr_noexcept
    mi_attr_alloc_size2(3, 4);
mi_decl_nodiscard mi_decl_export void* mi_heap_reallocf(mi_heap_t* heap, void* p, size_t newsize)
    mi_attr_noexcept mi_attr_alloc_size(3);
mi_decl_nodiscard mi_decl_export mi_decl_restrict char* mi_heap_strdup(mi_heap_t* heap,
                                                                       const char* s)
    mi_attr_noexcept mi_attr_malloc;
mi_decl_nodiscard mi_decl_export mi_decl_restrict char* mi_heap_strndup(mi_heap_t* heap,
                                                                        const char* s, size_t n)
    mi_attr_noexcept mi_attr_malloc;
mi_decl_nodiscard mi_decl_export mi_decl_restrict char* mi_heap_realpath(mi_heap_t* heap,
                                                                         const char* fname,
                                                                         char* resolved_name)
    mi_attr_noexcept mi_attr_malloc;
mi_decl_nodiscard mi_decl_export mi_decl_restrict void* mi_heap_malloc_aligned(mi_heap_t* heap,
                                                                               size_t size,
                                                                               size_t alignment)
    mi_attr_noexcept mi_attr_malloc mi_attr_alloc_size(2) mi_attr_alloc_align(3);
mi_decl_nodiscard mi_decl_export mi_decl_restrict void* mi_heap_malloc_aligned_at(
    mi_heap_t* heap, size_t size, size_t alignment, size_t offset) mi_attr_noexcept
    mi_attr_malloc mi_attr_alloc_size(2);
mi_decl_nodiscard mi_decl_export mi_decl_restrict void* mi_heap_zalloc_aligned(mi_heap_t* heap,
                                                                               size_t size,
                                                                               size_t alignment)
    mi_attr_noexcept mi_attr_malloc mi_attr_alloc_size(2) mi_attr_alloc_align(3);
mi_decl_nodiscard mi_decl_export mi_decl_restrict void* mi_heap_zalloc_aligned_at(
    mi_heap_t* heap, size_t size, size_t alignment, size_t offset) mi_attr_noexcept
    mi_attr_malloc mi_attr_alloc_size(2);
mi_decl_nodiscard mi_decl_export mi_decl_restrict void* mi_heap_calloc_aligned(mi_heap_t* heap,
                                                                               size_t count,
                                                                               size_t size,
                                                                               size_t alignment)
    mi_attr_noexcept mi_attr_malloc mi_attr_alloc_size2(2, 3) mi_attr_alloc_align(4);
mi_decl_nodiscard mi_decl_export mi_decl_restrict void* mi_heap_calloc_aligned_at(
    mi_heap_t* heap, size_t count, size_t size, size_t alignment, size_t offset)
    mi_attr_noexcept mi_attr_malloc mi_attr_alloc_size2(2, 3);
mi_decl_nodiscard mi_decl_export void* mi_heap_realloc_aligned(mi_heap_t* heap, void* p,
                                                               size_t newsize, size_t alignment)
    mi_attr_noexcept mi_attr_alloc_size(3) mi_attr_alloc_align(4);
mi_decl_nodiscard mi_decl_export void* mi_heap_realloc_aligned_at(mi_heap_t* heap, void* p,
                                                                  size_t newsize,
                                                                  size_t alignment,
                                                                  size_t offset)
    mi_attr_noexcept mi_attr_alloc_size(3);

/* ---- zero-preserving reallocation: only for blocks allocated zeroed --------------------- */
mi_decl_nodiscard mi_decl_export void* mi_rezalloc(void* p, size_t newsize) mi_attr_noexcept
    mi_attr_alloc_size(2);
mi_decl_nodiscard mi_decl_export void* mi_recalloc(void* p, size_t newcount, size_t size)
    mi_attr_noexcept mi_attr_alloc_size2(2, 3);
mi_decl_nodiscard mi_decl_export void* mi_rezalloc_aligned(void* p, size_t newsize,
                                                           size_t alignment) mi_attr_noexcept
    mi_attr_alloc_size(2) mi_attr_alloc_align(3);
mi_decl_nodiscard mi_decl_export void* mi_rezalloc_aligned_at(void* p, size_t newsize,
                                                              size_t alignment, size_t offset)
    mi_attr_noexcept mi_attr_alloc_size(2);
mi_decl_nodiscard mi_decl_export void* mi_recalloc_aligned(void* p, size_t newcount, size_t size,
                                                           size_t alignment) mi_attr_noexcept
    mi_attr_alloc_size2(2, 3) mi_attr_alloc_align(4);
mi_decl_nodiscard mi_decl_export void* mi_recalloc_aligned_at(void* p, size_t newcount,
                                                              size_t size, size_t alignment,
                                                              size_t offset) mi_attr_noexcept
    mi_attr_alloc_size2(2, 3);
mi_decl_nodiscard mi_decl_export void* mi_heap_rezalloc(mi_heap_t* heap, void* p, size_t newsize)
    mi_attr_noexcept mi_attr_alloc_size(3);
mi_decl_nodiscard mi_decl_export void* mi_heap_recalloc(mi_heap_t* heap, void* p,
                                                        size_t newcount, size_t size)
    mi_attr_noexcept mi_attr_alloc_size2(3, 4);
mi_decl_nodiscard mi_decl_export void* mi_heap_rezalloc_aligned(mi_heap_t* heap, void* p,
                                                                size_t newsize, size_t alignment)
    mi_attr_noexcept mi_attr_alloc_size(3) mi_attr_alloc_align(4);
mi_decl_nodiscard mi_decl_export void* mi_heap_rezalloc_aligned_at(mi_heap_t* heap, void* p,
                                                                   size_t newsize,
                                                                   size_t alignment,
                                                                   size_t offset)
    mi_attr_noexcept mi_attr_alloc_size(3);
mi_decl_nodiscard mi_decl_export void* mi_heap_recalloc_aligned(mi_heap_t* heap, void* p,
                                                                size_t newcount, size_t size,
                                                                size_t alignment)
    mi_attr_noexcept mi_attr_alloc_size2(3, 4) mi_attr_alloc_align(5);
mi_decl_nodiscard mi_decl_export void* mi_heap_recalloc_aligned_at(mi_heap_t* heap, void* p,
                                                                   size_t newcount, size_t size,
                                                                   size_t alignment,
                                                                   size_t offset)
    mi_attr_noexcept mi_attr_alloc_size2(3, 4);

/* ---- analysis and visiting ----------------------------------------------------------------- */
mi_decl_export bool mi_heap_contains_block(mi_heap_t* heap, const void* p);
mi_decl_export bool mi_heap_check_owned(mi_heap_t* heap, const void* p);
mi_decl_export bool mi_check_owned(const void* p);

/* An area of a heap: blocks of one size in one page. */
typedef struct mi_heap_area_s {
  void* blocks;           /* start of the area */
  size_t reserved;        /* bytes reserved for blocks */
  size_t committed;       /* bytes committed */
  size_t used;            /* blocks in use */
  size_t block_size;      /* usable size of each block */
  size_t full_block_size; /* size including any padding */
  int heap_tag;
} mi_heap_area_t;

typedef bool mi_block_visit_fun(const mi_heap_t* heap, const mi_heap_area_t* area, void* block,
                                size_t block_size, void* arg);
/* Call `visitor` once per area (block == NULL) and, with visit_all_blocks, once per live
 * block. Stops when the visitor returns false. */
mi_decl_export bool mi_heap_visit_blocks(const mi_heap_t* heap, bool visit_all_blocks,
                                         mi_block_visit_fun* visitor, void* arg);

mi_decl_nodiscard mi_decl_export bool mi_is_in_heap_region(const void* p) mi_attr_noexcept;
mi_decl_nodiscard mi_decl_export bool mi_is_redirected(void) mi_attr_noexcept;
mi_decl_nodiscard mi_decl_export bool mi_unsafe_heap_page_is_under_utilized(mi_heap_t* heap,
                                                                           void* p,
                                                                           size_t perc_threshold)
    mi_attr_noexcept;

/* ---- OS memory, arenas and huge pages ----------------------------------------------------- */
mi_decl_export int mi_reserve_huge_os_pages_interleave(size_t pages, size_t numa_nodes,
                                                       size_t timeout_msecs) mi_attr_noexcept;
mi_decl_export int mi_reserve_huge_os_pages_at(size_t pages, int numa_node,
                                               size_t timeout_msecs) mi_attr_noexcept;
mi_decl_export int mi_reserve_os_memory(size_t size, bool commit, bool allow_large)
    mi_attr_noexcept;
mi_decl_export bool mi_manage_os_memory(void* start, size_t size, bool is_committed,
                                        bool is_large, bool is_zero, int numa_node)
    mi_attr_noexcept;
mi_decl_export void mi_debug_show_arenas(void) mi_attr_noexcept;
mi_decl_export void mi_arenas_print(void) mi_attr_noexcept;
mi_decl_export void* mi_arena_area(mi_arena_id_t arena_id, size_t* size);
mi_decl_export int mi_reserve_huge_os_pages_at_ex(size_t pages, int numa_node,
                                                  size_t timeout_msecs, bool exclusive,
                                                  mi_arena_id_t* arena_id) mi_attr_noexcept;
mi_decl_export int mi_reserve_os_memory_ex(size_t size, bool commit, bool allow_large,
                                           bool exclusive, mi_arena_id_t* arena_id)
    mi_attr_noexcept;
mi_decl_export bool mi_manage_os_memory_ex(void* start, size_t size, bool is_committed,
                                           bool is_large, bool is_zero, int numa_node,
                                           bool exclusive, mi_arena_id_t* arena_id)
    mi_attr_noexcept;
/* Deprecated. */
mi_decl_export int mi_reserve_huge_os_pages(size_t pages, double max_secs,
                                            size_t* pages_reserved) mi_attr_noexcept;
mi_decl_export void mi_collect_reduce(size_t target_thread_owned) mi_attr_noexcept;

/* ---- sub-processes and other experimental API ---------------------------------------------- */
typedef void* mi_subproc_id_t;
mi_decl_export mi_subproc_id_t mi_subproc_main(void);
mi_decl_export mi_subproc_id_t mi_subproc_new(void);
mi_decl_export void mi_subproc_delete(mi_subproc_id_t subproc);
mi_decl_export void mi_subproc_add_current_thread(mi_subproc_id_t subproc);
mi_decl_export bool mi_abandoned_visit_blocks(mi_subproc_id_t subproc_id, int heap_tag,
                                              bool visit_blocks, mi_block_visit_fun* visitor,
                                              void* arg);
mi_decl_export void mi_heap_guarded_set_sample_rate(mi_heap_t* heap, size_t sample_rate,
                                                    size_t seed);
mi_decl_export void mi_heap_guarded_set_size_bound(mi_heap_t* heap, size_t min, size_t max);
mi_decl_export void mi_thread_set_in_threadpool(void) mi_attr_noexcept;

/* ---- typed convenience macros ------------------------------------------------------------- */
#define mi_malloc_tp(tp) ((tp*)mi_malloc(sizeof(tp)))
#define mi_zalloc_tp(tp) ((tp*)mi_zalloc(sizeof(tp)))
#define mi_calloc_tp(tp, n) ((tp*)mi_calloc(n, sizeof(tp)))
#define mi_mallocn_tp(tp, n) ((tp*)mi_mallocn(n, sizeof(tp)))
#define mi_reallocn_tp(p, tp, n) ((tp*)mi_reallocn(p, n, sizeof(tp)))
#define mi_recalloc_tp(p, tp, n) ((tp*)mi_recalloc(p, n, sizeof(tp)))
#define mi_heap_malloc_tp(hp, tp) ((tp*)mi_heap_malloc(hp, sizeof(tp)))
#define mi_heap_zalloc_tp(hp, tp) ((tp*)mi_heap_zalloc(hp, sizeof(tp)))
#define mi_heap_calloc_tp(hp, tp, n) ((tp*)mi_heap_calloc(hp, n, sizeof(tp)))
#define mi_heap_mallocn_tp(hp, tp, n) ((tp*)mi_heap_mallocn(hp, n, sizeof(tp)))
#define mi_heap_reallocn_tp(hp, p, tp, n) ((tp*)mi_heap_reallocn(hp, p, n, sizeof(tp)))
#define mi_heap_recalloc_tp(hp, p, tp, n) ((tp*)mi_heap_recalloc(hp, p, n, sizeof(tp)))

/* v3 names for the same things */
#define mi_theap_t mi_heap_t
#define mi_theap_get_default mi_heap_get_default
#define mi_theap_set_default mi_heap_set_default
#define mi_theap_collect mi_heap_collect
#define mi_theap_malloc mi_heap_malloc
#define mi_theap_zalloc mi_heap_zalloc
#define mi_theap_calloc mi_heap_calloc
#define mi_theap_malloc_small mi_heap_malloc_small
#define mi_theap_malloc_aligned mi_heap_malloc_aligned
#define mi_theap_realloc mi_heap_realloc

/* ---- POSIX, Unix, Windows and C++ equivalents, mi_-prefixed -------------------------------- */
mi_decl_export void mi_cfree(void* p) mi_attr_noexcept; /* frees only our own blocks */
mi_decl_export void* mi__expand(void* p, size_t newsize) mi_attr_noexcept;
mi_decl_nodiscard mi_decl_export size_t mi_malloc_size(const void* p) mi_attr_noexcept;
mi_decl_nodiscard mi_decl_export size_t mi_malloc_good_size(size_t size) mi_attr_noexcept;
mi_decl_nodiscard mi_decl_export size_t mi_malloc_usable_size(const void* p) mi_attr_noexcept;
mi_decl_nodiscard mi_decl_export void* mi_reallocarray(void* p, size_t count, size_t size)
    mi_attr_noexcept mi_attr_alloc_size2(2, 3);
mi_decl_nodiscard mi_decl_export int mi_reallocarr(void* p, size_t count, size_t size)
    mi_attr_noexcept;
mi_decl_nodiscard mi_decl_export void* mi_aligned_recalloc(void* p, size_t newcount, size_t size,
                                                           size_t alignment) mi_attr_noexcept;
mi_decl_nodiscard mi_decl_export void* mi_aligned_offset_recalloc(void* p, size_t newcount,
                                                                  size_t size, size_t alignment,
                                                                  size_t offset)
    mi_attr_noexcept;
mi_decl_nodiscard mi_decl_export mi_decl_restrict unsigned short* mi_wcsdup(
    const unsigned short* s) mi_attr_noexcept mi_attr_malloc;
mi_decl_nodiscard mi_decl_export mi_decl_restrict unsigned char* mi_mbsdup(
    const unsigned char* s) mi_attr_noexcept;
mi_decl_export int mi_dupenv_s(char** buf, size_t* size, const char* name) mi_attr_noexcept;
mi_decl_export int mi_wdupenv_s(unsigned short** buf, size_t* size, const unsigned short* name)
    mi_attr_noexcept;
/* Sizes and alignments are checked only in debug builds. */
mi_decl_export void mi_free_size(void* p, size_t size) mi_attr_noexcept;
mi_decl_export void mi_free_size_aligned(void* p, size_t size, size_t alignment)
    mi_attr_noexcept;
mi_decl_export void mi_free_aligned(void* p, size_t alignment) mi_attr_noexcept;

/* C++ semantics: on failure call the std::new_handler until it succeeds, then throw
 * std::bad_alloc (the _nothrow forms return NULL). */
mi_decl_nodiscard mi_decl_export mi_decl_restrict void* mi_new(size_t size) mi_attr_malloc
    mi_attr_alloc_size(1);
mi_decl_nodiscard mi_decl_export mi_decl_restrict void* mi_new_aligned(size_t size,
                                                                       size_t alignment)
    mi_attr_malloc mi_attr_alloc_size(1) mi_attr_alloc_align(2);
mi_decl_nodiscard mi_decl_export mi_decl_restrict void* mi_new_nothrow(size_t size)
    mi_attr_noexcept mi_attr_malloc mi_attr_alloc_size(1);
mi_decl_nodiscard mi_decl_export mi_decl_restrict void* mi_new_aligned_nothrow(size_t size,
                                                                               size_t alignment)
    mi_attr_noexcept mi_attr_malloc mi_attr_alloc_size(1) mi_attr_alloc_align(2);
mi_decl_nodiscard mi_decl_export mi_decl_restrict void* mi_new_n(size_t count, size_t size)
    mi_attr_malloc mi_attr_alloc_size2(1, 2);
mi_decl_nodiscard mi_decl_export void* mi_new_realloc(void* p, size_t newsize)
    mi_attr_alloc_size(2);
mi_decl_nodiscard mi_decl_export void* mi_new_reallocn(void* p, size_t newcount, size_t size)
    mi_attr_alloc_size2(2, 3);
mi_decl_nodiscard mi_decl_export mi_decl_restrict void* mi_heap_alloc_new(mi_heap_t* heap,
                                                                          size_t size)
    mi_attr_malloc mi_attr_alloc_size(2);
mi_decl_nodiscard mi_decl_export mi_decl_restrict void* mi_heap_alloc_new_n(mi_heap_t* heap,
                                                                            size_t count,
                                                                            size_t size)
    mi_attr_malloc mi_attr_alloc_size2(2, 3);

/* ---- options: values and order are the ABI ----------------------------------------------- */
typedef enum mi_option_e {
  mi_option_show_errors,
  mi_option_show_stats,
  mi_option_verbose,
  mi_option_eager_commit,
  mi_option_arena_eager_commit,
  mi_option_purge_decommits,
  mi_option_allow_large_os_pages,
  mi_option_reserve_huge_os_pages,
  mi_option_reserve_huge_os_pages_at,
  mi_option_reserve_os_memory,
  mi_option_deprecated_segment_cache,
  mi_option_deprecated_page_reset,
  mi_option_abandoned_page_purge,
  mi_option_deprecated_segment_reset,
  mi_option_eager_commit_delay,
  mi_option_purge_delay,
  mi_option_use_numa_nodes,
  mi_option_disallow_os_alloc,
  mi_option_os_tag,
  mi_option_max_errors,
  mi_option_max_warnings,
  mi_option_max_segment_reclaim,
  mi_option_destroy_on_exit,
  mi_option_arena_reserve,
  mi_option_arena_purge_mult,
  mi_option_purge_extend_delay,
  mi_option_abandoned_reclaim_on_free,
  mi_option_disallow_arena_alloc,
  mi_option_retry_on_oom,
  mi_option_visit_abandoned,
  mi_option_guarded_min,
  mi_option_guarded_max,
  mi_option_guarded_precise,
  mi_option_guarded_sample_rate,
  mi_option_guarded_sample_seed,
  mi_option_target_segments_per_thread,
  mi_option_generic_collect,
  mi_option_allow_thp,
  _mi_option_last,
  /* legacy names */
  mi_option_large_os_pages = mi_option_allow_large_os_pages,
  mi_option_eager_region_commit = mi_option_arena_eager_commit,
  mi_option_reset_decommits = mi_option_purge_decommits,
  mi_option_reset_delay = mi_option_purge_delay,
  mi_option_abandoned_page_reset = mi_option_abandoned_page_purge,
  mi_option_limit_os_alloc = mi_option_disallow_os_alloc
} mi_option_t;

mi_decl_nodiscard mi_decl_export bool mi_option_is_enabled(mi_option_t option);
mi_decl_export void mi_option_enable(mi_option_t option);
mi_decl_export void mi_option_disable(mi_option_t option);
mi_decl_export void mi_option_set_enabled(mi_option_t option, bool enable);
mi_decl_export void mi_option_set_enabled_default(mi_option_t option, bool enable);
mi_decl_nodiscard mi_decl_export long mi_option_get(mi_option_t option);
mi_decl_nodiscard mi_decl_export long mi_option_get_clamp(mi_option_t option, long min, long max);
/* Options measured in KiB, in bytes. */
mi_decl_nodiscard mi_decl_export size_t mi_option_get_size(mi_option_t option);
mi_decl_export void mi_option_set(mi_option_t option, long value);
/* Takes effect only if neither the environment nor the program has set the option. */
mi_decl_export void mi_option_set_default(mi_option_t option, long value);

#ifdef __cplusplus
}
#endif

/* ---- C++ allocators for standard containers ------------------------------------------------ */
#ifdef __cplusplus
#include <cstddef>
#include <limits>
#include <new>
#if (__cplusplus >= 201103L) || (defined(_MSVC_LANG) && _MSVC_LANG >= 201103L)
#include <memory>
#include <type_traits>
#include <utility>
#define MI_HAS_HEAP_STL_ALLOCATOR 1
#endif

/* Shared by the allocators below: the types and limits every standard allocator declares. */
template <class T>
struct mi_stl_allocator_common {
  typedef T value_type;
  typedef std::size_t size_type;
  typedef std::ptrdiff_t difference_type;
  typedef value_type& reference;
  typedef value_type const& const_reference;
  typedef value_type* pointer;
  typedef value_type const* const_pointer;
#if (__cplusplus >= 201103L)
  using propagate_on_container_copy_assignment = std::true_type;
  using propagate_on_container_move_assignment = std::true_type;
  using propagate_on_container_swap = std::true_type;
  template <class U, class... Args>
  void construct(U* p, Args&&... args) {
    ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }
  template <class U>
  void destroy(U* p) mi_attr_noexcept {
    p->~U();
  }
#else
  void construct(pointer p, value_type const& val) { ::new (p) value_type(val); }
  void destroy(pointer p) { p->~value_type(); }
#endif
  size_type max_size() const mi_attr_noexcept {
    return (std::numeric_limits<difference_type>::max)() / sizeof(value_type);
  }
  pointer address(reference x) const { return &x; }
  const_pointer address(const_reference x) const { return &x; }
};

/* A stateless allocator over mi_new_n / mi_free: every instance is interchangeable. */
template <class T>
struct mi_stl_allocator : public mi_stl_allocator_common<T> {
  typedef typename mi_stl_allocator_common<T>::size_type size_type;
  typedef typename mi_stl_allocator_common<T>::value_type value_type;
  template <class U>
  struct rebind {
    typedef mi_stl_allocator<U> other;
  };
  mi_stl_allocator() mi_attr_noexcept {}
  template <class U>
  mi_stl_allocator(const mi_stl_allocator<U>&) mi_attr_noexcept {}
  mi_stl_allocator select_on_container_copy_construction() const { return *this; }
  void deallocate(T* p, size_type) { mi_free(p); }
#if (__cplusplus >= 201703L)
  [[nodiscard]] T* allocate(size_type count) {
    return static_cast<T*>(mi_new_n(count, sizeof(T)));
  }
#else
  mi_decl_nodiscard T* allocate(size_type count, const void* = 0) {
    return static_cast<T*>(mi_new_n(count, sizeof(T)));
  }
#endif
#if (__cplusplus >= 201103L)
  using is_always_equal = std::true_type;
#endif
};
template <class T1, class T2>
bool operator==(const mi_stl_allocator<T1>&, const mi_stl_allocator<T2>&) mi_attr_noexcept {
  return true;
}
template <class T1, class T2>
bool operator!=(const mi_stl_allocator<T1>&, const mi_stl_allocator<T2>&) mi_attr_noexcept {
  return false;
}

#if defined(MI_HAS_HEAP_STL_ALLOCATOR)
/* Allocators that own a heap (shared between copies); `destroy` chooses what happens when the
 * last copy goes: the heap is deleted (blocks survive) or destroyed (blocks freed at once). */
template <class T, bool destroy>
struct mi_heap_stl_allocator_base : public mi_stl_allocator_common<T> {
  typedef typename mi_stl_allocator_common<T>::size_type size_type;
  mi_heap_stl_allocator_base() {
    mi_heap_t* h = mi_heap_new();
    if (h == NULL) throw std::bad_alloc();
    heap.reset(h, destroy ? heap_destroy : heap_delete);
  }
  mi_heap_stl_allocator_base(mi_heap_t* hp) : heap(hp, heap_no_delete) {}
  template <class U>
  mi_heap_stl_allocator_base(const mi_heap_stl_allocator_base<U, destroy>& x) mi_attr_noexcept
      : heap(x.heap) {}
  T* allocate(size_type count) {
    return static_cast<T*>(mi_heap_alloc_new_n(this->heap.get(), count, sizeof(T)));
  }
  void deallocate(T* p, size_type) {
    if (!destroy) mi_free(p); /* a destroy-heap frees everything at the end */
  }
  template <class U>
  bool is_equal(const mi_heap_stl_allocator_base<U, destroy>& x) const {
    return heap == x.heap;
  }
  void collect(bool force) { mi_heap_collect(this->heap.get(), force); }
  std::shared_ptr<mi_heap_t> heap;

 protected:
  static void heap_delete(mi_heap_t* hp) {
    if (hp != NULL) mi_heap_delete(hp);
  }
  static void heap_destroy(mi_heap_t* hp) {
    if (hp != NULL) mi_heap_destroy(hp);
  }
  static void heap_no_delete(mi_heap_t*) {}
};

template <class T>
struct mi_heap_stl_allocator : public mi_heap_stl_allocator_base<T, false> {
  typedef mi_heap_stl_allocator_base<T, false> base;
  mi_heap_stl_allocator() : base() {}
  mi_heap_stl_allocator(mi_heap_t* hp) : base(hp) {}
  template <class U>
  mi_heap_stl_allocator(const mi_heap_stl_allocator<U>& x) mi_attr_noexcept : base(x) {}
  mi_heap_stl_allocator select_on_container_copy_construction() const { return *this; }
  template <class U>
  struct rebind {
    typedef mi_heap_stl_allocator<U> other;
  };
};
template <class T1, class T2>
bool operator==(const mi_heap_stl_allocator<T1>& x, const mi_heap_stl_allocator<T2>& y) {
  return x.is_equal(y);
}
template <class T1, class T2>
bool operator!=(const mi_heap_stl_allocator<T1>& x, const mi_heap_stl_allocator<T2>& y) {
  return !x.is_equal(y);
}

template <class T>
struct mi_heap_destroy_stl_allocator : public mi_heap_stl_allocator_base<T, true> {
  typedef mi_heap_stl_allocator_base<T, true> base;
  mi_heap_destroy_stl_allocator() : base() {}
  mi_heap_destroy_stl_allocator(mi_heap_t* hp) : base(hp) {}
  template <class U>
  mi_heap_destroy_stl_allocator(const mi_heap_destroy_stl_allocator<U>& x) mi_attr_noexcept
      : base(x) {}
  mi_heap_destroy_stl_allocator select_on_container_copy_construction() const { return *this; }
  template <class U>
  struct rebind {
    typedef mi_heap_destroy_stl_allocator<U> other;
  };
};
template <class T1, class T2>
bool operator==(const mi_heap_destroy_stl_allocator<T1>& x,
                const mi_heap_destroy_stl_allocator<T2>& y) {
  return x.is_equal(y);
}
template <class T1, class T2>
bool operator!=(const mi_heap_destroy_stl_allocator<T1>& x,
                const mi_heap_destroy_stl_allocator<T2>& y) {
  return !x.is_equal(y);
}
#endif /* MI_HAS_HEAP_STL_ALLOCATOR */
#endif /* __cplusplus */

#endif
