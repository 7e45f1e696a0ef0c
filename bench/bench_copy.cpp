// fsys-bench-copy: fsys::async_copy_file, timed by bench/copy_bench against
// cp on the same files (see bench/copy-results.md).
//
//   fsys-bench-copy file SRC DST               copies one file (overwriting DST)
//   fsys-bench-copy tree SRCDIR DSTDIR [N]     copies every regular file of
//                                              SRCDIR into DSTDIR (new names),
//                                              N copies in flight (default 64)
//
// Prints the seconds the copies took (the process's start and the directory
// listing excluded; the script times whole processes for both sides).
#include <fsys/copy.hpp>
#include <fsys/uring_service.hpp>

#include <boost/asio/io_context.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

namespace asio = boost::asio;
namespace fs = std::filesystem;

namespace {

int usage() {
  std::fprintf(stderr, "usage: fsys-bench-copy file SRC DST | tree SRCDIR DSTDIR [INFLIGHT]\n");
  return 2;
}

// Copies names[next..] with `inflight` copies running at once.
struct tree_copy {
  asio::io_context& ctx;
  const std::vector<std::string>& names;
  fs::path from, to;
  bool ring_only = false;
  std::size_t next = 0;
  int failures = 0;

  void start_one() {
    if (next == names.size()) return;
    const std::string& n = names[next++];
    fsys::copy_options o;  // the default policy: fail if a target exists (the directory is empty)
    o.reflink = o.kernel_copy = !ring_only;
    fsys::async_copy_file(ctx, (from / n).native(), (to / n).native(), std::move(o),
                          [this](boost::system::error_code ec, std::uint64_t) {
                            if (ec) {
                              if (failures++ == 0) std::fprintf(stderr, "copy failed: %s\n", ec.message().c_str());
                            }
                            start_one();
                          });
  }
};

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) return usage();
  const std::string mode = argv[1];
  asio::io_context ctx(1);
  asio::make_service<fsys::uring_service>(ctx, fsys::ring_options{});
  using clock = std::chrono::steady_clock;
  if (mode == "file") {
    boost::system::error_code result;
    std::uint64_t bytes = 0;
    const auto t0 = clock::now();
    fsys::copy_options o;
    o.existing = fsys::copy_existing::overwrite;
    fsys::async_copy_file(ctx, argv[2], argv[3], std::move(o), [&](boost::system::error_code ec, std::uint64_t n) {
      result = ec;
      bytes = n;
    });
    ctx.run();
    const double s = std::chrono::duration<double>(clock::now() - t0).count();
    if (result) {
      std::fprintf(stderr, "copy failed: %s\n", result.message().c_str());
      return 1;
    }
    std::printf("%.6f s, %llu bytes\n", s, static_cast<unsigned long long>(bytes));
    return 0;
  }
  if (mode == "tree") {
    const std::size_t inflight = argc > 4 ? std::strtoul(argv[4], nullptr, 10) : 64;
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(argv[2]))
      if (e.is_regular_file()) names.push_back(e.path().filename().native());
    tree_copy t{ctx, names, argv[2], argv[3]};
    t.ring_only = std::getenv("FSYS_BENCH_COPY_RING") != nullptr;  // reads and writes through the ring only
    const auto t0 = clock::now();
    for (std::size_t i = 0; i < inflight; ++i) t.start_one();
    ctx.run();
    const double s = std::chrono::duration<double>(clock::now() - t0).count();
    std::printf("%.6f s, %zu files\n", s, names.size());
    return t.failures ? 1 : 0;
  }
  return usage();
}
