// The ISA-independent pieces of the SSD block-form prefill (cpu/ssd.cpp,
// cpu/ssd_neon.cpp): the operand description of its one product kernel,
// the per-thread scratch and the walk over groups and chunks.
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

#include "kernels/ssd.h"

namespace mambart {
namespace ssd_blocks {

// c (rows, cols) = beta c + a b, with
//   a(r, k) = a[r * ars + k * aks]    broadcast, any strides (transposes are free)
//   b(k, col) = b[k * ldb + col]      read in the ISA's vectors: readable up to
//                                     cols rounded up to the vector width
//   c(r, col) = c[r * ldc + col]      only columns < cols are read or written
// beta == 0 ignores c's old contents (scratch may hold anything).
struct Mm {
  const float* a;
  int64_t ars, aks;
  const float* b;
  int64_t ldb;
  float* c;
  int64_t ldc;
  float beta;
};

// How much of the product a caller needs, for triangular operands:
//   kFull
//   kCausal: column block [c0, c1) sums k < min(K, c1) only (b(k, col) = 0 for k > col)
//   kUpper:  column block [c0, c1) computes rows r < c1 only (c(r, col) unused for r > col)
enum class MmShape { kFull, kCausal, kUpper };

inline float* grow(std::vector<float>& v, int64_t n) {
  if (static_cast<int64_t>(v.size()) < n) v.resize(static_cast<size_t>(n));
  return v.data();
}

// Scratch of one thread, sized by the largest chunk seen (about 128 KB at
// q = 64, P = 64, N = 128): no allocation per call in steady state.
struct SsdScratch {
  std::vector<float> ct, bp, cbt, mt, yt, xw, tok;
};
inline thread_local SsdScratch t_scratch;

// Heads [h0, h1) of one sequence, per group and chunk of q tokens: the
// group's operands once (group_chunk fills Ct, Bp, CBt), then each of its
// heads (head_chunk). W is the ISA's vector width: q and N are rounded up
// to it for the scratch layouts.
template <int64_t W, class GroupChunk, class HeadChunk>
void walk_chunks(const SsdParams& p, int64_t h0, int64_t h1, GroupChunk group_chunk, HeadChunk head_chunk) {
  const int64_t heads_per_group = p.H / p.G, NW = (p.N + W - 1) / W * W;
  SsdScratch& w = t_scratch;
  if (h0 >= h1) return;
  for (int64_t g = h0 / heads_per_group; g * heads_per_group < h1; ++g) {
    const int64_t ha = std::max(h0, g * heads_per_group), hb = std::min(h1, (g + 1) * heads_per_group);
    for (int64_t c0 = 0; c0 < p.seqlen; c0 += p.chunk) {
      const int64_t q = std::min(p.chunk, p.seqlen - c0), QW = (q + W - 1) / W * W;
      float* ct = grow(w.ct, p.N * QW);
      float* bp = grow(w.bp, q * NW);
      float* cbt = grow(w.cbt, QW * QW);
      group_chunk(p, g, c0, q, QW, ct, bp, cbt);
      for (int64_t h = ha; h < hb; ++h) head_chunk(p, h, c0, q, QW, ct, bp, cbt, w);
    }
  }
}

}  // namespace ssd_blocks
}  // namespace mambart
