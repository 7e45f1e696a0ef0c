// fsys-log-server: a durable log server on one io_context.
//
// Clients send framed records (see log_format.hpp) over TCP; the server
// appends them to a log file and acknowledges each record (u64 sequence
// number) only once it is durable. Durability comes from
// fsys::co_write_linked_fsync: the write and an fsync(DATASYNC) linked to it
// go to the kernel in one submission.
//
// Group commit: a single committer coroutine owns the file's end offset.
// Records that arrive while a write+fsync is in flight are gathered into the
// next batch, so one fsync makes all of them durable. With --no-group-commit
// every record gets its own write+fsync, one after another (the baseline).
//
// On start the log is scanned and a torn tail is cut off (logsrv::recover_log).
//
// Usage: fsys-log-server --port P --log FILE [--no-group-commit] [--max-seconds N]
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

// A steady_timer that never expires serves as a one-shot event: waiters
// block in async_wait; cancel() wakes all of them.
asio::steady_timer make_event(const asio::any_io_executor& ex) {
  return asio::steady_timer(ex, asio::steady_timer::time_point::max());
}

/// Records written together with one write+fsync, and the event their
/// sessions wait on.
struct batch {
  explicit batch(const asio::any_io_executor& ex) : done(make_event(ex)) {}
  std::vector<std::byte> bytes;  // the frames, back to back, as they go to the file
  std::size_t records = 0;
  bool finished = false;  // set before `done` is signalled
  bool durable = false;   // write+fsync succeeded
  asio::steady_timer done;
};

struct options {
  unsigned short port = 0;
  std::string log;
  bool group_commit = true;
  unsigned max_seconds = 600;  // the server stops by itself after this
  unsigned max_sessions = 1024;
};

class server {
 public:
  server(asio::io_context& ctx, const options& opt, fsys::file log, std::uint64_t end)
      : ex_(ctx.get_executor()),
        opt_(opt),
        log_(std::move(log)),
        end_(end),
        acceptor_(ctx, tcp::endpoint(asio::ip::address_v4::loopback(), opt.port)),
        wake_(make_event(ex_)),
        lifetime_(ctx, std::chrono::seconds(opt.max_seconds)),
        signals_(ctx, SIGINT, SIGTERM) {}

  unsigned short port() const { return acceptor_.local_endpoint().port(); }

  void start() {
    asio::co_spawn(ex_, accept_loop(), asio::detached);
    asio::co_spawn(ex_, committer(), [](std::exception_ptr e) {
      if (e) report(e, "committer");
    });
    signals_.async_wait([this](error_code ec, int) {
      if (!ec) stop("signal");
    });
    lifetime_.async_wait([this](error_code ec) {
      if (!ec) stop("--max-seconds reached");
    });
  }

  int exit_code() const { return failed_ ? 1 : 0; }

  void print_stats() const {
    std::printf("durable records: %llu in %llu commits (%.1f records per fsync)\n",
                static_cast<unsigned long long>(durable_records_), static_cast<unsigned long long>(commits_),
                commits_ ? double(durable_records_) / double(commits_) : 0.0);
    std::fflush(stdout);
  }

 private:
  // Stops accepting, closes every connection and lets the committer finish
  // what is queued; run() then returns because no work is left.
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
    wake_.cancel();
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

  // Reads records, queues each for the committer, waits until it is durable
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
      // Once stopping, the committer may already have exited: queue nothing.
      if (stopping_) break;

      std::shared_ptr<batch> b = enqueue(frame);
      if (!b->finished) co_await b->done.async_wait(use_tuple);  // cancel() is the signal
      if (!b->durable) break;  // the log failed: no ack, the server is stopping

      logsrv::put_u64(ack, seq);
      std::tie(ec, n) = co_await asio::async_write(sock, asio::buffer(ack), use_tuple);
      if (ec) break;
    }
  }

  // Adds a frame to the batch that will be written next and wakes the
  // committer. With group commit every record that arrives while a commit is
  // in flight joins the same (last) batch; without it, each record is a
  // batch of its own.
  std::shared_ptr<batch> enqueue(const std::vector<std::byte>& frame) {
    if (!opt_.group_commit || queue_.empty()) queue_.push_back(std::make_shared<batch>(ex_));
    batch& b = *queue_.back();
    b.bytes.insert(b.bytes.end(), frame.begin(), frame.end());
    ++b.records;
    wake_.cancel();
    return queue_.back();
  }

  // The only writer of the log: takes the oldest batch, appends it at the end
  // offset with one write+fsync and wakes its sessions. One commit at a time,
  // so a crash can tear only the last write (which recovery then cuts off).
  asio::awaitable<void> committer() {
    // Ends once stopping with nothing left to commit; each pass either
    // commits a batch or waits for one.
    while (!(stopping_ && queue_.empty())) {
      if (queue_.empty()) {
        co_await wake_.async_wait(use_tuple);
        continue;
      }
      std::shared_ptr<batch> b = std::move(queue_.front());
      queue_.pop_front();
      try {
        // b->bytes lives in the batch, which this frame holds until the
        // write and its fsync have completed, so the kernel may read it
        // until then; the file stays open for the server's lifetime.
        co_await fsys::co_write_linked_fsync(log_, end_, asio::buffer(b->bytes));
        end_ += b->bytes.size();
        b->durable = true;
        durable_records_ += b->records;
        ++commits_;
      } catch (const std::system_error& e) {
        // After a failed write or fsync nothing about the file's contents can
        // be trusted (the kernel may have dropped dirty pages), so stop
        // rather than keep appending; restart-time recovery sorts it out.
        std::fprintf(stderr, "commit failed at offset %llu: %s\n", static_cast<unsigned long long>(end_),
                     e.what());
        failed_ = true;
        stop("log write failed");
        fail_queued();
      }
      b->finished = true;
      b->done.cancel();
    }
  }

  void fail_queued() {
    for (auto& q : queue_) {
      q->finished = true;
      q->done.cancel();
    }
    queue_.clear();
  }

  asio::any_io_executor ex_;
  options opt_;
  fsys::file log_;
  std::uint64_t end_;  // where the next batch goes
  tcp::acceptor acceptor_;
  std::deque<std::shared_ptr<batch>> queue_;
  asio::steady_timer wake_;  // the committer's "work arrived" event
  asio::steady_timer lifetime_;
  asio::signal_set signals_;
  std::unordered_set<tcp::socket*> sessions_;
  bool stopping_ = false;
  bool failed_ = false;
  std::uint64_t durable_records_ = 0;
  std::uint64_t commits_ = 0;
};

[[noreturn]] void usage(const char* argv0) {
  std::fprintf(stderr, "usage: %s --port P --log FILE [--no-group-commit] [--max-seconds N]\n", argv0);
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

// Makes the log file's directory entry durable, so that a newly created log
// survives a crash together with its first records.
void sync_parent_dir(const std::filesystem::path& p) {
  std::filesystem::path dir = p.has_parent_path() ? p.parent_path() : std::filesystem::path(".");
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) throw std::system_error(errno, std::system_category(), "open " + dir.string());
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) throw std::system_error(err, std::system_category(), "fsync " + dir.string());
}

}  // namespace

int main(int argc, char** argv) {
  options opt = parse(argc, argv);
  try {
    asio::io_context ctx;
    fsys::file log(ctx, opt.log, O_RDWR | O_CREAT, 0644);
    sync_parent_dir(opt.log);

    std::error_code ec;
    logsrv::scan_result rec = logsrv::recover_log(log.native_handle(), ec);
    if (ec) throw std::system_error(ec, "recovering " + opt.log);
    std::printf("recovered %llu records (%llu bytes), truncated %llu bytes\n",
                static_cast<unsigned long long>(rec.records), static_cast<unsigned long long>(rec.valid_bytes),
                static_cast<unsigned long long>(rec.tail_bytes()));

    auto& svc = asio::use_service<fsys::uring_service>(ctx);
    std::printf("backend: %s, group commit: %s\n",
                svc.active_backend() == fsys::backend::io_uring ? "io_uring" : "psync",
                opt.group_commit ? "on" : "off");

    server srv(ctx, opt, std::move(log), rec.valid_bytes);
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
