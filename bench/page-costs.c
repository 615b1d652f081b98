// What a page costs on this machine, with no Node and no forkgc: the figures
// that decide how much fork mode pays around its pause (docs/performance-log.md,
// "What a page costs on a shadow-paged VM").
//
//   cc -O2 -o /tmp/page-costs bench/page-costs.c
//   /tmp/page-costs 1024 0    # 1 GiB, 4 KiB pages (MADV_NOHUGEPAGE)
//   /tmp/page-costs 1024 1    # 1 GiB, transparent huge pages (MADV_HUGEPAGE)
//
// It maps the given MiB, writes one byte per 4 KiB page (so all of it is
// resident), then times, per 4 KiB page:
//   - the parent reading the memory again (the baseline: no fault);
//   - a forked child's first read of each page, then its second read. On
//     bare metal and under hardware-assisted paging (EPT/NPT) both are the
//     baseline: fork() copied the page tables. Under shadow paging (a PVM
//     guest, for one) a new address space starts with no shadow entries, so
//     the child's first touch of every page traps to the hypervisor: the
//     forked marker pays it for every page it reads;
//   - the parent's write to each page while the child still shares it
//     (a copy-on-write fault), and after the child has exited (a
//     write-protect fault: fork() left the page read-only);
//   - the first write to fresh memory (a zero-fill fault).
// The child only reads memory, calls clock_gettime and write(), and _exits.
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double nowNs(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e9 + t.tv_nsec;
}

static char* mapAligned(size_t bytes, int huge) {
  size_t align = 2u << 20;
  char* p = mmap(NULL, bytes + align, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    perror("mmap");
    exit(1);
  }
  p = (char*)(((uintptr_t)p + align - 1) & ~(uintptr_t)(align - 1));
  madvise(p, bytes, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
  return p;
}

static volatile long sink;

static double readPages(const char* p, size_t bytes) {
  double t0 = nowNs();
  long s = 0;
  for (size_t i = 0; i < bytes; i += 4096) s += p[i];
  sink = s;
  return (nowNs() - t0) / (double)(bytes / 4096);
}

static double writePages(char* p, size_t bytes, char v) {
  double t0 = nowNs();
  for (size_t i = 0; i < bytes; i += 4096) p[i] = v;
  return (nowNs() - t0) / (double)(bytes / 4096);
}

int main(int argc, char** argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s MiB huge(0|1)\n", argv[0]);
    return 2;
  }
  size_t bytes = (size_t)atoi(argv[1]) << 20;
  int huge = atoi(argv[2]);
  if (bytes == 0) return 2;
  char* p = mapAligned(bytes, huge);
  writePages(p, bytes, 1);
  printf("%zu MiB, %s\n", bytes >> 20, huge ? "huge pages asked for" : "4 KiB pages");
  printf("parent read:                    %8.1f ns a page\n", readPages(p, bytes));

  // The child reports its two reads through a pipe (write() is async-signal-safe).
  int fds[2];
  if (pipe(fds) != 0) return 1;
  double forkStart = nowNs();
  pid_t child = fork();
  if (child < 0) return 1;
  if (child == 0) {
    double got[3];
    got[0] = nowNs() - forkStart;
    got[1] = readPages(p, bytes);
    got[2] = readPages(p, bytes);
    if (write(fds[1], got, sizeof got) != (ssize_t)sizeof got) _exit(1);
    pause();  // until the parent has timed its copy-on-write faults
    _exit(0);
  }
  printf("fork():                         %8.2f ms\n", (nowNs() - forkStart) / 1e6);
  double got[3];
  if (read(fds[0], got, sizeof got) != (ssize_t)sizeof got) return 1;
  printf("child ran after:                %8.2f ms\n", got[0] / 1e6);
  printf("child first read:               %8.1f ns a page\n", got[1]);
  printf("child second read:              %8.1f ns a page\n", got[2]);
  printf("parent write, child alive:      %8.1f ns a page (copy-on-write)\n", writePages(p, bytes, 2));
  kill(child, SIGKILL);
  waitpid(child, NULL, 0);
  // Every page was copied above; fork again so they are shared once more,
  // and let that child exit at once: the pages stay write-protected.
  child = fork();
  if (child == 0) _exit(0);
  waitpid(child, NULL, 0);
  printf("parent write, child exited:     %8.1f ns a page (write-protect)\n", writePages(p, bytes, 3));
  char* fresh = mapAligned(bytes, huge);
  printf("first write to fresh memory:    %8.1f ns a page (zero-fill)\n", writePages(fresh, bytes, 1));
  return 0;
}
