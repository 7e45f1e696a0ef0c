// fsys-http-server (examples/http_server) started on an ephemeral port and
// driven by a raw-socket client: a generated tree fetched whole and by
// ranges byte for byte, HEAD, 304, 416, pipelined keep-alive requests,
// traversal attempts, no descriptor leaked by clients that disconnect
// mid-body; and as an internet-facing server, with a small descriptor limit:
// idle, half-sent and non-reading clients (timeouts, the connection limit),
// the accept loop at the descriptor limit, request bodies, FIFOs. Runs once
// per backend (the server picks its backend itself). HTTPS (--tls-cert,
// --tls-key) is checked with curl.
#include <boost/test/unit_test.hpp>

#include "support/temp_dir.hpp"
#if FSYS_TEST_HAVE_OPENSSL
#include "support/tls_cert.hpp"
#endif

#include <fsys/fsys.hpp>

#include <boost/asio/io_context.hpp>

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

namespace fs = std::filesystem;
using fsys::test::pattern;
using fsys::test::temp_dir;

namespace {

struct server_options {
  std::vector<std::string> args;  // more arguments
  rlim_t nofile = 0;              // RLIMIT_NOFILE of the server (0: the test's)
  fs::path err;                   // a file that takes the server's stderr (or none)
};

// The server process: started with --port 0, its port read from the
// "listening on A:P" line it prints; SIGTERM at the end, which must stop it
// within 5 s (then SIGKILL, and the test fails).
class server {
 public:
  explicit server(const fs::path& root, bool blocking = false) : server(root, blocking ? "--blocking-file-body" : nullptr) {}
  // `option`: one more argument (or none); `err`: a file that takes the
  // server's stderr (or none).
  server(const fs::path& root, const char* option, const fs::path& err = {})
      : server(root, server_options{option ? std::vector<std::string>{option} : std::vector<std::string>{}, 0, err}) {}
  server(const fs::path& root, const server_options& o) {
    std::vector<std::string> args = {FSYS_HTTP_SERVER, "--root", root.string(), "--port", "0"};
    args.insert(args.end(), o.args.begin(), o.args.end());
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const fs::path& err = o.err;
    int p[2];
    BOOST_REQUIRE(::pipe(p) == 0);
    pid_ = ::fork();
    BOOST_REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      ::dup2(p[1], 1);
      ::close(p[0]);
      ::close(p[1]);
      if (!err.empty()) {
        int fd = ::open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0) ::_exit(126);
        ::dup2(fd, 2);
      }
      if (o.nofile) {
        rlimit rl{o.nofile, o.nofile};
        if (::setrlimit(RLIMIT_NOFILE, &rl) != 0) ::_exit(125);
      }
      ::execv(FSYS_HTTP_SERVER, argv.data());
      ::_exit(127);
    }
    ::close(p[1]);
    std::string line;
    char c;
    for (;;) {
      const ssize_t r = ::read(p[0], &c, 1);
      if (r < 0 && errno == EINTR) continue;
      if (r != 1 || c == '\n') break;
      line.push_back(c);
    }
    ::close(p[0]);
    auto colon = line.rfind(':');
    BOOST_REQUIRE_MESSAGE(line.rfind("listening on ", 0) == 0 && colon != std::string::npos, "server said: " << line);
    port_ = static_cast<unsigned short>(std::stoul(line.substr(colon + 1)));
  }
  ~server() {
    if (!exited_) ::kill(pid_, SIGTERM);
    int st = 0;
    bool stopped = exited_;
    for (int i = 0; i < 500 && !stopped; ++i) {  // 5 s
      if (::waitpid(pid_, &st, WNOHANG) == pid_) stopped = true;
      else std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (!stopped) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &st, 0);
    }
    BOOST_TEST(stopped, "the server stopped on SIGTERM");
  }
  unsigned short port() const { return port_; }
  pid_t pid() const { return pid_; }
  // Whether the process still runs (false once it has exited or died).
  bool alive() {
    if (exited_) return false;
    int st = 0;
    if (::waitpid(pid_, &st, WNOHANG) == pid_) {
      exited_ = true;
      BOOST_TEST_MESSAGE("the server ended: " << (WIFSIGNALED(st) ? "signal " : "exit ")
                                              << (WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st)));
    }
    return !exited_;
  }
  // The CPU time the process has used (user + system), in seconds.
  double cpu_seconds() const {
    std::ifstream in("/proc/" + std::to_string(pid_) + "/stat");
    std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::istringstream fields(all.substr(all.rfind(')') + 2));  // from field 3 (the state) on
    std::vector<std::string> f;
    for (std::string x; fields >> x;) f.push_back(x);
    BOOST_REQUIRE(f.size() > 12);
    return static_cast<double>(std::stoull(f[11]) + std::stoull(f[12])) / static_cast<double>(::sysconf(_SC_CLK_TCK));
  }

 private:
  pid_t pid_ = -1;
  bool exited_ = false;
  unsigned short port_ = 0;
};

struct response {
  int status = 0;
  std::map<std::string, std::string> headers;  // names in lower case
  std::string body;
  std::string header(const std::string& n) const {
    auto it = headers.find(n);
    return it == headers.end() ? std::string() : it->second;
  }
};

// A blocking client connection with just enough HTTP/1.1 to check responses.
class client {
 public:
  // `timeout_ms`: how long a read waits for the server.
  explicit client(unsigned short port, int rcvbuf = 0, int timeout_ms = 10000) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    BOOST_REQUIRE(fd_ >= 0);
    if (rcvbuf) ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    BOOST_REQUIRE(::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  }
  ~client() { close(); }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  void send(const std::string& s) {
    std::size_t done = 0;
    while (done < s.size()) {
      ssize_t r = ::send(fd_, s.data() + done, s.size() - done, MSG_NOSIGNAL);
      if (r < 0 && errno == EINTR) continue;
      BOOST_REQUIRE(r > 0);
      done += static_cast<std::size_t>(r);
    }
  }
  // Reads one response; `head`: no body follows whatever Content-Length says.
  response read(bool head = false) {
    response res;
    std::size_t end;
    while ((end = buf_.find("\r\n\r\n")) == std::string::npos) BOOST_REQUIRE_MESSAGE(fill(), "connection closed in a header");
    std::string hdr = buf_.substr(0, end);
    buf_.erase(0, end + 4);
    auto line_end = hdr.find("\r\n");
    std::string status_line = hdr.substr(0, line_end);
    BOOST_REQUIRE(status_line.rfind("HTTP/1.1 ", 0) == 0);
    res.status = std::stoi(status_line.substr(9, 3));
    std::size_t pos = line_end == std::string::npos ? hdr.size() : line_end + 2;
    while (pos < hdr.size()) {
      auto e = hdr.find("\r\n", pos);
      if (e == std::string::npos) e = hdr.size();
      std::string l = hdr.substr(pos, e - pos);
      auto c = l.find(':');
      std::string name = l.substr(0, c);
      for (auto& ch : name) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      std::string value = l.substr(c + 1);
      while (!value.empty() && value[0] == ' ') value.erase(0, 1);
      res.headers[name] = value;
      pos = e + 2;
    }
    if (head || res.status == 304) return res;
    std::size_t len = res.headers.count("content-length") ? std::stoull(res.headers["content-length"]) : 0;
    while (buf_.size() < len) BOOST_REQUIRE_MESSAGE(fill(), "connection closed in a body");
    res.body = buf_.substr(0, len);
    buf_.erase(0, len);
    return res;
  }
  // Whether the server closed the connection (after what was read).
  bool at_eof() { return buf_.empty() && !fill(); }
  // Sends what it can of `s`: false when the connection is gone.
  bool try_send(const std::string& s) { return ::send(fd_, s.data(), s.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(s.size()); }
  // Waits up to `ms` for the server to end the connection (end of stream
  // or reset; what it sent before is read and dropped): true if it did.
  bool ended_within(int ms) {
    auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now()).count();
      if (left <= 0) return false;
      pollfd p{fd_, POLLIN, 0};
      int r = ::poll(&p, 1, static_cast<int>(left));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) return false;
      char b[65536];
      ssize_t n = ::recv(fd_, b, sizeof b, MSG_DONTWAIT);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) return true;
      total_read_ += n > 0 ? static_cast<std::size_t>(n) : 0;
    }
  }
  // Waits up to `ms` for bytes or the end of the connection, reading
  // nothing: true if either came.
  bool readable_within(int ms) {
    pollfd p{fd_, POLLIN, 0};
    int r;
    do r = ::poll(&p, 1, ms);
    while (r < 0 && errno == EINTR);
    return r > 0;
  }
  // Waits up to `ms` for the server to reset or shut down the connection,
  // without reading (as a client that stopped reading): true if it did.
  bool hung_up_within(int ms) {
    pollfd p{fd_, POLLRDHUP, 0};
    int r;
    do r = ::poll(&p, 1, ms);
    while (r < 0 && errno == EINTR);
    return r > 0 && (p.revents & (POLLERR | POLLHUP | POLLRDHUP));
  }
  // Bytes read and dropped by ended_within.
  std::size_t total_read() const { return total_read_; }
  // Reads up to n bytes of whatever comes (no parsing).
  std::size_t read_some(std::size_t n) {
    std::string b(n, '\0');
    ssize_t r;
    do r = ::recv(fd_, b.data(), n, 0);
    while (r < 0 && errno == EINTR);
    return r > 0 ? static_cast<std::size_t>(r) : 0;
  }

 private:
  bool fill() {
    char b[65536];
    ssize_t r;
    // (EINTR: Boost.Test's monitor handles signals such as SIGCHLD.)
    do r = ::recv(fd_, b, sizeof b, 0);
    while (r < 0 && errno == EINTR);
    if (r <= 0) return false;
    buf_.append(b, static_cast<std::size_t>(r));
    return true;
  }
  int fd_ = -1;
  std::string buf_;
  std::size_t total_read_ = 0;
};

std::string get(const std::string& target, const std::string& extra = "", const char* method = "GET") {
  return std::string(method) + " " + target + " HTTP/1.1\r\nHost: t\r\n" + extra + "\r\n";
}

std::string as_string(const std::vector<std::byte>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size());
}

int count_fds(pid_t pid) {
  int n = 0;
  DIR* d = ::opendir(("/proc/" + std::to_string(pid) + "/fd").c_str());
  if (!d) return -1;
  while (auto* e = ::readdir(d))
    if (e->d_name[0] != '.') ++n;
  ::closedir(d);
  return n;
}

// The tree: sizes around page and buffer boundaries, in nested directories.
std::map<std::string, std::string> make_tree(const fs::path& root) {
  std::map<std::string, std::string> files;
  const std::size_t sizes[] = {0, 1, 100, 4095, 4096, 4097, 65535, 65536, 65537, 262145, 1024 * 1024 + 3, 3 * 1024 * 1024};
  int i = 0;
  for (auto s : sizes) {
    std::string rel = (i % 3 == 0 ? "" : i % 3 == 1 ? "a/" : "a/b c/") + std::to_string(s) + ".bin";
    fs::create_directories((root / rel).parent_path());
    auto data = pattern(s, static_cast<std::uint64_t>(i) + 1);
    fsys::test::write_file(root / rel, data);
    files[rel] = as_string(data);
    ++i;
  }
  fsys::test::write_file(root / "index.html", pattern(10, 99));
  files["index.html"] = as_string(pattern(10, 99));
  return files;
}

// The tree's relative path of the file named `name`.
std::string rel_of(const std::map<std::string, std::string>& files, const std::string& name) {
  for (auto& [rel, data] : files)
    if (rel == name || (rel.size() > name.size() && rel.compare(rel.size() - name.size() - 1, std::string::npos, "/" + name) == 0))
      return rel;
  BOOST_FAIL("no " << name << " in the tree");
  return {};
}

std::string url_of(const std::string& rel) {
  std::string u = "/";
  for (char c : rel) u += c == ' ' ? std::string("%20") : std::string(1, c);
  return u;
}

}  // namespace

BOOST_AUTO_TEST_CASE(tree_whole_and_ranges) {
  temp_dir d;
  fs::create_directory(d.file("root"));
  auto files = make_tree(d.file("root"));
  server srv(d.file("root"));
  client c(srv.port());
  for (auto& [rel, data] : files) {
    c.send(get(url_of(rel)));
    auto r = c.read();
    BOOST_TEST_CONTEXT(rel) {
      BOOST_TEST(r.status == 200);
      BOOST_TEST(r.body.size() == data.size());
      BOOST_TEST((r.body == data));
      BOOST_TEST(r.header("accept-ranges") == "bytes");
      BOOST_TEST(!r.header("last-modified").empty());
    }
    if (data.empty()) continue;
    const std::uint64_t n = data.size();
    struct rg {
      std::string spec;
      std::uint64_t first, count;
    };
    std::vector<rg> ranges = {{"0-0", 0, 1}, {"-1", n - 1, 1}, {std::to_string(n / 2) + "-", n / 2, n - n / 2}};
    if (n > 10) ranges.push_back({"3-" + std::to_string(n - 3), 3, n - 5});
    ranges.push_back({"0-" + std::to_string(n * 2), 0, n});  // last-byte-pos past the end is clipped
    for (auto& g : ranges) {
      c.send(get(url_of(rel), "Range: bytes=" + g.spec + "\r\n"));
      auto rr = c.read();
      BOOST_TEST_CONTEXT(rel << " bytes=" << g.spec) {
        BOOST_TEST(rr.status == 206);
        BOOST_TEST(rr.header("content-range") == "bytes " + std::to_string(g.first) + "-" +
                                                    std::to_string(g.first + g.count - 1) + "/" + std::to_string(n));
        BOOST_TEST((rr.body == data.substr(g.first, g.count)));
      }
    }
  }
  // "/" serves index.html; the types follow the extension.
  c.send(get("/"));
  auto r = c.read();
  BOOST_TEST(r.status == 200);
  BOOST_TEST(r.header("content-type") == "text/html");
  BOOST_TEST((r.body == files["index.html"]));
}

BOOST_AUTO_TEST_CASE(head_304_416_405_400) {
  temp_dir d;
  fs::create_directory(d.file("root"));
  auto files = make_tree(d.file("root"));
  server srv(d.file("root"));
  client c(srv.port());
  const std::string f = rel_of(files, "65537.bin"), u = url_of(f);
  c.send(get(u, "", "HEAD"));
  auto h = c.read(true);
  BOOST_TEST(h.status == 200);
  BOOST_TEST(h.header("content-length") == "65537");
  // The connection goes on: no body was sent after the HEAD header.
  c.send(get(u, "If-Modified-Since: " + h.header("last-modified") + "\r\n"));
  auto nm = c.read();
  BOOST_TEST(nm.status == 304);
  c.send(get(u, "If-Modified-Since: Mon, 01 Jan 2001 00:00:00 GMT\r\n"));
  auto m = c.read();
  BOOST_TEST(m.status == 200);
  BOOST_TEST((m.body == files[f]));
  c.send(get(u, "Range: bytes=65537-\r\n"));
  auto r416 = c.read();
  BOOST_TEST(r416.status == 416);
  BOOST_TEST(r416.header("content-range") == "bytes */65537");
  c.send(get(u, "", "POST"));
  auto r405 = c.read();
  BOOST_TEST(r405.status == 405);
  BOOST_TEST(r405.header("allow") == "GET, HEAD");
  c.send(get(url_of(rel_of(files, "100.bin"))));
  BOOST_TEST((c.read().body == files[rel_of(files, "100.bin")]));
  c.send("GARBAGE\r\n\r\n");
  BOOST_TEST(c.read().status == 400);
  BOOST_TEST(c.at_eof());  // 400 closes the connection
}

BOOST_AUTO_TEST_CASE(pipelined_keep_alive) {
  temp_dir d;
  fs::create_directory(d.file("root"));
  auto files = make_tree(d.file("root"));
  server srv(d.file("root"));
  client c(srv.port());
  std::vector<std::string> order;
  for (auto n : {"4096.bin", "1048579.bin", "4097.bin", "index.html", "1.bin"}) order.push_back(rel_of(files, n));
  std::string all;
  for (auto& f : order) all += get(url_of(f));
  all += get(url_of(rel_of(files, "3145728.bin")), "Range: bytes=10-19\r\n");
  all += get("/missing");
  all += get(url_of(rel_of(files, "4095.bin")), "Connection: close\r\n");
  c.send(all);
  for (auto& f : order) {
    auto r = c.read();
    BOOST_TEST(r.status == 200);
    BOOST_TEST((r.body == files[f]), f);
  }
  auto rr = c.read();
  BOOST_TEST(rr.status == 206);
  BOOST_TEST((rr.body == files[rel_of(files, "3145728.bin")].substr(10, 10)));
  BOOST_TEST(c.read().status == 404);
  auto last = c.read();
  BOOST_TEST((last.body == files[rel_of(files, "4095.bin")]));
  BOOST_TEST(c.at_eof());
}

BOOST_AUTO_TEST_CASE(traversal_refused) {
  temp_dir d;
  fs::create_directory(d.file("root"));
  fs::create_directory(d.file("root/sub"));
  fsys::test::write_file(d.file("secret"), pattern(64, 1));
  fsys::test::write_file(d.file("root/sub/ok.txt"), pattern(64, 2));
  fs::create_symlink(d.file("secret"), d.file("root/abs_link"));
  fs::create_symlink("../secret", d.file("root/rel_link"));
  fs::create_symlink("../sub/ok.txt", d.file("root/sub/inside_link"));
  fs::create_symlink("/proc/self/root/etc/passwd", d.file("root/magic"));
  server srv(d.file("root"));
  client c(srv.port());
  for (std::string t : {"/../secret", "/sub/../../secret", "/%2e%2e/secret", "/%2E%2E/secret", "/sub/%2e%2e/%2e%2e/secret",
                        "/..%2fsecret", "//etc/passwd", "/%2fetc/passwd", "/abs_link", "/rel_link", "/magic", "/sub"}) {
    c.send(get(t));
    auto r = c.read();
    BOOST_TEST(r.status == 403, t << " gave " << r.status);
    BOOST_TEST(r.body.find(as_string(pattern(64, 1))) == std::string::npos);
  }
  c.send(get("/sub/inside_link"));
  auto ok = c.read();
  BOOST_TEST(ok.status == 200);
  BOOST_TEST((ok.body == as_string(pattern(64, 2))));
  c.send(get("/no/such"));
  BOOST_TEST(c.read().status == 404);
  c.send(get("/%zz"));
  BOOST_TEST(c.read().status == 400);
}

BOOST_AUTO_TEST_CASE(disconnect_mid_body_leaks_no_fd) {
  temp_dir d;
  fs::create_directory(d.file("root"));
  fsys::test::write_file(d.file("root/big"), pattern(32 * 1024 * 1024, 4));
  server srv(d.file("root"));
  {
    client warm(srv.port());  // let the server's loop reach its steady state
    warm.send(get("/big", "Range: bytes=0-9\r\n"));
    BOOST_TEST(warm.read().status == 206);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  int before = count_fds(srv.pid());
  BOOST_REQUIRE(before > 0);
  for (int i = 0; i < 20; ++i) {
    client c(srv.port(), 8192);
    c.send(get("/big"));
    BOOST_TEST(c.read_some(1000) > 0u);  // the body has started
    c.close();
  }
  int after = -1;
  for (int i = 0; i < 100; ++i) {  // the server notices the resets asynchronously
    after = count_fds(srv.pid());
    if (after == before) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  BOOST_TEST(after == before);
  client c(srv.port());  // and it still serves
  c.send(get("/big", "Range: bytes=-3\r\n"));
  BOOST_TEST(c.read().status == 206);
}

BOOST_AUTO_TEST_CASE(blocking_file_body_mode) {
  temp_dir d;
  fs::create_directory(d.file("root"));
  auto files = make_tree(d.file("root"));
  fs::create_symlink("../", d.file("root/up"));
  server srv(d.file("root"), true);
  client c(srv.port());
  for (auto& [rel, data] : files) {
    c.send(get(url_of(rel)));
    auto r = c.read();
    BOOST_TEST(r.status == 200);
    BOOST_TEST((r.body == data), rel);
  }
  c.send(get("/up/root/index.html"));
  BOOST_TEST(c.read().status == 403);
  c.send(get(url_of(rel_of(files, "4096.bin")), "", "HEAD"));
  BOOST_TEST(c.read(true).header("content-length") == "4096");
}

// --alloc-report: the server counts heap allocations per request. Once the
// connection is warm, sending the head and the body (async_send_file)
// allocates nothing, for a small file and for one sent in several
// sendfile chunks; the whole file path (path, open, stat, close) allocates
// nothing either, for a path of one segment or of several (fsys takes the
// path as a view, never as a parsed std::filesystem::path); Beast's parser allocates (which also
// shows that the counter counts). The bounds hold on the io_uring backend
// (zero copy); on the psync backend (FSYS_DISABLE_IO_URING=1, which the
// server inherits, or no io_uring) the body goes through a buffer and the
// workers, and only the report itself is checked.
BOOST_AUTO_TEST_CASE(allocations_per_request) {
  bool ring = false;
  {
    boost::asio::io_context ctx;
    ring = boost::asio::use_service<fsys::uring_service>(ctx).active_backend() == fsys::backend::io_uring;
  }
  BOOST_TEST_MESSAGE("server backend: " << (ring ? "io_uring" : "psync"));
  temp_dir d;
  fs::create_directory(d.file("root"));
  fsys::test::write_file(d.file("root/small"), pattern(4096, 1));
  fsys::test::write_file(d.file("root/large"), pattern(1024 * 1024, 2));
  fs::create_directories(d.file("root/a/b"));
  fsys::test::write_file(d.file("root/a/b/nested"), pattern(4096, 3));
  {
    server srv(d.file("root"), "--alloc-report", d.file("err"));
    client c(srv.port());
    for (int i = 0; i < 20; ++i) {
      // A one-segment path, a large file, and a path of three segments.
      c.send(get(i % 3 == 0 ? "/small" : i % 3 == 1 ? "/large" : "/a/b/nested"));
      auto r = c.read();
      BOOST_REQUIRE_EQUAL(r.status, 200);
      BOOST_REQUIRE_EQUAL(r.body.size(), i % 3 == 1 ? 1024u * 1024u : 4096u);
    }
    c.send(get("/small", "Range: bytes=10-99\r\n"));
    BOOST_REQUIRE_EQUAL(c.read().status, 206);
    c.close();
    // The server has written its line for every request once the client
    // has read the response; wait for the last one.
    for (int i = 0; i < 100; ++i) {
      std::ifstream in(d.file("err"));
      std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      if (std::count(all.begin(), all.end(), '\n') >= 21) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  std::ifstream in(d.file("err"));
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    unsigned long long parse = 0, file = 0, send = 0;
    BOOST_REQUIRE_MESSAGE(std::sscanf(line.c_str(), "allocations: parse %llu file %llu send %llu", &parse, &file, &send) == 3,
                          "server said: " << line);
    BOOST_TEST_MESSAGE("request " << n << ": parse " << parse << " file " << file << " send " << send);
    BOOST_TEST(parse > 0u);
    if (ring && n >= 4) {  // warm: Asio's recycled operation memory and the session's buffers exist
      BOOST_TEST_CONTEXT("request " << n) {
        BOOST_TEST(send == 0u);
        // fsys recycles its open/stat/close blocks (fs_args, file handle)
        // per thread: the file path allocates nothing once warm. Under
        // AddressSanitizer fsys does not recycle them (so that a use after
        // free of one is reported): those two blocks, and nothing else.
        BOOST_TEST(file == (fsys::detail::recycle_blocks ? 0u : 2u));
      }
    }
    ++n;
  }
  BOOST_TEST(n == 21);
}

// ---- The server as an internet-facing server (docs/http.md, "Timeouts and
// limits"). Each runs the server with RLIMIT_NOFILE 64 where descriptors
// matter, and bounds every wait.

namespace {

constexpr rlim_t small_nofile = 64;

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

fs::path small_root(const temp_dir& d) {
  fs::create_directory(d.file("root"));
  fsys::test::write_file(d.file("root/index.html"), pattern(100, 7));
  return d.file("root");
}

// Opens `n` connections to the server: every other one sends a complete
// request (then stays open, idle in keep-alive), the others send nothing.
std::vector<std::unique_ptr<client>> idle_clients(unsigned short port, int n) {
  std::vector<std::unique_ptr<client>> v;
  for (int i = 0; i < n; ++i) {
    v.push_back(std::make_unique<client>(port));
    if (i % 2) v.back()->try_send(get("/index.html"));
  }
  return v;
}

// Waits until each client of `idle_clients` that sent a request has been
// answered (or closed to make room for a later one), so that the
// connections the server holds are all idle, none answering a request:
// under load, on the psync backend, an answer can take long enough for a new
// client to find every connection busy (a 503). Only where the server
// accepts every connection (a connection limit below the descriptor limit).
void wait_until_answered(const std::vector<std::unique_ptr<client>>& v) {
  for (std::size_t i = 1; i < v.size(); i += 2) BOOST_TEST(v[i]->readable_within(10000));
  // The answered sessions go back to waiting right after their last write.
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
}

}  // namespace

// 70 idle connections with a limit of 64 descriptors: the server keeps its
// connection limit below the descriptor limit, closes the oldest idle
// connection for a new one, and a fresh client is served within 1 s. With
// one loop and with two (each with its own listener and limit).
BOOST_AUTO_TEST_CASE(idle_connections_do_not_lock_out_a_new_client) {
  for (const char* threads : {"1", "2"}) {
    BOOST_TEST_CONTEXT("--threads " << threads) {
      temp_dir d;
      server srv(small_root(d), server_options{{"--threads", threads}, small_nofile, {}});
      auto idle = idle_clients(srv.port(), 70);
      wait_until_answered(idle);
      auto t0 = std::chrono::steady_clock::now();
      client c(srv.port(), 0, 2000);
      c.send(get("/index.html"));
      auto r = c.read();
      BOOST_TEST(r.status == 200);
      BOOST_TEST(seconds_since(t0) < 1.0);
      BOOST_TEST((r.body == as_string(pattern(100, 7))));
      BOOST_TEST(count_fds(srv.pid()) < static_cast<int>(small_nofile));
    }
  }
}

// Connections that send half a request head and then nothing: the header
// timeout closes each (the first request's from its accept, a later one's
// from its first byte), and while they hold every connection a new client
// is refused at once with 503 rather than left without an answer; once they
// are closed, a new client is served.
BOOST_AUTO_TEST_CASE(header_timeout_closes_half_requests) {
  temp_dir d;
  server srv(small_root(d), server_options{{"--header-timeout", "1"}, small_nofile, {}});
  {
    client c(srv.port());
    auto t0 = std::chrono::steady_clock::now();
    c.send("GET /index.html HTTP/1.1\r\nHo");
    BOOST_TEST(c.ended_within(3000));
    BOOST_TEST(seconds_since(t0) > 0.8);
  }
  {
    client c(srv.port());  // a later request of a kept-alive connection
    c.send(get("/index.html"));
    BOOST_TEST(c.read().status == 200);
    c.send("GET /index.html HTTP/1.1\r\n");
    auto t0 = std::chrono::steady_clock::now();
    BOOST_TEST(c.ended_within(3000));
    BOOST_TEST(seconds_since(t0) > 0.8);
  }
  std::vector<std::unique_ptr<client>> half;
  for (int i = 0; i < 70; ++i) {
    half.push_back(std::make_unique<client>(srv.port()));
    half.back()->try_send("GET /index.html HTTP/1.1\r\nHost: t\r\n");
  }
  {
    // An answer at once: 503 while every connection holds a head (200 if
    // one was still idle, its head not yet read, and was closed for it).
    auto t0 = std::chrono::steady_clock::now();
    client c(srv.port(), 0, 2000);
    c.send(get("/index.html"));
    auto r = c.read();
    BOOST_TEST((r.status == 503 || r.status == 200), r.status);
    BOOST_TEST(seconds_since(t0) < 1.0);
  }
  for (auto& h : half) BOOST_TEST(h->ended_within(3000));
  client c(srv.port(), 0, 2000);
  c.send(get("/index.html"));
  BOOST_TEST(c.read().status == 200);
}

// The keep-alive timeout closes a connection idle after its response.
BOOST_AUTO_TEST_CASE(keepalive_timeout_closes_idle_connections) {
  temp_dir d;
  server srv(small_root(d), server_options{{"--keepalive-timeout", "1"}, 0, {}});
  client c(srv.port());
  c.send(get("/index.html"));
  BOOST_TEST(c.read().status == 200);
  auto t0 = std::chrono::steady_clock::now();
  BOOST_TEST(c.ended_within(3000));
  BOOST_TEST(seconds_since(t0) > 0.8);
}

// A client that stops reading a large body: the send timeout ends the
// connection (reset: its unsent data would otherwise wait for a peer that
// reads nothing), while one that reads slowly but steadily keeps it.
BOOST_AUTO_TEST_CASE(send_timeout_closes_a_client_that_stops_reading) {
  temp_dir d;
  fs::create_directory(d.file("root"));
  const std::size_t big = 32 * 1024 * 1024;
  fsys::test::write_file(d.file("root/big"), pattern(big, 4));
  server srv(d.file("root"), server_options{{"--send-timeout", "1"}, 0, {}});
  {
    client slow(srv.port(), 8192);
    slow.send(get("/big"));
    // 2.5 s of reading 64 KiB every 100 ms (the test's pace): progress,
    // so no timeout.
    std::size_t got = 0;
    for (int i = 0; i < 25; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      got += slow.read_some(65536);
    }
    BOOST_TEST(got > 0u);
    BOOST_TEST(!slow.hung_up_within(0));
    BOOST_TEST(slow.read_some(65536) > 0u);
  }
  client stalled(srv.port(), 8192);
  stalled.send(get("/big"));
  BOOST_TEST(stalled.read_some(1000) > 0u);  // the body has started; no more is read
  auto t0 = std::chrono::steady_clock::now();
  BOOST_TEST(stalled.hung_up_within(5000));
  BOOST_TEST(seconds_since(t0) > 0.8);
  client c(srv.port());
  c.send(get("/big", "Range: bytes=-3\r\n"));
  BOOST_TEST(c.read().status == 206);
}

// The stderr of a server kept without a free descriptor: empty, except in
// a build with UBSan, whose vptr check cannot work then (it probes memory
// through a pipe) and reports every object it checks as one with an invalid
// vptr. Those reports, and only those, are allowed: any other (AddressSanitizer,
// another UBSan check) fails the test.
void check_emfile_stderr(const fs::path& err) {
  std::ifstream in(err);
  int reports = 0, invalid_vptr = 0;
  for (std::string line; std::getline(in, line);) {
    if (line.find("runtime error") != std::string::npos) {
      ++reports;
      BOOST_TEST(line.find("which does not point to an object of type") != std::string::npos, line);
    }
    if (line.find("note: object has invalid vptr") != std::string::npos) ++invalid_vptr;
    BOOST_TEST(line.find("Sanitizer") == std::string::npos, line);
  }
  BOOST_TEST(reports == invalid_vptr);
  if (reports) BOOST_TEST_MESSAGE(reports << " vptr checks UBSan could not make at EMFILE");
}

// At the descriptor limit the server stays idle: with the default
// connection limit (below the descriptor limit: it closes idle connections
// for new ones), and with a connection limit set too high for the
// descriptors (accept fails with EMFILE: it backs off instead of retrying
// at once; with one loop and two). Its CPU time over one second at the limit stays under 5 %; a
// busy accept loop takes 20 to 99 %. Once the clients go, it serves again.
BOOST_AUTO_TEST_CASE(cpu_stays_idle_at_the_descriptor_limit) {
  struct variant {
    bool too_many;
    const char* threads;
  };
  for (auto [too_many, threads] : {variant{false, "1"}, variant{true, "1"}, variant{true, "2"}}) {
    BOOST_TEST_CONTEXT((too_many ? "--max-connections 1000" : "default limit") << ", --threads " << threads) {
      temp_dir d;
      server_options o{{"--threads", threads}, small_nofile, {}};
      if (too_many) {
        o.args.insert(o.args.end(), {"--max-connections", "1000"});
        o.err = d.file("server.err");  // checked below
      }
      {
        server srv(small_root(d), o);
        auto idle = idle_clients(srv.port(), 70);
        // Wait until the server has taken what it can: its descriptor count
        // stops growing (bounded: 5 s).
        int fds = -1;
        for (int i = 0; i < 50; ++i) {
          std::this_thread::sleep_for(std::chrono::milliseconds(100));
          int now = count_fds(srv.pid());
          if (now == fds) break;
          fds = now;
        }
        BOOST_TEST_MESSAGE("server descriptors at the limit: " << fds);
        if (too_many) BOOST_TEST(fds >= static_cast<int>(small_nofile) - 1);
        const double cpu0 = srv.cpu_seconds();
        auto t0 = std::chrono::steady_clock::now();
        std::this_thread::sleep_for(std::chrono::seconds(1));
        const double share = (srv.cpu_seconds() - cpu0) / seconds_since(t0);
        BOOST_TEST(share < 0.05, "CPU share at the limit: " << share);
        BOOST_TEST(srv.alive());
        idle.clear();
        client c(srv.port(), 0, 3000);
        c.send(get("/index.html"));
        BOOST_TEST(c.read().status == 200);
      }
      if (too_many) check_emfile_stderr(d.file("server.err"));  // once the server has stopped
    }
  }
}

// A GET that announces a body is refused with 400 and the connection closed,
// before any of the body is parsed. The chunked request below (its last
// chunk "0\r\n", then "\r" alone) made Beast 1.81's chunk parser abort the
// process (BOOST_ASSERT in parse_chunk_header). The server goes on serving;
// Content-Length: 0 is no body. Both file paths.
BOOST_AUTO_TEST_CASE(request_with_a_body_is_refused) {
  for (bool blocking : {true, false}) {
    BOOST_TEST_CONTEXT((blocking ? "blocking-file-body" : "fsys")) {
      temp_dir d;
      server srv(small_root(d), blocking);
      {
        client c(srv.port(), 0, 3000);
        c.send("GET /index.html HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n");
        // The "\r" must reach the server's parser in a read of its own.
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
        c.try_send("\r");
        auto r = c.read();
        BOOST_TEST(r.status == 400);
        BOOST_TEST(c.ended_within(3000));
      }
      {
        client c(srv.port(), 0, 3000);
        c.send("GET /index.html HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello");
        BOOST_TEST(c.read().status == 400);
        BOOST_TEST(c.ended_within(3000));
      }
      BOOST_TEST(srv.alive());
      client c(srv.port(), 0, 3000);
      c.send(get("/index.html", "Content-Length: 0\r\n"));
      auto r = c.read();
      BOOST_TEST(r.status == 200);
      BOOST_TEST((r.body == as_string(pattern(100, 7))));
      c.send(get("/index.html", "", "HEAD"));
      BOOST_TEST(c.read(true).status == 200);
    }
  }
}

// A FIFO in the tree, requested directly and through symlinks (with which
// the inline open fails and the open goes to a worker): 403 at once, never
// an open that waits for a writer (a worker's, or in --blocking-file-body
// mode the loop thread's, which SIGTERM could then no longer stop). The
// connection goes on, and the server stops on SIGTERM (~server).
BOOST_AUTO_TEST_CASE(fifo_is_refused_without_waiting) {
  for (bool blocking : {true, false}) {
    BOOST_TEST_CONTEXT((blocking ? "blocking-file-body" : "fsys")) {
      temp_dir d;
      auto root = small_root(d);
      BOOST_REQUIRE(::mkfifo((root / "fifo").c_str(), 0644) == 0);
      fs::create_symlink("fifo", root / "fifo_link");
      fs::create_directory(root / "sub");
      fs::create_symlink("../fifo", root / "sub" / "fifo_link");
      server srv(root, blocking);
      client c(srv.port(), 0, 3000);
      for (const char* t : {"/fifo", "/fifo_link", "/sub/fifo_link"}) {
        auto t0 = std::chrono::steady_clock::now();
        c.send(get(t));
        auto r = c.read();
        BOOST_TEST((r.status == 403 || r.status == 404), t << " gave " << r.status);
        BOOST_TEST(seconds_since(t0) < 1.0, t);
      }
      c.send(get("/index.html"));
      BOOST_TEST(c.read().status == 200);
      client other(srv.port(), 0, 3000);
      other.send(get("/index.html"));
      BOOST_TEST(other.read().status == 200);
    }
  }
}

#if FSYS_TEST_HAVE_OPENSSL
namespace {

// Runs a command through the shell; returns its exit status and stdout.
std::pair<int, std::string> run_command(const std::string& cmd) {
  std::string out;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return {-1, out};
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  int st = ::pclose(p);
  return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, out};
}

std::string read_whole(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

}  // namespace

// HTTPS (--tls-cert/--tls-key) checked with curl, which verifies the
// server's certificate (made here, for 127.0.0.1) against the test's CA
// file: the tree byte for byte over one kept-alive connection, a range,
// HEAD, 304 by ETag and by date, 404, and the server's ETag on each file.
BOOST_AUTO_TEST_CASE(https_with_curl) {
  if (run_command("command -v curl >/dev/null 2>&1").first != 0) {
    BOOST_TEST_MESSAGE("skipped: no curl (scripts/setup installs it)");
    return;
  }
  temp_dir d;
  fs::create_directory(d.file("root"));
  auto files = make_tree(d.file("root"));
  const auto id = fsys::test::make_self_signed_cert();
  {
    std::ofstream(d.file("cert.pem")) << id.cert_pem;
    std::ofstream(d.file("key.pem")) << id.key_pem;
  }
  server srv(d.file("root"), server_options{{"--tls-cert", d.file("cert.pem").string(), "--tls-key",
                                             d.file("key.pem").string()},
                                            0,
                                            {}});
  const std::string base = "https://127.0.0.1:" + std::to_string(srv.port());
  const std::string curl = "curl -sS --cacert '" + d.file("cert.pem").string() + "' ";
  // Every file of the tree in one curl run: one connection, kept alive.
  std::string cmd = curl + "-w '%{http_code} %{num_connects}\\n'";
  std::vector<std::string> rels;
  int i = 0;
  for (auto& [rel, data] : files) {
    rels.push_back(rel);
    cmd += " -o '" + d.file("out" + std::to_string(i++)).string() + "' '" + base + url_of(rel) + "'";
  }
  auto [rc, out] = run_command(cmd);
  BOOST_REQUIRE_MESSAGE(rc == 0, "curl failed: " << rc << " " << out);
  std::istringstream lines(out);
  int connects = 0;
  for (std::size_t k = 0; k < rels.size(); ++k) {
    int code = 0, n = 0;
    lines >> code >> n;
    connects += n;
    BOOST_TEST_CONTEXT(rels[k]) {
      BOOST_TEST(code == 200);
      BOOST_TEST((read_whole(d.file("out" + std::to_string(k))) == files[rels[k]]));
    }
  }
  BOOST_TEST(connects == 1);  // keep-alive: one TLS connection for the whole tree
  const std::string big = rel_of(files, "3145728.bin"), big_url = base + url_of(big);
  // A range.
  auto [rrc, range] = run_command(curl + "-r 1000-1999 '" + big_url + "'");
  BOOST_TEST(rrc == 0);
  BOOST_TEST((range == files[big].substr(1000, 1000)));
  // HEAD: the head only, with the validators.
  auto [hrc, head] = run_command(curl + "-I '" + big_url + "'");
  BOOST_TEST(hrc == 0);
  BOOST_TEST(head.find("HTTP/1.1 200 OK") == 0u);
  BOOST_TEST(head.find("Content-Length: 3145728") != std::string::npos);
  auto etag_at = head.find("ETag: ");
  BOOST_REQUIRE(etag_at != std::string::npos);
  const std::string etag = head.substr(etag_at + 6, head.find('\r', etag_at) - etag_at - 6);
  auto lm_at = head.find("Last-Modified: ");
  BOOST_REQUIRE(lm_at != std::string::npos);
  const std::string lm = head.substr(lm_at + 15, head.find('\r', lm_at) - lm_at - 15);
  // 304 by ETag and by date; 404.
  auto code_of = [&](const std::string& extra, const std::string& url) {
    return run_command(curl + "-o /dev/null -w '%{http_code}' " + extra + " '" + url + "'").second;
  };
  BOOST_TEST(code_of("-H 'If-None-Match: " + etag + "'", big_url) == "304");
  BOOST_TEST(code_of("-H 'If-Modified-Since: " + lm + "'", big_url) == "304");
  BOOST_TEST(code_of("-H 'If-None-Match: \"other\"'", big_url) == "200");
  BOOST_TEST(code_of("", base + "/no-such-file") == "404");
  // A client that does not trust the certificate is refused by curl.
  BOOST_TEST(run_command("curl -sS -o /dev/null '" + big_url + "' 2>/dev/null").first != 0);
}
#endif  // FSYS_TEST_HAVE_OPENSSL
