// fsys — positional file IO on io_uring for Boost.Asio.
//
// Error reporting. The library's own failures are `fsys::errc` values in the
// `fsys::error_category()`; operating-system failures are reported exactly as
// the kernel gave them, as `std::error_code(errno, std::system_category())`
// (or the equivalent `boost::system::error_code` in asynchronous completion
// handlers, which converts to and compares equal with the std one).
//
// Contract, stated once: every function that is not `noexcept` may throw
// `std::system_error` carrying one of these codes.
#pragma once

#include <string>
#include <system_error>

namespace fsys {

/// Errors raised by fsys itself, as opposed to errors the kernel returned.
enum class errc {
  /// `io_uring_setup(2)` (or registering the ring with the reactor) failed;
  /// the kernel's errno is kept where the API offers it
  /// (see `ring_features::setup_error`).
  io_uring_setup_failed = 1,
  /// A `blocking_ring` call arrived after its owner thread had stopped.
  owner_thread_terminated,
  /// An O_DIRECT operation's buffer address, file offset or length does not
  /// meet the alignment the kernel requires for the file.
  misaligned_direct_io,
  /// `offset + length` does not fit in `off_t`.
  offset_overflow,
  /// A blocking call was made from the thread that must complete it (for
  /// example a `blocking_ring` call from inside one of its completion
  /// handlers); it would deadlock, so it is refused.
  would_deadlock,
  /// The file is not open.
  not_open,
  /// The process forked and this io_context's ring belongs to the parent:
  /// call `ctx.notify_fork(asio::execution_context::fork_child)` in the
  /// child to give it a ring of its own. Also reported, in the child, for
  /// operations that were in the parent's ring at the time of the fork.
  forked_process,
  /// The operation needs an io_uring feature this ring does not have (for
  /// example registered buffers on the pread/pwrite backend).
  unsupported_by_backend,
  /// The file already holds a descriptor (`open`, `adopt`, `async_open` on an
  /// open file): close it first.
  already_open,
  /// The kernel could not run the request (it cancelled work it had not
  /// started because no io-wq worker could be created: RLIMIT_NPROC, a
  /// container's pids limit), and retrying did not help. Nothing was done.
  kernel_worker_unavailable,
  /// A ring built with `issuer_mode::single_thread` was used from a thread
  /// other than the one that first submitted to it. Such a ring accepts
  /// submissions only from that one thread.
  wrong_issuer_thread,
};

/// The category of `fsys::errc`; its name is "fsys".
const std::error_category& error_category() noexcept;

/// Makes a `std::error_code` from an `fsys::errc` (found by ADL).
inline std::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), error_category()};
}

}  // namespace fsys

template <>
struct std::is_error_code_enum<fsys::errc> : std::true_type {};
