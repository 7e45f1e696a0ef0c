// fsys — read-ahead and write-behind of a stream file (`basic_stream_file::set_options`).
#pragma once

#include <cstddef>

namespace fsys {

/// Read-ahead and write-behind of a `basic_stream_file` (see
/// `basic_stream_file::set_options`). All zero (the default) gives exactly
/// `asio::stream_file`'s behaviour: one kernel operation per call.
struct stream_options {
  /// Reads kept in flight ahead of the position (0: no read-ahead).
  std::size_t read_ahead_count = 0;
  /// Bytes each read-ahead read asks for.
  std::size_t read_ahead_size = 256 * 1024;
  /// Writes kept in flight behind the position (0: no write-behind). Each
  /// `async_write_some` copies up to `write_behind_size` bytes of the
  /// caller's data, starts the write and completes at once; errors are
  /// reported later (see the class documentation). Ignored on a file opened
  /// with `append` (appends must land in order).
  std::size_t write_behind_count = 0;
  /// The most bytes one write-behind write takes from the caller.
  std::size_t write_behind_size = 1024 * 1024;
};

}  // namespace fsys
