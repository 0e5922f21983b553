// Every ISA's kernels against the scalar ones (matmul for every weight type,
// scan, SSD, conv1d, rmsnorm, elementwise, attention) on random data of awkward sizes: a
// check for builds without Python (an arm64 cross build run under qemu,
// tools/check_arm64.sh). The scalar kernels are themselves checked against
// float64 numpy by the pytest suite. Prints one line per family and ISA and
// exits 1 on any mismatch.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "cpu/isa.h"
#include "kernels/quantize.h"

using namespace mambart;

namespace {

constexpr DType kTypes[] = {DType::F32, DType::F16, DType::BF16, DType::Q8, DType::Q4};

// y of one matmul on `isa`, in calls of at most `rows` rows of x (all M by
// default) and two ranges of N each, as the thread pool would split them.
std::vector<float> run(const std::string& isa, DType type, const std::vector<char>& w, const std::vector<float>& x,
                       const std::vector<float>& bias, int64_t M, int64_t N, int64_t K, bool prefill,
                       int64_t rows = 0) {
  set_isa(isa);
  std::vector<float> y(static_cast<size_t>(M * N), NAN);
  rows = rows > 0 ? rows : M;
  for (int64_t m0 = 0; m0 < M; m0 += rows) {
    MatmulParams p{x.data() + m0 * K, w.data(), type, bias.data(), y.data() + m0 * N, std::min(rows, M - m0),
                   N, K, K, N};
    p.prefill = prefill;
    cpu_kernels().matmul[static_cast<int>(type)](p, 0, N / 2);
    cpu_kernels().matmul[static_cast<int>(type)](p, N / 2, N);
  }
  return y;
}

// max |got - want| / max |want|
double rel_err(const std::vector<float>& got, const std::vector<float>& want) {
  double err = 0, scale = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (!std::isfinite(got[i])) return INFINITY;
    err = std::max(err, std::fabs(static_cast<double>(got[i]) - want[i]));
    scale = std::max(scale, std::fabs(static_cast<double>(want[i])));
  }
  return scale > 0 ? err / scale : err;
}

// Relative error allowed between an ISA and scalar, per output array.
constexpr double kTolerance = 1e-5;
// SSD sums over N and over a chunk's tokens in another order (prefill's block
// form), and through exp of long segment sums: looser.
constexpr double kSsdTolerance = 1e-4;

using Outputs = std::vector<std::vector<float>>;

// Cases of one kernel family on one ISA.
struct Family {
  const char* name;
  int cases = 0;
  double worst = 0;
};

// Runs `run` (which builds fresh inputs, calls the active kernels and
// returns their outputs) under scalar and under `isa`, and compares every
// output array. `what` names the case in a failure line.
void compare(Family& f, int& failures, const std::string& isa, const std::string& what,
             const std::function<Outputs()>& run, double tolerance = kTolerance) {
  set_isa("scalar");
  const Outputs want = run();
  set_isa(isa);
  const Outputs got = run();
  double e = 0;
  for (size_t i = 0; i < want.size(); ++i) e = std::max(e, rel_err(got[i], want[i]));
  f.worst = std::max(f.worst, e);
  ++f.cases;
  if (!(e <= tolerance)) {
    std::printf("FAIL %s %s %s: relative error %.3g\n", isa.c_str(), f.name, what.c_str(), e);
    ++failures;
  }
}

void report(const std::string& isa, const Family& f) {
  std::printf("%s %s vs scalar: %d cases, worst relative error %.3g\n", isa.c_str(), f.name, f.cases, f.worst);
}

std::string sizes(std::initializer_list<std::pair<const char*, int64_t>> kv) {
  std::string s;
  for (const auto& p : kv) s += (s.empty() ? "" : " ") + std::string(p.first) + "=" + std::to_string(p.second);
  return s;
}

std::vector<float> randn(std::mt19937& rng, int64_t n, float scale = 1.0f, float shift = 0.0f) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = shift + scale * normal(rng);
  return v;
}

// Calls kernel(p, lo, hi) on [0, n) in two ranges, as the thread pool would split it.
template <class P>
void split(void (*kernel)(const P&, int64_t, int64_t), const P& p, int64_t n) {
  kernel(p, 0, n / 2);
  kernel(p, n / 2, n);
}

// Mamba-1 scan: prefill over two calls (the state carried from the first to
// the second) and two decode steps of a batch; E not a multiple of the
// vector width, N = 16 (real models) and others, z present and absent; and
// a spread of A wide enough that exp(delta A) runs from 1 to full decay
// (past the subnormal edge).
void check_scan(std::mt19937& rng, const std::string& isa, int& failures) {
  Family f{"scan"};
  for (int64_t E : {1, 5, 13, 24})
    for (int64_t N : {16, 13, 4, 1})
      for (bool gate : {true, false})
        for (int64_t batch : {1, 3})
          for (int64_t seqlen : {1, 7})
            for (float spread : {1.0f, 5.0f}) {
              const bool step = batch > 1 || seqlen == 1;  // batch > 1 only steps
              if (batch > 1 && seqlen > 1) continue;
              const int64_t rows = batch * seqlen, ld = E + 3;  // rows wider than E, as slices of xz
              const auto x = randn(rng, 2 * rows * ld), dt = randn(rng, 2 * rows * ld, 1.0f, -1.0f),
                         z = randn(rng, 2 * rows * ld, 2.0f), B = randn(rng, 2 * rows * N), C = randn(rng, 2 * rows * N),
                         D = randn(rng, E), dt_bias = randn(rng, E, 0.5f), state0 = randn(rng, batch * E * N);
              std::vector<float> A = randn(rng, E * N, spread);
              for (float& a : A) a = -std::exp(a);
              compare(f, failures, isa,
                      sizes({{"E", E}, {"N", N}, {"batch", batch}, {"seqlen", seqlen}, {"z", gate}}) +
                          (spread > 1.0f ? " wide A" : ""),
                      [&] {
                        std::vector<float> state = state0, y(static_cast<size_t>(2 * rows * ld), 0.0f);
                        for (int64_t call = 0; call < 2; ++call) {
                          const int64_t o = call * rows;
                          const ScanParams p{x.data() + o * ld, dt.data() + o * ld, dt_bias.data(), A.data(),
                                             B.data() + o * N, C.data() + o * N, D.data(),
                                             gate ? z.data() + o * ld : nullptr, state.data(), y.data() + o * ld,
                                             batch, seqlen, E, N, ld, ld, N, N, ld, ld};
                          split(step ? cpu_kernels().scan_step : cpu_kernels().scan_prefill, p, E);
                        }
                        return Outputs{y, state};
                      });
            }
  report(isa, f);
}

// Mamba-2 SSD: two decode steps of batch 1 and 3, and prefill over two calls
// (the state carried) with chunks that do and do not divide the sequence;
// one and two groups, P and N at real sizes and off the vector widths, D per
// head and per channel, delta clamped to a real range and unclamped.
void check_ssd(std::mt19937& rng, const std::string& isa, int& failures) {
  Family f{"ssd"};
  struct Run {
    int64_t batch, seqlen, chunk;  // chunk 0: ssd_step
  };
  const Run runs[] = {{1, 1, 0}, {3, 1, 0}, {1, 37, 16}, {1, 64, 64}, {1, 9, 4}};
  const std::pair<float, float> limits[] = {{0.001f, 0.1f}, {0.0f, INFINITY}};
  for (int64_t G : {1, 2})
    for (int64_t P : {64, 24, 13})
      for (int64_t N : {128, 16, 13})
        for (bool per_channel : {true, false})
          for (const auto& lim : limits)
            for (const Run& r : runs) {
              const int64_t H = G == 1 ? 4 : 6, rows = r.batch * r.seqlen;  // split mid-group (G = 1) and between groups
              const int64_t ldx = H * P + 5, lddt = H + 2, ldb = G * N + 3, ldc = G * N + 1, ldy = H * P + 2;
              const auto x = randn(rng, 2 * rows * ldx), dt = randn(rng, 2 * rows * lddt, 2.0f, -3.0f),
                         B = randn(rng, 2 * rows * ldb), C = randn(rng, 2 * rows * ldc),
                         D = randn(rng, H * P), dt_bias = randn(rng, H, 0.5f), state0 = randn(rng, r.batch * H * P * N);
              std::vector<float> A = randn(rng, H);
              for (float& a : A) a = -std::exp(a);
              const std::string what = sizes({{"G", G}, {"H", H}, {"P", P}, {"N", N}, {"batch", r.batch},
                                              {"seqlen", r.seqlen}, {"chunk", r.chunk}, {"D per channel", per_channel},
                                              {"clamped", std::isfinite(lim.second)}});
              compare(f, failures, isa, what, [&] {
                std::vector<float> state = state0, y(static_cast<size_t>(2 * rows * ldy), 0.0f);
                for (int64_t call = 0; call < 2; ++call) {
                  const int64_t o = call * rows;
                  const SsdParams p{x.data() + o * ldx, dt.data() + o * lddt, dt_bias.data(), A.data(),
                                    B.data() + o * ldb, C.data() + o * ldc, D.data(), state.data(),
                                    y.data() + o * ldy, r.batch, r.seqlen, H, P, G, N, r.chunk, per_channel,
                                    lim.first, lim.second, ldx, lddt, ldb, ldc, ldy};
                  split(r.chunk ? cpu_kernels().ssd_prefill : cpu_kernels().ssd_step, p, H);
                }
                return Outputs{y, state};
              }, kSsdTolerance);
            }
  report(isa, f);
}

// Causal conv1d + SiLU: prefill over two calls and two decode steps of a
// batch, channel counts off the vector width, every K up to 5, with and
// without bias.
void check_conv1d(std::mt19937& rng, const std::string& isa, int& failures) {
  Family f{"conv1d"};
  for (int64_t Ch : {1, 5, 8, 13, 20})
    for (int64_t K : {1, 2, 3, 4, 5})
      for (bool has_bias : {true, false})
        for (int64_t batch : {1, 3})
          for (int64_t seqlen : {1, 6}) {
            if (batch > 1 && seqlen > 1) continue;
            const bool step = seqlen == 1;
            const int64_t rows = batch * seqlen, ldx = 2 * Ch + 1, ldy = Ch + 2;
            const auto x = randn(rng, 2 * rows * ldx, 2.0f), w = randn(rng, Ch * K, 0.7f), bias = randn(rng, Ch),
                       state0 = randn(rng, batch * Ch * K, 2.0f);
            compare(f, failures, isa,
                    sizes({{"C", Ch}, {"K", K}, {"batch", batch}, {"seqlen", seqlen}, {"bias", has_bias}}), [&] {
                      std::vector<float> state = state0, y(static_cast<size_t>(2 * rows * ldy), 0.0f);
                      for (int64_t call = 0; call < 2; ++call) {
                        const int64_t o = call * rows;
                        const Conv1dParams p{x.data() + o * ldx, w.data(), has_bias ? bias.data() : nullptr,
                                             state.data(), y.data() + o * ldy, batch, seqlen, Ch, K, ldx, ldy};
                        split(step ? cpu_kernels().conv1d_step : cpu_kernels().conv1d_prefill, p, Ch);
                      }
                      return Outputs{y, state};
                    });
          }
  report(isa, f);
}

// rmsnorm with and without the residual add, and the gated rmsnorm with
// groups off the vector width.
void check_rmsnorm(std::mt19937& rng, const std::string& isa, int& failures) {
  Family f{"rmsnorm"};
  for (int64_t rows : {1, 3})
    for (int64_t dim : {1, 5, 8, 13, 64, 97})
      for (bool has_add : {true, false}) {
        const auto add = randn(rng, rows * dim), res0 = randn(rng, rows * dim, 3.0f), w = randn(rng, dim, 0.2f, 1.0f);
        compare(f, failures, isa, sizes({{"rows", rows}, {"dim", dim}, {"add", has_add}}), [&] {
          std::vector<float> res = res0, out(static_cast<size_t>(rows * dim), 0.0f);
          const RmsnormParams p{has_add ? add.data() : nullptr, res.data(), w.data(), out.data(), rows, dim, 1e-5f};
          split(cpu_kernels().rmsnorm, p, rows);
          return Outputs{out, res};
        });
      }
  for (int64_t rows : {1, 3})
    for (int64_t group : {1, 4, 5, 13, 16})
      for (int64_t groups : {1, 3})
        for (bool before : {false, true}) {
          const int64_t dim = group * groups, ld = dim + 3;
          const auto x = randn(rng, rows * ld), z = randn(rng, rows * ld, 2.0f), w = randn(rng, dim, 0.2f, 1.0f);
          compare(f, failures, isa,
                  sizes({{"gated rows", rows}, {"group", group}, {"groups", groups}, {"norm before gate", before}}),
                  [&] {
                    std::vector<float> out(static_cast<size_t>(rows * ld), 0.0f);
                    const RmsnormGatedParams p{x.data(), z.data(), w.data(), out.data(), rows, dim, group, 1e-5f,
                                               ld,       ld,       ld,      before};
                    split(cpu_kernels().rmsnorm_gated, p, rows);
                    return Outputs{out};
                  });
        }
  report(isa, f);
}

// silu, softplus, gate_silu over ranges that start and end off the vector
// width, on inputs wide enough to reach softplus's threshold of 20.
void check_elementwise(std::mt19937& rng, const std::string& isa, int& failures) {
  Family f{"elementwise"};
  using Kernel = void (*)(const ElementwiseParams&, int64_t, int64_t);
  const std::pair<const char*, Kernel CpuKernels::*> kernels[] = {
      {"silu", &CpuKernels::silu}, {"softplus", &CpuKernels::softplus}, {"gate_silu", &CpuKernels::gate_silu},
      {"relu_sq", &CpuKernels::relu_sq}};
  for (const auto& k : kernels)
    for (int64_t n : {1, 3, 4, 5, 17, 100}) {
      const auto x = randn(rng, n, 10.0f), z = randn(rng, n, 10.0f);
      compare(f, failures, isa, std::string(k.first) + " " + sizes({{"n", n}}), [&] {
        std::vector<float> y(static_cast<size_t>(n), 0.0f);
        split(cpu_kernels().*k.second, ElementwiseParams{x.data(), z.data(), y.data(), n}, n);
        return Outputs{y};
      });
    }
  report(isa, f);
}

// Causal attention: one sequence's prefill (row t sees keys [0, t]) over
// lengths around the key block of 64, and a step of rows with caches of
// different lengths; MHA, GQA with one and several KV heads, head sizes off
// every vector width; a scale that makes the softmax peaked. There a score's
// f32 rounding (~1e-6 of |s| ~ 30 for d = 130) becomes a weight's relative
// error, and the ISAs sum q . k in other orders: a looser bound.
constexpr double kPeakedTolerance = 5e-5;

void check_attention(std::mt19937& rng, const std::string& isa, int& failures) {
  Family f{"attention"};
  const int64_t heads[][3] = {{1, 1, 8}, {4, 4, 16}, {6, 2, 13}, {5, 1, 64}, {8, 2, 7}, {3, 3, 130}};
  for (const auto& hd : heads) {
    const int64_t H = hd[0], Hkv = hd[1], d = hd[2];
    for (int64_t length : {1, 63, 64, 65, 200}) {
      for (float scale : {1.0f / std::sqrt(static_cast<float>(d)), 3.0f}) {
        const auto q = randn(rng, length * H * d), k = randn(rng, length * Hkv * d), v = randn(rng, length * Hkv * d);
        std::vector<const float*> ks(static_cast<size_t>(length), k.data()), vs(static_cast<size_t>(length), v.data());
        std::vector<int64_t> len(static_cast<size_t>(length));
        for (int64_t t = 0; t < length; ++t) len[static_cast<size_t>(t)] = t + 1;
        compare(f, failures, isa, "prefill " + sizes({{"H", H}, {"Hkv", Hkv}, {"d", d}, {"len", length}}), [&] {
          std::vector<float> out(static_cast<size_t>(length * H * d), NAN);
          split(cpu_kernels().attention,
                AttentionParams{q.data(), out.data(), ks.data(), vs.data(), len.data(), length, H, Hkv, d, scale,
                                H * d, H * d},
                length * H);
          return Outputs{out};
        }, scale > 1.0f ? kPeakedTolerance : kTolerance);
      }
    }
    const std::vector<int64_t> len = {1, 7, 64, 129, 300};
    std::vector<std::vector<float>> k, v;
    std::vector<const float*> ks, vs;
    for (int64_t n : len) {
      k.push_back(randn(rng, n * Hkv * d));
      v.push_back(randn(rng, n * Hkv * d));
    }
    for (size_t b = 0; b < len.size(); ++b) ks.push_back(k[b].data()), vs.push_back(v[b].data());
    const int64_t rows = static_cast<int64_t>(len.size());
    const auto q = randn(rng, rows * H * d);
    compare(f, failures, isa, "step " + sizes({{"H", H}, {"Hkv", Hkv}, {"d", d}}), [&] {
      std::vector<float> out(static_cast<size_t>(rows * H * d), NAN);
      split(cpu_kernels().attention,
            AttentionParams{q.data(), out.data(), ks.data(), vs.data(), len.data(), rows, H, Hkv, d, 0.5f, H * d,
                            H * d},
            rows * H);
      return Outputs{out};
    });
  }
  report(isa, f);
}

}  // namespace

int main() {
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  int failures = 0;
  for (const std::string& isa : available_isas()) {
    if (isa == "scalar") continue;
    int cases = 0;
    double worst = 0;
    for (DType type : kTypes)
      for (int64_t M : {1, 3, 4, 5, 9, 33, 40})
        for (int64_t K : {1, 7, 31, 32, 33, 96, 257})
          for (int64_t N : {1, 7, 50}) {
            std::vector<float> wf(static_cast<size_t>(N * K)), x(static_cast<size_t>(M * K)), bias(N);
            for (float& v : wf) v = normal(rng) + 0.3f;  // off zero: q4's minimum matters
            for (float& v : x) v = normal(rng);
            for (float& v : bias) v = normal(rng);
            std::vector<char> w(static_cast<size_t>(N * row_bytes(type, K)));
            convert_rows(wf.data(), N, K, type, w.data());
            for (bool prefill : {false, true}) {
              // avx512's q8 and q4 multiply in integers at every M (kernels/matmul.h):
              // scalar does at decode, in calls of up to kMatmulDecodeRows rows.
              const bool integer = isa == "avx512" && (type == DType::Q8 || type == DType::Q4);
              const auto want = integer ? run("scalar", type, w, x, bias, M, N, K, false, kMatmulDecodeRows)
                                        : run("scalar", type, w, x, bias, M, N, K, prefill);
              const auto got = run(isa, type, w, x, bias, M, N, K, prefill);
              const double e = rel_err(got, want);
              worst = std::max(worst, e);
              ++cases;
              if (!(e <= 1e-5)) {
                std::printf("FAIL %s %s M=%lld N=%lld K=%lld%s: relative error %.3g\n", isa.c_str(),
                            dtype_name(type), static_cast<long long>(M), static_cast<long long>(N),
                            static_cast<long long>(K), prefill ? " prefill" : "", e);
                ++failures;
              }
            }
          }
    std::printf("%s matmul vs scalar: %d cases, worst relative error %.3g\n", isa.c_str(), cases, worst);
    check_scan(rng, isa, failures);
    check_ssd(rng, isa, failures);
    check_conv1d(rng, isa, failures);
    check_rmsnorm(rng, isa, failures);
    check_elementwise(rng, isa, failures);
    check_attention(rng, isa, failures);
  }
  return failures ? 1 : 0;
}
