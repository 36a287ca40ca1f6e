/* Unit test of the fake backend itself: the layer tests trust it, so its strictness, failure
 * injection, accounting and leak check are checked here. Contract violations abort, so they
 * are provoked in forked children whose stderr is captured and matched.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "common/common.h"
#include "fake_backend.h"

#define PAGE ((size_t)4096)

static const lm_backend_t* fb;

static int setup(void** state) {
  (void)state;
  fake_backend_reset();
  fb = fake_backend();
  return 0;
}

static int teardown(void** state) {
  (void)state;
  bool clean = fake_backend_check_clean();
  fake_backend_reset();
  return clean ? 0 : -1; /* a leak fails the test */
}

/* Run fn(arg) in a child with default signal handling and return its wait status; the child's
 * stderr goes to `err` (when not NULL) so messages can be matched. */
static int in_child(void (*fn)(void*), void* arg, char* err, size_t err_size) {
  int fds[2];
  assert_int_equal(pipe(fds), 0);
  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0) {
    struct rlimit no_core = {0, 0};
    setrlimit(RLIMIT_CORE, &no_core);
    signal(SIGSEGV, SIG_DFL);
    signal(SIGABRT, SIG_DFL);
    dup2(fds[1], STDERR_FILENO);
    fn(arg);
    _exit(0);
  }
  close(fds[1]);
  size_t len = 0;
  ssize_t n;
  char sink[256];
  while ((n = read(fds[0], err != NULL ? err + len : sink,
                   err != NULL ? err_size - 1 - len : sizeof(sink))) > 0) {
    if (err != NULL) len += (size_t)n;
  }
  if (err != NULL) err[len] = 0;
  close(fds[0]);
  int status = 0;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  return status;
}

/* fn(arg) must abort with a contract violation whose message contains `needle`. */
static void expect_violation(void (*fn)(void*), void* arg, const char* needle) {
  char err[1024];
  int status = in_child(fn, arg, err, sizeof(err));
  assert_true(WIFSIGNALED(status));
  assert_int_equal(WTERMSIG(status), SIGABRT);
  assert_non_null(strstr(err, "contract violation"));
  assert_non_null(strstr(err, needle));
}

static void* reserve(size_t size, size_t align, bool commit) {
  void* p = NULL;
  bool is_zero = false;
  assert_int_equal(fb->reserve(NULL, size, align, commit, &p, &is_zero), 0);
  return p;
}

static bool all_bytes(const void* p, size_t size, uint8_t value) {
  for (size_t i = 0; i < size; i++) {
    if (((const uint8_t*)p)[i] != value) return false;
  }
  return true;
}

/* ---- memory ---------------------------------------------------------------------------------- */

static void test_fake_counts_calls_and_tracks_bytes(void** state) {
  (void)state;
  lm_backend_caps_t caps;
  fb->init(&caps);
  assert_int_equal(caps.page_size, PAGE);
  assert_false(caps.has_overcommit);
  uint8_t* p = reserve(16 * PAGE, 0, false);
  assert_int_equal(fake_backend_reserved_bytes(), 16 * PAGE);
  assert_int_equal(fake_backend_committed_bytes(), 0);
  bool is_zero = true;
  assert_int_equal(fb->commit(p, 4 * PAGE, &is_zero), 0);
  assert_false(is_zero);
  assert_int_equal(fake_backend_committed_bytes(), 4 * PAGE);
  assert_true(fake_backend_is_committed(p, 4 * PAGE));
  assert_false(fake_backend_is_committed(p, 5 * PAGE));
  assert_true(fake_backend_is_reserved(p, 16 * PAGE));
  assert_int_equal(fb->protect(p, PAGE, true), 0);
  assert_int_equal(fake_backend_committed_bytes(), 4 * PAGE); /* guard pages stay committed */
  assert_int_equal(fb->protect(p, PAGE, false), 0);
  bool recommit = true;
  assert_int_equal(fb->decommit(p, 2 * PAGE, &recommit), 0);
  assert_false(recommit);
  assert_int_equal(fake_backend_committed_bytes(), 2 * PAGE);
  assert_int_equal(fb->reset(p + 2 * PAGE, 2 * PAGE), 0);
  assert_int_equal(fb->release(p, 16 * PAGE), 0);
  assert_int_equal(fake_backend_calls(FAKE_OP_RESERVE), 1);
  assert_int_equal(fake_backend_calls(FAKE_OP_COMMIT), 1);
  assert_int_equal(fake_backend_calls(FAKE_OP_PROTECT), 2);
  assert_int_equal(fake_backend_calls(FAKE_OP_DECOMMIT), 1);
  assert_int_equal(fake_backend_calls(FAKE_OP_RESET), 1);
  assert_int_equal(fake_backend_calls(FAKE_OP_RELEASE), 1);
  assert_int_equal(fake_backend_reserved_bytes(), 0);
  assert_int_equal(fake_backend_committed_bytes(), 0);
}

static void test_fake_fails_the_nth_call_with_enomem(void** state) {
  (void)state;
  uint8_t* p = reserve(8 * PAGE, 0, false);
  fake_backend_fail_nth(FAKE_OP_COMMIT, 2);
  bool is_zero = true;
  assert_int_equal(fb->commit(p, PAGE, &is_zero), 0);
  is_zero = true;
  assert_int_equal(fb->commit(p + PAGE, PAGE, &is_zero), ENOMEM);
  assert_true(is_zero); /* untouched on failure */
  assert_false(fake_backend_is_committed(p + PAGE, PAGE));
  assert_int_equal(fb->commit(p + PAGE, PAGE, &is_zero), 0);
  assert_int_equal(fake_backend_failures(FAKE_OP_COMMIT), 1);
  assert_int_equal(fake_backend_calls(FAKE_OP_COMMIT), 3);

  fake_backend_fail_always(FAKE_OP_RESERVE, true);
  void* q = (void*)0x1234;
  assert_int_equal(fb->reserve(NULL, PAGE, 0, true, &q, &is_zero), ENOMEM);
  assert_int_equal(fb->reserve(NULL, PAGE, 0, true, &q, &is_zero), ENOMEM);
  assert_ptr_equal(q, (void*)0x1234);
  fake_backend_fail_always(FAKE_OP_RESERVE, false);
  assert_int_equal(fake_backend_failures(FAKE_OP_RESERVE), 2);
  fake_backend_fail_nth(FAKE_OP_RELEASE, 1);
  assert_int_equal(fb->release(p, 8 * PAGE), ENOMEM);
  assert_int_equal(fake_backend_live_reservations(), 1);
  assert_int_equal(fb->release(p, 8 * PAGE), 0);
}

static void test_fake_detects_leaks_at_teardown(void** state) {
  (void)state;
  void* p = reserve(PAGE, 0, true);
  assert_int_equal(fake_backend_live_reservations(), 1);
  assert_false(fake_backend_check_clean());
  assert_int_equal(fb->release(p, PAGE), 0);
  assert_true(fake_backend_check_clean());
  reserve(PAGE, 0, false);
  fake_backend_reset(); /* forgets (and really releases) everything */
  assert_true(fake_backend_check_clean());
  assert_int_equal(fake_backend_calls(FAKE_OP_RESERVE), 0);
}

static void leak_then_assert_clean(void* arg) {
  (void)arg;
  reserve(PAGE, 0, false);
  fake_backend_assert_clean();
}

static void test_fake_assert_clean_aborts_on_a_leak(void** state) {
  (void)state;
  expect_violation(leak_then_assert_clean, NULL, "left at teardown");
}

static void test_fake_reports_zero_only_when_it_zeroed(void** state) {
  (void)state;
  void* p = NULL;
  bool is_zero = false;
  assert_int_equal(fb->reserve(NULL, 4 * PAGE, 0, true, &p, &is_zero), 0);
  assert_true(is_zero);
  assert_true(all_bytes(p, 4 * PAGE, 0));
  memset(p, 0x11, 4 * PAGE);
  assert_int_equal(fb->release(p, 4 * PAGE), 0);
  void* q = reserve(4 * PAGE, 0, true); /* first fit: the same place, zeroed again */
  assert_ptr_equal(q, p);
  assert_true(all_bytes(q, 4 * PAGE, 0));
  assert_int_equal(fb->release(q, 4 * PAGE), 0);

  fake_backend_set_reserve_zero(false);
  assert_int_equal(fb->reserve(NULL, 4 * PAGE, 0, true, &p, &is_zero), 0);
  assert_false(is_zero);
  assert_true(all_bytes(p, 4 * PAGE, 0xAB));
  assert_int_equal(fb->release(p, 4 * PAGE), 0);
}

static void test_fake_scribbles_newly_committed_and_reset_memory(void** state) {
  (void)state;
  uint8_t* p = reserve(4 * PAGE, 0, false);
  bool is_zero = true;
  assert_int_equal(fb->commit(p, 2 * PAGE, &is_zero), 0);
  assert_false(is_zero);
  assert_true(all_bytes(p, 2 * PAGE, 0xAB));
  memset(p, 0x22, 2 * PAGE);
  assert_int_equal(fb->commit(p, 4 * PAGE, &is_zero), 0); /* already committed part is kept */
  assert_true(all_bytes(p, 2 * PAGE, 0x22));
  assert_true(all_bytes(p + 2 * PAGE, 2 * PAGE, 0xAB));
  assert_int_equal(fb->reset(p, PAGE), 0);
  assert_true(all_bytes(p, PAGE, 0xAB)); /* contents gone: not kept, not zero either */
  assert_int_equal(fb->release(p, 4 * PAGE), 0);
}

static void touch(void* p) { *(volatile uint8_t*)p = 1; }

static void test_fake_uncommitted_memory_faults(void** state) {
  (void)state;
  uint8_t* p = reserve(2 * PAGE, 0, false);
  bool is_zero;
  assert_int_equal(fb->commit(p, PAGE, &is_zero), 0);
  int status = in_child(touch, p, NULL, 0);
  assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  status = in_child(touch, p + PAGE, NULL, 0);
  assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV);
  assert_int_equal(fb->protect(p, PAGE, true), 0);
  status = in_child(touch, p, NULL, 0);
  assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV);
  assert_int_equal(fb->release(p, 2 * PAGE), 0);
}

static void test_fake_decommit_follows_the_configured_platform(void** state) {
  (void)state;
  uint8_t* p = reserve(2 * PAGE, 0, true);
  memset(p, 0x33, 2 * PAGE);
  bool recommit = true;
  assert_int_equal(fb->decommit(p, PAGE, &recommit), 0); /* Linux-like */
  assert_false(recommit);
  assert_true(all_bytes(p, PAGE, 0));
  assert_false(fake_backend_is_committed(p, PAGE));

  fake_backend_set_needs_recommit(true); /* Windows-like */
  assert_int_equal(fb->decommit(p + PAGE, PAGE, &recommit), 0);
  assert_true(recommit);
  int status = in_child(touch, p + PAGE, NULL, 0);
  assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV);

  lm_backend_caps_t caps;
  fake_backend_get_caps(&caps);
  caps.has_decommit = false; /* wasm-like: nothing returned, contents undefined */
  fake_backend_set_caps(&caps);
  bool is_zero;
  assert_int_equal(fb->commit(p, 2 * PAGE, &is_zero), 0);
  memset(p, 0x44, 2 * PAGE);
  assert_int_equal(fb->decommit(p, 2 * PAGE, &recommit), 0);
  assert_false(recommit);
  assert_true(fake_backend_is_committed(p, 2 * PAGE));
  assert_true(all_bytes(p, 2 * PAGE, 0xAB));
  assert_int_equal(fb->release(p, 2 * PAGE), 0);
}

static void test_fake_honours_try_align_and_unaligned_mode(void** state) {
  (void)state;
  const size_t align = 4 * LM_MiB;
  void* first = reserve(PAGE, 0, false); /* so the buffer start is taken */
  void* p = reserve(align, align, false);
  assert_int_equal((uintptr_t)p % align, 0);
  fake_backend_set_unaligned(true);
  void* q = reserve(align, align, false);
  assert_int_not_equal((uintptr_t)q % align, 0); /* deliberately off, for over-allocation */
  assert_int_equal((uintptr_t)q % PAGE, 0);
  assert_int_equal(fb->release(first, PAGE), 0);
  assert_int_equal(fb->release(p, align), 0);
  assert_int_equal(fb->release(q, align), 0);
}

static void test_fake_reservations_never_touch(void** state) {
  (void)state;
  uint8_t* a = reserve(PAGE, 0, true);
  uint8_t* b = reserve(PAGE, 0, true);
  assert_true(b > a + PAGE); /* a guard gap catches overruns into the neighbour */
  assert_false(fake_backend_is_reserved(a, (size_t)(b - a) + PAGE));
  assert_int_equal(fb->release(a, PAGE), 0);
  assert_int_equal(fb->release(b, PAGE), 0);
}

static void test_fake_partial_release_splits_a_reservation(void** state) {
  (void)state;
  uint8_t* p = reserve(8 * PAGE, 0, true);
  assert_int_equal(fb->release(p + 2 * PAGE, 2 * PAGE), 0);
  assert_int_equal(fake_backend_live_reservations(), 2);
  assert_int_equal(fake_backend_reserved_bytes(), 6 * PAGE);
  assert_int_equal(fb->release(p, PAGE), 0);
  assert_int_equal(fb->release(p + 7 * PAGE, PAGE), 0);
  assert_int_equal(fb->release(p + PAGE, PAGE), 0);
  assert_int_equal(fb->release(p + 4 * PAGE, 3 * PAGE), 0);
  assert_int_equal(fake_backend_live_reservations(), 0);
}

/* ---- contract violations ------------------------------------------------------------------- */

static void commit_unaligned(void* arg) {
  bool z;
  fb->commit((uint8_t*)arg + 8, PAGE, &z);
}
static void commit_outside(void* arg) {
  bool z;
  fb->commit((uint8_t*)arg + 2 * PAGE, 2 * PAGE, &z); /* runs past the 3-page reservation */
}
static void release_part_windows_like(void* arg) {
  lm_backend_caps_t caps;
  fake_backend_get_caps(&caps);
  caps.has_partial_release = false;
  fake_backend_set_caps(&caps);
  fb->release(arg, PAGE);
}
static void reset_uncommitted(void* arg) { fb->reset(arg, PAGE); }
static void release_twice(void* arg) {
  fb->release(arg, 3 * PAGE);
  fb->release(arg, 3 * PAGE);
}
static void start_thread_without_threads(void* arg) {
  (void)arg;
  lm_backend_caps_t caps;
  fake_backend_get_caps(&caps);
  caps.has_threads = false;
  fake_backend_set_caps(&caps);
  fb->thread_start(NULL, NULL);
}

static void test_fake_aborts_on_contract_violations(void** state) {
  (void)state;
  void* p = reserve(3 * PAGE, 0, false);
  expect_violation(commit_unaligned, p, "multiples of page_size");
  expect_violation(commit_outside, p, "not inside one live reservation");
  expect_violation(release_part_windows_like, p, "has_partial_release");
  expect_violation(reset_uncommitted, p, "not committed");
  expect_violation(release_twice, p, "release(");
  expect_violation(start_thread_without_threads, NULL, "has_threads");
  assert_int_equal(fb->release(p, 3 * PAGE), 0);
}

static void test_fake_reserve_huge_is_off_unless_enabled(void** state) {
  (void)state;
  void* p = (void*)0x1234;
  bool is_zero = false;
  assert_int_equal(fb->reserve_huge(NULL, LM_GiB, 0, &p, &is_zero), ENOMEM);
  assert_ptr_equal(p, (void*)0x1234);
  fake_backend_set_huge_pages(true);
  assert_int_equal(fb->reserve_huge(NULL, LM_GiB, 0, &p, &is_zero), 0);
  assert_true(is_zero);
  assert_int_equal((uintptr_t)p % LM_GiB, 0);
  assert_true(fake_backend_is_committed(p, LM_GiB));
  assert_int_equal(fake_backend_calls(FAKE_OP_RESERVE_HUGE), 2);
  assert_int_equal(fb->release(p, LM_GiB), 0);
}

/* ---- machine and threads ------------------------------------------------------------------ */

static void test_fake_environment_output_clock_and_random(void** state) {
  (void)state;
  char buf[8];
  fake_backend_setenv("MIMALLOC_VERBOSE", "1");
  assert_true(fb->getenv("mimalloc_verbose", buf, sizeof(buf)));
  assert_string_equal(buf, "1");
  fake_backend_setenv("mimalloc_verbose", NULL);
  assert_false(fb->getenv("MIMALLOC_VERBOSE", buf, sizeof(buf)));

  fb->output("one ");
  fb->output("two");
  assert_string_equal(fake_backend_output(), "one two");
  fake_backend_clear_output();
  assert_string_equal(fake_backend_output(), "");

  assert_int_equal(fb->clock_ms(), 0);
  fake_backend_advance_clock(250);
  assert_int_equal(fb->clock_ms(), 250);
  fake_backend_set_clock(10);
  assert_int_equal(fb->clock_ms(), 10);

  uint8_t a[24], b[24];
  assert_true(fb->random_bytes(a, sizeof(a)));
  assert_true(fb->random_bytes(b, sizeof(b)));
  assert_memory_not_equal(a, b, sizeof(a));
  fake_backend_reset(); /* same seed: the same sequence again */
  assert_true(fb->random_bytes(b, sizeof(b)));
  assert_memory_equal(a, b, sizeof(a));
  fake_backend_set_random_fails(true);
  assert_false(fb->random_bytes(b, sizeof(b)));
}

static void* exit_arg;
static int exit_calls;
static void on_exit_fn(void* arg) {
  exit_arg = arg;
  exit_calls++;
}

static void test_fake_records_thread_exit(void** state) {
  (void)state;
  static int token;
  assert_null(fake_backend_thread_exit_fun());
  assert_int_equal(fb->thread_exit_register(on_exit_fn), 0);
  fb->thread_exit_arm(&token);
  assert_ptr_equal(fake_backend_armed_arg(), &token);
  assert_int_equal(fake_backend_arm_calls(), 1);
  assert_int_equal(exit_calls, 0); /* nothing runs by itself */
  fake_backend_run_thread_exit(fake_backend_armed_arg());
  assert_int_equal(exit_calls, 1);
  assert_ptr_equal(exit_arg, &token);
}

static _Atomic(uint32_t) ran;
static void background(void* arg) {
  (void)arg;
  atomic_store(&ran, 1);
  fb->wake_all(&ran);
}

static void test_fake_starts_real_threads(void** state) {
  (void)state;
  atomic_store(&ran, 0);
  assert_int_equal(fb->thread_start(background, NULL), 0);
  for (int i = 0; i < 1000 && atomic_load(&ran) == 0; i++) fb->wait_on(&ran, 0, 10);
  assert_int_equal(atomic_load(&ran), 1);
  assert_int_equal(fake_backend_thread_starts(), 1);
}

int main(void) {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
  const struct CMUnitTest tests[] = {
      T(test_fake_counts_calls_and_tracks_bytes),
      T(test_fake_fails_the_nth_call_with_enomem),
      T(test_fake_detects_leaks_at_teardown),
      T(test_fake_assert_clean_aborts_on_a_leak),
      T(test_fake_reports_zero_only_when_it_zeroed),
      T(test_fake_scribbles_newly_committed_and_reset_memory),
      T(test_fake_uncommitted_memory_faults),
      T(test_fake_decommit_follows_the_configured_platform),
      T(test_fake_honours_try_align_and_unaligned_mode),
      T(test_fake_reservations_never_touch),
      T(test_fake_partial_release_splits_a_reservation),
      T(test_fake_aborts_on_contract_violations),
      T(test_fake_reserve_huge_is_off_unless_enabled),
      T(test_fake_environment_output_clock_and_random),
      T(test_fake_records_thread_exit),
      T(test_fake_starts_real_threads),
  };
  return cmocka_run_group_tests_name("fake_backend", tests, NULL, NULL);
}
