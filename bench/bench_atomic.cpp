// Untorn durable page writes: RWF_ATOMIC + linked fsync against a doublewrite.
//
// A database page of 16 KiB must survive a power cut whole. Two ways:
//   atomic       one async_write_atomic_linked_fsync per page: an RWF_ATOMIC
//                write linked to fsync(DATASYNC), one submission;
//   doublewrite  the page to a journal file + fsync, then the page in place +
//                fsync (what MySQL's doublewrite buffer does per page), each
//                step a linked write + fsync.
// Both on the same loop-mounted XFS (made and mounted by this program: run as
// root with mkfs.xfs installed; or point FSYS_BENCH_XFS_DIR at a directory on
// a filesystem with untorn writes), O_DIRECT files, `depth` pages in flight.
// Reported: records (durable pages) per second, at depth 1 and 32.
//
//   fsys-bench-atomic --benchmark_repetitions=1
#include <fsys/fsys.hpp>

#include <benchmark/benchmark.h>

#include <fcntl.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace asio = boost::asio;
using boost::system::error_code;

namespace {

constexpr std::size_t page = 16384;
constexpr unsigned pages = 256;               // 4 MiB of data file
constexpr unsigned records_per_iteration = 256;

// The XFS the benchmark writes to: FSYS_BENCH_XFS_DIR, or a loop mount made
// here (sparse 512 MiB image under /var/tmp), unmounted at exit.
struct xfs_dir {
  std::filesystem::path dir, root;
  bool mounted = false;
  std::string why;
  xfs_dir() {
    if (const char* d = std::getenv("FSYS_BENCH_XFS_DIR")) {
      dir = d;
      return;
    }
    char tmpl[] = "/var/tmp/fsys-bench-atomic-XXXXXX";
    if (!::mkdtemp(tmpl)) {
      why = "mkdtemp failed";
      return;
    }
    root = tmpl;
    dir = root / "mnt";
    std::filesystem::create_directory(dir);
    const std::string img = (root / "fs.img").string();
    const std::string cmd = "truncate -s 512M '" + img + "' && mkfs.xfs -q '" + img + "' && mount -o loop '" + img +
                            "' '" + dir.string() + "'";
    if (std::system(cmd.c_str()) != 0) {
      why = "could not make and mount a loop XFS (root and mkfs.xfs needed; or set FSYS_BENCH_XFS_DIR)";
      dir.clear();
      return;
    }
    mounted = true;
  }
  ~xfs_dir() {
    if (mounted) ::umount2(dir.c_str(), MNT_DETACH);
    if (!root.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(root, ec);
    }
  }
};

xfs_dir& target() {
  static xfs_dir d;
  return d;
}

fsys::file open_direct(asio::io_context& ctx, const std::filesystem::path& p, std::uint64_t size) {
  fsys::file f(ctx, p, O_RDWR | O_CREAT | O_DIRECT);
  if (::ftruncate(f.native_handle(), static_cast<off_t>(size)) != 0) throw std::runtime_error("ftruncate");
  // Allocate the blocks so that both methods overwrite allocated space.
  if (::fallocate(f.native_handle(), 0, 0, static_cast<off_t>(size)) != 0) throw std::runtime_error("fallocate");
  ::fsync(f.native_handle());
  return f;
}

// Keeps `depth` records in flight until `total` have completed. A record is
// `step(slot, record, done)`, which calls `done(ec)` when durable.
template <class Step>
void run_records(asio::io_context& ctx, unsigned depth, unsigned total, Step& step, benchmark::State& state) {
  unsigned started = 0, finished = 0;
  error_code failure;
  std::function<void(unsigned)> next = [&](unsigned slot) {
    if (started == total || failure) return;
    const unsigned rec = started++;
    step(slot, rec, [&, slot](error_code ec) {
      if (ec && !failure) failure = ec;
      ++finished;
      next(slot);
    });
  };
  for (unsigned s = 0; s < depth; ++s) next(s);
  ctx.restart();
  ctx.run();
  if (failure) state.SkipWithError(failure.message().c_str());
}

void report(benchmark::State& state) {
  state.counters["records/s"] =
      benchmark::Counter(static_cast<double>(state.iterations() * records_per_iteration), benchmark::Counter::kIsRate);
}

void atomic_linked_fsync(benchmark::State& state) {
  auto& t = target();
  if (t.dir.empty()) {
    state.SkipWithError(t.why.c_str());
    return;
  }
  const auto depth = static_cast<unsigned>(state.range(0));
  asio::io_context ctx;
  fsys::file data = open_direct(ctx, t.dir / "atomic.dat", page * pages);
  // One aligned buffer per slot; each lives until ctx.run() returned, after
  // every write using it completed (sound to hand to the kernel).
  std::vector<fsys::aligned_buffer> bufs;
  for (unsigned s = 0; s < depth; ++s) {
    bufs.emplace_back(page, 4096);
    std::memset(bufs.back().data(), static_cast<int>(s + 1), page);
  }
  auto step = [&](unsigned slot, unsigned rec, auto done) {
    // Slot-distinct pages, so no two writes in flight overlap.
    const std::uint64_t off = std::uint64_t{(rec * 7919u + slot) % pages} * page;
    data.async_write_atomic_linked_fsync(off, asio::buffer(bufs[slot].data(), page),
                                         [done](error_code ec, std::size_t) { done(ec); });
  };
  for (auto _ : state) run_records(ctx, depth, records_per_iteration, step, state);
  report(state);
}

void doublewrite(benchmark::State& state) {
  auto& t = target();
  if (t.dir.empty()) {
    state.SkipWithError(t.why.c_str());
    return;
  }
  const auto depth = static_cast<unsigned>(state.range(0));
  asio::io_context ctx;
  fsys::file data = open_direct(ctx, t.dir / "doublewrite.dat", page * pages);
  fsys::file journal = open_direct(ctx, t.dir / "doublewrite.journal", page * depth);
  std::vector<fsys::aligned_buffer> bufs;  // as above: alive until run() returned
  for (unsigned s = 0; s < depth; ++s) {
    bufs.emplace_back(page, 4096);
    std::memset(bufs.back().data(), static_cast<int>(s + 1), page);
  }
  auto step = [&](unsigned slot, unsigned rec, auto done) {
    const std::uint64_t off = std::uint64_t{(rec * 7919u + slot) % pages} * page;
    // The page to its journal slot, durable; then in place, durable.
    journal.async_write_linked_fsync(std::uint64_t{slot} * page, asio::buffer(bufs[slot].data(), page),
                                     [&, slot, off, done](error_code ec, std::size_t) {
                                       if (ec) return done(ec);
                                       data.async_write_linked_fsync(off, asio::buffer(bufs[slot].data(), page),
                                                                     [done](error_code e, std::size_t) { done(e); });
                                     });
  };
  for (auto _ : state) run_records(ctx, depth, records_per_iteration, step, state);
  report(state);
}

BENCHMARK(atomic_linked_fsync)->Arg(1)->Arg(32)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(doublewrite)->Arg(1)->Arg(32)->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
