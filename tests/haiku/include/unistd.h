/* Stand-in for <unistd.h>, compile checks only: see README.md. */
#pragma once
#include <sys/types.h>
#define STDERR_FILENO 2
#define _SC_PAGESIZE 27
ssize_t read(int fd, void* buf, size_t count);
ssize_t write(int fd, const void* buf, size_t count);
int close(int fd);
long sysconf(int name);
