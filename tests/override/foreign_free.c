/* Under LD_PRELOAD: blocks of the allocator that the preload displaced (glibc's, reached
 * directly through libc.so.6) passed to free, realloc and malloc_usable_size must be handed back
 * to it, not crash or corrupt our heap. */
#include <dlfcn.h>
#include <malloc.h>
#include <stdio.h>
#include <string.h>

int main(void) {
  void* libc = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
  void* (*libc_malloc)(size_t) = libc ? (void* (*)(size_t))dlsym(libc, "malloc") : NULL;
  void* (*ours)(size_t) = (void* (*)(size_t))dlsym(RTLD_DEFAULT, "mi_malloc");
  if (libc_malloc == NULL || ours == NULL || (void*)libc_malloc == (void*)ours) {
    printf("not preloaded: skipped\n");
    return 77;
  }
  int failed = 0;
  for (int i = 0; i < 2000; i++) {
    size_t size = (size_t)(i % 500) + 16;
    char* p = libc_malloc(size);
    memset(p, 'f', size);
    if (malloc_usable_size(p) < size) failed++;
    if (i % 3 == 0) {
      char* q = realloc(p, size * 10); /* ours now, with the old contents */
      if (q == NULL || q[size - 1] != 'f') failed++;
      free(q);
    } else {
      free(p);
    }
  }
  /* Blocks above 64 KiB (glibc maps them) reach realloc's paths for large blocks (to 1 MiB)
   * and huge ones (to 40 MiB): they must see that these are not ours (growth in place read a
   * segment header below them until 2026-12-07, and the process crashed). */
  const size_t big[] = {200 << 10, 3 << 20};
  const size_t to[] = {1 << 20, 40 << 20};
  for (int i = 0; i < 2; i++) {
    for (int j = 0; j < 2; j++) {
      char* p = libc_malloc(big[i]);
      if (p == NULL) continue;
      memset(p, 'a' + j, big[i]);
      char* q = realloc(p, to[j]);
      size_t kept = big[i] < to[j] ? big[i] : to[j];
      if (q == NULL || q[0] != 'a' + j || q[kept - 1] != 'a' + j) failed++;
      free(q);
    }
  }
  char* mine = malloc(100); /* our heap still works */
  strcpy(mine, "ok");
  free(mine);
  printf("%d passed, %d failed\n", failed ? 0 : 1, failed ? 1 : 0);
  return failed ? 1 : 0;
}
