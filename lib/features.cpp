#include <fsys/error.hpp>
#include <fsys/features.hpp>

#include "ring_mapping.hpp"

#include <liburing.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace fsys {
namespace {

// Tries to build an 8-entry ring with `flags`; returns 0 or -errno.
int try_setup(unsigned flags, io_uring_params* out = nullptr) {
  io_uring ring;
  io_uring_params p;
  std::memset(&p, 0, sizeof p);
  p.flags = flags;
  // The probe's SQPOLL thread polls until the ring is torn down (which the
  // kernel finishes asynchronously) or it has been idle this long: keep the
  // busy-polling at process start short.
  if (flags & IORING_SETUP_SQPOLL) p.sq_thread_idle = 1;
  int r = detail::ring_init(8, &ring, &p);
  if (r < 0) return r;
  if (out) *out = p;
  detail::ring_exit(&ring);
  return 0;
}

ring_features do_probe() {
  ring_features f;
  if (io_uring_disabled_by_environment()) {
    f.disabled_by_environment = true;
    f.setup_error = make_error_code(errc::io_uring_setup_failed);
    return f;
  }
  io_uring_params params;
  int r = try_setup(0, &params);
  if (r < 0) {
    f.setup_error = std::error_code(-r, std::system_category());
    return f;
  }
  f.available = true;
  f.kernel_features = params.features;
  f.nodrop = params.features & IORING_FEAT_NODROP;
  f.coop_taskrun = try_setup(IORING_SETUP_COOP_TASKRUN) == 0;
  f.taskrun_flag = f.coop_taskrun &&
                   try_setup(IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG) == 0;
  f.single_issuer = try_setup(IORING_SETUP_SINGLE_ISSUER) == 0;
  f.defer_taskrun =
      f.single_issuer && try_setup(IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN) == 0;
  f.submit_all = try_setup(IORING_SETUP_SUBMIT_ALL) == 0;
  f.sqpoll = try_setup(IORING_SETUP_SQPOLL) == 0;

  if (io_uring_probe* probe = io_uring_get_probe()) {
    f.op_read = io_uring_opcode_supported(probe, IORING_OP_READ);
    f.op_write = io_uring_opcode_supported(probe, IORING_OP_WRITE);
    f.op_readv = io_uring_opcode_supported(probe, IORING_OP_READV);
    f.op_writev = io_uring_opcode_supported(probe, IORING_OP_WRITEV);
    f.op_read_fixed = io_uring_opcode_supported(probe, IORING_OP_READ_FIXED);
    f.op_write_fixed = io_uring_opcode_supported(probe, IORING_OP_WRITE_FIXED);
    f.op_fsync = io_uring_opcode_supported(probe, IORING_OP_FSYNC);
    f.op_async_cancel = io_uring_opcode_supported(probe, IORING_OP_ASYNC_CANCEL);
    f.op_link_timeout = io_uring_opcode_supported(probe, IORING_OP_LINK_TIMEOUT);
    f.op_uring_cmd = io_uring_opcode_supported(probe, IORING_OP_URING_CMD);
    f.op_openat = io_uring_opcode_supported(probe, IORING_OP_OPENAT);
    f.op_openat2 = io_uring_opcode_supported(probe, IORING_OP_OPENAT2);
    f.op_close = io_uring_opcode_supported(probe, IORING_OP_CLOSE);
    f.op_statx = io_uring_opcode_supported(probe, IORING_OP_STATX);
    f.op_fallocate = io_uring_opcode_supported(probe, IORING_OP_FALLOCATE);
    // IORING_OP_FTRUNCATE (55) is newer than liburing 2.3's headers.
    f.op_ftruncate = io_uring_opcode_supported(probe, 55);
    f.op_renameat = io_uring_opcode_supported(probe, IORING_OP_RENAMEAT);
    f.op_unlinkat = io_uring_opcode_supported(probe, IORING_OP_UNLINKAT);
    f.op_mkdirat = io_uring_opcode_supported(probe, IORING_OP_MKDIRAT);
    f.op_symlinkat = io_uring_opcode_supported(probe, IORING_OP_SYMLINKAT);
    f.op_linkat = io_uring_opcode_supported(probe, IORING_OP_LINKAT);
    f.op_sync_file_range = io_uring_opcode_supported(probe, IORING_OP_SYNC_FILE_RANGE);
    f.op_fadvise = io_uring_opcode_supported(probe, IORING_OP_FADVISE);
    f.op_getxattr = io_uring_opcode_supported(probe, IORING_OP_GETXATTR);
    f.op_setxattr = io_uring_opcode_supported(probe, IORING_OP_SETXATTR);
    f.op_fgetxattr = io_uring_opcode_supported(probe, IORING_OP_FGETXATTR);
    f.op_fsetxattr = io_uring_opcode_supported(probe, IORING_OP_FSETXATTR);
    io_uring_free_probe(probe);
  }
  return f;
}

}  // namespace

bool io_uring_disabled_by_environment() noexcept {
  const char* v = std::getenv("FSYS_DISABLE_IO_URING");
  return v && *v && std::strcmp(v, "0") != 0;
}

const ring_features& probe_features() noexcept {
  // A function-local static is initialised once, thread-safely.
  static const ring_features features = do_probe();
  return features;
}

std::string ring_features::summary() const {
  if (!available) {
    return "io_uring unavailable (" + setup_error.message() + ")";
  }
  std::string s = "io_uring available; setup flags:";
  auto add = [&s](bool on, const char* name) {
    if (on) {
      s += ' ';
      s += name;
    }
  };
  add(coop_taskrun, "COOP_TASKRUN");
  add(taskrun_flag, "TASKRUN_FLAG");
  add(single_issuer, "SINGLE_ISSUER");
  add(defer_taskrun, "DEFER_TASKRUN");
  add(submit_all, "SUBMIT_ALL");
  add(sqpoll, "SQPOLL");
  s += "; opcodes:";
  add(op_read, "READ");
  add(op_write, "WRITE");
  add(op_readv, "READV");
  add(op_writev, "WRITEV");
  add(op_read_fixed, "READ_FIXED");
  add(op_write_fixed, "WRITE_FIXED");
  add(op_fsync, "FSYNC");
  add(op_async_cancel, "ASYNC_CANCEL");
  add(op_link_timeout, "LINK_TIMEOUT");
  add(op_uring_cmd, "URING_CMD");
  add(op_openat, "OPENAT");
  add(op_openat2, "OPENAT2");
  add(op_close, "CLOSE");
  add(op_statx, "STATX");
  add(op_fallocate, "FALLOCATE");
  add(op_ftruncate, "FTRUNCATE");
  add(op_renameat, "RENAMEAT");
  add(op_unlinkat, "UNLINKAT");
  add(op_mkdirat, "MKDIRAT");
  add(op_symlinkat, "SYMLINKAT");
  add(op_linkat, "LINKAT");
  add(op_sync_file_range, "SYNC_FILE_RANGE");
  add(op_fadvise, "FADVISE");
  add(op_getxattr, "GETXATTR");
  add(op_setxattr, "SETXATTR");
  add(op_fgetxattr, "FGETXATTR");
  add(op_fsetxattr, "FSETXATTR");
  s += "; file-system operations through the ring: " + fs_ops_through_ring();
  return s;
}

std::string ring_features::fs_ops_through_ring() const {
  std::string s;
  if (!available) return s;
  auto add = [&s](bool on, const char* name) {
    if (!on) return;
    if (!s.empty()) s += ' ';
    s += name;
  };
  add(op_openat && op_openat2, "open");
  add(op_close, "close");
  add(op_statx, "stat");
  add(op_fallocate, "allocate");
  add(op_ftruncate, "resize");
  add(op_renameat, "rename");
  add(op_unlinkat, "remove");
  add(op_mkdirat, "create_directory");
  add(op_symlinkat, "create_symlink");
  add(op_linkat, "create_hard_link");
  add(op_sync_file_range, "sync_range");
  add(op_fadvise, "advise");
  add(op_fsync, "sync_directory");
  add(op_getxattr && op_fgetxattr, "get_xattr");
  add(op_setxattr && op_fsetxattr, "set_xattr");
  return s;
}

}  // namespace fsys
