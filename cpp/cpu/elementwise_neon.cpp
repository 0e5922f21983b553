// Elementwise activations on arm64 with NEON; see kernels/elementwise.h. The
// scalar kernels (elementwise.cpp) are the reference.
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
