// condy (github.com/wokron/condy, header-only, C++20): D condy::Coro tasks on
// one condy::Runtime, each awaiting condy::async_read / async_write, the way
// its guide writes a file reader: co_spawn(runtime, coro).detach(),
// runtime.allow_exit(), runtime.run() on the calling thread.
//
// Ring setup (condy::Runtime always sets CLAMP | SINGLE_ISSUER | SUBMIT_ALL |
// R_DISABLED and registers the ring fd in run()): RuntimeOptions
// .enable_defer_taskrun() (DEFER_TASKRUN | TASKRUN_FLAG), condy's option for
// a runtime that one thread drives, and the file registered in the runtime's
// FdTable and used through condy::fixed(0), as condy's guide recommends for
// files used many times. PEER_RING_SETUP=coop uses enable_coop_taskrun(),
// =plain neither; PEER_FIXED_FILE=0 passes the plain fd.
#include "peer_common.hpp"

#include <condy.hpp>

#include <string>

using namespace peerbench;

namespace {

struct shared {
  budget* b;
  bool read;
  bool fixed;
  int fd;
  std::uint64_t completed = 0;
};

condy::Coro<void> worker(shared& s, unsigned seed) {
  block_buffer buf;
  block_picker pick(seed);
  while (s.b->take()) {
    const std::uint64_t blk = pick.next();
    const __u64 off = blk * block_size;
    int r;
    // Sound: `buf` lives in this coroutine's frame, which is suspended until
    // the operation's CQE resumes it.
    if (s.read) {
      r = s.fixed ? co_await condy::async_read(condy::fixed(0), condy::buffer(buf.p, block_size), off)
                  : co_await condy::async_read(s.fd, condy::buffer(buf.p, block_size), off);
      check_read(buf.p, r, blk, "condy read");
    } else {
      r = s.fixed ? co_await condy::async_write(condy::fixed(0), condy::buffer(buf.p, block_size), off)
                  : co_await condy::async_write(s.fd, condy::buffer(buf.p, block_size), off);
      check_write(r, "condy write");
    }
    ++s.completed;
  }
}

}  // namespace

int main(int argc, char** argv) {
  const options o = parse(argc, argv);
  const std::string path = prepare_file(o);
  const char* setup_env = std::getenv("PEER_RING_SETUP");
  const std::string setup = setup_env && *setup_env ? setup_env : "defer";
  const char* fixed_env = std::getenv("PEER_FIXED_FILE");
  const bool fixed = !(fixed_env && std::string(fixed_env) == "0");

  condy::RuntimeOptions ro;
  ro.sq_size(o.depth < 128 ? 128 : o.depth);
  if (setup == "defer") ro.enable_defer_taskrun();
  else if (setup == "coop") ro.enable_coop_taskrun();
  else if (setup != "plain") fail("PEER_RING_SETUP must be defer, coop or plain");
  condy::Runtime runtime(ro);

  const int fd = open_or_die(path, open_flags(o));
  if (fixed) {
    if (int r = runtime.fd_table().init(&fd, 1); r < 0) fail(std::string("condy fd_table init: ") + std::strerror(-r));
  }
  budget b(o);
  shared s{&b, o.is_read(), fixed, fd};
  b.start();
  for (unsigned i = 0; i < o.depth; ++i) condy::co_spawn(runtime, worker(s, i + 1)).detach();
  runtime.allow_exit();
  runtime.run();
  const double secs = b.measured_seconds();
  report(("condy_" + setup + (fixed ? "_fixed" : "")).c_str(), o, b, s.completed, secs);
  ::close(fd);
  return 0;
}
