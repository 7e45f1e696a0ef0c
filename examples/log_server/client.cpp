// fsys-log-client: load generator and verifier for fsys-log-server.
//
// Load: opens N connections to 127.0.0.1:P; each sends one record, waits for
// its acknowledgement, and repeats until S seconds have passed. Every
// acknowledged (client id, sequence) pair is appended to the ack log. Prints
// acknowledged records per second and p50/p99/p99.9 acknowledgement latency.
//
//   fsys-log-client --port P --clients N --seconds S --ack-log FILE
//                   [--body BYTES] [--allow-disconnect]
//
// Verify: checks that every record named in the ack log(s) is present and
// intact in the server's log (run it after the server has stopped, e.g. after
// a crash and a restart). Exits non-zero otherwise.
//
//   fsys-log-client --verify --log DIR --ack-log FILE [--ack-log FILE ...]
#include "log_format.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <random>
#include <string>
#include <tuple>
#include <unordered_set>
#include <vector>

namespace asio = boost::asio;
using asio::ip::tcp;
using boost::system::error_code;
using clock_type = std::chrono::steady_clock;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

struct options {
  bool verify = false;
  unsigned short port = 0;
  unsigned clients = 1;
  double seconds = 3;
  std::size_t body = 104;  // 8 + 16 + 104 = 128-byte records
  bool allow_disconnect = false;
  std::string log;
  std::vector<std::string> ack_logs;
};

[[noreturn]] void usage(const char* argv0) {
  std::fprintf(stderr,
               "usage: %s --port P --clients N --seconds S --ack-log FILE [--body BYTES] [--allow-disconnect]\n"
               "       %s --verify --log DIR --ack-log FILE [--ack-log FILE ...]\n",
               argv0, argv0);
  std::exit(2);
}

options parse(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> const char* {
      if (i + 1 >= argc) usage(argv[0]);
      return argv[++i];
    };
    if (a == "--verify") o.verify = true;
    else if (a == "--port") o.port = static_cast<unsigned short>(std::strtoul(value(), nullptr, 10));
    else if (a == "--clients") o.clients = static_cast<unsigned>(std::strtoul(value(), nullptr, 10));
    else if (a == "--seconds") o.seconds = std::strtod(value(), nullptr);
    else if (a == "--body") o.body = std::strtoul(value(), nullptr, 10);
    else if (a == "--allow-disconnect") o.allow_disconnect = true;
    else if (a == "--log") o.log = value();
    else if (a == "--ack-log") o.ack_logs.push_back(value());
    else usage(argv[0]);
  }
  if (o.ack_logs.empty() || (o.verify && o.log.empty())) usage(argv[0]);
  if (!o.verify && (o.port == 0 || o.clients == 0 || o.clients > 4096 || o.seconds <= 0 || o.ack_logs.size() != 1 ||
                    o.body > logsrv::max_payload - logsrv::min_payload))
    usage(argv[0]);
  return o;
}

// ---- load ------------------------------------------------------------------

class load {
 public:
  load(asio::io_context& ctx, const options& opt, int ack_fd)
      : ctx_(ctx), opt_(opt), ack_fd_(ack_fd), flush_timer_(ctx), watchdog_(ctx) {
    // Client ids are unique per run (random high bits), so that the ack logs
    // of several runs against one log never name the same record.
    std::random_device rd;
    run_id_ = ((std::uint64_t(rd()) << 32) | rd()) & 0xFFFFFFFFFFFF0000ull;
  }

  int run() {
    start_ = clock_type::now();
    deadline_ = start_ + std::chrono::duration_cast<clock_type::duration>(std::chrono::duration<double>(opt_.seconds));
    latencies_.resize(opt_.clients);
    sockets_.resize(opt_.clients);
    running_ = opt_.clients;
    for (unsigned i = 0; i < opt_.clients; ++i) {
      asio::co_spawn(ctx_, connection(i), [this](std::exception_ptr e) {
        if (e) {
          try {
            std::rethrow_exception(e);
          } catch (const std::exception& ex) {
            std::fprintf(stderr, "connection: %s\n", ex.what());
          }
          ++errors_;
        }
        if (--running_ == 0) finish();
      });
    }
    schedule_flush();
    // A server that stops answering must not hang the client: some time
    // after the deadline every connection is closed.
    watchdog_.expires_at(deadline_ + std::chrono::seconds(10));
    watchdog_.async_wait([this](error_code ec) {
      if (ec) return;
      std::fprintf(stderr, "watchdog: server did not answer; closing connections\n");
      watchdog_fired_ = true;
      for (auto* s : sockets_)
        if (s) s->close(ec);
    });
    ctx_.run();
    return report();
  }

 private:
  asio::awaitable<void> connection(unsigned index) {
    tcp::socket sock(ctx_);
    sockets_[index] = &sock;
    struct unregister {
      load* l;
      unsigned i;
      ~unregister() { l->sockets_[i] = nullptr; }
    } guard{this, index};
    (void)guard;

    auto [ec] = co_await sock.async_connect(tcp::endpoint(asio::ip::address_v4::loopback(), opt_.port), use_tuple);
    if (ec) {
      std::fprintf(stderr, "connect: %s\n", ec.message().c_str());
      ++errors_;
      co_return;
    }
    sock.set_option(tcp::no_delay(true), ec);

    const std::uint64_t client = run_id_ | index;
    std::vector<std::byte> frame;
    std::byte ack[8];
    auto& lat = latencies_[index];
    // Bounded by the deadline (and by the watchdog if the server hangs).
    for (std::uint64_t seq = 1; clock_type::now() < deadline_; ++seq) {
      frame.clear();
      logsrv::append_record(frame, client, seq, opt_.body);
      auto t0 = clock_type::now();
      std::size_t n;
      std::tie(ec, n) = co_await asio::async_write(sock, asio::buffer(frame), use_tuple);
      if (!ec) std::tie(ec, n) = co_await asio::async_read(sock, asio::buffer(ack), use_tuple);
      if (ec) {
        ++disconnects_;
        if (!opt_.allow_disconnect) std::fprintf(stderr, "client %u: %s\n", index, ec.message().c_str());
        co_return;
      }
      auto t1 = clock_type::now();
      if (logsrv::get_u64(ack) != seq) {
        std::fprintf(stderr, "client %u: ack for %llu, expected %llu\n", index,
                     static_cast<unsigned long long>(logsrv::get_u64(ack)), static_cast<unsigned long long>(seq));
        ++errors_;
        co_return;
      }
      lat.push_back(static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count()));
      std::byte entry[16];
      logsrv::put_u64(entry, client);
      logsrv::put_u64(entry + 8, seq);
      ack_buf_.insert(ack_buf_.end(), entry, entry + 16);
      last_ack_ = t1;
    }
  }

  // The ack log is written every 50 ms (and at the end), so that it holds
  // nearly everything acknowledged even if this process dies.
  void schedule_flush() {
    flush_timer_.expires_after(std::chrono::milliseconds(50));
    flush_timer_.async_wait([this](error_code ec) {
      if (ec) return;
      flush();
      if (running_ > 0) schedule_flush();
    });
  }

  void flush() {
    std::size_t done = 0;
    while (done < ack_buf_.size()) {
      // A plain write of our own buffer to a regular file.
      ssize_t n = ::write(ack_fd_, ack_buf_.data() + done, ack_buf_.size() - done);
      if (n < 0) {
        if (errno == EINTR) continue;
        std::perror("write ack log");
        ++errors_;
        break;
      }
      done += static_cast<std::size_t>(n);
    }
    ack_buf_.clear();
  }

  void finish() {
    end_ = clock_type::now();
    flush_timer_.cancel();
    watchdog_.cancel();
    flush();
  }

  int report() {
    std::vector<std::uint64_t> all;
    for (auto& v : latencies_) all.insert(all.end(), v.begin(), v.end());
    std::sort(all.begin(), all.end());
    auto pct = [&](double p) -> double {
      if (all.empty()) return 0;
      std::size_t i = std::min(all.size() - 1, static_cast<std::size_t>(p * double(all.size())));
      return double(all[i]) / 1e6;
    };
    // The rate counts the time until the last acknowledgement, which for
    // one-at-a-time clients is at most one round trip after the deadline.
    auto last = all.empty() ? end_ : last_ack_;
    double secs = std::chrono::duration<double>(last - start_).count();
    std::printf(
        "clients %u, %.2f s: %zu records acknowledged, %.0f records/s, latency ms p50 %.3f p99 %.3f p99.9 %.3f\n",
        opt_.clients, secs, all.size(), secs > 0 ? double(all.size()) / secs : 0.0, pct(0.50), pct(0.99),
        pct(0.999));
    if (disconnects_) std::printf("disconnected connections: %u\n", disconnects_);
    std::fflush(stdout);
    if (errors_ || watchdog_fired_) return 1;
    if (disconnects_ && !opt_.allow_disconnect) return 1;
    return 0;
  }

  asio::io_context& ctx_;
  const options& opt_;
  int ack_fd_;
  std::uint64_t run_id_ = 0;
  clock_type::time_point start_, deadline_, end_, last_ack_;
  std::vector<std::vector<std::uint64_t>> latencies_;  // ns, per connection
  std::vector<tcp::socket*> sockets_;
  std::vector<std::byte> ack_buf_;
  asio::steady_timer flush_timer_;
  asio::steady_timer watchdog_;
  unsigned running_ = 0;
  unsigned errors_ = 0;
  unsigned disconnects_ = 0;
  bool watchdog_fired_ = false;
};

int run_load(const options& opt) {
  int fd = ::open(opt.ack_logs[0].c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    std::perror(opt.ack_logs[0].c_str());
    return 1;
  }
  int rc;
  {
    asio::io_context ctx;
    load l(ctx, opt, fd);
    rc = l.run();
  }
  if (::close(fd) != 0) rc = 1;
  return rc;
}

// ---- verify ----------------------------------------------------------------

struct key_hash {
  std::size_t operator()(const std::pair<std::uint64_t, std::uint64_t>& k) const noexcept {
    return std::hash<std::uint64_t>()(k.first * 0x9E3779B97F4A7C15ull ^ k.second);
  }
};
using key_set = std::unordered_set<std::pair<std::uint64_t, std::uint64_t>, key_hash>;

int run_verify(const options& opt) {
  // The server's log is a fsys::durable_log directory of segments.
  key_set in_log;
  std::uint64_t damaged = 0;
  std::vector<std::byte> expect;
  std::error_code ec;
  logsrv::dir_scan_result r = logsrv::scan_log_dir(opt.log, [&](const logsrv::record_view& rec) {
    expect.resize(rec.body.size());
    logsrv::fill_body(expect.data(), expect.size(), rec.client, rec.seq);
    if (std::equal(expect.begin(), expect.end(), rec.body.begin())) in_log.insert({rec.client, rec.seq});
    else ++damaged;
  }, ec);
  if (ec) {
    std::fprintf(stderr, "reading %s: %s\n", opt.log.c_str(), ec.message().c_str());
    return 1;
  }
  std::printf("log %s: %llu valid records (%llu bytes), %llu bytes after them\n", opt.log.c_str(),
              static_cast<unsigned long long>(r.records), static_cast<unsigned long long>(r.valid_bytes),
              static_cast<unsigned long long>(r.tail_bytes));
  std::printf("last segment %s ends at %llu\n", r.last_segment.c_str(),
              static_cast<unsigned long long>(r.last_valid_end));
  if (r.damaged_before_tail) {
    std::fprintf(stderr, "verify: a segment before the last one has bytes after its records\n");
    return 1;
  }

  std::uint64_t acked = 0, missing = 0;
  for (const std::string& path : opt.ack_logs) {
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) {
      std::perror(path.c_str());
      return 1;
    }
    std::byte entry[16];
    // One 16-byte entry per pass; bounded by the file's size.
    while (std::fread(entry, 1, sizeof entry, f) == sizeof entry) {
      ++acked;
      std::uint64_t client = logsrv::get_u64(entry), seq = logsrv::get_u64(entry + 8);
      if (!in_log.count({client, seq})) {
        if (++missing <= 10)
          std::fprintf(stderr, "missing: client %016llx seq %llu (from %s)\n", static_cast<unsigned long long>(client),
                       static_cast<unsigned long long>(seq), path.c_str());
      }
    }
    std::fclose(f);
  }
  std::printf("acknowledged records: %llu, missing or damaged in the log: %llu, records with a wrong body: %llu\n",
              static_cast<unsigned long long>(acked), static_cast<unsigned long long>(missing),
              static_cast<unsigned long long>(damaged));
  if (acked == 0) {
    std::fprintf(stderr, "verify: the ack logs name no record; nothing was checked\n");
    return 1;
  }
  if (missing || damaged) return 1;
  std::printf("verify OK: every acknowledged record is in the log, intact\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  options opt = parse(argc, argv);
  try {
    return opt.verify ? run_verify(opt) : run_load(opt);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fsys-log-client: %s\n", e.what());
    return 1;
  }
}
