// The CUDA backend: the kernels of cuda/*.cuh launched on one stream,
// products through cuBLAS (f32; f16 / bf16 for more than a few rows) or
// matvec.cuh (q8, q4, and f16 / bf16 for a few rows), sampling on the
// device, and the decode step recorded as a CUDA graph (pure Mamba models;
// a hybrid's steps run eagerly, see run_step). Mixture-of-experts routing
// runs on the host, by the CPU kernel, over logits copied back: the model
// groups rows by expert in host memory, so the choice must come back anyway.
//
// Memory: weights are uploaded once (upload); states, workspace and logits
// are allocated by the decoder through zeros(); the backend's own scratch
// (token ids, activation conversion, sampler rows) grows outside the decode
// loop only: the first step of a decoder runs eagerly (scratch reaches its
// size), the second is captured, later ones replay.
#include <dlfcn.h>

#include <algorithm>
#include <cstring>
#include <string>

#include "attention.cuh"
#include "backend.h"
#include "check.h"
#include "conv1d.cuh"
#include "cpu/isa.h"
#include "cublas.h"
#include "elementwise.cuh"
#include "kernels/quantize.h"
#include "matvec.cuh"
#include "rmsnorm.cuh"
#include "sample.cuh"
#include "scan.cuh"
#include "ssd.cuh"

namespace mambart {
namespace cuda {

#define MAMBART_CUDA_CHECK(call, op)                                                                     \
  do {                                                                                                   \
    const cudaError_t err_ = (call);                                                                     \
    MAMBART_CHECK(err_ == cudaSuccess, "[", op, "] CUDA error: ", cudaGetErrorString(err_), " (", #call, \
                  ")");                                                                                  \
  } while (0)

const Cublas& cublas() {
  static const Cublas table = [] {
    void* lib = nullptr;
    for (const char* name : {"libcublas.so.13", "libcublas.so.12", "libcublas.so"})
      if ((lib = dlopen(name, RTLD_NOW | RTLD_LOCAL))) break;
    MAMBART_CHECK(lib, "[cuda] cannot load cuBLAS (libcublas.so.13 or .12): install the CUDA toolkit's cuBLAS "
                       "or `pip install mambart[cuda]` (nvidia-cublas), or use device=\"cpu\"");
    auto sym = [&](const char* name) {
      void* f = dlsym(lib, name);
      MAMBART_CHECK(f, "[cuda] cuBLAS has no symbol ", name);
      return f;
    };
    Cublas c;
    c.create = reinterpret_cast<decltype(c.create)>(sym("cublasCreate_v2"));
    c.destroy = reinterpret_cast<decltype(c.destroy)>(sym("cublasDestroy_v2"));
    c.set_stream = reinterpret_cast<decltype(c.set_stream)>(sym("cublasSetStream_v2"));
    c.set_workspace = reinterpret_cast<decltype(c.set_workspace)>(sym("cublasSetWorkspace_v2"));
    c.sgemm = reinterpret_cast<decltype(c.sgemm)>(sym("cublasSgemm_v2"));
    c.gemm_ex = reinterpret_cast<decltype(c.gemm_ex)>(sym("cublasGemmEx"));
    return c;
  }();
  return table;
}

namespace {

void check_launch(const char* op) { MAMBART_CUDA_CHECK(cudaGetLastError(), op); }

// Device memory owned by a shared_ptr (Tensors hold it as their storage).
std::shared_ptr<void> device_alloc(size_t bytes, const char* op) {
  void* p = nullptr;
  MAMBART_CUDA_CHECK(cudaMalloc(&p, std::max<size_t>(bytes, 1)), op);
  return std::shared_ptr<void>(p, [](void* q) { cudaFree(q); });
}

// A growable device buffer for scratch; grows only outside capture.
struct Scratch {
  std::shared_ptr<void> mem;
  size_t bytes = 0;
  void* get(size_t want, bool capturing, const char* op) {
    if (want > bytes) {
      MAMBART_CHECK(!capturing, "[", op, "] scratch must not grow while a graph is recorded");
      mem = device_alloc(want, op);
      bytes = want;
    }
    return mem.get();
  }
};

struct Graph final : Backend::Recording {
  int calls = 0;
  bool eager = false;  // the step read per-step host values: never recorded
  cudaGraphExec_t exec = nullptr;
  ~Graph() override {
    if (exec) cudaGraphExecDestroy(exec);
  }
};

// Why cudaGetDeviceCount found no GPU, in words. Without libcuda the runtime
// reports cudaErrorInsufficientDriver, as for a driver that is too old: the
// driver's version (0 when none is loaded) tells the two apart.
std::string no_gpu_reason(cudaError_t err) {
  if (err == cudaSuccess || err == cudaErrorNoDevice) return "the NVIDIA driver sees no CUDA device";
  if (err == cudaErrorInsufficientDriver) {
    int driver = 0, runtime = 0;
    cudaDriverGetVersion(&driver);
    cudaRuntimeGetVersion(&runtime);
    if (driver == 0) return "no NVIDIA driver is installed (libcuda.so.1 not found)";
    return "the NVIDIA driver supports CUDA " + std::to_string(driver / 1000) + "." +
           std::to_string(driver % 1000 / 10) + ", older than the CUDA " + std::to_string(runtime / 1000) + "." +
           std::to_string(runtime % 1000 / 10) + " mambart was built with";
  }
  return cudaGetErrorString(err);
}

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(int device) : device_(device) {
    int count = 0;
    const cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess) cudaGetLastError();  // clear it
    MAMBART_CHECK(err == cudaSuccess && count > 0, "[cuda] no usable CUDA GPU: ", no_gpu_reason(err));
    MAMBART_CHECK(device >= 0 && device < count, "[cuda] device ", device, " does not exist (", count,
                  " device(s))");
    MAMBART_CUDA_CHECK(cudaSetDevice(device), "cuda");
    MAMBART_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cuda");
    const Cublas& cb = cublas();
    MAMBART_CHECK(cb.create(&handle_) == 0, "[cuda] cublasCreate failed");
    cb.set_stream(handle_, stream_);
    // A fixed workspace: cuBLAS must not allocate while a graph is recorded.
    workspace_ = device_alloc(kCublasWorkspace, "cuda");
    cb.set_workspace(handle_, workspace_.get(), kCublasWorkspace);
    MAMBART_CUDA_CHECK(cudaMallocHost(&ids_host_, kMaxIds * sizeof(int32_t)), "cuda");
    ids_dev_ = device_alloc(kMaxIds * sizeof(int32_t), "cuda");
    MAMBART_CUDA_CHECK(cudaMallocHost(&stage_host_, kStage), "cuda");
    stage_dev_ = device_alloc(kStage, "cuda");
  }
  ~CudaBackend() override {
    cudaStreamSynchronize(stream_);
    cublas().destroy(handle_);
    cudaFreeHost(ids_host_);
    cudaFreeHost(stage_host_);
    cudaStreamDestroy(stream_);
  }

  const char* name() const override { return "cuda"; }
  int threads() const override { return 1; }

  Tensor zeros(std::vector<int64_t> shape) override {
    Tensor shape_only = Tensor::borrow(nullptr, shape, DType::F32, nullptr, Device::CUDA);
    MAMBART_CHECK(!capturing_, "[zeros] no allocation while a graph is recorded");
    auto mem = device_alloc(shape_only.nbytes(), "zeros");
    // On the stream, so that the zeros land before later work on it (a KV
    // cache grown and copied into), not racing it from the legacy stream.
    MAMBART_CUDA_CHECK(cudaMemsetAsync(mem.get(), 0, std::max<size_t>(shape_only.nbytes(), 1), stream_), "zeros");
    return Tensor::borrow(mem.get(), std::move(shape), DType::F32, mem, Device::CUDA);
  }
  Tensor upload(const Tensor& host) override {
    auto mem = device_alloc(host.nbytes(), "upload");
    MAMBART_CUDA_CHECK(cudaMemcpy(mem.get(), host.data<void>(), host.nbytes(), cudaMemcpyHostToDevice), "upload");
    return Tensor::borrow(mem.get(), host.shape(), host.dtype(), mem, Device::CUDA);
  }
  void to_host(const float* src, float* dst, int64_t n) override {
    MAMBART_CUDA_CHECK(cudaMemcpyAsync(dst, src, n * sizeof(float), cudaMemcpyDeviceToHost, stream_), "to_host");
    MAMBART_CUDA_CHECK(cudaStreamSynchronize(stream_), "to_host");
  }
  void from_host(const float* src, float* dst, int64_t n) override {
    MAMBART_CUDA_CHECK(cudaMemcpyAsync(dst, src, n * sizeof(float), cudaMemcpyHostToDevice, stream_), "from_host");
    MAMBART_CUDA_CHECK(cudaStreamSynchronize(stream_), "from_host");
  }

  // ids go host -> pinned staging -> device. While a step is recorded the
  // staging already holds them (run_step), and the copy from it is part of
  // the graph, so a replay picks up the new tokens.
  void embedding(const Tensor& table, const int32_t* ids, int64_t n, float* out) override {
    MAMBART_CHECK(n <= kMaxIds, "[embedding] ", n, " ids, at most ", kMaxIds, " per call");
    if (!capturing_) {
      MAMBART_CUDA_CHECK(cudaStreamSynchronize(stream_), "embedding");  // the previous copy has read the staging
      std::memcpy(ids_host_, ids, static_cast<size_t>(n) * sizeof(int32_t));
    }
    auto* dev = static_cast<int32_t*>(ids_dev_.get());
    MAMBART_CUDA_CHECK(cudaMemcpyAsync(dev, ids_host_, n * sizeof(int32_t), cudaMemcpyHostToDevice, stream_),
                       "embedding");
    launch_embedding({table.data<void>(), table.dtype(), dev, out, n, table.dim(1)}, stream_);
    check_launch("embedding");
  }

  void matmul(const MatmulParams& p) override {
    const Cublas& cb = cublas();
    const float one = 1.0f, zero = 0.0f;
    const int M = static_cast<int>(p.M), N = static_cast<int>(p.N), K = static_cast<int>(p.K);
    // Row-major y (M, N) = x (M, K) · wᵀ is column-major yᵀ (N, M) = wᵀ-view · x-view.
    if (p.wtype == DType::F32) {
      MAMBART_CHECK(cb.sgemm(handle_, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &one, static_cast<const float*>(p.w), K,
                             p.x, static_cast<int>(p.ldx), &zero, p.y, static_cast<int>(p.ldy)) == 0,
                    "[matmul] cublasSgemm failed (M=", M, " N=", N, " K=", K, ")");
    } else if ((p.wtype == DType::F16 || p.wtype == DType::BF16) && p.M > kMatvecRows) {
      // cuBLAS takes both operands in the weight's type: activations are
      // rounded to it here, products and sums stay f32.
      const bool bf16 = p.wtype == DType::BF16;
      auto* xh = static_cast<uint16_t*>(convert_.get(static_cast<size_t>(p.M * p.K) * 2, capturing_, "matmul"));
      launch_convert({p.x, xh, p.M, p.K, p.ldx, bf16}, stream_);
      check_launch("matmul");
      const cudaDataType t = bf16 ? CUDA_R_16BF : CUDA_R_16F;
      MAMBART_CHECK(cb.gemm_ex(handle_, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &one, p.w, t, K, xh, t, K, &zero, p.y,
                               CUDA_R_32F, static_cast<int>(p.ldy), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT) == 0,
                    "[matmul] cublasGemmEx failed (", dtype_name(p.wtype), ", M=", M, " N=", N, " K=", K, ")");
    } else {
      launch_matvec(p, stream_);  // adds the bias itself
      check_launch("matmul");
      return;
    }
    if (p.bias) {
      launch_add_bias({p.bias, p.y, p.M, p.N, p.ldy}, stream_);
      check_launch("matmul");
    }
  }

  void rmsnorm(const RmsnormParams& p) override {
    launch_rmsnorm(p, stream_);
    check_launch("rmsnorm");
  }
  void rmsnorm_gated(const RmsnormGatedParams& p) override {
    launch_rmsnorm_gated(p, stream_);
    check_launch("rmsnorm_gated");
  }
  void gate_silu(const ElementwiseParams& p) override {
    launch_gate_silu(p, stream_);
    check_launch("gate_silu");
  }
  void conv1d_prefill(const Conv1dParams& p) override {
    launch_conv1d_prefill(p, stream_);
    check_launch("conv1d_prefill");
  }
  void conv1d_step(const Conv1dParams& p) override {
    launch_conv1d_step(p, stream_);
    check_launch("conv1d_step");
  }
  void scan_prefill(const ScanParams& p) override {
    launch_scan(p, stream_);
    check_launch("scan_prefill");
  }
  void scan_step(const ScanParams& p) override {
    launch_scan(p, stream_);
    check_launch("scan_step");
  }
  void ssd_prefill(const SsdParams& p) override {
    launch_ssd_prefill(p, stream_);
    check_launch("ssd_prefill");
  }
  void ssd_step(const SsdParams& p) override {
    launch_ssd_step(p, stream_);
    check_launch("ssd_step");
  }

  void gate_gelu(const ElementwiseParams& p) override {
    launch_gate_gelu(p, stream_);
    check_launch("gate_gelu");
  }
  void relu_sq(const ElementwiseParams& p) override {
    launch_relu_sq(p, stream_);
    check_launch("relu_sq");
  }
  void scale(float* x, float alpha, int64_t n) override { scale_block({nullptr, x, nullptr, alpha, 1, n, n}, "scale"); }
  void axpy(float alpha, const float* x, float* y, int64_t n) override {
    scale_block({x, y, nullptr, alpha, 1, n, n}, "axpy");
  }
  void mul_columns(float* x, const float* scale, int64_t rows, int64_t cols, int64_t ld) override {
    scale_block({nullptr, x, scale, 1.0f, rows, cols, ld}, "mul_columns");
  }
  void copy(const float* src, float* dst, int64_t n) override {
    if (n)
      MAMBART_CUDA_CHECK(cudaMemcpyAsync(dst, src, n * sizeof(float), cudaMemcpyDeviceToDevice, stream_), "copy");
  }

  void rope(const RopeParams& p) override {
    if (!p.rows) return;
    MAMBART_CHECK(p.rows <= 65535, "[rope] ", p.rows, " rows, at most 65535 per call");
    RopeParams d = p;
    d.pos = stage(p.pos, p.rows, "rope");
    launch_rope(d, stream_);
    check_launch("rope");
  }
  void attention(const AttentionParams& p) override {
    if (!p.rows) return;
    const int64_t bytes = attention_shared_floats(p.head_dim) * static_cast<int64_t>(sizeof(float));
    MAMBART_CHECK(bytes <= 48 * 1024, "[attention] head_dim ", p.head_dim, " is too large for the CUDA kernel");
    AttentionParams d = p;
    d.k = stage(p.k, p.rows, "attention");
    d.v = stage(p.v, p.rows, "attention");
    d.len = stage(p.len, p.rows, "attention");
    launch_attention(d, stream_);
    check_launch("attention");
  }
  // The logits (and selection bias) come back; the CPU kernel routes them
  // into the caller's host arrays, ties and all as on the CPU backend.
  void route(const RouterParams& p) override {
    MAMBART_CHECK(!capturing_, "[route] routing reads logits back and cannot be recorded");
    host_step_ = true;
    if (!p.rows) return;
    route_logits_.resize(static_cast<size_t>((p.rows - 1) * p.ld + p.n_experts));
    route_bias_.resize(p.bias ? static_cast<size_t>(p.n_experts) : 0);
    MAMBART_CUDA_CHECK(cudaMemcpyAsync(route_logits_.data(), p.logits, route_logits_.size() * sizeof(float),
                                       cudaMemcpyDeviceToHost, stream_), "route");
    if (p.bias)
      MAMBART_CUDA_CHECK(cudaMemcpyAsync(route_bias_.data(), p.bias, route_bias_.size() * sizeof(float),
                                         cudaMemcpyDeviceToHost, stream_), "route");
    MAMBART_CUDA_CHECK(cudaStreamSynchronize(stream_), "route");
    RouterParams h = p;
    h.logits = route_logits_.data();
    h.bias = p.bias ? route_bias_.data() : nullptr;
    cpu_kernels().route(h, 0, p.rows);
  }

  // Settings, RNG states (and, with a repetition penalty, the history as a
  // bitmask) go up in one copy; ids and RNG states come back in one.
  void sample(const float* logits, int64_t rows, int64_t ld, int64_t vocab, const std::vector<Sampler*>& samplers,
              const std::vector<std::vector<int32_t>>& history, int32_t* out) override {
    const int64_t words = (vocab + 31) / 32;
    bool penalty = false;
    for (int64_t r = 0; r < rows; ++r) penalty |= samplers[r]->config().repetition_penalty != 1.0;
    // Host layout = device layout: rows | ids | seen bits.
    const size_t rows_bytes = rows * sizeof(SampleRow), ids_bytes = (rows * sizeof(int32_t) + 7) / 8 * 8;
    const size_t seen_bytes = penalty ? rows * words * sizeof(uint32_t) : 0;
    // Presence/frequency: each row's counted ids and amounts, after the seen bits.
    pen_start_.assign(static_cast<size_t>(rows) + 1, 0);
    pen_id_.clear();
    pen_amount_.clear();
    for (int64_t r = 0; r < rows; ++r) {
      samplers[r]->penalties(pen_id_, pen_amount_);
      pen_start_[r + 1] = static_cast<int64_t>(pen_id_.size());
    }
    const size_t n_pen = pen_id_.size();
    const size_t pen_bytes = n_pen ? (rows + 1) * sizeof(int64_t) + n_pen * (sizeof(int32_t) + sizeof(float)) : 0;
    const size_t pen_at = rows_bytes + ids_bytes + (seen_bytes + 7) / 8 * 8;
    host_stage_.assign(pen_at + pen_bytes, 0);
    auto* cfg = reinterpret_cast<SampleRow*>(host_stage_.data());
    auto* seen = reinterpret_cast<uint32_t*>(host_stage_.data() + rows_bytes + ids_bytes);
    if (n_pen) {
      char* at = host_stage_.data() + pen_at;
      std::memcpy(at, pen_start_.data(), (rows + 1) * sizeof(int64_t));
      std::memcpy(at + (rows + 1) * sizeof(int64_t), pen_id_.data(), n_pen * sizeof(int32_t));
      std::memcpy(at + (rows + 1) * sizeof(int64_t) + n_pen * sizeof(int32_t), pen_amount_.data(),
                  n_pen * sizeof(float));
    }
    for (int64_t r = 0; r < rows; ++r) {
      const SamplingConfig& c = samplers[r]->config();
      const std::string rng = samplers[r]->rng_state();
      cfg[r] = {c.top_p, c.min_p, c.temperature, c.repetition_penalty, c.top_k, {0, 0, 0, 0}};
      std::memcpy(cfg[r].rng, rng.data(), sizeof cfg[r].rng);  // little-endian hosts
      if (penalty)
        for (int32_t id : history[r])
          if (id >= 0 && id < vocab) seen[r * words + id / 32] |= 1u << (id % 32);
    }
    char* dev = static_cast<char*>(sample_.get(host_stage_.size(), false, "sample"));
    float* work = static_cast<float*>(sample_work_.get(rows * vocab * sizeof(float), false, "sample"));
    MAMBART_CUDA_CHECK(cudaMemcpyAsync(dev, host_stage_.data(), host_stage_.size(), cudaMemcpyHostToDevice, stream_),
                       "sample");
    SampleParams p{logits, work, penalty ? reinterpret_cast<const uint32_t*>(dev + rows_bytes + ids_bytes) : nullptr,
                   reinterpret_cast<SampleRow*>(dev), reinterpret_cast<int32_t*>(dev + rows_bytes), rows, vocab, ld,
                   words, nullptr, nullptr, nullptr};
    if (n_pen) {
      char* at = dev + pen_at;
      p.pen_start = reinterpret_cast<const int64_t*>(at);
      p.pen_id = reinterpret_cast<const int32_t*>(at + (rows + 1) * sizeof(int64_t));
      p.pen_amount = reinterpret_cast<const float*>(at + (rows + 1) * sizeof(int64_t) + n_pen * sizeof(int32_t));
    }
    launch_sample(p, stream_);
    check_launch("sample");
    MAMBART_CUDA_CHECK(cudaMemcpyAsync(host_stage_.data(), dev, rows_bytes + ids_bytes, cudaMemcpyDeviceToHost,
                                       stream_), "sample");
    MAMBART_CUDA_CHECK(cudaStreamSynchronize(stream_), "sample");
    const auto* ids = reinterpret_cast<const int32_t*>(host_stage_.data() + rows_bytes);
    for (int64_t r = 0; r < rows; ++r) {
      MAMBART_CHECK(ids[r] != kSampleBadLogit, "[sampler] row ", r, ": a logit is NaN or +inf after repetition_penalty=",
                    cfg[r].repetition_penalty, " and temperature=", cfg[r].temperature,
                    "; expected finite values or -inf");
      MAMBART_CHECK(ids[r] != kSampleAllInf, "[sampler] every logit is -inf (vocab ", vocab, ")");
      if (cfg[r].temperature != 0.0)
        samplers[r]->set_rng_state(std::string(reinterpret_cast<const char*>(cfg[r].rng), sizeof cfg[r].rng));
      out[r] = ids[r];
      samplers[r]->note(ids[r]);
    }
  }

  void run_step(std::unique_ptr<Recording>& rec, const int32_t* tokens, int64_t n,
                const std::function<void()>& ops) override {
    if (!rec) rec = std::make_unique<Graph>();
    Graph& g = static_cast<Graph&>(*rec);
    if (g.calls++ == 0 || g.eager) {  // eager: scratch reaches its size
      host_step_ = false;
      ops();
      // A hybrid's step stays eager: its positions, lengths, KV cache
      // pointers and expert choices are host values that change every step.
      g.eager = host_step_;
      return;
    }
    MAMBART_CHECK(n <= kMaxIds, "[step] ", n, " tokens, at most ", kMaxIds);
    MAMBART_CUDA_CHECK(cudaStreamSynchronize(stream_), "step");
    std::memcpy(ids_host_, tokens, static_cast<size_t>(n) * sizeof(int32_t));
    if (!g.exec) {
      cudaGraph_t graph = nullptr;
      MAMBART_CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal), "step");
      capturing_ = true;
      try {
        ops();
      } catch (...) {
        capturing_ = false;
        cudaStreamEndCapture(stream_, &graph);
        if (graph) cudaGraphDestroy(graph);
        throw;
      }
      capturing_ = false;
      MAMBART_CUDA_CHECK(cudaStreamEndCapture(stream_, &graph), "step");
      const cudaError_t err = cudaGraphInstantiate(&g.exec, graph, 0);
      cudaGraphDestroy(graph);
      MAMBART_CUDA_CHECK(err, "step");
    }
    MAMBART_CUDA_CHECK(cudaGraphLaunch(g.exec, stream_), "step");
  }

 private:
  void scale_block(const ScaleParams& p, const char* op) {
    if (!p.rows || !p.cols) return;
    MAMBART_CHECK(p.rows <= 65535, "[", op, "] ", p.rows, " rows, at most 65535 per call");
    launch_scale(p, stream_);
    check_launch(op);
  }

  // n values of a per-call host array (rope's positions, attention's cache
  // pointers and lengths) in device memory: through a pinned ring copied up
  // on the stream, which waits for the stream only when it wraps. A step
  // that stages is never recorded (run_step), as a replay would not refresh them.
  template <typename T>
  const T* stage(const T* src, int64_t n, const char* op) {
    MAMBART_CHECK(!capturing_, "[", op, "] per-call host arrays cannot be recorded");
    host_step_ = true;
    const size_t bytes = (static_cast<size_t>(n) * sizeof(T) + 15) / 16 * 16;
    MAMBART_CHECK(bytes <= kStage, "[", op, "] ", n, " rows, too many for one call");
    if (stage_used_ + bytes > kStage) {
      MAMBART_CUDA_CHECK(cudaStreamSynchronize(stream_), op);  // earlier copies have read the ring
      stage_used_ = 0;
    }
    char* host = stage_host_ + stage_used_;
    char* dev = static_cast<char*>(stage_dev_.get()) + stage_used_;
    std::memcpy(host, src, static_cast<size_t>(n) * sizeof(T));
    MAMBART_CUDA_CHECK(cudaMemcpyAsync(dev, host, static_cast<size_t>(n) * sizeof(T), cudaMemcpyHostToDevice, stream_),
                       op);
    stage_used_ += bytes;
    return reinterpret_cast<const T*>(dev);
  }

  static constexpr size_t kCublasWorkspace = 32u << 20;
  static constexpr size_t kStage = 1u << 20;
  static constexpr int64_t kMaxIds = 4096;  // ids per embedding call (prefill chunk, batch)

  int device_;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t handle_ = nullptr;
  std::shared_ptr<void> workspace_, ids_dev_;
  int32_t* ids_host_ = nullptr;  // pinned
  bool capturing_ = false;
  bool host_step_ = false;         // an op of this step used per-call host values
  char* stage_host_ = nullptr;     // pinned, kStage bytes (stage)
  std::shared_ptr<void> stage_dev_;
  size_t stage_used_ = 0;
  std::vector<float> route_logits_, route_bias_;
  Scratch convert_, sample_, sample_work_;
  std::vector<char> host_stage_;
  std::vector<int64_t> pen_start_;  // sample(): presence/frequency lists, reused
  std::vector<int32_t> pen_id_;
  std::vector<float> pen_amount_;
};

}  // namespace
}  // namespace cuda

std::unique_ptr<Backend> make_cuda_backend(int device) { return std::make_unique<cuda::CudaBackend>(device); }
bool cuda_built() { return true; }
int cuda_device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // clear it: no driver or no GPU is an answer, not an error
    return 0;
  }
  return count;
}

}  // namespace mambart
