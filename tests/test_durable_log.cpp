// fsys::durable_log on real files: round trips with byte checks, 64
// concurrent appenders, group commit, segment rolls, recovery of a torn tail,
// damage before the tail, truncate_front, close, and a writeback failure
// injected by faultfs (all batch records fail, later appends are refused,
// nothing acknowledged is lost). The power-cut proof is in test_powercut.cpp.
#include <boost/test/unit_test.hpp>

#include "fuse/powercut_mount.hpp"
#include "support/run.hpp"
#include "support/temp_dir.hpp"

#include <fsys/durable_log.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace asio = boost::asio;
using boost::system::error_code;
using fsys::durable_log;
using fsys::durable_log_options;
using fsys::recovery_report;
using fsys::test::temp_dir;

namespace {

struct opened {
  error_code ec;
  durable_log log;
  recovery_report report;
};

opened open_log(asio::io_context& ctx, const std::filesystem::path& dir, const durable_log_options& opt = {}) {
  opened o;
  o.ec = asio::error::would_block;
  durable_log::async_open(ctx.get_executor(), dir, opt, [&](error_code ec, durable_log l, recovery_report r) {
    o.ec = ec;
    o.log = std::move(l);
    o.report = r;
  });
  fsys::test::run(ctx);
  ctx.restart();
  return o;
}

// The payload of record i of appender a: deterministic, sized 0..max.
std::vector<std::byte> payload(std::uint64_t a, std::uint64_t i, std::size_t max = 700) {
  std::uint64_t x = (a + 1) * 0x9E3779B97F4A7C15ull ^ (i * 0xBF58476D1CE4E5B9ull + 1);
  std::size_t n = static_cast<std::size_t>(x % (max + 1));
  std::vector<std::byte> p(n);
  for (auto& b : p) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    b = static_cast<std::byte>(x);
  }
  return p;
}

std::pair<error_code, std::uint64_t> append(asio::io_context& ctx, durable_log& log, const std::vector<std::byte>& p) {
  std::pair<error_code, std::uint64_t> out{asio::error::would_block, 0};
  log.async_append(asio::buffer(p), [&](error_code ec, std::uint64_t pos) { out = {ec, pos}; });
  fsys::test::run(ctx);
  ctx.restart();
  return out;
}

std::pair<error_code, std::vector<std::byte>> read(asio::io_context& ctx, durable_log& log, std::uint64_t pos) {
  std::pair<error_code, std::vector<std::byte>> out{asio::error::would_block, {}};
  log.async_read(pos, [&](error_code ec, std::vector<std::byte> p) { out = {ec, std::move(p)}; });
  fsys::test::run(ctx);
  ctx.restart();
  return out;
}

error_code run_void(asio::io_context& ctx, auto start) {
  error_code out = asio::error::would_block;
  start([&](error_code ec) { out = ec; });
  fsys::test::run(ctx);
  ctx.restart();
  return out;
}

std::vector<std::filesystem::path> segments(const std::filesystem::path& dir) {
  std::vector<std::filesystem::path> out;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    if (e.path().extension() == ".seg") out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

void pwrite_at(const std::filesystem::path& p, std::uint64_t off, const std::vector<std::byte>& data) {
  int fd = ::open(p.c_str(), O_WRONLY | O_CLOEXEC);
  BOOST_REQUIRE(fd >= 0);
  BOOST_REQUIRE(::pwrite(fd, data.data(), data.size(), static_cast<off_t>(off)) == static_cast<ssize_t>(data.size()));
  ::close(fd);
}

// Appends `per` records from each of `appenders` concurrent appenders (each
// appends its next record when the previous one is acknowledged); returns
// position -> (appender, index). Errors are counted in `errors`.
std::map<std::uint64_t, std::pair<std::uint64_t, std::uint64_t>> concurrent_appends(asio::io_context& ctx,
                                                                                   durable_log& log,
                                                                                   std::uint64_t appenders,
                                                                                   std::uint64_t per, std::size_t max,
                                                                                   std::atomic<int>& errors) {
  std::mutex m;
  std::map<std::uint64_t, std::pair<std::uint64_t, std::uint64_t>> got;
  struct appender {
    std::uint64_t id, next = 0;
    std::vector<std::byte> p;
  };
  std::vector<appender> as(appenders);
  std::function<void(appender&)> step = [&](appender& a) {
    if (a.next == per) return;
    a.p = payload(a.id, a.next, max);
    log.async_append(asio::buffer(a.p), [&, pa = &a](error_code ec, std::uint64_t pos) {
      if (ec) {
        ++errors;
        return;
      }
      {
        std::lock_guard lk(m);
        if (!got.emplace(pos, std::pair{pa->id, pa->next}).second) ++errors;  // a position twice
      }
      ++pa->next;
      step(*pa);
    });
  };
  for (std::uint64_t i = 0; i < appenders; ++i) {
    as[i].id = i;
    step(as[i]);
  }
  fsys::test::run(ctx);
  ctx.restart();
  return got;
}

}  // namespace

BOOST_AUTO_TEST_CASE(append_and_read_round_trip) {
  temp_dir dir;
  asio::io_context ctx;
  auto o = open_log(ctx, dir.file("log"));
  BOOST_REQUIRE(!o.ec);
  BOOST_TEST(o.report.records == 0u);
  BOOST_TEST(o.report.end_position == 0u);
  BOOST_TEST(segments(dir.file("log")).size() == 1u);
  std::vector<std::uint64_t> pos;
  std::vector<std::vector<std::byte>> recs;
  for (std::size_t sz : {0u, 1u, 7u, 100u, 4096u, 70000u}) {
    recs.push_back(fsys::test::pattern(sz, sz + 3));
    auto [ec, p] = append(ctx, o.log, recs.back());
    BOOST_REQUIRE(!ec);
    pos.push_back(p);
  }
  // Positions are frame offsets, back to back.
  std::uint64_t expect = 0;
  for (std::size_t i = 0; i < recs.size(); ++i) {
    BOOST_TEST(pos[i] == expect);
    expect += fsys::log_record_header_size + recs[i].size();
  }
  BOOST_TEST(o.log.end_position() == expect);
  for (std::size_t i = 0; i < recs.size(); ++i) {
    auto [ec, p] = read(ctx, o.log, pos[i]);
    BOOST_TEST(!ec);
    BOOST_TEST((p == recs[i]));
  }
  // A buffer sequence is one record.
  std::vector<std::byte> a = fsys::test::pattern(10, 1), b = fsys::test::pattern(20, 2);
  std::vector<asio::const_buffer> seq{asio::buffer(a), asio::buffer(b)};
  std::pair<error_code, std::uint64_t> r{asio::error::would_block, 0};
  o.log.async_append(seq, [&](error_code ec, std::uint64_t p) { r = {ec, p}; });
  fsys::test::run(ctx);
  ctx.restart();
  BOOST_REQUIRE(!r.first);
  auto [ec2, joined] = read(ctx, o.log, r.second);
  BOOST_TEST(!ec2);
  std::vector<std::byte> ab = a;
  ab.insert(ab.end(), b.begin(), b.end());
  BOOST_TEST((joined == ab));
  // Wrong positions: inside a record, at the end, far beyond.
  BOOST_TEST(read(ctx, o.log, pos[3] + 1).first == fsys::errc::log_bad_position);
  BOOST_TEST(read(ctx, o.log, o.log.end_position()).first == asio::error::eof);
  BOOST_TEST(read(ctx, o.log, 1u << 30).first == asio::error::eof);

  // The sequential reader returns every record in order, then eof.
  auto rd = o.log.make_reader(0);
  std::vector<std::vector<std::byte>> seen;
  for (;;) {
    error_code e = asio::error::would_block;
    std::uint64_t at = 0;
    std::vector<std::byte> p;
    rd.async_read_next([&](error_code ec, std::uint64_t ps, std::vector<std::byte> pl) {
      e = ec;
      at = ps;
      p = std::move(pl);
    });
    fsys::test::run(ctx);
    ctx.restart();
    if (e == asio::error::eof) break;
    BOOST_REQUIRE(!e);
    if (seen.size() < pos.size()) BOOST_TEST(at == pos[seen.size()]);
    seen.push_back(std::move(p));
  }
  BOOST_TEST(seen.size() == recs.size() + 1);
  for (std::size_t i = 0; i < recs.size(); ++i) BOOST_TEST((seen[i] == recs[i]));
  BOOST_TEST(rd.position() == o.log.end_position());

  // A payload over max_record_size is refused.
  durable_log_options small;
  small.max_record_size = 100;
  BOOST_TEST(!run_void(ctx, [&](auto h) { o.log.async_close(h); }));
  // The bound limits appends only: a log with larger records still opens
  // whole under it.
  auto o2 = open_log(ctx, dir.file("log"), small);
  BOOST_REQUIRE(!o2.ec);
  BOOST_TEST(o2.report.records == recs.size() + 1);
  BOOST_TEST(o2.report.dropped_bytes == 0u);
  auto o3 = open_log(ctx, dir.file("log2"), small);
  BOOST_REQUIRE(!o3.ec);
  BOOST_TEST(append(ctx, o3.log, std::vector<std::byte>(101)).first == asio::error::message_size);
  BOOST_TEST(!append(ctx, o3.log, std::vector<std::byte>(100)).first);
}

BOOST_AUTO_TEST_CASE(reopen_recovers_every_record) {
  temp_dir dir;
  asio::io_context ctx;
  std::vector<std::pair<std::uint64_t, std::vector<std::byte>>> recs;
  {
    auto o = open_log(ctx, dir.file("log"));
    BOOST_REQUIRE(!o.ec);
    for (std::uint64_t i = 0; i < 50; ++i) {
      auto p = payload(1, i);
      auto [ec, pos] = append(ctx, o.log, p);
      BOOST_REQUIRE(!ec);
      recs.push_back({pos, p});
    }
    BOOST_TEST(!run_void(ctx, [&](auto h) { o.log.async_close(h); }));
  }
  auto o = open_log(ctx, dir.file("log"));
  BOOST_REQUIRE(!o.ec);
  BOOST_TEST(o.report.records == 50u);
  BOOST_TEST(o.report.dropped_bytes == 0u);
  BOOST_TEST(o.report.end_position == recs.back().first + 8 + recs.back().second.size());
  for (auto& [pos, p] : recs) {
    auto [ec, got] = read(ctx, o.log, pos);
    BOOST_TEST(!ec);
    BOOST_TEST((got == p));
  }
  auto [ec, pos] = append(ctx, o.log, payload(2, 0));
  BOOST_TEST(!ec);
  BOOST_TEST(pos == o.report.end_position);
}

BOOST_AUTO_TEST_CASE(many_concurrent_appenders_share_syncs) {
  temp_dir dir;
  asio::io_context ctx;
  auto o = open_log(ctx, dir.file("log"));
  BOOST_REQUIRE(!o.ec);
  std::atomic<int> errors{0};
  const std::uint64_t appenders = 64, per = 20;
  auto got = concurrent_appends(ctx, o.log, appenders, per, 512, errors);
  BOOST_TEST(errors.load() == 0);
  BOOST_REQUIRE(got.size() == appenders * per);
  // Contiguous frames, each one read back intact.
  std::uint64_t expect = 0;
  std::map<std::uint64_t, std::uint64_t> last_index;  // per appender: indexes grow with positions
  for (auto& [pos, who] : got) {
    BOOST_REQUIRE(pos == expect);
    auto p = payload(who.first, who.second, 512);
    expect += 8 + p.size();
    auto [ec, back] = read(ctx, o.log, pos);
    BOOST_TEST(!ec);
    BOOST_TEST((back == p));
    auto it = last_index.find(who.first);
    if (it != last_index.end()) BOOST_TEST(who.second > it->second);
    last_index[who.first] = who.second;
  }
  auto st = o.log.stats();
  BOOST_TEST(st.records == appenders * per);
  BOOST_TEST_MESSAGE("64 appenders x " << per << ": " << st.records << " records in " << st.commits << " syncs");
  BOOST_TEST(st.commits < st.records / 4, "group commit: " << st.commits << " syncs for " << st.records);
}

BOOST_AUTO_TEST_CASE(several_batches_in_flight_complete_in_order) {
  // max_batches_in_flight = 4, small segments (rolls wait for the batches on
  // the full segment): every record acknowledged, contiguous, intact; a
  // reopen finds them all.
  temp_dir dir;
  asio::io_context ctx;
  durable_log_options opt;
  opt.max_batches_in_flight = 4;
  opt.segment_size = 32768;
  opt.max_record_size = 1000;
  std::map<std::uint64_t, std::pair<std::uint64_t, std::uint64_t>> got;
  {
    auto o = open_log(ctx, dir.file("log"), opt);
    BOOST_REQUIRE(!o.ec);
    std::atomic<int> errors{0};
    got = concurrent_appends(ctx, o.log, 64, 15, 700, errors);
    BOOST_TEST(errors.load() == 0);
    BOOST_REQUIRE(got.size() == 64u * 15u);
    std::uint64_t expect = 0;
    for (auto& [pos, who] : got) {
      BOOST_REQUIRE(pos == expect);
      auto p = payload(who.first, who.second, 700);
      expect += 8 + p.size();
      auto [ec, back] = read(ctx, o.log, pos);
      BOOST_TEST(!ec);
      BOOST_TEST((back == p));
    }
    BOOST_TEST(o.log.end_position() == expect);
    BOOST_TEST(o.log.stats().segments_created > 3u);
    BOOST_TEST(!run_void(ctx, [&](auto h) { o.log.async_close(h); }));
  }
  auto o = open_log(ctx, dir.file("log"), opt);
  BOOST_REQUIRE(!o.ec);
  BOOST_TEST(o.report.records == got.size());
  BOOST_TEST(o.report.dropped_bytes == 0u);
}

BOOST_AUTO_TEST_CASE(commit_delay_gathers_appenders) {
  temp_dir dir;
  asio::io_context ctx;
  durable_log_options opt;
  opt.commit_delay = std::chrono::milliseconds(20);
  opt.commit_siblings = 16;
  auto o = open_log(ctx, dir.file("log"), opt);
  BOOST_REQUIRE(!o.ec);
  std::atomic<int> errors{0};
  auto got = concurrent_appends(ctx, o.log, 16, 5, 100, errors);
  BOOST_TEST(errors.load() == 0);
  BOOST_TEST(got.size() == 80u);
  // Every batch waits for (up to) 16 records: far fewer syncs than records.
  BOOST_TEST(o.log.stats().commits <= 20u);
}

BOOST_AUTO_TEST_CASE(segments_roll_and_reopen) {
  temp_dir dir;
  asio::io_context ctx;
  durable_log_options opt;
  opt.segment_size = 8192;
  opt.max_record_size = 2000;
  std::map<std::uint64_t, std::pair<std::uint64_t, std::uint64_t>> got;
  {
    auto o = open_log(ctx, dir.file("log"), opt);
    BOOST_REQUIRE(!o.ec);
    std::atomic<int> errors{0};
    got = concurrent_appends(ctx, o.log, 8, 25, 1500, errors);
    BOOST_TEST(errors.load() == 0);
    BOOST_TEST(o.log.stats().segments_created > 5u);
    BOOST_TEST(!run_void(ctx, [&](auto h) { o.log.async_close(h); }));
  }
  auto segs = segments(dir.file("log"));
  BOOST_TEST(segs.size() > 5u);
  // Named by the position of their first record; each starts with a record.
  for (const auto& s : segs) {
    const std::uint64_t start = std::stoull(s.stem().string());
    BOOST_TEST((start == 0 || got.count(start) == 1), s);
  }
  auto o = open_log(ctx, dir.file("log"), opt);
  BOOST_REQUIRE(!o.ec);
  BOOST_TEST(o.report.segments == segs.size());
  BOOST_TEST(o.report.records == got.size());
  auto rd = o.log.make_reader(0);
  std::size_t n = 0;
  for (auto& [pos, who] : got) {
    error_code e = asio::error::would_block;
    std::uint64_t at = 0;
    std::vector<std::byte> p;
    rd.async_read_next([&](error_code ec, std::uint64_t ps, std::vector<std::byte> pl) {
      e = ec;
      at = ps;
      p = std::move(pl);
    });
    fsys::test::run(ctx);
    ctx.restart();
    BOOST_REQUIRE(!e);
    BOOST_TEST(at == pos);
    BOOST_TEST((p == payload(who.first, who.second, 1500)));
    ++n;
  }
  BOOST_TEST(n == got.size());
}

BOOST_AUTO_TEST_CASE(torn_tail_is_cut_and_reported) {
  temp_dir dir;
  asio::io_context ctx;
  durable_log_options opt;
  opt.segment_size = 16384;
  opt.max_record_size = 4000;
  std::vector<std::pair<std::uint64_t, std::vector<std::byte>>> recs;
  std::uint64_t end = 0;
  {
    auto o = open_log(ctx, dir.file("log"), opt);
    BOOST_REQUIRE(!o.ec);
    for (std::uint64_t i = 0; i < 30; ++i) {
      auto p = payload(3, i, 1200);
      auto [ec, pos] = append(ctx, o.log, p);
      BOOST_REQUIRE(!ec);
      recs.push_back({pos, p});
    }
    end = o.log.end_position();
    BOOST_TEST(!run_void(ctx, [&](auto h) { o.log.async_close(h); }));
  }
  auto segs = segments(dir.file("log"));
  BOOST_REQUIRE(segs.size() >= 2u);
  const auto last = segs.back();
  const std::uint64_t last_start = std::stoull(last.stem().string());
  // A crash in the middle of a batch: a valid-looking header whose payload
  // is only partly there, then garbage, written with plain pwrite at the end.
  std::vector<std::byte> torn(8 + 300);
  fsys::encode_log_record_header(torn.data(), 1000, 0x12345678);
  auto junk = fsys::test::pattern(300, 99);
  std::copy(junk.begin(), junk.end(), torn.begin() + 8);
  pwrite_at(last, end - last_start, torn);
  {
    auto o = open_log(ctx, dir.file("log"), opt);
    BOOST_REQUIRE(!o.ec);
    BOOST_TEST(o.report.records == recs.size());
    BOOST_TEST(o.report.end_position == end);
    BOOST_TEST(o.report.dropped_bytes == torn.size());
    // The torn bytes are zero now (and synced), later appends continue there.
    auto disk = fsys::test::read_file(last);
    BOOST_REQUIRE(disk.size() >= end - last_start + torn.size());
    BOOST_TEST(std::all_of(disk.begin() + static_cast<std::ptrdiff_t>(end - last_start), disk.end(),
                           [](std::byte b) { return b == std::byte{0}; }));
    for (std::uint64_t i = 0; i < 5; ++i) {
      auto p = payload(4, i, 1200);
      auto [ec, pos] = append(ctx, o.log, p);
      BOOST_REQUIRE(!ec);
      recs.push_back({pos, p});
    }
    BOOST_TEST(recs[30].first == end);
    BOOST_TEST(!run_void(ctx, [&](auto h) { o.log.async_close(h); }));
  }
  auto o = open_log(ctx, dir.file("log"), opt);
  BOOST_REQUIRE(!o.ec);
  BOOST_TEST(o.report.records == recs.size());
  BOOST_TEST(o.report.dropped_bytes == 0u);
  for (auto& [pos, p] : recs) {
    auto [ec, got] = read(ctx, o.log, pos);
    BOOST_TEST(!ec);
    BOOST_TEST((got == p));
  }
}

BOOST_AUTO_TEST_CASE(damage_before_the_last_segment_is_an_error) {
  temp_dir dir;
  asio::io_context ctx;
  durable_log_options opt;
  opt.segment_size = 4096;
  opt.max_record_size = 1000;
  {
    auto o = open_log(ctx, dir.file("log"), opt);
    BOOST_REQUIRE(!o.ec);
    for (std::uint64_t i = 0; i < 40; ++i) BOOST_REQUIRE(!append(ctx, o.log, payload(5, i, 900)).first);
    BOOST_TEST(!run_void(ctx, [&](auto h) { o.log.async_close(h); }));
  }
  auto segs = segments(dir.file("log"));
  BOOST_REQUIRE(segs.size() >= 3u);
  auto mid = fsys::test::read_file(segs[1]);
  BOOST_REQUIRE(mid.size() > 20u);
  mid[12] ^= std::byte{0x40};  // a bit flip in the first record's payload
  pwrite_at(segs[1], 12, {mid[12]});
  auto o = open_log(ctx, dir.file("log"), opt);
  BOOST_TEST(o.ec == fsys::errc::log_corrupt);
  BOOST_TEST(!o.log.is_open());
  BOOST_TEST(segments(dir.file("log")).size() == segs.size());  // nothing deleted
  // A missing middle segment (a hole) is damage too.
  mid[12] ^= std::byte{0x40};
  pwrite_at(segs[1], 12, {mid[12]});
  BOOST_REQUIRE(!open_log(ctx, dir.file("log"), opt).ec);
  std::filesystem::remove(segs[1]);
  BOOST_TEST(open_log(ctx, dir.file("log"), opt).ec == fsys::errc::log_corrupt);
}

BOOST_AUTO_TEST_CASE(truncate_front_drops_whole_segments) {
  temp_dir dir;
  asio::io_context ctx;
  durable_log_options opt;
  opt.segment_size = 4096;
  opt.max_record_size = 1000;
  auto o = open_log(ctx, dir.file("log"), opt);
  BOOST_REQUIRE(!o.ec);
  std::vector<std::pair<std::uint64_t, std::vector<std::byte>>> recs;
  for (std::uint64_t i = 0; i < 40; ++i) {
    auto p = payload(6, i, 900);
    auto [ec, pos] = append(ctx, o.log, p);
    BOOST_REQUIRE(!ec);
    recs.push_back({pos, p});
  }
  auto before = segments(dir.file("log"));
  BOOST_REQUIRE(before.size() >= 4u);
  const std::uint64_t keep = recs[25].first;
  BOOST_TEST(!run_void(ctx, [&](auto h) { o.log.async_truncate_front(keep, h); }));
  auto after = segments(dir.file("log"));
  BOOST_TEST(after.size() < before.size());
  const std::uint64_t first = std::stoull(after.front().stem().string());
  BOOST_TEST(first <= keep);
  BOOST_TEST(o.log.start_position() == first);
  for (auto& [pos, p] : recs) {
    auto [ec, got] = read(ctx, o.log, pos);
    if (pos >= first) {
      BOOST_TEST(!ec);
      BOOST_TEST((got == p));
    } else {
      BOOST_TEST(ec == fsys::errc::log_bad_position);
    }
  }
  // Truncating everything keeps the tail segment.
  BOOST_TEST(!run_void(ctx, [&](auto h) { o.log.async_truncate_front(o.log.end_position(), h); }));
  BOOST_TEST(segments(dir.file("log")).size() == 1u);
  BOOST_TEST(!run_void(ctx, [&](auto h) { o.log.async_close(h); }));
  auto r = open_log(ctx, dir.file("log"), opt);
  BOOST_REQUIRE(!r.ec);
  BOOST_TEST(r.report.start_position == std::stoull(segments(dir.file("log")).front().stem().string()));
  BOOST_TEST(r.report.end_position == recs.back().first + 8 + recs.back().second.size());
}

BOOST_AUTO_TEST_CASE(close_drains_queued_appends_then_refuses) {
  temp_dir dir;
  asio::io_context ctx;
  auto o = open_log(ctx, dir.file("log"));
  BOOST_REQUIRE(!o.ec);
  std::atomic<int> ok{0}, aborted{0};
  error_code closed = asio::error::would_block;
  std::vector<std::vector<std::byte>> ps;
  for (int i = 0; i < 20; ++i) ps.push_back(payload(7, static_cast<std::uint64_t>(i)));
  for (auto& p : ps)
    o.log.async_append(asio::buffer(p), [&](error_code ec, std::uint64_t) { ++(ec ? aborted : ok); });
  o.log.async_close([&](error_code ec) { closed = ec; });
  std::vector<std::byte> late(10);
  error_code late_ec;
  o.log.async_append(asio::buffer(late), [&](error_code ec, std::uint64_t) { late_ec = ec; });
  fsys::test::run(ctx);
  ctx.restart();
  BOOST_TEST(ok.load() == 20);
  BOOST_TEST(aborted.load() == 0);
  BOOST_TEST(!closed);
  BOOST_TEST(late_ec == asio::error::operation_aborted);
  auto r = open_log(ctx, dir.file("log"));
  BOOST_REQUIRE(!r.ec);
  BOOST_TEST(r.report.records == 20u);
}

BOOST_AUTO_TEST_CASE(open_errors) {
  temp_dir dir;
  asio::io_context ctx;
  durable_log_options opt;
  opt.create = false;
  BOOST_TEST(open_log(ctx, dir.file("missing"), opt).ec == boost::system::errc::no_such_file_or_directory);
  fsys::test::write_file(dir.file("plain"), {std::byte{1}});
  BOOST_TEST(open_log(ctx, dir.file("plain")).ec == boost::system::errc::not_a_directory);
  durable_log_options bad;
  bad.segment_size = 1024;
  bad.max_record_size = 2000;
  BOOST_TEST(open_log(ctx, dir.file("bad"), bad).ec == boost::system::errc::invalid_argument);
}

BOOST_AUTO_TEST_CASE(failed_sync_fails_its_batch_and_the_log_refuses_appends) {
  // faultfs's volatile mode: `wb_fail 1` makes the next fsync fail with EIO
  // and drop the file's unsynced data, as the kernel's writeback does. Every
  // record of the batch whose sync failed, and every record queued then,
  // must fail; later appends are refused; after a power cut every
  // acknowledged record is there.
  temp_dir dir;
  fsys::test::powercut_mount fs(dir.path(), "drop", 1);
  if (!fs.mounted()) {
    BOOST_TEST_MESSAGE("skipped: needs faultfs: " << fs.reason());
    return;
  }
  std::vector<std::pair<std::uint64_t, std::vector<std::byte>>> acked;
  std::atomic<int> failed{0}, refused{0};
  durable_log_options opt;
  opt.max_batches_in_flight = 2;  // a batch after the failed one is failed too
  {
    asio::io_context ctx;
    auto o = open_log(ctx, fs.file("log"), opt);
    BOOST_REQUIRE(!o.ec);
    for (std::uint64_t i = 0; i < 10; ++i) {
      auto p = payload(8, i);
      auto [ec, pos] = append(ctx, o.log, p);
      BOOST_REQUIRE(!ec);
      acked.push_back({pos, p});
    }
    fs.control("wb_fail 1");
    std::mutex m;
    std::vector<std::vector<std::byte>> ps;
    for (std::uint64_t i = 0; i < 32; ++i) ps.push_back(payload(9, i));
    for (auto& p : ps)
      o.log.async_append(asio::buffer(p), [&, pp = &p](error_code ec, std::uint64_t pos) {
        if (!ec) {
          std::lock_guard lk(m);
          acked.push_back({pos, *pp});
        } else if (ec == fsys::errc::log_failed) {
          ++refused;
        } else {
          ++failed;
        }
      });
    fsys::test::run(ctx);
    ctx.restart();
    BOOST_TEST(fs.counters()["wb_failed"] == 1u);
    BOOST_TEST(failed.load() >= 1, "the batch whose sync failed reported no error");
    BOOST_TEST(acked.size() == 10u, "no record after the failure may be acknowledged");
    BOOST_TEST(failed.load() + refused.load() == 32);
    auto late = append(ctx, o.log, payload(10, 0));
    BOOST_TEST(late.first == fsys::errc::log_failed);
    BOOST_TEST((late.first == std::errc::io_error));
  }
  fs.cut();
  fs.reboot(2);
  asio::io_context ctx;
  auto o = open_log(ctx, fs.file("log"));
  BOOST_REQUIRE(!o.ec);
  BOOST_TEST(o.report.records == acked.size());
  for (auto& [pos, p] : acked) {
    auto [ec, got] = read(ctx, o.log, pos);
    BOOST_TEST(!ec);
    BOOST_TEST((got == p));
  }
  // Reopened: appends work again.
  BOOST_TEST(!append(ctx, o.log, payload(11, 0)).first);
}

BOOST_AUTO_TEST_CASE(completion_tokens_use_awaitable) {
  // The guide's example: every operation with use_awaitable (errors throw).
  temp_dir dir;
  asio::io_context ctx;
  bool done = false;
  asio::co_spawn(ctx, [&]() -> asio::awaitable<void> {
    auto [log, report] =
        co_await durable_log::async_open(ctx.get_executor(), dir.file("wal"), durable_log_options{}, asio::use_awaitable);
    BOOST_TEST(report.records == 0u);
    std::string rec = "hello";
    std::uint64_t pos = co_await log.async_append(asio::buffer(rec), asio::use_awaitable);
    std::vector<std::byte> back = co_await log.async_read(pos, asio::use_awaitable);
    BOOST_TEST(std::string(reinterpret_cast<const char*>(back.data()), back.size()) == rec);
    auto rd = log.make_reader(log.start_position());
    auto [ec, at, payload] = co_await rd.async_read_next(asio::as_tuple(asio::use_awaitable));
    BOOST_TEST(!ec);
    BOOST_TEST(at == pos);
    std::tie(ec, at, payload) = co_await rd.async_read_next(asio::as_tuple(asio::use_awaitable));
    BOOST_TEST(ec == asio::error::eof);
    co_await log.async_truncate_front(pos, asio::use_awaitable);
    co_await log.async_close(asio::use_awaitable);
    bool threw = false;
    try {
      co_await log.async_append(asio::buffer(rec), asio::use_awaitable);
    } catch (const boost::system::system_error& e) {
      threw = e.code() == asio::error::operation_aborted;
    }
    BOOST_TEST(threw);
    done = true;
  }, [](std::exception_ptr e) { BOOST_TEST(!e); });
  ctx.run();
  BOOST_TEST(done);
}

BOOST_AUTO_TEST_CASE(crc32c_matches_a_bitwise_reference) {
  // fsys::crc32c (SSE4.2 where the CPU has it, else a table) against the
  // bit-at-a-time definition, for every length 0..300 at several alignments,
  // and split at every point (continuation).
  auto reference = [](std::uint32_t crc, const std::byte* p, std::size_t n) {
    crc = ~crc;
    for (std::size_t i = 0; i < n; ++i) {
      crc ^= std::to_integer<std::uint32_t>(p[i]);
      for (int k = 0; k < 8; ++k) crc = (crc & 1) ? (crc >> 1) ^ 0x82F63B78u : crc >> 1;
    }
    return ~crc;
  };
  auto data = fsys::test::pattern(400, 42);
  int bad = 0;
  for (std::size_t off = 0; off < 8; ++off)
    for (std::size_t n = 0; n <= 300; ++n)
      bad += fsys::crc32c(0, data.data() + off, n) != reference(0, data.data() + off, n);
  for (std::size_t cut = 0; cut <= 300; ++cut)
    bad += fsys::crc32c(fsys::crc32c(0, data.data(), cut), data.data() + cut, 300 - cut) != reference(0, data.data(), 300);
  BOOST_TEST(bad == 0);
  BOOST_TEST(fsys::crc32c(0, "123456789", 9) == 0xE3069283u);
  // The frame checksum covers the length bytes, then the payload.
  std::byte len[4] = {std::byte{5}, std::byte{0}, std::byte{0}, std::byte{0}};
  BOOST_TEST(fsys::log_record_checksum(data.data(), 5) == reference(reference(0, len, 4), data.data(), 5));
}
