"""Mixture-of-experts hybrids against transformers (f32, CPU): Granite-4.0-H with experts and
Nemotron-H (its four kinds of layer, and a dense one), each shape through every check of test_hybrids.py (imported below, so that pytest runs them
on this file's `pair`), and the choice of experts itself."""
import numpy as np
import pytest
import torch

import mambart
from models import hf_logits, load_pair, make_granite_hybrid, make_nemotron_h, random_ids, rel_err, stepwise_logits
from test_hybrids import (  # noqa: F401  (collected here)
    test_batch_of_mixed_lengths_equals_single_sequences, test_decode_steps, test_greedy_matches_transformers_generate,
    test_prefill_runs_the_last_mlp_on_the_last_row_alone, test_prompt_logits, test_save_load_continue, test_scalar_path_matches_too, test_state_without_kv_is_refused)

SHAPES = {
    # 8 experts, top 2, rope, GQA with 2 KV heads.
    "granite_moe-rope_gqa2": (make_granite_hybrid, dict(num_local_experts=8, num_experts_per_tok=2)),
    # No position encoding, one KV head, every multiplier != 1, top 3 of 5 experts, attention first.
    "granite_moe-nope_gqa1_multipliers": (make_granite_hybrid, dict(
        num_local_experts=5, num_experts_per_tok=3, intermediate_size=20, position_embedding_type=None,
        num_key_value_heads=1, embedding_multiplier=12.0, residual_multiplier=0.22, attention_multiplier=0.0078125,
        logits_scaling=6.0, layer_types=("attention", "mamba", "mamba", "attention"))),
    # A single expert chosen of 4 (its weight is then 1), MHA, tied head.
    "granite_moe-top1_mha_tied": (make_granite_hybrid, dict(num_local_experts=4, num_experts_per_tok=1,
                                                           num_key_value_heads=4, tie_word_embeddings=True)),
    # Nemotron-H's four kinds of layer (M Mamba-2, * attention, - MLP, E experts), GQA with 2 KV heads,
    # top 2 of 8 experts by sigmoid score plus the selection bias.
    "nemotron_h-all_kinds_gqa2": (make_nemotron_h, dict(layers="M*E-ME")),
    # Group-limited choice (top 3 from the best 2 of 4 groups), unnormalised weights scaled by 2.5,
    # one KV head, a larger dt floor, SSD chunks of 64, attention first; tie_word_embeddings, which
    # transformers' Nemotron-H ignores (its head is a tensor of its own), so mambart must too.
    "nemotron_h-groups_gqa1_scaled": (make_nemotron_h, dict(
        layers="*ME-M*E", n_group=4, topk_group=2, num_experts_per_tok=3, norm_topk_prob=False,
        routed_scaling_factor=2.5, num_key_value_heads=1, time_step_min=0.05, chunk_size=64,
        tie_word_embeddings=True)),
    # Latent experts (moe_latent_size): the routed experts over the rows projected from 64 to 40 and
    # their sum projected back, the shared MLP and the router on the full rows; top 3 of 6.
    "nemotron_h-latent_experts": (make_nemotron_h, dict(layers="ME*-E", moe_latent_size=40, n_routed_experts=6,
                                                        num_experts_per_tok=3)),
    # Dense (NVIDIA-Nemotron-Nano-v2's kinds only), MHA with a head dim apart from hidden / heads,
    # another epsilon, 4 B/C groups.
    "nemotron_h-dense_mha": (make_nemotron_h, dict(layers="M-M*-M", num_key_value_heads=4, head_dim=24,
                                                   layer_norm_epsilon=1e-6, n_groups=4)),
}


@pytest.fixture(scope="module", params=[(s, "f32") for s in SHAPES] + [("granite_moe-rope_gqa2", "bf16"),
                                                                         ("nemotron_h-all_kinds_gqa2", "bf16")],
                ids=lambda p: f"{p[0]}-{p[1]}")
def pair(request, tmp_path_factory):
    return load_pair(SHAPES, request.param, tmp_path_factory)


def _has_experts(shape):
    kw = SHAPES[shape][1]
    return kw.get("num_local_experts", 0) > 0 or "E" in kw.get("layers", "E")


@pytest.fixture(scope="module", params=[s for s in SHAPES if _has_experts(s)])
def moe_pair(request, tmp_path_factory):
    """The shapes with experts, f32."""
    return load_pair(SHAPES, (request.param, "f32"), tmp_path_factory)


def _moe_blocks(hf):
    """(router, experts) of every mixture of experts in a transformers model."""
    for layer in hf.model.layers:
        moe = getattr(layer, "block_sparse_moe", None) or getattr(layer, "mixer", None)
        router = getattr(moe, "router", None) or getattr(moe, "gate", None)
        if router is not None and hasattr(moe, "experts"):
            yield router, moe.experts


def test_unchosen_experts_are_not_computed(moe_pair, tmp_path):
    """An expert no token of the prompt chooses may hold NaNs: were it computed (and weighted by
    0), the logits would be NaN. Its choice is transformers' own, read from its routers."""
    model, hf = moe_pair
    ids = random_ids(model, 3, 11)
    blocks = list(_moe_blocks(hf))
    assert blocks
    chosen = [set() for _ in blocks]
    hooks = [router.register_forward_hook(lambda m, i, o, c=c: c.update(o[2].reshape(-1).tolist()))
             for (router, _), c in zip(blocks, chosen)]
    with torch.no_grad():
        hf(torch.tensor([ids]))
    for h in hooks:
        h.remove()
    idle = [(experts, e) for (_, experts), c in zip(blocks, chosen) for e in range(experts.num_experts) if e not in c]
    assert idle, "every expert was chosen: use a shorter prompt"
    experts, idle = idle[0][0], [idle[0][1]]
    saved = [p[idle[0]].clone() for p in experts.parameters()]
    with torch.no_grad():
        for p in experts.parameters():
            p[idle[0]] = float("nan")
    try:
        hf.save_pretrained(tmp_path)
        ref = hf_logits(hf, ids)
    finally:
        with torch.no_grad():  # the module-scoped model goes back as it was
            for p, v in zip(experts.parameters(), saved):
                p[idle[0]] = v
    for f in ("tokenizer.json",):
        (tmp_path / f).write_bytes((model.path / f).read_bytes())
    got = mambart.load(tmp_path, threads=2).logits(ids)
    assert np.isfinite(ref).all() and np.isfinite(got).all()
    assert rel_err(got, ref) <= 1e-4


def test_nemotron_dt_floor_holds_in_prefill_only(tmp_path):
    """Nemotron-H's Mamba-2 clamps dt below at time_step_min in its chunked prefill, not in its
    step: a floor high enough to bind shows whether each path does as transformers' does."""
    hf = make_nemotron_h(tmp_path, layers="M-M*", time_step_min=0.5, seed=7)
    model = mambart.load(tmp_path, threads=2)
    ids = random_ids(model, 48, 9)
    assert rel_err(model.logits(ids), hf_logits(hf, ids)) <= 1e-4
    with torch.no_grad():  # transformers' own cached decode: a prefill, then steps
        out = hf(torch.tensor([ids[:40]]), use_cache=True)
        ref = [out.logits[0, -1]]
        for t in ids[40:]:
            out = hf(torch.tensor([[t]]), past_key_values=out.past_key_values, use_cache=True)
            ref.append(out.logits[0, -1])
    ref = torch.stack(ref).double().numpy()
    assert rel_err(stepwise_logits(model, ids, 40), ref) <= 1e-4


def test_state_holds_only_the_mamba_layers(pair):
    """Conv and SSM states exist for the layers with a Mamba mixer only (Nemotron-H's MLP, expert
    and attention layers have none); the KV caches for the attention layers."""
    model, _ = pair
    dec = model.decoder(2)
    mamba = sum("M" in word for word in model.config.layers.split())
    assert dec._core.conv_state().shape[:2] == (mamba, 2) and dec._core.ssm_state().shape[:2] == (mamba, 2)


def test_a_step_reads_only_the_chosen_experts(moe_pair):
    """weight_bytes_per_token (the decode bound) counts top_k of every n_experts routed experts."""
    model, hf = moe_pair
    c = model.config
    assert c.n_experts
    experts = sum(p.numel() for n, p in hf.named_parameters() if ".experts." in n)
    embedding = 0 if c.tie_embeddings else c.vocab_size * c.d_model
    per_token = (sum(p.numel() for p in hf.parameters()) - embedding - experts * (c.n_experts - c.top_k) // c.n_experts)
    buffers = sum(b.numel() for n, b in hf.named_buffers() if n.endswith("e_score_correction_bias"))
    assert mambart.load(model.path, dtype="f32", threads=1).weight_bytes_per_token == 4 * (per_token + buffers)
