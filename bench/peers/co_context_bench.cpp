// co_context (github.com/Codesire-Deng/co_context, C++20, a static library
// built with its own CMake Release configuration: -O3 -march=native, LTO):
// D co_context::task<> coroutines spawned on one co_context::io_context, each
// awaiting co_context::lazy::read / lazy::write, the way its README writes a
// program: context.co_spawn(task), context.start(), context.join(). The
// io_context runs on its own thread (start() makes it), which is the one
// thread all D coroutines run on; the main thread only waits in join(). The
// loop ends by itself once no coroutine is ready and no IO is in flight.
//
// Ring setup is fixed at compile time by co_context (config/uring.hpp,
// detail/uring_type.hpp): on kernel >= 6.1, COOP_TASKRUN | TASKRUN_FLAG |
// SINGLE_ISSUER | DEFER_TASKRUN, 32768 SQ entries, ring fd registered.
#include "peer_common.hpp"

#include <co_context/io_context.hpp>
#include <co_context/lazy_io.hpp>
#include <co_context/task.hpp>

#include <span>
#include <string>

using namespace peerbench;

namespace {

struct shared {
  budget* b;
  bool read;
  int fd;
  std::uint64_t completed = 0;
  bool started = false;
};

co_context::task<> worker(shared& s, unsigned seed) {
  block_buffer buf;
  block_picker pick(seed);
  // The first coroutine to run starts the clock: the io_context thread has
  // set up its ring by then.
  if (!s.started) {
    s.started = true;
    s.b->start();
  }
  while (s.b->take()) {
    const std::uint64_t blk = pick.next();
    const std::uint64_t off = blk * block_size;
    // Sound: `buf` lives in this coroutine's frame, which stays suspended
    // until the operation's CQE resumes it.
    if (s.read) {
      const int r = co_await co_context::lazy::read(s.fd, std::span<char>(reinterpret_cast<char*>(buf.p), block_size), off);
      check_read(buf.p, r, blk, "co_context read");
    } else {
      const int r =
          co_await co_context::lazy::write(s.fd, std::span<const char>(reinterpret_cast<const char*>(buf.p), block_size), off);
      check_write(r, "co_context write");
    }
    ++s.completed;
  }
}

}  // namespace

int main(int argc, char** argv) {
  const options o = parse(argc, argv);
  const std::string path = prepare_file(o);
  const int fd = open_or_die(path, open_flags(o));
  budget b(o);
  shared s{&b, o.is_read(), fd};
  {
    co_context::io_context ctx;
    for (unsigned i = 0; i < o.depth; ++i) ctx.co_spawn(worker(s, i + 1));
    ctx.start();
    ctx.join();
  }
  const double secs = b.measured_seconds();
  report("co_context", o, b, s.completed, secs);
  ::close(fd);
  return 0;
}
