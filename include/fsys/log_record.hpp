// fsys — the record frame of fsys::durable_log: CRC-32C and frame encoding.
#pragma once

#include <cstddef>
#include <cstdint>

namespace fsys {

/// Continues a CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) over
/// `size` bytes at `data`: start with `crc = 0` and feed the pieces in order.
/// Uses the SSE4.2 `crc32` instruction when the CPU has it.
std::uint32_t crc32c(std::uint32_t crc, const void* data, std::size_t size) noexcept;

/// Bytes of a record frame's header: u32 payload length, u32 checksum, both
/// little-endian. The payload follows the header.
inline constexpr std::size_t log_record_header_size = 8;

/// The checksum stored in a frame: CRC-32C over the 4 little-endian length
/// bytes followed by the payload, so that a damaged length is caught as well
/// as damaged contents. For a payload in pieces see `log_record_checksum_begin`.
std::uint32_t log_record_checksum(const void* payload, std::uint32_t length) noexcept;

/// Starts the checksum of a frame whose payload is `length` bytes; feed the
/// payload's pieces to `crc32c(state, ...)` in order. The result equals
/// `log_record_checksum` over the whole payload.
std::uint32_t log_record_checksum_begin(std::uint32_t length) noexcept;

/// Writes the 8-byte header of a frame (`length`, `checksum`) at `header`.
void encode_log_record_header(std::byte* header, std::uint32_t length, std::uint32_t checksum) noexcept;

/// Reads the payload length of the frame header at `header`.
std::uint32_t log_record_length(const std::byte* header) noexcept;

/// Reads the stored checksum of the frame header at `header`.
std::uint32_t log_record_stored_checksum(const std::byte* header) noexcept;

/// True when the frame at `header` (its payload follows the header in
/// memory, `log_record_length(header)` bytes, which the caller has checked
/// are there) carries a matching checksum.
bool log_record_valid(const std::byte* header) noexcept;

}  // namespace fsys
