// Synchronous positional IO in the calling thread (basic_file::read_some_at /
// write_some_at), and the file calls behind basic_file's other synchronous
// members. Errors are converted to error codes in lib/sync_io.cpp only.
#pragma once

#include <fsys/detail/asio.hpp>
#include <fsys/filesystem_error.hpp>

#include <boost/asio/buffer.hpp>
#include <boost/system/error_code.hpp>

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <system_error>
#include <type_traits>

namespace fsys::detail {

/// At most this many buffers of a sequence go to one `preadv`/`pwritev`
/// (the rest are left for the next call, as Asio does with its limit of 64).
inline constexpr unsigned sync_max_buffers = 64;

/// A buffer sequence's first `sync_max_buffers` buffers as iovecs.
struct sync_iovecs {
  iovec iov[sync_max_buffers];
  int count = 0;
  std::size_t total = 0;

  template <class BufferSequence>
  explicit sync_iovecs(const BufferSequence& buffers) noexcept {
    auto it = asio::buffer_sequence_begin(buffers);
    const auto end = asio::buffer_sequence_end(buffers);
    for (; it != end && count < static_cast<int>(sync_max_buffers); ++it) {
      auto b = *it;
      // The caller's buffer goes to the kernel for the duration of the
      // synchronous call only, while the caller waits: sound by construction.
      iov[count++] = iovec{const_cast<void*>(static_cast<const void*>(b.data())), b.size()};
      total += b.size();
    }
  }
};

/// `preadv` at `offset` in the calling thread, retried on EINTR. Returns the
/// bytes read; 0 with `asio::error::eof` when `offset` is at or past the end
/// of file and `total` > 0; 0 without error when `total` is 0. A negative
/// `fd` gives `errc::not_open`.
std::size_t sync_read_at(int fd, std::uint64_t offset, const sync_iovecs& bufs,
                         boost::system::error_code& ec) noexcept;
/// `pwritev` at `offset` in the calling thread, retried on EINTR. Returns
/// the bytes written (0 without error when `total` is 0).
std::size_t sync_write_at(int fd, std::uint64_t offset, const sync_iovecs& bufs,
                          boost::system::error_code& ec) noexcept;

/// `fstat`'s size; `errc::not_open` for a negative fd.
std::uint64_t sync_size(int fd, boost::system::error_code& ec) noexcept;
/// `ftruncate`; `errc::not_open` for a negative fd, `errc::offset_overflow`
/// when `size` does not fit in off_t.
void sync_resize(int fd, std::uint64_t size, boost::system::error_code& ec) noexcept;
/// `fsync` (`data_only`: `fdatasync`); `errc::not_open` for a negative fd.
void sync_flush(int fd, bool data_only, boost::system::error_code& ec) noexcept;
/// `open(2)` with O_CLOEXEC added; returns the fd or -1 with `ec` set.
int sync_open(const char* path, int flags, unsigned mode, boost::system::error_code& ec) noexcept;

/// Throws `std::system_error` (fsys's promise for every throwing call) when
/// `ec` holds an error.
inline void throw_if(const boost::system::error_code& ec, const char* what) {
  if (ec) throw std::system_error(std::error_code(ec), what);
}
/// As above, naming `path`: throws `fsys::filesystem_error`.
inline void throw_if(const boost::system::error_code& ec, const char* what, const std::filesystem::path& path) {
  if (ec) throw filesystem_error(what, path, std::error_code(ec));
}

/// Runs `f(boost_ec)` and stores the result in the `std::error_code`.
/// Codes are made as Boost codes first: a Boost code converts to the
/// equivalent std one (system category to `std::system_category()`), while
/// a std system-category code would become an opaque interop code in Boost.
template <class F>
auto to_std(std::error_code& ec, F&& f) noexcept {
  boost::system::error_code bec;
  if constexpr (std::is_void_v<std::invoke_result_t<F&, boost::system::error_code&>>) {
    f(bec);
    ec = bec;
  } else {
    auto r = f(bec);
    ec = bec;
    return r;
  }
}

}  // namespace fsys::detail
