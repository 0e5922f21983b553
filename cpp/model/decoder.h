// Decoder: the recurrent state of `batch` sequences over one Model, and the
// generation primitives. A Mamba's whole context is its fixed-size state
// (conv and ssm per layer), so a pure Mamba decoder never grows with the
// text; a hybrid's KV caches do, in blocks of positions.
//
//   prefill(prompts)  runs each row's prompt (lengths may differ), leaving
//                     the last position's logits of every row;
//   step(tokens)      feeds one token per row, all rows in one pass;
//   sample(samplers)  picks the next token of every row from those logits.
//
// One thread at a time: every method holds the decoder (ExclusiveUse), and
// a call from a second thread meanwhile throws InUse. A Model is shared
// freely; give each thread its own Decoder.
//
// Rows for continuous batching: a server keeps its live sequences in rows
// [0, n) and steps only those (step and sample take n <= batch entries);
// a finished row is filled by copying the last live row into it
// (copy_row), so the live rows stay one block. prefill_row, reset_row,
// export_row and import_row work on one row without touching the others. A
// row's result never depends on which other rows run beside it or on n:
// every kernel of a step computes each row with the same arithmetic
// whatever the batch (the decode matmul keeps one accumulation order per
// row for M <= 32; tests/test_rows.py holds it to that exactly).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "exclusive_use.h"
#include "model/model.h"
#include "sampler.h"

namespace mambart {

// Called by prefill after each chunk with the tokens fed so far and in all
// (every row), and between the residual blocks of a chunk with `done`
// unchanged (a big model's chunk takes seconds). It may throw to stop the
// prefill (an interrupt): the state and each row's history then cover
// exactly the tokens of the chunks finished, and there are no logits until
// the next prefill or step.
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

  // Feeds tokens[b] to row b for the first n = tokens.size() rows (1 <= n <=
  // batch); the other rows keep their state and logits.
  void step(const std::vector<int32_t>& tokens);

  // The next token of rows [0, samplers.size()), from the current logits.
  // Only ids below vocab_limit are candidates (padding rows of the head are
  // never sampled).
  std::vector<int32_t> sample(const std::vector<Sampler*>& samplers, int64_t vocab_limit);

  // ---- one row at a time (continuous batching) ----
  // Feeds tokens to one row from its current state; leaves its last logits.
  void prefill_row(int64_t row, const std::vector<int32_t>& tokens, const PrefillProgress& progress = nullptr);
  // Zeros one row's state, forgets its history and logits.
  void reset_row(int64_t row);
  // Copies row `from` (state, logits, history) over row `to`.
  void copy_row(int64_t from, int64_t to);
  // One row's whole sequence state as one opaque blob (conv and ssm states
  // of every layer, an attention hybrid's KV caches, logits, history; tagged
  // sections, so that other kinds of state travel in the same blob), and back. import_row checks that the
  // blob was made by a decoder of the same model shape.
  std::string export_row(int64_t row) const;
  void import_row(int64_t row, const std::string& blob);
  // One row's logits, (V), a host copy; whether that row has any.
  std::vector<float> row_logits(int64_t row) const;
  bool row_has_logits(int64_t row) const;

  // Current logits, (batch, V), a host copy.
  std::vector<float> logits() const;
  // The same in backend memory (device memory on CUDA).
  const Tensor& backend_logits() const { return logits_dev_; }
  bool has_logits() const;
  // Tokens fed to a row so far (repetition penalty history), a copy.
  std::vector<int32_t> history(int64_t row) const;

  // The recurrent state, for saving: conv (mamba_layers, batch, conv_channels, K)
  // and ssm (mamba_layers, batch, ssm_state_size), host copies; the Mamba
  // layers only, in layer order (an attention layer's state is its KV cache).
  std::vector<float> conv_state() const;
  std::vector<float> ssm_state() const;
  // An attention hybrid's KV caches, for saving: per attention layer, per
  // row, the keys then the values of its context, (context(row), kv_width)
  // each; empty for a pure Mamba model. A host copy.
  std::vector<float> kv_state() const;
  // Tokens in each row's context (its KV caches hold that many positions).
  std::vector<int64_t> context() const;
  // Puts a saved state back. logits may be empty (no logits yet); logit_rows,
  // when not empty, says which rows of logits are real (one flag per row;
  // empty: all of them); kv is kv_state()'s layout for contexts as long as
  // the histories; sizes are checked against this decoder.
  void restore(const std::vector<float>& conv, const std::vector<float>& ssm, const std::vector<float>& logits,
               const std::vector<std::vector<int32_t>>& history, const std::vector<float>& kv = {},
               const std::vector<bool>& logit_rows = {});

 private:
  // One attention layer's cache of one row: capacity grows in whole blocks
  // of kKvBlock positions, the first ctx_[row] of them in use.
  struct KvCache {
    Tensor k, v;  // (capacity, kv_width)
  };
  // Layer states of one row, or of every row (row < 0); the KV caches must
  // already have room for the tokens about to be fed.
  std::vector<LayerState> row_states(int64_t row) const;
  // Makes room in row's caches for `extra` more positions.
  void reserve_kv(int64_t row, int64_t extra);
  KvCache& kv(size_t attn_layer, int64_t row) { return kv_[attn_layer * static_cast<size_t>(batch_) + static_cast<size_t>(row)]; }
  const KvCache& kv(size_t attn_layer, int64_t row) const {
    return kv_[attn_layer * static_cast<size_t>(batch_) + static_cast<size_t>(row)];
  }
  void clear_kv(int64_t row);  // row < 0: every row
  // Row's KV caches as kv_state() lays them out (appended to out), and back.
  void kv_to_host(int64_t row, std::vector<float>& out) const;
  void kv_from_host(int64_t row, const float* src, int64_t ctx);
  void check_row(const char* what, int64_t row) const;
  void check_not_feeding(const char* what) const;
  void prefill_one(int64_t row, const std::vector<int32_t>& p, float* all, int64_t& done, int64_t total,
                   const PrefillProgress& progress);
  void update_has_logits();
  void keep_row_states(const std::vector<LayerState>& states, bool save);

  ExclusiveUse use_{"[decoder] this Decoder is in use by another thread; give each thread its own Decoder "
                    "(a Model can be shared)"};
  std::shared_ptr<const Model> model_;
  int64_t batch_;
  // (mamba_layers, batch, conv_channels, K), (mamba_layers, batch, ssm_state_size): no
  // conv or SSM state for attention layers.
  Tensor conv_, ssm_;
  Tensor saved_;  // one row's conv and SSM states, kept while a chunk runs (prefill_one)
  std::vector<int64_t> mamba_index_;  // per layer: its index into conv_ / ssm_, -1 for attention
  Workspace ws_;       // prefill chunks and steps share it
  // Logits live in backend memory, so that a device samples them in place.
  Tensor logits_dev_;                          // (batch, V)
  // The decode step's graph per number of rows stepped (CUDA), index n - 1.
  std::vector<std::unique_ptr<Backend::Recording>> step_rec_;
  std::vector<std::vector<int32_t>> history_;
  std::vector<char> row_logits_;  // per row: has logits
  bool has_logits_ = false;       // every row has logits
  // A prefill is feeding a row: Python may run inside it (its progress
  // callback, a signal handler between two layers) on the thread that holds
  // the decoder, and must not change the states, caches or workspace in use.
  bool feeding_ = false;
  // Attention hybrids: the attention layers' indices, their caches
  // (n_attention x batch) and each row's context length.
  std::vector<int64_t> attn_layers_;
  std::vector<KvCache> kv_;
  std::vector<int64_t> ctx_;
  mutable std::vector<KvRows> kv_rows_;  // per attention layer, what row_states hands the model
};

}  // namespace mambart
