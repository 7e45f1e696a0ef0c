// Shared pieces of the side-by-side programs in bench/peers/: the case on the
// command line, the data files, the random block sequence, result checks and
// the one machine-readable result line. Header-only and free of fsys, Asio and
// Google Benchmark, so that every program (fsys, Asio, raw liburing, pread and
// the peer libraries, each built with its own flags) includes the same code and
// measures the same thing.
//
// The files are the ones fsys-bench uses (bench/common.cpp): $FSYS_BENCH_DIR
// (default /var/tmp/fsys-bench, a disk filesystem, so that O_DIRECT reaches
// the device), read.dat and cold.dat (256 MiB, block i starts with the 8-byte
// value i and is filled with the byte i & 0xff after that) and write.dat. They
// are created here when missing, with the same content, so either tool may run
// first. Coroutine (or slot) i draws its blocks from block_picker(i + 1), the
// sequence fsys-bench's coroutine i uses.
//
// Command line of every program: <case> [seconds [warmup_seconds]] where case
// is <kind>:<depth>, kind one of
//   cached  4 KiB random reads of read.dat, whose pages are cached
//   direct  the same with O_DIRECT
//   cold    buffered reads of cold.dat, whose pages are dropped
//           (POSIX_FADV_DONTNEED) right before the run, which has no warm-up
//           and stops after PEER_COLD_OPS reads (default 16384, a quarter of
//           the file's blocks, so that most reads still miss the page cache;
//           0: no limit) or at the deadline, whichever comes first
//   write   buffered 4 KiB random writes of write.dat (cached pages)
// The program prints one line:
//   RESULT impl=<name> case=<kind>:<depth> ops=<n> seconds=<s> ops_per_s=<x>
// and exits 0, or prints the failure to stderr and exits non-zero.
#pragma once

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

namespace peerbench {

inline constexpr std::size_t block_size = 4096;
inline constexpr std::uint64_t file_blocks = 65536;  // 256 MiB

enum class kind { cached, direct, cold, write };

[[noreturn]] inline void fail(const std::string& what) {
  std::fprintf(stderr, "BENCHMARK FAILURE: %s\n", what.c_str());
  std::fflush(stderr);
  std::exit(2);
}

/// The case and the run's length, from the command line.
struct options {
  kind k = kind::cached;
  unsigned depth = 1;
  double seconds = 2.0;
  double warmup = 0.3;  ///< seconds run before the measured window (none for `cold`)
  std::uint64_t max_ops = 0;  ///< measured operations at most (0: no limit; `cold` only)
  std::string name;     ///< "<kind>:<depth>"
  bool is_read() const noexcept { return k != kind::write; }
};

inline options parse(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s cached|direct|cold|write:<depth> [seconds [warmup_seconds]]\n", argv[0]);
    std::exit(64);
  }
  options o;
  o.name = argv[1];
  const auto colon = o.name.find(':');
  const std::string k = o.name.substr(0, colon);
  if (k == "cached") o.k = kind::cached;
  else if (k == "direct") o.k = kind::direct;
  else if (k == "cold") o.k = kind::cold;
  else if (k == "write") o.k = kind::write;
  else fail("unknown case kind '" + k + "'");
  if (colon != std::string::npos) o.depth = static_cast<unsigned>(std::strtoul(o.name.c_str() + colon + 1, nullptr, 10));
  if (o.depth == 0 || o.depth > 1024) fail("depth must be in 1..1024");
  if (argc > 2) o.seconds = std::strtod(argv[2], nullptr);
  if (argc > 3) o.warmup = std::strtod(argv[3], nullptr);
  if (o.k == kind::cold) {
    o.warmup = 0;  // a warm-up would bring the pages back
    const char* cap = std::getenv("PEER_COLD_OPS");
    o.max_ops = cap && *cap ? std::strtoull(cap, nullptr, 10) : file_blocks / 4;
  }
  if (o.seconds <= 0) fail("seconds must be > 0");
  return o;
}

/// The xorshift generator of bench/common.hpp: the same block sequence for a
/// given seed in every program.
class block_picker {
 public:
  explicit block_picker(std::uint64_t seed, std::uint64_t n = file_blocks) noexcept
      : s_(seed * 0x9E3779B97F4A7C15ull + 1), n_(n) {}
  std::uint64_t next() noexcept {
    s_ ^= s_ << 13;
    s_ ^= s_ >> 7;
    s_ ^= s_ << 17;
    return s_ % n_;
  }

 private:
  std::uint64_t s_;
  std::uint64_t n_;
};

/// A 4096-aligned block buffer (valid for O_DIRECT).
struct block_buffer {
  block_buffer() : p(static_cast<std::byte*>(std::aligned_alloc(4096, block_size))) {
    if (!p) fail("aligned_alloc");
    std::memset(p, 0, block_size);
  }
  ~block_buffer() { std::free(p); }
  block_buffer(const block_buffer&) = delete;
  block_buffer& operator=(const block_buffer&) = delete;
  std::byte* p;
};

inline bool block_ok(const std::byte* b, std::uint64_t i) {
  std::uint64_t v;
  std::memcpy(&v, b, sizeof v);
  return v == i && b[block_size - 1] == static_cast<std::byte>(i & 0xff);
}

/// Every read is checked: the full size came back with the block's content.
inline void check_read(const std::byte* buf, long result, std::uint64_t block, const char* who) {
  if (result != static_cast<long>(block_size))
    fail(std::string(who) + ": read of block " + std::to_string(block) + " returned " + std::to_string(result) +
         (result < 0 ? std::string(" (") + std::strerror(static_cast<int>(-result)) + ")" : std::string()));
  if (!block_ok(buf, block)) fail(std::string(who) + ": block " + std::to_string(block) + " has wrong content");
}

inline void check_write(long result, const char* who) {
  if (result != static_cast<long>(block_size))
    fail(std::string(who) + ": write returned " + std::to_string(result) +
         (result < 0 ? std::string(" (") + std::strerror(static_cast<int>(-result)) + ")" : std::string()));
}

inline int open_or_die(const std::string& path, int flags) {
  int fd = ::open(path.c_str(), flags | O_CLOEXEC, 0644);
  if (fd < 0) fail("open " + path + ": " + std::strerror(errno));
  return fd;
}

namespace detail {

inline void make_file(const std::string& path, bool check) {
  struct stat st;
  if (::stat(path.c_str(), &st) == 0 && static_cast<std::uint64_t>(st.st_size) == file_blocks * block_size) {
    bool ok = true;
    if (check) {
      int fd = open_or_die(path, O_RDONLY);
      block_buffer b;
      block_picker pick(7);
      for (int k = 0; k < 64 && ok; ++k) {
        std::uint64_t i = k == 0 ? file_blocks - 1 : pick.next();
        ok = ::pread(fd, b.p, block_size, static_cast<off_t>(i * block_size)) == static_cast<ssize_t>(block_size) &&
             block_ok(b.p, i);
      }
      ::close(fd);
    }
    if (ok) return;
  }
  const std::string tmp = path + ".tmp";
  int fd = open_or_die(tmp, O_WRONLY | O_CREAT | O_TRUNC);
  constexpr std::size_t chunk_blocks = 256;
  std::unique_ptr<std::byte[]> chunk(new std::byte[chunk_blocks * block_size]);
  for (std::uint64_t i = 0; i < file_blocks; i += chunk_blocks) {
    for (std::size_t k = 0; k < chunk_blocks; ++k) {
      std::byte* b = chunk.get() + k * block_size;
      const std::uint64_t n = i + k;
      std::memset(b, static_cast<int>(n & 0xff), block_size);
      std::memcpy(b, &n, sizeof n);
    }
    const std::size_t len = chunk_blocks * block_size;
    if (::pwrite(fd, chunk.get(), len, static_cast<off_t>(i * block_size)) != static_cast<ssize_t>(len))
      fail("pwrite " + tmp + ": " + std::strerror(errno));
  }
  // On disk before use, so that O_DIRECT reads find the data on the device.
  if (::fsync(fd) != 0) fail("fsync " + tmp + ": " + std::strerror(errno));
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) fail("rename " + tmp + ": " + std::strerror(errno));
}

inline void warm(const std::string& path) {
  int fd = open_or_die(path, O_RDONLY);
  std::unique_ptr<std::byte[]> chunk(new std::byte[1 << 20]);
  for (off_t off = 0;; off += 1 << 20) {
    ssize_t r = ::pread(fd, chunk.get(), 1 << 20, off);
    if (r < 0) fail("warm-up read " + path + ": " + std::strerror(errno));
    if (r == 0) break;
  }
  ::close(fd);
}

inline void drop_pages(const std::string& path) {
  int fd = open_or_die(path, O_RDONLY);
  ::fdatasync(fd);
  if (int e = ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED); e != 0)
    fail("posix_fadvise " + path + ": " + std::strerror(e));
  ::close(fd);
}

}  // namespace detail

/// Prepares the case's file (creates it if missing; caches read.dat and
/// write.dat; drops cold.dat's pages) and returns its path.
inline std::string prepare_file(const options& o) {
  const char* env = std::getenv("FSYS_BENCH_DIR");
  const std::string dir = env && *env ? env : "/var/tmp/fsys-bench";
  ::mkdir(dir.c_str(), 0755);
  struct statfs sf;
  if (::statfs(dir.c_str(), &sf) != 0) fail("statfs " + dir + ": " + std::strerror(errno));
  if (sf.f_type == TMPFS_MAGIC) fail(dir + " is on tmpfs: O_DIRECT would not reach a disk; set FSYS_BENCH_DIR");
  switch (o.k) {
    case kind::cached:
    case kind::direct: {
      const std::string p = dir + "/read.dat";
      detail::make_file(p, true);
      if (o.k == kind::cached) detail::warm(p);
      return p;
    }
    case kind::cold: {
      const std::string p = dir + "/cold.dat";
      detail::make_file(p, true);
      detail::drop_pages(p);
      return p;
    }
    case kind::write: {
      const std::string p = dir + "/write.dat";
      detail::make_file(p, false);
      detail::warm(p);
      return p;
    }
  }
  return {};
}

inline int open_flags(const options& o) {
  switch (o.k) {
    case kind::direct: return O_RDONLY | O_DIRECT;
    case kind::write: return O_WRONLY;
    default: return O_RDONLY;
  }
}

using clock = std::chrono::steady_clock;

/// Hands out operations on one thread until the deadline: a warm-up window
/// whose operations are not counted, then the measured window. The clock is
/// read once every 32 operations, so that it costs the same in every program.
class budget {
 public:
  explicit budget(const options& o) noexcept : warm_s_(o.warmup), run_s_(o.seconds), max_(o.max_ops) {}
  /// Starts the clock (call right before the first operation is issued).
  void start() noexcept {
    const auto now = clock::now();
    measuring_ = warm_s_ <= 0;
    t_measure_ = now;
    switch_at_ = now + to_dur(measuring_ ? run_s_ : warm_s_);
  }
  /// True when one more operation may be issued.
  bool take() noexcept {
    if (stopped_) return false;
    if (max_ != 0 && measuring_ && counted_ >= max_) {
      stopped_ = true;
      return false;
    }
    if ((++taken_ & 31) == 0) {
      const auto now = clock::now();
      if (now >= switch_at_) {
        if (measuring_) {
          stopped_ = true;
          return false;
        }
        measuring_ = true;
        t_measure_ = now;
        counted_ = 0;
        switch_at_ = now + to_dur(run_s_);
      }
    }
    ++counted_;
    ++granted_;
    return true;
  }
  /// Operations issued in both windows.
  std::uint64_t granted() const noexcept { return granted_; }
  /// Operations issued in the measured window.
  std::uint64_t counted() const noexcept { return counted_; }
  /// Seconds from the start of the measured window to now (call when the run
  /// has drained: the last operations' completions are inside the window).
  double measured_seconds() const noexcept {
    return std::chrono::duration<double>(clock::now() - t_measure_).count();
  }

 private:
  static clock::duration to_dur(double s) {
    return std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(s));
  }
  double warm_s_, run_s_;
  std::uint64_t max_;
  bool measuring_ = false, stopped_ = false;
  std::uint64_t taken_ = 0, counted_ = 0, granted_ = 0;
  clock::time_point t_measure_{}, switch_at_{};
};

/// Prints the result line; fails when nothing was measured or when the count
/// of completed operations differs from the issued one.
inline void report(const char* impl, const options& o, const budget& b, std::uint64_t completed_total,
                   double seconds) {
  if (completed_total != b.granted())
    fail(std::string(impl) + ": " + std::to_string(completed_total) + " operations completed of " +
         std::to_string(b.granted()) + " issued");
  if (b.counted() == 0 || seconds <= 0) fail(std::string(impl) + ": no operation measured");
  std::printf("RESULT impl=%s case=%s ops=%llu seconds=%.4f ops_per_s=%.0f\n", impl, o.name.c_str(),
              static_cast<unsigned long long>(b.counted()), seconds, static_cast<double>(b.counted()) / seconds);
  std::fflush(stdout);
}

}  // namespace peerbench
