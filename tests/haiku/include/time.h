/* Stand-in for <time.h>, compile checks only: see README.md. */
#pragma once
#include <sys/types.h>
typedef int32_t clockid_t;
struct timespec {
  time_t tv_sec;
  long tv_nsec;
};
#define CLOCK_MONOTONIC ((clockid_t)0)
#define CLOCK_REALTIME ((clockid_t)-1)
int clock_gettime(clockid_t clock, struct timespec* t);
