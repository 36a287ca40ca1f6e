/* Unit test of the Linux backend's primitives, linked with the backend library alone.
 *
 * Each test talks to the real kernel through lm_backend_default(). Faults are provoked in
 * forked children (with cmocka's signal handlers reset) so the test process survives them.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "backend/backend.h"
#include "../support/proc_self.h"

#ifndef PR_SET_VMA /* kernel ABI values older headers (and musl's) lack */
#define PR_SET_VMA 0x53564d41
#define PR_SET_VMA_ANON_NAME 0
#endif
#ifndef LM_HUGE_PAGES
#define LM_HUGE_PAGES 1 /* meson passes the build's -Dhuge_pages */
#endif

static void* lm_test_align_up(void* p, size_t align) {
  return (void*)(((uintptr_t)p + align - 1) & ~(uintptr_t)(align - 1));
}

static const lm_backend_t* os;
static lm_backend_caps_t caps;

static int setup_backend(void** state) {
  (void)state;
  os = lm_backend_default();
  os->init(&caps);
  return 0;
}

/* Run fn(arg) in a child and return its wait status; the child gets default signal handling
 * and no core file, so a fault kills it the plain way. */
static int in_child(void (*fn)(void*), void* arg) {
  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0) {
    struct rlimit no_core = {0, 0};
    setrlimit(RLIMIT_CORE, &no_core);
    signal(SIGSEGV, SIG_DFL);
    signal(SIGBUS, SIG_DFL);
    fn(arg);
    _exit(0);
  }
  int status = 0;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  return status;
}

static bool all_bytes(const void* p, size_t size, uint8_t value) {
  for (size_t i = 0; i < size; i++) {
    if (((const uint8_t*)p)[i] != value) return false;
  }
  return true;
}

/* ---- memory ---------------------------------------------------------------------------------- */

static void test_init_reports_sane_caps(void** state) {
  (void)state;
  assert_string_equal(os->name, "linux");
  assert_true(caps.page_size >= 4096 && (caps.page_size & (caps.page_size - 1)) == 0);
  assert_int_equal(caps.page_size, (size_t)sysconf(_SC_PAGESIZE));
  assert_int_equal(caps.alloc_granularity % caps.page_size, 0);
  assert_int_equal(caps.large_page_size, 2u << 20);
  assert_true(caps.has_partial_release && caps.has_virtual_reserve && caps.has_decommit);
  assert_true(caps.has_threads);
  if (caps.has_numa) assert_true(os->numa_node_count() > 1);
}

static void test_reserve_commit_write_decommit_reads_zero(void** state) {
  (void)state;
  const size_t size = 16 * caps.page_size;
  void* p = NULL;
  bool is_zero = false;
  assert_int_equal(os->reserve(NULL, size, 0, false, &p, &is_zero), 0);
  assert_non_null(p);
  assert_true(is_zero);
  assert_int_equal((uintptr_t)p % caps.alloc_granularity, 0);
  is_zero = true;
  assert_int_equal(os->commit(p, size, &is_zero), 0);
  assert_false(is_zero); /* never promised after commit */
  memset(p, 0x5a, size);
  bool needs_recommit = true;
  assert_int_equal(os->decommit(p, size, &needs_recommit), 0);
  assert_false(needs_recommit);
  assert_true(all_bytes(p, size, 0)); /* MADV_DONTNEED: still mapped, refaults as zero */
  assert_int_equal(os->release(p, size), 0);
}

static void test_reserve_committed_is_zero_and_writable(void** state) {
  (void)state;
  const size_t size = 4u << 20;
  void* p = NULL;
  bool is_zero = false;
  assert_int_equal(os->reserve(NULL, size, 2u << 20, true, &p, &is_zero), 0);
  assert_true(is_zero);
  assert_true(all_bytes(p, size, 0));
  memset(p, 1, size);
  assert_int_equal(os->release(p, size), 0);
}

static void test_reset_keeps_range_accessible(void** state) {
  (void)state;
  const size_t size = 8 * caps.page_size;
  void* p;
  bool is_zero;
  assert_int_equal(os->reserve(NULL, size, 0, true, &p, &is_zero), 0);
  memset(p, 7, size);
  assert_int_equal(os->reset(p, size), 0);
  assert_int_equal(os->reset(p, size), 0); /* twice: the second sees nothing to free */
  uint8_t* b = p;
  for (size_t i = 0; i < size; i += caps.page_size) {
    assert_true(b[i] == 7 || b[i] == 0); /* kept or discarded, never anything else */
    b[i] = 9;
  }
  assert_int_equal(os->release(p, size), 0);
}

/* A range over three mappings (MADV_DONTFORK splits them, at boundaries that are neither on
 * 2 MiB nor on 64 KiB) moves whole: the backend goes on past each boundary. The source stays
 * mapped and reads zero, and its pages are not resident any more (moved, not copied). */
static void test_move_crosses_mappings_and_empties_the_source(void** state) {
  (void)state;
  const size_t page = caps.page_size, size = 3 * 1024 * 1024;
  uint8_t* p;
  bool is_zero;
  assert_int_equal(os->reserve(NULL, 2 * size, 0, true, (void**)&p, &is_zero), 0);
  for (size_t i = 0; i < size; i++) p[i] = (uint8_t)(i * 7 + i / page);
  memset(p + size, 0xEE, size);
  assert_int_equal(madvise(p + 1024 * 1024 + 5 * page, 300 * page, MADV_DONTFORK), 0);
  size_t moved = 0;
  int err = os->move(p + size, p, size, &moved);
  if (err == ENOSYS || err == EINVAL) { /* a kernel before 5.7 (or valgrind): nothing moved */
    assert_int_equal(moved, 0);
    assert_true(p[1] == 7 && p[size - 1] == (uint8_t)((size - 1) * 7 + (size - 1) / page));
  } else {
    assert_int_equal(err, 0);
    assert_int_equal(moved, size);
    for (size_t i = 0; i < size; i++) {
      if (p[size + i] != (uint8_t)(i * 7 + i / page)) fail_msg("byte %zu lost in the move", i);
    }
    unsigned char vec[16];
    assert_int_equal(mincore(p, 16 * page, vec), 0);
    for (size_t i = 0; i < 16; i++) assert_int_equal(vec[i] & 1, 0);
    assert_true(all_bytes(p, size, 0)); /* still mapped: reads zero */
  }
  assert_int_equal(os->release(p, 2 * size), 0);
}

static void write_first_byte(void* p) { *(volatile uint8_t*)p = 1; }

static void test_protect_makes_writes_fault(void** state) {
  (void)state;
  const size_t size = 2 * caps.page_size;
  void* p;
  bool is_zero;
  assert_int_equal(os->reserve(NULL, size, 0, true, &p, &is_zero), 0);
  assert_int_equal(os->protect(p, caps.page_size, true), 0);
  int status = in_child(write_first_byte, p);
  assert_true(WIFSIGNALED(status));
  assert_int_equal(WTERMSIG(status), SIGSEGV);
  /* The neighbouring page stays writable, and unprotecting restores access. */
  status = in_child(write_first_byte, (uint8_t*)p + caps.page_size);
  assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  assert_int_equal(os->protect(p, caps.page_size, false), 0);
  write_first_byte(p);
  assert_int_equal(os->release(p, size), 0);
}

static void test_uncommitted_reservation_faults(void** state) {
  (void)state;
  void* p;
  bool is_zero;
  assert_int_equal(os->reserve(NULL, caps.page_size, 0, false, &p, &is_zero), 0);
  int status = in_child(write_first_byte, p);
  assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV);
  assert_int_equal(os->release(p, caps.page_size), 0);
}

static void test_release_of_a_middle_part_keeps_the_ends(void** state) {
  (void)state;
  const size_t page = caps.page_size;
  uint8_t* p;
  bool is_zero;
  assert_int_equal(os->reserve(NULL, 4 * page, 0, true, (void**)&p, &is_zero), 0);
  assert_int_equal(os->release(p + page, 2 * page), 0);
  p[0] = 1;
  p[3 * page] = 1;
  int status = in_child(write_first_byte, p + page); /* released: unmapped */
  assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV);
  assert_int_equal(os->release(p, page), 0);
  assert_int_equal(os->release(p + 3 * page, page), 0);
}

static void test_reserve_honours_try_align(void** state) {
  (void)state;
  const size_t aligns[] = {64u << 10, 2u << 20, 32u << 20};
  for (size_t i = 0; i < sizeof(aligns) / sizeof(aligns[0]); i++) {
    for (int round = 0; round < 4; round++) {
      const size_t size = aligns[i] * 2 + (size_t)round * caps.page_size;
      void* p;
      bool is_zero;
      assert_int_equal(os->reserve(NULL, size, aligns[i], round % 2 == 0, &p, &is_zero), 0);
      assert_int_equal((uintptr_t)p % aligns[i], 0);
      assert_int_equal(os->release(p, size), 0);
    }
  }
}

/* A size no address space holds, a multiple of every granularity: 2^60 on 64-bit targets,
 * 4 GiB - 64 KiB on 32-bit */
#define UNMAPPABLE (SIZE_MAX > UINT32_MAX ? (size_t)(1ULL << 60) : (size_t)0xFFFF0000u)

static void test_reserve_fails_cleanly_with_enomem(void** state) {
  (void)state;
  void* p = (void*)0x1234;
  bool is_zero = false;
  assert_int_equal(os->reserve(NULL, UNMAPPABLE, 0, false, &p, &is_zero), ENOMEM);
  assert_int_equal(os->reserve(NULL, UNMAPPABLE, 1u << 30, true, &p, &is_zero), ENOMEM);
  assert_ptr_equal(p, (void*)0x1234); /* out-parameters untouched on failure */
  assert_false(is_zero);
}

/* -Dhuge_pages=disabled leaves the explicit huge-page functions out of the backend. */
static void test_huge_page_functions_follow_the_build(void** state) {
  (void)state;
  assert_true((os->reserve_huge != NULL) == (LM_HUGE_PAGES != 0));
  assert_true((os->reserve_large != NULL) == (LM_HUGE_PAGES != 0));
}

/* 1 GiB pages exactly when the pool has one free (or 2 MiB pages, the fallback, when their pool
 * covers 1 GiB); ENOMEM with nothing changed otherwise. */
static void test_reserve_huge_follows_the_pool(void** state) {
  (void)state;
  if (!LM_HUGE_PAGES) skip();
  bool expect = sys_free_huge_pages(1024 * 1024) >= 1 || sys_free_huge_pages(2048) >= 512;
  void* p = (void*)0x1234;
  bool is_zero = false;
  int err = os->reserve_huge(NULL, 1u << 30, os->numa_node(), &p, &is_zero);
  if (expect) {
    assert_int_equal(err, 0);
    assert_true(is_zero);
    write_first_byte(p);
    assert_int_equal(os->release(p, 1u << 30), 0);
  } else {
    assert_int_equal(err, ENOMEM);
    assert_ptr_equal(p, (void*)0x1234);
  }
}

/* Whether this kernel has CONFIG_ANON_VMA_NAME (asked directly, not through the backend). */
static bool kernel_names_mappings(void) {
  void* q = mmap(NULL, caps.page_size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  assert_true(q != MAP_FAILED);
  bool ok = prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME, (unsigned long)q, caps.page_size, "t") == 0;
  munmap(q, caps.page_size);
  return ok;
}

static void test_reservations_are_named(void** state) {
  (void)state;
  if (!kernel_names_mappings()) skip();
  void* p;
  bool is_zero;
  assert_int_equal(os->reserve(NULL, 3 * caps.page_size, 0, false, &p, &is_zero), 0);
  /* The line whose range holds p (unnamed, it may have merged with a neighbour). */
  char line[512];
  FILE* maps = fopen("/proc/self/maps", "r");
  assert_non_null(maps);
  bool named = false;
  while (fgets(line, sizeof(line), maps) != NULL) {
    unsigned long lo = 0, hi = 0;
    if (sscanf(line, "%lx-%lx", &lo, &hi) != 2 || (uintptr_t)p < lo || (uintptr_t)p >= hi) {
      continue;
    }
    named = strstr(line, "[anon:libmimalloc]") != NULL;
  }
  fclose(maps);
  assert_int_equal(os->release(p, 3 * caps.page_size), 0);
  assert_true(named);
}

/* VmFlags of the /proc/self/smaps entry that holds p ("" if none). */
static void vm_flags_of(const void* p, char* out, size_t size) {
  out[0] = 0;
  FILE* smaps = fopen("/proc/self/smaps", "r");
  assert_non_null(smaps);
  char line[512];
  bool inside = false;
  while (fgets(line, sizeof(line), smaps) != NULL) {
    unsigned long lo = 0, hi = 0;
    char dash = 0;
    if (sscanf(line, "%lx%c%lx ", &lo, &dash, &hi) == 3 && dash == '-') {
      inside = (uintptr_t)p >= lo && (uintptr_t)p < hi;
    } else if (inside && strncmp(line, "VmFlags:", 8) == 0) {
      snprintf(out, size, "%s", line + 8);
      break;
    }
  }
  fclose(smaps);
}

/* The capability follows the kernel's mode, and advice marks the mapping (hg / nh). */
static void test_large_page_advice_follows_the_thp_mode(void** state) {
  (void)state;
  char mode[128] = {0};
  FILE* f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
  if (f != NULL) {
    if (fgets(mode, sizeof(mode), f) == NULL) mode[0] = 0;
    fclose(f);
  }
  assert_int_equal(caps.has_large_page_advice, strstr(mode, "[madvise]") != NULL);
  if (!caps.has_large_page_advice) skip();
  size_t large = caps.large_page_size;
  void* p;
  bool is_zero;
  assert_int_equal(os->reserve(NULL, 3 * large, large, true, &p, &is_zero), 0);
  uint8_t* chunk = (uint8_t*)p + large;
  char flags[512];
  assert_int_equal(os->large_pages_advise(chunk, large, true), 0);
  vm_flags_of(chunk, flags, sizeof(flags));
  assert_non_null(strstr(flags, " hg"));
  vm_flags_of(p, flags, sizeof(flags)); /* only the range asked for */
  assert_null(strstr(flags, " hg"));
  assert_int_equal(os->large_pages_advise(chunk, large, false), 0);
  vm_flags_of(chunk, flags, sizeof(flags));
  assert_null(strstr(flags, " hg"));
  assert_non_null(strstr(flags, " nh"));
  assert_int_equal(os->release(p, 3 * large), 0);
}

/* The THP mode ("always", "madvise" or "never") from sysfs; "never" without the file. */
static const char* thp_mode(void) {
  static char mode[96];
  FILE* f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
  if (f == NULL) return "never";
  size_t n = fread(mode, 1, sizeof(mode) - 1, f);
  fclose(f);
  mode[n] = 0;
  if (strstr(mode, "[always]") != NULL) return "always";
  if (strstr(mode, "[madvise]") != NULL) return "madvise";
  return "never";
}

/* Explicit 2 MiB pages (pinned) when the pool has them; otherwise ordinary memory marked for
 * transparent huge pages (VmFlags hg), which the arenas may purge. */
static void test_reserve_large_is_explicit_only_with_a_pool(void** state) {
  (void)state;
  if (!LM_HUGE_PAGES) skip();
  size_t size = 2 * caps.large_page_size;
  bool pool = sys_free_huge_pages(2048) >= 2;
  void* p = NULL;
  bool is_zero = false, pinned = !pool;
  assert_int_equal(os->reserve_large(NULL, size, caps.large_page_size, &p, &is_zero, &pinned), 0);
  assert_true(is_zero);
  assert_int_equal(pinned, pool);
  char flags[512];
  vm_flags_of(p, flags, sizeof(flags));
  if (pool) assert_non_null(strstr(flags, " ht")); /* a hugetlb mapping */
  else assert_non_null(strstr(flags, " hg"));
  memset(p, 1, size);
  assert_int_equal(os->release(p, size), 0);
}

/* The backend's figure follows the kernel's: touching memory advised for huge pages (2 MiB
 * aligned) raises it by whole huge pages where the kernel gives them. */
static void test_large_pages_resident_counts_touched_huge_pages(void** state) {
  (void)state;
  assert_non_null(os->large_pages_resident);
  if (strcmp(thp_mode(), "never") == 0 || !caps.has_large_page_advice) skip();
  size_t large = caps.large_page_size, size = 4 * large;
  void* p = NULL;
  bool is_zero = false;
  assert_int_equal(os->reserve(NULL, size + large, large, true, &p, &is_zero), 0);
  uint8_t* chunk = lm_test_align_up(p, large);
  size_t before = os->large_pages_resident();
  assert_int_equal(os->large_pages_advise(chunk, size, true), 0);
  memset(chunk, 1, size);
  size_t after = os->large_pages_resident();
  assert_true(after >= before + large); /* at least one 2 MiB page (the kernel may split some) */
  assert_int_equal((after - before) % large, 0);
  assert_int_equal(os->release(p, size + large), 0);
  assert_true(os->large_pages_resident() <= after - large);
}

/* ---- machine ------------------------------------------------------------------------------- */

static void test_numa_node_is_in_range(void** state) {
  (void)state;
  int count = os->numa_node_count();
  assert_true(count >= 1);
  int node = os->numa_node();
  assert_true(node >= 0 && node < count);
  assert_int_equal(os->numa_node_count(), count); /* cached, stable */
}

/* The node count comes from the kernel's list of online nodes; here it is checked against the
 * node directories themselves (ids may be sparse: the count is the highest id + 1). */
static void test_numa_node_count_matches_sysfs(void** state) {
  (void)state;
  DIR* dir = opendir("/sys/devices/system/node");
  if (dir == NULL) skip();
  int highest = -1;
  for (struct dirent* e; (e = readdir(dir)) != NULL;) {
    char* end = NULL;
    if (strncmp(e->d_name, "node", 4) != 0) continue;
    long id = strtol(e->d_name + 4, &end, 10);
    if (end != e->d_name + 4 && *end == 0 && id > highest) highest = (int)id;
  }
  closedir(dir);
  if (highest < 0) skip();
  assert_int_equal(os->numa_node_count(), highest + 1);
}

/* Binding is a policy the kernel keeps for the range: read it back with get_mempolicy (raw
 * syscall, so the test is the same with and without libnuma), before and after the first
 * touch, and check that the touched page landed on node 0. */
#define TEST_MPOL_DEFAULT 0
#define TEST_MPOL_PREFERRED 1
#define TEST_MPOL_F_NODE 1
#define TEST_MPOL_F_ADDR 2
static long policy_of(void* p, int* mode, unsigned long* mask, unsigned long maxnode) {
  return syscall(SYS_get_mempolicy, mode, mask, maxnode, p, TEST_MPOL_F_ADDR);
}

static void test_numa_bind_to_node_0_sticks(void** state) {
  (void)state;
  size_t size = 4 * caps.page_size;
  void* p = NULL;
  bool zero = false;
  assert_int_equal(os->reserve(NULL, size, 0, true, &p, &zero), 0);
  int mode = -1;
  unsigned long mask[4] = {0}; /* 256 nodes, what the backend's mask covers */
  if (policy_of(p, &mode, mask, 256) != 0) {
    os->release(p, size);
    skip(); /* a kernel without NUMA policy support (ENOSYS) */
  }
  assert_int_equal(mode, TEST_MPOL_DEFAULT); /* nothing bound yet */
  assert_int_equal(os->numa_bind(p, size, 0), 0);
  memset(mask, 0, sizeof(mask));
  assert_int_equal(policy_of(p, &mode, mask, 256), 0);
  assert_int_equal(mode, TEST_MPOL_PREFERRED);
  assert_int_equal(mask[0], 1UL); /* node 0, and only it */
  memset(p, 1, size);
  int node = -1;
  assert_int_equal(syscall(SYS_get_mempolicy, &node, NULL, 0, p, TEST_MPOL_F_NODE | TEST_MPOL_F_ADDR), 0);
  assert_int_equal(node, 0);
  assert_int_equal(policy_of(p, &mode, mask, 256), 0); /* still bound after the touch */
  assert_int_equal(mode, TEST_MPOL_PREFERRED);
  /* A node beyond the mask is refused, and leaves the policy as it was. */
  assert_int_not_equal(os->numa_bind(p, size, 100000), 0);
  assert_int_equal(policy_of(p, &mode, mask, 256), 0);
  assert_int_equal(mode, TEST_MPOL_PREFERRED);
  assert_int_equal(os->release(p, size), 0);
}

static void test_clock_is_monotonic(void** state) {
  (void)state;
  int64_t t0 = os->clock_ms();
  struct timespec nap = {0, 20 * 1000 * 1000};
  nanosleep(&nap, NULL);
  int64_t t1 = os->clock_ms();
  assert_true(t0 >= 0);
  assert_true(t1 - t0 >= 15 && t1 - t0 < 5000);
}

static void test_random_bytes_differ_across_calls(void** state) {
  (void)state;
  uint8_t a[32] = {0}, b[32] = {0}, odd[13] = {0};
  assert_true(os->random_bytes(a, sizeof(a)));
  assert_true(os->random_bytes(b, sizeof(b)));
  assert_memory_not_equal(a, b, sizeof(a));
  assert_true(os->random_bytes(odd, sizeof(odd)));
  assert_true(os->random_bytes(a, 0));
}

static void test_getenv_is_case_insensitive(void** state) {
  (void)state;
  setenv("LM_TEST_VAR", "hello", 1);
  char buf[16] = {0};
  assert_true(os->getenv("lm_test_var", buf, sizeof(buf)));
  assert_string_equal(buf, "hello");
  assert_true(os->getenv("Lm_Test_Var", buf, 4)); /* truncated, still terminated */
  assert_string_equal(buf, "hel");
  assert_false(os->getenv("lm_test_va", buf, sizeof(buf))); /* a prefix is not a match */
  assert_false(os->getenv("lm_test_var_not_there", buf, sizeof(buf)));
  unsetenv("LM_TEST_VAR");
  assert_false(os->getenv("lm_test_var", buf, sizeof(buf)));
}

static void test_output_writes_to_stderr(void** state) {
  (void)state;
  int fds[2];
  assert_int_equal(pipe(fds), 0);
  fflush(stderr);
  int saved = dup(STDERR_FILENO);
  dup2(fds[1], STDERR_FILENO);
  os->output("backend output check\n");
  dup2(saved, STDERR_FILENO);
  close(saved);
  close(fds[1]);
  char buf[64] = {0};
  ssize_t n = read(fds[0], buf, sizeof(buf) - 1);
  close(fds[0]);
  assert_int_equal(n, (ssize_t)strlen("backend output check\n"));
  assert_string_equal(buf, "backend output check\n");
}

/* ---- threads ------------------------------------------------------------------------------- */

static atomic_int exit_runs;
static void* _Atomic exit_seen_arg;
static void on_thread_exit(void* arg) {
  atomic_fetch_add(&exit_runs, 1);
  atomic_store(&exit_seen_arg, arg);
}

static void* arming_thread(void* arg) {
  os->thread_exit_arm(arg); /* arm twice: still one run, with the last value */
  os->thread_exit_arm(arg);
  return NULL;
}
static void* disarming_thread(void* arg) {
  os->thread_exit_arm(arg);
  os->thread_exit_arm(NULL);
  return NULL;
}

static void run_and_join(void* (*body)(void*), void* arg) {
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, body, arg), 0);
  assert_int_equal(pthread_join(t, NULL), 0);
}

static void test_thread_exit_runs_once_with_the_armed_arg(void** state) {
  (void)state;
  static int token;
  assert_int_equal(os->thread_exit_register(on_thread_exit), 0);
  atomic_store(&exit_runs, 0);
  run_and_join(arming_thread, &token);
  assert_int_equal(atomic_load(&exit_runs), 1);
  assert_ptr_equal(atomic_load(&exit_seen_arg), &token);
  run_and_join(disarming_thread, &token);
  assert_int_equal(atomic_load(&exit_runs), 1); /* disarmed: nothing ran */
}

static _Atomic(uint32_t) started;
static void background(void* arg) {
  atomic_store((_Atomic(uint32_t)*)arg, 1);
  os->wake_all((_Atomic(uint32_t)*)arg);
}

static void test_thread_start_runs_the_function(void** state) {
  (void)state;
  atomic_store(&started, 0);
  assert_int_equal(os->thread_start(background, &started), 0);
  int64_t deadline = os->clock_ms() + 10000;
  while (atomic_load(&started) == 0 && os->clock_ms() < deadline) os->wait_on(&started, 0, 100);
  assert_int_equal(atomic_load(&started), 1);
}

static _Atomic(uint32_t) flag;
static void* set_flag_later(void* arg) {
  (void)arg;
  struct timespec nap = {0, 50 * 1000 * 1000};
  nanosleep(&nap, NULL);
  atomic_store(&flag, 1);
  os->wake_all(&flag);
  return NULL;
}

static void test_wait_on_returns_after_wake_all(void** state) {
  (void)state;
  atomic_store(&flag, 0);
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, set_flag_later, NULL), 0);
  int64_t t0 = os->clock_ms();
  while (atomic_load(&flag) == 0) os->wait_on(&flag, 0, 20000); /* woken long before */
  assert_true(os->clock_ms() - t0 < 10000);
  assert_int_equal(pthread_join(t, NULL), 0);
}

static void test_wait_on_returns_after_a_timeout(void** state) {
  (void)state;
  _Atomic(uint32_t) never = 0;
  int64_t t0 = os->clock_ms();
  errno = 1234;
  os->wait_on(&never, 0, 30);
  assert_int_equal(errno, 1234); /* errno is preserved */
  int64_t waited = os->clock_ms() - t0;
  assert_true(waited >= 20 && waited < 5000); /* no signal here, so no early return */
  t0 = os->clock_ms();
  os->wait_on(&never, 1, -1); /* not the expected value: returns at once */
  assert_true(os->clock_ms() - t0 < 5000);
}

static atomic_int forks_prepared;
static void on_prepare(void) { atomic_fetch_add(&forks_prepared, 1); }
static void exit_now(void* arg) { (void)arg; }

static void test_atfork_runs_the_handlers(void** state) {
  (void)state;
  assert_int_equal(os->atfork(on_prepare, NULL, NULL), 0);
  int before = atomic_load(&forks_prepared);
  int status = in_child(exit_now, NULL);
  assert_true(WIFEXITED(status));
  assert_int_equal(atomic_load(&forks_prepared), before + 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_init_reports_sane_caps),
      cmocka_unit_test(test_reserve_commit_write_decommit_reads_zero),
      cmocka_unit_test(test_reserve_committed_is_zero_and_writable),
      cmocka_unit_test(test_reset_keeps_range_accessible),
      cmocka_unit_test(test_protect_makes_writes_fault),
      cmocka_unit_test(test_uncommitted_reservation_faults),
      cmocka_unit_test(test_release_of_a_middle_part_keeps_the_ends),
      cmocka_unit_test(test_move_crosses_mappings_and_empties_the_source),
      cmocka_unit_test(test_reserve_honours_try_align),
      cmocka_unit_test(test_reserve_fails_cleanly_with_enomem),
      cmocka_unit_test(test_huge_page_functions_follow_the_build),
      cmocka_unit_test(test_reserve_huge_follows_the_pool),
      cmocka_unit_test(test_reserve_large_is_explicit_only_with_a_pool),
      cmocka_unit_test(test_large_pages_resident_counts_touched_huge_pages),
      cmocka_unit_test(test_reservations_are_named),
      cmocka_unit_test(test_large_page_advice_follows_the_thp_mode),
      cmocka_unit_test(test_numa_node_is_in_range),
      cmocka_unit_test(test_numa_node_count_matches_sysfs),
      cmocka_unit_test(test_numa_bind_to_node_0_sticks),
      cmocka_unit_test(test_clock_is_monotonic),
      cmocka_unit_test(test_random_bytes_differ_across_calls),
      cmocka_unit_test(test_getenv_is_case_insensitive),
      cmocka_unit_test(test_output_writes_to_stderr),
      cmocka_unit_test(test_thread_exit_runs_once_with_the_armed_arg),
      cmocka_unit_test(test_thread_start_runs_the_function),
      cmocka_unit_test(test_wait_on_returns_after_wake_all),
      cmocka_unit_test(test_wait_on_returns_after_a_timeout),
      cmocka_unit_test(test_atfork_runs_the_handlers),
  };
  return cmocka_run_group_tests_name("backend_linux", tests, setup_backend, NULL);
}
