// Test support: mounts tests/fuse/faultfs over a backing directory for the
// duration of a scope, and drives its fault controls.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>

namespace fsys::test {

/// A mounted faultfs, or the reason it could not be mounted (`reason()`).
class faultfs_mount {
 public:
  /// Mounts faultfs at `dir/mnt` over `dir/backing`.
  explicit faultfs_mount(const std::filesystem::path& dir) : backing_(dir / "backing"), mnt_(dir / "mnt") {
#ifndef FSYS_TEST_FAULTFS
    reason_ = "faultfs was not built (libfuse3-dev missing)";
#else
    if (::access("/dev/fuse", R_OK | W_OK) != 0) {
      reason_ = "/dev/fuse is not available: " + std::string(std::strerror(errno));
      return;
    }
    std::filesystem::create_directories(backing_);
    std::filesystem::create_directories(mnt_);
    struct stat before;
    ::stat(mnt_.c_str(), &before);
    pid_ = ::fork();
    if (pid_ < 0) {
      reason_ = "fork failed";
      return;
    }
    if (pid_ == 0) {
      // Quiet child: the FUSE daemon, single-threaded, in the foreground.
      int devnull = ::open("/dev/null", O_WRONLY);
      if (devnull >= 0) ::dup2(devnull, STDOUT_FILENO);
      ::execl(FSYS_TEST_FAULTFS, "faultfs", backing_.c_str(), mnt_.c_str(), "-f", "-s", static_cast<char*>(nullptr));
      std::_Exit(127);
    }
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline) {
      struct stat now;
      if (::stat(mnt_.c_str(), &now) == 0 && now.st_dev != before.st_dev) {
        mounted_ = true;
        return;
      }
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        reason_ = "faultfs could not mount (FUSE mount refused here), exit status " + std::to_string(status);
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    reason_ = "faultfs did not mount within 10 s";
#endif
  }

  ~faultfs_mount() {
    if (mounted_) ::umount2(mnt_.c_str(), MNT_DETACH);
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      int status;
      ::waitpid(pid_, &status, 0);
    }
  }

  faultfs_mount(const faultfs_mount&) = delete;
  faultfs_mount& operator=(const faultfs_mount&) = delete;

  bool mounted() const noexcept { return mounted_; }
  /// The daemon's pid: SIGSTOP makes every request on the mount wait until SIGCONT.
  pid_t pid() const noexcept { return pid_; }
  const std::string& reason() const noexcept { return reason_; }
  std::filesystem::path file(const std::string& name) const { return mnt_ / name; }
  std::filesystem::path backing_file(const std::string& name) const { return backing_ / name; }

  /// Sends one control command (see faultfs.cpp).
  void control(const std::string& cmd) const {
    int fd = ::open((mnt_ / ".faultctl").c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) throw std::runtime_error("faultfs: open .faultctl");
    ssize_t n = ::write(fd, cmd.data(), cmd.size());
    ::close(fd);
    if (n != static_cast<ssize_t>(cmd.size())) throw std::runtime_error("faultfs: bad command " + cmd);
  }

  /// The daemon's counters: writes, bytes, fsyncs, fsync_failed, dirty, and
  /// those of the volatile-cache mode (see volatile_cache.hpp).
  std::map<std::string, unsigned long> counters() const {
    int fd = ::open((mnt_ / ".faultctl").c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw std::runtime_error("faultfs: open .faultctl");
    char buf[1024] = {};
    ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
    ::close(fd);
    if (n <= 0) throw std::runtime_error("faultfs: read .faultctl");
    std::map<std::string, unsigned long> out;
    std::istringstream in(std::string(buf, static_cast<std::size_t>(n)));
    std::string item;
    while (in >> item) {
      auto eq = item.find('=');
      if (eq != std::string::npos) out[item.substr(0, eq)] = std::stoul(item.substr(eq + 1));
    }
    return out;
  }

 private:
  std::filesystem::path backing_, mnt_;
  pid_t pid_ = -1;
  bool mounted_ = false;
  std::string reason_;
};

}  // namespace fsys::test
