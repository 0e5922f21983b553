// matmul: y = x · wᵀ (+ bias), the one linear-layer product.
//
//   x    (M, K)  activations, row stride ldx
//   w    (N, K)  weight, PyTorch Linear layout (out_features, in_features), row-major
//   bias (N)     or nullptr
//   y    (M, N)  output, row stride ldy
//
// Decode calls it with M = batch (a matvec when M = 1), prefill with M =
// tokens. A call computes output columns [n0, n1): the backend splits N
// across threads, so every thread streams a disjoint slice of w.
#pragma once
#include <cstdint>

namespace mambart {

struct MatmulParams {
  const float* x;
  const float* w;
  const float* bias;
  float* y;
  int64_t M, N, K;
  int64_t ldx, ldy;
};

namespace scalar { void matmul(const MatmulParams& p, int64_t n0, int64_t n1); }
namespace avx2 { void matmul(const MatmulParams& p, int64_t n0, int64_t n1); }

}  // namespace mambart
