// Mamba-2 selective state space, "SSD" (reference doc 3.1 steps 4-7, 3.2, 3.3).
// Per head h, with group g(h) = h / (H / G):
//
//   delta[t,h] = softplus(dt[t,h] + dt_bias[h])      clamped to [dt_min, dt_max] in prefill
//   S[h]      <- exp(delta A[h]) S[h] + delta x[t,h,:] ⊗ B[t,g(h),:]      (P, N)
//   y[t,h,p]   = C[t,g(h),:] · S[h,p,:] + D x[t,h,p]       D = D[h], or D[h*P+p] if d_per_channel
//
//   x, y     (batch, seqlen, H*P)   row strides ldx, ldy
//   B, C     (batch, seqlen, G*N)   row strides ldb, ldc (slices of the conv output)
//   dt       (batch, seqlen, H)     row stride lddt (a slice of in_proj's output)
//   dt_bias, A (H), A = -exp(A_log) precomputed in f32
//   state    (batch, H, P, N)       contiguous, in/out
//
// ssd_prefill walks one sequence (batch must be 1). On the CPU it runs the
// recurrence token by token, with the step's arithmetic, so that the state
// after a prompt does not depend on how the prompt was cut into calls; CUDA
// runs the block form of 3.3 in chunks of `chunk` tokens (inside a chunk the
// output is a masked (C Bᵀ ∘ decay) product, the state carried from chunk to
// chunk; the chunk length changes rounding only).
// ssd_step advances every row of a batch by one token (seqlen must be 1);
// like both references, it does not clamp delta (reference doc 3.1 step 4).
// A call handles heads [h0, h1).
#pragma once
#include <cstdint>

namespace mambart {

struct SsdParams {
  const float* x;
  const float* dt;
  const float* dt_bias;
  const float* A;
  const float* B;
  const float* C;
  const float* D;
  float* state;
  float* y;
  int64_t batch, seqlen, H, P, G, N, chunk;
  bool d_per_channel;
  float dt_min, dt_max;
  int64_t ldx, lddt, ldb, ldc, ldy;
};

namespace scalar {
void ssd_prefill(const SsdParams& p, int64_t h0, int64_t h1);
void ssd_step(const SsdParams& p, int64_t h0, int64_t h1);
}
namespace avx2 {
void ssd_prefill(const SsdParams& p, int64_t h0, int64_t h1);
void ssd_step(const SsdParams& p, int64_t h0, int64_t h1);
}
namespace neon {  // arm64 builds only (cpu/ssd_neon.cpp)
void ssd_prefill(const SsdParams& p, int64_t h0, int64_t h1);
void ssd_step(const SsdParams& p, int64_t h0, int64_t h1);
}

}  // namespace mambart
