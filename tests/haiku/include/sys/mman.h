/* Stand-in for <sys/mman.h>, compile checks only: see README.md. */
#pragma once
#include <sys/types.h>
#define PROT_NONE 0
#define PROT_READ 1
#define PROT_WRITE 2
#define MAP_PRIVATE 0x02
#define MAP_FIXED 0x04
#define MAP_ANONYMOUS 0x08
#define MAP_ANON MAP_ANONYMOUS
#define MAP_NORESERVE 0x10
#define MAP_FAILED ((void*)-1)
#define POSIX_MADV_DONTNEED 4
void* mmap(void* addr, size_t len, int prot, int flags, int fd, off_t offset);
int munmap(void* addr, size_t len);
int mprotect(void* addr, size_t len, int prot);
int posix_madvise(void* addr, size_t len, int advice);
