// Every ISA's matmul against the scalar kernels, for every weight type, on
// random data of awkward sizes: a check for builds without Python (an
// arm64 cross build run under qemu, tools/check_arm64.sh). The scalar
// kernels are themselves checked against float64 numpy by the pytest suite.
// Prints one line per ISA and exits 1 on any mismatch.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "cpu/isa.h"
#include "kernels/quantize.h"

using namespace mambart;

namespace {

constexpr DType kTypes[] = {DType::F32, DType::F16, DType::BF16, DType::Q8, DType::Q4};

std::vector<float> run(const std::string& isa, DType type, const std::vector<char>& w, const std::vector<float>& x,
                       const std::vector<float>& bias, int64_t M, int64_t N, int64_t K) {
  set_isa(isa);
  std::vector<float> y(static_cast<size_t>(M * N), NAN);
  const MatmulParams p{x.data(), w.data(), type, bias.data(), y.data(), M, N, K, K, N};
  // Two ranges of N, as the thread pool would split them.
  cpu_kernels().matmul[static_cast<int>(type)](p, 0, N / 2);
  cpu_kernels().matmul[static_cast<int>(type)](p, N / 2, N);
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
            const auto want = run("scalar", type, w, x, bias, M, N, K);
            const auto got = run(isa, type, w, x, bias, M, N, K);
            const double e = rel_err(got, want);
            worst = std::max(worst, e);
            ++cases;
            if (!(e <= 1e-5)) {
              std::printf("FAIL %s %s M=%lld N=%lld K=%lld: relative error %.3g\n", isa.c_str(), dtype_name(type),
                          static_cast<long long>(M), static_cast<long long>(N), static_cast<long long>(K), e);
              ++failures;
            }
          }
    std::printf("%s matmul vs scalar: %d cases, worst relative error %.3g\n", isa.c_str(), cases, worst);
  }
  return failures ? 1 : 0;
}
