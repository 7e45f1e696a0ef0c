// Directory listing and recursive removal, side by side in one run:
// - listing 100,000 entries: fsys::async_read_directory (whole listing),
//   fsys::directory::async_next_batch (views into a reused buffer) and
//   std::filesystem::directory_iterator (the name of every entry read in
//   each case);
// - removing a tree of 10,000 files (100 directories of 100 files):
//   fsys::async_remove_all and std::filesystem::remove_all, the tree made
//   again before every iteration, outside the timing.
// The directories live under $FSYS_BENCH_DIR (default /var/tmp), on disk,
// and are in the page cache after the first pass.
#include <fsys/directory.hpp>
#include <fsys/uring_service.hpp>

#include <benchmark/benchmark.h>
#include <boost/asio/io_context.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <string>

namespace {

namespace asio = boost::asio;
namespace sfs = std::filesystem;

constexpr int listing_entries = 100000;
constexpr int tree_dirs = 100;
constexpr int tree_files_per_dir = 100;

std::string base_dir() {
  const char* v = std::getenv("FSYS_BENCH_DIR");
  return std::string(v && *v ? v : "/var/tmp") + "/fsys-bench-directory";
}

void make_files(const std::string& dir, int n, const char* prefix) {
  sfs::create_directories(dir);
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) throw std::runtime_error("open " + dir);
  char name[64];
  for (int i = 0; i < n; ++i) {
    std::snprintf(name, sizeof name, "%s-%06d", prefix, i);
    const int fd = ::openat(dfd, name, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) throw std::runtime_error("create");
    ::close(fd);
  }
  ::close(dfd);
}

// The directory of 100,000 empty files, made once.
const std::string& big_dir() {
  static const std::string d = [] {
    std::string p = base_dir() + "/big";
    std::error_code ec;
    std::size_t n = 0;
    if (sfs::is_directory(p, ec))
      for ([[maybe_unused]] const auto& e : sfs::directory_iterator(p)) ++n;
    if (n != listing_entries) {
      sfs::remove_all(p);
      make_files(p, listing_entries, "a-file-named");
    }
    return p;
  }();
  return d;
}

std::string make_tree() {
  const std::string root = base_dir() + "/tree";
  sfs::remove_all(root);
  for (int d = 0; d < tree_dirs; ++d) make_files(root + "/dir" + std::to_string(d), tree_files_per_dir, "file");
  return root;
}

void BM_list_std_directory_iterator(benchmark::State& state) {
  const std::string& dir = big_dir();
  for (auto _ : state) {
    std::size_t n = 0, bytes = 0;
    for (const auto& e : sfs::directory_iterator(dir)) {
      bytes += e.path().filename().native().size();
      ++n;
    }
    if (n != listing_entries) state.SkipWithError("wrong count");
    benchmark::DoNotOptimize(bytes);
  }
  state.SetItemsProcessed(state.iterations() * listing_entries);
}

void BM_list_fsys_read_directory(benchmark::State& state) {
  const std::string& dir = big_dir();
  asio::io_context ctx(1);
  for (auto _ : state) {
    std::size_t n = 0, bytes = 0;
    boost::system::error_code err;
    fsys::async_read_directory(ctx, dir, [&](boost::system::error_code ec, std::vector<fsys::directory_entry> v) {
      err = ec;
      n = v.size();
      for (const auto& e : v) bytes += e.name.size();
    });
    ctx.run();
    ctx.restart();
    if (err || n != listing_entries) state.SkipWithError("listing failed");
    benchmark::DoNotOptimize(bytes);
  }
  state.SetItemsProcessed(state.iterations() * listing_entries);
}

void BM_list_fsys_batches(benchmark::State& state) {
  const std::string& dir = big_dir();
  asio::io_context ctx(1);
  fsys::directory d(ctx);
  for (auto _ : state) {
    std::size_t n = 0, bytes = 0;
    boost::system::error_code err;
    d.async_open(dir, [&](boost::system::error_code ec) { err = ec; });
    ctx.run();
    ctx.restart();
    for (bool more = !err; more;) {
      d.async_next_batch([&](boost::system::error_code ec, std::span<const fsys::directory_entry_view> b) {
        err = ec;
        more = !ec && !b.empty();
        n += b.size();
        for (const auto& e : b) bytes += e.name.size();
      });
      ctx.run();
      ctx.restart();
    }
    d.close();
    if (err || n != listing_entries) state.SkipWithError("listing failed");
    benchmark::DoNotOptimize(bytes);
  }
  state.SetItemsProcessed(state.iterations() * listing_entries);
}

constexpr std::uint64_t tree_entries = 1 + tree_dirs * (1 + tree_files_per_dir);

void BM_remove_all_std(benchmark::State& state) {
  for (auto _ : state) {
    state.PauseTiming();
    const std::string root = make_tree();
    state.ResumeTiming();
    const std::uintmax_t n = sfs::remove_all(root);
    if (n != tree_entries) state.SkipWithError("wrong count");
  }
  state.SetItemsProcessed(state.iterations() * tree_entries);
}

void BM_remove_all_fsys(benchmark::State& state) {
  asio::io_context ctx(1);
  for (auto _ : state) {
    state.PauseTiming();
    const std::string root = make_tree();
    state.ResumeTiming();
    std::uint64_t n = 0;
    boost::system::error_code err;
    fsys::async_remove_all(ctx, root, [&](boost::system::error_code ec, std::uint64_t r) {
      err = ec;
      n = r;
    });
    ctx.run();
    ctx.restart();
    if (err || n != tree_entries) state.SkipWithError("remove_all failed");
  }
  state.SetItemsProcessed(state.iterations() * tree_entries);
}

}  // namespace

BENCHMARK(BM_list_std_directory_iterator)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(0.5);
BENCHMARK(BM_list_fsys_read_directory)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(0.5);
BENCHMARK(BM_list_fsys_batches)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(0.5);
BENCHMARK(BM_remove_all_std)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(3);
BENCHMARK(BM_remove_all_fsys)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(3);

BENCHMARK_MAIN();
