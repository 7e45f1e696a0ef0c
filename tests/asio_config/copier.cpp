// A program written the way users of asio::random_access_file write them,
// on fsys::file: a callback copy (asio::async_read_at -> asio::async_write_at,
// each handler holding shared_from_this()), a coroutine copy with
// as_tuple(use_awaitable), then synchronous write_at / read_at / size /
// resize / sync_all / close. scripts/asio_config_check builds it against
// libfsys in each Asio configuration (with and without BOOST_ASIO_HAS_IO_URING,
// with BOOST_ASIO_DISABLE_EPOLL) under AddressSanitizer and runs it thousands
// of times under IO load: a program and a library that disagree on Asio's
// types corrupt the per-thread memory both recycle, which ASan reports.
//
// Usage: fsys-asio-copier SRC DST. Writes DST (coroutine copy) and DST.cb
// (callback copy), checks both against SRC byte for byte, then checks the
// synchronous calls on DST. Exit 0 when everything held, 1 otherwise.
#include <fsys/fsys.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/read_at.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write_at.hpp>

#include <array>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <system_error>
#include <functional>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

namespace asio = boost::asio;
using file_type = fsys::file;

namespace {

int failures = 0;

void expect(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "copier: FAILED: %s\n", what);
    ++failures;
  }
}

std::vector<char> slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Callback-style copy with asio::async_read_at / async_write_at.
struct copier : std::enable_shared_from_this<copier> {
  file_type in, out;
  std::vector<char> buf = std::vector<char>(64 * 1024);
  std::uint64_t off = 0;
  std::function<void(boost::system::error_code, std::uint64_t)> done;
  copier(asio::io_context& ctx, const std::string& from, const std::string& to)
      : in(ctx, from, file_type::read_only),
        out(ctx, to, file_type::write_only | file_type::create | file_type::truncate) {}
  void step() {
    asio::async_read_at(in, off, asio::buffer(buf), [self = shared_from_this()](boost::system::error_code ec, std::size_t n) {
      if (ec && ec != asio::error::eof) return self->done(ec, self->off);
      if (n == 0) {
        self->out.sync_all();
        return self->done({}, self->off);
      }
      const bool last = ec == asio::error::eof;
      asio::async_write_at(self->out, self->off, asio::buffer(self->buf.data(), n),
                           [self, last](boost::system::error_code ec, std::size_t m) {
                             self->off += m;
                             if (ec) return self->done(ec, self->off);
                             if (last) {
                               self->out.sync_all();
                               return self->done({}, self->off);
                             }
                             self->step();
                           });
    });
  }
};

// Coroutine copy: use_awaitable with as_tuple.
asio::awaitable<std::uint64_t> co_copy(std::string from, std::string to) {
  auto ex = co_await asio::this_coro::executor;
  file_type in(ex, from, file_type::read_only);
  file_type out(ex, to, file_type::read_write | file_type::create | file_type::truncate);
  std::array<char, 16384> b;
  std::uint64_t off = 0;
  for (;;) {
    auto [ec, n] = co_await asio::async_read_at(in, off, asio::buffer(b), asio::as_tuple(asio::use_awaitable));
    if (n) co_await asio::async_write_at(out, off, asio::buffer(b.data(), n), asio::use_awaitable);
    off += n;
    if (ec == asio::error::eof) break;
    if (ec) throw boost::system::system_error(ec);
  }
  out.sync_data();
  co_return off;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: fsys-asio-copier SRC DST\n");
    return 2;
  }
  const std::string src = argv[1], dst = argv[2], dst_cb = dst + ".cb";
  const std::vector<char> original = slurp(src);

  asio::io_context ctx;
  bool cb_done = false, co_done = false;
  auto c = std::make_shared<copier>(ctx, src, dst_cb);
  c->done = [&](boost::system::error_code ec, std::uint64_t n) {
    expect(!ec, "callback copy completed without error");
    expect(n == original.size(), "callback copy copied every byte");
    cb_done = true;
  };
  c->step();
  c.reset();  // the handlers hold it now
  asio::co_spawn(ctx, co_copy(src, dst), [&](std::exception_ptr e, std::uint64_t n) {
    expect(!e, "coroutine copy completed without exception");
    expect(n == original.size(), "coroutine copy copied every byte");
    co_done = true;
  });
  ctx.run();
  expect(cb_done && co_done, "both copies completed");
  expect(slurp(dst) == original, "coroutine copy equals the source");
  expect(slurp(dst_cb) == original, "callback copy equals the source");

  // Synchronous use: patch a 4-byte header, read it back, size, resize, close.
  file_type f(ctx, dst, file_type::read_write);
  const std::uint32_t magic = 0x46535953;
  asio::write_at(f, 0, asio::buffer(&magic, sizeof magic));
  std::uint32_t back = 0;
  asio::read_at(f, 0, asio::buffer(&back, sizeof back));
  expect(back == magic, "header reads back");
  boost::system::error_code ec;
  std::array<char, 8> tail{};
  const std::size_t n = asio::read_at(f, f.size() - 4, asio::buffer(tail), ec);
  expect(ec == asio::error::eof && n == 4, "reading past the end gives 4 bytes and eof");
  const std::uint64_t half = f.size() / 2;
  f.resize(half);
  f.sync_all();
  expect(f.size() == half, "resize");
  f.close();
  f.read_some_at(0, asio::buffer(tail), ec);
  expect(std::error_code(ec) == std::errc::bad_file_descriptor, "a closed file reports a bad descriptor");
  return failures ? 1 : 0;
}
