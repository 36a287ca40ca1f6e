/* The Linux backend's cgroup reader over simulated cgroup trees: each test writes a tree
 * (proc/self/cgroup and sys/fs/cgroup/...) in a scratch folder and points the reader at it
 * with MIMALLOC_CGROUP_ROOT. The machine's own cgroups are never written. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>

#include "backend/backend.h"

#define MiB ((size_t)1 << 20)

static const lm_backend_t* os;
static char root[256];

/* mkdir -p for the folder part of root/rel */
static void make_parents(const char* rel) {
  char path[512];
  snprintf(path, sizeof(path), "%s/%s", root, rel);
  for (char* p = path + strlen(root) + 1; *p != 0; p++) {
    if (*p != '/') continue;
    *p = 0;
    mkdir(path, 0755);
    *p = '/';
  }
}

static void put(const char* rel, const char* fmt, ...) {
  make_parents(rel);
  char path[512];
  snprintf(path, sizeof(path), "%s/%s", root, rel);
  FILE* f = fopen(path, "w");
  assert_non_null(f);
  va_list args;
  va_start(args, fmt);
  vfprintf(f, fmt, args);
  va_end(args);
  fclose(f);
}

static int setup(void** state) {
  (void)state;
  os = lm_backend_default();
  lm_backend_caps_t caps;
  os->init(&caps);
  snprintf(root, sizeof(root), "%s/lm-cgroup-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
  if (mkdtemp(root) == NULL) return -1;
  setenv("MIMALLOC_CGROUP_ROOT", root, 1);
  return 0;
}

static int teardown(void** state) {
  (void)state;
  char cmd[300];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
  int rc = system(cmd);
  unsetenv("MIMALLOC_CGROUP_ROOT");
  return rc == 0 ? 0 : -1;
}

/* v2: the tightest of the group's and its ancestors' limits; usage from the group holding the
 * tightest; "max" is no limit; the CPU quota as thousandths of a CPU. */
static void test_cgroup_v2_tightest_limit_and_its_usage(void** state) {
  (void)state;
  put("proc/self/cgroup", "0::/app/worker\n");
  put("sys/fs/cgroup/cgroup.controllers", "cpu memory\n");
  put("sys/fs/cgroup/app/memory.max", "%zu\n", 512 * MiB);
  put("sys/fs/cgroup/app/memory.high", "max\n");
  put("sys/fs/cgroup/app/memory.current", "%zu\n", 300 * MiB);
  put("sys/fs/cgroup/app/worker/memory.max", "max\n");
  put("sys/fs/cgroup/app/worker/memory.high", "%zu\n", 768 * MiB);
  put("sys/fs/cgroup/app/worker/memory.current", "%zu\n", 100 * MiB);
  put("sys/fs/cgroup/app/worker/cpu.max", "150000 100000\n");
  put("sys/fs/cgroup/app/cpu.max", "max 100000\n");
  lm_container_t c;
  assert_true(os->container_limits(&c));
  assert_int_equal(c.memory_max, 512 * MiB);   /* the parent's */
  assert_int_equal(c.memory_high, 768 * MiB);
  assert_int_equal(c.cpu_quota_milli, 1500);
  assert_true(c.cpus >= 1);
  assert_int_equal(os->container_usage(), 300 * MiB); /* the parent's usage: its limit bites */
  /* usage is read again each time (cheap); limits only when asked */
  put("sys/fs/cgroup/app/memory.current", "%zu\n", 301 * MiB);
  assert_int_equal(os->container_usage(), 301 * MiB);
  /* a high mark below the limit bites first: usage from its group */
  put("sys/fs/cgroup/app/worker/memory.high", "%zu\n", 256 * MiB);
  assert_true(os->container_limits(&c));
  assert_int_equal(c.memory_high, 256 * MiB);
  assert_int_equal(os->container_usage(), 100 * MiB);
}

/* v1: limit_in_bytes (LONG_MAX-ish is none), the soft limit as the high mark, cfs quota over
 * period; controllers listed together ("cpu,cpuacct"). */
static void test_cgroup_v1_limit_soft_limit_and_quota(void** state) {
  (void)state;
  put("proc/self/cgroup", "9:pids:/\n4:memory:/svc\n2:cpu,cpuacct:/svc\n0::/\n");
  put("sys/fs/cgroup/memory/memory.limit_in_bytes", "9223372036854771712\n");
  put("sys/fs/cgroup/memory/svc/memory.limit_in_bytes", "%zu\n", 64 * MiB);
  put("sys/fs/cgroup/memory/svc/memory.soft_limit_in_bytes", "9223372036854771712\n");
  put("sys/fs/cgroup/memory/svc/memory.usage_in_bytes", "%zu\n", 60 * MiB);
  put("sys/fs/cgroup/cpu,cpuacct/svc/cpu.cfs_quota_us", "50000\n");
  put("sys/fs/cgroup/cpu,cpuacct/svc/cpu.cfs_period_us", "100000\n");
  lm_container_t c;
  assert_true(os->container_limits(&c));
  assert_int_equal(c.memory_max, 64 * MiB);
  assert_int_equal(c.memory_high, 0);
  assert_int_equal(c.cpu_quota_milli, 500);
  assert_int_equal(os->container_usage(), 60 * MiB);
  /* no quota (-1) and no limit: nothing to report, and no usage to read */
  put("sys/fs/cgroup/cpu,cpuacct/svc/cpu.cfs_quota_us", "-1\n");
  put("sys/fs/cgroup/memory/svc/memory.limit_in_bytes", "9223372036854771712\n");
  assert_true(os->container_limits(&c));
  assert_int_equal(c.memory_max, 0);
  assert_int_equal(c.cpu_quota_milli, 0);
  assert_int_equal(os->container_usage(), 0);
}

/* Garbage, empty files and missing ones are no limit; no /proc/self/cgroup at all: false. */
static void test_cgroup_unreadable_files_are_no_limit(void** state) {
  (void)state;
  lm_container_t c;
  assert_false(os->container_limits(&c));
  assert_int_equal(c.memory_max, 0);
  assert_true(c.cpus >= 1);
  put("proc/self/cgroup", "0::/x\n");
  put("sys/fs/cgroup/cgroup.controllers", "");
  put("sys/fs/cgroup/x/memory.max", "lots\n");
  put("sys/fs/cgroup/x/memory.high", "");
  put("sys/fs/cgroup/x/cpu.max", "100000 0\n");
  assert_true(os->container_limits(&c));
  assert_int_equal(c.memory_max, 0);
  assert_int_equal(c.memory_high, 0);
  assert_int_equal(c.cpu_quota_milli, 0);
  assert_int_equal(os->container_usage(), 0);
}

/* The process's real cgroups: read without harm (whatever they say). */
static void test_cgroup_real_tree_reads(void** state) {
  (void)state;
  unsetenv("MIMALLOC_CGROUP_ROOT");
  lm_container_t c;
  os->container_limits(&c);
  assert_true(c.cpus >= 1 && c.cpus <= (size_t)sysconf(_SC_NPROCESSORS_CONF));
  if (c.memory_max != 0) assert_true(os->container_usage() > 0);
  setenv("MIMALLOC_CGROUP_ROOT", root, 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_cgroup_v2_tightest_limit_and_its_usage, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_cgroup_v1_limit_soft_limit_and_quota, setup, teardown),
      cmocka_unit_test_setup_teardown(test_cgroup_unreadable_files_are_no_limit, setup, teardown),
      cmocka_unit_test_setup_teardown(test_cgroup_real_tree_reads, setup, teardown),
  };
  return cmocka_run_group_tests_name("cgroup", tests, NULL, NULL);
}
