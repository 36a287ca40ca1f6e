/* The assertion-failure path for layers below the core: it cannot print (printing is the
 * backend's, above this file), so it stops the program. The core defines the strong version,
 * which reports the expression and place through the message output first. */
#include "common.h"

__attribute__((weak, noreturn)) void lm_assert_fail(const char* expr, const char* file,
                                                    int line, const char* func) {
  (void)expr, (void)file, (void)line, (void)func;
  __builtin_trap();
}
