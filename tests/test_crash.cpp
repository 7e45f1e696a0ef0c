// Processes: a writer killed with SIGKILL at random moments never loses an
// acknowledged record, and a forked child never uses its parent's ring.
#include <boost/test/unit_test.hpp>

#include "support/ring_fixture.hpp"
#include "support/temp_dir.hpp"

#include <fsys/fsys.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <map>
#include <optional>
#include <random>
#include <vector>

namespace asio = boost::asio;
using boost::system::error_code;
using fsys::test::pattern;
using fsys::test::read_file;
using fsys::test::temp_dir;

namespace {

// A record: header then payload. The checksum covers seq, length and payload.
struct record_header {
  std::uint32_t magic;
  std::uint32_t seq;
  std::uint32_t len;
  std::uint32_t pad;
  std::uint64_t sum;
};
constexpr std::uint32_t record_magic = 0x52595346;  // "FSYR"

std::uint64_t checksum(std::uint32_t seq, const std::byte* p, std::size_t n) {
  std::uint64_t h = 1469598103934665603ull ^ seq ^ (static_cast<std::uint64_t>(n) << 32);
  for (std::size_t i = 0; i < n; ++i) {
    h ^= static_cast<unsigned char>(p[i]);
    h *= 1099511628211ull;
  }
  return h;
}

// What the child reports for each record the library acknowledged as durable.
struct ack {
  std::uint64_t offset;
  std::uint32_t seq;
  std::uint32_t len;
  std::uint64_t sum;
};
static_assert(sizeof(ack) <= PIPE_BUF, "acks must be written atomically");

// Finds the end of the valid records of `disk` and the next sequence number.
std::pair<std::uint64_t, std::uint32_t> scan(const std::vector<std::byte>& disk) {
  std::uint64_t off = 0;
  std::uint32_t next = 0;
  while (off + sizeof(record_header) <= disk.size()) {
    record_header h;
    std::memcpy(&h, disk.data() + off, sizeof h);
    if (h.magic != record_magic || h.seq != next || off + sizeof h + h.len > disk.size()) break;
    if (checksum(h.seq, disk.data() + off + sizeof h, h.len) != h.sum) break;
    off += sizeof h + h.len;
    ++next;
  }
  return {off, next};
}

[[noreturn]] void writer_child(const std::filesystem::path& path, int ack_fd, unsigned seed) try {
  // Recover like a real log: continue after the last valid record (a torn,
  // unacknowledged record after it is overwritten).
  auto [off, seq] = scan(read_file(path));
  asio::io_context ctx;
  fsys::file f(ctx, path, O_RDWR | O_CREAT);
  asio::co_spawn(ctx, [&, off = off, seq = seq]() mutable -> asio::awaitable<void> {
    std::mt19937 rng(seed);
    for (;;) {
      const std::uint32_t len = 1 + rng() % 12000;
      std::vector<std::byte> rec(sizeof(record_header) + len);
      auto payload = pattern(len, (static_cast<std::uint64_t>(seed) << 32) | seq);
      std::memcpy(rec.data() + sizeof(record_header), payload.data(), len);
      record_header h{record_magic, seq, len, 0, checksum(seq, payload.data(), len)};
      std::memcpy(rec.data(), &h, sizeof h);
      co_await fsys::co_write_linked_fsync(f, off, asio::buffer(rec));
      ack a{off, seq, len, h.sum};
      if (::write(ack_fd, &a, sizeof a) != static_cast<ssize_t>(sizeof a)) std::_Exit(3);
      off += rec.size();
      ++seq;
    }
  }, [](std::exception_ptr) { std::_Exit(2); });
  ctx.run();
  std::_Exit(1);
} catch (...) {
  // Never return into the test framework from a forked child.
  std::_Exit(4);
}

template <class E>
std::optional<std::error_code> forked_process_error() {
  if constexpr (requires { E::forked_process; })
    return make_error_code(E::forked_process);
  else
    return std::nullopt;
}

}  // namespace

BOOST_AUTO_TEST_CASE(sigkill_at_random_moments_never_loses_an_acknowledged_record) {
  temp_dir dir;
  auto path = dir.file("log.dat");
  fsys::test::write_file(path, {});
  std::mt19937 rng(2024);
  std::map<std::uint32_t, ack> acked;
  constexpr int kills = 25;
  int total_new = 0;
  for (int round = 0; round < kills; ++round) {
    int p[2];
    BOOST_REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
    const unsigned seed = rng();
    pid_t pid = ::fork();
    BOOST_REQUIRE(pid >= 0);
    if (pid == 0) {
      ::close(p[0]);
      writer_child(path, p[1], seed);
    }
    ::close(p[1]);
    // Kill after a random time counted from the first acknowledgement, so
    // every round writes something and the kill lands mid-stream.
    const auto delay = std::chrono::microseconds(rng() % 40000);
    std::optional<std::chrono::steady_clock::time_point> deadline;
    std::vector<ack> got;
    bool killed = false;
    for (;;) {
      int timeout_ms = 5000;
      if (deadline) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(*deadline - std::chrono::steady_clock::now()).count();
        timeout_ms = static_cast<int>(std::max<long long>(0, left));
      }
      pollfd pfd{p[0], POLLIN, 0};
      int r = ::poll(&pfd, 1, killed ? 5000 : timeout_ms);
      if (r == 0 && !killed) {
        ::kill(pid, SIGKILL);
        killed = true;
        continue;
      }
      if (r < 0) continue;
      ack a;
      ssize_t n = ::read(p[0], &a, sizeof a);
      if (n == 0) break;  // the child is gone and every ack it sent is read
      BOOST_REQUIRE(n == static_cast<ssize_t>(sizeof a));
      got.push_back(a);
      if (!deadline) deadline = std::chrono::steady_clock::now() + delay;
      if (!killed && std::chrono::steady_clock::now() >= *deadline) {
        ::kill(pid, SIGKILL);
        killed = true;
      }
    }
    ::close(p[0]);
    int status = 0;
    ::waitpid(pid, &status, 0);
    BOOST_TEST_CONTEXT("round " << round) {
      BOOST_TEST((WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL), "child status " << status);
      BOOST_TEST(!got.empty());
      for (const ack& a : got) {
        // A sequence number acknowledged earlier must never be written again:
        // the recovery scan found every acknowledged record intact.
        BOOST_TEST(acked.count(a.seq) == 0u, "seq " << a.seq << " acknowledged twice");
        acked[a.seq] = a;
      }
      total_new += static_cast<int>(got.size());
      // Every acknowledged record, of this round and all earlier ones, is on
      // disk intact.
      auto disk = read_file(path);
      int bad = 0;
      for (const auto& [seq, a] : acked) {
        if (a.offset + sizeof(record_header) + a.len > disk.size()) {
          ++bad;
          continue;
        }
        record_header h;
        std::memcpy(&h, disk.data() + a.offset, sizeof h);
        if (h.magic != record_magic || h.seq != seq || h.len != a.len || h.sum != a.sum ||
            checksum(seq, disk.data() + a.offset + sizeof h, a.len) != a.sum)
          ++bad;
      }
      BOOST_TEST(bad == 0);
      auto [end, next] = scan(disk);
      BOOST_TEST(next >= (acked.empty() ? 0u : acked.rbegin()->first + 1));
      (void)end;
    }
  }
  BOOST_TEST_MESSAGE("crash test: " << kills << " kills, " << total_new << " acknowledged records, all intact");
}

// ---- fork ------------------------------------------------------------------

namespace {

struct fork_setup {
  temp_dir dir;
  asio::io_context ctx;
  int p[2] = {-1, -1};
  std::optional<fsys::file> rd, f;
  std::vector<std::byte> pending_buf = std::vector<std::byte>(16);
  int pending_calls = 0;
  error_code pending_ec;
  std::size_t pending_n = 0;

  fork_setup() {
    BOOST_REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
    rd.emplace(ctx, p[0]);
    f.emplace(ctx, dir.file("fork.dat"), O_RDWR | O_CREAT);
    // The parent's ring is in use: a write done, and a read waiting in the
    // kernel across the fork. Why the buffer is sound: it lives in the
    // fixture, which outlives the read.
    auto data = pattern(4096, 51);
    error_code wec;
    f->async_write_at(0, asio::buffer(data), [&](error_code ec, std::size_t) { wec = ec; });
    ctx.run();
    ctx.restart();
    BOOST_REQUIRE(!wec);
    rd->async_read_some_at(0, asio::buffer(pending_buf), [this](error_code ec, std::size_t n) {
      ++pending_calls;
      pending_ec = ec;
      pending_n = n;
    });
    for (int i = 0; i < 5; ++i) ctx.poll();
    BOOST_REQUIRE(pending_calls == 0);
  }
  ~fork_setup() {
    rd.reset();
    f.reset();
    if (p[1] >= 0) ::close(p[1]);
  }

  // After the child: the parent's pending read was not disturbed, completes
  // with the parent's data, and the parent's ring still does everything.
  void check_parent_ring() {
    for (int i = 0; i < 5; ++i) ctx.poll();
    BOOST_TEST(pending_calls == 0);  // the child neither completed nor cancelled it
    BOOST_TEST(::write(p[1], "P", 1) == 1);
    ctx.run_for(std::chrono::seconds(5));
    ctx.restart();
    BOOST_TEST(pending_calls == 1);
    BOOST_TEST(!pending_ec);
    BOOST_TEST(pending_n == 1u);
    BOOST_TEST(static_cast<char>(pending_buf[0]) == 'P');
    auto more = pattern(8192, 52);
    error_code ec2;
    std::size_t n2 = 0;
    f->async_write_linked_fsync(100000, asio::buffer(more), [&](error_code ec, std::size_t n) {
      ec2 = ec;
      n2 = n;
    });
    ctx.run_for(std::chrono::seconds(5));
    ctx.restart();
    BOOST_TEST(!ec2, ec2.message());
    BOOST_TEST(n2 == more.size());
  }
};

// Runs `fn` in a forked child of `s` and returns its exit code (or -signal).
template <class Fn>
int run_child(fork_setup& s, Fn fn) {
  s.ctx.notify_fork(asio::execution_context::fork_prepare);
  pid_t pid = ::fork();
  BOOST_REQUIRE(pid >= 0);
  if (pid == 0) {
    ::alarm(20);  // a child that hangs is killed, and the parent sees it
    std::_Exit(fn());
  }
  s.ctx.notify_fork(asio::execution_context::fork_parent);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
}

}  // namespace

BOOST_AUTO_TEST_CASE(fork_child_after_notify_fork_uses_a_new_ring) {
  fork_setup s;
  int code = run_child(s, [&]() -> int {
    s.ctx.notify_fork(asio::execution_context::fork_child);
    auto data = pattern(20000, 53);
    std::vector<std::byte> back(data.size());
    error_code wec = asio::error::would_block, rec = asio::error::would_block, sec = asio::error::would_block;
    std::size_t wn = 0, rn = 0;
    s.f->async_write_linked_fsync(8192, asio::buffer(data), [&](error_code ec, std::size_t n) {
      wec = ec;
      wn = n;
      s.f->async_read_at(8192, asio::buffer(back), [&](error_code ec2, std::size_t n2) {
        rec = ec2;
        rn = n2;
        s.f->async_fdatasync([&](error_code ec3) {
          sec = ec3;
          s.ctx.stop();
        });
      });
    });
    // run_for: the parent's pending read was copied into the child and may
    // keep the context busy; the child's work ends with stop().
    s.ctx.run_for(std::chrono::seconds(10));
    if (wec || wn != data.size()) return 10;
    if (rec || rn != data.size() || back != data) return 11;
    if (sec) return 12;
    // Destroying the child's context and files must not touch the parent's ring.
    s.rd.reset();
    s.f.reset();
    s.ctx.restart();
    s.ctx.poll();
    return 0;
  });
  BOOST_TEST(code == 0, "child exit " << code << " (10 write, 11 read, 12 fdatasync, -14 hung)");
  auto disk = read_file(s.dir.file("fork.dat"));
  auto data = pattern(20000, 53);
  BOOST_REQUIRE(disk.size() >= 8192 + data.size());
  BOOST_TEST(std::equal(data.begin(), data.end(), disk.begin() + 8192));
  s.check_parent_ring();
}

BOOST_AUTO_TEST_CASE(fork_child_without_notify_fork_gets_a_clear_error) {
  auto expected = forked_process_error<fsys::errc>();
  fork_setup s;
  int code = run_child(s, [&]() -> int {
    if (!expected) return 20;
    auto data = pattern(512, 54);
    int errors = 0, calls = 0;
    auto count = [&](error_code ec) {
      ++calls;
      if (ec == *expected) ++errors;
      if (calls == 3) s.ctx.stop();
    };
    s.f->async_write_at(0, asio::buffer(data), [&](error_code ec, std::size_t n) {
      count(n == 0 ? ec : error_code());
    });
    s.f->async_write_linked_fsync(0, asio::buffer(data), [&](error_code ec, std::size_t) { count(ec); });
    s.f->async_fdatasync([&](error_code ec) { count(ec); });
    s.ctx.run_for(std::chrono::seconds(10));
    if (calls != 3) return 21;
    if (errors != 3) return 22;
    s.rd.reset();
    s.f.reset();
    s.ctx.restart();
    s.ctx.poll();
    return 0;
  });
  BOOST_TEST(expected.has_value(), "fsys::errc::forked_process does not exist yet");
  BOOST_TEST(code == 0, "child exit " << code << " (20 no errc, 21 handlers did not run, 22 wrong error, -14 hung)");
  // The child's refused write did not reach the file.
  auto disk = read_file(s.dir.file("fork.dat"));
  BOOST_TEST(std::equal(disk.begin(), disk.begin() + 512, pattern(4096, 51).begin()));
  s.check_parent_ring();
}
