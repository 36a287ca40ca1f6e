/* The libc override: which exported names are the same symbol as which of our functions, one
 * table per platform family. This is the only place that lists them.
 *
 * A name is an alias of its function (one symbol, no extra jump on malloc and free). GCC makes
 * an alias only in the translation unit that defines its target, so a file that defines a
 * function with names ends with `LM_OVERRIDE(function)`; what that expands to is decided here.
 * Without LM_OVERRIDE (the core's unit test, sanitizer and valgrind builds, the Windows DLL)
 * every entry expands to nothing.
 *
 *  - ELF (Linux and the other POSIX systems): libc's names, glibc's `__libc_*` entry points
 *    (which glibc's own code and some programs call directly), glibc's introspection names and
 *    the C++ operators (Itanium names, weak). Preloaded or linked first, they replace libc's.
 *    musl's static libc.a calls `__libc_malloc`, `__libc_calloc` and `__libc_free` itself
 *    (atexit, locales, posix_spawn's file actions): defined here, they too are ours in a static
 *    link, and no musl allocator object is pulled in (tests/linking/static_libc.c).
 *  - Mach-O (macOS): no aliases; each name is a dyld interposing entry instead (LM_INTERPOSE in
 *    platform.h), for the names libSystem has. The C++ operators are not listed: libc++'s call
 *    malloc and free, which are interposed, and naming them would tie the library to libc++.
 *  - Windows (static link only): the CRT's allocation names, so that a program linked with
 *    libmimalloc.a or mimalloc.o before the CRT gets ours. The CRT's own internal allocations
 *    still use its heap; such blocks are recognised as foreign when freed (backend foreign_free).
 */
#pragma once
#ifndef LM_OVERRIDE_H
#define LM_OVERRIDE_H

#include "../common/platform.h"

#ifndef LM_OVERRIDE
#define LM_OVERRIDE 0
#endif

/* One exported name for `fun`, with fun's type (and attributes, where GCC can copy them). */
#define LM_NAME(name, fun) extern __typeof__(fun) name LM_ALIAS(fun);
/* The same, weak: a program's own definition wins in a static link. */
#define LM_NAME_WEAK(name, fun) extern __typeof__(fun) name __attribute__((weak)) LM_ALIAS(fun);
/* A C++ operator under its Itanium name (`id` is only a C handle for it). Weak, so that a
 * program defining its own operators (mimalloc-new-delete.h, say) links with the static
 * library too; the dynamic linker does not rank weak below strong, so preloading still
 * overrides libstdc++'s. The size, alignment and nothrow arguments of the deletes are extra
 * register arguments that mi_free ignores, so each delete is mi_free itself. */
#define LM_NAME_OPERATOR(id, mangled, fun) \
  extern __typeof__(fun) id __asm__(LM_CXX_NAME(mangled)) __attribute__((weak)) LM_ALIAS(fun);

#if LM_OVERRIDE && !LM_PLATFORM_WINDOWS && !LM_PLATFORM_MACOS
/* ---- ELF ---------------------------------------------------------------------------------- */
/* alloc.c */
#define LM_NAMES_mi_malloc LM_NAME(malloc, mi_malloc) LM_NAME(__libc_malloc, mi_malloc)
#define LM_NAMES_mi_calloc LM_NAME(calloc, mi_calloc) LM_NAME(__libc_calloc, mi_calloc)
#define LM_NAMES_mi_realloc LM_NAME(realloc, mi_realloc) LM_NAME(__libc_realloc, mi_realloc)
/* free.c */
#define LM_NAMES_mi_free                                                                  \
  LM_NAME(free, mi_free) LM_NAME(cfree, mi_free) LM_NAME(__libc_free, mi_free)          \
  LM_NAME(__libc_cfree, mi_free)                                                        \
  LM_NAME_OPERATOR(lm_cxx_delete, "_ZdlPv", mi_free)                                    \
  LM_NAME_OPERATOR(lm_cxx_delete_array, "_ZdaPv", mi_free)                              \
  LM_NAME_OPERATOR(lm_cxx_delete_sz, "_ZdlPv" LM_SZ, mi_free)                           \
  LM_NAME_OPERATOR(lm_cxx_delete_array_sz, "_ZdaPv" LM_SZ, mi_free)                     \
  LM_NAME_OPERATOR(lm_cxx_delete_al, "_ZdlPvSt11align_val_t", mi_free)                  \
  LM_NAME_OPERATOR(lm_cxx_delete_array_al, "_ZdaPvSt11align_val_t", mi_free)            \
  LM_NAME_OPERATOR(lm_cxx_delete_sz_al, "_ZdlPv" LM_SZ "St11align_val_t", mi_free)      \
  LM_NAME_OPERATOR(lm_cxx_delete_array_sz_al, "_ZdaPv" LM_SZ "St11align_val_t", mi_free) \
  LM_NAME_OPERATOR(lm_cxx_delete_nt, "_ZdlPvRKSt9nothrow_t", mi_free)                   \
  LM_NAME_OPERATOR(lm_cxx_delete_array_nt, "_ZdaPvRKSt9nothrow_t", mi_free)             \
  LM_NAME_OPERATOR(lm_cxx_delete_al_nt, "_ZdlPvSt11align_val_tRKSt9nothrow_t", mi_free) \
  LM_NAME_OPERATOR(lm_cxx_delete_array_al_nt, "_ZdaPvSt11align_val_tRKSt9nothrow_t", mi_free)
#define LM_NAMES_mi_usable_size LM_NAME(malloc_usable_size, mi_usable_size)
/* aligned.c */
#define LM_NAMES_mi_posix_memalign \
  LM_NAME(posix_memalign, mi_posix_memalign) LM_NAME(__posix_memalign, mi_posix_memalign)
#define LM_NAMES_mi_memalign LM_NAME(memalign, mi_memalign) LM_NAME(__libc_memalign, mi_memalign)
#define LM_NAMES_mi_aligned_alloc LM_NAME(aligned_alloc, mi_aligned_alloc)
#define LM_NAMES_mi_valloc LM_NAME(valloc, mi_valloc) LM_NAME(__libc_valloc, mi_valloc)
#define LM_NAMES_mi_pvalloc LM_NAME(pvalloc, mi_pvalloc) LM_NAME(__libc_pvalloc, mi_pvalloc)
/* api_posix.c */
#define LM_NAMES_mi_reallocarray LM_NAME(reallocarray, mi_reallocarray)
#define LM_NAMES_mi_reallocarr LM_NAME_WEAK(reallocarr, mi_reallocarr)
#define LM_NAMES_mi_malloc_size LM_NAME(malloc_size, mi_malloc_size)
#define LM_NAMES_mi_malloc_good_size LM_NAME(malloc_good_size, mi_malloc_good_size)
#define LM_NAMES_mi_free_small LM_NAME(vfree, mi_free_small)
#define LM_NAMES_lm_reallocf LM_NAME(reallocf, lm_reallocf)
#define LM_NAMES_lm_crt_aligned_malloc LM_NAME(_aligned_malloc, lm_crt_aligned_malloc)
/* api_cxx.c */
#define LM_NAMES_mi_new                                      \
  LM_NAME_OPERATOR(lm_cxx_new, "_Znw" LM_SZ, mi_new)        \
  LM_NAME_OPERATOR(lm_cxx_new_array, "_Zna" LM_SZ, mi_new)
#define LM_NAMES_cxx_new_nothrow                                                   \
  LM_NAME_OPERATOR(lm_cxx_new_nt, "_Znw" LM_SZ "RKSt9nothrow_t", cxx_new_nothrow) \
  LM_NAME_OPERATOR(lm_cxx_new_array_nt, "_Zna" LM_SZ "RKSt9nothrow_t", cxx_new_nothrow)
#define LM_NAMES_mi_new_aligned                                                  \
  LM_NAME_OPERATOR(lm_cxx_new_al, "_Znw" LM_SZ "St11align_val_t", mi_new_aligned) \
  LM_NAME_OPERATOR(lm_cxx_new_array_al, "_Zna" LM_SZ "St11align_val_t", mi_new_aligned)
#define LM_NAMES_cxx_new_aligned_nothrow                                              \
  LM_NAME_OPERATOR(lm_cxx_new_al_nt, "_Znw" LM_SZ "St11align_val_tRKSt9nothrow_t",    \
                   cxx_new_aligned_nothrow)                                           \
  LM_NAME_OPERATOR(lm_cxx_new_array_al_nt, "_Zna" LM_SZ "St11align_val_tRKSt9nothrow_t", \
                   cxx_new_aligned_nothrow)
/* api_glibc.c */
#define LM_NAMES_lm_malloc_trim LM_NAME(malloc_trim, lm_malloc_trim)
#define LM_NAMES_lm_mallinfo2 LM_NAME(mallinfo2, lm_mallinfo2)
#define LM_NAMES_lm_mallinfo LM_NAME(mallinfo, lm_mallinfo)
#define LM_NAMES_lm_malloc_stats LM_NAME(malloc_stats, lm_malloc_stats)
#define LM_NAMES_lm_mallopt LM_NAME(mallopt, lm_mallopt)
#define LM_NAMES_lm_malloc_info LM_NAME(malloc_info, lm_malloc_info)

#elif LM_OVERRIDE && LM_PLATFORM_MACOS
/* ---- Mach-O: dyld interposing ---------------------------------------------------------------- */
#undef LM_NAME
#define LM_NAME(name, fun) LM_INTERPOSE(name, fun)
#define LM_NAMES_mi_malloc LM_NAME(malloc, mi_malloc)
#define LM_NAMES_mi_calloc LM_NAME(calloc, mi_calloc)
#define LM_NAMES_mi_realloc LM_NAME(realloc, mi_realloc)
#define LM_NAMES_mi_free LM_NAME(free, mi_free)
#define LM_NAMES_mi_posix_memalign LM_NAME(posix_memalign, mi_posix_memalign)
#define LM_NAMES_mi_aligned_alloc LM_NAME(aligned_alloc, mi_aligned_alloc)
#define LM_NAMES_mi_valloc LM_NAME(valloc, mi_valloc)
#define LM_NAMES_mi_malloc_size LM_NAME(malloc_size, mi_malloc_size)
#define LM_NAMES_mi_malloc_good_size LM_NAME(malloc_good_size, mi_malloc_good_size)
#define LM_NAMES_lm_reallocf LM_NAME(reallocf, lm_reallocf)

#elif LM_OVERRIDE && LM_PLATFORM_WINDOWS
/* ---- Windows (static link) ------------------------------------------------------------------ */
/* The CRT headers declare most of these names as DLL imports: the warning about redeclaring an
 * import as a local definition is expected. A program compiled against those headers calls
 * through the import pointer `__imp_<name>`, so that pointer is defined too, aimed at ours;
 * the linker then takes neither from the CRT's import library. */
#undef LM_NAME
#define LM_NAME(name, fun)                                    \
  _Pragma("GCC diagnostic push")                              \
  _Pragma("GCC diagnostic ignored \"-Wattributes\"")          \
  extern __typeof__(fun) name LM_ALIAS(fun);                  \
  __typeof__(fun)* __imp_##name = &fun;                       \
  _Pragma("GCC diagnostic pop")
#define LM_NAMES_mi_malloc LM_NAME(malloc, mi_malloc)
#define LM_NAMES_mi_calloc LM_NAME(calloc, mi_calloc)
#define LM_NAMES_mi_realloc LM_NAME(realloc, mi_realloc)
#define LM_NAMES_mi_expand LM_NAME(_expand, mi_expand)
/* A block from _aligned_malloc is one of ours: _aligned_free must be ours too. */
#define LM_NAMES_mi_free LM_NAME(free, mi_free) LM_NAME(_aligned_free, mi_free)
#define LM_NAMES_lm_crt_msize LM_NAME(_msize, lm_crt_msize)
#define LM_NAMES_mi_recalloc LM_NAME(_recalloc, mi_recalloc)
#define LM_NAMES_mi_strdup LM_NAME(_strdup, mi_strdup) LM_NAME(strdup, mi_strdup)
#define LM_NAMES_lm_crt_aligned_malloc LM_NAME(_aligned_malloc, lm_crt_aligned_malloc)
#endif

/* Every function that has names in some family, empty where this one has none. */
#ifndef LM_NAMES_mi_malloc
#define LM_NAMES_mi_malloc
#endif
#ifndef LM_NAMES_mi_calloc
#define LM_NAMES_mi_calloc
#endif
#ifndef LM_NAMES_mi_realloc
#define LM_NAMES_mi_realloc
#endif
#ifndef LM_NAMES_mi_expand
#define LM_NAMES_mi_expand
#endif
#ifndef LM_NAMES_mi_free
#define LM_NAMES_mi_free
#endif
#ifndef LM_NAMES_mi_usable_size
#define LM_NAMES_mi_usable_size
#endif
#ifndef LM_NAMES_mi_posix_memalign
#define LM_NAMES_mi_posix_memalign
#endif
#ifndef LM_NAMES_mi_memalign
#define LM_NAMES_mi_memalign
#endif
#ifndef LM_NAMES_mi_aligned_alloc
#define LM_NAMES_mi_aligned_alloc
#endif
#ifndef LM_NAMES_mi_valloc
#define LM_NAMES_mi_valloc
#endif
#ifndef LM_NAMES_mi_pvalloc
#define LM_NAMES_mi_pvalloc
#endif
#ifndef LM_NAMES_mi_reallocarray
#define LM_NAMES_mi_reallocarray
#endif
#ifndef LM_NAMES_mi_reallocarr
#define LM_NAMES_mi_reallocarr
#endif
#ifndef LM_NAMES_mi_malloc_size
#define LM_NAMES_mi_malloc_size
#endif
#ifndef LM_NAMES_mi_malloc_good_size
#define LM_NAMES_mi_malloc_good_size
#endif
#ifndef LM_NAMES_mi_free_small
#define LM_NAMES_mi_free_small
#endif
#ifndef LM_NAMES_lm_crt_msize
#define LM_NAMES_lm_crt_msize
#endif
#ifndef LM_NAMES_mi_recalloc
#define LM_NAMES_mi_recalloc
#endif
#ifndef LM_NAMES_mi_strdup
#define LM_NAMES_mi_strdup
#endif
#ifndef LM_NAMES_lm_reallocf
#define LM_NAMES_lm_reallocf
#endif
#ifndef LM_NAMES_lm_crt_aligned_malloc
#define LM_NAMES_lm_crt_aligned_malloc
#endif
#ifndef LM_NAMES_mi_new
#define LM_NAMES_mi_new
#endif
#ifndef LM_NAMES_cxx_new_nothrow
#define LM_NAMES_cxx_new_nothrow
#endif
#ifndef LM_NAMES_mi_new_aligned
#define LM_NAMES_mi_new_aligned
#endif
#ifndef LM_NAMES_cxx_new_aligned_nothrow
#define LM_NAMES_cxx_new_aligned_nothrow
#endif
#ifndef LM_NAMES_lm_malloc_trim
#define LM_NAMES_lm_malloc_trim
#endif
#ifndef LM_NAMES_lm_mallinfo2
#define LM_NAMES_lm_mallinfo2
#endif
#ifndef LM_NAMES_lm_mallinfo
#define LM_NAMES_lm_mallinfo
#endif
#ifndef LM_NAMES_lm_malloc_stats
#define LM_NAMES_lm_malloc_stats
#endif
#ifndef LM_NAMES_lm_mallopt
#define LM_NAMES_lm_mallopt
#endif
#ifndef LM_NAMES_lm_malloc_info
#define LM_NAMES_lm_malloc_info
#endif

/* The exported names of `fun` on this platform (after fun's definition, in its own file). */
#define LM_OVERRIDE_NAMES(fun) LM_NAMES_##fun

#endif
