// Decoder: the recurrent state of `batch` sequences over one Model, and the
// generation primitives. A Mamba's whole context is its fixed-size state
// (conv and ssm per layer), so a decoder never grows with the text.
//
//   prefill(prompts)  runs each row's prompt (lengths may differ), leaving
//                     the last position's logits of every row;
//   step(tokens)      feeds one token per row, all rows in one pass;
//   sample(samplers)  picks the next token of every row from those logits.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "model/model.h"
#include "sampler.h"

namespace mambart {

class Decoder {
 public:
  Decoder(std::shared_ptr<const Model> model, int64_t batch);

  int64_t batch() const { return batch_; }
  const Model& model() const { return *model_; }

  // Zeros the states and forgets the history and logits.
  void reset();

  // Feeds prompts[b] to row b (every prompt non-empty, one per row), from the
  // current state. With all_logits (batch 1 only), returns the logits of
  // every position, (len, V), in backend memory; otherwise an empty Tensor.
  Tensor prefill(const std::vector<std::vector<int32_t>>& prompts, bool all_logits = false);

  // Feeds tokens[b] to row b; batch tokens.
  void step(const std::vector<int32_t>& tokens);

  // The next token of every row, from the current logits. Only ids below
  // vocab_limit are candidates (padding rows of the head are never sampled).
  std::vector<int32_t> sample(const std::vector<Sampler*>& samplers, int64_t vocab_limit);

  // Current logits, (batch, V), a host copy (made when asked for).
  const std::vector<float>& logits() const;
  // The same in backend memory (device memory on CUDA).
  const Tensor& backend_logits() const { return logits_dev_; }
  bool has_logits() const { return has_logits_; }
  // Tokens fed to each row so far (repetition penalty history).
  const std::vector<int32_t>& history(int64_t row) const;

  // The recurrent state, for saving: conv (n_layer, batch, conv_channels, K)
  // and ssm (n_layer, batch, ssm_state_size), host copies.
  std::vector<float> conv_state() const;
  std::vector<float> ssm_state() const;
  // Puts a saved state back. logits may be empty (no logits yet); sizes are
  // checked against this decoder.
  void restore(const std::vector<float>& conv, const std::vector<float>& ssm, const std::vector<float>& logits,
               const std::vector<std::vector<int32_t>>& history);

 private:
  std::vector<LayerState> row_states(int64_t row) const;

  std::shared_ptr<const Model> model_;
  int64_t batch_;
  Tensor conv_, ssm_;  // (n_layer, batch, conv_channels, K), (n_layer, batch, ssm_state_size)
  Workspace ws_;       // prefill chunks and steps share it
  // Logits live in backend memory, so that a device samples them in place;
  // logits() copies them to the host mirror on demand.
  Tensor logits_dev_;                          // (batch, V)
  mutable std::vector<float> logits_;          // host mirror
  mutable bool logits_on_host_ = false;
  std::unique_ptr<Backend::Recording> step_rec_;  // the decode step's graph (CUDA)
  std::vector<std::vector<int32_t>> history_;
  bool has_logits_ = false;
};

}  // namespace mambart
