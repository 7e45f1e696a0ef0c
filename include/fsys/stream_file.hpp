// fsys — a file read and written sequentially from a position, as a stream.
#pragma once

#include <fsys/detail/asio.hpp>
#include <fsys/stream_options.hpp>
#include <fsys/detail/file_op.hpp>
#include <fsys/detail/stream_state.hpp>
#include <fsys/detail/sync_io.hpp>
#include <fsys/error.hpp>
#include <fsys/file.hpp>
#include <fsys/file_base.hpp>

#include <boost/asio/async_result.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/error.hpp>
#include <boost/system/errc.hpp>
#include <boost/system/error_code.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <system_error>
#include <type_traits>
#include <utility>

namespace fsys {

/// A file read and written as a stream: every transfer starts at the file's
/// position and moves it by the bytes transferred. A drop-in for
/// `asio::basic_stream_file` built on fsys's `basic_file` (its positional
/// operations, on the io_uring ring or the psync workers), with optional
/// read-ahead and write-behind (`stream_options`).
///
/// Models Asio's SyncReadStream, SyncWriteStream, AsyncReadStream and
/// AsyncWriteStream: `asio::read`, `asio::write`, `asio::async_read`,
/// `asio::async_read_until`, `asio::async_write` (with buffers, dynamic
/// buffers and `asio::streambuf`) and Beast's `http::async_read` work on it.
///
/// Position. As in `asio::stream_file`: it starts at 0 when a path is
/// opened (at the descriptor's own offset when one is adopted), each
/// operation transfers from it and moves it by the bytes transferred when it
/// completes, `seek` sets it and returns it, and reading at or past the end
/// completes with `asio::error::eof`. With `append` every write lands at the
/// end of the file and the position is then the end of what was written.
/// The position is fsys's, not the descriptor's: `native_handle()`'s offset
/// is not moved by operations; `release()` sets it to the position.
///
/// One read and one write at a time, as for any Asio stream (the composed
/// operations never start a second one); thread safety otherwise as for
/// `basic_file`: distinct objects are safe, a shared one is not.
///
/// Asynchronous operations take any Asio completion token, complete on the
/// handler's associated executor (default: the file's), never inside the
/// initiating function, and honour per-operation cancellation (terminal,
/// partial, total). Completion signatures use `boost::system::error_code`.
///
/// Read-ahead and write-behind (`set_options`, off by default):
/// - read-ahead keeps `read_ahead_count` reads of `read_ahead_size` bytes in
///   flight from the position on; `async_read_some` is served from them
///   (copying) and refills them. A request of at least `read_ahead_size`
///   bytes made when no read-ahead data is at the position goes to the kernel
///   with the caller's buffers instead (no copy to save a read for). `seek`, any write, `resize` and `cancel`
///   discard them; a read that does not continue where the last one ended
///   restarts them at the position. A read-ahead error is reported by the
///   read that reaches it.
/// - write-behind copies up to `write_behind_size` bytes of each
///   `async_write_some` into a buffer of its own, starts the write, and
///   completes at once with the bytes taken: up to `write_behind_count`
///   writes stay in flight behind the position. A failed write-behind write
///   is never lost: its error is reported by the next operation (read,
///   write, `async_flush`) and, once, by the next `async_sync` /
///   `async_close` / `sync_all` / `sync_data` / `close`, whichever comes
///   first for each of the two. A read waits until every write has landed,
///   so it sees them. `close()`, `release()`, `sync_all()`, `sync_data()`
///   and the synchronous reads write the bytes still in flight again with
///   `pwrite` in the calling thread (the same bytes at the same offsets), so
///   that they are on the file and their errors known when the call returns;
///   `async_flush`, `async_sync` and `async_close` wait for them instead.
///   `cancel()` never cancels write-behind writes. Ignored with `append`.
/// - per-operation cancellation of an operation waiting for read-ahead data
///   or a write-behind slot completes it with `operation_aborted`; one handed
///   to the kernel runs to its end.
template <class Executor = asio::any_io_executor>
class basic_stream_file : public file_base {
  using state_type = detail::stream_state<Executor>;

 public:
  /// The executor the file's operations are associated with.
  using executor_type = Executor;
  /// A POSIX file descriptor.
  using native_handle_type = int;

  /// Rebinds the file to another executor type.
  template <class Executor1>
  struct rebind_executor {
    /// The file type when rebound to `Executor1`.
    using other = basic_stream_file<Executor1>;
  };

  /// A closed stream file whose operations run on `ex`'s io_context.
  explicit basic_stream_file(const executor_type& ex) : ex_(ex), s_(std::make_shared<state_type>(ex)) {}

  /// A closed stream file on `ctx`.
  template <class ExecutionContext>
    requires std::is_convertible_v<ExecutionContext&, asio::execution_context&>
  explicit basic_stream_file(ExecutionContext& ctx) : basic_stream_file(executor_type(ctx.get_executor())) {}

  /// Opens `path` with Asio-style flags. Throws `std::system_error`.
  basic_stream_file(const executor_type& ex, const char* path, file_base::flags open_flags)
      : basic_stream_file(ex) {
    open(path, open_flags);
  }
  /// As above, on `ctx`.
  template <class ExecutionContext>
    requires std::is_convertible_v<ExecutionContext&, asio::execution_context&>
  basic_stream_file(ExecutionContext& ctx, const char* path, file_base::flags open_flags)
      : basic_stream_file(executor_type(ctx.get_executor()), path, open_flags) {}
  /// Opens `path` with Asio-style flags. Throws `std::system_error`.
  basic_stream_file(const executor_type& ex, const std::string& path, file_base::flags open_flags)
      : basic_stream_file(ex, path.c_str(), open_flags) {}
  /// As above, on `ctx`.
  template <class ExecutionContext>
    requires std::is_convertible_v<ExecutionContext&, asio::execution_context&>
  basic_stream_file(ExecutionContext& ctx, const std::string& path, file_base::flags open_flags)
      : basic_stream_file(executor_type(ctx.get_executor()), path.c_str(), open_flags) {}

  /// Adopts an open descriptor (owned and closed by the file from now on);
  /// the position starts at the descriptor's offset.
  basic_stream_file(const executor_type& ex, const native_handle_type& fd) : basic_stream_file(ex) { assign(fd); }
  /// As above, on `ctx`.
  template <class ExecutionContext>
    requires std::is_convertible_v<ExecutionContext&, asio::execution_context&>
  basic_stream_file(ExecutionContext& ctx, const native_handle_type& fd)
      : basic_stream_file(executor_type(ctx.get_executor()), fd) {}

  /// Takes `other`'s file, position, options and operations; `other` is
  /// closed, as if constructed from its executor.
  basic_stream_file(basic_stream_file&& other) noexcept : ex_(other.ex_), s_(std::move(other.s_)) {}
  /// As above, from a stream file on an executor type that converts.
  template <class Executor1>
    requires(!std::is_same_v<Executor1, Executor> && std::is_convertible_v<Executor1, Executor>)
  basic_stream_file(basic_stream_file<Executor1>&& other) : ex_(other.ex_), s_(std::make_shared<state_type>(ex_)) {
    take(other);
  }
  /// Closes this file (errors ignored) and takes `other`'s.
  basic_stream_file& operator=(basic_stream_file&& other) noexcept {
    if (this != &other) {
      boost::system::error_code ignored;
      close(ignored);
      ex_ = other.ex_;
      s_ = std::move(other.s_);
    }
    return *this;
  }
  /// As above, from a stream file on an executor type that converts.
  template <class Executor1>
    requires(!std::is_same_v<Executor1, Executor> && std::is_convertible_v<Executor1, Executor>)
  basic_stream_file& operator=(basic_stream_file<Executor1>&& other) {
    boost::system::error_code ignored;
    close(ignored);
    ex_ = other.ex_;
    s_ = std::make_shared<state_type>(ex_);
    take(other);
    return *this;
  }
  basic_stream_file(const basic_stream_file&) = delete;
  basic_stream_file& operator=(const basic_stream_file&) = delete;

  /// Closes the file as `close()` does, ignoring errors.
  ~basic_stream_file() {
    boost::system::error_code ignored;
    close(ignored);
  }

  /// The executor handlers run on unless they have an associated executor.
  executor_type get_executor() noexcept { return ex_; }

  // ---- options ------------------------------------------------------------

  /// Sets read-ahead and write-behind (see the class documentation). Takes
  /// effect from the next operation; read-ahead already in flight is
  /// discarded.
  void set_options(const stream_options& o) {
    state_type& s = state();
    std::lock_guard lk(s.mu);
    s.opts = o;
    s.discard_ra();
  }
  /// The options in effect.
  stream_options options() const {
    if (!s_) return {};
    std::lock_guard lk(s_->mu);
    return s_->opts;
  }

  // ---- opening and closing -------------------------------------------------

  /// Opens `path` with Asio-style flags; the position starts at 0.
  void open(const char* path, file_base::flags open_flags) {
    boost::system::error_code ec;
    open(path, open_flags, ec);
    detail::throw_if(ec, "fsys::basic_stream_file::open", path);
  }
  /// As above; sets `ec` instead of throwing.
  void open(const char* path, file_base::flags open_flags, boost::system::error_code& ec) noexcept {
    state_type* s = state(ec);
    if (!s) return;
    std::lock_guard lk(s->mu);
    s->file.open(path, open_flags, ec);
    if (ec) return;
    // As asio::stream_file does: the file will be read sequentially, so the
    // kernel may double its own read-ahead window. Advice only; its result
    // does not matter.
    ::posix_fadvise(s->file.native_handle(), 0, 0, POSIX_FADV_SEQUENTIAL);
    reset_locked(*s, 0, (open_flags & file_base::append) != 0);
  }
  /// As above, with `std::error_code`.
  void open(const char* path, file_base::flags open_flags, std::error_code& ec) noexcept {
    detail::to_std(ec, [&](auto& bec) { open(path, open_flags, bec); });
  }
  /// Opens `path` with Asio-style flags. Throws `std::system_error`.
  void open(const std::string& path, file_base::flags open_flags) { open(path.c_str(), open_flags); }
  /// As above; sets `ec` instead of throwing.
  void open(const std::string& path, file_base::flags open_flags, boost::system::error_code& ec) noexcept {
    open(path.c_str(), open_flags, ec);
  }
  /// As above, with `std::error_code`.
  void open(const std::string& path, file_base::flags open_flags, std::error_code& ec) noexcept {
    open(path.c_str(), open_flags, ec);
  }

  /// Adopts an open descriptor; the position starts at its offset.
  void assign(const native_handle_type& fd) {
    boost::system::error_code ec;
    assign(fd, ec);
    detail::throw_if(ec, "fsys::basic_stream_file::assign");
  }
  /// As above; sets `ec` instead of throwing (the caller keeps the
  /// descriptor on failure).
  void assign(const native_handle_type& fd, boost::system::error_code& ec) noexcept {
    state_type* s = state(ec);
    if (!s) return;
    std::lock_guard lk(s->mu);
    s->file.assign(fd, ec);
    if (ec) return;
    const off_t at = ::lseek(fd, 0, SEEK_CUR);
    const int fl = ::fcntl(fd, F_GETFL);
    reset_locked(*s, at > 0 ? static_cast<std::uint64_t>(at) : 0, fl >= 0 && (fl & O_APPEND) != 0);
  }
  /// As above, with `std::error_code`.
  void assign(const native_handle_type& fd, std::error_code& ec) noexcept {
    detail::to_std(ec, [&](auto& bec) { assign(fd, bec); });
  }

  /// True when the file holds a descriptor.
  bool is_open() const noexcept { return s_ && s_->file.is_open(); }

  /// The descriptor, or -1 when closed. Its offset is not the stream's
  /// position (see the class documentation).
  native_handle_type native_handle() const noexcept { return s_ ? s_->file.native_handle() : -1; }

  /// Closes the file. Write-behind bytes still in flight are written again
  /// in this thread first (see the class documentation); read-ahead reads
  /// and waiting operations are cancelled (their handlers run with
  /// `operation_aborted`). Throws `std::system_error` with the first of: a
  /// write-behind error not yet reported by a sync or close, an error of
  /// that last write, `close(2)`'s error.
  void close() {
    boost::system::error_code ec;
    close(ec);
    detail::throw_if(ec, "fsys::basic_stream_file::close");
  }
  /// As above; sets `ec` instead of throwing. The file is closed either way.
  void close(boost::system::error_code& ec) noexcept {
    ec.clear();
    if (!s_) return;
    std::shared_ptr<state_type> s = std::move(s_);
    typename state_type::done_list out;
    {
      std::lock_guard lk(s->mu);
      if (!s->file.is_open() && s->queue.empty()) {
        s_ = std::move(s);  // nothing to close: keep the state (and options)
        return;
      }
      boost::system::error_code flush_ec, close_ec;
      s->flush_sync(flush_ec);
      ec = s->wb_error_sync ? s->wb_error_sync : flush_ec;
      s->file.close(close_ec);
      if (!ec) ec = close_ec;
      abort_queue_locked(*s, out);
      s->discard_ra();
      s->wb.clear();
    }
    const bool alive = s->alive();
    state_type::finish(out, alive);
    // The old state lives on with the handlers of what was in flight; this
    // file starts afresh (keeping its options). Not after the io_context has
    // gone: the file can then only be destroyed.
    if (!alive) return;
    try {
      auto fresh = std::make_shared<state_type>(ex_);
      fresh->opts = s->opts;
      s_ = std::move(fresh);
    } catch (...) {
      // s_ stays empty: the file is closed, and a later open makes a state.
    }
  }
  /// As above, with `std::error_code`.
  void close(std::error_code& ec) noexcept {
    detail::to_std(ec, [&](auto& bec) { close(bec); });
  }

  /// Gives up the descriptor, returned open with its offset set to the
  /// stream's position. Write-behind bytes in flight are written again in
  /// this thread first; waiting operations complete with `operation_aborted`.
  native_handle_type release() {
    boost::system::error_code ec;
    const int fd = release(ec);
    detail::throw_if(ec, "fsys::basic_stream_file::release");
    return fd;
  }
  /// As above; sets `ec` (and returns -1 when the file is not open).
  native_handle_type release(boost::system::error_code& ec) noexcept {
    state_type* s = state(ec);
    if (!s) return -1;
    typename state_type::done_list out;
    int fd;
    {
      std::lock_guard lk(s->mu);
      boost::system::error_code flush_ec;
      s->flush_sync(flush_ec);
      fd = s->file.release(ec);
      if (fd >= 0) ::lseek(fd, static_cast<off_t>(s->pos), SEEK_SET);
      if (!ec) ec = std::exchange(s->wb_error_sync, {});
      if (!ec) ec = flush_ec;
      abort_queue_locked(*s, out);
      s->discard_ra();
      s->wb.clear();
      s->wb_error_op.clear();
    }
    state_type::finish(out, s->alive());
    return fd;
  }
  /// As above, with `std::error_code`.
  native_handle_type release(std::error_code& ec) noexcept {
    return detail::to_std(ec, [&](auto& bec) { return release(bec); });
  }

  /// Cancels the outstanding operations: each completes with
  /// `operation_aborted`, or with its real result when the kernel had done
  /// the work. Read-ahead is discarded; write-behind writes are not
  /// cancelled (their bytes were accepted).
  void cancel() {
    boost::system::error_code ec;
    cancel(ec);
    detail::throw_if(ec, "fsys::basic_stream_file::cancel");
  }
  /// As above; sets `ec` (`errc::not_open` when the file is closed).
  void cancel(boost::system::error_code& ec) noexcept {
    if (!s_ || !s_->file.is_open()) {
      ec = errc::not_open;
      return;
    }
    ec.clear();
    typename state_type::done_list out;
    {
      std::lock_guard lk(s_->mu);
      if (s_->wb.empty()) s_->file.cancel(ec);
      abort_queue_locked(*s_, out);
      s_->discard_ra();
    }
    state_type::finish(out, s_->alive());
  }
  /// As above, with `std::error_code`.
  void cancel(std::error_code& ec) noexcept {
    detail::to_std(ec, [&](auto& bec) { cancel(bec); });
  }

  // ---- synchronous file calls -------------------------------------------

  /// The file's size in bytes (write-behind writes in flight included).
  std::uint64_t size() const {
    boost::system::error_code ec;
    const auto n = size(ec);
    detail::throw_if(ec, "fsys::basic_stream_file::size");
    return n;
  }
  /// As above; sets `ec` instead of throwing.
  std::uint64_t size(boost::system::error_code& ec) const noexcept {
    if (!s_) {
      ec = errc::not_open;
      return 0;
    }
    std::lock_guard lk(s_->mu);
    return s_->size(ec);
  }
  /// As above, with `std::error_code`.
  std::uint64_t size(std::error_code& ec) const noexcept {
    return detail::to_std(ec, [&](auto& bec) { return size(bec); });
  }

  /// Sets the file's size (`ftruncate`); the position is unchanged.
  /// Refused with `device_or_resource_busy` while write-behind writes are
  /// in flight (they could extend the file again): `async_flush` first.
  void resize(std::uint64_t n) {
    boost::system::error_code ec;
    resize(n, ec);
    detail::throw_if(ec, "fsys::basic_stream_file::resize");
  }
  /// As above; sets `ec` instead of throwing.
  void resize(std::uint64_t n, boost::system::error_code& ec) noexcept {
    state_type* s = state(ec);
    if (!s) return;
    std::lock_guard lk(s->mu);
    if (!s->wb.empty()) {
      ec = boost::system::errc::make_error_code(boost::system::errc::device_or_resource_busy);
      return;
    }
    s->discard_ra();
    s->file.resize(n, ec);
  }
  /// As above, with `std::error_code`.
  void resize(std::uint64_t n, std::error_code& ec) noexcept {
    detail::to_std(ec, [&](auto& bec) { resize(n, bec); });
  }

  /// `fsync(2)` in the calling thread, after writing the write-behind bytes
  /// still in flight again; reports a write-behind error first.
  void sync_all() {
    boost::system::error_code ec;
    sync_all(ec);
    detail::throw_if(ec, "fsys::basic_stream_file::sync_all");
  }
  /// As above; sets `ec` instead of throwing.
  void sync_all(boost::system::error_code& ec) noexcept { sync(false, ec); }
  /// As above, with `std::error_code`.
  void sync_all(std::error_code& ec) noexcept {
    detail::to_std(ec, [&](auto& bec) { sync_all(bec); });
  }
  /// `fdatasync(2)` in the calling thread, as `sync_all` otherwise.
  void sync_data() {
    boost::system::error_code ec;
    sync_data(ec);
    detail::throw_if(ec, "fsys::basic_stream_file::sync_data");
  }
  /// As above; sets `ec` instead of throwing.
  void sync_data(boost::system::error_code& ec) noexcept { sync(true, ec); }
  /// As above, with `std::error_code`.
  void sync_data(std::error_code& ec) noexcept {
    detail::to_std(ec, [&](auto& bec) { sync_data(bec); });
  }

  /// Sets the position: `offset` from the start (`seek_set`), the current
  /// position (`seek_cur`) or the end (`seek_end`, write-behind included).
  /// Returns the new position. Discards read-ahead. A position before the
  /// start fails with `invalid_argument`; past the end is allowed (a write
  /// there leaves a hole, a read gets eof).
  std::uint64_t seek(std::int64_t offset, file_base::seek_basis whence) {
    boost::system::error_code ec;
    const auto n = seek(offset, whence, ec);
    detail::throw_if(ec, "fsys::basic_stream_file::seek");
    return n;
  }
  /// As above; sets `ec` instead of throwing (and returns 0).
  std::uint64_t seek(std::int64_t offset, file_base::seek_basis whence, boost::system::error_code& ec) noexcept {
    state_type* s = state(ec);
    if (!s) return 0;
    std::lock_guard lk(s->mu);
    if (!s->file.is_open()) {
      ec = errc::not_open;
      return 0;
    }
    std::int64_t base = 0;
    if (whence == seek_cur) {
      base = static_cast<std::int64_t>(s->pos);
    } else if (whence == seek_end) {
      const std::uint64_t n = s->size(ec);
      if (ec) return 0;
      base = static_cast<std::int64_t>(n);
    } else if (whence != seek_set) {
      ec = boost::system::errc::make_error_code(boost::system::errc::invalid_argument);
      return 0;
    }
    if ((offset < 0 && base + offset < 0) || (offset > 0 && base > INT64_MAX - offset)) {
      ec = boost::system::errc::make_error_code(boost::system::errc::invalid_argument);
      return 0;
    }
    ec.clear();
    s->pos = static_cast<std::uint64_t>(base + offset);
    s->discard_ra();
    return s->pos;
  }
  /// As above, with `std::error_code`.
  std::uint64_t seek(std::int64_t offset, file_base::seek_basis whence, std::error_code& ec) noexcept {
    return detail::to_std(ec, [&](auto& bec) { return seek(offset, whence, bec); });
  }

  /// Reads from the position with one `preadv(2)` in the calling thread and
  /// moves the position; returns the bytes read. At the end of the file
  /// fails with `asio::error::eof`. Throws `std::system_error`.
  template <class MutableBufferSequence>
  std::size_t read_some(const MutableBufferSequence& buffers) {
    boost::system::error_code ec;
    const std::size_t n = read_some(buffers, ec);
    detail::throw_if(ec, "fsys::basic_stream_file::read_some");
    return n;
  }
  /// As above; sets `ec` instead of throwing.
  template <class MutableBufferSequence>
  std::size_t read_some(const MutableBufferSequence& buffers, boost::system::error_code& ec) noexcept {
    state_type* s = state(ec);
    if (!s) return 0;
    std::lock_guard lk(s->mu);
    if (take_wb_error_locked(*s, ec)) return 0;
    s->flush_sync(ec);  // a read sees every earlier write
    if (ec) return 0;
    s->discard_ra();
    const std::size_t n = s->file.read_some_at(s->pos, buffers, ec);
    s->pos += n;
    return n;
  }
  /// As above, with `std::error_code`.
  template <class MutableBufferSequence>
  std::size_t read_some(const MutableBufferSequence& buffers, std::error_code& ec) noexcept {
    return detail::to_std(ec, [&](auto& bec) { return read_some(buffers, bec); });
  }

  /// Writes at the position (the end with `append`) with one `pwritev(2)`
  /// in the calling thread and moves the position; returns the bytes
  /// written. Throws `std::system_error`.
  template <class ConstBufferSequence>
  std::size_t write_some(const ConstBufferSequence& buffers) {
    boost::system::error_code ec;
    const std::size_t n = write_some(buffers, ec);
    detail::throw_if(ec, "fsys::basic_stream_file::write_some");
    return n;
  }
  /// As above; sets `ec` instead of throwing. With write-behind writes in
  /// flight, a write that does not continue them is refused with
  /// `device_or_resource_busy` (it could overlap one of them).
  template <class ConstBufferSequence>
  std::size_t write_some(const ConstBufferSequence& buffers, boost::system::error_code& ec) noexcept {
    state_type* s = state(ec);
    if (!s) return 0;
    std::lock_guard lk(s->mu);
    if (take_wb_error_locked(*s, ec)) return 0;
    if (!s->wb.empty() && s->pos != s->wb_next) {
      ec = boost::system::errc::make_error_code(boost::system::errc::device_or_resource_busy);
      return 0;
    }
    s->discard_ra();
    if (s->append) {
      const std::uint64_t end = s->file.size(ec);
      if (ec) return 0;
      s->pos = end;
    }
    const std::size_t n = s->file.write_some_at(s->pos, buffers, ec);
    s->pos += n;
    if (!s->wb.empty()) s->wb_next = s->pos;
    return n;
  }
  /// As above, with `std::error_code`.
  template <class ConstBufferSequence>
  std::size_t write_some(const ConstBufferSequence& buffers, std::error_code& ec) noexcept {
    return detail::to_std(ec, [&](auto& bec) { return write_some(buffers, bec); });
  }

  // ---- asynchronous operations -------------------------------------------

  /// Reads from the position into `buffers` and moves the position by the
  /// bytes read. Completes with `(error_code, bytes)`; may read less than
  /// asked; at the end of the file completes with `asio::error::eof` and 0.
  ///
  /// Without read-ahead: one kernel read (`basic_file::async_read_some_at`).
  /// With it: served from the read-ahead data, waiting for it if needed.
  /// Completion: the handler runs once, on its associated executor (default:
  /// the file's), never inside this call; `buffers` must stay valid until
  /// then. Cancellation: per-operation cancellation (any type), `cancel()`
  /// and `close()` complete it with `operation_aborted` unless the work was
  /// done. Errors: the kernel's errno, `errc::not_open`, a write-behind error
  /// (see the class documentation).
  template <class MutableBufferSequence,
            BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code, std::size_t))
                Token = asio::default_completion_token_t<executor_type>>
  auto async_read_some(const MutableBufferSequence& buffers,
                       Token&& token = asio::default_completion_token_t<executor_type>()) {
    return asio::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
        read_initiation<MutableBufferSequence>{this}, token, buffers);
  }

  /// Writes `buffers` at the position (the end with `append`) and moves the
  /// position by the bytes written. Completes with `(error_code, bytes)`;
  /// may write less than given.
  ///
  /// Without write-behind: one kernel write. With it: the bytes taken are
  /// copied and the operation completes once the write is started (see the
  /// class documentation for where its errors go). Completion,
  /// cancellation: as for `async_read_some`.
  template <class ConstBufferSequence,
            BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code, std::size_t))
                Token = asio::default_completion_token_t<executor_type>>
  auto async_write_some(const ConstBufferSequence& buffers,
                        Token&& token = asio::default_completion_token_t<executor_type>()) {
    return asio::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
        write_initiation<ConstBufferSequence>{this}, token, buffers);
  }

  /// Waits until every write-behind write has landed. Completes with
  /// `(error_code)`: the first write-behind error not yet reported, or
  /// success. Completion, cancellation: as for `async_read_some`.
  template <BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code))
                Token = asio::default_completion_token_t<executor_type>>
  auto async_flush(Token&& token = asio::default_completion_token_t<executor_type>()) {
    return asio::async_initiate<Token, void(boost::system::error_code)>(flush_initiation{this, 0}, token);
  }

  /// Waits until every write-behind write has landed, then `fdatasync`s the
  /// file through the ring. Completes with `(error_code)`: a write-behind
  /// error not yet reported by a sync or close, else fdatasync's result.
  /// A success means every byte written through this stream before the call
  /// is durable.
  template <BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code))
                Token = asio::default_completion_token_t<executor_type>>
  auto async_sync(Token&& token = asio::default_completion_token_t<executor_type>()) {
    return asio::async_initiate<Token, void(boost::system::error_code)>(flush_initiation{this, 1}, token);
  }

  /// Waits until every write-behind write has landed, then closes the file
  /// through the ring. Completes with `(error_code)`: a write-behind error
  /// not yet reported by a sync or close, else close's result. The file is
  /// closed when the handler runs (whatever the result).
  template <BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code))
                Token = asio::default_completion_token_t<executor_type>>
  auto async_close(Token&& token = asio::default_completion_token_t<executor_type>()) {
    return asio::async_initiate<Token, void(boost::system::error_code)>(flush_initiation{this, 2}, token);
  }

 private:
  template <class Executor1>
  friend class basic_stream_file;

  // The state; s_ is empty only after a move or a failed allocation.
  state_type& state() {
    if (!s_) s_ = std::make_shared<state_type>(ex_);
    return *s_;
  }
  state_type* state(boost::system::error_code& ec) noexcept {
    ec.clear();
    try {
      return &state();
    } catch (...) {
      ec = boost::system::errc::make_error_code(boost::system::errc::not_enough_memory);
      return nullptr;
    }
  }

  template <class Other>
  void take(Other& other) {
    if (!other.s_) return;
    std::lock_guard lk(other.s_->mu);
    s_->opts = other.s_->opts;
    if (other.s_->file.is_open()) {
      boost::system::error_code ignored;
      other.s_->flush_sync(ignored);
      const int fd = other.s_->file.release(ignored);
      if (fd >= 0) {
        s_->file.assign(fd);
        reset_locked(*s_, other.s_->pos, other.s_->append);
      }
    }
  }

  static void reset_locked(state_type& s, std::uint64_t pos, bool append) noexcept {
    struct stat st;
    s.regular = ::fstat(s.file.native_handle(), &st) != 0 || S_ISREG(st.st_mode);
    s.pos = pos;
    s.append = append;
    s.discard_ra();
    s.wb_next = s.wb_end = 0;
    s.wb_error_op.clear();
    s.wb_error_sync.clear();
  }

  static void abort_queue_locked(state_type& s, typename state_type::done_list& out) {
    for (auto it = s.queue.begin(); it != s.queue.end();) {
      if ((*it)->issued) {
        ++it;  // the kernel has it; its own completion reports it
        continue;
      }
      (*it)->clear_slot();
      out.push_back({*it, {asio::error::operation_aborted, 0}});
      it = s.queue.erase(it);
    }
  }

  static bool take_wb_error_locked(state_type& s, boost::system::error_code& ec) noexcept {
    if (!s.wb_error_op) return false;
    ec = std::exchange(s.wb_error_op, {});  // a sync or close reports it again
    return true;
  }

  void sync(bool data_only, boost::system::error_code& ec) noexcept {
    state_type* s = state(ec);
    if (!s) return;
    std::lock_guard lk(s->mu);
    boost::system::error_code flush_ec;
    s->flush_sync(flush_ec);
    if (s->wb_error_sync) {
      ec = std::exchange(s->wb_error_sync, {});
      s->wb_error_op.clear();
      return;
    }
    if (flush_ec) {
      ec = flush_ec;
      return;
    }
    if (data_only)
      s->file.sync_data(ec);
    else
      s->file.sync_all(ec);
  }

  // Starts a caller operation: directly on the file when no read-ahead or
  // write-behind is configured, through the queue otherwise.
  template <class Handler, class Buffers>
  void start(Handler&& handler, detail::stream_pending::kind_t kind, const Buffers& buffers) {
    using H = std::decay_t<Handler>;
    if (!s_) {
      detail::defer_inline_completion(std::forward<Handler>(handler), ex_,
                                      boost::system::error_code(errc::not_open), std::size_t{0});
      return;
    }
    state_type& s = *s_;
    std::unique_lock lk(s.mu);
    // Unbuffered, or after the io_context has gone (basic_file then refuses
    // the operation as it documents).
    if ((!s.buffered() && s.queue.empty()) || !s.alive()) {
      // Asio's stream_file exactly: one kernel operation from the position.
      // The caller's buffers are the kernel's until its handler runs (Asio's
      // rule), which happens after the CQE.
      using PH = detail::position_handler<H, state_type>;
      if (kind == detail::stream_pending::read) {
        s.file.async_read_some_at(s.pos, buffers, PH{s_, std::forward<Handler>(handler)});
      } else {
        if (s.append) {
          boost::system::error_code ec;
          const std::uint64_t end = s.file.size(ec);
          if (!ec) s.pos = end;  // where O_APPEND puts the bytes
        }
        s.file.async_write_some_at(s.pos, buffers, PH{s_, std::forward<Handler>(handler)});
      }
      return;
    }
    if (!s.file.is_open()) {
      lk.unlock();
      detail::defer_inline_completion(std::forward<Handler>(handler), ex_,
                                      boost::system::error_code(errc::not_open), std::size_t{0});
      return;
    }
    using op_t = detail::stream_pending_op<H, Executor, state_type, true>;
    op_t* p = op_t::create(kind, std::forward<Handler>(handler), ex_);
    for (auto it = asio::buffer_sequence_begin(buffers), end = asio::buffer_sequence_end(buffers);
         it != end && p->nbufs < detail::stream_pending::max_buffers; ++it) {
      const auto b = *it;
      // Writes keep the const buffers' addresses; they are only read (copy_out).
      p->bufs[p->nbufs++] = asio::mutable_buffer(const_cast<void*>(static_cast<const void*>(b.data())), b.size());
      p->total += b.size();
    }
    run_queued(s, lk, p);
  }

  template <class Handler>
  void start_flush(Handler&& handler, int what) {
    using H = std::decay_t<Handler>;
    if (!s_ || !s_->file.is_open()) {
      detail::defer_inline_completion(std::forward<Handler>(handler), ex_, boost::system::error_code(errc::not_open));
      return;
    }
    state_type& s = *s_;
    if (!s.alive()) {
      // As basic_file does after its io_context has gone (see its class
      // documentation): async_fsync / async_close refuse the operation.
      if (what == 2) {
        s.file.async_close(std::forward<Handler>(handler));
      } else {
        s.file.async_fsync(std::forward<Handler>(handler));
      }
      return;
    }
    std::unique_lock lk(s.mu);
    using inner_op = detail::stream_pending_op<H, Executor, state_type, false>;
    if (what == 0) {
      run_queued(s, lk, inner_op::create(detail::stream_pending::flush, std::forward<Handler>(handler), ex_));
      return;
    }
    // async_sync / async_close: a flush whose completion goes on to the
    // fdatasync or close with the caller's handler.
    using F = flush_then<H>;
    using op_t = detail::stream_pending_op<F, Executor, state_type, false>;
    op_t* p = op_t::create(detail::stream_pending::flush, F{s_, std::forward<Handler>(handler), what}, ex_);
    p->flush_what = what;
    run_queued(s, lk, p);
  }

  template <class Op>
  void run_queued(state_type& s, std::unique_lock<std::mutex>& lk, Op* p) {
    s.queue.push_back(p);
    try {
      p->hook(s_);
    } catch (...) {
      // no slot hooked: the operation is simply not cancellable
    }
    typename state_type::done_list out;
    s.pump(out);
    lk.unlock();
    state_type::finish(out);
  }

  // After async_sync's or async_close's flush: the fdatasync or close, or
  // the flush's error. Runs on the caller's handler's executor.
  template <class Handler>
  struct flush_then {
    std::shared_ptr<state_type> st;
    Handler handler;
    int what;
    using cancellation_slot_type = asio::cancellation_slot;
    cancellation_slot_type get_cancellation_slot() const noexcept { return asio::cancellation_slot(); }
    using allocator_type = asio::associated_allocator_t<Handler>;
    allocator_type get_allocator() const noexcept { return asio::get_associated_allocator(handler); }
    using executor_type = asio::associated_executor_t<Handler, Executor>;
    executor_type get_executor() const noexcept { return asio::get_associated_executor(handler, st->file.get_executor()); }

    void operator()(boost::system::error_code ec) {
      std::lock_guard lk(st->mu);
      if (what == 2) {
        if (ec) {
          // The file is closed all the same; the write-behind error first.
          boost::system::error_code ignored;
          st->file.close(ignored);
          detail::defer_inline_completion(std::move(handler), st->file.get_executor(), ec);
          return;
        }
        st->discard_ra();
        st->file.async_close(std::move(handler));
      } else {
        if (ec) {
          detail::defer_inline_completion(std::move(handler), st->file.get_executor(), ec);
          return;
        }
        st->file.async_fdatasync(std::move(handler));
      }
    }
  };

  template <class Buffers>
  struct read_initiation {
    basic_stream_file* self_;
    using executor_type = Executor;
    executor_type get_executor() const noexcept { return self_->ex_; }
    template <class Handler>
    void operator()(Handler&& handler, const Buffers& buffers) const {
      self_->start(std::forward<Handler>(handler), detail::stream_pending::read, buffers);
    }
  };
  template <class Buffers>
  struct write_initiation {
    basic_stream_file* self_;
    using executor_type = Executor;
    executor_type get_executor() const noexcept { return self_->ex_; }
    template <class Handler>
    void operator()(Handler&& handler, const Buffers& buffers) const {
      self_->start(std::forward<Handler>(handler), detail::stream_pending::write, buffers);
    }
  };
  struct flush_initiation {
    basic_stream_file* self_;
    int what;
    using executor_type = Executor;
    executor_type get_executor() const noexcept { return self_->ex_; }
    template <class Handler>
    void operator()(Handler&& handler) const {
      self_->start_flush(std::forward<Handler>(handler), what);
    }
  };

  Executor ex_;
  std::shared_ptr<state_type> s_;
};

/// A stream file on the type-erased `asio::any_io_executor`.
using stream_file = basic_stream_file<>;

}  // namespace fsys
