// Case definitions shared by the source files of the fsys-bench executable.
#pragma once

#include "common.hpp"

#include <functional>
#include <string>

namespace bench {

/// What one operation of a case does.
enum class op_kind {
  read,
  write,
  write_linked_fsync,    ///< write linked to fsync(DATASYNC), one submission
  write_then_fdatasync,  ///< write, wait, then fdatasync: two round trips
};

/// Thread counts of the blocking-caller cases (issue 3).
inline constexpr unsigned blocking_threads[] = {1, 4, 16};
inline constexpr std::uint64_t blocking_ops = 400000;

inline std::string blocking_case_name(op_kind kind, unsigned threads) {
  return std::string(kind == op_kind::read ? "blocking_randread_cache_" : "blocking_randwrite_buffered_") +
         std::to_string(threads) + "t";
}

/// Runs `threads` threads, each calling `call(fd, buf, offset)` for random
/// 4 KiB blocks of the read file (kind read) or the write file (kind write)
/// until `b` runs out, checking every result. Reports no enter count.
run_result run_threads(op_kind kind, op_mode mode, unsigned threads, budget& b,
                       const std::function<long(int fd, std::byte* buf, std::uint64_t off)>& call,
                       const char* who);

void register_reference_benchmarks();
void register_fsys_benchmarks();
void register_fs_benchmarks();
void register_thread_benchmarks();
#ifdef FSYS_BENCH_HAVE_BLOCKING_RING
void register_blocking_ring_benchmarks();
#endif

}  // namespace bench
