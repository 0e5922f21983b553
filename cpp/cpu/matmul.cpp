// matmul: y = x · wᵀ (+ bias). See kernels/matmul.h.
#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "kernels/matmul.h"
#include "kernels/quantize.h"

namespace mambart {
namespace scalar {

void matmul_f32(const MatmulParams& p, int64_t n0, int64_t n1) {
  for (int64_t m = 0; m < p.M; ++m) {
    const float* x = p.x + m * p.ldx;
    for (int64_t n = n0; n < n1; ++n) {
      const float* w = static_cast<const float*>(p.w) + n * p.K;
      float acc = 0.0f;
      for (int64_t k = 0; k < p.K; ++k) acc += x[k] * w[k];
      p.y[m * p.ldy + n] = acc + (p.bias ? p.bias[n] : 0.0f);
    }
  }
}

// One FMA chain per output in k order from the bias: the bits every ISA's
// f32p kernel gives (kernels/matmul.h).
void matmul_f32p(const MatmulParams& p, int64_t n0, int64_t n1) {
  const float* w = static_cast<const float*>(p.w);
  for (int64_t m = 0; m < p.M; ++m) {
    const float* x = p.x + m * p.ldx;
    for (int64_t n = n0; n < n1; ++n) {
      const float* col = w + n / kPanelRows * kPanelRows * p.K + n % kPanelRows;
      float acc = p.bias ? p.bias[n] : 0.0f;
      for (int64_t k = 0; k < p.K; ++k) acc = std::fma(x[k], col[k * kPanelRows], acc);
      p.y[m * p.ldy + n] = acc;
    }
  }
}

// Other weight types: each row back to f32 (quantize.cpp defines the
// formats), then the same dot products.
static void matmul_dequantized(const MatmulParams& p, int64_t n0, int64_t n1) {
  std::vector<float> w(static_cast<size_t>(p.K));
  const int64_t stride = row_bytes(p.wtype, p.K);
  for (int64_t n = n0; n < n1; ++n) {
    dequantize_row(static_cast<const char*>(p.w) + n * stride, p.wtype, p.K, w.data());
    for (int64_t m = 0; m < p.M; ++m) {
      const float* x = p.x + m * p.ldx;
      float acc = 0.0f;
      for (int64_t k = 0; k < p.K; ++k) acc += x[k] * w[k];
      p.y[m * p.ldy + n] = acc + (p.bias ? p.bias[n] : 0.0f);
    }
  }
}

void matmul_f16(const MatmulParams& p, int64_t n0, int64_t n1) { matmul_dequantized(p, n0, n1); }
void matmul_bf16(const MatmulParams& p, int64_t n0, int64_t n1) { matmul_dequantized(p, n0, n1); }

// Up to kMatmulDecodeRows rows: integer products over x rounded to int16
// (kernels/matmul.h).
void matmul_q8(const MatmulParams& p, int64_t n0, int64_t n1) {
  if (p.M > kMatmulDecodeRows || p.prefill) return matmul_dequantized(p, n0, n1);
  const int64_t nb = (p.K + kQuantBlock - 1) / kQuantBlock;
  std::vector<int16_t> q(static_cast<size_t>(nb * kQuantBlock));
  std::vector<float> dx(static_cast<size_t>(nb));
  for (int64_t m = 0; m < p.M; ++m) {
    quantize_x_q16(p.x + m * p.ldx, p.K, q.data(), dx.data());
    for (int64_t n = n0; n < n1; ++n) {
      const BlockQ8* blk = reinterpret_cast<const BlockQ8*>(static_cast<const char*>(p.w) + n * row_bytes(p.wtype, p.K));
      float acc = 0.0f;
      for (int64_t b = 0; b < nb; ++b) {
        int32_t dot = 0;
        for (int64_t i = 0; i < kQuantBlock; ++i) dot += blk[b].q[i] * q[b * kQuantBlock + i];
        acc += blk[b].d * dx[b] * static_cast<float>(dot);
      }
      p.y[m * p.ldy + n] = acc + (p.bias ? p.bias[n] : 0.0f);
    }
  }
}

// Up to kMatmulDecodeRows rows: integer products over x rounded to int8
// (kernels/matmul.h).
void matmul_q4(const MatmulParams& p, int64_t n0, int64_t n1) {
  if (p.M > kMatmulDecodeRows || p.prefill) return matmul_dequantized(p, n0, n1);
  const int64_t nb = (p.K + kQuantBlock - 1) / kQuantBlock;
  std::vector<int8_t> q(static_cast<size_t>(nb * kQuantBlock));
  std::vector<float> dx(static_cast<size_t>(nb)), xs(static_cast<size_t>(nb));
  for (int64_t m = 0; m < p.M; ++m) {
    const float* x = p.x + m * p.ldx;
    quantize_x_q8(x, p.K, q.data(), dx.data());
    for (int64_t b = 0; b < nb; ++b) xs[b] = block_sum(x, p.K, b);
    for (int64_t n = n0; n < n1; ++n) {
      const BlockQ4* blk = reinterpret_cast<const BlockQ4*>(static_cast<const char*>(p.w) + n * row_bytes(p.wtype, p.K));
      float acc = 0.0f;
      for (int64_t b = 0; b < nb; ++b) {
        int32_t dot = 0;
        for (int64_t i = 0; i < kQuantBlock; ++i)
          dot += (blk[b].q[i / 2] >> (4 * (i % 2)) & 15) * q[b * kQuantBlock + i];
        acc += blk[b].d * dx[b] * static_cast<float>(dot) + blk[b].m * xs[b];
      }
      p.y[m * p.ldy + n] = acc + (p.bias ? p.bias[n] : 0.0f);
    }
  }
}

}  // namespace scalar
}  // namespace mambart

#include "cpu/matmul_x86.h"
#include "cpu/simd_math.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <cstring>
#include <limits>

namespace mambart {
namespace x86 {

float* scratch(int slot, int64_t floats) {
  thread_local std::vector<float> buf[5];
  std::vector<float>& b = buf[slot];
  const size_t need = static_cast<size_t>(floats) + 16;
  if (b.size() < need) b.resize(need);
  const uintptr_t a = reinterpret_cast<uintptr_t>(b.data());
  return reinterpret_cast<float*>((a + 63) & ~uintptr_t{63});
}

}  // namespace x86
}  // namespace mambart

MAMBART_AVX2_F16C_BEGIN

namespace mambart {
namespace avx2 {
namespace {

using x86::kDecodeCols;
using x86::kPrefetchBytes;
using x86::round_up;
using x86::scratch;

#include "cpu/matmul_dense_x86.h"

// ---------------------------------------------------------------- block formats
//
// As the dense formats (cpu/matmul_dense_x86.h), for the GEMM's panels; q8
// and q4 decode in integers, each with a kernel of its own (below).

// 8 bytes -> 8 int32 lanes, zero- or sign-extended.
inline __m256i load_u8x8(const uint8_t* p) { return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))); }
inline __m256i load_i8x8(const int8_t* p) { return _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))); }

struct Q8 {  // d * q: int8 -> int32 -> f32, times the block scale (as dequantize_row)
  static constexpr bool kBlocked = true, kMinimum = false;
  static constexpr int64_t kBytes = sizeof(BlockQ8);
  static const BlockQ8& block(const char* row, int64_t b) { return reinterpret_cast<const BlockQ8*>(row)[b]; }
  static __m256 load8(const char* row, int64_t k) {
    const BlockQ8& b = block(row, k / kQuantBlock);
    return _mm256_mul_ps(_mm256_cvtepi32_ps(load_i8x8(b.q + k % kQuantBlock)), _mm256_broadcast_ss(&b.d));
  }
  static __m256 load_tail(const char* row, int64_t k, int64_t) { return load8(row, k); }
};

struct Q4 {  // d * code + m; decode folds m in as m * sum(x) per block
  static constexpr bool kBlocked = true, kMinimum = true;
  static constexpr int64_t kBytes = sizeof(BlockQ4);
  static const BlockQ4& block(const char* row, int64_t b) { return reinterpret_cast<const BlockQ4*>(row)[b]; }
  // Without m: codes k..k+7 are the 8 nibbles of one little-endian 32-bit
  // word, low nibble first.
  static __m256 load8(const char* row, int64_t k) {
    const BlockQ4& b = block(row, k / kQuantBlock);
    int32_t word;
    std::memcpy(&word, b.q + (k % kQuantBlock) / 2, 4);
    const __m256i shift = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28);
    const __m256i code = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(word), shift), _mm256_set1_epi32(15));
    return _mm256_mul_ps(_mm256_cvtepi32_ps(code), _mm256_broadcast_ss(&b.d));
  }
  static __m256 load_tail(const char* row, int64_t k, int64_t) { return load8(row, k); }
  static float minimum(const char* row, int64_t b) { return block(row, b).m; }
};

// ---------------------------------------------------------------- decode
//
// M <= kDecodeRows, block types: as the dense decode (cpu/matmul_dense_x86.h)
// with x packed for integer products, and a quantized block decoded once for
// all the rows of a group.

// Up to 32 rows, groups of 8 reusing each weight chunk from L2 beat the
// GEMM's panel packing (f32, N=3072 K=768, cold weights, 1 thread: M=9
// 10-16 GB/s vs 6-8, M=16 8-11 vs 5-7, M=32 4-5.5 vs 3.3; M=64 ties).
constexpr int64_t kDecodeRows = kMatmulDecodeRows;

// Dense groups: 2 chains per row for 4 rows fit the 16 registers.
constexpr int kDenseGroup = 4;

// Prefetching: see x86::kPrefetchBytes.
template <class F, int MR>
inline void prefetch_ahead(const char* w, int64_t offset) {
  if constexpr (MR > 2) _mm_prefetch(w + offset + kPrefetchBytes, _MM_HINT_T0);
}

// x of one call, packed for the row kernels; `at(g)` is row g onward.
//   q (M, nb, 32)       q4: x as int8 per block (quantize_x_q8), each block's 16
//                       even-k values then its 16 odd-k ones (see decode_q4)
//   dx (M, nb)          q4: the blocks' scales
//   xs (M/8, nb, 8)     q4: each block's exact sum of x, 8 rows side by side
//   q16 (M, nbp, 32)    q8: x as int16 per block (quantize_x_q16), nbp = nb
//                       rounded up to even, the pad block zeros
//   dxp (M, nbp / 2, 8) q8: the scales of blocks 2j, 2j + 1 in decode_q8's lanes
struct PackedX {
  int64_t nb;
  const int8_t* q;
  const float *dx, *xs;
  const int16_t* q16;
  const float* dxp;
  PackedX at(int64_t g) const {
    const int64_t nbp = round_up(nb, 2);
    return {nb, q ? q + g * nb * kQuantBlock : nullptr, dx ? dx + g * nb : nullptr,
            xs ? xs + g * nb : nullptr, q16 ? q16 + g * nbp * kQuantBlock : nullptr, dxp ? dxp + g * nbp * 4 : nullptr};
  }
};

// q8 in integers (kernels/matmul.h), two blocks per step. Each block's 32
// codes widen to two registers of int16; madd multiplies them by x's int16
// and adds pairs into int32 (|sum| <= 2 * 127 * 32767), and an add makes 8
// int32 per block, whose hadd with the next block's leaves 4 of each (lanes
// 0, 1, 4, 5 the first block's, 2, 3, 6, 7 the second's): one conversion
// and one FMA, times d * dx in those lanes, per row and block pair. The
// float decode this replaces converted and multiplied every weight (four
// conversions and five FMA-unit operations per block and row), which bound
// it by arithmetic below the memory's pace. An odd last block pairs with
// zeros (its x pad block is zero, its d taken as 0).
template <int MR>
void decode_q8(const char* w, const PackedX& x, __m256 (&out)[MR]) {
  const BlockQ8* blk = reinterpret_cast<const BlockQ8*>(w);
  const int64_t nbp = round_up(x.nb, 2);
  __m256 acc[MR];
  for (int i = 0; i < MR; ++i) acc[i] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nbp; b += 2) {
    prefetch_ahead<Q8, MR>(w, b * Q8::kBytes);
    prefetch_ahead<Q8, MR>(w, (b + 1) * Q8::kBytes);
    __m256i c[2][2];
    __m256 d;
    for (int u = 0; u < 2; ++u) {
      const bool real = b + u < x.nb;
      for (int h = 0; h < 2; ++h)
        c[u][h] = real ? _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk[b + u].q + 16 * h)))
                       : _mm256_setzero_si256();
    }
    d = _mm256_blend_ps(_mm256_set1_ps(blk[b].d), _mm256_set1_ps(b + 1 < x.nb ? blk[b + 1].d : 0.0f), 0xCC);
    for (int i = 0; i < MR; ++i) {
      const int16_t* q = x.q16 + (i * nbp + b) * kQuantBlock;
      __m256i t[2];
      for (int u = 0; u < 2; ++u)
        t[u] = _mm256_add_epi32(
            _mm256_madd_epi16(c[u][0], _mm256_load_si256(reinterpret_cast<const __m256i*>(q + 32 * u))),
            _mm256_madd_epi16(c[u][1], _mm256_load_si256(reinterpret_cast<const __m256i*>(q + 32 * u + 16))));
      const __m256 scale = _mm256_mul_ps(d, _mm256_load_ps(x.dxp + (i * nbp + b) * 4));
      acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_hadd_epi32(t[0], t[1])), scale, acc[i]);
    }
  }
  for (int i = 0; i < MR; ++i) out[i] = acc[i];
}

// q4 in integers (kernels/matmul.h). A block's 16 bytes, masked and shifted,
// are its 32 codes in one register: low nibbles (even k) in the low half,
// high nibbles (odd k) in the high half; x's int8 are stored in that order.
// maddubs multiplies the unsigned codes by the signed x and adds pairs
// (|sum| <= 2 * 15 * 127 fits int16), madd adds those pairs to 8 int32, and
// one FMA adds them times d * dx. Where the float decode converted and
// multiplied every weight, this takes ~7 operations per block and row.
// The minimum's term, sum_b m_b xs_b, runs for all 8 rows in one FMA.
template <int MR>
void decode_q4(const char* w, const PackedX& x, __m256 (&out)[MR], __m256& mterm) {
  const BlockQ4* blk = reinterpret_cast<const BlockQ4*>(w);
  const __m128i nibble = _mm_set1_epi8(15);
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 acc[MR];
  for (int i = 0; i < MR; ++i) acc[i] = _mm256_setzero_ps();
  __m256 ms = _mm256_setzero_ps();
  for (int64_t b = 0; b < x.nb; ++b) {
    prefetch_ahead<Q4, MR>(w, b * Q4::kBytes);
    const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk[b].q));
    const __m256i codes = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(raw, 4), nibble), _mm_and_si128(raw, nibble));
    const __m256 d = _mm256_set1_ps(blk[b].d);
    for (int i = 0; i < MR; ++i) {
      const __m256i qx = _mm256_load_si256(reinterpret_cast<const __m256i*>(x.q + (i * x.nb + b) * kQuantBlock));
      const __m256i dot = _mm256_madd_epi16(_mm256_maddubs_epi16(codes, qx), ones);
      const __m256 scale = _mm256_mul_ps(d, _mm256_broadcast_ss(x.dx + i * x.nb + b));
      acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), scale, acc[i]);
    }
    ms = _mm256_fmadd_ps(_mm256_set1_ps(blk[b].m), _mm256_load_ps(x.xs + 8 * b), ms);
  }
  for (int i = 0; i < MR; ++i) out[i] = acc[i];
  mterm = ms;
}

// y[0:MR, c0:c1] for one group of MR <= 8 rows of x (x and y at the
// group's first row).
template <class F, int MR>
void decode_rows(const MatmulParams& p, const PackedX& x, float* y, int64_t c0, int64_t c1) {
  const int64_t stride = row_bytes(p.wtype, p.K);
  const char* w = static_cast<const char*>(p.w);
  alignas(32) float yb[MR * kDecodeCols];
  for (int64_t n = c0; n < c1; ++n) {
    __m256 acc[MR], mterm = _mm256_setzero_ps();
    if constexpr (std::is_same_v<F, Q4>)
      decode_q4<MR>(w + n * stride, x, acc, mterm);
    else
      decode_q8<MR>(w + n * stride, x, acc);
    alignas(32) float m[8];
    _mm256_store_ps(m, mterm);
    const float bias = p.bias ? p.bias[n] : 0.0f;
    for (int i = 0; i < MR; ++i) yb[i * kDecodeCols + (n - c0)] = hsum(acc[i]) + m[i] + bias;
  }
  for (int i = 0; i < MR; ++i) std::memcpy(y + i * p.ldy + c0, yb + i * kDecodeCols, static_cast<size_t>(c1 - c0) * 4);
}

// Largest lane.
inline float hmax(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}

}  // namespace

// See cpu/matmul_x86.h; decode_q4 reads this order.
void pack_x_q8(const float* x, int64_t K, int8_t* q, float* dx) {
  const __m256i natural = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  const __m256i even_odd = _mm256_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15,  //
                                            0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
  for (int64_t k0 = 0, b = 0; k0 < K; k0 += kQuantBlock, ++b) {
    __m256 v[4];
    for (int u = 0; u < 4; ++u) v[u] = load_n(x + k0 + 8 * u, std::clamp<int64_t>(K - k0 - 8 * u, 0, 8));
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 a = _mm256_andnot_ps(sign, v[0]);
    for (int u = 1; u < 4; ++u) a = _mm256_max_ps(a, _mm256_andnot_ps(sign, v[u]));
    const float m = hmax(a);
    dx[b] = m / 127.0f;
    const __m256 inv = _mm256_set1_ps(m > 0 ? 127.0f / m : 0.0f);
    __m256i i32[4];
    for (int u = 0; u < 4; ++u) i32[u] = _mm256_cvtps_epi32(_mm256_mul_ps(v[u], inv));
    // packs interleave the 128-bit lanes: 4-byte groups come out as x[0:4],
    // x[8:12], x[16:20], x[24:28] | x[4:8], ...; the permute restores order.
    __m256i i8 = _mm256_packs_epi16(_mm256_packs_epi32(i32[0], i32[1]), _mm256_packs_epi32(i32[2], i32[3]));
    i8 = _mm256_permutevar8x32_epi32(i8, natural);
    // Per 16: evens then odds; then quads (evens 0-15, evens 16-31, odds 0-15, odds 16-31).
    i8 = _mm256_permute4x64_epi64(_mm256_shuffle_epi8(i8, even_odd), 0xD8);
    _mm256_store_si256(reinterpret_cast<__m256i*>(q + b * kQuantBlock), i8);
  }
}

// See cpu/matmul_x86.h: quantize_x_q16's values, in the same f32 steps.
void pack_x_q16(const float* x, int64_t K, int16_t* q, float* dx) {
  for (int64_t k0 = 0, b = 0; k0 < K; k0 += kQuantBlock, ++b) {
    __m256 v[4];
    for (int u = 0; u < 4; ++u) v[u] = load_n(x + k0 + 8 * u, std::clamp<int64_t>(K - k0 - 8 * u, 0, 8));
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 a = _mm256_andnot_ps(sign, v[0]), bad = _mm256_cmp_ps(_mm256_sub_ps(v[0], v[0]), v[0], _CMP_UNORD_Q);
    for (int u = 1; u < 4; ++u) {
      a = _mm256_max_ps(a, _mm256_andnot_ps(sign, v[u]));
      bad = _mm256_or_ps(bad, _mm256_cmp_ps(_mm256_sub_ps(v[u], v[u]), v[u], _CMP_UNORD_Q));  // x - x: NaN unless finite
    }
    const float m = hmax(a);
    const bool finite = _mm256_movemask_ps(bad) == 0;
    dx[b] = finite ? m / 32767.0f : std::numeric_limits<float>::quiet_NaN();
    const __m256 inv = _mm256_set1_ps(finite && m > 0 ? 32767.0f / m : 0.0f);
    __m256i i32[4];
    for (int u = 0; u < 4; ++u)
      i32[u] = finite ? _mm256_cvtps_epi32(_mm256_mul_ps(v[u], inv)) : _mm256_setzero_si256();
    // packs interleave the 128-bit lanes (x[0:4], x[8:12], x[4:8], x[12:16]); the permute restores order.
    for (int h = 0; h < 2; ++h)
      _mm256_store_si256(reinterpret_cast<__m256i*>(q + b * kQuantBlock + 16 * h),
                         _mm256_permute4x64_epi64(_mm256_packs_epi32(i32[2 * h], i32[2 * h + 1]), 0xD8));
  }
}

// In vectors: a block's 32 floats as 8 lanes of 4, where one chain of 32
// dependent adds per block took ~4% of a q4 decode step.
void block_sums8(const MatmulParams& p, int64_t nbs, float* xs) {
  const int64_t nb = (p.K + kQuantBlock - 1) / kQuantBlock;
  std::memset(xs, 0, static_cast<size_t>(round_up(p.M, 8) * nbs) * 4);
  for (int64_t i = 0; i < p.M; ++i) {
    const float* x = p.x + i * p.ldx;
    float* out = xs + i / 8 * 8 * nbs + i % 8;
    for (int64_t b = 0, k0 = 0; b < nb; ++b, k0 += kQuantBlock) {
      __m256 v[4];
      for (int u = 0; u < 4; ++u) v[u] = load_n(x + k0 + 8 * u, std::clamp<int64_t>(p.K - k0 - 8 * u, 0, 8));
      out[8 * b] = hsum(_mm256_add_ps(_mm256_add_ps(v[0], v[1]), _mm256_add_ps(v[2], v[3])));
    }
  }
}

namespace {

// Packs x: for q8, int16 values and scales; for q4, int8 values, scales and
// block sums (rows past M in the last group of xs are zero).
template <class F>
PackedX pack_x(const MatmulParams& p) {
  const int64_t ldxp = round_up(p.K, kQuantBlock), nb = ldxp / kQuantBlock, nbp = round_up(nb, 2);
  if constexpr (std::is_same_v<F, Q8>) {
    int16_t* q = reinterpret_cast<int16_t*>(scratch(0, p.M * nbp * kQuantBlock / 2));
    float* dx = scratch(3, nbp);
    float* dxp = scratch(1, p.M * nbp * 4);
    for (int64_t i = 0; i < p.M; ++i) {
      int16_t* qi = q + i * nbp * kQuantBlock;
      pack_x_q16(p.x + i * p.ldx, p.K, qi, dx);
      std::memset(qi + nb * kQuantBlock, 0, static_cast<size_t>((nbp - nb) * kQuantBlock) * 2);
      if (nbp > nb) dx[nb] = 0.0f;
      for (int64_t b = 0; b < nbp; b += 2)  // decode_q8's lanes: hadd's order
        _mm256_store_ps(dxp + (i * nbp + b) * 4, _mm256_setr_ps(dx[b], dx[b], dx[b + 1], dx[b + 1], dx[b], dx[b],
                                                                dx[b + 1], dx[b + 1]));
    }
    return {nb, nullptr, nullptr, nullptr, q, dxp};
  } else {
    int8_t* q = reinterpret_cast<int8_t*>(scratch(0, p.M * ldxp / 4));
    float* dx = scratch(3, p.M * nb);
    float* xs = scratch(1, round_up(p.M, 8) * nb);
    for (int64_t i = 0; i < p.M; ++i) pack_x_q8(p.x + i * p.ldx, p.K, q + i * ldxp, dx + i * nb);
    block_sums8(p, nb, xs);
    return {nb, q, dx, xs, nullptr, nullptr};
  }
}

// Block types. M > 8: groups of 8 rows. The groups take each chunk of kDecodeCols
// weight rows in turn, so only the first reads it from memory and the
// others from L2.
template <class F>
void decode(const MatmulParams& p, int64_t n0, int64_t n1) {
  const PackedX x = x86::packed_once<F, PackedX>(p, pack_x<F>);
  constexpr int64_t group = 8;
  for (int64_t c0 = n0; c0 < n1; c0 += kDecodeCols) {
    const int64_t c1 = std::min(n1, c0 + kDecodeCols);
    for (int64_t g = 0; g < p.M; g += group) {
      const PackedX xg = x.at(g);
      float* yg = p.y + g * p.ldy;
      switch (std::min<int64_t>(group, p.M - g)) {
        case 1: decode_rows<F, 1>(p, xg, yg, c0, c1); break;
        case 2: decode_rows<F, 2>(p, xg, yg, c0, c1); break;
        case 3: decode_rows<F, 3>(p, xg, yg, c0, c1); break;
        case 4: decode_rows<F, 4>(p, xg, yg, c0, c1); break;
        case 5: decode_rows<F, 5>(p, xg, yg, c0, c1); break;
        case 6: decode_rows<F, 6>(p, xg, yg, c0, c1); break;
        case 7: decode_rows<F, 7>(p, xg, yg, c0, c1); break;
        default: decode_rows<F, 8>(p, xg, yg, c0, c1); break;
      }
    }
  }
}

// ---------------------------------------------------------------- prefill
//
// M > kDecodeRows: a blocked GEMM. For each panel of weight rows x K
// columns (K cut into equal blocks of <= kKCMax; rows as fit kPanelBytes),
// the weights are converted to f32 once and packed as [nc/16][kc][16] (16
// output columns side by side for each k), zero-padded to 16 rows; the
// panel stays in L2 while every 6-row slice of x passes over it, from L1.
// The micro-kernel keeps a 6 x 16 tile of y in 12 accumulators: per k, two
// panel loads and six broadcasts of x feed 12 FMAs. Measured (1 thread,
// M=512 N=3072 K=768): 129 GFLOP/s for f32, q8 and q4 alike, 94% of the
// 137 GFLOP/s a register-only FMA loop reaches.

constexpr int kGemmMR = 6;
using x86::kGemmNR;
using x86::kKCMax;
using x86::kPanelBytes;

// wp[k][0:16] = w[n0 + r, pc + k] for r < nr (zero for r >= nr), k < kc.
template <class F>
void pack_panel(const char* w, int64_t stride, int64_t nr, int64_t pc, int64_t kc, int64_t K, float* wp) {
  for (int64_t k = 0; k < kc; k += 8) {
    const int64_t kk = pc + k, valid = std::min<int64_t>(8, kc - k);
    for (int64_t r0 = 0; r0 < kGemmNR; r0 += 8) {
      __m256 v[8];
      for (int64_t r = 0; r < 8; ++r) {
        const int64_t row = r0 + r;
        if (row >= nr) {
          v[r] = _mm256_setzero_ps();
          continue;
        }
        const char* wr = w + row * stride;
        v[r] = (F::kBlocked || kk + 8 <= K) ? F::load8(wr, kk) : F::load_tail(wr, kk, K - kk);
        if constexpr (F::kMinimum)
          v[r] = _mm256_add_ps(v[r], _mm256_set1_ps(F::minimum(wr, kk / kQuantBlock)));
      }
      transpose8(v);
      for (int64_t t = 0; t < valid; ++t) _mm256_store_ps(wp + (k + t) * kGemmNR + r0, v[t]);
    }
  }
}

// y[0:MR, 0:nr] (+)= x[0:MR, 0:kc] . panel; `first` starts from bias (or 0)
// instead of y. Each y element is one FMA chain in k order, whatever the
// tile position, so any split of [n0, n1) gives bit-identical results.
template <int MR>
void gemm_tile(const float* x, int64_t ldx, const float* wp, int64_t kc, float* y, int64_t ldy,
               int64_t nr, const float* bias, bool first) {
  const __m256i m0 = tail_mask(std::min<int64_t>(nr, 8)), m1 = tail_mask(std::max<int64_t>(nr - 8, 0));
  const float* src = first ? bias : y;
  const int64_t lds = first ? 0 : ldy;
  __m256 acc[MR][2];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) {
    acc[i][0] = src ? _mm256_maskload_ps(src + i * lds, m0) : _mm256_setzero_ps();
    acc[i][1] = src ? _mm256_maskload_ps(src + i * lds + 8, m1) : _mm256_setzero_ps();
  }
  // Unrolled by pragma: without it GCC stored all 12 accumulators to the
  // stack on every k (65 GFLOP/s instead of 129).
#pragma GCC unroll 2
  for (int64_t k = 0; k < kc; ++k) {
    const __m256 w0 = _mm256_loadu_ps(wp + k * kGemmNR), w1 = _mm256_loadu_ps(wp + k * kGemmNR + 8);
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      const __m256 xv = _mm256_broadcast_ss(x + i * ldx + k);
      acc[i][0] = _mm256_fmadd_ps(xv, w0, acc[i][0]);
      acc[i][1] = _mm256_fmadd_ps(xv, w1, acc[i][1]);
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) {
    _mm256_maskstore_ps(y + i * ldy, m0, acc[i][0]);
    _mm256_maskstore_ps(y + i * ldy + 8, m1, acc[i][1]);
  }
}

void gemm_rows(int mr, const float* x, int64_t ldx, const float* wp, int64_t kc, float* y, int64_t ldy,
               int64_t nr, const float* bias, bool first) {
  static_assert(kGemmMR == 6, "extend the switch with kGemmMR");
  switch (mr) {
    case 1: return gemm_tile<1>(x, ldx, wp, kc, y, ldy, nr, bias, first);
    case 2: return gemm_tile<2>(x, ldx, wp, kc, y, ldy, nr, bias, first);
    case 3: return gemm_tile<3>(x, ldx, wp, kc, y, ldy, nr, bias, first);
    case 4: return gemm_tile<4>(x, ldx, wp, kc, y, ldy, nr, bias, first);
    case 5: return gemm_tile<5>(x, ldx, wp, kc, y, ldy, nr, bias, first);
    default: return gemm_tile<6>(x, ldx, wp, kc, y, ldy, nr, bias, first);
  }
}

// F: the weights' format, unless they are f32p (their panels in place).
template <class F>
void gemm(const MatmulParams& p, int64_t n0, int64_t n1) {
  // K in equal blocks of at most kKCMax (a function of K alone, so every
  // split of N sums in the same order); as many rows as fit kPanelBytes.
  int64_t kcb, ncb;
  x86::gemm_blocks(p.K, kcb, ncb);
  float* wp = p.wtype == DType::F32P ? nullptr : scratch(2, ncb * kcb);
  for (int64_t jc = n0; jc < n1; jc += ncb) {
    const int64_t nc = std::min(ncb, n1 - jc);
    for (int64_t pc = 0; pc < p.K; pc += kcb) {
      const int64_t kc = std::min(kcb, p.K - pc);
      int64_t ld;
      auto pack = [&](const char* w, int64_t stride, int64_t nr, float* dst) {
        pack_panel<F>(w, stride, nr, pc, kc, p.K, dst);
      };
      const float* panels = x86::block_panels(p, jc, nc, pc, kc, wp, ld, pack);
      for (int64_t ic = 0; ic < p.M; ic += kGemmMR) {
        const int mr = static_cast<int>(std::min<int64_t>(kGemmMR, p.M - ic));
        for (int64_t jr = 0; jr < nc; jr += kGemmNR)
          gemm_rows(mr, p.x + ic * p.ldx + pc, p.ldx, panels + jr * ld, kc, p.y + ic * p.ldy + jc + jr, p.ldy,
                    std::min(kGemmNR, nc - jr), p.bias ? p.bias + jc + jr : nullptr, pc == 0);
      }
    }
  }
}

}  // namespace

// See cpu/matmul_x86.h.
void pack_panel(DType type, const char* w, int64_t stride, int64_t nr, int64_t pc, int64_t kc, int64_t K, float* wp) {
  switch (type) {
    case DType::F32: return pack_panel<F32>(w, stride, nr, pc, kc, K, wp);
    case DType::F16: return pack_panel<F16>(w, stride, nr, pc, kc, K, wp);
    case DType::BF16: return pack_panel<BF16>(w, stride, nr, pc, kc, K, wp);
    case DType::Q8: return pack_panel<Q8>(w, stride, nr, pc, kc, K, wp);
    default: return pack_panel<Q4>(w, stride, nr, pc, kc, K, wp);
  }
}

namespace {

template <class F>
void matmul_typed(const MatmulParams& p, int64_t n0, int64_t n1) {
  if (n0 >= n1 || p.M <= 0) return;
  if (p.K <= 0) {  // an empty sum: the bias
    for (int64_t m = 0; m < p.M; ++m)
      for (int64_t n = n0; n < n1; ++n) p.y[m * p.ldy + n] = p.bias ? p.bias[n] : 0.0f;
    return;
  }
  if (p.M > kDecodeRows || p.prefill)
    gemm<F>(p, n0, n1);
  else if constexpr (F::kBlocked)
    decode<F>(p, n0, n1);
  else
    decode_dense_all<Lanes8Format<F>, kDenseGroup>(p, n0, n1);
}

}  // namespace

void matmul_f32(const MatmulParams& p, int64_t n0, int64_t n1) { matmul_typed<F32>(p, n0, n1); }
void matmul_f16(const MatmulParams& p, int64_t n0, int64_t n1) { matmul_typed<F16>(p, n0, n1); }
void matmul_bf16(const MatmulParams& p, int64_t n0, int64_t n1) { matmul_typed<BF16>(p, n0, n1); }
void matmul_q8(const MatmulParams& p, int64_t n0, int64_t n1) { matmul_typed<Q8>(p, n0, n1); }
void matmul_q4(const MatmulParams& p, int64_t n0, int64_t n1) { matmul_typed<Q4>(p, n0, n1); }

// The GEMM at every M: the panels are in place, and its FMA chains are
// f32p's bits (kernels/matmul.h).
void matmul_f32p(const MatmulParams& p, int64_t n0, int64_t n1) {
  if (n0 >= n1 || p.M <= 0) return;
  if (p.K <= 0) return scalar::matmul_f32p(p, n0, n1);
  gemm<F32>(p, n0, n1);
}

}  // namespace avx2
}  // namespace mambart

MAMBART_AVX2_END
#endif  // x86-64
