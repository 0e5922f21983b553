// Mixture-of-experts routing. See kernels/moe.h.
#include "kernels/moe.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

namespace mambart {
namespace scalar {

namespace {

// The first k indices of `value` in descending order, ties to the lower index.
void top(const std::vector<float>& value, int64_t k, std::vector<int64_t>& order) {
  order.resize(value.size());
  std::iota(order.begin(), order.end(), 0);
  std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int64_t a, int64_t b) {
    return value[a] > value[b] || (value[a] == value[b] && a < b);
  });
  order.resize(static_cast<size_t>(k));
}

}  // namespace

void route(const RouterParams& p, int64_t r0, int64_t r1) {
  const int64_t E = p.n_experts, per_group = E / p.n_group;
  std::vector<float> score(E), choice(E), group_value(p.n_group);
  std::vector<int64_t> order;
  for (int64_t r = r0; r < r1; ++r) {
    const float* logit = p.logits + r * p.ld;
    if (p.sigmoid) {
      for (int64_t e = 0; e < E; ++e) score[e] = 1.0f / (1.0f + std::exp(-logit[e]));
    } else {
      const float m = *std::max_element(logit, logit + E);
      float sum = 0.0f;
      for (int64_t e = 0; e < E; ++e) sum += score[e] = std::exp(logit[e] - m);
      for (int64_t e = 0; e < E; ++e) score[e] /= sum;
    }
    for (int64_t e = 0; e < E; ++e) choice[e] = score[e] + (p.bias ? p.bias[e] : 0.0f);
    if (p.topk_group < p.n_group) {
      for (int64_t g = 0; g < p.n_group; ++g) {
        std::vector<float> members(choice.begin() + g * per_group, choice.begin() + (g + 1) * per_group);
        top(members, std::min<int64_t>(2, per_group), order);
        group_value[g] = 0.0f;
        for (int64_t i : order) group_value[g] += members[i];
      }
      top(group_value, p.topk_group, order);
      std::vector<bool> keep(p.n_group, false);
      for (int64_t g : order) keep[g] = true;
      for (int64_t e = 0; e < E; ++e)
        if (!keep[e / per_group]) choice[e] = -INFINITY;
    }
    top(choice, p.top_k, order);
    float sum = 0.0f;
    for (int64_t i = 0; i < p.top_k; ++i) sum += score[order[i]];
    const float norm = p.normalize ? 1.0f / (sum + 1e-20f) : 1.0f;
    for (int64_t i = 0; i < p.top_k; ++i) {
      p.index[r * p.top_k + i] = static_cast<int32_t>(order[i]);
      p.weight[r * p.top_k + i] = score[order[i]] * norm * p.scale;
    }
  }
}

}  // namespace scalar
}  // namespace mambart
