// Thread scaling (issue 15): the same workload run by T threads, for every T
// in the list FSYS_BENCH_THREADS (comma-separated, default "1,2"), so the
// cases run unchanged on a machine with more cores. Case names are
// `threads_<workload>/<variant>_<T>t`; bench/report.py divides each variant's
// ops/s at T threads by its ops/s at 1 thread.
//
// Variants (depth 32 per thread everywhere, 4 KiB random blocks):
// - fsys_one_ctx[_fast]: ONE io_context and ONE fsys::file; 32·T coroutines
//   co_spawned onto it, and T threads each calling ctx.run(), so the
//   coroutines resume on all of them. `_fast`: ring_options::inline_fast_path
//   on; without the suffix it is off, so every operation goes through the ring.
// - fsys_ctx_per_thread[_fast]: T io_contexts, one per thread, each with its
//   own fsys::file on the same path and its own 32 coroutines.
// - pread_ / pwrite_: T threads each calling pread/pwrite (the reference;
//   one operation in flight per thread).
// - preadv2_nowait_ (cached reads): T threads each calling preadv2 with
//   RWF_NOWAIT, the call the inline fast path makes per cached read, so the
//   page shows what that call costs against pread apart from fsys.
//
// Besides ops/s, every case reports cpu_ns_per_op: the CPU time of the whole
// process (all its threads, io-wq workers included) in the window, divided by
// the operations. Other processes on the machine lower ops/s but not this, so
// it shows what a thread more costs per operation (lock contention, cache
// lines moving between CPUs) even on a loaded machine.
//
// No shared counter on the hot path: every coroutine (or thread) has its own
// share of the operation budget and the common deadline, and counts its own
// operations, so the harness adds no contention of its own.
#include "cases.hpp"
#include "common.hpp"

#include <fsys/co.hpp>
#include <fsys/file.hpp>
#include <fsys/uring_service.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

#include <fcntl.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <exception>
#include <latch>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <thread>

namespace bench {
namespace {

namespace asio = boost::asio;

/// Operations in flight per thread.
constexpr unsigned per_thread_depth = 32;

/// The thread counts to run: FSYS_BENCH_THREADS ("1,2,4,8"), default 1 and 2.
std::vector<unsigned> thread_counts() {
  std::vector<unsigned> out;
  if (const char* v = std::getenv("FSYS_BENCH_THREADS"); v && *v) {
    std::stringstream ss(v);
    std::string item;
    while (std::getline(ss, item, ',')) {
      const long n = std::strtol(item.c_str(), nullptr, 10);
      if (n < 1 || n > 1024) fail("FSYS_BENCH_THREADS: bad thread count '" + item + "'");
      out.push_back(static_cast<unsigned>(n));
    }
  }
  if (out.empty()) out = {1, 2};
  return out;
}

/// One worker's share of a run: an operation quota and the common deadline
/// (checked every 64 operations). Not shared between threads.
struct quota {
  std::uint64_t left;
  clock::time_point deadline;
  std::uint64_t done = 0;
  bool take() noexcept {
    if (left == 0) return false;
    if ((done & 63) == 0 && done != 0 && clock::now() >= deadline) {
      left = 0;
      return false;
    }
    --left;
    return true;
  }
};

/// CPU time of the process so far (every thread, io-wq workers included).
double process_cpu_seconds() {
  timespec ts{};
  ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

/// Per-worker state on its own cache lines.
struct alignas(64) worker_slot {
  quota q{0, {}};
};

struct mt_workload {
  const char* name;
  op_mode mode;
  std::uint64_t ops_per_thread;
};

const mt_workload mt_workloads[] = {
    {"threads_randread_cache_d32", op_mode::read_cache, 1000000},
    {"threads_randread_direct_d32", op_mode::read_direct, 200000},
    {"threads_randwrite_buffered_d32", op_mode::write_buffered, 1000000},
};

bool is_read(op_mode m) { return m != op_mode::write_buffered; }

asio::awaitable<void> co_worker(fsys::file& f, op_mode mode, unsigned seed, worker_slot& slot) {
  block_buffer buf;
  block_picker pick(seed);
  const auto mb = asio::buffer(buf.p, block_size);
  while (slot.q.take()) {
    const std::uint64_t blk = pick.next();
    const std::uint64_t off = blk * block_size;
    // co_read_at/co_write_at throw on error; counts and content are checked here.
    if (is_read(mode))
      check_read(buf.p, static_cast<long>(co_await fsys::co_read_at(f, off, mb)), blk, "fsys read (threads)");
    else
      check_write(static_cast<long>(co_await fsys::co_write_at(f, off, mb)), "fsys write (threads)");
    ++slot.q.done;
  }
}

/// Exceptions of the coroutines: the first one is kept and reported by fail()
/// after the run (fail() from a handler would race with the other threads).
struct first_error {
  std::mutex m;
  std::string what;
  void operator()(std::exception_ptr e) {
    if (!e) return;
    std::lock_guard<std::mutex> l(m);
    if (!what.empty()) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& x) {
      what = x.what();
    }
  }
};

struct mt_env {
  std::unique_ptr<asio::io_context> ctx;
  fsys::uring_service* svc = nullptr;
  std::optional<fsys::file> file;
};

void make_env(mt_env& e, op_mode mode, bool fast) {
  e.ctx = std::make_unique<asio::io_context>();
  fsys::ring_options o;
  o.inline_fast_path = fast;
  e.svc = &asio::make_service<fsys::uring_service>(*e.ctx, o);
  if (e.svc->active_backend() != fsys::backend::io_uring) fail("io_uring backend expected but fsys fell back to psync");
  e.file.emplace(*e.ctx, path_for(mode), open_flags(mode));
}

/// ONE io_context run by `threads` threads, 32·threads coroutines on it.
run_result run_one_ctx(mt_env& e, op_mode mode, unsigned threads, std::uint64_t ops_per_thread, double max_s,
                       double& cpu_s) {
  const unsigned coros = per_thread_depth * threads;
  std::vector<worker_slot> slots(coros);
  first_error err;
  e.ctx->restart();
  const auto t0 = clock::now();
  const auto deadline = t0 + std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(max_s));
  for (unsigned i = 0; i < coros; ++i) {
    slots[i].q = quota{ops_per_thread / per_thread_depth, deadline};
    asio::co_spawn(*e.ctx, co_worker(*e.file, mode, i + 1, slots[i]), [&err](std::exception_ptr x) { err(x); });
  }
  const std::uint64_t a0 = allocations();
  const std::uint64_t e0 = e.svc->stats().enter_calls;
  const double c0 = process_cpu_seconds();
  std::vector<std::thread> pool;
  for (unsigned t = 1; t < threads; ++t) pool.emplace_back([&] { e.ctx->run(); });
  e.ctx->run();
  for (auto& th : pool) th.join();
  cpu_s = process_cpu_seconds() - c0;
  run_result r;
  r.seconds = seconds_since(t0);
  r.allocs = allocations() - a0;
  r.enters = static_cast<double>(e.svc->stats().enter_calls - e0);
  for (auto& s : slots) r.ops += s.q.done;
  if (!err.what.empty()) fail("fsys coroutine (one io_context, threads): " + err.what);
  return r;
}

/// `threads` io_contexts, one per thread, each with its own file and 32 coroutines.
run_result run_ctx_per_thread(std::vector<mt_env>& envs, op_mode mode, std::uint64_t ops_per_thread, double max_s,
                              double& cpu_s) {
  const auto threads = static_cast<unsigned>(envs.size());
  std::vector<worker_slot> slots(per_thread_depth * threads);
  std::vector<first_error> errs(threads);
  std::latch ready(threads + 1);
  std::latch go(1);
  std::vector<std::uint64_t> enters0(threads);
  for (unsigned t = 0; t < threads; ++t) enters0[t] = envs[t].svc->stats().enter_calls;
  clock::time_point t0, deadline;
  std::vector<std::thread> pool;
  for (unsigned t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      mt_env& e = envs[t];
      e.ctx->restart();
      ready.count_down();
      go.wait();
      for (unsigned i = 0; i < per_thread_depth; ++i) {
        worker_slot& s = slots[t * per_thread_depth + i];
        s.q = quota{ops_per_thread / per_thread_depth, deadline};
        asio::co_spawn(*e.ctx, co_worker(*e.file, mode, t * per_thread_depth + i + 1, s), [&err = errs[t]](std::exception_ptr x) { err(x); });
      }
      e.ctx->run();
    });
  }
  ready.arrive_and_wait();
  const std::uint64_t a0 = allocations();
  const double c0 = process_cpu_seconds();
  t0 = clock::now();
  deadline = t0 + std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(max_s));
  go.count_down();  // publishes t0 and deadline to the workers
  for (auto& th : pool) th.join();
  cpu_s = process_cpu_seconds() - c0;
  run_result r;
  r.seconds = seconds_since(t0);
  r.allocs = allocations() - a0;
  double enters = 0;
  for (unsigned t = 0; t < threads; ++t) enters += static_cast<double>(envs[t].svc->stats().enter_calls - enters0[t]);
  r.enters = enters;
  for (auto& s : slots) r.ops += s.q.done;
  for (auto& e : errs)
    if (!e.what.empty()) fail("fsys coroutine (io_context per thread): " + e.what);
  return r;
}

/// `threads` threads calling pread/pwrite on one shared fd (`nowait`: reads
/// with preadv2(RWF_NOWAIT), as the inline fast path makes them; a read that
/// would wait is made again with pread, so every read counts).
run_result run_syscall_threads(op_mode mode, unsigned threads, std::uint64_t ops_per_thread, double max_s,
                               double& cpu_s, bool nowait = false) {
  int fd = open_or_die(path_for(mode), open_flags(mode));
  std::vector<worker_slot> slots(threads);
  std::latch go(1);
  clock::time_point t0, deadline;
  std::vector<std::thread> pool;
  for (unsigned t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      block_buffer buf;
      block_picker pick(t + 1);
      go.wait();
      worker_slot& s = slots[t];
      s.q = quota{ops_per_thread, deadline};
      while (s.q.take()) {
        const std::uint64_t blk = pick.next();
        const off_t off = static_cast<off_t>(blk * block_size);
        // Sound: `buf` and `fd` outlive the blocking call.
        if (is_read(mode) && nowait) {
          iovec v{buf.p, block_size};
          ssize_t n = ::preadv2(fd, &v, 1, off, RWF_NOWAIT);
          if (n < 0 && errno == EAGAIN) n = ::pread(fd, buf.p, block_size, off);
          check_read(buf.p, n, blk, "preadv2 RWF_NOWAIT (threads)");
        } else if (is_read(mode))
          check_read(buf.p, ::pread(fd, buf.p, block_size, off), blk, "pread (threads)");
        else
          check_write(::pwrite(fd, buf.p, block_size, off), "pwrite (threads)");
        ++s.q.done;
      }
    });
  }
  const std::uint64_t a0 = allocations();
  const double c0 = process_cpu_seconds();
  t0 = clock::now();
  deadline = t0 + std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(max_s));
  go.count_down();
  for (auto& th : pool) th.join();
  cpu_s = process_cpu_seconds() - c0;
  run_result r;
  r.seconds = seconds_since(t0);
  r.allocs = allocations() - a0;
  for (auto& s : slots) r.ops += s.q.done;
  ::close(fd);
  return r;
}

void set_thread_counters(benchmark::State& st, unsigned threads, const run_result& r, double cpu_s) {
  st.counters["threads"] = static_cast<double>(threads);
  st.counters["cpu_ns_per_op"] = cpu_s * 1e9 / static_cast<double>(r.ops);
}

}  // namespace

void register_thread_benchmarks() {
  for (unsigned threads : thread_counts()) {
    const std::string t = "_" + std::to_string(threads) + "t";
    for (const mt_workload& w : mt_workloads) {
      // O_DIRECT reads and buffered writes are device- and io-wq-bound: the
      // fast path cannot help them (RWF_NOWAIT fails), so only the ring path runs.
      const bool cached = w.mode == op_mode::read_cache;
      for (bool fast : {false, true}) {
        if (fast && !cached) continue;
        const std::string suffix = std::string(fast ? "_fast" : "") + t;
        add(std::string(w.name) + "/fsys_one_ctx" + suffix, [w, threads, fast](benchmark::State& st) {
          mt_env e;
          make_env(e, w.mode, fast);
          double cpu = 0;
          run_one_ctx(e, w.mode, threads, std::min<std::uint64_t>(w.ops_per_thread / 10, 2000), 1.0, cpu);  // warm-up
          run_result r;
          for (auto _ : st) r = run_one_ctx(e, w.mode, threads, w.ops_per_thread, max_case_seconds, cpu);
          report(st, r);
          set_thread_counters(st, threads, r, cpu);
        });
        if (!cached) continue;
        add(std::string(w.name) + "/fsys_ctx_per_thread" + suffix, [w, threads, fast](benchmark::State& st) {
          std::vector<mt_env> envs(threads);
          for (auto& e : envs) make_env(e, w.mode, fast);
          double cpu = 0;
          run_ctx_per_thread(envs, w.mode, std::min<std::uint64_t>(w.ops_per_thread / 10, 2000), 1.0, cpu);  // warm-up
          run_result r;
          for (auto _ : st) r = run_ctx_per_thread(envs, w.mode, w.ops_per_thread, max_case_seconds, cpu);
          report(st, r);
          set_thread_counters(st, threads, r, cpu);
        });
      }
      // The system-call references: pread/pwrite, and for cached reads also
      // preadv2(RWF_NOWAIT), the fast path's own call.
      for (bool nowait : {false, true}) {
        if (nowait && w.mode != op_mode::read_cache) continue;
        const char* sys = nowait ? "/preadv2_nowait" : is_read(w.mode) ? "/pread" : "/pwrite";
        add(std::string(w.name) + sys + t, [w, threads, nowait](benchmark::State& st) {
          run_result r;
          double cpu = 0;
          for (auto _ : st)
            r = run_syscall_threads(w.mode, threads, w.ops_per_thread, max_case_seconds, cpu, nowait);
          report(st, r);
          set_thread_counters(st, threads, r, cpu);
        });
      }
    }
  }
}

}  // namespace bench
