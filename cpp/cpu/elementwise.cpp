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
