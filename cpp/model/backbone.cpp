// The backbone (reference doc 4.1): embedding, n_layer pre-norm residual
// blocks, norm_f and the head, written once for both mixer families.
#include <cmath>

#include "check.h"
#include "model/model.h"
#include "model/weight_table.h"

namespace mambart {

static void check_config(const ModelConfig& c) {
  MAMBART_CHECK(c.d_model > 0 && c.n_layer > 0 && c.vocab_size > 0 && c.d_inner > 0 && c.d_state > 0 &&
                    c.d_conv > 0,
                "[model] every size must be positive: d_model=", c.d_model, " n_layer=", c.n_layer,
                " vocab_size=", c.vocab_size, " d_inner=", c.d_inner, " d_state=", c.d_state, " d_conv=", c.d_conv);
  MAMBART_CHECK(std::isfinite(c.eps) && c.eps > 0, "[model] eps must be positive, got ", c.eps);
  // The sizes derived from these (conv_channels, in_proj_rows,
  // ssm_state_size, x_proj's rows) must not overflow: size_* throw if so.
  size_mul(c.d_inner, c.d_state, "model");
  if (c.family == Family::Mamba1) {
    MAMBART_CHECK(c.dt_rank > 0, "[model] dt_rank must be positive, got ", c.dt_rank);
    size_mul(2, c.d_inner, "model");
    size_add(c.dt_rank, size_mul(2, c.d_state, "model"), "model");
    return;
  }
  MAMBART_CHECK(c.n_heads > 0 && c.head_dim > 0 && size_mul(c.n_heads, c.head_dim, "model") == c.d_inner,
                "[model] n_heads ", c.n_heads, " x head_dim ", c.head_dim, " must equal d_inner ", c.d_inner);
  MAMBART_CHECK(c.n_groups > 0, "[model] n_groups must be positive, got ", c.n_groups);
  const int64_t bc = size_mul(2, size_mul(c.n_groups, c.d_state, "model"), "model");
  size_add(size_add(size_mul(2, c.d_inner, "model"), bc, "model"), c.n_heads, "model");
  MAMBART_CHECK(c.n_groups > 0 && c.n_heads % c.n_groups == 0, "[model] n_groups ", c.n_groups,
                " must divide n_heads ", c.n_heads);
  MAMBART_CHECK(c.chunk_size > 0, "[model] chunk_size must be positive, got ", c.chunk_size);
  MAMBART_CHECK(!(c.dt_min > c.dt_max), "[model] dt limit (", c.dt_min, ", ", c.dt_max, ") is empty");
}

Model::Model(const ModelConfig& c, const std::map<std::string, Tensor>& weights, std::unique_ptr<Backend> backend)
    : config_(c), backend_(std::move(backend)) {
  check_config(c);
  const int64_t D = c.d_model, V = c.vocab_size;
  WeightTable w(weights, *backend_);
  embedding_ = w.matrix("embedding", {V, D});
  norm_f_ = w.get("norm_f", {D});
  lm_head_ = c.tie_embeddings ? embedding_ : w.matrix("lm_head", {V, D});
  if (c.family == Family::Mamba1)
    load_mamba1_layers(w);
  else
    load_mamba2_layers(w);
  w.check_all_used();
  weight_bytes_ = w.bytes();
}

Workspace Model::make_workspace(int64_t rows) const {
  const ModelConfig& c = config_;
  const int64_t D = c.d_model, E = c.d_inner;
  Workspace ws;
  ws.rows = rows;
  ws.residual = backend_->zeros({rows, D});
  ws.normed = backend_->zeros({rows, D});
  ws.mixed = backend_->zeros({rows, D});
  ws.xz = backend_->zeros({rows, c.in_proj_rows()});
  ws.xc = backend_->zeros({rows, c.conv_channels()});
  ws.y = backend_->zeros({rows, E});
  if (c.family == Family::Mamba1) {
    ws.x_dbl = backend_->zeros({rows, c.dt_rank + 2 * c.d_state});
    ws.dt = backend_->zeros({rows, E});
  } else {
    ws.y_norm = backend_->zeros({rows, E});
  }
  return ws;
}

void Model::forward(const int32_t* tokens, int64_t n, bool prefill, const std::vector<LayerState>& states,
                    Workspace& ws) const {
  MAMBART_CHECK(n > 0 && n <= ws.rows, "[forward] ", n, " rows for a workspace of ", ws.rows);
  MAMBART_CHECK(static_cast<int64_t>(states.size()) == config_.n_layer, "[forward] states for ", states.size(),
                " layers, model has ", config_.n_layer);
  for (int64_t i = 0; i < n; ++i)
    MAMBART_CHECK(tokens[i] >= 0 && tokens[i] < config_.vocab_size, "[forward] token id ", tokens[i],
                  " is out of range [0, ", config_.vocab_size, ")");
  const int64_t D = config_.d_model;
  float* residual = ws.residual.data<float>();

  // r = embedding[tokens]
  backend_->embedding(embedding_, tokens, n, residual);

  // r += mixer(norm(r)), with the add fused into the next norm: block l
  // adds block l-1's mixer output before normalising.
  for (int64_t l = 0; l < config_.n_layer; ++l) {
    const size_t i = static_cast<size_t>(l);
    const float* norm = config_.family == Family::Mamba1 ? layers_[i].norm.data<float>() : layers2_[i].norm.data<float>();
    backend_->rmsnorm({l == 0 ? nullptr : ws.mixed.data<float>(), residual, norm, ws.normed.data<float>(), n, D,
                       config_.eps});
    if (config_.family == Family::Mamba1)
      mamba1_block(layers_[i], n, prefill, states[i], ws);
    else
      mamba2_block(layers2_[i], n, prefill, states[i], ws);
  }
  // normed = norm_f(r + last mixer output)
  backend_->rmsnorm({ws.mixed.data<float>(), residual, norm_f_.data<float>(), ws.normed.data<float>(), n, D,
                     config_.eps});
}

void Model::head(const Workspace& ws, int64_t first, int64_t rows, float* logits) const {
  const int64_t D = config_.d_model, V = config_.vocab_size;
  backend_->matmul(linear(ws.normed.data<float>() + first * D, rows, D, lm_head_, Tensor(), logits, V));
}

}  // namespace mambart
