/* Red zones of live blocks in AddressSanitizer builds: the bytes of a block past the request
 * are poisoned, so `overflow` (a write one past a 100-byte request, inside the 112-byte block)
 * is reported; `usable` asks for the usable size first, which hands the slack over, and writes
 * all of it, reallocates in place and expands: no report. */
#include <stdio.h>
#include <string.h>

#include "mimalloc.h"

int main(int argc, char** argv) {
  const char* mode = argc > 1 ? argv[1] : "";
  /* (through a volatile, so UBSan's object-size check cannot see the request: ASan must) */
  static void* volatile laundered;
  laundered = mi_malloc(100);
  volatile char* p = laundered;
  if (strcmp(mode, "overflow") == 0) {
    p[100] = 1; /* inside the 112-byte block, past the request */
  } else if (strcmp(mode, "usable") == 0) {
    size_t n = mi_usable_size((void*)p);
    memset((void*)p, 1, n);
    char* q = mi_realloc((void*)p, 90); /* in place */
    memset(q, 2, 90);
    if (mi_expand(q, n) == q) memset(q, 3, n);
    p = q;
    char* z = mi_calloc(3, 33);
    for (int i = 0; i < 99; i++) z[i] += 1;
    mi_free(z);
  } else {
    fprintf(stderr, "usage: redzone overflow|usable\n");
    return 2;
  }
  mi_free((void*)p);
  printf("done\n");
  return 0;
}
