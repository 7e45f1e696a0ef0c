// fsys::blocking_ring: blocking calls submitted from the caller's thread.
//
// A read or write first tries the caller-thread fast path (`run_in_caller`):
// what the kernel can do without waiting is done by the caller's own
// `preadv2`/`pwritev2`, and only the rest reaches the engine.
//
// A call builds its operation on its own stack (no allocation), hands it to
// the engine with `start_now` (submitted from the calling thread, so an
// operation the kernel finishes inline costs no thread hand-off), and sleeps
// on a futex word in the operation until the engine completes it. The owner
// thread only runs the io_context that reaps completions nobody else reaped
// (through the engine's eventfd).
//
// Shutdown uses the engine's own shutdown, which cancels what is in the
// kernel, waits until the kernel has returned every request, and completes
// every operation it holds; an operation handed to it afterwards is completed
// at once. So no call can stay blocked, and no operation pointer has to be
// tracked here: only the number of calls inside, so that the ring outlives
// them.
#include <fsys/blocking_ring.hpp>
#include <fsys/detail/nowait.hpp>
#include <fsys/error.hpp>
#include <fsys/uring_service.hpp>

#include <boost/asio/buffer.hpp>
#include <boost/asio/executor_work_guard.hpp>

#include <fcntl.h>
#include <linux/futex.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <mutex>
#include <thread>

namespace fsys {
namespace {

// The futex word of one call.
enum call_state : int {
  pending = 0,  // the engine has not completed the operation
  sleeping = 1, // the caller sleeps (or is about to) in FUTEX_WAIT
  done = 2,     // final: ec_ and transferred_ may be read; the engine is gone
};

void futex_wait(std::atomic<int>* word, int expected) noexcept {
  // Returns on a wake-up, on a value change (EAGAIN), on a signal (EINTR) and
  // spuriously (see on_complete): the caller re-checks the word in a loop.
  ::syscall(SYS_futex, reinterpret_cast<int*>(word), FUTEX_WAIT_PRIVATE, expected, nullptr, nullptr, 0);
}

void futex_wake(std::atomic<int>* word, int count) noexcept {
  ::syscall(SYS_futex, reinterpret_cast<int*>(word), FUTEX_WAKE_PRIVATE, count, nullptr, nullptr, 0);
}

/// One blocking call's operation, on the caller's stack.
///
/// Why this is sound. The engine owns a pointer to the op from `start_now` /
/// `start` until it calls `complete_`: it reaps, accounts the result and
/// unlinks the op from its queues under its lock, and calls `complete_`
/// after releasing the lock as its very last access to the op (the next op
/// of its local queue was unlinked before). `on_complete` in turn publishes
/// `done` as its last access to op memory. The caller returns (destroying
/// the op and its buffer view) only after seeing `done`, so the stack frame
/// outlives every engine access, and — because the engine completes an op
/// only after every CQE of it is back — the kernel no longer uses the
/// caller's buffer or fd either, whatever the outcome.
struct blocking_call final : detail::op_base {
  explicit blocking_call(detail::op_kind kind) noexcept : op_base(&on_complete, kind) {}

  static void on_complete(detail::op_base* base, bool invoke) noexcept {
    auto* self = static_cast<blocking_call*>(base);
    if (!invoke && self->state_ != detail::op_state::finished) {
      // The engine shut down with the op unfinished (never in the kernel,
      // or drained from it): report it, never as a 0-byte success.
      self->ec_ = make_error_code(errc::owner_thread_terminated);
    }
    std::atomic<int>* word = &self->word_;
    if (word->exchange(done, std::memory_order_acq_rel) == sleeping) {
      // The caller may already have seen `done`, returned and reused its
      // stack, so `*self` is not touched again. FUTEX_WAKE only uses the
      // address as a key inside the kernel and never reads the memory;
      // waking a stale address at worst wakes a later futex waiter on the
      // same address spuriously, and every waiter here re-checks its word.
      // (std::atomic::notify_one is not used for this reason: calling it on
      // an object that may have been destroyed is undefined.)
      futex_wake(word, 1);
    }
  }

  /// Sleeps until the engine has completed the op.
  void wait() noexcept {
    int s = word_.load(std::memory_order_acquire);
    if (s == done) return;
    if (s == pending &&
        !word_.compare_exchange_strong(s, sleeping, std::memory_order_acq_rel, std::memory_order_acquire))
      return;  // it became `done` meanwhile
    while (word_.load(std::memory_order_acquire) != done) futex_wait(&word_, sleeping);
  }

  std::atomic<int> word_{pending};
};

// A descriptor without a position: pipe, socket, character device.
bool is_stream_fd(int fd) noexcept {
  struct statx stx;
  return ::statx(fd, "", AT_EMPTY_PATH, STATX_TYPE, &stx) == 0 && (stx.stx_mask & STATX_TYPE) &&
         !S_ISREG(stx.stx_mode) && !S_ISBLK(stx.stx_mode) && !S_ISDIR(stx.stx_mode);
}

// A regular file on a local filesystem, whose buffered IO waits for nothing
// but local memory and local block devices, so that a blocking call in the
// caller ends on its own (io_uring would only hand it to a kernel worker).
// The filesystems are the inline fast path's (detail::is_local_filesystem_device:
// ext2/3/4, XFS, btrfs, tmpfs, f2fs; not FUSE, NFS, SMB, CephFS...), looked up
// once per device and thread.
bool may_block_in_caller(int fd) noexcept {
  struct statx stx;
  if (::statx(fd, "", AT_EMPTY_PATH | AT_STATX_DONT_SYNC, STATX_TYPE, &stx) != 0 || !(stx.stx_mask & STATX_TYPE) ||
      !S_ISREG(stx.stx_mode))
    return false;
  return detail::is_local_filesystem_device((std::uint64_t{stx.stx_dev_major} << 32) | stx.stx_dev_minor);
}

/// The caller-thread fast path of `read_at` / `write_at` (see
/// `ring_options::caller_thread_fast_path`). Returns true when the call is
/// complete (`op.ec_`, `op.transferred_` final); false when the ring must
/// take the rest of the transfer, from `op.next_offset()` on.
///
/// Why this is sound: the buffer and fd are used only during the system
/// calls below, made by the blocked caller itself, so the ownership rules of
/// the ring path are not involved. A `RWF_NOWAIT` attempt that fails for any
/// reason leaves the request to the ring, which gives the authoritative
/// result (a failed attempt transferred nothing); partial progress is kept
/// in the op, so the ring continues exactly where the attempt stopped.
///
/// Each thread remembers the last fd whose reads (or writes) were refused
/// with `EOPNOTSUPP` on a regular file, and goes straight to the blocking call
/// for it next time: on ext4 this saves a system call per buffered write. The
/// fd number may have been reused since; that only decides whether the
/// `RWF_NOWAIT` attempt is skipped, while `may_block_in_caller` still guards
/// every blocking call.
bool run_in_caller(blocking_call& op) noexcept {
  const bool read = op.kind_ == detail::op_kind::read_full;
  if (!read && op.kind_ != detail::op_kind::write_full) return false;
  thread_local int nowait_refused_fd[2] = {-1, -1};  // [read, write]
  int& refused = nowait_refused_fd[read ? 0 : 1];
  int flags = RWF_NOWAIT;
  if (op.fd_ == refused) {
    if (may_block_in_caller(op.fd_))
      flags = 0;
    else
      refused = -1;
  }
  while (op.remaining() > 0) {
    const auto off = static_cast<off_t>(op.next_offset());
    const ssize_t n = read ? ::preadv2(op.fd_, op.iov(), static_cast<int>(op.iov_count()), off, flags)
                           : ::pwritev2(op.fd_, op.iov(), static_cast<int>(op.iov_count()), off, flags);
    const int err = n < 0 ? errno : 0;
    if (err == EINTR) continue;
    if (n >= 0 || flags == 0) {
      // The op's own transfer rules, as both engines apply them: a short
      // transfer continues, 0 bytes ends a read (end of file), and the
      // result of a blocking call (below) is final, errors included.
      if (op.on_result(n >= 0 ? static_cast<int>(n) : -err) == detail::op_step::done) return true;
      continue;
    }
    // The filesystem cannot do this without blocking at all. On a regular
    // file io_uring would hand it to a kernel worker and the caller would
    // sleep until it is done: do the same work here, without the hand-offs.
    // (Not for pipes, sockets or devices: a blocking call there could wait
    // forever, where the ring can cancel the request at shutdown; nor on
    // FUSE or network filesystems, where it could wait for a daemon or the
    // network and shutdown() could not interrupt it.)
    if (err == EOPNOTSUPP && may_block_in_caller(op.fd_)) {
      refused = op.fd_;
      flags = 0;
      continue;
    }
    return false;  // EAGAIN (it would wait) or any error: the ring decides
  }
  return true;
}

// impl::calls_: the number of calls inside the ring, plus this bit once
// shutdown has begun. One word, so that a call learns both in one atomic step.
constexpr int closing_bit = 1 << 30;

}  // namespace

struct blocking_ring::impl {
  explicit impl(ring_options options)
      : fast_path_(options.caller_thread_fast_path),
        service_(asio::make_service<uring_service>(ctx_, with_any_issuer(options))),
        engine_(service_.engine()),
        work_(asio::make_work_guard(ctx_)),
        owner_([this] { ctx_.run(); }) {}

  static ring_options with_any_issuer(ring_options o) {
    // Callers submit from their own threads: a single-issuer ring would
    // refuse them (and `start_now` would decline).
    o.issuer = issuer_mode::any_thread;
    return o;
  }

  // Runs one call: validates, starts, waits.
  std::size_t run(blocking_call& op, std::error_code& ec) noexcept {
    if (ctx_.get_executor().running_in_this_thread()) {
      // The owner thread reaps completions; waiting here would wait for itself.
      ec = make_error_code(errc::would_deadlock);
      return 0;
    }
    if (calls_.fetch_add(1, std::memory_order_acq_rel) & closing_bit) {
      leave();
      ec = make_error_code(errc::owner_thread_terminated);
      return 0;
    }
    // Counted before shutdown began: shutdown waits for this call to leave.
    // If the engine shuts down before the op reaches it, the engine completes
    // the op at once (aborted); if after, the engine's shutdown completes it.
    op.validate();
    if (!op.ec_ && fast_path_ && run_in_caller(op)) {
      leave();
      ec = op.ec_;
      return op.transferred_;
    }
    // Reads and writes of pipes and sockets may wait indefinitely: the
    // engines keep them out of the capacity file IO needs.
    if (op.kind_ != detail::op_kind::fdatasync && op.kind_ != detail::op_kind::fsync)
      op.stream_ = !op.ec_ && is_stream_fd(op.fd_);
    // Why lending the fd and buffer to the engine is sound: see blocking_call.
    // If the engine threw here it might hold the op already; unwinding would
    // free the frame under it, so `noexcept` terminates instead.
    if (!engine_.start_now(&op)) engine_.start(&op);
    op.wait();
    ec = op.ec_;
    const std::size_t n = op.transferred_;
    leave();
    return n;
  }

  // The last access of a call to the ring: once the count is 0, shutdown may
  // return and the ring be destroyed, so only the address is used after the
  // decrement (FUTEX_WAKE on a freed address is harmless, see on_complete).
  void leave() noexcept {
    std::atomic<int>* word = &calls_;
    if (word->fetch_sub(1, std::memory_order_acq_rel) == (closing_bit | 1)) futex_wake(word, INT_MAX);
  }

  void shutdown() noexcept {
    calls_.fetch_or(closing_bit, std::memory_order_acq_rel);
    // Cancels what is in the kernel (a request already running there, such
    // as a write to a regular file, completes normally), waits until every
    // request is back, completes every op, and completes any op started
    // later at once. Idempotent; the io_context's shutdown calls it again.
    engine_.shutdown();
    // Every call inside now finishes without the owner thread's help.
    for (int v; ((v = calls_.load(std::memory_order_acquire)) & ~closing_bit) != 0;) futex_wait(&calls_, v);
    // The owner thread cannot join itself: the destructor does it.
    if (ctx_.get_executor().running_in_this_thread()) return;
    std::lock_guard lock(join_mutex_);
    if (owner_.joinable()) {
      work_.reset();
      ctx_.stop();
      owner_.join();
    }
  }

  const bool fast_path_;
  asio::io_context ctx_;
  uring_service& service_;
  detail::engine& engine_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  std::atomic<int> calls_{0};
  std::mutex join_mutex_;
  std::thread owner_;  // last: starts once everything above exists
};

blocking_ring::blocking_ring(ring_options options) : impl_(std::make_unique<impl>(options)) {}

blocking_ring::~blocking_ring() {
  if (impl_->ctx_.get_executor().running_in_this_thread()) {
    // The owner thread cannot join itself, and the io_context it runs would
    // be destroyed under it.
    std::abort();
  }
  impl_->shutdown();
}

namespace {

std::span<const std::byte> as_const(std::span<std::byte> b) noexcept { return {b.data(), b.size()}; }

void set_one_buffer(blocking_call& op, std::span<const std::byte> buf) noexcept {
  // One iovec fits in the op's inline array: no allocation, cannot throw.
  // The buffer is the caller's, valid until the call returns (see blocking_call).
  const asio::const_buffer b(buf.data(), buf.size());
  op.set_buffers(&b, &b + 1);
}

void throw_if(const std::error_code& ec, const char* what) {
  if (ec) throw std::system_error(ec, what);
}

}  // namespace

std::size_t blocking_ring::write_at(int fd, std::span<const std::byte> buf, std::uint64_t offset,
                                    std::error_code& ec) noexcept {
  blocking_call op(detail::op_kind::write_full);
  op.fd_ = fd;
  op.offset_ = offset;
  set_one_buffer(op, buf);
  return impl_->run(op, ec);
}

std::size_t blocking_ring::write_at(int fd, std::span<const std::byte> buf, std::uint64_t offset) {
  std::error_code ec;
  std::size_t n = write_at(fd, buf, offset, ec);
  throw_if(ec, "fsys::blocking_ring::write_at");
  return n;
}

std::size_t blocking_ring::read_at(int fd, std::span<std::byte> buf, std::uint64_t offset,
                                   std::error_code& ec) noexcept {
  blocking_call op(detail::op_kind::read_full);
  op.fd_ = fd;
  op.offset_ = offset;
  set_one_buffer(op, as_const(buf));
  return impl_->run(op, ec);
}

std::size_t blocking_ring::read_at(int fd, std::span<std::byte> buf, std::uint64_t offset) {
  std::error_code ec;
  std::size_t n = read_at(fd, buf, offset, ec);
  throw_if(ec, "fsys::blocking_ring::read_at");
  return n;
}

void blocking_ring::fdatasync(int fd, std::error_code& ec) noexcept {
  blocking_call op(detail::op_kind::fdatasync);
  op.fd_ = fd;
  impl_->run(op, ec);
}

void blocking_ring::fdatasync(int fd) {
  std::error_code ec;
  fdatasync(fd, ec);
  throw_if(ec, "fsys::blocking_ring::fdatasync");
}

std::size_t blocking_ring::write_at_linked_fsync(int fd, std::span<const std::byte> buf,
                                                 std::uint64_t offset, std::error_code& ec) noexcept {
  blocking_call op(detail::op_kind::write_linked_fsync);
  op.fd_ = fd;
  op.offset_ = offset;
  set_one_buffer(op, buf);
  return impl_->run(op, ec);
}

std::size_t blocking_ring::write_at_linked_fsync(int fd, std::span<const std::byte> buf,
                                                 std::uint64_t offset) {
  std::error_code ec;
  std::size_t n = write_at_linked_fsync(fd, buf, offset, ec);
  throw_if(ec, "fsys::blocking_ring::write_at_linked_fsync");
  return n;
}

void blocking_ring::shutdown() noexcept { impl_->shutdown(); }

fsys::backend blocking_ring::active_backend() const noexcept { return impl_->service_.active_backend(); }

std::uint32_t blocking_ring::setup_flags() const noexcept { return impl_->service_.setup_flags(); }

const fsys::ring_features& blocking_ring::ring_features() const noexcept { return probe_features(); }

std::error_code blocking_ring::fallback_reason() const noexcept { return impl_->service_.fallback_reason(); }

detail::engine_stats blocking_ring::stats() const noexcept { return impl_->service_.stats(); }

asio::io_context::executor_type blocking_ring::get_executor() const noexcept {
  return impl_->ctx_.get_executor();
}

}  // namespace fsys
