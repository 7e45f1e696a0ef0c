// fsys in the side-by-side run, written against fsys's public API only: one
// asio::io_context{1} run on the calling thread, one fsys::file, D coroutines
// (asio::co_spawn) each awaiting fsys::co_read_at / co_write_at (with
// FSYS_PEER_FORM=aw: async_read_at / async_write_at with asio::use_awaitable), or with
// FSYS_PEER_FORM=cb D slots re-issuing async_read_at / async_write_at from
// their completion handlers. The uring_service is made with
// issuer_mode::single_thread (SINGLE_ISSUER|DEFER_TASKRUN), the setup fsys
// documents for a context one thread runs; FSYS_PEER_ISSUER=auto leaves the
// default. fsys's own variables apply as usual (FSYS_INLINE_FAST_PATH=0 turns
// the inline fast path off).
#include "peer_common.hpp"

#include <fsys/co.hpp>
#include <fsys/file.hpp>
#include <fsys/uring_service.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <cstdio>
#include <exception>
#include <string>
#include <vector>

using namespace peerbench;
namespace asio = boost::asio;

namespace {

struct shared {
  fsys::file* f;
  budget* b;
  bool read;
  bool awaitable_form = false;  // FSYS_PEER_FORM=aw: co_await async_read_at(..., use_awaitable)
  std::uint64_t completed = 0;
};

asio::awaitable<void> co_worker(shared& s, unsigned seed) {
  block_buffer buf;
  block_picker pick(seed);
  const auto mb = asio::buffer(buf.p, block_size);
  while (s.b->take()) {
    const std::uint64_t blk = pick.next();
    const std::uint64_t off = blk * block_size;
    // co_read_at / co_write_at throw on failure, which ends the run.
    if (s.awaitable_form && s.read)
      check_read(buf.p, static_cast<long>(co_await s.f->async_read_at(off, mb, asio::use_awaitable)), blk,
                 "fsys read (use_awaitable)");
    else if (s.awaitable_form)
      check_write(static_cast<long>(co_await s.f->async_write_at(off, mb, asio::use_awaitable)),
                  "fsys write (use_awaitable)");
    else if (s.read)
      check_read(buf.p, static_cast<long>(co_await fsys::co_read_at(*s.f, off, mb)), blk, "fsys read");
    else
      check_write(static_cast<long>(co_await fsys::co_write_at(*s.f, off, mb)), "fsys write");
    ++s.completed;
  }
}

struct cb_slot {
  shared* s = nullptr;
  block_buffer buf;
  block_picker pick{1};
  std::uint64_t block = 0;

  void issue() {
    if (!s->b->take()) return;
    block = pick.next();
    const std::uint64_t off = block * block_size;
    // The handler captures only the slot, which outlives the run.
    if (s->read)
      s->f->async_read_at(off, asio::buffer(buf.p, block_size),
                          [this](boost::system::error_code ec, std::size_t n) { done(ec, n); });
    else
      s->f->async_write_at(off, asio::buffer(buf.p, block_size),
                           [this](boost::system::error_code ec, std::size_t n) { done(ec, n); });
  }
  void done(const boost::system::error_code& ec, std::size_t n) {
    if (ec) fail("fsys (callback): " + ec.message());
    if (s->read)
      check_read(buf.p, static_cast<long>(n), block, "fsys read (callback)");
    else
      check_write(static_cast<long>(n), "fsys write (callback)");
    ++s->completed;
    issue();
  }
};

}  // namespace

int main(int argc, char** argv) {
  const options o = parse(argc, argv);
  const std::string path = prepare_file(o);
  const char* form_env = std::getenv("FSYS_PEER_FORM");
  const bool callbacks = form_env && std::string(form_env) == "cb";
  const char* issuer_env = std::getenv("FSYS_PEER_ISSUER");
  const bool auto_issuer = issuer_env && std::string(issuer_env) == "auto";
  const char* fast_env = std::getenv("FSYS_INLINE_FAST_PATH");
  const bool no_fast_path = fast_env && std::string(fast_env) == "0";

  asio::io_context ctx(1);
  fsys::ring_options ro;
  if (!auto_issuer) ro.issuer = fsys::issuer_mode::single_thread;
  auto& svc = asio::make_service<fsys::uring_service>(ctx, ro);
  if (svc.active_backend() != fsys::backend::io_uring) fail("fsys fell back to the psync backend");
  fsys::file f(ctx, path, open_flags(o));

  budget b(o);
  shared s{&f, &b, o.is_read()};
  s.awaitable_form = form_env && std::string(form_env) == "aw";
  std::vector<cb_slot> slots(callbacks ? o.depth : 0);
  b.start();
  if (callbacks) {
    for (unsigned i = 0; i < o.depth; ++i) {
      slots[i].s = &s;
      slots[i].pick = block_picker(i + 1);
      slots[i].issue();
    }
  } else {
    for (unsigned i = 0; i < o.depth; ++i)
      asio::co_spawn(ctx, co_worker(s, i + 1), [](std::exception_ptr e) {
        if (!e) return;
        try {
          std::rethrow_exception(e);
        } catch (const std::exception& x) {
          fail(std::string("fsys coroutine: ") + x.what());
        }
      });
  }
  ctx.run();
  const double secs = b.measured_seconds();
  if (const char* v = std::getenv("FSYS_PEER_STATS"); v && std::string(v) == "1") {
    // Which way the reads and writes went (engine_stats), for the notes.
    const fsys::engine_stats st = svc.stats();
    std::fprintf(stderr,
                 "STATS ops_started=%llu enter_calls=%llu inline_reads=%llu inline_read_fallthroughs=%llu "
                 "batched_reads=%llu inline_writes=%llu batched_writes=%llu reactor_wakeups=%llu\n",
                 static_cast<unsigned long long>(st.ops_started), static_cast<unsigned long long>(st.enter_calls),
                 static_cast<unsigned long long>(st.inline_reads),
                 static_cast<unsigned long long>(st.inline_read_fallthroughs),
                 static_cast<unsigned long long>(st.batched_reads), static_cast<unsigned long long>(st.inline_writes),
                 static_cast<unsigned long long>(st.batched_writes),
                 static_cast<unsigned long long>(st.reactor_wakeups));
  }
  std::string impl = callbacks ? "fsys_cb" : s.awaitable_form ? "fsys_aw" : "fsys_co";
  if (no_fast_path) impl += "_nofastpath";
  if (auto_issuer) impl += "_autoissuer";
  report(impl.c_str(), o, b, s.completed, secs);
  return 0;
}
