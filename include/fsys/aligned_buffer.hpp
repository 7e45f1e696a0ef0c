// fsys — an owning, zero-initialised buffer with a chosen alignment, for
// O_DIRECT and NVMe passthrough transfers.
#pragma once

#include <cstddef>
#include <span>

namespace fsys {

struct drive_info;

/// An owning, movable, non-copyable block of zeroed bytes whose address is a
/// multiple of `alignment()`.
class aligned_buffer {
 public:
  /// An empty buffer: `data()` is null, `size()` is 0.
  aligned_buffer() noexcept = default;

  /// `size` zeroed bytes aligned to `alignment`.
  /// \throws std::invalid_argument if `alignment` is not a power of two.
  /// \throws std::bad_alloc if the memory cannot be allocated.
  aligned_buffer(std::size_t size, std::size_t alignment);

  /// A buffer usable for O_DIRECT on the file `info` describes: aligned to
  /// `direct_io_alignment(info)`, with `min_size` rounded up to the file's
  /// offset alignment (the larger of `dio_offset_align` and
  /// `logical_block_size` when known, else `direct_io_alignment(info)`).
  /// \throws std::bad_alloc if the memory cannot be allocated.
  aligned_buffer(const drive_info& info, std::size_t min_size);

  /// Takes `other`'s memory; `other` becomes empty.
  aligned_buffer(aligned_buffer&& other) noexcept;
  /// Frees this buffer's memory and takes `other`'s; `other` becomes empty.
  aligned_buffer& operator=(aligned_buffer&& other) noexcept;
  aligned_buffer(const aligned_buffer&) = delete;
  aligned_buffer& operator=(const aligned_buffer&) = delete;
  /// Frees the memory.
  ~aligned_buffer();

  std::byte* data() noexcept { return data_; }              ///< first byte, or null
  const std::byte* data() const noexcept { return data_; }  ///< first byte, or null
  std::size_t size() const noexcept { return size_; }       ///< bytes owned
  bool empty() const noexcept { return size_ == 0; }        ///< `size() == 0`
  /// The alignment requested at construction (1 for an empty default buffer).
  std::size_t alignment() const noexcept { return alignment_; }
  std::span<std::byte> as_span() noexcept { return {data_, size_}; }  ///< all bytes
  std::span<const std::byte> as_span() const noexcept { return {data_, size_}; }  ///< all bytes

 private:
  void release() noexcept;

  std::byte* data_ = nullptr;
  std::size_t size_ = 0;
  std::size_t alignment_ = 1;
};

}  // namespace fsys
