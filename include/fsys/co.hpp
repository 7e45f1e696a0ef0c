// fsys — coroutine operations: `co_await fsys::co_write_linked_fsync(f, offset, buf)`.
#pragma once

#include <fsys/file.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <cstdint>
#include <system_error>

namespace fsys {

namespace detail {
[[noreturn]] inline void throw_co_error(const boost::system::error_code& ec, const char* what) {
  // use_awaitable would throw boost::system::system_error, which is not a
  // std::system_error; these functions promise the standard type.
  throw std::system_error(std::error_code(ec), what);
}
}  // namespace detail

/// Reads `buf.size()` bytes at `offset` (fewer only at end of file) and
/// returns how many were read. Throws `std::system_error` on failure.
/// Completes on the coroutine's executor; cancelling the coroutine cancels
/// the read (operation_aborted).
inline asio::awaitable<std::size_t> co_read_at(file& f, std::uint64_t offset, asio::mutable_buffer buf) {
  auto [ec, n] = co_await f.async_read_at(offset, buf, asio::as_tuple(asio::use_awaitable));
  if (ec) detail::throw_co_error(ec, "fsys::co_read_at");
  co_return n;
}

/// Writes all of `buf` at `offset`; returns `buf.size()`. Throws
/// `std::system_error` on failure. Completes on the coroutine's executor;
/// cancelling the coroutine cancels the write (operation_aborted unless the
/// kernel had already written). Not durable: see `co_write_linked_fsync`.
inline asio::awaitable<std::size_t> co_write_at(file& f, std::uint64_t offset, asio::const_buffer buf) {
  auto [ec, n] = co_await f.async_write_at(offset, buf, asio::as_tuple(asio::use_awaitable));
  if (ec) detail::throw_co_error(ec, "fsys::co_write_at");
  co_return n;
}

/// Writes all of `buf` at `offset` with a linked fsync(DATASYNC) in one
/// submission; when it returns, the bytes are durable. Throws
/// `std::system_error` on failure, in which case nothing of this call may be
/// assumed durable. Completes on the coroutine's executor; cancelling the
/// coroutine cancels the write and its sync (operation_aborted: not
/// durable). See `basic_file::async_write_linked_fsync`.
inline asio::awaitable<std::size_t> co_write_linked_fsync(file& f, std::uint64_t offset,
                                                          asio::const_buffer buf) {
  auto [ec, n] = co_await f.async_write_linked_fsync(offset, buf, asio::as_tuple(asio::use_awaitable));
  if (ec) detail::throw_co_error(ec, "fsys::co_write_linked_fsync");
  co_return n;
}

/// fdatasync(2) through the ring: makes durable the writes that completed
/// before it started. Throws `std::system_error` on failure (a failed sync is
/// final: see docs/durability.md). Completes on the coroutine's executor;
/// cancelling the coroutine cancels the sync if the kernel has not started it.
inline asio::awaitable<void> co_fdatasync(file& f) {
  auto [ec] = co_await f.async_fdatasync(asio::as_tuple(asio::use_awaitable));
  if (ec) detail::throw_co_error(ec, "fsys::co_fdatasync");
}

}  // namespace fsys
