// Mixture-of-experts routing: per row, the top_k experts and their weights
// from the router's logits, as Granite-4.0-H (softmax) and Nemotron-H
// (sigmoid, a selection bias, group-limited choice) route.
//
//   score_e  = sigmoid ? sigmoid(logit_e) : softmax(logits)_e
//   choice_e = score_e + bias_e                     (bias may be null: 0)
//   groups:  the E experts in n_group consecutive groups; a group's value is
//            the sum of its two best choices (its only one when a group has
//            one expert); only the topk_group best groups stay eligible
//   index    the top_k eligible experts by choice, best first
//   weight_i = score_{index_i} (/ their sum + 1e-20 if normalize) * scale
//
// Ties go to the lower index, for groups and experts alike. Granite's softmax
// over the chosen logits is softmax scoring with normalize.
//
//   logits (rows, E) row stride ld; index (rows, top_k) int32; weight (rows, top_k)
//
// A call handles rows [r0, r1). Routing is a few hundred flops per row: one
// scalar kernel serves every ISA.
#pragma once
#include <cstdint>

namespace mambart {

struct RouterParams {
  const float* logits;
  const float* bias;
  int32_t* index;
  float* weight;
  int64_t rows, n_experts, top_k, n_group, topk_group, ld;
  bool sigmoid, normalize;
  float scale;
};

namespace scalar {
void route(const RouterParams& p, int64_t r0, int64_t r1);
}

}  // namespace mambart
