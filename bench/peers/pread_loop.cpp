// pread/pwrite from one thread: the blocking loop a program without any
// asynchronous IO would run. The depth of the case only picks how many block
// sequences are interleaved (slot i uses block_picker(i + 1), taken round
// robin), so that the blocks read are those the asynchronous programs read.
#include "peer_common.hpp"

#include <string>
#include <vector>

using namespace peerbench;

int main(int argc, char** argv) {
  const options o = parse(argc, argv);
  const std::string path = prepare_file(o);
  const int fd = open_or_die(path, open_flags(o));
  std::vector<block_picker> picks;
  for (unsigned i = 0; i < o.depth; ++i) picks.emplace_back(i + 1);
  block_buffer buf;
  budget b(o);
  std::uint64_t completed = 0;
  b.start();
  for (unsigned i = 0; b.take(); i = i + 1 == o.depth ? 0 : i + 1) {
    const std::uint64_t blk = picks[i].next();
    const off_t off = static_cast<off_t>(blk * block_size);
    if (o.is_read())
      check_read(buf.p, ::pread(fd, buf.p, block_size, off), blk, "pread");
    else
      check_write(::pwrite(fd, buf.p, block_size, off), "pwrite");
    ++completed;
  }
  const double secs = b.measured_seconds();
  report(o.is_read() ? "pread_1t" : "pwrite_1t", o, b, completed, secs);
  ::close(fd);
  return 0;
}
