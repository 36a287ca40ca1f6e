/* wasi-libc's mmap emulation serves memory from malloc, which is the allocator under test; the
 * API tests use mmap for memory that is *not* the allocator's. Here it is fresh linear memory
 * straight from memory.grow (never given back: munmap does nothing), which no allocator owns. */
#pragma once
#ifndef LM_WASM_SHIM_MMAN_H
#define LM_WASM_SHIM_MMAN_H

#include <stddef.h>
#include <stdint.h>

#define PROT_NONE 0
#define PROT_READ 1
#define PROT_WRITE 2
#define MAP_PRIVATE 2
#define MAP_ANONYMOUS 0x20
#define MAP_FAILED ((void*)-1)

static inline void* mmap(void* addr, size_t size, int prot, int flags, int fd, long off) {
  (void)addr, (void)prot, (void)flags, (void)fd, (void)off;
  const size_t page = 64 * 1024;
  size_t old = __builtin_wasm_memory_grow(0, (size + page - 1) / page);
  return old == SIZE_MAX ? MAP_FAILED : (void*)(old * page);
}
static inline int munmap(void* addr, size_t size) {
  (void)addr, (void)size;
  return 0;
}

#endif
