// faultfs's volatile-cache mode: a model of what a power cut loses, for the
// power-cut tests (tests/test_powercut.cpp). Included by faultfs.cpp only.
//
// Once enabled (control command `volatile <mode> <seed>`), everything in the
// backing tree at that moment counts as durable. From then on:
//   - file data: every write and truncate of a regular file is volatile until
//     an fsync/fdatasync of that file succeeds. Each change is kept in an undo
//     log per inode (the bytes it overwrote and the size before it), so the
//     backing file always holds the live contents and the durable contents are
//     "live minus the undo log";
//   - namespace: every directory has a durable entry table (name -> inode),
//     taken when the directory is fsynced (FUSE fsyncdir). Creates, renames,
//     unlinks, links, mkdirs and rmdirs change only the live backing tree.
//     Every regular inode keeps a hard link in an attic directory next to the
//     backing directory (`<backing>.faultfs-attic/<ino>`) and removed
//     directories are moved there, so that no inode of a durable table can be
//     freed or reused before a cut.
// A power cut (`powercut`, or `powercut_after <n>`: at the n+1-th mutating
// operation from now) rebuilds the backing tree from durable state alone:
// every file's unsynced changes are undone (mode `drop`: all of them; `prefix`:
// a random prefix of each file's unsynced changes is kept; `torn`: as prefix,
// and the last kept write keeps only a random number of its leading 512-byte
// sectors), a new tree is built from the durable directory tables, and it
// replaces the backing directory. The filesystem is then dead: every later
// operation fails with EIO until it is unmounted; a fresh faultfs mounted on
// the same backing directory sees what a machine would see after reboot.
//
// Writeback failure (`wb_fail <n> [skip]`): after `skip` successful syncs of
// regular files, the next n fsync/fdatasync calls fail with EIO and drop the
// file's unsynced changes (the backing file goes back to the durable contents,
// as if the kernel had dropped the failed pages; the kernel's page cache of the
// mount may still show the dropped data, as on a real machine). As the
// kernel's errseq does, every
// other open file description of that inode that was open at the failure
// reports EIO once, at its next fsync (which still syncs); the description
// whose fsync failed has already been told, and its next fsync returns 0.
//
// The model assumes a single-threaded daemon (faultfs runs with -s).
#pragma once

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

namespace faultfs_volatile {

/// One unsynced change of a regular file, as needed to undo it.
struct undo_entry {
  std::uint64_t off = 0;       ///< first byte changed (a truncate: the new size)
  std::uint64_t len = 0;       ///< bytes written (0 for a truncate)
  std::uint64_t old_size = 0;  ///< file size before the change
  std::string old;             ///< bytes [off, off + old.size()) before the change
  bool truncate = false;
};

/// A regular inode known to the model.
struct file_state {
  std::vector<undo_entry> log;  ///< changes since the last successful sync, oldest first
  int fd = -1;                  ///< O_RDWR on the attic link: reads old bytes, undoes changes
};

/// One entry of a durable directory table.
struct dir_entry {
  std::string name;
  mode_t mode = 0;
  ino_t ino = 0;
  std::string target;  ///< symlinks only
};

enum class cut_mode { drop, prefix, torn };

class model {
 public:
  void init(const std::string& backing) {
    backing_ = backing;
    attic_ = backing + ".faultfs-attic";
  }

  bool active() const noexcept { return on_; }
  bool dead() const noexcept { return dead_; }

  /// -EIO once the power was cut, else 0. For operations that change nothing.
  int alive() const noexcept { return dead_ ? -EIO : 0; }

  /// For operations that change state: counts towards `powercut_after`, cuts
  /// the power when the count is reached. -EIO when the power is off.
  int gate() {
    if (dead_) return -EIO;
    if (on_ && cut_after_ >= 0) {
      if (cut_after_ == 0) {
        cut();
        return -EIO;
      }
      --cut_after_;
    }
    return 0;
  }

  /// Handles a control command of the volatile mode: 1 handled, 0 not one of
  /// ours, negative errno for a bad command.
  int command(const std::string& cmd) {
    char word[32] = {};
    unsigned long long a = 0, b = 0;
    if (std::sscanf(cmd.c_str(), "volatile %31s %llu", word, &a) >= 1) {
      std::string m = word;
      if (m == "drop") mode_ = cut_mode::drop;
      else if (m == "prefix") mode_ = cut_mode::prefix;
      else if (m == "torn") mode_ = cut_mode::torn;
      else return -EINVAL;
      rng_.seed(a);
      if (!on_) enable();
      return 1;
    }
    if (cmd.rfind("powercut_after", 0) == 0) {
      if (!on_ || std::sscanf(cmd.c_str(), "powercut_after %llu", &a) != 1) return -EINVAL;
      cut_after_ = static_cast<long long>(a);
      return 1;
    }
    if (cmd.rfind("powercut", 0) == 0) {
      if (!on_) return -EINVAL;
      if (!dead_) cut();
      return 1;
    }
    if (cmd.rfind("wb_fail", 0) == 0) {
      int got = std::sscanf(cmd.c_str(), "wb_fail %llu %llu", &a, &b);
      if (!on_ || got < 1) return -EINVAL;
      wb_fail_ = static_cast<long>(a);
      wb_skip_ = got == 2 ? static_cast<long>(b) : 0;
      return 1;
    }
    return 0;
  }

  /// Writes " key=value..." counters and a newline; returns the length.
  int print_counters(char* buf, std::size_t size) const {
    int n = std::snprintf(buf, size,
                          " volatile=%d dead=%d cuts=%lu cut_errors=%lu wb_failed=%lu lost_writes=%lu "
                          "kept_writes=%lu torn_writes=%lu unsynced=%lu\n",
                          on_ ? 1 : 0, dead_ ? 1 : 0, cuts_, cut_errors_, wb_failed_, lost_writes_, kept_writes_,
                          torn_writes_, unsynced());
    return n < 0 ? 0 : std::min(n, static_cast<int>(size) - 1);
  }

  // ---- hooks called by faultfs's operations (only when active()) ----------

  /// A regular file was opened (fh: its FUSE handle, fd: the backing fd).
  void opened(std::uint64_t fh, int fd) {
    struct stat sb;
    if (::fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) return;
    track_fd(fd, sb.st_ino);
    handles_[fh] = handle{sb.st_ino, false};
  }

  void released(std::uint64_t fh) { handles_.erase(fh); }

  /// Before a write of `len` bytes at `off` through backing fd `fd`.
  void before_write(int fd, std::uint64_t off, std::size_t len) {
    struct stat sb;
    if (::fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) return;
    file_state& f = track_fd(fd, sb.st_ino);
    undo_entry e;
    e.off = off;
    e.len = len;
    e.old_size = static_cast<std::uint64_t>(sb.st_size);
    if (off < e.old_size) e.old = read_range(f.fd, off, std::min<std::uint64_t>(len, e.old_size - off));
    f.log.push_back(std::move(e));
  }

  /// Before the file (by backing fd, or by backing path when fd < 0) gets size `size`.
  void before_truncate(int fd, const std::string& real_path, std::uint64_t size) {
    struct stat sb;
    int r = fd >= 0 ? ::fstat(fd, &sb) : ::stat(real_path.c_str(), &sb);
    if (r != 0 || !S_ISREG(sb.st_mode)) return;
    file_state* f = fd >= 0 ? &track_fd(fd, sb.st_ino) : track_path(real_path, sb.st_ino);
    if (!f || static_cast<std::uint64_t>(sb.st_size) == size) return;
    undo_entry e;
    e.truncate = true;
    e.off = size;
    e.old_size = static_cast<std::uint64_t>(sb.st_size);
    if (size < e.old_size) e.old = read_range(f->fd, size, e.old_size - size);
    f->log.push_back(std::move(e));
  }

  /// Before an fsync of a regular file: -EIO when a writeback failure is
  /// injected now (the file's unsynced changes are dropped), else 0.
  int before_fsync(std::uint64_t fh, int fd) {
    struct stat sb;
    if (::fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) return 0;
    if (wb_fail_ <= 0) return 0;
    if (wb_skip_ > 0) {
      --wb_skip_;
      return 0;
    }
    --wb_fail_;
    ++wb_failed_;
    file_state& f = track_fd(fd, sb.st_ino);
    for (std::size_t i = f.log.size(); i-- > 0;) undo(f.fd, f.log[i]);
    f.log.clear();
    for (auto& [h, st] : handles_)
      if (st.ino == sb.st_ino) st.wb_error = true;
    if (auto it = handles_.find(fh); it != handles_.end()) it->second.wb_error = false;  // told now
    return -EIO;
  }

  /// After a successful fsync of a regular file: its changes are durable.
  /// Returns -EIO once if a writeback failure of the inode happened since
  /// this description last synced (errseq), else 0.
  int after_fsync(std::uint64_t fh, int fd) {
    struct stat sb;
    if (::fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) return 0;
    track_fd(fd, sb.st_ino).log.clear();
    if (auto it = handles_.find(fh); it != handles_.end() && it->second.wb_error) {
      it->second.wb_error = false;
      return -EIO;
    }
    return 0;
  }

  /// fsync of a directory: its current entries become its durable table.
  int fsyncdir(const std::string& real_dir) {
    struct stat sb;
    if (::lstat(real_dir.c_str(), &sb) != 0) return -errno;
    return capture_dir(real_dir, sb.st_ino);
  }

  /// A regular file was created at backing path `real_path` (open as fd).
  void created(std::uint64_t fh, int fd) { opened(fh, fd); }

  /// rmdir in volatile mode: an empty directory is moved into the attic, so
  /// that its inode number cannot be reused while a durable table names it.
  int rmdir(const std::string& real) {
    struct stat sb;
    if (::lstat(real.c_str(), &sb) != 0) return -errno;
    if (!S_ISDIR(sb.st_mode)) return -ENOTDIR;
    if (int e = empty_dir(real); e != 0) return e;
    std::string to = attic_ + "/d" + std::to_string(sb.st_ino);
    return ::rename(real.c_str(), to.c_str()) == 0 ? 0 : -errno;
  }

  /// Before rename(from, to) without flags: an empty directory about to be
  /// replaced is moved into the attic first (see rmdir).
  void before_rename(const std::string& from, const std::string& to) {
    struct stat a, b;
    if (::lstat(from.c_str(), &a) != 0 || ::lstat(to.c_str(), &b) != 0) return;
    if (!S_ISDIR(a.st_mode) || !S_ISDIR(b.st_mode) || a.st_ino == b.st_ino) return;
    if (empty_dir(to) == 0) rmdir(to);
  }

  /// st_nlink without the attic's own link.
  void adjust(struct stat* sb) const {
    if (on_ && S_ISREG(sb->st_mode) && files_.count(sb->st_ino) && sb->st_nlink > 0) --sb->st_nlink;
  }

 private:
  struct handle {
    ino_t ino;
    bool wb_error;
  };

  static bool hidden_name(const char* name) {
    // libfuse renames an unlinked open file to .fuse_hiddenNNN: not a real entry.
    return std::strncmp(name, ".fuse_hidden", 12) == 0;
  }

  static int empty_dir(const std::string& real) {
    DIR* d = ::opendir(real.c_str());
    if (!d) return -errno;
    int r = 0;
    while (dirent* e = ::readdir(d)) {
      if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0 || hidden_name(e->d_name)) continue;
      r = -ENOTEMPTY;
      break;
    }
    ::closedir(d);
    return r;
  }

  static std::string read_range(int fd, std::uint64_t off, std::uint64_t len) {
    std::string out(len, '\0');
    std::size_t done = 0;
    while (done < len) {
      ssize_t n = ::pread(fd, out.data() + done, len - done, static_cast<off_t>(off + done));
      if (n <= 0) break;
      done += static_cast<std::size_t>(n);
    }
    out.resize(done);
    return out;
  }

  void note_error(const char* what, const std::string& path) {
    ++cut_errors_;
    std::fprintf(stderr, "faultfs: power cut: %s %s: %s\n", what, path.c_str(), std::strerror(errno));
  }

  std::string attic_of(ino_t ino) const { return attic_ + "/" + std::to_string(ino); }

  file_state* adopt(ino_t ino) {
    auto [it, fresh] = files_.try_emplace(ino);
    if (fresh) {
      it->second.fd = ::open(attic_of(ino).c_str(), O_RDWR | O_CLOEXEC);
      if (it->second.fd < 0) note_error("open attic link", attic_of(ino));
    }
    return &it->second;
  }

  file_state* track_path(const std::string& real, ino_t ino) {
    if (auto it = files_.find(ino); it != files_.end()) return &it->second;
    if (::link(real.c_str(), attic_of(ino).c_str()) != 0 && errno != EEXIST) note_error("link", real);
    return adopt(ino);
  }

  file_state& track_fd(int fd, ino_t ino) {
    if (auto it = files_.find(ino); it != files_.end()) return it->second;
    std::string proc = "/proc/self/fd/" + std::to_string(fd);
    if (::linkat(AT_FDCWD, proc.c_str(), AT_FDCWD, attic_of(ino).c_str(), AT_SYMLINK_FOLLOW) != 0 && errno != EEXIST)
      note_error("link", proc);
    return *adopt(ino);
  }

  int capture_dir(const std::string& real_dir, ino_t ino) {
    DIR* d = ::opendir(real_dir.c_str());
    if (!d) return -errno;
    std::vector<dir_entry> table;
    while (dirent* e = ::readdir(d)) {
      if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0 || hidden_name(e->d_name)) continue;
      std::string p = real_dir + "/" + e->d_name;
      struct stat sb;
      if (::lstat(p.c_str(), &sb) != 0) continue;
      dir_entry de{e->d_name, sb.st_mode, sb.st_ino, {}};
      if (S_ISREG(sb.st_mode)) {
        track_path(p, sb.st_ino);
      } else if (S_ISLNK(sb.st_mode)) {
        char t[4096];
        ssize_t n = ::readlink(p.c_str(), t, sizeof t);
        if (n > 0) de.target.assign(t, static_cast<std::size_t>(n));
      } else if (!S_ISDIR(sb.st_mode)) {
        continue;  // devices, fifos, sockets: not modelled
      }
      table.push_back(std::move(de));
    }
    ::closedir(d);
    dirs_[ino] = std::move(table);
    return 0;
  }

  // Everything in the backing tree now is durable.
  void enable() {
    std::error_code ec;
    std::filesystem::remove_all(attic_, ec);
    if (::mkdir(attic_.c_str(), 0700) != 0) note_error("mkdir", attic_);
    struct stat sb;
    if (::lstat(backing_.c_str(), &sb) != 0) note_error("stat", backing_);
    root_ino_ = sb.st_ino;
    root_mode_ = sb.st_mode;
    on_ = true;
    capture_tree(backing_, sb.st_ino);
  }

  void capture_tree(const std::string& real_dir, ino_t ino) {
    if (capture_dir(real_dir, ino) != 0) {
      note_error("read directory", real_dir);
      return;
    }
    const std::vector<dir_entry> table = dirs_[ino];
    for (const dir_entry& e : table)
      if (S_ISDIR(e.mode)) capture_tree(real_dir + "/" + e.name, e.ino);
  }

  static void write_all(int fd, const char* p, std::size_t n, std::uint64_t off) {
    while (n > 0) {
      ssize_t w = ::pwrite(fd, p, n, static_cast<off_t>(off));
      if (w <= 0) return;
      p += w;
      n -= static_cast<std::size_t>(w);
      off += static_cast<std::uint64_t>(w);
    }
  }

  // Undoes one change (the file is in the state right after it).
  static void undo(int fd, const undo_entry& e) {
    // Truncating to the old size first is right for both kinds: a write
    // never shrinks, so this cuts what it appended; a truncate that shrank
    // grows back with zeros that the old bytes then overwrite.
    if (::ftruncate(fd, static_cast<off_t>(e.old_size)) != 0) return;
    write_all(fd, e.old.data(), e.old.size(), e.off);
  }

  // Undoes the part of write `e` from byte `keep_end` on (a 512-byte boundary).
  static void tear(int fd, const undo_entry& e, std::uint64_t keep_end) {
    if (e.off + e.len > e.old_size && ::ftruncate(fd, static_cast<off_t>(std::max(e.old_size, keep_end))) != 0)
      return;
    const std::uint64_t skip = keep_end - e.off;
    if (skip < e.old.size()) write_all(fd, e.old.data() + skip, e.old.size() - skip, keep_end);
  }

  // Rolls one file back to its durable contents, keeping a random prefix of
  // its unsynced changes in prefix and torn modes.
  void roll_back(file_state& f) {
    const std::size_t n = f.log.size();
    std::size_t keep = 0;
    if (mode_ != cut_mode::drop && n > 0) keep = static_cast<std::size_t>(rng_() % (n + 1));
    for (std::size_t i = n; i-- > keep;) undo(f.fd, f.log[i]);
    lost_writes_ += n - keep;
    kept_writes_ += keep;
    if (mode_ == cut_mode::torn && keep > 0 && !f.log[keep - 1].truncate) {
      const undo_entry& e = f.log[keep - 1];
      const std::uint64_t first = (e.off / 512 + 1) * 512;  // first sector boundary inside the write
      const std::uint64_t end = e.off + e.len;
      const std::uint64_t inner = first < end ? (end - first + 511) / 512 : 0;  // boundaries in (off, end)
      const std::uint64_t pick = rng_() % (inner + 1);  // == inner: not torn
      if (pick < inner) {
        tear(f.fd, e, first + 512 * pick);
        ++torn_writes_;
      }
    }
    f.log.clear();
  }

  void build(ino_t dir_ino, const std::string& at, std::set<ino_t>& seen) {
    auto it = dirs_.find(dir_ino);
    if (it == dirs_.end()) return;  // never synced since it was made: empty
    for (const dir_entry& e : it->second) {
      std::string p = at + "/" + e.name;
      if (S_ISDIR(e.mode)) {
        // A directory renamed between two synced parents can be named by
        // both tables; the first one wins.
        if (!seen.insert(e.ino).second) continue;
        if (::mkdir(p.c_str(), e.mode & 07777) != 0) {
          note_error("mkdir", p);
          continue;
        }
        build(e.ino, p, seen);
      } else if (S_ISREG(e.mode)) {
        if (::link(attic_of(e.ino).c_str(), p.c_str()) != 0) note_error("link", p);
      } else if (S_ISLNK(e.mode)) {
        if (::symlink(e.target.c_str(), p.c_str()) != 0) note_error("symlink", p);
      }
    }
  }

  // The power cut: the backing tree becomes the durable state, the
  // filesystem dies.
  void cut() {
    for (auto& [ino, f] : files_) {
      if (f.fd >= 0) {
        roll_back(f);
        ::close(f.fd);
        f.fd = -1;
      }
    }
    const std::string fresh = backing_ + ".faultfs-new", old = backing_ + ".faultfs-old";
    std::error_code ec;
    std::filesystem::remove_all(fresh, ec);
    std::filesystem::remove_all(old, ec);
    if (::mkdir(fresh.c_str(), root_mode_ & 07777) != 0) {
      note_error("mkdir", fresh);
    } else {
      std::set<ino_t> seen{root_ino_};
      build(root_ino_, fresh, seen);
      if (::rename(backing_.c_str(), old.c_str()) != 0) note_error("rename", backing_);
      else if (::rename(fresh.c_str(), backing_.c_str()) != 0) note_error("rename", fresh);
    }
    std::filesystem::remove_all(old, ec);
    std::filesystem::remove_all(attic_, ec);
    files_.clear();
    dirs_.clear();
    handles_.clear();
    cut_after_ = -1;
    wb_fail_ = 0;
    wb_skip_ = 0;
    dead_ = true;
    ++cuts_;
  }

  unsigned long unsynced() const {
    unsigned long n = 0;
    for (const auto& [ino, f] : files_) n += f.log.size();
    return n;
  }

  std::string backing_, attic_;
  bool on_ = false, dead_ = false;
  cut_mode mode_ = cut_mode::drop;
  std::mt19937_64 rng_;
  long long cut_after_ = -1;
  long wb_fail_ = 0, wb_skip_ = 0;
  ino_t root_ino_ = 0;
  mode_t root_mode_ = 0755;
  std::map<ino_t, file_state> files_;
  std::map<ino_t, std::vector<dir_entry>> dirs_;
  std::map<std::uint64_t, handle> handles_;
  unsigned long cuts_ = 0, cut_errors_ = 0, wb_failed_ = 0, lost_writes_ = 0, kept_writes_ = 0, torn_writes_ = 0;
};

}  // namespace faultfs_volatile
