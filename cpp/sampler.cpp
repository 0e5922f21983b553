// Token sampling: transformers 5.23's processors (reference doc 5.2) in their
// order, in the float32 arithmetic torch uses on CPU, then a seeded draw.
//
// Cost per call over a vocabulary V: the penalty touches only the history;
// one pass validates and finds the max (greedy stops there); top-k and top-p
// use selection, never a full sort; the draw is one exp pass over the
// survivors. At V = 50280: greedy 22 us, plain sampling 170 us (mostly
// expf), top-k 50 65 us, top-p 0.4-1.1 ms depending on how many stay.
#include "sampler.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <vector>

#include "check.h"

namespace mambart {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

// Per-thread scratch: process() stays const, samplers of different rows may
// run on different pool threads, and the steady state allocates nothing.
struct Scratch {
  std::vector<uint64_t> seen;                     // (V + 63) / 64 bits: ids already penalised
  std::vector<float> values;                      // top-k: a copy of the scores to select in
  std::vector<int32_t> ids;                       // surviving ids, once a filter ran
  std::vector<uint64_t> rank;                     // top-p: (score, id) keys, best first
  std::vector<float> prob;                        // top-p: probability by id
  std::vector<float> weights;                     // exp(score - max) per survivor
};

Scratch& scratch() {
  thread_local Scratch s;
  return s;
}

// After penalty and temperature. ids_valid: Scratch::ids lists exactly the
// finite survivors; otherwise every finite logit is one.
struct Scores {
  float max;
  int32_t argmax;  // first maximal index
  bool ids_valid;
};

// ---- filters, in the order they run --------------------------------------

// CTRL penalty: each distinct in-range id once; logit < 0 -> * theta, else / theta.
void penalise(float* logits, int64_t vocab, const int32_t* history, int64_t n, float theta,
              Scratch& s) {
  s.seen.assign(static_cast<size_t>((vocab + 63) / 64), 0);
  for (int64_t j = 0; j < n; ++j) {
    const int32_t id = history[j];
    if (id < 0 || id >= vocab) continue;
    uint64_t& word = s.seen[id >> 6];
    const uint64_t bit = uint64_t{1} << (id & 63);
    if (word & bit) continue;
    word |= bit;
    const float x = logits[id];
    logits[id] = x < 0 ? x * theta : x / theta;
  }
}

// Divides by the temperature (when not 1), rejects NaN / +inf (from the input
// or from overflow) and finds the max: the only full pass greedy needs.
Scores scale_and_scan(float* logits, int64_t vocab, const SamplingConfig& c) {
  if (c.temperature != 0.0 && c.temperature != 1.0) {
    const float t = static_cast<float>(c.temperature);  // torch rounds the scalar to float32
    for (int64_t i = 0; i < vocab; ++i) logits[i] /= t;
  }
  // The max over 8 independent lanes: a single running max (with its index)
  // is a loop-carried cmov chain, 4x slower (140 vs 30 us at V = 50280).
  constexpr int kLanes = 8;
  float lane[kLanes];
  std::fill(lane, lane + kLanes, -kInf);
  bool bad = false;
  int64_t i = 0;
  for (; i + kLanes <= vocab; i += kLanes) {
    for (int l = 0; l < kLanes; ++l) {
      const float x = logits[i + l];
      bad |= !(x < kInf);  // NaN or +inf
      lane[l] = x > lane[l] ? x : lane[l];
    }
  }
  for (; i < vocab; ++i) {
    bad |= !(logits[i] < kInf);
    lane[0] = logits[i] > lane[0] ? logits[i] : lane[0];
  }
  const float mx = *std::max_element(lane, lane + kLanes);
  if (bad) {
    i = 0;
    while (logits[i] < kInf) ++i;
    MAMBART_CHECK(false, "[sampler] logits[", i, "] is ", logits[i],
                  " after repetition_penalty=", c.repetition_penalty, " and temperature=",
                  c.temperature, "; expected finite values or -inf");
  }
  MAMBART_CHECK(mx > -kInf, "[sampler] every logit is -inf (vocab ", vocab, ")");
  int64_t arg = 0;  // first maximal index
  while (logits[arg] != mx) ++arg;
  return {mx, static_cast<int32_t>(arg), false};
}

// A float's bits as an unsigned key with the same order (no NaN here);
// -0 is folded into +0 so that they tie as in a float comparison.
uint32_t order_bits(float x) {
  x += 0.0f;
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

void list_finite(const float* logits, int64_t vocab, std::vector<int32_t>& ids) {
  ids.clear();
  for (int64_t i = 0; i < vocab; ++i)
    if (logits[i] > -kInf) ids.push_back(static_cast<int32_t>(i));
}

// Keeps every score >= the k-th largest (ties with it kept, as transformers).
// The k-th largest by selection over a copy, O(V): at V = 50280 as fast as
// a heap of the k largest for k = 50 (~45 us) and far faster for large k
// (heap 1.2 ms at k = 40000).
void keep_top_k(float* logits, int64_t vocab, int64_t k, Scores& sc, Scratch& s) {
  std::vector<float>& v = s.values;
  v.assign(logits, logits + vocab);
  std::nth_element(v.begin(), v.begin() + (k - 1), v.end(), std::greater<float>());
  const float kth = v[k - 1];
  s.ids.clear();
  for (int64_t i = 0; i < vocab; ++i) {
    if (logits[i] < kth)
      logits[i] = -kInf;
    else if (logits[i] > -kInf)
      s.ids.push_back(static_cast<int32_t>(i));
  }
  sc.ids_valid = true;
}

// Softmax of the survivors as torch computes it: w = exp(x - max), then
// p = w * (1 / sum). Removed (-inf) tokens would only add zeros. Fills
// s.weights in the order of ids and returns the sum.
template <typename IdOf>
double softmax_weights(const float* logits, size_t n, float mx, IdOf id_of, Scratch& s) {
  s.weights.resize(n);
  double sum = 0.0;
  for (size_t j = 0; j < n; ++j) {
    s.weights[j] = std::exp(logits[id_of(j)] - mx);
    sum += s.weights[j];
  }
  return sum;
}

float reciprocal(double sum) { return 1.0f / static_cast<float>(sum); }

// transformers: sort ascending, softmax, cumsum from the least likely up,
// remove tokens whose cumsum <= 1 - top_p, always keep the most likely.
//
// No full sort: token j's cumsum is total - (mass ranked above j), so "kept"
// is monotone in rank and the cut is found by a search over ranks with
// nth_element, O(V) expected. (V = 50280: full sort 3.4 ms.) torch's CPU cumsum adds
// the float32 probs in double and rounds each entry to float32; total -
// above in double differs from it by ~1e-12, far below that rounding. Ties
// rank by id (higher id above), as an ascending sort by (score, id) gives;
// torch's unstable sort leaves their order unspecified.
void keep_top_p(float* logits, int64_t vocab, double top_p, Scores& sc, Scratch& s) {
  if (!sc.ids_valid) list_finite(logits, vocab, s.ids);
  const size_t n = s.ids.size();
  const float inv =
      reciprocal(softmax_weights(logits, n, sc.max, [&](size_t j) { return s.ids[j]; }, s));
  // One uint64 per token orders by (score, id), so nth_element compares and
  // moves plain integers.
  s.prob.resize(static_cast<size_t>(vocab));
  s.rank.resize(n);
  double total = 0.0;
  for (size_t j = 0; j < n; ++j) {
    const int32_t id = s.ids[j];
    s.prob[id] = s.weights[j] * inv;  // float32, as torch's softmax output
    total += s.prob[id];
    s.rank[j] = (uint64_t{order_bits(logits[id])} << 32) | static_cast<uint32_t>(id);
  }
  auto id_at = [&](size_t j) { return static_cast<int32_t>(s.rank[j] & 0xffffffffu); };
  auto prob_at = [&](size_t j) { return s.prob[id_at(j)]; };
  const float threshold = static_cast<float>(1.0 - top_p);  // formed in double, as in Python
  auto kept = [&](size_t rank, double mass_above) {
    return rank == 0 || static_cast<float>(total - mass_above) > threshold;
  };

  // Search: rank[0, lo) are the top lo tokens, all kept, of mass
  // mass_above; every token ranked at or below hi is removed. Probes gallop
  // (64, 512, 4096 tokens past lo) until one is removed, then bisect, so
  // each nth_element after the bracketing one works on a short range.
  const auto first = s.rank.begin();
  size_t lo = 0, hi = n;
  double mass_above = 0.0;
  for (size_t step = 64; hi - lo > 64;) {
    const size_t mid = lo + std::min(step, (hi - lo) / 2);
    std::nth_element(first + lo, first + mid, first + hi, std::greater<uint64_t>());
    double mass = 0.0;  // of rank[lo, mid), the tokens between lo and mid
    for (size_t j = lo; j < mid; ++j) mass += prob_at(j);
    if (kept(mid, mass_above + mass)) {
      mass_above += mass + prob_at(mid);
      lo = mid + 1;
      step *= 8;
    } else {
      hi = mid;
    }
  }
  std::sort(first + lo, first + hi, std::greater<uint64_t>());
  size_t cut = lo;  // rank[0, cut) stay
  while (cut < hi && kept(cut, mass_above)) mass_above += prob_at(cut++);

  for (size_t j = cut; j < n; ++j) logits[id_at(j)] = -kInf;
  s.ids.clear();
  for (size_t j = 0; j < cut; ++j) s.ids.push_back(id_at(j));
  sc.ids_valid = true;
}

// probs = softmax(scores); remove probs < min_p * max(probs). The top token's
// weight is exp(0) = 1, so max(probs) = 1 / sum, and it can never be removed.
void keep_min_p(float* logits, int64_t vocab, double min_p, Scores& sc, Scratch& s) {
  if (!sc.ids_valid) list_finite(logits, vocab, s.ids);
  const size_t n = s.ids.size();
  const float inv =
      reciprocal(softmax_weights(logits, n, sc.max, [&](size_t j) { return s.ids[j]; }, s));
  const float threshold = static_cast<float>(min_p) * inv;
  size_t kept = 0;
  for (size_t j = 0; j < n; ++j) {
    if (s.weights[j] * inv < threshold)
      logits[s.ids[j]] = -kInf;
    else
      s.ids[kept++] = s.ids[j];
  }
  s.ids.resize(kept);
  sc.ids_valid = true;
}

Scores filter(const SamplingConfig& c, const std::unordered_map<int32_t, int32_t>& counts, float* logits,
              int64_t vocab, const int32_t* history, int64_t n_history, Scratch& s) {
  MAMBART_CHECK(vocab > 0 && vocab <= INT32_MAX, "[sampler] vocab must be in [1, 2**31), got ",
                vocab);
  MAMBART_CHECK(logits != nullptr, "[sampler] logits is null");
  MAMBART_CHECK(n_history >= 0, "[sampler] n_history must be >= 0, got ", n_history);
  MAMBART_CHECK(n_history == 0 || history != nullptr, "[sampler] history is null but n_history is ",
                n_history);

  if (c.repetition_penalty != 1.0)
    penalise(logits, vocab, history, n_history, static_cast<float>(c.repetition_penalty), s);
  for (const auto& [id, count] : counts)
    if (id >= 0 && id < vocab) logits[id] -= penalty_amount(c, count);
  Scores sc = scale_and_scan(logits, vocab, c);
  if (c.temperature == 0.0) return sc;  // greedy: no filter changes the argmax

  if (c.top_k > 0 && c.top_k < vocab) keep_top_k(logits, vocab, c.top_k, sc, s);
  if (c.top_p < 1.0) keep_top_p(logits, vocab, c.top_p, sc, s);
  if (c.min_p > 0.0) keep_min_p(logits, vocab, c.min_p, sc, s);
  return sc;
}

// One draw from softmax(scores): walk the cumulative weights (double) to the
// first that exceeds u * total. Zero-weight (removed) tokens are never chosen.
int32_t draw(const float* logits, int64_t vocab, const Scores& sc, double u, Scratch& s) {
  const size_t n = sc.ids_valid ? s.ids.size() : static_cast<size_t>(vocab);
  auto id_of = [&](size_t j) { return sc.ids_valid ? s.ids[j] : static_cast<int32_t>(j); };
  const double total = softmax_weights(logits, n, sc.max, id_of, s);
  const double target = u * total;
  double cum = 0.0;
  size_t last = 0;  // last positive weight: the answer if rounding leaves cum <= target
  for (size_t j = 0; j < n; ++j) {
    if (s.weights[j] <= 0.0f) continue;
    cum += s.weights[j];
    last = j;
    if (cum > target) return id_of(j);
  }
  return id_of(last);
}

// ---- RNG: xoshiro256** seeded by splitmix64 (prng.di.unimi.it) -------------

uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

// A float parameter that is used as float32: it must survive the rounding.
bool positive_float32(double v) {
  return v > 0.0 && static_cast<float>(v) >= FLT_MIN && static_cast<float>(v) <= FLT_MAX;
}

}  // namespace

Sampler::Sampler(const SamplingConfig& config) : config_(config) {
  const SamplingConfig& c = config_;
  MAMBART_CHECK(c.temperature == 0.0 || positive_float32(c.temperature),
                "[sampler] temperature must be 0 or a finite float32 > 0, got ", c.temperature);
  MAMBART_CHECK(c.top_k >= 0, "[sampler] top_k must be >= 0, got ", c.top_k);
  MAMBART_CHECK(c.top_p > 0.0 && c.top_p <= 1.0, "[sampler] top_p must be in (0, 1], got ",
                c.top_p);
  MAMBART_CHECK(c.min_p >= 0.0 && c.min_p <= 1.0, "[sampler] min_p must be in [0, 1], got ",
                c.min_p);
  MAMBART_CHECK(positive_float32(c.repetition_penalty),
                "[sampler] repetition_penalty must be a finite float32 > 0, got ",
                c.repetition_penalty);
  for (const auto& [name, v] : {std::pair<const char*, double>{"presence_penalty", c.presence_penalty},
                                {"frequency_penalty", c.frequency_penalty}})
    MAMBART_CHECK(std::isfinite(v) && std::fabs(v) <= FLT_MAX, "[sampler] ", name,
                  " must be a finite float32, got ", v);
  uint64_t x = c.seed;
  for (uint64_t& word : rng_) word = splitmix64(x);  // never all zero: splitmix64 is a bijection
}

void Sampler::process(float* logits, int64_t vocab, const int32_t* history,
                      int64_t n_history) const {
  filter(config_, counts_, logits, vocab, history, n_history, scratch());
}

int32_t Sampler::sample(float* logits, int64_t vocab, const int32_t* history, int64_t n_history) {
  Scratch& s = scratch();
  const Scores sc = filter(config_, counts_, logits, vocab, history, n_history, s);
  const int32_t id = greedy() ? sc.argmax : draw(logits, vocab, sc, uniform(), s);
  note(id);
  return id;
}

void Sampler::note(int32_t id) {
  if (counts_tokens()) ++counts_[id];
}

void Sampler::set_counts(std::unordered_map<int32_t, int32_t> counts) {
  for (const auto& [id, n] : counts)
    MAMBART_CHECK(id >= 0 && n >= 1 && n <= (1 << 30), "[sampler] token ", id, " has count ", n,
                  ": counts are of sampled tokens, in [1, 2^30]");
  counts_ = std::move(counts);
}

void Sampler::penalties(std::vector<int32_t>& ids, std::vector<float>& amounts) const {
  for (const auto& [id, count] : counts_) {
    ids.push_back(id);
    amounts.push_back(penalty_amount(config_, count));
  }
}

double Sampler::uniform() {
  // xoshiro256**; the top 53 bits give a double in [0, 1).
  const uint64_t result = rotl(rng_[1] * 5, 7) * 9;
  const uint64_t t = rng_[1] << 17;
  rng_[2] ^= rng_[0];
  rng_[3] ^= rng_[1];
  rng_[1] ^= rng_[2];
  rng_[0] ^= rng_[3];
  rng_[2] ^= t;
  rng_[3] = rotl(rng_[3], 45);
  return static_cast<double>(result >> 11) * 0x1.0p-53;
}

std::string Sampler::rng_state() const {
  std::string bytes(kRngStateBytes, '\0');
  for (size_t i = 0; i < kRngStateBytes; ++i)
    bytes[i] = static_cast<char>((rng_[i / 8] >> (8 * (i % 8))) & 0xff);  // little-endian
  return bytes;
}

void Sampler::set_rng_state(const std::string& bytes) {
  MAMBART_CHECK(bytes.size() == kRngStateBytes, "[sampler] rng_state must be ", kRngStateBytes,
                " bytes, got ", bytes.size());
  uint64_t state[4] = {0, 0, 0, 0};
  for (size_t i = 0; i < kRngStateBytes; ++i)
    state[i / 8] |= uint64_t{static_cast<unsigned char>(bytes[i])} << (8 * (i % 8));
  MAMBART_CHECK((state[0] | state[1] | state[2] | state[3]) != 0,
                "[sampler] rng_state must not be all zero (xoshiro256** would stay at zero)");
  std::copy(state, state + 4, rng_);
}

}  // namespace mambart
