// Attention layers on the device (contract: cpp/kernels/attention.h): rotary
// embeddings, and causal grouped-query attention over per-sequence KV caches
// for prefill and decode alike. The pointer and length arrays of
// AttentionParams / RopeParams are in device memory here.
//
// Attention: one block per (row, head) item. Its keys are walked in blocks
// of kAttentionBlock with the CPU kernel's online softmax in f32 (running
// max m, sum l, accumulator acc): per block, phase 1 scores the keys (a
// thread per key), phase 2 takes the block's max and the weights, phase 3
// rescales acc and adds the weighted values (a thread per dim of the head).
// No (rows, len) score matrix is formed, and rows of a batch may have any
// lengths. m, l and acc live in shared memory; m is written only in a phase
// where no thread reads it (the "next max" slot is copied at the start of
// the next block's scoring), so the phases are race-free on the device.
#pragma once
#include "compat.cuh"
#include "kernels/attention.h"

namespace mambart {
namespace cuda {

constexpr int kAttentionThreads = 128;

// Shared floats per block: q (d), acc (d), scores and weights (2 blocks of
// keys), and m, next m, l.
MAMBART_HD inline int64_t attention_shared_floats(int64_t d) { return 2 * d + 2 * kAttentionBlock + 3; }

template <typename Block>
MAMBART_HD void attention_item(const AttentionParams& p, int64_t r, int64_t h, float* sh, Block& blk) {
  const int64_t d = p.head_dim, kv_ld = p.n_kv_heads * d, g = h / (p.n_heads / p.n_kv_heads), len = p.len[r];
  float *q = sh, *acc = sh + d, *s = sh + 2 * d, *w = s + kAttentionBlock, *st = w + kAttentionBlock;
  const float* K = p.k[r] + g * d;
  const float* V = p.v[r] + g * d;
  blk.phase([&](int tid, int nt) {
    for (int64_t i = tid; i < d; i += nt) q[i] = p.q[r * p.ldq + h * d + i], acc[i] = 0.0f;
    if (tid == 0) st[0] = st[1] = -INFINITY, st[2] = 0.0f;
  });
  for (int64_t j0 = 0; j0 < len; j0 += kAttentionBlock) {
    const int64_t nb = len - j0 < kAttentionBlock ? len - j0 : kAttentionBlock;
    blk.phase([&](int tid, int nt) {
      for (int64_t j = tid; j < nb; j += nt) {
        const float* k = K + (j0 + j) * kv_ld;
        float dot = 0.0f;
        for (int64_t i = 0; i < d; ++i) dot += q[i] * k[i];
        s[j] = dot * p.scale;
      }
      if (tid == 0) st[0] = st[1];  // the running max so far
    });
    blk.phase([&](int tid, int nt) {
      float m = st[0];
      for (int64_t j = 0; j < nb; ++j) m = s[j] > m ? s[j] : m;
      for (int64_t j = tid; j < nb; j += nt) w[j] = expf(s[j] - m);
      if (tid == 0) st[1] = m;
    });
    blk.phase([&](int tid, int nt) {
      const float rescale = expf(st[0] - st[1]);
      for (int64_t i = tid; i < d; i += nt) {
        float a = acc[i] * rescale;
        for (int64_t j = 0; j < nb; ++j) a += w[j] * V[(j0 + j) * kv_ld + i];
        acc[i] = a;
      }
      if (tid == 0) {
        float l = st[2] * rescale;
        for (int64_t j = 0; j < nb; ++j) l += w[j];
        st[2] = l;
      }
    });
  }
  blk.phase([&](int tid, int nt) {
    const float inv = 1.0f / st[2];
    for (int64_t i = tid; i < d; i += nt) p.out[r * p.ldo + h * d + i] = acc[i] * inv;
  });
}

// Row r, pair i < rot / 2, every head: the CPU kernel's angle and turn.
MAMBART_HD inline void rope_pair(const RopeParams& p, int64_t r, int64_t i) {
  const int64_t half = p.rot / 2;
  const float angle = static_cast<float>(p.pos[r]) * p.inv_freq[i], c = cosf(angle) * p.scale,
              s = sinf(angle) * p.scale;
  for (int64_t h = 0; h < p.n_heads; ++h) {
    float* x = p.x + r * p.ldx + h * p.head_dim;
    const float a = x[i], b = x[i + half];
    x[i] = a * c - b * s;
    x[i + half] = b * c + a * s;
  }
}

#if defined(__CUDACC__)
__global__ void attention_kernel(AttentionParams p) {
  extern __shared__ float sh[];
  DeviceBlock blk;
  attention_item(p, blockIdx.x / p.n_heads, blockIdx.x % p.n_heads, sh, blk);
}
__global__ void rope_kernel(RopeParams p) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i < p.rot / 2) rope_pair(p, blockIdx.y, i);
}

inline void launch_attention(const AttentionParams& p, cudaStream_t s) {
  const size_t shared = static_cast<size_t>(attention_shared_floats(p.head_dim)) * sizeof(float);
  attention_kernel<<<static_cast<unsigned>(p.rows * p.n_heads), kAttentionThreads, shared, s>>>(p);
}
inline void launch_rope(const RopeParams& p, cudaStream_t s) {
  rope_kernel<<<dim3(static_cast<unsigned>((p.rot / 2 + 63) / 64), static_cast<unsigned>(p.rows)), 64, 0, s>>>(p);
}
#endif

}  // namespace cuda
}  // namespace mambart
