/* Leaf helpers every layer may use: build configuration, compiler hints, bit tricks, alignment,
 * assertions, and a tiny spin lock for the rare slow paths that need one. The thread id and the
 * other platform facts are in platform.h. This header includes no OS header; compiler- and
 * architecture-specific lines live only here and in platform.h.
 */
#pragma once
#ifndef LM_COMMON_H
#define LM_COMMON_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "platform.h"

/* ---- build configuration: always 0/1 values so `if (LM_SECURE)` compiles everywhere ------- */
#ifndef LM_DEBUG
#define LM_DEBUG 0 /* 1: cheap asserts, 2: internal asserts, 3: full invariant walks */
#endif
#ifndef LM_SECURE
#define LM_SECURE 0
#endif
#ifndef LM_SECURE_SHUFFLE
#define LM_SECURE_SHUFFLE LM_SECURE /* randomised allocation order (-Dsecure_shuffle) */
#endif
#ifndef LM_GUARDED_BUILD
#define LM_GUARDED_BUILD 0 /* -Dguarded: guarded sampling on by default */
#endif
#ifndef LM_HUGE_PAGES
#define LM_HUGE_PAGES 1 /* -Dhuge_pages: explicit huge OS pages compiled in (0: disabled) */
#endif
#ifndef LM_LARGE_PAGES_DEFAULT
#define LM_LARGE_PAGES_DEFAULT 0 /* -Dhuge_pages=enabled: allow_large_os_pages defaults to 1 */
#endif
/* Guarded sampling is compiled in (one countdown per malloc) in these builds; a secure build
 * that wants it too is built with -Dguarded=true as well (it costs on every malloc). */
#define LM_GUARDED (LM_GUARDED_BUILD || LM_DEBUG > 0)

/* Built with a sanitizer (whose runtime owns parts of the address space)? */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define LM_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || \
    __has_feature(memory_sanitizer)
#define LM_SANITIZED 1
#endif
#endif
#ifndef LM_SANITIZED
#define LM_SANITIZED 0
#endif
/* Built with AddressSanitizer in particular (it checks every write against its poison). */
#if defined(__SANITIZE_ADDRESS__)
#define LM_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define LM_ASAN 1
#endif
#endif
#ifndef LM_ASAN
#define LM_ASAN 0
#endif

/* ---- compiler hints -------------------------------------------------------------------- */
#define lm_likely(x) __builtin_expect(!!(x), 1)
#define lm_unlikely(x) __builtin_expect(!!(x), 0)
#define lm_noinline __attribute__((noinline))
#if LM_PLATFORM_WINDOWS
#define lm_hidden /* PE has no symbol visibility */
#else
#define lm_hidden __attribute__((visibility("hidden")))
#endif
#define lm_unused __attribute__((unused))

/* ---- assertions -------------------------------------------------------------------------- */
__attribute__((noreturn)) void lm_assert_fail(const char* expr, const char* file, int line,
                                             const char* func);
/* Called by lm_assert_fail before it stops the program, when set (the core sets it). */
typedef void lm_assert_report_fun(const char* expr, const char* file, int line, const char* func);
extern lm_assert_report_fun* _Atomic lm_assert_reporter;
#if LM_DEBUG >= 1
#define lm_assert(x) ((x) ? (void)0 : lm_assert_fail(#x, __FILE__, __LINE__, __func__))
#else
#define lm_assert(x) ((void)0)
#endif
#if LM_DEBUG >= 2
#define lm_assert_internal(x) lm_assert(x)
#else
#define lm_assert_internal(x) ((void)0)
#endif
#if LM_DEBUG >= 3
#define lm_assert_expensive(x) lm_assert(x)
#else
#define lm_assert_expensive(x) ((void)0)
#endif
/* Invariant walks (called only at debug level 3): a check that holds in every build it runs. */
#define lm_check(x) ((x) ? (void)0 : lm_assert_fail(#x, __FILE__, __LINE__, __func__))

/* ---- sizes and alignment ----------------------------------------------------------------- */
#define LM_KiB ((size_t)1024)
#define LM_MiB (LM_KiB * LM_KiB)
#define LM_GiB (LM_MiB * LM_KiB)
#define LM_INTPTR_SIZE ((size_t)sizeof(void*))

static inline bool lm_is_power_of_two(uintptr_t x) { return x != 0 && (x & (x - 1)) == 0; }
static inline uintptr_t lm_align_up(uintptr_t x, size_t align) {
  return lm_is_power_of_two(align) ? (x + align - 1) & ~(uintptr_t)(align - 1)
                                   : ((x + align - 1) / align) * align;
}
static inline uintptr_t lm_align_down(uintptr_t x, size_t align) {
  return lm_is_power_of_two(align) ? x & ~(uintptr_t)(align - 1) : (x / align) * align;
}
static inline void* lm_align_up_ptr(void* p, size_t align) {
  return (void*)lm_align_up((uintptr_t)p, align);
}
static inline size_t lm_min(size_t a, size_t b) { return a < b ? a : b; }
static inline size_t lm_max(size_t a, size_t b) { return a > b ? a : b; }
static inline size_t lm_divide_up(size_t n, size_t d) { return (n + d - 1) / d; }

/* Overflow-checked count*size. */
static inline bool lm_mul_overflow(size_t count, size_t size, size_t* total) {
  return __builtin_mul_overflow(count, size, total);
}

/* ---- bits ----------------------------------------------------------------------------------
 * Each helper exists for 32- and 64-bit operands; the unsuffixed ones work on a machine word
 * (uintptr_t), whose width (LM_INTPTR_BITS, platform.h) is picked by the preprocessor so the word form is the same single
 * instruction as before on each target. A zero operand gives the operand's width. */
_Static_assert(sizeof(unsigned int) == 4 && sizeof(unsigned long long) == 8,
               "the builtins below take 32-bit int and 64-bit long long");

static inline size_t lm_clz32(uint32_t x) { return x == 0 ? 32 : (size_t)__builtin_clz(x); }
static inline size_t lm_ctz32(uint32_t x) { return x == 0 ? 32 : (size_t)__builtin_ctz(x); }
static inline size_t lm_bsr32(uint32_t x) { return x == 0 ? 32 : 31 - (size_t)__builtin_clz(x); }
static inline size_t lm_popcount32(uint32_t x) { return (size_t)__builtin_popcount(x); }
static inline size_t lm_clz64(uint64_t x) { return x == 0 ? 64 : (size_t)__builtin_clzll(x); }
static inline size_t lm_ctz64(uint64_t x) { return x == 0 ? 64 : (size_t)__builtin_ctzll(x); }
static inline size_t lm_bsr64(uint64_t x) { return x == 0 ? 64 : 63 - (size_t)__builtin_clzll(x); }
static inline size_t lm_popcount64(uint64_t x) { return (size_t)__builtin_popcountll(x); }
/* Branch-free rotations (the compiler turns the idiom into one instruction, or two on a 32-bit
 * target for the 64-bit form). */
static inline uint32_t lm_rotl32(uint32_t x, uintptr_t r) {
  return (x << (r & 31)) | (x >> ((32 - r) & 31));
}
static inline uint32_t lm_rotr32(uint32_t x, uintptr_t r) {
  return (x >> (r & 31)) | (x << ((32 - r) & 31));
}
static inline uint64_t lm_rotl64(uint64_t x, uintptr_t r) {
  return (x << (r & 63)) | (x >> ((64 - r) & 63));
}
static inline uint64_t lm_rotr64(uint64_t x, uintptr_t r) {
  return (x >> (r & 63)) | (x << ((64 - r) & 63));
}

#if LM_INTPTR_BITS == 64
static inline size_t lm_clz(uintptr_t x) { return lm_clz64(x); }
static inline size_t lm_ctz(uintptr_t x) { return lm_ctz64(x); }
static inline size_t lm_bsr(uintptr_t x) { return lm_bsr64(x); }
static inline size_t lm_popcount(uintptr_t x) { return lm_popcount64(x); }
static inline uintptr_t lm_rotl(uintptr_t x, uintptr_t r) { return lm_rotl64(x, r); }
static inline uintptr_t lm_rotr(uintptr_t x, uintptr_t r) { return lm_rotr64(x, r); }
#else
static inline size_t lm_clz(uintptr_t x) { return lm_clz32(x); }
static inline size_t lm_ctz(uintptr_t x) { return lm_ctz32(x); }
static inline size_t lm_bsr(uintptr_t x) { return lm_bsr32(x); }
static inline size_t lm_popcount(uintptr_t x) { return lm_popcount32(x); }
static inline uintptr_t lm_rotl(uintptr_t x, uintptr_t r) { return lm_rotl32(x, r); }
static inline uintptr_t lm_rotr(uintptr_t x, uintptr_t r) { return lm_rotr32(x, r); }
#endif

/* ---- a spin lock for rare slow paths (abandoned OS segments, segment purge masks) ---------- */
typedef struct lm_spinlock_s {
  _Atomic(uint32_t) locked;
} lm_spinlock_t;

static inline void lm_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ volatile("yield");
#endif
}
static inline bool lm_spin_try_lock(lm_spinlock_t* l) {
  uint32_t expected = 0;
  return atomic_compare_exchange_strong_explicit(&l->locked, &expected, 1, memory_order_acquire,
                                                 memory_order_relaxed);
}
static inline void lm_spin_lock(lm_spinlock_t* l) {
  while (!lm_spin_try_lock(l)) {
    while (atomic_load_explicit(&l->locked, memory_order_relaxed) != 0) lm_cpu_relax();
  }
}
static inline void lm_spin_unlock(lm_spinlock_t* l) {
  atomic_store_explicit(&l->locked, 0, memory_order_release);
}

/* Relaxed atomic shorthands: most counters here need atomicity, not ordering. */
#define lm_load_relaxed(p) atomic_load_explicit(p, memory_order_relaxed)
#define lm_store_relaxed(p, v) atomic_store_explicit(p, v, memory_order_relaxed)
#define lm_load_acquire(p) atomic_load_explicit(p, memory_order_acquire)
#define lm_store_release(p, v) atomic_store_explicit(p, v, memory_order_release)

/* Small string/memory helpers that never call libc (usable before libc is ready). */
static inline size_t lm_strlen(const char* s) {
  size_t n = 0;
  while (s[n] != 0) n++;
  return n;
}

#endif
