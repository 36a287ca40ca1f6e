/* The limits of the cgroups the process belongs to: the memory limit and high mark, and the CPU
 * quota, from the cgroup file system (v2 unified, or v1's memory and cpu hierarchies).
 *
 * /proc/self/cgroup names the process's group; its files are under /sys/fs/cgroup. A limit set
 * on an ancestor binds as well, so each group from the process's own up to the root is read and
 * the tightest value counts. Usage is read from the group that holds the tightest memory limit:
 * that group's usage (siblings included) is what its limit is measured against. A root folder
 * other than "/" can be given (MIMALLOC_CGROUP_ROOT): tests point it at a tree they write.
 * Nothing here allocates: raw syscalls and stack buffers only.
 */
#define _GNU_SOURCE
#include "cgroup.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "../../common/common.h"

#define PATH_LEN 1024
/* cgroup v1 says "no limit" with LONG_MAX rounded down to a page: anything this large is none.
 * On 32-bit targets such a number does not fit a size_t: parse_number refuses it, which also
 * reads as no limit. */
#if LM_INTPTR_BITS == 64
#define V1_NO_LIMIT ((size_t)1 << 62)
#else
#define V1_NO_LIMIT SIZE_MAX
#endif

/* The usage file of the group with the tightest memory limit ("" when there is none). */
static char usage_file[PATH_LEN];

/* A NUL-terminated read of a small file; -1 if it cannot be opened. */
static long read_small(const char* path, char* buf, size_t size) {
  long fd = syscall(SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  long n;
  do {
    n = syscall(SYS_read, (int)fd, buf, size - 1);
  } while (n < 0 && errno == EINTR);
  syscall(SYS_close, (int)fd);
  if (n < 0) return -1;
  buf[n] = 0;
  return n;
}

/* Concatenate up to three parts into `out`; false if it does not fit. */
static bool join(char* out, const char* a, const char* b, const char* c) {
  size_t n = 0;
  const char* parts[3] = {a, b, c};
  for (int i = 0; i < 3; i++) {
    for (const char* p = parts[i]; p != NULL && *p != 0; p++) {
      if (n + 1 >= PATH_LEN) return false;
      out[n++] = *p;
    }
  }
  out[n] = 0;
  return true;
}

/* A decimal number at the start of s (after blanks); false for "max", "-1" or garbage. */
static bool parse_number(const char* s, size_t* value) {
  while (*s == ' ' || *s == '\t') s++;
  if (*s < '0' || *s > '9') return false;
  size_t v = 0;
  for (; *s >= '0' && *s <= '9'; s++) {
    if (v > (SIZE_MAX - 9) / 10) return false;
    v = v * 10 + (size_t)(*s - '0');
  }
  *value = v;
  return *s == 0 || *s == '\n' || *s == ' ';
}

/* The tightest value of `file` from `group` up to the root of hierarchy `base`; `dir` (may be
 * NULL) gets the folder it was found in. `parse` turns a file's text into bytes or milli-CPUs. */
static size_t tightest(const char* base, const char* group, const char* file,
                       bool (*parse)(const char* text, size_t* value), char* dir) {
  char g[PATH_LEN], path[PATH_LEN], text[128];
  size_t best = 0;
  if (!join(g, group, NULL, NULL)) return 0;
  for (;;) {
    bool at_root = g[0] == 0 || (g[0] == '/' && g[1] == 0);
    size_t value = 0;
    if (join(path, base, at_root ? "" : g, NULL) && lm_strlen(path) + lm_strlen(file) + 2 < PATH_LEN) {
      char folder[PATH_LEN];
      join(folder, path, NULL, NULL);
      join(path, folder, "/", file);
      if (read_small(path, text, sizeof(text)) > 0 && parse(text, &value) && value > 0 &&
          (best == 0 || value < best)) {
        best = value;
        if (dir != NULL) join(dir, folder, NULL, NULL);
      }
    }
    if (at_root) break;
    char* slash = strrchr(g, '/');
    if (slash == NULL || slash == g) g[0] = 0;
    else *slash = 0;
  }
  return best;
}

static bool parse_bytes(const char* text, size_t* value) {
  return parse_number(text, value) && *value < V1_NO_LIMIT;
}

/* v2 cpu.max: "<quota> <period>" in microseconds, or "max <period>". */
static bool parse_cpu_max(const char* text, size_t* milli) {
  size_t quota = 0, period = 0;
  if (!parse_number(text, &quota)) return false;
  const char* p = strchr(text, ' ');
  if (p == NULL || !parse_number(p + 1, &period) || period == 0) return false;
  *milli = quota * 1000 / period;
  return *milli > 0;
}

/* v1: the quota and the period are two files; the period is read from the same folder. */
static bool parse_v1_quota(const char* text, size_t* quota) {
  return parse_number(text, quota); /* "-1" (no quota) fails here */
}

/* The group path of a v1 controller ("4:memory:/a/b" or "2:cpu,cpuacct:/a") or, for
 * controller "", of v2 ("0::/a/b"). */
static bool group_of(const char* cgroups, const char* controller, char* out) {
  for (const char* line = cgroups; *line != 0;) {
    const char* end = strchr(line, '\n');
    if (end == NULL) end = line + lm_strlen(line);
    const char* c1 = memchr(line, ':', (size_t)(end - line));
    const char* c2 = c1 != NULL ? memchr(c1 + 1, ':', (size_t)(end - c1 - 1)) : NULL;
    if (c2 != NULL) {
      bool match = false;
      if (controller[0] == 0) {
        match = c2 == c1 + 1 && line[0] == '0';
      } else { /* one name of the comma-separated list */
        size_t len = lm_strlen(controller);
        for (const char* p = c1 + 1; p < c2;) {
          const char* q = memchr(p, ',', (size_t)(c2 - p));
          if (q == NULL) q = c2;
          if ((size_t)(q - p) == len && strncmp(p, controller, len) == 0) match = true;
          p = q + 1;
        }
      }
      size_t n = (size_t)(end - c2 - 1);
      if (match && n + 1 < PATH_LEN) {
        memcpy(out, c2 + 1, n);
        out[n] = 0;
        return true;
      }
    }
    line = *end == '\n' ? end + 1 : end;
  }
  return false;
}

static size_t affinity_cpus(void) {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return 1;
  int n = CPU_COUNT(&set);
  return n > 0 ? (size_t)n : 1;
}

/* The v1 quota: the tightest quota/period over the group and its ancestors. */
static size_t v1_cpu_quota(const char* base, const char* group) {
  char dir[PATH_LEN], path[PATH_LEN], text[64];
  size_t quota = tightest(base, group, "cpu.cfs_quota_us", parse_v1_quota, dir);
  size_t period = 0;
  if (quota == 0 || !join(path, dir, "/cpu.cfs_period_us", NULL) ||
      read_small(path, text, sizeof(text)) <= 0 || !parse_number(text, &period) || period == 0) {
    return 0;
  }
  return quota * 1000 / period;
}

bool lm_linux_container_limits(const char* root, lm_container_t* out) {
  *out = (lm_container_t){.cpus = affinity_cpus()};
  usage_file[0] = 0;
  char path[PATH_LEN], cgroups[2048], group[PATH_LEN], base[PATH_LEN];
  if (!join(path, root, "/proc/self/cgroup", NULL) ||
      read_small(path, cgroups, sizeof(cgroups)) <= 0) {
    return false;
  }
  char max_dir[PATH_LEN] = "", high_dir[PATH_LEN] = "";
  const char* usage_name;
  bool v2 = join(path, root, "/sys/fs/cgroup/cgroup.controllers", NULL) &&
            read_small(path, base, sizeof(base)) >= 0 && group_of(cgroups, "", group);
  if (v2) {
    join(base, root, "/sys/fs/cgroup", NULL);
    out->memory_max = tightest(base, group, "memory.max", parse_bytes, max_dir);
    out->memory_high = tightest(base, group, "memory.high", parse_bytes, high_dir);
    out->cpu_quota_milli = tightest(base, group, "cpu.max", parse_cpu_max, NULL);
    usage_name = "/memory.current";
  } else {
    if (group_of(cgroups, "memory", group)) {
      join(base, root, "/sys/fs/cgroup/memory", NULL);
      out->memory_max = tightest(base, group, "memory.limit_in_bytes", parse_bytes, max_dir);
      /* v1 has no high mark; the soft limit is what the kernel reclaims down to under pressure */
      out->memory_high = tightest(base, group, "memory.soft_limit_in_bytes", parse_bytes, high_dir);
    }
    if (group_of(cgroups, "cpu", group)) {
      join(base, root, "/sys/fs/cgroup/cpu,cpuacct", NULL);
      out->cpu_quota_milli = v1_cpu_quota(base, group);
      if (out->cpu_quota_milli == 0) {
        join(base, root, "/sys/fs/cgroup/cpu", NULL);
        out->cpu_quota_milli = v1_cpu_quota(base, group);
      }
    }
    usage_name = "/memory.usage_in_bytes";
  }
  /* usage from the group whose limit bites first */
  bool high_first = out->memory_high != 0 && (out->memory_max == 0 || out->memory_high < out->memory_max);
  const char* dir = high_first ? high_dir : out->memory_max != 0 ? max_dir : "";
  if (dir[0] != 0 && !join(usage_file, dir, usage_name, NULL)) usage_file[0] = 0;
  return true;
}

size_t lm_linux_container_usage(void) {
  char text[64];
  size_t value = 0;
  if (usage_file[0] == 0 || read_small(usage_file, text, sizeof(text)) <= 0 ||
      !parse_number(text, &value)) {
    return 0;
  }
  return value;
}
