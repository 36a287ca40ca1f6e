/* large_pages: under the preload, a heap that grows past 12 MiB of a segment asks for transparent
 * huge pages for the small blocks beyond that point (and in the segments it needs next), and
 * a small heap never does.
 *
 *   large_pages [on|off]
 *
 * "on" (the default): after 4 MiB of 64-byte blocks no block lies in a mapping advised for
 * huge pages (VmFlags "hg" in /proc/self/smaps); after 64 MiB more, most blocks do, but still
 * none of the first 4 MiB; a malloc'ed 24 MiB block does, a calloc'ed one and a 12 MiB one do
 * not. "off" (MIMALLOC_ALLOW_THP=0, or a secure build): no block ever does.
 * Exit 77 unless the kernel gives huge pages on request ("madvise" mode: otherwise nothing is
 * asked for), or without LD_PRELOAD. Prints "N passed, N failed".
 */
#define _GNU_SOURCE
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include "../support/check.h"

#define BLOCK 64
#define SMALL_HEAP (4u << 20)
#define LARGE_HEAP (64u << 20)
#define MAX_MAPS 4096

typedef struct map_s {
  uintptr_t lo, hi;
  bool advised;
} map_t;

static map_t maps[MAX_MAPS];
static size_t map_count;

/* Read every mapping and whether its VmFlags hold "hg" (MADV_HUGEPAGE). */
static void read_maps(void) {
  map_count = 0;
  FILE* f = fopen("/proc/self/smaps", "r");
  if (f == NULL) return;
  char line[512];
  while (fgets(line, sizeof(line), f) != NULL) {
    unsigned long lo = 0, hi = 0;
    char dash = 0;
    if (sscanf(line, "%lx%c%lx ", &lo, &dash, &hi) == 3 && dash == '-') {
      if (map_count < MAX_MAPS) maps[map_count++] = (map_t){lo, hi, false};
    } else if (map_count > 0 && strncmp(line, "VmFlags:", 8) == 0) {
      maps[map_count - 1].advised = strstr(line, " hg") != NULL;
    }
  }
  fclose(f);
}

static bool is_advised(const void* p) {
  for (size_t i = 0; i < map_count; i++) {
    if ((uintptr_t)p >= maps[i].lo && (uintptr_t)p < maps[i].hi) return maps[i].advised;
  }
  return false;
}

/* Blocks [from, to) that lie in advised mappings. */
static size_t count_advised(char** blocks, size_t from, size_t to) {
  size_t n = 0;
  for (size_t i = from; i < to; i++) n += is_advised(blocks[i]);
  return n;
}

static bool thp_on_advice(void) {
  char mode[128] = {0};
  FILE* f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
  if (f == NULL) return false;
  bool ok = fgets(mode, sizeof(mode), f) != NULL;
  fclose(f);
  return ok && strstr(mode, "[madvise]") != NULL;
}

int main(int argc, char** argv) {
  bool on = argc < 2 || strcmp(argv[1], "off") != 0;
  if (getenv("LD_PRELOAD") == NULL || !thp_on_advice()) {
    printf("large_pages: needs LD_PRELOAD=libmimalloc.so and THP in madvise mode\n");
    return 77;
  }
  size_t small_n = SMALL_HEAP / BLOCK, all_n = (SMALL_HEAP + LARGE_HEAP) / BLOCK;
  /* The pointer table (9 MiB) comes from mmap: as a malloc'ed large block it would sit in the
   * segment below the small pages and move them past the huge-page threshold. */
  char** blocks = mmap(NULL, all_n * sizeof(char*), PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (blocks == MAP_FAILED) return 1;
  for (size_t i = 0; i < small_n; i++) {
    blocks[i] = malloc(BLOCK);
    if (blocks[i] == NULL) return 1;
    memset(blocks[i], 1, BLOCK);
  }
  read_maps();
  check(count_advised(blocks, 0, small_n) == 0, "a 4 MiB heap asked for huge pages",
        (long)count_advised(blocks, 0, small_n));
  for (size_t i = small_n; i < all_n; i++) {
    blocks[i] = malloc(BLOCK);
    if (blocks[i] == NULL) return 1;
    memset(blocks[i], 2, BLOCK);
  }
  read_maps();
  size_t advised = count_advised(blocks, 0, all_n);
  if (on) {
    /* The first segment from 12 MiB on, and the next ones (needed because the first is
     * full) whole: most blocks, but still none of the first 4 MiB (the advice never extends
     * downward). */
    check(advised > all_n / 2, "a 68 MiB heap has few blocks on huge pages", (long)advised);
    check(count_advised(blocks, 0, small_n) == 0, "blocks of the first 4 MiB on huge pages",
          (long)count_advised(blocks, 0, small_n));
  } else {
    check(advised == 0, "MIMALLOC_ALLOW_THP=0 still asked for huge pages", (long)advised);
  }
  /* Huge blocks (above 16 MiB): malloc'ed ones ask for huge pages over the 2 MiB chunks they
   * cover, calloc'ed ones and a 12 MiB block (a large one) never do. */
  const size_t huge_size = 24u << 20, large_size = 12u << 20;
  char* huge = malloc(huge_size);
  char* zeroed = calloc(1, huge_size);
  char* large = malloc(large_size);
  if (huge == NULL || zeroed == NULL || large == NULL) return 1;
  read_maps();
  char* middle = huge + huge_size / 2;
  check(is_advised(middle) == on, on ? "a malloc'ed 24 MiB block is not on huge pages"
                                      : "a malloc'ed 24 MiB block asked for huge pages",
        (long)is_advised(middle));
  check(!is_advised(zeroed + huge_size / 2), "a calloc'ed 24 MiB block asked for huge pages", 1);
  check(!is_advised(large + large_size / 2), "a 12 MiB block asked for huge pages", 1);
  free(huge);
  free(zeroed);
  free(large);
  for (size_t i = 0; i < all_n; i++) free(blocks[i]);
  munmap(blocks, all_n * sizeof(char*));
  printf("large_pages %s: %d passed, %d failed\n", on ? "on" : "off", passed, failed);
  return failed == 0 ? 0 : 1;
}
