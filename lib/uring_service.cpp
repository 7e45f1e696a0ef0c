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
    : asio::execution_context::service(ctx), life_(&ctx), options_(options) {
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
  s.batched_reads = t.read_batched;
  s.batched_writes = t.write_batched;
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

void uring_service::shutdown() {
  // Files first: from here on a file uses nothing of the service (its calls
  // fail with errc::service_shut_down, closing and destroying it only close
  // its descriptor), so the engine and the service may go while files live.
  // Handlers the engine destroys below may own files; their destructors then
  // take the same path.
  life_.shut_down();
  // Every operation, queued or in the kernel, is finished here, and only
  // then are handlers (which may own the buffers: a read in flight into a
  // coroutine frame) destroyed. Why that is sound: the io_uring engine sends
  // IORING_ASYNC_CANCEL_ANY and reaps until every request it submitted has
  // posted its CQE (a posted CQE means the kernel is done with the request's
  // buffers and descriptor; it does not rely on io_uring_queue_exit, which
  // would cancel too but without telling it when each buffer is free); the
  // psync engine waits until every worker's system call has returned. Each
  // op is unlinked from its file and drops its reference to the file's
  // handle, so a file's handle is left with the file's own reference: the
  // file's close() or destructor closes the descriptor, once. (A ring that
  // cannot be drained, a single-issuer ring shut down from another thread,
  // keeps its ops and their handle references on purpose: their descriptors
  // stay open rather than be reused while the kernel may use them.)
  engine_->shutdown();
}

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
