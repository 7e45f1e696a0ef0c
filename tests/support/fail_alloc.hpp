// Test support: make the N-th allocation of the calling thread fail with
// std::bad_alloc (fail_alloc.cpp replaces the global operator new; link it
// only into suites that use it).
#pragma once

namespace fsys::test {

/// Arms (n >= 0: the n-th allocation from now, counting from 0, throws
/// std::bad_alloc) or disarms (n < 0) failure injection for this thread.
void fail_allocation(long n) noexcept;

/// Allocations made through the global operator new (any thread) minus the
/// non-null pointers given back to operator delete, since the process began.
long live_allocations() noexcept;

}  // namespace fsys::test
