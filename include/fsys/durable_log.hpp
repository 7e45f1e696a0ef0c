// fsys — a durable append log with group commit (a write-ahead log).
//
// Design notes (for readers of the code; the user-facing promises are in
// docs/durability.md, "fsys::durable_log"):
// - The log is a directory of segment files named by the log-wide position of
//   their first record, zero-padded to 20 digits (`00000000000000000000.seg`).
//   A record is a frame (include/fsys/log_record.hpp): u32 payload length,
//   u32 CRC-32C over the length bytes and the payload, the payload. A
//   record's position is the log-wide byte offset of its frame; a record never
//   spans segments.
// - Group commit: appends queued while batches are in flight form the next
//   batch: their frames copied into one contiguous buffer, written at the
//   tail segment's end with one `async_write_linked_fsync` (write + fdatasync
//   linked). A record is acknowledged only when its batch's write wrote every
//   byte, its fsync returned 0, and every earlier batch did the same.
//   Deviation from the lead's one-batch-in-flight design: up to
//   `max_batches_in_flight` (default 4) batches overlap. Measured on ext4 here
//   (bench/log-results.md), one write+fdatasync costs a 4 ms tick while
//   concurrent fdatasyncs of one file overlap, so with one batch in flight N
//   threads each doing its own fdatasync were faster than the log (0.3-0.9x
//   at 64 appenders); with 4 in flight the log is 1.3-7.7x those threads and
//   meets the p99 target. Batches are acknowledged in order; a crash may
//   leave a later batch without an earlier one, which recovery treats as the
//   torn tail it is (nothing after the first invalid frame of the last
//   segment survives, and none of it was acknowledged). The power-cut proof
//   runs with 1 and with 4 in flight. `max_batches_in_flight = 1` gives the
//   one-batch behaviour.
// - Recovery (`async_open`) runs on a short-lived thread of its own with plain
//   system calls (a one-time sequential scan of every segment), so that it
//   blocks no thread of the io_context; everything else goes through fsys
//   file operations on the log's executor.
// - Segments are not prepared ahead: a segment's name is the position of its
//   first record, which is known only when the previous one is full. The
//   roll (create, fallocate, fsync, fsync of the directory) costs one batch's
//   latency once per segment.
// - State is guarded by one mutex; handlers are always posted to their
//   associated executor (default: the log's), never run inside an
//   initiating function.
#pragma once

#include <fsys/detail/asio.hpp>
#include <fsys/error.hpp>
#include <fsys/log_record.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/system/error_code.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace fsys {

/// Options of `durable_log::async_open`.
struct durable_log_options {
  /// Size limit of a segment file in bytes: a batch that would cross it goes
  /// to a new segment (records never span segments). Also the size new
  /// segments are preallocated to.
  std::uint64_t segment_size = std::uint64_t(64) << 20;
  /// Largest payload `async_append` accepts (bytes); at most
  /// `segment_size - log_record_header_size`. Recovery treats a larger length
  /// field as damage.
  std::uint32_t max_record_size = 16u << 20;
  /// Upper bound on the bytes (frames) of one batch; a single larger record
  /// still goes out alone.
  std::size_t max_batch_bytes = std::size_t(4) << 20;
  /// Like PostgreSQL's `commit_delay`: when a batch is about to start with
  /// fewer than `commit_siblings` records queued, wait up to this long for
  /// more (the wait ends early once `commit_siblings` are queued). 0 (the
  /// default): never wait.
  std::chrono::microseconds commit_delay{0};
  /// See `commit_delay`.
  std::size_t commit_siblings = 5;
  /// Batches (each one linked write + fdatasync) in flight at once; 0 counts
  /// as 1. With 1 a batch starts only when the previous one completed. More
  /// (the default: 4) lets the kernel overlap the syncs (ext4 shares journal
  /// commits and cache flushes between concurrent fdatasyncs of a file):
  /// batches still complete in order, a batch is acknowledged only when it
  /// and every batch before it succeeded, and a segment roll waits until the
  /// batches on the full segment completed.
  std::size_t max_batches_in_flight = 4;
  /// Preallocate each new segment with `fallocate` (mode 0) to
  /// `segment_size`, so that the fdatasync of a batch has no size change to
  /// journal. Filesystems without fallocate are used without preallocation.
  bool preallocate = true;
  /// Create the directory (and the first segment) when it does not exist;
  /// when false a missing directory fails `async_open` with `ENOENT`.
  bool create = true;
  /// @cond FSYS_INTERNAL
  // Test hook (negative control of the power-cut proof): acknowledge a batch
  // after its write, without any sync. Never use it elsewhere.
  bool unsafe_ack_before_sync_for_tests = false;
  /// @endcond
};

/// What `durable_log::async_open` found and did.
struct recovery_report {
  /// Segment files of the log.
  std::uint64_t segments = 0;
  /// Valid records in all segments.
  std::uint64_t records = 0;
  /// Position of the first record (the first segment's start).
  std::uint64_t start_position = 0;
  /// Where the next append goes: the end of the last valid record.
  std::uint64_t end_position = 0;
  /// Bytes of the torn tail of the last segment that recovery zeroed (from
  /// the end of the last valid record to the last non-zero byte); 0 when the
  /// log ended cleanly.
  std::uint64_t dropped_bytes = 0;
};

/// Counters of a `durable_log` since it was opened.
struct durable_log_stats {
  /// Records acknowledged durable.
  std::uint64_t records = 0;
  /// Batches written and synced (one linked write + fdatasync each): fewer
  /// than `records` when group commit shared syncs.
  std::uint64_t commits = 0;
  /// Bytes written by acknowledged batches (frames).
  std::uint64_t bytes = 0;
  /// Segments created by this log object (rolls, and the first segment of a
  /// new log).
  std::uint64_t segments_created = 0;
  /// Whether new segments are preallocated (false after fallocate was refused).
  bool preallocated = true;
};

class durable_log;

namespace detail {
class durable_log_core;

using log_append_handler = asio::any_completion_handler<void(boost::system::error_code, std::uint64_t)>;
using log_read_handler = asio::any_completion_handler<void(boost::system::error_code, std::vector<std::byte>)>;
using log_next_handler =
    asio::any_completion_handler<void(boost::system::error_code, std::uint64_t, std::vector<std::byte>)>;
using log_void_handler = asio::any_completion_handler<void(boost::system::error_code)>;
using log_open_handler =
    asio::any_completion_handler<void(boost::system::error_code, durable_log, recovery_report)>;

void log_open(asio::any_io_executor ex, std::filesystem::path dir, durable_log_options opt, log_open_handler h);
void log_append(const std::shared_ptr<durable_log_core>& c, std::vector<std::byte> frame, log_append_handler h);
void log_read(const std::shared_ptr<durable_log_core>& c, std::uint64_t pos, log_read_handler h);
void log_read_next(const std::shared_ptr<durable_log_core>& c, std::uint64_t* pos, log_next_handler h);
void log_truncate_front(const std::shared_ptr<durable_log_core>& c, std::uint64_t pos, log_void_handler h);
void log_close(const std::shared_ptr<durable_log_core>& c, log_void_handler h);
durable_log_stats log_stats(const durable_log_core& c);
std::uint64_t log_start(const durable_log_core& c);
std::uint64_t log_end(const durable_log_core& c);

// One frame (header + payload) built from a buffer sequence; empty when the
// payload does not fit a u32 length (the log refuses it).
template <class ConstBufferSequence>
std::vector<std::byte> make_log_frame(const ConstBufferSequence& buffers) {
  const std::size_t n = asio::buffer_size(buffers);
  if (n > 0xFFFFFFF0u) return {};
  std::vector<std::byte> f(log_record_header_size + n);
  asio::buffer_copy(asio::buffer(f.data() + log_record_header_size, n), buffers);
  encode_log_record_header(f.data(), static_cast<std::uint32_t>(n),
                           log_record_checksum(f.data() + log_record_header_size, static_cast<std::uint32_t>(n)));
  return f;
}
}  // namespace detail

/// A durable append log with group commit: many appenders, each record
/// acknowledged only once it is on stable storage, syncs shared between the
/// records that arrive together. See docs/durability.md for exactly what it
/// promises and docs/guide.md for a walk-through.
///
/// A `durable_log` is a handle (cheap to move, not copyable) to a log opened
/// by `async_open`; the log lives until its handle is gone and its last
/// operation completed. Every member function may be called from any thread,
/// concurrently (one io_context run by several threads is fine); handlers run
/// on their associated executor, by default the log's, never inside the
/// initiating function. Operations have no per-operation cancellation.
class durable_log {
 public:
  /// The executor the log's operations and default handlers run on.
  using executor_type = asio::any_io_executor;

  /// A sequential reader from a position (`durable_log::make_reader`).
  class reader;

  /// A handle that refers to no log (moved-from, or a failed `async_open`).
  durable_log() noexcept = default;
  /// Takes `other`'s log; `other` refers to none afterwards.
  durable_log(durable_log&& other) noexcept = default;
  /// Takes `other`'s log; this handle's previous log (if any) lives on until
  /// its operations completed (call `async_close` first to drain it).
  durable_log& operator=(durable_log&& other) noexcept = default;
  durable_log(const durable_log&) = delete;
  durable_log& operator=(const durable_log&) = delete;

  /// Whether this handle refers to a log.
  bool is_open() const noexcept { return core_ != nullptr; }

  /// Opens (and creates, with `options.create`) the log in `directory` and
  /// recovers it: scans every segment (length bounds, checksums), zeroes the
  /// last segment's torn tail and syncs that (reported in
  /// `recovery_report::dropped_bytes`). Damage anywhere else completes with
  /// `errc::log_corrupt` and deletes nothing. Completes with
  /// `(error_code, durable_log, recovery_report)` on `ex` (or the handler's
  /// associated executor); the log's operations run on `ex`. The scan runs
  /// on a short-lived thread of its own, not on `ex`. Errors:
  /// `errc::log_corrupt`, `std::errc::invalid_argument` for options that
  /// cannot work (`max_record_size` over `segment_size - 8`), `ENOENT`
  /// without `options.create`, `ENOTDIR`, and the system calls' errors.
  template <BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code, durable_log, recovery_report)) Token>
  static auto async_open(const executor_type& ex, std::filesystem::path directory, durable_log_options options,
                         Token&& token) {
    return asio::async_initiate<Token, void(boost::system::error_code, durable_log, recovery_report)>(
        [](auto handler, executor_type ex, std::filesystem::path dir, durable_log_options opt) {
          detail::log_open(ex, std::move(dir), opt, detail::log_open_handler(std::move(handler)));
        },
        token, ex, std::move(directory), options);
  }

  /// Appends one record whose payload is the bytes of `buffers` (copied
  /// before this function returns). Completes with
  /// `(error_code, std::uint64_t position)` once the record is durable: its
  /// batch was written in full and the linked fdatasync returned 0.
  /// Errors: the write's or sync's error for every record of a failed batch,
  /// `errc::log_failed` for every record queued then and every later append
  /// (the log must be reopened), `asio::error::message_size` for a payload
  /// larger than `max_record_size`, `asio::error::operation_aborted` after
  /// `async_close` began.
  template <class ConstBufferSequence,
            BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code, std::uint64_t)) Token>
  auto async_append(const ConstBufferSequence& buffers, Token&& token) {
    return asio::async_initiate<Token, void(boost::system::error_code, std::uint64_t)>(
        [this](auto handler, std::vector<std::byte> frame) {
          detail::log_append(core_, std::move(frame), detail::log_append_handler(std::move(handler)));
        },
        token, detail::make_log_frame(buffers));
  }

  /// Reads the payload of the record at `position` (a position an append
  /// reported, or a reader passed). Only durable records are read. Completes
  /// with `(error_code, std::vector<std::byte> payload)`; the checksum is
  /// checked. Errors: `errc::log_bad_position`, the read's error.
  template <BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code, std::vector<std::byte>)) Token>
  auto async_read(std::uint64_t position, Token&& token) {
    return asio::async_initiate<Token, void(boost::system::error_code, std::vector<std::byte>)>(
        [this](auto handler, std::uint64_t pos) {
          detail::log_read(core_, pos, detail::log_read_handler(std::move(handler)));
        },
        token, position);
  }

  /// Deletes every segment whose records all lie before `position` (never the
  /// last segment), then syncs the directory. Records from `position` on stay
  /// readable. Completes with `(error_code)`.
  template <BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code)) Token>
  auto async_truncate_front(std::uint64_t position, Token&& token) {
    return asio::async_initiate<Token, void(boost::system::error_code)>(
        [this](auto handler, std::uint64_t pos) {
          detail::log_truncate_front(core_, pos, detail::log_void_handler(std::move(handler)));
        },
        token, position);
  }

  /// Refuses new appends, waits until every queued append completed, then
  /// closes the segment files. Completes with `(error_code)`.
  template <BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code)) Token>
  auto async_close(Token&& token) {
    return asio::async_initiate<Token, void(boost::system::error_code)>(
        [this](auto handler) { detail::log_close(core_, detail::log_void_handler(std::move(handler))); }, token);
  }

  /// A reader that returns the records from `position` (a record's start)
  /// on, one per `async_read_next`. Requires `is_open()`; the operations
  /// themselves also require it.
  reader make_reader(std::uint64_t position) const;

  /// Position of the first record still in the log. This and the other
  /// observers below require `is_open()`.
  std::uint64_t start_position() const { return detail::log_start(*core_); }
  /// The durable end: where the next batch goes (records before it are
  /// acknowledged or being acknowledged).
  std::uint64_t end_position() const { return detail::log_end(*core_); }
  /// Counters since the log was opened.
  durable_log_stats stats() const { return detail::log_stats(*core_); }

 private:
  friend void detail::log_open(asio::any_io_executor, std::filesystem::path, durable_log_options,
                               detail::log_open_handler);
  explicit durable_log(std::shared_ptr<detail::durable_log_core> c) noexcept : core_(std::move(c)) {}
  std::shared_ptr<detail::durable_log_core> core_;
};

/// Reads a log's records in order from a position. The reader must outlive
/// its operations; one `async_read_next` at a time.
class durable_log::reader {
 public:
  /// The position of the next record to read.
  std::uint64_t position() const noexcept { return pos_; }

  /// Reads the record at `position()` and advances past it. Completes with
  /// `(error_code, std::uint64_t position, std::vector<std::byte> payload)`;
  /// `asio::error::eof` at the durable end (read again later for records
  /// appended since). Errors: as `durable_log::async_read`.
  template <BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code, std::uint64_t, std::vector<std::byte>))
                Token>
  auto async_read_next(Token&& token) {
    return asio::async_initiate<Token, void(boost::system::error_code, std::uint64_t, std::vector<std::byte>)>(
        [this](auto handler) { detail::log_read_next(core_, &pos_, detail::log_next_handler(std::move(handler))); },
        token);
  }

 private:
  friend class durable_log;
  reader(std::shared_ptr<detail::durable_log_core> c, std::uint64_t pos) : core_(std::move(c)), pos_(pos) {}
  std::shared_ptr<detail::durable_log_core> core_;
  std::uint64_t pos_;
};

inline durable_log::reader durable_log::make_reader(std::uint64_t position) const { return reader(core_, position); }

}  // namespace fsys
