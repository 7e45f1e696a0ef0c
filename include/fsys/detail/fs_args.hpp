// The arguments of a file-system operation, owned by the operation.
//
// The kernel reads the path strings, the open_how block and writes the statx
// buffer after the SQE has been submitted (an OPENAT punted to an io-wq
// worker copies the path only when the worker runs). So they live here, in
// memory the op owns and frees only after its CQE has been reaped.
#pragma once

#include <fsys/detail/op.hpp>
#include <fsys/file_status.hpp>
#include <fsys/open_how.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace fsys::detail {

/// Layout of the kernel's `struct open_how` (linux/openat2.h).
struct kernel_open_how {
  std::uint64_t flags = 0;
  std::uint64_t mode = 0;
  std::uint64_t resolve = 0;
};

struct fs_args {
  fs_args() = default;
  fs_args(const fs_args&) = delete;
  fs_args& operator=(const fs_args&) = delete;
  /// Closes `owned_fd` if nobody took it (an op destroyed without its
  /// handler: shutdown; or a close op that never ran).
  ~fs_args();

  /// A fresh (default-valued) block, taken from the calling thread's cache
  /// of recycled ones when it has one: a server making open + stat + close
  /// per request then allocates nothing, path strings included (a recycled
  /// block keeps its strings' capacity).
  static fs_args* make();
  /// Ends `a`'s use (closing `owned_fd` as the destructor does) and keeps
  /// it in the calling thread's cache, or frees it when the cache is full.
  static void recycle(fs_args* a) noexcept;

  std::string path;   ///< first path (NUL-terminated by std::string)
  std::string path2;  ///< second path (rename, link, symlink's link path)
  int dirfd = AT_FDCWD;
  int dirfd2 = AT_FDCWD;
  /// open: open flags; rename: RENAME_*; unlink/link/statx: AT_*;
  /// fallocate: mode; fadvise: advice; sync_file_range: flags.
  int flags = 0;
  std::uint32_t mode = 0;
  std::uint64_t length = 0;  ///< fallocate / sync_file_range / fadvise
  bool openat2 = false;      ///< open with openat2 (the caller gave an open_how)
  kernel_open_how how{};     ///< openat2's argument, read by the kernel
  struct statx stx {};       ///< statx's result, written by the kernel
  /// open: the fd the kernel returned, until it is attached to the file;
  /// close: the fd to close, until handed to the kernel. -1 otherwise.
  int owned_fd = -1;
  /// Set by the io_uring engine when it runs the op on its psync helper
  /// after the ring answered EINVAL/EOPNOTSUPP: the result rules mark the
  /// kind refused by the ring there when the system call succeeds.
  std::atomic<std::uint32_t>* ring_refused = nullptr;
  /// getdents: the buffer the kernel fills and its size. Shared with the
  /// directory object that reuses it, so that it outlives the system call
  /// even when that object is destroyed while the call runs.
  std::shared_ptr<char[]> buffer;
  std::size_t buffer_size = 0;

  // Metadata kinds (chmod: `mode` holds the permission bits, setxattr: the
  // XATTR_* flags; AT_SYMLINK_NOFOLLOW / AT_EMPTY_PATH in `flags`; the xattr
  // name is `path2`).
  std::uint32_t uid = static_cast<std::uint32_t>(-1);  ///< chown: -1 keeps it
  std::uint32_t gid = static_cast<std::uint32_t>(-1);  ///< chown: -1 keeps it
  struct timespec times[2] = {{0, UTIME_OMIT}, {0, UTIME_OMIT}};  ///< utimens: atime, mtime
  /// setxattr: the value the kernel reads; getxattr/listxattr: the buffer
  /// the kernel writes (its size is the length given to the kernel; 0 asks
  /// for the size). It lives here, in the op's own memory, until the op is
  /// freed after its CQE: a GETXATTR punted to io-wq writes it late.
  std::string value;
  /// listxattr: the names, split by the result rules.
  std::vector<std::string> names;
  /// getxattr/listxattr: sizing rounds made so far (bounded, see op.cpp).
  std::uint8_t rounds = 0;
  /// clone_file / copy_file_range / copy_attributes: the source's descriptor, lent by the
  /// caller, which keeps it open until the op completes. -1 otherwise.
  int src_fd = -1;
};

/// copy_attributes flags: what to carry over from the source besides the
/// permission bits (always).
inline constexpr int copy_attr_owner = 1;  ///< fchown to the source's owner and group (before the mode)
inline constexpr int copy_attr_times = 2;  ///< futimens to `stx`'s access and modification times (the source's, taken before the copy)

/// Holds an fs_args block until an operation takes it (`release`), and
/// recycles it otherwise. The asynchronous functions fill one before they
/// call `async_initiate`, so that the arguments a `deferred` operation keeps
/// are already the operation's own copy.
struct fs_args_recycler {
  void operator()(fs_args* a) const noexcept { fs_args::recycle(a); }
};
using fs_args_ptr = std::unique_ptr<fs_args, fs_args_recycler>;
inline fs_args_ptr make_fs_args() { return fs_args_ptr(fs_args::make()); }

/// The arguments of an open: O_CLOEXEC added; `openat2` when the caller gave
/// an open_how (its RESOLVE_* flags are then used). Not checked here (see
/// `basic_file::check_open`).
inline fs_args_ptr open_args(int dirfd, std::string_view path, const open_how& how, bool openat2) {
  fs_args_ptr a = make_fs_args();
  a->path.assign(path);  // a recycled block keeps its buffer: no allocation
  a->dirfd = dirfd;
  a->flags = how.flags | O_CLOEXEC;
  a->mode = how.mode;
  a->openat2 = openat2;
  a->how = kernel_open_how{static_cast<std::uint64_t>(static_cast<unsigned>(a->flags)), how.mode, how.resolve};
  return a;
}

/// Frees the calling thread's cached fs_args blocks.
void release_fs_args_cache() noexcept;

/// Checks a path argument: not empty, no embedded NUL.
std::error_code check_path(const std::string& p) noexcept;

/// The file_status of a statx result.
file_status to_file_status(const struct statx& stx) noexcept;

template <class Value>
struct op_result;

/// A statx op completes with the file_status of its buffer.
template <>
struct op_result<file_status> {
  static file_status get(const op_base& op) noexcept {
    return op.fs_ && !op.ec_ ? to_file_status(op.fs_->stx) : file_status{};
  }
};

/// A getxattr op completes with the value (moved out of its buffer).
template <>
struct op_result<std::string> {
  static std::string get(op_base& op) noexcept {
    return op.fs_ && !op.ec_ ? std::move(op.fs_->value) : std::string();
  }
};

/// A listxattr op completes with the names (split at the kernel's NULs).
template <>
struct op_result<std::vector<std::string>> {
  static std::vector<std::string> get(op_base& op) noexcept {
    return op.fs_ && !op.ec_ ? std::move(op.fs_->names) : std::vector<std::string>();
  }
};

/// Runs `op`'s file-system system call on the calling thread; returns the
/// result as io_uring would (>= 0, or -errno).
int run_fs_syscall(op_base* op) noexcept;

}  // namespace fsys::detail
