// The arguments of the metadata operations (chmod, chown, utimens, xattrs),
// built once for the path forms (metadata.hpp) and the open-file forms
// (basic_file's members).
#pragma once

#include <fsys/detail/fs_args.hpp>
#include <fsys/error.hpp>
#include <fsys/metadata_options.hpp>

#include <boost/asio/buffer.hpp>
#include <boost/system/error_code.hpp>

#include <fcntl.h>

#include <string_view>

namespace fsys::detail {

/// `flags` of a metadata op: AT_EMPTY_PATH for an open file, else
/// AT_SYMLINK_NOFOLLOW when asked.
constexpr int metadata_flags(bool on_file, symlinks s) noexcept {
  return on_file ? AT_EMPTY_PATH : (s == symlinks::nofollow ? AT_SYMLINK_NOFOLLOW : 0);
}

/// The first buffer size getxattr/listxattr try before asking for the size
/// (most values and lists are smaller: one round).
inline constexpr std::size_t xattr_first_guess = 256;

/// An argument the kernel would not see, checked before the op starts:
/// permission bits outside 07777, an xattr name that is empty or has a NUL,
/// unknown xattr flags.
inline boost::system::error_code check_mode(mode_t mode) noexcept {
  if ((mode & ~static_cast<mode_t>(07777)) != 0) return errc::invalid_mode;
  return {};
}

inline void fill_times(fs_args& a, const file_time& atime, const file_time& mtime) noexcept {
  a.times[0] = atime.value;
  a.times[1] = mtime.value;
}

inline void fill_xattr_value(fs_args& a, asio::const_buffer value) {
  a.value.assign(static_cast<const char*>(value.data()), value.size());
}

}  // namespace fsys::detail
