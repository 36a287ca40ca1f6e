/* A libFuzzer target: random sequences of the public API against a shadow model.
 *
 * Each input is a program of operations, two to five bytes each (op, slot, size or argument):
 * malloc, calloc, zalloc, realloc, reallocn, the aligned variants (malloc/zalloc/realloc
 * aligned, aligned_at), mi_expand, mi_usable_size, heap new/malloc/delete/destroy/collect, and
 * frees from a second thread. The model keeps up to SLOTS live blocks with their requested size,
 * alignment, heap and a seed; every block holds a pattern derived from its seed at its start
 * and its end, checked before each use and before its free, so a block that moves, shrinks, is
 * handed out twice or is overwritten by the allocator is found. Sizes, zeroing and alignment are
 * checked as each block comes back. A mismatch aborts (libFuzzer keeps the input).
 *
 * Built by tests/fuzz/run.sh with clang -fsanitize=fuzzer,address,undefined over the single-
 * source library (src/static.c, without the libc names: ASan's malloc serves the C library,
 * ours only the mi_ API, and its free blocks are poisoned for ASan). */
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mimalloc.h"

enum { SLOTS = 64, HEAPS = 4, EDGE = 32 };
#define LIVE_MAX ((size_t)32 << 20) /* live bytes the model allows (keeps inputs cheap) */

typedef struct slot_s {
  uint8_t* p;
  size_t size;  /* requested */
  size_t align; /* requested alignment (0: none) */
  int heap;     /* model heap index, or -1 for the default heap */
  uint8_t seed;
} slot_t;

static slot_t slots[SLOTS];
static mi_heap_t* heaps[HEAPS];
static size_t live_bytes;

static void check(bool ok, const char* what, size_t a, size_t b) {
  if (ok) return;
  fprintf(stderr, "fuzz_api: %s (%zu, %zu)\n", what, a, b);
  abort();
}

/* ---- the pattern at a block's start and end ------------------------------------------------- */
static uint8_t pattern(uint8_t seed, size_t i) { return (uint8_t)(seed * 31u + i * 7u + 1u); }

static void fill(uint8_t* p, size_t size, uint8_t seed) {
  for (size_t i = 0; i < size && i < EDGE; i++) p[i] = pattern(seed, i);
  for (size_t i = size > EDGE ? size - EDGE : EDGE; i < size; i++) p[i] = pattern(seed, i);
}

/* The first `upto` bytes of the block still hold its pattern (where fill wrote it). */
static void check_fill(const slot_t* s, size_t upto) {
  for (size_t i = 0; i < upto && i < EDGE; i++) {
    check(s->p[i] == pattern(s->seed, i), "block start changed", s->size, i);
  }
  for (size_t i = s->size > EDGE ? s->size - EDGE : EDGE; i < upto && i < s->size; i++) {
    check(s->p[i] == pattern(s->seed, i), "block end changed", s->size, i);
  }
}

/* Zero from `from` to `size`: every byte of the first 64 KiB and of the last 4 KiB (a whole
 * 8 MiB block checked byte by byte under ASan would take most of an input's time). */
static void check_zero(const uint8_t* p, size_t from, size_t size) {
  size_t head = from + ((size_t)64 << 10) < size ? from + ((size_t)64 << 10) : size;
  for (size_t i = from; i < head; i++) check(p[i] == 0, "zeroed block not zero", size, i);
  size_t tail = size > head + 4096 ? size - 4096 : head;
  for (size_t i = tail; i < size; i++) check(p[i] == 0, "zeroed block not zero", size, i);
}

static void check_new(const slot_t* s) {
  check(s->p != NULL, "null block", s->size, 0);
  check(mi_usable_size(s->p) >= s->size, "usable size below the request", s->size,
        mi_usable_size(s->p));
  if (s->align > 0) check((uintptr_t)s->p % s->align == 0, "misaligned", s->align, 0);
  check((uintptr_t)s->p % (s->size >= 16 ? 16 : 8) == 0 || s->align != 0 || s->size < 8,
        "below malloc's alignment", s->size, 0);
}

/* ---- the input, read byte by byte (zero past its end) --------------------------------------- */
typedef struct reader_s {
  const uint8_t* data;
  size_t left;
} reader_t;

static uint8_t byte(reader_t* r) {
  if (r->left == 0) return 0;
  r->left--;
  return *r->data++;
}

/* Mostly small sizes, some medium and large, rarely huge. */
static size_t size_of(reader_t* r) {
  uint8_t k = byte(r), v = byte(r);
  switch (k >> 5) {
    case 0: case 1: case 2: return v;                             /* 0..255 */
    case 3: case 4: return ((size_t)(k & 31) << 8 | v) + 1;       /* ..8 KiB */
    case 5: return ((size_t)(k & 31) << 12 | (size_t)v << 4) + 1; /* ..128 KiB */
    case 6: return ((size_t)(k & 31) << 15 | (size_t)v << 7) + 1; /* ..1 MiB */
    default:
      if ((k & 24) != 24) return ((size_t)(k & 7) << 15 | (size_t)v << 7) + 1; /* ..1 MiB */
      return ((size_t)(k & 7) << 20) + ((size_t)v << 12) + 1;                  /* ..8 MiB */
  }
}

static size_t align_of(reader_t* r) { return (size_t)1 << (byte(r) % 17); /* 1 .. 64 KiB */ }

/* ---- a second thread that frees what it is handed ---------------------------------------------- */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static void* handed; /* a block to free; NULL once freed */

static void* freer_main(void* arg) {
  (void)arg;
  pthread_mutex_lock(&lock);
  for (;;) {
    while (handed == NULL) pthread_cond_wait(&cond, &lock);
    mi_free(handed);
    handed = NULL;
    pthread_cond_broadcast(&cond);
  }
  return NULL;
}

static void free_remotely(void* p) {
  static pthread_t freer;
  static bool started;
  if (!started) {
    check(pthread_create(&freer, NULL, freer_main, NULL) == 0, "pthread_create", 0, 0);
    started = true;
  }
  pthread_mutex_lock(&lock);
  handed = p;
  pthread_cond_broadcast(&cond);
  while (handed != NULL) pthread_cond_wait(&cond, &lock);
  pthread_mutex_unlock(&lock);
}

/* ---- model operations ------------------------------------------------------------------------ */
static void drop(slot_t* s) {
  live_bytes -= s->size;
  *s = (slot_t){0};
}

static void release(slot_t* s, bool remote) {
  if (s->p == NULL) return;
  check_fill(s, s->size);
  if (remote) free_remotely(s->p);
  else mi_free(s->p);
  drop(s);
}

static void place(slot_t* s, uint8_t* p, size_t size, size_t align, int heap, bool zeroed,
                  uint8_t seed) {
  if (p == NULL) return; /* (out of memory: allowed, nothing to model) */
  *s = (slot_t){.p = p, .size = size, .align = align, .heap = heap, .seed = seed};
  check_new(s);
  if (zeroed) check_zero(p, 0, size);
  fill(p, size, seed);
  live_bytes += size;
}

/* Grow or shrink a block with one of the realloc forms; the prefix must survive. */
static void resize(slot_t* s, reader_t* r, int form) {
  if (s->p == NULL) return;
  size_t newsize = size_of(r);
  if (live_bytes - s->size + newsize > LIVE_MAX) return;
  size_t align = form == 2 ? align_of(r) : 0;
  size_t old_usable = mi_usable_size(s->p);
  check_fill(s, s->size);
  uint8_t* q;
  switch (form) {
    case 0: q = mi_realloc(s->p, newsize); break;
    case 1: q = mi_reallocn(s->p, newsize / 4 + 1, 4), newsize = newsize / 4 * 4 + 4; break;
    case 2: q = mi_realloc_aligned(s->p, newsize, align); break;
    default: q = mi_rezalloc(s->p, newsize); break;
  }
  if (q == NULL) return; /* the old block stays */
  slot_t n = *s;
  n.p = q;
  n.size = newsize;
  n.align = align;
  if (q != s->p) n.heap = -1; /* a moved block comes from the default heap */
  size_t keep = s->size < newsize ? s->size : newsize;
  /* the prefix moved with the block: check the start pattern the old block had */
  for (size_t i = 0; i < keep && i < EDGE; i++) {
    check(q[i] == pattern(s->seed, i), "realloc lost the contents", keep, i);
  }
  /* rezalloc zeroes what lies past the old block's usable size */
  if (form == 3) check_zero(q, old_usable > s->size ? old_usable : s->size, newsize);
  live_bytes = live_bytes - s->size + newsize;
  *s = n;
  fill(q, newsize, n.seed);
}

/* A heap goes: delete keeps its blocks (they move to the backing heap), destroy frees them. */
static void end_heap(int h, bool destroy) {
  if (heaps[h] == NULL) return;
  for (int i = 0; i < SLOTS; i++) {
    if (slots[i].p == NULL || slots[i].heap != h) continue;
    check_fill(&slots[i], slots[i].size);
    if (destroy) drop(&slots[i]);
    else slots[i].heap = -1;
  }
  if (destroy) mi_heap_destroy(heaps[h]);
  else mi_heap_delete(heaps[h]);
  heaps[h] = NULL;
}

/* A visit of a heap must see each block the model has in it. */
typedef struct visit_s {
  int h;
  size_t found; /* blocks of the model (those handed out at a block's start) */
  size_t total; /* every block visited */
} visit_t;

static bool count_visited(const mi_heap_t* heap, const mi_heap_area_t* area, void* block,
                          size_t block_size, void* arg) {
  (void)heap, (void)area, (void)block_size;
  visit_t* v = arg;
  if (block == NULL) return true;
  v->total++;
  for (int i = 0; i < SLOTS; i++) {
    if (slots[i].p != NULL && slots[i].heap == v->h && slots[i].align <= 16 &&
        (void*)slots[i].p == block) {
      v->found++;
    }
  }
  return true;
}

static void visit_heap(int h) {
  if (heaps[h] == NULL) return;
  visit_t v = {.h = h};
  check(mi_heap_visit_blocks(heaps[h], true, count_visited, &v), "visit stopped", 0, 0);
  size_t expected = 0, all = 0;
  for (int i = 0; i < SLOTS; i++) {
    if (slots[i].p == NULL || slots[i].heap != h) continue;
    all++;
    if (slots[i].align <= 16) expected++;
  }
  check(v.found == expected, "visit missed live blocks", expected, v.found);
  check(v.total == all, "visit saw blocks that are not live", all, v.total);
}

static void run_op(reader_t* r) {
  uint8_t op = byte(r);
  slot_t* s = &slots[byte(r) % SLOTS];
  uint8_t seed = (uint8_t)(r->left * 131u + op);
  int h = op % HEAPS;
  switch (op % 20) {
    case 0: case 1: {
      release(s, false);
      size_t size = size_of(r);
      if (live_bytes + size <= LIVE_MAX) place(s, mi_malloc(size), size, 0, -1, false, seed);
      break;
    }
    case 2: {
      release(s, false);
      size_t n = byte(r), size = size_of(r);
      if (live_bytes + n * size <= LIVE_MAX) {
        place(s, mi_calloc(n, size), n * size, 0, -1, true, seed);
      }
      break;
    }
    case 3: {
      release(s, false);
      size_t size = size_of(r);
      if (live_bytes + size <= LIVE_MAX) place(s, mi_zalloc(size), size, 0, -1, true, seed);
      break;
    }
    case 4: case 5: resize(s, r, 0); break;
    case 6: resize(s, r, 1); break;
    case 7: resize(s, r, 2); break;
    case 8: resize(s, r, 3); break;
    case 9: {
      release(s, false);
      size_t size = size_of(r), align = align_of(r);
      if (live_bytes + size > LIVE_MAX) break;
      bool zero = byte(r) & 1;
      uint8_t* p = zero ? mi_zalloc_aligned(size, align) : mi_malloc_aligned(size, align);
      place(s, p, size, align, -1, zero, seed);
      break;
    }
    case 10: {
      release(s, false);
      size_t size = size_of(r), align = align_of(r), offset = byte(r) % 64;
      if (live_bytes + size + offset > LIVE_MAX) break;
      uint8_t* p = mi_malloc_aligned_at(size + offset, align, offset);
      if (p != NULL) check(((uintptr_t)p + offset) % align == 0, "aligned_at", align, offset);
      place(s, p, size + offset, 1, -1, false, seed); /* (align 1: p itself may be anywhere) */
      break;
    }
    case 11: { /* _expand: in place or NULL, never a move */
      if (s->p == NULL) break;
      size_t newsize = size_of(r);
      uint8_t* q = mi_expand(s->p, newsize);
      check(q == NULL || q == s->p, "mi_expand moved the block", newsize, 0);
      if (q != NULL) check(mi_usable_size(q) >= newsize, "mi_expand too small", newsize, 0);
      check_fill(s, s->size);
      break;
    }
    case 12:
      if (s->p != NULL) {
        check(mi_usable_size(s->p) >= s->size, "usable size", s->size, mi_usable_size(s->p));
        check_fill(s, s->size);
      }
      break;
    case 13: release(s, false); break;
    case 14: release(s, true); break; /* from the second thread */
    case 15:
      if (heaps[h] == NULL) heaps[h] = mi_heap_new();
      break;
    case 16: {
      release(s, false);
      if (heaps[h] == NULL) break;
      size_t size = size_of(r);
      if (live_bytes + size > LIVE_MAX) break;
      bool zero = byte(r) & 1;
      place(s, zero ? mi_heap_zalloc(heaps[h], size) : mi_heap_malloc(heaps[h], size), size, 0,
            h, zero, seed);
      break;
    }
    case 17: end_heap(h, byte(r) & 1); break;
    case 18: visit_heap(h); break;
    default:
      if (heaps[h] != NULL && (byte(r) & 1)) mi_heap_collect(heaps[h], op & 1);
      else mi_collect(op & 1);
      break;
  }
}

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  reader_t r = {data, size};
  for (int n = 0; r.left > 0 && n < 4096; n++) run_op(&r);
  /* back to an empty model for the next input */
  for (int h = 0; h < HEAPS; h++) end_heap(h, false);
  for (int i = 0; i < SLOTS; i++) release(&slots[i], false);
  check(live_bytes == 0, "model lost bytes", live_bytes, 0);
  return 0;
}
