/* What the POSIX backends (Linux, macOS, Haiku) share: mmap-based memory, the clock, random
 * bytes, the environment, output, and pthread-based threads. Each OS folder keeps only what
 * differs (VM tags, madvise flavours, page size, process figures) and fills its lm_backend_t
 * from these. Linux takes all but the file reads, random bytes and wait/wake, for which it uses
 * raw syscalls (getrandom, futexes).
 *
 * Like every backend function, none of these may call malloc: files are read with
 * open/read/close, the environment is scanned in place, threads start from a static slot.
 */
#pragma once
#ifndef LM_BACKEND_POSIX_H
#define LM_BACKEND_POSIX_H

#include "../backend.h"

/* mmap `size` bytes with `prot` and `flags` (MAP_PRIVATE|MAP_ANON plus the OS's own) and `fd`
 * (-1, or a VM tag on macOS). With `try_align` above `page_size` and no hint, an unaligned
 * result is mapped again with slack and trimmed to an aligned start. 0 or ENOMEM. */
int lm_posix_map(void* hint, size_t size, size_t try_align, size_t page_size, int prot,
                 int flags, int fd, void** addr);
int lm_posix_unmap(void* addr, size_t size);
/* Make a range readable and writable (`access`) or inaccessible. */
int lm_posix_protect(void* addr, size_t size, bool access);

int64_t lm_posix_clock_ms(void); /* CLOCK_MONOTONIC */
/* Read up to `len` bytes of a file; the count read, or -1 if it cannot be opened. */
long lm_posix_read_file(const char* path, void* buf, size_t len);
bool lm_posix_random_bytes(void* buf, size_t len); /* /dev/urandom */
/* Look `name` up in `env` (the process's environment array), case-insensitively. */
bool lm_posix_getenv(char** env, const char* name, char* buf, size_t size);
void lm_posix_output(const char* msg); /* write(2) to stderr */
/* CPU times of the process, in milliseconds, and getrusage's ru_maxrss as the OS counts it
 * (kilobytes on some systems, bytes on macOS): the caller scales it. */
void lm_posix_process_times(size_t* user_ms, size_t* system_ms, long* maxrss);

/* Threads: the lm_backend_t functions of the same names. */
int lm_posix_thread_exit_register(lm_thread_exit_fun* fn);
void lm_posix_thread_exit_arm(void* arg);
int lm_posix_thread_start(lm_thread_fun* fn, void* arg);
/* wait_on/wake_all over one mutex and condition variable: every waiter shares them, which is
 * fine for the few background threads the engine starts. A waker changes `*addr` before it
 * calls wake_all, and the waiter compares under the mutex, so no wake-up is lost. */
void lm_posix_wait_on(_Atomic(uint32_t)* addr, uint32_t expected, int64_t timeout_ms);
void lm_posix_wake_all(_Atomic(uint32_t)* addr);
int lm_posix_atfork(void (*prepare)(void), void (*parent)(void), void (*child)(void));

#endif
