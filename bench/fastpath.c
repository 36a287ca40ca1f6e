/* fastpath: the cost of small malloc/free on the allocator's fast path.
 *
 *   fastpath ITERATIONS [pairs|window] [WINDOW]
 *
 * pairs  (default): each iteration does p = malloc(size); write p; free(p), with the size
 *                   cycling through 8, 16, ..., 512 bytes.
 * window:           keeps WINDOW (default 64) blocks live in a ring; each iteration frees the
 *                   oldest block and allocates a new one of the next size in the cycle.
 *
 * Only plain malloc/free are called, so any allocator can be put under it with LD_PRELOAD.
 * It prints one line: the mode, the count, a checksum, and which object provides malloc (so a
 * runner can check that the preload took effect). Exit status 0 on success, 2 on bad
 * arguments, 1 if malloc returned NULL or a block lost its contents.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SIZE_STEPS 64 /* 8 .. 512 in steps of 8 */

/* A store the compiler must keep, so that malloc/free pairs are never optimised away. */
static void* volatile sink;

static size_t size_at(uint64_t i) { return (size_t)((i % SIZE_STEPS) + 1) * 8; }

static const char* malloc_provider(void) {
  Dl_info info;
  void* (*volatile fn)(size_t) = malloc;
  if (dladdr((void*)fn, &info) != 0 && info.dli_fname != NULL) return info.dli_fname;
  return "?";
}

static int usage(const char* argv0) {
  fprintf(stderr, "usage: %s ITERATIONS [pairs|window] [WINDOW]\n", argv0);
  return 2;
}

static int run_pairs(uint64_t n, uint64_t* checksum) {
  uint64_t sum = 0;
  for (uint64_t i = 0; i < n; i++) {
    size_t sz = size_at(i);
    unsigned char* p = malloc(sz);
    if (p == NULL) return 1;
    p[0] = (unsigned char)i;
    p[sz - 1] = (unsigned char)(i >> 8);
    sink = p;
    sum += p[0] + p[sz - 1];
    free(p);
  }
  *checksum = sum;
  return 0;
}

static int run_window(uint64_t n, size_t window, uint64_t* checksum) {
  unsigned char** ring = calloc(window, sizeof(*ring));
  size_t* sizes = calloc(window, sizeof(*sizes));
  if (ring == NULL || sizes == NULL) return 1;
  uint64_t sum = 0;
  int bad = 0;
  for (uint64_t i = 0; i < n; i++) {
    size_t slot = (size_t)(i % window);
    unsigned char* old = ring[slot];
    if (old != NULL) {
      /* the tag written at allocation must still be there */
      if (old[0] != (unsigned char)(i - window) || old[sizes[slot] - 1] != 0xA5) bad = 1;
      sum += old[0];
      free(old);
    }
    size_t sz = size_at(i * 7); /* a different stride than pairs: neighbours differ in size */
    unsigned char* p = malloc(sz);
    if (p == NULL) return 1;
    p[0] = (unsigned char)i;
    p[sz - 1] = 0xA5;
    ring[slot] = p;
    sizes[slot] = sz;
    sink = p;
  }
  for (size_t k = 0; k < window; k++) free(ring[k]);
  free(ring);
  free(sizes);
  *checksum = sum;
  return bad;
}

int main(int argc, char** argv) {
  if (argc < 2) return usage(argv[0]);
  char* end = NULL;
  unsigned long long n = strtoull(argv[1], &end, 10);
  if (end == argv[1] || *end != '\0') return usage(argv[0]);
  const char* mode = argc > 2 ? argv[2] : "pairs";
  unsigned long long window = 64;
  if (argc > 3) {
    window = strtoull(argv[3], &end, 10);
    if (end == argv[3] || *end != '\0' || window == 0) return usage(argv[0]);
  }

  uint64_t checksum = 0;
  int rc;
  if (strcmp(mode, "pairs") == 0) {
    rc = run_pairs(n, &checksum);
  } else if (strcmp(mode, "window") == 0) {
    rc = run_window(n, (size_t)window, &checksum);
  } else {
    return usage(argv[0]);
  }
  if (rc != 0) {
    fprintf(stderr, "fastpath: %s failed (%s)\n", mode,
            rc == 1 ? "allocation failure or corrupted block" : "error");
    return 1;
  }
  printf("fastpath mode=%s iterations=%llu checksum=%llu malloc=%s\n", mode, n,
         (unsigned long long)checksum, malloc_provider());
  return 0;
}
