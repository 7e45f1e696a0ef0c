// The inline fast path of asynchronous reads and writes (see detail/nowait.hpp).
#include <fsys/detail/file_handle.hpp>
#include <fsys/detail/nowait.hpp>

#include <sys/uio.h>

#include <cerrno>

namespace fsys::detail {

bool try_inline_transfer(op_base& op, inline_counters& c) noexcept {
  bool read;
  switch (op.kind_) {
    case op_kind::read_some:
    case op_kind::read_full:
      read = true;
      break;
    case op_kind::write_some:
    case op_kind::write_full:
      read = false;
      break;
    default:
      return false;  // syncs, linked writes, file-system operations: always the engine
  }
  file_handle* f = op.file_;
  // Only regular files without O_DIRECT: a pipe or socket read would return
  // EAGAIN whenever it is empty, and an O_DIRECT read never comes from the
  // page cache. Refused and empty ops are completed by the engine as before;
  // so are the fixed-buffer variants, whose buffers the ring checks against
  // the registered ones.
  if (!f || !f->nowait_candidate() || op.ec_ || op.remaining() == 0 || op.buf_index_ >= 0) return false;
  file_handle::nowait_memory& mem = f->nowait(read);
  if (mem.refused.load(std::memory_order_relaxed)) return false;
  if (mem.skip.load(std::memory_order_relaxed) > 0) {
    mem.skip.fetch_sub(1, std::memory_order_relaxed);
    return false;
  }
  const std::size_t before = op.transferred_;
  for (;;) {
    // Why this is sound: the fd is kept open by the op's reference to `f`,
    // and the buffers are the caller's, valid until the handler runs; both
    // are used only during this system call, made by the initiating thread
    // before any engine or kernel request knows the op. RWF_NOWAIT makes the
    // kernel return EAGAIN instead of waiting for IO or locks, so the thread
    // (possibly the io_context's) never blocks here.
    const auto off = static_cast<off_t>(op.next_offset());
    const int iovcnt = static_cast<int>(op.iov_count());
    const ssize_t n = read ? ::preadv2(op.fd_, op.iov(), iovcnt, off, RWF_NOWAIT)
                           : ::pwritev2(op.fd_, op.iov(), iovcnt, off, RWF_NOWAIT);
    if (n < 0) {
      const int err = errno;
      if (err == EINTR) continue;
      if (err == EOPNOTSUPP || err == EINVAL) {
        // The filesystem (or kernel) cannot do this without blocking at all
        // (tmpfs reads on older kernels, ext4 buffered writes): never again
        // for this file and direction.
        mem.refused.store(true, std::memory_order_relaxed);
      } else if (err == EAGAIN && op.transferred_ == before) {
        // A miss: after a run of them, stop paying for attempts for a while.
        if (mem.misses.fetch_add(1, std::memory_order_relaxed) + 1 >= nowait_miss_limit) {
          mem.misses.store(0, std::memory_order_relaxed);
          mem.skip.store(nowait_skip_ops, std::memory_order_relaxed);
        }
      }
      // EAGAIN after progress, or any other error: the engine continues and
      // gives the authoritative result.
      (read ? c.read_fallthroughs : c.write_fallthroughs).fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    if (mem.misses.load(std::memory_order_relaxed) != 0) mem.misses.store(0, std::memory_order_relaxed);
    // The op's own transfer rules, as both engines apply them: a short
    // read_full/write_full continues (here, while the kernel makes progress),
    // 0 bytes ends a read at end of file. `n` fits in an int: the kernel
    // caps one call at MAX_RW_COUNT.
    if (op.on_result(static_cast<int>(n)) == op_step::done) {
      (read ? c.reads : c.writes).fetch_add(1, std::memory_order_relaxed);
      return true;
    }
  }
}

}  // namespace fsys::detail
