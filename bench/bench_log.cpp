// fsys-bench-log: fsys::durable_log (group commit) against an fsync per
// record, side by side in one run, on the same file system.
//
// For record payloads of 256 B and 4 KiB and 1, 8, 64 concurrent appenders
// (each appends its next record when the previous one is acknowledged):
//   durable_log      one io_context thread, default options (64 MiB
//                    preallocated segments, no commit delay), with 1 and
//                    with 4 batches in flight (max_batches_in_flight);
//   fsync/record     N threads, each pwrite at its own reserved offset of
//                    one file + fdatasync per record (the kernel may merge
//                    concurrent fdatasyncs: the strongest plain alternative);
// and one fdatasync's time: a single thread's pwrite + fdatasync loop (its
// p50 is "one fdatasync").
// Prints a markdown table: records/s, p50/p99 append latency, ratios.
//
// Usage: fsys-bench-log [dir (default /var/tmp)] [seconds per point (default 2)]
#include <fsys/durable_log.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace asio = boost::asio;
using clk = std::chrono::steady_clock;

namespace {

struct result {
  double rate = 0;  // records per second
  double p50_us = 0, p99_us = 0;
};

result summarize(std::vector<double>& lat_us, std::uint64_t n, double secs) {
  result r;
  r.rate = static_cast<double>(n) / secs;
  if (!lat_us.empty()) {
    std::sort(lat_us.begin(), lat_us.end());
    r.p50_us = lat_us[lat_us.size() / 2];
    r.p99_us = lat_us[std::min(lat_us.size() - 1, lat_us.size() * 99 / 100)];
  }
  return r;
}

result run_log(const std::filesystem::path& dir, unsigned appenders, std::size_t size, double secs,
               std::size_t in_flight) {
  std::filesystem::remove_all(dir);
  asio::io_context ctx;
  fsys::durable_log log;
  fsys::durable_log_options opt;
  opt.max_batches_in_flight = in_flight;
  fsys::durable_log::async_open(ctx.get_executor(), dir, opt,
                                [&](boost::system::error_code ec, fsys::durable_log l, fsys::recovery_report) {
                                  if (ec) {
                                    std::fprintf(stderr, "open: %s\n", ec.message().c_str());
                                    std::exit(1);
                                  }
                                  log = std::move(l);
                                });
  ctx.run();
  ctx.restart();
  std::vector<std::byte> payload(size, std::byte{0x5a});
  std::vector<double> lat;
  lat.reserve(1 << 20);
  std::uint64_t done = 0;
  bool stop = false;
  const auto t0 = clk::now();
  const auto end = t0 + std::chrono::duration_cast<clk::duration>(std::chrono::duration<double>(secs));
  std::function<void()> step = [&] {
    const auto start = clk::now();
    if (start >= end) {
      stop = true;
      return;
    }
    log.async_append(asio::buffer(payload), [&, start](boost::system::error_code ec, std::uint64_t) {
      if (ec) {
        std::fprintf(stderr, "append: %s\n", ec.message().c_str());
        std::exit(1);
      }
      lat.push_back(std::chrono::duration<double, std::micro>(clk::now() - start).count());
      ++done;
      step();
    });
  };
  for (unsigned i = 0; i < appenders; ++i) step();
  ctx.run();
  const double took = std::chrono::duration<double>(clk::now() - t0).count();
  (void)stop;
  auto st = log.stats();
  std::fprintf(stderr, "  durable_log (%zu in flight) %u x %zu B: %llu records in %llu syncs\n", in_flight, appenders, size,
               static_cast<unsigned long long>(st.records), static_cast<unsigned long long>(st.commits));
  std::filesystem::remove_all(dir);
  return summarize(lat, done, took);
}

result run_fsync_per_record(const std::filesystem::path& file, unsigned threads, std::size_t size, double secs) {
  std::filesystem::remove(file);
  int fd = ::open(file.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    std::perror("open");
    std::exit(1);
  }
  std::atomic<std::uint64_t> offset{0};
  std::mutex m;
  std::vector<double> lat;
  std::uint64_t done = 0;
  const auto t0 = clk::now();
  const auto end = t0 + std::chrono::duration_cast<clk::duration>(std::chrono::duration<double>(secs));
  std::vector<std::thread> ts;
  for (unsigned t = 0; t < threads; ++t)
    ts.emplace_back([&] {
      std::vector<std::byte> rec(size + 8, std::byte{0x5a});
      std::vector<double> mine;
      for (;;) {
        const auto start = clk::now();
        if (start >= end) break;
        const std::uint64_t at = offset.fetch_add(rec.size());
        // rec is this thread's own buffer of rec.size() bytes.
        if (::pwrite(fd, rec.data(), rec.size(), static_cast<off_t>(at)) != static_cast<ssize_t>(rec.size()) ||
            ::fdatasync(fd) != 0) {
          std::perror("pwrite/fdatasync");
          std::exit(1);
        }
        mine.push_back(std::chrono::duration<double, std::micro>(clk::now() - start).count());
      }
      std::lock_guard lk(m);
      lat.insert(lat.end(), mine.begin(), mine.end());
      done += mine.size();
    });
  for (auto& t : ts) t.join();
  const double took = std::chrono::duration<double>(clk::now() - t0).count();
  ::close(fd);
  std::filesystem::remove(file);
  return summarize(lat, done, took);
}

}  // namespace

int main(int argc, char** argv) {
  const std::filesystem::path base = argc > 1 ? argv[1] : "/var/tmp";
  const double secs = argc > 2 ? std::atof(argv[2]) : 2.0;
  const auto dir = base / ("fsys-bench-log." + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::printf("| record | appenders | batches in flight | durable_log rec/s | p50 µs | p99 µs | N threads fsync/record "
              "rec/s | p50 µs | p99 µs | log / N threads | fsync loop rec/s (1 thread) | log / loop | one fdatasync "
              "p50 µs | log p99 / fdatasync |\n");
  std::printf("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  for (std::size_t size : {std::size_t(256), std::size_t(4096)}) {
    const result one = run_fsync_per_record(dir / "single.dat", 1, size, secs);
    for (unsigned n : {1u, 8u, 64u}) {
      const result fs = run_fsync_per_record(dir / "fsync.dat", n, size, secs);
      for (std::size_t in_flight : {std::size_t(1), std::size_t(4)}) {
        const result lg = run_log(dir / "log", n, size, secs, in_flight);
        std::printf("| %zu B | %u | %zu | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f | %.2f× | %.0f | %.1f× | %.0f | %.2f |\n",
                    size, n, in_flight, lg.rate, lg.p50_us, lg.p99_us, fs.rate, fs.p50_us, fs.p99_us,
                    lg.rate / fs.rate, one.rate, lg.rate / one.rate, one.p50_us, lg.p99_us / one.p50_us);
        std::fflush(stdout);
      }
    }
  }
  std::filesystem::remove_all(dir);
  return 0;
}
