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

namespace scalar { void rmsnorm(const RmsnormParams& p, int64_t r0, int64_t r1); }
namespace avx2 { void rmsnorm(const RmsnormParams& p, int64_t r0, int64_t r1); }

}  // namespace mambart
