/* Options: the mi_option_t table (ABI order), read from MIMALLOC_<NAME> environment variables
 * (case-insensitive; legacy names with a warning), settable by the program. */
#include <limits.h>

#include "core.h"

/* UNINIT: not read yet; DEFAULTED: read, not in the environment; INITIALIZED: from the
 * environment; SET: by the program (never replaced by the environment afterwards). */
typedef enum option_state_e {
  OPTION_UNINIT,
  OPTION_DEFAULTED,
  OPTION_INITIALIZED,
  OPTION_SET
} option_state_t;

typedef struct option_desc_s {
  long value;
  option_state_t state;
  long default_value;
  const char* name;   /* without the mimalloc_ prefix */
  const char* legacy; /* older name, or NULL */
  bool is_kib;        /* a size in KiB: accepts K/M/G/T suffixes */
  bool warned;        /* its invalid value was reported (the second reading stays quiet) */
} option_desc_t;

#define OPT(name, def) {0, OPTION_UNINIT, (def), #name, NULL, false, false}
#define OPT_LEGACY(name, def, legacy) {0, OPTION_UNINIT, (def), #name, #legacy, false, false}
#define OPT_KIB(name, def) {0, OPTION_UNINIT, (def), #name, NULL, true, false}

static option_desc_t options[_mi_option_last] = {
    OPT(show_errors, LM_DEBUG > 0 ? 1 : 0),
    OPT(show_stats, 0),
    OPT(verbose, 0),
    OPT(eager_commit, 1),
    OPT_LEGACY(arena_eager_commit, 2, eager_region_commit),
    OPT_LEGACY(purge_decommits, 1, reset_decommits),
    OPT_LEGACY(allow_large_os_pages, LM_HUGE_PAGES && LM_LARGE_PAGES_DEFAULT, large_os_pages),
    OPT(reserve_huge_os_pages, 0),
    OPT(reserve_huge_os_pages_at, -1),
    OPT_KIB(reserve_os_memory, 0),
    OPT(deprecated_segment_cache, 0),
    OPT(deprecated_page_reset, 0),
    OPT_LEGACY(abandoned_page_purge, 0, abandoned_page_reset),
    OPT(deprecated_segment_reset, 0),
    OPT(eager_commit_delay, 1),
    OPT_LEGACY(purge_delay, 10, reset_delay),
    OPT(use_numa_nodes, 0),
    OPT_LEGACY(disallow_os_alloc, 0, limit_os_alloc),
    OPT(os_tag, 100),
    OPT(max_errors, 32),
    OPT(max_warnings, 32),
    OPT(max_segment_reclaim, 10),
    OPT(destroy_on_exit, 0),
    OPT_KIB(arena_reserve, (long)(LM_ARENA_RESERVE_DEFAULT / LM_KiB)),
    OPT(arena_purge_mult, 10),
    OPT_LEGACY(purge_extend_delay, 1, decommit_extend_delay),
    OPT(abandoned_reclaim_on_free, 0),
    OPT(disallow_arena_alloc, 0),
    OPT(retry_on_oom, 400),
    OPT(visit_abandoned, 0),
    OPT(guarded_min, 0),
    OPT(guarded_max, 1024L * 1024L * 1024L),
    OPT(guarded_precise, 0),
    OPT(guarded_sample_rate, LM_GUARDED_BUILD ? 4000 : 0),
    OPT(guarded_sample_seed, 0),
    OPT(target_segments_per_thread, 0),
    OPT(generic_collect, 10000),
    OPT(allow_thp, 1),
};

static char lower(char c) { return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c; }

static bool str_ieq(const char* a, const char* b) {
  while (*a != 0 && lower(*a) == lower(*b)) {
    a++;
    b++;
  }
  return *a == 0 && *b == 0;
}

static bool env_lookup(const char* name, char* buf, size_t size) {
  const lm_backend_t* backend = lm_process.backend != NULL ? lm_process.backend : lm_backend_default();
  if (backend == NULL || backend->getenv == NULL) return false;
  char key[64] = "mimalloc_";
  size_t n = lm_strlen(key);
  for (size_t i = 0; name[i] != 0 && n + 1 < sizeof(key); i++) key[n++] = name[i];
  key[n] = 0;
  return backend->getenv(key, buf, size);
}

/* Parse a value: booleans, integers, and for KiB options sizes with K/M/G/T(IB|B) suffixes
 * (a bare number is bytes, rounded up to KiB). */
static bool parse_value(const char* s, bool is_kib, long* value) {
  if (*s == 0 || str_ieq(s, "1") || str_ieq(s, "true") || str_ieq(s, "yes") || str_ieq(s, "on")) {
    *value = 1;
    return true;
  }
  if (str_ieq(s, "0") || str_ieq(s, "false") || str_ieq(s, "no") || str_ieq(s, "off")) {
    *value = 0;
    return true;
  }
  const char* p = s;
  bool neg = false;
  if (*p == '-') {
    neg = true;
    p++;
  }
  if (*p < '0' || *p > '9') return false;
  unsigned long long v = 0;
  while (*p >= '0' && *p <= '9') {
    v = v * 10 + (unsigned long long)(*p - '0');
    if (v > (1ULL << 62)) return false;
    p++;
  }
  if (is_kib) {
    unsigned long long mult = 0; /* 0: bytes */
    char c = lower(*p);
    if (c == 'k') mult = 1;
    else if (c == 'm') mult = 1024;
    else if (c == 'g') mult = 1024 * 1024;
    else if (c == 't') mult = 1024ULL * 1024 * 1024;
    if (mult != 0) {
      p++;
      if (str_ieq(p, "ib") || str_ieq(p, "b")) p += lm_strlen(p);
      v *= mult;
    } else {
      v = (v + 1023) / 1024;
    }
  }
  if (*p != 0) return false;
  if (v > (unsigned long long)LONG_MAX) return false; /* long is 32 bits on 32-bit targets */
  *value = neg ? -(long)v : (long)v;
  return true;
}

static void option_init(mi_option_t option) {
  option_desc_t* desc = &options[option];
  char buf[64];
  bool found = env_lookup(desc->name, buf, sizeof(buf));
  bool legacy = false;
  if (!found && desc->legacy != NULL) {
    found = env_lookup(desc->legacy, buf, sizeof(buf));
    legacy = found;
  }
  if (!found) {
    if (desc->state == OPTION_UNINIT) {
      desc->value = desc->default_value;
      desc->state = OPTION_DEFAULTED;
    }
    return;
  }
  if (legacy) {
    lm_warning("environment option \"mimalloc_%s\" is deprecated -- use \"mimalloc_%s\" instead",
               desc->legacy, desc->name);
  }
  long value;
  if (parse_value(buf, desc->is_kib, &value)) {
    desc->value = value;
    desc->state = OPTION_INITIALIZED;
  } else {
    /* Read again from the library constructor when an earlier allocation (libnuma's
     * constructor, in a build that links it) started the process: one warning is enough. */
    if (!desc->warned) {
      lm_warning("environment option mimalloc_%s has an invalid value (\"%s\"); using the default",
                 desc->name, buf);
    }
    desc->warned = true;
    desc->value = desc->default_value;
    desc->state = OPTION_DEFAULTED;
  }
}

/* Read every option. Called at process start and again from the library constructor: an
 * allocation before libc was up may have found no environment, so options still at their
 * default are looked up again; options read from the environment or set by the program are
 * left alone (and their warnings are not repeated). */
void lm_options_init(void) {
  for (int i = 0; i < _mi_option_last; i++) {
    option_state_t state = options[i].state;
    if (state == OPTION_UNINIT || state == OPTION_DEFAULTED) option_init((mi_option_t)i);
  }
}

long lm_option_get(int option) { return mi_option_get((mi_option_t)option); }

long mi_option_get(mi_option_t option) {
  if (option < 0 || option >= _mi_option_last) return 0;
  option_desc_t* desc = &options[option];
  if (lm_unlikely(desc->state == OPTION_UNINIT)) option_init(option);
  return desc->value;
}

long mi_option_get_clamp(mi_option_t option, long min, long max) {
  long x = mi_option_get(option);
  return x < min ? min : (x > max ? max : x);
}

size_t mi_option_get_size(mi_option_t option) {
  long x = mi_option_get(option);
  if (x < 0 || (int)option < 0 || option >= _mi_option_last) return 0;
  if (!options[option].is_kib) return (size_t)x;
  /* saturated: on 32-bit targets a long of KiB can pass 4 GiB */
  return (size_t)x > SIZE_MAX / LM_KiB ? SIZE_MAX : (size_t)x * LM_KiB;
}

void mi_option_set(mi_option_t option, long value) {
  if (option < 0 || option >= _mi_option_last) return;
  options[option].value = value;
  options[option].state = OPTION_SET;
}

void mi_option_set_default(mi_option_t option, long value) {
  if (option < 0 || option >= _mi_option_last) return;
  options[option].default_value = value;
  if (options[option].state != OPTION_INITIALIZED && options[option].state != OPTION_SET) {
    options[option].value = value;
    options[option].state = OPTION_DEFAULTED;
  }
}

bool mi_option_is_enabled(mi_option_t option) { return mi_option_get(option) != 0; }
void mi_option_set_enabled(mi_option_t option, bool enable) { mi_option_set(option, enable); }
void mi_option_set_enabled_default(mi_option_t option, bool enable) {
  mi_option_set_default(option, enable);
}
void mi_option_enable(mi_option_t option) { mi_option_set_enabled(option, true); }
void mi_option_disable(mi_option_t option) { mi_option_set_enabled(option, false); }

void mi_options_print(void) mi_attr_noexcept {
  for (int i = 0; i < _mi_option_last; i++) {
    lm_message("option '%s': %ld", options[i].name, mi_option_get((mi_option_t)i));
  }
}
