/* How the API tests observe the allocator from outside: the statistics (mi_stats_get with the
 * caller's size and version filled in) and an output sink that keeps what it is given.
 * Shared by test_stats, test_messages, test_option_effects and test_guarded; include it after
 * <cmocka.h> and the mimalloc headers. */
#pragma once
#include <stddef.h>
#include <string.h>

#include "mimalloc-stats.h"

static inline void get_stats(mi_stats_t* st) {
  memset(st, 0, sizeof(*st));
  st->size = sizeof(mi_stats_t);
  st->version = MI_STAT_VERSION;
  assert_true(mi_stats_get(st));
}

typedef struct capture_s {
  char text[64 * 1024];
  size_t len;
  size_t calls;
} capture_t;

static inline void capture_reset(capture_t* c) {
  c->len = 0;
  c->calls = 0;
  c->text[0] = 0;
}

/* An mi_output_fun: appends the message (truncating at the buffer's end). */
static inline void capture_sink(const char* msg, void* arg) {
  capture_t* c = arg;
  c->calls++;
  size_t n = strlen(msg);
  if (n > sizeof(c->text) - 1 - c->len) n = sizeof(c->text) - 1 - c->len;
  memcpy(c->text + c->len, msg, n);
  c->len += n;
  c->text[c->len] = 0;
}
