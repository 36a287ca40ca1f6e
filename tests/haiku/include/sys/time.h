/* Stand-in for <sys/time.h>, compile checks only: see README.md. */
#pragma once
#include <sys/types.h>
typedef int32_t suseconds_t;
struct timeval {
  time_t tv_sec;
  suseconds_t tv_usec;
};
