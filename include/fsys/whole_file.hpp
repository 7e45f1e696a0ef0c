// fsys — whole files: read a file into memory, write or append one, without
// blocking the io_context (tokio::fs::read / write, std::ifstream slurps).
#pragma once

#include <fsys/co.hpp>
#include <fsys/filesystem.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace fsys {

/// What `async_write_file` does with the path.
enum class write_file_mode {
  /// Create the file, or truncate the one there (`O_CREAT | O_TRUNC`).
  create_or_truncate,
  /// Create the file; fail with `EEXIST` when the name exists (`O_CREAT | O_EXCL`).
  create_exclusive,
  /// Truncate an existing file; fail with `ENOENT` when there is none.
  truncate_existing,
};

/// Options of `async_write_file`.
struct write_file_options {
  /// Create, truncate or refuse (see `write_file_mode`).
  write_file_mode how = write_file_mode::create_or_truncate;
  /// Permission bits of a file the call creates (less the process's umask);
  /// an existing file keeps its own.
  mode_t mode = 0666;
  /// Durable when the operation completes without error: the data and the
  /// file's size are synced (`fdatasync`), and so is the directory that holds
  /// the name (so a newly created name survives a power cut too).
  bool durable = false;
};

/// Options of `async_append_file`.
struct append_file_options {
  /// Create the file when it does not exist (else fail with `ENOENT`).
  bool create = true;
  /// Permission bits of a file the call creates (less the umask).
  mode_t mode = 0666;
  /// Durable on success: data synced (`fdatasync`), and, when `create` is
  /// set, the directory too.
  bool durable = false;
};

/// The default `limit` of `async_read_file`: 1 GiB.
inline constexpr std::size_t default_read_limit = std::size_t{1} << 30;

// Every function below takes an executor or an execution context first (as
// the functions of <fsys/filesystem.hpp> do), runs on that io_context's ring
// (or its psync workers) and never blocks it, takes any completion token
// (the handler runs once, on its associated executor, never inside the call),
// and completes with `(error_code, bytes)`. Cancellation (terminal, partial,
// total) stops the step in progress with `operation_aborted`; the file is
// then closed all the same. The `co_*` forms throw `std::system_error` whose
// message names the path.

/// Reads the whole file at `path` and appends its bytes to the dynamic
/// buffer `buffer` (Asio's DynamicBuffer_v2: `asio::dynamic_buffer(s)` over a
/// `std::string` or `std::vector`, a `dynamic_string_buffer`...).
///
/// How: the file is opened (`O_RDONLY`), its size taken from `statx`, the
/// buffer grown to that size and filled by reads through the ring, four of
/// up to 4 MiB each in flight at once (16 MiB a wave), so that a cold file
/// keeps several requests at the device. A file
/// that grows meanwhile is read on to its end (in reads of up to 64 KiB, each
/// growing the buffer by what it returned); one that shrinks ends where the
/// data ends. Files whose `statx` size says nothing (`/proc`, `/sys`) are read
/// the same way, to their end.
///
/// `limit`: the most bytes the call may add; a file holding more fails with
/// `errc::read_limit_exceeded` (so does one that would exceed
/// `buffer.max_size()`). On any error the buffer is left as it was. A
/// directory fails with `EISDIR`. The buffer's underlying storage must stay
/// valid until the handler runs.
template <class ExecutorOrContext, class DynamicBuffer,
          BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code, std::size_t)) Token =
              asio::default_completion_token_t<detail::executor_of_t<ExecutorOrContext>>>
  requires detail::executor_or_context<ExecutorOrContext> && asio::is_dynamic_buffer_v2<DynamicBuffer>::value
auto async_read_file(ExecutorOrContext&& ex, path_view path, DynamicBuffer buffer,
                     std::size_t limit = default_read_limit,
                     Token&& token = asio::default_completion_token_t<detail::executor_of_t<ExecutorOrContext>>());

/// `async_read_file` into a `std::string`, which is replaced by the file's
/// content (on error it is left empty). `out` must stay valid until the
/// handler runs.
template <class ExecutorOrContext,
          BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code, std::size_t)) Token =
              asio::default_completion_token_t<detail::executor_of_t<ExecutorOrContext>>>
  requires detail::executor_or_context<ExecutorOrContext>
auto async_read_file(ExecutorOrContext&& ex, path_view path, std::string& out,
                     std::size_t limit = default_read_limit,
                     Token&& token = asio::default_completion_token_t<detail::executor_of_t<ExecutorOrContext>>());

/// `async_read_file` into a `std::vector<std::byte>`, replaced like the
/// string form.
template <class ExecutorOrContext,
          BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code, std::size_t)) Token =
              asio::default_completion_token_t<detail::executor_of_t<ExecutorOrContext>>>
  requires detail::executor_or_context<ExecutorOrContext>
auto async_read_file(ExecutorOrContext&& ex, path_view path, std::vector<std::byte>& out,
                     std::size_t limit = default_read_limit,
                     Token&& token = asio::default_completion_token_t<detail::executor_of_t<ExecutorOrContext>>());

/// Writes `buffers` as the whole content of the file at `path` (created,
/// truncated or refused as `options.how` says; a created file gets
/// `options.mode` less the umask), then closes it; with `options.durable`,
/// data and directory entry are synced before completion. Completes with
/// `(error_code, bytes written)`. Unlike `async_replace_file`, readers may
/// see the file empty or partly written while this runs, and a failure may
/// leave it so: use `async_replace_file` to switch content atomically. The
/// memory `buffers` refers to must stay valid until the handler runs.
template <class ExecutorOrContext, class ConstBufferSequence,
          BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code, std::size_t)) Token =
              asio::default_completion_token_t<detail::executor_of_t<ExecutorOrContext>>>
  requires detail::executor_or_context<ExecutorOrContext> && asio::is_const_buffer_sequence<ConstBufferSequence>::value
auto async_write_file(ExecutorOrContext&& ex, path_view path, const ConstBufferSequence& buffers,
                      write_file_options options = {},
                      Token&& token = asio::default_completion_token_t<detail::executor_of_t<ExecutorOrContext>>());

/// Appends `buffers` to the file at `path` (`O_APPEND`: every write lands at
/// the end as the kernel finds it, also with other appenders), then closes
/// it. Completes with `(error_code, bytes written)`. The memory `buffers`
/// refers to must stay valid until the handler runs.
template <class ExecutorOrContext, class ConstBufferSequence,
          BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code, std::size_t)) Token =
              asio::default_completion_token_t<detail::executor_of_t<ExecutorOrContext>>>
  requires detail::executor_or_context<ExecutorOrContext> && asio::is_const_buffer_sequence<ConstBufferSequence>::value
auto async_append_file(ExecutorOrContext&& ex, path_view path, const ConstBufferSequence& buffers,
                       append_file_options options = {},
                       Token&& token = asio::default_completion_token_t<detail::executor_of_t<ExecutorOrContext>>());

/// Sets the size of the file at `path` to `size` (`truncate(2)`: cut, or
/// extended with zeros), through an open (`O_WRONLY`, no create), the
/// file's `async_resize` and a close. Completes with `(error_code)`: ENOENT
/// for a missing file, EISDIR for a directory.
template <class ExecutorOrContext,
          BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code)) Token =
              asio::default_completion_token_t<detail::executor_of_t<ExecutorOrContext>>>
  requires detail::executor_or_context<ExecutorOrContext>
auto async_resize_file(ExecutorOrContext&& ex, path_view path, std::uint64_t size,
                       Token&& token = asio::default_completion_token_t<detail::executor_of_t<ExecutorOrContext>>());

// The coroutine forms take an executor or execution context first, like
// `co_replace_file`, and own their path (a coroutine may outlive the
// caller's string).

/// The content of the file at `path` (see `async_read_file`).
template <class ExecutorOrContext>
  requires detail::executor_or_context<ExecutorOrContext>
asio::awaitable<std::string> co_read_file(ExecutorOrContext&& ex, std::filesystem::path path,
                                          std::size_t limit = default_read_limit);

/// Writes the whole file (see `async_write_file`); returns the bytes written.
template <class ExecutorOrContext, class ConstBufferSequence>
  requires detail::executor_or_context<ExecutorOrContext> && asio::is_const_buffer_sequence<ConstBufferSequence>::value
asio::awaitable<std::size_t> co_write_file(ExecutorOrContext&& ex, std::filesystem::path path,
                                           ConstBufferSequence buffers, write_file_options options = {});

/// Sets the file's size (see `async_resize_file`).
template <class ExecutorOrContext>
  requires detail::executor_or_context<ExecutorOrContext>
asio::awaitable<void> co_resize_file(ExecutorOrContext&& ex, std::filesystem::path path, std::uint64_t size);

/// Appends to the file (see `async_append_file`); returns the bytes written.
template <class ExecutorOrContext, class ConstBufferSequence>
  requires detail::executor_or_context<ExecutorOrContext> && asio::is_const_buffer_sequence<ConstBufferSequence>::value
asio::awaitable<std::size_t> co_append_file(ExecutorOrContext&& ex, std::filesystem::path path,
                                            ConstBufferSequence buffers, append_file_options options = {});

}  // namespace fsys

#include <fsys/impl/whole_file.hpp>
