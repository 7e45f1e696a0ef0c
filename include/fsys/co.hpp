// fsys — coroutine operations: `co_await fsys::co_write_linked_fsync(f, offset, buf)`.
#pragma once

#include <fsys/file.hpp>
#include <fsys/filesystem_error.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/cancellation_state.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <cstdint>
#include <string>
#include <string_view>
#include <system_error>

namespace fsys {

namespace detail {
[[noreturn]] inline void throw_co_error(const boost::system::error_code& ec, const char* what) {
  // use_awaitable would throw boost::system::system_error, which is not a
  // std::system_error; these functions promise the standard type.
  throw std::system_error(std::error_code(ec), what);
}
/// As above, naming the path the operation was given: throws
/// `fsys::filesystem_error` ("<what> \"<path>\": <message>").
[[noreturn]] inline void throw_co_error(const boost::system::error_code& ec, const char* what, std::string_view path) {
  throw filesystem_error(what, std::filesystem::path(path), std::error_code(ec));
}
/// As above, naming both paths of a two-path operation (rename, links,
/// copy): "<what> \"<from>\" -> \"<to>\": <message>".
[[noreturn]] inline void throw_co_error(const boost::system::error_code& ec, const char* what, std::string_view from,
                                        std::string_view to) {
  throw filesystem_error(what, std::filesystem::path(from), std::filesystem::path(to), std::error_code(ec));
}

}  // namespace detail

// Each function takes a file on any executor (`fsys::file`, a file on a
// strand, ...) and any buffer sequence, which it keeps by value in the
// coroutine frame (the memory it points to must stay valid until the
// coroutine resumes). They throw `std::system_error`; the coroutine resumes on
// its own executor.

/// Reads until `buffers` are full (fewer bytes only at end of file) at
/// `offset` and returns how many were read. Throws `std::system_error` on
/// failure. Completes on the coroutine's executor; cancelling the coroutine
/// cancels the read (operation_aborted).
///
/// With the inline fast path on (`ring_options::inline_fast_path`), a read
/// whose bytes are all in the page cache is done by one
/// `preadv2(RWF_NOWAIT)` in the calling thread, and the coroutine continues
/// at once, without an operation or a trip through the io_context's queue
/// (the cheapest path there is). After `detail::inline_resume_limit` such
/// reads in a row on one thread, the next one resumes through the queue,
/// so that other handlers get to run. A read that is not (all) cached
/// continues on the ring from where the attempt stopped. A coroutine
/// already asked to cancel makes no attempt.
template <class Executor, class MutableBufferSequence>
  requires asio::is_mutable_buffer_sequence<MutableBufferSequence>::value
asio::awaitable<std::size_t> co_read_at(basic_file<Executor>& f, std::uint64_t offset,
                                        MutableBufferSequence buffers) {
  const asio::cancellation_state cs = co_await asio::this_coro::cancellation_state;
  detail::nowait_outcome pre;
  if (cs.cancelled() != asio::cancellation_type::none) {
    pre.decided = true;  // asked to cancel: no attempt; the engine decides, as it always has
  } else if (detail::take_inline_resume()) {
    pre = detail::file_access::try_direct(f, detail::op_kind::read_full, offset, buffers);
    if (pre.done) co_return pre.transferred;
  }
  auto [ec, n] = pre.decided ? co_await detail::file_access::initiate_after(f, detail::op_kind::read_full, offset,
                                                                           buffers, pre,
                                                                           asio::as_tuple(asio::use_awaitable))
                             : co_await f.async_read_at(offset, buffers, asio::as_tuple(asio::use_awaitable));
  if (ec) detail::throw_co_error(ec, "fsys::co_read_at");
  co_return n;
}

/// Writes all of `buffers` at `offset`; returns the bytes written (all of
/// them). Throws `std::system_error` on failure. Completes on the coroutine's
/// executor; cancelling the coroutine cancels the write (operation_aborted
/// unless the kernel had already written). Not durable: see
/// `co_write_linked_fsync`.
///
/// With the inline fast path on, a write the filesystem takes without
/// waiting (`pwritev2(RWF_NOWAIT)`: XFS and btrfs overwrites of cached,
/// allocated blocks) is done in the calling thread and the coroutine
/// continues at once, as for `co_read_at`; on a filesystem that refuses
/// such writes (ext4, tmpfs) the first write tells, and every later one
/// goes to the ring without an attempt.
template <class Executor, class ConstBufferSequence>
  requires asio::is_const_buffer_sequence<ConstBufferSequence>::value
asio::awaitable<std::size_t> co_write_at(basic_file<Executor>& f, std::uint64_t offset,
                                         ConstBufferSequence buffers) {
  const asio::cancellation_state cs = co_await asio::this_coro::cancellation_state;
  detail::nowait_outcome pre;
  if (cs.cancelled() != asio::cancellation_type::none) {
    pre.decided = true;  // asked to cancel: no attempt; the engine decides, as it always has
  } else if (detail::take_inline_resume()) {
    pre = detail::file_access::try_direct(f, detail::op_kind::write_full, offset, buffers);
    if (pre.done) co_return pre.transferred;
  }
  auto [ec, n] = pre.decided ? co_await detail::file_access::initiate_after(f, detail::op_kind::write_full, offset,
                                                                           buffers, pre,
                                                                           asio::as_tuple(asio::use_awaitable))
                             : co_await f.async_write_at(offset, buffers, asio::as_tuple(asio::use_awaitable));
  if (ec) detail::throw_co_error(ec, "fsys::co_write_at");
  co_return n;
}

/// Writes all of `buffers` at `offset` with a linked fsync(DATASYNC) in one
/// submission; when it returns, the bytes are durable. Throws
/// `std::system_error` on failure, in which case nothing of this call may be
/// assumed durable. Completes on the coroutine's executor; cancelling the
/// coroutine cancels the write and its sync (operation_aborted: not
/// durable). See `basic_file::async_write_linked_fsync`.
template <class Executor, class ConstBufferSequence>
  requires asio::is_const_buffer_sequence<ConstBufferSequence>::value
asio::awaitable<std::size_t> co_write_linked_fsync(basic_file<Executor>& f, std::uint64_t offset,
                                                   ConstBufferSequence buffers) {
  auto [ec, n] = co_await f.async_write_linked_fsync(offset, buffers, asio::as_tuple(asio::use_awaitable));
  if (ec) detail::throw_co_error(ec, "fsys::co_write_linked_fsync");
  co_return n;
}

/// Writes `buffers` at `offset` untorn (one `RWF_ATOMIC` write: after a
/// crash the range holds all of the new bytes or none) and returns the bytes
/// written (all of them). Not durable by itself: see
/// `co_write_atomic_linked_fsync`. Throws `std::system_error` on failure,
/// with the `errc::atomic_write_*` value of a refused request (see
/// `basic_file::async_write_atomic_at` for the rules; `async_stat` gives the
/// limits). Completes on the coroutine's executor; cancelling the coroutine
/// cancels the write if the kernel has not started it.
template <class Executor, class ConstBufferSequence>
  requires asio::is_const_buffer_sequence<ConstBufferSequence>::value
asio::awaitable<std::size_t> co_write_atomic_at(basic_file<Executor>& f, std::uint64_t offset,
                                                ConstBufferSequence buffers) {
  auto [ec, n] = co_await f.async_write_atomic_at(offset, buffers, asio::as_tuple(asio::use_awaitable));
  if (ec) detail::throw_co_error(ec, "fsys::co_write_atomic_at");
  co_return n;
}

/// Writes `buffers` at `offset` untorn and durable: one `RWF_ATOMIC` write
/// linked to an fsync(DATASYNC) in one submission. When it returns, the new
/// bytes are durable and were never torn. Throws `std::system_error` on
/// failure, in which case nothing of this call may be assumed durable (the
/// range holds the old or the new bytes, whole). See
/// `basic_file::async_write_atomic_linked_fsync`.
template <class Executor, class ConstBufferSequence>
  requires asio::is_const_buffer_sequence<ConstBufferSequence>::value
asio::awaitable<std::size_t> co_write_atomic_linked_fsync(basic_file<Executor>& f, std::uint64_t offset,
                                                          ConstBufferSequence buffers) {
  auto [ec, n] = co_await f.async_write_atomic_linked_fsync(offset, buffers, asio::as_tuple(asio::use_awaitable));
  if (ec) detail::throw_co_error(ec, "fsys::co_write_atomic_linked_fsync");
  co_return n;
}

/// fdatasync(2) through the ring: makes durable the data of the writes that
/// completed before it started. Throws `std::system_error` on failure (a
/// failed sync is final: see docs/durability.md). Completes on the
/// coroutine's executor; cancelling the coroutine cancels the sync if the
/// kernel has not started it.
template <class Executor>
asio::awaitable<void> co_fdatasync(basic_file<Executor>& f) {
  auto [ec] = co_await f.async_fdatasync(asio::as_tuple(asio::use_awaitable));
  if (ec) detail::throw_co_error(ec, "fsys::co_fdatasync");
}

/// fsync(2) through the ring: as `co_fdatasync`, and also makes the file's
/// metadata (size, timestamps) durable. Throws `std::system_error` on
/// failure (a failed sync is final). Completes on the coroutine's executor;
/// cancelling the coroutine cancels the sync if the kernel has not started it.
template <class Executor>
asio::awaitable<void> co_fsync(basic_file<Executor>& f) {
  auto [ec] = co_await f.async_fsync(asio::as_tuple(asio::use_awaitable));
  if (ec) detail::throw_co_error(ec, "fsys::co_fsync");
}

}  // namespace fsys
