#include <fsys/error.hpp>

#include <boost/system/error_code.hpp>
#include <boost/system/errc.hpp>

namespace fsys {
namespace {

// One category, defined for Boost.System. Its `<system_error>` view is the
// `std::error_category` Boost.System derives from it (a wrapper that forwards
// name, message and conditions), so both libraries see the same category:
// converting a code between them keeps category and value, and
// `boost::system::error_code(std::error_code)` recognises the wrapper and
// unwraps it back to this category.
class category final : public boost::system::error_category {
 public:
  // A fixed identity, so that categories compare equal even if this object
  // ever exists twice in a process (a static library linked into two shared
  // objects), as Boost.System recommends for user categories.
  constexpr category() noexcept : boost::system::error_category(0x8c5d3e1f0a6b4729ULL) {}

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
      case errc::service_shut_down:
        return "the file's io_context was destroyed (only close, release and the destructor work)";
      case errc::file_truncated:
        return "file was truncated during the send";
      case errc::invalid_open_flags:
        return "invalid argument: the open flags have unknown bits";
      case errc::invalid_resolve_flags:
        return "invalid argument: open_how::resolve has bits that are not RESOLVE_* flags";
      case errc::invalid_rename_flags:
        return "invalid argument: the rename_flags value is not none, no_replace or exchange";
      case errc::invalid_mode:
        return "invalid argument: the mode has bits outside 07777";
      case errc::read_limit_exceeded:
        return "the file is larger than the read limit";
      case errc::copy_onto_itself:
        return "the source and the target of the copy are the same file";
      case errc::forked_process:
        return "the ring belongs to the parent process (call notify_fork(fork_child) in the child)";
      case errc::atomic_write_unsupported:
        return "untorn (RWF_ATOMIC) writes are not supported by this file or kernel";
      case errc::atomic_write_needs_direct_io:
        return "untorn (RWF_ATOMIC) writes need a file opened with O_DIRECT";
      case errc::atomic_write_length_not_power_of_two:
        return "invalid argument: an untorn write's length must be a power of two";
      case errc::atomic_write_length_out_of_range:
        return "invalid argument: an untorn write's length is outside the file's atomic write unit limits";
      case errc::atomic_write_misaligned_offset:
        return "invalid argument: an untorn write's offset must be a multiple of its length";
      case errc::atomic_write_too_many_segments:
        return "invalid argument: an untorn write has more buffers than the file allows";
      case errc::atomic_write_short:
        return "the kernel wrote part of an untorn write (not retried; the range may be torn)";
      case errc::log_failed:
        return "the durable log failed earlier (a write or sync error); reopen it";
      case errc::log_corrupt:
        return "the durable log is damaged before its last segment's tail";
      case errc::log_bad_position:
        return "no durable log record starts at this position";
    }
    return "unknown fsys error";
  }

  // Generic (errno) conditions; Boost.System maps its generic category to
  // std::generic_category(), so these compare equal with `std::errc` values
  // from either library's error codes.
  boost::system::error_condition default_error_condition(int value) const noexcept override {
    namespace berrc = boost::system::errc;
    switch (static_cast<errc>(value)) {
      case errc::misaligned_direct_io:
      case errc::invalid_open_flags:
      case errc::invalid_resolve_flags:
      case errc::invalid_rename_flags:
      case errc::invalid_mode:
      case errc::atomic_write_length_not_power_of_two:
      case errc::atomic_write_length_out_of_range:
      case errc::atomic_write_misaligned_offset:
      case errc::atomic_write_too_many_segments:
      case errc::log_bad_position:
        return berrc::make_error_condition(berrc::invalid_argument);
      case errc::atomic_write_unsupported:
      case errc::atomic_write_needs_direct_io:
        return berrc::make_error_condition(berrc::operation_not_supported);
      case errc::atomic_write_short:
      case errc::log_failed:
        return berrc::make_error_condition(berrc::io_error);
      case errc::offset_overflow:
        return berrc::make_error_condition(berrc::value_too_large);
      case errc::would_deadlock:
        return berrc::make_error_condition(berrc::resource_deadlock_would_occur);
      case errc::not_open:
        return berrc::make_error_condition(berrc::bad_file_descriptor);
      case errc::unsupported_by_backend:
        return berrc::make_error_condition(berrc::operation_not_supported);
      case errc::already_open:
        return berrc::make_error_condition(berrc::device_or_resource_busy);
      case errc::kernel_worker_unavailable:
        return berrc::make_error_condition(berrc::resource_unavailable_try_again);
      case errc::wrong_issuer_thread:
        return berrc::make_error_condition(berrc::operation_not_permitted);
      case errc::read_limit_exceeded:
        return berrc::make_error_condition(berrc::file_too_large);
      case errc::copy_onto_itself:
        return berrc::make_error_condition(berrc::file_exists);
      default:
        return {value, *this};
    }
  }
};

// Constant-initialised and trivially destructible: usable before and after main.
constinit const category instance;

}  // namespace

const boost::system::error_category& boost_error_category() noexcept { return instance; }

const std::error_category& error_category() noexcept {
  // Boost.System's standard view of `instance`, built once (thread-safely)
  // inside it.
  return instance;
}

}  // namespace fsys
