// Causal conv1d + bias + SiLU on the device (contract: cpp/kernels/conv1d.h).
//
// Prefill is parallel over (token, channel): every output reads the inputs
// it needs straight from x, or from the old state before the first token;
// a second kernel then moves the last K inputs into the state, so no thread
// reads a state entry another one has already overwritten. Step is one
// thread per (row, channel), exactly the CPU loop.
#pragma once
#include "compat.cuh"
#include "kernels/conv1d.h"

namespace mambart {
namespace cuda {

// y[t, c] of one sequence (batch 1), the old state untouched.
MAMBART_HD inline void conv1d_prefill_out(const Conv1dParams& p, int64_t t, int64_t c) {
  const int64_t K = p.K;
  const float* w = p.w + c * K;
  const float* state = p.state + c * K;
  float acc = p.bias ? p.bias[c] : 0.0f;
  for (int64_t k = 0; k < K; ++k) {
    const int64_t j = t - K + 1 + k;  // input time; j < 0 lies in the state, state[K + j]
    acc += w[k] * (j >= 0 ? p.x[j * p.ldx + c] : state[K + j]);
  }
  p.y[t * p.ldy + c] = silu(acc);
}

// state[c, :] = last K inputs of (old state ++ x). Ascending k reads index
// seqlen + k >= k, never an entry already written.
MAMBART_HD inline void conv1d_prefill_state(const Conv1dParams& p, int64_t c) {
  const int64_t K = p.K;
  float* state = p.state + c * K;
  for (int64_t k = 0; k < K; ++k) {
    const int64_t j = p.seqlen - K + k;
    state[k] = j >= 0 ? p.x[j * p.ldx + c] : state[K + j];
  }
}

MAMBART_HD inline void conv1d_step_one(const Conv1dParams& p, int64_t b, int64_t c) {
  const int64_t K = p.K;
  float* state = p.state + (b * p.C + c) * K;
  const float* w = p.w + c * K;
  for (int64_t k = 0; k + 1 < K; ++k) state[k] = state[k + 1];
  state[K - 1] = p.x[b * p.ldx + c];
  float acc = p.bias ? p.bias[c] : 0.0f;
  for (int64_t k = 0; k < K; ++k) acc += w[k] * state[k];
  p.y[b * p.ldy + c] = silu(acc);
}

#if defined(__CUDACC__)
__global__ void conv1d_prefill_out_kernel(Conv1dParams p) {
  const int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (c < p.C) conv1d_prefill_out(p, blockIdx.y, c);
}
__global__ void conv1d_prefill_state_kernel(Conv1dParams p) {
  const int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (c < p.C) conv1d_prefill_state(p, c);
}
__global__ void conv1d_step_kernel(Conv1dParams p) {
  const int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (c < p.C) conv1d_step_one(p, blockIdx.y, c);
}

inline void launch_conv1d_prefill(const Conv1dParams& p, cudaStream_t s) {
  const unsigned blocks = static_cast<unsigned>((p.C + 127) / 128);
  conv1d_prefill_out_kernel<<<dim3(blocks, static_cast<unsigned>(p.seqlen)), 128, 0, s>>>(p);
  conv1d_prefill_state_kernel<<<blocks, 128, 0, s>>>(p);
}
inline void launch_conv1d_step(const Conv1dParams& p, cudaStream_t s) {
  conv1d_step_kernel<<<dim3(static_cast<unsigned>((p.C + 127) / 128), static_cast<unsigned>(p.batch)), 128, 0, s>>>(p);
}
#endif

}  // namespace cuda
}  // namespace mambart
