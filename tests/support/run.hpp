// Test support: running an io_context with the number of threads the test run
// asks for, so that every suite also runs with its io_context driven by
// several threads (Meson registers `<suite>-4t` runs with FSYS_TEST_THREADS=4).
//
// Boost.Test's assertions are not thread-safe: a handler that may run while
// another handler runs on another thread must not call BOOST_TEST/BOOST_CHECK
// directly. It records what it saw (atomics, or state guarded by a mutex) and
// the test asserts after run() returns, or it uses FSYS_TEST_MT, which
// serialises the assertion with every other FSYS_TEST_MT.
#pragma once

#include <boost/asio/io_context.hpp>

#include <cstddef>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace fsys::test {

/// Threads that run() uses: FSYS_TEST_THREADS (1 to 64), default 1.
inline unsigned test_threads() {
  static const unsigned n = [] {
    const char* v = std::getenv("FSYS_TEST_THREADS");
    if (!v || !*v) return 1u;
    const long t = std::strtol(v, nullptr, 10);
    return t < 1 ? 1u : t > 64 ? 64u : static_cast<unsigned>(t);
  }();
  return n;
}

/// Runs `ctx` with test_threads() threads (the calling thread and
/// test_threads() - 1 more), like ctx.run() when that is 1. Returns when every
/// thread's run() has returned, i.e. when the context ran out of work or was
/// stopped. An exception escaping a handler on any thread is rethrown here,
/// after all threads have finished. Returns the handlers run in total.
inline std::size_t run(boost::asio::io_context& ctx) {
  const unsigned n = test_threads();
  if (n == 1) return ctx.run();
  std::vector<std::exception_ptr> errors(n);
  std::vector<std::size_t> counts(n, 0);
  auto body = [&](unsigned i) {
    try {
      counts[i] = ctx.run();
    } catch (...) {
      errors[i] = std::current_exception();
      ctx.stop();  // the other threads return too
    }
  };
  std::vector<std::thread> pool;
  pool.reserve(n - 1);
  for (unsigned i = 1; i < n; ++i) pool.emplace_back(body, i);
  body(0);
  for (auto& t : pool) t.join();
  std::size_t total = 0;
  for (auto c : counts) total += c;
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
  return total;
}

/// The mutex FSYS_TEST_MT holds around an assertion.
inline std::mutex& assertion_mutex() {
  static std::mutex m;
  return m;
}

}  // namespace fsys::test

/// BOOST_TEST(expr), serialised with every other FSYS_TEST_MT: for handlers
/// that may run on several threads at once.
#define FSYS_TEST_MT(...)                                                            \
  do {                                                                               \
    std::lock_guard<std::mutex> fsys_test_mt_lock_(::fsys::test::assertion_mutex()); \
    BOOST_TEST(__VA_ARGS__);                                                         \
  } while (0)
