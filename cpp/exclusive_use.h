// ExclusiveUse: an object used by one thread at a time, enforced rather
// than waited for. A Decoder's state (recurrent state, workspace, token
// history) would be corrupted by two threads at once, and making the second
// one wait would only hide the caller's bug (two threads interleaving the
// tokens of one sequence), so the second one gets InUse at once. The thread
// that holds it may enter again (a progress callback that reads the
// history, a method built on another).
#pragma once
#include <atomic>
#include <stdexcept>
#include <string>
#include <thread>

namespace mambart {

// Python: RuntimeError (a misuse of the object, not a bad argument).
struct InUse : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class ExclusiveUse {
 public:
  class Hold {
   public:
    explicit Hold(const ExclusiveUse& use) : use_(use) {}
    ~Hold() {
      if (--use_.depth_ == 0) use_.owner_.store(std::thread::id(), std::memory_order_release);
    }
    Hold(const Hold&) = delete;
    Hold& operator=(const Hold&) = delete;

   private:
    const ExclusiveUse& use_;
  };

  explicit ExclusiveUse(std::string busy_message) : busy_(std::move(busy_message)) {}

  // Held until the Hold is destroyed; throws InUse when another thread holds it.
  [[nodiscard]] Hold hold() const {
    const std::thread::id me = std::this_thread::get_id();
    std::thread::id nobody;
    // A strong compare-exchange never fails spuriously (try_lock may).
    if (owner_.load(std::memory_order_acquire) != me &&
        !owner_.compare_exchange_strong(nobody, me, std::memory_order_acquire))
      throw InUse(busy_);
    ++depth_;  // only the owner touches it
    return Hold(*this);
  }

 private:
  std::string busy_;
  mutable std::atomic<std::thread::id> owner_{};
  mutable int depth_ = 0;
};

}  // namespace mambart
