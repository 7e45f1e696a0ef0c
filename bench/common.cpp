#include "common.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <linux/magic.h>
#include <memory>
#include <new>

namespace bench {

[[noreturn]] void fail(const std::string& what) {
  std::fprintf(stderr, "\nBENCHMARK FAILURE: %s\n", what.c_str());
  std::fflush(stderr);
  std::abort();
}

block_buffer::block_buffer() : p(static_cast<std::byte*>(std::aligned_alloc(4096, block_size))) {
  if (!p) fail("aligned_alloc");
  std::memset(p, 0, block_size);
}
block_buffer::~block_buffer() { std::free(p); }

namespace {

// Block i of the read file starts with the 8-byte value i and is filled with
// the byte (i & 0xff) after that.
void fill_block(std::byte* b, std::uint64_t i) {
  std::memset(b, static_cast<int>(i & 0xff), block_size);
  std::memcpy(b, &i, sizeof i);
}

bool block_ok(const std::byte* b, std::uint64_t i) {
  std::uint64_t v;
  std::memcpy(&v, b, sizeof v);
  return v == i && b[block_size - 1] == static_cast<std::byte>(i & 0xff);
}

void write_all(int fd, const std::byte* p, std::size_t n, off_t off, const std::string& path) {
  while (n > 0) {
    ssize_t r = ::pwrite(fd, p, n, off);
    if (r <= 0) fail("pwrite " + path + ": " + std::strerror(errno));
    p += r;
    n -= static_cast<std::size_t>(r);
    off += r;
  }
}

// Creates `path` with `blocks` blocks unless it already exists with that
// size and (when `check` is set) valid content in a few sampled blocks.
void make_file(const std::string& path, std::uint64_t blocks, bool check) {
  struct stat st;
  if (::stat(path.c_str(), &st) == 0 && static_cast<std::uint64_t>(st.st_size) == blocks * block_size) {
    bool ok = true;
    if (check) {
      int fd = open_or_die(path, O_RDONLY);
      block_buffer b;
      block_picker pick(7, blocks);
      for (int k = 0; k < 64 && ok; ++k) {
        std::uint64_t i = k == 0 ? blocks - 1 : pick.next();
        ok = ::pread(fd, b.p, block_size, static_cast<off_t>(i * block_size)) == static_cast<ssize_t>(block_size) &&
             block_ok(b.p, i);
      }
      ::close(fd);
    }
    if (ok) return;
  }
  std::string tmp = path + ".tmp";
  int fd = open_or_die(tmp, O_WRONLY | O_CREAT | O_TRUNC);
  constexpr std::size_t chunk_blocks = 256;
  std::unique_ptr<std::byte[]> chunk(new std::byte[chunk_blocks * block_size]);
  for (std::uint64_t i = 0; i < blocks; i += chunk_blocks) {
    for (std::size_t k = 0; k < chunk_blocks; ++k) fill_block(chunk.get() + k * block_size, i + k);
    write_all(fd, chunk.get(), chunk_blocks * block_size, static_cast<off_t>(i * block_size), tmp);
  }
  // On disk before use: O_DIRECT reads then find the data on the device, and
  // durable writes overwrite already-allocated blocks.
  if (::fsync(fd) != 0) fail("fsync " + tmp + ": " + std::strerror(errno));
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) fail("rename " + tmp + ": " + std::strerror(errno));
}

void warm(const std::string& path) {
  int fd = open_or_die(path, O_RDONLY);
  std::unique_ptr<std::byte[]> chunk(new std::byte[1 << 20]);
  for (off_t off = 0;; off += 1 << 20) {
    ssize_t r = ::pread(fd, chunk.get(), 1 << 20, off);
    if (r < 0) fail("warm-up read " + path + ": " + std::strerror(errno));
    if (r == 0) break;
  }
  ::close(fd);
}

}  // namespace

int open_or_die(const std::string& path, int flags) {
  int fd = ::open(path.c_str(), flags | O_CLOEXEC, 0644);
  if (fd < 0) fail("open " + path + ": " + std::strerror(errno));
  return fd;
}

const data_files& files() {
  static const data_files f = [] {
    data_files d;
    const char* env = std::getenv("FSYS_BENCH_DIR");
    d.dir = env && *env ? env : "/var/tmp/fsys-bench";
    ::mkdir(d.dir.c_str(), 0755);
    struct statfs sf;
    if (::statfs(d.dir.c_str(), &sf) != 0) fail("statfs " + d.dir + ": " + std::strerror(errno));
    if (sf.f_type == TMPFS_MAGIC)
      fail(d.dir + " is on tmpfs: O_DIRECT would not reach a disk; set FSYS_BENCH_DIR to a disk filesystem");
    d.read_path = d.dir + "/read.dat";
    d.write_path = d.dir + "/write.dat";
    d.sync_path = d.dir + "/sync.dat";
    d.cold_path = d.dir + "/cold.dat";
    make_file(d.read_path, file_blocks, true);
    make_file(d.write_path, file_blocks, false);
    make_file(d.sync_path, sync_file_blocks, false);
    make_file(d.cold_path, file_blocks, true);
    warm(d.read_path);
    warm(d.write_path);
    if (const char* xfs = std::getenv("FSYS_BENCH_XFS_DIR"); xfs && *xfs) {
      struct statfs xf;
      if (::statfs(xfs, &xf) != 0) fail(std::string("statfs ") + xfs + ": " + std::strerror(errno));
      if (static_cast<unsigned long>(xf.f_type) != XFS_SUPER_MAGIC) fail(std::string(xfs) + " is not on XFS");
      d.xfs_write_path = std::string(xfs) + "/write.dat";
      make_file(d.xfs_write_path, file_blocks, false);
      warm(d.xfs_write_path);
    }
    return d;
  }();
  return f;
}

void check_read(const std::byte* buf, long result, std::uint64_t block, const char* who) {
  if (result != static_cast<long>(block_size))
    fail(std::string(who) + ": read of block " + std::to_string(block) + " returned " + std::to_string(result) +
         (result < 0 ? std::string(" (") + std::strerror(static_cast<int>(-result)) + ")" : std::string()));
  if (!block_ok(buf, block)) fail(std::string(who) + ": block " + std::to_string(block) + " has wrong content");
}

void check_write(long result, const char* who) {
  if (result != static_cast<long>(block_size))
    fail(std::string(who) + ": write returned " + std::to_string(result) +
         (result < 0 ? std::string(" (") + std::strerror(static_cast<int>(-result)) + ")" : std::string()));
}

void report(benchmark::State& state, run_result& r) {
  if (r.ops == 0 || r.seconds <= 0) {
    (void)state;
    fail("a case measured no operation");
  }
  double ops = static_cast<double>(r.ops);
  state.counters["ops_per_s"] = ops / r.seconds;
  state.counters["ns_per_op"] = r.seconds * 1e9 / ops;
  if (r.enters >= 0) state.counters["enters_per_op"] = r.enters / ops;
  state.counters["allocs_per_op"] = static_cast<double>(r.allocs) / ops;
  state.counters["ops"] = ops;
  if (!r.latencies_us.empty()) {
    auto& v = r.latencies_us;
    std::sort(v.begin(), v.end());
    auto pct = [&](double p) {
      std::size_t i = static_cast<std::size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
      return v[std::min(i, v.size() - 1)];
    };
    state.counters["p50_us"] = pct(0.50);
    state.counters["p99_us"] = pct(0.99);
  }
}

const std::vector<workload>& workloads() {
  static const std::vector<workload> w = {
      {"randread_cache_d1", op_mode::read_cache, 1, 400000},
      {"randread_cache_d32", op_mode::read_cache, 32, 1000000},
      {"randread_direct_d1", op_mode::read_direct, 1, 100000},
      {"randread_direct_d32", op_mode::read_direct, 32, 200000},
      {"randwrite_buffered_d32", op_mode::write_buffered, 32, 1000000},
      {"randread_cold_d32", op_mode::read_cold, 32, 200000},
  };
  static const std::vector<workload> with_xfs = [] {
    std::vector<workload> v = w;
    if (const char* xfs = std::getenv("FSYS_BENCH_XFS_DIR"); xfs && *xfs)
      v.push_back({"overwrite_xfs_d1", op_mode::overwrite_xfs, 1, 200000});
    return v;
  }();
  return with_xfs;
}

int open_flags(op_mode m) {
  switch (m) {
    case op_mode::read_cache: return O_RDONLY;
    case op_mode::read_direct: return O_RDONLY | O_DIRECT;
    case op_mode::write_buffered: return O_WRONLY;
    case op_mode::read_cold: return O_RDONLY;
    case op_mode::overwrite_xfs: return O_WRONLY;
  }
  return O_RDONLY;
}

void drop_cache(const std::string& path) {
  int fd = open_or_die(path, O_RDONLY);
  // Clean pages only (the file is never written after creation): all of them go.
  ::fdatasync(fd);
  if (int e = ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED); e != 0)
    fail("posix_fadvise " + path + ": " + std::strerror(e));
  ::close(fd);
}

const std::string& path_for(op_mode m) {
  if (m == op_mode::read_cold) {
    drop_cache(files().cold_path);
    return files().cold_path;
  }
  if (m == op_mode::overwrite_xfs) return files().xfs_write_path;
  return m == op_mode::write_buffered ? files().write_path : files().read_path;
}

int run_main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  files();  // create and warm the files before the first case
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

}  // namespace bench
