// fsys — the execution-context service that owns the ring.
#pragma once

#include <fsys/detail/asio.hpp>
#include <fsys/detail/engine.hpp>
#include <fsys/detail/nowait.hpp>
#include <fsys/detail/service_life.hpp>
#include <fsys/engine_stats.hpp>
#include <fsys/options.hpp>

#include <boost/asio/execution_context.hpp>

#include <boost/asio/buffer.hpp>

#include <memory>
#include <span>
#include <system_error>

namespace fsys {

/// A buffer inside the set registered with `uring_service::register_buffers`:
/// `index` names the registered buffer, `data` any range within it.
struct fixed_buffer {
  /// The bytes to transfer: any range inside the registered buffer `index`.
  asio::mutable_buffer data;
  /// The position of the registered buffer in the span given to
  /// `register_buffers`.
  std::uint16_t index = 0;
};

/// Owns one io_uring ring (or the psync fallback) per execution context and
/// runs every `fsys::basic_file` operation of that context.
///
/// The ring's completions reach the context through its own reactor: an
/// eventfd registered with the ring is watched by the io_context, so
/// `io_context::run()` alone drives file IO together with sockets and timers.
/// Operations started while handlers run are gathered and submitted in one
/// `io_uring_enter` per run-loop pass; completions already present after a
/// submission are handled at once, without waiting for the reactor. Any
/// number of operations may be in flight: those beyond the ring's capacity
/// wait inside fsys for their turn.
///
/// The context must be an `asio::io_context`. Options are given the Asio way,
/// before first use:
/// @code
/// asio::io_context ctx;
/// asio::make_service<fsys::uring_service>(ctx, fsys::ring_options{.queue_depth = 64});
/// @endcode
/// Otherwise the first file created on the context makes the service with
/// default options.
///
/// Shutdown. When the io_context is destroyed (or `shutdown()` is called on
/// it), the service cancels every operation in flight, waits until the kernel
/// has released their buffers, destroys their handlers without invoking them,
/// and detaches every file made on it: such a file keeps only its descriptor
/// (see `errc::service_shut_down`).
class uring_service : public asio::execution_context::service {
 public:
  /// Asio's service identity.
  static inline asio::execution_context::id id;

  /// Builds the ring with default options. Throws `std::system_error` with
  /// `errc::io_uring_setup_failed` when io_uring is refused and the policy
  /// is `require_io_uring`, or `std::invalid_argument` when `ctx` is not an
  /// `asio::io_context`.
  explicit uring_service(asio::execution_context& ctx);
  /// Builds the ring (or the fallback) as `options` say.
  uring_service(asio::execution_context& ctx, ring_options options);
  ~uring_service() override;

  /// The backend in use.
  fsys::backend active_backend() const noexcept { return engine_->kind(); }
  /// The options the service was built with.
  const ring_options& options() const noexcept { return options_; }
  /// IORING_SETUP_* flags of the ring in use (0 for the psync backend).
  std::uint32_t setup_flags() const noexcept { return engine_->setup_flags(); }
  /// Why io_uring is not in use when the backend is psync (empty otherwise).
  std::error_code fallback_reason() const noexcept { return fallback_reason_; }
  /// Counters: operations started and completed, io_uring_enter calls, SQEs,
  /// CQEs (see `engine_stats`).
  engine_stats stats() const noexcept;

  /// Registers `buffers` with the ring (IORING_REGISTER_BUFFERS), so that
  /// `basic_file::async_read_fixed_at` / `async_write_fixed_at` can use
  /// READ_FIXED/WRITE_FIXED and skip the kernel's per-operation page pinning.
  /// The memory must stay valid until `unregister_buffers` or the context's
  /// destruction. One set at a time (EBUSY otherwise). On a single-thread
  /// ring, call it before the first operation or from the io_context's
  /// thread. On the psync backend it succeeds and changes nothing.
  void register_buffers(std::span<const asio::mutable_buffer> buffers, std::error_code& ec);
  /// As above; throws `std::system_error` on failure.
  void register_buffers(std::span<const asio::mutable_buffer> buffers);
  /// Drops the registered buffers; no fixed operation may be in flight.
  void unregister_buffers(std::error_code& ec);
  /// As above; throws `std::system_error` on failure.
  void unregister_buffers();

  /// Asio's fork notification: in the child (`fork_child`), the service
  /// leaves the parent's ring alone and builds its own, so files keep working.
  /// Without it, a child's new operations fail with `errc::forked_process`.
  void notify_fork(asio::execution_context::fork_event event) override;

  /// @private The engine that runs operations.
  detail::engine& engine() noexcept { return *engine_; }
  /// @private What a file made on this service keeps to learn, at any time
  /// (after the io_context's destruction too), whether the service still runs.
  detail::service_token life_token() const noexcept { return life_.token(); }

  /// The io-wq worker limits in effect for the calling thread's io-wq
  /// ([0]: bounded, [1]: unbounded), read back from the kernel
  /// (`io_uring_register_iowq_max_workers` with zeros). The thread must have
  /// submitted to this ring (run the io_context while an operation started);
  /// before that it has no io-wq and both are 0. Fails with
  /// `operation_not_supported` on the psync backend.
  std::error_code iowq_max_workers(std::uint32_t (&values)[2]) const;

  /// Whether asynchronous reads and writes try the inline fast path
  /// (`ring_options::inline_fast_path`, overridden by FSYS_INLINE_FAST_PATH=0/1).
  bool inline_fast_path() const noexcept { return inline_fast_path_; }
  /// The fast path's counters (see `engine_stats::inline_reads`).
  detail::inline_counters& inline_counters() noexcept { return inline_counters_; }

 private:
  void shutdown() override;

  // First: the files' tokens are valid from the service's first moment.
  detail::service_life life_;
  ring_options options_;
  std::error_code fallback_reason_;
  std::unique_ptr<detail::engine> engine_;
  bool inline_fast_path_ = true;
  detail::inline_counters inline_counters_;
};

}  // namespace fsys
