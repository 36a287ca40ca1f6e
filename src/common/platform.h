/* The one platform header: what the engine needs from the OS on its fast paths or before the
 * backend is up, so it cannot go through the backend's function table.
 *
 * It owns: which platform family this is (LM_PLATFORM_WINDOWS, LM_PLATFORM_MACOS: 0/1 so `if`
 * compiles everywhere), the thread id, the default-heap slot, the symbol alias used by the libc
 * override, and the hinted address region of the arenas. Everything else is a backend function
 * or capability (src/backend/backend.h). Outside src/backend/ and this folder no file asks which
 * OS it is built for (tests/layout/check_layering.sh checks that).
 */
#pragma once
#ifndef LM_PLATFORM_H
#define LM_PLATFORM_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/* ---- the word size: 64 or 32 bits (the bit helpers of common.h and the address space below
 * follow it) ---------------------------------------------------------------------------------- */
#if UINTPTR_MAX == UINT64_MAX
#define LM_INTPTR_BITS 64
#elif UINTPTR_MAX == UINT32_MAX
#define LM_INTPTR_BITS 32
#else
#error "libmimalloc: only 32- and 64-bit address spaces are supported"
#endif

#if defined(_WIN32)
#define LM_PLATFORM_WINDOWS 1
#else
#define LM_PLATFORM_WINDOWS 0
#endif
/* Mach-O: no symbol aliases, no native TLS that is safe inside malloc, dyld interposing. */
#if defined(__APPLE__) && defined(__MACH__)
#define LM_PLATFORM_MACOS 1
#else
#define LM_PLATFORM_MACOS 0
#endif

/* ---- the thread id: unique among live threads, non-zero, low bits clear; read without
 * touching TLS data (it is compared on every free) ------------------------------------------ */
typedef uintptr_t lm_thread_id_t;
static inline lm_thread_id_t lm_thread_id(void) {
#if defined(_WIN64) && defined(__x86_64__)
  /* The thread environment block's own address (gs:[0x30]), page-aligned. */
  uintptr_t teb;
  __asm__("movq %%gs:0x30, %0" : "=r"(teb));
  return teb;
#elif defined(_WIN32)
#error "libmimalloc: only x86-64 Windows is supported"
#elif LM_PLATFORM_MACOS && defined(__x86_64__)
  /* %gs points at the thread's TSD array, whose slot 0 is the thread itself (pthread_self). */
  uintptr_t self;
  __asm__("movq %%gs:0, %0" : "=r"(self));
  return self;
#elif LM_PLATFORM_MACOS && defined(__aarch64__)
  /* TPIDRRO_EL0 holds the TSD array's address; older kernels keep the CPU number in its low
   * 3 bits, which are masked off. */
  uintptr_t tsd;
  __asm__ volatile("mrs %0, tpidrro_el0" : "=r"(tsd));
  return tsd & ~(uintptr_t)7;
#elif defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11 && \
    (defined(__x86_64__) || defined(__aarch64__))
  return (uintptr_t)__builtin_thread_pointer();
#elif defined(__clang__) && __clang_major__ >= 14 && (defined(__x86_64__) || defined(__aarch64__))
  return (uintptr_t)__builtin_thread_pointer();
#elif defined(__x86_64__)
  uintptr_t tp;
  __asm__("movq %%fs:0, %0" : "=r"(tp));
  return tp;
#elif defined(__aarch64__)
  uintptr_t tp;
  __asm__ volatile("mrs %0, tpidr_el0" : "=r"(tp));
  return tp;
#elif defined(__i386__) && !defined(_WIN32)
  /* i386 Linux: %gs:0 holds the thread control block's own address (as %fs:0 on x86-64). */
  uintptr_t tp;
  __asm__("movl %%gs:0, %0" : "=r"(tp));
  return tp;
#else
#define LM_THREAD_ID_ANCHOR 1
  /* Portable fallback: the address of a thread-local is unique per live thread. One variable
   * for the whole library (defined in src/common/thread_anchor.c): a `static` one here would be a
   * different variable, so a different id, in each file that includes this header. It is a
   * word-aligned address: its low two bits are clear. */
  extern _Thread_local uintptr_t lm_thread_anchor; /* src/common/thread_anchor.c */
  return (uintptr_t)&lm_thread_anchor;
#endif
}
#ifndef LM_THREAD_ID_ANCHOR
#define LM_THREAD_ID_ANCHOR 0
#endif

/* ---- the default-heap slot ----------------------------------------------------------------
 * ELF targets have native TLS: the core keeps a `_Thread_local` pointer with a static initial
 * value (LM_HEAP_SLOT_NATIVE), initial-exec with glibc and TLS descriptors elsewhere (meson.build
 * says why). mingw-w64's gcc emulates `_Thread_local` through
 * a call that allocates on first use (recursion when we are malloc), so on Windows the slot is
 * a TLS index from TlsAlloc, read straight from the thread environment block (TlsGetValue
 * would clear the thread's last-error value on every malloc). Unset slots read as NULL.
 * macOS: `_Thread_local` goes through dyld's tlv_get_addr, which allocates the thread's block
 * with malloc on its first use in each thread, so the slot is a pthread key made at process
 * setup (pthread_key_create and pthread_setspecific keep keys in the thread's own TSD array,
 * without allocating). Read with pthread_getspecific, a call and a load: reading the TSD array
 * inline would be faster but depends on its layout, which Apple does not document. */
#if LM_PLATFORM_WINDOWS
#define LM_HEAP_SLOT_NATIVE 0
/* TlsAlloc's index + 1; 0 until the process is set up (lm_platform_process_setup). */
extern _Atomic(uint32_t) lm_tls_slot_plus1;
static inline void** lm_tls_slot_addr(uint32_t index) {
  uintptr_t teb = lm_thread_id();
  if (index < 64) return (void**)(teb + 0x1480) + index; /* TEB TlsSlots[64] */
  void** expansion = *(void***)(teb + 0x1780);          /* TEB TlsExpansionSlots */
  return expansion != NULL ? expansion + (index - 64) : NULL;
}
static inline void* lm_tls_slot_get(void) {
  uint32_t s = atomic_load_explicit(&lm_tls_slot_plus1, memory_order_relaxed);
  if (s == 0) return NULL;
  void** slot = lm_tls_slot_addr(s - 1);
  return slot != NULL ? *slot : NULL;
}
/* Writes through TlsSetValue (it allocates the expansion slots when needed). */
void lm_tls_slot_set(void* value);
/* Allocate the TLS index (once). */
void lm_tls_slot_setup(void);
#elif LM_PLATFORM_MACOS
#define LM_HEAP_SLOT_NATIVE 0
/* The pthread key + 1; 0 until the process is set up (src/common/tls_macos.c). */
extern _Atomic(uintptr_t) lm_tls_slot_plus1;
void* pthread_getspecific(unsigned long key); /* <pthread.h>, whose pthread_key_t it is */
static inline void* lm_tls_slot_get(void) {
  uintptr_t s = atomic_load_explicit(&lm_tls_slot_plus1, memory_order_relaxed);
  return s != 0 ? pthread_getspecific((unsigned long)(s - 1)) : NULL;
}
void lm_tls_slot_set(void* value);
void lm_tls_slot_setup(void);
#else
#define LM_HEAP_SLOT_NATIVE 1
#endif

/* Once, at process setup, before the first heap is made current (Windows: the TLS index).
 * Defined in src/core/start.c, which the call also ties into every static link, so that the
 * process hooks below (expanded there) come along. */
void lm_platform_process_setup(void);
#if !LM_HEAP_SLOT_NATIVE
static inline void lm_platform_setup_slot(void) { lm_tls_slot_setup(); }
#else
static inline void lm_platform_setup_slot(void) {} /* native TLS: nothing to prepare */
#endif

/* ---- process start and end ------------------------------------------------------------------
 * LM_PROCESS_HOOKS(attach, detach) defines what runs `attach` when the library is loaded and
 * `detach` when it is unloaded or the process ends; expanded once (src/core/start.c). ELF: a
 * constructor and a destructor, which the dynamic loader runs for a shared library and the C
 * runtime around main() in a static link. Windows DLL (LM_DLL): DllMain's process attach and
 * detach. Windows static link: mingw-w64's CRT runs GCC constructors too (an MSVC build would
 * put a pointer in the .CRT$XCU section instead). Thread ends come from the backend
 * (thread_exit_register: a TLS destructor, a fiber-local storage callback), not from here, so
 * they work in a static link too. */
#if LM_PLATFORM_WINDOWS && defined(LM_DLL) && LM_DLL
#define LM_PROCESS_HOOKS(attach, detach)                                                   \
  int __stdcall DllMain(void* instance, unsigned long reason, void* reserved);            \
  int __stdcall DllMain(void* instance, unsigned long reason, void* reserved) {           \
    (void)instance, (void)reserved;                                                       \
    enum { PROCESS_DETACH = 0, PROCESS_ATTACH = 1 }; /* DLL_PROCESS_(DE)TACH */           \
    if (reason == PROCESS_ATTACH) attach();                                               \
    if (reason == PROCESS_DETACH) detach();                                               \
    return 1;                                                                             \
  }
#else
#define LM_PROCESS_HOOKS(attach, detach)                                                   \
  __attribute__((constructor)) static void lm_library_load(void) { attach(); }            \
  __attribute__((destructor)) static void lm_library_unload(void) { detach(); }
#endif

/* ---- the libc override: an exported name that is the same symbol as an mi_ function ------- */
#if defined(__has_attribute)
#if __has_attribute(copy)
#define LM_ALIAS_COPY(fun) copy(fun),
#endif
#endif
#ifndef LM_ALIAS_COPY
#define LM_ALIAS_COPY(fun)
#endif
/* PE has no symbol visibility: what a DLL exports is chosen by dllexport instead. */
#if LM_PLATFORM_WINDOWS
#define LM_ALIAS(fun) __attribute__((alias(#fun), LM_ALIAS_COPY(fun) used))
#else
#define LM_ALIAS(fun) __attribute__((alias(#fun), LM_ALIAS_COPY(fun) used, visibility("default")))
#endif
/* Mach-O has no aliases: the library's image carries a `__DATA,__interpose` section of
 * (replacement, replacee) pairs, and dyld binds every other image's references to `name` to
 * `fun` instead (see dyld(1) and <mach-o/dyld-interposing.h>). The library's own references
 * to `name` keep the system's, so `name` itself is never defined here. */
#define LM_INTERPOSE(name, fun)                                                          \
  extern __typeof__(fun) name;                                                           \
  __attribute__((used, section("__DATA,__interpose"))) static const struct {             \
    const void* replacement;                                                             \
    const void* replacee;                                                                \
  } lm_interpose_##name = {(const void*)&fun, (const void*)&name};

/* ---- formatting and paths -------------------------------------------------------------------
 * Messages are formatted with the C library's vsnprintf. mingw-w64 builds use its C99 printf
 * (__USE_MINGW_ANSI_STDIO, set by the build), which knows %zu as msvcrt's does not, so the
 * compiler checks formats against that one. */
#if LM_PLATFORM_WINDOWS
#define LM_ATTR_PRINTF(fmt, args) __attribute__((format(gnu_printf, fmt, args)))
#else
#define LM_ATTR_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#endif

/* The canonical absolute form of `name` into `buf` (LM_PATH_MAX bytes), or NULL (mi_realpath). */
#if LM_PLATFORM_WINDOWS
#include <stdlib.h> /* _fullpath */
#define LM_PATH_MAX 260
static inline char* lm_realpath(const char* name, char* buf) {
  return _fullpath(buf, name, LM_PATH_MAX);
}
#elif defined(__wasi__)
/* wasi-libc has no realpath (no canonical names for preopened folders): mi_realpath fails. */
#include <errno.h>
#define LM_PATH_MAX 4096
static inline char* lm_realpath(const char* name, char* buf) {
  (void)name, (void)buf;
  errno = ENOSYS;
  return NULL;
}
#elif LM_PLATFORM_MACOS
#include <stdlib.h> /* realpath, under the symbol name the SDK picks (an asm label) */
#define LM_PATH_MAX 1024
static inline char* lm_realpath(const char* name, char* buf) { return realpath(name, buf); }
#else
#define LM_PATH_MAX 4096
char* realpath(const char* restrict name, char* restrict buf);
static inline char* lm_realpath(const char* name, char* buf) { return realpath(name, buf); }
#endif

/* ---- the address space ----------------------------------------------------------------------
 * 64-bit: arenas are placed at hinted addresses from lm_region_start on (randomised above it by
 * up to lm_region_span), far below where the OS puts other mappings, so "ours" is one range
 * test in free. Linux x86-64 and aarch64 and Windows x64 all give user programs at least 47
 * bits. 32-bit: the whole 4 GiB is shared with the program's own mappings, so there is no
 * region (span 0): the OS places arenas where it likes, and "ours" is the exact test of the
 * arenas and the segment map (src/core/region.c). */
#if LM_INTPTR_BITS == 64
#define LM_ADDRESS_BITS 48
static inline uintptr_t lm_region_start(void) { return (uintptr_t)1 << 41; } /* 2 TiB */
static inline uintptr_t lm_region_span(void) { return (uintptr_t)1 << 42; }  /* 4 TiB */
#else
#define LM_ADDRESS_BITS 32
static inline uintptr_t lm_region_start(void) { return 0; }
static inline uintptr_t lm_region_span(void) { return 0; }
#endif

#endif
