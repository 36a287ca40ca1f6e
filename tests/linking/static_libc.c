/* static_libc: a fully static program (-static) linked with mimalloc.o must have one allocator,
 * ours. Checks that
 *  - the allocation names (malloc, calloc, realloc, free, aligned_alloc, posix_memalign,
 *    memalign, valloc, malloc_usable_size) hand out and take back our blocks;
 *  - the C library's own allocations are ours: the results of strdup, strndup, getline,
 *    open_memstream, asprintf, realpath and scandir, and, counted as live blocks of the default
 *    heap, the FILE of fopen, the DIR of opendir, and what musl takes through its internal
 *    __libc_malloc/__libc_calloc (posix_spawn file actions, the 33rd atexit handler); each
 *    freed by the C library comes back;
 *  - none of the C library's allocators is in the program (weak references to the names they
 *    define stay unresolved), so no block can reach the other allocator's free;
 *  - the statistics saw the C library's allocations.
 * Prints "N passed, N failed"; exit 0 only when nothing failed. */
#define _GNU_SOURCE
#include <dirent.h>
#include <malloc.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mimalloc-stats.h"
#include "mimalloc.h"
#include "../support/check.h"

/* Names that only the C library's allocators define, weak, so they stay NULL unless one is
 * linked: musl's (mallocng, the simple allocator it starts with, and the objects that a partial
 * replacement pulls in) and glibc's malloc.o. */
extern char __libc_malloc_impl[] __attribute__((weak));
extern char __malloc_donate[] __attribute__((weak));
extern char __malloc_replaced[] __attribute__((weak));
extern char __malloc_context[] __attribute__((weak));
extern char __malloc_fork_lock_parent[] __attribute__((weak));
extern char __glibc_morecore[] __attribute__((weak));

/* (not const: GCC would warn that the fresh block it points to is uninitialized) */
static bool ours(void* p) {
  return p != NULL && mi_is_in_heap_region(p) && mi_check_owned(p);
}

static bool count_block(const mi_heap_t* heap, const mi_heap_area_t* area, void* block,
                        size_t size, void* arg) {
  (void)heap, (void)area, (void)size;
  if (block != NULL) ++*(long long*)arg;
  return true;
}
/* Live blocks of this thread's default heap: exact (tests/api/test_heap.c). */
static long long live_blocks(void) {
  long long n = 0;
  mi_heap_visit_blocks(mi_heap_get_default(), true, count_block, &n);
  return n;
}

static void nothing(void) {}

static int keep_all(const struct dirent* d) { return d != NULL; }

int main(void) {
  /* the allocation names */
  void* p = malloc(100);
  check(ours(p), "malloc", 100);
  check(malloc_usable_size(p) == mi_usable_size(p), "malloc_usable_size is ours", 100);
  p = realloc(p, 100000);
  check(ours(p), "realloc", 100000);
  free(p);
  p = calloc(10, 10);
  check(ours(p) && ((char*)p)[99] == 0, "calloc", 100);
  free(p);
  p = aligned_alloc(256, 512);
  check(ours(p) && (uintptr_t)p % 256 == 0, "aligned_alloc", 256);
  free(p);
  p = NULL;
  check(posix_memalign(&p, 4096, 10) == 0 && ours(p) && (uintptr_t)p % 4096 == 0,
        "posix_memalign", 4096);
  free(p);
  p = memalign(64, 200);
  check(ours(p) && (uintptr_t)p % 64 == 0, "memalign", 64);
  free(p);
  p = valloc(10);
  check(ours(p) && (uintptr_t)p % (uintptr_t)sysconf(_SC_PAGESIZE) == 0, "valloc", 10);
  free(p);
  p = mi_malloc(50); /* and ours goes back through free */
  free(p);

  mi_stats_t_decl(before);
  check(mi_stats_get(&before), "mi_stats_get", 0);

  /* the C library's allocations whose results the caller frees */
  char* s = strdup("static override");
  check(ours(s), "strdup", 0);
  char* t = strndup(s, 6);
  check(ours(t) && strcmp(t, "static") == 0, "strndup", 6);
  free(t);
  char* mem = NULL;
  size_t mem_size = 0;
  FILE* ms = open_memstream(&mem, &mem_size);
  check(ms != NULL, "open_memstream", 0);
  for (int i = 0; ms != NULL && i < 1000; i++) fprintf(ms, "line %d of %s\n", i, s);
  if (ms != NULL) fclose(ms);
  check(ours(mem) && mem_size > 10000, "open_memstream's buffer", (long long)mem_size);
  FILE* in = fmemopen(mem, mem_size, "r");
  char* line = NULL;
  size_t line_cap = 0;
  long long lines = 0;
  while (in != NULL && getline(&line, &line_cap, in) > 0) lines++;
  check(lines == 1000 && ours(line), "getline's buffer", lines);
  free(line);
  if (in != NULL) fclose(in);
  free(mem);
  char* formatted = NULL;
  check(asprintf(&formatted, "%s %d", s, 42) > 0 && ours(formatted), "asprintf", 0);
  free(formatted);
  char* path = realpath(".", NULL);
  check(ours(path), "realpath", 0);
  free(path);
  struct dirent** names = NULL;
  int n = scandir(".", &names, keep_all, alphasort);
  check(n > 0 && ours(names) && ours(names[0]), "scandir", n);
  for (int i = 0; i < n; i++) free(names[i]);
  free(names);
  free(s);

  /* allocations the C library makes and frees itself: counted as live blocks */
  long long base = live_blocks();
  FILE* f = fopen("/proc/self/stat", "r");
  char buf[64];
  check(f != NULL && fgets(buf, sizeof buf, f) != NULL && live_blocks() > base,
        "fopen's FILE and buffer", live_blocks() - base);
  if (f != NULL) fclose(f);
  check(live_blocks() == base, "fclose gives them back", live_blocks() - base);
  DIR* d = opendir(".");
  check(d != NULL && live_blocks() == base + 1, "opendir", live_blocks() - base);
  if (d != NULL) closedir(d);
  check(live_blocks() == base, "closedir gives it back", live_blocks() - base);
  /* musl: file actions come from __libc_malloc and go back through __libc_free */
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 3, "/dev/null", 0, 0);
  posix_spawn_file_actions_addclose(&fa, 3);
  check(live_blocks() == base + 2, "posix_spawn file actions", live_blocks() - base);
  posix_spawn_file_actions_destroy(&fa);
  check(live_blocks() == base, "their destroy gives them back", live_blocks() - base);
  /* atexit keeps 32 handlers in place; the next slots come from __libc_calloc in musl (a
   * static table, and nothing from the heap, in glibc: at most one more block either way) */
  for (int i = 0; i < 33; i++) atexit(nothing);
  check(live_blocks() <= base + 1, "atexit's 33rd handler", live_blocks() - base);

  /* one allocator in the program */
  check(__libc_malloc_impl == NULL && __malloc_donate == NULL && __malloc_replaced == NULL &&
            __malloc_context == NULL && __malloc_fork_lock_parent == NULL &&
            __glibc_morecore == NULL,
        "no C library allocator is linked in", 0);
  mi_stats_t_decl(after);
  check(mi_stats_get(&after) &&
            after.malloc_normal_count.total + after.malloc_huge_count.total >
                before.malloc_normal_count.total + before.malloc_huge_count.total,
        "the statistics counted the C library's allocations",
        after.malloc_normal_count.total - before.malloc_normal_count.total);

  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
