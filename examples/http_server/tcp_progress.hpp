// fsys-http-server: what a TCP socket's peer has acknowledged, for the send
// timeout (connection.cpp). Kept apart from Asio's headers: this needs the
// kernel's <linux/tcp.h> `struct tcp_info` (with tcpi_bytes_acked), which
// clashes with glibc's <netinet/tcp.h> that Asio includes.
#pragma once

#include <cstdint>

namespace http_server {

struct tcp_send_state {
  std::uint64_t bytes_acked = 0;  // bytes of this connection the peer has acknowledged
  bool queued = false;            // bytes wait in the socket (not yet sent, or not yet acknowledged)
};

/// The send state of the TCP socket `fd` (one getsockopt(TCP_INFO)); false
/// when the kernel does not report it (before Linux 4.6).
bool read_tcp_send_state(int fd, tcp_send_state& out) noexcept;

}  // namespace http_server
