#include <fsys/error.hpp>
#include <fsys/features.hpp>
#include <fsys/uring_service.hpp>

#include <boost/asio/detail/scheduler.hpp>

#include <stdexcept>
#include <vector>

namespace fsys {
namespace {

asio::io_context& require_io_context(asio::execution_context& ctx) {
  // execution_context is not polymorphic, so the type cannot be checked with
  // dynamic_cast. Every io_context registers its scheduler as a service; a
  // context without one cannot run our completions at all.
  if (!asio::has_service<asio::detail::scheduler>(ctx))
    throw std::invalid_argument("fsys::uring_service needs an asio::io_context");
  return static_cast<asio::io_context&>(ctx);
}

}  // namespace

uring_service::uring_service(asio::execution_context& ctx) : uring_service(ctx, ring_options{}) {}

uring_service::uring_service(asio::execution_context& ctx, ring_options options)
    : asio::execution_context::service(ctx), options_(options) {
  asio::io_context& io = require_io_context(ctx);
  if (options_.queue_depth == 0) options_.queue_depth = 1;
  fallback_policy policy = options_.fallback;
  if (io_uring_disabled_by_environment() && policy == fallback_policy::automatic)
    policy = fallback_policy::force_psync;

  if (policy != fallback_policy::force_psync) {
    std::error_code ec;
    engine_ = detail::make_uring_engine(io, options_, ec);
    if (!engine_) {
      if (policy == fallback_policy::require_io_uring)
        throw std::system_error(make_error_code(errc::io_uring_setup_failed),
                                "io_uring setup failed: " + ec.message() + " (errno " +
                                    std::to_string(ec.value()) + ")");
      fallback_reason_ = ec;
    }
  } else {
    fallback_reason_ = make_error_code(errc::io_uring_setup_failed);
  }
  if (!engine_) engine_ = detail::make_psync_engine(io, options_);
}

uring_service::~uring_service() = default;

void uring_service::shutdown() { engine_->shutdown(); }

void uring_service::register_buffers(std::span<const asio::mutable_buffer> buffers, std::error_code& ec) {
  std::vector<iovec> iov;
  iov.reserve(buffers.size());
  for (const auto& b : buffers) iov.push_back(iovec{b.data(), b.size()});
  ec = engine_->register_buffers(iov.data(), static_cast<unsigned>(iov.size()));
}

void uring_service::register_buffers(std::span<const asio::mutable_buffer> buffers) {
  std::error_code ec;
  register_buffers(buffers, ec);
  if (ec) throw std::system_error(ec, "fsys::uring_service::register_buffers");
}

void uring_service::unregister_buffers(std::error_code& ec) { ec = engine_->unregister_buffers(); }

void uring_service::unregister_buffers() {
  std::error_code ec;
  unregister_buffers(ec);
  if (ec) throw std::system_error(ec, "fsys::uring_service::unregister_buffers");
}

void uring_service::notify_fork(asio::execution_context::fork_event event) {
  if (event == asio::execution_context::fork_child) engine_->notify_fork_child();
}

}  // namespace fsys
