// Test support: faultfs in its volatile-cache mode (tests/fuse/volatile_cache.hpp),
// with power cuts and a "reboot" (a fresh mount that sees only durable state).
#pragma once

#include "faultfs_mount.hpp"

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>

namespace fsys::test {

/// A faultfs mount in volatile-cache mode. Everything in the tree when the
/// mode is enabled (at construction and after every `reboot`) is durable.
class powercut_mount {
 public:
  /// Mounts faultfs at `dir/mnt` over `dir/backing` and enables the volatile
  /// mode with `mode` ("drop", "prefix" or "torn") and `seed` (the random
  /// choices of the cut).
  powercut_mount(const std::filesystem::path& dir, const std::string& mode, std::uint64_t seed) : dir_(dir) {
    fs_.emplace(dir_);
    if (fs_->mounted()) set_mode(mode, seed);
  }

  bool mounted() const noexcept { return fs_ && fs_->mounted(); }
  std::string reason() const { return fs_ ? fs_->reason() : "not mounted"; }
  std::filesystem::path file(const std::string& name) const { return fs_->file(name); }
  std::filesystem::path root() const { return fs_->file(""); }
  void control(const std::string& cmd) const { fs_->control(cmd); }
  std::map<std::string, unsigned long> counters() const { return fs_->counters(); }

  /// How the next cut treats unsynced writes, and the seed of its choices.
  void set_mode(const std::string& mode, std::uint64_t seed) {
    control("volatile " + mode + " " + std::to_string(seed));
    mode_ = mode;
  }

  /// Cuts the power now: the backing tree becomes the durable state and the
  /// mount fails every operation with EIO until `reboot`.
  void cut() const { control("powercut"); }

  /// Cuts the power at the (n+1)-th state-changing operation from now.
  void cut_after(unsigned long n) const { control("powercut_after " + std::to_string(n)); }

  /// After a cut (processes using the mount should be gone): unmounts, stops
  /// the daemon, mounts a fresh one on the rebuilt backing tree and enables
  /// the volatile mode again. Throws when the mount fails.
  void reboot(std::uint64_t seed) {
    fs_.reset();
    fs_.emplace(dir_);
    if (!fs_->mounted()) throw std::runtime_error("faultfs: remount failed: " + fs_->reason());
    set_mode(mode_, seed);
  }

 private:
  std::filesystem::path dir_;
  std::string mode_ = "drop";
  std::optional<faultfs_mount> fs_;
};

}  // namespace fsys::test
