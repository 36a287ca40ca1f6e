/* The OS backend for the single-source build (src/static.c): the one place outside an OS
 * folder that asks which OS this is. The Meson build compiles the chosen folder directly. */
#if defined(__linux__)
#include "linux/backend_linux.c"
#else
#error "libmimalloc: no OS backend for this system in the single-source build"
#endif
