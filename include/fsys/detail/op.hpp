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

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

namespace fsys::detail {

/// Whether fsys keeps freed operation-side blocks (fs_args, file handles) in
/// per-thread caches for reuse. Off under AddressSanitizer, so that a use
/// after free of those blocks is still reported.
#if defined(__SANITIZE_ADDRESS__)
#define FSYS_DETAIL_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FSYS_DETAIL_ASAN 1
#endif
#endif
#ifdef FSYS_DETAIL_ASAN
inline constexpr bool recycle_blocks = false;
#else
inline constexpr bool recycle_blocks = true;
#endif

/// Frees the calling thread's cached blocks (tests that count allocations
/// or inject allocation failures start from an empty cache).
void release_thread_caches() noexcept;

class file_handle;
struct op_base;

/// The link between a handler's cancellation slot and its operation. It lives
/// inside the slot's handler object (`cancel_request`), i.e. in memory the
/// emitter owns, never in the operation: an emit that comes after the
/// operation finished (from a strand, a timer, another thread) finds `op_`
/// null under the engine's lock and does nothing, however late it is and
/// whatever reused the operation's memory since. The engine sets `op_` to
/// null, under its lock, when the operation's result becomes final.
///
/// `owner_` is the engine whose lock guards `op_`. An engine that hands an
/// operation to another (the io_uring engine's psync helper) changes it
/// under its own lock before the hand-over; an emit that reached the old
/// owner is forwarded (see `engine::cancel`). Both are atomic because the
/// emitter reads `owner_` without a lock and engines may read `op_` under
/// different locks during a hand-over.
struct cancel_link {
  std::atomic<op_base*> op_{nullptr};
  std::atomic<class engine*> owner_{nullptr};
};
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
  /// getdents64(fd, fs_->buffer, fs_->buffer_size): one batch of directory
  /// entries; bytes filled in `transferred_`, 0 at the end. io_uring has no
  /// opcode for it: always run where blocking calls run (a psync worker).
  getdents,
  // Metadata (detail/fs_args.hpp). AT_EMPTY_PATH in `fs_->flags`: on the
  // open file `fd_`; otherwise on `fs_->path`.
  chmod,        ///< fchmodat / fchmodat2 (nofollow) / fchmod
  chown,        ///< fchownat / fchown
  utimens,      ///< utimensat / futimens
  getxattr,     ///< getxattr / fgetxattr into `fs_->value` (sized by the result rules)
  setxattr,     ///< setxattr / fsetxattr of `fs_->value`
  listxattr,    ///< listxattr / flistxattr into `fs_->value` (sized by the result rules)
  removexattr,  ///< removexattr / fremovexattr
  // Copies (async_copy_file): no io_uring opcode, so the io_uring engine
  // runs them on its psync helper. The source fd is `fs_->src_fd`.
  clone_file,        ///< ioctl(fd, FICLONE, src_fd): the whole file shares the source's extents
  copy_file_range,   ///< copy_file_range(src_fd, offset, fd, offset, length); bytes → transferred_
  copy_attributes,   ///< fchown / fchmod of fd as fstat(src_fd) says, futimens from `fs_->stx` (`fs_->flags`: copy_attr_*)
};

/// Number of op kinds (for per-kind bit masks).
inline constexpr unsigned op_kind_count = static_cast<unsigned>(op_kind::copy_attributes) + 1;
// Engines keep per-kind bits in 32-bit masks (ring_fs_kinds, refused kinds).
static_assert(op_kind_count <= 32, "op_kind masks are 32 bits");

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
  /// open, `offset + size` fits in off_t, O_DIRECT alignment, and for an
  /// untorn write the kernel's RWF_ATOMIC rules (see `validate_atomic`).
  /// Sets `ec_`.
  void validate() noexcept;

  /// Bytes still to transfer in this operation.
  std::size_t remaining() const noexcept { return remaining_; }
  /// The iovecs for the next kernel call (at most IOV_MAX of them).
  const iovec* iov() const noexcept { return iov_ + iov_first_; }
  unsigned iov_count() const noexcept;
  std::uint64_t next_offset() const noexcept { return offset_ + transferred_; }
  /// Number of SQEs (and CQEs) one round of this operation takes.
  /// (A linked write with nothing left to write sends its fsync alone.)
  unsigned sqes_per_round() const noexcept {
    return kind_ == op_kind::write_linked_fsync && remaining_ > 0 ? 2 : 1;
  }

  /// Accounts the result of the read/write/fsync call of this round
  /// (`res` as the kernel returns it: bytes or -errno).
  op_step on_result(int res) noexcept;
  /// Accounts the linked fsync's result of a write_linked_fsync round.
  op_step on_linked_fsync_result(int res) noexcept;
  /// Marks the operation aborted before the kernel saw it.
  void abort() noexcept;
  /// True for fdatasync, fsync and write_linked_fsync: the kinds whose
  /// success means "durable" (see `engine::settle_sync`).
  bool is_sync() const noexcept {
    return kind_ == op_kind::fdatasync || kind_ == op_kind::fsync || kind_ == op_kind::write_linked_fsync;
  }
  /// True when the operation has nothing to do at all: an empty transfer,
  /// completed with 0 bytes (as Asio does) without reaching the kernel. A
  /// linked write whose bytes are all written but whose sync must run again
  /// is not empty.
  bool is_empty_transfer() const noexcept {
    return remaining_ == 0 && transferred_ == 0 && kind_ != op_kind::fdatasync && kind_ != op_kind::fsync &&
           !is_fs_kind(kind_);
  }

  /// How many times the engine resubmitted work the kernel cancelled or
  /// failed without the user asking (see `on_result`), bounded by
  /// `max_kernel_retries`.
  static constexpr std::uint8_t max_kernel_retries = 4;

  complete_fn complete_;
  op_kind kind_;
  op_state state_ = op_state::queued;
  bool cancel_requested_ = false;
  /// The operation runs on a descriptor without a position (pipe, socket,
  /// character device): it may wait indefinitely, so engines keep such
  /// operations out of the capacity that file IO needs.
  bool stream_ = false;
  /// Completed by `engine::settle_sync` only once every sync of the same
  /// file that was in flight when it finished has finished too.
  bool sync_held_ = false;
  std::uint8_t kernel_retries_ = 0;
  /// The cancellation slot's link to this op, or null (see cancel_link).
  cancel_link* cancel_link_ = nullptr;
  /// Sync ordering on the op's file (see `engine::settle_sync`): the
  /// sequence number given at start, and the number every sync started
  /// before this one finished must have left behind.
  std::uint64_t sync_seq_ = 0;
  std::uint64_t sync_wait_seq_ = 0;
  /// `submitter_exits()` when the op was last submitted: if a submitting
  /// thread has exited since, a failure may be the kernel tearing down that
  /// thread's requests, and the op is resubmitted (bounded).
  std::uint64_t submit_epoch_ = 0;
  /// A cancel request is queued for the engine (io_uring: ASYNC_CANCEL SQE).
  bool cancel_queued_ = false;
  /// Completions still due in the current round (linked pair: 2).
  std::uint8_t cqes_due_ = 0;
  /// The results of the current linked round, kept until both have come.
  int linked_write_res_ = 0;
  int linked_fsync_res_ = 0;

  /// An untorn write (`async_write_atomic_at`: kind write_some;
  /// `async_write_atomic_linked_fsync`: kind write_linked_fsync): one kernel
  /// write flagged RWF_ATOMIC (io_uring: `sqe->rw_flags`; psync:
  /// `pwritev2`), checked against the file's limits by `validate`, never
  /// split, never tried inline, and never continued after a short write
  /// (`on_result`: errc::atomic_write_short).
  bool atomic_ = false;

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
  /// Completed by its initiating function (the inline fast path, see
  /// `try_inline_transfer`): the handler is posted, never dispatched.
  bool completed_inline_ = false;
  /// Completed inline, with its handler queued on the service's own
  /// io_context: the engine's count of outstanding reads and writes
  /// (`engine::pending_counter`) that holds it until that handler runs.
  std::atomic<int>* inline_pending_ = nullptr;

  op_base* next_ = nullptr;       ///< engine queue link
  op_base* cancel_next_ = nullptr;  ///< io_uring engine: ops awaiting an ASYNC_CANCEL SQE
  op_base* cancel_prev_ = nullptr;
  /// io_uring ring_set: the ring whose chain count holds this op, from its
  /// start until just before its handler runs (see `ring_chains`).
  void* chain_ring_ = nullptr;
  op_base* kernel_next_ = nullptr;  ///< io_uring engine: list of ops in the kernel
  op_base* kernel_prev_ = nullptr;
  op_base* file_next_ = nullptr;  ///< per-file list of unfinished ops
  op_base* file_prev_ = nullptr;
  op_base* held_next_ = nullptr;  ///< engine's list of held syncs
  op_base* held_prev_ = nullptr;
  /// The sync itself (not the write before it) failed: the file's sync
  /// error becomes sticky (see `engine::settle`).
  bool sync_failed_ = false;

 private:
  void push_iov(void* data, std::size_t size);
  void consume(std::size_t n) noexcept;
  void fail(int negative_errno) noexcept;
  op_step finish_linked_round() noexcept;
  /// A negative result the user did not cause: -ECANCELED without a cancel
  /// request (io-wq could not start a worker), or a failure right after a
  /// submitting thread exited. Returns `again` while retries remain.
  bool retry_unrequested(int negative_errno) noexcept;
  op_step on_fs_result(int res) noexcept;
  op_step on_xattr_result(int res) noexcept;
  void validate_fs() noexcept;
  void validate_atomic() noexcept;

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

/// A counter of exits of threads that submitted to a ring (process-wide).
/// io_uring ties a request to the thread that submitted it and tears the
/// request down when that thread exits; an op that fails after such an exit
/// is given another try (see `op_base::retry_unrequested`).
std::uint64_t submitter_exits() noexcept;
/// Marks the calling thread as a submitter, so that its exit is counted.
void note_submitter_thread() noexcept;

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
