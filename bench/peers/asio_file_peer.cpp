// Asio's own asio::random_access_file on io_uring (BOOST_ASIO_HAS_IO_URING,
// no fsys in this program), one file object per coroutine: Asio keeps one
// read queue per object and starts the next read of an object only when the
// previous one finished, so a program that wants D reads in flight opens the
// file D times. One asio::io_context{1} run on the calling thread, D
// coroutines awaiting async_read_some_at / async_write_some_at (a 4 KiB read
// inside the file is never short; the count is checked).
#include "peer_common.hpp"

#ifndef BOOST_ASIO_HAS_IO_URING
#error "asio_file_peer must be built with BOOST_ASIO_HAS_IO_URING"
#endif

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/random_access_file.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <exception>
#include <memory>
#include <string>
#include <vector>

using namespace peerbench;
namespace asio = boost::asio;

namespace {

struct shared {
  budget* b;
  bool read;
  std::uint64_t completed = 0;
};

asio::awaitable<void> worker(shared& s, asio::random_access_file& f, unsigned seed) {
  block_buffer buf;
  block_picker pick(seed);
  while (s.b->take()) {
    const std::uint64_t blk = pick.next();
    const std::uint64_t off = blk * block_size;
    if (s.read) {
      auto [ec, n] =
          co_await f.async_read_some_at(off, asio::buffer(buf.p, block_size), asio::as_tuple(asio::use_awaitable));
      if (ec) fail("asio read: " + ec.message());
      check_read(buf.p, static_cast<long>(n), blk, "asio read");
    } else {
      auto [ec, n] =
          co_await f.async_write_some_at(off, asio::buffer(buf.p, block_size), asio::as_tuple(asio::use_awaitable));
      if (ec) fail("asio write: " + ec.message());
      check_write(static_cast<long>(n), "asio write");
    }
    ++s.completed;
  }
}

}  // namespace

int main(int argc, char** argv) {
  const options o = parse(argc, argv);
  const std::string path = prepare_file(o);
  asio::io_context ctx(1);
  std::vector<std::unique_ptr<asio::random_access_file>> files;
  for (unsigned i = 0; i < o.depth; ++i)
    files.push_back(std::make_unique<asio::random_access_file>(ctx, open_or_die(path, open_flags(o))));
  budget b(o);
  shared s{&b, o.is_read()};
  b.start();
  for (unsigned i = 0; i < o.depth; ++i)
    asio::co_spawn(ctx, worker(s, *files[i], i + 1), [](std::exception_ptr e) {
      if (!e) return;
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& x) {
        fail(std::string("asio coroutine: ") + x.what());
      }
    });
  ctx.run();
  const double secs = b.measured_seconds();
  report("asio_file_per_coroutine", o, b, s.completed, secs);
  return 0;
}
