/* Process start and end on Windows. In the DLL (LM_DLL) the loader calls DllMain when the
 * library is attached to and detached from the process. In a static link the C runtime runs
 * our constructor before main() and the destructor at exit (mingw-w64's CRT runs GCC
 * constructors; an MSVC build would put a pointer in the .CRT$XCU section instead). Thread ends
 * come from the backend (a fiber-local storage callback), not from DLL_THREAD_DETACH, so they
 * work in a static link too. */
#include "core.h"

void lm_platform_process_setup(void) { lm_tls_slot_setup(); }

#if LM_DLL
int __stdcall DllMain(void* instance, unsigned long reason, void* reserved);
int __stdcall DllMain(void* instance, unsigned long reason, void* reserved) {
  (void)instance, (void)reserved;
  enum { PROCESS_DETACH = 0, PROCESS_ATTACH = 1 }; /* DLL_PROCESS_DETACH, DLL_PROCESS_ATTACH */
  if (reason == PROCESS_ATTACH) lm_process_attach();
  if (reason == PROCESS_DETACH) lm_process_detach();
  return 1;
}
#else
__attribute__((constructor)) static void library_load(void) { lm_process_attach(); }

__attribute__((destructor)) static void library_unload(void) { lm_process_detach(); }
#endif
