// Transfer rules shared by both backends, and the shared file handle.
#include <fsys/detail/engine.hpp>
#include <fsys/detail/file_handle.hpp>
#include <fsys/detail/fs_args.hpp>
#include <fsys/detail/op.hpp>
#include <fsys/error.hpp>
#include "hot_tls.hpp"
#include "kernel_statx.hpp"

#include <boost/asio/error.hpp>

#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>

namespace fsys::detail {

// ---- file_handle -----------------------------------------------------------

namespace {

// Recycled handle memory, per thread (see fs_args::make for the same idea).
// A handle lives as long as its file is open, so the cache is sized for the
// files a loop thread opens and closes at once (32 requests in flight, each
// advancing one step per pass, keep about 32 open): 32 blocks of
// sizeof(file_handle) (112 bytes on x86-64), 3.5 KiB per thread.
void free_handle_block(void* p) noexcept { ::operator delete(p); }
using handle_cache = thread_cache<void, recycle_blocks ? 32 : 0, free_handle_block>;

}  // namespace

void release_thread_caches() noexcept {
  handle_cache::clear();
  release_fs_args_cache();
}

void* file_handle::operator new(std::size_t size) {
  if (size == sizeof(file_handle))
    if (void* p = handle_cache::take()) return p;
  return ::operator new(size);
}

void file_handle::operator delete(void* p) noexcept {
  if (p && !handle_cache::give(p)) ::operator delete(p);
}

file_handle* file_handle::create(int fd, bool owns_fd) {
  auto* h = new file_handle(fd, owns_fd);
  const int fl = ::fcntl(fd, F_GETFL);
  if (fl >= 0 && (fl & O_DIRECT)) {
    h->direct_ = true;
    h->ask_direct_alignment(fd);
  }
  return h;
}

file_handle* file_handle::create_opening() { return new file_handle(opening, true); }

void file_handle::ask_direct_alignment(int fd) noexcept {
  // Ask the kernel which alignment O_DIRECT needs for this file (memory
  // alignment follows the device's DMA alignment, not the sector size); the
  // same statx gives the type and device, and the untorn-write limits
  // (RWF_ATOMIC needs O_DIRECT, so only such a file needs them): the checks
  // of async_write_atomic_at then cost nothing, and no statx runs on an
  // io_context thread for them. AT_STATX_DONT_SYNC: answered from memory.
  struct statx stx;
  std::memset(&stx, 0, sizeof stx);
  if (::statx(fd, "", AT_EMPTY_PATH | AT_STATX_DONT_SYNC, STATX_TYPE | STATX_DIOALIGN | statx_write_atomic, &stx) !=
      0)
    return;
  if ((stx.stx_mask & STATX_DIOALIGN) && stx.stx_dio_offset_align != 0) {
    dio_mem_align_ = stx.stx_dio_mem_align;
    dio_offset_align_ = stx.stx_dio_offset_align;
  }
  if (const detail::atomic_write_limits l = read_atomic_write_limits(stx); l.supported)
    atomic_ = atomic_limits{l.unit_min, l.unit_max, l.segments_max};
  learn(stx);
}

void file_handle::attach(int fd, bool direct) noexcept {
  if (direct) {
    direct_ = true;
    ask_direct_alignment(fd);
  }
  // Release: a thread that sees the fd also sees `direct_` and the alignment.
  fd_.store(fd, std::memory_order_release);
}

void file_handle::restore_status_flags(int fd) const noexcept {
  const int flags = pending_status_flags_.load(std::memory_order_acquire);
  if (flags < 0 || fd < 0) return;
  // F_SETFL sets only O_APPEND, O_NONBLOCK, O_DIRECT, O_NOATIME and FASYNC
  // (the access mode and creation flags in `flags` are ignored), so the file
  // ends with exactly the caller's status flags. Threads that race here make
  // the same call; each returns only after its own has been made, and the
  // release store tells later callers (acquire in blocking_fd) it is done.
  // A failure is not reachable in practice (a live descriptor, flags the
  // open accepted); the flag is then left as it is rather than retried.
  ::fcntl(fd, F_SETFL, flags);
  pending_status_flags_.store(-1, std::memory_order_release);
}

std::uint64_t file_handle::pack_attributes(const struct statx& stx) noexcept {
  std::uint64_t a = attr_known;
  if (stx.stx_mask & STATX_TYPE) {
    if (S_ISREG(stx.stx_mode)) a |= attr_regular;
    if (!S_ISREG(stx.stx_mode) && !S_ISBLK(stx.stx_mode) && !S_ISDIR(stx.stx_mode)) a |= attr_stream;
  }
  // stx_dev_* are always filled; a minor beyond 20 bits would be a new
  // kernel's: the device is then "unknown" (0), which no fast path trusts.
  if (stx.stx_dev_minor < (1u << attr_minor_bits))
    a |= std::uint64_t{stx.stx_dev_major} << attr_minor_bits | stx.stx_dev_minor;
  return a;
}

void file_handle::learn(const struct statx& stx) noexcept {
  if (!(stx.stx_mask & STATX_TYPE)) return;
  if (attrs_.load(std::memory_order_relaxed) & attr_known) return;
  attrs_.store(pack_attributes(stx), std::memory_order_relaxed);
}

std::uint64_t file_handle::fetch_attributes() const noexcept {
  const int fd = fd_.load(std::memory_order_acquire);
  if (fd < 0) return 0;
  // The type and device of an open file never change, and AT_STATX_DONT_SYNC
  // makes every filesystem answer from memory (FUSE and NFS included).
  struct statx stx;
  std::memset(&stx, 0, sizeof stx);
  std::uint64_t a = attr_known;  // a failed statx: known to be nothing special
  if (::statx(fd, "", AT_EMPTY_PATH | AT_STATX_DONT_SYNC, STATX_TYPE, &stx) == 0 && (stx.stx_mask & STATX_TYPE))
    a = pack_attributes(stx);
  attrs_.store(a, std::memory_order_relaxed);
  return a;
}

int file_handle::close_now() noexcept {
  const int fd = fd_.load(std::memory_order_acquire);
  const bool owned = owns_fd_.load(std::memory_order_relaxed) && fd >= 0;
  int err = 0;
  if (op_base* op = close_op_) {
    // async_close: the close goes to the engine, now that no operation of
    // this file can reach the kernel any more. The op owns the fd from here
    // (its fs_args closes it if the op is destroyed without running).
    if (owned) {
      op->fd_ = fd;
      op->fs_->owned_fd = fd;
    } else {
      op->ec_ = boost::asio::error::bad_descriptor;
    }
    close_engine_->start(op);
  } else if (owned && ::close(fd) != 0) {
    err = errno;
  }
  delete this;
  return err;
}

void file_handle::release() noexcept {
  if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) close_now();
}

int file_handle::release_owner() noexcept {
  if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) return close_now();
  return 0;
}

// ---- op_base ---------------------------------------------------------------

op_base::~op_base() {
  fs_args::recycle(fs_);
  // An open that ended without attaching a descriptor (cancelled before the
  // kernel saw it, refused, dropped at shutdown) leaves its file closed.
  if (kind_ == op_kind::open && file_ && file_->fd() == file_handle::opening) file_->set_failed();
  if (iov_ != inline_iov_) std::free(iov_);
  if (file_) file_->release();
}

void op_base::push_iov(void* data, std::size_t size) {
  if (iov_end_ == iov_capacity_) {
    unsigned cap = iov_capacity_ * 2;
    auto* p = static_cast<iovec*>(std::malloc(cap * sizeof(iovec)));
    if (!p) throw std::bad_alloc();
    std::memcpy(p, iov_, iov_end_ * sizeof(iovec));
    if (iov_ != inline_iov_) std::free(iov_);
    iov_ = p;
    iov_capacity_ = cap;
  }
  iov_[iov_end_++] = iovec{data, size};
  remaining_ += size;
}

unsigned op_base::iov_count() const noexcept {
  unsigned n = iov_end_ - iov_first_;
  return n > IOV_MAX ? IOV_MAX : n;
}

void op_base::validate() noexcept {
  namespace aerr = boost::asio::error;
  if (fs_) return validate_fs();
  if (fd_ < 0) {
    ec_ = aerr::bad_descriptor;
    return;
  }
  constexpr std::uint64_t off_max = static_cast<std::uint64_t>(std::numeric_limits<off_t>::max());
  if (offset_ > off_max || remaining_ > off_max - offset_) {
    ec_ = make_error_code(errc::offset_overflow);
    return;
  }
  if (!file_) return;  // a borrowed fd (blocking_ring): the kernel checks alignment
  if (atomic_) {
    validate_atomic();
    if (ec_) return;
  }
  if (std::uint32_t ma = file_->dio_mem_align(), oa = file_->dio_offset_align(); oa != 0) {
    if (kind_ == op_kind::fdatasync || kind_ == op_kind::fsync) return;
    bool ok = offset_ % oa == 0;
    for (unsigned i = iov_first_; ok && i < iov_end_; ++i) {
      ok = reinterpret_cast<std::uintptr_t>(iov_[i].iov_base) % (ma ? ma : 1) == 0 &&
           iov_[i].iov_len % oa == 0;
    }
    if (!ok) ec_ = make_error_code(errc::misaligned_direct_io);
  }
}

// The kernel's rules for RWF_ATOMIC (Linux 6.11 to 6.18: kiocb_set_rw_flags,
// generic_atomic_write_valid, xfs/ext4 write_iter), each refused with an
// errc that names its reason (see error.hpp). The
// limits were read when the O_DIRECT descriptor was attached (see
// file_handle::atomic_write_limits); the kernel checks again, and anything it
// still refuses comes back as its errno.
void op_base::validate_atomic() noexcept {
  const std::size_t len = remaining_;
  if (!file_->direct()) {
    // The kernel refuses buffered RWF_ATOMIC writes with EOPNOTSUPP.
    ec_ = make_error_code(errc::atomic_write_needs_direct_io);
    return;
  }
  const file_handle::atomic_limits& l = file_->atomic_write_limits();
  if (l.unit_min == 0 || l.unit_max == 0) {
    // No FMODE_CAN_ATOMIC_WRITE: the kernel would answer EOPNOTSUPP.
    ec_ = make_error_code(errc::atomic_write_unsupported);
    return;
  }
  if (len == 0 || (len & (len - 1)) != 0) {
    ec_ = make_error_code(errc::atomic_write_length_not_power_of_two);
    return;
  }
  if (len < l.unit_min || len > l.unit_max) {
    ec_ = make_error_code(errc::atomic_write_length_out_of_range);
    return;
  }
  if (offset_ % len != 0) {
    ec_ = make_error_code(errc::atomic_write_misaligned_offset);
    return;
  }
  // iter_is_ubuf (one segment) up to 6.18; segments_max says so (1).
  if (iov_end_ - iov_first_ > (l.segments_max ? l.segments_max : 1))
    ec_ = make_error_code(errc::atomic_write_too_many_segments);
}

void op_base::consume(std::size_t n) noexcept {
  transferred_ += n;
  remaining_ -= n;
  while (n > 0 && iov_first_ < iov_end_) {
    iovec& v = iov_[iov_first_];
    if (n >= v.iov_len) {
      n -= v.iov_len;
      ++iov_first_;
    } else {
      v.iov_base = static_cast<char*>(v.iov_base) + n;
      v.iov_len -= n;
      n = 0;
    }
  }
}

void op_base::fail(int negative_errno) noexcept {
  // operation_aborted means one thing: the user asked for cancellation
  // (a cancellation slot, cancel(), close()) and the work was not done. A
  // -ECANCELED nobody asked for (io-wq could not create a worker, the
  // submitting thread exited) reaches here only after its retries, and is
  // reported as what it is.
  if (negative_errno == -ECANCELED && !cancel_requested_)
    ec_ = make_error_code(errc::kernel_worker_unavailable);
  else if (negative_errno == -ECANCELED || (cancel_requested_ && negative_errno == -EINTR))
    ec_ = boost::asio::error::operation_aborted;
  else
    ec_ = boost::system::error_code(-negative_errno, boost::system::system_category());
}

bool op_base::retry_unrequested(int negative_errno) noexcept {
  if (cancel_requested_ || kernel_retries_ >= max_kernel_retries) return false;
  // -ECANCELED without a request: the kernel cancelled work it never ran
  // (io-wq worker creation failed, or the submitting thread exited). Any
  // other failure right after a submitting thread exited may be that
  // thread's teardown (buffered reads come back -EFAULT): one more try tells.
  const bool submitter_left = submitter_exits() != submit_epoch_;
  if (negative_errno != -ECANCELED && !(submitter_left && negative_errno == -EFAULT)) return false;
  ++kernel_retries_;
  return true;
}

void op_base::abort() noexcept { ec_ = boost::asio::error::operation_aborted; }

op_step op_base::on_result(int res) noexcept {
  if (is_fs_kind(kind_)) return on_fs_result(res);
  if (kind_ == op_kind::write_linked_fsync) {
    // The write half of a linked round: keep it until the fsync's CQE has
    // come too (-ECANCELED when the link broke); either may arrive first.
    linked_write_res_ = res;
    return --cqes_due_ == 0 ? finish_linked_round() : op_step::wait;
  }
  cqes_due_ = 0;
  if (res < 0) {
    if (retry_unrequested(res)) return op_step::again;
    fail(res);
    if (kind_ == op_kind::fdatasync || kind_ == op_kind::fsync) sync_failed_ = !cancel_requested_ && res != -ECANCELED;
    return op_step::done;
  }
  auto n = static_cast<std::size_t>(res);
  switch (kind_) {
    case op_kind::fdatasync:
    case op_kind::fsync:
      return op_step::done;
    case op_kind::read_some:
      consume(n);
      if (n == 0 && remaining_ > 0) ec_ = boost::asio::error::eof;
      return op_step::done;
    case op_kind::write_some:
      consume(n);
      // An untorn write is all or nothing: a short one is never continued
      // (that would be two writes, which a power cut may tear apart).
      if (atomic_ && remaining_ > 0) ec_ = make_error_code(errc::atomic_write_short);
      return op_step::done;
    case op_kind::read_full:
      consume(n);
      // 0 bytes means end of file: the read is complete, short.
      if (n == 0 || remaining_ == 0) return op_step::done;
      return cancel_requested_ ? (abort(), op_step::done) : op_step::again;
    case op_kind::write_full:
      if (n == 0 && remaining_ > 0) {
        // A regular file never accepts 0 bytes without an error; do not spin.
        ec_ = boost::system::error_code(EIO, boost::system::system_category());
        return op_step::done;
      }
      consume(n);
      if (remaining_ == 0) return op_step::done;
      return cancel_requested_ ? (abort(), op_step::done) : op_step::again;
    default:
      break;
  }
  return op_step::done;
}

op_step op_base::on_linked_fsync_result(int res) noexcept {
  linked_fsync_res_ = res;
  return --cqes_due_ == 0 ? finish_linked_round() : op_step::wait;
}

op_step op_base::finish_linked_round() noexcept {
  const int wres = linked_write_res_;
  const int fsync_res = linked_fsync_res_;
  if (wres < 0 && retry_unrequested(wres)) return op_step::again;
  if (wres < 0) {
    // The write failed (or was cancelled); the kernel cancelled the fsync.
    // Report the write's error with the bytes written by earlier rounds. An
    // earlier round only exists after a short write, whose fsync the kernel
    // cancelled: none of these bytes is known to be durable.
    fail(wres);
    return op_step::done;
  }
  auto n = static_cast<std::size_t>(wres);
  if (n == 0 && remaining_ > 0) {
    ec_ = boost::system::error_code(EIO, boost::system::system_category());
    return op_step::done;
  }
  consume(n);
  if (remaining_ > 0 && atomic_) {
    // An untorn write is never continued (see on_result); the kernel
    // cancelled the fsync: neither untorn nor durable.
    ec_ = make_error_code(errc::atomic_write_short);
    return op_step::done;
  }
  if (remaining_ > 0) {
    // Short write: the kernel broke the link, so the fsync did not run (or
    // ran on part of the data). Never report this as success: write the rest
    // with a new linked fsync, which syncs all of it.
    return cancel_requested_ ? (abort(), op_step::done) : op_step::again;
  }
  // Everything written; durable only if this round's fsync succeeded. An
  // fsync the kernel cancelled without a request (it never ran) runs again
  // on its own (the engines send only the fsync when nothing is left to write).
  if (fsync_res < 0 && retry_unrequested(fsync_res)) return op_step::again;
  if (fsync_res < 0) {
    fail(fsync_res);
    sync_failed_ = !cancel_requested_ && fsync_res != -ECANCELED;
  }
  return op_step::done;
}

namespace {
std::atomic<std::uint64_t> submitter_exit_count{0};
struct submitter_mark {
  ~submitter_mark() { submitter_exit_count.fetch_add(1, std::memory_order_release); }
};
}  // namespace

std::uint64_t submitter_exits() noexcept { return submitter_exit_count.load(std::memory_order_acquire); }

void note_submitter_thread() noexcept {
  // A thread_local with a destructor: constructed on first use in each
  // thread that submits, counted when that thread exits.
  thread_local submitter_mark mark;
  (void)mark;
}

// ---- file-system operations ------------------------------------------------

void op_base::validate_fs() noexcept {
  constexpr std::uint64_t off_max = static_cast<std::uint64_t>(std::numeric_limits<off_t>::max());
  switch (kind_) {
    case op_kind::fallocate:
    case op_kind::sync_file_range:
    case op_kind::fadvise:
      if (fd_ < 0) {
        ec_ = make_error_code(errc::not_open);
      } else if (offset_ > off_max || fs_->length > off_max - offset_) {
        ec_ = make_error_code(errc::offset_overflow);
      }
      return;
    case op_kind::clone_file:
    case op_kind::copy_file_range:
    case op_kind::copy_attributes:
      if (fd_ < 0 || fs_->src_fd < 0)
        ec_ = make_error_code(errc::not_open);
      else if (offset_ > off_max || fs_->length > off_max - offset_)
        ec_ = make_error_code(errc::offset_overflow);
      return;
    case op_kind::ftruncate:
      if (fd_ < 0)
        ec_ = make_error_code(errc::not_open);
      else if (offset_ > off_max)
        ec_ = make_error_code(errc::offset_overflow);
      return;
    case op_kind::getdents:
      if (fd_ < 0)
        ec_ = make_error_code(errc::not_open);
      else if (!fs_->buffer || fs_->buffer_size == 0)
        // No buffer: another batch of the same directory holds it.
        ec_ = boost::system::error_code(EINPROGRESS, boost::system::system_category());
      return;
    case op_kind::statx:
    case op_kind::chmod:
    case op_kind::chown:
    case op_kind::utimens:
    case op_kind::getxattr:
    case op_kind::setxattr:
    case op_kind::listxattr:
    case op_kind::removexattr:
      // On an open file: AT_EMPTY_PATH (statx(fd, "", AT_EMPTY_PATH), fchmod...).
      if ((fs_->flags & AT_EMPTY_PATH) && fd_ < 0) ec_ = make_error_code(errc::not_open);
      return;
    default:
      return;  // path operations: paths were checked by the initiating function
  }
}

// The result rules of every file-system operation, for both backends (and the
// io_uring engine's psync helper): `res` as io_uring returns it.
op_step op_base::on_fs_result(int res) noexcept {
  cqes_due_ = 0;
  // Work the kernel cancelled on its own goes round again (see on_result).
  if (res < 0 && retry_unrequested(res)) return op_step::again;
  if (res >= 0 && fs_->ring_refused) {
    // The ring refused this kind (EINVAL/EOPNOTSUPP) and the system call did
    // it: remember, so that the ring sends the kind to the helper from now on.
    fs_->ring_refused->fetch_or(1u << static_cast<unsigned>(kind_), std::memory_order_relaxed);
  }
  if (kind_ == op_kind::getxattr || kind_ == op_kind::listxattr) return on_xattr_result(res);
  if (kind_ == op_kind::open) {
    if (res >= 0 && cancel_requested_) {
      // Cancelled, but the kernel opened the file anyway: the caller is told
      // operation_aborted, so nobody would ever close this fd. Close it.
      ::close(res);
      abort();
      if (file_) file_->set_failed();
      return op_step::done;
    }
    if (res >= 0) {
      if (file_)
        file_->attach(res, (fs_->flags & O_DIRECT) != 0);
      else
        fs_->owned_fd = res;
      return op_step::done;
    }
    fail(res);
    if (file_) file_->set_failed();
    return op_step::done;
  }
  if (res < 0) {
    fail(res);
  } else if (kind_ == op_kind::statx && file_) {
    file_->learn(fs_->stx);  // the file's type and device, for the fast paths
  } else if (kind_ == op_kind::copy_file_range) {
    transferred_ = static_cast<std::size_t>(res);  // bytes copied (0: end of the source)
  } else if (kind_ == op_kind::getdents) {
    transferred_ = static_cast<std::size_t>(res);  // bytes of entries; 0 at the end
  }
  return op_step::done;
}

// getxattr / listxattr: the buffer (`fs_->value`) starts at a guess; ERANGE
// (too small) asks the kernel for the size (a round with an empty buffer),
// then reads again into a buffer of that size. A value that grows between
// the two rounds answers ERANGE again and goes round once more, up to
// `max_xattr_rounds` rounds; a value that shrinks is simply shorter.
op_step op_base::on_xattr_result(int res) noexcept {
  constexpr std::uint8_t max_xattr_rounds = 8;
  fs_args& a = *fs_;
  const bool sizing = a.value.empty();
  if (res == -ERANGE || (res > 0 && sizing)) {
    if (cancel_requested_) {
      abort();
      return op_step::done;
    }
    if (++a.rounds > max_xattr_rounds) {
      fail(-ERANGE);
      return op_step::done;
    }
    try {
      if (res == -ERANGE)
        a.value.clear();  // a round asking for the size
      else
        a.value.resize(static_cast<std::size_t>(res));
    } catch (...) {
      fail(-ENOMEM);
      return op_step::done;
    }
    return op_step::again;
  }
  if (res < 0) {
    fail(res);
    return op_step::done;
  }
  a.value.resize(static_cast<std::size_t>(res));  // shrinking: never throws
  if (kind_ == op_kind::listxattr) {
    // The names, each NUL-terminated.
    try {
      a.names.clear();
      for (std::size_t at = 0; at < a.value.size();) {
        std::size_t end = a.value.find('\0', at);
        if (end == std::string::npos) end = a.value.size();
        if (end > at) a.names.emplace_back(a.value, at, end - at);
        at = end + 1;
      }
    } catch (...) {
      fail(-ENOMEM);
    }
  }
  return op_step::done;
}

}  // namespace fsys::detail
