// fsys — copying a file without blocking the io_context: reflink when the
// filesystem can, else copy_file_range, else reads and writes through the
// ring, into a temporary renamed over the target (std::filesystem::copy_file,
// tokio::fs::copy, cp).
#pragma once

#include <fsys/filesystem.hpp>

#include <atomic>
#include <cstdint>
#include <functional>

namespace fsys {

/// What `async_copy_file` does when the target name exists
/// (`std::filesystem::copy_options`: none, `skip_existing`,
/// `overwrite_existing`).
enum class copy_existing {
  /// Fail with `EEXIST` (`std::errc::file_exists`); the target is untouched.
  /// A source under 1 MiB is copied before the target is looked at (the
  /// name is taken only if free, by `linkat`), which saves a `statx` per
  /// file when many small files go to new names; a larger one fails before
  /// any data is copied.
  fail,
  /// Do nothing: complete without error, with 0 bytes copied, and store
  /// true through the `skipped` pointer of `copy_options` when it is set;
  /// the target is untouched.
  skip,
  /// Replace the target atomically (a rename over it).
  overwrite,
};

/// Options of `async_copy_file`.
struct copy_options {
  /// An existing target: fail, skip or overwrite (see `copy_existing`).
  copy_existing existing = copy_existing::fail;
  /// Also give the copy the source's owner and group (`fchown`; needs the
  /// privilege to do so, else `EPERM`), and then its set-user-ID,
  /// set-group-ID and sticky bits. The permission bits (0777) are always
  /// copied, whatever the umask, as `cp` does for a new file.
  bool preserve_owner = false;
  /// Also give the copy the source's access and modification times
  /// (`futimens`), as `cp -p` does.
  bool preserve_times = false;
  /// Durable when the operation completes without error: the copy's data
  /// and metadata are synced (`fsync`) before it gets the target's name, and
  /// the directory holding the name is synced after.
  bool durable = false;
  /// Try a reflink first (`ioctl(FICLONE)`): the copy shares the source's
  /// blocks, copy-on-write (XFS with reflink, Btrfs, bcachefs). Off: the data
  /// is copied (as `cp --reflink=never`; `copy_file_range` may still share
  /// blocks on such a filesystem, see `kernel_copy`).
  bool reflink = true;
  /// Try `copy_file_range(2)` (in-kernel copy, 64 MiB per call) when no
  /// reflink was made. Off, or refused by the kernel (`EXDEV` across some
  /// filesystems, `EOPNOTSUPP`, `EINVAL`, `ENOSYS`): reads and writes
  /// through the ring, two 4 MiB buffers in flight.
  bool kernel_copy = true;
  /// Called with (bytes copied so far, the source's size at the start) each
  /// time data landed: after each 64 MiB `copy_file_range` call, each 4 MiB
  /// write, or once for a reflink; the bytes only grow, and the last call
  /// reports all the bytes copied (also for an empty file). Called from the
  /// operation's intermediate steps (on the handler's associated executor),
  /// never concurrently with itself; it must not block.
  std::function<void(std::uint64_t copied, std::uint64_t total)> progress;
  /// Where bytes are added as they land (`fetch_add`, relaxed), so that
  /// another thread can watch, or several copies add to one total.
  std::atomic<std::uint64_t>* counter = nullptr;
  /// Set to true when the copy was skipped (`copy_existing::skip` and the
  /// target existed), to false otherwise, before the handler runs.
  bool* skipped = nullptr;
};

/// Copies the regular file `from` to `to`. Completes with
/// `(error_code, std::uint64_t bytes_copied)`.
///
/// The target never holds a partial copy under its name: the data goes to a
/// temporary file in the target's directory (unnamed, `O_TMPFILE`, where the
/// filesystem allows it; else `.fsys-tmp.<random>`), which gets the
/// target's name only when complete — `linkat` when the name is free (an
/// existing name is never replaced by it), a rename over the target for
/// `copy_existing::overwrite`. On any error or cancellation the temporary
/// is removed; a crash may leave only a named temporary behind.
///
/// The data: a reflink (`FICLONE`) when `options.reflink` and the
/// filesystem supports it; else `copy_file_range` in 64 MiB calls when
/// `options.kernel_copy`; else (or when the kernel refuses either) reads and
/// writes through the ring, the read of one 4 MiB piece in flight with the
/// write of the one before it. Reflink and `copy_file_range` have no io_uring
/// opcode: they run on worker threads (the psync backend's, or the io_uring
/// backend's helper), never on the io_context's thread. The copy holds the
/// bytes the source's `statx` reported when the copy started (a file that
/// shrinks meanwhile ends where its data ends; a file whose size `statx`
/// does not know, such as one in `/proc`, is read to its end through the
/// ring). Holes are not kept: a sparse
/// source becomes a file with its holes written as zeros, unless a reflink
/// (or a filesystem's own `copy_file_range`) shares its extents.
///
/// The copy gets the source's permission bits (0777), whatever the umask;
/// with the options also its owner, set-ID bits and times (`copy_options`).
/// Extended attributes and ACLs are not copied.
///
/// Errors: `from` missing (`ENOENT`) or not a regular file (`EISDIR` for a
/// directory, `operation_not_supported` otherwise); `to` a directory
/// (`EISDIR`); `to`'s directory missing (`ENOENT`); an existing target with
/// `copy_existing::fail` (`EEXIST`); `from` and `to` the same file
/// (`errc::copy_onto_itself`, equal to `std::errc::file_exists`: nothing is
/// truncated); an `existing` value outside the enumeration
/// (`std::errc::invalid_argument`); the kernel's errno otherwise. With an
/// error, `bytes_copied` is 0. If `to` is a symlink and is overwritten, the
/// link itself is replaced by the copy.
///
/// Cancellation (terminal, partial, total): the step in progress stops with
/// `operation_aborted` (a `copy_file_range` call or reflink already running
/// finishes first); the temporary is removed and the target is untouched,
/// unless the copy had already been given its name.
template <class ExecutorOrContext,
          BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code, std::uint64_t)) Token =
              asio::default_completion_token_t<detail::executor_of_t<ExecutorOrContext>>>
  requires detail::executor_or_context<ExecutorOrContext>
auto async_copy_file(ExecutorOrContext&& ex, path_view from, path_view to, copy_options options = {},
                     Token&& token = asio::default_completion_token_t<detail::executor_of_t<ExecutorOrContext>>());

}  // namespace fsys

#include <fsys/impl/copy.hpp>
