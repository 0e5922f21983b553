// Decoder: the recurrent state of `batch` sequences over one Model, and the
// generation primitives. A Mamba's whole context is its fixed-size state
// (conv and ssm per layer), so a decoder never grows with the text.
//
//   prefill(prompts)  runs each row's prompt (lengths may differ), leaving
//                     the last position's logits of every row;
//   step(tokens)      feeds one token per row, all rows in one pass;
//   sample(samplers)  picks the next token of every row from those logits.
//
// One thread at a time: every method holds the decoder (ExclusiveUse), and
// a call from a second thread meanwhile throws InUse. A Model is shared
// freely; give each thread its own Decoder.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "exclusive_use.h"
#include "model/model.h"
#include "sampler.h"

namespace mambart {

// Called by prefill after each chunk with the tokens fed so far and in all
// (every row). It may throw to stop the prefill (an interrupt): the state
// and each row's history then cover exactly the tokens fed, and there are
// no logits until the next prefill or step.
using PrefillProgress = std::function<void(int64_t done, int64_t total)>;

class Decoder {
 public:
  // Throws Error when the states of `batch` rows would not fit in memory
  // addresses (the sizes are checked before anything is allocated).
  Decoder(std::shared_ptr<const Model> model, int64_t batch);

  int64_t batch() const { return batch_; }
  const Model& model() const { return *model_; }

  // Zeros the states and forgets the history and logits.
  void reset();

  // Feeds prompts[b] to row b (every prompt non-empty, one per row), from the
  // current state. With all_logits (batch 1 only), returns the logits of
  // every position, (len, V), in backend memory; otherwise an empty Tensor.
  Tensor prefill(const std::vector<std::vector<int32_t>>& prompts, bool all_logits = false,
                 const PrefillProgress& progress = nullptr);

  // Feeds tokens[b] to row b; batch tokens.
  void step(const std::vector<int32_t>& tokens);

  // The next token of every row, from the current logits. Only ids below
  // vocab_limit are candidates (padding rows of the head are never sampled).
  std::vector<int32_t> sample(const std::vector<Sampler*>& samplers, int64_t vocab_limit);

  // Current logits, (batch, V), a host copy.
  std::vector<float> logits() const;
  // The same in backend memory (device memory on CUDA).
  const Tensor& backend_logits() const { return logits_dev_; }
  bool has_logits() const;
  // Tokens fed to a row so far (repetition penalty history), a copy.
  std::vector<int32_t> history(int64_t row) const;

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

  ExclusiveUse use_{"[decoder] this Decoder is in use by another thread; give each thread its own Decoder "
                    "(a Model can be shared)"};
  std::shared_ptr<const Model> model_;
  int64_t batch_;
  Tensor conv_, ssm_;  // (n_layer, batch, conv_channels, K), (n_layer, batch, ssm_state_size)
  Workspace ws_;       // prefill chunks and steps share it
  // Logits live in backend memory, so that a device samples them in place.
  Tensor logits_dev_;                          // (batch, V)
  std::unique_ptr<Backend::Recording> step_rec_;  // the decode step's graph (CUDA)
  std::vector<std::vector<int32_t>> history_;
  bool has_logits_ = false;
};

}  // namespace mambart
