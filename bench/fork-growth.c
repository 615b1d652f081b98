// fork() of a 1 GiB anonymous mapping over repeated cycles, with no Node and
// no forkgc: how the kernel's fork cost changes once a parent has written to
// pages while a child shared them (docs/performance-log.md, "Fork pauses over
// back-to-back cycles").
//
//   cc -O2 -o /tmp/fork-growth bench/fork-growth.c
//   /tmp/fork-growth 0 0.2    # 4 KiB pages (MADV_NOHUGEPAGE)
//   /tmp/fork-growth 1 0.2    # transparent huge pages (MADV_HUGEPAGE)
//
// Each cycle: fork(); the child sleeps 0.7 s and exits (a stand-in for
// marking); meanwhile the parent writes one byte in the given fraction of the
// pages, at random (copy-on-write: with huge pages, each such write splits
// its 2 MiB mapping into 4 KiB entries); then the parent reaps the child.
// Prints the time of each fork() call.
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double nowMs(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

int main(int argc, char** argv) {
  const size_t bytes = 1UL << 30;
  const int huge = argc > 1 && atoi(argv[1]) != 0;
  const double fraction = argc > 2 ? atof(argv[2]) : 0.2;
  char* p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) { perror("mmap"); return 1; }
  if (madvise(p, bytes, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE) != 0) perror("madvise");
  memset(p, 1, bytes);
  const size_t pages = bytes / 4096;
  unsigned seed = 1;
  for (int cycle = 0; cycle < 6; cycle++) {
    const double t0 = nowMs();
    const pid_t pid = fork();
    const double t1 = nowMs();
    if (pid < 0) { perror("fork"); return 1; }
    if (pid == 0) { usleep(700000); _exit(0); }
    const size_t writes = (size_t)(pages * fraction);
    for (size_t i = 0; i < writes; i++) {
      seed = seed * 1103515245u + 12345u;
      p[((seed >> 4) % pages) * 4096 + (i & 4095)]++;
    }
    int status;
    if (waitpid(pid, &status, 0) != pid) { perror("waitpid"); return 1; }
    printf("cycle %d: fork %.2f ms\n", cycle, t1 - t0);
    fflush(stdout);
  }
  return 0;
}
