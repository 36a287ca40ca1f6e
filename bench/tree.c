/* tree: recursive structures built and dropped (GC-style allocation).
 *
 *   tree ROUNDS [MAX_DEPTH=16] [SEED=42]
 *
 * A long-lived binary tree of depth MAX_DEPTH is built first and checked at the end. Each round
 * then builds, walks and frees 2^(MAX_DEPTH-d) trees of depth d for d = 4, 6, ..., MAX_DEPTH
 * (about the same number of nodes for every depth). A node is 32 bytes; one node in four also
 * owns a label string of 8..40 bytes. A walk recomputes the node count and a checksum of the
 * values and labels, which must match what the build produced.
 * Exit status 0 on success, 2 on bad arguments, 1 if malloc returned NULL or a node lost its
 * contents.
 */
#include "bench.h"

typedef struct node_s {
  struct node_s* left;
  struct node_s* right;
  uint64_t value;
  char* label;
} node_t;

typedef struct sum_s {
  uint64_t nodes;
  uint64_t hash;
} sum_t;

static node_t* build(int depth, uint64_t* rs, sum_t* s) {
  node_t* n = malloc(sizeof(node_t));
  if (n == NULL) BENCH_FAIL("tree: malloc returned NULL");
  uint64_t r = bench_rnd(rs);
  n->value = r;
  n->label = NULL;
  s->nodes++;
  s->hash += r;
  if ((r & 3) == 0) {
    size_t len = 8 + (size_t)((r >> 8) % 33);
    n->label = malloc(len);
    if (n->label == NULL) BENCH_FAIL("tree: malloc returned NULL");
    memset(n->label, 'a' + (int)(r % 26), len - 1);
    n->label[len - 1] = '\0';
    s->hash += len;
  }
  if (depth > 0) {
    n->left = build(depth - 1, rs, s);
    n->right = build(depth - 1, rs, s);
  } else {
    n->left = n->right = NULL;
  }
  return n;
}

static void walk(const node_t* n, sum_t* s) {
  for (; n != NULL; n = n->right) {
    s->nodes++;
    s->hash += n->value;
    if (n->label != NULL) {
      size_t len = strlen(n->label) + 1;
      if (n->label[0] != 'a' + (int)(n->value % 26)) BENCH_FAIL("tree: a label was corrupted");
      s->hash += len;
    }
    walk(n->left, s);
  }
}

static void drop(node_t* n) {
  while (n != NULL) {
    node_t* right = n->right;
    drop(n->left);
    free(n->label);
    free(n);
    n = right;
  }
}

static void check(const node_t* root, const sum_t* want) {
  sum_t got = {0, 0};
  walk(root, &got);
  if (got.nodes != want->nodes || got.hash != want->hash)
    BENCH_FAIL("tree: a walk found %llu nodes, %llu expected",
               (unsigned long long)got.nodes, (unsigned long long)want->nodes);
}

int main(int argc, char** argv) {
  unsigned long long rounds = 0, max_depth = 16, seed = 42;
  if (argc < 2 || !bench_arg(argc, argv, 1, &rounds) || !bench_arg(argc, argv, 2, &max_depth) ||
      !bench_arg(argc, argv, 3, &seed) || max_depth < 4 || max_depth > 26) {
    fprintf(stderr, "usage: %s ROUNDS [MAX_DEPTH=16 (4..26)] [SEED=42]\n", argv[0]);
    return 2;
  }
  uint64_t rs = seed;
  sum_t old_sum = {0, 0};
  node_t* old = build((int)max_depth, &rs, &old_sum);
  uint64_t checksum = 0, nodes = 0;
  for (unsigned long long r = 0; r < rounds; r++) {
    for (int d = 4; d <= (int)max_depth; d += 2) {
      uint64_t count = 1ULL << (max_depth - (unsigned)d);
      for (uint64_t k = 0; k < count; k++) {
        sum_t s = {0, 0};
        node_t* t = build(d, &rs, &s);
        check(t, &s);
        drop(t);
        checksum += s.hash;
        nodes += s.nodes;
      }
    }
  }
  check(old, &old_sum);
  drop(old);
  printf("tree rounds=%llu max_depth=%llu nodes=%llu checksum=%llu malloc=%s\n", rounds,
         max_depth, (unsigned long long)nodes, (unsigned long long)checksum,
         bench_malloc_provider());
  return 0;
}
