// A Mamba language model: sizes, weights on a backend, and the forward
// pass over a block of rows. The graph is written once over backend.h.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "backend.h"
#include "tensor.h"

namespace mambart {

class WeightTable;

enum class Family { Mamba1, Mamba2 };

struct ModelConfig {
  Family family = Family::Mamba1;
  int64_t d_model = 0;     // D
  int64_t n_layer = 0;
  int64_t vocab_size = 0;  // V: rows of the embedding and the head (padded)
  int64_t d_inner = 0;     // E
  int64_t d_state = 0;     // N
  int64_t d_conv = 0;      // K
  int64_t dt_rank = 0;     // R (Mamba-1)
  int64_t n_heads = 0;     // H (Mamba-2)
  int64_t head_dim = 0;    // P (Mamba-2), H * P = E
  int64_t n_groups = 0;    // G (Mamba-2): B/C groups, also the gated norm's groups
  int64_t chunk_size = 64; // Mamba-2 prefill chunk on CUDA (rounding only)
  float dt_min = 0.0f, dt_max = INFINITY;  // Mamba-2 prefill clamp of delta
  float eps = 1e-5f;
  bool tie_embeddings = true;
  // Falcon-Mamba and Jamba (Mamba-1): dt, B and C each go through an RMSNorm
  // of epsilon dt_bc_eps right after x_proj: weightless (Falcon-Mamba), or with
  // the weights dt_norm, b_norm, c_norm (Jamba).
  bool dt_bc_norm = false;
  float dt_bc_eps = 1e-6f;
  // The layers' residual blocks, one word per layer (separated by spaces), one
  // letter per block in order: 'M' the family's Mamba mixer, 'A' grouped-query
  // attention, 'P' the two side by side (Falcon-H1), 'F' the MLP, 'E' a
  // mixture of experts (the routed experts plus the shared MLP). Every block
  // has its own pre-norm and adds residual_multiplier * block(norm(r)) to the
  // residual r. Granite-4.0-H is "MF MF AF" (with experts "ME ME AE"),
  // Nemotron-H "M E M A F". Empty: a pure Mamba model, "M" per layer.
  std::string layers;
  int64_t attn_heads = 0, kv_heads = 0, attn_head_dim = 0;
  float attn_scale = 1.0f;
  int64_t rope_dim = 0;  // leading dims of each head that rotate; 0: no position encoding
  // (rope_dim / 2) rotary frequencies and the factor on cos and sin (YaRN's attention
  // factor, else 1): the config computes them for its rope type (mambart/rope.py).
  std::vector<float> rope_inv_freq;
  float rope_scale = 1.0f;
  // MLPs: SwiGLU (in_proj rows [gate | up]) when gated, else squared ReLU of one up projection.
  bool mlp_gated = true;
  int64_t mlp_inner = 0;     // F of the 'F' blocks
  int64_t shared_inner = 0;  // F of an 'E' block's shared MLP; 0: none
  // Mixture of experts (kernels/moe.h): n_experts MLPs of expert_inner channels, top_k per token.
  int64_t n_experts = 0, top_k = 0, expert_inner = 0, n_group = 1, topk_group = 1;
  // Width of the routed experts' input and output (Nemotron-H's moe_latent_size: a projection
  // from d_model before them and one back after); 0: d_model, no projections.
  int64_t expert_latent = 0;
  bool router_sigmoid = false, norm_topk = true;
  float routed_scale = 1.0f;
  float embedding_multiplier = 1.0f, residual_multiplier = 1.0f, logits_scaling = 1.0f;
  // Falcon-H1's 'P' blocks: a Mamba-2 mixer and an attention side by side on one norm, their outputs
  // scaled by ssm_out_multiplier and attn_out_multiplier and summed. in_proj_multipliers (five, or none)
  // scale the parts [z | x | B | C | dt] of in_proj's output; the MLP's gate and output are scaled by
  // mlp_gate_multiplier and mlp_down_multiplier. norm_before_gate: the Mamba-2 gated norm normalises y
  // first and gates after.
  std::vector<float> in_proj_multipliers;
  float ssm_out_multiplier = 1.0f, attn_out_multiplier = 1.0f;
  float mlp_gate_multiplier = 1.0f, mlp_down_multiplier = 1.0f;
  bool norm_before_gate = false;
  // Zamba2's 'S' blocks (words "SM") run one of shared_blocks shared attention + MLP blocks (in turn)
  // on [residual | embedding] (2D wide), with LoRA adapters of rank adapter_rank per application (the
  // MLP's always, q/k/v's with attention_adapters), then the layer's own linear, whose output joins the
  // input of the layer's Mamba-2 mixer (not the residual). mlp_gelu: their MLP gates with gelu.
  int64_t shared_blocks = 0, adapter_rank = 0;
  bool attention_adapters = false, mlp_gelu = false;
  float gated_norm_eps = 0.0f;  // the Mamba-2 gated norm's epsilon; 0: eps

  bool hybrid() const { return !layers.empty(); }
  // Layer l's block letters ("M" for a pure Mamba model); "" past the last layer.
  std::string blocks(int64_t layer) const;
  // Whether any layer has a block of one of these kinds ("MP": any Mamba mixer).
  bool has_block(const std::string& kinds) const {
    return (hybrid() ? layers : std::string("M")).find_first_of(kinds) != std::string::npos;
  }
  bool is_attention(int64_t layer) const { return blocks(layer).find_first_of("APS") != std::string::npos; }
  int64_t kv_width() const { return kv_heads * attn_head_dim; }  // floats of K (or V) per token and layer
  // Whether layer l has a Mamba mixer ('M' or 'P'), hence conv and SSM state.
  bool has_mamba(int64_t layer) const { return blocks(layer).find_first_of("MP") != std::string::npos; }
  // Layers with conv and SSM state: those with a Mamba mixer (none for attention or MLP-only layers).
  int64_t mamba_layers() const {
    int64_t n = 0;
    for (int64_t l = 0; l < n_layer; ++l) n += has_mamba(l);
    return n;
  }

  // Channels through the conv: x (Mamba-1), or x, B and C (Mamba-2).
  int64_t conv_channels() const { return family == Family::Mamba1 ? d_inner : d_inner + 2 * n_groups * d_state; }
  // Floats of SSM state per sequence and layer: (E, N) or (H, P, N).
  int64_t ssm_state_size() const { return d_inner * d_state; }
  // Columns of in_proj's output: [x | z] or [z | xBC | dt].
  int64_t in_proj_rows() const { return family == Family::Mamba1 ? 2 * d_inner : 2 * d_inner + 2 * n_groups * d_state + n_heads; }
};

struct Mamba1Layer {
  Tensor in_proj;        // (2E, D): rows [0, E) give x, [E, 2E) give z
  Tensor in_proj_bias;   // (2E) or undefined
  Tensor conv1d_weight;  // (E, K)
  Tensor conv1d_bias;    // (E) or undefined
  Tensor x_proj;         // (R + 2N, E): rows give [dt | B | C]; undefined with dt_bc_norm, which
  Tensor x_proj_dt;      // takes its rows [0, R), [R, R + N) and [R + N, R + 2N) as matrices
  Tensor x_proj_b;       // of their own instead, so that dt, B and C each land in contiguous
  Tensor x_proj_c;       // rows to be normed
  Tensor dt_norm;        // (R), b_norm and c_norm (N): their norms' weights (Jamba), or
  Tensor b_norm;         // undefined: weightless
  Tensor c_norm;
  Tensor dt_proj;        // (E, R)
  Tensor dt_proj_bias;   // (E)
  Tensor A;              // (E, N) = -exp(A_log), computed once at load in f32
  Tensor D;              // (E)
  Tensor out_proj;       // (D, E)
  Tensor out_proj_bias;  // (D) or undefined
};

struct Mamba2Layer {
  Tensor in_proj;        // (2E + 2GN + H, D): rows give [z | xBC | dt]
  Tensor in_proj_bias;   // or undefined
  Tensor conv1d_weight;  // (E + 2GN, K)
  Tensor conv1d_bias;    // (E + 2GN) or undefined
  Tensor dt_bias;        // (H)
  Tensor A;              // (H) = -exp(A_log)
  Tensor D;              // (H), or (E) with one value per channel
  Tensor gated_norm;     // (E), or undefined: then y * silu(z) without a norm
  Tensor out_proj;       // (D, E)
  Tensor out_proj_bias;  // (D) or undefined
};

struct AttentionLayer {
  Tensor q_proj;  // (Hq * d, D)
  Tensor k_proj;  // (Hkv * d, D)
  Tensor v_proj;  // (Hkv * d, D)
  Tensor o_proj;  // (D, Hq * d)
};

struct MlpLayer {
  int64_t inner = 0;  // F
  Tensor gate;    // gated: (F, D) each, cut from a stored (2F, D) "in" (gate rows first) or
  Tensor up;      // stored apart; not gated: up (F, D) alone
  Tensor out;     // (D, F)
};

// A mixture of experts: the router, X expert MLPs, and the shared MLP.
struct MoeLayer {
  Tensor router;       // (X, D), f32 (routing is sensitive to rounding)
  Tensor router_bias;  // (X) the selection bias (Nemotron-H's e_score_correction_bias), or undefined
  std::vector<MlpLayer> experts;
  MlpLayer shared;     // inner 0: none
  Tensor latent_in, latent_out;  // (L, D) and (D, L) around the experts (expert_latent), or undefined
};

// Falcon-H1's mixers side by side.
struct ParallelLayer {
  Mamba2Layer mamba;
  AttentionLayer attention;
};

// A low-rank adapter: y += b · (a · x), a (r, K), b (N, r).
struct Lora {
  Tensor a, b;
};

// Zamba2: a shared block, and one application of it (an 'S' block).
struct SharedBlock {
  Tensor attn_norm;     // (2D)
  AttentionLayer attn;  // q, k, v (Hq * d or Hkv * d, 2D), o (D, Hq * d)
  Tensor mlp_norm;      // (D)
  MlpLayer mlp;         // in (2F, D) rows [gate | up]
  size_t bytes = 0;     // of its weights
};
struct SharedUse {
  size_t block = 0;  // into the shared blocks
  Tensor linear;     // (D, D) the block's output into the layer's Mamba-2 input
  Lora q, k, v;      // attention_adapters: on the (2D) normed input; else undefined
  Lora gate, up;     // the MLP adapter: its b's rows [0, F) and [F, 2F)
};

// One residual block of a layer (ModelConfig::layers): r += m * op(norm(r)).
struct Block {
  char kind;       // 'M', 'A', 'P', 'F', 'E' or 'S' (no norm of its own)
  int64_t layer;   // whose state it uses
  Tensor norm;     // (D)
  size_t index;    // into the Model's vector of that kind
};

// An attention layer's KV cache for the rows of one call: row b's keys and
// values at k[b], v[b], (capacity, Hkv * d) each, with pos[b] tokens already
// in them; the decoder has made room for the new ones.
struct KvRows {
  std::vector<float*> k, v;
  std::vector<int64_t> pos;
};

// Per-row recurrent state of one layer lives in the decoder; the forward
// pass gets pointers to it.
struct LayerState {
  float* conv = nullptr;  // (batch, conv_channels, K)        Mamba layers
  float* ssm = nullptr;   // (batch, E, N) or (batch, H, P, N)  Mamba layers
  const KvRows* kv = nullptr;  // attention layers
};

// Activations for up to `rows` rows at once.
struct Workspace {
  int64_t rows = 0;
  Tensor residual;  // (rows, D)
  Tensor normed;    // (rows, D)
  Tensor mixed;     // (rows, D)    mixer output, added to the residual by the next norm
  Tensor xz;        // (rows, in_proj_rows) in_proj output
  Tensor xc;        // (rows, conv_channels) conv output
  Tensor x_dbl;     // (rows, R+2N) x_proj output (Mamba-1)
  Tensor dt;        // (rows, E) dt_proj output (Mamba-1)
  Tensor y;         // (rows, E)   scan output
  Tensor y_norm;    // (rows, E)   gated norm output (Mamba-2)
  Tensor q, k, v;   // (rows, Hq * d), (rows, Hkv * d) x 2   attention projections (hybrids)
  Tensor attn;      // (rows, Hq * d) attention output
  Tensor gate, up;  // (rows, max F) MLP
  Tensor router_logits;       // (rows, X)  mixture of experts
  Tensor expert_x, expert_y;  // (rows, max(D, L)) an expert's rows, gathered, and its output
  Tensor latent_x, latent_y;  // (rows, L) the rows projected to the experts' width L, their sum of experts
  Tensor cat, cat_normed;   // (rows, 2D) Zamba2: [residual | embedding], normed
  Tensor skip, tmp;         // (rows, D)  Zamba2: the shared block's output; the residual plus it
  Tensor lora_r, lora_out;  // (rows, r), (rows, max(Hq * d, F)) adapters
};

// Whether the forward running on this thread is a prefill (Model::forward
// sets it for its duration): its linear layers are then MatmulParams::prefill.
inline bool& prefill_forward() {
  static thread_local bool on = false;
  return on;
}

// y (M, N) = x (M, K) · wᵀ + bias, for a weight w (N, K) of any type.
inline MatmulParams linear(const float* x, int64_t M, int64_t ldx, const Tensor& w, const Tensor& bias, float* y,
                           int64_t ldy) {
  return {x, w.data<void>(), w.dtype(), bias.data<float>(), y, M, w.dim(0), w.dim(1), ldx, ldy, prefill_forward()};
}

class Model {
 public:
  // weights: internal names (mambart/weights.py) -> f32 host tensors.
  // Validates every name and shape; throws mambart::Error naming the tensor.
  // The big matrices (mambart/weights.py's MATRICES: the Mamba, attention,
  // MLP, expert, adapter and latent projections, embedding / lm_head) may
  // come in any weight type and are used as given; everything else is f32.
  Model(const ModelConfig& config, const std::map<std::string, Tensor>& weights, std::unique_ptr<Backend> backend);

  const ModelConfig& config() const { return config_; }
  size_t weight_bytes() const { return weight_bytes_; }
  // Weight bytes one decode step reads: all of them, but only a row of an
  // untied embedding, only top_k of every n_experts routed experts, and a
  // shared block (Zamba2) once per application: one token's applications
  // run in turn, a layer apart, and a block of any size worth sharing
  // leaves the caches before it runs again.
  size_t step_bytes() const {
    const size_t X = static_cast<size_t>(config_.n_experts), idle = X ? expert_bytes_ / X * (X - config_.top_k) : 0;
    size_t again = 0;
    for (const SharedUse& u : uses_) again += shared_[u.block].bytes;
    for (const SharedBlock& b : shared_) again -= b.bytes;
    return weight_bytes_ - (config_.tie_embeddings ? 0 : embedding_.nbytes()) - idle + again;
  }
  Backend& backend() const { return *backend_; }

  Workspace make_workspace(int64_t rows) const;

  // Runs `n` rows through the backbone and leaves the final normed hidden
  // states of the last `keep` of them (0 <= keep <= n) in ws.normed rows
  // [0, keep). Two shapes of call:
  //   prefill: one sequence, n consecutive tokens (batch 1, seqlen n);
  //   step:    n sequences, one token each (batch n, seqlen 1).
  // states[l] holds layer l's state for the rows' sequences; every row
  // advances it, kept or not. `between_blocks`, when given, is called before
  // each residual block and may throw to stop the forward there (the states
  // are then partly advanced: the caller's to undo).
  void forward(const int32_t* tokens, int64_t n, int64_t keep, bool prefill, const std::vector<LayerState>& states,
               Workspace& ws, const std::function<void()>& between_blocks = nullptr) const;

  // logits (rows, V) = head · ws.normed[rows of `first`, `first + rows`).
  void head(const Workspace& ws, int64_t first, int64_t rows, float* logits) const;

 private:
  void mamba1_block(const Mamba1Layer& layer, int64_t n, bool prefill, const LayerState& state,
                    Workspace& ws) const;
  void mamba2_block(const Mamba2Layer& layer, int64_t n, bool prefill, const LayerState& state,
                    Workspace& ws) const;
  void attention_block(const AttentionLayer& layer, int64_t n, bool prefill, const KvRows& kv, Workspace& ws) const;
  // The same over input x (n, K), with the adapters on q, k, v that `use` has (Zamba2).
  void attention_block(const AttentionLayer& layer, const float* x, int64_t K, const SharedUse* use, int64_t n,
                       bool prefill, const KvRows& kv, Workspace& ws) const;
  // Zamba2 (zamba2.cpp): the embeddings kept for the shared blocks; a shared block's output into
  // ws.skip; the next block's input norm(r + skip).
  void keep_embeddings(int64_t n, Workspace& ws) const;
  void shared_block(const SharedUse& use, bool first, int64_t n, bool prefill, const KvRows& kv,
                    Workspace& ws) const;
  void norm_with_skip(const Tensor& norm, int64_t n, Workspace& ws) const;
  void lora_add(const Lora& lora, const float* x, int64_t K, int64_t n, float* y, Workspace& ws,
                bool again = false) const;
  void parallel_mixers(const ParallelLayer& layer, int64_t n, bool prefill, const LayerState& state,
                       Workspace& ws) const;
  // out (n, D) = the MLP of x (n, D); uses ws.gate and ws.up.
  void mlp(const MlpLayer& layer, const float* x, int64_t n, float* out, Workspace& ws) const;  // any width
  void moe_block(const MoeLayer& layer, int64_t n, Workspace& ws) const;
  // Each loader reads one block's weights, named with the layer's prefix p ("layers.3.").
  Mamba1Layer load_mamba1(WeightTable& w, const std::string& p);
  Mamba2Layer load_mamba2(WeightTable& w, const std::string& p);
  AttentionLayer load_attention(WeightTable& w, const std::string& p, int64_t K = 0);  // K: input width (D)
  // An MLP over rows of `width` floats (0: d_model).
  MlpLayer load_mlp(WeightTable& w, const std::string& name, int64_t inner, int64_t width = 0);
  MoeLayer load_moe(WeightTable& w, const std::string& p);
  void load_blocks(WeightTable& w);
  // Moves the last `keep` of the n rows of the residual and of the last
  // block's output to the front; n becomes keep.
  void keep_last_rows(int64_t keep, int64_t& n, Workspace& ws) const;
  void load_shared_blocks(WeightTable& w);
  SharedUse load_shared_use(WeightTable& w, const std::string& p, size_t application);

  ModelConfig config_;
  std::unique_ptr<Backend> backend_;
  Tensor embedding_;  // (V, D)
  Tensor norm_f_;     // (D)
  Tensor lm_head_;    // (V, D): the embedding when tied
  Tensor ones_;       // (max(R, N)) the weight of a weightless norm (dt_bc_norm)
  size_t weight_bytes_ = 0;
  std::vector<Block> blocks_;          // every layer's blocks, in order
  size_t stateless_tail_ = 0;          // the first of the blocks after the last one with state
  std::vector<Mamba1Layer> mamba1_;    // the blocks' weights by kind
  std::vector<Mamba2Layer> mamba2_;
  std::vector<AttentionLayer> attn_;
  std::vector<ParallelLayer> parallel_;
  std::vector<MlpLayer> mlp_;
  std::vector<MoeLayer> moe_;
  size_t expert_bytes_ = 0;            // the routed experts' weights, of which a token reads top_k / X
  std::vector<SharedBlock> shared_;    // Zamba2's shared blocks, and their applications
  std::vector<SharedUse> uses_;
  Tensor inv_freq_;                    // (rope_dim / 2) rotary frequencies
  Tensor in_proj_scale_;               // (in_proj_rows) in_proj_multipliers per output column, or undefined
};

}  // namespace mambart
