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

  /// File-system opcodes. An operation whose opcode is missing runs on the
  /// psync workers instead (same results); `fs_ops_through_ring()` names
  /// the operations that go through the ring.
  bool op_openat = false;           ///< IORING_OP_OPENAT (5.6)
  bool op_openat2 = false;          ///< IORING_OP_OPENAT2 (5.6)
  bool op_close = false;            ///< IORING_OP_CLOSE (5.6)
  bool op_statx = false;            ///< IORING_OP_STATX (5.6)
  bool op_fallocate = false;        ///< IORING_OP_FALLOCATE (5.6)
  bool op_ftruncate = false;        ///< IORING_OP_FTRUNCATE (6.9)
  bool op_renameat = false;         ///< IORING_OP_RENAMEAT (5.11)
  bool op_unlinkat = false;         ///< IORING_OP_UNLINKAT (5.11)
  bool op_mkdirat = false;          ///< IORING_OP_MKDIRAT (5.15)
  bool op_symlinkat = false;        ///< IORING_OP_SYMLINKAT (5.15)
  bool op_linkat = false;           ///< IORING_OP_LINKAT (5.15)
  bool op_sync_file_range = false;  ///< IORING_OP_SYNC_FILE_RANGE (5.2)
  bool op_fadvise = false;          ///< IORING_OP_FADVISE (5.6)
  bool op_getxattr = false;         ///< IORING_OP_GETXATTR (5.19)
  bool op_setxattr = false;         ///< IORING_OP_SETXATTR (5.19)
  bool op_fgetxattr = false;        ///< IORING_OP_FGETXATTR (5.19)
  bool op_fsetxattr = false;        ///< IORING_OP_FSETXATTR (5.19)

  /// The file-system operations that go through the ring on this kernel,
  /// space-separated (`open close stat allocate resize rename remove
  /// create_directory create_symlink create_hard_link sync_range advise get_xattr set_xattr`);
  /// the others run on the psync workers. Empty when io_uring is unavailable.
  std::string fs_ops_through_ring() const;

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
