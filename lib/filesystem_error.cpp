// fsys::filesystem_error: the message format and the shared paths.
#include <fsys/filesystem_error.hpp>

namespace fsys {
namespace {

// `<what> "<p1>"` or `<what> "<p1>" -> "<p2>"`; std::system_error appends
// ": <message>". The paths are quoted so that one with spaces (or an empty
// one) reads unambiguously.
std::string describe(std::string_view what, const std::filesystem::path& p1, const std::filesystem::path* p2) {
  std::string s(what);
  s += " \"";
  s += p1.native();
  s += '"';
  if (p2 != nullptr) {
    s += " -> \"";
    s += p2->native();
    s += '"';
  }
  return s;
}

}  // namespace

filesystem_error::filesystem_error(std::string_view what, const std::filesystem::path& path1, std::error_code ec)
    : std::system_error(ec, describe(what, path1, nullptr)),
      paths_(std::make_shared<const paths>(paths{path1, {}})) {}

filesystem_error::filesystem_error(std::string_view what, const std::filesystem::path& path1,
                                   const std::filesystem::path& path2, std::error_code ec)
    : std::system_error(ec, describe(what, path1, &path2)),
      paths_(std::make_shared<const paths>(paths{path1, path2})) {}

const std::filesystem::path& filesystem_error::path1() const noexcept { return paths_->first; }
const std::filesystem::path& filesystem_error::path2() const noexcept { return paths_->second; }

}  // namespace fsys
