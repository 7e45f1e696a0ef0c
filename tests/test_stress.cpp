// Back-pressure and teardown: far more operations than the ring holds, signals
// interrupting the run loop, and io_contexts destroyed with thousands of
// operations in flight from several threads at once.
#include <boost/test/unit_test.hpp>

#include "support/ring_fixture.hpp"
#include "support/run.hpp"
#include "support/temp_dir.hpp"

#include <fsys/fsys.hpp>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <numeric>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
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
  std::mutex m;  // the handlers may run on several threads (fsys::test::run)
  auto note = [&](error_code ec, std::size_t n) {
    std::lock_guard<std::mutex> l(m);
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
  fsys::test::run(ctx);
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
  fsys::test::run(ctx);
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
    fsys::test::run(ctx);
    BOOST_TEST(std::count(calls.begin(), calls.end(), 1) == 3000);
    ::close(p[1]);
  }
}

namespace {

// ---- four threads: ops from handlers, random cancellation, closes in flight --

/// Entries of /proc/self/fd (the directory stream's own included; compared
/// before and after, so it cancels out).
std::size_t open_fds() {
  std::size_t n = 0;
  for ([[maybe_unused]] auto& e : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
  return n;
}

using strand_t = asio::strand<asio::io_context::executor_type>;

constexpr std::size_t mt_block = 4096;
constexpr std::size_t mt_blocks_per_chain = 16;  // each chain's region in each file
constexpr int mt_files = 4;

struct mt_chain;

/// One operation of a round. Shared with its cancellation timer, which may
/// fire after the round is over.
struct mt_op {
  mt_chain* chain = nullptr;
  int kind = 0;  // 0 write_at, 1 write_linked_fsync, 2 read_at
  std::size_t block = 0;
  std::vector<std::byte> buf = std::vector<std::byte>(mt_block);
  asio::cancellation_signal sig;
  std::optional<asio::steady_timer> timer;
  bool done = false;
};

/// A chain of rounds on its own strand: each round opens one of the files,
/// starts 1–10 operations on distinct blocks of the chain's region (from the
/// handler that ended the previous round, so from any of the threads),
/// cancels some of them at random moments, and may close the file (close(),
/// async_close(), or destroying it) while they are in flight. Everything the
/// chain keeps is touched on its strand only.
struct mt_chain {
  int id = 0;
  asio::io_context* ctx;
  std::optional<strand_t> strand;  // reset before the io_context goes
  std::mt19937 rng;
  std::vector<std::filesystem::path> const* paths = nullptr;
  // model[file]: the expected bytes of this chain's region of that file.
  std::array<std::vector<std::byte>, mt_files> model;
  std::optional<fsys::file> f;
  int file = 0;
  int rounds_left = 0;
  int pending = 0;  // handlers of this round still to run
  std::uint64_t version = 0;
  std::vector<std::shared_ptr<mt_op>> ops;
  // Outcomes, asserted after the run.
  std::vector<std::string> errors;
  std::size_t ops_done = 0, aborted = 0, closes = 0, async_closes = 0, destroys = 0;
  std::set<std::thread::id>* threads = nullptr;
  std::mutex* threads_mutex = nullptr;

  mt_chain(asio::io_context& c, int i) : id(i), ctx(&c), strand(asio::make_strand(c)), rng(static_cast<unsigned>(1000 + i)) {
    for (auto& m : model) m.assign(mt_blocks_per_chain * mt_block, std::byte{0});
  }

  std::uint64_t region_offset() const { return static_cast<std::uint64_t>(id) * mt_blocks_per_chain * mt_block; }

  void note_thread() {
    std::lock_guard<std::mutex> l(*threads_mutex);
    threads->insert(std::this_thread::get_id());
  }

  void fail(const std::string& what) {
    if (errors.size() < 20) errors.push_back("chain " + std::to_string(id) + ": " + what);
  }

  // On the strand.
  void start_round() {
    note_thread();
    if (rounds_left-- == 0) return;
    file = static_cast<int>(rng() % mt_files);
    f.emplace(*ctx, (*paths)[static_cast<std::size_t>(file)], O_RDWR);
    ops.clear();
    std::vector<std::size_t> blocks(mt_blocks_per_chain);
    std::iota(blocks.begin(), blocks.end(), std::size_t{0});
    std::shuffle(blocks.begin(), blocks.end(), rng);
    const std::size_t n = 1 + rng() % 10;
    pending = static_cast<int>(n);
    for (std::size_t i = 0; i < n; ++i) {
      auto op = std::make_shared<mt_op>();
      op->chain = this;
      op->block = blocks[i];
      const unsigned r = rng() % 16;
      op->kind = r == 0 ? 1 : r < 9 ? 0 : 2;
      if (op->kind != 2) op->buf = pattern(mt_block, (static_cast<std::uint64_t>(id) << 40) | ++version);
      ops.push_back(op);
      const std::uint64_t off = region_offset() + op->block * mt_block;
      // Why the buffer is sound: `op` (its owner) is kept by the handler,
      // which fsys destroys only after the kernel has released the buffer.
      auto h = asio::bind_cancellation_slot(op->sig.slot(), asio::bind_executor(*strand, [this, op](error_code ec, std::size_t got) {
        finish(*op, ec, got);
      }));
      if (op->kind == 0)
        f->async_write_at(off, asio::buffer(op->buf), h);
      else if (op->kind == 1)
        f->async_write_linked_fsync(off, asio::buffer(op->buf), h);
      else
        f->async_read_at(off, asio::buffer(op->buf), h);
      // Cancellation: none, at once, at the next turn of the strand, or
      // from a timer a few microseconds later.
      switch (rng() % 6) {
        case 0: op->sig.emit(asio::cancellation_type::terminal); break;
        case 1:
          asio::post(*strand, [op] {
            if (!op->done) op->sig.emit(asio::cancellation_type::terminal);
          });
          break;
        case 2:
          op->timer.emplace(*strand, std::chrono::microseconds(rng() % 300));
          op->timer->async_wait([op](error_code) {
            if (!op->done) op->sig.emit(asio::cancellation_type::terminal);
          });
          break;
        default: break;
      }
    }
    // The file, while the operations are in flight: kept, closed, closed
    // asynchronously (one more handler to wait for), or destroyed.
    switch (rng() % 8) {
      case 0:
        f->close();
        ++closes;
        break;
      case 1:
        ++pending;
        ++async_closes;
        f->async_close(asio::bind_executor(*strand, [this](error_code ec) {
          note_thread();
          if (ec) fail("async_close: " + ec.message());
          if (f->is_open()) fail("open after async_close");
          end_of_handler();
        }));
        break;
      case 2:
        f.reset();
        ++destroys;
        break;
      default: break;
    }
  }

  void finish(mt_op& op, error_code ec, std::size_t got) {
    note_thread();
    op.done = true;
    ++ops_done;
    const std::string what = (op.kind == 2 ? "read" : "write") + std::string(" of block ") + std::to_string(op.block) +
                             " of file " + std::to_string(file);
    if (ec == asio::error::operation_aborted) {
      ++aborted;
    } else if (ec) {
      fail(what + ": " + ec.message());
    } else if (got != mt_block) {
      fail(what + ": success with " + std::to_string(got) + " bytes");
    }
    if (got > mt_block) {
      fail(what + ": " + std::to_string(got) + " bytes");
      got = 0;
    }
    auto* m = model[static_cast<std::size_t>(file)].data() + op.block * mt_block;
    if (op.kind == 2) {
      // The bytes the read reports are the chain's model of them: no other
      // operation of this round touches the block.
      if (std::memcmp(op.buf.data(), m, got) != 0) fail(what + ": wrong bytes");
    } else {
      std::memcpy(m, op.buf.data(), got);  // the file now holds what the write reported
    }
    end_of_handler();
  }

  void end_of_handler() {
    if (--pending > 0) return;
    f.reset();
    start_round();  // the next round, from this handler
  }
};

}  // namespace

BOOST_AUTO_TEST_CASE(four_threads_start_cancel_and_close_while_operations_are_in_flight) {
  // 64 chains of rounds (see mt_chain) on an io_context run by 4 threads,
  // with a ring of 32 entries so that operations also wait in fsys's queue.
  // Every handler runs once; every byte a read returns, and every byte of
  // the files at the end, is what the reported results say; no descriptor
  // is left open; handlers ran on several threads.
  temp_dir dir;
  std::vector<std::filesystem::path> paths;
  constexpr int chains = 64, rounds = 60;
  for (int i = 0; i < mt_files; ++i) {
    paths.push_back(dir.file("mt" + std::to_string(i) + ".dat"));
    fsys::test::write_file(paths.back(), std::vector<std::byte>(chains * mt_blocks_per_chain * mt_block));
  }
  const std::size_t fds_before = open_fds();
  std::set<std::thread::id> threads;
  std::mutex threads_mutex;
  std::vector<std::unique_ptr<mt_chain>> cs;
  {
    asio::io_context ctx(4);
    fsys::test::make_ring(ctx, {.queue_depth = 32});
    for (int i = 0; i < chains; ++i) {
      cs.push_back(std::make_unique<mt_chain>(ctx, i));
      auto& c = *cs.back();
      c.paths = &paths;
      c.rounds_left = rounds;
      c.threads = &threads;
      c.threads_mutex = &threads_mutex;
      asio::post(*c.strand, [&c] { c.start_round(); });
    }
    std::vector<std::thread> pool;
    for (int i = 0; i < 3; ++i) pool.emplace_back([&] { ctx.run(); });
    ctx.run();
    for (auto& t : pool) t.join();
    for (auto& c : cs) {
      BOOST_TEST(c->pending == 0);
      BOOST_TEST(c->rounds_left < 0);  // every round ran
      BOOST_TEST(!c->f.has_value());
      c->ops.clear();
      c->strand.reset();  // a strand must not outlive its io_context
    }
  }
  BOOST_TEST(open_fds() == fds_before);
  std::size_t ops = 0, aborted = 0, closes = 0, async_closes = 0, destroys = 0, errors = 0;
  for (auto& c : cs) {
    for (auto& e : c->errors) BOOST_TEST_MESSAGE(e);
    errors += c->errors.size();
    ops += c->ops_done;
    aborted += c->aborted;
    closes += c->closes;
    async_closes += c->async_closes;
    destroys += c->destroys;
  }
  BOOST_TEST(errors == 0u);
  // The files hold exactly what the chains' models say, byte for byte.
  std::size_t wrong_blocks = 0;
  for (int fi = 0; fi < mt_files; ++fi) {
    auto disk = read_file(paths[static_cast<std::size_t>(fi)]);
    BOOST_REQUIRE_EQUAL(disk.size(), chains * mt_blocks_per_chain * mt_block);
    for (auto& c : cs) {
      const auto& m = c->model[static_cast<std::size_t>(fi)];
      for (std::size_t b = 0; b < mt_blocks_per_chain; ++b)
        if (std::memcmp(disk.data() + c->region_offset() + b * mt_block, m.data() + b * mt_block, mt_block) != 0)
          ++wrong_blocks;
    }
  }
  BOOST_TEST(wrong_blocks == 0u);
  BOOST_TEST(threads.size() > 1u);
  BOOST_TEST(aborted > 0u);
  BOOST_TEST(closes + async_closes + destroys > 0u);
  BOOST_TEST_MESSAGE("4 threads: " << ops << " operations, " << aborted << " aborted; " << closes << " close(), "
                                   << async_closes << " async_close(), " << destroys << " destroyed with operations in flight; handlers ran on "
                                   << threads.size() << " threads");
}
