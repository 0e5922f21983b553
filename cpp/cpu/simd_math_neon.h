// Inline NEON helpers shared by the neon:: kernels: row tails, horizontal
// sums, and exp / log1p / softplus / silu on 4 floats.
//
// The same algorithms, constants and operation order as the avx2 versions
// in simd_math.h (Cephes expf and logf), so that both SIMD paths round
// alike (accuracy notes there). Measured against float64 on a 0.0013 grid
// of [-85, 30] under qemu: relative error <= 1.2e-7 (exp), 1.7e-7
// (softplus), 2.1e-7 (silu); kernel_check holds the kernels to scalar.
// NaN propagates (NEON's fmax / fmin return NaN for a NaN operand), exp(x <
// -104) = 0, exp(x > 88.8) = inf, silu(x < -88.7) = 0 like silu_ref.
// Every AArch64 CPU has NEON, so unlike the avx2 header there is no target
// region: the kernels are compiled for it directly.
#pragma once

#if defined(__aarch64__)
#include <arm_neon.h>

#include <cstdint>
#include <cstring>

namespace mambart {
namespace neon {

// Lanes [0, n) of p, zeros elsewhere; n >= 0 (at most 4 floats are read).
// NEON has no masked load: a tail goes through a zero-padded copy.
inline float32x4_t load_n(const float* p, int64_t n) {
  if (n >= 4) return vld1q_f32(p);
  float t[4] = {};
  if (n > 0) std::memcpy(t, p, static_cast<size_t>(n) * sizeof(float));
  return vld1q_f32(t);
}
inline void store_n(float* p, float32x4_t v, int64_t n) {
  if (n >= 4) return vst1q_f32(p, v);
  float t[4];
  vst1q_f32(t, v);
  if (n > 0) std::memcpy(p, t, static_cast<size_t>(n) * sizeof(float));
}

// Lane i = sum of the lanes of v[i], i < 4.
inline float32x4_t hsum4(const float32x4_t v[4]) {
  return vpaddq_f32(vpaddq_f32(v[0], v[1]), vpaddq_f32(v[2], v[3]));
}

// exp(x), Cephes expf: x = n ln2 + r, |r| <= ln2/2 (Cody-Waite, two-part
// ln2), degree-5 polynomial for exp(r) - 1 - r, then * 2^n applied as two
// factors 2^(n/2) * 2^(n - n/2) so that results in the subnormal range and
// overflow to inf come out right. The clamp keeps n in [-150, 129].
inline float32x4_t exp(float32x4_t x) {
  x = vminq_f32(vdupq_n_f32(88.8f), vmaxq_f32(vdupq_n_f32(-104.0f), x));
  const float32x4_t n = vrndnq_f32(vmulq_f32(x, vdupq_n_f32(1.44269504088896341f)));
  float32x4_t r = vfmsq_f32(x, n, vdupq_n_f32(0.693359375f));
  r = vfmsq_f32(r, n, vdupq_n_f32(-2.12194440e-4f));
  float32x4_t p = vdupq_n_f32(1.9875691500e-4f);
  p = vfmaq_f32(vdupq_n_f32(1.3981999507e-3f), p, r);
  p = vfmaq_f32(vdupq_n_f32(8.3334519073e-3f), p, r);
  p = vfmaq_f32(vdupq_n_f32(4.1665795894e-2f), p, r);
  p = vfmaq_f32(vdupq_n_f32(1.6666665459e-1f), p, r);
  p = vfmaq_f32(vdupq_n_f32(5.0000001201e-1f), p, r);
  p = vfmaq_f32(vaddq_f32(r, vdupq_n_f32(1.0f)), p, vmulq_f32(r, r));
  const int32x4_t ni = vcvtq_s32_f32(n);  // n is integral already (NaN gives 0; p carries the NaN)
  const int32x4_t n1 = vshrq_n_s32(ni, 1), n2 = vsubq_s32(ni, n1);
  const int32x4_t bias = vdupq_n_s32(127);
  const float32x4_t s1 = vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(n1, bias), 23));
  const float32x4_t s2 = vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(n2, bias), 23));
  return vmulq_f32(vmulq_f32(p, s1), s2);
}

// log1p(u) for u in [0, 1]: w = 1 + u rounds, so take log(w) (Cephes logf
// on w = m 2^e, m in [sqrt(1/2), sqrt(2))) and add the first-order
// correction (u - (w - 1)) / w for the rounding of w. Exact u for tiny u.
inline float32x4_t log1p_unit(float32x4_t u) {
  const float32x4_t one = vdupq_n_f32(1.0f);
  const float32x4_t w = vaddq_f32(one, u);
  // w in [1, 2]: mantissa m in [1, 2), e in {0, 1}; fold m >= sqrt(2) to m/2.
  const uint32x4_t big = vcgeq_f32(w, vdupq_n_f32(1.41421356237f));
  const float32x4_t e = vreinterpretq_f32_u32(vandq_u32(big, vreinterpretq_u32_f32(one)));
  const float32x4_t f = vsubq_f32(vbslq_f32(big, vmulq_f32(w, vdupq_n_f32(0.5f)), w), one);
  const float32x4_t z = vmulq_f32(f, f);
  float32x4_t p = vdupq_n_f32(7.0376836292e-2f);
  p = vfmaq_f32(vdupq_n_f32(-1.1514610310e-1f), p, f);
  p = vfmaq_f32(vdupq_n_f32(1.1676998740e-1f), p, f);
  p = vfmaq_f32(vdupq_n_f32(-1.2420140846e-1f), p, f);
  p = vfmaq_f32(vdupq_n_f32(1.4249322787e-1f), p, f);
  p = vfmaq_f32(vdupq_n_f32(-1.6668057665e-1f), p, f);
  p = vfmaq_f32(vdupq_n_f32(2.0000714765e-1f), p, f);
  p = vfmaq_f32(vdupq_n_f32(-2.4999993993e-1f), p, f);
  p = vfmaq_f32(vdupq_n_f32(3.3333331174e-1f), p, f);
  // log(m) = f - f^2/2 + f^3 p(f); log(w) = log(m) + e ln2 (two-part ln2).
  float32x4_t y = vmulq_f32(vmulq_f32(p, f), z);
  y = vfmaq_f32(y, e, vdupq_n_f32(-2.12194440e-4f));
  y = vfmsq_f32(y, z, vdupq_n_f32(0.5f));
  float32x4_t lw = vaddq_f32(f, y);
  lw = vfmaq_f32(lw, e, vdupq_n_f32(0.693359375f));
  const float32x4_t corr = vdivq_f32(vsubq_f32(u, vsubq_f32(w, one)), w);
  return vaddq_f32(lw, corr);
}

// softplus(v) = v > 20 ? v : log1p(exp(v)), computed as
// max(v, 0) + log1p(exp(-|v|)) so exp never overflows and very negative v
// keeps its relative accuracy. NaN in, NaN out.
inline float32x4_t softplus(float32x4_t v) {
  const float32x4_t neg_abs = vnegq_f32(vabsq_f32(v));
  const float32x4_t s = vaddq_f32(vmaxq_f32(v, vdupq_n_f32(0.0f)), log1p_unit(exp(neg_abs)));
  return vbslq_f32(vcgtq_f32(v, vdupq_n_f32(20.0f)), v, s);
}

// silu(v) = v / (1 + exp(-v)); a true division (vrecpe's 8 bits are too few).
inline float32x4_t silu(float32x4_t v) {
  return vdivq_f32(v, vaddq_f32(vdupq_n_f32(1.0f), exp(vnegq_f32(v))));
}

}  // namespace neon
}  // namespace mambart

#endif  // __aarch64__
