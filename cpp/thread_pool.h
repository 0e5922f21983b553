// A persistent pool of worker threads. parallel_for cuts [0, n) into chunks
// (multiples of `grain`) that the calling thread and the workers claim
// until none are left, and returns when all are done.
//
// Decoding one token of a small model runs ~50-100 parallel_for calls a few
// microseconds apart, so the hand-off must cost far less than a sleep and a
// wake-up. Workers spin on the job counter for a while after each job and
// sleep only when no job comes. The caller claims chunks like any worker,
// so it never waits for a worker that has not started (one descheduled by
// another process on a busy machine): it only waits for chunks already
// running.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace mambart {

class ThreadPool {
 public:
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }
  void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t grain = 1);

 private:
  void worker_loop();
  uint64_t job_id() const { return claim_.load(std::memory_order_acquire) >> 32; }
  bool wait_for_job(uint64_t seen);
  void run_chunks();
  void stop_workers();

  std::vector<std::thread> workers_;
  std::mutex call_mutex_;  // serialises parallel_for callers

  // The current job. `claim_` packs (job id:32 | chunks:16 | next chunk:16):
  // a successful compare-exchange both claims a chunk and proves the job is
  // still running, so its fields below are still the ones it was posted with.
  std::atomic<uint64_t> claim_{0};
  std::atomic<int64_t> done_{0};  // chunks finished
  const std::function<void(int64_t, int64_t)>* fn_ = nullptr;
  int64_t n_ = 0, chunk_ = 1;

  // Spinning workers see a new job id in claim_; sleeping ones (counted in
  // `sleepers_`) are woken through the condition variable.
  std::atomic<int> sleepers_{0};
  std::atomic<bool> stop_{false};
  std::mutex sleep_mutex_;
  std::condition_variable wake_;
};

// Physical cores of this machine (logical CPUs when that cannot be told).
int default_threads();

}  // namespace mambart
