// A reference-counted file descriptor shared by a file and its operations.
#pragma once

#include <boost/system/error_code.hpp>

#include <atomic>
#include <cstdint>
#include <system_error>

namespace fsys::detail {

struct op_base;

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

  int fd() const noexcept { return fd_; }

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

 private:
  file_handle(int fd, bool owns) noexcept : fd_(fd), owns_fd_(owns) {}
  int fd_;
  std::atomic<bool> owns_fd_;
  std::atomic<std::uint32_t> refs_{1};
  std::uint32_t dio_mem_align_ = 0;
  std::uint32_t dio_offset_align_ = 0;
  bool stream_ = false;
};

}  // namespace fsys::detail
