// fsys — the composed file-system operations (included by filesystem.hpp).
#pragma once

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/compose.hpp>
#include <boost/asio/cancellation_signal.hpp>

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <vector>

namespace fsys {
namespace detail {

// Clean-up steps must run even after a cancellation: they get an empty
// cancellation slot.
template <class Self>
auto uncancellable(Self&& self) {
  return asio::bind_cancellation_slot(asio::cancellation_slot(), std::forward<Self>(self));
}

// open(path, flags) → `act(file, self)` starts one operation on the open
// file → close. The first error wins; the file is closed whatever happened
// (the close ignores cancellation). `Act` is what differs: an fsync of a
// directory (async_sync_directory), a resize (async_resize_file).
template <class Executor, class Act>
struct open_act_close_op {
  enum step_t { start, opened, acted, closed };
  struct state {
    state(const Executor& ex, std::string p, int f, Act a)
        : file(ex), path(std::move(p)), flags(f), act(std::move(a)) {}
    basic_file<Executor> file;
    std::string path;
    int flags;
    Act act;
    step_t step = start;
    boost::system::error_code first;
  };
  std::unique_ptr<state> s_;

  template <class Self>
  void operator()(Self& self, boost::system::error_code ec = {}, std::size_t = 0) {
    state& s = *s_;
    switch (s.step) {
      case start:
        s.step = opened;
        s.file.async_open(s.path, s.flags, 0, std::move(self));
        return;
      case opened:
        if (ec) return self.complete(ec);
        s.step = acted;
        s.act(s.file, std::move(self));
        return;
      case acted:
        s.first = ec;
        s.step = closed;
        s.file.async_close(uncancellable(std::move(self)));
        return;
      case closed: {
        const boost::system::error_code result = s.first ? s.first : ec;
        self.complete(result);
        return;
      }
    }
  }
};

template <class Token, class Executor, class Act>
auto async_open_act_close(const Executor& e, std::string path, int flags, Act act, Token&& token) {
  using op = open_act_close_op<Executor, Act>;
  return asio::async_compose<Token, void(boost::system::error_code)>(
      op{std::make_unique<typename op::state>(e, std::move(path), flags, std::move(act))}, token, e);
}

// The fsync of an open directory (async_sync_directory).
struct fsync_act {
  template <class File, class Self>
  void operator()(File& f, Self&& self) const {
    f.async_fsync(std::forward<Self>(self));
  }
};

// A name for a temporary file in the target's directory: ".fsys-tmp."
// and 16 random hex digits, 26 bytes whatever the target's name, so that
// any name the filesystem accepts for the target (up to NAME_MAX, 255 bytes
// on ext4) can be replaced: a name derived from the target's would be
// longer than the target's. It starts with a dot and never looks like a
// target the caller named.
inline std::string temp_name() {
  static std::atomic<std::uint64_t> counter{0};
  const auto t = static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  const std::uint64_t v = t ^ (counter.fetch_add(1, std::memory_order_relaxed) * 0x9e3779b97f4a7c15ull) ^
                          (static_cast<std::uint64_t>(::getpid()) << 40);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return std::string(".fsys-tmp.") + buf;
}

// What a replace writes into its temporary: a buffer sequence (written in
// full at offset 0) ...
template <class ConstBufferSequence>
struct replace_buffers {
  ConstBufferSequence buffers;
  template <class File, class Self>
  void write(File& f, Self&& self) {
    f.async_write_at(0, buffers, std::forward<Self>(self));
  }
};

// ... or the caller's writer, given the open temporary and a completion
// handler (type-erased, so that the writer can be an ordinary function).
template <class Writer>
struct replace_writer {
  Writer writer;
  template <class File, class Self>
  void write(File& f, Self&& self) {
    writer(f, asio::any_completion_handler<void(boost::system::error_code)>(std::forward<Self>(self)));
  }
};

// [stat the old file] → temporary (O_TMPFILE, else named) → [fchown,
// fchmod: the old owner and mode] → write all → fdatasync (fsync when the
// metadata was set) → [link the unnamed file under a temporary name] →
// close → rename over the target → sync the directory. On failure: close,
// remove the named temporary.
template <class Executor, class Content>
struct replace_file_op {
  enum step_t {
    start,
    statted,
    opened,
    owned,
    moded,
    written,
    synced,
    linked,
    closed,
    renamed,
    done,
    cleanup_closed,
    cleanup_removed
  };
  struct state {
    state(const Executor& e, std::filesystem::path p, Content c, const replace_options& o)
        : ex(e), file(e), content(std::move(c)), options(o) {
      target = p.native();
      auto parent = p.parent_path();
      dir = parent.empty() ? std::string(".") : parent.native();
      name = p.filename().native();
    }
    Executor ex;
    basic_file<Executor> file;
    Content content;
    replace_options options;
    std::string target, dir, name, temp;
    bool unnamed = true;      // O_TMPFILE in use
    bool temp_exists = false;  // `temp` names our file and must go on failure
    bool keep = false;         // the old file exists and its mode and owner are kept
    file_status old{};         // the old file's, when `keep`
    step_t step = start;
    boost::system::error_code first;

    // The temporary's creation mode: the caller's (less the umask), or,
    // when the old file's mode is kept (set exactly by fchmod later), owner
    // read/write only until then.
    mode_t create_mode() const { return keep ? 0600 : options.mode; }
  };
  std::unique_ptr<state> s_;

  static bool no_tmpfile(const boost::system::error_code& ec) {
    // O_TMPFILE unsupported by the filesystem (EOPNOTSUPP), the kernel
    // (EISDIR, EINVAL on old kernels), or linking it refused (no /proc: ENOENT).
    return ec == boost::system::errc::operation_not_supported || ec == boost::system::errc::is_a_directory ||
           ec == boost::system::errc::invalid_argument;
  }

  template <class Self>
  void open_unnamed(Self& self) {
    state& s = *s_;
    s.step = opened;
    s.file.async_open(s.dir, O_TMPFILE | O_WRONLY, s.create_mode(), std::move(self));
  }

  template <class Self>
  void open_named(Self& self) {
    state& s = *s_;
    s.unnamed = false;
    s.temp = s.dir + "/" + temp_name();
    s.step = opened;
    s.file.async_open(s.temp, O_WRONLY | O_CREAT | O_EXCL, s.create_mode(), std::move(self));
  }

  template <class Self>
  void write(Self& self) {
    state& s = *s_;
    s.step = written;
    s.content.write(s.file, std::move(self));
  }

  template <class Self>
  void fail(Self& self, const boost::system::error_code& ec) {
    state& s = *s_;
    if (!s.first) s.first = ec;
    if (s.file.is_open()) {
      s.step = cleanup_closed;
      s.file.async_close(uncancellable(std::move(self)));
      return;
    }
    if (s.temp_exists) {
      s.step = cleanup_removed;
      s.temp_exists = false;
      async_path_op<void>(s.ex, path_request{op_kind::unlink, s.temp}, uncancellable(std::move(self)));
      return;
    }
    const boost::system::error_code result = s.first;
    self.complete(result);
  }

  // The old file's status (keep_mode_and_owner).
  template <class Self>
  void operator()(Self& self, boost::system::error_code ec, file_status st) {
    state& s = *s_;
    if (!ec) {
      s.keep = true;
      s.old = st;
    } else if (ec != boost::system::errc::no_such_file_or_directory) {
      return fail(self, ec);
    }
    open_unnamed(self);  // no old file: the new one gets options.mode
  }

  template <class Self>
  void operator()(Self& self, boost::system::error_code ec = {}, std::size_t = 0) {
    state& s = *s_;
    switch (s.step) {
      case start:
        if (s.name.empty() || s.name == "." || s.name == "..") {
          // Not a file name: let the engine refuse it from the io_context.
          s.step = done;
          async_path_op<void>(s.ex, path_request{op_kind::unlink, std::string()}, std::move(self));
          return;
        }
        if ((s.options.mode & ~static_cast<mode_t>(07777)) != 0) {
          // Refused from the io_context, as async_create_directory does.
          path_request r{op_kind::unlink, s.target};
          r.bad_argument = errc::invalid_mode;
          s.step = done;
          async_path_op<void>(s.ex, std::move(r), std::move(self));
          return;
        }
        if (s.options.keep_mode_and_owner) {
          s.step = statted;
          async_stat(s.ex, s.target, std::move(self));
          return;
        }
        return open_unnamed(self);
      case statted:
        return;  // handled by the file_status overload
      case opened:
        if (ec) {
          if (s.unnamed && no_tmpfile(ec)) return open_named(self);
          return fail(self, ec);
        }
        if (!s.unnamed) s.temp_exists = true;
        if (s.keep) {
          // The owner first: chown clears set-user/group-id bits, which the
          // fchmod then sets. Both before any content is written, so the
          // content is never readable under laxer rules than the old file's.
          s.step = owned;
          s.file.async_set_owner(s.old.uid, s.old.gid, std::move(self));
          return;
        }
        return write(self);
      case owned:
        if (ec) return fail(self, ec);
        s.step = moded;
        s.file.async_set_permissions(s.old.mode & 07777, std::move(self));
        return;
      case moded:
        if (ec) return fail(self, ec);
        return write(self);
      case written:
        if (ec) return fail(self, ec);
        s.step = synced;
        // fdatasync makes the content durable; metadata set after creation
        // (owner, mode) needs fsync.
        if (s.keep)
          s.file.async_fsync(std::move(self));
        else
          s.file.async_fdatasync(std::move(self));
        return;
      case synced:
        if (ec) return fail(self, ec);
        if (s.unnamed) {
          // Give the unnamed, now durable file a (temporary) name: linkat of
          // /proc/<pid>/fd/<fd> with AT_SYMLINK_FOLLOW needs no privilege.
          s.temp = s.dir + "/" + temp_name();
          path_request r{op_kind::link,
                         "/proc/" + std::to_string(::getpid()) + "/fd/" + std::to_string(s.file.native_handle()),
                         s.temp};
          r.flags = AT_SYMLINK_FOLLOW;
          s.step = linked;
          async_path_op<void>(s.ex, std::move(r), std::move(self));
          return;
        }
        s.step = closed;
        s.file.async_close(std::move(self));
        return;
      case linked:
        if (ec) {
          if (ec == boost::system::errc::no_such_file_or_directory || no_tmpfile(ec)) {
            // No /proc, or the filesystem refuses: start again with a named
            // temporary (the unnamed one vanishes when closed). A writer
            // runs again from the start.
            s.file.close();
            return open_named(self);
          }
          return fail(self, ec);
        }
        s.temp_exists = true;
        s.step = closed;
        s.file.async_close(std::move(self));
        return;
      case closed:
        if (ec) return fail(self, ec);
        s.step = renamed;
        async_path_op<void>(s.ex, path_request{op_kind::rename, s.temp, s.target}, std::move(self));
        return;
      case renamed:
        if (ec) return fail(self, ec);
        s.temp_exists = false;
        s.step = done;
        async_sync_directory(s.ex, s.dir, std::move(self));
        return;
      case done: {
        const boost::system::error_code result = ec;
        self.complete(result);
        return;
      }
      case cleanup_closed:
      case cleanup_removed:
        return fail(self, s.first);
    }
  }
};

template <class Token, class Executor, class Content>
auto async_replace(const Executor& e, path_view path, Content content, const replace_options& options,
                   Token&& token) {
  using op = replace_file_op<Executor, Content>;
  return asio::async_compose<Token, void(boost::system::error_code)>(
      op{std::make_unique<typename op::state>(e, std::filesystem::path(path.str()), std::move(content), options)},
      token, e);
}

// mkdir(path); on ENOENT walk up (mkdir of each parent) until one is made or
// exists, then down again; EEXIST is checked with a stat (a directory is
// fine, anything else is ENOTDIR / EEXIST).
template <class Executor>
struct create_directories_op {
  enum step_t { start, made, statted };
  struct state {
    state(const Executor& e, std::string p, mode_t m) : ex(e), mode(m), original(p) {
      // The chain of prefixes, the path itself last; "a/b/c" → a, a/b, a/b/c.
      std::filesystem::path full = std::filesystem::path(std::move(p)).lexically_normal();
      if (!full.empty() && !full.has_filename()) full = full.parent_path();  // "a/b/" → "a/b"
      for (std::filesystem::path q = full; !q.empty() && q != q.root_path(); q = q.parent_path()) {
        chain.push_back(q.native());
        if (q.parent_path() == q) break;
      }
      std::reverse(chain.begin(), chain.end());
      at = chain.empty() ? 0 : chain.size() - 1;
    }
    Executor ex;
    mode_t mode;
    std::string original;
    std::vector<std::string> chain;
    std::size_t at = 0;     // the directory the step in flight is about
    bool created = false;  // made at least one
    step_t step = start;
  };
  std::unique_ptr<state> s_;

  template <class Self>
  void mkdir(Self& self) {
    state& s = *s_;
    s.step = made;
    async_create_directory(s.ex, s.chain[s.at], s.mode, std::move(self));
  }

  template <class Self>
  void operator()(Self& self, boost::system::error_code ec = {}) {
    state& s = *s_;
    switch (s.step) {
      case start:
        if (s.chain.empty()) {
          if (s.original.empty()) {
            // Refused by the engine, from the io_context, as an empty path is.
            s.step = made;
            async_create_directory(s.ex, std::string(), s.mode, std::move(self));
            return;
          }
          // The root: nothing to make, only to check.
          s.chain.push_back(s.original);
          s.at = 0;
          s.step = statted;
          async_stat(s.ex, s.original, std::move(self));
          return;
        }
        return mkdir(self);
      case made:
        if (!ec) {
          s.created = true;
          if (s.at + 1 == s.chain.size()) return self.complete(ec, true);
          ++s.at;
          return mkdir(self);
        }
        if (ec == boost::system::errc::no_such_file_or_directory && s.at > 0) {
          --s.at;  // a parent is missing: make it first
          return mkdir(self);
        }
        if (ec == boost::system::errc::file_exists && !s.chain.empty()) {
          s.step = statted;
          async_stat(s.ex, s.chain[s.at], std::move(self));
          return;
        }
        return self.complete(ec, false);
      case statted:
        break;  // handled by the overload below
    }
  }

  template <class Self>
  void operator()(Self& self, boost::system::error_code ec, file_status st) {
    state& s = *s_;
    if (ec) return self.complete(ec, false);
    if (!S_ISDIR(st.mode)) {
      // The path itself exists as something else: EEXIST; a parent: ENOTDIR.
      const int e = s.at + 1 == s.chain.size() ? EEXIST : ENOTDIR;
      return self.complete(boost::system::error_code(e, boost::system::system_category()), false);
    }
    if (s.at + 1 == s.chain.size()) return self.complete({}, s.created);
    ++s.at;
    mkdir(self);
  }
};

}  // namespace detail

template <class ExecutorOrContext, BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code, bool)) Token>
  requires detail::executor_or_context<ExecutorOrContext>
auto async_create_directories(ExecutorOrContext&& ex, path_view path, mode_t mode, Token&& token) {
  auto e = detail::executor_of(ex);
  using op = detail::create_directories_op<decltype(e)>;
  return asio::async_compose<Token, void(boost::system::error_code, bool)>(
      op{std::make_unique<typename op::state>(e, std::string(path.str()), mode)}, token, e);
}

template <class ExecutorOrContext, BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code)) Token>
  requires detail::executor_or_context<ExecutorOrContext>
auto async_sync_directory(ExecutorOrContext&& ex, path_view dir_path, Token&& token) {
  return detail::async_open_act_close<Token>(detail::executor_of(ex), std::string(dir_path.str()),
                                            O_RDONLY | O_DIRECTORY, detail::fsync_act{}, std::forward<Token>(token));
}

template <class ExecutorOrContext, class ConstBufferSequence,
          BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code)) Token>
  requires detail::executor_or_context<ExecutorOrContext> &&
           asio::is_const_buffer_sequence<ConstBufferSequence>::value
auto async_replace_file(ExecutorOrContext&& ex, path_view path, const ConstBufferSequence& data,
                        const replace_options& options, Token&& token) {
  return detail::async_replace<Token>(detail::executor_of(ex), path,
                                      detail::replace_buffers<ConstBufferSequence>{data}, options,
                                      std::forward<Token>(token));
}

template <class ExecutorOrContext, class Writer, BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code)) Token>
  requires detail::executor_or_context<ExecutorOrContext> && detail::replace_content_writer<Writer>
auto async_replace_file(ExecutorOrContext&& ex, path_view path, Writer writer, const replace_options& options,
                        Token&& token) {
  // The temporary is an `fsys::file` (any_io_executor), so that the writer
  // can name its type.
  return detail::async_replace<Token>(asio::any_io_executor(detail::executor_of(ex)), path,
                                      detail::replace_writer<std::decay_t<Writer>>{std::move(writer)}, options,
                                      std::forward<Token>(token));
}

}  // namespace fsys
