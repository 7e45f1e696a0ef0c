// fsys — coroutine forms of the file-system operations:
// `fsys::file f = co_await fsys::co_open(ex, path, O_RDONLY);`
//
// Each throws `std::system_error` on failure (like co.hpp's functions),
// completes on the coroutine's executor, and is cancelled with the coroutine
// (operation_aborted). See filesystem.hpp and file.hpp for what each does.
#pragma once

#include <fsys/co.hpp>
#include <fsys/filesystem.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace fsys {

/// Opens `path` (`basic_file::async_open`) and returns the open file, whose
/// executor is `ex`'s (or the context's).
template <class ExecutorOrContext>
  requires detail::executor_or_context<ExecutorOrContext>
asio::awaitable<file> co_open(ExecutorOrContext&& ex, std::filesystem::path path, int flags, mode_t mode = 0644) {
  file f(asio::any_io_executor(detail::executor_of(ex)));
  auto [ec] = co_await f.async_open(path, flags, mode, asio::as_tuple(asio::use_awaitable));
  if (ec) detail::throw_co_error(ec, "fsys::co_open");
  co_return f;
}

/// The metadata of the open file `f` (`basic_file::async_stat`).
inline asio::awaitable<file_status> co_stat(file& f) {
  auto [ec, st] = co_await f.async_stat(asio::as_tuple(asio::use_awaitable));
  if (ec) detail::throw_co_error(ec, "fsys::co_stat");
  co_return st;
}

/// The metadata of the file `path` names (`fsys::async_stat`).
template <class ExecutorOrContext>
  requires detail::executor_or_context<ExecutorOrContext>
asio::awaitable<file_status> co_stat(ExecutorOrContext&& ex, std::filesystem::path path) {
  auto [ec, st] = co_await fsys::async_stat(ex, path, asio::as_tuple(asio::use_awaitable));
  if (ec) detail::throw_co_error(ec, "fsys::co_stat");
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
  if (ec) detail::throw_co_error(ec, "fsys::co_rename");
}

/// `fsys::async_remove`.
template <class ExecutorOrContext>
  requires detail::executor_or_context<ExecutorOrContext>
asio::awaitable<void> co_remove(ExecutorOrContext&& ex, std::filesystem::path path) {
  auto [ec] = co_await fsys::async_remove(ex, path, asio::as_tuple(asio::use_awaitable));
  if (ec) detail::throw_co_error(ec, "fsys::co_remove");
}

/// `fsys::async_create_directory`.
template <class ExecutorOrContext>
  requires detail::executor_or_context<ExecutorOrContext>
asio::awaitable<void> co_create_directory(ExecutorOrContext&& ex, std::filesystem::path path, mode_t mode = 0777) {
  auto [ec] = co_await fsys::async_create_directory(ex, path, mode, asio::as_tuple(asio::use_awaitable));
  if (ec) detail::throw_co_error(ec, "fsys::co_create_directory");
}

/// `fsys::async_sync_directory`.
template <class ExecutorOrContext>
  requires detail::executor_or_context<ExecutorOrContext>
asio::awaitable<void> co_sync_directory(ExecutorOrContext&& ex, std::filesystem::path path) {
  auto [ec] = co_await fsys::async_sync_directory(ex, path, asio::as_tuple(asio::use_awaitable));
  if (ec) detail::throw_co_error(ec, "fsys::co_sync_directory");
}

/// `fsys::async_replace_file`: `data` must stay valid until it returns.
template <class ExecutorOrContext>
  requires detail::executor_or_context<ExecutorOrContext>
asio::awaitable<void> co_replace_file(ExecutorOrContext&& ex, std::filesystem::path path, asio::const_buffer data) {
  auto [ec] = co_await fsys::async_replace_file(ex, path, data, asio::as_tuple(asio::use_awaitable));
  if (ec) detail::throw_co_error(ec, "fsys::co_replace_file");
}

}  // namespace fsys
