// Elementwise activations, on flat arrays of n floats, index range [i0, i1).
//
//   silu:      y[i] = x[i] * sigmoid(x[i])
//   softplus:  y[i] = x[i] > 20 ? x[i] : log1p(exp(x[i]))   (threshold as PyTorch)
//   gate_silu: y[i] = x[i] * silu(z[i])
//   gate_gelu: y[i] = x[i] * gelu(z[i]), gelu(v) = v / 2 * (1 + erf(v / sqrt(2)))   (exact, not tanh)
//
// Scalar inline versions live here because conv1d and scan fuse them and the
// scalar kernels of every family must agree on the exact formula.
#pragma once
#include <cmath>
#include <cstdint>

namespace mambart {

struct ElementwiseParams {
  const float* x;
  const float* z;  // gate_silu, gate_gelu only
  float* y;
  int64_t n;
};

inline float silu_ref(float v) { return v / (1.0f + std::exp(-v)); }
inline float softplus_ref(float v) { return v > 20.0f ? v : std::log1p(std::exp(v)); }
inline float gelu_ref(float v) { return 0.5f * v * (1.0f + std::erf(v * 0.70710678118654752f)); }

namespace scalar {
void silu(const ElementwiseParams& p, int64_t i0, int64_t i1);
void softplus(const ElementwiseParams& p, int64_t i0, int64_t i1);
void gate_silu(const ElementwiseParams& p, int64_t i0, int64_t i1);
void gate_gelu(const ElementwiseParams& p, int64_t i0, int64_t i1);
}
namespace avx2 {
void silu(const ElementwiseParams& p, int64_t i0, int64_t i1);
void softplus(const ElementwiseParams& p, int64_t i0, int64_t i1);
void gate_silu(const ElementwiseParams& p, int64_t i0, int64_t i1);
void gate_gelu(const ElementwiseParams& p, int64_t i0, int64_t i1);
}
namespace neon {  // arm64 builds only; gate_gelu runs the scalar code
void silu(const ElementwiseParams& p, int64_t i0, int64_t i1);
void softplus(const ElementwiseParams& p, int64_t i0, int64_t i1);
void gate_silu(const ElementwiseParams& p, int64_t i0, int64_t i1);
}

}  // namespace mambart
