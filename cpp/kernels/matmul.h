// matmul: y = x · wᵀ (+ bias), the one linear-layer product, for every
// weight type (formats in kernels/quantize.h).
//
//   x     (M, K)  f32 activations, row stride ldx
//   w     (N, K)  weight of type wtype, PyTorch Linear layout (out_features,
//                 in_features): row n holds out-feature n, rows are
//                 row_bytes(wtype, K) apart
//   bias  (N)     f32, or nullptr
//   y     (M, N)  f32, row stride ldy
//
// Decode calls it with M = batch (a matvec when M = 1), prefill with M =
// tokens. A call computes output columns [n0, n1): the backend splits N
// across threads, so every thread streams a disjoint slice of w, once
// whatever M is.
//
// q4 with M <= kMatmulDecodeRows multiplies in integers: each block of 32
// of x is rounded to int8 (quantize_x_q8 in kernels/quantize.h), so
//   y[m, n] = sum_b d_b dx_b (sum_i code_i qx_i) + m_b sum_i x_i  (+ bias),
// the minimum's term over the exact x (which also carries a NaN or an
// infinity of x into y, whatever the rounding made of it). q8 with M <=
// kMatmulDecodeRows does too, over x rounded to int16 (quantize_x_q16: an
// error of at most amax / 65534 per element, some 250 times below the
// weights' own, where the int8-to-float conversions of a float product
// bounded the decode by arithmetic rather than bandwidth):
//   y[m, n] = sum_b d_b dx_b (sum_i q_i qx_i)  (+ bias).
// On avx512 (VNNI), q8 and q4 take these integer products at every M, the
// prefill GEMM's too (cpu/gemm_vnni.cpp). Everything else, and q8 / q4
// with more rows or in a prefill on the other ISAs, is a float product
// over the dequantized weights.
//
// f32p (kernels/quantize.h: f32 in panels of 16 rows, the CPU backend's
// form of every f32 matrix on x86-64) needs no packing at any M, and every
// y[m, n] is one fused multiply-add chain in k order from the bias, on
// every ISA: the same bits whatever M, the split or the ISA. The ranges
// [n0, n1) start on whole panels.
#pragma once
#include <cstdint>

#include "tensor.h"

namespace mambart {

// Rows of x up to which a call takes the decode path (see cpu/matmul.cpp),
// unless it is a prefill's.
constexpr int64_t kMatmulDecodeRows = 32;

struct MatmulParams {
  const float* x;
  const void* w;
  DType wtype;
  const float* bias;
  float* y;
  int64_t M, N, K;
  int64_t ldx, ldy;
  // The rows are positions of one prefill: computed as the GEMM computes
  // them whatever M (never the decode path's order of sums), so that a
  // position's result does not depend on how its prompt was cut into calls.
  bool prefill = false;
  // Nonzero: the id of one split call (the backend's), shared by its ranges
  // [n0, n1): a decode kernel packs x once per id on each thread, not once
  // per range.
  uint64_t call = 0;
};

// One function per weight type; cpu/isa.cpp indexes them by DType.
namespace scalar {
void matmul_f32(const MatmulParams& p, int64_t n0, int64_t n1);
void matmul_f16(const MatmulParams& p, int64_t n0, int64_t n1);
void matmul_bf16(const MatmulParams& p, int64_t n0, int64_t n1);
void matmul_q8(const MatmulParams& p, int64_t n0, int64_t n1);
void matmul_q4(const MatmulParams& p, int64_t n0, int64_t n1);
void matmul_f32p(const MatmulParams& p, int64_t n0, int64_t n1);
}
namespace avx2 {
void matmul_f32(const MatmulParams& p, int64_t n0, int64_t n1);
void matmul_f16(const MatmulParams& p, int64_t n0, int64_t n1);
void matmul_bf16(const MatmulParams& p, int64_t n0, int64_t n1);
void matmul_q8(const MatmulParams& p, int64_t n0, int64_t n1);
void matmul_q4(const MatmulParams& p, int64_t n0, int64_t n1);
void matmul_f32p(const MatmulParams& p, int64_t n0, int64_t n1);
}
namespace avx512 {  // x86-64: every type's GEMM and decode (f32 / f16 / bf16 decode in 16 lanes: not avx2's bits)
void matmul_f32(const MatmulParams& p, int64_t n0, int64_t n1);
void matmul_f16(const MatmulParams& p, int64_t n0, int64_t n1);
void matmul_bf16(const MatmulParams& p, int64_t n0, int64_t n1);
void matmul_q8(const MatmulParams& p, int64_t n0, int64_t n1);
void matmul_q4(const MatmulParams& p, int64_t n0, int64_t n1);
void matmul_f32p(const MatmulParams& p, int64_t n0, int64_t n1);
}
namespace neon {  // arm64 builds only (cpu/matmul_neon.cpp)
void matmul_f32(const MatmulParams& p, int64_t n0, int64_t n1);
void matmul_f16(const MatmulParams& p, int64_t n0, int64_t n1);
void matmul_bf16(const MatmulParams& p, int64_t n0, int64_t n1);
void matmul_q8(const MatmulParams& p, int64_t n0, int64_t n1);
void matmul_q4(const MatmulParams& p, int64_t n0, int64_t n1);
}

}  // namespace mambart
