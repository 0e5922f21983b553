// Falcon-H1's mixers: a Mamba-2 mixer and a grouped-query attention side by
// side on the same normed input, in every layer (transformers'
// FalconH1DecoderLayer). Its µP multipliers are applied to activations, not
// folded into the weights: a bf16 or f16 matrix times a multiplier would
// need another rounding, and the activations are few beside the weights.
//   in_proj parts [z | x | B | C | dt]:  ssm_in_multiplier x ssm_multipliers   (Model::mamba2_block)
//   attention input and key:             folded into attn_scale (q.k) and attn_out_multiplier (v)
//   MLP gate and output:                 mlp_multipliers                      (Model::mlp_block)
#include "model/model.h"

namespace mambart {

// r += attn_out * attention(h) + ssm_out * mamba2(h), h = ws.normed; the
// attention's share goes into the residual now, the Mamba-2 share is left in
// ws.mixed for the next norm to add, as every mixer's output is.
void Model::parallel_mixers(const ParallelLayer& L, int64_t n, bool prefill, const LayerState& state,
                            Workspace& ws) const {
  Backend& be = *backend_;
  const ModelConfig& c = config_;
  const int64_t nd = n * c.d_model;
  attention_block(L.attention, n, prefill, *state.kv, ws);
  be.axpy(c.attn_out_multiplier, ws.mixed.data<float>(), ws.residual.data<float>(), nd);
  mamba2_block(L.mamba, n, prefill, state, ws);
  if (c.ssm_out_multiplier != 1.0f) be.scale(ws.mixed.data<float>(), c.ssm_out_multiplier, nd);
}

}  // namespace mambart
