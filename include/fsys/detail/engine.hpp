// The interface between the service and the backend that runs operations.
#pragma once

#include <fsys/detail/asio.hpp>
#include <fsys/detail/op.hpp>
#include <fsys/engine_stats.hpp>
#include <fsys/options.hpp>

#include <cstdint>
#include <memory>
#include <mutex>
#include <system_error>

namespace fsys::detail {

class file_handle;

/// The engine's counters are the public `fsys::engine_stats`.
using engine_stats = fsys::engine_stats;

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

  /// Requests cancellation of the op `link` names, if it has not finished
  /// (from a cancellation slot; `type` is an `asio::cancellation_type`). The
  /// handler still runs exactly once, after the kernel has released the
  /// buffers. `total` alone is honoured only while nothing has been
  /// transferred (Asio: no observable side effect). Returns false, doing
  /// nothing, when `link.owner_` is no longer this engine (checked under
  /// its lock): the caller then forwards the request to the new owner.
  virtual bool cancel(cancel_link& link, unsigned type) = 0;

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

  /// Reads the io-wq worker limits of the calling thread ([0] bounded,
  /// [1] unbounded; see `uring_service::iowq_max_workers`).
  virtual std::error_code iowq_max_workers(std::uint32_t* values) {
    values[0] = values[1] = 0;
    return std::make_error_code(std::errc::operation_not_supported);
  }

  /// Whether a read or write the calling thread starts now should go to the
  /// engine without an inline attempt (`ring_options::inline_fast_path`),
  /// because a batch is forming: enough other reads and writes are started
  /// on the ring this thread would use and their handlers have not run yet
  /// (in the kernel, queued, or reaped and about to be handed out), so the
  /// new one joins them in one `io_uring_enter` instead of costing a system
  /// call of its own. Lock-free; false where batching buys nothing (psync).
  virtual bool batch_forming() noexcept { return false; }

  /// The count `batch_forming` reads for the calling thread (null when it
  /// has none): a read or write the inline fast path completed, whose
  /// handler is queued on this engine's io_context, is added to it until that
  /// handler runs, so that operations waiting to be resumed count the same
  /// whichever path completed them. Lives as long as the engine.
  virtual std::atomic<int>* pending_counter() noexcept { return nullptr; }

  virtual fsys::backend kind() const noexcept = 0;
  /// IORING_SETUP_* flags of the ring (0 for psync).
  virtual std::uint32_t setup_flags() const noexcept { return 0; }
  virtual engine_stats stats() const noexcept = 0;

 protected:
  /// Registers / unregisters an op in its file's list; call under the engine lock.
  static void link_to_file(op_base* op) noexcept;
  static void unlink_from_file(op_base* op) noexcept;

  /// Whether a cancellation request of `type` applies to `op` now (lock held).
  static bool cancel_applies(const op_base* op, unsigned type) noexcept;

  /// Called under the engine lock when `op`'s result is final: detaches its
  /// cancellation link, applies the sync rules and moves the op, and every
  /// held sync of its file that may now complete, to `done`.
  ///
  /// Sync rules (per open file, i.e. per `file_handle`). The kernel reports
  /// a writeback error once per open file description: of two syncs in
  /// flight on one file, the one that samples the error fails and the other
  /// may return 0 although the failed pages were its own. So a sync's
  /// success is reported only when no sync of the same file that was
  /// started before it finished has failed: a successful sync is held until
  /// those have finished, and once any sync of the file has failed, every
  /// sync of that file that overlapped it or came later fails with the same
  /// error (sticky, as the kernel's errseq is not).
  void settle(op_base* op, op_queue& done) noexcept;
  /// Takes every held sync (shutdown).
  void take_held(op_queue& out) noexcept;

 private:
  op_base* held_ = nullptr;  ///< held syncs (list through held_next_/held_prev_)
  void release_held(file_handle* f, op_queue& done) noexcept;

 protected:
  /// Completes every op in `q`, calling `before_each(op)` just before each
  /// handler. If a handler throws, the ops not yet completed are given to
  /// `on_throw` (to be completed later) and the exception propagates, as
  /// Asio propagates handler exceptions out of run().
  template <class Requeue, class BeforeEach>
  static void complete_all(op_queue& q, Requeue&& on_throw, BeforeEach&& before_each);
  template <class Requeue>
  static void complete_all(op_queue& q, Requeue&& on_throw) {
    complete_all(q, on_throw, [](op_base*) noexcept {});
  }
};

template <class Requeue, class BeforeEach>
void engine::complete_all(op_queue& q, Requeue&& on_throw, BeforeEach&& before_each) {
  while (op_base* op = q.pop()) {
    before_each(op);
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

/// Builds the io_uring engine for `ctx`: one ring, or a `ring_set` of rings
/// (lib/ring_set.cpp) when several threads may run the context. On failure
/// returns null and sets `ec` to the kernel's error.
std::unique_ptr<engine> make_uring_engine(asio::execution_context& ctx, const ring_options& options,
                                          std::error_code& ec);

/// Whether `op` may run on any ring of a ring_set (reads and writes without
/// registered buffers); every other kind runs on the set's first ring.
inline bool runs_on_any_ring(const op_base* op) noexcept {
  switch (op->kind_) {
    case op_kind::read_some:
    case op_kind::read_full:
    case op_kind::write_some:
    case op_kind::write_full:
      return op->buf_index_ < 0;
    default:
      return false;
  }
}

/// What a ring asks the ring_set it belongs to (lib/ring_set.cpp).
class ring_group {
 public:
  /// The calling thread runs one of the set's handlers, so it runs the
  /// io_context: counted once per thread, until it exits or runs none of
  /// the set's handlers for a while (it left run()).
  virtual void note_runner() noexcept = 0;
  /// Asked by `from`'s finish() before it completes a batch: the ring that
  /// should take over `how_many` of `from`'s chains (operations whose
  /// handlers start the next one on the ring that completed them), or null
  /// to keep them all.
  virtual engine* share_target(engine& from, int& how_many) noexcept = 0;

 protected:
  ~ring_group() = default;
};

/// Where a ring stands in a ring_set.
struct shard_params {
  ring_group* set = nullptr;  ///< the set, or null for a ring alone
  bool home = true;           ///< the first ring: runs every kind, keeps the file lists
  int attach_wq_fd = -1;      ///< IORING_SETUP_ATTACH_WQ to this ring fd
};
/// Builds one io_uring ring engine (lib/uring_engine.cpp).
std::unique_ptr<engine> make_uring_ring(asio::execution_context& ctx, const ring_options& options,
                                        const shard_params& shard, std::error_code& ec);
/// The ring fd of an engine made by `make_uring_ring`.
int ring_fd_of(engine& e) noexcept;
/// The ring of `set` whose finish() the calling thread is running (whose
/// handlers it is completing), or null.
engine* finishing_ring(const ring_group* set) noexcept;
/// The chains of a ring made by `make_uring_ring`: operations of the kinds
/// `runs_on_any_ring` accepts that were started on it and whose handlers
/// have not run yet.
int ring_chains(engine& e) noexcept;
/// Moves `ops` (reaped by `from`, handlers not run yet) to `to`, whose next
/// pass completes them, so that the operations their handlers start go to
/// `to`. Returns false, moving nothing, when `to` is shutting down.
bool ring_adopt(engine& from, engine& to, op_queue& ops, int n);
/// Builds the pread/pwrite engine for `ctx`.
std::unique_ptr<engine> make_psync_engine(asio::execution_context& ctx, const ring_options& options);

}  // namespace fsys::detail
