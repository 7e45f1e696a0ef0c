// fsys blocking_ring example: plain std::threads share one ring for durable
// writes and reads, then every byte is checked with ordinary POSIX reads.
//
//   fsys-blocking-threads [file] [threads]
#include <fsys/fsys.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

constexpr std::size_t record_size = 16384;
constexpr int records_per_thread = 32;

// The bytes thread `t` writes as its record `i`.
std::vector<std::byte> record(int t, int i) {
  std::vector<std::byte> r(record_size);
  std::uint32_t x = static_cast<std::uint32_t>(t * 7919 + i * 104729 + 1);
  for (auto& b : r) {
    x = x * 1664525u + 1013904223u;
    b = static_cast<std::byte>(x >> 24);
  }
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  std::filesystem::path path = argc > 1 && *argv[1] ? argv[1]
                                                    : std::filesystem::temp_directory_path() / "fsys-blocking.dat";
  const int threads = argc > 2 ? std::max(1, std::atoi(argv[2])) : 4;

  fsys::blocking_ring ring;  // io_uring, or the psync backend when the kernel refuses it
  std::printf("backend: %s (setup flags 0x%x)\n",
              ring.active_backend() == fsys::backend::io_uring ? "io_uring" : "psync", ring.setup_flags());

  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    std::perror("open");
    return 1;
  }

  std::mutex print_mutex;
  std::vector<int> bad(static_cast<std::size_t>(threads), 0);
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      std::size_t written = 0, read = 0;
      try {
        // Records of all threads interleave in the file: record i of thread t
        // sits at slot i * threads + t.
        for (int i = 0; i < records_per_thread; ++i) {
          auto r = record(t, i);
          const std::uint64_t off = (static_cast<std::uint64_t>(i) * threads + t) * record_size;
          // Every fourth record is made durable together with its write.
          written += (i % 4 == 3) ? ring.write_at_linked_fsync(fd, r, off) : ring.write_at(fd, r, off);
          std::vector<std::byte> back(record_size);
          read += ring.read_at(fd, back, off);
          if (back != r) ++bad[static_cast<std::size_t>(t)];
        }
        ring.fdatasync(fd);  // the plain writes too
      } catch (const std::system_error& e) {
        std::lock_guard lock(print_mutex);
        std::printf("thread %d: %s\n", t, e.what());
        ++bad[static_cast<std::size_t>(t)];
        return;
      }
      std::lock_guard lock(print_mutex);
      std::printf("thread %d: wrote %zu bytes (%d records, %d durable at once), read back %zu, fdatasync\n", t,
                  written, records_per_thread, records_per_thread / 4, read);
    });
  }
  for (auto& th : pool) th.join();

  // Check every byte with plain pread(2), not through fsys.
  int mismatches = 0;
  for (int t = 0; t < threads; ++t) {
    mismatches += bad[static_cast<std::size_t>(t)];
    for (int i = 0; i < records_per_thread; ++i) {
      std::vector<std::byte> back(record_size);
      const off_t off = static_cast<off_t>((static_cast<std::uint64_t>(i) * threads + t) * record_size);
      if (::pread(fd, back.data(), back.size(), off) != static_cast<ssize_t>(record_size) || back != record(t, i))
        ++mismatches;
    }
  }
  ::close(fd);
  auto s = ring.stats();
  std::printf("%d threads, %llu operations, %llu io_uring_enter calls; %s\n", threads,
              static_cast<unsigned long long>(s.ops_completed), static_cast<unsigned long long>(s.enter_calls),
              mismatches == 0 ? "all bytes match" : "MISMATCH");
  std::filesystem::remove(path);
  return mismatches == 0 ? 0 : 1;
}
