/* The default-heap slot on Windows (see platform.h): a TLS index, read inline from the thread
 * environment block, written here. kernel32's functions are declared by hand so that no OS
 * header is needed outside src/backend/. */
#include "platform.h"

__declspec(dllimport) unsigned long __stdcall TlsAlloc(void);
__declspec(dllimport) int __stdcall TlsSetValue(unsigned long index, void* value);

#ifndef TLS_OUT_OF_INDEXES
#define TLS_OUT_OF_INDEXES 0xFFFFFFFFul
#endif

_Atomic(uint32_t) lm_tls_slot_plus1;

void lm_tls_slot_setup(void) {
  if (atomic_load(&lm_tls_slot_plus1) != 0) return;
  unsigned long index = TlsAlloc();
  /* Without a slot every thread keeps the empty heap: allocation fails cleanly (NULL). */
  if (index != TLS_OUT_OF_INDEXES) atomic_store(&lm_tls_slot_plus1, (uint32_t)index + 1);
}

void lm_tls_slot_set(void* value) {
  uint32_t s = atomic_load_explicit(&lm_tls_slot_plus1, memory_order_relaxed);
  if (s != 0) TlsSetValue(s - 1, value);
}
