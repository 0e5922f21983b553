// The attention hybrids' own blocks: grouped-query attention over the
// decoder's KV caches, and the MLP (SwiGLU or squared ReLU). One function per
// block serves prefill (one sequence, n tokens) and step (n sequences).
#include <algorithm>

#include "check.h"
#include "model/model.h"
#include "model/weight_table.h"

namespace mambart {

AttentionLayer Model::load_attention(WeightTable& w, const std::string& p, int64_t K) {
  const ModelConfig& c = config_;
  const int64_t D = c.d_model, qd = c.attn_heads * c.attn_head_dim, kvd = c.kv_width();
  K = K > 0 ? K : D;
  AttentionLayer A;
  A.q_proj = w.matrix(p + "q_proj", {qd, K});
  A.k_proj = w.matrix(p + "k_proj", {kvd, K});
  A.v_proj = w.matrix(p + "v_proj", {kvd, K});
  A.o_proj = w.matrix(p + "o_proj", {D, qd});
  if (c.rope_dim > 0 && !inv_freq_.defined()) {
    Tensor inv = Tensor::zeros({c.rope_dim / 2});
    std::copy(c.rope_inv_freq.begin(), c.rope_inv_freq.end(), inv.data<float>());
    inv_freq_ = backend_->upload(inv);
  }
  return A;
}

// The MLP named `name` ("layers.3.mlp"): `name`_in, or (gated, Bamba)
// `name`_gate and `name`_up apart, and `name`_out.
MlpLayer Model::load_mlp(WeightTable& w, const std::string& name, int64_t F, int64_t width) {
  const int64_t D = width > 0 ? width : config_.d_model;
  MlpLayer M;
  M.inner = F;
  if (config_.mlp_gated && !w.shape_of(name + "_gate").empty()) {
    M.gate = w.matrix(name + "_gate", {F, D});
    M.up = w.matrix(name + "_up", {F, D});
  } else if (config_.mlp_gated) {
    const std::vector<Tensor> parts = w.matrix_rows(name + "_in", {2 * F, D}, {F});
    M.gate = parts[0], M.up = parts[1];
  } else {
    M.up = w.matrix(name + "_in", {F, D});
  }
  M.out = w.matrix(name + "_out", {D, F});
  return M;
}

void Model::attention_block(const AttentionLayer& L, int64_t n, bool prefill, const KvRows& kv,
                            Workspace& ws) const {
  attention_block(L, ws.normed.data<float>(), config_.d_model, nullptr, n, prefill, kv, ws);
}

void Model::attention_block(const AttentionLayer& L, const float* x, int64_t K, const SharedUse* use, int64_t n,
                            bool prefill, const KvRows& kv, Workspace& ws) const {
  Backend& be = *backend_;
  const ModelConfig& c = config_;
  const int64_t D = c.d_model, Hq = c.attn_heads, Hkv = c.kv_heads, d = c.attn_head_dim;
  const int64_t qd = Hq * d, kvd = c.kv_width();
  float* q = ws.q.data<float>();

  // Query row r's position, and the cache it reads and writes.
  std::vector<int64_t> pos(static_cast<size_t>(n)), len(static_cast<size_t>(n));
  std::vector<const float*> krow(static_cast<size_t>(n)), vrow(static_cast<size_t>(n));
  for (int64_t r = 0; r < n; ++r) {
    const size_t b = prefill ? 0 : static_cast<size_t>(r);
    pos[r] = kv.pos[b] + (prefill ? r : 0);
    len[r] = pos[r] + 1;  // causal: itself and every earlier token
    krow[r] = kv.k[b];
    vrow[r] = kv.v[b];
  }

  // q, k, v projections; a prefill writes k and v straight into its cache.
  be.matmul(linear(x, n, K, L.q_proj, Tensor(), q, qd));
  float* k = prefill ? kv.k[0] + kv.pos[0] * kvd : ws.k.data<float>();
  float* v = prefill ? kv.v[0] + kv.pos[0] * kvd : ws.v.data<float>();
  be.matmul(linear(x, n, K, L.k_proj, Tensor(), k, kvd));
  be.matmul(linear(x, n, K, L.v_proj, Tensor(), v, kvd));
  if (use != nullptr && use->q.a.defined()) {  // Zamba2's adapters: q += b (a x), and so k and v
    lora_add(use->q, x, K, n, q, ws);
    lora_add(use->k, x, K, n, k, ws);
    lora_add(use->v, x, K, n, v, ws);
  }
  if (c.rope_dim > 0) {
    be.rope({q, pos.data(), inv_freq_.data<float>(), c.rope_scale, n, Hq, d, c.rope_dim, qd});
    be.rope({k, pos.data(), inv_freq_.data<float>(), c.rope_scale, n, Hkv, d, c.rope_dim, kvd});
  }
  if (!prefill) {
    for (int64_t b = 0; b < n; ++b) {
      be.copy(k + b * kvd, kv.k[b] + kv.pos[b] * kvd, kvd);
      be.copy(v + b * kvd, kv.v[b] + kv.pos[b] * kvd, kvd);
    }
  }

  // Each query over its sequence's keys, then the output projection.
  AttentionParams ap{q, ws.attn.data<float>(), krow.data(), vrow.data(), len.data(), n, Hq, Hkv, d, c.attn_scale,
                     qd, qd};
  be.attention(ap);
  be.matmul(linear(ws.attn.data<float>(), n, qd, L.o_proj, Tensor(), ws.mixed.data<float>(), D));
}

void Model::mlp(const MlpLayer& L, const float* x, int64_t n, float* out, Workspace& ws) const {
  Backend& be = *backend_;
  const int64_t D = L.out.dim(0), F = L.inner;  // rows in and out: d_model, or the experts' latent width
  float* up = ws.up.data<float>();
  be.matmul(linear(x, n, D, L.up, Tensor(), up, F));
  if (config_.mlp_gated) {
    // out = down(up * silu(gate)), Falcon-H1's multipliers on the gate and the output
    float* gate = ws.gate.data<float>();
    be.matmul(linear(x, n, D, L.gate, Tensor(), gate, F));
    if (config_.mlp_gate_multiplier != 1.0f) be.scale(gate, config_.mlp_gate_multiplier, n * F);
    be.gate_silu({up, gate, up, n * F});
  } else {
    // out = down(relu(up)^2)
    be.relu_sq({up, nullptr, up, n * F});
  }
  be.matmul(linear(up, n, F, L.out, Tensor(), out, D));
  if (config_.mlp_down_multiplier != 1.0f) be.scale(out, config_.mlp_down_multiplier, n * D);
}

}  // namespace mambart
