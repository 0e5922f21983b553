// Mamba-2 SSD, prefill and step: one recurrence. See kernels/ssd.h.
#include <algorithm>
#include <cmath>

#include "kernels/elementwise.h"
#include "kernels/ssd.h"

namespace mambart {
namespace scalar {

// Row r of the inputs, state row s, head h: S (P, N) advanced by one token,
// y (P) = C·S + D x.
static void step_head(const SsdParams& p, int64_t r, int64_t s, int64_t h, float delta) {
  const int64_t P = p.P, N = p.N, g = h / (p.H / p.G);
  const float decay = std::exp(delta * p.A[h]);
  const float* x = p.x + r * p.ldx + h * P;
  const float* B = p.B + r * p.ldb + g * N;
  const float* C = p.C + r * p.ldc + g * N;
  float* S = p.state + (s * p.H + h) * P * N;
  float* y = p.y + r * p.ldy + h * P;
  for (int64_t pp = 0; pp < P; ++pp) {
    float* Sp = S + pp * N;
    float acc = 0.0f;
    for (int64_t n = 0; n < N; ++n) {
      Sp[n] = decay * Sp[n] + delta * x[pp] * B[n];
      acc += C[n] * Sp[n];
    }
    y[pp] = acc + (p.d_per_channel ? p.D[h * P + pp] : p.D[h]) * x[pp];
  }
}

void ssd_prefill(const SsdParams& p, int64_t h0, int64_t h1) {
  for (int64_t h = h0; h < h1; ++h)
    for (int64_t t = 0; t < p.seqlen; ++t) {
      const float d = softplus_ref(p.dt[t * p.lddt + h] + p.dt_bias[h]);
      step_head(p, t, 0, h, std::min(std::max(d, p.dt_min), p.dt_max));
    }
}

void ssd_step(const SsdParams& p, int64_t h0, int64_t h1) {
  for (int64_t b = 0; b < p.batch; ++b)
    for (int64_t h = h0; h < h1; ++h) step_head(p, b, b, h, softplus_ref(p.dt[b * p.lddt + h] + p.dt_bias[h]));
}

}  // namespace scalar
}  // namespace mambart

#include "cpu/simd_math.h"

#if defined(__x86_64__) || defined(_M_X64)
MAMBART_AVX2_BEGIN

namespace mambart {
namespace avx2 {

// ---------------------------------------------------------------- step
//
// Decode streams the whole state once per token: (H, P, N) floats per layer
// (24 x 64 x 128 = 786 KB for mamba2-130m), read and written back. Rows of
// S are updated 4 at a time so that each B and C vector loaded serves 4 rows,
// with 4 independent C·S accumulators; S itself is touched exactly once.
// That leaves 3 vector FMA-unit ops per 8 state floats (decay S + dx B is a
// mul and an FMA, C·S one FMA), which is the limit once S is in L2/L3:
// 11 us per token for H = 24, P = 64, N = 128 on one core (~140 GB/s of
// state read + written), 6-8x the scalar kernel.

// delta = softplus(dt + dt_bias) and decay = exp(delta A) for heads
// [h, h + nh), nh <= 8, of token row r; a prefill clamps delta to [dt_min,
// dt_max], a step does not (reference doc 3.1 step 4).
inline void head_decays(const SsdParams& p, int64_t r, int64_t h, int64_t nh, bool clamp, float* delta,
                        float* decay) {
  __m256 d = softplus(_mm256_add_ps(load_n(p.dt + r * p.lddt + h, nh), load_n(p.dt_bias + h, nh)));
  if (clamp) d = _mm256_min_ps(_mm256_max_ps(d, _mm256_set1_ps(p.dt_min)), _mm256_set1_ps(p.dt_max));
  _mm256_storeu_ps(delta, d);
  _mm256_storeu_ps(decay, exp(_mm256_mul_ps(d, load_n(p.A + h, nh))));
}

// Rows [0, R) of one head's state S (R, N): S = decay S + (delta x_r) B;
// returns y[r] = C·S[r].
template <int R>
inline void step_rows(const float* x, float delta, __m256 decay, const float* B, const float* C, float* S,
                      int64_t N, float* y) {
  __m256 dx[R], acc[R];
  for (int r = 0; r < R; ++r) {
    dx[r] = _mm256_set1_ps(delta * x[r]);
    acc[r] = _mm256_setzero_ps();
  }
  const int64_t N8 = N / 8 * 8;
  for (int64_t n = 0; n < N8; n += 8) {
    const __m256 b = _mm256_loadu_ps(B + n), c = _mm256_loadu_ps(C + n);
    for (int r = 0; r < R; ++r) {
      float* s = S + r * N + n;
      const __m256 sn = _mm256_fmadd_ps(decay, _mm256_loadu_ps(s), _mm256_mul_ps(dx[r], b));
      _mm256_storeu_ps(s, sn);
      acc[r] = _mm256_fmadd_ps(c, sn, acc[r]);
    }
  }
  if (N8 < N) {  // masked-off lanes: B = C = S = 0, so they add 0
    const __m256i tail = tail_mask(N - N8);
    const __m256 b = _mm256_maskload_ps(B + N8, tail), c = _mm256_maskload_ps(C + N8, tail);
    for (int r = 0; r < R; ++r) {
      float* s = S + r * N + N8;
      const __m256 sn = _mm256_fmadd_ps(decay, _mm256_maskload_ps(s, tail), _mm256_mul_ps(dx[r], b));
      _mm256_maskstore_ps(s, tail, sn);
      acc[r] = _mm256_fmadd_ps(c, sn, acc[r]);
    }
  }
  for (int r = 0; r < R; ++r) y[r] = hsum(acc[r]);
}

// Row r of the inputs, state row s, head h: S (P, N) advanced by one token,
// y (P) = C·S + D x.
inline void step_head(const SsdParams& p, int64_t r, int64_t s, int64_t h, float delta, float decay) {
  const int64_t P = p.P, N = p.N, g = h / (p.H / p.G);
  const float* x = p.x + r * p.ldx + h * P;
  const float* B = p.B + r * p.ldb + g * N;
  const float* C = p.C + r * p.ldc + g * N;
  float* S = p.state + (s * p.H + h) * P * N;
  float* y = p.y + r * p.ldy + h * P;
  const __m256 dec = _mm256_set1_ps(decay);
  int64_t pp = 0;
  for (; pp + 4 <= P; pp += 4) step_rows<4>(x + pp, delta, dec, B, C, S + pp * N, N, y + pp);
  for (; pp < P; ++pp) step_rows<1>(x + pp, delta, dec, B, C, S + pp * N, N, y + pp);
  for (pp = 0; pp < P; ++pp) y[pp] += (p.d_per_channel ? p.D[h * P + pp] : p.D[h]) * x[pp];
}

void ssd_step(const SsdParams& p, int64_t h0, int64_t h1) {
  alignas(32) float delta[8], decay[8];
  for (int64_t b = 0; b < p.batch; ++b)
    for (int64_t h = h0; h < h1; h += 8) {
      const int64_t nh = h1 - h < 8 ? h1 - h : 8;
      head_decays(p, b, h, nh, false, delta, decay);
      for (int64_t i = 0; i < nh; ++i) step_head(p, b, b, h + i, delta[i], decay[i]);
    }
}

// ---------------------------------------------------------------- prefill
//
// The step's recurrence, one token at a time, 8 heads at a time (their state,
// 8 P N floats, stays in L2 across the tokens). Not the block form of
// reference doc 3.3: its chunked products round according to where the
// chunks fall, so the state after a prompt would depend on how the prompt
// was cut into calls, and a cached prefix state (mambart/cache.py) would not
// continue exactly as one prefill does. Both cost P N per token and head;
// measured (1 core, H = 24, P = 64, N = 128, L = 512): 5.3 ms, where the
// block form with chunk 64 took 7.5.
void ssd_prefill(const SsdParams& p, int64_t h0, int64_t h1) {
  alignas(32) float delta[8], decay[8];
  for (int64_t h = h0; h < h1; h += 8) {
    const int64_t nh = h1 - h < 8 ? h1 - h : 8;
    for (int64_t t = 0; t < p.seqlen; ++t) {
      head_decays(p, t, h, nh, true, delta, decay);
      for (int64_t i = 0; i < nh; ++i) step_head(p, t, 0, h + i, delta[i], decay[i]);
    }
  }
}

}  // namespace avx2
}  // namespace mambart

MAMBART_AVX2_END
#endif  // x86-64
