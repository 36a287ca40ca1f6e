/* Unit test of the segment layer (src/segment/) over the arena layer and the fake backend.
 *
 * Every test builds a fresh stack: lm_arenas_t over fake_backend(), lm_segments_t over it, and
 * two thread contexts (tld, tld2; the second stands for another thread when segments are
 * abandoned and reclaimed). Tests free every page they allocate and assert that their segments
 * are gone; teardown fails the test when the fake still holds a reservation after the arenas
 * are destroyed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "fake_backend.h"
#include "segment/segment.h"

#define SEG LM_SEGMENT_SIZE
#define SLICE LM_SLICE_SIZE

static lm_arenas_t arenas;
static lm_segments_t segs;
static lm_segments_tld_t tld, tld2;
static bool ready;

/* ---- fixtures -------------------------------------------------------------------------------- */

static int setup(void** state) {
  (void)state;
  fake_backend_reset();
  ready = false;
  return 0;
}

/* Each test asserts that its segments are gone; a test that failed half-way may leave some,
 * which destroying the arenas releases (noted here, the failure is already reported). */
static int teardown(void** state) {
  (void)state;
  if (ready) {
    size_t live = atomic_load(&segs.count);
    if (live != 0) fprintf(stderr, "teardown: %zu segment(s) still live\n", live);
    lm_segments_done(&segs);
    lm_arenas_destroy(&arenas);
  }
  ready = false;
  bool clean = fake_backend_check_clean();
  fake_backend_reset();
  return clean ? 0 : -1;
}

typedef struct config_s {
  lm_mem_config_t mem;
  lm_segment_config_t seg;
} config_t;

/* Small arenas committed at once, no purging anywhere unless a test asks for it. */
static config_t base_config(void) {
  config_t c;
  lm_mem_config_default(&c.mem);
  c.mem.purge_delay_ms = -1;
  c.mem.arena_reserve = 4 * SEG;
  c.mem.arena_eager_commit = 1;
  lm_segment_config_default(&c.seg);
  c.seg.eager_commit = true;
  c.seg.purge_delay_ms = -1;
  return c;
}

static void start(const config_t* c) {
  assert_int_equal(lm_arenas_init(&arenas, fake_backend(), &c->mem), 0);
  lm_segments_init(&segs, &arenas, &c->seg, (uintptr_t)0x5a5a5a5a12345677ull);
  lm_segments_tld_init(&tld, &segs);
  lm_segments_tld_init(&tld2, &segs);
  ready = true;
}

static lm_page_t* page_alloc(size_t block_size) {
  lm_page_t* page = lm_segment_page_alloc(&tld, block_size, 0, 0);
  assert_non_null(page);
  return page;
}

static size_t slice_index(const lm_page_t* page) {
  return (size_t)(page - lm_segment_of(page)->slices);
}

static bool spans_empty(const lm_segments_tld_t* t) {
  for (size_t i = 0; i < LM_SPAN_QUEUES; i++) {
    if (t->spans[i].first != NULL || t->spans[i].last != NULL) return false;
  }
  return true;
}

static bool span_queued(const lm_segments_tld_t* t, const lm_page_t* span) {
  for (size_t i = 0; i < LM_SPAN_QUEUES; i++) {
    for (const lm_page_t* s = t->spans[i].first; s != NULL; s = s->next) {
      if (s == span) return true;
    }
  }
  return false;
}

/* pointer -> segment -> page for the first byte, an interior byte and the last byte of the
 * page's area, or of its first `limit` bytes (huge pages: only the first segment-size of a huge
 * segment maps back by masking). */
static void check_lookup_within(const lm_page_t* page, size_t limit) {
  lm_segment_t* segment = lm_segment_of(page);
  size_t size;
  uint8_t* area = lm_page_area(page, &size);
  if (limit < size) size = limit;
  uint8_t* probes[] = {area, area + size / 2 + 7, area + size - 1};
  for (size_t i = 0; i < 3; i++) {
    assert_ptr_equal(lm_segment_of(probes[i]), segment);
    assert_ptr_equal(lm_segment_page_of(segment, probes[i]), page);
  }
}
static void check_lookup(const lm_page_t* page) { check_lookup_within(page, SIZE_MAX); }

/* The page can be used: its area is committed (fresh) and writable at both ends. */
static void check_usable(const lm_page_t* page, bool expect_committed) {
  size_t size;
  uint8_t* area = lm_page_area(page, &size);
  assert_true(page->is_committed);
  if (expect_committed) assert_true(fake_backend_is_committed(area, size));
  area[0] = 0x11;
  area[size - 1] = 0x22;
}

/* Every block of the first arena is free again (nothing leaked a block): it can be claimed
 * whole, from that arena. */
static void check_first_arena_all_free(size_t blocks) {
  if (!arenas.caps.has_virtual_reserve) { /* (wasm) arenas of one block each, as asked */
    for (size_t id = 1; id <= lm_arena_count(&arenas); id++) {
      assert_false(lm_arena_block_in_use(&arenas, (int)id, 0));
    }
    return;
  }
  lm_memid_t m;
  void* all = lm_arena_alloc(&arenas, blocks * SEG, SEG, 0, false, 0, &m);
  assert_non_null(all);
  assert_int_equal(m.kind, LM_MEM_ARENA);
  assert_int_equal(m.arena_index, 0);
  lm_arena_free(&arenas, all, blocks * SEG, &m);
}

static bool all_zero(const void* p, size_t size) {
  const uint64_t* w = p;
  for (size_t i = 0; i < size / sizeof(uint64_t); i++) {
    if (w[i] != 0) return false;
  }
  return true;
}

/* ---- page allocation ------------------------------------------------------------------------- */

static void test_segment_page_slices_per_size_class(void** state) {
  (void)state;
  assert_int_equal(lm_segment_page_slices(8), 1);
  assert_int_equal(lm_segment_page_slices(LM_SMALL_OBJ_SIZE_MAX), 1);
  assert_int_equal(lm_segment_page_slices(LM_SMALL_OBJ_SIZE_MAX + 8), 2); /* 8 blocks or more */
  assert_int_equal(lm_segment_page_slices(40 * LM_KiB), 5);
  assert_int_equal(lm_segment_page_slices(LM_MEDIUM_OBJ_SIZE_MAX), 8);
  assert_int_equal(lm_segment_page_slices(LM_MEDIUM_OBJ_SIZE_MAX + 8), 2);
  assert_int_equal(lm_segment_page_slices(512 * LM_KiB), 8);
  assert_int_equal(lm_segment_page_slices(512 * LM_KiB + 8), 16);
  assert_int_equal(lm_segment_page_slices(LM_MiB), 16);
  assert_int_equal(lm_segment_page_slices(LM_LARGE_OBJ_SIZE_MAX), 256);
}

static const size_t block_sizes[] = {
    8,      1024,       LM_SMALL_OBJ_SIZE_MAX, 8200, 40000, 65536, 65544, 300000,
    LM_MiB, 3 * LM_MiB, LM_LARGE_OBJ_SIZE_MAX};
#define BLOCK_SIZES (sizeof(block_sizes) / sizeof(block_sizes[0]))

static void test_segment_page_alloc_gives_pages_of_the_right_size(void** state) {
  (void)state;
  config_t c = base_config();
  start(&c);
  lm_page_t* pages[BLOCK_SIZES];
  for (size_t i = 0; i < BLOCK_SIZES; i++) {
    size_t bs = block_sizes[i];
    lm_page_t* page = pages[i] = page_alloc(bs);
    lm_segment_t* segment = lm_segment_of(page);
    assert_true(lm_segment_is_valid(&segs, segment));
    assert_int_equal(segment->kind, LM_SEGMENT_NORMAL);
    assert_int_equal(lm_segment_owner(segment), lm_thread_id());
    assert_int_equal(page->slice_count, lm_segment_page_slices(bs));
    assert_int_equal(page->block_size, bs);
    assert_int_equal(page->slice_offset, 0);
    assert_false(page->is_huge);
    size_t size;
    uint8_t* area = lm_page_area(page, &size);
    assert_int_equal(size, page->slice_count * SLICE);
    assert_true(size >= bs);
    assert_int_equal((uintptr_t)area % SLICE, 0);
    assert_true(slice_index(page) >= segment->info_slices);
    assert_true(slice_index(page) + page->slice_count <= segment->segment_slices);
    check_usable(page, true);
    check_lookup(page);
  }
  /* Pages never overlap. */
  for (size_t i = 0; i < BLOCK_SIZES; i++) {
    for (size_t j = 0; j < i; j++) {
      size_t si, sj;
      uint8_t* ai = lm_page_area(pages[i], &si);
      uint8_t* aj = lm_page_area(pages[j], &sj);
      assert_true(ai + si <= aj || aj + sj <= ai);
    }
  }
  /* The lookups still hold with every page in place. */
  for (size_t i = 0; i < BLOCK_SIZES; i++) check_lookup(pages[i]);
  assert_int_equal(tld.count, atomic_load(&segs.count));
  for (size_t i = 0; i < BLOCK_SIZES; i++) lm_segment_page_free(pages[i], &tld);
  assert_int_equal(atomic_load(&segs.count), 0);
  assert_int_equal(tld.count, 0);
  assert_true(spans_empty(&tld));
}

static void test_segment_huge_pages_map_back_to_their_page(void** state) {
  (void)state;
  config_t c = base_config();
  start(&c);
  /* Fits in one segment-size: every byte maps back. */
  size_t bs = LM_LARGE_OBJ_SIZE_MAX + 4 * LM_MiB;
  lm_page_t* page = page_alloc(bs);
  lm_segment_t* segment = lm_segment_of(page);
  assert_true(lm_segment_is_valid(&segs, segment));
  assert_int_equal(segment->kind, LM_SEGMENT_HUGE);
  assert_true(page->is_huge);
  assert_int_equal(page->block_size, bs);
  size_t size;
  uint8_t* area = lm_page_area(page, &size);
  assert_true(size >= bs);
  assert_true(area + size <= (uint8_t*)segment + segment->segment_size);
  check_usable(page, true);
  check_lookup(page);
  assert_ptr_equal(lm_segment_next_page(segment, NULL), page);
  assert_null(lm_segment_next_page(segment, page));

  /* Larger than a segment: the block start and the first segment-size map back. */
  size_t big = 100 * LM_MiB;
  lm_page_t* page2 = page_alloc(big);
  lm_segment_t* segment2 = lm_segment_of(page2);
  assert_int_equal(segment2->kind, LM_SEGMENT_HUGE);
  uint8_t* area2 = lm_page_area(page2, &size);
  assert_true(size >= big);
  assert_true(fake_backend_is_committed(area2, big));
  area2[0] = 1;
  area2[big - 1] = 1;
  check_lookup_within(page2, (size_t)((uint8_t*)segment2 + SEG - area2));
  assert_int_equal(atomic_load(&segs.count), 2);
  assert_true(lm_segment_page_free(page, &tld)); /* a huge page takes its segment along */
  assert_true(lm_segment_page_free(page2, &tld));
  assert_int_equal(atomic_load(&segs.count), 0);
  assert_int_equal(tld.count, 0);
}

static void test_segment_huge_page_with_large_alignment_is_aligned(void** state) {
  (void)state;
  config_t c = base_config();
  start(&c);
  size_t live = fake_backend_live_reservations();
  const size_t align = 64 * LM_MiB;
  const size_t sizes[] = {8, LM_MiB, 40 * LM_MiB};
  for (size_t i = 0; i < 3; i++) {
    lm_page_t* page = lm_segment_page_alloc(&tld, sizes[i], align, 0);
    assert_non_null(page);
    lm_segment_t* segment = lm_segment_of(page);
    assert_true(lm_segment_is_valid(&segs, segment));
    assert_int_equal(segment->kind, LM_SEGMENT_HUGE);
    assert_true(page->is_huge);
    size_t size;
    uint8_t* area = lm_page_area(page, &size);
    assert_int_equal((uintptr_t)area % align, 0);
    assert_true(size >= sizes[i]);
    /* The block start maps back to its page, through the segment header before it. */
    assert_ptr_equal(lm_segment_of(area), segment);
    assert_ptr_equal(lm_segment_page_of(segment, area), page);
    assert_ptr_equal(lm_segment_next_page(segment, NULL), page);
    assert_true(fake_backend_is_committed(area, size));
    area[0] = 1;
    area[size - 1] = 1;
    assert_true(lm_segment_page_free(page, &tld));
    /* Only the map of OS-allocated segments (made on first need) may remain. */
    size_t map = atomic_load(&segs.map) != NULL ? 1 : 0;
    assert_int_equal(fake_backend_live_reservations(), live + map);
  }
  assert_int_equal(atomic_load(&segs.count), 0);
}

static void test_segment_page_alloc_respects_arena_id(void** state) {
  (void)state;
  config_t c = base_config();
  start(&c);
  int id = 0;
  assert_int_equal(lm_arena_reserve(&arenas, 2 * SEG, true, true, &id), 0);
  lm_page_t* plain = page_alloc(64); /* a segment in an automatic arena, with free spans */
  assert_int_not_equal((int)lm_segment_of(plain)->memid.arena_index + 1, id);
  lm_page_t* own = lm_segment_page_alloc(&tld, 64, 0, id);
  assert_non_null(own);
  lm_segment_t* s = lm_segment_of(own);
  assert_int_equal(s->memid.kind, LM_MEM_ARENA);
  assert_int_equal((int)s->memid.arena_index + 1, id);
  lm_page_t* own2 = lm_segment_page_alloc(&tld, 64, 0, id); /* reuses that segment's spans */
  assert_non_null(own2);
  assert_ptr_equal(lm_segment_of(own2), s);
  assert_int_equal(atomic_load(&segs.count), 2);
  lm_segment_page_free(own2, &tld);
  lm_segment_page_free(own, &tld);
  lm_segment_page_free(plain, &tld);
  assert_int_equal(atomic_load(&segs.count), 0);
}

/* ---- free spans ------------------------------------------------------------------------------ */

static void test_segment_free_coalesces_spans_and_frees_the_empty_segment(void** state) {
  (void)state;
  config_t c = base_config();
  start(&c);
  size_t live = fake_backend_live_reservations();
  lm_page_t* a = page_alloc(64);
  lm_page_t* b = page_alloc(64);
  lm_page_t* d = page_alloc(64);
  lm_segment_t* segment = lm_segment_of(a);
  assert_ptr_equal(lm_segment_of(b), segment);
  assert_ptr_equal(lm_segment_of(d), segment);
  size_t info = segment->info_slices;
  assert_int_equal(slice_index(a), info);
  assert_int_equal(slice_index(b), info + 1);
  assert_int_equal(slice_index(d), info + 2);
  assert_int_equal(segment->used, 3);
  live = fake_backend_live_reservations(); /* the arena and its metadata */

  assert_false(lm_segment_page_free(b, &tld));
  assert_int_equal(segment->used, 2);
  lm_page_t* sb = &segment->slices[info + 1];
  assert_int_equal(sb->block_size, 0); /* a free span of one slice between two pages */
  assert_int_equal(sb->slice_count, 1);
  assert_true(span_queued(&tld, sb));

  assert_false(lm_segment_page_free(a, &tld));
  lm_page_t* sa = &segment->slices[info];
  assert_int_equal(sa->block_size, 0); /* merged with b's span */
  assert_int_equal(sa->slice_count, 2);
  assert_true(span_queued(&tld, sa));
  assert_false(span_queued(&tld, sb));
  lm_page_t* rest = &segment->slices[info + 3];
  assert_int_equal(rest->slice_count, segment->segment_slices - info - 3);
  assert_true(span_queued(&tld, rest));
  /* pointer lookups in a free span's last slice lead to the span */
  assert_ptr_equal(lm_segment_page_of(segment, (uint8_t*)segment + (info + 2) * SLICE - 1), sa);

  assert_true(lm_segment_page_free(d, &tld)); /* the last page: the segment goes */
  assert_int_equal(atomic_load(&segs.count), 0);
  assert_int_equal(tld.count, 0);
  assert_true(spans_empty(&tld));
  assert_int_equal(fake_backend_live_reservations(), live);
  /* Its arena block is free again: the whole arena can be claimed. */
  check_first_arena_all_free(4);
}

static void test_segment_free_span_is_reused_best_fit(void** state) {
  (void)state;
  config_t c = base_config();
  start(&c);
  lm_page_t* x = page_alloc(64);
  lm_page_t* a = page_alloc(64);
  lm_page_t* y = page_alloc(64);
  lm_segment_t* segment = lm_segment_of(x);
  size_t a_idx = slice_index(a);
  lm_segment_page_free(a, &tld);
  /* The one-slice hole is the best fit for the next small page. */
  lm_page_t* a2 = page_alloc(1024);
  assert_ptr_equal(a2, &segment->slices[a_idx]);
  assert_int_equal(a2->block_size, 1024);
  check_lookup(a2);

  /* Eight small pages freed merge with the rest; a medium page then takes their place. */
  lm_page_t* small[8];
  for (size_t i = 0; i < 8; i++) small[i] = page_alloc(64);
  size_t first = slice_index(small[0]);
  assert_int_equal(first, slice_index(y) + 1);
  for (size_t i = 0; i < 8; i++) lm_segment_page_free(small[i], &tld);
  assert_int_equal(segment->slices[first].slice_count, segment->segment_slices - first);
  lm_page_t* medium = page_alloc(LM_MEDIUM_OBJ_SIZE_MAX);
  assert_ptr_equal(medium, &segment->slices[first]);
  assert_int_equal(medium->slice_count, 8);
  check_usable(medium, true);
  check_lookup(medium);
  /* A large page fills the rest of the segment only as far as it fits. */
  assert_true(lm_segment_span_available(&tld, LM_LARGE_OBJ_SIZE_MAX, 0));
  lm_page_t* large = page_alloc(LM_LARGE_OBJ_SIZE_MAX);
  assert_ptr_equal(lm_segment_of(large), segment);
  lm_segment_page_free(medium, &tld);
  lm_segment_page_free(large, &tld);
  lm_segment_page_free(a2, &tld);
  lm_segment_page_free(x, &tld);
  assert_true(lm_segment_page_free(y, &tld));
  assert_int_equal(atomic_load(&segs.count), 0);
}

/* Pages go to the lowest free span that fits, not the smallest: what was just freed (still
 * resident) is used before a smaller hole higher up or the segment's untouched tail. */
static void test_segment_free_span_is_reused_lowest_address_first(void** state) {
  (void)state;
  config_t c = base_config();
  start(&c);
  enum { N = 20 };
  lm_page_t* p[N];
  for (size_t i = 0; i < N; i++) p[i] = page_alloc(64);
  lm_segment_t* segment = lm_segment_of(p[0]);
  size_t low = slice_index(p[1]), high = slice_index(p[15]);
  for (size_t i = 1; i <= 10; i++) lm_segment_page_free(p[i], &tld); /* 10 slices, low */
  lm_segment_page_free(p[15], &tld);                                 /* 1 slice, higher */
  assert_int_equal(segment->slices[low].slice_count, 10);
  assert_int_equal(segment->slices[high].slice_count, 1);
  lm_page_t* q = page_alloc(64);
  assert_ptr_equal(q, &segment->slices[low]); /* best fit would take the 1-slice hole */
  assert_true(span_queued(&tld, &segment->slices[high]));
  assert_int_equal(segment->slices[low + 1].slice_count, 9); /* the rest stays free */
  assert_true(span_queued(&tld, &segment->slices[low + 1]));
  lm_segment_page_free(q, &tld);
  for (size_t i = 0; i < N; i++) {
    if ((i >= 1 && i <= 10) || i == 15) continue;
    lm_segment_page_free(p[i], &tld);
  }
  assert_int_equal(atomic_load(&segs.count), 0);
}

/* A thread that emptied a segment (given back to the arena, its purge pending: still resident)
 * takes it back for its next page rather than the untouched tail of the segment it kept; a
 * thread that emptied none keeps to its own tail. */
static void test_segment_emptied_segment_is_taken_back_before_an_untouched_tail(void** state) {
  (void)state;
  if (fake_backend_imitates_wasm()) skip(); /* no decommit, so no purge is ever pending */
  config_t c = base_config();
  c.mem.purge_delay_ms = 1000; /* the clock stays at 0: nothing falls due */
  c.seg.purge_delay_ms = 1000;
  start(&c);
  enum { MAX_PAGES = 1024 };
  static lm_page_t* a[MAX_PAGES];
  size_t n = 0;
  a[n++] = page_alloc(64);
  lm_segment_t* first = lm_segment_of(a[0]);
  lm_page_t* b[3];
  for (;;) { /* fill the first segment; the next page starts a second one */
    lm_page_t* page = page_alloc(64);
    if (lm_segment_of(page) != first) {
      b[0] = page;
      break;
    }
    assert_true(n < MAX_PAGES);
    a[n++] = page;
  }
  lm_segment_t* second = lm_segment_of(b[0]);
  b[1] = page_alloc(64);
  b[2] = page_alloc(64);
  assert_true((uintptr_t)first < (uintptr_t)second);
  assert_int_equal(second->touched_end, second->info_slices + 3);
  for (size_t i = 0; i < n; i++) lm_segment_page_free(a[i], &tld); /* in order, as a burst */
  assert_int_equal(tld.count, 1);
  assert_true(lm_arenas_purge_pending(&arenas) > 0);

  /* The lowest free span is the second segment's untouched tail; the emptied one comes back. */
  lm_page_t* again = page_alloc(64);
  lm_segment_t* back = lm_segment_of(again);
  assert_ptr_equal(back, first);
  assert_int_equal(slice_index(again), back->info_slices);
  assert_int_equal(back->touched_end, back->segment_slices); /* all of it was touched before */
  assert_int_equal(tld.count, 2);
  assert_int_equal(lm_arenas_purge_pending(&arenas), 0);
  lm_page_t* next = page_alloc(64); /* resident memory now: no further swap */
  assert_ptr_equal(lm_segment_of(next), first);
  assert_int_equal(tld.count, 2);

  /* A thread that emptied no segment keeps to its own untouched tail, even while another
   * thread's emptied segment waits in the arena. */
  lm_page_t* other = lm_segment_page_alloc(&tld2, 64, 0, 0);
  assert_non_null(other);
  lm_segment_t* third = lm_segment_of(other);
  assert_true(third != first && third != second);
  lm_segment_page_free(again, &tld);
  assert_true(lm_segment_page_free(next, &tld)); /* the first segment goes back again */
  assert_true(lm_arenas_purge_pending(&arenas) > 0);
  lm_page_t* other2 = lm_segment_page_alloc(&tld2, 64, 0, 0);
  assert_non_null(other2);
  assert_ptr_equal(lm_segment_of(other2), third);
  assert_int_equal(tld2.count, 1);
  lm_segment_page_free(other2, &tld2);
  assert_true(lm_segment_page_free(other, &tld2));
  for (size_t i = 0; i < 3; i++) lm_segment_page_free(b[i], &tld);
  assert_int_equal(atomic_load(&segs.count), 0);
}

/* The same when the emptied segment lies above the one kept: its page comes from it, not from
 * the lower, untouched tail (spans are otherwise taken lowest address first). */
static void test_segment_emptied_segment_above_is_taken_back_too(void** state) {
  (void)state;
  if (fake_backend_imitates_wasm()) skip(); /* no decommit, so no purge is ever pending */
  config_t c = base_config();
  c.mem.purge_delay_ms = 1000;
  c.seg.purge_delay_ms = 1000;
  start(&c);
  lm_page_t* small = page_alloc(64);
  lm_page_t* big1 = page_alloc(LM_LARGE_OBJ_SIZE_MAX);
  lm_page_t* big2 = page_alloc(LM_LARGE_OBJ_SIZE_MAX); /* no room left beside big1 */
  lm_segment_t* low = lm_segment_of(small);
  lm_segment_t* high = lm_segment_of(big2);
  assert_ptr_equal(lm_segment_of(big1), low);
  assert_true((uintptr_t)low < (uintptr_t)high);
  assert_true(lm_segment_page_free(big2, &tld)); /* the high one is emptied and given back */
  size_t tail = slice_index(big1) + big1->slice_count; /* the low one's free slices: */
  assert_int_equal(low->touched_end, tail);            /* an untouched tail */

  lm_page_t* again = page_alloc(64);
  assert_ptr_equal(lm_segment_of(again), high);
  assert_int_equal(slice_index(again), high->info_slices);
  lm_page_t* next = page_alloc(64); /* that one taken back, the low tail is next */
  assert_ptr_equal(lm_segment_of(next), low);
  assert_int_equal(slice_index(next), tail);
  lm_segment_page_free(next, &tld);
  lm_segment_page_free(again, &tld);
  lm_segment_page_free(big1, &tld);
  lm_segment_page_free(small, &tld);
  assert_int_equal(atomic_load(&segs.count), 0);
}

/* A large page grows into the free slices after it and gives its tail back, in place. */
static void test_segment_large_page_resizes_in_place(void** state) {
  (void)state;
  config_t c = base_config();
  start(&c);
  lm_page_t* page = page_alloc(200 * 1024); /* 4 slices */
  lm_segment_t* segment = lm_segment_of(page);
  size_t idx = slice_index(page);
  assert_int_equal(page->slice_count, 4);
  assert_true(lm_segment_page_resize(&tld, page, 10));
  assert_int_equal(page->slice_count, 10);
  assert_int_equal(segment->slices[idx + 9].slice_offset, 9 * sizeof(lm_page_t));
  assert_true(span_queued(&tld, &segment->slices[idx + 10])); /* the rest stays free */
  lm_page_t* next = page_alloc(64); /* lowest address first: right after the page */
  assert_ptr_equal(next, &segment->slices[idx + 10]);
  assert_false(lm_segment_page_resize(&tld, page, 11)); /* no room behind it now */
  assert_int_equal(page->slice_count, 10);
  assert_true(lm_segment_page_resize(&tld, page, 3));   /* the tail goes back ... */
  assert_int_equal(segment->slices[idx + 3].slice_count, 7);
  assert_true(span_queued(&tld, &segment->slices[idx + 3]));
  assert_true(lm_segment_page_resize(&tld, page, 10));  /* ... and can be taken again */
  assert_false(span_queued(&tld, &segment->slices[idx + 3]));
  assert_true(lm_segment_check(&segs, segment));
  assert_false(lm_segment_page_free(next, &tld));
  assert_true(lm_segment_page_free(page, &tld));
  assert_int_equal(atomic_load(&segs.count), 0);
}

/* Past config.large_pages_from, the chunks that small and medium pages reach are advised to use
 * large pages, in 2 MiB steps; large blocks never ask; freeing the segment takes it back. A
 * backend without the capability is never asked. */
static void test_segment_large_pages_follow_small_pages_past_the_threshold(void** state) {
  (void)state;
  if (fake_backend_imitates_wasm()) skip(); /* no large pages */
  if (fake_backend_imitates_windows()) skip(); /* no large-page advice on Windows */
  for (int advice = 1; advice >= 0; advice--) {
    lm_backend_caps_t caps;
    fake_backend_get_caps(&caps);
    caps.has_large_page_advice = advice != 0;
    fake_backend_set_caps(&caps);
    const size_t chunk = caps.large_page_size;
    config_t c = base_config();
    c.seg.large_pages_from = SEG / 2;
    start(&c);
    size_t calls = fake_backend_calls(FAKE_OP_ADVISE_LARGE);
    lm_page_t* big = page_alloc(LM_LARGE_OBJ_SIZE_MAX); /* reaches past half the segment */
    lm_segment_t* segment = lm_segment_of(big);
    uint8_t* half = (uint8_t*)segment + SEG / 2;
    assert_int_equal(fake_backend_calls(FAKE_OP_ADVISE_LARGE), calls);
    lm_page_t* pages[40];
    pages[0] = page_alloc(64);
    uint8_t* area = lm_page_area(pages[0], NULL);
    assert_true(area >= half && area < half + chunk);
    if (advice) {
      assert_int_equal(fake_backend_calls(FAKE_OP_ADVISE_LARGE), calls + 1);
      assert_true(fake_backend_is_large_advised(half, chunk));
      assert_false(fake_backend_is_large_advised(half - caps.page_size, caps.page_size));
      assert_int_equal(fake_backend_large_advised_bytes(), chunk);
    }
    /* 39 more small pages: the last ends past the first chunk, which asks for the next one */
    for (size_t i = 1; i < 40; i++) pages[i] = page_alloc(64);
    assert_true(lm_page_area(pages[39], NULL) >= half + chunk);
    if (advice) {
      assert_int_equal(fake_backend_calls(FAKE_OP_ADVISE_LARGE), calls + 2);
      assert_int_equal(fake_backend_large_advised_bytes(), 2 * chunk);
    } else {
      assert_int_equal(fake_backend_calls(FAKE_OP_ADVISE_LARGE), calls);
    }
    assert_false(lm_segment_page_free(big, &tld));
    for (size_t i = 0; i < 40; i++) lm_segment_page_free(pages[i], &tld);
    assert_int_equal(atomic_load(&segs.count), 0);
    assert_int_equal(fake_backend_large_advised_bytes(), 0);
    lm_segments_done(&segs);
    lm_arenas_destroy(&arenas);
    ready = false;
  }
}

/* A huge segment asks for nothing by itself; told that its block is written from the start,
 * it asks for the whole 2 MiB chunks the block covers (once), and freeing it takes that back.
 * Not where large pages are off (large_pages_from 0) or the backend has no such advice. */
static void test_segment_huge_block_asks_for_large_pages_when_told(void** state) {
  (void)state;
  if (fake_backend_imitates_wasm()) skip(); /* no large pages */
  if (fake_backend_imitates_windows()) skip(); /* no large-page advice on Windows */
  for (int mode = 0; mode < 3; mode++) { /* 0: on, 1: option off, 2: no capability */
    lm_backend_caps_t caps;
    fake_backend_get_caps(&caps);
    caps.has_large_page_advice = mode != 2;
    fake_backend_set_caps(&caps);
    const size_t chunk = caps.large_page_size;
    config_t c = base_config();
    c.mem.arena_reserve = 8 * SEG;
    c.seg.large_pages_from = mode == 1 ? 0 : SEG / 2;
    start(&c);
    size_t calls = fake_backend_calls(FAKE_OP_ADVISE_LARGE);
    const size_t size = LM_LARGE_OBJ_SIZE_MAX + 5 * chunk + 12345;
    lm_page_t* huge = page_alloc(size);
    assert_true(huge->is_huge);
    assert_int_equal(fake_backend_calls(FAKE_OP_ADVISE_LARGE), calls);
    lm_segment_huge_advise_large(&segs, huge);
    lm_segment_huge_advise_large(&segs, huge); /* a second time: nothing more */
    uint8_t* block = lm_page_area(huge, NULL);
    uint8_t* first = (uint8_t*)lm_align_up((uintptr_t)block, chunk);
    uint8_t* end = (uint8_t*)((uintptr_t)(block + size) / chunk * chunk);
    if (mode == 0) {
      assert_int_equal(fake_backend_calls(FAKE_OP_ADVISE_LARGE), calls + 1);
      assert_true(fake_backend_is_large_advised(first, (size_t)(end - first)));
      assert_int_equal(fake_backend_large_advised_bytes(), (size_t)(end - first));
      assert_false(fake_backend_is_large_advised(first - caps.page_size, caps.page_size));
    } else {
      assert_int_equal(fake_backend_calls(FAKE_OP_ADVISE_LARGE), calls);
      assert_int_equal(fake_backend_large_advised_bytes(), 0);
    }
    assert_true(lm_segment_page_free(huge, &tld));
    assert_int_equal(atomic_load(&segs.count), 0);
    assert_int_equal(fake_backend_large_advised_bytes(), 0);
    lm_segments_done(&segs);
    lm_arenas_destroy(&arenas);
    ready = false;
  }
}

/* A segment that a thread needs because its others are full of small pages asks for large
 * pages from its start; one needed for a large block that did not fit keeps the threshold. */
static void test_segment_outgrown_thread_gets_large_pages_from_the_start(void** state) {
  (void)state;
  if (fake_backend_imitates_wasm()) skip(); /* no large pages */
  if (fake_backend_imitates_windows()) skip(); /* no large-page advice on Windows */
  lm_backend_caps_t caps;
  fake_backend_get_caps(&caps);
  caps.has_large_page_advice = true;
  fake_backend_set_caps(&caps);
  config_t c = base_config();
  c.mem.arena_reserve = 8 * SEG;
  c.seg.large_pages_from = SEG / 2;
  start(&c);
  /* Two large blocks that do not fit one segment: the second segment keeps the threshold. */
  lm_page_t* big1 = page_alloc(LM_LARGE_OBJ_SIZE_MAX);
  lm_page_t* big2 = page_alloc(LM_LARGE_OBJ_SIZE_MAX);
  lm_segment_t* a = lm_segment_of(big1);
  lm_segment_t* b = lm_segment_of(big2);
  assert_ptr_not_equal(a, b);
  assert_false(fake_backend_is_large_advised(b, caps.page_size));
  /* Small pages fill what is left of both; the next one needs a third segment: advised from
   * its start. */
  static lm_page_t* pages[2 * LM_SLICES_PER_SEGMENT];
  size_t n = 0;
  while (lm_segment_span_available(&tld, 64, 0)) pages[n++] = page_alloc(64);
  assert_true(n > 0);
  for (size_t i = 0; i < n; i++) {
    assert_true(lm_segment_of(pages[i]) == a || lm_segment_of(pages[i]) == b);
  }
  lm_page_t* next = page_alloc(64);
  lm_segment_t* third = lm_segment_of(next);
  assert_true(third != a && third != b);
  assert_true(fake_backend_is_large_advised(third, caps.large_page_size));
  assert_false(fake_backend_is_large_advised(a, caps.page_size));
  for (size_t i = 0; i < n; i++) lm_segment_page_free(pages[i], &tld);
  assert_true(lm_segment_page_free(next, &tld));
  assert_true(lm_segment_page_free(big1, &tld));
  assert_true(lm_segment_page_free(big2, &tld));
  assert_int_equal(atomic_load(&segs.count), 0);
  assert_int_equal(fake_backend_large_advised_bytes(), 0);
}

/* lm_segment_move hands a block's memory over (the source reads zero after) and gives the moved
 * memory the large-page advice of the segment it moved into, whatever it came with: a huge block
 * that asked, moved into a large block below the threshold, leaves it unadvised; a large block
 * moved into a huge block that asked is advised. Freeing everything takes all advice back. */
static void test_segment_move_takes_the_destinations_large_page_advice(void** state) {
  (void)state;
  if (fake_backend_imitates_wasm() || fake_backend_imitates_windows()) skip(); /* no move */
  lm_backend_caps_t caps;
  fake_backend_get_caps(&caps);
  caps.has_large_page_advice = true;
  fake_backend_set_caps(&caps);
  const size_t chunk = caps.large_page_size, size = 8 * LM_MiB;
  config_t c = base_config();
  c.mem.arena_reserve = 8 * SEG;
  c.seg.large_pages_from = SEG / 2;
  start(&c);
  lm_page_t* huge = page_alloc(LM_LARGE_OBJ_SIZE_MAX + 4 * chunk);
  lm_segment_huge_advise_large(&segs, huge);
  lm_page_t* large = page_alloc(size); /* from the start of a segment: below the threshold */
  uint8_t* h = lm_page_area(huge, NULL);
  uint8_t* l = lm_page_area(large, NULL);
  uint8_t* h_first = (uint8_t*)lm_align_up((uintptr_t)h, chunk);
  assert_true(fake_backend_is_large_advised(h_first, 2 * chunk));
  assert_false(fake_backend_is_large_advised(l + size - chunk, chunk));
  for (size_t i = 0; i < size; i += 512) h[i] = (uint8_t)(i / 512 + 1);
  assert_int_equal(lm_segment_move(&segs, large, huge, size), size);
  for (size_t i = 0; i < size; i += 512) assert_int_equal(l[i], (uint8_t)(i / 512 + 1));
  assert_true(all_zero(h, size));
  /* What came along was taken back, over every large page the block covers (the pieces
   * at its ends, smaller than a large page, keep theirs: no large page fits there). */
  uint8_t* l_first = (uint8_t*)lm_align_up((uintptr_t)l, chunk);
  for (uint8_t* q = l_first; q + chunk <= l + size; q += chunk) {
    assert_false(fake_backend_is_large_advised(q, chunk));
  }
  /* and back into a second huge block that asked: advised over its moved part too */
  lm_page_t* huge2 = page_alloc(LM_LARGE_OBJ_SIZE_MAX + 4 * chunk);
  lm_segment_huge_advise_large(&segs, huge2);
  uint8_t* h2 = lm_page_area(huge2, NULL);
  lm_os_advise_large(&arenas, h2, size, false); /* (so that only the move can set it again) */
  assert_int_equal(lm_segment_move(&segs, huge2, large, size), size);
  assert_int_equal(h2[512], 2);
  uint8_t* h2_first = (uint8_t*)lm_align_up((uintptr_t)h2, chunk);
  assert_true(fake_backend_is_large_advised(h2_first, (size_t)(h2 + size - h2_first) / chunk *
                                                          chunk));
  assert_true(lm_segment_page_free(huge, &tld));
  assert_true(lm_segment_page_free(large, &tld));
  assert_true(lm_segment_page_free(huge2, &tld));
  assert_int_equal(atomic_load(&segs.count), 0);
  assert_true(fake_backend_large_advised_bytes() < chunk);
}

static void test_segment_span_available(void** state) {
  (void)state;
  config_t c = base_config();
  start(&c);
  assert_false(lm_segment_span_available(&tld, 64, 0));
  assert_true(lm_segment_span_available(&tld, LM_LARGE_OBJ_SIZE_MAX + 1, 0)); /* huge: always */
  lm_page_t* x = page_alloc(64);
  assert_true(lm_segment_span_available(&tld, 64, 0));
  assert_true(lm_segment_span_available(&tld, LM_MEDIUM_OBJ_SIZE_MAX, 0));
  assert_true(lm_segment_span_available(&tld, LM_LARGE_OBJ_SIZE_MAX, 0));
  assert_false(lm_segment_span_available(&tld2, 64, 0)); /* spans belong to their thread */
  assert_true(lm_segment_page_free(x, &tld));
}

/* ---- commit and purge ------------------------------------------------------------------------ */

static void test_segment_lazy_commit_commits_only_the_page(void** state) {
  (void)state;
  if (fake_backend_imitates_wasm()) skip(); /* committed at reserve: no commit */
  config_t c = base_config();
  c.mem.arena_eager_commit = 0;
  c.seg.eager_commit = false;
  start(&c);
  lm_page_t* page = page_alloc(LM_SMALL_OBJ_SIZE_MAX + 8);
  lm_segment_t* segment = lm_segment_of(page);
  size_t size;
  uint8_t* area = lm_page_area(page, &size);
  assert_true(fake_backend_is_committed(segment, segment->info_slices * SLICE)); /* header */
  check_usable(page, true);
  assert_false(fake_backend_is_committed(area + size, SLICE)); /* the free rest is not */
  assert_true(lm_segment_page_free(page, &tld));
}

static void test_segment_alloc_over_lazily_committed_arena_starts_clean(void** state) {
  (void)state;
  /* The arena commits the block when the segment claims it (eager segment commit over a lazily
   * committed arena); the fake scribbles newly committed memory, so the header must be
   * cleared unless the memory is known to be zero. */
  config_t c = base_config();
  c.mem.arena_eager_commit = 0;
  c.seg.eager_commit = true;
  start(&c);
  lm_page_t* page = page_alloc(64);
  lm_segment_t* segment = lm_segment_of(page);
  assert_int_equal(segment->used, 1);
  assert_int_equal(segment->abandoned, 0);
  assert_int_equal(segment->purge_expire, 0);
  assert_false(segment->purge_flagged);
  assert_null(segment->abandoned_next);
  if (page->is_zero_init) assert_true(all_zero(lm_page_area(page, NULL), SLICE));
  assert_true(lm_segment_page_free(page, &tld));
  assert_int_equal(atomic_load(&segs.count), 0);
}

static void test_segment_purges_free_span_only_after_the_delay(void** state) {
  (void)state;
  if (fake_backend_imitates_wasm()) skip(); /* no decommit, so no purge */
  config_t c = base_config();
  c.seg.purge_delay_ms = 10;
  c.seg.purge_extend_ms = 1;
  start(&c);
  lm_page_t* x = page_alloc(64);
  lm_page_t* a = page_alloc(LM_SMALL_OBJ_SIZE_MAX + 8);
  lm_segment_t* segment = lm_segment_of(x);
  size_t size;
  uint8_t* area = lm_page_area(a, &size);
  memset(area, 0x33, size);
  size_t decommits = fake_backend_calls(FAKE_OP_DECOMMIT);

  lm_segment_page_free(a, &tld);
  assert_int_equal(fake_backend_calls(FAKE_OP_DECOMMIT), decommits);
  assert_int_equal(segment->purge_expire, 10);
  assert_true(segment->purge_flagged);
  assert_true(lm_arena_flag_is_set(&arenas, segment, LM_BLOCK_PURGE_PENDING));
  assert_true(fake_backend_is_committed(area, size));

  fake_backend_set_clock(5);
  lm_segment_collect(&tld, segment, false);
  assert_int_equal(fake_backend_calls(FAKE_OP_DECOMMIT), decommits);
  assert_true(fake_backend_is_committed(area, size));

  fake_backend_set_clock(11);
  lm_segment_collect(&tld, segment, false);
  assert_true(fake_backend_calls(FAKE_OP_DECOMMIT) > decommits);
  assert_false(fake_backend_is_committed(area, size));
  assert_true(fake_backend_is_committed(lm_page_area(x, NULL), SLICE)); /* in use: kept */
  assert_int_equal(segment->purge_expire, 0);

  /* The purged span is usable again (Linux-like decommit: accessible, reads zero). */
  lm_page_t* a2 = page_alloc(LM_SMALL_OBJ_SIZE_MAX + 8);
  assert_ptr_equal(lm_page_area(a2, NULL), area);
  check_usable(a2, false);
  lm_segment_page_free(a2, &tld);
  lm_segment_page_free(x, &tld);
  assert_int_equal(atomic_load(&segs.count), 0);
  assert_int_equal(lm_arena_flag_count(&arenas, LM_BLOCK_PURGE_PENDING), 0);
}

/* A large block's memory waits purge_delay x arena_purge_mult, and holds back the segment's
 * deadline that a small page set earlier; a medium page keeps the plain delay. */
static void test_segment_large_block_purge_waits_as_long_as_arena_memory(void** state) {
  (void)state;
  if (fake_backend_imitates_wasm()) skip(); /* no decommit, so no purge */
  config_t c = base_config();
  c.seg.purge_delay_ms = 10;
  c.seg.purge_extend_ms = 1;
  c.mem.purge_delay_ms = 10;
  c.mem.arena_purge_mult = 10;
  start(&c);
  lm_page_t* x = page_alloc(64);
  lm_page_t* medium = page_alloc(LM_MEDIUM_OBJ_SIZE_MAX); /* 8 slices */
  lm_page_t* y = page_alloc(64);
  lm_page_t* large = page_alloc(LM_MiB); /* 16 slices */
  lm_page_t* z = page_alloc(64);
  lm_segment_t* segment = lm_segment_of(x);
  size_t size;
  uint8_t* area = lm_page_area(large, &size);
  memset(area, 0x44, size);
  size_t decommits = fake_backend_calls(FAKE_OP_DECOMMIT);

  lm_segment_page_free(medium, &tld);
  assert_int_equal(segment->purge_expire, 10); /* the plain delay */
  fake_backend_set_clock(2);
  lm_segment_page_free(large, &tld);
  assert_int_equal(segment->purge_expire, 102); /* now + 10 x 10 */
  fake_backend_set_clock(50);
  lm_segment_collect(&tld, segment, false);
  assert_int_equal(fake_backend_calls(FAKE_OP_DECOMMIT), decommits);
  assert_true(fake_backend_is_committed(area, size));
  fake_backend_set_clock(103);
  lm_segment_collect(&tld, segment, false);
  assert_true(fake_backend_calls(FAKE_OP_DECOMMIT) > decommits);
  assert_false(fake_backend_is_committed(area, size));

  lm_segment_page_free(x, &tld);
  lm_segment_page_free(y, &tld);
  assert_true(lm_segment_page_free(z, &tld));
  assert_int_equal(atomic_load(&segs.count), 0);
}

static void test_segment_purge_deadline_extends_on_further_frees(void** state) {
  (void)state;
  if (fake_backend_imitates_wasm()) skip(); /* no decommit, so no purge */
  config_t c = base_config();
  c.seg.purge_delay_ms = 10;
  c.seg.purge_extend_ms = 3;
  start(&c);
  lm_page_t* x = page_alloc(64);
  lm_page_t* a = page_alloc(64);
  lm_page_t* y = page_alloc(64);
  lm_page_t* b = page_alloc(64);
  lm_page_t* z = page_alloc(64);
  lm_segment_t* segment = lm_segment_of(x);
  lm_segment_page_free(a, &tld);
  assert_int_equal(segment->purge_expire, 10);
  fake_backend_set_clock(5);
  lm_segment_page_free(b, &tld);
  assert_int_equal(segment->purge_expire, 13);
  fake_backend_set_clock(12);
  lm_segment_collect(&tld, segment, false);
  assert_int_equal(segment->purge_expire, 13);
  lm_segment_collect(&tld, segment, true); /* force: now */
  assert_int_equal(segment->purge_expire, 0);
  lm_segment_page_free(x, &tld);
  lm_segment_page_free(y, &tld);
  assert_true(lm_segment_page_free(z, &tld));
}

/* A pass gives back what was free when its deadline was set, and spares what was freed since:
 * that waits for the next pass, a delay later (a busy thread often takes again at once what it
 * frees; a free now purged at the next deadline would fault straight back in). Further frees
 * push the deadline back, but never past two delays after the first. Before, they pushed it up
 * to 50 delays, and a pass gave back all that was free: bench threadchurn (threads freeing
 * pages every few microseconds) peaked at 53.0 MiB, 49.7 now (medians of 9 runs). */
static void test_segment_purge_spares_slices_freed_since_its_deadline_was_set(void** state) {
  (void)state;
  if (fake_backend_imitates_wasm()) skip(); /* no decommit, so no purge */
  config_t c = base_config();
  c.seg.purge_delay_ms = 10;
  c.seg.purge_extend_ms = 1;
  start(&c);
  enum { N = 12 };
  lm_page_t* kept[N];
  lm_page_t* freed[N];
  uint8_t* area[N];
  for (size_t i = 0; i < N; i++) {
    kept[i] = page_alloc(64); /* (keeps the freed pages apart: no coalescing) */
    freed[i] = page_alloc(64);
    area[i] = lm_page_area(freed[i], NULL);
    area[i][0] = 1;
  }
  lm_segment_t* segment = lm_segment_of(kept[0]);
  lm_segment_page_free(freed[0], &tld);
  assert_int_equal(segment->purge_expire, 10);
  for (size_t i = 1; i < N; i++) {
    fake_backend_set_clock((int64_t)i);
    lm_segment_page_free(freed[i], &tld);
  }
  assert_int_equal(segment->purge_expire, 20); /* pushed by 1 a free, to 2 delays at most */

  fake_backend_set_clock(20);
  lm_segment_collect(&tld, segment, false);
  assert_false(fake_backend_is_committed(area[0], SLICE));
  for (size_t i = 1; i < N; i++) assert_true(fake_backend_is_committed(area[i], SLICE));
  assert_int_equal(segment->purge_expire, 30);

  /* Taken again before the next pass (the lowest first: the purged one, then a spared one):
   * not purged under their new pages. */
  lm_page_t* again = page_alloc(64);
  lm_page_t* again_spared = page_alloc(64);
  assert_ptr_equal(lm_page_area(again, NULL), area[0]);
  assert_ptr_equal(lm_page_area(again_spared, NULL), area[1]);
  area[0][0] = 2;
  area[1][0] = 3;
  fake_backend_set_clock(30);
  lm_segment_collect(&tld, segment, false);
  assert_int_equal(segment->purge_expire, 0);
  for (size_t i = 2; i < N; i++) assert_false(fake_backend_is_committed(area[i], SLICE));
  assert_true(fake_backend_is_committed(area[1], SLICE));
  assert_int_equal(area[0][0], 2);
  assert_int_equal(area[1][0], 3);
  lm_segment_page_free(again, &tld);
  lm_segment_page_free(again_spared, &tld);
  for (size_t i = 0; i + 1 < N; i++) lm_segment_page_free(kept[i], &tld);
  assert_true(lm_segment_page_free(kept[N - 1], &tld));
  assert_int_equal(atomic_load(&segs.count), 0);
}

/* A normal segment given back to its arena waits the plain purge delay there: its pages come
 * and go by the thousand. The arena's longer delay is for large blocks, which come and go a
 * few at a time: a segment whose large block was waiting keeps that wait, and a huge segment
 * has it. Before, every segment that short-lived threads emptied stayed resident for ten
 * delays (bench exchange: peak 65 -> 58 MiB, and fewer page faults). */
static void test_segment_freed_segment_waits_the_plain_delay_in_its_arena(void** state) {
  (void)state;
  if (fake_backend_imitates_wasm()) skip(); /* no decommit, so no purge */
  config_t c = base_config();
  c.seg.purge_delay_ms = 10;
  c.mem.purge_delay_ms = 10;
  c.mem.arena_purge_mult = 10;
  start(&c);
  lm_page_t* small = page_alloc(64);
  fake_backend_set_clock(5);
  assert_true(lm_segment_page_free(small, &tld));
  assert_int_equal(lm_arenas_purge_deadline(&arenas), 15);
  fake_backend_set_clock(15);
  assert_false(lm_arenas_try_purge(&arenas, false));

  lm_page_t* large = page_alloc(LM_MiB);
  fake_backend_set_clock(20);
  assert_true(lm_segment_page_free(large, &tld));
  assert_int_equal(lm_arenas_purge_deadline(&arenas), 120);
  fake_backend_set_clock(120);
  assert_false(lm_arenas_try_purge(&arenas, false));

  lm_page_t* huge = page_alloc(LM_LARGE_OBJ_SIZE_MAX + LM_MiB);
  assert_true(huge->is_huge);
  bool in_arena = lm_segment_of(huge)->memid.kind == LM_MEM_ARENA;
  fake_backend_set_clock(130);
  assert_true(lm_segment_page_free(huge, &tld));
  if (in_arena) assert_int_equal(lm_arenas_purge_deadline(&arenas), 230);
  assert_false(lm_arenas_try_purge(&arenas, true));
  assert_int_equal(atomic_load(&segs.count), 0);
}

static void test_segment_purges_at_once_with_zero_delay(void** state) {
  (void)state;
  if (fake_backend_imitates_wasm()) skip(); /* no decommit, so no purge */
  config_t c = base_config();
  c.seg.purge_delay_ms = 0;
  start(&c);
  lm_page_t* x = page_alloc(64);
  lm_page_t* a = page_alloc(64);
  lm_segment_t* segment = lm_segment_of(x);
  uint8_t* area = lm_page_area(a, NULL);
  area[0] = 1;
  size_t decommits = fake_backend_calls(FAKE_OP_DECOMMIT);
  lm_segment_page_free(a, &tld);
  assert_true(fake_backend_calls(FAKE_OP_DECOMMIT) > decommits);
  assert_false(fake_backend_is_committed(area, SLICE));
  assert_int_equal(segment->purge_expire, 0);
  assert_false(lm_arena_flag_is_set(&arenas, segment, LM_BLOCK_PURGE_PENDING));
  assert_true(lm_segment_page_free(x, &tld));
}

/* The masks are worked a word (64 slices) at a time: free spans that start or end at a word
 * boundary or cross one are purged exactly, their neighbours stay committed, and all of them
 * are committed again when their slices are reused; the pending count goes back to 0. */
static bool freed_slice(size_t slice) { /* slices [64, 70), [100, 128) and [150, 200) */
  return (slice >= 64 && slice < 70) || (slice >= 100 && slice < 128) ||
         (slice >= 150 && slice < 200);
}
/* Purging at once, over a backend whose decommitted memory is inaccessible until recommitted. */
static void start_purging_at_once_with_recommit(void) {
  fake_backend_set_needs_recommit(true);
  config_t c = base_config();
  c.seg.purge_delay_ms = 0;
  start(&c);
}
static void test_segment_purge_runs_across_mask_words(void** state) {
  (void)state;
  if (fake_backend_imitates_wasm()) skip(); /* no decommit, so no purge */
  start_purging_at_once_with_recommit();
  enum { PAGES = 210 };
  lm_page_t* pages[PAGES];
  uint8_t* areas[PAGES];
  size_t sizes[PAGES];
  for (size_t i = 0; i < PAGES; i++) {
    pages[i] = page_alloc(64);
    areas[i] = lm_page_area(pages[i], &sizes[i]);
  }
  lm_segment_t* segment = lm_segment_of(pages[0]);
  size_t first = slice_index(pages[0]);
  assert_int_equal(slice_index(pages[PAGES - 1]), first + PAGES - 1); /* one run of slices */
  for (size_t i = 0; i < PAGES; i++) {
    if (freed_slice(first + i)) lm_segment_page_free(pages[i], &tld);
  }
  for (size_t i = 0; i < PAGES; i++) {
    assert_true(fake_backend_is_committed(areas[i], sizes[i]) == !freed_slice(first + i));
  }
  assert_int_equal(atomic_load(&segs.purge_pending), 0);
  assert_int_equal(segment->purge_expire, 0);
  size_t commits = fake_backend_calls(FAKE_OP_COMMIT);
  for (size_t i = 0; i < PAGES; i++) {
    if (!freed_slice(first + i)) continue;
    pages[i] = page_alloc(64);
    assert_int_equal(slice_index(pages[i]), first + i); /* lowest address first */
    check_usable(pages[i], true);
  }
  assert_true(fake_backend_calls(FAKE_OP_COMMIT) > commits);
  for (size_t i = 0; i < PAGES; i++) lm_segment_page_free(pages[i], &tld);
}

static void test_segment_purged_span_is_recommitted_when_reused(void** state) {
  (void)state;
  if (fake_backend_imitates_wasm()) skip(); /* no decommit, so no purge */
  start_purging_at_once_with_recommit();
  lm_page_t* x = page_alloc(64);
  lm_page_t* a = page_alloc(64);
  uint8_t* area = lm_page_area(a, NULL);
  lm_segment_page_free(a, &tld);
  assert_false(fake_backend_is_committed(area, SLICE));
  size_t commits = fake_backend_calls(FAKE_OP_COMMIT);
  lm_page_t* a2 = page_alloc(64);
  assert_ptr_equal(lm_page_area(a2, NULL), area);
  assert_true(fake_backend_calls(FAKE_OP_COMMIT) > commits);
  check_usable(a2, true); /* faults if it was not recommitted */
  lm_segment_page_free(a2, &tld);
  assert_true(lm_segment_page_free(x, &tld));
}

/* A segment whose free slices were purged by a decommit (Windows' rule) goes back to its arena
 * before the arena's own purge: the next segment in that block must not take those slices as
 * committed (it did, and the first page over them faulted: tests/api under wine). */
static void test_segment_reused_block_recommits_slices_its_segment_decommitted(void** state) {
  (void)state;
  if (fake_backend_imitates_wasm()) skip(); /* no decommit, so no purge */
  fake_backend_set_needs_recommit(true); /* decommitted memory is inaccessible */
  config_t c = base_config();
  c.seg.purge_delay_ms = 0; /* free slices are decommitted at once */
  c.mem.purge_delay_ms = 1000; /* the arena keeps the freed block committed a while */
  start(&c);
  lm_page_t* x = page_alloc(64);
  lm_page_t* a = page_alloc(64);
  lm_segment_t* segment = lm_segment_of(x);
  uint8_t* area = lm_page_area(a, NULL);
  lm_segment_page_free(a, &tld);
  assert_false(fake_backend_is_committed(area, SLICE));
  assert_true(lm_segment_page_free(x, &tld)); /* the segment goes back to the arena */
  /* A new segment in the same block, and pages over every slice the old one used. */
  lm_page_t* x2 = page_alloc(64);
  assert_ptr_equal(lm_segment_of(x2), segment);
  lm_page_t* a2 = page_alloc(64);
  assert_ptr_equal(lm_page_area(a2, NULL), area);
  check_usable(a2, true); /* faults if it was taken as committed */
  lm_segment_page_free(a2, &tld);
  assert_true(lm_segment_page_free(x2, &tld));
}

static void test_segment_purge_flagged_purges_due_segments_of_any_thread(void** state) {
  (void)state;
  if (fake_backend_imitates_wasm()) skip(); /* no decommit, so no purge */
  config_t c = base_config();
  c.seg.purge_delay_ms = 10;
  start(&c);
  lm_page_t* x = page_alloc(64);
  lm_page_t* a = page_alloc(64);
  lm_segment_t* segment = lm_segment_of(x);
  uint8_t* area = lm_page_area(a, NULL);
  area[0] = 1;
  lm_segment_page_free(a, &tld);
  size_t decommits = fake_backend_calls(FAKE_OP_DECOMMIT);
  assert_int_equal(lm_segments_purge_flagged(&segs, 5, false), 10); /* not yet: the deadline */
  assert_int_equal(fake_backend_calls(FAKE_OP_DECOMMIT), decommits);
  assert_true(lm_arena_flag_is_set(&arenas, segment, LM_BLOCK_PURGE_PENDING));
  fake_backend_set_clock(10);
  assert_int_equal(lm_segments_purge_flagged(&segs, 10, false), 0); /* done */
  assert_true(fake_backend_calls(FAKE_OP_DECOMMIT) > decommits);
  assert_false(fake_backend_is_committed(area, SLICE));
  assert_false(lm_arena_flag_is_set(&arenas, segment, LM_BLOCK_PURGE_PENDING));
  assert_false(lm_arena_flag_is_set(&arenas, segment, LM_BLOCK_PURGER_BUSY));
  assert_false(segment->purge_flagged);
  assert_true(lm_segment_page_free(x, &tld));
}

/* ---- abandonment and reclamation ------------------------------------------------------------- */

static void test_segment_abandoned_with_its_last_page_and_reclaimed_elsewhere(void** state) {
  (void)state;
  config_t c = base_config();
  start(&c);
  lm_page_t* p1 = page_alloc(64);
  lm_page_t* p2 = page_alloc(LM_SMALL_OBJ_SIZE_MAX + 8);
  lm_page_t* p3 = page_alloc(LM_MiB);
  lm_segment_t* segment = lm_segment_of(p1);
  assert_ptr_equal(lm_segment_of(p2), segment);
  assert_ptr_equal(lm_segment_of(p3), segment);
  assert_false(spans_empty(&tld));
  lm_arena_cursor_t cursor = LM_ARENA_CURSOR_START;
  assert_null(lm_segment_reclaim(&tld2, &cursor)); /* nothing abandoned yet */

  lm_segment_page_abandon(p1, &tld);
  lm_segment_page_abandon(p2, &tld);
  assert_int_equal(lm_segments_abandoned_count(&segs), 0); /* p3 is still owned */
  assert_int_equal(lm_segment_owner(segment), lm_thread_id());
  lm_segment_page_abandon(p3, &tld);
  assert_int_equal(lm_segments_abandoned_count(&segs), 1);
  assert_int_equal(lm_segment_owner(segment), 0);
  assert_int_equal(tld.count, 0);
  assert_true(spans_empty(&tld)); /* its free spans left the owner's queues */
  assert_true(lm_arena_flag_is_set(&arenas, segment, LM_BLOCK_ABANDONED));
  assert_false(lm_segment_span_available(&tld, 64, 0));

  /* Another thread takes it over, with its free spans. */
  cursor = LM_ARENA_CURSOR_START;
  assert_ptr_equal(lm_segment_reclaim(&tld2, &cursor), segment);
  assert_int_equal(lm_segments_abandoned_count(&segs), 0);
  assert_false(lm_arena_flag_is_set(&arenas, segment, LM_BLOCK_ABANDONED));
  assert_int_equal(lm_segment_owner(segment), lm_thread_id());
  assert_int_equal(tld2.count, 1);
  assert_int_equal(tld2.reclaim_count, 1);
  assert_false(spans_empty(&tld2));
  assert_true(lm_segment_span_available(&tld2, 64, 0));
  cursor = LM_ARENA_CURSOR_START;
  assert_null(lm_segment_reclaim(&tld, &cursor)); /* exactly one claimer */

  /* Its pages, in address order, and no free span among them. */
  assert_ptr_equal(lm_segment_next_page(segment, NULL), p1);
  assert_ptr_equal(lm_segment_next_page(segment, p1), p2);
  assert_ptr_equal(lm_segment_next_page(segment, p2), p3);
  assert_null(lm_segment_next_page(segment, p3));
  check_lookup(p3);

  /* Given back untouched, then reclaimed again by the first thread. */
  lm_segment_abandon_again(segment, &tld2);
  assert_int_equal(lm_segments_abandoned_count(&segs), 1);
  assert_int_equal(tld2.count, 0);
  assert_true(spans_empty(&tld2));
  cursor = LM_ARENA_CURSOR_START;
  assert_ptr_equal(lm_segment_reclaim(&tld, &cursor), segment);
  assert_int_equal(lm_segment_owner(segment), lm_thread_id());

  /* The new owner frees the pages: the segment goes with the last one. */
  lm_segment_page_unabandon(p1, &tld);
  assert_false(lm_segment_page_free(p1, &tld));
  lm_segment_page_unabandon(p2, &tld);
  assert_false(lm_segment_page_free(p2, &tld));
  /* A page allocated meanwhile comes from the reclaimed segment's spans. */
  lm_page_t* q = page_alloc(64);
  assert_ptr_equal(lm_segment_of(q), segment);
  lm_segment_page_unabandon(p3, &tld);
  assert_false(lm_segment_page_free(p3, &tld));
  assert_true(lm_segment_page_free(q, &tld));
  assert_int_equal(atomic_load(&segs.count), 0);
  assert_int_equal(tld.count, 0);
  assert_true(spans_empty(&tld));
  assert_int_equal(lm_arena_flag_count(&arenas, LM_BLOCK_ABANDONED), 0);
}

static void test_segment_abandon_purges_pending_spans(void** state) {
  (void)state;
  if (fake_backend_imitates_wasm()) skip(); /* no decommit, so no purge */
  config_t c = base_config();
  c.seg.purge_delay_ms = 10;
  start(&c);
  lm_page_t* x = page_alloc(64);
  lm_page_t* a = page_alloc(64);
  lm_segment_t* segment = lm_segment_of(x);
  uint8_t* area = lm_page_area(a, NULL);
  area[0] = 1;
  lm_segment_page_free(a, &tld);
  assert_int_equal(segment->purge_expire, 10);
  lm_segment_page_abandon(x, &tld); /* nobody allocates here for a while: purge now */
  assert_int_equal(segment->purge_expire, 0);
  assert_false(fake_backend_is_committed(area, SLICE));
  lm_arena_cursor_t cursor = LM_ARENA_CURSOR_START;
  assert_ptr_equal(lm_segment_reclaim(&tld2, &cursor), segment);
  lm_segment_page_unabandon(x, &tld);
  assert_true(lm_segment_page_free(x, &tld2));
}

static void test_segment_abandoned_outside_arenas_is_reclaimed_from_the_list(void** state) {
  (void)state;
  config_t c = base_config();
  start(&c);
  /* A huge aligned page lives in OS memory (no arena block flags). */
  lm_page_t* page = lm_segment_page_alloc(&tld, LM_MiB, 64 * LM_MiB, 0);
  assert_non_null(page);
  lm_segment_t* segment = lm_segment_of(page);
  assert_int_equal(segment->memid.kind, LM_MEM_OS);
  lm_segment_page_abandon(page, &tld);
  assert_int_equal(lm_segments_abandoned_count(&segs), 1);
  assert_int_equal(lm_arena_flag_count(&arenas, LM_BLOCK_ABANDONED), 0);
  assert_ptr_equal(segs.abandoned_os, segment);
  lm_arena_cursor_t cursor = LM_ARENA_CURSOR_START;
  assert_ptr_equal(lm_segment_reclaim(&tld2, &cursor), segment);
  assert_null(segs.abandoned_os);
  assert_int_equal(lm_segments_abandoned_count(&segs), 0);
  assert_ptr_equal(lm_segment_next_page(segment, NULL), page);
  assert_null(lm_segment_next_page(segment, page));
  lm_segment_page_unabandon(page, &tld);
  assert_true(lm_segment_page_free(page, &tld2));
  assert_int_equal(atomic_load(&segs.count), 0);
}

/* ---- fault injection ------------------------------------------------------------------------- */

/* Lazily committed arenas (the fake has no overcommit) and segments: page allocation commits. */
static config_t lazy_config(void) {
  config_t c = base_config();
  c.mem.arena_eager_commit = 2;
  c.seg.eager_commit = false;
  return c;
}

static void test_segment_page_alloc_fails_cleanly_when_header_commit_fails(void** state) {
  (void)state;
  if (fake_backend_imitates_wasm()) skip(); /* committed at reserve: no commit */
  config_t c = lazy_config();
  start(&c);
  assert_false(arenas.caps.has_overcommit);
  fake_backend_fail_nth(FAKE_OP_COMMIT, 1);
  assert_null(lm_segment_page_alloc(&tld, 64, 0, 0));
  assert_int_equal(fake_backend_failures(FAKE_OP_COMMIT), 1);
  assert_int_equal(atomic_load(&segs.count), 0);
  assert_int_equal(tld.count, 0);
  assert_true(spans_empty(&tld));
  /* The failure is lifted: it works, in the same arena block. */
  check_first_arena_all_free(4);
  lm_page_t* page = page_alloc(64);
  check_usable(page, true);
  assert_true(lm_segment_page_free(page, &tld));
}

static void test_segment_page_alloc_fails_cleanly_when_page_commit_fails(void** state) {
  (void)state;
  if (fake_backend_imitates_wasm()) skip(); /* committed at reserve: no commit */
  config_t c = lazy_config();
  start(&c);
  fake_backend_fail_nth(FAKE_OP_COMMIT, 2); /* the header commits, the page does not */
  assert_null(lm_segment_page_alloc(&tld, 64, 0, 0));
  assert_int_equal(fake_backend_failures(FAKE_OP_COMMIT), 1);
  assert_int_equal(atomic_load(&segs.count), 0); /* the empty segment was given back */
  assert_int_equal(tld.count, 0);
  assert_true(spans_empty(&tld));
  check_first_arena_all_free(4);
  lm_page_t* page = page_alloc(64);
  check_usable(page, true);
  assert_true(lm_segment_page_free(page, &tld));
}

static void test_segment_page_alloc_in_live_segment_fails_cleanly_when_commit_fails(void** state) {
  (void)state;
  if (fake_backend_imitates_wasm()) skip(); /* committed at reserve: no commit */
  config_t c = lazy_config();
  start(&c);
  lm_page_t* x = page_alloc(64);
  lm_segment_t* segment = lm_segment_of(x);
  size_t first = slice_index(x) + 1;
  size_t rest = segment->segment_slices - first;
  assert_int_equal(segment->slices[first].slice_count, rest);

  fake_backend_fail_nth(FAKE_OP_COMMIT, 1);
  assert_null(lm_segment_page_alloc(&tld, LM_MiB, 0, 0));
  assert_int_equal(fake_backend_failures(FAKE_OP_COMMIT), 1);
  assert_int_equal(segment->used, 1);
  assert_int_equal(atomic_load(&segs.count), 1);
  /* The free space is one span again, as before the attempt. */
  assert_int_equal(segment->slices[first].block_size, 0);
  assert_int_equal(segment->slices[first].slice_count, rest);
  assert_true(span_queued(&tld, &segment->slices[first]));

  lm_page_t* page = page_alloc(LM_MiB); /* lifted: same place */
  assert_ptr_equal(page, &segment->slices[first]);
  check_usable(page, true);
  lm_segment_page_free(page, &tld);
  assert_true(lm_segment_page_free(x, &tld));
}

static void test_segment_huge_page_alloc_fails_cleanly_when_commit_fails(void** state) {
  (void)state;
  if (fake_backend_imitates_wasm()) skip(); /* committed at reserve: no commit */
  config_t c = lazy_config();
  c.mem.disallow_os_alloc = true; /* no OS fallback: the arena must commit */
  start(&c);
  assert_int_equal(lm_arena_reserve(&arenas, 2 * SEG, false, false, NULL), 0);
  size_t live = fake_backend_live_reservations();
  fake_backend_fail_always(FAKE_OP_COMMIT, true);
  assert_null(lm_segment_page_alloc(&tld, 20 * LM_MiB, 0, 0));
  assert_int_equal(atomic_load(&segs.count), 0);
  assert_int_equal(fake_backend_live_reservations(), live);
  fake_backend_fail_always(FAKE_OP_COMMIT, false);
  lm_page_t* page = page_alloc(20 * LM_MiB);
  check_usable(page, true);
  assert_true(lm_segment_page_free(page, &tld));
}

static void test_segment_page_alloc_fails_cleanly_when_reserve_fails(void** state) {
  (void)state;
  config_t c = base_config();
  start(&c);
  fake_backend_fail_always(FAKE_OP_RESERVE, true);
  assert_null(lm_segment_page_alloc(&tld, 64, 0, 0));
  assert_null(lm_segment_page_alloc(&tld, LM_LARGE_OBJ_SIZE_MAX, 0, 0));
  assert_null(lm_segment_page_alloc(&tld, 40 * LM_MiB, 0, 0));
  assert_null(lm_segment_page_alloc(&tld, 64, 64 * LM_MiB, 0));
  assert_true(fake_backend_failures(FAKE_OP_RESERVE) > 0);
  assert_int_equal(atomic_load(&segs.count), 0);
  assert_int_equal(tld.count, 0);
  assert_true(spans_empty(&tld));
  assert_int_equal(fake_backend_live_reservations(), 0);
  fake_backend_fail_always(FAKE_OP_RESERVE, false);
  lm_page_t* page = page_alloc(64);
  assert_true(lm_segment_page_free(page, &tld));
}

/* ---- growth offset ---------------------------------------------------------------------- */

/* What another thread does before the main thread grows: it makes a segment of its own (one
 * page kept, four freed: free spans waiting for their purge) and empties a huge one (an arena
 * block it freed, waiting too). Runs on its own thread, so both are that thread's. */
typedef struct other_thread_s {
  lm_page_t* kept;
  uint8_t* freed_area;
  size_t freed_size;
  uint8_t* huge_area;
} other_thread_t;

static void* other_thread_main(void* arg) {
  other_thread_t* o = arg;
  o->kept = lm_segment_page_alloc(&tld2, 64, 0, 0);
  lm_page_t* freed[4];
  for (size_t i = 0; i < 4; i++) {
    freed[i] = lm_segment_page_alloc(&tld2, LM_SMALL_OBJ_SIZE_MAX + 8, 0, 0);
    if (freed[i] == NULL) return NULL;
    memset(lm_page_area(freed[i], &o->freed_size), 0x44, o->freed_size);
  }
  o->freed_area = lm_page_area(freed[0], NULL);
  o->freed_size *= 4; /* the four pages lie side by side after the first */
  lm_page_t* huge = lm_segment_page_alloc(&tld2, LM_LARGE_OBJ_SIZE_MAX + 1, 0, 0);
  if (huge == NULL) return NULL;
  o->huge_area = lm_page_area(huge, NULL);
  lm_segment_page_free(huge, &tld2);
  for (size_t i = 0; i < 4; i++) lm_segment_page_free(freed[i], &tld2);
  return NULL;
}

/* A thread that takes fresh memory for its pages while memory other threads freed waits for
 * its purge makes up for it: the next purger pass purges the others' free spans and the arena
 * blocks they freed before their delay, but leaves the grower's own pending memory alone. */
static void test_segment_growth_purges_what_other_threads_left_waiting(void** state) {
  (void)state;
  if (fake_backend_imitates_wasm()) skip(); /* no decommit, so no purge is ever pending */
  config_t c = base_config();
  c.mem.purge_delay_ms = 1000; /* the clock stays at 0: nothing falls due */
  c.mem.arena_reserve = 8 * SEG;
  c.seg.purge_delay_ms = 1000;
  start(&c);
  /* The main thread's segment and huge block come first, so neither is a warm claim of the
   * memory the other thread frees. */
  lm_page_t* first = page_alloc(64);
  lm_page_t* own_huge = page_alloc(LM_LARGE_OBJ_SIZE_MAX + 1);
  other_thread_t o = {0};
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, other_thread_main, &o), 0);
  assert_int_equal(pthread_join(t, NULL), 0);
  assert_non_null(o.kept);
  assert_non_null(o.huge_area);
  lm_segment_t* other = lm_segment_of(o.kept);
  assert_true(other->purge_flagged);
  assert_true(fake_backend_is_committed(o.freed_area, o.freed_size));
  assert_int_equal(lm_arenas_purge_pending(&arenas), SEG);
  /* Nothing was pending while those pages were made: no debt. */
  assert_int_equal(atomic_load(&segs.growth_debt), 0);
  lm_segments_offset_growth(&segs); /* below the step: does nothing */
  assert_true(other->purge_flagged);

  /* The main thread grows by a step's worth of fresh slices. */
  enum { MAX_GROWTH = LM_SLICES_PER_SEGMENT };
  static lm_page_t* grown[MAX_GROWTH];
  size_t n = 0;
  while (atomic_load(&segs.growth_debt) < LM_GROWTH_OFFSET_STEP) {
    assert_true(n < MAX_GROWTH);
    grown[n++] = page_alloc(LM_SMALL_OBJ_SIZE_MAX + 8);
    assert_ptr_equal(lm_segment_of(grown[n - 1]), lm_segment_of(first));
  }
  assert_int_equal(n * lm_segment_page_slices(LM_SMALL_OBJ_SIZE_MAX + 8) * SLICE,
                   LM_GROWTH_OFFSET_STEP);
  /* Its own memory waiting too: a page it frees, and a huge block it empties. */
  size_t own_size;
  uint8_t* own_area = lm_page_area(grown[n - 1], &own_size);
  lm_segment_page_free(grown[--n], &tld);
  lm_segment_t* mine = lm_segment_of(first);
  assert_true(mine->purge_flagged);
  lm_segment_page_free(own_huge, &tld);
  assert_int_equal(lm_arenas_purge_pending(&arenas), 2 * SEG);

  size_t decommits = fake_backend_calls(FAKE_OP_DECOMMIT);
  lm_segments_offset_growth(&segs);
  assert_true(fake_backend_calls(FAKE_OP_DECOMMIT) > decommits);
  assert_int_equal(atomic_load(&segs.growth_debt), 0);
  /* The other thread's free spans and arena block are purged... */
  assert_false(other->purge_flagged);
  assert_int_equal(other->purge_expire, 0);
  assert_false(fake_backend_is_committed(o.freed_area, o.freed_size));
  assert_false(fake_backend_is_committed(o.huge_area, SLICE));
  /* ...the grower's own are not. */
  assert_true(mine->purge_flagged);
  assert_int_equal(mine->purge_expire, 1000);
  assert_true(fake_backend_is_committed(own_area, own_size));
  assert_int_equal(lm_arenas_purge_pending(&arenas), SEG);

  for (size_t i = 0; i < n; i++) lm_segment_page_free(grown[i], &tld);
  assert_true(lm_segment_page_free(first, &tld));
  assert_true(lm_segment_page_free(o.kept, &tld2));
  assert_int_equal(atomic_load(&segs.count), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
      T(test_segment_page_slices_per_size_class),
      T(test_segment_page_alloc_gives_pages_of_the_right_size),
      T(test_segment_huge_pages_map_back_to_their_page),
      T(test_segment_huge_page_with_large_alignment_is_aligned),
      T(test_segment_page_alloc_respects_arena_id),
      T(test_segment_free_coalesces_spans_and_frees_the_empty_segment),
      T(test_segment_free_span_is_reused_best_fit),
      T(test_segment_free_span_is_reused_lowest_address_first),
      T(test_segment_emptied_segment_is_taken_back_before_an_untouched_tail),
      T(test_segment_emptied_segment_above_is_taken_back_too),
      T(test_segment_large_page_resizes_in_place),
      T(test_segment_large_pages_follow_small_pages_past_the_threshold),
      T(test_segment_outgrown_thread_gets_large_pages_from_the_start),
      T(test_segment_huge_block_asks_for_large_pages_when_told),
      T(test_segment_move_takes_the_destinations_large_page_advice),
    T(test_segment_span_available),
      T(test_segment_lazy_commit_commits_only_the_page),
      T(test_segment_alloc_over_lazily_committed_arena_starts_clean),
      T(test_segment_purges_free_span_only_after_the_delay),
      T(test_segment_purge_deadline_extends_on_further_frees),
      T(test_segment_purge_spares_slices_freed_since_its_deadline_was_set),
      T(test_segment_freed_segment_waits_the_plain_delay_in_its_arena),
      T(test_segment_growth_purges_what_other_threads_left_waiting),
      T(test_segment_large_block_purge_waits_as_long_as_arena_memory),
      T(test_segment_purges_at_once_with_zero_delay),
      T(test_segment_purge_runs_across_mask_words),
      T(test_segment_purged_span_is_recommitted_when_reused),
      T(test_segment_reused_block_recommits_slices_its_segment_decommitted),
      T(test_segment_purge_flagged_purges_due_segments_of_any_thread),
      T(test_segment_abandoned_with_its_last_page_and_reclaimed_elsewhere),
      T(test_segment_abandon_purges_pending_spans),
      T(test_segment_abandoned_outside_arenas_is_reclaimed_from_the_list),
      T(test_segment_page_alloc_fails_cleanly_when_header_commit_fails),
      T(test_segment_page_alloc_fails_cleanly_when_page_commit_fails),
      T(test_segment_page_alloc_in_live_segment_fails_cleanly_when_commit_fails),
      T(test_segment_huge_page_alloc_fails_cleanly_when_commit_fails),
      T(test_segment_page_alloc_fails_cleanly_when_reserve_fails),
#undef T
  };
  return cmocka_run_group_tests_name("segment", tests, NULL, NULL);
}
