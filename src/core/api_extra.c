/* String and path helpers of the API, allocating through mi_malloc. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"

char* mi_strdup(const char* s) mi_attr_noexcept {
  if (s == NULL) return NULL;
  size_t n = strlen(s);
  char* t = mi_malloc(n + 1);
  if (t != NULL) memcpy(t, s, n + 1);
  return t;
}

char* mi_strndup(const char* s, size_t n) mi_attr_noexcept {
  if (s == NULL) return NULL;
  const char* end = memchr(s, 0, n);
  size_t len = end != NULL ? (size_t)(end - s) : n;
  char* t = mi_malloc(len + 1);
  if (t == NULL) return NULL;
  memcpy(t, s, len);
  t[len] = 0;
  return t;
}

char* mi_realpath(const char* fname, char* resolved_name) mi_attr_noexcept {
  if (resolved_name != NULL) return lm_realpath(fname, resolved_name);
  char buf[LM_PATH_MAX + 1];
  char* r = lm_realpath(fname, buf);
  return r == NULL ? NULL : mi_strdup(buf);
}

LM_OVERRIDE_NAMES(mi_strdup)
