// fsys — run an asynchronous operation with a deadline: fsys::with_timeout.
#pragma once

#include <fsys/detail/asio.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/system/error_code.hpp>

#include <chrono>
#include <memory>
#include <type_traits>
#include <utility>

namespace fsys {

namespace detail {

template <class Signature>
struct timeout_initiation;

/// Starts the timer and the operation; whichever finishes first decides
/// nothing by itself: the operation's own completion is always what the
/// caller receives, with `operation_aborted` turned into `timed_out` when the
/// cancellation came from the timer.
template <class... Args>
struct timeout_initiation<void(boost::system::error_code, Args...)> {
  struct state {
    explicit state(const asio::any_io_executor& ex) : timer_(ex) {}
    asio::steady_timer timer_;
    asio::cancellation_signal signal_;
    bool timed_out_ = false;
    bool done_ = false;
  };

  template <class Handler>
  struct completion {
    Handler handler_;
    std::shared_ptr<state> state_;
    void operator()(boost::system::error_code ec, Args... args) {
      state_->done_ = true;
      state_->timer_.cancel();
      auto outer = asio::get_associated_cancellation_slot(handler_);
      if (outer.is_connected()) outer.clear();
      if (ec == asio::error::operation_aborted && state_->timed_out_) ec = asio::error::timed_out;
      std::move(handler_)(ec, std::forward<Args>(args)...);
    }
  };

  template <class Handler, class Op>
  void operator()(Handler&& handler, const asio::any_io_executor& ex, Op&& op,
                  std::chrono::steady_clock::duration timeout) const {
    using handler_t = std::decay_t<Handler>;
    // Timer and completion run on the handler's associated executor, so the
    // cancellation is emitted where the handler's own work is serialised.
    auto hex = asio::get_associated_executor(handler, ex);
    auto st = std::make_shared<state>(ex);

    // Cancellation of the whole with_timeout operation reaches the inner one.
    auto outer = asio::get_associated_cancellation_slot(handler);
    if (outer.is_connected()) {
      outer.assign([weak = std::weak_ptr<state>(st)](asio::cancellation_type_t type) {
        if (auto s = weak.lock(); s && !s->done_) s->signal_.emit(type);
      });
    }

    st->timer_.expires_after(timeout);
    st->timer_.async_wait(asio::bind_executor(hex, [st](const boost::system::error_code& ec) {
      if (ec || st->done_) return;
      st->timed_out_ = true;
      st->signal_.emit(asio::cancellation_type::terminal);
    }));

    auto slot = st->signal_.slot();
    std::forward<Op>(op)(asio::bind_cancellation_slot(
        slot, asio::bind_executor(hex, completion<handler_t>{std::forward<Handler>(handler), std::move(st)})));
  }
};

}  // namespace detail

/// Runs the asynchronous operation `op` and cancels it when it has not
/// completed within `timeout`.
///
/// `op` is an operation that has not started yet and is launched by calling
/// it with a completion handler, such as any fsys or Asio initiating function
/// given the `asio::deferred` token:
/// @code
/// auto [ec, n] = co_await fsys::with_timeout(
///     f.get_executor(), f.async_read_at(0, asio::buffer(buf), asio::deferred),
///     std::chrono::milliseconds(50), asio::as_tuple(asio::use_awaitable));
/// if (ec == asio::error::timed_out) { /* the read did not finish in time */ }
/// @endcode
///
/// The completion signature is the operation's own, whose first argument must
/// be a `boost::system::error_code`. The handler runs exactly once, when the
/// operation itself has completed (never earlier, so the operation's buffers
/// are released by then), with:
/// - the operation's result, when it completed before the deadline, or when
///   the kernel had already done the work when the cancellation arrived (the
///   result is then real: bytes were transferred, or data made durable);
/// - `asio::error::timed_out` (and whatever the operation reports as done
///   before the cancellation, e.g. bytes written by earlier rounds) when the
///   deadline cancelled the operation;
/// - `asio::error::operation_aborted` when the caller cancelled it through
///   the handler's own cancellation slot.
///
/// The deadline emits *terminal* cancellation. The timer runs on `ex`, and
/// its expiry and the completion are dispatched through the handler's
/// associated executor (default `ex`). A cancellation signal is not
/// thread-safe: when several threads run the io_context, give the handler a
/// strand (`asio::bind_executor(strand, ...)`, or a coroutine on a strand) so
/// the expiry never races with the operation's completion.
///
/// Without this helper, the same is written with Asio's awaitable operators:
/// @code
/// using namespace asio::experimental::awaitable_operators;
/// asio::steady_timer t(ex, 50ms);
/// auto r = co_await (f.async_read_at(0, buf, asio::use_awaitable) || t.async_wait(asio::use_awaitable));
/// if (r.index() == 1) { /* timed out: the read was cancelled and has finished */ }
/// @endcode
template <class Executor, class Op, class Rep, class Period,
          class Token = asio::default_completion_token_t<asio::any_io_executor>>
  requires asio::execution::executor<Executor> || asio::is_executor<Executor>::value
auto with_timeout(const Executor& ex, Op&& op, std::chrono::duration<Rep, Period> timeout,
                  Token&& token = Token()) {
  using signature = asio::completion_signature_of_t<std::decay_t<Op>>;
  return asio::async_initiate<Token, signature>(
      detail::timeout_initiation<signature>{}, token, asio::any_io_executor(ex), std::forward<Op>(op),
      std::chrono::duration_cast<std::chrono::steady_clock::duration>(timeout));
}

/// `with_timeout` with the timer on the executor of an IO object (a file, a
/// socket): `fsys::with_timeout(f, f.async_read_at(..., asio::deferred), 50ms, token)`.
template <class IoObject, class Op, class Rep, class Period,
          class Token = asio::default_completion_token_t<asio::any_io_executor>>
  requires requires(IoObject& o) { o.get_executor(); }
auto with_timeout(IoObject& io, Op&& op, std::chrono::duration<Rep, Period> timeout, Token&& token = Token()) {
  return with_timeout(io.get_executor(), std::forward<Op>(op), timeout, std::forward<Token>(token));
}

}  // namespace fsys
