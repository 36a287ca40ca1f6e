/* Compiled against the distro's mimalloc.h (libmimalloc-dev, v2.0.9) and linked with the
 * distro's -lmimalloc, then run with our libmimalloc.so.2 first in the library path: the
 * binary interface must be the same. Exercises a broad slice of the v2 API. scripts/deb.sh
 * builds it the same way and runs it on the installed (or unpacked) Debian packages. */
#include <mimalloc.h>
#include <stdio.h>
#include <string.h>

static int failed, passed;
#define CHECK(c)                                                             \
  do {                                                                       \
    if (c) passed++;                                                         \
    else {                                                                   \
      failed++;                                                              \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #c); \
    }                                                                        \
  } while (0)

static bool count_blocks(const mi_heap_t* heap, const mi_heap_area_t* area, void* block,
                         size_t size, void* arg) {
  (void)heap, (void)area, (void)size;
  if (block != NULL) (*(size_t*)arg)++;
  return true;
}

int main(void) {
  char* s = mi_strdup("abi");
  CHECK(s != NULL && strcmp(s, "abi") == 0);
  CHECK(mi_usable_size(s) >= 4);
  mi_free(s);
  void* a = mi_malloc_aligned(100, 256);
  CHECK(a != NULL && ((uintptr_t)a % 256) == 0);
  a = mi_realloc_aligned(a, 1000, 256);
  CHECK(a != NULL && ((uintptr_t)a % 256) == 0);
  mi_free(a);
  int* z = mi_calloc(10, sizeof(int));
  CHECK(z != NULL && z[9] == 0);
  z = mi_recalloc(z, 20, sizeof(int));
  CHECK(z != NULL && z[19] == 0);
  mi_free(z);
  mi_heap_t* heap = mi_heap_new();
  CHECK(heap != NULL);
  for (int i = 0; i < 100; i++) CHECK(mi_heap_malloc(heap, 32) != NULL);
  size_t blocks = 0;
  CHECK(mi_heap_visit_blocks(heap, true, count_blocks, &blocks));
  CHECK(blocks == 100);
  mi_heap_destroy(heap);
  CHECK(mi_option_get((mi_option_t)15) >= -1); /* purge_delay (decommit_delay in 2.0.9) */
  mi_option_set(mi_option_verbose, 0);
  CHECK(!mi_option_is_enabled(mi_option_verbose));
  void* p = NULL;
  CHECK(mi_posix_memalign(&p, 64, 100) == 0 && p != NULL);
  mi_free(p);
  CHECK(mi_good_size(100) >= 100);
  mi_collect(true);
  size_t rss = 0, peak = 0;
  mi_process_info(NULL, NULL, NULL, &rss, &peak, NULL, NULL, NULL);
  CHECK(rss > 0);
  CHECK(mi_version() >= 200);
  /* which header it was built with, which library it runs with (scripts/deb.sh reads these) */
  printf("header %d\nrunning %d\n", MI_MALLOC_VERSION, mi_version());
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
