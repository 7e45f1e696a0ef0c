// fsys internal — decoding NVMe Identify data. Offsets follow the NVMe Base
// Specification's Identify Namespace and Identify Controller structures.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

namespace fsys::detail {

inline constexpr std::size_t nvme_identify_size = 4096;

// Identify Namespace (CNS 0) offsets.
inline constexpr std::size_t id_ns_nsfeat = 24;  // bit 1: NAWUN/NAWUPF/NACWU defined
inline constexpr std::size_t id_ns_nlbaf = 25;   // number of LBA formats, 0-based
inline constexpr std::size_t id_ns_flbas = 26;   // formatted LBA size (format index)
inline constexpr std::size_t id_ns_nawun = 34;
inline constexpr std::size_t id_ns_nawupf = 36;
inline constexpr std::size_t id_ns_lbaf = 128;   // 64 four-byte LBA format entries
// Identify Controller (CNS 1) offsets.
inline constexpr std::size_t id_ctrl_awupf = 528;

inline std::uint16_t load_le16(std::span<const std::byte, nvme_identify_size> b,
                               std::size_t at) noexcept {
  return static_cast<std::uint16_t>(std::to_integer<unsigned>(b[at]) |
                                    (std::to_integer<unsigned>(b[at + 1]) << 8));
}

/// The formatted LBA data size in bytes of an Identify Namespace structure,
/// or empty when the format entry is out of range or implausible.
inline std::optional<std::uint32_t> identify_ns_lba_size(
    std::span<const std::byte, nvme_identify_size> id) noexcept {
  const unsigned flbas = std::to_integer<unsigned>(id[id_ns_flbas]);
  const unsigned nlbaf = std::to_integer<unsigned>(id[id_ns_nlbaf]);
  // Bits 3:0 index the format; bits 6:5 extend it when more than 16 exist.
  unsigned index = flbas & 0x0Fu;
  if (nlbaf >= 16) index |= ((flbas >> 5) & 0x03u) << 4;
  if (index > nlbaf || index >= 64) return std::nullopt;
  // LBADS (byte 2 of the entry) is log2 of the data size; the spec requires >= 9.
  const unsigned lbads = std::to_integer<unsigned>(id[id_ns_lbaf + 4 * index + 2]);
  if (lbads < 9 || lbads > 31) return std::nullopt;
  return std::uint32_t{1} << lbads;
}

/// AWUPF (0-based logical blocks) from an Identify Controller structure.
inline std::uint32_t identify_ctrl_awupf(
    std::span<const std::byte, nvme_identify_size> id) noexcept {
  return load_le16(id, id_ctrl_awupf);
}

}  // namespace fsys::detail
