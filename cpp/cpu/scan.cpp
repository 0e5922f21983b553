// Mamba-1 selective scan, prefill and step. See kernels/scan.h.
// GCC 12 warns of -W(maybe-)uninitialized inside its own avx512fintrin.h
// (the _mm512_undefined_* operands of roundscale and shuffle_f32x4), at the
// header's location, so the pragma must precede the include.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include <cmath>

#include "kernels/elementwise.h"
#include "kernels/scan.h"

namespace mambart {
namespace {

// The SIMD kernels take exp(delta A) as 2^(dl2 A), dl2 = delta log2 e, held
// at FLT_MAX: a finite delta past FLT_MAX / log2 e would make dl2 inf, and
// inf * A NaN where A is 0 (zero-padded tail lanes, A_log below about -103)
// where exp(delta A) is 1.
constexpr float kLog2e = 1.44269504088896341f, kMaxDl2 = 3.40282347e38f;

// 2^f on |f| <= 1/2, coefficients of f^0 .. f^6 (a fit for relative error,
// within 1e-7 with Horner's f32 roundings); each ISA's pow2 below.
constexpr float kPow2Poly[7] = {1.0f, 6.931471824645996e-1f, 2.4022646248340607e-1f, 5.550328642129898e-2f,
                                9.618489071726799e-3f, 1.3399930903688073e-3f, 1.534581242594868e-4f};

// A SIMD kernel's token row r for channels [e, e + ne) (ne at most its
// width), with h their (ne, N) states.
using ScanRow = void (*)(const ScanParams& p, int64_t e, int64_t ne, int64_t r, float* h);

// The SIMD kernels' walks over channels [e0, e1) in blocks of W: each block
// through a prefill's tokens (its (W, N) state L1-resident all the way) or
// through a step's batch rows.
template <int64_t W, ScanRow row>
void prefill_blocks(const ScanParams& p, int64_t e0, int64_t e1) {
  for (int64_t e = e0; e < e1; e += W) {
    const int64_t ne = e1 - e < W ? e1 - e : W;
    for (int64_t t = 0; t < p.seqlen; ++t) row(p, e, ne, t, p.state + e * p.N);
  }
}

template <int64_t W, ScanRow row>
void step_blocks(const ScanParams& p, int64_t e0, int64_t e1) {
  for (int64_t b = 0; b < p.batch; ++b)
    for (int64_t e = e0; e < e1; e += W) {
      const int64_t ne = e1 - e < W ? e1 - e : W;
      row(p, e, ne, b, p.state + (b * p.E + e) * p.N);
    }
}

}  // namespace

namespace scalar {

// One channel e over `steps` tokens whose rows are r0, r0+1, ...; h is the
// channel's (N) state.
static void scan_channel(const ScanParams& p, int64_t e, int64_t r0, int64_t steps, float* h) {
  const float* A = p.A + e * p.N;
  for (int64_t t = 0; t < steps; ++t) {
    const int64_t r = r0 + t;
    const float x = p.x[r * p.ldx + e];
    const float delta = softplus_ref(p.dt[r * p.lddt + e] + p.dt_bias[e]);
    const float* B = p.B + r * p.ldb;
    const float* C = p.C + r * p.ldc;
    const float dx = delta * x;  // (delta x) B, as the formula groups it: delta B alone may overflow
    float y = 0.0f;
    for (int64_t n = 0; n < p.N; ++n) {
      h[n] = std::exp(delta * A[n]) * h[n] + dx * B[n];
      y += h[n] * C[n];
    }
    y += p.D[e] * x;
    if (p.z) y *= silu_ref(p.z[r * p.ldz + e]);
    p.y[r * p.ldy + e] = y;
  }
}

void scan_prefill(const ScanParams& p, int64_t e0, int64_t e1) {
  for (int64_t e = e0; e < e1; ++e) scan_channel(p, e, 0, p.seqlen, p.state + e * p.N);
}

void scan_step(const ScanParams& p, int64_t e0, int64_t e1) {
  for (int64_t b = 0; b < p.batch; ++b)
    for (int64_t e = e0; e < e1; ++e) scan_channel(p, e, b, 1, p.state + (b * p.E + e) * p.N);
}

}  // namespace scalar
}  // namespace mambart

#include "cpu/simd_math.h"

#if defined(__x86_64__) || defined(_M_X64)
MAMBART_AVX2_BEGIN

namespace mambart {
namespace avx2 {

// 2^y as avx512::pow2 (below), with 2^n built in the exponent field: 0
// for y < -126.5, where 2^y would be subnormal (below 1.2e-38; exp(x) for x
// below about -87.7), and inf from y >= 127.5 (exponent field 255). 14
// instructions where exp took 23; the clamp passes NaN.
inline __m256 pow2(__m256 y) {
  y = _mm256_min_ps(_mm256_set1_ps(128.0f), _mm256_max_ps(_mm256_set1_ps(-127.0f), y));
  const __m256 n = _mm256_round_ps(y, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m256 f = _mm256_sub_ps(y, n);
  __m256 q = _mm256_set1_ps(kPow2Poly[6]);
  for (int i = 5; i >= 0; --i) q = _mm256_fmadd_ps(q, f, _mm256_set1_ps(kPow2Poly[i]));
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(q, _mm256_castsi256_ps(e));
}

// h = 2^(dl2 A) h + (delta x) B on 8 state entries of one channel, dl2 =
// delta log2 e.
inline __m256 state_update(__m256 dl2, __m256 dx, __m256 A, __m256 B, __m256 h) {
  return _mm256_fmadd_ps(pow2(_mm256_mul_ps(dl2, A)), h, _mm256_mul_ps(dx, B));
}

// One token row r for channels [e, e + ne), ne <= 8, with h the (ne, N)
// states of those channels. The per-channel scalars (softplus of dt, x,
// D x, silu(z)) are computed for the 8 channels as one vector; the
// recurrence then runs per channel across N, 8 state entries at a time (two
// vectors for N = 16), and hsum8 turns the 8 channels' C·h partial sums into
// one output vector. The state stays in memory: for prefill the 8 channels'
// (8, N) block is L1-resident across the whole time walk. This reads h, A,
// B, C in their natural layouts (no transposed state copy) and handles any
// N and E with masked tails. Measured against scalar (1 thread, E=16,
// N=16, Zen 4): 12-14 ns vs 88-94 ns per channel and token.

inline void scan_row(const ScanParams& p, int64_t e, int64_t ne, int64_t r, float* h) {
  const int64_t N = p.N;
  const __m256 x = load_n(p.x + r * p.ldx + e, ne);
  const __m256 dt = _mm256_add_ps(load_n(p.dt + r * p.lddt + e, ne), load_n(p.dt_bias + e, ne));
  const __m256 delta = softplus(dt);
  alignas(32) float dl2_s[8], dx_s[8];  // per channel: delta log2 e and delta * x
  _mm256_store_ps(dl2_s, _mm256_min_ps(_mm256_set1_ps(kMaxDl2), _mm256_mul_ps(delta, _mm256_set1_ps(kLog2e))));
  _mm256_store_ps(dx_s, _mm256_mul_ps(delta, x));

  const float* B = p.B + r * p.ldb;
  const float* C = p.C + r * p.ldc;
  const int64_t N8 = N / 8 * 8;
  const __m256i tail = tail_mask(N - N8);
  __m256 yc[8];  // per channel: 8 partial sums of C[n] h[n]
  for (int64_t i = 0; i < 8; ++i) {
    yc[i] = _mm256_setzero_ps();
    if (i >= ne) continue;
    const __m256 d = _mm256_set1_ps(dl2_s[i]), dx = _mm256_set1_ps(dx_s[i]);
    const float* A = p.A + (e + i) * N;
    float* hi = h + i * N;
    int64_t n = 0;
    for (; n < N8; n += 8) {
      const __m256 hn = state_update(d, dx, _mm256_loadu_ps(A + n), _mm256_loadu_ps(B + n),
                                     _mm256_loadu_ps(hi + n));
      _mm256_storeu_ps(hi + n, hn);
      yc[i] = _mm256_fmadd_ps(hn, _mm256_loadu_ps(C + n), yc[i]);
    }
    if (n < N) {  // masked-off lanes: A = B = h = C = 0, so they add 0
      const __m256 hn = state_update(d, dx, _mm256_maskload_ps(A + n, tail),
                                     _mm256_maskload_ps(B + n, tail), _mm256_maskload_ps(hi + n, tail));
      _mm256_maskstore_ps(hi + n, tail, hn);
      yc[i] = _mm256_fmadd_ps(hn, _mm256_maskload_ps(C + n, tail), yc[i]);
    }
  }
  // y = (C·h + D x) * silu(z)
  __m256 y = _mm256_fmadd_ps(load_n(p.D + e, ne), x, hsum8(yc));
  if (p.z) y = _mm256_mul_ps(y, silu(load_n(p.z + r * p.ldz + e, ne)));
  store_n(p.y + r * p.ldy + e, y, ne);
}

void scan_prefill(const ScanParams& p, int64_t e0, int64_t e1) { prefill_blocks<8, scan_row>(p, e0, e1); }
void scan_step(const ScanParams& p, int64_t e0, int64_t e1) { step_blocks<8, scan_row>(p, e0, e1); }

}  // namespace avx2
}  // namespace mambart

MAMBART_AVX2_END

MAMBART_AVX512_BEGIN

namespace mambart {
namespace avx512 {
namespace {

// 2^y: y = n + f, n = round(y), 2^f by kPow2Poly, times 2^n by vscalefps,
// which is exact over the subnormal range and overflows to inf. The scan asks 2^(delta A log2 e)
// with log2 e folded into delta: 10 instructions where exp(delta A) took
// 15, most of the recurrence. The clamp at -150 keeps f small for a huge
// negative y (2^-150 rounds to 0) and passes NaN through; y = +inf gives
// f = NaN, and vscalefps(NaN, +inf) is +inf.
inline __m512 pow2(__m512 y) {
  y = _mm512_max_ps(_mm512_set1_ps(-150.0f), y);
  const __m512 n = _mm512_roundscale_ps(y, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 f = _mm512_sub_ps(y, n);
  __m512 q = _mm512_set1_ps(kPow2Poly[6]);
  for (int i = 5; i >= 0; --i) q = _mm512_fmadd_ps(q, f, _mm512_set1_ps(kPow2Poly[i]));
  return _mm512_scalef_ps(q, n);
}

// Lane i = the sum of v[i]'s lanes: three halvings, each adding two
// vectors' halves (512 -> 256 -> 128-bit blocks, then within blocks).
inline __m512 hsum16(const __m512 v[16]) {
  __m512 w[8], x[4];
  for (int i = 0; i < 8; ++i)  // blocks 0-1: v[i]'s partial sums, 2-3: v[i + 8]'s
    w[i] = _mm512_add_ps(_mm512_shuffle_f32x4(v[i], v[i + 8], _MM_SHUFFLE(1, 0, 1, 0)),
                         _mm512_shuffle_f32x4(v[i], v[i + 8], _MM_SHUFFLE(3, 2, 3, 2)));
  for (int i = 0; i < 4; ++i)  // blocks: v[i], v[i + 8], v[i + 4], v[i + 12]
    x[i] = _mm512_add_ps(_mm512_shuffle_f32x4(w[i], w[i + 4], _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm512_shuffle_f32x4(w[i], w[i + 4], _MM_SHUFFLE(3, 1, 3, 1)));
  const __m512 s0 = _mm512_add_ps(_mm512_unpacklo_ps(x[0], x[1]), _mm512_unpackhi_ps(x[0], x[1]));
  const __m512 s1 = _mm512_add_ps(_mm512_unpacklo_ps(x[2], x[3]), _mm512_unpackhi_ps(x[2], x[3]));
  const __m512 r = _mm512_add_ps(_mm512_shuffle_ps(s0, s1, _MM_SHUFFLE(1, 0, 1, 0)),
                                 _mm512_shuffle_ps(s0, s1, _MM_SHUFFLE(3, 2, 3, 2)));
  return _mm512_shuffle_f32x4(r, r, _MM_SHUFFLE(3, 1, 2, 0));  // blocks 0 2 1 3 -> channel order
}

// avx2::scan_row for 16 channels and 16 state entries at a time (one vector
// for N = 16): half the instructions in the recurrence, which is nearly all
// of the work. The per-channel scalars (softplus of dt, delta x, D x,
// silu(z)), one per channel and token rather than N, stay avx2 code.
void scan_row(const ScanParams& p, int64_t e, int64_t ne, int64_t r, float* h) {
  alignas(64) float dl2_s[16], dx_s[16], ch_s[16];
  for (int64_t j = 0; j < ne; j += 8) {
    const int64_t m = ne - j < 8 ? ne - j : 8;
    const __m256 x = avx2::load_n(p.x + r * p.ldx + e + j, m);
    const __m256 delta =
        avx2::softplus(_mm256_add_ps(avx2::load_n(p.dt + r * p.lddt + e + j, m), avx2::load_n(p.dt_bias + e + j, m)));
    _mm256_store_ps(dl2_s + j, _mm256_min_ps(_mm256_set1_ps(kMaxDl2), _mm256_mul_ps(delta, _mm256_set1_ps(kLog2e))));
    _mm256_store_ps(dx_s + j, _mm256_mul_ps(delta, x));
  }
  const int64_t N = p.N, N16 = N / 16 * 16;
  const __mmask16 tail = static_cast<__mmask16>((1u << (N - N16)) - 1);
  const float* B = p.B + r * p.ldb;
  const float* C = p.C + r * p.ldc;
  __m512 yc[16];  // per channel: 16 partial sums of C[n] h[n]
  for (int64_t i = 0; i < 16; ++i) {
    yc[i] = _mm512_setzero_ps();
    if (i >= ne) continue;
    const __m512 d = _mm512_set1_ps(dl2_s[i]), dx = _mm512_set1_ps(dx_s[i]);
    const float* A = p.A + (e + i) * N;
    float* hi = h + i * N;
    int64_t n = 0;
    for (; n < N16; n += 16) {
      const __m512 hn = _mm512_fmadd_ps(pow2(_mm512_mul_ps(d, _mm512_loadu_ps(A + n))), _mm512_loadu_ps(hi + n),
                                        _mm512_mul_ps(dx, _mm512_loadu_ps(B + n)));
      _mm512_storeu_ps(hi + n, hn);
      yc[i] = _mm512_fmadd_ps(hn, _mm512_loadu_ps(C + n), yc[i]);
    }
    if (n < N) {  // masked-off lanes: A = B = h = C = 0, so they add 0
      const __m512 hn =
          _mm512_fmadd_ps(pow2(_mm512_mul_ps(d, _mm512_maskz_loadu_ps(tail, A + n))),
                          _mm512_maskz_loadu_ps(tail, hi + n), _mm512_mul_ps(dx, _mm512_maskz_loadu_ps(tail, B + n)));
      _mm512_mask_storeu_ps(hi + n, tail, hn);
      yc[i] = _mm512_fmadd_ps(hn, _mm512_maskz_loadu_ps(tail, C + n), yc[i]);
    }
  }
  _mm512_store_ps(ch_s, hsum16(yc));
  // y = (C·h + D x) * silu(z)
  for (int64_t j = 0; j < ne; j += 8) {
    const int64_t m = ne - j < 8 ? ne - j : 8;
    const __m256 x = avx2::load_n(p.x + r * p.ldx + e + j, m);
    __m256 y = _mm256_fmadd_ps(avx2::load_n(p.D + e + j, m), x, _mm256_load_ps(ch_s + j));
    if (p.z) y = _mm256_mul_ps(y, avx2::silu(avx2::load_n(p.z + r * p.ldz + e + j, m)));
    avx2::store_n(p.y + r * p.ldy + e + j, y, m);
  }
}

}  // namespace

void scan_prefill(const ScanParams& p, int64_t e0, int64_t e1) { prefill_blocks<16, scan_row>(p, e0, e1); }
void scan_step(const ScanParams& p, int64_t e0, int64_t e1) { step_blocks<16, scan_row>(p, e0, e1); }

}  // namespace avx512
}  // namespace mambart

MAMBART_AVX2_END
#endif  // x86-64

// ---------------------------------------------------------------- neon
//
// arm64 (every AArch64 CPU has NEON).
//
// The avx2 kernel's shape at 4 lanes: one token row for a block of 4
// channels at a time. The per-channel scalars (softplus of dt, delta x,
// D x, silu(z)) are one vector for the 4 channels; the recurrence then runs
// per channel across N, 4 state entries per vector (4 vectors for N = 16),
// and hsum4 turns the 4 channels' C·h partial sums into one output vector.
// h, A, B, C are read in their natural layouts, the state stays in memory
// (a block's (4, N) state is L1-resident across a prefill's time walk), and
// tails of E and N go through zero-padded vectors, which add 0.
#if defined(__aarch64__)
#include "cpu/simd_math_neon.h"
#include "kernels/scan.h"

namespace mambart {
namespace neon {
namespace {

// 2^y as avx2::pow2: 0 for y < -126.5, inf from 127.5, NaN passes.
inline float32x4_t pow2(float32x4_t y) {
  y = vminq_f32(vdupq_n_f32(128.0f), vmaxq_f32(vdupq_n_f32(-127.0f), y));
  const float32x4_t n = vrndnq_f32(y);
  const float32x4_t f = vsubq_f32(y, n);
  float32x4_t q = vdupq_n_f32(kPow2Poly[6]);
  for (int i = 5; i >= 0; --i) q = vfmaq_f32(vdupq_n_f32(kPow2Poly[i]), q, f);
  const int32x4_t e = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)), 23);  // NaN: q carries it
  return vmulq_f32(q, vreinterpretq_f32_s32(e));
}

// h = 2^(dl2 A) h + (delta x) B on 4 state entries of one channel, dl2 =
// delta log2 e.
inline float32x4_t state_update(float32x4_t dl2, float32x4_t dx, float32x4_t A, float32x4_t B, float32x4_t h) {
  return vfmaq_f32(vmulq_f32(dx, B), pow2(vmulq_f32(dl2, A)), h);
}

// Token row r for channels [e, e + ne), ne <= 4; h holds their (ne, N) states.
void scan_row(const ScanParams& p, int64_t e, int64_t ne, int64_t r, float* h) {
  const int64_t N = p.N, N4 = N / 4 * 4;
  const float32x4_t x = load_n(p.x + r * p.ldx + e, ne);
  const float32x4_t delta = softplus(vaddq_f32(load_n(p.dt + r * p.lddt + e, ne), load_n(p.dt_bias + e, ne)));
  float dl2_s[4], dx_s[4];  // per channel: delta log2 e and delta * x
  vst1q_f32(dl2_s, vminq_f32(vdupq_n_f32(kMaxDl2), vmulq_f32(delta, vdupq_n_f32(kLog2e))));
  vst1q_f32(dx_s, vmulq_f32(delta, x));

  const float* B = p.B + r * p.ldb;
  const float* C = p.C + r * p.ldc;
  float32x4_t yc[4];  // per channel: 4 partial sums of C[n] h[n]
  for (int64_t i = 0; i < 4; ++i) {
    yc[i] = vdupq_n_f32(0.0f);
    if (i >= ne) continue;
    const float32x4_t d = vdupq_n_f32(dl2_s[i]), dx = vdupq_n_f32(dx_s[i]);
    const float* A = p.A + (e + i) * N;
    float* hi = h + i * N;
    int64_t n = 0;
    for (; n < N4; n += 4) {
      const float32x4_t hn = state_update(d, dx, vld1q_f32(A + n), vld1q_f32(B + n), vld1q_f32(hi + n));
      vst1q_f32(hi + n, hn);
      yc[i] = vfmaq_f32(yc[i], hn, vld1q_f32(C + n));
    }
    if (n < N) {  // padded lanes: A = B = h = C = 0, so they add 0
      const int64_t m = N - n;
      const float32x4_t hn = state_update(d, dx, load_n(A + n, m), load_n(B + n, m), load_n(hi + n, m));
      store_n(hi + n, hn, m);
      yc[i] = vfmaq_f32(yc[i], hn, load_n(C + n, m));
    }
  }
  // y = (C·h + D x) * silu(z)
  float32x4_t y = vfmaq_f32(hsum4(yc), load_n(p.D + e, ne), x);
  if (p.z) y = vmulq_f32(y, silu(load_n(p.z + r * p.ldz + e, ne)));
  store_n(p.y + r * p.ldy + e, y, ne);
}

}  // namespace

void scan_prefill(const ScanParams& p, int64_t e0, int64_t e1) { prefill_blocks<4, scan_row>(p, e0, e1); }
void scan_step(const ScanParams& p, int64_t e0, int64_t e1) { step_blocks<4, scan_row>(p, e0, e1); }

}  // namespace neon
}  // namespace mambart

#endif  // __aarch64__
