// The handler-carrying part of an operation: one small template per handler.
#pragma once

#include <fsys/detail/asio.hpp>
#include <fsys/detail/engine.hpp>
#include <fsys/detail/op.hpp>

#include <boost/asio/associated_allocator.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/associator.hpp>
#include <boost/asio/detail/handler_cont_helpers.hpp>
#include <boost/asio/cancellation_type.hpp>
#include <boost/asio/defer.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/execution/allocator.hpp>
#include <boost/asio/execution/blocking.hpp>
#include <boost/asio/execution/context.hpp>
#include <boost/asio/execution/execute.hpp>
#include <boost/asio/execution/executor.hpp>
#include <boost/asio/execution/outstanding_work.hpp>
#include <boost/asio/execution/relationship.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/asio/query.hpp>
#include <boost/asio/recycling_allocator.hpp>
#include <boost/asio/system_executor.hpp>

#include <cstdint>
#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>

namespace boost::asio::detail {
template <typename T, typename Blocking>
class promise_executor;  // use_future's (boost/asio/impl/use_future.hpp)
}  // namespace boost::asio::detail

namespace fsys::detail {

/// Cancellation slot handler: forwards a cancellation request to the engine.
/// It owns the `cancel_link` (see op.hpp): the engine reads the link under
/// its lock, so an emit after the operation finished is harmless.
struct cancel_request {
  cancel_link link_;
  explicit cancel_request(engine* e, op_base* op) noexcept {
    link_.op_.store(op, std::memory_order_relaxed);
    link_.owner_.store(e, std::memory_order_relaxed);
  }
  void operator()(asio::cancellation_type_t type) {
    // The owner may change while this runs (a hand-over between engines):
    // an engine that is no longer the owner declines, and the new one is asked.
    while (!link_.owner_.load(std::memory_order_acquire)->cancel(link_, static_cast<unsigned>(type))) {
    }
  }
};

/// A handler bound to its completion arguments, dispatched to the handler's
/// executor. Invoking it first disconnects the handler's cancellation slot:
/// the slot belongs to the handler's side (a strand, a coroutine), so it is
/// cleared there and never from the reaping thread while that side may be
/// emitting. Its associated allocator, executor and the rest are the
/// handler's (see the `associator` specialisation below).
template <class Handler, class... Args>
struct bound_completion {
  Handler handler_;
  std::tuple<Args...> args_;

  void operator()() {
    auto slot = asio::get_associated_cancellation_slot(handler_);
    if (slot.is_connected()) slot.clear();
    std::apply([this](Args&... a) { std::move(handler_)(std::move(a)...); }, args_);
  }
};

/// A completion queued by the inline fast path, holding its place in the
/// engine's count of outstanding operations (`op_base::inline_pending_`)
/// until it runs or is destroyed unrun (the io_context shuts down; the count
/// outlives it, see `basic_file::launch`).
template <class Completion>
struct pending_completion {
  Completion inner_;
  std::atomic<int>* pending_;

  pending_completion(Completion&& c, std::atomic<int>* p) noexcept(std::is_nothrow_move_constructible_v<Completion>)
      : inner_(std::move(c)), pending_(p) {}
  pending_completion(pending_completion&& o) noexcept(std::is_nothrow_move_constructible_v<Completion>)
      : inner_(std::move(o.inner_)), pending_(std::exchange(o.pending_, nullptr)) {}
  pending_completion& operator=(pending_completion&&) = delete;
  ~pending_completion() { release(); }

  void release() noexcept {
    if (pending_) std::exchange(pending_, nullptr)->fetch_sub(1, std::memory_order_relaxed);
  }
  void operator()() {
    release();
    inner_();
  }
};

/// The handler a completion carries (for `is_continuation`).
template <class Handler, class... Args>
Handler& handler_of(bound_completion<Handler, Args...>& c) noexcept {
  return c.handler_;
}
template <class Completion>
auto& handler_of(pending_completion<Completion>& c) noexcept {
  return handler_of(c.inner_);
}

/// Executors that run work on Asio's system_context: the system executor and
/// use_future's promise executor.
template <class E>
struct runs_on_system_context : std::false_type {};
template <class B, class R, class A>
struct runs_on_system_context<asio::basic_system_executor<B, R, A>> : std::true_type {};
template <class T, class B>
struct runs_on_system_context<asio::detail::promise_executor<T, B>> : std::true_type {};

/// Whether an operation for a `Handler` may be completed by the inline fast
/// path. Not when the handler's executor runs on the system context
/// (use_future's): such a handler gets its result through the engine, as
/// from Asio's own operations (completed on the I/O context, then
/// dispatched to its executor, which runs it at once); deferring it to its
/// executor instead would start a system_context thread pool just to run
/// it. Decided from the type alone (asking such an executor for its context
/// creates the system context).
template <class Handler, class IoExecutor>
constexpr bool inline_completion_allowed() noexcept {
  return !runs_on_system_context<asio::associated_executor_t<Handler, IoExecutor>>::value;
}

/// Whether Asio treats the completion of `h` as a continuation of the
/// handler that is running (`asio_handler_is_continuation`: Asio's composed
/// operations mark their intermediate steps so; a plain callback, a
/// coroutine's or use_future's handler is not one).
template <class Handler>
bool is_continuation(Handler& h) {
  return boost_asio_handler_cont_helpers::is_continuation(h);
}

/// Hands a `bound_completion` to `ex`, which must be its handler's own
/// associated executor (possibly with tracked work): posted (never run here)
/// or dispatched (run at once when this thread runs `ex`). A posted
/// completion is queued as Asio queues one of its own operations that is
/// done at initiation (a speculative socket read, say): as a continuation
/// only when the handler is one (`is_continuation`), which an io_context
/// queues on the running thread's private queue without its lock; otherwise
/// on the shared queue, where any thread running the context takes it. The
/// private queue is run only when the current handler returns, so a handler
/// that starts an operation and then blocks until it is done (a legacy API
/// waiting on a promise its callback sets) would wait forever for a
/// completion queued there; on the shared queue another thread runs it. An
/// io_context made for one thread (concurrency hint 1) queues every post from
/// its thread privately, so that case keeps the lock-free queue.
///
/// This is what `asio::post` / `asio::defer` / `asio::dispatch` do for a
/// handler without an associated executor of its own; for one with its own
/// (a coroutine's, a strand-bound handler's) they wrap the function in a
/// `work_dispatcher` that tracks work on that executor and executes through
/// it a second time, which buys nothing when both executors are the same and
/// costs two type-erased executions per completion through an
/// `any_io_executor`. Executors of the older Networking TS model (no
/// `execute`) go through Asio's functions.
/// Whether `ex`, a type-erased executor, is an io_context's executor (with or
/// without tracked work) and the calling thread runs that io_context.
template <class Executor>
bool io_context_runs_here(const Executor& ex) noexcept {
  if constexpr (std::is_same_v<Executor, asio::any_io_executor>) {
    using plain = asio::io_context::executor_type;
    using tracked = std::decay_t<decltype(asio::prefer(std::declval<plain>(), asio::execution::outstanding_work.tracked))>;
    if (const tracked* t = ex.template target<tracked>()) return t->running_in_this_thread();
    if (const plain* p = ex.template target<plain>()) return p->running_in_this_thread();
  }
  return false;
}

template <bool Post, class Executor, class Completion>
void deliver_on_own_executor(const Executor& ex, Completion&& completion) {
  if constexpr (!Post) {
    // What the io_context's own executor does for a dispatch from a thread
    // that runs it (invoke at once), without first wrapping the completion
    // in a type-erased function object for `any_io_executor::execute`: the
    // handler of a coroutine or callback on the default executor, completed
    // by the thread reaping the ring, costs no allocation and no indirection.
    if (io_context_runs_here(ex)) {
      completion();
      return;
    }
  }
  if constexpr (asio::execution::is_executor<Executor>::value) {
    const auto alloc = asio::get_associated_allocator(completion);
    if constexpr (Post) {
      if (is_continuation(handler_of(completion)))
        asio::execution::execute(asio::prefer(ex, asio::execution::blocking.never,
                                              asio::execution::relationship.continuation,
                                              asio::execution::allocator(alloc)),
                                 std::forward<Completion>(completion));
      else
        asio::execution::execute(asio::prefer(ex, asio::execution::blocking.never,
                                              asio::execution::relationship.fork,
                                              asio::execution::allocator(alloc)),
                                 std::forward<Completion>(completion));
    } else {
      asio::execution::execute(
          asio::prefer(ex, asio::execution::blocking.possibly, asio::execution::allocator(alloc)),
          std::forward<Completion>(completion));
    }
  } else if constexpr (Post) {
    if (is_continuation(handler_of(completion)))
      asio::defer(ex, std::forward<Completion>(completion));
    else
      asio::post(ex, std::forward<Completion>(completion));
  } else {
    asio::dispatch(ex, std::forward<Completion>(completion));
  }
}

/// Delivers the result of a transfer the inline fast path finished before
/// any operation was made: posted to the handler's associated executor
/// (`io_ex` by default; see `deliver_on_own_executor`), never invoked here. The queued function keeps that
/// executor's work (a function queued on an executor counts as its work);
/// its memory comes from the handler's associated allocator (Asio's
/// recycling one by default: no allocation in a steady stream).
template <class Handler, class IoExecutor, class... Args>
void defer_inline_completion(Handler&& handler, const IoExecutor& io_ex, Args... args) {
  const auto ex = asio::get_associated_executor(handler, io_ex);
  deliver_on_own_executor<true>(
      ex, bound_completion<std::decay_t<Handler>, Args...>{std::forward<Handler>(handler), {args...}});
}

/// `defer_inline_completion` for a read or write the inline fast path
/// finished, holding its place in `pending` (an engine's count of
/// outstanding operations, already incremented; or null) until the handler
/// runs (see `pending_completion`).
template <class Handler, class IoExecutor, class... Args>
void defer_counted_completion(Handler&& handler, const IoExecutor& io_ex, std::atomic<int>* pending, Args... args) {
  if (!pending) return defer_inline_completion(std::forward<Handler>(handler), io_ex, args...);
  const auto ex = asio::get_associated_executor(handler, io_ex);
  using completion = bound_completion<std::decay_t<Handler>, Args...>;
  deliver_on_own_executor<true>(
      ex, pending_completion<completion>(completion{std::forward<Handler>(handler), {args...}}, pending));
}

/// Whether `handler` runs on an execution context other than the one at
/// `context` (an address, as a number): its associated executor (`io_ex` by
/// default) belongs to another context. Only addresses are compared, and
/// nothing is asked of the context at `context`, which may be destroyed (a
/// file's context, see `basic_file`'s "A file that outlives its io_context").
/// An executor that cannot tell its context counts as running there.
template <class Handler, class IoExecutor>
bool runs_on_other_context(const Handler& handler, const IoExecutor& io_ex, std::uintptr_t context) noexcept {
  const auto ex = asio::get_associated_executor(handler, io_ex);
  if constexpr (asio::can_query<const decltype(ex)&, asio::execution::context_t>::value)
    return reinterpret_cast<std::uintptr_t>(&asio::query(ex, asio::execution::context)) != context;
  else
    return false;
}

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

  /// See `inline_completion_allowed`.
  static constexpr bool may_complete_inline = inline_completion_allowed<Handler, IoExecutor>();

  /// Frees the operation without invoking the handler (initiation failed).
  void destroy() { do_complete(this, false); }

  /// Whether the handler runs on the execution context at `context` (an
  /// address, as a number; see `runs_on_other_context`).
  bool handler_runs_on(std::uintptr_t context) const noexcept {
    if constexpr (asio::can_query<const work_executor&, asio::execution::context_t>::value)
      return reinterpret_cast<std::uintptr_t>(&asio::query(work_, asio::execution::context)) == context;
    else
      return false;
  }

  /// Hooks the handler's cancellation slot, if it has one, to the engine.
  void connect_cancellation(engine& e) {
    auto slot = asio::get_associated_cancellation_slot(handler_);
    if (slot.is_connected()) cancel_link_ = &slot.template emplace<cancel_request>(&e, this).link_;
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
    const bool completed_inline = self->completed_inline_;
    std::atomic<int>* const pending = self->inline_pending_;
    [[maybe_unused]] auto value = [&] {
      if constexpr (std::is_void_v<Value>) return 0;
      else return op_result<Value>::get(*self);
    }();

    using op_alloc = typename std::allocator_traits<allocator_type>::template rebind_alloc<file_op>;
    op_alloc alloc(asio::get_associated_allocator(handler, asio::recycling_allocator<void>()));
    self->~file_op();
    std::allocator_traits<op_alloc>::deallocate(alloc, self, 1);

    if (!invoke) {
      if (pending) pending->fetch_sub(1, std::memory_order_relaxed);
      // Destroyed without an upcall (the io_context shuts down): nothing
      // emits any more, so the slot is cleared here.
      auto slot = asio::get_associated_cancellation_slot(handler);
      if (slot.is_connected()) slot.clear();
      return;
    }
    // dispatch: runs inline when this thread already runs the handler's
    // executor (the common case: the reaping thread runs the io_context), and
    // is posted there otherwise. An op completed by its initiating function
    // (the inline fast path) is always posted: a handler never runs inside
    // the initiating function (see deliver_on_own_executor).
    auto deliver = [&](auto&& completion) {
      if (completed_inline && pending)
        deliver_on_own_executor<true>(work, pending_completion<std::decay_t<decltype(completion)>>(
                                                std::move(completion), pending));
      else if (completed_inline)
        deliver_on_own_executor<true>(work, std::move(completion));
      else
        deliver_on_own_executor<false>(work, std::move(completion));
    };
    if constexpr (!std::is_void_v<Value>) {
      deliver(bound_completion<Handler, boost::system::error_code, Value>{std::move(handler),
                                                                          {ec, std::move(value)}});
    } else if constexpr (WithSize) {
      deliver(bound_completion<Handler, boost::system::error_code, std::size_t>{std::move(handler), {ec, n}});
    } else {
      deliver(bound_completion<Handler, boost::system::error_code>{std::move(handler), {ec}});
    }
  }

  Handler handler_;
  work_executor work_;
};

}  // namespace fsys::detail

namespace boost::asio {

/// `bound_completion` has its handler's associated characteristics
/// (allocator, executor, cancellation slot, immediate executor...).
template <template <class, class> class Associator, class Handler, class... Args, class DefaultCandidate>
struct associator<Associator, fsys::detail::bound_completion<Handler, Args...>, DefaultCandidate>
    : Associator<Handler, DefaultCandidate> {
  static typename Associator<Handler, DefaultCandidate>::type get(
      const fsys::detail::bound_completion<Handler, Args...>& b) noexcept {
    return Associator<Handler, DefaultCandidate>::get(b.handler_);
  }
  static auto get(const fsys::detail::bound_completion<Handler, Args...>& b, const DefaultCandidate& c) noexcept
      -> decltype(Associator<Handler, DefaultCandidate>::get(b.handler_, c)) {
    return Associator<Handler, DefaultCandidate>::get(b.handler_, c);
  }
};

/// `pending_completion` has its completion's associated characteristics.
template <template <class, class> class Associator, class Completion, class DefaultCandidate>
struct associator<Associator, fsys::detail::pending_completion<Completion>, DefaultCandidate>
    : Associator<Completion, DefaultCandidate> {
  static typename Associator<Completion, DefaultCandidate>::type get(
      const fsys::detail::pending_completion<Completion>& p) noexcept {
    return Associator<Completion, DefaultCandidate>::get(p.inner_);
  }
  static auto get(const fsys::detail::pending_completion<Completion>& p, const DefaultCandidate& c) noexcept
      -> decltype(Associator<Completion, DefaultCandidate>::get(p.inner_, c)) {
    return Associator<Completion, DefaultCandidate>::get(p.inner_, c);
  }
};

}  // namespace boost::asio
