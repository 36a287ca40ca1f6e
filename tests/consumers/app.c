/* The program every consumer builds: it uses the library the way a real program would and
 * checks that the library it runs with is the one it was built against.
 *
 *   app            the mi_ API only
 *   app override   also: plain malloc/free are ours (linked with the shared library, the
 *                  static library or mimalloc.o, all of which define them)
 *
 * Prints one line; exit status 0 when every check holds. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mimalloc.h>

int main(int argc, char** argv) {
  int want_override = argc > 1 && strcmp(argv[1], "override") == 0;
  /* The header's version must be the running library's: Debian's libmimalloc2.0 has the same
   * SONAME, so a program that lost its rpath would run with it and still pass the rest. */
  int v = mi_version();
  if (v < 200 || v != MI_MALLOC_VERSION) {
    fprintf(stderr, "mi_version() is %d, the header says %d\n", v, MI_MALLOC_VERSION);
    return 1;
  }
  char* p = mi_malloc(100);
  if (p == NULL || !mi_is_in_heap_region(p)) {
    fprintf(stderr, "mi_malloc(100) = %p, not in our heap\n", (void*)p);
    return 1;
  }
  memset(p, 0x5a, 100);
  mi_free(p);
  if (want_override) {
    void* q = malloc(16);
    if (q == NULL || !mi_is_in_heap_region(q)) {
      fprintf(stderr, "malloc(16) = %p does not come from us\n", q);
      return 1;
    }
    free(q);
  }
  printf("mi_version %d%s\n", v, want_override ? ", malloc is ours" : "");
  return 0;
}
