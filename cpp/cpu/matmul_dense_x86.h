// The dense weight types' formats and decode (M <= kMatmulDecodeRows) for
// x86-64. cpu/matmul.cpp includes it inside namespace avx2 and decodes with
// the 8-lane formats below (16 registers); cpu/matmul_avx512.cpp includes it
// inside namespace avx512 and decodes with 16-lane formats of its own (32
// registers), through the same templates. Both are in their target region,
// after cpu/matmul_x86.h and cpu/simd_math.h. Within an ISA a row's sums are
// the same FMAs in the same order for any group size, so a row gets the bits
// it gets alone.

// ---------------------------------------------------------------- formats
//
// One struct per weight type (the block types are in cpu/matmul.cpp), for
// the decode below and the avx2 GEMM's panels. `row` is the start of a
// weight row (row_bytes(type, K) apart).
//   load8(row, k)         weights [k, k+8) as f32, k % 8 == 0: dense types
//                         for k + 8 <= K, block types anywhere in the last
//                         (zero-padded) block.
//   load_tail(row, k, n)  weights [k, k+n), n < 8, zeros after, reading
//                         nothing past k + n (dense types).
// kMinimum: q4's blocks add a minimum m (minimum(row, b)) to every weight.
// For the decode, a format also names its register (V: kLanes, zero, load
// of packed x, fma, add, hsum) and loads kLanes weights as load(row, k) and
// load_tail(row, k, n).

constexpr int kDenseChains = 2;

struct Lanes8 {
  using reg = __m256;
  static constexpr int64_t kLanes = 8;
  static constexpr int kChains = kDenseChains;
  static reg zero() { return _mm256_setzero_ps(); }
  static reg load(const float* p) { return _mm256_load_ps(p); }
  static reg fma(reg a, reg b, reg c) { return _mm256_fmadd_ps(a, b, c); }
  static reg add(reg a, reg b) { return _mm256_add_ps(a, b); }
  static float hsum(reg v) { return avx2::hsum(v); }
};

// The 8-lane formats decode with load8 as their load.
template <class F>
struct Lanes8Format : F {
  using V = Lanes8;
  static __m256 load(const char* row, int64_t k) { return F::load8(row, k); }
};

struct F32 {
  static constexpr bool kBlocked = false, kMinimum = false;
  static constexpr int64_t kBytes = 4;  // per weight (dense) or per block
  static __m256 load8(const char* row, int64_t k) {
    return _mm256_loadu_ps(reinterpret_cast<const float*>(row) + k);
  }
  static __m256 load_tail(const char* row, int64_t k, int64_t n) {
    return _mm256_maskload_ps(reinterpret_cast<const float*>(row) + k, avx2::tail_mask(n));
  }
};

// 16-bit types: the tail goes through a zeroed 8-element copy.
inline __m128i load_u16_tail(const char* row, int64_t k, int64_t n) {
  alignas(16) uint16_t t[8] = {};
  std::memcpy(t, row + 2 * k, static_cast<size_t>(n) * 2);
  return _mm_load_si128(reinterpret_cast<const __m128i*>(t));
}

struct F16 {  // F16C: 8 halves -> 8 floats in one instruction
  static constexpr bool kBlocked = false, kMinimum = false;
  static constexpr int64_t kBytes = 2;
  static __m256 cvt(__m128i h) { return _mm256_cvtph_ps(h); }
  static __m256 load8(const char* row, int64_t k) {
    return cvt(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * k)));
  }
  static __m256 load_tail(const char* row, int64_t k, int64_t n) { return cvt(load_u16_tail(row, k, n)); }
};

struct BF16 {  // bf16 is the top half of an f32: zero-extend, shift left 16
  static constexpr bool kBlocked = false, kMinimum = false;
  static constexpr int64_t kBytes = 2;
  static __m256 cvt(__m128i h) { return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16)); }
  static __m256 load8(const char* row, int64_t k) {
    return cvt(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * k)));
  }
  static __m256 load_tail(const char* row, int64_t k, int64_t n) { return cvt(load_u16_tail(row, k, n)); }
};

// ---------------------------------------------------------------- decode
//
// A product of bandwidth. x is packed once per call into zero-padded rows
// (K rounded up to 32), so the inner loop never masks x and never reads it
// past K. A weight row is used by all rows of a group while it is in
// registers, and the groups take each chunk of kDecodeCols weight rows in
// turn, so only the first reads it from memory and the others from L2.
//
// One weight row at a time keeps the weight reads one sequential stream:
// tiles of 2-4 rows side by side (2-4 streams, restarted every tile) ran at
// 12-17 GB/s where one row ran at 37 (f32, M = 1, 1 thread, cold weights).
//
// Two independent k chains per x row, so that the accumulators cover the FMA
// latency for small groups (M = 1: 2 chains at 36 GB/s, 1 at 31). The chains
// are the same for every group size: a row's sum must not depend on how many
// rows share the call (continuous batching steps any number of rows and
// promises each row the result it gets alone), so a group is at most as many
// rows as fit their 2 accumulators each, and the weights, in the registers.

// xg: the group's MR rows of x interleaved in steps of 16 k (pack_dense_x),
// so that one pointer and constant offsets address them all: a pointer per
// row left 8 rows short of general registers, reloaded from the stack in the
// inner loop (f32, N=3072 K=768, 2 threads, avx512: M = 16 at 183-189
// GFLOP/s, interleaved 204-217; M = 32 194-200, interleaved 212-225).
// packed_at: x's element k of row i of the group.
template <int MR>
inline const float* packed_at(const float* xg, int64_t k, int i) {
  return xg + (k - k % 16) * MR + 16 * i + k % 16;
}

template <class F, int MR>
void decode_dense(const char* w, const float* xg, int64_t K, typename F::V::reg (&out)[MR]) {
  using V = typename F::V;
  constexpr int U = V::kChains;
  constexpr int64_t L = V::kLanes, kStepBytes = L * U * F::kBytes;
  typename V::reg acc[MR][U];
  for (int i = 0; i < MR; ++i)
    for (int u = 0; u < U; ++u) acc[i][u] = V::zero();
  const int64_t kend = K / L * L;
  int64_t k = 0;
  for (; k + L * U <= kend; k += L * U) {
    // Prefetching: see x86::kPrefetchBytes. One per 64-byte line.
    if constexpr (MR > 2) {
      if constexpr (kStepBytes >= 64) {
        for (int64_t o = 0; o < kStepBytes; o += 64) _mm_prefetch(w + k * F::kBytes + o + x86::kPrefetchBytes, _MM_HINT_T0);
      } else if (k * F::kBytes % 64 == 0) {
        _mm_prefetch(w + k * F::kBytes + x86::kPrefetchBytes, _MM_HINT_T0);
      }
    }
    for (int u = 0; u < U; ++u) {
      const auto wv = F::load(w, k + L * u);
      for (int i = 0; i < MR; ++i) acc[i][u] = V::fma(V::load(packed_at<MR>(xg, k + L * u, i)), wv, acc[i][u]);
    }
  }
  for (; k < K; k += L) {
    const auto wv = k < kend ? F::load(w, k) : F::load_tail(w, k, K - k);
    for (int i = 0; i < MR; ++i) acc[i][0] = V::fma(V::load(packed_at<MR>(xg, k, i)), wv, acc[i][0]);
  }
  for (int i = 0; i < MR; ++i) {
    for (int u = 1; u < U; ++u) acc[i][0] = V::add(acc[i][0], acc[i][u]);
    out[i] = acc[i][0];
  }
}

// y[0:MR, c0:c1] for one group of MR rows (xg and y at its first row).
// Rows write into a buffer copied to y row by row (see x86::kDecodeCols).
template <class F, int MR>
void decode_dense_rows(const MatmulParams& p, const float* xg, float* y, int64_t c0, int64_t c1) {
  const int64_t stride = row_bytes(p.wtype, p.K);
  const char* w = static_cast<const char*>(p.w);
  alignas(32) float yb[MR * x86::kDecodeCols];
  for (int64_t n = c0; n < c1; ++n) {
    typename F::V::reg acc[MR];
    decode_dense<F, MR>(w + n * stride, xg, p.K, acc);
    const float bias = p.bias ? p.bias[n] : 0.0f;
    for (int i = 0; i < MR; ++i) yb[i * x86::kDecodeCols + (n - c0)] = F::V::hsum(acc[i]) + bias;
  }
  for (int i = 0; i < MR; ++i)
    std::memcpy(y + i * p.ldy + c0, yb + i * x86::kDecodeCols, static_cast<size_t>(c1 - c0) * 4);
}

// A group's rows of x stay in L1 (32 KB on Zen 4) beside the weight rows:
// groups of 8 with K = 1536 (48 KB of x) fell from 166-186 to 115-135
// GFLOP/s at M = 16-32, 2 threads, where groups of 4 held.
constexpr int64_t kDenseGroupXBytes = 24 * 1024;

// The M rows in as few groups of at most kGroup rows (fewer where x is long:
// kDenseGroupXBytes, but never under 4) as will do, of sizes that differ by
// at most one: group j is rows [start(j), start(j + 1)).
struct DenseGroups {
  int64_t M, count;
  int64_t start(int64_t j) const { return M * j / count; }
};

inline DenseGroups dense_groups(int64_t M, int64_t ldxp, int64_t max_group) {
  const int64_t group = std::clamp<int64_t>(kDenseGroupXBytes / (ldxp * 4), std::min<int64_t>(max_group, 4), max_group);
  return {M, (M + group - 1) / group};
}

// x of one call: each group's rows, zero-padded to ldxp = K rounded up to 32,
// at xp + start * ldxp as [ldxp / 16][rows][16].
struct DenseX {
  const float* xp;
  int64_t ldxp;
};

template <int kGroup>
DenseX pack_dense_x(const MatmulParams& p) {
  const int64_t ldxp = x86::round_up(p.K, kQuantBlock);
  float* xp = x86::scratch(0, p.M * ldxp);
  const DenseGroups groups = dense_groups(p.M, ldxp, kGroup);
  for (int64_t j = 0; j < groups.count; ++j) {
    const int64_t g = groups.start(j), rows = groups.start(j + 1) - g;
    for (int64_t i = 0; i < rows; ++i) {
      const float* x = p.x + (g + i) * p.ldx;
      for (int64_t k = 0; k < ldxp; k += 16) {
        float* dst = xp + g * ldxp + k * rows + 16 * i;
        const int64_t n = std::clamp<int64_t>(p.K - k, 0, 16);
        std::memcpy(dst, x + k, static_cast<size_t>(n) * 4);
        std::memset(dst + n, 0, static_cast<size_t>(16 - n) * 4);
      }
    }
  }
  return {xp, ldxp};
}

template <class F, int MR>
void decode_dense_group(const MatmulParams& p, const DenseX& x, int64_t g, int64_t rows, int64_t c0, int64_t c1) {
  if constexpr (MR > 1) {
    if (rows < MR) return decode_dense_group<F, MR - 1>(p, x, g, rows, c0, c1);
  }
  decode_dense_rows<F, MR>(p, x.xp + g * x.ldxp, p.y + g * p.ldy, c0, c1);
}

template <class F, int kGroup>
void decode_dense_all(const MatmulParams& p, int64_t n0, int64_t n1) {
  const DenseX x = x86::packed_once<F, DenseX>(p, pack_dense_x<kGroup>);
  const DenseGroups groups = dense_groups(p.M, x.ldxp, kGroup);
  for (int64_t c0 = n0; c0 < n1; c0 += x86::kDecodeCols) {
    const int64_t c1 = std::min(n1, c0 + x86::kDecodeCols);
    for (int64_t j = 0; j < groups.count; ++j) {
      const int64_t g = groups.start(j);
      decode_dense_group<F, kGroup>(p, x, g, groups.start(j + 1) - g, c0, c1);
    }
  }
}
