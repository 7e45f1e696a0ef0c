// A reference-counted file descriptor shared by a file and its operations.
#pragma once

#include <boost/system/error_code.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <system_error>

struct statx;

namespace fsys::detail {

struct op_base;
class engine;

/// Why a shared handle: io_uring resolves an SQE's fd number when the request
/// is issued, and a linked fsync is issued only after its write completes. If
/// the file closed its fd while an operation was still queued in fsys or
/// linked in the kernel, the number could be reused by an unrelated `open` and
/// the operation would reach the wrong file. So the fd is closed only when the
/// owning file has let go *and* the last operation that may reach the kernel
/// has finished.
class file_handle {
 public:
  /// Adopts `fd` (closed by the last release when `owns_fd`).
  static file_handle* create(int fd, bool owns_fd);
  /// A handle for a file being opened by `async_open`: `fd()` is `opening`
  /// until the open's result attaches the descriptor (or marks it failed).
  static file_handle* create_opening();

  /// Handle memory is recycled per thread (a server opening a file per
  /// request allocates nothing for it).
  static void* operator new(std::size_t size);
  static void operator delete(void* p) noexcept;

  /// `fd()` of a handle whose `async_open` has not completed yet.
  static constexpr int opening = -2;

  /// The descriptor; `opening` while an `async_open` is pending, -1 after it
  /// failed or was cancelled. Only for state checks and the inline nowait
  /// calls (`RWF_NOWAIT` reads and writes, statx, close): anything else uses
  /// `blocking_fd`.
  int fd() const noexcept { return fd_.load(std::memory_order_acquire); }

  /// The descriptor with exactly the status flags its opener asked for.
  /// An inline open (detail::inline_open) opens with O_NONBLOCK added and
  /// leaves it on while only the inline calls use the descriptor (on which
  /// it changes nothing: they pass RWF_NOWAIT or never wait); the first use
  /// that may block takes it off (one fcntl), so that the ring, the psync
  /// workers, a pipe read or the caller's own system calls see the file as
  /// opened. A served file that is opened, stat'ed, read from the page cache
  /// and closed never pays for that fcntl.
  int blocking_fd() const noexcept {
    const int fd = fd_.load(std::memory_order_acquire);
    if (pending_status_flags_.load(std::memory_order_acquire) >= 0) [[unlikely]]
      restore_status_flags(fd);
    return fd;
  }
  /// Records that the descriptor about to be attached was opened with
  /// O_NONBLOCK added to `flags` (the caller's open flags); `blocking_fd`
  /// sets `flags` on first use. Called before `attach` publishes the fd.
  void defer_status_flags(int flags) noexcept { pending_status_flags_.store(flags, std::memory_order_relaxed); }

  /// The open's result: takes ownership of `fd` (O_DIRECT alignment asked
  /// of the kernel when `direct`; otherwise the file's type and device are
  /// learnt later, see `attributes`). Called once, by the open's result rules.
  void attach(int fd, bool direct) noexcept;
  /// The open failed or was cancelled: the handle holds no descriptor.
  void set_failed() noexcept { fd_.store(-1, std::memory_order_release); }

  /// `async_close`: when the last reference goes, the descriptor (if any) is
  /// handed to `op` (a `op_kind::close` op), which is started on `e`, instead
  /// of being closed by `close(2)` here.
  void close_with(op_base* op, engine* e) noexcept {
    close_op_ = op;
    close_engine_ = e;
  }

  void add_ref() noexcept { refs_.fetch_add(1, std::memory_order_relaxed); }
  /// Drops one reference; the last one closes the fd (when owned) and frees.
  void release() noexcept;
  /// Drops the owner's reference. When no operation holds the handle any
  /// more, closes the fd now and returns close's errno (0 on success);
  /// otherwise the last operation closes it and this returns 0.
  int release_owner() noexcept;
  /// The owner stops owning the fd (`basic_file::release`): it stays open.
  void disown() noexcept { owns_fd_.store(false, std::memory_order_relaxed); }

  /// O_DIRECT alignment requirements, 0 when the fd is not O_DIRECT or the
  /// kernel does not say.
  std::uint32_t dio_mem_align() const noexcept { return dio_mem_align_; }
  std::uint32_t dio_offset_align() const noexcept { return dio_offset_align_; }
  /// Opened O_DIRECT.
  bool direct() const noexcept { return direct_; }

  /// The file's RWF_ATOMIC limits (statx STATX_WRITE_ATOMIC), read once by
  /// the statx that asks an O_DIRECT file's alignment when the descriptor is
  /// attached (at open, or when a descriptor is adopted), so that an untorn
  /// write's checks cost no system call. All zero for a file not opened
  /// O_DIRECT (the kernel takes RWF_ATOMIC only for direct IO) and for a
  /// file or kernel without untorn writes.
  struct atomic_limits {
    std::uint32_t unit_min = 0;  ///< 0: untorn writes unsupported
    std::uint32_t unit_max = 0;
    std::uint32_t segments_max = 0;
  };
  const atomic_limits& atomic_write_limits() const noexcept { return atomic_; }

  /// Operations of this file not yet finished, linked through
  /// `op_base::file_next_`; guarded by the owning engine's mutex.
  op_base* ops_ = nullptr;
  /// Sync bookkeeping, guarded by the owning engine's mutex (see
  /// `engine::settle`): syncs started so far, and the first sync error.
  std::uint64_t syncs_started_ = 0;
  boost::system::error_code sync_error_;

  /// True for a descriptor without a position (pipe, socket, character
  /// device): its reads may wait indefinitely (see `op_base::stream_`).
  bool is_stream() const noexcept { return (attributes() & attr_stream) != 0; }

  /// The inline fast path's per-file, per-direction memory (index 0: reads,
  /// 1: writes; see `try_inline_transfer`). Relaxed atomics: a heuristic
  /// that only decides whether a `RWF_NOWAIT` attempt is made, never what an
  /// operation's result is.
  struct nowait_memory {
    /// The filesystem refused `RWF_NOWAIT` (EOPNOTSUPP): never again.
    std::atomic<bool> refused{false};
    /// Consecutive attempts that transferred nothing (EAGAIN).
    std::atomic<std::uint8_t> misses{0};
    /// Operations still to start without an attempt after a run of misses.
    std::atomic<std::int32_t> skip{0};
  };
  /// A regular file not opened O_DIRECT: the only kind of file on which an
  /// operation may be tried inline.
  bool nowait_candidate() const noexcept { return !direct_ && (attributes() & attr_regular) != 0; }
  nowait_memory& nowait(bool read) noexcept { return nowait_[read ? 0 : 1]; }
  /// True once the type and device are known (from `learn` or a probe).
  bool attributes_known() const noexcept { return (attrs_.load(std::memory_order_relaxed) & attr_known) != 0; }
  /// The device of the file, `(major << 32) | minor`; 0 when unknown.
  std::uint64_t device() const noexcept {
    const std::uint64_t a = attributes();
    return ((a >> attr_minor_bits) & 0xffffffffu) << 32 | (a & ((1u << attr_minor_bits) - 1));
  }

  /// Records the type and device from a statx of this file (the first one
  /// that has them; they never change while the descriptor is open). Any
  /// statx the file's user makes through fsys feeds it, so that a file
  /// opened and then stat'ed costs one statx, not two.
  void learn(const struct statx& stx) noexcept;

  /// True when only the owning file holds the handle: no operation of the
  /// file is queued, in the kernel, or waiting for its handler.
  bool sole_reference() const noexcept { return refs_.load(std::memory_order_acquire) == 1; }

 private:
  file_handle(int fd, bool owns) noexcept : fd_(fd), owns_fd_(owns) {}
  /// Last reference gone: closes the fd or hands it to the close op.
  int close_now() noexcept;

  // The file's type and device, packed so that one relaxed atomic carries
  // them (threads that race to learn them store the same value):
  // attr_known | attr_stream | attr_regular | major << 20 | minor (Linux
  // minor numbers have 20 bits, majors 12).
  static constexpr std::uint64_t attr_known = std::uint64_t{1} << 63;
  static constexpr std::uint64_t attr_stream = std::uint64_t{1} << 62;
  static constexpr std::uint64_t attr_regular = std::uint64_t{1} << 61;
  static constexpr unsigned attr_minor_bits = 20;
  static std::uint64_t pack_attributes(const struct statx& stx) noexcept;
  /// The packed attributes; the first call after `attach` asks the kernel
  /// (statx with AT_STATX_DONT_SYNC: what the kernel holds, no FUSE or NFS
  /// round trip) unless a statx of the file's user came first. 0 while the
  /// handle has no descriptor.
  std::uint64_t attributes() const noexcept {
    const std::uint64_t a = attrs_.load(std::memory_order_relaxed);
    return (a & attr_known) ? a : fetch_attributes();
  }
  std::uint64_t fetch_attributes() const noexcept;
  /// O_DIRECT: asks the kernel for the alignment (and learns the attributes).
  void ask_direct_alignment(int fd) noexcept;
  /// Sets the deferred status flags (see `blocking_fd`).
  void restore_status_flags(int fd) const noexcept;
  std::atomic<int> fd_;
  /// Status flags `blocking_fd` must still set (-1: none); see there.
  mutable std::atomic<int> pending_status_flags_{-1};
  op_base* close_op_ = nullptr;
  engine* close_engine_ = nullptr;
  std::atomic<bool> owns_fd_;
  std::atomic<std::uint32_t> refs_{1};
  std::uint32_t dio_mem_align_ = 0;
  std::uint32_t dio_offset_align_ = 0;
  bool direct_ = false;  ///< opened O_DIRECT; set before the fd is published
  atomic_limits atomic_;  ///< set with `direct_`, before the fd is published
  mutable std::atomic<std::uint64_t> attrs_{0};
  nowait_memory nowait_[2];
};

}  // namespace fsys::detail
