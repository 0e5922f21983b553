// The backbone (reference doc 4.1): embedding, the layers' pre-norm residual
// blocks, norm_f and the head, written once for every family: a layer is a
// list of blocks (ModelConfig::layers), each r += m * block(norm(r)).
#include <algorithm>
#include <cmath>
#include <sstream>

#include "check.h"
#include "model/model.h"
#include "model/weight_table.h"

namespace mambart {

std::string ModelConfig::blocks(int64_t layer) const {
  if (!hybrid()) return layer >= 0 && layer < n_layer ? "M" : "";
  std::istringstream words(layers);
  std::string word;
  for (int64_t i = 0; words >> word; ++i)
    if (i == layer) return word;
  return "";
}

static void check_mamba(const ModelConfig& c) {
  MAMBART_CHECK(c.d_inner > 0 && c.d_state > 0 && c.d_conv > 0, "[model] every Mamba size must be positive: d_inner=",
                c.d_inner, " d_state=", c.d_state, " d_conv=", c.d_conv);
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
  MAMBART_CHECK(c.n_heads % c.n_groups == 0, "[model] n_groups ", c.n_groups, " must divide n_heads ", c.n_heads);
  MAMBART_CHECK(c.chunk_size > 0, "[model] chunk_size must be positive, got ", c.chunk_size);
  MAMBART_CHECK(!(c.dt_min > c.dt_max), "[model] dt limit (", c.dt_min, ", ", c.dt_max, ") is empty");
}

static void check_layers(const ModelConfig& c) {
  std::istringstream words(c.layers);
  std::string word, rebuilt;
  int64_t count = 0, shared_uses = 0;
  while (words >> word) {
    // At most one block with state (its LayerState) per layer.
    MAMBART_CHECK((word.size() <= 2 && word.find_first_not_of("MAPFE") == std::string::npos &&
                   word.find_first_of("MAP") == word.find_last_of("MAP")) || word == "SM",
                  "[model] layer ", count, " has blocks '", word, "'; expected one or two of 'M' (Mamba), ",
                  "'A' (attention), 'P' (both side by side), 'F' (MLP), 'E' (experts), at most one of them with ",
                  "state; or 'SM' (Zamba2)");
    shared_uses += word == "SM";
    rebuilt += (count++ ? " " : "") + word;
  }
  MAMBART_CHECK(count == c.n_layer && rebuilt == c.layers, "[model] layers must give one word of blocks for each of the ",
                c.n_layer, " layers, separated by single spaces, got '", c.layers, "'");
  MAMBART_CHECK(c.in_proj_multipliers.empty() || c.in_proj_multipliers.size() == 5,
                "[model] in_proj_multipliers must give 5 values (z, x, B, C, dt) or none, got ",
                c.in_proj_multipliers.size());
  MAMBART_CHECK((c.shared_blocks == 0) == (shared_uses == 0) && c.shared_blocks <= shared_uses &&
                    (shared_uses == 0 || c.adapter_rank > 0),
                "[model] ", shared_uses, " 'S' blocks for ", c.shared_blocks, " shared blocks of adapter rank ",
                c.adapter_rank);
  if (c.has_block("APS")) {
    MAMBART_CHECK(c.attn_heads > 0 && c.kv_heads > 0 && c.attn_heads % c.kv_heads == 0 && c.attn_head_dim > 0,
                  "[model] kv_heads ", c.kv_heads, " must divide attn_heads ", c.attn_heads, ", head dim ",
                  c.attn_head_dim);
    MAMBART_CHECK(c.rope_dim >= 0 && c.rope_dim % 2 == 0 && c.rope_dim <= c.attn_head_dim, "[model] rope_dim ",
                  c.rope_dim, " must be even and at most the head dim ", c.attn_head_dim);
    MAMBART_CHECK(static_cast<int64_t>(c.rope_inv_freq.size()) == c.rope_dim / 2, "[model] rope_inv_freq has ",
                  c.rope_inv_freq.size(), " frequencies, rope_dim ", c.rope_dim, " needs ", c.rope_dim / 2);
    MAMBART_CHECK(std::isfinite(c.rope_scale) && c.rope_scale > 0, "[model] rope_scale ", c.rope_scale,
                  " must be a positive number");
  }
  MAMBART_CHECK(!c.has_block("F") || c.mlp_inner > 0, "[model] mlp_inner must be positive, got ", c.mlp_inner);
  if (c.has_block("E")) {
    MAMBART_CHECK(c.n_experts > 0 && c.expert_inner > 0 && c.shared_inner >= 0 && c.top_k > 0 &&
                      c.top_k <= c.n_experts && c.expert_latent >= 0,
                  "[model] experts need n_experts > 0, 0 < top_k <= n_experts and expert_inner > 0; got n_experts=",
                  c.n_experts, " top_k=", c.top_k, " expert_inner=", c.expert_inner, " shared_inner=", c.shared_inner);
    MAMBART_CHECK(c.n_group > 0 && c.n_experts % c.n_group == 0 && c.topk_group > 0 && c.topk_group <= c.n_group &&
                      c.top_k <= c.topk_group * (c.n_experts / c.n_group),
                  "[model] expert groups: n_group ", c.n_group, " must divide n_experts ", c.n_experts,
                  ", and topk_group ", c.topk_group, " groups must hold top_k ", c.top_k, " experts");
    MAMBART_CHECK(std::isfinite(c.routed_scale), "[model] routed_scale must be finite, got ", c.routed_scale);
  }
}

static void check_config(const ModelConfig& c) {
  MAMBART_CHECK(c.d_model > 0 && c.n_layer > 0 && c.vocab_size > 0, "[model] every size must be positive: d_model=",
                c.d_model, " n_layer=", c.n_layer, " vocab_size=", c.vocab_size);
  MAMBART_CHECK(std::isfinite(c.eps) && c.eps > 0, "[model] eps must be positive, got ", c.eps);
  if (c.hybrid()) check_layers(c);
  if (c.has_block("MP")) check_mamba(c);
}

Model::Model(const ModelConfig& c, const std::map<std::string, Tensor>& weights, std::unique_ptr<Backend> backend)
    : config_(c), backend_(std::move(backend)) {
  check_config(c);
  const int64_t D = c.d_model, V = c.vocab_size;
  WeightTable w(weights, *backend_);
  embedding_ = c.tie_embeddings ? w.matrix("embedding", {V, D}) : w.table("embedding", {V, D});
  norm_f_ = w.get("norm_f", {D});
  lm_head_ = c.tie_embeddings ? embedding_ : w.matrix("lm_head", {V, D});
  load_blocks(w);
  w.check_all_used();
  weight_bytes_ = w.bytes();
}

// Block j of layer i has the pre-norm "layers.i.norm" (j = 0) or "layers.i.mlp_norm" (j = 1).
void Model::load_blocks(WeightTable& w) {
  const ModelConfig& c = config_;
  if (c.shared_blocks > 0) load_shared_blocks(w);
  for (int64_t i = 0; i < c.n_layer; ++i) {
    const std::string p = "layers." + std::to_string(i) + ".", kinds = c.blocks(i);
    for (size_t j = 0, normed = 0; j < kinds.size(); ++j) {
      Block b{kinds[j], i, Tensor(), 0};
      if (b.kind != 'S') b.norm = w.get(p + (normed++ == 0 ? "norm" : "mlp_norm"), {c.d_model});
      switch (b.kind) {
        case 'M':
          if (c.family == Family::Mamba1) {
            b.index = mamba1_.size();
            mamba1_.push_back(load_mamba1(w, p));
          } else {
            b.index = mamba2_.size();
            mamba2_.push_back(load_mamba2(w, p));
          }
          break;
        case 'A':
          b.index = attn_.size();
          attn_.push_back(load_attention(w, p));
          break;
        case 'P':
          b.index = parallel_.size();
          parallel_.push_back({load_mamba2(w, p), load_attention(w, p)});
          break;
        case 'F':
          b.index = mlp_.size();
          mlp_.push_back(load_mlp(w, p + "mlp", c.mlp_inner));
          break;
        case 'E':
          b.index = moe_.size();
          moe_.push_back(load_moe(w, p));
          break;
        case 'S':
          b.index = uses_.size();
          uses_.push_back(load_shared_use(w, p, uses_.size()));
          break;
      }
      blocks_.push_back(std::move(b));
    }
  }
  stateless_tail_ = blocks_.size();
  while (stateless_tail_ > 0 && (blocks_[stateless_tail_ - 1].kind == 'F' || blocks_[stateless_tail_ - 1].kind == 'E'))
    --stateless_tail_;
}

void Model::keep_last_rows(int64_t keep, int64_t& n, Workspace& ws) const {
  const int64_t D = config_.d_model, shift = (n - keep) * D;
  float* residual = ws.residual.data<float>();
  float* mixed = ws.mixed.data<float>();
  // Forward in pieces of at most `shift` floats, so that no copy overlaps itself.
  for (int64_t at = 0; shift > 0 && at < keep * D; at += shift) {
    const int64_t len = std::min(shift, keep * D - at);
    backend_->copy(residual + at + shift, residual + at, len);
    backend_->copy(mixed + at + shift, mixed + at, len);
  }
  n = keep;
}

Workspace Model::make_workspace(int64_t rows) const {
  const ModelConfig& c = config_;
  const int64_t D = c.d_model, E = c.d_inner;
  Workspace ws;
  ws.rows = rows;
  ws.residual = backend_->zeros({rows, D});
  ws.normed = backend_->zeros({rows, D});
  ws.mixed = backend_->zeros({rows, D});
  if (c.has_block("MP")) {
    ws.xz = backend_->zeros({rows, c.in_proj_rows()});
    ws.xc = backend_->zeros({rows, c.conv_channels()});
    ws.y = backend_->zeros({rows, E});
    if (c.family == Family::Mamba1) {
      ws.x_dbl = backend_->zeros({rows, c.dt_rank + 2 * c.d_state});
      ws.dt = backend_->zeros({rows, E});
    } else {
      ws.y_norm = backend_->zeros({rows, E});
    }
  }
  if (c.has_block("APS")) {
    ws.q = backend_->zeros({rows, c.attn_heads * c.attn_head_dim});
    ws.k = backend_->zeros({rows, c.kv_width()});
    ws.v = backend_->zeros({rows, c.kv_width()});
    ws.attn = backend_->zeros({rows, c.attn_heads * c.attn_head_dim});
  }
  int64_t F = c.has_block("E") ? std::max(c.shared_inner, c.expert_inner) : 0;
  for (const MlpLayer& m : mlp_) F = std::max(F, m.inner);
  if (c.has_block("E")) {
    ws.router_logits = backend_->zeros({rows, c.n_experts});
    ws.expert_x = backend_->zeros({rows, std::max(D, c.expert_latent)});
    ws.expert_y = backend_->zeros({rows, std::max(D, c.expert_latent)});
    if (c.expert_latent > 0) {
      ws.latent_x = backend_->zeros({rows, c.expert_latent});
      ws.latent_y = backend_->zeros({rows, c.expert_latent});
    }
  }
  for (const SharedBlock& s : shared_) F = std::max(F, s.mlp.inner);
  if (F > 0) {
    ws.gate = backend_->zeros({rows, F});
    ws.up = backend_->zeros({rows, F});
  }
  if (!shared_.empty()) {
    ws.cat = backend_->zeros({rows, 2 * D});
    ws.cat_normed = backend_->zeros({rows, 2 * D});
    ws.skip = backend_->zeros({rows, D});
    ws.tmp = backend_->zeros({rows, D});
    ws.lora_r = backend_->zeros({rows, c.adapter_rank});
    ws.lora_out = backend_->zeros({rows, std::max(c.attn_heads * c.attn_head_dim, F)});
  }
  return ws;
}

void Model::forward(const int32_t* tokens, int64_t n, int64_t keep, bool prefill,
                    const std::vector<LayerState>& states, Workspace& ws,
                    const std::function<void()>& between_blocks) const {
  const ModelConfig& c = config_;
  MAMBART_CHECK(n > 0 && n <= ws.rows, "[forward] ", n, " rows for a workspace of ", ws.rows);
  MAMBART_CHECK(keep >= 0 && keep <= n, "[forward] keeps ", keep, " of ", n, " rows");
  MAMBART_CHECK(static_cast<int64_t>(states.size()) == c.n_layer, "[forward] states for ", states.size(),
                " layers, model has ", c.n_layer);
  for (int64_t i = 0; i < n; ++i)
    MAMBART_CHECK(tokens[i] >= 0 && tokens[i] < c.vocab_size, "[forward] token id ", tokens[i],
                  " is out of range [0, ", c.vocab_size, ")");
  Backend& be = *backend_;
  const int64_t D = c.d_model;
  float* residual = ws.residual.data<float>();
  float* mixed = ws.mixed.data<float>();
  // A prefill's rows take the same arithmetic however the prompt is cut
  // into calls (MatmulParams::prefill), so a cached prefix state continues
  // exactly as one prefill of the whole prompt does.
  struct PrefillScope {
    bool old = prefill_forward();
    explicit PrefillScope(bool on) { prefill_forward() = on; }
    ~PrefillScope() { prefill_forward() = old; }
  } scope(prefill);

  // r = embedding[tokens] * embedding_multiplier
  be.embedding(embedding_, tokens, n, residual);
  if (c.embedding_multiplier != 1.0f) be.scale(residual, c.embedding_multiplier, n * D);
  if (!shared_.empty()) keep_embeddings(n, ws);

  // r += m * block(norm(r)), with the add fused into the next norm: each
  // block adds the previous block's output before normalising.
  // The blocks after the last one with state (the last layer's MLP or
  // experts) change no state: they run on the kept rows alone, or not at all.
  for (size_t i = 0; i < blocks_.size(); ++i) {
    if (between_blocks) between_blocks();
    if (i == stateless_tail_ && keep < n) {
      if (keep == 0) return;
      keep_last_rows(keep, n, ws);
    }
    const Block& b = blocks_[i];
    const LayerState& state = states[static_cast<size_t>(b.layer)];
    if (b.kind == 'S') {  // Zamba2: its output joins the next block's input, not the residual
      shared_block(uses_[b.index], i == 0, n, prefill, *state.kv, ws);
      continue;
    }
    if (i > 0 && blocks_[i - 1].kind == 'S')
      norm_with_skip(b.norm, n, ws);
    else
      be.rmsnorm({i == 0 ? nullptr : mixed, residual, b.norm.data<float>(), ws.normed.data<float>(), n, D, c.eps});
    switch (b.kind) {
      case 'M':
        if (c.family == Family::Mamba1)
          mamba1_block(mamba1_[b.index], n, prefill, state, ws);
        else
          mamba2_block(mamba2_[b.index], n, prefill, state, ws);
        break;
      case 'A':
        attention_block(attn_[b.index], n, prefill, *state.kv, ws);
        break;
      case 'P':
        parallel_mixers(parallel_[b.index], n, prefill, state, ws);
        break;
      case 'F':
        mlp(mlp_[b.index], ws.normed.data<float>(), n, mixed, ws);
        break;
      case 'E':
        moe_block(moe_[b.index], n, ws);
        break;
    }
    if (c.residual_multiplier != 1.0f) be.scale(mixed, c.residual_multiplier, n * D);
  }
  if (keep == 0) return;
  if (keep < n) keep_last_rows(keep, n, ws);
  // normed = norm_f(r + last block's output)
  be.rmsnorm({mixed, residual, norm_f_.data<float>(), ws.normed.data<float>(), n, D, c.eps});
}

void Model::head(const Workspace& ws, int64_t first, int64_t rows, float* logits) const {
  const int64_t D = config_.d_model, V = config_.vocab_size;
  backend_->matmul(linear(ws.normed.data<float>() + first * D, rows, D, lm_head_, Tensor(), logits, V));
  if (config_.logits_scaling != 1.0f) backend_->scale(logits, 1.0f / config_.logits_scaling, rows * V);
}

}  // namespace mambart
