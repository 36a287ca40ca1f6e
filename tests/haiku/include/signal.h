/* Stand-in for <signal.h>, compile checks only: see README.md. */
#pragma once
#include <stdint.h>
typedef uint64_t sigset_t;
#define SIG_SETMASK 3
int sigfillset(sigset_t* set);
