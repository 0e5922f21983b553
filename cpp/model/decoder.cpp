#include "model/decoder.h"

#include <algorithm>
#include <string>

#include "check.h"

namespace mambart {

// Prefill runs in chunks of this many tokens: activations stay bounded
// whatever the prompt length, and the carried state makes it exact.
static constexpr int64_t kPrefillChunk = 256;

// Every buffer a decoder of `batch` rows allocates, sized before any is:
// a batch whose sizes overflow is an Error naming it, not a wrapped size.
static void check_batch_fits(const ModelConfig& c, int64_t batch) {
  MAMBART_CHECK(batch >= 1, "[decoder] batch must be >= 1, got ", batch);
  const std::vector<std::vector<int64_t>> shapes = {{c.n_layer, batch, c.conv_channels(), c.d_conv},
                                                    {c.n_layer, batch, c.ssm_state_size()},
                                                    {batch, c.vocab_size},
                                                    {batch, c.in_proj_rows()}};
  for (const auto& shape : shapes) {
    try {
      checked_nbytes(shape, DType::F32);
    } catch (const Error&) {
      MAMBART_CHECK(false, "[decoder] batch ", batch, " is too large for this model: a buffer of shape ",
                    shape_str(shape), " overflows int64");
    }
  }
}

Decoder::Decoder(std::shared_ptr<const Model> model, int64_t batch) : model_(std::move(model)), batch_(batch) {
  const ModelConfig& c = model_->config();
  check_batch_fits(c, batch);
  Backend& be = model_->backend();
  conv_ = be.zeros({c.n_layer, batch, c.conv_channels(), c.d_conv});
  ssm_ = be.zeros({c.n_layer, batch, c.ssm_state_size()});
  ws_ = model_->make_workspace(std::max(batch, kPrefillChunk));
  logits_dev_ = be.zeros({batch, c.vocab_size});
  history_.resize(static_cast<size_t>(batch));
}

void Decoder::reset() {
  const auto hold = use_.hold();
  const ModelConfig& c = model_->config();
  Backend& be = model_->backend();
  conv_ = be.zeros({c.n_layer, batch_, c.conv_channels(), c.d_conv});
  ssm_ = be.zeros({c.n_layer, batch_, c.ssm_state_size()});
  for (auto& h : history_) h.clear();
  has_logits_ = false;
  step_rec_.reset();  // recorded on the old states
}

// Layer states of one row (row >= 0), or of the whole batch (row < 0).
std::vector<LayerState> Decoder::row_states(int64_t row) const {
  const ModelConfig& c = model_->config();
  const int64_t conv_row = c.conv_channels() * c.d_conv, ssm_row = c.ssm_state_size();
  const int64_t r = std::max<int64_t>(row, 0);
  std::vector<LayerState> states(static_cast<size_t>(c.n_layer));
  for (int64_t l = 0; l < c.n_layer; ++l) {
    states[static_cast<size_t>(l)] = {conv_.data<float>() + (l * batch_ + r) * conv_row,
                                      ssm_.data<float>() + (l * batch_ + r) * ssm_row};
  }
  return states;
}

Tensor Decoder::prefill(const std::vector<std::vector<int32_t>>& prompts, bool all_logits,
                        const PrefillProgress& progress) {
  const auto hold = use_.hold();
  const ModelConfig& c = model_->config();
  const int64_t V = c.vocab_size;
  MAMBART_CHECK(static_cast<int64_t>(prompts.size()) == batch_, "[prefill] ", prompts.size(),
                " prompts for a decoder of batch ", batch_);
  MAMBART_CHECK(!all_logits || batch_ == 1, "[prefill] all_logits needs batch 1, decoder has batch ", batch_);
  int64_t total = 0;
  for (size_t b = 0; b < prompts.size(); ++b) {
    MAMBART_CHECK(!prompts[b].empty(), "[prefill] prompt ", b, " is empty");
    for (int32_t t : prompts[b])
      MAMBART_CHECK(t >= 0 && t < V, "[prefill] token id ", t, " in prompt ", b, " is out of range [0, ", V, ")");
    total += static_cast<int64_t>(prompts[b].size());
  }

  Tensor all;
  if (all_logits) all = model_->backend().zeros({static_cast<int64_t>(prompts[0].size()), V});
  int64_t done = 0;
  try {
    for (int64_t b = 0; b < batch_; ++b) {
      const std::vector<int32_t>& p = prompts[static_cast<size_t>(b)];
      std::vector<int32_t>& h = history_[static_cast<size_t>(b)];
      const std::vector<LayerState> states = row_states(b);
      const int64_t len = static_cast<int64_t>(p.size());
      for (int64_t t0 = 0; t0 < len; t0 += kPrefillChunk) {
        const int64_t n = std::min(kPrefillChunk, len - t0);
        model_->forward(p.data() + t0, n, /*prefill=*/true, states, ws_);
        if (all_logits) model_->head(ws_, 0, n, all.data<float>() + t0 * V);
        if (t0 + n == len) model_->head(ws_, n - 1, 1, logits_dev_.data<float>() + b * V);
        // The history grows with the state, chunk by chunk, so that an
        // interrupt leaves the two in agreement.
        h.insert(h.end(), p.begin() + t0, p.begin() + t0 + n);
        done += n;
        if (progress) progress(done, total);
      }
    }
  } catch (...) {
    has_logits_ = false;  // rows not reached keep old logits, the current one has none
    throw;
  }
  has_logits_ = true;
  return all;
}

void Decoder::step(const std::vector<int32_t>& tokens) {
  const auto hold = use_.hold();
  MAMBART_CHECK(static_cast<int64_t>(tokens.size()) == batch_, "[step] ", tokens.size(),
                " tokens for a decoder of batch ", batch_);
  // One recorded graph per decoder (so per batch size) on CUDA: the same
  // ops on the same states, workspace and logits every step.
  model_->backend().run_step(step_rec_, tokens.data(), batch_, [&] {
    model_->forward(tokens.data(), batch_, /*prefill=*/false, row_states(-1), ws_);
    model_->head(ws_, 0, batch_, logits_dev_.data<float>());
  });
  for (int64_t b = 0; b < batch_; ++b) history_[static_cast<size_t>(b)].push_back(tokens[static_cast<size_t>(b)]);
  has_logits_ = true;
}

std::vector<int32_t> Decoder::sample(const std::vector<Sampler*>& samplers, int64_t vocab_limit) {
  const auto hold = use_.hold();
  const int64_t V = model_->config().vocab_size;
  MAMBART_CHECK(has_logits_, "[sample] no logits yet: call prefill first");
  MAMBART_CHECK(static_cast<int64_t>(samplers.size()) == batch_, "[sample] ", samplers.size(),
                " samplers for a decoder of batch ", batch_);
  MAMBART_CHECK(vocab_limit >= 1 && vocab_limit <= V, "[sample] vocab_limit ", vocab_limit,
                " is outside [1, ", V, "]");
  for (int64_t b = 0; b < batch_; ++b)
    MAMBART_CHECK(samplers[static_cast<size_t>(b)], "[sample] sampler ", b, " is None");
  std::vector<int32_t> out(static_cast<size_t>(batch_));
  // A failed call changes nothing: rows sampled before the one that threw
  // (bad logits) get their random streams back.
  std::vector<std::string> rng(samplers.size());
  for (size_t b = 0; b < samplers.size(); ++b) rng[b] = samplers[b]->rng_state();
  try {
    model_->backend().sample(logits_dev_.data<float>(), batch_, V, vocab_limit, samplers, history_, out.data());
  } catch (...) {
    for (size_t b = 0; b < samplers.size(); ++b) samplers[b]->set_rng_state(rng[b]);
    throw;
  }
  return out;
}


std::vector<float> Decoder::logits() const {
  const auto hold = use_.hold();
  std::vector<float> out(static_cast<size_t>(logits_dev_.numel()));
  model_->backend().to_host(logits_dev_.data<float>(), out.data(), logits_dev_.numel());
  return out;
}

bool Decoder::has_logits() const {
  const auto hold = use_.hold();
  return has_logits_;
}

std::vector<int32_t> Decoder::history(int64_t row) const {
  const auto hold = use_.hold();
  MAMBART_CHECK(row >= 0 && row < batch_, "[history] row ", row, " is outside [0, ", batch_, ")");
  return history_[static_cast<size_t>(row)];
}

std::vector<float> Decoder::conv_state() const {
  const auto hold = use_.hold();
  std::vector<float> out(static_cast<size_t>(conv_.numel()));
  model_->backend().to_host(conv_.data<float>(), out.data(), conv_.numel());
  return out;
}

std::vector<float> Decoder::ssm_state() const {
  const auto hold = use_.hold();
  std::vector<float> out(static_cast<size_t>(ssm_.numel()));
  model_->backend().to_host(ssm_.data<float>(), out.data(), ssm_.numel());
  return out;
}

void Decoder::restore(const std::vector<float>& conv, const std::vector<float>& ssm, const std::vector<float>& logits,
                      const std::vector<std::vector<int32_t>>& history) {
  const auto hold = use_.hold();
  const int64_t V = model_->config().vocab_size;
  MAMBART_CHECK(static_cast<int64_t>(conv.size()) == conv_.numel(), "[restore] conv state has ", conv.size(),
                " values, expected ", conv_.numel(), " ", shape_str(conv_.shape()));
  MAMBART_CHECK(static_cast<int64_t>(ssm.size()) == ssm_.numel(), "[restore] ssm state has ", ssm.size(),
                " values, expected ", ssm_.numel(), " ", shape_str(ssm_.shape()));
  MAMBART_CHECK(logits.empty() || static_cast<int64_t>(logits.size()) == batch_ * V, "[restore] logits have ",
                logits.size(), " values, expected ", batch_ * V);
  MAMBART_CHECK(static_cast<int64_t>(history.size()) == batch_, "[restore] ", history.size(),
                " histories for a decoder of batch ", batch_);
  for (const auto& h : history)
    for (int32_t t : h) MAMBART_CHECK(t >= 0 && t < V, "[restore] token id ", t, " is out of range [0, ", V, ")");
  Backend& be = model_->backend();
  be.from_host(conv.data(), conv_.data<float>(), conv_.numel());
  be.from_host(ssm.data(), ssm_.data<float>(), ssm_.numel());
  has_logits_ = !logits.empty();
  if (has_logits_) be.from_host(logits.data(), logits_dev_.data<float>(), batch_ * V);
  history_ = history;
}

}  // namespace mambart
