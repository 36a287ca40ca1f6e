/* The NUMA paths of the public API over the fake backend, which reports LM_TEST_NUMA_NODES
 * nodes (meson runs this with 2 and with 4; the machines CI runs on have one).
 *
 * Like test_core, the whole allocator runs over the fake and the fake is configured by a
 * constructor that runs before the library's. Huge (1 GiB) pages are available in the fake,
 * so each node can be given an arena of its own through mi_reserve_huge_os_pages_*.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "core/core.h"
#include "fake_backend.h"

static int nodes = 2;

__attribute__((constructor(101))) static void configure_fake(void) {
  const char* n = getenv("LM_TEST_NUMA_NODES");
  if (n != NULL && atoi(n) > 1) nodes = atoi(n);
  fake_backend_reset();
  lm_backend_caps_t caps;
  fake_backend_get_caps(&caps);
  caps.has_numa = true;
  caps.has_threads = false;
  fake_backend_set_caps(&caps);
  fake_backend_set_numa(nodes, 0);
  fake_backend_set_huge_pages(true);
  fake_backend_setenv("MIMALLOC_ARENA_RESERVE", "64MiB");
  fake_backend_setenv("MIMALLOC_SHOW_ERRORS", "1");
}

static int group_setup(void** state) {
  (void)state;
  mi_process_init();
  if (lm_process.backend != fake_backend() || lm_process.arenas.numa_count != nodes) {
    fprintf(stderr, "group setup: not running over a fake with %d nodes\n", nodes);
    return -1;
  }
  return 0;
}

static int last_error;
static void on_error(int err, void* arg) {
  (void)arg;
  last_error = err;
}

static bool inside(const void* p, int arena_id) {
  size_t size = 0;
  const uint8_t* start = mi_arena_area(arena_id, &size);
  return start != NULL && (const uint8_t*)p >= start && (const uint8_t*)p < start + size;
}

/* Interleaving gives every node one arena of its own, bound to it; the ids are consecutive. */
static int first_huge_arena;

static void test_numa_interleave_gives_each_node_a_bound_arena(void** state) {
  (void)state;
  if (!LM_HUGE_PAGES) skip(); /* -Dhuge_pages=disabled: no 1 GiB pages to bind */
  if (LM_INTPTR_BITS == 32) skip(); /* the fake's buffer is 1 GiB at most there: too small */
  size_t before = lm_arena_count(&lm_process.arenas);
  size_t binds_before = 0;
  fake_backend_numa_bound(&binds_before);
  assert_int_equal(mi_reserve_huge_os_pages_interleave((size_t)nodes, 0, 1000), 0);
  assert_int_equal(lm_arena_count(&lm_process.arenas), before + (size_t)nodes);
  size_t binds = 0;
  assert_int_equal(fake_backend_numa_bound(&binds), nodes - 1); /* the last one made */
  assert_int_equal(binds, binds_before + (size_t)nodes);
  first_huge_arena = (int)before + 1;
  for (int node = 0; node < nodes; node++) {
    int id = first_huge_arena + node;
    size_t size = 0;
    assert_non_null(mi_arena_area(id, &size));
    assert_int_equal(size, LM_GiB);
    assert_int_equal(lm_arena_numa_node(&lm_process.arenas, id), node);
    bool pinned = false;
    assert_true(lm_arena_is_large(&lm_process.arenas, id, &pinned));
    assert_true(pinned);
  }
}

/* A thread takes memory of its own node's arena, whichever node it runs on. */
static void test_numa_allocation_comes_from_the_calling_threads_node(void** state) {
  (void)state;
  if (!LM_HUGE_PAGES) skip(); /* -Dhuge_pages=disabled: no 1 GiB pages to bind */
  if (LM_INTPTR_BITS == 32) skip(); /* the fake's buffer is 1 GiB at most there: too small */
  assert_true(first_huge_arena > 0);
  for (int node = nodes - 1; node >= 0; node--) {
    fake_backend_set_numa(nodes, node);
    void* p = mi_malloc(20 * LM_MiB); /* past half a segment: a segment of its own */
    assert_non_null(p);
    for (int other = 0; other < nodes; other++) {
      assert_true(inside(p, first_huge_arena + other) == (other == node));
    }
    mi_free(p);
  }
  fake_backend_set_numa(nodes, 0);
}

/* One node asked for by number: its arena is bound to that node. */
static void test_numa_reserve_at_a_node_binds_that_node(void** state) {
  (void)state;
  if (!LM_HUGE_PAGES) skip(); /* -Dhuge_pages=disabled: no 1 GiB pages to bind */
  if (LM_INTPTR_BITS == 32) skip(); /* the fake's buffer is 1 GiB at most there: too small */
  mi_arena_id_t id = 0;
  assert_int_equal(mi_reserve_huge_os_pages_at_ex(1, nodes - 1, 0, true, &id), 0);
  assert_true(id > 0);
  assert_int_equal(lm_arena_numa_node(&lm_process.arenas, id), nodes - 1);
  size_t binds = 0;
  assert_int_equal(fake_backend_numa_bound(&binds), nodes - 1);
  /* exclusive: a heap in that arena gets its memory there */
  mi_heap_t* heap = mi_heap_new_in_arena(id);
  assert_non_null(heap);
  void* p = mi_heap_malloc(heap, 64);
  assert_non_null(p);
  assert_true(inside(p, id));
  mi_free(p);
  mi_heap_delete(heap);
}

/* A node that is not one of the machine's: ENOMEM, the error handler told, no arena made. */
static void test_numa_unknown_node_is_refused_with_enomem(void** state) {
  (void)state;
  mi_register_error(on_error, NULL);
  size_t before = lm_arena_count(&lm_process.arenas);
  int bad[] = {nodes, nodes + 7, -2};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    last_error = 0;
    fake_backend_clear_output();
    mi_arena_id_t id = 99;
    assert_int_equal(mi_reserve_huge_os_pages_at_ex(1, bad[i], 0, false, &id), ENOMEM);
    assert_int_equal(id, 0);
    assert_int_equal(last_error, ENOMEM);
    assert_non_null(strstr(fake_backend_output(), "numa node"));
  }
  static uint8_t external[3 * LM_SEGMENT_SIZE];
  last_error = 0;
  assert_false(mi_manage_os_memory(external, sizeof(external), true, false, false, nodes));
  assert_int_equal(last_error, ENOMEM);
  assert_int_equal(lm_arena_count(&lm_process.arenas), before);
  mi_register_error(NULL, NULL);
}

/* mi_reserve_os_memory has no node argument: its arena serves every node (as upstream). */
static void test_numa_os_memory_arena_serves_any_node(void** state) {
  (void)state;
  mi_arena_id_t id = 0;
  assert_int_equal(mi_reserve_os_memory_ex(64 * LM_MiB, true, false, true, &id), 0);
  assert_int_equal(lm_arena_numa_node(&lm_process.arenas, id), -1);
  size_t size = 0;
  assert_non_null(mi_arena_area(id, &size));
  assert_int_equal(size, 64 * LM_MiB);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_numa_interleave_gives_each_node_a_bound_arena),
      cmocka_unit_test(test_numa_allocation_comes_from_the_calling_threads_node),
      cmocka_unit_test(test_numa_reserve_at_a_node_binds_that_node),
      cmocka_unit_test(test_numa_unknown_node_is_refused_with_enomem),
      cmocka_unit_test(test_numa_os_memory_arena_serves_any_node),
  };
  char name[32];
  snprintf(name, sizeof(name), "numa (%d nodes)", nodes);
  return cmocka_run_group_tests_name(name, tests, group_setup, NULL);
}
