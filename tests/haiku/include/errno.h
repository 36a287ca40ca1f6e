/* Stand-in for <errno.h>, compile checks only: see README.md. */
#pragma once
extern int* _errnop(void);
#define errno (*_errnop())
#define EINTR 4
#define EAGAIN 11
#define ENOMEM 12
#define EINVAL 22
