// File-system operation cases of fsys-bench: serving a small cached file per
// request — open + statx + 4 KiB read + close — with 32 requests in flight on
// one io_context, made with fsys's asynchronous operations (async_* with
// use_awaitable on io_uring and on the psync backend; the co_* forms on
// io_uring), with the same four system calls made blocking on the loop
// thread, and with those calls each followed by a post through the
// io_context (the floor of a form that completes through handlers), and
// with each call made inside a coroutine of its own (the floor of a
// coroutine form built on asio::awaitable).
#include "cases.hpp"
#include "common.hpp"

#include <fsys/co.hpp>
#include <fsys/co_filesystem.hpp>
#include <fsys/file.hpp>
#include <fsys/uring_service.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <exception>
#include <filesystem>
#include <string>
#include <vector>

namespace bench {
namespace {

namespace asio = boost::asio;

constexpr unsigned small_files = 1024;
constexpr unsigned serve_depth = 32;
constexpr std::uint64_t serve_ops = 200000;

// 1024 files of 4 KiB (file i starts with the 8-byte value i, then zeros),
// read once so that the tree is in the page cache.
const std::vector<std::string>& small_tree() {
  static const std::vector<std::string> paths = [] {
    std::vector<std::string> v;
    const std::string dir = files().dir + "/small";
    std::filesystem::create_directories(dir);
    block_buffer buf;
    for (unsigned i = 0; i < small_files; ++i) {
      std::string p = dir + "/f" + std::to_string(i);
      struct stat sb;
      if (::stat(p.c_str(), &sb) != 0 || sb.st_size != static_cast<off_t>(block_size)) {
        int fd = open_or_die(p, O_WRONLY | O_CREAT | O_TRUNC);
        std::memset(buf.p, 0, block_size);
        const std::uint64_t tag = i;
        std::memcpy(buf.p, &tag, sizeof tag);
        if (::pwrite(fd, buf.p, block_size, 0) != static_cast<ssize_t>(block_size)) fail("write small file");
        ::close(fd);
      }
      int fd = open_or_die(p, O_RDONLY);
      if (::pread(fd, buf.p, block_size, 0) != static_cast<ssize_t>(block_size)) fail("read small file");
      ::close(fd);
      v.push_back(std::move(p));
    }
    return v;
  }();
  return paths;
}

void check_small(const std::byte* buf, long n, std::uint64_t i, const char* who) {
  std::uint64_t tag;
  std::memcpy(&tag, buf, sizeof tag);
  if (n != static_cast<long>(block_size) || tag != i)
    fail(std::string(who) + ": small file " + std::to_string(i) + " read wrong");
}

// The same request with the coroutine forms (co_open, co_stat, co_read_at,
// co_close), which continue at once when the call was made inline.
asio::awaitable<void> serve_worker_co(asio::io_context& ctx, budget& b, unsigned seed, std::uint64_t& done) {
  const auto& paths = small_tree();
  block_buffer buf;
  block_picker pick(seed, paths.size());
  while (b.take()) {
    const std::uint64_t i = pick.next();
    fsys::file f = co_await fsys::co_open(ctx, paths[i], O_RDONLY);
    if ((co_await fsys::co_stat(f)).size != block_size) fail("fsys co_stat");
    const std::size_t n = co_await fsys::co_read_at(f, 0, asio::buffer(buf.p, block_size));
    check_small(buf.p, static_cast<long>(n), i, "fsys serve (co_*)");
    co_await fsys::co_close(f);
    ++done;
  }
}

asio::awaitable<void> serve_worker(asio::io_context& ctx, budget& b, unsigned seed, std::uint64_t& done) {
  const auto& paths = small_tree();
  block_buffer buf;
  block_picker pick(seed, paths.size());
  const auto use = asio::as_tuple(asio::use_awaitable);
  while (b.take()) {
    const std::uint64_t i = pick.next();
    fsys::file f(ctx);
    auto [e1] = co_await f.async_open(paths[i], O_RDONLY, 0, use);
    if (e1) fail("fsys async_open: " + e1.message());
    auto [e2, st] = co_await f.async_stat(use);
    if (e2 || st.size != block_size) fail("fsys async_stat");
    auto [e3, n] = co_await f.async_read_at(0, asio::buffer(buf.p, block_size), use);
    if (e3) fail("fsys async_read_at: " + e3.message());
    check_small(buf.p, static_cast<long>(n), i, "fsys serve");
    auto [e4] = co_await f.async_close(use);
    if (e4) fail("fsys async_close: " + e4.message());
    ++done;
  }
}

// Runs `serve_depth` coroutines made by `worker` on `ctx` until the budget
// is spent.
template <class Worker>
run_result run_workers(asio::io_context& ctx, budget& b, Worker worker) {
  run_result r;
  std::uint64_t done = 0;
  const auto allocs0 = allocations();
  b.start();
  for (unsigned w = 0; w < serve_depth; ++w)
    asio::co_spawn(ctx, worker(ctx, b, w + 1, done), [](std::exception_ptr e) {
      if (e) std::rethrow_exception(e);
    });
  ctx.run();
  r.seconds = seconds_since(b.started());
  r.ops = done;
  r.allocs = allocations() - allocs0;
  return r;
}

run_result run_fsys(bool psync, bool co_forms, budget& b) {
  asio::io_context ctx(1);
  fsys::ring_options o;
  if (psync) o.fallback = fsys::fallback_policy::force_psync;
  // The inline fast path: cached opens, the statx of a local file and the
  // cached read complete in this thread (FSYS_INLINE_FAST_PATH=0: all through
  // the engine, for comparison).
  o.inline_fast_path = true;
  auto& svc = asio::make_service<fsys::uring_service>(ctx, o);
  if ((svc.active_backend() == fsys::backend::psync) != psync) fail("serve: unexpected backend");
  const auto enters0 = svc.stats().enter_calls;
  run_result r = run_workers(ctx, b, co_forms ? serve_worker_co : serve_worker);
  if (!psync) r.enters = static_cast<double>(svc.stats().enter_calls - enters0);
  return r;
}

// The floor of any form that completes through Asio's handlers: the four
// blocking calls of a request, each followed by a round trip through the
// io_context (`asio::post` with `use_awaitable`), 32 coroutines as for
// fsys. An `async_*` operation that finishes inline costs at least this: its
// handler is posted, never invoked inside the initiating function.
asio::awaitable<void> posts_worker(asio::io_context& ctx, budget& b, unsigned seed, std::uint64_t& done) {
  const auto& paths = small_tree();
  block_buffer buf;
  block_picker pick(seed, paths.size());
  const auto use = asio::as_tuple(asio::use_awaitable);
  while (b.take()) {
    const std::uint64_t i = pick.next();
    int fd = ::open(paths[i].c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail("open");
    co_await asio::post(ctx, use);
    struct statx stx;
    if (::statx(fd, "", AT_EMPTY_PATH | AT_STATX_SYNC_AS_STAT, STATX_BASIC_STATS, &stx) != 0 ||
        stx.stx_size != block_size)
      fail("statx");
    co_await asio::post(ctx, use);
    check_small(buf.p, static_cast<long>(::pread(fd, buf.p, block_size, 0)), i, "blocking serve + posts");
    co_await asio::post(ctx, use);
    if (::close(fd) != 0) fail("close");
    co_await asio::post(ctx, use);
    ++done;
  }
}

// The floor of the coroutine forms: each of the four blocking calls made
// inside a nested asio::awaitable of its own, as co_open, co_stat,
// co_read_at and co_close are, with one trip through the io_context every
// 16 requests (the co forms' inline-resume limit: 64 inline completions per
// thread, then one through the queue). What is left between this row and
// the co forms is fsys's own code and its choice of system calls.
asio::awaitable<int> frame_open(const char* path) { co_return ::open(path, O_RDONLY | O_CLOEXEC); }

asio::awaitable<std::uint64_t> frame_stat(int fd) {
  struct statx stx;
  if (::statx(fd, "", AT_EMPTY_PATH | AT_STATX_SYNC_AS_STAT, STATX_BASIC_STATS, &stx) != 0) fail("statx");
  co_return stx.stx_size;
}

asio::awaitable<long> frame_read(int fd, std::byte* buf) { co_return ::pread(fd, buf, block_size, 0); }

asio::awaitable<int> frame_close(int fd) { co_return ::close(fd); }

asio::awaitable<void> frames_worker(asio::io_context& ctx, budget& b, unsigned seed, std::uint64_t& done) {
  const auto& paths = small_tree();
  block_buffer buf;
  block_picker pick(seed, paths.size());
  unsigned requests = 0;
  while (b.take()) {
    const std::uint64_t i = pick.next();
    const int fd = co_await frame_open(paths[i].c_str());
    if (fd < 0) fail("open");
    if (co_await frame_stat(fd) != block_size) fail("statx size");
    check_small(buf.p, co_await frame_read(fd, buf.p), i, "blocking serve in frames");
    if (co_await frame_close(fd) != 0) fail("close");
    if (++requests % 16 == 0) co_await asio::post(ctx, asio::as_tuple(asio::use_awaitable));
    ++done;
  }
}

run_result run_blocking_in_frames(budget& b) {
  asio::io_context ctx(1);
  return run_workers(ctx, b, frames_worker);
}

run_result run_blocking_with_posts(budget& b) {
  asio::io_context ctx(1);
  return run_workers(ctx, b, posts_worker);
}

// The same four calls, blocking, one request after the other on the thread
// that would run the io_context.
run_result run_blocking(budget& b) {
  const auto& paths = small_tree();
  block_buffer buf;
  block_picker pick(7, paths.size());
  run_result r;
  const auto allocs0 = allocations();
  b.start();
  while (b.take()) {
    const std::uint64_t i = pick.next();
    int fd = ::open(paths[i].c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail("open");
    struct statx stx;
    if (::statx(fd, "", AT_EMPTY_PATH | AT_STATX_SYNC_AS_STAT, STATX_BASIC_STATS, &stx) != 0 ||
        stx.stx_size != block_size)
      fail("statx");
    check_small(buf.p, static_cast<long>(::pread(fd, buf.p, block_size, 0)), i, "blocking serve");
    if (::close(fd) != 0) fail("close");
    ++r.ops;
  }
  r.seconds = seconds_since(b.started());
  r.allocs = allocations() - allocs0;
  return r;
}

}  // namespace

void register_fs_benchmarks() {
  for (int v = 0; v < 6; ++v) {
    static const char* names[] = {"serve_small_file_d32/fsys_async_ctx1", "serve_small_file_d32/blocking_syscalls",
                                  "serve_small_file_d32/psync_co",         "serve_small_file_d32/fsys_co_forms_ctx1",
                                  "serve_small_file_d32/blocking_plus_4_posts",
                                  "serve_small_file_d32/blocking_in_4_frames"};
    add(names[v], [v](benchmark::State& st) {
      small_tree();
      run_result r;
      for (auto _ : st) {
        budget b(serve_ops, max_case_seconds);
        r = v == 1   ? run_blocking(b)
            : v == 4 ? run_blocking_with_posts(b)
            : v == 5 ? run_blocking_in_frames(b)
                     : run_fsys(v == 2, v == 3, b);
      }
      report(st, r);
    });
  }
}

}  // namespace bench
