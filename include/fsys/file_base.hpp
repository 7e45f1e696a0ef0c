// fsys — open flags with Asio's names: fsys::file_base.
#pragma once

#include <boost/asio/file_base.hpp>  // declares asio::file_base when BOOST_ASIO_HAS_FILE

#include <fcntl.h>
#include <unistd.h>

namespace fsys {

/// The flags and names `fsys::basic_file` shares with Asio's
/// `asio::file_base`, so that code written for `asio::random_access_file`
/// compiles with `fsys::file`: `fsys::file::read_write | fsys::file::create`.
///
/// The values are the `open(2)` flags Asio itself uses on Linux, so the
/// meanings are exactly Asio's. `basic_file` also accepts `open(2)` flags as a
/// plain `int` (for O_DIRECT, O_NOATIME, ...); combining a flag with an `int`
/// (`file::read_only | O_DIRECT`) gives an `int` and selects that form.
///
/// Asio declares `asio::file_base` only when it is built with io_uring
/// (`BOOST_ASIO_HAS_FILE`); where it does, `basic_file` accepts its flags too.
class file_base {
 public:
  /// A set of flags for opening a file. A distinct enumeration type (as in
  /// Asio), so `open(path, flags)` never competes with `open(path, int, mode)`.
  enum flags {
    /// Open for reading only (`O_RDONLY`).
    read_only = O_RDONLY,
    /// Open for writing only (`O_WRONLY`).
    write_only = O_WRONLY,
    /// Open for reading and writing (`O_RDWR`).
    read_write = O_RDWR,
    /// Every write goes to the end of the file (`O_APPEND`). Positional
    /// writes on such a file still append, as `pwrite(2)` documents for Linux.
    append = O_APPEND,
    /// Create the file if it does not exist (`O_CREAT`), with mode 0644
    /// minus the umask.
    create = O_CREAT,
    /// With `create`: fail if the file exists (`O_EXCL`).
    exclusive = O_EXCL,
    /// Truncate an existing file to length 0 when opening it (`O_TRUNC`).
    truncate = O_TRUNC,
    /// Each write returns only after data and metadata are on stable storage
    /// (`O_SYNC`).
    sync_all_on_write = O_SYNC,
  };

  /// The union of two flag sets.
  friend constexpr flags operator|(flags x, flags y) noexcept {
    return static_cast<flags>(static_cast<unsigned>(x) | static_cast<unsigned>(y));
  }
  /// The intersection of two flag sets.
  friend constexpr flags operator&(flags x, flags y) noexcept {
    return static_cast<flags>(static_cast<unsigned>(x) & static_cast<unsigned>(y));
  }
  /// The symmetric difference of two flag sets.
  friend constexpr flags operator^(flags x, flags y) noexcept {
    return static_cast<flags>(static_cast<unsigned>(x) ^ static_cast<unsigned>(y));
  }
  /// The complement of a flag set.
  friend constexpr flags operator~(flags x) noexcept { return static_cast<flags>(~static_cast<unsigned>(x)); }
  /// Adds `y` to `x`.
  friend constexpr flags& operator|=(flags& x, flags y) noexcept { return x = x | y; }
  /// Keeps in `x` only what is also in `y`.
  friend constexpr flags& operator&=(flags& x, flags y) noexcept { return x = x & y; }
  /// Toggles in `x` what is in `y`.
  friend constexpr flags& operator^=(flags& x, flags y) noexcept { return x = x ^ y; }

  /// Where a seek starts from, as in Asio (`fsys::basic_file` is positional
  /// and has no seek; the names exist for source compatibility).
  enum seek_basis {
    seek_set = SEEK_SET,  ///< from the start of the file
    seek_cur = SEEK_CUR,  ///< from the current position
    seek_end = SEEK_END,  ///< from the end of the file
  };

 protected:
  ~file_base() = default;
};

#if defined(BOOST_ASIO_HAS_FILE)
namespace detail {
// Asio's flags are the same open(2) flags on Linux; converting is a cast.
static_assert(static_cast<int>(boost::asio::file_base::read_write) == file_base::read_write &&
              static_cast<int>(boost::asio::file_base::write_only) == file_base::write_only &&
              static_cast<int>(boost::asio::file_base::append) == file_base::append &&
              static_cast<int>(boost::asio::file_base::create) == file_base::create &&
              static_cast<int>(boost::asio::file_base::exclusive) == file_base::exclusive &&
              static_cast<int>(boost::asio::file_base::truncate) == file_base::truncate &&
              static_cast<int>(boost::asio::file_base::sync_all_on_write) == file_base::sync_all_on_write);
/// Asio's `file_base::flags` as fsys's.
constexpr file_base::flags from_asio(boost::asio::file_base::flags f) noexcept {
  return static_cast<file_base::flags>(static_cast<int>(f));
}
}  // namespace detail
#endif

}  // namespace fsys
