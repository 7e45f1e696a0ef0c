// Shared pieces of the benchmark executables: the data files, random block
// numbers, result checks, the allocation counter and the counters every case
// reports. Includes nothing of fsys, so the Asio executable (built with
// BOOST_ASIO_HAS_IO_URING) can use it too.
#pragma once

#include <benchmark/benchmark.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace bench {

/// Size of one operation.
inline constexpr std::size_t block_size = 4096;
/// The data files hold this many blocks (256 MiB).
inline constexpr std::uint64_t file_blocks = 65536;
/// The durable-write file is smaller: its blocks are rewritten again and again.
inline constexpr std::uint64_t sync_file_blocks = 4096;

/// Heap allocations (operator new calls) made by this process so far.
std::uint64_t allocations() noexcept;

/// The files every case works on, created (or reused) once per process.
struct data_files {
  std::string dir;
  std::string read_path;   ///< 256 MiB; block i starts with the 8-byte value i; in the page cache
  std::string write_path;  ///< 256 MiB; buffered random writes overwrite its cached pages
  /// The same on the XFS filesystem named by FSYS_BENCH_XFS_DIR (empty when
  /// it is not set): XFS takes RWF_NOWAIT overwrites of allocated blocks.
  std::string xfs_write_path;
  std::string sync_path;   ///< 16 MiB; durable writes (its blocks already allocated on disk)
  std::string cold_path;   ///< 256 MiB, same content as read_path; kept out of the page cache
};

/// Creates the files on first use (in $FSYS_BENCH_DIR, default /var/tmp,
/// which must be on a block-device filesystem so O_DIRECT reaches the disk),
/// reads the read file once so its pages are cached, and returns their paths.
const data_files& files();

/// A small xorshift generator of block numbers in [0, n).
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

/// A 4096-aligned block buffer (usable for O_DIRECT on this disk).
struct block_buffer {
  block_buffer();
  ~block_buffer();
  block_buffer(block_buffer&& o) noexcept : p(o.p) { o.p = nullptr; }
  block_buffer(const block_buffer&) = delete;
  block_buffer& operator=(const block_buffer&) = delete;
  std::byte* p;
};

/// Aborts the process with a message: a benchmark must never report numbers
/// for failed IO.
[[noreturn]] void fail(const std::string& what);

/// Checks a read of block `block`: the full size came back and the block
/// holds what the data file was created with.
void check_read(const std::byte* buf, long result, std::uint64_t block, const char* who);
/// Checks a write (or a durable write) of one block returned the full size.
void check_write(long result, const char* who);

/// Opens `path` with `flags`, aborting on failure.
int open_or_die(const std::string& path, int flags);

/// What one measured run did.
struct run_result {
  std::uint64_t ops = 0;
  double seconds = 0;
  double enters = -1;  ///< io_uring_enter calls in the window, or < 0 when not counted
  std::uint64_t allocs = 0;
  std::vector<double> latencies_us;  ///< per-op latencies, when the case records them
};

/// Sets the counters of a case: ops_per_s, ns_per_op, enters_per_op (when
/// counted), allocs_per_op, and p50_us/p99_us when latencies were recorded.
void report(benchmark::State& state, run_result& r);

/// A clock for the measured window.
using clock = std::chrono::steady_clock;
inline double seconds_since(clock::time_point t0) {
  return std::chrono::duration<double>(clock::now() - t0).count();
}

/// Hands out operations until a count or a deadline is reached, whichever
/// comes first, so that slow implementations do not stretch the run.
class budget {
 public:
  budget(std::uint64_t max_ops, double max_seconds) noexcept : max_(max_ops), max_s_(max_seconds) {}
  /// Starts the clock.
  void start() noexcept {
    t0_ = clock::now();
    deadline_ = t0_ + std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(max_s_));
  }
  /// True when one more operation may be issued.
  bool take() noexcept {
    if (stop_.load(std::memory_order_relaxed)) return false;
    std::uint64_t n = taken_.fetch_add(1, std::memory_order_relaxed);
    if (n >= max_ || ((n & 63) == 0 && clock::now() >= deadline_)) {
      stop_.store(true, std::memory_order_relaxed);
      return false;
    }
    granted_.fetch_add(1, std::memory_order_relaxed);
    return true;
  }
  /// Operations handed out.
  std::uint64_t granted() const noexcept { return granted_.load(); }
  clock::time_point started() const noexcept { return t0_; }

 private:
  std::uint64_t max_;
  double max_s_;
  clock::time_point t0_{}, deadline_{};
  std::atomic<std::uint64_t> taken_{0}, granted_{0};
  std::atomic<bool> stop_{false};
};

/// Longest measured window of a throughput case.
inline constexpr double max_case_seconds = 0.4;

/// The kinds of operation the throughput cases run.
/// `read_cold`: buffered reads of `data_files::cold_path`, whose pages are
/// dropped (POSIX_FADV_DONTNEED) whenever a case asks `path_for` for it, i.e.
/// right before it opens the file, warms up and runs its timed window.
/// `overwrite_xfs`: buffered random writes of `data_files::xfs_write_path`
/// (cached, allocated blocks), a workload only when FSYS_BENCH_XFS_DIR is set.
enum class op_mode { read_cache, read_direct, write_buffered, read_cold, overwrite_xfs };

/// True for the modes whose operations are writes.
inline bool is_write(op_mode m) { return m == op_mode::write_buffered || m == op_mode::overwrite_xfs; }

/// One throughput case: what to do, how many in flight, how many in total.
struct workload {
  const char* name;
  op_mode mode;
  unsigned depth;
  std::uint64_t ops;
};

/// The throughput cases shared by all executables (same names, same budgets).
const std::vector<workload>& workloads();

/// Flags to open the file of a workload with.
int open_flags(op_mode m);
/// The path of a workload's file (for `read_cold`: after dropping its pages).
const std::string& path_for(op_mode m);
/// The file plain (not durable) writes of mode `m` go to: `xfs_write_path`
/// for `overwrite_xfs`, `write_path` for every other mode.
inline const std::string& write_path_for(op_mode m) {
  return m == op_mode::overwrite_xfs ? files().xfs_write_path : files().write_path;
}

/// Registers a case with the options every case uses (one timed iteration
/// per repetition, real time).
template <class F>
benchmark::internal::Benchmark* add(const std::string& name, F&& f) {
  return benchmark::RegisterBenchmark(name.c_str(), std::forward<F>(f))
      ->Iterations(1)
      ->UseRealTime()
      ->Unit(benchmark::kMillisecond);
}

/// Runs registered cases; used by every executable's main().
int run_main(int argc, char** argv);

/// Durable-write cases: latency at depth 1, and throughput with many writers.
inline constexpr std::uint64_t latency_ops = 200;
inline constexpr unsigned durable_writers = 32;
inline constexpr std::uint64_t durable_ops = 1500;

}  // namespace bench
