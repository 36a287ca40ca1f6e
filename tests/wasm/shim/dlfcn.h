/* wasm32-wasi loads no shared objects: dlopen finds nothing, so the tests that look for
 * another allocator through it skip that part, as they do where libc.so.6 is absent. */
#pragma once
#ifndef LM_WASM_SHIM_DLFCN_H
#define LM_WASM_SHIM_DLFCN_H

#include <stddef.h>

#define RTLD_LAZY 1
#define RTLD_NOW 2
#define RTLD_NOLOAD 4

static inline void* dlopen(const char* name, int flags) {
  (void)name, (void)flags;
  return NULL;
}
static inline void* dlsym(void* handle, const char* name) {
  (void)handle, (void)name;
  return NULL;
}
static inline int dlclose(void* handle) {
  (void)handle;
  return 0;
}

#endif
