/* wasm32-wasi has no threads (this wasi-libc has no pthread.h). The API test programs start a
 * thread in a few tests: here pthread_create marks the running test skipped and fails, and the
 * other calls do nothing, so those tests compile unchanged and are reported as skipped. */
#pragma once
#ifndef LM_WASM_SHIM_PTHREAD_H
#define LM_WASM_SHIM_PTHREAD_H

#include <errno.h>

#include "shim_state.h"

typedef unsigned long pthread_t;
typedef struct { int unused; } pthread_attr_t;
typedef struct { unsigned count; } pthread_barrier_t;
typedef struct { int unused; } pthread_barrierattr_t;
#define PTHREAD_BARRIER_SERIAL_THREAD (-1)

static inline int pthread_create(pthread_t* t, const pthread_attr_t* attr, void* (*fn)(void*),
                                 void* arg) {
  (void)attr, (void)fn, (void)arg;
  *t = 0;
  shim_skip_current("needs a thread");
  return ENOSYS;
}
static inline int pthread_join(pthread_t t, void** result) {
  (void)t;
  if (result != NULL) *result = NULL;
  return ESRCH;
}
static inline int pthread_barrier_init(pthread_barrier_t* b, const pthread_barrierattr_t* attr,
                                       unsigned count) {
  (void)attr;
  b->count = count;
  return 0;
}
static inline int pthread_barrier_wait(pthread_barrier_t* b) {
  (void)b;
  return PTHREAD_BARRIER_SERIAL_THREAD;
}
static inline int pthread_barrier_destroy(pthread_barrier_t* b) {
  (void)b;
  return 0;
}

#endif
