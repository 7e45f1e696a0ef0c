// fsys-http-server: a static-file HTTP/1.1 server on Boost.Beast whose file
// path goes through fsys (async_open beneath a root, async_stat,
// async_send_file, async_close), never blocking the loop on the disk.
//
//   fsys-http-server --root DIR --port N [--threads T] [--address A] [--blocking-file-body]
//
// GET and HEAD, keep-alive (pipelined requests included), one `Range` per
// request (206, 416), Content-Length, Last-Modified / If-Modified-Since
// (304), 400/403/404/405, content types by extension. Paths are resolved
// with openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS) under the root's
// descriptor, after refusing `..` segments (also when percent-encoded):
// nothing outside the root can be served, symlinks pointing out included.
//
// --blocking-file-body serves the same responses with Beast's
// `http::file_body` (blocking open/fstat/read on the loop thread), the
// baseline for comparisons; in that mode `Range` is ignored (a 200 with the
// whole file, which HTTP allows), since Beast 1.81's file_body has no ranges.
//
// --threads T runs T loops, each with its own io_context (and fsys ring) and
// its own SO_REUSEPORT listener on the same port. Port 0 picks a free port;
// the server prints "listening on ADDRESS:PORT" once ready. SIGINT/SIGTERM
// stop it.
#include <fsys/file.hpp>
#include <fsys/send_file.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/file_posix.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>

#include <fcntl.h>
#include <linux/openat2.h>
#include <signal.h>
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

struct config {
  std::string root;
  std::string address = "127.0.0.1";
  unsigned short port = 8080;
  unsigned threads = 1;
  bool blocking = false;
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

template <class Req>
asio::awaitable<bool> send_error(tcp::socket& sock, const Req& req, http::status st) {
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
  // fail with EXDEV; magic links (/proc/self/fd/N) with ELOOP.
  auto [oec] = co_await f.async_open(root_fd, path,
                                     fsys::open_how{O_RDONLY, 0, RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS},
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
      auto [ec, sent] = co_await fsys::async_send_file(sock, f, body->first, body->second, tuple_awaitable);
      if (ec || sent != body->second) keep = false;  // the file shrank or the peer went: end the connection
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
  how.flags = O_RDONLY | O_CLOEXEC;
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

asio::awaitable<void> session(tcp::socket sock, int root_fd, bool blocking) {
  error_code nb_ec;
  // send_head relies on it; Asio's operations and async_send_file handle it.
  sock.native_non_blocking(true, nb_ec);
  if (nb_ec) co_return;
  beast::flat_buffer buf;
  session_buffers sb;
  for (;;) {
    std::uint64_t before_parse = allocations_on_this_thread();
    http::request_parser<http::empty_body> parser;
    parser.header_limit(16 * 1024);
    auto [ec, n] = co_await http::async_read(sock, buf, parser, tuple_awaitable);
    if (ec == http::error::end_of_stream || ec == asio::error::eof || ec == asio::error::connection_reset) break;
    if (ec) {
      http::request<http::empty_body> dummy{http::verb::get, "/", 11};
      dummy.keep_alive(false);
      co_await send_error(sock, dummy, http::status::bad_request);
      break;
    }
    std::uint64_t parsed = allocations_on_this_thread();
    const auto& req = parser.get();
    bool keep = false;
    if (req.method() != http::verb::get && req.method() != http::verb::head) {
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
    if (!keep) break;
  }
  error_code ignored;
  sock.shutdown(tcp::socket::shutdown_send, ignored);
}

asio::awaitable<void> accept_loop(tcp::acceptor& acc, int root_fd, bool blocking) {
  for (;;) {
    auto [ec, sock] = co_await acc.async_accept(tuple_awaitable);
    if (ec == asio::error::operation_aborted) co_return;
    if (ec) continue;  // EMFILE and friends: try the next one
    sock.set_option(tcp::no_delay(true), ec);
    asio::co_spawn(acc.get_executor(), session(std::move(sock), root_fd, blocking), asio::detached);
  }
}

void usage() {
  std::cerr << "usage: fsys-http-server --root DIR --port N [--threads T] [--address A] [--blocking-file-body] [--alloc-report]\n";
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
    else {
      usage();
      return 2;
    }
  }
  if (cfg.root.empty()) {
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
    for (unsigned t = 0; t < cfg.threads; ++t)
      asio::co_spawn(*ctxs[t], accept_loop(*accs[t], root_fd, cfg.blocking), asio::detached);
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
