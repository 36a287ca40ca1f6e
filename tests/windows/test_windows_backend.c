/* Test of the Windows backend's primitives, linked with the backend library alone, run under
 * wine or on Windows. What the OS did is read back through VirtualQuery, so no test needs to
 * provoke a fault. Prints "N passed, N failed" (tests/support/check.h). */
#include <windows.h>

#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include "backend/backend.h"
#include "support/check.h"

#define KiB ((size_t)1024)
#define MiB (KiB * KiB)

static const lm_backend_t* os;
static lm_backend_caps_t caps;

/* The state (MEM_RESERVE, MEM_COMMIT, MEM_FREE) and protection of the page at p. */
static DWORD state_of(const void* p, DWORD* protect) {
  MEMORY_BASIC_INFORMATION info;
  if (VirtualQuery(p, &info, sizeof(info)) != sizeof(info)) return 0;
  if (protect != NULL) *protect = info.Protect;
  return info.State;
}

static bool all_zero(const void* p, size_t size) {
  for (size_t i = 0; i < size; i++) {
    if (((const uint8_t*)p)[i] != 0) return false;
  }
  return true;
}

static void test_caps(void) {
  check(caps.page_size == 4096, "page size is 4 KiB", (long long)caps.page_size);
  check(caps.alloc_granularity == 64 * KiB, "reservations at 64 KiB granularity",
        (long long)caps.alloc_granularity);
  check(!caps.has_partial_release, "no partial release declared", 0);
  check(!caps.has_overcommit, "no overcommit declared", 0);
  check(caps.has_virtual_reserve && caps.has_decommit && caps.has_threads,
        "virtual reserve, decommit and threads declared", 0);
  /* Large pages are declared only with the privilege, and their absence is explained. */
  check((caps.large_page_size == 0) == (caps.large_pages_absent != NULL),
        "large pages: a size, or the reason for none", (long long)caps.large_page_size);
  check(os->atfork == NULL && os->reserve_huge == NULL && os->large_pages_advise == NULL,
        "no fork, 1 GiB pages or page advice on Windows", 0);
}

static void test_reserve_commit_decommit_release(void) {
  const size_t size = 4 * MiB;
  void* p = NULL;
  bool zero = false;
  check(os->reserve(NULL, size, 0, false, &p, &zero) == 0 && p != NULL, "reserve 4 MiB", 0);
  if (p == NULL) return;
  check(((uintptr_t)p % caps.alloc_granularity) == 0, "reservation at the granularity",
        (long long)(uintptr_t)p);
  check(state_of(p, NULL) == MEM_RESERVE, "reserved, not committed", (long long)state_of(p, NULL));
  uint8_t* mid = (uint8_t*)p + MiB;
  check(os->commit(mid, 64 * KiB, &zero) == 0, "commit 64 KiB in the middle", 0);
  check(state_of(mid, NULL) == MEM_COMMIT, "committed", (long long)state_of(mid, NULL));
  check(state_of((uint8_t*)p, NULL) == MEM_RESERVE, "the start is still only reserved", 0);
  check(all_zero(mid, 64 * KiB), "fresh commit reads zero", 0);
  memset(mid, 0xAB, 64 * KiB);
  bool recommit = false;
  check(os->decommit(mid, 64 * KiB, &recommit) == 0, "decommit", 0);
  check(recommit, "decommit says the range needs a commit again", 0);
  check(state_of(mid, NULL) == MEM_RESERVE, "decommitted pages are reserved again",
        (long long)state_of(mid, NULL));
  check(os->commit(mid, 64 * KiB, &zero) == 0 && all_zero(mid, 64 * KiB),
        "recommitted pages read zero", 0);
  check(os->release(p, size) == 0, "release the whole reservation", 0);
  check(state_of(p, NULL) == MEM_FREE && state_of(mid, NULL) == MEM_FREE,
        "the whole reservation is free", (long long)state_of(p, NULL));
}

static void test_reserve_committed_is_zero(void) {
  void* p = NULL;
  bool zero = false;
  check(os->reserve(NULL, 256 * KiB, 0, true, &p, &zero) == 0 && p != NULL && zero,
        "committed reservation reported zero", 0);
  if (p == NULL) return;
  check(state_of(p, NULL) == MEM_COMMIT && all_zero(p, 256 * KiB), "committed and zero", 0);
  ((uint8_t*)p)[256 * KiB - 1] = 1;
  check(os->release(p, 256 * KiB) == 0, "release", 0);
}

static void test_release_refuses_a_part(void) {
  /* Windows releases only whole reservations: the capability says so, and the OS agrees. */
  void* p = NULL;
  bool zero = false;
  if (os->reserve(NULL, 1 * MiB, 0, false, &p, &zero) != 0) return;
  check(os->release((uint8_t*)p + 512 * KiB, 512 * KiB) != 0, "releasing a part fails", 0);
  check(state_of(p, NULL) == MEM_RESERVE, "and changes nothing", 0);
  check(os->release(p, 1 * MiB) == 0, "release the whole", 0);
}

static void test_reserve_honours_try_align(void) {
  for (int i = 0; i < 8; i++) {
    void* p = NULL;
    bool zero = false;
    if (os->reserve(NULL, 4 * MiB, 32 * MiB, false, &p, &zero) != 0) {
      check(false, "reserve aligned", i);
      return;
    }
    check(((uintptr_t)p & (32 * MiB - 1)) == 0, "reserve honours a 32 MiB alignment", i);
    os->release(p, 4 * MiB);
  }
}

static void test_reserve_at_hint(void) {
  /* A free address is taken as asked; a taken one falls back to anywhere. */
  void* hint = (void*)((uintptr_t)1 << 41);
  void* p = NULL;
  bool zero = false;
  check(os->reserve(hint, 4 * MiB, 0, false, &p, &zero) == 0 && p == hint, "reserve at a hint",
        (long long)(uintptr_t)p);
  void* q = NULL;
  check(os->reserve(hint, 4 * MiB, 0, false, &q, &zero) == 0 && q != NULL && q != hint,
        "a taken hint falls back", (long long)(uintptr_t)q);
  if (p != NULL) os->release(p, 4 * MiB);
  if (q != NULL) os->release(q, 4 * MiB);
}

static void test_reserve_fails_cleanly(void) {
  void* p = (void*)1;
  bool zero = false;
  int err = os->reserve(NULL, (size_t)1 << 50, 0, false, &p, &zero);
  check(err == ENOMEM && p == (void*)1, "a 1 PiB reservation fails with ENOMEM", err);
}

static void test_protect_and_reset(void) {
  void* p = NULL;
  bool zero = false;
  if (os->reserve(NULL, 64 * KiB, 0, true, &p, &zero) != 0) return;
  DWORD prot = 0;
  check(os->protect(p, 4096, true) == 0 && state_of(p, &prot) == MEM_COMMIT &&
            prot == PAGE_NOACCESS,
        "protect makes a page inaccessible", (long long)prot);
  check(os->protect(p, 4096, false) == 0 && state_of(p, &prot) == MEM_COMMIT &&
            prot == PAGE_READWRITE,
        "and accessible again", (long long)prot);
  memset(p, 1, 64 * KiB);
  check(os->reset(p, 64 * KiB) == 0 && state_of(p, NULL) == MEM_COMMIT,
        "reset keeps the range committed", 0);
  ((uint8_t*)p)[0] = 2; /* still writable */
  os->release(p, 64 * KiB);
}

static void test_machine(void) {
  int64_t t0 = os->clock_ms();
  Sleep(30);
  int64_t t1 = os->clock_ms();
  check(t1 - t0 >= 20 && t1 - t0 < 5000, "clock advances with Sleep", (long long)(t1 - t0));
  uint64_t a = 0, b = 0;
  check(os->random_bytes(&a, sizeof(a)) && os->random_bytes(&b, sizeof(b)) && a != b,
        "random bytes differ", 0);
  SetEnvironmentVariableA("LM_TEST_VALUE", "hello");
  char buf[16];
  check(os->getenv("lm_test_value", buf, sizeof(buf)) && strcmp(buf, "hello") == 0,
        "getenv is case-insensitive", 0);
  check(os->getenv("LM_TEST_VALUE", buf, 4) && strcmp(buf, "hel") == 0, "getenv truncates", 0);
  check(!os->getenv("LM_TEST_MISSING", buf, sizeof(buf)), "getenv of a missing name", 0);
  SetEnvironmentVariableA("LM_TEST_EMPTY", "");
  check(!os->getenv("LM_TEST_EMPTY", buf, sizeof(buf)) || buf[0] == 0, "empty value", 0);
  int nodes = os->numa_node_count();
  int node = os->numa_node();
  check(nodes >= 1 && node >= 0 && node < nodes, "numa node within the count", node);
  size_t user = 0, sys = 0, rss = 0, peak = 0, faults = 0;
  os->process_info(&user, &sys, &rss, &peak, &faults);
  check(rss > 0 && peak >= rss, "process info: working set and its peak", (long long)rss);
  check(user + sys < 3600 * 1000, "process info: cpu times", (long long)(user + sys));
  /* (wine reports no page faults: PageFaultCount stays 0 there) */
  os->output(""); /* nothing to write: must not block or fail */
}

/* ---- threads ---------------------------------------------------------------------------------- */
static _Atomic(int) exit_calls;
static _Atomic(uintptr_t) exit_arg;

static void on_exit_fn(void* arg) {
  atomic_fetch_add(&exit_calls, 1);
  atomic_store(&exit_arg, (uintptr_t)arg);
}

static DWORD WINAPI armed_thread(void* arg) {
  os->thread_exit_arm(arg);
  return 0;
}

static DWORD WINAPI disarmed_thread(void* arg) {
  os->thread_exit_arm(arg);
  os->thread_exit_arm(NULL);
  return 0;
}

static void join(LPTHREAD_START_ROUTINE fn, void* arg) {
  HANDLE t = CreateThread(NULL, 0, fn, arg, 0, NULL);
  WaitForSingleObject(t, INFINITE);
  CloseHandle(t);
}

static void test_thread_exit_runs_once_through_fls(void) {
  check(os->thread_exit_register(on_exit_fn) == 0, "register the exit function", 0);
  join(armed_thread, (void*)0x1230);
  check(atomic_load(&exit_calls) == 1 && atomic_load(&exit_arg) == 0x1230,
        "an armed thread's exit runs the function once with its arg",
        atomic_load(&exit_calls));
  join(disarmed_thread, (void*)0x4560);
  check(atomic_load(&exit_calls) == 1, "a disarmed thread's exit runs nothing",
        atomic_load(&exit_calls));
}

static _Atomic(uint32_t) word;
static _Atomic(int) ran;

static void background(void* arg) {
  atomic_store(&ran, (int)(uintptr_t)arg);
  atomic_store(&word, 1);
  os->wake_all(&word);
}

static void test_thread_start_and_wake(void) {
  check(os->thread_start(background, (void*)7) == 0, "start a background thread", 0);
  for (int i = 0; i < 100 && atomic_load(&word) == 0; i++) os->wait_on(&word, 0, 100);
  check(atomic_load(&ran) == 7 && atomic_load(&word) == 1, "it ran and woke us", 0);
  int64_t t0 = os->clock_ms();
  os->wait_on(&word, 1, 50);
  int64_t waited = os->clock_ms() - t0;
  check(waited >= 30 && waited < 5000, "wait_on returns after its timeout", (long long)waited);
  t0 = os->clock_ms();
  os->wait_on(&word, 0, 5000); /* the value differs: returns at once */
  check(os->clock_ms() - t0 < 1000, "wait_on returns at once on another value", 0);
}

int main(void) {
  os = lm_backend_default();
  os->init(&caps);
  test_caps();
  test_reserve_commit_decommit_release();
  test_reserve_committed_is_zero();
  test_release_refuses_a_part();
  test_reserve_honours_try_align();
  test_reserve_at_hint();
  test_reserve_fails_cleanly();
  test_protect_and_reset();
  test_machine();
  test_thread_exit_runs_once_through_fls();
  test_thread_start_and_wake();
  printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
