// Errors as they are: short writes, EFBIG, ENOSPC, EDQUOT, EIO and failed
// fsyncs on real files, made real with RLIMIT_FSIZE, the filesystem's maximum
// file size, a size-limited tmpfs and a fault-injecting FUSE filesystem
// (tests/fuse/faultfs.cpp). Every case checks what the handler says against
// what is on disk: success is reported only with every byte written, and a
// durable success only after a successful fsync that followed the last write.
#include <boost/test/unit_test.hpp>

#include "fuse/faultfs_mount.hpp"
#include "support/ring_fixture.hpp"
#include "support/run.hpp"
#include "support/temp_dir.hpp"

#include <fsys/fsys.hpp>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

namespace asio = boost::asio;
using boost::system::error_code;
using fsys::test::pattern;
using fsys::test::read_file;
using fsys::test::temp_dir;

namespace {

constexpr int rw_create = O_RDWR | O_CREAT;

enum class wkind { write_at, linked_fsync, write_some, writev, linked_writev };
const char* name(wkind k) {
  switch (k) {
    case wkind::write_at: return "write_at";
    case wkind::linked_fsync: return "write_linked_fsync";
    case wkind::write_some: return "write_some_at";
    case wkind::writev: return "write_at(3 buffers)";
    case wkind::linked_writev: return "write_linked_fsync(3 buffers)";
  }
  return "?";
}
constexpr std::array all_kinds{wkind::write_at, wkind::linked_fsync, wkind::write_some, wkind::writev,
                               wkind::linked_writev};
bool is_linked(wkind k) { return k == wkind::linked_fsync || k == wkind::linked_writev; }

struct outcome {
  error_code ec;
  std::size_t n = 0;
  int calls = 0;
};

// Runs one write of `data` at `off` to completion and returns what the handler got.
outcome run_write(asio::io_context& ctx, fsys::file& f, wkind k, std::uint64_t off,
                  const std::vector<std::byte>& data) {
  outcome out;
  auto h = [&](error_code ec, std::size_t n) {
    out.ec = ec;
    out.n = n;
    ++out.calls;
  };
  const std::size_t third = data.size() / 3;
  std::array<asio::const_buffer, 3> parts{asio::buffer(data.data(), third),
                                          asio::buffer(data.data() + third, third),
                                          asio::buffer(data.data() + 2 * third, data.size() - 2 * third)};
  switch (k) {
    case wkind::write_at: f.async_write_at(off, asio::buffer(data), h); break;
    case wkind::linked_fsync: f.async_write_linked_fsync(off, asio::buffer(data), h); break;
    case wkind::write_some: f.async_write_some_at(off, asio::buffer(data), h); break;
    case wkind::writev: f.async_write_at(off, parts, h); break;
    case wkind::linked_writev: f.async_write_linked_fsync(off, parts, h); break;
  }
  fsys::test::run(ctx);
  ctx.restart();
  return out;
}

outcome run_sync(asio::io_context& ctx, fsys::file& f, bool data_only) {
  outcome out;
  auto h = [&](error_code ec) {
    out.ec = ec;
    ++out.calls;
  };
  if (data_only)
    f.async_fdatasync(h);
  else
    f.async_fsync(h);
  fsys::test::run(ctx);
  ctx.restart();
  return out;
}

// Checks that the file holds `data[0, n)` at `off` and nothing after it.
std::string check_prefix_on_disk(const std::filesystem::path& p, std::uint64_t off, const std::vector<std::byte>& data,
                                 std::size_t n) {
  auto disk = read_file(p);
  if (disk.size() != off + n && !(n == 0 && disk.size() <= off))
    return "file size " + std::to_string(disk.size()) + ", expected " + std::to_string(off + n);
  if (n > 0 && !std::equal(data.begin(), data.begin() + static_cast<std::ptrdiff_t>(n), disk.begin() + static_cast<std::ptrdiff_t>(off)))
    return "the bytes on disk differ from the bytes written";
  return {};
}

// Runs `fn` in a child process (for process-wide state such as rlimits) and
// returns the failures it reported, one per line.
std::string in_child(const std::function<std::string()>& fn) {
  int p[2];
  BOOST_REQUIRE(::pipe(p) == 0);
  pid_t pid = ::fork();
  BOOST_REQUIRE(pid >= 0);
  if (pid == 0) {
    ::close(p[0]);
    std::string failures;
    try {
      failures = fn();
    } catch (const std::exception& e) {
      failures = std::string("exception: ") + e.what();
    }
    std::size_t done = 0;
    while (done < failures.size()) {
      ssize_t w = ::write(p[1], failures.data() + done, failures.size() - done);
      if (w <= 0) break;
      done += static_cast<std::size_t>(w);
    }
    std::_Exit(failures.empty() ? 0 : 1);
  }
  ::close(p[1]);
  std::string got;
  char buf[4096];
  ssize_t r;
  while ((r = ::read(p[0], buf, sizeof buf)) > 0) got.append(buf, static_cast<std::size_t>(r));
  ::close(p[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (!WIFEXITED(status)) got += "child died with status " + std::to_string(status);
  return got;
}

// Mounts a tmpfs of `size` at `dir/name`; empty path when the machine refuses.
struct tmpfs_mount {
  tmpfs_mount(const std::filesystem::path& dir, const std::string& options) : path_(dir / "tmpfs") {
    std::filesystem::create_directories(path_);
    if (::mount("tmpfs", path_.c_str(), "tmpfs", 0, options.c_str()) == 0)
      mounted_ = true;
    else
      reason_ = std::string("cannot mount a tmpfs here: ") + std::strerror(errno);
  }
  ~tmpfs_mount() {
    if (mounted_) ::umount2(path_.c_str(), MNT_DETACH);
  }
  std::filesystem::path path_;
  bool mounted_ = false;
  std::string reason_;
};

}  // namespace

BOOST_AUTO_TEST_CASE(rlimit_fsize_short_writes_every_kind_every_boundary) {
  // The kernel writes up to RLIMIT_FSIZE (a short write), then fails with
  // EFBIG. For every write kind and boundary position: complete success only
  // when the limit is beyond the data; otherwise an error with exactly the
  // bytes written (write_some_at alone may report the short count as success).
  temp_dir dir;
  auto failures = in_child([&]() -> std::string {
    ::signal(SIGXFSZ, SIG_IGN);
    rlimit cur;
    ::getrlimit(RLIMIT_FSIZE, &cur);
    const rlim_t hard = cur.rlim_max;
    if (hard != RLIM_INFINITY) return "RLIMIT_FSIZE hard limit is not unlimited";
    std::string out;
    const std::size_t len = 20000;
    auto data = pattern(len, 21);
    int idx = 0;
    for (std::uint64_t off : {std::uint64_t{0}, std::uint64_t{4095}, std::uint64_t{12288}}) {
      for (std::uint64_t limit : {std::uint64_t{0}, std::uint64_t{1}, std::uint64_t{4096}, std::uint64_t{6001},
                                  off + 6667, off + len - 1, off + len, off + len + 100}) {
        for (wkind k : all_kinds) {
          auto path = dir.file("fsize" + std::to_string(idx++));
          // Only the soft limit changes, so that it can be raised again
          // (raising the hard limit needs CAP_SYS_RESOURCE).
          rlimit unlimited{hard, hard};
          asio::io_context ctx;
          fsys::file f(ctx, path, rw_create);
          rlimit rl{limit, hard};
          if (::setrlimit(RLIMIT_FSIZE, &rl) != 0) return "setrlimit failed";
          outcome o = run_write(ctx, f, k, off, data);
          if (::setrlimit(RLIMIT_FSIZE, &unlimited) != 0) return "setrlimit failed";
          const std::size_t room = limit > off ? static_cast<std::size_t>(std::min<std::uint64_t>(limit - off, len)) : 0;
          std::string where = std::string(name(k)) + " off=" + std::to_string(off) + " limit=" + std::to_string(limit) +
                              ": ";
          if (o.calls != 1) out += where + "handler ran " + std::to_string(o.calls) + " times\n";
          if (room == len) {
            if (o.ec || o.n != len) out += where + "expected full success, got " + o.ec.message() + " n=" + std::to_string(o.n) + "\n";
          } else if (k == wkind::write_some && !o.ec) {
            if (o.n != room) out += where + "short write_some count " + std::to_string(o.n) + "\n";
          } else {
            if (o.ec != std::errc::file_too_large)
              out += where + "expected EFBIG, got '" + o.ec.message() + "' n=" + std::to_string(o.n) + "\n";
            if (o.n != room) out += where + "bytes " + std::to_string(o.n) + ", expected " + std::to_string(room) + "\n";
          }
          if (!o.ec && o.n < len && k != wkind::write_some) out += where + "success with fewer bytes\n";
          if (auto e = check_prefix_on_disk(path, off, data, o.n); !e.empty()) out += where + e + "\n";
          std::filesystem::remove(path);
        }
      }
    }
    return out;
  });
  BOOST_TEST(failures.empty(), failures);
}

BOOST_AUTO_TEST_CASE(efbig_at_the_filesystems_maximum_file_size) {
  // No rlimit: the filesystem's own limit (ext4 with 4 KiB blocks: 2^32-1
  // blocks). A write straddling it is short, then EFBIG.
  temp_dir dir;
  struct statfs sfs;
  BOOST_REQUIRE(::statfs(dir.path().c_str(), &sfs) == 0);
  constexpr long ext4_magic = 0xEF53;
  if (sfs.f_type != ext4_magic || sfs.f_bsize != 4096) {
    BOOST_TEST_MESSAGE("skipped: the temporary directory is not ext4 with 4 KiB blocks (its maximum file size is not known)");
    return;
  }
  const std::uint64_t max_size = 4096ull * 0xFFFFFFFFull;
  asio::io_context ctx;
  auto data = pattern(512, 22);
  for (wkind k : all_kinds) {
    auto path = dir.file(std::string("big-") + name(k));
    fsys::file f(ctx, path, rw_create);
    outcome o = run_write(ctx, f, k, max_size - 100, data);
    BOOST_TEST_CONTEXT(name(k)) {
      BOOST_TEST(o.calls == 1);
      if (k == wkind::write_some && !o.ec) {
        BOOST_TEST(o.n == 100u);
      } else {
        BOOST_TEST((o.ec == std::errc::file_too_large), o.ec.message());
        BOOST_TEST(o.n == 100u);
      }
      BOOST_TEST(f.size() == max_size);
    }
  }
}

BOOST_AUTO_TEST_CASE(enospc_on_a_small_tmpfs) {
  temp_dir dir;
  tmpfs_mount fs(dir.path(), "size=1m");
  if (!fs.mounted_) {
    BOOST_TEST_MESSAGE("skipped: " << fs.reason_);
    return;
  }
  asio::io_context ctx;
  auto data = pattern(2 << 20, 23);
  for (wkind k : all_kinds) {
    BOOST_TEST_CONTEXT(name(k)) {
      auto path = fs.path_ / "full.dat";
      {
        fsys::file f(ctx, path, rw_create);
        outcome o = run_write(ctx, f, k, 0, data);
        BOOST_TEST(o.calls == 1);
        if (!(k == wkind::write_some && !o.ec)) BOOST_TEST((o.ec == std::errc::no_space_on_device), o.ec.message());
        BOOST_TEST(o.n > 0u);
        BOOST_TEST(o.n <= (1u << 20));
        auto e = check_prefix_on_disk(path, 0, data, o.n);
        BOOST_TEST(e.empty(), e);
      }
      std::filesystem::remove(path);
    }
  }

  // Many writes filling the filesystem together: each one either complete
  // or an error with its own byte count, and the disk agrees with every one.
  auto path = fs.path_ / "many.dat";
  fsys::file f(ctx, path, rw_create);
  constexpr std::size_t block = 64 * 1024, count = 32;  // 2 MiB into 1 MiB
  auto many = pattern(block * count, 24);
  std::vector<outcome> outs(count);
  for (std::size_t i = 0; i < count; ++i) {
    auto h = [&, i](error_code ec, std::size_t n) {
      outs[i].ec = ec;
      outs[i].n = n;
      ++outs[i].calls;
    };
    auto buf = asio::buffer(many.data() + i * block, block);
    if (i % 2)
      f.async_write_linked_fsync(i * block, buf, h);
    else
      f.async_write_at(i * block, buf, h);
  }
  fsys::test::run(ctx);
  ctx.restart();
  auto disk = read_file(path);
  std::size_t failed = 0;
  for (std::size_t i = 0; i < count; ++i) {
    BOOST_TEST_CONTEXT("write " << i) {
      BOOST_TEST(outs[i].calls == 1);
      if (outs[i].ec) {
        ++failed;
        BOOST_TEST((outs[i].ec == std::errc::no_space_on_device), outs[i].ec.message());
        BOOST_TEST(outs[i].n < block);
      } else {
        BOOST_TEST(outs[i].n == block);
      }
      const std::size_t off = i * block;
      const std::size_t n = outs[i].n;
      BOOST_REQUIRE(disk.size() >= (n ? off + n : 0));
      BOOST_TEST(std::equal(many.begin() + static_cast<std::ptrdiff_t>(off), many.begin() + static_cast<std::ptrdiff_t>(off + n),
                            disk.begin() + static_cast<std::ptrdiff_t>(off)));
    }
  }
  BOOST_TEST(failed > 0u);  // the filesystem really was too small
  // Space comes back: after removing the file, writing works again.
  f.close();
  std::filesystem::remove(path);
  fsys::file g(ctx, fs.path_ / "again.dat", rw_create);
  outcome o = run_write(ctx, g, wkind::linked_fsync, 0, std::vector<std::byte>(many.begin(), many.begin() + block));
  BOOST_TEST(!o.ec);
  BOOST_TEST(o.n == block);
}

// ---- faultfs: failed fsyncs, short writes, write errors ------------------

namespace {

struct faultfs_fixture {
  temp_dir dir;
  fsys::test::faultfs_mount fs{dir.path()};
};

}  // namespace

BOOST_AUTO_TEST_CASE(fsync_eio_reaches_linked_write_fdatasync_and_fsync_and_is_never_retried) {
  faultfs_fixture fx;
  if (!fx.fs.mounted()) {
    BOOST_TEST_MESSAGE("skipped: " << fx.fs.reason());
    return;
  }
  auto& fs = fx.fs;
  asio::io_context ctx;
  auto data = pattern(30000, 25);
  auto path = fs.file("sync.dat");
  fsys::file f(ctx, path, rw_create);

  // One failing fsync only: if the library retried it, the retry would
  // succeed and the failure would turn into a false success.
  for (wkind k : {wkind::linked_fsync, wkind::linked_writev}) {
    BOOST_TEST_CONTEXT(name(k)) {
      // A failed sync is sticky on its open file: each case opens afresh.
      f = fsys::file(ctx, path, O_RDWR);
      auto before = fs.counters();
      fs.control("fsync_eio 1");
      outcome o = run_write(ctx, f, k, 0, data);
      auto after = fs.counters();
      BOOST_TEST(o.calls == 1);
      BOOST_TEST((o.ec == std::errc::io_error), o.ec.message());
      BOOST_TEST(after["fsyncs"] - before["fsyncs"] == 1u);  // no retry
      BOOST_TEST(after["fsync_failed"] - before["fsync_failed"] == 1u);
      BOOST_TEST(after["dirty"] == 1u);  // the filesystem did not make it durable
      fs.control("reset");
    }
  }
  for (bool data_only : {true, false}) {
    BOOST_TEST_CONTEXT((data_only ? "fdatasync" : "fsync")) {
      f = fsys::file(ctx, path, O_RDWR);
      outcome w = run_write(ctx, f, wkind::write_at, 0, data);
      BOOST_TEST(!w.ec);
      auto before = fs.counters();
      fs.control("fsync_eio 1");
      outcome o = run_sync(ctx, f, data_only);
      auto after = fs.counters();
      BOOST_TEST(o.calls == 1);
      BOOST_TEST((o.ec == std::errc::io_error), o.ec.message());
      BOOST_TEST(after["fsyncs"] - before["fsyncs"] == 1u);
      BOOST_TEST(after["dirty"] == 1u);
      // The next sync on the same open file fails too, with the same error:
      // the kernel would report 0 for it although the pages were lost.
      outcome again = run_sync(ctx, f, data_only);
      BOOST_TEST((again.ec == std::errc::io_error), again.ec.message());
      // A sync through a new open of the file reaches the filesystem again.
      fsys::file reopened(ctx, path, O_RDWR);
      outcome fresh = run_sync(ctx, reopened, data_only);
      BOOST_TEST(!fresh.ec);
      BOOST_TEST(fs.counters()["dirty"] == 0u);
    }
  }

  // Every fsync fails: many linked writes in flight together, none reported
  // durable.
  fs.control("fsync_eio -1");
  f = fsys::file(ctx, path, O_RDWR);
  constexpr int count = 40;
  std::vector<outcome> outs(count);
  for (int i = 0; i < count; ++i) {
    f.async_write_linked_fsync(static_cast<std::uint64_t>(i) * 1000, asio::buffer(data.data(), 1000),
                               [&, i](error_code ec, std::size_t n) {
                                 outs[i].ec = ec;
                                 outs[i].n = n;
                                 ++outs[i].calls;
                               });
  }
  fsys::test::run(ctx);
  ctx.restart();
  for (auto& o : outs) {
    BOOST_TEST(o.calls == 1);
    BOOST_TEST((o.ec == std::errc::io_error), o.ec.message());
  }
  fs.control("reset");
}

BOOST_AUTO_TEST_CASE(short_writes_are_continued_and_synced_after_the_last_byte) {
  faultfs_fixture fx;
  if (!fx.fs.mounted()) {
    BOOST_TEST_MESSAGE("skipped: " << fx.fs.reason());
    return;
  }
  auto& fs = fx.fs;
  asio::io_context ctx;
  auto data = pattern(50000, 26);
  for (long max : {1L, 100L, 4095L, 33333L}) {
    for (wkind k : all_kinds) {
      BOOST_TEST_CONTEXT(name(k) << " short " << max) {
        if (max == 1 && k != wkind::linked_fsync && k != wkind::write_some) continue;  // keep it quick
        auto path = fs.file("short.dat");
        std::filesystem::remove(fs.file("short.dat"));
        fsys::file f(ctx, path, rw_create);
        fs.control("short " + std::to_string(max));
        auto before = fs.counters();
        const auto& payload = max == 1 ? std::vector<std::byte>(data.begin(), data.begin() + 3000) : data;
        outcome o = run_write(ctx, f, k, 7, payload);
        auto after = fs.counters();
        fs.control("reset");
        BOOST_TEST(o.calls == 1);
        if (k == wkind::write_some) {
          // One write(2): the kernel's FUSE client may itself send several
          // requests per call and stop at the first short one.
          BOOST_TEST(!o.ec);
          BOOST_TEST(o.n >= static_cast<std::size_t>(std::min<long>(max, static_cast<long>(payload.size()))));
          BOOST_TEST(o.n < payload.size());
        } else {
          BOOST_TEST(!o.ec, o.ec.message());
          BOOST_TEST(o.n == payload.size());
        }
        if (is_linked(k)) {
          BOOST_TEST(after["dirty"] == 0u);  // an fsync succeeded after the last write
          BOOST_TEST(after["fsyncs"] > before["fsyncs"]);
        }
        auto e = check_prefix_on_disk(fs.backing_file("short.dat"), 7, payload, o.n);
        BOOST_TEST(e.empty(), e);
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(write_errors_arrive_as_they_are_with_the_bytes_written) {
  faultfs_fixture fx;
  if (!fx.fs.mounted()) {
    BOOST_TEST_MESSAGE("skipped: " << fx.fs.reason());
    return;
  }
  auto& fs = fx.fs;
  asio::io_context ctx;
  auto data = pattern(40000, 27);
  for (int err : {EIO, ENOSPC, EDQUOT, EFBIG}) {
    for (long budget : {0L, 3000L, 39999L}) {
      for (wkind k : all_kinds) {
        BOOST_TEST_CONTEXT(name(k) << " errno " << err << " after " << budget << " bytes") {
          std::filesystem::remove(fs.file("err.dat"));
          fsys::file f(ctx, fs.file("err.dat"), rw_create);
          fs.control("write_budget " + std::to_string(budget) + " " + std::to_string(err));
          auto before = fs.counters();
          outcome o = run_write(ctx, f, k, 0, data);
          auto after = fs.counters();
          fs.control("off");
          BOOST_TEST(o.calls == 1);
          if (k == wkind::write_some && budget > 0) {
            BOOST_TEST(!o.ec);  // one short write, no error yet
            BOOST_TEST(o.n == static_cast<std::size_t>(budget));
          } else {
            BOOST_TEST(o.ec.value() == err, o.ec.message());
            BOOST_TEST((o.ec.category() == boost::system::system_category()));
            BOOST_TEST(o.n == static_cast<std::size_t>(budget));
          }
          if (is_linked(k)) BOOST_TEST(after["fsyncs"] == before["fsyncs"]);  // the link was broken: no sync
          auto e = check_prefix_on_disk(fs.backing_file("err.dat"), 0, data, o.n);
          BOOST_TEST(e.empty(), e);
        }
      }
    }
  }
}

// ---- sync errors shared by overlapping syncs --------------------------------

BOOST_AUTO_TEST_CASE(a_sync_that_overlapped_a_failed_sync_of_the_same_file_fails_too) {
  // The kernel reports a writeback error once per open file: of two syncs in
  // flight together, one sees it and the other may return 0 although the
  // lost pages were its own. Here the filesystem fails the first fsync that
  // reaches it and accepts the second: neither write may be called durable.
  faultfs_fixture fx;
  if (!fx.fs.mounted()) {
    BOOST_TEST_MESSAGE("skipped: " << fx.fs.reason());
    return;
  }
  asio::io_context ctx;
  auto data = pattern(8192, 40);
  fsys::file f(ctx, fx.fs.file("overlap.dat"), rw_create);
  fx.fs.control("fsync_eio 1");
  error_code ea = asio::error::would_block, eb = asio::error::would_block;
  f.async_write_linked_fsync(0, asio::buffer(data.data(), 4096), [&](error_code ec, std::size_t) { ea = ec; });
  f.async_write_linked_fsync(4096, asio::buffer(data.data() + 4096, 4096), [&](error_code ec, std::size_t) { eb = ec; });
  fsys::test::run(ctx);
  BOOST_TEST((ea == std::errc::io_error), ea.message());
  BOOST_TEST((eb == std::errc::io_error), eb.message());
  BOOST_TEST(fx.fs.counters()["fsync_failed"] == 1u);  // one real failure, shared
  // And every later sync of that open file fails the same way.
  error_code later = asio::error::would_block;
  f.async_fdatasync([&](error_code ec) { later = ec; });
  ctx.restart();
  fsys::test::run(ctx);
  BOOST_TEST((later == std::errc::io_error), later.message());
  fx.fs.control("reset");
}

// ---- psync: cancelling queued operations ------------------------------------

BOOST_AUTO_TEST_CASE(queued_operations_are_cancelled_while_the_only_worker_is_busy) {
  faultfs_fixture fx;
  if (!fx.fs.mounted()) {
    BOOST_TEST_MESSAGE("skipped: " << fx.fs.reason());
    return;
  }
  temp_dir dir;
  auto path = dir.file("queued.dat");
  auto original = pattern(4096, 2);
  fsys::test::write_file(path, original);
  asio::io_context ctx;
  fsys::ring_options one;
  one.fallback = fsys::fallback_policy::force_psync;
  one.psync_threads = 1;
  // The reads must queue behind the busy worker, not complete from the page
  // cache through the inline fast path.
  one.inline_fast_path = false;
  fsys::test::make_ring(ctx, one);
  // The only file worker blocks in a write to the FUSE mount while its
  // daemon is stopped.
  fsys::file slow(ctx, fx.fs.file("slow.dat"), rw_create);
  fsys::file f(ctx, path, O_RDWR);
  ::kill(fx.fs.pid(), SIGSTOP);
  struct resume {
    pid_t pid;
    ~resume() { ::kill(pid, SIGCONT); }
  } resume_daemon{fx.fs.pid()};
  auto slow_data = pattern(4096, 7);
  std::vector<std::string> order;
  slow.async_write_at(0, asio::buffer(slow_data), [&](error_code ec, std::size_t n) {
    BOOST_TEST(!ec);
    BOOST_TEST(n == 4096u);
    order.push_back("slow");
  });
  // Queued behind it: a write and a read that get cancelled, and a read that does not.
  auto junk = pattern(4096, 3);
  asio::cancellation_signal cancel_write, cancel_read;
  error_code write_ec, read_ec, kept_ec;
  std::size_t write_n = 99, read_n = 99, kept_n = 0;
  std::vector<std::byte> rbuf(4096), kept(4096);
  f.async_write_at(0, asio::buffer(junk), asio::bind_cancellation_slot(cancel_write.slot(), [&](error_code ec, std::size_t n) {
    write_ec = ec;
    write_n = n;
    order.push_back("write");
  }));
  f.async_read_at(0, asio::buffer(rbuf), asio::bind_cancellation_slot(cancel_read.slot(), [&](error_code ec, std::size_t n) {
    read_ec = ec;
    read_n = n;
    order.push_back("read");
  }));
  f.async_read_at(0, asio::buffer(kept), [&](error_code ec, std::size_t n) {
    kept_ec = ec;
    kept_n = n;
    order.push_back("kept");
  });
  asio::steady_timer t1(ctx, std::chrono::milliseconds(30));
  asio::steady_timer t2(ctx);
  t1.async_wait([&](error_code) {
    BOOST_TEST(order.empty());  // the worker is still blocked in the FUSE write
    cancel_write.emit(asio::cancellation_type::terminal);
    cancel_read.emit(asio::cancellation_type::terminal);
    t2.expires_after(std::chrono::milliseconds(30));
    t2.async_wait([&](error_code) {
      BOOST_TEST(order.size() == 2u);  // the cancelled ones, while the worker is still busy
      ::kill(fx.fs.pid(), SIGCONT);
    });
  });
  ctx.run();  // one thread: the order of the handlers is checked below
  BOOST_TEST(order == (std::vector<std::string>{"write", "read", "slow", "kept"}), boost::test_tools::per_element());
  BOOST_TEST((write_ec == asio::error::operation_aborted));
  BOOST_TEST(write_n == 0u);
  BOOST_TEST((read_ec == asio::error::operation_aborted));
  BOOST_TEST(read_n == 0u);
  BOOST_TEST(!kept_ec);
  BOOST_TEST(kept_n == 4096u);
  BOOST_TEST((kept == original));  // the cancelled write never ran
  BOOST_TEST((read_file(path) == original));
}

// ---- blocking calls on FUSE ---------------------------------------------------

BOOST_AUTO_TEST_CASE(blocking_calls_on_fuse_never_block_in_the_caller) {
  // A FUSE (or network) filesystem can wait for its daemon indefinitely: the
  // blocking fast path must hand such calls to the ring, where shutdown can
  // cancel them, instead of making the blocking call in the caller.
  faultfs_fixture fx;
  if (!fx.fs.mounted()) {
    BOOST_TEST_MESSAGE("skipped: " << fx.fs.reason());
    return;
  }
  fsys::blocking_ring ring;
  auto data = pattern(4096, 9);
  int fd = ::open(fx.fs.file("blocking.dat").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  BOOST_REQUIRE(fd >= 0);
  const auto before = ring.stats().ops_started;
  BOOST_TEST(ring.write_at(fd, std::span<const std::byte>(data), 0) == data.size());
  BOOST_TEST(ring.stats().ops_started == before + 1);  // went through the engine
  std::vector<std::byte> back(4096);
  BOOST_TEST(ring.read_at(fd, std::span<std::byte>(back), 0) == back.size());
  BOOST_TEST((back == data));
  ::close(fd);
}
