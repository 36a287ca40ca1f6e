/* grow: many buffers grown side by side with realloc to megabytes, then all freed.
 *
 *   grow ROUNDS [BUFFERS=64] [MAX_KIB=2048] [STEP=977] [SEED=42]
 *
 * Each round starts BUFFERS empty buffers and grows them in turns (one step for buffer 0, one
 * for buffer 1, ...), so that every buffer has neighbours standing in the way of in-place
 * growth. A step appends STEP bytes of content; when they do not fit, the buffer's capacity
 * first grows to 1.5x (at least enough for the step) through realloc, which must keep the
 * content. A buffer stops at MAX_KIB. Then every buffer is checked from end to end and all are
 * freed. Every byte appended is written, so the pages are really used (peak about
 * BUFFERS x MAX_KIB, up to 1.5x that in capacity).
 * Exit status 0 on success, 2 on bad arguments, 1 if realloc returned NULL or a buffer lost
 * its contents.
 */
#include "bench.h"

typedef struct buf_s {
  unsigned char* p;
  size_t len;
  size_t cap;
  uint64_t key; /* the content of byte i is a function of key and the chunk index i / step */
} buf_t;

static inline unsigned char chunk_byte(uint64_t key, size_t chunk) {
  return bench_tag(key * 1000003ULL + chunk);
}

int main(int argc, char** argv) {
  unsigned long long rounds = 0, nbufs = 64, max_kib = 2048, step = 977, seed = 42;
  if (argc < 2 || !bench_arg(argc, argv, 1, &rounds) || !bench_arg(argc, argv, 2, &nbufs) ||
      !bench_arg(argc, argv, 3, &max_kib) || !bench_arg(argc, argv, 4, &step) ||
      !bench_arg(argc, argv, 5, &seed) || nbufs == 0 || nbufs > 100000 || max_kib == 0 ||
      step == 0 || step > max_kib * 1024) {
    fprintf(stderr, "usage: %s ROUNDS [BUFFERS=64] [MAX_KIB=2048] [STEP=977] [SEED=42]\n",
            argv[0]);
    return 2;
  }
  size_t n = (size_t)nbufs, max_bytes = (size_t)max_kib * 1024, st = (size_t)step;
  buf_t* bufs = calloc(n, sizeof(buf_t));
  if (bufs == NULL) BENCH_FAIL("grow: malloc returned NULL");
  uint64_t rs = seed, checksum = 0, reallocs = 0;
  for (unsigned long long r = 0; r < rounds; r++) {
    for (size_t b = 0; b < n; b++) bufs[b] = (buf_t){NULL, 0, 0, bench_rnd(&rs)};
    size_t growing = n;
    while (growing > 0) {
      growing = 0;
      for (size_t b = 0; b < n; b++) {
        buf_t* f = &bufs[b];
        if (f->len + st > max_bytes) continue;
        growing++;
        if (f->len + st > f->cap) {
          size_t cap = f->cap + f->cap / 2;
          if (cap < f->len + st) cap = f->len + st;
          unsigned char* q = realloc(f->p, cap);
          if (q == NULL) BENCH_FAIL("grow: realloc returned NULL");
          /* the copy (if any) must have kept the content: look at both ends of it */
          if (f->len > 0 && (q[0] != chunk_byte(f->key, 0) ||
                             q[f->len - 1] != chunk_byte(f->key, (f->len - 1) / st)))
            BENCH_FAIL("grow: realloc lost the contents of a buffer");
          f->p = q;
          f->cap = cap;
          reallocs++;
        }
        memset(f->p + f->len, chunk_byte(f->key, f->len / st), st);
        f->len += st;
      }
    }
    for (size_t b = 0; b < n; b++) {
      buf_t* f = &bufs[b];
      for (size_t c = 0; c * st < f->len; c++) {
        const unsigned char* q = f->p + c * st;
        unsigned char t = chunk_byte(f->key, c);
        if (q[0] != t || q[st / 2] != t || q[st - 1] != t)
          BENCH_FAIL("grow: a buffer lost its contents");
      }
      checksum += f->len + f->p[f->len - 1];
      free(f->p);
      f->p = NULL;
    }
  }
  free(bufs);
  printf("grow rounds=%llu buffers=%llu max_kib=%llu step=%llu reallocs=%llu checksum=%llu "
         "malloc=%s\n",
         rounds, nbufs, max_kib, step, (unsigned long long)reallocs,
         (unsigned long long)checksum, bench_malloc_provider());
  return 0;
}
