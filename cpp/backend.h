// The operations the model graph needs, one implementation per device.
// Model code (cpp/model/) calls only this interface, so every backend runs
// the same graph. Pointers in the Params structs point to the backend's
// memory (host for CPU, device for CUDA).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "kernels/attention.h"
#include "kernels/conv1d.h"
#include "kernels/elementwise.h"
#include "kernels/matmul.h"
#include "kernels/moe.h"
#include "kernels/rmsnorm.h"
#include "kernels/scan.h"
#include "kernels/ssd.h"
#include "sampler.h"
#include "tensor.h"

namespace mambart {

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;
  virtual int threads() const = 0;

  // f32 zeros in this backend's memory (activations, states).
  virtual Tensor zeros(std::vector<int64_t> shape) = 0;
  // A weight in this backend's memory; the CPU backend uses host tensors in place.
  virtual Tensor upload(const Tensor& host) = 0;
  // A matrix (N, K) that only embedding and matmul read, in the form this
  // backend computes with best (the CPU backend's f32p on x86-64).
  virtual Tensor upload_matrix(const Tensor& host) { return upload(host); }
  // Copies n floats to host memory.
  virtual void to_host(const float* src, float* dst, int64_t n) = 0;
  // Copies n floats from host memory (restoring a saved state).
  virtual void from_host(const float* src, float* dst, int64_t n) = 0;

  // out[i, :] = table[ids[i], :] as f32, table (V, D) of any weight type;
  // ids already range-checked.
  virtual void embedding(const Tensor& table, const int32_t* ids, int64_t n, float* out) = 0;
  virtual void matmul(const MatmulParams& p) = 0;
  virtual void rmsnorm(const RmsnormParams& p) = 0;
  virtual void rmsnorm_gated(const RmsnormGatedParams& p) = 0;
  virtual void gate_silu(const ElementwiseParams& p) = 0;
  virtual void gate_gelu(const ElementwiseParams& p) = 0;  // Zamba2's MLP
  virtual void conv1d_prefill(const Conv1dParams& p) = 0;
  virtual void conv1d_step(const Conv1dParams& p) = 0;
  virtual void scan_prefill(const ScanParams& p) = 0;
  virtual void scan_step(const ScanParams& p) = 0;
  virtual void ssd_prefill(const SsdParams& p) = 0;
  virtual void ssd_step(const SsdParams& p) = 0;
  // x[i] *= alpha for n floats (the hybrids' multipliers).
  virtual void scale(float* x, float alpha, int64_t n) = 0;
  // dst[i] = src[i] for n floats, both in this backend's memory (KV caches).
  virtual void copy(const float* src, float* dst, int64_t n) = 0;
  // x[r, j] *= scale[j] for the (rows, cols) block of x, row stride ld (Falcon-H1's multipliers).
  virtual void mul_columns(float* x, const float* scale, int64_t rows, int64_t cols, int64_t ld) = 0;
  // y[i] += alpha * x[i] for n floats (Falcon-H1's parallel mixers).
  virtual void axpy(float alpha, const float* x, float* y, int64_t n) = 0;
  // Mixture-of-experts routing (kernels/moe.h), its index and weight in host memory.
  virtual void route(const RouterParams& p) = 0;
  // Attention layers (kernels/attention.h); k, v, len and pos point to host
  // arrays (the CUDA backend copies them up), the caches to this backend's memory.
  virtual void attention(const AttentionParams& p) = 0;
  virtual void rope(const RopeParams& p) = 0;
  // y = relu(x)^2 (kernels/attention.h), Nemotron-H's MLP activation.
  virtual void relu_sq(const ElementwiseParams& p) = 0;

  // out[r] = samplers[r]->sample(a copy of logits row r [0, vocab_limit),
  // history[r]) for r < rows; logits (rows, ld) in this backend's memory. The
  // CUDA backend runs the same filters on the device and advances each
  // sampler's RNG as the CPU does, so that only the ids come back.
  virtual void sample(const float* logits, int64_t rows, int64_t ld, int64_t vocab_limit,
                      const std::vector<Sampler*>& samplers, const std::vector<std::vector<int32_t>>& history,
                      int32_t* out) = 0;

  // A recorded decode step (a CUDA graph); opaque to model code.
  struct Recording {
    virtual ~Recording() = default;
  };
  // Runs ops(), which feeds `tokens` (n host ids) through the model. A
  // backend with graphs runs the first call eagerly, records the second into
  // `rec` and replays it afterwards, so ops() must issue the same ops on the
  // same memory every time; only the tokens change. A step whose ops read
  // per-call host arrays (attention, rope, route) runs eagerly every time.
  // Default: just ops().
  virtual void run_step(std::unique_ptr<Recording>& rec, const int32_t* tokens, int64_t n,
                        const std::function<void()>& ops) {
    ops();
  }
};

std::unique_ptr<Backend> make_cpu_backend(int threads);  // threads <= 0: physical cores

// The CUDA backend on `device` (cuda/backend.cu). Throws mambart::Error when
// there is no usable GPU or driver, or "mambart was built without CUDA"
// (cuda/stub.cpp) in a CPU-only build.
std::unique_ptr<Backend> make_cuda_backend(int device);
bool cuda_built();
int cuda_device_count();  // 0 without a driver or GPU, or when not built

}  // namespace mambart
