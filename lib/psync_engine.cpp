// Placeholder until the psync backend lands: no fallback engine yet.
#include <fsys/detail/engine.hpp>
#include <fsys/error.hpp>

#include <system_error>

namespace fsys::detail {

std::unique_ptr<engine> make_psync_engine(asio::io_context&, const ring_options&) {
  throw std::system_error(make_error_code(errc::io_uring_setup_failed),
                          "io_uring unavailable and the psync backend is not built yet");
}

}  // namespace fsys::detail
