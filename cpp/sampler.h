// Token sampling, in transformers' order (reference doc 5.2), with OpenAI's
// presence and frequency penalties after the repetition penalty:
//   repetition penalty -> presence/frequency -> temperature -> top-k ->
//   top-p -> min-p -> draw.
// Every filter is off unless asked for; temperature 0 means greedy (argmax
// after the repetition penalty). Invalid settings throw mambart::Error.
#pragma once
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

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
  // OpenAI's: logit[t] -= frequency * count[t] + presence * (count[t] > 0),
  // count[t] the times this sampler has chosen t (the generated tokens; the
  // prompt does not count). 0: off; finite, |value| within float32.
  double presence_penalty = 0.0;
  double frequency_penalty = 0.0;
  uint64_t seed = 0;
};

// What presence/frequency take off a logit whose token was chosen `count`
// times, in float32; the CPU and CUDA samplers subtract this same value.
inline float penalty_amount(const SamplingConfig& c, int32_t count) {
  return static_cast<float>(c.frequency_penalty) * static_cast<float>(count) +
         (count > 0 ? static_cast<float>(c.presence_penalty) : 0.0f);
}

class Sampler {
 public:
  static constexpr size_t kRngStateBytes = 32;  // xoshiro256**: 4 x uint64, little-endian

  explicit Sampler(const SamplingConfig& config);  // validates, seeds the RNG

  const SamplingConfig& config() const { return config_; }
  bool greedy() const { return config_.temperature == 0.0; }
  bool counts_tokens() const { return config_.presence_penalty != 0.0 || config_.frequency_penalty != 0.0; }

  // Applies the filters in place to logits[0, vocab); removed entries become
  // -inf. history holds the ids seen so far (prompt + generated) for the
  // repetition penalty; each distinct id is penalised once and ids outside
  // [0, vocab) are ignored. In greedy mode only the penalty is applied (the
  // other filters never change the argmax). Logits may hold -inf but not NaN
  // or +inf. Thread-safe: scratch memory is per thread.
  void process(float* logits, int64_t vocab, const int32_t* history, int64_t n_history) const;

  // process(), then argmax (temperature 0, first maximal index; no randomness
  // used) or one draw from the softmax, which consumes exactly one uniform.
  // The chosen token is counted (note()).
  int32_t sample(float* logits, int64_t vocab, const int32_t* history, int64_t n_history);

  // Counts a chosen token for the presence/frequency penalties (a backend
  // that samples elsewhere calls it with the ids it chose). Nothing is kept
  // when both penalties are off.
  void note(int32_t id);
  // The counted tokens and what the penalties take off each, appended (ids
  // distinct, in no particular order).
  void penalties(std::vector<int32_t>& ids, std::vector<float>& amounts) const;
  const std::unordered_map<int32_t, int32_t>& counts() const { return counts_; }
  // Each count in [1, 2^30]: sampling adds to them in int32.
  void set_counts(std::unordered_map<int32_t, int32_t> counts);

  // The RNG state as bytes, so that a saved decoder continues the same stream.
  std::string rng_state() const;
  void set_rng_state(const std::string& bytes);

 private:
  SamplingConfig config_;
  uint64_t rng_[4];  // xoshiro256** state
  std::unordered_map<int32_t, int32_t> counts_;  // chosen token -> times
  double uniform();  // [0, 1), 53 random bits
};

}  // namespace mambart
