// fsys — the path argument of fsys's file-system operations.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

namespace fsys {

/// A path given to an fsys operation (`basic_file::async_open`,
/// `fsys::async_stat`, `fsys::async_rename`...): a view of the caller's
/// characters, copied into the operation before the initiating function
/// returns, so it need not outlive the call (with `asio::deferred` too).
///
/// Made implicitly from a `std::filesystem::path`, a
/// `std::filesystem::directory_entry`, a `std::string`, a `std::string_view`
/// or a NUL-terminated string. Unlike a `std::filesystem::path` it is
/// neither parsed nor copied into a list of components: a server opening a
/// file per request allocates nothing for its path. A null pointer or an
/// empty string is an empty path (the operation fails with
/// `invalid_argument`, as it does for a path with an embedded NUL).
class path_view {
 public:
  /// A NUL-terminated string (null: the empty path).
  path_view(const char* s) noexcept : s_(s ? std::string_view(s) : std::string_view()) {}
  /// Exactly these characters (an embedded NUL makes the operation fail).
  path_view(std::string_view s) noexcept : s_(s) {}
  /// The string's characters.
  path_view(const std::string& s) noexcept : s_(s) {}
  /// The path's native string.
  path_view(const std::filesystem::path& p) noexcept : s_(p.native()) {}
  /// The entry's path.
  path_view(const std::filesystem::directory_entry& e) noexcept : s_(e.path().native()) {}

  /// The characters, as given (not NUL-terminated in general).
  std::string_view str() const noexcept { return s_; }

 private:
  std::string_view s_;
};

}  // namespace fsys
