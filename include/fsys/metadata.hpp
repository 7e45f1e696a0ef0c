// fsys — metadata setters and extended attributes by path: permissions,
// owner, times (with or without following a final symlink), and
// get/set/list/remove of extended attributes. The same on an open file are
// members of `basic_file` (`async_set_permissions`, ... `async_remove_xattr`).
//
// Each is one system call. The xattr ones with an io_uring opcode (GETXATTR,
// SETXATTR, kernel 5.19; by the opcode probe) go through the ring; the others
// (chmod, chown, utimensat, listxattr, removexattr: io_uring has no opcode)
// run on the psync workers, never on the thread running the io_context.
// Everything filesystem.hpp says about its functions holds here: executor or
// context first, any completion token, the handler never runs inside the
// call, per-operation cancellation (terminal, partial, total) before the
// kernel has done the work, bad input refused without a system call.
#pragma once

#include <fsys/detail/metadata_args.hpp>
#include <fsys/filesystem.hpp>
#include <fsys/metadata_options.hpp>

#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace fsys {

namespace detail {
template <class T>
concept not_symlinks = !std::is_same_v<std::decay_t<T>, symlinks>;
template <class T>
concept not_xattr_flags = !std::is_same_v<std::decay_t<T>, xattr_flags>;
}  // namespace detail

/// Sets the permission bits of the file `path` names to `mode` (07777 at
/// most, else `errc::invalid_mode`), as `chmod(2)`. With
/// `symlinks::nofollow` a final symlink is not followed
/// (`fchmodat2(AT_SYMLINK_NOFOLLOW)`, Linux 6.6, else glibc's emulation):
/// Linux cannot change a symlink's mode, so a symlink gets `EOPNOTSUPP`
/// (as `std::filesystem::permissions` with `perm_options::nofollow` does) and
/// any other file its mode. Completes with `(error_code)`.
template <class ExecutorOrContext,
          BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code)) Token =
              asio::default_completion_token_t<detail::executor_of_t<ExecutorOrContext>>>
  requires detail::executor_or_context<ExecutorOrContext>
auto async_set_permissions(ExecutorOrContext&& ex, path_view path, mode_t mode, symlinks follow,
                           Token&& token = asio::default_completion_token_t<detail::executor_of_t<ExecutorOrContext>>()) {
  detail::path_request r{detail::op_kind::chmod, path.str()};
  r.flags = detail::metadata_flags(false, follow);
  r.mode = mode;
  if ((mode & ~static_cast<mode_t>(07777)) != 0) r.bad_argument = errc::invalid_mode;
  return detail::async_path_op<void>(detail::executor_of(ex), std::move(r), std::forward<Token>(token));
}

/// As above, following a final symlink (`chmod(2)`).
template <class ExecutorOrContext,
          BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code)) Token =
              asio::default_completion_token_t<detail::executor_of_t<ExecutorOrContext>>>
  requires detail::executor_or_context<ExecutorOrContext> && detail::not_symlinks<Token>
auto async_set_permissions(ExecutorOrContext&& ex, path_view path, mode_t mode,
                           Token&& token = asio::default_completion_token_t<detail::executor_of_t<ExecutorOrContext>>()) {
  return async_set_permissions(std::forward<ExecutorOrContext>(ex), path, mode, symlinks::follow,
                               std::forward<Token>(token));
}

/// Sets the owner of the file `path` names to `uid` and its group to `gid`
/// (`fsys::unchanged_id` keeps either), as `fchownat(2)`; with
/// `symlinks::nofollow` the symlink itself (AT_SYMLINK_NOFOLLOW). `EPERM`
/// unless privileged (a non-root owner may only change the group to one of
/// its own). Completes with `(error_code)`.
template <class ExecutorOrContext,
          BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code)) Token =
              asio::default_completion_token_t<detail::executor_of_t<ExecutorOrContext>>>
  requires detail::executor_or_context<ExecutorOrContext>
auto async_set_owner(ExecutorOrContext&& ex, path_view path, std::uint32_t uid, std::uint32_t gid, symlinks follow,
                     Token&& token = asio::default_completion_token_t<detail::executor_of_t<ExecutorOrContext>>()) {
  detail::path_request r{detail::op_kind::chown, path.str()};
  r.flags = detail::metadata_flags(false, follow);
  r.args->uid = uid;
  r.args->gid = gid;
  return detail::async_path_op<void>(detail::executor_of(ex), std::move(r), std::forward<Token>(token));
}

/// As above, following a final symlink (`chown(2)`).
template <class ExecutorOrContext,
          BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code)) Token =
              asio::default_completion_token_t<detail::executor_of_t<ExecutorOrContext>>>
  requires detail::executor_or_context<ExecutorOrContext> && detail::not_symlinks<Token>
auto async_set_owner(ExecutorOrContext&& ex, path_view path, std::uint32_t uid, std::uint32_t gid,
                     Token&& token = asio::default_completion_token_t<detail::executor_of_t<ExecutorOrContext>>()) {
  return async_set_owner(std::forward<ExecutorOrContext>(ex), path, uid, gid, symlinks::follow,
                         std::forward<Token>(token));
}

/// Sets the access and modification times of the file `path` names
/// (`utimensat(2)`): each a time point, `file_time::now()` or
/// `file_time::omit()` (left as is). With `symlinks::nofollow` the times of a
/// final symlink itself change, not its target's. Completes with `(error_code)`.
template <class ExecutorOrContext,
          BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code)) Token =
              asio::default_completion_token_t<detail::executor_of_t<ExecutorOrContext>>>
  requires detail::executor_or_context<ExecutorOrContext>
auto async_set_times(ExecutorOrContext&& ex, path_view path, file_time atime, file_time mtime, symlinks follow,
                     Token&& token = asio::default_completion_token_t<detail::executor_of_t<ExecutorOrContext>>()) {
  detail::path_request r{detail::op_kind::utimens, path.str()};
  r.flags = detail::metadata_flags(false, follow);
  detail::fill_times(*r.args, atime, mtime);
  return detail::async_path_op<void>(detail::executor_of(ex), std::move(r), std::forward<Token>(token));
}

/// As above, following a final symlink.
template <class ExecutorOrContext,
          BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code)) Token =
              asio::default_completion_token_t<detail::executor_of_t<ExecutorOrContext>>>
  requires detail::executor_or_context<ExecutorOrContext> && detail::not_symlinks<Token>
auto async_set_times(ExecutorOrContext&& ex, path_view path, file_time atime, file_time mtime,
                     Token&& token = asio::default_completion_token_t<detail::executor_of_t<ExecutorOrContext>>()) {
  return async_set_times(std::forward<ExecutorOrContext>(ex), path, atime, mtime, symlinks::follow,
                         std::forward<Token>(token));
}

/// The value of the extended attribute `name` (e.g. "user.checksum") of the
/// file `path` names, following symlinks (`getxattr(2)`; IORING_OP_GETXATTR
/// where the ring has it). Any size up to the kernel's 64 KiB: a first read
/// into a small buffer, and if the kernel answers ERANGE, a round asking for
/// the size and another read (again while the value keeps growing
/// meanwhile, up to 8 rounds). Completes with `(error_code, std::string)`
/// (the bytes as stored; binary is fine); `ENODATA` when there is no such
/// attribute, `EOPNOTSUPP` when the filesystem has no extended attributes.
template <class ExecutorOrContext,
          BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code, std::string)) Token =
              asio::default_completion_token_t<detail::executor_of_t<ExecutorOrContext>>>
  requires detail::executor_or_context<ExecutorOrContext>
auto async_get_xattr(ExecutorOrContext&& ex, path_view path, std::string_view name,
                     Token&& token = asio::default_completion_token_t<detail::executor_of_t<ExecutorOrContext>>()) {
  detail::path_request r{detail::op_kind::getxattr, path.str(), name};
  r.check_path2 = true;  // the name: not empty, no NUL
  r.args->value.resize(detail::xattr_first_guess);
  return detail::async_path_op<std::string>(detail::executor_of(ex), std::move(r), std::forward<Token>(token));
}

/// Sets the extended attribute `name` of the file `path` names to `value`
/// (copied before this returns), following symlinks (`setxattr(2)`;
/// IORING_OP_SETXATTR where the ring has it), as `flags` say: `create` fails
/// with `EEXIST` when it exists, `replace` with `ENODATA` when it does not.
/// `E2BIG` above the kernel's 64 KiB (or the filesystem's smaller limit:
/// `ENOSPC`); `EOPNOTSUPP` when the filesystem refuses the namespace;
/// `EPERM` for a `user.` attribute on a symlink or special file. Completes
/// with `(error_code)`.
template <class ExecutorOrContext,
          BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code)) Token =
              asio::default_completion_token_t<detail::executor_of_t<ExecutorOrContext>>>
  requires detail::executor_or_context<ExecutorOrContext>
auto async_set_xattr(ExecutorOrContext&& ex, path_view path, std::string_view name, asio::const_buffer value,
                     xattr_flags flags,
                     Token&& token = asio::default_completion_token_t<detail::executor_of_t<ExecutorOrContext>>()) {
  detail::path_request r{detail::op_kind::setxattr, path.str(), name};
  r.check_path2 = true;
  r.mode = static_cast<mode_t>(flags);
  detail::fill_xattr_value(*r.args, value);
  return detail::async_path_op<void>(detail::executor_of(ex), std::move(r), std::forward<Token>(token));
}

/// As above with `xattr_flags::either` (create or replace).
template <class ExecutorOrContext,
          BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code)) Token =
              asio::default_completion_token_t<detail::executor_of_t<ExecutorOrContext>>>
  requires detail::executor_or_context<ExecutorOrContext> && detail::not_xattr_flags<Token>
auto async_set_xattr(ExecutorOrContext&& ex, path_view path, std::string_view name, asio::const_buffer value,
                     Token&& token = asio::default_completion_token_t<detail::executor_of_t<ExecutorOrContext>>()) {
  return async_set_xattr(std::forward<ExecutorOrContext>(ex), path, name, value, xattr_flags::either,
                         std::forward<Token>(token));
}

/// The names of the extended attributes of the file `path` names (those the
/// caller may see), following symlinks (`listxattr(2)`, on the psync
/// workers: io_uring has no opcode). Sized as `async_get_xattr` is.
/// Completes with `(error_code, std::vector<std::string>)`.
template <class ExecutorOrContext,
          BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code, std::vector<std::string>)) Token =
              asio::default_completion_token_t<detail::executor_of_t<ExecutorOrContext>>>
  requires detail::executor_or_context<ExecutorOrContext>
auto async_list_xattr(ExecutorOrContext&& ex, path_view path,
                      Token&& token = asio::default_completion_token_t<detail::executor_of_t<ExecutorOrContext>>()) {
  detail::path_request r{detail::op_kind::listxattr, path.str()};
  r.args->value.resize(detail::xattr_first_guess);
  return detail::async_path_op<std::vector<std::string>>(detail::executor_of(ex), std::move(r),
                                                         std::forward<Token>(token));
}

/// Removes the extended attribute `name` of the file `path` names,
/// following symlinks (`removexattr(2)`, on the psync workers); `ENODATA`
/// when there is none. Completes with `(error_code)`.
template <class ExecutorOrContext,
          BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code)) Token =
              asio::default_completion_token_t<detail::executor_of_t<ExecutorOrContext>>>
  requires detail::executor_or_context<ExecutorOrContext>
auto async_remove_xattr(ExecutorOrContext&& ex, path_view path, std::string_view name,
                        Token&& token = asio::default_completion_token_t<detail::executor_of_t<ExecutorOrContext>>()) {
  detail::path_request r{detail::op_kind::removexattr, path.str(), name};
  r.check_path2 = true;
  return detail::async_path_op<void>(detail::executor_of(ex), std::move(r), std::forward<Token>(token));
}

}  // namespace fsys
