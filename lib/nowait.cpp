// The inline fast path of asynchronous reads and writes (see detail/nowait.hpp).
#include <fsys/detail/engine.hpp>
#include <fsys/detail/file_handle.hpp>
#include <fsys/detail/nowait.hpp>
#include "hot_tls.hpp"

#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>

#include <cerrno>
#include <new>
#include <utility>

namespace fsys::detail {

namespace {

std::atomic<std::uint64_t> next_counters_id{1};

/// The calling thread's last looked-up blocks (a thread may serve a few
/// io_contexts), keyed by the counters' id: ids are never reused, so a stale
/// entry never matches.
struct counters_cache {
  static constexpr unsigned size = 4;
  std::uint64_t id[size] = {};
  inline_counters::block* b[size] = {};
  unsigned next = 0;  ///< entry replaced by the next miss
};
FSYS_HOT_TLS thread_local counters_cache tl_counters;

FSYS_HOT_TLS thread_local unsigned tl_inline_resumes = 0;

/// What the file's memory says about attempting now; counts down a skip.
bool memory_allows(file_handle::nowait_memory& mem) noexcept {
  if (mem.refused.load(std::memory_order_relaxed)) return false;
  if (mem.skip.load(std::memory_order_relaxed) > 0) {
    mem.skip.fetch_sub(1, std::memory_order_relaxed);
    return false;
  }
  return true;
}

/// Records a failed call (errno `err`, nothing transferred by this call;
/// `progress`: bytes the attempt transferred before it).
void note_failure(file_handle::nowait_memory& mem, int err, bool progress) noexcept {
  if (err == EOPNOTSUPP || err == EINVAL) {
    // The filesystem (or kernel) cannot do this without blocking at all
    // (tmpfs reads on older kernels, ext4 buffered writes): never again for
    // this file and direction. (Offsets and iovec counts are checked before
    // any attempt, so EINVAL is not the caller's request.)
    mem.refused.store(true, std::memory_order_relaxed);
  } else if (err == EAGAIN && !progress) {
    // A miss: after a run of them, stop paying for attempts for a while.
    if (mem.misses.fetch_add(1, std::memory_order_relaxed) + 1 >= nowait_miss_limit) {
      mem.misses.store(0, std::memory_order_relaxed);
      mem.skip.store(nowait_skip_ops, std::memory_order_relaxed);
    }
  }
}

/// Written only on a change of state: the memory is shared by every thread
/// using the file, and a store on every operation would bounce its line.
void note_success(file_handle::nowait_memory& mem) noexcept {
  if (mem.misses.load(std::memory_order_relaxed) != 0) mem.misses.store(0, std::memory_order_relaxed);
}

void count(inline_counters& c, bool read, bool done) noexcept {
  if (inline_counters::block* b = c.local()) {
    if (read)
      inline_counters::block::bump(done ? b->reads : b->read_fallthroughs);
    else
      inline_counters::block::bump(done ? b->writes : b->write_fallthroughs);
  }
}

}  // namespace

inline_counters::inline_counters() : id_(next_counters_id.fetch_add(1, std::memory_order_relaxed)) {}

inline_counters::~inline_counters() {
  for (block* b = head_; b;) delete std::exchange(b, b->next);
}

inline_counters::block* inline_counters::local() noexcept {
  counters_cache& tc = tl_counters;
  for (unsigned i = 0; i < counters_cache::size; ++i)
    if (tc.id[i] == id_) return tc.b[i];
  return local_slow();
}

inline_counters::block* inline_counters::local_slow() noexcept {
  counters_cache& tc = tl_counters;
  std::lock_guard lock(mutex_);
  block* b = head_;
  while (b && b->thread != &tc) b = b->next;
  if (!b) {
    // A thread's cache entry lives at a fixed address for the thread's life,
    // so it names the thread here; a later thread may get the same address,
    // and then simply continues that block's counts.
    b = new (std::nothrow) block;
    if (!b) return nullptr;
    b->thread = &tc;
    b->next = head_;
    head_ = b;
  }
  const unsigned i = tc.next;
  tc.next = (i + 1) % counters_cache::size;
  tc.id[i] = id_;
  tc.b[i] = b;
  return b;
}

inline_counters::totals inline_counters::sum() const noexcept {
  totals t;
  std::lock_guard lock(mutex_);
  for (const block* b = head_; b; b = b->next) {
    t.reads += b->reads.load(std::memory_order_relaxed);
    t.read_fallthroughs += b->read_fallthroughs.load(std::memory_order_relaxed);
    t.writes += b->writes.load(std::memory_order_relaxed);
    t.write_fallthroughs += b->write_fallthroughs.load(std::memory_order_relaxed);
    t.read_batched += b->read_batched.load(std::memory_order_relaxed);
    t.write_batched += b->write_batched.load(std::memory_order_relaxed);
    t.opens += b->opens.load(std::memory_order_relaxed);
    t.open_fallthroughs += b->open_fallthroughs.load(std::memory_order_relaxed);
    t.stats += b->stats.load(std::memory_order_relaxed);
    t.closes += b->closes.load(std::memory_order_relaxed);
  }
  return t;
}

namespace {

int choose_batch_threshold() noexcept {
  if (const char* v = std::getenv("FSYS_INLINE_BATCH_THRESHOLD")) {
    char* end = nullptr;
    const long n = std::strtol(v, &end, 10);
    if (end != v && *end == '\0' && n > 0 && n <= 1 << 20) return static_cast<int>(n);
  }
  // The cheapest of three rounds of 64 getppid calls (the least disturbed).
  double best = 1e9;
  for (int round = 0; round < 3; ++round) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < 64; ++i) (void)::syscall(SYS_getppid);
    const std::chrono::duration<double, std::nano> d = std::chrono::steady_clock::now() - t0;
    best = std::min(best, d.count() / 64);
  }
  return best >= 400 ? 2 : 16;
}

}  // namespace

int inline_batch_threshold() noexcept {
  static const int threshold = choose_batch_threshold();
  return threshold;
}

bool take_inline_resume() noexcept {
  if (++tl_inline_resumes <= inline_resume_limit) return true;
  tl_inline_resumes = 0;
  return false;
}

bool joins_batch(engine& e, bool read, inline_counters& c) noexcept {
  if (!e.batch_forming()) return false;
  c.add(read ? &inline_counters::block::read_batched : &inline_counters::block::write_batched);
  return true;
}

bool try_inline_transfer(op_base& op, inline_counters& c, engine& e) noexcept {
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
  // Nor untorn writes: their one RWF_ATOMIC write is made by the engine.
  if (!f || op.atomic_ || !f->nowait_candidate() || op.ec_ || op.remaining() == 0 || op.buf_index_ >= 0) return false;
  if (joins_batch(e, read, c)) return false;
  file_handle::nowait_memory& mem = f->nowait(read);
  if (!memory_allows(mem)) return false;
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
      note_failure(mem, err, op.transferred_ != before);
      // EAGAIN after progress, or any other error: the engine continues and
      // gives the authoritative result.
      count(c, read, false);
      return false;
    }
    note_success(mem);
    // The op's own transfer rules, as both engines apply them: a short
    // read_full/write_full continues (here, while the kernel makes progress),
    // 0 bytes ends a read at end of file. `n` fits in an int: the kernel
    // caps one call at MAX_RW_COUNT.
    if (op.on_result(static_cast<int>(n)) == op_step::done) {
      count(c, read, true);
      return true;
    }
  }
}

nowait_outcome nowait_direct(file_handle& f, int fd, bool read, bool full, iovec* iov, unsigned iovcnt,
                             std::uint64_t offset, std::size_t total, inline_counters& c) noexcept {
  nowait_outcome r;
  file_handle::nowait_memory& mem = f.nowait(read);
  if (!memory_allows(mem)) return r;
  unsigned first = 0;
  for (;;) {
    // Why this is sound: the caller holds the file (and so keeps `fd` open,
    // see file_handle) for the duration of this call, and the buffers are the
    // caller's, valid until its operation completes, which it cannot have
    // done yet: no operation exists. Both are used only during this system
    // call, in the initiating thread. RWF_NOWAIT makes the kernel return
    // EAGAIN instead of waiting for IO or locks, so the thread never blocks.
    const auto off = static_cast<off_t>(offset + r.transferred);
    const int cnt = static_cast<int>(iovcnt - first);
    const ssize_t n =
        read ? ::preadv2(fd, iov + first, cnt, off, RWF_NOWAIT) : ::pwritev2(fd, iov + first, cnt, off, RWF_NOWAIT);
    if (n < 0) {
      const int err = errno;
      if (err == EINTR) continue;
      note_failure(mem, err, r.transferred != 0);
      count(c, read, false);
      return r;
    }
    note_success(mem);
    auto k = static_cast<std::size_t>(n);
    r.transferred += k;
    if (k > 0 && (!full || r.transferred == total)) {
      r.done = true;
      count(c, read, true);
      return r;
    }
    if (k == 0 && read) {
      // End of file, by the operations' rules (op_base::on_result): a
      // read_some fails with eof, a read_full is done, short.
      r.done = true;
      r.eof = !full;
      count(c, read, true);
      return r;
    }
    if (k == 0) {
      // A write that took nothing: the operation applies its rules.
      count(c, read, false);
      return r;
    }
    // A short transfer of a `full` request: continue after it.
    while (k > 0) {
      iovec& v = iov[first];
      if (k >= v.iov_len) {
        k -= v.iov_len;
        ++first;
      } else {
        v.iov_base = static_cast<char*>(v.iov_base) + k;
        v.iov_len -= k;
        k = 0;
      }
    }
  }
}

}  // namespace fsys::detail
