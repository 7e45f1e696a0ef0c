// fsys::durable_log: recovery, group commit, segments (include/fsys/durable_log.hpp).
#include <fsys/durable_log.hpp>

#include <fsys/file.hpp>
#include <fsys/filesystem.hpp>

#include <boost/asio/append.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <dirent.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <thread>

namespace fsys::detail {

namespace {

using boost::system::error_code;

error_code errno_code(int e) { return error_code(e, boost::system::system_category()); }

// Posts `h(args...)` to the handler's associated executor (default: `ex`):
// handlers never run inside an initiating function or under the log's mutex.
template <class Sig, class... Args>
void post_complete(const asio::any_io_executor& ex, asio::any_completion_handler<Sig> h, Args... args) {
  // post(ex, handler) runs the handler through its own associated executor
  // when it has one (Asio's work_dispatcher), counting work on it meanwhile.
  asio::post(ex, asio::append(std::move(h), std::move(args)...));
}

std::string segment_name(std::uint64_t start) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%020" PRIu64 ".seg", start);
  return buf;
}

bool parse_segment_name(const char* name, std::uint64_t& start) {
  if (std::strlen(name) != 24 || std::strcmp(name + 20, ".seg") != 0) return false;
  std::uint64_t v = 0;
  for (int i = 0; i < 20; ++i) {
    if (name[i] < '0' || name[i] > '9') return false;
    v = v * 10 + static_cast<std::uint64_t>(name[i] - '0');
  }
  start = v;
  return true;
}

int sync_dir(const std::filesystem::path& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return errno;
  int rc = ::fsync(fd) == 0 ? 0 : errno;
  ::close(fd);
  return rc;
}

// ---- recovery (plain system calls, on the recovery thread) ---------------

struct seg_found {
  std::uint64_t start = 0;
  int fd = -1;
  std::uint64_t records = 0;
  std::uint64_t valid_end = 0;  // end of the last valid record
  std::uint64_t dirty_end = 0;  // one past the last non-zero byte at or after valid_end
};

// Reads exactly n bytes at off (short only at end of file).
ssize_t pread_full(int fd, std::byte* p, std::size_t n, std::uint64_t off) {
  std::size_t got = 0;
  while (got < n) {
    // The destination is the caller's buffer of at least n bytes.
    ssize_t r = ::pread(fd, p + got, n - got, static_cast<off_t>(off + got));
    if (r < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    if (r == 0) break;
    got += static_cast<std::size_t>(r);
  }
  return static_cast<ssize_t>(got);
}

// Validates frame after frame from offset 0 until the first one that is all
// zero (the clean end), incomplete or invalid; then finds the last non-zero
// byte after it. A length is bounded by the file, not by max_record_size
// (which limits appends only), so that reopening with a smaller bound never
// mistakes valid records for a torn tail.
int scan_segment(seg_found& s) {
  struct stat sb;
  if (::fstat(s.fd, &sb) != 0) return errno;
  const std::uint64_t size = static_cast<std::uint64_t>(sb.st_size);
  std::vector<std::byte> win(std::size_t(1) << 20);
  std::uint64_t win_off = 0;
  std::size_t win_len = 0;
  std::uint64_t pos = 0;
  int err = 0;
  // Makes [pos, pos + need) available in the window; false at end of file.
  auto ensure = [&](std::uint64_t need) -> bool {
    if (pos >= win_off && pos + need <= win_off + win_len) return true;
    if (pos + need > size) return false;
    if (win.size() < need) win.resize(static_cast<std::size_t>(need));
    ssize_t n = pread_full(s.fd, win.data(), std::min<std::uint64_t>(win.size(), size - pos), pos);
    if (n < 0) {
      err = errno;
      return false;
    }
    win_off = pos;
    win_len = static_cast<std::size_t>(n);
    return pos + need <= win_off + win_len;
  };
  while (ensure(log_record_header_size)) {
    const std::byte* h = win.data() + (pos - win_off);
    const std::uint32_t len = log_record_length(h);
    if (len == 0 && log_record_stored_checksum(h) == 0) break;  // zeros: the clean end
    if (!ensure(log_record_header_size + std::uint64_t(len))) break;
    h = win.data() + (pos - win_off);
    if (!log_record_valid(h)) break;
    ++s.records;
    pos += log_record_header_size + len;
  }
  if (err) return err;
  s.valid_end = pos;
  s.dirty_end = pos;
  for (std::uint64_t at = pos; at < size;) {
    ssize_t n = pread_full(s.fd, win.data(), std::min<std::uint64_t>(win.size(), size - at), at);
    if (n < 0) return errno;
    if (n == 0) break;
    for (ssize_t i = n; i > 0; --i)
      if (win[static_cast<std::size_t>(i - 1)] != std::byte{0}) {
        s.dirty_end = at + static_cast<std::uint64_t>(i);
        break;
      }
    at += static_cast<std::uint64_t>(n);
  }
  return 0;
}

// Zeroes [from, to) and makes it durable.
int zero_range(int fd, std::uint64_t from, std::uint64_t to) {
  if (::fallocate(fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(from),
                  static_cast<off_t>(to - from)) != 0) {
    std::vector<std::byte> zeros(std::size_t(64) << 10);
    for (std::uint64_t at = from; at < to;) {
      // zeros is ours and at least as long as every write from it.
      ssize_t n = ::pwrite(fd, zeros.data(), std::min<std::uint64_t>(zeros.size(), to - at), static_cast<off_t>(at));
      if (n < 0) {
        if (errno == EINTR) continue;
        return errno;
      }
      at += static_cast<std::uint64_t>(n);
    }
  }
  return ::fdatasync(fd) == 0 ? 0 : errno;
}

// Creates segment `start` in `dir`: exclusive create, fallocate (when asked
// and supported), fsync, fsync of the directory. Returns the fd or -errno.
int create_segment(const std::filesystem::path& dir, std::uint64_t start, const durable_log_options& opt,
                   bool& preallocated) {
  const auto path = dir / segment_name(start);
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return -errno;
  if (opt.preallocate && preallocated && ::fallocate(fd, 0, 0, static_cast<off_t>(opt.segment_size)) != 0)
    preallocated = false;
  if (::fsync(fd) != 0) {
    int e = errno;
    ::close(fd);
    return -e;
  }
  if (int e = sync_dir(dir)) {
    ::close(fd);
    return -e;
  }
  return fd;
}

struct recovered {
  std::vector<seg_found> segs;
  recovery_report report;
  bool created = false;
  bool preallocated = true;
};

error_code recover(const std::filesystem::path& dir, const durable_log_options& opt, recovered& out) {
  auto close_all = [&] {
    for (auto& s : out.segs)
      if (s.fd >= 0) ::close(s.fd);
    out.segs.clear();
  };
  struct stat sb;
  if (::stat(dir.c_str(), &sb) != 0) {
    if (errno != ENOENT || !opt.create) return errno_code(errno);
    if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) return errno_code(errno);
    const auto parent = dir.has_parent_path() ? dir.parent_path() : std::filesystem::path(".");
    if (int e = sync_dir(parent.empty() ? std::filesystem::path(".") : parent)) return errno_code(e);
  } else if (!S_ISDIR(sb.st_mode)) {
    return errno_code(ENOTDIR);
  }
  DIR* d = ::opendir(dir.c_str());
  if (!d) return errno_code(errno);
  std::vector<std::uint64_t> starts;
  while (dirent* e = ::readdir(d)) {
    std::uint64_t start;
    if (parse_segment_name(e->d_name, start)) starts.push_back(start);
  }
  ::closedir(d);
  std::sort(starts.begin(), starts.end());
  if (starts.empty()) {
    if (!opt.create) return errno_code(ENOENT);
    int fd = create_segment(dir, 0, opt, out.preallocated);
    if (fd < 0) return errno_code(-fd);
    out.segs.push_back(seg_found{0, fd, 0, 0, 0});
    out.created = true;
  } else {
    for (std::uint64_t start : starts) {
      int fd = ::open((dir / segment_name(start)).c_str(), O_RDWR | O_CLOEXEC);
      if (fd < 0) {
        int e = errno;
        close_all();
        return errno_code(e);
      }
      out.segs.push_back(seg_found{start, fd, 0, 0, 0});
      if (int e = scan_segment(out.segs.back())) {
        close_all();
        return errno_code(e);
      }
    }
  }
  // Every segment but the last must end cleanly and be followed, without a
  // gap, by the next: those were complete (synced) before the roll, so
  // damage there is not a torn tail and is not repaired silently.
  for (std::size_t i = 0; i + 1 < out.segs.size(); ++i) {
    const seg_found& s = out.segs[i];
    if (s.dirty_end != s.valid_end || out.segs[i + 1].start != s.start + s.valid_end) {
      close_all();
      return fsys::errc::log_corrupt;
    }
  }
  seg_found& last = out.segs.back();
  if (last.dirty_end > last.valid_end) {
    if (int e = zero_range(last.fd, last.valid_end, last.dirty_end)) {
      close_all();
      return errno_code(e);
    }
  }
  recovery_report& r = out.report;
  r.segments = out.segs.size();
  for (const auto& s : out.segs) r.records += s.records;
  r.start_position = out.segs.front().start;
  r.end_position = last.start + last.valid_end;
  r.dropped_bytes = last.dirty_end - last.valid_end;
  return {};
}

}  // namespace

// ---- the log --------------------------------------------------------------

class durable_log_core : public std::enable_shared_from_this<durable_log_core> {
 public:
  struct segment {
    segment(const asio::any_io_executor& ex, std::uint64_t s) : start(s), file(ex) {}
    std::uint64_t start;
    fsys::file file;
  };

  durable_log_core(asio::any_io_executor ex, std::filesystem::path dir, durable_log_options opt)
      : ex_(std::move(ex)), dir_(std::move(dir)), opt_(opt), timer_(ex_) {}

  asio::any_io_executor ex_;
  std::filesystem::path dir_;
  durable_log_options opt_;

  mutable std::mutex m_;
  std::map<std::uint64_t, std::shared_ptr<segment>> segs_;
  std::shared_ptr<segment> tail_;
  std::uint64_t tail_off_ = 0;  // bytes of the tail segment in use
  std::uint64_t end_ = 0;       // durable end: tail_->start + tail_off_

  struct pending {
    std::vector<std::byte> frame;
    log_append_handler h;
  };
  // One batch: its frames back to back, the appends it acknowledges, and
  // (once its write+fsync completed) the outcome.
  struct batch {
    std::vector<std::byte> bytes;
    std::vector<log_append_handler> hs;
    std::vector<std::uint64_t> rel;  // each record's offset in bytes
    std::uint64_t pos = 0;           // log position of bytes[0]
    bool done = false;
    error_code ec;
  };
  std::deque<pending> queue_;
  std::deque<std::shared_ptr<batch>> in_flight_;  // oldest first
  std::uint64_t write_off_ = 0;  // where the next batch goes in the tail segment
  std::uint64_t write_pos_ = 0;  // its log position (end_ plus what is in flight)
  bool rolling_ = false;         // the next segment is being created
  bool delaying_ = false;        // the commit-delay timer is waiting
  bool delay_done_ = false;      // the wait for the next batch is over
  error_code failed_;            // sticky: set by the first failed write or sync
  bool closing_ = false, closed_ = false;
  std::vector<log_void_handler> close_waiters_;
  asio::steady_timer timer_;
  durable_log_stats stats_;

  bool busy() const { return !in_flight_.empty() || rolling_ || delaying_ || !queue_.empty(); }

  // With m_ held: starts what can start: batches up to
  // max_batches_in_flight, a roll once the batches on the full segment
  // completed, or the commit delay.
  void pump() {
    while (!failed_ && !rolling_ && !delaying_ && !queue_.empty() &&
           in_flight_.size() < std::max<std::size_t>(1, opt_.max_batches_in_flight)) {
      const std::uint64_t first = queue_.front().frame.size();
      if (write_off_ > 0 && write_off_ + first > opt_.segment_size) {
        // A record never spans segments, and a segment is complete (every
        // batch on it synced) before the next one exists: recovery can then
        // treat damage before the last segment as damage.
        if (in_flight_.empty()) roll();
        return;
      }
      if (opt_.commit_delay.count() > 0 && !delay_done_ && queue_.size() < opt_.commit_siblings) {
        delaying_ = true;
        timer_.expires_after(opt_.commit_delay);
        timer_.async_wait([self = shared_from_this()](error_code) {
          std::lock_guard lk(self->m_);
          self->delaying_ = false;
          self->delay_done_ = true;
          self->pump();
          self->maybe_idle();
        });
        return;
      }
      delay_done_ = false;
      start_batch();
    }
  }

  // With m_ held: the error of a failed batch or roll; every queued record
  // fails, the log refuses appends from now on.
  void fail(error_code ec) {
    if (!failed_) failed_ = ec;
    for (auto& p : queue_) post_complete(ex_, std::move(p.h), error_code(fsys::errc::log_failed), std::uint64_t{0});
    queue_.clear();
  }

  // With m_ held: closes once nothing is under way any more.
  void maybe_idle() {
    if (closing_ && !closed_ && !busy()) finish_close();
  }

  void finish_close() {
    closed_ = true;
    for (auto& [start, s] : segs_) {
      error_code ignored;
      s->file.close(ignored);
    }
    for (auto& h : close_waiters_) post_complete(ex_, std::move(h), error_code());
    close_waiters_.clear();
  }

  // With m_ held: takes the next batch from the queue (bounded by
  // max_batch_bytes and the room left in the tail segment; at least one
  // record) and writes it at the tail with a linked write + fdatasync.
  void start_batch() {
    auto b = std::make_shared<batch>();
    const std::uint64_t room = opt_.segment_size > write_off_ ? opt_.segment_size - write_off_ : 0;
    std::size_t total = 0, n = 0;
    for (const auto& p : queue_) {
      if (n > 0 && (total + p.frame.size() > opt_.max_batch_bytes || total + p.frame.size() > room)) break;
      total += p.frame.size();
      ++n;
    }
    b->bytes.reserve(total);
    for (std::size_t i = 0; i < n; ++i) {
      pending& p = queue_.front();
      b->rel.push_back(b->bytes.size());
      b->bytes.insert(b->bytes.end(), p.frame.begin(), p.frame.end());
      b->hs.push_back(std::move(p.h));
      queue_.pop_front();
    }
    b->pos = write_pos_;
    const std::uint64_t off = write_off_;
    write_off_ += b->bytes.size();
    write_pos_ += b->bytes.size();
    in_flight_.push_back(b);
    auto done = [self = shared_from_this(), b](error_code ec, std::size_t written) {
      std::lock_guard lk(self->m_);
      if (!ec && written != b->bytes.size()) ec = errno_code(EIO);  // a short write: the sync never ran
      b->done = true;
      b->ec = ec;
      self->complete_in_order();
      self->pump();
      self->maybe_idle();
    };
    // b->bytes lives in the batch that `done` holds until the write (and
    // its linked fsync) completed, so the kernel may read it until then; the
    // tail segment's file stays open as long as the log (segs_ holds it).
    if (opt_.unsafe_ack_before_sync_for_tests)
      tail_->file.async_write_at(off, asio::buffer(b->bytes), std::move(done));
    else
      tail_->file.async_write_linked_fsync(off, asio::buffer(b->bytes), std::move(done));
  }

  // With m_ held: acknowledges completed batches oldest first. A batch is
  // acknowledged only when it and every batch before it succeeded: a later
  // batch's sync says nothing about an earlier batch whose write failed.
  void complete_in_order() {
    while (!in_flight_.empty() && in_flight_.front()->done) {
      std::shared_ptr<batch> b = std::move(in_flight_.front());
      in_flight_.pop_front();
      if (b->ec || failed_) {
        const error_code ec = failed_ ? error_code(fsys::errc::log_failed) : b->ec;
        for (auto& h : b->hs) post_complete(ex_, std::move(h), ec, std::uint64_t{0});
        fail(b->ec ? b->ec : failed_);
        continue;
      }
      tail_off_ += b->bytes.size();
      end_ += b->bytes.size();
      stats_.records += b->hs.size();
      stats_.commits += 1;
      stats_.bytes += b->bytes.size();
      for (std::size_t i = 0; i < b->hs.size(); ++i)
        post_complete(ex_, std::move(b->hs[i]), error_code(), b->pos + b->rel[i]);
    }
  }

  // With m_ held, nothing in flight: creates the next segment at end_
  // (exclusive create, preallocation, fsync, fsync of the directory), makes
  // it the tail, then continues with the queue.
  void roll() {
    rolling_ = true;
    auto seg = std::make_shared<segment>(ex_, end_);
    auto self = shared_from_this();
    const auto path = (dir_ / segment_name(end_)).string();
    seg->file.async_open(path, O_RDWR | O_CREAT | O_EXCL, 0644, [self, seg](error_code ec) {
      if (ec) return self->roll_failed(ec);
      auto synced = [self, seg](error_code ec) {
        if (ec) return self->roll_failed(ec);
        fsys::async_sync_directory(self->ex_, self->dir_.string(), [self, seg](error_code ec) {
          if (ec) return self->roll_failed(ec);
          std::lock_guard lk(self->m_);
          self->segs_[seg->start] = seg;
          self->tail_ = seg;
          self->tail_off_ = 0;
          self->write_off_ = 0;
          self->stats_.segments_created += 1;
          self->rolling_ = false;
          self->pump();
          self->maybe_idle();
        });
      };
      bool prealloc;
      {
        std::lock_guard lk(self->m_);
        prealloc = self->opt_.preallocate && self->stats_.preallocated;
      }
      if (!prealloc) return seg->file.async_fsync(std::move(synced));
      seg->file.async_allocate(0, self->opt_.segment_size, 0, [self, seg, synced](error_code ec) mutable {
        if (ec) {
          if (ec != boost::system::errc::operation_not_supported && ec != boost::system::errc::function_not_supported)
            return self->roll_failed(ec);
          std::lock_guard lk(self->m_);
          self->stats_.preallocated = false;  // this filesystem has no fallocate: do without
        }
        seg->file.async_fsync(std::move(synced));
      });
    });
  }

  void roll_failed(error_code ec) {
    std::lock_guard lk(m_);
    rolling_ = false;
    fail(ec);
    maybe_idle();
  }

  // Reads the record at pos; `finish(ec, payload, next)` runs on the log's
  // executor.
  template <class Finish>
  void read(std::uint64_t pos, Finish finish) {
    std::shared_ptr<segment> seg;
    std::uint64_t seg_end = 0;
    {
      std::lock_guard lk(m_);
      if (closed_) return finish(error_code(fsys::errc::not_open), std::vector<std::byte>{}, pos);
      auto it = segs_.upper_bound(pos);
      if (pos >= end_) return finish(error_code(asio::error::eof), std::vector<std::byte>{}, pos);
      if (it == segs_.begin()) return finish(error_code(fsys::errc::log_bad_position), std::vector<std::byte>{}, pos);
      seg = std::prev(it)->second;
      seg_end = it == segs_.end() ? tail_off_ : it->first - seg->start;
    }
    const std::uint64_t off = pos - seg->start;
    auto hdr = std::make_shared<std::array<std::byte, log_record_header_size>>();
    // hdr is held by the handler until the read completed.
    seg->file.async_read_at(off, asio::buffer(*hdr), [seg, hdr, off, seg_end, pos, finish = std::move(finish)](
                                                         error_code ec, std::size_t) mutable {
      if (ec) return finish(ec, std::vector<std::byte>{}, pos);
      const std::uint32_t len = log_record_length(hdr->data());
      if (off + log_record_header_size + len > seg_end)
        return finish(error_code(fsys::errc::log_bad_position), std::vector<std::byte>{}, pos);
      auto payload = std::make_shared<std::vector<std::byte>>(len);
      if (len == 0) {
        const bool ok = log_record_checksum(nullptr, 0) == log_record_stored_checksum(hdr->data());
        return finish(ok ? error_code() : error_code(fsys::errc::log_bad_position), std::vector<std::byte>{},
                      pos + log_record_header_size);
      }
      // payload is held by the handler until the read completed.
      seg->file.async_read_at(off + log_record_header_size, asio::buffer(*payload),
                              [hdr, payload, len, pos, finish = std::move(finish)](error_code ec,
                                                                                   std::size_t) mutable {
                                if (!ec && log_record_checksum(payload->data(), len) !=
                                               log_record_stored_checksum(hdr->data()))
                                  ec = fsys::errc::log_bad_position;
                                finish(ec, ec ? std::vector<std::byte>{} : std::move(*payload),
                                       pos + log_record_header_size + len);
                              });
    });
  }
};

void log_open(asio::any_io_executor ex, std::filesystem::path dir, durable_log_options opt, log_open_handler h) {
  if (opt.segment_size < log_record_header_size + 1 ||
      opt.max_record_size > opt.segment_size - log_record_header_size) {
    return post_complete(ex, std::move(h), error_code(boost::system::errc::invalid_argument, boost::system::generic_category()),
                         durable_log(), recovery_report{});
  }
  // The recovery thread keeps the io_context's work count up until the
  // result is posted.
  auto work = asio::make_work_guard(ex);
  std::thread([ex, dir = std::move(dir), opt, h = std::move(h), work = std::move(work)]() mutable {
    recovered rec;
    error_code ec = recover(dir, opt, rec);
    asio::post(ex, [ex, dir = std::move(dir), opt, h = std::move(h), rec = std::move(rec), ec]() mutable {
      if (ec) return post_complete(ex, std::move(h), ec, durable_log(), recovery_report{});
      auto core = std::make_shared<durable_log_core>(ex, dir, opt);
      for (const auto& s : rec.segs) {
        auto seg = std::make_shared<durable_log_core::segment>(ex, s.start);
        seg->file.adopt(s.fd);
        core->segs_[s.start] = seg;
      }
      core->tail_ = core->segs_.rbegin()->second;
      core->tail_off_ = rec.segs.back().valid_end;
      core->end_ = rec.report.end_position;
      core->write_off_ = core->tail_off_;
      core->write_pos_ = core->end_;
      core->stats_.segments_created = rec.created ? 1 : 0;
      core->stats_.preallocated = opt.preallocate && rec.preallocated;
      post_complete(ex, std::move(h), error_code(), durable_log(std::move(core)), rec.report);
    });
    work.reset();
  }).detach();
}

void log_append(const std::shared_ptr<durable_log_core>& c, std::vector<std::byte> frame, log_append_handler h) {
  std::lock_guard lk(c->m_);
  error_code ec;
  if (c->closing_)
    ec = asio::error::operation_aborted;
  else if (c->failed_)
    ec = fsys::errc::log_failed;
  else if (frame.size() < log_record_header_size || frame.size() - log_record_header_size > c->opt_.max_record_size)
    ec = asio::error::message_size;
  if (ec) return post_complete(c->ex_, std::move(h), ec, std::uint64_t{0});
  c->queue_.push_back({std::move(frame), std::move(h)});
  if (c->delaying_ && c->queue_.size() >= c->opt_.commit_siblings)
    c->timer_.cancel();  // enough company: stop waiting
  else
    c->pump();
}

void log_read(const std::shared_ptr<durable_log_core>& c, std::uint64_t pos, log_read_handler h) {
  auto ex = c->ex_;
  c->read(pos, [ex, h = std::move(h)](error_code ec, std::vector<std::byte> payload, std::uint64_t) mutable {
    post_complete(ex, std::move(h), ec, std::move(payload));
  });
}

void log_read_next(const std::shared_ptr<durable_log_core>& c, std::uint64_t* pos, log_next_handler h) {
  auto ex = c->ex_;
  const std::uint64_t at = *pos;
  c->read(at, [ex, pos, at, h = std::move(h)](error_code ec, std::vector<std::byte> payload,
                                               std::uint64_t next) mutable {
    // The reader outlives its operation (documented): advance it before the
    // handler is posted, so the handler sees the new position.
    if (!ec) *pos = next;
    post_complete(ex, std::move(h), ec, at, std::move(payload));
  });
}

namespace {
// (Boost 1.81's any_completion_handler move assignment recurses without
// end: handlers are only ever move-constructed here.)
struct removal : std::enable_shared_from_this<removal> {
  removal(std::shared_ptr<durable_log_core> c, log_void_handler hd) : core(std::move(c)), h(std::move(hd)) {}
  std::shared_ptr<durable_log_core> core;
  std::vector<std::string> paths;
  std::size_t next = 0;
  log_void_handler h;
  error_code first;

  void step() {
    if (next < paths.size()) {
      fsys::async_remove(core->ex_, paths[next++], [self = shared_from_this()](error_code ec) {
        if (ec && !self->first) self->first = ec;
        self->step();
      });
      return;
    }
    fsys::async_sync_directory(core->ex_, core->dir_.string(), [self = shared_from_this()](error_code ec) {
      if (ec && !self->first) self->first = ec;
      post_complete(self->core->ex_, std::move(self->h), self->first);
    });
  }
};
}  // namespace

void log_truncate_front(const std::shared_ptr<durable_log_core>& c, std::uint64_t pos, log_void_handler h) {
  auto r = std::make_shared<removal>(c, std::move(h));
  {
    std::lock_guard lk(c->m_);
    // A segment goes when the next one starts at or before pos: all its
    // records lie before pos. The tail never goes.
    while (c->segs_.size() > 1) {
      auto it = c->segs_.begin();
      if (std::next(it)->first > pos) break;
      r->paths.push_back((c->dir_ / segment_name(it->first)).string());
      c->segs_.erase(it);  // open readers keep the file (and its descriptor) alive
    }
  }
  r->step();
}

void log_close(const std::shared_ptr<durable_log_core>& c, log_void_handler h) {
  std::lock_guard lk(c->m_);
  c->closing_ = true;
  if (c->closed_) return post_complete(c->ex_, std::move(h), error_code());
  c->close_waiters_.push_back(std::move(h));
  c->maybe_idle();
}

durable_log_stats log_stats(const durable_log_core& c) {
  std::lock_guard lk(c.m_);
  return c.stats_;
}

std::uint64_t log_start(const durable_log_core& c) {
  std::lock_guard lk(c.m_);
  return c.segs_.empty() ? c.end_ : c.segs_.begin()->first;
}

std::uint64_t log_end(const durable_log_core& c) {
  std::lock_guard lk(c.m_);
  return c.end_;
}

}  // namespace fsys::detail
