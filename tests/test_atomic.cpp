// Untorn writes (RWF_ATOMIC): async_write_atomic_at, the linked durable form,
// the checks before submission and the limits async_stat reports.
//
// The supported cases need a filesystem that takes RWF_ATOMIC: the suite
// makes a loop-mounted XFS itself (root, mkfs.xfs from xfsprogs, loop
// devices; Linux 6.16+ XFS does untorn writes in software on any disk), and
// skips those cases with a printed reason where it cannot. The refused cases
// run on that XFS, on a loop-mounted ext4 made the same way (no atomic
// writes on a loop device), and on tmpfs.
#include <boost/test/unit_test.hpp>

#include "support/run.hpp"
#include "support/temp_dir.hpp"

#include <fsys/fsys.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace asio = boost::asio;
using boost::system::error_code;

namespace {

bool have_program(const char* name) {
  std::string cmd = "command -v ";
  cmd += name;
  cmd += " >/dev/null 2>&1";
  return std::system(cmd.c_str()) == 0;
}

/// A filesystem of `type` made in a sparse image file and loop-mounted, for
/// the life of the process (unmounted and removed at exit). `ok()` is false,
/// with `why()` saying why, where that is not possible here.
class loop_mount {
 public:
  loop_mount(const char* type, const char* mkfs, const char* size) {
    if (::geteuid() != 0) {
      why_ = "not root (mount needs it)";
      return;
    }
    if (!have_program(mkfs)) {
      why_ = std::string(mkfs) + " is not installed (xfsprogs / e2fsprogs; see scripts/setup)";
      return;
    }
    if (!std::filesystem::exists("/dev/loop-control")) {
      why_ = "no loop devices (/dev/loop-control)";
      return;
    }
    // The image on a disk-backed directory (sparse: costs what is written).
    const char* base = std::filesystem::exists("/var/tmp") ? "/var/tmp" : "/tmp";
    char tmpl[256];
    std::snprintf(tmpl, sizeof tmpl, "%s/fsys-atomic-%s-XXXXXX", base, type);
    if (!::mkdtemp(tmpl)) {
      why_ = "mkdtemp failed";
      return;
    }
    root_ = tmpl;
    image_ = root_ / "fs.img";
    dir_ = root_ / "mnt";
    std::filesystem::create_directory(dir_);
    const std::string cmd = "truncate -s " + std::string(size) + " '" + image_.string() + "' && " + mkfs + " -q " +
                            (std::string(type) == "ext4" ? "-F " : "") + "'" + image_.string() + "' >/dev/null 2>&1 && mount -o loop '" +
                            image_.string() + "' '" + dir_.string() + "' 2>&1";
    if (std::system(cmd.c_str()) != 0) {
      why_ = std::string("making or mounting a loop ") + type + " failed (" + cmd + ")";
      std::filesystem::remove_all(root_);
      root_.clear();
      return;
    }
    mounted_ = true;
  }
  ~loop_mount() {
    if (mounted_) ::umount2(dir_.c_str(), MNT_DETACH);
    if (!root_.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(root_, ec);
    }
  }
  bool ok() const noexcept { return mounted_; }
  const std::string& why() const noexcept { return why_; }
  std::filesystem::path file(const std::string& name) const { return dir_ / name; }

 private:
  std::filesystem::path root_, image_, dir_;
  std::string why_;
  bool mounted_ = false;
};

loop_mount& xfs() {
  static loop_mount m("xfs", "mkfs.xfs", "512M");  // mkfs.xfs wants at least 300 MB
  return m;
}
loop_mount& ext4() {
  static loop_mount m("ext4", "mkfs.ext4", "64M");
  return m;
}

#define REQUIRE_MOUNT(m)                                        \
  do {                                                          \
    if (!(m).ok()) {                                            \
      BOOST_TEST_MESSAGE("skip: " << (m).why());                \
      return;                                                   \
    }                                                           \
  } while (0)

/// `n` bytes of `v`, in memory aligned for O_DIRECT.
fsys::aligned_buffer filled(std::size_t n, unsigned char v) {
  fsys::aligned_buffer b(n, 4096);
  std::memset(b.data(), v, n);
  return b;
}

/// The file's bytes [offset, offset + n), read with pread (not through fsys).
std::vector<unsigned char> read_back(const std::filesystem::path& p, std::uint64_t offset, std::size_t n) {
  std::vector<unsigned char> v(n);
  const int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
  BOOST_REQUIRE(fd >= 0);
  const ssize_t r = ::pread(fd, v.data(), n, static_cast<off_t>(offset));
  ::close(fd);
  BOOST_REQUIRE(r == static_cast<ssize_t>(n));
  return v;
}

bool all_equal(const std::vector<unsigned char>& v, unsigned char c) {
  for (unsigned char x : v)
    if (x != c) return false;
  return true;
}

struct result {
  error_code ec;
  std::size_t n = 0;
};

/// One async_write_atomic_at (or the linked form), run to completion.
template <class Buffers>
result write_atomic(asio::io_context& ctx, fsys::file& f, std::uint64_t off, const Buffers& b, bool linked = false) {
  result r;
  auto h = [&](error_code ec, std::size_t n) {
    r.ec = ec;
    r.n = n;
  };
  if (linked)
    f.async_write_atomic_linked_fsync(off, b, h);
  else
    f.async_write_atomic_at(off, b, h);
  ctx.restart();
  fsys::test::run(ctx);
  return r;
}

fsys::file_status stat_of(asio::io_context& ctx, fsys::file& f) {
  fsys::file_status st;
  error_code sec;
  f.async_stat([&](error_code ec, fsys::file_status s) {
    sec = ec;
    st = s;
  });
  ctx.restart();
  fsys::test::run(ctx);
  BOOST_REQUIRE(!sec);
  return st;
}

/// A file of `size` zero bytes on the XFS mount, open O_DIRECT.
fsys::file open_direct(asio::io_context& ctx, const std::filesystem::path& p, std::uint64_t size) {
  fsys::file f(ctx, p, O_RDWR | O_CREAT | O_TRUNC | O_DIRECT);
  BOOST_REQUIRE(::ftruncate(f.native_handle(), static_cast<off_t>(size)) == 0);
  return f;
}

}  // namespace

BOOST_AUTO_TEST_CASE(stat_reports_the_limits) {
  REQUIRE_MOUNT(xfs());
  asio::io_context ctx;
  auto p = xfs().file("limits.dat");
  fsys::file f = open_direct(ctx, p, 1 << 20);
  const fsys::file_status st = stat_of(ctx, f);
  BOOST_TEST_MESSAGE("XFS loop: unit_min " << st.atomic_write_unit_min << ", unit_max " << st.atomic_write_unit_max
                                           << ", segments_max " << st.atomic_write_segments_max << ", unit_max_opt "
                                           << st.atomic_write_unit_max_opt);
  BOOST_TEST(st.atomic_write_supported);
  BOOST_TEST(st.atomic_write_unit_min >= 512u);
  BOOST_TEST(st.atomic_write_unit_min <= 4096u);
  BOOST_TEST(st.atomic_write_unit_max >= 65536u);
  BOOST_TEST(st.atomic_write_segments_max >= 1u);
  BOOST_TEST((st.atomic_write_unit_max & (st.atomic_write_unit_max - 1)) == 0u);
  // The limits belong to the inode: a buffered descriptor reports them too
  // (it cannot use them: see buffered_writes_need_o_direct).
  fsys::file g(ctx, p, O_RDONLY);
  const fsys::file_status gs = stat_of(ctx, g);
  BOOST_TEST(gs.atomic_write_supported);
  BOOST_TEST(gs.atomic_write_unit_max == st.atomic_write_unit_max);

  // No untorn writes on tmpfs or a loop ext4: supported is false, limits 0.
  fsys::test::temp_dir tmp;
  std::vector<std::filesystem::path> others;
  struct statfs sfs;
  if (::statfs("/dev/shm", &sfs) == 0 && sfs.f_type == 0x01021994) others.push_back("/dev/shm");
  if (ext4().ok()) others.push_back(ext4().file(""));
  for (const auto& d : others) {
    auto q = d / ("fsys-atomic-limits-" + std::to_string(::getpid()));
    fsys::file h(ctx, q, O_RDWR | O_CREAT | O_TRUNC);
    const fsys::file_status hs = stat_of(ctx, h);
    BOOST_TEST(!hs.atomic_write_supported, d);
    BOOST_TEST(hs.atomic_write_unit_max == 0u, d);
    h.close();
    std::filesystem::remove(q);
  }
}

BOOST_AUTO_TEST_CASE(every_allowed_size_is_written_whole) {
  REQUIRE_MOUNT(xfs());
  asio::io_context ctx;
  auto p = xfs().file("sizes.dat");
  fsys::file f = open_direct(ctx, p, 1 << 20);
  const fsys::file_status st = stat_of(ctx, f);
  BOOST_REQUIRE(st.atomic_write_supported);
  unsigned tried = 0;
  unsigned char v = 1;
  for (std::size_t size = 4096; size <= 65536; size *= 2, ++v) {
    if (size < st.atomic_write_unit_min || size > st.atomic_write_unit_max) continue;
    for (bool linked : {false, true}) {
      // At a multiple of the size, away from the start of the file.
      const std::uint64_t off = size * 3;
      auto buf = filled(size, static_cast<unsigned char>(v + (linked ? 100 : 0)));
      // Sound: `buf` outlives the run of the io_context that completes it.
      const result r = write_atomic(ctx, f, off, asio::buffer(buf.data(), size), linked);
      BOOST_TEST(!r.ec, size << (linked ? " linked: " : ": ") << r.ec.message());
      BOOST_TEST(r.n == size);
      BOOST_TEST(all_equal(read_back(p, off, size), static_cast<unsigned char>(v + (linked ? 100 : 0))));
      ++tried;
    }
  }
  BOOST_TEST(tried == 2 * 5u);  // 4, 8, 16, 32, 64 KiB, plain and linked
}

BOOST_AUTO_TEST_CASE(coroutine_forms) {
  REQUIRE_MOUNT(xfs());
  asio::io_context ctx;
  auto p = xfs().file("co.dat");
  fsys::file f = open_direct(ctx, p, 1 << 20);
  auto a = filled(16384, 0x5a);
  auto b = filled(16384, 0xa5);
  std::size_t n1 = 0, n2 = 0;
  std::optional<std::error_code> refused;
  asio::co_spawn(
      ctx,
      [&]() -> asio::awaitable<void> {
        // A page size chosen from async_stat, as a database would.
        const fsys::file_status st = co_await f.async_stat(asio::use_awaitable);
        const std::size_t page = st.atomic_write_unit_max >= 16384 ? 16384 : st.atomic_write_unit_max;
        n1 = co_await fsys::co_write_atomic_at(f, 0, asio::buffer(a.data(), page));
        n2 = co_await fsys::co_write_atomic_linked_fsync(f, page, asio::buffer(b.data(), page));
        try {
          co_await fsys::co_write_atomic_at(f, 4096, asio::buffer(a.data(), page));
        } catch (const std::system_error& e) {
          refused = e.code();
        }
      },
      [](std::exception_ptr e) {
        if (e) std::rethrow_exception(e);
      });
  fsys::test::run(ctx);
  BOOST_TEST(n1 == 16384u);
  BOOST_TEST(n2 == 16384u);
  BOOST_TEST(all_equal(read_back(p, 0, 16384), 0x5a));
  BOOST_TEST(all_equal(read_back(p, 16384, 16384), 0xa5));
  BOOST_REQUIRE(refused.has_value());
  BOOST_TEST((*refused == fsys::errc::atomic_write_misaligned_offset));
  BOOST_TEST((*refused == std::errc::invalid_argument));
}

BOOST_AUTO_TEST_CASE(refused_requests_on_xfs) {
  REQUIRE_MOUNT(xfs());
  asio::io_context ctx;
  auto p = xfs().file("refused.dat");
  fsys::file f = open_direct(ctx, p, 1 << 20);
  const fsys::file_status st = stat_of(ctx, f);
  BOOST_REQUIRE(st.atomic_write_supported);
  auto big = filled(std::size_t{1} << 20, 0x77);
  auto check = [&](std::uint64_t off, auto buffers, fsys::errc want, const char* what) {
    for (bool linked : {false, true}) {
      const result r = write_atomic(ctx, f, off, buffers, linked);
      BOOST_TEST(r.ec == want, what << (linked ? " (linked): " : ": ") << r.ec.message());
      BOOST_TEST(r.n == 0u, what);
    }
  };
  // Sound: every buffer below points into `big`, alive until the end.
  // 12 KiB: O_DIRECT-aligned but not a power of two.
  check(0, asio::buffer(big.data(), 12288), fsys::errc::atomic_write_length_not_power_of_two, "12 KiB");
  check(0, asio::buffer(big.data(), 0), fsys::errc::atomic_write_length_not_power_of_two, "empty");
  // Below the minimum (a power of two that O_DIRECT would take).
  if (st.atomic_write_unit_min > 512 && st.dio_offset_align <= st.atomic_write_unit_min / 2)
    check(0, asio::buffer(big.data(), st.atomic_write_unit_min / 2), fsys::errc::atomic_write_length_out_of_range,
          "below unit_min");
  // Above the maximum.
  if (std::size_t{st.atomic_write_unit_max} * 2 <= big.size())
    check(0, asio::buffer(big.data(), st.atomic_write_unit_max * 2), fsys::errc::atomic_write_length_out_of_range,
          "above unit_max");
  // An offset that is not a multiple of the length (but O_DIRECT-aligned).
  check(4096, asio::buffer(big.data(), 8192), fsys::errc::atomic_write_misaligned_offset, "8 KiB at 4 KiB");
  check(16384 + 8192, asio::buffer(big.data(), 16384), fsys::errc::atomic_write_misaligned_offset, "16 KiB at 24 KiB");
  // More buffers than the file allows (XFS: one).
  if (st.atomic_write_segments_max == 1) {
    std::array<asio::const_buffer, 2> two{asio::buffer(big.data(), 4096), asio::buffer(big.data() + 8192, 4096)};
    check(0, two, fsys::errc::atomic_write_too_many_segments, "two buffers");
  }
  // O_DIRECT alignment still applies (memory misaligned by one byte).
  check(0, asio::buffer(big.data() + 1, 4096), fsys::errc::misaligned_direct_io, "misaligned memory");
  // Nothing of any refused request reached the file.
  BOOST_TEST(all_equal(read_back(p, 0, 65536), 0));
}

BOOST_AUTO_TEST_CASE(buffered_writes_need_o_direct) {
  REQUIRE_MOUNT(xfs());
  asio::io_context ctx;
  auto p = xfs().file("buffered.dat");
  fsys::file f(ctx, p, O_RDWR | O_CREAT | O_TRUNC);
  auto buf = filled(16384, 0x11);
  for (bool linked : {false, true}) {
    const result r = write_atomic(ctx, f, 0, asio::buffer(buf.data(), buf.size()), linked);
    BOOST_TEST((r.ec == fsys::errc::atomic_write_needs_direct_io), r.ec.message());
    BOOST_TEST((r.ec == std::errc::operation_not_supported));
  }
  BOOST_TEST(std::filesystem::file_size(p) == 0u);  // never written, not even inline
}

BOOST_AUTO_TEST_CASE(refused_on_ext4_and_tmpfs) {
  std::vector<std::filesystem::path> dirs;
  struct statfs sfs;
  if (::statfs("/dev/shm", &sfs) == 0 && sfs.f_type == 0x01021994) dirs.push_back("/dev/shm");
  if (ext4().ok())
    dirs.push_back(ext4().file(""));
  else
    BOOST_TEST_MESSAGE("no loop ext4: " << ext4().why());
  if (dirs.empty()) {
    BOOST_TEST_MESSAGE("skip: neither tmpfs at /dev/shm nor a loop ext4");
    return;
  }
  asio::io_context ctx;
  auto buf = filled(16384, 0x22);
  for (const auto& d : dirs) {
    auto p = d / ("fsys-atomic-" + std::to_string(::getpid()) + ".dat");
    {
      fsys::file f(ctx, p, O_RDWR | O_CREAT | O_TRUNC);
      const result r = write_atomic(ctx, f, 0, asio::buffer(buf.data(), buf.size()));
      BOOST_TEST((r.ec == fsys::errc::atomic_write_needs_direct_io), d << ": " << r.ec.message());
    }
    fsys::file f(ctx);
    error_code oec;
    f.open(p, O_RDWR | O_DIRECT, 0644, oec);
    if (oec) {
      BOOST_TEST_MESSAGE(d << ": O_DIRECT refused (" << oec.message() << "), buffered case only");
    } else {
      for (bool linked : {false, true}) {
        const result r = write_atomic(ctx, f, 0, asio::buffer(buf.data(), buf.size()), linked);
        BOOST_TEST((r.ec == fsys::errc::atomic_write_unsupported), d << ": " << r.ec.message());
        BOOST_TEST((r.ec == std::errc::operation_not_supported));
      }
      f.close();
    }
    BOOST_TEST(std::filesystem::file_size(p) == 0u);
    std::filesystem::remove(p);
  }
}

// Many coroutines write overlapping pages at once: 16 KiB pages, and 32 KiB
// writes covering two pages. After each round every 16 KiB page holds one
// writer's whole content (every byte that writer's), never a mix.
BOOST_AUTO_TEST_CASE(concurrent_overlapping_writes_never_mix) {
  REQUIRE_MOUNT(xfs());
  constexpr std::size_t page = 16384;
  constexpr unsigned pages = 4;
  constexpr unsigned writers = 24;
  constexpr unsigned rounds = 12;
  asio::io_context ctx;
  auto p = xfs().file("concurrent.dat");
  fsys::file f = open_direct(ctx, p, page * pages);
  // Writer w's byte is w + 1 (never 0, the file's initial content).
  std::vector<fsys::aligned_buffer> bufs;
  for (unsigned w = 0; w < writers; ++w) bufs.push_back(filled(2 * page, static_cast<unsigned char>(w + 1)));
  std::atomic<unsigned> failures{0};
  std::mutex m;
  std::string first_error;
  for (unsigned round = 0; round < rounds; ++round) {
    // Which writers cover which page this round.
    std::vector<std::vector<unsigned char>> covered(pages);
    for (unsigned w = 0; w < writers; ++w) {
      const bool wide = (w + round) % 3 == 0;  // a 32 KiB write over two pages
      const unsigned first = wide ? ((w + round) % (pages / 2)) * 2 : (w * 7 + round) % pages;
      const std::size_t len = wide ? 2 * page : page;
      for (unsigned q = first; q < first + len / page; ++q) covered[q].push_back(static_cast<unsigned char>(w + 1));
      asio::co_spawn(
          ctx,
          [&, w, first, len]() -> asio::awaitable<void> {
            try {
              // Sound: bufs[w] lives until the test ends, after run().
              co_await fsys::co_write_atomic_at(f, first * page, asio::buffer(bufs[w].data(), len));
            } catch (const std::system_error& e) {
              failures.fetch_add(1);
              std::lock_guard l(m);
              if (first_error.empty()) first_error = e.what();
            }
          },
          asio::detached);
    }
    ctx.restart();
    fsys::test::run(ctx);
    BOOST_REQUIRE_MESSAGE(failures.load() == 0, first_error);
    const auto all = read_back(p, 0, page * pages);
    for (unsigned q = 0; q < pages; ++q) {
      const unsigned char c = all[q * page];
      bool whole = true;
      for (std::size_t i = 0; i < page; ++i) whole = whole && all[q * page + i] == c;
      BOOST_TEST(whole, "round " << round << " page " << q << " is a mix of writers");
      bool known = covered[q].empty();
      for (unsigned char x : covered[q]) known = known || x == c;
      BOOST_TEST(known, "round " << round << " page " << q << " holds " << int(c) << ", which did not write it");
    }
  }
}

BOOST_AUTO_TEST_CASE(linked_durable_form_completes_after_the_sync) {
  REQUIRE_MOUNT(xfs());
  asio::io_context ctx;
  auto p = xfs().file("linked.dat");
  fsys::file f = open_direct(ctx, p, 1 << 20);
  // Many linked pages in flight at once, each its own write + fsync pair.
  constexpr unsigned n = 32;
  constexpr std::size_t page = 16384;
  std::vector<fsys::aligned_buffer> bufs;
  for (unsigned i = 0; i < n; ++i) bufs.push_back(filled(page, static_cast<unsigned char>(i + 1)));
  std::atomic<unsigned> ok{0}, bad{0};
  for (unsigned i = 0; i < n; ++i) {
    // Sound: bufs[i] lives until after run() has completed every write.
    f.async_write_atomic_linked_fsync(i * page, asio::buffer(bufs[i].data(), page),
                                      [&](error_code ec, std::size_t got) {
                                        (!ec && got == page ? ok : bad).fetch_add(1);
                                      });
  }
  fsys::test::run(ctx);
  BOOST_TEST(ok.load() == n);
  BOOST_TEST(bad.load() == 0u);
  for (unsigned i = 0; i < n; ++i) BOOST_TEST(all_equal(read_back(p, i * page, page), static_cast<unsigned char>(i + 1)));
}

// What the kernel refuses after fsys's checks passed comes back unchanged:
// the descriptor loses O_DIRECT behind fsys's back (fcntl), so fsys's cached
// view still allows the write and the kernel refuses the buffered RWF_ATOMIC
// write with EOPNOTSUPP. (This also shows the flag reaches the kernel on
// both backends: without it the buffered write would succeed.)
BOOST_AUTO_TEST_CASE(kernel_refusal_is_passed_on_unchanged) {
  REQUIRE_MOUNT(xfs());
  asio::io_context ctx;
  auto p = xfs().file("kernel-refuses.dat");
  fsys::file f = open_direct(ctx, p, 1 << 20);
  const int fl = ::fcntl(f.native_handle(), F_GETFL);
  BOOST_REQUIRE(fl >= 0);
  BOOST_REQUIRE(::fcntl(f.native_handle(), F_SETFL, fl & ~O_DIRECT) == 0);
  auto buf = filled(16384, 0x33);
  for (bool linked : {false, true}) {
    const result r = write_atomic(ctx, f, 0, asio::buffer(buf.data(), buf.size()), linked);
    BOOST_TEST((r.ec == error_code(EOPNOTSUPP, boost::system::system_category())), r.ec.message());
    BOOST_TEST(r.n == 0u);
  }
  BOOST_TEST(all_equal(read_back(p, 0, 16384), 0));
}

// Each refusal has its own value, message and generic condition.
BOOST_AUTO_TEST_CASE(error_values_have_messages_and_conditions) {
  using fsys::errc;
  struct row {
    errc e;
    std::errc cond;
  };
  const row rows[] = {{errc::atomic_write_unsupported, std::errc::operation_not_supported},
                      {errc::atomic_write_needs_direct_io, std::errc::operation_not_supported},
                      {errc::atomic_write_length_not_power_of_two, std::errc::invalid_argument},
                      {errc::atomic_write_length_out_of_range, std::errc::invalid_argument},
                      {errc::atomic_write_misaligned_offset, std::errc::invalid_argument},
                      {errc::atomic_write_too_many_segments, std::errc::invalid_argument},
                      {errc::atomic_write_short, std::errc::io_error}};
  std::vector<std::string> seen;
  for (const row& r : rows) {
    const std::error_code ec = make_error_code(r.e);
    const std::string msg = ec.message();
    BOOST_TEST(msg != "unknown fsys error");
    BOOST_TEST((ec == r.cond), msg);
    for (const auto& s : seen) BOOST_TEST(s != msg);
    seen.push_back(msg);
    const error_code bec(r.e);  // as asynchronous handlers receive it
    BOOST_TEST((bec == ec));
  }
}
