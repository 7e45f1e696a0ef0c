// fsys::async_send_file and co_send_file: whole files, ranges past the end,
// a slow reader that fills the socket, cancellation midway, a cold file, on
// a Unix stream socket pair and on a TCP loopback pair; the same over a
// beast::tcp_stream (zero copy on its socket, with its timeout: a client
// that stops reading is timed out), over a pipe (any AsyncWriteStream: the
// double-buffered read + write path) and over TLS (asio::ssl::stream, bytes
// checked end to end by a verifying client). Runs once per backend (the
// -psync run takes the read + write path).
#include <boost/test/unit_test.hpp>

#include "support/ring_fixture.hpp"
#include "support/run.hpp"
#include "support/temp_dir.hpp"
#if FSYS_TEST_HAVE_OPENSSL
#include "support/tls_cert.hpp"
#endif

#include <fsys/fsys.hpp>
#include <fsys/send_file.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect_pipe.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/connect_pair.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/readable_pipe.hpp>
#if FSYS_TEST_HAVE_OPENSSL
#include <boost/asio/ssl.hpp>
#endif
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/writable_pipe.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/tcp_stream.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <future>
#include <optional>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

namespace asio = boost::asio;
namespace beast = boost::beast;
using asio::ip::tcp;
using boost::system::error_code;
using fsys::test::pattern;
using fsys::test::temp_dir;

namespace {

// sendfile(2) cannot pass MSG_NOSIGNAL: a program using async_send_file
// ignores SIGPIPE (see send_file.hpp).
struct ignore_sigpipe {
  ignore_sigpipe() { ::signal(SIGPIPE, SIG_IGN); }
};
BOOST_TEST_GLOBAL_FIXTURE(ignore_sigpipe);

// The sending side (an Asio socket on ctx) and the receiving side (a plain
// descriptor a reader thread reads with blocking calls).
struct unix_pair {
  asio::local::stream_protocol::socket tx;
  int rx = -1;
  explicit unix_pair(asio::io_context& ctx) : tx(ctx) {
    asio::local::stream_protocol::socket peer(ctx);
    asio::local::connect_pair(tx, peer);
    rx = peer.release();
  }
  ~unix_pair() {
    if (rx >= 0) ::close(rx);
  }
};

struct tcp_pair {
  asio::ip::tcp::socket tx;
  int rx = -1;
  explicit tcp_pair(asio::io_context& ctx, int rcvbuf = 0) : tx(ctx) {
    asio::ip::tcp::acceptor acc(ctx, {asio::ip::make_address("127.0.0.1"), 0});
    asio::ip::tcp::socket peer(ctx);
    if (rcvbuf) {
      peer.open(asio::ip::tcp::v4());
      peer.set_option(asio::socket_base::receive_buffer_size(rcvbuf));
      peer.connect(acc.local_endpoint());
      tx = acc.accept();
    } else {
      tx.connect(acc.local_endpoint());
      peer = acc.accept();
    }
    rx = peer.release();
  }
  ~tcp_pair() {
    if (rx >= 0) ::close(rx);
  }
};

// A beast::tcp_stream over a TCP loopback connection. Its socket runs on a
// strand: Beast's stream is not thread-safe, and its timer's handler may
// run beside the operation's (several threads may run ctx).
struct tcp_stream_pair {
  beast::tcp_stream tx;
  int rx = -1;
  explicit tcp_stream_pair(asio::io_context& ctx, int rcvbuf = 0) : tx(asio::make_strand(ctx)) {
    tcp_pair p(ctx, rcvbuf);
    tx.socket().assign(tcp::v4(), p.tx.release());
    rx = std::exchange(p.rx, -1);
  }
  ~tcp_stream_pair() {
    if (rx >= 0) ::close(rx);
  }
};

// A pipe: an AsyncWriteStream that is no socket (the read + write path).
struct pipe_pair {
  asio::writable_pipe tx;
  int rx = -1;
  explicit pipe_pair(asio::io_context& ctx) : tx(ctx) {
    asio::readable_pipe r(ctx);
    asio::connect_pipe(r, tx);
    rx = r.release();
  }
  ~pipe_pair() {
    if (rx >= 0) ::close(rx);
  }
};

// The socket under a pair's sending side.
template <class Tx>
auto& lowest(Tx& tx) {
  if constexpr (requires { tx.socket(); })
    return tx.socket();
  else
    return tx;
}

// Reads fd until end of stream; `chunk` bytes per read, `pause` after each.
std::vector<std::byte> read_all(int fd, std::size_t chunk = 65536,
                                std::chrono::microseconds pause = std::chrono::microseconds(0)) {
  std::vector<std::byte> out;
  std::vector<std::byte> buf(chunk);
  for (;;) {
    ssize_t r = ::read(fd, buf.data(), buf.size());
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    out.insert(out.end(), buf.begin(), buf.begin() + r);
    if (pause.count()) std::this_thread::sleep_for(pause);
  }
  return out;
}

std::vector<std::byte> slice(const std::vector<std::byte>& v, std::size_t off, std::size_t n) {
  off = std::min(off, v.size());
  n = std::min(n, v.size() - off);
  return std::vector<std::byte>(v.begin() + off, v.begin() + off + n);
}

// Sends [offset, offset + count) of the file at p through `Pair`'s socket
// while a thread reads the other end; returns (ec, sent, received bytes).
template <class Pair>
std::tuple<error_code, std::size_t, std::vector<std::byte>> send_and_read(
    asio::io_context& ctx, Pair& pair, const std::filesystem::path& p, std::uint64_t offset, std::uint64_t count,
    std::size_t read_chunk = 65536, std::chrono::microseconds pause = std::chrono::microseconds(0)) {
  fsys::file f(ctx, p, O_RDONLY);
  auto reader = std::async(std::launch::async, [&] { return read_all(pair.rx, read_chunk, pause); });
  std::optional<std::pair<error_code, std::size_t>> got;
  fsys::async_send_file(pair.tx, f, offset, count, [&](error_code ec, std::size_t n) {
    got.emplace(ec, n);
    pair.tx.close();
  });
  BOOST_CHECK(!got);  // never inside the initiating function
  fsys::test::run(ctx);
  ctx.restart();
  BOOST_REQUIRE(got);
  return {got->first, got->second, reader.get()};
}

template <class Pair>
void whole_file(std::size_t size) {
  asio::io_context ctx;
  fsys::test::make_ring(ctx);
  BOOST_REQUIRE(asio::use_service<fsys::uring_service>(ctx).active_backend() == fsys::test::expected_backend());
  temp_dir d;
  auto data = pattern(size, size);
  fsys::test::write_file(d.file("f"), data);
  Pair pair(ctx);
  auto [ec, n, got] = send_and_read(ctx, pair, d.file("f"), 0, size);
  BOOST_TEST(!ec, ec.message());
  BOOST_TEST(n == size);
  BOOST_TEST(got.size() == size);
  BOOST_TEST((got == data));
}

template <class Pair>
void past_end() {
  asio::io_context ctx;
  fsys::test::make_ring(ctx);
  temp_dir d;
  const std::size_t size = 300 * 1024 + 17;
  auto data = pattern(size, 7);
  fsys::test::write_file(d.file("f"), data);
  {
    Pair pair(ctx);
    auto [ec, n, got] = send_and_read(ctx, pair, d.file("f"), 1001, 10 * size);
    BOOST_TEST(!ec, ec.message());
    BOOST_TEST(n == size - 1001);
    BOOST_TEST((got == slice(data, 1001, size)));
  }
  {
    Pair pair(ctx);
    auto [ec, n, got] = send_and_read(ctx, pair, d.file("f"), size + 5, 100);
    BOOST_TEST(!ec, ec.message());
    BOOST_TEST(n == 0u);
    BOOST_TEST(got.empty());
  }
  {
    // A range inside the file, not page aligned.
    Pair pair(ctx);
    auto [ec, n, got] = send_and_read(ctx, pair, d.file("f"), 4095, 70000);
    BOOST_TEST(!ec, ec.message());
    BOOST_TEST(n == 70000u);
    BOOST_TEST((got == slice(data, 4095, 70000)));
  }
  {
    Pair pair(ctx);
    auto [ec, n, got] = send_and_read(ctx, pair, d.file("f"), 0, 0);
    BOOST_TEST(!ec, ec.message());
    BOOST_TEST(n == 0u);
    BOOST_TEST(got.empty());
  }
}

// Cancels the send once the socket has been full for a while, then writes a
// marker after what was sent; the reader must see exactly the first `sent`
// bytes of the file followed by the marker.
template <class Pair>
void cancel_midway() {
  asio::io_context ctx;
  fsys::test::make_ring(ctx);
  temp_dir d;
  const std::size_t size = 32 * 1024 * 1024;  // far more than the socket buffers hold
  auto data = pattern(size, 3);
  fsys::test::write_file(d.file("f"), data);
  Pair pair(ctx);
  fsys::file f(ctx, d.file("f"), O_RDONLY);
  std::promise<void> start_reading;
  auto reader = std::async(std::launch::async, [&, go = start_reading.get_future()]() mutable {
    go.wait();
    return read_all(pair.rx);
  });
  // The operation's handler and the timer that emits its signal share a
  // strand: a signal is not thread-safe, and several threads may run ctx.
  auto strand = asio::make_strand(ctx);
  asio::cancellation_signal sig;
  std::optional<std::pair<error_code, std::size_t>> got;
  const std::string marker = "--marker--";
  fsys::async_send_file(pair.tx, f, 0, size,
                        asio::bind_cancellation_slot(sig.slot(), asio::bind_executor(strand, [&](error_code ec, std::size_t n) {
                          got.emplace(ec, n);
                          asio::write(pair.tx, asio::buffer(marker));
                          pair.tx.close();
                        })));
  asio::steady_timer t(ctx, std::chrono::milliseconds(100));
  t.async_wait(asio::bind_executor(strand, [&](error_code) {
    sig.emit(asio::cancellation_type::terminal);
    start_reading.set_value();
  }));
  fsys::test::run(ctx);
  BOOST_REQUIRE(got);
  BOOST_TEST(got->first == asio::error::operation_aborted, got->first.message());
  BOOST_TEST(got->second > 0u);
  BOOST_TEST(got->second < size);
  auto all = reader.get();
  BOOST_REQUIRE(all.size() == got->second + marker.size());
  BOOST_TEST((slice(all, 0, got->second) == slice(data, 0, got->second)));
  BOOST_TEST(std::memcmp(all.data() + got->second, marker.data(), marker.size()) == 0);
}

// The file is truncated to `new_size` while the send is under way: the
// client reads the first `first` bytes of the body in small bites (the
// sender meanwhile waits on the full socket: both socket buffers are
// small), truncates the file itself, and then reads to the end of the
// stream. The operation must fail with errc::file_truncated, never report
// the range as sent; the sending side then closes the connection, so the
// client sees a body shorter than the range. What the client can assert:
// it received exactly the bytes the socket accepted (`sent`), and the bytes
// it read before the truncation are the file's. Bytes at or past
// `new_size` that were already in the socket when the file shrank may be
// zeros or stale (zero-copy sendfile shares the page-cache pages with the
// socket); bytes before `new_size` are the file's.
template <class Pair>
void truncated_midway(std::size_t first, std::size_t new_size) {
  asio::io_context ctx;
  fsys::test::make_ring(ctx);
  temp_dir d;
  const std::size_t size = 12 * 1024 * 1024;
  auto data = pattern(size, 31);
  fsys::test::write_file(d.file("f"), data);
  // Small buffers on both sides (TCP's receive buffer set before connecting,
  // as a shrunk window stalls loopback TCP): the sender stays close behind
  // the reader.
  std::optional<Pair> opt;
  if constexpr (std::is_same_v<Pair, tcp_pair> || std::is_same_v<Pair, tcp_stream_pair>)
    opt.emplace(ctx, 4096);
  else
    opt.emplace(ctx);
  Pair& pair = *opt;
  if constexpr (!std::is_same_v<Pair, pipe_pair>)
    lowest(pair.tx).set_option(asio::socket_base::send_buffer_size(4096));
  fsys::file f(ctx, d.file("f"), O_RDONLY);
  int truncate_result = -1;
  auto reader = std::async(std::launch::async, [&] {
    std::vector<std::byte> out(first);
    std::size_t got = 0;
    while (got < first) {
      ssize_t r = ::read(pair.rx, out.data() + got, std::min<std::size_t>(first - got, 4096));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) break;
      got += static_cast<std::size_t>(r);
    }
    out.resize(got);
    // The sender is blocked on the full socket, somewhere past `first`.
    truncate_result = ::truncate(d.file("f").c_str(), static_cast<off_t>(new_size));
    auto rest = read_all(pair.rx, 4096);
    out.insert(out.end(), rest.begin(), rest.end());
    return std::make_pair(got, out);
  });
  std::optional<std::pair<error_code, std::size_t>> got;
  fsys::async_send_file(pair.tx, f, 0, size, [&](error_code ec, std::size_t n) {
    got.emplace(ec, n);
    pair.tx.close();  // as a server does on any error: the client sees the body end early
  });
  fsys::test::run(ctx);
  auto [before, all] = reader.get();
  BOOST_REQUIRE(truncate_result == 0);
  BOOST_REQUIRE(got);
  BOOST_TEST(got->first == fsys::errc::file_truncated, got->first.message());
  BOOST_TEST(got->first.message() == "file was truncated during the send");
  BOOST_TEST(before == first);
  BOOST_TEST(got->second >= first);
  BOOST_TEST(got->second < size);
  BOOST_TEST(all.size() == got->second);
  // Read before the truncation: the file's bytes.
  BOOST_TEST((slice(all, 0, first) == slice(data, 0, first)));
  // Below the new size: still the file's bytes, wherever the sender was.
  BOOST_TEST((slice(all, 0, new_size) == slice(data, 0, std::min(all.size(), new_size))));
  BOOST_TEST_MESSAGE("truncated to " << new_size << " after " << first << ": " << got->second << " bytes sent");
}

}  // namespace

BOOST_AUTO_TEST_CASE(unix_whole_file) {
  whole_file<unix_pair>(1);
  whole_file<unix_pair>(4096);
  whole_file<unix_pair>(3 * 1024 * 1024 + 123);
}

BOOST_AUTO_TEST_CASE(tcp_whole_file) {
  whole_file<tcp_pair>(100);
  whole_file<tcp_pair>(5 * 1024 * 1024 + 1);
}

BOOST_AUTO_TEST_CASE(unix_past_end) { past_end<unix_pair>(); }
BOOST_AUTO_TEST_CASE(tcp_past_end) { past_end<tcp_pair>(); }

BOOST_AUTO_TEST_CASE(tcp_slow_reader_fills_the_socket) {
  asio::io_context ctx;
  fsys::test::make_ring(ctx);
  temp_dir d;
  const std::size_t size = 2 * 1024 * 1024 + 99;
  auto data = pattern(size, 11);
  fsys::test::write_file(d.file("f"), data);
  tcp_pair pair(ctx, 4096);
  pair.tx.set_option(asio::socket_base::send_buffer_size(4096));
  // The sender must have met a full socket: time the run against the reader's pauses.
  auto t0 = std::chrono::steady_clock::now();
  auto [ec, n, got] = send_and_read(ctx, pair, d.file("f"), 0, size, 16384, std::chrono::microseconds(200));
  BOOST_TEST(!ec, ec.message());
  BOOST_TEST(n == size);
  BOOST_TEST((got == data));
  BOOST_TEST_MESSAGE("slow reader: " << std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()
                                     << " s");
}

BOOST_AUTO_TEST_CASE(unix_slow_reader_fills_the_socket) {
  asio::io_context ctx;
  fsys::test::make_ring(ctx);
  temp_dir d;
  const std::size_t size = 1024 * 1024 + 5;
  auto data = pattern(size, 12);
  fsys::test::write_file(d.file("f"), data);
  unix_pair pair(ctx);
  pair.tx.set_option(asio::socket_base::send_buffer_size(4096));
  auto [ec, n, got] = send_and_read(ctx, pair, d.file("f"), 0, size, 4096, std::chrono::microseconds(100));
  BOOST_TEST(!ec, ec.message());
  BOOST_TEST(n == size);
  BOOST_TEST((got == data));
}

BOOST_AUTO_TEST_CASE(unix_cancel_midway) { cancel_midway<unix_pair>(); }
BOOST_AUTO_TEST_CASE(tcp_cancel_midway) { cancel_midway<tcp_pair>(); }

// The case: the sender is past the new end when the file shrinks.
BOOST_AUTO_TEST_CASE(tcp_truncated_behind_the_sender) { truncated_midway<tcp_pair>(4 * 1024 * 1024, 3000000); }
BOOST_AUTO_TEST_CASE(unix_truncated_behind_the_sender) { truncated_midway<unix_pair>(4 * 1024 * 1024, 3000000); }
// The new end is still ahead of the sender: the range can no longer be sent.
BOOST_AUTO_TEST_CASE(tcp_truncated_ahead_of_the_sender) { truncated_midway<tcp_pair>(1024 * 1024, 3000000); }

BOOST_AUTO_TEST_CASE(cold_file_on_disk) {
  fsys::test::temp_dir_on_disk d;
  if (!d.ok()) {
    BOOST_TEST_MESSAGE("skipped: no disk-backed directory for a cold file");
    return;
  }
  asio::io_context ctx;
  fsys::test::make_ring(ctx);
  const std::size_t size = 8 * 1024 * 1024 + 3;
  auto data = pattern(size, 21);
  fsys::test::write_file(d.file("cold"), data);
  int fd = ::open(d.file("cold").c_str(), O_RDONLY);
  BOOST_REQUIRE(fd >= 0);
  BOOST_REQUIRE(::fdatasync(fd) == 0);
  BOOST_REQUIRE(::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) == 0);
  int cached = fsys::detail::send_file_range_cached(fd, 0, size);
  ::close(fd);
  if (cached >= 0) BOOST_TEST(cached == 0);  // the pages really were dropped
  tcp_pair pair(ctx);
  auto [ec, n, got] = send_and_read(ctx, pair, d.file("cold"), 0, size);
  BOOST_TEST(!ec, ec.message());
  BOOST_TEST(n == size);
  BOOST_TEST((got == data));
}

// The page-by-page check used for ranges of more than one chunk: pages
// dropped from the cache are reported absent, pages read back present; the
// mapping follows a range that moves past it; pages past the end of the
// file are absent.
BOOST_AUTO_TEST_CASE(residency_map_reports_uptodate_pages) {
  fsys::test::temp_dir_on_disk d;
  if (!d.ok()) {
    BOOST_TEST_MESSAGE("skipped: no disk-backed directory for a cold file");
    return;
  }
  const std::size_t size = 1024 * 1024 + 5;
  fsys::test::write_file(d.file("f"), pattern(size, 5));
  int fd = ::open(d.file("f").c_str(), O_RDONLY);
  BOOST_REQUIRE(fd >= 0);
  BOOST_REQUIRE(::fdatasync(fd) == 0);
  const std::uint64_t chunk = fsys::send_file_zero_copy_chunk;
  auto read_range = [&](std::uint64_t off, std::size_t n) {
    std::vector<char> b(n);
    BOOST_REQUIRE(::pread(fd, b.data(), n, static_cast<off_t>(off)) == static_cast<ssize_t>(n));
  };
  fsys::detail::send_file_residency_map map;
  read_range(0, size);
  BOOST_TEST(map.uptodate(fd, 0, chunk, chunk + 100) == 1);
  BOOST_REQUIRE(::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) == 0);
  BOOST_TEST(map.uptodate(fd, 0, chunk, chunk + 100) == 0);
  // Past the first mapping ([0, chunk + 100) rounded to pages): it moves.
  BOOST_TEST(map.uptodate(fd, 2 * chunk, chunk, size) == 0);
  read_range(2 * chunk, chunk);
  BOOST_TEST(map.uptodate(fd, 2 * chunk, chunk, size) == 1);
  // The last chunk reaches past the end of the file: its last pages do not exist.
  read_range(size - 5, 5);
  BOOST_TEST(map.uptodate(fd, 4 * chunk, chunk, 5 * chunk) == 0);
  BOOST_TEST(map.uptodate(fd, 4 * chunk, 5, 5 * chunk) == 1);
  // Moved out, the object releases its mapping.
  fsys::detail::send_file_residency_map moved(std::move(map));
  BOOST_TEST(moved.uptodate(fd, 4 * chunk, 5, 5 * chunk) == 1);
  ::close(fd);
}

BOOST_AUTO_TEST_CASE(co_send_file_returns_the_count) {
  asio::io_context ctx;
  fsys::test::make_ring(ctx);
  temp_dir d;
  const std::size_t size = 200000;
  auto data = pattern(size, 5);
  fsys::test::write_file(d.file("f"), data);
  unix_pair pair(ctx);
  fsys::file f(ctx, d.file("f"), O_RDONLY);
  auto reader = std::async(std::launch::async, [&] { return read_all(pair.rx); });
  std::size_t n = 0;
  asio::co_spawn(
      ctx,
      [&]() -> asio::awaitable<void> {
        n = co_await fsys::co_send_file(pair.tx, f, 10, size);
        pair.tx.close();
      },
      asio::detached);
  fsys::test::run(ctx);
  BOOST_TEST(n == size - 10);
  BOOST_TEST((reader.get() == slice(data, 10, size)));
}

BOOST_AUTO_TEST_CASE(closed_file_reports_not_open) {
  asio::io_context ctx;
  fsys::test::make_ring(ctx);
  unix_pair pair(ctx);
  fsys::file f(ctx);
  std::optional<std::pair<error_code, std::size_t>> got;
  fsys::async_send_file(pair.tx, f, 0, 100, [&](error_code ec, std::size_t n) { got.emplace(ec, n); });
  fsys::test::run(ctx);
  BOOST_REQUIRE(got);
  BOOST_TEST(got->first == fsys::errc::not_open, got->first.message());
  BOOST_TEST(got->second == 0u);
}

BOOST_AUTO_TEST_CASE(peer_gone_reports_the_socket_error) {
  asio::io_context ctx;
  fsys::test::make_ring(ctx);
  temp_dir d;
  auto data = pattern(4 * 1024 * 1024, 9);
  fsys::test::write_file(d.file("f"), data);
  unix_pair pair(ctx);
  ::close(pair.rx);
  pair.rx = -1;
  fsys::file f(ctx, d.file("f"), O_RDONLY);
  std::optional<std::pair<error_code, std::size_t>> got;
  fsys::async_send_file(pair.tx, f, 0, data.size(), [&](error_code ec, std::size_t n) { got.emplace(ec, n); });
  fsys::test::run(ctx);
  BOOST_REQUIRE(got);
  BOOST_TEST(got->first == boost::system::errc::broken_pipe, got->first.message());
}

BOOST_AUTO_TEST_CASE(file_outliving_its_io_context_reports_service_shut_down) {
  // The file's io_context is destroyed; the socket's lives. Nothing of the
  // file's service may be used: the send fails with service_shut_down,
  // through the socket's context, and sends nothing.
  temp_dir d;
  auto data = pattern(64 * 1024, 26);
  fsys::test::write_file(d.file("f"), data);
  auto file_ctx = std::make_unique<asio::io_context>();
  fsys::test::make_ring(*file_ctx);
  fsys::file f(*file_ctx, d.file("f"), O_RDONLY);
  file_ctx.reset();
  asio::io_context ctx;
  fsys::test::make_ring(ctx);
  unix_pair pair(ctx);
  std::optional<std::pair<error_code, std::size_t>> got;
  fsys::async_send_file(pair.tx, f, 0, data.size(), [&](error_code ec, std::size_t n) {
    got.emplace(ec, n);
    pair.tx.close();
  });
  BOOST_CHECK(!got);  // never inside the initiating function
  fsys::test::run(ctx);
  BOOST_REQUIRE(got);
  BOOST_TEST(got->first == fsys::errc::service_shut_down, got->first.message());
  BOOST_TEST(got->second == 0u);
  BOOST_TEST(read_all(pair.rx).empty());
  const int fd = f.native_handle();
  f.close();
  BOOST_TEST((::fcntl(fd, F_GETFD) == -1 && errno == EBADF));
}

// beast::tcp_stream: zero copy on its socket (io_uring backend), the read +
// write path through the stream (psync).
BOOST_AUTO_TEST_CASE(tcp_stream_whole_file) {
  whole_file<tcp_stream_pair>(100);
  whole_file<tcp_stream_pair>(5 * 1024 * 1024 + 1);
}
BOOST_AUTO_TEST_CASE(tcp_stream_past_end) { past_end<tcp_stream_pair>(); }
BOOST_AUTO_TEST_CASE(tcp_stream_cancel_midway) { cancel_midway<tcp_stream_pair>(); }
BOOST_AUTO_TEST_CASE(tcp_stream_truncated_behind_the_sender) {
  truncated_midway<tcp_stream_pair>(4 * 1024 * 1024, 3000000);
}

// Any AsyncWriteStream (a pipe): the double-buffered read + write path.
BOOST_AUTO_TEST_CASE(pipe_whole_file) {
  whole_file<pipe_pair>(1);
  whole_file<pipe_pair>(65536);
  whole_file<pipe_pair>(3 * 1024 * 1024 + 123);
}
BOOST_AUTO_TEST_CASE(pipe_past_end) { past_end<pipe_pair>(); }
BOOST_AUTO_TEST_CASE(pipe_cancel_midway) { cancel_midway<pipe_pair>(); }
BOOST_AUTO_TEST_CASE(pipe_truncated_behind_the_sender) { truncated_midway<pipe_pair>(4 * 1024 * 1024, 3000000); }
BOOST_AUTO_TEST_CASE(pipe_truncated_ahead_of_the_sender) { truncated_midway<pipe_pair>(1024 * 1024, 3000000); }

namespace {

// Sends `size` bytes to a tcp_stream whose peer reads `read_first` bytes
// (slowly, `pause` per 4 KiB) and then stops reading, with the stream's
// timeout set to `timeout`; returns the completion and the time it took.
struct timed_out_send {
  error_code ec;
  std::size_t sent = 0;
  double seconds = 0;
  bool socket_open = true;
};
timed_out_send send_to_a_stalling_client(std::size_t size, std::size_t read_first, std::chrono::microseconds pause,
                                         std::chrono::milliseconds timeout) {
  asio::io_context ctx;
  fsys::test::make_ring(ctx);
  temp_dir d;
  fsys::test::write_file(d.file("f"), pattern(size, 41));
  tcp_stream_pair pair(ctx, 4096);
  pair.tx.socket().set_option(asio::socket_base::send_buffer_size(4096));
  fsys::file f(ctx, d.file("f"), O_RDONLY);
  std::promise<void> done;
  auto reader = std::async(std::launch::async, [&, finished = done.get_future()]() mutable {
    std::vector<std::byte> b(4096);
    std::size_t got = 0;
    while (got < read_first) {
      ssize_t r = ::read(pair.rx, b.data(), std::min(b.size(), read_first - got));
      if (r <= 0) break;
      got += static_cast<std::size_t>(r);
      std::this_thread::sleep_for(pause);
    }
    finished.wait();  // then reads nothing more until the sender is done
    return got;
  });
  timed_out_send out;
  const auto t0 = std::chrono::steady_clock::now();
  pair.tx.expires_after(timeout);
  fsys::async_send_file(pair.tx, f, 0, size, [&](error_code ec, std::size_t n) {
    out.ec = ec;
    out.sent = n;
    out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    out.socket_open = pair.tx.socket().is_open();
    done.set_value();
  });
  fsys::test::run(ctx);
  reader.get();
  return out;
}

}  // namespace

// The case: a client that stops reading. Beast's own writes end with
// error::timeout once the stream's expiry passes; so does async_send_file,
// and the stream has closed its socket, as Beast does on a timeout.
BOOST_AUTO_TEST_CASE(tcp_stream_client_that_stops_reading_is_timed_out) {
  const std::size_t size = 16 * 1024 * 1024;
  auto r = send_to_a_stalling_client(size, 0, std::chrono::microseconds(0), std::chrono::milliseconds(300));
  BOOST_TEST(r.ec == error_code(beast::error::timeout), r.ec.message());
  BOOST_TEST(r.sent < size);
  BOOST_TEST(!r.socket_open);
  BOOST_TEST(r.seconds >= 0.29);
  BOOST_TEST(r.seconds < 5.0);
  BOOST_TEST_MESSAGE("timed out after " << r.seconds << " s, " << r.sent << " bytes sent");
}

// The expiry is a deadline for the whole operation, as for Beast's own
// writes: a client that keeps reading, too slowly to take the body before
// it, is cut off at the deadline too.
BOOST_AUTO_TEST_CASE(tcp_stream_deadline_passes_while_the_client_reads_slowly) {
  const std::size_t size = 16 * 1024 * 1024;
  auto r = send_to_a_stalling_client(size, 4 * 1024 * 1024, std::chrono::microseconds(500),
                                     std::chrono::milliseconds(400));
  BOOST_TEST(r.ec == error_code(beast::error::timeout), r.ec.message());
  BOOST_TEST(r.sent > 0u);
  BOOST_TEST(r.sent < size);
  BOOST_TEST(r.seconds >= 0.39);
  BOOST_TEST(r.seconds < 5.0);
}

// A timeout far off changes nothing: the whole body, byte for byte.
BOOST_AUTO_TEST_CASE(tcp_stream_with_a_distant_timeout_sends_everything) {
  asio::io_context ctx;
  fsys::test::make_ring(ctx);
  temp_dir d;
  const std::size_t size = 2 * 1024 * 1024 + 77;
  auto data = pattern(size, 43);
  fsys::test::write_file(d.file("f"), data);
  tcp_stream_pair pair(ctx, 4096);
  pair.tx.socket().set_option(asio::socket_base::send_buffer_size(4096));
  pair.tx.expires_after(std::chrono::seconds(60));
  auto [ec, n, got] = send_and_read(ctx, pair, d.file("f"), 0, size, 16384, std::chrono::microseconds(100));
  BOOST_TEST(!ec, ec.message());
  BOOST_TEST(n == size);
  BOOST_TEST((got == data));
}

#if FSYS_TEST_HAVE_OPENSSL
namespace {

const fsys::test::tls_identity& tls_id() {
  static const fsys::test::tls_identity id = fsys::test::make_self_signed_cert();
  return id;
}

asio::ssl::context tls_server_context() {
  asio::ssl::context c(asio::ssl::context::tls_server);
  c.use_certificate_chain(asio::buffer(tls_id().cert_pem));
  c.use_private_key(asio::buffer(tls_id().key_pem), asio::ssl::context::pem);
  return c;
}

// A TLS client on fd (its own io_context, blocking calls) that verifies the
// server's certificate against the test's, reads until the server's
// close_notify and answers it. Returns the bytes and how the reading ended.
struct tls_received {
  std::vector<std::byte> bytes;
  error_code end;
};
tls_received tls_read_all(int fd, std::shared_future<void> stop_before_reading = {}) {
  asio::io_context cctx;
  asio::ssl::context c(asio::ssl::context::tls_client);
  c.add_certificate_authority(asio::buffer(tls_id().cert_pem));
  c.set_verify_mode(asio::ssl::verify_peer);
  asio::ssl::stream<tcp::socket> s(tcp::socket(cctx, tcp::v4(), fd), c);
  s.set_verify_callback(asio::ssl::host_name_verification("127.0.0.1"));
  tls_received out;
  s.handshake(asio::ssl::stream_base::client, out.end);
  if (out.end) return out;
  if (stop_before_reading.valid()) {
    stop_before_reading.wait();
    return out;
  }
  std::vector<std::byte> buf(65536);
  for (;;) {
    std::size_t n = s.read_some(asio::buffer(buf), out.end);
    out.bytes.insert(out.bytes.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(n));
    if (out.end) break;
  }
  if (out.end == asio::error::eof) {
    error_code ignored;
    s.shutdown(ignored);
  }
  return out;
}

}  // namespace

// TLS: the server's asio::ssl::stream gets the range through the read +
// write path; the client checks the certificate and every byte, and that
// the stream ended with the server's close_notify (not a truncation).
BOOST_AUTO_TEST_CASE(tls_bytes_end_to_end) {
  asio::io_context ctx;
  fsys::test::make_ring(ctx);
  auto sctx = tls_server_context();
  temp_dir d;
  const std::size_t size = 3 * 1024 * 1024 + 123;
  auto data = pattern(size, 47);
  fsys::test::write_file(d.file("f"), data);
  fsys::file f(ctx, d.file("f"), O_RDONLY);
  const std::pair<std::uint64_t, std::uint64_t> ranges[] = {{0, size}, {4095, 70000}, {size - 10, 100}, {0, 1}};
  for (const auto& range : ranges) {
    const std::uint64_t off = range.first, count = range.second;  // (lambdas capture no structured binding in C++20)
    tcp_pair p(ctx);
    asio::ssl::stream<tcp::socket> tx(tcp::socket(asio::make_strand(ctx), tcp::v4(), p.tx.release()), sctx);
    auto client = std::async(std::launch::async, [fd = std::exchange(p.rx, -1)] { return tls_read_all(fd); });
    std::optional<std::pair<error_code, std::size_t>> got;
    error_code handshake_ec;
    tx.async_handshake(asio::ssl::stream_base::server, [&](error_code ec) {
      handshake_ec = ec;
      if (ec) return;
      fsys::async_send_file(tx, f, off, count, [&](error_code ec, std::size_t n) {
        got.emplace(ec, n);
        tx.async_shutdown([&](error_code) { tx.lowest_layer().close(); });
      });
    });
    fsys::test::run(ctx);
    ctx.restart();
    auto r = client.get();
    BOOST_REQUIRE_MESSAGE(!handshake_ec, handshake_ec.message());
    BOOST_REQUIRE(got);
    const auto expected = slice(data, static_cast<std::size_t>(off), static_cast<std::size_t>(count));
    BOOST_TEST(!got->first, got->first.message());
    BOOST_TEST(got->second == expected.size());
    BOOST_TEST(r.end == asio::error::eof, r.end.message());
    BOOST_TEST(r.bytes.size() == expected.size());
    BOOST_TEST((r.bytes == expected));
  }
}

// TLS over a beast::tcp_stream: the tcp_stream's timeout ends the send to a
// client that stops reading, as it ends the stream's own writes.
BOOST_AUTO_TEST_CASE(tls_over_tcp_stream_client_that_stops_reading_is_timed_out) {
  asio::io_context ctx;
  fsys::test::make_ring(ctx);
  auto sctx = tls_server_context();
  temp_dir d;
  const std::size_t size = 16 * 1024 * 1024;
  fsys::test::write_file(d.file("f"), pattern(size, 53));
  fsys::file f(ctx, d.file("f"), O_RDONLY);
  tcp_stream_pair p(ctx, 4096);
  p.tx.socket().set_option(asio::socket_base::send_buffer_size(4096));
  asio::ssl::stream<beast::tcp_stream> tx(std::move(p.tx), sctx);
  std::promise<void> done;
  std::shared_future<void> finished = done.get_future().share();
  auto client = std::async(std::launch::async, [fd = std::exchange(p.rx, -1), finished] { return tls_read_all(fd, finished); });
  std::optional<std::pair<error_code, std::size_t>> got;
  double seconds = 0;
  error_code handshake_ec;
  tx.async_handshake(asio::ssl::stream_base::server, [&](error_code ec) {
    handshake_ec = ec;
    if (ec) return done.set_value();
    const auto t0 = std::chrono::steady_clock::now();
    tx.next_layer().expires_after(std::chrono::milliseconds(300));
    fsys::async_send_file(tx, f, 0, size, [&, t0](error_code ec, std::size_t n) {
      got.emplace(ec, n);
      seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      done.set_value();
    });
  });
  fsys::test::run(ctx);
  auto r = client.get();
  BOOST_REQUIRE_MESSAGE(!handshake_ec, handshake_ec.message());
  BOOST_TEST(!r.end, r.end.message());  // the client's handshake
  BOOST_REQUIRE(got);
  BOOST_TEST(got->first == error_code(beast::error::timeout), got->first.message());
  BOOST_TEST(got->second < size);
  BOOST_TEST(seconds >= 0.29);
  BOOST_TEST(seconds < 5.0);
}
#endif  // FSYS_TEST_HAVE_OPENSSL
