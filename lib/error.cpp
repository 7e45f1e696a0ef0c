#include <fsys/error.hpp>

namespace fsys {
namespace {

class category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "fsys"; }

  std::string message(int value) const override {
    switch (static_cast<errc>(value)) {
      case errc::io_uring_setup_failed:
        return "io_uring setup failed";
      case errc::owner_thread_terminated:
        return "the ring's owner thread has terminated";
      case errc::misaligned_direct_io:
        return "O_DIRECT buffer, offset or length is not aligned as the file requires";
      case errc::offset_overflow:
        return "offset plus length does not fit in off_t";
      case errc::would_deadlock:
        return "blocking call from the thread that must complete it";
      case errc::not_open:
        return "file is not open";
      case errc::unsupported_by_backend:
        return "operation not supported by the active backend";
      case errc::already_open:
        return "file is already open";
      case errc::kernel_worker_unavailable:
        return "the kernel could not start a worker for the request (process or thread limit); nothing was done";
      case errc::wrong_issuer_thread:
        return "a single_thread ring was used from a thread other than its issuer thread";
      case errc::forked_process:
        return "the ring belongs to the parent process (call notify_fork(fork_child) in the child)";
    }
    return "unknown fsys error";
  }

  std::error_condition default_error_condition(int value) const noexcept override {
    switch (static_cast<errc>(value)) {
      case errc::misaligned_direct_io:
        return std::errc::invalid_argument;
      case errc::offset_overflow:
        return std::errc::value_too_large;
      case errc::would_deadlock:
        return std::errc::resource_deadlock_would_occur;
      case errc::not_open:
        return std::errc::bad_file_descriptor;
      case errc::unsupported_by_backend:
        return std::errc::operation_not_supported;
      case errc::already_open:
        return std::errc::device_or_resource_busy;
      case errc::kernel_worker_unavailable:
        return std::errc::resource_unavailable_try_again;
      case errc::wrong_issuer_thread:
        return std::errc::operation_not_permitted;
      default:
        return {value, *this};
    }
  }
};

}  // namespace

const std::error_category& error_category() noexcept {
  static const category instance;
  return instance;
}

}  // namespace fsys
