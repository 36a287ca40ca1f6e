/* Stand-in for Haiku's <OS.h> (kernel kit), compile checks only: see README.md. */
#pragma once
#include <stdint.h>

typedef int32_t status_t;
typedef int64_t bigtime_t;

#define B_PAGE_SIZE 4096

bigtime_t system_time(void); /* microseconds since boot */
