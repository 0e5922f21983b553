// A persistent pool of worker threads. parallel_for splits [0, n) into one
// contiguous range per thread (rounded to `grain`), runs them, and returns
// when all are done. The calling thread takes the first range.
#pragma once
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
  void worker_loop(int index);
  void stop_workers();

  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::mutex call_mutex_;  // serialises parallel_for callers
  std::condition_variable wake_, done_;
  const std::function<void(int64_t, int64_t)>* job_ = nullptr;
  int64_t job_n_ = 0, job_grain_ = 1;
  uint64_t generation_ = 0;
  int pending_ = 0;
  bool stop_ = false;
};

// Physical cores of this machine (logical CPUs when that cannot be told).
int default_threads();

}  // namespace mambart
