/* What the OS says about this process (Linux /proc), for tests that observe the allocator from
 * outside: resident memory and thread count; and of the machine: the free explicit huge pages
 * (read only: the pool is the administrator's). Header-only; include it from any test folder.
 *
 * proc_self_rss_bytes() allocates nothing (plain syscalls into a stack buffer), so it can be
 * called while measuring; proc_self_threads() uses opendir, which allocates. */
#pragma once
#ifndef LM_TESTS_PROC_SELF_H
#define LM_TESTS_PROC_SELF_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

/* Resident bytes (the second field of /proc/self/statm), 0 when it cannot be read. */
static inline size_t proc_self_rss_bytes(void) {
  char buf[128];
  int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  ssize_t n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  if (n <= 0) return 0;
  buf[n] = '\0';
  const char* s = buf;
  while (*s != ' ' && *s != '\0') s++; /* skip the total size */
  size_t pages = 0;
  while (*s == ' ') s++;
  while (*s >= '0' && *s <= '9') pages = pages * 10 + (size_t)(*s++ - '0');
  return pages * (size_t)sysconf(_SC_PAGESIZE);
}

/* Threads of the process (entries of /proc/self/task), -1 when it cannot be read. */
static inline long proc_self_threads(void) {
  DIR* d = opendir("/proc/self/task");
  if (d == NULL) return -1;
  long n = 0;
  for (struct dirent* e; (e = readdir(d)) != NULL;) {
    if (e->d_name[0] != '.') n++;
  }
  closedir(d);
  return n;
}

/* Sleep ms milliseconds, resuming after signals. */
static inline void proc_sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

/* Free pages in the huge-page pool of pages of `kib` KiB (2048, 1048576), 0 without one. */
static inline long sys_free_huge_pages(long kib) {
  char path[96];
  snprintf(path, sizeof(path), "/sys/kernel/mm/hugepages/hugepages-%ldkB/free_hugepages", kib);
  FILE* f = fopen(path, "r");
  long n = 0;
  if (f == NULL) return 0;
  if (fscanf(f, "%ld", &n) != 1) n = 0;
  fclose(f);
  return n;
}

#endif
