// fsys-bench: fsys beside raw liburing, pread/pwrite and the seed's design,
// all in one run. Each fsys case has its own io_context, run on the benchmark
// thread; `_ctx1` cases build it with concurrency hint 1, which gives fsys a
// SINGLE_ISSUER|DEFER_TASKRUN ring. `psync_` cases force the pread/pwrite
// backend.
#include "cases.hpp"
#include "common.hpp"

#include <fsys/co.hpp>
#include <fsys/file.hpp>
#include <fsys/uring_service.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

#include <liburing.h>

#include <exception>
#include <memory>
#include <optional>

namespace bench {
namespace {

namespace asio = boost::asio;

struct fsys_setup {
  bool ctx1 = false;   ///< io_context with concurrency hint 1
  bool psync = false;  ///< force the psync backend
};

/// One io_context and one fsys::file for a case.
struct fsys_env {
  std::optional<asio::io_context> ctx;
  fsys::uring_service* svc = nullptr;
  std::optional<fsys::file> file;

  fsys_env(const fsys_setup& s, const std::string& path, int flags) {
    if (s.ctx1)
      ctx.emplace(1);
    else
      ctx.emplace();
    fsys::ring_options o;
    if (s.psync) o.fallback = fsys::fallback_policy::force_psync;
    // The single-issuer ring is asked for explicitly: the hint alone does not select it.
    if (s.ctx1) o.issuer = fsys::issuer_mode::single_thread;
    svc = &asio::make_service<fsys::uring_service>(*ctx, o);
    if (s.psync && svc->active_backend() != fsys::backend::psync) fail("psync backend was forced but is not in use");
    if (!s.psync && svc->active_backend() != fsys::backend::io_uring)
      fail("io_uring backend expected but fsys fell back to psync");
    if (!s.psync && s.ctx1 && !(svc->setup_flags() & IORING_SETUP_DEFER_TASKRUN))
      fail("io_context{1} did not give a DEFER_TASKRUN ring");
    file.emplace(*ctx, path, flags);
  }
  std::uint64_t enters() const { return svc->stats().enter_calls; }
};

const char* who(op_kind k) {
  switch (k) {
    case op_kind::read: return "fsys read";
    case op_kind::write: return "fsys write";
    case op_kind::write_linked_fsync: return "fsys write_linked_fsync";
    case op_kind::write_then_fdatasync: return "fsys write+fdatasync";
  }
  return "fsys";
}

const std::string& path_of(op_kind k, op_mode m) {
  if (k == op_kind::read) return path_for(m);
  if (k == op_kind::write) return write_path_for(m);
  return files().sync_path;
}
int flags_of(op_kind k, op_mode m) { return k == op_kind::read ? open_flags(m) : O_WRONLY; }
std::uint64_t blocks_of(op_kind k) {
  return k == op_kind::write_linked_fsync || k == op_kind::write_then_fdatasync ? sync_file_blocks : file_blocks;
}

// ---- coroutines: N coroutines on one file share a budget --------------------

asio::awaitable<void> co_worker(fsys::file& f, budget& b, op_kind kind, unsigned seed, std::uint64_t& done,
                                std::vector<double>* lat) {
  block_buffer buf;
  block_picker pick(seed, blocks_of(kind));
  const auto mb = asio::buffer(buf.p, block_size);
  while (b.take()) {
    const std::uint64_t blk = pick.next();
    const std::uint64_t off = blk * block_size;
    const auto t0 = clock::now();
    switch (kind) {
      case op_kind::read:
        // co_read_at throws on error; the count and content are checked here.
        check_read(buf.p, static_cast<long>(co_await fsys::co_read_at(f, off, mb)), blk, who(kind));
        break;
      case op_kind::write:
        check_write(static_cast<long>(co_await fsys::co_write_at(f, off, mb)), who(kind));
        break;
      case op_kind::write_linked_fsync:
        check_write(static_cast<long>(co_await fsys::co_write_linked_fsync(f, off, mb)), who(kind));
        break;
      case op_kind::write_then_fdatasync:
        check_write(static_cast<long>(co_await fsys::co_write_at(f, off, mb)), who(kind));
        co_await fsys::co_fdatasync(f);
        break;
    }
    if (lat) lat->push_back(std::chrono::duration<double, std::micro>(clock::now() - t0).count());
    ++done;
  }
}

void rethrow_to_fail(std::exception_ptr e) {
  if (!e) return;
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& x) {
    fail(std::string("fsys coroutine: ") + x.what());
  }
}

run_result run_co(fsys_env& env, op_kind kind, unsigned depth, budget& b, bool latency) {
  run_result res;
  std::uint64_t done = 0;
  if (latency) res.latencies_us.reserve(1 << 16);
  env.ctx->restart();
  b.start();
  const std::uint64_t a0 = allocations();
  const std::uint64_t e0 = env.enters();
  for (unsigned i = 0; i < depth; ++i)
    asio::co_spawn(*env.ctx, co_worker(*env.file, b, kind, i + 1, done, latency ? &res.latencies_us : nullptr),
                   rethrow_to_fail);
  env.ctx->run();
  res.seconds = seconds_since(b.started());
  res.enters = static_cast<double>(env.enters() - e0);
  res.allocs = allocations() - a0;
  res.ops = done;
  if (done != b.granted()) fail("fsys coroutines: completed count differs from issued count");
  return res;
}

// ---- plain callbacks: N slots, each re-issuing from its completion handler --

struct cb_runner;

struct cb_slot {
  cb_runner* r = nullptr;
  block_buffer buf;
  block_picker pick{1};
  std::uint64_t block = 0;
  clock::time_point t0;
  void issue();
  void done(const boost::system::error_code& ec, std::size_t n);
};

struct cb_runner {
  fsys::file* f;
  budget* b;
  op_kind kind;
  std::uint64_t completed = 0;
  std::vector<double>* lat = nullptr;
};

void cb_slot::issue() {
  if (!r->b->take()) return;
  block = pick.next();
  t0 = clock::now();
  const std::uint64_t off = block * block_size;
  const auto mb = asio::buffer(buf.p, block_size);
  // The handlers capture only the slot pointer: the slot outlives the run.
  switch (r->kind) {
    case op_kind::read:
      r->f->async_read_at(off, mb, [this](boost::system::error_code ec, std::size_t n) { done(ec, n); });
      break;
    case op_kind::write:
      r->f->async_write_at(off, mb, [this](boost::system::error_code ec, std::size_t n) { done(ec, n); });
      break;
    case op_kind::write_linked_fsync:
      r->f->async_write_linked_fsync(off, mb,
                                     [this](boost::system::error_code ec, std::size_t n) { done(ec, n); });
      break;
    case op_kind::write_then_fdatasync:
      r->f->async_write_at(off, mb, [this](boost::system::error_code ec, std::size_t n) {
        if (ec) fail(std::string("fsys async_write_at: ") + ec.message());
        r->f->async_fdatasync([this, n](boost::system::error_code ec2) { done(ec2, n); });
      });
      break;
  }
}

void cb_slot::done(const boost::system::error_code& ec, std::size_t n) {
  if (ec) fail(std::string(who(r->kind)) + " (callback): " + ec.message());
  if (r->kind == op_kind::read)
    check_read(buf.p, static_cast<long>(n), block, who(r->kind));
  else
    check_write(static_cast<long>(n), who(r->kind));
  if (r->lat) r->lat->push_back(std::chrono::duration<double, std::micro>(clock::now() - t0).count());
  ++r->completed;
  issue();
}

run_result run_cb(fsys_env& env, op_kind kind, unsigned depth, budget& b, bool latency) {
  run_result res;
  if (latency) res.latencies_us.reserve(1 << 16);
  cb_runner runner{&*env.file, &b, kind, 0, latency ? &res.latencies_us : nullptr};
  std::vector<cb_slot> slots(depth);
  for (unsigned i = 0; i < depth; ++i) {
    slots[i].r = &runner;
    slots[i].pick = block_picker(i + 1, blocks_of(kind));
  }
  env.ctx->restart();
  b.start();
  const std::uint64_t a0 = allocations();
  const std::uint64_t e0 = env.enters();
  for (auto& s : slots) s.issue();
  env.ctx->run();
  res.seconds = seconds_since(b.started());
  res.enters = static_cast<double>(env.enters() - e0);
  res.allocs = allocations() - a0;
  res.ops = runner.completed;
  if (runner.completed != b.granted()) fail("fsys callbacks: completed count differs from issued count");
  return res;
}

/// Registers one fsys case: a short warm-up on the same io_context (so
/// recycled operation memory and the ring are in their steady state), then
/// the measured run.
void add_fsys(const std::string& name, op_kind kind, op_mode mode, unsigned depth, std::uint64_t ops,
              double max_s, fsys_setup s, bool coroutine, bool latency) {
  add(name, [=](benchmark::State& st) {
    std::optional<fsys_env> env;
    try {
      env.emplace(s, path_of(kind, mode), flags_of(kind, mode));
    } catch (const std::system_error& e) {
      // Only a backend that is not built yet may be skipped; IO failures abort.
      if (!s.psync) throw;
      st.SkipWithError((std::string("psync backend unavailable: ") + e.what()).c_str());
      return;
    }
    {
      budget warm(std::min<std::uint64_t>(ops / 10, latency ? 10 : 2000), 1.0);
      if (coroutine)
        run_co(*env, kind, depth, warm, false);
      else
        run_cb(*env, kind, depth, warm, false);
    }
    run_result r;
    for (auto _ : st) {
      budget b(ops, max_s);
      r = coroutine ? run_co(*env, kind, depth, b, latency) : run_cb(*env, kind, depth, b, latency);
    }
    report(st, r);
  });
}

}  // namespace

void register_fsys_benchmarks() {
  struct variant {
    const char* suffix;
    fsys_setup setup;
    bool coroutine;
  };
  const variant variants[] = {
      {"fsys_co", {false, false}, true},  {"fsys_co_ctx1", {true, false}, true},
      {"fsys_cb", {false, false}, false}, {"fsys_cb_ctx1", {true, false}, false},
      {"psync_co", {false, true}, true},  {"psync_cb", {false, true}, false},
  };
  for (const workload& w : workloads()) {
    const op_kind kind = is_write(w.mode) ? op_kind::write : op_kind::read;
    for (const variant& v : variants)
      add_fsys(std::string(w.name) + "/" + v.suffix, kind, w.mode, w.depth, w.ops, max_case_seconds, v.setup,
               v.coroutine, false);
  }

  // Durable writes: linked write+fsync vs. two round trips (write, then fdatasync).
  struct durable_variant {
    const char* suffix;
    op_kind kind;
    fsys_setup setup;
    bool coroutine;
  };
  const durable_variant durable[] = {
      {"fsys_linked_co", op_kind::write_linked_fsync, {false, false}, true},
      {"fsys_linked_co_ctx1", op_kind::write_linked_fsync, {true, false}, true},
      {"fsys_linked_cb", op_kind::write_linked_fsync, {false, false}, false},
      {"fsys_write_then_fdatasync_co", op_kind::write_then_fdatasync, {false, false}, true},
      {"fsys_write_then_fdatasync_co_ctx1", op_kind::write_then_fdatasync, {true, false}, true},
      {"psync_linked_co", op_kind::write_linked_fsync, {false, true}, true},
  };
  for (const durable_variant& v : durable)
    add_fsys(std::string("durable_latency_d1/") + v.suffix, v.kind, op_mode::write_buffered, 1, latency_ops, 2.0,
             v.setup, v.coroutine, true);
  for (const durable_variant& v : durable)
    add_fsys(std::string("durable_32writers/") + v.suffix, v.kind, op_mode::write_buffered, durable_writers,
             durable_ops, 1.0, v.setup, v.coroutine, false);
}

}  // namespace bench

int main(int argc, char** argv) {
  bench::register_reference_benchmarks();
  bench::register_fsys_benchmarks();
  bench::register_fs_benchmarks();
  bench::register_thread_benchmarks();
#ifdef FSYS_BENCH_HAVE_BLOCKING_RING
  bench::register_blocking_ring_benchmarks();
#endif
  return bench::run_main(argc, argv);
}
