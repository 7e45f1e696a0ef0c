// fsys — directory listing and recursive removal (included by directory.hpp).
#pragma once

#include <boost/asio/compose.hpp>

#include <dirent.h>
#include <fcntl.h>

#include <algorithm>
#include <cstring>
#include <deque>
#include <mutex>
#include <utility>

namespace fsys {
namespace detail {

/// The entry type of a `d_type` value.
constexpr entry_type to_entry_type(unsigned char d_type) noexcept {
  switch (d_type) {
    case DT_REG: return entry_type::regular;
    case DT_DIR: return entry_type::directory;
    case DT_LNK: return entry_type::symlink;
    case DT_BLK: return entry_type::block;
    case DT_CHR: return entry_type::character;
    case DT_FIFO: return entry_type::fifo;
    case DT_SOCK: return entry_type::socket;
    default: return entry_type::unknown;
  }
}

/// Calls `f(name, type, inode)` for each `linux_dirent64` record in the
/// first `n` bytes of `buf` (what getdents64 returned), "." and ".." left
/// out. A record: u64 d_ino, s64 d_off, u16 d_reclen, u8 d_type, then the
/// NUL-terminated name, padded to `d_reclen`. The fields are copied out
/// (memcpy), so no alignment or aliasing is assumed of the buffer.
template <class F>
void for_each_dirent(const char* buf, std::size_t n, F&& f) {
  constexpr std::size_t name_offset = 19;
  std::size_t off = 0;
  while (off + name_offset < n) {
    std::uint64_t ino;
    std::uint16_t reclen;
    std::memcpy(&ino, buf + off, sizeof ino);
    std::memcpy(&reclen, buf + off + 16, sizeof reclen);
    const auto d_type = static_cast<unsigned char>(buf[off + 18]);
    if (reclen <= name_offset || off + reclen > n) break;  // the kernel writes whole records; never here
    const char* name = buf + off + name_offset;
    const std::string_view nm(name, ::strnlen(name, reclen - name_offset));
    if (nm != "." && nm != "..") f(nm, to_entry_type(d_type), ino);
    off += reclen;
  }
}

/// A getdents64 batch into `buf` (shared with the op, see fs_args::buffer)
/// on `f`'s descriptor; completes with `(error_code, std::size_t bytes)`.
template <class Executor, class Token>
auto async_getdents(basic_file<Executor>& f, const std::shared_ptr<char[]>& buf, std::size_t size, Token&& token) {
  fs_args_ptr a = make_fs_args();
  a->buffer = buf;  // the op holds the buffer too: the kernel may write it after the caller is gone
  a->buffer_size = size;
  return file_access::initiate_fs(f, op_kind::getdents, std::move(a), std::forward<Token>(token));
}

/// What a `basic_directory` shares with its pending batch: the file, the
/// buffer getdents fills and the views of the last batch. Shared, so that a
/// batch completing after the object was destroyed touches live memory.
template <class Executor>
struct directory_state {
  directory_state(const Executor& ex, std::size_t size)
      : file(ex), buffer(new char[size]), buffer_size(size) {}
  basic_file<Executor> file;
  std::shared_ptr<char[]> buffer;
  std::size_t buffer_size;
  std::vector<directory_entry_view> entries;
  /// A batch is pending: it owns `buffer` and `entries` until it completes.
  bool busy = false;
};

template <class Executor>
struct next_batch_op {
  std::shared_ptr<directory_state<Executor>> s_;
  bool owner_ = false;  // this batch holds the buffer (not refused as a second one)

  template <class Self>
  void operator()(Self& self) {
    directory_state<Executor>& s = *s_;
    if (s.busy) {
      // Another batch owns the buffer: refused by the op's checks (no
      // buffer: EINPROGRESS), completed from the io_context.
      async_getdents(s.file, nullptr, 0, std::move(self));
      return;
    }
    owner_ = true;
    s.busy = true;
    s.entries.clear();
    async_getdents(s.file, s.buffer, s.buffer_size, std::move(self));
  }

  template <class Self>
  void operator()(Self& self, boost::system::error_code ec, std::size_t n) {
    directory_state<Executor>& s = *s_;
    if (!owner_) return self.complete(ec, std::span<const directory_entry_view>());
    s.busy = false;
    if (!ec) {
      for_each_dirent(s.buffer.get(), n, [&s](std::string_view name, entry_type t, std::uint64_t ino) {
        s.entries.push_back(directory_entry_view{name, t, ino});
      });
    }
    self.complete(ec, std::span<const directory_entry_view>(s.entries));
  }
};

// open(path, O_DIRECTORY) → getdents until 0 bytes → close; the first error
// wins and the directory is always closed.
template <class Executor>
struct read_directory_op {
  enum step_t { start, opened, listed, closed };
  struct state {
    state(const Executor& ex, std::string_view p)
        : file(ex), path(p), buffer(new char[listing_buffer_size]) {}
    basic_file<Executor> file;
    std::string path;
    std::shared_ptr<char[]> buffer;
    std::vector<directory_entry> out;
    step_t step = start;
    boost::system::error_code first;
  };
  std::unique_ptr<state> s_;

  template <class Self>
  void operator()(Self& self, boost::system::error_code ec = {}, std::size_t n = 0) {
    state& s = *s_;
    switch (s.step) {
      case start:
        s.step = opened;
        s.file.async_open(s.path, O_RDONLY | O_DIRECTORY, 0, std::move(self));
        return;
      case opened:
        if (ec) return self.complete(ec, std::vector<directory_entry>());
        s.step = listed;
        async_getdents(s.file, s.buffer, listing_buffer_size, std::move(self));
        return;
      case listed:
        if (!ec && n > 0) {
          for_each_dirent(s.buffer.get(), n, [&s](std::string_view name, entry_type t, std::uint64_t ino) {
            s.out.push_back(directory_entry{std::string(name), t, ino});
          });
          async_getdents(s.file, s.buffer, listing_buffer_size, std::move(self));
          return;
        }
        s.first = ec;
        s.step = closed;
        s.file.async_close(uncancellable(std::move(self)));
        return;
      case closed: {
        const boost::system::error_code result = s.first ? s.first : ec;
        if (result) return self.complete(result, std::vector<directory_entry>());
        self.complete(result, std::move(s.out));
        return;
      }
    }
  }
};

/// Test hook: called by `async_remove_all` just before it opens the
/// directory `name` of the directory `dirfd` to descend into it (after the
/// listing said it is a directory), so that a test can swap it for a
/// symlink there. Null (the default): nothing is called.
inline void (*remove_all_before_descent)(int dirfd, const char* name) = nullptr;

// Depth first, relative to directory descriptors, never following a link
// (see async_remove_all). Per directory: getdents a batch; unlink its
// non-directories (up to `unlink_depth` in flight); descend into its
// directories one by one; read the next batch; at the end close the
// directory and remove it from its parent.
template <class Executor>
struct remove_all_op {
  enum step_t { start, root_opened, root_unlinked, listed, unlinked, child_opened, child_unlinked, dir_closed,
                dir_removed };
  static constexpr int dir_flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW;
  static constexpr std::size_t unlink_depth = 32;

  struct frame {
    explicit frame(const Executor& ex) : file(ex) {}
    basic_file<Executor> file;
    std::string name;                  // the name in the parent (empty for the root)
    std::vector<std::string> subdirs;  // directories of the last batch still to descend into
  };
  struct state {
    state(const Executor& e, std::string_view p) : ex(e), root(p), buffer(new char[listing_buffer_size]) {
      // "link/" would make the kernel follow the link (a trailing slash
      // asks for a directory): the name itself is meant, as "link".
      while (root.size() > 1 && root.back() == '/') root.pop_back();
    }
    Executor ex;
    std::string root;
    std::deque<frame> stack;  // references stay valid as frames come and go
    std::shared_ptr<char[]> buffer;
    std::uint64_t removed = 0;
    step_t step = start;
    std::string child;  // the entry the step in flight is about
    // The concurrent unlinks of one batch, guarded by `m`: their handlers
    // may run on several threads at once.
    std::mutex m;
    std::vector<std::string> files;
    std::size_t next_file = 0;
    std::size_t in_flight = 0;
    int batch_dirfd = -1;
    boost::system::error_code batch_error;
  };
  std::unique_ptr<state> s_;

  static bool is(const boost::system::error_code& ec, boost::system::errc::errc_t e) { return ec == e; }

  template <class Self>
  void fail(Self& self, const boost::system::error_code& ec) {
    // The frames' directories are closed by their destructors (close(2) of
    // a directory descriptor does not wait on the disk).
    const std::uint64_t removed = s_->removed;
    self.complete(ec, removed);
  }

  template <class Self>
  bool cancelled(Self& self) {
    return self.cancelled() != asio::cancellation_type::none;
  }

  template <class Self>
  void read(Self& self) {
    state& s = *s_;
    if (cancelled(self)) return fail(self, asio::error::operation_aborted);
    s.step = listed;
    async_getdents(s.stack.back().file, s.buffer, listing_buffer_size, std::move(self));
  }

  // Descends into the next directory of the last batch, or reads on.
  template <class Self>
  void descend(Self& self) {
    state& s = *s_;
    if (cancelled(self)) return fail(self, asio::error::operation_aborted);
    frame& top = s.stack.back();
    if (top.subdirs.empty()) return read(self);
    s.child = std::move(top.subdirs.back());
    top.subdirs.pop_back();
    const int dirfd = top.file.native_handle();
    if (remove_all_before_descent) remove_all_before_descent(dirfd, s.child.c_str());
    s.stack.emplace_back(s.ex);
    s.stack.back().name = s.child;
    s.step = child_opened;
    // O_NOFOLLOW: a symlink put there since the listing fails with ELOOP
    // and is unlinked below, never followed. `dirfd` stays open: its frame
    // is below this one.
    file_access::initiate_open(s.stack.back().file, open_args(dirfd, s.child, open_how{dir_flags, 0, 0}, false),
                               std::move(self));
  }

  // Starts the unlink of the batch's file `i`; its handler starts the next
  // one, and the last to finish resumes the operation (`h`) at `unlinked`.
  template <class Self>
  static void launch_unlink(state* s, const std::shared_ptr<Self>& h, std::size_t i) {
    path_request r{op_kind::unlink, s->files[i]};
    r.dirfd = s->batch_dirfd;  // open until the batch is done: its frame is the top one
    async_path_op<void>(s->ex, std::move(r), [s, h, i](boost::system::error_code ec) {
      std::unique_lock lock(s->m);
      if (!ec) {
        ++s->removed;
      } else if (is(ec, boost::system::errc::is_a_directory)) {
        // d_type was DT_UNKNOWN, or a directory took the name meanwhile.
        s->stack.back().subdirs.push_back(std::move(s->files[i]));
      } else if (!is(ec, boost::system::errc::no_such_file_or_directory) && !s->batch_error) {
        s->batch_error = ec;
      }
      if (s->next_file < s->files.size() && !s->batch_error) {
        const std::size_t j = s->next_file++;
        lock.unlock();
        launch_unlink(s, h, j);
        return;
      }
      if (--s->in_flight > 0) return;
      lock.unlock();
      (*h)(boost::system::error_code(), std::size_t{0});
    });
  }

  template <class Self>
  void start_unlinks(Self& self) {
    state& s = *s_;
    s.step = unlinked;
    s.next_file = 0;
    s.batch_error = {};
    s.batch_dirfd = s.stack.back().file.native_handle();
    auto h = std::make_shared<Self>(std::move(self));
    std::lock_guard lock(s.m);
    const std::size_t first = std::min(unlink_depth, s.files.size());
    s.in_flight = first;
    s.next_file = first;
    for (std::size_t i = 0; i < first; ++i) launch_unlink(&s, h, i);
  }

  template <class Self>
  void operator()(Self& self, boost::system::error_code ec = {}, std::size_t n = 0) {
    state& s = *s_;
    switch (s.step) {
      case start:
        s.stack.emplace_back(s.ex);
        s.step = root_opened;
        file_access::initiate_open(s.stack.back().file, open_args(AT_FDCWD, s.root, open_how{dir_flags, 0, 0}, false),
                                   std::move(self));
        return;
      case root_opened:
        if (!ec) return read(self);
        s.stack.pop_back();
        if (is(ec, boost::system::errc::no_such_file_or_directory)) return self.complete({}, std::uint64_t{0});
        if (is(ec, boost::system::errc::too_many_symbolic_link_levels) || is(ec, boost::system::errc::not_a_directory)) {
          // A symlink (removed itself, not its target) or a non-directory.
          s.step = root_unlinked;
          async_path_op<void>(s.ex, path_request{op_kind::unlink, s.root}, std::move(self));
          return;
        }
        return fail(self, ec);
      case root_unlinked:
        if (!ec) return self.complete(ec, std::uint64_t{1});
        if (is(ec, boost::system::errc::no_such_file_or_directory)) return self.complete({}, std::uint64_t{0});
        return fail(self, ec);
      case listed:
        if (ec) return fail(self, ec);
        if (n == 0) {
          // Everything in it is gone: close it, then remove it.
          s.step = dir_closed;
          s.stack.back().file.async_close(uncancellable(std::move(self)));
          return;
        }
        s.files.clear();
        for_each_dirent(s.buffer.get(), n, [&s](std::string_view name, entry_type t, std::uint64_t) {
          if (t == entry_type::directory)
            s.stack.back().subdirs.emplace_back(name);
          else
            s.files.emplace_back(name);  // unknown too: unlinkat says EISDIR for a directory
        });
        if (s.files.empty()) return descend(self);
        return start_unlinks(self);
      case unlinked:
        if (s.batch_error) return fail(self, s.batch_error);
        return descend(self);
      case child_opened:
        if (!ec) return read(self);
        s.stack.pop_back();
        if (is(ec, boost::system::errc::no_such_file_or_directory)) return descend(self);
        if (is(ec, boost::system::errc::too_many_symbolic_link_levels) || is(ec, boost::system::errc::not_a_directory)) {
          // Replaced by a symlink (or a file) since the listing: remove the
          // link itself, relative to its directory.
          s.step = child_unlinked;
          path_request r{op_kind::unlink, s.child};
          r.dirfd = s.stack.back().file.native_handle();
          async_path_op<void>(s.ex, std::move(r), std::move(self));
          return;
        }
        return fail(self, ec);
      case child_unlinked:
        if (!ec)
          ++s.removed;
        else if (is(ec, boost::system::errc::is_a_directory))
          s.stack.back().subdirs.push_back(s.child);  // a directory again: descend after all
        else if (!is(ec, boost::system::errc::no_such_file_or_directory))
          return fail(self, ec);
        return descend(self);
      case dir_closed: {
        if (ec) return fail(self, ec);
        s.child = std::move(s.stack.back().name);
        s.stack.pop_back();
        path_request r{op_kind::unlink, s.stack.empty() ? s.root : s.child};
        r.flags = AT_REMOVEDIR;
        r.dirfd = s.stack.empty() ? AT_FDCWD : s.stack.back().file.native_handle();
        s.step = dir_removed;
        async_path_op<void>(s.ex, std::move(r), std::move(self));
        return;
      }
      case dir_removed:
        if (!ec)
          ++s.removed;
        else if (!is(ec, boost::system::errc::no_such_file_or_directory))
          return fail(self, ec);
        if (s.stack.empty()) return self.complete({}, s.removed);
        return descend(self);
    }
  }
};

}  // namespace detail

template <class Executor>
basic_directory<Executor>::basic_directory(const executor_type& ex, std::size_t buffer_size)
    : s_(std::make_shared<detail::directory_state<Executor>>(ex, std::max<std::size_t>(buffer_size, 1024))) {}

template <class Executor>
basic_directory<Executor>& basic_directory<Executor>::operator=(basic_directory&& other) noexcept {
  if (this != &other) {
    close();
    s_ = std::move(other.s_);
  }
  return *this;
}

template <class Executor>
basic_directory<Executor>::~basic_directory() {
  close();
}

template <class Executor>
auto basic_directory<Executor>::get_executor() const noexcept -> executor_type {
  return s_->file.get_executor();
}

template <class Executor>
bool basic_directory<Executor>::is_open() const noexcept {
  return s_ && s_->file.is_open();
}

template <class Executor>
auto basic_directory<Executor>::native_handle() const noexcept -> native_handle_type {
  return s_ ? s_->file.native_handle() : -1;
}

template <class Executor>
void basic_directory<Executor>::close() noexcept {
  if (!s_) return;
  boost::system::error_code ignored;
  s_->file.close(ignored);
}

template <class Executor>
void basic_directory<Executor>::cancel() noexcept {
  if (!s_) return;
  boost::system::error_code ignored;
  s_->file.cancel(ignored);
}

template <class Executor>
template <BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code)) Token>
auto basic_directory<Executor>::async_open(path_view path, Token&& token) {
  return s_->file.async_open(path, O_RDONLY | O_DIRECTORY, 0, std::forward<Token>(token));
}

template <class Executor>
template <BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code, std::span<const directory_entry_view>))
              Token>
auto basic_directory<Executor>::async_next_batch(Token&& token) {
  return asio::async_compose<Token, void(boost::system::error_code, std::span<const directory_entry_view>)>(
      detail::next_batch_op<Executor>{s_}, token, s_->file.get_executor());
}

template <class Executor>
template <BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code)) Token>
auto basic_directory<Executor>::async_close(Token&& token) {
  return s_->file.async_close(std::forward<Token>(token));
}

template <class ExecutorOrContext,
          BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code, std::vector<directory_entry>)) Token>
  requires detail::executor_or_context<ExecutorOrContext>
auto async_read_directory(ExecutorOrContext&& ex, path_view path, Token&& token) {
  auto e = detail::executor_of(ex);
  using op = detail::read_directory_op<decltype(e)>;
  return asio::async_compose<Token, void(boost::system::error_code, std::vector<directory_entry>)>(
      op{std::make_unique<typename op::state>(e, path.str())}, token, e);
}

template <class ExecutorOrContext, BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code, std::uint64_t)) Token>
  requires detail::executor_or_context<ExecutorOrContext>
auto async_remove_all(ExecutorOrContext&& ex, path_view path, Token&& token) {
  auto e = detail::executor_of(ex);
  using op = detail::remove_all_op<decltype(e)>;
  return asio::async_compose<Token, void(boost::system::error_code, std::uint64_t)>(
      op{std::make_unique<typename op::state>(e, path.str())}, token, e);
}

}  // namespace fsys
