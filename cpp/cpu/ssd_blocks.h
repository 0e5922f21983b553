// The ISA-independent pieces of the SSD block-form prefill (cpu/ssd.cpp,
// cpu/ssd_neon.cpp): the operand description of its one product kernel,
// and the per-thread scratch.
#pragma once
#include <cstdint>
#include <vector>

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

}  // namespace ssd_blocks
}  // namespace mambart
