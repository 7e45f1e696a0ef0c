// A reference-counted file descriptor shared by a file and its operations.
#pragma once

#include <boost/system/error_code.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <system_error>

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
  /// failed or was cancelled.
  int fd() const noexcept { return fd_.load(std::memory_order_acquire); }

  /// The open's result: takes ownership of `fd` (O_DIRECT alignment asked
  /// of the kernel when `direct`). Called once, by the open's result rules.
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

  /// Operations of this file not yet finished, linked through
  /// `op_base::file_next_`; guarded by the owning engine's mutex.
  op_base* ops_ = nullptr;
  /// Sync bookkeeping, guarded by the owning engine's mutex (see
  /// `engine::settle`): syncs started so far, and the first sync error.
  std::uint64_t syncs_started_ = 0;
  boost::system::error_code sync_error_;

  /// True for a descriptor without a position (pipe, socket, character
  /// device): its reads may wait indefinitely (see `op_base::stream_`).
  bool is_stream() const noexcept { return stream_; }

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
  bool nowait_candidate() const noexcept { return nowait_candidate_; }
  nowait_memory& nowait(bool read) noexcept { return nowait_[read ? 0 : 1]; }
  /// The device of the file, `(major << 32) | minor` from the statx made
  /// when the descriptor was adopted or attached; 0 when unknown.
  std::uint64_t device() const noexcept { return dev_; }

 private:
  file_handle(int fd, bool owns) noexcept : fd_(fd), owns_fd_(owns) {}
  /// Last reference gone: closes the fd or hands it to the close op.
  int close_now() noexcept;
  std::atomic<int> fd_;
  op_base* close_op_ = nullptr;
  engine* close_engine_ = nullptr;
  std::atomic<bool> owns_fd_;
  std::atomic<std::uint32_t> refs_{1};
  std::uint32_t dio_mem_align_ = 0;
  std::uint32_t dio_offset_align_ = 0;
  bool stream_ = false;
  bool nowait_candidate_ = false;
  nowait_memory nowait_[2];
  std::uint64_t dev_ = 0;
};

}  // namespace fsys::detail
