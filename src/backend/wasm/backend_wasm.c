/* The wasm32-wasi backend: WebAssembly linear memory, which a program can only grow
 * (memory.grow, in 64 KiB pages) and never give back, and no threads.
 *
 * So the capabilities say: no virtual reservation (every reserved byte is committed memory),
 * no decommit, no partial release, no threads, no large pages. The arena layer then sizes its
 * arenas to what is asked (src/arena/arena.c) and never purges.
 *
 * Releasing cannot return memory to the host, but the ranges are not lost: they go to a small
 * table of spare ranges (coalesced with their neighbours), and reservations are served from it
 * before memory grows. Alignment asked for by `try_align` (an arena wants its segment size) is
 * honoured by growing past the next aligned address; the gap below it goes to the spare table
 * too, where the arena metadata and other small reservations find it later.
 *
 * wasi-libc's malloc (dlmalloc) grows the same memory through sbrk, which asks memory.grow for
 * each increment: both see the memory's true end, so neither can hand out the other's pages,
 * whether or not the build overrides malloc (with the override its malloc is not linked in).
 * Everything here runs on one thread: no locks. The environment and the clock come from WASI
 * calls that never allocate.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <wasi/api.h>

#include "../backend.h"

#define WASM_PAGE ((size_t)64 * 1024)
#define SPARE_MAX 64

typedef struct spare_s {
  uintptr_t start;
  size_t size;
  bool zero; /* never handed out: reads zero */
} spare_t;

static spare_t spare[SPARE_MAX]; /* sorted by start, not touching each other */
static size_t spare_count;

static uintptr_t round_up_to(uintptr_t x, size_t align) {
  return (x + align - 1) & ~(uintptr_t)(align - 1);
}

static void spare_remove(size_t i) {
  memmove(&spare[i], &spare[i + 1], (spare_count - i - 1) * sizeof(spare_t));
  spare_count--;
}

/* Keep [start, start + size) for later, merged with touching neighbours. With the table full
 * the range is dropped: memory lost, never memory handed out twice. */
static void spare_add(uintptr_t start, size_t size, bool zero) {
  if (size == 0) return;
  size_t i = 0;
  while (i < spare_count && spare[i].start < start) i++;
  if (i > 0 && spare[i - 1].start + spare[i - 1].size == start) { /* extends the one below */
    spare[i - 1].size += size;
    spare[i - 1].zero = spare[i - 1].zero && zero;
    if (i < spare_count && start + size == spare[i].start) {
      spare[i - 1].size += spare[i].size;
      spare[i - 1].zero = spare[i - 1].zero && spare[i].zero;
      spare_remove(i);
    }
    return;
  }
  if (i < spare_count && start + size == spare[i].start) { /* extends the one above down */
    spare[i].start = start;
    spare[i].size += size;
    spare[i].zero = spare[i].zero && zero;
    return;
  }
  if (spare_count == SPARE_MAX) return;
  memmove(&spare[i + 1], &spare[i], (spare_count - i) * sizeof(spare_t));
  spare[i] = (spare_t){start, size, zero};
  spare_count++;
}

/* First fit: a spare range that holds `size` bytes at an `align`-aligned address. */
static bool spare_take(size_t size, size_t align, void** addr, bool* is_zero) {
  for (size_t i = 0; i < spare_count; i++) {
    spare_t r = spare[i];
    uintptr_t p = round_up_to(r.start, align);
    if (p < r.start || p - r.start > r.size || r.size - (p - r.start) < size) continue;
    spare_remove(i);
    spare_add(r.start, p - r.start, r.zero);
    spare_add(p + size, r.start + r.size - (p + size), r.zero);
    *addr = (void*)p;
    *is_zero = r.zero;
    return true;
  }
  return false;
}

/* Grow the memory so that an aligned range of `size` bytes fits above its current end. */
static bool grow_for(size_t size, size_t align) {
  uintptr_t end = __builtin_wasm_memory_size(0) * WASM_PAGE;
  uintptr_t p = round_up_to(end, align);
  if (p < end || size > UINTPTR_MAX - p) return false;
  size_t pages = (p + size - end) / WASM_PAGE;
  size_t old = __builtin_wasm_memory_grow(0, pages);
  if (old == SIZE_MAX) return false;
  /* (the old end is the one read above: nothing else runs in between) */
  spare_add(old * WASM_PAGE, pages * WASM_PAGE, true);
  return true;
}

static void wasm_init(lm_backend_caps_t* caps) {
  *caps = (lm_backend_caps_t){
      .page_size = WASM_PAGE,
      .alloc_granularity = WASM_PAGE,
      .large_page_size = 0,
      .has_overcommit = false,
      .has_partial_release = false,
      .has_virtual_reserve = false,
      .has_decommit = false,
      .has_threads = false,
      .has_numa = false,
      .has_large_page_advice = false,
      .large_pages_absent = NULL,
  };
}

static int wasm_reserve(void* hint, size_t size, size_t try_align, bool commit, void** addr,
                        bool* is_zero) {
  (void)hint, (void)commit; /* no placement; everything is committed */
  size_t align = try_align > WASM_PAGE ? try_align : WASM_PAGE;
  if ((align & (align - 1)) != 0) align = WASM_PAGE;
  if (spare_take(size, align, addr, is_zero)) return 0;
  if (!grow_for(size, align)) return ENOMEM;
  return spare_take(size, align, addr, is_zero) ? 0 : ENOMEM;
}

static int wasm_release(void* addr, size_t size) {
  spare_add((uintptr_t)addr, size, false);
  return 0;
}

static int wasm_commit(void* addr, size_t size, bool* is_zero) {
  (void)addr, (void)size;
  *is_zero = false; /* committed since its reservation: old contents stay */
  return 0;
}

/* Nothing can be returned (has_decommit is false): the range simply stays as it is. */
static int wasm_decommit(void* addr, size_t size, bool* needs_recommit) {
  (void)addr, (void)size;
  *needs_recommit = false;
  return 0;
}

static int64_t wasm_clock_ms(void) {
  __wasi_timestamp_t ns = 0;
  if (__wasi_clock_time_get(__WASI_CLOCKID_MONOTONIC, 1000000, &ns) != 0) return 0;
  return (int64_t)(ns / 1000000);
}

static bool wasm_random_bytes(void* buf, size_t len) {
  return __wasi_random_get((uint8_t*)buf, len) == 0;
}

/* The environment, read once into static storage (wasi-libc's own copy would be made with
 * malloc, which is us). */
static char env_buf[16 * 1024];
static uint8_t* env_ptrs[512];
static size_t env_count;
static bool env_read, env_ok;

static bool env_load(void) {
  if (env_read) return env_ok;
  env_read = true;
  __wasi_size_t count = 0, bytes = 0;
  if (__wasi_environ_sizes_get(&count, &bytes) != 0 || count > 512 || bytes > sizeof(env_buf)) {
    return false;
  }
  env_ok = __wasi_environ_get(env_ptrs, (uint8_t*)env_buf) == 0;
  env_count = env_ok ? count : 0;
  return env_ok;
}

static char env_lower(char c) { return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c; }

static bool wasm_getenv(const char* name, char* buf, size_t size) {
  if (name == NULL || buf == NULL || size == 0 || !env_load()) return false;
  for (size_t i = 0; i < env_count; i++) {
    const char* e = (const char*)env_ptrs[i];
    size_t n = 0;
    while (name[n] != 0 && env_lower(name[n]) == env_lower(e[n])) n++;
    if (name[n] != 0 || e[n] != '=') continue;
    const char* value = e + n + 1;
    size_t len = strlen(value);
    if (len >= size) len = size - 1;
    memcpy(buf, value, len);
    buf[len] = 0;
    return true;
  }
  return false;
}

static void wasm_output(const char* msg) {
  __wasi_ciovec_t iov = {(const uint8_t*)msg, strlen(msg)};
  __wasi_size_t written;
  (void)__wasi_fd_write(2, &iov, 1, &written);
}

/* The memory size is what the host holds for the program, all of it resident. */
static void wasm_process_info(size_t* user_ms, size_t* system_ms, size_t* current_rss,
                              size_t* peak_rss, size_t* page_faults) {
  *user_ms = *system_ms = *page_faults = 0;
  *current_rss = *peak_rss = __builtin_wasm_memory_size(0) * WASM_PAGE;
}

static const lm_backend_t wasm_backend = {
    .name = "wasm",
    .init = wasm_init,
    .reserve = wasm_reserve,
    .release = wasm_release,
    .commit = wasm_commit,
    .decommit = wasm_decommit,
    .clock_ms = wasm_clock_ms,
    .random_bytes = wasm_random_bytes,
    .getenv = wasm_getenv,
    .output = wasm_output,
    .process_info = wasm_process_info,
};

const lm_backend_t* lm_backend_default(void) { return &wasm_backend; }
