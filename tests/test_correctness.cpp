// Correctness rules of the engines: no silent hang, no cancellation race, the
// right error for each cause. Each case reproduces a user scenario that went
// wrong before its rule existed; it runs on both backends where it applies.
#include <boost/test/unit_test.hpp>

#include "support/ring_fixture.hpp"
#include "support/run.hpp"
#include "support/temp_dir.hpp"

#include <fsys/fsys.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_allocator.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_future.hpp>

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstring>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

namespace asio = boost::asio;
using boost::system::error_code;
using fsys::test::pattern;
using fsys::test::read_file;
using fsys::test::temp_dir;
using namespace std::chrono_literals;

namespace {

constexpr int rw_create = O_RDWR | O_CREAT;

bool on_io_uring() { return fsys::test::expected_backend() == fsys::backend::io_uring; }

struct pipe_fds {
  int fd[2] = {-1, -1};
  pipe_fds() { BOOST_REQUIRE(::pipe2(fd, O_CLOEXEC) == 0); }
  ~pipe_fds() {
    for (int f : fd)
      if (f >= 0) ::close(f);
  }
};

}  // namespace

// ---- hangs ------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(single_issuer_ring_run_from_another_thread_fails_instead_of_hanging) {
  if (!on_io_uring() || !fsys::probe_features().defer_taskrun) {
    BOOST_TEST_MESSAGE("skipped: needs an io_uring ring with DEFER_TASKRUN");
    return;
  }
  temp_dir dir;
  asio::io_context ctx(1);
  fsys::ring_options single;
  single.issuer = fsys::issuer_mode::single_thread;
  // The rule is about submissions to the ring: a cached read completed by
  // the inline fast path never reaches it (and succeeds from any thread).
  single.inline_fast_path = false;
  fsys::test::make_ring(ctx, single);
  fsys::file f(ctx, dir.file("a.dat"), rw_create);
  auto data = pattern(4096, 1);
  error_code first_ec = asio::error::would_block;
  f.async_write_at(0, asio::buffer(data), [&](error_code ec, std::size_t) { first_ec = ec; });
  std::thread([&] { ctx.run(); }).join();  // binds the ring to that thread
  BOOST_TEST(!first_ec);

  // The same context run later by this thread: the ring refuses it. The
  // operation must fail with the rule's error, not wait forever.
  ctx.restart();
  std::vector<std::byte> back(4096);
  error_code ec2 = asio::error::would_block;
  bool called = false;
  f.async_read_at(0, asio::buffer(back), [&](error_code ec, std::size_t) {
    ec2 = ec;
    called = true;
  });
  ctx.run_for(5s);
  BOOST_TEST(called);
  BOOST_TEST((ec2 == fsys::errc::wrong_issuer_thread), ec2.message());
}

BOOST_AUTO_TEST_CASE(an_operation_started_in_a_handler_can_be_waited_for_there) {
  // Two threads run the context; a handler on one of them starts a read and
  // blocks until it is done, as a legacy API would: with use_future, or with
  // a callback that sets a promise. The other thread, idle in run(), must get
  // the read submitted and its handler run. Checked on a ring set and on one
  // ring, with the first handler run by a ring's completion pass (inline fast
  // path off) and with the reads completed inline (on); the psync run checks
  // the same with its workers.
  for (const unsigned rings : {2u, 1u}) {
    for (const bool fast : {false, true}) {
      for (const bool callback : {false, true}) {
        BOOST_TEST_CONTEXT("rings " << rings << ", inline fast path " << fast << ", "
                                    << (callback ? "callback setting a promise" : "use_future")) {
          temp_dir dir;
          asio::io_context ctx;
          fsys::ring_options opts;
          opts.rings = rings;
          opts.inline_fast_path = fast;
          fsys::test::make_ring(ctx, opts);
          auto data = pattern(8192, 2);
          fsys::test::write_file(dir.file("w.dat"), data);
          fsys::file f(ctx, dir.file("w.dat"), O_RDWR);
          auto guard = asio::make_work_guard(ctx);
          std::thread one([&] { ctx.run(); });
          std::thread two([&] { ctx.run(); });

          std::vector<std::byte> a(4096), b(4096);
          std::promise<std::pair<std::future_status, std::size_t>> outcome;
          f.async_read_at(0, asio::buffer(a), [&](error_code, std::size_t) {
            std::future<std::size_t> fut;
            std::promise<std::size_t> p;
            if (callback) {
              fut = p.get_future();
              f.async_read_at(4096, asio::buffer(b), [&p](error_code ec, std::size_t n) { p.set_value(ec ? 0 : n); });
            } else {
              fut = f.async_read_at(4096, asio::buffer(b), asio::use_future);
            }
            const auto status = fut.wait_for(3s);
            outcome.set_value({status, status == std::future_status::ready ? fut.get() : 0});
            if (status != std::future_status::ready) {
              // Do not return while the read may still complete into `p`.
              ctx.stop();
            }
          });
          auto out = outcome.get_future();
          BOOST_REQUIRE((out.wait_for(10s) == std::future_status::ready));
          auto [status, n] = out.get();
          BOOST_TEST((status == std::future_status::ready), "the read the blocked handler waits for never completed");
          BOOST_TEST(n == 4096u);
          BOOST_TEST((std::vector<std::byte>(data.begin() + 4096, data.end()) == b));
          guard.reset();
          ctx.stop();
          one.join();
          two.join();
        }
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(idle_pipe_reads_do_not_block_file_io) {
  // More idle pipe reads than the ring's depth and the psync workers: file
  // IO started after them must still complete.
  temp_dir dir;
  asio::io_context ctx;
  fsys::ring_options small;
  small.queue_depth = 4;
  small.psync_threads = 4;
  fsys::test::make_ring(ctx, small);
  constexpr int pipes = 10;
  std::vector<std::unique_ptr<pipe_fds>> p;
  std::vector<std::unique_ptr<fsys::file>> readers;
  std::vector<std::array<std::byte, 8>> bufs(pipes);
  int pipe_done = 0;
  for (int i = 0; i < pipes; ++i) {
    p.push_back(std::make_unique<pipe_fds>());
    readers.push_back(std::make_unique<fsys::file>(ctx, p.back()->fd[0]));
    p.back()->fd[0] = -1;
    readers.back()->async_read_some_at(0, asio::buffer(bufs[i]), [&](error_code ec, std::size_t n) {
      BOOST_TEST(!ec);
      BOOST_TEST(n == 1u);
      ++pipe_done;
    });
  }
  auto data = pattern(1 << 16, 3);
  fsys::file f(ctx, dir.file("f.dat"), rw_create);
  std::vector<std::byte> back(data.size());
  bool file_done = false;
  f.async_write_at(0, asio::buffer(data), [&](error_code ec, std::size_t) {
    BOOST_TEST(!ec);
    f.async_read_at(0, asio::buffer(back), [&](error_code ec2, std::size_t n) {
      BOOST_TEST(!ec2);
      BOOST_TEST(n == data.size());
      file_done = true;
    });
  });
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (!file_done && std::chrono::steady_clock::now() < deadline) ctx.run_one_for(100ms);
  BOOST_TEST(file_done);
  BOOST_TEST(pipe_done == 0);
  BOOST_TEST((back == data));
  for (auto& pp : p) BOOST_TEST(::write(pp->fd[1], "x", 1) == 1);
  deadline = std::chrono::steady_clock::now() + 5s;
  while (pipe_done < pipes && std::chrono::steady_clock::now() < deadline) ctx.run_one_for(100ms);
  BOOST_TEST(pipe_done == pipes);
}

// ---- cancellation -------------------------------------------------------------

namespace {
// One client of the strand race below (a free coroutine: nothing of the test
// framework, which is not thread-safe, runs on the context's threads).
asio::awaitable<void> strand_race_client(std::filesystem::path path, int c, int rounds, std::atomic<int>& reads,
                                         std::atomic<int>& wrong, std::atomic<int>& finished) {
  using namespace asio::experimental::awaitable_operators;
  fsys::file f(co_await asio::this_coro::executor, path, O_RDONLY);
  std::vector<std::byte> buf(4096);
  for (int i = 0; i < rounds; ++i) {
    const std::uint64_t off = static_cast<std::uint64_t>((i * 7 + c) % 16) * 4096;
    if (i % 2 == 0) {
      auto [ec, n] = co_await fsys::with_timeout(f, f.async_read_at(off, asio::buffer(buf), asio::deferred),
                                                 std::chrono::microseconds(i % 5), asio::as_tuple(asio::use_awaitable));
      if (!ec && n != 4096u) ++wrong;
      if (!ec) ++reads;
    } else {
      asio::steady_timer t(co_await asio::this_coro::executor, std::chrono::microseconds(i % 3));
      auto r = co_await (f.async_read_at(off, asio::buffer(buf), asio::as_tuple(asio::use_awaitable)) ||
                         t.async_wait(asio::as_tuple(asio::use_awaitable)));
      if (r.index() == 0) ++reads;
    }
  }
  ++finished;
}
}  // namespace

BOOST_AUTO_TEST_CASE(cancellation_from_a_strand_never_races_completion) {
  // Coroutines on a strand of a context run by two threads, each operation
  // raced against a cancellation that may come just after it completed:
  // with fsys::with_timeout and with awaitable operators. ThreadSanitizer
  // checks the slot handling; every handler must run exactly once.
  temp_dir dir;
  asio::io_context ctx;
  fsys::test::make_ring(ctx);
  auto data = pattern(1 << 16, 4);
  fsys::test::write_file(dir.file("r.dat"), data);
  fsys::file shared_file(ctx, dir.file("r.dat"), O_RDONLY);
  // Boost.Test is not thread-safe: the coroutines only count.
  std::atomic<int> finished{0}, reads{0}, wrong{0};
  constexpr int coros = 4, rounds = 300;
  for (int c = 0; c < coros; ++c) {
    auto strand = asio::make_strand(ctx);
    asio::co_spawn(strand, strand_race_client(dir.file("r.dat"), c, rounds, reads, wrong, finished),
        asio::detached);
  }
  std::thread second([&] { ctx.run(); });
  ctx.run();
  second.join();
  BOOST_TEST(finished.load() == coros);
  BOOST_TEST(wrong.load() == 0);
  BOOST_TEST_MESSAGE("reads that won their race: " << reads.load() << " of " << coros * rounds);
}

BOOST_AUTO_TEST_CASE(total_cancellation_is_ignored_once_bytes_have_moved) {
  // A write of twice the pipe's capacity: the first round fills the pipe,
  // the second waits for a reader. `total` promises no side effect, which
  // can no longer be kept: the write goes on. `terminal` stops it.
  asio::io_context ctx;
  fsys::test::make_ring(ctx);
  for (auto type : {asio::cancellation_type::total, asio::cancellation_type::terminal}) {
    BOOST_TEST_CONTEXT((type == asio::cancellation_type::total ? "total" : "terminal")) {
      pipe_fds p;
      const int cap = ::fcntl(p.fd[1], F_GETPIPE_SZ);
      BOOST_REQUIRE(cap > 0);
      fsys::file w(ctx, p.fd[1]);
      p.fd[1] = -1;
      auto data = pattern(static_cast<std::size_t>(cap) * 2, 5);
      asio::cancellation_signal sig;
      error_code wec = asio::error::would_block;
      std::size_t wn = 0;
      bool done = false;
      w.async_write_at(0, asio::buffer(data), asio::bind_cancellation_slot(sig.slot(), [&](error_code ec, std::size_t n) {
                         wec = ec;
                         wn = n;
                         done = true;
                       }));
      // Wait until the pipe is full (the first round is done).
      int queued = 0;
      for (int i = 0; i < 500 && queued < cap; ++i) {
        ctx.run_for(2ms);
        ::ioctl(p.fd[0], FIONREAD, &queued);
      }
      BOOST_REQUIRE(queued == cap);
      sig.emit(type);
      ctx.run_for(20ms);
      std::vector<std::byte> sink(data.size());
      std::size_t got = 0;
      if (type == asio::cancellation_type::total) {
        BOOST_TEST(!done);  // still writing: the request was declined
        while (got < data.size()) {
          ssize_t r = ::read(p.fd[0], sink.data() + got, sink.size() - got);
          BOOST_REQUIRE(r > 0);
          got += static_cast<std::size_t>(r);
          ctx.poll();
        }
        for (int i = 0; i < 250 && !done; ++i) ctx.run_for(2ms);
        BOOST_TEST(done);
        BOOST_TEST(!wec);
        BOOST_TEST(wn == data.size());
        BOOST_TEST((sink == data));
      } else {
        for (int i = 0; i < 250 && !done; ++i) ctx.run_for(2ms);
        BOOST_TEST(done);
        BOOST_TEST((wec == asio::error::operation_aborted));
        BOOST_TEST(wn == static_cast<std::size_t>(cap));
      }
      ctx.restart();
    }
  }
}

namespace {
// An allocator that counts what it hands out.
template <class T>
struct counting_allocator {
  using value_type = T;
  std::atomic<int>* count;
  explicit counting_allocator(std::atomic<int>* c) noexcept : count(c) {}
  template <class U>
  counting_allocator(const counting_allocator<U>& o) noexcept : count(o.count) {}
  T* allocate(std::size_t n) {
    ++*count;
    return std::allocator<T>().allocate(n);
  }
  void deallocate(T* p, std::size_t n) noexcept { std::allocator<T>().deallocate(p, n); }
  template <class U>
  bool operator==(const counting_allocator<U>& o) const noexcept { return count == o.count; }
};
}  // namespace

BOOST_AUTO_TEST_CASE(the_final_dispatch_keeps_the_handlers_allocator) {
  // The handler runs on a strand that is busy elsewhere, so the completion
  // is queued there: that queueing must use the handler's allocator too.
  temp_dir dir;
  asio::io_context ctx;
  fsys::test::make_ring(ctx);
  auto data = pattern(4096, 6);
  fsys::test::write_file(dir.file("a.dat"), data);
  fsys::file f(ctx, dir.file("a.dat"), O_RDONLY);
  auto strand = asio::make_strand(ctx);
  std::atomic<int> allocations{0};
  std::vector<std::byte> buf(4096);
  bool done = false;
  f.async_read_at(0, asio::buffer(buf),
                  asio::bind_executor(strand, asio::bind_allocator(counting_allocator<void>(&allocations),
                                                                   [&](error_code ec, std::size_t n) {
                                                                     BOOST_TEST(!ec);
                                                                     BOOST_TEST(n == 4096u);
                                                                     done = true;
                                                                   })));
  fsys::test::run(ctx);
  BOOST_TEST(done);
  // One for the operation, one for the completion queued on the strand.
  BOOST_TEST(allocations.load() >= 2);
}

// ---- errors -------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(work_the_kernel_could_not_start_is_not_reported_as_cancelled) {
  if (!on_io_uring()) {
    BOOST_TEST_MESSAGE("skipped: io-wq worker limits concern the io_uring backend");
    return;
  }
  if (::geteuid() != 0) {
    BOOST_TEST_MESSAGE("skipped: needs root to switch to an unprivileged user");
    return;
  }
  fsys::test::temp_dir_on_disk dir;
  ::chmod(dir.path().c_str(), 0777);
  const std::string path = dir.file("nproc.dat").string();
  pid_t pid = ::fork();
  BOOST_REQUIRE(pid >= 0);
  if (pid == 0) {
    // An unprivileged user limited to one process: the kernel cannot create
    // io-wq workers, and cancels the work that needed one.
    if (::setgid(65534) != 0 || ::setuid(65534) != 0) ::_exit(77);
    rlimit one{1, 1};
    if (::setrlimit(RLIMIT_NPROC, &one) != 0) ::_exit(77);
    int code = 0;
    try {
      asio::io_context ctx;
      auto& svc = asio::make_service<fsys::uring_service>(ctx, fsys::ring_options{});
      if (svc.active_backend() != fsys::backend::io_uring) ::_exit(77);
      fsys::file f(ctx, path, rw_create);
      std::vector<std::byte> data(1 << 20, std::byte{7});
      std::vector<error_code> ecs(3, asio::error::would_block);
      f.async_write_at(0, asio::buffer(data), [&](error_code ec, std::size_t) { ecs[0] = ec; });
      f.async_write_linked_fsync(1 << 20, asio::buffer(data), [&](error_code ec, std::size_t) { ecs[1] = ec; });
      f.async_fdatasync([&](error_code ec) { ecs[2] = ec; });
      ctx.run_for(20s);
      for (auto& ec : ecs) {
        // Success is fine (the kernel found a way); "cancelled" is a lie.
        if (ec == asio::error::operation_aborted || ec == asio::error::would_block) code = 1;
        if (ec && ec != fsys::errc::kernel_worker_unavailable) code = code ? code : 2;
        std::fprintf(stderr, "nproc child: %s\n", ec.message().c_str());
      }
    } catch (const std::exception& e) {
      std::fprintf(stderr, "nproc child: %s\n", e.what());
      code = 3;
    }
    ::_exit(code);
  }
  int status = 0;
  BOOST_REQUIRE(::waitpid(pid, &status, 0) == pid);
  BOOST_REQUIRE(WIFEXITED(status));
  if (WEXITSTATUS(status) == 77) {
    BOOST_TEST_MESSAGE("skipped: could not switch user or limit processes");
    return;
  }
  BOOST_TEST(WEXITSTATUS(status) == 0);
}

BOOST_AUTO_TEST_CASE(a_submitting_thread_that_exits_does_not_take_requests_with_it) {
  // A thread that ran the context (and so submitted the batch) exits while
  // the requests are in flight: the kernel tears them down, the engine
  // submits them again, and the user sees the real results, with another
  // thread running the context. The reads are started by this thread (its
  // ring) or by the exiting thread itself (on a ring set: that thread's own
  // ring, not the first one, which this thread took), on a ring set and on
  // one ring; the psync run checks the same with its workers.
  for (const unsigned rings : {2u, 1u}) {
    for (const bool exiting_thread_starts : {false, true}) {
      BOOST_TEST_CONTEXT("rings " << rings << ", reads started by the exiting thread " << exiting_thread_starts) {
        fsys::test::temp_dir_on_disk dir;
        asio::io_context ctx;
        fsys::ring_options opts;
        opts.rings = rings;
        fsys::test::make_ring(ctx, opts);
        pipe_fds p;
        fsys::file rd(ctx, p.fd[0]);
        p.fd[0] = -1;
        auto data = pattern(16 * 65536, 8);
        fsys::test::write_file(dir.file("cold.dat"), data);
        fsys::file cold(ctx, dir.file("cold.dat"), O_RDONLY);
        // This thread's ring is the first one (it starts a read first).
        std::array<std::byte, 16> first{};
        bool first_done = false;
        cold.async_read_at(0, asio::buffer(first), [&](error_code, std::size_t) { first_done = true; });
        ctx.run();
        ctx.restart();
        BOOST_REQUIRE(first_done);
        ::posix_fadvise(cold.native_handle(), 0, 0, POSIX_FADV_DONTNEED);  // uncached

        std::array<std::byte, 4> pbuf{};
        std::atomic<bool> pipe_done{false};
        error_code pec = asio::error::would_block;
        std::size_t pn = 0;
        std::vector<std::vector<std::byte>> bufs(16, std::vector<std::byte>(65536));
        std::vector<error_code> ecs(16, asio::error::would_block);
        std::atomic<int> reads_done{0};
        auto start_reads = [&] {
          rd.async_read_some_at(0, asio::buffer(pbuf), [&](error_code ec, std::size_t n) {
            pec = ec;
            pn = n;
            pipe_done = true;
          });
          for (int i = 0; i < 16; ++i)
            cold.async_read_at(static_cast<std::uint64_t>(i) * 65536, asio::buffer(bufs[i]),
                               [&, i](error_code ec, std::size_t) {
                                 ecs[i] = ec;
                                 ++reads_done;
                               });
        };
        if (!exiting_thread_starts) start_reads();
        std::thread([&] {
          if (exiting_thread_starts) start_reads();
          ctx.poll_one();  // submits the batch, then exits
        }).join();
        BOOST_TEST(::write(p.fd[1], "ping", 4) == 4);
        // This thread keeps running the context, for a bounded time.
        auto deadline = std::chrono::steady_clock::now() + 10s;
        auto all_done = [&] { return pipe_done && reads_done == 16; };
        while (!all_done() && std::chrono::steady_clock::now() < deadline) ctx.run_one_for(100ms);
        BOOST_REQUIRE_MESSAGE(all_done(), "reads left by an exited thread never completed");
        BOOST_TEST(!pec, pec.message());
        BOOST_TEST(pn == 4u);
        BOOST_TEST(std::memcmp(pbuf.data(), "ping", 4) == 0);
        for (int i = 0; i < 16; ++i) {
          BOOST_TEST(!ecs[i], ecs[i].message());
          BOOST_TEST((bufs[i] == std::vector<std::byte>(data.begin() + i * 65536, data.begin() + (i + 1) * 65536)));
        }
      }
    }
  }
}

// ---- execution contexts -------------------------------------------------------

BOOST_AUTO_TEST_CASE(files_work_on_a_thread_pool) {
  // Any context built on Asio's scheduler runs fsys: here a thread pool of
  // two threads, with callbacks, a strand and a coroutine.
  temp_dir dir;
  asio::thread_pool pool(2);
  auto& svc = fsys::test::make_ring(pool);
  BOOST_TEST((svc.active_backend() == fsys::test::expected_backend()));
  auto data = pattern(1 << 16, 11);
  fsys::file f(pool, dir.file("pool.dat"), rw_create);
  auto written = f.async_write_at(0, asio::buffer(data), asio::use_future);
  BOOST_TEST(written.get() == data.size());

  auto strand = asio::make_strand(pool);
  std::vector<std::byte> back(data.size());
  std::promise<std::pair<error_code, std::size_t>> read_done;
  std::atomic<bool> on_strand{false};
  f.async_read_at(0, asio::buffer(back), asio::bind_executor(strand, [&](error_code ec, std::size_t n) {
                    on_strand = strand.running_in_this_thread();
                    read_done.set_value({ec, n});
                  }));
  auto [ec, n] = read_done.get_future().get();
  BOOST_TEST(on_strand.load());
  BOOST_TEST(!ec);
  BOOST_TEST(n == data.size());
  BOOST_TEST((back == data));

  auto synced = asio::co_spawn(
      pool,
      [&]() -> asio::awaitable<std::size_t> {
        fsys::file g(co_await asio::this_coro::executor, dir.file("pool2.dat"), rw_create);
        co_return co_await fsys::co_write_linked_fsync(g, 0, asio::buffer(data));
      },
      asio::use_future);
  BOOST_TEST(synced.get() == data.size());
  BOOST_TEST((read_file(dir.file("pool2.dat")) == data));
  pool.join();
}

// ---- rings per thread (ring_set) -------------------------------------------

BOOST_AUTO_TEST_CASE(each_thread_gets_its_own_ring_and_close_cancels_reads_on_all_of_them) {
  // Reads started from three threads land on three rings (one per thread);
  // only the first ring keeps the per-file list, so close() must find the
  // others' reads by scanning their rings. Pipe reads wait forever: if any
  // ring missed its read, its handler would never run.
  asio::io_context ctx;
  fsys::ring_options opts;
  opts.rings = 4;
  auto& service = fsys::test::make_ring(ctx, opts);
  pipe_fds p;
  fsys::file reader(ctx, p.fd[0]);
  p.fd[0] = -1;
  std::array<std::array<std::byte, 8>, 3> bufs{};
  std::atomic<int> aborted{0}, other{0};
  for (auto& b : bufs) {
    // One thread at a time: a basic_file is not meant for concurrent calls.
    std::thread([&] {
      reader.async_read_some_at(0, asio::buffer(b), [&](error_code ec, std::size_t) {
        (ec == asio::error::operation_aborted ? aborted : other).fetch_add(1);
      });
    }).join();
  }
  if (service.active_backend() == fsys::backend::io_uring) BOOST_TEST(service.stats().rings == 3u);
  ctx.run_for(50ms);  // the reads are now in the kernel (or with a psync worker)
  BOOST_TEST(aborted.load() + other.load() == 0);
  reader.close();
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (aborted.load() + other.load() < 3 && std::chrono::steady_clock::now() < deadline) ctx.run_one_for(100ms);
  BOOST_TEST(aborted.load() == 3);
  BOOST_TEST(other.load() == 0);
}

// 64 chains of cached reads (each handler starts the chain's next read), all
// started by this thread outside any handler, so all on its ring; then
// `threads` threads run the io_context on the ring path (two rings allowed).
// Every read is checked. Returns the service's counters and how many reads
// each thread resumed, or nothing on the psync backend (no rings there).
struct chain_run {
  fsys::engine_stats stats;
  int on_first = 0, on_second = 0;
};
enum class prior_runner { none, exited, departed };
std::optional<chain_run> run_read_chains(unsigned threads, prior_runner prior = prior_runner::none) {
  asio::io_context ctx;
  fsys::ring_options opts;
  opts.rings = 2;
  opts.inline_fast_path = false;
  auto& service = fsys::test::make_ring(ctx, opts);
  if (service.active_backend() != fsys::backend::io_uring) {
    BOOST_TEST_MESSAGE("skipped: rings are an io_uring matter (psync backend)");
    return std::nullopt;
  }
  temp_dir dir;
  constexpr std::size_t block = 4096, blocks = 256;
  const auto data = pattern(block * blocks, 21);
  fsys::test::write_file(dir.file("chains.dat"), data);
  (void)read_file(dir.file("chains.dat"));  // in the page cache
  fsys::file f(ctx, dir.file("chains.dat"), O_RDONLY);
  // A thread that ran the context's handlers (the flush and completion of
  // its read: a runner of the ring set) and then exited, or left run() and
  // stays alive until the chains are done.
  std::promise<void> release;
  std::thread departed;
  if (prior != prior_runner::none) {
    std::promise<void> left_run;
    std::thread t([&] {
      std::array<std::byte, block> buf{};
      f.async_read_at(0, asio::buffer(buf), [](error_code, std::size_t) {});
      ctx.run();
      left_run.set_value();
      if (prior == prior_runner::departed) release.get_future().wait();
    });
    left_run.get_future().wait();
    if (prior == prior_runner::exited)
      t.join();
    else
      departed = std::move(t);
    ctx.restart();
  }
  if (prior == prior_runner::departed) {
    // The rule is about time: a runner that ran none of the set's handlers
    // for 100 ms no longer counts. Nothing else marks the state to wait for.
    std::this_thread::sleep_for(250ms);
  }

  constexpr int chains = 64, reads_per_chain = 300;
  const std::thread::id first = std::this_thread::get_id();
  std::atomic<int> on_first{0}, on_second{0}, wrong{0}, done{0};
  struct chain {
    std::array<std::byte, block> buf{};
    std::size_t next = 0;
    int left = reads_per_chain;
  };
  std::vector<chain> cs(chains);
  std::function<void(chain&)> start = [&](chain& c) {
    const std::size_t at = c.next;
    f.async_read_at(at * block, asio::buffer(c.buf), [&, at](error_code ec, std::size_t n) {
      (std::this_thread::get_id() == first ? on_first : on_second).fetch_add(1, std::memory_order_relaxed);
      if (ec || n != block || std::memcmp(c.buf.data(), data.data() + at * block, block) != 0) wrong.fetch_add(1);
      if (--c.left == 0) {
        done.fetch_add(1);
        return;
      }
      c.next = (c.next * 7 + 13) % blocks;
      start(c);
    });
  };
  for (int i = 0; i < chains; ++i) {
    cs[i].next = static_cast<std::size_t>(i) % blocks;
    start(cs[i]);
  }
  std::vector<std::thread> others;
  for (unsigned t = 1; t < threads; ++t) others.emplace_back([&] { ctx.run(); });
  ctx.run();
  for (auto& t : others) t.join();
  if (departed.joinable()) {
    release.set_value();
    departed.join();
  }

  BOOST_TEST(done.load() == chains);
  BOOST_TEST(wrong.load() == 0);
  BOOST_TEST(on_first.load() + on_second.load() == chains * reads_per_chain);
  chain_run r{service.stats(), on_first.load(), on_second.load()};
  BOOST_TEST_MESSAGE(threads << " thread(s): " << r.stats.rings << " ring(s), chains moved " << r.stats.chains_moved
                             << ", reads resumed by each thread " << r.on_first << " / " << r.on_second);
  return r;
}

BOOST_AUTO_TEST_CASE(two_threads_running_one_io_context_share_the_chains_once) {
  // The ring carrying all 64 chains hands half of them to a second ring once
  // the second thread has run one of the rings' handlers, and from then on
  // each chain stays on its ring (the ring that completed a read takes the
  // next). So: two rings, chains moved about 32 times (a few more as chains
  // end unevenly; never per read), both threads resume a fair share.
  const auto r = run_read_chains(2);
  if (!r) return;
  BOOST_TEST(r->stats.rings == 2u);
  BOOST_TEST(r->stats.chains_moved >= 8u);
  BOOST_TEST(r->stats.chains_moved <= 3u * 64u);
  const int share = 64 * 300 / 10;
  BOOST_TEST(r->on_first >= share);
  BOOST_TEST(r->on_second >= share);
}

BOOST_AUTO_TEST_CASE(one_thread_keeps_all_chains_on_one_ring) {
  // The same chains with one thread in run(): nothing to share, so no chain
  // moves and no second ring is made (a pass stays one batch, one enter).
  const auto r = run_read_chains(1);
  if (!r) return;
  BOOST_TEST(r->stats.rings == 1u);
  BOOST_TEST(r->stats.chains_moved == 0u);
  BOOST_TEST(r->on_second == 0);
}

BOOST_AUTO_TEST_CASE(a_runner_that_exited_is_not_shared_chains) {
  // One thread runs the chains after another thread that ran the context
  // exited: only one thread runs it now, so no chain may move to another
  // ring (the exited thread would never run that ring's passes again).
  const auto r = run_read_chains(1, prior_runner::exited);
  if (!r) return;
  BOOST_TEST(r->stats.chains_moved == 0u);
  BOOST_TEST(r->on_second == 0);
}

BOOST_AUTO_TEST_CASE(a_runner_that_left_run_is_not_shared_chains) {
  // The same with a thread that left run() and stays alive: it runs no ring
  // any more, so once it has been gone for a while it no longer counts.
  const auto r = run_read_chains(1, prior_runner::departed);
  if (!r) return;
  BOOST_TEST(r->stats.chains_moved == 0u);
  BOOST_TEST(r->on_second == 0);
}

BOOST_AUTO_TEST_CASE(one_ring_when_asked_or_single_issuer) {
  for (int mode = 0; mode < 2; ++mode) {
    asio::io_context ctx;
    fsys::ring_options opts;
    if (mode == 0)
      opts.rings = 1;
    else
      opts.issuer = fsys::issuer_mode::single_thread;
    auto& service = fsys::test::make_ring(ctx, opts);
    if (service.active_backend() != fsys::backend::io_uring) return;
    temp_dir dir;
    fsys::test::write_file(dir.file("a.dat"), pattern(4096, 1));
    fsys::file f(ctx, dir.file("a.dat"), O_RDONLY);
    std::vector<std::byte> b(4096);
    std::atomic<int> done{0};
    std::thread([&] { f.async_read_at(0, asio::buffer(b), [&](error_code, std::size_t) { ++done; }); }).join();
    f.async_read_at(0, asio::buffer(b), [&](error_code, std::size_t) { ++done; });
    ctx.run_for(2s);
    BOOST_TEST(done.load() == 2);
    BOOST_TEST(service.stats().rings == 1u);
  }
}
