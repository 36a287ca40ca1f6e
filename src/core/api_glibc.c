/* glibc's malloc introspection names, for programs preloaded or statically linked with us:
 * they must act on this allocator (not on glibc's unused heap), and defining them all keeps a
 * static link from pulling glibc's malloc object in beside ours. The structs are declared here
 * with glibc's layouts so no libc malloc header is needed. */
#include <stdio.h>

#include "core.h"

struct lm_mallinfo {
  int arena, ordblks, smblks, hblks, hblkhd, usmblks, fsmblks, uordblks, fordblks, keepcost;
};
struct lm_mallinfo2 {
  size_t arena, ordblks, smblks, hblks, hblkhd, usmblks, fsmblks, uordblks, fordblks, keepcost;
};

/* Memory in use by blocks is not tracked per block in release builds: the committed total is
 * what the OS charges us, and it is what mallinfo's "arena" means (bytes from the system). */
static struct lm_mallinfo2 mallinfo_now(void) {
  lm_os_stats_t* st = &lm_process.arenas.stats;
  size_t committed = (size_t)lm_load_relaxed(&st->committed.current);
  size_t reserved = (size_t)lm_load_relaxed(&st->reserved.current);
  struct lm_mallinfo2 mi = {0};
  mi.arena = committed;
  mi.hblkhd = reserved;
  mi.usmblks = (size_t)lm_load_relaxed(&st->committed.peak);
  mi.uordblks = committed;
  return mi;
}

static int clamp_int(size_t x) { return x > (size_t)0x7FFFFFFF ? 0x7FFFFFFF : (int)x; }

/* Collect and purge everything possible now; true if the OS got memory back. */
int lm_malloc_trim(size_t pad) {
  (void)pad;
  int64_t before = lm_load_relaxed(&lm_process.arenas.stats.purged);
  mi_collect(true);
  return lm_load_relaxed(&lm_process.arenas.stats.purged) > before ? 1 : 0;
}

struct lm_mallinfo2 lm_mallinfo2(void) { return mallinfo_now(); }

struct lm_mallinfo lm_mallinfo(void) {
  struct lm_mallinfo2 m = mallinfo_now();
  struct lm_mallinfo r = {clamp_int(m.arena),   clamp_int(m.ordblks),  clamp_int(m.smblks),
                          clamp_int(m.hblks),   clamp_int(m.hblkhd),   clamp_int(m.usmblks),
                          clamp_int(m.fsmblks), clamp_int(m.uordblks), clamp_int(m.fordblks),
                          clamp_int(m.keepcost)};
  return r;
}

void lm_malloc_stats(void) { mi_stats_print(NULL); }

int lm_mallopt(int param, int value) {
  (void)param, (void)value;
  return 1; /* accepted: glibc's tunables have no meaning here */
}

int lm_malloc_info(int options, FILE* fp) {
  if (options != 0 || fp == NULL) return -1;
  struct lm_mallinfo2 m = mallinfo_now();
  fprintf(fp, "<malloc version=\"libmimalloc-%d\">\n<system type=\"current\" size=\"%zu\"/>\n"
              "<system type=\"max\" size=\"%zu\"/>\n</malloc>\n",
          MI_MALLOC_VERSION, m.arena, m.usmblks);
  return 0;
}

LM_OVERRIDE_NAMES(lm_malloc_trim)
LM_OVERRIDE_NAMES(lm_mallinfo2)
LM_OVERRIDE_NAMES(lm_mallinfo)
LM_OVERRIDE_NAMES(lm_malloc_stats)
LM_OVERRIDE_NAMES(lm_mallopt)
LM_OVERRIDE_NAMES(lm_malloc_info)
