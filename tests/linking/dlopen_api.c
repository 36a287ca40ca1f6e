/* Loads the shared library with dlopen (as Python's ctypes would) and uses the mi_ API
 * through dlsym; the program's own malloc stays the system's. */
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  void* lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (lib == NULL) {
    fprintf(stderr, "dlopen: %s\n", dlerror());
    printf("0 passed, 1 failed\n");
    return 1;
  }
  void* (*m)(size_t) = (void* (*)(size_t))dlsym(lib, "mi_malloc");
  void (*f)(void*) = (void (*)(void*))dlsym(lib, "mi_free");
  size_t (*u)(const void*) = (size_t(*)(const void*))dlsym(lib, "mi_usable_size");
  int ok = m != NULL && f != NULL && u != NULL;
  for (int i = 0; ok && i < 100000; i++) {
    char* p = m((size_t)(i % 3000) + 1);
    ok = p != NULL && u(p) >= (size_t)(i % 3000) + 1;
    if (ok) memset(p, i, (size_t)(i % 3000) + 1);
    f(p);
  }
  printf("%d passed, %d failed\n", ok ? 1 : 0, ok ? 0 : 1);
  return ok ? 0 : 1;
}
