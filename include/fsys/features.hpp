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
  bool coop_taskrun = false;   ///< IORING_SETUP_COOP_TASKRUN
  bool taskrun_flag = false;   ///< IORING_SETUP_TASKRUN_FLAG
  bool single_issuer = false;  ///< IORING_SETUP_SINGLE_ISSUER
  bool defer_taskrun = false;  ///< accepted together with SINGLE_ISSUER
  bool submit_all = false;  ///< IORING_SETUP_SUBMIT_ALL
  bool sqpoll = false;      ///< IORING_SETUP_SQPOLL

  /// `io_uring_params::features` of the probe ring (IORING_FEAT_* bits).
  std::uint32_t kernel_features = 0;
  bool nodrop = false;  ///< IORING_FEAT_NODROP: completions are never dropped

  /// Opcodes the kernel supports.
  bool op_read = false;          ///< IORING_OP_READ
  bool op_write = false;         ///< IORING_OP_WRITE
  bool op_readv = false;         ///< IORING_OP_READV
  bool op_writev = false;        ///< IORING_OP_WRITEV
  bool op_read_fixed = false;    ///< IORING_OP_READ_FIXED
  bool op_write_fixed = false;   ///< IORING_OP_WRITE_FIXED
  bool op_fsync = false;         ///< IORING_OP_FSYNC
  bool op_async_cancel = false;  ///< IORING_OP_ASYNC_CANCEL
  bool op_link_timeout = false;  ///< IORING_OP_LINK_TIMEOUT
  bool op_uring_cmd = false;     ///< IORING_OP_URING_CMD (NVMe passthrough)

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
