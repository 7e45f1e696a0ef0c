// File-system operations: argument checks, statx conversion, and the system
// calls the psync engine (and the io_uring engine's helper) runs for them.
#include <fsys/detail/fs_args.hpp>
#include "hot_tls.hpp"
#include "kernel_statx.hpp"

#include <linux/fs.h>
#include <linux/openat2.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace fsys::detail {

static_assert(sizeof(kernel_open_how) == sizeof(::open_how), "open_how layout");

fs_args::~fs_args() {
  if (owned_fd >= 0) ::close(owned_fd);
}

namespace {

// A few recycled blocks per thread. Ops usually end on the thread that
// started them (the io_context's), so the cache stays warm; a block freed on
// another thread simply joins that thread's cache.
void free_args_block(fs_args* a) noexcept { delete a; }
using args_cache = thread_cache<fs_args, recycle_blocks ? 8 : 0, free_args_block>;

}  // namespace

void release_fs_args_cache() noexcept { args_cache::clear(); }

fs_args* fs_args::make() {
  if (fs_args* a = args_cache::take()) return a;
  return new fs_args;
}

void fs_args::recycle(fs_args* a) noexcept {
  if (!a) return;
  if (a->owned_fd >= 0) ::close(a->owned_fd);
  // Back to the default values (clear() keeps the strings' buffers), then to
  // the thread's cache, or freed when that is full.
  a->path.clear();
  a->path2.clear();
  a->dirfd = a->dirfd2 = AT_FDCWD;
  a->flags = 0;
  a->mode = 0;
  a->length = 0;
  a->openat2 = false;
  a->how = kernel_open_how{};
  a->stx = {};
  a->owned_fd = -1;
  a->ring_refused = nullptr;
  a->buffer.reset();
  a->buffer_size = 0;
  a->uid = a->gid = static_cast<std::uint32_t>(-1);
  a->times[0] = a->times[1] = timespec{0, UTIME_OMIT};
  // A large xattr value is not kept in the cache.
  if (a->value.capacity() > 4096)
    std::string().swap(a->value);
  else
    a->value.clear();
  a->names.clear();
  a->rounds = 0;
  a->src_fd = -1;
  if (!args_cache::give(a)) delete a;
}

std::error_code check_path(const std::string& p) noexcept {
  if (p.empty() || p.find('\0') != std::string::npos) return std::make_error_code(std::errc::invalid_argument);
  return {};
}

file_status to_file_status(const struct statx& stx) noexcept {
  file_status s;
  s.size = stx.stx_size;
  s.allocated = stx.stx_blocks * 512;
  s.mode = stx.stx_mode;
  s.nlink = stx.stx_nlink;
  s.block_size = stx.stx_blksize;
  s.modified = std::chrono::system_clock::time_point(
      std::chrono::duration_cast<std::chrono::system_clock::duration>(
          std::chrono::seconds(stx.stx_mtime.tv_sec) + std::chrono::nanoseconds(stx.stx_mtime.tv_nsec)));
  if (stx.stx_mask & STATX_DIOALIGN) {
    s.dio_mem_align = stx.stx_dio_mem_align;
    s.dio_offset_align = stx.stx_dio_offset_align;
  }
  s.device = (static_cast<std::uint64_t>(stx.stx_dev_major) << 32) | stx.stx_dev_minor;
  s.inode = stx.stx_ino;
  s.uid = stx.stx_uid;
  s.gid = stx.stx_gid;
  const atomic_write_limits a = read_atomic_write_limits(stx);
  s.atomic_write_supported = a.supported;
  if (a.supported) {
    s.atomic_write_unit_min = a.unit_min;
    s.atomic_write_unit_max = a.unit_max;
    s.atomic_write_segments_max = a.segments_max;
    s.atomic_write_unit_max_opt = a.unit_max_opt;
  }
  return s;
}

namespace {
int result(long r) noexcept { return r < 0 ? -errno : static_cast<int>(r); }

#ifndef SYS_fchmodat2
#define SYS_fchmodat2 452  // Linux 6.6, all architectures (the unified table)
#endif

// chmod of a name without following a final symlink: fchmodat2 (Linux 6.6)
// with AT_SYMLINK_NOFOLLOW, which answers EOPNOTSUPP for a symlink as Linux
// cannot change a link's mode; on older kernels (ENOSYS) glibc's fchmodat
// with the flag, which does the same through O_PATH and /proc.
int chmod_nofollow(int dirfd, const char* path, mode_t mode) noexcept {
  long r = ::syscall(SYS_fchmodat2, dirfd, path, mode, AT_SYMLINK_NOFOLLOW);
  if (r < 0 && errno == ENOSYS) r = ::fchmodat(dirfd, path, mode, AT_SYMLINK_NOFOLLOW);
  return result(r);
}
}  // namespace

// Why handing the arguments to the system call is sound: they live in the
// op's fs_args, which the op owns until it is freed, after this returns.
int run_fs_syscall(op_base* op) noexcept {
  fs_args& a = *op->fs_;
  const int fd = op->fd_;
  const auto off = static_cast<off_t>(op->offset_);
  const auto len = static_cast<off_t>(a.length);
  switch (op->kind_) {
    case op_kind::open:
      if (a.openat2) {
        return result(::syscall(SYS_openat2, a.dirfd, a.path.c_str(), &a.how, sizeof a.how));
      }
      return result(::openat(a.dirfd, a.path.c_str(), a.flags, static_cast<mode_t>(a.mode)));
    case op_kind::close: {
      const int victim = a.owned_fd;
      a.owned_fd = -1;
      // Linux releases the descriptor even when close reports an error
      // (EINTR, EIO): it is never retried.
      return result(::close(victim));
    }
    case op_kind::statx:
      // AT_EMPTY_PATH: the open file itself (op->fd_).
      return result(::statx((a.flags & AT_EMPTY_PATH) ? fd : a.dirfd, a.path.c_str(), a.flags, stat_mask, &a.stx));
    case op_kind::fallocate:
      return result(::fallocate(fd, a.flags, off, len));
    case op_kind::ftruncate:
      return result(::ftruncate(fd, off));
    case op_kind::rename:
      return result(::renameat2(a.dirfd, a.path.c_str(), a.dirfd2, a.path2.c_str(), static_cast<unsigned>(a.flags)));
    case op_kind::unlink:
      return result(::unlinkat(a.dirfd, a.path.c_str(), a.flags));
    case op_kind::mkdir:
      return result(::mkdirat(a.dirfd, a.path.c_str(), static_cast<mode_t>(a.mode)));
    case op_kind::symlink:
      return result(::symlinkat(a.path.c_str(), a.dirfd2, a.path2.c_str()));
    case op_kind::link:
      return result(::linkat(a.dirfd, a.path.c_str(), a.dirfd2, a.path2.c_str(), a.flags));
    case op_kind::sync_file_range:
      return result(::sync_file_range(fd, off, len, static_cast<unsigned>(a.flags)));
    case op_kind::fadvise: {
      int r = ::posix_fadvise(fd, off, len, a.flags);  // returns the errno itself
      return -r;
    }
    case op_kind::getdents:
      // Why this is sound: `a.buffer` is shared with the op's fs_args, which
      // the op owns until it is freed, after this returns; the fd is held
      // open by the op's file_handle reference.
      return result(::syscall(SYS_getdents64, fd, a.buffer.get(), a.buffer_size));
    // Metadata: AT_EMPTY_PATH means the open file itself (fd). The xattr
    // buffer is `a.value` (its size is what the kernel may write or read).
    case op_kind::chmod:
      if (a.flags & AT_EMPTY_PATH) return result(::fchmod(fd, static_cast<mode_t>(a.mode)));
      if (a.flags & AT_SYMLINK_NOFOLLOW) return chmod_nofollow(a.dirfd, a.path.c_str(), static_cast<mode_t>(a.mode));
      return result(::fchmodat(a.dirfd, a.path.c_str(), static_cast<mode_t>(a.mode), 0));
    case op_kind::chown:
      if (a.flags & AT_EMPTY_PATH) return result(::fchown(fd, a.uid, a.gid));
      return result(::fchownat(a.dirfd, a.path.c_str(), a.uid, a.gid, a.flags & AT_SYMLINK_NOFOLLOW));
    case op_kind::utimens:
      if (a.flags & AT_EMPTY_PATH) return result(::futimens(fd, a.times));
      return result(::utimensat(a.dirfd, a.path.c_str(), a.times, a.flags & AT_SYMLINK_NOFOLLOW));
    case op_kind::getxattr:
      if (a.flags & AT_EMPTY_PATH) return result(::fgetxattr(fd, a.path2.c_str(), a.value.data(), a.value.size()));
      return result(::getxattr(a.path.c_str(), a.path2.c_str(), a.value.data(), a.value.size()));
    case op_kind::setxattr: {
      const int xf = static_cast<int>(a.mode);  // XATTR_CREATE / XATTR_REPLACE
      if (a.flags & AT_EMPTY_PATH)
        return result(::fsetxattr(fd, a.path2.c_str(), a.value.data(), a.value.size(), xf));
      return result(::setxattr(a.path.c_str(), a.path2.c_str(), a.value.data(), a.value.size(), xf));
    }
    case op_kind::listxattr:
      if (a.flags & AT_EMPTY_PATH) return result(::flistxattr(fd, a.value.data(), a.value.size()));
      return result(::listxattr(a.path.c_str(), a.value.data(), a.value.size()));
    case op_kind::removexattr:
      if (a.flags & AT_EMPTY_PATH) return result(::fremovexattr(fd, a.path2.c_str()));
      return result(::removexattr(a.path.c_str(), a.path2.c_str()));
    case op_kind::clone_file:
      // Both descriptors stay open until the op completes (the source is
      // lent by the caller, the target is the op's file).
      return result(::ioctl(fd, FICLONE, a.src_fd));
    case op_kind::copy_file_range: {
      // In and out at the same offset (a whole-file copy); the kernel moves
      // the bytes between the two descriptors, no user buffer involved.
      loff_t in = off, out = off;
      // At most 1 GiB a call, so that the count fits the int result.
      const auto n = static_cast<std::size_t>(std::min<off_t>(len, off_t{1} << 30));
      return result(::copy_file_range(a.src_fd, &in, fd, &out, n, 0));
    }
    case op_kind::copy_attributes: {
      // The source's owner and mode, read now from its (lent) descriptor; its
      // times were taken before the copy read it (`a.stx`).
      struct stat st {};
      if (::fstat(a.src_fd, &st) != 0) return -errno;
      // The owner first: chown clears the set-user-ID and set-group-ID bits,
      // which the fchmod after it then sets as the source has them.
      if ((a.flags & copy_attr_owner) && ::fchown(fd, st.st_uid, st.st_gid) != 0) return -errno;
      const mode_t keep = (a.flags & copy_attr_owner) ? 07777 : 0777;
      if (::fchmod(fd, st.st_mode & keep) != 0) return -errno;
      if (a.flags & copy_attr_times) {
        const timespec ts[2] = {{a.stx.stx_atime.tv_sec, a.stx.stx_atime.tv_nsec},
                                {a.stx.stx_mtime.tv_sec, a.stx.stx_mtime.tv_nsec}};
        if (::futimens(fd, ts) != 0) return -errno;
      }
      return 0;
    }
    default:
      return -EINVAL;
  }
}

}  // namespace fsys::detail
