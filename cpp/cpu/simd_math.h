// Inline AVX2+FMA helpers shared by the avx2:: kernels: tail masks, horizontal
// sums, and exp / log1p / softplus / silu on 8 floats.
//
// Include it from a cpp/cpu/<family>.cpp and put the kernels between
// MAMBART_AVX2_BEGIN and MAMBART_AVX2_END: the region is compiled for
// avx2+fma by a target pragma (GCC) or attribute (clang), so the file still
// builds without -mavx2 and the ISA is chosen at run time (isa.cpp).
// Lambdas inside the region do not inherit the target: avoid them or give
// them __attribute__((target("avx2,fma"))).
//
// Accuracy against float64, measured on 4M points of [-85, 88]: softplus
// <= 2.2 ulp, silu <= 3.0 ulp (libm-based scalar: 1.5 and 2.3); the tests
// hold every result in [-85, 30] to 1e-5 relative. NaN propagates,
// exp(x < -104) = 0, exp(x > 88.8) = inf. Like the scalar silu_ref, silu
// returns 0 below x = -88.7, where the exact value is under 1e-36.
#pragma once

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

#include <cstdint>

#if defined(__clang__)
#define MAMBART_AVX2_BEGIN \
  _Pragma("clang attribute push(__attribute__((target(\"avx2,fma\"))), apply_to = function)")
#define MAMBART_AVX2_END _Pragma("clang attribute pop")
#else
#define MAMBART_AVX2_BEGIN _Pragma("GCC push_options") _Pragma("GCC target(\"avx2,fma\")")
#define MAMBART_AVX2_END _Pragma("GCC pop_options")
#endif

// The same region plus F16C (_mm256_cvtph_ps, for f16 weights in matmul.cpp;
// every AVX2 CPU has it: Intel since Ivy Bridge, AMD since Piledriver). Use
// it instead of MAMBART_AVX2_BEGIN, closed by MAMBART_AVX2_END.
#if defined(__clang__)
#define MAMBART_AVX2_F16C_BEGIN \
  _Pragma("clang attribute push(__attribute__((target(\"avx2,fma,f16c\"))), apply_to = function)")
#else
#define MAMBART_AVX2_F16C_BEGIN _Pragma("GCC push_options") _Pragma("GCC target(\"avx2,fma,f16c\")")
#endif

// AVX-512 (F, BW, VL) with VNNI, for the avx512 kernels
// (cpu/matmul_avx512.cpp); closed by MAMBART_AVX2_END. Include this header
// outside the region: its inline helpers must stay avx2 code, as every
// other file that includes it compiles them, since the linker keeps one copy.
#if defined(__clang__)
#define MAMBART_AVX512_BEGIN \
  _Pragma("clang attribute push(__attribute__((target(\"avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c\"))), apply_to = function)")
#else
#define MAMBART_AVX512_BEGIN \
  _Pragma("GCC push_options") _Pragma("GCC target(\"avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c\")")
#endif

MAMBART_AVX2_BEGIN

namespace mambart {
namespace avx2 {

// Lanes [0, n) set, n in [0, 8]: for maskload / maskstore of a row tail
// (masked-off lanes are neither read nor written, so no overrun).
inline __m256i tail_mask(int64_t n) {
  alignas(32) static const int32_t kMask[16] = {-1, -1, -1, -1, -1, -1, -1, -1,
                                                0,  0,  0,  0,  0,  0,  0,  0};
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kMask + 8 - n));
}

// Lanes [0, n) of p, zeros elsewhere; n in [0, 8].
inline __m256 load_n(const float* p, int64_t n) {
  return n >= 8 ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, tail_mask(n));
}
inline void store_n(float* p, __m256 v, int64_t n) {
  if (n >= 8)
    _mm256_storeu_ps(p, v);
  else
    _mm256_maskstore_ps(p, tail_mask(n), v);
}

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Lane i = hsum(v[i]), i < 8.
inline __m256 hsum8(const __m256 v[8]) {
  const __m256 s0 = _mm256_hadd_ps(_mm256_hadd_ps(v[0], v[1]), _mm256_hadd_ps(v[2], v[3]));
  const __m256 s1 = _mm256_hadd_ps(_mm256_hadd_ps(v[4], v[5]), _mm256_hadd_ps(v[6], v[7]));
  // s0 = {v0..v3 low halves | v0..v3 high halves}, likewise s1 for v4..v7.
  return _mm256_add_ps(_mm256_permute2f128_ps(s0, s1, 0x20), _mm256_permute2f128_ps(s0, s1, 0x31));
}

// exp(x), Cephes expf: x = n ln2 + r, |r| <= ln2/2 (Cody-Waite, two-part
// ln2), degree-5 polynomial for exp(r) - 1 - r, then * 2^n applied as two
// factors 2^(n/2) * 2^(n - n/2) so that results in the subnormal range and
// overflow to inf come out right. The clamp keeps n in [-150, 129]; its
// operand order passes NaN through.
inline __m256 exp(__m256 x) {
  x = _mm256_min_ps(_mm256_set1_ps(88.8f), _mm256_max_ps(_mm256_set1_ps(-104.0f), x));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  const __m256i ni = _mm256_cvtps_epi32(n);
  const __m256i n1 = _mm256_srai_epi32(ni, 1), n2 = _mm256_sub_epi32(ni, n1);
  const __m256i bias = _mm256_set1_epi32(127);
  const __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
  const __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
  return _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
}

// log1p(u) for u in [0, 1]: w = 1 + u rounds, so take log(w) (Cephes logf
// on w = m 2^e, m in [sqrt(1/2), sqrt(2))) and add the first-order
// correction (u - (w - 1)) / w for the rounding of w. Exact u for tiny u.
inline __m256 log1p_unit(__m256 u) {
  const __m256 one = _mm256_set1_ps(1.0f);
  const __m256 w = _mm256_add_ps(one, u);
  // w in [1, 2]: mantissa m in [1, 2), e in {0, 1}; fold m >= sqrt(2) to m/2.
  const __m256 big = _mm256_cmp_ps(w, _mm256_set1_ps(1.41421356237f), _CMP_GE_OQ);
  const __m256 e = _mm256_and_ps(big, one);
  const __m256 f = _mm256_sub_ps(_mm256_blendv_ps(w, _mm256_mul_ps(w, _mm256_set1_ps(0.5f)), big), one);
  const __m256 z = _mm256_mul_ps(f, f);
  __m256 p = _mm256_set1_ps(7.0376836292e-2f);
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(-1.1514610310e-1f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.1676998740e-1f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(-1.2420140846e-1f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.4249322787e-1f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(-1.6668057665e-1f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(2.0000714765e-1f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(-2.4999993993e-1f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(3.3333331174e-1f));
  // log(m) = f - f^2/2 + f^3 p(f); log(w) = log(m) + e ln2 (two-part ln2).
  __m256 y = _mm256_mul_ps(_mm256_mul_ps(p, f), z);
  y = _mm256_fmadd_ps(e, _mm256_set1_ps(-2.12194440e-4f), y);
  y = _mm256_fnmadd_ps(z, _mm256_set1_ps(0.5f), y);
  __m256 lw = _mm256_add_ps(f, y);
  lw = _mm256_fmadd_ps(e, _mm256_set1_ps(0.693359375f), lw);
  const __m256 corr = _mm256_div_ps(_mm256_sub_ps(u, _mm256_sub_ps(w, one)), w);
  return _mm256_add_ps(lw, corr);
}

// softplus(v) = v > 20 ? v : log1p(exp(v)), computed as
// max(v, 0) + log1p(exp(-|v|)) so exp never overflows and very negative v
// keeps its relative accuracy. NaN in, NaN out.
inline __m256 softplus(__m256 v) {
  const __m256 neg_abs = _mm256_or_ps(v, _mm256_set1_ps(-0.0f));
  const __m256 s = _mm256_add_ps(_mm256_max_ps(v, _mm256_setzero_ps()), log1p_unit(exp(neg_abs)));
  return _mm256_blendv_ps(s, v, _mm256_cmp_ps(v, _mm256_set1_ps(20.0f), _CMP_GT_OQ));
}

// silu(v) = v / (1 + exp(-v)); a true division (rcp's 12 bits are too few).
inline __m256 silu(__m256 v) {
  const __m256 e = exp(_mm256_sub_ps(_mm256_setzero_ps(), v));
  return _mm256_div_ps(v, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}

// In-register transpose: r[k] becomes column k of the 8 x 8 block.
inline void transpose8(__m256 r[8]) {
  __m256 t[8], u[8];
  for (int k = 0; k < 8; k += 2) {
    t[k] = _mm256_unpacklo_ps(r[k], r[k + 1]);  // r_k0 r_k+1,0 r_k1 r_k+1,1 | cols 4, 5
    t[k + 1] = _mm256_unpackhi_ps(r[k], r[k + 1]);
  }
  for (int k = 0; k < 8; k += 4) {
    u[k] = _mm256_shuffle_ps(t[k], t[k + 2], 0x44);  // column 0 | 4 of rows k..k+3
    u[k + 1] = _mm256_shuffle_ps(t[k], t[k + 2], 0xEE);
    u[k + 2] = _mm256_shuffle_ps(t[k + 1], t[k + 3], 0x44);
    u[k + 3] = _mm256_shuffle_ps(t[k + 1], t[k + 3], 0xEE);
  }
  for (int k = 0; k < 4; ++k) {
    r[k] = _mm256_permute2f128_ps(u[k], u[k + 4], 0x20);
    r[k + 4] = _mm256_permute2f128_ps(u[k], u[k + 4], 0x31);
  }
}

}  // namespace avx2
}  // namespace mambart

MAMBART_AVX2_END

#endif  // x86-64
