// async_copy_file (<fsys/copy.hpp>): byte-exact copies by each data path
// (reflink on a loop-mounted XFS, copy_file_range, reads and writes through
// the ring), modes, owner and times, existing targets under each policy,
// copies onto the source itself, missing files, no temporary left behind after
// errors or cancellation, progress, durability, and co_copy_file. Real files,
// a real ring; runs once per backend and with 4 threads.
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

#include <linux/fiemap.h>
#include <linux/fs.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <set>
#include <string>
#include <vector>

namespace asio = boost::asio;
namespace fs = std::filesystem;
using boost::system::error_code;
using fsys::test::pattern;
using fsys::test::temp_dir;

namespace {

struct result {
  error_code ec;
  std::uint64_t n = 99;
};

result copy(asio::io_context& ctx, const fs::path& from, const fs::path& to, fsys::copy_options o = {}) {
  result r;
  r.ec = asio::error::would_block;
  fsys::async_copy_file(ctx, from, to, std::move(o), [&](error_code e, std::uint64_t n) {
    r.ec = e;
    r.n = n;
  });
  ctx.restart();
  fsys::test::run(ctx);
  return r;
}

// The names in `dir` (to see that no temporary was left behind).
std::set<std::string> names(const fs::path& dir) {
  std::set<std::string> s;
  for (const auto& e : fs::directory_iterator(dir)) s.insert(e.path().filename().string());
  return s;
}

// The three data paths, as the options select them.
struct data_path {
  const char* name;
  bool reflink;
  bool kernel_copy;
};
constexpr data_path paths[] = {{"default", true, true}, {"copy_file_range", false, true}, {"ring", false, false}};

bool have_program(const char* name) {
  std::string cmd = "command -v ";
  cmd += name;
  cmd += " >/dev/null 2>&1";
  return std::system(cmd.c_str()) == 0;
}

// An XFS made with reflink=1 in a sparse image, loop-mounted for the life of
// the process (as tests/test_atomic.cpp does). `ok()` false with `why()`.
class xfs_mount {
 public:
  xfs_mount() {
    if (::geteuid() != 0) {
      why_ = "not root (mount needs it)";
      return;
    }
    if (!have_program("mkfs.xfs")) {
      why_ = "mkfs.xfs is not installed (xfsprogs)";
      return;
    }
    if (!fs::exists("/dev/loop-control")) {
      why_ = "no loop devices (/dev/loop-control)";
      return;
    }
    const char* base = fs::exists("/var/tmp") ? "/var/tmp" : "/tmp";
    char tmpl[256];
    std::snprintf(tmpl, sizeof tmpl, "%s/fsys-copy-xfs-XXXXXX", base);
    if (!::mkdtemp(tmpl)) {
      why_ = "mkdtemp failed";
      return;
    }
    root_ = tmpl;
    dir_ = root_ / "mnt";
    fs::create_directory(dir_);
    const std::string img = (root_ / "fs.img").string();
    const std::string cmd = "truncate -s 512M '" + img + "' && mkfs.xfs -q -m reflink=1 '" + img +
                            "' >/dev/null 2>&1 && mount -o loop '" + img + "' '" + dir_.string() + "' 2>&1";
    if (std::system(cmd.c_str()) != 0) {
      why_ = "making or mounting a loop XFS with reflink=1 failed (" + cmd + ")";
      fs::remove_all(root_);
      root_.clear();
      return;
    }
    mounted_ = true;
  }
  ~xfs_mount() {
    if (mounted_) ::umount2(dir_.c_str(), MNT_DETACH);
    if (!root_.empty()) {
      std::error_code ec;
      fs::remove_all(root_, ec);
    }
  }
  bool ok() const noexcept { return mounted_; }
  const std::string& why() const noexcept { return why_; }
  const fs::path& dir() const noexcept { return dir_; }

 private:
  fs::path root_, dir_;
  std::string why_;
  bool mounted_ = false;
};

xfs_mount& xfs() {
  static xfs_mount m;
  return m;
}

// Whether the file's first extent is shared with another file (FIEMAP).
bool first_extent_shared(const fs::path& p) {
  const int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  alignas(fiemap) char buf[sizeof(fiemap) + sizeof(fiemap_extent)] = {};
  auto* fm = reinterpret_cast<fiemap*>(buf);
  fm->fm_start = 0;
  fm->fm_length = ~0ull;
  fm->fm_flags = FIEMAP_FLAG_SYNC;
  fm->fm_extent_count = 1;
  const int r = ::ioctl(fd, FS_IOC_FIEMAP, fm);
  ::close(fd);
  return r == 0 && fm->fm_mapped_extents >= 1 && (fm->fm_extents[0].fe_flags & FIEMAP_EXTENT_SHARED) != 0;
}

}  // namespace

BOOST_AUTO_TEST_CASE(copies_are_byte_exact_on_every_data_path) {
  temp_dir dir;
  asio::io_context ctx;
  auto& svc = fsys::test::make_ring(ctx);
  for (std::size_t size : {std::size_t{0}, std::size_t{1}, (std::size_t{1} << 20) + 17, std::size_t{100} << 20}) {
    const auto data = pattern(size, size + 7);
    const fs::path src = dir.file("src" + std::to_string(size));
    fsys::test::write_file(src, data);
    for (const data_path& dp : paths) {
      BOOST_TEST_CONTEXT("size " << size << ", path " << dp.name) {
        const fs::path dst = dir.file(std::string("dst-") + dp.name + std::to_string(size));
        fsys::copy_options o;
        o.reflink = dp.reflink;
        o.kernel_copy = dp.kernel_copy;
        auto r = copy(ctx, src, dst, o);
        BOOST_TEST(!r.ec, r.ec.message());
        BOOST_TEST(r.n == size);
        BOOST_TEST((fsys::test::read_file(dst) == data));
        fs::remove(dst);
      }
    }
    fs::remove(src);
  }
  BOOST_TEST(names(dir.path()).empty());
  // FICLONE and copy_file_range have no io_uring opcode: the io_uring
  // backend ran them on its psync helper.
  if (fsys::test::expected_backend() == fsys::backend::io_uring) BOOST_TEST(svc.stats().fs_ops_on_helper > 0u);
}

BOOST_AUTO_TEST_CASE(reflink_shares_extents_on_xfs) {
  if (!xfs().ok()) {
    BOOST_TEST_MESSAGE("skip: " << xfs().why());
    return;
  }
  asio::io_context ctx;
  fsys::test::make_ring(ctx);
  const fs::path src = xfs().dir() / "src";
  const auto data = pattern((std::size_t{8} << 20) + 5, 11);
  fsys::test::write_file(src, data);
  ::sync();

  const fs::path ref = xfs().dir() / "reflinked";
  auto r = copy(ctx, src, ref);
  BOOST_TEST(!r.ec, r.ec.message());
  BOOST_TEST(r.n == data.size());
  BOOST_TEST((fsys::test::read_file(ref) == data));
  BOOST_TEST(first_extent_shared(ref));  // FICLONE made it

  // Reads and writes through the ring: new blocks, nothing shared with it.
  const fs::path plain = xfs().dir() / "plain";
  fsys::copy_options o;
  o.reflink = false;
  o.kernel_copy = false;
  r = copy(ctx, src, plain, o);
  BOOST_TEST(!r.ec, r.ec.message());
  BOOST_TEST((fsys::test::read_file(plain) == data));
  BOOST_TEST(!first_extent_shared(plain));
  for (const char* n : {"src", "reflinked", "plain"}) fs::remove(xfs().dir() / n);
}

BOOST_AUTO_TEST_CASE(the_mode_is_kept_whatever_the_umask) {
  temp_dir dir;
  asio::io_context ctx;
  fsys::test::make_ring(ctx);
  const mode_t old_umask = ::umask(022);
  for (mode_t m : {mode_t{0600}, mode_t{0755}, mode_t{0666}, mode_t{0400}}) {
    for (const data_path& dp : paths) {
      const fs::path src = dir.file("m-src");
      const fs::path dst = dir.file("m-dst");
      fsys::test::write_file(src, pattern(3000, m));
      ::chmod(src.c_str(), m);
      fsys::copy_options o;
      o.reflink = dp.reflink;
      o.kernel_copy = dp.kernel_copy;
      auto r = copy(ctx, src, dst, o);
      BOOST_TEST(!r.ec, r.ec.message());
      struct stat st {};
      BOOST_TEST(::stat(dst.c_str(), &st) == 0);
      BOOST_TEST((st.st_mode & 07777) == m, std::oct << (st.st_mode & 07777) << " != " << m);
      fs::remove(src);
      fs::remove(dst);
    }
  }
  ::umask(old_umask);
}

BOOST_AUTO_TEST_CASE(owner_and_times_are_kept_with_the_options) {
  temp_dir dir;
  asio::io_context ctx;
  fsys::test::make_ring(ctx);
  const fs::path src = dir.file("src");
  fsys::test::write_file(src, pattern(10000, 1));
  const timespec times[2] = {{1000000000, 123456789}, {1200000000, 987654321}};
  BOOST_REQUIRE(::utimensat(AT_FDCWD, src.c_str(), times, 0) == 0);
  const bool root = ::geteuid() == 0;
  if (root) BOOST_REQUIRE(::chown(src.c_str(), 1234, 4321) == 0);
  ::chmod(src.c_str(), 0640);

  fsys::copy_options o;
  o.preserve_times = true;
  o.preserve_owner = root;
  auto r = copy(ctx, src, dir.file("kept"), o);
  BOOST_TEST(!r.ec, r.ec.message());
  struct stat st {};
  BOOST_REQUIRE(::stat(dir.file("kept").c_str(), &st) == 0);
  BOOST_TEST(st.st_mtim.tv_sec == times[1].tv_sec);
  BOOST_TEST(st.st_mtim.tv_nsec == times[1].tv_nsec);
  BOOST_TEST(st.st_atim.tv_sec == times[0].tv_sec);
  BOOST_TEST((st.st_mode & 07777) == 0640u);
  if (root) {
    BOOST_TEST(st.st_uid == 1234u);
    BOOST_TEST(st.st_gid == 4321u);
  } else {
    BOOST_TEST_MESSAGE("owner case not run: not root (chown needs it)");
  }

  // Without the options: new times, the caller's owner.
  r = copy(ctx, src, dir.file("plain"));
  BOOST_TEST(!r.ec, r.ec.message());
  BOOST_REQUIRE(::stat(dir.file("plain").c_str(), &st) == 0);
  BOOST_TEST(st.st_mtim.tv_sec != times[1].tv_sec);
  BOOST_TEST(st.st_uid == ::geteuid());
}

BOOST_AUTO_TEST_CASE(an_existing_target_under_each_policy) {
  temp_dir dir;
  asio::io_context ctx;
  fsys::test::make_ring(ctx);
  const fs::path src = dir.file("src");
  const fs::path dst = dir.file("dst");
  const auto data = pattern(70000, 2);
  const auto old = pattern(500, 3);
  fsys::test::write_file(src, data);

  fsys::test::write_file(dst, old);
  bool skipped = true;
  fsys::copy_options o;
  o.skipped = &skipped;
  auto r = copy(ctx, src, dst, o);  // fail is the default
  BOOST_TEST((r.ec == std::errc::file_exists));
  BOOST_TEST(r.n == 0u);
  BOOST_TEST(!skipped);
  BOOST_TEST((fsys::test::read_file(dst) == old));

  o.existing = fsys::copy_existing::skip;
  r = copy(ctx, src, dst, o);
  BOOST_TEST(!r.ec);
  BOOST_TEST(r.n == 0u);
  BOOST_TEST(skipped);
  BOOST_TEST((fsys::test::read_file(dst) == old));

  o.existing = fsys::copy_existing::overwrite;
  ::chmod(dst.c_str(), 0600);
  struct stat before {};
  ::stat(dst.c_str(), &before);
  r = copy(ctx, src, dst, o);
  BOOST_TEST(!r.ec, r.ec.message());
  BOOST_TEST(r.n == data.size());
  BOOST_TEST(!skipped);
  BOOST_TEST((fsys::test::read_file(dst) == data));
  struct stat after {};
  ::stat(dst.c_str(), &after);
  BOOST_TEST(after.st_ino != before.st_ino);  // replaced by a rename, not written in place
  BOOST_TEST((names(dir.path()) == std::set<std::string>{"src", "dst"}));

  o.existing = static_cast<fsys::copy_existing>(7);
  r = copy(ctx, src, dst, o);
  BOOST_TEST((r.ec == std::errc::invalid_argument));
}

BOOST_AUTO_TEST_CASE(a_target_created_during_the_copy_is_treated_by_the_policy) {
  temp_dir dir;
  asio::io_context ctx;
  fsys::test::make_ring(ctx);
  const fs::path src = dir.file("src");
  const fs::path dst = dir.file("dst");
  const auto other = pattern(100, 5);
  // 3 MiB: the target is looked at before the copy; 100 KiB with the fail
  // policy: only when publishing finds the name taken.
  for (std::size_t size : {std::size_t{3} << 20, std::size_t{100} << 10})
  for (auto policy : {fsys::copy_existing::fail, fsys::copy_existing::skip, fsys::copy_existing::overwrite}) {
    BOOST_TEST_CONTEXT("size " << size << ", policy " << static_cast<int>(policy)) {
      const auto data = pattern(size, 4);
      fsys::test::write_file(src, data);
      fs::remove(dst);
      fsys::copy_options o;
      o.existing = policy;
      o.kernel_copy = false;  // the ring path: progress after each 4 MiB write
      bool made = false;
      o.progress = [&](std::uint64_t, std::uint64_t) {
        if (!made) fsys::test::write_file(dst, other);  // someone else takes the name
        made = true;
      };
      auto r = copy(ctx, src, dst, o);
      if (policy == fsys::copy_existing::fail) {
        BOOST_TEST((r.ec == std::errc::file_exists));
        BOOST_TEST((fsys::test::read_file(dst) == other));
      } else if (policy == fsys::copy_existing::skip) {
        BOOST_TEST(!r.ec);
        BOOST_TEST(r.n == 0u);
        BOOST_TEST((fsys::test::read_file(dst) == other));
      } else {
        BOOST_TEST(!r.ec, r.ec.message());
        BOOST_TEST((fsys::test::read_file(dst) == data));
      }
      BOOST_TEST((names(dir.path()) == std::set<std::string>{"src", "dst"}));
    }
  }
}

BOOST_AUTO_TEST_CASE(copying_a_file_onto_itself_is_refused) {
  temp_dir dir;
  asio::io_context ctx;
  fsys::test::make_ring(ctx);
  const fs::path src = dir.file("src");
  const auto data = pattern(5000, 6);
  fsys::test::write_file(src, data);
  fs::create_hard_link(src, dir.file("hard"));
  fs::create_symlink(src, dir.file("sym"));
  for (auto policy : {fsys::copy_existing::fail, fsys::copy_existing::skip, fsys::copy_existing::overwrite}) {
    for (const char* to : {"src", "hard", "sym"}) {
      fsys::copy_options o;
      o.existing = policy;
      auto r = copy(ctx, src, dir.file(to), o);
      BOOST_TEST((r.ec == fsys::errc::copy_onto_itself), to << ": " << r.ec.message());
      BOOST_TEST((r.ec == std::errc::file_exists));
      BOOST_TEST((fsys::test::read_file(src) == data));
    }
  }
  BOOST_TEST((names(dir.path()) == std::set<std::string>{"src", "hard", "sym"}));
}

BOOST_AUTO_TEST_CASE(missing_source_missing_directory_and_a_directory_source) {
  temp_dir dir;
  asio::io_context ctx;
  fsys::test::make_ring(ctx);
  fsys::test::write_file(dir.file("src"), pattern(10, 1));
  auto r = copy(ctx, dir.file("nope"), dir.file("dst"));
  BOOST_TEST((r.ec == std::errc::no_such_file_or_directory));
  r = copy(ctx, dir.file("src"), dir.file("no-dir") / "dst");
  BOOST_TEST((r.ec == std::errc::no_such_file_or_directory));
  fs::create_directory(dir.file("d"));
  r = copy(ctx, dir.file("d"), dir.file("dst"));
  BOOST_TEST((r.ec == std::errc::is_a_directory));
  fsys::copy_options over;
  over.existing = fsys::copy_existing::overwrite;
  r = copy(ctx, dir.file("src"), dir.file("d"), over);
  BOOST_TEST((r.ec == std::errc::is_a_directory));
  r = copy(ctx, "", dir.file("dst"));
  BOOST_TEST((r.ec == std::errc::invalid_argument));
  r = copy(ctx, dir.file("src"), "");
  BOOST_TEST((r.ec == std::errc::invalid_argument));
  BOOST_TEST((names(dir.path()) == std::set<std::string>{"src", "d"}));
  BOOST_TEST(fs::is_empty(dir.file("d")));
}

BOOST_AUTO_TEST_CASE(cancellation_leaves_no_temporary_and_the_target_untouched) {
  temp_dir dir;
  asio::io_context ctx;
  fsys::test::make_ring(ctx);
  const fs::path src = dir.file("src");
  const fs::path dst = dir.file("dst");
  const auto old = pattern(100, 9);
  fsys::test::write_file(src, pattern(40 << 20, 8));
  for (const data_path& dp : paths) {
    BOOST_TEST_CONTEXT("path " << dp.name) {
      fsys::test::write_file(dst, old);
      asio::cancellation_signal sig;
      fsys::copy_options o;
      o.existing = fsys::copy_existing::overwrite;
      o.reflink = dp.reflink;
      o.kernel_copy = dp.kernel_copy;
      std::atomic<int> calls{0};
      // Cancelled after the first piece landed (from inside the operation's
      // own step: the next step sees it).
      o.progress = [&](std::uint64_t, std::uint64_t) {
        if (calls++ == 0) sig.emit(asio::cancellation_type::terminal);
      };
      error_code ec = asio::error::would_block;
      fsys::async_copy_file(ctx, src, dst, o,
                            asio::bind_cancellation_slot(sig.slot(), [&](error_code e, std::uint64_t) { ec = e; }));
      ctx.restart();
      fsys::test::run(ctx);
      BOOST_TEST((ec == asio::error::operation_aborted), ec.message());
      BOOST_TEST((fsys::test::read_file(dst) == old));
      BOOST_TEST((names(dir.path()) == std::set<std::string>{"src", "dst"}));
    }
  }

  // Cancelled before anything ran.
  asio::cancellation_signal sig;
  error_code ec;
  fsys::async_copy_file(ctx, src, dir.file("new"), {},
                        asio::bind_cancellation_slot(sig.slot(), [&](error_code e, std::uint64_t) { ec = e; }));
  sig.emit(asio::cancellation_type::terminal);
  ctx.restart();
  fsys::test::run(ctx);
  BOOST_TEST((ec == asio::error::operation_aborted), ec.message());
  BOOST_TEST((names(dir.path()) == std::set<std::string>{"src", "dst"}));
}

BOOST_AUTO_TEST_CASE(progress_is_monotone_and_ends_at_the_size) {
  temp_dir dir;
  asio::io_context ctx;
  fsys::test::make_ring(ctx);
  const std::size_t size = (std::size_t{150} << 20) + 3;  // three copy_file_range calls, 38 ring writes
  fsys::test::write_file(dir.file("src"), pattern(size, 10));
  for (const data_path& dp : paths) {
    BOOST_TEST_CONTEXT("path " << dp.name) {
      std::vector<std::uint64_t> seen;
      std::uint64_t total_seen = 0;
      std::atomic<std::uint64_t> counter{5};
      fsys::copy_options o;
      o.reflink = dp.reflink;
      o.kernel_copy = dp.kernel_copy;
      o.counter = &counter;
      o.progress = [&](std::uint64_t copied, std::uint64_t total) {
        seen.push_back(copied);
        total_seen = total;
      };
      auto r = copy(ctx, dir.file("src"), dir.file("dst"), o);
      BOOST_TEST(!r.ec, r.ec.message());
      BOOST_TEST(r.n == size);
      BOOST_TEST(total_seen == size);
      BOOST_TEST(!seen.empty());
      BOOST_TEST(std::is_sorted(seen.begin(), seen.end()));
      BOOST_TEST(seen.back() == size);
      if (!dp.reflink) BOOST_TEST(seen.size() >= 3u);
      BOOST_TEST(counter.load() == size + 5);
      fs::remove(dir.file("dst"));
    }
  }
  // An empty file: one call, (0, 0).
  fsys::test::write_file(dir.file("empty"), {});
  int calls = 0;
  fsys::copy_options o;
  o.progress = [&](std::uint64_t c, std::uint64_t t) {
    ++calls;
    BOOST_TEST(c == 0u);
    BOOST_TEST(t == 0u);
  };
  BOOST_TEST(!copy(ctx, dir.file("empty"), dir.file("empty2"), o).ec);
  BOOST_TEST(calls == 1);
}

BOOST_AUTO_TEST_CASE(a_durable_copy_syncs_the_file_and_the_directory) {
  temp_dir dir;
  asio::io_context ctx;
  auto& svc = fsys::test::make_ring(ctx);
  const auto data = pattern(200000, 12);
  fsys::test::write_file(dir.file("src"), data);

  auto ops = [&] { return svc.stats().ops_started; };
  std::uint64_t before = ops();
  auto r = copy(ctx, dir.file("src"), dir.file("plain"));
  BOOST_TEST(!r.ec);
  const std::uint64_t plain_ops = ops() - before;

  before = ops();
  fsys::copy_options o;
  o.durable = true;
  r = copy(ctx, dir.file("src"), dir.file("durable"), o);
  BOOST_TEST(!r.ec, r.ec.message());
  BOOST_TEST(r.n == data.size());
  BOOST_TEST((fsys::test::read_file(dir.file("durable")) == data));
  const std::uint64_t durable_ops = ops() - before;
  // The fsync of the copy, and the directory's open, fsync and close.
  BOOST_TEST(durable_ops >= plain_ops + 4, durable_ops << " vs " << plain_ops);
}

BOOST_AUTO_TEST_CASE(many_copies_in_flight) {
  temp_dir dir;
  asio::io_context ctx;
  fsys::test::make_ring(ctx);
  fs::create_directory(dir.file("a"));
  fs::create_directory(dir.file("b"));
  constexpr int n = 300;
  for (int i = 0; i < n; ++i) fsys::test::write_file(dir.file("a") / std::to_string(i), pattern(4096 + i, i));
  std::atomic<int> ok{0};
  for (int i = 0; i < n; ++i)
    fsys::async_copy_file(ctx, dir.file("a") / std::to_string(i), dir.file("b") / std::to_string(i), {},
                          [&ok, i](error_code e, std::uint64_t k) {
                            if (!e && k == 4096u + static_cast<unsigned>(i)) ++ok;
                          });
  fsys::test::run(ctx);
  BOOST_TEST(ok.load() == n);
  for (int i = 0; i < n; ++i)
    BOOST_TEST((fsys::test::read_file(dir.file("b") / std::to_string(i)) == pattern(4096 + i, i)));
  BOOST_TEST(names(dir.file("b")).size() == static_cast<std::size_t>(n));
}

BOOST_AUTO_TEST_CASE(a_file_whose_size_statx_does_not_know_is_read_to_its_end) {
  temp_dir dir;
  asio::io_context ctx;
  fsys::test::make_ring(ctx);
  auto r = copy(ctx, "/proc/version", dir.file("version"));
  BOOST_TEST(!r.ec, r.ec.message());
  const auto expected = fsys::test::read_file("/proc/version");
  BOOST_TEST(!expected.empty());
  BOOST_TEST(r.n == expected.size());
  BOOST_TEST((fsys::test::read_file(dir.file("version")) == expected));
}

BOOST_AUTO_TEST_CASE(co_copy_file_returns_the_bytes_and_throws_naming_both_paths) {
  temp_dir dir;
  asio::io_context ctx;
  fsys::test::make_ring(ctx);
  fsys::test::write_file(dir.file("src"), pattern(1234, 1));
  std::uint64_t n = 0;
  std::string what;
  asio::co_spawn(
      ctx,
      [&]() -> asio::awaitable<void> {
        n = co_await fsys::co_copy_file(ctx, dir.file("src"), dir.file("dst"));
        try {
          co_await fsys::co_copy_file(ctx, dir.file("missing"), dir.file("dst2"));
        } catch (const std::system_error& e) {
          what = e.what();
        }
      },
      asio::detached);
  fsys::test::run(ctx);
  BOOST_TEST(n == 1234u);
  BOOST_TEST(what.find("fsys::co_copy_file") != std::string::npos, what);
  BOOST_TEST(what.find("missing") != std::string::npos, what);
  BOOST_TEST(what.find("dst2") != std::string::npos, what);
}
