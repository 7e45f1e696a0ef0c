// fsys — a file for positional asynchronous IO on an io_context.
#pragma once

#include <fsys/detail/asio.hpp>
#include <fsys/detail/file_handle.hpp>
#include <fsys/detail/file_op.hpp>
#include <fsys/error.hpp>
#include <fsys/uring_service.hpp>

#include <boost/asio/async_result.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/execution/context.hpp>
#include <boost/asio/query.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <system_error>
#include <type_traits>
#include <utility>

namespace fsys {

/// A file opened for positional (offset-based) IO whose asynchronous
/// operations run on the io_uring ring of its executor's io_context.
///
/// Thread safety: distinct objects are safe; a shared object is not, except
/// that asynchronous operations may be started while others are in flight
/// (any number of reads and writes may be outstanding on one file).
///
/// Models Asio's AsyncRandomAccessReadDevice and AsyncRandomAccessWriteDevice,
/// so `asio::async_read_at` / `asio::async_write_at` work on it.
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
///   `std::error_code`).
/// Closing or destroying the file cancels its outstanding operations; their
/// handlers still run (with operation_aborted or their real result), and the
/// descriptor is closed only after the kernel has finished with them.
template <class Executor = asio::any_io_executor>
class basic_file {
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
      : ex_(ex), service_(&asio::use_service<uring_service>(asio::query(ex_, asio::execution::context))) {}

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

  /// Adopts an open descriptor, which the file then owns and closes.
  basic_file(const executor_type& ex, native_handle_type fd) : basic_file(ex) { adopt(fd); }

  /// Adopts an open descriptor for operations on `ctx`; the file owns and closes it.
  template <class ExecutionContext>
    requires std::is_convertible_v<ExecutionContext&, asio::execution_context&>
  basic_file(ExecutionContext& ctx, native_handle_type fd)
      : basic_file(executor_type(ctx.get_executor()), fd) {}

  /// Takes `other`'s descriptor and outstanding operations; `other` is closed.
  basic_file(basic_file&& other) noexcept
      : ex_(other.ex_), service_(other.service_), handle_(std::exchange(other.handle_, nullptr)) {}

  /// Closes this file (see `close`, errors ignored), then takes `other`'s
  /// descriptor and executor; `other` is closed.
  basic_file& operator=(basic_file&& other) noexcept {
    if (this != &other) {
      std::error_code ignored;
      close(ignored);
      ex_ = other.ex_;
      service_ = other.service_;
      handle_ = std::exchange(other.handle_, nullptr);
    }
    return *this;
  }

  basic_file(const basic_file&) = delete;
  basic_file& operator=(const basic_file&) = delete;

  /// Closes the file (see `close`), ignoring errors.
  ~basic_file() {
    std::error_code ignored;
    close(ignored);
  }

  /// The executor handlers run on unless they have an associated executor.
  executor_type get_executor() noexcept { return ex_; }
  /// The service running this file's operations.
  uring_service& service() noexcept { return *service_; }

  /// Opens `path`; the file must be closed. O_CLOEXEC is always added.
  void open(const std::filesystem::path& path, int flags, mode_t mode = 0644) {
    std::error_code ec;
    open(path, flags, mode, ec);
    if (ec) throw std::system_error(ec, "fsys::basic_file::open " + path.string());
  }
  /// As above; sets `ec` (`open(2)`'s errno, or `device_or_resource_busy`
  /// when the file is already open) instead of throwing.
  void open(const std::filesystem::path& path, int flags, mode_t mode, std::error_code& ec) noexcept {
    if (handle_) {
      ec = std::make_error_code(std::errc::device_or_resource_busy);
      return;
    }
    int fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
    if (fd < 0) {
      ec = std::error_code(errno, std::system_category());
      return;
    }
    adopt(fd, ec);
  }

  /// Adopts an open descriptor; the file must be closed.
  void adopt(native_handle_type fd) {
    std::error_code ec;
    adopt(fd, ec);
    if (ec) throw std::system_error(ec, "fsys::basic_file::adopt");
  }
  /// As above; sets `ec` (`device_or_resource_busy` when already open,
  /// `bad_file_descriptor` for a negative fd) instead of throwing.
  void adopt(native_handle_type fd, std::error_code& ec) noexcept {
    ec.clear();
    if (handle_) {
      ec = std::make_error_code(std::errc::device_or_resource_busy);
      return;
    }
    if (fd < 0) {
      ec = std::make_error_code(std::errc::bad_file_descriptor);
      return;
    }
    try {
      handle_ = detail::file_handle::create(fd, true);
    } catch (const std::bad_alloc&) {
      ec = std::make_error_code(std::errc::not_enough_memory);
    }
  }

  /// True when the file holds a descriptor.
  bool is_open() const noexcept { return handle_ != nullptr; }

  /// The descriptor, or -1 when closed.
  native_handle_type native_handle() const noexcept { return handle_ ? handle_->fd() : -1; }

  /// Cancels outstanding operations and closes the file. If the kernel still
  /// holds operations of this file, the descriptor is closed when the last
  /// of them has finished (its number cannot be reused before); otherwise at
  /// once, reporting `close(2)`'s error.
  void close() {
    std::error_code ec;
    close(ec);
    if (ec) throw std::system_error(ec, "fsys::basic_file::close");
  }
  /// As above; sets `ec` to `close(2)`'s errno instead of throwing.
  void close(std::error_code& ec) noexcept {
    ec.clear();
    if (!handle_) return;
    service_->engine().cancel_file(handle_);
    if (int err = std::exchange(handle_, nullptr)->release_owner()) ec = std::error_code(err, std::system_category());
  }

  /// Cancels outstanding operations and gives up ownership of the
  /// descriptor, which is returned open. The caller must not close it until
  /// the cancelled operations' handlers have run.
  native_handle_type release() {
    std::error_code ec;
    int fd = release(ec);
    if (ec) throw std::system_error(ec, "fsys::basic_file::release");
    return fd;
  }
  /// As above; sets `ec` to `errc::not_open` (and returns -1) when closed.
  native_handle_type release(std::error_code& ec) noexcept {
    if (!handle_) {
      ec = make_error_code(errc::not_open);
      return -1;
    }
    ec.clear();
    int fd = handle_->fd();
    service_->engine().cancel_file(handle_);
    handle_->disown();
    std::exchange(handle_, nullptr)->release_owner();
    return fd;
  }

  /// Cancels all outstanding asynchronous operations on this file.
  void cancel() noexcept {
    if (handle_) service_->engine().cancel_file(handle_);
  }

  /// The file's size in bytes (`fstat`).
  std::uint64_t size() const {
    std::error_code ec;
    auto n = size(ec);
    if (ec) throw std::system_error(ec, "fsys::basic_file::size");
    return n;
  }
  /// As above; sets `ec` (`errc::not_open`, or `fstat`'s errno) and returns 0.
  std::uint64_t size(std::error_code& ec) const noexcept {
    if (!handle_) {
      ec = make_error_code(errc::not_open);
      return 0;
    }
    struct stat st;
    if (::fstat(handle_->fd(), &st) != 0) {
      ec = std::error_code(errno, std::system_category());
      return 0;
    }
    ec.clear();
    return static_cast<std::uint64_t>(st.st_size);
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
  /// category), `asio::error::bad_descriptor` when the file is not open,
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
  /// category), `asio::error::bad_descriptor` when the file is not open,
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
  /// category), `asio::error::bad_descriptor` when the file is not open,
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
  /// category), `asio::error::bad_descriptor` when the file is not open,
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
  /// category), `asio::error::bad_descriptor` when the file is not open,
  /// `errc::offset_overflow`, `errc::misaligned_direct_io` (O_DIRECT).
  template <class ConstBufferSequence,
            BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code, std::size_t))
                Token = asio::default_completion_token_t<executor_type>>
  auto async_write_linked_fsync(std::uint64_t offset, const ConstBufferSequence& buffers,
                                Token&& token = asio::default_completion_token_t<executor_type>()) {
    return initiate_transfer(detail::op_kind::write_linked_fsync, offset, buffers,
                             std::forward<Token>(token));
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
  /// docs/durability.md: a failed sync is final), `asio::error::bad_descriptor`
  /// when the file is not open.
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
  /// docs/durability.md: a failed sync is final), `asio::error::bad_descriptor`
  /// when the file is not open.
  template <BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code))
                Token = asio::default_completion_token_t<executor_type>>
  auto async_fsync(Token&& token = asio::default_completion_token_t<executor_type>()) {
    return initiate_sync(detail::op_kind::fsync, std::forward<Token>(token));
  }

 private:
  // The initiation objects Asio's async_initiate calls (now, or later for
  // `deferred`); they only queue the operation, never complete it.
  struct transfer_initiation {
    basic_file* self_;
    int buf_index_ = -1;  // registered buffer, for the fixed variants
    using executor_type = Executor;
    executor_type get_executor() const noexcept { return self_->ex_; }

    template <class Handler, class Buffers>
    void operator()(Handler&& handler, detail::op_kind kind, std::uint64_t offset,
                    const Buffers& buffers) const {
      using op_t = detail::file_op<std::decay_t<Handler>, Executor, true>;
      op_t* op = op_t::create(std::forward<Handler>(handler), self_->ex_, kind);
      try {
        op->set_buffers(asio::buffer_sequence_begin(buffers), asio::buffer_sequence_end(buffers));
        op->buf_index_ = buf_index_;
      } catch (...) {
        op->destroy();
        throw;
      }
      self_->launch(op, offset);
    }
  };

  struct sync_initiation {
    basic_file* self_;
    using executor_type = Executor;
    executor_type get_executor() const noexcept { return self_->ex_; }

    template <class Handler>
    void operator()(Handler&& handler, detail::op_kind kind) const {
      using op_t = detail::file_op<std::decay_t<Handler>, Executor, false>;
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

  template <class Op>
  void launch(Op* op, std::uint64_t offset) {
    if (handle_) {
      handle_->add_ref();
      op->file_ = handle_;
      op->fd_ = handle_->fd();
      op->stream_ = handle_->is_stream();
    }
    op->offset_ = offset;
    op->validate();  // a refused op is queued too, and completes from the io_context
    op->connect_cancellation(service_->engine());
    service_->engine().start(op);
  }

  Executor ex_;
  uring_service* service_;
  detail::file_handle* handle_ = nullptr;
};

/// A file on the type-erased `asio::any_io_executor`.
using file = basic_file<>;

}  // namespace fsys
