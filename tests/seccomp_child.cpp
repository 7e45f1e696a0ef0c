// Test helper for test_fallback: runs the fallback checks in a fresh process
// (probe_features() caches its result per process) where io_uring is really
// refused.
//
//   seccomp_child EPERM|ENOSYS DIR   installs a seccomp filter making
//                                    io_uring_setup(2) fail with that errno
//   seccomp_child env DIR            expects FSYS_DISABLE_IO_URING=1 to be set
//
// Then checks: the kernel refuses a ring; probe_features() says io_uring is
// unavailable and why; the automatic policy falls back to psync and
// round-trips data with a linked write+fsync; require_io_uring fails with
// errc::io_uring_setup_failed. Prints each failure; exits 0 when all hold,
// 1 otherwise, 77 when the machine cannot install a seccomp filter.
#include <fsys/fsys.hpp>

#include <boost/asio/io_context.hpp>

#include <fcntl.h>
#include <liburing.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace asio = boost::asio;
using boost::system::error_code;

namespace {

int failures = 0;

void check(bool ok, const std::string& what) {
  if (!ok) {
    std::printf("FAILED: %s\n", what.c_str());
    ++failures;
  }
}

#if defined(__x86_64__)
constexpr std::uint32_t this_arch = AUDIT_ARCH_X86_64;
#elif defined(__aarch64__)
constexpr std::uint32_t this_arch = AUDIT_ARCH_AARCH64;
#else
constexpr std::uint32_t this_arch = 0;
#endif

// io_uring_setup → SECCOMP_RET_ERRNO | err; every other syscall allowed. This
// is how container runtimes' default profiles refuse io_uring.
bool install_filter(int err) {
  if (this_arch == 0) return false;
  sock_filter filter[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, this_arch, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (static_cast<std::uint32_t>(err) & SECCOMP_RET_DATA)),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  sock_fprog prog{static_cast<unsigned short>(sizeof filter / sizeof filter[0]), filter};
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return false;
  return ::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) == 0;
}

std::vector<std::byte> pattern(std::size_t n, unsigned seed) {
  std::vector<std::byte> v(n);
  std::uint32_t x = seed * 2654435761u + 1;
  for (auto& b : v) {
    x = x * 1664525u + 1013904223u;
    b = static_cast<std::byte>(x >> 24);
  }
  return v;
}

// Linked write+fsync, fdatasync, fsync and a read back, all through `ctx`'s
// service; checks the data and that handlers ran on the thread running ctx.
void round_trip(asio::io_context& ctx, const std::string& path) {
  fsys::file f(ctx, path, O_RDWR | O_CREAT | O_TRUNC);
  auto a = pattern(70000, 1), b = pattern(333, 2);
  std::vector<asio::const_buffer> out{asio::buffer(a), asio::buffer(b)};
  std::vector<std::byte> back(a.size() + b.size() + 10);
  const auto runner = std::this_thread::get_id();
  error_code wec{asio::error::would_block}, sec{asio::error::would_block}, fec{asio::error::would_block},
      rec{asio::error::would_block};
  std::size_t written = 0, read = 0;
  bool same_thread = true;
  f.async_write_linked_fsync(4096, out, [&](error_code ec, std::size_t n) {
    same_thread &= std::this_thread::get_id() == runner;
    wec = ec;
    written = n;
    f.async_fdatasync([&](error_code ec2) {
      sec = ec2;
      f.async_fsync([&](error_code ec3) {
        fec = ec3;
        f.async_read_at(4096, asio::buffer(back), [&](error_code ec4, std::size_t m) {
          same_thread &= std::this_thread::get_id() == runner;
          rec = ec4;
          read = m;
        });
      });
    });
  });
  ctx.run();
  check(!wec, "linked write+fsync succeeded: " + wec.message());
  check(written == a.size() + b.size(), "linked write+fsync wrote every byte");
  check(!sec, "fdatasync succeeded: " + sec.message());
  check(!fec, "fsync succeeded: " + fec.message());
  check(!rec, "read back succeeded: " + rec.message());
  check(read == a.size() + b.size(), "read stopped at end of file");
  check(std::equal(a.begin(), a.end(), back.begin()) && std::equal(b.begin(), b.end(), back.begin() + a.size()),
        "data read back equals data written");
  check(f.size() == 4096 + a.size() + b.size(), "file size");
  check(same_thread, "handlers ran on the thread running the io_context");
}

void check_require_io_uring_fails() {
  asio::io_context ctx;
  try {
    asio::make_service<fsys::uring_service>(ctx, fsys::ring_options{.fallback = fsys::fallback_policy::require_io_uring});
    check(false, "require_io_uring must throw");
  } catch (const std::system_error& e) {
    check(e.code() == fsys::errc::io_uring_setup_failed,
          std::string("require_io_uring reports io_uring_setup_failed, got ") + e.code().message());
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s EPERM|ENOSYS|env DIR\n", argv[0]);
    return 2;
  }
  const std::string mode = argv[1];
  const std::string dir = argv[2];
  std::error_code expected_error;

  if (mode == "env") {
    check(fsys::io_uring_disabled_by_environment(), "FSYS_DISABLE_IO_URING is set");
    expected_error = fsys::errc::io_uring_setup_failed;
  } else {
    const int err = mode == "EPERM" ? EPERM : mode == "ENOSYS" ? ENOSYS : 0;
    if (err == 0) return 2;
    if (!install_filter(err)) {
      std::printf("cannot install a seccomp filter here (%s)\n", std::strerror(errno));
      return 77;
    }
    expected_error = std::error_code(err, std::system_category());
    // The kernel itself refuses now (not a mock): a direct setup fails.
    io_uring ring;
    int r = io_uring_queue_init(8, &ring, 0);
    if (r == 0) io_uring_queue_exit(&ring);
    check(r == -err, "io_uring_queue_init fails with the filter's errno, got " + std::to_string(r));
  }

  // probe_features(): unavailable, and why.
  const fsys::ring_features& f = fsys::probe_features();
  check(!f.available, "probe_features() reports io_uring unavailable");
  check(f.setup_error == expected_error, "probe_features().setup_error is " + expected_error.message() +
                                             ", got " + f.setup_error.message());
  check(f.disabled_by_environment == (mode == "env"), "disabled_by_environment");
  check(f.summary().find("unavailable") != std::string::npos, "summary says unavailable: " + f.summary());

  // require_io_uring: fails; the kernel's errno stays available in the probe.
  check_require_io_uring_fails();

  // automatic (explicit and by default): falls back and works.
  {
    asio::io_context ctx;
    auto& svc = asio::make_service<fsys::uring_service>(ctx, fsys::ring_options{});
    check(svc.active_backend() == fsys::backend::psync, "automatic falls back to psync");
    check(svc.fallback_reason() == expected_error, "fallback_reason is " + expected_error.message() + ", got " +
                                                       svc.fallback_reason().message());
    check(svc.setup_flags() == 0, "psync has no setup flags");
    round_trip(ctx, dir + "/automatic.dat");
    check(svc.stats().ops_completed == 4, "four operations completed");
  }
  {
    asio::io_context ctx;  // no make_service: the first file builds the service
    round_trip(ctx, dir + "/default.dat");
    check(asio::use_service<fsys::uring_service>(ctx).active_backend() == fsys::backend::psync,
          "the default service falls back too");
  }
  {
    asio::io_context ctx;
    auto& svc = asio::make_service<fsys::uring_service>(
        ctx, fsys::ring_options{.fallback = fsys::fallback_policy::force_psync});
    check(svc.active_backend() == fsys::backend::psync, "force_psync");
    round_trip(ctx, dir + "/forced.dat");
  }
  std::printf("%s: %d failure(s)\n", mode.c_str(), failures);
  return failures == 0 ? 0 : 1;
}
