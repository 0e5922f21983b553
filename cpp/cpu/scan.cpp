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

#include "cpu/simd_math.h"

#if defined(__x86_64__) || defined(_M_X64)
MAMBART_AVX2_BEGIN

namespace mambart {
namespace avx2 {

// One token row r for channels [e, e + ne), ne <= 8, with h the (ne, N)
// states of those channels. The per-channel scalars (softplus of dt, x,
// D x, silu(z)) are computed for the 8 channels as one vector; the
// recurrence then runs per channel across N, 8 state entries at a time (two
// vectors for N = 16), and hsum8 turns the 8 channels' C·h partial sums into
// one output vector. The state stays in memory: for prefill the 8 channels'
// (8, N) block is L1-resident across the whole time walk. This reads h, A,
// B, C in their natural layouts (no transposed state copy) and handles any
// N and E with masked tails. Measured against scalar (1 thread, E=1536,
// N=16): prefill of 64 tokens 4.3x, one decode step 6.4x.
inline void scan_row(const ScanParams& p, int64_t e, int64_t ne, int64_t r, float* h) {
  const int64_t N = p.N;
  const __m256 x = load_n(p.x + r * p.ldx + e, ne);
  const __m256 dt = _mm256_add_ps(load_n(p.dt + r * p.lddt + e, ne), load_n(p.dt_bias + e, ne));
  const __m256 delta = softplus(dt);
  alignas(32) float delta_s[8], dx_s[8];  // per channel: delta and delta * x
  _mm256_store_ps(delta_s, delta);
  _mm256_store_ps(dx_s, _mm256_mul_ps(delta, x));

  const float* B = p.B + r * p.ldb;
  const float* C = p.C + r * p.ldc;
  __m256 yc[8];  // per channel: 8 partial sums of C[n] h[n]
  for (int64_t i = 0; i < 8; ++i) {
    yc[i] = _mm256_setzero_ps();
    if (i >= ne) continue;
    const __m256 d = _mm256_set1_ps(delta_s[i]), dx = _mm256_set1_ps(dx_s[i]);
    const float* A = p.A + (e + i) * N;
    float* hi = h + i * N;
    for (int64_t n = 0; n < N; n += 8) {
      const int64_t m = N - n;
      // h = exp(delta A) h + (delta x) B
      const __m256 dA = exp(_mm256_mul_ps(d, load_n(A + n, m)));
      const __m256 hn = _mm256_fmadd_ps(dA, load_n(hi + n, m), _mm256_mul_ps(dx, load_n(B + n, m)));
      store_n(hi + n, hn, m);
      yc[i] = _mm256_fmadd_ps(hn, load_n(C + n, m), yc[i]);
    }
  }
  // y = (C·h + D x) * silu(z)
  __m256 y = _mm256_fmadd_ps(load_n(p.D + e, ne), x, hsum8(yc));
  if (p.z) y = _mm256_mul_ps(y, silu(load_n(p.z + r * p.ldz + e, ne)));
  store_n(p.y + r * p.ldy + e, y, ne);
}

void scan_prefill(const ScanParams& p, int64_t e0, int64_t e1) {
  for (int64_t e = e0; e < e1; e += 8) {
    const int64_t ne = e1 - e < 8 ? e1 - e : 8;
    for (int64_t t = 0; t < p.seqlen; ++t) scan_row(p, e, ne, t, p.state + e * p.N);
  }
}

void scan_step(const ScanParams& p, int64_t e0, int64_t e1) {
  for (int64_t b = 0; b < p.batch; ++b)
    for (int64_t e = e0; e < e1; e += 8) {
      const int64_t ne = e1 - e < 8 ? e1 - e : 8;
      scan_row(p, e, ne, b, p.state + (b * p.E + e) * p.N);
    }
}

}  // namespace avx2
}  // namespace mambart

MAMBART_AVX2_END
#endif  // x86-64
