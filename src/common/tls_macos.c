/* The default-heap slot on macOS (see platform.h): a pthread key, made once at process setup.
 * The two pthread functions are declared by hand (pthread_key_t is an unsigned long there), so
 * that no OS header is needed outside src/backend/. */
#include "platform.h"

int pthread_key_create(unsigned long* key, void (*destructor)(void*));
int pthread_setspecific(unsigned long key, const void* value);

_Atomic(uintptr_t) lm_tls_slot_plus1;

void lm_tls_slot_setup(void) {
  if (atomic_load(&lm_tls_slot_plus1) != 0) return;
  unsigned long key;
  /* No destructor: a thread's heap is handed back by the backend's thread-exit key.
   * Without a key every thread keeps the empty heap: allocation fails cleanly (NULL). */
  if (pthread_key_create(&key, NULL) == 0) atomic_store(&lm_tls_slot_plus1, (uintptr_t)key + 1);
}

void lm_tls_slot_set(void* value) {
  uintptr_t s = atomic_load_explicit(&lm_tls_slot_plus1, memory_order_relaxed);
  if (s != 0) pthread_setspecific((unsigned long)(s - 1), value);
}
