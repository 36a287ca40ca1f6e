/* Stand-in for <sys/types.h>, compile checks only: see README.md. */
#pragma once
#include <stddef.h>
#include <stdint.h>
typedef long ssize_t;
typedef int64_t off_t;
typedef int64_t time_t;
typedef int32_t pid_t;
