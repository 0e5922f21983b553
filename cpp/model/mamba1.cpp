// The Mamba-1 mixer (reference doc 2.1 for prefill, 2.2 for step). One
// function serves both: only the conv and scan kernels differ, because a
// prefill walks time inside one sequence while a step advances a batch.
#include <algorithm>

#include "model/model.h"
#include "model/weight_table.h"

namespace mambart {

Mamba1Layer Model::load_mamba1(WeightTable& w, const std::string& p) {
  const ModelConfig& c = config_;
  const int64_t D = c.d_model, E = c.d_inner, N = c.d_state, K = c.d_conv, R = c.dt_rank;
  Mamba1Layer L;
  L.in_proj = w.matrix(p + "in_proj", {2 * E, D});
  L.in_proj_bias = w.get(p + "in_proj_bias", {2 * E}, false);
  L.conv1d_weight = w.get(p + "conv1d_weight", {E, K});
  L.conv1d_bias = w.get(p + "conv1d_bias", {E}, false);
  if (c.dt_bc_norm) {
    const std::vector<Tensor> parts = w.matrix_rows(p + "x_proj", {R + 2 * N, E}, {R, R + N});
    L.x_proj_dt = parts[0], L.x_proj_b = parts[1], L.x_proj_c = parts[2];
    L.dt_norm = w.get(p + "dt_norm", {R}, false);
    L.b_norm = w.get(p + "b_norm", {N}, L.dt_norm.defined());
    L.c_norm = w.get(p + "c_norm", {N}, L.dt_norm.defined());
  } else {
    L.x_proj = w.matrix(p + "x_proj", {R + 2 * N, E});
  }
  L.dt_proj = w.matrix(p + "dt_proj", {E, R});
  L.dt_proj_bias = w.get(p + "dt_proj_bias", {E});
  L.A = w.negative_exp(p + "A_log", {E, N});
  L.D = w.get(p + "D", {E});
  L.out_proj = w.matrix(p + "out_proj", {D, E});
  L.out_proj_bias = w.get(p + "out_proj_bias", {D}, false);
  if (c.dt_bc_norm && !L.dt_norm.defined() && !ones_.defined()) {
    Tensor ones = Tensor::zeros({std::max(R, N)});
    for (int64_t i = 0; i < ones.numel(); ++i) ones.data<float>()[i] = 1.0f;
    ones_ = backend_->upload(ones);
  }
  return L;
}

void Model::mamba1_block(const Mamba1Layer& L, int64_t n, bool prefill, const LayerState& state,
                         Workspace& ws) const {
  Backend& be = *backend_;
  const int64_t D = config_.d_model, E = config_.d_inner, N = config_.d_state, R = config_.dt_rank;
  const int64_t K = config_.d_conv, xdbl_cols = R + 2 * N;
  float* xz = ws.xz.data<float>();
  float* xc = ws.xc.data<float>();
  float* x_dbl = ws.x_dbl.data<float>();
  float* dt = ws.dt.data<float>();
  float* y = ws.y.data<float>();
  const int64_t batch = prefill ? 1 : n, seqlen = prefill ? n : 1;

  // [x; z] = in_proj(u)                                 (n, 2E)
  be.matmul(linear(ws.normed.data<float>(), n, D, L.in_proj, L.in_proj_bias, xz, 2 * E));

  // x' = silu(conv1d(x) + bias), carrying conv_state     (n, E)
  Conv1dParams conv{xz, L.conv1d_weight.data<float>(), L.conv1d_bias.data<float>(), state.conv, xc,
                    batch, seqlen, E, K, 2 * E, E};
  prefill ? be.conv1d_prefill(conv) : be.conv1d_step(conv);

  // [dt | B | C] = x_proj(x')                            (n, R + 2N)
  // With dt_bc_norm, dt (n, R), B (n, N) and C (n, N) apart instead, each
  // normalised in place by its RMSNorm (weightless: a weight of ones).
  const float* dt_in = x_dbl;
  const float* B = x_dbl + R;
  const float* C = x_dbl + R + N;
  int64_t dt_ld = xdbl_cols, bc_ld = xdbl_cols;
  if (config_.dt_bc_norm) {
    float* b_out = x_dbl + n * R;
    float* c_out = b_out + n * N;
    be.matmul(linear(xc, n, E, L.x_proj_dt, Tensor(), x_dbl, R));
    be.matmul(linear(xc, n, E, L.x_proj_b, Tensor(), b_out, N));
    be.matmul(linear(xc, n, E, L.x_proj_c, Tensor(), c_out, N));
    const float* ones = ones_.data<float>();
    auto weight = [&](const Tensor& t) { return t.defined() ? t.data<float>() : ones; };
    be.rmsnorm({nullptr, x_dbl, weight(L.dt_norm), x_dbl, n, R, config_.dt_bc_eps});
    be.rmsnorm({nullptr, b_out, weight(L.b_norm), b_out, n, N, config_.dt_bc_eps});
    be.rmsnorm({nullptr, c_out, weight(L.c_norm), c_out, n, N, config_.dt_bc_eps});
    B = b_out;
    C = c_out;
    dt_ld = R;
    bc_ld = N;
  } else {
    be.matmul(linear(xc, n, E, L.x_proj, Tensor(), x_dbl, xdbl_cols));
  }

  // dt = dt_proj(dt); its bias is added inside the scan  (n, E)
  be.matmul(linear(dt_in, n, dt_ld, L.dt_proj, Tensor(), dt, E));

  // h = exp(softplus(dt + dt_bias) A) h + delta B x'; y = (C·h + D x') silu(z)
  ScanParams scan{xc, dt, L.dt_proj_bias.data<float>(), L.A.data<float>(), B, C,
                  L.D.data<float>(), xz + E, state.ssm, y, batch, seqlen, E, N,
                  E, E, bc_ld, bc_ld, 2 * E, E};
  prefill ? be.scan_prefill(scan) : be.scan_step(scan);

  // out = out_proj(y)                                    (n, D)
  be.matmul(linear(y, n, E, L.out_proj, L.out_proj_bias, ws.mixed.data<float>(), D));
}

}  // namespace mambart
