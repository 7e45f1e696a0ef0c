// fsys — the argument types of the metadata setters (metadata.hpp and the
// members of basic_file): symlink handling, file times, xattr flags.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>

#include <chrono>
#include <cstdint>

namespace fsys {

/// Whether a path operation acts on a final symlink itself or on what it
/// points to (`AT_SYMLINK_NOFOLLOW`), as `std::filesystem::perm_options::nofollow`.
enum class symlinks {
  follow,    ///< act on the file the symlink points to (the default)
  nofollow,  ///< act on the symlink itself
};

/// Extended attribute creation rules (`setxattr(2)` flags).
enum class xattr_flags {
  either = 0,   ///< create the attribute or replace its value
  create = 1,   ///< fail with `EEXIST` if it exists (XATTR_CREATE)
  replace = 2,  ///< fail with `ENODATA` unless it exists (XATTR_REPLACE)
};

/// A user or group id that `async_set_owner` leaves unchanged (-1, as chown(2)).
inline constexpr std::uint32_t unchanged_id = static_cast<std::uint32_t>(-1);

/// One timestamp for `async_set_times`: a point in time (a
/// `std::chrono::system_clock` time point, a `timespec`, or a
/// `std::filesystem::file_time_type`), or one of the two markers `now()`
/// (the current time, `UTIME_NOW`) and `omit()` (leave it, `UTIME_OMIT`).
/// Nanosecond precision; the filesystem may round.
struct file_time {
  /// The kernel's form (`tv_nsec` may be `UTIME_NOW` / `UTIME_OMIT`).
  struct timespec value;

  /// The time `ts` (or a marker in `ts.tv_nsec`).
  constexpr file_time(const struct timespec& ts) noexcept : value(ts) {}  // NOLINT: implicit by design
  /// The time point `t`, to the nanosecond (times before 1970 too).
  template <class Duration>
  constexpr file_time(std::chrono::time_point<std::chrono::system_clock, Duration> t) noexcept  // NOLINT
      : value(from_ns(std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count())) {}
  /// The time point `t` of `std::filesystem::file_time_type`'s clock.
  template <class Duration>
  file_time(std::chrono::time_point<std::chrono::file_clock, Duration> t) noexcept  // NOLINT
      : file_time(std::chrono::file_clock::to_sys(t)) {}

  /// The current time, as the kernel reads it when it sets the time (UTIME_NOW).
  static constexpr file_time now() noexcept { return file_time(timespec{0, UTIME_NOW}); }
  /// Leaves this timestamp as it is (UTIME_OMIT).
  static constexpr file_time omit() noexcept { return file_time(timespec{0, UTIME_OMIT}); }

 private:
  static constexpr struct timespec from_ns(long long ns) noexcept {
    long long s = ns / 1000000000;
    long long r = ns % 1000000000;
    if (r < 0) {  // floor, so that tv_nsec is in [0, 1e9)
      r += 1000000000;
      --s;
    }
    return timespec{static_cast<time_t>(s), static_cast<long>(r)};
  }
};

}  // namespace fsys
