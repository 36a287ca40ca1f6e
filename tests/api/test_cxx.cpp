// C++ semantics of the mi_new family (facts 1.13) and the STL allocators of mimalloc.h (facts
// 1.14), from a C++17 program linked with the static library. No cmocka: plain checks that
// print "N passed, N failed"; the exit status is 0 only when nothing failed.
//
// The library is C: std::bad_alloc is raised through the C++ runtime's weak symbols and unwinds
// through C frames, and the std::new_handler is read through std::get_new_handler. Both are
// exercised here. A handler that really makes room is tested on a heap confined to an exclusive
// arena, the one way to run out of memory on purpose without starving the whole process.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <new>
#include <string>
#include <vector>

#include "mimalloc.h"

// Exported by the library for mimalloc compatibility, but not declared in its header.
extern "C" void* mi_heap_try_new(mi_heap_t* heap, size_t size, bool nothrow);

static int passed, failed;

#define CHECK(cond)                                                \
  do {                                                             \
    if (cond) {                                                    \
      passed++;                                                    \
    } else {                                                       \
      failed++;                                                    \
      std::printf("FAIL: %s:%d: %s\n", __FILE__, __LINE__, #cond); \
    }                                                              \
  } while (0)

// True when `fn` throws std::bad_alloc (and nothing else).
template <class F>
static bool throws_bad_alloc(F fn) {
  try {
    fn();
  } catch (const std::bad_alloc&) {
    return true;
  } catch (...) {
    return false;
  }
  return false;
}

// Sizes the compiler must not see as constants.
static volatile size_t v_size_max = SIZE_MAX;
static volatile size_t v_half_plus_one = SIZE_MAX / 2 + 1;
static volatile size_t v_align_48 = 48;  // not a power of two

static bool aligned(const void* p, size_t a) { return reinterpret_cast<uintptr_t>(p) % a == 0; }

// ---- throwing and nothrow forms without a handler -----------------------------------------------

static void test_new_throws_bad_alloc_without_handler() {
  std::set_new_handler(nullptr);
  CHECK(throws_bad_alloc([] { (void)mi_new(v_size_max); }));
  CHECK(throws_bad_alloc([] { (void)mi_new_aligned(v_size_max, 64); }));
  CHECK(throws_bad_alloc([] { (void)mi_new_n(v_half_plus_one, 2); }));  // overflow
  CHECK(throws_bad_alloc([] { (void)mi_new_n(2, v_size_max); }));
  CHECK(throws_bad_alloc([] { (void)mi_new_reallocn(nullptr, v_half_plus_one, 4); }));
  CHECK(throws_bad_alloc([] { (void)mi_heap_alloc_new(mi_heap_get_default(), v_size_max); }));
  CHECK(throws_bad_alloc(
      [] { (void)mi_heap_alloc_new_n(mi_heap_get_default(), v_half_plus_one, 2); }));
  // The exception leaves the C frames intact: allocation works afterwards.
  void* p = mi_new(100);
  CHECK(p != nullptr);
  mi_free(p);
}

static void test_nothrow_forms_return_null_without_handler() {
  std::set_new_handler(nullptr);
  CHECK(mi_new_nothrow(v_size_max) == nullptr);
  CHECK(mi_new_aligned_nothrow(v_size_max, 64) == nullptr);
  CHECK(mi_new_aligned_nothrow(100, v_align_48) == nullptr);
  CHECK(mi_heap_try_new(mi_heap_get_default(), v_size_max, true) == nullptr);
  void* p = mi_new_nothrow(100);
  CHECK(p != nullptr && mi_usable_size(p) >= 100);
  mi_free(p);
  p = mi_new_aligned_nothrow(100, 256);
  CHECK(p != nullptr && aligned(p, 256));
  mi_free(p);
}

// ---- successful allocation ----------------------------------------------------------------------

static void test_new_family_allocates() {
  for (size_t n = 0; n < 1000000; n = n * 2 + 1) {
    void* p = mi_new(n);
    CHECK(p != nullptr && mi_usable_size(p) >= n);
    std::memset(p, 0x5A, n);
    mi_free(p);
  }
  for (size_t a = 8; a <= (size_t(1) << 20); a *= 2) {
    void* p = mi_new_aligned(1000, a);
    CHECK(p != nullptr && aligned(p, a) && mi_usable_size(p) >= 1000);
    mi_free(p);
  }
  int* arr = static_cast<int*>(mi_new_n(1000, sizeof(int)));
  CHECK(arr != nullptr && mi_usable_size(arr) >= 1000 * sizeof(int));
  for (int i = 0; i < 1000; i++) arr[i] = i;
  arr = static_cast<int*>(mi_new_realloc(arr, 100000 * sizeof(int)));
  CHECK(arr != nullptr && mi_usable_size(arr) >= 100000 * sizeof(int));
  bool same = true;
  for (int i = 0; i < 1000; i++) same = same && arr[i] == i;
  CHECK(same);
  arr = static_cast<int*>(mi_new_reallocn(arr, 10, sizeof(int)));
  CHECK(arr != nullptr);
  same = true;
  for (int i = 0; i < 10; i++) same = same && arr[i] == i;
  CHECK(same);
  // a failed mi_new_realloc throws and leaves the block alone
  CHECK(throws_bad_alloc([&] { (void)mi_new_realloc(arr, v_size_max); }));
  same = true;
  for (int i = 0; i < 10; i++) same = same && arr[i] == i;
  CHECK(same);
  mi_free(arr);

  mi_heap_t* heap = mi_heap_new();
  CHECK(heap != nullptr);
  void* h1 = mi_heap_alloc_new(heap, 5000);
  void* h2 = mi_heap_alloc_new_n(heap, 100, 100);
  void* h3 = mi_heap_try_new(heap, 64, false);
  CHECK(h1 != nullptr && mi_heap_contains_block(heap, h1));
  CHECK(h2 != nullptr && mi_heap_contains_block(heap, h2) && mi_usable_size(h2) >= 10000);
  CHECK(h3 != nullptr && mi_heap_contains_block(heap, h3));
  mi_free(h1);
  mi_free(h2);
  mi_free(h3);
  mi_heap_delete(heap);
}

// ---- the new handler ----------------------------------------------------------------------------

static int handler_calls;

// Gives up at once: uninstalls itself, so the retry loop ends.
static void handler_give_up() {
  handler_calls++;
  std::set_new_handler(nullptr);
}

static void test_handler_is_called_before_giving_up() {
  handler_calls = 0;
  std::set_new_handler(handler_give_up);
  CHECK(throws_bad_alloc([] { (void)mi_new(v_size_max); }));
  CHECK(handler_calls == 1);

  handler_calls = 0;
  std::set_new_handler(handler_give_up);
  CHECK(mi_new_nothrow(v_size_max) == nullptr);
  CHECK(handler_calls == 1);

  handler_calls = 0;
  std::set_new_handler(handler_give_up);
  CHECK(mi_new_aligned_nothrow(v_size_max, 128) == nullptr);
  CHECK(handler_calls == 1);

  handler_calls = 0;
  std::set_new_handler(handler_give_up);
  void* p = mi_new(64);
  CHECK(throws_bad_alloc([&] { (void)mi_new_realloc(p, v_size_max); }));
  CHECK(handler_calls == 1);
  mi_free(p);
  std::set_new_handler(nullptr);
}

// Three calls, then it stops trying: the loop keeps calling it while it is installed.
static void handler_three_times() {
  if (++handler_calls == 3) std::set_new_handler(nullptr);
}

static void test_handler_is_called_until_uninstalled() {
  handler_calls = 0;
  std::set_new_handler(handler_three_times);
  CHECK(throws_bad_alloc([] { (void)mi_new(v_size_max); }));
  CHECK(handler_calls == 3);
  handler_calls = 0;
  std::set_new_handler(handler_three_times);
  CHECK(mi_heap_try_new(mi_heap_get_default(), v_size_max, true) == nullptr);
  CHECK(handler_calls == 3);
  std::set_new_handler(nullptr);
}

// A handler that makes room: frees a reserve block of a heap confined to an exclusive arena.
static mi_heap_t* arena_heap;
static void* reserve_block;

static void handler_free_reserve() {
  handler_calls++;
  if (reserve_block != nullptr) {
    mi_free(reserve_block);
    reserve_block = nullptr;
    mi_heap_collect(arena_heap, true);
  } else {
    std::set_new_handler(nullptr);  // nothing left to free: give up rather than loop
  }
}

static void test_handler_that_frees_a_reserve_lets_new_succeed() {
  const size_t MiB = size_t(1) << 20;
  mi_arena_id_t arena = 0;
  if (mi_reserve_os_memory_ex(256 * MiB, false, false, true, &arena) != 0) {
    std::printf("skip: no exclusive arena (mi_reserve_os_memory_ex failed)\n");
    return;
  }
  arena_heap = mi_heap_new_in_arena(arena);
  CHECK(arena_heap != nullptr);
  if (arena_heap == nullptr) return;
  mi_heap_t* previous = mi_heap_set_default(arena_heap);

  // Fill the arena with one reserve block, then ask for more than is left.
  reserve_block = mi_heap_malloc(arena_heap, 160 * MiB);
  CHECK(reserve_block != nullptr);
  CHECK(mi_heap_malloc(arena_heap, 160 * MiB) == nullptr);  // the arena is full

  struct attempt {
    const char* what;
    void* (*alloc)(size_t);
  } attempts[] = {
      {"mi_new", [](size_t n) { return mi_new(n); }},
      {"mi_new_nothrow", [](size_t n) { return mi_new_nothrow(n); }},
      {"mi_new_aligned", [](size_t n) { return mi_new_aligned(n, 4096); }},
      {"mi_heap_alloc_new", [](size_t n) { return mi_heap_alloc_new(arena_heap, n); }},
  };
  for (const attempt& a : attempts) {
    if (reserve_block == nullptr) reserve_block = mi_heap_malloc(arena_heap, 160 * MiB);
    CHECK(reserve_block != nullptr);
    handler_calls = 0;
    std::set_new_handler(handler_free_reserve);
    void* p = nullptr;
    try {
      p = a.alloc(160 * MiB);
    } catch (const std::bad_alloc&) {
      std::printf("FAIL: %s threw although the handler made room\n", a.what);
    }
    std::set_new_handler(nullptr);
    CHECK(p != nullptr);
    CHECK(handler_calls >= 1);
    CHECK(reserve_block == nullptr);
    if (p != nullptr) {
      CHECK(mi_usable_size(p) >= 160 * MiB);
      CHECK(mi_heap_contains_block(arena_heap, p));
      mi_free(p);
    }
    mi_heap_collect(arena_heap, true);
  }
  if (reserve_block != nullptr) mi_free(reserve_block);
  reserve_block = nullptr;
  mi_heap_set_default(previous);
  mi_heap_delete(arena_heap);
  arena_heap = nullptr;
}

// ---- STL allocators -----------------------------------------------------------------------------

static void test_stl_allocator_in_containers() {
  std::vector<int, mi_stl_allocator<int>> v;
  for (int i = 0; i < 100000; i++) v.push_back(i);
  CHECK(mi_is_in_heap_region(v.data()));
  CHECK(mi_usable_size(v.data()) >= v.size() * sizeof(int));
  long long sum = 0;
  for (int x : v) sum += x;
  CHECK(sum == 100000LL * 99999 / 2);

  using str = std::basic_string<char, std::char_traits<char>, mi_stl_allocator<char>>;
  std::map<int, str, std::less<int>, mi_stl_allocator<std::pair<const int, str>>> m;
  for (int i = 0; i < 1000; i++) m[i] = str(100, static_cast<char>('a' + i % 26));
  CHECK(m.size() == 1000);
  CHECK(m[25] == str(100, 'z'));
  CHECK(mi_is_in_heap_region(m[7].data()));
  m.clear();

  mi_stl_allocator<int> a, b;
  CHECK(a == b);
  CHECK(mi_stl_allocator<long>(a) == mi_stl_allocator<long>());
  bool threw = false;  // max_size overflow: std::bad_alloc (or its array-length subclass)
  try {
    std::vector<int, mi_stl_allocator<int>> big;
    big.reserve(big.max_size());
  } catch (const std::bad_alloc&) {
    threw = true;
  }
  CHECK(threw);
}

static void test_heap_stl_allocator_in_containers() {
  mi_heap_stl_allocator<int> alloc;
  {
    std::vector<int, mi_heap_stl_allocator<int>> v(alloc);
    for (int i = 0; i < 50000; i++) v.push_back(i * 3);
    CHECK(mi_heap_contains_block(alloc.heap.get(), v.data()));
    CHECK(v[49999] == 49999 * 3);
    auto copy = v;  // copies share the heap
    CHECK(copy.get_allocator() == v.get_allocator());
    CHECK(mi_heap_contains_block(alloc.heap.get(), copy.data()));
    v.clear();
    v.shrink_to_fit();
  }
  {
    using pair_alloc = mi_heap_stl_allocator<std::pair<const int, int>>;
    std::map<int, int, std::less<int>, pair_alloc> m{pair_alloc(alloc)};
    for (int i = 0; i < 5000; i++) m[i] = -i;
    CHECK(m.size() == 5000 && m[4999] == -4999);
    CHECK(mi_heap_contains_block(alloc.heap.get(), &*m.find(17)));
  }
  // a second allocator has its own heap
  mi_heap_stl_allocator<int> other;
  CHECK(!(other == alloc));
  CHECK(other.heap.get() != alloc.heap.get());
  alloc.collect(true);
}

static void test_heap_destroy_stl_allocator_in_containers() {
  mi_heap_t* seen = nullptr;
  {
    mi_heap_destroy_stl_allocator<int> alloc;
    seen = alloc.heap.get();
    CHECK(seen != nullptr);
    std::vector<int, mi_heap_destroy_stl_allocator<int>> v(alloc);
    for (int i = 0; i < 50000; i++) v.push_back(i);
    CHECK(mi_heap_contains_block(seen, v.data()));
    using pair_alloc = mi_heap_destroy_stl_allocator<std::pair<const int, int>>;
    std::map<int, int, std::less<int>, pair_alloc> m{pair_alloc(alloc)};
    for (int i = 0; i < 5000; i++) m[i] = i;
    CHECK(m[1234] == 1234);
    CHECK(mi_heap_contains_block(seen, &*m.find(99)));
    // containers go first, then the last allocator copy destroys the heap
  }
  // After the heap is gone the default heap still works.
  void* p = mi_new(100);
  CHECK(p != nullptr);
  mi_free(p);
}

// An explicit heap that the allocator must not delete.
static void test_heap_stl_allocator_on_a_borrowed_heap() {
  mi_heap_t* heap = mi_heap_new();
  CHECK(heap != nullptr);
  {
    mi_heap_stl_allocator<double> alloc(heap);
    std::vector<double, mi_heap_stl_allocator<double>> v(alloc);
    v.assign(1000, 1.5);
    CHECK(mi_heap_contains_block(heap, v.data()));
  }
  void* p = mi_heap_malloc(heap, 100);  // the heap is still alive
  CHECK(p != nullptr && mi_heap_contains_block(heap, p));
  mi_free(p);
  mi_heap_delete(heap);
}

int main() {
  test_new_throws_bad_alloc_without_handler();
  test_nothrow_forms_return_null_without_handler();
  test_new_family_allocates();
  test_handler_is_called_before_giving_up();
  test_handler_is_called_until_uninstalled();
  test_handler_that_frees_a_reserve_lets_new_succeed();
  test_stl_allocator_in_containers();
  test_heap_stl_allocator_in_containers();
  test_heap_destroy_stl_allocator_in_containers();
  test_heap_stl_allocator_on_a_borrowed_heap();
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
