// Ring set-up and tear-down, with the one annotation ThreadSanitizer needs.
//
// liburing maps the SQ/CQ rings and the SQE array with raw system calls, so
// ThreadSanitizer never sees those mmap/munmap calls. When one thread tears a
// ring down and another thread's new ring is mapped at the same address (the
// kernel reuses freed ranges at once), TSan compares accesses to the new ring
// with stale shadow state from the old one and reports a race that cannot
// exist: the kernel orders the munmap before the mmap that reuses the range.
// We state that order to TSan with a release before every unmap and an
// acquire after every map, on one process-wide token. Without TSan these are
// plain calls to liburing.
#pragma once

#include <liburing.h>

#if defined(__SANITIZE_THREAD__)
#include <sanitizer/tsan_interface.h>
#endif

namespace fsys::detail {

#if defined(__SANITIZE_THREAD__)
inline char ring_mapping_token;
#endif

inline int ring_init(unsigned entries, io_uring* ring, io_uring_params* p) {
  int r = io_uring_queue_init_params(entries, ring, p);
#if defined(__SANITIZE_THREAD__)
  if (r == 0) __tsan_acquire(&ring_mapping_token);
#endif
  return r;
}

inline void ring_exit(io_uring* ring) {
#if defined(__SANITIZE_THREAD__)
  __tsan_release(&ring_mapping_token);
#endif
  io_uring_queue_exit(ring);
}

}  // namespace fsys::detail
