/* traverse: objects allocated together and later visited in the order they were made.
 *
 *   traverse ROUNDS [NODES=300000] [WALKS=10] [SEED=42]
 *
 * Each round builds a singly linked list of NODES records; each record (32 bytes) owns a
 * payload string of 8..56 bytes allocated right after it. The list is then walked WALKS times
 * in allocation order (as a garbage collector's sweep, an interpreter's object list or a
 * database's row list is), reading every record and both ends of its payload, and finally
 * freed in allocation order. The walks dominate: they measure how well the allocator placed
 * what was allocated together, and whether the hardware can prefetch a walk in allocation
 * order (it can when consecutive allocations are memory neighbours).
 * Exit status 0 on success, 2 on bad arguments, 1 if malloc returned NULL or a record lost its
 * contents.
 */
#include "bench.h"

typedef struct record_s {
  struct record_s* next;
  char* payload;
  uint64_t value;
  uint64_t len;
} record_t;

int main(int argc, char** argv) {
  unsigned long long rounds = 0, nodes = 300000, walks = 10, seed = 42;
  if (argc < 2 || !bench_arg(argc, argv, 1, &rounds) || !bench_arg(argc, argv, 2, &nodes) ||
      !bench_arg(argc, argv, 3, &walks) || !bench_arg(argc, argv, 4, &seed) || rounds == 0 ||
      nodes == 0 || walks == 0) {
    fprintf(stderr, "usage: %s ROUNDS [NODES=300000] [WALKS=10] [SEED=42]\n", argv[0]);
    return 2;
  }
  uint64_t rs = seed, checksum = 0;
  for (unsigned long long round = 0; round < rounds; round++) {
    record_t* head = NULL;
    record_t** tail = &head;
    uint64_t expect = 0;
    for (unsigned long long i = 0; i < nodes; i++) {
      record_t* r = malloc(sizeof(record_t));
      if (r == NULL) BENCH_FAIL("traverse: malloc returned NULL");
      uint64_t x = bench_rnd(&rs);
      r->len = 8 + x % 49;
      r->payload = malloc(r->len);
      if (r->payload == NULL) BENCH_FAIL("traverse: malloc returned NULL");
      memset(r->payload, 'a' + (int)(x % 26), r->len);
      r->value = x >> 8;
      r->next = NULL;
      *tail = r;
      tail = &r->next;
      expect += r->value + (uint64_t)(2 * ('a' + (int)(x % 26)));
    }
    for (unsigned long long w = 0; w < walks; w++) {
      uint64_t sum = 0;
      for (const record_t* r = head; r != NULL; r = r->next) {
        sum += r->value + (uint64_t)(unsigned char)r->payload[0] +
               (uint64_t)(unsigned char)r->payload[r->len - 1];
      }
      if (sum != expect) BENCH_FAIL("traverse: a record lost its contents");
      checksum += sum;
    }
    for (record_t* r = head; r != NULL;) {
      record_t* next = r->next;
      free(r->payload);
      free(r);
      r = next;
    }
  }
  printf("traverse rounds=%llu nodes=%llu walks=%llu checksum=%llu malloc=%s\n", rounds, nodes,
         walks, (unsigned long long)checksum, bench_malloc_provider());
  return 0;
}
