// rmsnorm and gated rmsnorm on arm64 with NEON; see kernels/rmsnorm.h. The
// scalar kernels (rmsnorm.cpp) are the reference.
//
// The avx2 kernels at 4 lanes: per row (or group), one pass forms the values
// (residual + add, or x silu(z)) and accumulates their squares, one pass
// scales. Tails go through zero-padded vectors, so a group that is not a
// multiple of 4 never shares a vector with the next one.
#if defined(__aarch64__)
#include <cmath>

#include "cpu/simd_math_neon.h"
#include "kernels/rmsnorm.h"

namespace mambart {
namespace neon {

void rmsnorm(const RmsnormParams& p, int64_t r0, int64_t r1) {
  const int64_t dim = p.dim;
  for (int64_t r = r0; r < r1; ++r) {
    float* res = p.residual + r * dim;
    const float* add = p.add ? p.add + r * dim : nullptr;
    float32x4_t ss = vdupq_n_f32(0.0f);
    for (int64_t i = 0; i < dim; i += 4) {
      const int64_t n = dim - i;
      float32x4_t v = load_n(res + i, n);
      if (add) {
        v = vaddq_f32(v, load_n(add + i, n));
        store_n(res + i, v, n);
      }
      ss = vfmaq_f32(ss, v, v);
    }
    const float32x4_t scale = vdupq_n_f32(1.0f / std::sqrt(vaddvq_f32(ss) / static_cast<float>(dim) + p.eps));
    float* out = p.out + r * dim;
    for (int64_t i = 0; i < dim; i += 4) {
      const int64_t n = dim - i;
      store_n(out + i, vmulq_f32(vmulq_f32(load_n(res + i, n), scale), load_n(p.weight + i, n)), n);
    }
  }
}

void rmsnorm_gated(const RmsnormGatedParams& p, int64_t r0, int64_t r1) {
  const int64_t group = p.group;
  for (int64_t r = r0; r < r1; ++r) {
    const float* x = p.x + r * p.ldx;
    const float* z = p.z + r * p.ldz;
    float* out = p.out + r * p.ldout;
    for (int64_t g0 = 0; g0 < p.dim; g0 += group) {
      float32x4_t ss = vdupq_n_f32(0.0f);
      for (int64_t i = g0; i < g0 + group; i += 4) {
        const int64_t n = g0 + group - i;
        const float32x4_t v = vmulq_f32(load_n(x + i, n), silu(load_n(z + i, n)));
        store_n(out + i, v, n);
        ss = vfmaq_f32(ss, v, v);
      }
      const float32x4_t scale = vdupq_n_f32(1.0f / std::sqrt(vaddvq_f32(ss) / static_cast<float>(group) + p.eps));
      for (int64_t i = g0; i < g0 + group; i += 4) {
        const int64_t n = g0 + group - i;
        store_n(out + i, vmulq_f32(vmulq_f32(load_n(out + i, n), scale), load_n(p.weight + i, n)), n);
      }
    }
  }
}

}  // namespace neon
}  // namespace mambart

#endif  // __aarch64__
