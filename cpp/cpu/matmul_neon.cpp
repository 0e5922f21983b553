// matmul on arm64 with NEON (every AArch64 CPU has it); see kernels/matmul.h.
// One decode-style kernel for every M: each weight row is decoded to f32
// once and used by up to 4 rows of x while in registers (groups of 4 rows
// take each 64-row chunk of weights in turn, so only the first reads it from
// memory). q4 and q8 with M <= kMatmulDecodeRows multiply in integers, as
// the other ISAs do. The scalar kernels (matmul.cpp) are the reference.
#if defined(__aarch64__)
#include <arm_neon.h>

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "kernels/matmul.h"
#include "kernels/quantize.h"

namespace mambart {
namespace neon {
namespace {

// Weights [k, k+8) of a row as two f32 vectors: dense types need k + 8 <= K
// (the tail goes through a zero-padded copy), block types read whole
// blocks (a partial last block is stored zero-padded).
struct F32 {
  static constexpr int64_t kBytes = 4;  // per weight; 0 for block types
  static void load8(const char* row, int64_t k, float32x4_t& lo, float32x4_t& hi) {
    const float* w = reinterpret_cast<const float*>(row) + k;
    lo = vld1q_f32(w), hi = vld1q_f32(w + 4);
  }
};
struct F16 {
  static constexpr int64_t kBytes = 2;
  static void load8(const char* row, int64_t k, float32x4_t& lo, float32x4_t& hi) {
    const float16x8_t h = vreinterpretq_f16_u16(vld1q_u16(reinterpret_cast<const uint16_t*>(row) + k));
    lo = vcvt_f32_f16(vget_low_f16(h)), hi = vcvt_high_f32_f16(h);
  }
};
struct BF16 {  // the top half of an f32
  static constexpr int64_t kBytes = 2;
  static void load8(const char* row, int64_t k, float32x4_t& lo, float32x4_t& hi) {
    const uint16x8_t h = vld1q_u16(reinterpret_cast<const uint16_t*>(row) + k);
    lo = vreinterpretq_f32_u32(vshll_n_u16(vget_low_u16(h), 16));
    hi = vreinterpretq_f32_u32(vshll_high_n_u16(h, 16));
  }
};
struct Q8 {  // d * q
  static constexpr int64_t kBytes = 0;
  static void load8(const char* row, int64_t k, float32x4_t& lo, float32x4_t& hi) {
    const BlockQ8& b = reinterpret_cast<const BlockQ8*>(row)[k / kQuantBlock];
    const int16x8_t q = vmovl_s8(vld1_s8(b.q + k % kQuantBlock));
    lo = vmulq_n_f32(vcvtq_f32_s32(vmovl_s16(vget_low_s16(q))), b.d);
    hi = vmulq_n_f32(vcvtq_f32_s32(vmovl_high_s16(q)), b.d);
  }
};
struct Q4 {  // d * code + m; codes 2j and 2j+1 are the low and high nibbles of byte j
  static constexpr int64_t kBytes = 0;
  static void load8(const char* row, int64_t k, float32x4_t& lo, float32x4_t& hi) {
    const BlockQ4& b = reinterpret_cast<const BlockQ4*>(row)[k / kQuantBlock];
    uint32_t word;
    std::memcpy(&word, b.q + (k % kQuantBlock) / 2, 4);
    const uint8x8_t bytes = vreinterpret_u8_u32(vdup_n_u32(word));
    const uint8x8_t codes = vzip1_u8(vand_u8(bytes, vdup_n_u8(15)), vshr_n_u8(bytes, 4));
    const uint16x8_t c = vmovl_u8(codes);
    const float32x4_t d = vdupq_n_f32(b.d), m = vdupq_n_f32(b.m);
    lo = vfmaq_f32(m, vcvtq_f32_u32(vmovl_u16(vget_low_u16(c))), d);
    hi = vfmaq_f32(m, vcvtq_f32_u32(vmovl_high_u16(c)), d);
  }
};

constexpr int64_t kChunk = 64;  // weight rows per pass of the row groups

// Per-thread scratch, grown on first use and kept.
template <class T>
T* scratch(std::vector<T>& buf, int64_t n) {
  if (static_cast<int64_t>(buf.size()) < n) buf.resize(static_cast<size_t>(n));
  return buf.data();
}

// y[0:MR, n] for n in [c0, c1), x zero-padded to ldxp (a multiple of 8).
template <class F, int MR>
void rows_float(const MatmulParams& p, const float* xp, int64_t ldxp, float* y, int64_t c0, int64_t c1) {
  const int64_t stride = row_bytes(p.wtype, p.K);
  const int64_t kend = F::kBytes ? p.K / 8 * 8 : ldxp;  // block types: whole blocks
  for (int64_t n = c0; n < c1; ++n) {
    const char* row = static_cast<const char*>(p.w) + n * stride;
    float32x4_t acc[MR][2];
    for (int i = 0; i < MR; ++i) acc[i][0] = acc[i][1] = vdupq_n_f32(0.0f);
    auto step = [&](const char* r, int64_t kw, int64_t kx) {
      float32x4_t lo, hi;
      F::load8(r, kw, lo, hi);
      for (int i = 0; i < MR; ++i) {
        acc[i][0] = vfmaq_f32(acc[i][0], vld1q_f32(xp + i * ldxp + kx), lo);
        acc[i][1] = vfmaq_f32(acc[i][1], vld1q_f32(xp + i * ldxp + kx + 4), hi);
      }
    };
    int64_t k = 0;
    for (; k < kend; k += 8) step(row, k, k);
    if (k < p.K) {  // dense tail: the last K - k weights, zero-padded
      alignas(16) char tail[8 * 4] = {};
      std::memcpy(tail, row + k * F::kBytes, static_cast<size_t>((p.K - k) * F::kBytes));
      step(tail, 0, k);
    }
    const float bias = p.bias ? p.bias[n] : 0.0f;
    for (int i = 0; i < MR; ++i) y[i * p.ldy + n] = vaddvq_f32(vaddq_f32(acc[i][0], acc[i][1])) + bias;
  }
}

// q4, integers: per block, 32 codes times 32 int8 of x (vld2 splits x into
// even and odd k, matching the low and high nibbles) in int16 pairs
// (|sum| <= 2 * 15 * 127), widened and added; then d * dx * dot + m * sum(x).
template <int MR>
void rows_q4(const MatmulParams& p, const int8_t* q, const float* dx, const float* xs, int64_t nb, float* y,
             int64_t c0, int64_t c1) {
  const int64_t stride = row_bytes(p.wtype, p.K);
  for (int64_t n = c0; n < c1; ++n) {
    const BlockQ4* blk = reinterpret_cast<const BlockQ4*>(static_cast<const char*>(p.w) + n * stride);
    float acc[MR] = {};
    for (int64_t b = 0; b < nb; ++b) {
      const uint8x16_t raw = vld1q_u8(blk[b].q);
      const int8x16_t even = vreinterpretq_s8_u8(vandq_u8(raw, vdupq_n_u8(15)));
      const int8x16_t odd = vreinterpretq_s8_u8(vshrq_n_u8(raw, 4));
      for (int i = 0; i < MR; ++i) {
        const int8x16x2_t xq = vld2q_s8(q + (i * nb + b) * kQuantBlock);
        int16x8_t lo = vmull_s8(vget_low_s8(even), vget_low_s8(xq.val[0]));
        lo = vmlal_s8(lo, vget_low_s8(odd), vget_low_s8(xq.val[1]));
        int16x8_t hi = vmull_high_s8(even, xq.val[0]);
        hi = vmlal_high_s8(hi, odd, xq.val[1]);
        const int32_t dot = vaddvq_s32(vpadalq_s16(vpaddlq_s16(lo), hi));
        acc[i] += blk[b].d * dx[i * nb + b] * static_cast<float>(dot) + blk[b].m * xs[i * nb + b];
      }
    }
    const float bias = p.bias ? p.bias[n] : 0.0f;
    for (int i = 0; i < MR; ++i) y[i * p.ldy + n] = acc[i] + bias;
  }
}

// q8, integers: per block, 32 codes widened to int16 times x's int16
// (quantize_x_q16) into int32 (|sum| <= 8 * 127 * 32767 per lane), added
// across; then d * dx * dot.
template <int MR>
void rows_q8(const MatmulParams& p, const int16_t* q, const float* dx, int64_t nb, float* y, int64_t c0, int64_t c1) {
  const int64_t stride = row_bytes(p.wtype, p.K);
  for (int64_t n = c0; n < c1; ++n) {
    const BlockQ8* blk = reinterpret_cast<const BlockQ8*>(static_cast<const char*>(p.w) + n * stride);
    float acc[MR] = {};
    for (int64_t b = 0; b < nb; ++b) {
      const int8x16_t lo = vld1q_s8(blk[b].q), hi = vld1q_s8(blk[b].q + 16);
      const int16x8_t c[4] = {vmovl_s8(vget_low_s8(lo)), vmovl_high_s8(lo), vmovl_s8(vget_low_s8(hi)),
                              vmovl_high_s8(hi)};
      for (int i = 0; i < MR; ++i) {
        const int16_t* xq = q + (i * nb + b) * kQuantBlock;
        int32x4_t t = vdupq_n_s32(0);
        for (int u = 0; u < 4; ++u) {
          const int16x8_t xv = vld1q_s16(xq + 8 * u);
          t = vmlal_s16(t, vget_low_s16(c[u]), vget_low_s16(xv));
          t = vmlal_high_s16(t, c[u], xv);
        }
        acc[i] += blk[b].d * dx[i * nb + b] * static_cast<float>(vaddvq_s32(t));
      }
    }
    const float bias = p.bias ? p.bias[n] : 0.0f;
    for (int i = 0; i < MR; ++i) y[i * p.ldy + n] = acc[i] + bias;
  }
}

template <class F>
void matmul_typed(const MatmulParams& p, int64_t n0, int64_t n1) {
  if (n0 >= n1 || p.M <= 0) return;
  const int64_t ldxp = (p.K + kQuantBlock - 1) / kQuantBlock * kQuantBlock, nb = ldxp / kQuantBlock;
  const bool decode = p.M <= kMatmulDecodeRows && !p.prefill;
  const bool integer = std::is_same<F, Q4>::value && decode, integer16 = std::is_same<F, Q8>::value && decode;
  thread_local std::vector<float> xbuf, dbuf, sbuf;
  thread_local std::vector<int8_t> qbuf;
  thread_local std::vector<int16_t> q16buf;
  float* xp = nullptr;
  int8_t* q = nullptr;
  int16_t* q16 = nullptr;
  float *dx = nullptr, *xs = nullptr;
  if (integer16) {
    q16 = scratch(q16buf, p.M * ldxp), dx = scratch(dbuf, p.M * nb);
    for (int64_t i = 0; i < p.M; ++i) quantize_x_q16(p.x + i * p.ldx, p.K, q16 + i * ldxp, dx + i * nb);
  } else if (integer) {
    q = scratch(qbuf, p.M * ldxp), dx = scratch(dbuf, p.M * nb), xs = scratch(sbuf, p.M * nb);
    for (int64_t i = 0; i < p.M; ++i) {
      const float* x = p.x + i * p.ldx;
      quantize_x_q8(x, p.K, q + i * ldxp, dx + i * nb);
      for (int64_t b = 0; b < nb; ++b) xs[i * nb + b] = block_sum(x, p.K, b);
    }
  } else {
    xp = scratch(xbuf, p.M * ldxp);
    for (int64_t i = 0; i < p.M; ++i) {
      std::memcpy(xp + i * ldxp, p.x + i * p.ldx, static_cast<size_t>(p.K) * 4);
      std::memset(xp + i * ldxp + p.K, 0, static_cast<size_t>(ldxp - p.K) * 4);
    }
  }
  for (int64_t c0 = n0; c0 < n1; c0 += kChunk) {
    const int64_t c1 = std::min(n1, c0 + kChunk);
    for (int64_t g = 0; g < p.M; g += 4) {
      float* yg = p.y + g * p.ldy;
      const int rows = static_cast<int>(std::min<int64_t>(4, p.M - g));
      if (integer16) {
        const int16_t* qg = q16 + g * ldxp;
        const float* dg = dx + g * nb;
        switch (rows) {
          case 1: rows_q8<1>(p, qg, dg, nb, yg, c0, c1); break;
          case 2: rows_q8<2>(p, qg, dg, nb, yg, c0, c1); break;
          case 3: rows_q8<3>(p, qg, dg, nb, yg, c0, c1); break;
          default: rows_q8<4>(p, qg, dg, nb, yg, c0, c1); break;
        }
      } else if (integer) {
        const int8_t* qg = q + g * ldxp;
        const float *dg = dx + g * nb, *sg = xs + g * nb;
        switch (rows) {
          case 1: rows_q4<1>(p, qg, dg, sg, nb, yg, c0, c1); break;
          case 2: rows_q4<2>(p, qg, dg, sg, nb, yg, c0, c1); break;
          case 3: rows_q4<3>(p, qg, dg, sg, nb, yg, c0, c1); break;
          default: rows_q4<4>(p, qg, dg, sg, nb, yg, c0, c1); break;
        }
      } else {
        const float* xg = xp + g * ldxp;
        switch (rows) {
          case 1: rows_float<F, 1>(p, xg, ldxp, yg, c0, c1); break;
          case 2: rows_float<F, 2>(p, xg, ldxp, yg, c0, c1); break;
          case 3: rows_float<F, 3>(p, xg, ldxp, yg, c0, c1); break;
          default: rows_float<F, 4>(p, xg, ldxp, yg, c0, c1); break;
        }
      }
    }
  }
}

}  // namespace

void matmul_f32(const MatmulParams& p, int64_t n0, int64_t n1) { matmul_typed<F32>(p, n0, n1); }
void matmul_f16(const MatmulParams& p, int64_t n0, int64_t n1) { matmul_typed<F16>(p, n0, n1); }
void matmul_bf16(const MatmulParams& p, int64_t n0, int64_t n1) { matmul_typed<BF16>(p, n0, n1); }
void matmul_q8(const MatmulParams& p, int64_t n0, int64_t n1) { matmul_typed<Q8>(p, n0, n1); }
void matmul_q4(const MatmulParams& p, int64_t n0, int64_t n1) { matmul_typed<Q4>(p, n0, n1); }

}  // namespace neon
}  // namespace mambart

#endif  // __aarch64__
