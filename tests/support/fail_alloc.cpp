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
