/* The backend conformance suite: the contracts of src/backend/backend.h, checked through the
 * interface alone, so the same program runs against every backend (linked with the OS backend)
 * and against the fake (built with CONFORMANCE_FAKE, plain and under FAKE_BACKEND_OS=windows or wasm).
 * It includes no OS header: what cannot be observed without catching a fault (that uncommitted
 * or protected memory faults) is left to each OS's own test (tests/backend/test_backend_linux.c,
 * tests/windows/test_windows_backend.c). Prints "N passed, N failed" (tests/support/check.h).
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include "backend/backend.h"
#include "support/check.h"

#ifndef CONFORMANCE_FAKE
#define CONFORMANCE_FAKE 0
#endif
#if CONFORMANCE_FAKE
#include "fake_backend.h"
#endif

#define MiB ((size_t)1 << 20)
/* A size no address space holds, a multiple of every granularity: 2^50 on 64-bit targets,
 * 4 GiB - 64 KiB on 32-bit */
#define UNMAPPABLE (SIZE_MAX > UINT32_MAX ? (size_t)(1ULL << 50) : (size_t)0xFFFF0000u)

static const lm_backend_t* os;
static lm_backend_caps_t caps;

static bool pow2(size_t x) { return x != 0 && (x & (x - 1)) == 0; }

static bool all_zero(const void* p, size_t size) {
  for (size_t i = 0; i < size; i++) {
    if (((const uint8_t*)p)[i] != 0) return false;
  }
  return true;
}

/* Write every page of the range (a fault here fails the whole program, which is the point). */
static void touch(void* p, size_t size, uint8_t value) {
  for (size_t i = 0; i < size; i += caps.page_size) ((uint8_t*)p)[i] = value;
  ((uint8_t*)p)[size - 1] = value;
}

static void test_init_and_required_functions(void) {
  check(os->name != NULL && os->init != NULL, "a name and init", 0);
  check(os->reserve && os->release && os->commit && os->decommit && os->clock_ms &&
            os->random_bytes && os->getenv && os->output,
        "the required functions are present", 0);
  check(pow2(caps.page_size) && caps.page_size >= 4096, "page_size a power of two >= 4 KiB",
        (long long)caps.page_size);
  check(pow2(caps.alloc_granularity) && caps.alloc_granularity % caps.page_size == 0,
        "alloc_granularity a power-of-two multiple of page_size",
        (long long)caps.alloc_granularity);
  check(caps.large_page_size == 0 ||
            (pow2(caps.large_page_size) && caps.large_page_size % caps.page_size == 0),
        "large_page_size 0 or a power-of-two multiple of page_size",
        (long long)caps.large_page_size);
  check(!caps.has_threads || (os->thread_start && os->wait_on && os->wake_all),
        "has_threads comes with thread_start, wait_on and wake_all", 0);
  check((os->thread_exit_register == NULL) == (os->thread_exit_arm == NULL),
        "thread_exit_register and thread_exit_arm come together", 0);
  check(!caps.has_large_page_advice || os->large_pages_advise != NULL,
        "has_large_page_advice comes with large_pages_advise", 0);
}

static void test_reserve_committed(void) {
  const size_t size = 2 * MiB;
  void* p = NULL;
  bool zero = false;
  int err = os->reserve(NULL, size, 0, true, &p, &zero);
  check(err == 0 && p != NULL, "reserve committed", err);
  if (p == NULL) return;
  check((uintptr_t)p % caps.alloc_granularity == 0, "a reservation starts at the granularity",
        (long long)(uintptr_t)p);
  check(!zero || all_zero(p, size), "is_zero is true only for zeroed memory", 0);
  touch(p, size, 1);
  check(os->release(p, size) == 0, "release the whole reservation", 0);
}

static void test_commit_decommit_cycle(void) {
  const size_t size = 4 * MiB, part = 256 * 1024;
  void* p = NULL;
  bool zero = false;
  if (os->reserve(NULL, size, 0, false, &p, &zero) != 0 || p == NULL) {
    check(false, "reserve uncommitted", 0);
    return;
  }
  uint8_t* mid = (uint8_t*)p + MiB;
  check(os->commit(mid, part, &zero) == 0, "commit a part", 0);
  check(!zero || all_zero(mid, part), "commit: is_zero only for zeroed memory", 0);
  touch(mid, part, 0xAB);
  check(os->commit(mid, part, &zero) == 0 && mid[0] == 0xAB,
        "committing committed pages keeps their contents", mid[0]);
  bool recommit = false;
  check(os->decommit(mid, part, &recommit) == 0, "decommit", 0);
  if (recommit) {
    check(os->commit(mid, part, &zero) == 0, "commit again after a decommit that asks for it", 0);
  } else if (caps.has_decommit) { /* (without it, as on wasm, the contents are undefined) */
    check(all_zero(mid, part), "decommitted and still accessible: reads zero", 0);
  }
  touch(mid, part, 2);
  if (os->reset != NULL) {
    check(os->reset(mid, part) == 0, "reset", 0);
    touch(mid, part, 3); /* reset memory stays accessible */
  }
  if (os->protect != NULL) {
    check(os->protect(mid, caps.page_size, true) == 0 &&
              os->protect(mid, caps.page_size, false) == 0,
          "protect and unprotect a committed page", 0);
    touch(mid, caps.page_size, 4);
  }
  check(os->release(p, size) == 0, "release", 0);
}

static void test_partial_release_when_declared(void) {
  if (!caps.has_partial_release) return; /* Windows: only whole reservations (the layers obey) */
  const size_t g = caps.alloc_granularity > 64 * 1024 ? caps.alloc_granularity : 64 * 1024;
  void* p = NULL;
  bool zero = false;
  if (os->reserve(NULL, 3 * g, 0, true, &p, &zero) != 0) return;
  check(os->release((uint8_t*)p + g, g) == 0, "release the middle of a reservation", 0);
  touch(p, g, 5);
  touch((uint8_t*)p + 2 * g, g, 5);
  check(os->release(p, g) == 0 && os->release((uint8_t*)p + 2 * g, g) == 0, "and its ends", 0);
}

static uint8_t pattern(size_t i) { return (uint8_t)(i * 7 + i / 4096 + 1); }

/* move: the moved part of the destination holds what the source held, the moved part of the
 * source reads zero, the rest of the source is untouched (an error moved only a prefix). The
 * source crosses a 2 MiB boundary from which large pages are advised where the backend takes
 * advice (on Linux that splits the mapping, which one mremap before Linux 6.17 cannot cross). */
static void test_move_when_present(void) {
  if (os->move == NULL) return;
  const size_t two = 2 * MiB, size = two + 64 * 1024;
  void* p = NULL;
  bool zero = false;
  if (os->reserve(NULL, 4 * two + size, 0, true, &p, &zero) != 0 || p == NULL) {
    check(false, "reserve for a move", 0);
    return;
  }
  uint8_t* boundary = (uint8_t*)(((uintptr_t)p + two + two - 1) & ~(uintptr_t)(two - 1));
  uint8_t* src = boundary - MiB;
  uint8_t* dst = boundary + two;
  if (caps.has_large_page_advice && caps.large_page_size == two) {
    os->large_pages_advise(boundary, two, true);
  }
  for (size_t i = 0; i < size; i++) src[i] = pattern(i);
  memset(dst, 0xEE, size);
  size_t moved = 1;
  int err = os->move(dst, src, size, &moved);
  check(moved <= size && moved % caps.page_size == 0, "move reports whole pages moved",
        (long long)moved);
  check(err != 0 || moved == size, "a move without error moves everything", (long long)moved);
  bool dst_ok = true, src_ok = all_zero(src, moved);
  for (size_t i = 0; i < moved && dst_ok; i++) dst_ok = dst[i] == pattern(i);
  for (size_t i = moved; i < size && src_ok; i++) src_ok = src[i] == pattern(i);
  check(dst_ok, "the destination holds what moved", 0);
  check(src_ok, "the moved source reads zero, the rest is untouched", 0);
  touch(src, size, 1); /* the source stays accessible */
  check(os->release(p, 4 * two + size) == 0, "release after a move", 0);
}

static void test_try_align_is_a_hint(void) {
  /* The result may be unaligned (the arena layer over-allocates then), but must be usable. */
  int aligned = 0;
  for (int i = 0; i < 4; i++) {
    void* p = NULL;
    bool zero = false;
    if (os->reserve(NULL, 4 * MiB, 32 * MiB, false, &p, &zero) != 0) continue;
    aligned += ((uintptr_t)p & (32 * MiB - 1)) == 0;
    check((uintptr_t)p % caps.alloc_granularity == 0, "aligned reserve: at the granularity", i);
    os->release(p, 4 * MiB);
  }
  printf("(try_align honoured %d of 4 times)\n", aligned);
}

static void test_failure_leaves_out_parameters(void) {
  void* p = (void*)1;
  bool zero = true;
  int err = os->reserve(NULL, UNMAPPABLE, 0, false, &p, &zero);
  check(err != 0 && p == (void*)1 && zero, "a refused reserve returns an errno and no results",
        err);
}

static void test_machine(void) {
  int64_t t0 = os->clock_ms(), t1 = os->clock_ms();
  check(t1 >= t0, "the clock does not go back", (long long)(t1 - t0));
  uint64_t a = 0, b = 0;
  if (os->random_bytes(&a, sizeof(a)) && os->random_bytes(&b, sizeof(b))) {
    check(a != b, "random bytes differ between calls", 0);
  }
  char buf[8] = "x";
  check(!os->getenv("LM_CONFORMANCE_NOT_SET", buf, sizeof(buf)), "getenv of a missing name", 0);
  os->output("");
  if (os->numa_node_count != NULL && os->numa_node != NULL) {
    int n = os->numa_node_count(), node = os->numa_node();
    check(n >= 1 && node >= 0 && node < n, "numa node within the count", node);
  }
}

/* ---- threads: started and ended through the backend, synchronised with wait_on/wake_all ---- */
static _Atomic(uint32_t) stage;
static _Atomic(uintptr_t) exit_arg;

static void on_thread_exit(void* arg) {
  atomic_store(&exit_arg, (uintptr_t)arg);
  atomic_store(&stage, 2);
  os->wake_all(&stage);
}

static void thread_body(void* arg) {
  if (os->thread_exit_arm != NULL) os->thread_exit_arm(arg);
  atomic_store(&stage, 1);
  os->wake_all(&stage);
}

static bool wait_for(uint32_t value) {
  for (int i = 0; i < 500 && atomic_load(&stage) < value; i++) {
    os->wait_on(&stage, atomic_load(&stage), 20);
  }
  return atomic_load(&stage) >= value;
}

static void test_threads_and_wakeups(void) {
  if (!caps.has_threads) return;
  bool exits = os->thread_exit_register != NULL && os->thread_exit_register(on_thread_exit) == 0;
  check(os->thread_start(thread_body, (void*)0x5150) == 0, "start a thread", 0);
  check(wait_for(1), "the thread ran and woke the waiter", (long long)atomic_load(&stage));
  if (exits) {
    check(wait_for(2) && atomic_load(&exit_arg) == 0x5150,
          "its end ran the exit function with the armed argument",
          (long long)atomic_load(&stage));
  }
  int64_t t0 = os->clock_ms();
  os->wait_on(&stage, atomic_load(&stage) + 7, 1000); /* another value: no sleep */
  check(os->clock_ms() - t0 < 900 || CONFORMANCE_FAKE, "wait_on returns at once on another value",
        0);
}

int main(void) {
#if CONFORMANCE_FAKE
  fake_backend_reset();
  fake_backend_set_real_thread_exit(true);
  os = fake_backend();
#else
  os = lm_backend_default();
#endif
  os->init(&caps);
  printf("backend %s: page %zu, granularity %zu, partial release %d, threads %d\n", os->name,
         caps.page_size, caps.alloc_granularity, caps.has_partial_release, caps.has_threads);
  test_init_and_required_functions();
  test_reserve_committed();
  test_commit_decommit_cycle();
  test_partial_release_when_declared();
  test_move_when_present();
  test_try_align_is_a_hint();
  test_failure_leaves_out_parameters();
  test_machine();
  test_threads_and_wakeups();
#if CONFORMANCE_FAKE
  check(fake_backend_check_clean(), "nothing left reserved", 0);
#endif
  printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
