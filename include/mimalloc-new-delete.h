/* libmimalloc: replacements of the global C++ operators new and delete.
 *
 * Include this header in exactly one C++ source file of a program (it defines the operators,
 * which may exist only once) to have every new and delete of the program use libmimalloc, also
 * when the library is linked statically or without its libc override. Linking or preloading
 * the shared library built with the override does the same without this header.
 *
 * new follows the standard: on failure it calls the std::new_handler until it succeeds and
 * throws std::bad_alloc when there is none; the nothrow forms return NULL instead. The sized
 * forms of delete (C++14) and the aligned forms (C++17) are defined when the language has them.
 */
#pragma once
#ifndef MIMALLOC_NEW_DELETE_H
#define MIMALLOC_NEW_DELETE_H

#ifdef __cplusplus
#include <cstddef>
#include <new>

#include "mimalloc.h"

#if (__cplusplus >= 201103L) || (defined(_MSVC_LANG) && _MSVC_LANG >= 201103L)
#define MI_NEW_THROWS
#define MI_NEW_NOTHROW noexcept
#else
#define MI_NEW_THROWS throw(std::bad_alloc)
#define MI_NEW_NOTHROW throw()
#endif

/* ---- plain and nothrow ----------------------------------------------------------------- */
void* operator new(std::size_t n) MI_NEW_THROWS { return mi_new(n); }
void* operator new[](std::size_t n) MI_NEW_THROWS { return mi_new(n); }
void* operator new(std::size_t n, const std::nothrow_t&) MI_NEW_NOTHROW {
  return mi_new_nothrow(n);
}
void* operator new[](std::size_t n, const std::nothrow_t&) MI_NEW_NOTHROW {
  return mi_new_nothrow(n);
}

void operator delete(void* p) MI_NEW_NOTHROW { mi_free(p); }
void operator delete[](void* p) MI_NEW_NOTHROW { mi_free(p); }
void operator delete(void* p, const std::nothrow_t&) MI_NEW_NOTHROW { mi_free(p); }
void operator delete[](void* p, const std::nothrow_t&) MI_NEW_NOTHROW { mi_free(p); }

/* ---- sized delete (C++14) ----------------------------------------------------------------- */
#if (__cplusplus >= 201402L) || defined(__cpp_sized_deallocation) || \
    (defined(_MSVC_LANG) && _MSVC_LANG >= 201402L)
void operator delete(void* p, std::size_t n) MI_NEW_NOTHROW { mi_free_size(p, n); }
void operator delete[](void* p, std::size_t n) MI_NEW_NOTHROW { mi_free_size(p, n); }
#endif

/* ---- over-aligned new and delete (C++17) --------------------------------------------------- */
#if (__cplusplus >= 201703L) || defined(__cpp_aligned_new) || \
    (defined(_MSVC_LANG) && _MSVC_LANG >= 201703L)
void* operator new(std::size_t n, std::align_val_t al) MI_NEW_THROWS {
  return mi_new_aligned(n, static_cast<std::size_t>(al));
}
void* operator new[](std::size_t n, std::align_val_t al) MI_NEW_THROWS {
  return mi_new_aligned(n, static_cast<std::size_t>(al));
}
void* operator new(std::size_t n, std::align_val_t al, const std::nothrow_t&) MI_NEW_NOTHROW {
  return mi_new_aligned_nothrow(n, static_cast<std::size_t>(al));
}
void* operator new[](std::size_t n, std::align_val_t al, const std::nothrow_t&) MI_NEW_NOTHROW {
  return mi_new_aligned_nothrow(n, static_cast<std::size_t>(al));
}

void operator delete(void* p, std::align_val_t al) MI_NEW_NOTHROW {
  mi_free_aligned(p, static_cast<std::size_t>(al));
}
void operator delete[](void* p, std::align_val_t al) MI_NEW_NOTHROW {
  mi_free_aligned(p, static_cast<std::size_t>(al));
}
void operator delete(void* p, std::size_t n, std::align_val_t al) MI_NEW_NOTHROW {
  mi_free_size_aligned(p, n, static_cast<std::size_t>(al));
}
void operator delete[](void* p, std::size_t n, std::align_val_t al) MI_NEW_NOTHROW {
  mi_free_size_aligned(p, n, static_cast<std::size_t>(al));
}
void operator delete(void* p, std::align_val_t al, const std::nothrow_t&) MI_NEW_NOTHROW {
  mi_free_aligned(p, static_cast<std::size_t>(al));
}
void operator delete[](void* p, std::align_val_t al, const std::nothrow_t&) MI_NEW_NOTHROW {
  mi_free_aligned(p, static_cast<std::size_t>(al));
}
#endif

#undef MI_NEW_THROWS
#undef MI_NEW_NOTHROW
#endif /* __cplusplus */
#endif
