// Lets the kernel bodies in cuda/*.cuh compile with nvcc (as device and host
// code) and with the C++ compiler alone (the host harness in
// python/bind_cuda.cpp runs them over an emulated grid in every build).
//
// A kernel with __syncthreads is written as a driver over a Block: each
// phase is a lambda (tid, nthreads) run by every thread of the block, and
// the block synchronises after it. On the device Block is DeviceBlock; the
// harness passes HostBlock, which runs the phase for tid = 0 .. n-1 in turn.
// Values that live across phases go through shared memory, never through a
// lambda's locals, so both give the same result.
#pragma once
#include <math.h>
#include <stdint.h>

#if defined(__CUDACC__)
#define MAMBART_HD __host__ __device__
#else
#define MAMBART_HD
#endif

namespace mambart {
namespace cuda {

MAMBART_HD inline float silu(float v) { return v / (1.0f + expf(-v)); }
MAMBART_HD inline float softplus(float v) { return v > 20.0f ? v : log1pf(expf(v)); }
MAMBART_HD inline float gelu(float v) { return 0.5f * v * (1.0f + erff(v * 0.70710678118654752f)); }  // exact (erf)

// Bit casts without memcpy (usable in device code).
MAMBART_HD inline uint32_t float_bits(float f) {
  union { float f; uint32_t u; } c;
  c.f = f;
  return c.u;
}
MAMBART_HD inline float bits_float(uint32_t u) {
  union { float f; uint32_t u; } c;
  c.u = u;
  return c.f;
}

struct HostBlock {
  int threads;
  template <typename F>
  void phase(F f) {
    for (int t = 0; t < threads; ++t) f(t, threads);
  }
};

#if defined(__CUDACC__)
struct DeviceBlock {
  template <typename F>
  __device__ void phase(F f) {
    f(static_cast<int>(threadIdx.x), static_cast<int>(blockDim.x));
    __syncthreads();
  }
};
#endif

}  // namespace cuda
}  // namespace mambart
