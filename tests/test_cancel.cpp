// Per-operation cancellation and timeouts on a real ring: cancel storms with
// poisoned buffers, every cancellation type, Asio's awaitable operators and
// co_spawn cancellation, fsys::with_timeout, and what a cancelled linked
// write+fsync means for durability.
//
// A read from an empty pipe stays in the kernel until data arrives or it is
// cancelled, which gives operations that are truly in flight; regular-file
// operations on the page cache usually finish during submission, which gives
// the "kernel already did the work" outcome.
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
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <memory>
#include <random>
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
constexpr std::byte poison{0xEE};

bool is_uring() { return fsys::test::expected_backend() == fsys::backend::io_uring; }

struct pipe_pair {
  int rd = -1, wr = -1;
  pipe_pair() {
    int p[2];
    BOOST_REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
    rd = p[0];
    wr = p[1];
    ::fcntl(wr, F_SETFL, O_NONBLOCK);
  }
  ~pipe_pair() {
    if (wr >= 0) ::close(wr);
  }
  void close_writer() {
    ::close(wr);
    wr = -1;
  }
};

bool all_poison(const std::vector<std::byte>& b) {
  return std::all_of(b.begin(), b.end(), [](std::byte x) { return x == poison; });
}

asio::cancellation_type pick_type(std::mt19937& rng) {
  switch (rng() % 3) {
    case 0: return asio::cancellation_type::terminal;
    case 1: return asio::cancellation_type::partial;
    default: return asio::cancellation_type::total;
  }
}

}  // namespace

BOOST_AUTO_TEST_CASE(cancel_storm_on_pipe_reads_loses_no_byte_and_touches_no_buffer_afterwards) {
  // 10,000 reads of a pipe, each cancelled (terminal, partial or total) at a
  // random moment or never, while a writer feeds the pipe at random moments.
  // Every handler runs once; a read reports either operation_aborted with 0
  // bytes or the bytes it took; the bytes taken by all reads plus what is left
  // in the pipe are exactly the bytes written (a read cancelled after taking
  // data would lose them). After its handler a buffer is poisoned and kept:
  // the kernel must never write into it again.
  // Both ring kinds: concurrency hint 1 builds a SINGLE_ISSUER|DEFER_TASKRUN
  // ring where the kernel offers it, any other hint a COOP_TASKRUN ring.
  for (int hint : {2, 1}) {
  BOOST_TEST_CONTEXT("concurrency hint " << hint) {
  constexpr int ops = 10000;
  constexpr std::size_t buf_size = 48;
  asio::io_context ctx(hint);
  fsys::test::make_ring(ctx, {.queue_depth = 128});
  pipe_pair pp;
  fsys::file rd(ctx, pp.rd);
  std::mt19937 rng(12345);
  // Every handler, emitter and the writer run on one strand: a cancellation
  // signal is not thread-safe, and the bookkeeping below is shared. The
  // context itself may be run by several threads (fsys::test::run).
  auto strand = asio::make_strand(ctx);

  struct slot_state {
    asio::cancellation_signal sig;
    std::vector<std::byte> buf = std::vector<std::byte>(buf_size);
    int calls = 0;
  };
  std::vector<std::unique_ptr<slot_state>> st;
  st.reserve(ops);
  std::uint64_t got_bytes = 0, got_sum = 0, written_bytes = 0, written_sum = 0;
  int aborted = 0, with_data = 0, other = 0, still_running = ops, bad_counts = 0;
  std::vector<std::unique_ptr<asio::steady_timer>> timers;

  for (int i = 0; i < ops; ++i) {
    st.push_back(std::make_unique<slot_state>());
    slot_state* s = st.back().get();
    // Why the buffer is sound: it lives in `st` until the end of the test,
    // long after the handler has run.
    rd.async_read_some_at(0, asio::buffer(s->buf), asio::bind_cancellation_slot(s->sig.slot(),
        asio::bind_executor(strand, [&, s](error_code ec, std::size_t n) {
          ++s->calls;
          --still_running;
          if (ec == asio::error::operation_aborted) {
            ++aborted;
            if (n != 0) ++bad_counts;
          } else if (!ec && n > 0) {
            ++with_data;
            got_bytes += n;
            for (std::size_t k = 0; k < n; ++k) got_sum += static_cast<unsigned>(s->buf[k]);
          } else {
            ++other;  // eof once the writer closed (and ESPIPE on psync)
            if (n != 0) ++bad_counts;
          }
          std::fill(s->buf.begin(), s->buf.end(), poison);
        })));
    switch (rng() % 5) {
      case 0:  // at once, before submission
        s->sig.emit(pick_type(rng));
        break;
      case 1: {  // on the next run-loop pass
        auto type = pick_type(rng);
        asio::post(strand, [s, type] {
          if (s->calls == 0) s->sig.emit(type);
        });
        break;
      }
      case 2:
      case 3: {  // at a random moment later
        auto t = std::make_unique<asio::steady_timer>(ctx, std::chrono::microseconds(rng() % 30000));
        auto type = pick_type(rng);
        t->async_wait(asio::bind_executor(strand, [s, type](error_code) {
          if (s->calls == 0) s->sig.emit(type);
        }));
        timers.push_back(std::move(t));
        break;
      }
      default:  // never: completed by data, or by end of file at the end
        break;
    }
  }

  // The writer: random chunks at random moments; bytes never equal poison.
  asio::steady_timer writer(ctx);
  std::function<void()> write_some;
  int chunks = 0;
  write_some = [&] {
    if (chunks++ == 1500) {
      pp.close_writer();  // blocked reads now complete with eof
      return;
    }
    std::vector<unsigned char> chunk(1 + rng() % 64);
    for (auto& c : chunk) c = static_cast<unsigned char>(rng() % 0xE0);
    ssize_t w = ::write(pp.wr, chunk.data(), chunk.size());
    if (w > 0) {
      written_bytes += static_cast<std::size_t>(w);
      for (ssize_t k = 0; k < w; ++k) written_sum += chunk[static_cast<std::size_t>(k)];
    }
    writer.expires_after(std::chrono::microseconds(rng() % 40));
    writer.async_wait(asio::bind_executor(strand, [&](error_code) { write_some(); }));
  };
  write_some();
  fsys::test::run(ctx);

  // Whatever the reads did not take is still in the pipe.
  std::uint64_t left_bytes = 0, left_sum = 0;
  unsigned char tmp[4096];
  ssize_t r;
  while ((r = ::read(pp.rd, tmp, sizeof tmp)) > 0) {
    left_bytes += static_cast<std::size_t>(r);
    for (ssize_t k = 0; k < r; ++k) left_sum += tmp[k];
  }
  rd.release();
  ::close(pp.rd);

  BOOST_TEST(still_running == 0);
  BOOST_TEST(bad_counts == 0);
  int wrong_calls = 0, touched = 0;
  for (auto& s : st) {
    wrong_calls += s->calls != 1;
    touched += !all_poison(s->buf);
  }
  BOOST_TEST(wrong_calls == 0);
  BOOST_TEST(touched == 0);
  BOOST_TEST(got_bytes + left_bytes == written_bytes);
  BOOST_TEST(got_sum + left_sum == written_sum);
  BOOST_TEST_MESSAGE("pipe storm: " << aborted << " aborted, " << with_data << " with data, " << other
                                    << " eof/other; " << written_bytes << " bytes written");
  BOOST_TEST(aborted > 0);
  BOOST_TEST(with_data > 0);
  if (is_uring()) BOOST_TEST(aborted > ops / 2);
  }
  }
}

BOOST_AUTO_TEST_CASE(cancel_storm_on_file_writes_never_misreports_what_reached_the_file) {
  // 10,000 writes (plain, several-buffer and linked write+fsync) and reads at
  // distinct offsets, cancelled at random moments. After each handler the
  // buffer is poisoned: the file must hold exactly the bytes each handler
  // reported, the rest of each slot must be untouched (zero), and no poison
  // may ever reach the file. A linked write reported successful wrote all.
  temp_dir dir;
  auto path = dir.file("storm.dat");
  constexpr int ops = 10000;
  constexpr std::size_t block = 512;
  asio::io_context ctx(1);
  fsys::test::make_ring(ctx, {.queue_depth = 64});
  fsys::file f(ctx, path, rw_create);
  auto data = pattern(ops * block, 31);
  std::mt19937 rng(777);
  // Handlers and emitters on one strand (signals are not thread-safe; `rng`
  // and `pending` are shared); the context may be run by several threads.
  auto strand = asio::make_strand(ctx);

  struct w_state {
    asio::cancellation_signal sig;
    std::vector<std::byte> buf;
    int kind = 0;  // 0 write_at, 1 two buffers, 2 linked, 3 write_some
    int calls = 0;
    error_code ec;
    std::size_t n = 0;
  };
  std::vector<std::unique_ptr<w_state>> st;
  st.reserve(ops);
  std::vector<w_state*> pending;  // to be cancelled from another op's handler
  for (int i = 0; i < ops; ++i) {
    st.push_back(std::make_unique<w_state>());
    w_state* s = st.back().get();
    s->buf.assign(data.begin() + static_cast<std::ptrdiff_t>(i * block), data.begin() + static_cast<std::ptrdiff_t>((i + 1) * block));
    unsigned r = rng() % 100;
    s->kind = r < 2 ? 2 : r < 30 ? 1 : r < 40 ? 3 : 0;
    auto h = asio::bind_cancellation_slot(s->sig.slot(), asio::bind_executor(strand, [&, s](error_code ec, std::size_t n) {
      ++s->calls;
      s->ec = ec;
      s->n = n;
      std::fill(s->buf.begin(), s->buf.end(), poison);
      // Cancel some other operation from inside a completion handler.
      if (!pending.empty() && rng() % 4 == 0) {
        w_state* o = pending.back();
        pending.pop_back();
        if (o->calls == 0) o->sig.emit(pick_type(rng));
      }
    }));
    const std::uint64_t off = static_cast<std::uint64_t>(i) * block;
    // Why the buffers are sound: they live in `st` until the test ends.
    std::array<asio::mutable_buffer, 2> two{asio::buffer(s->buf.data(), 100), asio::buffer(s->buf.data() + 100, block - 100)};
    switch (s->kind) {
      case 0: f.async_write_at(off, asio::buffer(s->buf), h); break;
      case 1: f.async_write_at(off, two, h); break;
      case 2: f.async_write_linked_fsync(off, asio::buffer(s->buf), h); break;
      default: f.async_write_some_at(off, asio::buffer(s->buf), h); break;
    }
    switch (rng() % 4) {
      case 0: s->sig.emit(pick_type(rng)); break;
      case 1: pending.push_back(s); break;
      case 2: {
        auto type = pick_type(rng);
        asio::post(strand, [s, type] {
          if (s->calls == 0) s->sig.emit(type);
        });
        break;
      }
      default: break;
    }
    if (i % 1000 == 999) {
      // Let some run while more are started. poll() stops the context when it
      // runs out of work; restart it so the next operations can run.
      ctx.poll();
      ctx.restart();
    }
  }
  fsys::test::run(ctx);
  f.close();

  auto disk = read_file(path);
  disk.resize(ops * block);  // a sparse tail reads as zeros
  int wrong_calls = 0, misreported = 0, poisoned = 0, short_success = 0, aborted = 0;
  for (int i = 0; i < ops; ++i) {
    w_state& s = *st[i];
    wrong_calls += s.calls != 1;
    const auto* slot = disk.data() + i * block;
    const auto* want = data.data() + i * block;
    if (std::find(slot, slot + block, poison) != slot + block && std::find(want, want + block, poison) == want + block) ++poisoned;
    if (std::memcmp(slot, want, s.n) != 0) ++misreported;
    for (std::size_t k = s.n; k < block; ++k) {
      if (slot[k] != std::byte{0}) {
        ++misreported;
        break;
      }
    }
    if (!s.ec && s.n != block && s.kind != 3) ++short_success;
    if (s.ec == asio::error::operation_aborted) ++aborted;
    else if (s.ec) BOOST_TEST_MESSAGE("op " << i << " unexpected error " << s.ec.message());
  }
  BOOST_TEST(wrong_calls == 0);
  BOOST_TEST(misreported == 0);
  BOOST_TEST(poisoned == 0);
  BOOST_TEST(short_success == 0);
  BOOST_TEST(aborted > 0);
  BOOST_TEST_MESSAGE("write storm: " << aborted << " of " << ops << " aborted");
}

BOOST_AUTO_TEST_CASE(every_cancellation_type_aborts_an_operation_in_flight) {
  if (!is_uring()) {
    BOOST_TEST_MESSAGE("skipped on psync: a pipe read there blocks a worker thread and is not in a kernel queue");
    return;
  }
  for (auto type : {asio::cancellation_type::terminal, asio::cancellation_type::partial, asio::cancellation_type::total}) {
    BOOST_TEST_CONTEXT("type " << static_cast<int>(type)) {
      asio::io_context ctx;
      pipe_pair pp;
      fsys::file rd(ctx, pp.rd);
      asio::cancellation_signal sig;
      std::vector<std::byte> buf(16, std::byte{0});
      int calls = 0;
      error_code got;
      rd.async_read_some_at(0, asio::buffer(buf), asio::bind_cancellation_slot(sig.slot(), [&](error_code ec, std::size_t n) {
        ++calls;
        got = ec;
        BOOST_TEST(n == 0u);
        std::fill(buf.begin(), buf.end(), poison);
      }));
      // Several passes: the read is in the kernel, waiting for data.
      for (int i = 0; i < 5; ++i) ctx.poll();
      BOOST_TEST(calls == 0);
      sig.emit(type);
      sig.emit(type);  // a second request is harmless
      fsys::test::run(ctx);
      ctx.restart();
      BOOST_TEST(calls == 1);
      BOOST_TEST((got == asio::error::operation_aborted));
      // The cancelled read took nothing: the next byte is still in the pipe,
      // and the poisoned buffer stays poisoned.
      BOOST_TEST(::write(pp.wr, "z", 1) == 1);
      char c = 0;
      BOOST_TEST(::read(pp.rd, &c, 1) == 1);
      BOOST_TEST(c == 'z');
      BOOST_TEST(all_poison(buf));
      // Cancellation type none does nothing.
      int calls2 = 0;
      rd.async_read_some_at(0, asio::buffer(buf), asio::bind_cancellation_slot(sig.slot(), [&](error_code ec, std::size_t n) {
        ++calls2;
        BOOST_TEST(!ec);
        BOOST_TEST(n == 1u);
      }));
      ctx.poll();
      sig.emit(asio::cancellation_type::none);
      ctx.poll();
      BOOST_TEST(calls2 == 0);
      BOOST_TEST(::write(pp.wr, "y", 1) == 1);
      fsys::test::run(ctx);
      BOOST_TEST(calls2 == 1);
      rd.release();
      ::close(pp.rd);
    }
  }
}

BOOST_AUTO_TEST_CASE(a_cancel_after_the_kernel_finished_gives_the_real_result) {
  // The handler is bound to a second io_context that is not running yet: the
  // kernel completes the read, fsys releases the operation and posts the
  // handler there; a cancellation emitted now must not change the result.
  temp_dir dir;
  auto path = dir.file("done.dat");
  auto data = pattern(8192, 32);
  fsys::test::write_file(path, data);
  asio::io_context ctx, other;
  fsys::file f(ctx, path, O_RDONLY);
  asio::cancellation_signal sig;
  std::vector<std::byte> back(data.size());
  error_code got = asio::error::would_block;
  std::size_t n_got = 0;
  f.async_read_at(0, asio::buffer(back), asio::bind_cancellation_slot(sig.slot(),
      asio::bind_executor(other, [&](error_code ec, std::size_t n) {
        got = ec;
        n_got = n;
      })));
  fsys::test::run(ctx);
  sig.emit(asio::cancellation_type::terminal);
  other.run();
  BOOST_TEST(!got);
  BOOST_TEST(n_got == data.size());
  BOOST_TEST((back == data));
}

BOOST_AUTO_TEST_CASE(awaitable_operators_and_co_spawn_cancellation) {
  using namespace asio::experimental::awaitable_operators;
  temp_dir dir;
  auto path = dir.file("ops.dat");
  auto data = pattern(65536, 33);
  fsys::test::write_file(path, data);
  asio::io_context ctx;
  pipe_pair pp;
  fsys::file rd(ctx, pp.rd);
  fsys::file f(ctx, path, O_RDONLY);
  int checks = 0;

  // On a strand: `||` cancels the losing operation through a signal, which
  // is not thread-safe, and the context may be run by several threads.
  asio::co_spawn(asio::make_strand(ctx), [&]() -> asio::awaitable<void> {
    std::vector<std::byte> buf(64);
    if (is_uring()) {
      // A pipe read racing a short timer: the timer wins, the read is
      // cancelled and has finished before || returns.
      asio::steady_timer t(co_await asio::this_coro::executor, 20ms);
      auto r = co_await (rd.async_read_some_at(0, asio::buffer(buf), asio::use_awaitable) ||
                         t.async_wait(asio::use_awaitable));
      BOOST_TEST(r.index() == 1u);
      ++checks;
    }
    // A file read racing a long timer: the read wins with all its bytes.
    std::vector<std::byte> back(data.size());
    asio::steady_timer t2(co_await asio::this_coro::executor, 10s);
    auto r2 = co_await (f.async_read_at(0, asio::buffer(back), asio::use_awaitable) ||
                        t2.async_wait(asio::use_awaitable));
    BOOST_TEST(r2.index() == 0u);
    BOOST_TEST(std::get<0>(r2) == data.size());
    BOOST_TEST((back == data));
    ++checks;
  }, asio::detached);
  fsys::test::run(ctx);
  BOOST_TEST(checks == (is_uring() ? 2 : 1));
  ctx.restart();

  if (is_uring()) {
    // co_spawn with a cancellation slot: the coroutine's pending read is
    // cancelled and co_read_at throws std::system_error(operation_aborted).
    // The coroutine and the timer that emits its signal share a strand:
    // a signal is not thread-safe.
    auto strand = asio::make_strand(ctx);
    asio::cancellation_signal sig;
    std::exception_ptr ep;
    bool caught = false;
    asio::co_spawn(strand, [&]() -> asio::awaitable<void> {
      std::vector<std::byte> buf(64);
      try {
        co_await fsys::co_read_at(rd, 0, asio::buffer(buf));
      } catch (const std::system_error& e) {
        caught = e.code() == std::error_code(error_code(asio::error::operation_aborted));
        throw;
      }
    }, asio::bind_cancellation_slot(sig.slot(), [&](std::exception_ptr e) { ep = e; }));
    asio::steady_timer t(ctx, 10ms);
    t.async_wait(asio::bind_executor(strand, [&](error_code) { sig.emit(asio::cancellation_type::terminal); }));
    fsys::test::run(ctx);
    BOOST_TEST(caught);
    BOOST_TEST(static_cast<bool>(ep));
  }
  rd.release();
  ::close(pp.rd);
}

BOOST_AUTO_TEST_CASE(with_timeout_times_out_passes_results_and_forwards_cancellation) {
  temp_dir dir;
  auto path = dir.file("to.dat");
  auto data = pattern(100000, 34);
  fsys::test::write_file(path, data);
  asio::io_context ctx;
  fsys::file f(ctx, path, O_RDWR);
  // with_timeout's handlers on a strand, as its documentation asks when
  // several threads run the context (its deadline emits a signal).
  auto strand = asio::make_strand(ctx);

  // Completes in time: the real result, callback token.
  std::vector<std::byte> back(data.size());
  int calls = 0;
  fsys::with_timeout(f, f.async_read_at(0, asio::buffer(back), asio::deferred), 10s,
                     asio::bind_executor(strand, [&](error_code ec, std::size_t n) {
                       ++calls;
                       BOOST_TEST(!ec);
                       BOOST_TEST(n == data.size());
                     }));
  // Completion signature without a size: fdatasync.
  fsys::with_timeout(f.get_executor(), f.async_fdatasync(asio::deferred), 10s,
                     asio::bind_executor(strand, [&](error_code ec) {
                       ++calls;
                       BOOST_TEST(!ec);
                     }));
  fsys::test::run(ctx);
  ctx.restart();
  BOOST_TEST(calls == 2);
  BOOST_TEST((back == data));

  if (is_uring()) {
    pipe_pair pp;
    fsys::file rd(ctx, pp.rd);
    std::vector<std::byte> buf(32, std::byte{0});
    // Times out: timed_out, once, after the kernel let go of the buffer.
    auto start = std::chrono::steady_clock::now();
    error_code got;
    calls = 0;
    fsys::with_timeout(rd, rd.async_read_some_at(0, asio::buffer(buf), asio::deferred), 30ms,
                       asio::bind_executor(strand, [&](error_code ec, std::size_t n) {
                         ++calls;
                         got = ec;
                         BOOST_TEST(n == 0u);
                         std::fill(buf.begin(), buf.end(), poison);
                       }));
    fsys::test::run(ctx);
    ctx.restart();
    auto took = std::chrono::steady_clock::now() - start;
    BOOST_TEST(calls == 1);
    BOOST_TEST((got == asio::error::timed_out), got.message());
    BOOST_TEST((took >= 30ms));
    BOOST_TEST(::write(pp.wr, "q", 1) == 1);
    char c = 0;
    BOOST_TEST(::read(pp.rd, &c, 1) == 1);  // the timed-out read took nothing
    BOOST_TEST(all_poison(buf));

    // In a coroutine, with the caller cancelling through the handler's own
    // slot before the deadline: operation_aborted, not timed_out.
    asio::cancellation_signal outer;
    error_code co_ec;
    asio::co_spawn(strand, [&]() -> asio::awaitable<void> {
      auto [ec, n] = co_await fsys::with_timeout(
          rd, rd.async_read_some_at(0, asio::buffer(buf), asio::deferred), 10s, asio::as_tuple(asio::use_awaitable));
      co_ec = ec;
      BOOST_TEST(n == 0u);
    }, asio::bind_cancellation_slot(outer.slot(), asio::detached));
    asio::steady_timer t(ctx, 10ms);
    t.async_wait(asio::bind_executor(strand, [&](error_code) { outer.emit(asio::cancellation_type::terminal); }));
    start = std::chrono::steady_clock::now();
    fsys::test::run(ctx);
    ctx.restart();
    BOOST_TEST((co_ec == asio::error::operation_aborted), co_ec.message());
    BOOST_TEST((std::chrono::steady_clock::now() - start < 5s));

    // A deadline that expires while data is already there: the real result.
    BOOST_TEST(::write(pp.wr, "abc", 3) == 3);
    std::size_t n_got = 0;
    fsys::with_timeout(rd, rd.async_read_some_at(0, asio::buffer(buf), asio::deferred), 0ms,
                       asio::bind_executor(strand, [&](error_code ec, std::size_t n) {
                         got = ec;
                         n_got = n;
                       }));
    fsys::test::run(ctx);
    ctx.restart();
    // Either the read ran before the zero deadline fired, or it was cancelled
    // first; never both, and never data lost.
    if (!got) {
      BOOST_TEST(n_got == 3u);
    } else {
      BOOST_TEST((got == asio::error::timed_out));
      char rest[3];
      BOOST_TEST(::read(pp.rd, rest, 3) == 3);
    }
    rd.release();
    ::close(pp.rd);
  }
}

BOOST_AUTO_TEST_CASE(cancelled_linked_write_fsync_is_never_reported_durable_unless_it_is) {
  // Cancelled before the kernel saw it: operation_aborted and nothing written.
  // Cancelled after both halves completed: the real, durable success.
  // In between (storm below): success always means every byte written.
  temp_dir dir;
  auto path = dir.file("linked.dat");
  auto data = pattern(4096, 35);
  asio::io_context ctx;
  fsys::file f(ctx, path, rw_create);
  {
    asio::cancellation_signal sig;
    error_code got;
    std::size_t n_got = 99;
    f.async_write_linked_fsync(0, asio::buffer(data), asio::bind_cancellation_slot(sig.slot(), [&](error_code ec, std::size_t n) {
      got = ec;
      n_got = n;
    }));
    sig.emit(asio::cancellation_type::terminal);
    fsys::test::run(ctx);
    ctx.restart();
    if (is_uring() || got == asio::error::operation_aborted) {
      // io_uring submits at the next run-loop pass, so the cancel always
      // comes first there.
      BOOST_TEST((got == asio::error::operation_aborted));
      BOOST_TEST(n_got == 0u);
      BOOST_TEST(read_file(path).empty());
    } else {
      // psync: an idle worker may have taken the op before the cancel; a
      // started syscall is not interrupted, so the result is the real one:
      // complete and durable.
      BOOST_TEST(!got);
      BOOST_TEST(n_got == data.size());
      BOOST_TEST((read_file(path) == data));
      fsys::test::write_file(path, {});  // the cases below start from an empty file
    }
  }
  {
    asio::io_context other;
    asio::cancellation_signal sig;
    error_code got = asio::error::would_block;
    std::size_t n_got = 0;
    f.async_write_linked_fsync(0, asio::buffer(data), asio::bind_cancellation_slot(sig.slot(),
        asio::bind_executor(other, [&](error_code ec, std::size_t n) {
          got = ec;
          n_got = n;
        })));
    fsys::test::run(ctx);
    ctx.restart();
    sig.emit(asio::cancellation_type::terminal);
    other.run();
    BOOST_TEST(!got);
    BOOST_TEST(n_got == data.size());
    BOOST_TEST((read_file(path) == data));
  }
  // Cancel at every step of the run loop, many times.
  std::mt19937 rng(99);
  int success = 0, aborted = 0;
  for (int round = 0; round < 300; ++round) {
    asio::cancellation_signal sig;
    error_code got;
    std::size_t n_got = 0;
    int calls = 0;
    auto buf = pattern(4096 * (1 + round % 4), 100 + static_cast<std::uint64_t>(round));
    const std::uint64_t off = static_cast<std::uint64_t>(round) * 16384;
    f.async_write_linked_fsync(off, asio::buffer(buf), asio::bind_cancellation_slot(sig.slot(), [&](error_code ec, std::size_t n) {
      got = ec;
      n_got = n;
      ++calls;
    }));
    const unsigned steps = rng() % 4;
    for (unsigned s = 0; s < steps && calls == 0; ++s) ctx.poll_one();
    if (calls == 0) sig.emit(pick_type(rng));
    fsys::test::run(ctx);
    ctx.restart();
    BOOST_TEST(calls == 1);
    if (!got) {
      ++success;
      BOOST_TEST(n_got == buf.size());
    } else {
      ++aborted;
      BOOST_TEST((got == asio::error::operation_aborted), got.message());
    }
    auto disk = read_file(path);
    if (!got) BOOST_TEST(std::equal(buf.begin(), buf.end(), disk.begin() + static_cast<std::ptrdiff_t>(off)));
  }
  BOOST_TEST_MESSAGE("linked cancel: " << success << " durable successes, " << aborted << " aborted");
  BOOST_TEST(aborted > 0);
}

BOOST_AUTO_TEST_CASE(file_cancel_from_another_thread_while_two_threads_run_the_context) {
  // fsys::file::cancel() is thread-safe (unlike a cancellation signal): a
  // third thread cancels everything at random moments while two threads run
  // the io_context. Every handler runs once and no result is misreported.
  temp_dir dir;
  auto path = dir.file("mt-cancel.dat");
  constexpr int ops = 6000;
  constexpr std::size_t block = 512;
  asio::io_context ctx(2);
  fsys::test::make_ring(ctx, {.queue_depth = 32});
  fsys::file f(ctx, path, rw_create);
  auto data = pattern(ops * block, 36);
  std::vector<std::atomic<int>> calls(ops);
  std::vector<std::size_t> got_n(ops);
  std::vector<error_code> got_ec(ops);
  std::atomic<bool> stop{false};
  auto work = asio::make_work_guard(ctx);
  std::thread t1([&] { ctx.run(); }), t2([&] { ctx.run(); });
  std::thread canceller([&] {
    std::mt19937 rng(5);
    while (!stop.load()) {
      std::this_thread::sleep_for(std::chrono::microseconds(rng() % 500));
      f.cancel();
    }
  });
  for (int i = 0; i < ops; ++i) {
    const std::size_t off = static_cast<std::size_t>(i) * block;
    auto buf = asio::buffer(data.data() + off, block);
    auto h = [&, i](error_code ec, std::size_t n) {
      got_ec[i] = ec;
      got_n[i] = n;
      calls[i].fetch_add(1);
    };
    if (i % 10 == 0)
      f.async_write_linked_fsync(off, buf, h);
    else
      f.async_write_at(off, buf, h);
  }
  work.reset();
  t1.join();
  t2.join();
  stop = true;
  canceller.join();
  auto disk = read_file(path);
  disk.resize(ops * block);
  int wrong = 0, misreported = 0, aborted = 0;
  for (int i = 0; i < ops; ++i) {
    wrong += calls[i].load() != 1;
    const std::size_t off = static_cast<std::size_t>(i) * block;
    if (std::memcmp(disk.data() + off, data.data() + off, got_n[i]) != 0) ++misreported;
    if (!got_ec[i] && got_n[i] != block) ++misreported;
    if (got_ec[i] == asio::error::operation_aborted) ++aborted;
    else if (got_ec[i]) ++misreported;
  }
  BOOST_TEST(wrong == 0);
  BOOST_TEST(misreported == 0);
  BOOST_TEST_MESSAGE("file.cancel() from a thread: " << aborted << " of " << ops << " aborted");
}
