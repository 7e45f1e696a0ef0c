// Metadata setters (permissions, owner, times) and extended attributes, by
// path and on an open file: each checked with stat(2)/lstat(2)/getxattr(2)
// afterwards, the symlink (nofollow) forms, errors, and the xattr kinds both
// through the ring and on the psync workers (FSYS_TEST_DISABLE_OPS). Runs once
// per backend and with 4 threads.
#include <boost/test/unit_test.hpp>

#include "support/ring_fixture.hpp"
#include "support/run.hpp"
#include "support/temp_dir.hpp"

#include <fsys/fsys.hpp>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <thread>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

namespace asio = boost::asio;
namespace fs = std::filesystem;
using boost::system::error_code;
using fsys::test::temp_dir;

namespace {

void drain(asio::io_context& ctx) {
  fsys::test::run(ctx);
  ctx.restart();
}

// Starts an operation with a callback recording its error code, runs the
// context, returns the error code.
template <class Start>
error_code run_ec(asio::io_context& ctx, Start&& start) {
  std::optional<error_code> got;
  start([&](error_code ec) { got = ec; });
  drain(ctx);
  BOOST_REQUIRE(got.has_value());
  return *got;
}

// The same for an operation completing with a value.
template <class Value, class Start>
std::pair<error_code, Value> run_value(asio::io_context& ctx, Start&& start) {
  std::optional<std::pair<error_code, Value>> got;
  start([&](error_code ec, Value v) { got.emplace(ec, std::move(v)); });
  drain(ctx);
  BOOST_REQUIRE(got.has_value());
  return std::move(*got);
}

void put(const fs::path& p, const std::string& s) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << s;
}

struct stat lstat_of(const fs::path& p) {
  struct stat st {};
  BOOST_REQUIRE(::lstat(p.c_str(), &st) == 0);
  return st;
}

struct stat stat_of(const fs::path& p) {
  struct stat st {};
  BOOST_REQUIRE(::stat(p.c_str(), &st) == 0);
  return st;
}

bool same(const timespec& a, const timespec& b) { return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec; }

fsys::file open_file(asio::io_context& ctx, const fs::path& p, int flags) {
  fsys::file f(ctx);
  BOOST_REQUIRE(!run_ec(ctx, [&](auto h) { f.async_open(p, flags, 0644, h); }));
  return f;
}

error_code errno_code(int e) { return error_code(e, boost::system::system_category()); }

}  // namespace

BOOST_AUTO_TEST_CASE(set_permissions_by_path_and_on_a_file) {
  asio::io_context ctx;
  fsys::test::make_ring(ctx);
  temp_dir dir;
  const auto p = dir.file("f");
  put(p, "x");
  ::chmod(p.c_str(), 0644);
  BOOST_TEST(!run_ec(ctx, [&](auto h) { fsys::async_set_permissions(ctx, p, 0600, h); }));
  BOOST_TEST((stat_of(p).st_mode & 07777) == 0600u);
  // Set-uid/gid and sticky bits pass through (root, or the owner's own group).
  BOOST_TEST(!run_ec(ctx, [&](auto h) { fsys::async_set_permissions(ctx, p, 01750, h); }));
  BOOST_TEST((stat_of(p).st_mode & 07777) == 01750u);
  BOOST_TEST((fs::status(p).permissions() == (fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                                            fs::perms::sticky_bit)));

  fsys::file f = open_file(ctx, p, O_RDONLY);  // fchmod needs no write access
  BOOST_TEST(!run_ec(ctx, [&](auto h) { f.async_set_permissions(0640, h); }));
  BOOST_TEST((stat_of(p).st_mode & 07777) == 0640u);

  // Errors: a missing file, a bad mode (nothing changes), a closed file.
  BOOST_TEST(run_ec(ctx, [&](auto h) { fsys::async_set_permissions(ctx, dir.file("missing"), 0600, h); }) ==
             errno_code(ENOENT));
  const error_code bad = run_ec(ctx, [&](auto h) { fsys::async_set_permissions(ctx, p, 010000, h); });
  BOOST_TEST((bad == fsys::errc::invalid_mode));
  BOOST_TEST((bad == std::errc::invalid_argument));
  BOOST_TEST((run_ec(ctx, [&](auto h) { f.async_set_permissions(010000, h); }) == fsys::errc::invalid_mode));
  BOOST_TEST((stat_of(p).st_mode & 07777) == 0640u);
  BOOST_TEST((run_ec(ctx, [&](auto h) { fsys::async_set_permissions(ctx, "", 0600, h); }) ==
             std::errc::invalid_argument));
  f.close();
  BOOST_TEST((run_ec(ctx, [&](auto h) { f.async_set_permissions(0600, h); }) == fsys::errc::not_open));
}

BOOST_AUTO_TEST_CASE(set_permissions_nofollow) {
  asio::io_context ctx;
  fsys::test::make_ring(ctx);
  temp_dir dir;
  const auto target = dir.file("target");
  const auto link = dir.file("link");
  put(target, "t");
  ::chmod(target.c_str(), 0644);
  fs::create_symlink("target", link);
  // Following (the default): the target's mode changes.
  BOOST_TEST(!run_ec(ctx, [&](auto h) { fsys::async_set_permissions(ctx, link, 0600, h); }));
  BOOST_TEST((stat_of(target).st_mode & 07777) == 0600u);
  // Not following: Linux cannot change a symlink's mode (EOPNOTSUPP, as
  // fchmodat2 and glibc answer); the target is untouched.
  const error_code ec =
      run_ec(ctx, [&](auto h) { fsys::async_set_permissions(ctx, link, 0644, fsys::symlinks::nofollow, h); });
  BOOST_TEST(ec == errno_code(EOPNOTSUPP), ec.message());
  BOOST_TEST((stat_of(target).st_mode & 07777) == 0600u);
  // Not following a name that is no symlink: its mode is set.
  BOOST_TEST(!run_ec(ctx, [&](auto h) { fsys::async_set_permissions(ctx, target, 0604, fsys::symlinks::nofollow, h); }));
  BOOST_TEST((stat_of(target).st_mode & 07777) == 0604u);
}

BOOST_AUTO_TEST_CASE(set_owner_by_path_on_a_file_and_nofollow) {
  asio::io_context ctx;
  fsys::test::make_ring(ctx);
  temp_dir dir;
  const auto p = dir.file("f");
  put(p, "x");
  BOOST_TEST(run_ec(ctx, [&](auto h) { fsys::async_set_owner(ctx, dir.file("missing"), 0, 0, h); }) ==
             errno_code(ENOENT));
  if (::geteuid() != 0) {
    // A non-root owner may "change" to its own ids only.
    BOOST_TEST(!run_ec(ctx, [&](auto h) { fsys::async_set_owner(ctx, p, ::geteuid(), fsys::unchanged_id, h); }));
    BOOST_TEST_MESSAGE("not root: changing owners to other users is not tested");
    return;
  }
  BOOST_TEST(!run_ec(ctx, [&](auto h) { fsys::async_set_owner(ctx, p, 1234, 4321, h); }));
  BOOST_TEST(stat_of(p).st_uid == 1234u);
  BOOST_TEST(stat_of(p).st_gid == 4321u);
  // unchanged_id keeps one of them.
  BOOST_TEST(!run_ec(ctx, [&](auto h) { fsys::async_set_owner(ctx, p, fsys::unchanged_id, 777, h); }));
  BOOST_TEST(stat_of(p).st_uid == 1234u);
  BOOST_TEST(stat_of(p).st_gid == 777u);

  fsys::file f = open_file(ctx, p, O_RDONLY);
  BOOST_TEST(!run_ec(ctx, [&](auto h) { f.async_set_owner(42, 43, h); }));
  BOOST_TEST(stat_of(p).st_uid == 42u);
  BOOST_TEST(stat_of(p).st_gid == 43u);
  f.close();

  // nofollow: the link's own owner changes, the target's stays.
  const auto link = dir.file("link");
  fs::create_symlink("f", link);
  BOOST_TEST(!run_ec(ctx, [&](auto h) { fsys::async_set_owner(ctx, link, 555, 556, fsys::symlinks::nofollow, h); }));
  BOOST_TEST(lstat_of(link).st_uid == 555u);
  BOOST_TEST(lstat_of(link).st_gid == 556u);
  BOOST_TEST(stat_of(p).st_uid == 42u);
  // Following: the target's.
  BOOST_TEST(!run_ec(ctx, [&](auto h) { fsys::async_set_owner(ctx, link, 600, 601, h); }));
  BOOST_TEST(stat_of(p).st_uid == 600u);
  BOOST_TEST(lstat_of(link).st_uid == 555u);
}

// EPERM: an unprivileged process may not give a file away. A child drops to
// "nobody" (65534) and tries, through its own io_context.
BOOST_AUTO_TEST_CASE(set_owner_unprivileged_gets_eperm) {
  if (::geteuid() != 0) {
    BOOST_TEST_MESSAGE("not root: cannot drop to another user to test EPERM");
    return;
  }
  temp_dir dir;
  ::chmod(dir.path().c_str(), 0755);
  const auto p = dir.file("mine");
  put(p, "x");
  ::chmod(p.c_str(), 0644);
  const pid_t pid = ::fork();
  BOOST_REQUIRE(pid >= 0);
  if (pid == 0) {
    if (::setgid(65534) != 0 || ::setuid(65534) != 0) ::_exit(3);
    asio::io_context ctx;
    int code = 2;
    fsys::async_set_owner(ctx, p, 65534, 65534, [&](error_code ec) {
      code = ec == boost::system::errc::operation_not_permitted ? 0 : 1;
    });
    ctx.run();
    ::_exit(code);
  }
  int status = 0;
  BOOST_REQUIRE(::waitpid(pid, &status, 0) == pid);
  BOOST_REQUIRE(WIFEXITED(status));
  BOOST_TEST(WEXITSTATUS(status) == 0);
  BOOST_TEST(stat_of(p).st_uid == 0u);
}

BOOST_AUTO_TEST_CASE(set_times_by_path_on_a_file_and_nofollow) {
  asio::io_context ctx;
  fsys::test::make_ring(ctx);
  temp_dir dir;
  const auto p = dir.file("f");
  put(p, "x");
  using namespace std::chrono;
  const system_clock::time_point a = system_clock::time_point(seconds(1000000000) + nanoseconds(123456789));
  const system_clock::time_point m = system_clock::time_point(seconds(1500000000) + nanoseconds(987654321));
  BOOST_TEST(!run_ec(ctx, [&](auto h) { fsys::async_set_times(ctx, p, a, m, h); }));
  struct stat st = stat_of(p);
  BOOST_TEST(same(st.st_atim, timespec{1000000000, 123456789}));
  BOOST_TEST(same(st.st_mtim, timespec{1500000000, 987654321}));

  // omit keeps one, a timespec sets the other; std::filesystem agrees.
  BOOST_TEST(!run_ec(ctx, [&](auto h) {
    fsys::async_set_times(ctx, p, fsys::file_time::omit(), timespec{1600000000, 5}, h);
  }));
  st = stat_of(p);
  BOOST_TEST(same(st.st_atim, timespec{1000000000, 123456789}));
  BOOST_TEST(same(st.st_mtim, timespec{1600000000, 5}));
  BOOST_TEST((std::chrono::file_clock::to_sys(fs::last_write_time(p)) ==
              system_clock::time_point(seconds(1600000000) + nanoseconds(5))));
  // A file_time_type, as std::filesystem::last_write_time gives.
  const fs::file_time_type ft = fs::last_write_time(p) - hours(24);
  BOOST_TEST(!run_ec(ctx, [&](auto h) { fsys::async_set_times(ctx, p, fsys::file_time::omit(), ft, h); }));
  BOOST_TEST((fs::last_write_time(p) == ft));
  // Times before 1970 too.
  BOOST_TEST(!run_ec(ctx, [&](auto h) {
    fsys::async_set_times(ctx, p, system_clock::time_point(-seconds(10) + milliseconds(250)), fsys::file_time::omit(),
                          h);
  }));
  BOOST_TEST(same(stat_of(p).st_atim, timespec{-10, 250000000}));

  // now() on the open file.
  fsys::file f = open_file(ctx, p, O_RDWR);
  const auto before = system_clock::now() - seconds(2);
  BOOST_TEST(!run_ec(ctx, [&](auto h) { f.async_set_times(fsys::file_time::omit(), fsys::file_time::now(), h); }));
  st = stat_of(p);
  BOOST_TEST(same(st.st_atim, timespec{-10, 250000000}));
  BOOST_TEST(st.st_mtim.tv_sec >= duration_cast<seconds>(before.time_since_epoch()).count());
  BOOST_TEST(!run_ec(ctx, [&](auto h) { f.async_set_times(a, m, h); }));
  st = stat_of(p);
  BOOST_TEST(same(st.st_mtim, timespec{1500000000, 987654321}));
  f.close();

  // nofollow: the link's own times change, the target's stay.
  const auto link = dir.file("link");
  fs::create_symlink("f", link);
  BOOST_TEST(!run_ec(ctx, [&](auto h) {
    fsys::async_set_times(ctx, link, timespec{100, 1}, timespec{200, 2}, fsys::symlinks::nofollow, h);
  }));
  BOOST_TEST(same(lstat_of(link).st_mtim, timespec{200, 2}));
  BOOST_TEST(same(lstat_of(link).st_atim, timespec{100, 1}));
  BOOST_TEST(same(stat_of(p).st_mtim, timespec{1500000000, 987654321}));
  // Following: the target's.
  BOOST_TEST(!run_ec(ctx, [&](auto h) { fsys::async_set_times(ctx, link, timespec{300, 3}, timespec{400, 4}, h); }));
  BOOST_TEST(same(stat_of(p).st_mtim, timespec{400, 4}));
  BOOST_TEST(same(lstat_of(link).st_mtim, timespec{200, 2}));

  // Errors: a missing name, a nanosecond count out of range (EINVAL).
  BOOST_TEST(run_ec(ctx, [&](auto h) {
    fsys::async_set_times(ctx, dir.file("missing"), fsys::file_time::now(), fsys::file_time::now(), h);
  }) == errno_code(ENOENT));
  BOOST_TEST(run_ec(ctx, [&](auto h) {
    fsys::async_set_times(ctx, p, timespec{1, 1000000000}, fsys::file_time::omit(), h);
  }) == errno_code(EINVAL));
}

namespace {

// A directory whose filesystem takes user.* extended attributes of
// `value_size` bytes (probed with setxattr(2)), or empty.
fs::path xattr_dir(const temp_dir& dir, std::size_t value_size, std::string& why) {
  const std::string v(value_size, 'v');
  for (const fs::path& d : {dir.path(), fs::path("/dev/shm")}) {
    const fs::path probe = d / ("xattr-probe-" + std::to_string(::getpid()));
    put(probe, "");
    const int r = ::setxattr(probe.c_str(), "user.fsys_probe", v.data(), v.size(), 0);
    const int e = errno;
    fs::remove(probe);
    if (r == 0) return d;
    why += d.string() + ": " + std::strerror(e) + "; ";
  }
  return {};
}

struct xattr_counts {
  std::uint64_t helper_ops = 0;
};

// Every xattr operation, by path and on an open file, on a fresh context
// (so that FSYS_TEST_DISABLE_OPS, read when its engine starts, applies).
std::uint64_t xattr_script(const fs::path& base) {
  asio::io_context ctx;
  fsys::test::make_ring(ctx);
  const auto p = base;
  put(p, "content");

  // Missing attribute, set (create), get, create again (EEXIST), replace.
  auto got = run_value<std::string>(ctx, [&](auto h) { fsys::async_get_xattr(ctx, p, "user.a", h); });
  BOOST_TEST(got.first == errno_code(ENODATA));
  const std::string v1 = "first value";
  BOOST_TEST(!run_ec(ctx, [&](auto h) { fsys::async_set_xattr(ctx, p, "user.a", asio::buffer(v1), fsys::xattr_flags::create, h); }));
  got = run_value<std::string>(ctx, [&](auto h) { fsys::async_get_xattr(ctx, p, "user.a", h); });
  BOOST_TEST(!got.first);
  BOOST_TEST(got.second == v1);
  BOOST_TEST(run_ec(ctx, [&](auto h) {
    fsys::async_set_xattr(ctx, p, "user.a", asio::buffer(v1), fsys::xattr_flags::create, h);
  }) == errno_code(EEXIST));
  BOOST_TEST(run_ec(ctx, [&](auto h) {
    fsys::async_set_xattr(ctx, p, "user.b", asio::buffer(v1), fsys::xattr_flags::replace, h);
  }) == errno_code(ENODATA));
  const std::string v2("bin\0ary", 7);
  BOOST_TEST(!run_ec(ctx, [&](auto h) { fsys::async_set_xattr(ctx, p, "user.a", asio::buffer(v2), fsys::xattr_flags::replace, h); }));
  char raw[64];
  BOOST_TEST(::getxattr(p.c_str(), "user.a", raw, sizeof raw) == 7);
  BOOST_TEST(std::string(raw, 7) == v2);
  // Empty value.
  BOOST_TEST(!run_ec(ctx, [&](auto h) { fsys::async_set_xattr(ctx, p, "user.empty", asio::const_buffer(), h); }));
  got = run_value<std::string>(ctx, [&](auto h) { fsys::async_get_xattr(ctx, p, "user.empty", h); });
  BOOST_TEST(!got.first);
  BOOST_TEST(got.second.empty());
  // Larger than the first guess (256 bytes): the sizing round.
  std::string v3(3000, '\0');
  for (std::size_t i = 0; i < v3.size(); ++i) v3[i] = static_cast<char>(i * 31 + 7);
  BOOST_TEST(!run_ec(ctx, [&](auto h) { fsys::async_set_xattr(ctx, p, "user.big", asio::buffer(v3), h); }));
  got = run_value<std::string>(ctx, [&](auto h) { fsys::async_get_xattr(ctx, p, "user.big", h); });
  BOOST_TEST(!got.first);
  BOOST_TEST((got.second == v3));

  auto names = run_value<std::vector<std::string>>(ctx, [&](auto h) { fsys::async_list_xattr(ctx, p, h); });
  BOOST_TEST(!names.first);
  std::sort(names.second.begin(), names.second.end());
  BOOST_TEST((names.second == std::vector<std::string>{"user.a", "user.big", "user.empty"}));

  BOOST_TEST(!run_ec(ctx, [&](auto h) { fsys::async_remove_xattr(ctx, p, "user.empty", h); }));
  BOOST_TEST(run_ec(ctx, [&](auto h) { fsys::async_remove_xattr(ctx, p, "user.empty", h); }) == errno_code(ENODATA));
  BOOST_TEST(::getxattr(p.c_str(), "user.empty", nullptr, 0) == -1);

  // On the open file.
  fsys::file f = open_file(ctx, p, O_RDONLY);
  const std::string v4 = "on the file";
  BOOST_TEST(!run_ec(ctx, [&](auto h) { f.async_set_xattr("user.f", asio::buffer(v4), fsys::xattr_flags::create, h); }));
  BOOST_TEST(run_ec(ctx, [&](auto h) { f.async_set_xattr("user.f", asio::buffer(v4), fsys::xattr_flags::create, h); }) ==
             errno_code(EEXIST));
  BOOST_TEST(run_ec(ctx, [&](auto h) { f.async_set_xattr("user.g", asio::buffer(v4), fsys::xattr_flags::replace, h); }) ==
             errno_code(ENODATA));
  got = run_value<std::string>(ctx, [&](auto h) { f.async_get_xattr("user.f", h); });
  BOOST_TEST(!got.first);
  BOOST_TEST(got.second == v4);
  got = run_value<std::string>(ctx, [&](auto h) { f.async_get_xattr("user.big", h); });
  BOOST_TEST((got.second == v3));
  got = run_value<std::string>(ctx, [&](auto h) { f.async_get_xattr("user.none", h); });
  BOOST_TEST(got.first == errno_code(ENODATA));
  names = run_value<std::vector<std::string>>(ctx, [&](auto h) { f.async_list_xattr(h); });
  std::sort(names.second.begin(), names.second.end());
  BOOST_TEST((names.second == std::vector<std::string>{"user.a", "user.big", "user.f"}));
  BOOST_TEST(!run_ec(ctx, [&](auto h) { f.async_remove_xattr("user.f", h); }));
  BOOST_TEST(run_ec(ctx, [&](auto h) { f.async_remove_xattr("user.f", h); }) == errno_code(ENODATA));
  BOOST_TEST((run_value<std::string>(ctx, [&](auto h) { f.async_get_xattr("", h); }).first == std::errc::invalid_argument));

  // Bad names and missing files.
  BOOST_TEST((run_value<std::string>(ctx, [&](auto h) { fsys::async_get_xattr(ctx, p, std::string_view("user.\0x", 7), h); })
                 .first == std::errc::invalid_argument));
  BOOST_TEST((run_ec(ctx, [&](auto h) { fsys::async_remove_xattr(ctx, p, "", h); }) == std::errc::invalid_argument));
  BOOST_TEST(run_value<std::string>(ctx, [&](auto h) { fsys::async_get_xattr(ctx, base.string() + "-missing", "user.a", h); })
                 .first == errno_code(ENOENT));
  BOOST_TEST(run_value<std::vector<std::string>>(ctx, [&](auto h) { fsys::async_list_xattr(ctx, base.string() + "-missing", h); })
                 .first == errno_code(ENOENT));
  f.close();
  BOOST_TEST((run_value<std::vector<std::string>>(ctx, [&](auto h) { f.async_list_xattr(h); }).first == fsys::errc::not_open));
  BOOST_TEST((run_value<std::string>(ctx, [&](auto h) { f.async_get_xattr("user.a", h); }).first == fsys::errc::not_open));
  fs::remove(p);
  return asio::use_service<fsys::uring_service>(ctx).stats().fs_ops_on_helper;
}

}  // namespace

// Each xattr operation through the ring (GETXATTR/SETXATTR where the probe
// has them) and on the psync workers (FSYS_TEST_DISABLE_OPS), same results.
BOOST_AUTO_TEST_CASE(xattrs_ring_and_worker) {
  temp_dir dir;
  std::string why;
  const fs::path d = xattr_dir(dir, 16, why);
  if (d.empty()) {
    BOOST_TEST_MESSAGE("no filesystem here takes user.* extended attributes (" << why << "): skipped");
    return;
  }
  const std::string tag = std::to_string(::getpid());
  ::unsetenv("FSYS_TEST_DISABLE_OPS");
  const std::uint64_t ring_helper = xattr_script(d / ("ring-" + tag));
  ::setenv("FSYS_TEST_DISABLE_OPS", "getxattr,setxattr", 1);
  const std::uint64_t worker_helper = xattr_script(d / ("worker-" + tag));
  ::unsetenv("FSYS_TEST_DISABLE_OPS");
  BOOST_TEST_MESSAGE("ops on the psync helper: ring " << ring_helper << ", forced " << worker_helper);
  const auto& f = fsys::probe_features();
  if (fsys::test::expected_backend() == fsys::backend::io_uring && f.op_getxattr && f.op_setxattr &&
      f.op_fgetxattr && f.op_fsetxattr) {
    // The forced run sent the 17 gets and sets that reach the kernel to the
    // helper too (the ring run: only list and remove went there).
    BOOST_TEST(worker_helper == ring_helper + 17);
    BOOST_TEST(f.fs_ops_through_ring().find("get_xattr") != std::string::npos);
  }
}

// A 64 KiB value (the kernel's limit) round trip, and one above the limit.
BOOST_AUTO_TEST_CASE(xattr_large_values) {
  temp_dir dir;
  std::string why;
  const fs::path d = xattr_dir(dir, 65536, why);
  if (d.empty()) {
    BOOST_TEST_MESSAGE("no filesystem here takes a 64 KiB user.* attribute (" << why << "): skipped");
    return;
  }
  asio::io_context ctx;
  fsys::test::make_ring(ctx);
  const fs::path p = d / ("large-" + std::to_string(::getpid()));
  put(p, "");
  std::string v(65536, '\0');
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<char>((i * 2654435761u) >> 13);
  BOOST_TEST(!run_ec(ctx, [&](auto h) { fsys::async_set_xattr(ctx, p, "user.large", asio::buffer(v), h); }));
  auto got = run_value<std::string>(ctx, [&](auto h) { fsys::async_get_xattr(ctx, p, "user.large", h); });
  BOOST_TEST(!got.first);
  BOOST_TEST(got.second.size() == v.size());
  BOOST_TEST((got.second == v));
  const std::string too_big(65537, 'x');
  BOOST_TEST(run_ec(ctx, [&](auto h) { fsys::async_set_xattr(ctx, p, "user.large2", asio::buffer(too_big), h); }) ==
             errno_code(E2BIG));
  fs::remove(p);
}

// Many lookups of a value that is replaced meanwhile by values of other
// sizes (smaller and larger than the last size answer): every result is one
// whole value that was set, never a truncated or mixed one.
BOOST_AUTO_TEST_CASE(xattr_value_changing_size_meanwhile) {
  temp_dir dir;
  std::string why;
  const fs::path d = xattr_dir(dir, 16, why);
  if (d.empty()) {
    BOOST_TEST_MESSAGE("no user.* extended attributes here (" << why << "): skipped");
    return;
  }
  const fs::path p = d / ("grow-" + std::to_string(::getpid()));
  put(p, "");
  std::vector<std::string> values;
  for (std::size_t n : {10, 300, 1000, 2000, 3500}) values.emplace_back(n, static_cast<char>('a' + n % 26));
  ::setxattr(p.c_str(), "user.g", values[0].data(), values[0].size(), 0);
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    for (std::size_t i = 0; !stop.load(); ++i) {
      const std::string& v = values[i % values.size()];
      ::setxattr(p.c_str(), "user.g", v.data(), v.size(), 0);
    }
  });
  asio::io_context ctx;
  fsys::test::make_ring(ctx);
  int ok = 0, bad = 0, errors = 0;
  std::mutex m;
  for (int i = 0; i < 300; ++i) {
    fsys::async_get_xattr(ctx, p, "user.g", [&](error_code ec, std::string v) {
      std::lock_guard lock(m);
      if (ec)
        ++errors;  // ERANGE only after 8 rounds of growth: allowed, never wrong data
      else if (std::find(values.begin(), values.end(), v) != values.end())
        ++ok;
      else
        ++bad;
    });
    if (i % 16 == 15) drain(ctx);
  }
  drain(ctx);
  stop = true;
  writer.join();
  BOOST_TEST(bad == 0);
  BOOST_TEST(ok + errors == 300);
  BOOST_TEST(ok > 0);
  fs::remove(p);
}

BOOST_AUTO_TEST_CASE(co_forms_throw_with_the_path) {
  asio::io_context ctx;
  fsys::test::make_ring(ctx);
  temp_dir dir;
  const auto p = dir.file("f");
  put(p, "x");
  const auto missing = dir.file("missing");
  int checks = 0;
  asio::co_spawn(
      ctx,
      [&]() -> asio::awaitable<void> {
        co_await fsys::co_set_permissions(ctx, p, 0612);
        co_await fsys::co_set_times(ctx, p, timespec{5, 6}, timespec{7, 8});
        if (::geteuid() == 0) co_await fsys::co_set_owner(ctx, p, 99, 98);
        try {
          co_await fsys::co_set_permissions(ctx, missing, 0600);
        } catch (const std::system_error& e) {
          if (e.code() == std::errc::no_such_file_or_directory &&
              std::string(e.what()).find("fsys::co_set_permissions") != std::string::npos &&
              std::string(e.what()).find(missing.string()) != std::string::npos)
            ++checks;
        }
        try {
          co_await fsys::co_get_xattr(ctx, missing, "user.a");
        } catch (const std::system_error& e) {
          if (e.code() == std::errc::no_such_file_or_directory) ++checks;
        }
        try {
          co_await fsys::co_remove_xattr(ctx, missing, "user.a");
        } catch (const std::system_error& e) {
          if (e.code() == std::errc::no_such_file_or_directory) ++checks;
        }
      },
      asio::detached);
  drain(ctx);
  BOOST_TEST(checks == 3);
  const struct stat st = stat_of(p);
  BOOST_TEST((st.st_mode & 07777) == 0612u);
  BOOST_TEST(same(st.st_mtim, timespec{7, 8}));
  if (::geteuid() == 0) BOOST_TEST(st.st_uid == 99u);
}

// Many setters in flight at once (4 threads in the -4t runs): each file ends
// with the values its own operations set.
BOOST_AUTO_TEST_CASE(many_setters_in_flight) {
  asio::io_context ctx;
  fsys::test::make_ring(ctx);
  temp_dir dir;
  constexpr int n = 64;
  std::atomic<int> failures{0};
  for (int i = 0; i < n; ++i) put(dir.file("f" + std::to_string(i)), "x");
  for (int i = 0; i < n; ++i) {
    const auto p = dir.file("f" + std::to_string(i));
    fsys::async_set_permissions(ctx, p, static_cast<mode_t>(0600 | (i & 077)), [&](error_code ec) {
      if (ec) ++failures;
    });
    fsys::async_set_times(ctx, p, fsys::file_time::omit(), timespec{1000 + i, i}, [&](error_code ec) {
      if (ec) ++failures;
    });
  }
  drain(ctx);
  BOOST_TEST(failures.load() == 0);
  for (int i = 0; i < n; ++i) {
    const struct stat st = stat_of(dir.file("f" + std::to_string(i)));
    BOOST_TEST((st.st_mode & 07777) == static_cast<mode_t>(0600 | (i & 077)));
    BOOST_TEST(same(st.st_mtim, timespec{1000 + i, i}));
  }
}

// Per-operation cancellation: cancelled at once or after a few handler
// turns, each setter either did its work (success) or did nothing
// (operation_aborted), never "aborted" with the change made.
BOOST_AUTO_TEST_CASE(cancelled_setters_either_happen_or_not) {
  asio::io_context ctx;
  fsys::test::make_ring(ctx);
  temp_dir dir;
  const auto p = dir.file("f");
  put(p, "x");
  int aborted = 0, done = 0, wrong = 0;
  for (int i = 0; i < 100; ++i) {
    const mode_t before = (i % 2) ? 0600 : 0640;
    const mode_t after = (i % 2) ? 0640 : 0600;
    ::chmod(p.c_str(), before);
    asio::cancellation_signal sig;
    std::optional<error_code> got;
    fsys::async_set_permissions(ctx, p, after, asio::bind_cancellation_slot(sig.slot(), [&](error_code ec) { got = ec; }));
    for (int k = 0; k < i % 4; ++k) ctx.poll_one();
    sig.emit(asio::cancellation_type::terminal);
    drain(ctx);
    BOOST_REQUIRE(got.has_value());
    const mode_t now = stat_of(p).st_mode & 07777;
    if (*got == asio::error::operation_aborted) {
      ++aborted;
      if (now != before) ++wrong;
    } else {
      ++done;
      if (*got || now != after) ++wrong;
    }
  }
  BOOST_TEST_MESSAGE("chmod cancelled: " << aborted << " aborted, " << done << " done");
  BOOST_TEST(wrong == 0);
  BOOST_TEST(aborted + done == 100);
}
