// The CPU backend: the ISA table (isa.cpp) for the arithmetic, the thread
// pool for the split. Each op splits the dimension whose slices are
// independent: output columns for matmul (each thread streams its own
// weight rows), rows for rmsnorm, channels for conv and scan.
#include <algorithm>
#include <atomic>
#include <cstring>

#if defined(__linux__)
#include <sys/mman.h>
#include <unistd.h>

#include <cinttypes>
#include <cstdio>
#include <fstream>
#include <string>
#endif

#include "backend.h"
#include "cpu/isa.h"
#include "kernels/quantize.h"
#include "thread_pool.h"

namespace mambart {

namespace {

// Drops the pages of [data, data + bytes) from this process where they map
// a file read-only: they stay in the page cache, and come back from it if
// read again (as mambart/checkpoint.py's release_pages). Anything else is
// left alone: MADV_DONTNEED would zero anonymous memory.
void release_pages(const void* data, size_t bytes) {
#if defined(__linux__)
  const uintptr_t a = reinterpret_cast<uintptr_t>(data);
  std::ifstream maps("/proc/self/maps");
  std::string line;
  bool file = false;
  while (std::getline(maps, line)) {  // "begin-end perms offset dev inode [path]"
    uintptr_t begin = 0, end = 0;
    unsigned long long offset = 0, inode = 0;
    char perms[8] = {}, dev[16] = {};
    if (std::sscanf(line.c_str(), "%" SCNxPTR "-%" SCNxPTR " %7s %llx %15s %llu", &begin, &end, perms, &offset, dev,
                    &inode) == 6 && begin <= a && a < end) {
      file = inode != 0 && perms[1] == '-' && a + bytes <= end;
      break;
    }
  }
  if (!file) return;
  const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t begin = a / page * page;
  if (a + bytes > begin) madvise(reinterpret_cast<void*>(begin), a + bytes - begin, MADV_DONTNEED);
#else
  (void)data, (void)bytes;
#endif
}

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(int threads) : pool_(threads > 0 ? threads : default_threads()) {}

  const char* name() const override { return "cpu"; }
  int threads() const override { return pool_.size(); }

  Tensor zeros(std::vector<int64_t> shape) override { return Tensor::zeros(std::move(shape)); }
  Tensor upload(const Tensor& host) override { return host; }
  void to_host(const float* src, float* dst, int64_t n) override {
    if (src != dst) std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
  }

  void from_host(const float* src, float* dst, int64_t n) override { to_host(src, dst, n); }

  // f32 as f32p where the ISA table asks for it. The original's pages (on a
  // mapped checkpoint) then leave this process's memory.
  Tensor upload_matrix(const Tensor& host) override {
    if (!cpu_kernels().f32_panels || host.dtype() != DType::F32 || host.ndim() != 2) return host;
    const int64_t N = host.dim(0), K = host.dim(1);
    Tensor t = Tensor::uninitialized({N, K}, DType::F32P);  // pack_panels writes every panel
    pool_.parallel_for(stored_rows(DType::F32P, N) / kPanelRows,
                       [&](int64_t g0, int64_t g1) { pack_panels(host.data<float>(), N, K, t.data<float>(), g0, g1); });
    release_pages(host.data<void>(), host.nbytes());
    return t;
  }

  void embedding(const Tensor& table, const int32_t* ids, int64_t n, float* out) override {
    const int64_t D = table.dim(1), stride = row_bytes(table.dtype(), D);
    if (table.dtype() == DType::F32P) {
      for (int64_t i = 0; i < n; ++i) panel_row(table.data<float>(), D, ids[i], out + i * D);
      return;
    }
    for (int64_t i = 0; i < n; ++i)
      dequantize_row(table.data<char>() + ids[i] * stride, table.dtype(), D, out + i * D);
  }

  void matmul(const MatmulParams& p) override {
    auto fn = cpu_kernels().matmul[static_cast<int>(p.wtype)];
    // Contiguous ranges of whole cache lines of output (one line for narrow
    // outputs such as x_proj's); results do not depend on the split. Below
    // 64K multiply-adds one thread finishes before a hand-off would. Ranges
    // of 64 keep the AVX-512 GEMM in 32-column tiles: with 48, each range of
    // an N=1024 matrix ended in a 16-column one (Granite-4.0-H-micro f32
    // prefill, 2 threads: 1213 -> 1278 tok/s at 128 tokens, 1273 -> 1351 at 512).
    const int64_t grain = p.M * p.N * p.K < (1 << 16) ? p.N : (p.N < 512 ? 16 : 64);
    MatmulParams q = p;
    q.call = next_call().fetch_add(1, std::memory_order_relaxed);
    pool_.parallel_for(p.N, [&](int64_t b, int64_t e) { fn(q, b, e); }, grain);
  }
  void rmsnorm(const RmsnormParams& p) override {
    auto fn = cpu_kernels().rmsnorm;
    pool_.parallel_for(p.rows, [&](int64_t b, int64_t e) { fn(p, b, e); }, p.rows < 8 ? p.rows : 4);
  }
  void rmsnorm_gated(const RmsnormGatedParams& p) override {
    auto fn = cpu_kernels().rmsnorm_gated;
    pool_.parallel_for(p.rows, [&](int64_t b, int64_t e) { fn(p, b, e); }, p.rows < 8 ? p.rows : 4);
  }
  void gate_silu(const ElementwiseParams& p) override {
    auto fn = cpu_kernels().gate_silu;
    pool_.parallel_for(p.n, [&](int64_t b, int64_t e) { fn(p, b, e); }, 4096);
  }
  void gate_gelu(const ElementwiseParams& p) override {
    auto fn = cpu_kernels().gate_gelu;
    pool_.parallel_for(p.n, [&](int64_t b, int64_t e) { fn(p, b, e); }, 4096);
  }
  void conv1d_prefill(const Conv1dParams& p) override {
    auto fn = cpu_kernels().conv1d_prefill;
    pool_.parallel_for(p.C, [&](int64_t b, int64_t e) { fn(p, b, e); }, 32);
  }
  void conv1d_step(const Conv1dParams& p) override {
    auto fn = cpu_kernels().conv1d_step;
    // A few thousand multiply-adds per row: cheaper than waking the pool.
    pool_.parallel_for(p.C, [&](int64_t b, int64_t e) { fn(p, b, e); }, p.batch <= 4 ? p.C : 64);
  }
  void scan_prefill(const ScanParams& p) override {
    auto fn = cpu_kernels().scan_prefill;
    pool_.parallel_for(p.E, [&](int64_t b, int64_t e) { fn(p, b, e); }, 32);
  }
  void scan_step(const ScanParams& p) override {
    auto fn = cpu_kernels().scan_step;
    // One sequence (~25K state updates for a 130m model) still gains from
    // the split now that a hand-off to a spinning worker costs ~1 us.
    pool_.parallel_for(p.E, [&](int64_t b, int64_t e) { fn(p, b, e); }, p.batch == 1 ? 128 : 16);
  }
  void scale(float* x, float alpha, int64_t n) override {
    pool_.parallel_for(n, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) x[i] *= alpha;
    }, 1 << 14);
  }
  void copy(const float* src, float* dst, int64_t n) override {
    std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
  }
  void mul_columns(float* x, const float* scale, int64_t rows, int64_t cols, int64_t ld) override {
    pool_.parallel_for(rows, [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r)
        for (int64_t j = 0; j < cols; ++j) x[r * ld + j] *= scale[j];
    }, std::max<int64_t>(1, (1 << 14) / std::max<int64_t>(cols, 1)));
  }
  void axpy(float alpha, const float* x, float* y, int64_t n) override {
    pool_.parallel_for(n, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) y[i] += alpha * x[i];
    }, 1 << 14);
  }
  void route(const RouterParams& p) override {
    auto fn = cpu_kernels().route;
    pool_.parallel_for(p.rows, [&](int64_t b, int64_t e) { fn(p, b, e); }, 16);
  }
  void attention(const AttentionParams& p) override {
    auto fn = cpu_kernels().attention;
    // Whole tiles of rows for every head per chunk where there are enough
    // (prefill: a tile shares each block of keys), single items otherwise.
    const int64_t grain = p.rows >= 4 * kAttentionTile ? p.n_heads * kAttentionTile : 1;
    pool_.parallel_for(p.rows * p.n_heads, [&](int64_t b, int64_t e) { fn(p, b, e); }, grain);
  }
  void rope(const RopeParams& p) override {
    auto fn = cpu_kernels().rope;
    pool_.parallel_for(p.rows, [&](int64_t b, int64_t e) { fn(p, b, e); }, 16);
  }
  void relu_sq(const ElementwiseParams& p) override {
    auto fn = cpu_kernels().relu_sq;
    pool_.parallel_for(p.n, [&](int64_t b, int64_t e) { fn(p, b, e); }, 4096);
  }
  void ssd_prefill(const SsdParams& p) override {
    auto fn = cpu_kernels().ssd_prefill;
    pool_.parallel_for(p.H, [&](int64_t b, int64_t e) { fn(p, b, e); }, 1);
  }
  void ssd_step(const SsdParams& p) override {
    auto fn = cpu_kernels().ssd_step;
    pool_.parallel_for(p.H, [&](int64_t b, int64_t e) { fn(p, b, e); }, 1);
  }

  // Each row's sampler works in place on a copy, so the logits stay raw.
  void sample(const float* logits, int64_t rows, int64_t ld, int64_t vocab_limit,
              const std::vector<Sampler*>& samplers, const std::vector<std::vector<int32_t>>& history,
              int32_t* out) override {
    // Per calling thread: decoders of one model may sample concurrently.
    thread_local std::vector<float> scratch;
    scratch.resize(static_cast<size_t>(vocab_limit));
    for (int64_t r = 0; r < rows; ++r) {
      std::copy(logits + r * ld, logits + r * ld + vocab_limit, scratch.begin());
      const auto& h = history[static_cast<size_t>(r)];
      out[r] = samplers[static_cast<size_t>(r)]->sample(scratch.data(), vocab_limit, h.data(),
                                                       static_cast<int64_t>(h.size()));
    }
  }

 private:
  // One counter for every backend: a thread may run the calls of several models.
  static std::atomic<uint64_t>& next_call() {
    static std::atomic<uint64_t> n{1};
    return n;
  }
  ThreadPool pool_;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(int threads) { return std::make_unique<CpuBackend>(threads); }

}  // namespace mambart
