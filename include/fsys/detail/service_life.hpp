// Whether the service a file was made on still runs, asked without touching
// the service: a file may outlive its io_context.
#pragma once

#include <atomic>
#include <cstdint>

namespace fsys::detail {

/// A file's view of its service's life (see `service_life`). Copyable; a
/// default-constructed token is never alive.
///
/// Why not a pointer to the service, or a reference count: Asio deletes a
/// service when its io_context is destroyed, whatever still points at it, and
/// a count shared by every file of a service would be written by every
/// thread that makes, moves or destroys a file. A token only reads a word
/// that nobody writes while the service runs.
class service_token {
 public:
  service_token() = default;

  /// True until the service shuts down (the io_context's `shutdown()`, the
  /// first step of its destruction). Afterwards the service may be gone:
  /// nothing of it may be used.
  bool alive() const noexcept { return word_ && word_->load(std::memory_order_acquire) == generation_; }

  /// The address of the service's execution context, as a number: only for
  /// comparing with another context's address (the context may be destroyed).
  std::uintptr_t context() const noexcept { return context_; }

 private:
  friend class service_life;
  service_token(const std::atomic<std::uint64_t>* word, std::uint64_t generation, std::uintptr_t context) noexcept
      : word_(word), generation_(generation), context_(context) {}

  const std::atomic<std::uint64_t>* word_ = nullptr;
  std::uint64_t generation_ = 0;
  std::uintptr_t context_ = 0;
};

/// The service's side: a word in a process-wide pool that is never freed, so
/// that a token may read it at any time, even after the service, its
/// io_context and the slot's reuse by a later service. The word holds the
/// service's generation while the service runs; `shut_down` and the
/// destructor move it past that value, and a later service taking the slot
/// moves it further, so it never again equals a generation a token holds.
class service_life {
 public:
  /// Takes a word from the pool (throws std::bad_alloc).
  explicit service_life(const void* context);
  /// Shuts down (if not yet done) and gives the word back to the pool.
  ~service_life();
  service_life(const service_life&) = delete;
  service_life& operator=(const service_life&) = delete;

  /// A token for a file made on the service.
  service_token token() const noexcept { return {word_, generation_, context_}; }
  /// From now on every token says the service is gone. Idempotent.
  void shut_down() noexcept;

 private:
  std::atomic<std::uint64_t>* word_;
  std::uint64_t generation_;
  std::uintptr_t context_;
};

}  // namespace fsys::detail
