// Mamba-2 SSD on arm64 with NEON; see kernels/ssd.h. The scalar kernels
// (ssd.cpp) are the reference.
#if defined(__aarch64__)
#include <algorithm>
#include <cmath>

#include "cpu/simd_math_neon.h"
#include "kernels/ssd.h"

namespace mambart {
namespace neon {

// ---------------------------------------------------------------- step
//
// The avx2 step at 4 lanes. Decode streams the whole (H, P, N) state once
// per token, so the kernel is bound by memory traffic on S: rows of S are
// updated 4 at a time so that each B and C vector loaded serves 4 rows, and
// S is read and written exactly once. Each row keeps two C·S accumulators
// (even and odd 4-float blocks of N) so the FMA chains overlap.

namespace {

// s = decay s + dx b on 4 state floats; acc += c s.
inline void update(float* s, float32x4_t decay, float32x4_t dx, float32x4_t b, float32x4_t c, float32x4_t& acc) {
  const float32x4_t sn = vfmaq_f32(vmulq_f32(dx, b), decay, vld1q_f32(s));
  vst1q_f32(s, sn);
  acc = vfmaq_f32(acc, c, sn);
}

// Rows [0, R) of one head's state S (R, N): S = decay S + (delta x_r) B;
// returns y[r] = C·S[r].
template <int R>
inline void step_rows(const float* x, float delta, float32x4_t decay, const float* B, const float* C, float* S,
                      int64_t N, float* y) {
  float32x4_t dx[R], acc0[R], acc1[R];
  for (int r = 0; r < R; ++r) {
    dx[r] = vdupq_n_f32(delta * x[r]);
    acc0[r] = acc1[r] = vdupq_n_f32(0.0f);
  }
  int64_t n = 0;
  for (; n + 8 <= N; n += 8) {
    const float32x4_t b0 = vld1q_f32(B + n), b1 = vld1q_f32(B + n + 4);
    const float32x4_t c0 = vld1q_f32(C + n), c1 = vld1q_f32(C + n + 4);
    for (int r = 0; r < R; ++r) {
      update(S + r * N + n, decay, dx[r], b0, c0, acc0[r]);
      update(S + r * N + n + 4, decay, dx[r], b1, c1, acc1[r]);
    }
  }
  for (; n + 4 <= N; n += 4) {
    const float32x4_t b = vld1q_f32(B + n), c = vld1q_f32(C + n);
    for (int r = 0; r < R; ++r) update(S + r * N + n, decay, dx[r], b, c, acc0[r]);
  }
  if (n < N) {  // padded lanes: B = C = S = 0, so they add 0
    const int64_t m = N - n;
    const float32x4_t b = load_n(B + n, m), c = load_n(C + n, m);
    for (int r = 0; r < R; ++r) {
      float* s = S + r * N + n;
      const float32x4_t sn = vfmaq_f32(vmulq_f32(dx[r], b), decay, load_n(s, m));
      store_n(s, sn, m);
      acc1[r] = vfmaq_f32(acc1[r], c, sn);
    }
  }
  if constexpr (R == 4) {
    float32x4_t acc[4];
    for (int r = 0; r < 4; ++r) acc[r] = vaddq_f32(acc0[r], acc1[r]);
    vst1q_f32(y, hsum4(acc));
  } else {
    for (int r = 0; r < R; ++r) y[r] = vaddvq_f32(vaddq_f32(acc0[r], acc1[r]));
  }
}

// Row r of the inputs, state row st, head h: S (P, N) advanced by one
// token, y (P) = C·S + D x.
inline void step_head(const SsdParams& p, int64_t r, int64_t st, int64_t h, float delta, float decay) {
  const int64_t P = p.P, N = p.N, g = h / (p.H / p.G);
  const float* x = p.x + r * p.ldx + h * P;
  const float* B = p.B + r * p.ldb + g * N;
  const float* C = p.C + r * p.ldc + g * N;
  float* S = p.state + (st * p.H + h) * P * N;
  float* y = p.y + r * p.ldy + h * P;
  const float32x4_t dec = vdupq_n_f32(decay);
  int64_t pp = 0;
  for (; pp + 4 <= P; pp += 4) step_rows<4>(x + pp, delta, dec, B, C, S + pp * N, N, y + pp);
  for (; pp < P; ++pp) step_rows<1>(x + pp, delta, dec, B, C, S + pp * N, N, y + pp);
  for (pp = 0; pp < P; ++pp) y[pp] += (p.d_per_channel ? p.D[h * P + pp] : p.D[h]) * x[pp];
}

// delta = softplus(dt + dt_bias), clamped to [dt_min, dt_max] in a prefill
// only (reference doc 3.1 step 4), and decay = exp(delta A), for heads
// [h, h + nh), nh <= 4, of token row r.
inline void head_decays(const SsdParams& p, int64_t r, int64_t h, int64_t nh, bool clamp, float* delta,
                        float* decay) {
  float32x4_t d = softplus(vaddq_f32(load_n(p.dt + r * p.lddt + h, nh), load_n(p.dt_bias + h, nh)));
  if (clamp) d = vminq_f32(vmaxq_f32(d, vdupq_n_f32(p.dt_min)), vdupq_n_f32(p.dt_max));
  vst1q_f32(delta, d);
  vst1q_f32(decay, exp(vmulq_f32(d, load_n(p.A + h, nh))));
}

}  // namespace

void ssd_step(const SsdParams& p, int64_t h0, int64_t h1) {
  float delta[4], decay[4];
  for (int64_t b = 0; b < p.batch; ++b)
    for (int64_t h = h0; h < h1; h += 4) {
      const int64_t nh = h1 - h < 4 ? h1 - h : 4;
      head_decays(p, b, h, nh, false, delta, decay);
      for (int64_t i = 0; i < nh; ++i) step_head(p, b, b, h + i, delta[i], decay[i]);
    }
}

// The step's recurrence one token at a time, 4 heads at a time: see the
// avx2 prefill (ssd.cpp) for why not the chunked block form.
void ssd_prefill(const SsdParams& p, int64_t h0, int64_t h1) {
  float delta[4], decay[4];
  for (int64_t h = h0; h < h1; h += 4) {
    const int64_t nh = h1 - h < 4 ? h1 - h : 4;
    for (int64_t t = 0; t < p.seqlen; ++t) {
      head_decays(p, t, h, nh, true, delta, decay);
      for (int64_t i = 0; i < nh; ++i) step_head(p, t, 0, h + i, delta[i], decay[i]);
    }
  }
}

}  // namespace neon
}  // namespace mambart

#endif  // __aarch64__
