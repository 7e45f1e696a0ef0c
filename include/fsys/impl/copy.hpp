// fsys — async_copy_file's composed operation (included by copy.hpp).
#pragma once

#include <fsys/detail/file_op.hpp>
#include <fsys/uring_service.hpp>

#include <boost/asio/append.hpp>
#include <boost/asio/cancellation_type.hpp>
#include <boost/asio/compose.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/post.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <filesystem>
#include <memory>
#include <string>

namespace fsys {
namespace detail {

/// Starts one copy kind (`clone_file`, `copy_file_range`, `copy_attributes`)
/// on the descriptors `dst_fd` (the op's file) and `src_fd`. The caller lends
/// both descriptors: it keeps its files open until the handler has run.
/// Completes with `void(error_code, std::size_t)` (bytes, for copy_file_range),
/// or `void(error_code, Value)`. `stx`, when given, is copied into the op's
/// arguments (copy_attributes' times).
template <class Executor, class Value = void>
struct copy_fd_initiation {
  Executor ex_;
  using executor_type = Executor;
  executor_type get_executor() const noexcept { return ex_; }

  template <class Handler>
  void operator()(Handler&& handler, op_kind kind, int dst_fd, int src_fd, std::uint64_t offset,
                  std::uint64_t length, int flags, const struct statx* stx) const {
    using op_t = file_op<std::decay_t<Handler>, Executor, std::is_void_v<Value>, Value>;
    op_t* op = op_t::create(std::forward<Handler>(handler), ex_, kind);
    try {
      op->fs_ = fs_args::make();
    } catch (...) {
      op->destroy();
      throw;
    }
    op->fd_ = dst_fd;
    op->offset_ = offset;
    op->fs_->src_fd = src_fd;
    op->fs_->length = length;
    op->fs_->flags = flags;
    if (stx) op->fs_->stx = *stx;
    op->validate();  // a refused op completes from the io_context, without a system call
    engine& e = asio::use_service<uring_service>(asio::query(ex_, asio::execution::context)).engine();
    op->connect_cancellation(e);
    e.start(op);
  }
};

template <class Executor, class Token>
auto async_copy_fd_op(const Executor& ex, op_kind kind, int dst_fd, int src_fd, std::uint64_t offset,
                      std::uint64_t length, int flags, Token&& token, const struct statx* stx = nullptr) {
  return asio::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
      copy_fd_initiation<Executor>{ex}, token, kind, dst_fd, src_fd, offset, length, flags, stx);
}

/// A statx result as the kernel wrote it (with the access time, which
/// file_status leaves out).
struct raw_statx {
  struct statx stx {};
};
template <>
struct op_result<raw_statx> {
  static raw_statx get(const op_base& op) noexcept { return op.fs_ && !op.ec_ ? raw_statx{op.fs_->stx} : raw_statx{}; }
};

/// statx of the open file `fd` (lent by the caller), with every field.
template <class Executor, class Token>
auto async_fd_statx(const Executor& ex, int fd, Token&& token) {
  return asio::async_initiate<Token, void(boost::system::error_code, raw_statx)>(
      copy_fd_initiation<Executor, raw_statx>{ex}, token, op_kind::statx, fd, -1, std::uint64_t{0}, std::uint64_t{0},
      AT_EMPTY_PATH | AT_STATX_SYNC_AS_STAT, nullptr);
}

/// Devices whose filesystem refused FICLONE (EOPNOTSUPP, ENOTTY, EINVAL):
/// later copies from them skip the attempt, a round trip to a worker thread
/// per file. Slots hold device + 1 (0: empty); a lost race only costs one
/// more attempt.
inline std::atomic<std::uint64_t> no_reflink_devices[8];
inline bool reflink_refused(std::uint64_t dev) noexcept {
  return no_reflink_devices[dev % 8].load(std::memory_order_relaxed) == dev + 1;
}
inline void note_reflink_refused(std::uint64_t dev) noexcept {
  no_reflink_devices[dev % 8].store(dev + 1, std::memory_order_relaxed);
}

template <class Executor>
struct copy_file_op {
  // copy_file_range's piece: large enough that the per-call cost vanishes,
  // small enough for progress and for a cancellation to be heard.
  static constexpr std::uint64_t range_chunk = std::uint64_t{64} << 20;
  // The ring path's buffers (two: one read in flight with one write).
  static constexpr std::size_t ring_chunk = std::size_t{4} << 20;
  // copy_existing::fail: sources below this size look at the target only
  // when its name turns out to be taken (a copy this small costs little if
  // it must be thrown away); larger ones before copying.
  static constexpr std::uint64_t late_check_below = std::uint64_t{1} << 20;
  // Sources from this size on are advised POSIX_FADV_SEQUENTIAL.
  static constexpr std::uint64_t sequential_hint = std::uint64_t{8} << 20;

  enum step_t {
    start,
    src_opened,
    src_statted,
    src_timed,
    dst_statted,
    dst_statted_late,
    tmp_opened,
    tmp_statted,
    advised,
    cloned,
    ranged,
    ring_first,
    ring_round,
    attrs_set,
    synced,
    linked,
    tmp_dropped,
    linked_temp,
    renamed,
    dst_closed,
    src_closed,
    dir_synced,
    cleanup,
  };

  struct state {
    state(const Executor& e, std::string f, std::string t, copy_options o)
        : ex(e), src(e), dst(e), from(std::move(f)), to(std::move(t)), opts(std::move(o)) {
      const std::filesystem::path p(to);
      const auto parent = p.parent_path();
      dir = parent.empty() ? std::string(".") : parent.native();
      name = p.filename().native();
    }
    Executor ex;
    basic_file<Executor> src, dst;
    std::string from, to, dir, name, temp;
    copy_options opts;
    file_status src_st{};
    struct statx src_stx {};  // the source's times before the copy read it (preserve_times)
    bool target_exists = false;
    bool target_checked = false;  // the target was looked at (statx) already
    bool unnamed = true;       // the temporary is an O_TMPFILE
    bool temp_named = false;   // `temp` names our temporary: remove it on failure
    bool skipping = false;     // the target exists and the policy is skip
    bool mode_ok = false;      // the temporary already has the mode the copy needs
    bool advised = false;      // POSIX_FADV_SEQUENTIAL given
    std::uint64_t copied = 0;  // bytes in the temporary
    // Ring path: two buffers; `pending` bytes of buf[cur] read at `pending_at`
    // wait to be written.
    std::unique_ptr<char[]> buf[2];
    std::size_t buf_size = 0;
    unsigned cur = 0;
    std::size_t pending = 0;
    std::size_t asked = 0;  // the length of the read in flight
    std::uint64_t pending_at = 0;
    step_t step = start;
    boost::system::error_code first;
  };
  std::unique_ptr<state> s_;

  static boost::system::error_code sys(int e) { return {e, boost::system::system_category()}; }

  // Data landed in the temporary: count it and report progress.
  void landed(std::uint64_t n) {
    state& s = *s_;
    s.copied += n;
    if (s.opts.counter) s.opts.counter->fetch_add(n, std::memory_order_relaxed);
    if (s.opts.progress) s.opts.progress(s.copied, s.src_st.size);
  }

  // The first error wins; then the clean-up steps run (uncancellable):
  // close the temporary (an unnamed one vanishes), close the source, remove
  // a named temporary, and complete.
  template <class Self>
  void fail(Self& self, const boost::system::error_code& ec) {
    state& s = *s_;
    if (!s.first && !s.skipping) s.first = ec;
    s.step = cleanup;
    if (s.dst.is_open()) return s.dst.async_close(uncancellable(std::move(self)));
    if (s.src.is_open()) return s.src.async_close(uncancellable(std::move(self)));
    if (s.temp_named) {
      s.temp_named = false;
      return async_path_op<void>(s.ex, path_request{op_kind::unlink, s.temp}, uncancellable(std::move(self)));
    }
    if (s.opts.skipped) *s.opts.skipped = s.skipping;
    const boost::system::error_code result = s.first;
    self.complete(result, std::uint64_t{0});
  }

  template <class Self>
  void open_named(Self& self) {
    state& s = *s_;
    s.unnamed = false;
    s.temp = s.dir + "/" + temp_name();
    s.step = tmp_opened;
    s.dst.async_open(s.temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, s.src_st.mode & 0777, std::move(self));
  }

  static bool no_tmpfile(const boost::system::error_code& ec) {
    return ec == boost::system::errc::operation_not_supported || ec == boost::system::errc::is_a_directory ||
           ec == boost::system::errc::invalid_argument;
  }

  // The data phase, from `copied`: reflink, else copy_file_range, else the ring.
  template <class Self>
  void copy_data(Self& self) {
    state& s = *s_;
    if (s.src_st.size >= sequential_hint && !s.advised) {
      // A large source is read front to back: ask for the larger
      // read-ahead window (as cp does); its result changes nothing.
      s.advised = true;
      s.step = advised;
      return s.src.async_advise(0, 0, POSIX_FADV_SEQUENTIAL, std::move(self));
    }
    if (s.opts.reflink && s.copied == 0 && s.src_st.size > 0 && !reflink_refused(s.src_st.device)) {
      s.step = cloned;
      return async_copy_fd_op(s.ex, op_kind::clone_file, s.dst.native_handle(), s.src.native_handle(), 0, 0, 0,
                              std::move(self));
    }
    // A file whose statx size is 0 may still hold data (/proc): read it.
    if (s.opts.kernel_copy && s.src_st.size > 0) return copy_range(self);
    ring_start(self);
  }

  template <class Self>
  void copy_range(Self& self) {
    state& s = *s_;
    s.step = ranged;
    async_copy_fd_op(s.ex, op_kind::copy_file_range, s.dst.native_handle(), s.src.native_handle(), s.copied,
                     range_chunk, 0, std::move(self));
  }

  template <class Self>
  void ring_start(Self& self) {
    state& s = *s_;
    if (!s.buf[0]) {
      const std::uint64_t left = s.src_st.size > s.copied ? s.src_st.size - s.copied : 0;
      // Room for the rest of the file, 64 KiB at least (a size statx does
      // not know is read to the end of file, which shows as a short read).
      s.buf_size = static_cast<std::size_t>(std::min<std::uint64_t>(ring_chunk, std::max<std::uint64_t>(left, 64 << 10)));
      s.buf[0].reset(new char[s.buf_size]);
      s.buf[1].reset(new char[s.buf_size]);
    }
    s.step = ring_first;
    s.asked = want(s.copied);
    // The buffer lives in the heap state, which outlives the read.
    s.src.async_read_at(s.copied, asio::buffer(s.buf[0].get(), s.asked), std::move(self));
  }

  // The length of the ring read at `at`: a buffer's worth, and not past the
  // size statx reported (when it reported one).
  std::size_t want(std::uint64_t at) const {
    const state& s = *s_;
    if (s.src_st.size == 0) return s.buf_size;
    return static_cast<std::size_t>(std::min<std::uint64_t>(s.buf_size, s.src_st.size > at ? s.src_st.size - at : 0));
  }

  // Whether `n` bytes read at `at` (of `asked`) end the copy: a short read
  // (end of file), or the size statx reported reached.
  bool ends(std::uint64_t at, std::size_t n, std::size_t asked) const {
    const state& s = *s_;
    return n < asked || (s.src_st.size > 0 && at + n >= s.src_st.size);
  }

  // The copy is complete in the temporary: the attributes, then the sync.
  template <class Self>
  void finish_data(Self& self) {
    state& s = *s_;
    if (s.copied == 0 && s.opts.progress) s.opts.progress(0, s.src_st.size);
    s.buf[0].reset();
    s.buf[1].reset();
    const int flags = (s.opts.preserve_owner ? copy_attr_owner : 0) | (s.opts.preserve_times ? copy_attr_times : 0);
    s.step = attrs_set;
    if (flags == 0 && s.mode_ok) {
      // The temporary already has the source's mode: nothing to change.
      return asio::post(s.ex, asio::append(std::move(self), boost::system::error_code(), std::size_t{0}));
    }
    async_copy_fd_op(s.ex, op_kind::copy_attributes, s.dst.native_handle(), s.src.native_handle(), 0, 0, flags,
                     std::move(self), &s.src_stx);
  }

  // Gives the finished temporary the target's name.
  template <class Self>
  void publish(Self& self) {
    state& s = *s_;
    const bool replace = s.opts.existing == copy_existing::overwrite;
    if (s.unnamed) {
      // linkat of /proc/<pid>/fd/<fd> with AT_SYMLINK_FOLLOW needs no
      // privilege; it never replaces a name. An existing target
      // (overwrite) gets the copy by a rename from a temporary name.
      const std::string proc = "/proc/self/fd/" + std::to_string(s.dst.native_handle());
      if (replace && s.target_exists) {
        s.temp = s.dir + "/" + temp_name();
        path_request r{op_kind::link, proc, s.temp};
        r.flags = AT_SYMLINK_FOLLOW;
        s.step = linked_temp;
        return async_path_op<void>(s.ex, std::move(r), std::move(self));
      }
      path_request r{op_kind::link, proc, s.to};
      r.flags = AT_SYMLINK_FOLLOW;
      s.step = linked;
      return async_path_op<void>(s.ex, std::move(r), std::move(self));
    }
    path_request r{op_kind::rename, s.temp, s.to};
    r.flags = replace ? 0 : static_cast<int>(rename_flags::no_replace);
    s.step = renamed;
    async_path_op<void>(s.ex, std::move(r), std::move(self));
  }

  // An existing name met when publishing.
  template <class Self>
  void target_taken(Self& self, const boost::system::error_code& ec) {
    state& s = *s_;
    if (s.opts.existing == copy_existing::skip) {
      s.skipping = true;
      return fail(self, {});
    }
    if (s.opts.existing == copy_existing::overwrite && s.unnamed) {
      // Created meanwhile: replace it through a temporary name.
      s.target_exists = true;
      return publish(self);
    }
    fail(self, ec);
  }

  // The copy has its name: close both files, sync the directory if asked.
  template <class Self>
  void named(Self& self) {
    state& s = *s_;
    s.temp_named = false;
    s.step = dst_closed;
    s.dst.async_close(std::move(self));
  }

  template <class Self>
  void operator()(Self& self, boost::system::error_code ec = {}, std::size_t n = 0) {
    state& s = *s_;
    // Once `linked` or `renamed` succeeded the copy has its name: that is
    // reported, not undone.
    if (s.step != start && s.step < linked && !ec && self.cancelled() != asio::cancellation_type::none)
      ec = asio::error::operation_aborted;  // asked to stop while a step ran that could not be cancelled
    switch (s.step) {
      case start:
        if ((s.opts.existing != copy_existing::fail && s.opts.existing != copy_existing::skip &&
             s.opts.existing != copy_existing::overwrite) ||
            check_path(s.to)) {
          // An unknown policy, an empty target path or one with a NUL.
          s.first = make_error_code(boost::system::errc::invalid_argument);
          s.step = cleanup;
          return asio::post(s.ex, std::move(self));  // never completes inside the initiating function
        }
        s.step = src_opened;
        return s.src.async_open(s.from, O_RDONLY | O_CLOEXEC, 0, std::move(self));
      case src_opened:
        if (ec) return fail(self, ec);
        s.step = src_statted;
        return s.src.async_stat(std::move(self));
      case tmp_opened:
        if (ec) {
          if (s.unnamed && no_tmpfile(ec)) return open_named(self);
          return fail(self, ec);
        }
        if (!s.unnamed) s.temp_named = true;
        s.step = tmp_statted;
        return s.dst.async_stat(std::move(self));
      case advised:
        if (ec == asio::error::operation_aborted) return fail(self, ec);
        return copy_data(self);
      case cloned:
        if (!ec) {
          landed(s.src_st.size);
          return finish_data(self);
        }
        if (ec == boost::system::errc::operation_not_supported || ec == boost::system::errc::invalid_argument ||
            ec == boost::system::errc::inappropriate_io_control_operation)
          note_reflink_refused(s.src_st.device);
        else if (ec != boost::system::errc::cross_device_link)
          return fail(self, ec);
        if (s.opts.kernel_copy) return copy_range(self);
        return ring_start(self);
      case ranged:
        if (ec) {
          if (s.copied == 0 && (ec == boost::system::errc::cross_device_link ||
                                ec == boost::system::errc::operation_not_supported ||
                                ec == boost::system::errc::invalid_argument ||
                                ec == boost::system::errc::function_not_supported))
            return ring_start(self);
          return fail(self, ec);
        }
        if (n == 0) {
          // The end of the source, or a file that reports a size but whose
          // data copy_file_range cannot reach: the ring reads on to the end.
          if (s.copied < s.src_st.size) return ring_start(self);
          return finish_data(self);
        }
        landed(n);
        // Done at the size statx reported (saving the call that would
        // return 0): the bytes the source held when the copy started.
        if (s.copied >= s.src_st.size) return finish_data(self);
        return copy_range(self);
      case ring_first:
        if (ec && ec != asio::error::eof) return fail(self, ec);
        if (n == 0) return finish_data(self);
        s.cur = 0;
        s.pending = n;
        s.pending_at = s.copied;
        return ring_next(self, ends(s.copied, n, s.asked));
      case attrs_set:
        if (ec) return fail(self, ec);
        if (s.opts.durable) {
          s.step = synced;
          return s.dst.async_fsync(std::move(self));
        }
        return publish(self);
      case synced:
        if (ec) return fail(self, ec);
        return publish(self);
      case linked:
        if (ec == boost::system::errc::file_exists) return target_seen(self, ec);
        if (ec == boost::system::errc::no_such_file_or_directory && !s.skipping) {
          // No /proc to link through (the directory exists: the temporary
          // was made in it). Start again with a named temporary, once the
          // unnamed one is closed (through the engine: the close frees its
          // blocks, which may take a while).
          if (s.opts.counter) s.opts.counter->fetch_sub(s.copied, std::memory_order_relaxed);
          s.copied = 0;
          s.step = tmp_dropped;
          return s.dst.async_close(std::move(self));
        }
        if (ec) return fail(self, ec);
        return named(self);
      case tmp_dropped:
        if (self.cancelled() != asio::cancellation_type::none) return fail(self, asio::error::operation_aborted);
        return open_named(self);
      case linked_temp:
        if (ec) return fail(self, ec);
        s.temp_named = true;
        s.step = renamed;
        return async_path_op<void>(s.ex, path_request{op_kind::rename, s.temp, s.to}, std::move(self));
      case renamed:
        if (ec == boost::system::errc::file_exists) return target_seen(self, ec);
        if (ec) return fail(self, ec);
        return named(self);
      case dst_closed:
        s.first = ec;  // the copy has its name; a close error is still reported
        s.step = src_closed;
        return s.src.async_close(uncancellable(std::move(self)));
      case src_closed:
        if (!s.first && s.opts.durable) {
          s.step = dir_synced;
          return async_sync_directory(s.ex, s.dir, std::move(self));
        }
        [[fallthrough]];
      case dir_synced: {
        if (!s.first) s.first = ec;
        if (s.opts.skipped) *s.opts.skipped = false;
        const boost::system::error_code result = s.first;
        return self.complete(result, result ? std::uint64_t{0} : s.copied);
      }
      case cleanup:
        return fail(self, s.first);
      default:
        return fail(self, ec ? ec : sys(EINVAL));
    }
  }

  // Ring path: the write of the pending piece, with the read of the next one
  // in flight unless the pending piece ended the file.
  template <class Self>
  void ring_next(Self& self, bool last) {
    state& s = *s_;
    // Buffers live in the heap state until the state machine ends; each is
    // used by one operation at a time.
    auto wbuf = asio::buffer(s.buf[s.cur].get(), s.pending);
    s.step = ring_round;
    if (last) {
      return s.dst.async_write_at(s.pending_at, wbuf,
                                  asio::append(std::move(self), boost::system::error_code(asio::error::eof),
                                               std::size_t{0}));
    }
    s.asked = want(s.pending_at + s.pending);
    auto rbuf = asio::buffer(s.buf[s.cur ^ 1].get(), s.asked);
    asio::experimental::make_parallel_group(s.dst.async_write_at(s.pending_at, wbuf, asio::deferred),
                                            s.src.async_read_at(s.pending_at + s.pending, rbuf, asio::deferred))
        .async_wait(asio::experimental::wait_for_all(), std::move(self));
  }

  // A ring round ended: the write of the pending piece, and the read of the
  // next (`read_ec` eof: none was made).
  template <class Self>
  void ring_done(Self& self, boost::system::error_code wec, std::size_t wn, boost::system::error_code rec,
                 std::size_t rn) {
    state& s = *s_;
    if (!wec && self.cancelled() != asio::cancellation_type::none) wec = asio::error::operation_aborted;
    if (wec) return fail(self, wec);
    landed(wn);
    if (rec && rec != asio::error::eof) return fail(self, rec);
    if (rn == 0) return finish_data(self);
    s.cur ^= 1;
    s.pending = rn;
    s.pending_at = s.copied;
    ring_next(self, ends(s.copied, rn, s.asked));
  }

  // The write alone (the last piece).
  template <class Self>
  void operator()(Self& self, boost::system::error_code wec, std::size_t wn, boost::system::error_code rec,
                  std::size_t rn) {
    ring_done(self, wec, wn, rec, rn);
  }

  // The write and the read together.
  template <class Self>
  void operator()(Self& self, std::array<std::size_t, 2>, boost::system::error_code wec, std::size_t wn,
                  boost::system::error_code rec, std::size_t rn) {
    ring_done(self, wec, wn, rec, rn);
  }

  template <class Self>
  void stat_target(Self& self) {
    state& s = *s_;
    if (s.opts.existing == copy_existing::fail && s.src_st.size < late_check_below) {
      // A small copy that must not replace anything: the target is looked at
      // only if publishing finds its name taken (see target_seen), which
      // saves a statx per file when copying many small files to new names.
      return open_temp(self);
    }
    s.target_checked = true;
    s.step = dst_statted;
    async_stat(s.ex, s.to, std::move(self));
  }

  template <class Self>
  void open_temp(Self& self) {
    state& s = *s_;
    if (s.name.empty() || s.name == "." || s.name == "..") return fail(self, sys(EISDIR));
    s.step = tmp_opened;
    s.dst.async_open(s.dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, s.src_st.mode & 0777, std::move(self));
  }

  // Publishing found the target's name taken: unless the target was looked
  // at before the copy, it is now (the same file as the source is refused,
  // a directory too), then the policy decides.
  template <class Self>
  void target_seen(Self& self, const boost::system::error_code& ec) {
    state& s = *s_;
    if (s.target_checked) return target_taken(self, ec);
    s.target_checked = true;
    s.step = dst_statted_late;
    async_stat(s.ex, s.to, std::move(self));
  }

  // The source's full statx (preserve_times).
  template <class Self>
  void operator()(Self& self, boost::system::error_code ec, raw_statx st) {
    state& s = *s_;
    if (!ec && self.cancelled() != asio::cancellation_type::none) ec = asio::error::operation_aborted;
    if (ec) return fail(self, ec);
    s.src_stx = st.stx;
    stat_target(self);
  }

  // The statx results: the source, the target, the temporary.
  template <class Self>
  void operator()(Self& self, boost::system::error_code ec, file_status st) {
    state& s = *s_;
    if (!ec && self.cancelled() != asio::cancellation_type::none) ec = asio::error::operation_aborted;
    switch (s.step) {
      case src_statted:
        if (ec) return fail(self, ec);
        if (S_ISDIR(st.mode)) return fail(self, sys(EISDIR));
        if (!S_ISREG(st.mode)) return fail(self, make_error_code(boost::system::errc::operation_not_supported));
        s.src_st = st;
        if (s.opts.preserve_times) {
          // The times as they are before the copy reads the file (which may
          // change its access time), as `cp -p` takes them.
          s.step = src_timed;
          return async_fd_statx(s.ex, s.src.native_handle(), std::move(self));
        }
        return stat_target(self);
      case dst_statted:
        if (ec == boost::system::errc::no_such_file_or_directory) {
          s.target_exists = false;
        } else if (ec) {
          return fail(self, ec);
        } else {
          if (st.device == s.src_st.device && st.inode == s.src_st.inode)
            return fail(self, make_error_code(errc::copy_onto_itself));
          if (S_ISDIR(st.mode)) return fail(self, sys(EISDIR));
          if (s.opts.existing == copy_existing::fail) return fail(self, sys(EEXIST));
          if (s.opts.existing == copy_existing::skip) {
            s.skipping = true;
            return fail(self, {});
          }
          s.target_exists = true;
        }
        return open_temp(self);
      case dst_statted_late:
        if (ec == boost::system::errc::no_such_file_or_directory) return publish(self);  // gone meanwhile
        if (ec) return fail(self, ec);
        if (st.device == s.src_st.device && st.inode == s.src_st.inode)
          return fail(self, make_error_code(errc::copy_onto_itself));
        if (S_ISDIR(st.mode)) return fail(self, sys(EISDIR));
        return target_taken(self, sys(EEXIST));
      case tmp_statted: {
        if (ec) return fail(self, ec);
        // The temporary was made with the source's permission bits less the
        // umask: when that left them whole, no fchmod is needed.
        const std::uint32_t keep = s.opts.preserve_owner ? 07777u : 0777u;
        s.mode_ok = (st.mode & 07777u) == (s.src_st.mode & keep);
        return copy_data(self);
      }
      default:
        return fail(self, ec ? ec : sys(EINVAL));
    }
  }
};

}  // namespace detail

template <class ExecutorOrContext, BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code, std::uint64_t)) Token>
  requires detail::executor_or_context<ExecutorOrContext>
auto async_copy_file(ExecutorOrContext&& ex, path_view from, path_view to, copy_options options, Token&& token) {
  auto e = detail::executor_of(ex);
  using op = detail::copy_file_op<decltype(e)>;
  return asio::async_compose<Token, void(boost::system::error_code, std::uint64_t)>(
      op{std::make_unique<typename op::state>(e, std::string(from.str()), std::string(to.str()), std::move(options))},
      token, e);
}

}  // namespace fsys
