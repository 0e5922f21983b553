#include "thread_pool.h"

#include "check.h"

#include <algorithm>
#include <fstream>
#include <set>
#include <system_error>
#include <string>
#include <utility>

namespace mambart {

namespace {
// Range of part `i` of `parts` over [0, n), boundaries rounded to `grain`.
std::pair<int64_t, int64_t> part_range(int64_t n, int64_t grain, int i, int parts) {
  const int64_t blocks = (n + grain - 1) / grain;
  const int64_t b0 = blocks * i / parts, b1 = blocks * (i + 1) / parts;
  return {std::min(n, b0 * grain), std::min(n, b1 * grain)};
}
}  // namespace

ThreadPool::ThreadPool(int threads) {
  threads = std::max(1, threads);
  try {
    for (int i = 1; i < threads; ++i) workers_.emplace_back(&ThreadPool::worker_loop, this, i);
  } catch (const std::system_error& e) {
    stop_workers();
    MAMBART_CHECK(false, "[threads] could not start ", threads, " threads: ", e.what());
  }
}

ThreadPool::~ThreadPool() { stop_workers(); }

void ThreadPool::stop_workers() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::worker_loop(int index) {
  uint64_t seen = 0;
  for (;;) {
    const std::function<void(int64_t, int64_t)>* job;
    int64_t n, grain;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      job = job_;
      n = job_n_;
      grain = job_grain_;
    }
    auto [b, e] = part_range(n, grain, index, size());
    if (b < e) (*job)(b, e);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (--pending_ == 0) done_.notify_one();
    }
  }
}

void ThreadPool::parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t grain) {
  if (n <= 0) return;
  // One job at a time: decoders of one model share its pool, and may be
  // driven from several Python threads (calls release the GIL).
  std::lock_guard<std::mutex> one_job(call_mutex_);
  grain = std::max<int64_t>(1, grain);
  if (workers_.empty() || n <= grain) {
    fn(0, n);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    job_ = &fn;
    job_n_ = n;
    job_grain_ = grain;
    pending_ = static_cast<int>(workers_.size());
    ++generation_;
  }
  wake_.notify_all();
  auto [b, e] = part_range(n, grain, 0, size());
  if (b < e) fn(b, e);
  std::unique_lock<std::mutex> lock(mutex_);
  done_.wait(lock, [&] { return pending_ == 0; });
}

int default_threads() {
  // Count distinct (physical id, core id) pairs: SMT siblings share a core
  // and add little to bandwidth-bound decoding.
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::set<std::pair<std::string, std::string>> cores;
  std::string line, physical = "0";
  while (std::getline(cpuinfo, line)) {
    auto value = [&] { return line.substr(line.find(':') + 1); };
    if (line.rfind("physical id", 0) == 0) physical = value();
    if (line.rfind("core id", 0) == 0) cores.insert({physical, value()});
  }
  const int logical = static_cast<int>(std::thread::hardware_concurrency());
  if (cores.empty()) return std::max(1, logical);
  return std::max(1, std::min<int>(static_cast<int>(cores.size()), logical > 0 ? logical : 1 << 30));
}

}  // namespace mambart
