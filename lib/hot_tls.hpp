// The thread-local storage model of the hot paths' per-thread caches, and the
// per-thread cache of recycled blocks they share.
#pragma once

// libfsys is usually a shared library, where a thread_local defaults to the
// general-dynamic model: every access calls __tls_get_addr (about 2.5 % of a
// served small file, open + statx + read + close all inline, was spent
// there). The small caches that the inline paths touch on every operation
// (counters, inline-resume count, recycled handles and argument blocks, the
// local-filesystem table, the ring being finished: about 560 bytes together)
// use the initial-exec model instead: a fixed offset from the thread pointer.
// A program linked with libfsys reserves that space at startup; a dlopen'ed
// libfsys takes it from the surplus static TLS glibc keeps for such
// libraries (over 1 KiB by default; the tunable glibc.rtld.optional_static_tls
// raises it).
//
// The model alone is not enough: a thread_local whose type has a destructor
// is guarded by a hidden per-thread "constructed" flag that every access
// checks, and that flag keeps the default model. So a hot thread_local must
// be trivially destructible and constant-initialised (see thread_cache).
#define FSYS_HOT_TLS __attribute__((tls_model("initial-exec")))

namespace fsys::detail {

/// A per-thread stack of up to `N` recycled blocks (`N` = 0: no caching, as
/// under AddressSanitizer). The stack itself is plain initial-exec data, so
/// taking and giving back a block touches no guard and calls nothing. Its
/// blocks are freed with `Free` at thread exit by a separate thread_local,
/// constructed (registered with the C++ runtime) the first time the thread
/// keeps a block; after that destructor has run the thread caches nothing.
template <class Block, int N, void (*Free)(Block*) noexcept>
class thread_cache {
 public:
  /// A cached block, or null.
  static Block* take() noexcept {
    state& s = state_;
    return s.count > 0 ? s.blocks[--s.count] : nullptr;
  }
  /// Keeps `b` for a later take(); false when the cache is full or the
  /// thread is exiting (the caller frees it).
  static bool give(Block* b) noexcept {
    state& s = state_;
    if (N == 0 || s.exited || s.count >= N) return false;
    if (!s.reaper_made) make_reaper();
    s.blocks[s.count++] = b;
    return true;
  }
  /// Frees the calling thread's cached blocks.
  static void clear() noexcept {
    state& s = state_;
    while (s.count > 0) Free(s.blocks[--s.count]);
  }

 private:
  struct state {
    Block* blocks[N > 0 ? N : 1];
    int count;
    bool exited;       ///< the reaper ran: the thread is exiting
    bool reaper_made;  ///< the reaper is registered for this thread
  };
  struct reaper {
    ~reaper() {
      clear();
      state_.exited = true;
    }
  };
  [[gnu::noinline]] static void make_reaper() noexcept {
    thread_local reaper r;  // constructed here, once per thread; destroyed at thread exit
    (void)r;
    state_.reaper_made = true;
  }
  FSYS_HOT_TLS static thread_local state state_;
};

template <class Block, int N, void (*Free)(Block*) noexcept>
FSYS_HOT_TLS thread_local typename thread_cache<Block, N, Free>::state thread_cache<Block, N, Free>::state_{};

}  // namespace fsys::detail
