// Elementwise work on the device: the SiLU and GELU gates, squared ReLU, the
// hybrids' multipliers (scale, per-column scale, axpy), weight decoding for
// every weight type (kernels/quantize.h), the embedding gather, and the
// activation conversion feeding cuBLAS. One thread per element.
#pragma once
#include "compat.cuh"
#include "kernels/elementwise.h"
#include "kernels/quantize.h"

namespace mambart {
namespace cuda {

MAMBART_HD inline float f16_value(uint16_t h) {
  const uint32_t sign = (h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
  if (exp == 0) {  // zero or subnormal: man * 2^-24
    const float v = static_cast<float>(man) * (1.0f / 16777216.0f);
    return sign ? -v : v;
  }
  return bits_float(exp == 31 ? sign | 0x7f800000u | (man << 13) : sign | ((exp + 112u) << 23) | (man << 13));
}
MAMBART_HD inline float bf16_value(uint16_t h) { return bits_float(static_cast<uint32_t>(h) << 16); }

// Weight k of row n of a (rows, K) matrix of type t, as f32 (dequantize_row's formulas).
MAMBART_HD inline float weight_value(const void* w, DType t, int64_t K, int64_t n, int64_t k) {
  const char* row = static_cast<const char*>(w);
  switch (t) {
    case DType::F16: return f16_value(reinterpret_cast<const uint16_t*>(row)[n * K + k]);
    case DType::BF16: return bf16_value(reinterpret_cast<const uint16_t*>(row)[n * K + k]);
    case DType::Q8: {
      const int64_t nb = (K + kQuantBlock - 1) / kQuantBlock;
      const BlockQ8& b = reinterpret_cast<const BlockQ8*>(row)[n * nb + k / kQuantBlock];
      return b.d * b.q[k % kQuantBlock];
    }
    case DType::Q4: {
      const int64_t nb = (K + kQuantBlock - 1) / kQuantBlock;
      const BlockQ4& b = reinterpret_cast<const BlockQ4*>(row)[n * nb + k / kQuantBlock];
      const int i = static_cast<int>(k % kQuantBlock);
      return b.d * static_cast<float>((b.q[i / 2] >> (4 * (i % 2))) & 15) + b.m;
    }
    default: return reinterpret_cast<const float*>(row)[n * K + k];
  }
}

struct EmbeddingParams {
  const void* table;  // (V, D) of type dtype
  DType dtype;
  const int32_t* ids;  // (n), already range-checked
  float* out;          // (n, D)
  int64_t n, D;
};

MAMBART_HD inline void embedding_one(const EmbeddingParams& p, int64_t i, int64_t d) {
  p.out[i * p.D + d] = weight_value(p.table, p.dtype, p.D, p.ids[i], d);
}

MAMBART_HD inline void gate_silu_one(const ElementwiseParams& p, int64_t i) { p.y[i] = p.x[i] * silu(p.z[i]); }
MAMBART_HD inline void gate_gelu_one(const ElementwiseParams& p, int64_t i) { p.y[i] = p.x[i] * gelu(p.z[i]); }
// As std::max(x, 0): NaN stays NaN.
MAMBART_HD inline void relu_sq_one(const ElementwiseParams& p, int64_t i) {
  const float v = p.x[i] < 0.0f ? 0.0f : p.x[i];
  p.y[i] = v * v;
}

// The hybrids' multipliers, on a (rows, cols) block of y with row stride ld,
// in place: y *= col_scale[j] (mul_columns), else y += alpha * x (axpy, x laid
// out as y), else y *= alpha (scale). scale and axpy: rows 1, cols n.
struct ScaleParams {
  const float* x;
  float* y;
  const float* col_scale;
  float alpha;
  int64_t rows, cols, ld;
};

MAMBART_HD inline void scale_one(const ScaleParams& p, int64_t r, int64_t j) {
  float& y = p.y[r * p.ld + j];
  if (p.col_scale)
    y *= p.col_scale[j];
  else if (p.x)
    y += p.alpha * p.x[r * p.ld + j];
  else
    y *= p.alpha;
}

#if defined(__CUDACC__)
__global__ void embedding_kernel(EmbeddingParams p) {
  const int64_t d = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (d < p.D) embedding_one(p, blockIdx.y, d);
}
__global__ void gate_silu_kernel(ElementwiseParams p) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i < p.n) gate_silu_one(p, i);
}

__global__ void gate_gelu_kernel(ElementwiseParams p) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i < p.n) gate_gelu_one(p, i);
}
__global__ void relu_sq_kernel(ElementwiseParams p) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i < p.n) relu_sq_one(p, i);
}
__global__ void scale_kernel(ScaleParams p) {
  const int64_t j = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (j < p.cols) scale_one(p, blockIdx.y, j);
}

inline void launch_embedding(const EmbeddingParams& p, cudaStream_t s) {
  embedding_kernel<<<dim3(static_cast<unsigned>((p.D + 127) / 128), static_cast<unsigned>(p.n)), 128, 0, s>>>(p);
}
inline void launch_gate_silu(const ElementwiseParams& p, cudaStream_t s) {
  gate_silu_kernel<<<static_cast<unsigned>((p.n + 255) / 256), 256, 0, s>>>(p);
}
inline void launch_gate_gelu(const ElementwiseParams& p, cudaStream_t s) {
  gate_gelu_kernel<<<static_cast<unsigned>((p.n + 255) / 256), 256, 0, s>>>(p);
}
inline void launch_relu_sq(const ElementwiseParams& p, cudaStream_t s) {
  relu_sq_kernel<<<static_cast<unsigned>((p.n + 255) / 256), 256, 0, s>>>(p);
}
inline void launch_scale(const ScaleParams& p, cudaStream_t s) {
  scale_kernel<<<dim3(static_cast<unsigned>((p.cols + 255) / 256), static_cast<unsigned>(p.rows)), 256, 0, s>>>(p);
}
#endif

}  // namespace cuda
}  // namespace mambart

namespace mambart {
namespace cuda {

// f32 -> f16 / bf16 bits, round to nearest even (quantize.cpp's rounding):
// activations for cuBLAS products with f16 / bf16 weights.
MAMBART_HD inline uint16_t to_bf16(float f) {
  const uint32_t u = float_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);  // NaN stays NaN
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
MAMBART_HD inline uint16_t to_f16(float f) {
  const uint32_t u = float_bits(f), sign = (u >> 16) & 0x8000u;
  const uint32_t a = u & 0x7fffffffu;
  if (a >= 0x7f800000u) return static_cast<uint16_t>(sign | 0x7c00u | (a > 0x7f800000u ? 0x200u : 0u));
  if (a >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds to inf
  if (a < 0x38800000u) {  // subnormal half: value / 2^-24, round to nearest even
    const float v = bits_float(a) * 16777216.0f;
    float r = floorf(v);
    const float frac = v - r;
    if (frac > 0.5f || (frac == 0.5f && fmodf(r, 2.0f) != 0.0f)) r += 1.0f;
    return static_cast<uint16_t>(sign | static_cast<uint32_t>(r));
  }
  const uint32_t m = a + 0xfffu + ((a >> 13) & 1u) - (112u << 23);
  return static_cast<uint16_t>(sign | (m >> 13));
}

struct ConvertParams {
  const float* x;  // (M, K) row stride ldx
  uint16_t* out;   // (M, K) contiguous
  int64_t M, K, ldx;
  bool bf16;
};

MAMBART_HD inline void convert_one(const ConvertParams& p, int64_t m, int64_t k) {
  const float v = p.x[m * p.ldx + k];
  p.out[m * p.K + k] = p.bf16 ? to_bf16(v) : to_f16(v);
}

struct BiasParams {
  const float* bias;  // (N)
  float* y;           // (M, N) row stride ldy
  int64_t M, N, ldy;
};

MAMBART_HD inline void add_bias_one(const BiasParams& p, int64_t m, int64_t n) { p.y[m * p.ldy + n] += p.bias[n]; }

#if defined(__CUDACC__)
__global__ void convert_kernel(ConvertParams p) {
  const int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (k < p.K) convert_one(p, blockIdx.y, k);
}
__global__ void add_bias_kernel(BiasParams p) {
  const int64_t n = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (n < p.N) add_bias_one(p, blockIdx.y, n);
}
inline void launch_convert(const ConvertParams& p, cudaStream_t s) {
  convert_kernel<<<dim3(static_cast<unsigned>((p.K + 255) / 256), static_cast<unsigned>(p.M)), 256, 0, s>>>(p);
}
inline void launch_add_bias(const BiasParams& p, cudaStream_t s) {
  add_bias_kernel<<<dim3(static_cast<unsigned>((p.N + 255) / 256), static_cast<unsigned>(p.M)), 256, 0, s>>>(p);
}
#endif

}  // namespace cuda
}  // namespace mambart
