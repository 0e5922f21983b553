// Token sampling, in transformers' order (reference doc 5.2):
//   repetition penalty -> temperature -> top-k -> top-p -> min-p -> draw.
// Every filter is off unless asked for; temperature 0 means greedy (argmax
// after the repetition penalty). Invalid settings throw mambart::Error.
#pragma once
#include <cstdint>
#include <string>

namespace mambart {

// The parameters are double so that Python floats arrive unrounded: torch
// rounds a Python scalar to float32 when it meets a float32 tensor, and the
// top-p threshold 1 - top_p is formed in double before that rounding; the
// sampler does the same, so a setting means exactly what it means there.
struct SamplingConfig {
  double temperature = 1.0;         // 0: greedy; > 0: divide logits by it
  int64_t top_k = 0;                // 0: off; k > 0 keeps scores >= the k-th largest (ties kept)
  double top_p = 1.0;               // in (0, 1]; 1: off
  double min_p = 0.0;               // in [0, 1]; 0: off
  double repetition_penalty = 1.0;  // > 0; 1: off
  uint64_t seed = 0;
};

class Sampler {
 public:
  static constexpr size_t kRngStateBytes = 32;  // xoshiro256**: 4 x uint64, little-endian

  explicit Sampler(const SamplingConfig& config);  // validates, seeds the RNG

  const SamplingConfig& config() const { return config_; }
  bool greedy() const { return config_.temperature == 0.0; }

  // Applies the filters in place to logits[0, vocab); removed entries become
  // -inf. history holds the ids seen so far (prompt + generated) for the
  // repetition penalty; each distinct id is penalised once and ids outside
  // [0, vocab) are ignored. In greedy mode only the penalty is applied (the
  // other filters never change the argmax). Logits may hold -inf but not NaN
  // or +inf. Thread-safe: scratch memory is per thread.
  void process(float* logits, int64_t vocab, const int32_t* history, int64_t n_history) const;

  // process(), then argmax (temperature 0, first maximal index; no randomness
  // used) or one draw from the softmax, which consumes exactly one uniform.
  int32_t sample(float* logits, int64_t vocab, const int32_t* history, int64_t n_history);

  // The RNG state as bytes, so that a saved decoder continues the same stream.
  std::string rng_state() const;
  void set_rng_state(const std::string& bytes);

 private:
  SamplingConfig config_;
  uint64_t rng_[4];  // xoshiro256** state
  double uniform();  // [0, 1), 53 random bits
};

}  // namespace mambart
