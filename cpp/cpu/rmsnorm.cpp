// rmsnorm with fused residual add. See kernels/rmsnorm.h.
#include <cmath>

#include "kernels/elementwise.h"
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

void rmsnorm_gated(const RmsnormGatedParams& p, int64_t r0, int64_t r1) {
  for (int64_t r = r0; r < r1; ++r) {
    const float* x = p.x + r * p.ldx;
    const float* z = p.z + r * p.ldz;
    float* out = p.out + r * p.ldout;
    for (int64_t i = 0; i < p.dim; ++i) out[i] = p.norm_before_gate ? x[i] : x[i] * silu_ref(z[i]);
    for (int64_t g0 = 0; g0 < p.dim; g0 += p.group) {
      float ss = 0.0f;
      for (int64_t i = g0; i < g0 + p.group; ++i) ss += out[i] * out[i];
      const float scale = 1.0f / std::sqrt(ss / static_cast<float>(p.group) + p.eps);
      for (int64_t i = g0; i < g0 + p.group; ++i) {
        out[i] = out[i] * scale * p.weight[i];
        if (p.norm_before_gate) out[i] *= silu_ref(z[i]);
      }
    }
  }
}

}  // namespace scalar
}  // namespace mambart

#include "cpu/simd_math.h"

#if defined(__x86_64__) || defined(_M_X64)
MAMBART_AVX2_BEGIN

namespace mambart {
namespace avx2 {

// Per row: one pass adds `add` into the residual and accumulates squares in
// 8 lanes, one pass scales. (dim is ~1e3: a single accumulator's FMA
// latency is not what limits this.)
void rmsnorm(const RmsnormParams& p, int64_t r0, int64_t r1) {
  const int64_t dim = p.dim;
  for (int64_t r = r0; r < r1; ++r) {
    float* res = p.residual + r * dim;
    const float* add = p.add ? p.add + r * dim : nullptr;
    __m256 ss = _mm256_setzero_ps();
    for (int64_t i = 0; i < dim; i += 8) {
      const int64_t n = dim - i;
      __m256 v = load_n(res + i, n);
      if (add) {
        v = _mm256_add_ps(v, load_n(add + i, n));
        store_n(res + i, v, n);
      }
      ss = _mm256_fmadd_ps(v, v, ss);
    }
    const float mean = hsum(ss) / static_cast<float>(dim);
    const __m256 scale = _mm256_set1_ps(1.0f / std::sqrt(mean + p.eps));
    float* out = p.out + r * dim;
    for (int64_t i = 0; i < dim; i += 8) {
      const int64_t n = dim - i;
      const __m256 v = _mm256_mul_ps(load_n(res + i, n), scale);
      store_n(out + i, _mm256_mul_ps(v, load_n(p.weight + i, n)), n);
    }
  }
}

// Per row and group: one pass forms v = x silu(z) into out and accumulates
// squares, one pass scales. Groups need not be multiples of 8: each ends in
// a masked tail, so no vector straddles two groups.
void rmsnorm_gated(const RmsnormGatedParams& p, int64_t r0, int64_t r1) {
  const int64_t group = p.group;
  for (int64_t r = r0; r < r1; ++r) {
    const float* x = p.x + r * p.ldx;
    const float* z = p.z + r * p.ldz;
    float* out = p.out + r * p.ldout;
    for (int64_t g0 = 0; g0 < p.dim; g0 += group) {
      __m256 ss = _mm256_setzero_ps();
      for (int64_t i = g0; i < g0 + group; i += 8) {
        const int64_t n = g0 + group - i;
        const __m256 xv = load_n(x + i, n);
        const __m256 v = p.norm_before_gate ? xv : _mm256_mul_ps(xv, silu(load_n(z + i, n)));
        store_n(out + i, v, n);
        ss = _mm256_fmadd_ps(v, v, ss);
      }
      const __m256 scale = _mm256_set1_ps(1.0f / std::sqrt(hsum(ss) / static_cast<float>(group) + p.eps));
      for (int64_t i = g0; i < g0 + group; i += 8) {
        const int64_t n = g0 + group - i;
        __m256 v = _mm256_mul_ps(_mm256_mul_ps(load_n(out + i, n), scale), load_n(p.weight + i, n));
        if (p.norm_before_gate) v = _mm256_mul_ps(v, silu(load_n(z + i, n)));
        store_n(out + i, v, n);
      }
    }
  }
}

}  // namespace avx2
}  // namespace mambart

MAMBART_AVX2_END
#endif  // x86-64

// ---------------------------------------------------------------- neon
//
// arm64 (every AArch64 CPU has NEON).
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
        const float32x4_t xv = load_n(x + i, n);
        const float32x4_t v = p.norm_before_gate ? xv : vmulq_f32(xv, silu(load_n(z + i, n)));
        store_n(out + i, v, n);
        ss = vfmaq_f32(ss, v, v);
      }
      const float32x4_t scale = vdupq_n_f32(1.0f / std::sqrt(vaddvq_f32(ss) / static_cast<float>(group) + p.eps));
      for (int64_t i = g0; i < g0 + group; i += 4) {
        const int64_t n = g0 + group - i;
        float32x4_t v = vmulq_f32(vmulq_f32(load_n(out + i, n), scale), load_n(p.weight + i, n));
        if (p.norm_before_gate) v = vmulq_f32(v, silu(load_n(z + i, n)));
        store_n(out + i, v, n);
      }
    }
  }
}

}  // namespace neon
}  // namespace mambart

#endif  // __aarch64__
