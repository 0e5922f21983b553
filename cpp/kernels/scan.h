// Mamba-1 selective scan with fused softplus, D skip and SiLU gate
// (reference doc 2.1 steps 5-9, 2.2 steps 4-6):
//
//   delta[t,e] = softplus(dt[t,e] + dt_bias[e])
//   h[e,n]     = exp(delta[t,e] * A[e,n]) * h[e,n] + delta[t,e] * B[t,n] * x[t,e]
//   y[t,e]     = (sum_n h[e,n] * C[t,n] + D[e] * x[t,e]) * silu(z[t,e])
//
//   x, dt, z, y  (batch, seqlen, E)  row strides ldx, lddt, ldz, ldy
//   B, C         (batch, seqlen, N)  row strides ldb, ldc (slices of x_proj's output)
//   A            (E, N)              A = -exp(A_log), precomputed in f32
//   dt_bias, D   (E)
//   state        (batch, E, N)       contiguous, in/out (h)
//   z may be nullptr: no gate.
//
// Rows of one sequence are consecutive: row (b, t) is at b*seqlen + t.
// scan_prefill walks time for one sequence (batch must be 1); scan_step
// advances every row of a batch by one token (seqlen must be 1).
// A call handles channels [e0, e1).
#pragma once
#include <cstdint>

namespace mambart {

struct ScanParams {
  const float* x;
  const float* dt;
  const float* dt_bias;
  const float* A;
  const float* B;
  const float* C;
  const float* D;
  const float* z;
  float* state;
  float* y;
  int64_t batch, seqlen, E, N;
  int64_t ldx, lddt, ldb, ldc, ldz, ldy;
};

namespace scalar {
void scan_prefill(const ScanParams& p, int64_t e0, int64_t e1);
void scan_step(const ScanParams& p, int64_t e0, int64_t e1);
}
namespace avx2 {
void scan_prefill(const ScanParams& p, int64_t e0, int64_t e1);
void scan_step(const ScanParams& p, int64_t e0, int64_t e1);
}
namespace avx512 {
void scan_prefill(const ScanParams& p, int64_t e0, int64_t e1);
void scan_step(const ScanParams& p, int64_t e0, int64_t e1);
}
namespace neon {  // arm64 builds only
void scan_prefill(const ScanParams& p, int64_t e0, int64_t e1);
void scan_step(const ScanParams& p, int64_t e0, int64_t e1);
}

}  // namespace mambart
