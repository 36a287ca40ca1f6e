// override_cxx: run under LD_PRELOAD=libmimalloc.so, without linking the library. Every global
// operator new and delete (plain, array, nothrow, sized, aligned) must now be the library's:
// each mangled name must resolve into the preloaded library, and each new must hand out a
// block the library owns (mi_is_in_heap_region) with mi_usable_size at least the request.
//
// The blocks are stored through a volatile pointer so the compiler cannot elide a new/delete
// pair. Prints "N passed, N failed"; exit 0 only when nothing failed, 77 (skip) when
// LD_PRELOAD is unset.
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <vector>

typedef size_t usable_fn(const void*);
typedef bool in_region_fn(const void*);

static usable_fn* mi_usable;
static in_region_fn* mi_in_region;
static int passed, failed;
static void* volatile sink;

static void check(bool cond, const char* what, size_t arg) {
  if (cond) {
    passed++;
  } else {
    failed++;
    std::printf("FAIL: %s (%zu)\n", what, arg);
  }
}

// The block is ours, big enough, aligned as asked, and (when `write`) writable throughout.
static void check_block(void* p, size_t size, size_t align, const char* what, bool write) {
  sink = p;
  char msg[160];
  std::snprintf(msg, sizeof(msg), "%s returned a block", what);
  check(p != nullptr, msg, size);
  if (p == nullptr) return;
  std::snprintf(msg, sizeof(msg), "%s: the block is in the library's heap region", what);
  check(mi_in_region(p), msg, size);
  std::snprintf(msg, sizeof(msg), "%s: mi_usable_size covers the request", what);
  size_t usable = mi_usable(p);
  check(usable >= size, msg, size);
  std::snprintf(msg, sizeof(msg), "%s: aligned", what);
  check(reinterpret_cast<uintptr_t>(p) % align == 0, msg, align);
  if (write) std::memset(p, 0x6B, usable);
}
static void check_ours(void* p, size_t size, size_t align, const char* what) {
  check_block(p, size, align, what, true);
}
// A live object: the same checks, without overwriting it.
static void check_object(void* p, size_t size, size_t align, const char* what) {
  check_block(p, size, align, what, false);
}

struct alignas(256) over_aligned {
  char bytes[300];
};

// Every operator's mangled name resolves into the preloaded library.
static void check_symbols(const char* lib) {
  static const char* const names[] = {
      "_Znwm",
      "_Znam",
      "_ZnwmRKSt9nothrow_t",
      "_ZnamRKSt9nothrow_t",
      "_ZnwmSt11align_val_t",
      "_ZnamSt11align_val_t",
      "_ZnwmSt11align_val_tRKSt9nothrow_t",
      "_ZnamSt11align_val_tRKSt9nothrow_t",
      "_ZdlPv",
      "_ZdaPv",
      "_ZdlPvm",
      "_ZdaPvm",
      "_ZdlPvSt11align_val_t",
      "_ZdaPvSt11align_val_t",
      "_ZdlPvmSt11align_val_t",
      "_ZdaPvmSt11align_val_t",
      "_ZdlPvRKSt9nothrow_t",
      "_ZdaPvRKSt9nothrow_t",
      "_ZdlPvSt11align_val_tRKSt9nothrow_t",
      "_ZdaPvSt11align_val_tRKSt9nothrow_t",
  };
  for (const char* name : names) {
    if (sizeof(size_t) != 8) break;  // 32-bit manglings differ ('j'); the checks below still run
    void* sym = dlsym(RTLD_DEFAULT, name);
    Dl_info info;
    bool ours = sym != nullptr && dladdr(sym, &info) != 0 && info.dli_fname != nullptr &&
                std::strcmp(info.dli_fname, lib) == 0;
    char msg[160];
    std::snprintf(msg, sizeof(msg), "%s resolves into the preloaded library", name);
    check(ours, msg, 0);
    if (!ours && sym != nullptr && dladdr(sym, &info) != 0) {
      std::printf("  (found in %s)\n", info.dli_fname ? info.dli_fname : "?");
    }
  }
}

int main() {
  mi_usable = reinterpret_cast<usable_fn*>(dlsym(RTLD_DEFAULT, "mi_usable_size"));
  mi_in_region = reinterpret_cast<in_region_fn*>(dlsym(RTLD_DEFAULT, "mi_is_in_heap_region"));
  if (mi_usable == nullptr || mi_in_region == nullptr) {
    const char* pre = std::getenv("LD_PRELOAD");
    if (pre == nullptr || pre[0] == '\0') {
      std::printf("LD_PRELOAD is not set; skipping\n");
      return 77;
    }
    std::printf("FAIL: LD_PRELOAD=%s, but mi_usable_size/mi_is_in_heap_region are not visible\n",
                pre);
    std::printf("0 passed, 1 failed\n");
    return 1;
  }
  Dl_info self;
  const char* lib = "(unknown)";
  if (dladdr(reinterpret_cast<void*>(mi_usable), &self) != 0 && self.dli_fname != nullptr) {
    lib = self.dli_fname;
  }
  check_symbols(lib);

  // plain and array new, scalar and sized delete
  for (size_t n = 1; n < 2000000; n = n * 3 + 1) {
    char* a = new char[n];
    check_ours(a, n, 8, "new[]");
    delete[] a;
    void* b = ::operator new(n);
    check_ours(b, n, 8, "operator new");
    ::operator delete(b);
    void* c = ::operator new[](n);
    check_ours(c, n, 8, "operator new[]");
    ::operator delete[](c);
#ifdef __cpp_sized_deallocation
    b = ::operator new(n);
    check_ours(b, n, 8, "operator new, sized delete");
    ::operator delete(b, n);
    c = ::operator new[](n);
    check_ours(c, n, 8, "operator new[], sized delete[]");
    ::operator delete[](c, n);
#endif
  }
  long* l = new long(7);
  check_object(l, sizeof(long), alignof(long), "new long");
  check(*l == 7, "new long(7) is initialised", 0);
  delete l;
  std::string* s = new std::string(1000, 'x');
  check_object(s, sizeof(std::string), alignof(std::string), "new std::string");
  check_object(&(*s)[0], 1000, 1, "std::string storage");
  check(*s == std::string(1000, 'x'), "the string survives", 0);
  delete s;

  // nothrow
  char* nt = new (std::nothrow) char[5000];
  check_ours(nt, 5000, 8, "new(nothrow)[]");
  delete[] nt;
  void* nt2 = ::operator new(300, std::nothrow);
  check_ours(nt2, 300, 8, "operator new(nothrow)");
  ::operator delete(nt2, std::nothrow);
  void* nt3 = ::operator new[](300, std::nothrow);
  check_ours(nt3, 300, 8, "operator new[](nothrow)");
  ::operator delete[](nt3, std::nothrow);
  volatile size_t huge = SIZE_MAX / 2;
  check(::operator new(huge, std::nothrow) == nullptr, "operator new(nothrow) fails with NULL",
        huge);
  bool threw = false;
  try {
    sink = ::operator new(huge);
  } catch (const std::bad_alloc&) {
    threw = true;
  }
  check(threw, "operator new throws std::bad_alloc", huge);

  // aligned (C++17)
  over_aligned* o = new over_aligned;
  check_ours(o, sizeof(over_aligned), 256, "new over-aligned");
  delete o;  // sized aligned delete
  over_aligned* oa = new over_aligned[5];
  check_ours(oa, 5 * sizeof(over_aligned), 256, "new over-aligned[]");
  delete[] oa;
  over_aligned* ont = new (std::nothrow) over_aligned;
  check_ours(ont, sizeof(over_aligned), 256, "new(nothrow) over-aligned");
  delete ont;
  for (size_t al = 16; al <= (size_t(1) << 20); al *= 4) {
    std::align_val_t a{al};
    void* p = ::operator new(1000, a);
    check_ours(p, 1000, al, "operator new(align_val_t)");
    ::operator delete(p, a);
    p = ::operator new[](1000, a);
    check_ours(p, 1000, al, "operator new[](align_val_t)");
    ::operator delete[](p, a);
    p = ::operator new(1000, a, std::nothrow);
    check_ours(p, 1000, al, "operator new(align_val_t, nothrow)");
    ::operator delete(p, a, std::nothrow);
    p = ::operator new[](1000, a, std::nothrow);
    check_ours(p, 1000, al, "operator new[](align_val_t, nothrow)");
    ::operator delete[](p, a, std::nothrow);
#ifdef __cpp_sized_deallocation
    p = ::operator new(1000, a);
    check_ours(p, 1000, al, "operator new(align_val_t), sized delete");
    ::operator delete(p, 1000, a);
    p = ::operator new[](1000, a);
    check_ours(p, 1000, al, "operator new[](align_val_t), sized delete[]");
    ::operator delete[](p, 1000, a);
#endif
  }

  // the standard containers, through std::allocator
  std::vector<int> v;
  for (int i = 0; i < 100000; i++) v.push_back(i);
  check_object(v.data(), v.size() * sizeof(int), alignof(int), "std::vector storage");
  check(v[99999] == 99999, "the vector survives", 0);

  std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
