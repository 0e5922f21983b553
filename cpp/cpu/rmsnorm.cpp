// rmsnorm with fused residual add. See kernels/rmsnorm.h.
#include <cmath>

#include "kernels/rmsnorm.h"

namespace mambart {
namespace scalar {

void rmsnorm(const RmsnormParams& p, int64_t r0, int64_t r1) {
  for (int64_t r = r0; r < r1; ++r) {
    float* res = p.residual + r * p.dim;
    if (p.add) {
      const float* add = p.add + r * p.dim;
      for (int64_t i = 0; i < p.dim; ++i) res[i] += add[i];
    }
    float ss = 0.0f;
    for (int64_t i = 0; i < p.dim; ++i) ss += res[i] * res[i];
    const float scale = 1.0f / std::sqrt(ss / static_cast<float>(p.dim) + p.eps);
    float* out = p.out + r * p.dim;
    for (int64_t i = 0; i < p.dim; ++i) out[i] = res[i] * scale * p.weight[i];
  }
}

}  // namespace scalar
}  // namespace mambart
