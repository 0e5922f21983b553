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
