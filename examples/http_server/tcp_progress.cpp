#include "tcp_progress.hpp"

#include <linux/tcp.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstddef>

namespace http_server {

bool read_tcp_send_state(int fd, tcp_send_state& out) noexcept {
  struct tcp_info info {};
  socklen_t len = sizeof info;
  if (::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) != 0) return false;
  // An older kernel fills a shorter structure: without tcpi_notsent_bytes
  // (4.6) there is no progress to read.
  if (len < offsetof(struct tcp_info, tcpi_notsent_bytes) + sizeof info.tcpi_notsent_bytes) return false;
  out.bytes_acked = info.tcpi_bytes_acked;
  out.queued = info.tcpi_notsent_bytes > 0 || info.tcpi_unacked > 0;
  return true;
}

}  // namespace http_server
