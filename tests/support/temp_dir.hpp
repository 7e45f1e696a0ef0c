// Test support: a temporary directory removed at scope exit, and helpers for
// reading back whole files.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace fsys::test {

/// A fresh directory under $TMPDIR (default /tmp), removed with its contents
/// when the object is destroyed.
class temp_dir {
 public:
  temp_dir();
  ~temp_dir();
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;

  const std::filesystem::path& path() const noexcept { return path_; }
  std::filesystem::path file(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

/// A fresh directory on a disk-backed filesystem (not tmpfs), for O_DIRECT:
/// the first of $FSYS_TEST_DISK_DIR, /var/tmp, the working directory that is
/// not tmpfs. `ok()` is false when there is none.
class temp_dir_on_disk {
 public:
  temp_dir_on_disk();
  ~temp_dir_on_disk();
  temp_dir_on_disk(const temp_dir_on_disk&) = delete;
  temp_dir_on_disk& operator=(const temp_dir_on_disk&) = delete;

  bool ok() const noexcept { return !path_.empty(); }
  const std::filesystem::path& path() const noexcept { return path_; }
  std::filesystem::path file(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

/// Reads a whole file with plain POSIX calls (not through fsys).
std::vector<std::byte> read_file(const std::filesystem::path& p);

/// Writes a whole file with plain POSIX calls (not through fsys).
void write_file(const std::filesystem::path& p, const std::vector<std::byte>& data);

/// Deterministic pseudo-random bytes: the same (seed, size) gives the same bytes.
std::vector<std::byte> pattern(std::size_t size, std::uint64_t seed);

/// Exits the test process with Meson's "skipped" code 77 after printing why.
[[noreturn]] void skip_suite(const std::string& reason);

}  // namespace fsys::test
