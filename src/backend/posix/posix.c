/* The POSIX helpers shared by the Linux, macOS and Haiku backends (see posix.h). */
#include "posix.h"
#include "../../common/common.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

/* ---- memory ------------------------------------------------------------------------------- */

int lm_posix_map(void* hint, size_t size, size_t try_align, size_t page_size, int prot,
                 int flags, int fd, void** addr) {
  char* p = mmap(hint, size, prot, flags, fd, 0);
  if (p == MAP_FAILED) return ENOMEM;
  /* Unaligned: map once more with slack and trim both ends. Should that fail, the unaligned
   * block is still an answer (the arena layer over-allocates then). */
  if (hint == NULL && try_align > page_size && lm_is_power_of_two(try_align) &&
      ((uintptr_t)p & (try_align - 1)) != 0 && size <= SIZE_MAX - try_align) {
    size_t over = size + try_align - page_size;
    char* q = mmap(NULL, over, prot, flags, fd, 0);
    if (q != MAP_FAILED) {
      munmap(p, size);
      p = lm_align_up_ptr(q, try_align);
      size_t head = (size_t)(p - q), tail = over - head - size;
      if (head > 0) munmap(q, head);
      if (tail > 0) munmap(p + size, tail);
    }
  }
  *addr = p;
  return 0;
}

int lm_posix_unmap(void* addr, size_t size) { return munmap(addr, size) == 0 ? 0 : errno; }

int lm_posix_protect(void* addr, size_t size, bool access) {
  return mprotect(addr, size, access ? PROT_READ | PROT_WRITE : PROT_NONE) == 0 ? 0 : errno;
}

/* ---- machine ------------------------------------------------------------------------------ */

int64_t lm_posix_clock_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

long lm_posix_read_file(const char* path, void* buf, size_t len) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  size_t done = 0;
  while (done < len) {
    ssize_t n = read(fd, (char*)buf + done, len - done);
    if (n > 0) done += (size_t)n;
    else if (n < 0 && errno == EINTR) continue;
    else break;
  }
  close(fd);
  return (long)done;
}

bool lm_posix_random_bytes(void* buf, size_t len) {
  return lm_posix_read_file("/dev/urandom", buf, len) == (long)len;
}

static char ascii_lower(char c) { return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c; }

bool lm_posix_getenv(char** env, const char* name, char* buf, size_t size) {
  if (env == NULL || name == NULL || name[0] == 0 || size == 0) return false;
  /* Scanned in place: getenv() may not be usable yet when the first malloc comes. */
  for (size_t i = 0; i < 10000 && env[i] != NULL; i++) {
    const char* e = env[i];
    size_t n = 0;
    while (name[n] != 0 && ascii_lower(e[n]) == ascii_lower(name[n])) n++;
    if (name[n] != 0 || e[n] != '=') continue;
    const char* value = e + n + 1;
    size_t k = 0;
    for (; k + 1 < size && value[k] != 0; k++) buf[k] = value[k];
    buf[k] = 0;
    return true;
  }
  return false;
}

void lm_posix_output(const char* msg) {
  size_t len = lm_strlen(msg), done = 0;
  while (done < len) {
    ssize_t n = write(STDERR_FILENO, msg + done, len - done);
    if (n > 0) done += (size_t)n;
    else if (n < 0 && errno == EINTR) continue;
    else break; /* stderr closed or full: nowhere else to report */
  }
}

void lm_posix_process_times(size_t* user_ms, size_t* system_ms, long* maxrss) {
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) != 0) return;
  *user_ms = (size_t)ru.ru_utime.tv_sec * 1000 + (size_t)ru.ru_utime.tv_usec / 1000;
  *system_ms = (size_t)ru.ru_stime.tv_sec * 1000 + (size_t)ru.ru_stime.tv_usec / 1000;
  *maxrss = ru.ru_maxrss;
}

/* ---- thread exit: a pthread key whose destructor runs the engine's function -------------- */

static pthread_key_t exit_key;
static _Atomic(int) exit_key_state; /* 0: none, 1: being created, 2: ready */
static lm_thread_exit_fun* _Atomic exit_fun;

/* pthread calls it only for a non-NULL value, after clearing the slot: once per arming. */
static void exit_destructor(void* value) {
  lm_thread_exit_fun* fn = atomic_load(&exit_fun);
  if (fn != NULL) fn(value);
}

int lm_posix_thread_exit_register(lm_thread_exit_fun* fn) {
  atomic_store(&exit_fun, fn);
  int state = 0;
  if (atomic_compare_exchange_strong(&exit_key_state, &state, 1)) {
    int err = pthread_key_create(&exit_key, exit_destructor);
    atomic_store(&exit_key_state, err == 0 ? 2 : 0);
    return err;
  }
  while ((state = atomic_load(&exit_key_state)) == 1) lm_cpu_relax();
  return state == 2 ? 0 : EAGAIN;
}

void lm_posix_thread_exit_arm(void* arg) {
  if (lm_load_acquire(&exit_key_state) == 2) pthread_setspecific(exit_key, arg);
}

/* ---- background threads ------------------------------------------------------------------- */

/* fn and arg travel in a static slot (the engine starts a handful of threads, ever), so a
 * start neither allocates nor waits for the new thread. */
typedef struct start_s {
  lm_thread_fun* fn;
  void* arg;
} start_t;
#define START_SLOTS 8
static start_t start_slots[START_SLOTS];
static _Atomic(unsigned) start_next;

static void* thread_main(void* p) {
  start_t* start = p;
  start->fn(start->arg);
  return NULL;
}

int lm_posix_thread_start(lm_thread_fun* fn, void* arg) {
  start_t* start = &start_slots[atomic_fetch_add(&start_next, 1) % START_SLOTS];
  start->fn = fn;
  start->arg = arg;
  pthread_attr_t attr;
  int err = pthread_attr_init(&attr);
  if (err != 0) return err;
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  /* The new thread inherits the creator's signal mask: block everything so that it never
   * runs the application's handlers. */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pthread_t thread;
  err = pthread_create(&thread, &attr, thread_main, start);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  pthread_attr_destroy(&attr);
  return err;
}

/* ---- wait and wake ------------------------------------------------------------------------ */

static pthread_mutex_t wait_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wait_cond = PTHREAD_COND_INITIALIZER;

void lm_posix_wait_on(_Atomic(uint32_t)* addr, uint32_t expected, int64_t timeout_ms) {
  int saved = errno; /* keep the caller's errno */
  struct timespec deadline;
  if (timeout_ms >= 0) {
    /* pthread_cond_timedwait takes a CLOCK_REALTIME deadline (macOS has no
     * pthread_condattr_setclock); a clock step only makes this wake early or late. */
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += (time_t)(timeout_ms / 1000);
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
    if (deadline.tv_nsec >= 1000000000) {
      deadline.tv_sec++;
      deadline.tv_nsec -= 1000000000;
    }
  }
  pthread_mutex_lock(&wait_lock);
  if (atomic_load(addr) == expected) {
    if (timeout_ms >= 0) pthread_cond_timedwait(&wait_cond, &wait_lock, &deadline);
    else pthread_cond_wait(&wait_cond, &wait_lock);
  }
  pthread_mutex_unlock(&wait_lock);
  errno = saved;
}

void lm_posix_wake_all(_Atomic(uint32_t)* addr) {
  (void)addr; /* one condition for every address: waiters re-check their own */
  pthread_mutex_lock(&wait_lock);
  pthread_cond_broadcast(&wait_cond);
  pthread_mutex_unlock(&wait_lock);
}

int lm_posix_atfork(void (*prepare)(void), void (*parent)(void), void (*child)(void)) {
  return pthread_atfork(prepare, parent, child);
}
