// liburing4cpp (github.com/CarterLi/liburing4cpp, header-only over liburing):
// D uio::task<> coroutines on one uio::io_service, each awaiting
// service.read / service.write, run by service.run(main_task) on the calling
// thread, as its README and demos do. uio::task starts eagerly; the main task
// starts the D workers and awaits each.
//
// Ring setup: io_service(entries, flags) with its defaults as the README and
// demos use them (64 entries, no setup flags: no SINGLE_ISSUER, no
// DEFER_TASKRUN, ring fd not registered). PEER_RING_SETUP=defer passes
// SINGLE_ISSUER | DEFER_TASKRUN, =coop COOP_TASKRUN | TASKRUN_FLAG.
// The demos' -O3 -march=native are its recommended flags.
#include "peer_common.hpp"

#include <liburing.h>
// liburing4cpp b8eac66 names a feature bit that liburing's header has only
// since 2.4 (Debian 12 ships 2.3); it is only printed in verbose builds.
#ifndef IORING_FEAT_REG_REG_RING
#define IORING_FEAT_REG_REG_RING (1U << 13)
#endif
#include <liburing/io_service.hpp>

#include <string>
#include <vector>

using namespace peerbench;

namespace {

struct shared {
  uio::io_service* svc;
  budget* b;
  bool read;
  int fd;
  std::uint64_t completed = 0;
};

uio::task<> worker(shared& s, unsigned seed) {
  block_buffer buf;
  block_picker pick(seed);
  while (s.b->take()) {
    const std::uint64_t blk = pick.next();
    const off_t off = static_cast<off_t>(blk * block_size);
    // Sound: `buf` lives in this coroutine's frame, which stays suspended
    // until the operation's CQE resumes it.
    if (s.read) {
      const int r = co_await s.svc->read(s.fd, buf.p, block_size, off);
      check_read(buf.p, r, blk, "liburing4cpp read");
    } else {
      const int r = co_await s.svc->write(s.fd, buf.p, block_size, off);
      check_write(r, "liburing4cpp write");
    }
    ++s.completed;
  }
}

uio::task<> main_task(shared& s, unsigned depth) {
  std::vector<uio::task<>> workers;
  workers.reserve(depth);
  for (unsigned i = 0; i < depth; ++i) workers.push_back(worker(s, i + 1));
  for (auto& w : workers) co_await w;
}

}  // namespace

int main(int argc, char** argv) {
  const options o = parse(argc, argv);
  const std::string path = prepare_file(o);
  const char* setup_env = std::getenv("PEER_RING_SETUP");
  const std::string setup = setup_env && *setup_env ? setup_env : "plain";
  std::uint32_t flags = 0;
  if (setup == "defer") flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
  else if (setup == "coop") flags = IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG;
  else if (setup != "plain") fail("PEER_RING_SETUP must be defer, coop or plain");
  uio::io_service service(o.depth < 64 ? 64 : static_cast<int>(o.depth), flags);
  const int fd = open_or_die(path, open_flags(o));
  budget b(o);
  shared s{&service, &b, o.is_read(), fd};
  b.start();
  auto t = main_task(s, o.depth);
  service.run(t);
  const double secs = b.measured_seconds();
  report(("liburing4cpp_" + setup).c_str(), o, b, s.completed, secs);
  ::close(fd);
  return 0;
}
