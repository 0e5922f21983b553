// Attention-layer kernels. See kernels/attention.h.
#include "kernels/attention.h"

#include <algorithm>
#include <cmath>

namespace mambart {
namespace scalar {

// One (row, head): a block of scores, then the online-softmax update of the
// running max m, sum l and accumulator acc (d floats, in out).
void attention(const AttentionParams& p, int64_t i0, int64_t i1) {
  const int64_t d = p.head_dim, group = p.n_heads / p.n_kv_heads, kv_ld = p.n_kv_heads * d;
  float s[kAttentionBlock];
  for (int64_t item = i0; item < i1; ++item) {
    const int64_t r = item / p.n_heads, h = item % p.n_heads, g = h / group;
    const float* q = p.q + r * p.ldq + h * d;
    float* acc = p.out + r * p.ldo + h * d;
    const float* K = p.k[r] + g * d;
    const float* V = p.v[r] + g * d;
    for (int64_t i = 0; i < d; ++i) acc[i] = 0.0f;
    float m = -INFINITY, l = 0.0f;
    for (int64_t j0 = 0; j0 < p.len[r]; j0 += kAttentionBlock) {
      const int64_t nb = std::min(kAttentionBlock, p.len[r] - j0);
      float bmax = -INFINITY;
      for (int64_t j = 0; j < nb; ++j) {
        const float* k = K + (j0 + j) * kv_ld;
        float dot = 0.0f;
        for (int64_t i = 0; i < d; ++i) dot += q[i] * k[i];
        s[j] = dot * p.scale;
        bmax = std::max(bmax, s[j]);
      }
      const float m_new = std::max(m, bmax), rescale = std::exp(m - m_new);
      l *= rescale;
      for (int64_t i = 0; i < d; ++i) acc[i] *= rescale;
      for (int64_t j = 0; j < nb; ++j) {
        const float w = std::exp(s[j] - m_new);
        l += w;
        const float* v = V + (j0 + j) * kv_ld;
        for (int64_t i = 0; i < d; ++i) acc[i] += w * v[i];
      }
      m = m_new;
    }
    const float inv = 1.0f / l;
    for (int64_t i = 0; i < d; ++i) acc[i] *= inv;
  }
}

void rope(const RopeParams& p, int64_t r0, int64_t r1) {
  const int64_t half = p.rot / 2;
  for (int64_t r = r0; r < r1; ++r) {
    const float pos = static_cast<float>(p.pos[r]);
    for (int64_t i = 0; i < half; ++i) {
      const float angle = pos * p.inv_freq[i], c = std::cos(angle), s = std::sin(angle);
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

// The scalar kernel's walk, with the two inner loops over d in 8 lanes
// (masked tails, so any head size works).
void attention(const AttentionParams& p, int64_t i0, int64_t i1) {
  const int64_t d = p.head_dim, group = p.n_heads / p.n_kv_heads, kv_ld = p.n_kv_heads * d;
  float s[kAttentionBlock];
  for (int64_t item = i0; item < i1; ++item) {
    const int64_t r = item / p.n_heads, h = item % p.n_heads, g = h / group;
    const float* q = p.q + r * p.ldq + h * d;
    float* acc = p.out + r * p.ldo + h * d;
    const float* K = p.k[r] + g * d;
    const float* V = p.v[r] + g * d;
    for (int64_t i = 0; i < d; i += 8) store_n(acc + i, _mm256_setzero_ps(), d - i);
    float m = -INFINITY, l = 0.0f;
    for (int64_t j0 = 0; j0 < p.len[r]; j0 += kAttentionBlock) {
      const int64_t nb = std::min(kAttentionBlock, p.len[r] - j0);
      float bmax = -INFINITY;
      for (int64_t j = 0; j < nb; ++j) {
        const float* k = K + (j0 + j) * kv_ld;
        __m256 dot = _mm256_setzero_ps();
        for (int64_t i = 0; i < d; i += 8) dot = _mm256_fmadd_ps(load_n(q + i, d - i), load_n(k + i, d - i), dot);
        s[j] = hsum(dot) * p.scale;
        bmax = std::max(bmax, s[j]);
      }
      const float m_new = std::max(m, bmax), rescale = std::exp(m - m_new);
      l *= rescale;
      const __m256 rv = _mm256_set1_ps(rescale);
      for (int64_t i = 0; i < d; i += 8) store_n(acc + i, _mm256_mul_ps(load_n(acc + i, d - i), rv), d - i);
      for (int64_t j = 0; j < nb; ++j) {
        const float w = std::exp(s[j] - m_new);
        l += w;
        const float* v = V + (j0 + j) * kv_ld;
        const __m256 wv = _mm256_set1_ps(w);
        for (int64_t i = 0; i < d; i += 8)
          store_n(acc + i, _mm256_fmadd_ps(wv, load_n(v + i, d - i), load_n(acc + i, d - i)), d - i);
      }
      m = m_new;
    }
    const __m256 inv = _mm256_set1_ps(1.0f / l);
    for (int64_t i = 0; i < d; i += 8) store_n(acc + i, _mm256_mul_ps(load_n(acc + i, d - i), inv), d - i);
  }
}

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
#endif  // x86-64
