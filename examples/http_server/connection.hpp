// fsys-http-server: the connections of one loop, their timeouts and their
// limit (docs/http.md, "Timeouts and limits").
//
// Each connection is in one phase at a time, and each phase has a deadline
// that a per-connection timer (the watchdog) enforces:
//   waiting     no byte of the next request yet. A new connection has the
//               header timeout from its accept, a kept-alive one the
//               keep-alive timeout from its last response. Only a waiting
//               connection is idle: it may be closed to make room for a
//               new one (`connection_table::make_room`).
//   reading     bytes of a request head have come: the whole head must be
//               in within the header timeout (for a new connection, of its
//               accept; otherwise of the first byte).
//   responding  the request is being answered: it ends when the peer has
//               acknowledged nothing for the send timeout while bytes wait
//               in the socket for it (a client that stopped reading). A
//               server-side wait (a slow disk) with nothing queued is not
//               the peer's fault and never ends it.
// At a deadline a waiting or reading connection is closed (only socket
// reads of Asio are in flight then); a responding one is reset (SO_LINGER
// 0) and shut down, which makes whatever operation is in flight on it fail,
// async_send_file included, and the session then ends by itself.
//
// One table per loop (one io_context run by one thread): nothing here is
// shared between threads.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>

namespace http_server {

using steady = std::chrono::steady_clock;

struct connection_limits {
  std::chrono::milliseconds header_timeout{std::chrono::seconds(10)};
  std::chrono::milliseconds keepalive_timeout{std::chrono::seconds(75)};  // 0: no keep-alive
  std::chrono::milliseconds send_timeout{std::chrono::seconds(60)};
  std::size_t max_connections = 1;  // per loop
};

class connection_table;

class connection : public std::enable_shared_from_this<connection> {
 public:
  connection(boost::asio::ip::tcp::socket sock, connection_table& table);
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;

  boost::asio::ip::tcp::socket& socket() noexcept { return socket_; }
  const connection_limits& limits() const noexcept;

  /// Waiting for the first byte of a request (idle: may be closed to make room).
  void wait_for_request();
  /// The first bytes of a request head are in.
  void reading_request();
  /// The head is parsed: the request is answered from here on.
  void responding();
  /// The session is done with the connection: closes it and leaves the table.
  void finish() noexcept;
  /// Whether the watchdog or the table ended the connection.
  bool ended_early() const noexcept { return ended_early_; }

 private:
  friend class connection_table;
  enum class phase { waiting, reading, responding, finished };

  void start();
  void set_deadline(steady::time_point t);
  void arm(steady::time_point t);
  void on_timer(std::uint64_t generation);
  bool peer_made_progress();
  void end_now();

  boost::asio::ip::tcp::socket socket_;
  connection_table& table_;
  boost::asio::steady_timer timer_;
  phase phase_ = phase::waiting;
  bool first_request_ = true;
  bool ended_early_ = false;
  bool counted_ = true;  // in the table's count of live connections
  steady::time_point deadline_;
  // When a wait of the timer is pending: its expiry.
  // `generation_` tells a wait that was replaced (or made moot by finish)
  // from the current one, whose completion may already be queued.
  bool armed_ = false;
  steady::time_point armed_for_;
  std::uint64_t generation_ = 0;
  // The send timeout's progress check: the last bytes_acked seen and when
  // the peer was last seen to make progress.
  std::uint64_t last_acked_ = UINT64_MAX;
  steady::time_point last_progress_;
  // The table's list of waiting connections, oldest first (intrusive: no
  // allocation when a connection starts or stops waiting).
  connection* older_ = nullptr;
  connection* newer_ = nullptr;
  bool listed_ = false;
};

class connection_table {
 public:
  connection_table(const boost::asio::any_io_executor& ex, const connection_limits& limits);
  connection_table(const connection_table&) = delete;
  connection_table& operator=(const connection_table&) = delete;

  const connection_limits& limits() const noexcept { return limits_; }

  /// Makes room for one more connection: true when there is room (below the
  /// limit, or the oldest waiting connection was closed for it); false when
  /// every connection is busy (reading or responding).
  bool make_room();
  /// Takes an accepted socket in (after make_room).
  std::shared_ptr<connection> admit(boost::asio::ip::tcp::socket sock);
  /// Waits until a connection of this table ends, or `at_most` passes (the
  /// accept loop's back-off when descriptors run out).
  boost::asio::awaitable<void> wait_for_a_release(std::chrono::milliseconds at_most);

  std::size_t live() const noexcept { return live_; }

 private:
  friend class connection;
  void list_waiting(connection* c) noexcept;
  void unlist_waiting(connection* c) noexcept;
  void released(connection* c) noexcept;

  connection_limits limits_;
  std::size_t live_ = 0;
  connection* oldest_waiting_ = nullptr;
  connection* newest_waiting_ = nullptr;
  boost::asio::steady_timer release_;
};

inline const connection_limits& connection::limits() const noexcept { return table_.limits(); }

}  // namespace http_server
