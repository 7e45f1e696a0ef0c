// fsys-http-server: a static-file HTTP/1.1 server on Boost.Beast whose file
// path goes through fsys (async_open beneath a root, async_stat,
// async_send_file, async_close), never blocking the loop on the disk.
//
//   fsys-http-server --root DIR --port N [--threads T] [--address A] [--blocking-file-body]
//                    [--header-timeout S] [--keepalive-timeout S] [--send-timeout S]
//                    [--max-connections N] [--tls-cert FILE --tls-key FILE]
//
// GET and HEAD, keep-alive (pipelined requests included), one `Range` per
// request (206, 416), Content-Length, Last-Modified / If-Modified-Since
// (304), 400/403/404/405, content types by extension. Paths are resolved
// with openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS) under the root's
// descriptor, after refusing `..` segments (also when percent-encoded):
// nothing outside the root can be served, symlinks pointing out included.
// Files are opened with O_NONBLOCK and only regular files are served, so
// that a FIFO or device never makes an open wait (a worker's, or in
// --blocking-file-body mode the loop's). A request that announces a body
// (Content-Length > 0, Transfer-Encoding) is refused with 400 before any of
// the body is parsed.
//
// Every connection has a header, keep-alive and send timeout, and each loop
// a connection limit (connection.hpp; flags and defaults in docs/http.md).
// When descriptors run out anyway, the accept loop backs off instead of
// retrying at once.
//
// --blocking-file-body serves the same responses with Beast's
// `http::file_body` (blocking open/fstat/read on the loop thread), the
// baseline for comparisons; in that mode `Range` is ignored (a 200 with the
// whole file, which HTTP allows), since Beast 1.81's file_body has no ranges.
//
// --tls-cert FILE --tls-key FILE (PEM) serve HTTPS instead: OpenSSL through
// asio::ssl, each connection an asio::ssl::stream over its socket, the TLS
// handshake under the header timeout. Over TLS a file is answered by
// fsys::async_serve_file (<fsys/http_file.hpp>: the same rules, plus ETag /
// If-None-Match / If-Range), whose body goes through async_send_file's
// double-buffered path (the file read through the ring, written with
// SSL_write: kernel TLS is not used). The plain-HTTP path keeps its own
// head writer, which sends the head with MSG_MORE ahead of the zero-copy
// body and allocates nothing per request.
//
// --threads T runs T loops, each with its own io_context (and fsys ring) and
// its own SO_REUSEPORT listener on the same port. Port 0 picks a free port;
// the server prints "listening on ADDRESS:PORT" once ready. SIGINT/SIGTERM
// stop it.
#include "connection.hpp"

#include <fsys/file.hpp>
#include <fsys/http_file.hpp>
#include <fsys/send_file.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/file_posix.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/read_size.hpp>
#include <boost/beast/http.hpp>

#include <fcntl.h>
#include <dirent.h>
#include <linux/openat2.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <new>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <vector>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::ip::tcp;
using boost::system::error_code;

// Heap allocations made by this thread, counted by the replaced operator
// new below. With --alloc-report the server prints, for every request, the
// allocations made while parsing it ("parse"), while answering it ("file":
// path, open, stat, head, body, close) and, of those, while sending the head
// and the body ("send") to stderr; they are exact when one connection is
// served at a time (tests/test_http_server.cpp).
namespace {
constinit thread_local std::uint64_t thread_allocations = 0;
bool alloc_report = false;
std::uint64_t allocations_on_this_thread() { return thread_allocations; }

void* counted_alloc(std::size_t n, std::size_t align, bool nothrow) {
  ++thread_allocations;
  if (n == 0) n = 1;
  void* p = nullptr;
  if (align <= alignof(std::max_align_t)) {
    p = std::malloc(n);
  } else if (::posix_memalign(&p, align, n) != 0) {
    p = nullptr;
  }
  if (!p && !nothrow) throw std::bad_alloc();
  return p;
}
// Out of line, so that GCC does not pair an inlined operator new with this
// free (-Wmismatched-new-delete): the replaced operator new returns malloc's memory.
[[gnu::noinline]] void counted_free(void* p) noexcept { std::free(p); }
}  // namespace

void* operator new(std::size_t n) { return counted_alloc(n, 0, false); }
void* operator new[](std::size_t n) { return counted_alloc(n, 0, false); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept { return counted_alloc(n, 0, true); }
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept { return counted_alloc(n, 0, true); }
void* operator new(std::size_t n, std::align_val_t a) { return counted_alloc(n, static_cast<std::size_t>(a), false); }
void* operator new[](std::size_t n, std::align_val_t a) { return counted_alloc(n, static_cast<std::size_t>(a), false); }
void* operator new(std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return counted_alloc(n, static_cast<std::size_t>(a), true);
}
void* operator new[](std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return counted_alloc(n, static_cast<std::size_t>(a), true);
}
void operator delete(void* p) noexcept { counted_free(p); }
void operator delete[](void* p) noexcept { counted_free(p); }
void operator delete(void* p, std::size_t) noexcept { counted_free(p); }
void operator delete[](void* p, std::size_t) noexcept { counted_free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { counted_free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { counted_free(p); }
void operator delete(void* p, std::align_val_t) noexcept { counted_free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { counted_free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { counted_free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { counted_free(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { counted_free(p); }
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { counted_free(p); }

namespace {

using http_server::connection;
using http_server::connection_table;

struct config {
  std::string root;
  std::string address = "127.0.0.1";
  unsigned short port = 8080;
  unsigned threads = 1;
  bool blocking = false;
  std::string tls_cert, tls_key;  // PEM files: HTTPS when both are set
  http_server::connection_limits limits;
  std::size_t max_connections = 0;  // per loop; 0: from RLIMIT_NOFILE
};

constexpr auto tuple_awaitable = asio::as_tuple(asio::use_awaitable);

std::string_view content_type(std::string_view path) {
  auto dot = path.rfind('.');
  auto slash = path.rfind('/');
  if (dot == std::string_view::npos || (slash != std::string_view::npos && dot < slash))
    return "application/octet-stream";
  std::string_view ext = path.substr(dot + 1);
  static const std::pair<std::string_view, std::string_view> types[] = {
      {"html", "text/html"},         {"htm", "text/html"},         {"css", "text/css"},
      {"txt", "text/plain"},         {"js", "application/javascript"}, {"json", "application/json"},
      {"xml", "application/xml"},    {"png", "image/png"},         {"jpg", "image/jpeg"},
      {"jpeg", "image/jpeg"},        {"gif", "image/gif"},         {"svg", "image/svg+xml"},
      {"ico", "image/vnd.microsoft.icon"}, {"webp", "image/webp"}, {"pdf", "application/pdf"},
      {"wasm", "application/wasm"},  {"mp4", "video/mp4"},         {"zip", "application/zip"},
  };
  auto lower = [](char c) { return static_cast<char>(std::tolower(static_cast<unsigned char>(c))); };
  for (auto& [e, t] : types)
    if (e.size() == ext.size() && std::equal(e.begin(), e.end(), ext.begin(), [&](char a, char b) { return a == lower(b); }))
      return t;
  return "application/octet-stream";
}

// The IMF-fixdate of `tp` (29 characters); the last one formatted on this
// thread is kept, since many responses carry the same Last-Modified.
std::string_view http_date(std::chrono::system_clock::time_point tp) {
  struct cached {
    std::time_t t = -1;
    char text[64] = {};
    std::size_t size = 0;
  };
  static thread_local cached last;
  std::time_t t = std::chrono::system_clock::to_time_t(tp);
  if (t != last.t) {
    std::tm tm{};
    ::gmtime_r(&t, &tm);
    last.size = std::strftime(last.text, sizeof last.text, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    last.t = t;
  }
  return {last.text, last.size};
}

std::optional<std::time_t> parse_http_date(std::string_view s) {
  std::tm tm{};
  char str[64];
  if (s.size() >= sizeof str) return std::nullopt;
  std::memcpy(str, s.data(), s.size());
  str[s.size()] = '\0';
  const char* end = ::strptime(str, "%a, %d %b %Y %H:%M:%S GMT", &tm);
  if (!end || *end != '\0') return std::nullopt;
  return ::timegm(&tm);
}

int hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Maps a request target to a path under the root, written to `rel` (whose
// capacity is kept from request to request). Returns ok when `rel` is usable.
http::status resolve_target(std::string_view target, std::string& rel) {
  rel.clear();
  auto q = target.find_first_of("?#");
  if (q != std::string_view::npos) target = target.substr(0, q);
  if (target.empty() || target[0] != '/') return http::status::bad_request;
  for (std::size_t i = 1; i < target.size(); ++i) {
    if (target[i] == '%') {
      if (i + 2 >= target.size()) return http::status::bad_request;
      int h = hex(target[i + 1]), l = hex(target[i + 2]);
      if (h < 0 || l < 0) return http::status::bad_request;
      rel.push_back(static_cast<char>(h * 16 + l));
      i += 2;
    } else {
      rel.push_back(target[i]);
    }
  }
  if (rel.find('\0') != std::string::npos) return http::status::bad_request;
  // An absolute path ("//etc/passwd") or any ".." segment is refused here;
  // RESOLVE_BENEATH would refuse them too (EXDEV), and also catches symlinks.
  if (!rel.empty() && rel[0] == '/') return http::status::forbidden;
  std::size_t start = 0;
  while (start <= rel.size()) {
    auto end = rel.find('/', start);
    if (end == std::string::npos) end = rel.size();
    if (std::string_view(rel).substr(start, end - start) == "..") return http::status::forbidden;
    start = end + 1;
  }
  if (rel.empty() || rel.back() == '/') rel += "index.html";
  return http::status::ok;
}

http::status status_of_open_error(const error_code& ec) {
  switch (ec.value()) {
    case ENOENT:
    case ENOTDIR:
    case ENAMETOOLONG:
      return http::status::not_found;
    case EMFILE:
    case ENFILE:
    case ENOMEM:
      return http::status::service_unavailable;
    default:
      return http::status::forbidden;  // EXDEV, ELOOP, EACCES, EPERM, ...
  }
}

// A parsed "Range: bytes=..." for a file of `size` bytes.
struct byte_range {
  enum { none, ok, unsatisfiable } kind = none;
  std::uint64_t first = 0, count = 0;
};

byte_range parse_range(std::string_view v, std::uint64_t size) {
  byte_range r;
  if (v.substr(0, 6) != "bytes=") return r;  // unknown unit: ignore
  v.remove_prefix(6);
  if (v.find(',') != std::string_view::npos) return r;  // several ranges: serve the whole file
  auto dash = v.find('-');
  if (dash == std::string_view::npos) return r;
  auto a = v.substr(0, dash), b = v.substr(dash + 1);
  auto num = [](std::string_view s, std::uint64_t& out) {
    if (s.empty()) return false;
    auto [p, e] = std::from_chars(s.data(), s.data() + s.size(), out);
    return e == std::errc() && p == s.data() + s.size();
  };
  std::uint64_t x = 0, y = 0;
  if (a.empty()) {  // suffix: the last y bytes
    if (!num(b, y)) return r;
    if (y == 0 || size == 0) return {byte_range::unsatisfiable};
    y = std::min(y, size);
    return {byte_range::ok, size - y, y};
  }
  if (!num(a, x)) return r;
  if (b.empty()) {
    y = size ? size - 1 : 0;
  } else if (!num(b, y) || y < x) {
    return r;
  }
  if (x >= size) return {byte_range::unsatisfiable};
  y = std::min(y, size - 1);
  return {byte_range::ok, x, y - x + 1};
}

template <class Stream, class Req>
asio::awaitable<bool> send_error(Stream& sock, const Req& req, http::status st) {
  http::response<http::string_body> res{st, req.version()};
  res.set(http::field::server, "fsys-http-server");
  res.set(http::field::content_type, "text/plain");
  if (st == http::status::method_not_allowed) res.set(http::field::allow, "GET, HEAD");
  bool keep = req.keep_alive() && st != http::status::bad_request;
  res.keep_alive(keep);
  if (req.method() != http::verb::head) res.body() = std::string(http::obsolete_reason(st)) + "\n";
  res.prepare_payload();
  if (req.method() == http::verb::head) res.content_length(std::string(http::obsolete_reason(st)).size() + 1);
  auto [ec, n] = co_await http::async_write(sock, res, tuple_awaitable);
  co_return !ec && keep;
}

struct file_info {
  std::uint64_t size = 0;
  mode_t mode = 0;
  std::chrono::system_clock::time_point modified;
};

// Whether If-Modified-Since says the client's copy is current (304).
template <class Req>
bool not_modified(const Req& req, std::chrono::system_clock::time_point modified) {
  auto ims = req.find(http::field::if_modified_since);
  if (ims == req.end()) return false;
  auto t = parse_http_date(ims->value());
  return t && std::chrono::system_clock::to_time_t(modified) <= *t;
}

// Per-connection memory reused from request to request, so that serving a
// file allocates nothing in the steady state: the path under the root and
// the response head.
struct session_buffers {
  std::string path;
  char head[1024];
  std::uint64_t send_allocations = 0;  // made by the last response's head + body (--alloc-report)
};

// Appends text to a fixed buffer; `ok()` is false once something did not fit.
class head_writer {
 public:
  head_writer(char* buf, std::size_t cap) : buf_(buf), cap_(cap) {}
  head_writer& add(std::string_view s) {
    if (ok_ && s.size() <= cap_ - size_) {
      std::memcpy(buf_ + size_, s.data(), s.size());
      size_ += s.size();
    } else {
      ok_ = false;
    }
    return *this;
  }
  head_writer& num(std::uint64_t v) {
    char t[24];
    auto [p, e] = std::to_chars(t, t + sizeof t, v);
    return add(std::string_view(t, static_cast<std::size_t>(p - t)));
  }
  bool ok() const { return ok_; }
  std::string_view view() const { return {buf_, size_}; }

 private:
  char* buf_;
  std::size_t cap_;
  std::size_t size_ = 0;
  bool ok_ = true;
};

// Sends a response head. `more`: a body follows at once, so the head goes
// with MSG_MORE and leaves in the same segment as the body's first bytes
// (nginx's tcp_nopush). The socket is non-blocking: one send(2) normally
// takes it all; what it leaves is written with async_write.
asio::awaitable<bool> send_head(tcp::socket& sock, std::string_view head, bool more) {
  std::size_t done = 0;
  // Sound: `head` points into the session's buffers, alive for the call.
  ssize_t r = ::send(sock.native_handle(), head.data(), head.size(), MSG_NOSIGNAL | (more ? MSG_MORE : 0));
  if (r > 0) {
    done = static_cast<std::size_t>(r);
  } else if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
    co_return false;
  }
  if (done == head.size()) co_return true;
  // Sound: the session's buffers outlive this coroutine's await.
  auto [ec, n] = co_await asio::async_write(sock, asio::buffer(head.substr(done)), tuple_awaitable);
  co_return !ec;
}

// Writes the head of a file response (200/206/304/416) and reports what
// body to send: nullopt for none. `keep` says whether the connection may go on.
template <class Req>
asio::awaitable<std::optional<std::pair<std::uint64_t, std::uint64_t>>> send_file_header(
    tcp::socket& sock, const Req& req, session_buffers& sb, const file_info& info, bool ranges, bool& keep) {
  keep = false;
  head_writer h(sb.head, sizeof sb.head);
  std::string_view version = req.version() == 10 ? "HTTP/1.0 " : "HTTP/1.1 ";
  auto status_line = [&](http::status st) {
    h.add(version).num(static_cast<unsigned>(st)).add(" ").add(http::obsolete_reason(st)).add("\r\n");
    h.add("Server: fsys-http-server\r\nLast-Modified: ").add(http_date(info.modified)).add("\r\n");
  };
  auto end_head = [&] {
    if (!req.keep_alive()) {
      if (req.version() >= 11) h.add("Connection: close\r\n");
    } else if (req.version() < 11) {
      h.add("Connection: keep-alive\r\n");
    }
    h.add("\r\n");
  };
  if (not_modified(req, info.modified)) {
    status_line(http::status::not_modified);
    end_head();
    keep = co_await send_head(sock, h.view(), false) && req.keep_alive();
    co_return std::nullopt;
  }
  std::uint64_t first = 0, count = info.size;
  byte_range r;
  if (auto rf = req.find(http::field::range); ranges && rf != req.end()) r = parse_range(rf->value(), info.size);
  if (r.kind == byte_range::unsatisfiable) {
    status_line(http::status::range_not_satisfiable);
    h.add("Accept-Ranges: bytes\r\nContent-Range: bytes */").num(info.size).add("\r\nContent-Length: 0\r\n");
    end_head();
    keep = co_await send_head(sock, h.view(), false) && req.keep_alive();
    co_return std::nullopt;
  }
  if (r.kind == byte_range::ok) {
    first = r.first;
    count = r.count;
    status_line(http::status::partial_content);
    h.add("Accept-Ranges: bytes\r\nContent-Range: bytes ").num(first).add("-").num(first + count - 1).add("/");
    h.num(info.size).add("\r\n");
  } else {
    status_line(http::status::ok);
    if (ranges) h.add("Accept-Ranges: bytes\r\n");
  }
  h.add("Content-Type: ").add(content_type(sb.path)).add("\r\nContent-Length: ").num(count).add("\r\n");
  end_head();
  if (!h.ok()) co_return std::nullopt;  // cannot happen: the head is far below the buffer's size
  bool body = req.method() != http::verb::head && count > 0;
  if (!co_await send_head(sock, h.view(), body)) co_return std::nullopt;
  keep = req.keep_alive();
  if (!body) co_return std::nullopt;
  co_return std::make_pair(first, count);
}

// One request through fsys: returns whether the connection may go on.
template <class Req>
asio::awaitable<bool> serve_fsys(tcp::socket& sock, const Req& req, int root_fd, session_buffers& sb) {
  const std::string& path = sb.path;
  auto ex = co_await asio::this_coro::executor;
  fsys::file f(ex);
  // openat2 beneath the root: `..`, absolute paths and symlinks leading out
  // fail with EXDEV; magic links (/proc/self/fd/N) with ELOOP. O_NONBLOCK:
  // opening a FIFO or a device must not wait (the open of a FIFO waits for
  // a writer otherwise, holding a ring or psync worker for as long); only a
  // regular file is then served (the stat below). O_NOCTTY: a terminal
  // device in the tree never becomes the server's controlling terminal.
  auto [oec] = co_await f.async_open(
      root_fd, path, fsys::open_how{O_RDONLY | O_NONBLOCK | O_NOCTTY, 0, RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS},
      tuple_awaitable);
  if (oec) co_return co_await send_error(sock, req, status_of_open_error(oec));
  auto [sec, st] = co_await f.async_stat(tuple_awaitable);
  bool keep = false;
  if (sec || !S_ISREG(st.mode)) {
    keep = co_await send_error(sock, req, sec ? http::status::internal_server_error : http::status::forbidden);
  } else {
    std::uint64_t before_send = allocations_on_this_thread();
    auto body = co_await send_file_header(sock, req, sb, file_info{st.size, st.mode, st.modified}, true, keep);
    if (body && body->second > 0) {
      // A regular file: O_NONBLOCK goes, and the body's reads (through the
      // ring or a worker, for pages that are not cached) see the file as if
      // opened without it; io_uring of some kernels fails a read of an
      // O_NONBLOCK file that would wait for the disk with EAGAIN. F_SETFL
      // never waits; the descriptor is the file's own, open until
      // async_close below.
      error_code ec;
      std::size_t sent = 0;
      if (::fcntl(f.native_handle(), F_SETFL, 0) != 0)
        ec.assign(errno, boost::system::system_category());
      else
        std::tie(ec, sent) = co_await fsys::async_send_file(sock, f, body->first, body->second, tuple_awaitable);
      // Any error (the peer went, a timeout shut the socket down, a read
      // failed, the file shrank) or a short send leaves the stream at an
      // unknown place in the body: end the connection.
      if (ec || sent != body->second) keep = false;
    }
    sb.send_allocations = allocations_on_this_thread() - before_send;
  }
  co_await f.async_close(tuple_awaitable);
  co_return keep;
}

// The baseline: the same request with blocking calls and Beast's file_body.
template <class Req>
asio::awaitable<bool> serve_blocking(tcp::socket& sock, const Req& req, int root_fd, session_buffers& sb) {
  const std::string& path = sb.path;
  struct open_how how {};
  // O_NONBLOCK: a FIFO or device must not block the loop thread in open (a
  // FIFO waits for a writer, and SIGTERM would then no longer stop the
  // server); only regular files are served (fstat below), and for those
  // O_NONBLOCK changes nothing: read(2) of a regular file ignores it.
  how.flags = O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
  int fd = static_cast<int>(::syscall(SYS_openat2, root_fd, path.c_str(), &how, sizeof how));
  if (fd < 0) co_return co_await send_error(sock, req, status_of_open_error(error_code(errno, boost::system::system_category())));
  beast::file_posix file;
  file.native_handle(fd);  // owns fd from here
  struct stat sbuf {};
  if (::fstat(fd, &sbuf) != 0 || !S_ISREG(sbuf.st_mode)) co_return co_await send_error(sock, req, http::status::forbidden);
  file_info info{static_cast<std::uint64_t>(sbuf.st_size), sbuf.st_mode,
                 std::chrono::system_clock::from_time_t(sbuf.st_mtim.tv_sec)};
  if (req.method() == http::verb::head || not_modified(req, info.modified)) {
    // Header only (HEAD, 304): the same code as the fsys path.
    bool keep = false;
    co_await send_file_header(sock, req, sb, info, false, keep);
    co_return keep;
  }
  http::response<http::file_body> res{http::status::ok, req.version()};
  res.set(http::field::server, "fsys-http-server");
  res.set(http::field::last_modified, http_date(info.modified));
  res.set(http::field::content_type, content_type(path));
  error_code ec;
  res.body().reset(std::move(file), ec);
  res.keep_alive(req.keep_alive());
  res.prepare_payload();
  auto [wec, n] = co_await http::async_write(sock, res, tuple_awaitable);
  co_return !wec && req.keep_alive();
}

asio::awaitable<void> session(std::shared_ptr<connection> conn, int root_fd, bool blocking) {
  tcp::socket& sock = conn->socket();
  error_code nb_ec;
  // send_head relies on it; Asio's operations and async_send_file handle it.
  sock.native_non_blocking(true, nb_ec);
  const bool keep_alive = conn->limits().keepalive_timeout.count() > 0;
  beast::flat_buffer buf;
  session_buffers sb;
  while (!nb_ec) {
    std::uint64_t before_parse = allocations_on_this_thread();
    if (buf.size() == 0) {
      // Idle until the first byte of the next request comes (the keep-alive
      // timeout; for a new connection, the header timeout).
      conn->wait_for_request();
      auto [ec, n] = co_await sock.async_read_some(buf.prepare(beast::read_size(buf, 65536)), tuple_awaitable);
      if (ec) break;
      buf.commit(n);
    }
    conn->reading_request();
    // The head only: a GET or HEAD has no body, and none is ever parsed.
    http::request_parser<http::empty_body> parser;
    parser.header_limit(16 * 1024);
    auto [ec, n] = co_await http::async_read_header(sock, buf, parser, tuple_awaitable);
    if (ec == http::error::end_of_stream || ec == asio::error::eof || ec == asio::error::connection_reset ||
        conn->ended_early())
      break;
    if (ec) {
      http::request<http::empty_body> dummy{http::verb::get, "/", 11};
      dummy.keep_alive(false);
      co_await send_error(sock, dummy, http::status::bad_request);
      break;
    }
    conn->responding();
    std::uint64_t parsed = allocations_on_this_thread();
    const auto& req = parser.get();
    bool keep = false;
    if (!parser.is_done()) {
      // A body is announced (Content-Length > 0, Transfer-Encoding): a file
      // server takes none. 400, and the connection closes without reading
      // it (Beast 1.81's chunk parser even asserts on some chunked input).
      co_await send_error(sock, req, http::status::bad_request);
    } else if (req.method() != http::verb::get && req.method() != http::verb::head) {
      keep = co_await send_error(sock, req, http::status::method_not_allowed);
    } else {
      auto st = resolve_target(req.target(), sb.path);
      if (st != http::status::ok)
        keep = co_await send_error(sock, req, st);
      else if (blocking)
        keep = co_await serve_blocking(sock, req, root_fd, sb);
      else
        keep = co_await serve_fsys(sock, req, root_fd, sb);
    }
    if (alloc_report) {
      std::uint64_t done = allocations_on_this_thread();
      std::fprintf(stderr, "allocations: parse %llu file %llu send %llu\n",
                   static_cast<unsigned long long>(parsed - before_parse), static_cast<unsigned long long>(done - parsed),
                   static_cast<unsigned long long>(sb.send_allocations));
      sb.send_allocations = 0;
    }
    if (!keep || !keep_alive || conn->ended_early()) break;
  }
  error_code ignored;
  sock.shutdown(tcp::socket::shutdown_send, ignored);
  conn->finish();
}

// A file over TLS: opened beneath the root as on the plain path, then
// answered by fsys::async_serve_file. Returns whether the connection may go on.
template <class Stream, class Req>
asio::awaitable<bool> serve_file_over(Stream& stream, const Req& req, int root_fd, const std::string& path) {
  auto ex = co_await asio::this_coro::executor;
  fsys::file f(ex);
  // As in serve_fsys: beneath the root, no magic links, O_NONBLOCK so that a
  // FIFO or device never makes the open wait.
  auto [oec] = co_await f.async_open(
      root_fd, path, fsys::open_how{O_RDONLY | O_NONBLOCK | O_NOCTTY, 0, RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS},
      tuple_awaitable);
  if (oec) co_return co_await send_error(stream, req, status_of_open_error(oec));
  bool keep = false;
  // The reads of a regular file must not see O_NONBLOCK (see serve_fsys);
  // async_serve_file answers anything else with 403 without reading it.
  if (::fcntl(f.native_handle(), F_SETFL, 0) == 0) {
    fsys::serve_file_options opts;
    opts.server = "fsys-http-server";
    auto [ec, r] = co_await fsys::async_serve_file(stream, req, f, opts, tuple_awaitable);
    keep = !ec && r.keep_alive;
  }
  co_await f.async_close(tuple_awaitable);
  co_return keep;
}

// A connection over TLS: the handshake (under the header timeout, which
// closes the socket when it passes), then requests as in session().
asio::awaitable<void> tls_session(std::shared_ptr<connection> conn, int root_fd, asio::ssl::context& tls) {
  tcp::socket& sock = conn->socket();
  asio::ssl::stream<tcp::socket&> stream(sock, tls);
  auto [hec] = co_await stream.async_handshake(asio::ssl::stream_base::server, tuple_awaitable);
  const bool keep_alive = conn->limits().keepalive_timeout.count() > 0;
  beast::flat_buffer buf;
  std::string path;
  while (!hec) {
    if (buf.size() == 0) {
      // Idle until the next request's first byte (the first request keeps
      // the header timeout counted from the accept, which the handshake used).
      conn->wait_for_request();
      auto [ec, n] = co_await stream.async_read_some(buf.prepare(beast::read_size(buf, 65536)), tuple_awaitable);
      if (ec) break;
      buf.commit(n);
    }
    conn->reading_request();
    http::request_parser<http::empty_body> parser;
    parser.header_limit(16 * 1024);
    auto [ec, n] = co_await http::async_read_header(stream, buf, parser, tuple_awaitable);
    if (ec == http::error::end_of_stream || ec == asio::error::eof || ec == asio::error::connection_reset ||
        conn->ended_early())
      break;
    if (ec) {
      http::request<http::empty_body> dummy{http::verb::get, "/", 11};
      dummy.keep_alive(false);
      co_await send_error(stream, dummy, http::status::bad_request);
      break;
    }
    conn->responding();
    const auto& req = parser.get();
    bool keep = false;
    if (!parser.is_done()) {
      co_await send_error(stream, req, http::status::bad_request);  // a body is announced (see session)
    } else if (req.method() != http::verb::get && req.method() != http::verb::head) {
      keep = co_await send_error(stream, req, http::status::method_not_allowed);
    } else if (auto st = resolve_target(req.target(), path); st != http::status::ok) {
      keep = co_await send_error(stream, req, st);
    } else {
      keep = co_await serve_file_over(stream, req, root_fd, path);
    }
    if (!keep || !keep_alive || conn->ended_early()) break;
  }
  // No wait for the peer's close_notify: the connection ends here either way.
  error_code ignored;
  sock.shutdown(tcp::socket::shutdown_send, ignored);
  conn->finish();
}

// Every connection of the loop is busy (none waits for a request): the new
// one gets a 503 at once and is closed. The socket is new, so its buffer
// takes the short response whole; input that has already come is read
// first, so that the close does not reset the connection over it (input
// that comes later may still do that).
void refuse_busy(tcp::socket& sock) {
  static constexpr std::string_view busy =
      "HTTP/1.1 503 Service Unavailable\r\nServer: fsys-http-server\r\nContent-Type: text/plain\r\n"
      "Content-Length: 20\r\nRetry-After: 1\r\nConnection: close\r\n\r\nService Unavailable\n";
  const int fd = sock.native_handle();
  char drain[4096];
  for (int i = 0; i < 4 && ::recv(fd, drain, sizeof drain, MSG_DONTWAIT) > 0; ++i) {
  }
  (void)::send(fd, busy.data(), busy.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  ::shutdown(fd, SHUT_WR);
  error_code ignored;
  sock.close(ignored);
}

// Errors of accept(2) that say the process or the system is out of
// descriptors or memory: the pending connection stays queued, so retrying
// at once would only spin.
bool out_of_resources(const error_code& ec) {
  if (ec.category() != boost::system::system_category()) return false;
  switch (ec.value()) {
    case EMFILE:
    case ENFILE:
    case ENOBUFS:
    case ENOMEM:
      return true;
    default:
      return false;
  }
}

asio::awaitable<void> accept_loop(tcp::acceptor& acc, connection_table& table, int root_fd, bool blocking,
                                  asio::ssl::context* tls) {
  for (;;) {
    auto [ec, sock] = co_await acc.async_accept(tuple_awaitable);
    if (ec == asio::error::operation_aborted) co_return;
    if (ec) {
      // Out of descriptors: accept again once a connection of this loop has
      // ended, or after 100 ms (another loop's may free one too).
      if (out_of_resources(ec)) co_await table.wait_for_a_release(std::chrono::milliseconds(100));
      continue;  // other errors (ECONNABORTED, ...) consumed their connection
    }
    // At the limit the oldest idle connection is closed for this one.
    if (!table.make_room()) {
      refuse_busy(sock);
      continue;
    }
    sock.set_option(tcp::no_delay(true), ec);
    if (tls)
      asio::co_spawn(acc.get_executor(), tls_session(table.admit(std::move(sock)), root_fd, *tls), asio::detached);
    else
      asio::co_spawn(acc.get_executor(), session(table.admit(std::move(sock)), root_fd, blocking), asio::detached);
  }
}

// The descriptors this process has open now.
std::size_t open_descriptors() {
  std::size_t n = 0;
  if (DIR* d = ::opendir("/proc/self/fd")) {
    while (auto* e = ::readdir(d))
      if (e->d_name[0] != '.') ++n;
    ::closedir(d);
  }
  return n ? n - 1 : 32;  // (less the directory's own; unknown without /proc)
}

// The default connection limit of each loop: the descriptors RLIMIT_NOFILE
// leaves once those open at start-up and a reserve for what the loops open
// later (each fsys ring, its eventfds, the psync backend's) are set aside,
// halved because a connection being answered holds two (its socket and the
// file), and shared among the loops.
std::size_t default_max_connections(unsigned threads) {
  rlimit rl{};
  std::uint64_t nofile = 1024;
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0) nofile = rl.rlim_cur == RLIM_INFINITY ? 1u << 20 : rl.rlim_cur;
  const std::uint64_t reserve = open_descriptors() + 16 + 8 * std::uint64_t{threads};
  const std::uint64_t per_process = nofile > reserve ? (nofile - reserve) / 2 : 0;
  return static_cast<std::size_t>(std::max<std::uint64_t>(1, per_process / threads));
}

void usage() {
  std::cerr << "usage: fsys-http-server --root DIR --port N [--threads T] [--address A] [--blocking-file-body]\n"
               "                        [--header-timeout S] [--keepalive-timeout S] [--send-timeout S]\n"
               "                        [--max-connections N] [--alloc-report] [--tls-cert FILE --tls-key FILE]\n";
}

// A duration in seconds ("10", "0.5"); `zero_ok`: 0 is allowed.
std::optional<std::chrono::milliseconds> parse_seconds(const std::string& s, bool zero_ok) {
  char* end = nullptr;
  errno = 0;
  const double v = std::strtod(s.c_str(), &end);
  if (s.empty() || *end != '\0' || errno != 0 || !(v >= 0) || v > 1e6 || (v == 0 && !zero_ok)) return std::nullopt;
  const auto ms = std::chrono::milliseconds(static_cast<std::int64_t>(v * 1000 + 0.5));
  if (ms.count() == 0 && !zero_ok) return std::nullopt;
  return ms;
}

}  // namespace

int main(int argc, char** argv) {
  config cfg;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        usage();
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--root") cfg.root = next();
    else if (a == "--port") cfg.port = static_cast<unsigned short>(std::stoul(next()));
    else if (a == "--threads") cfg.threads = std::max(1u, static_cast<unsigned>(std::stoul(next())));
    else if (a == "--address") cfg.address = next();
    else if (a == "--blocking-file-body") cfg.blocking = true;
    else if (a == "--alloc-report") alloc_report = true;
    else if (a == "--tls-cert") cfg.tls_cert = next();
    else if (a == "--tls-key") cfg.tls_key = next();
    else if (a == "--header-timeout" || a == "--keepalive-timeout" || a == "--send-timeout") {
      auto v = parse_seconds(next(), a == "--keepalive-timeout");
      if (!v) {
        std::cerr << "fsys-http-server: " << a << " takes seconds (> 0" << (a == "--keepalive-timeout" ? ", or 0" : "")
                  << ")\n";
        return 2;
      }
      (a == "--header-timeout" ? cfg.limits.header_timeout
                               : a == "--send-timeout" ? cfg.limits.send_timeout : cfg.limits.keepalive_timeout) = *v;
    } else if (a == "--max-connections") {
      cfg.max_connections = static_cast<std::size_t>(std::stoull(next()));
      if (cfg.max_connections == 0) {
        usage();
        return 2;
      }
    } else {
      usage();
      return 2;
    }
  }
  if (cfg.root.empty() || cfg.tls_cert.empty() != cfg.tls_key.empty() || (cfg.blocking && !cfg.tls_cert.empty())) {
    usage();
    return 2;
  }
  ::signal(SIGPIPE, SIG_IGN);  // sendfile(2) cannot pass MSG_NOSIGNAL
  // The root's descriptor, opened once at start-up; every request path is
  // resolved beneath it.
  int root_fd = ::open(cfg.root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (root_fd < 0) {
    std::perror(cfg.root.c_str());
    return 1;
  }
  try {
    // One TLS context for all loops (OpenSSL's SSL_CTX is safe to share
    // between threads once set up): TLS 1.2 and 1.3, the certificate chain
    // and key from the PEM files.
    std::optional<asio::ssl::context> tls;
    if (!cfg.tls_cert.empty()) {
      tls.emplace(asio::ssl::context::tls_server);
      tls->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                       asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 | asio::ssl::context::no_tlsv1_1);
      tls->use_certificate_chain_file(cfg.tls_cert);
      tls->use_private_key_file(cfg.tls_key, asio::ssl::context::pem);
    }
    std::vector<std::unique_ptr<asio::io_context>> ctxs;
    std::vector<std::unique_ptr<tcp::acceptor>> accs;
    tcp::endpoint ep(asio::ip::make_address(cfg.address), cfg.port);
    for (unsigned t = 0; t < cfg.threads; ++t) {
      ctxs.push_back(std::make_unique<asio::io_context>(1));
      auto acc = std::make_unique<tcp::acceptor>(*ctxs.back());
      acc->open(ep.protocol());
      acc->set_option(tcp::acceptor::reuse_address(true));
      int one = 1;
      ::setsockopt(acc->native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
      acc->bind(ep);
      acc->listen(asio::socket_base::max_listen_connections);
      ep = acc->local_endpoint();  // port 0: the others take the same port
      accs.push_back(std::move(acc));
    }
    cfg.limits.max_connections = cfg.max_connections ? cfg.max_connections : default_max_connections(cfg.threads);
    // (Destroyed before the io_contexts: the tables' timers belong to them.)
    std::vector<std::unique_ptr<connection_table>> tables;
    for (unsigned t = 0; t < cfg.threads; ++t) {
      tables.push_back(std::make_unique<connection_table>(ctxs[t]->get_executor(), cfg.limits));
      asio::co_spawn(*ctxs[t], accept_loop(*accs[t], *tables[t], root_fd, cfg.blocking, tls ? &*tls : nullptr), asio::detached);
    }
    asio::signal_set signals(*ctxs[0], SIGINT, SIGTERM);
    signals.async_wait([&](error_code, int) {
      for (auto& c : ctxs) c->stop();
    });
    std::cout << "listening on " << ep.address().to_string() << ":" << ep.port() << std::endl;
    std::vector<std::thread> threads;
    for (unsigned t = 1; t < cfg.threads; ++t) threads.emplace_back([&, t] { ctxs[t]->run(); });
    ctxs[0]->run();
    for (auto& th : threads) th.join();
  } catch (const std::exception& e) {
    std::cerr << "fsys-http-server: " << e.what() << "\n";
    return 1;
  }
  ::close(root_fd);
  return 0;
}
