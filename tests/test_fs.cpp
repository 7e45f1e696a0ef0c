// File-system operations: open/close/stat/allocate/resize/sync_range/advise on
// basic_file, the free functions (stat, rename, remove, directories, links,
// sync_directory, replace_file), their errors, cancellation, the per-op
// fallback to the psync path, and crash safety of async_replace_file.
// Runs once per backend.
#include <boost/test/unit_test.hpp>

#include "fuse/faultfs_mount.hpp"
#include "support/ring_fixture.hpp"
#include "support/run.hpp"
#include "support/temp_dir.hpp"

#include <fsys/fsys.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>

#include <dirent.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/openat2.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <algorithm>
#include <fstream>
#include <functional>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace asio = boost::asio;
namespace fs = std::filesystem;
using boost::system::error_code;
using fsys::test::pattern;
using fsys::test::read_file;
using fsys::test::temp_dir;

namespace {

constexpr int rw_create = O_RDWR | O_CREAT;

// Runs the context until it has nothing left to do, with
// fsys::test::run()'s threads, then makes it reusable.
void drain(asio::io_context& ctx) {
  fsys::test::run(ctx);
  ctx.restart();
}

// Starts an operation with a callback that records its error code, runs the
// context, and returns the error code.
template <class Start>
error_code run_ec(asio::io_context& ctx, Start&& start) {
  std::optional<error_code> got;
  start([&](error_code ec) { got = ec; });
  drain(ctx);
  BOOST_REQUIRE(got.has_value());
  return *got;
}

std::string text_of(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void put(const fs::path& p, const std::string& s) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << s;
}

std::size_t open_fd_count() {
  std::size_t n = 0;
  for ([[maybe_unused]] auto& e : fs::directory_iterator("/proc/self/fd")) ++n;
  return n;
}

fsys::file_status stat_path(asio::io_context& ctx, fsys::path_view p, error_code& ec) {
  fsys::file_status st;
  bool done = false;
  fsys::async_stat(ctx, p, [&](error_code e, fsys::file_status s) {
    ec = e;
    st = s;
    done = true;
  });
  drain(ctx);
  BOOST_REQUIRE(done);
  return st;
}

fsys::file_status stat_file(asio::io_context& ctx, fsys::file& f, error_code& ec) {
  fsys::file_status st;
  bool done = false;
  f.async_stat([&](error_code e, fsys::file_status s) {
    ec = e;
    st = s;
    done = true;
  });
  drain(ctx);
  BOOST_REQUIRE(done);
  return st;
}

bool invalid_argument(const error_code& ec) { return ec == boost::system::errc::invalid_argument; }

// FSYS_INLINE_FAST_PATH=0 turns the inline fast path off whatever the options say.
bool fast_path_disabled_by_env() {
  const char* v = std::getenv("FSYS_INLINE_FAST_PATH");
  return v && std::strcmp(v, "0") == 0;
}

// For the cases about the inline fast path: true (and says so) when the
// environment turns it off.
bool skipped_without_fast_path() {
  if (!fast_path_disabled_by_env()) return false;
  BOOST_TEST_MESSAGE("skipped: FSYS_INLINE_FAST_PATH=0 turns the inline fast path off");
  return true;
}

}  // namespace

BOOST_AUTO_TEST_CASE(backend_is_the_expected_one) {
  asio::io_context ctx;
  auto& svc = fsys::test::make_ring(ctx);
  BOOST_TEST((svc.active_backend() == fsys::test::expected_backend()));
  const auto& f = fsys::probe_features();
  BOOST_TEST_MESSAGE("fs ops through the ring: " << f.fs_ops_through_ring());
  if (svc.active_backend() == fsys::backend::io_uring) {
    // Every kernel with io_uring has OPENAT/STATX/CLOSE (5.6); the list names them.
    BOOST_TEST(f.op_openat);
    BOOST_TEST(f.fs_ops_through_ring().find("open") != std::string::npos);
    BOOST_TEST(f.summary().find("file-system operations through the ring") != std::string::npos);
  } else {
    BOOST_TEST(f.fs_ops_through_ring().empty());
  }
}

BOOST_AUTO_TEST_CASE(open_write_stat_close_round_trip) {
  temp_dir dir;
  asio::io_context ctx;
  fsys::test::make_ring(ctx);
  fsys::file f(ctx);
  BOOST_TEST(!f.is_open());
  auto t0 = std::chrono::system_clock::now() - std::chrono::seconds(2);
  BOOST_TEST(!run_ec(ctx, [&](auto h) { f.async_open(dir.file("a"), rw_create | O_EXCL, 0640, h); }));
  BOOST_REQUIRE(f.is_open());
  BOOST_TEST((::fcntl(f.native_handle(), F_GETFD) & FD_CLOEXEC) != 0);  // O_CLOEXEC always added
  auto data = pattern(10000, 3);
  auto n = f.async_write_at(0, asio::buffer(data), asio::use_future);
  drain(ctx);
  BOOST_TEST(n.get() == data.size());

  error_code ec;
  auto st = stat_file(ctx, f, ec);
  BOOST_TEST(!ec);
  BOOST_TEST(st.size == 10000u);
  BOOST_TEST(S_ISREG(st.mode));
  BOOST_TEST((st.mode & 0777) == (0640u & ~0022u & 0777u));
  BOOST_TEST(st.nlink == 1u);
  BOOST_TEST(st.block_size > 0u);
  BOOST_TEST(st.allocated >= 10000u);
  BOOST_TEST((st.modified > t0));
  BOOST_TEST((st.modified < std::chrono::system_clock::now() + std::chrono::seconds(2)));

  // The free stat agrees, and both agree with stat(2).
  auto st2 = stat_path(ctx, dir.file("a"), ec);
  BOOST_TEST(!ec);
  struct stat sb;
  BOOST_REQUIRE(::stat(dir.file("a").c_str(), &sb) == 0);
  BOOST_TEST(st2.size == static_cast<std::uint64_t>(sb.st_size));
  BOOST_TEST(st2.inode == static_cast<std::uint64_t>(sb.st_ino));
  BOOST_TEST(st.inode == st2.inode);

  const int fd = f.native_handle();
  BOOST_TEST(!run_ec(ctx, [&](auto h) { f.async_close(h); }));
  BOOST_TEST(!f.is_open());
  BOOST_TEST(::fcntl(fd, F_GETFD) == -1);  // the descriptor is gone
  BOOST_TEST((read_file(dir.file("a")) == data));

  // Reopen read-only: the file object is reusable after async_close.
  BOOST_TEST(!run_ec(ctx, [&](auto h) { f.async_open(dir.file("a"), O_RDONLY, 0, h); }));
  BOOST_TEST(f.is_open());
  BOOST_TEST(f.size() == 10000u);
}

BOOST_AUTO_TEST_CASE(open_errors_change_nothing) {
  temp_dir dir;
  asio::io_context ctx;
  fsys::test::make_ring(ctx);
  fsys::file f(ctx);
  // Missing file.
  error_code ec = run_ec(ctx, [&](auto h) { f.async_open(dir.file("missing"), O_RDONLY, 0, h); });
  BOOST_TEST((ec == boost::system::errc::no_such_file_or_directory));
  BOOST_TEST(!f.is_open());
  // Empty path, embedded NUL, unknown flags: refused, nothing created.
  ec = run_ec(ctx, [&](auto h) { f.async_open("", rw_create, 0644, h); });
  BOOST_TEST(invalid_argument(ec));
  std::string nul = dir.file("x").native() + std::string(1, '\0') + "y";
  ec = run_ec(ctx, [&](auto h) { f.async_open(fs::path(nul), rw_create, 0644, h); });
  BOOST_TEST(invalid_argument(ec));
  BOOST_TEST(!fs::exists(dir.file("x")));
  ec = run_ec(ctx, [&](auto h) { f.async_open(dir.file("x"), rw_create | 0x40000000, 0644, h); });
  BOOST_TEST(invalid_argument(ec));
  BOOST_TEST(!fs::exists(dir.file("x")));
  ec = run_ec(ctx, [&](auto h) { f.async_open(AT_FDCWD, dir.file("x"), fsys::open_how{rw_create, 0644, 1u << 20}, h); });
  BOOST_TEST(invalid_argument(ec));
  BOOST_TEST(!fs::exists(dir.file("x")));
  BOOST_TEST(!f.is_open());

  // async_open on an open file: already_open (== device_or_resource_busy),
  // the open file is untouched.
  BOOST_TEST(!run_ec(ctx, [&](auto h) { f.async_open(dir.file("a"), rw_create, 0644, h); }));
  const int fd = f.native_handle();
  ec = run_ec(ctx, [&](auto h) { f.async_open(dir.file("b"), rw_create, 0644, h); });
  BOOST_TEST((ec == fsys::errc::already_open));
  BOOST_TEST((ec == std::errc::device_or_resource_busy));
  BOOST_TEST(f.native_handle() == fd);
  BOOST_TEST(!fs::exists(dir.file("b")));

  // Two opens started back to back: the second is refused while the first is pending.
  fsys::file g(ctx);
  std::optional<error_code> e1, e2;
  g.async_open(dir.file("a"), O_RDONLY, 0, [&](error_code e) { e1 = e; });
  g.async_open(dir.file("a"), O_RDONLY, 0, [&](error_code e) { e2 = e; });
  drain(ctx);
  BOOST_TEST(!*e1);
  BOOST_TEST((*e2 == fsys::errc::already_open));
  BOOST_TEST(g.is_open());

  // Operations on a closed file.
  fsys::file closed(ctx);
  ec = run_ec(ctx, [&](auto h) { closed.async_close(h); });
  BOOST_TEST((ec == fsys::errc::not_open));
  ec = run_ec(ctx, [&](auto h) { closed.async_resize(0, h); });
  BOOST_TEST((ec == fsys::errc::not_open));
  ec = run_ec(ctx, [&](auto h) { closed.async_allocate(0, 4096, 0, h); });
  BOOST_TEST((ec == fsys::errc::not_open));
  stat_file(ctx, closed, ec);
  BOOST_TEST((ec == fsys::errc::not_open));
  // A failed open leaves the file closed and reusable.
  fsys::file h2(ctx);
  ec = run_ec(ctx, [&](auto h) { h2.async_open(dir.file("missing"), O_RDONLY, 0, h); });
  BOOST_TEST(!!ec);
  ec = run_ec(ctx, [&](auto h) { h2.async_resize(0, h); });
  BOOST_TEST((ec == fsys::errc::not_open));
  BOOST_TEST(!run_ec(ctx, [&](auto h) { h2.async_open(dir.file("a"), O_RDONLY, 0, h); }));
  BOOST_TEST(h2.is_open());
}

BOOST_AUTO_TEST_CASE(openat2_resolve_beneath_refuses_escapes) {
  temp_dir dir;
  fs::create_directories(dir.file("root/sub"));
  put(dir.file("root/sub/in"), "inside");
  put(dir.file("outside"), "secret");
  fs::create_symlink("../../outside", dir.file("root/sub/link_out"));
  asio::io_context ctx;
  fsys::test::make_ring(ctx);
  int root = ::open(dir.file("root").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  BOOST_REQUIRE(root >= 0);
  const fsys::open_how beneath{O_RDONLY, 0, RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS};
  for (const char* escape : {"../outside", "sub/../../outside", "sub/link_out"}) {
    fsys::file f(ctx);
    error_code ec = run_ec(ctx, [&](auto h) { f.async_open(root, escape, beneath, h); });
    BOOST_TEST((ec == boost::system::errc::cross_device_link), escape << ": " << ec.message());
    BOOST_TEST(!f.is_open());
  }
  {
    fsys::file f(ctx);
    error_code ec = run_ec(ctx, [&](auto h) { f.async_open(root, dir.file("outside"), beneath, h); });
    BOOST_TEST((ec == boost::system::errc::cross_device_link));
  }
  fsys::file f(ctx);
  BOOST_TEST(!run_ec(ctx, [&](auto h) { f.async_open(root, "sub/in", beneath, h); }));
  BOOST_TEST(f.size() == 6u);
  // Creating beneath the root works too (mode from open_how).
  fsys::file g(ctx);
  BOOST_TEST(!run_ec(ctx, [&](auto h) {
    g.async_open(root, "sub/new", fsys::open_how{O_WRONLY | O_CREAT | O_EXCL, 0600, RESOLVE_BENEATH}, h);
  }));
  struct stat sb;
  BOOST_REQUIRE(::stat(dir.file("root/sub/new").c_str(), &sb) == 0);
  BOOST_TEST((sb.st_mode & 0777) == 0600u);
  // AT_FDCWD is accepted.
  fsys::file k(ctx);
  BOOST_TEST(!run_ec(ctx, [&](auto h) { k.async_open(AT_FDCWD, dir.file("outside"), fsys::open_how{}, h); }));
  ::close(root);
}

BOOST_AUTO_TEST_CASE(allocate_resize_sync_range_advise) {
  temp_dir dir;
  asio::io_context ctx;
  fsys::test::make_ring(ctx);
  fsys::file f(ctx, dir.file("f"), rw_create);
  error_code ec;
  BOOST_TEST(!run_ec(ctx, [&](auto h) { f.async_allocate(0, 1 << 20, 0, h); }));
  auto st = stat_file(ctx, f, ec);
  BOOST_TEST(st.size == 1u << 20);
  BOOST_TEST(st.allocated >= 1u << 20);
  // KEEP_SIZE allocates past the end without changing the size.
  ec = run_ec(ctx, [&](auto h) { f.async_allocate(1 << 20, 1 << 20, FALLOC_FL_KEEP_SIZE, h); });
  BOOST_TEST(!ec);
  st = stat_file(ctx, f, ec);
  BOOST_TEST(st.size == 1u << 20);
  BOOST_TEST(st.allocated >= 2u << 20);
  // Zero length and unknown modes are the kernel's EINVAL / EOPNOTSUPP.
  ec = run_ec(ctx, [&](auto h) { f.async_allocate(0, 0, 0, h); });
  BOOST_TEST((ec == boost::system::errc::invalid_argument));
  ec = run_ec(ctx, [&](auto h) { f.async_allocate(0, 4096, 0x4000000, h); });
  BOOST_TEST(!!ec);
  ec = run_ec(ctx, [&](auto h) { f.async_allocate(~0ull - 10, 4096, 0, h); });
  BOOST_TEST((ec == fsys::errc::offset_overflow));

  BOOST_TEST(!run_ec(ctx, [&](auto h) { f.async_resize(12345, h); }));
  BOOST_TEST(f.size() == 12345u);
  BOOST_TEST(!run_ec(ctx, [&](auto h) { f.async_resize(0, h); }));
  BOOST_TEST(f.size() == 0u);
  BOOST_TEST(!run_ec(ctx, [&](auto h) { f.async_resize(5000000, h); }));
  BOOST_TEST(f.size() == 5000000u);
  ec = run_ec(ctx, [&](auto h) { f.async_resize(~0ull, h); });
  BOOST_TEST((ec == fsys::errc::offset_overflow));
  // ftruncate on a descriptor not open for writing: EINVAL (or EBADF).
  fsys::file ro(ctx, dir.file("f"), O_RDONLY);
  ec = run_ec(ctx, [&](auto h) { ro.async_resize(10, h); });
  BOOST_TEST(!!ec);
  BOOST_TEST(ro.size() == 5000000u);

  auto data = pattern(65536, 9);
  auto w = f.async_write_at(0, asio::buffer(data), asio::use_future);
  drain(ctx);
  BOOST_TEST(w.get() == data.size());
  BOOST_TEST(!run_ec(ctx, [&](auto h) {
    f.async_sync_range(0, 65536, SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER, h);
  }));
  BOOST_TEST(!run_ec(ctx, [&](auto h) { f.async_sync_range(0, 0, SYNC_FILE_RANGE_WRITE, h); }));
  // A length beyond 32 bits still works (it goes to the system call).
  BOOST_TEST(!run_ec(ctx, [&](auto h) { f.async_sync_range(0, 1ull << 33, SYNC_FILE_RANGE_WRITE, h); }));
  ec = run_ec(ctx, [&](auto h) { f.async_sync_range(0, 4096, 0x100, h); });
  BOOST_TEST((ec == boost::system::errc::invalid_argument));
  BOOST_TEST(!run_ec(ctx, [&](auto h) { f.async_advise(0, 0, POSIX_FADV_SEQUENTIAL, h); }));
  BOOST_TEST(!run_ec(ctx, [&](auto h) { f.async_advise(0, 65536, POSIX_FADV_DONTNEED, h); }));
  ec = run_ec(ctx, [&](auto h) { f.async_advise(0, 0, 12345, h); });
  BOOST_TEST((ec == boost::system::errc::invalid_argument));
  BOOST_TEST((read_file(dir.file("f")).size() == 5000000u));
}

BOOST_AUTO_TEST_CASE(rename_with_each_flag) {
  temp_dir dir;
  asio::io_context ctx;
  fsys::test::make_ring(ctx);
  put(dir.file("a"), "A");
  put(dir.file("b"), "B");
  // none: replaces the destination.
  BOOST_TEST(!run_ec(ctx, [&](auto h) { fsys::async_rename(ctx, dir.file("a"), dir.file("b"), h); }));
  BOOST_TEST(!fs::exists(dir.file("a")));
  BOOST_TEST(text_of(dir.file("b")) == "A");
  // no_replace: refuses an existing destination, works for a new one.
  put(dir.file("c"), "C");
  error_code ec = run_ec(ctx, [&](auto h) {
    fsys::async_rename(ctx.get_executor(), dir.file("c"), dir.file("b"), fsys::rename_flags::no_replace, h);
  });
  BOOST_TEST((ec == boost::system::errc::file_exists));
  BOOST_TEST(text_of(dir.file("c")) == "C");
  BOOST_TEST(text_of(dir.file("b")) == "A");
  BOOST_TEST(!run_ec(ctx, [&](auto h) {
    fsys::async_rename(ctx, dir.file("c"), dir.file("d"), fsys::rename_flags::no_replace, h);
  }));
  BOOST_TEST(text_of(dir.file("d")) == "C");
  // exchange: swaps both names atomically; fails when one is missing.
  BOOST_TEST(!run_ec(ctx, [&](auto h) {
    fsys::async_rename(ctx, dir.file("b"), dir.file("d"), fsys::rename_flags::exchange, h);
  }));
  BOOST_TEST(text_of(dir.file("b")) == "C");
  BOOST_TEST(text_of(dir.file("d")) == "A");
  ec = run_ec(ctx, [&](auto h) {
    fsys::async_rename(ctx, dir.file("b"), dir.file("nope"), fsys::rename_flags::exchange, h);
  });
  BOOST_TEST((ec == boost::system::errc::no_such_file_or_directory));
  BOOST_TEST(text_of(dir.file("b")) == "C");
  // Unknown flags, empty and NUL paths: invalid_argument, nothing renamed.
  ec = run_ec(ctx, [&](auto h) {
    fsys::async_rename(ctx, dir.file("b"), dir.file("e"), static_cast<fsys::rename_flags>(7), h);
  });
  BOOST_TEST(invalid_argument(ec));
  ec = run_ec(ctx, [&](auto h) { fsys::async_rename(ctx, dir.file("b"), "", h); });
  BOOST_TEST(invalid_argument(ec));
  ec = run_ec(ctx, [&](auto h) {
    fsys::async_rename(ctx, dir.file("b"), fs::path(dir.file("e").native() + std::string(1, '\0')), h);
  });
  BOOST_TEST(invalid_argument(ec));
  BOOST_TEST(text_of(dir.file("b")) == "C");
  BOOST_TEST(!fs::exists(dir.file("e")));
}

BOOST_AUTO_TEST_CASE(directories_links_and_remove) {
  temp_dir dir;
  asio::io_context ctx;
  fsys::test::make_ring(ctx);
  BOOST_TEST(!run_ec(ctx, [&](auto h) { fsys::async_create_directory(ctx, dir.file("d"), 0750, h); }));
  BOOST_TEST(fs::is_directory(dir.file("d")));
  struct stat sb;
  BOOST_REQUIRE(::stat(dir.file("d").c_str(), &sb) == 0);
  BOOST_TEST((sb.st_mode & 0777) == (0750u & ~0022u));
  error_code ec = run_ec(ctx, [&](auto h) { fsys::async_create_directory(ctx, dir.file("d"), 0750, h); });
  BOOST_TEST((ec == boost::system::errc::file_exists));
  ec = run_ec(ctx, [&](auto h) { fsys::async_create_directory(ctx, dir.file("d2"), 0170000, h); });
  BOOST_TEST(invalid_argument(ec));
  BOOST_TEST(!fs::exists(dir.file("d2")));
  ec = run_ec(ctx, [&](auto h) { fsys::async_create_directory(ctx, dir.file("no/such"), 0755, h); });
  BOOST_TEST((ec == boost::system::errc::no_such_file_or_directory));

  put(dir.file("d/f"), "data");
  // Hard link: a second name of the same inode.
  BOOST_TEST(!run_ec(ctx, [&](auto h) { fsys::async_create_hard_link(ctx, dir.file("d/f"), dir.file("d/g"), h); }));
  auto st = stat_path(ctx, dir.file("d/g"), ec);
  BOOST_TEST(!ec);
  BOOST_TEST(st.nlink == 2u);
  BOOST_TEST(st.inode == stat_path(ctx, dir.file("d/f"), ec).inode);
  ec = run_ec(ctx, [&](auto h) { fsys::async_create_hard_link(ctx, dir.file("d/f"), dir.file("d/g"), h); });
  BOOST_TEST((ec == boost::system::errc::file_exists));
  // Symlink: stored as given; stat follows it.
  BOOST_TEST(!run_ec(ctx, [&](auto h) { fsys::async_create_symlink(ctx, "f", dir.file("d/s"), h); }));
  BOOST_TEST(fs::is_symlink(dir.file("d/s")));
  BOOST_TEST(fs::read_symlink(dir.file("d/s")) == fs::path("f"));
  st = stat_path(ctx, dir.file("d/s"), ec);
  BOOST_TEST(!ec);
  BOOST_TEST(S_ISREG(st.mode));
  BOOST_TEST(st.size == 4u);
  BOOST_TEST(!run_ec(ctx, [&](auto h) { fsys::async_create_symlink(ctx, "dangling", dir.file("d/t"), h); }));
  stat_path(ctx, dir.file("d/t"), ec);
  BOOST_TEST((ec == boost::system::errc::no_such_file_or_directory));
  ec = run_ec(ctx, [&](auto h) { fsys::async_create_symlink(ctx, "", dir.file("d/u"), h); });
  BOOST_TEST(invalid_argument(ec));

  // Remove: files and symlinks; a directory needs remove_directory.
  ec = run_ec(ctx, [&](auto h) { fsys::async_remove(ctx, dir.file("d"), h); });
  BOOST_TEST((ec == boost::system::errc::is_a_directory));
  ec = run_ec(ctx, [&](auto h) { fsys::async_remove_directory(ctx, dir.file("d"), h); });
  BOOST_TEST((ec == boost::system::errc::directory_not_empty));
  ec = run_ec(ctx, [&](auto h) { fsys::async_remove_directory(ctx, dir.file("d/f"), h); });
  BOOST_TEST((ec == boost::system::errc::not_a_directory));
  for (const char* n : {"d/f", "d/g", "d/s", "d/t"})
    BOOST_TEST(!run_ec(ctx, [&](auto h) { fsys::async_remove(ctx, dir.file(n), h); }), n);
  ec = run_ec(ctx, [&](auto h) { fsys::async_remove(ctx, dir.file("d/f"), h); });
  BOOST_TEST((ec == boost::system::errc::no_such_file_or_directory));
  ec = run_ec(ctx, [&](auto h) { fsys::async_remove(ctx, "", h); });
  BOOST_TEST(invalid_argument(ec));
  BOOST_TEST(!run_ec(ctx, [&](auto h) { fsys::async_sync_directory(ctx, dir.file("d"), h); }));
  BOOST_TEST(!run_ec(ctx, [&](auto h) { fsys::async_remove_directory(ctx, dir.file("d"), h); }));
  BOOST_TEST(!fs::exists(dir.file("d")));
  BOOST_TEST(!run_ec(ctx, [&](auto h) { fsys::async_sync_directory(ctx, dir.path(), h); }));
  ec = run_ec(ctx, [&](auto h) { fsys::async_sync_directory(ctx, dir.file("d"), h); });
  BOOST_TEST((ec == boost::system::errc::no_such_file_or_directory));
  put(dir.file("plain"), "x");
  ec = run_ec(ctx, [&](auto h) { fsys::async_sync_directory(ctx, dir.file("plain"), h); });
  BOOST_TEST((ec == boost::system::errc::not_a_directory));
}

// Runs `body` as a coroutine on ctx and returns the std::system_error it
// threw (none: an empty code and message).
// A fsys::filesystem_error also leaves its paths in `last_paths` (cleared
// otherwise), and `last_was_fs_error` says which type was thrown.
std::pair<fs::path, fs::path> last_paths;
bool last_was_fs_error = false;

template <class Body>
std::pair<std::error_code, std::string> co_error(asio::io_context& ctx, Body body) {
  std::pair<std::error_code, std::string> got;
  bool threw_other = false;
  last_paths = {};
  last_was_fs_error = false;
  asio::co_spawn(
      ctx,
      [&]() -> asio::awaitable<void> {
        try {
          co_await body(ctx.get_executor());
        } catch (const fsys::filesystem_error& e) {
          got = {e.code(), e.what()};
          last_paths = {e.path1(), e.path2()};
          last_was_fs_error = true;
        } catch (const std::system_error& e) {
          got = {e.code(), e.what()};
        } catch (...) {
          threw_other = true;
        }
      },
      asio::detached);
  drain(ctx);
  BOOST_TEST(!threw_other);
  return got;
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// The coroutine forms' exceptions name the operation and the path(s) they
// were given, as the throwing constructor does; an invalid flags or mode
// argument gets an error saying which argument was wrong (an errc value
// that compares equal to invalid_argument).
BOOST_AUTO_TEST_CASE(errors_name_the_path_and_the_wrong_argument) {
  temp_dir dir;
  asio::io_context ctx;
  fsys::test::make_ring(ctx);
  using ex_t = asio::io_context::executor_type;
  const std::string missing = dir.file("no-such-file").native();
  const std::string other = dir.file("other-name").native();
  // The throwing constructor, for comparison: a filesystem_error too.
  try {
    fsys::file f(ctx, missing, O_RDONLY);
    BOOST_ERROR("opened a missing file");
  } catch (const fsys::filesystem_error& e) {
    BOOST_TEST(contains(e.what(), "fsys::basic_file::open \"" + missing + "\": "), e.what());
    BOOST_TEST(e.path1() == missing);
    BOOST_TEST(e.path2().empty());
    BOOST_TEST((e.code() == std::errc::no_such_file_or_directory));
  }
  // co_open, a missing path: twice, so that one of them may take the inline
  // path (a negative dentry cached by the first) and one the ring.
  for (int i = 0; i < 2; ++i) {
    auto [code, what] = co_error(ctx, [&](ex_t ex) -> asio::awaitable<void> {
      co_await fsys::co_open(ex, missing, O_RDONLY);
    });
    BOOST_TEST((code == std::errc::no_such_file_or_directory), code.message());
    // The message the guide promises, and the path as an object.
    BOOST_TEST(what == "fsys::co_open \"" + missing + "\": " + code.message(), what);
    BOOST_TEST(last_was_fs_error);
    BOOST_TEST(last_paths.first == missing);
  }
  // co_open, unknown flag bits: the message says the flags are wrong.
  {
    auto [code, what] = co_error(ctx, [&](ex_t ex) -> asio::awaitable<void> {
      co_await fsys::co_open(ex, dir.file("x"), O_RDONLY | 0x40000000);
    });
    BOOST_TEST((code == fsys::errc::invalid_open_flags), code.message());
    BOOST_TEST((code == std::errc::invalid_argument));
    BOOST_TEST(contains(what, "open flags"), what);
    BOOST_TEST(contains(what, "\"" + dir.file("x").native() + "\""), what);
    BOOST_TEST(last_was_fs_error);
  }
  // async_open: an error code, which says which argument was wrong.
  {
    fsys::file f(ctx);
    error_code ec = run_ec(ctx, [&](auto h) { f.async_open(dir.file("x"), O_RDONLY | 0x40000000, 0, h); });
    BOOST_TEST((ec == fsys::errc::invalid_open_flags), ec.message());
    BOOST_TEST(invalid_argument(ec));
    BOOST_TEST(contains(ec.message(), "open flags"), ec.message());
    fsys::open_how how{O_RDONLY, 0, 0x1000};
    ec = run_ec(ctx, [&](auto h) { f.async_open(AT_FDCWD, dir.file("x"), how, h); });
    BOOST_TEST((ec == fsys::errc::invalid_resolve_flags), ec.message());
    BOOST_TEST(invalid_argument(ec));
    BOOST_TEST(contains(ec.message(), "resolve"), ec.message());
    BOOST_TEST(!fs::exists(dir.file("x")));
  }
  // co_rename: both paths.
  {
    auto [code, what] = co_error(ctx, [&](ex_t ex) -> asio::awaitable<void> {
      co_await fsys::co_rename(ex, missing, other);
    });
    BOOST_TEST((code == std::errc::no_such_file_or_directory), code.message());
    BOOST_TEST(contains(what, "fsys::co_rename \"" + missing + "\" -> \"" + other + "\": "), what);
    BOOST_TEST(last_was_fs_error);
    BOOST_TEST(last_paths.first == missing);
    BOOST_TEST(last_paths.second == other);
  }
  // A bad rename_flags value: the error names it, nothing is renamed.
  put(dir.file("a"), "a");
  {
    const auto bad = static_cast<fsys::rename_flags>(7);
    error_code ec = run_ec(ctx, [&](auto h) { fsys::async_rename(ctx, dir.file("a"), dir.file("b"), bad, h); });
    BOOST_TEST((ec == fsys::errc::invalid_rename_flags), ec.message());
    BOOST_TEST(invalid_argument(ec));
    BOOST_TEST(contains(ec.message(), "rename_flags"), ec.message());
    auto [code, what] = co_error(ctx, [&](ex_t ex) -> asio::awaitable<void> {
      co_await fsys::co_rename(ex, dir.file("a"), dir.file("b"), bad);
    });
    BOOST_TEST((code == fsys::errc::invalid_rename_flags), code.message());
    BOOST_TEST(contains(what, "rename_flags"), what);
    BOOST_TEST(contains(what, "\"" + dir.file("a").native() + "\" -> \"" + dir.file("b").native() + "\""), what);
    BOOST_TEST(fs::exists(dir.file("a")));
    BOOST_TEST(!fs::exists(dir.file("b")));
  }
  // A mode with bits outside 07777.
  {
    error_code ec =
        run_ec(ctx, [&](auto h) { fsys::async_create_directory(ctx, dir.file("d"), 010000 | 0755, h); });
    BOOST_TEST((ec == fsys::errc::invalid_mode), ec.message());
    BOOST_TEST(invalid_argument(ec));
    BOOST_TEST(!fs::exists(dir.file("d")));
  }
  // The other path-taking coroutine forms.
  const std::string in_missing_dir = (fs::path(missing) / "x").native();
  std::string data = "d";
  auto check = [&](const char* name, const std::string& path, auto body) {
    auto [code, what] = co_error(ctx, body);
    BOOST_TEST(bool(code), name);
    BOOST_TEST(contains(what, std::string(name) + " \"" + path + "\": "), what);
    BOOST_TEST(last_was_fs_error, name);
    BOOST_TEST(last_paths.first == path, name);
  };
  check("fsys::co_stat", missing, [&](ex_t ex) -> asio::awaitable<void> { co_await fsys::co_stat(ex, missing); });
  check("fsys::co_remove", missing, [&](ex_t ex) -> asio::awaitable<void> { co_await fsys::co_remove(ex, missing); });
  check("fsys::co_create_directory", in_missing_dir,
        [&](ex_t ex) -> asio::awaitable<void> { co_await fsys::co_create_directory(ex, in_missing_dir); });
  check("fsys::co_sync_directory", missing,
        [&](ex_t ex) -> asio::awaitable<void> { co_await fsys::co_sync_directory(ex, missing); });
  check("fsys::co_replace_file", in_missing_dir, [&](ex_t ex) -> asio::awaitable<void> {
    co_await fsys::co_replace_file(ex, in_missing_dir, asio::buffer(data));
  });
}

BOOST_AUTO_TEST_CASE(replace_file_creates_and_replaces) {
  temp_dir dir;
  asio::io_context ctx;
  fsys::test::make_ring(ctx);
  const auto target = dir.file("config");
  auto v1 = pattern(5000, 1);
  BOOST_TEST(!run_ec(ctx, [&](auto h) { fsys::async_replace_file(ctx, target, asio::buffer(v1), h); }));
  BOOST_TEST((read_file(target) == v1));
  auto v2 = pattern(123, 2);
  BOOST_TEST(!run_ec(ctx, [&](auto h) { fsys::async_replace_file(ctx, target, asio::buffer(v2), h); }));
  BOOST_TEST((read_file(target) == v2));
  BOOST_TEST(!run_ec(ctx, [&](auto h) { fsys::async_replace_file(ctx, target, asio::const_buffer(), h); }));
  BOOST_TEST(read_file(target).empty());
  // Nothing else left in the directory.
  std::vector<std::string> names;
  for (auto& e : fs::directory_iterator(dir.path())) names.push_back(e.path().filename());
  BOOST_TEST(names.size() == 1u);
  // A relative path (from the current directory) works too.
  auto cwd = fs::current_path();
  fs::current_path(dir.path());
  error_code ec = run_ec(ctx, [&](auto h) { fsys::async_replace_file(ctx, "rel", asio::buffer(v1), h); });
  fs::current_path(cwd);
  BOOST_TEST(!ec);
  BOOST_TEST((read_file(dir.file("rel")) == v1));
  // Errors: missing directory, empty path; nothing created.
  ec = run_ec(ctx, [&](auto h) { fsys::async_replace_file(ctx, dir.file("no/x"), asio::buffer(v1), h); });
  BOOST_TEST((ec == boost::system::errc::no_such_file_or_directory));
  ec = run_ec(ctx, [&](auto h) { fsys::async_replace_file(ctx, "", asio::buffer(v1), h); });
  BOOST_TEST(invalid_argument(ec));
  // The target is a directory: the rename fails, the temporary is removed.
  fs::create_directory(dir.file("sub"));
  ec = run_ec(ctx, [&](auto h) { fsys::async_replace_file(ctx, dir.file("sub"), asio::buffer(v1), h); });
  BOOST_TEST((ec == boost::system::errc::is_a_directory));
  std::size_t count = 0;
  for ([[maybe_unused]] auto& e : fs::directory_iterator(dir.path())) ++count;
  BOOST_TEST(count == 3u);  // config, rel, sub
}

// Replaces (creates, then replaces) a file whose name is as long as the
// filesystem allows (NAME_MAX, 255 bytes on ext4, XFS, btrfs and tmpfs):
// the temporary must fit too. Nothing else is left in `dir`.
void replace_longest_name(const fs::path& dir) {
  long name_max = ::pathconf(dir.c_str(), _PC_NAME_MAX);
  BOOST_REQUIRE(name_max > 0);
  const std::size_t len = static_cast<std::size_t>(std::min<long>(name_max, 255));
  const auto target = dir / std::string(len, 'n');
  asio::io_context ctx;
  fsys::test::make_ring(ctx);
  std::string v1 = "first version", v2(100000, 'x');
  error_code ec = run_ec(ctx, [&](auto h) { fsys::async_replace_file(ctx, target, asio::buffer(v1), h); });
  BOOST_TEST(!ec, ec.message() << " (a " << len << "-byte name)");
  BOOST_TEST((text_of(target) == v1));
  ec = run_ec(ctx, [&](auto h) { fsys::async_replace_file(ctx, target, asio::buffer(v2), h); });
  BOOST_TEST(!ec, ec.message() << " (a " << len << "-byte name)");
  BOOST_TEST((text_of(target) == v2));
  std::vector<std::string> names;
  for (auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename());
  BOOST_TEST(names.size() == 1u);
}

BOOST_AUTO_TEST_CASE(replace_file_takes_the_longest_name) {
  temp_dir dir;
  replace_longest_name(dir.path());
}

BOOST_AUTO_TEST_CASE(replace_file_on_tmpfs_and_without_tmpfile) {
  // /dev/shm (tmpfs) supports O_TMPFILE; a FUSE filesystem would not. The
  // named-temporary path is forced by replacing inside a directory where
  // O_TMPFILE fails: not available portably, so at least check tmpfs works.
  if (!fs::exists("/dev/shm")) return;
  auto base = fs::path("/dev/shm") / ("fsys-test-" + std::to_string(::getpid()));
  fs::create_directory(base);
  asio::io_context ctx;
  fsys::test::make_ring(ctx);
  auto v = pattern(70000, 5);
  error_code ec = run_ec(ctx, [&](auto h) { fsys::async_replace_file(ctx, base / "t", asio::buffer(v), h); });
  BOOST_TEST(!ec);
  BOOST_TEST((read_file(base / "t") == v));
  fs::remove(base / "t");
  replace_longest_name(base);
  fs::remove_all(base);
}

// On a FUSE filesystem without O_TMPFILE the replace uses a named temporary;
// a failing fdatasync leaves the target untouched and removes the temporary.
BOOST_AUTO_TEST_CASE(replace_file_with_named_temporary_and_failing_sync) {
  temp_dir dir;
  fsys::test::faultfs_mount mnt(dir.path());
  if (!mnt.mounted()) {
    BOOST_TEST_MESSAGE("skipped: " << mnt.reason());
    return;
  }
  asio::io_context ctx;
  fsys::test::make_ring(ctx);
  {
    // O_TMPFILE is refused here: the named path is the one under test.
    int fd = ::open(mnt.file("").c_str(), O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
    if (fd >= 0) {
      ::close(fd);
      BOOST_TEST_MESSAGE("this FUSE mount supports O_TMPFILE: the named temporary path is not reached");
    }
  }
  const auto target = mnt.file("conf");
  std::string v1 = "version one", v2 = "version two, longer";
  BOOST_TEST(!run_ec(ctx, [&](auto h) { fsys::async_replace_file(ctx, target, asio::buffer(v1), h); }));
  BOOST_TEST(text_of(target) == v1);
  BOOST_TEST(!run_ec(ctx, [&](auto h) { fsys::async_replace_file(ctx, target, asio::buffer(v2), h); }));
  BOOST_TEST(text_of(target) == v2);
  mnt.control("fsync_eio 1");
  error_code ec = run_ec(ctx, [&](auto h) { fsys::async_replace_file(ctx, target, asio::buffer(v1), h); });
  mnt.control("reset");
  BOOST_TEST((ec == boost::system::errc::io_error));
  BOOST_TEST(text_of(target) == v2);
  std::vector<std::string> names;
  for (auto& e : fs::directory_iterator(mnt.backing_file(""))) names.push_back(e.path().filename());
  BOOST_TEST(names.size() == 1u);
  for (auto& n : names) BOOST_TEST(n == "conf");
  // The longest name the mount takes, through the named temporary too.
  fs::remove(target);
  replace_longest_name(mnt.file(""));
}

BOOST_AUTO_TEST_CASE(every_token_kind_and_coroutines) {
  temp_dir dir;
  asio::io_context ctx;
  fsys::test::make_ring(ctx);
  // use_future
  auto fut = fsys::async_create_directory(ctx, dir.file("d"), 0755, asio::use_future);
  drain(ctx);
  fut.get();
  // deferred
  auto op = fsys::async_stat(ctx, dir.file("d"), asio::deferred);
  std::optional<fsys::file_status> st;
  std::move(op)([&](error_code ec, fsys::file_status s) {
    BOOST_TEST(!ec);
    st = s;
  });
  drain(ctx);
  BOOST_REQUIRE(st.has_value());
  BOOST_TEST(S_ISDIR(st->mode));
  // Coroutines.
  bool done = false;
  asio::co_spawn(
      ctx,
      [&]() -> asio::awaitable<void> {
        auto ex = co_await asio::this_coro::executor;
        fsys::file f = co_await fsys::co_open(ex, dir.file("d/f"), O_RDWR | O_CREAT, 0644);
        co_await fsys::co_allocate(f, 0, 8192);
        auto s = co_await fsys::co_stat(f);
        BOOST_TEST(s.size == 8192u);
        co_await fsys::co_resize(f, 100);
        BOOST_TEST((co_await fsys::co_stat(ex, dir.file("d/f"))).size == 100u);
        co_await fsys::co_rename(ex, dir.file("d/f"), dir.file("d/g"));
        co_await fsys::co_rename(ex, dir.file("d/g"), dir.file("d/h"), fsys::rename_flags::no_replace);
        std::string v = "hello";
        co_await fsys::co_replace_file(ex, dir.file("d/r"), asio::buffer(v));
        co_await fsys::co_sync_directory(ex, dir.file("d"));
        co_await fsys::co_create_directory(ex, dir.file("d/e"));
        co_await fsys::co_remove(ex, dir.file("d/h"));
        try {
          co_await fsys::co_remove(ex, dir.file("d/h"));
          BOOST_ERROR("co_remove of a missing file did not throw");
        } catch (const std::system_error& e) {
          BOOST_TEST((e.code() == std::errc::no_such_file_or_directory));
        }
        try {
          fsys::file g = co_await fsys::co_open(ex, dir.file("d/missing"), O_RDONLY);
          BOOST_ERROR("co_open of a missing file did not throw");
        } catch (const std::system_error& e) {
          BOOST_TEST((e.code() == std::errc::no_such_file_or_directory));
        }
        done = true;
      },
      [](std::exception_ptr e) {
        if (e) std::rethrow_exception(e);
      });
  drain(ctx);
  BOOST_TEST(done);
  BOOST_TEST(text_of(dir.file("d/r")) == "hello");
  BOOST_TEST(fs::is_directory(dir.file("d/e")));
}

namespace {
void cancelled_opens(const fs::path& path, bool inline_fast_path);
}

BOOST_AUTO_TEST_CASE(cancelled_open_never_leaks_a_descriptor) {
  temp_dir dir;
  put(dir.file("f"), "x");
  // The engine's cancellation: without the inline fast path (which would
  // open this cached file before any cancellation could be emitted).
  cancelled_opens(dir.file("f"), false);
  if (fsys::test::expected_backend() == fsys::backend::io_uring) {
    // The same through the io_uring engine's psync helper.
    ::setenv("FSYS_TEST_DISABLE_OPS", "open", 1);
    cancelled_opens(dir.file("f"), false);
    ::unsetenv("FSYS_TEST_DISABLE_OPS");
  }
  // With it: every open completes at once, a later cancellation finds
  // nothing to do, and no descriptor leaks either.
  if (!fast_path_disabled_by_env()) cancelled_opens(dir.file("f"), true);
}

namespace {
void cancelled_opens(const fs::path& path, bool inline_fast_path) {
  asio::io_context ctx;
  fsys::ring_options opts;
  opts.inline_fast_path = inline_fast_path;
  auto& svc = fsys::test::make_ring(ctx, opts);
  const std::size_t before = open_fd_count();
  int aborted = 0, opened = 0;
  for (int i = 0; i < 200; ++i) {
    fsys::file f(ctx);
    asio::cancellation_signal sig;
    std::optional<error_code> got;
    f.async_open(path, O_RDONLY, 0, asio::bind_cancellation_slot(sig.slot(), [&](error_code ec) { got = ec; }));
    // Cancel at different moments: at once, or after a few handler turns.
    if (i % 3 == 0) {
      sig.emit(asio::cancellation_type::terminal);
    } else {
      for (int k = 0; k < i % 5; ++k) ctx.poll_one();
      sig.emit(asio::cancellation_type::terminal);
    }
    drain(ctx);
    BOOST_REQUIRE(got.has_value());
    if (*got == asio::error::operation_aborted) {
      ++aborted;
      BOOST_TEST(!f.is_open());
    } else {
      BOOST_TEST(!*got);
      BOOST_TEST(f.is_open());
      ++opened;
    }
  }
  BOOST_TEST_MESSAGE("cancelled opens: " << aborted << " aborted, " << opened << " completed");
  if (svc.inline_fast_path()) {  // the option, or FSYS_INLINE_FAST_PATH=1
    // Every open is tried inline; one made there is complete before any
    // cancellation, so only those that went on to the engine may be aborted.
    // (An RESOLVE_CACHED walk may still give up on a cached path, e.g. when
    // another process changes a parent directory during the walk.)
    const fsys::engine_stats st = svc.stats();
    BOOST_TEST_MESSAGE("inline opens " << st.inline_opens << ", to the engine " << st.inline_open_fallthroughs);
    BOOST_TEST(st.inline_opens + st.inline_open_fallthroughs == 200u);
    BOOST_TEST(st.inline_opens >= 100u);
    BOOST_TEST(static_cast<std::uint64_t>(opened) >= st.inline_opens);
    BOOST_TEST(static_cast<std::uint64_t>(aborted) <= st.inline_open_fallthroughs);
  } else {
    BOOST_TEST(aborted > 0);
  }
  BOOST_TEST(open_fd_count() == before);

  // close() while an open is pending: the file stays closed, nothing leaks.
  for (int i = 0; i < 50; ++i) {
    fsys::file f(ctx);
    std::optional<error_code> got;
    f.async_open(path, O_RDONLY, 0, [&](error_code ec) { got = ec; });
    f.close();
    drain(ctx);
    BOOST_TEST(got.has_value());
    BOOST_TEST(!f.is_open());
  }
  BOOST_TEST(open_fd_count() == before);
}
}  // namespace

BOOST_AUTO_TEST_CASE(cancellation_of_path_operations) {
  temp_dir dir;
  asio::io_context ctx;
  fsys::test::make_ring(ctx);
  // Cancelled before the engine submitted it: operation_aborted and nothing
  // done. (On io_uring the op waits for the io_context's flush, so the
  // cancellation always comes first; a psync worker may pick the op up at
  // once, and then the real result comes back.)
  asio::cancellation_signal sig;
  std::optional<error_code> got;
  fsys::async_create_directory(ctx, dir.file("d"), 0755,
                               asio::bind_cancellation_slot(sig.slot(), [&](error_code ec) { got = ec; }));
  sig.emit(asio::cancellation_type::terminal);
  drain(ctx);
  BOOST_REQUIRE(got.has_value());
  if (fsys::test::expected_backend() == fsys::backend::io_uring || *got) {
    BOOST_TEST((*got == asio::error::operation_aborted));
    BOOST_TEST(!fs::exists(dir.file("d")));
  } else {
    BOOST_TEST(fs::is_directory(dir.file("d")));
  }
  // Cancelled after: either aborted (nothing done) or the real result.
  for (int i = 0; i < 50; ++i) {
    auto p = dir.file("e" + std::to_string(i));
    std::optional<error_code> r;
    asio::cancellation_signal s2;
    fsys::async_create_directory(ctx, p, 0755, asio::bind_cancellation_slot(s2.slot(), [&](error_code ec) { r = ec; }));
    ctx.poll_one();
    s2.emit(asio::cancellation_type::terminal);
    drain(ctx);
    BOOST_REQUIRE(r.has_value());
    if (*r == asio::error::operation_aborted)
      BOOST_TEST(!fs::exists(p));
    else
      BOOST_TEST((!*r && fs::is_directory(p)));
  }
}

BOOST_AUTO_TEST_CASE(async_close_waits_for_the_files_operations) {
  asio::io_context ctx;
  fsys::test::make_ring(ctx);
  int p[2];
  BOOST_REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
  fsys::file f(ctx, p[0]);
  char buf[16];
  std::optional<error_code> read_ec, close_ec;
  int order = 0, read_order = 0, close_order = 0;
  // A read that only a cancellation ends (an empty pipe).
  f.async_read_some_at(0, asio::buffer(buf), [&](error_code ec, std::size_t) {
    read_ec = ec;
    read_order = ++order;
  });
  ctx.poll();
  f.async_close([&](error_code ec) {
    close_ec = ec;
    close_order = ++order;
  });
  BOOST_TEST(!f.is_open());
  // One thread: the order in which the two handlers run is checked below.
  ctx.run();
  ctx.restart();
  BOOST_REQUIRE(read_ec.has_value());
  BOOST_REQUIRE(close_ec.has_value());
  BOOST_TEST((*read_ec == asio::error::operation_aborted));
  BOOST_TEST(!*close_ec);
  BOOST_TEST(read_order < close_order);
  // The read end is closed: writing to the pipe now fails with EPIPE.
  ::signal(SIGPIPE, SIG_IGN);
  BOOST_TEST(::write(p[1], "x", 1) == -1);
  BOOST_TEST(errno == EPIPE);
  ::close(p[1]);
}

// Forces every file-system op onto the psync path of the io_uring engine
// (FSYS_TEST_DISABLE_OPS) and checks that it gives the same results as the
// ring: same outcomes, same errors, same file contents.
namespace {
struct outcome {
  std::vector<std::string> steps;
  void add(const std::string& what, const error_code& ec) { steps.push_back(what + ":" + std::to_string(ec.value())); }
};

outcome run_fs_script(const fs::path& base) {
  asio::io_context ctx;
  fsys::test::make_ring(ctx);
  outcome o;
  fs::create_directory(base);
  auto step = [&](const std::string& what, auto start) { o.add(what, run_ec(ctx, start)); };
  fsys::file f(ctx);
  step("open", [&](auto h) { f.async_open(base / "f", rw_create | O_EXCL, 0600, h); });
  step("open-again", [&](auto h) { f.async_open(base / "f", rw_create, 0600, h); });
  step("allocate", [&](auto h) { f.async_allocate(0, 65536, 0, h); });
  step("resize", [&](auto h) { f.async_resize(1000, h); });
  step("sync_range", [&](auto h) { f.async_sync_range(0, 0, SYNC_FILE_RANGE_WRITE, h); });
  step("advise", [&](auto h) { f.async_advise(0, 0, POSIX_FADV_RANDOM, h); });
  step("advise-bad", [&](auto h) { f.async_advise(0, 0, 999, h); });
  error_code ec;
  auto st = stat_file(ctx, f, ec);
  o.add("stat-size-" + std::to_string(st.size) + "-mode-" + std::to_string(st.mode & 0777), ec);
  step("close", [&](auto h) { f.async_close(h); });
  step("mkdir", [&](auto h) { fsys::async_create_directory(ctx, base / "d", 0700, h); });
  step("mkdir-again", [&](auto h) { fsys::async_create_directory(ctx, base / "d", 0700, h); });
  step("link", [&](auto h) { fsys::async_create_hard_link(ctx, base / "f", base / "d/l", h); });
  step("symlink", [&](auto h) { fsys::async_create_symlink(ctx, "../f", base / "d/s", h); });
  st = stat_path(ctx, base / "d/s", ec);
  o.add("stat-link-size-" + std::to_string(st.size) + "-nlink-" + std::to_string(st.nlink), ec);
  step("rename", [&](auto h) { fsys::async_rename(ctx, base / "d/l", base / "g", h); });
  step("rename-noreplace", [&](auto h) { fsys::async_rename(ctx, base / "g", base / "f", fsys::rename_flags::no_replace, h); });
  step("rename-exchange", [&](auto h) { fsys::async_rename(ctx, base / "g", base / "d", fsys::rename_flags::exchange, h); });
  step("unlink-dir", [&](auto h) { fsys::async_remove(ctx, base / "g", h); });
  step("rmdir-notempty", [&](auto h) { fsys::async_remove_directory(ctx, base / "g", h); });
  step("unlink", [&](auto h) { fsys::async_remove(ctx, base / "g/s", h); });
  step("rmdir", [&](auto h) { fsys::async_remove_directory(ctx, base / "g", h); });
  step("syncdir", [&](auto h) { fsys::async_sync_directory(ctx, base, h); });
  std::string v = "replaced";
  step("replace", [&](auto h) { fsys::async_replace_file(ctx, base / "f", asio::buffer(v), h); });
  o.add("content-" + text_of(base / "f"), {});
  fsys::file g(ctx);
  step("open-missing", [&](auto h) { g.async_open(base / "missing", O_RDONLY, 0, h); });
  step("open-beneath-escape", [&](auto h) {
    g.async_open(AT_FDCWD, "/etc/hostname", fsys::open_how{O_RDONLY, 0, RESOLVE_BENEATH}, h);
  });
  std::set<std::string> names;
  for (auto& e : fs::directory_iterator(base)) names.insert(e.path().filename());
  std::string all;
  for (auto& n : names) all += n + ",";
  o.add("names-" + all, {});
  auto stats = asio::use_service<fsys::uring_service>(ctx).stats();
  o.add("helper-ops-" + std::to_string(stats.fs_ops_on_helper), {});
  return o;
}
}  // namespace

BOOST_AUTO_TEST_CASE(per_op_fallback_gives_the_same_results) {
  if (fsys::test::expected_backend() != fsys::backend::io_uring) {
    BOOST_TEST_MESSAGE("psync backend: every operation already runs on the psync path");
    return;
  }
  temp_dir dir;
  ::unsetenv("FSYS_TEST_DISABLE_OPS");
  outcome ring = run_fs_script(dir.file("ring"));
  ::setenv("FSYS_TEST_DISABLE_OPS", "all", 1);
  outcome helper = run_fs_script(dir.file("helper"));
  ::setenv("FSYS_TEST_DISABLE_OPS", "open,statx", 1);
  outcome mixed = run_fs_script(dir.file("mixed"));
  ::unsetenv("FSYS_TEST_DISABLE_OPS");
  BOOST_REQUIRE(ring.steps.size() == helper.steps.size());
  for (std::size_t i = 0; i + 1 < ring.steps.size(); ++i) {
    BOOST_TEST(ring.steps[i] == helper.steps[i]);
    BOOST_TEST(ring.steps[i] == mixed.steps[i]);
  }
  // The last step counts the ops the helper ran. On a ring with every opcode
  // (kernel 6.9+) only the EINVAL of "advise-bad" is retried there (the ring
  // answered EINVAL; the system call said the same, so fadvise is not
  // remembered as refused). With FSYS_TEST_DISABLE_OPS=all every file-system
  // op ran there.
  for (auto& s : ring.steps) BOOST_TEST_MESSAGE(s);
  BOOST_TEST_MESSAGE("helper: " << helper.steps.back() << ", mixed: " << mixed.steps.back());
  const auto& f = fsys::probe_features();
  if (f.op_ftruncate && f.op_openat2 && f.op_linkat) BOOST_TEST(ring.steps.back() == "helper-ops-1:0");
  BOOST_TEST(helper.steps.back() != ring.steps.back());
  BOOST_TEST(mixed.steps.back() != ring.steps.back());
  // (Cached opens, stats and closes of local files are made inline, never
  // by the engine: the rest is at least 20.)
  BOOST_TEST(std::stoi(helper.steps.back().substr(11)) >= 20);
}

// A child replaces a file in a loop and is SIGKILLed at a random moment, 200
// times: the file always holds one complete version, and any file left
// besides it is a temporary under the dotted ".fsys-tmp." name.
BOOST_AUTO_TEST_CASE(replace_file_survives_sigkill) {
  temp_dir dir;
  const auto target = dir.file("state");
  auto version = [](std::uint32_t v) {
    // 20000 bytes: a header with the version and a body derived from it.
    std::string s(20000, '\0');
    for (std::size_t i = 0; i < s.size(); ++i) s[i] = static_cast<char>('a' + (v * 7 + i) % 26);
    std::memcpy(s.data(), &v, sizeof v);
    return s;
  };
  put(target, version(0));
  std::mt19937 rng(12345);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  int kills = 0, stray = 0;
  std::uint32_t highest = 0;
  for (; kills < 200 && std::chrono::steady_clock::now() < deadline; ++kills) {
    int ready[2];
    BOOST_REQUIRE(::pipe2(ready, O_CLOEXEC) == 0);
    pid_t pid = ::fork();
    BOOST_REQUIRE(pid >= 0);
    if (pid == 0) {
      ::close(ready[0]);
      asio::io_context ctx;
      asio::make_service<fsys::uring_service>(ctx, fsys::ring_options{});
      std::uint32_t v = highest + 1;
      bool signalled = false;
      for (;; ++v) {
        std::string data = version(v);
        std::optional<error_code> got;
        fsys::async_replace_file(ctx, target, asio::buffer(data), [&](error_code ec) { got = ec; });
        ctx.run();
        ctx.restart();
        if (!got || *got) std::_Exit(3);
        if (!signalled) {
          [[maybe_unused]] auto n = ::write(ready[1], "r", 1);
          signalled = true;
        }
      }
    }
    ::close(ready[1]);
    char c;
    [[maybe_unused]] auto n = ::read(ready[0], &c, 1);  // one replace has completed
    ::close(ready[0]);
    std::this_thread::sleep_for(std::chrono::microseconds(std::uniform_int_distribution<int>(0, 3000)(rng)));
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    BOOST_REQUIRE_MESSAGE(WIFSIGNALED(status), "the child failed on its own, status " << status);
    std::string now = text_of(target);
    BOOST_REQUIRE_EQUAL(now.size(), 20000u);
    std::uint32_t v;
    std::memcpy(&v, now.data(), sizeof v);
    BOOST_REQUIRE_MESSAGE(now == version(v), "torn content after kill " << kills);
    BOOST_REQUIRE(v >= highest);
    highest = v;
    for (auto& e : fs::directory_iterator(dir.path())) {
      std::string name = e.path().filename();
      if (name == "state") continue;
      BOOST_REQUIRE_MESSAGE(name.rfind(".fsys-tmp.", 0) == 0, "unexpected file " << name);
      ++stray;
      fs::remove(e.path());
    }
  }
  BOOST_TEST_MESSAGE(kills << " kills, last version " << highest << ", " << stray << " dotted temporaries left by kills");
  BOOST_TEST(kills >= 50);
  BOOST_TEST(highest > 0u);
}

// The stall test: on a FUSE filesystem whose every lookup/getattr, open,
// create and rename takes 20 ms, 50 file-system operations are kept in flight
// on a single-thread io_context while a 5 ms periodic timer measures how late
// it fires. With fsys the loop never blocks (p99 lateness < 5 ms); the same
// operations made as blocking system calls on the loop thread stall it.
namespace {

struct lateness_probe {
  explicit lateness_probe(asio::io_context& ctx) : timer(ctx) {}
  asio::steady_timer timer;
  std::chrono::steady_clock::time_point due;
  std::vector<double> late_ms;
  bool stop = false;

  void start() {
    due = std::chrono::steady_clock::now() + std::chrono::milliseconds(5);
    arm();
  }
  void arm() {
    timer.expires_at(due);
    timer.async_wait([this](error_code ec) {
      if (ec || stop) return;
      auto now = std::chrono::steady_clock::now();
      late_ms.push_back(std::chrono::duration<double, std::milli>(now - due).count());
      due = std::max(due + std::chrono::milliseconds(5), now + std::chrono::milliseconds(1));
      arm();
    });
  }
  double percentile(double p) const {
    if (late_ms.empty()) return 0;
    auto v = late_ms;
    std::sort(v.begin(), v.end());
    return v[std::min(v.size() - 1, static_cast<std::size_t>(p * static_cast<double>(v.size())))];
  }
};

}  // namespace

BOOST_AUTO_TEST_CASE(slow_filesystem_does_not_stall_the_loop) {
  temp_dir dir;
  fsys::test::faultfs_mount mnt(dir.path());
  if (!mnt.mounted()) {
    BOOST_TEST_MESSAGE("skipped: " << mnt.reason());
    return;
  }
  constexpr int per_kind = 50;  // opens, stats and renames: 150 operations
  constexpr int in_flight = 50;
  constexpr int attempts = 3;
  for (int i = 0; i < per_kind; ++i) {
    for (const char* p : {"0o", "0s", "0r", "1o", "1s", "1r", "2o", "2s", "2r", "bo", "bs", "br"}) {
      std::ofstream(mnt.backing_file(p + std::to_string(i))) << "x";
    }
  }
  mnt.control("delay_ms 20");

  // fsys: 50 operations in flight at any time until all 150 are done. The
  // machine is shared (other processes may take the CPU for a scheduler
  // tick): up to three attempts, the best one counts.
  double async_p99 = 1e9, async_max = 0, async_s = 0, async_p50 = 0;
  std::size_t async_samples = 0;
  for (int attempt = 0; attempt < attempts && async_p99 >= 5.0; ++attempt) {
    const std::string a = std::to_string(attempt);
    asio::io_context ctx(1);
    fsys::test::make_ring(ctx);
    lateness_probe probe(ctx);
    int next = 0, done = 0, failed = 0;
    std::vector<std::unique_ptr<fsys::file>> files;
    std::function<void()> launch = [&] {
      if (next >= 3 * per_kind) return;
      const int k = next++;
      const int i = k / 3;
      auto finish = [&](error_code ec) {
        if (ec) ++failed;
        if (++done == 3 * per_kind) probe.stop = true, probe.timer.cancel();
        launch();
      };
      switch (k % 3) {
        case 0: {
          files.push_back(std::make_unique<fsys::file>(ctx));
          fsys::file& f = *files.back();
          f.async_open(mnt.file(a + "o" + std::to_string(i)), O_RDONLY, 0, [&f, finish](error_code ec) {
            if (ec) return finish(ec);
            f.async_close(finish);  // a FUSE close sends FLUSH: through the ring too
          });
          break;
        }
        case 1:
          fsys::async_stat(ctx, mnt.file(a + "s" + std::to_string(i)), [finish](error_code ec, fsys::file_status) { finish(ec); });
          break;
        default:
          fsys::async_rename(ctx, mnt.file(a + "r" + std::to_string(i)), mnt.file(a + "r" + std::to_string(i) + "x"),
                             finish);
          break;
      }
    };
    auto t0 = std::chrono::steady_clock::now();
    asio::post(ctx, [&] {
      probe.start();
      for (int j = 0; j < in_flight; ++j) launch();
    });
    ctx.run();
    async_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    BOOST_TEST(failed == 0);
    BOOST_TEST(done == 3 * per_kind);
    BOOST_TEST_MESSAGE("attempt " << attempt << ": p50 " << probe.percentile(0.5) << " ms, p99 "
                                  << probe.percentile(0.99) << " ms");
    if (probe.percentile(0.99) < async_p99) {
      async_p99 = probe.percentile(0.99);
      async_p50 = probe.percentile(0.5);
      async_max = probe.percentile(1.0);
      async_samples = probe.late_ms.size();
    }
  }

  // The same kinds of calls, blocking, on the loop thread (a third as many).
  double blocking_p99 = 0, blocking_max = 0, blocking_s = 0;
  std::size_t blocking_samples = 0;
  {
    asio::io_context ctx(1);
    lateness_probe probe(ctx);
    int next = 0;
    std::function<void()> step = [&] {
      if (next >= per_kind) {
        probe.stop = true;
        probe.timer.cancel();
        return;
      }
      const int i = next++;
      switch (i % 3) {
        case 0: {
          int fd = ::open(mnt.file("bo" + std::to_string(i)).c_str(), O_RDONLY | O_CLOEXEC);
          if (fd >= 0) ::close(fd);
          break;
        }
        case 1: {
          struct stat sb;
          ::stat(mnt.file("bs" + std::to_string(i)).c_str(), &sb);
          break;
        }
        default:
          ::rename(mnt.file("br" + std::to_string(i)).c_str(), mnt.file("br" + std::to_string(i) + "x").c_str());
          break;
      }
      asio::post(ctx, step);
    };
    auto t0 = std::chrono::steady_clock::now();
    asio::post(ctx, [&] {
      probe.start();
      step();
    });
    ctx.run();
    blocking_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    blocking_p99 = probe.percentile(0.99);
    blocking_max = probe.percentile(1.0);
    blocking_samples = probe.late_ms.size();
  }
  mnt.control("delay_ms 0");
  BOOST_TEST_MESSAGE("5 ms timer lateness with 50 fsys operations in flight: p50 " << async_p50 << " ms, p99 "
                     << async_p99 << " ms, max " << async_max << " ms over " << async_samples << " ticks ("
                     << 3 * per_kind << " ops in " << async_s << " s)");
  BOOST_TEST_MESSAGE("the same with blocking calls on the loop thread: p99 "
                     << blocking_p99 << " ms, max " << blocking_max << " ms over " << blocking_samples << " ticks ("
                     << per_kind << " ops in " << blocking_s << " s)");
  BOOST_TEST(async_samples >= 100u);
  // Under ThreadSanitizer every handler runs several times slower and the
  // CI runs two suites at once on two CPUs: the loop still never waits for
  // the filesystem, but its own scheduling lateness can pass 5 ms, so the
  // bound there is 10 ms (still half of what one slowed call costs).
#if defined(__SANITIZE_THREAD__)
  constexpr double p99_bound_ms = 10.0;
#else
  constexpr double p99_bound_ms = 5.0;
#endif
  BOOST_TEST(async_p99 < p99_bound_ms);
  // The contrast proves the filesystem was slow: blocking calls stall the loop.
  BOOST_TEST(blocking_p99 > 10.0);
}

// ---- inline fast path of open and stat ---------------------------------------

namespace {
fsys::ring_options with_fast_path(bool on) {
  fsys::ring_options o;
  o.inline_fast_path = on;
  return o;
}

// True when files under `p` get their statx inline: ext2/3/4, XFS, tmpfs,
// f2fs. (btrfs is on the list too, but a subvolume's files report a device
// that /proc/self/mountinfo does not name: the test does not count on it.)
bool inline_stat_expected(const fs::path& p) {
  struct statfs sfs;
  if (::statfs(p.c_str(), &sfs) != 0) return false;
  switch (static_cast<unsigned long>(sfs.f_type)) {
    case 0xEF53:
    case 0x58465342:
    case 0x01021994:
    case 0xF2F52010:
      return true;
    default:
      return false;
  }
}

struct open_stat_script {
  std::vector<std::string> steps;  // what each step gave
  std::vector<std::string> paths;  // per step: "inline" or "engine" (the counters)
  bool fast = false;               // the fast path was on
};

// Opens and stats under `base` (holding "data" = "hello"; `base/..` holds
// "outside"), recording results and, from the counters, which path ran.
open_stat_script run_open_stat_script(const fs::path& base, bool fast) {
  asio::io_context ctx;
  auto& svc = fsys::test::make_ring(ctx, with_fast_path(fast));
  open_stat_script out;
  out.fast = svc.inline_fast_path();
  auto step = [&](const std::string& what, const error_code& ec, const fsys::engine_stats& before) {
    const fsys::engine_stats now = svc.stats();
    out.steps.push_back(what + ":" + std::to_string(ec.value()));
    const std::uint64_t inline_ops = now.inline_opens + now.inline_stats - before.inline_opens - before.inline_stats;
    const bool by_inline = inline_ops > 0;
    // ops_started counts every operation, inline ones included.
    const bool by_engine = now.ops_started - before.ops_started > inline_ops;
    out.paths.push_back(by_inline && !by_engine ? "inline" : by_engine && !by_inline ? "engine" : "both");
  };
  auto open = [&](const std::string& what, fsys::file& f, auto start) {
    const auto before = svc.stats();
    step(what, run_ec(ctx, start), before);
    (void)f;
  };
  const int root = ::open(base.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  BOOST_REQUIRE(root >= 0);
  {
    fsys::file f(ctx);
    open("open", f, [&](auto h) { f.async_open(base / "data", O_RDONLY, 0644, h); });
    BOOST_REQUIRE(f.is_open());
    // The caller's flags, exactly: no O_NONBLOCK left from the attempt, O_CLOEXEC.
    const int fl = ::fcntl(f.native_handle(), F_GETFL);
    const bool cloexec = (::fcntl(f.native_handle(), F_GETFD) & FD_CLOEXEC) != 0;
    out.steps.push_back("flags-nonblock-" + std::to_string((fl & O_NONBLOCK) != 0) + "-cloexec-" +
                        std::to_string(cloexec) + "-acc-" + std::to_string(fl & O_ACCMODE));
    const auto before = svc.stats();
    error_code ec;
    const fsys::file_status st = stat_file(ctx, f, ec);
    struct stat sb;
    BOOST_REQUIRE(::fstat(f.native_handle(), &sb) == 0);
    step("stat-size-" + std::to_string(st.size) + "-mode-" + std::to_string(st.mode) + "-nlink-" +
             std::to_string(st.nlink) + "-inode-ok-" + std::to_string(st.inode == sb.st_ino) + "-mtime-ok-" +
             std::to_string(st.modified.time_since_epoch() ==
                            std::chrono::duration_cast<std::chrono::system_clock::duration>(
                                std::chrono::seconds(sb.st_mtim.tv_sec) + std::chrono::nanoseconds(sb.st_mtim.tv_nsec))),
         ec, before);
    std::string buf(8, '\0');
    auto n = f.async_read_at(0, asio::buffer(buf), asio::use_future);
    drain(ctx);
    out.steps.push_back("read-" + buf.substr(0, n.get()));
  }
  {
    fsys::file f(ctx);
    open("open-nonblock", f, [&](auto h) { f.async_open(base / "data", O_RDWR | O_NONBLOCK | O_APPEND, 0, h); });
    const int fl = ::fcntl(f.native_handle(), F_GETFL);
    out.steps.push_back("flags-nonblock-" + std::to_string((fl & O_NONBLOCK) != 0) + "-append-" +
                        std::to_string((fl & O_APPEND) != 0) + "-acc-" + std::to_string(fl & O_ACCMODE));
  }
  {
    fsys::file f(ctx);
    open("open-missing", f, [&](auto h) { f.async_open(base / "missing", O_RDONLY, 0, h); });
    out.steps.push_back("missing-is-open-" + std::to_string(f.is_open()));
    open("open-notdir", f, [&](auto h) { f.async_open(base / "data/x", O_RDONLY, 0, h); });
    open("open-beneath-escape", f,
         [&](auto h) { f.async_open(root, "../outside", fsys::open_how{O_RDONLY, 0, RESOLVE_BENEATH}, h); });
    open("open-beneath-absolute", f,
         [&](auto h) { f.async_open(root, base / "data", fsys::open_how{O_RDONLY, 0, RESOLVE_BENEATH}, h); });
    out.steps.push_back("escape-is-open-" + std::to_string(f.is_open()));
    open("open-beneath-inside", f,
         [&](auto h) { f.async_open(root, "data", fsys::open_how{O_RDONLY, 0, RESOLVE_BENEATH}, h); });
    out.steps.push_back("inside-size-" + std::to_string(f.size()));
  }
  {
    fsys::file f(ctx);
    open("open-directory", f, [&](auto h) { f.async_open(base, O_RDONLY | O_DIRECTORY, 0, h); });
    open("open-directory-again", f, [&](auto h) { f.async_open(base, O_RDONLY | O_DIRECTORY, 0, h); });
  }
  {
    // Opens that create or truncate always go to the engine.
    fsys::file f(ctx);
    open("open-create", f, [&](auto h) { f.async_open(base / "new", O_RDWR | O_CREAT | O_EXCL, 0600, h); });
    fsys::file g(ctx);
    open("open-create-exists", g, [&](auto h) { g.async_open(base / "new", O_RDWR | O_CREAT | O_EXCL, 0600, h); });
  }
  ::close(root);
  return out;
}
}  // namespace

BOOST_AUTO_TEST_CASE(inline_open_and_stat_give_the_ring_results) {
  if (skipped_without_fast_path()) return;
  temp_dir dir;
  fs::create_directories(dir.file("root"));
  put(dir.file("root/data"), "hello");
  put(dir.file("outside"), "secret");
  // Every name in the dentry cache, "missing" as a negative entry.
  struct stat sb;
  ::stat(dir.file("root/missing").c_str(), &sb);
  ::stat(dir.file("outside").c_str(), &sb);

  const open_stat_script ring = run_open_stat_script(dir.file("root"), false);
  fs::remove(dir.file("root/new"));
  const open_stat_script fast = run_open_stat_script(dir.file("root"), true);
  BOOST_REQUIRE(ring.steps.size() == fast.steps.size());
  for (std::size_t i = 0; i < ring.steps.size(); ++i) {
    BOOST_TEST_MESSAGE(fast.steps[i]);
    BOOST_TEST(ring.steps[i] == fast.steps[i]);
  }
  BOOST_TEST(fast.fast);
  // The results themselves (the same on both paths, see above).
  BOOST_TEST(fast.steps[0] == "open:0");
  BOOST_TEST(fast.steps[1] == "flags-nonblock-0-cloexec-1-acc-0");
  BOOST_REQUIRE(::stat(dir.file("root/data").c_str(), &sb) == 0);
  BOOST_TEST(fast.steps[2].find("stat-size-5-mode-" + std::to_string(sb.st_mode) + "-nlink-1-") == 0u, fast.steps[2]);
  BOOST_TEST(fast.steps[2].find("-inode-ok-1-mtime-ok-1:0") != std::string::npos, fast.steps[2]);
  BOOST_TEST(fast.steps[3] == "read-hello");
  BOOST_TEST(fast.steps[5] == "flags-nonblock-1-append-1-acc-2");
  BOOST_TEST(fast.steps[6] == "open-missing:" + std::to_string(ENOENT));
  BOOST_TEST(fast.steps[7] == "missing-is-open-0");
  BOOST_TEST(fast.steps[8] == "open-notdir:" + std::to_string(ENOTDIR));
  BOOST_TEST(fast.steps[9] == "open-beneath-escape:" + std::to_string(EXDEV));
  BOOST_TEST(fast.steps[10] == "open-beneath-absolute:" + std::to_string(EXDEV));
  BOOST_TEST(fast.steps[11] == "escape-is-open-0");
  BOOST_TEST(fast.steps[12] == "open-beneath-inside:0");
  BOOST_TEST(fast.steps[13] == "inside-size-5");
  BOOST_TEST(fast.steps.back() == "open-create-exists:" + std::to_string(EEXIST));

  // Which path ran, step by step (the counters): with the fast path every
  // open of a cached name and its errors are inline; O_CREAT goes to the
  // engine; the stat is inline on a local filesystem.
  const bool local = inline_stat_expected(dir.path());
  const std::vector<std::string> fast_paths = {
      "inline",                       // open
      local ? "inline" : "engine",    // stat
      "inline",                       // open-nonblock
      "inline",                       // open-missing
      "either",                       // open-notdir (the kernel may need more than RCU walk: EAGAIN)
      "either",                       // open-beneath-escape (likewise for "..")
      "inline",                       // open-beneath-absolute
      "inline",                       // open-beneath-inside
      "inline",                       // open-directory
      "engine",                       // open-directory-again (already open: refused, via the engine)
      "engine",                       // open-create
      "engine",                       // open-create-exists
  };
  BOOST_REQUIRE(fast.paths.size() == fast_paths.size());
  for (std::size_t i = 0; i < fast_paths.size(); ++i) {
    if (fast_paths[i] == "either")
      BOOST_TEST((fast.paths[i] == "inline" || fast.paths[i] == "engine"), "step " << i << ": " << fast.paths[i]);
    else
      BOOST_TEST(fast.paths[i] == fast_paths[i], "step " << i << ": " << fast.paths[i]);
  }
  if (!ring.fast) {  // (FSYS_INLINE_FAST_PATH=1 turns it on for both runs)
    for (const auto& p : ring.paths) BOOST_TEST(p == "engine");
  }
}

// A file on FUSE: its statx may ask the daemon, so it is never made inline;
// a local file's next to it is (the per-device memory tells them apart).
BOOST_AUTO_TEST_CASE(inline_stat_leaves_fuse_files_to_the_engine) {
  if (skipped_without_fast_path()) return;
  temp_dir dir;
  fsys::test::faultfs_mount mnt(dir.path());
  if (!mnt.mounted()) {
    BOOST_TEST_MESSAGE("skipped: " << mnt.reason());
    return;
  }
  std::ofstream(mnt.backing_file("f")) << "fuse!";
  put(dir.file("local"), "local file");
  asio::io_context ctx;
  auto& svc = fsys::test::make_ring(ctx, with_fast_path(true));
  for (int round = 0; round < 2; ++round) {
    fsys::file f(ctx);
    BOOST_REQUIRE(!run_ec(ctx, [&](auto h) { f.async_open(mnt.file("f"), O_RDONLY, 0, h); }));
    auto before = svc.stats();
    error_code ec;
    fsys::file_status st = stat_file(ctx, f, ec);
    auto after = svc.stats();
    BOOST_TEST(!ec);
    BOOST_TEST(st.size == 5u);
    BOOST_TEST(S_ISREG(st.mode));
    BOOST_TEST(after.inline_stats == before.inline_stats);     // not inline
    BOOST_TEST(after.ops_started == before.ops_started + 1);  // the engine ran it

    fsys::file g(ctx);
    BOOST_REQUIRE(!run_ec(ctx, [&](auto h) { g.async_open(dir.file("local"), O_RDONLY, 0, h); }));
    before = svc.stats();
    st = stat_file(ctx, g, ec);
    after = svc.stats();
    BOOST_TEST(!ec);
    BOOST_TEST(st.size == 10u);
    if (inline_stat_expected(dir.path())) {
      BOOST_TEST(after.inline_stats == before.inline_stats + 1);
      BOOST_TEST(after.ops_started == before.ops_started + 1);  // counted once, inline
    }
  }
}

// ---- the io_uring engine's psync helper: refused kinds, counters -------------

// A kind the ring answers with EINVAL/EOPNOTSUPP while the system call
// succeeds is run by the helper from then on, without asking the ring again.
// FSYS_TEST_RING_REFUSES_STATX=1 makes every STATX SQE fail with EINVAL.
BOOST_AUTO_TEST_CASE(ring_refused_kind_moves_to_the_helper) {
  if (fsys::test::expected_backend() != fsys::backend::io_uring || !fsys::probe_features().op_statx) {
    BOOST_TEST_MESSAGE("no IORING_OP_STATX here: nothing for the ring to refuse");
    return;
  }
  temp_dir dir;
  put(dir.file("f"), "12345");
  asio::io_context ctx;
  ::setenv("FSYS_TEST_RING_REFUSES_STATX", "1", 1);
  auto& svc = fsys::test::make_ring(ctx, with_fast_path(false));
  ::unsetenv("FSYS_TEST_RING_REFUSES_STATX");
  fsys::file f(ctx);
  BOOST_REQUIRE(!run_ec(ctx, [&](auto h) { f.async_open(dir.file("f"), O_RDONLY, 0, h); }));
  // Path stats: never made inline, whatever FSYS_INLINE_FAST_PATH says.
  const auto s0 = svc.stats();
  error_code ec;
  fsys::file_status st = stat_path(ctx, dir.file("f"), ec);
  BOOST_TEST(!ec);  // the ring's EINVAL is not what the caller sees
  BOOST_TEST(st.size == 5u);
  const auto s1 = svc.stats();
  BOOST_TEST(s1.sqes_submitted == s0.sqes_submitted + 1);      // the ring was asked first
  BOOST_TEST(s1.fs_ops_on_helper == s0.fs_ops_on_helper + 1);  // then the helper ran it
  // Remembered: the next stats go straight to the helper, errors included.
  st = stat_path(ctx, dir.file("f"), ec);
  BOOST_TEST(!ec);
  BOOST_TEST(st.size == 5u);
  stat_path(ctx, dir.file("missing"), ec);
  BOOST_TEST((ec == boost::system::errc::no_such_file_or_directory));
  const auto s2 = svc.stats();
  BOOST_TEST(s2.sqes_submitted == s1.sqes_submitted);
  BOOST_TEST(s2.fs_ops_on_helper == s1.fs_ops_on_helper + 2);
  // Other kinds still use the ring.
  BOOST_TEST(!run_ec(ctx, [&](auto h) { f.async_advise(0, 0, POSIX_FADV_NORMAL, h); }));
  BOOST_TEST(svc.stats().fs_ops_on_helper == s2.fs_ops_on_helper);
  BOOST_TEST(svc.stats().sqes_submitted == s2.sqes_submitted + 1);
  BOOST_TEST(svc.stats().ops_started - s0.ops_started == 4u);
  BOOST_TEST(svc.stats().ops_completed - s0.ops_completed == 4u);
}

// Every file-system operation counts once in ops_started and once in
// ops_completed, whichever engine ran it (the ring, the io_uring engine's
// psync helper, the psync backend).
BOOST_AUTO_TEST_CASE(file_system_ops_are_counted_on_every_path) {
  temp_dir dir;
  for (const char* disabled : {"", "all"}) {
    if (*disabled && fsys::test::expected_backend() != fsys::backend::io_uring) continue;
    asio::io_context ctx;
    if (*disabled) ::setenv("FSYS_TEST_DISABLE_OPS", disabled, 1);
    auto& svc = fsys::test::make_ring(ctx, with_fast_path(false));
    ::unsetenv("FSYS_TEST_DISABLE_OPS");
    const auto s0 = svc.stats();
    const fs::path base = dir.file(std::string("run-") + (*disabled ? disabled : "ring"));
    fs::create_directory(base);
    fsys::file f(ctx);
    BOOST_TEST(!run_ec(ctx, [&](auto h) { f.async_open(base / "f", rw_create, 0600, h); }));
    error_code ec;
    stat_file(ctx, f, ec);
    BOOST_TEST(!ec);
    BOOST_TEST(!run_ec(ctx, [&](auto h) { f.async_allocate(0, 4096, 0, h); }));
    BOOST_TEST(!run_ec(ctx, [&](auto h) { f.async_close(h); }));
    BOOST_TEST(!run_ec(ctx, [&](auto h) { fsys::async_create_directory(ctx, base / "d", 0700, h); }));
    BOOST_TEST(!run_ec(ctx, [&](auto h) { fsys::async_rename(ctx, base / "f", base / "d/g", h); }));
    BOOST_TEST(!run_ec(ctx, [&](auto h) { fsys::async_remove(ctx, base / "d/g", h); }));
    const auto s1 = svc.stats();
    // Every operation counts once, wherever it ran (FSYS_INLINE_FAST_PATH=1:
    // the open and the stat may complete inline, and never reach the engine).
    const std::uint64_t engine_ops = 7 - (s1.inline_opens - s0.inline_opens) - (s1.inline_stats - s0.inline_stats) -
                                     (s1.inline_closes - s0.inline_closes);
    BOOST_TEST(s1.ops_started - s0.ops_started == 7u, disabled);
    BOOST_TEST(s1.ops_completed - s0.ops_completed == 7u, disabled);
    if (*disabled) BOOST_TEST(s1.fs_ops_on_helper - s0.fs_ops_on_helper == engine_ops);
  }
}

// ---- coroutine forms that continue at once, path arguments ------------------

namespace {
// The file `fd` names now, or "" when the number is free.
std::string fd_target(int fd) {
  std::error_code ec;
  auto p = fs::read_symlink("/proc/self/fd/" + std::to_string(fd), ec);
  return ec ? std::string() : p.string();
}
}  // namespace

// co_open, co_stat, co_read_at and co_close of a cached file on a local
// filesystem are made in the calling thread (the counters say so; every
// 65th call in a row on a thread goes through the queue, so two requests
// are made and at least one of each must be inline), give the same results
// as the operations, and co_close really releases the descriptor.
// async_open, async_stat and async_close finished inline (no operation is
// made for them) still complete only after the initiating function has
// returned, even when it runs on the io_context's own thread, and with the
// results the engine gives.
BOOST_AUTO_TEST_CASE(inline_open_stat_and_close_never_complete_inside_the_initiating_function) {
  if (skipped_without_fast_path()) return;
  temp_dir dir;
  put(dir.file("data"), "abcdef");
  struct stat sb;
  ::stat(dir.file("missing").c_str(), &sb);  // a negative dentry: the open's ENOENT is inline too
  const bool local = inline_stat_expected(dir.path());
  asio::io_context ctx;
  auto& svc = fsys::test::make_ring(ctx, with_fast_path(true));
  const fsys::engine_stats s0 = svc.stats();
  fsys::file f(ctx);
  std::vector<std::string> got;  // one thread runs ctx: plain containers are fine
  bool returned = false;
  auto record = [&](const std::string& what, const error_code& ec) {
    got.push_back(what + ":" + std::to_string(ec.value()) + ":after-return-" + std::to_string(returned));
  };
  // Each step starts from a handler running on the io_context; `returned`
  // is set when the initiating call is back.
  auto start = [&](auto initiate) {
    asio::post(ctx, [&, initiate] {
      returned = false;
      initiate();
      returned = true;
    });
  };
  start([&] {
    f.async_open(dir.file("data"), O_RDONLY, 0, [&](error_code ec) {
      record("open", ec);
      start([&] {
        f.async_stat([&](error_code ec2, fsys::file_status st) {
          record("stat-size-" + std::to_string(st.size), ec2);
          start([&] {
            f.async_close([&](error_code ec3) {
              record("close-open-" + std::to_string(f.is_open()), ec3);
              start([&] {
                f.async_open(dir.file("missing"), O_RDONLY, 0,
                             [&](error_code ec4) { record("missing-open-" + std::to_string(f.is_open()), ec4); });
              });
            });
          });
        });
      });
    });
  });
  ctx.run();
  const std::vector<std::string> want = {"open:0:after-return-1", "stat-size-6:0:after-return-1",
                                         "close-open-0:0:after-return-1",
                                         "missing-open-0:" + std::to_string(ENOENT) + ":after-return-1"};
  BOOST_TEST(got == want, boost::test_tools::per_element());
  const fsys::engine_stats s1 = svc.stats();
  BOOST_TEST(s1.inline_opens - s0.inline_opens == 2u);
  BOOST_TEST(s1.inline_stats - s0.inline_stats == (local ? 1u : 0u));
  BOOST_TEST(s1.inline_closes - s0.inline_closes == (local ? 1u : 0u));
}

BOOST_AUTO_TEST_CASE(coroutine_forms_complete_inline_on_a_local_filesystem) {
  if (skipped_without_fast_path()) return;
  temp_dir dir;
  put(dir.file("data"), "0123456789");
  const bool local = inline_stat_expected(dir.path());
  asio::io_context ctx;
  auto& svc = fsys::test::make_ring(ctx, with_fast_path(true));
  const fsys::engine_stats s0 = svc.stats();
  std::vector<std::string> got;  // checked after run (handlers may run on other threads)
  std::vector<int> fds;
  std::exception_ptr failure;
  asio::co_spawn(
      ctx,
      [&]() -> asio::awaitable<void> {
        auto ex = co_await asio::this_coro::executor;
        const std::string path = dir.file("data").string();
        for (int round = 0; round < 2; ++round) {
          fsys::file f = co_await fsys::co_open(ex, path, O_RDONLY);
          fds.push_back(f.native_handle());
          const fsys::file_status st = co_await fsys::co_stat(f);
          std::string buf(10, '\0');
          const std::size_t n = co_await fsys::co_read_at(f, 0, asio::buffer(buf));
          co_await fsys::co_close(f);
          got.push_back(std::to_string(st.size) + ":" + std::to_string(S_ISREG(st.mode)) + ":" + buf.substr(0, n) +
                        ":" + std::to_string(f.is_open()) + ":" + fd_target(fds.back()));
        }
        try {
          fsys::file g = co_await fsys::co_open(ex, (dir.path() / "missing").c_str(), O_RDONLY);
          got.push_back("missing opened");
        } catch (const std::system_error& e) {
          got.push_back(e.code() == std::errc::no_such_file_or_directory ? "ENOENT" : e.what());
        }
      },
      [&](std::exception_ptr e) { failure = e; });
  fsys::test::run(ctx);
  BOOST_REQUIRE(!failure);
  BOOST_REQUIRE(got.size() == 3u);
  for (int i = 0; i < 2; ++i) {
    const std::string target = got[i].substr(got[i].rfind(':') + 1);
    BOOST_TEST(got[i].substr(0, got[i].rfind(':')) == "10:1:0123456789:0");
    BOOST_TEST(target != dir.file("data").string());  // the descriptor was released
  }
  BOOST_TEST(got[2] == "ENOENT");
  const fsys::engine_stats s1 = svc.stats();
  BOOST_TEST(s1.ops_started - s0.ops_started == 9u);  // 4 per request and the failed open, wherever they ran
  BOOST_TEST(s1.ops_completed - s0.ops_completed == 9u);
  BOOST_TEST(s1.inline_opens - s0.inline_opens >= 2u);  // a request's open and the ENOENT at least
  BOOST_TEST(s1.inline_reads - s0.inline_reads >= 1u);
  if (local) {
    BOOST_TEST(s1.inline_stats - s0.inline_stats >= 1u);
    BOOST_TEST(s1.inline_closes - s0.inline_closes >= 1u);
  } else {
    BOOST_TEST_MESSAGE("not a local filesystem here: stats and closes go to the engine");
    BOOST_TEST(s1.inline_closes == s0.inline_closes);
  }
}

// A close while an operation of the file is still in the kernel is never
// made inline: it waits for the operation (cancelled) and goes to the
// engine. The read of a page evicted from the cache goes to the ring.
BOOST_AUTO_TEST_CASE(close_with_an_operation_in_flight_goes_to_the_engine) {
  temp_dir dir;
  const std::string data(1 << 20, 'x');
  put(dir.file("cold"), data);
  {
    const int fd = ::open(dir.file("cold").c_str(), O_RDONLY);
    BOOST_REQUIRE(fd >= 0);
    ::fdatasync(fd);
    ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    ::close(fd);
  }
  asio::io_context ctx;
  auto& svc = fsys::test::make_ring(ctx, with_fast_path(true));
  fsys::file f(ctx);
  BOOST_REQUIRE(!run_ec(ctx, [&](auto h) { f.async_open(dir.file("cold"), O_RDONLY, 0, h); }));
  const int fd = f.native_handle();
  const fsys::engine_stats s0 = svc.stats();
  std::string buf(1 << 20, '\0');
  std::optional<error_code> read_ec, close_ec;
  std::size_t read_n = 0;
  f.async_read_at(0, asio::buffer(buf), [&](error_code ec, std::size_t n) {
    read_ec = ec;
    read_n = n;
  });
  f.async_close([&](error_code ec) { close_ec = ec; });
  BOOST_TEST(!f.is_open());
  fsys::test::run(ctx);
  BOOST_REQUIRE(read_ec.has_value());
  BOOST_REQUIRE(close_ec.has_value());
  BOOST_TEST(!*close_ec);
  // Either the read finished before the cancellation reached it, or it was cancelled.
  BOOST_TEST((!*read_ec || *read_ec == asio::error::operation_aborted));
  if (!*read_ec) BOOST_TEST(std::string(buf.data(), read_n) == data.substr(0, read_n));
  const fsys::engine_stats s1 = svc.stats();
  if (s1.inline_reads == s0.inline_reads) {  // the read was in flight (not all of it was cached)
    BOOST_TEST(s1.inline_closes == s0.inline_closes);
  } else {
    BOOST_TEST_MESSAGE("the evicted pages came back before the read: nothing was in flight");
  }
  BOOST_TEST(fd_target(fd) != dir.file("cold").string());
}

namespace {
// The descriptor open on `path` in this process (-1: none), found in
// /proc/self/fd without asking the file for it (native_handle() would set
// the file's blocking mode).
int fd_open_on(const std::string& path) {
  for (const auto& e : fs::directory_iterator("/proc/self/fd")) {
    std::error_code ec;
    if (fs::read_symlink(e.path(), ec) == path && !ec) return std::stoi(e.path().filename().string());
  }
  return -1;
}

// The file status flags of `fd` as /proc/self/fdinfo reports them.
int fdinfo_flags(int fd) {
  std::ifstream in("/proc/self/fdinfo/" + std::to_string(fd));
  std::string key;
  while (in >> key) {
    if (key == "flags:") {
      std::string octal;
      in >> octal;
      return std::stoi(octal, nullptr, 8);
    }
  }
  return -1;
}
}  // namespace

// An inline open adds O_NONBLOCK and leaves it on while only the inline
// calls use the descriptor (a file opened, stat'ed, read from the cache and
// closed pays no fcntl). The first use that may block takes it off: a read
// of evicted pages that goes to the ring (which fails a read of a
// non-blocking file with EAGAIN instead of waiting), a FIFO read that must
// wait for its writer, native_handle().
BOOST_AUTO_TEST_CASE(inline_open_restores_blocking_mode_before_blocking_use) {
  if (skipped_without_fast_path()) return;
  temp_dir dir;
  std::string data(256 << 10, '\0');
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>('a' + i % 23);
  put(dir.file("cold"), data);
  put(dir.file("warm"), "warm data");
  BOOST_REQUIRE(::mkfifo(dir.file("fifo").c_str(), 0600) == 0);
  struct stat sb;  // every name in the dentry cache: the opens are inline
  for (const char* n : {"cold", "warm", "fifo"}) ::stat(dir.file(n).c_str(), &sb);
  asio::io_context ctx;
  auto& svc = fsys::test::make_ring(ctx, with_fast_path(true));
  const fsys::engine_stats s0 = svc.stats();
  std::vector<std::string> got;
  std::exception_ptr failure;
  auto nonblocking = [](int fd) { return fd >= 0 ? std::to_string((fdinfo_flags(fd) & O_NONBLOCK) != 0) : "no fd"; };
  asio::co_spawn(
      ctx,
      [&]() -> asio::awaitable<void> {
        auto ex = co_await asio::this_coro::executor;
        // A cached file: open, stat, read; O_NONBLOCK stays until native_handle().
        {
          // (The operations, not the co_* forms: those go through the queue
          // every 65th call in a row, and this test needs every call inline.)
          fsys::file f(ex);
          co_await f.async_open(dir.file("warm"), O_RDONLY, 0, asio::use_awaitable);
          const int fd = fd_open_on(dir.file("warm").string());
          got.push_back("warm-opened:" + nonblocking(fd));
          std::string buf(9, '\0');
          co_await f.async_stat(asio::use_awaitable);
          const std::size_t n = co_await f.async_read_at(0, asio::buffer(buf), asio::use_awaitable);
          got.push_back("warm-read:" + buf.substr(0, n) + ":" + nonblocking(fd));
          const bool same = f.native_handle() == fd;
          got.push_back("warm-native:" + std::to_string(same) + ":" + nonblocking(fd));
        }
        // Evicted pages: the read goes to the ring and must wait for the disk.
        {
          fsys::file f(ex);
          co_await f.async_open(dir.file("cold"), O_RDONLY, 0, asio::use_awaitable);
          const int fd = fd_open_on(dir.file("cold").string());
          got.push_back("cold-opened:" + nonblocking(fd));
          const int other = ::open(dir.file("cold").c_str(), O_RDONLY);
          ::fdatasync(other);  // (dirty pages are not dropped)
          ::posix_fadvise(other, 0, 0, POSIX_FADV_DONTNEED);
          ::close(other);
          std::string buf(data.size(), '\0');
          const fsys::engine_stats before = svc.stats();
          const std::size_t n = co_await f.async_read_at(0, asio::buffer(buf), asio::use_awaitable);
          // (Pages that could not be dropped, or came back before the attempt
          // gave up, are read inline: then the mode may stay as it is.)
          const bool ring = svc.stats().inline_read_fallthroughs != before.inline_read_fallthroughs;
          got.push_back("cold-read:" + std::to_string(n == data.size() && buf == data) + ":" +
                        (ring ? nonblocking(fd) : "0"));
          if (!ring) BOOST_TEST_MESSAGE("the evicted pages were read inline: the ring was not needed");
        }
        // A FIFO: the read starts before its writer writes, and must wait.
        {
          fsys::file p(ex);
          co_await p.async_open(dir.file("fifo"), O_RDONLY, 0, asio::use_awaitable);
          const int fd = fd_open_on(dir.file("fifo").string());
          got.push_back("fifo-opened:" + nonblocking(fd));
          const int w = ::open(dir.file("fifo").c_str(), O_WRONLY | O_NONBLOCK);
          asio::steady_timer t(ex, std::chrono::milliseconds(50));
          t.async_wait([w](error_code) {
            if (::write(w, "ping", 4) != 4) std::abort();
          });
          std::string buf(4, '\0');
          auto [ec, n] = co_await p.async_read_some_at(0, asio::buffer(buf), asio::as_tuple(asio::use_awaitable));
          got.push_back("fifo-read:" + (ec ? ec.message() : buf.substr(0, n)) + ":" + nonblocking(fd));
          ::close(w);
        }
      },
      [&](std::exception_ptr e) { failure = e; });
  fsys::test::run(ctx);
  BOOST_REQUIRE(!failure);
  const std::vector<std::string> want = {"warm-opened:1", "warm-read:warm data:1", "warm-native:1:0",
                                         "cold-opened:1", "cold-read:1:0",         "fifo-opened:1",
                                         "fifo-read:ping:0"};
  BOOST_TEST(got == want, boost::test_tools::per_element());
  const fsys::engine_stats s1 = svc.stats();
  BOOST_TEST(s1.inline_opens - s0.inline_opens == 3u);
}

// Every path form reaches the operations: a NUL-terminated string, a
// std::string, a string_view, a std::filesystem::path and a directory
// entry; a string_view with an embedded NUL is refused. A deferred open
// keeps its own copy of a temporary path.
BOOST_AUTO_TEST_CASE(path_arguments_in_every_form) {
  temp_dir dir;
  put(dir.file("a"), "A");
  asio::io_context ctx;
  fsys::test::make_ring(ctx);
  auto open_ec = [&](fsys::path_view p) {
    fsys::file f(ctx);
    error_code ec = run_ec(ctx, [&](auto h) { f.async_open(p, O_RDONLY, 0, h); });
    BOOST_TEST(f.is_open() == !ec);
    return ec;
  };
  const std::string s = dir.file("a").string();
  BOOST_TEST(!open_ec(s.c_str()));
  BOOST_TEST(!open_ec(s));
  BOOST_TEST(!open_ec(std::string_view(s)));
  BOOST_TEST(!open_ec(dir.file("a")));
  BOOST_TEST(!open_ec(fs::directory_entry(dir.file("a"))));
  const std::string with_nul = s + std::string(1, '\0') + "x";
  BOOST_TEST(invalid_argument(open_ec(std::string_view(with_nul))));
  BOOST_TEST(invalid_argument(open_ec(static_cast<const char*>(nullptr))));
  error_code ec;
  fsys::file_status st = stat_path(ctx, fs::directory_entry(dir.file("a")), ec);
  BOOST_TEST(!ec);
  BOOST_TEST(st.size == 1u);
  // deferred: the temporary string is gone before the operation starts.
  fsys::file f(ctx);
  auto op = f.async_open(std::string(s), O_RDONLY, 0, asio::deferred);
  std::string overwrite(s.size(), 'z');  // reuse the freed memory, if any
  std::optional<error_code> got;
  std::move(op)([&](error_code e) { got = e; });
  drain(ctx);
  BOOST_REQUIRE(got.has_value());
  BOOST_TEST(!*got);
  BOOST_TEST(f.is_open());
}

BOOST_AUTO_TEST_CASE(create_directories_makes_every_missing_parent_once) {
  temp_dir dir;
  asio::io_context ctx;
  fsys::test::make_ring(ctx);
  auto make = [&](const fs::path& p, mode_t mode = 0777) {
    error_code ec = asio::error::would_block;
    bool created = false;
    fsys::async_create_directories(ctx, p, mode, [&](error_code e, bool c) {
      ec = e;
      created = c;
    });
    ctx.restart();
    fsys::test::run(ctx);
    return std::make_pair(ec, created);
  };
  const mode_t old_umask = ::umask(022);
  const fs::path deep = dir.file("a") / "b" / "c" / "d";
  auto [e1, c1] = make(deep, 0700);
  BOOST_TEST(!e1, e1.message());
  BOOST_TEST(c1);
  for (fs::path p = deep; p != dir.path(); p = p.parent_path()) {
    struct stat st {};
    BOOST_REQUIRE(::stat(p.c_str(), &st) == 0);
    BOOST_TEST(S_ISDIR(st.st_mode));
    BOOST_TEST((st.st_mode & 07777) == 0700u);
  }
  auto [e2, c2] = make(deep);  // all there: not created, no error
  BOOST_TEST(!e2);
  BOOST_TEST(!c2);
  auto [e3, c3] = make(dir.file("a") / "b" / "x" / "");  // trailing slash
  BOOST_TEST(!e3);
  BOOST_TEST(c3);
  BOOST_TEST(fs::is_directory(dir.file("a") / "b" / "x"));

  // A file in the way: ENOTDIR below it, EEXIST for the path itself.
  fsys::test::write_file(dir.file("a") / "file", pattern(10, 1));
  auto [e4, c4] = make(dir.file("a") / "file" / "sub");
  BOOST_TEST((e4 == std::errc::not_a_directory));
  BOOST_TEST(!c4);
  auto [e5, c5] = make(dir.file("a") / "file");
  BOOST_TEST((e5 == std::errc::file_exists));
  auto [e6, c6] = make("/");
  BOOST_TEST(!e6);
  BOOST_TEST(!c6);
  auto [e7, c7] = make("");
  BOOST_TEST((e7 == std::errc::invalid_argument));
  auto [e8, c8] = make(dir.file("m"), 010000);
  BOOST_TEST((e8 == std::errc::invalid_argument));
  BOOST_TEST(!fs::exists(dir.file("m")));
  ::umask(old_umask);
  (void)c5;
  (void)c7;
  (void)c8;

  // Eight at once, sharing their parents: every one succeeds.
  std::atomic<int> ok{0};
  for (int i = 0; i < 8; ++i)
    fsys::async_create_directories(ctx, dir.file("p") / "q" / "r" / std::to_string(i), 0777,
                                   [&](error_code e, bool) { ok += !e; });
  ctx.restart();
  fsys::test::run(ctx);
  BOOST_TEST(ok.load() == 8);
  for (int i = 0; i < 8; ++i) BOOST_TEST(fs::is_directory(dir.file("p") / "q" / "r" / std::to_string(i)));

  // The coroutine form.
  bool created = false;
  asio::co_spawn(ctx, [&]() -> asio::awaitable<void> {
    created = co_await fsys::co_create_directories(ctx, dir.file("co") / "x");
  }, [](std::exception_ptr e) { if (e) std::rethrow_exception(e); });
  ctx.restart();
  fsys::test::run(ctx);
  BOOST_TEST(created);
}

// ---- async_replace_file: mode, keeping mode and owner, buffer sequences, a
// content writer -------------------------------------------------------------

namespace {
mode_t mode_of(const fs::path& p) {
  struct stat st {};
  BOOST_REQUIRE(::stat(p.c_str(), &st) == 0);
  return st.st_mode & 07777;
}
mode_t current_umask() {
  const mode_t m = ::umask(0);
  ::umask(m);
  return m;
}
std::size_t entries_in(const fs::path& d) {
  std::size_t n = 0;
  for ([[maybe_unused]] auto& e : fs::directory_iterator(d)) ++n;
  return n;
}
}  // namespace

BOOST_AUTO_TEST_CASE(replace_file_with_a_mode) {
  temp_dir dir;
  asio::io_context ctx;
  fsys::test::make_ring(ctx);
  const auto target = dir.file("secret");
  const std::string v1 = "one", v2 = "two";
  fsys::replace_options o;
  o.mode = 0600;
  BOOST_TEST(!run_ec(ctx, [&](auto h) { fsys::async_replace_file(ctx, target, asio::buffer(v1), o, h); }));
  BOOST_TEST(mode_of(target) == 0600u);
  BOOST_TEST(text_of(target) == v1);
  // The default: 0666 less the umask, whatever the old file had.
  BOOST_TEST(!run_ec(ctx, [&](auto h) { fsys::async_replace_file(ctx, target, asio::buffer(v2), h); }));
  BOOST_TEST(mode_of(target) == (0666u & ~current_umask()));
  // A bad mode: refused, nothing changes.
  o.mode = 010644;
  const error_code ec = run_ec(ctx, [&](auto h) { fsys::async_replace_file(ctx, target, asio::buffer(v1), o, h); });
  BOOST_TEST((ec == fsys::errc::invalid_mode));
  BOOST_TEST(text_of(target) == v2);
  BOOST_TEST(entries_in(dir.path()) == 1u);
}

// The case: a 0600 secrets file stays 0600 (and keeps its owner).
BOOST_AUTO_TEST_CASE(replace_file_keeps_mode_and_owner) {
  temp_dir dir;
  asio::io_context ctx;
  fsys::test::make_ring(ctx);
  const auto target = dir.file("secrets");
  put(target, "old secret");
  ::chmod(target.c_str(), 0600);
  const bool root = ::geteuid() == 0;
  if (root) BOOST_REQUIRE(::chown(target.c_str(), 1234, 2345) == 0);
  fsys::replace_options keep;
  keep.keep_mode_and_owner = true;
  const std::string v = "new secret";
  BOOST_TEST(!run_ec(ctx, [&](auto h) { fsys::async_replace_file(ctx, target, asio::buffer(v), keep, h); }));
  BOOST_TEST(text_of(target) == v);
  struct stat st {};
  BOOST_REQUIRE(::stat(target.c_str(), &st) == 0);
  BOOST_TEST((st.st_mode & 07777) == 0600u);
  if (root) {
    BOOST_TEST(st.st_uid == 1234u);
    BOOST_TEST(st.st_gid == 2345u);
    // Set-group-id survives too (fchmod after fchown, which clears it).
    ::chmod(target.c_str(), 02750);
    BOOST_TEST(!run_ec(ctx, [&](auto h) { fsys::async_replace_file(ctx, target, asio::buffer(v), keep, h); }));
    BOOST_TEST(mode_of(target) == 02750u);
  } else {
    BOOST_TEST(st.st_uid == ::geteuid());
    BOOST_TEST_MESSAGE("not root: the owner kept is the caller's own");
  }
  // Keeping when there is no old file: options.mode applies.
  const auto fresh = dir.file("fresh");
  keep.mode = 0640;
  BOOST_TEST(!run_ec(ctx, [&](auto h) { fsys::async_replace_file(ctx, fresh, asio::buffer(v), keep, h); }));
  BOOST_TEST(mode_of(fresh) == (0640u & ~current_umask()));
  BOOST_TEST(entries_in(dir.path()) == 2u);
  // The same through the named temporary path (no O_TMPFILE on the first try
  // is not forced here; the coroutine form with options).
  ::chmod(target.c_str(), 0604);
  asio::co_spawn(ctx, fsys::co_replace_file(ctx, target, asio::buffer(v), keep), asio::detached);
  drain(ctx);
  BOOST_TEST(mode_of(target) == 0604u);
}

// Replacing a file the caller may not give away to its owner: EPERM, and the
// old file stays as it was (a child that drops to "nobody" in a directory it
// may write).
BOOST_AUTO_TEST_CASE(replace_file_keep_owner_refused_leaves_the_old_file) {
  if (::geteuid() != 0) {
    BOOST_TEST_MESSAGE("not root: cannot drop to another user");
    return;
  }
  temp_dir dir;
  ::chmod(dir.path().c_str(), 0777);
  const auto target = dir.file("theirs");
  put(target, "old");
  ::chmod(target.c_str(), 0644);
  BOOST_REQUIRE(::chown(target.c_str(), 1234, 1234) == 0);
  const pid_t pid = ::fork();
  BOOST_REQUIRE(pid >= 0);
  if (pid == 0) {
    if (::setgid(65534) != 0 || ::setuid(65534) != 0) ::_exit(3);
    asio::io_context ctx;
    fsys::replace_options keep;
    keep.keep_mode_and_owner = true;
    static const char v[] = "new";
    int code = 2;
    fsys::async_replace_file(ctx, target, asio::buffer(v, 3), keep, [&](error_code ec) {
      code = ec == boost::system::errc::operation_not_permitted ? 0 : 1;
    });
    ctx.run();
    ::_exit(code);
  }
  int status = 0;
  BOOST_REQUIRE(::waitpid(pid, &status, 0) == pid);
  BOOST_REQUIRE(WIFEXITED(status));
  BOOST_TEST(WEXITSTATUS(status) == 0);
  BOOST_TEST(text_of(target) == "old");
  BOOST_TEST(entries_in(dir.path()) == 1u);
}

BOOST_AUTO_TEST_CASE(replace_file_from_buffer_sequences) {
  temp_dir dir;
  asio::io_context ctx;
  fsys::test::make_ring(ctx);
  const auto target = dir.file("seq");
  const std::string a = "header\n", b(70000, 'b'), c = "\ntrailer";
  std::vector<asio::const_buffer> seq{asio::buffer(a), asio::buffer(b), asio::const_buffer(), asio::buffer(c)};
  BOOST_TEST(!run_ec(ctx, [&](auto h) { fsys::async_replace_file(ctx, target, seq, h); }));
  BOOST_TEST(text_of(target) == a + b + c);
  // A std::array of mutable buffers, with options.
  std::string x = "xx", y = "yyy";
  std::array<asio::mutable_buffer, 2> arr{asio::buffer(x), asio::buffer(y)};
  fsys::replace_options o;
  o.mode = 0640;
  BOOST_TEST(!run_ec(ctx, [&](auto h) { fsys::async_replace_file(ctx, target, arr, o, h); }));
  BOOST_TEST(text_of(target) == "xxyyy");
  BOOST_TEST(entries_in(dir.path()) == 1u);
}

namespace {
// Chunk `i` of the writer test's content: 1 MiB of bytes derived from i.
void fill_chunk(std::vector<char>& buf, std::size_t i) {
  std::uint64_t x = 0x9e3779b97f4a7c15ull * (i + 1);
  for (std::size_t k = 0; k < buf.size(); k += 8) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    std::memcpy(buf.data() + k, &x, 8);
  }
}
}  // namespace

// 64 MiB written by a coroutine in 1 MiB chunks, one buffer reused: the
// content never exists in memory as a whole.
BOOST_AUTO_TEST_CASE(replace_file_from_a_writer) {
  temp_dir dir;
  asio::io_context ctx;
  fsys::test::make_ring(ctx);
  const auto target = dir.file("big");
  put(target, "old");
  constexpr std::size_t chunk = 1 << 20, chunks = 64;
  int calls = 0;
  auto writer = [&](fsys::file& f, auto done) {
    ++calls;
    asio::co_spawn(
        f.get_executor(),
        [&f]() -> asio::awaitable<void> {
          std::vector<char> buf(chunk);
          for (std::size_t i = 0; i < chunks; ++i) {
            fill_chunk(buf, i);
            co_await f.async_write_at(i * chunk, asio::buffer(buf), asio::use_awaitable);
          }
        },
        [done = std::move(done)](std::exception_ptr e) mutable {
          error_code ec;
          if (e) {
            try {
              std::rethrow_exception(e);
            } catch (const boost::system::system_error& se) {
              ec = se.code();
            } catch (...) {
              ec = boost::system::errc::make_error_code(boost::system::errc::io_error);
            }
          }
          std::move(done)(ec);
        });
  };
  fsys::replace_options o;
  o.mode = 0600;
  const error_code ec = run_ec(ctx, [&](auto h) { fsys::async_replace_file(ctx, target, writer, o, h); });
  BOOST_TEST(!ec, ec.message());
  BOOST_TEST(calls == 1);
  BOOST_TEST(fs::file_size(target) == chunk * chunks);
  BOOST_TEST(mode_of(target) == 0600u);
  std::ifstream in(target, std::ios::binary);
  std::vector<char> want(chunk), got(chunk);
  bool same = true;
  for (std::size_t i = 0; i < chunks && same; ++i) {
    fill_chunk(want, i);
    in.read(got.data(), chunk);
    same = in.gcount() == static_cast<std::streamsize>(chunk) && got == want;
  }
  BOOST_TEST(same);
  BOOST_TEST(entries_in(dir.path()) == 1u);
}

// A writer that reports an error: the replace fails with it, the old file
// stays, no temporary is left.
BOOST_AUTO_TEST_CASE(replace_file_writer_error_keeps_the_old_file) {
  temp_dir dir;
  asio::io_context ctx;
  fsys::test::make_ring(ctx);
  const auto target = dir.file("keep");
  put(target, "old content");
  auto writer = [](fsys::file& f, asio::any_completion_handler<void(error_code)> done) {
    static const char part[] = "partial";
    f.async_write_at(0, asio::buffer(part, 7), [done = std::move(done)](error_code, std::size_t) mutable {
      std::move(done)(boost::system::errc::make_error_code(boost::system::errc::no_space_on_device));
    });
  };
  const error_code ec = run_ec(ctx, [&](auto h) { fsys::async_replace_file(ctx, target, writer, h); });
  BOOST_TEST((ec == boost::system::errc::no_space_on_device));
  BOOST_TEST(text_of(target) == "old content");
  BOOST_TEST(entries_in(dir.path()) == 1u);
  // And the coroutine form throws it with the path.
  bool threw = false;
  asio::co_spawn(
      ctx,
      [&]() -> asio::awaitable<void> {
        try {
          co_await fsys::co_replace_file(ctx, target, writer);
        } catch (const std::system_error& e) {
          threw = e.code() == std::errc::no_space_on_device &&
                  std::string(e.what()).find(target.string()) != std::string::npos;
        }
      },
      asio::detached);
  drain(ctx);
  BOOST_TEST(threw);
  BOOST_TEST(text_of(target) == "old content");
}
