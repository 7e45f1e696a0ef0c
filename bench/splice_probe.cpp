// fsys-splice-probe: measures the two zero-copy-or-not ways of sending
// pages that are not in the page cache from a file to a socket without
// blocking the sending thread on the disk, to choose async_send_file's cold
// path (docs/http.md, "SPLICE"):
//   read   io_uring READ of a chunk into a buffer, then write(2) to the socket
//          (what async_send_file does for chunks that are not cached: one copy
//          out of the page cache, one into the socket);
//   splice io_uring SPLICE of a chunk from the file into a pipe (the kernel
//          reads the pages in an io-wq worker), then splice(2) from the pipe to
//          the socket (no copy);
// and, for reference, sendfile(2) in the sending thread (zero copy, but the
// thread waits for the disk: what a blocking server does).
//
//   fsys-splice-probe FILE [chunk KiB = 64] [rounds = 3]
//
// Each run drops FILE's pages first (posix_fadvise DONTNEED after fdatasync),
// streams all of it into one end of a Unix socket pair whose other end a
// second thread drains, and prints MB/s and the sending thread's CPU time per
// MB (the sending thread alone, and with the io-wq workers that ran its
// requests: threads of this process). Not a Google Benchmark case: one run takes seconds of disk IO, and
// what it decides is a design choice recorded in docs/http.md.
#include <fcntl.h>
#include <liburing.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>
#include <thread>
#include <vector>

namespace {

[[noreturn]] void die(const char* what) {
  std::perror(what);
  std::exit(1);
}

double thread_cpu_seconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

double process_cpu_seconds() {
  rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  auto sec = [](const timeval& t) { return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) * 1e-6; };
  return sec(ru.ru_utime) + sec(ru.ru_stime);
}

// FSYS_PROBE_DROP_CACHES=1 (root): drops every clean page of the machine
// (/proc/sys/vm/drop_caches) instead of only the file's, for a run where no
// page of the file may stay behind.
void drop_pages(int fd) {
  ::fdatasync(fd);
  if (::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) != 0) die("posix_fadvise");
  if (const char* v = std::getenv("FSYS_PROBE_DROP_CACHES"); v && std::strcmp(v, "1") == 0) {
    ::sync();
    int d = ::open("/proc/sys/vm/drop_caches", O_WRONLY | O_CLOEXEC);
    if (d < 0 || ::write(d, "1", 1) != 1) die("/proc/sys/vm/drop_caches");
    ::close(d);
  }
}

// Writes all of [p, p + n) to the blocking socket.
void write_all(int s, const char* p, std::size_t n) {
  while (n > 0) {
    ssize_t w = ::write(s, p, n);
    if (w < 0) die("write");
    p += w;
    n -= static_cast<std::size_t>(w);
  }
}

int wait_one(io_uring& ring) {
  io_uring_cqe* cqe;
  if (io_uring_wait_cqe(&ring, &cqe) != 0) die("io_uring_wait_cqe");
  int res = cqe->res;
  io_uring_cqe_seen(&ring, cqe);
  return res;
}

std::uint64_t send_read(io_uring& ring, int fd, int sock, std::uint64_t size, std::size_t chunk) {
  std::vector<char> buf(chunk);
  std::uint64_t off = 0;
  while (off < size) {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring);
    io_uring_prep_read(sqe, fd, buf.data(), static_cast<unsigned>(chunk), off);
    io_uring_submit(&ring);
    int r = wait_one(ring);
    if (r <= 0) die("ring read");
    write_all(sock, buf.data(), static_cast<std::size_t>(r));
    off += static_cast<std::uint64_t>(r);
  }
  return off;
}

std::uint64_t send_splice(io_uring& ring, int fd, int sock, std::uint64_t size, std::size_t chunk) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) die("pipe2");
  ::fcntl(p[1], F_SETPIPE_SZ, static_cast<int>(chunk));
  std::uint64_t off = 0;
  while (off < size) {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring);
    io_uring_prep_splice(sqe, fd, static_cast<std::int64_t>(off), p[1], -1, static_cast<unsigned>(chunk),
                         SPLICE_F_MOVE);
    io_uring_submit(&ring);
    int r = wait_one(ring);
    if (r <= 0) die("ring splice");
    for (int left = r; left > 0;) {
      ssize_t w = ::splice(p[0], nullptr, sock, nullptr, static_cast<std::size_t>(left), SPLICE_F_MOVE);
      if (w <= 0) die("splice to socket");
      left -= static_cast<int>(w);
    }
    off += static_cast<std::uint64_t>(r);
  }
  ::close(p[0]);
  ::close(p[1]);
  return off;
}

std::uint64_t send_sendfile(int fd, int sock, std::uint64_t size, std::size_t chunk) {
  off_t off = 0;
  while (static_cast<std::uint64_t>(off) < size) {
    ssize_t r = ::sendfile(sock, fd, &off, chunk);
    if (r <= 0) die("sendfile");
  }
  return static_cast<std::uint64_t>(off);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s FILE [chunk KiB] [rounds]\n", argv[0]);
    return 2;
  }
  const std::size_t chunk = (argc > 2 ? std::strtoul(argv[2], nullptr, 10) : 64) * 1024;
  const int rounds = argc > 3 ? std::atoi(argv[3]) : 3;
  int fd = ::open(argv[1], O_RDONLY | O_CLOEXEC);
  if (fd < 0) die("open");
  struct stat sb;
  if (::fstat(fd, &sb) != 0) die("fstat");
  const auto size = static_cast<std::uint64_t>(sb.st_size);
  io_uring ring;
  if (io_uring_queue_init(8, &ring, 0) != 0) die("io_uring_queue_init");
  std::printf("file %s, %.0f MiB, chunk %zu KiB\n", argv[1], static_cast<double>(size) / 1048576.0, chunk / 1024);
  for (int round = 0; round < rounds; ++round) {
    for (const char* how : {"read", "splice", "sendfile"}) {
      int sv[2];
      if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) die("socketpair");
      std::atomic<std::uint64_t> drained{0};
      double reader_cpu = 0;
      std::thread reader([&] {
        const double c0 = thread_cpu_seconds();
        std::vector<char> b(1 << 20);
        for (;;) {
          ssize_t r = ::read(sv[1], b.data(), b.size());
          if (r <= 0) break;
          drained += static_cast<std::uint64_t>(r);
        }
        reader_cpu = thread_cpu_seconds() - c0;
      });
      drop_pages(fd);
      const double cpu0 = thread_cpu_seconds();
      const double all0 = process_cpu_seconds();
      const auto t0 = std::chrono::steady_clock::now();
      std::uint64_t sent = std::strcmp(how, "read") == 0     ? send_read(ring, fd, sv[0], size, chunk)
                           : std::strcmp(how, "splice") == 0 ? send_splice(ring, fd, sv[0], size, chunk)
                                                             : send_sendfile(fd, sv[0], size, chunk);
      ::shutdown(sv[0], SHUT_WR);
      reader.join();
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      const double cpu = thread_cpu_seconds() - cpu0;
      // The process's CPU but the draining thread's: the sending thread and
      // the kernel's io-wq workers (threads of this process) together.
      const double others = process_cpu_seconds() - all0 - reader_cpu;
      ::close(sv[0]);
      ::close(sv[1]);
      if (sent != size || drained != size) {
        std::fprintf(stderr, "%s: sent %llu, drained %llu of %llu\n", how, static_cast<unsigned long long>(sent),
                     static_cast<unsigned long long>(drained.load()), static_cast<unsigned long long>(size));
        return 1;
      }
      const double mb = static_cast<double>(size) / 1e6;
      std::printf("round %d %-8s %7.1f MB/s  sending thread %6.1f us/MB  with io-wq workers %6.1f us/MB\n", round,
                  how, mb / secs, cpu / mb * 1e6, others / mb * 1e6);
      std::fflush(stdout);
    }
  }
  io_uring_queue_exit(&ring);
  return 0;
}
