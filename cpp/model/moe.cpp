// The mixture-of-experts block (Granite-4.0-H, Nemotron-H): a router picks
// top_k experts per row (kernels/moe.h), only those experts run, each over
// the rows that chose it, and the shared MLP runs over every row:
//
//   out[r] = shared(x[r]) + sum_i weight[r, i] * expert_{index[r, i]}(x[r])
//
// or, with latent experts (Nemotron-H's moe_latent_size L), the experts over
// x[r] projected to L and their sum projected back:
//
//   out[r] = shared(x[r]) + latent_out(sum_i weight[r, i] * expert_{index[r, i]}(latent_in(x[r])))
//
// Rows are grouped by expert, so that a prefill runs each chosen expert once
// as a matmul over its rows rather than once per row.
#include <numeric>
#include <string>

#include "check.h"
#include "model/model.h"
#include "model/weight_table.h"

namespace mambart {

// Experts come stacked, "experts_in" (X * I, D) and "experts_out" (X * D, F)
// with I = 2F (gated) or F, as Granite stores them, or one MLP per expert,
// "experts.<e>.mlp_in" / "_out", as Nemotron-H does.
MoeLayer Model::load_moe(WeightTable& w, const std::string& p) {
  const ModelConfig& c = config_;
  const int64_t D = c.d_model, X = c.n_experts, F = c.expert_inner, I = c.mlp_gated ? 2 * F : F;
  const int64_t W = c.expert_latent > 0 ? c.expert_latent : D;  // the experts' rows in and out
  MoeLayer L;
  L.router = w.get(p + "router", {X, D});
  L.router_bias = w.get(p + "router_bias", {X}, false);
  if (c.expert_latent > 0) {  // read by every token: not among the experts' bytes
    L.latent_in = w.matrix(p + "latent_in", {W, D});
    L.latent_out = w.matrix(p + "latent_out", {D, W});
  }
  const size_t before = w.bytes();
  if (!w.shape_of(p + "experts_in").empty()) {
    // Each expert's rows (its gate, then its up projection) as matrices of their own.
    std::vector<int64_t> in_cuts, out_cuts;
    for (int64_t e = 0; e < X; ++e) {
      if (e > 0) in_cuts.push_back(e * I), out_cuts.push_back(e * W);
      if (c.mlp_gated) in_cuts.push_back(e * I + F);
    }
    const std::vector<Tensor> in = w.matrix_rows(p + "experts_in", {X * I, W}, in_cuts);
    const std::vector<Tensor> out = w.matrix_rows(p + "experts_out", {X * W, F}, out_cuts);
    const size_t per = c.mlp_gated ? 2 : 1;
    for (int64_t e = 0; e < X; ++e) {
      MlpLayer m;
      m.inner = F;
      m.gate = c.mlp_gated ? in[e * per] : Tensor();
      m.up = in[e * per + per - 1];
      m.out = out[e];
      L.experts.push_back(m);
    }
  } else {
    for (int64_t e = 0; e < X; ++e)
      L.experts.push_back(load_mlp(w, p + "experts." + std::to_string(e) + ".mlp", F, W));
  }
  expert_bytes_ += w.bytes() - before;
  if (c.shared_inner > 0) L.shared = load_mlp(w, p + "shared.mlp", c.shared_inner);
  return L;
}

void Model::moe_block(const MoeLayer& L, int64_t n, Workspace& ws) const {
  Backend& be = *backend_;
  const ModelConfig& c = config_;
  const int64_t D = c.d_model, X = c.n_experts, k = c.top_k;
  const int64_t W = c.expert_latent > 0 ? c.expert_latent : D;
  const float* x = ws.normed.data<float>();
  float* out = ws.mixed.data<float>();

  // logits = router(x) in f32; the top_k experts and their weights per row.
  // The routing lands in host memory (the CPU backend's own), as the grouping reads it.
  float* logits = ws.router_logits.data<float>();
  be.matmul(linear(x, n, D, L.router, Tensor(), logits, X));
  std::vector<int32_t> index(static_cast<size_t>(n * k));
  std::vector<float> weight(static_cast<size_t>(n * k));
  be.route({logits, L.router_bias.data<float>(), index.data(), weight.data(), n, X, k, c.n_group, c.topk_group, X,
            c.router_sigmoid, c.norm_topk, c.routed_scale});

  // out = shared(x), or 0 (out holds the previous block's finite output)
  if (L.shared.inner > 0)
    mlp(L.shared, x, n, out, ws);
  else
    be.scale(out, 0.0f, n * D);

  // The experts' input and sum: x and out, or x projected to the latent width and a zeroed sum.
  const float* ex = x;
  float* sum = out;
  if (c.expert_latent > 0) {
    be.matmul(linear(x, n, D, L.latent_in, Tensor(), ws.latent_x.data<float>(), W));
    ex = ws.latent_x.data<float>();
    sum = ws.latent_y.data<float>();
    be.scale(sum, 0.0f, n * W);
  }

  // Each chosen expert over its rows, in expert order (as the reference adds them).
  std::vector<std::vector<std::pair<int64_t, float>>> chosen(static_cast<size_t>(X));
  for (int64_t r = 0; r < n; ++r)
    for (int64_t i = 0; i < k; ++i) chosen[index[r * k + i]].push_back({r, weight[r * k + i]});
  float* xs = ws.expert_x.data<float>();
  float* ys = ws.expert_y.data<float>();
  for (int64_t e = 0; e < X; ++e) {
    const auto& rows = chosen[static_cast<size_t>(e)];
    if (rows.empty()) continue;
    const int64_t m = static_cast<int64_t>(rows.size());
    for (int64_t j = 0; j < m; ++j) be.copy(ex + rows[j].first * W, xs + j * W, W);
    mlp(L.experts[static_cast<size_t>(e)], xs, m, ys, ws);
    // sum[r] += weight * expert(x[r])
    for (int64_t j = 0; j < m; ++j) be.axpy(rows[j].second, ys + j * W, sum + rows[j].first * W, W);
  }

  // out += latent_out(sum)
  if (c.expert_latent > 0) {
    be.matmul(linear(sum, n, W, L.latent_out, Tensor(), ys, D));
    be.axpy(1.0f, ys, out, n * D);
  }
}

}  // namespace mambart
