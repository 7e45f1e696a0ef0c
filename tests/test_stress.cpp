// Back-pressure and teardown: far more operations than the ring holds, signals
// interrupting the run loop, and io_contexts destroyed with thousands of
// operations in flight from several threads at once.
#include <boost/test/unit_test.hpp>

#include "support/ring_fixture.hpp"
#include "support/temp_dir.hpp"

#include <fsys/fsys.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <memory>
#include <random>
#include <thread>
#include <map>
#include <string>
#include <vector>

namespace asio = boost::asio;
using boost::system::error_code;
using fsys::test::pattern;
using fsys::test::read_file;
using fsys::test::temp_dir;

namespace {

constexpr int rw_create = O_RDWR | O_CREAT;
bool is_uring() { return fsys::test::expected_backend() == fsys::backend::io_uring; }

std::atomic<unsigned> signals_seen{0};
extern "C" void on_alarm(int) { signals_seen.fetch_add(1, std::memory_order_relaxed); }

// Delivers SIGALRM every `usec` microseconds, without SA_RESTART, so blocking
// system calls of the run loop return EINTR.
struct signal_storm {
  explicit signal_storm(long usec) {
    struct sigaction sa;
    std::memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sigemptyset(&sa.sa_mask);
    ::sigaction(SIGALRM, &sa, &old_);
    itimerval it{{0, usec}, {0, usec}};
    ::setitimer(ITIMER_REAL, &it, nullptr);
  }
  ~signal_storm() {
    itimerval off{};
    ::setitimer(ITIMER_REAL, &off, nullptr);
    ::sigaction(SIGALRM, &old_, nullptr);
  }
  struct sigaction old_;
};

}  // namespace

BOOST_AUTO_TEST_CASE(hundred_thousand_operations_in_flight_on_queue_depth_64) {
  // 100,000 writes started at once on a 64-entry ring (CQ 128), then 100,000
  // reads, while SIGALRM interrupts the run loop every 200 µs. Nothing is
  // lost: every handler runs once with its full count, the file is exactly
  // the data, and the ring really was over-subscribed.
  temp_dir dir;
  auto path = dir.file("bp.dat");
  constexpr std::size_t ops = 100000, block = 512;
  asio::io_context ctx(1);
  // The reads must reach the ring (over-subscribing it), not the page cache
  // through the inline fast path.
  auto& svc = fsys::test::make_ring(ctx, {.queue_depth = 64, .inline_fast_path = false});
  fsys::file f(ctx, path, rw_create);
  auto data = pattern(ops * block, 41);
  signal_storm storm(200);

  std::vector<std::uint8_t> calls(ops, 0);
  std::size_t bad = 0;
  std::map<std::string, std::size_t> failures;  // "error: bytes" → count, printed on failure
  auto note = [&](error_code ec, std::size_t n) {
    ++bad;
    ++failures[ec.message() + ": " + std::to_string(n) + " bytes"];
  };
  for (std::size_t i = 0; i < ops; ++i) {
    // Why the buffer is sound: `data` outlives the run.
    auto buf = asio::buffer(data.data() + i * block, block);
    auto h = [&, i](error_code ec, std::size_t n) {
      ++calls[i];
      if (ec || n != block) note(ec, n);
    };
    if (i % 1000 == 0)
      f.async_write_linked_fsync(i * block, buf, h);
    else
      f.async_write_at(i * block, buf, h);
  }
  ctx.run();
  ctx.restart();
  BOOST_TEST(bad == 0u);
  for (const auto& [what, count] : failures) BOOST_TEST_MESSAGE("write failed " << count << "×: " << what);
  BOOST_TEST(std::count(calls.begin(), calls.end(), 1) == static_cast<std::ptrdiff_t>(ops));
  BOOST_TEST((read_file(path) == data));
  bad = 0;
  failures.clear();

  std::vector<std::byte> back(ops * block);
  std::fill(calls.begin(), calls.end(), 0);
  for (std::size_t i = 0; i < ops; ++i) {
    f.async_read_at(i * block, asio::buffer(back.data() + i * block, block), [&, i](error_code ec, std::size_t n) {
      ++calls[i];
      if (ec || n != block) note(ec, n);
    });
  }
  ctx.run();
  BOOST_TEST(bad == 0u);
  for (const auto& [what, count] : failures) BOOST_TEST_MESSAGE("read failed " << count << "×: " << what);
  BOOST_TEST(std::count(calls.begin(), calls.end(), 1) == static_cast<std::ptrdiff_t>(ops));
  BOOST_TEST((back == data));
  auto s = svc.stats();
  BOOST_TEST_MESSAGE("back-pressure: " << s.enter_calls << " enters, " << s.sqes_submitted << " SQEs, "
                                       << s.queued_waits << " waits for room, " << signals_seen.load()
                                       << " signals");
  if (is_uring()) {
    BOOST_TEST(s.queued_waits > 0u);
    BOOST_TEST(s.ops_completed >= 2 * ops);
  }
}

BOOST_AUTO_TEST_CASE(coroutines_many_more_than_the_ring_holds_with_two_threads) {
  // 2,000 coroutines each doing write + linked write+fsync + read on a
  // 16-entry ring run by two threads.
  temp_dir dir;
  auto path = dir.file("coros.dat");
  constexpr int coros = 2000;
  constexpr std::size_t block = 512;
  asio::io_context ctx(2);
  fsys::test::make_ring(ctx, {.queue_depth = 16});
  fsys::file f(ctx, path, rw_create);
  auto data = pattern(coros * 2 * block, 42);
  std::atomic<int> ok{0};
  for (int c = 0; c < coros; ++c) {
    asio::co_spawn(ctx, [&, c]() -> asio::awaitable<void> {
      const std::size_t off = static_cast<std::size_t>(c) * 2 * block;
      co_await fsys::co_write_at(f, off, asio::buffer(data.data() + off, block));
      co_await fsys::co_write_linked_fsync(f, off + block, asio::buffer(data.data() + off + block, block));
      std::vector<std::byte> back(2 * block);
      co_await fsys::co_read_at(f, off, asio::buffer(back));
      if (std::equal(back.begin(), back.end(), data.begin() + static_cast<std::ptrdiff_t>(off))) ok.fetch_add(1);
    }, asio::detached);
  }
  std::thread t([&] { ctx.run(); });
  ctx.run();
  t.join();
  BOOST_TEST(ok.load() == coros);
}

BOOST_AUTO_TEST_CASE(destroying_io_contexts_with_thousands_in_flight_from_several_threads) {
  // Three threads, each repeatedly: build an io_context run by two threads,
  // start thousands of operations (pipe reads that stay in the kernel, file
  // writes and linked write+fsyncs, some queued behind a full ring), stop it
  // mid-flight and destroy it. Handlers own their buffers: they must all be
  // destroyed (none leaked), none may run after the context is gone, and
  // ASan/TSan must see no access to freed memory.
  temp_dir dir;
  constexpr int threads = 3;
  const int rounds = 8;
  constexpr int pipe_reads = 1000, writes = 2000;
  std::atomic<int> failures{0};
  std::atomic<long> handlers_run{0};
  auto worker = [&](int id) {
    std::mt19937 rng(static_cast<unsigned>(id));
    for (int round = 0; round < rounds; ++round) {
      auto alive = std::make_shared<int>(0);
      std::weak_ptr<int> watch = alive;
      int p[2];
      if (::pipe2(p, O_CLOEXEC) != 0) {
        failures.fetch_add(1);
        return;
      }
      std::atomic<bool> destroyed{false};
      {
        asio::io_context ctx(2);
        fsys::test::make_ring(ctx, {.queue_depth = static_cast<std::uint32_t>(32 << (round % 3))});
        fsys::file rd(ctx, p[0]);
        fsys::file f(ctx, dir.file("td-" + std::to_string(id) + "-" + std::to_string(round)), rw_create);
        auto work = asio::make_work_guard(ctx);
        std::thread runner([&] { ctx.run(); });
        for (int i = 0; i < pipe_reads + writes; ++i) {
          auto buf = std::make_shared<std::vector<std::byte>>(512, std::byte{1});
          // Why the buffer is sound: the handler owns it, and fsys destroys
          // the handler only after the kernel has released the buffer.
          auto h = [buf, alive, &destroyed, &handlers_run, &failures](error_code, std::size_t) {
            if (destroyed.load()) failures.fetch_add(1);
            handlers_run.fetch_add(1, std::memory_order_relaxed);
          };
          if (i < pipe_reads)
            rd.async_read_some_at(0, asio::buffer(*buf), h);
          else if (i % 7 == 0)
            f.async_write_linked_fsync(static_cast<std::uint64_t>(i) * 512, asio::buffer(*buf), h);
          else
            f.async_write_at(static_cast<std::uint64_t>(i) * 512, asio::buffer(*buf), h);
        }
        alive.reset();
        std::this_thread::sleep_for(std::chrono::microseconds(rng() % 3000));
        ctx.stop();
        runner.join();
        (void)rd.release();  // the fd outlives the context; closed below
        // ~file(f) and ~io_context here, with operations still in the kernel.
      }
      destroyed = true;
      if (!watch.expired()) failures.fetch_add(1);
      ::close(p[0]);
      ::close(p[1]);
    }
  };
  std::vector<std::thread> ts;
  for (int i = 0; i < threads; ++i) ts.emplace_back(worker, i);
  for (auto& t : ts) t.join();
  BOOST_TEST(failures.load() == 0);
  BOOST_TEST_MESSAGE("teardown: " << handlers_run.load() << " handlers ran before their context was destroyed");
}

BOOST_AUTO_TEST_CASE(destroying_a_file_while_its_operations_are_queued_and_in_flight) {
  // Closing a file with thousands of operations queued behind a tiny ring:
  // every handler runs once (aborted or real), and the fd is closed only
  // after the kernel is done (the number is not reused under the kernel).
  temp_dir dir;
  for (int round = 0; round < 10; ++round) {
    asio::io_context ctx;
    fsys::test::make_ring(ctx, {.queue_depth = 8});
    int p[2];
    BOOST_REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
    std::vector<int> calls(3000, 0);
    std::vector<std::byte> buf(3000 * 64);
    {
      fsys::file rd(ctx, p[0]);
      fsys::file f(ctx, dir.file("close.dat"), rw_create);
      for (int i = 0; i < 3000; ++i) {
        auto b = asio::buffer(buf.data() + i * 64, 64);
        auto h = [&, i](error_code, std::size_t) { ++calls[i]; };
        if (i % 2 && is_uring())
          rd.async_read_some_at(0, b, h);
        else
          f.async_write_at(static_cast<std::uint64_t>(i) * 64, b, h);
      }
      for (int k = 0; k < round; ++k) ctx.poll_one();
    }  // both files closed here
    ctx.run();
    BOOST_TEST(std::count(calls.begin(), calls.end(), 1) == 3000);
    ::close(p[1]);
  }
}
