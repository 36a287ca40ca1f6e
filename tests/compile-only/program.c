/* A program built against the macOS library (tests/compile-only/run.sh): it must compile and
 * link for Mach-O; nothing here can run it. */
#include <mimalloc.h>
#include <stdlib.h>
#include <string.h>

int main(void) {
  char* p = mi_malloc(100);
  char* q = malloc(200); /* ours through the interposing entries, once loaded */
  if (p == NULL || q == NULL) return 1;
  memset(p, 1, 100);
  memset(q, 2, 200);
  mi_free(p);
  free(q);
  return mi_version() > 0 ? 0 : 1;
}
