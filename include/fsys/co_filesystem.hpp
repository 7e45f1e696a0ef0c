// fsys — coroutine forms of the file-system operations:
// `fsys::file f = co_await fsys::co_open(ex, path, O_RDONLY);`
//
// Each throws `std::system_error` on failure (like co.hpp's functions), whose
// what() names the operation and the path(s) it was given
// ("fsys::co_open /srv/a: No such file or directory"; both paths for
// `co_rename`),
// completes on the coroutine's executor, and is cancelled with the coroutine
// (operation_aborted). See filesystem.hpp and file.hpp for what each does.
#pragma once

#include <fsys/co.hpp>
#include <fsys/directory.hpp>
#include <fsys/copy.hpp>
#include <fsys/filesystem.hpp>
#include <fsys/metadata.hpp>
#include <fsys/path_view.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <fcntl.h>
#include <sys/stat.h>

namespace fsys {

namespace detail {

inline asio::awaitable<file> co_open_impl(asio::any_io_executor ex, fs_args_ptr a) {
  file f(std::move(ex));
  const asio::cancellation_state cs = co_await asio::this_coro::cancellation_state;
  if (cs.cancelled() == asio::cancellation_type::none && take_inline_resume()) {
    const int r = file_access::try_open_direct(f, *a);
    if (r != inline_undecided) {
      if (r < 0)
        throw_co_error(boost::system::error_code(-r, boost::system::system_category()), "fsys::co_open", a->path);
      co_return f;
    }
  }
  // The operation takes `a`; the path is kept for the error message in a
  // second block from the thread's cache of recycled ones (whose string
  // keeps its capacity: no allocation once the cache is warm).
  const fs_args_ptr name = make_fs_args();
  name->path.assign(a->path);
  auto [ec] = co_await file_access::initiate_open(f, std::move(a), asio::as_tuple(asio::use_awaitable));
  if (ec) throw_co_error(ec, "fsys::co_open", name->path);
  co_return f;
}

}  // namespace detail

/// Opens `path` (`basic_file::async_open`) and returns the open file, whose
/// executor is `ex`'s (or the context's). The path is copied before this
/// returns.
///
/// With the inline fast path on (`ring_options::inline_fast_path`), an open
/// whose path is all in the dentry cache is made in the calling thread and
/// the coroutine continues at once, without an operation or a trip through
/// the io_context's queue (as `co_read_at` does for cached reads).
template <class ExecutorOrContext>
  requires detail::executor_or_context<ExecutorOrContext>
asio::awaitable<file> co_open(ExecutorOrContext&& ex, path_view path, int flags, mode_t mode = 0644) {
  // Not a coroutine itself: the path is copied into the operation's
  // arguments now, so that the caller's string need not outlive the call.
  return detail::co_open_impl(asio::any_io_executor(detail::executor_of(ex)),
                              detail::open_args(AT_FDCWD, path.str(), open_how{flags, mode, 0}, false));
}

/// The metadata of the open file `f` (`basic_file::async_stat`). With the
/// inline fast path on, a file on a local filesystem is stat'ed in the
/// calling thread and the coroutine continues at once.
template <class Executor>
asio::awaitable<file_status> co_stat(basic_file<Executor>& f) {
  const asio::cancellation_state cs = co_await asio::this_coro::cancellation_state;
  if (cs.cancelled() == asio::cancellation_type::none && detail::take_inline_resume()) {
    struct statx stx;
    const int r = detail::file_access::try_stat_direct(f, stx);
    if (r == 0) co_return detail::to_file_status(stx);
    if (r != detail::inline_undecided)
      detail::throw_co_error(boost::system::error_code(-r, boost::system::system_category()), "fsys::co_stat");
  }
  auto [ec, st] = co_await f.async_stat(asio::as_tuple(asio::use_awaitable));
  if (ec) detail::throw_co_error(ec, "fsys::co_stat");
  co_return st;
}

/// Closes `f` (`basic_file::async_close`) and throws on close's error (the
/// descriptor is released either way). With the inline fast path on, a file
/// on a local filesystem with no operation left is closed in the calling
/// thread and the coroutine continues at once.
template <class Executor>
asio::awaitable<void> co_close(basic_file<Executor>& f) {
  if (detail::take_inline_resume()) {
    boost::system::error_code ec;
    if (detail::file_access::try_close_direct(f, ec)) {
      if (ec) detail::throw_co_error(ec, "fsys::co_close");
      co_return;
    }
  }
  auto [ec] = co_await f.async_close(asio::as_tuple(asio::use_awaitable));
  if (ec) detail::throw_co_error(ec, "fsys::co_close");
}

/// The metadata of the file `path` names (`fsys::async_stat`).
template <class ExecutorOrContext>
  requires detail::executor_or_context<ExecutorOrContext>
asio::awaitable<file_status> co_stat(ExecutorOrContext&& ex, std::filesystem::path path) {
  auto [ec, st] = co_await fsys::async_stat(ex, path, asio::as_tuple(asio::use_awaitable));
  if (ec) detail::throw_co_error(ec, "fsys::co_stat", path.native());
  co_return st;
}

/// `basic_file::async_allocate`.
inline asio::awaitable<void> co_allocate(file& f, std::uint64_t offset, std::uint64_t length, int mode = 0) {
  auto [ec] = co_await f.async_allocate(offset, length, mode, asio::as_tuple(asio::use_awaitable));
  if (ec) detail::throw_co_error(ec, "fsys::co_allocate");
}

/// `basic_file::async_resize`.
inline asio::awaitable<void> co_resize(file& f, std::uint64_t size) {
  auto [ec] = co_await f.async_resize(size, asio::as_tuple(asio::use_awaitable));
  if (ec) detail::throw_co_error(ec, "fsys::co_resize");
}

/// `fsys::async_rename`.
template <class ExecutorOrContext>
  requires detail::executor_or_context<ExecutorOrContext>
asio::awaitable<void> co_rename(ExecutorOrContext&& ex, std::filesystem::path from, std::filesystem::path to,
                                rename_flags flags = rename_flags::none) {
  auto [ec] = co_await fsys::async_rename(ex, from, to, flags, asio::as_tuple(asio::use_awaitable));
  if (ec) detail::throw_co_error(ec, "fsys::co_rename", from.native(), to.native());
}

/// `fsys::async_remove`.
template <class ExecutorOrContext>
  requires detail::executor_or_context<ExecutorOrContext>
asio::awaitable<void> co_remove(ExecutorOrContext&& ex, std::filesystem::path path) {
  auto [ec] = co_await fsys::async_remove(ex, path, asio::as_tuple(asio::use_awaitable));
  if (ec) detail::throw_co_error(ec, "fsys::co_remove", path.native());
}

/// `fsys::async_create_directory`.
template <class ExecutorOrContext>
  requires detail::executor_or_context<ExecutorOrContext>
asio::awaitable<void> co_create_directory(ExecutorOrContext&& ex, std::filesystem::path path, mode_t mode = 0777) {
  auto [ec] = co_await fsys::async_create_directory(ex, path, mode, asio::as_tuple(asio::use_awaitable));
  if (ec) detail::throw_co_error(ec, "fsys::co_create_directory", path.native());
}

/// `fsys::async_create_directories`: true when it created any directory.
template <class ExecutorOrContext>
  requires detail::executor_or_context<ExecutorOrContext>
asio::awaitable<bool> co_create_directories(ExecutorOrContext&& ex, std::filesystem::path path, mode_t mode = 0777) {
  auto [ec, created] = co_await fsys::async_create_directories(ex, path, mode, asio::as_tuple(asio::use_awaitable));
  if (ec) detail::throw_co_error(ec, "fsys::co_create_directories", path.native());
  co_return created;
}

/// `fsys::async_sync_directory`.
template <class ExecutorOrContext>
  requires detail::executor_or_context<ExecutorOrContext>
asio::awaitable<void> co_sync_directory(ExecutorOrContext&& ex, std::filesystem::path path) {
  auto [ec] = co_await fsys::async_sync_directory(ex, path, asio::as_tuple(asio::use_awaitable));
  if (ec) detail::throw_co_error(ec, "fsys::co_sync_directory", path.native());
}

/// `fsys::async_replace_file` of a buffer sequence: `data`'s memory must
/// stay valid until it returns.
template <class ExecutorOrContext, class ConstBufferSequence>
  requires detail::executor_or_context<ExecutorOrContext> &&
           asio::is_const_buffer_sequence<ConstBufferSequence>::value
asio::awaitable<void> co_replace_file(ExecutorOrContext&& ex, std::filesystem::path path, ConstBufferSequence data,
                                      replace_options options = {}) {
  auto [ec] = co_await fsys::async_replace_file(ex, path, data, options, asio::as_tuple(asio::use_awaitable));
  if (ec) detail::throw_co_error(ec, "fsys::co_replace_file", path.native());
}

/// `fsys::async_read_directory`: the entries of the directory `path`
/// (without "." and ".."), in the directory's order.
template <class ExecutorOrContext>
  requires detail::executor_or_context<ExecutorOrContext>
asio::awaitable<std::vector<directory_entry>> co_read_directory(ExecutorOrContext&& ex, std::filesystem::path path) {
  auto [ec, entries] = co_await fsys::async_read_directory(ex, path, asio::as_tuple(asio::use_awaitable));
  if (ec) detail::throw_co_error(ec, "fsys::co_read_directory", path.native());
  co_return std::move(entries);
}

/// `fsys::async_remove_all`: removes `path` and everything below it without
/// following symlinks; returns the number of entries removed (0 when `path`
/// did not exist).
template <class ExecutorOrContext>
  requires detail::executor_or_context<ExecutorOrContext>
asio::awaitable<std::uint64_t> co_remove_all(ExecutorOrContext&& ex, std::filesystem::path path) {
  auto [ec, removed] = co_await fsys::async_remove_all(ex, path, asio::as_tuple(asio::use_awaitable));
  if (ec) detail::throw_co_error(ec, "fsys::co_remove_all", path.native());
  co_return removed;
}

/// `fsys::async_replace_file` with a content writer.
template <class ExecutorOrContext, class Writer>
  requires detail::executor_or_context<ExecutorOrContext> && detail::replace_content_writer<Writer>
asio::awaitable<void> co_replace_file(ExecutorOrContext&& ex, std::filesystem::path path, Writer writer,
                                      replace_options options = {}) {
  auto [ec] = co_await fsys::async_replace_file(ex, path, std::move(writer), options,
                                                asio::as_tuple(asio::use_awaitable));
  if (ec) detail::throw_co_error(ec, "fsys::co_replace_file", path.native());
}

/// `fsys::async_set_permissions`.
template <class ExecutorOrContext>
  requires detail::executor_or_context<ExecutorOrContext>
asio::awaitable<void> co_set_permissions(ExecutorOrContext&& ex, std::filesystem::path path, mode_t mode,
                                         symlinks follow = symlinks::follow) {
  auto [ec] = co_await fsys::async_set_permissions(ex, path, mode, follow, asio::as_tuple(asio::use_awaitable));
  if (ec) detail::throw_co_error(ec, "fsys::co_set_permissions", path.native());
}

/// `fsys::async_set_owner`.
template <class ExecutorOrContext>
  requires detail::executor_or_context<ExecutorOrContext>
asio::awaitable<void> co_set_owner(ExecutorOrContext&& ex, std::filesystem::path path, std::uint32_t uid,
                                   std::uint32_t gid, symlinks follow = symlinks::follow) {
  auto [ec] = co_await fsys::async_set_owner(ex, path, uid, gid, follow, asio::as_tuple(asio::use_awaitable));
  if (ec) detail::throw_co_error(ec, "fsys::co_set_owner", path.native());
}

/// `fsys::async_set_times`.
template <class ExecutorOrContext>
  requires detail::executor_or_context<ExecutorOrContext>
asio::awaitable<void> co_set_times(ExecutorOrContext&& ex, std::filesystem::path path, file_time atime,
                                   file_time mtime, symlinks follow = symlinks::follow) {
  auto [ec] = co_await fsys::async_set_times(ex, path, atime, mtime, follow, asio::as_tuple(asio::use_awaitable));
  if (ec) detail::throw_co_error(ec, "fsys::co_set_times", path.native());
}

/// `fsys::async_get_xattr`: the value.
template <class ExecutorOrContext>
  requires detail::executor_or_context<ExecutorOrContext>
asio::awaitable<std::string> co_get_xattr(ExecutorOrContext&& ex, std::filesystem::path path, std::string name) {
  auto [ec, v] = co_await fsys::async_get_xattr(ex, path, name, asio::as_tuple(asio::use_awaitable));
  if (ec) detail::throw_co_error(ec, "fsys::co_get_xattr", path.native());
  co_return std::move(v);
}

/// `fsys::async_set_xattr`: `value` must stay valid until it returns.
template <class ExecutorOrContext>
  requires detail::executor_or_context<ExecutorOrContext>
asio::awaitable<void> co_set_xattr(ExecutorOrContext&& ex, std::filesystem::path path, std::string name,
                                   asio::const_buffer value, xattr_flags flags = xattr_flags::either) {
  auto [ec] = co_await fsys::async_set_xattr(ex, path, name, value, flags, asio::as_tuple(asio::use_awaitable));
  if (ec) detail::throw_co_error(ec, "fsys::co_set_xattr", path.native());
}

/// `fsys::async_list_xattr`: the names.
template <class ExecutorOrContext>
  requires detail::executor_or_context<ExecutorOrContext>
asio::awaitable<std::vector<std::string>> co_list_xattr(ExecutorOrContext&& ex, std::filesystem::path path) {
  auto [ec, v] = co_await fsys::async_list_xattr(ex, path, asio::as_tuple(asio::use_awaitable));
  if (ec) detail::throw_co_error(ec, "fsys::co_list_xattr", path.native());
  co_return std::move(v);
}

/// `fsys::async_remove_xattr`.
template <class ExecutorOrContext>
  requires detail::executor_or_context<ExecutorOrContext>
asio::awaitable<void> co_remove_xattr(ExecutorOrContext&& ex, std::filesystem::path path, std::string name) {
  auto [ec] = co_await fsys::async_remove_xattr(ex, path, name, asio::as_tuple(asio::use_awaitable));
  if (ec) detail::throw_co_error(ec, "fsys::co_remove_xattr", path.native());
}

/// `fsys::async_copy_file`: copies `from` to `to` as `options` say and
/// returns the bytes copied (0 when skipped). Throws `std::system_error`
/// naming both paths on failure.
template <class ExecutorOrContext>
  requires detail::executor_or_context<ExecutorOrContext>
asio::awaitable<std::uint64_t> co_copy_file(ExecutorOrContext&& ex, std::filesystem::path from,
                                            std::filesystem::path to, copy_options options = {}) {
  auto [ec, n] = co_await fsys::async_copy_file(ex, from, to, std::move(options), asio::as_tuple(asio::use_awaitable));
  if (ec) detail::throw_co_error(ec, "fsys::co_copy_file", from.native(), to.native());
  co_return n;
}

}  // namespace fsys
