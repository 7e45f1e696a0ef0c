// The pool of words behind service_token (see detail/service_life.hpp).
#include <fsys/detail/service_life.hpp>

#include <deque>
#include <mutex>
#include <vector>

namespace fsys::detail {
namespace {

struct word_pool {
  std::mutex mutex;
  // A deque never moves its elements when it grows: a token's pointer stays
  // valid for the life of the process.
  std::deque<std::atomic<std::uint64_t>> words;
  std::vector<std::atomic<std::uint64_t>*> free;
};

word_pool& pool() {
  // Never destroyed: a file may be destroyed after main() returns (a static
  // file whose io_context went first), and its token reads its word then.
  static word_pool* p = new word_pool;
  return *p;
}

}  // namespace

service_life::service_life(const void* context) : context_(reinterpret_cast<std::uintptr_t>(context)) {
  word_pool& p = pool();
  std::lock_guard lock(p.mutex);
  if (p.free.empty()) {
    // Room for every word to come back: the destructor cannot fail.
    p.free.reserve(p.words.size() + 1);
    word_ = &p.words.emplace_back(0);
  } else {
    word_ = p.free.back();
    p.free.pop_back();
  }
  // Past every value the word held: no token of an earlier service on this
  // word (holding an older generation) can see this service as its own.
  generation_ = word_->load(std::memory_order_relaxed) + 1;
  word_->store(generation_, std::memory_order_release);
}

service_life::~service_life() {
  shut_down();
  word_pool& p = pool();
  std::lock_guard lock(p.mutex);
  p.free.push_back(word_);
}

void service_life::shut_down() noexcept { word_->store(generation_ + 1, std::memory_order_release); }

}  // namespace fsys::detail
