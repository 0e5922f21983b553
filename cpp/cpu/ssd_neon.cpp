// Mamba-2 SSD on arm64 with NEON; see kernels/ssd.h. The scalar kernels
// (ssd.cpp) are the reference.
#if defined(__aarch64__)
#include <algorithm>
#include <cmath>
#include <vector>

#include "cpu/simd_math_neon.h"
#include "cpu/ssd_blocks.h"
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

// Batch row b, head h: S (P, N) advanced by one token, y (P) = C·S + D x.
inline void step_head(const SsdParams& p, int64_t b, int64_t h, float delta, float decay) {
  const int64_t P = p.P, N = p.N, g = h / (p.H / p.G);
  const float* x = p.x + b * p.ldx + h * P;
  const float* B = p.B + b * p.ldb + g * N;
  const float* C = p.C + b * p.ldc + g * N;
  float* S = p.state + (b * p.H + h) * P * N;
  float* y = p.y + b * p.ldy + h * P;
  const float32x4_t dec = vdupq_n_f32(decay);
  int64_t pp = 0;
  for (; pp + 4 <= P; pp += 4) step_rows<4>(x + pp, delta, dec, B, C, S + pp * N, N, y + pp);
  for (; pp < P; ++pp) step_rows<1>(x + pp, delta, dec, B, C, S + pp * N, N, y + pp);
  for (pp = 0; pp < P; ++pp) y[pp] += (p.d_per_channel ? p.D[h * P + pp] : p.D[h]) * x[pp];
}

}  // namespace

void ssd_step(const SsdParams& p, int64_t h0, int64_t h1) {
  float delta[4], decay[4];
  for (int64_t b = 0; b < p.batch; ++b)
    for (int64_t h = h0; h < h1; h += 4) {
      // delta = softplus(dt + dt_bias) (not clamped: reference doc 3.1 step 4), decay = exp(delta A), 4 heads at once.
      const int64_t nh = h1 - h < 4 ? h1 - h : 4;
      const float32x4_t d = softplus(vaddq_f32(load_n(p.dt + b * p.lddt + h, nh), load_n(p.dt_bias + h, nh)));
      vst1q_f32(delta, d);
      vst1q_f32(decay, exp(vmulq_f32(d, load_n(p.A + h, nh))));
      for (int64_t i = 0; i < nh; ++i) step_head(p, b, h + i, delta[i], decay[i]);
    }
}

// ---------------------------------------------------------------- prefill
//
// The avx2 prefill's block form (see ssd.cpp for the full derivation) at 4
// lanes, with Q4, N4, P4 = q, N, P rounded up to 4:
//
//   per group and chunk:  Ct (N, Q4) C transposed, zero past q;
//                         Bp (q, N4) B rows zero-padded;  CBt (Q4, Q4) = B_j·C_i for i >= j
//   per head:             Mt (q, Q4) = CBt[j, i] exp(seg(j, i)) delta_j for j <= i, else 0
//                         Yt (P4, Q4) = exp(s_i) S C_i + x Mtᵀ  (transposed: columns are tokens)
//                         y_i = Yt[:, i] + D x_i;  S = exp(s_{q-1}) S + Xwᵀ Bp
//
// with seg(j, i) = a_{j+1} + ... + a_i summed directly, never as a
// difference of cumulative sums. The three products and CBt run through one
// register-tiled kernel (mm) vectorised over the output's columns; its
// 4 x 16 tile keeps 16 accumulators of NEON's 32 registers.

namespace {

using ssd_blocks::grow;
using ssd_blocks::Mm;
using ssd_blocks::MmShape;
using ssd_blocks::SsdScratch;

// Rows [r0, r0 + R) x columns [col0, col0 + 4V) of c, summing k < K.
template <int R, int V>
inline void mm_tile(const Mm& m, int64_t r0, int64_t col0, int64_t K, int64_t cols) {
  float32x4_t acc[R][V];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < V; ++v)
      acc[r][v] = m.beta == 0.0f ? vdupq_n_f32(0.0f)
                                 : vmulq_n_f32(load_n(m.c + (r0 + r) * m.ldc + col0 + 4 * v, cols - col0 - 4 * v),
                                               m.beta);
  const float* a = m.a + r0 * m.ars;
  const float* b = m.b + col0;
  for (int64_t k = 0; k < K; ++k, a += m.aks, b += m.ldb) {
    float32x4_t bv[V];
    for (int v = 0; v < V; ++v) bv[v] = vld1q_f32(b + 4 * v);
    for (int r = 0; r < R; ++r) {
      const float av = a[r * m.ars];
      for (int v = 0; v < V; ++v) acc[r][v] = vfmaq_n_f32(acc[r][v], bv[v], av);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < V; ++v) store_n(m.c + (r0 + r) * m.ldc + col0 + 4 * v, acc[r][v], cols - col0 - 4 * v);
}

template <int V>
inline void mm_block(const Mm& m, int64_t nr, int64_t col0, int64_t K, int64_t cols) {
  int64_t r = 0;
  for (; r + 4 <= nr; r += 4) mm_tile<4, V>(m, r, col0, K, cols);
  for (; r < nr; ++r) mm_tile<1, V>(m, r, col0, K, cols);
}

// Column blocks of up to 16 outer (b's block stays in L1 across the row blocks), rows inner.
inline void mm(const Mm& m, int64_t rows, int64_t cols, int64_t K, MmShape shape) {
  for (int64_t col0 = 0; col0 < cols; col0 += 16) {
    const int64_t V = std::min<int64_t>((cols - col0 + 3) / 4, 4), col1 = col0 + 4 * V;
    const int64_t k = shape == MmShape::kCausal ? std::min(K, col1) : K;
    const int64_t nr = shape == MmShape::kUpper ? std::min(rows, col1) : rows;
    switch (V) {
      case 4: mm_block<4>(m, nr, col0, k, cols); break;
      case 3: mm_block<3>(m, nr, col0, k, cols); break;
      case 2: mm_block<2>(m, nr, col0, k, cols); break;
      default: mm_block<1>(m, nr, col0, k, cols); break;
    }
  }
}

// r[k] = column k of the 4 x 4 block r (rows in, columns out).
inline void transpose4(float32x4_t r[4]) {
  const float32x4_t t0 = vtrn1q_f32(r[0], r[1]), t1 = vtrn2q_f32(r[0], r[1]);
  const float32x4_t t2 = vtrn1q_f32(r[2], r[3]), t3 = vtrn2q_f32(r[2], r[3]);
  auto d = [](float32x4_t v) { return vreinterpretq_f64_f32(v); };
  r[0] = vreinterpretq_f32_f64(vtrn1q_f64(d(t0), d(t2)));
  r[1] = vreinterpretq_f32_f64(vtrn1q_f64(d(t1), d(t3)));
  r[2] = vreinterpretq_f32_f64(vtrn2q_f64(d(t0), d(t2)));
  r[3] = vreinterpretq_f32_f64(vtrn2q_f64(d(t1), d(t3)));
}

// Group g, chunk rows [c0, c0 + q): Ct, Bp, CBt.
inline void group_chunk(const SsdParams& p, int64_t g, int64_t c0, int64_t q, int64_t Q4, float* ct, float* bp,
                        float* cbt) {
  const int64_t N = p.N, N4 = (N + 3) / 4 * 4;
  const float* C = p.C + c0 * p.ldc + g * N;
  const float* B = p.B + c0 * p.ldb + g * N;
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t i = 0; i < q; ++i) ct[n * Q4 + i] = C[i * p.ldc + n];
    for (int64_t i = q; i < Q4; ++i) ct[n * Q4 + i] = 0.0f;
  }
  for (int64_t j = 0; j < q; ++j)
    for (int64_t n = 0; n < N4; n += 4) vst1q_f32(bp + j * N4 + n, load_n(B + j * p.ldb + n, N - n));
  // CBt[j, i] = B_j·C_i: a = B (q, N), b = Ct
  mm({B, p.ldb, 1, ct, Q4, cbt, Q4, 0.0f}, q, Q4, N, MmShape::kUpper);
}

// Head h over chunk rows [c0, c0 + q), given its group's Ct, Bp, CBt.
inline void head_chunk(const SsdParams& p, int64_t h, int64_t c0, int64_t q, int64_t Q4, const float* ct,
                       const float* bp, const float* cbt, SsdScratch& w) {
  const int64_t P = p.P, N = p.N, N4 = (N + 3) / 4 * 4, P4 = (P + 3) / 4 * 4;
  const float* x = p.x + c0 * p.ldx + h * P;  // (q, P), row stride ldx
  float* S = p.state + h * P * N;
  float* tok = grow(w.tok, 5 * (Q4 + 4));
  float *delta = tok, *a = delta + Q4 + 4, *s = a + Q4 + 4, *es = s + Q4 + 4, *wj = es + Q4 + 4;

  // delta_j = clamp(softplus(dt_j + dt_bias)), a_j = delta_j A, zero past q.
  for (int64_t j = 0; j < Q4; ++j) delta[j] = j < q ? p.dt[(c0 + j) * p.lddt + h] + p.dt_bias[h] : 0.0f;
  const float32x4_t lo = vdupq_n_f32(p.dt_min), hi = vdupq_n_f32(p.dt_max);
  for (int64_t j = 0; j < Q4; j += 4) {
    const float32x4_t d = vminq_f32(vmaxq_f32(softplus(vld1q_f32(delta + j)), lo), hi);
    vst1q_f32(delta + j, d);
    vst1q_f32(a + j, vmulq_n_f32(d, p.A[h]));
  }
  for (int64_t j = q; j <= Q4; ++j) delta[j] = a[j] = 0.0f;  // a[Q4] is read (masked off) by the Mt recurrence
  // s_i = a_0 + ... + a_i (carry-in decay); seg(j, q-1) for the state weights.
  float acc = 0.0f;
  for (int64_t i = 0; i < Q4; ++i) s[i] = acc += a[i];
  acc = 0.0f;
  for (int64_t j = q - 1; j >= 0; --j) wj[j] = acc, acc += a[j];
  for (int64_t j = q; j < Q4; ++j) wj[j] = 0.0f;
  for (int64_t j = 0; j < Q4; j += 4) {
    vst1q_f32(es + j, exp(vld1q_f32(s + j)));
    vst1q_f32(wj + j, vmulq_f32(exp(vld1q_f32(wj + j)), vld1q_f32(delta + j)));
  }

  // Mt, one 4-token column block at a time, walking j down from the block's
  // top: seg(j, i) = seg(j+1, i) + a_{j+1} for lanes i > j. Exponents of
  // lanes i < j are set to -inf before exp (never exp a positive sum).
  float* mt = grow(w.mt, q * Q4);
  const float lane_init[4] = {0, 1, 2, 3};
  const float32x4_t lane = vld1q_f32(lane_init), ninf = vdupq_n_f32(-INFINITY);
  for (int64_t i0 = 0; i0 < Q4; i0 += 4) {
    const float32x4_t li = vaddq_f32(lane, vdupq_n_f32(static_cast<float>(i0)));
    for (int64_t j = i0 + 4; j < q; ++j) vst1q_f32(mt + j * Q4 + i0, vdupq_n_f32(0.0f));
    float32x4_t seg = vdupq_n_f32(0.0f);
    for (int64_t j = std::min(i0 + 3, q - 1); j >= 0; --j) {
      const float32x4_t jj = vdupq_n_f32(static_cast<float>(j));
      const uint32x4_t later = vcgtq_f32(li, jj), keep = vcgeq_f32(li, jj);
      seg = vaddq_f32(seg, vreinterpretq_f32_u32(vandq_u32(later, vreinterpretq_u32_f32(vdupq_n_f32(a[j + 1])))));
      const float32x4_t e = exp(vbslq_f32(keep, seg, ninf));
      const float32x4_t m = vmulq_n_f32(vmulq_f32(vld1q_f32(cbt + j * Q4 + i0), e), delta[j]);
      vst1q_f32(mt + j * Q4 + i0, vreinterpretq_f32_u32(vandq_u32(keep, vreinterpretq_u32_f32(m))));
    }
  }

  // Yt = S Ctᵀ (carried state), columns scaled by exp(s_i); Yt += x Mtᵀ (intra-chunk).
  float* yt = grow(w.yt, P4 * Q4);
  mm({S, N, 1, ct, Q4, yt, Q4, 0.0f}, P, Q4, N, MmShape::kFull);
  for (int64_t pp = 0; pp < P; ++pp)
    for (int64_t i = 0; i < Q4; i += 4)
      vst1q_f32(yt + pp * Q4 + i, vmulq_f32(vld1q_f32(yt + pp * Q4 + i), vld1q_f32(es + i)));
  mm({x, 1, p.ldx, mt, Q4, yt, Q4, 1.0f}, P, Q4, q, MmShape::kCausal);

  // y_i = Yt[:, i] + D x_i, transposing Yt back 4 x 4 (rows P..P4 of Yt are
  // read but only into lanes that are never stored).
  for (int64_t p0 = 0; p0 < P; p0 += 4) {
    const int64_t np = P - p0;
    const float32x4_t dv = p.d_per_channel ? load_n(p.D + h * P + p0, np) : vdupq_n_f32(p.D[h]);
    for (int64_t i0 = 0; i0 < q; i0 += 4) {
      float32x4_t r[4];
      for (int k = 0; k < 4; ++k) r[k] = vld1q_f32(yt + (p0 + k) * Q4 + i0);
      transpose4(r);
      for (int64_t k = 0; k < 4 && i0 + k < q; ++k) {
        const int64_t i = i0 + k;
        store_n(p.y + (c0 + i) * p.ldy + h * P + p0, vfmaq_f32(r[k], dv, load_n(x + i * p.ldx + p0, np)), np);
      }
    }
  }

  // S = exp(s_{q-1}) S + Xwᵀ Bp
  float* xw = grow(w.xw, q * P);
  for (int64_t j = 0; j < q; ++j)
    for (int64_t p0 = 0; p0 < P; p0 += 4)
      store_n(xw + j * P + p0, vmulq_n_f32(load_n(x + j * p.ldx + p0, P - p0), wj[j]), P - p0);
  mm({xw, 1, P, bp, N4, S, N, std::exp(s[q - 1])}, P, N, q, MmShape::kFull);
}

}  // namespace

void ssd_prefill(const SsdParams& p, int64_t h0, int64_t h1) {
  ssd_blocks::walk_chunks<4>(p, h0, h1, group_chunk, head_chunk);
}

}  // namespace neon
}  // namespace mambart

#endif  // __aarch64__
