// fsys — blocking positional file IO for threads that are not asynchronous.
#pragma once

#include <fsys/detail/asio.hpp>
#include <fsys/detail/engine.hpp>
#include <fsys/engine_stats.hpp>
#include <fsys/features.hpp>
#include <fsys/options.hpp>

#include <boost/asio/io_context.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <system_error>

namespace fsys {

/// Blocking `write_at` / `read_at` / `fdatasync` / `write_at_linked_fsync`
/// for code that is not asynchronous (storage engines with their own
/// threads, tools, tests), carried out by an io_uring ring (or the psync
/// fallback) shared by every calling thread.
///
/// Each call blocks its caller until the kernel is done with the caller's
/// buffer; after the call returns — on success, on error and on shutdown —
/// the buffer and the fd are never touched again.
///
/// Threads. Every member is safe to call from any number of threads at once.
/// A call submits its request from the calling thread, so operations of
/// different threads are in flight together, and whichever thread enters the
/// kernel next also reaps the others' completions; no lock is held while an
/// operation is in the kernel. A request the kernel finishes during
/// submission returns without waking any other thread. The ring's owner
/// thread runs an `asio::io_context` that only collects the completions
/// nobody else has reaped and wakes their callers.
///
/// Fast path (`ring_options::caller_thread_fast_path`, on by default).
/// `read_at` and `write_at` first try `preadv2`/`pwritev2` with
/// `RWF_NOWAIT` in the calling thread: a page-cache hit costs one system
/// call, as `pread` does. On a regular file whose filesystem cannot do the
/// request without blocking (`EOPNOTSUPP`: buffered writes on ext4, tmpfs)
/// the calling thread does the blocking call itself, the work io_uring would
/// hand to a kernel worker while the caller sleeps. What has to wait goes to
/// the ring (a partial transfer continues there), as do `fdatasync` and
/// `write_at_linked_fsync` always.
///
/// Calls from the owner thread (from work posted to `get_executor()`) would
/// wait for the thread they run on: they fail at once with
/// `fsys::errc::would_deadlock` and do nothing.
///
/// Shutdown. `shutdown()` (also run by the destructor) refuses new calls
/// with `fsys::errc::owner_thread_terminated`, cancels the calls in progress
/// (a request already done in the kernel completes normally; one still
/// waiting, such as a read from an empty pipe, returns
/// `std::errc::operation_canceled`), waits until every call has returned,
/// then stops and joins the owner thread.
///
/// The fd is lent for the duration of one call: fsys neither duplicates nor
/// closes it, and the caller must not close it while a call using it runs.
///
/// @code
/// fsys::blocking_ring ring;                 // io_uring, or psync when refused
/// std::size_t n = ring.write_at_linked_fsync(fd, std::as_bytes(std::span(data)), 0);
/// @endcode
class blocking_ring {
 public:
  /// Starts the owner thread with an io_context whose `uring_service` is
  /// built from `options` (its `issuer` is always `issuer_mode::any_thread`:
  /// callers submit from their own threads).
  ///
  /// Throws `std::system_error` with `fsys::errc::io_uring_setup_failed`
  /// when the kernel refuses io_uring and `options.fallback` is
  /// `fallback_policy::require_io_uring`; with `automatic` the psync backend
  /// is used instead (see `active_backend()` and `fallback_reason()`).
  explicit blocking_ring(ring_options options = {});

  /// Runs `shutdown()`. Must not run on the owner thread (from work posted
  /// to `get_executor()`): it would join itself, so the program terminates.
  ~blocking_ring();

  blocking_ring(const blocking_ring&) = delete;
  blocking_ring& operator=(const blocking_ring&) = delete;

  /// Writes all of `buf` at `offset`, continuing after short writes.
  /// Returns `buf.size()`.
  /// @throws std::system_error on failure (see the `error_code` overload).
  std::size_t write_at(int fd, std::span<const std::byte> buf, std::uint64_t offset);
  /// Writes all of `buf` at `offset`. On failure sets `ec` and returns the
  /// bytes written before it (`ec` is cleared on success).
  std::size_t write_at(int fd, std::span<const std::byte> buf, std::uint64_t offset,
                       std::error_code& ec) noexcept;

  /// Reads until `buf` is full or the end of file is reached: a result
  /// smaller than `buf.size()` (0 when `offset` is at or past the end) means
  /// end of file and is not an error.
  /// @throws std::system_error on failure (see the `error_code` overload).
  std::size_t read_at(int fd, std::span<std::byte> buf, std::uint64_t offset);
  /// As above; on failure sets `ec` and returns the bytes read before it.
  std::size_t read_at(int fd, std::span<std::byte> buf, std::uint64_t offset,
                      std::error_code& ec) noexcept;

  /// `fdatasync(2)` on `fd`.
  /// @throws std::system_error on failure.
  void fdatasync(int fd);
  /// `fdatasync(2)` on `fd`; sets `ec` on failure.
  void fdatasync(int fd, std::error_code& ec) noexcept;

  /// Writes all of `buf` at `offset` and makes it durable: on io_uring, a
  /// write linked to an `fsync(DATASYNC)`; a short write is completed and
  /// synced again, never reported as success. On success all of `buf` is
  /// durable. Returns `buf.size()`.
  /// @throws std::system_error on failure.
  std::size_t write_at_linked_fsync(int fd, std::span<const std::byte> buf, std::uint64_t offset);
  /// As above. On failure sets `ec` and returns the bytes that were written
  /// *and* synced before it.
  std::size_t write_at_linked_fsync(int fd, std::span<const std::byte> buf, std::uint64_t offset,
                                    std::error_code& ec) noexcept;

  /// Refuses new calls (they return `fsys::errc::owner_thread_terminated`),
  /// cancels the requests of the calls in progress and waits until every
  /// call has returned, then stops and joins the owner thread. A request the
  /// kernel is already carrying out (a write to a regular file) completes
  /// normally; one still waiting (a read from an empty pipe) makes its call
  /// return `std::errc::operation_canceled`; one not yet submitted makes its
  /// call return `owner_thread_terminated` or `operation_canceled`.
  /// Idempotent and thread-safe; the accessors below stay usable afterwards.
  /// Called from the owner thread it does all this except the join, which
  /// the destructor does.
  void shutdown() noexcept;

  /// The backend in use (io_uring, or psync after a fallback).
  fsys::backend active_backend() const noexcept;
  /// IORING_SETUP_* flags of the ring (0 for the psync backend).
  std::uint32_t setup_flags() const noexcept;
  /// What the kernel's io_uring offers (the process-wide probe).
  const fsys::ring_features& ring_features() const noexcept;
  /// Why io_uring is not in use when the backend is psync (empty otherwise).
  std::error_code fallback_reason() const noexcept;
  /// Counters of the engine: io_uring_enter calls, SQEs, CQEs, completions
  /// (see `engine_stats`).
  engine_stats stats() const noexcept;

  /// The owner thread's executor, for running work on it. Work posted there
  /// runs on the owner thread; a blocking call made from it fails with
  /// `fsys::errc::would_deadlock`, and an exception escaping it terminates
  /// the program (as from any `std::thread`). Work not yet run when the owner
  /// thread stops is destroyed without running.
  asio::io_context::executor_type get_executor() const noexcept;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace fsys
