// The inline fast path of asynchronous reads and writes: a `RWF_NOWAIT`
// attempt in the initiating thread before the operation reaches the engine.
#pragma once

#include <fsys/detail/op.hpp>

struct statx;

#include <sys/uio.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>

namespace fsys::detail {

class engine;
class file_handle;
struct fs_args;

/// Counters of the inline fast path of one service (published through
/// `engine_stats`). Each thread that initiates operations gets its own block
/// (allocated once per thread and service, kept until the service goes), so
/// counting an operation is a plain load and store on a cache line no other
/// thread writes; `sum()` adds the blocks up with relaxed loads.
class inline_counters {
 public:
  /// One thread's counts. Written only by that thread.
  struct block {
    std::atomic<std::uint64_t> reads{0};
    std::atomic<std::uint64_t> read_fallthroughs{0};
    std::atomic<std::uint64_t> writes{0};
    std::atomic<std::uint64_t> write_fallthroughs{0};
    // Reads and writes sent to the engine without an attempt because a batch
    // was forming there (engine::batch_forming).
    std::atomic<std::uint64_t> read_batched{0};
    std::atomic<std::uint64_t> write_batched{0};
    // File-system operations (basic_file::try_open_direct, try_stat_direct,
    // try_close_direct).
    std::atomic<std::uint64_t> opens{0};
    std::atomic<std::uint64_t> open_fallthroughs{0};
    std::atomic<std::uint64_t> stats{0};
    std::atomic<std::uint64_t> closes{0};
    block* next = nullptr;
    const void* thread = nullptr;  ///< address of the owning thread's cache entry

    /// Adds 1 to `c` (only the owning thread writes, so no read-modify-write
    /// instruction is needed).
    static void bump(std::atomic<std::uint64_t>& c) noexcept {
      c.store(c.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    }
  };
  struct totals {
    std::uint64_t reads = 0, read_fallthroughs = 0, writes = 0, write_fallthroughs = 0;
    std::uint64_t read_batched = 0, write_batched = 0;
    std::uint64_t opens = 0, open_fallthroughs = 0, stats = 0, closes = 0;
  };

  inline_counters();
  ~inline_counters();
  inline_counters(const inline_counters&) = delete;
  inline_counters& operator=(const inline_counters&) = delete;

  /// The calling thread's block (null only when it could not be allocated:
  /// the operation is then not counted).
  block* local() noexcept;
  /// Adds 1 to the calling thread's counter `field`.
  void add(std::atomic<std::uint64_t> block::*field) noexcept {
    if (block* b = local()) block::bump(b->*field);
  }
  totals sum() const noexcept;

 private:
  block* local_slow() noexcept;
  std::uint64_t id_;  ///< unique per instance, never reused (keys the thread cache)
  mutable std::mutex mutex_;
  block* head_ = nullptr;
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
/// `c`, and updates the file's `file_handle::nowait_memory`. No attempt is
/// made while a batch is forming on `e` (`engine::batch_forming`): the op
/// joins it (counted as batched).
bool try_inline_transfer(op_base& op, inline_counters& c, engine& e) noexcept;

/// The batching rule of `try_inline_transfer` for an attempt made before any
/// operation exists (`basic_file::try_direct`): true, counting the request
/// as batched in `c`, when it should go to `e` without an attempt.
bool joins_batch(engine& e, bool read, inline_counters& c) noexcept;

/// Most iovecs an attempt made before any operation exists takes (longer
/// buffer sequences go through the operation, which makes the attempt).
inline constexpr unsigned nowait_direct_iovs = 8;

/// The result of `nowait_direct`.
struct nowait_outcome {
  /// Bytes transferred by the attempt (from the start of the iovecs).
  std::size_t transferred = 0;
  /// True when the whole request is done (`transferred` is its result, with
  /// no error unless `eof`): every byte of a `full` transfer, any positive
  /// count of a `some` one, or a read that reached end of file. False: an operation must carry out the rest (from
  /// `transferred` on) and give the result, whatever went wrong.
  bool done = false;
  /// With `done`: a `some` read at end of file (completes with
  /// `asio::error::eof` and 0 bytes).
  bool eof = false;
  /// The fast path has decided for this request (an attempt was made, or
  /// the file's memory said not to try): the operation that takes it over
  /// makes no attempt of its own.
  bool decided = false;
};

/// The attempt made before any operation exists: `iov[0, iovcnt)` (at most
/// `nowait_direct_iovs`, non-empty, `total` bytes in all, and `offset +
/// total` fits in off_t: the caller checks) of descriptor `fd` of `f`, a
/// regular file not opened O_DIRECT. `full`: continues after short
/// transfers while the kernel makes progress. Consults and updates the
/// file's memory and counts in `c` like `try_inline_transfer` (an attempt
/// that is not done counts as a fall-through; the operation that takes the
/// request over makes no second attempt). `iov` is consumed.
nowait_outcome nowait_direct(file_handle& f, int fd, bool read, bool full, iovec* iov, unsigned iovcnt,
                             std::uint64_t offset, std::size_t total, inline_counters& c) noexcept;

/// Coroutine operations (`co_read_at`, `co_write_at`) finished by
/// `nowait_direct` resume their coroutine at once, without the scheduler;
/// after this many such resumptions in a row on one thread, the next one
/// goes through the io_context's queue, so that a coroutine reading cached
/// data in a loop cannot keep other handlers from running.
inline constexpr unsigned inline_resume_limit = 64;

/// Takes one inline resumption from the calling thread's run; false (and
/// the run starts again) when `inline_resume_limit` were taken in a row.
bool take_inline_resume() noexcept;

/// How many reads and writes must be outstanding on a ring (started, handler
/// not yet run) for a new one to skip the inline attempt and join their
/// batch (`engine::batch_forming`). An inline read pays one system call; on
/// the ring, a batch of B pays one `io_uring_enter` and fsys's per-operation
/// work, which costs about what a system call's entry and exit cost on a
/// host with light mitigations (~170 ns measured here). So the threshold is
/// chosen once per process from the measured cost of a null system call:
/// 2 where it costs 400 ns or more (a host whose mitigations make every
/// system call expensive: batching wins from depth 2), 16 below that
/// (batching only wins, if at all, at high depth). The environment variable
/// FSYS_INLINE_BATCH_THRESHOLD (a positive integer) overrides it.
int inline_batch_threshold() noexcept;

// The inline fast path of two file-system operations (lib/fs_nowait.cpp),
// made by `async_open`/`async_stat` (and their coroutine forms) in the
// calling thread before any operation exists, with system calls that never
// wait:
// - an open (without O_CREAT, O_TRUNC, O_TMPFILE, O_PATH): `openat2` with
//   `RESOLVE_CACHED` and `O_NONBLOCK` added, as io_uring's own inline
//   OPENAT2 issue does; `EAGAIN` (the lookup is not all in the dentry
//   cache, a lease must be broken) and errors that the added flags could
//   have caused leave the open to the engine.
// - the statx of an open file on a local filesystem (see
//   `is_local_filesystem_device`): the inode is pinned by the fd and its
//   attributes are in memory. Other filesystems: the engine.
// A final result's handler is then deferred, never invoked in the call.

/// What the op-less forms below return when the call was not made inline
/// (the engine must do it).
inline constexpr int inline_undecided = 1 << 30;

/// The inline open of `a` (see above): the new
/// descriptor (>= 0, O_CLOEXEC; O_NONBLOCK until `h`, to which the caller
/// attaches it, takes it off at first blocking use: see
/// `file_handle::blocking_fd`), a final `-errno`, or `inline_undecided`.
/// Counts in `c`.
int inline_open(const fs_args& a, file_handle& h, inline_counters& c) noexcept;
/// The inline statx of the open descriptor `fd` of `h` (see above) into
/// `stx`: 0, a final `-errno`, or `inline_undecided`
/// when the file is not on a local filesystem. A handle that does not know
/// its type and device yet learns them from the same call. Counts in `c`.
int inline_stat(file_handle& h, int fd, struct statx& stx, inline_counters& c) noexcept;
/// True when closing `h`'s descriptor in the calling thread waits for
/// nothing the ring's close would not wait for in the same thread: no
/// operation holds the handle any more, and the file is on a local
/// filesystem (see `close_without_waiting` in lib/fs_nowait.cpp).
bool close_without_waiting(const file_handle& h) noexcept;

/// True when the device `dev` (`(major << 32) | minor`, as `file_handle::device`)
/// holds a filesystem whose metadata of an open file is in memory (ext2/3/4,
/// XFS, btrfs, tmpfs, f2fs). Found in /proc/self/mountinfo, never by asking
/// the filesystem (an fstatfs on FUSE or NFS may wait for the daemon or the
/// server); remembered per thread and device.
bool is_local_filesystem_device(std::uint64_t dev) noexcept;

}  // namespace fsys::detail
