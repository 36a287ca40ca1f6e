/* Deliberate errors a memory checker must report in a program on this allocator (run under
 * valgrind by the test, which expects valgrind's error exit code): a write after free and a
 * read past the end of a block. */
#include <stdio.h>

#include "mimalloc.h"

int main(void) {
  volatile char* p = mi_malloc(64);
  mi_free((void*)p);
  p[0] = 1; /* use after free */
  volatile char* q = mi_malloc(24);
  char c = q[mi_usable_size((void*)q)]; /* one past the usable end */
  mi_free((void*)q);
  printf("done %d\n", c);
  return 0;
}
