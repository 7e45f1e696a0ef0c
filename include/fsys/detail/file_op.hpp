// The handler-carrying part of an operation: one small template per handler.
#pragma once

#include <fsys/detail/asio.hpp>
#include <fsys/detail/engine.hpp>
#include <fsys/detail/op.hpp>

#include <boost/asio/associated_allocator.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/cancellation_type.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/execution/outstanding_work.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/asio/recycling_allocator.hpp>

#include <memory>
#include <type_traits>
#include <utility>

namespace fsys::detail {

/// Cancellation slot handler: forwards a cancellation request to the engine.
struct cancel_request {
  engine* engine_;
  op_base* op_;
  void operator()(asio::cancellation_type_t type) const {
    using ct = asio::cancellation_type;
    if ((type & (ct::terminal | ct::partial | ct::total)) != ct::none) engine_->cancel(op_);
  }
};

/// The value a `file_op<..., Value>` completes with, read from the op before
/// it is freed: `op_result<Value>::get(op)`. Specialised per value type
/// (detail/fs_args.hpp: file_status).
template <class Value>
struct op_result;

/// An operation carrying `Handler`. `WithSize` selects the completion
/// signature: `void(error_code, std::size_t)` or `void(error_code)`; a
/// non-void `Value` makes it `void(error_code, Value)`.
template <class Handler, class IoExecutor, bool WithSize, class Value = void>
class file_op final : public op_base {
 public:
  /// Operation memory comes from the handler's associated allocator, or from
  /// Asio's thread-local recycling allocator when it has none, so a steady
  /// stream of operations allocates nothing.
  using allocator_type = asio::associated_allocator_t<Handler, asio::recycling_allocator<void>>;
  using handler_executor = asio::associated_executor_t<Handler, IoExecutor>;
  using work_executor = std::decay_t<decltype(asio::prefer(
      std::declval<handler_executor>(), asio::execution::outstanding_work.tracked))>;

  template <class H>
  static file_op* create(H&& handler, const IoExecutor& io_ex, op_kind kind) {
    using op_alloc = typename std::allocator_traits<allocator_type>::template rebind_alloc<file_op>;
    op_alloc alloc(asio::get_associated_allocator(handler, asio::recycling_allocator<void>()));
    file_op* p = std::allocator_traits<op_alloc>::allocate(alloc, 1);
    try {
      return ::new (static_cast<void*>(p)) file_op(std::forward<H>(handler), io_ex, kind);
    } catch (...) {
      std::allocator_traits<op_alloc>::deallocate(alloc, p, 1);
      throw;
    }
  }

  /// Frees the operation without invoking the handler (initiation failed).
  void destroy() { do_complete(this, false); }

  /// Hooks the handler's cancellation slot, if it has one, to the engine.
  void connect_cancellation(engine& e) {
    auto slot = asio::get_associated_cancellation_slot(handler_);
    if (slot.is_connected()) slot.template emplace<cancel_request>(cancel_request{&e, this});
  }

 private:
  template <class H>
  file_op(H&& handler, const IoExecutor& io_ex, op_kind kind)
      : op_base(&file_op::do_complete, kind),
        handler_(std::forward<H>(handler)),
        // Tracked work keeps the handler's executor (and so `run()`) busy
        // until the handler has been invoked.
        work_(asio::prefer(asio::get_associated_executor(handler_, io_ex),
                           asio::execution::outstanding_work.tracked)) {}

  static void do_complete(op_base* base, bool invoke) {
    auto* self = static_cast<file_op*>(base);
    // Move everything out, then free the operation before the upcall, so the
    // handler may start a new operation that reuses the memory.
    Handler handler(std::move(self->handler_));
    work_executor work(std::move(self->work_));
    const boost::system::error_code ec = self->ec_;
    const std::size_t n = self->transferred_;
    [[maybe_unused]] auto value = [self] {
      if constexpr (std::is_void_v<Value>) return 0;
      else return op_result<Value>::get(*self);
    }();
    auto slot = asio::get_associated_cancellation_slot(handler);
    if (slot.is_connected()) slot.clear();

    using op_alloc = typename std::allocator_traits<allocator_type>::template rebind_alloc<file_op>;
    op_alloc alloc(asio::get_associated_allocator(handler, asio::recycling_allocator<void>()));
    self->~file_op();
    std::allocator_traits<op_alloc>::deallocate(alloc, self, 1);

    if (!invoke) return;
    // dispatch: runs inline when this thread already runs the handler's
    // executor (the common case: the reaping thread runs the io_context), and
    // is posted there otherwise. Never reached from an initiating function.
    if constexpr (!std::is_void_v<Value>) {
      asio::dispatch(work, [h = std::move(handler), ec, v = std::move(value)]() mutable { std::move(h)(ec, std::move(v)); });
    } else if constexpr (WithSize) {
      asio::dispatch(work, [h = std::move(handler), ec, n]() mutable { std::move(h)(ec, n); });
    } else {
      asio::dispatch(work, [h = std::move(handler), ec]() mutable { std::move(h)(ec); });
    }
  }

  Handler handler_;
  work_executor work_;
};

}  // namespace fsys::detail
