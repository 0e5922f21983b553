// Sampling on the device: cpp/sampler.cpp's filters in its order and with
// its float32 formulas (repetition penalty -> presence/frequency ->
// temperature -> top-k -> top-p -> min-p -> draw), one block per row, so that only the chosen ids cross to
// the host. Where the CPU selects or sorts, the device searches instead:
//
//   top-k  the k-th largest score is the largest key T with
//          count(key >= T) >= k, built bit by bit (32 block-wide counts);
//   top-p  a token is kept iff total - (mass ranked above it) > 1 - top_p;
//          that is monotone in rank, so the cut is the largest 64-bit
//          (score, id) key that fails, built bit by bit (64 block sums);
//   draw   the first token, in the CPU's walk order (by rank after top-p,
//          else by id), whose cumulative weight exceeds u * total: again a
//          largest key, found the same way.
//
// Sums are in double as on the CPU but in a different order, so a cut or a
// draw can differ only when a threshold falls within ~1e-12 of a partial sum.
// Errors (NaN / +inf logits, all -inf) come back as negative ids; the
// caller raises with the CPU sampler's message.
#pragma once
#include "compat.cuh"

namespace mambart {
namespace cuda {

constexpr int kSampleThreads = 256;
constexpr int32_t kSampleBadLogit = -1, kSampleAllInf = -2;

// One row's settings and random state (the host Sampler's, copied per call).
struct SampleRow {
  double top_p, min_p, temperature, repetition_penalty;
  int64_t top_k;
  uint64_t rng[4];  // xoshiro256**, advanced here and copied back
};

struct SampleParams {
  const float* logits;   // (batch, ld), raw; never written
  float* work;           // (batch, vocab) filtered scores
  const uint32_t* seen;  // (batch, seen_words) bit i: token i is in the history; may be null
  SampleRow* rows;       // (batch)
  int32_t* out;          // (batch)
  int64_t batch, vocab, ld, seen_words;
  // Presence/frequency: row r subtracts pen_amount[j] from token pen_id[j]
  // for j in [pen_start[r], pen_start[r + 1]) (ids distinct within a row;
  // amounts from penalty_amount on the host). pen_start null: none.
  const int64_t* pen_start;  // (batch + 1)
  const int32_t* pen_id;
  const float* pen_amount;
};

// Shared memory of one block.
struct SampleShared {
  double part[kSampleThreads];
  float fpart[kSampleThreads];
  int64_t ipart[kSampleThreads];
  uint64_t upart[kSampleThreads];
  double dres;
  float max;
  int64_t count, argmax;
  uint64_t key;
  int32_t bad;
};

MAMBART_HD inline uint32_t order_key(float x) {
  const uint32_t u = float_bits(x + 0.0f);  // -0 folds into +0
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
MAMBART_HD inline uint64_t rank_key(float x, int64_t id) {
  return (static_cast<uint64_t>(order_key(x)) << 32) | static_cast<uint32_t>(id);
}

MAMBART_HD inline double xoshiro_uniform(uint64_t* s) {
  auto rotl = [](uint64_t x, int k) { return (x << k) | (x >> (64 - k)); };
  const uint64_t result = rotl(s[1] * 5, 7) * 9;
  const uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return static_cast<double>(result >> 11) * (1.0 / 9007199254740992.0);
}

// sum over i in [0, V) of f(i), in double; two phases.
template <typename Block, typename F>
MAMBART_HD double block_sum(Block& blk, SampleShared& sh, int64_t V, F f) {
  blk.phase([&](int tid, int nt) {
    double acc = 0.0;
    for (int64_t i = tid; i < V; i += nt) acc += f(i);
    sh.part[tid] = acc;
  });
  blk.phase([&](int tid, int nt) {
    if (tid != 0) return;
    double acc = 0.0;
    for (int t = 0; t < nt; ++t) acc += sh.part[t];
    sh.dres = acc;
  });
  return sh.dres;
}

// Largest 64-bit key k with pred(k), for pred true at 0 and monotone
// (true up to some key, false above); `bits` high bits are searched.
template <typename Block, typename Pred>
MAMBART_HD uint64_t largest_key(Block& blk, SampleShared& sh, int bits, Pred pred) {
  uint64_t k = 0;
  for (int bit = bits - 1; bit >= 0; --bit) {
    const uint64_t cand = k | (uint64_t{1} << bit);
    if (pred(cand)) k = cand;
  }
  return k;
}

// The largest key over the i in [0, V) where f(i, key) is true; the index
// of that i is left in sh.argmax (-1 if none).
template <typename Block, typename F>
MAMBART_HD uint64_t block_max_key(Block& blk, SampleShared& sh, int64_t V, F f) {
  blk.phase([&](int tid, int nt) {
    int64_t best = -1;
    uint64_t best_key = 0, key = 0;
    for (int64_t i = tid; i < V; i += nt)
      if (f(i, key) && (best < 0 || key > best_key)) best = i, best_key = key;
    sh.ipart[tid] = best;
    sh.upart[tid] = best_key;
  });
  blk.phase([&](int tid, int nt) {
    if (tid != 0) return;
    int64_t best = -1;
    uint64_t best_key = 0;
    for (int t = 0; t < nt; ++t)
      if (sh.ipart[t] >= 0 && (best < 0 || sh.upart[t] > best_key)) best = sh.ipart[t], best_key = sh.upart[t];
    sh.argmax = best;
    sh.key = best_key;
  });
  return sh.key;
}

template <typename Block>
MAMBART_HD void sample_row(const SampleParams& p, int64_t row, SampleShared& sh, Block& blk) {
  const int64_t V = p.vocab;
  SampleRow& cfg = p.rows[row];
  const float* in = p.logits + row * p.ld;
  float* x = p.work + row * V;
  const float kInf = bits_float(0x7f800000u);
  const bool greedy = cfg.temperature == 0.0;

  // Penalties, temperature, and max / first argmax, rejecting NaN and +inf.
  const float theta = static_cast<float>(cfg.repetition_penalty);
  auto repeat = [&](int64_t i) {
    const float v = in[i];
    if (cfg.repetition_penalty != 1.0 && p.seen && (p.seen[row * p.seen_words + (i >> 5)] >> (i & 31)) & 1u)
      return v < 0 ? v * theta : v / theta;
    return v;
  };
  // With presence/frequency amounts for this row, the repeated scores go to
  // x first and the few counted tokens are lowered there.
  const int64_t pen0 = p.pen_start ? p.pen_start[row] : 0, pen1 = p.pen_start ? p.pen_start[row + 1] : 0;
  const bool counted = pen1 > pen0;
  if (counted) {
    blk.phase([&](int tid, int nt) {
      for (int64_t i = tid; i < V; i += nt) x[i] = repeat(i);
    });
    blk.phase([&](int tid, int nt) {
      for (int64_t j = pen0 + tid; j < pen1; j += nt)
        if (p.pen_id[j] >= 0 && p.pen_id[j] < V) x[p.pen_id[j]] -= p.pen_amount[j];
    });
  }
  blk.phase([&](int tid, int nt) {
    const float temp = static_cast<float>(cfg.temperature);
    float mx = -kInf;
    int64_t arg = V;
    int bad = 0;
    for (int64_t i = tid; i < V; i += nt) {
      float v = counted ? x[i] : repeat(i);
      if (!greedy && cfg.temperature != 1.0) v /= temp;
      x[i] = v;
      bad |= !(v < kInf);
      if (v > mx) mx = v, arg = i;
    }
    sh.fpart[tid] = mx;
    sh.ipart[tid] = bad ? -1 : arg;
  });
  blk.phase([&](int tid, int nt) {
    if (tid != 0) return;
    float mx = -kInf;
    int64_t arg = V;
    int bad = 0;
    for (int t = 0; t < nt; ++t) {
      bad |= sh.ipart[t] < 0;
      if (sh.fpart[t] > mx || (sh.fpart[t] == mx && sh.ipart[t] < arg)) mx = sh.fpart[t], arg = sh.ipart[t];
    }
    sh.max = mx, sh.argmax = arg, sh.bad = bad;
  });
  const float mx = sh.max;
  if (sh.bad || !(mx > -kInf)) {
    blk.phase([&](int tid, int) {
      if (tid == 0) p.out[row] = sh.bad ? kSampleBadLogit : kSampleAllInf;
    });
    return;
  }
  if (greedy) {
    blk.phase([&](int tid, int) {
      if (tid == 0) p.out[row] = static_cast<int32_t>(sh.argmax);
    });
    return;
  }

  // top-k: keep scores >= the k-th largest (ties kept).
  if (cfg.top_k > 0 && cfg.top_k < V) {
    const uint64_t kth = largest_key(blk, sh, 32, [&](uint64_t k) {
      return block_sum(blk, sh, V, [&](int64_t i) { return order_key(x[i]) >= k ? 1.0 : 0.0; }) >=
             static_cast<double>(cfg.top_k);
    });
    blk.phase([&](int tid, int nt) {
      for (int64_t i = tid; i < V; i += nt)
        if (order_key(x[i]) < kth) x[i] = -kInf;
    });
  }

  // Softmax weights of the survivors, torch's way: exp(x - max) * (1 / sum).
  auto weight = [&](int64_t i) { return x[i] > -kInf ? expf(x[i] - mx) : 0.0f; };
  const bool by_rank = cfg.top_p < 1.0;
  if (by_rank) {
    const float inv = 1.0f / static_cast<float>(block_sum(blk, sh, V, [&](int64_t i) { return weight(i); }));
    auto prob = [&](int64_t i) { return weight(i) * inv; };
    const double total = block_sum(blk, sh, V, [&](int64_t i) { return static_cast<double>(prob(i)); });
    const float threshold = static_cast<float>(1.0 - cfg.top_p);  // formed in double, as in Python
    auto kept = [&](uint64_t k) {  // would a token of rank key k be kept?
      const double above = block_sum(blk, sh, V, [&](int64_t i) {
        return x[i] > -kInf && rank_key(x[i], i) > k ? static_cast<double>(prob(i)) : 0.0;
      });
      return static_cast<float>(total - above) > threshold;
    };
    if (!kept(0)) {
      // Keys <= cut are removed, except the top-ranked token (highest id at the max).
      const uint64_t cut = largest_key(blk, sh, 64, [&](uint64_t k) { return !kept(k); });
      const uint64_t top = block_max_key(blk, sh, V, [&](int64_t i, uint64_t& key) {
        key = rank_key(x[i], i);
        return x[i] == mx;
      });
      blk.phase([&](int tid, int nt) {
        for (int64_t i = tid; i < V; i += nt)
          if (x[i] > -kInf && rank_key(x[i], i) <= cut && rank_key(x[i], i) != top) x[i] = -kInf;
      });
    }
  }

  // probs < min_p * max(probs) go; max(probs) = 1 / sum (the top weight is exp(0)).
  if (cfg.min_p > 0.0) {
    const float inv = 1.0f / static_cast<float>(block_sum(blk, sh, V, [&](int64_t i) { return weight(i); }));
    const float threshold = static_cast<float>(cfg.min_p) * inv;
    blk.phase([&](int tid, int nt) {
      for (int64_t i = tid; i < V; i += nt)
        if (x[i] > -kInf && expf(x[i] - mx) * inv < threshold) x[i] = -kInf;
    });
  }

  // Draw. The CPU walks the survivors by rank (best first) after top-p, else
  // by id, and returns the first whose cumulative weight exceeds u * total.
  // With walk keys increasing along that walk and before(k) the weight of
  // the tokens walked before key k, that token's key is the largest k with
  // before(k) <= u * total. If rounding leaves the whole sum <= u * total,
  // k is all ones and the last positive weight is the answer, as on the CPU.
  auto walk_key = [&](int64_t i) -> uint64_t { return by_rank ? ~rank_key(x[i], i) : static_cast<uint64_t>(i); };
  const double total = block_sum(blk, sh, V, [&](int64_t i) { return static_cast<double>(weight(i)); });
  blk.phase([&](int tid, int) {
    if (tid == 0) sh.dres = xoshiro_uniform(cfg.rng);
  });
  const double target = sh.dres * total;
  int bits = 64;
  if (!by_rank)
    for (bits = 1; (int64_t{1} << bits) < V; ++bits) {
    }
  const uint64_t k = largest_key(blk, sh, bits, [&](uint64_t k) {
    return block_sum(blk, sh, V, [&](int64_t i) {
             return weight(i) > 0.0f && walk_key(i) < k ? static_cast<double>(weight(i)) : 0.0;
           }) <= target;
  });
  block_max_key(blk, sh, V, [&](int64_t i, uint64_t& key) {
    key = walk_key(i);
    return weight(i) > 0.0f && key <= k;
  });
  blk.phase([&](int tid, int) {
    if (tid == 0) p.out[row] = static_cast<int32_t>(sh.argmax);
  });
}

#if defined(__CUDACC__)
__global__ void sample_kernel(SampleParams p) {
  __shared__ SampleShared sh;
  DeviceBlock blk;
  sample_row(p, blockIdx.x, sh, blk);
}

inline void launch_sample(const SampleParams& p, cudaStream_t s) {
  sample_kernel<<<static_cast<unsigned>(p.batch), kSampleThreads, 0, s>>>(p);
}
#endif

}  // namespace cuda
}  // namespace mambart
