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

}  // namespace fsys::detail
