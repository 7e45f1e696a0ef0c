// fsys::stream_file: asio::stream_file's API and position semantics, every
// composed Asio operation (read, write, read_until with dynamic buffers and
// streambuf) and Beast's http::async_read over it, every completion token,
// cancellation and errors; read-ahead (correct bytes for random request
// sizes, seek discards it) and write-behind (content, close flushes it, a
// failed write is reported and never lost). Runs once per backend and with
// the io_context run by 4 threads (support/run.hpp).
#include <boost/test/unit_test.hpp>

#include "support/ring_fixture.hpp"
#include "support/run.hpp"
#include "support/temp_dir.hpp"

#include <fsys/fsys.hpp>
#include <fsys/stream_file.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>

#include <fcntl.h>
#include <sys/mount.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <functional>
#include <future>
#include <optional>
#include <random>
#include <string>
#include <vector>

// GCC 12 reports -Wmismatched-new-delete when it inlines a coroutine
// lambda's frame allocation (Asio's awaitable_frame_base::operator new,
// which uses aligned_alloc) next to its operator delete (which frees with
// the matching aligned_delete): a false positive in Asio's headers.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

namespace asio = boost::asio;
using boost::system::error_code;
using fsys::test::pattern;
using fsys::test::read_file;
using fsys::test::temp_dir;
using fsys::test::write_file;

namespace {

constexpr auto rw_create = fsys::stream_file::read_write | fsys::stream_file::create;

// The option sets every composed-operation test runs with: none (Asio's
// behaviour), read-ahead, write-behind, both (small sizes, so that requests
// straddle the read-ahead and write-behind buffers).
std::vector<fsys::stream_options> option_sets() {
  return {
      {},
      {4, 4096, 0, 4096},
      {0, 4096, 3, 5000},
      {3, 65536, 4, 65536},
  };
}

std::string describe(const fsys::stream_options& o) {
  return "read_ahead " + std::to_string(o.read_ahead_count) + "x" + std::to_string(o.read_ahead_size) +
         ", write_behind " + std::to_string(o.write_behind_count) + "x" + std::to_string(o.write_behind_size);
}

// Runs a coroutine on `ctx` with test_threads() threads; an exception it
// throws is rethrown here.
void run_co(asio::io_context& ctx, std::function<asio::awaitable<void>()> fn) {
  asio::co_spawn(ctx, std::move(fn), [](std::exception_ptr e) {
    if (e) std::rethrow_exception(e);
  });
  fsys::test::run(ctx);
  ctx.restart();
}

std::string as_string(const std::vector<std::byte>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size());
}

}  // namespace

BOOST_AUTO_TEST_CASE(sync_read_write_seek_and_position) {
  // asio::write / asio::read over write_some / read_some, with the position
  // semantics of asio::stream_file: a write moves the position, seek
  // returns the new one, reading at the end fails with eof.
  temp_dir dir;
  asio::io_context ctx;
  const auto data = pattern(300000, 1);
  for (const auto& o : option_sets()) {
    BOOST_TEST_CONTEXT(describe(o)) {
      const auto path = dir.file("sync");
      fsys::stream_file f(ctx, path.string(), rw_create | fsys::stream_file::truncate);
      f.set_options(o);
      BOOST_TEST(asio::write(f, asio::buffer(data)) == data.size());
      BOOST_TEST(f.seek(0, fsys::stream_file::seek_cur) == data.size());
      BOOST_TEST(f.size() == data.size());
      BOOST_TEST(f.seek(0, fsys::stream_file::seek_set) == 0u);
      std::vector<std::byte> back(data.size());
      BOOST_TEST(asio::read(f, asio::buffer(back)) == data.size());
      BOOST_TEST((back == data));
      error_code ec;
      char c;
      BOOST_TEST(f.read_some(asio::buffer(&c, 1), ec) == 0u);
      BOOST_TEST(ec == asio::error::eof);
      BOOST_TEST(f.seek(-10, fsys::stream_file::seek_end) == data.size() - 10);
      BOOST_TEST(f.read_some(asio::buffer(&c, 1)) == 1u);
      BOOST_TEST(static_cast<unsigned char>(c) == static_cast<unsigned char>(data[data.size() - 10]));
      BOOST_TEST(f.seek(5, fsys::stream_file::seek_cur) == data.size() - 4);
      f.seek(-1, fsys::stream_file::seek_set, ec);
      BOOST_TEST((ec == std::errc::invalid_argument));
      BOOST_TEST(f.seek(0, fsys::stream_file::seek_cur) == data.size() - 4);
      // Past the end: a write leaves a hole of zeros.
      BOOST_TEST(f.seek(10, fsys::stream_file::seek_end) == data.size() + 10);
      BOOST_TEST(f.write_some(asio::buffer("xy", 2)) == 2u);
      f.close();
      auto disk = read_file(path);
      BOOST_REQUIRE(disk.size() == data.size() + 12);
      BOOST_TEST(std::equal(data.begin(), data.end(), disk.begin()));
      for (std::size_t i = data.size(); i < data.size() + 10; ++i) BOOST_TEST(static_cast<int>(disk[i]) == 0);
      BOOST_TEST(static_cast<char>(disk[data.size() + 10]) == 'x');
    }
  }
}

BOOST_AUTO_TEST_CASE(async_write_and_async_read_every_option_set) {
  // asio::async_write from a vector and asio::async_read into a dynamic
  // buffer to the end of the file: byte-exact on a real file, position =
  // bytes transferred, eof at the end.
  temp_dir dir;
  asio::io_context ctx;
  const auto data = pattern(3 * 1024 * 1024 + 123, 2);
  for (const auto& o : option_sets()) {
    const auto path = dir.file("async");
    fsys::stream_file f(ctx, path.string(), rw_create | fsys::stream_file::truncate);
    f.set_options(o);
    std::size_t written = 0, read = 0;
    std::uint64_t pos_after_write = 0, pos_after_read = 0;
    error_code read_ec;
    std::string back;
    run_co(ctx, [&]() -> asio::awaitable<void> {
      // Several writes of odd sizes, as a stream would get them.
      std::size_t at = 0;
      std::mt19937 rng(7);
      while (at < data.size()) {
        const std::size_t k = std::min<std::size_t>(data.size() - at, 1 + rng() % 200000);
        written += co_await asio::async_write(f, asio::buffer(data.data() + at, k), asio::use_awaitable);
        at += k;
      }
      pos_after_write = f.seek(0, fsys::stream_file::seek_cur);
      f.seek(0, fsys::stream_file::seek_set);
      auto [ec, n] = co_await asio::async_read(f, asio::dynamic_buffer(back), asio::as_tuple(asio::use_awaitable));
      read_ec = ec;
      read = n;
      pos_after_read = f.seek(0, fsys::stream_file::seek_cur);
      co_await f.async_close(asio::use_awaitable);
    });
    BOOST_TEST_CONTEXT(describe(o)) {
      BOOST_TEST(written == data.size());
      BOOST_TEST(pos_after_write == data.size());
      BOOST_TEST(read_ec == asio::error::eof);
      BOOST_TEST(read == data.size());
      BOOST_TEST(pos_after_read == data.size());
      BOOST_TEST((back == as_string(data)));
      BOOST_TEST((read_file(path) == data));
    }
  }
}

BOOST_AUTO_TEST_CASE(async_read_until_with_streambuf_and_dynamic_string) {
  // Line by line, as a program reading a log or a config would: every line,
  // in order, with the position after the bytes the composed operation read.
  temp_dir dir;
  asio::io_context ctx;
  std::string text;
  for (int i = 0; i < 5000; ++i) text += "line " + std::to_string(i) + std::string(static_cast<std::size_t>(i % 97), '.') + "\n";
  write_file(dir.file("lines"), std::vector<std::byte>(reinterpret_cast<const std::byte*>(text.data()),
                                                       reinterpret_cast<const std::byte*>(text.data()) + text.size()));
  for (const auto& o : option_sets()) {
    std::vector<std::string> lines_sb, lines_str;
    error_code end_sb, end_str;
    std::uint64_t pos_end = 0;
    run_co(ctx, [&]() -> asio::awaitable<void> {
      fsys::stream_file f(ctx, dir.file("lines").string(), fsys::stream_file::read_only);
      f.set_options(o);
      asio::streambuf sb;
      for (;;) {
        auto [ec, n] = co_await asio::async_read_until(f, sb, '\n', asio::as_tuple(asio::use_awaitable));
        if (ec) {
          end_sb = ec;
          break;
        }
        std::string line(asio::buffers_begin(sb.data()), asio::buffers_begin(sb.data()) + static_cast<std::ptrdiff_t>(n));
        sb.consume(n);
        lines_sb.push_back(line);
      }
      pos_end = f.seek(0, fsys::stream_file::seek_cur);
      f.seek(0, fsys::stream_file::seek_set);
      std::string buf;
      for (;;) {
        auto [ec, n] = co_await asio::async_read_until(f, asio::dynamic_buffer(buf), "\n", asio::as_tuple(asio::use_awaitable));
        if (ec) {
          end_str = ec;
          break;
        }
        lines_str.push_back(buf.substr(0, n));
        buf.erase(0, n);
      }
    });
    BOOST_TEST_CONTEXT(describe(o)) {
      BOOST_REQUIRE(lines_sb.size() == 5000u);
      BOOST_REQUIRE(lines_str.size() == 5000u);
      std::string joined_sb, joined_str;
      for (auto& l : lines_sb) joined_sb += l;
      for (auto& l : lines_str) joined_str += l;
      BOOST_TEST((joined_sb == text));
      BOOST_TEST((joined_str == text));
      BOOST_TEST(end_sb == asio::error::eof);
      BOOST_TEST(end_str == asio::error::eof);
      BOOST_TEST(pos_end == text.size());
    }
  }
}

BOOST_AUTO_TEST_CASE(beast_parses_a_request_stored_in_a_file) {
  // Beast's http::async_read on a file holding two pipelined requests: both
  // parse, the body is exact, and the second starts where the first ended.
  temp_dir dir;
  asio::io_context ctx;
  const std::string body(100000, 'b');
  const std::string raw = "POST /upload HTTP/1.1\r\nHost: example\r\nContent-Length: " + std::to_string(body.size()) +
                          "\r\nX-Test: yes\r\n\r\n" + body + "GET /next HTTP/1.1\r\nHost: example\r\n\r\n";
  write_file(dir.file("req"), std::vector<std::byte>(reinterpret_cast<const std::byte*>(raw.data()),
                                                     reinterpret_cast<const std::byte*>(raw.data()) + raw.size()));
  namespace http = boost::beast::http;
  for (const auto& o : option_sets()) {
    http::request<http::string_body> r1, r2;
    error_code end;
    run_co(ctx, [&]() -> asio::awaitable<void> {
      fsys::stream_file f(ctx, dir.file("req").string(), fsys::stream_file::read_only);
      f.set_options(o);
      boost::beast::flat_buffer buf;
      co_await http::async_read(f, buf, r1, asio::use_awaitable);
      co_await http::async_read(f, buf, r2, asio::use_awaitable);
      http::request<http::string_body> r3;
      auto [ec, n] = co_await http::async_read(f, buf, r3, asio::as_tuple(asio::use_awaitable));
      end = ec;
    });
    BOOST_TEST_CONTEXT(describe(o)) {
      BOOST_TEST(r1.method() == http::verb::post);
      BOOST_TEST(std::string(r1.target()) == "/upload");
      BOOST_TEST(std::string(r1["X-Test"]) == "yes");
      BOOST_TEST((r1.body() == body));
      BOOST_TEST(r2.method() == http::verb::get);
      BOOST_TEST(std::string(r2.target()) == "/next");
      BOOST_TEST((end == http::error::end_of_stream));
    }
  }
}

BOOST_AUTO_TEST_CASE(every_completion_token) {
  // Callback, use_future, deferred, as_tuple and use_awaitable (which throws
  // boost::system::system_error at the end of the file).
  temp_dir dir;
  asio::io_context ctx;
  const auto data = pattern(10000, 3);
  write_file(dir.file("t"), data);
  for (const auto& o : option_sets()) {
    BOOST_TEST_CONTEXT(describe(o)) {
      fsys::stream_file f(ctx, dir.file("t").string(), fsys::stream_file::read_write);
      f.set_options(o);
      std::vector<std::byte> a(1000), b(1000), c(1000);
      std::atomic<std::size_t> cb_n{0};
      f.async_read_some(asio::buffer(a), [&](error_code ec, std::size_t n) { cb_n = ec ? 0 : n; });
      fsys::test::run(ctx);
      ctx.restart();
      BOOST_TEST(cb_n.load() > 0u);
      BOOST_TEST(std::equal(a.begin(), a.begin() + static_cast<std::ptrdiff_t>(cb_n.load()), data.begin()));
      std::size_t at = cb_n;

      auto fut = f.async_read_some(asio::buffer(b), asio::use_future);
      fsys::test::run(ctx);
      ctx.restart();
      const std::size_t fn = fut.get();
      BOOST_TEST(std::equal(b.begin(), b.begin() + static_cast<std::ptrdiff_t>(fn), data.begin() + static_cast<std::ptrdiff_t>(at)));
      at += fn;

      // deferred: nothing starts before the deferred operation is invoked.
      auto op = f.async_read_some(asio::buffer(c), asio::deferred);
      BOOST_TEST(f.seek(0, fsys::stream_file::seek_cur) == at);
      std::size_t dn = 0;
      std::move(op)([&](error_code ec, std::size_t n) { dn = ec ? 0 : n; });
      fsys::test::run(ctx);
      ctx.restart();
      BOOST_TEST(std::equal(c.begin(), c.begin() + static_cast<std::ptrdiff_t>(dn), data.begin() + static_cast<std::ptrdiff_t>(at)));
      at += dn;
      BOOST_TEST(f.seek(0, fsys::stream_file::seek_cur) == at);

      f.seek(0, fsys::stream_file::seek_end);
      bool threw = false;
      run_co(ctx, [&]() -> asio::awaitable<void> {
        try {
          co_await f.async_read_some(asio::buffer(a), asio::use_awaitable);
        } catch (const boost::system::system_error& e) {
          threw = e.code() == asio::error::eof;
        }
      });
      BOOST_TEST(threw);
    }
  }
}

BOOST_AUTO_TEST_CASE(rebind_executor_and_default_token) {
  // use_awaitable.as_default_on rebinds the file through rebind_executor.
  using awaitable_file = asio::use_awaitable_t<>::as_default_on_t<fsys::stream_file>;
  static_assert(std::is_same_v<fsys::stream_file::rebind_executor<asio::io_context::executor_type>::other,
                               fsys::basic_stream_file<asio::io_context::executor_type>>);
  temp_dir dir;
  asio::io_context ctx;
  const auto data = pattern(5000, 4);
  std::string got;
  run_co(ctx, [&]() -> asio::awaitable<void> {
    awaitable_file f(co_await asio::this_coro::executor, dir.file("d").string(), rw_create);
    co_await asio::async_write(f, asio::buffer(data));
    f.seek(0, fsys::stream_file::seek_set);
    char buf[8192];
    const std::size_t n = co_await f.async_read_some(asio::buffer(buf));
    got.assign(buf, n);
  });
  BOOST_TEST(got.size() > 0u);
  BOOST_TEST((got == as_string(data).substr(0, got.size())));
  // A file moved to a strand's executor type keeps its descriptor and position.
  fsys::stream_file f(ctx, dir.file("d").string(), fsys::stream_file::read_only);
  f.seek(100, fsys::stream_file::seek_set);
  fsys::basic_stream_file<asio::io_context::executor_type> g(ctx.get_executor());
  g = fsys::basic_stream_file<asio::io_context::executor_type>(ctx.get_executor());
  fsys::basic_stream_file<asio::any_io_executor> h(std::move(f));
  BOOST_TEST(!f.is_open());
  BOOST_TEST(h.is_open());
  BOOST_TEST(h.seek(0, fsys::stream_file::seek_cur) == 100u);
  // And back by assignment from the io_context's own executor type.
  fsys::basic_stream_file<asio::io_context::executor_type> k(ctx.get_executor());
  k.open(dir.file("d").string(), fsys::stream_file::read_only);
  k.seek(7, fsys::stream_file::seek_set);
  h = std::move(k);
  BOOST_TEST(!k.is_open());
  BOOST_TEST(h.seek(0, fsys::stream_file::seek_cur) == 7u);
  char c = 0;
  BOOST_TEST(h.read_some(asio::buffer(&c, 1)) == 1u);
  BOOST_TEST(static_cast<unsigned char>(c) == static_cast<unsigned char>(data[7]));
}

BOOST_AUTO_TEST_CASE(append_mode_writes_at_the_end) {
  // With append every write lands at the end (whatever the position), and
  // the position is then the end of what was written, as with O_APPEND.
  temp_dir dir;
  asio::io_context ctx;
  write_file(dir.file("a"), pattern(1000, 5));
  for (const auto& o : option_sets()) {
    BOOST_TEST_CONTEXT(describe(o)) {
      write_file(dir.file("a"), pattern(1000, 5));
      fsys::stream_file f(ctx, dir.file("a").string(), fsys::stream_file::write_only | fsys::stream_file::append);
      f.set_options(o);
      BOOST_TEST(f.seek(0, fsys::stream_file::seek_cur) == 0u);
      std::uint64_t pos1 = 0, pos2 = 0;
      run_co(ctx, [&]() -> asio::awaitable<void> {
        co_await asio::async_write(f, asio::buffer("first", 5), asio::use_awaitable);
        pos1 = f.seek(0, fsys::stream_file::seek_cur);
        f.seek(0, fsys::stream_file::seek_set);
        co_await asio::async_write(f, asio::buffer("second", 6), asio::use_awaitable);
        pos2 = f.seek(0, fsys::stream_file::seek_cur);
      });
      f.seek(0, fsys::stream_file::seek_set);
      asio::write(f, asio::buffer("third", 5));
      BOOST_TEST(f.seek(0, fsys::stream_file::seek_cur) == 1016u);
      f.close();
      BOOST_TEST(pos1 == 1005u);
      BOOST_TEST(pos2 == 1011u);
      auto disk = read_file(dir.file("a"));
      BOOST_REQUIRE(disk.size() == 1016u);
      BOOST_TEST((as_string(disk).substr(1000) == "firstsecondthird"));
      auto orig = pattern(1000, 5);
      BOOST_TEST(std::equal(orig.begin(), orig.end(), disk.begin()));
    }
  }
}

BOOST_AUTO_TEST_CASE(adopted_descriptor_starts_at_its_offset_and_release_leaves_it_at_the_position) {
  temp_dir dir;
  asio::io_context ctx;
  write_file(dir.file("n"), pattern(4096, 6));
  int fd = ::open(dir.file("n").c_str(), O_RDWR | O_CLOEXEC);
  BOOST_REQUIRE(fd >= 0);
  BOOST_REQUIRE(::lseek(fd, 1000, SEEK_SET) == 1000);
  fsys::stream_file f(ctx, fd);
  BOOST_TEST(f.native_handle() == fd);
  char buf[10];
  BOOST_TEST(asio::read(f, asio::buffer(buf)) == 10u);
  auto data = pattern(4096, 6);
  BOOST_TEST(std::memcmp(buf, data.data() + 1000, 10) == 0);
  const int released = f.release();
  BOOST_TEST(released == fd);
  BOOST_TEST(!f.is_open());
  BOOST_TEST(::lseek(fd, 0, SEEK_CUR) == 1010);
  ::close(fd);
}

BOOST_AUTO_TEST_CASE(errors_closed_file_and_bad_descriptor) {
  temp_dir dir;
  asio::io_context ctx;
  fsys::stream_file f(ctx);
  BOOST_TEST(!f.is_open());
  BOOST_TEST(f.native_handle() == -1);
  char c;
  error_code ec;
  f.read_some(asio::buffer(&c, 1), ec);
  BOOST_TEST((ec == std::errc::bad_file_descriptor));
  f.write_some(asio::buffer(&c, 1), ec);
  BOOST_TEST((ec == std::errc::bad_file_descriptor));
  f.seek(0, fsys::stream_file::seek_set, ec);
  BOOST_TEST((ec == std::errc::bad_file_descriptor));
  BOOST_CHECK_THROW(f.size(), std::system_error);
  f.open(dir.file("missing").string(), fsys::stream_file::read_only, ec);
  BOOST_TEST((ec == std::errc::no_such_file_or_directory));
  for (const auto& o : option_sets()) {
    BOOST_TEST_CONTEXT(describe(o)) {
      f.set_options(o);
      error_code rec, wec;
      f.async_read_some(asio::buffer(&c, 1), [&](error_code e, std::size_t) { rec = e; });
      f.async_write_some(asio::buffer(&c, 1), [&](error_code e, std::size_t) { wec = e; });
      fsys::test::run(ctx);
      ctx.restart();
      BOOST_TEST((rec == std::errc::bad_file_descriptor));
      BOOST_TEST((wec == std::errc::bad_file_descriptor));
    }
  }
  // A descriptor number that is not open: the kernel's EBADF.
  int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  BOOST_REQUIRE(fd >= 0);
  ::close(fd);
  fsys::stream_file g(ctx);
  g.assign(fd, ec);
  if (!ec) {
    error_code rec;
    g.async_read_some(asio::buffer(&c, 1), [&](error_code e, std::size_t) { rec = e; });
    fsys::test::run(ctx);
    ctx.restart();
    BOOST_TEST((rec == std::errc::bad_file_descriptor));
    g.release(ec);
  }
  fsys::stream_file h(ctx);
  h.assign(-1, ec);
  BOOST_TEST((ec == std::errc::bad_file_descriptor));
  // Writing to a read-only file: EBADF from the kernel, position unchanged.
  write_file(dir.file("ro"), pattern(10, 7));
  fsys::stream_file ro(ctx, dir.file("ro").string(), fsys::stream_file::read_only);
  error_code wec;
  ro.async_write_some(asio::buffer("x", 1), [&](error_code e, std::size_t) { wec = e; });
  fsys::test::run(ctx);
  ctx.restart();
  BOOST_TEST((wec == std::errc::bad_file_descriptor));
  BOOST_TEST(ro.seek(0, fsys::stream_file::seek_cur) == 0u);
}

BOOST_AUTO_TEST_CASE(cancellation_per_operation_and_cancel) {
  // A read of an empty pipe stays pending: per-operation cancellation and
  // cancel() complete it with operation_aborted, without and with
  // read-ahead (where the caller's read waits for a read-ahead read).
  asio::io_context ctx;
  for (const auto& o : {fsys::stream_options{}, fsys::stream_options{2, 4096, 0, 4096}}) {
    BOOST_TEST_CONTEXT(describe(o)) {
      int p[2];
      BOOST_REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
      fsys::stream_file f(ctx, p[0]);
      f.set_options(o);
      char buf[16];
      asio::cancellation_signal sig;
      std::atomic<int> calls{0};
      error_code got;
      f.async_read_some(asio::buffer(buf), asio::bind_cancellation_slot(sig.slot(), [&](error_code ec, std::size_t) {
                          got = ec;
                          ++calls;
                        }));
      // The cancellation is emitted from the io_context once it runs.
      asio::post(ctx, [&] { sig.emit(asio::cancellation_type::terminal); });
      fsys::test::run(ctx);
      ctx.restart();
      BOOST_TEST(calls.load() == 1);
      BOOST_TEST(got == asio::error::operation_aborted);

      error_code got2;
      f.async_read_some(asio::buffer(buf), [&](error_code ec, std::size_t) { got2 = ec; });
      asio::post(ctx, [&] { f.cancel(); });
      fsys::test::run(ctx);
      ctx.restart();
      BOOST_TEST(got2 == asio::error::operation_aborted);
      f.close();
      ::close(p[1]);
    }
  }
}

BOOST_AUTO_TEST_CASE(read_ahead_random_request_sizes_across_a_large_file) {
  // Random request sizes (1 byte to several read-ahead buffers) across a
  // 16 MiB file, with random seeks: every byte is the file's.
  temp_dir dir;
  asio::io_context ctx;
  const std::size_t size = 16 * 1024 * 1024 + 777;
  const auto data = pattern(size, 8);
  write_file(dir.file("big"), data);
  for (const auto& o : {fsys::stream_options{4, 65536, 0, 0}, fsys::stream_options{8, 4096, 0, 0},
                        fsys::stream_options{1, 1 << 20, 0, 0}}) {
    std::string failures;
    std::size_t total = 0;
    run_co(ctx, [&]() -> asio::awaitable<void> {
      fsys::stream_file f(ctx, dir.file("big").string(), fsys::stream_file::read_only);
      f.set_options(o);
      std::mt19937_64 rng(o.read_ahead_count * 31 + o.read_ahead_size);
      std::vector<char> buf(600000);
      std::uint64_t pos = 0;
      for (int i = 0; i < 3000 && failures.empty(); ++i) {
        if (rng() % 50 == 0) {
          pos = rng() % (size + 100);
          if (f.seek(static_cast<std::int64_t>(pos), fsys::stream_file::seek_set) != pos) failures += "seek\n";
        }
        const std::size_t want = rng() % 3 == 0 ? 1 + rng() % 100 : 1 + rng() % buf.size();
        auto [ec, n] = co_await f.async_read_some(asio::buffer(buf.data(), want), asio::as_tuple(asio::use_awaitable));
        if (pos >= size) {
          if (ec != asio::error::eof || n != 0) failures += "expected eof at " + std::to_string(pos) + "\n";
          pos = 0;
          f.seek(0, fsys::stream_file::seek_set);
          continue;
        }
        if (ec || n == 0 || n > want) {
          failures += "read at " + std::to_string(pos) + ": " + ec.message() + " n=" + std::to_string(n) + "\n";
          break;
        }
        if (std::memcmp(buf.data(), data.data() + pos, n) != 0) failures += "bytes differ at " + std::to_string(pos) + "\n";
        pos += n;
        total += n;
        if (f.seek(0, fsys::stream_file::seek_cur) != pos) failures += "position\n";
      }
    });
    BOOST_TEST_CONTEXT(describe(o)) {
      BOOST_TEST(failures.empty(), failures);
      BOOST_TEST(total > (1u << 20));  // the loop read a good part of the file
    }
  }
}

BOOST_AUTO_TEST_CASE(seek_discards_stale_read_ahead) {
  // Read-ahead holds [0, 256 KiB) after a first small read. Another handle
  // then changes bytes in that range: a read that continues at the position
  // may get read-ahead data, but after a seek (even to the same position)
  // the read must see the new bytes.
  temp_dir dir;
  asio::io_context ctx;
  write_file(dir.file("s"), pattern(1 << 20, 9));
  fsys::stream_file f(ctx, dir.file("s").string(), fsys::stream_file::read_only);
  f.set_options({4, 65536, 0, 0});
  std::string first, after;
  run_co(ctx, [&]() -> asio::awaitable<void> {
    char buf[100];
    std::size_t n = co_await asio::async_read(f, asio::buffer(buf), asio::use_awaitable);
    first.assign(buf, n);
    // The first read-ahead read has completed (the read above came from it).
    int fd = ::open(dir.file("s").c_str(), O_WRONLY | O_CLOEXEC);
    const char fresh[] = "FRESH-BYTES-FROM-ANOTHER-HANDLE";
    if (fd >= 0) {
      if (::pwrite(fd, fresh, sizeof fresh - 1, 100) != static_cast<ssize_t>(sizeof fresh - 1)) first.clear();
      ::close(fd);
    }
    f.seek(100, fsys::stream_file::seek_set);
    char buf2[sizeof fresh - 1];
    n = co_await asio::async_read(f, asio::buffer(buf2), asio::use_awaitable);
    after.assign(buf2, n);
  });
  BOOST_TEST(first.size() == 100u);
  BOOST_TEST(after == "FRESH-BYTES-FROM-ANOTHER-HANDLE");
}

BOOST_AUTO_TEST_CASE(write_behind_content_is_exact_and_close_flushes_it) {
  // Many writes of random sizes with write-behind, then the file closed at
  // once by close(), by async_close, or by the destructor: the file holds
  // exactly the bytes written, and a read through the stream before that
  // sees them too.
  temp_dir dir;
  asio::io_context ctx;
  const auto data = pattern(6 * 1024 * 1024 + 5, 10);
  for (int how = 0; how < 3; ++how) {
    for (const auto& o : {fsys::stream_options{0, 0, 4, 65536}, fsys::stream_options{2, 65536, 8, 1 << 20}}) {
      BOOST_TEST_CONTEXT("close by " << how << ", " << describe(o)) {
        const auto path = dir.file("wb" + std::to_string(how));
        error_code close_ec;
        std::string readback_failure;
        {
          fsys::stream_file f(ctx, path.string(), rw_create | fsys::stream_file::truncate);
          f.set_options(o);
          run_co(ctx, [&]() -> asio::awaitable<void> {
            std::mt19937 rng(11);
            std::size_t at = 0;
            while (at < data.size()) {
              const std::size_t k = std::min<std::size_t>(data.size() - at, 1 + rng() % 300000);
              co_await asio::async_write(f, asio::buffer(data.data() + at, k), asio::use_awaitable);
              at += k;
            }
            // The size seen through the stream counts the writes in flight.
            if (f.size() != data.size()) readback_failure = "size " + std::to_string(f.size());
            if (how == 1) {
              // A read through the stream waits for the writes to land.
              f.seek(-1000, fsys::stream_file::seek_end);
              char tail[1000];
              co_await asio::async_read(f, asio::buffer(tail), asio::use_awaitable);
              if (std::memcmp(tail, data.data() + data.size() - 1000, 1000) != 0) readback_failure = "tail differs";
              auto [ec] = co_await f.async_close(asio::as_tuple(asio::use_awaitable));
              close_ec = ec;
            }
          });
          if (how == 0) f.close(close_ec);
          // how == 2: the destructor closes the file
        }
        BOOST_TEST(!close_ec);
        BOOST_TEST(readback_failure.empty(), readback_failure);
        BOOST_TEST((read_file(path) == data));
      }
    }
  }
}

namespace {
// A tmpfs of 1 MiB in `dir`, or a skip message.
struct small_tmpfs {
  std::filesystem::path path;
  bool mounted = false;
  explicit small_tmpfs(const std::filesystem::path& dir) : path(dir / "small") {
    std::filesystem::create_directories(path);
    mounted = ::mount("tmpfs", path.c_str(), "tmpfs", 0, "size=1m") == 0;
  }
  ~small_tmpfs() {
    if (mounted) ::umount2(path.c_str(), MNT_DETACH);
  }
};
}  // namespace

BOOST_AUTO_TEST_CASE(write_behind_error_is_reported_never_lost) {
  // 2 MiB through write-behind onto a 1 MiB tmpfs: every write_some
  // completes when its write starts, so ENOSPC comes later. It must be
  // reported by the next operation, and by the next sync or close: for each
  // way of ending (async_sync, close(), async_close, a further write,
  // async_flush then close), ENOSPC is seen where promised.
  temp_dir dir;
  small_tmpfs fs(dir.path());
  if (!fs.mounted) {
    BOOST_TEST_MESSAGE("skip: cannot mount a tmpfs here: " << std::strerror(errno));
    return;
  }
  asio::io_context ctx;
  const auto data = pattern(2 * 1024 * 1024, 12);
  for (int how = 0; how < 5; ++how) {
    BOOST_TEST_CONTEXT("end " << how) {
      const auto path = fs.path / "full";
      std::filesystem::remove(path);
      fsys::stream_file f(ctx, path.string(), rw_create | fsys::stream_file::truncate);
      f.set_options({0, 0, 8, 256 * 1024});
      error_code write_ec, first, second;
      std::size_t accepted = 0;
      run_co(ctx, [&]() -> asio::awaitable<void> {
        // 8 writes of 256 KiB: all accepted at once (8 in flight), unless an
        // earlier one has already failed and the next one reports it.
        for (std::size_t at = 0; at < data.size() && !write_ec;) {
          auto [ec, n] = co_await f.async_write_some(asio::buffer(data.data() + at, data.size() - at),
                                                     asio::as_tuple(asio::use_awaitable));
          write_ec = ec;
          at += n;
          accepted += n;
        }
        if (how == 0) {
          std::tie(first) = co_await f.async_sync(asio::as_tuple(asio::use_awaitable));
        } else if (how == 2) {
          std::tie(first) = co_await f.async_close(asio::as_tuple(asio::use_awaitable));
        } else if (how == 3) {
          std::tie(first) = co_await f.async_flush(asio::as_tuple(asio::use_awaitable));
          auto [ec, n] = co_await f.async_write_some(asio::buffer("x", 1), asio::as_tuple(asio::use_awaitable));
          second = ec;  // reported once to operations: this write runs
        } else if (how == 4) {
          std::tie(first) = co_await f.async_flush(asio::as_tuple(asio::use_awaitable));
        }
      });
      if (how == 1 || how == 4) f.close(second);
      // Whatever the write calls saw, ENOSPC reached the caller, and a sync
      // or close reported it (once).
      const bool by_write = write_ec == std::errc::no_space_on_device;
      switch (how) {
        case 0:  // async_sync reports it, even if a write did
          BOOST_TEST((first == std::errc::no_space_on_device));
          break;
        case 1:  // close() reports it
          BOOST_TEST((second == std::errc::no_space_on_device));
          break;
        case 2:  // async_close reports it
          BOOST_TEST((first == std::errc::no_space_on_device));
          break;
        case 3:  // async_flush reports it unless a write already did
          BOOST_TEST((by_write || first == std::errc::no_space_on_device));
          BOOST_TEST(!second);
          break;
        case 4:  // and close() still reports it after async_flush did
          BOOST_TEST((by_write || first == std::errc::no_space_on_device));
          BOOST_TEST((second == std::errc::no_space_on_device));
          break;
      }
      if (!by_write) BOOST_TEST(!write_ec);
      BOOST_TEST(accepted <= data.size());
      error_code ignored;
      f.close(ignored);
    }
  }
}

BOOST_AUTO_TEST_CASE(write_behind_error_reported_by_the_next_write) {
  // After the writes have failed, the next write_some reports ENOSPC
  // instead of accepting bytes.
  temp_dir dir;
  small_tmpfs fs(dir.path());
  if (!fs.mounted) {
    BOOST_TEST_MESSAGE("skip: cannot mount a tmpfs here");
    return;
  }
  asio::io_context ctx;
  const auto data = pattern(2 * 1024 * 1024, 13);
  fsys::stream_file f(ctx, (fs.path / "n").string(), rw_create);
  f.set_options({0, 0, 2, 512 * 1024});
  std::vector<error_code> seen;
  run_co(ctx, [&]() -> asio::awaitable<void> {
    // 512 KiB at a time onto 1 MiB, at most 2 in flight: a call that waits
    // for a slot finds a failed write and reports it.
    for (int i = 0; i < 64; ++i) {
      const std::size_t at = static_cast<std::size_t>(i % 4) * 512 * 1024;
      auto [ec, n] = co_await f.async_write_some(asio::buffer(data.data() + at, 512 * 1024),
                                                 asio::as_tuple(asio::use_awaitable));
      seen.push_back(ec);
      if (ec) break;
    }
    // Everything that was accepted has landed or failed by now.
    co_await f.async_flush(asio::as_tuple(asio::use_awaitable));
  });
  BOOST_REQUIRE(!seen.empty());
  BOOST_TEST((seen.back() == std::errc::no_space_on_device));
  error_code ec;
  f.close(ec);
  BOOST_TEST((ec == std::errc::no_space_on_device));  // and close, once more
}

BOOST_AUTO_TEST_CASE(stream_file_outlives_its_io_context) {
  // The io_context is destroyed with a read waiting for read-ahead (of a
  // pipe: it never completes) and with write-behind writes accepted: the
  // waiting read's handler is destroyed without running, the file closes,
  // and the accepted bytes are on the file (close() writes them itself).
  temp_dir dir;
  int p[2];
  BOOST_REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
  std::optional<fsys::stream_file> r, w;
  bool ran = false;
  std::uint64_t accepted = 0;
  const auto data = pattern(1 << 20, 14);
  {
    asio::io_context ctx;
    r.emplace(ctx, p[0]);
    r->set_options({2, 4096, 0, 0});
    char buf[10];
    r->async_read_some(asio::buffer(buf), [&](error_code, std::size_t) { ran = true; });
    w.emplace(ctx, dir.file("w").string(), rw_create);
    w->set_options({0, 0, 4, 65536});
    // (Its handler may or may not run within poll(): the writes are fast.)
    asio::async_write(*w, asio::buffer(data), [](error_code, std::size_t) {});
    ctx.poll();
    accepted = w->seek(0, fsys::stream_file::seek_cur);
  }
  BOOST_TEST(!ran);
  BOOST_TEST(r->is_open());
  r.reset();
  error_code ec;
  w->close(ec);
  BOOST_TEST(!ec);
  BOOST_TEST(!w->is_open());
  auto disk = read_file(dir.file("w"));
  BOOST_TEST(accepted > 0u);
  BOOST_REQUIRE(disk.size() == accepted);
  BOOST_TEST(std::equal(disk.begin(), disk.end(), data.begin()));
  ::close(p[1]);
}
