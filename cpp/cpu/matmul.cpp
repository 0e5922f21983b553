// matmul: y = x · wᵀ (+ bias). See kernels/matmul.h.
#include <algorithm>

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
void matmul_q8(const MatmulParams& p, int64_t n0, int64_t n1) { matmul_dequantized(p, n0, n1); }
void matmul_q4(const MatmulParams& p, int64_t n0, int64_t n1) { matmul_dequantized(p, n0, n1); }

}  // namespace scalar
}  // namespace mambart

#include "cpu/simd_math.h"

#if defined(__x86_64__) || defined(_M_X64)
MAMBART_AVX2_BEGIN

namespace mambart {
namespace avx2 {

// Register tile: MR rows of x against NR rows of w, MR*NR accumulators of 8
// partial dot products each. Every w vector loaded serves MR rows of x and
// every x vector NR rows of w. 4x3 = 12 accumulators + 3 w + 1 x fills the
// 16 ymm registers; measured (1 thread, M=1..8 x N=3072 x K=768 and
// M=128 x N=1536 x K=768) it matched or beat 3x4, 2x4, 1x4 and 3x8, by up
// to 1.7x for M >= 4, and tied at M=1.
constexpr int kMR = 4;  // x rows per tile
constexpr int kNR = 3;  // w rows per tile

// acc[i][j] += x[i, k:k+8] * w[j, k:k+8]; a masked tail when kTail.
template <int MR, int NR, bool kTail>
inline void tile_fma(__m256 (&acc)[MR][NR], const float* x, int64_t ldx, const float* w, int64_t K,
                     int64_t k, __m256i mask) {
  __m256 wv[NR];
  for (int j = 0; j < NR; ++j)
    wv[j] = kTail ? _mm256_maskload_ps(w + j * K + k, mask) : _mm256_loadu_ps(w + j * K + k);
  for (int i = 0; i < MR; ++i) {
    const float* xi = x + i * ldx + k;
    const __m256 xv = kTail ? _mm256_maskload_ps(xi, mask) : _mm256_loadu_ps(xi);
    for (int j = 0; j < NR; ++j) acc[i][j] = _mm256_fmadd_ps(xv, wv[j], acc[i][j]);
  }
}

// y[m:m+MR, n:n+NR] = x[m:m+MR] · w[n:n+NR]ᵀ + bias over the full K.
template <int MR, int NR>
void dot_tile(const MatmulParams& p, int64_t m, int64_t n) {
  const int64_t K = p.K;
  const float* x = p.x + m * p.ldx;
  const float* w = static_cast<const float*>(p.w) + n * K;
  __m256 acc[MR][NR];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) acc[i][j] = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + 8 <= K; k += 8) tile_fma<MR, NR, false>(acc, x, p.ldx, w, K, k, __m256i{});
  if (k < K) tile_fma<MR, NR, true>(acc, x, p.ldx, w, K, k, tail_mask(K - k));
  for (int i = 0; i < MR; ++i) {
    float* y = p.y + (m + i) * p.ldy + n;
    for (int j = 0; j < NR; ++j) y[j] = hsum(acc[i][j]) + (p.bias ? p.bias[n + j] : 0.0f);
  }
}

// A tile of mr <= kMR rows (fewer only at the end of an x block).
template <int NR>
void dot_tile_rows(const MatmulParams& p, int64_t m, int64_t mr, int64_t n) {
  static_assert(kMR <= 4, "extend the switch with kMR");
  switch (mr) {
    case 1: return dot_tile<1, NR>(p, m, n);
    case 2: return dot_tile<2, NR>(p, m, n);
    case 3: return dot_tile<3, NR>(p, m, n);
    default: return dot_tile<4, NR>(p, m, n);
  }
}

// Decode (M <= a block, e.g. 1..8): each weight tile (kNR rows) is streamed
// from memory once and reused from L1 by every x tile. Prefill (large M):
// x is cut into blocks of mb rows that stay in L2 (~128 KB) while all weight
// tiles of [n0, n1) pass over them, so w is re-read once per block, not per
// row.
void matmul_f32(const MatmulParams& p, int64_t n0, int64_t n1) {
  const int64_t row = std::max<int64_t>(p.K, 1);  // floats per x row
  const int64_t mb = std::max<int64_t>(kMR, (128 * 1024 / 4) / row / kMR * kMR);
  for (int64_t m0 = 0; m0 < p.M; m0 += mb) {
    const int64_t m1 = std::min(p.M, m0 + mb);
    int64_t n = n0;
    for (; n + kNR <= n1; n += kNR)
      for (int64_t m = m0; m < m1; m += kMR) dot_tile_rows<kNR>(p, m, std::min<int64_t>(kMR, m1 - m), n);
    for (; n < n1; ++n)
      for (int64_t m = m0; m < m1; m += kMR) dot_tile_rows<1>(p, m, std::min<int64_t>(kMR, m1 - m), n);
  }
}

}  // namespace avx2
}  // namespace mambart

MAMBART_AVX2_END
#endif  // x86-64
