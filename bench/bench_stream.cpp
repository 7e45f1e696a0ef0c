// Sequential stream files: whole-file passes of reads and writes with 64 KiB
// and 1 MiB requests, cached and cold (the file's pages dropped with
// posix_fadvise(POSIX_FADV_DONTNEED) before each pass).
//
// Built twice (bench/meson.build):
//   fsys-bench-stream       fsys::stream_file with read-ahead / write-behind
//                           ("fsys_ra"), fsys::stream_file without options
//                           ("fsys_plain"), and a read(2)/write(2) loop ("rw_loop");
//   fsys-bench-stream-asio  asio::stream_file on io_uring ("asio"): compiled
//                           with BOOST_ASIO_HAS_IO_URING and not linked with
//                           fsys (see bench/meson.build).
// scripts/bench_stream runs both, plus cat and dd, and prints one table.
//
// Environment: FSYS_BENCH_STREAM_SIZE (bytes, default 256 MiB; the issue's
// rows use 1 GiB: FSYS_BENCH_STREAM_SIZE=1073741824), FSYS_BENCH_STREAM_DIR
// (default /var/tmp: a disk-backed filesystem, so that "cold" reads the disk).
#include <benchmark/benchmark.h>

#if defined(FSYS_BENCH_STREAM_ASIO)
#ifndef BOOST_ASIO_HAS_IO_URING
#error "fsys-bench-stream-asio must be built with BOOST_ASIO_HAS_IO_URING"
#endif
#include <boost/asio/stream_file.hpp>
#else
#include <fsys/stream_file.hpp>
#endif

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

namespace asio = boost::asio;

[[noreturn]] void fail(const std::string& what) {
  std::fprintf(stderr, "bench_stream: %s\n", what.c_str());
  std::exit(1);
}

std::uint64_t file_size() {
  const char* v = std::getenv("FSYS_BENCH_STREAM_SIZE");
  return v && *v ? std::strtoull(v, nullptr, 10) : 256ull << 20;
}

std::string dir() {
  const char* v = std::getenv("FSYS_BENCH_STREAM_DIR");
  return v && *v ? v : "/var/tmp";
}

// The file every read case reads: created once with a pattern, its pages
// written back so that dropping them works.
const std::string& input_path() {
  static const std::string path = [] {
    std::string p = dir() + "/fsys-bench-stream.in";
    const std::uint64_t size = file_size();
    struct stat st;
    if (::stat(p.c_str(), &st) == 0 && static_cast<std::uint64_t>(st.st_size) == size) return p;
    int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) fail("create " + p + ": " + std::strerror(errno));
    std::vector<char> block(1 << 20);
    for (std::size_t i = 0; i < block.size(); ++i) block[i] = static_cast<char>(i * 131 + 7);
    for (std::uint64_t at = 0; at < size;) {
      const std::size_t k = static_cast<std::size_t>(std::min<std::uint64_t>(block.size(), size - at));
      if (::write(fd, block.data(), k) != static_cast<ssize_t>(k)) fail("write input");
      at += k;
    }
    ::fsync(fd);
    ::close(fd);
    return p;
  }();
  return path;
}

std::string output_path() { return dir() + "/fsys-bench-stream.out"; }

void drop_pages(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  ::fdatasync(fd);
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  ::close(fd);
}

void warm_pages(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("open " + path);
  std::vector<char> buf(1 << 20);
  while (::read(fd, buf.data(), buf.size()) > 0) {
  }
  ::close(fd);
}

// One pass: the bytes transferred.
using pass_fn = std::uint64_t (*)(std::size_t request);

#if defined(FSYS_BENCH_STREAM_ASIO)
using stream_type = asio::stream_file;
constexpr bool has_options = false;
#else
using stream_type = fsys::stream_file;
constexpr bool has_options = true;
#endif

#if !defined(FSYS_BENCH_STREAM_ASIO)
// FSYS_BENCH_STREAM_RA="count,size" overrides the read-ahead (for tuning).
fsys::stream_options read_ahead_for(std::size_t request) {
  fsys::stream_options o{4, std::max<std::size_t>(request, 512 * 1024), 0, 0};
  if (const char* v = std::getenv("FSYS_BENCH_STREAM_RA")) {
    unsigned long c = 0, s = 0;
    if (std::sscanf(v, "%lu,%lu", &c, &s) == 2) o = {c, s, 0, 0};
  }
  return o;
}
#endif

template <bool Options>
std::uint64_t stream_read_pass(std::size_t request) {
  asio::io_context ctx;
  std::uint64_t total = 0;
  asio::co_spawn(
      ctx,
      [&]() -> asio::awaitable<void> {
        stream_type f(ctx, input_path(), stream_type::read_only);
#if !defined(FSYS_BENCH_STREAM_ASIO)
        if constexpr (Options) f.set_options(read_ahead_for(request));
#endif
        std::unique_ptr<char[]> buf(new char[request]);
        for (;;) {
          auto [ec, n] = co_await f.async_read_some(asio::buffer(buf.get(), request), asio::as_tuple(asio::use_awaitable));
          if (ec == asio::error::eof) break;
          if (ec) fail("read: " + ec.message());
          total += n;
        }
      },
      [](std::exception_ptr e) {
        if (e) std::rethrow_exception(e);
      });
  ctx.run();
  return total;
}

template <bool Options>
std::uint64_t stream_write_pass(std::size_t request) {
  asio::io_context ctx;
  std::uint64_t total = 0;
  const std::uint64_t size = file_size();
  asio::co_spawn(
      ctx,
      [&]() -> asio::awaitable<void> {
        stream_type f(ctx, output_path(), stream_type::write_only | stream_type::create | stream_type::truncate);
#if !defined(FSYS_BENCH_STREAM_ASIO)
        if constexpr (Options) f.set_options({0, 0, 4, request});
#endif
        std::vector<char> buf(request, 'w');
        while (total < size) {
          const std::size_t k = static_cast<std::size_t>(std::min<std::uint64_t>(request, size - total));
          auto [ec, n] = co_await asio::async_write(f, asio::buffer(buf.data(), k), asio::as_tuple(asio::use_awaitable));
          if (ec) fail("write: " + ec.message());
          total += n;
        }
#if !defined(FSYS_BENCH_STREAM_ASIO)
        // The pass ends when every byte has reached the file.
        auto [ec] = co_await f.async_close(asio::as_tuple(asio::use_awaitable));
        if (ec) fail("close: " + ec.message());
#else
        f.close();
#endif
      },
      [](std::exception_ptr e) {
        if (e) std::rethrow_exception(e);
      });
  ctx.run();
  return total;
}

#if !defined(FSYS_BENCH_STREAM_ASIO)
std::uint64_t loop_read_pass(std::size_t request) {
  int fd = ::open(input_path().c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("open");
  std::unique_ptr<char[]> buf(new char[request]);
  std::uint64_t total = 0;
  for (;;) {
    const ssize_t n = ::read(fd, buf.get(), request);
    if (n < 0) fail("read");
    if (n == 0) break;
    total += static_cast<std::uint64_t>(n);
  }
  ::close(fd);
  return total;
}

std::uint64_t loop_write_pass(std::size_t request) {
  int fd = ::open(output_path().c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail("open");
  std::vector<char> buf(request, 'w');
  const std::uint64_t size = file_size();
  std::uint64_t total = 0;
  while (total < size) {
    const std::size_t k = static_cast<std::size_t>(std::min<std::uint64_t>(request, size - total));
    const ssize_t n = ::write(fd, buf.data(), k);
    if (n <= 0) fail("write");
    total += static_cast<std::uint64_t>(n);
  }
  ::close(fd);
  return total;
}
#endif

enum class mode { cached, cold, write };

void run(benchmark::State& state, pass_fn pass, mode m) {
  const std::size_t request = static_cast<std::size_t>(state.range(0));
  std::uint64_t bytes = 0;
  if (m != mode::write) input_path();
  for (auto _ : state) {
    state.PauseTiming();
    if (m == mode::cold) drop_pages(input_path());
    if (m == mode::cached) warm_pages(input_path());
    if (m == mode::write) {
      drop_pages(output_path());
      ::unlink(output_path().c_str());
    }
    state.ResumeTiming();
    const std::uint64_t n = pass(request);
    if (m != mode::write && n != file_size()) fail("short pass");
    bytes += n;
  }
  if (m == mode::write) {
    // Write the last pass's pages back now, not during the next case.
    drop_pages(output_path());
    ::unlink(output_path().c_str());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(bytes));
}

void register_all() {
  struct impl {
    const char* name;
    pass_fn read;
    pass_fn write;
  };
  std::vector<impl> impls;
#if defined(FSYS_BENCH_STREAM_ASIO)
  impls.push_back({"asio", &stream_read_pass<false>, &stream_write_pass<false>});
#else
  impls.push_back({"fsys_ra", &stream_read_pass<true>, &stream_write_pass<true>});
  impls.push_back({"fsys_plain", &stream_read_pass<false>, &stream_write_pass<false>});
  impls.push_back({"rw_loop", &loop_read_pass, &loop_write_pass});
#endif
  (void)has_options;
  for (const auto& i : impls) {
    for (auto [mname, m] : {std::pair{"read_cached", mode::cached}, std::pair{"read_cold", mode::cold},
                            std::pair{"write", mode::write}}) {
      const pass_fn fn = m == mode::write ? i.write : i.read;
      const mode mm = m;  // (clang 14 cannot capture a structured binding)
      benchmark::RegisterBenchmark((std::string("stream/") + mname + "/" + i.name).c_str(),
                                   [fn, mm](benchmark::State& s) { run(s, fn, mm); })
          ->Arg(64 << 10)
          ->Arg(1 << 20)
          ->Unit(benchmark::kMillisecond)
          ->UseRealTime()
          ->MinTime(0.5);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  register_all();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  ::unlink(output_path().c_str());
  return 0;
}
