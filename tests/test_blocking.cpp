// fsys::blocking_ring: blocking calls from plain threads, on real files.
#include <boost/test/unit_test.hpp>

#include "support/ring_fixture.hpp"
#include "support/temp_dir.hpp"

#include <fsys/fsys.hpp>

#include <boost/asio/post.hpp>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <future>
#include <memory>
#include <random>
#include <thread>
#include <vector>

namespace asio = boost::asio;
using fsys::test::pattern;
using fsys::test::read_file;
using fsys::test::temp_dir;
using namespace std::chrono_literals;

namespace {

/// An fd closed at scope exit.
struct fd_guard {
  int fd = -1;
  explicit fd_guard(int f) : fd(f) { BOOST_REQUIRE_MESSAGE(fd >= 0, "open: " << std::strerror(errno)); }
  ~fd_guard() {
    if (fd >= 0) ::close(fd);
  }
  fd_guard(const fd_guard&) = delete;
  fd_guard& operator=(const fd_guard&) = delete;
};

int open_rw(const std::filesystem::path& p) { return ::open(p.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600); }

std::span<const std::byte> cspan(const std::vector<std::byte>& v) { return {v.data(), v.size()}; }

const std::error_code ebadf(EBADF, std::system_category());

/// How many of the pages of [off, off + len) are in the page cache (mincore(2)).
std::size_t resident_pages(int fd, off_t off, std::size_t len) {
  void* p = ::mmap(nullptr, len, PROT_READ, MAP_SHARED, fd, off);
  BOOST_REQUIRE(p != MAP_FAILED);
  const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  std::vector<unsigned char> vec((len + page - 1) / page);
  const int r = ::mincore(p, len, vec.data());
  ::munmap(p, len);
  BOOST_REQUIRE(r == 0);
  return static_cast<std::size_t>(std::count_if(vec.begin(), vec.end(), [](unsigned char v) { return v & 1; }));
}

/// Options with the caller-thread fast path on or off.
fsys::ring_options with_fast_path(bool on) {
  fsys::ring_options o;
  o.caller_thread_fast_path = on;
  return o;
}

bool is_cancelled(const std::error_code& ec) { return ec == std::errc::operation_canceled; }

/// Waits (up to 10 s) until `pred()` holds.
template <class Pred>
bool eventually(Pred pred) {
  for (auto end = std::chrono::steady_clock::now() + 10s; std::chrono::steady_clock::now() < end;) {
    if (pred()) return true;
    std::this_thread::sleep_for(1ms);
  }
  return pred();
}

}  // namespace

BOOST_AUTO_TEST_CASE(backend_and_accessors) {
  fsys::blocking_ring ring;
  BOOST_TEST((ring.active_backend() == fsys::test::expected_backend()));
  BOOST_TEST(&ring.ring_features() == &fsys::probe_features());
  if (ring.active_backend() == fsys::backend::io_uring) {
    BOOST_TEST(ring.ring_features().available);
    BOOST_TEST(ring.setup_flags() != 0u);
    BOOST_TEST(!ring.fallback_reason());
  } else {
    BOOST_TEST(ring.setup_flags() == 0u);
    BOOST_TEST(static_cast<bool>(ring.fallback_reason()));
  }
  BOOST_TEST_MESSAGE("blocking_ring backend: " << (ring.active_backend() == fsys::backend::io_uring
                                                        ? "io_uring"
                                                        : "psync")
                                               << ", " << ring.ring_features().summary());
}

BOOST_AUTO_TEST_CASE(require_io_uring_gives_io_uring_or_throws) {
  fsys::ring_options opts;
  opts.fallback = fsys::fallback_policy::require_io_uring;
  if (fsys::probe_features().available) {
    fsys::blocking_ring ring(opts);
    BOOST_TEST((ring.active_backend() == fsys::backend::io_uring));
    BOOST_TEST(ring.setup_flags() != 0u);
    // A single-issuer request is overridden: callers submit from their own threads.
    opts.issuer = fsys::issuer_mode::single_thread;
    fsys::blocking_ring ring2(opts);
    temp_dir dir;
    fd_guard f(open_rw(dir.file("a")));
    auto data = pattern(5000, 3);
    BOOST_TEST(ring2.write_at(f.fd, cspan(data), 0) == data.size());
    BOOST_TEST((read_file(dir.file("a")) == data));
  } else {
    try {
      fsys::blocking_ring ring(opts);
      BOOST_FAIL("require_io_uring did not throw although io_uring is unavailable");
    } catch (const std::system_error& e) {
      BOOST_TEST((e.code() == fsys::errc::io_uring_setup_failed));
    }
  }
}

// With the fast path, reads and writes of a regular file may complete in the
// calling thread; without it every call goes through the engine.
void every_operation_with_both_overloads(bool fast_path) {
  temp_dir dir;
  fsys::blocking_ring ring(with_fast_path(fast_path));
  fd_guard f(open_rw(dir.file("ops")));
  const auto before = ring.stats().ops_completed;

  auto a = pattern(100000, 1);
  auto b = pattern(70000, 2);
  auto c = pattern(12345, 3);
  auto d = pattern(4096, 4);

  // Throwing overloads.
  BOOST_TEST(ring.write_at(f.fd, cspan(a), 0) == a.size());
  BOOST_TEST(ring.write_at_linked_fsync(f.fd, cspan(b), a.size()) == b.size());
  ring.fdatasync(f.fd);
  std::vector<std::byte> back(a.size() + b.size());
  BOOST_TEST(ring.read_at(f.fd, back, 0) == back.size());
  BOOST_TEST(std::equal(a.begin(), a.end(), back.begin()));
  BOOST_TEST(std::equal(b.begin(), b.end(), back.begin() + a.size()));

  // error_code overloads (ec starts set, to see that success clears it).
  std::error_code ec = make_error_code(std::errc::io_error);
  BOOST_TEST(ring.write_at(f.fd, cspan(c), 1000, ec) == c.size());
  BOOST_TEST(!ec);
  ec = make_error_code(std::errc::io_error);
  BOOST_TEST(ring.write_at_linked_fsync(f.fd, cspan(d), 200000, ec) == d.size());
  BOOST_TEST(!ec);
  ec = make_error_code(std::errc::io_error);
  ring.fdatasync(f.fd, ec);
  BOOST_TEST(!ec);
  std::vector<std::byte> part(c.size());
  ec = make_error_code(std::errc::io_error);
  BOOST_TEST(ring.read_at(f.fd, part, 1000, ec) == c.size());
  BOOST_TEST(!ec);
  BOOST_TEST((part == c));

  // The whole file, read with plain POSIX calls.
  std::vector<std::byte> expect(200000 + d.size());
  std::copy(a.begin(), a.end(), expect.begin());
  std::copy(b.begin(), b.end(), expect.begin() + static_cast<std::ptrdiff_t>(a.size()));
  std::copy(c.begin(), c.end(), expect.begin() + 1000);
  std::copy(d.begin(), d.end(), expect.begin() + 200000);
  BOOST_TEST((read_file(dir.file("ops")) == expect));

  // Empty buffers complete at once with 0 bytes.
  BOOST_TEST(ring.write_at(f.fd, {}, 5) == 0u);
  BOOST_TEST(ring.read_at(f.fd, {}, 5) == 0u);
  // Two fdatasync and two linked writes always use the engine.
  BOOST_TEST(ring.stats().ops_completed - before >= (fast_path ? 4u : 8u));
}

BOOST_AUTO_TEST_CASE(every_operation_with_both_overloads_through_the_ring) {
  every_operation_with_both_overloads(false);
}

BOOST_AUTO_TEST_CASE(every_operation_with_both_overloads_fast_path) {
  every_operation_with_both_overloads(true);
}

BOOST_AUTO_TEST_CASE(large_transfer_round_trip) {
  temp_dir dir;
  fsys::blocking_ring ring;
  fd_guard f(open_rw(dir.file("big")));
  auto data = pattern(24u << 20, 9);
  BOOST_TEST(ring.write_at_linked_fsync(f.fd, cspan(data), 4096) == data.size());
  std::vector<std::byte> back(data.size());
  BOOST_TEST(ring.read_at(f.fd, back, 4096) == data.size());
  BOOST_TEST((back == data));
}

BOOST_AUTO_TEST_CASE(read_past_end_of_file) {
  temp_dir dir;
  fsys::blocking_ring ring;
  auto data = pattern(1000, 5);
  fsys::test::write_file(dir.file("short"), data);
  fd_guard f(::open(dir.file("short").c_str(), O_RDONLY | O_CLOEXEC));

  std::vector<std::byte> buf(4096, std::byte{0x5a});
  BOOST_TEST(ring.read_at(f.fd, buf, 0) == 1000u);  // short only because of end of file
  BOOST_TEST(std::equal(data.begin(), data.end(), buf.begin()));
  BOOST_TEST((buf[1000] == std::byte{0x5a}));  // nothing written past what was read
  std::error_code ec;
  BOOST_TEST(ring.read_at(f.fd, buf, 600, ec) == 400u);
  BOOST_TEST(!ec);
  BOOST_TEST(std::equal(data.begin() + 600, data.end(), buf.begin()));
  BOOST_TEST(ring.read_at(f.fd, buf, 1000, ec) == 0u);
  BOOST_TEST(!ec);
  BOOST_TEST(ring.read_at(f.fd, buf, 1u << 30) == 0u);
}

BOOST_AUTO_TEST_CASE(invalid_fd_is_ebadf) {
  temp_dir dir;
  fsys::blocking_ring ring;
  auto data = pattern(100, 6);
  std::vector<std::byte> buf(100);

  // -1 is refused before the kernel; a number no file uses is refused by it.
  int closed_fd = ::open(dir.path().c_str(), O_RDONLY | O_CLOEXEC);
  BOOST_REQUIRE(closed_fd >= 0);
  ::close(closed_fd);
  for (int fd : {-1, closed_fd}) {
    std::error_code ec;
    BOOST_TEST(ring.write_at(fd, cspan(data), 0, ec) == 0u);
    BOOST_TEST((ec == ebadf), "write_at fd " << fd << ": " << ec.message());
    ec.clear();
    BOOST_TEST(ring.read_at(fd, buf, 0, ec) == 0u);
    BOOST_TEST((ec == ebadf), "read_at fd " << fd << ": " << ec.message());
    ec.clear();
    ring.fdatasync(fd, ec);
    BOOST_TEST((ec == ebadf), "fdatasync fd " << fd << ": " << ec.message());
    ec.clear();
    BOOST_TEST(ring.write_at_linked_fsync(fd, cspan(data), 0, ec) == 0u);
    BOOST_TEST((ec == ebadf), "write_at_linked_fsync fd " << fd << ": " << ec.message());
    BOOST_TEST((&ec.category() == &std::system_category()));

    auto throws_ebadf = [](const std::system_error& e) { return e.code() == ebadf; };
    BOOST_CHECK_EXCEPTION(ring.write_at(fd, cspan(data), 0), std::system_error, throws_ebadf);
    BOOST_CHECK_EXCEPTION(ring.read_at(fd, buf, 0), std::system_error, throws_ebadf);
    BOOST_CHECK_EXCEPTION(ring.fdatasync(fd), std::system_error, throws_ebadf);
    BOOST_CHECK_EXCEPTION(ring.write_at_linked_fsync(fd, cspan(data), 0), std::system_error, throws_ebadf);
  }

  // Writing to a read-only fd: EBADF from the kernel, file unchanged.
  fsys::test::write_file(dir.file("ro"), data);
  fd_guard ro(::open(dir.file("ro").c_str(), O_RDONLY | O_CLOEXEC));
  std::error_code ec;
  auto other = pattern(100, 7);
  ring.write_at(ro.fd, cspan(other), 0, ec);
  BOOST_TEST((ec == ebadf), ec.message());
  BOOST_TEST((read_file(dir.file("ro")) == data));

  // An offset whose end does not fit in off_t is refused before the kernel.
  fd_guard f(open_rw(dir.file("rw")));
  ring.write_at(f.fd, cspan(data), std::numeric_limits<std::uint64_t>::max() - 10, ec);
  BOOST_TEST((ec == fsys::errc::offset_overflow), ec.message());
}

void sixteen_threads_mixed_operations(bool fast_path) {
  constexpr int threads = 16;
  constexpr int ops_per_thread = 2000;
  constexpr std::size_t range = 32768;  // bytes each thread owns
  temp_dir dir;
  fsys::blocking_ring ring(with_fast_path(fast_path));
  fd_guard f(open_rw(dir.file("shared")));
  const auto before = ring.stats();

  std::vector<std::vector<std::byte>> shadow(threads, std::vector<std::byte>(range, std::byte{0}));
  std::atomic<int> failures{0};
  std::atomic<int> counts[4] = {};
  auto worker = [&](int t) {
    std::mt19937_64 rng(1000 + static_cast<unsigned>(t));
    const std::uint64_t base = static_cast<std::uint64_t>(t) * range;
    auto& mine = shadow[static_cast<std::size_t>(t)];
    std::vector<std::byte> buf(8192);
    for (int i = 0; i < ops_per_thread; ++i) {
      const std::size_t len = 1 + rng() % 8192;
      const std::size_t off = rng() % (range - len + 1);
      const unsigned pick = static_cast<unsigned>(rng() % 1000);
      std::error_code ec;
      if (pick < 10) {  // 1%: fdatasync
        ring.fdatasync(f.fd, ec);
        ++counts[2];
      } else if (pick < 25) {  // 1.5%: durable write
        for (std::size_t k = 0; k < len; ++k) buf[k] = static_cast<std::byte>(rng());
        std::size_t n = ring.write_at_linked_fsync(f.fd, {buf.data(), len}, base + off, ec);
        if (n != len) ++failures;
        std::copy_n(buf.begin(), len, mine.begin() + static_cast<std::ptrdiff_t>(off));
        ++counts[3];
      } else if (pick < 500) {  // write
        for (std::size_t k = 0; k < len; ++k) buf[k] = static_cast<std::byte>(rng());
        std::size_t n = (i % 2) ? ring.write_at(f.fd, {buf.data(), len}, base + off, ec)
                                : ring.write_at(f.fd, {buf.data(), len}, base + off);
        if (n != len) ++failures;
        std::copy_n(buf.begin(), len, mine.begin() + static_cast<std::ptrdiff_t>(off));
        ++counts[0];
      } else {  // read, checked against what this thread wrote
        std::size_t n = ring.read_at(f.fd, {buf.data(), len}, base + off, ec);
        // The file may end before this thread's range is fully written.
        if (n > len || !std::equal(buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(n),
                                   mine.begin() + static_cast<std::ptrdiff_t>(off)))
          ++failures;
        ++counts[1];
      }
      if (ec) ++failures;
    }
  };
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) pool.emplace_back(worker, t);
  for (auto& th : pool) th.join();

  BOOST_TEST(failures.load() == 0);
  BOOST_TEST_MESSAGE("writes " << counts[0] << ", reads " << counts[1] << ", fdatasync " << counts[2]
                               << ", write_at_linked_fsync " << counts[3]);
  // Every byte, read back with plain POSIX calls (holes read as zeros).
  auto file = read_file(dir.file("shared"));
  BOOST_REQUIRE(file.size() <= threads * range);
  file.resize(threads * range, std::byte{0});
  for (int t = 0; t < threads; ++t)
    BOOST_TEST(std::equal(shadow[static_cast<std::size_t>(t)].begin(), shadow[static_cast<std::size_t>(t)].end(),
                          file.begin() + static_cast<std::ptrdiff_t>(t * range)),
               "thread " << t << "'s range differs");
  const auto after = ring.stats();
  if (fast_path)
    BOOST_TEST(after.ops_completed - before.ops_completed >= std::uint64_t(counts[2] + counts[3]));
  else
    BOOST_TEST(after.ops_completed - before.ops_completed >= std::uint64_t{threads} * ops_per_thread);
  BOOST_TEST_MESSAGE("io_uring_enter calls " << after.enter_calls - before.enter_calls << ", SQEs "
                                             << after.sqes_submitted - before.sqes_submitted << ", wake-ups "
                                             << after.reactor_wakeups - before.reactor_wakeups);
}

// The caller-thread fast path (on by default): what the kernel can do
// without waiting runs in the calling thread and never reaches the engine;
// what has to wait goes to the ring, which continues a partial transfer
// where the calling thread stopped.
BOOST_AUTO_TEST_CASE(sixteen_threads_mixed_operations_on_disjoint_ranges_through_the_ring) {
  sixteen_threads_mixed_operations(false);
}

BOOST_AUTO_TEST_CASE(sixteen_threads_mixed_operations_on_disjoint_ranges_fast_path) {
  sixteen_threads_mixed_operations(true);
}

BOOST_AUTO_TEST_CASE(caller_thread_fast_path_and_its_hand_over_to_the_ring) {
  fsys::test::temp_dir_on_disk dir;
  if (!dir.ok()) {
    BOOST_TEST_MESSAGE("skipped: no directory on a disk filesystem (page-cache eviction needs one)");
    return;
  }
  fsys::blocking_ring ring;
  constexpr std::size_t size = 8u << 20;
  auto data = pattern(size, 21);
  fd_guard f(open_rw(dir.file("cached")));
  const auto ops = [&] { return ring.stats().ops_completed; };

  // Writes to a regular file and reads of cached pages: no engine operation.
  auto before = ops();
  BOOST_TEST(ring.write_at(f.fd, cspan(data), 0) == size);
  std::vector<std::byte> back(size);
  BOOST_TEST(ring.read_at(f.fd, back, 0) == size);
  BOOST_TEST((back == data));
  BOOST_TEST(ring.read_at(f.fd, back, size - 100) == 100u);  // end of file, also in the caller
  BOOST_TEST(ring.read_at(f.fd, back, size) == 0u);
  BOOST_TEST(ops() == before);

  // Drop the file from the page cache, then cache only its first 4 KiB (no
  // readahead): a 64 KiB read gets 4 KiB in the calling thread, finds the
  // rest uncached (RWF_NOWAIT gives EAGAIN) and leaves it to the ring, which
  // must continue at 4 KiB. (The failed attempt itself starts reading those
  // pages, so a thread preempted before its next attempt may find them
  // cached and finish in the caller: the path is reported, the bytes are
  // checked either way.) Eviction is checked with mincore(2): pages still in
  // another CPU's LRU batch are not dropped at once, so it is retried.
  BOOST_REQUIRE(::fdatasync(f.fd) == 0);
  BOOST_REQUIRE(::posix_fadvise(f.fd, 0, 0, POSIX_FADV_RANDOM) == 0);
  constexpr std::size_t span = 65536;
  bool evicted = false;
  for (int attempt = 0; attempt < 50 && !evicted; ++attempt) {
    BOOST_REQUIRE(::posix_fadvise(f.fd, 0, 0, POSIX_FADV_DONTNEED) == 0);
    evicted = resident_pages(f.fd, 0, span) == 0;
    if (!evicted) std::this_thread::sleep_for(10ms);
  }
  BOOST_REQUIRE_MESSAGE(evicted, "the page cache kept the file's first 64 KiB");
  char first[4096];
  BOOST_REQUIRE(::pread(f.fd, first, sizeof first, 0) == static_cast<ssize_t>(sizeof first));
  BOOST_REQUIRE(resident_pages(f.fd, 0, span) == 1u);
  std::vector<std::byte> part(span, std::byte{0x5a});
  before = ops();
  std::error_code ec;
  BOOST_TEST(ring.read_at(f.fd, part, 0, ec) == part.size());
  BOOST_TEST(!ec);
  BOOST_TEST(std::equal(part.begin(), part.end(), data.begin()));
  BOOST_TEST(ops() - before <= 1u);
  BOOST_TEST_MESSAGE("partially cached read: " << (ops() - before == 1 ? "finished by the ring" : "all in the caller"));

  // The same uncached read with the fast path off: the engine does it all.
  fsys::blocking_ring ring_only(with_fast_path(false));
  BOOST_REQUIRE(::posix_fadvise(f.fd, 0, 0, POSIX_FADV_DONTNEED) == 0);
  before = ring_only.stats().ops_completed;
  std::fill(part.begin(), part.end(), std::byte{0x5a});
  BOOST_TEST(ring_only.read_at(f.fd, part, size / 2) == part.size());
  BOOST_TEST(std::equal(part.begin(), part.end(), data.begin() + size / 2));
  BOOST_TEST(ring_only.stats().ops_completed - before == 1u);

  // A read that has to wait (a pipe holding half of what is asked) goes to
  // the ring, which returns once the rest arrives. The rest is written only
  // after the engine has the request, so the path is deterministic.
  int p[2];
  BOOST_REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
  BOOST_REQUIRE(::write(p[1], "half", 4) == 4);
  const auto started = ring.stats().ops_started;
  before = ops();
  std::vector<std::byte> pbuf(8);
  std::size_t got = 0;
  std::error_code pec;
  std::atomic<bool> returned{false};
  std::thread reader([&] {
    got = ring.read_at(p[0], pbuf, 0, pec);
    returned = true;
  });
  BOOST_TEST(eventually([&] { return ring.stats().ops_started > started; }));
  std::this_thread::sleep_for(20ms);
  BOOST_TEST(!returned.load());
  BOOST_REQUIRE(::write(p[1], "more", 4) == 4);
  reader.join();
  BOOST_TEST(!pec, pec.message());
  BOOST_TEST(got == 8u);
  BOOST_TEST(std::memcmp(pbuf.data(), "halfmore", 8) == 0);
  BOOST_TEST(ops() - before == 1u);
  ::close(p[0]);
  ::close(p[1]);
}

BOOST_AUTO_TEST_CASE(calls_of_several_threads_are_in_flight_together) {
  // Each thread reads from its own empty pipe, so each call stays in the
  // kernel (io_uring) or in poll(2) (psync) until its pipe is written. The
  // pipes are written in reverse order of start, one at a time, each time
  // waiting for that thread's call to return: this only works if no call
  // holds a lock while its operation waits.
  fsys::blocking_ring ring;
  constexpr int n = 4;
  int pipes[n][2];
  for (auto& p : pipes) BOOST_REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
  const auto sqes_before = ring.stats().sqes_submitted;
  std::vector<std::string> got(n);
  std::vector<std::error_code> ecs(n);
  std::atomic<int> entered{0};
  std::unique_ptr<std::atomic<bool>[]> returned(new std::atomic<bool>[n]);
  for (int i = 0; i < n; ++i) returned[i] = false;
  std::vector<std::thread> pool;
  for (int i = 0; i < n; ++i)
    pool.emplace_back([&, i] {
      std::vector<std::byte> buf(6);
      ++entered;
      std::size_t k = ring.read_at(pipes[i][0], buf, 0, ecs[i]);
      got[i].assign(reinterpret_cast<const char*>(buf.data()), k);
      returned[i] = true;
    });
  BOOST_TEST(eventually([&] { return entered.load() == n; }));
  if (ring.active_backend() == fsys::backend::io_uring)
    BOOST_TEST(eventually([&] { return ring.stats().sqes_submitted - sqes_before >= n; }));
  std::this_thread::sleep_for(20ms);
  for (int i = n - 1; i >= 0; --i) {
    std::string msg = "pipe-" + std::to_string(i);
    BOOST_REQUIRE(::write(pipes[i][1], msg.data(), msg.size()) == static_cast<ssize_t>(msg.size()));
    BOOST_TEST(eventually([&] { return returned[i].load(); }), "call " << i << " did not return");
    for (int j = 0; j < i; ++j) BOOST_TEST(!returned[j].load());
  }
  for (auto& th : pool) th.join();
  for (int i = 0; i < n; ++i) {
    BOOST_TEST(!ecs[i], ecs[i].message());
    BOOST_TEST(got[i] == "pipe-" + std::to_string(i));
  }
  for (auto& p : pipes) {
    ::close(p[0]);
    ::close(p[1]);
  }
}

BOOST_AUTO_TEST_CASE(destruction_while_threads_are_blocked_in_calls) {
  auto ring = std::make_unique<fsys::blocking_ring>();
  constexpr int n = 6;
  int p[2];
  BOOST_REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
  const auto sqes_before = ring->stats().sqes_submitted;
  std::vector<std::error_code> ecs(n);
  std::vector<std::size_t> sizes(n, 99);
  std::atomic<int> entered{0};
  std::atomic<int> returned{0};
  std::vector<std::thread> pool;
  for (int i = 0; i < n; ++i)
    pool.emplace_back([&, i, r = ring.get()] {
      std::vector<std::byte> buf(64);
      ++entered;
      sizes[i] = r->read_at(p[0], buf, 0, ecs[i]);
      ++returned;
    });
  BOOST_TEST(eventually([&] { return entered.load() == n; }));
  if (ring->active_backend() == fsys::backend::io_uring)
    BOOST_TEST(eventually([&] { return ring->stats().sqes_submitted - sqes_before >= n; }));
  std::this_thread::sleep_for(50ms);
  BOOST_TEST(returned.load() == 0);  // really blocked
  ring.reset();                      // cancels them, waits for them, joins the owner thread
  BOOST_TEST(returned.load() == n);
  for (auto& th : pool) th.join();
  for (int i = 0; i < n; ++i) {
    BOOST_TEST(is_cancelled(ecs[i]), "call " << i << ": " << ecs[i].message());
    BOOST_TEST(sizes[i] == 0u);
  }
  // The pipe is untouched: what is written now is read by a plain read.
  BOOST_REQUIRE(::write(p[1], "x", 1) == 1);
  char c = 0;
  BOOST_TEST(::read(p[0], &c, 1) == 1);
  BOOST_TEST(c == 'x');
  ::close(p[0]);
  ::close(p[1]);
}

BOOST_AUTO_TEST_CASE(shutdown_while_threads_are_busy) {
  // On both backends: threads write until shutdown refuses them. Every call
  // returns; each write that reported success is on disk.
  temp_dir dir;
  fsys::blocking_ring ring;
  fd_guard f(open_rw(dir.file("busy")));
  constexpr int n = 8;
  constexpr std::size_t chunk = 4096;
  std::vector<std::vector<std::size_t>> succeeded(n);
  std::vector<std::error_code> last(n);
  std::atomic<int> started{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < n; ++t)
    pool.emplace_back([&, t] {
      auto data = pattern(chunk, static_cast<std::uint64_t>(t) + 100);
      ++started;
      for (std::size_t i = 0;; ++i) {
        std::error_code ec;
        const std::uint64_t off = (i * n + static_cast<std::size_t>(t)) * chunk;
        std::size_t k = (i % 8 == 7) ? ring.write_at_linked_fsync(f.fd, cspan(data), off, ec)
                                     : ring.write_at(f.fd, cspan(data), off, ec);
        if (ec) {
          last[t] = ec;
          break;
        }
        if (k == chunk) succeeded[t].push_back(i);
      }
    });
  BOOST_TEST(eventually([&] { return started.load() == n; }));
  std::this_thread::sleep_for(50ms);
  ring.shutdown();
  for (auto& th : pool) th.join();
  auto file = read_file(dir.file("busy"));
  std::size_t total = 0;
  for (int t = 0; t < n; ++t) {
    // The last call was refused or cancelled; never a silent success.
    BOOST_TEST((last[t] == fsys::errc::owner_thread_terminated || is_cancelled(last[t])),
               "thread " << t << ": " << last[t].message());
    auto data = pattern(chunk, static_cast<std::uint64_t>(t) + 100);
    for (std::size_t i : succeeded[t]) {
      const std::size_t off = (i * n + static_cast<std::size_t>(t)) * chunk;
      BOOST_REQUIRE(off + chunk <= file.size());
      BOOST_TEST(std::equal(data.begin(), data.end(), file.begin() + static_cast<std::ptrdiff_t>(off)));
    }
    total += succeeded[t].size();
  }
  BOOST_TEST(total > 0u);
  BOOST_TEST_MESSAGE(total << " writes finished before shutdown");
}

BOOST_AUTO_TEST_CASE(calls_after_shutdown_are_refused) {
  temp_dir dir;
  fsys::blocking_ring ring;
  fd_guard f(open_rw(dir.file("after")));
  auto data = pattern(512, 8);
  BOOST_TEST(ring.write_at(f.fd, cspan(data), 0) == data.size());
  const auto completed = ring.stats().ops_completed;
  ring.shutdown();
  ring.shutdown();  // idempotent

  const std::error_code terminated = fsys::errc::owner_thread_terminated;
  auto other = pattern(512, 9);
  std::vector<std::byte> buf(512);
  std::error_code ec;
  BOOST_TEST(ring.write_at(f.fd, cspan(other), 0, ec) == 0u);
  BOOST_TEST((ec == terminated));
  ec.clear();
  BOOST_TEST(ring.read_at(f.fd, buf, 0, ec) == 0u);
  BOOST_TEST((ec == terminated));
  ec.clear();
  ring.fdatasync(f.fd, ec);
  BOOST_TEST((ec == terminated));
  ec.clear();
  BOOST_TEST(ring.write_at_linked_fsync(f.fd, cspan(other), 0, ec) == 0u);
  BOOST_TEST((ec == terminated));
  auto is_terminated = [&](const std::system_error& e) { return e.code() == terminated; };
  BOOST_CHECK_EXCEPTION(ring.write_at(f.fd, cspan(other), 0), std::system_error, is_terminated);
  BOOST_CHECK_EXCEPTION(ring.read_at(f.fd, buf, 0), std::system_error, is_terminated);
  BOOST_CHECK_EXCEPTION(ring.fdatasync(f.fd), std::system_error, is_terminated);
  BOOST_CHECK_EXCEPTION(ring.write_at_linked_fsync(f.fd, cspan(other), 0), std::system_error, is_terminated);

  // Nothing reached the engine or the file; the accessors still answer.
  BOOST_TEST(ring.stats().ops_completed == completed);
  BOOST_TEST((read_file(dir.file("after")) == data));
  BOOST_TEST((ring.active_backend() == fsys::test::expected_backend()));
}

BOOST_AUTO_TEST_CASE(call_from_the_completion_context_is_refused) {
  temp_dir dir;
  fsys::blocking_ring ring;
  fd_guard f(open_rw(dir.file("owner")));
  auto data = pattern(256, 10);

  struct result {
    std::error_code ec;
    std::size_t n = 99;
    std::error_code thrown;
    bool on_owner = false;
  };
  std::promise<result> done;
  asio::post(ring.get_executor(), [&] {
    result r;
    r.on_owner = ring.get_executor().running_in_this_thread();
    r.n = ring.write_at(f.fd, cspan(data), 0, r.ec);
    try {
      std::vector<std::byte> buf(16);
      ring.read_at(f.fd, buf, 0);
    } catch (const std::system_error& e) {
      r.thrown = e.code();
    }
    done.set_value(r);
  });
  auto fut = done.get_future();
  BOOST_REQUIRE(fut.wait_for(10s) == std::future_status::ready);  // no deadlock
  result r = fut.get();
  BOOST_TEST(r.on_owner);
  BOOST_TEST(r.n == 0u);
  BOOST_TEST((r.ec == fsys::errc::would_deadlock), r.ec.message());
  BOOST_TEST((r.thrown == fsys::errc::would_deadlock), r.thrown.message());
  BOOST_TEST(std::filesystem::file_size(dir.file("owner")) == 0u);

  // The ring still works for other threads.
  BOOST_TEST(ring.write_at(f.fd, cspan(data), 0) == data.size());
  BOOST_TEST((read_file(dir.file("owner")) == data));
}

BOOST_AUTO_TEST_CASE(shutdown_from_the_owner_thread) {
  temp_dir dir;
  auto ring = std::make_unique<fsys::blocking_ring>();
  fd_guard f(open_rw(dir.file("x")));
  std::promise<void> done;
  asio::post(ring->get_executor(), [&] {
    ring->shutdown();  // refuses and cancels; cannot wait for itself
    done.set_value();
  });
  auto fut = done.get_future();
  BOOST_REQUIRE(fut.wait_for(10s) == std::future_status::ready);
  std::error_code ec;
  auto data = pattern(16, 11);
  ring->write_at(f.fd, cspan(data), 0, ec);
  BOOST_TEST((ec == fsys::errc::owner_thread_terminated));
  ring.reset();  // joins the owner thread
  BOOST_TEST(std::filesystem::file_size(dir.file("x")) == 0u);
}
