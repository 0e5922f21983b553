// Mamba-1 selective scan, prefill and step. See kernels/scan.h.
#include <cmath>

#include "kernels/elementwise.h"
#include "kernels/scan.h"

namespace mambart {
namespace scalar {

// One channel e over `steps` tokens whose rows are r0, r0+1, ...; h is the
// channel's (N) state.
static void scan_channel(const ScanParams& p, int64_t e, int64_t r0, int64_t steps, float* h) {
  const float* A = p.A + e * p.N;
  for (int64_t t = 0; t < steps; ++t) {
    const int64_t r = r0 + t;
    const float x = p.x[r * p.ldx + e];
    const float delta = softplus_ref(p.dt[r * p.lddt + e] + p.dt_bias[e]);
    const float* B = p.B + r * p.ldb;
    const float* C = p.C + r * p.ldc;
    float y = 0.0f;
    for (int64_t n = 0; n < p.N; ++n) {
      h[n] = std::exp(delta * A[n]) * h[n] + delta * B[n] * x;
      y += h[n] * C[n];
    }
    y += p.D[e] * x;
    if (p.z) y *= silu_ref(p.z[r * p.ldz + e]);
    p.y[r * p.ldy + e] = y;
  }
}

void scan_prefill(const ScanParams& p, int64_t e0, int64_t e1) {
  for (int64_t e = e0; e < e1; ++e) scan_channel(p, e, 0, p.seqlen, p.state + e * p.N);
}

void scan_step(const ScanParams& p, int64_t e0, int64_t e1) {
  for (int64_t b = 0; b < p.batch; ++b)
    for (int64_t e = e0; e < e1; ++e) scan_channel(p, e, b, 1, p.state + (b * p.E + e) * p.N);
}

}  // namespace scalar
}  // namespace mambart
