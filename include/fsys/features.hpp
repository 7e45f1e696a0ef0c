// fsys — what the running kernel's io_uring offers, probed once per process.
#pragma once

#include <cstdint>
#include <string>
#include <system_error>

namespace fsys {

/// The result of probing io_uring on this kernel.
struct ring_features {
  /// `io_uring_setup(2)` succeeded for a small ring.
  bool available = false;
  /// Why io_uring is not available: the errno of `io_uring_setup(2)` (EPERM
  /// for seccomp or `kernel.io_uring_disabled`, ENOSYS for old kernels,
  /// ENOMEM for RLIMIT_MEMLOCK), or `errc::io_uring_setup_failed` when
  /// `FSYS_DISABLE_IO_URING=1` disabled it. Empty when `available`.
  std::error_code setup_error;
  /// `FSYS_DISABLE_IO_URING=1` was set when the probe ran.
  bool disabled_by_environment = false;

  /// Setup flags the kernel accepts.
  bool coop_taskrun = false;
  bool taskrun_flag = false;
  bool single_issuer = false;
  bool defer_taskrun = false;  ///< accepted together with SINGLE_ISSUER
  bool submit_all = false;
  bool sqpoll = false;

  /// `io_uring_params::features` of the probe ring (IORING_FEAT_* bits).
  std::uint32_t kernel_features = 0;
  bool nodrop = false;  ///< IORING_FEAT_NODROP: completions are never dropped

  /// Opcodes the kernel supports.
  bool op_read = false;
  bool op_write = false;
  bool op_readv = false;
  bool op_writev = false;
  bool op_read_fixed = false;
  bool op_write_fixed = false;
  bool op_fsync = false;
  bool op_async_cancel = false;
  bool op_link_timeout = false;
  bool op_uring_cmd = false;

  /// A one-line human-readable summary.
  std::string summary() const;
};

/// Probes io_uring once per process (thread-safe; later calls return the
/// same object) and reports what the kernel accepts. Never throws.
const ring_features& probe_features() noexcept;

/// True when the environment variable `FSYS_DISABLE_IO_URING` is set to a
/// value other than empty or "0".
bool io_uring_disabled_by_environment() noexcept;

}  // namespace fsys
