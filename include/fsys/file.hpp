// fsys — a file for positional asynchronous IO on an io_context.
#pragma once

#include <fsys/detail/asio.hpp>
#include <fsys/detail/file_handle.hpp>
#include <fsys/detail/file_op.hpp>
#include <fsys/detail/fs_args.hpp>
#include <fsys/detail/metadata_args.hpp>
#include <fsys/detail/nowait.hpp>
#include <fsys/detail/service_life.hpp>
#include <fsys/detail/sync_io.hpp>
#include <fsys/error.hpp>
#include <fsys/file_base.hpp>
#include <fsys/file_status.hpp>
#include <fsys/metadata_options.hpp>
#include <fsys/open_how.hpp>
#include <fsys/path_view.hpp>
#include <fsys/uring_service.hpp>

#include <boost/asio/async_result.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/execution/context.hpp>
#include <boost/asio/query.hpp>
#include <boost/system/errc.hpp>
#include <boost/system/error_code.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <limits>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>

namespace fsys {

namespace detail {
struct file_access;
}  // namespace detail

/// A file opened for positional (offset-based) IO whose asynchronous
/// operations run on the io_uring ring of its executor's io_context.
///
/// Thread safety: distinct objects are safe; a shared object is not, except
/// that asynchronous operations may be started while others are in flight
/// (any number of reads and writes may be outstanding on one file).
///
/// Models Asio's AsyncRandomAccessReadDevice and AsyncRandomAccessWriteDevice,
/// so `asio::async_read_at` / `asio::async_write_at` work on it, and its
/// SyncRandomAccessReadDevice and SyncRandomAccessWriteDevice
/// (`read_some_at` / `write_some_at`, plain `preadv`/`pwritev` in the calling
/// thread), so `asio::read_at` / `asio::write_at` work too.
///
/// Source-compatible with `asio::basic_random_access_file`: the same
/// constructors, `open` with `file_base` flags (`file::read_write |
/// file::create`), `assign`, `release`, `cancel`, `size`, `resize`,
/// `sync_all`, `sync_data`, and every error-code overload in Asio's
/// `boost::system::error_code&` form as well as in the `std::error_code&`
/// form, so replacing the type name is enough. Differences: throwing calls
/// throw `std::system_error` (Asio: `boost::system::system_error`; both
/// derive from `std::runtime_error`); a file created through the flags gets
/// mode 0644 minus the umask (Asio: 0777 minus the umask); operations on a
/// closed file report `errc::not_open` (Asio: `asio::error::bad_descriptor`;
/// both compare equal to `std::errc::bad_file_descriptor`).
///
/// Every asynchronous operation:
/// - takes any Asio completion token (`use_awaitable`, `deferred`,
///   `use_future`, a callback, `as_tuple(...)`, `redirect_error(...)`);
/// - completes on the handler's associated executor (by default the file's
///   executor), never from inside the initiating function;
/// - keeps the caller's buffers in use until the handler runs: they must stay
///   valid until then, and are not touched after it;
/// - honours per-operation cancellation (terminal, partial, total) through the
///   handler's associated cancellation slot: the request is cancelled in the
///   kernel (IORING_OP_ASYNC_CANCEL) and the handler runs once, with
///   `asio::error::operation_aborted` when the kernel had not done the work,
///   or with the real result when it had;
/// - reports kernel errors as `boost::system::error_code` in the system
///   category (it compares equal with `std::errc` values and converts to
///   `std::error_code`), and fsys's own errors as `fsys::errc` values in the
///   category named "fsys";
/// - on a closed, never-opened or moved-from file completes (from the
///   io_context, like any other) with `errc::not_open`.
/// Closing or destroying the file cancels its outstanding operations; their
/// handlers still run (with operation_aborted or their real result), and the
/// descriptor is closed only after the kernel has finished with them.
///
/// A file that outlives its io_context. The io_context should outlive its
/// files (Asio makes any other use of an I/O object undefined); fsys makes
/// it defined all the same. When the io_context is destroyed (or shut down),
/// its operations are finished as it documents (cancelled, the kernel's use
/// of their buffers waited for, handlers destroyed without running), and
/// every file made on it keeps only its descriptor: `close()`, `release()`,
/// `is_open()`, `native_handle()`, moving and the destructor work (the
/// descriptor is closed exactly once, by `close()` or the destructor; the
/// error-code forms of `close` report `close(2)`'s result). Every other call
/// fails with `errc::service_shut_down`:
/// - synchronous calls (`size`, `read_some_at`, `open`, ...) throw it or set
///   it in their error code, without touching the file;
/// - an asynchronous operation (and the `co_*` forms, and `async_send_file`)
///   makes no operation: a handler whose associated executor belongs to
///   another, live execution context (a coroutine spawned there, a handler
///   bound there, `use_future`) gets the error on it, never inside the
///   initiating function; a handler that would run on the destroyed context
///   (the default: the file's executor) cannot run at all, so it is
///   destroyed and the initiating function throws `std::system_error` with
///   the error. `async_close` closes the descriptor first either way.
/// The destruction of the io_context must not race with calls on its files
/// from other threads (it happens-before them, as for any object). The
/// file's own executor must survive the context too: the default
/// (`any_io_executor` of the context's executor) does; a strand, whose state
/// belongs to the context's strand service, or an executor that tracks work
/// does not (Asio's rule for executors, which fsys cannot change).
template <class Executor = asio::any_io_executor>
class basic_file : public file_base {
 public:
  /// The executor the file's operations are associated with.
  using executor_type = Executor;
  /// A POSIX file descriptor.
  using native_handle_type = int;

  /// Rebinds the file to another executor type.
  template <class Executor1>
  struct rebind_executor {
    /// The file type when rebound to `Executor1`.
    using other = basic_file<Executor1>;
  };

  /// A closed file whose operations will run on `ex`'s io_context.
  explicit basic_file(const executor_type& ex)
      : ex_(ex),
        service_(&asio::use_service<uring_service>(asio::query(ex_, asio::execution::context))),
        life_(service_->life_token()) {}

  /// A closed file on `ctx`.
  template <class ExecutionContext>
    requires std::is_convertible_v<ExecutionContext&, asio::execution_context&>
  explicit basic_file(ExecutionContext& ctx) : basic_file(executor_type(ctx.get_executor())) {}

  /// Opens `path` with `open(2)` flags (O_CLOEXEC is always added) and mode.
  /// Throws `std::system_error` on failure.
  basic_file(const executor_type& ex, const std::filesystem::path& path, int flags, mode_t mode = 0644)
      : basic_file(ex) {
    open(path, flags, mode);
  }

  /// Opens `path` for operations on `ctx`. Throws `std::system_error` on failure.
  template <class ExecutionContext>
    requires std::is_convertible_v<ExecutionContext&, asio::execution_context&>
  basic_file(ExecutionContext& ctx, const std::filesystem::path& path, int flags, mode_t mode = 0644)
      : basic_file(executor_type(ctx.get_executor()), path, flags, mode) {}

  /// Opens `path` with Asio-style flags (`file::read_write | file::create`),
  /// as `asio::basic_random_access_file` does. Throws `std::system_error`.
  basic_file(const executor_type& ex, const std::filesystem::path& path, file_base::flags open_flags)
      : basic_file(ex) {
    open(path, open_flags);
  }

  /// Opens `path` with Asio-style flags for operations on `ctx`. Throws
  /// `std::system_error` on failure.
  template <class ExecutionContext>
    requires std::is_convertible_v<ExecutionContext&, asio::execution_context&>
  basic_file(ExecutionContext& ctx, const std::filesystem::path& path, file_base::flags open_flags)
      : basic_file(executor_type(ctx.get_executor()), path, open_flags) {}

#if defined(BOOST_ASIO_HAS_FILE)
  /// Opens `path` with Asio's own `asio::file_base` flags (declared when
  /// Asio is built with io_uring); same meaning as fsys's.
  basic_file(const executor_type& ex, const std::filesystem::path& path, asio::file_base::flags open_flags)
      : basic_file(ex, path, detail::from_asio(open_flags)) {}
  /// As above, for operations on `ctx`.
  template <class ExecutionContext>
    requires std::is_convertible_v<ExecutionContext&, asio::execution_context&>
  basic_file(ExecutionContext& ctx, const std::filesystem::path& path, asio::file_base::flags open_flags)
      : basic_file(executor_type(ctx.get_executor()), path, detail::from_asio(open_flags)) {}
#endif

  /// Adopts an open descriptor, which the file then owns and closes.
  basic_file(const executor_type& ex, native_handle_type fd) : basic_file(ex) { adopt(fd); }

  /// Adopts an open descriptor for operations on `ctx`; the file owns and closes it.
  template <class ExecutionContext>
    requires std::is_convertible_v<ExecutionContext&, asio::execution_context&>
  basic_file(ExecutionContext& ctx, native_handle_type fd)
      : basic_file(executor_type(ctx.get_executor()), fd) {}

  /// Takes `other`'s descriptor and outstanding operations; `other` is
  /// closed (its operations then report `errc::not_open`).
  basic_file(basic_file&& other) noexcept
      : ex_(other.ex_), service_(other.service_), life_(other.life_), handle_(std::exchange(other.handle_, nullptr)) {}

  /// Takes the descriptor of a file on another executor type that converts
  /// to this one; `other` is closed.
  template <class Executor1>
    requires(!std::is_same_v<Executor1, Executor> && std::is_convertible_v<Executor1, Executor>)
  basic_file(basic_file<Executor1>&& other) noexcept
      : ex_(other.ex_), service_(other.service_), life_(other.life_), handle_(std::exchange(other.handle_, nullptr)) {}

  /// Closes this file (see `close`, errors ignored), then takes `other`'s
  /// descriptor and executor; `other` is closed.
  basic_file& operator=(basic_file&& other) noexcept {
    if (this != &other) take(other);
    return *this;
  }

  /// As above, from a file on another executor type that converts to this one.
  template <class Executor1>
    requires(!std::is_same_v<Executor1, Executor> && std::is_convertible_v<Executor1, Executor>)
  basic_file& operator=(basic_file<Executor1>&& other) noexcept {
    take(other);
    return *this;
  }

  basic_file(const basic_file&) = delete;
  basic_file& operator=(const basic_file&) = delete;

  /// Closes the file (see `close`), ignoring errors.
  ~basic_file() {
    boost::system::error_code ignored;
    close(ignored);
  }

  /// The executor handlers run on unless they have an associated executor.
  executor_type get_executor() noexcept { return ex_; }
  /// The service running this file's operations. Only while the io_context
  /// exists: the service is destroyed with it.
  uring_service& service() noexcept { return *service_; }

  // ---- opening and closing -------------------------------------------------
  //
  // Each call comes in three forms: throwing `std::system_error`, setting a
  // `std::error_code&`, and setting a `boost::system::error_code&` (Asio's
  // form). The two error-code forms report the same error.

  /// Opens `path` with `open(2)` flags and mode; the file must be closed.
  /// O_CLOEXEC is always added.
  void open(const std::filesystem::path& path, int flags, mode_t mode = 0644) {
    boost::system::error_code ec;
    open(path, flags, mode, ec);
    detail::throw_if(ec, "fsys::basic_file::open", path);
  }
  /// As above; sets `ec` (`open(2)`'s errno, or `errc::already_open` when
  /// the file is already open) instead of throwing.
  void open(const std::filesystem::path& path, int flags, mode_t mode, std::error_code& ec) noexcept {
    detail::to_std(ec, [&](auto& bec) { open(path, flags, mode, bec); });
  }
  /// As above, with Asio's error code type.
  void open(const std::filesystem::path& path, int flags, mode_t mode, boost::system::error_code& ec) noexcept {
    if (detached(ec)) return;
    if (busy()) {
      ec = errc::already_open;
      return;
    }
    const int fd = detail::sync_open(path.c_str(), flags, mode, ec);
    if (fd < 0) return;
    adopt(fd, ec);
    // Never leak the descriptor this call opened.
    if (ec) ::close(fd);
  }

  /// Opens `path` with Asio-style flags (`file::read_write | file::create`);
  /// a created file gets mode 0644 minus the umask. The file must be closed.
  void open(const std::filesystem::path& path, file_base::flags open_flags) {
    open(path, static_cast<int>(open_flags), 0644);
  }
  /// As above; sets `ec` instead of throwing.
  void open(const std::filesystem::path& path, file_base::flags open_flags, std::error_code& ec) noexcept {
    open(path, static_cast<int>(open_flags), 0644, ec);
  }
  /// As above, with Asio's error code type.
  void open(const std::filesystem::path& path, file_base::flags open_flags,
            boost::system::error_code& ec) noexcept {
    open(path, static_cast<int>(open_flags), 0644, ec);
  }

#if defined(BOOST_ASIO_HAS_FILE)
  /// Opens `path` with Asio's own `asio::file_base` flags; same meaning.
  void open(const std::filesystem::path& path, asio::file_base::flags open_flags) {
    open(path, detail::from_asio(open_flags));
  }
  /// As above; sets `ec` instead of throwing.
  void open(const std::filesystem::path& path, asio::file_base::flags open_flags, std::error_code& ec) noexcept {
    open(path, detail::from_asio(open_flags), ec);
  }
  /// As above, with Asio's error code type.
  void open(const std::filesystem::path& path, asio::file_base::flags open_flags,
            boost::system::error_code& ec) noexcept {
    open(path, detail::from_asio(open_flags), ec);
  }
#endif

  /// Adopts an open descriptor, which the file then owns and closes; the
  /// file must be closed. On failure the caller keeps the descriptor.
  void adopt(native_handle_type fd) {
    boost::system::error_code ec;
    adopt(fd, ec);
    detail::throw_if(ec, "fsys::basic_file::adopt");
  }
  /// As above; sets `ec` (`errc::already_open` when already open,
  /// `std::errc::bad_file_descriptor` for a negative fd,
  /// `std::errc::not_enough_memory`) instead of throwing.
  void adopt(native_handle_type fd, std::error_code& ec) noexcept {
    detail::to_std(ec, [&](auto& bec) { adopt(fd, bec); });
  }
  /// As above, with Asio's error code type.
  void adopt(native_handle_type fd, boost::system::error_code& ec) noexcept {
    namespace berrc = boost::system::errc;
    if (detached(ec)) return;
    if (busy()) {
      ec = errc::already_open;
      return;
    }
    if (fd < 0) {
      ec = berrc::make_error_code(berrc::bad_file_descriptor);
      return;
    }
    try {
      handle_ = detail::file_handle::create(fd, true);
      ec.clear();
    } catch (const std::bad_alloc&) {
      ec = berrc::make_error_code(berrc::not_enough_memory);
    }
  }

  /// Asio's name for `adopt`.
  void assign(const native_handle_type& fd) { adopt(fd); }
  /// Asio's name for `adopt`; sets `ec` instead of throwing.
  void assign(const native_handle_type& fd, std::error_code& ec) noexcept { adopt(fd, ec); }
  /// Asio's name for `adopt`, with Asio's error code type.
  void assign(const native_handle_type& fd, boost::system::error_code& ec) noexcept { adopt(fd, ec); }

  /// True when the file holds a descriptor.
  bool is_open() const noexcept { return handle_ != nullptr && handle_->fd() >= 0; }

  /// The descriptor, or -1 when closed.
  native_handle_type native_handle() const noexcept {
    int fd = handle_ ? handle_->blocking_fd() : -1;
    return fd >= 0 ? fd : -1;
  }

  /// Cancels outstanding operations and closes the file. If the kernel still
  /// holds operations of this file, the descriptor is closed when the last
  /// of them has finished (its number cannot be reused before); otherwise at
  /// once, reporting `close(2)`'s error. Closing a closed file does nothing.
  void close() {
    boost::system::error_code ec;
    close(ec);
    detail::throw_if(ec, "fsys::basic_file::close");
  }
  /// As above; sets `ec` to `close(2)`'s errno instead of throwing.
  void close(std::error_code& ec) noexcept {
    detail::to_std(ec, [&](auto& bec) { close(bec); });
  }
  /// As above, with Asio's error code type.
  void close(boost::system::error_code& ec) noexcept {
    ec.clear();
    if (!handle_) return;
    // After the service shut down, no operation of the file is left (the
    // engine finished every one, and the file can start no other): the
    // handle's only reference is the file's, so release_owner closes the
    // descriptor here, once. The engine is not touched: it may be gone.
    if (life_.alive()) service_->engine().cancel_file(handle_);
    if (int err = std::exchange(handle_, nullptr)->release_owner()) ec.assign(err, boost::system::system_category());
  }

  /// Cancels outstanding operations and gives up ownership of the
  /// descriptor, which is returned open. The caller must not close it until
  /// the cancelled operations' handlers have run.
  native_handle_type release() {
    boost::system::error_code ec;
    int fd = release(ec);
    detail::throw_if(ec, "fsys::basic_file::release");
    return fd;
  }
  /// As above; sets `ec` to `errc::not_open` (and returns -1) when closed.
  native_handle_type release(std::error_code& ec) noexcept {
    return detail::to_std(ec, [&](auto& bec) { return release(bec); });
  }
  /// As above, with Asio's error code type.
  native_handle_type release(boost::system::error_code& ec) noexcept {
    if (!handle_ || handle_->fd() < 0) {
      ec = errc::not_open;
      return -1;
    }
    ec.clear();
    int fd = handle_->blocking_fd();
    if (life_.alive()) service_->engine().cancel_file(handle_);  // see close()
    handle_->disown();
    std::exchange(handle_, nullptr)->release_owner();
    return fd;
  }

  /// Cancels all outstanding asynchronous operations on this file: each
  /// completes with `asio::error::operation_aborted`, or with its real result
  /// when the kernel had already done the work. Does nothing on a closed file.
  void cancel() noexcept {
    if (handle_ && life_.alive()) service_->engine().cancel_file(handle_);
  }
  /// As above; sets `ec` to `errc::not_open` when the file is closed,
  /// `errc::service_shut_down` when its io_context is gone.
  void cancel(std::error_code& ec) noexcept {
    detail::to_std(ec, [&](auto& bec) { cancel(bec); });
  }
  /// As above, with Asio's error code type.
  void cancel(boost::system::error_code& ec) noexcept {
    if (detached(ec)) return;
    if (!handle_) {
      ec = errc::not_open;
      return;
    }
    ec.clear();
    cancel();
  }

  // ---- synchronous file calls (in the calling thread) ----------------------

  /// The file's size in bytes (`fstat`).
  std::uint64_t size() const {
    boost::system::error_code ec;
    auto n = size(ec);
    detail::throw_if(ec, "fsys::basic_file::size");
    return n;
  }
  /// As above; sets `ec` (`errc::not_open`, or `fstat`'s errno) and returns 0.
  std::uint64_t size(std::error_code& ec) const noexcept {
    return detail::to_std(ec, [&](auto& bec) { return size(bec); });
  }
  /// As above, with Asio's error code type.
  std::uint64_t size(boost::system::error_code& ec) const noexcept {
    if (detached(ec)) return 0;
    return detail::sync_size(native_handle(), ec);
  }

  /// Sets the file's size to `n` bytes (`ftruncate`): shortens it, or
  /// extends it with zeros.
  void resize(std::uint64_t n) {
    boost::system::error_code ec;
    resize(n, ec);
    detail::throw_if(ec, "fsys::basic_file::resize");
  }
  /// As above; sets `ec` (`errc::not_open`, `errc::offset_overflow`, or
  /// `ftruncate`'s errno) instead of throwing.
  void resize(std::uint64_t n, std::error_code& ec) noexcept {
    detail::to_std(ec, [&](auto& bec) { resize(n, bec); });
  }
  /// As above, with Asio's error code type.
  void resize(std::uint64_t n, boost::system::error_code& ec) noexcept {
    if (detached(ec)) return;
    detail::sync_resize(native_handle(), n, ec);
  }

  /// `fsync(2)` in the calling thread: data and metadata to stable storage.
  /// `async_fsync` does the same through the ring.
  void sync_all() {
    boost::system::error_code ec;
    sync_all(ec);
    detail::throw_if(ec, "fsys::basic_file::sync_all");
  }
  /// As above; sets `ec` (`errc::not_open`, or `fsync`'s errno: see
  /// docs/durability.md, a failed sync is final) instead of throwing.
  void sync_all(std::error_code& ec) noexcept {
    detail::to_std(ec, [&](auto& bec) { sync_all(bec); });
  }
  /// As above, with Asio's error code type.
  void sync_all(boost::system::error_code& ec) noexcept {
    if (detached(ec)) return;
    detail::sync_flush(native_handle(), false, ec);
  }

  /// `fdatasync(2)` in the calling thread: data (and the metadata needed to
  /// read it back) to stable storage. `async_fdatasync` does the same
  /// through the ring.
  void sync_data() {
    boost::system::error_code ec;
    sync_data(ec);
    detail::throw_if(ec, "fsys::basic_file::sync_data");
  }
  /// As above; sets `ec` (`errc::not_open`, or `fdatasync`'s errno: a
  /// failed sync is final) instead of throwing.
  void sync_data(std::error_code& ec) noexcept {
    detail::to_std(ec, [&](auto& bec) { sync_data(bec); });
  }
  /// As above, with Asio's error code type.
  void sync_data(boost::system::error_code& ec) noexcept {
    if (detached(ec)) return;
    detail::sync_flush(native_handle(), true, ec);
  }

  /// Reads at `offset` into `buffers` with one `preadv(2)` in the calling
  /// thread, which blocks; the ring is not involved. Returns the bytes read,
  /// which may be fewer than asked. At end of file (0 bytes read, buffers not
  /// empty) fails with `asio::error::eof`, as Asio's `random_access_file`
  /// does; `asio::read_at(file, offset, buffers)` builds "read it all" on it.
  /// Throws `std::system_error` on failure.
  template <class MutableBufferSequence>
  std::size_t read_some_at(std::uint64_t offset, const MutableBufferSequence& buffers) {
    boost::system::error_code ec;
    std::size_t n = read_some_at(offset, buffers, ec);
    detail::throw_if(ec, "fsys::basic_file::read_some_at");
    return n;
  }
  /// As above; sets `ec` (`asio::error::eof`, `errc::not_open`,
  /// `errc::offset_overflow`, or `preadv`'s errno; EINVAL for a misaligned
  /// O_DIRECT request) instead of throwing.
  template <class MutableBufferSequence>
  std::size_t read_some_at(std::uint64_t offset, const MutableBufferSequence& buffers,
                           std::error_code& ec) noexcept {
    return detail::to_std(ec, [&](auto& bec) { return read_some_at(offset, buffers, bec); });
  }
  /// As above, with Asio's error code type.
  template <class MutableBufferSequence>
  std::size_t read_some_at(std::uint64_t offset, const MutableBufferSequence& buffers,
                           boost::system::error_code& ec) noexcept {
    if (detached(ec)) return 0;
    return detail::sync_read_at(native_handle(), offset, detail::sync_iovecs(buffers), ec);
  }

  /// Writes `buffers` at `offset` with one `pwritev(2)` in the calling
  /// thread, which blocks; the ring is not involved. Returns the bytes
  /// written, which may be fewer than given; `asio::write_at(file, offset,
  /// buffers)` builds "write it all" on it. Not durable: see `sync_data`.
  /// Throws `std::system_error` on failure.
  template <class ConstBufferSequence>
  std::size_t write_some_at(std::uint64_t offset, const ConstBufferSequence& buffers) {
    boost::system::error_code ec;
    std::size_t n = write_some_at(offset, buffers, ec);
    detail::throw_if(ec, "fsys::basic_file::write_some_at");
    return n;
  }
  /// As above; sets `ec` (`errc::not_open`, `errc::offset_overflow`, or
  /// `pwritev`'s errno) instead of throwing.
  template <class ConstBufferSequence>
  std::size_t write_some_at(std::uint64_t offset, const ConstBufferSequence& buffers,
                            std::error_code& ec) noexcept {
    return detail::to_std(ec, [&](auto& bec) { return write_some_at(offset, buffers, bec); });
  }
  /// As above, with Asio's error code type.
  template <class ConstBufferSequence>
  std::size_t write_some_at(std::uint64_t offset, const ConstBufferSequence& buffers,
                            boost::system::error_code& ec) noexcept {
    if (detached(ec)) return 0;
    return detail::sync_write_at(native_handle(), offset, detail::sync_iovecs(buffers), ec);
  }

  // ---- asynchronous operations -------------------------------------------

  /// Reads at `offset` into `buffers` with one kernel operation (readv for
  /// several buffers). Completes with `(error_code, bytes)`; may read less
  /// than asked; at end of file completes with `asio::error::eof` and 0 bytes.
  ///
  /// Completion: the handler runs once, after the kernel has finished with
  /// `buffers`, on its associated executor (default: the file's), never
  /// inside this call. Cancellation: per-operation terminal/partial/total
  /// cancellation, `cancel()` and `close()` complete it with
  /// `asio::error::operation_aborted` if the kernel had not done the work,
  /// otherwise with the real result. Errors: the kernel's errno (system
  /// category), `errc::not_open` when the file is not open,
  /// `errc::offset_overflow`, `errc::misaligned_direct_io` (O_DIRECT).
  template <class MutableBufferSequence,
            BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code, std::size_t))
                Token = asio::default_completion_token_t<executor_type>>
  auto async_read_some_at(std::uint64_t offset, const MutableBufferSequence& buffers,
                          Token&& token = asio::default_completion_token_t<executor_type>()) {
    return initiate_transfer(detail::op_kind::read_some, offset, buffers, std::forward<Token>(token));
  }

  /// Writes `buffers` at `offset` with one kernel operation (writev for
  /// several buffers). Completes with `(error_code, bytes)`; may write less.
  ///
  /// Completion: the handler runs once, after the kernel has finished with
  /// `buffers`, on its associated executor (default: the file's), never
  /// inside this call. Cancellation: per-operation terminal/partial/total
  /// cancellation, `cancel()` and `close()` complete it with
  /// `asio::error::operation_aborted` if the kernel had not done the work,
  /// otherwise with the real result. Errors: the kernel's errno (system
  /// category), `errc::not_open` when the file is not open,
  /// `errc::offset_overflow`, `errc::misaligned_direct_io` (O_DIRECT).
  template <class ConstBufferSequence,
            BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code, std::size_t))
                Token = asio::default_completion_token_t<executor_type>>
  auto async_write_some_at(std::uint64_t offset, const ConstBufferSequence& buffers,
                           Token&& token = asio::default_completion_token_t<executor_type>()) {
    return initiate_transfer(detail::op_kind::write_some, offset, buffers, std::forward<Token>(token));
  }

  /// Reads until `buffers` are full or end of file. Completes with
  /// `(error_code, bytes)`; fewer bytes than asked, without error, means end
  /// of file was reached (0 when `offset` is at or past it). On error, bytes
  /// is what was read before it.
  ///
  /// Completion: the handler runs once, after the kernel has finished with
  /// `buffers`, on its associated executor (default: the file's), never
  /// inside this call. Cancellation: per-operation terminal/partial/total
  /// cancellation, `cancel()` and `close()` complete it with
  /// `asio::error::operation_aborted` if the kernel had not done the work,
  /// otherwise with the real result. Errors: the kernel's errno (system
  /// category), `errc::not_open` when the file is not open,
  /// `errc::offset_overflow`, `errc::misaligned_direct_io` (O_DIRECT).
  template <class MutableBufferSequence,
            BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code, std::size_t))
                Token = asio::default_completion_token_t<executor_type>>
  auto async_read_at(std::uint64_t offset, const MutableBufferSequence& buffers,
                     Token&& token = asio::default_completion_token_t<executor_type>()) {
    return initiate_transfer(detail::op_kind::read_full, offset, buffers, std::forward<Token>(token));
  }

  /// Writes all of `buffers` at `offset`, continuing after short writes.
  /// Completes with `(error_code, bytes)`; on error, bytes is what was
  /// written before it (ENOSPC, EDQUOT, EFBIG, EIO come back as they are).
  ///
  /// Completion: the handler runs once, after the kernel has finished with
  /// `buffers`, on its associated executor (default: the file's), never
  /// inside this call. Cancellation: per-operation terminal/partial/total
  /// cancellation, `cancel()` and `close()` complete it with
  /// `asio::error::operation_aborted` if the kernel had not done the work,
  /// otherwise with the real result. Errors: the kernel's errno (system
  /// category), `errc::not_open` when the file is not open,
  /// `errc::offset_overflow`, `errc::misaligned_direct_io` (O_DIRECT).
  template <class ConstBufferSequence,
            BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code, std::size_t))
                Token = asio::default_completion_token_t<executor_type>>
  auto async_write_at(std::uint64_t offset, const ConstBufferSequence& buffers,
                      Token&& token = asio::default_completion_token_t<executor_type>()) {
    return initiate_transfer(detail::op_kind::write_full, offset, buffers, std::forward<Token>(token));
  }

  /// Writes all of `buffers` at `offset` and makes them durable: the write is
  /// linked (IOSQE_IO_LINK) to an fsync(IORING_FSYNC_DATASYNC) and both go to
  /// the kernel in one submission.
  ///
  /// Completing without error means every byte was written and the fsync
  /// that followed the last of them succeeded: the data is durable. A short
  /// write breaks the kernel's link (the fsync is cancelled); fsys then writes
  /// the rest with a new linked fsync. An error means *nothing of this call
  /// may be assumed durable*; bytes is what was written before the error. A
  /// failed fsync is never retried into success. Cancellation: if the write
  /// or the fsync is cancelled before it ran, the handler gets
  /// `operation_aborted` (not durable); if both had run, the real result.
  ///
  /// Completion: the handler runs once, after the kernel has finished with
  /// `buffers`, on its associated executor (default: the file's), never
  /// inside this call. Cancellation: per-operation terminal/partial/total
  /// cancellation, `cancel()` and `close()` complete it with
  /// `asio::error::operation_aborted` if the kernel had not done the work,
  /// otherwise with the real result. Errors: the kernel's errno (system
  /// category), `errc::not_open` when the file is not open,
  /// `errc::offset_overflow`, `errc::misaligned_direct_io` (O_DIRECT).
  template <class ConstBufferSequence,
            BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code, std::size_t))
                Token = asio::default_completion_token_t<executor_type>>
  auto async_write_linked_fsync(std::uint64_t offset, const ConstBufferSequence& buffers,
                                Token&& token = asio::default_completion_token_t<executor_type>()) {
    return initiate_transfer(detail::op_kind::write_linked_fsync, offset, buffers,
                             std::forward<Token>(token));
  }

  /// Writes `buffers` at `offset` untorn: one kernel write flagged
  /// `RWF_ATOMIC` (Linux 6.11+; io_uring `rw_flags`, `pwritev2` on the psync
  /// backend), which after a power cut or crash holds either all of the new
  /// bytes or none of them, never a mix. It is not durable by itself: see
  /// `async_write_atomic_linked_fsync`. Never split, never tried inline,
  /// never continued after a short write.
  ///
  /// The kernel's rules, checked before submission (each refusal has its
  /// own `errc`; the limits come from the file's statx, as `async_stat`
  /// reports them in `file_status::atomic_write_*`): the file supports
  /// untorn writes (`errc::atomic_write_unsupported`) and is open with
  /// O_DIRECT (`errc::atomic_write_needs_direct_io`); the total length is a
  /// power of two (`errc::atomic_write_length_not_power_of_two`) within
  /// [`atomic_write_unit_min`, `atomic_write_unit_max`]
  /// (`errc::atomic_write_length_out_of_range`); `offset` is a multiple of
  /// the length (`errc::atomic_write_misaligned_offset`); at most
  /// `atomic_write_segments_max` buffers (`errc::atomic_write_too_many_segments`),
  /// and the O_DIRECT alignment (`errc::misaligned_direct_io`). A refusal the
  /// kernel still makes comes back as its errno, unchanged.
  ///
  /// Completes with `(error_code, bytes)`: all of the bytes, or an error.
  /// A short write (which the kernel's contract rules out) is reported as
  /// `errc::atomic_write_short` with the bytes the kernel wrote.
  ///
  /// Completion: the handler runs once, after the kernel has finished with
  /// `buffers`, on its associated executor (default: the file's), never
  /// inside this call. Cancellation: per-operation terminal/partial/total
  /// cancellation, `cancel()` and `close()` complete it with
  /// `asio::error::operation_aborted` if the kernel had not started the
  /// write (nothing written), otherwise with the real result.
  template <class ConstBufferSequence,
            BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code, std::size_t))
                Token = asio::default_completion_token_t<executor_type>>
  auto async_write_atomic_at(std::uint64_t offset, const ConstBufferSequence& buffers,
                             Token&& token = asio::default_completion_token_t<executor_type>()) {
    return asio::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
        transfer_initiation{this, -1, true}, token, detail::op_kind::write_some, offset, buffers);
  }

  /// Writes `buffers` at `offset` untorn *and* durably: the `RWF_ATOMIC`
  /// write of `async_write_atomic_at` linked (IOSQE_IO_LINK) to an
  /// fsync(IORING_FSYNC_DATASYNC), both in one submission (psync: pwritev2,
  /// then fdatasync only after the whole write). Same rules, checks and
  /// errors as `async_write_atomic_at`.
  ///
  /// Completing without error means the write was done whole and the fsync
  /// after it succeeded: the new bytes are durable, and no power cut can
  /// leave the range torn. An error means nothing of this call may be
  /// assumed durable (the range holds the old or the new bytes, whole); the
  /// write is never retried. A failed fsync is final (docs/durability.md).
  ///
  /// Completion and cancellation: as for `async_write_atomic_at`; a
  /// cancellation that arrives after the write but before the fsync ran
  /// completes with `operation_aborted` (untorn, not known durable).
  template <class ConstBufferSequence,
            BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code, std::size_t))
                Token = asio::default_completion_token_t<executor_type>>
  auto async_write_atomic_linked_fsync(std::uint64_t offset, const ConstBufferSequence& buffers,
                                       Token&& token = asio::default_completion_token_t<executor_type>()) {
    return asio::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
        transfer_initiation{this, -1, true}, token, detail::op_kind::write_linked_fsync, offset, buffers);
  }

  /// Like `async_read_at`, into a buffer registered with
  /// `uring_service::register_buffers` (IORING_OP_READ_FIXED on io_uring).
  template <BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code, std::size_t))
                Token = asio::default_completion_token_t<executor_type>>
  auto async_read_fixed_at(std::uint64_t offset, fixed_buffer buffer,
                           Token&& token = asio::default_completion_token_t<executor_type>()) {
    return asio::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
        transfer_initiation{this, buffer.index}, token, detail::op_kind::read_full, offset,
        asio::mutable_buffer(buffer.data));
  }

  /// Like `async_write_at`, from a buffer registered with
  /// `uring_service::register_buffers` (IORING_OP_WRITE_FIXED on io_uring).
  template <BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code, std::size_t))
                Token = asio::default_completion_token_t<executor_type>>
  auto async_write_fixed_at(std::uint64_t offset, fixed_buffer buffer,
                            Token&& token = asio::default_completion_token_t<executor_type>()) {
    return asio::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
        transfer_initiation{this, buffer.index}, token, detail::op_kind::write_full, offset,
        asio::const_buffer(buffer.data));
  }

  /// fdatasync(2) through the ring: completes with `(error_code)`.
  ///
  /// Completion: the handler runs once, on its associated executor (default:
  /// the file's), never inside this call. Cancellation: as for the transfers;
  /// a sync the kernel has started runs to its end and reports its real
  /// result. Errors: the kernel's errno (EIO, ENOSPC, ...; see
  /// docs/durability.md: a failed sync is final), `errc::not_open` when
  /// the file is not open.
  template <BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code))
                Token = asio::default_completion_token_t<executor_type>>
  auto async_fdatasync(Token&& token = asio::default_completion_token_t<executor_type>()) {
    return initiate_sync(detail::op_kind::fdatasync, std::forward<Token>(token));
  }

  /// fsync(2) through the ring: completes with `(error_code)`.
  ///
  /// Completion: the handler runs once, on its associated executor (default:
  /// the file's), never inside this call. Cancellation: as for the transfers;
  /// a sync the kernel has started runs to its end and reports its real
  /// result. Errors: the kernel's errno (EIO, ENOSPC, ...; see
  /// docs/durability.md: a failed sync is final), `errc::not_open` when
  /// the file is not open.
  template <BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code))
                Token = asio::default_completion_token_t<executor_type>>
  auto async_fsync(Token&& token = asio::default_completion_token_t<executor_type>()) {
    return initiate_sync(detail::op_kind::fsync, std::forward<Token>(token));
  }

  // ---- file-system operations --------------------------------------------

  /// Opens `path` (relative paths from the current directory) with `open(2)`
  /// flags and creation mode, through the ring (IORING_OP_OPENAT) or the
  /// psync workers; O_CLOEXEC is always added. The file must be closed.
  /// Completes with `(error_code)`; on success the file is open.
  ///
  /// Completion: the handler runs once, on its associated executor (default:
  /// the file's), never inside this call; `is_open()` is false while the
  /// open is pending. With `ring_options::inline_fast_path`, an open without
  /// O_CREAT/O_TRUNC/O_TMPFILE/O_PATH whose path is all in the dentry cache
  /// is done inside this call (`openat2` with `RESOLVE_CACHED`, never
  /// waiting): `is_open()` is then true on return, and the handler is still
  /// posted. Cancellation: per-operation terminal/partial/total cancellation,
  /// `cancel()` and `close()` complete it with `operation_aborted` and leave
  /// the file closed; a descriptor the kernel opened anyway is closed, never
  /// leaked. Errors: `open(2)`'s errno (system category);
  /// `errc::already_open` (compares equal to `device_or_resource_busy`) when
  /// the file is open or being opened; `invalid_argument` for an empty path
  /// or a path with an embedded NUL; `errc::invalid_open_flags` (compares
  /// equal to `invalid_argument`) for unknown flags. Nothing is changed on error.
  template <BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code))
                Token = asio::default_completion_token_t<executor_type>>
  auto async_open(path_view path, int flags, mode_t mode,
                  Token&& token = asio::default_completion_token_t<executor_type>()) {
    return asio::async_initiate<Token, void(boost::system::error_code)>(
        open_initiation{this}, token, detail::open_args(AT_FDCWD, path.str(), open_how{flags, mode, 0}, false));
  }

  /// Opens `path` relative to the directory `dirfd` (`AT_FDCWD`: the current
  /// directory) with `openat2(2)` (IORING_OP_OPENAT2): `how` gives the flags,
  /// the mode and `RESOLVE_*` flags. With `RESOLVE_BENEATH` a path that would
  /// leave `dirfd` (`..`, an absolute path, a symlink pointing out) fails with
  /// `EXDEV`. O_CLOEXEC is always added. Otherwise as the overload above;
  /// unknown `RESOLVE_*` bits fail with `errc::invalid_resolve_flags`
  /// (compares equal to `invalid_argument`). `dirfd` must stay
  /// open until the handler runs.
  template <BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code))
                Token = asio::default_completion_token_t<executor_type>>
  auto async_open(int dirfd, path_view path, const fsys::open_how& how,
                  Token&& token = asio::default_completion_token_t<executor_type>()) {
    return asio::async_initiate<Token, void(boost::system::error_code)>(open_initiation{this}, token,
                                                                        detail::open_args(dirfd, path.str(), how, true));
  }

  /// Closes the file through the ring (IORING_OP_CLOSE) or the psync
  /// workers, and reports `close(2)`'s result. The file's outstanding
  /// operations are cancelled first (their handlers run as with `close()`),
  /// and the close is issued only after the kernel has finished with all of
  /// them. The file is closed (`is_open()` false) as soon as this is called.
  ///
  /// Completion: the handler runs once, on its associated executor, never
  /// inside this call. Cancellation: the close itself is not cancellable
  /// (the descriptor is always released); a cancellation signal has no
  /// effect. Errors: `close(2)`'s errno (EIO: an earlier write failed on
  /// some filesystems; the descriptor is released anyway),
  /// `errc::not_open` when the file is not open.
  template <BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code))
                Token = asio::default_completion_token_t<executor_type>>
  auto async_close(Token&& token = asio::default_completion_token_t<executor_type>()) {
    return asio::async_initiate<Token, void(boost::system::error_code)>(close_initiation{this}, token);
  }

  /// The file's metadata through the ring (IORING_OP_STATX on the open
  /// descriptor). Completes with `(error_code, file_status)`. With
  /// `ring_options::inline_fast_path`, a file on a local filesystem (ext2/3/4,
  /// XFS, btrfs, tmpfs, f2fs), whose attributes are in memory, is stat'ed in
  /// this call and the handler posted; FUSE, NFS and others use the ring.
  ///
  /// Completion, cancellation: as for the transfers. Errors: statx's errno,
  /// `errc::not_open` when the file is not open.
  template <BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code, file_status))
                Token = asio::default_completion_token_t<executor_type>>
  auto async_stat(Token&& token = asio::default_completion_token_t<executor_type>()) {
    return asio::async_initiate<Token, void(boost::system::error_code, file_status)>(
        file_fs_initiation<file_status>{this}, token, detail::op_kind::statx, std::uint64_t{0}, std::uint64_t{0},
        static_cast<int>(AT_EMPTY_PATH | AT_STATX_SYNC_AS_STAT));
  }

  /// `fallocate(2)` through the ring: `mode` takes `FALLOC_FL_*` flags; 0
  /// allocates `[offset, offset + length)` and extends the file if that
  /// reaches past its end (later writes there cannot fail with ENOSPC).
  /// Completes with `(error_code)`.
  ///
  /// Completion, cancellation: as for the transfers. Errors: fallocate's
  /// errno (`EOPNOTSUPP` when the filesystem lacks the mode, `ENOSPC`,
  /// `EINVAL` for a zero length or unknown mode), `errc::offset_overflow`,
  /// `errc::not_open` when the file is not open.
  template <BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code))
                Token = asio::default_completion_token_t<executor_type>>
  auto async_allocate(std::uint64_t offset, std::uint64_t length, int mode,
                      Token&& token = asio::default_completion_token_t<executor_type>()) {
    return asio::async_initiate<Token, void(boost::system::error_code)>(
        file_fs_initiation<void>{this}, token, detail::op_kind::fallocate, offset, length, mode);
  }

  /// `ftruncate(2)` through the ring (IORING_OP_FTRUNCATE, kernel 6.9; the
  /// psync workers otherwise): the file's size becomes `size`. Completes with
  /// `(error_code)`.
  ///
  /// Completion, cancellation: as for the transfers. Errors: ftruncate's
  /// errno (`EINVAL` when the file is not open for writing),
  /// `errc::offset_overflow`, `errc::not_open` when not open.
  template <BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code))
                Token = asio::default_completion_token_t<executor_type>>
  auto async_resize(std::uint64_t size, Token&& token = asio::default_completion_token_t<executor_type>()) {
    return asio::async_initiate<Token, void(boost::system::error_code)>(
        file_fs_initiation<void>{this}, token, detail::op_kind::ftruncate, size, std::uint64_t{0}, 0);
  }

  /// `sync_file_range(2)` through the ring: starts or waits for write-out of
  /// the dirty pages in `[offset, offset + length)` (length 0: to the end of
  /// the file); `flags` takes `SYNC_FILE_RANGE_*`. This is write-out
  /// control, **not durability**: it neither flushes the device cache nor
  /// writes metadata; use `async_fdatasync` for that. Completes with
  /// `(error_code)`.
  ///
  /// Completion, cancellation: as for the transfers. Errors: the kernel's
  /// errno (`EINVAL` for unknown flags), `errc::offset_overflow`,
  /// `errc::not_open` when not open.
  template <BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code))
                Token = asio::default_completion_token_t<executor_type>>
  auto async_sync_range(std::uint64_t offset, std::uint64_t length, unsigned flags,
                        Token&& token = asio::default_completion_token_t<executor_type>()) {
    return asio::async_initiate<Token, void(boost::system::error_code)>(
        file_fs_initiation<void>{this}, token, detail::op_kind::sync_file_range, offset, length,
        static_cast<int>(flags));
  }

  /// `posix_fadvise(2)` through the ring: `advice` (`POSIX_FADV_*`) about
  /// `[offset, offset + length)` (length 0: to the end of the file).
  /// Completes with `(error_code)`.
  ///
  /// Completion, cancellation: as for the transfers. Errors: `EINVAL` for an
  /// unknown advice, `errc::offset_overflow`, `errc::not_open`.
  template <BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code))
                Token = asio::default_completion_token_t<executor_type>>
  auto async_advise(std::uint64_t offset, std::uint64_t length, int advice,
                    Token&& token = asio::default_completion_token_t<executor_type>()) {
    return asio::async_initiate<Token, void(boost::system::error_code)>(
        file_fs_initiation<void>{this}, token, detail::op_kind::fadvise, offset, length, advice);
  }

  // ---- metadata of the open file (see metadata.hpp for the path forms) ----
  // Each is one system call on the open descriptor: through the ring where
  // io_uring has the opcode (FGETXATTR, FSETXATTR), else on the psync
  // workers. Completion, cancellation: as for the transfers. Errors: the
  // system call's errno, `errc::not_open` when the file is not open.

  /// `fchmod(2)`: the file's permission bits become `mode` (07777 at most,
  /// else `errc::invalid_mode`). Completes with `(error_code)`.
  template <BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code))
                Token = asio::default_completion_token_t<executor_type>>
  auto async_set_permissions(mode_t mode, Token&& token = asio::default_completion_token_t<executor_type>()) {
    detail::fs_args_ptr a = detail::make_fs_args();
    a->flags = AT_EMPTY_PATH;
    a->mode = mode;
    return asio::async_initiate<Token, void(boost::system::error_code)>(
        file_args_initiation<void>{this}, token, detail::op_kind::chmod, std::move(a), detail::check_mode(mode));
  }

  /// `fchown(2)`: the file's owner becomes `uid` and its group `gid`
  /// (`fsys::unchanged_id` keeps either). `EPERM` unless privileged.
  /// Completes with `(error_code)`.
  template <BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code))
                Token = asio::default_completion_token_t<executor_type>>
  auto async_set_owner(std::uint32_t uid, std::uint32_t gid,
                       Token&& token = asio::default_completion_token_t<executor_type>()) {
    detail::fs_args_ptr a = detail::make_fs_args();
    a->flags = AT_EMPTY_PATH;
    a->uid = uid;
    a->gid = gid;
    return asio::async_initiate<Token, void(boost::system::error_code)>(
        file_args_initiation<void>{this}, token, detail::op_kind::chown, std::move(a), boost::system::error_code());
  }

  /// `futimens(2)`: sets the access and modification times (each a time,
  /// `file_time::now()` or `file_time::omit()`). Completes with `(error_code)`.
  template <BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code))
                Token = asio::default_completion_token_t<executor_type>>
  auto async_set_times(file_time atime, file_time mtime,
                       Token&& token = asio::default_completion_token_t<executor_type>()) {
    detail::fs_args_ptr a = detail::make_fs_args();
    a->flags = AT_EMPTY_PATH;
    detail::fill_times(*a, atime, mtime);
    return asio::async_initiate<Token, void(boost::system::error_code)>(
        file_args_initiation<void>{this}, token, detail::op_kind::utimens, std::move(a), boost::system::error_code());
  }

  /// `fgetxattr(2)`: the value of the extended attribute `name` (e.g.
  /// "user.mime_type"), however large (the buffer is sized by asking the
  /// kernel when the first guess is too small). Completes with
  /// `(error_code, std::string)`; `ENODATA` when the file has no such attribute.
  template <BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code, std::string))
                Token = asio::default_completion_token_t<executor_type>>
  auto async_get_xattr(std::string_view name, Token&& token = asio::default_completion_token_t<executor_type>()) {
    detail::fs_args_ptr a = detail::make_fs_args();
    a->flags = AT_EMPTY_PATH;
    a->path2.assign(name);
    a->value.resize(detail::xattr_first_guess);
    const boost::system::error_code bad = detail::check_path(a->path2);
    return asio::async_initiate<Token, void(boost::system::error_code, std::string)>(
        file_args_initiation<std::string>{this}, token, detail::op_kind::getxattr, std::move(a), bad);
  }

  /// `fsetxattr(2)`: sets the extended attribute `name` to `value` (copied
  /// before this returns), as `flags` say: `create` fails with `EEXIST` if it
  /// exists, `replace` with `ENODATA` if it does not. Completes with `(error_code)`.
  template <BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code))
                Token = asio::default_completion_token_t<executor_type>>
  auto async_set_xattr(std::string_view name, asio::const_buffer value, xattr_flags flags,
                       Token&& token = asio::default_completion_token_t<executor_type>()) {
    detail::fs_args_ptr a = detail::make_fs_args();
    a->flags = AT_EMPTY_PATH;
    a->path2.assign(name);
    a->mode = static_cast<std::uint32_t>(flags);
    detail::fill_xattr_value(*a, value);
    const boost::system::error_code bad = detail::check_path(a->path2);
    return asio::async_initiate<Token, void(boost::system::error_code)>(
        file_args_initiation<void>{this}, token, detail::op_kind::setxattr, std::move(a), bad);
  }

  /// As above with `xattr_flags::either` (create or replace).
  template <BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code))
                Token = asio::default_completion_token_t<executor_type>>
    requires(!std::is_same_v<std::decay_t<Token>, xattr_flags>)
  auto async_set_xattr(std::string_view name, asio::const_buffer value,
                       Token&& token = asio::default_completion_token_t<executor_type>()) {
    return async_set_xattr(name, value, xattr_flags::either, std::forward<Token>(token));
  }

  /// `flistxattr(2)`: the names of the file's extended attributes (those
  /// the caller may see). Completes with `(error_code, std::vector<std::string>)`.
  template <BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code, std::vector<std::string>))
                Token = asio::default_completion_token_t<executor_type>>
  auto async_list_xattr(Token&& token = asio::default_completion_token_t<executor_type>()) {
    detail::fs_args_ptr a = detail::make_fs_args();
    a->flags = AT_EMPTY_PATH;
    a->value.resize(detail::xattr_first_guess);
    return asio::async_initiate<Token, void(boost::system::error_code, std::vector<std::string>)>(
        file_args_initiation<std::vector<std::string>>{this}, token, detail::op_kind::listxattr, std::move(a),
        boost::system::error_code());
  }

  /// `fremovexattr(2)`: removes the extended attribute `name` (`ENODATA` if
  /// there is none). Completes with `(error_code)`.
  template <BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code))
                Token = asio::default_completion_token_t<executor_type>>
  auto async_remove_xattr(std::string_view name, Token&& token = asio::default_completion_token_t<executor_type>()) {
    detail::fs_args_ptr a = detail::make_fs_args();
    a->flags = AT_EMPTY_PATH;
    a->path2.assign(name);
    const boost::system::error_code bad = detail::check_path(a->path2);
    return asio::async_initiate<Token, void(boost::system::error_code)>(
        file_args_initiation<void>{this}, token, detail::op_kind::removexattr, std::move(a), bad);
  }

 private:
  // True (with `ec` set to errc::service_shut_down) once the io_context's
  // service has shut down: the file then keeps only its descriptor, and the
  // caller must not touch `service_` (see the class comment).
  bool detached(boost::system::error_code& ec) const noexcept {
    if (life_.alive()) [[likely]]
      return false;
    ec = errc::service_shut_down;
    return true;
  }

  // An asynchronous operation started after the service shut down completes
  // with `ec` (and `values`) without an operation: an operation would count
  // work on, and complete through, the destroyed context. A handler whose
  // associated executor belongs to another execution context (which must be
  // alive, as for any handler) gets the result there, deferred: never inside
  // the initiating function. One that would run on the destroyed context
  // cannot be run by anything: this throws std::system_error with
  // errc::service_shut_down, and the handler is destroyed by the caller's
  // unwinding, uninvoked.
  template <class Handler, class... Values>
  void complete_detached(Handler&& handler, boost::system::error_code ec, Values... values) const {
    if (!detail::runs_on_other_context(handler, ex_, life_.context()))
      throw std::system_error(make_error_code(errc::service_shut_down),
                              "fsys::basic_file: asynchronous operation after its io_context was destroyed");
    detail::defer_inline_completion(std::forward<Handler>(handler), ex_, ec, values...);
  }
  template <class Handler, class... Values>
  void refuse_detached(Handler&& handler, Values... values) const {
    complete_detached(std::forward<Handler>(handler), boost::system::error_code(errc::service_shut_down), values...);
  }

  // True when the file holds a descriptor or an open is pending. A handle
  // left by a failed or cancelled async_open is dropped here.
  bool busy() noexcept {
    if (!handle_) return false;
    if (handle_->fd() != -1) return true;
    std::exchange(handle_, nullptr)->release_owner();
    return false;
  }

  // Bad input to async_open: an empty path or one with an embedded NUL, or
  // flags the kernel does not know.
  static boost::system::error_code check_open(const detail::fs_args& a) noexcept {
    if (std::error_code ec = detail::check_path(a.path)) return ec;
    if ((a.flags & ~known_open_flags) != 0) return errc::invalid_open_flags;
    if ((a.how.resolve & ~known_resolve_flags) != 0) return errc::invalid_resolve_flags;
    return {};
  }

  // open(2) flags the kernel knows (anything else: invalid_argument).
  static constexpr int known_open_flags = O_ACCMODE | O_CREAT | O_EXCL | O_NOCTTY | O_TRUNC | O_APPEND |
                                          O_NONBLOCK | O_DSYNC | O_SYNC | O_DIRECT | O_LARGEFILE | O_DIRECTORY |
                                          O_NOFOLLOW | O_NOATIME | O_CLOEXEC | O_PATH | O_TMPFILE | FASYNC;
  // RESOLVE_NO_XDEV | NO_MAGICLINKS | NO_SYMLINKS | BENEATH | IN_ROOT | CACHED.
  static constexpr std::uint64_t known_resolve_flags = 0x3f;

  struct open_initiation {
    basic_file* self_;
    using executor_type = Executor;
    executor_type get_executor() const noexcept { return self_->ex_; }

    template <class Handler>
    void operator()(Handler&& handler, detail::fs_args_ptr args) const {
      using op_t = detail::file_op<std::decay_t<Handler>, Executor, false>;
      if (!self_->life_.alive()) return self_->refuse_detached(std::forward<Handler>(handler));
      if constexpr (op_t::may_complete_inline) {
        // Opened (or failed for good) by an openat2 in this thread that used
        // only cached dentries (see detail/nowait.hpp), before any operation
        // exists: as for an inline read, no cancellation slot is hooked, and
        // the handler is deferred to its executor.
        const int r = self_->try_open_direct(*args);
        if (r != detail::inline_undecided) {
          detail::defer_inline_completion(std::forward<Handler>(handler), self_->ex_,
                                          r < 0 ? boost::system::error_code(-r, boost::system::system_category())
                                                : boost::system::error_code());
          return;
        }
      }
      op_t* op = op_t::create(std::forward<Handler>(handler), self_->ex_, detail::op_kind::open);
      op->fs_ = args.release();
      if (boost::system::error_code ec = check_open(*op->fs_)) {
        op->ec_ = ec;
      } else if (self_->busy()) {
        op->ec_ = make_error_code(errc::already_open);
      } else {
        // The file is "being opened" from now on: its handle receives the
        // descriptor from the open's result rules (op_base::on_result).
        try {
          self_->handle_ = detail::file_handle::create_opening();
        } catch (...) {
          op->destroy();
          throw;
        }
        self_->handle_->add_ref();
        op->file_ = self_->handle_;
      }
      op->connect_cancellation(self_->service_->engine());
      self_->service_->engine().start(op);
    }
  };

  struct close_initiation {
    basic_file* self_;
    using executor_type = Executor;
    executor_type get_executor() const noexcept { return self_->ex_; }

    template <class Handler>
    void operator()(Handler&& handler) const {
      using op_t = detail::file_op<std::decay_t<Handler>, Executor, false>;
      if (!self_->life_.alive()) {
        // The descriptor is closed here (see close()), whatever then happens
        // to the handler: close's result, or not_open for a closed file.
        boost::system::error_code ec;
        self_->close_detached(ec);
        return self_->complete_detached(std::forward<Handler>(handler), ec);
      }
      if constexpr (op_t::may_complete_inline) {
        boost::system::error_code ec;
        if (self_->try_close_direct(ec)) {
          // Closed in this thread (no operation of the file left, a local
          // filesystem: see detail::close_without_waiting) before any
          // operation exists; the handler is deferred, as for every inline
          // completion.
          detail::defer_inline_completion(std::forward<Handler>(handler), self_->ex_, ec);
          return;
        }
      }
      op_t* op = op_t::create(std::forward<Handler>(handler), self_->ex_, detail::op_kind::close);
      try {
        op->fs_ = detail::fs_args::make();
      } catch (...) {
        op->destroy();
        throw;
      }
      detail::engine& e = self_->service_->engine();
      if (!self_->busy()) {
        op->ec_ = errc::not_open;
        e.start(op);
        return;
      }
      // The descriptor goes to `op` when the last reference to the handle
      // is dropped: now, or when the last of the cancelled operations has
      // finished in the kernel (file_handle::close_now starts the op).
      e.cancel_file(self_->handle_);
      self_->handle_->close_with(op, &e);
      std::exchange(self_->handle_, nullptr)->release_owner();
    }
  };

  template <class Value>
  struct file_fs_initiation {
    basic_file* self_;
    using executor_type = Executor;
    executor_type get_executor() const noexcept { return self_->ex_; }

    template <class Handler>
    void operator()(Handler&& handler, detail::op_kind kind, std::uint64_t offset, std::uint64_t length,
                    int flags) const {
      using op_t = detail::file_op<std::decay_t<Handler>, Executor, false, Value>;
      if (!self_->life_.alive()) {
        if constexpr (std::is_void_v<Value>)
          self_->refuse_detached(std::forward<Handler>(handler));
        else
          self_->refuse_detached(std::forward<Handler>(handler), Value{});
        return;
      }
      if constexpr (std::is_same_v<Value, file_status> && op_t::may_complete_inline) {
        // The statx of a file on a local filesystem, made in this thread
        // before any operation exists (see detail::inline_stat), unless a
        // forced sync was asked for; the handler is deferred to its executor.
        struct statx stx;
        const int r = kind == detail::op_kind::statx && !(flags & AT_STATX_FORCE_SYNC) ? self_->try_stat_direct(stx)
                                                                                      : detail::inline_undecided;
        if (r != detail::inline_undecided) {
          detail::defer_inline_completion(
              std::forward<Handler>(handler), self_->ex_,
              r == 0 ? boost::system::error_code() : boost::system::error_code(-r, boost::system::system_category()),
              r == 0 ? detail::to_file_status(stx) : file_status{});
          return;
        }
      }
      op_t* op = op_t::create(std::forward<Handler>(handler), self_->ex_, kind);
      try {
        op->fs_ = detail::fs_args::make();
      } catch (...) {
        op->destroy();
        throw;
      }
      op->fs_->length = length;
      op->fs_->flags = flags;
      self_->launch(op, offset);
    }
  };

  // A file-system op on the open file whose arguments the initiating
  // function filled (metadata); `bad` (if set) refuses it without a system
  // call, completed from the io_context.
  template <class Value>
  struct file_args_initiation {
    basic_file* self_;
    using executor_type = Executor;
    executor_type get_executor() const noexcept { return self_->ex_; }

    template <class Handler>
    void operator()(Handler&& handler, detail::op_kind kind, detail::fs_args_ptr args,
                    const boost::system::error_code& bad) const {
      using op_t = detail::file_op<std::decay_t<Handler>, Executor, false, Value>;
      if (!self_->life_.alive()) {
        if constexpr (std::is_void_v<Value>)
          self_->refuse_detached(std::forward<Handler>(handler));
        else
          self_->refuse_detached(std::forward<Handler>(handler), Value{});
        return;
      }
      op_t* op = op_t::create(std::forward<Handler>(handler), self_->ex_, kind);
      op->fs_ = args.release();
      if (bad) op->ec_ = bad;
      self_->launch(op, 0);
    }
  };

  // The initiation objects Asio's async_initiate calls (now, or later for
  // `deferred`); they only queue the operation, never complete it.
  struct transfer_initiation {
    basic_file* self_;
    int buf_index_ = -1;  // registered buffer, for the fixed variants
    bool atomic_ = false;  // an untorn write (RWF_ATOMIC), see op_base::atomic_
    using executor_type = Executor;
    executor_type get_executor() const noexcept { return self_->ex_; }

    template <class Handler, class Buffers>
    void operator()(Handler&& handler, detail::op_kind kind, std::uint64_t offset,
                    const Buffers& buffers) const {
      if (!self_->life_.alive()) return self_->refuse_detached(std::forward<Handler>(handler), std::size_t{0});
      detail::nowait_outcome pre;
      if (atomic_) {
        pre.decided = true;  // never inline: the engine makes the one RWF_ATOMIC write
      } else if constexpr (!detail::inline_completion_allowed<std::decay_t<Handler>, Executor>()) {
        pre.decided = true;  // no attempt, here or by the operation
      } else if (buf_index_ < 0) {
        pre = self_->try_direct(kind, offset, buffers);
        if (pre.done) {
          // Finished in this thread by the inline fast path: no operation
          // is made, and the handler is deferred to its executor (never
          // invoked here). Nothing was hooked to its cancellation slot, so a
          // cancellation request finds nothing to do and the result stands.
          std::atomic<int>* pending = nullptr;
          if (!detail::runs_on_other_context(handler, self_->ex_, self_->life_.context()))
            pending = self_->hold_pending();
          detail::defer_counted_completion(
              std::forward<Handler>(handler), self_->ex_, pending,
              pre.eof ? boost::system::error_code(asio::error::eof) : boost::system::error_code(), pre.transferred);
          return;
        }
      }
      (*this)(std::forward<Handler>(handler), kind, offset, buffers, pre);
    }

    // The rest of a request whose inline attempt (`pre`) was already made.
    template <class Handler, class Buffers>
    void operator()(Handler&& handler, detail::op_kind kind, std::uint64_t offset, const Buffers& buffers,
                    detail::nowait_outcome pre) const {
      using op_t = detail::file_op<std::decay_t<Handler>, Executor, true>;
      if (!self_->life_.alive()) return self_->refuse_detached(std::forward<Handler>(handler), std::size_t{0});
      op_t* op = op_t::create(std::forward<Handler>(handler), self_->ex_, kind);
      try {
        op->set_buffers(asio::buffer_sequence_begin(buffers), asio::buffer_sequence_end(buffers));
        op->buf_index_ = buf_index_;
        op->atomic_ = atomic_;
      } catch (...) {
        op->destroy();
        throw;
      }
      self_->launch(op, offset, pre);
    }
  };

  struct sync_initiation {
    basic_file* self_;
    using executor_type = Executor;
    executor_type get_executor() const noexcept { return self_->ex_; }

    template <class Handler>
    void operator()(Handler&& handler, detail::op_kind kind) const {
      using op_t = detail::file_op<std::decay_t<Handler>, Executor, false>;
      if (!self_->life_.alive()) return self_->refuse_detached(std::forward<Handler>(handler));
      self_->launch(op_t::create(std::forward<Handler>(handler), self_->ex_, kind), 0);
    }
  };

  template <class Buffers, class Token>
  auto initiate_transfer(detail::op_kind kind, std::uint64_t offset, const Buffers& buffers, Token&& token) {
    return asio::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
        transfer_initiation{this}, token, kind, offset, buffers);
  }

  template <class Token>
  auto initiate_sync(detail::op_kind kind, Token&& token) {
    return asio::async_initiate<Token, void(boost::system::error_code)>(sync_initiation{this}, token, kind);
  }

  // The inline fast path's attempt made before any operation exists (see
  // detail::nowait_direct): read_some, read_full, write_some, write_full of
  // at most `nowait_direct_iovs` buffers of an open regular file not opened
  // O_DIRECT, with the fast path on. `decided` is false when no attempt was
  // made (the operation may then make one).
  template <class Buffers>
  detail::nowait_outcome try_direct(detail::op_kind kind, std::uint64_t offset, const Buffers& buffers) noexcept {
    using detail::op_kind;
    detail::nowait_outcome r;
    const bool read = kind == op_kind::read_some || kind == op_kind::read_full;
    if (!read && kind != op_kind::write_some && kind != op_kind::write_full) return r;
    if (!life_.alive() || !service_->inline_fast_path() || !handle_) return r;
    // The fd first (acquire): a handle whose async_open completes on another
    // thread publishes its file type with the fd (file_handle::attach).
    const int fd = handle_->fd();
    if (fd < 0 || !handle_->nowait_candidate()) return r;
    if (detail::joins_batch(service_->engine(), read, service_->inline_counters())) {
      r.decided = true;  // to the engine, which makes no attempt of its own
      return r;
    }
    iovec iov[detail::nowait_direct_iovs];
    unsigned n = 0;
    std::size_t total = 0;
    for (auto it = asio::buffer_sequence_begin(buffers), end = asio::buffer_sequence_end(buffers); it != end; ++it) {
      const auto b = *it;
      if (b.size() == 0) continue;
      if (n == detail::nowait_direct_iovs) return r;
      // The kernel writes into (reads) exactly these caller buffers; the
      // const_cast only adapts a write's const buffers to iovec.
      iov[n++] = iovec{const_cast<void*>(static_cast<const void*>(b.data())), b.size()};
      total += b.size();
    }
    constexpr std::uint64_t off_max = static_cast<std::uint64_t>(std::numeric_limits<off_t>::max());
    // Empty and out-of-range requests get their result from the operation.
    if (total == 0 || offset > off_max || total > off_max - offset) return r;
    const bool full = kind == op_kind::read_full || kind == op_kind::write_full;
    r = detail::nowait_direct(*handle_, fd, read, full, iov, n, offset, total, service_->inline_counters());
    r.decided = true;
    return r;
  }

  // async_close after the service shut down: closes the descriptor as
  // close() does; `ec` is close(2)'s error, or not_open for a closed file.
  void close_detached(boost::system::error_code& ec) noexcept {
    if (!busy()) {
      ec = errc::not_open;
      return;
    }
    close(ec);
  }

  // The inline fast path of async_close without an operation: with the fast
  // path on, a descriptor no operation holds any more, on a local
  // filesystem, is closed here by close(2) (the file is then closed, `ec`
  // has close's error). False: nothing was done.
  bool try_close_direct(boost::system::error_code& ec) noexcept {
    if (!life_.alive()) {
      close_detached(ec);  // closing works after the service shut down
      return true;
    }
    if (!service_->inline_fast_path() || !handle_ || handle_->fd() < 0 || !detail::close_without_waiting(*handle_))
      return false;
    // Why this is sound: no operation holds the handle (sole reference), so
    // none can reach the kernel with this descriptor number after the close;
    // the file lets go of the handle first, so nothing of the file uses it.
    if (const int err = std::exchange(handle_, nullptr)->release_owner())
      ec.assign(err, boost::system::system_category());
    else
      ec.clear();
    service_->inline_counters().add(&detail::inline_counters::block::closes);
    return true;
  }

  // The inline statx of the open file without an operation (see
  // detail::inline_stat): 0 with `stx` filled, a final -errno, or
  // detail::inline_undecided.
  int try_stat_direct(struct statx& stx) noexcept {
    if (!life_.alive() || !service_->inline_fast_path() || !handle_) return detail::inline_undecided;
    const int fd = handle_->fd();
    if (fd < 0) return detail::inline_undecided;
    // (inline_stat teaches the handle its type and device itself.)
    return detail::inline_stat(*handle_, fd, stx, service_->inline_counters());
  }

  // The inline open of `a` without an operation (see detail::inline_open)
  // into this closed file: the descriptor (>= 0; the file is open), a final
  // -errno, or detail::inline_undecided (bad input, an open file, a lookup
  // not all cached: the operation decides).
  int try_open_direct(const detail::fs_args& a) noexcept {
    if (!life_.alive() || !service_->inline_fast_path() || busy() || check_open(a)) return detail::inline_undecided;
    detail::file_handle* h;
    try {
      h = detail::file_handle::create_opening();
    } catch (...) {
      return detail::inline_undecided;
    }
    const int r = detail::inline_open(a, *h, service_->inline_counters());
    if (r == detail::inline_undecided || r < 0) {
      h->set_failed();
      h->release_owner();
      return r;
    }
    h->attach(r, (a.flags & O_DIRECT) != 0);
    handle_ = h;
    return r;
  }

  // A read or write finished by the inline fast path whose handler is queued
  // on the service's own io_context counts as outstanding on the engine until
  // that handler runs (engine::pending_counter): returns the incremented
  // count, or null. Sound only for such a handler: the io_context destroys
  // queued handlers at its shutdown, before it destroys the service and its
  // engine, so the count outlives every queued handler holding it.
  std::atomic<int>* hold_pending() noexcept {
    std::atomic<int>* p = service_->engine().pending_counter();
    if (p) p->fetch_add(1, std::memory_order_relaxed);
    return p;
  }

  template <class Op>
  void launch(Op* op, std::uint64_t offset, detail::nowait_outcome pre = {}) {
    op->offset_ = offset;
    if (handle_ && handle_->fd() >= 0) {
      handle_->add_ref();
      op->file_ = handle_;
      op->fd_ = handle_->fd();
      op->stream_ = handle_->is_stream();
      op->validate();  // a refused op is queued too, and completes from the io_context
      if (pre.decided) {
        // The attempt was made before the op existed; the op carries on
        // from where it stopped (a `full` transfer's progress is accounted
        // by the op's own rules, in pieces an int holds).
        for (std::size_t left = pre.transferred; left > 0 && !op->ec_;) {
          const std::size_t k = left < (std::size_t{1} << 30) ? left : (std::size_t{1} << 30);
          op->on_result(static_cast<int>(k));
          left -= k;
        }
      } else if (service_->inline_fast_path() && Op::may_complete_inline && !detail::is_fs_kind(op->kind_) &&
                 detail::try_inline_transfer(*op, service_->inline_counters(), service_->engine())) {
        // Finished by a RWF_NOWAIT call in this thread (a page-cache hit):
        // the engine never sees the op, and no cancellation slot is hooked,
        // so a later cancellation request finds nothing to do and the
        // result is delivered. The handler is deferred to its executor.
        op->completed_inline_ = true;
        // Counted as outstanding until its handler runs (see hold_pending).
        if (op->handler_runs_on(life_.context())) op->inline_pending_ = hold_pending();
        op->complete_(op, true);
        return;
      }
    } else {
      // Closed, never opened, moved from, or its async_open still pending or
      // failed: refused, and completed from the io_context like any other.
      op->ec_ = errc::not_open;
    }
    // The op may wait in the ring or a worker from here on: the file gets
    // the status flags its opener asked for (see file_handle::blocking_fd).
    if (op->file_) op->file_->blocking_fd();
    op->connect_cancellation(service_->engine());
    service_->engine().start(op);
  }

  template <class Executor1>
  friend class basic_file;
  friend struct detail::file_access;

  template <class Other>
  void take(Other& other) noexcept {
    boost::system::error_code ignored;
    close(ignored);
    ex_ = other.ex_;
    service_ = other.service_;
    life_ = other.life_;
    handle_ = std::exchange(other.handle_, nullptr);
  }

  Executor ex_;
  uring_service* service_;
  // Whether `service_` still exists (see the class comment).
  detail::service_token life_;
  detail::file_handle* handle_ = nullptr;
};

/// A file on the type-erased `asio::any_io_executor`.
using file = basic_file<>;

namespace detail {
/// The coroutine operations' (co.hpp) access to a file's inline fast path.
struct file_access {
  /// The file's service, or null once its io_context has shut it down.
  template <class Executor>
  static uring_service* live_service(basic_file<Executor>& f) noexcept {
    return f.life_.alive() ? f.service_ : nullptr;
  }
  /// The file's descriptor (-1 when closed) for calls that never wait,
  /// whether or not an inline open left O_NONBLOCK on it (see
  /// file_handle::blocking_fd): cachestat, mmap + mincore, and sendfile of
  /// cached pages into a non-blocking socket.
  template <class Executor>
  static int nowait_fd(const basic_file<Executor>& f) noexcept {
    const int fd = f.handle_ ? f.handle_->fd() : -1;
    return fd >= 0 ? fd : -1;
  }
  template <class Executor, class Buffers>
  static nowait_outcome try_direct(basic_file<Executor>& f, op_kind kind, std::uint64_t offset,
                                   const Buffers& buffers) noexcept {
    return f.try_direct(kind, offset, buffers);
  }
  template <class Executor>
  static bool try_close_direct(basic_file<Executor>& f, boost::system::error_code& ec) noexcept {
    return f.try_close_direct(ec);
  }
  template <class Executor>
  static int try_stat_direct(basic_file<Executor>& f, struct statx& stx) noexcept {
    return f.try_stat_direct(stx);
  }
  template <class Executor>
  static int try_open_direct(basic_file<Executor>& f, const fs_args& a) noexcept {
    return f.try_open_direct(a);
  }
  /// `async_open` with arguments already made (`open_args`).
  template <class Executor, class Token>
  static auto initiate_open(basic_file<Executor>& f, fs_args_ptr a, Token&& token) {
    return asio::async_initiate<Token, void(boost::system::error_code)>(
        typename basic_file<Executor>::open_initiation{&f}, token, std::move(a));
  }
  /// Starts the file-system operation `kind` on `f` with the arguments `a`
  /// (already filled; e.g. getdents with its buffer), as the file's own
  /// file-system operations start: refused with `errc::not_open` when the
  /// file is not open, listed on the file (its close cancels it), hooked to
  /// the handler's cancellation slot. Completes with
  /// `void(error_code, std::size_t)` (the op's `transferred_`).
  template <class Executor, class Token>
  static auto initiate_fs(basic_file<Executor>& f, op_kind kind, fs_args_ptr a, Token&& token) {
    return asio::async_initiate<Token, void(boost::system::error_code, std::size_t)>(fs_args_initiation<Executor>{&f},
                                                                                     token, kind, std::move(a));
  }
  template <class Executor>
  struct fs_args_initiation {
    basic_file<Executor>* f_;
    using executor_type = Executor;
    executor_type get_executor() const noexcept { return f_->ex_; }

    template <class Handler>
    void operator()(Handler&& handler, op_kind kind, fs_args_ptr a) const {
      using op_t = file_op<std::decay_t<Handler>, Executor, true>;
      if (!f_->life_.alive()) return f_->refuse_detached(std::forward<Handler>(handler), std::size_t{0});
      op_t* op = op_t::create(std::forward<Handler>(handler), f_->ex_, kind);
      op->fs_ = a.release();
      f_->launch(op, 0);
    }
  };
  /// The operation for the rest of a request after `try_direct` gave `pre`.
  template <class Executor, class Buffers, class Token>
  static auto initiate_after(basic_file<Executor>& f, op_kind kind, std::uint64_t offset, const Buffers& buffers,
                             nowait_outcome pre, Token&& token) {
    return asio::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
        typename basic_file<Executor>::transfer_initiation{&f}, token, kind, offset, buffers, pre);
  }
};
}  // namespace detail

}  // namespace fsys
