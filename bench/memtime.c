/* memtime: run a program, report its wall time and peak resident memory.
 *
 *   memtime [-p PRELOAD] [-o FILE] [--] PROGRAM [ARGS...]
 *
 * Forks, sets LD_PRELOAD=PRELOAD in the child only (when -p is given), execs PROGRAM, and
 * waits for it with wait4(). Then it writes one line to FILE (default: stderr):
 *
 *   memtime exit=N wall_s=S maxrss_kib=K utime_s=U stime_s=T
 *
 * exit is the program's exit status, or 128+signal if a signal ended it (127: could not be
 * run). memtime exits with that same status.
 *
 * Why a helper at all: on Linux a process's ru_maxrss also counts the memory of the image it
 * had before exec. A child started straight from the Python runner (a 15+ MiB process) would
 * report at least the runner's size; started from this small process it reports its own peak.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double seconds(struct timeval tv) { return (double)tv.tv_sec + (double)tv.tv_usec / 1e6; }

int main(int argc, char** argv) {
  const char* preload = NULL;
  const char* out_path = NULL;
  int i = 1;
  for (; i < argc; i++) {
    if (strcmp(argv[i], "-p") == 0 && i + 1 < argc) {
      preload = argv[++i];
    } else if (strcmp(argv[i], "-o") == 0 && i + 1 < argc) {
      out_path = argv[++i];
    } else if (strcmp(argv[i], "--") == 0) {
      i++;
      break;
    } else {
      break;
    }
  }
  if (i >= argc) {
    fprintf(stderr, "usage: %s [-p PRELOAD] [-o FILE] [--] PROGRAM [ARGS...]\n", argv[0]);
    return 2;
  }

  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  pid_t pid = fork();
  if (pid < 0) {
    perror("memtime: fork");
    return 127;
  }
  if (pid == 0) {
    if (preload != NULL && preload[0] != '\0') {
      setenv("LD_PRELOAD", preload, 1);
    }
    execvp(argv[i], &argv[i]);
    fprintf(stderr, "memtime: cannot run %s: %s\n", argv[i], strerror(errno));
    _exit(127);
  }
  int status = 0;
  struct rusage ru;
  memset(&ru, 0, sizeof(ru));
  while (wait4(pid, &status, 0, &ru) < 0) {
    if (errno != EINTR) {
      perror("memtime: wait4");
      return 127;
    }
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  int code = WIFEXITED(status) ? WEXITSTATUS(status)
                               : (WIFSIGNALED(status) ? 128 + WTERMSIG(status) : 127);
  double wall = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;

  FILE* out = stderr;
  if (out_path != NULL) {
    out = fopen(out_path, "w");
    if (out == NULL) {
      perror("memtime: cannot open the output file");
      out = stderr;
    }
  }
  fprintf(out, "memtime exit=%d wall_s=%.6f maxrss_kib=%ld utime_s=%.3f stime_s=%.3f\n", code,
          wall, ru.ru_maxrss, seconds(ru.ru_utime), seconds(ru.ru_stime));
  if (out != stderr) fclose(out);
  return code;
}
