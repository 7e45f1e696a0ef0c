// fsys-bench-asio: Asio's own random_access_file on io_uring, the reference
// the issue compares fsys with. This executable is compiled with
// BOOST_ASIO_HAS_IO_URING (see bench/meson.build) and does not link fsys.
//
// The same workloads and names as fsys-bench, so scripts/bench puts the rows
// side by side. Reads use async_read_some_at (Asio's cheapest path; a 4 KiB
// read of a regular file inside the file is never short, and the count is
// checked). Asio has no asynchronous fdatasync: the durable cases call
// random_access_file::sync_data() after the asynchronous write, which blocks
// the io_context thread as an Asio program would.
#include "common.hpp"

#ifndef BOOST_ASIO_HAS_IO_URING
#error "fsys-bench-asio must be built with BOOST_ASIO_HAS_IO_URING"
#endif

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/random_access_file.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <fcntl.h>

#include <exception>
#include <optional>

namespace bench {
namespace {

namespace asio = boost::asio;

enum class kind { read, write, write_then_sync };

struct asio_env {
  asio::io_context ctx;
  asio::random_access_file file;
  asio_env(const std::string& path, int flags) : file(ctx, open_or_die(path, flags)) {}
};

asio::awaitable<void> co_worker(asio::random_access_file& f, budget& b, kind k, unsigned seed, std::uint64_t nblocks,
                                std::uint64_t& done, std::vector<double>* lat) {
  block_buffer buf;
  block_picker pick(seed, nblocks);
  while (b.take()) {
    const std::uint64_t blk = pick.next();
    const std::uint64_t off = blk * block_size;
    const auto t0 = clock::now();
    if (k == kind::read) {
      auto [ec, n] = co_await f.async_read_some_at(off, asio::buffer(buf.p, block_size),
                                                   asio::as_tuple(asio::use_awaitable));
      if (ec) fail("asio read: " + ec.message());
      check_read(buf.p, static_cast<long>(n), blk, "asio read");
    } else {
      auto [ec, n] = co_await f.async_write_some_at(off, asio::buffer(buf.p, block_size),
                                                    asio::as_tuple(asio::use_awaitable));
      if (ec) fail("asio write: " + ec.message());
      check_write(static_cast<long>(n), "asio write");
      if (k == kind::write_then_sync) f.sync_data();  // throws on failure, which fails the run
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
    fail(std::string("asio coroutine: ") + x.what());
  }
}

run_result run_co(asio_env& env, kind k, unsigned depth, std::uint64_t nblocks, budget& b, bool latency) {
  run_result res;
  std::uint64_t done = 0;
  if (latency) res.latencies_us.reserve(1 << 16);
  env.ctx.restart();
  b.start();
  const std::uint64_t a0 = allocations();
  for (unsigned i = 0; i < depth; ++i)
    asio::co_spawn(env.ctx, co_worker(env.file, b, k, i + 1, nblocks, done, latency ? &res.latencies_us : nullptr),
                   rethrow_to_fail);
  env.ctx.run();
  res.seconds = seconds_since(b.started());
  res.allocs = allocations() - a0;
  res.ops = done;
  if (done != b.granted()) fail("asio coroutines: completed count differs from issued count");
  return res;
}

struct cb_slot {
  asio::random_access_file* f = nullptr;
  budget* b = nullptr;
  kind k = kind::read;
  std::uint64_t* completed = nullptr;
  block_buffer buf;
  block_picker pick{1};
  std::uint64_t block = 0;

  void issue() {
    if (!b->take()) return;
    block = pick.next();
    const std::uint64_t off = block * block_size;
    if (k == kind::read) {
      f->async_read_some_at(off, asio::buffer(buf.p, block_size), [this](boost::system::error_code ec, std::size_t n) {
        if (ec) fail("asio read (callback): " + ec.message());
        check_read(buf.p, static_cast<long>(n), block, "asio read (callback)");
        ++*completed;
        issue();
      });
    } else {
      f->async_write_some_at(off, asio::buffer(buf.p, block_size), [this](boost::system::error_code ec, std::size_t n) {
        if (ec) fail("asio write (callback): " + ec.message());
        check_write(static_cast<long>(n), "asio write (callback)");
        ++*completed;
        issue();
      });
    }
  }
};

run_result run_cb(asio_env& env, kind k, unsigned depth, budget& b) {
  run_result res;
  std::uint64_t completed = 0;
  std::vector<cb_slot> slots(depth);
  for (unsigned i = 0; i < depth; ++i) {
    slots[i].f = &env.file;
    slots[i].b = &b;
    slots[i].k = k;
    slots[i].completed = &completed;
    slots[i].pick = block_picker(i + 1);
  }
  env.ctx.restart();
  b.start();
  const std::uint64_t a0 = allocations();
  for (auto& s : slots) s.issue();
  env.ctx.run();
  res.seconds = seconds_since(b.started());
  res.allocs = allocations() - a0;
  res.ops = completed;
  if (completed != b.granted()) fail("asio callbacks: completed count differs from issued count");
  return res;
}

enum class which_file { read, write, sync, cold };

const std::string& path_of(which_file w) {
  if (w == which_file::cold) return path_for(op_mode::read_cold);  // drops its pages first
  return w == which_file::read ? files().read_path : w == which_file::write ? files().write_path : files().sync_path;
}

void add_asio(const std::string& name, kind k, which_file file, int flags, unsigned depth,
              std::uint64_t nblocks, std::uint64_t ops, double max_s, bool coroutine, bool latency) {
  add(name, [=](benchmark::State& st) {
    asio_env env(path_of(file), flags);
    {
      budget warm(std::min<std::uint64_t>(ops / 10, latency ? 10 : 2000), 1.0);
      if (coroutine)
        run_co(env, k, depth, nblocks, warm, false);
      else
        run_cb(env, k, depth, warm);
    }
    run_result r;
    for (auto _ : st) {
      budget b(ops, max_s);
      r = coroutine ? run_co(env, k, depth, nblocks, b, latency) : run_cb(env, k, depth, b);
    }
    report(st, r);
  });
}

}  // namespace
}  // namespace bench

int main(int argc, char** argv) {
  using namespace bench;
  for (const workload& w : workloads()) {
    if (w.mode == op_mode::overwrite_xfs) continue;  // compared with raw liburing only
    const bool write = w.mode == op_mode::write_buffered;
    const which_file file = write                           ? which_file::write
                            : w.mode == op_mode::read_cold ? which_file::cold
                                                           : which_file::read;
    const kind k = write ? kind::write : kind::read;
    add_asio(std::string(w.name) + "/asio_co", k, file, open_flags(w.mode), w.depth, file_blocks, w.ops,
             max_case_seconds, true, false);
    add_asio(std::string(w.name) + "/asio_cb", k, file, open_flags(w.mode), w.depth, file_blocks, w.ops,
             max_case_seconds, false, false);
  }
  add_asio("durable_latency_d1/asio_write_then_sync_data", kind::write_then_sync, which_file::sync, O_WRONLY, 1,
           sync_file_blocks, latency_ops, 2.0, true, true);
  add_asio("durable_32writers/asio_write_then_sync_data", kind::write_then_sync, which_file::sync, O_WRONLY,
           durable_writers, sync_file_blocks, durable_ops, 1.0, true, false);
  return run_main(argc, argv);
}
