// The API a user meets first: error codes and their category, operations on
// a closed file, Asio's synchronous device model, file_base flags, the
// boost::system::error_code& overloads, the co_* functions on any executor,
// and the names and counters used in logs.
#include <boost/test/unit_test.hpp>

#include "support/fail_alloc.hpp"
#include "support/ring_fixture.hpp"
#include "support/run.hpp"
#include "support/temp_dir.hpp"

#include <fsys/fsys.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/read_at.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write_at.hpp>
#include <boost/system/system_error.hpp>

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <optional>
#include <sstream>
#include <thread>
#include <type_traits>
#include <vector>

namespace asio = boost::asio;
using boost::system::error_code;
using fsys::test::pattern;
using fsys::test::read_file;
using fsys::test::temp_dir;

namespace {

/// Open descriptors of this process (entries of /proc/self/fd, minus the
/// directory stream's own).
int open_fd_count() {
  DIR* d = ::opendir("/proc/self/fd");
  BOOST_REQUIRE(d != nullptr);
  int n = 0;
  while (dirent* e = ::readdir(d))
    if (e->d_name[0] != '.') ++n;
  ::closedir(d);
  return n - 1;
}

template <class T>
T run_coro(asio::io_context& ctx, asio::awaitable<T> aw) {
  std::optional<T> result;
  std::exception_ptr err;
  asio::co_spawn(ctx, std::move(aw), [&](std::exception_ptr e, T v) {
    err = e;
    result = std::move(v);
  });
  fsys::test::run(ctx);
  ctx.restart();
  if (err) std::rethrow_exception(err);
  BOOST_REQUIRE(result.has_value());
  return *result;
}

std::string as_string(const std::vector<std::byte>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size());
}

}  // namespace

// ---- the fsys error category ------------------------------------------------

BOOST_AUTO_TEST_CASE(boost_error_code_has_the_fsys_category_and_a_stable_value) {
  const error_code b(fsys::errc::not_open);
  BOOST_TEST(std::string(b.category().name()) == "fsys");
  BOOST_TEST(b.value() == static_cast<int>(fsys::errc::not_open));
  BOOST_TEST(b.value() == 6);  // the enum's value is part of the API: logs keep it
  BOOST_TEST((b.category() == fsys::boost_error_category()));
  BOOST_TEST(b.message() == "file is not open");

  error_code assigned;
  assigned = fsys::errc::offset_overflow;
  BOOST_TEST(std::string(assigned.category().name()) == "fsys");
  BOOST_TEST(assigned.value() == static_cast<int>(fsys::errc::offset_overflow));

  // A log line made of category and value.
  std::ostringstream log;
  log << b.category().name() << ':' << b.value();
  BOOST_TEST(log.str() == "fsys:6");
  BOOST_TEST(b.to_string() == "fsys:6");
}

BOOST_AUTO_TEST_CASE(std_and_boost_codes_compare_equal_both_ways) {
  const std::error_code s = make_error_code(fsys::errc::already_open);
  const error_code b(fsys::errc::already_open);
  BOOST_TEST(std::string(s.category().name()) == "fsys");
  BOOST_TEST(s.value() == static_cast<int>(fsys::errc::already_open));
  BOOST_TEST((&s.category() == &fsys::error_category()));

  // boost <-> std, in both directions and both argument orders.
  BOOST_TEST((b == s));
  BOOST_TEST((s == b));
  BOOST_TEST((std::error_code(b) == s));
  BOOST_TEST((error_code(s) == b));
  BOOST_TEST(std::string(error_code(s).category().name()) == "fsys");  // not "std:unknown"
  BOOST_TEST(error_code(s).value() == s.value());
  BOOST_TEST((error_code(s).category() == fsys::boost_error_category()));
  // A round trip keeps category and value.
  BOOST_TEST((std::error_code(error_code(s)) == s));

  // Against the enum itself.
  BOOST_TEST((b == fsys::errc::already_open));
  BOOST_TEST((s == fsys::errc::already_open));
  BOOST_TEST((b != fsys::errc::not_open));
  BOOST_TEST((s != fsys::errc::not_open));

  // Against the generic conditions, from either library.
  BOOST_TEST((b == std::errc::device_or_resource_busy));
  BOOST_TEST((s == std::errc::device_or_resource_busy));
  BOOST_TEST((b == boost::system::errc::device_or_resource_busy));
  BOOST_TEST((b != std::errc::bad_file_descriptor));
  BOOST_TEST((error_code(fsys::errc::not_open) == std::errc::bad_file_descriptor));
  BOOST_TEST((std::error_code(fsys::errc::not_open) == std::errc::bad_file_descriptor));
  BOOST_TEST((std::error_code(fsys::errc::offset_overflow) == std::errc::value_too_large));
  BOOST_TEST((error_code(fsys::errc::misaligned_direct_io) == std::errc::invalid_argument));
  // Errors without a generic equivalent match none.
  BOOST_TEST((error_code(fsys::errc::io_uring_setup_failed) != std::errc::bad_file_descriptor));

  // Messages agree.
  BOOST_TEST(s.message() == b.message());
  BOOST_TEST(b.message() == "file is already open");
  BOOST_TEST(error_code(fsys::errc::io_uring_setup_failed).message() == "io_uring setup failed");
}

BOOST_AUTO_TEST_CASE(handlers_receive_fsys_errors_in_the_fsys_category) {
  temp_dir dir;
  asio::io_context ctx;
  fsys::file f(ctx, dir.file("cat.dat"), O_RDWR | O_CREAT);
  std::array<std::byte, 16> buf{};
  error_code got;
  f.async_read_at(std::numeric_limits<std::uint64_t>::max() - 4, asio::buffer(buf),
                  [&](error_code ec, std::size_t) { got = ec; });
  fsys::test::run(ctx);
  BOOST_TEST(std::string(got.category().name()) == "fsys");
  BOOST_TEST(got.value() == static_cast<int>(fsys::errc::offset_overflow));
  BOOST_TEST((got == fsys::errc::offset_overflow));
  BOOST_TEST((std::error_code(got) == fsys::errc::offset_overflow));
}

// ---- operations on a file without a descriptor ------------------------------

namespace {

// Runs every asynchronous operation on `f` and checks each completes, from
// the io_context, with errc::not_open and 0 bytes.
void expect_async_not_open(asio::io_context& ctx, fsys::file& f) {
  std::array<std::byte, 64> buf{};
  // The handlers may run on several threads at once (FSYS_TEST_MT).
  std::atomic<int> done{0};
  std::atomic<bool> in_initiation{true};
  auto check2 = [&](error_code ec, std::size_t n) {
    FSYS_TEST_MT(!in_initiation.load());
    FSYS_TEST_MT((ec == fsys::errc::not_open));
    FSYS_TEST_MT(std::string(ec.category().name()) == "fsys");
    FSYS_TEST_MT(n == 0u);
    ++done;
  };
  auto check1 = [&](error_code ec) {
    FSYS_TEST_MT(!in_initiation.load());
    FSYS_TEST_MT((ec == fsys::errc::not_open));
    ++done;
  };
  f.async_read_some_at(0, asio::buffer(buf), check2);
  f.async_write_some_at(0, asio::buffer(buf), check2);
  f.async_read_at(0, asio::buffer(buf), check2);
  f.async_write_at(0, asio::buffer(buf), check2);
  f.async_write_linked_fsync(0, asio::buffer(buf), check2);
  f.async_read_fixed_at(0, fsys::fixed_buffer{asio::buffer(buf), 0}, check2);
  f.async_write_fixed_at(0, fsys::fixed_buffer{asio::buffer(buf), 0}, check2);
  f.async_fdatasync(check1);
  f.async_fsync(check1);
  in_initiation = false;
  fsys::test::run(ctx);
  ctx.restart();
  BOOST_TEST(done.load() == 9);
}

void expect_sync_not_open(fsys::file& f) {
  std::array<std::byte, 64> buf{};
  std::error_code s;
  error_code b;
  BOOST_TEST(f.read_some_at(0, asio::buffer(buf), s) == 0u);
  BOOST_TEST((s == fsys::errc::not_open));
  BOOST_TEST(f.write_some_at(0, asio::buffer(buf), b) == 0u);
  BOOST_TEST((b == fsys::errc::not_open));
  BOOST_TEST(f.size(b) == 0u);
  BOOST_TEST((b == fsys::errc::not_open));
  f.resize(10, s);
  BOOST_TEST((s == fsys::errc::not_open));
  f.sync_all(b);
  BOOST_TEST((b == fsys::errc::not_open));
  f.sync_data(s);
  BOOST_TEST((s == fsys::errc::not_open));
  f.cancel(b);
  BOOST_TEST((b == fsys::errc::not_open));
  BOOST_TEST(f.release(s) == -1);
  BOOST_TEST((s == fsys::errc::not_open));
  f.close(b);  // closing a closed file is not an error, as in Asio
  BOOST_TEST(!b);
  try {
    (void)f.read_some_at(0, asio::buffer(buf));
    BOOST_FAIL("read_some_at on a closed file did not throw");
  } catch (const std::system_error& e) {
    BOOST_TEST((e.code() == fsys::errc::not_open));
  }
  BOOST_CHECK_THROW(f.sync_data(), std::system_error);
  BOOST_CHECK_THROW((void)f.size(), std::system_error);
}

}  // namespace

BOOST_AUTO_TEST_CASE(never_opened_closed_and_moved_from_files_report_not_open) {
  temp_dir dir;
  asio::io_context ctx;

  fsys::file never(ctx);
  expect_async_not_open(ctx, never);
  expect_sync_not_open(never);

  fsys::file closed(ctx, dir.file("closed.dat"), O_RDWR | O_CREAT);
  closed.close();
  expect_async_not_open(ctx, closed);
  expect_sync_not_open(closed);

  fsys::file moved_from(ctx, dir.file("moved.dat"), O_RDWR | O_CREAT);
  fsys::file target(std::move(moved_from));
  BOOST_TEST(target.is_open());
  BOOST_TEST(!moved_from.is_open());  // NOLINT(bugprone-use-after-move): the state under test
  expect_async_not_open(ctx, moved_from);
  expect_sync_not_open(moved_from);

  fsys::file assigned_from(ctx, dir.file("moved2.dat"), O_RDWR | O_CREAT);
  target = std::move(assigned_from);
  expect_async_not_open(ctx, assigned_from);

  fsys::file released(ctx, dir.file("released.dat"), O_RDWR | O_CREAT);
  int fd = released.release();
  BOOST_TEST(fd >= 0);
  ::close(fd);
  expect_async_not_open(ctx, released);
}

BOOST_AUTO_TEST_CASE(blocking_ring_keeps_ebadf_for_a_negative_descriptor) {
  // blocking_ring borrows descriptors; a bad one is the kernel's EBADF, not
  // "file not open".
  fsys::blocking_ring ring;
  std::array<std::byte, 8> buf{};
  std::error_code ec;
  BOOST_TEST(ring.read_at(-1, buf, 0, ec) == 0u);
  BOOST_TEST((ec == std::error_code(EBADF, std::system_category())));
  BOOST_TEST((ec != fsys::errc::not_open));
}

BOOST_AUTO_TEST_CASE(open_or_adopt_on_an_open_file_reports_already_open) {
  temp_dir dir;
  asio::io_context ctx;
  auto path = dir.file("twice.dat");
  fsys::file f(ctx, path, O_RDWR | O_CREAT);
  const int fd = f.native_handle();
  const int fds_before = open_fd_count();

  std::error_code s;
  error_code b;
  f.open(path, O_RDONLY, 0, s);
  BOOST_TEST((s == fsys::errc::already_open));
  BOOST_TEST((s == std::errc::device_or_resource_busy));
  f.open(path, fsys::file::read_only, b);
  BOOST_TEST((b == fsys::errc::already_open));
  BOOST_TEST(std::string(b.category().name()) == "fsys");
  int other = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  f.adopt(other, s);
  BOOST_TEST((s == fsys::errc::already_open));
  f.assign(other, b);
  BOOST_TEST((b == fsys::errc::already_open));
  BOOST_CHECK_THROW(f.open(path, O_RDONLY), std::system_error);
  BOOST_CHECK_THROW(f.assign(other), std::system_error);
  ::close(other);
  // Nothing leaked, the file still holds its descriptor.
  BOOST_TEST(open_fd_count() == fds_before);
  BOOST_TEST(f.native_handle() == fd);
}

BOOST_AUTO_TEST_CASE(open_closes_its_descriptor_when_adopting_it_fails) {
  temp_dir dir;
  asio::io_context ctx;
  auto path = dir.file("leak.dat");
  fsys::test::write_file(path, pattern(100, 3));
  fsys::file f(ctx);  // the service (and its descriptors) exists before counting
  const int fds_before = open_fd_count();
  // Fail the 1st, 2nd, ... allocation inside open until open succeeds: every
  // failing attempt must report ENOMEM and leave no descriptor behind.
  int failures = 0;
  for (long k = 0;; ++k) {
    BOOST_REQUIRE(k < 50);
    std::error_code ec;
    fsys::detail::release_thread_caches();  // every allocation really allocates
    fsys::test::fail_allocation(k);
    f.open(path, O_RDONLY, 0, ec);
    fsys::test::fail_allocation(-1);
    if (!ec) break;
    ++failures;
    BOOST_TEST((ec == std::errc::not_enough_memory));
    BOOST_TEST(!f.is_open());
    BOOST_TEST(open_fd_count() == fds_before);
  }
  BOOST_TEST(failures >= 1);
  BOOST_TEST(f.is_open());
  BOOST_TEST(f.size() == 100u);
  f.close();
  BOOST_TEST(open_fd_count() == fds_before);
}

BOOST_AUTO_TEST_CASE(a_thread_gives_back_its_recycled_blocks_when_it_exits) {
  // Each thread keeps recycled file handles and file-system argument blocks
  // (lib/hot_tls.hpp); they must be freed when the thread exits. A thread
  // opens, stats, reads and closes files, 16 at a time, on its own
  // io_context, and exits: every allocation made meanwhile has been freed.
  temp_dir dir;
  std::vector<std::string> paths;
  for (int i = 0; i < 16; ++i) {
    paths.push_back(dir.file("r" + std::to_string(i)));
    fsys::test::write_file(paths.back(), pattern(512, i));
  }
  {
    asio::io_context warm;  // the process-wide probe, made once, outside the count
    fsys::test::make_ring(warm);
  }
  const long before = fsys::test::live_allocations();
  std::atomic<int> served{0};
  std::thread t([&] {
    asio::io_context ctx;
    fsys::test::make_ring(ctx);
    for (int c = 0; c < 16; ++c)
      asio::co_spawn(ctx, [&, c]() -> asio::awaitable<void> {
        std::array<char, 512> buf;
        for (int round = 0; round < 20; ++round) {
          fsys::file f = co_await fsys::co_open(ctx, paths[c], O_RDONLY);
          if ((co_await fsys::co_stat(f)).size != 512) co_return;
          const auto n = co_await fsys::co_read_at(f, 0, asio::buffer(buf));
          co_await fsys::co_close(f);
          if (n == 512 && std::memcmp(buf.data(), pattern(512, c).data(), 512) == 0) served.fetch_add(1);
        }
      }, asio::detached);
    ctx.run();
  });
  t.join();
  BOOST_TEST(served.load() == 16 * 20);
  BOOST_TEST(fsys::test::live_allocations() == before);
}

// ---- Asio's synchronous random-access device model ----------------------------

BOOST_AUTO_TEST_CASE(read_some_at_and_write_some_at_in_the_calling_thread) {
  temp_dir dir;
  asio::io_context ctx;
  auto path = dir.file("sync.dat");
  fsys::file f(ctx, path, fsys::file::read_write | fsys::file::create);
  auto data = pattern(10000, 4);

  // Two buffers, one pwritev.
  std::array<asio::const_buffer, 2> out{asio::buffer(data.data(), 3000), asio::buffer(data.data() + 3000, 7000)};
  BOOST_TEST(f.write_some_at(5, out) == 10000u);
  auto disk = read_file(path);
  BOOST_REQUIRE(disk.size() == 10005u);
  BOOST_TEST(std::equal(data.begin(), data.end(), disk.begin() + 5));

  std::vector<std::byte> back(10000);
  std::array<asio::mutable_buffer, 2> in{asio::buffer(back.data(), 100), asio::buffer(back.data() + 100, 9900)};
  BOOST_TEST(f.read_some_at(5, in) == 10000u);
  BOOST_TEST((back == data));

  // Near the end: fewer bytes, no error; at the end: eof, as Asio reports it.
  std::error_code s;
  error_code b;
  BOOST_TEST(f.read_some_at(10000, asio::buffer(back), s) == 5u);
  BOOST_TEST(!s);
  BOOST_TEST(f.read_some_at(10005, asio::buffer(back), b) == 0u);
  BOOST_TEST((b == asio::error::eof));
  BOOST_TEST(f.read_some_at(1 << 20, asio::buffer(back), s) == 0u);
  BOOST_TEST((s == std::error_code(error_code(asio::error::eof))));
  BOOST_CHECK_THROW((void)f.read_some_at(10005, asio::buffer(back)), std::system_error);
  // Empty buffers: nothing to do, no error, even at the end of file.
  BOOST_TEST(f.read_some_at(10005, asio::mutable_buffer(), b) == 0u);
  BOOST_TEST(!b);
  BOOST_TEST(f.write_some_at(0, asio::const_buffer(), s) == 0u);
  BOOST_TEST(!s);

  // Kernel errors come back in the system category for both code types.
  fsys::file ro(ctx, path, fsys::file::read_only);
  BOOST_TEST(ro.write_some_at(0, asio::buffer(data), b) == 0u);
  BOOST_TEST((b == boost::system::error_code(EBADF, boost::system::system_category())));
  BOOST_TEST((b.category() == boost::system::system_category()));
  BOOST_TEST(ro.write_some_at(0, asio::buffer(data), s) == 0u);
  BOOST_TEST((s == std::error_code(EBADF, std::system_category())));
  // Offsets past off_t are refused before the kernel sees them.
  BOOST_TEST(ro.read_some_at(std::numeric_limits<std::uint64_t>::max(), asio::buffer(back), b) == 0u);
  BOOST_TEST((b == fsys::errc::offset_overflow));
}

BOOST_AUTO_TEST_CASE(asio_read_at_and_write_at_compose_over_the_sync_calls) {
  temp_dir dir;
  asio::io_context ctx;
  auto path = dir.file("compose.dat");
  fsys::file f(ctx, path, fsys::file::read_write | fsys::file::create | fsys::file::truncate);
  auto data = pattern(300000, 5);
  BOOST_TEST(asio::write_at(f, 0, asio::buffer(data)) == data.size());
  error_code ec;
  BOOST_TEST(asio::write_at(f, data.size(), asio::buffer(data.data(), 1000), ec) == 1000u);
  BOOST_TEST(!ec);
  BOOST_TEST(f.size() == data.size() + 1000);

  std::vector<std::byte> back(data.size());
  BOOST_TEST(asio::read_at(f, 0, asio::buffer(back)) == back.size());
  BOOST_TEST((back == data));
  // Across the end of file asio::read_at reports eof with the bytes it got;
  // the member async_read_at (below) reports a short count without error.
  std::vector<std::byte> tail(5000);
  BOOST_TEST(asio::read_at(f, data.size() - 1000, asio::buffer(tail), ec) == 2000u);
  BOOST_TEST((ec == asio::error::eof));

  // The ring sees what the sync calls wrote, and vice versa.
  std::size_t n = 0;
  error_code aec;
  f.async_read_at(data.size() - 1000, asio::buffer(tail), [&](error_code e, std::size_t m) {
    aec = e;
    n = m;
  });
  fsys::test::run(ctx);
  BOOST_TEST(!aec);
  BOOST_TEST(n == 2000u);
}

// ---- file_base flags and the Asio-shaped calls ------------------------------------

static_assert(std::is_enum_v<fsys::file_base::flags>);
static_assert(!std::is_same_v<fsys::file_base::flags, int>);
static_assert(std::is_same_v<decltype(fsys::file::read_write | fsys::file::create), fsys::file::flags>);
// Combining with a raw open(2) flag selects the int form (O_DIRECT, ...).
static_assert(std::is_same_v<decltype(fsys::file::read_only | O_DIRECT), int>);
static_assert(std::is_base_of_v<fsys::file_base, fsys::file>);
static_assert(fsys::file::read_write == O_RDWR && fsys::file::create == O_CREAT &&
              fsys::file::sync_all_on_write == O_SYNC && fsys::file::append == O_APPEND);

BOOST_AUTO_TEST_CASE(file_base_flags_have_asio_meanings) {
  temp_dir dir;
  asio::io_context ctx;
  auto path = dir.file("flags.dat");

  // create + exclusive: creates once, then fails with EEXIST.
  fsys::file f(ctx, path, fsys::file::write_only | fsys::file::create | fsys::file::exclusive);
  BOOST_TEST(std::filesystem::exists(path));
  struct stat st;
  BOOST_REQUIRE(::stat(path.c_str(), &st) == 0);
  BOOST_TEST((st.st_mode & 0777 & ~0644) == 0u);  // 0644 minus the umask
  BOOST_TEST(asio::write_at(f, 0, asio::buffer("hello world", 11)) == 11u);
  // write_only: reading fails.
  std::array<char, 4> b4{};
  error_code ec;
  f.read_some_at(0, asio::buffer(b4), ec);
  BOOST_TEST((ec == std::errc::bad_file_descriptor));
  f.close();
  fsys::file again(ctx);
  again.open(path, fsys::file::read_write | fsys::file::create | fsys::file::exclusive, ec);
  BOOST_TEST((ec == std::errc::file_exists));
  BOOST_TEST(!again.is_open());

  // append: writes go to the end whatever the offset.
  again.open(path.string(), fsys::file::write_only | fsys::file::append);
  again.write_some_at(0, asio::buffer("!", 1));
  again.close();
  BOOST_TEST(as_string(read_file(path)) == "hello world!");

  // truncate empties an existing file; sync_all_on_write sets O_SYNC.
  fsys::file t(ctx.get_executor(), path.c_str(), fsys::file::read_write | fsys::file::truncate |
                                                    fsys::file::sync_all_on_write);
  BOOST_TEST(t.size() == 0u);
  BOOST_TEST((::fcntl(t.native_handle(), F_GETFL) & O_SYNC) == O_SYNC);
  BOOST_TEST((::fcntl(t.native_handle(), F_GETFD) & FD_CLOEXEC) == FD_CLOEXEC);

  // read_only: writing fails; flags combined with int flags use open(2) flags.
  fsys::file ro(ctx, path, fsys::file::read_only | O_NOATIME);
  ro.write_some_at(0, asio::buffer("x", 1), ec);
  BOOST_TEST((ec == std::errc::bad_file_descriptor));

  // A missing file: ENOENT in the system category, from either code type.
  fsys::file missing(ctx);
  missing.open(dir.file("none/x"), fsys::file::read_only, ec);
  BOOST_TEST((ec == std::errc::no_such_file_or_directory));
  BOOST_TEST((ec.category() == boost::system::system_category()));
  BOOST_CHECK_THROW(fsys::file(ctx, dir.file("none/x"), fsys::file::read_only), std::system_error);
}

BOOST_AUTO_TEST_CASE(resize_size_sync_assign_release_cancel) {
  temp_dir dir;
  asio::io_context ctx;
  auto path = dir.file("misc.dat");
  fsys::file f(ctx, path, fsys::file::read_write | fsys::file::create);
  f.resize(12345);
  BOOST_TEST(f.size() == 12345u);
  BOOST_TEST(std::filesystem::file_size(path) == 12345u);
  error_code b;
  std::error_code s;
  f.resize(10, b);
  BOOST_TEST(!b);
  BOOST_TEST(f.size(b) == 10u);
  f.resize(std::numeric_limits<std::uint64_t>::max(), s);
  BOOST_TEST((s == fsys::errc::offset_overflow));
  f.sync_all();
  f.sync_data();
  f.sync_all(s);
  BOOST_TEST(!s);
  f.sync_data(b);
  BOOST_TEST(!b);

  // release gives the descriptor back open; assign takes one.
  const int fd = f.release();
  BOOST_TEST(!f.is_open());
  BOOST_TEST(::fcntl(fd, F_GETFD) != -1);
  f.assign(fd);
  BOOST_TEST(f.native_handle() == fd);
  BOOST_TEST(f.size() == 10u);
  fsys::file g(ctx);
  const int fd2 = f.release(b);
  BOOST_TEST(!b);
  g.assign(fd2, s);
  BOOST_TEST(!s);
  BOOST_TEST(g.size() == 10u);

  // cancel(ec) on an open file succeeds and cancels what is in flight.
  g.cancel(b);
  BOOST_TEST(!b);
  g.cancel(s);
  BOOST_TEST(!s);
  if (g.service().active_backend() != fsys::backend::io_uring) {
    // A psync pipe read blocks a worker thread and is not in a kernel queue.
    BOOST_TEST_MESSAGE("pipe cancellation checked on io_uring only");
    return;
  }
  int p[2];
  BOOST_REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
  fsys::file pipe_r(ctx, p[0]);
  std::array<std::byte, 16> buf{};
  error_code got;
  pipe_r.async_read_some_at(0, asio::buffer(buf), [&](error_code ec, std::size_t) { got = ec; });
  ctx.poll();
  pipe_r.cancel(b);
  BOOST_TEST(!b);
  fsys::test::run(ctx);
  BOOST_TEST((got == asio::error::operation_aborted));
  ::close(p[1]);
}

BOOST_AUTO_TEST_CASE(files_move_between_executor_types) {
  temp_dir dir;
  asio::io_context ctx;
  using strand_file = fsys::basic_file<asio::strand<asio::io_context::executor_type>>;
  strand_file sf(asio::make_strand(ctx), dir.file("mv.dat"), fsys::file::read_write | fsys::file::create);
  sf.write_some_at(0, asio::buffer("abc", 3));
  fsys::file f(std::move(sf));  // strand -> any_io_executor
  BOOST_TEST(f.is_open());
  BOOST_TEST(!sf.is_open());  // NOLINT(bugprone-use-after-move): the state under test
  BOOST_TEST(f.size() == 3u);
  fsys::file g(ctx);
  g = strand_file(asio::make_strand(ctx), dir.file("mv2.dat"), fsys::file::read_write | fsys::file::create);
  BOOST_TEST(g.is_open());
}

// ---- co_* functions ---------------------------------------------------------------

BOOST_AUTO_TEST_CASE(co_functions_on_a_strand_with_buffer_sequences) {
  temp_dir dir;
  asio::io_context ctx;
  auto path = dir.file("co_strand.dat");
  auto data = pattern(20000, 6);
  auto strand = asio::make_strand(ctx);
  std::optional<std::size_t> result;
  std::exception_ptr err;
  asio::co_spawn(
      strand,
      [&]() -> asio::awaitable<std::size_t> {
        fsys::basic_file<asio::strand<asio::io_context::executor_type>> f(
            strand, path, fsys::file::read_write | fsys::file::create);
        std::array<asio::const_buffer, 3> out{asio::buffer(data.data(), 1), asio::buffer(data.data() + 1, 9999),
                                               asio::buffer(data.data() + 10000, 10000)};
        BOOST_TEST(co_await fsys::co_write_at(f, 0, out) == 20000u);
        BOOST_TEST(strand.running_in_this_thread());
        std::vector<asio::const_buffer> more{asio::buffer(data.data(), 100)};
        BOOST_TEST(co_await fsys::co_write_linked_fsync(f, 20000, more) == 100u);
        co_await fsys::co_fdatasync(f);
        co_await fsys::co_fsync(f);
        BOOST_TEST(strand.running_in_this_thread());
        std::vector<std::byte> back(20100);
        std::array<asio::mutable_buffer, 2> in{asio::buffer(back.data(), 7), asio::buffer(back.data() + 7, 20093)};
        std::size_t n = co_await fsys::co_read_at(f, 0, in);
        BOOST_TEST(std::equal(data.begin(), data.end(), back.begin()));
        BOOST_TEST(std::equal(data.begin(), data.begin() + 100, back.begin() + 20000));
        // Errors are std::system_error, on any executor.
        fsys::basic_file<asio::strand<asio::io_context::executor_type>> closed(strand);
        try {
          co_await fsys::co_fsync(closed);
          BOOST_FAIL("co_fsync on a closed file did not throw");
        } catch (const std::system_error& e) {
          BOOST_TEST((e.code() == fsys::errc::not_open));
        }
        co_return n;
      },
      [&](std::exception_ptr e, std::size_t n) {
        err = e;
        result = n;
      });
  fsys::test::run(ctx);
  if (err) std::rethrow_exception(err);
  BOOST_REQUIRE(result.has_value());
  BOOST_TEST(*result == 20100u);
  BOOST_TEST(read_file(path).size() == 20100u);
}

BOOST_AUTO_TEST_CASE(co_fsync_and_co_read_at_on_fsys_file) {
  temp_dir dir;
  asio::io_context ctx;
  auto path = dir.file("co.dat");
  auto n = run_coro(ctx, [&]() -> asio::awaitable<std::size_t> {
    fsys::file f(co_await asio::this_coro::executor, path, fsys::file::read_write | fsys::file::create);
    std::string text = "fsync me";
    co_await fsys::co_write_at(f, 0, asio::buffer(text));
    co_await fsys::co_fsync(f);
    std::string back(20, '\0');
    co_return co_await fsys::co_read_at(f, 0, asio::buffer(back));  // short at end of file
  }());
  BOOST_TEST(n == 8u);
}

// ---- names and counters for logs -----------------------------------------------------

static_assert(std::is_same_v<decltype(std::declval<fsys::uring_service&>().stats()), fsys::engine_stats>);
static_assert(std::is_same_v<decltype(std::declval<fsys::blocking_ring&>().stats()), fsys::engine_stats>);
static_assert(std::is_same_v<fsys::detail::engine_stats, fsys::engine_stats>);

BOOST_AUTO_TEST_CASE(to_string_names_and_public_stats) {
  BOOST_TEST(fsys::to_string(fsys::backend::io_uring) == "io_uring");
  BOOST_TEST(fsys::to_string(fsys::backend::psync) == "psync");
  BOOST_TEST(fsys::to_string(fsys::fallback_policy::automatic) == "automatic");
  BOOST_TEST(fsys::to_string(fsys::fallback_policy::require_io_uring) == "require_io_uring");
  BOOST_TEST(fsys::to_string(fsys::fallback_policy::force_psync) == "force_psync");
  BOOST_TEST(fsys::to_string(fsys::issuer_mode::single_thread) == "single_thread");
  static_assert(fsys::to_string(fsys::backend::psync) == "psync");

  temp_dir dir;
  asio::io_context ctx;
  auto& svc = fsys::test::make_ring(ctx);
  BOOST_TEST(fsys::to_string(svc.active_backend()) ==
             (fsys::test::expected_backend() == fsys::backend::io_uring ? "io_uring" : "psync"));
  const fsys::engine_stats before = svc.stats();
  fsys::file f(ctx, dir.file("stats.dat"), fsys::file::read_write | fsys::file::create);
  std::array<std::byte, 4096> buf{};
  f.async_write_at(0, asio::buffer(buf), [](error_code, std::size_t) {});
  f.async_fdatasync([](error_code) {});
  fsys::test::run(ctx);
  const fsys::engine_stats after = svc.stats();
  BOOST_TEST(after.ops_started - before.ops_started == 2u);
  BOOST_TEST(after.ops_completed - before.ops_completed == 2u);
  if (svc.active_backend() == fsys::backend::io_uring) {
    BOOST_TEST(after.sqes_submitted - before.sqes_submitted >= 2u);
    BOOST_TEST(after.cqes_reaped - before.cqes_reaped >= 2u);
    BOOST_TEST(after.enter_calls > before.enter_calls);
  } else {
    BOOST_TEST(after.sqes_submitted == 0u);
    BOOST_TEST(after.enter_calls == 0u);
  }
}

// ---- io_context destruction --------------------------------------------------------

BOOST_AUTO_TEST_CASE(destroying_the_io_context_drops_pending_handlers_without_running_them) {
  int p[2];
  BOOST_REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
  int ran = 0;
  auto alive = std::make_shared<int>(0);
  std::weak_ptr<int> watch = alive;
  {
    asio::io_context ctx;
    fsys::file rd(ctx, p[0]);
    for (int i = 0; i < 8; ++i) {
      auto buf = std::make_shared<std::array<std::byte, 64>>();
      // An empty pipe: the reads stay pending until the context goes away.
      rd.async_read_some_at(0, asio::buffer(*buf), [buf, alive, &ran](error_code, std::size_t) { ++ran; });
    }
    alive.reset();
    ctx.poll();
    rd.release();  // the context goes first; the pipe is closed below
  }
  BOOST_TEST(ran == 0);            // not one handler ran
  BOOST_TEST(watch.expired());     // and every one was destroyed
  ::close(p[0]);
  ::close(p[1]);
}
