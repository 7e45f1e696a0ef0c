// Hardware awareness: Identify parsing, sysfs resolution against fake trees,
// probing real files on this machine, O_DIRECT with aligned_buffer, and
// flush_device.
#include <boost/test/unit_test.hpp>

#include <fsys/aligned_buffer.hpp>
#include <fsys/detail/nvme.hpp>
#include <fsys/drive.hpp>

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "support/temp_dir.hpp"

namespace fs = std::filesystem;
using fsys::test::temp_dir;

namespace {

// Renders optionals so failed comparisons print something readable.
template <class T>
std::string show(const std::optional<T>& v) {
  if (!v) return "none";
  if constexpr (std::is_same_v<T, bool>) return *v ? "true" : "false";
  else if constexpr (std::is_same_v<T, fs::path>) return v->string();
  else if constexpr (std::is_same_v<T, std::string>) return *v;
  else return std::to_string(*v);
}

std::string joined(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : ",") + s;
  return out;
}

using identify_buffer = std::array<std::byte, 4096>;

void put_le16(identify_buffer& b, std::size_t at, std::uint16_t v) {
  b[at] = static_cast<std::byte>(v & 0xFF);
  b[at + 1] = static_cast<std::byte>(v >> 8);
}

// An Identify Namespace buffer with NSFEAT bit 1 set or clear.
identify_buffer id_ns(std::uint16_t nawun, std::uint16_t nawupf, bool nsabp = true) {
  identify_buffer b{};
  if (nsabp) b[fsys::detail::id_ns_nsfeat] = std::byte{0x02};
  put_le16(b, fsys::detail::id_ns_nawun, nawun);
  put_le16(b, fsys::detail::id_ns_nawupf, nawupf);
  return b;
}

// Runs with an environment variable set, restoring the previous value.
class scoped_env {
 public:
  scoped_env(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value) ::setenv(name, value, 1);
    else ::unsetenv(name);
  }
  ~scoped_env() {
    if (old_) ::setenv(name_, old_->c_str(), 1);
    else ::unsetenv(name_);
  }
  scoped_env(const scoped_env&) = delete;
  scoped_env& operator=(const scoped_env&) = delete;

 private:
  const char* name_;
  std::optional<std::string> old_;
};

class fd_guard {
 public:
  explicit fd_guard(int fd) : fd_(fd) {}
  ~fd_guard() {
    if (fd_ >= 0) ::close(fd_);
  }
  fd_guard(const fd_guard&) = delete;
  fd_guard& operator=(const fd_guard&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

bool machine_has_nvme() {
  std::error_code ec;
  return fs::exists("/sys/class/nvme", ec) && !fs::is_empty("/sys/class/nvme", ec);
}

// ---------------------------------------------------------------------------
// A fake sysfs + /dev tree shaped like the kernel's.
// ---------------------------------------------------------------------------
class fake_sysfs {
 public:
  fake_sysfs() {
    fs::create_directories(sys() / "dev" / "block");
    fs::create_directories(sys() / "class" / "nvme");
    fs::create_directories(dev());
  }
  fs::path sys() const { return tmp_.path() / "sys"; }
  fs::path dev() const { return tmp_.path() / "dev"; }
  fsys::probe_roots roots() const { return {sys(), dev()}; }

  static void put(const fs::path& p, const std::string& text) {
    fs::create_directories(p.parent_path());
    std::ofstream(p) << text << "\n";
  }
  static void link(const fs::path& target, const fs::path& at) {
    fs::create_directories(at.parent_path());
    fs::create_directory_symlink(fs::relative(target, at.parent_path()), at);
  }

  // A block device directory under /sys/devices with its /sys/dev/block link.
  fs::path block(const std::string& rel, unsigned maj, unsigned min) {
    const fs::path d = sys() / "devices" / rel;
    fs::create_directories(d);
    const std::string mm = std::to_string(maj) + ":" + std::to_string(min);
    put(d / "dev", mm);
    link(d, sys() / "dev" / "block" / mm);
    return d;
  }
  fs::path partition(const fs::path& disk, const std::string& name, unsigned maj, unsigned min,
                     unsigned number) {
    auto rel = fs::relative(disk / name, sys() / "devices");
    auto d = block(rel.string(), maj, min);
    put(d / "partition", std::to_string(number));
    return d;
  }
  fs::path controller(const std::string& rel) {
    const fs::path d = sys() / "devices" / rel;
    fs::create_directories(d);
    link(d, sys() / "class" / "nvme" / d.filename());
    return d;
  }
  static void queue(const fs::path& d, const std::vector<std::pair<std::string, std::string>>& attrs) {
    fs::create_directories(d / "queue");
    for (const auto& [k, v] : attrs) put(d / "queue" / k, v);
  }

 private:
  temp_dir tmp_;
};

// The fake machine every resolution test uses.
struct fake_machine {
  fake_sysfs t;
  fs::path nvme0, nvme0n1, vda, dm0;

  fake_machine() {
    nvme0 = t.controller("pci0000:00/0000:00:04.0/nvme/nvme0");
    fake_sysfs::put(nvme0 / "dev", "240:0");
    nvme0n1 = t.block("pci0000:00/0000:00:04.0/nvme/nvme0/nvme0n1", 259, 0);
    fake_sysfs::put(nvme0n1 / "nsid", "1");
    fake_sysfs::link(nvme0, nvme0n1 / "device");
    fake_sysfs::queue(nvme0n1, {{"logical_block_size", "512"},
                                {"physical_block_size", "4096"},
                                {"dma_alignment", "3"},
                                {"rotational", "0"},
                                {"write_cache", "write back"},
                                {"fua", "1"},
                                {"atomic_write_unit_min_bytes", "512"},
                                {"atomic_write_unit_max_bytes", "16384"},
                                {"atomic_write_max_bytes", "65536"}});
    t.partition(nvme0n1, "nvme0n1p2", 259, 2, 2);
    t.partition(nvme0n1, "nvme0n1p3", 259, 3, 3);

    vda = t.block("pci0000:00/0000:00:02.0/virtio1/block/vda", 254, 0);
    fake_sysfs::queue(vda, {{"logical_block_size", "512"},
                            {"physical_block_size", "4096"},
                            {"dma_alignment", "511"},
                            {"rotational", "1"},
                            {"write_cache", "write back"},
                            {"fua", "0"},
                            {"atomic_write_unit_min_bytes", "0"},
                            {"atomic_write_unit_max_bytes", "0"},
                            {"atomic_write_max_bytes", "0"}});
    t.partition(vda, "vda1", 254, 1, 1);

    // dm-0: one slave (a crypt/linear device on nvme0n1p2) with its own limits.
    dm0 = t.block("virtual/block/dm-0", 253, 0);
    fake_sysfs::queue(dm0, {{"logical_block_size", "4096"},
                            {"physical_block_size", "4096"},
                            {"write_cache", "write through"}});
    fake_sysfs::link(nvme0n1 / "nvme0n1p2", dm0 / "slaves" / "nvme0n1p2");

    // dm-1: striped over two disks.
    auto dm1 = t.block("virtual/block/dm-1", 253, 1);
    fake_sysfs::queue(dm1, {{"logical_block_size", "512"}});
    fake_sysfs::link(vda / "vda1", dm1 / "slaves" / "vda1");
    fake_sysfs::link(nvme0n1 / "nvme0n1p2", dm1 / "slaves" / "nvme0n1p2");

    // Multipath: subsystem 2 reached through controller nvme3. The head
    // nvme2n1 lives under the subsystem; the hidden path device under nvme3.
    auto nvme3 = t.controller("pci0000:00/0000:00:05.0/nvme/nvme3");
    fake_sysfs::put(nvme3 / "dev", "240:3");
    auto subsys = t.sys() / "devices" / "virtual" / "nvme-subsystem" / "nvme-subsys2";
    auto head = t.block("virtual/nvme-subsystem/nvme-subsys2/nvme2n1", 259, 20);
    fake_sysfs::link(subsys, head / "device");
    fake_sysfs::put(head / "nsid", "1");
    fake_sysfs::queue(head, {{"logical_block_size", "4096"}});
    auto path = t.block("pci0000:00/0000:00:05.0/nvme/nvme3/nvme2c3n1", 259, 21);
    fake_sysfs::link(path, head / "multipath" / "nvme2c3n1");

    // A path device nvme1c1n1 whose sysfs lacks `device` and `nsid`: the
    // kernel's name is all there is.
    t.block("virtual/block/nvme1c1n1", 259, 31);

    // A disk with almost nothing: no queue/ at all.
    t.block("pci0000:00/0000:00:06.0/host0/sdz", 8, 0);
    // A disk whose queue files are missing or unparsable.
    auto sdy = t.block("pci0000:00/0000:00:06.0/host0/sdy", 8, 16);
    fake_sysfs::queue(sdy, {{"logical_block_size", "abc"},
                            {"write_cache", "write around"},
                            {"rotational", "2"},
                            {"fua", ""}});
  }

  fsys::drive_info resolve(unsigned maj, unsigned min) const {
    return fsys::resolve_block_device(maj, min, t.roots());
  }
};

}  // namespace

// ---------------------------------------------------------------------------
BOOST_AUTO_TEST_SUITE(identify_parsing)

BOOST_AUTO_TEST_CASE(nawun_7_nawupf_15) {
  auto b = id_ns(7, 15);
  auto [nawun, nawupf] = fsys::parse_nawun_nawupf(b);
  BOOST_TEST(show(nawun) == "7");
  BOOST_TEST(show(nawupf) == "15");
}

BOOST_AUTO_TEST_CASE(fields_are_little_endian_16_bit) {
  auto b = id_ns(0x0102, 0x0A0B);
  auto [nawun, nawupf] = fsys::parse_nawun_nawupf(b);
  BOOST_TEST(show(nawun) == std::to_string(0x0102));
  BOOST_TEST(show(nawupf) == std::to_string(0x0A0B));
}

BOOST_AUTO_TEST_CASE(zero_defers_to_the_controller_value) {
  // NVMe: "a value of 0h indicates that the size for this namespace is the
  // same size as that reported in the AWUN/AWUPF field of Identify Controller".
  auto b = id_ns(0, 0);
  auto [nawun, nawupf] = fsys::parse_nawun_nawupf(b);
  BOOST_TEST(show(nawun) == "none");
  BOOST_TEST(show(nawupf) == "none");
}

BOOST_AUTO_TEST_CASE(ffff_is_a_real_value_not_a_sentinel) {
  // 0xFFFF is the largest 0-based count (65536 blocks; for NAWUN "every
  // command is atomic"), never "unsupported".
  auto b = id_ns(0xFFFF, 0xFFFF);
  auto [nawun, nawupf] = fsys::parse_nawun_nawupf(b);
  BOOST_TEST(show(nawun) == "65535");
  BOOST_TEST(show(nawupf) == "65535");
}

BOOST_AUTO_TEST_CASE(mixed_fields) {
  {
    auto b = id_ns(0, 3);
    auto [nawun, nawupf] = fsys::parse_nawun_nawupf(b);
    BOOST_TEST(show(nawun) == "none");
    BOOST_TEST(show(nawupf) == "3");
  }
  {
    auto b = id_ns(0xFFFF, 0);
    auto [nawun, nawupf] = fsys::parse_nawun_nawupf(b);
    BOOST_TEST(show(nawun) == "65535");
    BOOST_TEST(show(nawupf) == "none");
  }
}

BOOST_AUTO_TEST_CASE(fields_undefined_without_nsfeat_bit_1) {
  auto b = id_ns(7, 15, /*nsabp=*/false);
  auto [nawun, nawupf] = fsys::parse_nawun_nawupf(b);
  BOOST_TEST(show(nawun) == "none");
  BOOST_TEST(show(nawupf) == "none");
}

BOOST_AUTO_TEST_CASE(bytes_74_to_77_are_not_the_atomic_fields) {
  // Bytes 74-75 are MSSRL and 76-79 MCL; a parser reading them there would
  // report 7/15 here.
  auto b = id_ns(0, 0);
  put_le16(b, 74, 7);
  put_le16(b, 76, 15);
  auto [nawun, nawupf] = fsys::parse_nawun_nawupf(b);
  BOOST_TEST(show(nawun) == "none");
  BOOST_TEST(show(nawupf) == "none");
}

BOOST_AUTO_TEST_CASE(lba_size_from_the_formatted_lba_entry) {
  identify_buffer b{};
  b[fsys::detail::id_ns_nlbaf] = std::byte{1};  // two formats
  b[fsys::detail::id_ns_lbaf + 0 * 4 + 2] = std::byte{9};   // 512
  b[fsys::detail::id_ns_lbaf + 1 * 4 + 2] = std::byte{12};  // 4096
  b[fsys::detail::id_ns_flbas] = std::byte{0x01};
  BOOST_TEST(show(fsys::detail::identify_ns_lba_size(b)) == "4096");
  b[fsys::detail::id_ns_flbas] = std::byte{0x10};  // metadata bit set, format 0
  BOOST_TEST(show(fsys::detail::identify_ns_lba_size(b)) == "512");
  b[fsys::detail::id_ns_flbas] = std::byte{0x02};  // beyond NLBAF
  BOOST_TEST(show(fsys::detail::identify_ns_lba_size(b)) == "none");
}

BOOST_AUTO_TEST_CASE(controller_awupf_at_byte_528) {
  identify_buffer b{};
  put_le16(b, fsys::detail::id_ctrl_awupf, 31);
  BOOST_TEST(fsys::detail::identify_ctrl_awupf(b) == 31u);
}

BOOST_AUTO_TEST_SUITE_END()

// ---------------------------------------------------------------------------
BOOST_AUTO_TEST_SUITE(fake_sysfs_resolution)

BOOST_AUTO_TEST_CASE(nvme_namespace) {
  fake_machine m;
  auto info = m.resolve(259, 0);
  BOOST_TEST(info.fs_major == 259u);
  BOOST_TEST(info.fs_minor == 0u);
  BOOST_TEST(joined(info.device_stack) == "nvme0n1");
  BOOST_TEST(show(info.device_name) == "nvme0n1");
  BOOST_TEST(show(info.disk_major) == "259");
  BOOST_TEST(show(info.disk_minor) == "0");
  BOOST_TEST(info.is_nvme);
  BOOST_TEST(show(info.nvme_controller) == (m.t.dev() / "nvme0").string());
  BOOST_TEST(show(info.nvme_namespace_device) == (m.t.dev() / "nvme0n1").string());
  BOOST_TEST(show(info.nvme_nsid) == "1");
  BOOST_TEST(show(info.logical_block_size) == "512");
  BOOST_TEST(show(info.physical_block_size) == "4096");
  BOOST_TEST(show(info.dma_alignment) == "3");
  BOOST_TEST(show(info.rotational) == "false");
  BOOST_TEST(show(info.volatile_write_cache) == "true");
  BOOST_TEST(show(info.fua) == "true");
  BOOST_TEST(show(info.sysfs_atomic_write_unit_min) == "512");
  BOOST_TEST(show(info.sysfs_atomic_write_unit_max) == "16384");
  BOOST_TEST(show(info.sysfs_atomic_write_max) == "65536");
  BOOST_TEST(show(info.atomic_write_unit()) == "16384");
  // resolve_block_device never runs statx or passthrough.
  BOOST_TEST(show(info.dio_mem_align) == "none");
  BOOST_TEST(show(info.nawupf) == "none");
}

BOOST_AUTO_TEST_CASE(nvme_partition_resolves_to_its_disk) {
  fake_machine m;
  auto info = m.resolve(259, 3);
  BOOST_TEST(joined(info.device_stack) == "nvme0n1p3,nvme0n1");
  BOOST_TEST(show(info.device_name) == "nvme0n1");
  BOOST_TEST(show(info.disk_minor) == "0");
  BOOST_TEST(info.is_nvme);
  BOOST_TEST(show(info.nvme_controller) == (m.t.dev() / "nvme0").string());
  BOOST_TEST(show(info.nvme_namespace_device) == (m.t.dev() / "nvme0n1").string());
  BOOST_TEST(show(info.nvme_nsid) == "1");
  BOOST_TEST(show(info.logical_block_size) == "512");
  BOOST_TEST(show(info.fua) == "true");
}

BOOST_AUTO_TEST_CASE(multipath_path_device_maps_to_controller_and_head) {
  fake_machine m;
  auto info = m.resolve(259, 31);  // nvme1c1n1, no device link, no nsid file
  BOOST_TEST(show(info.device_name) == "nvme1c1n1");
  BOOST_TEST(info.is_nvme);
  BOOST_TEST(show(info.nvme_controller) == (m.t.dev() / "nvme1").string());
  BOOST_TEST(show(info.nvme_namespace_device) == (m.t.dev() / "nvme1n1").string());
  BOOST_TEST(show(info.nvme_nsid) == "1");
  BOOST_TEST(show(info.logical_block_size) == "none");  // no queue/ in this tree
}

BOOST_AUTO_TEST_CASE(path_device_with_different_subsystem_and_controller) {
  fake_machine m;
  auto info = m.resolve(259, 21);  // nvme2c3n1 under controller nvme3
  BOOST_TEST(show(info.nvme_controller) == (m.t.dev() / "nvme3").string());
  BOOST_TEST(show(info.nvme_namespace_device) == (m.t.dev() / "nvme2n1").string());
}

BOOST_AUTO_TEST_CASE(multipath_head_finds_its_controller_through_paths) {
  fake_machine m;
  auto info = m.resolve(259, 20);  // head nvme2n1: device link is the subsystem
  BOOST_TEST(show(info.device_name) == "nvme2n1");
  BOOST_TEST(info.is_nvme);
  BOOST_TEST(show(info.nvme_controller) == (m.t.dev() / "nvme3").string());
  BOOST_TEST(show(info.nvme_namespace_device) == (m.t.dev() / "nvme2n1").string());
  BOOST_TEST(show(info.logical_block_size) == "4096");
}

BOOST_AUTO_TEST_CASE(virtio_disk_and_partition) {
  fake_machine m;
  for (unsigned minor : {0u, 1u}) {
    BOOST_TEST_CONTEXT("254:" << minor) {
      auto info = m.resolve(254, minor);
      BOOST_TEST(joined(info.device_stack) == (minor == 0 ? "vda" : "vda1,vda"));
      BOOST_TEST(show(info.device_name) == "vda");
      BOOST_TEST(show(info.disk_major) == "254");
      BOOST_TEST(show(info.disk_minor) == "0");
      BOOST_TEST(!info.is_nvme);
      BOOST_TEST(show(info.nvme_controller) == "none");
      BOOST_TEST(show(info.nvme_nsid) == "none");
      BOOST_TEST(show(info.logical_block_size) == "512");
      BOOST_TEST(show(info.physical_block_size) == "4096");
      BOOST_TEST(show(info.dma_alignment) == "511");
      BOOST_TEST(show(info.rotational) == "true");
      BOOST_TEST(show(info.volatile_write_cache) == "true");
      BOOST_TEST(show(info.fua) == "false");
      BOOST_TEST(show(info.sysfs_atomic_write_unit_max) == "0");
      BOOST_TEST(show(info.atomic_write_unit()) == "none");
    }
  }
}

BOOST_AUTO_TEST_CASE(device_mapper_with_one_slave_reaches_the_nvme_disk) {
  fake_machine m;
  auto info = m.resolve(253, 0);
  BOOST_TEST(joined(info.device_stack) == "dm-0,nvme0n1p2,nvme0n1");
  BOOST_TEST(show(info.device_name) == "nvme0n1");
  BOOST_TEST(show(info.disk_major) == "259");
  BOOST_TEST(show(info.disk_minor) == "0");
  BOOST_TEST(info.is_nvme);
  BOOST_TEST(show(info.nvme_controller) == (m.t.dev() / "nvme0").string());
  // Limits are dm-0's (what IO through the filesystem sees), not the disk's.
  BOOST_TEST(show(info.logical_block_size) == "4096");
  BOOST_TEST(show(info.volatile_write_cache) == "false");
  BOOST_TEST(show(info.dma_alignment) == "none");
}

BOOST_AUTO_TEST_CASE(device_mapper_over_two_disks_stops_at_the_mapped_device) {
  fake_machine m;
  auto info = m.resolve(253, 1);
  BOOST_TEST(joined(info.device_stack) == "dm-1");
  BOOST_TEST(show(info.device_name) == "dm-1");
  BOOST_TEST(!info.is_nvme);
  BOOST_TEST(show(info.nvme_controller) == "none");
  BOOST_TEST(show(info.logical_block_size) == "512");
}

BOOST_AUTO_TEST_CASE(missing_and_unparsable_files_leave_fields_empty) {
  fake_machine m;
  for (unsigned minor : {0u, 16u}) {
    BOOST_TEST_CONTEXT("8:" << minor) {
      auto info = m.resolve(8, minor);
      BOOST_TEST(show(info.device_name) == (minor == 0 ? "sdz" : "sdy"));
      BOOST_TEST(!info.is_nvme);
      BOOST_TEST(show(info.logical_block_size) == "none");
      BOOST_TEST(show(info.physical_block_size) == "none");
      BOOST_TEST(show(info.dma_alignment) == "none");
      BOOST_TEST(show(info.rotational) == "none");
      BOOST_TEST(show(info.volatile_write_cache) == "none");
      BOOST_TEST(show(info.fua) == "none");
      BOOST_TEST(show(info.sysfs_atomic_write_unit_max) == "none");
      BOOST_TEST(show(info.atomic_write_unit()) == "none");
    }
  }
}

BOOST_AUTO_TEST_CASE(write_through_cache) {
  fake_machine m;
  fake_sysfs::put(m.vda / "queue" / "write_cache", "write through");
  BOOST_TEST(show(m.resolve(254, 1).volatile_write_cache) == "false");
}

BOOST_AUTO_TEST_CASE(unknown_device_number_has_no_block_device) {
  fake_machine m;
  auto info = m.resolve(0, 42);
  BOOST_TEST(info.fs_minor == 42u);
  BOOST_TEST(info.device_stack.empty());
  BOOST_TEST(show(info.device_name) == "none");
  BOOST_TEST(show(info.disk_major) == "none");
  BOOST_TEST(!info.is_nvme);
  BOOST_TEST(show(info.logical_block_size) == "none");
}

BOOST_AUTO_TEST_CASE(probe_with_fake_roots_uses_the_fake_tree) {
  // A real file's st_dev looked up in fake trees: one that does not know the
  // device, and one where it is an NVMe namespace whose /dev node is bogus.
  temp_dir d;
  fsys::test::write_file(d.file("f"), fsys::test::pattern(100, 1));
  fd_guard fd(::open(d.file("f").c_str(), O_RDONLY | O_CLOEXEC));
  BOOST_REQUIRE(fd.get() >= 0);
  struct stat st {};
  BOOST_REQUIRE(::fstat(fd.get(), &st) == 0);

  std::error_code ec;
  fake_sysfs empty;
  auto none = fsys::probe_drive(fd.get(), empty.roots(), ec);
  BOOST_TEST(!ec);
  BOOST_TEST(none.device_stack.empty());
  BOOST_TEST(!none.is_nvme);

  fake_sysfs t;
  auto ctrl = t.controller("pci0000:00/0000:00:09.0/nvme/nvme9");
  fake_sysfs::put(ctrl / "dev", "240:9");
  auto ns = t.block("pci0000:00/0000:00:09.0/nvme/nvme9/nvme9n1", major(st.st_dev),
                    minor(st.st_dev));
  fake_sysfs::link(ctrl, ns / "device");
  fake_sysfs::put(ns / "nsid", "1");
  fake_sysfs::put(t.dev() / "nvme9", "not a character device");
  auto info = fsys::probe_drive(fd.get(), t.roots(), ec);
  BOOST_TEST(!ec);
  BOOST_TEST(show(info.device_name) == "nvme9n1");
  BOOST_TEST(info.is_nvme);
  BOOST_TEST(show(info.nvme_controller) == (t.dev() / "nvme9").string());
  // The node is a regular file, not the controller: no passthrough happened.
  BOOST_TEST(show(info.nvme_lba_size) == "none");
  BOOST_TEST(show(info.nawupf) == "none");
  BOOST_TEST(show(info.awupf) == "none");
}

BOOST_AUTO_TEST_SUITE_END()

// ---------------------------------------------------------------------------
BOOST_AUTO_TEST_SUITE(derived_values)

BOOST_AUTO_TEST_CASE(atomic_write_unit_preference_order) {
  fsys::drive_info info;
  BOOST_TEST(show(info.atomic_write_unit()) == "none");
  info.nvme_lba_size = 4096;
  info.awupf = 1;
  BOOST_TEST(show(info.atomic_write_unit()) == "8192");
  info.nawupf = 15;
  BOOST_TEST(show(info.atomic_write_unit()) == std::to_string(16 * 4096));
  info.sysfs_atomic_write_unit_max = 0;  // kernel says no: NVMe values still count
  BOOST_TEST(show(info.atomic_write_unit()) == std::to_string(16 * 4096));
  info.sysfs_atomic_write_unit_max = 32768;
  BOOST_TEST(show(info.atomic_write_unit()) == "32768");
  info.statx_atomic_write_unit_max = 0;
  BOOST_TEST(show(info.atomic_write_unit()) == "32768");
  info.statx_atomic_write_unit_max = 4096;
  BOOST_TEST(show(info.atomic_write_unit()) == "4096");
}

BOOST_AUTO_TEST_CASE(atomic_write_unit_needs_the_lba_size) {
  fsys::drive_info info;
  info.nawupf = 7;
  info.logical_block_size = 512;  // the block layer's size is not the NVMe LBA size
  BOOST_TEST(show(info.atomic_write_unit()) == "none");
  info.nvme_lba_size = 512;
  BOOST_TEST(show(info.atomic_write_unit()) == "4096");
  info.nawupf = 0xFFFF;
  info.nvme_lba_size = 1u << 20;  // overflows 32 bits: not reported
  BOOST_TEST(show(info.atomic_write_unit()) == "none");
}

BOOST_AUTO_TEST_CASE(direct_io_alignment_is_the_largest_known_rule) {
  fsys::drive_info info;
  BOOST_TEST(fsys::direct_io_alignment(info) == 4096u);
  info.logical_block_size = 512;
  BOOST_TEST(fsys::direct_io_alignment(info) == 512u);
  info.dio_mem_align = 4;
  info.dio_offset_align = 512;
  BOOST_TEST(fsys::direct_io_alignment(info) == 512u);
  info.dma_alignment = 1023;
  BOOST_TEST(fsys::direct_io_alignment(info) == 1024u);
  info.dio_offset_align = 4096;
  BOOST_TEST(fsys::direct_io_alignment(info) == 4096u);
  fsys::drive_info no_dio;
  no_dio.dio_mem_align = 0;  // statx: O_DIRECT unsupported
  no_dio.dio_offset_align = 0;
  BOOST_TEST(fsys::direct_io_alignment(no_dio) == 4096u);
  fsys::drive_info absurd;
  absurd.dma_alignment = 0xFFFFFFFEu;  // a broken sysfs value must not overflow
  BOOST_TEST(fsys::direct_io_alignment(absurd) == (std::uint32_t{1} << 31));
}

BOOST_AUTO_TEST_CASE(passthrough_switch_reads_the_environment) {
  {
    scoped_env e("FSYS_DISABLE_NVME_PASSTHROUGH", nullptr);
    BOOST_TEST(!fsys::nvme_passthrough_disabled_by_environment());
  }
  {
    scoped_env e("FSYS_DISABLE_NVME_PASSTHROUGH", "");
    BOOST_TEST(!fsys::nvme_passthrough_disabled_by_environment());
  }
  {
    scoped_env e("FSYS_DISABLE_NVME_PASSTHROUGH", "0");
    BOOST_TEST(!fsys::nvme_passthrough_disabled_by_environment());
  }
  {
    scoped_env e("FSYS_DISABLE_NVME_PASSTHROUGH", "1");
    BOOST_TEST(fsys::nvme_passthrough_disabled_by_environment());
  }
  {
    scoped_env e("FSYS_DISABLE_NVME_PASSTHROUGH", "yes");
    BOOST_TEST(fsys::nvme_passthrough_disabled_by_environment());
  }
}

BOOST_AUTO_TEST_SUITE_END()

// ---------------------------------------------------------------------------
BOOST_AUTO_TEST_SUITE(aligned_buffers)

BOOST_AUTO_TEST_CASE(explicit_size_and_alignment) {
  for (std::size_t align : {std::size_t{1}, std::size_t{8}, std::size_t{512}, std::size_t{4096},
                            std::size_t{1} << 16}) {
    BOOST_TEST_CONTEXT("alignment " << align) {
      fsys::aligned_buffer b(1000, align);
      BOOST_TEST(b.size() == 1000u);
      BOOST_TEST(b.alignment() == align);
      BOOST_TEST(reinterpret_cast<std::uintptr_t>(b.data()) % align == 0u);
      bool zero = true;
      for (auto x : b.as_span()) zero = zero && x == std::byte{0};
      BOOST_TEST(zero);
      BOOST_TEST(b.as_span().data() == b.data());
      BOOST_TEST(b.as_span().size() == b.size());
    }
  }
}

BOOST_AUTO_TEST_CASE(bad_alignment_throws) {
  BOOST_CHECK_THROW(fsys::aligned_buffer(64, 0), std::invalid_argument);
  BOOST_CHECK_THROW(fsys::aligned_buffer(64, 3), std::invalid_argument);
  BOOST_CHECK_THROW(fsys::aligned_buffer(64, 4097), std::invalid_argument);
}

BOOST_AUTO_TEST_CASE(empty_buffers) {
  fsys::aligned_buffer a;
  BOOST_TEST(a.empty());
  BOOST_TEST(a.data() == nullptr);
  fsys::aligned_buffer b(0, 4096);
  BOOST_TEST(b.empty());
  BOOST_TEST(b.alignment() == 4096u);
}

BOOST_AUTO_TEST_CASE(moves_transfer_ownership) {
  fsys::aligned_buffer a(4096, 4096);
  a.data()[10] = std::byte{42};
  std::byte* p = a.data();
  fsys::aligned_buffer b(std::move(a));
  BOOST_TEST(b.data() == p);
  BOOST_TEST(b.size() == 4096u);
  BOOST_TEST(a.data() == nullptr);  // NOLINT(bugprone-use-after-move): documented state
  BOOST_TEST(a.size() == 0u);
  fsys::aligned_buffer c(512, 512);
  c = std::move(b);
  BOOST_TEST(c.data() == p);
  BOOST_TEST(c.alignment() == 4096u);
  BOOST_TEST(std::to_integer<int>(c.data()[10]) == 42);
  auto& alias = c;
  c = std::move(alias);  // self-move keeps the buffer
  BOOST_TEST(c.data() == p);
}

BOOST_AUTO_TEST_CASE(sized_from_drive_info) {
  fsys::drive_info info;
  info.logical_block_size = 512;
  info.dio_offset_align = 512;
  info.dio_mem_align = 4;
  info.dma_alignment = 511;
  fsys::aligned_buffer b(info, 1000);
  BOOST_TEST(b.alignment() == 512u);
  BOOST_TEST(b.size() == 1024u);
  BOOST_TEST(reinterpret_cast<std::uintptr_t>(b.data()) % 512 == 0u);
  fsys::aligned_buffer exact(info, 1536);
  BOOST_TEST(exact.size() == 1536u);

  fsys::drive_info unknown;
  fsys::aligned_buffer u(unknown, 1);
  BOOST_TEST(u.alignment() == 4096u);
  BOOST_TEST(u.size() == 4096u);
}

BOOST_AUTO_TEST_SUITE_END()

// ---------------------------------------------------------------------------
BOOST_AUTO_TEST_SUITE(this_machine)

BOOST_AUTO_TEST_CASE(probe_a_real_file) {
  temp_dir d;
  const auto file = d.file("probe");
  fsys::test::write_file(file, fsys::test::pattern(8192, 2));
  struct stat st {};
  BOOST_REQUIRE(::stat(file.c_str(), &st) == 0);

  const auto info = fsys::probe_drive(file);
  BOOST_TEST(info.fs_major == major(st.st_dev));
  BOOST_TEST(info.fs_minor == minor(st.st_dev));
  if (!machine_has_nvme()) BOOST_TEST(!info.is_nvme);

  // Independent resolution of the whole device the filesystem sits on.
  const fs::path link = "/sys/dev/block/" + std::to_string(major(st.st_dev)) + ":" +
                        std::to_string(minor(st.st_dev));
  std::error_code ec;
  fs::path dir = fs::canonical(link, ec);
  if (ec) {
    BOOST_TEST_MESSAGE("temp dir " << d.path() << " is not on a block device");
    BOOST_TEST(info.device_stack.empty());
    BOOST_TEST(show(info.logical_block_size) == "none");
  } else {
    BOOST_REQUIRE(!info.device_stack.empty());
    BOOST_TEST(info.device_stack.front() == dir.filename().string());
    if (fs::exists(dir / "partition")) dir = dir.parent_path();
    auto read = [&](const char* attr) {
      std::ifstream in(dir / "queue" / attr);
      std::string s;
      in >> s;
      return s.empty() ? std::string("none") : s;
    };
    BOOST_TEST_MESSAGE("temp dir is on " << joined(info.device_stack) << ", logical block "
                                         << show(info.logical_block_size));
    BOOST_TEST(show(info.logical_block_size) == read("logical_block_size"));
    BOOST_TEST(show(info.physical_block_size) == read("physical_block_size"));
    BOOST_TEST(show(info.dma_alignment) == read("dma_alignment"));
  }

  // statx(STATX_DIOALIGN) through glibc must agree with the raw call.
  struct statx sx {};
  BOOST_REQUIRE(::statx(AT_FDCWD, file.c_str(), 0, STATX_DIOALIGN, &sx) == 0);
  if (sx.stx_mask & STATX_DIOALIGN) {
    BOOST_TEST(show(info.dio_mem_align) == std::to_string(sx.stx_dio_mem_align));
    BOOST_TEST(show(info.dio_offset_align) == std::to_string(sx.stx_dio_offset_align));
  } else {
    BOOST_TEST(show(info.dio_mem_align) == "none");
  }
  if (info.statx_atomic_write_unit_max.value_or(0) == 0 &&
      info.sysfs_atomic_write_unit_max.value_or(0) == 0 && !info.nawupf && !info.awupf)
    BOOST_TEST_MESSAGE("skip: no atomic-write support reported for " << file);
}

BOOST_AUTO_TEST_CASE(probe_fd_and_path_agree) {
  temp_dir d;
  fsys::test::write_file(d.file("f"), fsys::test::pattern(10, 3));
  fd_guard fd(::open(d.file("f").c_str(), O_RDONLY | O_CLOEXEC));
  BOOST_REQUIRE(fd.get() >= 0);
  auto a = fsys::probe_drive(fd.get());
  auto b = fsys::probe_drive(d.file("f"));
  BOOST_TEST(joined(a.device_stack) == joined(b.device_stack));
  BOOST_TEST(show(a.logical_block_size) == show(b.logical_block_size));
  BOOST_TEST(show(a.dio_offset_align) == show(b.dio_offset_align));
}

BOOST_AUTO_TEST_CASE(probe_a_tmpfs_file) {
  struct statfs sfs {};
  if (::statfs("/dev/shm", &sfs) != 0 || sfs.f_type != TMPFS_MAGIC) {
    BOOST_TEST_MESSAGE("skip: /dev/shm is not tmpfs here");
    return;
  }
  std::string name = "/dev/shm/fsys-drive-XXXXXX";
  fd_guard fd(::mkstemp(name.data()));
  BOOST_REQUIRE(fd.get() >= 0);
  ::unlink(name.c_str());
  auto info = fsys::probe_drive(fd.get());
  BOOST_TEST(info.device_stack.empty());
  BOOST_TEST(show(info.device_name) == "none");
  BOOST_TEST(!info.is_nvme);
  BOOST_TEST(show(info.logical_block_size) == "none");
  BOOST_TEST(show(info.volatile_write_cache) == "none");
  BOOST_TEST(show(info.nvme_controller) == "none");
}

BOOST_AUTO_TEST_CASE(probe_errors) {
  std::error_code ec;
  auto info = fsys::probe_drive(-1, ec);
  BOOST_TEST(ec == std::error_code(EBADF, std::system_category()));
  BOOST_TEST(info.device_stack.empty());
  BOOST_CHECK_THROW(fsys::probe_drive(-1), std::system_error);
  fsys::probe_drive(fs::path("/nonexistent/fsys/path"), ec);
  BOOST_TEST(ec == std::error_code(ENOENT, std::system_category()));
  BOOST_CHECK_THROW(fsys::probe_drive(fs::path("/nonexistent/fsys/path")), std::system_error);
}

BOOST_AUTO_TEST_CASE(o_direct_with_aligned_buffers) {
  temp_dir d;
  const auto file = d.file("direct");
  fd_guard fd(::open(file.c_str(), O_RDWR | O_CREAT | O_DIRECT | O_CLOEXEC, 0644));
  if (fd.get() < 0 && errno == EINVAL) {
    BOOST_TEST_MESSAGE("skip: O_DIRECT refused on " << d.path());
    return;
  }
  BOOST_REQUIRE(fd.get() >= 0);
  const auto info = fsys::probe_drive(fd.get());
  if (info.dio_offset_align && *info.dio_offset_align == 0) {
    BOOST_TEST_MESSAGE("skip: statx says O_DIRECT is unsupported on " << file);
    return;
  }

  fsys::aligned_buffer out(info, 3 * 4096 + 1);
  BOOST_TEST(out.size() % fsys::direct_io_alignment(info) == 0u);
  const auto data = fsys::test::pattern(out.size(), 4);
  std::memcpy(out.data(), data.data(), data.size());
  const off_t offset = static_cast<off_t>(out.size());
  BOOST_REQUIRE(::pwrite(fd.get(), out.data(), out.size(), offset) ==
                static_cast<ssize_t>(out.size()));

  fsys::aligned_buffer in(info, out.size());
  BOOST_REQUIRE(::pread(fd.get(), in.data(), in.size(), offset) == static_cast<ssize_t>(in.size()));
  BOOST_TEST(std::memcmp(in.data(), out.data(), out.size()) == 0);

  // The file seen without O_DIRECT: a hole, then the data.
  const auto whole = fsys::test::read_file(file);
  BOOST_REQUIRE(whole.size() == 2 * out.size());
  BOOST_TEST(std::memcmp(whole.data() + out.size(), data.data(), data.size()) == 0);

  // The alignment matters: the kernel refuses a buffer one byte off.
  if (info.dio_mem_align.value_or(0) > 1) {
    fsys::aligned_buffer big(info, out.size() + fsys::direct_io_alignment(info));
    errno = 0;
    BOOST_TEST(::pwrite(fd.get(), big.data() + 1, out.size(), 0) == -1);
    BOOST_TEST(errno == EINVAL);
  }
}

BOOST_AUTO_TEST_CASE(flush_buffered_file_uses_fdatasync) {
  temp_dir d;
  fd_guard fd(::open(d.file("f").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
  BOOST_REQUIRE(fd.get() >= 0);
  BOOST_REQUIRE(::write(fd.get(), "abc", 3) == 3);
  std::error_code ec;
  // A buffered descriptor may hold dirty page cache: never a device-only flush.
  BOOST_TEST((fsys::flush_device(fd.get(), ec) == fsys::flush_method::fdatasync));
  BOOST_TEST(!ec);
  BOOST_TEST((fsys::flush_device(fd.get()) == fsys::flush_method::fdatasync));
}

BOOST_AUTO_TEST_CASE(flush_direct_file) {
  temp_dir d;
  fd_guard fd(::open(d.file("f").c_str(), O_RDWR | O_CREAT | O_DIRECT | O_CLOEXEC, 0644));
  if (fd.get() < 0) {
    BOOST_TEST_MESSAGE("skip: O_DIRECT refused on " << d.path());
    return;
  }
  const auto info = fsys::probe_drive(fd.get());
  std::error_code ec;
  const auto method = fsys::flush_device(fd.get(), ec);
  BOOST_TEST(!ec);
  if (!info.is_nvme) {
    BOOST_TEST((method == fsys::flush_method::fdatasync));
  } else if (::geteuid() == 0 && !fsys::nvme_passthrough_disabled_by_environment()) {
    BOOST_TEST((method == fsys::flush_method::nvme_flush));
  } else {
    BOOST_TEST_MESSAGE("skip: NVMe passthrough needs root here");
  }
  {
    scoped_env e("FSYS_DISABLE_NVME_PASSTHROUGH", "1");
    BOOST_TEST((fsys::flush_device(fd.get(), ec) == fsys::flush_method::fdatasync));
    BOOST_TEST(!ec);
  }
}

BOOST_AUTO_TEST_CASE(flush_errors) {
  std::error_code ec;
  BOOST_TEST((fsys::flush_device(-1, ec) == fsys::flush_method::fdatasync));
  BOOST_TEST(ec == std::error_code(EBADF, std::system_category()));
  BOOST_CHECK_THROW(fsys::flush_device(-1), std::system_error);
}

BOOST_AUTO_TEST_CASE(nvme_passthrough_identify) {
  if (!machine_has_nvme()) {
    BOOST_TEST_MESSAGE("skip: no NVMe device");
    return;
  }
  temp_dir d;
  fsys::test::write_file(d.file("f"), fsys::test::pattern(10, 5));
  const auto info = fsys::probe_drive(d.file("f"));
  if (!info.is_nvme || ::geteuid() != 0) {
    BOOST_TEST_MESSAGE("skip: temp dir is not on NVMe, or not root");
    return;
  }
  BOOST_TEST(show(info.nvme_nsid) != "none");
  BOOST_TEST(show(info.nvme_lba_size) != "none");
  BOOST_TEST(show(info.awupf) != "none");
}

BOOST_AUTO_TEST_SUITE_END()
