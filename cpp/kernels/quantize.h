// Weight formats and conversion from f32 (done once, at load or by
// `mambart convert`). Only the big matrices take these types; everything
// else stays f32.
//
//   F32   float[K] per row
//   F16   IEEE binary16[K] per row; BF16 the high 16 bits of an f32, rounded to nearest even
//   Q8    BlockQ8[ceil(K/32)] per row: w[32b + i] = d * q[i],  d = max|w| / 127 over the block
//   Q4    BlockQ4[ceil(K/32)] per row: w[32b + i] = d * code(i) + m, code(i) in 0..15,
//         m = min(w), d = (max(w) - min(w)) / 15 over the block; code(i) is the low
//         nibble of q[i / 2] for even i, the high nibble for odd i
//   F32P  f32 in panels of 16 rows, for the CPU GEMM: panel g holds rows 16g..16g+15
//         as float[K][16], w[n, k] at 16 K (n / 16) + 16 k + n % 16, the rows of the
//         last panel past N zero (made at load by the CPU backend, never stored)
//
// A row's last block may be partial: its entries past K are stored as zero
// codes and never read back into a result.
#pragma once
#include <cstdint>

#include "tensor.h"

namespace mambart {

constexpr int64_t kQuantBlock = 32;

struct BlockQ8 {
  float d;
  int8_t q[kQuantBlock];
};

struct BlockQ4 {
  float d, m;
  uint8_t q[kQuantBlock / 2];
};

// Bytes of one row of K weights in `type` (F32P: per row of its panels).
int64_t row_bytes(DType type, int64_t K);

// F32P's rows per panel, and the rows a matrix of N rows stores in `type`
// (F32P: N rounded up to whole panels).
constexpr int64_t kPanelRows = 16;
inline int64_t stored_rows(DType type, int64_t N) {
  return type == DType::F32P ? (N + kPanelRows - 1) / kPanelRows * kPanelRows : N;
}

// Panels [g0, g1) of dst (F32P) from src (N, K) f32.
void pack_panels(const float* src, int64_t N, int64_t K, float* dst, int64_t g0, int64_t g1);

// Row n of an F32P matrix of K columns back to f32.
void panel_row(const float* src, int64_t K, int64_t n, float* dst);

// dst (rows, K) in `type` from src (rows, K) f32; dst holds rows * row_bytes(type, K) bytes.
void convert_rows(const float* src, int64_t rows, int64_t K, DType type, void* dst);

// One row back to f32 (embedding lookups, tests).
void dequantize_row(const void* src, DType type, int64_t K, float* dst);

// Activations for q4's integer products: x (K) in blocks of 32, each as
// q[32b + i] = rint(x[32b + i] * 127 / amax) with dx[b] = amax / 127, amax =
// max|x| over the block (dx = 0, q = 0 for a zero block); q past K is 0.
// q holds ceil(K/32) * 32 values, dx ceil(K/32).
void quantize_x_q8(const float* x, int64_t K, int8_t* q, float* dx);

// Activations for q8's integer products: the same with int16, q[32b + i] =
// rint(x[32b + i] * 32767 / amax), dx[b] = amax / 32767; a block holding a
// NaN or an infinity gets q = 0 and dx = NaN, so that it makes y NaN.
void quantize_x_q16(const float* x, int64_t K, int16_t* q, float* dx);

// The exact sum of block b of x (K): q4's minimum term, m_b * sum(x_b).
inline float block_sum(const float* x, int64_t K, int64_t b) {
  float s = 0.0f;
  for (int64_t k = b * kQuantBlock; k < K && k < (b + 1) * kQuantBlock; ++k) s += x[k];
  return s;
}

}  // namespace mambart
