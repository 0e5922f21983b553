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
  if (!c.hybrid()) return;
  MAMBART_CHECK(static_cast<int64_t>(c.layers.size()) == c.n_layer &&
                    c.layers.find_first_not_of("MAP") == std::string::npos,
                "[model] layers must give 'M', 'A' or 'P' for each of the ", c.n_layer, " layers, got '", c.layers,
                "'");
  MAMBART_CHECK(c.in_proj_multipliers.empty() || c.in_proj_multipliers.size() == 5,
                "[model] in_proj_multipliers must give 5 values (z, x, B, C, dt) or none, got ",
                c.in_proj_multipliers.size());
  MAMBART_CHECK(c.attn_heads > 0 && c.kv_heads > 0 && c.attn_heads % c.kv_heads == 0 && c.attn_head_dim > 0,
                "[model] kv_heads ", c.kv_heads, " must divide attn_heads ", c.attn_heads, ", head dim ",
                c.attn_head_dim);
  MAMBART_CHECK(c.rope_dim >= 0 && c.rope_dim % 2 == 0 && c.rope_dim <= c.attn_head_dim, "[model] rope_dim ",
                c.rope_dim, " must be even and at most the head dim ", c.attn_head_dim);
  MAMBART_CHECK(c.mlp_inner > 0, "[model] mlp_inner must be positive, got ", c.mlp_inner);
}

Model::Model(const ModelConfig& c, const std::map<std::string, Tensor>& weights, std::unique_ptr<Backend> backend)
    : config_(c), backend_(std::move(backend)) {
  check_config(c);
  const int64_t D = c.d_model, V = c.vocab_size;
  WeightTable w(weights, *backend_);
  embedding_ = w.matrix("embedding", {V, D});
  norm_f_ = w.get("norm_f", {D});
  lm_head_ = c.tie_embeddings ? embedding_ : w.matrix("lm_head", {V, D});
  MAMBART_CHECK(!c.hybrid() || backend_->has_attention(), "[model] attention-hybrid models are not supported on the ",
                backend_->name(), " backend yet; load them on the CPU");
  if (c.family == Family::Mamba1)
    load_mamba1_layers(w);
  else if (c.hybrid())
    load_hybrid_layers(w);
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
  if (c.hybrid()) {
    ws.q = backend_->zeros({rows, c.attn_heads * c.attn_head_dim});
    ws.k = backend_->zeros({rows, c.kv_width()});
    ws.v = backend_->zeros({rows, c.kv_width()});
    ws.attn = backend_->zeros({rows, c.attn_heads * c.attn_head_dim});
    ws.gate = backend_->zeros({rows, c.mlp_inner});
    ws.up = backend_->zeros({rows, c.mlp_inner});
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
  if (config_.hybrid()) {
    hybrid_layers(n, prefill, states, ws);
    return;
  }

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

// A hybrid's layers after the embedding: r += m * mixer(norm(r)); r += m * mlp(norm(r)),
// with m the residual multiplier, then norm_f.
void Model::hybrid_layers(int64_t n, bool prefill, const std::vector<LayerState>& states, Workspace& ws) const {
  const ModelConfig& c = config_;
  Backend& be = *backend_;
  const int64_t D = c.d_model;
  float* residual = ws.residual.data<float>();
  float* mixed = ws.mixed.data<float>();
  if (c.embedding_multiplier != 1.0f) be.scale(residual, c.embedding_multiplier, n * D);
  auto scaled = [&] {
    if (c.residual_multiplier != 1.0f) be.scale(mixed, c.residual_multiplier, n * D);
    return mixed;
  };
  for (int64_t l = 0; l < c.n_layer; ++l) {
    const size_t i = static_cast<size_t>(l);
    be.rmsnorm({l == 0 ? nullptr : mixed, residual, layers2_[i].norm.data<float>(), ws.normed.data<float>(), n, D,
                c.eps});
    if (c.kind(l) == 'P')
      parallel_mixers(l, n, prefill, states[i], ws);
    else if (c.is_attention(l))
      attention_block(attn_[i], n, prefill, *states[i].kv, ws);
    else
      mamba2_block(layers2_[i], n, prefill, states[i], ws);
    be.rmsnorm({scaled(), residual, mlp_[i].norm.data<float>(), ws.normed.data<float>(), n, D, c.eps});
    mlp_block(mlp_[i], n, ws);
    scaled();
  }
  be.rmsnorm({mixed, residual, norm_f_.data<float>(), ws.normed.data<float>(), n, D, c.eps});
}

void Model::head(const Workspace& ws, int64_t first, int64_t rows, float* logits) const {
  const int64_t D = config_.d_model, V = config_.vocab_size;
  backend_->matmul(linear(ws.normed.data<float>() + first * D, rows, D, lm_head_, Tensor(), logits, V));
  if (config_.logits_scaling != 1.0f) backend_->scale(logits, 1.0f / config_.logits_scaling, rows * V);
}

}  // namespace mambart
