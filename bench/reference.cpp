// The reference implementations fsys is compared with, written here without
// fsys: a raw liburing loop that keeps N operations in flight (with and
// without SINGLE_ISSUER|DEFER_TASKRUN), pread/pwrite from caller threads, and
// the seed's owner-thread design.
#include "cases.hpp"
#include "common.hpp"

#include <liburing.h>
#include <unistd.h>

#include <condition_variable>
#include <cstring>
#include <latch>
#include <mutex>
#include <thread>

namespace bench {
namespace {

// ---- raw liburing -----------------------------------------------------------

/// Keeps `depth` operations in flight on one ring: reaps every CQE present
/// after each io_uring_submit_and_wait(1) and re-issues one operation per
/// completion, so a batch of completions costs one enter.
run_result raw_uring(op_kind kind, op_mode mode, unsigned depth, budget& b, bool defer_taskrun, bool latency) {
  const bool linked = kind == op_kind::write_linked_fsync;
  io_uring ring;
  io_uring_params p;
  std::memset(&p, 0, sizeof p);
  if (defer_taskrun) p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
  int r = io_uring_queue_init_params(depth * (linked ? 2 : 1), &ring, &p);
  if (r < 0) fail(std::string("io_uring_queue_init_params: ") + std::strerror(-r));

  const std::string& path = kind == op_kind::read ? path_for(mode)
                            : linked             ? files().sync_path
                                                 : write_path_for(mode);
  const std::uint64_t nblocks = linked ? sync_file_blocks : file_blocks;
  int fd = open_or_die(path, kind == op_kind::read ? open_flags(mode) : O_WRONLY);

  struct slot {
    block_buffer buf;
    std::uint64_t block = 0;
    int pending = 0;
    clock::time_point t0;
  };
  std::vector<slot> slots(depth);
  std::vector<block_picker> picks;
  for (unsigned i = 0; i < depth; ++i) picks.emplace_back(i + 1, nblocks);
  run_result res;
  if (latency) res.latencies_us.reserve(1 << 16);
  std::uint64_t enters = 0, done = 0;

  auto issue = [&](unsigned i) {
    if (!b.take()) return false;
    slot& s = slots[i];
    s.block = picks[i].next();
    if (latency) s.t0 = clock::now();
    const off_t off = static_cast<off_t>(s.block * block_size);
    io_uring_sqe* sqe = io_uring_get_sqe(&ring);  // never null: at most depth ops (2*depth SQEs) in flight
    // Sound: the slot's buffer and `fd` stay alive until the loop below has
    // reaped this operation's CQE(s); the loop exits only with nothing pending.
    if (kind == op_kind::read) {
      io_uring_prep_read(sqe, fd, s.buf.p, block_size, static_cast<__u64>(off));
    } else {
      io_uring_prep_write(sqe, fd, s.buf.p, block_size, static_cast<__u64>(off));
    }
    io_uring_sqe_set_data64(sqe, i * 2);
    s.pending = 1;
    if (linked) {
      sqe->flags |= IOSQE_IO_LINK;
      io_uring_sqe* f = io_uring_get_sqe(&ring);
      io_uring_prep_fsync(f, fd, IORING_FSYNC_DATASYNC);
      io_uring_sqe_set_data64(f, i * 2 + 1);
      s.pending = 2;
    }
    return true;
  };

  b.start();
  const std::uint64_t a0 = allocations();
  unsigned inflight = 0;
  for (unsigned i = 0; i < depth; ++i) inflight += issue(i) ? 1 : 0;
  while (inflight > 0) {
    r = io_uring_submit_and_wait(&ring, 1);
    ++enters;
    if (r < 0 && r != -EINTR) fail(std::string("io_uring_submit_and_wait: ") + std::strerror(-r));
    io_uring_cqe* cqe;
    unsigned head, seen = 0;
    unsigned reissue[512];
    unsigned nre = 0;
    io_uring_for_each_cqe(&ring, head, cqe) {
      ++seen;
      const std::uint64_t ud = io_uring_cqe_get_data64(cqe);
      const unsigned i = static_cast<unsigned>(ud / 2);
      slot& s = slots[i];
      if (ud % 2 == 0) {
        if (kind == op_kind::read)
          check_read(s.buf.p, cqe->res, s.block, "raw liburing read");
        else
          check_write(cqe->res, "raw liburing write");
      } else if (cqe->res != 0) {
        fail(std::string("raw liburing linked fsync: ") + std::strerror(-cqe->res));
      }
      if (--s.pending == 0) {
        ++done;
        if (latency)
          res.latencies_us.push_back(std::chrono::duration<double, std::micro>(clock::now() - s.t0).count());
        reissue[nre++] = i;
      }
    }
    io_uring_cq_advance(&ring, seen);
    for (unsigned k = 0; k < nre; ++k)
      if (!issue(reissue[k])) --inflight;
  }
  res.seconds = seconds_since(b.started());
  res.allocs = allocations() - a0;
  res.ops = done;
  res.enters = static_cast<double>(enters);
  io_uring_queue_exit(&ring);
  ::close(fd);
  return res;
}

// ---- plain pread/pwrite from caller threads ----------------------------------

run_result psync_threads(op_kind kind, op_mode mode, unsigned threads, budget& b, bool latency) {
  const bool durable = kind == op_kind::write_linked_fsync || kind == op_kind::write_then_fdatasync;
  const std::string& path = durable ? files().sync_path : kind == op_kind::read ? path_for(mode) : write_path_for(mode);
  const std::uint64_t nblocks = durable ? sync_file_blocks : file_blocks;
  int fd = open_or_die(path, kind == op_kind::read ? open_flags(mode) : O_WRONLY);
  std::latch go(1);
  std::vector<std::vector<double>> lat(threads);
  std::vector<std::uint64_t> counts(threads, 0);
  std::vector<std::thread> pool;
  for (unsigned t = 0; t < threads; ++t) {
    if (latency) lat[t].reserve(1 << 16);
    pool.emplace_back([&, t] {
      block_buffer buf;
      block_picker pick(t + 1, nblocks);
      go.wait();
      while (b.take()) {
        const std::uint64_t blk = pick.next();
        const off_t off = static_cast<off_t>(blk * block_size);
        const auto t0 = clock::now();
        if (kind == op_kind::read) {
          check_read(buf.p, ::pread(fd, buf.p, block_size, off), blk, "pread");
        } else {
          check_write(::pwrite(fd, buf.p, block_size, off), "pwrite");
          if (durable && ::fdatasync(fd) != 0) fail(std::string("fdatasync: ") + std::strerror(errno));
        }
        if (latency) lat[t].push_back(std::chrono::duration<double, std::micro>(clock::now() - t0).count());
        ++counts[t];
      }
    });
  }
  b.start();
  const std::uint64_t a0 = allocations();
  go.count_down();
  for (auto& th : pool) th.join();
  run_result res;
  res.seconds = seconds_since(b.started());
  res.allocs = allocations() - a0;
  for (unsigned t = 0; t < threads; ++t) {
    res.ops += counts[t];
    res.latencies_us.insert(res.latencies_us.end(), lat[t].begin(), lat[t].end());
  }
  ::close(fd);
  return res;
}

// ---- the seed's design: an owner thread serving a channel -------------------

/// One thread owns the ring. Callers put a request into a mutex+condvar
/// queue and wait on the request's own condvar; the owner takes one request
/// at a time, submits one SQE, waits for it with io_uring_submit_and_wait(1)
/// and replies.
class seed_ring {
 public:
  struct request {
    op_kind kind = op_kind::read;
    int fd = -1;
    std::byte* buf = nullptr;
    std::uint64_t offset = 0;
    int result = 0;
    bool done = false;
    std::mutex m;
    std::condition_variable cv;
    request* next = nullptr;
  };

  seed_ring() {
    int r = io_uring_queue_init(64, &ring_, 0);
    if (r < 0) fail(std::string("seed io_uring_queue_init: ") + std::strerror(-r));
    owner_ = std::thread([this] { serve(); });
  }
  ~seed_ring() {
    {
      std::lock_guard l(m_);
      stop_ = true;
    }
    cv_.notify_one();
    owner_.join();
    io_uring_queue_exit(&ring_);
  }

  int call(op_kind kind, int fd, std::byte* buf, std::uint64_t off) {
    request rq;
    rq.kind = kind;
    rq.fd = fd;
    rq.buf = buf;
    rq.offset = off;
    {
      std::lock_guard l(m_);
      if (tail_) tail_->next = &rq; else head_ = &rq;
      tail_ = &rq;
    }
    cv_.notify_one();
    std::unique_lock l(rq.m);
    rq.cv.wait(l, [&] { return rq.done; });
    return rq.result;
  }

  std::uint64_t enters() const { return enters_.load(); }

 private:
  void serve() {
    for (;;) {
      request* rq;
      {
        std::unique_lock l(m_);
        cv_.wait(l, [&] { return stop_ || head_; });
        if (!head_) return;
        rq = head_;
        head_ = rq->next;
        if (!head_) tail_ = nullptr;
      }
      io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
      // Sound: the caller blocks in call() until we reply, so its buffer and
      // fd outlive the operation.
      if (rq->kind == op_kind::read)
        io_uring_prep_read(sqe, rq->fd, rq->buf, block_size, rq->offset);
      else
        io_uring_prep_write(sqe, rq->fd, rq->buf, block_size, rq->offset);
      int r = io_uring_submit_and_wait(&ring_, 1);
      enters_.fetch_add(1, std::memory_order_relaxed);
      if (r < 0) fail(std::string("seed submit_and_wait: ") + std::strerror(-r));
      io_uring_cqe* cqe;
      r = io_uring_peek_cqe(&ring_, &cqe);
      if (r < 0) fail("seed: no CQE after submit_and_wait(1)");
      int res = cqe->res;
      io_uring_cqe_seen(&ring_, cqe);
      {
        std::lock_guard l(rq->m);
        rq->result = res;
        rq->done = true;
      }
      rq->cv.notify_one();
    }
  }

  io_uring ring_;
  std::mutex m_;
  std::condition_variable cv_;
  request* head_ = nullptr;
  request* tail_ = nullptr;
  bool stop_ = false;
  std::atomic<std::uint64_t> enters_{0};
  std::thread owner_;
};

}  // namespace

run_result run_threads(op_kind kind, op_mode mode, unsigned threads, budget& b,
                       const std::function<long(int fd, std::byte* buf, std::uint64_t off)>& call,
                       const char* who) {
  const std::string& path = kind == op_kind::read ? path_for(mode) : files().write_path;
  int fd = open_or_die(path, kind == op_kind::read ? open_flags(mode) : O_WRONLY);
  std::latch go(1);
  std::vector<std::uint64_t> counts(threads, 0);
  std::vector<std::thread> pool;
  for (unsigned t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      block_buffer buf;
      block_picker pick(t + 1);
      go.wait();
      while (b.take()) {
        const std::uint64_t blk = pick.next();
        const long r = call(fd, buf.p, blk * block_size);
        if (kind == op_kind::read)
          check_read(buf.p, r, blk, who);
        else
          check_write(r, who);
        ++counts[t];
      }
    });
  }
  b.start();
  const std::uint64_t a0 = allocations();
  go.count_down();
  for (auto& th : pool) th.join();
  run_result res;
  res.seconds = seconds_since(b.started());
  res.allocs = allocations() - a0;
  for (auto c : counts) res.ops += c;
  ::close(fd);
  return res;
}

void register_reference_benchmarks() {
  for (const workload& w : workloads()) {
    const op_kind kind = is_write(w.mode) ? op_kind::write : op_kind::read;
    for (bool dt : {false, true}) {
      add(std::string(w.name) + (dt ? "/raw_uring_dt" : "/raw_uring"), [w, kind, dt](benchmark::State& st) {
        run_result r;
        for (auto _ : st) {
          budget b(w.ops, max_case_seconds);
          r = raw_uring(kind, w.mode, w.depth, b, dt, false);
        }
        report(st, r);
      });
    }
    const char* sys = kind == op_kind::read ? "pread" : "pwrite";
    add(std::string(w.name) + "/" + sys + "_" + std::to_string(w.depth) + "t", [w, kind](benchmark::State& st) {
      run_result r;
      for (auto _ : st) {
        budget b(w.ops, max_case_seconds);
        r = psync_threads(kind, w.mode, w.depth, b, false);
      }
      report(st, r);
    });
  }

  // Durable 4 KiB writes: latency at depth 1, and throughput with 32 writers.
  for (bool dt : {false, true}) {
    add(std::string("durable_latency_d1/") + (dt ? "raw_uring_linked_dt" : "raw_uring_linked"),
        [dt](benchmark::State& st) {
          run_result r;
          for (auto _ : st) {
            budget b(latency_ops, 2.0);
            r = raw_uring(op_kind::write_linked_fsync, op_mode::write_buffered, 1, b, dt, true);
          }
          report(st, r);
        });
  }
  add("durable_latency_d1/pwrite_fdatasync", [](benchmark::State& st) {
    run_result r;
    for (auto _ : st) {
      budget b(latency_ops, 2.0);
      r = psync_threads(op_kind::write_then_fdatasync, op_mode::write_buffered, 1, b, true);
    }
    report(st, r);
  });
  add("durable_32writers/raw_uring_linked", [](benchmark::State& st) {
    run_result r;
    for (auto _ : st) {
      budget b(durable_ops, 1.0);
      r = raw_uring(op_kind::write_linked_fsync, op_mode::write_buffered, durable_writers, b, false, false);
    }
    report(st, r);
  });
  add("durable_32writers/pwrite_fdatasync_32t", [](benchmark::State& st) {
    run_result r;
    for (auto _ : st) {
      budget b(durable_ops, 1.0);
      r = psync_threads(op_kind::write_then_fdatasync, op_mode::write_buffered, durable_writers, b, false);
    }
    report(st, r);
  });

  // Blocking callers (issue 3): 1, 4, 16 threads, the seed's design and plain pread/pwrite.
  for (op_kind kind : {op_kind::read, op_kind::write}) {
    for (unsigned threads : blocking_threads) {
      const std::string base = blocking_case_name(kind, threads);
      add(base + "/seed_owner_thread", [kind, threads](benchmark::State& st) {
        run_result r;
        for (auto _ : st) {
          seed_ring seed;
          budget b(blocking_ops, max_case_seconds);
          const std::uint64_t e0 = seed.enters();
          r = run_threads(kind, op_mode::read_cache, threads, b,
                          [&](int fd, std::byte* buf, std::uint64_t off) -> long {
                            return seed.call(kind, fd, buf, off);
                          },
                          "seed owner thread");
          r.enters = static_cast<double>(seed.enters() - e0);
        }
        report(st, r);
      });
      add(base + (kind == op_kind::read ? "/pread" : "/pwrite"), [kind, threads](benchmark::State& st) {
        run_result r;
        for (auto _ : st) {
          budget b(blocking_ops, max_case_seconds);
          r = psync_threads(kind, op_mode::read_cache, threads, b, false);
        }
        report(st, r);
      });
    }
  }
}

}  // namespace bench
