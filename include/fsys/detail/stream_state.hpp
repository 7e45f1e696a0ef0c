// fsys — the shared state of a stream file: its position, its read-ahead
// reads and write-behind writes, and the caller operations waiting on them.
#pragma once

#include <fsys/stream_options.hpp>

#include <fsys/detail/asio.hpp>
#include <fsys/detail/file_op.hpp>
#include <fsys/error.hpp>
#include <fsys/file.hpp>

#include <boost/asio/associated_allocator.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associator.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/error.hpp>
#include <boost/system/error_code.hpp>

#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <cerrno>
#include <deque>
#include <memory>
#include <mutex>
#include <span>
#include <vector>

namespace fsys {

namespace detail {

/// A caller operation waiting in a stream file's queue (a read that waits
/// for read-ahead data or for write-behind writes to land, a write that waits
/// for a write-behind slot, a flush). Type-erased over the handler.
struct stream_pending {
  enum kind_t { read, write, flush } kind;
  static constexpr unsigned max_buffers = 16;
  // The caller's buffers (the first max_buffers of the sequence: a
  // read_some/write_some may transfer less than asked). Writes keep
  // const_buffers' addresses here and never write through them.
  asio::mutable_buffer bufs[max_buffers];
  unsigned nbufs = 0;
  std::size_t total = 0;
  // Handed to the kernel directly (no read-ahead or write-behind applies):
  // waiting for its completion.
  bool issued = false;
  // A flush: 0 async_flush, 1 async_sync, 2 async_close.
  int flush_what = 0;

  explicit stream_pending(kind_t k) : kind(k) {}
  virtual ~stream_pending() = default;
  /// Disconnects the caller's cancellation slot (under the state's mutex).
  virtual void clear_slot() noexcept = 0;
  /// Frees the operation and completes its handler (outside the mutex).
  virtual void complete(boost::system::error_code ec, std::size_t n) = 0;
  /// Frees the operation and its handler without running it.
  virtual void destroy() noexcept = 0;
  /// Copies `src` into the caller's buffers from `at` on; returns bytes copied.
  std::size_t copy_in(const char* src, std::size_t n, std::size_t at) noexcept {
    std::size_t done = 0;
    for (unsigned i = 0; i < nbufs && done < n; ++i) {
      const std::size_t sz = bufs[i].size();
      if (at >= sz) {
        at -= sz;
        continue;
      }
      const std::size_t k = std::min(sz - at, n - done);
      std::memcpy(static_cast<char*>(bufs[i].data()) + at, src + done, k);
      done += k;
      at = 0;
    }
    return done;
  }
  /// Copies up to `n` of the caller's bytes into `dst`; returns bytes copied.
  std::size_t copy_out(char* dst, std::size_t n) const noexcept {
    std::size_t done = 0;
    for (unsigned i = 0; i < nbufs && done < n; ++i) {
      const std::size_t k = std::min(bufs[i].size(), n - done);
      std::memcpy(dst + done, bufs[i].data(), k);
      done += k;
    }
    return done;
  }
  std::span<const asio::mutable_buffer> buffers() const noexcept { return {bufs, nbufs}; }
};

/// One read-ahead read: `size` bytes from `offset`. The buffer belongs to
/// the slot, and the slot is shared by the state (while it is current) and
/// the completion handler of its kernel read (until the CQE), so the buffer
/// outlives the kernel's use of it even when the slot is discarded.
struct ra_slot {
  std::uint64_t offset = 0;
  std::unique_ptr<char[]> data;
  std::size_t size = 0;
  bool done = false;
  boost::system::error_code ec;
  std::size_t n = 0;         // bytes the kernel read
  std::size_t consumed = 0;  // bytes handed to the caller
};

/// One write-behind write: a copy of the caller's bytes, owned by the slot,
/// which the state (while the write is in flight) and the write's completion
/// handler share, so the kernel reads it until the CQE whatever the caller
/// does with its own buffer.
struct wb_slot {
  std::uint64_t offset = 0;
  std::unique_ptr<char[]> data;
  std::size_t size = 0;
  // Written again synchronously (sync calls, close): the bytes are on the
  // file whatever this write reports, and its result is not an error of the
  // stream's any more.
  bool rewritten = false;
};

/// The state of an open stream file, shared by the `basic_stream_file` and
/// the completion handlers of everything it has in flight: a stream file
/// may be moved, closed or destroyed while the kernel still works for it.
/// Every member is guarded by `mu` (the io_context may run completions on
/// several threads while the owner starts the next operation).
template <class Executor>
struct stream_state : std::enable_shared_from_this<stream_state<Executor>> {
  using error_code = boost::system::error_code;
  explicit stream_state(const Executor& ex) : file(ex) {}

  std::mutex mu;
  basic_file<Executor> file;
  std::uint64_t pos = 0;
  bool append = false;
  bool regular = true;  // a regular file (read-ahead reads fill their slot)
  stream_options opts;

  std::deque<std::shared_ptr<ra_slot>> ra;  // consecutive, from ra.front()->offset
  std::uint64_t ra_next = 0;                // offset of the next read-ahead read

  std::vector<std::shared_ptr<wb_slot>> wb;  // in flight
  std::uint64_t wb_next = 0;                 // end of the last write-behind write
  std::uint64_t wb_end = 0;                  // highest end of any in flight
  error_code wb_error_op;                    // not yet reported by an operation
  error_code wb_error_sync;                  // not yet reported by a sync or close

  std::deque<stream_pending*> queue;
  using done_list = std::vector<std::pair<stream_pending*, std::pair<error_code, std::size_t>>>;

  bool write_behind() const noexcept { return opts.write_behind_count > 0 && !append; }
  bool buffered() const noexcept { return opts.read_ahead_count > 0 || opts.write_behind_count > 0; }

  /// The size the stream sees: the file's, or the end of the write-behind
  /// writes still in flight if that is larger.
  std::uint64_t size(error_code& ec) const noexcept {
    std::uint64_t s = file.size(ec);
    if (!ec && !wb.empty()) s = std::max(s, wb_end);
    return s;
  }

  /// Forgets the read-ahead data. Reads still in the kernel keep their slot
  /// alive through their handler and are ignored when they complete; when
  /// nothing else of the stream is in the kernel (no write-behind write, no
  /// caller operation handed over as it is), they are cancelled, so that a
  /// seek or a cancelled read does not leave reads running (a read-ahead
  /// read of a pipe would never end).
  void discard_ra() noexcept {
    bool in_flight = false;
    for (auto& s : ra) in_flight = in_flight || !s->done;
    ra.clear();
    if (!in_flight || !wb.empty()) return;
    for (stream_pending* p : queue)
      if (p->issued) return;
    error_code ignored;
    file.cancel(ignored);
  }

  // Keeps opts.read_ahead_count reads in flight from ra_next on.
  void fill_ra() {
    if (ra.empty()) ra_next = pos;
    while (ra.size() < opts.read_ahead_count) {
      auto s = std::make_shared<ra_slot>();
      s->offset = ra_next;
      s->size = std::max<std::size_t>(opts.read_ahead_size, 1);
      s->data = std::make_unique_for_overwrite<char[]>(s->size);
      ra_next += s->size;
      ra.push_back(s);
      // Why this is sound: the kernel writes into s->data until the CQE; the
      // handler holds `s` (and so the buffer) until it has run or been
      // destroyed after that CQE, whether or not the slot is still current.
      // On a regular file the read fills the slot unless the file ends
      // (a partly cached range can make one kernel read short, which would
      // otherwise look like the end and restart the read-ahead); a pipe or
      // other stream gives what it has.
      if (regular)
        file.async_read_at(s->offset, asio::mutable_buffer(s->data.get(), s->size),
                           ra_done{this->shared_from_this(), s});
      else
        file.async_read_some_at(s->offset, asio::mutable_buffer(s->data.get(), s->size),
                                ra_done{this->shared_from_this(), s});
    }
  }

  struct ra_done {
    std::shared_ptr<stream_state> st;
    std::shared_ptr<ra_slot> s;
    void operator()(error_code ec, std::size_t n) {
      done_list out;
      {
        std::lock_guard lk(st->mu);
        s->done = true;
        s->n = n;
        s->ec = ec == asio::error::eof ? error_code() : ec;
        if (std::find(st->ra.begin(), st->ra.end(), s) != st->ra.end()) st->pump(out);
      }
      finish(out);
    }
  };

  struct wb_done {
    std::shared_ptr<stream_state> st;
    std::shared_ptr<wb_slot> s;
    void operator()(error_code ec, std::size_t) {
      done_list out;
      {
        std::lock_guard lk(st->mu);
        auto it = std::find(st->wb.begin(), st->wb.end(), s);
        if (it == st->wb.end()) return;  // the stream was closed: nothing waits for it
        st->wb.erase(it);
        if (ec && !s->rewritten) {
          if (!st->wb_error_op) st->wb_error_op = ec;
          if (!st->wb_error_sync) st->wb_error_sync = ec;
        }
        st->pump(out);
      }
      finish(out);
    }
  };

  // A caller operation handed to the kernel as it is (no read-ahead or
  // write-behind for it): the position moves by what it transferred.
  struct direct_done {
    std::shared_ptr<stream_state> st;
    stream_pending* p;
    void operator()(error_code ec, std::size_t n) {
      done_list out;
      {
        std::lock_guard lk(st->mu);
        st->pos += n;
        if (!st->queue.empty() && st->queue.front() == p) st->queue.pop_front();
        p->clear_slot();
        out.push_back({p, {ec, n}});
        st->pump(out);
      }
      finish(out);
    }
  };

  /// Whether the io_context (its fsys service) still exists.
  bool alive() noexcept { return file_access::live_service(file) != nullptr; }

  /// Completes the operations in `out`, outside `mu`. After the io_context
  /// has gone their handlers cannot run anywhere: they are destroyed, as
  /// the io_context does with its own operations' handlers.
  static void finish(done_list& out, bool alive = true) {
    for (auto& [p, r] : out) {
      if (alive)
        p->complete(r.first, r.second);
      else
        p->destroy();
    }
  }

  void done(stream_pending* p, error_code ec, std::size_t n, done_list& out) {
    queue.pop_front();
    p->clear_slot();
    out.push_back({p, {ec, n}});
  }

  /// Moves the queue forward as far as the state allows (under `mu`);
  /// completed operations are appended to `out`, to complete outside `mu`.
  void pump(done_list& out) {
    while (!queue.empty()) {
      stream_pending* p = queue.front();
      if (p->issued) return;
      if (p->kind == stream_pending::flush) {
        if (!wb.empty()) return;
        if (p->flush_what == 0) {
          done(p, std::exchange(wb_error_op, {}), 0, out);
        } else {
          wb_error_op.clear();  // reported here, for both
          done(p, std::exchange(wb_error_sync, {}), 0, out);
        }
        continue;
      }
      if (wb_error_op) {
        // A write-behind write failed: the next operation reports it (and a
        // sync or close reports it again).
        done(p, std::exchange(wb_error_op, {}), 0, out);
        continue;
      }
      if (p->kind == stream_pending::read) {
        if (!wb.empty()) return;  // a read sees every earlier write
        if (p->total == 0) {
          done(p, {}, 0, out);
          continue;
        }
        if (opts.read_ahead_count == 0) {
          issue_direct(p);
          return;
        }
        if (!ra.empty() && ra.front()->offset + ra.front()->consumed != pos) discard_ra();
        if (ra.empty() && p->total >= opts.read_ahead_size) {
          // A request as large as a read-ahead read gains nothing from one
          // and would pay a copy: it goes to the kernel with the caller's
          // buffers (read-ahead resumes with the next smaller request).
          issue_direct(p);
          return;
        }
        fill_ra();
        if (!ra.front()->done) return;
        std::size_t got = 0;
        error_code ec;
        bool restart = false;
        while (!ra.empty() && ra.front()->done && got < p->total) {
          ra_slot& s = *ra.front();
          if (s.ec) {
            if (got == 0) ec = s.ec;
            restart = true;  // the next read tries again from the position
            break;
          }
          const std::size_t avail = s.n - s.consumed;
          if (avail == 0) {
            if (got == 0) ec = asio::error::eof;
            restart = true;
            break;
          }
          const std::size_t k = p->copy_in(s.data.get() + s.consumed, std::min(avail, p->total - got), got);
          s.consumed += k;
          got += k;
          pos += k;
          if (s.consumed == s.n) {
            const bool short_read = s.n < s.size;
            ra.pop_front();
            if (short_read) {
              restart = true;  // the next slot does not start at the position
              break;
            }
          }
        }
        if (restart)
          discard_ra();
        else
          fill_ra();
        done(p, ec, got, out);
        continue;
      }
      // A write: read-ahead data may be stale from here on.
      discard_ra();
      if (p->total == 0) {
        done(p, {}, 0, out);
        continue;
      }
      if (!write_behind()) {
        issue_direct(p);
        return;
      }
      // Writes in flight never overlap: a write that does not continue the
      // last one waits for all of them (after a seek).
      if (wb.size() >= opts.write_behind_count || (!wb.empty() && pos != wb_next)) return;
      auto s = std::make_shared<wb_slot>();
      s->offset = pos;
      s->size = std::min(p->total, std::max<std::size_t>(opts.write_behind_size, 1));
      s->data = std::make_unique_for_overwrite<char[]>(s->size);
      p->copy_out(s->data.get(), s->size);
      wb.push_back(s);
      wb_next = pos + s->size;
      wb_end = std::max(wb_end, wb_next);
      pos = wb_next;
      // Why this is sound: the kernel reads s->data (a copy: the caller's
      // buffer is free once its handler runs) until the CQE; the handler
      // holds `s` until it has run or been destroyed after that CQE.
      file.async_write_at(s->offset, asio::const_buffer(s->data.get(), s->size), wb_done{this->shared_from_this(), s});
      done(p, {}, s->size, out);
    }
  }

  void issue_direct(stream_pending* p) {
    p->issued = true;
    if (p->kind == stream_pending::write && append) {
      error_code ec;
      const std::uint64_t s = file.size(ec);
      if (!ec) pos = s;  // where O_APPEND puts the bytes
    }
    // Why this is sound: the caller's buffers stay valid until its handler
    // runs (Asio's rule for every operation), and that handler runs only
    // after this operation's CQE, from direct_done.
    if (p->kind == stream_pending::read)
      file.async_read_some_at(pos, p->buffers(), direct_done{this->shared_from_this(), p});
    else
      file.async_write_some_at(pos, p->buffers(), direct_done{this->shared_from_this(), p});
  }

  /// Writes every write-behind write still in flight again with pwrite in
  /// the calling thread (the same bytes at the same offsets, so the kernel's
  /// own copy landing before or after changes nothing), so that a sync call
  /// sees their bytes on the file and learns their errors now. Sets `ec` to
  /// the first error.
  void flush_sync(error_code& ec) noexcept {
    ec.clear();
    for (auto& s : wb) {
      if (s->rewritten) continue;
      s->rewritten = true;
      // Plain pwrite on the descriptor: this works after the io_context has
      // gone too (its writes were then cancelled, and this is what lands).
      const int fd = file.native_handle();
      std::size_t done = 0;
      while (done < s->size) {
        const ssize_t k = ::pwrite(fd, s->data.get() + done, s->size - done, static_cast<off_t>(s->offset + done));
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
          if (!ec) ec.assign(k < 0 ? errno : EIO, boost::system::system_category());
          break;
        }
        done += static_cast<std::size_t>(k);
      }
    }
  }
};

/// A caller operation of a stream file with its handler.
template <class Handler, class Executor, class State, bool WithSize>
struct stream_pending_op final : stream_pending {
  using alloc_type = typename std::allocator_traits<
      asio::associated_allocator_t<Handler>>::template rebind_alloc<stream_pending_op>;

  Handler handler;
  Executor ex;
  std::weak_ptr<State> st;
  bool hooked = false;

  stream_pending_op(kind_t k, Handler&& h, const Executor& e) : stream_pending(k), handler(std::move(h)), ex(e) {}

  static stream_pending_op* create(kind_t k, Handler&& h, const Executor& e) {
    alloc_type a(asio::get_associated_allocator(h));
    stream_pending_op* p = std::allocator_traits<alloc_type>::allocate(a, 1);
    try {
      return new (p) stream_pending_op(k, std::move(h), e);
    } catch (...) {
      std::allocator_traits<alloc_type>::deallocate(a, p, 1);
      throw;
    }
  }

  /// Hooks the caller's cancellation slot: a cancellation (of any type)
  /// completes the operation with operation_aborted if it is still waiting
  /// in the queue; once handed to the kernel it runs to its end.
  void hook(const std::shared_ptr<State>& s) {
    st = s;
    auto slot = asio::get_associated_cancellation_slot(handler);
    if (!slot.is_connected()) return;
    hooked = true;
    slot.template emplace<canceller>(canceller{st, this});
  }

  struct canceller {
    std::weak_ptr<State> st;
    stream_pending_op* p;
    void operator()(asio::cancellation_type_t) {
      auto s = st.lock();
      if (!s) return;
      bool found = false;
      {
        std::lock_guard lk(s->mu);
        auto it = std::find(s->queue.begin(), s->queue.end(), static_cast<stream_pending*>(p));
        if (it == s->queue.end() || p->issued) return;
        s->queue.erase(it);
        found = true;
        // The read-ahead this read waited for is not wanted any more.
        if (p->kind == read) s->discard_ra();
      }
      // (The slot is cleared by complete(); this function object is
      // destroyed then and must not be touched afterwards.)
      if (found) {
        if (s->alive())
          p->complete(asio::error::operation_aborted, 0);
        else
          p->destroy();
      }
    }
  };

  void clear_slot() noexcept override {
    if (hooked) {
      hooked = false;
      asio::get_associated_cancellation_slot(handler).clear();
    }
  }

  void destroy() noexcept override {
    clear_slot();
    alloc_type a(asio::get_associated_allocator(handler));
    this->~stream_pending_op();
    std::allocator_traits<alloc_type>::deallocate(a, this, 1);
  }

  void complete(boost::system::error_code ec, std::size_t n) override {
    clear_slot();
    Handler h(std::move(handler));
    Executor e(std::move(ex));
    alloc_type a(asio::get_associated_allocator(h));
    this->~stream_pending_op();
    std::allocator_traits<alloc_type>::deallocate(a, this, 1);
    // The handler's memory is freed before it is called; it runs on its
    // associated executor, never inside the caller's initiating function.
    if constexpr (WithSize)
      defer_inline_completion(std::move(h), e, ec, n);
    else
      defer_inline_completion(std::move(h), e, ec);
  }
};

/// A handler that moves a stream file's position by the bytes an operation
/// transferred before the caller's handler runs. Everything associated with
/// the caller's handler (executor, allocator, cancellation slot) is its own.
template <class Handler, class State>
struct position_handler {
  std::shared_ptr<State> st;
  Handler handler;
  void operator()(boost::system::error_code ec, std::size_t n) {
    {
      std::lock_guard lk(st->mu);
      st->pos += n;
    }
    st.reset();
    std::move(handler)(ec, n);
  }
};

}  // namespace detail
}  // namespace fsys

template <template <class, class> class Associator, class Handler, class State, class DefaultCandidate>
struct boost::asio::associator<Associator, fsys::detail::position_handler<Handler, State>, DefaultCandidate>
    : Associator<Handler, DefaultCandidate> {
  static typename Associator<Handler, DefaultCandidate>::type get(
      const fsys::detail::position_handler<Handler, State>& h,
      const DefaultCandidate& c = DefaultCandidate()) noexcept {
    return Associator<Handler, DefaultCandidate>::get(h.handler, c);
  }
};
