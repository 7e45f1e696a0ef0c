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
  /// Device and inode number: equal for two names of one file.
  std::uint64_t device = 0;
  std::uint64_t inode = 0;
};

}  // namespace fsys
