/*
 * binary-trees peer in C with the Boehm-Demers-Weiser collector (benchmarks game
 * rules). Prints the check lines, then `@@PEER {json}`.
 *   cc -O2 binarytrees_boehm.c -o binarytrees_boehm -lgc && ./binarytrees_boehm 21
 */
#include "boehm_common.h"

typedef struct Node {
  struct Node *left, *right;
} Node;

static Node *bottom_up(int d) {
  Node *n = GC_MALLOC(sizeof(Node));
  if (d > 0) {
    Node *l = bottom_up(d - 1);
    Node *r = bottom_up(d - 1);
    n->left = l;
    n->right = r;
  }
  return n;
}

static long check(const Node *t) { return t->left == NULL ? 1 : 1 + check(t->left) + check(t->right); }

int main(int argc, char **argv) {
  int n = argc > 1 ? atoi(argv[1]) : 10;
  const int min_depth = 4;
  int max_depth = n > min_depth + 2 ? n : min_depth + 2;
  peer_init();
  double t0 = now_ms();

  int stretch = max_depth + 1;
  printf("stretch tree of depth %d\t check: %ld\n", stretch, check(bottom_up(stretch)));
  Node *long_lived = bottom_up(max_depth);
  for (int d = min_depth; d <= max_depth; d += 2) {
    long iterations = 1L << (max_depth - d + min_depth), sum = 0;
    for (long i = 0; i < iterations; i++) sum += check(bottom_up(d));
    printf("%ld\t trees of depth %d\t check: %ld\n", iterations, d, sum);
  }
  printf("long lived tree of depth %d\t check: %ld\n", max_depth, check(long_lived));
  peer_report(now_ms() - t0);
  return 0;
}
