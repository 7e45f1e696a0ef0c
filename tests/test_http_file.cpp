// fsys::async_serve_file (<fsys/http_file.hpp>): each rule of the response
// checked by a Beast client reading from the other end of a TCP loopback
// connection: 200 with its headers, Content-Type by extension, HEAD, single
// ranges (206), unsatisfiable ranges (416), several ranges (200),
// If-None-Match / If-Modified-Since (304) and their precedence, If-Range,
// 405, 403, keep-alive across responses, and the same over a
// beast::tcp_stream. Runs once per backend and with 4 threads.
#include <boost/test/unit_test.hpp>

#include "support/ring_fixture.hpp"
#include "support/run.hpp"
#include "support/temp_dir.hpp"

#include <fsys/fsys.hpp>
#include <fsys/http_file.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <future>
#include <string>
#include <vector>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::ip::tcp;
using boost::system::error_code;
using fsys::test::pattern;
using fsys::test::temp_dir;

namespace {

struct ignore_sigpipe {
  ignore_sigpipe() { ::signal(SIGPIPE, SIG_IGN); }
};
BOOST_TEST_GLOBAL_FIXTURE(ignore_sigpipe);

using request = http::request<http::empty_body>;
using response = http::response<http::string_body>;

request make_request(http::verb method, std::string target,
                     std::initializer_list<std::pair<http::field, std::string>> fields = {}, unsigned version = 11) {
  request req{method, target, version};
  req.set(http::field::host, "127.0.0.1");
  for (auto& [f, v] : fields) req.set(f, v);
  return req;
}

struct served {
  error_code ec;
  fsys::serve_file_result result;
  response res;
};

// Serves `reqs` one after the other on one connection with the file at `p`
// (a TCP socket, or a beast::tcp_stream when `Timed`); a client thread reads
// the responses with Beast's parser.
template <bool Timed = false>
std::vector<served> serve(const std::vector<request>& reqs, const std::filesystem::path& p,
                          fsys::serve_file_options opts = {}) {
  asio::io_context ctx;
  fsys::test::make_ring(ctx);
  tcp::acceptor acc(ctx, {asio::ip::make_address("127.0.0.1"), 0});
  tcp::socket client_side(ctx);
  client_side.connect(acc.local_endpoint());
  tcp::socket server_side = acc.accept();
  const int client_fd = client_side.release();
  auto client = std::async(std::launch::async, [&reqs, client_fd] {
    asio::io_context cctx;
    tcp::socket s(cctx, tcp::v4(), client_fd);
    beast::flat_buffer buf;
    std::vector<response> out;
    for (auto& rq : reqs) {
      http::response_parser<http::string_body> parser;
      parser.body_limit(64 * 1024 * 1024);
      if (rq.method() == http::verb::head) parser.skip(true);
      error_code ec;
      http::read(s, buf, parser, ec);
      if (ec) break;
      out.push_back(parser.release());
    }
    // Nothing may follow the last response.
    error_code ec;
    char extra;
    std::size_t n = s.read_some(asio::buffer(&extra, 1), ec);
    if (n != 0 || ec != asio::error::eof) out.clear();
    return out;
  });
  std::vector<served> results;
  fsys::file f(ctx, p, O_RDONLY);
  auto body = [&](auto& stream) -> asio::awaitable<void> {
    for (auto& rq : reqs) {
      auto [ec, r] = co_await fsys::async_serve_file(stream, rq, f, opts, asio::as_tuple(asio::use_awaitable));
      results.push_back({ec, r, {}});
      if (ec) break;
    }
    error_code ignored;
    if constexpr (requires { stream.socket(); })
      stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
    else
      stream.shutdown(tcp::socket::shutdown_send, ignored);
  };
  std::optional<beast::tcp_stream> timed;
  if constexpr (Timed) {
    timed.emplace(std::move(server_side));
    timed->expires_after(std::chrono::seconds(30));
    asio::co_spawn(ctx, body(*timed), asio::detached);
  } else {
    asio::co_spawn(ctx, body(server_side), asio::detached);
  }
  fsys::test::run(ctx);
  auto responses = client.get();
  BOOST_REQUIRE_EQUAL(responses.size(), results.size());
  for (std::size_t i = 0; i < results.size(); ++i) results[i].res = std::move(responses[i]);
  return results;
}

std::string as_string(const std::vector<std::byte>& v, std::size_t off = 0, std::size_t n = std::string::npos) {
  n = std::min(n, v.size() - off);
  return std::string(reinterpret_cast<const char*>(v.data()) + off, n);
}

struct fixture {
  temp_dir d;
  std::size_t size = 100000;
  std::vector<std::byte> data = pattern(size, 77);
  std::filesystem::path path = d.file("f");
  fixture() { fsys::test::write_file(path, data); }
  std::string last_modified() const {
    struct stat st {};
    ::stat(path.c_str(), &st);
    return fsys::detail::http_date(st.st_mtim.tv_sec);
  }
};

std::string header(const response& r, http::field f) { return std::string(r[f]); }

}  // namespace

BOOST_FIXTURE_TEST_CASE(get_sends_the_file_with_its_validators, fixture) {
  auto s = serve({make_request(http::verb::get, "/index.html")}, path);
  BOOST_REQUIRE_EQUAL(s.size(), 1u);
  BOOST_TEST(!s[0].ec, s[0].ec.message());
  BOOST_TEST(s[0].res.result() == http::status::ok);
  BOOST_TEST(s[0].res.body() == as_string(data));
  BOOST_TEST(header(s[0].res, http::field::content_length) == std::to_string(size));
  BOOST_TEST(header(s[0].res, http::field::content_type) == "text/html");
  BOOST_TEST(header(s[0].res, http::field::accept_ranges) == "bytes");
  BOOST_TEST(header(s[0].res, http::field::last_modified) == last_modified());
  const std::string etag = header(s[0].res, http::field::etag);
  BOOST_TEST(etag.size() > 2u);
  BOOST_TEST(etag.front() == '"');
  BOOST_TEST(etag.back() == '"');
  BOOST_TEST(s[0].result.status == http::status::ok);
  BOOST_TEST(s[0].result.body_bytes == size);
  BOOST_TEST(s[0].result.keep_alive);
  BOOST_TEST(s[0].res.keep_alive());
}

BOOST_FIXTURE_TEST_CASE(content_type_follows_the_extension, fixture) {
  auto s = serve({make_request(http::verb::head, "/style.CSS?v=3"), make_request(http::verb::head, "/a/b.png#x"),
                  make_request(http::verb::head, "/no-extension"), make_request(http::verb::head, "/dir.d/file"),
                  make_request(http::verb::head, "/x.json")},
                 path);
  BOOST_REQUIRE_EQUAL(s.size(), 5u);
  BOOST_TEST(header(s[0].res, http::field::content_type) == "text/css");
  BOOST_TEST(header(s[1].res, http::field::content_type) == "image/png");
  BOOST_TEST(header(s[2].res, http::field::content_type) == "application/octet-stream");
  BOOST_TEST(header(s[3].res, http::field::content_type) == "application/octet-stream");
  BOOST_TEST(header(s[4].res, http::field::content_type) == "application/json");
  fsys::serve_file_options opts;
  opts.content_type = "text/x-custom";
  opts.server = "test-server";
  auto o = serve({make_request(http::verb::head, "/a.html")}, path, opts);
  BOOST_TEST(header(o[0].res, http::field::content_type) == "text/x-custom");
  BOOST_TEST(header(o[0].res, http::field::server) == "test-server");
}

// HEAD: the head of a GET, no body; the next response on the connection
// parses, so no body byte was sent.
BOOST_FIXTURE_TEST_CASE(head_sends_the_head_only, fixture) {
  auto s = serve({make_request(http::verb::head, "/f.txt"), make_request(http::verb::get, "/f.txt")}, path);
  BOOST_REQUIRE_EQUAL(s.size(), 2u);
  BOOST_TEST(s[0].res.result() == http::status::ok);
  BOOST_TEST(header(s[0].res, http::field::content_length) == std::to_string(size));
  BOOST_TEST(s[0].result.body_bytes == 0u);
  BOOST_TEST(s[0].result.keep_alive);
  BOOST_TEST(s[1].res.body() == as_string(data));
  BOOST_TEST(header(s[0].res, http::field::etag) == header(s[1].res, http::field::etag));
}

BOOST_FIXTURE_TEST_CASE(single_range_gives_206, fixture) {
  auto s = serve({make_request(http::verb::get, "/f", {{http::field::range, "bytes=10-99"}}),
                  make_request(http::verb::get, "/f", {{http::field::range, "bytes=-100"}}),
                  make_request(http::verb::get, "/f", {{http::field::range, "bytes=99000-"}}),
                  make_request(http::verb::get, "/f", {{http::field::range, "bytes=0-0"}}),
                  make_request(http::verb::get, "/f", {{http::field::range, "bytes=99990-200000"}})},
                 path);
  BOOST_REQUIRE_EQUAL(s.size(), 5u);
  struct {
    std::size_t first, count;
  } want[] = {{10, 90}, {size - 100, 100}, {99000, size - 99000}, {0, 1}, {99990, 10}};
  for (std::size_t i = 0; i < 5; ++i) {
    BOOST_TEST_CONTEXT("range " << i) {
      BOOST_TEST(s[i].res.result() == http::status::partial_content);
      BOOST_TEST(header(s[i].res, http::field::content_range) ==
                 "bytes " + std::to_string(want[i].first) + "-" + std::to_string(want[i].first + want[i].count - 1) +
                     "/" + std::to_string(size));
      BOOST_TEST(s[i].res.body() == as_string(data, want[i].first, want[i].count));
      BOOST_TEST(s[i].result.body_bytes == want[i].count);
      BOOST_TEST(s[i].result.status == http::status::partial_content);
    }
  }
}

// A range starting at or past the end: 416 with the size; the connection goes on.
BOOST_FIXTURE_TEST_CASE(unsatisfiable_range_gives_416, fixture) {
  auto s = serve({make_request(http::verb::get, "/f", {{http::field::range, "bytes=" + std::to_string(size) + "-"}}),
                  make_request(http::verb::get, "/f", {{http::field::range, "bytes=-0"}}),
                  make_request(http::verb::get, "/f")},
                 path);
  BOOST_REQUIRE_EQUAL(s.size(), 3u);
  for (int i = 0; i < 2; ++i) {
    BOOST_TEST(s[i].res.result() == http::status::range_not_satisfiable);
    BOOST_TEST(header(s[i].res, http::field::content_range) == "bytes */" + std::to_string(size));
    BOOST_TEST(s[i].res.body().empty());
    BOOST_TEST(s[i].result.keep_alive);
  }
  BOOST_TEST(s[2].res.body() == as_string(data));
}

// Several ranges, another unit, a malformed value, a range on HEAD: the whole file, 200.
BOOST_FIXTURE_TEST_CASE(other_ranges_give_the_whole_file, fixture) {
  auto s = serve({make_request(http::verb::get, "/f", {{http::field::range, "bytes=0-10,20-30"}}),
                  make_request(http::verb::get, "/f", {{http::field::range, "items=0-10"}}),
                  make_request(http::verb::get, "/f", {{http::field::range, "bytes=abc"}}),
                  make_request(http::verb::get, "/f", {{http::field::range, "bytes=50-10"}})},
                 path);
  BOOST_REQUIRE_EQUAL(s.size(), 4u);
  for (auto& x : s) {
    BOOST_TEST(x.res.result() == http::status::ok);
    BOOST_TEST(x.res.body() == as_string(data));
  }
  fsys::serve_file_options no_ranges;
  no_ranges.ranges = false;
  auto n = serve({make_request(http::verb::get, "/f", {{http::field::range, "bytes=0-10"}})}, path, no_ranges);
  BOOST_TEST(n[0].res.result() == http::status::ok);
  BOOST_TEST(n[0].res.body() == as_string(data));
  BOOST_TEST((n[0].res.find(http::field::accept_ranges) == n[0].res.end()));
}

BOOST_FIXTURE_TEST_CASE(if_none_match_gives_304, fixture) {
  auto first = serve({make_request(http::verb::head, "/f")}, path);
  const std::string etag = header(first[0].res, http::field::etag);
  auto s = serve({make_request(http::verb::get, "/f", {{http::field::if_none_match, etag}}),
                  make_request(http::verb::get, "/f", {{http::field::if_none_match, "W/" + etag}}),
                  make_request(http::verb::get, "/f", {{http::field::if_none_match, "\"other\", " + etag}}),
                  make_request(http::verb::get, "/f", {{http::field::if_none_match, "*"}}),
                  make_request(http::verb::head, "/f", {{http::field::if_none_match, etag}}),
                  make_request(http::verb::get, "/f", {{http::field::if_none_match, "\"other\""}})},
                 path);
  BOOST_REQUIRE_EQUAL(s.size(), 6u);
  for (int i = 0; i < 5; ++i) {
    BOOST_TEST_CONTEXT("request " << i) {
      BOOST_TEST(s[i].res.result() == http::status::not_modified);
      BOOST_TEST(s[i].res.body().empty());
      BOOST_TEST(header(s[i].res, http::field::etag) == etag);
      BOOST_TEST(s[i].result.body_bytes == 0u);
      BOOST_TEST(s[i].result.keep_alive);
    }
  }
  BOOST_TEST(s[5].res.result() == http::status::ok);
  BOOST_TEST(s[5].res.body() == as_string(data));
}

// The ETag follows the file: a new modification time makes the old one stale.
BOOST_FIXTURE_TEST_CASE(etag_changes_with_the_file, fixture) {
  auto first = serve({make_request(http::verb::head, "/f")}, path);
  const std::string etag = header(first[0].res, http::field::etag);
  timespec times[2] = {{0, UTIME_OMIT}, {1000000000, 123}};
  BOOST_REQUIRE(::utimensat(AT_FDCWD, path.c_str(), times, 0) == 0);
  auto s = serve({make_request(http::verb::get, "/f", {{http::field::if_none_match, etag}})}, path);
  BOOST_TEST(s[0].res.result() == http::status::ok);
  BOOST_TEST(header(s[0].res, http::field::etag) != etag);
  BOOST_TEST(header(s[0].res, http::field::last_modified) == "Sun, 09 Sep 2001 01:46:40 GMT");
}

BOOST_FIXTURE_TEST_CASE(if_modified_since_gives_304, fixture) {
  const std::string lm = last_modified();
  auto t = fsys::detail::parse_http_date(lm);
  BOOST_REQUIRE(t);
  auto s = serve({make_request(http::verb::get, "/f", {{http::field::if_modified_since, lm}}),
                  make_request(http::verb::get, "/f", {{http::field::if_modified_since, fsys::detail::http_date(*t + 60)}}),
                  make_request(http::verb::get, "/f", {{http::field::if_modified_since, fsys::detail::http_date(*t - 1)}}),
                  make_request(http::verb::get, "/f", {{http::field::if_modified_since, "not a date"}}),
                  // If-None-Match decides when both are present (RFC 9110 13.2.2).
                  make_request(http::verb::get, "/f",
                               {{http::field::if_modified_since, lm}, {http::field::if_none_match, "\"other\""}})},
                 path);
  BOOST_REQUIRE_EQUAL(s.size(), 5u);
  BOOST_TEST(s[0].res.result() == http::status::not_modified);
  BOOST_TEST(s[1].res.result() == http::status::not_modified);
  BOOST_TEST(s[2].res.result() == http::status::ok);
  BOOST_TEST(s[2].res.body() == as_string(data));
  BOOST_TEST(s[3].res.result() == http::status::ok);
  BOOST_TEST(s[4].res.result() == http::status::ok);
  BOOST_TEST(s[4].res.body() == as_string(data));
}

BOOST_FIXTURE_TEST_CASE(if_range_applies_the_range_only_to_the_current_file, fixture) {
  auto first = serve({make_request(http::verb::head, "/f")}, path);
  const std::string etag = header(first[0].res, http::field::etag);
  const std::string lm = last_modified();
  auto s = serve({make_request(http::verb::get, "/f", {{http::field::range, "bytes=0-9"}, {http::field::if_range, etag}}),
                  make_request(http::verb::get, "/f", {{http::field::range, "bytes=0-9"}, {http::field::if_range, lm}}),
                  make_request(http::verb::get, "/f",
                               {{http::field::range, "bytes=0-9"}, {http::field::if_range, "\"stale\""}}),
                  make_request(http::verb::get, "/f",
                               {{http::field::range, "bytes=0-9"},
                                {http::field::if_range, "Mon, 01 Jan 2001 00:00:00 GMT"}})},
                 path);
  BOOST_REQUIRE_EQUAL(s.size(), 4u);
  BOOST_TEST(s[0].res.result() == http::status::partial_content);
  BOOST_TEST(s[0].res.body() == as_string(data, 0, 10));
  BOOST_TEST(s[1].res.result() == http::status::partial_content);
  BOOST_TEST(s[2].res.result() == http::status::ok);
  BOOST_TEST(s[2].res.body() == as_string(data));
  BOOST_TEST(s[3].res.result() == http::status::ok);
}

BOOST_FIXTURE_TEST_CASE(other_methods_give_405, fixture) {
  auto s = serve({make_request(http::verb::delete_, "/f"), make_request(http::verb::get, "/f")}, path);
  BOOST_REQUIRE_EQUAL(s.size(), 2u);
  BOOST_TEST(s[0].res.result() == http::status::method_not_allowed);
  BOOST_TEST(header(s[0].res, http::field::allow) == "GET, HEAD");
  BOOST_TEST(s[0].result.keep_alive);
  BOOST_TEST(s[1].res.body() == as_string(data));
}

BOOST_AUTO_TEST_CASE(a_directory_gives_403) {
  temp_dir d;
  auto s = serve({make_request(http::verb::get, "/")}, d.path());
  BOOST_REQUIRE_EQUAL(s.size(), 1u);
  BOOST_TEST(s[0].res.result() == http::status::forbidden);
  BOOST_TEST(s[0].result.status == http::status::forbidden);
}

// HTTP/1.0 without keep-alive, and Connection: close: the result says the
// connection ends; HTTP/1.0 with keep-alive keeps it.
BOOST_FIXTURE_TEST_CASE(keep_alive_follows_the_request, fixture) {
  auto closing = serve({make_request(http::verb::get, "/f", {{http::field::connection, "close"}})}, path);
  BOOST_TEST(!closing[0].result.keep_alive);
  BOOST_TEST(!closing[0].res.keep_alive());
  auto old = serve({make_request(http::verb::get, "/f", {}, 10)}, path);
  BOOST_TEST(!old[0].result.keep_alive);
  BOOST_TEST(old[0].res.version() == 10u);
  BOOST_TEST(old[0].res.body() == as_string(data));
  auto old_kept = serve({make_request(http::verb::get, "/f", {{http::field::connection, "keep-alive"}}, 10)}, path);
  BOOST_TEST(old_kept[0].result.keep_alive);
  BOOST_TEST(old_kept[0].res.keep_alive());
}

// Over a beast::tcp_stream (with a timeout set): the same responses.
BOOST_FIXTURE_TEST_CASE(over_a_tcp_stream, fixture) {
  auto s = serve<true>({make_request(http::verb::get, "/f.bin"),
                        make_request(http::verb::get, "/f.bin", {{http::field::range, "bytes=1000-1999"}})},
                       path);
  BOOST_REQUIRE_EQUAL(s.size(), 2u);
  BOOST_TEST(s[0].res.body() == as_string(data));
  BOOST_TEST(s[1].res.result() == http::status::partial_content);
  BOOST_TEST(s[1].res.body() == as_string(data, 1000, 1000));
}
