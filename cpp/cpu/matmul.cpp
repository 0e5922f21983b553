// matmul: y = x · wᵀ (+ bias). See kernels/matmul.h.
#include "kernels/matmul.h"

namespace mambart {
namespace scalar {

void matmul(const MatmulParams& p, int64_t n0, int64_t n1) {
  for (int64_t m = 0; m < p.M; ++m) {
    const float* x = p.x + m * p.ldx;
    for (int64_t n = n0; n < n1; ++n) {
      const float* w = p.w + n * p.K;
      float acc = 0.0f;
      for (int64_t k = 0; k < p.K; ++k) acc += x[k] * w[k];
      p.y[m * p.ldy + n] = acc + (p.bias ? p.bias[n] : 0.0f);
    }
  }
}

}  // namespace scalar
}  // namespace mambart
