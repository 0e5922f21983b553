#include "model/decoder.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "check.h"

namespace mambart {

// Prefill runs in chunks of this many tokens: activations stay bounded
// whatever the prompt length, and the carried state makes it exact.
static constexpr int64_t kPrefillChunk = 256;
// KV caches grow by this many positions at a time.
static constexpr int64_t kKvBlock = 256;

// Every buffer a decoder of `batch` rows allocates, sized before any is:
// a batch whose sizes overflow is an Error naming it, not a wrapped size.
static void check_batch_fits(const ModelConfig& c, int64_t batch) {
  MAMBART_CHECK(batch >= 1, "[decoder] batch must be >= 1, got ", batch);
  const std::vector<std::vector<int64_t>> shapes = {{c.mamba_layers(), batch, c.conv_channels(), c.d_conv},
                                                    {c.mamba_layers(), batch, c.ssm_state_size()},
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
  MAMBART_CHECK(model_, "[decoder] model must be a Model, got None");  // pybind11 passes None as a null pointer
  const ModelConfig& c = model_->config();
  check_batch_fits(c, batch);
  Backend& be = model_->backend();
  conv_ = be.zeros({c.mamba_layers(), batch, c.conv_channels(), c.d_conv});
  ssm_ = be.zeros({c.mamba_layers(), batch, c.ssm_state_size()});
  ws_ = model_->make_workspace(std::max(batch, kPrefillChunk));
  logits_dev_ = be.zeros({batch, c.vocab_size});
  history_.resize(static_cast<size_t>(batch));
  row_logits_.assign(static_cast<size_t>(batch), 0);
  step_rec_.resize(static_cast<size_t>(batch));
  for (int64_t l = 0, m = 0; l < c.n_layer; ++l) {
    if (c.is_attention(l)) attn_layers_.push_back(l);
    mamba_index_.push_back(c.has_mamba(l) ? m++ : -1);
  }
  kv_rows_.resize(attn_layers_.size());
  kv_.resize(attn_layers_.size() * static_cast<size_t>(batch));
  ctx_.assign(static_cast<size_t>(batch), 0);
}

void Decoder::clear_kv(int64_t row) {
  for (int64_t b = row < 0 ? 0 : row; b < (row < 0 ? batch_ : row + 1); ++b) {
    for (size_t a = 0; a < attn_layers_.size(); ++a) kv(a, b) = KvCache{};
    ctx_[static_cast<size_t>(b)] = 0;
  }
}

void Decoder::reserve_kv(int64_t row, int64_t extra) {
  const int64_t width = model_->config().kv_width(), used = ctx_[static_cast<size_t>(row)];
  Backend& be = model_->backend();
  for (size_t a = 0; a < attn_layers_.size(); ++a) {
    KvCache& cache = kv(a, row);
    if (cache.k.defined() && cache.k.dim(0) >= used + extra) continue;
    const int64_t capacity = (used + extra + kKvBlock - 1) / kKvBlock * kKvBlock;
    KvCache grown{be.zeros({capacity, width}), be.zeros({capacity, width})};
    if (used) {
      be.copy(cache.k.data<float>(), grown.k.data<float>(), used * width);
      be.copy(cache.v.data<float>(), grown.v.data<float>(), used * width);
    }
    cache = std::move(grown);
  }
}

void Decoder::kv_to_host(int64_t row, std::vector<float>& out) const {
  const int64_t n = ctx_[static_cast<size_t>(row)] * model_->config().kv_width();
  for (size_t a = 0; a < attn_layers_.size(); ++a) {
    for (const Tensor* t : {&kv(a, row).k, &kv(a, row).v}) {
      out.resize(out.size() + static_cast<size_t>(n));
      if (n) model_->backend().to_host(t->data<float>(), out.data() + out.size() - n, n);
    }
  }
}

void Decoder::kv_from_host(int64_t row, const float* src, int64_t ctx) {
  const int64_t n = ctx * model_->config().kv_width();
  clear_kv(row);
  reserve_kv(row, ctx);
  for (size_t a = 0; a < attn_layers_.size(); ++a) {
    for (Tensor* t : {&kv(a, row).k, &kv(a, row).v}) {
      if (n) model_->backend().from_host(src, t->data<float>(), n);
      src += n;
    }
  }
  ctx_[static_cast<size_t>(row)] = ctx;
}

void Decoder::reset() {
  const auto hold = use_.hold();
  check_not_feeding("reset");
  const ModelConfig& c = model_->config();
  Backend& be = model_->backend();
  conv_ = be.zeros({c.mamba_layers(), batch_, c.conv_channels(), c.d_conv});
  ssm_ = be.zeros({c.mamba_layers(), batch_, c.ssm_state_size()});
  for (auto& h : history_) h.clear();
  clear_kv(-1);
  row_logits_.assign(static_cast<size_t>(batch_), 0);
  has_logits_ = false;
  for (auto& rec : step_rec_) rec.reset();  // recorded on the old states
}

void Decoder::check_row(const char* what, int64_t row) const {
  MAMBART_CHECK(row >= 0 && row < batch_, "[", what, "] row ", row, " is outside [0, ", batch_, ")");
}

void Decoder::check_not_feeding(const char* what) const {
  if (feeding_)
    throw InUse(detail::concat("[", what, "] this Decoder is in the middle of a prefill (called from its progress "
                               "callback or a signal handler): it cannot be changed until the prefill returns"));
}

void Decoder::update_has_logits() {
  has_logits_ = std::all_of(row_logits_.begin(), row_logits_.end(), [](char c) { return c != 0; });
}

std::vector<LayerState> Decoder::row_states(int64_t row) const {
  const ModelConfig& c = model_->config();
  const int64_t conv_row = c.conv_channels() * c.d_conv, ssm_row = c.ssm_state_size();
  const int64_t r = std::max<int64_t>(row, 0);
  std::vector<LayerState> states(static_cast<size_t>(c.n_layer));
  for (int64_t l = 0; l < c.n_layer; ++l) {
    const int64_t m = mamba_index_[static_cast<size_t>(l)];
    if (m >= 0)
      states[static_cast<size_t>(l)] = {conv_.data<float>() + (m * batch_ + r) * conv_row,
                                        ssm_.data<float>() + (m * batch_ + r) * ssm_row};
  }
  const int64_t first = row < 0 ? 0 : row, last = row < 0 ? batch_ : row + 1;
  for (size_t a = 0; a < attn_layers_.size(); ++a) {
    KvRows& rows = kv_rows_[a];
    rows.k.clear(), rows.v.clear(), rows.pos.clear();
    for (int64_t b = first; b < last; ++b) {
      rows.k.push_back(kv(a, b).k.data<float>());
      rows.v.push_back(kv(a, b).v.data<float>());
      rows.pos.push_back(ctx_[static_cast<size_t>(b)]);
    }
    states[static_cast<size_t>(attn_layers_[a])].kv = &rows;
  }
  return states;
}

Tensor Decoder::prefill(const std::vector<std::vector<int32_t>>& prompts, bool all_logits,
                        const PrefillProgress& progress) {
  const auto hold = use_.hold();
  check_not_feeding("prefill");
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
  for (int64_t b = 0; b < batch_; ++b)
    prefill_one(b, prompts[static_cast<size_t>(b)], all_logits ? all.data<float>() : nullptr, done, total, progress);
  return all;
}

// Feeds p to one row in chunks; with `all`, the logits of every position too.
void Decoder::prefill_one(int64_t b, const std::vector<int32_t>& p, float* all, int64_t& done, int64_t total,
                          const PrefillProgress& progress) {
  const int64_t V = model_->config().vocab_size;
  std::vector<int32_t>& h = history_[static_cast<size_t>(b)];
  const int64_t len = static_cast<int64_t>(p.size());
  // The chunks below hold pointers into this row's states and KV caches
  // (sized once for the whole prompt), and the callbacks run Python.
  feeding_ = true;
  struct Fed {
    bool& flag;
    ~Fed() { flag = false; }
  } fed{feeding_};
  row_logits_[static_cast<size_t>(b)] = 0;  // until the last chunk: an interrupt leaves none
  has_logits_ = false;
  // The KV cache grows for the whole prompt at once (one growing chunk by
  // chunk was copied at every block); it moves, so the states come after.
  reserve_kv(b, len);
  for (int64_t t0 = 0; t0 < len; t0 += kPrefillChunk) {
    const int64_t n = std::min(kPrefillChunk, len - t0);
    const std::vector<LayerState> states = row_states(b);
    const bool last = t0 + n == len;
    const int64_t keep = all ? n : last ? 1 : 0;  // the rows whose logits are read
    if (!progress) {
      model_->forward(p.data() + t0, n, keep, /*prefill=*/true, states, ws_);
    } else {
      // A stop between blocks leaves the Mamba states of the blocks before
      // it advanced: they go back to the chunk's start (the KV entries past
      // the context are never read, and the next tokens overwrite them).
      keep_row_states(states, /*save=*/true);
      try {
        model_->forward(p.data() + t0, n, keep, /*prefill=*/true, states, ws_, [&] { progress(done, total); });
      } catch (...) {
        keep_row_states(states, /*save=*/false);
        throw;
      }
    }
    ctx_[static_cast<size_t>(b)] += n;
    if (all) model_->head(ws_, 0, n, all + t0 * V);
    if (last) {
      model_->head(ws_, keep - 1, 1, logits_dev_.data<float>() + b * V);
      row_logits_[static_cast<size_t>(b)] = 1;
    }
    // The history grows with the state, chunk by chunk, so that an
    // interrupt leaves the two in agreement.
    h.insert(h.end(), p.begin() + t0, p.begin() + t0 + n);
    done += n;
    if (progress) progress(done, total);
  }
  update_has_logits();
}

// One row's conv and SSM states, layer by layer, into saved_ (save) or back.
void Decoder::keep_row_states(const std::vector<LayerState>& states, bool save) {
  const ModelConfig& c = model_->config();
  const int64_t conv_row = c.conv_channels() * c.d_conv, ssm_row = c.ssm_state_size();
  Backend& be = model_->backend();
  if (!saved_.defined()) saved_ = be.zeros({c.mamba_layers(), conv_row + ssm_row});
  float* kept = saved_.data<float>();
  for (const LayerState& s : states) {
    if (!s.conv) continue;
    if (save) {
      be.copy(s.conv, kept, conv_row);
      be.copy(s.ssm, kept + conv_row, ssm_row);
    } else {
      be.copy(kept, s.conv, conv_row);
      be.copy(kept + conv_row, s.ssm, ssm_row);
    }
    kept += conv_row + ssm_row;
  }
}

void Decoder::prefill_row(int64_t row, const std::vector<int32_t>& tokens, const PrefillProgress& progress) {
  const auto hold = use_.hold();
  check_not_feeding("prefill_row");
  const int64_t V = model_->config().vocab_size;
  check_row("prefill_row", row);
  MAMBART_CHECK(!tokens.empty(), "[prefill_row] tokens are empty");
  for (int32_t t : tokens)
    MAMBART_CHECK(t >= 0 && t < V, "[prefill_row] token id ", t, " is out of range [0, ", V, ")");
  int64_t done = 0;
  prefill_one(row, tokens, nullptr, done, static_cast<int64_t>(tokens.size()), progress);
}

void Decoder::step(const std::vector<int32_t>& tokens) {
  const auto hold = use_.hold();
  check_not_feeding("step");
  const int64_t n = static_cast<int64_t>(tokens.size());
  MAMBART_CHECK(n >= 1 && n <= batch_, "[step] ", n, " tokens for a decoder of batch ", batch_,
                " (expected 1 to ", batch_, ")");
  const int64_t V = model_->config().vocab_size;
  for (int64_t b = 0; b < n; ++b)
    MAMBART_CHECK(tokens[b] >= 0 && tokens[b] < V, "[step] token id ", tokens[b], " of row ", b,
                  " is out of range [0, ", V, ")");
  // Rows [0, n) are contiguous in every layer's state (layout (n_layer,
  // batch, ...)), so the first n rows step as a batch of n. One recorded
  // graph per n on CUDA: the same ops on the same states, workspace and
  // logits every step of that size.
  for (int64_t b = 0; b < n; ++b) reserve_kv(b, 1);
  model_->backend().run_step(step_rec_[static_cast<size_t>(n - 1)], tokens.data(), n, [&] {
    model_->forward(tokens.data(), n, n, /*prefill=*/false, row_states(-1), ws_);
    model_->head(ws_, 0, n, logits_dev_.data<float>());
  });
  for (int64_t b = 0; b < n; ++b) {
    history_[static_cast<size_t>(b)].push_back(tokens[static_cast<size_t>(b)]);
    ctx_[static_cast<size_t>(b)] += 1;
    row_logits_[static_cast<size_t>(b)] = 1;
  }
  update_has_logits();
}

std::vector<int32_t> Decoder::sample(const std::vector<Sampler*>& samplers, int64_t vocab_limit) {
  const auto hold = use_.hold();
  const int64_t V = model_->config().vocab_size;
  const int64_t n = static_cast<int64_t>(samplers.size());
  MAMBART_CHECK(n >= 1 && n <= batch_, "[sample] ", n, " samplers for a decoder of batch ", batch_,
                " (expected 1 to ", batch_, ")");
  MAMBART_CHECK(vocab_limit >= 1 && vocab_limit <= V, "[sample] vocab_limit ", vocab_limit,
                " is outside [1, ", V, "]");
  for (int64_t b = 0; b < n; ++b) {
    MAMBART_CHECK(row_logits_[static_cast<size_t>(b)], "[sample] row ", b, " has no logits yet: call prefill first");
    MAMBART_CHECK(samplers[static_cast<size_t>(b)], "[sample] sampler ", b, " is None");
  }
  std::vector<int32_t> out(static_cast<size_t>(n));
  // A failed call changes nothing: rows sampled before the one that threw
  // (bad logits) get their random streams and token counts back.
  std::vector<std::string> rng(samplers.size());
  std::vector<std::unordered_map<int32_t, int32_t>> counts(samplers.size());
  for (size_t b = 0; b < samplers.size(); ++b) {
    rng[b] = samplers[b]->rng_state();
    if (samplers[b]->counts_tokens()) counts[b] = samplers[b]->counts();
  }
  try {
    model_->backend().sample(logits_dev_.data<float>(), n, V, vocab_limit, samplers, history_, out.data());
  } catch (...) {
    for (size_t b = 0; b < samplers.size(); ++b) {
      samplers[b]->set_rng_state(rng[b]);
      if (samplers[b]->counts_tokens()) samplers[b]->set_counts(counts[b]);
    }
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
  check_row("history", row);
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

std::vector<int64_t> Decoder::context() const {
  const auto hold = use_.hold();
  return ctx_;
}

std::vector<float> Decoder::kv_state() const {
  const auto hold = use_.hold();
  std::vector<float> out;
  for (int64_t b = 0; b < batch_; ++b) kv_to_host(b, out);
  return out;
}

void Decoder::restore(const std::vector<float>& conv, const std::vector<float>& ssm, const std::vector<float>& logits,
                      const std::vector<std::vector<int32_t>>& history, const std::vector<float>& kv_saved,
                      const std::vector<bool>& logit_rows) {
  const auto hold = use_.hold();
  check_not_feeding("restore");
  const int64_t V = model_->config().vocab_size;
  MAMBART_CHECK(static_cast<int64_t>(conv.size()) == conv_.numel(), "[restore] conv state has ", conv.size(),
                " values, expected ", conv_.numel(), " ", shape_str(conv_.shape()));
  MAMBART_CHECK(static_cast<int64_t>(ssm.size()) == ssm_.numel(), "[restore] ssm state has ", ssm.size(),
                " values, expected ", ssm_.numel(), " ", shape_str(ssm_.shape()));
  MAMBART_CHECK(logits.empty() || static_cast<int64_t>(logits.size()) == batch_ * V, "[restore] logits have ",
                logits.size(), " values, expected ", batch_ * V);
  MAMBART_CHECK(logit_rows.empty() || (!logits.empty() && static_cast<int64_t>(logit_rows.size()) == batch_),
                "[restore] ", logit_rows.size(), " logit row flags for ", logits.empty() ? "no logits" : "logits",
                " of batch ", batch_);
  MAMBART_CHECK(static_cast<int64_t>(history.size()) == batch_, "[restore] ", history.size(),
                " histories for a decoder of batch ", batch_);
  for (const auto& h : history)
    for (int32_t t : h) MAMBART_CHECK(t >= 0 && t < V, "[restore] token id ", t, " is out of range [0, ", V, ")");
  const int64_t per_token = 2 * static_cast<int64_t>(attn_layers_.size()) * model_->config().kv_width();
  int64_t kv_values = 0;
  for (const auto& h : history) kv_values += per_token * static_cast<int64_t>(h.size());
  MAMBART_CHECK(static_cast<int64_t>(kv_saved.size()) == kv_values, "[restore] KV caches have ", kv_saved.size(),
                " values, expected ", kv_values, " for contexts as long as the histories");
  Backend& be = model_->backend();
  const float* src = kv_saved.data();
  for (int64_t b = 0; b < batch_; ++b) {
    const int64_t ctx = static_cast<int64_t>(history[static_cast<size_t>(b)].size());
    kv_from_host(b, src, ctx);
    src += per_token * ctx;
  }
  be.from_host(conv.data(), conv_.data<float>(), conv_.numel());
  be.from_host(ssm.data(), ssm_.data<float>(), ssm_.numel());
  if (!logits.empty()) be.from_host(logits.data(), logits_dev_.data<float>(), batch_ * V);
  for (int64_t b = 0; b < batch_; ++b)
    row_logits_[static_cast<size_t>(b)] = !logits.empty() && (logit_rows.empty() || logit_rows[static_cast<size_t>(b)]);
  update_has_logits();
  history_ = history;
}

// ---- one row ----------------------------------------------------------------

void Decoder::reset_row(int64_t row) {
  const auto hold = use_.hold();
  check_not_feeding("reset_row");
  check_row("reset_row", row);
  const ModelConfig& c = model_->config();
  const std::vector<float> zeros(static_cast<size_t>(std::max(c.conv_channels() * c.d_conv, c.ssm_state_size())), 0.0f);
  Backend& be = model_->backend();
  for (const LayerState& s : row_states(row)) {
    if (!s.conv) continue;  // an attention layer
    be.from_host(zeros.data(), s.conv, c.conv_channels() * c.d_conv);
    be.from_host(zeros.data(), s.ssm, c.ssm_state_size());
  }
  history_[static_cast<size_t>(row)].clear();
  clear_kv(row);
  row_logits_[static_cast<size_t>(row)] = 0;
  has_logits_ = false;
}

// Through host memory (the backend has no device-to-device copy): a row is
// a few MB at most, and rows move once per finished sequence, not per step.
void Decoder::copy_row(int64_t from, int64_t to) {
  const auto hold = use_.hold();
  check_not_feeding("copy_row");
  check_row("copy_row", from);
  check_row("copy_row", to);
  if (from == to) return;
  import_row(to, export_row(from));
}

namespace {

// The row blob: a magic, then tagged sections (4-byte tag, uint64 byte
// count, payload), in host byte order: it lives in memory (the prefix
// cache) and never crosses machines. A state kind added later is one more
// section; a reader refuses a section it does not know rather than drop it.
// Sections: "shap" int64 (Mamba layers, conv floats, ssm floats, vocab) per
// layer; "conv" and "ssm " the Mamba layers' states in layer order (none for
// attention layers); "logt" the logits, if any; "hist" int32 tokens; "kv  "
// (attention hybrids) per attention layer the keys then the values of the
// context, (len(hist), kv_width) each.
constexpr char kRowMagic[8] = {'M', 'B', 'R', 'T', 'R', 'O', 'W', '1'};

void put_section(std::string& out, const char (&tag)[5], const void* data, size_t bytes) {
  const uint64_t n = bytes;
  out.append(tag, 4);
  out.append(reinterpret_cast<const char*>(&n), sizeof n);
  out.append(static_cast<const char*>(data), bytes);
}

}  // namespace

std::string Decoder::export_row(int64_t row) const {
  const auto hold = use_.hold();
  check_row("export_row", row);
  const ModelConfig& c = model_->config();
  const int64_t conv_row = c.conv_channels() * c.d_conv, ssm_row = c.ssm_state_size(), V = c.vocab_size;
  Backend& be = model_->backend();
  const int64_t n_mamba = c.mamba_layers(), shape[4] = {n_mamba, conv_row, ssm_row, V};
  std::vector<float> conv(static_cast<size_t>(n_mamba * conv_row)), ssm(static_cast<size_t>(n_mamba * ssm_row));
  for (int64_t m = 0; m < n_mamba; ++m) {
    be.to_host(conv_.data<float>() + (m * batch_ + row) * conv_row, conv.data() + m * conv_row, conv_row);
    be.to_host(ssm_.data<float>() + (m * batch_ + row) * ssm_row, ssm.data() + m * ssm_row, ssm_row);
  }
  const std::vector<int32_t>& h = history_[static_cast<size_t>(row)];
  std::string out(kRowMagic, sizeof kRowMagic);
  put_section(out, "shap", shape, sizeof shape);
  put_section(out, "conv", conv.data(), conv.size() * sizeof(float));
  put_section(out, "ssm ", ssm.data(), ssm.size() * sizeof(float));
  if (row_logits_[static_cast<size_t>(row)]) {
    const std::vector<float> lg = row_logits(row);
    put_section(out, "logt", lg.data(), lg.size() * sizeof(float));
  }
  put_section(out, "hist", h.data(), h.size() * sizeof(int32_t));
  if (!attn_layers_.empty()) {
    std::vector<float> kv_host;
    kv_to_host(row, kv_host);
    put_section(out, "kv  ", kv_host.data(), kv_host.size() * sizeof(float));
  }
  return out;
}

void Decoder::import_row(int64_t row, const std::string& blob) {
  const auto hold = use_.hold();
  check_not_feeding("import_row");
  check_row("import_row", row);
  const ModelConfig& c = model_->config();
  const int64_t conv_row = c.conv_channels() * c.d_conv, ssm_row = c.ssm_state_size(), V = c.vocab_size;
  MAMBART_CHECK(blob.size() >= sizeof kRowMagic && std::memcmp(blob.data(), kRowMagic, sizeof kRowMagic) == 0,
                "[import_row] not a row state (bad magic)");
  // Parse every section before touching the row, so a bad blob changes nothing.
  const char *shape = nullptr, *conv = nullptr, *ssm = nullptr, *logits = nullptr, *hist = nullptr, *kv_sec = nullptr;
  uint64_t hist_bytes = 0, logit_bytes = 0, shape_bytes = 0, conv_bytes = 0, ssm_bytes = 0, kv_bytes = 0;
  for (size_t at = sizeof kRowMagic; at < blob.size();) {
    MAMBART_CHECK(blob.size() - at >= 12, "[import_row] truncated section header at byte ", at);
    const std::string tag = blob.substr(at, 4);
    uint64_t n;
    std::memcpy(&n, blob.data() + at + 4, sizeof n);
    at += 12;
    MAMBART_CHECK(n <= blob.size() - at, "[import_row] section '", tag, "' runs past the end");
    const char* data = blob.data() + at;
    if (tag == "shap") shape = data, shape_bytes = n;
    else if (tag == "conv") conv = data, conv_bytes = n;
    else if (tag == "ssm ") ssm = data, ssm_bytes = n;
    else if (tag == "logt") logits = data, logit_bytes = n;
    else if (tag == "hist") hist = data, hist_bytes = n;
    else if (tag == "kv  ") kv_sec = data, kv_bytes = n;
    else MAMBART_CHECK(false, "[import_row] unknown section '", tag, "' (a state this decoder cannot hold)");
    at += n;
  }
  MAMBART_CHECK(shape && conv && ssm && hist, "[import_row] a section is missing");
  int64_t s[4];
  MAMBART_CHECK(shape_bytes == sizeof s, "[import_row] bad shape section");
  std::memcpy(s, shape, sizeof s);
  const int64_t n_mamba = c.mamba_layers();
  MAMBART_CHECK(s[0] == n_mamba && s[1] == conv_row && s[2] == ssm_row && s[3] == V,
                "[import_row] the state is of another model shape (Mamba layers ", s[0], ", conv ", s[1], ", ssm ",
                s[2], ", vocab ", s[3], "; this model: ", n_mamba, ", ", conv_row, ", ", ssm_row, ", ", V, ")");
  MAMBART_CHECK(conv_bytes == static_cast<uint64_t>(n_mamba * conv_row) * sizeof(float) &&
                    ssm_bytes == static_cast<uint64_t>(n_mamba * ssm_row) * sizeof(float) &&
                    (!logits || logit_bytes == static_cast<uint64_t>(V) * sizeof(float)) &&
                    hist_bytes % sizeof(int32_t) == 0,
                "[import_row] a section has the wrong size");
  std::vector<int32_t> h(hist_bytes / sizeof(int32_t));
  if (!h.empty()) std::memcpy(h.data(), hist, hist_bytes);
  for (int32_t t : h) MAMBART_CHECK(t >= 0 && t < V, "[import_row] token id ", t, " is out of range [0, ", V, ")");
  // An attention hybrid's row carries its KV caches, as long as its history.
  const uint64_t kv_expected =
      2 * attn_layers_.size() * static_cast<uint64_t>(c.kv_width()) * h.size() * sizeof(float);
  MAMBART_CHECK(attn_layers_.empty() ? !kv_sec : kv_sec && kv_bytes == kv_expected,
                "[import_row] the KV cache section is ", kv_sec ? "of the wrong size" : "missing",
                attn_layers_.empty() ? " (this model has no attention layers)" : "");
  std::vector<float> kv_host(static_cast<size_t>(kv_bytes / sizeof(float)));
  if (kv_bytes) std::memcpy(kv_host.data(), kv_sec, kv_bytes);
  std::vector<float> buf(static_cast<size_t>(std::max(std::max(conv_row, ssm_row), V)));
  Backend& be = model_->backend();
  for (int64_t m = 0; m < n_mamba; ++m) {
    std::memcpy(buf.data(), conv + m * conv_row * sizeof(float), conv_row * sizeof(float));
    be.from_host(buf.data(), conv_.data<float>() + (m * batch_ + row) * conv_row, conv_row);
    std::memcpy(buf.data(), ssm + m * ssm_row * sizeof(float), ssm_row * sizeof(float));
    be.from_host(buf.data(), ssm_.data<float>() + (m * batch_ + row) * ssm_row, ssm_row);
  }
  if (logits) {
    std::memcpy(buf.data(), logits, V * sizeof(float));
    be.from_host(buf.data(), logits_dev_.data<float>() + row * V, V);
  }
  kv_from_host(row, kv_host.data(), static_cast<int64_t>(h.size()));
  row_logits_[static_cast<size_t>(row)] = logits ? 1 : 0;
  update_has_logits();
  history_[static_cast<size_t>(row)] = std::move(h);
}

std::vector<float> Decoder::row_logits(int64_t row) const {
  const auto hold = use_.hold();
  check_row("row_logits", row);
  const int64_t V = model_->config().vocab_size;
  std::vector<float> out(static_cast<size_t>(V));
  model_->backend().to_host(logits_dev_.data<float>() + row * V, out.data(), V);
  return out;
}

bool Decoder::row_has_logits(int64_t row) const {
  const auto hold = use_.hold();
  check_row("row_has_logits", row);
  return row_logits_[static_cast<size_t>(row)] != 0;
}

}  // namespace mambart
