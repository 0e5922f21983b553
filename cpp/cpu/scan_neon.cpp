// Mamba-1 selective scan on arm64 with NEON; see kernels/scan.h. The scalar
// kernels (scan.cpp) are the reference.
//
// The avx2 kernel's shape at 4 lanes: one token row for a block of 4
// channels at a time. The per-channel scalars (softplus of dt, delta x,
// D x, silu(z)) are one vector for the 4 channels; the recurrence then runs
// per channel across N, 4 state entries per vector (4 vectors for N = 16),
// and hsum4 turns the 4 channels' C·h partial sums into one output vector.
// h, A, B, C are read in their natural layouts, the state stays in memory
// (a block's (4, N) state is L1-resident across a prefill's time walk), and
// tails of E and N go through zero-padded vectors, which add 0.
#if defined(__aarch64__)
#include "cpu/simd_math_neon.h"
#include "kernels/scan.h"

namespace mambart {
namespace neon {
namespace {

// h = exp(delta A) h + (delta x) B on 4 state entries of one channel.
inline float32x4_t state_update(float32x4_t delta, float32x4_t dx, float32x4_t A, float32x4_t B, float32x4_t h) {
  return vfmaq_f32(vmulq_f32(dx, B), exp(vmulq_f32(delta, A)), h);
}

// Token row r for channels [e, e + ne), ne <= 4; h holds their (ne, N) states.
void scan_row(const ScanParams& p, int64_t e, int64_t ne, int64_t r, float* h) {
  const int64_t N = p.N, N4 = N / 4 * 4;
  const float32x4_t x = load_n(p.x + r * p.ldx + e, ne);
  const float32x4_t delta = softplus(vaddq_f32(load_n(p.dt + r * p.lddt + e, ne), load_n(p.dt_bias + e, ne)));
  float delta_s[4], dx_s[4];  // per channel: delta and delta * x
  vst1q_f32(delta_s, delta);
  vst1q_f32(dx_s, vmulq_f32(delta, x));

  const float* B = p.B + r * p.ldb;
  const float* C = p.C + r * p.ldc;
  float32x4_t yc[4];  // per channel: 4 partial sums of C[n] h[n]
  for (int64_t i = 0; i < 4; ++i) {
    yc[i] = vdupq_n_f32(0.0f);
    if (i >= ne) continue;
    const float32x4_t d = vdupq_n_f32(delta_s[i]), dx = vdupq_n_f32(dx_s[i]);
    const float* A = p.A + (e + i) * N;
    float* hi = h + i * N;
    int64_t n = 0;
    for (; n < N4; n += 4) {
      const float32x4_t hn = state_update(d, dx, vld1q_f32(A + n), vld1q_f32(B + n), vld1q_f32(hi + n));
      vst1q_f32(hi + n, hn);
      yc[i] = vfmaq_f32(yc[i], hn, vld1q_f32(C + n));
    }
    if (n < N) {  // padded lanes: A = B = h = C = 0, so they add 0
      const int64_t m = N - n;
      const float32x4_t hn = state_update(d, dx, load_n(A + n, m), load_n(B + n, m), load_n(hi + n, m));
      store_n(hi + n, hn, m);
      yc[i] = vfmaq_f32(yc[i], hn, load_n(C + n, m));
    }
  }
  // y = (C·h + D x) * silu(z)
  float32x4_t y = vfmaq_f32(hsum4(yc), load_n(p.D + e, ne), x);
  if (p.z) y = vmulq_f32(y, silu(load_n(p.z + r * p.ldz + e, ne)));
  store_n(p.y + r * p.ldy + e, y, ne);
}

}  // namespace

void scan_prefill(const ScanParams& p, int64_t e0, int64_t e1) {
  for (int64_t e = e0; e < e1; e += 4) {
    const int64_t ne = e1 - e < 4 ? e1 - e : 4;
    for (int64_t t = 0; t < p.seqlen; ++t) scan_row(p, e, ne, t, p.state + e * p.N);
  }
}

void scan_step(const ScanParams& p, int64_t e0, int64_t e1) {
  for (int64_t b = 0; b < p.batch; ++b)
    for (int64_t e = e0; e < e1; e += 4) {
      const int64_t ne = e1 - e < 4 ? e1 - e : 4;
      scan_row(p, e, ne, b, p.state + (b * p.E + e) * p.N);
    }
}

}  // namespace neon
}  // namespace mambart

#endif  // __aarch64__
