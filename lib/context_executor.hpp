// An executor for any execution context whose implementation is Asio's
// scheduler: io_context, thread_pool and system_context all are.
//
// The engines post their own work (a flush, a drain), keep the context busy
// while operations are in flight, and watch an eventfd in the context's
// reactor. None of that needs the concrete context type, only its scheduler,
// which every such context registers as a service. So fsys runs on an
// `asio::thread_pool` exactly as on an `io_context`, without a cast.
#pragma once

#include <fsys/detail/asio.hpp>

#include <boost/asio/detail/executor_op.hpp>
#include <boost/asio/detail/scheduler.hpp>
#include <boost/asio/execution/blocking.hpp>
#include <boost/asio/execution/context.hpp>
#include <boost/asio/execution_context.hpp>

#include <memory>
#include <stdexcept>
#include <utility>

namespace fsys::detail {

class context_executor {
 public:
  /// Throws std::invalid_argument when `ctx` has no Asio scheduler (it could
  /// never run our completions).
  explicit context_executor(asio::execution_context& ctx) : ctx_(&ctx), sched_(find(ctx)) {}

  asio::execution_context& query(asio::execution::context_t) const noexcept { return *ctx_; }
  static constexpr asio::execution::blocking_t query(asio::execution::blocking_t) noexcept {
    return asio::execution::blocking.never;
  }
  context_executor require(asio::execution::blocking_t::never_t) const noexcept { return *this; }

  /// Queues `f` on the scheduler (never runs it inside this call).
  template <class F>
  void execute(F f) const {
    using op = asio::detail::executor_op<F, std::allocator<void>, asio::detail::scheduler_operation>;
    std::allocator<void> alloc;
    typename op::ptr p = {std::addressof(alloc), op::ptr::allocate(alloc), nullptr};
    p.p = new (p.v) op(std::move(f), alloc);
    sched_->post_immediate_completion(p.p, false);
    p.v = p.p = nullptr;
  }

  /// Outstanding work, as a tracked executor or a work guard counts it.
  void work_started() const noexcept { sched_->work_started(); }
  void work_finished() const noexcept { sched_->work_finished(); }

  friend bool operator==(const context_executor& a, const context_executor& b) noexcept {
    return a.sched_ == b.sched_;
  }
  friend bool operator!=(const context_executor& a, const context_executor& b) noexcept {
    return a.sched_ != b.sched_;
  }

 private:
  static asio::detail::scheduler* find(asio::execution_context& ctx) {
    if (!asio::has_service<asio::detail::scheduler>(ctx))
      throw std::invalid_argument("fsys::uring_service needs an Asio io_context, thread_pool or system_context");
    return &asio::use_service<asio::detail::scheduler>(ctx);
  }

  asio::execution_context* ctx_;
  asio::detail::scheduler* sched_;
};

}  // namespace fsys::detail
