/*
 * Pause accounting for the Boehm GC peers: every collection's START..END interval
 * (the collector stops the world for the whole mark phase when not incremental;
 * sweeping is lazy, in allocation) is timed with CLOCK_MONOTONIC from the
 * collection-event callback, which must not allocate.
 */
#include <gc.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

#define MAX_PAUSES (1 << 20)
static double pauses_ms[MAX_PAUSES];
static size_t n_pauses;
static struct timespec gc_start;

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void on_event(GC_EventType e) {
  if (e == GC_EVENT_START) {
    clock_gettime(CLOCK_MONOTONIC, &gc_start);
  } else if (e == GC_EVENT_END) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    double ms = (t.tv_sec - gc_start.tv_sec) * 1e3 + (t.tv_nsec - gc_start.tv_nsec) / 1e6;
    if (n_pauses < MAX_PAUSES) pauses_ms[n_pauses++] = ms;
  }
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double pct(double p) {
  if (n_pauses == 0) return 0;
  size_t rank = (size_t)((p / 100.0) * n_pauses + 0.999999);
  if (rank < 1) rank = 1;
  if (rank > n_pauses) rank = n_pauses;
  return pauses_ms[rank - 1];
}

static void peer_init(void) {
  GC_INIT();
  GC_set_on_collection_event(on_event);
}

static void peer_report(double wall_ms) {
  double total = 0;
  for (size_t i = 0; i < n_pauses; i++) total += pauses_ms[i];
  qsort(pauses_ms, n_pauses, sizeof(double), cmp_double);
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  printf("@@PEER {\"wallMs\":%.3f,\"collections\":%zu,\"totalPauseMs\":%.3f,\"maxPauseMs\":%.3f,"
         "\"p99PauseMs\":%.3f,\"p50PauseMs\":%.3f,\"heapBytes\":%zu,\"maxRssBytes\":%ld}\n",
         wall_ms, n_pauses, total, pct(100), pct(99), pct(50), (size_t)GC_get_heap_size(),
         (long)ru.ru_maxrss * 1024);
  fflush(stdout);
}
