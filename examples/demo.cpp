// fsys demo: prints what the kernel offers and which backend runs, then
// writes a file durably, syncs it and reads it back with the coroutine API.
#include <fsys/fsys.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

namespace asio = boost::asio;

static asio::awaitable<bool> round_trip(std::filesystem::path path) {
  auto ex = co_await asio::this_coro::executor;
  fsys::file f(ex, path, O_RDWR | O_CREAT | O_TRUNC);

  std::vector<char> data(1 << 20);
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>('a' + i % 26);

  std::size_t n = co_await fsys::co_write_linked_fsync(f, 0, asio::buffer(data));
  std::printf("co_write_linked_fsync: %zu bytes written and durable\n", n);
  n = co_await fsys::co_write_at(f, data.size(), asio::buffer("tail", 4));
  co_await fsys::co_fdatasync(f);
  std::printf("co_write_at + co_fdatasync: %zu more bytes\n", n);

  std::vector<char> back(data.size() + 4);
  n = co_await fsys::co_read_at(f, 0, asio::buffer(back));
  bool ok = n == back.size() && std::memcmp(back.data(), data.data(), data.size()) == 0 &&
            std::memcmp(back.data() + data.size(), "tail", 4) == 0;
  std::printf("co_read_at: %zu bytes read back, %s\n", n, ok ? "all bytes match" : "MISMATCH");
  co_return ok;
}

int main(int argc, char** argv) {
  std::filesystem::path path = argc > 1 && *argv[1] ? argv[1]
                                                    : std::filesystem::temp_directory_path() / "fsys-demo.dat";
  const fsys::ring_features& feat = fsys::probe_features();
  std::printf("kernel: %s\n", feat.summary().c_str());

  asio::io_context ctx;
  auto& svc = asio::use_service<fsys::uring_service>(ctx);
  std::printf("backend: %s", svc.active_backend() == fsys::backend::io_uring ? "io_uring" : "psync");
  if (svc.active_backend() == fsys::backend::io_uring)
    std::printf(" (setup flags 0x%x)\n", svc.setup_flags());
  else
    std::printf(" (io_uring not used: %s)\n", svc.fallback_reason().message().c_str());

  bool ok = false;
  asio::co_spawn(ctx, round_trip(path), [&](std::exception_ptr e, bool r) {
    if (e) {
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        std::printf("error: %s\n", ex.what());
      }
    }
    ok = r;
  });
  ctx.run();
  std::filesystem::remove(path);
  auto st = svc.stats();
  std::printf("io_uring_enter calls: %llu for %llu operations\n",
              static_cast<unsigned long long>(st.enter_calls),
              static_cast<unsigned long long>(st.ops_completed));
  std::printf("%s\n", ok ? "demo OK" : "demo FAILED");
  return ok ? 0 : 1;
}
