// fsys — counters of a ring (or its fallback): fsys::engine_stats.
#pragma once

#include <cstdint>

namespace fsys {

/// Counters of one `uring_service` or `blocking_ring`, for logs, benchmarks
/// and tests, as returned by their `stats()`.
///
/// Every counter starts at 0 when the ring is built and only grows; each is
/// read with a relaxed load, so a snapshot taken while operations run may mix
/// counts from slightly different moments. Counters marked "io_uring only"
/// stay 0 on the psync backend.
struct engine_stats {
  /// Operations handed to the engine (every asynchronous operation of a file,
  /// every blocking call that reached the engine), including ones refused
  /// before reaching the kernel, and the ones the inline fast path completed
  /// (`inline_reads`, `inline_writes`).
  std::uint64_t ops_started = 0;
  /// `io_uring_enter(2)` calls, for submitting and for waiting (io_uring only).
  std::uint64_t enter_calls = 0;
  /// Submission queue entries given to the kernel, cancel requests included
  /// (io_uring only). A linked write + fsync counts two.
  std::uint64_t sqes_submitted = 0;
  /// Completion queue entries taken from the ring (io_uring only).
  std::uint64_t cqes_reaped = 0;
  /// Operations whose handler (or blocking caller) received the result
  /// (with those the io_uring engine ran on its psync helper). An
  /// operation completed by the inline fast path counts from the moment its
  /// result is final (its handler is then already queued).
  std::uint64_t ops_completed = 0;
  /// Times the io_context woke the engine to hand out completions: the
  /// ring's eventfd became readable (io_uring), or finished work of the
  /// worker threads was drained (psync).
  std::uint64_t reactor_wakeups = 0;
  /// Times an operation had to wait inside fsys for capacity: the ring was
  /// full (`ring_options::queue_depth` operations already in the kernel), or
  /// every psync worker was busy and no more could be started.
  std::uint64_t queued_waits = 0;
  /// io_uring backend: file-system operations run on its psync helper
  /// (opcode missing, refused by the ring for that filesystem, or disabled
  /// by FSYS_TEST_DISABLE_OPS).
  std::uint64_t fs_ops_on_helper = 0;
  /// Asynchronous reads completed by the inline fast path
  /// (`ring_options::inline_fast_path`) without reaching the engine; they
  /// are included in `ops_started` and `ops_completed`.
  std::uint64_t inline_reads = 0;
  /// Inline read attempts that fell through to the engine (the data was not
  /// all cached, the filesystem refused, any error): the engine finished the
  /// read (counted in `ops_started`), from where the attempt stopped.
  std::uint64_t inline_read_fallthroughs = 0;
  /// Asynchronous writes completed by the inline fast path.
  std::uint64_t inline_writes = 0;
  /// Inline write attempts that fell through to the engine.
  std::uint64_t inline_write_fallthroughs = 0;
  /// Reads of the files the inline fast path applies to that went to the
  /// ring without an inline attempt, because a batch was forming there: two
  /// or more other reads and writes started on that ring had not had their
  /// handlers run, so this one was submitted with theirs in one
  /// `io_uring_enter` (io_uring only; the psync backend always attempts).
  /// Each read of such a file counts in at most one of `inline_reads`,
  /// `inline_read_fallthroughs` and `batched_reads` (none when the file's
  /// recent misses skipped the attempt).
  std::uint64_t batched_reads = 0;
  /// Writes sent to the ring without an inline attempt (see `batched_reads`).
  std::uint64_t batched_writes = 0;
  /// io_uring rings the io_context uses: one per thread that started
  /// operations, and one per thread that ran the io_context while reads and
  /// writes were shared out (see `chains_moved`), up to
  /// `ring_options::rings` (0 on the psync backend).
  std::uint64_t rings = 0;
  /// io_uring backend, an io_context run by several threads: completed reads
  /// and writes whose handlers another ring ran, so that the operations
  /// those handlers start (the next read of a coroutine, say) go to that
  /// ring from then on. A ring carrying 8 or more such chains of operations
  /// more than another hands over half the difference, once; this stays
  /// near half the number of chains unless their count changes.
  std::uint64_t chains_moved = 0;
  /// `basic_file::async_open` calls completed by the inline fast path: an
  /// `openat2` with `RESOLVE_CACHED` in the initiating thread found every
  /// path component in the dentry cache (the file is open), or failed with
  /// an error the engine would give too (ENOENT, EXDEV, EACCES...).
  std::uint64_t inline_opens = 0;
  /// Inline open attempts that went to the engine (a lookup not all cached,
  /// any other error): the engine opened the file (counted in `ops_started`).
  /// Opens with O_CREAT, O_TRUNC, O_TMPFILE or O_PATH are never attempted.
  std::uint64_t inline_open_fallthroughs = 0;
  /// `basic_file::async_stat` calls completed by the inline fast path (a
  /// statx of the descriptor on a local filesystem: ext2/3/4, XFS, btrfs,
  /// tmpfs, f2fs). Files on other filesystems (FUSE, NFS...) are never tried
  /// inline and go to the engine.
  std::uint64_t inline_stats = 0;
  /// `basic_file::async_close` calls completed by the inline fast path: a
  /// file on one of those local filesystems with no operation left in fsys
  /// or the kernel is closed by `close(2)` in the calling thread (on those
  /// filesystems IORING_OP_CLOSE too closes it inline, in the submitting
  /// thread). Other closes go to the engine.
  std::uint64_t inline_closes = 0;
};

}  // namespace fsys
