#include "thread_pool.h"

#include "check.h"

#include <algorithm>
#include <chrono>
#include <fstream>
#include <set>
#include <string>
#include <system_error>
#include <utility>

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#include <immintrin.h>
static inline void cpu_relax() { _mm_pause(); }
#elif defined(__aarch64__)
static inline void cpu_relax() { __asm__ __volatile__("yield"); }
#else
static inline void cpu_relax() {}
#endif

namespace mambart {

namespace {
// How long an idle worker spins before it sleeps: longer than the gaps
// between the jobs of one decode step, short enough that an idle model
// costs nothing.
constexpr auto kSpin = std::chrono::microseconds(300);
// Chunks per thread: a late or descheduled thread leaves its share to the
// others at this granularity.
constexpr int64_t kChunksPerThread = 4;

constexpr uint64_t kIndexMask = 0xffff;
uint64_t pack_claim(uint64_t job, uint64_t chunks, uint64_t next) { return job << 32 | chunks << 16 | next; }
}  // namespace

ThreadPool::ThreadPool(int threads) {
  threads = std::max(1, threads);
  try {
    for (int i = 1; i < threads; ++i) workers_.emplace_back(&ThreadPool::worker_loop, this);
  } catch (const std::system_error& e) {
    stop_workers();
    MAMBART_CHECK(false, "[threads] could not start ", threads, " threads: ", e.what());
  }
}

ThreadPool::~ThreadPool() { stop_workers(); }

void ThreadPool::stop_workers() {
  {
    std::lock_guard<std::mutex> lock(sleep_mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
}

// Spins, then sleeps, until the job id moves on from `seen`; false on stop.
// (A worker that starts late may read a job id already past a job: the
// caller runs that job alone.)
bool ThreadPool::wait_for_job(uint64_t seen) {
  const auto until = std::chrono::steady_clock::now() + kSpin;
  for (int i = 1; job_id() == seen && !stop_.load(std::memory_order_relaxed); ++i) {
    cpu_relax();
    if (i % 64 != 0) continue;
    // On a busy machine yield() gives the core to whatever else is ready;
    // on an idle one it returns at once.
    std::this_thread::yield();
    if (std::chrono::steady_clock::now() > until) {
      std::unique_lock<std::mutex> lock(sleep_mutex_);
      sleepers_.fetch_add(1);  // seq_cst, paired with the poster's load
      wake_.wait(lock, [&] { return claim_.load() >> 32 != seen || stop_.load(); });
      sleepers_.fetch_sub(1);
      break;
    }
  }
  return !stop_.load();
}

void ThreadPool::worker_loop() {
  uint64_t seen = job_id();
  for (;;) {
    if (!wait_for_job(seen)) return;
    seen = job_id();
    run_chunks();
  }
}

// Claims and runs chunks of the current job until none are left.
void ThreadPool::run_chunks() {
  uint64_t c = claim_.load(std::memory_order_acquire);
  for (;;) {
    const uint64_t next = c & kIndexMask, chunks = c >> 16 & kIndexMask;
    if (next >= chunks) return;
    if (!claim_.compare_exchange_weak(c, c + 1, std::memory_order_acq_rel, std::memory_order_acquire)) continue;
    const int64_t b = static_cast<int64_t>(next) * chunk_;
    (*fn_)(b, std::min(n_, b + chunk_));
    done_.fetch_add(1, std::memory_order_release);
    c = claim_.load(std::memory_order_acquire);
  }
}

void ThreadPool::parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t grain) {
  if (n <= 0) return;
  // One job at a time: decoders of one model share its pool, and may be
  // driven from several Python threads (calls release the GIL).
  std::lock_guard<std::mutex> one_job(call_mutex_);
  grain = std::max<int64_t>(1, grain);
  const int64_t blocks = (n + grain - 1) / grain;
  if (workers_.empty() || blocks <= 1) {
    fn(0, n);
    return;
  }
  const int64_t chunks_wanted = std::min<int64_t>({blocks, size() * kChunksPerThread, int64_t{kIndexMask}});
  const int64_t chunk = (blocks + chunks_wanted - 1) / chunks_wanted * grain;
  const uint64_t chunks = static_cast<uint64_t>((n + chunk - 1) / chunk);
  fn_ = &fn;
  n_ = n;
  chunk_ = chunk;
  done_.store(0, std::memory_order_relaxed);
  const uint64_t job = (claim_.load(std::memory_order_relaxed) >> 32) + 1;
  claim_.store(pack_claim(job, chunks, 0));  // seq_cst, paired with a sleeper's increment
  if (sleepers_.load() > 0) {
    { std::lock_guard<std::mutex> lock(sleep_mutex_); }
    wake_.notify_all();
  }
  run_chunks();
  // Only chunks that a worker has claimed are left; they are running.
  for (int i = 1; done_.load(std::memory_order_acquire) != static_cast<int64_t>(chunks); ++i) {
    cpu_relax();
    if (i % 1024 == 0) std::this_thread::yield();
  }
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
