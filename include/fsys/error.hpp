// fsys — positional file IO on io_uring for Boost.Asio.
//
// Error reporting. The library's own failures are `fsys::errc` values in the
// category named "fsys" (`fsys::error_category()` for `std::error_code`,
// `fsys::boost_error_category()` for `boost::system::error_code`: the same
// category seen from both libraries); operating-system failures are reported exactly as
// the kernel gave them, as `std::error_code(errno, std::system_category())`
// (or the equivalent `boost::system::error_code` in asynchronous completion
// handlers, which converts to and compares equal with the std one).
//
// Contract, stated once: every function that is not `noexcept` may throw
// `std::system_error` carrying one of these codes.
#pragma once

#include <boost/system/error_category.hpp>
#include <boost/system/is_error_code_enum.hpp>

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
  /// The file's io_context was destroyed (or is being destroyed: its
  /// services have shut down). A file that outlives its io_context keeps only
  /// its descriptor: `close()`, `release()` and the destructor work, every
  /// other call fails with this error (an asynchronous one throws it from the
  /// initiating function when its handler would run on that context). See
  /// docs/guide.md, "A file that outlives its io_context".
  service_shut_down,
  /// `async_send_file`: the file became shorter than the range being sent
  /// while the operation ran (it was truncated, or replaced in place). The
  /// range was not sent in full, and bytes already in the socket may not be
  /// the file's (see `async_send_file`): close the connection.
  file_truncated,
  /// Invalid argument: the open flags have bits the kernel does not know
  /// (`async_open`, `co_open`). Compares equal to `std::errc::invalid_argument`.
  invalid_open_flags,
  /// Invalid argument: `open_how::resolve` has bits that are not `RESOLVE_*`
  /// flags. Compares equal to `std::errc::invalid_argument`.
  invalid_resolve_flags,
  /// Invalid argument: the `rename_flags` value is not `none`, `no_replace`
  /// or `exchange`. Compares equal to `std::errc::invalid_argument`.
  invalid_rename_flags,
  /// Invalid argument: a mode has bits outside 07777
  /// (`async_create_directory`). Compares equal to `std::errc::invalid_argument`.
  invalid_mode,
  /// `async_read_file` (`co_read_file`): the file holds more bytes than the
  /// limit the caller gave (or than the dynamic buffer's `max_size()`).
  /// Nothing was read into the buffer. Compares equal to
  /// `std::errc::file_too_large`.
  read_limit_exceeded,
  // Untorn writes (`async_write_atomic_at`, `async_write_atomic_linked_fsync`).
  // The kernel's rules for a write flagged RWF_ATOMIC (Linux 6.11+,
  // generic_atomic_write_valid and the filesystems' write_iter): the file
  // reports STATX_ATTR_WRITE_ATOMIC; the write is direct IO; its length is a
  // power of two within [stx_atomic_write_unit_min, stx_atomic_write_unit_max];
  // its offset is a multiple of its length; it has at most
  // stx_atomic_write_segments_max buffers. fsys checks each before the write
  // reaches the kernel and refuses it with the value below; a refusal the
  // kernel still makes (a new rule, a limit that changed) comes back as the
  // kernel's errno, unchanged.
  /// The file (its filesystem or device) or the kernel does not support
  /// untorn writes: statx reports no STATX_ATTR_WRITE_ATOMIC, or no limits.
  /// Compares equal to `std::errc::operation_not_supported`.
  atomic_write_unsupported,
  /// The file is not open with O_DIRECT, which Linux (up to at least 6.18)
  /// requires for RWF_ATOMIC (the kernel answers EOPNOTSUPP). Compares equal
  /// to `std::errc::operation_not_supported`.
  atomic_write_needs_direct_io,
  /// The write's length is not a power of two. Compares equal to
  /// `std::errc::invalid_argument`.
  atomic_write_length_not_power_of_two,
  /// The write's length is outside [`atomic_write_unit_min`,
  /// `atomic_write_unit_max`] of the file (`file_status`). Compares equal to
  /// `std::errc::invalid_argument`.
  atomic_write_length_out_of_range,
  /// The write's offset is not a multiple of its length. Compares equal to
  /// `std::errc::invalid_argument`.
  atomic_write_misaligned_offset,
  /// The write has more buffers than `atomic_write_segments_max` of the file
  /// (1 on XFS and ext4: one contiguous buffer). Compares equal to
  /// `std::errc::invalid_argument`.
  atomic_write_too_many_segments,
  /// The kernel wrote fewer bytes than given to an untorn write without an
  /// error. It never should (RWF_ATOMIC is all or nothing); the write is not
  /// retried, and the range may hold old and new data. Compares equal to
  /// `std::errc::io_error`.
  atomic_write_short,
  /// A `durable_log` write or sync failed earlier: the page cache may have
  /// dropped the log's unsynced data (the kernel reports a writeback error
  /// once), so the log refuses appends until it is reopened, which recovers
  /// it from what is on disk. Compares equal to `std::errc::io_error`.
  log_failed,
  /// `durable_log` recovery found damage that is not a torn tail: a segment
  /// other than the last one has an invalid record or bytes after its last
  /// record, or segments do not follow each other without a gap. Nothing is
  /// deleted; the log does not open.
  log_corrupt,
  /// A `durable_log` read at a position that is not the start of a durable
  /// record: before the first segment (dropped by `async_truncate_front`), at
  /// or past the durable end, or inside a record (its checksum fails).
  /// Compares equal to `std::errc::invalid_argument`.
  log_bad_position,
  /// `async_copy_file` (`co_copy_file`): the source and the target name the
  /// same file (same device and inode: the same path, a hard link, or a
  /// symlink to it). Nothing was changed. Compares equal to
  /// `std::errc::file_exists`, as `std::filesystem::copy_file` reports it.
  copy_onto_itself,
};

/// The category of `fsys::errc` as Boost.System sees it: its name is "fsys"
/// and an error's value is its `fsys::errc` value. A
/// `boost::system::error_code` holding an fsys error (as asynchronous
/// handlers receive it) has this category, so `ec.category().name()` and
/// `ec.value()` make a stable log line.
const boost::system::error_category& boost_error_category() noexcept;

/// The category of `fsys::errc` as `<system_error>` sees it: the same
/// category as `boost_error_category()` (Boost.System's standard view of it),
/// so its name is "fsys" too, and converting an fsys `std::error_code` to
/// `boost::system::error_code` and back keeps category and value: both
/// compare equal. Its default error conditions map each error to the nearest
/// `std::errc` (for example `not_open` compares equal to
/// `std::errc::bad_file_descriptor`).
const std::error_category& error_category() noexcept;

/// Makes a `std::error_code` from an `fsys::errc` (found by ADL). Boost.System
/// uses it too: `boost::system::error_code(fsys::errc::not_open)` and
/// `ec = fsys::errc::not_open` give a Boost error code in
/// `boost_error_category()`.
inline std::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), error_category()};
}

}  // namespace fsys

template <>
struct std::is_error_code_enum<fsys::errc> : std::true_type {};

/// @cond
// Lets Boost.System build its error codes from `fsys::errc` values.
template <>
struct boost::system::is_error_code_enum<fsys::errc> {
  static const bool value = true;
};
/// @endcond
