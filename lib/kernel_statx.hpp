// The parts of the kernel's statx and RWF_* UAPI that bookworm's headers
// (linux-libc-dev 6.1, glibc 2.36) do not have yet.
//
// STATX_WRITE_ATOMIC (Linux 6.11) and its fields sit in what the old
// `struct statx` calls `__spare3`: the kernel's struct is spelled out here,
// with the offsets asserted, and read from a glibc `struct statx` by copying
// (both are the same 256 bytes the kernel writes). Fields past 0xa0 follow
// the 6.16 UAPI; an older kernel leaves them zero and does not set their
// mask bits.
#pragma once

#include <sys/stat.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace fsys::detail {

inline constexpr std::uint32_t statx_dioalign = 0x00002000U;      // STATX_DIOALIGN (6.1)
inline constexpr std::uint32_t statx_write_atomic = 0x00010000U;  // STATX_WRITE_ATOMIC (6.11)
/// stx_attributes: the file supports RWF_ATOMIC writes (6.11).
inline constexpr std::uint64_t statx_attr_write_atomic = 0x00400000U;  // STATX_ATTR_WRITE_ATOMIC
/// pwritev2 / io_uring rw_flags: an untorn write (include/uapi/linux/fs.h, 6.11).
inline constexpr int rwf_atomic = 0x00000040;  // RWF_ATOMIC

struct kernel_statx_timestamp {
  std::int64_t tv_sec;
  std::uint32_t tv_nsec;
  std::int32_t reserved;
};

struct kernel_statx {
  std::uint32_t stx_mask;
  std::uint32_t stx_blksize;
  std::uint64_t stx_attributes;
  std::uint32_t stx_nlink;
  std::uint32_t stx_uid;
  std::uint32_t stx_gid;
  std::uint16_t stx_mode;
  std::uint16_t spare0;
  std::uint64_t stx_ino;
  std::uint64_t stx_size;
  std::uint64_t stx_blocks;
  std::uint64_t stx_attributes_mask;
  kernel_statx_timestamp stx_atime, stx_btime, stx_ctime, stx_mtime;
  std::uint32_t stx_rdev_major;
  std::uint32_t stx_rdev_minor;
  std::uint32_t stx_dev_major;
  std::uint32_t stx_dev_minor;
  std::uint64_t stx_mnt_id;
  std::uint32_t stx_dio_mem_align;
  std::uint32_t stx_dio_offset_align;
  std::uint64_t stx_subvol;                       // 6.10
  std::uint32_t stx_atomic_write_unit_min;        // 6.11
  std::uint32_t stx_atomic_write_unit_max;        // 6.11
  std::uint32_t stx_atomic_write_segments_max;    // 6.11
  std::uint32_t stx_dio_read_offset_align;        // 6.14
  std::uint32_t stx_atomic_write_unit_max_opt;    // 6.16
  std::uint32_t spare2;
  std::uint64_t spare3[8];
};
static_assert(sizeof(kernel_statx) == 0x100, "struct statx is 256 bytes");
static_assert(offsetof(kernel_statx, stx_dio_mem_align) == 0x98);
static_assert(offsetof(kernel_statx, stx_atomic_write_unit_min) == 0xa8);
static_assert(offsetof(kernel_statx, stx_atomic_write_unit_max) == 0xac);
static_assert(offsetof(kernel_statx, stx_atomic_write_segments_max) == 0xb0);
static_assert(offsetof(kernel_statx, stx_dio_read_offset_align) == 0xb4);
static_assert(offsetof(kernel_statx, stx_atomic_write_unit_max_opt) == 0xb8);
static_assert(sizeof(struct statx) == sizeof(kernel_statx), "glibc's struct statx is the kernel's 256 bytes");
#ifdef STATX_DIOALIGN
static_assert(STATX_DIOALIGN == statx_dioalign);
static_assert(offsetof(kernel_statx, stx_dio_mem_align) == offsetof(struct statx, stx_dio_mem_align));
static_assert(offsetof(kernel_statx, stx_dio_offset_align) == offsetof(struct statx, stx_dio_offset_align));
#endif

/// The RWF_ATOMIC limits of a file, as statx reports them.
struct atomic_write_limits {
  bool supported = false;  ///< STATX_ATTR_WRITE_ATOMIC set and a nonzero unit_max
  std::uint32_t unit_min = 0;
  std::uint32_t unit_max = 0;
  std::uint32_t segments_max = 0;
  std::uint32_t unit_max_opt = 0;  ///< 0: the kernel (before 6.16) or filesystem does not say
};

/// The limits in a statx result asked with `statx_write_atomic`; all zero
/// when the kernel did not fill them (mask bit clear: before 6.11).
inline atomic_write_limits read_atomic_write_limits(const struct statx& stx) noexcept {
  kernel_statx k;
  std::memcpy(&k, &stx, sizeof k);
  atomic_write_limits l;
  if (!(k.stx_mask & statx_write_atomic)) return l;
  l.unit_min = k.stx_atomic_write_unit_min;
  l.unit_max = k.stx_atomic_write_unit_max;
  l.segments_max = k.stx_atomic_write_segments_max;
  l.unit_max_opt = k.stx_atomic_write_unit_max_opt;
  l.supported = (k.stx_attributes & statx_attr_write_atomic) != 0 && l.unit_max != 0 && l.unit_min != 0;
  return l;
}

/// What fsys's statx asks for (async_stat, the inline stat, the helper).
inline constexpr unsigned stat_mask = STATX_BASIC_STATS | statx_dioalign | statx_write_atomic;

}  // namespace fsys::detail
