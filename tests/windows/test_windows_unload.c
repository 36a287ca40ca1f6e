/* mimalloc.dll loaded and unloaded at run time while the program goes on: threads that
 * allocated through it (so their thread-exit callback is armed) end after FreeLibrary, and new
 * threads start and end. Nothing may call into the unloaded DLL: the fiber-local storage index
 * whose callback gives a thread's heap back must be freed at unload. Loads the DLL named by the
 * first argument, or mimalloc.dll beside the program. "N passed, N failed". */
#include <windows.h>

#include <stdint.h>
#include <stdio.h>

#include "support/check.h"

static int summary(void) {
  printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}

typedef void* malloc_fun(size_t);
typedef void free_fun(void*);

static malloc_fun* dll_malloc;
static free_fun* dll_free;
static HANDLE go_on;     /* the threads wait on it after allocating */
static volatile LONG allocated_ok;

static DWORD WINAPI alloc_then_wait(void* arg) {
  (void)arg;
  void* p = dll_malloc(100);
  if (p != NULL) {
    ((volatile char*)p)[99] = 1;
    dll_free(p);
    p = dll_malloc(1000); /* kept: the thread's heap has a live block when the DLL goes */
    if (p != NULL) InterlockedIncrement(&allocated_ok);
  }
  WaitForSingleObject(go_on, INFINITE);
  return 0; /* ends after the DLL is gone: its exit callback must not run */
}

static DWORD WINAPI plain(void* arg) {
  (void)arg;
  return 0;
}

int main(int argc, char** argv) {
  const char* name = argc > 1 ? argv[1] : "mimalloc.dll";
  HMODULE dll = LoadLibraryA(name);
  check(dll != NULL, "LoadLibrary", (long long)GetLastError());
  if (dll == NULL) return summary();
  dll_malloc = (malloc_fun*)(void*)GetProcAddress(dll, "mi_malloc");
  dll_free = (free_fun*)(void*)GetProcAddress(dll, "mi_free");
  check(dll_malloc != NULL && dll_free != NULL, "mi_malloc and mi_free exported", 0);
  if (dll_malloc == NULL || dll_free == NULL) return summary();
  go_on = CreateEventA(NULL, TRUE, FALSE, NULL);
  enum { N = 4 };
  HANDLE threads[N];
  for (int i = 0; i < N; i++) threads[i] = CreateThread(NULL, 0, alloc_then_wait, NULL, 0, NULL);
  while (InterlockedCompareExchange(&allocated_ok, 0, 0) < N) Sleep(1);
  check(allocated_ok == N, "every thread allocated through the DLL", allocated_ok);
  check(FreeLibrary(dll) != 0, "FreeLibrary", (long long)GetLastError());
  SetEvent(go_on); /* the threads end now, with the DLL unloaded */
  DWORD waited = WaitForMultipleObjects(N, threads, TRUE, 10000);
  check(waited != WAIT_TIMEOUT && waited != WAIT_FAILED, "threads ended after the unload",
        (long long)waited);
  for (int i = 0; i < N; i++) CloseHandle(threads[i]);
  /* and threads keep starting and ending */
  for (int i = 0; i < 16; i++) {
    HANDLE t = CreateThread(NULL, 0, plain, NULL, 0, NULL);
    WaitForSingleObject(t, INFINITE);
    CloseHandle(t);
  }
  check(1, "threads start and end afterwards", 0);
  return summary();
}
