// fsys — sending a range of a file to a stream socket: `fsys::async_send_file`.
#pragma once

#include <fsys/co.hpp>
#include <fsys/file.hpp>
#include <fsys/options.hpp>
#include <fsys/uring_service.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/basic_stream_socket.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/compose.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/socket_base.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/system/error_code.hpp>

#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <concepts>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <type_traits>
#include <utility>

namespace fsys {

/// Size of the buffer `async_send_file` allocates (once per operation, only
/// when it needs it) for the read + write path.
inline constexpr std::size_t send_file_buffer_size = 64 * 1024;

/// Largest range `async_send_file` hands to one `sendfile(2)` call, after
/// checking that all of its pages are in the page cache.
inline constexpr std::size_t send_file_zero_copy_chunk = 256 * 1024;

namespace detail {

// The completion handler a stream's async_write_some is checked against.
struct send_file_write_handler_archetype {
  void operator()(boost::system::error_code, std::size_t) const {}
};

template <class T>
inline constexpr bool send_file_always_false = false;

}  // namespace detail

/// A stream socket of Asio (`asio::ip::tcp::socket`,
/// `asio::local::stream_protocol::socket`, on any executor): `async_send_file`
/// sends to it with `sendfile(2)` (zero copy) when the pages are cached.
template <class S>
concept send_file_socket = requires {
  typename S::protocol_type;
  typename S::executor_type;
} && std::derived_from<S, asio::basic_stream_socket<typename S::protocol_type, typename S::executor_type>>;

/// An Asio AsyncWriteStream: `get_executor()` and
/// `async_write_some(ConstBufferSequence, token)` completing with
/// `(error_code, std::size_t)` (`asio::ssl::stream`, `asio::writable_pipe`,
/// a user's own stream).
template <class S>
concept send_file_write_stream = requires(S& s, const asio::const_buffer& b) {
  typename S::executor_type;
  s.get_executor();
  s.async_write_some(b, detail::send_file_write_handler_archetype{});
};

/// A stream with a timeout over a stream socket, shaped like
/// `boost::beast::basic_stream` (`beast::tcp_stream`): `socket()` gives the
/// socket, `expires_after` / `expires_never` set the timeout, and its own
/// `async_write_some` applies that timeout (completing with
/// `beast::error::timeout` once it has passed). `async_send_file` sends with
/// `sendfile(2)` on `socket()` and does every wait for the socket through the
/// stream, so that the stream's timeout ends the operation as it ends the
/// stream's own writes.
template <class S>
concept send_file_timed_stream = send_file_write_stream<S> && requires(S& s) {
  requires send_file_socket<std::remove_cvref_t<decltype(s.socket())>>;
  s.expires_after(std::chrono::seconds(1));
  s.expires_never();
};

/// What `async_send_file` accepts: a stream socket, a timed stream over one
/// (`beast::tcp_stream`), or any AsyncWriteStream (`asio::ssl::stream`, ...).
template <class S>
concept send_file_stream = send_file_socket<S> || send_file_write_stream<S>;

namespace detail {

// cachestat(2) (Linux 6.5); declared here because older kernel headers lack it.
struct send_file_cachestat_range {
  std::uint64_t off;
  std::uint64_t len;
};
struct send_file_cachestat {
  std::uint64_t nr_cache;
  std::uint64_t nr_dirty;
  std::uint64_t nr_writeback;
  std::uint64_t nr_evicted;
  std::uint64_t nr_recently_evicted;
};
inline constexpr long send_file_sys_cachestat = 451;  // the same number on every architecture

// 1 while cachestat(2) may work, 0 once it was refused (ENOSYS, EPERM).
inline std::atomic<int> send_file_cachestat_usable{1};

// Whether every page of [off, off + len) of fd is in the page cache:
// 1 yes, 0 no (or an error the read path will report), -1 when the kernel
// cannot tell (no cachestat). One system call; it never waits for the disk.
inline int send_file_range_cached(int fd, std::uint64_t off, std::uint64_t len) noexcept {
  if (send_file_cachestat_usable.load(std::memory_order_relaxed) == 0) return -1;
  long page = ::sysconf(_SC_PAGESIZE);
  std::uint64_t p = page > 0 ? static_cast<std::uint64_t>(page) : 4096;
  send_file_cachestat_range range{off, len};
  send_file_cachestat cs{};
  // Sound: both structs live on this stack frame for the whole call; the
  // kernel only reads `range` and writes `cs`.
  if (::syscall(send_file_sys_cachestat, fd, &range, &cs, 0) != 0) {
    if (errno == ENOSYS || errno == EPERM) {
      send_file_cachestat_usable.store(0, std::memory_order_relaxed);
      return -1;
    }
    return 0;
  }
  // Pages past the end of the file are not counted: a range reaching past
  // it reports "not cached", and the read path then finds the end.
  std::uint64_t pages = (off + len + p - 1) / p - off / p;
  return cs.nr_cache >= pages ? 1 : 0;
}

// A read-only shared mapping of a range of a file, used only to ask
// mincore(2) which of its pages are in the page cache *and up to date*.
// cachestat(2) also counts pages whose read is still in flight (read-ahead
// allocates and locks them before the disk answers), and sendfile(2) waits
// for those; mincore reports them as absent. Mapping a range reads nothing
// from the disk and populates no page table; the mapping is never touched.
class send_file_residency_map {
 public:
  send_file_residency_map() = default;
  send_file_residency_map(send_file_residency_map&& o) noexcept
      : addr_(std::exchange(o.addr_, nullptr)), len_(std::exchange(o.len_, 0)), off_(o.off_), failed_(o.failed_) {}
  send_file_residency_map& operator=(send_file_residency_map&&) = delete;
  ~send_file_residency_map() {
    // Sound: addr_/len_ are exactly what mmap returned and was given.
    if (addr_) ::munmap(addr_, len_);
  }

  // 1: every page of [off, off + len) of fd is cached and up to date; 0:
  // not (or the file cannot be mapped: the caller then reads through the
  // ring). `end`: where the caller's range ends; the mapping covers at most
  // `window` bytes of [off, end) and moves along with the range.
  int uptodate(int fd, std::uint64_t off, std::uint64_t len, std::uint64_t end) noexcept {
    static constexpr std::uint64_t window = 64 * 1024 * 1024;
    std::uint64_t page = page_size();
    if (failed_) return 0;
    if (!addr_ || off < off_ || off + len > off_ + len_) {
      if (addr_) ::munmap(addr_, len_);  // Sound: what mmap returned, with its length
      addr_ = nullptr;
      off_ = off / page * page;
      std::uint64_t stop = std::max(off + len, std::min(end, off_ + window));
      if (off_ > static_cast<std::uint64_t>(std::numeric_limits<off_t>::max()) || stop - off_ > window + len) {
        failed_ = true;
        return 0;
      }
      len_ = static_cast<std::size_t>(stop - off_);
      // Sound: a PROT_READ shared mapping of an open descriptor; the kernel
      // keeps its own reference to the file, and the mapping is only
      // passed to mincore and munmap, never read.
      void* m = ::mmap(nullptr, len_, PROT_READ, MAP_SHARED, fd, static_cast<off_t>(off_));
      if (m == MAP_FAILED) {
        failed_ = true;
        len_ = 0;
        return 0;
      }
      addr_ = m;
    }
    if (failed_ || off < off_ || off + len > off_ + len_) return 0;
    std::uint64_t a = (off - off_) / page * page;
    std::uint64_t e = off + len - off_;
    unsigned char vec[send_file_zero_copy_chunk / 4096 + 2];
    std::uint64_t pages = (e - a + page - 1) / page;
    if (pages > sizeof vec) return 0;
    // Sound: [addr_ + a, addr_ + a + pages * page) lies inside the mapping
    // (its length is rounded up to whole pages by the kernel), and vec has
    // room for one byte per page.
    if (::mincore(static_cast<char*>(addr_) + a, static_cast<std::size_t>(e - a), vec) != 0) return 0;
    for (std::uint64_t i = 0; i < pages; ++i)
      if (!(vec[i] & 1)) return 0;
    return 1;
  }

 private:
  static std::uint64_t page_size() noexcept {
    long p = ::sysconf(_SC_PAGESIZE);
    return p > 0 ? static_cast<std::uint64_t>(p) : 4096;
  }
  void* addr_ = nullptr;
  std::size_t len_ = 0;
  std::uint64_t off_ = 0;
  bool failed_ = false;
};

// The zero-copy operation, for a stream socket (`Stream` is the socket) or a
// timed stream over one (`Stream` is the stream: its socket is used for
// sendfile, the stream for every write and every wait).
template <class Stream, class Executor>
class send_file_op {
 public:
  send_file_op(Stream& stream, basic_file<Executor>& file, std::uint64_t offset, std::uint64_t count)
      : stream_(stream), file_(file), offset_(offset), remaining_(count), total_(count), begin_(offset) {}

  template <class Self>
  void operator()(Self& self, boost::system::error_code ec = {}, std::size_t n = 0) {
    switch (step_) {
      case step::start:
        if (boost::system::error_code e = start()) return finish(self, e);
        break;
      case step::waited:
        suspended_ = true;
        if (ec) return finish(self, ec);
        break;
      case step::read_done:
        suspended_ = true;
        // End of file: the end of the range, or the file shrank below it.
        if (ec == asio::error::eof || (!ec && n == 0)) return finish(self, check_size(offset_));
        if (ec) return finish(self, ec);
        if (self.cancelled() != asio::cancellation_type::none)
          return finish(self, asio::error::operation_aborted);
        // A read racing a truncation may return bytes the truncation zeroes
        // meanwhile: send them only if the file still holds them.
        if (boost::system::error_code e = check_size(offset_ + n)) return finish(self, e);
        step_ = step::write_done;
        // Sound: buf_ is owned by this operation, which lives until its
        // handler runs, i.e. after the write has finished with the bytes.
        asio::async_write(stream_, asio::buffer(buf_.get(), n), std::move(self));
        return;
      case step::probe_written:
        // The timed stream's one-byte write (wait_writable) is done.
        suspended_ = true;
        advance(n);
        if (ec) return finish(self, ec);
        if (n > 0)
          if (boost::system::error_code e = check_size(offset_)) return finish(self, e);
        break;
      case step::write_done:
        suspended_ = true;
        advance(n);
        if (ec) return finish(self, ec);
        break;
      case step::complete_posted:
        return self.complete(final_ec_, sent_);
    }
    run(self);
  }

 private:
  enum class step { start, waited, probe_written, read_done, write_done, complete_posted };

  static constexpr bool timed = !send_file_socket<Stream>;

  auto& socket() {
    if constexpr (timed)
      return stream_.socket();
    else
      return stream_;
  }

  // Waits until the socket takes more bytes. A socket waits with async_wait.
  // A timed stream must apply its timeout to the wait, and only its own
  // writes do (its timer is not public): the wait is a write of the next
  // byte of the range through the stream, which waits for the socket under
  // the stream's timeout (and, on expiry, closes the socket and completes
  // with the stream's timeout error, as the stream's own writes do). The
  // byte comes from the page cache: it is read only when cachestat reports
  // its page cached, so the read does not wait for the disk; otherwise the
  // next chunk goes through the read path, whose writes are the stream's.
  template <class Self>
  void wait_writable(Self& self) {
    if constexpr (!timed) {
      step_ = step::waited;
      socket().async_wait(asio::socket_base::wait_write, std::move(self));
    } else {
      const int fd = detail::file_access::nowait_fd(file_);
      if (send_file_range_cached(fd, offset_, 1) == 1) {
        // The byte lives on the heap: this object moves into the stream's
        // operation below, so its members change address.
        if (!probe_) probe_ = std::make_unique<unsigned char>();
        ssize_t r;
        // Sound: *probe_ is owned by this operation and does not move with
        // it; the operation lives until the stream's write has completed.
        do r = ::pread(fd, probe_.get(), 1, static_cast<off_t>(offset_));
        while (r < 0 && errno == EINTR);
        if (r == 0) return finish(self, check_size(offset_));  // end of file: the range's, or shrunk
        if (r < 0) return finish(self, boost::system::error_code(errno, boost::system::system_category()));
        step_ = step::probe_written;
        stream_.async_write_some(asio::buffer(probe_.get(), 1), std::move(self));
        return;
      }
      force_read_ = true;
      run(self);
    }
  }

  // errc::service_shut_down when the file's io_context is gone: nothing of
  // its service may be used, and its reads would be refused.
  boost::system::error_code start() {
    uring_service* svc = detail::file_access::live_service(file_);
    if (!svc) return errc::service_shut_down;
    zero_copy_ = svc->active_backend() == backend::io_uring && file_.is_open();
    if (file_.is_open()) {
      // Where the part of the range the file holds now ends: a file found
      // shorter than that later (end of file, or a size check) shrank
      // meanwhile. A range past the end of the file is not a truncation.
      boost::system::error_code ec;
      const std::uint64_t size = file_.size(ec);
      if (ec) return ec;
      end_ = size <= offset_ ? size : offset_ + std::min(remaining_, size - offset_);
      check_size_ = true;
    }
    if (zero_copy_) {
      boost::system::error_code ec;
      // Asio's own operations on the socket cope with this mode (it is the
      // mode they set themselves); sendfile needs it to never block.
      socket().native_non_blocking(true, ec);
      if (ec) zero_copy_ = false;
    }
    return {};
  }

  // errc::file_truncated when the file is now shorter than the part of the
  // range it held when the operation started, or than `reach`, the end of
  // the bytes sent or about to be sent (if there are any). One fstat(2).
  boost::system::error_code check_size(std::uint64_t reach) {
    if (!check_size_) return {};
    boost::system::error_code ec;
    const std::uint64_t size = file_.size(ec);
    if (ec) return ec;
    size_checked_ = true;
    if (size < end_ || (reach > begin_ && size < reach)) return errc::file_truncated;
    return {};
  }

  void advance(std::size_t n) {
    size_checked_ = false;
    sent_ += n;
    offset_ += n;
    remaining_ -= n;
  }

  template <class Self>
  void run(Self& self) {
    std::size_t sent_now = 0;
    while (remaining_ > 0) {
      if (self.cancelled() != asio::cancellation_type::none) return finish(self, asio::error::operation_aborted);
      if (zero_copy_ && !std::exchange(force_read_, false)) {
        std::size_t chunk = static_cast<std::size_t>(std::min<std::uint64_t>(remaining_, send_file_zero_copy_chunk));
        int fd = detail::file_access::nowait_fd(file_);
        int cached = send_file_range_cached(fd, offset_, chunk);
        // A range of more than one chunk (a stream, whose read-ahead may be
        // in flight, its own or another client's) is also checked page by
        // page for up-to-date pages: sendfile would wait for the others.
        if (cached == 1 && total_ > send_file_zero_copy_chunk)
          cached = residency_.uptodate(fd, offset_, chunk, offset_ + remaining_);
        if (cached < 0) {
          zero_copy_ = false;
        } else if (cached == 1) {
          if (offset_ > static_cast<std::uint64_t>(std::numeric_limits<off_t>::max())) return finish(self, {});
          off_t off = static_cast<off_t>(offset_);
          // Sound: both descriptors are open (the caller keeps the socket
          // and the file alive until the handler runs); the pages are in
          // the cache, so the call does not wait for the disk, and the
          // socket is non-blocking, so it does not wait for the peer.
          ssize_t r = ::sendfile(socket().native_handle(), fd, &off, chunk);
          if (r > 0) {
            advance(static_cast<std::size_t>(r));
            // The socket now refers to these pages; a truncation from here
            // on changes what the peer gets (see async_send_file). Catch one
            // that happened before or during the call.
            if (boost::system::error_code e = check_size(offset_)) return finish(self, e);
            sent_now += static_cast<std::size_t>(r);
            if (sent_now >= sync_budget && remaining_ > 0) {
              // Let other work on the io_context run between large bursts
              // (and let a timed stream's timeout apply between them).
              return wait_writable(self);
            }
            continue;
          }
          if (r == 0) return finish(self, check_size(offset_));  // end of file: the range's, or shrunk
          int e = errno;
          if (e == EINTR) continue;
          if (e == EAGAIN || e == EWOULDBLOCK) return wait_writable(self);
          if (e == EINVAL || e == ENOSYS || e == EOPNOTSUPP) {
            zero_copy_ = false;  // this pair refuses sendfile: read + write
          } else {
            return finish(self, boost::system::error_code(e, boost::system::system_category()));
          }
        }
      }
      // Read path: a bounded chunk through the ring (or the psync workers),
      // never on this thread; it also pulls cold pages into the cache.
      if (!buf_) buf_.reset(new std::byte[send_file_buffer_size]);
      std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(remaining_, send_file_buffer_size));
      step_ = step::read_done;
      // Sound: buf_ is owned by this operation and outlives the read.
      file_.async_read_some_at(offset_, asio::buffer(buf_.get(), want), std::move(self));
      return;
    }
    // The whole range was sent: one last look, unless the last chunk's check
    // was made after the last bytes were.
    finish(self, size_checked_ ? boost::system::error_code() : check_size(offset_));
  }

  template <class Self>
  void finish(Self& self, boost::system::error_code ec) {
    if (!suspended_) {
      // Never complete inside the initiating function.
      final_ec_ = ec;
      step_ = step::complete_posted;
      asio::post(std::move(self));
      return;
    }
    self.complete(ec, sent_);
  }

  static constexpr std::size_t sync_budget = send_file_zero_copy_chunk;

  Stream& stream_;
  basic_file<Executor>& file_;
  std::uint64_t offset_;
  std::uint64_t remaining_;
  std::uint64_t total_;  // the count asked for
  std::uint64_t begin_;  // the offset asked for
  std::uint64_t end_ = 0;      // where the part of the range the file held at the start ends
  bool check_size_ = false;    // the file was open at the start: sizes are checked
  bool size_checked_ = false;  // no bytes were sent since the last check
  send_file_residency_map residency_;
  std::size_t sent_ = 0;
  std::unique_ptr<std::byte[]> buf_;
  bool zero_copy_ = false;
  bool force_read_ = false;  // the next chunk takes the read path (timed streams)
  bool suspended_ = false;
  std::unique_ptr<unsigned char> probe_;  // the byte a timed stream's wait writes
  step step_ = step::start;
  boost::system::error_code final_ec_;
};

// The copying operation, for any AsyncWriteStream: the range is read through
// the file's ring (or the psync workers) into two buffers the operation
// owns, and written with asio::async_write on the stream; while one buffer
// is written, the next chunk is read into the other (one parallel group of
// the two operations per chunk).
template <class Stream, class Executor>
class send_file_stream_op {
 public:
  send_file_stream_op(Stream& stream, basic_file<Executor>& file, std::uint64_t offset, std::uint64_t count)
      : stream_(stream), file_(file), read_off_(offset), to_read_(count), begin_(offset) {}

  template <class Self>
  void operator()(Self& self) {
    if (step_ == step::complete_posted) return self.complete(final_ec_, sent_);
    if (boost::system::error_code e = start()) return finish(self, e);
    if (to_read_ == 0) return finish(self, check_size(read_off_));
    step_ = step::first_read;
    read_into(0, std::move(self));
  }

  // The first read, the last write, or the completion posted by finish.
  template <class Self>
  void operator()(Self& self, boost::system::error_code ec, std::size_t n) {
    if (step_ == step::complete_posted) return self.complete(final_ec_, sent_);
    suspended_ = true;
    if (step_ == step::last_write) {
      sent_ += n;
      if (ec) return finish(self, ec);
      return finish(self, check_size(read_off_));
    }
    if (boost::system::error_code e = read_done(0, ec, n)) return finish(self, e);
    next(self);
  }

  // The write of buffer cur_ together with the read of the next chunk into the other.
  template <class Self>
  void operator()(Self& self, std::array<std::size_t, 2>, boost::system::error_code wec, std::size_t wn,
                  boost::system::error_code rec, std::size_t rn) {
    suspended_ = true;
    sent_ += wn;
    if (wec) return finish(self, wec);
    if (boost::system::error_code e = read_done(1 - cur_, rec, rn)) return finish(self, e);
    filled_[cur_] = 0;
    cur_ = 1 - cur_;
    next(self);
  }

 private:
  enum class step { start, first_read, round, last_write, complete_posted };

  boost::system::error_code start() {
    if (!detail::file_access::live_service(file_)) return errc::service_shut_down;
    if (file_.is_open()) {
      // As in send_file_op: where the part of the range the file holds now ends.
      boost::system::error_code ec;
      const std::uint64_t size = file_.size(ec);
      if (ec) return ec;
      end_ = size <= read_off_ ? size : read_off_ + std::min(to_read_, size - read_off_);
      check_size_ = true;
    }
    return {};
  }

  // As in send_file_op: errc::file_truncated when the file is now shorter
  // than the part of the range it held at the start, or than `reach`.
  boost::system::error_code check_size(std::uint64_t reach) {
    if (!check_size_) return {};
    boost::system::error_code ec;
    const std::uint64_t size = file_.size(ec);
    if (ec) return ec;
    if (size < end_ || (reach > begin_ && size < reach)) return errc::file_truncated;
    return {};
  }

  std::byte* buffer(int i) { return bufs_.get() + static_cast<std::size_t>(i) * send_file_buffer_size; }

  template <class Token>
  auto read_into(int i, Token&& token) {
    if (!bufs_) bufs_.reset(new std::byte[2 * send_file_buffer_size]);
    std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(to_read_, send_file_buffer_size));
    // Sound: the buffers are owned by this operation (on the heap: they do
    // not move with it), and the operation lives until its handler runs,
    // which is after every read and write it started has completed (a
    // parallel group completes when both of its operations have).
    return file_.async_read_some_at(read_off_, asio::buffer(buffer(i), want), std::forward<Token>(token));
  }

  // Records a read into buffer i; the end of the file ends the reading.
  boost::system::error_code read_done(int i, boost::system::error_code ec, std::size_t n) {
    if (ec == asio::error::eof || (!ec && n == 0)) {
      to_read_ = 0;  // the end of the range, or the file shrank below it
      return check_size(read_off_);
    }
    if (ec) return ec;
    // A read racing a truncation may return bytes the truncation zeroes
    // meanwhile: send them only if the file still holds them.
    if (boost::system::error_code e = check_size(read_off_ + n)) return e;
    filled_[i] = n;
    read_off_ += n;
    to_read_ -= n;
    return {};
  }

  template <class Self>
  void next(Self& self) {
    if (self.cancelled() != asio::cancellation_type::none) return finish(self, asio::error::operation_aborted);
    const std::size_t n = filled_[cur_];
    if (n == 0) return finish(self, check_size(read_off_));
    // Sound: see read_into; the bytes stay untouched until the write completes.
    auto data = asio::buffer(buffer(cur_), n);
    if (to_read_ == 0) {
      step_ = step::last_write;
      asio::async_write(stream_, data, std::move(self));
      return;
    }
    step_ = step::round;
    // Both operations' handlers run on the operation's executor (the
    // handler's: a strand, say), as those of a composed operation do: a
    // parallel group's own handlers have none, so the stream's intermediate
    // handlers would run on its I/O executor, beside a cancellation signal
    // emitted on the strand.
    // The initiations capture what they need by value: they run after this
    // object has moved into the group.
    auto ex = self.get_executor();
    Stream* stream = &stream_;
    basic_file<Executor>* file = &file_;
    // Sound: see read_into (the buffers are on the heap and do not move).
    auto next_chunk = asio::buffer(buffer(1 - cur_), static_cast<std::size_t>(
                                                         std::min<std::uint64_t>(to_read_, send_file_buffer_size)));
    const std::uint64_t at = read_off_;
    auto write = asio::async_initiate<const asio::deferred_t, void(boost::system::error_code, std::size_t)>(
        [stream, data, ex](auto handler) { asio::async_write(*stream, data, asio::bind_executor(ex, std::move(handler))); },
        asio::deferred);
    auto read = asio::async_initiate<const asio::deferred_t, void(boost::system::error_code, std::size_t)>(
        [file, at, next_chunk, ex](auto handler) {
          file->async_read_some_at(at, next_chunk, asio::bind_executor(ex, std::move(handler)));
        },
        asio::deferred);
    asio::experimental::make_parallel_group(std::move(write), std::move(read))
        .async_wait(asio::experimental::wait_for_all(), std::move(self));
  }

  template <class Self>
  void finish(Self& self, boost::system::error_code ec) {
    if (!suspended_) {
      // Never complete inside the initiating function.
      final_ec_ = ec;
      step_ = step::complete_posted;
      asio::post(std::move(self));
      return;
    }
    self.complete(ec, sent_);
  }

  Stream& stream_;
  basic_file<Executor>& file_;
  std::uint64_t read_off_;  // where the next read starts
  std::uint64_t to_read_;   // bytes of the range not read yet
  std::uint64_t begin_;     // the offset asked for
  std::uint64_t end_ = 0;   // where the part of the range the file held at the start ends
  bool check_size_ = false;
  std::unique_ptr<std::byte[]> bufs_;  // two buffers of send_file_buffer_size
  std::size_t filled_[2] = {0, 0};     // bytes read into each buffer and not written yet
  int cur_ = 0;                        // the buffer written next
  std::size_t sent_ = 0;
  bool suspended_ = false;
  step step_ = step::start;
  boost::system::error_code final_ec_;
};

}  // namespace detail

/// Sends `count` bytes of `file` starting at `offset` to `stream`. Completes
/// with `(error_code, sent)`. `stream` is one of (`fsys::send_file_stream`):
///
/// - a stream socket (`asio::ip::tcp::socket`,
///   `asio::local::stream_protocol::socket`, on any executor): zero copy, as
///   described below;
/// - a timed stream over a stream socket (`boost::beast::tcp_stream`, any
///   `beast::basic_stream`; `fsys::send_file_timed_stream`): zero copy on its
///   `socket()`, with the stream's timeout applied as Beast's own writes apply
///   it: if the time set by `expires_after` / `expires_at` passes while the
///   operation waits for the peer, the stream closes its socket and the
///   operation completes with `beast::error::timeout`. Every wait for the
///   socket is a write through the stream (one byte of the range, read from
///   the page cache, or a chunk of the read path), so the stream's timer
///   covers each of them; a deadline that passes while bytes keep moving is
///   seen at the next wait (at the latest after `send_file_zero_copy_chunk`
///   bytes sent without one). A rate policy of the stream applies to the
///   bytes written through it, not to those `sendfile(2)` moves;
/// - any other AsyncWriteStream (`asio::ssl::stream`, `asio::writable_pipe`,
///   a user's stream; `fsys::send_file_write_stream`): the range is read
///   with `file.async_read_some_at` (through the ring or the psync workers)
///   into two buffers of `send_file_buffer_size` bytes the operation owns,
///   and written with `asio::async_write` on the stream; the next chunk is
///   read while the current one is written. Errors and timeouts are the
///   stream's (`ssl::stream<beast::tcp_stream>` times out as the
///   `tcp_stream` does). Cancellation leaves `sent` exact in bytes the
///   stream accepted; for a TLS stream, as with any cancelled write of
///   `asio::ssl::stream`, the TLS session cannot go on.
///
/// Any other type is refused with one `static_assert` naming these three.
///
/// How (sockets and timed streams): when the file's io_context uses the io_uring backend, each step
/// asks the kernel (`cachestat(2)`, one system call) whether the next
/// `send_file_zero_copy_chunk` bytes are all in the page cache; if so it
/// calls `sendfile(2)` on the socket in non-blocking mode (zero copy: the
/// pages go to the socket without passing through user memory), and waits
/// for writability (`async_wait`) when the socket is full. Otherwise, and
/// always on the psync backend, on kernels without cachestat (before 6.5),
/// and for a socket that refuses sendfile, it reads at most
/// `send_file_buffer_size` bytes with `file.async_read_some_at` (through the
/// ring or the psync workers, off the calling thread) into a buffer the
/// operation owns (allocated once, on first use) and writes them with
/// `asio::async_write`. cachestat also counts pages whose read is still in
/// flight (read-ahead, this operation's or another's), which sendfile would
/// wait for; so when the range is longer than one chunk, a chunk cachestat
/// calls cached is also checked with `mincore(2)` on a read-only mapping of
/// the range (never touched; one `mmap` per 64 MiB), which counts only
/// pages that are up to date, and goes through the read path otherwise.
/// The calling thread does not wait for the disk; the exceptions are a page
/// evicted between the check and the sendfile, and a page of a single-chunk
/// range (at most `send_file_zero_copy_chunk` bytes, checked by cachestat
/// alone) whose read-ahead is in flight. After each zero-copy chunk sent without waiting,
/// the operation yields to the io_context (through `async_wait`), so that
/// one fast stream does not delay the other work of the loop.
///
/// End of file: if the file ends before `offset + count` when the
/// operation starts, it sends what the file holds and completes without
/// error; `sent` says how many bytes were sent (0 when `offset` is at or
/// past the end).
///
/// A file that shrinks meanwhile: the operation takes the file's size when
/// it starts and again (`fstat(2)`) after each `sendfile(2)` call or read
/// that moved bytes, on reaching the end of the file, and at the end; when
/// the file has become shorter than the part of the range it held at the
/// start, or than the bytes already sent, it stops and completes with
/// `errc::file_truncated` ("file was truncated during the send"), never with
/// success. The range was then not sent in full: close the connection (a
/// keep-alive peer would take the next response for the rest of the body),
/// as nginx does when it logs "file was truncated". What the peer may still
/// receive before the connection closes: `sent` bytes, which are the file's
/// bytes up to its new size; bytes at or past the new size that were
/// already in the socket when the file shrank may not be the file's. The
/// zero-copy path hands the socket references to the page-cache pages
/// themselves, so the truncation zeroes the tail of the page holding the new
/// end (the peer may get zeros from the new size up to the next page
/// boundary) and the pages past it keep their old contents (the peer may
/// get those stale bytes, up to what the socket buffers held); the read +
/// write path sends only bytes copied before the size check that followed
/// their read. The client sees a body shorter than announced. No check can
/// see a truncation that comes after the last one: bytes the socket still
/// holds when the handler has run can change in the same way. The checks
/// cost one `fstat(2)` each (about 0.3 µs on a local filesystem, against
/// tens of microseconds for a 256 KiB sendfile or a 64 KiB read + write).
///
/// Completion: the handler runs once, on its associated executor (default:
/// the socket's), never inside this call. The socket and the file must stay
/// open and alive until then, and no other write may be started on the
/// socket meanwhile. Cancellation: per-operation terminal cancellation stops
/// the operation at the next step; it completes with
/// `asio::error::operation_aborted` and `sent` is exactly the number of bytes
/// the socket accepted (the stream holds exactly those bytes of the range,
/// so the connection may go on). Errors: the socket's (`broken_pipe`,
/// `connection_reset`, ...), the file's read and `fstat` errors,
/// `errc::not_open`, `errc::file_truncated` (above), `errc::service_shut_down`
/// (the file's io_context is gone).
///
/// Side effect: the socket is left in non-blocking mode
/// (`native_non_blocking(true)`), which Asio's own operations handle.
/// SIGPIPE: `sendfile(2)` cannot pass `MSG_NOSIGNAL`, so a peer that has
/// gone raises SIGPIPE; a program using this function ignores SIGPIPE
/// (`signal(SIGPIPE, SIG_IGN)`, as every server does), and then gets
/// `broken_pipe`.
template <class Stream, class Executor,
          BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code, std::size_t))
              Token = asio::default_completion_token_t<typename Stream::executor_type>>
  requires send_file_stream<Stream>
auto async_send_file(Stream& stream, basic_file<Executor>& file, std::uint64_t offset, std::uint64_t count,
                     Token&& token = asio::default_completion_token_t<typename Stream::executor_type>()) {
  if constexpr (send_file_socket<Stream> || send_file_timed_stream<Stream>)
    return asio::async_compose<Token, void(boost::system::error_code, std::size_t)>(
        detail::send_file_op<Stream, Executor>(stream, file, offset, count), token, stream);
  else
    return asio::async_compose<Token, void(boost::system::error_code, std::size_t)>(
        detail::send_file_stream_op<Stream, Executor>(stream, file, offset, count), token, stream);
}

/// Any other type: one readable error instead of pages of template output.
template <class Stream, class File, class... Args>
  requires(!send_file_stream<Stream>)
void async_send_file(Stream&, File&, Args&&...) {
  static_assert(detail::send_file_always_false<Stream>,
                "fsys::async_send_file: the first argument must be a stream socket (asio::ip::tcp::socket, ...), "
                "a timed stream over one (beast::tcp_stream) or an AsyncWriteStream (asio::ssl::stream, ...): "
                "see fsys::send_file_stream");
}

/// `async_send_file` as a coroutine: returns the bytes sent (fewer than
/// `count` only when the file ended before `offset + count` at the start).
/// Throws `std::system_error` on failure, timeout or cancellation (the bytes
/// sent before are then unknown to the caller: use `async_send_file` with
/// `as_tuple` when they matter).
template <class Stream, class Executor>
  requires send_file_stream<Stream>
asio::awaitable<std::size_t> co_send_file(Stream& stream, basic_file<Executor>& file, std::uint64_t offset,
                                          std::uint64_t count) {
  auto [ec, n] = co_await async_send_file(stream, file, offset, count, asio::as_tuple(asio::use_awaitable));
  if (ec) detail::throw_co_error(ec, "fsys::co_send_file");
  co_return n;
}

/// Any other type: one readable error.
template <class Stream, class File>
  requires(!send_file_stream<Stream>)
asio::awaitable<std::size_t> co_send_file(Stream&, File&, std::uint64_t, std::uint64_t) {
  static_assert(detail::send_file_always_false<Stream>,
                "fsys::co_send_file: the first argument must be a stream socket (asio::ip::tcp::socket, ...), "
                "a timed stream over one (beast::tcp_stream) or an AsyncWriteStream (asio::ssl::stream, ...): "
                "see fsys::send_file_stream");
  co_return 0;
}

}  // namespace fsys
