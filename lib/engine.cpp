// The parts of the engine contract both backends share: per-file op lists,
// cancellation requests and the sync rules.
#include <fsys/detail/engine.hpp>
#include <fsys/detail/file_handle.hpp>

#include <boost/asio/cancellation_type.hpp>

namespace fsys::detail {

void engine::link_to_file(op_base* op) noexcept {
  file_handle* f = op->file_;
  if (!f || op->unlisted_) return;
  op->file_prev_ = nullptr;
  op->file_next_ = f->ops_;
  if (f->ops_) f->ops_->file_prev_ = op;
  f->ops_ = op;
  if (op->is_sync()) op->sync_seq_ = ++f->syncs_started_;
}

void engine::unlink_from_file(op_base* op) noexcept {
  file_handle* f = op->file_;
  if (!f || op->unlisted_) return;
  if (op->file_prev_)
    op->file_prev_->file_next_ = op->file_next_;
  else if (f->ops_ == op)
    f->ops_ = op->file_next_;
  if (op->file_next_) op->file_next_->file_prev_ = op->file_prev_;
  op->file_next_ = op->file_prev_ = nullptr;
}

bool engine::cancel_applies(const op_base* op, unsigned type) noexcept {
  using ct = asio::cancellation_type;
  const auto t = static_cast<ct>(type);
  if ((t & (ct::terminal | ct::partial)) != ct::none) return true;
  // `total` promises no observable side effect: only before any byte moved.
  return (t & ct::total) != ct::none && op->transferred_ == 0;
}

namespace {

// The lowest sequence number among the file's syncs whose result is not
// final yet (queued or in the kernel), or 0 when there is none.
std::uint64_t oldest_unfinished_sync(const file_handle* f) noexcept {
  std::uint64_t oldest = 0;
  for (const op_base* o = f->ops_; o; o = o->file_next_)
    if (o->is_sync() && o->state_ != op_state::finished && (oldest == 0 || o->sync_seq_ < oldest))
      oldest = o->sync_seq_;
  return oldest;
}

}  // namespace

void engine::settle(op_base* op, op_queue& done) noexcept {
  op->state_ = op_state::finished;
  if (op->cancel_link_) {
    op->cancel_link_->op_.store(nullptr, std::memory_order_relaxed);
    op->cancel_link_ = nullptr;
  }
  file_handle* f = op->file_;
  if (!f || !op->is_sync()) {
    unlink_from_file(op);
    done.push_back(op);
    return;
  }
  if (op->sync_failed_ && !f->sync_error_) f->sync_error_ = op->ec_;
  if (!op->ec_ && f->sync_error_) op->ec_ = f->sync_error_;
  if (!op->ec_) {
    // Success, unless a sync started before this one finished fails: hold it
    // until every such sync has finished. Syncs started later are not waited
    // for, so a steady stream of syncs cannot hold it forever.
    op->sync_wait_seq_ = f->syncs_started_;
    const std::uint64_t oldest = oldest_unfinished_sync(f);
    if (oldest != 0 && oldest <= op->sync_wait_seq_) {
      op->sync_held_ = true;  // stays in the file's list, state finished
      op->held_prev_ = nullptr;
      op->held_next_ = held_;
      if (held_) held_->held_prev_ = op;
      held_ = op;
      release_held(f, done);
      return;
    }
  }
  unlink_from_file(op);
  done.push_back(op);
  release_held(f, done);
}

void engine::release_held(file_handle* f, op_queue& done) noexcept {
  bool any = false;
  for (const op_base* o = f->ops_; o && !any; o = o->file_next_) any = o->sync_held_;
  if (!any) return;
  const std::uint64_t oldest = oldest_unfinished_sync(f);
  for (op_base* o = f->ops_; o;) {
    op_base* next = o->file_next_;
    if (o->sync_held_ && (f->sync_error_ || oldest == 0 || oldest > o->sync_wait_seq_)) {
      if (f->sync_error_) o->ec_ = f->sync_error_;
      o->sync_held_ = false;
      (o->held_prev_ ? o->held_prev_->held_next_ : held_) = o->held_next_;
      if (o->held_next_) o->held_next_->held_prev_ = o->held_prev_;
      o->held_next_ = o->held_prev_ = nullptr;
      unlink_from_file(o);
      done.push_back(o);
    }
    o = next;
  }
}

void engine::take_held(op_queue& out) noexcept {
  while (op_base* o = held_) {
    held_ = o->held_next_;
    o->sync_held_ = false;
    o->held_next_ = o->held_prev_ = nullptr;
    unlink_from_file(o);
    out.push_back(o);
  }
}

}  // namespace fsys::detail
