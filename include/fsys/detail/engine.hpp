// The interface between the service and the backend that runs operations.
#pragma once

#include <fsys/detail/asio.hpp>
#include <fsys/detail/op.hpp>
#include <fsys/options.hpp>

#include <cstdint>
#include <memory>
#include <mutex>
#include <system_error>

namespace fsys::detail {

class file_handle;

/// Counters for benchmarks and tests (monotonic, relaxed).
struct engine_stats {
  std::uint64_t ops_started = 0;      ///< operations handed to the engine
  std::uint64_t enter_calls = 0;      ///< io_uring_enter(2) calls (submits and waits)
  std::uint64_t sqes_submitted = 0;
  std::uint64_t cqes_reaped = 0;
  std::uint64_t ops_completed = 0;
  std::uint64_t reactor_wakeups = 0;  ///< eventfd wake-ups handled
  std::uint64_t queued_waits = 0;     ///< times an op waited for ring capacity
  /// io_uring engine: file-system operations run on its psync helper (opcode
  /// missing, refused by the ring, or disabled by FSYS_TEST_DISABLE_OPS).
  std::uint64_t fs_ops_on_helper = 0;
};

/// A backend. Every member is thread-safe. Operations are completed by
/// calling `op_base::complete_` outside the engine's locks, on a thread
/// running the io_context (or, for `start_now`, on the calling thread).
class engine {
 public:
  virtual ~engine() = default;

  /// Queues `op`; it is submitted in the next batch, which runs on the
  /// io_context. Never completes `op` inside this call.
  virtual void start(op_base* op) = 0;

  /// Submits `op` from the calling thread at once and reaps what is ready,
  /// completing ready operations on this thread. Used by blocking callers so
  /// that an operation the kernel finishes inline costs no thread hand-off.
  /// Returns false (and does nothing) when this engine cannot do that (a
  /// single-issuer ring), in which case the caller uses `start`.
  virtual bool start_now(op_base* op) = 0;

  /// Requests cancellation of `op` (from a cancellation slot). The handler
  /// still runs exactly once, after the kernel has released the buffers.
  virtual void cancel(op_base* op) = 0;

  /// Cancels every unfinished operation of `file` (the file is closing).
  virtual void cancel_file(file_handle* file) = 0;

  /// Finishes everything without invoking handlers: used when the
  /// io_context shuts down. Returns only when the kernel no longer uses any
  /// operation's buffers.
  virtual void shutdown() = 0;

  /// In a child process after fork(): stop using the parent's ring (without
  /// touching it), fail the operations that were in it with
  /// `errc::forked_process`, and build a new ring for this process.
  virtual void notify_fork_child() {}

  /// Registers buffers with the ring (IORING_REGISTER_BUFFERS) for
  /// READ_FIXED/WRITE_FIXED. The psync backend accepts and ignores them.
  virtual std::error_code register_buffers(const iovec*, unsigned) { return {}; }
  virtual std::error_code unregister_buffers() { return {}; }

  virtual fsys::backend kind() const noexcept = 0;
  /// IORING_SETUP_* flags of the ring (0 for psync).
  virtual std::uint32_t setup_flags() const noexcept { return 0; }
  virtual engine_stats stats() const noexcept = 0;

 protected:
  /// Registers / unregisters an op in its file's list; call under the engine lock.
  static void link_to_file(op_base* op) noexcept;
  static void unlink_from_file(op_base* op) noexcept;
  /// Completes every op in `q`. If a handler throws, the ops not yet
  /// completed are given to `on_throw` (to be completed later) and the
  /// exception propagates, as Asio propagates handler exceptions out of run().
  template <class Requeue>
  static void complete_all(op_queue& q, Requeue&& on_throw);
};

template <class Requeue>
void engine::complete_all(op_queue& q, Requeue&& on_throw) {
  while (op_base* op = q.pop()) {
    try {
      op->complete_(op, true);
    } catch (...) {
      if (!q.empty()) on_throw(q);
      throw;
    }
  }
}

}  // namespace fsys::detail

namespace fsys::detail {

/// Incremented in every child process created by fork() (pthread_atfork), so
/// an engine can tell, with one relaxed load, that it runs in a child.
std::uint64_t fork_generation() noexcept;

/// Builds the io_uring engine for `ctx`; on failure returns null and sets
/// `ec` to the kernel's error.
std::unique_ptr<engine> make_uring_engine(asio::io_context& ctx, const ring_options& options,
                                          std::error_code& ec);
/// Builds the pread/pwrite engine for `ctx`.
std::unique_ptr<engine> make_psync_engine(asio::io_context& ctx, const ring_options& options);

}  // namespace fsys::detail
