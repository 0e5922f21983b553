// Mamba-2 SSD on the device (contract: cpp/kernels/ssd.h).
//
// Prefill: one block per (sequence, head), chunk after chunk, the state
// carried in the state buffer. Per chunk, phase 1 fills shared memory with
// delta, a = delta A and the masked C_i·B_j products (shared by every
// row of the head); phase 2 gives each thread rows pp of the head: their
// outputs, then their (N) slice of the state. The CPU runs the token-by-token
// recurrence instead, so the two differ in rounding (tests compare them
// within tolerance, as against transformers).
// Step: one thread per (row, head, pp), the CPU loop.
#pragma once
#include "compat.cuh"
#include "kernels/ssd.h"

namespace mambart {
namespace cuda {

// Largest chunk the device uses (shared memory: chunk^2 + 2 chunk floats).
constexpr int64_t kSsdMaxChunk = 64;

MAMBART_HD inline int64_t ssd_shared_floats(int64_t chunk) { return chunk * chunk + 2 * chunk; }

MAMBART_HD inline float ssd_d(const SsdParams& p, int64_t h, int64_t pp) {
  return p.d_per_channel ? p.D[h * p.P + pp] : p.D[h];
}

// Sequence b, head h over tokens [c0, c0 + q); sh holds ssd_shared_floats(p.chunk).
template <typename Block>
MAMBART_HD void ssd_prefill_chunk(const SsdParams& p, int64_t b, int64_t h, int64_t c0, int64_t q, float* sh,
                                  Block& blk) {
  const int64_t P = p.P, N = p.N, g = h / (p.H / p.G), r0 = b * p.seqlen + c0;
  float* delta = sh;
  float* a = sh + p.chunk;
  float* CB = sh + 2 * p.chunk;  // (q, q), row i holds C_i·B_j for j <= i
  blk.phase([&](int tid, int nt) {
    for (int64_t i = tid; i < q; i += nt) {
      const float d = softplus(p.dt[(r0 + i) * p.lddt + h] + p.dt_bias[h]);
      delta[i] = fminf(fmaxf(d, p.dt_min), p.dt_max);
      a[i] = delta[i] * p.A[h];
    }
    for (int64_t ij = tid; ij < q * q; ij += nt) {
      const int64_t i = ij / q, j = ij % q;
      if (j > i) continue;
      const float* C = p.C + (r0 + i) * p.ldc + g * N;
      const float* B = p.B + (r0 + j) * p.ldb + g * N;
      float acc = 0.0f;
      for (int64_t n = 0; n < N; ++n) acc += C[n] * B[n];
      CB[i * q + j] = acc;
    }
  });
  blk.phase([&](int tid, int nt) {
    for (int64_t pp = tid; pp < P; pp += nt) {
      float* S = p.state + ((b * p.H + h) * P + pp) * N;
      auto X = [&](int64_t i) { return p.x[(r0 + i) * p.ldx + h * P + pp]; };
      // y_i = exp(s_i) S·C_i + sum_{j<=i} CB_ij exp(s_i - s_j) delta_j x_j + D x_i
      float s = 0.0f;
      for (int64_t i = 0; i < q; ++i) {
        s += a[i];
        const float* C = p.C + (r0 + i) * p.ldc + g * N;
        float dot = 0.0f;
        for (int64_t n = 0; n < N; ++n) dot += S[n] * C[n];
        float y = expf(s) * dot;
        float seg = 0.0f;  // s_i - s_j summed from i down, as the reference's segsum
        for (int64_t j = i; j >= 0; seg += a[j], --j) y += CB[i * q + j] * expf(seg) * delta[j] * X(j);
        p.y[(r0 + i) * p.ldy + h * P + pp] = y + ssd_d(p, h, pp) * X(i);
      }
      // S = exp(s_last) S + sum_j exp(s_last - s_j) delta_j x_j B_j
      const float decay = expf(s);
      for (int64_t n = 0; n < N; ++n) S[n] *= decay;
      float seg = 0.0f;
      for (int64_t j = q - 1; j >= 0; seg += a[j], --j) {
        const float w = expf(seg) * delta[j];
        const float* B = p.B + (r0 + j) * p.ldb + g * N;
        for (int64_t n = 0; n < N; ++n) S[n] += w * X(j) * B[n];
      }
    }
  });
}

template <typename Block>
MAMBART_HD void ssd_prefill_head(const SsdParams& p, int64_t b, int64_t h, float* sh, Block& blk) {
  for (int64_t c0 = 0; c0 < p.seqlen; c0 += p.chunk)
    ssd_prefill_chunk(p, b, h, c0, p.seqlen - c0 < p.chunk ? p.seqlen - c0 : p.chunk, sh, blk);
}

MAMBART_HD inline void ssd_step_one(const SsdParams& p, int64_t b, int64_t h, int64_t pp) {
  const int64_t P = p.P, N = p.N, g = h / (p.H / p.G);
  const float delta = softplus(p.dt[b * p.lddt + h] + p.dt_bias[h]);
  const float decay = expf(delta * p.A[h]);
  const float x = p.x[b * p.ldx + h * P + pp];
  const float* B = p.B + b * p.ldb + g * N;
  const float* C = p.C + b * p.ldc + g * N;
  float* S = p.state + ((b * p.H + h) * P + pp) * N;
  float acc = 0.0f;
  for (int64_t n = 0; n < N; ++n) {
    S[n] = decay * S[n] + delta * x * B[n];
    acc += C[n] * S[n];
  }
  p.y[b * p.ldy + h * P + pp] = acc + ssd_d(p, h, pp) * x;
}

#if defined(__CUDACC__)
__global__ void ssd_prefill_kernel(SsdParams p) {
  extern __shared__ float sh[];
  DeviceBlock blk;
  ssd_prefill_head(p, blockIdx.y, blockIdx.x, sh, blk);
}
__global__ void ssd_step_kernel(SsdParams p) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;  // over H * P
  if (i < p.H * p.P) ssd_step_one(p, blockIdx.y, i / p.P, i % p.P);
}

inline void launch_ssd_prefill(SsdParams p, cudaStream_t s) {
  p.chunk = p.chunk < kSsdMaxChunk ? p.chunk : kSsdMaxChunk;  // the chunk changes rounding only
  const unsigned threads = static_cast<unsigned>(p.P < 128 ? (p.P + 31) / 32 * 32 : 128);
  const size_t shared = static_cast<size_t>(ssd_shared_floats(p.chunk)) * sizeof(float);
  ssd_prefill_kernel<<<dim3(static_cast<unsigned>(p.H), static_cast<unsigned>(p.batch)), threads, shared, s>>>(p);
}
inline void launch_ssd_step(const SsdParams& p, cudaStream_t s) {
  ssd_step_kernel<<<dim3(static_cast<unsigned>((p.H * p.P + 127) / 128), static_cast<unsigned>(p.batch)), 128, 0,
                     s>>>(p);
}
#endif

}  // namespace cuda
}  // namespace mambart
