/* Unit test of the arena layer (src/arena/) over the fake backend.
 *
 * Every test builds a fresh lm_arenas_t over fake_backend(): setup resets the fake, the test
 * picks its configuration and calls start(), teardown destroys the context and fails the test
 * when the fake still holds a reservation (a leak). The fake is strict (alignment, ranges,
 * whole-reservation release without has_partial_release, reset only on committed pages), so a
 * contract violation aborts the executable; the tests that probe such a path run it in a forked
 * child and check that the child exited cleanly.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
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

#include "arena/arena.h"
#include "fake_backend.h"

#define SEG LM_SEGMENT_SIZE
#define PAGE ((size_t)4096)

static lm_arenas_t arenas;
static bool arenas_ready;

/* ---- fixtures ------------------------------------------------------------------------------ */

static int setup(void** state) {
  (void)state;
  fake_backend_reset();
  arenas_ready = false;
  return 0;
}

static int teardown(void** state) {
  (void)state;
  if (arenas_ready) lm_arenas_destroy(&arenas);
  arenas_ready = false;
  bool clean = fake_backend_check_clean();
  fake_backend_reset();
  return clean ? 0 : -1; /* a leaked reservation fails the test */
}

/* The configuration most tests start from: small arenas, committed eagerly, no purging. */
static lm_mem_config_t base_config(void) {
  lm_mem_config_t c;
  lm_mem_config_default(&c);
  c.purge_delay_ms = -1;
  c.arena_reserve = 4 * SEG;
  c.arena_eager_commit = 1;
  return c;
}

static void start(const lm_mem_config_t* config) {
  assert_int_equal(lm_arenas_init(&arenas, fake_backend(), config), 0);
  arenas_ready = true;
}

static void set_caps(void (*edit)(lm_backend_caps_t*)) {
  lm_backend_caps_t caps;
  fake_backend_get_caps(&caps);
  edit(&caps);
  fake_backend_set_caps(&caps);
}

static bool all_zero(const void* p, size_t size) {
  const uint64_t* w = p;
  for (size_t i = 0; i < size / sizeof(uint64_t); i++) {
    if (w[i] != 0) return false;
  }
  return true;
}

static size_t arena_count(void) { return atomic_load(&arenas.arena_count); }

/* Run fn() in a forked child (the fake aborts on a contract violation) and return its wait
 * status; the child's stderr is kept so a violation message shows in the test log. */
static int in_child(void (*fn)(void)) {
  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0) {
    struct rlimit no_core = {0, 0};
    setrlimit(RLIMIT_CORE, &no_core);
    signal(SIGABRT, SIG_DFL);
    signal(SIGSEGV, SIG_DFL);
    fn();
    _exit(0);
  }
  int status = 0;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  return status;
}

/* ---- lm_arenas_init: validation of the backend ---------------------------------------------- */

static void test_arenas_init_rejects_backend_without_required_function(void** state) {
  (void)state;
  static const size_t required[] = {
      offsetof(lm_backend_t, init),     offsetof(lm_backend_t, reserve),
      offsetof(lm_backend_t, release),  offsetof(lm_backend_t, commit),
      offsetof(lm_backend_t, decommit), offsetof(lm_backend_t, clock_ms),
      offsetof(lm_backend_t, output),
  };
  for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++) {
    lm_backend_t b = *fake_backend();
    memset((char*)&b + required[i], 0, sizeof(void (*)(void)));
    lm_arenas_t a;
    fake_backend_clear_output();
    assert_int_equal(lm_arenas_init(&a, &b, NULL), EINVAL);
    if (required[i] != offsetof(lm_backend_t, output)) {
      assert_non_null(strstr(fake_backend_output(), "required"));
    }
  }
  lm_arenas_t a;
  assert_int_equal(lm_arenas_init(&a, NULL, NULL), EINVAL);
  assert_int_equal(fake_backend_live_reservations(), 0);
}

static void test_arenas_init_accepts_backend_without_optional_functions(void** state) {
  (void)state;
  static lm_backend_t b; /* the context keeps a pointer to it */
  b = *fake_backend();
  b.reset = NULL;
  b.protect = NULL;
  b.reserve_huge = NULL;
  b.numa_node = NULL;
  b.numa_node_count = NULL;
  b.atfork = NULL;
  lm_mem_config_t c = base_config();
  assert_int_equal(lm_arenas_init(&arenas, &b, &c), 0);
  arenas_ready = true;
  assert_ptr_equal(arenas.backend, &b);
  assert_int_equal(arenas.caps.page_size, fake_backend_imitates_wasm() ? 64 * LM_KiB : PAGE);
  assert_int_equal(arenas.config.arena_reserve, 4 * SEG);
  /* Without reset, a purge decommits. */
  lm_memid_t memid;
  void* p = lm_os_alloc(&arenas, 64 * LM_KiB, true, &memid);
  assert_non_null(p);
  size_t decommits = fake_backend_calls(FAKE_OP_DECOMMIT);
  arenas.config.purge_decommits = false;
  lm_os_purge(&arenas, p, 64 * LM_KiB);
  /* (wasm: no decommit, so a purge asks nothing of the backend) */
  assert_int_equal(fake_backend_calls(FAKE_OP_DECOMMIT),
                   decommits + (arenas.caps.has_decommit ? 1 : 0));
  assert_int_equal(fake_backend_calls(FAKE_OP_RESET), 0);
  lm_os_free(&arenas, p, 64 * LM_KiB, &memid);
}

static lm_backend_caps_t custom_caps;
static void custom_init(lm_backend_caps_t* caps) { *caps = custom_caps; }

static void test_arenas_init_rejects_inconsistent_caps(void** state) {
  (void)state;
  lm_backend_caps_t good;
  fake_backend_get_caps(&good);
  lm_backend_t b = *fake_backend();
  b.init = custom_init;
  lm_arenas_t a;

  custom_caps = good;
  custom_caps.page_size = 3000; /* not a power of two */
  assert_int_equal(lm_arenas_init(&a, &b, NULL), EINVAL);
  custom_caps = good;
  custom_caps.page_size = 0;
  assert_int_equal(lm_arenas_init(&a, &b, NULL), EINVAL);
  custom_caps = good;
  custom_caps.page_size = 16384;
  custom_caps.alloc_granularity = 4096; /* below the page size */
  assert_int_equal(lm_arenas_init(&a, &b, NULL), EINVAL);
  custom_caps = good;
  custom_caps.alloc_granularity = 3 * 4096; /* not a power of two */
  assert_int_equal(lm_arenas_init(&a, &b, NULL), EINVAL);
  custom_caps = good;
  custom_caps.alloc_granularity = 2 * SEG; /* coarser than an arena block */
  assert_int_equal(lm_arenas_init(&a, &b, NULL), EINVAL);
  assert_non_null(strstr(fake_backend_output(), "inconsistent"));

  /* has_threads needs thread_start, wait_on and wake_all. */
  custom_caps = good;
  custom_caps.has_threads = true;
  lm_backend_t t = b;
  t.thread_start = NULL;
  assert_int_equal(lm_arenas_init(&a, &t, NULL), EINVAL);
  t = b;
  t.wait_on = NULL;
  assert_int_equal(lm_arenas_init(&a, &t, NULL), EINVAL);
  t = b;
  t.wake_all = NULL;
  assert_int_equal(lm_arenas_init(&a, &t, NULL), EINVAL);
  /* ... but not without threads. */
  custom_caps.has_threads = false;
  assert_int_equal(lm_arenas_init(&a, &t, NULL), 0);
  lm_arenas_destroy(&a);

  /* The fake itself can declare a granularity the arenas cannot use. */
  custom_caps = good;
  custom_caps.alloc_granularity = 64 * LM_MiB;
  fake_backend_set_caps(&custom_caps);
  assert_int_equal(lm_arenas_init(&a, fake_backend(), NULL), EINVAL);

  /* A consistent unusual record is taken as is. */
  custom_caps = good;
  custom_caps.page_size = 16384;
  custom_caps.alloc_granularity = 64 * LM_KiB;
  assert_int_equal(lm_arenas_init(&a, &b, NULL), 0);
  assert_int_equal(a.caps.page_size, 16384);
  assert_int_equal(a.caps.alloc_granularity, 64 * LM_KiB);
  lm_arenas_destroy(&a);
  assert_int_equal(fake_backend_live_reservations(), 0);
}

/* ---- lm_os_alloc_aligned --------------------------------------------------------------------- */

static const size_t alignments[] = {0, 8, 4096, 64 * LM_KiB, 2 * LM_MiB, 32 * LM_MiB, 256 * LM_MiB};
static const size_t sizes[] = {4096, 100000, 3 * LM_MiB};

static void check_os_alloc(size_t size, size_t align, size_t offset, bool commit) {
  lm_memid_t memid;
  uint8_t* p = lm_os_alloc_aligned(&arenas, size, align, offset, commit, &memid);
  assert_non_null(p);
  assert_int_equal(memid.kind, LM_MEM_OS);
  if (align > 1) assert_int_equal(((uintptr_t)p + offset) % align, 0);
  assert_int_equal((uintptr_t)p % PAGE, 0);
  assert_true(fake_backend_is_reserved(p, size));
  assert_true((uint8_t*)memid.os_base <= p);
  assert_true(p + size <= (uint8_t*)memid.os_base + memid.os_size);
  /* Without virtual reservations (wasm) every reservation comes back committed. */
  if (!arenas.caps.has_virtual_reserve) commit = true;
  assert_int_equal(memid.initially_committed, commit);
  if (commit) {
    assert_true(fake_backend_is_committed(p, size));
    if (memid.initially_zero) assert_true(all_zero(p, size));
    p[0] = 1;
    p[size - 1] = 2;
  }
  lm_os_free(&arenas, p, size, &memid);
  assert_int_equal(fake_backend_live_reservations(), 0);
}

static void check_all_alignments(void) {
  for (size_t a = 0; a < sizeof(alignments) / sizeof(alignments[0]); a++) {
    for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
      check_os_alloc(sizes[s], alignments[a], 0, true);
      check_os_alloc(sizes[s], alignments[a], 0, false);
    }
  }
  /* An offset: p + offset is aligned (what huge aligned segments ask for). */
  check_os_alloc(LM_MiB, 64 * LM_MiB, 32 * LM_MiB, true);
  check_os_alloc(33 * LM_MiB, 64 * LM_MiB, 32 * LM_MiB, false);
}

static void test_os_alloc_aligned_returns_aligned_memory(void** state) {
  (void)state;
  lm_mem_config_t c = base_config();
  start(&c);
  check_all_alignments();
  assert_int_equal(lm_load_relaxed(&arenas.stats.reserved.current), 0);
}

static void test_os_alloc_aligned_overallocates_when_backend_ignores_alignment(void** state) {
  (void)state;
  /* the trim needs partial release */
  if (fake_backend_imitates_windows() || fake_backend_imitates_wasm()) skip();
  lm_mem_config_t c = base_config();
  start(&c);
  fake_backend_set_unaligned(true);
  check_all_alignments();
  /* The over-allocation path: a first misaligned try, then a larger reservation trimmed to
   * exactly the aligned part. */
  size_t calls = fake_backend_calls(FAKE_OP_RESERVE);
  lm_memid_t memid;
  uint8_t* p = lm_os_alloc_aligned(&arenas, LM_MiB, 32 * LM_MiB, 0, true, &memid);
  assert_non_null(p);
  assert_int_equal((uintptr_t)p % (32 * LM_MiB), 0);
  assert_int_equal(fake_backend_calls(FAKE_OP_RESERVE), calls + 2);
  assert_int_equal(fake_backend_live_reservations(), 1);
  assert_int_equal(fake_backend_reserved_bytes(), LM_MiB);
  assert_ptr_equal(memid.os_base, p);
  assert_int_equal(memid.os_size, LM_MiB);
  lm_os_free(&arenas, p, LM_MiB, &memid);
}

static void no_partial_release(lm_backend_caps_t* caps) { caps->has_partial_release = false; }

static void test_os_alloc_aligned_without_partial_release_releases_whole_reservation(void** state) {
  (void)state;
  set_caps(no_partial_release);
  lm_mem_config_t c = base_config();
  start(&c);
  assert_false(arenas.caps.has_partial_release);
  fake_backend_set_unaligned(true); /* forces over-allocation; the fake rejects partial release */
  check_all_alignments();
  lm_memid_t memid;
  uint8_t* p = lm_os_alloc_aligned(&arenas, LM_MiB, 32 * LM_MiB, 0, true, &memid);
  assert_non_null(p);
  assert_int_equal((uintptr_t)p % (32 * LM_MiB), 0);
  /* Nothing was trimmed: the memid holds the whole over-allocated reservation. */
  assert_true(memid.os_size > LM_MiB);
  assert_true((uint8_t*)memid.os_base < p);
  assert_int_equal(fake_backend_reserved_bytes(), memid.os_size);
  assert_int_equal(fake_backend_live_reservations(), 1);
  lm_os_free(&arenas, p, LM_MiB, &memid); /* the fake aborts unless this is the whole */
  assert_int_equal(fake_backend_live_reservations(), 0);
  /* Arenas work the same way. */
  void* q = lm_arena_alloc(&arenas, SEG, SEG, 0, true, 0, &memid);
  assert_non_null(q);
  assert_int_equal((uintptr_t)q % SEG, 0);
  lm_arena_free(&arenas, q, SEG, &memid);
}

static void test_os_alloc_rejects_bad_arguments(void** state) {
  (void)state;
  lm_mem_config_t c = base_config();
  start(&c);
  lm_memid_t memid = {.kind = LM_MEM_ARENA};
  assert_null(lm_os_alloc_aligned(&arenas, 0, 0, 0, true, &memid));
  assert_int_equal(memid.kind, LM_MEM_NONE);
  assert_null(lm_os_alloc_aligned(&arenas, PAGE, 3 * PAGE, 0, true, &memid));
  assert_int_equal(memid.kind, LM_MEM_NONE);
  assert_int_equal(fake_backend_live_reservations(), 0);
}

static void no_virtual_reserve(lm_backend_caps_t* caps) {
  caps->has_virtual_reserve = false;
  caps->has_decommit = false;
}

/* Without virtual reservations (wasm) a reservation is memory the program keeps: an automatic
 * arena is as big as the request that makes it, never arena_reserve ahead. */
static void test_arena_without_virtual_reserve_reserves_only_what_is_asked(void** state) {
  (void)state;
  set_caps(no_virtual_reserve);
  lm_mem_config_t c = base_config(); /* arena_reserve: 4 segments */
  c.arena_eager_commit = 0;
  start(&c);
  lm_memid_t m[2];
  void* p0 = lm_arena_alloc(&arenas, SEG, SEG, 0, false, 0, &m[0]);
  assert_non_null(p0);
  size_t size = 0;
  assert_non_null(lm_arena_area(&arenas, (int)m[0].arena_index + 1, &size));
  assert_int_equal(size, SEG);
  assert_true(m[0].initially_committed); /* reserved memory is committed memory */
  void* p1 = lm_arena_alloc(&arenas, 2 * SEG, SEG, 0, false, 0, &m[1]);
  assert_non_null(p1);
  assert_int_equal(arena_count(), 2);
  assert_non_null(lm_arena_area(&arenas, (int)m[1].arena_index + 1, &size));
  assert_int_equal(size, 2 * SEG);
  /* three segments and the two arenas' metadata: not the eight of two 4-segment arenas */
  assert_true(fake_backend_reserved_bytes() < 3 * SEG + LM_MiB);
  lm_arena_free(&arenas, p1, 2 * SEG, &m[1]);
  lm_arena_free(&arenas, p0, SEG, &m[0]);
}

/* ---- lm_arena_alloc -------------------------------------------------------------------------- */

static void test_arena_alloc_serves_segments_from_an_arena(void** state) {
  (void)state;
  if (fake_backend_imitates_wasm()) skip(); /* one arena for all: wasm arenas are as big as asked */
  lm_mem_config_t c = base_config();
  start(&c);
  void* p[4];
  lm_memid_t m[4];
  for (size_t i = 0; i < 4; i++) {
    p[i] = lm_arena_alloc(&arenas, SEG, SEG, 0, true, 0, &m[i]);
    assert_non_null(p[i]);
    assert_int_equal(m[i].kind, LM_MEM_ARENA);
    assert_int_equal(m[i].arena_index, 0);
    assert_int_equal(m[i].block_count, 1);
    assert_int_equal((uintptr_t)p[i] % SEG, 0);
    assert_true(lm_arenas_contain(&arenas, p[i]));
    assert_true(lm_arenas_contain(&arenas, (uint8_t*)p[i] + SEG - 1));
    assert_true(fake_backend_is_committed(p[i], SEG));
    assert_true(m[i].initially_committed);
    assert_true(m[i].initially_zero); /* fresh reservation, never handed out */
    for (size_t j = 0; j < i; j++) {
      assert_ptr_not_equal(p[i], p[j]);
      assert_int_not_equal(m[i].block_index, m[j].block_index);
    }
    ((uint8_t*)p[i])[0] = 1;
    ((uint8_t*)p[i])[SEG - 1] = 1;
  }
  /* One arena (its range plus its metadata) serves them all. */
  assert_int_equal(arena_count(), 1);
  assert_int_equal(fake_backend_live_reservations(), 2);
  assert_false(lm_arenas_contain(&arenas, (uint8_t*)p[0] + 8 * SEG));

  /* A freed block is handed out again, now known dirty. */
  lm_arena_free(&arenas, p[2], SEG, &m[2]);
  lm_memid_t again;
  void* q = lm_arena_alloc(&arenas, SEG, SEG, 0, true, 0, &again);
  assert_ptr_equal(q, p[2]);
  assert_int_equal(again.block_index, m[2].block_index);
  assert_false(again.initially_zero);
  assert_int_equal(arena_count(), 1);
  m[2] = again;

  /* Full now: the next block comes from a new arena. */
  lm_memid_t extra;
  void* e = lm_arena_alloc(&arenas, SEG, SEG, 0, true, 0, &extra);
  assert_non_null(e);
  assert_int_equal(extra.kind, LM_MEM_ARENA);
  assert_int_equal(extra.arena_index, 1);
  assert_int_equal(arena_count(), 2);
  lm_arena_free(&arenas, e, SEG, &extra);
  for (size_t i = 0; i < 4; i++) lm_arena_free(&arenas, p[i], SEG, &m[i]);
}

static void test_arena_alloc_larger_than_an_arena(void** state) {
  (void)state;
  lm_mem_config_t c = base_config();
  c.arena_reserve = 2 * SEG;
  start(&c);
  lm_memid_t m1, m3;
  void* one = lm_arena_alloc(&arenas, SEG, SEG, 0, true, 0, &m1);
  assert_non_null(one);
  uint8_t* big = lm_arena_alloc(&arenas, 3 * SEG, SEG, 0, true, 0, &m3);
  assert_non_null(big);
  assert_int_equal((uintptr_t)big % SEG, 0);
  assert_true(m3.kind == LM_MEM_ARENA || m3.kind == LM_MEM_OS);
  if (m3.kind == LM_MEM_ARENA) assert_int_equal(m3.block_count, 3);
  assert_true(fake_backend_is_reserved(big, 3 * SEG));
  assert_true(fake_backend_is_committed(big, 3 * SEG));
  assert_true(big + 3 * SEG <= (uint8_t*)one || (uint8_t*)one + SEG <= big);
  big[0] = 1;
  big[3 * SEG - 1] = 1;
  lm_arena_free(&arenas, big, 3 * SEG, &m3);

  /* Sizes below half a block are not worth an arena block: they go to the OS. */
  lm_memid_t ms;
  void* small = lm_arena_alloc(&arenas, LM_MiB, PAGE, 0, true, 0, &ms);
  assert_non_null(small);
  assert_int_equal(ms.kind, LM_MEM_OS);
  lm_arena_free(&arenas, small, LM_MiB, &ms);
  /* From half a block on, they take a whole block. */
  void* half = lm_arena_alloc(&arenas, SEG / 2 + PAGE, SEG, 0, true, 0, &ms);
  assert_non_null(half);
  assert_int_equal(ms.kind, LM_MEM_ARENA);
  lm_arena_free(&arenas, half, SEG / 2 + PAGE, &ms);
  lm_arena_free(&arenas, one, SEG, &m1);
}

static void test_arena_alloc_rejects_zero_size(void** state) {
  (void)state;
  lm_mem_config_t c = base_config();
  start(&c);
  lm_memid_t m = {.kind = LM_MEM_OS};
  assert_null(lm_arena_alloc(&arenas, 0, SEG, 0, true, 0, &m));
  assert_int_equal(m.kind, LM_MEM_NONE);
  lm_arena_free(&arenas, NULL, SEG, &m); /* harmless */
}

/* ---- purging --------------------------------------------------------------------------------- */

static void test_arena_free_purges_at_once_with_zero_delay(void** state) {
  (void)state;
  if (fake_backend_imitates_wasm()) skip(); /* no decommit, so no purge */
  lm_mem_config_t c = base_config();
  c.purge_delay_ms = 0;
  start(&c);
  lm_memid_t m;
  uint8_t* p = lm_arena_alloc(&arenas, SEG, SEG, 0, true, 0, &m);
  assert_non_null(p);
  memset(p, 0x5a, 2 * PAGE);
  size_t decommits = fake_backend_calls(FAKE_OP_DECOMMIT);
  lm_arena_free(&arenas, p, SEG, &m);
  assert_int_equal(fake_backend_calls(FAKE_OP_DECOMMIT), decommits + 1);
  assert_false(fake_backend_is_committed(p, PAGE));
  assert_true(lm_load_relaxed(&arenas.stats.purged) >= (int64_t)SEG);
  assert_int_equal(lm_arenas_purge_deadline(&arenas), 0);
  assert_false(lm_arenas_try_purge(&arenas, false));
}

/* Arenas with a 100 ms arena purge delay (10 ms x 10), two blocks taken and written, and the
 * count of decommits before any purge. */
typedef struct two_blocks_s {
  uint8_t *a, *b;
  lm_memid_t ma, mb;
  size_t decommits;
} two_blocks_t;

static two_blocks_t start_with_two_blocks(void) {
  lm_mem_config_t c = base_config();
  c.purge_delay_ms = 10;
  c.arena_purge_mult = 10;
  start(&c);
  two_blocks_t t;
  t.a = lm_arena_alloc(&arenas, SEG, SEG, 0, true, 0, &t.ma);
  t.b = lm_arena_alloc(&arenas, SEG, SEG, 0, true, 0, &t.mb);
  assert_non_null(t.a);
  assert_non_null(t.b);
  t.a[0] = t.b[0] = 1;
  t.decommits = fake_backend_calls(FAKE_OP_DECOMMIT);
  return t;
}

static void test_arena_free_purges_only_after_the_delay(void** state) {
  (void)state;
  if (fake_backend_imitates_wasm()) skip(); /* no decommit, so no purge */
  two_blocks_t t = start_with_two_blocks();
  lm_arena_free(&arenas, t.a, SEG, &t.ma);
  assert_int_equal(fake_backend_calls(FAKE_OP_DECOMMIT), t.decommits);
  assert_int_equal(lm_arenas_purge_deadline(&arenas), 100);
  assert_true(fake_backend_is_committed(t.a, SEG));

  fake_backend_set_clock(99);
  assert_true(lm_arenas_try_purge(&arenas, false)); /* still pending */
  assert_int_equal(fake_backend_calls(FAKE_OP_DECOMMIT), t.decommits);
  assert_true(fake_backend_is_committed(t.a, SEG));

  fake_backend_set_clock(101);
  assert_false(lm_arenas_try_purge(&arenas, false)); /* done, nothing left */
  assert_int_equal(fake_backend_calls(FAKE_OP_DECOMMIT), t.decommits + 1);
  assert_false(fake_backend_is_committed(t.a, PAGE));
  assert_true(fake_backend_is_committed(t.b, SEG)); /* in use: untouched */
  assert_int_equal(lm_arenas_purge_deadline(&arenas), 0);

  /* force purges what is pending at once. */
  lm_arena_free(&arenas, t.b, SEG, &t.mb);
  assert_int_equal(lm_arenas_purge_deadline(&arenas), 201);
  assert_false(lm_arenas_try_purge(&arenas, true));
  assert_int_equal(fake_backend_calls(FAKE_OP_DECOMMIT), t.decommits + 2);
  assert_false(fake_backend_is_committed(t.b, PAGE));
}

/* Each block waits its own delay: one freed later is not purged with the first. */
static void test_arena_blocks_freed_later_wait_their_own_delay(void** state) {
  (void)state;
  if (fake_backend_imitates_wasm()) skip(); /* no decommit, so no purge */
  two_blocks_t t = start_with_two_blocks();
  lm_arena_free(&arenas, t.a, SEG, &t.ma); /* due at 100 */
  fake_backend_set_clock(60);
  lm_arena_free(&arenas, t.b, SEG, &t.mb); /* due at 160 */
  assert_int_equal(lm_arenas_purge_deadline(&arenas), 100);

  fake_backend_set_clock(101);
  assert_true(lm_arenas_try_purge(&arenas, false)); /* b still pending */
  assert_int_equal(fake_backend_calls(FAKE_OP_DECOMMIT), t.decommits + 1);
  assert_false(fake_backend_is_committed(t.a, PAGE));
  assert_true(fake_backend_is_committed(t.b, SEG));
  assert_int_equal(lm_arenas_purge_deadline(&arenas), 160);

  fake_backend_set_clock(161);
  assert_false(lm_arenas_try_purge(&arenas, false));
  assert_int_equal(fake_backend_calls(FAKE_OP_DECOMMIT), t.decommits + 2);
  assert_false(fake_backend_is_committed(t.b, PAGE));
  assert_int_equal(lm_arenas_purge_deadline(&arenas), 0);
}

static void test_arena_realloc_cancels_a_pending_purge(void** state) {
  (void)state;
  lm_mem_config_t c = base_config();
  c.purge_delay_ms = 10;
  c.arena_reserve = SEG; /* one block: a realloc must land on it */
  start(&c);
  lm_memid_t m;
  uint8_t* p = lm_arena_alloc(&arenas, SEG, SEG, 0, true, 0, &m);
  assert_non_null(p);
  lm_arena_free(&arenas, p, SEG, &m);
  uint8_t* q = lm_arena_alloc(&arenas, SEG, SEG, 0, true, 0, &m);
  assert_ptr_equal(q, p);
  memset(q, 0x77, PAGE);
  size_t decommits = fake_backend_calls(FAKE_OP_DECOMMIT);
  fake_backend_set_clock(100000);
  lm_arenas_try_purge(&arenas, false);
  lm_arenas_try_purge(&arenas, true);
  assert_int_equal(fake_backend_calls(FAKE_OP_DECOMMIT), decommits);
  assert_true(fake_backend_is_committed(q, SEG));
  assert_int_equal(q[PAGE - 1], 0x77);
  lm_arena_free(&arenas, q, SEG, &m);
}

static void test_arena_purged_block_is_recommitted_when_reallocated(void** state) {
  (void)state;
  if (fake_backend_imitates_wasm()) skip(); /* no decommit, so no purge */
  fake_backend_set_needs_recommit(true); /* Windows-like: decommitted memory is inaccessible */
  lm_mem_config_t c = base_config();
  c.purge_delay_ms = 0;
  c.arena_reserve = SEG;
  start(&c);
  lm_memid_t m;
  uint8_t* p = lm_arena_alloc(&arenas, SEG, SEG, 0, true, 0, &m);
  assert_non_null(p);
  memset(p, 1, PAGE);
  int64_t committed = lm_load_relaxed(&arenas.stats.committed.current);
  lm_arena_free(&arenas, p, SEG, &m);
  assert_false(fake_backend_is_committed(p, PAGE));
  assert_int_equal(lm_load_relaxed(&arenas.stats.committed.current), committed - (int64_t)SEG);

  size_t commits = fake_backend_calls(FAKE_OP_COMMIT);
  uint8_t* q = lm_arena_alloc(&arenas, SEG, SEG, 0, true, 0, &m);
  assert_ptr_equal(q, p);
  assert_int_equal(fake_backend_calls(FAKE_OP_COMMIT), commits + 1);
  assert_true(m.initially_committed);
  assert_false(m.initially_zero); /* it was handed out before */
  assert_true(fake_backend_is_committed(q, SEG));
  q[0] = 2;
  q[SEG - 1] = 2; /* would fault if it were not committed */
  lm_arena_free(&arenas, q, SEG, &m);

  /* Asked without commit, the block comes back uncommitted and says so. */
  uint8_t* r = lm_arena_alloc(&arenas, SEG, SEG, 0, false, 0, &m);
  assert_ptr_equal(r, p);
  assert_false(m.initially_committed);
  assert_false(fake_backend_is_committed(r, PAGE));
  lm_arena_free(&arenas, r, SEG, &m);
}

/* ---- block flags ----------------------------------------------------------------------------- */

static void test_arena_flags_set_clear_find_and_count(void** state) {
  (void)state;
  lm_mem_config_t c = base_config();
  start(&c);
  lm_memid_t ma, mb;
  uint8_t* a = lm_arena_alloc(&arenas, SEG, SEG, 0, true, 0, &ma);
  uint8_t* b = lm_arena_alloc(&arenas, SEG, SEG, 0, true, 0, &mb);
  assert_non_null(a);
  assert_non_null(b);
  if (b < a) { /* keep a before b for the find order below */
    uint8_t* t = a;
    a = b;
    b = t;
    lm_memid_t tm = ma;
    ma = mb;
    mb = tm;
  }
  assert_int_equal(lm_arena_flag_count(&arenas, LM_BLOCK_ABANDONED), 0);
  assert_false(lm_arena_flag_is_set(&arenas, a, LM_BLOCK_ABANDONED));
  assert_true(lm_arena_flag_set(&arenas, a, LM_BLOCK_ABANDONED));
  assert_true(lm_arena_flag_is_set(&arenas, a, LM_BLOCK_ABANDONED));
  assert_false(lm_arena_flag_is_set(&arenas, a, LM_BLOCK_PURGE_PENDING)); /* per kind */
  assert_false(lm_arena_flag_is_set(&arenas, b, LM_BLOCK_ABANDONED));
  assert_true(lm_arena_flag_set(&arenas, b, LM_BLOCK_ABANDONED));
  assert_true(lm_arena_flag_set(&arenas, b, LM_BLOCK_PURGE_PENDING));
  assert_int_equal(lm_arena_flag_count(&arenas, LM_BLOCK_ABANDONED), 2);
  assert_int_equal(lm_arena_flag_count(&arenas, LM_BLOCK_PURGE_PENDING), 1);

  lm_arena_cursor_t cursor = LM_ARENA_CURSOR_START;
  assert_ptr_equal(lm_arena_flag_find_next(&arenas, LM_BLOCK_ABANDONED, &cursor), a);
  assert_ptr_equal(lm_arena_flag_find_next(&arenas, LM_BLOCK_ABANDONED, &cursor), b);
  assert_null(lm_arena_flag_find_next(&arenas, LM_BLOCK_ABANDONED, &cursor));
  cursor = LM_ARENA_CURSOR_START;
  assert_ptr_equal(lm_arena_flag_find_next(&arenas, LM_BLOCK_PURGE_PENDING, &cursor), b);
  assert_null(lm_arena_flag_find_next(&arenas, LM_BLOCK_PURGE_PENDING, &cursor));
  cursor = LM_ARENA_CURSOR_START;
  assert_null(lm_arena_flag_find_next(&arenas, LM_BLOCK_PURGER_BUSY, &cursor));

  /* Clearing is a claim: exactly one clear of a set flag succeeds. */
  assert_true(lm_arena_flag_clear(&arenas, a, LM_BLOCK_ABANDONED));
  assert_false(lm_arena_flag_clear(&arenas, a, LM_BLOCK_ABANDONED));
  assert_int_equal(lm_arena_flag_count(&arenas, LM_BLOCK_ABANDONED), 1);
  cursor = LM_ARENA_CURSOR_START;
  assert_ptr_equal(lm_arena_flag_find_next(&arenas, LM_BLOCK_ABANDONED, &cursor), b);

  /* Memory outside arenas has no flags. */
  lm_memid_t mo;
  void* o = lm_os_alloc(&arenas, 64 * LM_KiB, true, &mo);
  assert_non_null(o);
  assert_false(lm_arena_flag_set(&arenas, o, LM_BLOCK_ABANDONED));
  assert_false(lm_arena_flag_is_set(&arenas, o, LM_BLOCK_ABANDONED));
  assert_false(lm_arena_flag_clear(&arenas, o, LM_BLOCK_ABANDONED));
  lm_os_free(&arenas, o, 64 * LM_KiB, &mo);

  /* Freeing a block clears its abandoned and purge-pending marks. */
  lm_arena_free(&arenas, b, SEG, &mb);
  assert_int_equal(lm_arena_flag_count(&arenas, LM_BLOCK_ABANDONED), 0);
  assert_int_equal(lm_arena_flag_count(&arenas, LM_BLOCK_PURGE_PENDING), 0);
  lm_arena_free(&arenas, a, SEG, &ma);
}

/* ---- explicitly reserved arenas -------------------------------------------------------------- */

static void test_arena_reserve_exclusive_is_used_only_with_its_id(void** state) {
  (void)state;
  lm_mem_config_t c = base_config();
  c.arena_reserve = 2 * SEG;
  start(&c);
  int id = 0;
  assert_int_equal(lm_arena_reserve(&arenas, 2 * SEG, true, true, &id), 0);
  assert_true(id > 0);
  assert_int_equal(arena_count(), 1);

  /* A plain request does not touch the exclusive arena. */
  lm_memid_t m0;
  void* p0 = lm_arena_alloc(&arenas, SEG, SEG, 0, true, 0, &m0);
  assert_non_null(p0);
  assert_int_equal(m0.kind, LM_MEM_ARENA);
  assert_int_not_equal((int)m0.arena_index + 1, id);
  assert_int_equal(arena_count(), 2);

  /* Requests with the id are served from it, and only from it. */
  lm_memid_t m1, m2, m3;
  void* p1 = lm_arena_alloc(&arenas, SEG, SEG, 0, true, id, &m1);
  void* p2 = lm_arena_alloc(&arenas, SEG, SEG, 0, true, id, &m2);
  assert_non_null(p1);
  assert_non_null(p2);
  assert_int_equal((int)m1.arena_index + 1, id);
  assert_int_equal((int)m2.arena_index + 1, id);
  size_t live = fake_backend_live_reservations();
  assert_null(lm_arena_alloc(&arenas, SEG, SEG, 0, true, id, &m3)); /* full: no fallback */
  assert_int_equal(m3.kind, LM_MEM_NONE);
  assert_int_equal(fake_backend_live_reservations(), live);
  assert_int_equal(arena_count(), 2);
  lm_arena_free(&arenas, p1, SEG, &m1);
  p1 = lm_arena_alloc(&arenas, SEG, SEG, 0, true, id, &m1);
  assert_non_null(p1);
  assert_int_equal((int)m1.arena_index + 1, id);
  lm_arena_free(&arenas, p0, SEG, &m0);
  lm_arena_free(&arenas, p1, SEG, &m1);
  lm_arena_free(&arenas, p2, SEG, &m2);
}

static void test_arena_reserve_shared_serves_plain_requests(void** state) {
  (void)state;
  lm_mem_config_t c = base_config();
  c.arena_reserve = 0; /* no automatic arenas */
  start(&c);
  lm_memid_t m;
  void* os = lm_arena_alloc(&arenas, SEG, SEG, 0, true, 0, &m); /* no arena yet: the OS */
  assert_non_null(os);
  assert_int_equal(m.kind, LM_MEM_OS);
  assert_int_equal((uintptr_t)os % SEG, 0);
  lm_arena_free(&arenas, os, SEG, &m);
  assert_int_equal(fake_backend_live_reservations(), 0);

  int id = 0;
  assert_int_equal(lm_arena_reserve(&arenas, SEG + 1, false, false, &id), 0); /* rounded up */
  assert_int_equal(id, 1);
  void* p = lm_arena_alloc(&arenas, SEG, SEG, 0, true, 0, &m);
  assert_non_null(p);
  assert_int_equal(m.kind, LM_MEM_ARENA);
  assert_int_equal(m.arena_index, 0);
  lm_memid_t m2;
  void* p2 = lm_arena_alloc(&arenas, SEG, SEG, 0, true, 0, &m2);
  assert_non_null(p2);
  assert_int_equal(m2.kind, LM_MEM_ARENA);
  lm_memid_t m3;
  void* p3 = lm_arena_alloc(&arenas, SEG, SEG, 0, true, 0, &m3); /* full: the OS again */
  assert_non_null(p3);
  assert_int_equal(m3.kind, LM_MEM_OS);
  lm_arena_free(&arenas, p3, SEG, &m3);
  lm_arena_free(&arenas, p2, SEG, &m2);
  lm_arena_free(&arenas, p, SEG, &m);

  /* With OS allocation disallowed, a full arena means NULL. */
  arenas.config.disallow_os_alloc = true;
  p = lm_arena_alloc(&arenas, 2 * SEG, SEG, 0, true, 0, &m);
  assert_non_null(p);
  assert_null(lm_arena_alloc(&arenas, SEG, SEG, 0, true, 0, &m2));
  assert_int_equal(m2.kind, LM_MEM_NONE);
  lm_arena_free(&arenas, p, 2 * SEG, &m);
}

/* ---- bitmap runs across 64-bit fields -------------------------------------------------------- */

static void test_arena_runs_crossing_bitmap_fields_claim_and_release(void** state) {
  (void)state;
  if (LM_INTPTR_BITS == 32) skip(); /* 80 segments (2.5 GiB) do not fit the fake's buffer there */
  lm_mem_config_t c = base_config();
  c.arena_eager_commit = 0;
  start(&c);
  enum { BLOCKS = 80 };
  int id = 0;
  /* Address space only: nothing is committed, so 80 blocks cost nothing. */
  assert_int_equal(lm_arena_reserve(&arenas, BLOCKS * SEG, false, true, &id), 0);
  static uint8_t* p[BLOCKS];
  static lm_memid_t m[BLOCKS];
  for (size_t i = 0; i < BLOCKS; i++) {
    p[i] = lm_arena_alloc(&arenas, SEG, SEG, 0, false, id, &m[i]);
    assert_non_null(p[i]);
    assert_int_equal(m[i].block_index, i); /* first fit from the start */
    if (i > 0) assert_ptr_equal(p[i], p[i - 1] + SEG);
  }
  uint8_t* base = p[0];
  lm_memid_t mr, mx;
  assert_null(lm_arena_alloc(&arenas, SEG, SEG, 0, false, id, &mx));

  /* Free 61..66 (across the field boundary at 64): the only room for a run of 6. */
  for (size_t i = 61; i <= 66; i++) lm_arena_free(&arenas, p[i], SEG, &m[i]);
  assert_null(lm_arena_alloc(&arenas, 7 * SEG, SEG, 0, false, id, &mx));
  uint8_t* run = lm_arena_alloc(&arenas, 6 * SEG, SEG, 0, false, id, &mr);
  assert_ptr_equal(run, base + 61 * SEG);
  assert_int_equal(mr.block_index, 61);
  assert_int_equal(mr.block_count, 6);
  assert_null(lm_arena_alloc(&arenas, SEG, SEG, 0, false, id, &mx)); /* all six taken */

  /* Releasing the run frees all six blocks, in both fields. */
  lm_arena_free(&arenas, run, 6 * SEG, &mr);
  run = lm_arena_alloc(&arenas, 3 * SEG, SEG, 0, false, id, &mr);
  assert_ptr_equal(run, base + 61 * SEG);
  lm_memid_t mr2;
  uint8_t* run2 = lm_arena_alloc(&arenas, 3 * SEG, SEG, 0, false, id, &mr2);
  assert_ptr_equal(run2, base + 64 * SEG);
  lm_arena_free(&arenas, run, 3 * SEG, &mr);
  lm_arena_free(&arenas, run2, 3 * SEG, &mr2);
  for (size_t i = 0; i < BLOCKS; i++) {
    if (i < 61 || i > 66) lm_arena_free(&arenas, p[i], SEG, &m[i]);
  }

  /* Long runs: 70 of 80, then the 10 left, then nothing. */
  run = lm_arena_alloc(&arenas, 70 * SEG, SEG, 0, false, id, &mr);
  assert_non_null(run);
  assert_int_equal(mr.block_count, 70);
  assert_null(lm_arena_alloc(&arenas, 11 * SEG, SEG, 0, false, id, &mx));
  run2 = lm_arena_alloc(&arenas, 10 * SEG, SEG, 0, false, id, &mr2);
  assert_non_null(run2);
  assert_true(run2 + 10 * SEG <= run || run + 70 * SEG <= run2);
  assert_null(lm_arena_alloc(&arenas, SEG, SEG, 0, false, id, &mx));
  lm_arena_free(&arenas, run, 70 * SEG, &mr);
  lm_arena_free(&arenas, run2, 10 * SEG, &mr2);
  run = lm_arena_alloc(&arenas, BLOCKS * SEG, SEG, 0, false, id, &mr); /* all free again */
  assert_ptr_equal(run, base);
  lm_arena_free(&arenas, run, BLOCKS * SEG, &mr);
}

/* ---- fault injection ------------------------------------------------------------------------- */

static void test_arena_alloc_fails_cleanly_when_reserve_fails(void** state) {
  (void)state;
  lm_mem_config_t c = base_config();
  start(&c);
  fake_backend_fail_always(FAKE_OP_RESERVE, true);
  lm_memid_t m = {.kind = LM_MEM_ARENA};
  assert_null(lm_arena_alloc(&arenas, SEG, SEG, 0, true, 0, &m));
  assert_int_equal(m.kind, LM_MEM_NONE);
  assert_null(lm_arena_alloc(&arenas, LM_MiB, 0, 0, true, 0, &m));
  assert_int_equal(m.kind, LM_MEM_NONE);
  assert_null(lm_os_alloc_aligned(&arenas, LM_MiB, 32 * LM_MiB, 0, true, &m));
  assert_int_equal(m.kind, LM_MEM_NONE);
  int id = 7;
  assert_int_equal(lm_arena_reserve(&arenas, 2 * SEG, true, false, &id), ENOMEM);
  assert_int_equal(id, 0);
  assert_true(fake_backend_failures(FAKE_OP_RESERVE) > 0);
  assert_int_equal(fake_backend_live_reservations(), 0);
  assert_int_equal(arena_count(), 0);
  assert_int_equal(lm_load_relaxed(&arenas.stats.reserved.current), 0);
  fake_backend_fail_always(FAKE_OP_RESERVE, false);
  void* p = lm_arena_alloc(&arenas, SEG, SEG, 0, true, 0, &m);
  assert_non_null(p);
  assert_int_equal(m.kind, LM_MEM_ARENA);
  lm_arena_free(&arenas, p, SEG, &m);
}

static void test_arena_reserve_fails_cleanly_when_metadata_reserve_fails(void** state) {
  (void)state;
  lm_mem_config_t c = base_config();
  start(&c);
  fake_backend_fail_nth(FAKE_OP_RESERVE, 2); /* the range succeeds, its metadata does not */
  int id = 7;
  assert_int_equal(lm_arena_reserve(&arenas, 2 * SEG, true, false, &id), ENOMEM);
  assert_int_equal(id, 0);
  assert_int_equal(fake_backend_failures(FAKE_OP_RESERVE), 1);
  assert_int_equal(fake_backend_live_reservations(), 0);
  assert_int_equal(arena_count(), 0);
  assert_int_equal(lm_arena_reserve(&arenas, 2 * SEG, true, false, &id), 0);
  assert_int_equal(id, 1);
}

static void test_arena_alloc_fails_cleanly_when_commit_fails(void** state) {
  (void)state;
  if (fake_backend_imitates_wasm()) skip(); /* committed at reserve: no commit */
  /* The fake's default caps have no overcommit: arena_eager_commit 2 reserves lazily. */
  lm_mem_config_t c = base_config();
  c.arena_eager_commit = 2;
  c.disallow_os_alloc = true; /* no OS fallback to hide the failure */
  start(&c);
  assert_false(arenas.caps.has_overcommit);
  /* One block: a failed claim that leaked it would leave nothing for the next request. */
  assert_int_equal(lm_arena_reserve(&arenas, SEG, false, false, NULL), 0);
  size_t live = fake_backend_live_reservations();
  fake_backend_fail_nth(FAKE_OP_COMMIT, 1);
  lm_memid_t m = {.kind = LM_MEM_OS};
  assert_null(lm_arena_alloc(&arenas, SEG, SEG, 0, true, 0, &m));
  assert_int_equal(m.kind, LM_MEM_NONE);
  assert_int_equal(fake_backend_failures(FAKE_OP_COMMIT), 1);
  assert_int_equal(fake_backend_live_reservations(), live);
  /* The block was not leaked: the next request gets it. */
  uint8_t* p = lm_arena_alloc(&arenas, SEG, SEG, 0, true, 0, &m);
  assert_non_null(p);
  assert_int_equal(m.block_index, 0);
  assert_true(fake_backend_is_committed(p, SEG));
  p[0] = p[SEG - 1] = 1;
  lm_arena_free(&arenas, p, SEG, &m);
}

static void test_arena_alloc_falls_back_to_the_os_when_arena_commit_fails(void** state) {
  (void)state;
  if (fake_backend_imitates_wasm()) skip(); /* committed at reserve: no commit */
  lm_mem_config_t c = base_config();
  c.arena_eager_commit = 2;
  start(&c);
  assert_int_equal(lm_arena_reserve(&arenas, 2 * SEG, false, false, NULL), 0);
  fake_backend_fail_always(FAKE_OP_COMMIT, true);
  lm_memid_t m;
  uint8_t* p = lm_arena_alloc(&arenas, SEG, SEG, 0, true, 0, &m);
  assert_non_null(p); /* reserved committed by the OS: no commit call needed */
  assert_int_equal(m.kind, LM_MEM_OS);
  assert_true(fake_backend_is_committed(p, SEG));
  lm_arena_free(&arenas, p, SEG, &m);
  fake_backend_fail_always(FAKE_OP_COMMIT, false);
}

/* ---- what the memid promises ----------------------------------------------------------------- */

static void test_arena_alloc_reports_zero_only_for_zeroed_memory(void** state) {
  (void)state;
  /* A lazily committed arena: the block is committed when claimed, and the fake scribbles
   * newly committed pages (commit reports is_zero=false). initially_zero must not be claimed
   * for memory the backend never promised to be zero. */
  lm_mem_config_t c = base_config();
  c.arena_eager_commit = 0;
  start(&c);
  lm_memid_t m;
  uint8_t* p = lm_arena_alloc(&arenas, SEG, SEG, 0, true, 0, &m);
  assert_non_null(p);
  assert_true(m.initially_committed);
  if (m.initially_zero) assert_true(all_zero(p, SEG));
  lm_arena_free(&arenas, p, SEG, &m);

  /* An eagerly committed reservation that the OS does not promise zero. */
  lm_arenas_destroy(&arenas);
  fake_backend_set_reserve_zero(false);
  c.arena_eager_commit = 1;
  start(&c);
  p = lm_arena_alloc(&arenas, SEG, SEG, 0, true, 0, &m);
  assert_non_null(p);
  if (m.initially_zero) assert_true(all_zero(p, SEG));
  lm_arena_free(&arenas, p, SEG, &m);
}

/* A reset (MADV_FREE-like purge) may only touch committed pages. A block of a lazily
 * committed arena that was claimed without commit and only partly committed by its user must
 * still be purged correctly when freed with purge_decommits=false. */
static void free_partly_committed_block_with_reset_purge(void) {
  lm_mem_config_t c = base_config();
  c.arena_eager_commit = 0;
  c.purge_delay_ms = 0;
  c.purge_decommits = false;
  lm_arenas_t a;
  if (lm_arenas_init(&a, fake_backend(), &c) != 0) _exit(2);
  lm_memid_t m;
  uint8_t* p = lm_arena_alloc(&a, SEG, SEG, 0, false, 0, &m);
  if (p == NULL || m.initially_committed) _exit(3);
  if (!lm_os_commit(&a, p, 64 * LM_KiB, NULL)) _exit(4);
  p[0] = 1;
  lm_arena_free(&a, p, SEG, &m); /* purge now */
  c.purge_delay_ms = 10;         /* and the delayed path */
  a.config = c;
  p = lm_arena_alloc(&a, SEG, SEG, 0, false, 0, &m);
  if (p == NULL) _exit(5);
  lm_arena_free(&a, p, SEG, &m);
  fake_backend_set_clock(1000);
  lm_arenas_try_purge(&a, true);
  lm_arenas_destroy(&a);
  _exit(fake_backend_check_clean() ? 0 : 6);
}

static void test_arena_purge_by_reset_touches_only_committed_pages(void** state) {
  (void)state;
  if (fake_backend_imitates_wasm()) skip(); /* no decommit, so no purge */
  int status = in_child(free_partly_committed_block_with_reset_purge);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
}

/* ---- OS helpers: rounding -------------------------------------------------------------------- */

static void test_os_commit_rounds_out_and_purge_rounds_in(void** state) {
  (void)state;
  if (fake_backend_imitates_wasm()) skip(); /* no decommit, so no purge */
  lm_mem_config_t c = base_config();
  start(&c);
  lm_memid_t m;
  uint8_t* p = lm_os_alloc(&arenas, 16 * PAGE, false, &m);
  assert_non_null(p);
  assert_false(fake_backend_is_committed(p, PAGE));
  /* [p+100, p+PAGE+1) touches two pages: both get committed. */
  assert_true(lm_os_commit(&arenas, p + 100, PAGE + 1 - 100, NULL));
  assert_true(fake_backend_is_committed(p, 2 * PAGE));
  assert_false(fake_backend_is_committed(p + 2 * PAGE, PAGE));
  assert_true(lm_os_commit(&arenas, p, 16 * PAGE, NULL));
  /* A purge of [p+100, p+3*PAGE-1) only covers page 1 wholly. */
  size_t decommits = fake_backend_calls(FAKE_OP_DECOMMIT);
  lm_os_purge(&arenas, p + 100, 3 * PAGE - 101);
  assert_int_equal(fake_backend_calls(FAKE_OP_DECOMMIT), decommits + 1);
  assert_true(fake_backend_is_committed(p, PAGE));
  assert_false(fake_backend_is_committed(p + PAGE, PAGE));
  assert_true(fake_backend_is_committed(p + 2 * PAGE, PAGE));
  /* Less than a page: nothing to do. */
  lm_os_purge(&arenas, p + 10, PAGE - 20);
  assert_int_equal(fake_backend_calls(FAKE_OP_DECOMMIT), decommits + 1);
  lm_os_free(&arenas, p, 16 * PAGE, &m);
}

/* ---- NUMA and large OS pages ----------------------------------------------------------------- */

static void with_numa(lm_backend_caps_t* caps) { caps->has_numa = true; }

/* Threads take blocks of their node's arenas first and make a new arena for their node (bound
 * to it) before they take far memory; far memory is the last resort. */
static void test_arena_numa_nodes_get_their_own_arenas(void** state) {
  (void)state;
  if (fake_backend_imitates_wasm()) skip(); /* arenas of several blocks */
  set_caps(with_numa);
  fake_backend_set_numa(2, 0);
  lm_mem_config_t c = base_config(); /* numa_nodes 0: ask the backend */
  start(&c);
  assert_int_equal(arenas.numa_count, 2);
  lm_memid_t m0, m1, m2;
  void* p0 = lm_arena_alloc(&arenas, SEG, SEG, 0, true, 0, &m0);
  assert_non_null(p0);
  assert_int_equal(lm_arena_numa_node(&arenas, (int)m0.arena_index + 1), 0);
  size_t binds = 0;
  assert_int_equal(fake_backend_numa_bound(&binds), 0);
  assert_int_equal(binds, 1);

  fake_backend_set_numa(2, 1); /* now on node 1: node 0's arena has room, but is far */
  void* p1 = lm_arena_alloc(&arenas, SEG, SEG, 0, true, 0, &m1);
  assert_non_null(p1);
  assert_int_equal(arena_count(), 2);
  assert_int_equal(lm_arena_numa_node(&arenas, (int)m1.arena_index + 1), 1);
  assert_int_equal(fake_backend_numa_bound(&binds), 1);
  assert_int_equal(binds, 2);

  /* No new arena can be made: node 1 fills its own arena, then takes node 0's. */
  fake_backend_fail_always(FAKE_OP_RESERVE, true);
  void* more[3];
  lm_memid_t mm[3];
  for (int i = 0; i < 3; i++) {
    more[i] = lm_arena_alloc(&arenas, SEG, SEG, 0, true, 0, &mm[i]);
    assert_non_null(more[i]);
    assert_int_equal(mm[i].arena_index, m1.arena_index);
  }
  void* far = lm_arena_alloc(&arenas, SEG, SEG, 0, true, 0, &m2);
  assert_non_null(far);
  assert_int_equal(m2.arena_index, m0.arena_index);
  fake_backend_fail_always(FAKE_OP_RESERVE, false);
  for (int i = 0; i < 3; i++) lm_arena_free(&arenas, more[i], SEG, &mm[i]);
  lm_arena_free(&arenas, far, SEG, &m2);
  lm_arena_free(&arenas, p0, SEG, &m0);
  lm_arena_free(&arenas, p1, SEG, &m1);
}

/* use_numa_nodes: N pretended nodes on a machine that has one (no binding then). */
static void test_arena_numa_nodes_can_be_pretended(void** state) {
  (void)state;
  fake_backend_set_numa(1, 3); /* the backend says node 3 (it has no NUMA capability) */
  lm_mem_config_t c = base_config();
  c.numa_nodes = 2;
  start(&c);
  assert_int_equal(lm_arenas_numa_node(&arenas), 1); /* 3 mod 2 */
  lm_memid_t m;
  void* p = lm_arena_alloc(&arenas, SEG, SEG, 0, true, 0, &m);
  assert_non_null(p);
  assert_int_equal(lm_arena_numa_node(&arenas, (int)m.arena_index + 1), 1);
  size_t binds = 0;
  fake_backend_numa_bound(&binds);
  assert_int_equal(binds, 0);
  lm_arena_free(&arenas, p, SEG, &m);

  /* One node (the default on such a machine): NUMA is not told apart at all. */
  lm_arenas_destroy(&arenas);
  arenas_ready = false;
  c.numa_nodes = 0;
  start(&c);
  assert_int_equal(lm_arenas_numa_node(&arenas), -1);
}

/* allow_large: automatic arenas on large pages when the backend has them; explicit (pinned)
 * ones are never purged. Without the option, never. */
/* Destroys the arenas and starts them again over a fake that offers (or not) large pages,
 * explicit (pinned) or transparent; returns one segment-sized allocation. */
static void* restart_with_large_pages(const lm_mem_config_t* c, bool available, bool explicit,
                                      lm_memid_t* m) {
  lm_arenas_destroy(&arenas);
  arenas_ready = false;
  fake_backend_set_large_pages(available, explicit);
  start(c);
  void* p = lm_arena_alloc(&arenas, SEG, SEG, 0, true, 0, m);
  assert_non_null(p);
  return p;
}

static void test_arena_large_pages_only_when_allowed(void** state) {
  (void)state;
  if (fake_backend_imitates_wasm()) skip(); /* no large pages */
  if (fake_backend_imitates_windows()) skip(); /* no large pages without the privilege */
  fake_backend_set_large_pages(true, true);
  lm_mem_config_t c = base_config();
  c.purge_delay_ms = 0; /* purge at once: pinned memory must not be */
  start(&c);
  lm_memid_t m;
  void* p = lm_arena_alloc(&arenas, SEG, SEG, 0, true, 0, &m);
  assert_non_null(p);
  bool pinned = true;
  assert_false(lm_arena_is_large(&arenas, (int)m.arena_index + 1, &pinned));
  assert_false(pinned);
  lm_arena_free(&arenas, p, SEG, &m);

  c.allow_large = true;
  p = restart_with_large_pages(&c, true, true, &m);
  if (!LM_HUGE_PAGES) { /* -Dhuge_pages=disabled: never large */
    assert_false(lm_arena_is_large(&arenas, (int)m.arena_index + 1, &pinned));
    lm_arena_free(&arenas, p, SEG, &m);
    return;
  }
  assert_true(lm_arena_is_large(&arenas, (int)m.arena_index + 1, &pinned));
  assert_true(pinned);
  assert_true(m.is_pinned);
  size_t decommits = fake_backend_calls(FAKE_OP_DECOMMIT);
  lm_arena_free(&arenas, p, SEG, &m);
  assert_int_equal(fake_backend_calls(FAKE_OP_DECOMMIT), decommits); /* pinned: kept */

  /* Transparent large pages are ordinary memory: purged as usual. */
  p = restart_with_large_pages(&c, true, false, &m);
  assert_true(lm_arena_is_large(&arenas, (int)m.arena_index + 1, &pinned));
  assert_false(pinned);
  decommits = fake_backend_calls(FAKE_OP_DECOMMIT);
  lm_arena_free(&arenas, p, SEG, &m);
  assert_true(fake_backend_calls(FAKE_OP_DECOMMIT) > decommits);

  /* No large pages to be had: an ordinary arena all the same. */
  p = restart_with_large_pages(&c, false, false, &m);
  assert_false(lm_arena_is_large(&arenas, (int)m.arena_index + 1, NULL));
  lm_arena_free(&arenas, p, SEG, &m);
}

/* ---- huge (1 GiB) pages and the large-page notice ----------------------------------------- */

/* Pages are reserved one at a time at consecutive addresses: one arena, counted as explicit
 * large pages, released page by page (the fake aborts on a release spanning reservations). */
static void test_arena_huge_pages_make_one_contiguous_arena(void** state) {
  (void)state;
  if (LM_INTPTR_BITS == 32) skip(); /* the fake's buffer is 1 GiB at most there: too small */
  fake_backend_set_huge_pages(true);
  lm_mem_config_t c = base_config();
  start(&c);
  size_t got = 99;
  int id = 0;
  int err = lm_arena_reserve_huge(&arenas, 3, -1, false, 0, &got, &id);
  if (!LM_HUGE_PAGES) { /* -Dhuge_pages=disabled */
    assert_int_equal(err, ENOMEM);
    assert_int_equal(got, 0);
    assert_int_equal(fake_backend_calls(FAKE_OP_RESERVE_HUGE), 0);
    return;
  }
  assert_int_equal(err, 0);
  assert_int_equal(got, 3);
  assert_int_equal(fake_backend_calls(FAKE_OP_RESERVE_HUGE), 3);
  size_t size = 0;
  assert_non_null(lm_arena_area(&arenas, id, &size));
  assert_int_equal(size, 3 * LM_GiB);
  assert_int_equal(lm_load_relaxed(&arenas.stats.large_explicit.current), (int64_t)(3 * LM_GiB));
  bool pinned = false;
  assert_true(lm_arena_is_large(&arenas, id, &pinned));
  assert_true(pinned);
  size_t releases = fake_backend_calls(FAKE_OP_RELEASE);
  lm_arenas_destroy(&arenas);
  arenas_ready = false;
  assert_true(fake_backend_calls(FAKE_OP_RELEASE) >= releases + 3);
  assert_int_equal(lm_load_relaxed(&arenas.stats.large_explicit.current), 0);
}

/* The time limit is kept between pages: with 10 ms a page and 15 ms allowed, two pages are
 * had; the arena keeps them and the call says ENOMEM (fewer than asked). */
static void test_arena_huge_pages_stop_at_the_time_limit(void** state) {
  (void)state;
  if (!LM_HUGE_PAGES) skip();
  if (LM_INTPTR_BITS == 32) skip(); /* the fake's buffer is 1 GiB at most there: too small */
  fake_backend_set_huge_pages(true);
  fake_backend_set_huge_page_ms(10);
  lm_mem_config_t c = base_config();
  start(&c);
  size_t got = 0;
  int id = 0;
  assert_int_equal(lm_arena_reserve_huge(&arenas, 4, -1, false, 15, &got, &id), ENOMEM);
  assert_int_equal(got, 2);
  size_t size = 0;
  assert_non_null(lm_arena_area(&arenas, id, &size));
  assert_int_equal(size, 2 * LM_GiB);
  /* no limit: all of them */
  assert_int_equal(lm_arena_reserve_huge(&arenas, 3, -1, false, 0, &got, &id), 0);
  assert_int_equal(got, 3);
}

/* A refusal part way keeps the pages had; a refusal of the first page makes no arena. */
static void test_arena_huge_pages_stop_at_the_first_refusal(void** state) {
  (void)state;
  if (!LM_HUGE_PAGES) skip();
  if (LM_INTPTR_BITS == 32) skip(); /* the fake's buffer is 1 GiB at most there: too small */
  fake_backend_set_huge_pages(true);
  lm_mem_config_t c = base_config();
  start(&c);
  size_t got = 0;
  int id = 0;
  fake_backend_fail_nth(FAKE_OP_RESERVE_HUGE, 2);
  assert_int_equal(lm_arena_reserve_huge(&arenas, 3, -1, false, 0, &got, &id), ENOMEM);
  assert_int_equal(got, 1);
  assert_true(id > 0);
  size_t arenas_before = lm_arena_count(&arenas);
  fake_backend_fail_always(FAKE_OP_RESERVE_HUGE, true);
  assert_int_equal(lm_arena_reserve_huge(&arenas, 1, -1, false, 0, &got, &id), ENOMEM);
  assert_int_equal(got, 0);
  assert_int_equal(id, 0);
  assert_int_equal(lm_arena_count(&arenas), arenas_before);
  fake_backend_fail_always(FAKE_OP_RESERVE_HUGE, false);
}

static char notices[1024];
static int notice_count;
static void record_notice(const char* msg) {
  notice_count++;
  snprintf(notices, sizeof(notices), "%s", msg);
}

/* allow_large without explicit pages to be had: one notice saying what arenas got instead, and
 * the memory counted as transparent; with explicit pages, no notice. */
static void test_arena_large_pages_missed_are_noticed_once(void** state) {
  (void)state;
  if (fake_backend_imitates_wasm()) skip(); /* no large pages */
  if (fake_backend_imitates_windows()) skip(); /* no large pages without the privilege */
  lm_mem_config_t c = base_config();
  c.allow_large = true;
  c.notice = record_notice;
  notice_count = 0;
  lm_memid_t m;
  void* p = restart_with_large_pages(&c, true, false, &m); /* transparent only */
  if (!LM_HUGE_PAGES) {
    assert_int_equal(notice_count, 0); /* nothing is asked for in such a build */
    lm_arena_free(&arenas, p, SEG, &m);
    return;
  }
  assert_int_equal(notice_count, 1);
  assert_non_null(strstr(notices, "transparent"));
  assert_int_equal(lm_load_relaxed(&arenas.stats.large_transparent.current),
                   (int64_t)c.arena_reserve);
  assert_int_equal(lm_load_relaxed(&arenas.stats.large_explicit.current), 0);
  assert_int_equal(lm_arena_reserve_ex(&arenas, 4 * SEG, true, true, false, -1, NULL), 0);
  assert_int_equal(notice_count, 1); /* once */
  lm_arena_free(&arenas, p, SEG, &m);

  notice_count = 0;
  p = restart_with_large_pages(&c, false, false, &m); /* none at all */
  assert_int_equal(notice_count, 1);
  assert_non_null(strstr(notices, "ordinary pages"));
  lm_arena_free(&arenas, p, SEG, &m);

  notice_count = 0;
  p = restart_with_large_pages(&c, true, true, &m); /* explicit ones */
  assert_int_equal(notice_count, 0);
  assert_int_equal(lm_load_relaxed(&arenas.stats.large_explicit.current), (int64_t)c.arena_reserve);
  lm_arena_free(&arenas, p, SEG, &m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
      T(test_arenas_init_rejects_backend_without_required_function),
      T(test_arenas_init_accepts_backend_without_optional_functions),
      T(test_arenas_init_rejects_inconsistent_caps),
      T(test_os_alloc_aligned_returns_aligned_memory),
      T(test_os_alloc_aligned_overallocates_when_backend_ignores_alignment),
      T(test_os_alloc_aligned_without_partial_release_releases_whole_reservation),
      T(test_os_alloc_rejects_bad_arguments),
      T(test_os_commit_rounds_out_and_purge_rounds_in),
      T(test_arena_alloc_serves_segments_from_an_arena),
      T(test_arena_without_virtual_reserve_reserves_only_what_is_asked),
      T(test_arena_alloc_larger_than_an_arena),
      T(test_arena_alloc_rejects_zero_size),
      T(test_arena_free_purges_at_once_with_zero_delay),
      T(test_arena_free_purges_only_after_the_delay),
      T(test_arena_blocks_freed_later_wait_their_own_delay),
      T(test_arena_realloc_cancels_a_pending_purge),
      T(test_arena_purged_block_is_recommitted_when_reallocated),
      T(test_arena_flags_set_clear_find_and_count),
      T(test_arena_reserve_exclusive_is_used_only_with_its_id),
      T(test_arena_reserve_shared_serves_plain_requests),
      T(test_arena_runs_crossing_bitmap_fields_claim_and_release),
      T(test_arena_alloc_fails_cleanly_when_reserve_fails),
      T(test_arena_reserve_fails_cleanly_when_metadata_reserve_fails),
      T(test_arena_alloc_fails_cleanly_when_commit_fails),
      T(test_arena_alloc_falls_back_to_the_os_when_arena_commit_fails),
      T(test_arena_alloc_reports_zero_only_for_zeroed_memory),
      T(test_arena_purge_by_reset_touches_only_committed_pages),
      T(test_arena_numa_nodes_get_their_own_arenas),
      T(test_arena_numa_nodes_can_be_pretended),
      T(test_arena_large_pages_only_when_allowed),
      T(test_arena_huge_pages_make_one_contiguous_arena),
      T(test_arena_huge_pages_stop_at_the_time_limit),
      T(test_arena_huge_pages_stop_at_the_first_refusal),
      T(test_arena_large_pages_missed_are_noticed_once),
#undef T
  };
  return cmocka_run_group_tests_name("arena", tests, NULL, NULL);
}
