/* The catalogue of heap attacks. Each runs in a forked child, so a detected attack (our error
 * handler called with the expected code, or the process stopped by a signal) ends only that
 * child. The parent prints one line per attack and, for the build named on the command line,
 * fails when an attack that build must stop got through.
 *
 *   attacks <release|secure|debug>   prints "attack <name> <result>" lines and a summary
 *
 * Results: EAGAIN/EFAULT/EINVAL (reported through mi_register_error), SIGSEGV/SIGABRT/...,
 * "forwarded" (a pointer we never made, handed to the next allocator: safe, not a detection),
 * or "undetected". */
#include <dlfcn.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mimalloc.h"

static void on_error(int err, void* arg) {
  (void)arg;
  _exit(100 + err); /* the child reports which error stopped it */
}

/* Keep the compiler from dropping stores into memory it knows came from an allocator. */
static void escape(void* p) { __asm__ volatile("" : : "r"(p) : "memory"); }

/* Allocate blocks of `size` until the heap has to hand out what the attack tampered with (a
 * freed block waits in the page's local list until the current free list runs out). */
static void allocate_some(size_t size, int n) {
  for (int i = 0; i < n; i++) {
    volatile char* p = mi_malloc(size);
    if (p != NULL) p[0] = 1;
  }
}

static void attack_double_free(void) {
  char* p = mi_malloc(64);
  mi_free(p);
  mi_free(p);
  allocate_some(64, 4);
}

static void attack_interior_free(void) {
  char* p = mi_malloc(64);
  mi_free(p + 16);
}

static void attack_stack_free(void) {
  char local[64];
  mi_free(local);
}

static int foreign_forwarded;
static void attack_foreign_free(void) {
  void* libc = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
  void* (*libc_malloc)(size_t) = libc ? (void* (*)(size_t))dlsym(libc, "malloc") : NULL;
  if (libc_malloc == NULL || libc_malloc == (void* (*)(size_t))mi_malloc) _exit(77);
  void* p = libc_malloc(64);
  mi_free(p); /* not ours: an error, or handed back to libc */
  foreign_forwarded = 1;
  _exit(99);
}

/* Overflow one byte out of a block into the next (free) one. */
static void attack_overflow_one_byte(void) {
  /* Two neighbouring blocks: b the closest block after a (a secure build hands blocks out in
   * random order). The byte just past what a's owner asked for is b's first byte, or a's
   * padding in a debug build. */
  char* blocks[256];
  for (int i = 0; i < 256; i++) blocks[i] = mi_malloc(48);
  char *a = blocks[0], *b = NULL;
  for (int j = 0; j < 256; j++) {
    if (blocks[j] > a && (b == NULL || blocks[j] < b)) b = blocks[j];
  }
  if (b == NULL || b - a > 64) _exit(77); /* no neighbour: the attack does not apply */
  mi_free(b);
  a[mi_usable_size(a)] ^= 0x41; /* one byte past the end */
  escape(a);
  mi_free(a);
  allocate_some(48, 4000);
}

/* One byte past the request of a block that is then freed, with no free neighbour in play
 * (issue 14's program): only a check at the block's own end can see it. */
static void attack_overflow_one_byte_then_free(void) {
  char* volatile p = mi_malloc(40);
  p[40] = 1;
  escape(p);
  mi_free(p);
}

/* Write through a block into its live neighbour, then free only the neighbour: the damaged
 * block itself is never freed. */
static void attack_overflow_into_live_neighbour(void) {
  char* blocks[256];
  for (int i = 0; i < 256; i++) blocks[i] = mi_malloc(64);
  char *a = blocks[0], *b = NULL;
  for (int j = 0; j < 256; j++) {
    if (blocks[j] > a && (b == NULL || blocks[j] < b)) b = blocks[j];
  }
  if (b == NULL || b - a > 128) _exit(77); /* no neighbour: the attack does not apply */
  memset(a + 64, 0x41, (size_t)(b - a) - 64 + 8); /* a's slack and end, b's first word */
  escape(a);
  mi_free(b);
}

/* A linear overflow that runs off the end of a page. */
static void attack_linear_overflow(void) {
  char* volatile p = mi_malloc(1024); /* volatile: the compiler sees no bounds to warn about */
  memset(p, 0x41, 256 * 1024);
  escape(p);
  allocate_some(1024, 8);
}

/* Write into a freed block (its free-list link), then have it reused. */
static void attack_write_after_free(void) {
  char* p = mi_malloc(96);
  mi_free(p);
  memset(p, 0x5A, 16);
  escape(p);
  allocate_some(96, 4000);
}

/* Point a freed block's link at an address of the attacker's choosing. */
static char target[256];
static void attack_corrupt_free_list(void) {
  char* p = mi_malloc(128);
  char* q = mi_malloc(128);
  mi_free(q);
  mi_free(p);
  *(void**)p = target;
  escape(p);
  for (int i = 0; i < 4000; i++) {
    char* r = mi_malloc(128);
    if (r == target) {
      strcpy(r, "owned");
      _exit(0); /* the allocator handed out the attacker's address */
    }
  }
}

/* Free a "block" that lies at a block boundary of another size class inside a real page. */
static void attack_forged_block(void) {
  char* p = mi_malloc(128);
  mi_free(p + 64); /* a valid 64-byte block address, but this page holds 128-byte blocks */
  allocate_some(64, 8);
}

typedef struct attack_s {
  const char* name;
  void (*run)(void);
  const char* secure_expects; /* "" when the secure build need not stop it */
  const char* debug_expects;
} attack_t;

static const attack_t attacks[] = {
    {"double-free", attack_double_free, "EAGAIN", "EAGAIN"},
    {"interior-pointer-free", attack_interior_free, "EINVAL", "EINVAL"},
    {"stack-pointer-free", attack_stack_free, "EINVAL", "EINVAL"},
    {"foreign-pointer-free", attack_foreign_free, "EINVAL", "EINVAL"},
    {"overflow-one-byte", attack_overflow_one_byte, "EFAULT", "EFAULT"},
    {"overflow-one-byte-then-free", attack_overflow_one_byte_then_free, "EFAULT", "EFAULT"},
    {"overflow-into-live-neighbour", attack_overflow_into_live_neighbour, "EFAULT", "EFAULT"},
    {"linear-overflow-across-page", attack_linear_overflow, "SIGSEGV", ""},
    {"write-after-free-then-reuse", attack_write_after_free, "EFAULT", "EFAULT"},
    {"corrupt-free-list-pointer", attack_corrupt_free_list, "EFAULT", "EFAULT"},
    {"forged-block-other-size-class", attack_forged_block, "EINVAL", "EINVAL"},
};

static const char* describe(int status, char* buf, size_t size) {
  if (WIFSIGNALED(status)) {
    int sig = WTERMSIG(status);
    snprintf(buf, size, "%s", sig == SIGSEGV ? "SIGSEGV" : sig == SIGABRT ? "SIGABRT"
                              : sig == SIGBUS ? "SIGBUS" : sig == SIGILL ? "SIGILL" : "signal");
    return buf;
  }
  int code = WEXITSTATUS(status);
  switch (code) {
    case 0: return "undetected";
    case 77: return "not-applicable";
    case 99: return "forwarded";
    case 100 + EAGAIN: return "EAGAIN";
    case 100 + EFAULT: return "EFAULT";
    case 100 + EINVAL: return "EINVAL";
    default: snprintf(buf, size, "exit-%d", code); return buf;
  }
}

int main(int argc, char** argv) {
  const char* build = argc > 1 ? argv[1] : "release";
  int passed = 0, failed = 0;
  for (size_t i = 0; i < sizeof(attacks) / sizeof(attacks[0]); i++) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
      mi_register_error(on_error, NULL);
      /* No core dumps, and no noise from the expected errors. */
      mi_option_disable(mi_option_show_errors);
      alarm(20);
      attacks[i].run();
      _exit(0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    char buf[32];
    const char* result = describe(status, buf, sizeof(buf));
    const char* expects = strcmp(build, "secure") == 0  ? attacks[i].secure_expects
                          : strcmp(build, "debug") == 0 ? attacks[i].debug_expects
                                                        : "";
    bool ok = expects[0] == 0 || strcmp(result, expects) == 0;
    printf("attack %-30s %-8s %-14s%s\n", attacks[i].name, build, result,
           ok ? "" : "  <- expected a stop");
    if (ok) passed++;
    else failed++;
  }
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
