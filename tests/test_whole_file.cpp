// Whole files (<fsys/whole_file.hpp>): async_read_file into dynamic buffers,
// strings and byte vectors, limits, files whose size statx does not tell,
// async_write_file's modes and permissions, async_append_file, the durable
// forms, every completion token, cancellation and the co_* forms. Real files,
// a real ring; runs once per backend and with 4 threads.
#include <boost/test/unit_test.hpp>

#include "support/ring_fixture.hpp"
#include "support/run.hpp"
#include "support/temp_dir.hpp"

#include <fsys/fsys.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace asio = boost::asio;
namespace fs = std::filesystem;
using boost::system::error_code;
using fsys::test::pattern;
using fsys::test::temp_dir;

namespace {

std::string as_string(const std::vector<std::byte>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size());
}

// Reads `path` with async_read_file into a string; returns (error, bytes).
std::pair<error_code, std::size_t> read_into(asio::io_context& ctx, const fs::path& path, std::string& out,
                                             std::size_t limit = fsys::default_read_limit) {
  error_code ec = asio::error::would_block;
  std::size_t n = 99;
  fsys::async_read_file(ctx, path, out, limit, [&](error_code e, std::size_t k) {
    ec = e;
    n = k;
  });
  ctx.restart();
  fsys::test::run(ctx);
  return {ec, n};
}

}  // namespace

BOOST_AUTO_TEST_CASE(read_file_returns_every_byte_of_small_large_and_empty_files) {
  temp_dir dir;
  asio::io_context ctx;
  fsys::test::make_ring(ctx);
  // 40 MiB: more than one 16 MiB read; 1 byte; empty; not a page multiple.
  for (std::size_t size : {std::size_t{40} << 20, std::size_t{1}, std::size_t{0}, std::size_t{123457}}) {
    const auto data = pattern(size, size + 1);
    const fs::path p = dir.file("f" + std::to_string(size));
    fsys::test::write_file(p, data);
    std::string s = "old content";  // replaced
    auto [ec, n] = read_into(ctx, p, s);
    BOOST_TEST(!ec, ec.message());
    BOOST_TEST(n == size);
    BOOST_TEST(s.size() == size);
    BOOST_TEST((s == as_string(data)));

    std::vector<std::byte> v(3);
    error_code vec_ec = asio::error::would_block;
    fsys::async_read_file(ctx, p, v, fsys::default_read_limit, [&](error_code e, std::size_t) { vec_ec = e; });
    ctx.restart();
    fsys::test::run(ctx);
    BOOST_TEST(!vec_ec);
    BOOST_TEST((v == data));
  }
}

BOOST_AUTO_TEST_CASE(read_file_appends_to_a_dynamic_buffer_within_its_max_size) {
  temp_dir dir;
  asio::io_context ctx;
  fsys::test::make_ring(ctx);
  const fs::path p = dir.file("a.txt");
  fsys::test::write_file(p, pattern(5000, 3));
  std::string s = "prefix:";
  error_code ec = asio::error::would_block;
  std::size_t n = 0;
  fsys::async_read_file(ctx, p, asio::dynamic_buffer(s), fsys::default_read_limit, [&](error_code e, std::size_t k) {
    ec = e;
    n = k;
  });
  fsys::test::run(ctx);
  BOOST_TEST(!ec);
  BOOST_TEST(n == 5000u);
  BOOST_TEST((s == "prefix:" + as_string(pattern(5000, 3))));

  ec = asio::error::would_block;
  fsys::async_read_file(ctx, p, asio::dynamic_buffer(s, 7 + 5000 + 10), 100000,
                        [&](error_code e, std::size_t) { ec = e; });
  ctx.restart();
  fsys::test::run(ctx);
  // The buffer's max_size leaves room for 10 bytes only: refused, unchanged.
  BOOST_TEST((ec == fsys::errc::read_limit_exceeded));
  BOOST_TEST(s.size() == 5007u);
}

BOOST_AUTO_TEST_CASE(read_file_refuses_a_file_over_the_limit_and_accepts_one_at_it) {
  temp_dir dir;
  asio::io_context ctx;
  fsys::test::make_ring(ctx);
  const fs::path p = dir.file("limit.dat");
  fsys::test::write_file(p, pattern(4096, 5));
  std::string s = "keep";
  auto [ec, n] = read_into(ctx, p, s, 4095);
  BOOST_TEST((ec == fsys::errc::read_limit_exceeded));
  BOOST_TEST((ec == std::errc::file_too_large));
  BOOST_TEST(n == 0u);
  BOOST_TEST(s.empty());  // the string form empties its string
  auto [ec2, n2] = read_into(ctx, p, s, 4096);
  BOOST_TEST(!ec2);
  BOOST_TEST(n2 == 4096u);
}

// /proc files report size 0: the reads go on to the real end of file, and
// the limit holds there too.
BOOST_AUTO_TEST_CASE(read_file_reads_files_whose_size_statx_does_not_tell) {
  asio::io_context ctx;
  fsys::test::make_ring(ctx);
  std::string s;
  auto [ec, n] = read_into(ctx, "/proc/self/status", s);
  BOOST_TEST(!ec, ec.message());
  BOOST_TEST(n == s.size());
  BOOST_TEST(s.find("Name:") == 0u);
  BOOST_TEST(s.find("VmRSS:") != std::string::npos);  // near the end: read past the first piece
  auto [ec2, n2] = read_into(ctx, "/proc/self/status", s, 16);
  BOOST_TEST((ec2 == fsys::errc::read_limit_exceeded));
  BOOST_TEST(n2 == 0u);
}

BOOST_AUTO_TEST_CASE(read_file_errors_name_the_cause) {
  temp_dir dir;
  asio::io_context ctx;
  fsys::test::make_ring(ctx);
  std::string s;
  auto [missing, n1] = read_into(ctx, dir.file("nope"), s);
  BOOST_TEST((missing == std::errc::no_such_file_or_directory));
  auto [isdir, n2] = read_into(ctx, dir.path(), s);
  BOOST_TEST((isdir == std::errc::is_a_directory));
  auto [empty, n3] = read_into(ctx, "", s);
  BOOST_TEST((empty == std::errc::invalid_argument));
  (void)n1;
  (void)n2;
  (void)n3;
}

BOOST_AUTO_TEST_CASE(write_file_creates_truncates_and_refuses_as_asked) {
  temp_dir dir;
  asio::io_context ctx;
  fsys::test::make_ring(ctx);
  const fs::path p = dir.file("w.txt");
  auto write = [&](std::string_view text, fsys::write_file_options o) {
    error_code ec = asio::error::would_block;
    std::size_t n = 0;
    fsys::async_write_file(ctx, p, asio::buffer(text), o, [&](error_code e, std::size_t k) {
      ec = e;
      n = k;
    });
    ctx.restart();
    fsys::test::run(ctx);
    return std::make_pair(ec, n);
  };
  fsys::write_file_options excl;
  excl.how = fsys::write_file_mode::create_exclusive;
  fsys::write_file_options existing;
  existing.how = fsys::write_file_mode::truncate_existing;

  auto [e0, n0] = write("must not exist", existing);
  BOOST_TEST((e0 == std::errc::no_such_file_or_directory));
  BOOST_TEST(!fs::exists(p));
  auto [e1, n1] = write("first, longer content", excl);
  BOOST_TEST(!e1);
  BOOST_TEST(n1 == 21u);
  BOOST_TEST(as_string(fsys::test::read_file(p)) == "first, longer content");
  auto [e2, n2] = write("again", excl);
  BOOST_TEST((e2 == std::errc::file_exists));
  BOOST_TEST(as_string(fsys::test::read_file(p)) == "first, longer content");
  auto [e3, n3] = write("short", {});
  BOOST_TEST(!e3);
  BOOST_TEST(as_string(fsys::test::read_file(p)) == "short");  // truncated, not overwritten in place
  auto [e4, n4] = write("xy", existing);
  BOOST_TEST(!e4);
  BOOST_TEST(as_string(fsys::test::read_file(p)) == "xy");
  (void)n0;
  (void)n2;
  (void)n3;
  (void)n4;
}

BOOST_AUTO_TEST_CASE(write_file_gives_a_created_file_the_mode_asked_for_and_keeps_an_existing_files_mode) {
  temp_dir dir;
  asio::io_context ctx;
  fsys::test::make_ring(ctx);
  const mode_t old_umask = ::umask(022);
  const fs::path secret = dir.file("secret");
  fsys::write_file_options o;
  o.mode = 0600;
  error_code ec = asio::error::would_block;
  fsys::async_write_file(ctx, secret, asio::buffer(std::string_view("k")), o, [&](error_code e, std::size_t) { ec = e; });
  fsys::test::run(ctx);
  BOOST_TEST(!ec);
  struct stat st {};
  BOOST_REQUIRE(::stat(secret.c_str(), &st) == 0);
  BOOST_TEST((st.st_mode & 07777) == 0600u);
  // Rewritten with the default 0666: an existing file keeps 0600.
  ec = asio::error::would_block;
  fsys::async_write_file(ctx, secret, asio::buffer(std::string_view("k2")), fsys::write_file_options{},
                         [&](error_code e, std::size_t) { ec = e; });
  ctx.restart();
  fsys::test::run(ctx);
  BOOST_TEST(!ec);
  BOOST_REQUIRE(::stat(secret.c_str(), &st) == 0);
  BOOST_TEST((st.st_mode & 07777) == 0600u);
  // A mode with bits outside 07777 is refused, nothing created.
  o.mode = 010000;
  ec = {};
  fsys::async_write_file(ctx, dir.file("bad"), asio::buffer(std::string_view("x")), o,
                         [&](error_code e, std::size_t) { ec = e; });
  ctx.restart();
  fsys::test::run(ctx);
  BOOST_TEST((ec == std::errc::invalid_argument));
  BOOST_TEST(!fs::exists(dir.file("bad")));
  ::umask(old_umask);
}

BOOST_AUTO_TEST_CASE(write_file_takes_buffer_sequences_and_the_durable_form_completes_after_its_syncs) {
  temp_dir dir;
  asio::io_context ctx;
  auto& svc = fsys::test::make_ring(ctx);
  const fs::path p = dir.file("sub") / "durable.dat";
  fs::create_directory(dir.file("sub"));
  const auto a = pattern(70000, 7), b = pattern(1234, 8);
  std::array<asio::const_buffer, 2> bufs{asio::buffer(a), asio::buffer(b)};
  fsys::write_file_options o;
  o.durable = true;
  const auto before = svc.stats();
  error_code ec = asio::error::would_block;
  std::size_t n = 0;
  fsys::async_write_file(ctx, p, bufs, o, [&](error_code e, std::size_t k) {
    ec = e;
    n = k;
  });
  fsys::test::run(ctx);
  BOOST_TEST(!ec);
  BOOST_TEST(n == a.size() + b.size());
  auto back = fsys::test::read_file(p);
  BOOST_TEST(back.size() == a.size() + b.size());
  BOOST_TEST(std::equal(a.begin(), a.end(), back.begin()));
  BOOST_TEST(std::equal(b.begin(), b.end(), back.begin() + static_cast<std::ptrdiff_t>(a.size())));
  // open, write, fdatasync, close, then the directory: open, fsync, close.
  BOOST_TEST(svc.stats().ops_completed - before.ops_completed >= 7u);
}

BOOST_AUTO_TEST_CASE(append_file_appends_and_creates_only_when_asked) {
  temp_dir dir;
  asio::io_context ctx;
  fsys::test::make_ring(ctx);
  const fs::path p = dir.file("log.txt");
  auto append = [&](std::string_view text, fsys::append_file_options o) {
    error_code ec = asio::error::would_block;
    fsys::async_append_file(ctx, p, asio::buffer(text), o, [&](error_code e, std::size_t) { ec = e; });
    ctx.restart();
    fsys::test::run(ctx);
    return ec;
  };
  fsys::append_file_options no_create;
  no_create.create = false;
  BOOST_TEST((append("x", no_create) == std::errc::no_such_file_or_directory));
  BOOST_TEST(!append("one\n", {}));
  fsys::append_file_options durable;
  durable.durable = true;
  BOOST_TEST(!append("two\n", durable));
  BOOST_TEST(!append("three\n", no_create));
  BOOST_TEST(as_string(fsys::test::read_file(p)) == "one\ntwo\nthree\n");

  // Many appenders at once: every record lands whole, none lost.
  constexpr int records = 64;
  std::atomic<int> ok{0};
  std::vector<std::string> texts;
  for (int i = 0; i < records; ++i) texts.push_back("record " + std::to_string(100 + i) + "\n");
  for (int i = 0; i < records; ++i)
    fsys::async_append_file(ctx, p, asio::buffer(texts[static_cast<std::size_t>(i)]), fsys::append_file_options{},
                            [&](error_code e, std::size_t n) { ok += !e && n == 11; });
  ctx.restart();
  fsys::test::run(ctx);
  BOOST_TEST(ok.load() == records);
  const std::string all = as_string(fsys::test::read_file(p));
  BOOST_TEST(all.size() == 14u + records * 11u);
  for (const auto& t : texts) BOOST_TEST(all.find(t) != std::string::npos);
}

BOOST_AUTO_TEST_CASE(whole_file_operations_take_every_completion_token) {
  temp_dir dir;
  asio::io_context ctx;
  fsys::test::make_ring(ctx);
  const fs::path p = dir.file("tokens.txt");
  // deferred: nothing happens until it is launched.
  auto op = fsys::async_write_file(ctx, p, asio::buffer(std::string_view("deferred")), fsys::write_file_options{},
                                   asio::deferred);
  BOOST_TEST(!fs::exists(p));
  error_code ec = asio::error::would_block;
  std::move(op)([&](error_code e, std::size_t) { ec = e; });
  fsys::test::run(ctx);
  BOOST_TEST(!ec);
  // use_future, from a thread that does not run the context.
  std::string s;
  auto fut = fsys::async_read_file(ctx, p, s, fsys::default_read_limit, asio::use_future);
  std::thread runner([&] {
    ctx.restart();
    fsys::test::run(ctx);
  });
  BOOST_TEST(fut.get() == 8u);
  runner.join();
  BOOST_TEST(s == "deferred");
  // as_tuple through a coroutine, and the co_* forms.
  std::string co_content;
  std::size_t appended = 0;
  bool threw_with_path = false;
  asio::co_spawn(ctx, [&]() -> asio::awaitable<void> {
    auto [e, n] = co_await fsys::async_append_file(ctx, p, asio::buffer(std::string_view("+tuple")),
                                                    fsys::append_file_options{}, asio::as_tuple(asio::use_awaitable));
    BOOST_TEST(!e);
    appended = n;
    co_await fsys::co_append_file(ctx, p, asio::buffer(std::string_view("+co")));
    co_content = co_await fsys::co_read_file(ctx, p);
    co_await fsys::co_write_file(ctx, dir.file("co.txt"), asio::buffer(std::string_view("made")));
    try {
      co_await fsys::co_read_file(ctx, dir.file("missing.txt"));
    } catch (const fsys::filesystem_error& x) {
      threw_with_path = x.code() == std::errc::no_such_file_or_directory && x.path1() == dir.file("missing.txt") &&
                        std::string(x.what()).find("fsys::co_read_file \"") != std::string::npos;
    }
  }, [](std::exception_ptr e) { if (e) std::rethrow_exception(e); });
  ctx.restart();
  fsys::test::run(ctx);
  BOOST_TEST(appended == 6u);
  BOOST_TEST(co_content == "deferred+tuple+co");
  BOOST_TEST(as_string(fsys::test::read_file(dir.file("co.txt"))) == "made");
  BOOST_TEST(threw_with_path);
}

// A read cancelled while it runs ends with operation_aborted (or, when the
// kernel had done all of it, its result), the buffer unchanged on error, the
// file closed: no descriptor is left open.
BOOST_AUTO_TEST_CASE(cancelled_read_file_leaves_the_buffer_and_no_descriptor) {
  temp_dir dir;
  asio::io_context ctx;
  fsys::test::make_ring(ctx);
  const fs::path p = dir.file("big.dat");
  const auto data = pattern(std::size_t{48} << 20, 9);
  fsys::test::write_file(p, data);
  auto open_fds = [] {
    std::size_t n = 0;
    for ([[maybe_unused]] const auto& e : fs::directory_iterator("/proc/self/fd")) ++n;
    return n;
  };
  const std::size_t fds_before = open_fds();
  for (int round = 0; round < 4; ++round) {
    asio::cancellation_signal sig;
    std::string s = "unchanged";
    error_code ec = asio::error::would_block;
    std::size_t n = 0;
    fsys::async_read_file(ctx, p, asio::dynamic_buffer(s), fsys::default_read_limit,
                          asio::bind_cancellation_slot(sig.slot(), [&](error_code e, std::size_t k) {
                            ec = e;
                            n = k;
                          }));
    // Cancel after a few handler runs: at open, stat or a read.
    for (int i = 0; i < round; ++i) ctx.run_one();
    sig.emit(asio::cancellation_type::terminal);
    ctx.restart();
    ctx.run();
    if (ec) {
      BOOST_TEST((ec == asio::error::operation_aborted));
      BOOST_TEST(s == "unchanged");
      BOOST_TEST(n == 0u);
    } else {
      BOOST_TEST(s == "unchanged" + as_string(data));
    }
  }
  BOOST_TEST(open_fds() == fds_before);
}

BOOST_AUTO_TEST_CASE(resize_file_cuts_and_extends_by_path) {
  temp_dir dir;
  asio::io_context ctx;
  fsys::test::make_ring(ctx);
  const fs::path p = dir.file("r.dat");
  const auto data = pattern(10000, 11);
  fsys::test::write_file(p, data);
  auto resize = [&](const fs::path& path, std::uint64_t n) {
    error_code ec = asio::error::would_block;
    fsys::async_resize_file(ctx, path, n, [&](error_code e) { ec = e; });
    ctx.restart();
    fsys::test::run(ctx);
    return ec;
  };
  BOOST_TEST(!resize(p, 4000));
  auto back = fsys::test::read_file(p);
  BOOST_TEST(back.size() == 4000u);
  BOOST_TEST(std::equal(back.begin(), back.end(), data.begin()));
  BOOST_TEST(!resize(p, 8192));
  back = fsys::test::read_file(p);
  BOOST_TEST(back.size() == 8192u);
  BOOST_TEST(std::equal(back.begin(), back.begin() + 4000, data.begin()));
  BOOST_TEST(std::all_of(back.begin() + 4000, back.end(), [](std::byte b) { return b == std::byte{0}; }));
  BOOST_TEST((resize(dir.file("missing"), 1) == std::errc::no_such_file_or_directory));
  BOOST_TEST(!fs::exists(dir.file("missing")));
  BOOST_TEST((resize(dir.path(), 1) == std::errc::is_a_directory));
  bool threw = false;
  asio::co_spawn(ctx, [&]() -> asio::awaitable<void> {
    co_await fsys::co_resize_file(ctx, p, 0);
    try {
      co_await fsys::co_resize_file(ctx, dir.file("missing"), 0);
    } catch (const std::system_error& x) {
      threw = std::string(x.what()).find("missing") != std::string::npos;
    }
  }, [](std::exception_ptr e) { if (e) std::rethrow_exception(e); });
  ctx.restart();
  fsys::test::run(ctx);
  BOOST_TEST(fs::file_size(p) == 0u);
  BOOST_TEST(threw);
}
