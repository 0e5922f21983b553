// The Mamba-2 mixer (reference doc 3.1 for prefill, 3.2 for step). As for
// Mamba-1, one function serves both; only the conv and SSD kernels differ.
#include "model/model.h"
#include "model/weight_table.h"

namespace mambart {

Mamba2Layer Model::load_mamba2(WeightTable& w, const std::string& p) {
  const ModelConfig& c = config_;
  const int64_t D = c.d_model, E = c.d_inner, H = c.n_heads, K = c.d_conv;
  const int64_t W = c.in_proj_rows(), CC = c.conv_channels();
  Mamba2Layer L;
  L.in_proj = w.matrix(p + "in_proj", {W, D});
  L.in_proj_bias = w.get(p + "in_proj_bias", {W}, false);
  L.conv1d_weight = w.get(p + "conv1d_weight", {CC, K});
  L.conv1d_bias = w.get(p + "conv1d_bias", {CC}, false);
  L.dt_bias = w.get(p + "dt_bias", {H});
  L.A = w.negative_exp(p + "A_log", {H});
  // D is one value per head, or (D_has_hdim) one per channel.
  L.D = w.get(p + "D", {w.shape_of(p + "D") == std::vector<int64_t>{E} ? E : H});
  L.gated_norm = w.get(p + "gated_norm", {E}, false);
  L.out_proj = w.matrix(p + "out_proj", {D, E});
  L.out_proj_bias = w.get(p + "out_proj_bias", {D}, false);
  if (!c.in_proj_multipliers.empty() && !in_proj_scale_.defined()) {
    // One multiplier per part of in_proj's output: [z (E) | x (E) | B (GN) | C (GN) | dt (H)].
    const int64_t GN = c.n_groups * c.d_state;
    const int64_t ends[5] = {E, 2 * E, 2 * E + GN, 2 * E + 2 * GN, W};
    Tensor scale = Tensor::zeros({W});
    for (int64_t j = 0, part = 0; j < W; ++j) {
      while (j >= ends[part]) ++part;
      scale.data<float>()[j] = c.in_proj_multipliers[static_cast<size_t>(part)];
    }
    in_proj_scale_ = backend_->upload(scale);
  }
  return L;
}

void Model::mamba2_block(const Mamba2Layer& L, int64_t n, bool prefill, const LayerState& state,
                         Workspace& ws) const {
  Backend& be = *backend_;
  const ModelConfig& c = config_;
  const int64_t D = c.d_model, E = c.d_inner, N = c.d_state, H = c.n_heads, G = c.n_groups, K = c.d_conv;
  const int64_t W = c.in_proj_rows(), CC = c.conv_channels();
  float* zxbcdt = ws.xz.data<float>();
  float* xbc = ws.xc.data<float>();
  float* y = ws.y.data<float>();
  const int64_t batch = prefill ? 1 : n, seqlen = prefill ? n : 1;

  // [z | xBC | dt] = in_proj(u), Falcon-H1's multipliers per part   (n, 2E + 2GN + H)
  be.matmul(linear(ws.normed.data<float>(), n, D, L.in_proj, L.in_proj_bias, zxbcdt, W));
  if (in_proj_scale_.defined()) be.mul_columns(zxbcdt, in_proj_scale_.data<float>(), n, W, W);

  // [x | B | C] = silu(conv1d(xBC) + bias), carrying conv_state   (n, E + 2GN)
  Conv1dParams conv{zxbcdt + E, L.conv1d_weight.data<float>(), L.conv1d_bias.data<float>(), state.conv, xbc,
                    batch, seqlen, CC, K, W, CC};
  prefill ? be.conv1d_prefill(conv) : be.conv1d_step(conv);

  // S = exp(delta A) S + delta x ⊗ B;  y = C·S + D x     (n, E)
  SsdParams ssd{xbc, zxbcdt + 2 * E + 2 * G * N, L.dt_bias.data<float>(), L.A.data<float>(), xbc + E,
                xbc + E + G * N, L.D.data<float>(), state.ssm, y, batch, seqlen, H, c.head_dim, G, N,
                c.chunk_size, L.D.numel() == E && E != H, c.dt_min, c.dt_max, CC, W, CC, CC, E};
  prefill ? be.ssd_prefill(ssd) : be.ssd_step(ssd);

  // y = rmsnorm_groups(y * silu(z)) * weight             (n, E)
  float* gated = ws.y_norm.data<float>();
  if (L.gated_norm.defined())
    be.rmsnorm_gated({y, zxbcdt, L.gated_norm.data<float>(), gated, n, E, E / G,
                      c.gated_norm_eps > 0 ? c.gated_norm_eps : c.eps, E, W, E, c.norm_before_gate});
  else
    for (int64_t r = 0; r < n; ++r) be.gate_silu({y + r * E, zxbcdt + r * W, gated + r * E, E});

  // out = out_proj(y)                                    (n, D)
  be.matmul(linear(gated, n, E, L.out_proj, L.out_proj_bias, ws.mixed.data<float>(), D));
}

}  // namespace mambart
