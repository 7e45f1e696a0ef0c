// The inline fast path of file-system operations: open and the statx of an
// open file, tried in the initiating thread (see detail/nowait.hpp).
#include <fsys/detail/file_handle.hpp>
#include <fsys/detail/fs_args.hpp>
#include <fsys/detail/nowait.hpp>
#include "hot_tls.hpp"
#include "kernel_statx.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace fsys::detail {

namespace {

// The filesystem types whose attributes of an open file are in memory and
// whose buffered IO waits only for local memory and block devices: the one
// list of the inline fast paths (here) and of blocking_ring's caller-thread
// fast path (lib/blocking_ring.cpp).
// Their getattr reads the in-memory inode (pinned by the open descriptor)
// under at most a spinlock, and AT_STATX_SYNC_AS_STAT asks for nothing more;
// STATX_DIOALIGN and STATX_WRITE_ATOMIC come from the block device's in-memory
// queue limits and the mount's geometry. FUSE,
// NFS, SMB, CephFS... may ask a daemon or a server to refresh attributes.
bool is_local_type(const char* type) noexcept {
  for (const char* t : {"ext4", "ext3", "ext2", "xfs", "btrfs", "tmpfs", "f2fs"})
    if (std::strcmp(type, t) == 0) return true;
  return false;
}

// The filesystem type of `dev` from /proc/self/mountinfo: procfs prints the
// mount table from memory and asks no filesystem anything. A line reads
// "id parent major:minor root mountpoint options [optional...] - type source super-options".
// Returns false when no mount has that device (btrfs subvolumes report a
// device of their own that mountinfo does not list: they go to the engine).
bool lookup_local(std::uint64_t dev) noexcept {
  std::FILE* f = std::fopen("/proc/self/mountinfo", "re");
  if (!f) return false;
  bool local = false;
  char line[4096];
  while (std::fgets(line, sizeof line, f)) {
    unsigned major = 0, minor = 0;
    if (std::sscanf(line, "%*d %*d %u:%u", &major, &minor) != 2) continue;
    if (((std::uint64_t{major} << 32) | minor) != dev) continue;
    const char* sep = std::strstr(line, " - ");
    char type[64];
    if (sep && std::sscanf(sep + 3, "%63s", type) == 1) {
      local = is_local_type(type);
      break;
    }
  }
  std::fclose(f);
  return local;
}

// Errors of an inline open that the ring would give too: failures of the
// path walk over cached dentries (a lookup that needs more than the cache
// fails with EAGAIN instead) and of the permission checks. Anything else
// (EAGAIN, EINVAL for flags openat2 is stricter about than openat, ENXIO or
// EWOULDBLOCK that O_NONBLOCK caused, EMFILE...) goes to the engine, whose
// result is authoritative.
bool final_open_error(int err) noexcept {
  switch (err) {
    case ENOENT:
    case ENOTDIR:
    case EACCES:
    case ELOOP:
    case EXDEV:
    case ENAMETOOLONG:
    case EISDIR:
      return true;
    default:
      return false;
  }
}

}  // namespace

int inline_open(const fs_args& a, file_handle& h, inline_counters& c) noexcept {
  // O_CREAT, O_TRUNC and O_TMPFILE modify the filesystem (the kernel refuses
  // them with RESOLVE_CACHED anyway); an O_PATH open calls no filesystem
  // and openat2 refuses O_PATH with O_NONBLOCK.
  if ((a.flags & (O_CREAT | O_TRUNC | O_PATH)) != 0 || (a.flags & O_TMPFILE) == O_TMPFILE) return inline_undecided;
  // As io_uring issues OPENAT2 inline in io_uring_enter: RESOLVE_CACHED makes
  // the path walk use only the dentry cache (EAGAIN otherwise: no disk read,
  // no FUSE lookup, no NFS revalidation), and O_NONBLOCK makes the open of a
  // FIFO or device return at once and a lease break fail with EWOULDBLOCK
  // instead of waiting. Like the ring's inline issue, a filesystem's own
  // ->open (FUSE sends FUSE_OPEN unless the daemon opted out) still runs.
  kernel_open_how how{};
  how.flags = static_cast<std::uint64_t>(static_cast<unsigned>(a.flags | O_NONBLOCK));
  how.mode = 0;  // no O_CREAT/O_TMPFILE: openat2 wants mode 0 (openat ignores it)
  how.resolve = (a.openat2 ? a.how.resolve : 0) | RESOLVE_CACHED;
  // Why this is sound: the path string is the caller's fs_args (and `how`
  // is on this stack), used only during this call; `dirfd` is the caller's,
  // valid until the operation completes.
  long r;
  do {
    r = ::syscall(SYS_openat2, a.dirfd, a.path.c_str(), &how, sizeof how);
  } while (r < 0 && errno == EINTR);
  if (r < 0) {
    const int err = errno;
    if (!final_open_error(err) || (a.how.resolve & RESOLVE_CACHED) != 0) {
      // (A caller's own RESOLVE_CACHED: the ring gives its EAGAIN.)
      c.add(&inline_counters::block::open_fallthroughs);
      return inline_undecided;
    }
    c.add(&inline_counters::block::opens);
    return -err;
  }
  const int fd = static_cast<int>(r);
  // The ring's inline open takes O_NONBLOCK off again inside the kernel; a
  // system call cannot, and an fcntl now would be a fifth system call for a
  // file that is then only stat'ed, read from the page cache and closed. The
  // handle takes it off at the first use that may block (see
  // file_handle::blocking_fd): until then only RWF_NOWAIT reads and writes,
  // statx and close use the descriptor, and O_NONBLOCK changes none of them.
  if ((a.flags & O_NONBLOCK) == 0) h.defer_status_flags(a.flags);
  c.add(&inline_counters::block::opens);
  return fd;
}

int inline_stat(file_handle& h, int fd, struct statx& stx, inline_counters& c) noexcept {
  // Why this is sound: the fd is kept open by the caller's reference to
  // the handle, and `stx` is the caller's, written only during this call.
  auto call = [&](int sync) {
    int res;
    do {
      res = ::statx(fd, "", AT_EMPTY_PATH | sync, stat_mask, &stx) == 0 ? 0 : -errno;
    } while (res == -EINTR);
    return res;
  };
  if (!h.attributes_known()) {
    // The file's filesystem is not known yet (a file just opened): one statx
    // is both the probe and, on a local filesystem, the answer. With
    // AT_STATX_DONT_SYNC every filesystem answers from memory: FUSE from its
    // attribute cache, NFS before it would flush the file's dirty pages or
    // revalidate (nfs_getattr returns early for DONT_SYNC); the local
    // filesystems below ignore the sync type, so there the answer is the
    // one AT_STATX_SYNC_AS_STAT gives. Elsewhere the answer only teaches the
    // handle its type and device, and the engine makes the real statx.
    if (call(AT_STATX_DONT_SYNC) != 0) return inline_undecided;
    h.learn(stx);
    if (!is_local_filesystem_device(h.device()) || (stx.stx_mask & STATX_BASIC_STATS) != STATX_BASIC_STATS)
      return inline_undecided;
    c.add(&inline_counters::block::stats);
    return 0;
  }
  if (!is_local_filesystem_device(h.device())) return inline_undecided;
  // On the filesystems above it cannot wait (see is_local_type); every
  // result, errors included, is final.
  const int res = call(AT_STATX_SYNC_AS_STAT);
  c.add(&inline_counters::block::stats);
  return res;
}

bool close_without_waiting(const file_handle& h) noexcept {
  // On these filesystems IORING_OP_CLOSE is not punted to io-wq (they have
  // no ->flush), so the ring closes in the submitting thread too, and the
  // final release of the file runs in that thread's task work either way.
  return h.sole_reference() && is_local_filesystem_device(h.device());
}


bool is_local_filesystem_device(std::uint64_t dev) noexcept {
  if (dev == 0) return false;
  // A few devices per thread, replaced round-robin: a loop thread serves
  // files of a handful of filesystems, and a miss costs one read of
  // mountinfo. (A device number reused by a later mount of another type
  // keeps its first answer while it stays in this table.)
  struct entry {
    std::uint64_t dev = 0;
    bool local = false;
  };
  FSYS_HOT_TLS thread_local entry known[8];
  FSYS_HOT_TLS thread_local unsigned next = 0;
  for (const entry& e : known)
    if (e.dev == dev) return e.local;
  entry& e = known[next++ % 8];
  e.dev = dev;
  e.local = lookup_local(dev);
  return e.local;
}

}  // namespace fsys::detail
