// faultfs — a passthrough FUSE filesystem that injects faults on demand, for
// fsys's fault tests (this machine has no device-mapper error/flakey target).
//
// Usage: faultfs <backing-dir> <mountpoint> [fuse options, e.g. -f -s]
//
// Every file of <backing-dir> appears under <mountpoint>. The special file
// `/.faultctl` controls the faults: write one command per write(2), read it
// to get the counters.
//   reset                 no faults, counters kept
//   fsync_eio <n>         the next n fsync/fdatasync calls fail with EIO
//                         (-1: all of them); the data is not synced
//   short <n>             every write accepts at most n bytes (0: off)
//   write_budget <n> <e>  n more bytes are accepted, then writes fail with
//                         errno e (a write straddling the budget is short)
//   off                   write_budget off
//   delay_ms <n>          every lookup/getattr, open, create and rename
//                         waits n milliseconds first (0: off); a slow
//                         filesystem for the stall tests
// The volatile-cache mode and its power cut (volatile, powercut,
// powercut_after, wb_fail) are described in volatile_cache.hpp; its counters
// follow the ones below on the same line.
// Reading `/.faultctl` returns
//   "writes=W bytes=B fsyncs=F fsync_failed=X dirty=D"
// where dirty=1 means a write reached the backing file after the last
// successful fsync (so the filesystem has not made it durable).
//
// Run single-threaded (-s): the fault state needs no locking then.
#define FUSE_USE_VERSION 35
#include <fuse3/fuse.h>

#include "volatile_cache.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <chrono>

namespace {

constexpr const char* ctl_name = "/.faultctl";

std::string backing;

struct faults {
  long fsync_eio = 0;        // fsyncs still to fail (-1: all)
  long short_max = 0;        // max bytes per write (0: unlimited)
  long budget = -1;          // bytes still accepted (-1: unlimited)
  int budget_errno = EIO;
  unsigned long writes = 0, bytes = 0, fsyncs = 0, fsync_failed = 0;
  bool dirty = false;
} st;

// ---- volatile-cache mode (see volatile_cache.hpp) ----
faultfs_volatile::model vol;

std::string real(const char* path) { return backing + path; }
bool is_ctl(const char* path) { return std::strcmp(path, ctl_name) == 0; }

// ---- slow metadata (delay_ms) ----------------------------------------------
long delay_ms = 0;
void slow_down(const char* path) {
  if (delay_ms > 0 && !is_ctl(path)) std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
}
bool slow_control(const std::string& cmd) { return std::sscanf(cmd.c_str(), "delay_ms %ld", &delay_ms) == 1; }

int ff_getattr(const char* path, struct stat* sb, fuse_file_info*) {
  slow_down(path);
  if (is_ctl(path)) {
    std::memset(sb, 0, sizeof *sb);
    sb->st_mode = S_IFREG | 0666;
    sb->st_nlink = 1;
    sb->st_size = 4096;
    return 0;
  }
  if (int e = vol.alive()) return e;  // volatile
  if (::lstat(real(path).c_str(), sb) != 0) return -errno;
  vol.adjust(sb);  // volatile
  return 0;
}

int ff_readdir(const char* path, void* buf, fuse_fill_dir_t fill, off_t, fuse_file_info*, fuse_readdir_flags) {
  if (int e = vol.alive()) return e;  // volatile
  DIR* d = ::opendir(real(path).c_str());
  if (!d) return -errno;
  while (dirent* e = ::readdir(d)) fill(buf, e->d_name, nullptr, 0, static_cast<fuse_fill_dir_flags>(0));
  ::closedir(d);
  return 0;
}

int ff_open(const char* path, fuse_file_info* fi) {
  slow_down(path);
  if (is_ctl(path)) {
    fi->fh = static_cast<uint64_t>(-1);
    fi->direct_io = 1;  // every read of the counters reaches the daemon
    return 0;
  }
  if (int e = (fi->flags & O_TRUNC) ? vol.gate() : vol.alive()) return e;  // volatile
  if (vol.active() && (fi->flags & O_TRUNC)) vol.before_truncate(-1, real(path), 0);  // volatile
  int fd = ::open(real(path).c_str(), fi->flags & ~(O_APPEND));
  if (fd < 0) return -errno;
  fi->fh = static_cast<uint64_t>(fd);
  if (vol.active()) vol.opened(fi->fh, fd);  // volatile
  return 0;
}

int ff_create(const char* path, mode_t mode, fuse_file_info* fi) {
  slow_down(path);
  if (int e = vol.gate()) return e;  // volatile
  int fd = ::open(real(path).c_str(), fi->flags | O_CREAT, mode);
  if (fd < 0) return -errno;
  fi->fh = static_cast<uint64_t>(fd);
  if (vol.active()) vol.created(fi->fh, fd);  // volatile
  return 0;
}

int ff_read(const char* path, char* buf, size_t size, off_t off, fuse_file_info* fi) {
  if (is_ctl(path)) {
    char text[512];
    int n = std::snprintf(text, sizeof text, "writes=%lu bytes=%lu fsyncs=%lu fsync_failed=%lu dirty=%d\n",
                          st.writes, st.bytes, st.fsyncs, st.fsync_failed, st.dirty ? 1 : 0);
    n = n - 1 + vol.print_counters(text + n - 1, sizeof text - static_cast<size_t>(n - 1));  // volatile
    if (off >= n) return 0;
    size_t len = std::min(size, static_cast<size_t>(n - off));
    std::memcpy(buf, text + off, len);
    return static_cast<int>(len);
  }
  if (int e = vol.alive()) return e;  // volatile
  ssize_t r = ::pread(static_cast<int>(fi->fh), buf, size, off);
  return r < 0 ? -errno : static_cast<int>(r);
}

int control(const char* buf, size_t size) {
  std::string cmd(buf, size);
  long a = 0, b = 0;
  if (int r = vol.command(cmd); r != 0) return r < 0 ? r : static_cast<int>(size);  // volatile
  if (cmd.rfind("reset", 0) == 0) {
    st.fsync_eio = 0;
    st.short_max = 0;
    st.budget = -1;
  } else if (std::sscanf(cmd.c_str(), "fsync_eio %ld", &a) == 1) {
    st.fsync_eio = a;
  } else if (std::sscanf(cmd.c_str(), "short %ld", &a) == 1) {
    st.short_max = a;
  } else if (std::sscanf(cmd.c_str(), "write_budget %ld %ld", &a, &b) == 2) {
    st.budget = a;
    st.budget_errno = static_cast<int>(b);
  } else if (cmd.rfind("off", 0) == 0) {
    st.budget = -1;
  } else if (slow_control(cmd)) {
  } else {
    return -EINVAL;
  }
  return static_cast<int>(size);
}

int ff_write(const char* path, const char* buf, size_t size, off_t off, fuse_file_info* fi) {
  if (is_ctl(path)) return control(buf, size);
  if (int e = vol.gate()) return e;  // volatile
  if (st.short_max > 0 && size > static_cast<size_t>(st.short_max)) size = static_cast<size_t>(st.short_max);
  if (st.budget >= 0) {
    if (st.budget == 0) return -st.budget_errno;
    if (size > static_cast<size_t>(st.budget)) size = static_cast<size_t>(st.budget);
  }
  if (vol.active()) vol.before_write(static_cast<int>(fi->fh), static_cast<uint64_t>(off), size);  // volatile
  ssize_t r = ::pwrite(static_cast<int>(fi->fh), buf, size, off);
  if (r < 0) return -errno;
  if (st.budget >= 0) st.budget -= r;
  ++st.writes;
  st.bytes += static_cast<unsigned long>(r);
  if (r > 0) st.dirty = true;
  return static_cast<int>(r);
}

int ff_fsync(const char* path, int datasync, fuse_file_info* fi) {
  if (is_ctl(path)) return 0;
  if (int e = vol.gate()) return e;  // volatile
  ++st.fsyncs;
  if (st.fsync_eio != 0) {
    if (st.fsync_eio > 0) --st.fsync_eio;
    ++st.fsync_failed;
    return -EIO;
  }
  int fd = static_cast<int>(fi->fh);
  if (vol.active()) {  // volatile: an injected writeback failure drops the unsynced changes
    if (int e = vol.before_fsync(fi->fh, fd)) {
      ++st.fsync_failed;
      return e;
    }
  }
  if ((datasync ? ::fdatasync(fd) : ::fsync(fd)) != 0) return -errno;
  st.dirty = false;
  if (vol.active()) return vol.after_fsync(fi->fh, fd);  // volatile
  return 0;
}

int ff_release(const char* path, fuse_file_info* fi) {
  if (!is_ctl(path)) {
    if (vol.active()) vol.released(fi->fh);  // volatile
    ::close(static_cast<int>(fi->fh));
  }
  return 0;
}

int ff_flush(const char*, fuse_file_info*) { return 0; }

int ff_truncate(const char* path, off_t size, fuse_file_info* fi) {
  if (is_ctl(path)) return 0;
  if (int e = vol.gate()) return e;  // volatile
  if (vol.active()) vol.before_truncate(fi ? static_cast<int>(fi->fh) : -1, fi ? std::string() : real(path), static_cast<uint64_t>(size));  // volatile
  int r = fi ? ::ftruncate(static_cast<int>(fi->fh), size) : ::truncate(real(path).c_str(), size);
  return r == 0 ? 0 : -errno;
}

int ff_unlink(const char* path) {
  if (int e = vol.gate()) return e;  // volatile
  return ::unlink(real(path).c_str()) == 0 ? 0 : -errno;
}

int ff_statfs(const char* path, struct statvfs* sv) {
  return ::statvfs(real(path).c_str(), sv) == 0 ? 0 : -errno;
}

// ---- namespace operations (plain passthrough, plus the volatile mode's hooks) ----

int ff_mkdir(const char* path, mode_t mode) {
  if (int e = vol.gate()) return e;
  return ::mkdir(real(path).c_str(), mode) == 0 ? 0 : -errno;
}

int ff_rmdir(const char* path) {
  if (int e = vol.gate()) return e;
  if (vol.active()) return vol.rmdir(real(path));
  return ::rmdir(real(path).c_str()) == 0 ? 0 : -errno;
}

int ff_rename(const char* from, const char* to, unsigned int flags) {
  slow_down(from);
  if (int e = vol.gate()) return e;
  if (vol.active() && flags == 0) vol.before_rename(real(from), real(to));
  // renameat2 through syscall(): glibc's wrapper is not in every version.
  long r = ::syscall(SYS_renameat2, AT_FDCWD, real(from).c_str(), AT_FDCWD, real(to).c_str(), flags);
  return r == 0 ? 0 : -errno;
}

int ff_link(const char* from, const char* to) {
  if (int e = vol.gate()) return e;
  return ::link(real(from).c_str(), real(to).c_str()) == 0 ? 0 : -errno;
}

int ff_symlink(const char* target, const char* path) {
  if (int e = vol.gate()) return e;
  return ::symlink(target, real(path).c_str()) == 0 ? 0 : -errno;
}

int ff_readlink(const char* path, char* buf, size_t size) {
  if (int e = vol.alive()) return e;
  if (size == 0) return -EINVAL;
  ssize_t n = ::readlink(real(path).c_str(), buf, size - 1);
  if (n < 0) return -errno;
  buf[n] = '\0';
  return 0;
}

int ff_fsyncdir(const char* path, int, fuse_file_info*) {
  if (int e = vol.gate()) return e;
  if (vol.active()) return vol.fsyncdir(real(path));
  int fd = ::open(real(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return -errno;
  int r = ::fsync(fd) == 0 ? 0 : -errno;
  ::close(fd);
  return r;
}

int ff_utimens(const char* path, const struct timespec tv[2], fuse_file_info* fi) {
  if (is_ctl(path)) return 0;
  if (int e = vol.alive()) return e;
  int r = fi ? ::futimens(static_cast<int>(fi->fh), tv) : ::utimensat(AT_FDCWD, real(path).c_str(), tv, AT_SYMLINK_NOFOLLOW);
  return r == 0 ? 0 : -errno;
}

int ff_chmod(const char* path, mode_t mode, fuse_file_info* fi) {
  if (is_ctl(path)) return 0;
  if (int e = vol.alive()) return e;
  int r = fi ? ::fchmod(static_cast<int>(fi->fh), mode) : ::chmod(real(path).c_str(), mode);
  return r == 0 ? 0 : -errno;
}

int ff_chown(const char* path, uid_t uid, gid_t gid, fuse_file_info* fi) {
  if (is_ctl(path)) return 0;
  if (int e = vol.alive()) return e;
  int r = fi ? ::fchown(static_cast<int>(fi->fh), uid, gid) : ::lchown(real(path).c_str(), uid, gid);
  return r == 0 ? 0 : -errno;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s <backing-dir> <mountpoint> [fuse options]\n", argv[0]);
    return 2;
  }
  char* resolved = ::realpath(argv[1], nullptr);
  if (!resolved) {
    std::perror("faultfs: backing dir");
    return 2;
  }
  backing = resolved;
  std::free(resolved);
  vol.init(backing);

  fuse_operations ops;
  std::memset(&ops, 0, sizeof ops);
  ops.getattr = ff_getattr;
  ops.readdir = ff_readdir;
  ops.open = ff_open;
  ops.create = ff_create;
  ops.read = ff_read;
  ops.write = ff_write;
  ops.fsync = ff_fsync;
  ops.release = ff_release;
  ops.flush = ff_flush;
  ops.truncate = ff_truncate;
  ops.unlink = ff_unlink;
  ops.statfs = ff_statfs;
  ops.mkdir = ff_mkdir;
  ops.rmdir = ff_rmdir;
  ops.rename = ff_rename;
  ops.link = ff_link;
  ops.symlink = ff_symlink;
  ops.readlink = ff_readlink;
  ops.fsyncdir = ff_fsyncdir;
  ops.utimens = ff_utimens;
  ops.chmod = ff_chmod;
  ops.chown = ff_chown;

  // fuse_main gets argv without the backing directory.
  argv[1] = argv[0];
  return fuse_main(argc - 1, argv + 1, &ops, nullptr);
}
