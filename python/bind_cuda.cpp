// _core.cuda_emulate: the CUDA kernels' per-thread bodies (cuda/*.cuh) run on
// the CPU over an emulated grid, in every build, so that their indexing and
// arithmetic are tested against the CPU backend without a GPU. Blocks and
// threads are plain loops; a body written in phases (cuda/compat.cuh) runs
// phase by phase over all threads of a block, with the block's shared
// memory a host buffer. Also _core.cuda_built() / cuda_device_count().
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <vector>

#include "backend.h"
#include "bindings.h"
#include "check.h"
#include "sampler.h"

#include "../cuda/attention.cuh"
#include "../cuda/conv1d.cuh"
#include "../cuda/elementwise.cuh"
#include "../cuda/matvec.cuh"
#include "../cuda/rmsnorm.cuh"
#include "../cuda/sample.cuh"
#include "../cuda/scan.cuh"
#include "../cuda/ssd.cuh"

using namespace mambart;
using namespace mambart::cuda;

namespace {

using In = py::array_t<float, py::array::c_style | py::array::forcecast>;
using Out = py::array_t<float, py::array::c_style>;

const float* in_ptr(const In& a) { return a.data(); }
const float* opt_ptr(const std::optional<In>& a) { return a ? a->data() : nullptr; }
float* io_ptr(Out& a, const char* op, const char* name) {
  MAMBART_CHECK(a.writeable(), "[", op, "] ", name, " must be writeable");
  return a.mutable_data();
}

// x (L, C) of one sequence; state (C, K) updated in place.
Out conv1d_prefill(const In& x, const In& w, const std::optional<In>& bias, Out& state) {
  const int64_t L = x.shape(0), C = x.shape(1), K = w.shape(1);
  MAMBART_CHECK(state.size() == C * K, "[conv1d_prefill] state must hold C*K floats");
  Out y({L, C});
  Conv1dParams p{in_ptr(x), in_ptr(w), opt_ptr(bias), io_ptr(state, "conv1d_prefill", "state"), y.mutable_data(),
                 1, L, C, K, C, C};
  for (int64_t t = 0; t < L; ++t)  // kernel 1: every (t, c) before any state write
    for (int64_t c = 0; c < C; ++c) conv1d_prefill_out(p, t, c);
  for (int64_t c = 0; c < C; ++c) conv1d_prefill_state(p, c);  // kernel 2
  return y;
}

// x (batch, C); state (batch, C, K).
Out conv1d_step(const In& x, const In& w, const std::optional<In>& bias, Out& state) {
  const int64_t B = x.shape(0), C = x.shape(1), K = w.shape(1);
  MAMBART_CHECK(state.size() == B * C * K, "[conv1d_step] state must hold batch*C*K floats");
  Out y({B, C});
  Conv1dParams p{in_ptr(x), in_ptr(w), opt_ptr(bias), io_ptr(state, "conv1d_step", "state"), y.mutable_data(),
                 B, 1, C, K, C, C};
  for (int64_t b = 0; b < B; ++b)
    for (int64_t c = 0; c < C; ++c) conv1d_step_one(p, b, c);
  return y;
}

// Rows (batch * seqlen, .): x, dt, z (E), B, C (N); state (batch, E, N).
Out scan(const In& x, const In& dt, const In& dt_bias, const In& A, const In& B, const In& C, const In& D,
         const std::optional<In>& z, Out& state, int64_t batch) {
  const int64_t rows = x.shape(0), E = x.shape(1), N = A.shape(1);
  MAMBART_CHECK(rows % batch == 0 && state.size() == batch * E * N, "[scan] bad batch or state size");
  Out y({rows, E});
  ScanParams p{in_ptr(x), in_ptr(dt), in_ptr(dt_bias), in_ptr(A), in_ptr(B), in_ptr(C), in_ptr(D), opt_ptr(z),
               io_ptr(state, "scan", "state"), y.mutable_data(), batch, rows / batch, E, N, E, E, N, N, E, E};
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t e = 0; e < E; ++e) scan_channel(p, b, e);
  return y;
}

SsdParams ssd_params(const In& x, const In& dt, const In& dt_bias, const In& A, const In& B, const In& C,
                     const In& D, Out& state, Out& y, int64_t batch, int64_t G, int64_t chunk, float dt_min,
                     float dt_max) {
  const int64_t rows = x.shape(0), H = dt.shape(1), P = x.shape(1) / H, N = B.shape(1) / G;
  MAMBART_CHECK(rows % batch == 0 && state.size() == batch * H * P * N, "[ssd] bad batch or state size");
  return {in_ptr(x), in_ptr(dt), in_ptr(dt_bias), in_ptr(A), in_ptr(B), in_ptr(C), in_ptr(D),
          io_ptr(state, "ssd", "state"), y.mutable_data(), batch, rows / batch, H, P, G, N, chunk,
          D.size() == H * P && P > 1, dt_min, dt_max, H * P, H, G * N, G * N, H * P};
}

Out ssd_prefill(const In& x, const In& dt, const In& dt_bias, const In& A, const In& B, const In& C, const In& D,
                Out& state, int64_t G, int64_t chunk, float dt_min, float dt_max, int threads) {
  Out y({x.shape(0), x.shape(1)});
  const SsdParams p = ssd_params(x, dt, dt_bias, A, B, C, D, state, y, 1, G, chunk, dt_min, dt_max);
  std::vector<float> sh(static_cast<size_t>(ssd_shared_floats(chunk)));
  HostBlock blk{threads};
  for (int64_t h = 0; h < p.H; ++h) ssd_prefill_head(p, 0, h, sh.data(), blk);
  return y;
}

Out ssd_step(const In& x, const In& dt, const In& dt_bias, const In& A, const In& B, const In& C, const In& D,
             Out& state, int64_t G) {
  Out y({x.shape(0), x.shape(1)});
  const SsdParams p = ssd_params(x, dt, dt_bias, A, B, C, D, state, y, x.shape(0), G, 1, 0.0f, INFINITY);
  for (int64_t b = 0; b < p.batch; ++b)
    for (int64_t i = 0; i < p.H * p.P; ++i) ssd_step_one(p, b, i / p.P, i % p.P);
  return y;
}

Out rmsnorm(Out& residual, const In& weight, const std::optional<In>& add, float eps, int threads) {
  const int64_t rows = residual.shape(0), dim = residual.shape(1);
  Out out({rows, dim});
  RmsnormParams p{opt_ptr(add), io_ptr(residual, "rmsnorm", "residual"), in_ptr(weight), out.mutable_data(),
                  rows, dim, eps};
  std::vector<float> sh(static_cast<size_t>(threads));
  HostBlock blk{threads};
  for (int64_t r = 0; r < rows; ++r) rmsnorm_row(p, r, sh.data(), blk);
  return out;
}

Out rmsnorm_gated(const In& x, const In& z, const In& weight, int64_t group, float eps, int threads,
                 bool norm_before_gate) {
  const int64_t rows = x.shape(0), dim = x.shape(1);
  Out out({rows, dim});
  RmsnormGatedParams p{in_ptr(x), in_ptr(z), in_ptr(weight), out.mutable_data(), rows, dim, group, eps, dim, dim,
                       dim, norm_before_gate};
  std::vector<float> sh(static_cast<size_t>(threads));
  HostBlock blk{threads};
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t g0 = 0; g0 < dim; g0 += group) rmsnorm_gated_group(p, r, g0, sh.data(), blk);
  return out;
}

Out gate_silu(const In& x, const In& z) {
  Out y(std::vector<int64_t>(x.shape(), x.shape() + x.ndim()));
  ElementwiseParams p{in_ptr(x), in_ptr(z), y.mutable_data(), static_cast<int64_t>(x.size())};
  for (int64_t i = 0; i < p.n; ++i) gate_silu_one(p, i);
  return y;
}

Out gate_gelu(const In& x, const In& z) {
  Out y(std::vector<int64_t>(x.shape(), x.shape() + x.ndim()));
  ElementwiseParams p{in_ptr(x), in_ptr(z), y.mutable_data(), static_cast<int64_t>(x.size())};
  for (int64_t i = 0; i < p.n; ++i) gate_gelu_one(p, i);
  return y;
}

Out relu_sq(const In& x) {
  Out y(std::vector<int64_t>(x.shape(), x.shape() + x.ndim()));
  ElementwiseParams p{in_ptr(x), nullptr, y.mutable_data(), static_cast<int64_t>(x.size())};
  for (int64_t i = 0; i < p.n; ++i) relu_sq_one(p, i);
  return y;
}

// y (rows, ld) in place, its first `cols` columns (all when cols < 0):
// y *= col_scale, else y += alpha * x (x shaped as y), else y *= alpha.
void scale(Out& y, float alpha, const std::optional<In>& x, const std::optional<In>& col_scale, int64_t cols) {
  MAMBART_CHECK(y.ndim() == 2, "[scale] y must be 2-D");
  const int64_t rows = y.shape(0), ld = y.shape(1);
  cols = cols < 0 ? ld : cols;
  MAMBART_CHECK(cols <= ld && (!x || x->size() == y.size()) && (!col_scale || col_scale->size() == cols),
                "[scale] bad shapes");
  ScaleParams p{opt_ptr(x), io_ptr(y, "scale", "y"), opt_ptr(col_scale), alpha, rows, cols, ld};
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cols; ++j) scale_one(p, r, j);
}

// x (rows, H * d) turned in place; pos (rows); inv_freq (rot / 2).
void rope(Out& x, const std::vector<int64_t>& pos, const In& inv_freq, int64_t n_heads, float scale) {
  const int64_t rows = x.shape(0), d = x.shape(1) / n_heads, half = inv_freq.size();
  MAMBART_CHECK(static_cast<int64_t>(pos.size()) == rows && 2 * half <= d, "[rope] bad shapes");
  RopeParams p{io_ptr(x, "rope", "x"), pos.data(), in_ptr(inv_freq), scale, rows, n_heads, d, 2 * half, x.shape(1)};
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < half; ++i) rope_pair(p, r, i);
}

// q (rows, Hq * d); ks[r], vs[r] (S_r, Hkv, d), row r seeing lens[r] <= S_r keys.
Out attention(const In& q, const std::vector<In>& ks, const std::vector<In>& vs, const std::vector<int64_t>& lens,
              int64_t n_heads, int64_t n_kv_heads, float scale, int threads) {
  const int64_t rows = q.shape(0), d = q.shape(1) / n_heads;
  MAMBART_CHECK(n_heads % n_kv_heads == 0 && d * n_heads == q.shape(1), "[attention] bad head counts");
  MAMBART_CHECK(static_cast<int64_t>(ks.size()) == rows && static_cast<int64_t>(vs.size()) == rows &&
                    static_cast<int64_t>(lens.size()) == rows,
                "[attention] ks, vs and lens need one entry per row");
  std::vector<const float*> kp, vp;
  for (int64_t r = 0; r < rows; ++r) {
    MAMBART_CHECK(lens[r] >= 1 && ks[r].size() >= lens[r] * n_kv_heads * d && vs[r].size() == ks[r].size(),
                  "[attention] row ", r, ": cache shorter than its length");
    kp.push_back(ks[r].data());
    vp.push_back(vs[r].data());
  }
  Out out({rows, n_heads * d});
  AttentionParams p{in_ptr(q), out.mutable_data(), kp.data(), vp.data(), lens.data(), rows, n_heads, n_kv_heads, d,
                    scale, n_heads * d, n_heads * d};
  std::vector<float> sh(static_cast<size_t>(attention_shared_floats(d)));
  HostBlock blk{threads};
  for (int64_t item = 0; item < rows * n_heads; ++item) attention_item(p, item / n_heads, item % n_heads, sh.data(), blk);
  return out;
}

Out embedding(const Tensor& table, const std::vector<int32_t>& ids) {
  const int64_t n = static_cast<int64_t>(ids.size()), D = table.dim(1);
  for (int32_t id : ids) MAMBART_CHECK(id >= 0 && id < table.dim(0), "[embedding] id ", id, " out of range");
  Out out({n, D});
  EmbeddingParams p{table.data<void>(), table.dtype(), ids.data(), out.mutable_data(), n, D};
  for (int64_t i = 0; i < n; ++i)
    for (int64_t d = 0; d < D; ++d) embedding_one(p, i, d);
  return out;
}

Out matvec(const In& x, const Tensor& w, const std::optional<In>& bias, int threads) {
  const int64_t M = x.shape(0), K = x.shape(1), N = w.dim(0);
  MAMBART_CHECK(w.dim(1) == K, "[matvec] w has K=", w.dim(1), ", x has ", K);
  MAMBART_CHECK(threads >= 1 && threads <= kMatvecThreads, "[matvec] threads must be in [1, ", kMatvecThreads, "]");
  Out y({M, N});
  MatmulParams p{in_ptr(x), w.data<void>(), w.dtype(), opt_ptr(bias), y.mutable_data(), M, N, K, K, N};
  std::vector<float> sh(static_cast<size_t>(kMatvecRows * threads));
  HostBlock blk{threads};
  for (int64_t n = 0; n < N; ++n)
    for (int64_t m0 = 0; m0 < M; m0 += kMatvecRows) matvec_tile(p, n, m0, sh.data(), blk);
  return y;
}

// logits (batch, V); one Sampler and one history per row. Advances the
// samplers' RNGs as the device does (copied back after the call).
std::vector<int32_t> sample(const In& logits, const std::vector<Sampler*>& samplers,
                            const std::vector<std::vector<int32_t>>& histories, int threads) {
  const int64_t batch = logits.shape(0), V = logits.shape(1), words = (V + 31) / 32;
  MAMBART_CHECK(static_cast<int64_t>(samplers.size()) == batch && static_cast<int64_t>(histories.size()) == batch,
                "[sample] one sampler and one history per row");
  MAMBART_CHECK(threads >= 1 && threads <= kSampleThreads, "[sample] threads must be in [1, ", kSampleThreads, "]");
  std::vector<uint32_t> seen(static_cast<size_t>(batch * words), 0);
  std::vector<SampleRow> rows(static_cast<size_t>(batch));
  for (int64_t b = 0; b < batch; ++b) {
    for (int32_t id : histories[b])
      if (id >= 0 && id < V) seen[b * words + id / 32] |= 1u << (id % 32);
    const SamplingConfig& c = samplers[b]->config();
    const std::string rng = samplers[b]->rng_state();
    rows[b] = {c.top_p, c.min_p, c.temperature, c.repetition_penalty, c.top_k, {0, 0, 0, 0}};
    for (size_t i = 0; i < rng.size(); ++i)
      rows[b].rng[i / 8] |= uint64_t{static_cast<unsigned char>(rng[i])} << (8 * (i % 8));
  }
  std::vector<int64_t> pen_start(static_cast<size_t>(batch) + 1, 0);
  std::vector<int32_t> pen_id;
  std::vector<float> pen_amount;
  for (int64_t b = 0; b < batch; ++b) {
    samplers[b]->penalties(pen_id, pen_amount);
    pen_start[b + 1] = static_cast<int64_t>(pen_id.size());
  }
  std::vector<float> work(static_cast<size_t>(batch * V));
  std::vector<int32_t> out(static_cast<size_t>(batch));
  SampleParams p{in_ptr(logits), work.data(), seen.data(), rows.data(), out.data(), batch, V, V, words,
                 pen_id.empty() ? nullptr : pen_start.data(), pen_id.data(), pen_amount.data()};
  auto sh = std::make_unique<SampleShared>();
  HostBlock blk{threads};
  for (int64_t b = 0; b < batch; ++b) sample_row(p, b, *sh, blk);
  for (int64_t b = 0; b < batch; ++b) {
    std::string bytes(32, '\0');
    for (size_t i = 0; i < 32; ++i) bytes[i] = static_cast<char>((rows[b].rng[i / 8] >> (8 * (i % 8))) & 0xff);
    samplers[b]->set_rng_state(bytes);
    samplers[b]->note(out[b]);
  }
  return out;
}

}  // namespace

void bind_cuda(py::module_& m) {
  m.def("cuda_built", &cuda_built, "True when this build includes the CUDA backend.");
  m.def("cuda_device_count", &cuda_device_count,
        "CUDA devices usable by mambart (0 without a driver or GPU, or in a CPU-only build).");
  auto e = m.def_submodule("cuda_emulate",
                           "The CUDA kernels' per-thread bodies run on the CPU over an emulated grid (tests).");
  const auto none = py::none();
  e.def("conv1d_prefill", &conv1d_prefill, py::arg("x"), py::arg("w"), py::arg("bias") = none, py::arg("state"));
  e.def("conv1d_step", &conv1d_step, py::arg("x"), py::arg("w"), py::arg("bias") = none, py::arg("state"));
  e.def("scan", &scan, py::arg("x"), py::arg("dt"), py::arg("dt_bias"), py::arg("A"), py::arg("B"), py::arg("C"),
        py::arg("D"), py::arg("z") = none, py::arg("state"), py::arg("batch") = 1,
        "Prefill (batch 1, many rows) or step (batch rows, one token each).");
  e.def("ssd_prefill", &ssd_prefill, py::arg("x"), py::arg("dt"), py::arg("dt_bias"), py::arg("A"), py::arg("B"),
        py::arg("C"), py::arg("D"), py::arg("state"), py::arg("G"), py::arg("chunk"), py::arg("dt_min") = 0.0f,
        py::arg("dt_max") = INFINITY, py::arg("threads") = 32);
  e.def("ssd_step", &ssd_step, py::arg("x"), py::arg("dt"), py::arg("dt_bias"), py::arg("A"), py::arg("B"),
        py::arg("C"), py::arg("D"), py::arg("state"), py::arg("G"));
  e.def("rmsnorm", &rmsnorm, py::arg("residual"), py::arg("weight"), py::arg("add") = none, py::arg("eps") = 1e-5f,
        py::arg("threads") = kNormThreads);
  e.def("rmsnorm_gated", &rmsnorm_gated, py::arg("x"), py::arg("z"), py::arg("weight"), py::arg("group"),
        py::arg("eps") = 1e-5f, py::arg("threads") = kNormThreads, py::arg("norm_before_gate") = false);
  e.def("gate_silu", &gate_silu, py::arg("x"), py::arg("z"));
  e.def("gate_gelu", &gate_gelu, py::arg("x"), py::arg("z"));
  e.def("relu_sq", &relu_sq, py::arg("x"));
  e.def("scale", &scale, py::arg("y"), py::arg("alpha") = 1.0f, py::arg("x") = none, py::arg("col_scale") = none,
        py::arg("cols") = -1, "scale, axpy (x) or mul_columns (col_scale), in place on y.");
  e.def("rope", &rope, py::arg("x"), py::arg("pos"), py::arg("inv_freq"), py::arg("n_heads"), py::arg("scale") = 1.0f);
  e.def("attention", &attention, py::arg("q"), py::arg("ks"), py::arg("vs"), py::arg("lens"), py::arg("n_heads"),
        py::arg("n_kv_heads"), py::arg("scale"), py::arg("threads") = kAttentionThreads);
  e.def("embedding", &embedding, py::arg("table"), py::arg("ids"));
  e.def("matvec", &matvec, py::arg("x"), py::arg("w"), py::arg("bias") = none, py::arg("threads") = kMatvecThreads);
  e.def("sample", &sample, py::arg("logits"), py::arg("samplers"), py::arg("histories"),
        py::arg("threads") = kSampleThreads);
}
