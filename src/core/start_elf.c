/* Process start and end on ELF systems: a constructor and a destructor, which the dynamic
 * loader runs when the shared library is loaded and unloaded, and the C runtime runs around
 * main() in a static link. Thread ends come from the backend (thread_exit_register). */
#include "core.h"

/* Nothing to prepare: the default-heap slot is native TLS with a static initial value. */
void lm_platform_process_setup(void) {}

__attribute__((constructor)) static void library_load(void) { lm_process_attach(); }

__attribute__((destructor)) static void library_unload(void) { lm_process_detach(); }
