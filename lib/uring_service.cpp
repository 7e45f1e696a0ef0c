#include <fsys/error.hpp>
#include <fsys/features.hpp>
#include <fsys/uring_service.hpp>

#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <vector>

namespace fsys {

uring_service::uring_service(asio::execution_context& ctx) : uring_service(ctx, ring_options{}) {}

uring_service::uring_service(asio::execution_context& ctx, ring_options options)
    : asio::execution_context::service(ctx), options_(options) {
  if (options_.queue_depth == 0) options_.queue_depth = 1;
  fallback_policy policy = options_.fallback;
  if (io_uring_disabled_by_environment() && policy == fallback_policy::automatic)
    policy = fallback_policy::force_psync;

  if (policy != fallback_policy::force_psync) {
    std::error_code ec;
    engine_ = detail::make_uring_engine(ctx, options_, ec);
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
  if (!engine_) engine_ = detail::make_psync_engine(ctx, options_);
  const char* v = std::getenv("FSYS_INLINE_FAST_PATH");
  inline_fast_path_ = options_.inline_fast_path;
  if (v && std::strcmp(v, "0") == 0) inline_fast_path_ = false;
  if (v && std::strcmp(v, "1") == 0) inline_fast_path_ = true;
}

engine_stats uring_service::stats() const noexcept {
  engine_stats s = engine_->stats();
  const detail::inline_counters::totals t = inline_counters_.sum();
  s.inline_reads = t.reads;
  s.inline_read_fallthroughs = t.read_fallthroughs;
  s.inline_writes = t.writes;
  s.inline_write_fallthroughs = t.write_fallthroughs;
  s.inline_opens = t.opens;
  s.inline_open_fallthroughs = t.open_fallthroughs;
  s.inline_stats = t.stats;
  s.inline_closes = t.closes;
  // Operations completed inline never reached the engine: counted here.
  const std::uint64_t inline_ops = t.reads + t.writes + t.opens + t.stats + t.closes;
  s.ops_started += inline_ops;
  s.ops_completed += inline_ops;
  return s;
}

std::error_code uring_service::iowq_max_workers(std::uint32_t (&values)[2]) const {
  return engine_->iowq_max_workers(values);
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
