// rmsnorm with fused residual add (reference doc 4.1):
//
//   residual[r] += add[r]            (skipped when add == nullptr)
//   out[r] = residual[r] / sqrt(mean(residual[r]^2) + eps) * weight
//
//   add, residual, out  (rows, dim), row stride dim
//   weight              (dim)
//
// A call handles rows [r0, r1).
#pragma once
#include <cstdint>

namespace mambart {

struct RmsnormParams {
  const float* add;
  float* residual;
  const float* weight;
  float* out;
  int64_t rows, dim;
  float eps;
};

// Gated RMSNorm of Mamba-2 (reference doc 3.1 step 8, norm_before_gate false):
//
//   v = x[r] * silu(z[r]);  per group of `group` channels:  out = v / sqrt(mean(v^2) + eps) * weight
//
// With norm_before_gate (Falcon-H1's default) the gate comes after the norm:
//
//   v = x[r];  per group:  out = v / sqrt(mean(v^2) + eps) * weight * silu(z[r])
//
//   x (rows, dim) row stride ldx; z (rows, dim) row stride ldz; out (rows, dim)
//   row stride ldout; weight (dim); dim a multiple of group.
struct RmsnormGatedParams {
  const float* x;
  const float* z;
  const float* weight;
  float* out;
  int64_t rows, dim, group;
  float eps;
  int64_t ldx, ldz, ldout;
  bool norm_before_gate = false;
};

namespace scalar {
void rmsnorm(const RmsnormParams& p, int64_t r0, int64_t r1);
void rmsnorm_gated(const RmsnormGatedParams& p, int64_t r0, int64_t r1);
}
namespace avx2 {
void rmsnorm(const RmsnormParams& p, int64_t r0, int64_t r1);
void rmsnorm_gated(const RmsnormGatedParams& p, int64_t r0, int64_t r1);
}
namespace neon {  // arm64 builds only
void rmsnorm(const RmsnormParams& p, int64_t r0, int64_t r1);
void rmsnorm_gated(const RmsnormGatedParams& p, int64_t r0, int64_t r1);
}

}  // namespace mambart
