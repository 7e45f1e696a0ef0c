#include "connection.hpp"

#include "tcp_progress.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <sys/socket.h>

#include <algorithm>

namespace http_server {

namespace asio = boost::asio;
using boost::system::error_code;

connection::connection(asio::ip::tcp::socket sock, connection_table& table)
    : socket_(std::move(sock)), table_(table), timer_(socket_.get_executor()) {}

void connection::start() {
  // A new connection waits for its first request with the header timeout
  // counted from here (as nginx's client_header_timeout), and is idle until
  // its first byte comes.
  table_.list_waiting(this);
  set_deadline(steady::now() + table_.limits().header_timeout);
}

void connection::wait_for_request() {
  if (phase_ == phase::finished) return;
  phase_ = phase::waiting;
  table_.list_waiting(this);
  if (!first_request_) set_deadline(steady::now() + table_.limits().keepalive_timeout);
}

void connection::reading_request() {
  if (phase_ == phase::finished) return;
  table_.unlist_waiting(this);
  phase_ = phase::reading;
  // The first request keeps the deadline of its accept.
  if (!first_request_) set_deadline(steady::now() + table_.limits().header_timeout);
  first_request_ = false;
}

void connection::responding() {
  if (phase_ == phase::finished) return;
  phase_ = phase::responding;
  const auto now = steady::now();
  last_progress_ = now;
  last_acked_ = UINT64_MAX;  // unknown: the first check counts as progress
  // The send timeout is checked four times per period: the connection ends
  // between 1 and 1.25 send timeouts after the peer's last progress.
  set_deadline(now + std::max(std::chrono::milliseconds(1), table_.limits().send_timeout / 4));
}

void connection::finish() noexcept {
  if (phase_ == phase::finished) return;
  phase_ = phase::finished;
  ++generation_;
  error_code ignored;
  timer_.cancel();
  table_.unlist_waiting(this);
  socket_.close(ignored);
  table_.released(this);
}

void connection::set_deadline(steady::time_point t) {
  deadline_ = t;
  // A later deadline needs no timer operation: the pending wait wakes at
  // the old one and waits again. With arm's cap, every change of phase is
  // such a store unless the keep-alive timeout is the shortest.
  if (!armed_ || t < armed_for_) arm(t);
}

void connection::arm(steady::time_point t) {
  // Never further ahead than the shortest deadline a later phase sets: the
  // next request's header timeout, or a response's first progress check.
  // So moving to the next phase never has to bring the timer forward (one
  // timer operation per wake-up, none per request), and an idle connection
  // wakes once per header timeout, only to wait again.
  const auto now = steady::now();
  const auto& l = table_.limits();
  const auto tick = std::min<steady::duration>(l.header_timeout, std::max(std::chrono::milliseconds(1), l.send_timeout / 4));
  t = std::min(t, now + tick);
  armed_ = true;
  armed_for_ = t;
  const std::uint64_t generation = ++generation_;
  timer_.expires_at(t);  // cancels a pending wait (whose handler then does nothing)
  // The handler holds the connection: the socket it may close outlives it.
  timer_.async_wait([self = shared_from_this(), generation](const error_code& ec) {
    if (!ec) self->on_timer(generation);
  });
}

void connection::on_timer(std::uint64_t generation) {
  if (generation != generation_ || phase_ == phase::finished) return;
  armed_ = false;
  const auto now = steady::now();
  if (now < deadline_) return arm(deadline_);
  if (phase_ != phase::responding) return end_now();
  if (peer_made_progress()) last_progress_ = now;
  const auto send_timeout = table_.limits().send_timeout;
  if (now - last_progress_ >= send_timeout) return end_now();
  deadline_ = std::min(now + std::max(std::chrono::milliseconds(1), send_timeout / 4), last_progress_ + send_timeout);
  arm(deadline_);
}

bool connection::peer_made_progress() {
  tcp_send_state st;
  if (!read_tcp_send_state(socket_.native_handle(), st)) return false;
  const bool moved = st.bytes_acked != last_acked_;
  last_acked_ = st.bytes_acked;
  // Nothing waiting in the socket: the server is the one that is slow (a
  // cold file), not the peer.
  return moved || !st.queued;
}

void connection::end_now() {
  ended_early_ = true;
  error_code ignored;
  if (phase_ == phase::responding) {
    // Operations other than Asio's may be in flight (async_send_file reading
    // the file through the ring): the socket must stay open until they are
    // done, so it is not closed here. shutdown makes every later write or
    // sendfile on it fail (EPIPE) and every read see the end, cancel ends the
    // waits Asio has pending, and SO_LINGER 0 makes the session's close
    // reset the connection rather than keep unsent data queued for a peer
    // that reads nothing.
    const int fd = socket_.native_handle();
    ::linger l{1, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    ::shutdown(fd, SHUT_RDWR);
    socket_.cancel(ignored);
    return;
  }
  // Waiting or reading: only a read of Asio on the socket is in flight,
  // which close cancels; the descriptor is free at once.
  table_.unlist_waiting(this);
  socket_.close(ignored);
  table_.released(this);
}

connection_table::connection_table(const asio::any_io_executor& ex, const connection_limits& limits)
    : limits_(limits), release_(ex) {}

bool connection_table::make_room() {
  if (live_ < limits_.max_connections) return true;
  // Like nginx, reuse an idle connection: the one that has waited longest.
  if (!oldest_waiting_) return false;
  oldest_waiting_->end_now();
  return true;
}

std::shared_ptr<connection> connection_table::admit(asio::ip::tcp::socket sock) {
  auto c = std::make_shared<connection>(std::move(sock), *this);
  ++live_;
  c->start();
  return c;
}

asio::awaitable<void> connection_table::wait_for_a_release(std::chrono::milliseconds at_most) {
  release_.expires_after(at_most);
  co_await release_.async_wait(asio::as_tuple(asio::use_awaitable));
}

void connection_table::list_waiting(connection* c) noexcept {
  if (c->listed_) return;
  c->listed_ = true;
  c->older_ = newest_waiting_;
  c->newer_ = nullptr;
  (newest_waiting_ ? newest_waiting_->newer_ : oldest_waiting_) = c;
  newest_waiting_ = c;
}

void connection_table::unlist_waiting(connection* c) noexcept {
  if (!c->listed_) return;
  c->listed_ = false;
  (c->older_ ? c->older_->newer_ : oldest_waiting_) = c->newer_;
  (c->newer_ ? c->newer_->older_ : newest_waiting_) = c->older_;
  c->older_ = c->newer_ = nullptr;
}

void connection_table::released(connection* c) noexcept {
  if (!c->counted_) return;
  c->counted_ = false;
  --live_;
  release_.cancel();  // wakes an accept loop that backs off
}

}  // namespace http_server
