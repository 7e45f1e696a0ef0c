// Synchronous calls of basic_file, run in the calling thread.
#include <fsys/detail/sync_io.hpp>
#include <fsys/error.hpp>

#include <boost/asio/error.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <limits>

namespace fsys::detail {
namespace {

constexpr std::uint64_t off_max = static_cast<std::uint64_t>(std::numeric_limits<off_t>::max());

void set_errno(boost::system::error_code& ec) noexcept {
  ec.assign(errno, boost::system::system_category());
}

// The checks every call makes before touching the fd.
bool refuse(int fd, std::uint64_t offset, std::size_t length, boost::system::error_code& ec) noexcept {
  if (fd < 0) {
    ec = errc::not_open;
    return true;
  }
  if (offset > off_max || length > off_max - offset) {
    ec = errc::offset_overflow;
    return true;
  }
  ec.clear();
  return false;
}

}  // namespace

std::size_t sync_read_at(int fd, std::uint64_t offset, const sync_iovecs& bufs,
                         boost::system::error_code& ec) noexcept {
  if (refuse(fd, offset, bufs.total, ec) || bufs.total == 0) return 0;
  for (;;) {
    // The iovecs describe the caller's buffers, valid for this call (see sync_iovecs).
    const ssize_t n = ::preadv(fd, bufs.iov, bufs.count, static_cast<off_t>(offset));
    if (n > 0) return static_cast<std::size_t>(n);
    if (n == 0) {
      ec = asio::error::eof;  // as Asio's random_access_file reports end of file
      return 0;
    }
    if (errno != EINTR) {
      set_errno(ec);
      return 0;
    }
  }
}

std::size_t sync_write_at(int fd, std::uint64_t offset, const sync_iovecs& bufs,
                          boost::system::error_code& ec) noexcept {
  if (refuse(fd, offset, bufs.total, ec) || bufs.total == 0) return 0;
  for (;;) {
    // The iovecs describe the caller's buffers, valid for this call (see sync_iovecs).
    const ssize_t n = ::pwritev(fd, bufs.iov, bufs.count, static_cast<off_t>(offset));
    if (n >= 0) return static_cast<std::size_t>(n);
    if (errno != EINTR) {
      set_errno(ec);
      return 0;
    }
  }
}

std::uint64_t sync_size(int fd, boost::system::error_code& ec) noexcept {
  if (refuse(fd, 0, 0, ec)) return 0;
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    set_errno(ec);
    return 0;
  }
  return static_cast<std::uint64_t>(st.st_size);
}

void sync_resize(int fd, std::uint64_t size, boost::system::error_code& ec) noexcept {
  if (refuse(fd, size, 0, ec)) return;
  int r;
  do r = ::ftruncate(fd, static_cast<off_t>(size));
  while (r != 0 && errno == EINTR);
  if (r != 0) set_errno(ec);
}

void sync_flush(int fd, bool data_only, boost::system::error_code& ec) noexcept {
  if (refuse(fd, 0, 0, ec)) return;
  // Not retried on EINTR: a failed sync may have dropped the error state the
  // kernel keeps for the file, so a retry could report success falsely.
  if ((data_only ? ::fdatasync(fd) : ::fsync(fd)) != 0) set_errno(ec);
}

int sync_open(const char* path, int flags, unsigned mode, boost::system::error_code& ec) noexcept {
  // `path` is the caller's NUL-terminated string, read by the kernel during the call.
  int fd = ::open(path, flags | O_CLOEXEC, mode);
  if (fd < 0)
    set_errno(ec);
  else
    ec.clear();
  return fd;
}

}  // namespace fsys::detail
