/* fork() while other threads allocate: every child must be able to allocate, free and exit
 * without deadlock (no internal lock may stay held by a thread that does not exist in the
 * child), over many iterations, within a bounded time. Uses the libc names (malloc/free) so
 * it runs against the override; the parent checks each child's exit status. */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mimalloc.h"

static atomic_int stop;

static void* churn(void* arg) {
  unsigned seed = (unsigned)(uintptr_t)arg;
  void* slots[256] = {0};
  while (!atomic_load(&stop)) {
    seed = seed * 1103515245u + 12345u;
    unsigned k = (seed >> 8) % 256;
    mi_free(slots[k]);
    size_t size = (seed >> 16) % 4 == 0 ? (seed >> 4) % 200000 : (seed >> 4) % 512;
    slots[k] = mi_malloc(size + 1);
    if (slots[k] != NULL) memset(slots[k], 0x5A, size + 1);
    if ((seed & 0xFFF) == 0) mi_collect(false);
  }
  for (int i = 0; i < 256; i++) mi_free(slots[i]);
  return NULL;
}

/* The child: allocate and free a lot, from two threads, then exit normally. */
static int child_main(void) {
  void* blocks[1000];
  for (int round = 0; round < 5; round++) {
    for (int i = 0; i < 1000; i++) {
      blocks[i] = mi_malloc((size_t)(i * 37 % 5000) + 1);
      if (blocks[i] == NULL) return 3;
    }
    for (int i = 0; i < 1000; i++) mi_free(blocks[i]);
  }
  pthread_t t;
  if (pthread_create(&t, NULL, churn, (void*)7) != 0) return 4;
  usleep(2000);
  atomic_store(&stop, 1);
  pthread_join(t, NULL);
  mi_collect(true);
  return 0;
}

int main(int argc, char** argv) {
  int forks = argc > 1 ? atoi(argv[1]) : 100;
  int threads = argc > 2 ? atoi(argv[2]) : 3;
  pthread_t t[16];
  if (threads > 16) threads = 16;
  for (int i = 0; i < threads; i++) pthread_create(&t[i], NULL, churn, (void*)(uintptr_t)(i + 1));
  int passed = 0, failed = 0;
  for (int i = 0; i < forks; i++) {
    pid_t pid = fork();
    if (pid == 0) {
      alarm(20); /* a deadlocked child dies instead of hanging the test */
      _exit(child_main());
    }
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) != pid) {
      failed++;
      continue;
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
      passed++;
    } else {
      failed++;
      fprintf(stderr, "child %d: %s %d\n", i, WIFSIGNALED(status) ? "signal" : "exit",
              WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
    }
  }
  atomic_store(&stop, 1);
  for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
  printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
