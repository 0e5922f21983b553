// matmul for AVX-512 with VNNI: the decodes (M <= kMatmulDecodeRows) of q4
// and q8, in integers with vpdpbusd and vpdpwssd (their GEMM too, in
// cpu/gemm_vnni.cpp); the prefill GEMM of the other weight types with
// 512-bit tiles; the dense types' decode (cpu/matmul_dense_x86.h) in
// 16-lane registers. See kernels/matmul.h.
// GCC 12 warns of -Wmaybe-uninitialized inside its own avx512fintrin.h
// (the _mm512_undefined_* operands of permutes, shifts and conversions);
// the location is the header's, so the pragma must precede the include.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include "cpu/matmul_x86.h"
#include "cpu/simd_math.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <algorithm>
#include <cstring>

#include "kernels/quantize.h"

MAMBART_AVX512_BEGIN

namespace mambart {
namespace avx512 {
namespace {

using x86::kDecodeCols;
using x86::kPrefetchBytes;
using x86::round_up;
using x86::scratch;

#include "cpu/matmul_dense_x86.h"

// ---------------------------------------------------------------- dense decode
//
// decode_dense (cpu/matmul_dense_x86.h) in 16-lane registers: from a few
// rows on the decode is bound by FMAs, and Zen 5's are 512 bits wide (f32,
// N=3072 K=768, 2 threads: M = 16 at 187-204 GFLOP/s against 168-178 in 8
// lanes, M = 32 255-268 against 179-185; M <= 8 is bound by memory, alike).
// One chain per row with groups of up to 24 rows fell to 110 at M = 16: x
// outgrew L1 (kDenseGroupXBytes).

struct Lanes16 {
  using reg = __m512;
  static constexpr int64_t kLanes = 16;
  static constexpr int kChains = kDenseChains;
  static reg zero() { return _mm512_setzero_ps(); }
  static reg load(const float* p) { return _mm512_load_ps(p); }
  static reg fma(reg a, reg b, reg c) { return _mm512_fmadd_ps(a, b, c); }
  static reg add(reg a, reg b) { return _mm512_add_ps(a, b); }
  static float hsum(reg v) { return _mm512_reduce_add_ps(v); }
};

inline __mmask16 lanes(int64_t n) { return n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << n) - 1); }

// load(row, k): weights [k, k+16) as f32; load_tail(row, k, n): [k, k+n),
// n < 16, zeros after, reading nothing past k + n.
struct F32x16 {
  using V = Lanes16;
  static constexpr int64_t kBytes = 4;
  static __m512 load(const char* row, int64_t k) { return _mm512_loadu_ps(reinterpret_cast<const float*>(row) + k); }
  static __m512 load_tail(const char* row, int64_t k, int64_t n) {
    return _mm512_maskz_loadu_ps(lanes(n), reinterpret_cast<const float*>(row) + k);
  }
};

struct F16x16 {
  using V = Lanes16;
  static constexpr int64_t kBytes = 2;
  static __m512 load(const char* row, int64_t k) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + 2 * k)));
  }
  static __m512 load_tail(const char* row, int64_t k, int64_t n) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(lanes(n), row + 2 * k));
  }
};

struct BF16x16 {  // bf16 is the top half of an f32
  using V = Lanes16;
  static constexpr int64_t kBytes = 2;
  static __m512 cvt(__m256i h) { return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)); }
  static __m512 load(const char* row, int64_t k) {
    return cvt(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + 2 * k)));
  }
  static __m512 load_tail(const char* row, int64_t k, int64_t n) { return cvt(_mm256_maskz_loadu_epi16(lanes(n), row + 2 * k)); }
};

// 2 chains per row for 12 rows fit the 32 registers.
constexpr int kDenseGroup = 12;

// x packed for decode_q4, nbp = the blocks rounded up to even, the pad
// block all zeros:
//   q (M, nbp, 32)    int8 in avx2::pack_x_q8's order
//   dx8 (M, nbp, 8)   each block's scale 8 times: one load per block pair
//   xs (M/8, nbp, 8)  exact block sums, 8 rows side by side
struct PackedX {
  int64_t nb, nbp;
  const int8_t* q;
  const float *dx8, *xs;
};

PackedX pack_x(const MatmulParams& p) {
  const int64_t nb = (p.K + kQuantBlock - 1) / kQuantBlock, nbp = round_up(nb, 2);
  int8_t* q = reinterpret_cast<int8_t*>(scratch(0, p.M * nbp * kQuantBlock / 4));
  float* dx = scratch(3, nbp);
  float* dx8 = scratch(4, p.M * nbp * 8);
  float* xs = scratch(1, round_up(p.M, 8) * nbp);
  for (int64_t i = 0; i < p.M; ++i) {
    int8_t* qi = q + i * nbp * kQuantBlock;
    avx2::pack_x_q8(p.x + i * p.ldx, p.K, qi, dx);
    std::memset(qi + nb * kQuantBlock, 0, static_cast<size_t>((nbp - nb) * kQuantBlock));
    for (int64_t b = 0; b < nbp; ++b)
      _mm256_store_ps(dx8 + (i * nbp + b) * 8, _mm256_set1_ps(b < nb ? dx[b] : 0.0f));
  }
  avx2::block_sums8(p, nbp, xs);
  return {nb, nbp, q, dx8, xs};
}

// Two blocks per step, in 512-bit registers. One masked load takes both
// blocks' 48 bytes (qwords: d,m | q | q | d,m | q | q; the second block is
// left out, zeros, past the last block): a qword permute and per-qword
// shifts make the four 128-bit lanes the low nibbles (even k) and high
// nibbles (odd k) of the first block, then of the second, the order of
// pack_x_q8's int8. vpdpbusd multiplies the unsigned codes by the signed x
// and adds groups of 4 into int32 in one instruction (avx2: maddubs + madd);
// one FMA per row and block pair adds them times d * dx, lanes 0-7 the
// first block's, 8-15 the second's. The minimum's term runs for all 8 rows
// in one FMA per pair.
// Unlike avx2's, it prefetches for every MR: without it one row ran at
// 6 GB/s instead of 34 (N=3072 K=768, 1 thread), as if the masked loads
// left the hardware prefetcher idle.
template <int MR>
void decode_q4(const char* w, const PackedX& x, __m512 (&out)[MR], __m512& mterm) {
  const __m512i qidx = _mm512_setr_epi64(1, 2, 1, 2, 4, 5, 4, 5);
  const __m512i shift = _mm512_setr_epi64(0, 0, 4, 4, 0, 0, 4, 4);
  const __m512i nibble = _mm512_set1_epi8(15);
  const __m512i didx = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 6, 6, 6, 6, 6, 6, 6, 6);
  const __m512i midx = _mm512_setr_epi32(1, 1, 1, 1, 1, 1, 1, 1, 7, 7, 7, 7, 7, 7, 7, 7);
  const BlockQ4* blk = reinterpret_cast<const BlockQ4*>(w);
  __m512 acc[MR];
  for (int i = 0; i < MR; ++i) acc[i] = _mm512_setzero_ps();
  __m512 ms = _mm512_setzero_ps();
  for (int64_t b = 0; b < x.nbp; b += 2) {
    _mm_prefetch(w + b * int64_t{sizeof(BlockQ4)} + kPrefetchBytes, _MM_HINT_T0);
    const __m512i raw = _mm512_maskz_loadu_epi64(b + 1 < x.nb ? 0x3F : 0x07, blk + b);
    const __m512i codes = _mm512_and_si512(_mm512_srlv_epi64(_mm512_permutexvar_epi64(qidx, raw), shift), nibble);
    const __m512 d = _mm512_permutexvar_ps(didx, _mm512_castsi512_ps(raw));
    for (int i = 0; i < MR; ++i) {
      const __m512i qx = _mm512_load_si512(x.q + (i * x.nbp + b) * kQuantBlock);
      const __m512i dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), codes, qx);
      const __m512 scale = _mm512_mul_ps(d, _mm512_load_ps(x.dx8 + (i * x.nbp + b) * 8));
      acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), scale, acc[i]);
    }
    ms = _mm512_fmadd_ps(_mm512_permutexvar_ps(midx, _mm512_castsi512_ps(raw)), _mm512_load_ps(x.xs + 8 * b), ms);
  }
  for (int i = 0; i < MR; ++i) out[i] = acc[i];
  mterm = ms;
}

// y[0:MR, c0:c1] for one group of MR <= 8 rows of x (x and y at the
// group's first row).
template <int MR>
void decode_rows(const MatmulParams& p, const PackedX& x, float* y, int64_t c0, int64_t c1) {
  const int64_t stride = row_bytes(p.wtype, p.K);
  const char* w = static_cast<const char*>(p.w);
  alignas(64) float yb[MR * kDecodeCols];
  for (int64_t n = c0; n < c1; ++n) {
    __m512 acc[MR], mterm;
    decode_q4<MR>(w + n * stride, x, acc, mterm);
    alignas(32) float m[8];
    _mm256_store_ps(m, _mm256_add_ps(_mm512_castps512_ps256(mterm), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(mterm), 1))));
    const float bias = p.bias ? p.bias[n] : 0.0f;
    for (int i = 0; i < MR; ++i) yb[i * kDecodeCols + (n - c0)] = _mm512_reduce_add_ps(acc[i]) + m[i] + bias;
  }
  for (int i = 0; i < MR; ++i) std::memcpy(y + i * p.ldy + c0, yb + i * kDecodeCols, static_cast<size_t>(c1 - c0) * 4);
}

// Groups of 8 rows take each chunk of kDecodeCols weight rows in turn, as
// the avx2 decode does, so only the first reads it from memory.
void decode(const MatmulParams& p, int64_t n0, int64_t n1) {
  const PackedX x = x86::packed_once<PackedX, PackedX>(p, pack_x);
  for (int64_t c0 = n0; c0 < n1; c0 += kDecodeCols) {
    const int64_t c1 = std::min(n1, c0 + kDecodeCols);
    for (int64_t g = 0; g < p.M; g += 8) {
      const PackedX xg = {x.nb, x.nbp, x.q + g * x.nbp * kQuantBlock, x.dx8 + g * x.nbp * 8, x.xs + g * x.nbp};
      float* yg = p.y + g * p.ldy;
      switch (std::min<int64_t>(8, p.M - g)) {
        case 1: decode_rows<1>(p, xg, yg, c0, c1); break;
        case 2: decode_rows<2>(p, xg, yg, c0, c1); break;
        case 3: decode_rows<3>(p, xg, yg, c0, c1); break;
        case 4: decode_rows<4>(p, xg, yg, c0, c1); break;
        case 5: decode_rows<5>(p, xg, yg, c0, c1); break;
        case 6: decode_rows<6>(p, xg, yg, c0, c1); break;
        case 7: decode_rows<7>(p, xg, yg, c0, c1); break;
        default: decode_rows<8>(p, xg, yg, c0, c1); break;
      }
    }
  }
}

// ---------------------------------------------------------------- q8

// x packed for decode_q8, nbp = the blocks rounded up to even, the pad
// block all zeros:
//   q (M, nbp, 32)   int16 per block (avx2::pack_x_q16), in order
//   dx8 (M, nbp, 8)  each block's scale 8 times: one load per block pair
struct PackedX16 {
  int64_t nb, nbp;
  const int16_t* q;
  const float* dx8;
};

PackedX16 pack_x16(const MatmulParams& p) {
  const int64_t nb = (p.K + kQuantBlock - 1) / kQuantBlock, nbp = round_up(nb, 2);
  int16_t* q = reinterpret_cast<int16_t*>(scratch(0, p.M * nbp * kQuantBlock / 2));
  float* dx = scratch(3, nbp);
  float* dx8 = scratch(4, p.M * nbp * 8);
  for (int64_t i = 0; i < p.M; ++i) {
    int16_t* qi = q + i * nbp * kQuantBlock;
    avx2::pack_x_q16(p.x + i * p.ldx, p.K, qi, dx);
    std::memset(qi + nb * kQuantBlock, 0, static_cast<size_t>((nbp - nb) * kQuantBlock) * 2);
    for (int64_t b = 0; b < nbp; ++b)
      _mm256_store_ps(dx8 + (i * nbp + b) * 8, _mm256_set1_ps(b < nb ? dx[b] : 0.0f));
  }
  return {nb, nbp, q, dx8};
}

// q8 in integers (kernels/matmul.h), two blocks per step, as avx2's
// decode_q8 in 512-bit registers: a block's 32 codes widen to one register
// of int16, vpdpwssd multiplies them by x's int16 and adds pairs into 16
// int32; two 128-bit lane shuffles and an add fold the two blocks' 16 + 16
// into 8 + 8 (lanes 0-7 the first block's), so that one conversion and one
// FMA, times d * dx in those lanes, serve a row and block pair (|sum| <= 4 *
// 127 * 32767 < 2^24: converted exactly). Pairs alternate between two
// accumulators (at one row the chain of one FMA per pair would bound the
// loop by its latency). An odd last block pairs with zeros. The float
// decode this replaces took two conversions of the codes and three FMA-unit
// operations per block and row, and at one row stayed below the memory's
// pace. One prefetch per block (36 bytes: every 64-byte line is touched).
template <int MR>
inline void q8_pair(const BlockQ8* blk, const PackedX16& x, int64_t b, const char* w, __m512 (&acc)[MR]) {
  _mm_prefetch(w + b * int64_t{sizeof(BlockQ8)} + kPrefetchBytes, _MM_HINT_T0);
  _mm_prefetch(w + (b + 1) * int64_t{sizeof(BlockQ8)} + kPrefetchBytes, _MM_HINT_T0);
  const bool two = b + 1 < x.nb;
  const __m512i c0 = _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk[b].q)));
  const __m512i c1 = two ? _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk[b + 1].q)))
                         : _mm512_setzero_si512();
  const __m512 d = _mm512_mask_mov_ps(_mm512_set1_ps(blk[b].d), 0xFF00, _mm512_set1_ps(two ? blk[b + 1].d : 0.0f));
  for (int i = 0; i < MR; ++i) {
    const int16_t* q = x.q + (i * x.nbp + b) * kQuantBlock;
    const __m512i t0 = _mm512_dpwssd_epi32(_mm512_setzero_si512(), c0, _mm512_load_si512(q));
    const __m512i t1 = _mm512_dpwssd_epi32(_mm512_setzero_si512(), c1, _mm512_load_si512(q + kQuantBlock));
    const __m512i t = _mm512_add_epi32(_mm512_shuffle_i32x4(t0, t1, 0x44), _mm512_shuffle_i32x4(t0, t1, 0xEE));
    const __m512 scale = _mm512_mul_ps(d, _mm512_load_ps(x.dx8 + (i * x.nbp + b) * 8));
    acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(t), scale, acc[i]);
  }
}

template <int MR>
void decode_q8(const char* w, const PackedX16& x, __m512 (&out)[MR]) {
  const BlockQ8* blk = reinterpret_cast<const BlockQ8*>(w);
  __m512 acc[2][MR];
  for (int i = 0; i < MR; ++i) acc[0][i] = acc[1][i] = _mm512_setzero_ps();
  int64_t b = 0;
  for (; b + 4 <= x.nbp; b += 4) {
    q8_pair<MR>(blk, x, b, w, acc[0]);
    q8_pair<MR>(blk, x, b + 2, w, acc[1]);
  }
  if (b < x.nbp) q8_pair<MR>(blk, x, b, w, acc[0]);
  for (int i = 0; i < MR; ++i) out[i] = _mm512_add_ps(acc[0][i], acc[1][i]);
}

template <int MR>
void decode_q8_rows(const MatmulParams& p, const PackedX16& x, float* y, int64_t c0, int64_t c1) {
  const int64_t stride = row_bytes(p.wtype, p.K);
  const char* w = static_cast<const char*>(p.w);
  alignas(64) float yb[MR * kDecodeCols];
  for (int64_t n = c0; n < c1; ++n) {
    __m512 acc[MR];
    decode_q8<MR>(w + n * stride, x, acc);
    const float bias = p.bias ? p.bias[n] : 0.0f;
    for (int i = 0; i < MR; ++i) yb[i * kDecodeCols + (n - c0)] = _mm512_reduce_add_ps(acc[i]) + bias;
  }
  for (int i = 0; i < MR; ++i) std::memcpy(y + i * p.ldy + c0, yb + i * kDecodeCols, static_cast<size_t>(c1 - c0) * 4);
}

// As decode: groups of 8 rows take each chunk of weight rows in turn.
void decode_q8_all(const MatmulParams& p, int64_t n0, int64_t n1) {
  const PackedX16 x = x86::packed_once<PackedX16, PackedX16>(p, pack_x16);
  for (int64_t c0 = n0; c0 < n1; c0 += kDecodeCols) {
    const int64_t c1 = std::min(n1, c0 + kDecodeCols);
    for (int64_t g = 0; g < p.M; g += 8) {
      const PackedX16 xg = {x.nb, x.nbp, x.q + g * x.nbp * kQuantBlock, x.dx8 + g * x.nbp * 8};
      float* yg = p.y + g * p.ldy;
      switch (std::min<int64_t>(8, p.M - g)) {
        case 1: decode_q8_rows<1>(p, xg, yg, c0, c1); break;
        case 2: decode_q8_rows<2>(p, xg, yg, c0, c1); break;
        case 3: decode_q8_rows<3>(p, xg, yg, c0, c1); break;
        case 4: decode_q8_rows<4>(p, xg, yg, c0, c1); break;
        case 5: decode_q8_rows<5>(p, xg, yg, c0, c1); break;
        case 6: decode_q8_rows<6>(p, xg, yg, c0, c1); break;
        case 7: decode_q8_rows<7>(p, xg, yg, c0, c1); break;
        default: decode_q8_rows<8>(p, xg, yg, c0, c1); break;
      }
    }
  }
}

// ---------------------------------------------------------------- prefill
//
// M > kMatmulDecodeRows, and any prefill: avx2's blocked GEMM (the same panels, packed by
// avx2::pack_panel, the same k order per output) with a 12 x 32 tile of y in
// 24 of the 32 zmm registers: per k, two panel loads (two adjacent 16-column
// panels) and 12 broadcasts of x feed 24 FMAs of 16 lanes, where avx2's
// 6 x 16 tile fed 12 of 8. Each y element is still one FMA chain in k order
// from the bias, so any split of [n0, n1) gives the same bits as avx2's.
// A 2048-token prefill of a Granite-4.0-H-shaped model (d_model 1024, f32)
// went from 160 to 245 tokens/s (2 threads of an AVX-512 EPYC, loaded).

using x86::kGemmNR;

// y[0:MR, 0:nr] (+)= x[0:MR, 0:kc] . NP adjacent 16-column panels, wp and
// each next one `gs` floats on; `first` starts from bias (or 0) instead of y.
template <int MR, int NP>
void gemm_tile(const float* x, int64_t ldx, const float* wp, int64_t gs, int64_t kc, float* y, int64_t ldy,
               int64_t nr, const float* bias, bool first) {
  __mmask16 m[NP];
  const float* w[NP];
  for (int j = 0; j < NP; ++j) m[j] = lanes(std::clamp<int64_t>(nr - 16 * j, 0, 16)), w[j] = wp + j * gs;
  const float* src = first ? bias : y;
  const int64_t lds = first ? 0 : ldy;
  __m512 acc[MR][NP];
#pragma GCC unroll 12
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NP; ++j)
      acc[i][j] = src ? _mm512_maskz_loadu_ps(m[j], src + i * lds + 16 * j) : _mm512_setzero_ps();
#pragma GCC unroll 2
  for (int64_t k = 0; k < kc; ++k) {
    __m512 wv[NP];
    for (int j = 0; j < NP; ++j) wv[j] = _mm512_loadu_ps(w[j] + k * kGemmNR);
#pragma GCC unroll 12
    for (int i = 0; i < MR; ++i) {
      const __m512 xv = _mm512_set1_ps(x[i * ldx + k]);
      for (int j = 0; j < NP; ++j) acc[i][j] = _mm512_fmadd_ps(xv, wv[j], acc[i][j]);
    }
  }
#pragma GCC unroll 12
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NP; ++j) _mm512_mask_storeu_ps(y + i * ldy + 16 * j, m[j], acc[i][j]);
}

using Tile = void (*)(const float*, int64_t, const float*, int64_t, int64_t, float*, int64_t, int64_t,
                      const float*, bool);

// The tile of mr rows and np panels (at most 24 accumulators of the 32 registers).
template <int NP, int MR = 1>
Tile tile_of(int mr) {
  if constexpr (MR > 12 || MR * NP > 24)
    return nullptr;
  else
    return mr == MR ? gemm_tile<MR, NP> : tile_of<NP, MR + 1>(mr);
}

Tile tile(int mr, int np) {
  switch (np) {
    case 1: return tile_of<1>(mr);
    case 2: return tile_of<2>(mr);
    case 3: return tile_of<3>(mr);
    default: return tile_of<4>(mr);
  }
}

// Tiles of y: 12 rows x 32 columns (24 of the 32 zmm registers: per k, two
// panel loads and 12 broadcasts feed 24 FMAs), where avx2's 6 x 16 fed 12
// of 8. With f32p's panels in place and few rows, 6 x 64: each weight line
// read from memory serves 6 rows, where 12 x 32 left a 16-row decode at 4
// for the rows past 12 (N=3072 K=768, cold weights, 1 thread: M = 8 111
// against 81 GFLOP/s, M = 16 148 against 109). Each y element is one FMA
// chain in k order from the bias, whatever the tile: any split of [n0, n1)
// gives the same bits as avx2's. A 2048-token prefill of a Granite-4.0-H-
// shaped model (d_model 1024, f32) went from 160 to 245 tokens/s with the
// 12 x 32 tiles (2 threads of an AVX-512 EPYC, loaded).
void gemm(const MatmulParams& p, int64_t n0, int64_t n1) {
  const bool in_place = p.wtype == DType::F32P;
  const bool wide = in_place && p.M <= kMatmulDecodeRows;
  const int64_t rows = wide ? 6 : 12, cols = wide ? 4 * kGemmNR : 2 * kGemmNR;
  int64_t kcb, ncb;
  x86::gemm_blocks(p.K, kcb, ncb);
  if (in_place) ncb = std::max(cols, ncb / cols * cols);  // no scratch to fit: whole tiles
  float* wp = in_place ? nullptr : scratch(2, ncb * kcb);
  for (int64_t jc = n0; jc < n1; jc += ncb) {
    const int64_t nc = std::min(ncb, n1 - jc);
    for (int64_t pc = 0; pc < p.K; pc += kcb) {
      const int64_t kc = std::min(kcb, p.K - pc);
      int64_t ld;
      auto pack = [&](const char* w, int64_t stride, int64_t nr, float* dst) {
        avx2::pack_panel(p.wtype, w, stride, nr, pc, kc, p.K, dst);
      };
      const float* panels = x86::block_panels(p, jc, nc, pc, kc, wp, ld, pack);
      for (int64_t ic = 0; ic < p.M; ic += rows) {
        const int mr = static_cast<int>(std::min(rows, p.M - ic));
        for (int64_t jr = 0; jr < nc; jr += cols) {
          const int64_t nr = std::min(cols, nc - jr);
          tile(mr, static_cast<int>((nr + kGemmNR - 1) / kGemmNR))(
              p.x + ic * p.ldx + pc, p.ldx, panels + jr * ld, kGemmNR * ld, kc, p.y + ic * p.ldy + jc + jr, p.ldy,
              nr, p.bias ? p.bias + jc + jr : nullptr, pc == 0);
        }
      }
    }
  }
}

// The GEMM's cases (a prefill's at any M); the rest (decode, empty) go to `other`.
bool use_gemm(const MatmulParams& p, int64_t n0, int64_t n1) {
  return n0 < n1 && (p.M > kMatmulDecodeRows || p.prefill) && p.K > 0;
}


}  // namespace

void matmul_f32(const MatmulParams& p, int64_t n0, int64_t n1) {
  if (use_gemm(p, n0, n1)) return gemm(p, n0, n1);
  if (n0 >= n1 || p.M <= 0 || p.K <= 0) return avx2::matmul_f32(p, n0, n1);
  decode_dense_all<F32x16, kDenseGroup>(p, n0, n1);
}

void matmul_f16(const MatmulParams& p, int64_t n0, int64_t n1) {
  if (use_gemm(p, n0, n1)) return gemm(p, n0, n1);
  if (n0 >= n1 || p.M <= 0 || p.K <= 0) return avx2::matmul_f16(p, n0, n1);
  decode_dense_all<F16x16, kDenseGroup>(p, n0, n1);
}

void matmul_bf16(const MatmulParams& p, int64_t n0, int64_t n1) {
  if (use_gemm(p, n0, n1)) return gemm(p, n0, n1);
  if (n0 >= n1 || p.M <= 0 || p.K <= 0) return avx2::matmul_bf16(p, n0, n1);
  decode_dense_all<BF16x16, kDenseGroup>(p, n0, n1);
}

void matmul_q8(const MatmulParams& p, int64_t n0, int64_t n1) {
  if (use_gemm(p, n0, n1)) return gemm_q8(p, n0, n1);
  if (n0 >= n1 || p.M <= 0 || p.K <= 0) return avx2::matmul_q8(p, n0, n1);
  decode_q8_all(p, n0, n1);
}

void matmul_q4(const MatmulParams& p, int64_t n0, int64_t n1) {
  if (use_gemm(p, n0, n1)) return gemm_q4(p, n0, n1);
  if (n0 >= n1 || p.M <= 0 || p.K <= 0) return avx2::matmul_q4(p, n0, n1);
  decode(p, n0, n1);
}

void matmul_f32p(const MatmulParams& p, int64_t n0, int64_t n1) {
  if (n0 >= n1 || p.M <= 0) return;
  if (p.K <= 0) return scalar::matmul_f32p(p, n0, n1);
  gemm(p, n0, n1);
}

}  // namespace avx512
}  // namespace mambart

MAMBART_AVX2_END
#endif  // x86-64
