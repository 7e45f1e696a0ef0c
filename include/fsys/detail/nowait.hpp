// The inline fast path of asynchronous reads and writes: a `RWF_NOWAIT`
// attempt in the initiating thread before the operation reaches the engine.
#pragma once

#include <fsys/detail/op.hpp>

#include <atomic>
#include <cstdint>

namespace fsys::detail {

/// Counters of the inline fast path of one service (published through
/// `engine_stats`). Relaxed atomics: initiating functions run on any thread.
struct inline_counters {
  std::atomic<std::uint64_t> reads{0};
  std::atomic<std::uint64_t> read_fallthroughs{0};
  std::atomic<std::uint64_t> writes{0};
  std::atomic<std::uint64_t> write_fallthroughs{0};
  // File-system operations (`try_inline_fs`).
  std::atomic<std::uint64_t> opens{0};
  std::atomic<std::uint64_t> open_fallthroughs{0};
  std::atomic<std::uint64_t> stats{0};
};

/// Number of consecutive attempts on one file and direction that transfer
/// nothing (the data is not cached, the write would wait) after which the
/// file's next `nowait_skip_ops` operations in that direction go straight to
/// the engine; then attempts resume.
inline constexpr std::uint8_t nowait_miss_limit = 4;
inline constexpr std::int32_t nowait_skip_ops = 64;

/// Tries to carry out `op` (read_some, read_full, write_some, write_full of a
/// regular file not opened O_DIRECT, validated, not yet given to an engine)
/// with `preadv2`/`pwritev2(RWF_NOWAIT)` in the calling thread, feeding each
/// result through `op_base::on_result`. Returns true when the op's result is
/// final (its handler must then be posted, never invoked here); false when
/// the engine must carry out the rest, from `op.next_offset()` on (a failed
/// attempt transfers nothing; partial progress stays in the op). Counts in
/// `c`, and updates the file's `file_handle::nowait_memory`.
bool try_inline_transfer(op_base& op, inline_counters& c) noexcept;

/// The inline fast path of two file-system operations (lib/fs_nowait.cpp),
/// tried in the calling thread before the op reaches the engine, with system
/// calls that never wait:
/// - `op_kind::open` (without O_CREAT, O_TRUNC, O_TMPFILE, O_PATH):
///   `openat2` with `RESOLVE_CACHED` and `O_NONBLOCK` added, as io_uring's own
///   inline OPENAT2 issue does; `EAGAIN` (the lookup is not all in the dentry
///   cache, a lease must be broken) and errors that the added flags could
///   have caused leave the op to the engine.
/// - `op_kind::statx` of an open file (AT_EMPTY_PATH) on a local filesystem
///   (see `is_local_filesystem_device`): the inode is pinned by the fd and
///   its attributes are in memory. Other filesystems: not tried.
/// Returns true when the op's result is final (the handler must then be
/// posted, never invoked here); false when the engine must run the op, which
/// is then unchanged. Counts in `c`.
bool try_inline_fs(op_base& op, inline_counters& c) noexcept;

/// True when the device `dev` (`(major << 32) | minor`, as `file_handle::device`)
/// holds a filesystem whose metadata of an open file is in memory (ext2/3/4,
/// XFS, btrfs, tmpfs, f2fs). Found in /proc/self/mountinfo, never by asking
/// the filesystem (an fstatfs on FUSE or NFS may wait for the daemon or the
/// server); remembered per thread and device.
bool is_local_filesystem_device(std::uint64_t dev) noexcept;

}  // namespace fsys::detail
