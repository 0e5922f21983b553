// What the x86-64 matmuls share: cpu/matmul.cpp (avx2) and
// cpu/matmul_avx512.cpp, which runs the avx2 code wherever it has no
// version of its own (kernels/matmul.h has the semantics).
#pragma once

#if defined(__x86_64__) || defined(_M_X64)
#include <cstdint>

#include "kernels/matmul.h"
#include "kernels/quantize.h"

namespace mambart {
namespace x86 {

// Per-thread scratch, 64-byte aligned, grown on first use and then kept:
// no allocation per call in steady state. Slots: 0 = packed x rows (decode),
// 1 = per-block x sums (decode, q4) or the block scales in decode_q8's lanes
// (avx2 q8), 2 = a weight panel (prefill), 3 = x's block scales (decode,
// q4 and q8), 4 = the block scales 8 times over (avx512 q4 and q8).
float* scratch(int slot, int64_t floats);

inline int64_t round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

// x packed once per call on each thread (MatmulParams::call): the ranges of
// one call reuse what its first range on this thread packed into the
// scratch. `Tag` keeps one record per packing, so another packing in between
// (another call, another id) never passes for this one.
template <class Tag, class Packed, class Pack>
Packed packed_once(const MatmulParams& p, Pack pack) {
  thread_local uint64_t id = 0;
  thread_local Packed last{};
  if (p.call == 0 || p.call != id) {
    last = pack(p);
    id = p.call;
  }
  return last;
}

// Output columns per flush. Rows write into a small buffer that is copied
// to y row by row: y's rows are often 4 KB multiples apart (in_proj of a
// 130m model: N = 3072), and scattered stores at that stride made M = 8
// run at 9 GB/s instead of 20 (f32, 1 thread).
constexpr int64_t kDecodeCols = 64;

// From 3 rows of x on, the FMAs per weight byte slow the weight stream
// below what the hardware prefetcher keeps ahead of; prefetching 4 KB ahead
// (the next rows: they follow in memory) took a 130m model's f32 decode at
// batch 8 from 325-362 to 483-511 tok/s, 2 threads. One row needs none.
constexpr int64_t kPrefetchBytes = 4096;

// The prefill GEMMs' weight panels (cpu/matmul.cpp): 16 output columns side
// by side per k, K cut into equal blocks of at most kKCMax, as many columns
// as fit kPanelBytes (in L2).
constexpr int64_t kGemmNR = 16;
static_assert(kGemmNR == kPanelRows, "f32p's panels are the GEMM's");
constexpr int64_t kKCMax = 1024;
constexpr int64_t kPanelBytes = 256 * 1024;

// k per panel (kcb, a multiple of 8) and columns per panel (ncb, a multiple
// of kGemmNR) for K: a function of K alone, so every split of N sums alike.
inline void gemm_blocks(int64_t K, int64_t& kcb, int64_t& ncb) {
  const int64_t nkb = (K + kKCMax - 1) / kKCMax;
  kcb = round_up((K + nkb - 1) / nkb, 8);
  ncb = kPanelBytes / (kcb * 4) / kGemmNR * kGemmNR;
  if (ncb < kGemmNR) ncb = kGemmNR;
}

// A GEMM block's weights as panels: columns [jc, jc + nc) at k in [pc, pc +
// kc). Returns where columns [jc, jc + 16) start, and in ld the floats per
// 16 columns onward: f32p's panels in place, or else packed into wp by
// pack(rows, stride, nr, dst) for each 16 columns (nr of them real).
template <class Pack>
const float* block_panels(const MatmulParams& p, int64_t jc, int64_t nc, int64_t pc, int64_t kc, float* wp,
                          int64_t& ld, Pack pack) {
  if (p.wtype == DType::F32P) {
    ld = p.K;
    return static_cast<const float*>(p.w) + jc * p.K + pc * kGemmNR;
  }
  const int64_t stride = row_bytes(p.wtype, p.K);
  for (int64_t jr = 0; jr < nc; jr += kGemmNR)
    pack(static_cast<const char*>(p.w) + (jc + jr) * stride, stride, nc - jr < kGemmNR ? nc - jr : kGemmNR,
         wp + jr * kc);
  ld = kc;
  return wp;
}

}  // namespace x86

// AVX2 code (cpu/matmul.cpp), callable from the wider ISAs' kernels.
namespace avx2 {
// One row of x (K) as q4's integer decode reads it: quantize_x_q8's values
// into q (nb = K / 32 rounded up blocks of 32 int8) and scales into dx, each
// block's int8 reordered to its 16 even-k then 16 odd-k.
void pack_x_q8(const float* x, int64_t K, int8_t* q, float* dx);
// One row of x (K) as q8's integer decode reads it: quantize_x_q16's values
// into q (nb = K / 32 rounded up blocks of 32 int16, in order) and dx.
void pack_x_q16(const float* x, int64_t K, int16_t* q, float* dx);
// Each block's exact sum of x, 8 rows side by side: xs (ceil(M / 8), nbs, 8)
// for the nb = K / 32 rounded up blocks, zero for the rows past M in the
// last group and the blocks [nb, nbs).
void block_sums8(const MatmulParams& p, int64_t nbs, float* xs);
// wp[k][0:16] = row r < nr of w (rows `stride` bytes apart, of `type`), at
// column pc + k, as f32, for k < kc; zeros for r >= nr: a GEMM panel.
void pack_panel(DType type, const char* w, int64_t stride, int64_t nr, int64_t pc, int64_t kc, int64_t K, float* wp);
}  // namespace avx2

// The prefill GEMMs of q8 and q4 in integers (cpu/gemm_vnni.cpp).
namespace avx512 {
void gemm_q8(const MatmulParams& p, int64_t n0, int64_t n1);
void gemm_q4(const MatmulParams& p, int64_t n0, int64_t n1);
}  // namespace avx512

}  // namespace mambart

#endif  // x86-64
