// CRC-32C and the record frame of fsys::durable_log (include/fsys/log_record.hpp).
#include <fsys/log_record.hpp>

#include <array>
#include <cstring>

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

namespace fsys {
namespace {

constexpr std::uint32_t poly = 0x82F63B78u;

constexpr std::array<std::uint32_t, 256> make_table() {
  std::array<std::uint32_t, 256> t{};
  for (std::uint32_t i = 0; i < 256; ++i) {
    std::uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ poly : c >> 1;
    t[i] = c;
  }
  return t;
}

constexpr std::array<std::uint32_t, 256> table = make_table();

std::uint32_t crc_table(std::uint32_t crc, const unsigned char* p, std::size_t n) noexcept {
  for (std::size_t i = 0; i < n; ++i) crc = table[(crc ^ p[i]) & 0xFFu] ^ (crc >> 8);
  return crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) std::uint32_t crc_sse42(std::uint32_t crc, const unsigned char* p,
                                                          std::size_t n) noexcept {
  std::uint64_t c = crc;
  while (n >= 8) {
    std::uint64_t v;
    std::memcpy(&v, p, 8);
    c = _mm_crc32_u64(c, v);
    p += 8;
    n -= 8;
  }
  std::uint32_t c32 = static_cast<std::uint32_t>(c);
  while (n--) c32 = _mm_crc32_u8(c32, *p++);
  return c32;
}

const bool have_sse42 = __builtin_cpu_supports("sse4.2");
#endif

void put_u32(std::byte* p, std::uint32_t v) noexcept {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<std::byte>(v >> (8 * i));
}

std::uint32_t get_u32(const std::byte* p) noexcept {
  std::uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= std::uint32_t(std::to_integer<std::uint8_t>(p[i])) << (8 * i);
  return v;
}

}  // namespace

std::uint32_t crc32c(std::uint32_t crc, const void* data, std::size_t size) noexcept {
  const auto* p = static_cast<const unsigned char*>(data);
#if defined(__x86_64__)
  if (have_sse42) return ~crc_sse42(~crc, p, size);
#endif
  return ~crc_table(~crc, p, size);
}

std::uint32_t log_record_checksum_begin(std::uint32_t length) noexcept {
  std::byte len[4];
  put_u32(len, length);
  return crc32c(0, len, 4);
}

std::uint32_t log_record_checksum(const void* payload, std::uint32_t length) noexcept {
  return crc32c(log_record_checksum_begin(length), payload, length);
}

void encode_log_record_header(std::byte* header, std::uint32_t length, std::uint32_t checksum) noexcept {
  put_u32(header, length);
  put_u32(header + 4, checksum);
}

std::uint32_t log_record_length(const std::byte* header) noexcept { return get_u32(header); }

std::uint32_t log_record_stored_checksum(const std::byte* header) noexcept { return get_u32(header + 4); }

bool log_record_valid(const std::byte* header) noexcept {
  return log_record_checksum(header + log_record_header_size, log_record_length(header)) ==
         log_record_stored_checksum(header);
}

}  // namespace fsys
