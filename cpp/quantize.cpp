// Weight formats: see kernels/quantize.h. Conversion runs once per weight,
// at load, so it is plain scalar code.
#include "kernels/quantize.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "check.h"

namespace mambart {

namespace {

int64_t blocks(int64_t K) { return K / kQuantBlock + (K % kQuantBlock != 0); }  // no K + 31: K may be huge

uint16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);  // NaN stays NaN
  u += 0x7fffu + ((u >> 16) & 1);  // round to nearest, ties to even
  return static_cast<uint16_t>(u >> 16);
}

float bf16_to_f32(uint16_t h) {
  const uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

uint16_t f32_to_f16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  const uint32_t sign = (u >> 16) & 0x8000u;
  const uint32_t abs = u & 0x7fffffffu;
  if (abs > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u);  // NaN
  if (abs >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds to >= 65520: inf
  if (abs < 0x38800000u) {
    // Subnormal half (or zero): value = m * 2^-24, round to nearest even.
    const float scaled = std::fabs(f) * 16777216.0f;  // exact: a power-of-two scale
    return static_cast<uint16_t>(sign | static_cast<uint32_t>(std::nearbyint(scaled)));
  }
  // Normal: rebias the exponent, round the mantissa to 10 bits (nearest even).
  uint32_t h = ((abs >> 13) - (112u << 10));
  const uint32_t rest = abs & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1))) h += 1;
  return static_cast<uint16_t>(sign | h);
}

float f16_to_f32(uint16_t h) {
  const uint32_t sign = (h & 0x8000u) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ffu;
  if (exp == 0) {  // zero or subnormal: man * 2^-24
    const float v = static_cast<float>(man) * (1.0f / 16777216.0f);
    return sign ? -v : v;
  }
  const uint32_t u = exp == 31 ? sign | 0x7f800000u | (man << 13) : sign | ((exp + 112u) << 23) | (man << 13);
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

void quantize_q8(const float* w, int64_t K, BlockQ8* out) {
  for (int64_t b = 0; b < blocks(K); ++b) {
    const int64_t k0 = b * kQuantBlock, n = std::min(kQuantBlock, K - k0);
    float amax = 0.0f;
    for (int64_t i = 0; i < n; ++i) amax = std::max(amax, std::fabs(w[k0 + i]));
    BlockQ8& blk = out[b];
    blk.d = amax / 127.0f;
    const float inv = amax > 0 ? 127.0f / amax : 0.0f;
    for (int64_t i = 0; i < kQuantBlock; ++i)
      blk.q[i] = i < n ? static_cast<int8_t>(std::lround(w[k0 + i] * inv)) : 0;
  }
}

void quantize_q4(const float* w, int64_t K, BlockQ4* out) {
  for (int64_t b = 0; b < blocks(K); ++b) {
    const int64_t k0 = b * kQuantBlock, n = std::min(kQuantBlock, K - k0);
    float lo = w[k0], hi = w[k0];
    for (int64_t i = 1; i < n; ++i) {
      lo = std::min(lo, w[k0 + i]);
      hi = std::max(hi, w[k0 + i]);
    }
    BlockQ4& blk = out[b];
    blk.d = (hi - lo) / 15.0f;
    blk.m = lo;
    const float inv = hi > lo ? 15.0f / (hi - lo) : 0.0f;
    std::memset(blk.q, 0, sizeof(blk.q));
    for (int64_t i = 0; i < n; ++i) {
      const long code = std::min(15L, std::max(0L, std::lround((w[k0 + i] - lo) * inv)));
      blk.q[i / 2] |= static_cast<uint8_t>(code << (4 * (i % 2)));
    }
  }
}

}  // namespace

void quantize_x_q8(const float* x, int64_t K, int8_t* q, float* dx) {
  for (int64_t b = 0; b < blocks(K); ++b) {
    const int64_t k0 = b * kQuantBlock, n = std::min(kQuantBlock, K - k0);
    float amax = 0.0f;
    for (int64_t i = 0; i < n; ++i) amax = std::max(amax, std::fabs(x[k0 + i]));
    dx[b] = amax / 127.0f;
    const float inv = amax > 0 ? 127.0f / amax : 0.0f;
    for (int64_t i = 0; i < kQuantBlock; ++i)
      q[k0 + i] = i < n ? static_cast<int8_t>(std::nearbyint(x[k0 + i] * inv)) : 0;
  }
}

void quantize_x_q16(const float* x, int64_t K, int16_t* q, float* dx) {
  for (int64_t b = 0; b < blocks(K); ++b) {
    const int64_t k0 = b * kQuantBlock, n = std::min(kQuantBlock, K - k0);
    float amax = 0.0f;
    bool finite = true;
    for (int64_t i = 0; i < n; ++i) {
      amax = std::max(amax, std::fabs(x[k0 + i]));
      finite = finite && std::isfinite(x[k0 + i]);
    }
    dx[b] = finite ? amax / 32767.0f : std::numeric_limits<float>::quiet_NaN();
    const float inv = finite && amax > 0 ? 32767.0f / amax : 0.0f;
    for (int64_t i = 0; i < kQuantBlock; ++i)
      q[k0 + i] = i < n && finite ? static_cast<int16_t>(std::nearbyint(x[k0 + i] * inv)) : 0;
  }
}

int64_t row_bytes(DType type, int64_t K) {
  switch (type) {
    case DType::F32: case DType::F32P: return size_mul(4, K, "row_bytes");
    case DType::F16: case DType::BF16: return size_mul(2, K, "row_bytes");
    case DType::Q8: return size_mul(blocks(K), static_cast<int64_t>(sizeof(BlockQ8)), "row_bytes");
    case DType::Q4: return size_mul(blocks(K), static_cast<int64_t>(sizeof(BlockQ4)), "row_bytes");
    default: break;
  }
  MAMBART_CHECK(false, "[quantize] ", dtype_name(type), " is not a weight type");
  return 0;
}

void convert_rows(const float* src, int64_t rows, int64_t K, DType type, void* dst) {
  const int64_t stride = row_bytes(type, K);
  for (int64_t r = 0; r < rows; ++r) {
    const float* w = src + r * K;
    char* out = static_cast<char*>(dst) + r * stride;
    switch (type) {
      case DType::F32: std::memcpy(out, w, static_cast<size_t>(stride)); break;
      case DType::F16:
        for (int64_t k = 0; k < K; ++k) reinterpret_cast<uint16_t*>(out)[k] = f32_to_f16(w[k]);
        break;
      case DType::BF16:
        for (int64_t k = 0; k < K; ++k) reinterpret_cast<uint16_t*>(out)[k] = f32_to_bf16(w[k]);
        break;
      case DType::Q8: quantize_q8(w, K, reinterpret_cast<BlockQ8*>(out)); break;
      case DType::Q4: quantize_q4(w, K, reinterpret_cast<BlockQ4*>(out)); break;
      default: break;
    }
  }
}

void pack_panels(const float* src, int64_t N, int64_t K, float* dst, int64_t g0, int64_t g1) {
  // A row at a time over 64 columns: reading the panel's 16 rows side by
  // side thrashed L1 when they were 4 KB apart (K = 1024: one cache set).
  constexpr int64_t kCols = 64;
  for (int64_t g = g0; g < g1; ++g) {
    float* panel = dst + g * kPanelRows * K;
    const int64_t rows = std::min(kPanelRows, N - g * kPanelRows);
    for (int64_t k0 = 0; k0 < K; k0 += kCols) {
      const int64_t k1 = std::min(K, k0 + kCols);
      for (int64_t r = 0; r < kPanelRows; ++r) {
        const float* row = src + (g * kPanelRows + r) * K;
        for (int64_t k = k0; k < k1; ++k) panel[k * kPanelRows + r] = r < rows ? row[k] : 0.0f;
      }
    }
  }
}

void panel_row(const float* src, int64_t K, int64_t n, float* dst) {
  const float* panel = src + n / kPanelRows * kPanelRows * K + n % kPanelRows;
  for (int64_t k = 0; k < K; ++k) dst[k] = panel[k * kPanelRows];
}

void dequantize_row(const void* src, DType type, int64_t K, float* dst) {
  const char* in = static_cast<const char*>(src);
  switch (type) {
    case DType::F32: std::memcpy(dst, in, static_cast<size_t>(K) * 4); return;
    case DType::F16:
      for (int64_t k = 0; k < K; ++k) dst[k] = f16_to_f32(reinterpret_cast<const uint16_t*>(in)[k]);
      return;
    case DType::BF16:
      for (int64_t k = 0; k < K; ++k) dst[k] = bf16_to_f32(reinterpret_cast<const uint16_t*>(in)[k]);
      return;
    case DType::Q8:
      for (int64_t k = 0; k < K; ++k) {
        const BlockQ8& b = reinterpret_cast<const BlockQ8*>(in)[k / kQuantBlock];
        dst[k] = b.d * b.q[k % kQuantBlock];
      }
      return;
    case DType::Q4:
      for (int64_t k = 0; k < K; ++k) {
        const BlockQ4& b = reinterpret_cast<const BlockQ4*>(in)[k / kQuantBlock];
        const int i = static_cast<int>(k % kQuantBlock);
        dst[k] = b.d * static_cast<float>((b.q[i / 2] >> (4 * (i % 2))) & 15) + b.m;
      }
      return;
    default: break;
  }
  MAMBART_CHECK(false, "[quantize] ", dtype_name(type), " is not a weight type");
}

}  // namespace mambart
