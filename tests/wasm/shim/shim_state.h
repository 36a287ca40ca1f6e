/* State shared by the wasm shim headers (cmocka.h, pthread.h): the test now running may be
 * marked skipped from a stub that finds it needs what wasm lacks. Header-only: each test
 * program is one translation unit. */
#pragma once
#ifndef LM_WASM_SHIM_STATE_H
#define LM_WASM_SHIM_STATE_H

#include <stdbool.h>
#include <stdio.h>

static bool shim_failed, shim_skipped;
static int shim_reported; /* failures printed for the running test */

/* The running test needs something wasm lacks (a thread): it counts as skipped, and what it
 * checks after this is ignored. */
static inline void shim_skip_current(const char* why) {
  if (!shim_skipped) printf("  skipped: %s\n", why);
  shim_skipped = true;
}

#endif
