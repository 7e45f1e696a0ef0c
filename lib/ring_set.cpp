// A set of io_uring rings for one io_context run by several threads, up to
// `ring_options::rings`.
//
// Why. One ring means one lock and one submission queue for every thread
// that runs the io_context: with two threads, each operation's start, submit
// and reap contend for the same lock and cache lines, and a second thread
// makes the context slower (measured: 0.83-0.89x of one thread for cached
// reads). With several rings, each thread keeps pumping one ring's chains
// under that ring's lock; the threads share only Asio's scheduler.
//
// Which ring runs an operation:
// - reads and writes stay with their chain: one started by a handler that a
//   ring's finish() runs goes to that ring (which submits it in its next
//   pass, whichever thread runs it); any other start goes to the calling
//   thread's own ring, assigned round-robin at its first call;
// - every other kind (syncs, linked write+fsync, file-system operations,
//   fixed-buffer IO) goes to the first ring (`home`). The per-file sync rules
//   (engine::settle) and the per-file op lists that close() cancels are then
//   guarded by one lock, the home ring's; the other rings keep their reads
//   and writes off the lists and find them by scanning their own queues when
//   a file is cancelled or closed (rare, and bounded by what is in flight).
// Every ring watches its own eventfd in the io_context's reactor, so its
// completions run on whichever thread the reactor hands them to.
//
// Sharing. Chains started by one thread would all live on its ring and be
// pumped by one thread at a time. So the set counts the threads that run
// its handlers (note_runner) and, asked by a ring's finish() before each
// pass (share_target), lets a ring carrying `min_gap` or more chains than
// the least loaded of the first `runners` rings hand it half the
// difference: those reaped ops complete in the other ring's next pass and
// their chains continue there. Counts stay even afterwards, so chains move
// once, not per operation (docs/design.md, "Rings and chains").
//
// Cancellation. An op's cancellation link names the ring that owns it (set
// here before the ring sees the op); a request that reaches the set itself
// is forwarded by cancel_request's loop once the owner is stored.
#include <fsys/detail/engine.hpp>
#include <fsys/detail/file_handle.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace fsys::detail {
namespace {

// A process-wide serial number per set, so a thread's cached choice never
// names a destroyed set whose address was reused.
std::atomic<std::uint64_t> next_set_id{1};

class ring_set final : public engine, public ring_group {
 public:
  ring_set(asio::execution_context& ctx, const ring_options& opts, unsigned max_rings, std::error_code& ec)
      : ctx_(ctx), opts_(opts), max_rings_(max_rings), id_(next_set_id.fetch_add(1, std::memory_order_relaxed)) {
    rings_.reserve(max_rings_);
    auto home = make_uring_ring(ctx_, opts_, shard_params{this, true, -1}, ec);
    if (!home) return;
    rings_.push_back(std::move(home));
    count_.store(1, std::memory_order_release);
  }

  bool usable() const noexcept { return count() > 0; }

  ~ring_set() override {
    if (usable()) shutdown();
  }

  void start(op_base* op) override { pick(op).start(op); }

  bool start_now(op_base* op) override { return pick(op).start_now(op); }

  bool cancel(cancel_link& link, unsigned) override {
    // Only reached before pick() stored the owning ring: decline, and the
    // requester asks again (the store follows at once).
    return link.owner_.load(std::memory_order_acquire) != this;
  }

  void cancel_file(file_handle* file) override {
    for (unsigned i = 0, n = count(); i < n; ++i) rings_[i]->cancel_file(file);
  }

  void shutdown() override {
    std::lock_guard lock(grow_);
    shut_down_ = true;
    // The home ring last: the others hold no operation it depends on, and it
    // holds the syncs and file-system operations.
    for (unsigned i = count(); i-- > 0;) rings_[i]->shutdown();
  }

  void notify_fork_child() override {
    for (unsigned i = 0, n = count(); i < n; ++i) rings_[i]->notify_fork_child();
  }

  // Fixed-buffer operations run on the home ring only, so only it registers.
  std::error_code register_buffers(const iovec* iov, unsigned n) override {
    return rings_[0]->register_buffers(iov, n);
  }
  std::error_code unregister_buffers() override { return rings_[0]->unregister_buffers(); }
  std::error_code iowq_max_workers(std::uint32_t* values) override { return rings_[0]->iowq_max_workers(values); }

  fsys::backend kind() const noexcept override { return backend::io_uring; }
  std::uint32_t setup_flags() const noexcept override { return rings_[0]->setup_flags(); }

  engine_stats stats() const noexcept override {
    engine_stats s{};
    for (unsigned i = 0, n = count(); i < n; ++i) {
      const engine_stats r = rings_[i]->stats();
      s.ops_started += r.ops_started;
      s.enter_calls += r.enter_calls;
      s.sqes_submitted += r.sqes_submitted;
      s.cqes_reaped += r.cqes_reaped;
      s.ops_completed += r.ops_completed;
      s.reactor_wakeups += r.reactor_wakeups;
      s.queued_waits += r.queued_waits;
      s.fs_ops_on_helper += r.fs_ops_on_helper;
      s.chains_moved += r.chains_moved;
    }
    s.rings = count();
    return s;
  }

 private:
  // Rings are only ever appended, and `rings_` never reallocates (reserved
  // for max_rings_), so readers index it without the lock below `count()`.
  unsigned count() const noexcept { return count_.load(std::memory_order_acquire); }

  engine& pick(op_base* op) {
    engine* e = rings_[0].get();
    if (runs_on_any_ring(op)) {
      // A chain stays on its ring: an op started by a handler that a ring's
      // finish() runs goes to that ring, whichever thread runs it (that
      // finish() submits it in its next pass). Other starts use the calling
      // thread's ring.
      e = finishing_ring(this);
      if (!e) e = &thread_ring();
    }
    // The owning ring guards the op from here (see the file comment).
    if (op->cancel_link_) op->cancel_link_->owner_.store(e, std::memory_order_release);
    return *e;
  }

  // What the calling thread knows of this set, cached per thread for the
  // last few sets it used: its ring (null until it starts a read or write)
  // and whether it was counted as a runner. An entry that was evicted is
  // made again; the runner list below keeps the count exact.
  struct thread_entry {
    std::uint64_t set = 0;
    engine* ring = nullptr;
    bool runner = false;
  };
  thread_entry& local() noexcept {
    thread_local std::array<thread_entry, 8> cache{};
    thread_local unsigned victim = 0;
    for (thread_entry& c : cache)
      if (c.set == id_) return c;
    thread_entry& e = cache[victim];
    victim = (victim + 1) % cache.size();
    e = thread_entry{id_, nullptr, false};
    return e;
  }

  // The calling thread's ring, assigned round-robin (made on first use).
  engine& thread_ring() {
    thread_entry& e = local();
    if (!e.ring) e.ring = assign();
    return *e.ring;
  }

  engine* assign() {
    std::lock_guard lock(grow_);
    const unsigned slot = next_++ % max_rings_;
    if (slot < count() || grow_locked()) return rings_[slot].get();
    // No more rings (memory, limits, shutting down): share the others.
    return rings_[slot % count()].get();
  }

  // Under grow_: appends a ring; false (and no more growth) when none can be
  // made (memory, limits, shutting down).
  bool grow_locked() noexcept {
    if (count() >= max_rings_) return false;
    if (!shut_down_) {
      try {
        std::error_code ec;
        shard_params p{this, false, ring_fd_of(*rings_[0])};
        if (auto r = make_uring_ring(ctx_, opts_, p, ec)) {
          rings_.push_back(std::move(r));
          count_.store(static_cast<unsigned>(rings_.size()), std::memory_order_release);
          return true;
        }
      } catch (const std::bad_alloc&) {
      }
    }
    max_rings_ = count();
    return false;
  }

 public:
  void note_runner() noexcept override {
    // A thread is looked up in the set's own list once per cache entry (it
    // is counted once whatever the cache forgot).
    thread_entry& e = local();
    if (e.runner) return;
    e.runner = true;
    std::lock_guard lock(grow_);
    const std::thread::id me = std::this_thread::get_id();
    if (std::find(runner_ids_.begin(), runner_ids_.end(), me) != runner_ids_.end()) return;
    if (runner_ids_.size() < max_rings_) runner_ids_.push_back(me);
    runners_.store(static_cast<unsigned>(runner_ids_.size()), std::memory_order_relaxed);
  }

  // Chains are spread over as many rings as threads have run the io_context
  // (up to max_rings_): a ring with `min_gap` or more chains than the least
  // loaded of those hands it half the difference, once; from then on each
  // chain stays where it is (pick), so a thread keeps pumping one ring's
  // chains and no operation moves again while the counts stay even.
  engine* share_target(engine& from, int& how_many) noexcept override {
    const unsigned want = runners_.load(std::memory_order_relaxed);
    if (want < 2) return nullptr;
    const int mine = ring_chains(from);
    if (mine < min_gap) return nullptr;
    if (count() < want) {
      std::lock_guard lock(grow_);
      while (count() < want && grow_locked()) {
      }
    }
    engine* best = nullptr;
    int least = mine;
    for (unsigned i = 0, n = std::min(count(), want); i < n; ++i) {
      engine* r = rings_[i].get();
      if (r == &from) continue;
      const int c = ring_chains(*r);
      if (c < least) {
        least = c;
        best = r;
      }
    }
    if (!best || mine - least < min_gap) return nullptr;
    how_many = (mine - least) / 2;
    return best;
  }

 private:
  static constexpr int min_gap = 8;

  asio::execution_context& ctx_;
  ring_options opts_;
  unsigned max_rings_;
  const std::uint64_t id_;
  std::mutex grow_;
  unsigned next_ = 0;
  bool shut_down_ = false;
  std::vector<std::unique_ptr<engine>> rings_;
  std::atomic<unsigned> count_{0};
  // Threads that ran the set's handlers (flush, completion, rescue), up to
  // max_rings_: how many rings should carry chains.
  std::vector<std::thread::id> runner_ids_;
  std::atomic<unsigned> runners_{0};
};

}  // namespace

std::unique_ptr<engine> make_uring_engine(asio::execution_context& ctx, const ring_options& options,
                                          std::error_code& ec) {
  // One ring only where only one thread may submit (single-issuer), where
  // each ring would cost a kernel polling thread (SQPOLL), or when asked.
  unsigned max_rings = options.rings;
  if (max_rings == 0) max_rings = std::clamp(std::thread::hardware_concurrency(), 1u, 64u);
  const bool one = max_rings == 1 || options.issuer == issuer_mode::single_thread || options.sqpoll;
  if (one) return make_uring_ring(ctx, options, shard_params{}, ec);
  auto set = std::make_unique<ring_set>(ctx, options, max_rings, ec);
  if (!set->usable()) return nullptr;
  return set;
}

}  // namespace fsys::detail
