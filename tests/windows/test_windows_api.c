/* The public API on Windows, through the static library (whose CRT names override the CRT's in
 * this link) or, built with -DLM_TEST_DLL, through mimalloc.dll and its import library.
 * Plain checks, "N passed, N failed" (tests/support/check.h); run under wine by meson test.
 *
 * Covered: the malloc family and aligned allocation, first-class heaps, blocks freed by other
 * threads, a thread's heap given back when the thread ends (fiber-local storage), options from
 * the environment, statistics and mi_process_info; in the static link also malloc/free/_msize
 * being ours, and a block of the CRT's own heap freed through our free. */
#include <windows.h>

#include <errno.h>
#include <malloc.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mimalloc.h"
#include "mimalloc-stats.h"
#include "support/check.h"

#ifndef LM_TEST_DLL
#define LM_TEST_DLL 0
#endif

static int64_t threads_now(void) {
  mi_stats_t_decl(st);
  return mi_stats_get(&st) ? st.threads.current : -1;
}

static void test_malloc_family(void) {
  void* p = mi_malloc(24);
  check(p != NULL && ((uintptr_t)p % 8) == 0 && mi_usable_size(p) >= 24, "mi_malloc(24)", 0);
  memset(p, 1, 24);
  p = mi_realloc(p, 100000);
  check(p != NULL && ((uint8_t*)p)[23] == 1, "mi_realloc keeps the contents", 0);
  mi_free(p);
  uint8_t* z = mi_calloc(1000, 8);
  bool zero = z != NULL;
  for (size_t i = 0; zero && i < 8000; i++) zero = z[i] == 0;
  check(zero, "mi_calloc is zero", 0);
  mi_free(z);
  for (size_t align = 16; align <= 4 * 1024 * 1024; align *= 4) {
    void* a = mi_malloc_aligned(align + 8, align);
    check(a != NULL && ((uintptr_t)a % align) == 0, "mi_malloc_aligned", (long long)align);
    mi_free(a);
  }
  void* big = mi_malloc(64 * 1024 * 1024); /* a huge block: its own OS reservation */
  check(big != NULL, "64 MiB block", 0);
  if (big != NULL) memset(big, 2, 64 * 1024 * 1024);
  mi_free(big);
  char* s = mi_strdup("windows");
  check(s != NULL && strcmp(s, "windows") == 0, "mi_strdup", 0);
  mi_free(s);
  errno = 0;
  check(mi_malloc(SIZE_MAX / 2) == NULL && errno == ENOMEM, "an impossible size: NULL, ENOMEM",
        errno);
}

static void test_heaps(void) {
  mi_heap_t* heap = mi_heap_new();
  check(heap != NULL, "mi_heap_new", 0);
  if (heap == NULL) return;
  void* blocks[1000];
  for (int i = 0; i < 1000; i++) blocks[i] = mi_heap_malloc(heap, (size_t)(i % 300) + 1);
  check(mi_heap_contains_block(heap, blocks[999]), "the heap holds its block", 0);
  mi_heap_destroy(heap); /* frees every block at once */
  check(true, "mi_heap_destroy", 0);
}

/* ---- threads ------------------------------------------------------------------------------ */
#define THREADS 4
#define PER_THREAD 20000
static void* handoff[THREADS][PER_THREAD];

static DWORD WINAPI producer(void* arg) {
  size_t t = (size_t)(uintptr_t)arg;
  for (size_t i = 0; i < PER_THREAD; i++) {
    size_t size = 8 + (i * 7919 + t) % 2000;
    uint8_t* p = mi_malloc(size);
    if (p != NULL) p[0] = (uint8_t)i, p[size - 1] = (uint8_t)t;
    handoff[t][i] = p;
  }
  return 0; /* ends with live blocks of its heap elsewhere: they are abandoned, not lost */
}

static void run_threads(LPTHREAD_START_ROUTINE fn) {
  HANDLE h[THREADS];
  for (size_t t = 0; t < THREADS; t++) h[t] = CreateThread(NULL, 0, fn, (void*)(uintptr_t)t, 0, NULL);
  WaitForMultipleObjects(THREADS, h, TRUE, INFINITE);
  for (size_t t = 0; t < THREADS; t++) CloseHandle(h[t]);
}

static void test_threads_and_remote_frees(void) {
  int64_t before = threads_now();
  run_threads(producer);
  /* Every thread ended: fiber-local storage ran our exit hook on each, giving its heap back. */
  check(threads_now() == before, "threads ended: their heaps are given back",
        (long long)threads_now());
  size_t missing = 0;
  for (size_t t = 0; t < THREADS; t++) {
    for (size_t i = 0; i < PER_THREAD; i++) {
      uint8_t* p = handoff[t][i];
      if (p == NULL || p[0] != (uint8_t)i) missing++;
      mi_free(p); /* frees into the abandoned heaps of ended threads */
    }
  }
  check(missing == 0, "every block of the ended threads intact", (long long)missing);
  mi_collect(true);
  check(true, "mi_collect(true) after the threads", 0);
}

static void test_stats_and_process_info(void) {
  size_t elapsed = 0, user = 0, sys = 0, rss = 0, peak_rss = 0, commit = 0, peak_commit = 0,
         faults = 0;
  mi_process_info(&elapsed, &user, &sys, &rss, &peak_rss, &commit, &peak_commit, &faults);
  check(rss > 0 && peak_rss >= rss && commit > 0, "mi_process_info", (long long)rss);
  char* json = mi_stats_get_json(0, NULL);
  check(json != NULL && strstr(json, "\"threads\"") != NULL, "mi_stats_get_json", 0);
  mi_free(json);
}

static void test_options(void) {
  /* set by meson test for this run: read from the environment at start */
  check(mi_option_get(mi_option_purge_delay) == 25, "MIMALLOC_PURGE_DELAY=25 from the environment",
        mi_option_get(mi_option_purge_delay));
}

static void test_crt_override(void) {
  if (LM_TEST_DLL) return;
  void* p = malloc(40);
  check(p != NULL && mi_is_in_heap_region(p), "malloc is ours in a static link", 0);
  check(_msize(p) == mi_usable_size(p), "_msize is ours", (long long)_msize(p));
  p = realloc(p, 4000);
  check(p != NULL && mi_is_in_heap_region(p), "realloc is ours", 0);
  free(p);
  void* a = _aligned_malloc(100, 256);
  check(a != NULL && ((uintptr_t)a % 256) == 0 && mi_is_in_heap_region(a), "_aligned_malloc", 0);
  _aligned_free(a);
  /* A block from the CRT's own heap (its internal allocations still use it): our free hands it
   * back to the CRT instead of crashing. */
  typedef void* crt_malloc_t(size_t);
  HMODULE crt = GetModuleHandleA("msvcrt.dll");
  crt_malloc_t* crt_malloc = crt != NULL ? (crt_malloc_t*)(void (*)(void))GetProcAddress(crt, "malloc") : NULL;
  if (crt_malloc != NULL) {
    void* c = crt_malloc(64);
    check(c != NULL && !mi_is_in_heap_region(c), "the CRT's block is not ours", 0);
    free(c);
    check(true, "freeing the CRT's block through ours", 0);
  }
}

int main(void) {
  test_malloc_family();
  test_heaps();
  test_threads_and_remote_frees();
  test_stats_and_process_info();
  test_options();
  test_crt_override();
  printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
