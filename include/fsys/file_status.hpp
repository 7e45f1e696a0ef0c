// fsys — what `async_stat` reports about a file.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>

namespace fsys {

/// A file's metadata as `statx(2)` reports it (`basic_file::async_stat`,
/// `fsys::async_stat`).
struct file_status {
  /// Size in bytes (`stx_size`).
  std::uint64_t size = 0;
  /// Bytes of storage allocated to the file (`stx_blocks * 512`); less than
  /// `size` for a sparse file, more after `async_allocate` past the end.
  std::uint64_t allocated = 0;
  /// File type and permission bits (`stx_mode`: test with `S_ISREG` etc.).
  mode_t mode = 0;
  /// Number of hard links.
  std::uint64_t nlink = 0;
  /// The filesystem's preferred IO block size (`stx_blksize`).
  std::uint32_t block_size = 0;
  /// Last modification of the content (`stx_mtime`).
  std::chrono::system_clock::time_point modified{};
  /// Memory alignment O_DIRECT needs for this file (STATX_DIOALIGN), 0 when
  /// the kernel or filesystem does not say.
  std::uint32_t dio_mem_align = 0;
  /// File offset and length alignment O_DIRECT needs (STATX_DIOALIGN), 0
  /// when the kernel or filesystem does not say.
  std::uint32_t dio_offset_align = 0;
  /// The device the file is on (major << 32 | minor); with `inode`, equal
  /// for two names of one file.
  std::uint64_t device = 0;
  /// The inode number.
  std::uint64_t inode = 0;

  /// Untorn writes (`basic_file::async_write_atomic_at`; statx
  /// STATX_WRITE_ATOMIC, Linux 6.11+). True when the file supports them
  /// (STATX_ATTR_WRITE_ATOMIC) on this kernel; the writes also need the file
  /// opened with O_DIRECT. A database sizes its pages from these: a page of
  /// a power-of-two size in [`atomic_write_unit_min`,
  /// `atomic_write_unit_max`], written at a multiple of its size, from at
  /// most `atomic_write_segments_max` buffers, is written untorn.
  bool atomic_write_supported = false;
  /// Smallest untorn write in bytes (`stx_atomic_write_unit_min`); 0 when
  /// unsupported.
  std::uint32_t atomic_write_unit_min = 0;
  /// Largest untorn write in bytes (`stx_atomic_write_unit_max`); 0 when
  /// unsupported. On XFS this may exceed what the device writes atomically:
  /// larger writes are done in software (copy on write), more slowly.
  std::uint32_t atomic_write_unit_max = 0;
  /// Most buffers one untorn write may have (`stx_atomic_write_segments_max`).
  std::uint32_t atomic_write_segments_max = 0;
  /// Largest untorn write the file does at full speed
  /// (`stx_atomic_write_unit_max_opt`, Linux 6.16+); 0 when the kernel or
  /// filesystem does not say.
  std::uint32_t atomic_write_unit_max_opt = 0;

  /// The owner's user id (`stx_uid`).
  std::uint32_t uid = 0;
  /// The owner's group id (`stx_gid`).
  std::uint32_t gid = 0;
};

}  // namespace fsys
