// Elementwise activations. See kernels/elementwise.h.
#include "kernels/elementwise.h"

namespace mambart {
namespace scalar {

void silu(const ElementwiseParams& p, int64_t i0, int64_t i1) {
  for (int64_t i = i0; i < i1; ++i) p.y[i] = silu_ref(p.x[i]);
}

void softplus(const ElementwiseParams& p, int64_t i0, int64_t i1) {
  for (int64_t i = i0; i < i1; ++i) p.y[i] = softplus_ref(p.x[i]);
}

void gate_silu(const ElementwiseParams& p, int64_t i0, int64_t i1) {
  for (int64_t i = i0; i < i1; ++i) p.y[i] = p.x[i] * silu_ref(p.z[i]);
}

void gate_gelu(const ElementwiseParams& p, int64_t i0, int64_t i1) {
  for (int64_t i = i0; i < i1; ++i) p.y[i] = p.x[i] * gelu_ref(p.z[i]);
}

}  // namespace scalar
}  // namespace mambart

#include "cpu/simd_math.h"

#if defined(__x86_64__) || defined(_M_X64)
MAMBART_AVX2_BEGIN

namespace mambart {
namespace avx2 {

// 8 floats per iteration; the last partial vector goes through masked
// loads/stores, so every index in [i0, i1) takes the same SIMD formula.
void silu(const ElementwiseParams& p, int64_t i0, int64_t i1) {
  for (int64_t i = i0; i < i1; i += 8) store_n(p.y + i, silu(load_n(p.x + i, i1 - i)), i1 - i);
}

void softplus(const ElementwiseParams& p, int64_t i0, int64_t i1) {
  for (int64_t i = i0; i < i1; i += 8)
    store_n(p.y + i, softplus(load_n(p.x + i, i1 - i)), i1 - i);
}

void gate_silu(const ElementwiseParams& p, int64_t i0, int64_t i1) {
  for (int64_t i = i0; i < i1; i += 8) {
    const __m256 x = load_n(p.x + i, i1 - i), z = load_n(p.z + i, i1 - i);
    store_n(p.y + i, _mm256_mul_ps(x, silu(z)), i1 - i);
  }
}

// erf(a) for a >= 0 (Abramowitz & Stegun 7.1.26, absolute error <= 1.5e-7):
//   1 - t (a1 + t (a2 + t (a3 + t (a4 + t a5)))) exp(-a^2),  t = 1 / (1 + p a)
static inline __m256 erf_nonneg(__m256 a) {
  const __m256 one = _mm256_set1_ps(1.0f);
  const __m256 t = _mm256_div_ps(one, _mm256_fmadd_ps(_mm256_set1_ps(0.3275911f), a, one));
  __m256 poly = _mm256_set1_ps(1.061405429f);
  poly = _mm256_fmadd_ps(poly, t, _mm256_set1_ps(-1.453152027f));
  poly = _mm256_fmadd_ps(poly, t, _mm256_set1_ps(1.421413741f));
  poly = _mm256_fmadd_ps(poly, t, _mm256_set1_ps(-0.284496736f));
  poly = _mm256_fmadd_ps(poly, t, _mm256_set1_ps(0.254829592f));
  const __m256 e = exp(_mm256_sub_ps(_mm256_setzero_ps(), _mm256_mul_ps(a, a)));
  return _mm256_fnmadd_ps(_mm256_mul_ps(poly, t), e, one);
}

// gelu(v) = v / 2 (1 + sign(v) erf(|v| / sqrt(2))).
void gate_gelu(const ElementwiseParams& p, int64_t i0, int64_t i1) {
  const __m256 sign = _mm256_set1_ps(-0.0f), half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f);
  for (int64_t i = i0; i < i1; i += 8) {
    const __m256 x = load_n(p.x + i, i1 - i), z = load_n(p.z + i, i1 - i);
    const __m256 a = _mm256_mul_ps(_mm256_andnot_ps(sign, z), _mm256_set1_ps(0.70710678118654752f));
    const __m256 erf = _mm256_or_ps(erf_nonneg(a), _mm256_and_ps(sign, z));  // erf is odd
    const __m256 gelu = _mm256_mul_ps(_mm256_mul_ps(half, z), _mm256_add_ps(one, erf));
    store_n(p.y + i, _mm256_mul_ps(x, gelu), i1 - i);
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
// 4 floats per iteration; the last partial vector goes through a
// zero-padded copy, so every index in [i0, i1) takes the same SIMD formula.
#if defined(__aarch64__)
#include "cpu/simd_math_neon.h"
#include "kernels/elementwise.h"

namespace mambart {
namespace neon {

void silu(const ElementwiseParams& p, int64_t i0, int64_t i1) {
  for (int64_t i = i0; i < i1; i += 4) store_n(p.y + i, silu(load_n(p.x + i, i1 - i)), i1 - i);
}

void softplus(const ElementwiseParams& p, int64_t i0, int64_t i1) {
  for (int64_t i = i0; i < i1; i += 4) store_n(p.y + i, softplus(load_n(p.x + i, i1 - i)), i1 - i);
}

void gate_silu(const ElementwiseParams& p, int64_t i0, int64_t i1) {
  for (int64_t i = i0; i < i1; i += 4)
    store_n(p.y + i, vmulq_f32(load_n(p.x + i, i1 - i), silu(load_n(p.z + i, i1 - i))), i1 - i);
}

}  // namespace neon
}  // namespace mambart

#endif  // __aarch64__
