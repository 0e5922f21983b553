// Attention-layer kernels: causal self-attention over per-sequence KV caches,
// rotary position embeddings, and the squared-ReLU activation.
//
// attention: for query row r and head h (kv head g = h / (Hq / Hkv), grouped-query),
//
//   s_j = scale * q[r, h] . k[r][j, g]        j in [0, len[r])
//   out[r, h] = sum_j softmax(s)_j v[r][j, g]
//
//   q, out   (rows, Hq * d), row strides ldq, ldo
//   k[r], v[r]  row r's sequence cache, (capacity >= len[r], Hkv, d) each
//   len[r]   the keys row r sees: its position + 1 (causal)
//
// Keys are visited in blocks of kAttentionBlock with an online softmax
// (running max and sum, f32): no (rows, len) score matrix is ever formed. A
// call handles items [i0, i1) of the rows * Hq (row, head) pairs, row-major.
//
// rope (transformers' rotate_half layout): for every head of row r, the first
// `rot` dims (rot even, <= d) turn in pairs (i, i + rot/2), i < rot/2, by
// angle = pos[r] * inv_freq[i] (f32, as the reference computes it), with
// cos and sin times `scale` (YaRN's attention factor; 1 for the other types):
//
//   x_i <- x_i cos - x_{i+rot/2} sin;   x_{i+rot/2} <- x_{i+rot/2} cos + x_i sin
//
//   x (rows, H * d) row stride ldx, in place. A call handles rows [r0, r1).
//
// relu_sq (Nemotron-H's MLP): y[i] = max(x[i], 0)^2, an ElementwiseParams op.
#pragma once
#include <cstdint>

#include "kernels/elementwise.h"

namespace mambart {

constexpr int64_t kAttentionBlock = 64;
// Consecutive rows of one head that each block of keys visits in turn
// (cpu/attention.cpp); a prefill's tile reads a copy of each block, which
// 64 rows amortise (8 took a 512-token MHA prefill's attention 1.35x longer).
constexpr int64_t kAttentionTile = 64;

struct AttentionParams {
  const float* q;
  float* out;
  const float* const* k;
  const float* const* v;
  const int64_t* len;
  int64_t rows, n_heads, n_kv_heads, head_dim;
  float scale;
  int64_t ldq, ldo;
};

struct RopeParams {
  float* x;
  const int64_t* pos;
  const float* inv_freq;  // (rot / 2)
  float scale;
  int64_t rows, n_heads, head_dim, rot, ldx;
};

namespace scalar {
void attention(const AttentionParams& p, int64_t i0, int64_t i1);
void rope(const RopeParams& p, int64_t r0, int64_t r1);
void relu_sq(const ElementwiseParams& p, int64_t i0, int64_t i1);
}
namespace avx2 {
void attention(const AttentionParams& p, int64_t i0, int64_t i1);
void relu_sq(const ElementwiseParams& p, int64_t i0, int64_t i1);
}
namespace avx512 {  // x86-64: attention; relu_sq runs the avx2 code
void attention(const AttentionParams& p, int64_t i0, int64_t i1);
}
namespace neon {  // arm64 builds only
void attention(const AttentionParams& p, int64_t i0, int64_t i1);
void relu_sq(const ElementwiseParams& p, int64_t i0, int64_t i1);
}

}  // namespace mambart
