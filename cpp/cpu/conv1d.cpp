// Causal depthwise conv1d + bias + SiLU, prefill and step. See kernels/conv1d.h.
#include "kernels/conv1d.h"
#include "kernels/elementwise.h"

namespace mambart {
namespace scalar {

void conv1d_prefill(const Conv1dParams& p, int64_t c0, int64_t c1) {
  const int64_t K = p.K;
  for (int64_t c = c0; c < c1; ++c) {
    // state[k] = x[t - K + 1 + k]: shifted left one column per token.
    float* state = p.state + c * K;
    const float* w = p.w + c * K;
    for (int64_t t = 0; t < p.seqlen; ++t) {
      for (int64_t k = 0; k + 1 < K; ++k) state[k] = state[k + 1];
      state[K - 1] = p.x[t * p.ldx + c];
      float acc = p.bias ? p.bias[c] : 0.0f;
      for (int64_t k = 0; k < K; ++k) acc += w[k] * state[k];
      p.y[t * p.ldy + c] = silu_ref(acc);
    }
  }
}

void conv1d_step(const Conv1dParams& p, int64_t c0, int64_t c1) {
  const int64_t K = p.K;
  for (int64_t b = 0; b < p.batch; ++b) {
    for (int64_t c = c0; c < c1; ++c) {
      float* state = p.state + (b * p.C + c) * K;
      const float* w = p.w + c * K;
      for (int64_t k = 0; k + 1 < K; ++k) state[k] = state[k + 1];
      state[K - 1] = p.x[b * p.ldx + c];
      float acc = p.bias ? p.bias[c] : 0.0f;
      for (int64_t k = 0; k < K; ++k) acc += w[k] * state[k];
      p.y[b * p.ldy + c] = silu_ref(acc);
    }
  }
}

}  // namespace scalar

// An ISA's kernel for one block of W channels, (p, first channel, batch
// row, steps, that block's state); nullptr where the ISA has none for K.
using ConvBlock = void (*)(const Conv1dParams&, int64_t, int64_t, int64_t, float*);

// Full W-channel blocks by `block`, the remaining channels by the scalar kernel.
template <int64_t W>
void conv1d_prefill_blocks(const Conv1dParams& p, int64_t c0, int64_t c1, ConvBlock block) {
  int64_t c = c0;
  if (block)
    for (; c + W <= c1; c += W) block(p, c, 0, p.seqlen, p.state + c * p.K);
  scalar::conv1d_prefill(p, c, c1);
}

template <int64_t W>
void conv1d_step_blocks(const Conv1dParams& p, int64_t c0, int64_t c1, ConvBlock block) {
  const int64_t cw = block ? c0 + (c1 - c0) / W * W : c0;
  for (int64_t b = 0; b < p.batch; ++b)
    for (int64_t c = c0; c < cw; c += W) block(p, c, b, 1, p.state + (b * p.C + c) * p.K);
  scalar::conv1d_step(p, cw, c1);
}
}  // namespace mambart

#include "cpu/simd_math.h"

#if defined(__x86_64__) || defined(_M_X64)
MAMBART_AVX2_BEGIN

namespace mambart {
namespace avx2 {

// Vectorised across 8 channels. w and state are (C, K) per channel, so a tap
// of 8 channels sits at stride K: gathered once per block and call, kept in
// registers while the block walks time, scattered back at the end.
inline __m256 load_taps(const float* tap, int64_t K) {
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_i32gather_ps(tap, _mm256_mullo_epi32(lane, _mm256_set1_epi32(static_cast<int>(K))), 4);
}

inline void store_taps(float* tap, int64_t K, __m256 v) {
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, v);
  for (int i = 0; i < 8; ++i) tap[i * K] = lanes[i];
}

// Channels [c, c+8) of token rows row0 .. row0+steps-1 (x and y row
// strides), continuing from state (8, K) of those channels.
template <int K>
void conv_block(const Conv1dParams& p, int64_t c, int64_t row0, int64_t steps, float* state) {
  __m256 win[K], w[K];  // win[k] = x[t - K + 1 + k] once token t is shifted in
  for (int k = 0; k < K; ++k) {
    win[k] = load_taps(state + k, K);
    w[k] = load_taps(p.w + c * K + k, K);
  }
  const __m256 bias = p.bias ? _mm256_loadu_ps(p.bias + c) : _mm256_setzero_ps();
  for (int64_t r = row0; r < row0 + steps; ++r) {
    for (int k = 0; k + 1 < K; ++k) win[k] = win[k + 1];
    win[K - 1] = _mm256_loadu_ps(p.x + r * p.ldx + c);
    __m256 acc = bias;
    for (int k = 0; k < K; ++k) acc = _mm256_fmadd_ps(w[k], win[k], acc);
    _mm256_storeu_ps(p.y + r * p.ldy + c, silu(acc));
  }
  for (int k = 0; k < K; ++k) store_taps(state + k, K, win[k]);
}

// Real models use K = 4 (d_conv); other widths up to 4 are cheap to keep.
// nullptr: no SIMD block for this K, the scalar kernel does the call.
ConvBlock conv_block_for(int64_t K) {
  switch (K) {
    case 1: return conv_block<1>;
    case 2: return conv_block<2>;
    case 3: return conv_block<3>;
    case 4: return conv_block<4>;
    default: return nullptr;
  }
}

// Blocks of 8 channels here, the rest by the scalar kernel (conv1d_*_blocks).
void conv1d_prefill(const Conv1dParams& p, int64_t c0, int64_t c1) {
  conv1d_prefill_blocks<8>(p, c0, c1, conv_block_for(p.K));
}

// conv_block<4>'s step (the same arithmetic, so the same bits) without its
// gathers and scatters: the 8 channels' (8, 4) state and weights are four
// vectors each, transposed in registers to one vector per tap, in channel
// order 0 2 4 6 1 3 5 7 (kPerm); the new state is each channel's last three
// inputs and x, shifted in place by alignr.
void conv_step4(const Conv1dParams& p, int64_t c, int64_t row, int64_t steps, float* state) {
  (void)steps;  // 1
  const __m256i kPerm = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7), kUnperm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  // Four vectors of two channels' 4 taps -> four vectors of one tap, kPerm order.
  const auto taps = [](const float* src, __m256 t[4]) __attribute__((target("avx2,fma"))) {
    const __m256 s0 = _mm256_loadu_ps(src), s1 = _mm256_loadu_ps(src + 8);
    const __m256 s2 = _mm256_loadu_ps(src + 16), s3 = _mm256_loadu_ps(src + 24);
    const __m256 lo01 = _mm256_unpacklo_ps(s0, s1), hi01 = _mm256_unpackhi_ps(s0, s1);
    const __m256 lo23 = _mm256_unpacklo_ps(s2, s3), hi23 = _mm256_unpackhi_ps(s2, s3);
    t[0] = _mm256_shuffle_ps(lo01, lo23, 0x44), t[1] = _mm256_shuffle_ps(lo01, lo23, 0xEE);
    t[2] = _mm256_shuffle_ps(hi01, hi23, 0x44), t[3] = _mm256_shuffle_ps(hi01, hi23, 0xEE);
  };
  __m256 win[4], w[4];
  taps(state, win);
  taps(p.w + c * 4, w);
  const __m256 x = _mm256_loadu_ps(p.x + row * p.ldx + c);
  __m256 acc = p.bias ? _mm256_permutevar8x32_ps(_mm256_loadu_ps(p.bias + c), kPerm) : _mm256_setzero_ps();
  acc = _mm256_fmadd_ps(w[0], win[1], acc);
  acc = _mm256_fmadd_ps(w[1], win[2], acc);
  acc = _mm256_fmadd_ps(w[2], win[3], acc);
  acc = _mm256_fmadd_ps(w[3], _mm256_permutevar8x32_ps(x, kPerm), acc);
  _mm256_storeu_ps(p.y + row * p.ldy + c, _mm256_permutevar8x32_ps(silu(acc), kUnperm));
  for (int i = 0; i < 4; ++i) {  // channels 2i, 2i + 1: [k1 k2 k3 x]
    const __m256i xi = _mm256_setr_epi32(2 * i, 0, 0, 0, 2 * i + 1, 0, 0, 0);
    const __m256 xs = _mm256_permutevar8x32_ps(x, xi);
    const __m256 s = _mm256_loadu_ps(state + 8 * i);
    _mm256_storeu_ps(state + 8 * i, _mm256_castsi256_ps(_mm256_alignr_epi8(
                                         _mm256_castps_si256(xs), _mm256_castps_si256(s), 4)));
  }
}

void conv1d_step(const Conv1dParams& p, int64_t c0, int64_t c1) {
  conv1d_step_blocks<8>(p, c0, c1, p.K == 4 ? conv_step4 : conv_block_for(p.K));
}

}  // namespace avx2
}  // namespace mambart

MAMBART_AVX2_END
#endif  // x86-64

// ---------------------------------------------------------------- neon
//
// arm64 (every AArch64 CPU has NEON).
//
// The avx2 kernel's shape at 4 lanes: vectorised across 4 channels. w and
// state are (C, K) per channel, so one tap of 4 channels sits at stride K:
// gathered once per block and call, kept in registers while the block walks
// time, scattered back at the end. K up to 4 (real models use 4); other
// widths, and the last < 4 channels, go to the scalar kernel.
#if defined(__aarch64__)
#include "cpu/simd_math_neon.h"
#include "kernels/conv1d.h"

namespace mambart {
namespace neon {
namespace {

inline float32x4_t load_taps(const float* tap, int64_t K) {
  const float lanes[4] = {tap[0], tap[K], tap[2 * K], tap[3 * K]};
  return vld1q_f32(lanes);
}

inline void store_taps(float* tap, int64_t K, float32x4_t v) {
  float lanes[4];
  vst1q_f32(lanes, v);
  for (int i = 0; i < 4; ++i) tap[i * K] = lanes[i];
}

// Channels [c, c+4) of token rows row0 .. row0+steps-1 (x and y row
// strides), continuing from state (4, K) of those channels.
template <int K>
void conv_block(const Conv1dParams& p, int64_t c, int64_t row0, int64_t steps, float* state) {
  float32x4_t win[K], w[K];  // win[k] = x[t - K + 1 + k] once token t is shifted in
  for (int k = 0; k < K; ++k) {
    win[k] = load_taps(state + k, K);
    w[k] = load_taps(p.w + c * K + k, K);
  }
  const float32x4_t bias = p.bias ? vld1q_f32(p.bias + c) : vdupq_n_f32(0.0f);
  for (int64_t r = row0; r < row0 + steps; ++r) {
    for (int k = 0; k + 1 < K; ++k) win[k] = win[k + 1];
    win[K - 1] = vld1q_f32(p.x + r * p.ldx + c);
    float32x4_t acc = bias;
    for (int k = 0; k < K; ++k) acc = vfmaq_f32(acc, w[k], win[k]);
    vst1q_f32(p.y + r * p.ldy + c, silu(acc));
  }
  for (int k = 0; k < K; ++k) store_taps(state + k, K, win[k]);
}

ConvBlock conv_block_for(int64_t K) {
  switch (K) {
    case 1: return conv_block<1>;
    case 2: return conv_block<2>;
    case 3: return conv_block<3>;
    case 4: return conv_block<4>;
    default: return nullptr;
  }
}

}  // namespace

void conv1d_prefill(const Conv1dParams& p, int64_t c0, int64_t c1) {
  conv1d_prefill_blocks<4>(p, c0, c1, conv_block_for(p.K));
}

void conv1d_step(const Conv1dParams& p, int64_t c0, int64_t c1) {
  conv1d_step_blocks<4>(p, c0, c1, conv_block_for(p.K));
}

}  // namespace neon
}  // namespace mambart

#endif  // __aarch64__
