/* Stand-in for <fcntl.h>, compile checks only: see README.md. */
#pragma once
#define O_RDONLY 0
#define O_CLOEXEC 0x40000
int open(const char* path, int flags, ...);
