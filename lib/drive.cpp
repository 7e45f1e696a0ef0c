// Hardware awareness: sysfs resolution, statx limits, NVMe passthrough
// (Identify, FLUSH) and aligned buffers.
#include <fsys/aligned_buffer.hpp>
#include <fsys/detail/nvme.hpp>
#include <fsys/drive.hpp>
#include <fsys/filesystem_error.hpp>
#include "kernel_statx.hpp"

#include <fcntl.h>
#include <linux/nvme_ioctl.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <charconv>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <new>
#include <stdexcept>
#include <string_view>
#include <utility>

namespace fsys {
namespace {

namespace fs = std::filesystem;

// statx: bookworm's headers know STATX_DIOALIGN but not STATX_WRITE_ATOMIC
// (Linux 6.11): the kernel's struct is spelled out in lib/kernel_statx.hpp,
// and statx is called through syscall(2) with it.
using detail::kernel_statx;
using detail::statx_dioalign;
using detail::statx_write_atomic;

// Closes the descriptor it owns.
class unique_fd {
 public:
  explicit unique_fd(int fd = -1) noexcept : fd_(fd) {}
  unique_fd(unique_fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  unique_fd& operator=(unique_fd&&) = delete;
  ~unique_fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const noexcept { return fd_; }
  explicit operator bool() const noexcept { return fd_ >= 0; }

 private:
  int fd_;
};

std::error_code last_error() noexcept { return {errno, std::system_category()}; }

// ---------------------------------------------------------------------------
// sysfs reading. Attribute files are one short line; anything missing or
// unparsable leaves the field empty.
// ---------------------------------------------------------------------------
std::optional<std::string> read_attr(const fs::path& p) {
  std::ifstream in(p);
  if (!in) return std::nullopt;
  std::string line;
  if (!std::getline(in, line) && line.empty()) return std::nullopt;
  while (!line.empty() && (line.back() == '\n' || line.back() == ' ' || line.back() == '\r'))
    line.pop_back();
  return line;
}

std::optional<std::uint32_t> parse_u32(std::string_view s) {
  std::uint32_t v = 0;
  auto [end, err] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (err != std::errc{} || end != s.data() + s.size() || s.empty()) return std::nullopt;
  return v;
}

std::optional<std::uint32_t> read_u32(const fs::path& p) {
  auto s = read_attr(p);
  if (!s) return std::nullopt;
  return parse_u32(*s);
}

std::optional<bool> read_bool01(const fs::path& p) {
  auto v = read_u32(p);
  if (!v || *v > 1) return std::nullopt;
  return *v == 1;
}

// sysfs `dev` files hold "MAJOR:MINOR".
std::optional<std::pair<std::uint32_t, std::uint32_t>> read_dev(const fs::path& p) {
  auto s = read_attr(p);
  if (!s) return std::nullopt;
  auto colon = s->find(':');
  if (colon == std::string::npos) return std::nullopt;
  auto maj = parse_u32(std::string_view(*s).substr(0, colon));
  auto min = parse_u32(std::string_view(*s).substr(colon + 1));
  if (!maj || !min) return std::nullopt;
  return std::pair{*maj, *min};
}

std::vector<fs::path> list_dir(const fs::path& dir) {
  std::vector<fs::path> out;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
    out.push_back(it->path());
  std::sort(out.begin(), out.end());
  return out;
}

// Reads decimal digits at `pos`; advances past them.
std::optional<std::uint32_t> take_number(std::string_view s, std::size_t& pos) {
  std::size_t start = pos;
  while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') ++pos;
  if (pos == start) return std::nullopt;
  return parse_u32(s.substr(start, pos - start));
}

// The kernel names NVMe namespace disks "nvme<A>n<N>" (A: controller, or the
// subsystem for a multipath head) and multipath path devices
// "nvme<S>c<C>n<N>" (S: subsystem, C: controller, N: head instance).
struct nvme_disk_name {
  std::uint32_t a = 0;
  std::optional<std::uint32_t> controller;  // only in the path-device form
  std::uint32_t n = 0;
};

std::optional<nvme_disk_name> parse_nvme_disk_name(std::string_view s) {
  if (!s.starts_with("nvme")) return std::nullopt;
  std::size_t pos = 4;
  nvme_disk_name out;
  auto a = take_number(s, pos);
  if (!a) return std::nullopt;
  out.a = *a;
  if (pos < s.size() && s[pos] == 'c') {
    ++pos;
    out.controller = take_number(s, pos);
    if (!out.controller) return std::nullopt;
  }
  if (pos >= s.size() || s[pos] != 'n') return std::nullopt;
  ++pos;
  auto n = take_number(s, pos);
  if (!n || pos != s.size()) return std::nullopt;
  out.n = *n;
  return out;
}

// "nvme<digits>" exactly: a controller name.
bool is_controller_name(std::string_view s) {
  if (!s.starts_with("nvme") || s.size() == 4) return false;
  return std::all_of(s.begin() + 4, s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

void fill_queue_limits(drive_info& info, const fs::path& q) {
  info.logical_block_size = read_u32(q / "logical_block_size");
  info.physical_block_size = read_u32(q / "physical_block_size");
  info.dma_alignment = read_u32(q / "dma_alignment");
  info.rotational = read_bool01(q / "rotational");
  info.fua = read_bool01(q / "fua");
  if (auto wc = read_attr(q / "write_cache")) {
    if (*wc == "write back") info.volatile_write_cache = true;
    else if (*wc == "write through") info.volatile_write_cache = false;
  }
  info.sysfs_atomic_write_unit_min = read_u32(q / "atomic_write_unit_min_bytes");
  info.sysfs_atomic_write_unit_max = read_u32(q / "atomic_write_unit_max_bytes");
  info.sysfs_atomic_write_max = read_u32(q / "atomic_write_max_bytes");
}

void fill_nvme_identity(drive_info& info, const fs::path& disk_dir, const probe_roots& roots) {
  auto name = parse_nvme_disk_name(info.device_name.value_or(""));
  if (!name) return;
  info.is_nvme = true;

  // The controller: the kernel's `device` link of a namespace disk, else the
  // path-device name, else a multipath head's first path, else the name.
  std::optional<std::string> ctrl;
  std::error_code ec;
  if (auto parent = fs::canonical(disk_dir / "device", ec); !ec) {
    if (is_controller_name(parent.filename().string())) ctrl = parent.filename().string();
  }
  if (!ctrl && name->controller) ctrl = "nvme" + std::to_string(*name->controller);
  if (!ctrl) {
    for (const auto& p : list_dir(disk_dir / "multipath")) {
      auto path_name = parse_nvme_disk_name(p.filename().string());
      if (path_name && path_name->controller) {
        ctrl = "nvme" + std::to_string(*path_name->controller);
        break;
      }
    }
  }
  if (!ctrl) ctrl = "nvme" + std::to_string(name->a);
  info.nvme_controller = roots.dev / *ctrl;

  // I/O commands go to the namespace's block device: the head for a path device.
  info.nvme_namespace_device =
      roots.dev / ("nvme" + std::to_string(name->a) + "n" + std::to_string(name->n));

  info.nvme_nsid = read_u32(disk_dir / "nsid");
  if (!info.nvme_nsid) info.nvme_nsid = name->n;
}

// Opens a device node and checks it is the device sysfs names (type and
// device number), so a stale or foreign node under /dev is never used.
unique_fd open_verified(const fs::path& node, mode_t type,
                        const std::optional<std::pair<std::uint32_t, std::uint32_t>>& expected) {
  if (!expected) return unique_fd{};
  unique_fd fd(::open(node.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
  if (!fd) return fd;
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0 || (st.st_mode & S_IFMT) != type ||
      major(st.st_rdev) != expected->first || minor(st.st_rdev) != expected->second)
    return unique_fd{};
  return fd;
}

constexpr std::uint8_t nvme_admin_identify = 0x06;
constexpr std::uint32_t cns_namespace = 0x00;
constexpr std::uint32_t cns_controller = 0x01;
constexpr std::uint8_t nvme_cmd_flush = 0x00;

// Returns 0 on success, an NVMe status (> 0) or -1 with errno set.
int nvme_identify(int ctrl_fd, std::uint32_t cns, std::uint32_t nsid, aligned_buffer& buf) {
  nvme_admin_cmd cmd{};
  cmd.opcode = nvme_admin_identify;
  cmd.nsid = nsid;
  cmd.addr = reinterpret_cast<std::uintptr_t>(buf.data());
  cmd.data_len = static_cast<std::uint32_t>(buf.size());
  cmd.cdw10 = cns;
  // Sound: `cmd` and `buf` outlive this synchronous ioctl; the kernel copies
  // `cmd` in and out and writes at most data_len (= buf.size() = 4096, the
  // size of every Identify structure) bytes to buf.data(). No metadata buffer.
  return ::ioctl(ctrl_fd, NVME_IOCTL_ADMIN_CMD, &cmd);
}

void identify_nvme(drive_info& info, const probe_roots& roots) {
  if (!info.nvme_controller || !info.nvme_nsid) return;
  const auto ctrl_name = info.nvme_controller->filename();
  unique_fd ctrl = open_verified(*info.nvme_controller, S_IFCHR,
                                 read_dev(roots.sysfs / "class" / "nvme" / ctrl_name / "dev"));
  if (!ctrl) return;

  aligned_buffer buf(detail::nvme_identify_size, detail::nvme_identify_size);
  std::span<const std::byte, detail::nvme_identify_size> id(buf.data(), buf.size());
  if (nvme_identify(ctrl.get(), cns_namespace, *info.nvme_nsid, buf) == 0) {
    auto [nawun, nawupf] = parse_nawun_nawupf(id);
    info.nawun = nawun;
    info.nawupf = nawupf;
    info.nvme_lba_size = detail::identify_ns_lba_size(id);
  }
  std::memset(buf.data(), 0, buf.size());
  if (nvme_identify(ctrl.get(), cns_controller, 0, buf) == 0)
    info.awupf = detail::identify_ctrl_awupf(id);
}

void fill_statx(int fd, drive_info& info) {
  kernel_statx stx{};
  // Sound: "" with AT_EMPTY_PATH names `fd` itself; the kernel writes at most
  // sizeof(struct statx) = 256 bytes, which is sizeof(stx), a live local.
  if (::syscall(SYS_statx, fd, "", AT_EMPTY_PATH | AT_STATX_SYNC_AS_STAT,
                statx_dioalign | statx_write_atomic, &stx) != 0)
    return;  // old kernel or filesystem: leave the fields empty
  if (stx.stx_mask & statx_dioalign) {
    info.dio_mem_align = stx.stx_dio_mem_align;
    info.dio_offset_align = stx.stx_dio_offset_align;
  }
  if (stx.stx_mask & statx_write_atomic) {
    info.statx_atomic_write_unit_min = stx.stx_atomic_write_unit_min;
    info.statx_atomic_write_unit_max = stx.stx_atomic_write_unit_max;
  }
}

std::optional<std::uint32_t> blocks_to_bytes(std::uint32_t zero_based, std::uint32_t block) {
  const std::uint64_t bytes = (std::uint64_t{zero_based} + 1) * block;
  if (bytes > UINT32_MAX) return std::nullopt;
  return static_cast<std::uint32_t>(bytes);
}

// Sends an NVMe FLUSH when that alone makes fd's writes durable (see
// flush_device's contract). False means "use fdatasync".
bool try_nvme_flush(int fd) {
  if (nvme_passthrough_disabled_by_environment()) return false;
  const int fl = ::fcntl(fd, F_GETFL);
  if (fl < 0 || !(fl & O_DIRECT)) return false;  // dirty page cache needs fdatasync
  struct stat st {};
  if (::fstat(fd, &st) != 0) return false;
  if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) return false;
  const dev_t d = S_ISBLK(st.st_mode) ? st.st_rdev : st.st_dev;

  const probe_roots roots;
  const drive_info info = resolve_block_device(major(d), minor(d), roots);
  if (!info.is_nvme || !info.nvme_namespace_device || !info.nvme_nsid) return false;
  const auto ns_name = info.nvme_namespace_device->filename();
  unique_fd ns = open_verified(*info.nvme_namespace_device, S_IFBLK,
                               read_dev(roots.sysfs / "class" / "block" / ns_name / "dev"));
  if (!ns) return false;

  nvme_passthru_cmd cmd{};
  cmd.opcode = nvme_cmd_flush;
  cmd.nsid = *info.nvme_nsid;
  // Sound: FLUSH transfers no data (addr 0, data_len 0); `cmd` is a live
  // local the kernel copies in and out during this synchronous call. It is
  // sent to the namespace block device because NVME_IOCTL_IO_CMD on the
  // controller character device is deprecated and refused (EINVAL) when the
  // controller has more than one namespace.
  return ::ioctl(ns.get(), NVME_IOCTL_IO_CMD, &cmd) == 0;
}

}  // namespace

// ---------------------------------------------------------------------------
// drive_info
// ---------------------------------------------------------------------------
std::optional<std::uint32_t> drive_info::atomic_write_unit() const {
  if (statx_atomic_write_unit_max.value_or(0) != 0) return statx_atomic_write_unit_max;
  if (sysfs_atomic_write_unit_max.value_or(0) != 0) return sysfs_atomic_write_unit_max;
  if (nvme_lba_size) {
    if (nawupf) return blocks_to_bytes(*nawupf, *nvme_lba_size);
    if (awupf) return blocks_to_bytes(*awupf, *nvme_lba_size);
  }
  return std::nullopt;
}

drive_info resolve_block_device(std::uint32_t maj, std::uint32_t min, const probe_roots& roots) {
  drive_info info;
  info.fs_major = maj;
  info.fs_minor = min;

  std::error_code ec;
  fs::path dir = fs::canonical(
      roots.sysfs / "dev" / "block" / (std::to_string(maj) + ":" + std::to_string(min)), ec);
  if (ec) return info;  // not a block device (tmpfs, overlayfs, ...)

  std::optional<fs::path> queue;
  // Bounded: a stack deeper than this would be a sysfs loop, not a real setup.
  for (int depth = 0; depth < 16; ++depth) {
    info.device_stack.push_back(dir.filename().string());
    if (fs::exists(dir / "partition", ec)) {  // a partition's sysfs parent is its disk
      dir = dir.parent_path();
      info.device_stack.push_back(dir.filename().string());
    }
    // Limits come from the top whole device only; the kernel stacks them there.
    if (depth == 0 && fs::is_directory(dir / "queue", ec)) queue = dir / "queue";
    const auto slaves = list_dir(dir / "slaves");
    if (slaves.size() != 1) break;  // a plain disk, or spread over several disks
    auto next = fs::canonical(slaves.front(), ec);
    if (ec) break;
    dir = std::move(next);
  }

  info.device_name = dir.filename().string();
  if (auto d = read_dev(dir / "dev")) {
    info.disk_major = d->first;
    info.disk_minor = d->second;
  }
  if (queue) fill_queue_limits(info, *queue);
  fill_nvme_identity(info, dir, roots);
  return info;
}

drive_info probe_drive(int fd, const probe_roots& roots, std::error_code& ec) {
  ec.clear();
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ec = last_error();
    return {};
  }
  const dev_t d = S_ISBLK(st.st_mode) ? st.st_rdev : st.st_dev;
  drive_info info = resolve_block_device(major(d), minor(d), roots);
  fill_statx(fd, info);
  if (info.is_nvme && !nvme_passthrough_disabled_by_environment()) identify_nvme(info, roots);
  return info;
}

drive_info probe_drive(int fd, std::error_code& ec) { return probe_drive(fd, probe_roots{}, ec); }

drive_info probe_drive(int fd) {
  std::error_code ec;
  auto info = probe_drive(fd, ec);
  if (ec) throw std::system_error(ec, "fsys::probe_drive");
  return info;
}

drive_info probe_drive(const std::filesystem::path& path, std::error_code& ec) {
  unique_fd fd(::open(path.c_str(), O_PATH | O_CLOEXEC));
  if (!fd) {
    ec = last_error();
    return {};
  }
  return probe_drive(fd.get(), ec);
}

drive_info probe_drive(const std::filesystem::path& path) {
  std::error_code ec;
  auto info = probe_drive(path, ec);
  if (ec) throw filesystem_error("fsys::probe_drive", path, ec);
  return info;
}

std::pair<std::optional<std::uint32_t>, std::optional<std::uint32_t>> parse_nawun_nawupf(
    std::span<const std::byte, 4096> id) {
  // NSFEAT bit 1 (NSABP): only then are the namespace's own fields defined.
  if (!(std::to_integer<unsigned>(id[detail::id_ns_nsfeat]) & 0x02u)) return {};
  auto field = [&](std::size_t at) -> std::optional<std::uint32_t> {
    const std::uint16_t v = detail::load_le16(id, at);
    if (v == 0) return std::nullopt;  // 0h: "same as the controller's value"
    return v;
  };
  return {field(detail::id_ns_nawun), field(detail::id_ns_nawupf)};
}

bool nvme_passthrough_disabled_by_environment() noexcept {
  const char* v = std::getenv("FSYS_DISABLE_NVME_PASSTHROUGH");
  return v != nullptr && *v != '\0' && std::strcmp(v, "0") != 0;
}

flush_method flush_device(int fd, std::error_code& ec) {
  ec.clear();
  if (try_nvme_flush(fd)) return flush_method::nvme_flush;
  if (::fdatasync(fd) != 0) ec = last_error();
  return flush_method::fdatasync;
}

flush_method flush_device(int fd) {
  std::error_code ec;
  auto m = flush_device(fd, ec);
  if (ec) throw std::system_error(ec, "fsys::flush_device");
  return m;
}

std::uint32_t direct_io_alignment(const drive_info& info) noexcept {
  std::uint32_t a = 0;
  a = std::max(a, info.dio_mem_align.value_or(0));
  a = std::max(a, info.dio_offset_align.value_or(0));
  a = std::max(a, info.logical_block_size.value_or(0));
  if (info.dma_alignment && *info.dma_alignment < UINT32_MAX) a = std::max(a, *info.dma_alignment + 1);
  if (a == 0) return 4096;
  if (a > (std::uint32_t{1} << 31)) return std::uint32_t{1} << 31;  // bit_ceil would overflow
  return std::bit_ceil(a);  // sysfs values are powers of two; keep the result one
}

// ---------------------------------------------------------------------------
// aligned_buffer
// ---------------------------------------------------------------------------
aligned_buffer::aligned_buffer(std::size_t size, std::size_t alignment) : alignment_(alignment) {
  if (!std::has_single_bit(alignment))
    throw std::invalid_argument("fsys::aligned_buffer: alignment must be a power of two");
  if (size == 0) return;
  data_ = static_cast<std::byte*>(::operator new(size, std::align_val_t{alignment}));
  std::memset(data_, 0, size);
  size_ = size;
}

aligned_buffer::aligned_buffer(const drive_info& info, std::size_t min_size)
    : aligned_buffer([&] {
        const std::size_t align = direct_io_alignment(info);
        std::size_t unit = std::max(info.dio_offset_align.value_or(0),
                                    info.logical_block_size.value_or(0));
        if (unit == 0 || !std::has_single_bit(unit)) unit = align;
        if (min_size > SIZE_MAX - unit) throw std::bad_alloc();
        return (min_size + unit - 1) / unit * unit;
      }(),
                     direct_io_alignment(info)) {}

aligned_buffer::aligned_buffer(aligned_buffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      alignment_(std::exchange(other.alignment_, 1)) {}

aligned_buffer& aligned_buffer::operator=(aligned_buffer&& other) noexcept {
  if (this != &other) {
    release();
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    alignment_ = std::exchange(other.alignment_, 1);
  }
  return *this;
}

aligned_buffer::~aligned_buffer() { release(); }

void aligned_buffer::release() noexcept {
  if (data_) ::operator delete(data_, std::align_val_t{alignment_});
  data_ = nullptr;
  size_ = 0;
}

}  // namespace fsys
