// The inline fast path of asynchronous reads and writes
// (`ring_options::inline_fast_path`): RWF_NOWAIT attempts in the initiating
// function, on real files and a real ring. Runs once per backend: the fast
// path applies to both (it runs before the engine), so the same results are
// expected on psync.
#include <boost/test/unit_test.hpp>

#include "support/ring_fixture.hpp"
#include "support/run.hpp"
#include "support/temp_dir.hpp"

#include <fsys/fsys.hpp>

#include <boost/asio/bind_allocator.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <thread>

namespace asio = boost::asio;
using boost::system::error_code;
using fsys::test::pattern;
using fsys::test::temp_dir;
using fsys::test::temp_dir_on_disk;

namespace {

// The fast path is on by default; these cases ask for it all the same.
fsys::ring_options fast_path_on() {
  fsys::ring_options o;
  o.inline_fast_path = true;
  return o;
}

constexpr int rw_create = O_RDWR | O_CREAT;

bool fast_path_disabled_by_env() {
  const char* v = std::getenv("FSYS_INLINE_FAST_PATH");
  return v && std::strcmp(v, "0") == 0;
}

// Writes `data` with POSIX calls, makes it durable (so its pages are clean
// and can be dropped) and returns the path.
std::filesystem::path make_file(const std::filesystem::path& p, const std::vector<std::byte>& data) {
  fsys::test::write_file(p, data);
  int fd = ::open(p.c_str(), O_RDONLY);
  BOOST_REQUIRE(fd >= 0);
  BOOST_REQUIRE(::fdatasync(fd) == 0);
  ::close(fd);
  return p;
}

// Drops the clean pages of [off, off + len) from the page cache.
void evict(const std::filesystem::path& p, off_t off, off_t len) {
  int fd = ::open(p.c_str(), O_RDONLY);
  BOOST_REQUIRE(fd >= 0);
  BOOST_REQUIRE(::posix_fadvise(fd, off, len, POSIX_FADV_DONTNEED) == 0);
  ::close(fd);
}

// Page-cache residency of every page of the file, as mincore reports it.
std::vector<bool> resident_pages(const std::filesystem::path& p, std::size_t size) {
  int fd = ::open(p.c_str(), O_RDONLY);
  BOOST_REQUIRE(fd >= 0);
  void* m = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
  ::close(fd);
  BOOST_REQUIRE(m != MAP_FAILED);
  const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  std::vector<unsigned char> vec((size + page - 1) / page);
  BOOST_REQUIRE(::mincore(m, size, vec.data()) == 0);
  ::munmap(m, size);
  std::vector<bool> out(vec.size());
  for (std::size_t i = 0; i < vec.size(); ++i) out[i] = (vec[i] & 1) != 0;
  return out;
}

std::size_t count(const std::vector<bool>& v, std::size_t from, std::size_t to, bool value) {
  std::size_t n = 0;
  for (std::size_t i = from; i < to; ++i) n += v[i] == value;
  return n;
}

struct fixture {
  fixture() {
    if (fast_path_disabled_by_env()) fsys::test::skip_suite("FSYS_INLINE_FAST_PATH=0: the fast path is off");
  }
};

// An allocator that counts what it hands out (the handler's associated one).
struct counting_state {
  std::size_t allocs = 0;
  std::size_t frees = 0;
};
template <class T>
struct counting_allocator {
  using value_type = T;
  counting_state* s;
  explicit counting_allocator(counting_state* st) noexcept : s(st) {}
  template <class U>
  counting_allocator(const counting_allocator<U>& o) noexcept : s(o.s) {}
  T* allocate(std::size_t n) {
    ++s->allocs;
    return std::allocator<T>().allocate(n);
  }
  void deallocate(T* p, std::size_t n) {
    ++s->frees;
    std::allocator<T>().deallocate(p, n);
  }
  template <class U>
  bool operator==(const counting_allocator<U>& o) const noexcept {
    return s == o.s;
  }
};

}  // namespace

BOOST_GLOBAL_FIXTURE(fixture);

BOOST_AUTO_TEST_CASE(cached_read_completes_inline_and_the_handler_is_posted) {
  temp_dir dir;
  auto data = pattern(64 * 1024, 1);
  auto path = dir.file("cached.dat");
  fsys::test::write_file(path, data);  // just written: in the page cache
  asio::io_context ctx;
  auto& svc = fsys::test::make_ring(ctx, fast_path_on());
  BOOST_TEST(svc.inline_fast_path());
  fsys::file f(ctx, path, O_RDONLY);
  const auto before = svc.stats();

  std::vector<std::byte> back(data.size());
  bool returned = false, ran_after_return = false;
  std::size_t got = 0;
  error_code ec = asio::error::would_block;
  f.async_read_at(0, asio::buffer(back), [&](error_code e, std::size_t n) {
    ran_after_return = returned;
    ec = e;
    got = n;
  });
  returned = true;
  BOOST_TEST(got == 0u);  // not yet: the handler has not run
  fsys::test::run(ctx);
  BOOST_TEST(ran_after_return);
  BOOST_TEST(!ec);
  BOOST_TEST(got == data.size());
  BOOST_TEST((back == data));
  const auto after = svc.stats();
  BOOST_TEST(after.inline_reads == before.inline_reads + 1);
  BOOST_TEST(after.inline_read_fallthroughs == before.inline_read_fallthroughs);
  // Counted as started and completed, but the engine never saw it.
  BOOST_TEST(after.ops_started == before.ops_started + 1);
  BOOST_TEST(after.ops_completed == before.ops_completed + 1);
  BOOST_TEST(after.sqes_submitted == before.sqes_submitted);

  // read_some at end of file: eof, inline too.
  error_code eof;
  f.async_read_some_at(data.size(), asio::buffer(back), [&](error_code e, std::size_t) { eof = e; });
  ctx.restart();
  fsys::test::run(ctx);
  BOOST_TEST((eof == asio::error::eof));
  BOOST_TEST(svc.stats().inline_reads == before.inline_reads + 2);

  // A coroutine read of cached data.
  std::size_t co_n = 0;
  asio::co_spawn(ctx, [&]() -> asio::awaitable<void> {
    co_n = co_await fsys::co_read_at(f, 4096, asio::buffer(back.data(), 4096));
  }, [](std::exception_ptr e) { if (e) std::rethrow_exception(e); });
  ctx.restart();
  fsys::test::run(ctx);
  BOOST_TEST(co_n == 4096u);
  BOOST_TEST(svc.stats().inline_reads == before.inline_reads + 3);
}

BOOST_AUTO_TEST_CASE(handler_never_runs_inside_the_initiating_function_even_on_the_context_thread) {
  // Started from a handler running on the io_context (where dispatch would
  // run the completion at once), the inline completion is still posted.
  temp_dir dir;
  auto data = pattern(8192, 2);
  auto path = dir.file("h.dat");
  fsys::test::write_file(path, data);
  asio::io_context ctx;
  auto& svc = fsys::test::make_ring(ctx, fast_path_on());
  fsys::file f(ctx, path, O_RDONLY);
  std::vector<std::byte> back(data.size());
  bool returned = false, ran_after_return = false, called = false;
  asio::post(ctx, [&] {
    f.async_read_some_at(0, asio::buffer(back), [&](error_code ec, std::size_t n) {
      BOOST_TEST(!ec);
      BOOST_TEST(n == data.size());
      ran_after_return = returned;
      called = true;
    });
    returned = true;
  });
  ctx.run();  // one thread: "after the initiating handler returned" needs it
  BOOST_TEST(called);
  BOOST_TEST(ran_after_return);
  BOOST_TEST(svc.stats().inline_reads == 1u);
}

BOOST_AUTO_TEST_CASE(cancellation_of_an_inline_completed_read_delivers_the_result) {
  temp_dir dir;
  auto data = pattern(16384, 3);
  auto path = dir.file("c.dat");
  fsys::test::write_file(path, data);
  asio::io_context ctx;
  auto& svc = fsys::test::make_ring(ctx, fast_path_on());
  fsys::file f(ctx, path, O_RDONLY);
  std::vector<std::byte> back(data.size());
  asio::cancellation_signal sig;
  error_code ec = asio::error::would_block;
  std::size_t got = 0;
  int calls = 0;
  f.async_read_at(0, asio::buffer(back), asio::bind_cancellation_slot(sig.slot(), [&](error_code e, std::size_t n) {
    ec = e;
    got = n;
    ++calls;
  }));
  BOOST_TEST(svc.stats().inline_reads == 1u);
  // The op is complete (its handler posted): the request finds nothing.
  sig.emit(asio::cancellation_type::all);
  fsys::test::run(ctx);
  BOOST_TEST(calls == 1);
  BOOST_TEST(!ec);
  BOOST_TEST(got == data.size());
  BOOST_TEST((back == data));
}

BOOST_AUTO_TEST_CASE(inline_completion_uses_the_handlers_allocator) {
  temp_dir dir;
  auto data = pattern(4096, 4);
  auto path = dir.file("a.dat");
  fsys::test::write_file(path, data);
  asio::io_context ctx;
  auto& svc = fsys::test::make_ring(ctx, fast_path_on());
  fsys::file f(ctx, path, O_RDONLY);
  counting_state st;
  std::vector<std::byte> back(data.size());
  std::size_t got = 0;
  f.async_read_at(0, asio::buffer(back),
                  asio::bind_allocator(counting_allocator<void>(&st), [&](error_code, std::size_t n) { got = n; }));
  BOOST_TEST(svc.stats().inline_reads == 1u);
  fsys::test::run(ctx);
  BOOST_TEST(got == data.size());
  // No operation is made for an inline completion; the deferred completion
  // is allocated by the executor, and a type-erased executor such as
  // any_io_executor takes no allocator property (Asio's recycling allocator).
  BOOST_TEST(st.allocs == st.frees);

  // On an io_context executor the deferred completion's memory comes from
  // the handler's allocator.
  fsys::basic_file<asio::io_context::executor_type> tf(ctx.get_executor(), path, O_RDONLY);
  counting_state st2;
  got = 0;
  tf.async_read_at(0, asio::buffer(back),
                   asio::bind_allocator(counting_allocator<void>(&st2), [&](error_code, std::size_t n) { got = n; }));
  BOOST_TEST(svc.stats().inline_reads == 2u);
  ctx.restart();
  ctx.run();
  BOOST_TEST(got == data.size());
  BOOST_TEST(st2.allocs >= 1u);
  BOOST_TEST(st2.allocs == st2.frees);
}

BOOST_AUTO_TEST_CASE(partially_cached_range_returns_the_right_bytes) {
  temp_dir_on_disk dir;
  if (!dir.ok()) {
    BOOST_TEST_MESSAGE("skip: no disk-backed directory (page eviction needs one)");
    return;
  }
  // Drop the whole file, then warm its first MiB with a plain read: the
  // kernel may cache in large folios, which only a whole-file drop evicts.
  const std::size_t size = 8 << 20, warm = 1 << 20;
  const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  auto data = pattern(size, 5);
  auto path = make_file(dir.file("partial.dat"), data);
  evict(path, 0, 0);
  {
    int fd = ::open(path.c_str(), O_RDONLY);
    BOOST_REQUIRE(fd >= 0);
    ::posix_fadvise(fd, 0, 0, POSIX_FADV_RANDOM);  // no readahead beyond what is read
    std::vector<std::byte> tmp(warm);
    BOOST_REQUIRE(::pread(fd, tmp.data(), warm, 0) == static_cast<ssize_t>(warm));
    ::close(fd);
  }
  auto res = resident_pages(path, size);
  const std::size_t pages = size / page;
  if (count(res, 0, warm / page, true) != warm / page || count(res, pages / 2, pages, false) != pages / 2) {
    BOOST_TEST_MESSAGE("skip: the page cache did not take the partial state (mincore: "
                       << count(res, 0, pages, true) << " of " << pages << " resident)");
    return;
  }
  asio::io_context ctx;
  auto& svc = fsys::test::make_ring(ctx, fast_path_on());
  fsys::file f(ctx, path, O_RDONLY);
  const auto before = svc.stats();
  std::vector<std::byte> back(size);
  std::size_t got = 0;
  error_code ec;
  f.async_read_at(0, asio::buffer(back), [&](error_code e, std::size_t n) {
    ec = e;
    got = n;
  });
  fsys::test::run(ctx);
  BOOST_TEST(!ec);
  BOOST_TEST(got == size);
  BOOST_TEST((back == data));
  const auto after = svc.stats();
  // The cached part was read inline; the rest (not cached when the attempt
  // reached it) went to the engine, from where the attempt stopped. (A
  // RWF_NOWAIT read that finds no page still starts readahead, and on a fast
  // disk the attempt's next call may find it done: then the whole range
  // completes inline. Either way exactly one attempt was made.)
  const auto fell = after.inline_read_fallthroughs - before.inline_read_fallthroughs;
  const auto inl = after.inline_reads - before.inline_reads;
  BOOST_TEST(fell + inl == 1u);
  BOOST_TEST_MESSAGE((fell ? "the rest went to the engine" : "readahead finished in time: all inline"));
  BOOST_TEST(after.ops_started == before.ops_started + 1);
}

BOOST_AUTO_TEST_CASE(cold_file_goes_to_the_engine_and_misses_stop_attempts_for_a_while) {
  temp_dir_on_disk dir;
  if (!dir.ok()) {
    BOOST_TEST_MESSAGE("skip: no disk-backed directory (page eviction needs one)");
    return;
  }
  const std::size_t stride = 1 << 20;  // far apart: readahead of one read does not warm the next
  const std::size_t reads = 12;
  auto data = pattern(stride * reads, 6);
  auto path = make_file(dir.file("cold.dat"), data);
  evict(path, 0, 0);
  auto res = resident_pages(path, data.size());
  if (count(res, 0, res.size(), true) != 0) {
    BOOST_TEST_MESSAGE("skip: the pages could not be dropped (mincore: " << count(res, 0, res.size(), true)
                                                                        << " resident)");
    return;
  }
  asio::io_context ctx;
  auto& svc = fsys::test::make_ring(ctx, fast_path_on());
  fsys::file f(ctx, path, O_RDONLY);
  // No readahead on this file: with a large device readahead (8 MiB on some
  // virtual disks) one read's readahead covers the next read's range and may
  // still be in flight when that range is dropped (pages under IO are not),
  // so the next attempt would find it cached.
  BOOST_REQUIRE(::posix_fadvise(f.native_handle(), 0, 0, POSIX_FADV_RANDOM) == 0);
  const auto before = svc.stats();
  std::vector<std::byte> back(4096);
  std::vector<char> path_of;  // per read: 'i' inline, 'm' missed (went on to the ring), 's' no attempt
  for (std::size_t i = 0; i < reads; ++i) {
    // Dropped again before each read: readahead of an earlier read may have
    // brought this range in.
    evict(path, 0, 0);
    error_code ec;
    std::size_t got = 0;
    const auto s0 = svc.stats();
    f.async_read_at(i * stride, asio::buffer(back), [&](error_code e, std::size_t n) {
      ec = e;
      got = n;
    });
    ctx.restart();
    fsys::test::run(ctx);
    const auto s1 = svc.stats();
    const auto inl = s1.inline_reads - s0.inline_reads;
    const auto fell = s1.inline_read_fallthroughs - s0.inline_read_fallthroughs;
    BOOST_TEST(inl + fell <= 1u);
    path_of.push_back(inl ? 'i' : fell ? 'm' : 's');
    BOOST_TEST(!ec);
    BOOST_TEST(got == back.size());
    BOOST_TEST(std::equal(back.begin(), back.end(), data.begin() + static_cast<std::ptrdiff_t>(i * stride)));
  }
  const auto after = svc.stats();
  BOOST_TEST(after.ops_started == before.ops_started + reads);
  // The rule: after `nowait_miss_limit` misses in a row the file's next reads
  // make no attempt, and a read makes no attempt only after such a run. (A
  // RWF_NOWAIT read that misses starts the read of its page, and on a fast
  // disk, a virtual one served from the host's cache, the page is now and
  // then up to date before the attempt gives up: that read completes inline
  // and the run of misses starts again; a machine on which that happens to
  // most reads shows no run at all, and only the results are checked.)
  const std::string seq(path_of.begin(), path_of.end());
  BOOST_TEST_MESSAGE("cold reads (i inline, m missed, s no attempt): " << seq);
  const std::size_t limit = fsys::detail::nowait_miss_limit;
  const std::string run_of_misses(limit, 'm');
  const auto first_run = seq.find(run_of_misses);
  if (first_run == std::string::npos) {
    BOOST_TEST_MESSAGE("no " << limit << " misses in a row here (cold pages came back within the attempt): "
                             "the miss limit is not observable on this machine");
    BOOST_TEST(seq.find('s') == std::string::npos);
  } else {
    BOOST_TEST(seq.find('s') > first_run + limit - 1);  // nothing skipped before the first run
    if (first_run + limit < seq.size()) BOOST_TEST(seq[first_run + limit] == 's', seq);
  }
}

BOOST_AUTO_TEST_CASE(empty_pipe_goes_to_the_engine_without_an_attempt) {
  int p[2];
  BOOST_REQUIRE(::pipe(p) == 0);
  asio::io_context ctx;
  auto& svc = fsys::test::make_ring(ctx, fast_path_on());
  fsys::file rd(ctx, p[0]);
  const auto before = svc.stats();
  std::vector<std::byte> buf(64);
  std::size_t got = 0;
  rd.async_read_some_at(0, asio::buffer(buf), [&](error_code ec, std::size_t n) {
    BOOST_TEST(!ec);
    got = n;
  });
  BOOST_TEST(svc.stats().ops_started == before.ops_started + 1);
  const char msg[] = "hello";
  BOOST_REQUIRE(::write(p[1], msg, 5) == 5);
  fsys::test::run(ctx);
  BOOST_TEST(got == 5u);
  const auto after = svc.stats();
  BOOST_TEST(after.inline_reads == before.inline_reads);
  BOOST_TEST(after.inline_read_fallthroughs == before.inline_read_fallthroughs);
  ::close(p[1]);
}

BOOST_AUTO_TEST_CASE(tmpfs_reads_make_no_attempt_after_the_first) {
  struct statfs sfs;
  if (::statfs("/dev/shm", &sfs) != 0 || static_cast<unsigned long>(sfs.f_type) != 0x01021994UL) {
    BOOST_TEST_MESSAGE("skip: no tmpfs at /dev/shm");
    return;
  }
  auto path = std::filesystem::path("/dev/shm") / ("fsys_fastpath_" + std::to_string(::getpid()));
  auto data = pattern(8192, 7);
  fsys::test::write_file(path, data);
  int probe = ::open(path.c_str(), O_RDONLY);
  BOOST_REQUIRE(probe >= 0);
  std::vector<std::byte> tmp(4096);
  iovec v{tmp.data(), tmp.size()};
  const bool refuses = ::preadv2(probe, &v, 1, 0, RWF_NOWAIT) < 0 && errno == EOPNOTSUPP;
  ::close(probe);
  asio::io_context ctx;
  auto& svc = fsys::test::make_ring(ctx, fast_path_on());
  {
    fsys::file f(ctx, path, O_RDONLY);
    for (int i = 0; i < 3; ++i) {
      std::vector<std::byte> back(data.size());
      std::size_t got = 0;
      f.async_read_at(0, asio::buffer(back), [&](error_code ec, std::size_t n) {
        BOOST_TEST(!ec);
        got = n;
      });
      ctx.restart();
      fsys::test::run(ctx);
      BOOST_TEST(got == data.size());
      BOOST_TEST((back == data));
    }
  }
  std::filesystem::remove(path);
  const auto s = svc.stats();
  if (refuses) {
    BOOST_TEST(s.inline_reads == 0u);
    BOOST_TEST(s.inline_read_fallthroughs == 1u);  // the first attempt only
    BOOST_TEST(s.ops_started == 3u);
  } else {
    BOOST_TEST_MESSAGE("this kernel's tmpfs accepts RWF_NOWAIT reads: they complete inline");
    BOOST_TEST(s.inline_reads == 3u);
  }
}

BOOST_AUTO_TEST_CASE(writes_refused_by_the_filesystem_make_no_attempt_after_the_first) {
  temp_dir dir;
  auto path = dir.file("w.dat");
  auto data = pattern(4096, 8);
  fsys::test::write_file(path, data);
  int probe = ::open(path.c_str(), O_RDWR);
  BOOST_REQUIRE(probe >= 0);
  iovec v{data.data(), data.size()};
  const ssize_t pr = ::pwritev2(probe, &v, 1, 0, RWF_NOWAIT);
  const bool refuses = pr < 0 && errno == EOPNOTSUPP;
  ::close(probe);
  asio::io_context ctx;
  auto& svc = fsys::test::make_ring(ctx, fast_path_on());
  fsys::file f(ctx, path, O_RDWR);
  auto next = pattern(4096, 9);
  for (int i = 0; i < 3; ++i) {
    std::size_t got = 0;
    f.async_write_at(0, asio::buffer(next), [&](error_code ec, std::size_t n) {
      BOOST_TEST(!ec);
      got = n;
    });
    ctx.restart();
    fsys::test::run(ctx);
    BOOST_TEST(got == next.size());
  }
  BOOST_TEST((fsys::test::read_file(path) == next));
  const auto s = svc.stats();
  if (refuses) {  // ext4, tmpfs
    BOOST_TEST(s.inline_writes == 0u);
    BOOST_TEST(s.inline_write_fallthroughs == 1u);
    BOOST_TEST(s.ops_started == 3u);
  } else {  // XFS, btrfs overwrites
    BOOST_TEST_MESSAGE("this filesystem accepts RWF_NOWAIT writes");
    BOOST_TEST(s.inline_writes + s.inline_write_fallthroughs == 3u);
  }
}

BOOST_AUTO_TEST_CASE(o_direct_files_make_no_attempt) {
  temp_dir_on_disk dir;
  if (!dir.ok()) {
    BOOST_TEST_MESSAGE("skip: no disk-backed directory accepts O_DIRECT here");
    return;
  }
  auto path = dir.file("direct.dat");
  auto data = pattern(8192, 10);
  make_file(path, data);
  asio::io_context ctx;
  auto& svc = fsys::test::make_ring(ctx, fast_path_on());
  fsys::file f(ctx);
  error_code oec;
  f.open(path, O_RDONLY | O_DIRECT, 0644, oec);
  if (oec) {
    BOOST_TEST_MESSAGE("skip: O_DIRECT refused: " << oec.message());
    return;
  }
  fsys::aligned_buffer buf(8192, 4096);
  for (int i = 0; i < 2; ++i) {
    std::size_t got = 0;
    error_code ec;
    f.async_read_at(0, asio::buffer(buf.data(), buf.size()), [&](error_code e, std::size_t n) {
      ec = e;
      got = n;
    });
    ctx.restart();
    fsys::test::run(ctx);
    BOOST_TEST(!ec, ec.message());
    BOOST_TEST(got == data.size());
  }
  const auto s = svc.stats();
  BOOST_TEST(s.inline_reads == 0u);
  BOOST_TEST(s.inline_read_fallthroughs == 0u);
  BOOST_TEST(s.ops_started == 2u);
}

BOOST_AUTO_TEST_CASE(option_off_sends_everything_to_the_engine) {
  temp_dir dir;
  auto data = pattern(4096, 11);
  auto path = dir.file("off.dat");
  fsys::test::write_file(path, data);
  asio::io_context ctx;
  fsys::ring_options o;
  o.inline_fast_path = false;
  auto& svc = fsys::test::make_ring(ctx, o);
  BOOST_TEST(!svc.inline_fast_path());
  fsys::file f(ctx, path, O_RDONLY);
  std::vector<std::byte> back(data.size());
  std::size_t got = 0;
  f.async_read_at(0, asio::buffer(back), [&](error_code, std::size_t n) { got = n; });
  fsys::test::run(ctx);
  BOOST_TEST(got == data.size());
  const auto s = svc.stats();
  BOOST_TEST(s.inline_reads == 0u);
  BOOST_TEST(s.inline_read_fallthroughs == 0u);
  BOOST_TEST(s.ops_started == 1u);
}

BOOST_AUTO_TEST_CASE(iowq_worker_limits_are_applied_and_read_back) {
  // io-wq limits belong to a thread's io-wq, which every ring that thread
  // submits to shares: each part runs in a fresh thread that submits to
  // one ring only.
  temp_dir dir;
  auto limits_seen_by_a_new_submitter = [&](fsys::ring_options o, std::uint32_t (&v)[2]) {
    std::error_code ec;
    std::thread([&] {
      asio::io_context ctx;
      auto& svc = fsys::test::make_ring(ctx, o);
      if (svc.active_backend() != fsys::backend::io_uring) {
        ec = svc.iowq_max_workers(v);
        return;
      }
      // This thread submits to the ring (it runs the context): its io-wq is
      // created with the ring's limits.
      fsys::file f(ctx, dir.file("w.dat"), rw_create);
      error_code sec = asio::error::would_block;
      f.async_fdatasync([&](error_code e) { sec = e; });
      ctx.run();  // this thread alone: it must be the submitter
      BOOST_TEST(!sec);
      ec = svc.iowq_max_workers(v);
    }).join();
    return ec;
  };
  fsys::ring_options o;
  o.iowq_max_workers_bounded = 2;
  o.iowq_max_workers_unbounded = 3;
  std::uint32_t v[2] = {99, 99};
  auto ec = limits_seen_by_a_new_submitter(o, v);
  if (fsys::test::expected_backend() != fsys::backend::io_uring) {
    BOOST_TEST((ec == std::errc::operation_not_supported));
    return;
  }
  BOOST_TEST(!ec, ec.message());
  BOOST_TEST(v[0] == 2u);
  BOOST_TEST(v[1] == 3u);

  // Without limits the kernel's defaults apply (bounded: min(SQ size, 4 × CPUs)).
  std::uint32_t d[2] = {0, 0};
  ec = limits_seen_by_a_new_submitter(fsys::ring_options{.queue_depth = 8}, d);
  BOOST_TEST(!ec, ec.message());
  BOOST_TEST_MESSAGE("default io-wq limits: bounded " << d[0] << ", unbounded " << d[1]);
  BOOST_TEST(d[0] > 2u);
  BOOST_TEST(d[1] > 3u);
}

// Reads started together go to the ring together: with the batch threshold
// at 2, the first two of 16 reads started at once finish inline (nothing
// else is outstanding yet) and the other 14 skip the attempt and are
// submitted in one batch. The count of outstanding operations must return
// to zero once every handler has run (inline completions and ring
// completions both leave it): a read started afterwards, alone, goes
// inline again. The psync backend has no batches and attempts every read.
// Then the same through coroutines: 8 coroutines reading in a loop keep a
// batch forming, and every byte is right.
BOOST_AUTO_TEST_CASE(reads_started_together_are_batched_and_a_lone_read_goes_inline) {
  temp_dir dir;
  constexpr std::size_t block = 4096, reads = 16;
  auto data = pattern(reads * block, 21);
  auto path = dir.file("batch.dat");
  fsys::test::write_file(path, data);  // just written: in the page cache
  asio::io_context ctx;
  fsys::ring_options o = fast_path_on();
  o.inline_batch_threshold = 2;
  auto& svc = fsys::test::make_ring(ctx, o);
  const bool ring = svc.active_backend() == fsys::backend::io_uring;
  fsys::file f(ctx, path, O_RDONLY);
  const auto before = svc.stats();

  std::vector<std::vector<std::byte>> back(reads, std::vector<std::byte>(block));
  std::vector<std::size_t> got(reads, 0);
  std::atomic<std::size_t> errors{0};
  for (std::size_t i = 0; i < reads; ++i)
    f.async_read_at(i * block, asio::buffer(back[i]), [&, i](error_code e, std::size_t n) {
      errors += e ? 1 : 0;
      got[i] = n;
    });
  fsys::test::run(ctx);
  BOOST_TEST(errors == 0u);
  for (std::size_t i = 0; i < reads; ++i) {
    BOOST_TEST(got[i] == block);
    BOOST_TEST(std::equal(back[i].begin(), back[i].end(), data.begin() + static_cast<std::ptrdiff_t>(i * block)));
  }
  const auto mid = svc.stats();
  if (ring) {
    BOOST_TEST(mid.inline_reads == before.inline_reads + 2);
    BOOST_TEST(mid.batched_reads == before.batched_reads + reads - 2);
    BOOST_TEST(mid.sqes_submitted >= before.sqes_submitted + reads - 2);
    // One batch: a few enters, not one per read.
    BOOST_TEST(mid.enter_calls - before.enter_calls <= 4u, (mid.enter_calls - before.enter_calls) << " enters");
  } else {
    BOOST_TEST(mid.inline_reads == before.inline_reads + reads);
    BOOST_TEST(mid.batched_reads == before.batched_reads);
  }

  // Alone again: inline.
  std::size_t lone = 0;
  f.async_read_at(0, asio::buffer(back[0]), [&](error_code e, std::size_t n) { lone = e ? 0 : n; });
  ctx.restart();
  fsys::test::run(ctx);
  BOOST_TEST(lone == block);
  const auto after = svc.stats();
  BOOST_TEST(after.inline_reads == mid.inline_reads + 1);
  BOOST_TEST(after.batched_reads == mid.batched_reads);

  // Coroutines: 8 of them, 64 reads each, every byte checked.
  constexpr std::size_t coroutines = 8, rounds = 64;
  std::atomic<std::size_t> bad{0}, total{0};  // coroutines may run on several threads
  for (std::size_t c = 0; c < coroutines; ++c)
    asio::co_spawn(ctx, [&, c]() -> asio::awaitable<void> {
      std::vector<std::byte> buf(block);
      for (std::size_t r = 0; r < rounds; ++r) {
        const std::size_t blk = (c * 7 + r * 3) % reads;
        const std::size_t n = co_await fsys::co_read_at(f, blk * block, asio::buffer(buf));
        bad += n != block || !std::equal(buf.begin(), buf.end(), data.begin() + static_cast<std::ptrdiff_t>(blk * block));
        ++total;
      }
    }, [](std::exception_ptr e) { if (e) std::rethrow_exception(e); });
  ctx.restart();
  fsys::test::run(ctx);
  BOOST_TEST(total == coroutines * rounds);
  BOOST_TEST(bad == 0u);
  const auto end = svc.stats();
  if (ring) BOOST_TEST(end.batched_reads > after.batched_reads);
  else BOOST_TEST(end.batched_reads == after.batched_reads);
  // And alone again, after all of that.
  lone = 0;
  f.async_read_at(block, asio::buffer(back[1]), [&](error_code e, std::size_t n) { lone = e ? 0 : n; });
  ctx.restart();
  fsys::test::run(ctx);
  BOOST_TEST(lone == block);
  BOOST_TEST(svc.stats().inline_reads == end.inline_reads + 1);
}

BOOST_AUTO_TEST_CASE(coroutine_reads_finished_inline_resume_without_the_scheduler) {
  temp_dir dir;
  auto data = pattern(64 * 1024, 12);
  auto path = dir.file("co.dat");
  fsys::test::write_file(path, data);  // just written: in the page cache
  asio::io_context ctx;
  auto& svc = fsys::test::make_ring(ctx, fast_path_on());
  fsys::file f(ctx, path, O_RDONLY);
  const auto before = svc.stats();
  constexpr std::size_t reads = 16;  // fewer than detail::inline_resume_limit
  static_assert(reads < fsys::detail::inline_resume_limit);
  std::vector<std::byte> back(4096);
  bool all_equal = true;
  std::size_t eof_n = 99;
  asio::co_spawn(ctx, [&]() -> asio::awaitable<void> {
    for (std::size_t i = 0; i < reads; ++i) {
      const std::size_t off = i * back.size();
      const std::size_t n = co_await fsys::co_read_at(f, off, asio::buffer(back));
      all_equal = all_equal && n == back.size() &&
                  std::equal(back.begin(), back.end(), data.begin() + static_cast<std::ptrdiff_t>(off));
    }
    // At end of file: a short read, 0 bytes (read_full's rule), inline too.
    eof_n = co_await fsys::co_read_at(f, data.size(), asio::buffer(back));
  }, [](std::exception_ptr e) { if (e) std::rethrow_exception(e); });
  // Handlers the io_context runs: co_spawn's start and its completion, and
  // one per read that went through the scheduler.
  const std::size_t handlers = ctx.run();
  BOOST_TEST(all_equal);
  BOOST_TEST(eof_n == 0u);
  const auto after = svc.stats();
  BOOST_TEST(after.inline_reads == before.inline_reads + reads + 1);
  BOOST_TEST(after.sqes_submitted == before.sqes_submitted);
  BOOST_TEST(handlers < reads, "the io_context ran " << handlers << " handlers for " << reads << " reads");
}

BOOST_AUTO_TEST_CASE(coroutine_reading_cached_data_in_a_loop_lets_other_handlers_run) {
  temp_dir dir;
  auto data = pattern(4096, 13);
  auto path = dir.file("loop.dat");
  fsys::test::write_file(path, data);
  asio::io_context ctx;
  fsys::test::make_ring(ctx, fast_path_on());
  fsys::file f(ctx, path, O_RDONLY);
  const std::size_t reads = 3 * fsys::detail::inline_resume_limit;
  std::size_t done_when_other_ran = 0, done = 0;
  asio::co_spawn(ctx, [&]() -> asio::awaitable<void> {
    std::vector<std::byte> back(4096);
    // Queued behind the coroutine: it can run only when a read resumes
    // through the scheduler.
    asio::post(ctx, [&] { done_when_other_ran = done; });
    for (std::size_t i = 0; i < reads; ++i) {
      BOOST_REQUIRE(co_await fsys::co_read_at(f, 0, asio::buffer(back)) == back.size());
      ++done;
    }
  }, [](std::exception_ptr e) { if (e) std::rethrow_exception(e); });
  ctx.run();
  BOOST_TEST(done == reads);
  BOOST_TEST(done_when_other_ran > 0u);
  BOOST_TEST(done_when_other_ran <= fsys::detail::inline_resume_limit + 1);
}

BOOST_AUTO_TEST_CASE(coroutine_read_of_a_partially_cached_range_continues_on_the_engine) {
  temp_dir_on_disk dir;
  if (!dir.ok()) {
    BOOST_TEST_MESSAGE("skip: no disk-backed directory (page eviction needs one)");
    return;
  }
  const std::size_t size = 4 << 20, warm = 1 << 20;
  auto data = pattern(size, 14);
  auto path = make_file(dir.file("copartial.dat"), data);
  evict(path, 0, 0);
  {
    int fd = ::open(path.c_str(), O_RDONLY);
    BOOST_REQUIRE(fd >= 0);
    ::posix_fadvise(fd, 0, 0, POSIX_FADV_RANDOM);
    std::vector<std::byte> tmp(warm);
    BOOST_REQUIRE(::pread(fd, tmp.data(), warm, 0) == static_cast<ssize_t>(warm));
    ::close(fd);
  }
  const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  auto res = resident_pages(path, size);
  if (count(res, 0, warm / page, true) != warm / page || count(res, size / page / 2, size / page, false) == 0) {
    BOOST_TEST_MESSAGE("skip: the page cache did not take the partial state");
    return;
  }
  asio::io_context ctx;
  auto& svc = fsys::test::make_ring(ctx, fast_path_on());
  fsys::file f(ctx, path, O_RDONLY);
  const auto before = svc.stats();
  // Two buffers: the attempt's progress ends inside the first one.
  std::vector<std::byte> a(size / 2), b(size / 2);
  std::size_t got = 0;
  asio::co_spawn(ctx, [&]() -> asio::awaitable<void> {
    std::array<asio::mutable_buffer, 2> bufs{asio::buffer(a), asio::buffer(b)};
    got = co_await fsys::co_read_at(f, 0, bufs);
  }, [](std::exception_ptr e) { if (e) std::rethrow_exception(e); });
  ctx.run();
  BOOST_TEST(got == size);
  BOOST_TEST(std::equal(a.begin(), a.end(), data.begin()));
  BOOST_TEST(std::equal(b.begin(), b.end(), data.begin() + static_cast<std::ptrdiff_t>(a.size())));
  const auto after = svc.stats();
  // One attempt, continued on the engine (or, when readahead it started
  // finished in time, completed inline; see the callback case above).
  BOOST_TEST((after.inline_read_fallthroughs - before.inline_read_fallthroughs) +
                 (after.inline_reads - before.inline_reads) ==
             1u);
  BOOST_TEST(after.ops_started == before.ops_started + 1);
}

BOOST_AUTO_TEST_CASE(inline_completions_from_several_threads_are_all_counted) {
  temp_dir dir;
  auto data = pattern(4096, 15);
  auto path = dir.file("mt.dat");
  fsys::test::write_file(path, data);
  asio::io_context ctx;
  auto& svc = fsys::test::make_ring(ctx, fast_path_on());
  fsys::file f(ctx, path, O_RDONLY);
  const auto before = svc.stats();
  constexpr int threads = 4, per_thread = 50;
  std::atomic<int> ok{0};
  std::vector<std::thread> ts;
  std::vector<std::vector<std::byte>> bufs(threads, std::vector<std::byte>(4096));
  for (int t = 0; t < threads; ++t)
    ts.emplace_back([&, t] {
      for (int i = 0; i < per_thread; ++i)
        f.async_read_at(0, asio::buffer(bufs[static_cast<std::size_t>(t)]), [&](error_code ec, std::size_t n) {
          if (!ec && n == data.size()) ++ok;
        });
    });
  for (auto& t : ts) t.join();
  ctx.run();
  BOOST_TEST(ok.load() == threads * per_thread);
  const auto after = svc.stats();
  const std::uint64_t total = static_cast<std::uint64_t>(threads) * per_thread;
  // Each read finished inline, or, once enough were outstanding, joined the
  // ring's batch (ring_options::inline_batch_threshold; psync: never).
  BOOST_TEST(after.inline_reads + after.batched_reads == before.inline_reads + before.batched_reads + total);
  if (svc.active_backend() != fsys::backend::io_uring) BOOST_TEST(after.batched_reads == before.batched_reads);
  BOOST_TEST(after.ops_started == before.ops_started + total);
  BOOST_TEST(after.ops_completed == before.ops_completed + total);
}

BOOST_AUTO_TEST_CASE(a_coroutine_asked_to_cancel_makes_no_inline_attempt) {
  temp_dir dir;
  auto data = pattern(4096, 16);
  auto path = dir.file("cancelled.dat");
  fsys::test::write_file(path, data);
  asio::io_context ctx;
  auto& svc = fsys::test::make_ring(ctx, fast_path_on());
  fsys::file f(ctx, path, O_RDONLY);
  const auto before = svc.stats();
  asio::cancellation_signal sig;
  std::size_t got = 99;
  bool threw = false;
  asio::co_spawn(ctx, [&]() -> asio::awaitable<void> {
    co_await asio::this_coro::throw_if_cancelled(false);
    sig.emit(asio::cancellation_type::terminal);  // before the read starts
    std::vector<std::byte> back(4096);
    try {
      got = co_await fsys::co_read_at(f, 0, asio::buffer(back));
    } catch (const std::system_error&) {
      threw = true;
    }
  }, asio::bind_cancellation_slot(sig.slot(), [](std::exception_ptr e) { if (e) std::rethrow_exception(e); }));
  ctx.run();
  const auto after = svc.stats();
  // No inline completion: the read went to the engine, which decides as it
  // always has (the request came before the read existed, so it reads).
  BOOST_TEST(after.inline_reads == before.inline_reads);
  BOOST_TEST(after.inline_read_fallthroughs == before.inline_read_fallthroughs);
  BOOST_TEST(after.ops_started == before.ops_started + 1);
  BOOST_TEST((threw || got == data.size()));
}
