// The type-erased state of one file operation, shared by both backends.
//
// An operation is allocated by the initiating function (with the handler's
// associated allocator), handed to an engine, and finished by the engine
// calling `complete_`, which frees the memory and then invokes the handler.
// The kernel-facing state (iovecs, offset, progress) lives here so that the
// io_uring and psync engines apply exactly the same transfer rules.
#pragma once

#include <boost/system/error_code.hpp>
#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <memory>

namespace fsys::detail {

class file_handle;
struct fs_args;

enum class op_kind : std::uint8_t {
  read_some,           ///< one kernel read; may be short; 0 bytes → eof
  write_some,          ///< one kernel write; may be short
  read_full,           ///< reads until the buffers are full or end of file
  write_full,          ///< writes everything, continuing after short writes
  write_linked_fsync,  ///< write + fsync(DATASYNC) linked; continues after short writes
  fdatasync,
  fsync,
  // File-system operations: their arguments live in `op_base::fs_` (see
  // detail/fs_args.hpp); each is one system call or one SQE.
  open,             ///< openat / openat2; the result fd is attached to `file_`
  close,            ///< close(2) of the fd in `fs_->owned_fd`
  statx,            ///< statx into `fs_->stx`
  fallocate,        ///< fallocate(fd, mode, offset, length)
  ftruncate,        ///< ftruncate(fd, offset)
  rename,           ///< renameat2
  unlink,           ///< unlinkat (AT_REMOVEDIR for directories)
  mkdir,            ///< mkdirat
  symlink,          ///< symlinkat
  link,             ///< linkat
  sync_file_range,  ///< sync_file_range(fd, offset, length, flags)
  fadvise,          ///< posix_fadvise(fd, offset, length, advice)
};

/// Number of op kinds (for per-kind bit masks).
inline constexpr unsigned op_kind_count = static_cast<unsigned>(op_kind::fadvise) + 1;

/// True for the file-system kinds (arguments in `op_base::fs_`).
constexpr bool is_fs_kind(op_kind k) noexcept { return k >= op_kind::open; }

/// Where an operation is in its life; guarded by the engine's mutex.
enum class op_state : std::uint8_t {
  queued,     ///< waiting in the engine's queue; the kernel has not seen it
  in_kernel,  ///< SQEs submitted (or a worker runs it); the kernel may use the buffers
  finished,   ///< result final; `complete_` runs soon
};

/// What the engine must do after accounting a kernel result.
enum class op_step : std::uint8_t {
  done,   ///< result final
  again,  ///< submit the rest (short transfer)
  wait,   ///< more completions of this round are still due (linked pair)
};

struct op_base {
  /// Frees the operation; then, when `invoke`, calls the handler with
  /// (`ec_`, `transferred_`) on its associated executor.
  using complete_fn = void (*)(op_base*, bool invoke);

  op_base(complete_fn fn, op_kind kind) noexcept : complete_(fn), kind_(kind) {}
  op_base(const op_base&) = delete;
  op_base& operator=(const op_base&) = delete;
  ~op_base();

  /// Copies a buffer sequence's non-empty buffers into the iovec array
  /// (throws std::bad_alloc when more than the inline ones cannot be had).
  template <class ConstBufferIterator>
  void set_buffers(ConstBufferIterator begin, ConstBufferIterator end);

  /// Checks the request before anything reaches the kernel: the file is
  /// open, `offset + size` fits in off_t, O_DIRECT alignment. Sets `ec_`.
  void validate() noexcept;

  /// Bytes still to transfer in this operation.
  std::size_t remaining() const noexcept { return remaining_; }
  /// The iovecs for the next kernel call (at most IOV_MAX of them).
  const iovec* iov() const noexcept { return iov_ + iov_first_; }
  unsigned iov_count() const noexcept;
  std::uint64_t next_offset() const noexcept { return offset_ + transferred_; }
  /// Number of SQEs (and CQEs) one round of this operation takes.
  unsigned sqes_per_round() const noexcept { return kind_ == op_kind::write_linked_fsync ? 2 : 1; }

  /// Accounts the result of the read/write/fsync call of this round
  /// (`res` as the kernel returns it: bytes or -errno).
  op_step on_result(int res) noexcept;
  /// Accounts the linked fsync's result of a write_linked_fsync round.
  op_step on_linked_fsync_result(int res) noexcept;
  /// Marks the operation aborted before the kernel saw it.
  void abort() noexcept;
  /// True when the op has no bytes to move and is not a sync or a
  /// file-system operation: engines complete it at once with 0 bytes.
  bool nothing_to_transfer() const noexcept {
    return remaining_ == 0 && kind_ != op_kind::fdatasync && kind_ != op_kind::fsync && !is_fs_kind(kind_);
  }

  complete_fn complete_;
  op_kind kind_;
  op_state state_ = op_state::queued;
  bool cancel_requested_ = false;
  /// A cancel request is queued for the engine (io_uring: ASYNC_CANCEL SQE).
  bool cancel_queued_ = false;
  /// Completions still due in the current round (linked pair: 2).
  std::uint8_t cqes_due_ = 0;
  /// The results of the current linked round, kept until both have come.
  int linked_write_res_ = 0;
  int linked_fsync_res_ = 0;

  /// The descriptor the kernel operates on; -1 refuses the op (EBADF).
  int fd_ = -1;
  /// The shared handle keeping `fd_` open, or null when the caller lends the
  /// fd for the duration of a blocking call. The op holds one reference.
  file_handle* file_ = nullptr;
  std::uint64_t offset_ = 0;
  /// Index of the registered buffer holding the (single) buffer, or -1. The
  /// io_uring engine then uses READ_FIXED/WRITE_FIXED; psync ignores it.
  int buf_index_ = -1;
  std::size_t transferred_ = 0;
  boost::system::error_code ec_;
  /// Arguments and kernel-read buffers of a file-system op (owned; freed
  /// with the op, i.e. only after its CQE has been reaped). Null otherwise.
  fs_args* fs_ = nullptr;
  /// Not on its file's list of ops (run by the io_uring engine's psync
  /// helper, whose lock does not guard that list): `cancel_file` does not
  /// reach it; per-operation cancellation still does.
  bool unlisted_ = false;
  /// Run by the io_uring engine's psync helper instead of the ring.
  bool on_helper_ = false;

  op_base* next_ = nullptr;       ///< engine queue link
  op_base* cancel_next_ = nullptr;  ///< io_uring engine: ops awaiting an ASYNC_CANCEL SQE
  op_base* cancel_prev_ = nullptr;
  op_base* kernel_next_ = nullptr;  ///< io_uring engine: list of ops in the kernel
  op_base* kernel_prev_ = nullptr;
  op_base* file_next_ = nullptr;  ///< per-file list of unfinished ops
  op_base* file_prev_ = nullptr;

 private:
  void push_iov(void* data, std::size_t size);
  void consume(std::size_t n) noexcept;
  void fail(int negative_errno) noexcept;
  op_step finish_linked_round() noexcept;
  op_step on_fs_result(int res) noexcept;
  void validate_fs() noexcept;

  static constexpr unsigned inline_iovs = 4;
  iovec inline_iov_[inline_iovs];
  iovec* iov_ = inline_iov_;
  unsigned iov_capacity_ = inline_iovs;
  unsigned iov_first_ = 0;
  unsigned iov_end_ = 0;
  std::size_t remaining_ = 0;
};

template <class ConstBufferIterator>
void op_base::set_buffers(ConstBufferIterator begin, ConstBufferIterator end) {
  for (; begin != end; ++begin) {
    auto b = *begin;
    if (b.size() != 0) push_iov(const_cast<void*>(static_cast<const void*>(b.data())), b.size());
  }
}

/// An intrusive FIFO of operations.
class op_queue {
 public:
  bool empty() const noexcept { return head_ == nullptr; }
  op_base* front() const noexcept { return head_; }
  void push_back(op_base* op) noexcept {
    op->next_ = nullptr;
    if (tail_)
      tail_->next_ = op;
    else
      head_ = op;
    tail_ = op;
  }
  void push_front(op_base* op) noexcept {
    op->next_ = head_;
    head_ = op;
    if (!tail_) tail_ = op;
  }
  op_base* pop() noexcept {
    op_base* op = head_;
    if (op) {
      head_ = op->next_;
      if (!head_) tail_ = nullptr;
      op->next_ = nullptr;
    }
    return op;
  }
  void splice(op_queue& other) noexcept {
    if (other.empty()) return;
    if (tail_)
      tail_->next_ = other.head_;
    else
      head_ = other.head_;
    tail_ = other.tail_;
    other.head_ = other.tail_ = nullptr;
  }

 private:
  op_base* head_ = nullptr;
  op_base* tail_ = nullptr;
};


}  // namespace fsys::detail
