// Token sampling, in transformers' order (reference doc 5.2):
//   repetition penalty -> temperature -> top-k -> top-p -> min-p -> draw.
// Every filter is off unless asked for; temperature 0 means greedy (argmax
// after the repetition penalty). Invalid settings throw mambart::Error.
#pragma once
#include <cstdint>
#include <string>

namespace mambart {

struct SamplingConfig {
  float temperature = 1.0f;         // 0: greedy; > 0: divide logits by it
  int64_t top_k = 0;                // 0: off; k > 0 keeps scores >= the k-th largest (ties kept)
  float top_p = 1.0f;               // in (0, 1]; 1: off
  float min_p = 0.0f;               // in [0, 1]; 0: off
  float repetition_penalty = 1.0f;  // > 0; 1: off
  uint64_t seed = 0;
};

class Sampler {
 public:
  explicit Sampler(const SamplingConfig& config);  // validates, seeds the RNG

  const SamplingConfig& config() const { return config_; }

  // Applies the filters in place to logits[0, vocab); removed entries become
  // -inf. history holds the ids seen so far (prompt + generated) for the
  // repetition penalty; each distinct id is penalised once.
  void process(float* logits, int64_t vocab, const int32_t* history, int64_t n_history) const;

  // process(), then argmax (temperature 0) or one draw from the softmax.
  int32_t sample(float* logits, int64_t vocab, const int32_t* history, int64_t n_history);

  // The RNG state as bytes, so that a saved decoder continues the same stream.
  std::string rng_state() const;
  void set_rng_state(const std::string& bytes);

 private:
  SamplingConfig config_;
  uint64_t rng_[4];  // xoshiro256** state
  double uniform();  // [0, 1)
};

}  // namespace mambart
