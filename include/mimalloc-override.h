/* libmimalloc: source-level redirection of the standard allocation names to the mi_ API.
 *
 * Include this header in *every* source file of a program, after the system headers, to have
 * its own calls to malloc, free, ... go to libmimalloc without overriding the libc symbols.
 * Blocks from code compiled without it (system libraries, other modules) still come from libc:
 * never free such a block with a redirected name, or the reverse. Prefer linking or preloading
 * the shared library, which overrides the libc names process-wide.
 *
 * Every macro takes arguments, so a name that is not called (a function pointer, say) is left
 * alone.
 */
#pragma once
#ifndef MIMALLOC_OVERRIDE_H
#define MIMALLOC_OVERRIDE_H

#include "mimalloc.h"

/* ---- standard C ------------------------------------------------------------------------ */
#define malloc(n) mi_malloc(n)
#define calloc(n, c) mi_calloc(n, c)
#define realloc(p, n) mi_realloc(p, n)
#define free(p) mi_free(p)
#define strdup(s) mi_strdup(s)
#define strndup(s, n) mi_strndup(s, n)
#define realpath(f, n) mi_realpath(f, n)

/* ---- Microsoft CRT ---------------------------------------------------------------------- */
#define _expand(p, n) mi__expand(p, n)
#define _msize(p) mi_usable_size(p)
#define _recalloc(p, n, c) mi_recalloc(p, n, c)
#define _strdup(s) mi_strdup(s)
#define _strndup(s, n) mi_strndup(s, n)
#define _wcsdup(s) mi_wcsdup(s)
#define _mbsdup(s) mi_mbsdup(s)
#define _dupenv_s(b, n, v) mi_dupenv_s(b, n, v)
#define _wdupenv_s(b, n, v) mi_wdupenv_s(b, n, v)

/* ---- POSIX, BSD, glibc --------------------------------------------------------------------- */
#define reallocf(p, n) mi_reallocf(p, n)
#define malloc_size(p) mi_malloc_size(p)
#define malloc_usable_size(p) mi_malloc_usable_size(p)
#define malloc_good_size(n) mi_malloc_good_size(n)
#define cfree(p) mi_free(p)
#define valloc(n) mi_valloc(n)
#define pvalloc(n) mi_pvalloc(n)
#define reallocarray(p, c, s) mi_reallocarray(p, c, s)
#define reallocarr(p, c, s) mi_reallocarr(p, c, s)
#define memalign(a, n) mi_memalign(a, n)
#define aligned_alloc(a, n) mi_aligned_alloc(a, n)
#define posix_memalign(p, a, n) mi_posix_memalign(p, a, n)
#define _posix_memalign(p, a, n) mi_posix_memalign(p, a, n)

/* ---- Microsoft aligned allocation (size before alignment, unlike memalign) ------------------- */
#define _aligned_malloc(n, a) mi_malloc_aligned(n, a)
#define _aligned_realloc(p, n, a) mi_realloc_aligned(p, n, a)
#define _aligned_recalloc(p, c, s, a) mi_aligned_recalloc(p, c, s, a)
#define _aligned_msize(p, a, o) mi_usable_size(p)
#define _aligned_free(p) mi_free(p)
#define _aligned_offset_malloc(n, a, o) mi_malloc_aligned_at(n, a, o)
#define _aligned_offset_realloc(p, n, a, o) mi_realloc_aligned_at(p, n, a, o)
#define _aligned_offset_recalloc(p, c, s, a, o) mi_aligned_offset_recalloc(p, c, s, a, o)

#endif
