// fsys — what the hardware under a file can do: block sizes, DMA and O_DIRECT
// alignment, write cache, atomic-write limits, and whether it is NVMe.
//
// Everything here is read from the kernel (fstat, statx, sysfs) or, for NVMe
// namespaces when passthrough is allowed, from the device's Identify data.
// A field the machine does not report stays empty: nothing is guessed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

namespace fsys {

/// Where the probe looks for sysfs and device nodes. Tests point these at a
/// fake tree; real programs keep the defaults.
struct probe_roots {
  std::filesystem::path sysfs = "/sys";  ///< mount point of sysfs
  std::filesystem::path dev = "/dev";    ///< directory holding device nodes
};

/// What the kernel (and, for NVMe, the device) reports about the storage
/// under one file. Optional fields are empty when the machine does not say.
struct drive_info {
  /// Device number of the filesystem holding the file (`st_dev`), or of the
  /// device itself when the probed descriptor is a block device (`st_rdev`).
  std::uint32_t fs_major = 0;
  std::uint32_t fs_minor = 0;  ///< see `fs_major`

  /// The block devices from the one the filesystem sits on down to the whole
  /// disk, e.g. {"dm-0", "nvme0n1p2", "nvme0n1"} or {"vda"}. Partitions are
  /// followed to their disk; device-mapper and md devices are followed
  /// through `slaves/` only while they have exactly one slave (a device
  /// spread over several disks has no single disk). Empty when `st_dev` is
  /// not a block device (tmpfs, overlayfs, procfs, ...).
  std::vector<std::string> device_stack;
  /// The last entry of `device_stack` (the whole disk), e.g. "vda", "nvme0n1".
  std::optional<std::string> device_name;
  /// Device number of `device_name` (its sysfs `dev` file).
  std::optional<std::uint32_t> disk_major;
  std::optional<std::uint32_t> disk_minor;  ///< see `disk_major`

  /// Queue limits of the whole device the filesystem sits on (the first
  /// whole device in `device_stack`: the disk for a partition, `dm-0` for a
  /// mapped device, where the kernel has already combined the members'
  /// limits). From sysfs `queue/`.
  std::optional<std::uint32_t> logical_block_size;
  std::optional<std::uint32_t> physical_block_size;  ///< see `logical_block_size`
  /// `queue/dma_alignment`: a mask, so buffers need `dma_alignment + 1`.
  std::optional<std::uint32_t> dma_alignment;
  std::optional<bool> rotational;  ///< `queue/rotational`
  /// `queue/write_cache`: true for "write back" (a volatile cache that needs
  /// flushing), false for "write through".
  std::optional<bool> volatile_write_cache;
  std::optional<bool> fua;  ///< `queue/fua`: the device honours FUA writes
  /// Block-layer atomic write limits in bytes (`queue/atomic_write_*`, Linux
  /// 6.11+); 0 means the device offers no atomic writes.
  std::optional<std::uint32_t> sysfs_atomic_write_unit_min;
  std::optional<std::uint32_t> sysfs_atomic_write_unit_max;  ///< see above
  std::optional<std::uint32_t> sysfs_atomic_write_max;       ///< see above

  /// `statx(STATX_DIOALIGN)` for the file: O_DIRECT buffer-address and
  /// file-offset/length alignment. 0 means O_DIRECT is not supported on it.
  std::optional<std::uint32_t> dio_mem_align;
  std::optional<std::uint32_t> dio_offset_align;  ///< see `dio_mem_align`
  /// `statx(STATX_WRITE_ATOMIC)` for the file (RWF_ATOMIC limits, Linux
  /// 6.11+); 0 means the file does not support atomic writes.
  std::optional<std::uint32_t> statx_atomic_write_unit_min;
  std::optional<std::uint32_t> statx_atomic_write_unit_max;  ///< see above

  /// `device_name` is an NVMe namespace.
  bool is_nvme = false;
  /// The NVMe controller's character device, e.g. "/dev/nvme0".
  std::optional<std::filesystem::path> nvme_controller;
  /// The namespace's block device, e.g. "/dev/nvme0n1" (for a multipath
  /// path device such as nvme1c1n1, the head "/dev/nvme1n1").
  std::optional<std::filesystem::path> nvme_namespace_device;
  /// The namespace identifier (sysfs `nsid`, else the kernel's device name).
  std::optional<std::uint32_t> nvme_nsid;
  /// From Identify Namespace (only when passthrough ran): the formatted LBA
  /// size in bytes, and NAWUN / NAWUPF as 0-based logical-block counts,
  /// present only when the namespace defines its own values
  /// (see `parse_nawun_nawupf`).
  std::optional<std::uint32_t> nvme_lba_size;
  std::optional<std::uint32_t> nawun;   ///< see `nvme_lba_size`
  std::optional<std::uint32_t> nawupf;  ///< see `nvme_lba_size`
  /// AWUPF from Identify Controller (0-based logical blocks), which applies
  /// when the namespace does not define NAWUPF.
  std::optional<std::uint32_t> awupf;

  /// The largest write in bytes the machine promises not to tear on power
  /// failure, when it says: the kernel's `statx_atomic_write_unit_max` if
  /// nonzero, else `sysfs_atomic_write_unit_max` if nonzero, else
  /// `(nawupf + 1) * nvme_lba_size`, else `(awupf + 1) * nvme_lba_size`.
  /// The kernel values apply to RWF_ATOMIC writes; the NVMe values to
  /// O_DIRECT writes of already-allocated blocks that are aligned to the
  /// unit and reach the device as one command.
  std::optional<std::uint32_t> atomic_write_unit() const;
};

/// Probes the storage under the open descriptor `fd` (any file type; for a
/// block-device descriptor the device itself). Runs NVMe Identify when the
/// file is on an NVMe namespace, the controller device opens, and
/// `nvme_passthrough_disabled_by_environment()` is false; any passthrough
/// failure just leaves the NVMe Identify fields empty.
/// \param fd any open descriptor; it is only examined, never read or written.
/// \param roots where /sys and /dev are (tests point them at a fake tree).
/// \param ec set to the errno of `fstat` when `fd` is unusable.
drive_info probe_drive(int fd, const probe_roots& roots, std::error_code& ec);
/// As above with the real /sys and /dev.
drive_info probe_drive(int fd, std::error_code& ec);
/// As above; throws `std::system_error` on failure.
drive_info probe_drive(int fd);
/// Probes the storage under `path` (opened with O_PATH, so no read
/// permission is needed and FIFOs do not block).
/// \param path the file, directory or device to examine.
/// \param ec set to the errno of `open` or `fstat` on failure.
drive_info probe_drive(const std::filesystem::path& path, std::error_code& ec);
/// As above; throws `std::system_error` on failure.
drive_info probe_drive(const std::filesystem::path& path);

/// Resolves a device number through sysfs only (no statx, no passthrough):
/// fills `fs_*`, the device stack, the queue limits and the NVMe identity
/// fields. An unknown device number gives an info with no block device.
drive_info resolve_block_device(std::uint32_t major, std::uint32_t minor,
                                const probe_roots& roots = {});

/// Parses NAWUN (bytes 34-35) and NAWUPF (bytes 36-37, both little-endian)
/// from an NVMe Identify Namespace structure. Each is a 0-based count of
/// logical blocks (N means N+1 blocks). Empty when the namespace does not
/// define its own value: NSFEAT bit 1 (NSABP) clear, or the field is 0,
/// which the NVMe specification defines as "same as AWUN / AWUPF in Identify
/// Controller". (For NAWUN, 0xFFFF means every command is atomic.)
std::pair<std::optional<std::uint32_t>, std::optional<std::uint32_t>> parse_nawun_nawupf(
    std::span<const std::byte, 4096> identify_namespace);

/// True when the environment variable `FSYS_DISABLE_NVME_PASSTHROUGH` is set
/// to a value other than empty or "0". Read on every call.
bool nvme_passthrough_disabled_by_environment() noexcept;

/// Which durability call `flush_device` made.
enum class flush_method {
  /// An NVMe FLUSH command on the file's namespace (device cache only).
  nvme_flush,
  /// `fdatasync(2)` on the file.
  fdatasync,
};

/// Makes data already written to `fd` durable.
///
/// Sends an NVMe FLUSH through passthrough only when that alone is enough:
/// the descriptor has O_DIRECT (so no dirty page cache), it lives on an NVMe
/// namespace reached through at most partitions and single-slave mapped
/// devices, the namespace's block device opens, and passthrough is not
/// disabled. Otherwise, or if the FLUSH is refused, it calls `fdatasync`.
/// A FLUSH does not commit file metadata: use it only after O_DIRECT writes
/// that overwrote already-written blocks without changing the file size.
/// \param fd an open descriptor of the file written to.
/// \param ec set to the errno of `fdatasync` (or `fcntl`) on failure.
flush_method flush_device(int fd, std::error_code& ec);
/// As above; throws `std::system_error` on failure.
flush_method flush_device(int fd);

/// The alignment in bytes that satisfies both the buffer-address and the
/// file-offset/length rules of O_DIRECT for the file: the largest of the
/// known `dio_mem_align`, `dio_offset_align`, `logical_block_size` and
/// `dma_alignment + 1`; 4096 when none is known.
std::uint32_t direct_io_alignment(const drive_info& info) noexcept;

}  // namespace fsys
