// Attention-layer kernels. See kernels/attention.h.
// GCC 12 warns of -Wmaybe-uninitialized, and inlined into the two-row
// scores of -Wuninitialized, inside its own avx512fintrin.h (the
// _mm512_undefined_* operands of the avx512 kernel's 256-bit extracts); the
// location is the header's, so the pragma must precede the include (as in
// cpu/matmul_avx512.cpp).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include "kernels/attention.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace mambart {
namespace {

// Every ISA's attention: items [i0, i1) of the rows x Hq (row, head) pairs,
// row-major, walked head by head in tiles of up to kAttentionTile
// consecutive rows. Each block of keys goes to every row of the tile before
// the next block, so the rows of one sequence (a prefill) read it from L1
// once per tile rather than from the cache once per row: a 2048-token
// prefill's attention streamed ~1 MB of keys and values per (row, head).
// Within a block, all the tile's rows are weighed (their keys in L1), then
// all take their sums of values (the values in L1): a block's keys and
// values together (64 KB at d = 128) outgrow L1. Row (one per ISA) holds
// the arithmetic on one row and block:
//   Row::weigh(q, K, kv_ld, d, nb, scale, m, l, s): returns the factor c of
//     the online softmax of one query over keys [0, nb) of K (rows kv_ld
//     floats apart): running max m and sum l updated, s[j] the keys' weights;
//   Row::add(s, V, kv_ld, d, nb, c, acc): acc = c acc + sum_j s[j] V[j]
//     (acc: d floats, zero at the start);
//   Row::scale(acc, d, c): acc *= c, the final 1 / l;
//   with Row::kScoreFours, Row::weigh4, and with Row::kFours, Row::add4:
//     weigh and add for four rows over one whole block, the same bits as one at a time.
// Per-thread scratch for a block's keys and values, grown on first use and kept.
inline float* block_copy(int64_t floats) {
  thread_local std::vector<float> buf;
  if (static_cast<int64_t>(buf.size()) < floats) buf.resize(static_cast<size_t>(floats));
  return buf.data();
}

template <class Row>
void attention_tiles(const AttentionParams& p, int64_t i0, int64_t i1) {
  const int64_t H = p.n_heads, d = p.head_dim, group = H / p.n_kv_heads, kv_ld = p.n_kv_heads * d;
  for (int64_t h = 0; h < H; ++h) {
    // The rows r whose item r * H + h lies in [i0, i1).
    const int64_t ra = i0 <= h ? 0 : (i0 - h + H - 1) / H, rb = i1 <= h ? 0 : (i1 - h + H - 1) / H;
    const int64_t g = h / group;
    for (int64_t t0 = ra; t0 < rb; t0 += kAttentionTile) {
      const int64_t t1 = std::min(rb, t0 + kAttentionTile);
      float m[kAttentionTile], l[kAttentionTile], c[kAttentionTile];
      alignas(64) float s[kAttentionTile][kAttentionBlock];
      int64_t longest = 0;
      for (int64_t r = t0; r < t1; ++r) {
        std::fill(p.out + r * p.ldo + h * d, p.out + r * p.ldo + (h + 1) * d, 0.0f);
        m[r - t0] = -INFINITY, l[r - t0] = 0.0f;
        longest = std::max(longest, p.len[r]);
      }
      // The rows of one sequence (a prefill's) read each block from a copy,
      // its keys d floats apart: in the cache they are kv_ld apart, which
      // for many KV heads is a multiple of 4 KB, and the keys of a block
      // fell into a few L1 sets (MHA with 16 heads of 128: 2.8x slower, avx2).
      bool shared = t1 - t0 > 1;
      for (int64_t r = t0 + 1; r < t1; ++r) shared = shared && p.k[r] == p.k[t0] && p.v[r] == p.v[t0];
      float* kb = shared ? block_copy(2 * kAttentionBlock * d) : nullptr;
      for (int64_t j0 = 0; j0 < longest; j0 += kAttentionBlock) {
        if (shared) {
          const float* K = p.k[t0] + j0 * kv_ld + g * d;
          const float* V = p.v[t0] + j0 * kv_ld + g * d;
          for (int64_t j = 0; j < std::min(kAttentionBlock, longest - j0); ++j) {
            std::copy(K + j * kv_ld, K + j * kv_ld + d, kb + j * d);
            std::copy(V + j * kv_ld, V + j * kv_ld + d, kb + (kAttentionBlock + j) * d);
          }
        }
        const int64_t ld = shared ? d : kv_ld;
        auto keys = [&](int64_t r) { return shared ? kb : p.k[r] + j0 * kv_ld + g * d; };
        auto values = [&](int64_t r) { return shared ? kb + kAttentionBlock * d : p.v[r] + j0 * kv_ld + g * d; };
        auto query = [&](int64_t r) { return p.q + r * p.ldq + h * d; };
        auto output = [&](int64_t r) { return p.out + r * p.ldo + h * d; };
        // Rows r..r+3 of one sequence, each over this whole block: the four-row kernels' case.
        auto whole_four = [&](int64_t r) {
          return shared && r + 4 <= t1 &&
                 std::min({p.len[r], p.len[r + 1], p.len[r + 2], p.len[r + 3]}) - j0 >= kAttentionBlock;
        };
        for (int64_t r = t0; r < t1; ++r) {
          if (j0 >= p.len[r]) continue;
          const int64_t nb = std::min(kAttentionBlock, p.len[r] - j0), i = r - t0;
          if constexpr (Row::kScoreFours) {
            if (whole_four(r)) {
              const float* q[4] = {query(r), query(r + 1), query(r + 2), query(r + 3)};
              float* const sr[4] = {s[i], s[i + 1], s[i + 2], s[i + 3]};
              Row::weigh4(q, keys(r), ld, d, p.scale, m + i, l + i, sr, c + i);
              r += 3;
              continue;
            }
          }
          c[i] = Row::weigh(query(r), keys(r), ld, d, nb, p.scale, m[i], l[i], s[i]);
        }
        for (int64_t r = t0; r < t1; ++r) {
          if (j0 >= p.len[r]) continue;
          const int64_t i = r - t0;
          if constexpr (Row::kFours) {
            if (whole_four(r)) {
              const float* const sr[4] = {s[i], s[i + 1], s[i + 2], s[i + 3]};
              float* const out[4] = {output(r), output(r + 1), output(r + 2), output(r + 3)};
              Row::add4(sr, values(r), ld, d, c + i, out);
              r += 3;
              continue;
            }
          }
          Row::add(s[i], values(r), ld, d, std::min(kAttentionBlock, p.len[r] - j0), c[i], output(r));
        }
      }
      for (int64_t r = t0; r < t1; ++r) Row::scale(p.out + r * p.ldo + h * d, d, 1.0f / l[r - t0]);
    }
  }
}

}  // namespace

namespace scalar {

// A block of scores, the online-softmax update of m and l, then of acc.
struct Row {
  static constexpr bool kScoreFours = false, kFours = false;
  static float weigh(const float* q, const float* K, int64_t kv_ld, int64_t d, int64_t nb, float scale, float& m,
                     float& l, float* s) {
    float bmax = -INFINITY;
    for (int64_t j = 0; j < nb; ++j) {
      const float* k = K + j * kv_ld;
      float dot = 0.0f;
      for (int64_t i = 0; i < d; ++i) dot += q[i] * k[i];
      s[j] = dot * scale;
      bmax = std::max(bmax, s[j]);
    }
    const float m_new = std::max(m, bmax), rescale = std::exp(m - m_new);
    l *= rescale;
    for (int64_t j = 0; j < nb; ++j) {
      s[j] = std::exp(s[j] - m_new);
      l += s[j];
    }
    m = m_new;
    return rescale;
  }
  static void add(const float* s, const float* V, int64_t kv_ld, int64_t d, int64_t nb, float rescale, float* acc) {
    for (int64_t i = 0; i < d; ++i) acc[i] *= rescale;
    for (int64_t j = 0; j < nb; ++j) {
      const float* v = V + j * kv_ld;
      for (int64_t i = 0; i < d; ++i) acc[i] += s[j] * v[i];
    }
  }
  static void scale(float* acc, int64_t d, float c) {
    for (int64_t i = 0; i < d; ++i) acc[i] *= c;
  }
};

void attention(const AttentionParams& p, int64_t i0, int64_t i1) { attention_tiles<Row>(p, i0, i1); }

void rope(const RopeParams& p, int64_t r0, int64_t r1) {
  const int64_t half = p.rot / 2;
  for (int64_t r = r0; r < r1; ++r) {
    const float pos = static_cast<float>(p.pos[r]);
    for (int64_t i = 0; i < half; ++i) {
      const float angle = pos * p.inv_freq[i], c = std::cos(angle) * p.scale, s = std::sin(angle) * p.scale;
      for (int64_t h = 0; h < p.n_heads; ++h) {
        float* x = p.x + r * p.ldx + h * p.head_dim;
        const float a = x[i], b = x[i + half];
        x[i] = a * c - b * s;
        x[i + half] = b * c + a * s;
      }
    }
  }
}

void relu_sq(const ElementwiseParams& p, int64_t i0, int64_t i1) {
  for (int64_t i = i0; i < i1; ++i) {
    const float v = std::max(p.x[i], 0.0f);
    p.y[i] = v * v;
  }
}

}  // namespace scalar
}  // namespace mambart

#include "cpu/simd_math.h"

#if defined(__x86_64__) || defined(_M_X64)
MAMBART_AVX2_BEGIN

namespace mambart {
namespace avx2 {

// The SIMD kernels walk the keys as the scalar one does, in blocks of
// kAttentionBlock with the same online softmax, but (1) score 8 keys at once
// in 8 independent FMA chains reduced together (hsum8), where one chain per
// key stalled on its own latency; (2) take exp over 8 scores at a time; (3)
// add a block's weighted values into one register per slice of the head,
// loading each value once, where the accumulator went through memory per
// key. With the tiles (attention_tiles), a 2048-token prefill of a
// Granite-4.0-H-shaped model (d_model 1024, 8 query / 2 KV heads of 128)
// went from 245 to 298 tokens/s (avx512, 2 threads, a loaded machine).

// s[j] = scale * q . K[j], j < nb (K's rows kv_ld apart).
inline void scores(const float* q, const float* K, int64_t kv_ld, int64_t d, int64_t nb, float scale, float* s) {
  const __m256 sc = _mm256_set1_ps(scale);
  const __m256i tail = tail_mask(d % 8);
  const int64_t dv = d / 8 * 8;
  int64_t j = 0;
  for (; j + 8 <= nb; j += 8) {
    __m256 acc[8];
    for (int u = 0; u < 8; ++u) acc[u] = _mm256_setzero_ps();
    for (int64_t i = 0; i < dv; i += 8) {
      const __m256 qv = _mm256_loadu_ps(q + i);
      for (int u = 0; u < 8; ++u) acc[u] = _mm256_fmadd_ps(qv, _mm256_loadu_ps(K + (j + u) * kv_ld + i), acc[u]);
    }
    if (dv < d) {
      const __m256 qv = _mm256_maskload_ps(q + dv, tail);
      for (int u = 0; u < 8; ++u)
        acc[u] = _mm256_fmadd_ps(qv, _mm256_maskload_ps(K + (j + u) * kv_ld + dv, tail), acc[u]);
    }
    _mm256_storeu_ps(s + j, _mm256_mul_ps(hsum8(acc), sc));
  }
  for (; j < nb; ++j) {
    __m256 dot = _mm256_setzero_ps();
    for (int64_t i = 0; i < d; i += 8) dot = _mm256_fmadd_ps(load_n(q + i, d - i), load_n(K + j * kv_ld + i, d - i), dot);
    s[j] = hsum(dot) * scale;
  }
}

// The online softmax over a block's scores s[0, nb): the new max m, the
// sum l rescaled and grown, s[j] <- exp(s[j] - m); returns the factor
// exp(m_old - m) by which the accumulator must be rescaled.
inline float online_softmax(float* s, int64_t nb, float& m, float& l) {
  // The max 8 lanes at a time (a NaN score is skipped, as std::max skips it).
  __m256 vmax = _mm256_set1_ps(-INFINITY);
  int64_t j8 = 0;
  for (; j8 + 8 <= nb; j8 += 8) vmax = _mm256_max_ps(_mm256_loadu_ps(s + j8), vmax);
  alignas(32) float lanes8[8];
  _mm256_store_ps(lanes8, vmax);
  float bmax = -INFINITY;
  for (float v : lanes8) bmax = std::max(bmax, v);
  for (; j8 < nb; ++j8) bmax = std::max(bmax, s[j8]);
  const float m_new = std::max(m, bmax), rescale = std::exp(m - m_new);
  const __m256 mv = _mm256_set1_ps(m_new);
  __m256 sum = _mm256_setzero_ps();
  for (int64_t j = 0; j < nb; j += 8) {
    const __m256 w = exp(_mm256_sub_ps(load_n(s + j, nb - j), mv));
    const __m256 valid = _mm256_castsi256_ps(tail_mask(std::min<int64_t>(8, nb - j)));
    sum = _mm256_add_ps(sum, _mm256_and_ps(w, valid));
    store_n(s + j, w, nb - j);
  }
  l = l * rescale + hsum(sum);
  m = m_new;
  return rescale;
}

struct Row {
  static constexpr bool kScoreFours = false, kFours = true;
  static float weigh(const float* q, const float* K, int64_t kv_ld, int64_t d, int64_t nb, float scale, float& m,
                     float& l, float* s) {
    scores(q, K, kv_ld, d, nb, scale, s);
    return online_softmax(s, nb, m, l);
  }
  // add for 4 rows over one whole block of values, 16 dims at a time: each
  // value slice loaded feeds 4 FMAs, where add loaded a weight and a value per
  // FMA. Each row's sums run in key order as alone: the same bits.
  static void add4(const float* const s[4], const float* V, int64_t kv_ld, int64_t d, const float* rescale,
                   float* const acc[4]) {
    for (int64_t i = 0; i < d; i += 16) {
      const int64_t n[2] = {std::min<int64_t>(8, d - i), std::max<int64_t>(0, std::min<int64_t>(8, d - i - 8))};
      __m256 a[4][2];
      for (int r = 0; r < 4; ++r)
        for (int u = 0; u < 2; ++u)
          a[r][u] = _mm256_mul_ps(load_n(acc[r] + i + 8 * u, n[u]), _mm256_set1_ps(rescale[r]));
      for (int64_t j = 0; j < kAttentionBlock; ++j) {
        const __m256 v[2] = {load_n(V + j * kv_ld + i, n[0]), load_n(V + j * kv_ld + i + 8, n[1])};
        for (int r = 0; r < 4; ++r) {
          const __m256 w = _mm256_set1_ps(s[r][j]);
          for (int u = 0; u < 2; ++u) a[r][u] = _mm256_fmadd_ps(w, v[u], a[r][u]);
        }
      }
      for (int r = 0; r < 4; ++r)
        for (int u = 0; u < 2; ++u) store_n(acc[r] + i + 8 * u, a[r][u], n[u]);
    }
  }
  static void add(const float* s, const float* V, int64_t kv_ld, int64_t d, int64_t nb, float rescale, float* acc) {
    const __m256 rv = _mm256_set1_ps(rescale);
    for (int64_t i = 0; i < d; i += 8) {  // acc = rescale * acc + sum_j w_j v_j, 8 dims at a time
      const int64_t n = d - i;
      __m256 a = _mm256_mul_ps(load_n(acc + i, n), rv);
      if (n >= 8)
        for (int64_t j = 0; j < nb; ++j) a = _mm256_fmadd_ps(_mm256_set1_ps(s[j]), _mm256_loadu_ps(V + j * kv_ld + i), a);
      else
        for (int64_t j = 0; j < nb; ++j) a = _mm256_fmadd_ps(_mm256_set1_ps(s[j]), load_n(V + j * kv_ld + i, n), a);
      store_n(acc + i, a, n);
    }
  }
  static void scale(float* acc, int64_t d, float c) {
    const __m256 cv = _mm256_set1_ps(c);
    for (int64_t i = 0; i < d; i += 8) store_n(acc + i, _mm256_mul_ps(load_n(acc + i, d - i), cv), d - i);
  }
};

void attention(const AttentionParams& p, int64_t i0, int64_t i1) { attention_tiles<Row>(p, i0, i1); }

void relu_sq(const ElementwiseParams& p, int64_t i0, int64_t i1) {
  const __m256 zero = _mm256_setzero_ps();
  for (int64_t i = i0; i < i1; i += 8) {
    const __m256 v = _mm256_max_ps(load_n(p.x + i, i1 - i), zero);
    store_n(p.y + i, _mm256_mul_ps(v, v), i1 - i);
  }
}

}  // namespace avx2
}  // namespace mambart

MAMBART_AVX2_END

MAMBART_AVX512_BEGIN

namespace mambart {
namespace avx512 {

// The avx2 kernel with the head's dims 16 at a time: the dot products and
// the value sums take half the instructions. Scores and weights stay 8-wide
// (avx2's helpers): per key they are a few operations, the head's d many.

inline __mmask16 lanes(int64_t n) { return n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << n) - 1); }

// The two 256-bit halves of v added: 8 partial sums of its 16 lanes.
inline __m256 fold(__m512 v) {
  return _mm256_add_ps(_mm512_castps512_ps256(v), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
}

// s[j] = scale * q . K[j], 8 keys at a time (8 accumulators of 16 dims,
// summed by one hsum8), the rest one at a time.
inline void scores(const float* q, const float* K, int64_t kv_ld, int64_t d, int64_t nb, float scale, float* s) {
  const __m256 sc = _mm256_set1_ps(scale);
  int64_t j = 0;
  for (; j + 8 <= nb; j += 8) {
    __m512 acc[8];
    for (int u = 0; u < 8; ++u) acc[u] = _mm512_setzero_ps();
    for (int64_t i = 0; i < d; i += 16) {
      const __mmask16 m = lanes(d - i);
      const __m512 qv = _mm512_maskz_loadu_ps(m, q + i);
      for (int u = 0; u < 8; ++u)
        acc[u] = _mm512_fmadd_ps(qv, _mm512_maskz_loadu_ps(m, K + (j + u) * kv_ld + i), acc[u]);
    }
    __m256 half[8];
    for (int u = 0; u < 8; ++u) half[u] = fold(acc[u]);
    _mm256_storeu_ps(s + j, _mm256_mul_ps(avx2::hsum8(half), sc));
  }
  for (; j < nb; ++j) {
    __m512 dot = _mm512_setzero_ps();
    for (int64_t i = 0; i < d; i += 16) {
      const __mmask16 m = lanes(d - i);
      dot = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, q + i), _mm512_maskz_loadu_ps(m, K + j * kv_ld + i), dot);
    }
    s[j] = avx2::hsum(fold(dot)) * scale;
  }
}

// scores' for 4 rows over one whole block, 4 keys at a time (16
// accumulators): each key slice loaded feeds 4 rows and each row's slice 4
// keys. hsum8 sums each key's lanes on their own, so 4 keys through it (the
// other 4 inputs zero) give each row the bits of scores' groups of 8.
inline void scores4(const float* const q[4], const float* K, int64_t kv_ld, int64_t d, float scale,
                    float* const s[4]) {
  const __m256 sc = _mm256_set1_ps(scale);
  for (int64_t j = 0; j < kAttentionBlock; j += 4) {
    __m512 acc[4][4];
    for (int r = 0; r < 4; ++r)
      for (int u = 0; u < 4; ++u) acc[r][u] = _mm512_setzero_ps();
    for (int64_t i = 0; i < d; i += 16) {
      const __mmask16 m = lanes(d - i);
      __m512 kv[4];
      for (int u = 0; u < 4; ++u) kv[u] = _mm512_maskz_loadu_ps(m, K + (j + u) * kv_ld + i);
      for (int r = 0; r < 4; ++r) {
        const __m512 qv = _mm512_maskz_loadu_ps(m, q[r] + i);
        for (int u = 0; u < 4; ++u) acc[r][u] = _mm512_fmadd_ps(qv, kv[u], acc[r][u]);
      }
    }
    for (int r = 0; r < 4; ++r) {
      __m256 half[8];
      for (int u = 0; u < 4; ++u) half[u] = fold(acc[r][u]);
      for (int u = 4; u < 8; ++u) half[u] = _mm256_setzero_ps();
      const __m256 v = _mm256_mul_ps(avx2::hsum8(half), sc);
      _mm_storeu_ps(s[r] + j, _mm256_castps256_ps128(v));
    }
  }
}

// acc[i, i + 16 S) = rv * acc + sum_j s[j] V[j], the S slices of 16 dims in
// registers while the keys pass: each weight is broadcast once for S
// slices, where a loop over the keys per slice loaded a weight and a value
// per FMA. Each dim's sum runs in key order either way: the same bits.
template <int S>
inline void add_values(const float* s, const float* V, int64_t kv_ld, int64_t nb, __m512 rv, int64_t i, int64_t d,
                       float* acc) {
  __mmask16 mk[S];
  __m512 a[S];
  for (int u = 0; u < S; ++u) {
    mk[u] = lanes(d - i - 16 * u);
    a[u] = _mm512_mul_ps(_mm512_maskz_loadu_ps(mk[u], acc + i + 16 * u), rv);
  }
  for (int64_t j = 0; j < nb; ++j) {
    const __m512 w = _mm512_set1_ps(s[j]);
    const float* v = V + j * kv_ld + i;
    for (int u = 0; u < S; ++u) a[u] = _mm512_fmadd_ps(w, _mm512_maskz_loadu_ps(mk[u], v + 16 * u), a[u]);
  }
  for (int u = 0; u < S; ++u) _mm512_mask_storeu_ps(acc + i + 16 * u, mk[u], a[u]);
}

// add_values for 4 rows over one whole block of values, 64 dims at a time:
// each value slice loaded feeds 4 FMAs, not 1 (the loads bound add_values).
// Each row's sums run in key order as alone: the same bits.
inline void add_values4(const float* const s[4], const float* V, int64_t kv_ld, const float* rescale, int64_t i,
                        int64_t d, float* const acc[4]) {
  __mmask16 mk[4];
  __m512 a[4][4];
  for (int u = 0; u < 4; ++u) mk[u] = d - i - 16 * u > 0 ? lanes(d - i - 16 * u) : __mmask16(0);
  for (int r = 0; r < 4; ++r)
    for (int u = 0; u < 4; ++u)
      a[r][u] = _mm512_mul_ps(_mm512_maskz_loadu_ps(mk[u], acc[r] + i + 16 * u), _mm512_set1_ps(rescale[r]));
  for (int64_t j = 0; j < kAttentionBlock; ++j) {
    __m512 v[4];
    for (int u = 0; u < 4; ++u) v[u] = _mm512_maskz_loadu_ps(mk[u], V + j * kv_ld + i + 16 * u);
    for (int r = 0; r < 4; ++r) {
      const __m512 w = _mm512_set1_ps(s[r][j]);
      for (int u = 0; u < 4; ++u) a[r][u] = _mm512_fmadd_ps(w, v[u], a[r][u]);
    }
  }
  for (int r = 0; r < 4; ++r)
    for (int u = 0; u < 4; ++u) _mm512_mask_storeu_ps(acc[r] + i + 16 * u, mk[u], a[r][u]);
}

struct Row {
  static constexpr bool kScoreFours = true, kFours = true;
  static float weigh(const float* q, const float* K, int64_t kv_ld, int64_t d, int64_t nb, float scale, float& m,
                     float& l, float* s) {
    scores(q, K, kv_ld, d, nb, scale, s);
    return avx2::online_softmax(s, nb, m, l);
  }
  // Four rows over the same whole block of keys, each as weigh: c[r] its factor.
  static void weigh4(const float* const q[4], const float* K, int64_t kv_ld, int64_t d, float scale, float* m,
                     float* l, float* const s[4], float* c) {
    scores4(q, K, kv_ld, d, scale, s);
    for (int r = 0; r < 4; ++r) c[r] = avx2::online_softmax(s[r], kAttentionBlock, m[r], l[r]);
  }
  static void add(const float* s, const float* V, int64_t kv_ld, int64_t d, int64_t nb, float rescale, float* acc) {
    const __m512 rv = _mm512_set1_ps(rescale);
    for (int64_t i = 0; i < d; i += 128) {  // up to 8 slices of 16 at a time
      switch (std::min<int64_t>(8, (d - i + 15) / 16)) {
        case 1: add_values<1>(s, V, kv_ld, nb, rv, i, d, acc); break;
        case 2: add_values<2>(s, V, kv_ld, nb, rv, i, d, acc); break;
        case 3: add_values<3>(s, V, kv_ld, nb, rv, i, d, acc); break;
        case 4: add_values<4>(s, V, kv_ld, nb, rv, i, d, acc); break;
        case 5: add_values<5>(s, V, kv_ld, nb, rv, i, d, acc); break;
        case 6: add_values<6>(s, V, kv_ld, nb, rv, i, d, acc); break;
        case 7: add_values<7>(s, V, kv_ld, nb, rv, i, d, acc); break;
        default: add_values<8>(s, V, kv_ld, nb, rv, i, d, acc); break;
      }
    }
  }
  // Four rows, each as add, over a whole block (nb = kAttentionBlock) of V.
  static void add4(const float* const s[4], const float* V, int64_t kv_ld, int64_t d, const float* rescale,
                   float* const acc[4]) {
    for (int64_t i = 0; i < d; i += 64) add_values4(s, V, kv_ld, rescale, i, d, acc);
  }
  static void scale(float* acc, int64_t d, float c) {
    const __m512 cv = _mm512_set1_ps(c);
    for (int64_t i = 0; i < d; i += 16) {
      const __mmask16 mk = lanes(d - i);
      _mm512_mask_storeu_ps(acc + i, mk, _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, acc + i), cv));
    }
  }
};

void attention(const AttentionParams& p, int64_t i0, int64_t i1) { attention_tiles<Row>(p, i0, i1); }

}  // namespace avx512
}  // namespace mambart

MAMBART_AVX2_END
#endif  // x86-64

#if defined(__aarch64__)
#include "cpu/simd_math_neon.h"

namespace mambart {
namespace neon {

// The avx2 kernel at 4 lanes: 8 keys scored at once (two hsum4), exp over 4
// scores at a time, the value sums in one register per 4 dims of the head.

inline float hsum(float32x4_t v) { return vaddvq_f32(v); }

inline void scores(const float* q, const float* K, int64_t kv_ld, int64_t d, int64_t nb, float scale, float* s) {
  const int64_t dv = d / 4 * 4;
  int64_t j = 0;
  for (; j + 8 <= nb; j += 8) {
    float32x4_t acc[8];
    for (int u = 0; u < 8; ++u) acc[u] = vdupq_n_f32(0.0f);
    for (int64_t i = 0; i < dv; i += 4) {
      const float32x4_t qv = vld1q_f32(q + i);
      for (int u = 0; u < 8; ++u) acc[u] = vfmaq_f32(acc[u], qv, vld1q_f32(K + (j + u) * kv_ld + i));
    }
    if (dv < d) {
      const float32x4_t qv = load_n(q + dv, d - dv);
      for (int u = 0; u < 8; ++u) acc[u] = vfmaq_f32(acc[u], qv, load_n(K + (j + u) * kv_ld + dv, d - dv));
    }
    vst1q_f32(s + j, vmulq_n_f32(hsum4(acc), scale));
    vst1q_f32(s + j + 4, vmulq_n_f32(hsum4(acc + 4), scale));
  }
  for (; j < nb; ++j) {
    float32x4_t dot = vdupq_n_f32(0.0f);
    for (int64_t i = 0; i < d; i += 4) dot = vfmaq_f32(dot, load_n(q + i, d - i), load_n(K + j * kv_ld + i, d - i));
    s[j] = hsum(dot) * scale;
  }
}

// As avx2::online_softmax.
inline float online_softmax(float* s, int64_t nb, float& m, float& l) {
  // The max 4 lanes at a time (maxNum: a NaN score is skipped, as std::max skips it).
  float32x4_t vmax = vdupq_n_f32(-INFINITY);
  int64_t j4 = 0;
  for (; j4 + 4 <= nb; j4 += 4) vmax = vmaxnmq_f32(vmax, vld1q_f32(s + j4));
  float bmax = vmaxnmvq_f32(vmax);
  for (; j4 < nb; ++j4) bmax = std::max(bmax, s[j4]);
  const float m_new = std::max(m, bmax), rescale = std::exp(m - m_new);
  const float32x4_t mv = vdupq_n_f32(m_new);
  float sum = 0.0f;
  for (int64_t j = 0; j < nb; j += 4) {
    const int64_t n = std::min<int64_t>(4, nb - j);
    float w[4];
    vst1q_f32(w, exp(vsubq_f32(load_n(s + j, n), mv)));
    for (int64_t t = 0; t < n; ++t) sum += w[t], s[j + t] = w[t];
  }
  l = l * rescale + sum;
  m = m_new;
  return rescale;
}

struct Row {
  static constexpr bool kScoreFours = false, kFours = true;
  // As avx2's add4, 16 dims at a time in four registers per row.
  static void add4(const float* const s[4], const float* V, int64_t kv_ld, int64_t d, const float* rescale,
                   float* const acc[4]) {
    for (int64_t i = 0; i < d; i += 16) {
      int64_t n[4];
      for (int u = 0; u < 4; ++u) n[u] = std::max<int64_t>(0, std::min<int64_t>(4, d - i - 4 * u));
      float32x4_t a[4][4];
      for (int r = 0; r < 4; ++r)
        for (int u = 0; u < 4; ++u) a[r][u] = vmulq_n_f32(load_n(acc[r] + i + 4 * u, n[u]), rescale[r]);
      for (int64_t j = 0; j < kAttentionBlock; ++j) {
        float32x4_t v[4];
        for (int u = 0; u < 4; ++u) v[u] = load_n(V + j * kv_ld + i + 4 * u, n[u]);
        for (int r = 0; r < 4; ++r)
          for (int u = 0; u < 4; ++u) a[r][u] = vfmaq_n_f32(a[r][u], v[u], s[r][j]);
      }
      for (int r = 0; r < 4; ++r)
        for (int u = 0; u < 4; ++u) store_n(acc[r] + i + 4 * u, a[r][u], n[u]);
    }
  }
  static float weigh(const float* q, const float* K, int64_t kv_ld, int64_t d, int64_t nb, float scale, float& m,
                     float& l, float* s) {
    scores(q, K, kv_ld, d, nb, scale, s);
    return online_softmax(s, nb, m, l);
  }
  static void add(const float* s, const float* V, int64_t kv_ld, int64_t d, int64_t nb, float rescale, float* acc) {
    for (int64_t i = 0; i < d; i += 4) {
      const int64_t n = d - i;
      float32x4_t a = vmulq_n_f32(load_n(acc + i, n), rescale);
      if (n >= 4)
        for (int64_t j = 0; j < nb; ++j) a = vfmaq_n_f32(a, vld1q_f32(V + j * kv_ld + i), s[j]);
      else
        for (int64_t j = 0; j < nb; ++j) a = vfmaq_n_f32(a, load_n(V + j * kv_ld + i, n), s[j]);
      store_n(acc + i, a, n);
    }
  }
  static void scale(float* acc, int64_t d, float c) {
    for (int64_t i = 0; i < d; ++i) acc[i] *= c;
  }
};

void attention(const AttentionParams& p, int64_t i0, int64_t i1) { attention_tiles<Row>(p, i0, i1); }

void relu_sq(const ElementwiseParams& p, int64_t i0, int64_t i1) {
  const float32x4_t zero = vdupq_n_f32(0.0f);
  for (int64_t i = i0; i < i1; i += 4) {
    const float32x4_t v = vmaxq_f32(load_n(p.x + i, i1 - i), zero);
    store_n(p.y + i, vmulq_f32(v, v), i1 - i);
  }
}

}  // namespace neon
}  // namespace mambart
#endif  // arm64
