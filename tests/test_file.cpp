// Core: fsys::file and the coroutine API on a real ring and real files.
#include <boost/test/unit_test.hpp>

#include "support/ring_fixture.hpp"
#include "support/run.hpp"
#include "support/temp_dir.hpp"

#include <fsys/fsys.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/read_at.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/asio/write.hpp>
#include <boost/asio/write_at.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <limits>
#include <memory>
#include <mutex>
#include <random>
#include <optional>
#include <future>
#include <cerrno>
#include <thread>

namespace asio = boost::asio;
using boost::system::error_code;
using fsys::test::pattern;
using fsys::test::read_file;
using fsys::test::temp_dir;

namespace {

constexpr int rw_create = O_RDWR | O_CREAT;

// Runs `aw` to completion with fsys::test::run() (FSYS_TEST_THREADS threads),
// or with the calling thread alone when `one_thread` (a single-issuer ring).
template <class T>
T run_coro(asio::io_context& ctx, asio::awaitable<T> aw, bool one_thread = false) {
  std::optional<T> result;
  std::exception_ptr err;
  asio::co_spawn(ctx, std::move(aw), [&](std::exception_ptr e, T v) {
    err = e;
    result = std::move(v);
  });
  if (one_thread)
    ctx.run();
  else
    fsys::test::run(ctx);
  ctx.restart();
  if (err) std::rethrow_exception(err);
  BOOST_REQUIRE(result.has_value());
  return *result;
}

}  // namespace

BOOST_AUTO_TEST_CASE(backend_is_the_expected_one) {
  asio::io_context ctx;
  auto& svc = fsys::test::make_ring(ctx);
  BOOST_TEST((svc.active_backend() == fsys::test::expected_backend()));
  if (svc.active_backend() == fsys::backend::io_uring) {
    BOOST_TEST(fsys::probe_features().available);
    BOOST_TEST(svc.setup_flags() != 0u);
  } else {
    BOOST_TEST(static_cast<bool>(svc.fallback_reason()));
  }
}

BOOST_AUTO_TEST_CASE(coroutine_round_trip_every_operation) {
  temp_dir dir;
  asio::io_context ctx;
  auto data = pattern(100000, 1);
  auto path = dir.file("co.dat");
  auto n = run_coro(ctx, [&]() -> asio::awaitable<std::size_t> {
    fsys::file f(co_await asio::this_coro::executor, path, rw_create);
    std::size_t w = co_await fsys::co_write_at(f, 10, asio::buffer(data));
    BOOST_TEST(w == data.size());
    co_await fsys::co_fdatasync(f);
    std::size_t l = co_await fsys::co_write_linked_fsync(f, 10 + data.size(), asio::buffer(data.data(), 5000));
    BOOST_TEST(l == 5000u);
    std::vector<std::byte> back(data.size());
    std::size_t r = co_await fsys::co_read_at(f, 10, asio::buffer(back));
    BOOST_TEST(r == back.size());
    BOOST_TEST((back == data));
    BOOST_TEST(f.size() == 10 + data.size() + 5000);
    co_return r;
  }());
  BOOST_TEST(n == data.size());
  auto disk = read_file(path);
  BOOST_REQUIRE_EQUAL(disk.size(), 10 + data.size() + 5000);
  BOOST_TEST(std::equal(data.begin(), data.end(), disk.begin() + 10));
  BOOST_TEST(std::equal(data.begin(), data.begin() + 5000, disk.begin() + 10 + data.size()));
}

BOOST_AUTO_TEST_CASE(callback_tokens_and_handlers_never_run_inline) {
  temp_dir dir;
  asio::io_context ctx;
  fsys::file f(ctx, dir.file("cb.dat"), rw_create);
  auto data = pattern(4096, 2);
  bool in_initiation = true;
  bool done = false;
  f.async_write_at(0, asio::buffer(data), [&](error_code ec, std::size_t n) {
    BOOST_TEST(!in_initiation);
    BOOST_TEST(!ec);
    BOOST_TEST(n == 4096u);
    f.async_fdatasync([&](error_code ec2) {
      BOOST_TEST(!ec2);
      done = true;
    });
  });
  in_initiation = false;
  fsys::test::run(ctx);
  BOOST_TEST(done);
  // An invalid request also completes through the io_context, never inline.
  fsys::file closed(ctx);
  bool ran = false;
  in_initiation = true;
  std::array<std::byte, 8> b{};
  closed.async_read_at(0, asio::buffer(b), [&](error_code ec, std::size_t n) {
    BOOST_TEST(!in_initiation);
    BOOST_TEST((ec == fsys::errc::not_open));
    BOOST_TEST(n == 0u);
    ran = true;
  });
  in_initiation = false;
  ctx.restart();
  fsys::test::run(ctx);
  BOOST_TEST(ran);
}

BOOST_AUTO_TEST_CASE(deferred_future_as_tuple_redirect_error) {
  temp_dir dir;
  asio::io_context ctx;
  fsys::file f(ctx, dir.file("tokens.dat"), rw_create);
  auto data = pattern(8192, 3);

  // deferred: nothing starts until the deferred operation is launched.
  auto op = f.async_write_at(0, asio::buffer(data), asio::deferred);
  fsys::test::run(ctx);
  ctx.restart();
  BOOST_TEST(f.size() == 0u);
  std::size_t written = 0;
  std::move(op)([&](error_code ec, std::size_t n) {
    BOOST_TEST(!ec);
    written = n;
  });
  fsys::test::run(ctx);
  ctx.restart();
  BOOST_TEST(written == data.size());

  // use_future, with the io_context run by another thread.
  std::vector<std::byte> back(data.size());
  auto work = asio::make_work_guard(ctx);
  std::thread runner([&] { ctx.run(); });
  std::future<std::size_t> fut = f.async_read_at(0, asio::buffer(back), asio::use_future);
  BOOST_TEST(fut.get() == data.size());
  BOOST_TEST((back == data));
  // use_future with an error: the future throws system_error.
  fsys::file closed(ctx);
  auto bad = closed.async_read_at(0, asio::buffer(back), asio::use_future);
  BOOST_CHECK_THROW(bad.get(), boost::system::system_error);
  std::future<void> sync = f.async_fdatasync(asio::use_future);
  BOOST_CHECK_NO_THROW(sync.get());
  work.reset();
  runner.join();
  ctx.restart();

  // as_tuple and redirect_error inside a coroutine.
  run_coro(ctx, [&]() -> asio::awaitable<int> {
    auto [ec, n] = co_await f.async_read_at(0, asio::buffer(back), asio::as_tuple(asio::use_awaitable));
    BOOST_TEST(!ec);
    BOOST_TEST(n == data.size());
    error_code ec2;
    std::size_t m = co_await f.async_read_some_at(data.size(), asio::buffer(back),
                                                  asio::redirect_error(asio::use_awaitable, ec2));
    BOOST_TEST((ec2 == asio::error::eof));
    BOOST_TEST(m == 0u);
    co_return 0;
  }());
}

BOOST_AUTO_TEST_CASE(several_buffers_use_readv_writev) {
  temp_dir dir;
  asio::io_context ctx;
  fsys::file f(ctx, dir.file("vec.dat"), rw_create);
  auto a = pattern(1000, 4), b = pattern(3000, 5), c = pattern(17, 6);
  std::vector<asio::const_buffer> out{asio::buffer(a), asio::buffer(b), asio::buffer(c)};
  std::size_t w = 0;
  f.async_write_at(5, out, [&](error_code ec, std::size_t n) {
    BOOST_TEST(!ec);
    w = n;
  });
  fsys::test::run(ctx);
  ctx.restart();
  BOOST_TEST(w == 4017u);
  std::vector<std::byte> x(17), y(4000);
  std::array<asio::mutable_buffer, 2> in{asio::buffer(x), asio::buffer(y)};
  std::size_t r = 0;
  f.async_read_at(5, in, [&](error_code ec, std::size_t n) {
    BOOST_TEST(!ec);
    r = n;
  });
  fsys::test::run(ctx);
  BOOST_TEST(r == 4017u);  // short: end of file after 4017 bytes
  std::vector<std::byte> all(a);
  all.insert(all.end(), b.begin(), b.end());
  all.insert(all.end(), c.begin(), c.end());
  BOOST_TEST(std::equal(x.begin(), x.end(), all.begin()));
  BOOST_TEST(std::equal(y.begin(), y.begin() + 4000, all.begin() + 17));
}

BOOST_AUTO_TEST_CASE(transfer_of_64_mib) {
  temp_dir dir;
  asio::io_context ctx;
  auto data = pattern(64u << 20, 7);
  auto path = dir.file("big.dat");
  fsys::file f(ctx, path, rw_create);
  std::size_t w = 0, r = 0;
  std::vector<std::byte> back(data.size());
  f.async_write_linked_fsync(0, asio::buffer(data), [&](error_code ec, std::size_t n) {
    BOOST_TEST(!ec);
    w = n;
    f.async_read_at(0, asio::buffer(back), [&](error_code ec2, std::size_t m) {
      BOOST_TEST(!ec2);
      r = m;
    });
  });
  fsys::test::run(ctx);
  BOOST_TEST(w == data.size());
  BOOST_TEST(r == data.size());
  BOOST_TEST((back == data));
  BOOST_TEST((read_file(path) == data));
}

BOOST_AUTO_TEST_CASE(reads_at_and_past_end_of_file) {
  temp_dir dir;
  auto path = dir.file("eof.dat");
  fsys::test::write_file(path, pattern(100, 8));
  asio::io_context ctx;
  fsys::file f(ctx, path, O_RDONLY);
  // One buffer per read: the reads run concurrently (on psync, in threads).
  std::vector<std::vector<std::byte>> buf(5, std::vector<std::byte>(64));
  std::vector<std::pair<error_code, std::size_t>> results;
  std::mutex m;  // the handlers may run on several threads at once
  auto rec = [&](error_code ec, std::size_t n) {
    std::lock_guard<std::mutex> l(m);
    results.emplace_back(ec, n);
  };
  f.async_read_at(80, asio::buffer(buf[0]), rec);        // short: 20 bytes
  f.async_read_at(100, asio::buffer(buf[1]), rec);       // at end: 0 bytes, no error
  f.async_read_at(5000, asio::buffer(buf[2]), rec);      // past end: 0 bytes, no error
  f.async_read_some_at(100, asio::buffer(buf[3]), rec);  // some at end: eof
  f.async_read_some_at(90, asio::buffer(buf[4]), rec);   // some short: 10
  fsys::test::run(ctx);
  BOOST_REQUIRE_EQUAL(results.size(), 5u);
  std::sort(results.begin(), results.end(), [](auto& a, auto& b) { return a.second > b.second; });
  BOOST_TEST(results[0].second == 20u);
  BOOST_TEST(!results[0].first);
  BOOST_TEST(results[1].second == 10u);
  int eofs = 0, clean_zero = 0;
  for (int i = 2; i < 5; ++i) {
    BOOST_TEST(results[i].second == 0u);
    if (results[i].first == asio::error::eof) ++eofs;
    if (!results[i].first) ++clean_zero;
  }
  BOOST_TEST(eofs == 1);
  BOOST_TEST(clean_zero == 2);
}

BOOST_AUTO_TEST_CASE(ten_thousand_operations_in_flight) {
  temp_dir dir;
  asio::io_context ctx;
  fsys::test::make_ring(ctx, fsys::ring_options{.queue_depth = 64});
  auto path = dir.file("many.dat");
  fsys::file f(ctx, path, rw_create);
  constexpr std::size_t ops = 10000, block = 512;
  auto data = pattern(ops * block, 9);
  // The handlers may run on several threads at once: counters, no assertions.
  std::atomic<std::size_t> completed{0}, bytes{0}, failed{0};
  for (std::size_t i = 0; i < ops; ++i) {
    f.async_write_at(i * block, asio::buffer(data.data() + i * block, block), [&](error_code ec, std::size_t n) {
      if (ec) ++failed;
      ++completed;
      bytes += n;
    });
  }
  fsys::test::run(ctx);
  ctx.restart();
  BOOST_TEST(failed.load() == 0u);
  BOOST_TEST(completed.load() == ops);
  BOOST_TEST(bytes.load() == data.size());
  BOOST_TEST((read_file(path) == data));

  std::vector<std::byte> back(data.size());
  completed = 0;
  for (std::size_t i = 0; i < ops; ++i) {
    f.async_read_at(i * block, asio::buffer(back.data() + i * block, block), [&](error_code ec, std::size_t n) {
      if (ec || n != block) ++failed;
      ++completed;
    });
  }
  fsys::test::run(ctx);
  BOOST_TEST(failed.load() == 0u);
  BOOST_TEST(completed.load() == ops);
  BOOST_TEST((back == data));
}

BOOST_AUTO_TEST_CASE(bad_inputs_give_error_codes_and_leave_the_file_intact) {
  temp_dir dir;
  auto path = dir.file("intact.dat");
  auto original = pattern(4096, 10);
  fsys::test::write_file(path, original);
  asio::io_context ctx;
  std::vector<std::byte> buf(512);

  // Read-only file written: EBADF from the kernel.
  fsys::file ro(ctx, path, O_RDONLY);
  error_code ec_ro;
  ro.async_write_at(0, asio::buffer(buf), [&](error_code ec, std::size_t n) {
    ec_ro = ec;
    BOOST_TEST(n == 0u);
  });
  // Offset + size past off_t: refused before submission.
  error_code ec_ovf;
  ro.async_read_at(std::numeric_limits<std::uint64_t>::max() - 10, asio::buffer(buf),
                   [&](error_code ec, std::size_t) { ec_ovf = ec; });
  error_code ec_ovf2;
  ro.async_write_linked_fsync(static_cast<std::uint64_t>(std::numeric_limits<off_t>::max()), asio::buffer(buf),
                              [&](error_code ec, std::size_t) { ec_ovf2 = ec; });
  // Closed file.
  fsys::file closed(ctx);
  error_code ec_closed;
  closed.async_write_linked_fsync(0, asio::buffer(buf), [&](error_code ec, std::size_t) { ec_closed = ec; });
  // Invalid fd: a descriptor number that is not open.
  int dead = ::open(path.c_str(), O_RDONLY);
  ::close(dead);
  fsys::file invalid(ctx, dead);
  error_code ec_invalid;
  invalid.async_read_at(0, asio::buffer(buf), [&](error_code ec, std::size_t) { ec_invalid = ec; });
  error_code ec_invalid_sync;
  invalid.async_fdatasync([&](error_code ec) { ec_invalid_sync = ec; });
  fsys::test::run(ctx);
  (void)invalid.release();  // the number is not ours to close

  BOOST_TEST((ec_ro == std::errc::bad_file_descriptor));
  BOOST_TEST((ec_ovf == fsys::errc::offset_overflow));
  BOOST_TEST((ec_ovf2 == fsys::errc::offset_overflow));
  BOOST_TEST((std::error_code(ec_ovf) == std::errc::value_too_large));
  BOOST_TEST((ec_closed == std::errc::bad_file_descriptor));
  BOOST_TEST((ec_invalid == std::errc::bad_file_descriptor));
  BOOST_TEST((ec_invalid_sync == std::errc::bad_file_descriptor));
  BOOST_TEST((read_file(path) == original));

  // Synchronous members: error_code overloads and throwing overloads.
  std::error_code sec;
  BOOST_TEST(closed.size(sec) == 0u);
  BOOST_TEST((sec == fsys::errc::not_open));
  BOOST_CHECK_THROW((void)closed.size(), std::system_error);
  fsys::file missing(ctx);
  missing.open(dir.file("nope/x"), O_RDONLY, 0, sec);
  BOOST_TEST((sec == std::errc::no_such_file_or_directory));
  BOOST_CHECK_THROW(missing.open(dir.file("nope/x"), O_RDONLY), std::system_error);
  BOOST_CHECK_THROW(fsys::file(ctx, dir.file("nope/y"), O_RDONLY), std::system_error);
}

BOOST_AUTO_TEST_CASE(file_members_open_close_release_move) {
  temp_dir dir;
  asio::io_context ctx;
  fsys::file f(ctx);
  BOOST_TEST(!f.is_open());
  BOOST_TEST(f.native_handle() == -1);
  f.open(dir.file("m.dat"), rw_create);
  BOOST_TEST(f.is_open());
  int fd = f.native_handle();
  BOOST_TEST(fd >= 0);
  fsys::file g(std::move(f));
  BOOST_TEST(!f.is_open());
  BOOST_TEST(g.native_handle() == fd);
  int released = g.release();
  BOOST_TEST(released == fd);
  BOOST_TEST(!g.is_open());
  BOOST_TEST(::fcntl(fd, F_GETFD) != -1);  // still open: released, not closed
  fsys::file h(ctx, released);
  BOOST_TEST(h.native_handle() == fd);
  h.close();
  BOOST_TEST(::fcntl(fd, F_GETFD) == -1);  // closed by the file
  std::error_code ec;
  h.close(ec);  // closing twice is harmless
  BOOST_TEST(!ec);
}

BOOST_AUTO_TEST_CASE(asio_composed_read_at_and_write_at) {
  temp_dir dir;
  asio::io_context ctx;
  fsys::file f(ctx, dir.file("composed.dat"), rw_create);
  auto data = pattern(300000, 11);
  std::vector<std::byte> back(data.size());
  std::size_t w = 0, r = 0;
  asio::async_write_at(f, 123, asio::buffer(data), [&](error_code ec, std::size_t n) {
    BOOST_TEST(!ec);
    w = n;
    asio::async_read_at(f, 123, asio::buffer(back), [&](error_code ec2, std::size_t m) {
      BOOST_TEST(!ec2);
      r = m;
    });
  });
  fsys::test::run(ctx);
  BOOST_TEST(w == data.size());
  BOOST_TEST(r == data.size());
  BOOST_TEST((back == data));
}

BOOST_AUTO_TEST_CASE(socket_timer_and_file_share_one_io_context) {
  temp_dir dir;
  asio::io_context ctx;
  using asio::ip::tcp;
  tcp::acceptor acceptor(ctx, tcp::endpoint(asio::ip::address_v4::loopback(), 0));
  auto path = dir.file("net.dat");
  fsys::file f(ctx, path, rw_create);
  std::string received;
  bool timer_fired = false;
  asio::steady_timer timer(ctx, std::chrono::milliseconds(20));
  timer.async_wait([&](error_code ec) { timer_fired = !ec; });

  asio::co_spawn(ctx, [&]() -> asio::awaitable<void> {
    tcp::socket s = co_await acceptor.async_accept(asio::use_awaitable);
    std::array<char, 5> msg;
    co_await asio::async_read(s, asio::buffer(msg), asio::use_awaitable);
    co_await fsys::co_write_linked_fsync(f, 0, asio::buffer(msg));
    co_await asio::async_write(s, asio::buffer("ack", 3), asio::use_awaitable);
  }, asio::detached);
  asio::co_spawn(ctx, [&]() -> asio::awaitable<void> {
    tcp::socket c(ctx);
    co_await c.async_connect(acceptor.local_endpoint(), asio::use_awaitable);
    co_await asio::async_write(c, asio::buffer("hello", 5), asio::use_awaitable);
    std::array<char, 3> ack;
    co_await asio::async_read(c, asio::buffer(ack), asio::use_awaitable);
    received.assign(ack.data(), 3);
  }, asio::detached);
  fsys::test::run(ctx);
  BOOST_TEST(received == "ack");
  BOOST_TEST(timer_fired);
  auto disk = read_file(path);
  BOOST_TEST(std::string(reinterpret_cast<const char*>(disk.data()), disk.size()) == "hello");
}

BOOST_AUTO_TEST_CASE(run_from_two_threads) {
  temp_dir dir;
  asio::io_context ctx(2);
  auto path = dir.file("mt.dat");
  fsys::file f(ctx, path, rw_create);
  constexpr int coros = 16, per = 200;
  constexpr std::size_t block = 1024;
  auto data = pattern(coros * per * block, 12);
  std::atomic<int> ok{0};
  for (int c = 0; c < coros; ++c) {
    asio::co_spawn(ctx, [&, c]() -> asio::awaitable<void> {
      std::vector<std::byte> back(block);
      for (int i = 0; i < per; ++i) {
        std::size_t off = (static_cast<std::size_t>(c) * per + i) * block;
        co_await fsys::co_write_at(f, off, asio::buffer(data.data() + off, block));
        co_await fsys::co_read_at(f, off, asio::buffer(back));
        if (std::equal(back.begin(), back.end(), data.begin() + off)) ok.fetch_add(1);
      }
    }, asio::detached);
  }
  std::thread t([&] { ctx.run(); });
  ctx.run();
  t.join();
  BOOST_TEST(ok.load() == coros * per);
  BOOST_TEST((read_file(path) == data));
}

BOOST_AUTO_TEST_CASE(concurrency_hint_one_alone_keeps_an_any_thread_ring) {
  // Hint 1 means "one thread at a time", not "always the same thread": it
  // must not give the ring a single-issuer binding on its own.
  asio::io_context ctx(1);
  auto& svc = fsys::test::make_ring(ctx);
  BOOST_TEST((svc.setup_flags() & ((1u << 12) | (1u << 13))) == 0u);  // SINGLE_ISSUER, DEFER_TASKRUN
}

BOOST_AUTO_TEST_CASE(single_thread_context_uses_defer_taskrun_when_available) {
  temp_dir dir;
  asio::io_context ctx(1);
  fsys::ring_options single;
  single.issuer = fsys::issuer_mode::single_thread;
  auto& svc = fsys::test::make_ring(ctx, single);
  if (svc.active_backend() == fsys::backend::io_uring && fsys::probe_features().defer_taskrun) {
    BOOST_TEST((svc.setup_flags() & (1u << 13)) != 0u);  // IORING_SETUP_DEFER_TASKRUN
  }
  // The ring is bound to the thread that first runs the context.
  std::size_t total = 0;
  std::thread runner([&] {
    total = run_coro(ctx, [&]() -> asio::awaitable<std::size_t> {
      fsys::file f(co_await asio::this_coro::executor, dir.file("st.dat"), rw_create);
      auto data = pattern(1 << 16, 13);
      std::size_t n = 0;
      for (int i = 0; i < 50; ++i) n += co_await fsys::co_write_linked_fsync(f, i * data.size(), asio::buffer(data));
      std::vector<std::byte> back(data.size());
      n += co_await fsys::co_read_at(f, 49 * data.size(), asio::buffer(back));
      BOOST_TEST((back == data));
      co_return n;
    }(), /*one_thread=*/true);  // a single-issuer ring: only its own thread may run it
  });
  runner.join();
  BOOST_TEST(total == 51u * (1 << 16));
}

BOOST_AUTO_TEST_CASE(cancellation_of_a_blocked_read) {
  // A read from an empty pipe stays in the kernel until cancelled.
  int p[2];
  BOOST_REQUIRE(::pipe(p) == 0);
  asio::io_context ctx;
  fsys::file rd(ctx, p[0]);
  asio::cancellation_signal sig;
  std::vector<std::byte> buf(64);
  error_code got;
  int calls = 0;
  rd.async_read_some_at(0, asio::buffer(buf), asio::bind_cancellation_slot(sig.slot(), [&](error_code ec, std::size_t) {
    got = ec;
    ++calls;
  }));
  asio::steady_timer t(ctx, std::chrono::milliseconds(20));
  t.async_wait([&](error_code) { sig.emit(asio::cancellation_type::terminal); });
  fsys::test::run(ctx);
  BOOST_TEST(calls == 1);
  BOOST_TEST((got == asio::error::operation_aborted));
  ::close(p[1]);
}

BOOST_AUTO_TEST_CASE(destroying_a_file_with_operations_in_flight) {
  int p[2];
  BOOST_REQUIRE(::pipe(p) == 0);
  asio::io_context ctx;
  std::vector<error_code> results;
  std::mutex m;  // the handlers may run on several threads at once
  {
    fsys::file rd(ctx, p[0]);
    for (int i = 0; i < 8; ++i) {
      auto buf = std::make_shared<std::vector<std::byte>>(32);
      rd.async_read_some_at(0, asio::buffer(*buf), [&, buf](error_code ec, std::size_t) {
        std::lock_guard<std::mutex> l(m);
        results.push_back(ec);
      });
    }
    ctx.poll();  // submit them
  }  // destroyed: cancels, handlers still run once each
  fsys::test::run(ctx);
  BOOST_TEST(results.size() == 8u);
  for (auto& ec : results) BOOST_TEST((ec == asio::error::operation_aborted));
  // The descriptor was closed once the kernel let go: writing gets EPIPE.
  ::signal(SIGPIPE, SIG_IGN);
  BOOST_TEST(::write(p[1], "x", 1) == -1);
  ::close(p[1]);
}

BOOST_AUTO_TEST_CASE(destroying_the_io_context_with_operations_in_flight) {
  int p[2];
  BOOST_REQUIRE(::pipe(p) == 0);
  auto alive = std::make_shared<int>(0);
  std::weak_ptr<int> watch = alive;
  {
    asio::io_context ctx;
    fsys::file rd(ctx, p[0]);
    fsys::file wr(ctx, p[1]);
    for (int i = 0; i < 100; ++i) {
      auto buf = std::make_shared<std::vector<std::byte>>(4096);
      // Handlers own the buffers: destroying the context destroys them only
      // after the kernel has released the buffers (ASan would see otherwise).
      rd.async_read_some_at(0, asio::buffer(*buf), [buf, alive](error_code, std::size_t) {});
    }
    alive.reset();
    ctx.poll();
    rd.release();  // keep the fd out of the file; the context goes first
    wr.release();
  }
  BOOST_TEST(watch.expired());  // every handler was destroyed, none leaked
  ::close(p[0]);
  ::close(p[1]);
}

BOOST_AUTO_TEST_CASE(linked_fsync_short_write_is_never_success) {
  // RLIMIT_FSIZE makes the kernel write only up to the limit (a short write)
  // and then fail with EFBIG. Run in a child so the limit stays there.
  temp_dir dir;
  auto path = dir.file("fsize.dat");
  pid_t pid = ::fork();
  BOOST_REQUIRE(pid >= 0);
  if (pid == 0) {
    ::signal(SIGXFSZ, SIG_IGN);
    rlimit rl{6000, 6000};
    ::setrlimit(RLIMIT_FSIZE, &rl);
    int code = 0;
    {
      asio::io_context ctx;
      fsys::file f(ctx, path, rw_create);
      auto data = pattern(16384, 14);
      f.async_write_linked_fsync(0, asio::buffer(data), [&](error_code ec, std::size_t n) {
        if (!ec) code = 10;                                        // success with fewer bytes: forbidden
        else if (ec != std::errc::file_too_large) code = 11;
        else if (n != 6000) code = 12;                             // bytes written before the error
      });
      fsys::test::run(ctx);
    }
    std::_Exit(code);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  BOOST_REQUIRE(WIFEXITED(status));
  BOOST_TEST(WEXITSTATUS(status) == 0);
  BOOST_TEST(read_file(path).size() == 6000u);
}

BOOST_AUTO_TEST_CASE(registered_buffers_read_and_write_fixed) {
  temp_dir dir;
  asio::io_context ctx;
  auto& svc = fsys::test::make_ring(ctx);
  std::vector<std::byte> a(64 * 1024), b(64 * 1024);
  std::array<asio::mutable_buffer, 2> regs{asio::buffer(a), asio::buffer(b)};
  svc.register_buffers(regs);
  std::error_code again;
  svc.register_buffers(regs, again);  // one set at a time
  if (svc.active_backend() == fsys::backend::io_uring) BOOST_TEST((again == std::errc::device_or_resource_busy));

  auto data = pattern(a.size(), 15);
  std::copy(data.begin(), data.end(), a.begin());
  auto path = dir.file("fixed.dat");
  fsys::file f(ctx, path, rw_create);
  std::size_t w = 0, r = 0;
  f.async_write_fixed_at(100, fsys::fixed_buffer{asio::buffer(a), 0}, [&](error_code ec, std::size_t n) {
    BOOST_TEST(!ec);
    w = n;
    // Read it back into the middle of the second registered buffer.
    f.async_read_fixed_at(100, fsys::fixed_buffer{asio::buffer(b.data() + 4096, 32768), 1},
                          [&](error_code ec2, std::size_t m) {
                            BOOST_TEST(!ec2);
                            r = m;
                          });
  });
  fsys::test::run(ctx);
  BOOST_TEST(w == a.size());
  BOOST_TEST(r == 32768u);
  BOOST_TEST(std::equal(b.begin() + 4096, b.begin() + 4096 + 32768, data.begin()));
  auto disk = read_file(path);
  BOOST_TEST(std::equal(data.begin(), data.end(), disk.begin() + 100));

  if (svc.active_backend() == fsys::backend::io_uring) {
    // A buffer outside the registered one is refused by the kernel (EFAULT).
    std::vector<std::byte> other(4096);
    error_code bad;
    f.async_read_fixed_at(0, fsys::fixed_buffer{asio::buffer(other), 0}, [&](error_code ec, std::size_t) { bad = ec; });
    ctx.restart();
    fsys::test::run(ctx);
    BOOST_TEST((bad == std::errc::bad_address));
  }
  svc.unregister_buffers();
}

BOOST_AUTO_TEST_CASE(o_direct_alignment_is_checked_before_submission) {
  // O_DIRECT needs a real block-device filesystem; /var/tmp is on the disk here.
  fsys::test::temp_dir_on_disk dir;
  if (!dir.ok()) {
    BOOST_TEST_MESSAGE("skip: no disk-backed directory accepts O_DIRECT here");
    return;
  }
  auto path = dir.file("direct.dat");
  asio::io_context ctx;
  fsys::file f(ctx);
  std::error_code oec;
  f.open(path, O_RDWR | O_CREAT | O_DIRECT, 0644, oec);
  if (oec) {
    BOOST_TEST_MESSAGE("skip: O_DIRECT refused: " << oec.message());
    return;
  }
  auto info = fsys::probe_drive(f.native_handle());
  if (!info.dio_offset_align || *info.dio_offset_align == 0) {
    BOOST_TEST_MESSAGE("skip: the kernel reports no O_DIRECT alignment for this file");
    return;
  }
  const std::size_t align = fsys::direct_io_alignment(info);
  fsys::aligned_buffer buf(info, 4 * align);
  auto data = pattern(buf.size(), 16);
  std::copy(data.begin(), data.end(), buf.data());

  std::vector<error_code> errs;
  std::mutex m;  // the handlers may run on several threads at once
  auto rec = [&](error_code ec, std::size_t) {
    std::lock_guard<std::mutex> l(m);
    errs.push_back(ec);
  };
  f.async_write_at(1, asio::buffer(buf.data(), buf.size()), rec);                   // offset
  f.async_write_at(0, asio::buffer(buf.data() + 1, buf.size() - align), rec);       // address
  f.async_write_at(0, asio::buffer(buf.data(), align + 100), rec);                  // length
  f.async_read_at(0, asio::buffer(buf.data() + 1, align), rec);                     // read address
  fsys::test::run(ctx);
  ctx.restart();
  BOOST_REQUIRE_EQUAL(errs.size(), 4u);
  for (auto& ec : errs) {
    BOOST_TEST((ec == fsys::errc::misaligned_direct_io));
    BOOST_TEST((std::error_code(ec) == std::errc::invalid_argument));
  }
  BOOST_TEST(f.size() == 0u);  // nothing reached the file

  std::size_t w = 0, r = 0;
  f.async_write_linked_fsync(0, asio::buffer(buf.data(), buf.size()), [&](error_code ec, std::size_t n) {
    BOOST_TEST(!ec);
    w = n;
  });
  fsys::test::run(ctx);
  ctx.restart();
  fsys::aligned_buffer back(info, buf.size());
  f.async_read_at(0, asio::buffer(back.data(), back.size()), [&](error_code ec, std::size_t n) {
    BOOST_TEST(!ec);
    r = n;
  });
  fsys::test::run(ctx);
  BOOST_TEST(w == buf.size());
  BOOST_TEST(r == buf.size());
  BOOST_TEST(std::equal(back.data(), back.data() + back.size(), data.begin()));
}

BOOST_AUTO_TEST_CASE(sqpoll_ring_round_trip) {
  temp_dir dir;
  asio::io_context ctx;
  auto& svc = fsys::test::make_ring(ctx, {.queue_depth = 32, .sqpoll = true, .sqpoll_idle_ms = 50});
  if (svc.active_backend() == fsys::backend::io_uring) {
    if (!fsys::probe_features().sqpoll) {
      BOOST_TEST_MESSAGE("skip: the kernel refuses IORING_SETUP_SQPOLL");
      return;
    }
    BOOST_TEST((svc.setup_flags() & 2u) != 0u);  // IORING_SETUP_SQPOLL
  }
  auto path = dir.file("sqpoll.dat");
  auto data = pattern(1 << 20, 17);
  std::size_t n = run_coro(ctx, [&]() -> asio::awaitable<std::size_t> {
    fsys::file f(co_await asio::this_coro::executor, path, rw_create);
    std::size_t total = 0;
    for (std::size_t off = 0; off < data.size(); off += 65536)
      total += co_await fsys::co_write_at(f, off, asio::buffer(data.data() + off, 65536));
    co_await fsys::co_fdatasync(f);
    // Let the SQPOLL thread go idle, then submit again (it must be woken).
    asio::steady_timer t(co_await asio::this_coro::executor, std::chrono::milliseconds(120));
    co_await t.async_wait(asio::use_awaitable);
    std::vector<std::byte> back(data.size());
    total += co_await fsys::co_read_at(f, 0, asio::buffer(back));
    BOOST_TEST((back == data));
    co_return total;
  }());
  BOOST_TEST(n == 2 * data.size());
  BOOST_TEST((read_file(path) == data));
}

// ---- a file that outlives its io_context ------------------------------------
//
// When the io_context goes, its uring_service shuts down and every file on it
// keeps only its descriptor: closing, releasing and destroying work (the
// descriptor is closed exactly once), every other call fails with
// fsys::errc::service_shut_down, never a crash. Each case runs on a context
// with one ring and on one whose engine is a ring set (psync: the pread/pwrite
// engine either way), with the context run by FSYS_TEST_THREADS threads first.

namespace {

std::vector<fsys::ring_options> lifetime_options() {
  return {fsys::ring_options{.rings = 1}, fsys::ring_options{.rings = 4}};
}

bool fd_is_closed(int fd) { return ::fcntl(fd, F_GETFD) == -1 && errno == EBADF; }

// fsys throws std::system_error; Asio's composed operations (asio::read_at)
// throw boost::system::system_error.
template <class Fn>
bool throws_shut_down(Fn&& fn) {
  try {
    fn();
  } catch (const std::system_error& e) {
    return e.code() == fsys::errc::service_shut_down;
  } catch (const boost::system::system_error& e) {
    return e.code() == fsys::errc::service_shut_down;
  }
  return false;
}

// A file opened on an io_context that is destroyed before the file is
// returned. The context first runs writes of the file started from handlers
// on every thread that runs it (each thread's ring of a ring set carries
// some), so that the file's handle went through the engine everywhere.
fsys::file orphaned_file(const std::filesystem::path& path, const fsys::ring_options& opts) {
  auto ctx = std::make_unique<asio::io_context>();
  fsys::test::make_ring(*ctx, opts);
  fsys::file f(*ctx, path, rw_create);
  const unsigned n = 4 * fsys::test::test_threads();
  static const auto data = pattern(4096, 26);
  std::atomic<unsigned> ok{0};
  for (unsigned i = 0; i < n; ++i)
    asio::post(*ctx, [&f, &ok, i] {
      f.async_write_at(std::uint64_t{i} * data.size(), asio::buffer(data), [&ok](error_code ec, std::size_t w) {
        if (!ec && w == data.size()) ok.fetch_add(1);
      });
    });
  fsys::test::run(*ctx);
  BOOST_TEST(ok.load() == n);
  BOOST_TEST(read_file(path).size() == n * data.size());
  ctx.reset();  // shuts the service down and destroys it; the file stays
  return f;
}

}  // namespace

BOOST_AUTO_TEST_CASE(a_file_outliving_its_io_context_can_be_destroyed) {
  temp_dir dir;
  for (const auto& opts : lifetime_options()) {
    std::optional<fsys::file> f;
    f.emplace(orphaned_file(dir.file("destroy.dat"), opts));
    const int fd = f->native_handle();
    BOOST_TEST(fd >= 0);
    BOOST_TEST(f->is_open());  // it still holds its descriptor
    f.reset();
    BOOST_TEST(fd_is_closed(fd));

    // A moved-from file, and a file moved after the context went.
    fsys::file g = orphaned_file(dir.file("destroy2.dat"), opts);
    const int gfd = g.native_handle();
    fsys::file h(std::move(g));
    BOOST_TEST(!g.is_open());
    BOOST_TEST(h.native_handle() == gfd);
    { fsys::file gone(std::move(h)); }
    BOOST_TEST(fd_is_closed(gfd));
  }
}

BOOST_AUTO_TEST_CASE(a_file_outliving_its_io_context_can_be_closed) {
  temp_dir dir;
  for (const auto& opts : lifetime_options()) {
    fsys::file f = orphaned_file(dir.file("close.dat"), opts);
    const int fd = f.native_handle();
    std::error_code ec = make_error_code(std::errc::io_error);
    f.close(ec);
    BOOST_TEST(!ec);
    BOOST_TEST(!f.is_open());
    BOOST_TEST(fd_is_closed(fd));
    BOOST_CHECK_NO_THROW(f.close());  // closing a closed file does nothing

    fsys::file g = orphaned_file(dir.file("close2.dat"), opts);
    const int gfd = g.native_handle();
    BOOST_CHECK_NO_THROW(g.close());
    BOOST_TEST(fd_is_closed(gfd));

    // release(): the caller gets the descriptor, open.
    fsys::file h = orphaned_file(dir.file("close3.dat"), opts);
    const int hfd = h.release();
    BOOST_TEST(hfd >= 0);
    BOOST_TEST(!fd_is_closed(hfd));
    BOOST_TEST(::close(hfd) == 0);
  }
}

BOOST_AUTO_TEST_CASE(a_file_outliving_its_io_context_refuses_size) {
  temp_dir dir;
  for (const auto& opts : lifetime_options()) {
    const auto path = dir.file("size.dat");
    fsys::file f = orphaned_file(path, opts);
    const auto before = read_file(path);
    std::error_code ec;
    BOOST_TEST(f.size(ec) == 0u);
    BOOST_TEST((ec == fsys::errc::service_shut_down));
    error_code bec;
    f.size(bec);
    BOOST_TEST((bec == fsys::errc::service_shut_down));
    BOOST_TEST(throws_shut_down([&] { f.size(); }));
    // The other synchronous calls on the file alike; none touches it.
    f.resize(1, ec);
    BOOST_TEST((ec == fsys::errc::service_shut_down));
    BOOST_TEST(throws_shut_down([&] { f.resize(1); }));
    f.sync_all(ec);
    BOOST_TEST((ec == fsys::errc::service_shut_down));
    BOOST_TEST(throws_shut_down([&] { f.sync_data(); }));
    f.cancel(ec);
    BOOST_TEST((ec == fsys::errc::service_shut_down));
    f.cancel();  // the noexcept form does nothing
    // Opening or adopting another descriptor is refused too.
    fsys::file closed = std::move(f);
    closed.close();
    closed.open(path, O_RDONLY, 0, ec);
    BOOST_TEST((ec == fsys::errc::service_shut_down));
    BOOST_TEST(!closed.is_open());
    BOOST_TEST((read_file(path) == before));
  }
}

BOOST_AUTO_TEST_CASE(a_file_outliving_its_io_context_refuses_read_some_at) {
  temp_dir dir;
  for (const auto& opts : lifetime_options()) {
    const auto path = dir.file("read.dat");
    fsys::file f = orphaned_file(path, opts);
    const auto before = read_file(path);
    std::vector<std::byte> buf(4096);
    std::error_code ec;
    BOOST_TEST(f.read_some_at(0, asio::buffer(buf), ec) == 0u);
    BOOST_TEST((ec == fsys::errc::service_shut_down));
    BOOST_TEST(throws_shut_down([&] { f.read_some_at(0, asio::buffer(buf)); }));
    BOOST_TEST(throws_shut_down([&] { asio::read_at(f, 0, asio::buffer(buf)); }));
    error_code bec;
    BOOST_TEST(f.write_some_at(0, asio::buffer(buf), bec) == 0u);
    BOOST_TEST((bec == fsys::errc::service_shut_down));
    BOOST_TEST(throws_shut_down([&] { asio::write_at(f, 0, asio::buffer(buf)); }));
    BOOST_TEST((read_file(path) == before));
    const int fd = f.native_handle();
    f.close();
    BOOST_TEST(fd_is_closed(fd));
  }
}

BOOST_AUTO_TEST_CASE(a_file_outliving_its_io_context_refuses_async_read_at) {
  temp_dir dir;
  for (const auto& opts : lifetime_options()) {
    fsys::file f = orphaned_file(dir.file("async.dat"), opts);
    const int fd = f.native_handle();
    std::vector<std::byte> buf(4096);

    // A handler that would run on the destroyed context: nothing can run it.
    // The initiating function throws and destroys the handler uninvoked.
    auto token = std::make_shared<int>(0);
    std::weak_ptr<int> watch = token;
    bool ran = false;
    BOOST_TEST(throws_shut_down([&] {
      f.async_read_at(0, asio::buffer(buf), [&ran, token = std::move(token)](error_code, std::size_t) { ran = true; });
    }));
    BOOST_TEST(!ran);
    BOOST_TEST(watch.expired());
    BOOST_TEST(throws_shut_down([&] { f.async_read_some_at(0, asio::buffer(buf), [](error_code, std::size_t) {}); }));
    BOOST_TEST(throws_shut_down([&] { f.async_write_at(0, asio::buffer(buf), [](error_code, std::size_t) {}); }));
    BOOST_TEST(throws_shut_down([&] { f.async_fsync([](error_code) {}); }));
    BOOST_TEST(throws_shut_down([&] { f.async_stat([](error_code, fsys::file_status) {}); }));
    BOOST_TEST(throws_shut_down([&] { f.async_resize(0, [](error_code) {}); }));
    BOOST_TEST(throws_shut_down([&] { asio::async_read_at(f, 0, asio::buffer(buf), [](error_code, std::size_t) {}); }));

    // A handler whose executor is a live context gets the error there,
    // never inside the initiating function.
    asio::io_context live;
    error_code got;
    std::size_t got_n = 1;
    int calls = 0;
    f.async_read_at(0, asio::buffer(buf), asio::bind_executor(live, [&](error_code ec, std::size_t n) {
                      got = ec;
                      got_n = n;
                      ++calls;
                    }));
    BOOST_TEST(calls == 0);
    fsys::test::run(live);
    live.restart();
    BOOST_TEST(calls == 1);
    BOOST_TEST((got == fsys::errc::service_shut_down));
    BOOST_TEST(got_n == 0u);

    // use_future (its handler runs on the system context): the future gets
    // the error. (Through a function that returns it: an exception handed
    // between threads by the future is shared through libstdc++'s reference
    // count, which ThreadSanitizer cannot see.)
    {
      std::future<error_code> fut = f.async_read_at(
          0, asio::buffer(buf), asio::use_future([](error_code ec, std::size_t n) { return n == 0 ? ec : error_code(); }));
      BOOST_TEST((fut.get() == fsys::errc::service_shut_down));
    }

    // The co_* forms, from a coroutine on a live context: they throw the
    // error (as_tuple gives it as a value), and co_close closes the file.
    const int r = run_coro(live, [&]() -> asio::awaitable<int> {
      int bits = 0;
      try {
        co_await fsys::co_read_at(f, 0, asio::buffer(buf));
      } catch (const std::system_error& e) {
        if (e.code() == fsys::errc::service_shut_down) bits |= 1;
      }
      try {
        co_await fsys::co_write_at(f, 0, asio::buffer(buf));
      } catch (const std::system_error& e) {
        if (e.code() == fsys::errc::service_shut_down) bits |= 2;
      }
      try {
        co_await fsys::co_stat(f);
      } catch (const std::system_error& e) {
        if (e.code() == fsys::errc::service_shut_down) bits |= 4;
      }
      auto [ec, n] = co_await f.async_read_some_at(0, asio::buffer(buf), asio::as_tuple(asio::use_awaitable));
      if (ec == fsys::errc::service_shut_down && n == 0) bits |= 8;
      co_await fsys::co_close(f);
      co_return bits;
    }());
    BOOST_TEST(r == 15);
    BOOST_TEST(!f.is_open());
    BOOST_TEST(fd_is_closed(fd));

    // async_close closes the descriptor whatever the handler's executor; a
    // handler on the destroyed context cannot run, so it throws after closing.
    fsys::file g = orphaned_file(dir.file("async2.dat"), opts);
    const int gfd = g.native_handle();
    BOOST_TEST(throws_shut_down([&] { g.async_close([](error_code) {}); }));
    BOOST_TEST(!g.is_open());
    BOOST_TEST(fd_is_closed(gfd));
    fsys::file h = orphaned_file(dir.file("async3.dat"), opts);
    const int hfd = h.native_handle();
    error_code closed = make_error_code(boost::system::errc::io_error);
    h.async_close(asio::bind_executor(live, [&](error_code ec) { closed = ec; }));
    fsys::test::run(live);
    BOOST_TEST(!closed);
    BOOST_TEST(fd_is_closed(hfd));
  }
}

BOOST_AUTO_TEST_CASE(a_read_in_flight_when_the_io_context_goes) {
  ::signal(SIGPIPE, SIG_IGN);
  for (const auto& opts : lifetime_options()) {
    int p[2];
    BOOST_REQUIRE(::pipe(p) == 0);
    // One file per starting handler (the handlers may run at once on
    // several threads), each on its own descriptor of the pipe's read end.
    const unsigned n = 8 * fsys::test::test_threads();
    auto ctx = std::make_unique<asio::io_context>();
    fsys::test::make_ring(*ctx, opts);
    std::vector<fsys::file> files;
    std::vector<int> fds;
    for (unsigned i = 0; i < n; ++i) {
      files.emplace_back(*ctx, ::dup(p[0]));
      fds.push_back(files.back().native_handle());
    }
    ::close(p[0]);
    auto alive = std::make_shared<int>(0);
    std::weak_ptr<int> watch = alive;
    std::atomic<unsigned> started{0};
    std::atomic<int> completed{0};
    for (unsigned i = 0; i < n; ++i)
      asio::post(*ctx, [&, i, alive] {
        // The handler owns the buffer the kernel reads into: the context's
        // destruction frees it only after the kernel has let go (ASan).
        auto buf = std::make_shared<std::vector<std::byte>>(4096);
        files[i].async_read_some_at(0, asio::buffer(*buf), [&, buf, alive](error_code ec, std::size_t) {
          if (!ec) completed.fetch_add(1);
          ctx->stop();
        });
        // Once every read has started, one byte lets one of them complete;
        // the others stay in the kernel (or queued) on the empty pipe.
        if (started.fetch_add(1) + 1 == n) BOOST_VERIFY(::write(p[1], "x", 1) == 1);
      });
    alive.reset();
    fsys::test::run(*ctx);
    BOOST_TEST(completed.load() == 1);
    BOOST_TEST(!watch.expired());  // the other reads' handlers are pending
    ctx.reset();
    BOOST_TEST(watch.expired());  // destroyed, never invoked
    BOOST_TEST(completed.load() == 1);

    std::vector<std::byte> buf(16);
    BOOST_TEST(throws_shut_down([&] { files[0].async_read_some_at(0, asio::buffer(buf), [](error_code, std::size_t) {}); }));
    std::error_code ec;
    files[1].read_some_at(0, asio::buffer(buf), ec);
    BOOST_TEST((ec == fsys::errc::service_shut_down));
    files[0].close();
    files.clear();
    for (int fd : fds) BOOST_TEST(fd_is_closed(fd));
    // Every read end is closed: the pipe has no reader any more.
    BOOST_TEST(::write(p[1], "y", 1) == -1);
    ::close(p[1]);
  }
}
