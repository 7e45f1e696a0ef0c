// The psync engine: preadv/pwritev/fdatasync on a small pool of worker threads,
// for kernels or sandboxes that refuse io_uring.
//
// Same contract as the io_uring engine. Operations are queued by `start` and
// picked up by a worker, which runs every round of the operation (short
// transfers continue, a linked write is followed by fdatasync) and feeds each
// result through `op_base::on_result` / `on_linked_fsync_result`, so both
// backends apply exactly the same transfer rules and error codes.
//
// Threading. `mutex_` guards the queues, the runners and every op field the
// engine or `op_base`'s rules touch after `start` (state, cancellation flag,
// progress). Syscalls run without the lock. Workers never complete an
// operation themselves: they move it to `finished_` and post one drain to the
// io_context, which calls `complete_` on a thread running the context. That
// keeps handlers, the clearing of their cancellation slots and the freeing of
// operations on the io_context, as with the io_uring engine, so a
// cancellation signal emitted from the context never races with a worker.
//
// Cancellation. An op still queued is taken out of the queue and completed
// with operation_aborted at once (through the drain). A running op is marked;
// a full transfer stops at its next round with the bytes so far. Reads and
// writes on stream descriptors (pipes, sockets: preadv fails with ESPIPE) use
// the position-less path the kernel takes for them under io_uring, waiting in
// poll(2) on the descriptor and on the runner's eventfd, so a cancellation or
// shutdown wakes a worker blocked there. A regular-file syscall is never
// interrupted; the handler runs once, after it has returned.
//
// Pools. Operations on descriptors without a position (pipes, sockets) may
// wait in poll(2) indefinitely, so they have their own queue and workers
// (`streams_`, up to `stream_threads` of them): idle pipe reads never hold
// the workers that file IO needs (`files_`, `psync_threads`).
//
// Fork. Only the forking thread exists in a child process; the workers do
// not. Each engine's mutex is held across fork() (pthread_atfork handlers,
// `fork_lock` below), so the child's copy of the engine is never caught in
// the middle of a worker's critical section: an op half taken out of a
// queue or half moved to `finished_`, or the io_context's scheduler half
// through a post, which the child could never finish (its run() would wait
// forever). In the child, ops a worker was running fail with
// errc::forked_process and queued ops run on new workers (`lock_engine`).
//
// Work. While operations from `start` are unfinished the engine holds work on
// its io_context, as the io_uring engine's armed eventfd read does, so run()
// does not return while a worker still runs one (the op's own tracked work is
// on the handler's executor, which may belong to another context).
#include <fsys/detail/engine.hpp>
#include <fsys/detail/file_handle.hpp>
#include <fsys/detail/fs_args.hpp>
#include <fsys/error.hpp>

#include "context_executor.hpp"
#include "kernel_statx.hpp"


#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <mutex>
#include <new>
#include <optional>
#include <system_error>
#include <thread>
#include <vector>

namespace fsys::detail {
namespace {

// The kernel caps one read or write at MAX_RW_COUNT; the rest goes in the
// next round, as with the io_uring engine.
constexpr std::size_t max_rw_count = 0x7ffff000;

// A thread running operations: a pool worker, or a caller of `start_now`.
struct runner {
  op_base* current_ = nullptr;  ///< the op it runs (guarded by the engine mutex)
  int wake_fd_ = -1;            ///< eventfd for stream waits, made on first use
  runner* next_ = nullptr;      ///< engine's list of runners
  runner* prev_ = nullptr;
};

struct worker {
  runner runner_;
  std::thread thread_;
};

// A queue of operations and the workers that serve it.
struct pool {
  explicit pool(std::size_t max) : max_threads(max == 0 ? 1 : max) {}
  op_queue queued;
  std::size_t queued_count = 0;
  std::size_t idle = 0;  // workers waiting for an op
  std::condition_variable cv;
  std::vector<std::unique_ptr<worker>> workers;
  const std::size_t max_threads;
};

// Workers for stream operations, each of which may wait for its peer.
constexpr std::size_t stream_threads = 64;

int retry_eintr(int (*fn)(int), int fd) {
  for (;;) {
    if (fn(fd) == 0) return 0;
    if (errno != EINTR) return -errno;
  }
}

// The mutexes of every psync engine in the process, held across fork():
// prepare takes them all, parent and child give them back (POSIX's
// intended use of pthread_atfork). A worker changes the queues, the runner
// list and `finished_`, and posts to the io_context, only under its
// engine's mutex, so with the mutex held by the forking thread no worker is
// inside such a change when the address space is copied. Under an engine's
// mutex no thread waits for anything but the scheduler's own short lock (a
// post) or thread creation, never for a handler or for another engine's
// mutex, so taking them in turn cannot deadlock. A handler that forks runs
// without any of them held.
class fork_lock {
 public:
  static void add(std::mutex* m) {
    fork_lock& f = instance();
    std::lock_guard lock(f.mutex_);
    f.engines_.push_back(m);
  }
  static void remove(std::mutex* m) noexcept {
    fork_lock& f = instance();
    std::lock_guard lock(f.mutex_);
    std::erase(f.engines_, m);
  }

 private:
  static fork_lock& instance() {
    // Never destroyed: a fork during static destruction still finds it.
    static fork_lock* f = [] {
      auto* p = new fork_lock;
      if (int r = ::pthread_atfork(&prepare, &release, &release); r != 0)
        throw std::system_error(r, std::generic_category(), "fsys: pthread_atfork");
      return p;
    }();
    return *f;
  }
  static void prepare() noexcept {
    fork_lock& f = instance();
    f.mutex_.lock();
    for (std::mutex* m : f.engines_) m->lock();
  }
  // In the parent, and in the child, where the forking thread is the one
  // that holds the locks.
  static void release() noexcept {
    fork_lock& f = instance();
    for (std::mutex* m : f.engines_) m->unlock();
    f.mutex_.unlock();
  }

  std::mutex mutex_;
  std::vector<std::mutex*> engines_;
};

class psync_engine final : public engine {
 public:
  psync_engine(asio::execution_context& ctx, const ring_options& opts)
      : ctx_(ctx), files_(opts.psync_threads), streams_(stream_threads) {
    fork_lock::add(&mutex_);
  }

  ~psync_engine() override {
    shutdown();
    for (pool* p : {&files_, &streams_})
      for (auto& w : p->workers)
        if (w->runner_.wake_fd_ >= 0) ::close(w->runner_.wake_fd_);
    fork_lock::remove(&mutex_);
  }

  void start(op_base* op) override {
    ops_started_.fetch_add(1, std::memory_order_relaxed);
    std::unique_lock lock = lock_engine();
    if (shut_down_) {
      // Started while the io_context shuts down: like Asio, destroy the
      // handler without invoking it.
      lock.unlock();
      op->complete_(op, false);
      return;
    }
    link_to_file(op);
    hold_work();
    if (op->ec_ || op->is_empty_transfer()) {
      // Refused by validate(), or an empty transfer (0 bytes, as Asio does):
      // complete from the io_context without touching the fd.
      retire(op);
      schedule_drain();
      return;
    }
    pool& p = pool_of(op);
    p.queued.push_back(op);
    ++p.queued_count;
    if (p.queued_count > p.idle) {
      // Every worker is busy: start another one, or wait for one to be free.
      if (p.workers.size() < p.max_threads)
        spawn_worker(p);
      else
        queued_waits_.fetch_add(1, std::memory_order_relaxed);
    }
    if (p.workers.empty()) {
      // Not a single thread could be started: the op cannot run.
      remove_from_queue(op);
      op->ec_ = boost::system::error_code(EAGAIN, boost::system::system_category());
      retire(op);
      schedule_drain();
      return;
    }
    if (p.idle > 0) p.cv.notify_one();
  }

  bool start_now(op_base* op) override {
    ops_started_.fetch_add(1, std::memory_order_relaxed);
    runner self;
    {
      std::unique_lock lock = lock_engine();
      if (shut_down_) {
        lock.unlock();
        op->abort();
        op->complete_(op, true);
        return true;
      }
      link_to_file(op);
      if (op->ec_ || op->is_empty_transfer()) {
        op_queue done;
        ops_completed_.fetch_add(1, std::memory_order_relaxed);
        settle(op, done);
        lock.unlock();
        while (op_base* d = done.pop()) d->complete_(d, true);
        return true;
      }
      begin_run(op, self);
    }
    execute(op, self);
    op_queue done;
    {
      std::lock_guard lock(mutex_);
      end_run(self);
      ops_completed_.fetch_add(1, std::memory_order_relaxed);
      settle(op, done);
    }
    if (self.wake_fd_ >= 0) ::close(self.wake_fd_);
    // Held syncs of other callers released by this one complete here too
    // (blocking callers' ops have no file, so in practice only `op`).
    while (op_base* d = done.pop()) d->complete_(d, true);
    return true;
  }

  bool cancel(cancel_link& link, unsigned type) override {
    std::unique_lock lock = lock_engine();
    if (link.owner_.load(std::memory_order_relaxed) != this) return false;
    op_base* op = link.op_.load(std::memory_order_relaxed);  // null once the op's result is final
    if (!op || shut_down_ || op->state_ == op_state::finished || op->cancel_requested_) return true;
    if (!cancel_applies(op, type)) return true;
    op->cancel_requested_ = true;
    if (op->state_ == op_state::queued) {
      remove_from_queue(op);
      op->abort();
      retire(op);
      schedule_drain();
    } else {
      wake_runner_of(op);
    }
    return true;
  }

  void cancel_file(file_handle* file) override {
    std::unique_lock lock = lock_engine();
    if (shut_down_) return;
    bool any_queued = false;
    for (op_base* op = file->ops_; op; op = op->file_next_) {
      if (op->state_ == op_state::finished || op->cancel_requested_) continue;
      op->cancel_requested_ = true;
      if (op->state_ == op_state::queued)
        any_queued = true;
      else
        wake_runner_of(op);
    }
    // Ops an io_uring engine handed to this helper are not on the file's
    // list (op_base::unlisted_): the queued ones are found in the queues.
    for (pool* p : {&files_, &streams_})
      for (op_base* op = p->queued.front(); op; op = op->next_)
        if (op->unlisted_ && op->file_ == file && !op->cancel_requested_) {
          op->cancel_requested_ = true;
          any_queued = true;
        }
    if (!any_queued) return;
    // Take every cancelled op out of the queue (the list above is changed by
    // retire(), so this is a second pass over the queue).
    for (pool* p : {&files_, &streams_}) {
      op_queue keep;
      while (op_base* op = p->queued.pop()) {
        if (op->cancel_requested_) {
          --p->queued_count;
          op->abort();
          retire(op);
        } else {
          keep.push_back(op);
        }
      }
      p->queued.splice(keep);
    }
    schedule_drain();
  }

  void shutdown() override {
    std::unique_lock lock = lock_engine();
    if (shut_down_) return;
    shut_down_ = true;
    // Running ops: stop at the next round, and wake those waiting on a
    // stream descriptor. Their handlers are destroyed below, uninvoked.
    for (runner* r = runners_; r; r = r->next_) {
      if (r->current_) r->current_->cancel_requested_ = true;
      wake(*r);
    }
    files_.cv.notify_all();
    streams_.cv.notify_all();
    // Only when every syscall has returned is no buffer in use any more.
    idle_cv_.wait(lock, [this] { return running_ == 0; });
    op_queue done;
    done.splice(files_.queued);
    done.splice(streams_.queued);
    done.splice(finished_);
    files_.queued_count = streams_.queued_count = 0;
    for (op_base* op = done.front(); op; op = op->next_) unlink_from_file(op);
    take_held(done);
    if (outstanding_ > 0) ctx_.work_finished();
    outstanding_ = 0;
    std::vector<std::thread> threads;
    for (pool* p : {&files_, &streams_})
      for (auto& w : p->workers) threads.push_back(std::move(w->thread_));
    lock.unlock();
    for (auto& t : threads)
      if (t.joinable()) t.join();
    while (op_base* op = done.pop()) op->complete_(op, false);
  }

  // After fork(): forget the parent's threads now (lock_engine() also does it
  // on the next call, so a child that never calls notify_fork works too).
  void notify_fork_child() override { static_cast<void>(lock_engine()); }

  fsys::backend kind() const noexcept override { return backend::psync; }

  engine_stats stats() const noexcept override {
    engine_stats s;
    s.ops_started = ops_started_.load(std::memory_order_relaxed);
    s.ops_completed = ops_completed_.load(std::memory_order_relaxed);
    s.reactor_wakeups = drains_.load(std::memory_order_relaxed);  // io_context wake-ups: drains run
    s.queued_waits = queued_waits_.load(std::memory_order_relaxed);
    return s;
  }

 private:
  pool& pool_of(const op_base* op) noexcept { return op->stream_ ? streams_ : files_; }

  // Takes the engine lock. In a child process after fork(), first forgets
  // the parent's threads (only the forking thread exists in the child): the
  // ops they were running fail with errc::forked_process, queued ops stay
  // queued for new workers. So a child works without notify_fork too.
  std::unique_lock<std::mutex> lock_engine() {
    const std::uint64_t generation = fork_generation();
    if (generation_.load(std::memory_order_relaxed) == generation) return std::unique_lock(mutex_);
    // First call in a child (made before other threads of the child use the
    // engine, as with Asio's notify_fork). The mutex is free and the state
    // it guards consistent (fork_lock held it across the fork), but the
    // parent's idle workers were waiting on the condition variables: start
    // those afresh without destroying them (glibc's pthread_cond_destroy
    // would wait for the vanished waiters, and a notify could go to one).
    ::new (static_cast<void*>(&files_.cv)) std::condition_variable;
    ::new (static_cast<void*>(&streams_.cv)) std::condition_variable;
    ::new (static_cast<void*>(&idle_cv_)) std::condition_variable;
    generation_.store(generation, std::memory_order_relaxed);
    std::unique_lock lock(mutex_);
    for (pool* p : {&files_, &streams_}) {
      for (auto& w : p->workers) {
        if (op_base* op = w->runner_.current_) {
          op->ec_ = make_error_code(errc::forked_process);
          retire(op);
        }
        // The std::thread names a thread of the parent: never join or detach it
        // (glibc has reclaimed its descriptor in the child); keep the handle
        // where it is never destroyed.
        static auto* parents_threads = new std::vector<std::thread>;
        parents_threads->push_back(std::move(w->thread_));
        if (w->runner_.wake_fd_ >= 0) ::close(w->runner_.wake_fd_);
      }
      p->workers.clear();
      p->idle = 0;
    }
    // start_now callers were other threads of the parent, gone as well.
    runners_ = nullptr;
    running_ = 0;
    if (shut_down_) return lock;
    for (pool* p : {&files_, &streams_})
      for (std::size_t i = 0; i < p->queued_count && p->workers.size() < p->max_threads; ++i) spawn_worker(*p);
    drain_scheduled_ = false;
    schedule_drain();
    return lock;
  }

  // Lock held. While operations started with `start` are unfinished, the
  // io_context has work: its run() must not return while a worker runs one,
  // even when the handler's own executor (which the op's tracked work keeps
  // busy) belongs to another context. The io_uring engine gets the same from
  // its armed eventfd read.
  void hold_work() {
    if (outstanding_++ == 0) ctx_.work_started();
  }
  void release_work() {
    if (--outstanding_ == 0) ctx_.work_finished();
  }

  // Lock held. Marks `op` final and queues it (and the syncs it releases)
  // for the drain.
  void retire(op_base* op) {
    ops_completed_.fetch_add(1, std::memory_order_relaxed);
    settle(op, finished_);
  }

  // Lock held. Takes a queued op out of the FIFO (a linear scan: cancelling
  // single queued ops is rare and the queue is short in practice).
  void remove_from_queue(op_base* target) {
    pool& p = pool_of(target);
    op_queue keep;
    while (op_base* op = p.queued.pop()) {
      if (op == target)
        --p.queued_count;
      else
        keep.push_back(op);
    }
    p.queued.splice(keep);
  }

  // Lock held. Posts one drain to the io_context unless one is pending
  // already. Posting under the lock is fine: the scheduler never calls back
  // into the engine from post().
  void schedule_drain() {
    if (drain_scheduled_ || shut_down_ || finished_.empty()) return;
    drain_scheduled_ = true;
    ctx_.execute([this] { drain(); });
  }

  // Runs on the io_context: completes every finished op there.
  void drain() {
    op_queue done;
    {
      std::lock_guard lock(mutex_);
      drain_scheduled_ = false;
      if (shut_down_) return;
      done.splice(finished_);
      // This drain is itself work on the io_context, so run() stays busy
      // until the handlers below have run.
      for (op_base* op = done.front(); op; op = op->next_) release_work();
    }
    drains_.fetch_add(1, std::memory_order_relaxed);
    complete_all(done, [this](op_queue& rest) {
      // A handler threw: complete the rest in a later drain.
      std::unique_lock lock(mutex_);
      for (op_base* op = rest.front(); op; op = op->next_) hold_work();
      rest.splice(finished_);
      finished_.splice(rest);
      schedule_drain();
    });
  }

  // Lock held. Starts one more worker, with every signal blocked so that the
  // application's signals keep going to its own threads.
  void spawn_worker(pool& p) {
    auto w = std::make_unique<worker>();
    sigset_t all, old;
    ::sigfillset(&all);
    ::pthread_sigmask(SIG_SETMASK, &all, &old);
    try {
      w->thread_ = std::thread([this, &p, r = &w->runner_] { work(p, *r); });
    } catch (...) {
      // No thread now; the ops wait for an existing worker (or fail if none).
      ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
      return;
    }
    ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
    p.workers.push_back(std::move(w));
  }

  void work(pool& p, runner& self) {
    std::unique_lock lock(mutex_);
    for (;;) {
      while (p.queued.empty() && !shut_down_) {
        ++p.idle;
        p.cv.wait(lock);
        --p.idle;
      }
      if (shut_down_) return;
      op_base* op = p.queued.pop();
      --p.queued_count;
      begin_run(op, self);
      lock.unlock();
      execute(op, self);
      lock.lock();
      end_run(self);
      retire(op);
      if (shut_down_) {
        idle_cv_.notify_all();
        continue;
      }
      schedule_drain();
    }
  }

  // Lock held.
  void begin_run(op_base* op, runner& self) {
    op->state_ = op_state::in_kernel;
    self.current_ = op;
    self.prev_ = nullptr;
    self.next_ = runners_;
    if (runners_) runners_->prev_ = &self;
    runners_ = &self;
    ++running_;
  }

  // Lock held.
  void end_run(runner& self) {
    self.current_ = nullptr;
    if (self.prev_)
      self.prev_->next_ = self.next_;
    else
      runners_ = self.next_;
    if (self.next_) self.next_->prev_ = self.prev_;
    self.next_ = self.prev_ = nullptr;
    if (--running_ == 0 && shut_down_) idle_cv_.notify_all();
  }

  // Lock held.
  void wake_runner_of(op_base* op) {
    for (runner* r = runners_; r; r = r->next_)
      if (r->current_ == op) wake(*r);
  }

  // Lock held.
  static void wake(runner& r) {
    if (r.wake_fd_ >= 0) {
      std::uint64_t one = 1;
      [[maybe_unused]] auto n = ::write(r.wake_fd_, &one, sizeof one);
    }
  }

  // Runs every round of `op` on the calling thread, without the lock except
  // to account results. Returns when the op's result is final.
  //
  // Why handing the buffers to preadv/pwritev is sound: the iovec array lives
  // in the op, which only this thread changes while the op runs (through
  // on_result, after the syscall returned), and the buffers it points to are
  // owned by the caller, who by the API contract keeps them alive until the
  // handler runs. The handler runs only after this function has returned,
  // i.e. after the last syscall using them has returned, whatever the outcome
  // (success, error, cancellation, shutdown: shutdown waits for it). The fd is
  // held open by the op's `file_handle` reference until the op is freed; a
  // borrowed fd (blocking callers) stays open because its owner is blocked in
  // the call until the op has finished.
  void execute(op_base* op, runner& self) {
    const int fd = op->fd_;
    for (;;) {
      op_step step;
      switch (op->kind_) {
        case op_kind::fdatasync:
        case op_kind::fsync: {
          int r = retry_eintr(op->kind_ == op_kind::fsync ? ::fsync : ::fdatasync, fd);
          std::lock_guard lock(mutex_);
          step = op->on_result(r);
          break;
        }
        case op_kind::read_some:
        case op_kind::read_full:
        case op_kind::write_some:
        case op_kind::write_full: {
          int r = transfer(op, self, op->kind_ == op_kind::write_some || op->kind_ == op_kind::write_full);
          std::lock_guard lock(mutex_);
          step = op->on_result(r);
          break;
        }
        case op_kind::write_linked_fsync: {
          const std::size_t round = round_length(op);
          const int w = transfer(op, self, true);
          bool cancelled;
          {
            std::lock_guard lock(mutex_);
            cancelled = op->cancel_requested_;
          }
          // As the kernel does with IOSQE_IO_LINK: the fdatasync runs only
          // after the write completed in full; a short or failed write (or a
          // cancellation before the fdatasync started) cancels it.
          const int f = (w >= 0 && static_cast<std::size_t>(w) == round && !cancelled)
                            ? retry_eintr(::fdatasync, fd)
                            : -ECANCELED;
          std::lock_guard lock(mutex_);
          op->cqes_due_ = 2;
          step = op->on_result(w);
          if (step == op_step::wait) step = op->on_linked_fsync_result(f);
          break;
        }
        default: {
          if (!is_fs_kind(op->kind_)) return;
          // A file-system operation: one system call (see run_fs_syscall
          // for why its arguments are sound to hand over).
          const int r = run_fs_syscall(op);
          std::lock_guard lock(mutex_);
          step = op->on_result(r);
          break;
        }
      }
      if (step != op_step::again) return;
    }
  }

  static std::size_t round_length(const op_base* op) noexcept {
    std::size_t n = 0;
    const iovec* iov = op->iov();
    for (unsigned i = 0, c = op->iov_count(); i < c; ++i) n += iov[i].iov_len;
    return n > max_rw_count ? max_rw_count : n;
  }

  // One read or write at the op's position; bytes or -errno.
  int transfer(op_base* op, runner& self, bool write) {
    const int fd = op->fd_;
    const iovec* iov = op->iov();
    const int n = static_cast<int>(op->iov_count());
    const auto off = static_cast<off_t>(op->next_offset());
    for (;;) {
      // An untorn write is pwritev2 with RWF_ATOMIC (same buffers, same
      // soundness as above); one call, never continued (op_base::on_result).
      ssize_t r = op->atomic_ ? ::pwritev2(fd, iov, n, off, rwf_atomic)
                  : write     ? ::pwritev(fd, iov, n, off)
                              : ::preadv(fd, iov, n, off);
      if (r >= 0) return static_cast<int>(r);
      if (errno == EINTR) continue;
      if (errno == ESPIPE) return stream_transfer(op, self, write);
      return -errno;
    }
  }

  // A read or write on a descriptor without a position (pipe, socket, FIFO,
  // character device): io_uring ignores the offset there, and so do we. Waits
  // for readiness in poll(2) together with the runner's eventfd, so that
  // cancel() and shutdown() can wake it.
  int stream_transfer(op_base* op, runner& self, bool write) {
    if (self.wake_fd_ < 0) {
      int efd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
      if (efd < 0) return -errno;
      // Published under the lock: a cancel() that comes after this sees the
      // fd and wakes us; one that came before has set the flag checked below.
      std::lock_guard lock(mutex_);
      self.wake_fd_ = efd;
    }
    const int fd = op->fd_;
    const iovec* iov = op->iov();
    const int n = static_cast<int>(op->iov_count());
    bool nowait = true;
    for (;;) {
      {
        std::lock_guard lock(mutex_);
        if (op->cancel_requested_) return -ECANCELED;
      }
      ssize_t r;
      if (nowait)
        r = write ? ::pwritev2(fd, iov, n, -1, RWF_NOWAIT) : ::preadv2(fd, iov, n, -1, RWF_NOWAIT);
      else
        r = write ? ::writev(fd, iov, n) : ::readv(fd, iov, n);
      if (r >= 0) return static_cast<int>(r);
      if (errno == EINTR) continue;
      if (errno == EOPNOTSUPP && nowait) {
        // No RWF_NOWAIT for this file: wait for readiness, then a plain call.
        nowait = false;
      } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
        return -errno;
      }
      pollfd pfd[2] = {{fd, static_cast<short>(write ? POLLOUT : POLLIN), 0}, {self.wake_fd_, POLLIN, 0}};
      if (::poll(pfd, 2, -1) < 0 && errno != EINTR) return -errno;
      if (pfd[1].revents & POLLIN) {
        std::uint64_t v;
        [[maybe_unused]] auto m = ::read(self.wake_fd_, &v, sizeof v);
      }
    }
  }

  context_executor ctx_;  // the io_context (or thread pool) completions run on

  std::mutex mutex_;
  pool files_;    // regular files and block devices
  pool streams_;  // pipes, sockets, character devices
  std::condition_variable idle_cv_;  // shutdown waits here for running syscalls
  op_queue finished_;  // final, to be completed by the next drain
  runner* runners_ = nullptr;  // threads running an op now
  std::size_t running_ = 0;    // ops inside execute()
  std::size_t outstanding_ = 0;  // ops from start() not yet completed
  bool drain_scheduled_ = false;
  bool shut_down_ = false;
  std::atomic<std::uint64_t> generation_{fork_generation()};  // fork() generation of the threads

  std::atomic<std::uint64_t> ops_started_{0}, ops_completed_{0}, drains_{0}, queued_waits_{0};
};

}  // namespace

std::unique_ptr<engine> make_psync_engine(asio::execution_context& ctx, const ring_options& options) {
  return std::make_unique<psync_engine>(ctx, options);
}

}  // namespace fsys::detail
