// A consumer of fsys: writes a file durably with co_write_linked_fsync, reads
// it back with co_read_at, and checks every byte. Built by
// scripts/consumer_check in every way a user consumes fsys: as a Meson
// subproject (a directory, a [wrap-git] and a [wrap-file] wrap), with plain
// g++ against an install found through pkg-config, and as a CMake project
// (tests/consumer_cmake). When the build defines FSYS_EXPECTED_VERSION (the
// version pkg-config or CMake reported), it must equal FSYS_VERSION_STRING.
#include <fsys/fsys.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <string>
#include <vector>

namespace asio = boost::asio;

static asio::awaitable<bool> round_trip(std::string path) {
  fsys::file f(co_await asio::this_coro::executor, path, O_RDWR | O_TRUNC);

  // 256 KiB plus an odd tail, so the transfer is not a round number.
  std::vector<unsigned char> out((256 << 10) + 123);
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = static_cast<unsigned char>(i * 131 + 7);

  const std::size_t written = co_await fsys::co_write_linked_fsync(f, 4096, asio::buffer(out));
  std::vector<unsigned char> in(out.size() + 100);  // asks for more than the file holds
  const std::size_t read = co_await fsys::co_read_at(f, 4096, asio::buffer(in));

  const bool ok = written == out.size() && read == out.size() && f.size() == 4096 + out.size() &&
                  std::memcmp(in.data(), out.data(), out.size()) == 0;
  std::printf("fsys consumer: wrote %zu bytes durably, read back %zu: %s\n", written, read,
              ok ? "bytes match" : "MISMATCH");
  co_return ok;
}

int main() {
#ifdef FSYS_EXPECTED_VERSION
  if (std::strcmp(FSYS_EXPECTED_VERSION, FSYS_VERSION_STRING) != 0) {
    std::fprintf(stderr, "fsys consumer: package version %s, headers say %s\n", FSYS_EXPECTED_VERSION,
                 FSYS_VERSION_STRING);
    return 1;
  }
#endif
  std::printf("fsys consumer: built against fsys %s\n", FSYS_VERSION_STRING);
  std::string path = (std::filesystem::temp_directory_path() / "fsys-consumer-XXXXXX").string();
  int fd = ::mkstemp(path.data());
  if (fd < 0) {
    std::perror("mkstemp");
    return 1;
  }
  ::close(fd);

  asio::io_context ctx;
  bool ok = false;
  asio::co_spawn(ctx, round_trip(path), [&](std::exception_ptr e, bool result) {
    if (e) {
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        std::fprintf(stderr, "fsys consumer: %s\n", ex.what());
      }
    }
    ok = result;
  });
  ctx.run();
  std::filesystem::remove(path);
  return ok ? 0 : 1;
}
