// fsys — the whole-file operations (included by whole_file.hpp): composed
// of basic_file's open, stat, read, write, sync and close.
#pragma once

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/compose.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <memory>
#include <string>
#include <utility>

namespace fsys {
namespace detail {

// open → stat → [read the size the stat gave] → read on until end of file →
// close. The buffer grows before each read by what that read may return and
// shrinks by what it did not; on failure it goes back to its size at the
// start.
template <class Executor, class DynamicBuffer>
struct read_file_op {
  // The part of the file statx reported is read in waves of `wave_reads`
  // reads in flight at once, each of up to `piece` bytes (a wave: up to
  // 16 MiB), so that a cold file keeps several requests at the device and
  // the psync backend copies on several workers; bounded so that a
  // cancellation or the close of a huge read is never far away.
  static constexpr std::size_t piece = std::size_t{4} << 20;
  static constexpr std::size_t wave_reads = 4;
  // Reads past the size statx reported (a growing file, /proc).
  static constexpr std::size_t tail_read = std::size_t{64} << 10;

  enum step_t { start, opened, read_done, wave_done, probe_done, close_done };
  struct state {
    state(const Executor& ex, std::string p, DynamicBuffer b, std::size_t lim)
        : file(ex), path(std::move(p)), buffer(std::move(b)), limit(lim), base(buffer.size()) {}
    basic_file<Executor> file;
    std::string path;
    DynamicBuffer buffer;
    std::size_t limit;
    std::size_t base;          // the buffer's size when the call started
    std::size_t expected = 0;  // the size statx reported
    std::size_t total = 0;     // bytes read so far (the buffer holds base + total)
    std::size_t asked = 0;     // what the read (or the wave of reads) in flight may return
    std::array<std::size_t, wave_reads> wave{};  // the wave's reads' lengths (0: none)
    char probe = 0;            // the byte read past the limit (never kept)
    step_t step = start;
    boost::system::error_code result;
  };
  std::unique_ptr<state> s_;

  // The most the buffer may still take.
  static std::size_t room(const state& s) {
    const std::size_t by_buffer = s.buffer.max_size() > s.buffer.size() ? s.buffer.max_size() - s.buffer.size() : 0;
    return std::min(s.limit - std::min(s.limit, s.total), by_buffer);
  }

  // Ends with `ec` (the buffer back as it was on error), closing the file.
  template <class Self>
  void finish(Self& self, const boost::system::error_code& ec) {
    state& s = *s_;
    s.result = ec;
    if (ec) s.buffer.shrink(s.buffer.size() - s.base);
    if (s.file.is_open()) {
      s.step = close_done;
      s.file.async_close(uncancellable(std::move(self)));
      return;
    }
    complete(self);
  }

  template <class Self>
  void complete(Self& self) {
    state& s = *s_;
    // A read that succeeded is not failed by its close: a descriptor opened
    // read-only has nothing to lose there.
    const boost::system::error_code ec = s.result;
    self.complete(ec, ec ? 0 : s.total);
  }

  // Reads the next piece: the rest of what statx reported, in waves of
  // reads in flight together (read_wave), then tail_read at a time until end
  // of file. With no room
  // left, one byte is read past the limit into `probe`, so that a file over
  // the limit is told from one that ends exactly at it.
  template <class Self>
  void read_next(Self& self) {
    state& s = *s_;
    const std::size_t r = room(s);
    if (r == 0) {
      s.step = probe_done;
      // `probe` lives in the heap state, which outlives the operation.
      s.file.async_read_some_at(s.total, asio::buffer(&s.probe, 1), std::move(self));
      return;
    }
    if (s.total < s.expected && std::min(s.expected - s.total, r) > tail_read) return read_wave(self, r);
    const std::size_t wanted = s.total < s.expected ? s.expected - s.total : tail_read;
    s.asked = std::min(wanted, r);
    const std::size_t at = s.buffer.size();
    try {
      s.buffer.grow(s.asked);
    } catch (const std::exception&) {
      return finish(self, make_error_code(errc::read_limit_exceeded));
    }
    s.step = read_done;
    // The buffer's bytes [at, at + asked) belong to this read until it
    // completes: nothing else touches the dynamic buffer while the
    // operation runs (the caller keeps its storage alive).
    s.file.async_read_at(s.total, s.buffer.data(at, s.asked), std::move(self));
  }

  // Up to wave_reads reads of up to `piece` bytes at once, into the buffer
  // grown once for all of them; a read with nothing to do is an empty
  // transfer (0 bytes, no system call).
  template <class Self>
  void read_wave(Self& self, std::size_t room_left) {
    state& s = *s_;
    std::size_t left = std::min(std::min(s.expected - s.total, room_left), piece * wave_reads);
    s.asked = left;
    for (auto& w : s.wave) {
      w = std::min(left, piece);
      left -= w;
    }
    const std::size_t at = s.buffer.size();
    try {
      s.buffer.grow(s.asked);
    } catch (const std::exception&) {
      return finish(self, make_error_code(errc::read_limit_exceeded));
    }
    s.step = wave_done;
    // The buffer's bytes [at, at + asked) belong to these reads until the
    // wave completes (each read its own piece of them): nothing else touches
    // the dynamic buffer while the operation runs.
    auto read = [&](std::size_t k) {
      std::size_t before = 0;
      for (std::size_t i = 0; i < k; ++i) before += s.wave[i];
      return s.file.async_read_at(s.total + before, s.buffer.data(at + before, s.wave[k]), asio::deferred);
    };
    asio::experimental::make_parallel_group(read(0), read(1), read(2), read(3))
        .async_wait(asio::experimental::wait_for_all(), std::move(self));
  }

  // A wave ended: the data runs up to the first read that came back short
  // (the end of the file, which shrank) or failed; the first error in file
  // order is reported.
  template <class Self>
  void operator()(Self& self, std::array<std::size_t, wave_reads>, boost::system::error_code e0, std::size_t n0,
                  boost::system::error_code e1, std::size_t n1, boost::system::error_code e2, std::size_t n2,
                  boost::system::error_code e3, std::size_t n3) {
    state& s = *s_;
    const boost::system::error_code ecs[wave_reads] = {e0, e1, e2, e3};
    const std::size_t ns[wave_reads] = {n0, n1, n2, n3};
    std::size_t got = 0;
    bool ended = false;
    boost::system::error_code ec;
    for (std::size_t k = 0; k < wave_reads && !ended; ++k) {
      got += ns[k];
      if (ecs[k] && ecs[k] != asio::error::eof) {
        ec = ecs[k];
        ended = true;
      } else if (ns[k] < s.wave[k]) {
        ended = true;  // end of file
      }
    }
    s.buffer.shrink(s.asked - got);
    s.total += got;
    if (ec) return finish(self, ec);
    if (ended) return finish(self, {});
    read_next(self);
  }

  template <class Self>
  void operator()(Self& self, boost::system::error_code ec = {}, std::size_t n = 0) {
    state& s = *s_;
    switch (s.step) {
      case start:
        s.step = opened;
        s.file.async_open(s.path, O_RDONLY | O_CLOEXEC, 0, std::move(self));
        return;
      case opened:  // stat next: it completes in the overload below
        if (ec) return finish(self, ec);
        s.file.async_stat(std::move(self));
        return;
      case read_done:
        s.buffer.shrink(s.asked - n);
        s.total += n;
        if (ec) return finish(self, ec);
        if (n < s.asked) return finish(self, {});  // end of file
        return read_next(self);
      case probe_done:
        if (!ec && n > 0) return finish(self, make_error_code(errc::read_limit_exceeded));
        return finish(self, ec == asio::error::eof ? boost::system::error_code() : ec);
      case close_done:
        return complete(self);
      case wave_done:
        return;  // a wave completes in the overload above
    }
  }

  template <class Self>
  void operator()(Self& self, boost::system::error_code ec, file_status st) {
    state& s = *s_;
    if (ec) return finish(self, ec);
    if (S_ISDIR(st.mode)) return finish(self, boost::system::error_code(EISDIR, boost::system::system_category()));
    if (st.size > s.limit || st.size > room(s)) return finish(self, make_error_code(errc::read_limit_exceeded));
    s.expected = static_cast<std::size_t>(st.size);
    read_next(self);
  }
};

// open → write all → [fdatasync] → close → [sync the directory]; on failure
// the file is closed and the first error reported, with the bytes written.
template <class Executor, class Buffers>
struct write_file_op {
  enum step_t { open_done, write_done, sync_done, close_done, dir_done, cleanup_done, start };
  struct state {
    state(const Executor& e, std::string p, const Buffers& b, int f, mode_t m, bool d, bool dir)
        : ex(e), file(e), path(std::move(p)), buffers(b), flags(f), mode(m), durable(d), sync_dir(dir) {}
    Executor ex;
    basic_file<Executor> file;
    std::string path;
    Buffers buffers;
    int flags;
    mode_t mode;
    bool durable;
    bool sync_dir;  // durable, and the call may have created the name
    std::size_t written = 0;
    step_t step = start;
    boost::system::error_code first;
  };
  std::unique_ptr<state> s_;

  template <class Self>
  void cleanup(Self& self, const boost::system::error_code& ec) {
    state& s = *s_;
    s.first = ec;
    if (!s.file.is_open()) return done(self, ec);
    s.step = cleanup_done;
    s.file.async_close(uncancellable(std::move(self)));
  }

  template <class Self>
  void done(Self& self, const boost::system::error_code& ec) {
    state& s = *s_;
    const boost::system::error_code result = ec;
    self.complete(result, s.written);
  }

  template <class Self>
  void operator()(Self& self, boost::system::error_code ec = {}, std::size_t n = 0) {
    state& s = *s_;
    switch (s.step) {
      case start:
        if ((s.mode & ~static_cast<mode_t>(07777)) != 0) {
          // Refused without touching the file system, completed from the
          // io_context (never inside the initiating function).
          s.first = make_error_code(errc::invalid_mode);
          s.step = cleanup_done;
          asio::post(s.ex, std::move(self));
          return;
        }
        s.step = open_done;
        s.file.async_open(s.path, s.flags | O_CLOEXEC, s.mode, std::move(self));
        return;
      case open_done:
        if (ec) return cleanup(self, ec);
        s.step = write_done;
        // The caller keeps the memory of `buffers` valid until the handler runs.
        s.file.async_write_at(0, s.buffers, std::move(self));
        return;
      case write_done:
        s.written = n;
        if (ec) return cleanup(self, ec);
        if (s.durable) {
          s.step = sync_done;
          s.file.async_fdatasync(std::move(self));
          return;
        }
        s.step = close_done;
        s.file.async_close(std::move(self));
        return;
      case sync_done:
        if (ec) return cleanup(self, ec);
        s.step = close_done;
        s.file.async_close(std::move(self));
        return;
      case close_done: {
        if (ec || !s.sync_dir) return done(self, ec);
        s.step = dir_done;
        const std::filesystem::path parent = std::filesystem::path(s.path).parent_path();
        async_sync_directory(s.ex, parent.empty() ? std::string(".") : parent.native(), std::move(self));
        return;
      }
      case dir_done:
        return done(self, ec);
      case cleanup_done:
        return done(self, s.first);
    }
  }
};

// The resize of an open file (async_resize_file, through async_open_act_close).
struct resize_act {
  std::uint64_t size;
  template <class File, class Self>
  void operator()(File& f, Self&& self) const {
    f.async_resize(size, std::forward<Self>(self));
  }
};

template <class Executor, class Buffers, class Token>
auto start_write_file(const Executor& e, path_view path, const Buffers& buffers, int flags, mode_t mode,
                      bool durable, bool sync_dir, Token&& token) {
  using op = write_file_op<Executor, Buffers>;
  return asio::async_compose<Token, void(boost::system::error_code, std::size_t)>(
      op{std::make_unique<typename op::state>(e, std::string(path.str()), buffers, flags, mode, durable, sync_dir)},
      token, e);
}

}  // namespace detail

template <class ExecutorOrContext, class DynamicBuffer,
          BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code, std::size_t)) Token>
  requires detail::executor_or_context<ExecutorOrContext> && asio::is_dynamic_buffer_v2<DynamicBuffer>::value
auto async_read_file(ExecutorOrContext&& ex, path_view path, DynamicBuffer buffer, std::size_t limit,
                     Token&& token) {
  auto e = detail::executor_of(ex);
  using op = detail::read_file_op<decltype(e), DynamicBuffer>;
  return asio::async_compose<Token, void(boost::system::error_code, std::size_t)>(
      op{std::make_unique<typename op::state>(e, std::string(path.str()), std::move(buffer), limit)}, token, e);
}

template <class ExecutorOrContext, BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code, std::size_t)) Token>
  requires detail::executor_or_context<ExecutorOrContext>
auto async_read_file(ExecutorOrContext&& ex, path_view path, std::string& out, std::size_t limit, Token&& token) {
  out.clear();
  return async_read_file(std::forward<ExecutorOrContext>(ex), path, asio::dynamic_buffer(out), limit,
                         std::forward<Token>(token));
}

template <class ExecutorOrContext, BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code, std::size_t)) Token>
  requires detail::executor_or_context<ExecutorOrContext>
auto async_read_file(ExecutorOrContext&& ex, path_view path, std::vector<std::byte>& out, std::size_t limit,
                     Token&& token) {
  out.clear();
  return async_read_file(std::forward<ExecutorOrContext>(ex), path, asio::dynamic_buffer(out), limit,
                         std::forward<Token>(token));
}

template <class ExecutorOrContext, class ConstBufferSequence,
          BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code, std::size_t)) Token>
  requires detail::executor_or_context<ExecutorOrContext> && asio::is_const_buffer_sequence<ConstBufferSequence>::value
auto async_write_file(ExecutorOrContext&& ex, path_view path, const ConstBufferSequence& buffers,
                      write_file_options options, Token&& token) {
  int flags = O_WRONLY;
  switch (options.how) {
    case write_file_mode::create_or_truncate:
      flags |= O_CREAT | O_TRUNC;
      break;
    case write_file_mode::create_exclusive:
      flags |= O_CREAT | O_EXCL;
      break;
    case write_file_mode::truncate_existing:
      flags |= O_TRUNC;
      break;
  }
  const bool may_create = options.how != write_file_mode::truncate_existing;
  return detail::start_write_file(detail::executor_of(ex), path, buffers, flags, options.mode, options.durable,
                                  options.durable && may_create, std::forward<Token>(token));
}

template <class ExecutorOrContext, class ConstBufferSequence,
          BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code, std::size_t)) Token>
  requires detail::executor_or_context<ExecutorOrContext> && asio::is_const_buffer_sequence<ConstBufferSequence>::value
auto async_append_file(ExecutorOrContext&& ex, path_view path, const ConstBufferSequence& buffers,
                       append_file_options options, Token&& token) {
  const int flags = O_WRONLY | O_APPEND | (options.create ? O_CREAT : 0);
  return detail::start_write_file(detail::executor_of(ex), path, buffers, flags, options.mode, options.durable,
                                  options.durable && options.create, std::forward<Token>(token));
}

template <class ExecutorOrContext, BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code)) Token>
  requires detail::executor_or_context<ExecutorOrContext>
auto async_resize_file(ExecutorOrContext&& ex, path_view path, std::uint64_t size, Token&& token) {
  return detail::async_open_act_close<Token>(detail::executor_of(ex), std::string(path.str()), O_WRONLY | O_CLOEXEC,
                                            detail::resize_act{size}, std::forward<Token>(token));
}

template <class ExecutorOrContext>
  requires detail::executor_or_context<ExecutorOrContext>
asio::awaitable<void> co_resize_file(ExecutorOrContext&& ex, std::filesystem::path path, std::uint64_t size) {
  auto [ec] = co_await async_resize_file(ex, path, size, asio::as_tuple(asio::use_awaitable));
  if (ec) detail::throw_co_error(ec, "fsys::co_resize_file", path.native());
}

template <class ExecutorOrContext>
  requires detail::executor_or_context<ExecutorOrContext>
asio::awaitable<std::string> co_read_file(ExecutorOrContext&& ex, std::filesystem::path path, std::size_t limit) {
  std::string out;
  auto [ec, n] = co_await async_read_file(ex, path, out, limit, asio::as_tuple(asio::use_awaitable));
  if (ec) detail::throw_co_error(ec, "fsys::co_read_file", path.native());
  (void)n;
  co_return out;
}

template <class ExecutorOrContext, class ConstBufferSequence>
  requires detail::executor_or_context<ExecutorOrContext> && asio::is_const_buffer_sequence<ConstBufferSequence>::value
asio::awaitable<std::size_t> co_write_file(ExecutorOrContext&& ex, std::filesystem::path path,
                                           ConstBufferSequence buffers, write_file_options options) {
  auto [ec, n] = co_await async_write_file(ex, path, buffers, options, asio::as_tuple(asio::use_awaitable));
  if (ec) detail::throw_co_error(ec, "fsys::co_write_file", path.native());
  co_return n;
}

template <class ExecutorOrContext, class ConstBufferSequence>
  requires detail::executor_or_context<ExecutorOrContext> && asio::is_const_buffer_sequence<ConstBufferSequence>::value
asio::awaitable<std::size_t> co_append_file(ExecutorOrContext&& ex, std::filesystem::path path,
                                            ConstBufferSequence buffers, append_file_options options) {
  auto [ec, n] = co_await async_append_file(ex, path, buffers, options, asio::as_tuple(asio::use_awaitable));
  if (ec) detail::throw_co_error(ec, "fsys::co_append_file", path.native());
  co_return n;
}

}  // namespace fsys
