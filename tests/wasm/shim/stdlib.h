/* wasi-libc declares realpath but does not have it; mi_realpath fails there (ENOSYS, see
 * src/common/platform.h). A test that compares the two is skipped. */
#pragma once
#include_next <stdlib.h>

#include <errno.h>

#include "shim_state.h"

static inline char* shim_realpath(const char* name, char* buf) {
  (void)name, (void)buf;
  shim_skip_current("no realpath in wasi-libc");
  errno = ENOSYS;
  return NULL;
}
#define realpath(name, buf) shim_realpath(name, buf)
