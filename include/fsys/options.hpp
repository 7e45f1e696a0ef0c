// fsys — options that choose how a ring (or its fallback) is built.
#pragma once

#include <cstdint>
#include <string_view>

namespace fsys {

/// Which engine carries out the operations of a `uring_service` or
/// `blocking_ring`. The API and its guarantees are the same for both.
enum class backend {
  /// An io_uring ring integrated with the io_context's reactor.
  io_uring,
  /// `preadv`/`pwritev`/`fdatasync` on a small worker pool, used when the
  /// kernel refuses io_uring (seccomp, `kernel.io_uring_disabled`, old kernels).
  psync,
};

/// What to do when `io_uring_setup(2)` is refused.
enum class fallback_policy {
  /// Use io_uring when the kernel allows it, otherwise the psync backend.
  automatic,
  /// Fail with `fsys::errc::io_uring_setup_failed` instead of falling back.
  require_io_uring,
  /// Always use the psync backend (also forced by `FSYS_DISABLE_IO_URING=1`).
  force_psync,
};

/// Which threads may submit to the ring.
enum class issuer_mode {
  /// `any_thread`. (Asio's concurrency hint 1 means "one thread at a
  /// time", not "always the same thread", which `single_thread` demands, so
  /// the hint alone never selects it.)
  automatic,
  /// Any thread running the io_context may submit and reap (COOP_TASKRUN).
  any_thread,
  /// Build the ring with IORING_SETUP_SINGLE_ISSUER|DEFER_TASKRUN when the
  /// kernel accepts them: the cheapest completions. The first thread that
  /// runs the context binds the ring to itself; from then on only that
  /// thread may run the context (and destroy it). An operation submitted
  /// from any other thread fails with `fsys::errc::wrong_issuer_thread`
  /// (checked on every submission: never a hang). Blocking calls cannot use
  /// such a ring.
  single_thread,
};

/// The backend's name for logs: "io_uring" or "psync".
constexpr std::string_view to_string(backend b) noexcept {
  switch (b) {
    case backend::io_uring:
      return "io_uring";
    case backend::psync:
      return "psync";
  }
  return "unknown";
}

/// The policy's name for logs: "automatic", "require_io_uring" or "force_psync".
constexpr std::string_view to_string(fallback_policy p) noexcept {
  switch (p) {
    case fallback_policy::automatic:
      return "automatic";
    case fallback_policy::require_io_uring:
      return "require_io_uring";
    case fallback_policy::force_psync:
      return "force_psync";
  }
  return "unknown";
}

/// The mode's name for logs: "automatic", "any_thread" or "single_thread".
constexpr std::string_view to_string(issuer_mode m) noexcept {
  switch (m) {
    case issuer_mode::automatic:
      return "automatic";
    case issuer_mode::any_thread:
      return "any_thread";
    case issuer_mode::single_thread:
      return "single_thread";
  }
  return "unknown";
}

/// Options for `uring_service` (through `asio::make_service`) and `blocking_ring`.
struct ring_options {
  /// Submission queue entries: at most this many operation SQEs are in the
  /// kernel at once. The completion queue gets twice as many, the second half
  /// kept for cancel requests. Any
  /// number of operations may be started; the ones beyond what the ring holds
  /// wait in a queue inside fsys.
  std::uint32_t queue_depth = 256;
  /// io_uring or the psync backend.
  fallback_policy fallback = fallback_policy::automatic;
  /// Which threads submit; see `issuer_mode`.
  issuer_mode issuer = issuer_mode::automatic;
  /// Use a kernel submission-polling thread (IORING_SETUP_SQPOLL).
  bool sqpoll = false;
  /// Idle time before the SQPOLL thread sleeps, in milliseconds.
  std::uint32_t sqpoll_idle_ms = 1000;
  /// io_uring rings one io_context may use at most, so that threads running
  /// one io_context do not contend for one ring and its lock. A read or
  /// write started by a handler stays on the ring that completed that
  /// handler's operation; other starts use the calling thread's ring (made at
  /// its first operation, assigned round-robin beyond this count); when more
  /// threads run the io_context than rings carry work, the busiest ring hands
  /// some of those chains of operations to another once
  /// (`engine_stats::chains_moved`). Syncs and file-system operations always
  /// use the first ring. 0 (the default) means one per CPU
  /// (`std::thread::hardware_concurrency()`, at most 64); 1 means a single
  /// ring. A single-issuer or SQPOLL ring is always alone.
  std::uint32_t rings = 0;
  /// Worker threads of the psync backend.
  std::uint32_t psync_threads = 4;
  /// `blocking_ring` only: run a read or write in the calling thread when
  /// the kernel can finish it there without a hand-off. Each `read_at` /
  /// `write_at` first tries `preadv2`/`pwritev2` with `RWF_NOWAIT`, which
  /// succeeds when no waiting is needed (a page-cache hit, an O_DIRECT read)
  /// and is the attempt io_uring itself makes at submission, minus one
  /// `io_uring_enter`. On a regular file whose filesystem cannot do
  /// non-blocking IO at all (`EOPNOTSUPP`: buffered writes on ext4, tmpfs)
  /// io_uring would run the request in a kernel worker thread while the
  /// caller sleeps; the call runs it in the calling thread instead. Whatever
  /// has to wait (an uncached read, an empty pipe) goes to the ring, as do
  /// `fdatasync` and `write_at_linked_fsync` always. `false` sends every
  /// request to the ring (or the psync workers).
  bool caller_thread_fast_path = true;
  /// Asynchronous reads and writes (`async_read_some_at`, `async_read_at`,
  /// `async_write_some_at`, `async_write_at`, their readv/writev and
  /// coroutine forms) of a regular file not opened O_DIRECT first try
  /// `preadv2`/`pwritev2` with `RWF_NOWAIT` in the initiating thread: a
  /// page-cache hit (or a write the filesystem takes without waiting) then
  /// completes without the ring or the psync workers, and without any
  /// operation object: the handler is posted to its executor (never
  /// invoked inside the initiating function; queued as Asio queues its own
  /// operations that are done at once, so another thread running the
  /// io_context may run it while the initiating handler still runs), and `co_read_at` /
  /// `co_write_at` resume their coroutine at once (at most
  /// `detail::inline_resume_limit` times in a row per thread, then once
  /// through the io_context's queue, so other handlers get to run).
  /// Whatever would wait goes to the engine, from where the attempt stopped.
  /// A file whose attempts in one direction are refused (`EOPNOTSUPP`: ext4
  /// buffered writes, tmpfs on some kernels) gets none again; one whose
  /// attempts keep missing (4 in a row) skips the next 64 before trying
  /// again. While a batch is forming on the ring (see
  /// `inline_batch_threshold`) no attempt is made: the request joins the
  /// batch. Syncs and `async_write_linked_fsync` always go to the engine.
  /// `basic_file::async_open` (path all in the dentry cache, no
  /// O_CREAT/O_TRUNC) and `basic_file::async_stat` (local filesystems) are
  /// tried inline the same way (docs/guide.md, "Inline open and stat").
  /// Not the fixed-buffer variants. Applies to both backends. An operation
  /// completed inline never reaches the ring: on a `single_thread` ring it
  /// succeeds from any thread. Counted in `engine_stats` (`inline_*`, and in
  /// `ops_started` / `ops_completed`). A cached read then costs about one
  /// `preadv2`: measured here, 1.3-1.9x the ring path at depth 1 and
  /// 1.2-1.6x at depth 32, with no measurable cost on cold data
  /// (bench/notes.md). On by default; the environment variable
  /// `FSYS_INLINE_FAST_PATH` overrides the option (`1` on, `0` off).
  bool inline_fast_path = true;
  /// With `inline_fast_path` on: a read or write skips the inline attempt
  /// and goes to the ring when at least this many other reads and writes on
  /// the ring the calling thread uses are outstanding (started, handler not
  /// yet run, those finished inline included), so that operations started
  /// together are submitted together, one `io_uring_enter` for the batch,
  /// instead of one `preadv2` each (`engine_stats::batched_reads`,
  /// `batched_writes`). 0 chooses it from the measured cost of a system call
  /// (detail::inline_batch_threshold: 2 where a system call is expensive,
  /// 16 otherwise; the environment variable FSYS_INLINE_BATCH_THRESHOLD
  /// overrides that choice). Ignored by the psync backend, which always
  /// attempts inline (it has no batches).
  unsigned inline_batch_threshold = 0;
  /// io-wq worker limits (`io_uring_register_iowq_max_workers`) applied
  /// when the ring is built: the most kernel worker threads per NUMA node
  /// for bounded work (regular-file IO that must block, such as buffered
  /// writes on ext4 and fsyncs) and for unbounded work (pipes, sockets).
  /// 0 keeps the kernel's default (bounded: min(queue entries, 4 × CPUs);
  /// unbounded: RLIMIT_NPROC). Ignored by the psync backend. If the kernel
  /// refuses them, the ring is still built (see
  /// `uring_service::iowq_max_workers`).
  std::uint32_t iowq_max_workers_bounded = 0;
  /// The io-wq limit for unbounded work (see `iowq_max_workers_bounded`).
  std::uint32_t iowq_max_workers_unbounded = 0;
};

}  // namespace fsys
