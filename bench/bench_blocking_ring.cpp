// fsys::blocking_ring with 1, 4 and 16 calling threads (issue 3), on the
// io_uring backend and on the forced psync backend, beside the seed's design
// and plain pread/pwrite (registered in reference.cpp under the same names).
#include "cases.hpp"
#include "common.hpp"

#include <fsys/blocking_ring.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

namespace bench {
namespace {

std::unique_ptr<fsys::blocking_ring> make_ring(benchmark::State& st, bool psync, bool fast_path = true) {
  fsys::ring_options o;
  if (psync) o.fallback = fsys::fallback_policy::force_psync;
  o.caller_thread_fast_path = fast_path;
  std::unique_ptr<fsys::blocking_ring> ring;
  try {
    ring = std::make_unique<fsys::blocking_ring>(o);
  } catch (const std::system_error& e) {
    if (!psync) throw;
    st.SkipWithError((std::string("psync backend unavailable: ") + e.what()).c_str());
    return ring;
  }
  if (ring->active_backend() != (psync ? fsys::backend::psync : fsys::backend::io_uring))
    fail("blocking_ring: unexpected backend");
  return ring;
}

long as_result(std::size_t n, const std::error_code& ec) {
  return ec ? -static_cast<long>(ec.value() ? ec.value() : EIO) : static_cast<long>(n);
}

}  // namespace

void register_blocking_ring_benchmarks() {
  for (op_kind kind : {op_kind::read, op_kind::write}) {
    for (unsigned threads : blocking_threads) {
      // The default (caller-thread fast path on), every request through the
      // ring, and the psync backend.
      struct variant {
        const char* suffix;
        bool psync;
        bool fast_path;
      };
      for (variant v : {variant{"/blocking_ring", false, true}, variant{"/blocking_ring_ring_only", false, false},
                        variant{"/blocking_ring_psync", true, true}}) {
        const bool psync = v.psync;
        const std::string name = blocking_case_name(kind, threads) + v.suffix;
        add(name, [kind, threads, psync, fast_path = v.fast_path](benchmark::State& st) {
          auto ring = make_ring(st, psync, fast_path);
          if (!ring) return;
          run_result r;
          for (auto _ : st) {
            budget b(blocking_ops, max_case_seconds);
            const std::uint64_t e0 = ring->stats().enter_calls;
            r = run_threads(kind, op_mode::read_cache, threads, b,
                            [&](int fd, std::byte* buf, std::uint64_t off) -> long {
                              std::error_code ec;
                              // Sound: read_at/write_at return only after the
                              // kernel is done with the buffer and the fd.
                              std::size_t n = kind == op_kind::read
                                                  ? ring->read_at(fd, {buf, block_size}, off, ec)
                                                  : ring->write_at(fd, {buf, block_size}, off, ec);
                              return as_result(n, ec);
                            },
                            psync ? "blocking_ring (psync)" : fast_path ? "blocking_ring" : "blocking_ring (ring only)");
            r.enters = psync ? -1.0 : static_cast<double>(ring->stats().enter_calls - e0);
          }
          report(st, r);
        });
      }
    }
  }

  // Durable-write latency through the blocking API (beside the asynchronous
  // cases of the same name).
  add("durable_latency_d1/blocking_ring_linked", [](benchmark::State& st) {
    auto ring = make_ring(st, false);
    run_result r;
    for (auto _ : st) {
      int fd = open_or_die(files().sync_path, O_WRONLY);
      block_buffer buf;
      block_picker pick(1, sync_file_blocks);
      budget b(latency_ops, 2.0);
      r.latencies_us.reserve(1 << 12);
      b.start();
      const std::uint64_t a0 = allocations();
      const std::uint64_t e0 = ring->stats().enter_calls;
      while (b.take()) {
        const std::uint64_t off = pick.next() * block_size;
        const auto t0 = clock::now();
        std::error_code ec;
        std::size_t n = ring->write_at_linked_fsync(fd, {buf.p, block_size}, off, ec);
        if (ec) fail("blocking_ring write_at_linked_fsync: " + ec.message());
        check_write(static_cast<long>(n), "blocking_ring write_at_linked_fsync");
        r.latencies_us.push_back(std::chrono::duration<double, std::micro>(clock::now() - t0).count());
        ++r.ops;
      }
      r.seconds = seconds_since(b.started());
      r.allocs = allocations() - a0;
      r.enters = static_cast<double>(ring->stats().enter_calls - e0);
      ::close(fd);
    }
    report(st, r);
  });
}

}  // namespace bench
