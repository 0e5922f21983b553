// The backbone (reference doc 4.1): embedding, n_layer pre-norm residual
// blocks, norm_f and the head. Also weight validation at construction.
#include <cmath>

#include "check.h"
#include "model/model.h"

namespace mambart {

namespace {

class WeightTable {
 public:
  WeightTable(const std::map<std::string, Tensor>& weights, Backend& backend)
      : weights_(weights), backend_(backend) {}

  // The named tensor, checked against `shape`, uploaded to the backend.
  Tensor get(const std::string& name, const std::vector<int64_t>& shape, bool required = true) {
    auto it = weights_.find(name);
    if (it == weights_.end()) {
      MAMBART_CHECK(!required, "[model] missing tensor '", name, "'");
      return Tensor();
    }
    const Tensor& t = it->second;
    MAMBART_CHECK(t.dtype() == DType::F32, "[model] tensor '", name, "' has dtype ", dtype_name(t.dtype()),
                  ", expected f32");
    MAMBART_CHECK(t.shape() == shape, "[model] tensor '", name, "' has shape ", shape_str(t.shape()),
                  ", expected ", shape_str(shape));
    used_ += 1;
    return backend_.upload(t);
  }

  void check_all_used() const {
    MAMBART_CHECK(used_ == weights_.size(), "[model] ", weights_.size() - used_,
                  " tensor(s) were not used by the model; the weights do not match the config");
  }

 private:
  const std::map<std::string, Tensor>& weights_;
  Backend& backend_;
  size_t used_ = 0;
};

}  // namespace

Model::Model(const ModelConfig& c, const std::map<std::string, Tensor>& weights, std::unique_ptr<Backend> backend)
    : config_(c), backend_(std::move(backend)) {
  MAMBART_CHECK(c.d_model > 0 && c.n_layer > 0 && c.vocab_size > 0 && c.d_inner > 0 && c.d_state > 0 &&
                    c.d_conv > 0 && c.dt_rank > 0,
                "[model] every size must be positive: d_model=", c.d_model, " n_layer=", c.n_layer,
                " vocab_size=", c.vocab_size, " d_inner=", c.d_inner, " d_state=", c.d_state,
                " d_conv=", c.d_conv, " dt_rank=", c.dt_rank);
  MAMBART_CHECK(std::isfinite(c.eps) && c.eps > 0, "[model] eps must be positive, got ", c.eps);
  const int64_t D = c.d_model, E = c.d_inner, N = c.d_state, K = c.d_conv, R = c.dt_rank, V = c.vocab_size;

  WeightTable w(weights, *backend_);
  embedding_ = w.get("embedding", {V, D});
  norm_f_ = w.get("norm_f", {D});
  lm_head_ = c.tie_embeddings ? embedding_ : w.get("lm_head", {V, D});

  layers_.resize(static_cast<size_t>(c.n_layer));
  for (int64_t i = 0; i < c.n_layer; ++i) {
    const std::string p = "layers." + std::to_string(i) + ".";
    Mamba1Layer& L = layers_[static_cast<size_t>(i)];
    L.norm = w.get(p + "norm", {D});
    L.in_proj = w.get(p + "in_proj", {2 * E, D});
    L.in_proj_bias = w.get(p + "in_proj_bias", {2 * E}, false);
    L.conv1d_weight = w.get(p + "conv1d_weight", {E, K});
    L.conv1d_bias = w.get(p + "conv1d_bias", {E}, false);
    L.x_proj = w.get(p + "x_proj", {R + 2 * N, E});
    L.dt_proj = w.get(p + "dt_proj", {E, R});
    L.dt_proj_bias = w.get(p + "dt_proj_bias", {E});
    L.D = w.get(p + "D", {E});
    L.out_proj = w.get(p + "out_proj", {D, E});
    L.out_proj_bias = w.get(p + "out_proj_bias", {D}, false);

    // A = -exp(A_log) in f32, once (reference doc 7.1).
    Tensor a_log = w.get(p + "A_log", {E, N});
    Tensor A = Tensor::zeros({E, N});
    const float* src = a_log.data<float>();  // host: the CPU backend uploads in place
    for (int64_t j = 0; j < E * N; ++j) A.data<float>()[j] = -std::exp(src[j]);
    L.A = backend_->upload(A);
  }
  w.check_all_used();
}

Workspace Model::make_workspace(int64_t rows) const {
  const int64_t D = config_.d_model, E = config_.d_inner;
  Workspace ws;
  ws.rows = rows;
  ws.residual = backend_->zeros({rows, D});
  ws.normed = backend_->zeros({rows, D});
  ws.mixed = backend_->zeros({rows, D});
  ws.xz = backend_->zeros({rows, 2 * E});
  ws.xc = backend_->zeros({rows, E});
  ws.x_dbl = backend_->zeros({rows, config_.dt_rank + 2 * config_.d_state});
  ws.dt = backend_->zeros({rows, E});
  ws.y = backend_->zeros({rows, E});
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
  backend_->embedding(embedding_.data<float>(), D, tokens, n, residual);

  // r += mixer(norm(r)), with the add fused into the next norm: block l
  // adds block l-1's mixer output before normalising.
  for (int64_t l = 0; l < config_.n_layer; ++l) {
    const Mamba1Layer& L = layers_[static_cast<size_t>(l)];
    backend_->rmsnorm({l == 0 ? nullptr : ws.mixed.data<float>(), residual, L.norm.data<float>(),
                       ws.normed.data<float>(), n, D, config_.eps});
    mamba1_block(L, n, prefill, states[static_cast<size_t>(l)], ws);
  }
  // normed = norm_f(r + last mixer output)
  backend_->rmsnorm({ws.mixed.data<float>(), residual, norm_f_.data<float>(), ws.normed.data<float>(), n, D,
                     config_.eps});
}

void Model::head(const Workspace& ws, int64_t first, int64_t rows, float* logits) const {
  const int64_t D = config_.d_model, V = config_.vocab_size;
  backend_->matmul({ws.normed.data<float>() + first * D, lm_head_.data<float>(), nullptr, logits, rows, V, D, D, V});
}

}  // namespace mambart
