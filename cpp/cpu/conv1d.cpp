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
}  // namespace mambart
