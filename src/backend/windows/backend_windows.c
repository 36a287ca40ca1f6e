/* The Windows backend: VirtualAlloc/VirtualFree for memory, fiber-local storage for thread
 * exit, WaitOnAddress for the purger's sleep.
 *
 * Windows' rules, declared in the capabilities so the layers above never break them:
 * reservations are placed and released at the allocation granularity (64 KiB), only a whole
 * reservation can be released (no partial release), decommitted memory is inaccessible until
 * committed again, and committed memory is charged at once (no overcommit). Large pages exist
 * only where the process holds SeLockMemoryPrivilege; otherwise they are declared absent with
 * the reason, which the engine prints in verbose mode.
 * Nothing here calls the C runtime's malloc: the environment, output and process figures go
 * through kernel32 (whose own allocations use the process heap, not ours).
 */
#define WIN32_LEAN_AND_MEAN
#define NOMINMAX
#include "../backend.h"
#include "../../common/common.h"

#include <errno.h>
#include <windows.h>
#include <bcrypt.h>
#include <psapi.h>

static size_t page_size = 4096;
static size_t granularity = 64 * 1024;
static size_t large_page_size; /* 0 unless SeLockMemoryPrivilege is held */
static DWORD fls_index = FLS_OUT_OF_INDEXES;
static lm_thread_exit_fun* _Atomic exit_fun;

/* ---- memory -------------------------------------------------------------------------------- */

static void* virtual_alloc(void* addr, size_t size, bool commit) {
  DWORD type = MEM_RESERVE | (commit ? MEM_COMMIT : 0);
  return VirtualAlloc(addr, size, type, commit ? PAGE_READWRITE : PAGE_NOACCESS);
}

/* An aligned reservation without partial release: find a free aligned address by reserving
 * size+align once, give it all back, and reserve exactly at the aligned address inside. Another
 * thread may take the spot in between, hence a few tries. */
static void* reserve_aligned(size_t size, size_t align, bool commit) {
  if (size > SIZE_MAX - align) return NULL;
  for (int tries = 0; tries < 4; tries++) {
    void* probe = virtual_alloc(NULL, size + align, false);
    if (probe == NULL) return NULL;
    VirtualFree(probe, 0, MEM_RELEASE);
    void* p = virtual_alloc(lm_align_up_ptr(probe, align), size, commit);
    if (p != NULL) return p;
  }
  return NULL;
}

static int windows_reserve(void* hint, size_t size, size_t try_align, bool commit, void** addr,
                           bool* is_zero) {
  void* p = hint != NULL ? virtual_alloc(hint, size, commit) : NULL; /* fails if taken */
  if (p == NULL) p = virtual_alloc(NULL, size, commit);
  if (p == NULL) return ENOMEM;
  if (hint == NULL && try_align > granularity && lm_is_power_of_two(try_align) &&
      ((uintptr_t)p & (try_align - 1)) != 0) {
    void* q = reserve_aligned(size, try_align, commit);
    if (q != NULL) {
      VirtualFree(p, 0, MEM_RELEASE);
      p = q;
    } /* else the unaligned block stands: the caller over-allocates */
  }
  *addr = p;
  *is_zero = true; /* fresh pages are zero-filled */
  return 0;
}

static int windows_release(void* addr, size_t size) {
  (void)size; /* MEM_RELEASE takes the whole reservation, and only that (size 0) */
  return VirtualFree(addr, 0, MEM_RELEASE) ? 0 : EINVAL;
}

static int windows_commit(void* addr, size_t size, bool* is_zero) {
  if (VirtualAlloc(addr, size, MEM_COMMIT, PAGE_READWRITE) == NULL) return ENOMEM;
  *is_zero = false; /* pages already committed keep their contents */
  return 0;
}

static int windows_decommit(void* addr, size_t size, bool* needs_recommit) {
  if (!VirtualFree(addr, size, MEM_DECOMMIT)) return EINVAL;
  *needs_recommit = true; /* decommitted pages fault until committed again */
  return 0;
}

static int windows_reset(void* addr, size_t size) {
  /* MEM_RESET: the contents may be discarded, the pages stay committed and accessible. */
  return VirtualAlloc(addr, size, MEM_RESET, PAGE_READWRITE) != NULL ? 0 : EINVAL;
}

static int windows_protect(void* addr, size_t size, bool protect) {
  DWORD old;
  return VirtualProtect(addr, size, protect ? PAGE_NOACCESS : PAGE_READWRITE, &old) ? 0 : EINVAL;
}

static int windows_reserve_large(void* hint, size_t size, size_t try_align, void** addr,
                                 bool* is_zero, bool* is_pinned) {
  (void)hint, (void)try_align; /* large pages are placed by the OS, aligned to their size */
  if (large_page_size == 0) return ENOMEM;
  void* p = VirtualAlloc(NULL, size, MEM_RESERVE | MEM_COMMIT | MEM_LARGE_PAGES, PAGE_READWRITE);
  if (p == NULL) return ENOMEM;
  *addr = p;
  *is_zero = true;
  *is_pinned = true; /* large pages cannot be decommitted */
  return 0;
}

/* Large pages need SeLockMemoryPrivilege, which an account holds only when an administrator
 * granted "Lock pages in memory"; it must also be enabled in the process token. */
static const char* enable_large_pages(void) {
  if (GetLargePageMinimum() == 0) return "the OS has no large pages";
  HANDLE token;
  if (!OpenProcessToken(GetCurrentProcess(), TOKEN_ADJUST_PRIVILEGES | TOKEN_QUERY, &token)) {
    return "the process token cannot be opened";
  }
  TOKEN_PRIVILEGES tp = {.PrivilegeCount = 1};
  tp.Privileges[0].Attributes = SE_PRIVILEGE_ENABLED;
  const char* why = NULL;
  if (!LookupPrivilegeValueA(NULL, "SeLockMemoryPrivilege", &tp.Privileges[0].Luid)) {
    why = "SeLockMemoryPrivilege is unknown";
  } else if (!AdjustTokenPrivileges(token, FALSE, &tp, 0, NULL, NULL) ||
             GetLastError() != ERROR_SUCCESS) {
    why = "the account lacks SeLockMemoryPrivilege (\"Lock pages in memory\")";
  }
  CloseHandle(token);
  return why;
}

/* ---- machine ------------------------------------------------------------------------------- */

static int windows_numa_node(void) {
  PROCESSOR_NUMBER cpu;
  GetCurrentProcessorNumberEx(&cpu);
  USHORT node = 0;
  return GetNumaProcessorNodeEx(&cpu, &node) ? (int)node : 0;
}

static int windows_numa_node_count(void) {
  ULONG highest = 0;
  return GetNumaHighestNodeNumber(&highest) ? (int)highest + 1 : 1;
}

static int64_t windows_clock_ms(void) {
  static LARGE_INTEGER freq; /* fixed at boot; 0 until first read */
  LARGE_INTEGER t;
  if (freq.QuadPart == 0) QueryPerformanceFrequency(&freq);
  QueryPerformanceCounter(&t);
  return (int64_t)(t.QuadPart / (freq.QuadPart / 1000 > 0 ? freq.QuadPart / 1000 : 1));
}

static bool windows_random_bytes(void* buf, size_t len) {
  if (len > ULONG_MAX) return false;
  return BCRYPT_SUCCESS(
      BCryptGenRandom(NULL, buf, (ULONG)len, BCRYPT_USE_SYSTEM_PREFERRED_RNG));
}

static bool windows_getenv(const char* name, char* buf, size_t size) {
  if (name == NULL || name[0] == 0 || size == 0) return false;
  /* Names are case-insensitive on Windows already. A value longer than buf is read whole into
   * a stack buffer and truncated, as the contract asks. */
  char tmp[4096];
  DWORD saved = GetLastError();
  SetLastError(ERROR_SUCCESS);
  DWORD n = GetEnvironmentVariableA(name, tmp, sizeof(tmp));
  bool found = n > 0 || GetLastError() != ERROR_ENVVAR_NOT_FOUND; /* 0: empty, or missing */
  SetLastError(saved);
  if (!found || n >= sizeof(tmp)) return false; /* longer than any option value we read */
  tmp[n] = 0;
  size_t k = 0;
  for (; k + 1 < size && tmp[k] != 0; k++) buf[k] = tmp[k];
  buf[k] = 0;
  return true;
}

static void windows_output(const char* msg) {
  HANDLE err = GetStdHandle(STD_ERROR_HANDLE);
  if (err == NULL || err == INVALID_HANDLE_VALUE) return; /* a GUI program: nowhere to write */
  size_t len = lm_strlen(msg), done = 0;
  while (done < len) {
    DWORD n = 0;
    if (!WriteFile(err, msg + done, (DWORD)lm_min(len - done, 1u << 30), &n, NULL) || n == 0) {
      break;
    }
    done += n;
  }
}

static size_t filetime_ms(FILETIME t) {
  ULARGE_INTEGER v = {.LowPart = t.dwLowDateTime, .HighPart = t.dwHighDateTime};
  return (size_t)(v.QuadPart / 10000); /* 100 ns units */
}

static void windows_process_info(size_t* user_ms, size_t* system_ms, size_t* current_rss,
                                 size_t* peak_rss, size_t* page_faults) {
  FILETIME created, exited, kernel, user;
  if (GetProcessTimes(GetCurrentProcess(), &created, &exited, &kernel, &user)) {
    *user_ms = filetime_ms(user);
    *system_ms = filetime_ms(kernel);
  }
  PROCESS_MEMORY_COUNTERS info;
  if (GetProcessMemoryInfo(GetCurrentProcess(), &info, sizeof(info))) {
    *current_rss = info.WorkingSetSize;
    *peak_rss = info.PeakWorkingSetSize;
    *page_faults = info.PageFaultCount; /* soft and hard together: Windows does not split them */
  }
}

/* ---- pointers from another allocator ------------------------------------------------------ */
/* In a static link that overrides the CRT's names, the CRT's own internal allocations still
 * come from its heap: such a block is handed back to the CRT that made it. */
typedef void free_fun_t(void*);
typedef size_t msize_fun_t(void*);
static _Atomic(free_fun_t*) crt_free;
static _Atomic(msize_fun_t*) crt_msize;
static _Atomic(int) crt_looked_up;

static void look_up_crt(void) {
  if (atomic_load_explicit(&crt_looked_up, memory_order_acquire)) return;
  static const char* const crts[] = {"ucrtbase.dll", "msvcrt.dll"};
  for (size_t i = 0; i < sizeof(crts) / sizeof(crts[0]); i++) {
    HMODULE crt = GetModuleHandleA(crts[i]);
    if (crt == NULL) continue;
    atomic_store(&crt_free, (free_fun_t*)(void (*)(void))GetProcAddress(crt, "free"));
    atomic_store(&crt_msize, (msize_fun_t*)(void (*)(void))GetProcAddress(crt, "_msize"));
    break;
  }
  atomic_store_explicit(&crt_looked_up, 1, memory_order_release);
}

static bool windows_foreign_free(void* p) {
  look_up_crt();
  free_fun_t* f = atomic_load(&crt_free);
  if (f == NULL) return false;
  f(p);
  return true;
}

static size_t windows_foreign_usable_size(const void* p) {
  look_up_crt();
  msize_fun_t* m = atomic_load(&crt_msize);
  return m != NULL ? m((void*)p) : 0;
}

/* ---- threads ------------------------------------------------------------------------------- */

/* Fiber-local storage calls this when a thread (or fiber) with a non-NULL value ends, in a
 * static link as well as in the DLL, unlike DLL_THREAD_DETACH. */
static void WINAPI fls_exit(void* value) {
  lm_thread_exit_fun* fn = atomic_load(&exit_fun);
  if (fn != NULL && value != NULL) fn(value);
}

static int windows_thread_exit_register(lm_thread_exit_fun* fn) {
  atomic_store(&exit_fun, fn);
  if (fls_index != FLS_OUT_OF_INDEXES) return 0;
  DWORD index = FlsAlloc(fls_exit);
  if (index == FLS_OUT_OF_INDEXES) return EAGAIN;
  fls_index = index;
  return 0;
}

static void windows_thread_exit_arm(void* arg) {
  if (fls_index != FLS_OUT_OF_INDEXES) FlsSetValue(fls_index, arg);
}

static void windows_wait_on(_Atomic(uint32_t)* addr, uint32_t expected, int64_t timeout_ms) {
  DWORD limit = timeout_ms < 0 ? INFINITE : (DWORD)lm_min((size_t)timeout_ms, INFINITE - 1);
  DWORD saved = GetLastError(); /* a timeout sets it; the caller's value stays */
  WaitOnAddress((volatile void*)addr, &expected, sizeof(expected), limit);
  SetLastError(saved);
}

static void windows_wake_all(_Atomic(uint32_t)* addr) { WakeByAddressAll((void*)addr); }

typedef struct start_s {
  lm_thread_fun* fn;
  void* arg;
} start_t;
#define START_SLOTS 8
static start_t start_slots[START_SLOTS]; /* no allocation to start a thread (see linux) */
static _Atomic(unsigned) start_next;

static DWORD WINAPI thread_main(void* p) {
  start_t* start = p;
  start->fn(start->arg);
  return 0;
}

static int windows_thread_start(lm_thread_fun* fn, void* arg) {
  start_t* start = &start_slots[atomic_fetch_add(&start_next, 1) % START_SLOTS];
  start->fn = fn;
  start->arg = arg;
  HANDLE thread = CreateThread(NULL, 64 * 1024, thread_main, start, 0, NULL);
  if (thread == NULL) return EAGAIN;
  CloseHandle(thread); /* detached */
  return 0;
}

/* ---- the backend --------------------------------------------------------------------------- */

static const char* large_pages_absent;

static void windows_init(lm_backend_caps_t* caps) {
  /* Once set up, the module holding the allocator (mimalloc.dll, or the program in a static
   * link) stays loaded until the process ends, even through FreeLibrary: blocks it handed out
   * may still be freed through it, its purger thread runs its code, and the fiber-local
   * storage callback that gives a thread's heap back at thread exit points into it
   * (tests/windows/test_windows_unload.c: threads that allocated end after FreeLibrary). */
  HMODULE self;
  GetModuleHandleExW(GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS | GET_MODULE_HANDLE_EX_FLAG_PIN,
                     (LPCWSTR)(void*)&windows_init, &self);
  SYSTEM_INFO si;
  GetSystemInfo(&si);
  if (si.dwPageSize > 0) page_size = si.dwPageSize;
  if (si.dwAllocationGranularity >= page_size) granularity = si.dwAllocationGranularity;
  large_pages_absent = enable_large_pages();
  large_page_size = large_pages_absent == NULL ? GetLargePageMinimum() : 0;
  *caps = (lm_backend_caps_t){
      .page_size = page_size,
      .alloc_granularity = granularity,
      .large_page_size = large_page_size,
      .large_pages_absent = large_pages_absent,
      .has_overcommit = false,
      .has_partial_release = false,
      .has_virtual_reserve = true,
      .has_decommit = true,
      .has_threads = true,
      .has_numa = windows_numa_node_count() > 1,
      .has_large_page_advice = false,
  };
}

static const lm_backend_t windows_backend = {
    .name = "windows",
    .init = windows_init,
    .reserve = windows_reserve,
    .release = windows_release,
    .commit = windows_commit,
    .decommit = windows_decommit,
    .reset = windows_reset,
    .protect = windows_protect,
    .reserve_large = windows_reserve_large,
    .numa_node = windows_numa_node,
    .numa_node_count = windows_numa_node_count,
    .clock_ms = windows_clock_ms,
    .random_bytes = windows_random_bytes,
    .getenv = windows_getenv,
    .output = windows_output,
    .process_info = windows_process_info,
    .foreign_free = windows_foreign_free,
    .foreign_usable_size = windows_foreign_usable_size,
    .thread_exit_register = windows_thread_exit_register,
    .thread_exit_arm = windows_thread_exit_arm,
    .thread_start = windows_thread_start,
    .wait_on = windows_wait_on,
    .wake_all = windows_wake_all,
};

const lm_backend_t* lm_backend_default(void) { return &windows_backend; }
