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

#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
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
  std::string ext(path.substr(dot + 1));
  for (auto& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  static const std::pair<const char*, const char*> types[] = {
      {"html", "text/html"},         {"htm", "text/html"},         {"css", "text/css"},
      {"txt", "text/plain"},         {"js", "application/javascript"}, {"json", "application/json"},
      {"xml", "application/xml"},    {"png", "image/png"},         {"jpg", "image/jpeg"},
      {"jpeg", "image/jpeg"},        {"gif", "image/gif"},         {"svg", "image/svg+xml"},
      {"ico", "image/vnd.microsoft.icon"}, {"webp", "image/webp"}, {"pdf", "application/pdf"},
      {"wasm", "application/wasm"},  {"mp4", "video/mp4"},         {"zip", "application/zip"},
  };
  for (auto& [e, t] : types)
    if (ext == e) return t;
  return "application/octet-stream";
}

std::string http_date(std::chrono::system_clock::time_point tp) {
  std::time_t t = std::chrono::system_clock::to_time_t(tp);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
  return buf;
}

std::optional<std::time_t> parse_http_date(std::string_view s) {
  std::tm tm{};
  std::string str(s);
  const char* end = ::strptime(str.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &tm);
  if (!end || *end != '\0') return std::nullopt;
  return ::timegm(&tm);
}

int hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Result of mapping a request target to a path under the root.
struct target_path {
  http::status error = http::status::ok;  // ok: `path` is usable
  std::string path;                        // relative to the root
};

target_path resolve_target(std::string_view target) {
  auto q = target.find_first_of("?#");
  if (q != std::string_view::npos) target = target.substr(0, q);
  if (target.empty() || target[0] != '/') return {http::status::bad_request, {}};
  std::string decoded;
  decoded.reserve(target.size());
  for (std::size_t i = 0; i < target.size(); ++i) {
    if (target[i] == '%') {
      if (i + 2 >= target.size()) return {http::status::bad_request, {}};
      int h = hex(target[i + 1]), l = hex(target[i + 2]);
      if (h < 0 || l < 0) return {http::status::bad_request, {}};
      decoded.push_back(static_cast<char>(h * 16 + l));
      i += 2;
    } else {
      decoded.push_back(target[i]);
    }
  }
  if (decoded.find('\0') != std::string::npos) return {http::status::bad_request, {}};
  std::string rel = decoded.substr(1);
  // An absolute path ("//etc/passwd") or any ".." segment is refused here;
  // RESOLVE_BENEATH would refuse them too (EXDEV), and also catches symlinks.
  if (!rel.empty() && rel[0] == '/') return {http::status::forbidden, {}};
  std::size_t start = 0;
  while (start <= rel.size()) {
    auto end = rel.find('/', start);
    if (end == std::string::npos) end = rel.size();
    if (std::string_view(rel).substr(start, end - start) == "..") return {http::status::forbidden, {}};
    start = end + 1;
  }
  if (rel.empty() || rel.back() == '/') rel += "index.html";
  return {http::status::ok, rel};
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

// Writes the header of a file response (200/206/304/416) and reports what
// body to send: nullopt for none. `keep` says whether the connection may go on.
template <class Req>
asio::awaitable<std::optional<std::pair<std::uint64_t, std::uint64_t>>> send_file_header(
    tcp::socket& sock, const Req& req, const std::string& path, const file_info& info, bool ranges, bool& keep) {
  keep = false;
  http::response<http::empty_body> res{http::status::ok, req.version()};
  res.set(http::field::server, "fsys-http-server");
  res.set(http::field::last_modified, http_date(info.modified));
  res.keep_alive(req.keep_alive());
  if (not_modified(req, info.modified)) {
    res.result(http::status::not_modified);
    auto [ec, n] = co_await http::async_write(sock, res, tuple_awaitable);
    keep = !ec && req.keep_alive();
    co_return std::nullopt;
  }
  std::uint64_t first = 0, count = info.size;
  if (ranges) res.set(http::field::accept_ranges, "bytes");
  if (auto rf = req.find(http::field::range); ranges && rf != req.end()) {
    auto r = parse_range(rf->value(), info.size);
    if (r.kind == byte_range::unsatisfiable) {
      res.result(http::status::range_not_satisfiable);
      res.set(http::field::content_range, "bytes */" + std::to_string(info.size));
      res.content_length(0);
      auto [ec, n] = co_await http::async_write(sock, res, tuple_awaitable);
      keep = !ec && req.keep_alive();
      co_return std::nullopt;
    }
    if (r.kind == byte_range::ok) {
      res.result(http::status::partial_content);
      first = r.first;
      count = r.count;
      res.set(http::field::content_range, "bytes " + std::to_string(first) + "-" + std::to_string(first + count - 1) +
                                              "/" + std::to_string(info.size));
    }
  }
  res.set(http::field::content_type, content_type(path));
  res.content_length(count);
  http::response_serializer<http::empty_body> sr{res};
  auto [ec, n] = co_await http::async_write_header(sock, sr, tuple_awaitable);
  if (ec) co_return std::nullopt;
  keep = req.keep_alive();
  if (req.method() == http::verb::head) co_return std::nullopt;
  co_return std::make_pair(first, count);
}

// One request through fsys: returns whether the connection may go on.
template <class Req>
asio::awaitable<bool> serve_fsys(tcp::socket& sock, const Req& req, int root_fd, const std::string& path) {
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
    auto body = co_await send_file_header(sock, req, path, file_info{st.size, st.mode, st.modified}, true, keep);
    if (body && body->second > 0) {
      auto [ec, sent] = co_await fsys::async_send_file(sock, f, body->first, body->second, tuple_awaitable);
      if (ec || sent != body->second) keep = false;  // the file shrank or the peer went: end the connection
    }
  }
  co_await f.async_close(tuple_awaitable);
  co_return keep;
}

// The baseline: the same request with blocking calls and Beast's file_body.
template <class Req>
asio::awaitable<bool> serve_blocking(tcp::socket& sock, const Req& req, int root_fd, const std::string& path) {
  struct open_how how {};
  how.flags = O_RDONLY | O_CLOEXEC;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
  int fd = static_cast<int>(::syscall(SYS_openat2, root_fd, path.c_str(), &how, sizeof how));
  if (fd < 0) co_return co_await send_error(sock, req, status_of_open_error(error_code(errno, boost::system::system_category())));
  beast::file_posix file;
  file.native_handle(fd);  // owns fd from here
  struct stat sb {};
  if (::fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) co_return co_await send_error(sock, req, http::status::forbidden);
  file_info info{static_cast<std::uint64_t>(sb.st_size), sb.st_mode,
                 std::chrono::system_clock::from_time_t(sb.st_mtim.tv_sec)};
  if (req.method() == http::verb::head || not_modified(req, info.modified)) {
    // Header only (HEAD, 304): the same code as the fsys path.
    bool keep = false;
    co_await send_file_header(sock, req, path, info, false, keep);
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
  beast::flat_buffer buf;
  for (;;) {
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
    const auto& req = parser.get();
    bool keep = false;
    if (req.method() != http::verb::get && req.method() != http::verb::head) {
      keep = co_await send_error(sock, req, http::status::method_not_allowed);
    } else {
      auto t = resolve_target(req.target());
      if (t.error != http::status::ok)
        keep = co_await send_error(sock, req, t.error);
      else if (blocking)
        keep = co_await serve_blocking(sock, req, root_fd, t.path);
      else
        keep = co_await serve_fsys(sock, req, root_fd, t.path);
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
  std::cerr << "usage: fsys-http-server --root DIR --port N [--threads T] [--address A] [--blocking-file-body]\n";
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
