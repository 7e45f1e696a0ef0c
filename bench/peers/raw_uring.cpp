// raw liburing, tuned: the strongest ring setup the peer libraries use, with
// nothing around it. One thread keeps `depth` reads (or writes) in flight on
// one ring:
//   - IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN (completion
//     task work runs only inside our io_uring_enter, never as an interrupt),
//     a ring sized for the depth (IORING_SETUP_CLAMP);
//   - the ring fd registered (io_uring_register_ring_fd: io_uring_enter skips
//     the fd table lookup) and the file registered (IOSQE_FIXED_FILE: no
//     per-request fget/fput);
//   - per loop turn exactly one io_uring_submit_and_wait(1), which submits
//     every SQE prepared since the last turn and waits for one completion;
//     then every CQE present is reaped with io_uring_for_each_cqe and one
//     io_uring_cq_advance, and each completed slot prepares its next SQE at
//     once (no allocation, no queue: the slot index is the user data).
// PEER_RING_SETUP=coop uses COOP_TASKRUN|TASKRUN_FLAG instead of
// DEFER_TASKRUN, =plain neither; PEER_FIXED_FILE=0 uses the plain fd.
#include "peer_common.hpp"

#include <liburing.h>

#include <string>
#include <vector>

using namespace peerbench;

int main(int argc, char** argv) {
  const options o = parse(argc, argv);
  const std::string path = prepare_file(o);
  const char* setup_env = std::getenv("PEER_RING_SETUP");
  const std::string setup = setup_env && *setup_env ? setup_env : "defer";
  const char* fixed_env = std::getenv("PEER_FIXED_FILE");
  const bool fixed = !(fixed_env && std::string(fixed_env) == "0");

  io_uring ring;
  io_uring_params p{};
  p.flags = IORING_SETUP_CLAMP | IORING_SETUP_SINGLE_ISSUER;
  if (setup == "defer") p.flags |= IORING_SETUP_DEFER_TASKRUN;
  else if (setup == "coop") p.flags |= IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG;
  else if (setup != "plain") fail("PEER_RING_SETUP must be defer, coop or plain");
  if (int r = io_uring_queue_init_params(o.depth < 8 ? 8 : o.depth, &ring, &p); r < 0)
    fail(std::string("io_uring_queue_init_params: ") + std::strerror(-r));
  if (int r = io_uring_register_ring_fd(&ring); r != 1)
    fail(std::string("io_uring_register_ring_fd: ") + std::strerror(r < 0 ? -r : EINVAL));

  const int fd = open_or_die(path, open_flags(o));
  int target = fd;
  if (fixed) {
    if (int r = io_uring_register_files(&ring, &fd, 1); r < 0)
      fail(std::string("io_uring_register_files: ") + std::strerror(-r));
    target = 0;
  }

  struct slot {
    block_buffer buf;
    block_picker pick{1};
    std::uint64_t block = 0;
  };
  std::vector<slot> slots(o.depth);
  for (unsigned i = 0; i < o.depth; ++i) slots[i].pick = block_picker(i + 1);

  budget b(o);
  const bool read = o.is_read();
  auto issue = [&](unsigned i) {
    if (!b.take()) return false;
    slot& s = slots[i];
    s.block = s.pick.next();
    io_uring_sqe* sqe = io_uring_get_sqe(&ring);  // never null: at most depth SQEs in flight
    // Sound: the slot's buffer and the file stay alive until the loop below
    // has reaped this operation's CQE; the loop ends only with nothing pending.
    if (read)
      io_uring_prep_read(sqe, target, s.buf.p, block_size, s.block * block_size);
    else
      io_uring_prep_write(sqe, target, s.buf.p, block_size, s.block * block_size);
    if (fixed) sqe->flags |= IOSQE_FIXED_FILE;
    io_uring_sqe_set_data64(sqe, i);
    return true;
  };

  std::uint64_t completed = 0;
  unsigned inflight = 0;
  b.start();
  for (unsigned i = 0; i < o.depth; ++i) inflight += issue(i) ? 1 : 0;
  while (inflight > 0) {
    int r = io_uring_submit_and_wait(&ring, 1);
    if (r < 0 && r != -EINTR) fail(std::string("io_uring_submit_and_wait: ") + std::strerror(-r));
    io_uring_cqe* cqe;
    unsigned head, seen = 0;
    io_uring_for_each_cqe(&ring, head, cqe) {
      ++seen;
      const unsigned i = static_cast<unsigned>(io_uring_cqe_get_data64(cqe));
      if (read)
        check_read(slots[i].buf.p, cqe->res, slots[i].block, "raw liburing read");
      else
        check_write(cqe->res, "raw liburing write");
      ++completed;
      if (!issue(i)) --inflight;
    }
    io_uring_cq_advance(&ring, seen);
  }
  const double secs = b.measured_seconds();
  report(("raw_uring_" + setup + (fixed ? "_fixed" : "")).c_str(), o, b, completed, secs);
  io_uring_queue_exit(&ring);
  ::close(fd);
  return 0;
}
