// Causal depthwise conv1d with fused bias and SiLU (reference doc 2.1 step 2-3,
// 2.2 step 2-3):
//
//   y[t, c] = silu(bias[c] + sum_k w[c, k] * x[t - K + 1 + k, c])
//
// where x at negative t comes from the carried state: state[c, k] holds the
// last K pre-conv inputs, oldest in column 0 (mamba_ssm's conv_state layout).
// After the call, state holds the last K inputs of (old state ++ x), so a
// second call continues exactly where the first stopped.
//
//   x      (batch, seqlen, C)  token row stride ldx, batch stride seqlen*ldx
//   w      (C, K)
//   bias   (C) or nullptr
//   state  (batch, C, K)       contiguous, in/out
//   y      (batch, seqlen, C)  token row stride ldy, batch stride seqlen*ldy
//
// conv1d_prefill walks time for one sequence (batch must be 1);
// conv1d_step advances every row of a batch by one token (seqlen must be 1).
// A call handles channels [c0, c1).
#pragma once
#include <cstdint>

namespace mambart {

struct Conv1dParams {
  const float* x;
  const float* w;
  const float* bias;
  float* state;
  float* y;
  int64_t batch, seqlen, C, K;
  int64_t ldx, ldy;
};

namespace scalar {
void conv1d_prefill(const Conv1dParams& p, int64_t c0, int64_t c1);
void conv1d_step(const Conv1dParams& p, int64_t c0, int64_t c1);
}
namespace avx2 {
void conv1d_prefill(const Conv1dParams& p, int64_t c0, int64_t c1);
void conv1d_step(const Conv1dParams& p, int64_t c0, int64_t c1);
}
namespace neon {  // arm64 builds only
void conv1d_prefill(const Conv1dParams& p, int64_t c0, int64_t c1);
void conv1d_step(const Conv1dParams& p, int64_t c0, int64_t c1);
}

}  // namespace mambart
