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
// its handlers (note_runner; a thread that exits, or that ran none of the
// set's handlers for `departed_after`, is no longer counted: it will not
// pump a ring any more) and, asked by a ring's finish() before each
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

#include "hot_tls.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

namespace fsys::detail {
namespace {

// A process-wide serial number per set, so a thread's cached choice never
// names a destroyed set whose address was reused.
std::atomic<std::uint64_t> next_set_id{1};

class ring_set;

// The live sets by id, so that a thread leaving the process can take itself
// off the runner lists of the sets that still exist. Never destroyed: the
// main thread's thread_local destructors may run late in exit().
struct set_registry {
  std::mutex mutex;
  std::vector<std::pair<std::uint64_t, ring_set*>> sets;
};
set_registry& registry() {
  static set_registry* r = new set_registry;
  return *r;
}

// Milliseconds of the steady clock: when a runner last ran a handler.
std::int64_t now_ms() noexcept {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

class ring_set final : public engine, public ring_group {
 public:
  ring_set(asio::execution_context& ctx, const ring_options& opts, unsigned max_rings, std::error_code& ec)
      : ctx_(ctx),
        opts_(opts),
        max_rings_(max_rings),
        id_(next_set_id.fetch_add(1, std::memory_order_relaxed)),
        slots_(std::make_unique<runner_slot[]>(max_rings)),
        slot_count_(max_rings) {
    rings_.reserve(max_rings_);
    auto home = make_uring_ring(ctx_, opts_, shard_params{this, true, -1}, ec);
    if (!home) return;
    rings_.push_back(std::move(home));
    count_.store(1, std::memory_order_release);
    set_registry& r = registry();
    std::lock_guard lock(r.mutex);
    r.sets.emplace_back(id_, this);
  }

  bool usable() const noexcept { return count() > 0; }

  ~ring_set() override {
    {
      // From here no exiting thread reaches this set (see exit_hook).
      set_registry& r = registry();
      std::lock_guard lock(r.mutex);
      std::erase_if(r.sets, [this](const auto& e) { return e.second == this; });
    }
    if (usable()) shutdown();
  }

  void start(op_base* op) override { pick(op).start(op); }

  bool start_now(op_base* op) override { return pick(op).start_now(op); }

  // Both ask the ring a read or write started now goes to (see pick): the
  // one whose finish() this thread runs, else the thread's own, assigned
  // here if the thread has none yet (a thread whose reads all finish inline
  // counts them on the ring its batches would use).
  bool batch_forming() noexcept override { return batch_ring().batch_forming(); }
  std::atomic<int>* pending_counter() noexcept override { return batch_ring().pending_counter(); }

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
    // The runner slot this thread holds (see note_runner), valid while the
    // slot still carries `token`.
    unsigned slot = 0;
    std::uint64_t token = 0;
    // frees_ when this thread last found every slot taken: it does not look
    // again until a slot is freed.
    std::uint64_t full_at = ~std::uint64_t{0};
  };
  thread_entry& local() noexcept {
    thread_local std::array<thread_entry, 8> cache{};
    thread_local unsigned victim = 0;
    for (thread_entry& c : cache)
      if (c.set == id_) return c;
    thread_entry& e = cache[victim];
    victim = (victim + 1) % cache.size();
    e = thread_entry{id_, nullptr, 0, 0, ~std::uint64_t{0}};
    return e;
  }

  engine& batch_ring() noexcept {
    if (engine* e = finishing_ring(this)) return *e;
    try {
      return thread_ring();
    } catch (...) {
      return *rings_[0];  // the set's lock failed: the home ring, which always exists
    }
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
    // The fast path: this thread holds a slot; it records when it last ran
    // one of the set's handlers (one clock read and one store to a line only
    // it writes, per handler of the set, not per operation).
    thread_entry& e = local();
    if (e.token != 0) {
      runner_slot& s = slots_[e.slot];
      if (s.token.load(std::memory_order_relaxed) == e.token) {
        s.seen.store(now_ms(), std::memory_order_relaxed);
        return;
      }
    } else if (e.full_at == frees_.load(std::memory_order_relaxed)) {
      return;
    }
    claim_slot(e);
  }

  // Chains are spread over as many rings as threads have run the io_context
  // (up to max_rings_): a ring with `min_gap` or more chains than the least
  // loaded of those hands it half the difference, once; from then on each
  // chain stays where it is (pick), so a thread keeps pumping one ring's
  // chains and no operation moves again while the counts stay even.
  engine* share_target(engine& from, int& how_many) noexcept override {
    unsigned want = runners_.load(std::memory_order_relaxed);
    if (want < 2) return nullptr;
    // Every 64th pass of a thread: drop the runners that left (a few loads
    // under the set's lock, which only runner changes and growth take).
    FSYS_HOT_TLS thread_local unsigned passes = 0;
    if ((++passes & 63) == 0) {
      std::lock_guard lock(grow_);
      drop_departed_locked(now_ms());
      want = runners_.load(std::memory_order_relaxed);
      if (want < 2) return nullptr;
    }
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

  // An exiting thread that held slot `slot` with `token` (see exit_hook).
  void release_slot(unsigned slot, std::uint64_t token) noexcept {
    std::lock_guard lock(grow_);
    runner_slot& s = slots_[slot];
    if (s.token.load(std::memory_order_relaxed) != token) return;  // dropped already
    s.token.store(0, std::memory_order_relaxed);
    frees_.fetch_add(1, std::memory_order_relaxed);
    recount_locked();
  }

 private:
  static constexpr int min_gap = 8;
  // A runner that ran none of the set's handlers for this long has left
  // run() (or is blocked in a handler): it pumps no ring, so no chain should
  // be shared toward its count. It is counted again at its next handler.
  static constexpr std::int64_t departed_after = 100;  // ms

  // One thread counted as a runner. `token` (0: free) names the holder's
  // claim, so a thread whose slot was dropped and given to another thread
  // finds out; written under grow_, read without it by the holder.
  struct alignas(64) runner_slot {  // one cache line each: the holder writes `seen`
    std::atomic<std::uint64_t> token{0};
    std::atomic<std::int64_t> seen{0};
  };

  // The slow path of note_runner: counts the calling thread, once, in a free
  // slot (up to max_rings_ runners: no more rings would carry chains), and
  // has its exit take it off again.
  void claim_slot(thread_entry& e) noexcept {
    const std::int64_t now = now_ms();
    std::lock_guard lock(grow_);
    drop_departed_locked(now);
    runner_slot* free_slot = nullptr;
    unsigned index = 0;
    for (unsigned i = 0; i < slot_count_; ++i) {
      runner_slot& s = slots_[i];
      const std::uint64_t t = s.token.load(std::memory_order_relaxed);
      if (t == 0) {
        if (!free_slot) {
          free_slot = &s;
          index = i;
        }
      } else if (slot_owner_[i] == std::this_thread::get_id()) {
        // Counted already (this thread's cache entry was evicted).
        e.slot = i;
        e.token = t;
        s.seen.store(now, std::memory_order_relaxed);
        return;
      }
    }
    if (!free_slot) {
      // max_rings_ runners already: counting more would change nothing.
      e.token = 0;
      e.full_at = frees_.load(std::memory_order_relaxed);
      return;
    }
    const std::uint64_t token = ++tokens_;
    slot_owner_[index] = std::this_thread::get_id();
    free_slot->seen.store(now, std::memory_order_relaxed);
    free_slot->token.store(token, std::memory_order_relaxed);
    e.slot = index;
    e.token = token;
    recount_locked();
    exit_hook::add(id_, index, token);
  }

  // Under grow_: frees the slots of runners not seen for departed_after.
  void drop_departed_locked(std::int64_t now) noexcept {
    bool changed = false;
    for (unsigned i = 0; i < slot_count_; ++i) {
      runner_slot& s = slots_[i];
      if (s.token.load(std::memory_order_relaxed) != 0 &&
          now - s.seen.load(std::memory_order_relaxed) >= departed_after) {
        s.token.store(0, std::memory_order_relaxed);
        changed = true;
      }
    }
    if (changed) {
      frees_.fetch_add(1, std::memory_order_relaxed);
      recount_locked();
    }
  }

  void recount_locked() noexcept {
    unsigned n = 0;
    for (unsigned i = 0; i < slot_count_; ++i) n += slots_[i].token.load(std::memory_order_relaxed) != 0;
    runners_.store(n, std::memory_order_relaxed);
  }

  // Per thread, the slots it holds in any set; at thread exit it gives each
  // back to its set if that set still exists (the registry's lock keeps the
  // set alive meanwhile: its destructor takes it first).
  class exit_hook {
   public:
    static void add(std::uint64_t set, unsigned slot, std::uint64_t token) noexcept {
      try {
        held().claims_.push_back({set, slot, token});
      } catch (...) {
        // Not remembered: the slot is dropped after departed_after instead.
      }
    }
    ~exit_hook() {
      set_registry& r = registry();
      std::lock_guard lock(r.mutex);
      for (const claim& c : claims_)
        for (const auto& [id, set] : r.sets)
          if (id == c.set) set->release_slot(c.slot, c.token);
    }

   private:
    struct claim {
      std::uint64_t set;
      unsigned slot;
      std::uint64_t token;
    };
    static exit_hook& held() {
      thread_local exit_hook h;  // constructed on a thread's first claim only
      return h;
    }
    std::vector<claim> claims_;
  };

  asio::execution_context& ctx_;
  ring_options opts_;
  unsigned max_rings_;
  const std::uint64_t id_;
  std::mutex grow_;
  unsigned next_ = 0;
  bool shut_down_ = false;
  std::vector<std::unique_ptr<engine>> rings_;
  std::atomic<unsigned> count_{0};
  // Threads that run the set's handlers (flush, completion, rescue), up to
  // max_rings_: how many rings should carry chains.
  std::unique_ptr<runner_slot[]> slots_;
  const unsigned slot_count_;
  std::vector<std::thread::id> slot_owner_ = std::vector<std::thread::id>(slot_count_);  // under grow_
  std::uint64_t tokens_ = 0;                                                          // under grow_
  std::atomic<std::uint64_t> frees_{0};  // slots freed so far (see thread_entry::full_at)
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
