// Replaces the global operator new/delete with malloc/free plus on-demand
// failure (see fail_alloc.hpp). In its own translation unit so that the
// replacements are never inlined into callers.
#include "fail_alloc.hpp"

#include <atomic>
#include <cstdlib>
#include <new>

namespace {
thread_local long fail_countdown = -1;
std::atomic<long> live{0};

void release(void* p) noexcept {
  if (!p) return;
  live.fetch_sub(1, std::memory_order_relaxed);
  std::free(p);
}
}  // namespace

void fsys::test::fail_allocation(long n) noexcept { fail_countdown = n; }
long fsys::test::live_allocations() noexcept { return live.load(std::memory_order_relaxed); }

void* operator new(std::size_t n) {
  if (fail_countdown >= 0 && fail_countdown-- == 0) throw std::bad_alloc();
  if (void* p = std::malloc(n ? n : 1)) {
    live.fetch_add(1, std::memory_order_relaxed);
    return p;
  }
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { release(p); }
void operator delete(void* p, std::size_t) noexcept { release(p); }
// The other replaceable forms, so that every allocation and deallocation
// pairs with the ones above (a sanitizer's own nothrow or array new would
// otherwise meet the free() of the replaced delete).
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  try {
    return ::operator new(n);
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](std::size_t n) { return ::operator new(n); }
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept { return ::operator new(n, std::nothrow); }
void operator delete(void* p, const std::nothrow_t&) noexcept { release(p); }
void operator delete[](void* p) noexcept { release(p); }
void operator delete[](void* p, std::size_t) noexcept { release(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { release(p); }
