// A program written against asio::random_access_file's documented API: every
// constructor and member, synchronous and asynchronous, through the file_base
// names. It is compiled twice from this one source, differing only in the
// `file_type` alias:
// - test_asio_dropin: `fsys::file` (linked with fsys, run on both backends);
// - asio_dropin_reference: `boost::asio::random_access_file`, in an
//   executable that defines BOOST_ASIO_HAS_IO_URING and does not link fsys's
//   compiled code (see STYLE.md: that macro changes Asio's internals).
// Both must pass: moving from Asio's file to fsys is a one-line type change.
//
// Where the two differ by design, the checks use what both satisfy:
// exceptions are caught as std::runtime_error (Asio throws
// boost::system::system_error, fsys std::system_error), and errors on a
// closed file are compared with std::errc::bad_file_descriptor (Asio reports
// asio::error::bad_descriptor, fsys fsys::errc::not_open).
#include <boost/test/unit_test.hpp>

#if defined(FSYS_DROPIN_ASIO)
#include <boost/asio/random_access_file.hpp>
#else
#include <fsys/file.hpp>
#endif

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/read_at.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/asio/write_at.hpp>

#include "support/run.hpp"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

namespace asio = boost::asio;
using boost::system::error_code;

// The one line that differs between the two programs.
#if defined(FSYS_DROPIN_ASIO)
using file_type = asio::random_access_file;
#else
using file_type = fsys::file;
#endif

#if defined(FSYS_DROPIN_ASIO)
// With Asio's file_base declared, fsys accepts Asio's own flags as well.
// Checked on declarations only: this program does not link fsys.
#include <fsys/file.hpp>
static_assert(std::is_constructible_v<fsys::file, asio::io_context&, std::string, asio::file_base::flags>);
static_assert(requires(fsys::file& f, error_code& ec) {
  f.open(std::string(), asio::random_access_file::read_write | asio::random_access_file::create);
  f.open("x", asio::file_base::read_only, ec);
});
#endif

namespace {

// The reference program needs io_uring; the fsys one falls back without it.
struct require_a_ring {
  require_a_ring() {
#if defined(FSYS_DROPIN_ASIO)
    try {
      asio::io_context probe;
      file_type f(probe);
    } catch (const std::exception& e) {
      std::printf("SKIP: Asio's io_uring backend is not available here: %s\n", e.what());
      std::fflush(stdout);
      std::_Exit(77);
    }
#endif
  }
};

class temp_dir {
 public:
  temp_dir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "fsys-dropin-XXXXXX").string();
    BOOST_REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    path_ = tmpl;
  }
  ~temp_dir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  std::string file(const char* name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

std::string text(const std::vector<char>& v, std::size_t n) { return std::string(v.data(), n); }

}  // namespace

BOOST_TEST_GLOBAL_FIXTURE(require_a_ring);

BOOST_AUTO_TEST_CASE(types_and_constructors) {
  static_assert(std::is_same_v<file_type::executor_type, asio::any_io_executor>);
  static_assert(std::is_same_v<file_type::native_handle_type, int>);
  using strand_type = asio::strand<asio::io_context::executor_type>;
  using strand_file = file_type::rebind_executor<strand_type>::other;
  static_assert(std::is_same_v<strand_file::executor_type, strand_type>);

  temp_dir dir;
  asio::io_context ctx;
  const std::string path = dir.file("ctor.dat");

  file_type a(ctx.get_executor());  // (executor)
  BOOST_TEST(!a.is_open());
  file_type b(ctx);  // (context)
  BOOST_TEST(!b.is_open());
  file_type c(ctx.get_executor(), path.c_str(), file_type::read_write | file_type::create);  // (executor, const char*)
  BOOST_TEST(c.is_open());
  file_type d(ctx, path.c_str(), file_type::read_only);  // (context, const char*)
  BOOST_TEST(d.is_open());
  file_type e(ctx.get_executor(), path, file_type::write_only);  // (executor, std::string)
  BOOST_TEST(e.is_open());
  file_type f(ctx, path, file_type::read_write);  // (context, std::string)
  BOOST_TEST(f.is_open());

  const int fd1 = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  const int fd2 = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  file_type g(ctx.get_executor(), fd1);  // (executor, native handle)
  BOOST_TEST(g.native_handle() == fd1);
  file_type h(ctx, fd2);  // (context, native handle)
  BOOST_TEST(h.native_handle() == fd2);

  // A failing constructor throws (a std::runtime_error in both libraries).
  BOOST_CHECK_THROW(file_type(ctx, dir.file("missing/x"), file_type::read_only), std::runtime_error);

  // Moves: construct, assign, and from a file on another executor type.
  file_type m(std::move(c));
  BOOST_TEST(m.is_open());
  BOOST_TEST(!c.is_open());  // NOLINT(bugprone-use-after-move)
  a = std::move(m);
  BOOST_TEST(a.is_open());
  BOOST_TEST(!m.is_open());  // NOLINT(bugprone-use-after-move)
  strand_file s(asio::make_strand(ctx), path, file_type::read_only);
  file_type from_strand(std::move(s));
  BOOST_TEST(from_strand.is_open());
  strand_file s2(asio::make_strand(ctx), path, file_type::read_only);
  b = std::move(s2);
  BOOST_TEST(b.is_open());

  // get_executor.
  BOOST_TEST((a.get_executor() == asio::any_io_executor(ctx.get_executor())));
}

BOOST_AUTO_TEST_CASE(open_assign_close_release) {
  temp_dir dir;
  asio::io_context ctx;
  const std::string path = dir.file("open.dat");

  file_type f(ctx);
  f.open(path.c_str(), file_type::write_only | file_type::create | file_type::exclusive);  // const char*
  BOOST_TEST(f.is_open());
  f.close();
  BOOST_TEST(!f.is_open());
  error_code ec;
  f.open(path.c_str(), file_type::read_write | file_type::create | file_type::exclusive, ec);  // exists
  BOOST_TEST((ec == std::errc::file_exists));
  BOOST_TEST(!f.is_open());
  f.open(path, file_type::read_write);  // std::string
  BOOST_TEST(f.is_open());
  f.open(path, file_type::read_write, ec);  // already open: refused
  BOOST_TEST(!!ec);
  BOOST_CHECK_THROW(f.open(path, file_type::read_only), std::runtime_error);
  f.close(ec);
  BOOST_TEST(!ec);
  f.close(ec);  // closing a closed file is fine
  BOOST_TEST(!ec);
  f.open(path, file_type::read_write | file_type::truncate, ec);
  BOOST_TEST(!ec);

  // release hands the descriptor back open; assign takes one.
  const int fd = f.release();
  BOOST_TEST(!f.is_open());
  BOOST_TEST(::fcntl(fd, F_GETFD) != -1);
  f.assign(fd);
  BOOST_TEST(f.native_handle() == fd);
  const int fd2 = f.release(ec);
  BOOST_TEST(!ec);
  BOOST_TEST(fd2 == fd);
  file_type g(ctx);
  g.assign(fd2, ec);
  BOOST_TEST(!ec);
  BOOST_TEST(g.is_open());

  // append: every write lands at the end.
  file_type ap(ctx, path, file_type::write_only | file_type::append);
  ap.write_some_at(0, asio::buffer("ab", 2));
  ap.write_some_at(0, asio::buffer("cd", 2));
  BOOST_TEST(g.size() == 4u);
  std::vector<char> back(4);
  BOOST_TEST(g.read_some_at(0, asio::buffer(back)) == 4u);
  BOOST_TEST(text(back, 4) == "abcd");

  // sync_all_on_write opens with O_SYNC.
  file_type sy(ctx, path, file_type::read_write | file_type::sync_all_on_write);
  BOOST_TEST((::fcntl(sy.native_handle(), F_GETFL) & O_SYNC) == O_SYNC);
}

BOOST_AUTO_TEST_CASE(size_resize_sync_cancel) {
  temp_dir dir;
  asio::io_context ctx;
  file_type f(ctx, dir.file("size.dat"), file_type::read_write | file_type::create);
  BOOST_TEST(f.size() == 0u);
  f.resize(4096);
  BOOST_TEST(f.size() == 4096u);
  error_code ec;
  f.resize(100, ec);
  BOOST_TEST(!ec);
  BOOST_TEST(f.size(ec) == 100u);
  BOOST_TEST(!ec);
  f.sync_all();
  f.sync_all(ec);
  BOOST_TEST(!ec);
  f.sync_data();
  f.sync_data(ec);
  BOOST_TEST(!ec);
  f.cancel();
  f.cancel(ec);
  BOOST_TEST(!ec);

  // On a closed file every call fails with an EBADF-equivalent error.
  file_type closed(ctx);
  BOOST_TEST(closed.size(ec) == 0u);
  BOOST_TEST((ec == std::errc::bad_file_descriptor));
  closed.resize(10, ec);
  BOOST_TEST((ec == std::errc::bad_file_descriptor));
  closed.sync_all(ec);
  BOOST_TEST((ec == std::errc::bad_file_descriptor));
  closed.sync_data(ec);
  BOOST_TEST((ec == std::errc::bad_file_descriptor));
  closed.cancel(ec);
  BOOST_TEST((ec == std::errc::bad_file_descriptor));
  std::array<char, 4> b{};
  closed.read_some_at(0, asio::buffer(b), ec);
  BOOST_TEST((ec == std::errc::bad_file_descriptor));
  closed.write_some_at(0, asio::buffer(b), ec);
  BOOST_TEST((ec == std::errc::bad_file_descriptor));
  BOOST_CHECK_THROW((void)closed.size(), std::runtime_error);
  BOOST_CHECK_THROW(closed.sync_data(), std::runtime_error);
  BOOST_CHECK_THROW((void)closed.read_some_at(0, asio::buffer(b)), std::runtime_error);
}

BOOST_AUTO_TEST_CASE(synchronous_transfers) {
  temp_dir dir;
  asio::io_context ctx;
  file_type f(ctx, dir.file("sync.dat"), file_type::read_write | file_type::create);
  const std::string msg = "the quick brown fox";
  BOOST_TEST(f.write_some_at(0, asio::buffer(msg)) == msg.size());
  error_code ec;
  std::array<asio::const_buffer, 2> two{asio::buffer("AB", 2), asio::buffer("CD", 2)};
  BOOST_TEST(f.write_some_at(0, two, ec) == 4u);
  BOOST_TEST(!ec);
  std::vector<char> back(64);
  std::size_t n = f.read_some_at(0, asio::buffer(back));
  BOOST_TEST(text(back, n) == "ABCDquick brown fox");
  n = f.read_some_at(4, asio::buffer(back), ec);
  BOOST_TEST(!ec);
  BOOST_TEST(text(back, n) == "quick brown fox");
  // At end of file: eof.
  n = f.read_some_at(f.size(), asio::buffer(back), ec);
  BOOST_TEST(n == 0u);
  BOOST_TEST((ec == asio::error::eof));
  BOOST_CHECK_THROW((void)f.read_some_at(1000, asio::buffer(back)), std::runtime_error);

  // The composed free functions.
  std::vector<char> big(200000, 'x');
  BOOST_TEST(asio::write_at(f, 0, asio::buffer(big)) == big.size());
  BOOST_TEST(asio::write_at(f, big.size(), asio::buffer("yz", 2), ec) == 2u);
  std::vector<char> all(big.size() + 2);
  BOOST_TEST(asio::read_at(f, 0, asio::buffer(all)) == all.size());
  BOOST_TEST(all.back() == 'z');
  std::vector<char> past(10);
  BOOST_TEST(asio::read_at(f, big.size(), asio::buffer(past), ec) == 2u);
  BOOST_TEST((ec == asio::error::eof));
}

BOOST_AUTO_TEST_CASE(asynchronous_transfers) {
  temp_dir dir;
  asio::io_context ctx;
  file_type f(ctx, dir.file("async.dat"), file_type::read_write | file_type::create);
  const std::string msg = "hello, asynchronous world";
  std::vector<char> back(64);

  // Callbacks.
  bool wrote = false;
  f.async_write_some_at(0, asio::buffer(msg), [&](error_code ec, std::size_t n) {
    BOOST_TEST(!ec);
    BOOST_TEST(n == msg.size());
    wrote = true;
    f.async_read_some_at(0, asio::buffer(back), [&](error_code ec2, std::size_t m) {
      BOOST_TEST(!ec2);
      BOOST_TEST(text(back, m) == msg);
    });
  });
  fsys::test::run(ctx);
  ctx.restart();
  BOOST_TEST(wrote);

  // Futures, and eof at the end of file.
  auto fut = f.async_read_some_at(msg.size(), asio::buffer(back), asio::use_future);
  fsys::test::run(ctx);
  ctx.restart();
  try {
    (void)fut.get();
    BOOST_FAIL("reading at the end of file did not report eof");
  } catch (const boost::system::system_error& e) {
    BOOST_TEST((e.code() == asio::error::eof));
  }

  // deferred, and the composed asynchronous free functions.
  std::vector<char> big(300000, 'q');
  auto op = asio::async_write_at(f, 100, asio::buffer(big), asio::deferred);
  std::size_t written = 0;
  std::move(op)([&](error_code ec, std::size_t n) {
    BOOST_TEST(!ec);
    written = n;
  });
  fsys::test::run(ctx);
  ctx.restart();
  BOOST_TEST(written == big.size());
  std::vector<char> all(big.size() + 100 + 50);
  std::size_t got = 0;
  error_code got_ec;
  asio::async_read_at(f, 0, asio::buffer(all), [&](error_code ec, std::size_t n) {
    got_ec = ec;
    got = n;
  });
  fsys::test::run(ctx);
  ctx.restart();
  BOOST_TEST((got_ec == asio::error::eof));  // asked for 50 bytes past the end
  BOOST_TEST(got == big.size() + 100);

  // Coroutines.
  std::size_t co_n = 0;
  asio::co_spawn(
      ctx,
      [&]() -> asio::awaitable<void> {
        co_await f.async_write_some_at(0, asio::buffer("HELLO", 5), asio::use_awaitable);
        co_n = co_await f.async_read_some_at(0, asio::buffer(back.data(), 5), asio::use_awaitable);
      },
      asio::detached);
  fsys::test::run(ctx);
  ctx.restart();
  BOOST_TEST(co_n == 5u);
  BOOST_TEST(text(back, 5) == "HELLO");

  // On a closed file the handler gets an EBADF-equivalent error.
  file_type closed(ctx);
  error_code closed_ec;
  closed.async_read_some_at(0, asio::buffer(back), [&](error_code ec, std::size_t) { closed_ec = ec; });
  fsys::test::run(ctx);
  BOOST_TEST((closed_ec == std::errc::bad_file_descriptor));
}

BOOST_AUTO_TEST_CASE(a_file_on_a_strand) {
  temp_dir dir;
  asio::io_context ctx;
  auto strand = asio::make_strand(ctx);
  file_type::rebind_executor<decltype(strand)>::other f(strand, dir.file("strand.dat"),
                                                        file_type::read_write | file_type::create);
  bool on_strand = false;
  f.async_write_some_at(0, asio::buffer("s", 1), [&](error_code ec, std::size_t n) {
    BOOST_TEST(!ec);
    BOOST_TEST(n == 1u);
    on_strand = strand.running_in_this_thread();
  });
  fsys::test::run(ctx);
  BOOST_TEST(on_strand);
}
