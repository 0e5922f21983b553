// y = x · wᵀ (+ bias) for weights cuBLAS cannot take as they are (q8, q4;
// also f16 / bf16 for a few rows, where converting activations would cost
// more than the product). Contract: cpp/kernels/matmul.h.
//
// One block per (output column n, tile of up to kMatvecRows rows of x): the
// threads split row n's K into 32-wide quantization blocks, decode each
// block once and apply it to every row of the tile (phase 1, partial sums in
// shared memory); phase 2 adds the partials in thread order.
#pragma once
#include "compat.cuh"
#include "elementwise.cuh"
#include "kernels/matmul.h"

namespace mambart {
namespace cuda {

constexpr int kMatvecRows = 16;
constexpr int kMatvecThreads = 64;  // shared: kMatvecRows * threads floats

template <typename Block>
MAMBART_HD void matvec_tile(const MatmulParams& p, int64_t n, int64_t m0, float* sh, Block& blk) {
  const int64_t rows = p.M - m0 < kMatvecRows ? p.M - m0 : kMatvecRows;
  const int64_t blocks = (p.K + kQuantBlock - 1) / kQuantBlock;
  blk.phase([&](int tid, int nt) {
    for (int64_t m = 0; m < rows; ++m) sh[m * nt + tid] = 0.0f;
    float w[kQuantBlock];
    for (int64_t kb = tid; kb < blocks; kb += nt) {
      const int64_t k0 = kb * kQuantBlock, len = p.K - k0 < kQuantBlock ? p.K - k0 : kQuantBlock;
      for (int64_t i = 0; i < len; ++i) w[i] = weight_value(p.w, p.wtype, p.K, n, k0 + i);
      for (int64_t m = 0; m < rows; ++m) {
        const float* x = p.x + (m0 + m) * p.ldx + k0;
        float acc = 0.0f;
        for (int64_t i = 0; i < len; ++i) acc += x[i] * w[i];
        sh[m * nt + tid] += acc;
      }
    }
  });
  blk.phase([&](int tid, int nt) {
    for (int64_t m = tid; m < rows; m += nt) {
      float acc = 0.0f;
      for (int t = 0; t < nt; ++t) acc += sh[m * nt + t];
      p.y[(m0 + m) * p.ldy + n] = acc + (p.bias ? p.bias[n] : 0.0f);
    }
  });
}

#if defined(__CUDACC__)
__global__ void matvec_kernel(MatmulParams p) {
  __shared__ float sh[kMatvecRows * kMatvecThreads];
  DeviceBlock blk;
  matvec_tile(p, blockIdx.x, blockIdx.y * int64_t(kMatvecRows), sh, blk);
}

inline void launch_matvec(const MatmulParams& p, cudaStream_t s) {
  matvec_kernel<<<dim3(static_cast<unsigned>(p.N), static_cast<unsigned>((p.M + kMatvecRows - 1) / kMatvecRows)),
                  kMatvecThreads, 0, s>>>(p);
}
#endif

}  // namespace cuda
}  // namespace mambart
