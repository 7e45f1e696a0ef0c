// fsys — directories: listing (whole, or in batches as getdents64 returns
// them) and recursive removal that never follows a symlink out of the tree.
#pragma once

#include <fsys/detail/asio.hpp>
#include <fsys/detail/fs_args.hpp>
#include <fsys/error.hpp>
#include <fsys/file.hpp>
#include <fsys/filesystem.hpp>
#include <fsys/path_view.hpp>

#include <boost/asio/async_result.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace fsys {

/// The type of a directory entry, from the `d_type` the filesystem stores
/// in the directory (no extra system call per entry).
enum class entry_type : std::uint8_t {
  /// The filesystem did not say (`DT_UNKNOWN`: some filesystems, such as
  /// older XFS or some FUSE ones, never do): stat the entry to learn it.
  unknown,
  regular,    ///< a regular file (`DT_REG`)
  directory,  ///< a directory (`DT_DIR`)
  symlink,    ///< a symbolic link, not followed (`DT_LNK`)
  block,      ///< a block device (`DT_BLK`)
  character,  ///< a character device (`DT_CHR`)
  fifo,       ///< a named pipe (`DT_FIFO`)
  socket,     ///< a Unix domain socket (`DT_SOCK`)
};

/// One entry of a directory listing (`async_read_directory`): owns its name.
struct directory_entry {
  std::string name;                      ///< the name in the directory (no path; never "." or "..")
  entry_type type = entry_type::unknown;  ///< from `d_type`; `unknown` when the filesystem gives none
  std::uint64_t inode = 0;               ///< the inode number (`d_ino`)
  /// Memberwise equality.
  friend bool operator==(const directory_entry&, const directory_entry&) = default;
};

/// One entry of a batch (`basic_directory::async_next_batch`): its name
/// points into the directory object's buffer and is valid until the next
/// `async_next_batch`, `close`, `async_close` or the object's destruction.
struct directory_entry_view {
  std::string_view name;                 ///< the name in the directory (never "." or "..")
  entry_type type = entry_type::unknown;  ///< from `d_type`; `unknown` when the filesystem gives none
  std::uint64_t inode = 0;               ///< the inode number (`d_ino`)
};

namespace detail {
/// Size of the buffer one getdents64 call fills for a `basic_directory`
/// (what glibc's readdir uses, 32 KiB: about 800 entries of 20-byte names).
inline constexpr std::size_t directory_buffer_size = 32 * 1024;
/// The buffer `async_read_directory` and `async_remove_all` use (fewer
/// round trips to the worker for a large directory).
inline constexpr std::size_t listing_buffer_size = 64 * 1024;

template <class Executor>
struct directory_state;
}  // namespace detail

/// An open directory read incrementally: each `async_next_batch` is one
/// `getdents64(2)` call, run by a worker (io_uring has no opcode for it;
/// the io_uring backend uses its psync helper), never on the io_context's
/// threads. The entries of a batch are views into a buffer the object owns
/// and reuses, so listing a directory of 1,000,000 entries makes no
/// allocation per entry (nor per batch, once the first has sized the
/// object's vector of views).
///
/// Move-only; owns the directory's descriptor. At most one operation at a
/// time: a second `async_next_batch` started while one is pending completes
/// with `EINPROGRESS` and does nothing. Thread safety: as for `basic_file`
/// (distinct objects: safe; one object: not).
template <class Executor = asio::any_io_executor>
class basic_directory {
 public:
  /// The executor type.
  using executor_type = Executor;
  /// The descriptor type.
  using native_handle_type = int;

  /// A closed directory whose operations run on `ex`'s io_context; each
  /// batch is at most `buffer_size` bytes of kernel records (at least 1 KiB).
  explicit basic_directory(const executor_type& ex, std::size_t buffer_size = detail::directory_buffer_size);
  /// A closed directory whose operations run on `ctx`.
  template <class ExecutionContext>
    requires std::is_convertible_v<ExecutionContext&, asio::execution_context&>
  explicit basic_directory(ExecutionContext& ctx, std::size_t buffer_size = detail::directory_buffer_size)
      : basic_directory(executor_type(ctx.get_executor()), buffer_size) {}
  /// Takes `other`'s directory and position; `other` is left without one
  /// (only destruction and assignment are valid on it).
  basic_directory(basic_directory&& other) noexcept = default;
  /// Closes this directory (as `close()`) and takes `other`'s.
  basic_directory& operator=(basic_directory&& other) noexcept;
  basic_directory(const basic_directory&) = delete;
  basic_directory& operator=(const basic_directory&) = delete;
  /// Closes the directory: a pending batch completes with `operation_aborted`.
  ~basic_directory();

  /// The executor the operations complete on by default.
  executor_type get_executor() const noexcept;
  /// True when the directory is open.
  bool is_open() const noexcept;
  /// The directory's descriptor, or -1.
  native_handle_type native_handle() const noexcept;

  /// Opens the directory `path` (`open(2)` with O_RDONLY | O_DIRECTORY |
  /// O_CLOEXEC, through the ring or the psync workers). Completes with
  /// `(error_code)`: `ENOENT`, `ENOTDIR` (not a directory), `EACCES`, ...;
  /// `errc::already_open` when open. Cancellation: as `basic_file::async_open`.
  /// The handler runs on its associated executor, never inside this call.
  template <BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code))
                Token = asio::default_completion_token_t<executor_type>>
  auto async_open(path_view path, Token&& token = asio::default_completion_token_t<executor_type>());

  /// Reads the next batch of entries: one `getdents64(2)` call on a worker,
  /// as many entries as fit in the buffer. Completes with
  /// `(error_code, std::span<const directory_entry_view>)`: the batch, in the
  /// directory's order, without "." and ".."; an empty span without error at
  /// the end of the directory (and again on every later call). The views
  /// are valid until the next `async_next_batch`, `close`, `async_close` or
  /// destruction. Entries added or removed while the directory is read may or
  /// may not appear (as with `readdir`).
  ///
  /// Completion: the handler runs on its associated executor (default: the
  /// directory's), never inside this call. Cancellation: per-operation
  /// terminal/partial/total cancellation, `cancel()` and `close()` complete
  /// it with `operation_aborted` while the worker has not started the call;
  /// a call that ran reports its batch. Errors: getdents64's errno,
  /// `errc::not_open`, `EINPROGRESS` when another batch is pending.
  template <BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code, std::span<const directory_entry_view>))
                Token = asio::default_completion_token_t<executor_type>>
  auto async_next_batch(Token&& token = asio::default_completion_token_t<executor_type>());

  /// Closes the directory through the ring or the psync workers (as
  /// `basic_file::async_close`); a pending batch completes with
  /// `operation_aborted` first. Completes with `(error_code)`.
  template <BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code))
                Token = asio::default_completion_token_t<executor_type>>
  auto async_close(Token&& token = asio::default_completion_token_t<executor_type>());

  /// Closes the directory now (`close(2)` of a directory descriptor does not
  /// wait on the disk); a pending batch completes with `operation_aborted`.
  void close() noexcept;
  /// Cancels the pending batch (completes with `operation_aborted` unless
  /// the worker already made the call).
  void cancel() noexcept;

 private:
  std::shared_ptr<detail::directory_state<Executor>> s_;
};

/// A directory on the type-erased `asio::any_io_executor`.
using directory = basic_directory<>;

/// Lists the directory `path`: opens it, reads it in batches of one
/// `getdents64(2)` call each on a worker (never on the io_context's
/// threads), closes it. Completes with
/// `(error_code, std::vector<directory_entry>)`: every entry but "." and
/// "..", in the directory's order, with its name, `d_type` (`unknown` when
/// the filesystem gives none) and inode; an empty vector on error.
/// Errors: `ENOENT`, `ENOTDIR` (not a directory), `EACCES`, getdents64's
/// errno; an empty path or one with an embedded NUL: `invalid_argument`.
/// Cancellation: terminal cancellation stops it at the step in progress
/// (`operation_aborted`); the directory is always closed. The handler runs
/// once, on its associated executor, never inside this call.
template <class ExecutorOrContext,
          BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code, std::vector<directory_entry>)) Token =
              asio::default_completion_token_t<detail::executor_of_t<ExecutorOrContext>>>
  requires detail::executor_or_context<ExecutorOrContext>
auto async_read_directory(ExecutorOrContext&& ex, path_view path,
                          Token&& token = asio::default_completion_token_t<detail::executor_of_t<ExecutorOrContext>>());

/// Removes `path` and, if it is a directory, everything in it, as
/// `std::filesystem::remove_all` does, without ever following a symbolic
/// link: `path` itself is opened with O_DIRECTORY | O_NOFOLLOW (a symlink
/// there is removed, not its target, also when `path` ends with "/"); every
/// directory below is opened with
/// `openat(parent_fd, name, O_DIRECTORY | O_NOFOLLOW)` relative to its
/// parent's descriptor, and every entry is removed with `unlinkat(dir_fd,
/// name, 0 or AT_REMOVEDIR)` relative to its directory's descriptor (the
/// fix of CVE-2022-21658 in Rust's `remove_dir_all`). A directory replaced
/// by a symlink while the removal runs is therefore removed as a link; a
/// link never leads the removal out of the tree.
///
/// Depth first: one descriptor per level of the tree is open at a time
/// (each directory is closed when it is empty). The listing (getdents64) runs
/// on a worker; the opens, closes and unlinks go through the ring where it
/// has the opcodes (several unlinks of one directory in flight at once),
/// else through the psync workers.
///
/// Completes with `(error_code, std::uint64_t removed)`: the number of
/// entries removed, `path` included. `path` missing: no error, 0. On error
/// (`EACCES`, `EROFS`, `ENOTEMPTY` when entries appear meanwhile, ...) the
/// removal stops; `removed` counts what was removed before. Cancellation:
/// terminal cancellation stops it between steps with `operation_aborted`
/// (what was removed stays removed). The handler runs once, on its
/// associated executor, never inside this call.
template <class ExecutorOrContext,
          BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code, std::uint64_t)) Token =
              asio::default_completion_token_t<detail::executor_of_t<ExecutorOrContext>>>
  requires detail::executor_or_context<ExecutorOrContext>
auto async_remove_all(ExecutorOrContext&& ex, path_view path,
                      Token&& token = asio::default_completion_token_t<detail::executor_of_t<ExecutorOrContext>>());

}  // namespace fsys

#include <fsys/impl/directory.hpp>
