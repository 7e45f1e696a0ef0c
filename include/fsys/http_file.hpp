// fsys — answering an HTTP request with a file, on Boost.Beast:
// `fsys::async_serve_file`. Optional: needs Boost.Beast's headers (part of
// Boost); not included by <fsys/fsys.hpp>.
#pragma once

#if !__has_include(<boost/beast/http.hpp>)
#error "<fsys/http_file.hpp> needs Boost.Beast (<boost/beast/http.hpp>)"
#endif

#include <fsys/co.hpp>
#include <fsys/file.hpp>
#include <fsys/file_status.hpp>
#include <fsys/send_file.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/compose.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/serializer.hpp>
#include <boost/beast/http/status.hpp>
#include <boost/beast/http/verb.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/system/error_code.hpp>

#include <sys/stat.h>
#include <time.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace fsys {

/// What `async_serve_file` sent.
struct serve_file_result {
  /// The response's status: 200, 206, 304, 403 (not a regular file), 405
  /// (neither GET nor HEAD) or 416.
  boost::beast::http::status status = boost::beast::http::status::ok;
  /// Bytes of the body sent (0 for HEAD, 304, 416, ...).
  std::uint64_t body_bytes = 0;
  /// Whether the connection may carry the next request: the request asked
  /// for keep-alive and the whole response was sent.
  bool keep_alive = false;
};

/// Options of `async_serve_file`.
struct serve_file_options {
  /// The Content-Type; empty: from the extension of the request target's
  /// path (`fsys::mime_type`).
  std::string_view content_type = {};
  /// The Server header; empty: none.
  std::string_view server = {};
  /// Whether `Range` is honoured (206/416); false: always the whole file.
  bool ranges = true;
};

/// The Content-Type for a path's extension (case-insensitive), as file
/// servers use them; "application/octet-stream" when unknown.
inline std::string_view mime_type(std::string_view path) {
  const auto slash = path.rfind('/');
  const auto dot = path.rfind('.');
  if (dot == std::string_view::npos || (slash != std::string_view::npos && dot < slash))
    return "application/octet-stream";
  const std::string_view ext = path.substr(dot + 1);
  static constexpr std::pair<std::string_view, std::string_view> types[] = {
      {"html", "text/html"},
      {"htm", "text/html"},
      {"css", "text/css"},
      {"txt", "text/plain"},
      {"js", "application/javascript"},
      {"mjs", "application/javascript"},
      {"json", "application/json"},
      {"xml", "application/xml"},
      {"png", "image/png"},
      {"jpg", "image/jpeg"},
      {"jpeg", "image/jpeg"},
      {"gif", "image/gif"},
      {"bmp", "image/bmp"},
      {"svg", "image/svg+xml"},
      {"svgz", "image/svg+xml"},
      {"ico", "image/vnd.microsoft.icon"},
      {"tif", "image/tiff"},
      {"tiff", "image/tiff"},
      {"webp", "image/webp"},
      {"avif", "image/avif"},
      {"pdf", "application/pdf"},
      {"wasm", "application/wasm"},
      {"mp4", "video/mp4"},
      {"webm", "video/webm"},
      {"mp3", "audio/mpeg"},
      {"ogg", "audio/ogg"},
      {"zip", "application/zip"},
      {"gz", "application/gzip"},
      {"tar", "application/x-tar"},
      {"woff", "font/woff"},
      {"woff2", "font/woff2"},
      {"csv", "text/csv"},
      {"md", "text/markdown"},
      {"flv", "video/x-flv"},
      {"swf", "application/x-shockwave-flash"},
      {"php", "text/html"},
  };
  auto lower = [](char c) { return static_cast<char>(std::tolower(static_cast<unsigned char>(c))); };
  for (const auto& [e, t] : types)
    if (e.size() == ext.size() && std::equal(e.begin(), e.end(), ext.begin(), [&](char a, char b) { return a == lower(b); }))
      return t;
  return "application/octet-stream";
}

namespace detail {

// The IMF-fixdate of a time ("Sun, 06 Nov 1994 08:49:37 GMT").
inline std::string http_date(std::time_t t) {
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[64];
  std::size_t n = std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
  return std::string(buf, n);
}

// An IMF-fixdate, the form every client sends; other forms give nullopt
// (the condition is then ignored, as RFC 9110 allows for invalid dates).
inline std::optional<std::time_t> parse_http_date(std::string_view s) {
  char str[64];
  if (s.size() >= sizeof str) return std::nullopt;
  std::memcpy(str, s.data(), s.size());
  str[s.size()] = '\0';
  std::tm tm{};
  const char* end = ::strptime(str, "%a, %d %b %Y %H:%M:%S GMT", &tm);
  if (!end || *end != '\0') return std::nullopt;
  return ::timegm(&tm);
}

// A strong validator from the size and the modification time (to the
// nanosecond): "<mtime ns hex>-<size hex>".
inline std::string http_etag(const file_status& st) {
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(st.modified.time_since_epoch()).count();
  char buf[64];
  int n = std::snprintf(buf, sizeof buf, "\"%llx-%llx\"", static_cast<unsigned long long>(ns),
                        static_cast<unsigned long long>(st.size));
  return std::string(buf, static_cast<std::size_t>(n));
}

// Whether an If-None-Match list matches `etag` (weak comparison: a W/
// prefix is ignored), or is "*".
inline bool etag_list_matches(std::string_view list, std::string_view etag) {
  while (!list.empty()) {
    while (!list.empty() && (list.front() == ' ' || list.front() == '\t' || list.front() == ',')) list.remove_prefix(1);
    if (list.empty()) break;
    if (list.front() == '*') return true;
    if (list.substr(0, 2) == "W/") list.remove_prefix(2);
    if (list.empty() || list.front() != '"') return false;  // malformed: no match
    const auto close = list.find('"', 1);
    if (close == std::string_view::npos) return false;
    if (list.substr(0, close + 1) == etag) return true;
    list.remove_prefix(close + 1);
  }
  return false;
}

// A parsed "Range: bytes=..." for a file of `size` bytes.
struct http_byte_range {
  enum { none, ok, unsatisfiable } kind = none;
  std::uint64_t first = 0, count = 0;
};

// One range of the bytes unit; anything else (another unit, several ranges,
// a malformed value) gives `none`: the whole file is sent, as RFC 9110 allows.
inline http_byte_range parse_http_range(std::string_view v, std::uint64_t size) {
  http_byte_range r;
  if (v.substr(0, 6) != "bytes=") return r;
  v.remove_prefix(6);
  while (!v.empty() && v.front() == ' ') v.remove_prefix(1);
  while (!v.empty() && v.back() == ' ') v.remove_suffix(1);
  if (v.find(',') != std::string_view::npos) return r;
  const auto dash = v.find('-');
  if (dash == std::string_view::npos) return r;
  const auto a = v.substr(0, dash), b = v.substr(dash + 1);
  auto num = [](std::string_view s, std::uint64_t& out) {
    if (s.empty()) return false;
    auto [p, e] = std::from_chars(s.data(), s.data() + s.size(), out);
    return e == std::errc() && p == s.data() + s.size();
  };
  std::uint64_t x = 0, y = 0;
  if (a.empty()) {  // a suffix: the last y bytes
    if (!num(b, y)) return r;
    if (y == 0 || size == 0) return {http_byte_range::unsatisfiable};
    y = std::min(y, size);
    return {http_byte_range::ok, size - y, y};
  }
  if (!num(a, x)) return r;
  if (b.empty()) {
    y = size ? size - 1 : 0;
  } else if (!num(b, y) || y < x) {
    return r;
  }
  if (x >= size) return {http_byte_range::unsatisfiable};
  y = std::min(y, size - 1);
  return {http_byte_range::ok, x, y - x + 1};
}

template <class Stream, class Body, class Fields, class Executor>
class serve_file_op {
  using request_type = boost::beast::http::request<Body, Fields>;
  using head_type = boost::beast::http::response<boost::beast::http::empty_body>;

 public:
  serve_file_op(Stream& stream, const request_type& req, basic_file<Executor>& file, serve_file_options opts)
      : stream_(stream), req_(req), file_(file), opts_(opts) {}

  // Start: the file's status.
  template <class Self>
  void operator()(Self& self) {
    step_ = step::stat;
    file_.async_stat(std::move(self));
  }

  template <class Self>
  void operator()(Self& self, boost::system::error_code ec, file_status st) {
    if (ec) return self.complete(ec, result_);
    build_head(st);
    // The head and its serializer live on the heap: the serializer refers to
    // the head, and this operation moves.
    step_ = step::head;
    boost::beast::http::async_write_header(stream_, state_->sr, std::move(self));
  }

  // The head written, then the body sent.
  template <class Self>
  void operator()(Self& self, boost::system::error_code ec, std::size_t n) {
    if (step_ == step::head) {
      if (ec) return self.complete(ec, result_);
      if (count_ == 0) return done(self);
      step_ = step::body;
      async_send_file(stream_, file_, first_, count_, std::move(self));
      return;
    }
    result_.body_bytes = n;
    if (ec) return self.complete(ec, result_);
    // The file ended early (it shrank before the send started): the body is
    // shorter than announced, and the connection cannot go on.
    if (n != count_) close_after_ = true;
    done(self);
  }

 private:
  enum class step { start, stat, head, body };

  struct head_state {
    head_type res;
    boost::beast::http::response_serializer<boost::beast::http::empty_body> sr{res};
  };

  template <class Self>
  void done(Self& self) {
    result_.keep_alive = req_.keep_alive() && !close_after_;
    self.complete(boost::system::error_code(), result_);
  }

  void build_head(const file_status& st) {
    namespace http = boost::beast::http;
    state_ = std::make_unique<head_state>();
    head_type& res = state_->res;
    res.version(req_.version());
    res.keep_alive(req_.keep_alive());
    if (!opts_.server.empty()) res.set(http::field::server, opts_.server);
    const auto method = req_.method();
    auto finish_empty = [&](http::status s) {
      res.result(s);
      result_.status = s;
      count_ = 0;
    };
    if (method != http::verb::get && method != http::verb::head) {
      finish_empty(http::status::method_not_allowed);
      res.set(http::field::allow, "GET, HEAD");
      res.content_length(0);
      return;
    }
    if (!S_ISREG(st.mode)) {
      finish_empty(http::status::forbidden);
      res.content_length(0);
      return;
    }
    const std::string etag = http_etag(st);
    const std::time_t mtime = std::chrono::system_clock::to_time_t(st.modified);
    res.set(http::field::last_modified, http_date(mtime));
    res.set(http::field::etag, etag);
    // Conditions (RFC 9110 13.2.2): If-None-Match, and only without it,
    // If-Modified-Since; both for GET and HEAD.
    bool not_modified = false;
    if (auto inm = req_.find(http::field::if_none_match); inm != req_.end()) {
      not_modified = etag_list_matches(inm->value(), etag);
    } else if (auto ims = req_.find(http::field::if_modified_since); ims != req_.end()) {
      auto t = parse_http_date(ims->value());
      not_modified = t && mtime <= *t;
    }
    if (not_modified) {
      finish_empty(http::status::not_modified);
      return;
    }
    std::uint64_t first = 0, count = st.size;
    http_byte_range r;
    if (opts_.ranges) {
      res.set(http::field::accept_ranges, "bytes");
      auto rf = req_.find(http::field::range);
      if (rf != req_.end() && method == http::verb::get && if_range_holds(etag, mtime))
        r = parse_http_range(rf->value(), st.size);
    }
    if (r.kind == http_byte_range::unsatisfiable) {
      finish_empty(http::status::range_not_satisfiable);
      res.set(http::field::content_range, "bytes */" + std::to_string(st.size));
      res.content_length(0);
      return;
    }
    if (r.kind == http_byte_range::ok) {
      first = r.first;
      count = r.count;
      res.result(http::status::partial_content);
      res.set(http::field::content_range, "bytes " + std::to_string(first) + "-" + std::to_string(first + count - 1) +
                                              "/" + std::to_string(st.size));
    } else {
      res.result(http::status::ok);
    }
    result_.status = res.result();
    res.set(http::field::content_type,
            opts_.content_type.empty() ? mime_type(target_path()) : opts_.content_type);
    res.content_length(count);
    first_ = first;
    count_ = method == http::verb::head ? 0 : count;
  }

  // If-Range (RFC 9110 13.1.5): the range applies only if the validator is
  // the current ETag (strong comparison) or the current Last-Modified.
  bool if_range_holds(std::string_view etag, std::time_t mtime) const {
    auto ir = req_.find(boost::beast::http::field::if_range);
    if (ir == req_.end()) return true;
    std::string_view v = ir->value();
    if (!v.empty() && (v.front() == '"' || v.substr(0, 2) == "W/")) return v == etag;
    auto t = parse_http_date(v);
    return t && *t == mtime;
  }

  std::string_view target_path() const {
    std::string_view t = req_.target();
    return t.substr(0, t.find_first_of("?#"));
  }

  Stream& stream_;
  const request_type& req_;
  basic_file<Executor>& file_;
  serve_file_options opts_;
  std::unique_ptr<head_state> state_;
  std::uint64_t first_ = 0, count_ = 0;
  bool close_after_ = false;
  serve_file_result result_;
  step step_ = step::start;
};

}  // namespace detail

/// Answers `req` with `file` (open for reading) on `stream`, as a static
/// file server does, and completes with `(error_code, serve_file_result)`.
/// `stream`: anything `async_send_file` takes (a socket,
/// `beast::tcp_stream` with its timeout, `asio::ssl::stream`, ...).
///
/// The response, from the file's status (`file.async_stat`):
/// - neither GET nor HEAD: 405 with `Allow: GET, HEAD`; not a regular file: 403;
/// - `ETag` (strong, from the size and the modification time to the
///   nanosecond) and `Last-Modified` on every response for the file;
/// - 304 (no body) when `If-None-Match` lists the ETag (weak comparison, or
///   `*`), or, when the request has no `If-None-Match`, when
///   `If-Modified-Since` is at or after the modification time (to the second);
/// - GET with one `Range: bytes=...` (first-last, first-, -suffix): 206 with
///   `Content-Range` and that part; a range starting past the end: 416 with
///   `Content-Range: bytes */size`; several ranges, another unit, or a
///   malformed value: 200 with the whole file; `If-Range` with an ETag or date
///   that is not the current one: 200 with the whole file. `Accept-Ranges:
///   bytes` on every 200/206 (`serve_file_options::ranges` turns ranges off);
/// - `Content-Type` from the extension of the target's path (`mime_type`),
///   or `serve_file_options::content_type`; `Content-Length`; the request's
///   HTTP version and keep-alive;
/// - HEAD: the same head as GET (without a range), no body.
///
/// The head is written with Beast's serializer (`http::async_write_header`),
/// the body with `async_send_file` (zero copy on sockets and
/// `beast::tcp_stream`s). `serve_file_result::keep_alive` says whether the
/// connection may carry the next request. An error (the stream's, the
/// file's, `errc::file_truncated`, a timeout) leaves the stream somewhere in
/// the response: close the connection.
///
/// Completion: the handler runs once, on its associated executor (default:
/// the stream's), never inside this call; `stream`, `req` and `file` must
/// stay alive until then. Cancellation: per-operation cancellation reaches
/// the write of the head or `async_send_file`.
template <class Stream, class Body, class Fields, class Executor,
          BOOST_ASIO_COMPLETION_TOKEN_FOR(void(boost::system::error_code, serve_file_result))
              Token = asio::default_completion_token_t<typename Stream::executor_type>>
  requires send_file_stream<Stream>
auto async_serve_file(Stream& stream, const boost::beast::http::request<Body, Fields>& req,
                      basic_file<Executor>& file, serve_file_options opts = {},
                      Token&& token = asio::default_completion_token_t<typename Stream::executor_type>()) {
  return asio::async_compose<Token, void(boost::system::error_code, serve_file_result)>(
      detail::serve_file_op<Stream, Body, Fields, Executor>(stream, req, file, opts), token, stream);
}

/// `async_serve_file` as a coroutine: returns the result; throws
/// `std::system_error` on failure (close the connection then).
template <class Stream, class Body, class Fields, class Executor>
  requires send_file_stream<Stream>
asio::awaitable<serve_file_result> co_serve_file(Stream& stream, const boost::beast::http::request<Body, Fields>& req,
                                                 basic_file<Executor>& file, serve_file_options opts = {}) {
  auto [ec, r] = co_await async_serve_file(stream, req, file, opts, asio::as_tuple(asio::use_awaitable));
  if (ec) detail::throw_co_error(ec, "fsys::co_serve_file");
  co_return r;
}

}  // namespace fsys
