/* The OS backend for the single-source build (src/static.c): the one place outside an OS
 * folder that asks which OS this is. The Meson build compiles the chosen folder directly. */
#if defined(__linux__)
#include "posix/posix.c"
#include "linux/backend_linux.c"
#include "linux/cgroup.c"
#elif defined(_WIN32)
#include "windows/backend_windows.c"
/* windows.h defines these as empty macros (16-bit pointer qualifiers); the engine's files that
 * follow in the same translation unit use them as names. */
#undef near
#undef far
#elif defined(__wasi__)
#include "wasm/backend_wasm.c"
#elif defined(__APPLE__) && defined(__MACH__)
#include "posix/posix.c"
#include "macos/backend_macos.c"
#elif defined(__HAIKU__)
#include "posix/posix.c"
#include "haiku/backend_haiku.c"
#else
#error "libmimalloc: no OS backend for this system in the single-source build"
#endif
