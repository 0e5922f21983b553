// The prefill GEMM of q8 and q4 on AVX-512 with VNNI, in integers: the
// decodes' products (kernels/matmul.h) at every M. x is rounded per block
// of 32 as the decodes round it (int16 for q8, int8 for q4), so a block's
// dot product is one exact integer sum, made 32 (vpdpwssd) or 64
// (vpdpbusd) multiply-adds per instruction where the float GEMM over
// dequantized weights makes 16 per FMA: per block, per row and 16 columns,
// 16 vpdpwssd (q8) or 8 vpdpbusd (q4) and then one conversion, a multiply by
// d * dx and an FMA into the f32 result (q4: one more FMA for the minimum's
// m * sum(x)). Each y element is one chain over the blocks in k order from
// the bias, whatever the tile, the split of [n0, n1) or M.
//
// Weight panels, 16 columns each, per block of 32 k:
//   q8  16 x 64 bytes: vector t (0..15) holds, lane j, column j's int16
//       codes at k = 2t, 2t + 1; then d (16 floats)
//   q4  8 x 64 bytes: vector t (0..7) holds, lane j, column j's 4 codes at
//       the packed x positions 4t .. 4t + 3 (avx2::pack_x_q8's order: the
//       16 even k, then the 16 odd); then d and m (16 floats each)
// gathered from the rows (16 columns' dwords in one instruction).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include "cpu/matmul_x86.h"
#include "cpu/simd_math.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <algorithm>
#include <cstddef>
#include <cstring>

MAMBART_AVX512_BEGIN

namespace mambart {
namespace avx512 {
namespace {

using x86::round_up;
using x86::scratch;

using x86::kGemmNR;  // columns per panel
// Passes over K of at most the float GEMM's kKCMax, as many columns per pass
// as fit its kPanelBytes (in L2).
constexpr int64_t kBlocksMax = x86::kKCMax / kQuantBlock;

inline __mmask16 lanes(int64_t n) { return n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << n) - 1); }

// Bytes per panel and block: the codes, then the scales.
template <DType T>
constexpr int64_t kCodeBytes = T == DType::Q8 ? 16 * 64 : 8 * 64;
template <DType T>
constexpr int64_t kBlockBytes = kCodeBytes<T> + (T == DType::Q8 ? 64 : 128);

// x rounded once per call on each thread: q (M, nb * 32) in the order the
// panels take (int16 for q8, int8 for q4), dx (M, nb), and for q4 the
// exact block sums xs (M, nb).
struct XInt {
  int64_t nb;
  const char* q;
  const float *dx, *xs;
};

template <DType T>
struct XIntOf {};  // packed_once's record, one per type

template <DType T>
XInt pack_x(const MatmulParams& p) {
  const int64_t nb = (p.K + kQuantBlock - 1) / kQuantBlock;
  const int64_t qbytes = nb * kQuantBlock * (T == DType::Q8 ? 2 : 1);
  char* q = reinterpret_cast<char*>(scratch(0, p.M * qbytes / 4));
  float* dx = scratch(3, p.M * nb);
  float* xs = T == DType::Q4 ? scratch(1, p.M * nb) : nullptr;
  for (int64_t i = 0; i < p.M; ++i) {
    const float* x = p.x + i * p.ldx;
    if constexpr (T == DType::Q8) {
      avx2::pack_x_q16(x, p.K, reinterpret_cast<int16_t*>(q + i * qbytes), dx + i * nb);
    } else {
      avx2::pack_x_q8(x, p.K, reinterpret_cast<int8_t*>(q + i * qbytes), dx + i * nb);
      for (int64_t b = 0; b < nb; ++b) xs[i * nb + b] = block_sum(x, p.K, b);
    }
  }
  return {nb, q, dx, xs};
}

// Blocks [b0, b0 + nbk) of nr <= 16 rows of w (`stride` bytes apart) as
// one panel at dst; the columns past nr are zeros.
template <DType T>
void pack_panel(const char* w, int64_t stride, int64_t nr, int64_t b0, int64_t nbk, char* dst) {
  const __mmask16 m = lanes(nr);
  const __m512i idx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                         _mm512_set1_epi32(static_cast<int>(stride)));
  const __m512i zero = _mm512_setzero_si512();
  for (int64_t b = 0; b < nbk; ++b) {
    char* out = dst + b * kBlockBytes<T>;
    const char* block = w + (b0 + b) * int64_t{T == DType::Q8 ? sizeof(BlockQ8) : sizeof(BlockQ4)};
    auto gather = [&](int64_t offset) { return _mm512_mask_i32gather_epi32(zero, m, idx, block + offset, 1); };
    auto store = [&](int64_t at, __m512i v) { _mm512_store_si512(out + at, v); };
    if constexpr (T == DType::Q8) {
      for (int u = 0; u < 8; ++u) {  // codes 4u .. 4u + 3 of each column: the pairs t = 2u, 2u + 1
        const __m512i g = gather(offsetof(BlockQ8, q) + 4 * u);
        const __m512i even = _mm512_srai_epi16(_mm512_slli_epi16(g, 8), 8);  // words: codes 0, 2
        const __m512i odd = _mm512_srai_epi16(g, 8);                          // words: codes 1, 3
        store(2 * u * 64, _mm512_mask_blend_epi16(0xAAAAAAAA, even, _mm512_slli_epi32(odd, 16)));
        store((2 * u + 1) * 64, _mm512_mask_blend_epi16(0xAAAAAAAA, _mm512_srli_epi32(even, 16), odd));
      }
      store(kCodeBytes<T>, gather(offsetof(BlockQ8, d)));
    } else {
      const __m512i nibble = _mm512_set1_epi8(15);
      for (int u = 0; u < 4; ++u) {  // bytes 4u .. 4u + 3: low nibbles are positions 4u.., high 16 + 4u..
        const __m512i g = gather(offsetof(BlockQ4, q) + 4 * u);
        store(u * 64, _mm512_and_si512(g, nibble));
        store((4 + u) * 64, _mm512_and_si512(_mm512_srli_epi16(g, 4), nibble));
      }
      store(kCodeBytes<T>, gather(offsetof(BlockQ4, d)));
      store(kCodeBytes<T> + 64, gather(offsetof(BlockQ4, m)));
    }
  }
}

// y[0:MR, 0:nr] (+)= x[0:MR] . NP adjacent panels over nbk blocks; x at
// the pass's first block, `first` starts from the bias (or 0), not y.
template <DType T, int MR, int NP>
void tile(const XInt& x, int64_t b0, const char* wp, int64_t gs, int64_t nbk, float* y, int64_t ldy, int64_t nr,
          const float* bias, bool first) {
  constexpr int64_t kQ = T == DType::Q8 ? 2 : 1;  // bytes per x code
  constexpr int kSteps = T == DType::Q8 ? 16 : 8;
  const int64_t ldq = x.nb * kQuantBlock * kQ;
  __mmask16 m[NP];
  for (int j = 0; j < NP; ++j) m[j] = lanes(std::clamp<int64_t>(nr - 16 * j, 0, 16));
  const float* src = first ? bias : y;
  const int64_t lds = first ? 0 : ldy;
  __m512 acc[MR][NP];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NP; ++j)
      acc[i][j] = src ? _mm512_maskz_loadu_ps(m[j], src + i * lds + 16 * j) : _mm512_setzero_ps();
  for (int64_t b = 0; b < nbk; ++b) {
    const char* xq = x.q + (b0 + b) * kQuantBlock * kQ;
    __m512i dot[MR][NP];
    for (int i = 0; i < MR; ++i)
      for (int j = 0; j < NP; ++j) dot[i][j] = _mm512_setzero_si512();
#pragma GCC unroll 16
    for (int t = 0; t < kSteps; ++t) {
      __m512i wv[NP];
      for (int j = 0; j < NP; ++j) wv[j] = _mm512_load_si512(wp + j * gs + b * kBlockBytes<T> + t * 64);
      for (int i = 0; i < MR; ++i) {
        int32_t xi;
        std::memcpy(&xi, xq + i * ldq + 4 * t, 4);
        const __m512i xv = _mm512_set1_epi32(xi);
        for (int j = 0; j < NP; ++j)
          dot[i][j] = T == DType::Q8 ? _mm512_dpwssd_epi32(dot[i][j], wv[j], xv)
                                     : _mm512_dpbusd_epi32(dot[i][j], wv[j], xv);
      }
    }
    __m512 d[NP], mn[NP];
    for (int j = 0; j < NP; ++j) {
      const char* s = wp + j * gs + b * kBlockBytes<T> + kCodeBytes<T>;
      d[j] = _mm512_load_ps(reinterpret_cast<const float*>(s));
      if constexpr (T == DType::Q4) mn[j] = _mm512_load_ps(reinterpret_cast<const float*>(s + 64));
    }
    for (int i = 0; i < MR; ++i) {
      const __m512 dx = _mm512_set1_ps(x.dx[i * x.nb + b0 + b]);
      const __m512 xs = T == DType::Q4 ? _mm512_set1_ps(x.xs[i * x.nb + b0 + b]) : _mm512_setzero_ps();
      for (int j = 0; j < NP; ++j) {
        acc[i][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot[i][j]), _mm512_mul_ps(d[j], dx), acc[i][j]);
        if constexpr (T == DType::Q4) acc[i][j] = _mm512_fmadd_ps(mn[j], xs, acc[i][j]);
      }
    }
  }
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NP; ++j) _mm512_mask_storeu_ps(y + i * ldy + 16 * j, m[j], acc[i][j]);
}

// 12 int32 and 12 f32 accumulators of the 32 registers; per step 3 panel loads
// and 4 broadcasts feed 12 products (1 thread, N = 3072 K = 768, 256 rows:
// 4 x 3 took q4 from 260-281 GFLOP/s at 6 x 2 to 281-298, q8 from 151-169
// to 156-177; 5 x 2 and 3 x 4 in between).
constexpr int kMR = 4, kNP = 3;  // tile_rows' cases: np 1..3

template <DType T, int MR = 1>
void tile_rows(int mr, int np, const XInt& x, int64_t b0, const char* wp, int64_t gs, int64_t nbk, float* y,
               int64_t ldy, int64_t nr, const float* bias, bool first) {
  if constexpr (MR < kMR) {
    if (mr != MR) return tile_rows<T, MR + 1>(mr, np, x, b0, wp, gs, nbk, y, ldy, nr, bias, first);
  }
  switch (np) {
    case 1: return tile<T, MR, 1>(x, b0, wp, gs, nbk, y, ldy, nr, bias, first);
    case 2: return tile<T, MR, 2>(x, b0, wp, gs, nbk, y, ldy, nr, bias, first);
    default: return tile<T, MR, 3>(x, b0, wp, gs, nbk, y, ldy, nr, bias, first);
  }
}

template <DType T>
void gemm(const MatmulParams& p, int64_t n0, int64_t n1) {
  const XInt x = x86::packed_once<XIntOf<T>, XInt>(p, pack_x<T>);
  const int64_t passes = (x.nb + kBlocksMax - 1) / kBlocksMax;
  const int64_t nbb = (x.nb + passes - 1) / passes;  // blocks per pass: a function of K alone
  const int64_t gs = nbb * kBlockBytes<T>;  // bytes per panel
  constexpr int64_t kTileCols = kGemmNR * kNP;
  const int64_t ncb = std::max(kTileCols, x86::kPanelBytes / kGemmNR / gs * kGemmNR / kTileCols * kTileCols);
  char* wp = reinterpret_cast<char*>(scratch(2, ncb / kGemmNR * gs / 4));
  const int64_t stride = row_bytes(p.wtype, p.K);
  for (int64_t jc = n0; jc < n1; jc += ncb) {
    const int64_t nc = std::min(ncb, n1 - jc);
    for (int64_t b0 = 0; b0 < x.nb; b0 += nbb) {
      const int64_t nbk = std::min(nbb, x.nb - b0);
      for (int64_t jr = 0; jr < nc; jr += kGemmNR)
        pack_panel<T>(static_cast<const char*>(p.w) + (jc + jr) * stride, stride, std::min(kGemmNR, nc - jr), b0, nbk,
                      wp + jr / kGemmNR * gs);
      for (int64_t ic = 0; ic < p.M; ic += kMR) {
        const int mr = static_cast<int>(std::min<int64_t>(kMR, p.M - ic));
        const XInt xi = {x.nb, x.q + ic * x.nb * kQuantBlock * (T == DType::Q8 ? 2 : 1), x.dx + ic * x.nb,
                         x.xs ? x.xs + ic * x.nb : nullptr};
        for (int64_t jr = 0; jr < nc; jr += kTileCols) {
          const int64_t nr = std::min(kTileCols, nc - jr);
          tile_rows<T>(mr, static_cast<int>((nr + kGemmNR - 1) / kGemmNR), xi, b0, wp + jr / kGemmNR * gs, gs, nbk,
                       p.y + ic * p.ldy + jc + jr, p.ldy, nr, p.bias ? p.bias + jc + jr : nullptr, b0 == 0);
        }
      }
    }
  }
}

}  // namespace

void gemm_q8(const MatmulParams& p, int64_t n0, int64_t n1) { gemm<DType::Q8>(p, n0, n1); }
void gemm_q4(const MatmulParams& p, int64_t n0, int64_t n1) { gemm<DType::Q4>(p, n0, n1); }

}  // namespace avx512
}  // namespace mambart

MAMBART_AVX2_END
#endif  // x86-64
