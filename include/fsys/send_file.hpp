// fsys — sending a range of a file to a stream socket: `fsys::async_send_file`.
#pragma once

#include <fsys/co.hpp>
#include <fsys/file.hpp>
#include <fsys/options.hpp>
#include <fsys/uring_service.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/compose.hpp>
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
#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <utility>

namespace fsys {

/// Size of the buffer `async_send_file` allocates (once per operation, only
/// when it needs it) for the read + write path.
inline constexpr std::size_t send_file_buffer_size = 64 * 1024;

/// Largest range `async_send_file` hands to one `sendfile(2)` call, after
/// checking that all of its pages are in the page cache.
inline constexpr std::size_t send_file_zero_copy_chunk = 256 * 1024;

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

template <class Socket, class Executor>
class send_file_op {
 public:
  send_file_op(Socket& sock, basic_file<Executor>& file, std::uint64_t offset, std::uint64_t count)
      : sock_(sock), file_(file), offset_(offset), remaining_(count), total_(count), begin_(offset) {}

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
        asio::async_write(sock_, asio::buffer(buf_.get(), n), std::move(self));
        return;
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
  enum class step { start, waited, read_done, write_done, complete_posted };

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
      sock_.native_non_blocking(true, ec);
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
      if (zero_copy_) {
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
          ssize_t r = ::sendfile(sock_.native_handle(), fd, &off, chunk);
          if (r > 0) {
            advance(static_cast<std::size_t>(r));
            // The socket now refers to these pages; a truncation from here
            // on changes what the peer gets (see async_send_file). Catch one
            // that happened before or during the call.
            if (boost::system::error_code e = check_size(offset_)) return finish(self, e);
            sent_now += static_cast<std::size_t>(r);
            if (sent_now >= sync_budget && remaining_ > 0) {
              // Let other work on the io_context run between large bursts.
              step_ = step::waited;
              sock_.async_wait(asio::socket_base::wait_write, std::move(self));
              return;
            }
            continue;
          }
          if (r == 0) return finish(self, check_size(offset_));  // end of file: the range's, or shrunk
          int e = errno;
          if (e == EINTR) continue;
          if (e == EAGAIN || e == EWOULDBLOCK) {
            step_ = step::waited;
            sock_.async_wait(asio::socket_base::wait_write, std::move(self));
            return;
          }
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

  Socket& sock_;
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
  bool suspended_ = false;
  step step_ = step::start;
  boost::system::error_code final_ec_;
};

}  // namespace detail

/// Sends `count` bytes of `file` starting at `offset` to the stream socket
/// `socket` (`asio::ip::tcp::socket`, `asio::local::stream_protocol::socket`,
/// on any executor). Completes with `(error_code, sent)`.
///
/// How: when the file's io_context uses the io_uring backend, each step
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
template <class Socket, class Executor,
          BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code, std::size_t))
              Token = asio::default_completion_token_t<typename Socket::executor_type>>
auto async_send_file(Socket& socket, basic_file<Executor>& file, std::uint64_t offset, std::uint64_t count,
                     Token&& token = asio::default_completion_token_t<typename Socket::executor_type>()) {
  return asio::async_compose<Token, void(boost::system::error_code, std::size_t)>(
      detail::send_file_op<Socket, Executor>(socket, file, offset, count), token, socket);
}

/// `async_send_file` as a coroutine: returns the bytes sent (fewer than
/// `count` only when the file ended before `offset + count` at the start). Throws `std::system_error` on failure or
/// cancellation (the bytes sent before are then unknown to the caller: use
/// `async_send_file` with `as_tuple` when they matter).
template <class Socket, class Executor>
asio::awaitable<std::size_t> co_send_file(Socket& socket, basic_file<Executor>& file, std::uint64_t offset,
                                          std::uint64_t count) {
  auto [ec, n] = co_await async_send_file(socket, file, offset, count, asio::as_tuple(asio::use_awaitable));
  if (ec) detail::throw_co_error(ec, "fsys::co_send_file");
  co_return n;
}

}  // namespace fsys
