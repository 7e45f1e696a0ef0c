// fsys-log-server: a durable log server on one io_context.
//
// Clients send framed records (see log_format.hpp) over TCP; the server
// appends their payloads to a fsys::durable_log and acknowledges each record
// (u64 sequence number) only once the log reports it durable. The log stores
// the same frame the client sent (length, CRC-32C, payload).
//
// Group commit is the log's: records that arrive while a write+fsync is in
// flight go out together in the next one. With --no-group-commit every record
// gets its own write+fsync, one after another (the baseline: the log's
// max_batch_bytes is set to 1, so each batch holds one record, and one batch
// is in flight at a time).
//
// On start the log is recovered by fsys::durable_log::async_open (a torn tail
// is zeroed and synced; the report is printed).
//
// Usage: fsys-log-server --port P --log DIR [--no-group-commit] [--max-seconds N]
//   --port 0 picks a free port; the server prints "listening on PORT".
#include "log_format.hpp"

#include <fsys/fsys.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <exception>
#include <filesystem>
#include <memory>
#include <string>
#include <unordered_set>
#include <vector>

namespace asio = boost::asio;
using asio::ip::tcp;
using boost::system::error_code;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

struct options {
  unsigned short port = 0;
  std::string log;
  bool group_commit = true;
  unsigned max_seconds = 600;  // the server stops by itself after this
  unsigned max_sessions = 1024;
};

class server {
 public:
  server(asio::io_context& ctx, const options& opt, fsys::durable_log log)
      : ex_(ctx.get_executor()),
        opt_(opt),
        log_(std::move(log)),
        acceptor_(ctx, tcp::endpoint(asio::ip::address_v4::loopback(), opt.port)),
        lifetime_(ctx, std::chrono::seconds(opt.max_seconds)),
        signals_(ctx, SIGINT, SIGTERM) {}

  unsigned short port() const { return acceptor_.local_endpoint().port(); }

  void start() {
    asio::co_spawn(ex_, accept_loop(), asio::detached);
    signals_.async_wait([this](error_code ec, int) {
      if (!ec) stop("signal");
    });
    lifetime_.async_wait([this](error_code ec) {
      if (!ec) stop("--max-seconds reached");
    });
  }

  int exit_code() const { return failed_ ? 1 : 0; }

  void print_stats() const {
    const fsys::durable_log_stats st = log_.stats();
    std::printf("durable records: %llu in %llu commits (%.1f records per fsync)\n",
                static_cast<unsigned long long>(st.records), static_cast<unsigned long long>(st.commits),
                st.commits ? double(st.records) / double(st.commits) : 0.0);
    std::fflush(stdout);
  }

 private:
  // Stops accepting and closes every connection; appends in flight complete
  // (the log finishes its batch); run() then returns because no work is left.
  void stop(const char* why) {
    if (stopping_) return;
    stopping_ = true;
    std::printf("stopping: %s\n", why);
    std::fflush(stdout);
    error_code ignored;
    acceptor_.close(ignored);
    for (tcp::socket* s : sessions_) s->close(ignored);
    signals_.cancel();
    lifetime_.cancel();
  }

  static void report(std::exception_ptr e, const char* where) {
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      std::fprintf(stderr, "%s: %s\n", where, ex.what());
    }
  }

  asio::awaitable<void> accept_loop() {
    // Ends when stop() closes the acceptor.
    while (!stopping_) {
      auto [ec, sock] = co_await acceptor_.async_accept(use_tuple);
      if (ec) {
        if (ec == asio::error::operation_aborted || stopping_) break;
        std::fprintf(stderr, "accept: %s\n", ec.message().c_str());
        continue;
      }
      if (sessions_.size() >= opt_.max_sessions) continue;  // refuse: the socket closes here
      asio::co_spawn(ex_, session(std::move(sock)), [](std::exception_ptr e) {
        if (e) report(e, "session");
      });
    }
  }

  // Reads records, appends each to the log, waits until it is durable
  // and acknowledges it with its sequence number. One record at a time per
  // connection; ends when the client disconnects or the server stops.
  asio::awaitable<void> session(tcp::socket sock) {
    sessions_.insert(&sock);
    struct unregister {
      server* s;
      tcp::socket* sock;
      ~unregister() { s->sessions_.erase(sock); }
    } guard{this, &sock};
    error_code ignored;
    sock.set_option(tcp::no_delay(true), ignored);

    std::vector<std::byte> frame(logsrv::header_size);
    std::byte ack[8];
    while (!stopping_) {
      frame.resize(logsrv::header_size);
      auto [ec, n] = co_await asio::async_read(sock, asio::buffer(frame), use_tuple);
      if (ec) break;  // eof or closed
      std::uint32_t len = logsrv::get_u32(frame.data());
      if (len < logsrv::min_payload || len > logsrv::max_payload) break;  // not our protocol
      frame.resize(logsrv::header_size + len);
      std::tie(ec, n) =
          co_await asio::async_read(sock, asio::buffer(frame.data() + logsrv::header_size, len), use_tuple);
      if (ec) break;
      // A damaged record must never reach the log: recovery would cut the
      // log at it, and with it every later (acknowledged) record.
      if (!logsrv::frame_valid(frame.data(), frame.data() + logsrv::header_size)) break;
      std::uint64_t seq = logsrv::get_u64(frame.data() + logsrv::header_size + 8);
      if (stopping_) break;

      // The log copies the payload before async_append returns; the frame
      // it writes is the one the client sent (same length and checksum).
      auto [aec, pos] = co_await log_.async_append(
          asio::buffer(frame.data() + logsrv::header_size, len), use_tuple);
      (void)pos;
      if (aec) {
        // After a failed write or fsync nothing about the log's unsynced
        // contents can be trusted (the kernel may have dropped dirty pages):
        // the log refuses further appends, and the server stops; restart-time
        // recovery sorts it out. No ack for this record.
        if (!failed_) std::fprintf(stderr, "commit failed: %s\n", aec.message().c_str());
        failed_ = true;
        stop("log write failed");
        break;
      }

      logsrv::put_u64(ack, seq);
      std::tie(ec, n) = co_await asio::async_write(sock, asio::buffer(ack), use_tuple);
      if (ec) break;
    }
  }

  asio::any_io_executor ex_;
  options opt_;
  fsys::durable_log log_;
  tcp::acceptor acceptor_;
  asio::steady_timer lifetime_;
  asio::signal_set signals_;
  std::unordered_set<tcp::socket*> sessions_;
  bool stopping_ = false;
  bool failed_ = false;
};

[[noreturn]] void usage(const char* argv0) {
  std::fprintf(stderr, "usage: %s --port P --log DIR [--no-group-commit] [--max-seconds N]\n", argv0);
  std::exit(2);
}

options parse(int argc, char** argv) {
  options o;
  bool have_log = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> const char* {
      if (i + 1 >= argc) usage(argv[0]);
      return argv[++i];
    };
    if (a == "--port") {
      o.port = static_cast<unsigned short>(std::strtoul(value(), nullptr, 10));
    } else if (a == "--log") {
      o.log = value();
      have_log = true;
    } else if (a == "--no-group-commit") {
      o.group_commit = false;
    } else if (a == "--max-seconds") {
      o.max_seconds = static_cast<unsigned>(std::strtoul(value(), nullptr, 10));
    } else {
      usage(argv[0]);
    }
  }
  if (!have_log) usage(argv[0]);
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  options opt = parse(argc, argv);
  try {
    asio::io_context ctx;
    fsys::durable_log_options lo;
    lo.max_record_size = logsrv::max_payload;
    if (!opt.group_commit) {
      lo.max_batch_bytes = 1;        // one record per write+fsync,
      lo.max_batches_in_flight = 1;  // one after another
    }
    error_code ec;
    fsys::durable_log log;
    fsys::recovery_report rec;
    fsys::durable_log::async_open(ctx.get_executor(), opt.log, lo,
                                  [&](error_code e, fsys::durable_log l, fsys::recovery_report r) {
                                    ec = e;
                                    log = std::move(l);
                                    rec = r;
                                  });
    ctx.run();
    ctx.restart();
    if (ec) throw std::system_error(ec, "recovering " + opt.log);
    std::printf("recovered %llu records (%llu bytes), truncated %llu bytes\n",
                static_cast<unsigned long long>(rec.records),
                static_cast<unsigned long long>(rec.end_position - rec.start_position),
                static_cast<unsigned long long>(rec.dropped_bytes));

    auto& svc = asio::use_service<fsys::uring_service>(ctx);
    std::printf("backend: %s, group commit: %s\n",
                svc.active_backend() == fsys::backend::io_uring ? "io_uring" : "psync",
                opt.group_commit ? "on" : "off");

    server srv(ctx, opt, std::move(log));
    srv.start();
    std::printf("listening on %u\n", static_cast<unsigned>(srv.port()));
    std::fflush(stdout);
    ctx.run();
    srv.print_stats();
    return srv.exit_code();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fsys-log-server: %s\n", e.what());
    return 1;
  }
}
