// fsys — file-system operations that never block the io_context: stat,
// rename, remove, directories, links, directory sync and durable replace.
#pragma once

#include <fsys/detail/asio.hpp>
#include <fsys/detail/file_op.hpp>
#include <fsys/detail/fs_args.hpp>
#include <fsys/error.hpp>
#include <fsys/file.hpp>
#include <fsys/file_status.hpp>
#include <fsys/path_view.hpp>
#include <fsys/uring_service.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/execution/executor.hpp>
#include <boost/asio/is_executor.hpp>
#include <boost/asio/query.hpp>

#include <fcntl.h>
#include <sys/stat.h>

#include <concepts>
#include <filesystem>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

namespace fsys {

/// How `async_rename` treats an existing destination (`renameat2(2)` flags).
enum class rename_flags {
  /// Replace the destination atomically if it exists (`rename(2)`).
  none = 0,
  /// Fail with `EEXIST` if the destination exists (RENAME_NOREPLACE).
  no_replace = 1,
  /// Swap source and destination atomically; both must exist (RENAME_EXCHANGE).
  exchange = 2,
};

namespace detail {

template <class T>
concept execution_context_type = std::is_convertible_v<T&, asio::execution_context&>;
template <class T>
concept executor_like = asio::execution::executor<T> || asio::is_executor<T>::value;
template <class T>
concept executor_or_context = executor_like<std::decay_t<T>> || execution_context_type<std::remove_reference_t<T>>;

/// The executor of an executor or of an execution context.
template <class T>
auto executor_of(T&& t) {
  if constexpr (execution_context_type<std::remove_reference_t<T>>)
    return t.get_executor();
  else
    return std::decay_t<T>(t);
}
template <class T>
using executor_of_t = decltype(executor_of(std::declval<T>()));

/// The arguments of a path operation, given to the initiation (the path
/// strings already copied into the operation's fs_args, so that `deferred`
/// keeps them).
struct path_request {
  path_request(op_kind k, std::string_view p, std::string_view p2 = {}) : kind(k), args(make_fs_args()) {
    args->path.assign(p);  // a recycled block keeps its buffers: no allocation
    args->path2.assign(p2);
  }
  op_kind kind;
  fs_args_ptr args;
  int dirfd = AT_FDCWD;
  int dirfd2 = AT_FDCWD;
  int flags = 0;
  mode_t mode = 0;
  bool check_path2 = false;
  /// An argument other than the paths that is known to be invalid: the
  /// operation completes with it (an `errc::invalid_*` value) and does nothing.
  errc bad_argument{};
};

template <class Executor, class Value>
struct path_initiation {
  Executor ex_;
  using executor_type = Executor;
  executor_type get_executor() const noexcept { return ex_; }

  template <class Handler>
  void operator()(Handler&& handler, path_request req) const {
    using op_t = file_op<std::decay_t<Handler>, Executor, false, Value>;
    op_t* op = op_t::create(std::forward<Handler>(handler), ex_, req.kind);
    op->fs_ = req.args.release();
    fs_args& a = *op->fs_;
    a.dirfd = req.dirfd;
    a.dirfd2 = req.dirfd2;
    a.flags = req.flags;
    a.mode = req.mode;
    // Bad input is refused here; the engine then completes the op from the
    // io_context without any system call.
    if (std::error_code ec = check_path(a.path))
      op->ec_ = ec;
    else if (req.check_path2 && (ec = check_path(a.path2)))
      op->ec_ = ec;
    else if (req.bad_argument != errc{})
      op->ec_ = req.bad_argument;
    engine& e = asio::use_service<uring_service>(asio::query(ex_, asio::execution::context)).engine();
    op->connect_cancellation(e);
    e.start(op);
  }
};

/// Starts one path operation on `ex`'s io_context; completes with
/// `void(error_code)` or, for a non-void `Value`, `void(error_code, Value)`.
template <class Value, class Executor, class Token>
auto async_path_op(const Executor& ex, path_request req, Token&& token) {
  if constexpr (std::is_void_v<Value>)
    return asio::async_initiate<Token, void(boost::system::error_code)>(path_initiation<Executor, void>{ex}, token,
                                                                        std::move(req));
  else
    return asio::async_initiate<Token, void(boost::system::error_code, Value)>(
        path_initiation<Executor, Value>{ex}, token, std::move(req));
}

}  // namespace detail

// Every function below:
// - takes an executor or an execution context (an `asio::io_context`) as its
//   first argument, like `asio::post`, and runs the operation on that
//   io_context's ring (or its psync workers);
// - takes any completion token; the handler runs once, on its associated
//   executor (default: the first argument's), never inside the call;
// - honours per-operation cancellation (terminal, partial, total): if the
//   kernel had not done the work the handler gets `operation_aborted`, else
//   the real result;
// - refuses bad input without changing anything: an empty path or one with
//   an embedded NUL gets `invalid_argument`; unknown flags and modes get an
//   `errc::invalid_*` value naming the argument (each compares equal to
//   `std::errc::invalid_argument`);
// - reports the kernel's errno otherwise (system category).
// Relative paths start from the current directory.

/// The metadata of the file `path` names (statx, following symlinks).
/// Completes with `(error_code, file_status)`.
template <class ExecutorOrContext,
          BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code, file_status)) Token =
              asio::default_completion_token_t<detail::executor_of_t<ExecutorOrContext>>>
  requires detail::executor_or_context<ExecutorOrContext>
auto async_stat(ExecutorOrContext&& ex, path_view path,
                Token&& token = asio::default_completion_token_t<detail::executor_of_t<ExecutorOrContext>>()) {
  detail::path_request r{detail::op_kind::statx, path.str()};
  r.flags = AT_STATX_SYNC_AS_STAT;
  return detail::async_path_op<file_status>(detail::executor_of(ex), std::move(r), std::forward<Token>(token));
}

/// Renames `from` to `to` (renameat2), replacing `to` atomically if it
/// exists. Completes with `(error_code)`.
template <class ExecutorOrContext,
          BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code)) Token =
              asio::default_completion_token_t<detail::executor_of_t<ExecutorOrContext>>>
  requires detail::executor_or_context<ExecutorOrContext> && (!std::is_same_v<std::decay_t<Token>, rename_flags>)
auto async_rename(ExecutorOrContext&& ex, path_view from, path_view to,
                  Token&& token = asio::default_completion_token_t<detail::executor_of_t<ExecutorOrContext>>()) {
  detail::path_request r{detail::op_kind::rename, from.str(), to.str()};
  r.check_path2 = true;
  return detail::async_path_op<void>(detail::executor_of(ex), std::move(r), std::forward<Token>(token));
}

/// Renames `from` to `to` as `flags` say: `no_replace` fails with `EEXIST`
/// when `to` exists, `exchange` swaps the two atomically (`ENOENT` unless
/// both exist). Flags outside the enumeration get `errc::invalid_rename_flags`
/// (which compares equal to `std::errc::invalid_argument`); a
/// filesystem without the flag answers `EINVAL`. Completes with `(error_code)`.
template <class ExecutorOrContext,
          BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code)) Token =
              asio::default_completion_token_t<detail::executor_of_t<ExecutorOrContext>>>
  requires detail::executor_or_context<ExecutorOrContext>
auto async_rename(ExecutorOrContext&& ex, path_view from, path_view to,
                  rename_flags flags,
                  Token&& token = asio::default_completion_token_t<detail::executor_of_t<ExecutorOrContext>>()) {
  detail::path_request r{detail::op_kind::rename, from.str(), to.str()};
  r.check_path2 = true;
  r.flags = static_cast<int>(flags);
  if (flags != rename_flags::none && flags != rename_flags::no_replace && flags != rename_flags::exchange)
    r.bad_argument = errc::invalid_rename_flags;
  return detail::async_path_op<void>(detail::executor_of(ex), std::move(r), std::forward<Token>(token));
}

/// Removes the name `path` (unlink; a directory gets `EISDIR`: see
/// `async_remove_directory`). Completes with `(error_code)`.
template <class ExecutorOrContext,
          BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code)) Token =
              asio::default_completion_token_t<detail::executor_of_t<ExecutorOrContext>>>
  requires detail::executor_or_context<ExecutorOrContext>
auto async_remove(ExecutorOrContext&& ex, path_view path,
                  Token&& token = asio::default_completion_token_t<detail::executor_of_t<ExecutorOrContext>>()) {
  detail::path_request r{detail::op_kind::unlink, path.str()};
  return detail::async_path_op<void>(detail::executor_of(ex), std::move(r), std::forward<Token>(token));
}

/// Removes the empty directory `path` (unlinkat with AT_REMOVEDIR;
/// `ENOTEMPTY` when it is not empty). Completes with `(error_code)`.
template <class ExecutorOrContext,
          BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code)) Token =
              asio::default_completion_token_t<detail::executor_of_t<ExecutorOrContext>>>
  requires detail::executor_or_context<ExecutorOrContext>
auto async_remove_directory(ExecutorOrContext&& ex, path_view path,
                            Token&& token =
                                asio::default_completion_token_t<detail::executor_of_t<ExecutorOrContext>>()) {
  detail::path_request r{detail::op_kind::unlink, path.str()};
  r.flags = AT_REMOVEDIR;
  return detail::async_path_op<void>(detail::executor_of(ex), std::move(r), std::forward<Token>(token));
}

/// Creates the directory `path` with permission bits `mode` (less the
/// umask); `EEXIST` if the name exists. Not durable until the parent
/// directory is synced (`async_sync_directory`). Completes with `(error_code)`.
template <class ExecutorOrContext,
          BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code)) Token =
              asio::default_completion_token_t<detail::executor_of_t<ExecutorOrContext>>>
  requires detail::executor_or_context<ExecutorOrContext>
auto async_create_directory(ExecutorOrContext&& ex, path_view path, mode_t mode,
                            Token&& token =
                                asio::default_completion_token_t<detail::executor_of_t<ExecutorOrContext>>()) {
  detail::path_request r{detail::op_kind::mkdir, path.str()};
  r.mode = mode;
  if ((mode & ~static_cast<mode_t>(07777)) != 0) r.bad_argument = errc::invalid_mode;
  return detail::async_path_op<void>(detail::executor_of(ex), std::move(r), std::forward<Token>(token));
}

/// Creates the directory `path` and every missing parent, each with `mode`
/// (less the umask), as `std::filesystem::create_directories` does: tries
/// `path` first, walks up while a parent is missing, then creates each
/// missing directory on the way down. A directory made meanwhile by someone
/// else counts as existing. Completes with `(error_code, bool created)`:
/// `created` is false when `path` already was a directory (not an error);
/// `ENOTDIR` (or `EEXIST` for `path` itself) when a component is not a
/// directory. Not durable until the parents are synced.
template <class ExecutorOrContext,
          BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code, bool)) Token =
              asio::default_completion_token_t<detail::executor_of_t<ExecutorOrContext>>>
  requires detail::executor_or_context<ExecutorOrContext>
auto async_create_directories(ExecutorOrContext&& ex, path_view path, mode_t mode = 0777,
                              Token&& token =
                                  asio::default_completion_token_t<detail::executor_of_t<ExecutorOrContext>>());

/// Creates `new_path` as a second name (hard link) of the file `existing`
/// (linkat, not following a symlink at `existing`). Completes with `(error_code)`.
template <class ExecutorOrContext,
          BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code)) Token =
              asio::default_completion_token_t<detail::executor_of_t<ExecutorOrContext>>>
  requires detail::executor_or_context<ExecutorOrContext>
auto async_create_hard_link(ExecutorOrContext&& ex, path_view existing,
                            path_view new_path,
                            Token&& token =
                                asio::default_completion_token_t<detail::executor_of_t<ExecutorOrContext>>()) {
  detail::path_request r{detail::op_kind::link, existing.str(), new_path.str()};
  r.check_path2 = true;
  return detail::async_path_op<void>(detail::executor_of(ex), std::move(r), std::forward<Token>(token));
}

/// Creates the symbolic link `link_path` pointing to `target` (symlinkat;
/// `target` is stored as given and need not exist). Completes with `(error_code)`.
template <class ExecutorOrContext,
          BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code)) Token =
              asio::default_completion_token_t<detail::executor_of_t<ExecutorOrContext>>>
  requires detail::executor_or_context<ExecutorOrContext>
auto async_create_symlink(ExecutorOrContext&& ex, path_view target,
                          path_view link_path,
                          Token&& token =
                              asio::default_completion_token_t<detail::executor_of_t<ExecutorOrContext>>()) {
  detail::path_request r{detail::op_kind::symlink, target.str(), link_path.str()};
  r.check_path2 = true;
  return detail::async_path_op<void>(detail::executor_of(ex), std::move(r), std::forward<Token>(token));
}

/// Makes the entries of the directory `dir_path` durable: names created,
/// renamed or removed in it before this call survive a crash or power loss
/// once it completes without error. Opens the directory (O_RDONLY |
/// O_DIRECTORY), fsyncs it and closes it, each through the ring. Completes
/// with `(error_code)`: the first error (an fsync error is final, see
/// docs/durability.md; a close error is reported when nothing failed before).
/// Cancellation: terminal cancellation stops it at the step in progress
/// (`operation_aborted`: nothing is promised); the directory is always closed.
template <class ExecutorOrContext,
          BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code)) Token =
              asio::default_completion_token_t<detail::executor_of_t<ExecutorOrContext>>>
  requires detail::executor_or_context<ExecutorOrContext>
auto async_sync_directory(ExecutorOrContext&& ex, path_view dir_path,
                          Token&& token =
                              asio::default_completion_token_t<detail::executor_of_t<ExecutorOrContext>>());

/// Options of `async_replace_file`.
struct replace_options {
  /// Permission bits of the new file (less the umask, as `open(2)` applies
  /// them); 07777 at most, else `errc::invalid_mode`. Not used when the old
  /// file's mode is kept.
  mode_t mode = 0666;
  /// When `path` exists, the new file gets the old file's permission bits
  /// (exactly, umask not applied) and owner and group (stat of `path`,
  /// following symlinks; then `fchown` and `fchmod` of the temporary before
  /// anything is written to it, and `fsync` instead of `fdatasync` so that
  /// they are durable with the content). Giving a file to another owner needs
  /// privilege: when the caller may not (`EPERM`), the replace fails and the
  /// old file stays. When `path` does not exist, `mode` applies.
  bool keep_mode_and_owner = false;
};

namespace detail {
/// A content writer for `async_replace_file`: called once as
/// `writer(temp_file, handler)`.
template <class Writer>
concept replace_content_writer =
    !asio::is_const_buffer_sequence<std::decay_t<Writer>>::value &&
    std::invocable<std::decay_t<Writer>&, basic_file<asio::any_io_executor>&,
                   asio::any_completion_handler<void(boost::system::error_code)>>;
}  // namespace detail

/// Replaces the content of `path` by `data` (a buffer sequence), durably and
/// atomically: after success `path` holds exactly `data` (content and
/// directory entry are durable); after a crash or power loss at any moment
/// `path` holds either its complete old content (if it existed) or the
/// complete new content.
///
/// How: a temporary file in the same directory — unnamed (`O_TMPFILE`) where
/// the filesystem allows it, then linked under a temporary name; otherwise
/// created under a temporary name `.fsys-tmp.<random>` (26 bytes, so that
/// any name the filesystem accepts works, up to NAME_MAX) — is written
/// in full, fdatasync'ed and closed, renamed over `path`, and the directory
/// is synced. On failure the temporary is removed. A crash may leave a
/// temporary behind only under that dotted temporary name, never under a
/// name that looks like `path`. The new file gets `options.mode` less the
/// umask (default 0666), or, with `options.keep_mode_and_owner`, the old
/// file's mode, owner and group (extended attributes are not carried over);
/// if `path` is a symlink, the link itself is replaced by the new file.
/// `data`'s memory must stay valid until the handler runs (the sequence
/// object itself is copied).
///
/// Completes with `(error_code)`. Cancellation: terminal cancellation stops
/// it at the step in progress with `operation_aborted`; before the rename the
/// old content stays, after it the new content is in place but its directory
/// entry is not known to be durable.
template <class ExecutorOrContext, class ConstBufferSequence,
          BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code)) Token =
              asio::default_completion_token_t<detail::executor_of_t<ExecutorOrContext>>>
  requires detail::executor_or_context<ExecutorOrContext> &&
           asio::is_const_buffer_sequence<ConstBufferSequence>::value
auto async_replace_file(ExecutorOrContext&& ex, path_view path, const ConstBufferSequence& data,
                        const replace_options& options,
                        Token&& token = asio::default_completion_token_t<detail::executor_of_t<ExecutorOrContext>>());

/// As above with default options (mode 0666 less the umask).
template <class ExecutorOrContext, class ConstBufferSequence,
          BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code)) Token =
              asio::default_completion_token_t<detail::executor_of_t<ExecutorOrContext>>>
  requires detail::executor_or_context<ExecutorOrContext> &&
           asio::is_const_buffer_sequence<ConstBufferSequence>::value &&
           (!std::is_same_v<std::decay_t<Token>, replace_options>)
auto async_replace_file(ExecutorOrContext&& ex, path_view path, const ConstBufferSequence& data,
                        Token&& token = asio::default_completion_token_t<detail::executor_of_t<ExecutorOrContext>>()) {
  return async_replace_file(std::forward<ExecutorOrContext>(ex), path, data, replace_options{},
                            std::forward<Token>(token));
}

/// Replaces the content of `path` by what `writer` writes, with the same
/// durability, atomicity, options and clean-up as the buffer form: for
/// content that is produced piece by piece or is larger than memory.
///
/// `writer` is called once (again only if the temporary had to be made
/// anew: a filesystem that refuses to link an `O_TMPFILE` file) as
/// `writer(fsys::file& temp, asio::any_completion_handler<void(boost::system::error_code)> done)`:
/// it writes the content into `temp` (open for writing, empty) with any
/// asynchronous operations it likes — `temp.async_write_at(offset, ...)`
/// chunk after chunk, from a coroutine (`asio::co_spawn`) or a composed
/// operation — and then calls `done` once, with an empty error code to go on
/// (sync, rename) or an error to abandon the replace (the temporary is
/// removed; the old file stays; the handler gets that error). `temp` stays
/// open and valid until `done` is called; the writer must not close it.
/// Writes are made through fsys, so nothing blocks the io_context.
/// Cancellation reaches the steps fsys runs; the writer's own operations
/// should watch `done`'s cancellation slot (`asio::get_associated_cancellation_slot(done)`).
/// Completes with `(error_code)`.
template <class ExecutorOrContext, class Writer,
          BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code)) Token =
              asio::default_completion_token_t<detail::executor_of_t<ExecutorOrContext>>>
  requires detail::executor_or_context<ExecutorOrContext> && detail::replace_content_writer<Writer>
auto async_replace_file(ExecutorOrContext&& ex, path_view path, Writer writer, const replace_options& options,
                        Token&& token = asio::default_completion_token_t<detail::executor_of_t<ExecutorOrContext>>());

/// As above with default options.
template <class ExecutorOrContext, class Writer,
          BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code)) Token =
              asio::default_completion_token_t<detail::executor_of_t<ExecutorOrContext>>>
  requires detail::executor_or_context<ExecutorOrContext> && detail::replace_content_writer<Writer> &&
           (!std::is_same_v<std::decay_t<Token>, replace_options>)
auto async_replace_file(ExecutorOrContext&& ex, path_view path, Writer writer,
                        Token&& token = asio::default_completion_token_t<detail::executor_of_t<ExecutorOrContext>>()) {
  return async_replace_file(std::forward<ExecutorOrContext>(ex), path, std::move(writer), replace_options{},
                            std::forward<Token>(token));
}

}  // namespace fsys

#include <fsys/impl/filesystem.hpp>
