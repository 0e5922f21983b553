// Mamba-2 SSD, prefill (chunked) and step. See kernels/ssd.h.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/elementwise.h"
#include "kernels/ssd.h"

namespace mambart {
namespace scalar {

static float dot(const float* a, const float* b, int64_t n) {
  float acc = 0.0f;
  for (int64_t i = 0; i < n; ++i) acc += a[i] * b[i];
  return acc;
}

void ssd_prefill(const SsdParams& p, int64_t h0, int64_t h1) {
  const int64_t P = p.P, N = p.N, heads_per_group = p.H / p.G;
  std::vector<float> delta(static_cast<size_t>(p.chunk)), a(static_cast<size_t>(p.chunk)),
      s(static_cast<size_t>(p.chunk));
  for (int64_t h = h0; h < h1; ++h) {
    const int64_t g = h / heads_per_group;
    float* S = p.state + h * P * N;  // (P, N)
    for (int64_t c0 = 0; c0 < p.seqlen; c0 += p.chunk) {
      const int64_t q = std::min(p.chunk, p.seqlen - c0);
      auto X = [&](int64_t i) { return p.x + (c0 + i) * p.ldx + h * P; };
      auto Bm = [&](int64_t i) { return p.B + (c0 + i) * p.ldb + g * N; };
      auto Cm = [&](int64_t i) { return p.C + (c0 + i) * p.ldc + g * N; };

      // delta_i, a_i = delta_i A, and s_i = sum_{j<=i} a_j: the chunk's cumulative log-decay.
      for (int64_t i = 0; i < q; ++i) {
        const float d = softplus_ref(p.dt[(c0 + i) * p.lddt + h] + p.dt_bias[h]);
        delta[i] = std::min(std::max(d, p.dt_min), p.dt_max);
        a[i] = delta[i] * p.A[h];
        s[i] = (i ? s[i - 1] : 0.0f) + a[i];
      }

      // y_i = sum_{j<=i} (C_i·B_j) exp(s_i - s_j) delta_j x_j      (intra-chunk)
      //     + exp(s_i) S C_i                                      (carried state)
      //     + D x_i
      // s_i - s_j is summed as a_i + ... + a_{j+1} (the reference's segsum): subtracting two
      // cumulative sums loses the small difference once one token has made s large
      // (delta |A| = 1e4 early in a chunk: 2.5e-4 relative error in y).
      for (int64_t i = 0; i < q; ++i) {
        float* y = p.y + (c0 + i) * p.ldy + h * P;
        const float carry = std::exp(s[i]);
        for (int64_t pp = 0; pp < P; ++pp) y[pp] = carry * dot(S + pp * N, Cm(i), N);
        float seg = 0.0f;  // s_i - s_j
        for (int64_t j = i; j >= 0; seg += a[j], --j) {
          const float w = dot(Cm(i), Bm(j), N) * std::exp(seg) * delta[j];
          for (int64_t pp = 0; pp < P; ++pp) y[pp] += w * X(j)[pp];
        }
        for (int64_t pp = 0; pp < P; ++pp) y[pp] += (p.d_per_channel ? p.D[h * P + pp] : p.D[h]) * X(i)[pp];
      }

      // S = exp(s_last) S + sum_j exp(s_last - s_j) delta_j x_j B_jᵀ
      const float decay = std::exp(s[q - 1]);
      for (int64_t k = 0; k < P * N; ++k) S[k] *= decay;
      float seg = 0.0f;  // s_last - s_j, summed as above
      for (int64_t j = q - 1; j >= 0; seg += a[j], --j) {
        const float w = std::exp(seg) * delta[j];
        for (int64_t pp = 0; pp < P; ++pp)
          for (int64_t n = 0; n < N; ++n) S[pp * N + n] += w * X(j)[pp] * Bm(j)[n];
      }
    }
  }
}

void ssd_step(const SsdParams& p, int64_t h0, int64_t h1) {
  const int64_t P = p.P, N = p.N, heads_per_group = p.H / p.G;
  for (int64_t b = 0; b < p.batch; ++b) {
    for (int64_t h = h0; h < h1; ++h) {
      const int64_t g = h / heads_per_group;
      const float delta = softplus_ref(p.dt[b * p.lddt + h] + p.dt_bias[h]);
      const float decay = std::exp(delta * p.A[h]);
      const float* x = p.x + b * p.ldx + h * P;
      const float* B = p.B + b * p.ldb + g * N;
      const float* C = p.C + b * p.ldc + g * N;
      float* S = p.state + (b * p.H + h) * P * N;
      float* y = p.y + b * p.ldy + h * P;
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
  }
}

}  // namespace scalar
}  // namespace mambart

#include "cpu/simd_math.h"
#include "cpu/ssd_blocks.h"

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

// delta = softplus(dt + dt_bias) (not clamped: reference doc 3.1 step 4)
// and decay = exp(delta A) for heads [h, h + nh), nh <= 8, of token row r.
inline void head_decays(const SsdParams& p, int64_t r, int64_t h, int64_t nh, float* delta, float* decay) {
  const __m256 d = softplus(_mm256_add_ps(load_n(p.dt + r * p.lddt + h, nh), load_n(p.dt_bias + h, nh)));
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

// Batch row b, head h: S (P, N) advanced by one token, y (P) = C·S + D x.
inline void step_head(const SsdParams& p, int64_t b, int64_t h, float delta, float decay) {
  const int64_t P = p.P, N = p.N, g = h / (p.H / p.G);
  const float* x = p.x + b * p.ldx + h * P;
  const float* B = p.B + b * p.ldb + g * N;
  const float* C = p.C + b * p.ldc + g * N;
  float* S = p.state + (b * p.H + h) * P * N;
  float* y = p.y + b * p.ldy + h * P;
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
      head_decays(p, b, h, nh, delta, decay);
      for (int64_t i = 0; i < nh; ++i) step_head(p, b, h + i, delta[i], decay[i]);
    }
}

// ---------------------------------------------------------------- prefill
//
// The block form of reference doc 3.3, per group g, chunk of q tokens and
// head h of g, with Q8 = q rounded up to 8 and segments
// seg(j, i) = a_{j+1} + ... + a_i (a_t = delta_t A) summed directly, never
// as a difference of cumulative sums (see the scalar kernel):
//
//   per group and chunk (shared by the group's heads):
//     Ct  (N, Q8)   C of the chunk, transposed, zero past q
//     Bp  (q, N8)   B of the chunk, rows zero-padded to N8
//     CBt (Q8, Q8)  CBt[j, i] = B_j·C_i, for i >= j
//   per head:
//     Mt  (q, Q8)   Mt[j, i] = CBt[j, i] exp(seg(j, i)) delta_j for j <= i, else 0
//     Yt  (P8, Q8)  Yt[p, i] = exp(s_i) (S C_i)[p] + sum_j Mt[j, i] x_j[p]
//     Xw  (q, P)    Xw[j] = exp(seg(j, q-1)) delta_j x_j
//     y_i = Yt[:, i] + D x_i;   S = exp(s_{q-1}) S + Xwᵀ Bp
//
// All three products (S Ctᵀ, x Mtᵀ, Xwᵀ Bp) and CBt run through one
// register-tiled kernel (mm below) vectorised over the output's columns,
// which is why Yt is kept transposed: its columns are tokens, and the
// state S is used in its stored (P, N) layout without a copy. The per-token
// exp work is O(q) per head plus one vector exp per (j, 8 i) for Mt.
//
// Measured on one core, H = 24, P = 64, N = 128, G = 1, L = 512: chunk 64
// 5.8 ms (~88k tokens/s), 10-14x the scalar kernel; ~80% of the time is in
// mm_tile<4, 2>, near two FMAs per cycle. The S Ctᵀ and Xwᵀ Bp products
// cost P N per token whatever the chunk, x Mtᵀ grows with q: chunk 32 is
// ~5% faster than 64, 16 and below slower (per-chunk overheads), 256 1.7x
// slower. 4 x 3 and 6 x 2 tiles (12 accumulators) were slower than 4 x 2.

using ssd_blocks::grow;
using ssd_blocks::Mm;
using ssd_blocks::MmShape;
using ssd_blocks::SsdScratch;

// Rows [r0, r0 + R) x columns [col0, col0 + 8V) of c, summing k < K: R x V
// accumulators stay in registers (4 x 2 = 8: 2 b loads + 4 broadcasts per 8 FMAs).
template <int R, int V>
inline void mm_tile(const Mm& m, int64_t r0, int64_t col0, int64_t K, int64_t cols) {
  __m256 acc[R][V];
  const __m256 beta = _mm256_set1_ps(m.beta);
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < V; ++v)
      acc[r][v] = m.beta == 0.0f ? _mm256_setzero_ps()
                                 : _mm256_mul_ps(beta, load_n(m.c + (r0 + r) * m.ldc + col0 + 8 * v,
                                                              cols - col0 - 8 * v));
  const float* a = m.a + r0 * m.ars;
  const float* b = m.b + col0;
  for (int64_t k = 0; k < K; ++k, a += m.aks, b += m.ldb) {
    __m256 bv[V];
    for (int v = 0; v < V; ++v) bv[v] = _mm256_loadu_ps(b + 8 * v);
    for (int r = 0; r < R; ++r) {
      const __m256 av = _mm256_broadcast_ss(a + r * m.ars);
      for (int v = 0; v < V; ++v) acc[r][v] = _mm256_fmadd_ps(av, bv[v], acc[r][v]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < V; ++v) store_n(m.c + (r0 + r) * m.ldc + col0 + 8 * v, acc[r][v], cols - col0 - 8 * v);
}

// Column blocks of 16 outer (b's block stays in L1 across the row blocks), row blocks of 4 inner.
inline void mm(const Mm& m, int64_t rows, int64_t cols, int64_t K, MmShape shape) {
  for (int64_t col0 = 0; col0 < cols; col0 += 16) {
    const bool two = cols - col0 > 8;
    const int64_t col1 = col0 + (two ? 16 : 8);
    const int64_t k = shape == MmShape::kCausal ? std::min(K, col1) : K;
    const int64_t nr = shape == MmShape::kUpper ? std::min(rows, col1) : rows;
    int64_t r = 0;
    for (; r + 4 <= nr; r += 4) two ? mm_tile<4, 2>(m, r, col0, k, cols) : mm_tile<4, 1>(m, r, col0, k, cols);
    for (; r < nr; ++r) two ? mm_tile<1, 2>(m, r, col0, k, cols) : mm_tile<1, 1>(m, r, col0, k, cols);
  }
}

// Group g, chunk rows [c0, c0 + q): Ct, Bp, CBt.
inline void group_chunk(const SsdParams& p, int64_t g, int64_t c0, int64_t q, int64_t Q8, float* ct,
                        float* bp, float* cbt) {
  const int64_t N = p.N, N8 = (N + 7) / 8 * 8;
  const float* C = p.C + c0 * p.ldc + g * N;
  const float* B = p.B + c0 * p.ldb + g * N;
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t i = 0; i < q; ++i) ct[n * Q8 + i] = C[i * p.ldc + n];
    for (int64_t i = q; i < Q8; ++i) ct[n * Q8 + i] = 0.0f;
  }
  for (int64_t j = 0; j < q; ++j)
    for (int64_t n = 0; n < N8; n += 8) store_n(bp + j * N8 + n, load_n(B + j * p.ldb + n, N - n), 8);
  // CBt[j, i] = B_j·C_i: a = B (q, N), b = Ct
  mm({B, p.ldb, 1, ct, Q8, cbt, Q8, 0.0f}, q, Q8, N, MmShape::kUpper);
}

// Head h over chunk rows [c0, c0 + q), given its group's Ct, Bp, CBt.
inline void head_chunk(const SsdParams& p, int64_t h, int64_t c0, int64_t q, int64_t Q8, const float* ct,
                       const float* bp, const float* cbt, SsdScratch& w) {
  const int64_t P = p.P, N = p.N, N8 = (N + 7) / 8 * 8, P8 = (P + 7) / 8 * 8;
  const float* x = p.x + c0 * p.ldx + h * P;  // (q, P), row stride ldx
  float* S = p.state + h * P * N;
  float* tok = grow(w.tok, 5 * (Q8 + 8));
  float *delta = tok, *a = delta + Q8 + 8, *s = a + Q8 + 8, *es = s + Q8 + 8, *wj = es + Q8 + 8;

  // delta_j = clamp(softplus(dt_j + dt_bias)), a_j = delta_j A, zero past q.
  for (int64_t j = 0; j < Q8; ++j) delta[j] = j < q ? p.dt[(c0 + j) * p.lddt + h] + p.dt_bias[h] : 0.0f;
  const __m256 lo = _mm256_set1_ps(p.dt_min), hi = _mm256_set1_ps(p.dt_max), A = _mm256_set1_ps(p.A[h]);
  for (int64_t j = 0; j < Q8; j += 8) {
    __m256 d = _mm256_min_ps(_mm256_max_ps(softplus(_mm256_loadu_ps(delta + j)), lo), hi);
    d = _mm256_and_ps(d, _mm256_castsi256_ps(tail_mask(std::min<int64_t>(q - j, 8))));
    _mm256_storeu_ps(delta + j, d);
    _mm256_storeu_ps(a + j, _mm256_mul_ps(d, A));
  }
  a[Q8] = 0.0f;  // read (masked off) by the Mt recurrence
  // s_i = a_0 + ... + a_i (carry-in decay); seg(j, q-1) for the state weights.
  float acc = 0.0f;
  for (int64_t i = 0; i < Q8; ++i) s[i] = acc += a[i];
  acc = 0.0f;
  for (int64_t j = q - 1; j >= 0; --j) wj[j] = acc, acc += a[j];
  for (int64_t j = q; j < Q8; ++j) wj[j] = 0.0f;
  for (int64_t j = 0; j < Q8; j += 8) {
    _mm256_storeu_ps(es + j, exp(_mm256_loadu_ps(s + j)));
    _mm256_storeu_ps(wj + j, _mm256_mul_ps(exp(_mm256_loadu_ps(wj + j)), _mm256_loadu_ps(delta + j)));
  }

  // Mt, one 8-token column block at a time, walking j down from the block's
  // top: seg(j, i) = seg(j+1, i) + a_{j+1} for lanes i > j. Exponents of
  // lanes i < j are set to -inf before exp (doc 3.3: never exp a positive sum).
  float* mt = grow(w.mt, q * Q8);
  const __m256 lane = _mm256_setr_ps(0, 1, 2, 3, 4, 5, 6, 7), ninf = _mm256_set1_ps(-INFINITY);
  for (int64_t i0 = 0; i0 < Q8; i0 += 8) {
    const __m256 li = _mm256_add_ps(lane, _mm256_set1_ps(static_cast<float>(i0)));
    for (int64_t j = i0 + 8; j < q; ++j) _mm256_storeu_ps(mt + j * Q8 + i0, _mm256_setzero_ps());
    __m256 seg = _mm256_setzero_ps();
    for (int64_t j = std::min(i0 + 7, q - 1); j >= 0; --j) {
      const __m256 jj = _mm256_set1_ps(static_cast<float>(j));
      seg = _mm256_add_ps(seg, _mm256_and_ps(_mm256_cmp_ps(li, jj, _CMP_GT_OQ), _mm256_set1_ps(a[j + 1])));
      const __m256 keep = _mm256_cmp_ps(li, jj, _CMP_GE_OQ);
      const __m256 e = exp(_mm256_blendv_ps(ninf, seg, keep));
      const __m256 m = _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(cbt + j * Q8 + i0), e), _mm256_set1_ps(delta[j]));
      _mm256_storeu_ps(mt + j * Q8 + i0, _mm256_and_ps(keep, m));
    }
  }

  // Yt = S Ctᵀ (carried state), columns scaled by exp(s_i); Yt += x Mtᵀ (intra-chunk).
  float* yt = grow(w.yt, P8 * Q8);
  mm({S, N, 1, ct, Q8, yt, Q8, 0.0f}, P, Q8, N, MmShape::kFull);
  for (int64_t pp = 0; pp < P; ++pp)
    for (int64_t i = 0; i < Q8; i += 8)
      _mm256_storeu_ps(yt + pp * Q8 + i, _mm256_mul_ps(_mm256_loadu_ps(yt + pp * Q8 + i), _mm256_loadu_ps(es + i)));
  mm({x, 1, p.ldx, mt, Q8, yt, Q8, 1.0f}, P, Q8, q, MmShape::kCausal);

  // y_i = Yt[:, i] + D x_i, transposing Yt back 8 x 8 (rows P..P8 of Yt are
  // read but only their lanes' garbage, never stored).
  for (int64_t p0 = 0; p0 < P; p0 += 8) {
    const int64_t np = P - p0;
    const __m256 dv = p.d_per_channel ? load_n(p.D + h * P + p0, np) : _mm256_set1_ps(p.D[h]);
    for (int64_t i0 = 0; i0 < q; i0 += 8) {
      __m256 r[8];
      for (int k = 0; k < 8; ++k) r[k] = _mm256_loadu_ps(yt + (p0 + k) * Q8 + i0);
      transpose8(r);
      for (int64_t k = 0; k < 8 && i0 + k < q; ++k) {
        const int64_t i = i0 + k;
        store_n(p.y + (c0 + i) * p.ldy + h * P + p0, _mm256_fmadd_ps(dv, load_n(x + i * p.ldx + p0, np), r[k]), np);
      }
    }
  }

  // S = exp(s_{q-1}) S + Xwᵀ Bp
  float* xw = grow(w.xw, q * P);
  for (int64_t j = 0; j < q; ++j) {
    const __m256 wv = _mm256_set1_ps(wj[j]);
    for (int64_t p0 = 0; p0 < P; p0 += 8)
      store_n(xw + j * P + p0, _mm256_mul_ps(wv, load_n(x + j * p.ldx + p0, P - p0)), P - p0);
  }
  mm({xw, 1, P, bp, N8, S, N, std::exp(s[q - 1])}, P, N, q, MmShape::kFull);
}

void ssd_prefill(const SsdParams& p, int64_t h0, int64_t h1) {
  ssd_blocks::walk_chunks<8>(p, h0, h1, group_chunk, head_chunk);
}

}  // namespace avx2
}  // namespace mambart

MAMBART_AVX2_END
#endif  // x86-64
