// Durable log server example: the record format shared by the server, the
// load client and the tests, and the recovery scan that truncates a torn tail.
//
// A record is a frame, the same on the wire and in the log (the frame of
// fsys::durable_log, include/fsys/log_record.hpp):
//
//   u32 length    bytes of payload that follow the 8-byte header
//   u32 checksum  CRC-32C over the 4 length bytes and the payload
//   payload:      u64 client id, u64 sequence number, body (length - 16 bytes)
//
// All integers are little-endian. The checksum covers the length field so that
// a damaged length is caught as well as damaged contents.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <fsys/log_record.hpp>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <span>
#include <string>
#include <system_error>
#include <vector>

namespace logsrv {

/// Size of the frame header (length + checksum).
inline constexpr std::size_t header_size = 8;
/// Smallest payload: client id + sequence number.
inline constexpr std::uint32_t min_payload = 16;
/// Largest payload the server accepts and the scan believes; a larger length
/// field is treated as damage.
inline constexpr std::uint32_t max_payload = 1u << 20;

/// Continues a CRC-32C over `data`: start with `crc = 0`, feed pieces in
/// order (fsys::crc32c, the checksum of fsys::durable_log's frames).
inline std::uint32_t crc32c(std::uint32_t crc, const void* data, std::size_t size) noexcept {
  return fsys::crc32c(crc, data, size);
}

inline void put_u32(std::byte* p, std::uint32_t v) noexcept {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<std::byte>(v >> (8 * i));
}
inline void put_u64(std::byte* p, std::uint64_t v) noexcept {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<std::byte>(v >> (8 * i));
}
inline std::uint32_t get_u32(const std::byte* p) noexcept {
  std::uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= std::uint32_t(std::to_integer<std::uint8_t>(p[i])) << (8 * i);
  return v;
}
inline std::uint64_t get_u64(const std::byte* p) noexcept {
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= std::uint64_t(std::to_integer<std::uint8_t>(p[i])) << (8 * i);
  return v;
}

/// The checksum stored in a frame: CRC-32C over the length bytes and payload.
inline std::uint32_t frame_checksum(const std::byte* length_bytes, const std::byte* payload,
                                    std::size_t payload_size) noexcept {
  return fsys::crc32c(fsys::crc32c(0, length_bytes, 4), payload, payload_size);
}

/// Checks a header and its payload; true when the length is in range and the
/// checksum matches.
inline bool frame_valid(const std::byte* header, const std::byte* payload) noexcept {
  std::uint32_t len = get_u32(header);
  if (len < min_payload || len > max_payload) return false;
  return frame_checksum(header, payload, len) == get_u32(header + 4);
}

/// The body bytes of record (client, seq): a deterministic pattern, so that
/// the verifier can tell an intact record from a damaged one independently of
/// the checksum.
inline void fill_body(std::byte* body, std::size_t size, std::uint64_t client, std::uint64_t seq) noexcept {
  std::uint64_t x = client * 0x9E3779B97F4A7C15ull ^ (seq + 0x632BE59BD9B4E019ull);
  for (std::size_t i = 0; i < size; ++i) {
    // xorshift64: cheap, and every byte depends on (client, seq).
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    body[i] = static_cast<std::byte>(x);
  }
}

/// Appends the frame of record (client, seq) with a `body_size`-byte body to `out`.
inline void append_record(std::vector<std::byte>& out, std::uint64_t client, std::uint64_t seq,
                          std::size_t body_size) {
  std::size_t at = out.size();
  std::uint32_t len = static_cast<std::uint32_t>(min_payload + body_size);
  out.resize(at + header_size + len);
  std::byte* h = out.data() + at;
  put_u32(h, len);
  put_u64(h + header_size, client);
  put_u64(h + header_size + 8, seq);
  fill_body(h + header_size + min_payload, body_size, client, seq);
  put_u32(h + 4, frame_checksum(h, h + header_size, len));
}

/// One valid record met by `scan_log`.
struct record_view {
  std::uint64_t offset;            ///< where its frame starts in the file
  std::uint64_t client;            ///< client id
  std::uint64_t seq;               ///< sequence number
  std::span<const std::byte> body; ///< the body (valid only during the callback)
};

/// What `scan_log` / `recover_log` found.
struct scan_result {
  std::uint64_t records = 0;     ///< valid records from the start of the file
  std::uint64_t valid_bytes = 0; ///< length of the valid prefix
  std::uint64_t file_size = 0;   ///< size of the file when scanned
  /// Bytes after the valid prefix (a torn or damaged tail).
  std::uint64_t tail_bytes() const noexcept { return file_size - valid_bytes; }
};

/// Reads `fd` from offset 0 and validates frame after frame (length in range,
/// checksum matching) until the first one that is incomplete or invalid;
/// calls `on_record(const record_view&)` for each valid one. The valid prefix
/// ends there. Synchronous (pread), meant for start-up and verification.
template <class OnRecord>
scan_result scan_log(int fd, OnRecord&& on_record, std::error_code& ec) {
  scan_result r;
  ec.clear();
  off_t end = ::lseek(fd, 0, SEEK_END);
  if (end < 0) {
    ec.assign(errno, std::system_category());
    return r;
  }
  r.file_size = static_cast<std::uint64_t>(end);

  // A window of the file, refilled as the scan moves on; a record never
  // needs more than header_size + max_payload bytes of it.
  std::vector<std::byte> win(std::size_t(4) << 20);
  std::uint64_t win_off = 0;  // file offset of win[0]
  std::size_t win_len = 0;    // bytes of win that hold file data
  std::uint64_t pos = 0;      // start of the next frame

  // Makes [pos, pos + need) available in the window; false at end of file.
  auto ensure = [&](std::size_t need) -> bool {
    if (pos + need <= win_off + win_len) return true;
    if (pos + need > r.file_size) return false;
    std::size_t keep = static_cast<std::size_t>(win_off + win_len - pos);
    std::memmove(win.data(), win.data() + (pos - win_off), keep);
    win_off = pos;
    win_len = keep;
    while (win_len < win.size() && win_off + win_len < r.file_size) {
      // pread into the unused part of our own vector: bounded by win.size().
      ssize_t n = ::pread(fd, win.data() + win_len, win.size() - win_len,
                          static_cast<off_t>(win_off + win_len));
      if (n < 0) {
        if (errno == EINTR) continue;
        ec.assign(errno, std::system_category());
        return false;
      }
      if (n == 0) break;  // the file shrank under us: stop at what we have
      win_len += static_cast<std::size_t>(n);
    }
    return pos + need <= win_off + win_len;
  };

  // Bounded by the file size: every pass advances pos by at least 24 bytes.
  while (!ec && ensure(header_size)) {
    const std::byte* h = win.data() + (pos - win_off);
    std::uint32_t len = get_u32(h);
    if (len < min_payload || len > max_payload) break;
    if (!ensure(header_size + len)) break;
    h = win.data() + (pos - win_off);  // ensure() may have moved the window
    if (!frame_valid(h, h + header_size)) break;
    const std::byte* p = h + header_size;
    on_record(record_view{pos, get_u64(p), get_u64(p + 8),
                          std::span<const std::byte>(p + min_payload, len - min_payload)});
    ++r.records;
    pos += header_size + len;
  }
  r.valid_bytes = pos;
  return r;
}

/// `scan_log` without a callback.
inline scan_result scan_log(int fd, std::error_code& ec) {
  return scan_log(fd, [](const record_view&) {}, ec);
}

/// Start-up recovery: scans `fd` (see `scan_log`) and, if anything follows
/// the valid prefix, truncates the file there and makes the new size durable
/// (fsync), so that appends continue right after the last valid record. The
/// returned `tail_bytes()` is how much was cut off.
///
/// Cutting at the first invalid frame is right for this log because the
/// server has at most one write in flight and submits it only after the
/// previous write+fsync completed: a crash can damage only the last write,
/// whose records were never acknowledged.
inline scan_result recover_log(int fd, std::error_code& ec) {
  scan_result r = scan_log(fd, ec);
  if (ec || r.tail_bytes() == 0) return r;
  if (::ftruncate(fd, static_cast<off_t>(r.valid_bytes)) != 0 || ::fsync(fd) != 0) {
    ec.assign(errno, std::system_category());
  }
  return r;
}

/// What `scan_log_dir` found in a fsys::durable_log directory.
struct dir_scan_result {
  std::uint64_t segments = 0;    ///< segment files
  std::uint64_t records = 0;     ///< valid records, all segments
  std::uint64_t valid_bytes = 0; ///< bytes of valid records, all segments
  /// Bytes from the end of the last valid record of the last segment to its
  /// last non-zero byte (a torn tail; preallocated zeros do not count).
  std::uint64_t tail_bytes = 0;
  std::filesystem::path last_segment; ///< the last segment file
  std::uint64_t last_valid_end = 0;   ///< end of its last valid record
  bool damaged_before_tail = false;   ///< bytes after the records of an earlier segment
};

/// Scans every segment (`*.seg`, in name order) of a fsys::durable_log
/// directory with `scan_log`, calling `on_record` for each valid record
/// (offsets are within the segment). Synchronous, for verification.
template <class OnRecord>
dir_scan_result scan_log_dir(const std::filesystem::path& dir, OnRecord&& on_record, std::error_code& ec) {
  dir_scan_result r;
  std::vector<std::filesystem::path> segs;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec))
    if (e.path().extension() == ".seg") segs.push_back(e.path());
  if (ec) return r;
  std::sort(segs.begin(), segs.end());
  for (std::size_t i = 0; i < segs.size(); ++i) {
    int fd = ::open(segs[i].c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      ec.assign(errno, std::system_category());
      return r;
    }
    scan_result s = scan_log(fd, on_record, ec);
    // The last non-zero byte after the valid records.
    std::uint64_t dirty = s.valid_bytes;
    std::vector<std::byte> buf(1 << 20);
    for (std::uint64_t at = s.valid_bytes; !ec && at < s.file_size;) {
      // pread into our own vector, bounded by its size.
      ssize_t n = ::pread(fd, buf.data(), buf.size(), static_cast<off_t>(at));
      if (n <= 0) break;
      for (ssize_t k = n; k > 0; --k)
        if (buf[static_cast<std::size_t>(k - 1)] != std::byte{0}) {
          dirty = at + static_cast<std::uint64_t>(k);
          break;
        }
      at += static_cast<std::uint64_t>(n);
    }
    ::close(fd);
    if (ec) return r;
    ++r.segments;
    r.records += s.records;
    r.valid_bytes += s.valid_bytes;
    if (i + 1 == segs.size()) {
      r.tail_bytes = dirty - s.valid_bytes;
      r.last_segment = segs[i];
      r.last_valid_end = s.valid_bytes;
    } else if (dirty != s.valid_bytes) {
      r.damaged_before_tail = true;
    }
  }
  return r;
}

}  // namespace logsrv
