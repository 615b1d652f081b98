/*
 * GCBench (Ellis, Kovac; Boehm's C version) with the Boehm-Demers-Weiser collector,
 * parameterised like bench/workloads/gcbench.ts and printing the same lines.
 *   cc -O2 gcbench_boehm.c -o gcbench_boehm -lgc
 *   ./gcbench_boehm <stretchDepth> <longLivedDepth> <arraySize> <minDepth> <maxDepth>
 */
#include "boehm_common.h"

typedef struct Node {
  struct Node *left, *right;
  int i, j;
} Node;

static int tree_size(int i) { return (1 << (i + 1)) - 1; }

static Node *new_node(Node *l, Node *r) {
  Node *n = GC_MALLOC(sizeof(Node));
  n->left = l;
  n->right = r;
  return n;
}

static void populate(int depth, Node *node) {
  if (depth <= 0) return;
  depth--;
  node->left = new_node(NULL, NULL);
  node->right = new_node(NULL, NULL);
  populate(depth, node->left);
  populate(depth, node->right);
}

static Node *make_tree(int depth) {
  if (depth <= 0) return new_node(NULL, NULL);
  Node *l = make_tree(depth - 1);
  Node *r = make_tree(depth - 1);
  return new_node(l, r);
}

static long count(const Node *n) { return n == NULL ? 0 : 1 + count(n->left) + count(n->right); }

int main(int argc, char **argv) {
  int stretch = argc > 1 ? atoi(argv[1]) : 18;
  int long_lived_depth = argc > 2 ? atoi(argv[2]) : 16;
  int array_size = argc > 3 ? atoi(argv[3]) : 500000;
  int min_depth = argc > 4 ? atoi(argv[4]) : 4;
  int max_depth = argc > 5 ? atoi(argv[5]) : 16;
  peer_init();
  double t0 = now_ms();

  printf("Garbage Collector Test\n");
  printf(" Stretching memory with a binary tree of depth %d\n", stretch);
  make_tree(stretch);
  printf(" Creating a long-lived binary tree of depth %d\n", long_lived_depth);
  Node *long_lived = new_node(NULL, NULL);
  populate(long_lived_depth, long_lived);
  printf(" Creating a long-lived array of %d doubles\n", array_size / 2);
  double *array = GC_MALLOC_ATOMIC(sizeof(double) * (array_size / 2));
  for (int i = 0; i < array_size / 2; i++) array[i] = i == 0 ? 0.0 : 1.0 / i;

  for (int d = min_depth; d <= max_depth; d += 2) {
    long iters = 2L * tree_size(stretch) / tree_size(d), nodes = 0;
    printf("Creating %ld trees of depth %d\n", iters, d);
    for (long i = 0; i < iters; i++) {
      Node *temp = new_node(NULL, NULL);
      populate(d, temp);
      nodes += count(temp);
    }
    printf("\tTop down construction: %ld nodes\n", nodes);
    nodes = 0;
    for (long i = 0; i < iters; i++) nodes += count(make_tree(d));
    printf("\tBottom up construction: %ld nodes\n", nodes);
  }
  int ok = count(long_lived) == tree_size(long_lived_depth) && array[1000] == 1.0 / 1000;
  printf(ok ? "long-lived tree and array intact\n" : "Failed\n");
  peer_report(now_ms() - t0);
  return 0;
}
