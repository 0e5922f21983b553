// Mamba-1 selective scan on the device (contract: cpp/kernels/scan.h).
//
// One thread per (sequence, channel), parallel over batch x channels; time
// is walked in chunks of kScanChunk tokens whose delta and partial outputs
// stay in registers (the chunk loops are unrolled), and the state h is
// carried from chunk to chunk through the state buffer. The sums run in
// the CPU reference's order (n ascending per token), so the two agree to
// rounding of exp alone. Step is the same body with seqlen 1.
#pragma once
#include "compat.cuh"
#include "kernels/scan.h"

namespace mambart {
namespace cuda {

constexpr int kScanChunk = 16;

// Channel e of sequence b over tokens [t0, t0 + steps), steps <= kScanChunk.
MAMBART_HD inline void scan_chunk(const ScanParams& p, int64_t b, int64_t e, int64_t t0, int64_t steps) {
  float delta[kScanChunk], acc[kScanChunk];
  const int64_t r0 = b * p.seqlen + t0;
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
  for (int t = 0; t < kScanChunk; ++t) {
    delta[t] = t < steps ? softplus(p.dt[(r0 + t) * p.lddt + e] + p.dt_bias[e]) : 0.0f;
    acc[t] = 0.0f;
  }
  float* h = p.state + (b * p.E + e) * p.N;
  const float* A = p.A + e * p.N;
  for (int64_t n = 0; n < p.N; ++n) {
    float hn = h[n];
    const float a = A[n];
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
    for (int t = 0; t < kScanChunk; ++t) {
      if (t < steps) {
        const int64_t r = r0 + t;
        hn = expf(delta[t] * a) * hn + delta[t] * p.B[r * p.ldb + n] * p.x[r * p.ldx + e];
        acc[t] += hn * p.C[r * p.ldc + n];
      }
    }
    h[n] = hn;
  }
  for (int t = 0; t < steps; ++t) {
    const int64_t r = r0 + t;
    float y = acc[t] + p.D[e] * p.x[r * p.ldx + e];
    if (p.z) y *= silu(p.z[r * p.ldz + e]);
    p.y[r * p.ldy + e] = y;
  }
}

// A whole sequence (prefill) or one token (step), chunk after chunk.
MAMBART_HD inline void scan_channel(const ScanParams& p, int64_t b, int64_t e) {
  for (int64_t t0 = 0; t0 < p.seqlen; t0 += kScanChunk)
    scan_chunk(p, b, e, t0, p.seqlen - t0 < kScanChunk ? p.seqlen - t0 : kScanChunk);
}

#if defined(__CUDACC__)
__global__ void scan_kernel(ScanParams p) {
  const int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (e < p.E) scan_channel(p, blockIdx.y, e);
}

// Prefill (batch 1) and step (seqlen 1) launch the same kernel.
inline void launch_scan(const ScanParams& p, cudaStream_t s) {
  scan_kernel<<<dim3(static_cast<unsigned>((p.E + 63) / 64), static_cast<unsigned>(p.batch)), 64, 0, s>>>(p);
}
#endif

}  // namespace cuda
}  // namespace mambart
