// Zamba2 (transformers' Zamba2Model): Mamba-2 layers, and in the layers "SM"
// one of one or two shared attention + MLP blocks, taken in turn, before the
// Mamba-2 mixer. A shared block reads the residual stream concatenated with
// the token embeddings (2D wide), has LoRA adapters of its own at every
// application, and its output goes through the layer's own linear into the
// input of that layer's Mamba-2 mixer, not into the residual:
//   t = linear_l(mlp(norm(attention(norm([r | e])))))
//   r = r + mamba2(norm(r + t))
#include "check.h"
#include "model/model.h"
#include "model/weight_table.h"

namespace mambart {

void Model::load_shared_blocks(WeightTable& w) {
  const ModelConfig& c = config_;
  for (int64_t b = 0; b < c.shared_blocks; ++b) {
    const std::string p = "shared." + std::to_string(b) + ".";
    SharedBlock B;
    const size_t before = w.bytes();
    B.attn_norm = w.get(p + "attn_norm", {2 * c.d_model});
    B.attn = load_attention(w, p, 2 * c.d_model);
    B.mlp_norm = w.get(p + "mlp_norm", {c.d_model});
    B.mlp = load_mlp(w, p + "mlp", c.mlp_inner);
    B.bytes = w.bytes() - before;
    shared_.push_back(std::move(B));
  }
}

// Application j runs shared block j % shared_blocks; p is its layer's prefix.
SharedUse Model::load_shared_use(WeightTable& w, const std::string& p, size_t application) {
  const ModelConfig& c = config_;
  const int64_t D = c.d_model, F = c.mlp_inner, r = c.adapter_rank;
  const int64_t qd = c.attn_heads * c.attn_head_dim, kvd = c.kv_width();
  SharedUse U;
  U.block = application % static_cast<size_t>(c.shared_blocks);
  U.linear = w.matrix(p + "linear", {D, D});
  const Tensor a = w.matrix(p + "mlp_lora_a", {r, D});
  const std::vector<Tensor> b = w.matrix_rows(p + "mlp_lora_b", {2 * F, r}, {F});
  U.gate = {a, b[0]};
  U.up = {a, b[1]};
  if (c.attention_adapters) {
    U.q = {w.matrix(p + "q_lora_a", {r, 2 * D}), w.matrix(p + "q_lora_b", {qd, r})};
    U.k = {w.matrix(p + "k_lora_a", {r, 2 * D}), w.matrix(p + "k_lora_b", {kvd, r})};
    U.v = {w.matrix(p + "v_lora_a", {r, 2 * D}), w.matrix(p + "v_lora_b", {kvd, r})};
  }
  return U;
}

// y (n, N) += b · (a · x), x (n, K); y's rows contiguous. again: ws.lora_r
// holds a · x from the previous call (the MLP's gate and up share a).
void Model::lora_add(const Lora& L, const float* x, int64_t K, int64_t n, float* y, Workspace& ws, bool again) const {
  Backend& be = *backend_;
  const int64_t r = L.a.dim(0), N = L.b.dim(0);
  if (!again) be.matmul(linear(x, n, K, L.a, Tensor(), ws.lora_r.data<float>(), r));
  be.matmul(linear(ws.lora_r.data<float>(), n, r, L.b, Tensor(), ws.lora_out.data<float>(), N));
  be.axpy(1.0f, ws.lora_out.data<float>(), y, n * N);
}

// The embeddings' half of [r | e], kept for the whole pass.
void Model::keep_embeddings(int64_t n, Workspace& ws) const {
  const int64_t D = config_.d_model;
  for (int64_t i = 0; i < n; ++i)
    backend_->copy(ws.residual.data<float>() + i * D, ws.cat.data<float>() + (2 * i + 1) * D, D);
}

// ws.skip = linear(mlp(norm(attention(norm([r | e]))))); first: no block ran before.
void Model::shared_block(const SharedUse& U, bool first, int64_t n, bool prefill, const KvRows& kv,
                         Workspace& ws) const {
  Backend& be = *backend_;
  const ModelConfig& c = config_;
  const int64_t D = c.d_model, F = c.mlp_inner;
  const SharedBlock& B = shared_[U.block];
  float* residual = ws.residual.data<float>();
  float* mixed = ws.mixed.data<float>();
  float* normed = ws.normed.data<float>();
  float* gate = ws.gate.data<float>();
  float* up = ws.up.data<float>();

  // r += the previous block's output; [r | e]
  if (!first) be.axpy(1.0f, mixed, residual, n * D);
  for (int64_t i = 0; i < n; ++i) be.copy(residual + i * D, ws.cat.data<float>() + 2 * i * D, D);
  // a = o_proj(attention(norm([r | e])))          (n, D)
  be.rmsnorm({nullptr, ws.cat.data<float>(), B.attn_norm.data<float>(), ws.cat_normed.data<float>(), n, 2 * D,
              c.eps});
  attention_block(B.attn, ws.cat_normed.data<float>(), 2 * D, &U, n, prefill, kv, ws);
  // m = down(act(gate(h)) * up(h)), h = norm(a), each projection with its adapter
  be.rmsnorm({nullptr, mixed, B.mlp_norm.data<float>(), normed, n, D, c.eps});
  be.matmul(linear(normed, n, D, B.mlp.gate, Tensor(), gate, F));
  lora_add(U.gate, normed, D, n, gate, ws);
  be.matmul(linear(normed, n, D, B.mlp.up, Tensor(), up, F));
  lora_add(U.up, normed, D, n, up, ws, /*again=*/true);
  c.mlp_gelu ? be.gate_gelu({up, gate, up, n * F}) : be.gate_silu({up, gate, up, n * F});
  be.matmul(linear(up, n, F, B.mlp.out, Tensor(), mixed, D));
  // t = linear_l(m)
  be.matmul(linear(mixed, n, D, U.linear, Tensor(), ws.skip.data<float>(), D));
}

// ws.normed = norm(r + t), r itself unchanged.
void Model::norm_with_skip(const Tensor& norm, int64_t n, Workspace& ws) const {
  const int64_t D = config_.d_model;
  backend_->copy(ws.residual.data<float>(), ws.tmp.data<float>(), n * D);
  backend_->rmsnorm({ws.skip.data<float>(), ws.tmp.data<float>(), norm.data<float>(), ws.normed.data<float>(), n, D,
                     config_.eps});
}

}  // namespace mambart
