/* Process start and end: the platform's hooks (src/common/platform.h) run lm_process_attach
 * when the library is loaded and lm_process_detach when it is unloaded or the process ends.
 * Compiled with each product (on Windows the DLL and the static library differ: LM_DLL). */
#include "core.h"

void lm_platform_process_setup(void) { lm_platform_setup_slot(); }

LM_PROCESS_HOOKS(lm_process_attach, lm_process_detach)
