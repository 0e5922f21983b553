// RMSNorm with fused residual add, and Mamba-2's gated group RMSNorm, on the
// device (contract: cpp/kernels/rmsnorm.h). One block per row (per row and
// group for the gated norm): phase 1 leaves each thread's sum of squares in
// shared memory, phase 2 adds them in thread order and scales.
#pragma once
#include "compat.cuh"
#include "kernels/rmsnorm.h"

namespace mambart {
namespace cuda {

constexpr int kNormThreads = 256;  // shared: one float per thread

template <typename Block>
MAMBART_HD void rmsnorm_row(const RmsnormParams& p, int64_t r, float* sh, Block& blk) {
  float* res = p.residual + r * p.dim;
  blk.phase([&](int tid, int nt) {
    float ss = 0.0f;
    for (int64_t i = tid; i < p.dim; i += nt) {
      if (p.add) res[i] += p.add[r * p.dim + i];
      ss += res[i] * res[i];
    }
    sh[tid] = ss;
  });
  blk.phase([&](int tid, int nt) {
    float ss = 0.0f;
    for (int t = 0; t < nt; ++t) ss += sh[t];
    const float scale = 1.0f / sqrtf(ss / static_cast<float>(p.dim) + p.eps);
    for (int64_t i = tid; i < p.dim; i += nt) p.out[r * p.dim + i] = res[i] * scale * p.weight[i];
  });
}

// Row r, channels [g0, g0 + group).
template <typename Block>
MAMBART_HD void rmsnorm_gated_group(const RmsnormGatedParams& p, int64_t r, int64_t g0, float* sh, Block& blk) {
  float* out = p.out + r * p.ldout;
  blk.phase([&](int tid, int nt) {
    float ss = 0.0f;
    for (int64_t i = g0 + tid; i < g0 + p.group; i += nt) {
      const float x = p.x[r * p.ldx + i];
      const float v = p.norm_before_gate ? x : x * silu(p.z[r * p.ldz + i]);
      out[i] = v;
      ss += v * v;
    }
    sh[tid] = ss;
  });
  blk.phase([&](int tid, int nt) {
    float ss = 0.0f;
    for (int t = 0; t < nt; ++t) ss += sh[t];
    const float scale = 1.0f / sqrtf(ss / static_cast<float>(p.group) + p.eps);
    for (int64_t i = g0 + tid; i < g0 + p.group; i += nt) {
      out[i] = out[i] * scale * p.weight[i];
      if (p.norm_before_gate) out[i] *= silu(p.z[r * p.ldz + i]);
    }
  });
}

#if defined(__CUDACC__)
__global__ void rmsnorm_kernel(RmsnormParams p) {
  __shared__ float sh[kNormThreads];
  DeviceBlock blk;
  rmsnorm_row(p, blockIdx.x, sh, blk);
}
__global__ void rmsnorm_gated_kernel(RmsnormGatedParams p) {
  __shared__ float sh[kNormThreads];
  DeviceBlock blk;
  rmsnorm_gated_group(p, blockIdx.y, blockIdx.x * p.group, sh, blk);
}

inline void launch_rmsnorm(const RmsnormParams& p, cudaStream_t s) {
  rmsnorm_kernel<<<static_cast<unsigned>(p.rows), kNormThreads, 0, s>>>(p);
}
inline void launch_rmsnorm_gated(const RmsnormGatedParams& p, cudaStream_t s) {
  rmsnorm_gated_kernel<<<dim3(static_cast<unsigned>(p.dim / p.group), static_cast<unsigned>(p.rows)), kNormThreads,
                         0, s>>>(p);
}
#endif

}  // namespace cuda
}  // namespace mambart
