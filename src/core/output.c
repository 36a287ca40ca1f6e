/* Messages and errors: formatting into a stack buffer (no allocation), the output sink (stderr
 * through the backend, or the program's), the error handler, and the caps on how many errors
 * and warnings are printed. Messages from before a sink is registered are kept (up to 16 KiB)
 * and replayed to it. */
#include <stdio.h>
#include <stdlib.h>

#include "core.h"

static _Atomic(mi_output_fun*) output_fun;
static _Atomic(void*) output_arg;
static mi_error_fun* error_fun;
static void* error_arg;
static _Atomic(size_t) error_count;
static _Atomic(size_t) warning_count;
static _Thread_local bool in_output; /* no recursion through a sink that allocates */

#define EARLY_SIZE (16 * 1024)
static char early_buf[EARLY_SIZE];
static _Atomic(size_t) early_len;

static void early_append(const char* msg) {
  size_t n = lm_strlen(msg);
  size_t at = atomic_fetch_add(&early_len, n);
  if (at >= EARLY_SIZE - 1) return;
  if (at + n > EARLY_SIZE - 1) n = EARLY_SIZE - 1 - at;
  for (size_t i = 0; i < n; i++) early_buf[at + i] = msg[i];
}

void lm_output_raw(const char* msg) {
  mi_output_fun* fun = atomic_load(&output_fun);
  if (fun != NULL) {
    fun(msg, atomic_load(&output_arg));
    return;
  }
  early_append(msg);
  const lm_backend_t* backend = lm_process.backend != NULL ? lm_process.backend : lm_backend_default();
  if (backend != NULL && backend->output != NULL) backend->output(msg);
}

void mi_register_output(mi_output_fun* out, void* arg) mi_attr_noexcept {
  atomic_store(&output_arg, arg);
  atomic_store(&output_fun, out);
  if (out != NULL) {
    size_t n = atomic_exchange(&early_len, EARLY_SIZE); /* replay once */
    if (n > 0 && n < EARLY_SIZE) {
      early_buf[n] = 0;
      out(early_buf, arg);
    }
  }
}

void mi_register_error(mi_error_fun* fun, void* arg) {
  error_arg = arg;
  error_fun = fun;
}

static void vmessage(const char* prefix, const char* fmt, va_list args) {
  if (in_output) return;
  in_output = true;
  char buf[512];
  size_t n = 0;
  for (const char* p = "mimalloc: "; *p != 0; p++) buf[n++] = *p;
  for (const char* p = prefix; *p != 0 && n < 64; p++) buf[n++] = *p;
  int len = vsnprintf(buf + n, sizeof(buf) - n - 1, fmt, args);
  if (len < 0) len = 0;
  n += (size_t)len < sizeof(buf) - n - 2 ? (size_t)len : sizeof(buf) - n - 2;
  buf[n++] = '\n';
  buf[n] = 0;
  lm_output_raw(buf);
  in_output = false;
}

void lm_message(const char* fmt, ...) {
  va_list args;
  va_start(args, fmt);
  vmessage("", fmt, args);
  va_end(args);
}

static bool shown(_Atomic(size_t)* counter, mi_option_t cap) {
  if (mi_option_is_enabled(mi_option_verbose)) return true;
  if (!mi_option_is_enabled(mi_option_show_errors)) return false;
  return atomic_fetch_add(counter, 1) < (size_t)mi_option_get_clamp(cap, 0, 1L << 30);
}

void lm_warning(const char* fmt, ...) {
  if (!shown(&warning_count, mi_option_max_warnings)) return;
  va_list args;
  va_start(args, fmt);
  vmessage("warning: ", fmt, args);
  va_end(args);
}

void lm_verbose(const char* fmt, ...) {
  if (!mi_option_is_enabled(mi_option_verbose)) return;
  va_list args;
  va_start(args, fmt);
  vmessage("", fmt, args);
  va_end(args);
}

/* Errors that mean the heap was misused or corrupted. A secure or debug build stops the process
 * on them (after saying why), unless the program registered its own handler. */
static bool is_fatal(int err) {
  return (LM_SECURE || LM_DEBUG > 0) && (err == EFAULT || err == EAGAIN || err == EINVAL);
}

void lm_error(int err, const char* fmt, ...) {
  bool fatal = is_fatal(err) && error_fun == NULL;
  if (fatal || shown(&error_count, mi_option_max_errors)) {
    va_list args;
    va_start(args, fmt);
    vmessage("error: ", fmt, args);
    va_end(args);
  }
  if (error_fun != NULL) error_fun(err, error_arg);
  else if (fatal) abort();
}

/* Installed as lm_assert_reporter (common/assert.c) at process setup. */
void lm_assert_report(const char* expr, const char* file, int line, const char* func) {
  lm_message("assertion failed: at \"%s\":%d, %s\n  assertion: \"%s\"", file, line, func, expr);
}
