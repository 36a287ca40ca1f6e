/* The assertion-failure path for every layer. Below the core nothing can print (printing is the
 * backend's, above this file), so it stops the program; the core installs a reporter at process
 * setup that says which expression failed where, through the message output, first.
 * (A function pointer rather than a weak symbol the core overrides: PE linkers do not take a
 * weak definition out of a static library, so a layer test without the core failed to link.) */
#include "common.h"

lm_assert_report_fun* _Atomic lm_assert_reporter;

void lm_assert_fail(const char* expr, const char* file, int line, const char* func) {
  lm_assert_report_fun* report = atomic_load_explicit(&lm_assert_reporter, memory_order_relaxed);
  if (report != NULL) report(expr, file, line, func);
  __builtin_trap();
}
