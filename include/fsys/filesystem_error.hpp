// fsys — the exception that names the paths an operation was given.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>

namespace fsys {

/// Thrown by every path-taking throwing call of fsys (the `co_*` forms, the
/// throwing `open` of `basic_file` and `basic_stream_file`, `probe_drive`):
/// a `std::system_error` that also carries the path (or the two paths of a
/// rename, link or copy), like `std::filesystem::filesystem_error`.
///
/// `what()` reads `<operation> "<path1>": <message>`, or
/// `<operation> "<path1>" -> "<path2>": <message>` for two paths, for
/// example `fsys::co_open "/srv/a.txt": No such file or directory`.
/// `code()` is the error (system category for an errno, fsys's category
/// for fsys's own conditions), so `catch (const std::system_error&)` and
/// comparisons such as `e.code() == std::errc::no_such_file_or_directory`
/// keep working.
///
/// Copying never throws (the paths are shared between copies, as the
/// standard exceptions share their message).
class filesystem_error : public std::system_error {
 public:
  /// An error of an operation on one path: `what` names the operation.
  filesystem_error(std::string_view what, const std::filesystem::path& path1, std::error_code ec);
  /// An error of an operation on two paths (from, to).
  filesystem_error(std::string_view what, const std::filesystem::path& path1, const std::filesystem::path& path2,
                   std::error_code ec);

  /// The (first) path the operation was given.
  const std::filesystem::path& path1() const noexcept;
  /// The second path (the target of a rename, link or copy); empty for
  /// one-path operations.
  const std::filesystem::path& path2() const noexcept;

 private:
  struct paths {
    std::filesystem::path first;
    std::filesystem::path second;
  };
  std::shared_ptr<const paths> paths_;
};

}  // namespace fsys
