// Replaces the global operator new/delete with malloc/free plus on-demand
// failure (see fail_alloc.hpp). In its own translation unit so that the
// replacements are never inlined into callers.
#include "fail_alloc.hpp"

#include <cstdlib>
#include <new>

namespace {
thread_local long fail_countdown = -1;
}  // namespace

void fsys::test::fail_allocation(long n) noexcept { fail_countdown = n; }

void* operator new(std::size_t n) {
  if (fail_countdown >= 0 && fail_countdown-- == 0) throw std::bad_alloc();
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
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
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
