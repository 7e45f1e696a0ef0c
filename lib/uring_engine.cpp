// The io_uring engine: one ring per io_context, watched through an eventfd.
//
// Threading. Every access to the ring (SQ, CQ, enter) happens under `mutex_`.
// Handlers are never invoked under the lock: reaped operations are collected
// in a local queue and completed after unlocking. So the engine is correct
// when several threads run the io_context, and when blocking callers submit
// from their own threads (`start_now`).
//
// Capacity. Each SQE yields exactly one CQE, and the engine never has more
// SQEs in the kernel than the CQ has entries (`in_kernel_ <= cq_capacity_`),
// so the CQ cannot overflow. Operations go through two lanes, each allowed
// `queue_depth` SQEs in the kernel: one for files and block devices, one for
// descriptors without a position (pipes, sockets), whose reads may wait
// forever and must never take the capacity file IO needs. The other half of
// the CQ is kept for ASYNC_CANCEL requests, which need at most one SQE per
// operation SQE. Operations beyond a lane's capacity wait in its queue.
//
// Submitters. io_uring ties a request to the thread that submitted it and
// tears it down when that thread exits. Threads running the io_context
// submit for every operation of their batch; a thread that exits with
// requests in flight makes the kernel cancel them, and the engine submits
// them again (op_base::retry_unrequested). Blocking callers (`start_now`)
// submit only their own operation, from their own thread, which waits for it.
//
// Wake-ups. An eventfd registered with the ring is read by an Asio
// stream_descriptor (`async_read_some`, which drains the counter). It is armed
// only while SQEs are in the kernel, so an idle ring does not keep
// `io_context::run()` from returning; each armed read is satisfied by the next
// completion, because every CQE signals the eventfd (after reaping, with
// DEFER_TASKRUN, see `get_events`).
#include <fsys/detail/engine.hpp>
#include <fsys/detail/file_handle.hpp>
#include <fsys/detail/fs_args.hpp>
#include <fsys/detail/nowait.hpp>
#include <fsys/error.hpp>
#include <fsys/features.hpp>

#include <boost/asio/buffer.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>

#include "hot_tls.hpp"
#include "context_executor.hpp"
#include "kernel_statx.hpp"
#include "ring_mapping.hpp"

#include <liburing.h>
#include <sys/eventfd.h>
#include <pthread.h>
#include <csignal>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <thread>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string_view>

namespace fsys::detail {
namespace {

// user_data tags: the low bits of an op pointer (ops are at least 8-aligned).
constexpr std::uint64_t tag_main = 0;
constexpr std::uint64_t tag_linked_fsync = 1;
constexpr std::uint64_t tag_mask = 7;
// CQEs of our own ASYNC_CANCEL requests carry 0 and are only counted.
constexpr std::uint64_t internal_user_data = 0;

std::uint64_t user_data(op_base* op, std::uint64_t tag) {
  return reinterpret_cast<std::uintptr_t>(op) | tag;
}

constexpr std::uint32_t kind_bit(op_kind k) { return 1u << static_cast<unsigned>(k); }

// IORING_OP_FTRUNCATE (kernel 6.9) is newer than liburing 2.3's headers.
constexpr unsigned op_ftruncate = 55;

// The file-system kinds the ring can run, from the opcode probe, minus those
// named in FSYS_TEST_DISABLE_OPS (a comma-separated list of kind names, or
// "all"), which tests use to force the psync path.
std::uint32_t ring_fs_kinds() {
  const ring_features& f = probe_features();
  std::uint32_t m = 0;
  auto add = [&m](bool on, op_kind k) {
    if (on) m |= kind_bit(k);
  };
  add(f.op_openat && f.op_openat2, op_kind::open);
  add(f.op_close, op_kind::close);
  add(f.op_statx, op_kind::statx);
  add(f.op_fallocate, op_kind::fallocate);
  add(f.op_ftruncate, op_kind::ftruncate);
  add(f.op_renameat, op_kind::rename);
  add(f.op_unlinkat, op_kind::unlink);
  add(f.op_mkdirat, op_kind::mkdir);
  add(f.op_symlinkat, op_kind::symlink);
  add(f.op_linkat, op_kind::link);
  add(f.op_sync_file_range, op_kind::sync_file_range);
  add(f.op_fadvise, op_kind::fadvise);
  // op_kind::getdents has no opcode: never in the mask, always the helper.
  add(f.op_getxattr && f.op_fgetxattr, op_kind::getxattr);
  add(f.op_setxattr && f.op_fsetxattr, op_kind::setxattr);
  if (const char* v = std::getenv("FSYS_TEST_DISABLE_OPS")) {
    static constexpr std::pair<std::string_view, op_kind> names[] = {
        {"open", op_kind::open},          {"close", op_kind::close},
        {"statx", op_kind::statx},        {"fallocate", op_kind::fallocate},
        {"ftruncate", op_kind::ftruncate}, {"rename", op_kind::rename},
        {"unlink", op_kind::unlink},      {"mkdir", op_kind::mkdir},
        {"symlink", op_kind::symlink},    {"link", op_kind::link},
        {"sync_file_range", op_kind::sync_file_range}, {"fadvise", op_kind::fadvise},
        {"getxattr", op_kind::getxattr},  {"setxattr", op_kind::setxattr}};
    std::string_view list(v);
    while (!list.empty()) {
      auto comma = list.find(',');
      std::string_view item = list.substr(0, comma);
      if (item == "all") m = 0;
      for (const auto& [name, k] : names)
        if (item == name) m &= ~kind_bit(k);
      list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
    }
  }
  return m;
}

class uring_engine final : public engine {
  // One class of operations with its own queue and kernel capacity.
  struct lane {
    op_queue queued;
    unsigned in_kernel = 0;  // SQEs of this lane's ops in the kernel
  };
  lane& lane_of(const op_base* op) noexcept { return op->stream_ ? streams_ : files_; }

 public:
  uring_engine(asio::execution_context& ctx, const ring_options& opts, const shard_params& shard, std::error_code& ec)
      : ctx_(ctx),
        opts_(opts),
        set_(shard.set),
        home_(shard.home),
        attach_wq_fd_(shard.attach_wq_fd),
        eventfd_(asio::any_io_executor(ctx_)),
        rescue_(asio::any_io_executor(ctx_)),
        generation_(fork_generation()) {
    const ring_features& f = probe_features();
    if (!f.available) {
      ec = f.setup_error;
      return;
    }
    // Only an explicit request builds a single-issuer ring: Asio's
    // concurrency hint 1 means "one thread at a time", not "always the same
    // thread", which such a ring demands.
    ring_fs_kinds_ = ring_fs_kinds();
    if (const char* v = std::getenv("FSYS_TEST_RING_REFUSES_STATX")) test_ring_refuses_statx_ = std::strcmp(v, "1") == 0;
    single_ = opts.issuer == issuer_mode::single_thread;
    batch_threshold_ = opts.inline_batch_threshold != 0 ? static_cast<int>(std::min(opts.inline_batch_threshold, 1u << 20))
                                                        : inline_batch_threshold();
    ec = setup_ring();
  }

  // Builds the ring and its eventfd. Used at construction and, in a forked
  // child, to replace the parent's ring.
  std::error_code setup_ring() {
    const ring_features& f = probe_features();
    io_uring_params p;
    std::memset(&p, 0, sizeof p);
    p.flags = IORING_SETUP_CQSIZE;
    p.cq_entries = opts_.queue_depth * 4;
    if (attach_wq_fd_ >= 0 && !forked()) {
      // A ring of a set shares the first ring's async worker pool (kernels
      // before 5.12; later ones keep io-wq per thread and ignore this).
      p.flags |= IORING_SETUP_ATTACH_WQ;
      p.wq_fd = static_cast<std::uint32_t>(attach_wq_fd_);
    }
    if (f.submit_all) p.flags |= IORING_SETUP_SUBMIT_ALL;
    defer_taskrun_ = false;
    if (opts_.sqpoll && f.sqpoll) {
      p.flags |= IORING_SETUP_SQPOLL;
      p.sq_thread_idle = opts_.sqpoll_idle_ms;
    } else if (single_ && f.defer_taskrun) {
      // The ring is bound to the thread that enables it: start disabled and
      // enable on the first submission, which runs on the io_context thread.
      p.flags |= IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_R_DISABLED;
      defer_taskrun_ = true;
    } else if (f.coop_taskrun) {
      p.flags |= IORING_SETUP_COOP_TASKRUN;
    }
    int r = ring_init(opts_.queue_depth, &ring_, &p);
    if (r < 0) return std::error_code(-r, std::system_category());
    ring_ok_ = true;
    flags_ = p.flags & ~IORING_SETUP_R_DISABLED;
    cq_capacity_ = p.cq_entries;
    op_capacity_ = cq_capacity_ / 4;
    needs_enable_ = p.flags & IORING_SETUP_R_DISABLED;
    if (opts_.iowq_max_workers_bounded != 0 || opts_.iowq_max_workers_unbounded != 0) {
      // Limits of the kernel's io-wq workers for this ring; 0 keeps that
      // kind's default. The kernel applies them to every thread's io-wq that
      // serves this ring, now and later. A refusal (older kernel) leaves the
      // defaults: the ring works the same, only with more workers allowed.
      unsigned limits[2] = {opts_.iowq_max_workers_bounded, opts_.iowq_max_workers_unbounded};
      (void)io_uring_register_iowq_max_workers(&ring_, limits);
    }

    int efd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (efd < 0) return std::error_code(errno, std::system_category());
    r = io_uring_register_eventfd(&ring_, efd);
    if (r < 0) {
      ::close(efd);
      return std::error_code(-r, std::system_category());
    }
    boost::system::error_code bec;
    eventfd_.assign(efd, bec);
    if (bec) {
      ::close(efd);
      return bec;
    }
    return {};
  }

  void notify_fork_child() override {
    if (engine* h = helper_if_any()) h->notify_fork_child();
    op_queue done;
    {
      std::lock_guard lock(mutex_);
      if (!ring_ok_ || shut_down_) return;
      // The parent's ring and eventfd are shared kernel objects: unmap and
      // close this process's references without unregistering or cancelling
      // anything (that would act on the parent's ring).
      boost::system::error_code ignored;
      eventfd_.close(ignored);
      ring_exit(&ring_);
      ring_ok_ = false;
      armed_ = false;
      // Operations that were in the parent's ring will never complete here;
      // the kernel does not write into this process's copy of their buffers.
      while (op_base* op = kernel_ops_) {
        unlink_kernel(op);
        op->ec_ = make_error_code(errc::forked_process);
        retire(op, done);
      }
      cancels_.clear();
      in_kernel_ = 0;
      files_.in_kernel = streams_.in_kernel = 0;
      single_issuer_bound_ = false;
      generation_ = fork_generation();
      attach_wq_fd_ = -1;  // the parent's ring: never attach to it
      if (std::error_code ec = setup_ring()) {
        // No new ring: fail what is queued; later operations fail the same way.
        fail_all(done, -(ec.category() == std::system_category() ? ec.value() : ENOMEM));
      }
      finished_.splice(done);
      if (!finished_.empty() || !files_.queued.empty() || !streams_.queued.empty()) {
        flush_scheduled_ = true;
        ctx_.execute([this] { flush(); });
      }
    }
  }

  ~uring_engine() override {
    shutdown();
    boost::system::error_code ignored;
    eventfd_.close(ignored);
    if (ring_ok_) ring_exit(&ring_);
  }

  bool usable() const noexcept { return ring_ok_ && eventfd_.is_open(); }

  void start(op_base* op) override {
    ops_started_.fetch_add(1, std::memory_order_relaxed);
    bool post_flush = false;
    {
      std::unique_lock lock(mutex_);
      if (shut_down_) {
        // Started while the io_context shuts down: like Asio, destroy the
        // handler without invoking it.
        lock.unlock();
        op->complete_(op, false);
        return;
      }
      if (is_fs_kind(op->kind_) && !op->ec_ && !ring_runs(op)) {
        to_helper(op);  // an opcode this ring lacks or refused
        return;
      }
      list_op(op);
      count_chain(op);
      lane_of(op).queued.push_back(op);
      // finish() submits ops its handlers start right after them, in one
      // batch. A flush is posted all the same whenever none is scheduled: a
      // handler that waits for its new op (a future, a nested run_one) is
      // then served by another pass or thread; the flush finds the batch
      // already submitted and does nothing.
      if (finishing_ == this) {
        batch_pending_ = true;
        batch_taker_ = std::this_thread::get_id();
      } else if (finishing_ && set_ && finishing_->set_ == set_) {
        // Started by a handler that another ring of the set is completing on
        // this thread: that finish() submits this ring's batch too.
        batch_pending_ = true;
        batch_taker_ = std::this_thread::get_id();
        also_pump_ = this;
      }
      if (!flush_scheduled_) flush_scheduled_ = post_flush = true;
    }
    if (post_flush) schedule_flush();
  }

  bool start_now(op_base* op) override {
    if (defer_taskrun_) return false;
    ops_started_.fetch_add(1, std::memory_order_relaxed);
    op_queue done;
    {
      std::unique_lock lock(mutex_);
      if (shut_down_) {
        lock.unlock();
        op->abort();
        op->complete_(op, true);
        return true;
      }
      list_op(op);
      count_chain(op);
      submit_own(op, done);
    }
    finish(done);
    return true;
  }

  // start_now under the lock: submits `op` alone from the calling thread
  // (which blocks until the op is done, so it outlives the request), and
  // reaps what is ready. Other operations' SQEs are never submitted here: a
  // caller that returned could exit, and the kernel would tear down the
  // requests it submitted. What is left for them goes to a posted flush on
  // the io_context's thread.
  void submit_own(op_base* op, op_queue& done) {
    done.splice(finished_);
    lane& l = lane_of(op);
    const unsigned need = op->sqes_per_round();
    if (!usable_here() || !l.queued.empty() || l.in_kernel + need > op_capacity_ ||
        io_uring_sq_space_left(&ring_) < need || op->ec_ || op->is_empty_transfer()) {
      l.queued.push_back(op);
      if (!usable_here()) {
        pump(done);
        return;
      }
    } else {
      prepare(op);
      l.in_kernel += need;
      in_kernel_ += need;
      submit();
      reap(done);
    }
    done.splice(finished_);
    if (!files_.queued.empty() || !streams_.queued.empty() || !cancels_.empty()) {
      if (!flush_scheduled_) {
        flush_scheduled_ = true;
        ctx_.execute([this] { flush(); });
      }
    }
    if (in_kernel_ > 0 && !armed_) arm();
  }

  bool cancel(cancel_link& link, unsigned type) override {
    bool post_flush = false;
    {
      std::lock_guard lock(mutex_);
      if (link.owner_.load(std::memory_order_relaxed) != this) return false;
      op_base* op = link.op_.load(std::memory_order_relaxed);  // null once the op's result is final
      if (!op || shut_down_ || op->state_ == op_state::finished || op->cancel_requested_) return true;
      if (!cancel_applies(op, type)) return true;
      op->cancel_requested_ = true;
      // A queued op is completed with operation_aborted at the next pump; an
      // op in the kernel gets an ASYNC_CANCEL SQE there.
      if (op->state_ == op_state::in_kernel && !op->cancel_queued_) cancels_.push_back(op);
      if (!flush_scheduled_) flush_scheduled_ = post_flush = true;
    }
    if (post_flush) schedule_flush();
    return true;
  }

  void cancel_file(file_handle* file) override {
    bool post_flush = false;
    engine* helper = nullptr;
    {
      std::lock_guard lock(mutex_);
      if (shut_down_) return;
      helper = helper_.get();
      auto request = [&](op_base* op) {
        if (op->state_ == op_state::finished || op->cancel_requested_) return;
        op->cancel_requested_ = true;
        if (op->state_ == op_state::in_kernel && !op->cancel_queued_) cancels_.push_back(op);
        post_flush = true;
      };
      if (home_) {
        for (op_base* op = file->ops_; op; op = op->file_next_) request(op);
      } else {
        // Not on the file's list (see list_op): look through this ring's
        // queued and in-kernel ops; a close is rare, the ring holds few.
        for (lane* l : {&files_, &streams_})
          for (op_base* op = l->queued.front(); op; op = op->next_)
            if (op->file_ == file) request(op);
        for (op_base* op = kernel_ops_; op; op = op->kernel_next_)
          if (op->file_ == file) request(op);
      }
      if (post_flush && !flush_scheduled_)
        flush_scheduled_ = true;
      else
        post_flush = false;
    }
    if (post_flush) schedule_flush();
    // The file's ops this engine handed to its psync helper (kinds the ring
    // lacks, such as getdents): the helper cancels those still queued.
    if (helper) helper->cancel_file(file);
  }

  void shutdown() override {
    engine* h = nullptr;
    {
      std::lock_guard lock(mutex_);
      helper_closed_ = true;  // from now on to_helper() refuses
      h = helper_.get();
    }
    if (h) h->shutdown();
    std::unique_lock lock(mutex_);
    if (shut_down_) return;
    shut_down_ = true;
    rescue_.cancel();
    if (!ring_ok_) return;
    op_queue done;
    if (forked()) {
      // In a child the kernel requests belong to the parent: nothing of
      // ours is in use by the kernel. Do not cancel the parent's requests.
      while (op_base* op = kernel_ops_) {
        unlink_kernel(op);
        done.push_back(op);
      }
      in_kernel_ = 0;
    }
    if (in_kernel_ > 0 && !needs_enable_) {
      // Cancel everything in the kernel and wait until every CQE is back: only
      // then is no buffer in use, and only then may handlers (which may own
      // the buffers, e.g. coroutine frames) be destroyed. The cancellation is
      // ours: nothing comes back for another round.
      for (op_base* op = kernel_ops_; op; op = op->kernel_next_) op->cancel_requested_ = true;
      if (io_uring_sqe* sqe = io_uring_get_sqe(&ring_)) {
        io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY);
        io_uring_sqe_set_data64(sqe, internal_user_data);
        ++in_kernel_;
      }
      while (in_kernel_ > 0) {
        int r = io_uring_submit_and_wait(&ring_, 1);
        if (r == -EINTR || r == -EAGAIN || r == -EBUSY) continue;
        if (r < 0) {
          // Only a single-issuer ring destroyed from a thread other than its
          // submitter gets here (-EEXIST). The kernel may still own buffers:
          // leak the operations rather than free memory it could write to.
          leaked_.splice(files_.queued);
          leaked_.splice(streams_.queued);
          return;
        }
        reap(done);
      }
    }
    while (op_base* op = kernel_ops_) {
      // Left only when draining was impossible (see above): leaked on purpose.
      unlink_kernel(op);
    }
    done.splice(files_.queued);
    done.splice(streams_.queued);
    done.splice(finished_);
    for (op_base* op = done.front(); op; op = op->next_) unlink_from_file(op);
    take_held(done);
    lock.unlock();
    while (op_base* op = done.pop()) op->complete_(op, false);
  }

  // Registration quiesces the ring in the kernel; holding the lock keeps
  // our own submissions out meanwhile. On a single-issuer ring only the
  // ring's thread may register (the kernel answers -EEXIST otherwise).
  std::error_code register_buffers(const iovec* iov, unsigned n) override {
    std::lock_guard lock(mutex_);
    if (!ring_ok_ || forked()) return make_error_code(errc::forked_process);
    int r = io_uring_register_buffers(&ring_, iov, n);
    return r < 0 ? std::error_code(-r, std::system_category()) : std::error_code{};
  }

  std::error_code unregister_buffers() override {
    std::lock_guard lock(mutex_);
    if (!ring_ok_ || forked()) return make_error_code(errc::forked_process);
    int r = io_uring_unregister_buffers(&ring_);
    return r < 0 ? std::error_code(-r, std::system_category()) : std::error_code{};
  }

  std::error_code iowq_max_workers(std::uint32_t* values) override {
    std::lock_guard lock(mutex_);
    if (!ring_ok_ || forked()) return make_error_code(errc::forked_process);
    // Zeros change nothing and return the calling thread's current limits.
    unsigned v[2] = {0, 0};
    int r = io_uring_register_iowq_max_workers(&ring_, v);
    if (r < 0) return std::error_code(-r, std::system_category());
    values[0] = v[0];
    values[1] = v[1];
    return {};
  }

  fsys::backend kind() const noexcept override { return backend::io_uring; }
  std::uint32_t setup_flags() const noexcept override { return flags_; }

  engine_stats stats() const noexcept override {
    engine_stats s;
    s.ops_started = ops_started_.load(std::memory_order_relaxed);
    s.enter_calls = enter_calls_.load(std::memory_order_relaxed);
    s.sqes_submitted = sqes_submitted_.load(std::memory_order_relaxed);
    s.cqes_reaped = cqes_reaped_.load(std::memory_order_relaxed);
    s.ops_completed = ops_completed_.load(std::memory_order_relaxed);
    s.reactor_wakeups = wakeups_.load(std::memory_order_relaxed);
    s.queued_waits = queued_waits_.load(std::memory_order_relaxed);
    s.fs_ops_on_helper = helper_ops_.load(std::memory_order_relaxed);
    s.chains_moved = moved_.load(std::memory_order_relaxed);
    s.rings = 1;
    // Ops handed to the helper were counted in ops_started here; the helper
    // completes them (and counts them) itself.
    if (const engine* h = helper_view_.load(std::memory_order_acquire)) s.ops_completed += h->stats().ops_completed;
    return s;
  }

 private:
  // Ops in the kernel waiting for an ASYNC_CANCEL SQE, in an intrusive
  // list: an op that finishes before its cancel is sent leaves the list in
  // retire(), so the list never holds an op that may be freed.
  class cancel_queue {
   public:
    bool empty() const noexcept { return head_ == nullptr; }
    op_base* front() const noexcept { return head_; }
    void push_back(op_base* op) noexcept {
      op->cancel_queued_ = true;
      op->cancel_next_ = nullptr;
      op->cancel_prev_ = tail_;
      if (tail_)
        tail_->cancel_next_ = op;
      else
        head_ = op;
      tail_ = op;
    }
    void remove(op_base* op) noexcept {
      if (!op->cancel_queued_) return;
      op->cancel_queued_ = false;
      (op->cancel_prev_ ? op->cancel_prev_->cancel_next_ : head_) = op->cancel_next_;
      (op->cancel_next_ ? op->cancel_next_->cancel_prev_ : tail_) = op->cancel_prev_;
      op->cancel_next_ = op->cancel_prev_ = nullptr;
    }
    void clear() noexcept {
      while (head_) remove(head_);
    }

   private:
    op_base* head_ = nullptr;
    op_base* tail_ = nullptr;
  };

  void schedule_flush() {
    ctx_.execute([this] { flush(); });
  }

  // One batch: runs on the io_context.
  void flush() {
    if (set_) set_->note_runner();
    op_queue done;
    {
      std::lock_guard lock(mutex_);
      flush_scheduled_ = false;
      if (shut_down_) return;
      if (batch_pending_ && batch_taker_ != std::this_thread::get_id()) {
        // Another thread is running handlers that started these ops, and
        // submits them in one batch when they return (finish()). Pumping now
        // would split its batch and hold this ring's lock against its
        // starts. In case one of those handlers blocks until its op is done
        // (a future), a rescue flush submits the batch anyway, soon.
        arm_rescue();
        return;
      }
      batch_pending_ = false;
      pump(done);
    }
    finish(done);
  }

  // Lock held. The rescue for a batch its thread never submits (see flush).
  void arm_rescue() {
    if (rescue_armed_) return;
    rescue_armed_ = true;
    rescue_.expires_after(rescue_delay);
    rescue_.async_wait([this](const boost::system::error_code& ec) {
      if (ec == asio::error::operation_aborted) return;  // shutdown: `this` may be gone
      if (set_) set_->note_runner();
      op_queue done;
      {
        std::lock_guard lock(mutex_);
        rescue_armed_ = false;
        if (shut_down_ || !batch_pending_) return;
        batch_pending_ = false;
        pump(done);
      }
      finish(done);
    });
  }

  void on_wakeup(const boost::system::error_code& ec) {
    if (ec == asio::error::operation_aborted) return;
    wakeups_.fetch_add(1, std::memory_order_relaxed);
    if (set_) set_->note_runner();
    op_queue done;
    {
      std::lock_guard lock(mutex_);
      armed_ = false;
      if (shut_down_) return;
      pump(done);
    }
    finish(done);
  }

  // Completes reaped ops outside the lock. If a handler throws, the rest are
  // completed by a later flush.
  //
  // Operations that these handlers start (a coroutine resumed here usually
  // starts its next one at once) are not posted for a later flush: `start`
  // sees `finishing_` and only queues them, and they are submitted here after
  // the handlers, in one batch. After `max_inline_passes` such passes the
  // rest goes through a posted flush, so a stream of operations that all
  // complete inline cannot starve the io_context's other handlers.
  void finish(op_queue& done) {
    if (done.empty()) return;
    uring_engine* const outer = finishing_;
    uring_engine* const outer_also = also_pump_;
    finishing_ = this;
    also_pump_ = nullptr;
    bool post_flush = false;
    try {
      for (int pass = 0;; ++pass) {
        if (set_) share_chains(done);
        // Each op leaves its ring's chain count just before its handler runs
        // (which usually starts the chain's next op at once). Ops left by a
        // throwing handler stay in `done` for the catch below.
        complete_all(done, [](op_queue&) {}, uncount_chain);
        // The handlers may have started ops on this ring and on the calling
        // thread's own ring of the same set (see `start`): submit both.
        const bool last = pass == max_inline_passes;
        bool more = take_batch(done, last, post_flush);
        if (uring_engine* other = std::exchange(also_pump_, nullptr); other && other != this) {
          bool other_post = false;
          more = other->take_batch(done, last, other_post) || more;
          if (other_post) other->schedule_flush();
        }
        if (!more) break;
      }
    } catch (...) {
      // A handler threw (Asio lets that propagate out of run()): the ops not
      // yet completed, and the ones started meanwhile, go to a posted flush
      // (an op of another ring that is already reaped completes the same way
      // from here: only its handler is left to run).
      {
        std::lock_guard lock(mutex_);
        finished_.splice(done);
        batch_pending_ = false;
        if (!flush_scheduled_) flush_scheduled_ = post_flush = true;
      }
      finishing_ = outer;
      also_pump_ = outer_also;
      if (post_flush) schedule_flush();
      throw;
    }
    finishing_ = outer;
    also_pump_ = outer_also;
    if (post_flush) schedule_flush();
  }

  // Chain accounting (ring_set only; see ring_chains).
  // Also what batch_forming() reads, so counted on a ring alone too.
  void count_chain(op_base* op) noexcept {
    if (!runs_on_any_ring(op)) return;
    op->chain_ring_ = this;
    chains_.fetch_add(1, std::memory_order_relaxed);
  }
  static void uncount_chain(op_base* op) noexcept {
    if (auto* r = static_cast<uring_engine*>(std::exchange(op->chain_ring_, nullptr)))
      r->chains_.fetch_sub(1, std::memory_order_relaxed);
  }

  // Before a finish() pass completes `done`: when the set says another ring
  // should carry some of this ring's chains (an io_context run by more
  // threads than rings carrying work), that many of the reaped ops are
  // completed by that ring's next pass instead, and the ops their handlers
  // start stay there (see ring_set::pick). Only ops counted on this ring
  // move; the rest of `done` stays in order.
  void share_chains(op_queue& done) {
    int n = 0;
    engine* to = set_->share_target(*this, n);
    if (!to || n <= 0) return;
    op_queue keep, move;
    int moved = 0;
    while (op_base* op = done.pop()) {
      if (moved < n && op->chain_ring_ == this) {
        move.push_back(op);
        ++moved;
      } else {
        keep.push_back(op);
      }
    }
    if (moved > 0 && !ring_adopt(*this, *to, move, moved)) keep.splice(move);
    done.splice(keep);
  }

 public:
  int chains() const noexcept { return chains_.load(std::memory_order_relaxed); }

  // A batch is forming when at least `batch_threshold` reads and writes of
  // this ring have not had their handlers run: in a steady stream each of
  // them usually starts the next one, so a read started now is submitted
  // with theirs (see finish()). Below that (depth 1 or 2), the inline
  // attempt, one preadv2 and no hand-off, is cheaper than a ring round trip.
  bool batch_forming() noexcept override { return chains() >= batch_threshold_; }
  std::atomic<int>* pending_counter() noexcept override { return &chains_; }

  // Takes `ops` from another ring of the set (see share_chains). Why this is
  // sound: every op here was reaped by `from` (its result is final, all its
  // CQEs are back, its cancellation link is detached), so the kernel holds
  // none of its buffers and no cancel request can reach it; only its handler
  // is left to run, on whichever thread pumps this ring next (or, at
  // shutdown, to be destroyed with this ring's finished ops).
  bool adopt(uring_engine& from, op_queue& ops, int n) {
    bool post_flush = false;
    {
      std::lock_guard lock(mutex_);
      if (shut_down_) return false;
      for (op_base* op = ops.front(); op; op = op->next_) op->chain_ring_ = this;
      from.chains_.fetch_sub(n, std::memory_order_relaxed);
      chains_.fetch_add(n, std::memory_order_relaxed);
      moved_.fetch_add(static_cast<std::uint64_t>(n), std::memory_order_relaxed);
      // The next pump hands them to finish() (pump splices finished_ first).
      finished_.splice(ops);
      if (!flush_scheduled_) flush_scheduled_ = post_flush = true;
    }
    if (post_flush) schedule_flush();
    return true;
  }

  static engine* finishing_of(const ring_group* set) noexcept {
    return finishing_ && finishing_->set_ == set ? finishing_ : nullptr;
  }

 private:
  // Submits the ops handlers started on this ring during a finish() pass and
  // reaps into `done`; on the last pass (or when shutting down) leaves them
  // to a posted flush instead (`post_flush` set). Returns whether it pumped.
  bool take_batch(op_queue& done, bool last, bool& post_flush) {
    std::lock_guard lock(mutex_);
    if (!batch_pending_) return false;
    batch_pending_ = false;
    if (last || shut_down_) {
      if (!flush_scheduled_) flush_scheduled_ = post_flush = true;
      return false;
    }
    pump(done);
    return true;
  }

  // Whether this thread may use the ring now: not a forked child's copy of
  // the parent's ring, and, for a single-issuer ring, its issuer thread.
  bool usable_here() const noexcept {
    if (forked() || !ring_ok_) return false;
    return !single_issuer_bound_ || std::this_thread::get_id() == issuer_;
  }

  // Moves queued ops and cancel requests into the SQ, submits, reaps, and
  // repeats while reaping made room or produced resubmissions. Lock held.
  void pump(op_queue& done) {
    done.splice(finished_);
    if (!usable_here()) {
      // A child that did not call notify_fork(fork_child), a ring that could
      // not be rebuilt, or a single-issuer ring run from another thread:
      // never enter the ring; fail what is queued with the rule it broke.
      // Completions already in the CQ are still reaped (that needs no enter).
      boost::system::error_code why = make_error_code(errc::wrong_issuer_thread);
      if (forked()) why = make_error_code(errc::forked_process);
      if (!ring_ok_) why = make_error_code(errc::io_uring_setup_failed);
      for (lane* l : {&files_, &streams_}) {
        while (op_base* op = l->queued.pop()) {
          op->ec_ = why;
          retire(op, done);
        }
      }
      if (ring_ok_ && !forked()) reap(done);
      done.splice(finished_);
      return;
    }
    if (needs_enable_) {
      // First submission on this thread: bind the single-issuer ring to it.
      // liburing 2.3 declares io_uring_enable_rings() but does not export it.
      int r = static_cast<int>(::syscall(__NR_io_uring_register, ring_.ring_fd,
                                         IORING_REGISTER_ENABLE_RINGS, nullptr, 0));
      if (r < 0) r = -errno;
      if (r < 0) {
        fail_all(done, r);
        return;
      }
      needs_enable_ = false;
      single_issuer_bound_ = true;
      issuer_ = std::this_thread::get_id();
    }
    for (;;) {
      fill_sq(done);
      if (!submit()) break;  // failed SQEs were failed; back-off: a flush is posted
      // Stop when nothing came back (the rest completes through the eventfd)
      // or nothing is left to submit; otherwise reaping made room or produced
      // resubmissions, so go again. Every extra pass has reaped something.
      if (reap(done) == 0 || (files_.queued.empty() && streams_.queued.empty() && cancels_.empty())) break;
    }
    done.splice(finished_);
    if (in_kernel_ > 0 && !armed_) arm();
  }

  void fill_sq(op_queue& done) {
    // Cancels may use the whole CQ; operations only half of it (see
    // op_capacity_), so a ring full of requests that only a cancel ends
    // (reads on an idle pipe) can always take the cancels.
    while (op_base* op = cancels_.front()) {
      const unsigned need = op->kind_ == op_kind::write_linked_fsync ? 2 : 1;
      if (in_kernel_ + need > cq_capacity_) return;
      if (io_uring_sq_space_left(&ring_) < need) {
        // May reap, and so retire `op` (which unlinks it).
        if (!submit() || io_uring_sq_space_left(&ring_) < need) return;
        continue;
      }
      cancels_.remove(op);
      io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
      // Cancel every request of this op (a linked pair has two user_data
      // values; cancelling the write also cancels the linked fsync).
      io_uring_prep_cancel64(sqe, user_data(op, tag_main), 0);
      io_uring_sqe_set_data64(sqe, internal_user_data);
      ++in_kernel_;
      if (op->kind_ == op_kind::write_linked_fsync) {
        io_uring_sqe* s2 = io_uring_get_sqe(&ring_);
        io_uring_prep_cancel64(s2, user_data(op, tag_linked_fsync), 0);
        io_uring_sqe_set_data64(s2, internal_user_data);
        ++in_kernel_;
      }
    }
    fill_lane(files_, done);
    fill_lane(streams_, done);
  }

  // Moves a lane's queued ops into the SQ, in order, while the lane has
  // capacity. A full lane stops only itself.
  void fill_lane(lane& l, op_queue& done) {
    while (op_base* op = l.queued.front()) {
      if (op->cancel_requested_ || op->ec_) {
        // Cancelled before the kernel saw it, or refused by validate().
        l.queued.pop();
        if (!op->ec_) op->abort();
        retire(op, done);
        continue;
      }
      if (op->is_empty_transfer()) {
        // Nothing to transfer: complete with 0 bytes, as Asio does.
        l.queued.pop();
        retire(op, done);
        continue;
      }
      const unsigned need = op->sqes_per_round();
      if (l.in_kernel + need > op_capacity_) {
        queued_waits_.fetch_add(1, std::memory_order_relaxed);
        return;
      }
      if (io_uring_sq_space_left(&ring_) < need) {
        if (!submit() || io_uring_sq_space_left(&ring_) < need) return;
      }
      l.queued.pop();
      prepare(op);
      l.in_kernel += need;
      in_kernel_ += need;
    }
  }

  io_uring_sqe* get_sqe() {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    if (!sqe) {
      submit();
      sqe = io_uring_get_sqe(&ring_);
    }
    return sqe;
  }

  // Writes the SQE(s) of one round of `op`.
  //
  // Why handing these pointers to the kernel is sound: the iovec array lives in
  // the op, and the buffers it points to are owned by the caller, who by the
  // API contract keeps them alive until the handler runs. The handler runs
  // only after the engine has reaped every CQE of the op (`cqes_due_` == 0 and
  // state `finished`), i.e. after the kernel has let go of the iovecs and the
  // buffers, whatever the outcome (success, error, cancellation, shutdown).
  // The fd is held open by `file_handle`'s reference, which the op keeps until
  // it is freed, so the number cannot be reused while the kernel may issue
  // the request (a linked fsync is issued only after its write completes).
  // An op without a file_handle (blocking_ring) borrows the caller's fd, and
  // the caller is blocked in the call until the op has finished.
  void prepare(op_base* op) {
    const int fd = op->fd_;
    const unsigned niov = op->iov_count();
    const iovec* iov = op->iov();
    const std::uint64_t off = op->next_offset();
    op->submit_epoch_ = submitter_exits();
    if (op->kind_ == op_kind::write_linked_fsync && op->remaining() == 0) {
      // Everything is written; only the sync must run (again): the kernel
      // cancelled the previous one before it ran (op_base::retry_unrequested).
      op->linked_write_res_ = 0;
      io_uring_sqe* fs = io_uring_get_sqe(&ring_);
      io_uring_prep_fsync(fs, fd, IORING_FSYNC_DATASYNC);
      io_uring_sqe_set_data64(fs, user_data(op, tag_linked_fsync));
      op->cqes_due_ = 1;
      op->state_ = op_state::in_kernel;
      link_kernel(op);
      return;
    }
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    switch (op->kind_) {
      case op_kind::read_some:
      case op_kind::read_full:
        if (op->buf_index_ >= 0 && niov == 1)
          io_uring_prep_read_fixed(sqe, fd, iov[0].iov_base, static_cast<unsigned>(clamp_len(iov[0].iov_len)),
                                   off, op->buf_index_);
        else if (niov == 1)
          io_uring_prep_read(sqe, fd, iov[0].iov_base, static_cast<unsigned>(clamp_len(iov[0].iov_len)), off);
        else
          io_uring_prep_readv(sqe, fd, iov, niov, off);
        break;
      case op_kind::write_some:
      case op_kind::write_full:
      case op_kind::write_linked_fsync:
        if (op->buf_index_ >= 0 && niov == 1)
          io_uring_prep_write_fixed(sqe, fd, iov[0].iov_base, static_cast<unsigned>(clamp_len(iov[0].iov_len)),
                                    off, op->buf_index_);
        else if (niov == 1)
          io_uring_prep_write(sqe, fd, iov[0].iov_base, static_cast<unsigned>(clamp_len(iov[0].iov_len)), off);
        else
          io_uring_prep_writev(sqe, fd, iov, niov, off);
        // An untorn write: one request flagged RWF_ATOMIC, all or nothing
        // (its limits were checked by op_base::validate; one round only,
        // see op_base::on_result).
        if (op->atomic_) sqe->rw_flags = rwf_atomic;
        break;
      case op_kind::fdatasync:
        io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
        break;
      case op_kind::fsync:
        io_uring_prep_fsync(sqe, fd, 0);
        break;
      default:
        prepare_fs(op, sqe);
        break;
    }
    io_uring_sqe_set_data64(sqe, user_data(op, tag_main));
    op->cqes_due_ = 1;
    if (op->kind_ == op_kind::write_linked_fsync) {
      // IOSQE_IO_LINK: the fsync starts only after the write completed in
      // full; a short or failed write cancels it (-ECANCELED), which
      // op_base::finish_linked_round() turns into "write the rest and sync
      // again", never into success.
      sqe->flags |= IOSQE_IO_LINK;
      io_uring_sqe* fs = io_uring_get_sqe(&ring_);
      io_uring_prep_fsync(fs, fd, IORING_FSYNC_DATASYNC);
      io_uring_sqe_set_data64(fs, user_data(op, tag_linked_fsync));
      op->cqes_due_ = 2;
    }
    op->state_ = op_state::in_kernel;
    link_kernel(op);
  }

  // Writes the SQE of a file-system op.
  //
  // Why handing these pointers to the kernel is sound: the path strings, the
  // open_how block and the statx buffer live in the op's fs_args, which is
  // freed with the op, and the op is freed only after its CQE has been
  // reaped (the kernel copies paths when it issues the request, possibly in
  // an io-wq worker, and writes the statx buffer before posting the CQE).
  // File descriptors are held open by the op's file_handle reference (or,
  // for close, owned by the op and given to the kernel here).
  void prepare_fs(op_base* op, io_uring_sqe* sqe) {
    fs_args& a = *op->fs_;
    const int fd = op->fd_;
    switch (op->kind_) {
      case op_kind::open:
        if (a.openat2)
          io_uring_prep_openat2(sqe, a.dirfd, a.path.c_str(), reinterpret_cast<::open_how*>(&a.how));
        else
          io_uring_prep_openat(sqe, a.dirfd, a.path.c_str(), a.flags, static_cast<mode_t>(a.mode));
        break;
      case op_kind::close:
        io_uring_prep_close(sqe, a.owned_fd);
        a.owned_fd = -1;  // the kernel closes it, whatever the result
        break;
      case op_kind::statx:
        // AT_EMPTY_PATH: the open file itself (op->fd_).
        io_uring_prep_statx(sqe, (a.flags & AT_EMPTY_PATH) ? fd : a.dirfd, a.path.c_str(), a.flags, stat_mask, &a.stx);
        // Test hook: both AT_STATX_*_SYNC bits make the kernel answer EINVAL,
        // as a filesystem refusing the request would (the refused-kind
        // memory, see reap()); the helper's statx has the real flags.
        if (test_ring_refuses_statx_) sqe->statx_flags |= AT_STATX_FORCE_SYNC | AT_STATX_DONT_SYNC;
        break;
      case op_kind::fallocate:
        io_uring_prep_fallocate(sqe, fd, a.flags, static_cast<off_t>(op->offset_), static_cast<off_t>(a.length));
        break;
      case op_kind::ftruncate:
        io_uring_prep_rw(op_ftruncate, sqe, fd, nullptr, 0, op->offset_);
        break;
      case op_kind::rename:
        io_uring_prep_renameat(sqe, a.dirfd, a.path.c_str(), a.dirfd2, a.path2.c_str(),
                               static_cast<unsigned>(a.flags));
        break;
      case op_kind::unlink:
        io_uring_prep_unlinkat(sqe, a.dirfd, a.path.c_str(), a.flags);
        break;
      case op_kind::mkdir:
        io_uring_prep_mkdirat(sqe, a.dirfd, a.path.c_str(), static_cast<mode_t>(a.mode));
        break;
      case op_kind::symlink:
        io_uring_prep_symlinkat(sqe, a.path.c_str(), a.dirfd2, a.path2.c_str());
        break;
      case op_kind::link:
        io_uring_prep_linkat(sqe, a.dirfd, a.path.c_str(), a.dirfd2, a.path2.c_str(), a.flags);
        break;
      case op_kind::sync_file_range:
        io_uring_prep_sync_file_range(sqe, fd, static_cast<unsigned>(a.length), op->offset_, a.flags);
        break;
      case op_kind::fadvise:
        io_uring_prep_fadvise(sqe, fd, op->offset_, static_cast<off_t>(a.length), a.flags);
        break;
      // Extended attributes: the name is `a.path2`, the value buffer
      // `a.value`, both in the op's fs_args. Sound for the same reason as
      // the paths above: the kernel reads the name (and, for SETXATTR, the
      // value) when it issues the request, possibly later in an io-wq
      // worker, and writes a GETXATTR value before it posts the CQE; the
      // op, and with it the buffer, is freed only after that CQE is reaped,
      // and nothing resizes the buffer while the SQE is in flight (the
      // result rules resize it only between rounds, see on_xattr_result).
      case op_kind::getxattr:
        if (a.flags & AT_EMPTY_PATH)
          io_uring_prep_fgetxattr(sqe, fd, a.path2.c_str(), a.value.data(), static_cast<unsigned>(a.value.size()));
        else
          io_uring_prep_getxattr(sqe, a.path2.c_str(), a.value.data(), a.path.c_str(),
                                 static_cast<unsigned>(a.value.size()));
        break;
      case op_kind::setxattr: {
        const int xf = static_cast<int>(a.mode);  // XATTR_CREATE / XATTR_REPLACE
        if (a.flags & AT_EMPTY_PATH)
          io_uring_prep_fsetxattr(sqe, fd, a.path2.c_str(), a.value.data(), xf, static_cast<unsigned>(a.value.size()));
        else
          io_uring_prep_setxattr(sqe, a.path2.c_str(), a.value.data(), a.path.c_str(), xf,
                                 static_cast<unsigned>(a.value.size()));
        break;
      }
      default:
        io_uring_prep_nop(sqe);
        break;
    }
  }

  // Whether the ring runs this file-system op; otherwise the psync helper
  // does. Lock held.
  bool ring_runs(const op_base* op) const noexcept {
    const std::uint32_t bit = kind_bit(op->kind_);
    if (!(ring_fs_kinds_ & bit) || (refused_.load(std::memory_order_relaxed) & bit)) return false;
    // The SQE carries a 32-bit length for these two.
    if ((op->kind_ == op_kind::sync_file_range || op->kind_ == op_kind::fadvise) && op->fs_->length > 0xffffffffu)
      return false;
    // ... and a 32-bit value length for these (the kernel refuses more than
    // 64 KiB anyway; the system call reports that as E2BIG).
    if ((op->kind_ == op_kind::getxattr || op->kind_ == op_kind::setxattr) && op->fs_->value.size() > 0xffffffffu)
      return false;
    return true;
  }

  // Hands `op` to the psync helper, made on first use. Lock held: the helper
  // never calls back into this engine from start() (its shut-down path, which
  // would destroy a handler, cannot run while this engine is not shut down).
  void to_helper(op_base* op) {
    if (helper_closed_) {
      // Shutting down: the op ends here, its handler destroyed uninvoked.
      op->abort();
      retire(op, finished_);
      return;
    }
    if (!helper_) {
      helper_ = make_psync_engine(ctx_.query(asio::execution::context), opts_);
      helper_view_.store(helper_.get(), std::memory_order_release);
    }
    op->unlisted_ = true;
    op->on_helper_ = true;
    helper_ops_.fetch_add(1, std::memory_order_relaxed);
    // From here the helper's lock guards the op: cancellation requests are
    // redirected to it (an emit that reached this engine is forwarded).
    if (op->cancel_link_) op->cancel_link_->owner_.store(helper_.get(), std::memory_order_release);
    helper_->start(op);
  }

  // Puts `op` on its file's list (lock held). A ring of a set other than the
  // first runs only reads and writes (ring_set sends every other kind to the
  // first ring) and keeps them off the list, which the first ring's lock
  // guards; its cancel_file finds them in its own queues instead.
  void list_op(op_base* op) noexcept {
    if (home_)
      link_to_file(op);
    else
      op->unlisted_ = true;
  }

 public:
  int ring_fd() const noexcept { return ring_ok_ ? ring_.ring_fd : -1; }

 private:
  engine* helper_if_any() {
    std::lock_guard lock(mutex_);
    return helper_.get();
  }

  // The ops whose SQEs are in the kernel, so that a forked child can fail them.
  void link_kernel(op_base* op) noexcept {
    op->kernel_prev_ = nullptr;
    op->kernel_next_ = kernel_ops_;
    if (kernel_ops_) kernel_ops_->kernel_prev_ = op;
    kernel_ops_ = op;
  }
  void unlink_kernel(op_base* op) noexcept {
    if (op->kernel_prev_)
      op->kernel_prev_->kernel_next_ = op->kernel_next_;
    else if (kernel_ops_ == op)
      kernel_ops_ = op->kernel_next_;
    if (op->kernel_next_) op->kernel_next_->kernel_prev_ = op->kernel_prev_;
    op->kernel_next_ = op->kernel_prev_ = nullptr;
  }

  bool forked() const noexcept { return fork_generation() != generation_; }

  static std::size_t clamp_len(std::size_t n) {
    // One read/write SQE carries a 32-bit length; the kernel caps a single
    // transfer at MAX_RW_COUNT anyway. The rest goes in the next round.
    constexpr std::size_t max = 0x7ffff000;
    return n > max ? max : n;
  }

  // DEFER_TASKRUN: runs every pending deferred task-work item, so that the
  // completions they produce reach the CQ. GETEVENTS with min_complete = the
  // number of requests in the kernel makes the kernel run up to that many
  // items; the zero timeout returns at once instead of waiting for them.
  void run_deferred_work() {
    __kernel_timespec ts{};
    io_uring_getevents_arg arg{};
    arg.sigmask = 0;
    arg.sigmask_sz = _NSIG / 8;
    arg.ts = reinterpret_cast<std::uint64_t>(&ts);
    enter_calls_.fetch_add(1, std::memory_order_relaxed);
    ::syscall(__NR_io_uring_enter, ring_.ring_fd, 0, in_kernel_,
              IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG, &arg, sizeof arg);
  }

  // Submits everything in the SQ. Returns false when the caller should stop
  // filling the SQ: the ring refused the batch (its SQEs' operations were
  // failed) or asked to back off (a flush is posted to try again).
  bool submit() {
    note_submitter_thread();
    if (io_uring_sq_ready(&ring_) == 0) {
      if (defer_taskrun_ && in_kernel_ > 0) run_deferred_work();
      return true;
    }
    // DEFER_TASKRUN: one GETEVENTS enter runs at most a batch of 20 deferred
    // task-work items (IO_LOCAL_TW_DEFAULT_MAX) and keeps the rest without
    // signalling the eventfd again; items that post no CQE (a pipe read
    // re-arming its poll) would then be stranded. Each request in the kernel
    // has at most one pending item, so with up to 16 requests in flight the
    // combined submit+getevents enter runs them all; beyond that, a separate
    // enter asks for all of them.
    const bool getevents_in_submit = defer_taskrun_ && in_kernel_ <= 16;
    for (;;) {
      enter_calls_.fetch_add(1, std::memory_order_relaxed);
      int r = getevents_in_submit ? io_uring_submit_and_get_events(&ring_) : io_uring_submit(&ring_);
      if (r >= 0) {
        sqes_submitted_.fetch_add(static_cast<unsigned>(r), std::memory_order_relaxed);
        // With SUBMIT_ALL (or SQPOLL) the kernel takes every SQE; otherwise a
        // failing SQE stops the batch after posting its CQE: submit the rest.
        if (r == 0 || io_uring_sq_ready(&ring_) == 0 || (flags_ & IORING_SETUP_SQPOLL)) {
          if (defer_taskrun_ && !getevents_in_submit) run_deferred_work();
          return true;
        }
        continue;
      }
      if (r == -EINTR) continue;
      if (r == -EAGAIN || r == -EBUSY) {
        // The kernel is short of memory for requests (EAGAIN) or wants CQEs
        // reaped first (EBUSY). Reap; if that freed something, go again;
        // otherwise do not spin under the lock: the SQEs stay in the SQ and
        // a posted flush submits them after the io_context's other handlers.
        op_queue tmp;
        const unsigned reaped = reap(tmp);
        finished_.splice(tmp);
        if (reaped > 0) continue;
        if (!flush_scheduled_) {
          flush_scheduled_ = true;
          ctx_.execute([this] { flush(); });
        }
        return false;
      }
      // Anything else means this thread cannot submit to the ring (EEXIST on
      // a single-issuer ring from another thread, EBADF, ...): fail the
      // operations whose SQEs the kernel did not take, with that error, so
      // that no handler waits for a request that was never made.
      fail_unsubmitted(r);
      return false;
    }
  }

  // Takes back the SQEs the kernel has not consumed (the SQ tail is rewound to
  // the kernel's head; without SQPOLL the kernel reads the SQ only inside
  // io_uring_enter, so nothing else can consume them meanwhile) and fails
  // their operations with `negative_errno`. Lock held.
  void fail_unsubmitted(int negative_errno) {
    io_uring_sq& sq = ring_.sq;
    const unsigned head = __atomic_load_n(sq.khead, __ATOMIC_ACQUIRE);
    const unsigned tail = sq.sqe_tail;
    op_queue failed;
    for (unsigned i = head; i != tail; ++i) {
      const io_uring_sqe& sqe = sq.sqes[i & sq.ring_mask];
      --in_kernel_;
      const std::uint64_t ud = sqe.user_data;
      if (ud == internal_user_data) continue;
      auto* op = reinterpret_cast<op_base*>(ud & ~tag_mask);
      --lane_of(op).in_kernel;
      if (op->state_ != op_state::finished) {
        op->state_ = op_state::finished;  // first SQE of the op seen
        failed.push_back(op);
      }
    }
    __atomic_store_n(sq.ktail, head, __ATOMIC_RELEASE);
    sq.sqe_head = sq.sqe_tail = head;
    while (op_base* op = failed.pop()) {
      unlink_kernel(op);
      op->cqes_due_ = 0;
      if (negative_errno == -EEXIST)
        op->ec_ = make_error_code(errc::wrong_issuer_thread);
      else
        op->ec_ = boost::system::error_code(-negative_errno, boost::system::system_category());
      retire(op, finished_);
    }
  }

  // Reaps every available CQE; finished ops go to `done`, short transfers back
  // to the front of their lane's queue. Lock held.
  unsigned reap(op_queue& done) {
    unsigned head, count = 0;
    io_uring_cqe* cqe;
    op_queue again_files, again_streams;
    io_uring_for_each_cqe(&ring_, head, cqe) {
      ++count;
      --in_kernel_;
      const std::uint64_t ud = cqe->user_data;
      if (ud == internal_user_data) continue;
      auto* op = reinterpret_cast<op_base*>(ud & ~tag_mask);
      --lane_of(op).in_kernel;
      if (is_fs_kind(op->kind_) && (cqe->res == -EINVAL || cqe->res == -EOPNOTSUPP) && !op->cancel_requested_ && !shut_down_ &&
          op->kind_ != op_kind::close) {
        // The ring refused the request for this file or filesystem: run it
        // as a system call on the helper; if that succeeds, the result rules
        // remember the kind as refused by this ring (fs_args::ring_refused).
        unlink_kernel(op);
        unlink_from_file(op);
        op->state_ = op_state::queued;
        op->fs_->ring_refused = &refused_;
        to_helper(op);
        continue;
      }
      op_step step = (ud & tag_mask) == tag_linked_fsync ? op->on_linked_fsync_result(cqe->res)
                                                         : op->on_result(cqe->res);
      if (step == op_step::done) {
        unlink_kernel(op);
        retire(op, done);
      } else if (step == op_step::again) {
        unlink_kernel(op);
        cancels_.remove(op);  // back in the queue: a cancel request aborts it there
        op->state_ = op_state::queued;
        (op->stream_ ? again_streams : again_files).push_back(op);
      }
    }
    io_uring_cq_advance(&ring_, count);
    cqes_reaped_.fetch_add(count, std::memory_order_relaxed);
    again_files.splice(files_.queued);
    files_.queued.splice(again_files);
    again_streams.splice(streams_.queued);
    streams_.queued.splice(again_streams);
    return count;
  }

  void retire(op_base* op, op_queue& done) {
    cancels_.remove(op);
    ops_completed_.fetch_add(1, std::memory_order_relaxed);
    settle(op, done);
  }

  void fail_all(op_queue& done, int negative_errno) {
    for (lane* l : {&files_, &streams_}) {
      while (op_base* op = l->queued.pop()) {
        op->ec_ = boost::system::error_code(-negative_errno, boost::system::system_category());
        retire(op, done);
      }
    }
  }

  void arm() {
    armed_ = true;
    eventfd_.async_read_some(asio::buffer(&eventfd_value_, sizeof eventfd_value_),
                             [this](const boost::system::error_code& ec, std::size_t) { on_wakeup(ec); });
  }

  context_executor ctx_;  // the io_context (or thread pool) the ring serves
  ring_options opts_;
  ring_group* set_ = nullptr;  // the ring_set this ring belongs to, if any
  // Chains on this ring (see ring_chains): ops of the kinds any ring runs,
  // started here and not yet handed to their handlers.
  std::atomic<int> chains_{0};
  bool home_ = true;           // the set's first ring (or a ring alone)
  int attach_wq_fd_ = -1;
  // File-system kinds: those the ring has (probe, FSYS_TEST_DISABLE_OPS),
  // those it refused at run time, and the psync helper that runs the rest.
  std::uint32_t ring_fs_kinds_ = 0;
  /// FSYS_TEST_RING_REFUSES_STATX=1: every STATX SQE fails with EINVAL.
  bool test_ring_refuses_statx_ = false;
  std::atomic<std::uint32_t> refused_{0};
  std::unique_ptr<engine> helper_;
  bool helper_closed_ = false;
  std::atomic<std::uint64_t> helper_ops_{0};
  /// `helper_` for stats(), which takes no lock; set once, lives as long as
  /// this engine.
  std::atomic<const engine*> helper_view_{nullptr};
  bool single_ = false;
  io_uring ring_{};
  bool ring_ok_ = false;
  bool defer_taskrun_ = false;
  bool needs_enable_ = false;
  std::uint32_t flags_ = 0;
  unsigned cq_capacity_ = 0;
  unsigned op_capacity_ = 0;  // SQEs of operations in the kernel at most

  std::mutex mutex_;
  lane files_;    // regular files and block devices
  lane streams_;  // pipes, sockets, character devices
  // A single-issuer ring is bound to the thread that enabled it.
  bool single_issuer_bound_ = false;
  std::thread::id issuer_;
  op_queue finished_;  // reaped, to be completed by the next flush
  op_queue leaked_;
  cancel_queue cancels_;
  unsigned in_kernel_ = 0;
  op_base* kernel_ops_ = nullptr;
  bool batch_pending_ = false;  // ops queued by handlers that finish() runs
  static constexpr int max_inline_passes = 16;
  int batch_threshold_ = 16;  // see ring_options::inline_batch_threshold
  // The engine whose completions this thread is running in finish(), if any.
  FSYS_HOT_TLS static thread_local uring_engine* finishing_;
  // Another ring of the same set that handlers run by finishing_ started ops on.
  FSYS_HOT_TLS static thread_local uring_engine* also_pump_;
  bool flush_scheduled_ = false;
  std::thread::id batch_taker_;  // the thread whose finish() submits the batch
  bool rescue_armed_ = false;
  static constexpr std::chrono::microseconds rescue_delay{500};
  bool armed_ = false;
  bool shut_down_ = false;

  asio::posix::stream_descriptor eventfd_;
  asio::steady_timer rescue_;
  std::uint64_t eventfd_value_ = 0;
  std::uint64_t generation_;

  std::atomic<std::uint64_t> ops_started_{0}, enter_calls_{0}, sqes_submitted_{0}, cqes_reaped_{0}, ops_completed_{0},
      wakeups_{0}, queued_waits_{0}, moved_{0};
};

FSYS_HOT_TLS thread_local uring_engine* uring_engine::finishing_ = nullptr;
FSYS_HOT_TLS thread_local uring_engine* uring_engine::also_pump_ = nullptr;

}  // namespace

std::unique_ptr<engine> make_uring_ring(asio::execution_context& ctx, const ring_options& options,
                                        const shard_params& shard, std::error_code& ec) {
  ec.clear();
  auto e = std::make_unique<uring_engine>(ctx, options, shard, ec);
  if (ec || !e->usable()) {
    if (!ec) ec = make_error_code(errc::io_uring_setup_failed);
    return nullptr;
  }
  return e;
}

int ring_fd_of(engine& e) noexcept { return static_cast<uring_engine&>(e).ring_fd(); }

engine* finishing_ring(const ring_group* set) noexcept { return set ? uring_engine::finishing_of(set) : nullptr; }

int ring_chains(engine& e) noexcept { return static_cast<uring_engine&>(e).chains(); }

bool ring_adopt(engine& from, engine& to, op_queue& ops, int n) {
  return static_cast<uring_engine&>(to).adopt(static_cast<uring_engine&>(from), ops, n);
}

// ---- fork detection ---------------------------------------------------------

namespace {
std::atomic<std::uint64_t> fork_counter{0};
void on_fork_child() { fork_counter.fetch_add(1, std::memory_order_relaxed); }
const int fork_handler_installed = ::pthread_atfork(nullptr, nullptr, &on_fork_child);
}  // namespace

std::uint64_t fork_generation() noexcept {
  (void)fork_handler_installed;
  return fork_counter.load(std::memory_order_relaxed);
}

}  // namespace fsys::detail
