// The durable log server's record format and start-up recovery
// (examples/log_server/log_format.hpp) on real files: the checksum, the scan,
// and truncation of exactly the torn tail.
#include <boost/test/unit_test.hpp>

#include "support/temp_dir.hpp"

#include "../examples/log_server/log_format.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

using fsys::test::read_file;
using fsys::test::temp_dir;
using fsys::test::write_file;

namespace {

// An fd closed at scope exit.
struct fd_guard {
  int fd;
  explicit fd_guard(const std::filesystem::path& p, int flags = O_RDWR) : fd(::open(p.c_str(), flags | O_CLOEXEC)) {
    BOOST_REQUIRE_MESSAGE(fd >= 0, "open " << p << ": " << std::strerror(errno));
  }
  ~fd_guard() { ::close(fd); }
};

// `n` valid records with bodies of varying size (0..299 bytes).
std::vector<std::byte> valid_log(std::size_t n, std::uint64_t client = 7) {
  std::vector<std::byte> log;
  for (std::size_t i = 0; i < n; ++i) logsrv::append_record(log, client, i + 1, (i * 37) % 300);
  return log;
}

struct recovered {
  logsrv::scan_result result;
  std::vector<std::byte> after;  // the file's contents after recovery
  std::vector<std::uint64_t> seqs;  // sequence numbers seen by a rescan
};

recovered recover(const std::filesystem::path& p) {
  recovered r;
  {
    fd_guard f(p);
    std::error_code ec;
    r.result = logsrv::recover_log(f.fd, ec);
    BOOST_REQUIRE_MESSAGE(!ec, ec.message());
  }
  r.after = read_file(p);
  fd_guard f(p, O_RDONLY);
  std::error_code ec;
  auto again = logsrv::scan_log(f.fd, [&](const logsrv::record_view& v) { r.seqs.push_back(v.seq); }, ec);
  BOOST_REQUIRE(!ec);
  // After recovery the whole file is the valid prefix.
  BOOST_TEST(again.tail_bytes() == 0u);
  BOOST_TEST(again.records == r.result.records);
  return r;
}

void check_prefix_kept(const recovered& r, const std::vector<std::byte>& prefix, std::size_t n) {
  BOOST_TEST(r.result.records == n);
  BOOST_TEST(r.result.valid_bytes == prefix.size());
  BOOST_REQUIRE_EQUAL(r.after.size(), prefix.size());
  BOOST_TEST(std::memcmp(r.after.data(), prefix.data(), prefix.size()) == 0);
  BOOST_REQUIRE_EQUAL(r.seqs.size(), n);
  for (std::size_t i = 0; i < n; ++i) BOOST_TEST(r.seqs[i] == i + 1);
}

}  // namespace

BOOST_AUTO_TEST_CASE(crc32c_matches_known_values) {
  // The check value of CRC-32C (RFC 3720, "123456789") and the iSCSI test
  // vectors of 32 zero bytes and 32 0xFF bytes.
  BOOST_TEST(logsrv::crc32c(0, "123456789", 9) == 0xE3069283u);
  std::vector<unsigned char> zeros(32, 0), ones(32, 0xFF);
  BOOST_TEST(logsrv::crc32c(0, zeros.data(), zeros.size()) == 0x8A9136AAu);
  BOOST_TEST(logsrv::crc32c(0, ones.data(), ones.size()) == 0x62A8AB43u);
  // Feeding the data in pieces gives the same value.
  BOOST_TEST(logsrv::crc32c(logsrv::crc32c(0, "1234", 4), "56789", 5) == 0xE3069283u);
}

BOOST_AUTO_TEST_CASE(frame_layout_and_validation) {
  std::vector<std::byte> f;
  logsrv::append_record(f, 0x1122334455667788ull, 42, 10);
  BOOST_REQUIRE_EQUAL(f.size(), logsrv::header_size + logsrv::min_payload + 10);
  BOOST_TEST(logsrv::get_u32(f.data()) == logsrv::min_payload + 10);
  BOOST_TEST(logsrv::get_u64(f.data() + 8) == 0x1122334455667788ull);
  BOOST_TEST(logsrv::get_u64(f.data() + 16) == 42u);
  BOOST_TEST(logsrv::frame_valid(f.data(), f.data() + logsrv::header_size));
  // Any flipped bit in the length, the checksum or the payload is caught.
  for (std::size_t i = 0; i < f.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      auto g = f;
      g[i] ^= std::byte(1u << bit);
      std::uint32_t len = logsrv::get_u32(g.data());
      // A changed length may point past the buffer: only check it when it fits.
      bool valid = len + logsrv::header_size <= g.size() && logsrv::frame_valid(g.data(), g.data() + logsrv::header_size);
      BOOST_TEST(!valid, "flip of byte " << i << " bit " << bit << " not detected");
    }
  }
}

BOOST_AUTO_TEST_CASE(empty_and_clean_logs_are_untouched) {
  temp_dir dir;
  auto p = dir.file("log");
  write_file(p, {});
  auto r = recover(p);
  check_prefix_kept(r, {}, 0);

  auto log = valid_log(100);
  write_file(p, log);
  r = recover(p);
  check_prefix_kept(r, log, 100);
  BOOST_TEST(r.result.tail_bytes() == 0u);
}

BOOST_AUTO_TEST_CASE(partial_record_tail_is_truncated) {
  temp_dir dir;
  auto p = dir.file("log");
  auto log = valid_log(50);
  std::vector<std::byte> next;
  logsrv::append_record(next, 7, 51, 200);
  // Every way the next record can be cut short: inside the header, right
  // after it, and inside the payload.
  for (std::size_t cut : {std::size_t(1), std::size_t(3), logsrv::header_size, logsrv::header_size + 5,
                          next.size() - 1}) {
    auto torn = log;
    torn.insert(torn.end(), next.begin(), next.begin() + static_cast<std::ptrdiff_t>(cut));
    write_file(p, torn);
    auto r = recover(p);
    BOOST_TEST_CONTEXT("cut after " << cut << " bytes") {
      check_prefix_kept(r, log, 50);
      BOOST_TEST(r.result.tail_bytes() == cut);
    }
  }
}

BOOST_AUTO_TEST_CASE(bad_checksum_cuts_the_log_there) {
  temp_dir dir;
  auto p = dir.file("log");
  auto log = valid_log(30);
  auto full = valid_log(40);  // records 31..40 follow the 30 kept ones
  BOOST_REQUIRE(std::memcmp(full.data(), log.data(), log.size()) == 0);
  // Damage one payload byte of record 31: it and everything after it go.
  full[log.size() + logsrv::header_size + 20] ^= std::byte{0x40};
  write_file(p, full);
  auto r = recover(p);
  check_prefix_kept(r, log, 30);
  BOOST_TEST(r.result.tail_bytes() == full.size() - log.size());
}

BOOST_AUTO_TEST_CASE(zeroed_or_huge_length_tail_is_truncated) {
  temp_dir dir;
  auto p = dir.file("log");
  auto log = valid_log(20);

  // A tail of zeros, as a crash can leave after the file size was updated
  // but before the data reached the disk.
  auto zeroed = log;
  zeroed.resize(log.size() + 4096);
  write_file(p, zeroed);
  auto r = recover(p);
  check_prefix_kept(r, log, 20);
  BOOST_TEST(r.result.tail_bytes() == 4096u);

  // A length field beyond max_payload is damage, not a reason to read on.
  auto huge = log;
  std::vector<std::byte> next;
  logsrv::append_record(next, 7, 21, 10);
  logsrv::put_u32(next.data(), logsrv::max_payload + 1);
  huge.insert(huge.end(), next.begin(), next.end());
  write_file(p, huge);
  r = recover(p);
  check_prefix_kept(r, log, 20);
  BOOST_TEST(r.result.tail_bytes() == next.size());
}

BOOST_AUTO_TEST_CASE(scan_crosses_window_boundaries) {
  // Larger than the scan's 4 MiB window, with records of up to 64 KiB, so
  // that records straddle refills.
  temp_dir dir;
  auto p = dir.file("log");
  std::vector<std::byte> log;
  std::size_t n = 0;
  while (log.size() < (std::size_t(9) << 20)) {
    ++n;
    logsrv::append_record(log, 3, n, (n * 7919) % 65536);
  }
  auto torn = log;
  logsrv::append_record(torn, 3, n + 1, 1000);
  torn.resize(torn.size() - 1);
  write_file(p, torn);
  auto r = recover(p);
  check_prefix_kept(r, log, n);
  BOOST_TEST(r.result.tail_bytes() == logsrv::header_size + logsrv::min_payload + 999);
}

BOOST_AUTO_TEST_CASE(appending_after_recovery_continues_the_log) {
  // What the server does after recovery: append at valid_bytes. The result
  // must scan as one clean log with no trace of the torn tail.
  temp_dir dir;
  auto p = dir.file("log");
  auto log = valid_log(10);
  auto torn = log;
  logsrv::append_record(torn, 9, 99, 500);
  torn.resize(torn.size() - 100);
  write_file(p, torn);
  auto r = recover(p);
  check_prefix_kept(r, log, 10);

  std::vector<std::byte> more;
  for (std::uint64_t s = 11; s <= 15; ++s) logsrv::append_record(more, 7, s, 1);
  {
    fd_guard f(p);
    // pwrite of our own vector at the recovered end.
    BOOST_REQUIRE_EQUAL(::pwrite(f.fd, more.data(), more.size(), static_cast<off_t>(r.result.valid_bytes)),
                        static_cast<ssize_t>(more.size()));
  }
  auto r2 = recover(p);
  BOOST_TEST(r2.result.records == 15u);
  BOOST_TEST(r2.result.tail_bytes() == 0u);
  BOOST_REQUIRE_EQUAL(r2.seqs.size(), 15u);
  for (std::size_t i = 0; i < 15; ++i) BOOST_TEST(r2.seqs[i] == i + 1);
}
