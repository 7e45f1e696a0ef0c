// Directories: listings (whole and in getdents64 batches) compared byte for
// byte with std::filesystem, their errors and cancellation; async_remove_all
// on deep and wide trees, and the symlink attacks it must resist (a link to a
// directory outside the tree, a directory swapped for such a link during the
// removal, a symlink as the root). Runs once per backend and with 4 threads.
#include <boost/test/unit_test.hpp>

#include "support/ring_fixture.hpp"
#include "support/run.hpp"
#include "support/temp_dir.hpp"

#include <fsys/fsys.hpp>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <fcntl.h>
#include <grp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace asio = boost::asio;
namespace fs = std::filesystem;
using boost::system::error_code;
using fsys::test::temp_dir;

namespace {

void drain(asio::io_context& ctx) {
  fsys::test::run(ctx);
  ctx.restart();
}

void touch(const fs::path& p, const std::string& content = {}) {
  std::ofstream out(p, std::ios::binary);
  out << content;
}

std::uint64_t inode_of(const fs::path& p) {
  struct stat st;
  BOOST_REQUIRE(::lstat(p.c_str(), &st) == 0);
  return st.st_ino;
}

fsys::entry_type type_of(fs::file_type t) {
  switch (t) {
    case fs::file_type::regular: return fsys::entry_type::regular;
    case fs::file_type::directory: return fsys::entry_type::directory;
    case fs::file_type::symlink: return fsys::entry_type::symlink;
    case fs::file_type::block: return fsys::entry_type::block;
    case fs::file_type::character: return fsys::entry_type::character;
    case fs::file_type::fifo: return fsys::entry_type::fifo;
    case fs::file_type::socket: return fsys::entry_type::socket;
    default: return fsys::entry_type::unknown;
  }
}

// What std::filesystem::directory_iterator lists, by name.
std::map<std::string, fsys::directory_entry> std_listing(const fs::path& dir) {
  std::map<std::string, fsys::directory_entry> m;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().native();
    m[name] = fsys::directory_entry{name, type_of(e.symlink_status().type()), inode_of(e.path())};
  }
  return m;
}

std::map<std::string, fsys::directory_entry> by_name(const std::vector<fsys::directory_entry>& v) {
  std::map<std::string, fsys::directory_entry> m;
  for (const auto& e : v) BOOST_TEST(m.emplace(e.name, e).second);  // no duplicates
  return m;
}

struct listing {
  error_code ec;
  std::vector<fsys::directory_entry> entries;
};

listing read_dir(asio::io_context& ctx, const fs::path& p) {
  std::optional<listing> got;
  fsys::async_read_directory(ctx, p, [&](error_code ec, std::vector<fsys::directory_entry> v) {
    got = listing{ec, std::move(v)};
  });
  drain(ctx);
  BOOST_REQUIRE(got.has_value());
  return *got;
}

// Lists `p` with a basic_directory, batch after batch; `batches` gets each
// batch's size.
listing read_batches(asio::io_context& ctx, const fs::path& p, std::vector<std::size_t>* batches = nullptr,
                     std::size_t buffer = fsys::detail::directory_buffer_size,
                     std::size_t* batch_bytes_max = nullptr) {
  fsys::directory d(ctx, buffer);
  listing out;
  std::optional<error_code> opened;
  d.async_open(p, [&](error_code ec) { opened = ec; });
  drain(ctx);
  BOOST_REQUIRE(opened.has_value());
  if (*opened) return listing{*opened, {}};
  BOOST_TEST(d.is_open());
  for (;;) {
    std::optional<error_code> got;
    std::size_t n = 0;
    d.async_next_batch([&](error_code ec, std::span<const fsys::directory_entry_view> batch) {
      got = ec;
      n = batch.size();
      std::size_t bytes = 0;
      for (const auto& e : batch) {
        out.entries.push_back(fsys::directory_entry{std::string(e.name), e.type, e.inode});
        // The kernel's record for this entry: 19 header bytes, the name and
        // its NUL, padded to 8.
        bytes += (19 + e.name.size() + 1 + 7) / 8 * 8;
      }
      if (batch_bytes_max) *batch_bytes_max = std::max(*batch_bytes_max, bytes);
    });
    drain(ctx);
    BOOST_REQUIRE(got.has_value());
    if (*got) return listing{*got, {}};
    if (n == 0) break;
    if (batches) batches->push_back(n);
  }
  std::optional<error_code> closed;
  d.async_close([&](error_code ec) { closed = ec; });
  drain(ctx);
  BOOST_TEST(!closed.value());
  return out;
}

struct removal {
  error_code ec;
  std::uint64_t removed = 0;
};

removal remove_all(asio::io_context& ctx, const fs::path& p) {
  std::optional<removal> got;
  fsys::async_remove_all(ctx, p, [&](error_code ec, std::uint64_t n) { got = removal{ec, n}; });
  drain(ctx);
  BOOST_REQUIRE(got.has_value());
  return *got;
}

// A directory of every kind of entry a test can make without devices.
void make_mixed(const fs::path& d) {
  fs::create_directory(d);
  touch(d / "regular", "x");
  touch(d / "with space and ünïcode", "y");
  touch(d / std::string(200, 'n'));
  fs::create_directory(d / "subdir");
  fs::create_symlink("regular", d / "link_to_file");
  fs::create_symlink("subdir", d / "link_to_dir");
  fs::create_symlink("nowhere", d / "dangling");
  BOOST_REQUIRE(::mkfifo((d / "fifo").c_str(), 0644) == 0);
  const int s = ::socket(AF_UNIX, SOCK_STREAM, 0);
  BOOST_REQUIRE(s >= 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const std::string sp = (d / "sock").native();
  if (sp.size() < sizeof addr.sun_path) {
    std::memcpy(addr.sun_path, sp.c_str(), sp.size() + 1);
    BOOST_REQUIRE(::bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  }
  ::close(s);
}

}  // namespace

BOOST_AUTO_TEST_CASE(listing_matches_directory_iterator) {
  temp_dir dir;
  const fs::path d = dir.file("mixed");
  make_mixed(d);
  asio::io_context ctx;
  fsys::test::make_ring(ctx);
  const auto expected = std_listing(d);
  BOOST_TEST(expected.size() >= 9u);

  listing whole = read_dir(ctx, d);
  BOOST_TEST(!whole.ec);
  const auto got = by_name(whole.entries);
  BOOST_TEST(got.size() == expected.size());
  for (const auto& [name, e] : expected) {
    auto it = got.find(name);
    BOOST_REQUIRE_MESSAGE(it != got.end(), "missing " << name);
    BOOST_TEST((it->second.name == e.name));  // byte-exact
    BOOST_TEST((it->second.type == e.type), name);
    BOOST_TEST(it->second.inode == e.inode);
  }
  // This filesystem gives d_type: no entry is `unknown`.
  for (const auto& e : whole.entries) BOOST_TEST((e.type != fsys::entry_type::unknown), e.name);

  listing batched = read_batches(ctx, d);
  BOOST_TEST(!batched.ec);
  BOOST_TEST((by_name(batched.entries) == got));
  // The same order as the whole listing (both are the directory's order).
  BOOST_TEST(batched.entries.size() == whole.entries.size());
  for (std::size_t i = 0; i < std::min(batched.entries.size(), whole.entries.size()); ++i)
    BOOST_TEST((batched.entries[i] == whole.entries[i]));
}

BOOST_AUTO_TEST_CASE(empty_directory) {
  temp_dir dir;
  fs::create_directory(dir.file("empty"));
  asio::io_context ctx;
  fsys::test::make_ring(ctx);
  listing l = read_dir(ctx, dir.file("empty"));
  BOOST_TEST(!l.ec);
  BOOST_TEST(l.entries.empty());
  std::vector<std::size_t> batches;
  listing b = read_batches(ctx, dir.file("empty"), &batches);
  BOOST_TEST(!b.ec);
  BOOST_TEST(b.entries.empty());
  BOOST_TEST(batches.empty());
}

BOOST_AUTO_TEST_CASE(listing_errors) {
  temp_dir dir;
  touch(dir.file("file"));
  fs::create_symlink("file", dir.file("link_to_file"));
  asio::io_context ctx;
  fsys::test::make_ring(ctx);
  BOOST_TEST((read_dir(ctx, dir.file("missing")).ec == boost::system::errc::no_such_file_or_directory));
  BOOST_TEST((read_dir(ctx, dir.file("file")).ec == boost::system::errc::not_a_directory));
  BOOST_TEST((read_dir(ctx, dir.file("link_to_file")).ec == boost::system::errc::not_a_directory));
  BOOST_TEST((read_dir(ctx, "").ec == boost::system::errc::invalid_argument));
  BOOST_TEST((read_batches(ctx, dir.file("missing")).ec == boost::system::errc::no_such_file_or_directory));
  BOOST_TEST((read_batches(ctx, dir.file("file")).ec == boost::system::errc::not_a_directory));
  // A batch of a directory never opened.
  fsys::directory d(ctx);
  std::optional<error_code> got;
  d.async_next_batch([&](error_code ec, std::span<const fsys::directory_entry_view>) { got = ec; });
  drain(ctx);
  BOOST_TEST((got.value() == fsys::errc::not_open));
}

BOOST_AUTO_TEST_CASE(co_forms_name_the_path) {
  temp_dir dir;
  fs::create_directory(dir.file("d"));
  touch(dir.file("d") / "a");
  asio::io_context ctx;
  fsys::test::make_ring(ctx);
  std::vector<fsys::directory_entry> entries;
  std::uint64_t removed = 0;
  std::string missing_what;
  fs::path missing_path;
  asio::co_spawn(
      ctx,
      [&]() -> asio::awaitable<void> {
        entries = co_await fsys::co_read_directory(ctx, dir.file("d"));
        try {
          co_await fsys::co_read_directory(ctx, dir.file("missing"));
        } catch (const fsys::filesystem_error& e) {
          missing_what = e.what();
          missing_path = e.path1();
        }
        removed = co_await fsys::co_remove_all(ctx, dir.file("d"));
      },
      asio::detached);
  drain(ctx);
  BOOST_TEST(entries.size() == 1u);
  BOOST_TEST(removed == 2u);
  BOOST_TEST(!fs::exists(dir.file("d")));
  BOOST_TEST(missing_what.find("fsys::co_read_directory") != std::string::npos, missing_what);
  BOOST_TEST(missing_what.find(dir.file("missing").native()) != std::string::npos, missing_what);
  BOOST_TEST(missing_path == dir.file("missing"));
}

BOOST_AUTO_TEST_CASE(hundred_thousand_entries_in_batches) {
  temp_dir dir;
  const fs::path d = dir.file("big");
  fs::create_directory(d);
  constexpr int count = 100000;
  {
    const int dfd = ::open(d.c_str(), O_RDONLY | O_DIRECTORY);
    BOOST_REQUIRE(dfd >= 0);
    char name[32];
    for (int i = 0; i < count; ++i) {
      std::snprintf(name, sizeof name, "entry-%06d", i);
      const int fd = ::openat(dfd, name, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
      BOOST_REQUIRE(fd >= 0);
      ::close(fd);
    }
    ::close(dfd);
  }
  asio::io_context ctx;
  fsys::test::make_ring(ctx);
  std::vector<std::size_t> batches;
  std::size_t max_bytes = 0;
  listing b = read_batches(ctx, d, &batches, fsys::detail::directory_buffer_size, &max_bytes);
  BOOST_TEST(!b.ec);
  BOOST_TEST(b.entries.size() == static_cast<std::size_t>(count));
  std::set<std::string> names;
  for (const auto& e : b.entries) names.insert(e.name);
  BOOST_TEST(names.size() == static_cast<std::size_t>(count));  // no duplicates
  BOOST_TEST(*names.begin() == "entry-000000");
  BOOST_TEST(*names.rbegin() == "entry-099999");
  // Every batch is what one getdents64 call into 32 KiB returns: its records
  // fit the buffer, and there are as many batches as that takes.
  BOOST_TEST(max_bytes <= fsys::detail::directory_buffer_size);
  const std::size_t per_record = (19 + 12 + 1 + 7) / 8 * 8;  // 40 bytes
  const std::size_t min_batches = count * per_record / fsys::detail::directory_buffer_size;
  BOOST_TEST(batches.size() >= min_batches);
  BOOST_TEST_MESSAGE(batches.size() << " batches, largest " << *std::max_element(batches.begin(), batches.end())
                                    << " entries, " << max_bytes << " bytes");
  // The whole listing agrees.
  listing whole = read_dir(ctx, d);
  BOOST_TEST(!whole.ec);
  BOOST_TEST(whole.entries.size() == static_cast<std::size_t>(count));
}

BOOST_AUTO_TEST_CASE(batch_cancellation) {
  temp_dir dir;
  const fs::path d = dir.file("d");
  fs::create_directory(d);
  for (int i = 0; i < 3000; ++i) touch(d / ("f" + std::to_string(i)));
  asio::io_context ctx;
  fsys::test::make_ring(ctx);
  int aborted = 0, ran = 0;
  for (int round = 0; round < 20; ++round) {
    fsys::directory dr(ctx);
    std::optional<error_code> opened;
    dr.async_open(d, [&](error_code ec) { opened = ec; });
    drain(ctx);
    BOOST_REQUIRE(!opened.value());
    // Cancelled as soon as started: operation_aborted when the worker had
    // not made the call (the position is unchanged: nothing is lost), else
    // the real batch.
    std::set<std::string> seen;
    asio::cancellation_signal sig;
    std::optional<error_code> got;
    dr.async_next_batch(asio::bind_cancellation_slot(
        sig.slot(), [&](error_code ec, std::span<const fsys::directory_entry_view> batch) {
          got = ec;
          for (const auto& e : batch) seen.emplace(e.name);
          if (ec) FSYS_TEST_MT(batch.empty());
        }));
    sig.emit(asio::cancellation_type::terminal);
    drain(ctx);
    BOOST_REQUIRE(got.has_value());
    if (*got == asio::error::operation_aborted)
      ++aborted;
    else {
      BOOST_TEST(!*got);
      ++ran;
    }
    // The rest of the directory follows, whatever happened.
    for (;;) {
      std::optional<error_code> g;
      std::size_t n = 0;
      dr.async_next_batch([&](error_code ec, std::span<const fsys::directory_entry_view> batch) {
        g = ec;
        n = batch.size();
        for (const auto& e : batch) seen.emplace(e.name);
      });
      drain(ctx);
      BOOST_REQUIRE(!g.value());
      if (n == 0) break;
    }
    BOOST_TEST(seen.size() == 3000u);
  }
  BOOST_TEST_MESSAGE("cancelled before the call: " << aborted << ", ran: " << ran);

  // close() while a batch may be pending: it completes (aborted or real).
  fsys::directory dr(ctx);
  std::optional<error_code> opened, got;
  dr.async_open(d, [&](error_code ec) { opened = ec; });
  drain(ctx);
  dr.async_next_batch([&](error_code ec, std::span<const fsys::directory_entry_view>) { got = ec; });
  dr.close();
  BOOST_TEST(!dr.is_open());
  drain(ctx);
  BOOST_REQUIRE(got.has_value());
  BOOST_TEST((!*got || *got == asio::error::operation_aborted));
  // A second batch while one is pending is refused, the first unharmed.
  fsys::directory d2(ctx);
  d2.async_open(d, [&](error_code ec) { opened = ec; });
  drain(ctx);
  std::optional<error_code> first, second;
  std::size_t first_n = 0;
  d2.async_next_batch([&](error_code ec, std::span<const fsys::directory_entry_view> b) {
    first = ec;
    first_n = b.size();
  });
  d2.async_next_batch([&](error_code ec, std::span<const fsys::directory_entry_view>) { second = ec; });
  drain(ctx);
  BOOST_TEST(!first.value());
  BOOST_TEST(first_n > 0u);
  BOOST_TEST((second.value() == boost::system::errc::operation_in_progress));
}

BOOST_AUTO_TEST_CASE(close_aborts_a_queued_batch) {
  // The worker that runs getdents (the psync engine's, or the io_uring
  // engine's helper) is kept busy by an open of a FIFO, which waits for a
  // writer: one worker, opens sent to it (FSYS_TEST_DISABLE_OPS, read when
  // the engine is made), no inline open. The batch queued behind it is then
  // aborted by close(), deterministically, on both backends.
  temp_dir dir;
  const fs::path fifo = dir.file("fifo");
  BOOST_REQUIRE(::mkfifo(fifo.c_str(), 0644) == 0);
  fs::create_directory(dir.file("d"));
  touch(dir.file("d") / "a");
  ::setenv("FSYS_TEST_DISABLE_OPS", "open", 1);
  asio::io_context ctx;
  fsys::ring_options opts;
  opts.psync_threads = 1;
  opts.inline_fast_path = false;
  fsys::test::make_ring(ctx, opts);
  ::unsetenv("FSYS_TEST_DISABLE_OPS");
  fsys::directory dr(ctx);
  std::optional<error_code> opened;
  dr.async_open(dir.file("d"), [&](error_code ec) { opened = ec; });
  drain(ctx);
  BOOST_REQUIRE(!opened.value());

  fsys::file blocker(ctx);
  std::optional<error_code> blocked, batch;
  blocker.async_open(fifo, O_RDONLY, 0, [&](error_code ec) { blocked = ec; });
  dr.async_next_batch([&](error_code ec, std::span<const fsys::directory_entry_view> b) {
    batch = ec;
    FSYS_TEST_MT(b.empty());
  });
  dr.close();
  const int w = ::open(fifo.c_str(), O_RDWR | O_CLOEXEC);  // lets the FIFO open finish
  BOOST_REQUIRE(w >= 0);
  drain(ctx);
  ::close(w);
  BOOST_TEST(!blocked.value());
  BOOST_TEST((batch.value() == asio::error::operation_aborted));
}

BOOST_AUTO_TEST_CASE(directory_outlives_nothing) {
  // Destroyed with a batch pending: the handler still runs, on memory that lives.
  temp_dir dir;
  fs::create_directory(dir.file("d"));
  for (int i = 0; i < 100; ++i) touch(dir.file("d") / std::to_string(i));
  asio::io_context ctx;
  fsys::test::make_ring(ctx);
  std::optional<error_code> got;
  {
    fsys::directory d(ctx);
    std::optional<error_code> opened;
    d.async_open(dir.file("d"), [&](error_code ec) { opened = ec; });
    drain(ctx);
    d.async_next_batch([&](error_code ec, std::span<const fsys::directory_entry_view> b) {
      got = ec;
      if (!ec) FSYS_TEST_MT(b.size() == 100u);
    });
    fsys::directory moved(std::move(d));
    BOOST_TEST(moved.is_open());
  }
  drain(ctx);
  BOOST_TEST(got.has_value());
}

// ---- async_remove_all --------------------------------------------------------

namespace {

// A tree of `depth` nested directories, each with `files` files and `dirs`
// leaf directories of `files` files; returns the number of entries
// (directories and files, the root included).
std::uint64_t make_tree(const fs::path& root, int depth, int files, int dirs) {
  std::uint64_t n = 0;
  fs::path p = root;
  for (int level = 0; level < depth; ++level) {
    fs::create_directory(p);
    ++n;
    for (int f = 0; f < files; ++f, ++n) touch(p / ("file" + std::to_string(f)));
    for (int d = 0; d < dirs; ++d) {
      fs::path leaf = p / ("leaf" + std::to_string(d));
      fs::create_directory(leaf);
      ++n;
      for (int f = 0; f < files; ++f, ++n) touch(leaf / ("f" + std::to_string(f)));
      fs::create_symlink("/", leaf / "root_link");  // a link to / is removed as a link
      ++n;
    }
    p /= "next";
  }
  return n;
}

std::uint64_t count_entries(const fs::path& p) {
  std::uint64_t n = 0;
  for (auto it = fs::recursive_directory_iterator(p); it != fs::recursive_directory_iterator(); ++it) ++n;
  return n;
}

}  // namespace

BOOST_AUTO_TEST_CASE(remove_all_counts_a_deep_and_wide_tree) {
  temp_dir dir;
  const fs::path root = dir.file("tree");
  const std::uint64_t n = make_tree(root, 40, 30, 3);
  BOOST_TEST(count_entries(root) + 1 == n);
  asio::io_context ctx;
  fsys::test::make_ring(ctx);
  removal r = remove_all(ctx, root);
  BOOST_TEST(!r.ec);
  BOOST_TEST(r.removed == n);
  BOOST_TEST(!fs::exists(fs::symlink_status(root)));
  // The same count as std::filesystem::remove_all on an identical tree.
  const std::uint64_t n2 = make_tree(root, 40, 30, 3);
  BOOST_TEST(fs::remove_all(root) == n2);

  // A single large directory (several batches, unlinks in flight together).
  fs::create_directory(root);
  for (int i = 0; i < 5000; ++i) touch(root / ("some-longer-file-name-" + std::to_string(i)));
  r = remove_all(ctx, root);
  BOOST_TEST(!r.ec);
  BOOST_TEST(r.removed == 5001u);
  BOOST_TEST(!fs::exists(root));
}

BOOST_AUTO_TEST_CASE(remove_all_of_missing_file_and_empty) {
  temp_dir dir;
  asio::io_context ctx;
  fsys::test::make_ring(ctx);
  removal r = remove_all(ctx, dir.file("missing"));
  BOOST_TEST(!r.ec);
  BOOST_TEST(r.removed == 0u);
  r = remove_all(ctx, dir.file("missing") / "below");
  BOOST_TEST(!r.ec);
  BOOST_TEST(r.removed == 0u);
  touch(dir.file("file"));
  r = remove_all(ctx, dir.file("file"));
  BOOST_TEST(!r.ec);
  BOOST_TEST(r.removed == 1u);
  BOOST_TEST(!fs::exists(dir.file("file")));
  fs::create_directory(dir.file("empty"));
  r = remove_all(ctx, dir.file("empty"));
  BOOST_TEST(!r.ec);
  BOOST_TEST(r.removed == 1u);
  BOOST_TEST((remove_all(ctx, "").ec == boost::system::errc::invalid_argument));
}

BOOST_AUTO_TEST_CASE(remove_all_never_follows_a_link_out_of_the_tree) {
  temp_dir dir;
  const fs::path outside = dir.file("outside");
  fs::create_directory(outside);
  touch(outside / "precious", "keep");
  fs::create_directory(outside / "sub");
  touch(outside / "sub" / "also", "keep");
  const fs::path root = dir.file("tree");
  fs::create_directories(root / "a" / "b");
  touch(root / "a" / "b" / "f");
  fs::create_directory_symlink(outside, root / "a" / "link_out");  // absolute
  fs::create_directory_symlink("../../outside", root / "a" / "rel_link_out");
  asio::io_context ctx;
  fsys::test::make_ring(ctx);
  removal r = remove_all(ctx, root);
  BOOST_TEST(!r.ec);
  BOOST_TEST(r.removed == 6u);  // tree, a, b, f, two links
  BOOST_TEST(!fs::exists(fs::symlink_status(root)));
  BOOST_TEST(fs::exists(outside / "precious"));
  BOOST_TEST(fs::exists(outside / "sub" / "also"));
}

BOOST_AUTO_TEST_CASE(remove_all_of_a_symlink_root_removes_the_link) {
  temp_dir dir;
  const fs::path target = dir.file("target");
  fs::create_directory(target);
  touch(target / "precious");
  fs::create_directory_symlink(target, dir.file("root_link"));
  asio::io_context ctx;
  fsys::test::make_ring(ctx);
  removal r = remove_all(ctx, dir.file("root_link"));
  BOOST_TEST(!r.ec);
  BOOST_TEST(r.removed == 1u);
  BOOST_TEST(!fs::exists(fs::symlink_status(dir.file("root_link"))));
  BOOST_TEST(fs::exists(target / "precious"));
  // With a trailing slash too: the link is meant, not the directory it names.
  fs::create_directory_symlink(target, dir.file("root_link"));
  r = remove_all(ctx, dir.file("root_link").native() + "//");
  BOOST_TEST(!r.ec);
  BOOST_TEST(r.removed == 1u);
  BOOST_TEST(!fs::exists(fs::symlink_status(dir.file("root_link"))));
  BOOST_TEST(fs::exists(target / "precious"));
  // A directory named with a trailing slash is removed as usual.
  fs::create_directory(dir.file("plain"));
  touch(dir.file("plain") / "x");
  r = remove_all(ctx, dir.file("plain").native() + "/");
  BOOST_TEST(!r.ec);
  BOOST_TEST(r.removed == 2u);
  BOOST_TEST(fs::exists(target / "precious"));
}

namespace {
// The swap test's hook state (the hook is a plain function pointer).
std::string hook_target;     // the outside directory the link points to
std::string hook_saved;      // where the real directory is moved
std::atomic<int> hook_calls{0};
void swap_for_link(int dirfd, const char* name) {
  if (std::strcmp(name, "victim") != 0) return;
  ++hook_calls;
  // Between the listing (which said "directory") and the descent: the
  // directory is moved away and a symlink to a directory outside the tree
  // takes its name.
  BOOST_REQUIRE(::renameat(dirfd, name, AT_FDCWD, hook_saved.c_str()) == 0);
  BOOST_REQUIRE(::symlinkat(hook_target.c_str(), dirfd, name) == 0);
}
}  // namespace

BOOST_AUTO_TEST_CASE(remove_all_with_a_directory_swapped_for_a_link_before_the_descent) {
  temp_dir dir;
  const fs::path outside = dir.file("outside");
  fs::create_directory(outside);
  for (int i = 0; i < 10; ++i) touch(outside / ("precious" + std::to_string(i)));
  const fs::path root = dir.file("tree");
  fs::create_directories(root / "victim");
  for (int i = 0; i < 10; ++i) touch(root / "victim" / ("v" + std::to_string(i)));
  touch(root / "other");
  hook_target = outside.native();
  hook_saved = dir.file("saved").native();
  hook_calls = 0;
  fsys::detail::remove_all_before_descent = &swap_for_link;
  asio::io_context ctx;
  fsys::test::make_ring(ctx);
  removal r = remove_all(ctx, root);
  fsys::detail::remove_all_before_descent = nullptr;
  BOOST_TEST(hook_calls.load() == 1);
  BOOST_TEST(!r.ec);
  BOOST_TEST(r.removed == 3u);  // other, the link "victim", tree
  BOOST_TEST(!fs::exists(fs::symlink_status(root)));
  for (int i = 0; i < 10; ++i) BOOST_TEST(fs::exists(outside / ("precious" + std::to_string(i))));
  for (int i = 0; i < 10; ++i) BOOST_TEST(fs::exists(dir.file("saved") / ("v" + std::to_string(i))));
}

BOOST_AUTO_TEST_CASE(remove_all_racing_a_thread_that_swaps_a_directory_and_a_link) {
  temp_dir dir;
  const fs::path outside = dir.file("outside");
  fs::create_directory(outside);
  constexpr int precious = 50;
  for (int i = 0; i < precious; ++i) touch(outside / ("precious" + std::to_string(i)));
  fs::create_directory(outside / "deeper");
  touch(outside / "deeper" / "precious");
  asio::io_context ctx;
  fsys::test::make_ring(ctx);
  int errors = 0, clean = 0;
  std::uint64_t swaps_total = 0;
  for (int round = 0; round < 30; ++round) {
    const fs::path root = dir.file("tree");
    fs::create_directory(root);
    for (int i = 0; i < 200; ++i) touch(root / ("pad" + std::to_string(i)));
    fs::create_directory(root / "victim");
    for (int i = 0; i < 50; ++i) touch(root / "victim" / ("v" + std::to_string(i)));
    fs::create_directory_symlink(outside, root / "swap_link");
    // Exchanges "victim" (a directory) and "swap_link" (a link to
    // `outside`) atomically, over and over, while the removal runs.
    std::atomic<bool> stop{false};
    std::uint64_t swaps = 0;
    std::thread swapper([&] {
      const std::string a = (root / "victim").native(), b = (root / "swap_link").native();
      while (!stop.load(std::memory_order_relaxed)) {
        if (::renameat2(AT_FDCWD, a.c_str(), AT_FDCWD, b.c_str(), RENAME_EXCHANGE) != 0) {
          if (errno == ENOENT) std::this_thread::yield();
          continue;
        }
        ++swaps;
      }
    });
    removal r = remove_all(ctx, root);
    stop = true;
    swapper.join();
    swaps_total += swaps;
    if (r.ec)
      ++errors;  // a name vanished or changed under it: reported, never followed
    else
      ++clean;
    for (int i = 0; i < precious; ++i) BOOST_REQUIRE(fs::exists(outside / ("precious" + std::to_string(i))));
    BOOST_REQUIRE(fs::exists(outside / "deeper" / "precious"));
    std::error_code ec;
    fs::remove_all(root, ec);  // what the race left (never follows links either)
  }
  BOOST_TEST_MESSAGE("rounds: " << clean << " clean, " << errors << " with an error; " << swaps_total << " swaps");
}

BOOST_AUTO_TEST_CASE(remove_all_cancelled_before_it_starts_removes_nothing) {
  temp_dir dir;
  const fs::path root = dir.file("tree");
  make_tree(root, 3, 5, 1);
  const std::uint64_t before = count_entries(root);
  asio::io_context ctx;
  fsys::test::make_ring(ctx);
  asio::cancellation_signal sig;
  std::optional<removal> got;
  fsys::async_remove_all(ctx, root,
                         asio::bind_cancellation_slot(sig.slot(), [&](error_code ec, std::uint64_t n) {
                           got = removal{ec, n};
                         }));
  sig.emit(asio::cancellation_type::terminal);
  drain(ctx);
  BOOST_REQUIRE(got.has_value());
  BOOST_TEST((got->ec == asio::error::operation_aborted));
  BOOST_TEST(got->removed == 0u);
  BOOST_TEST(count_entries(root) == before);
}

BOOST_AUTO_TEST_CASE(remove_all_reports_a_permission_error) {
  if (::geteuid() != 0) {
    // Not root: a read-only directory stops us without a child process.
    BOOST_TEST_MESSAGE("not root: checking EACCES directly");
  }
  temp_dir dir;
  const fs::path base = dir.file("base");
  fs::create_directory(base);
  const fs::path root = base / "tree";
  fs::create_directories(root / "locked");
  touch(root / "locked" / "kept");
  touch(root / "free");
  if (::geteuid() == 0) {
    // Root ignores permission bits: the removal runs in a child that has
    // given up root (uid/gid 65534), on a tree that child owns except for a
    // read-only directory.
    BOOST_REQUIRE(::chmod(dir.path().c_str(), 0755) == 0);
    for (const fs::path& p : {base, root, root / "locked", root / "locked" / "kept", root / "free"})
      BOOST_REQUIRE(::chown(p.c_str(), 65534, 65534) == 0);
    BOOST_REQUIRE(::chmod((root / "locked").c_str(), 0555) == 0);
    const pid_t pid = ::fork();
    BOOST_REQUIRE(pid >= 0);
    if (pid == 0) {
      if (::setgroups(0, nullptr) != 0 || ::setgid(65534) != 0 || ::setuid(65534) != 0) ::_exit(10);
      asio::io_context c;
      asio::make_service<fsys::uring_service>(c);
      std::optional<removal> got;
      fsys::async_remove_all(c, root, [&](error_code ec, std::uint64_t n) { got = removal{ec, n}; });
      c.run();
      if (!got) ::_exit(11);
      if (got->ec != boost::system::errc::permission_denied) ::_exit(12);
      ::_exit(0);
    }
    int status = 0;
    BOOST_REQUIRE(::waitpid(pid, &status, 0) == pid);
    BOOST_REQUIRE(WIFEXITED(status));
    BOOST_TEST(WEXITSTATUS(status) == 0);
  } else {
    BOOST_REQUIRE(::chmod((root / "locked").c_str(), 0555) == 0);
    asio::io_context ctx;
    fsys::test::make_ring(ctx);
    removal r = remove_all(ctx, root);
    BOOST_TEST((r.ec == boost::system::errc::permission_denied));
  }
  BOOST_TEST(fs::exists(root / "locked" / "kept"));
  ::chmod((root / "locked").c_str(), 0755);
}
