// fsys — how `basic_file::async_open` opens a path relative to a directory.
#pragma once

#include <fcntl.h>
#include <sys/types.h>

#include <cstdint>

namespace fsys {

/// The arguments of `openat2(2)`: `open(2)` flags, the creation mode, and
/// `RESOLVE_*` flags restricting how the path is resolved. For example
/// `RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS` keeps a client-supplied path
/// inside the directory it is opened from (an escape fails with `EXDEV`).
/// O_CLOEXEC is always added.
struct open_how {
  /// `open(2)` flags (O_RDONLY, O_WRONLY, O_RDWR, O_CREAT, ...).
  int flags = O_RDONLY;
  /// Permission bits of a created file (with O_CREAT or O_TMPFILE).
  mode_t mode = 0;
  /// `RESOLVE_*` flags of `openat2(2)` (0: resolve as `openat(2)` does).
  std::uint64_t resolve = 0;
};

}  // namespace fsys
