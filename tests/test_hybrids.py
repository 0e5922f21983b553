"""The attention hybrids against transformers (f32, CPU): Granite-4.0-H (granitemoehybrid without
experts) and Bamba. Mamba-2 and attention layers, the SwiGLU MLP after every mixer, Granite's
multipliers, rope (Bamba's partial) or none, KV caches."""
import numpy as np
import pytest
import torch

import mambart
from mambart import _core
from models import (greedy_both, hf_logits, make_bamba, make_granite_hybrid, random_ids, rel_err,
                    stepwise_logits)

SHAPES = {
    # GQA with 2 KV heads, full rope.
    "granite-rope_gqa2": dict(),
    # No position encoding, MHA, every multiplier != 1 (Granite-4.0-H's own values).
    "granite-nope_mha_multipliers": dict(position_embedding_type=None, num_key_value_heads=4,
                                         embedding_multiplier=12.0, residual_multiplier=0.22,
                                         attention_multiplier=0.0078125, logits_scaling=6.0,
                                         layer_types=("mamba", "mamba", "attention", "mamba")),
    # One KV head, another rope theta, tied head, attention first; a partial_rotary_factor that
    # transformers' Granite ignores (it turns whole heads), so mambart must too.
    "granite-gqa1_partial_rope_tied": dict(hidden_size=96, num_attention_heads=6, num_key_value_heads=1,
                                           partial_rotary_factor=0.5, rope_theta=500.0, tie_word_embeddings=True,
                                           mamba_n_heads=6, mamba_n_groups=3, shared_intermediate_size=40,
                                           layer_types=("attention", "mamba", "attention", "mamba", "mamba")),
    # Bamba's defaults: half of each head rotates, 2 KV heads, gate_proj and up_proj apart.
    "bamba-gqa2": dict(),
    # MHA, a quarter of each head rotating at another theta, tied head, in_proj / out_proj biases
    # and no conv bias, attention first and last.
    "bamba-mha_quarter_rope_tied_bias": dict(num_key_value_heads=4, num_hidden_layers=4, attn_layer_indices=(0, 3),
                                            rope_parameters={"rope_type": "default", "rope_theta": 500.0,
                                                             "partial_rotary_factor": 0.25},
                                            tie_word_embeddings=True, mamba_proj_bias=True, mamba_conv_bias=False),
    # One KV head, whole heads rotating, 3 groups, SSD chunks of 64 (a prompt spans several).
    "bamba-gqa1_full_rope_chunk64": dict(hidden_size=96, num_attention_heads=6, num_key_value_heads=1,
                                         mamba_n_heads=6, mamba_n_groups=3, intermediate_size=40, mamba_chunk_size=64,
                                         rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                                          "partial_rotary_factor": 1.0},
                                         num_hidden_layers=4, attn_layer_indices=(1, 2)),
}
MAKERS = {"granite": make_granite_hybrid, "bamba": make_bamba}
DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16}


@pytest.fixture(scope="module", params=[(s, "f32") for s in SHAPES] + [("granite-rope_gqa2", "bf16"),
                                                                         ("bamba-gqa2", "bf16")],
                ids=lambda p: f"{p[0]}-{p[1]}")
def pair(request, tmp_path_factory):
    shape, dtype = request.param
    path = tmp_path_factory.mktemp(f"{shape}-{dtype}")
    make = MAKERS[shape.split("-")[0]]
    hf = make(path, dtype=DTYPES[dtype], seed=len(shape), **SHAPES[shape])
    return mambart.load(path, threads=2), hf


# 300 > the prefill chunk (256), the attention key block (64) and the KV cache block (256).
@pytest.mark.parametrize("length", [1, 41, 300])
def test_prompt_logits(pair, length):
    model, hf = pair
    ids = random_ids(model, length, length)
    assert rel_err(model.logits(ids), hf_logits(hf, ids)) <= 1e-4


def test_decode_steps(pair):
    model, hf = pair
    ids = random_ids(model, 70 + 32, 3)
    ref = hf_logits(hf, ids)
    assert rel_err(stepwise_logits(model, ids, 70), ref[69:]) <= 1e-4


def test_greedy_matches_transformers_generate(pair):
    model, hf = pair
    ids = random_ids(model, 9, 5)
    got, expected = greedy_both(model, hf, ids)
    assert got == expected


def test_batch_of_mixed_lengths_equals_single_sequences(pair):
    model, _ = pair
    prompts = [random_ids(model, n, 20 + n) for n in (3, 270, 12)]
    batch = model.decoder(3)
    batch.prefill(prompts)
    singles = [model.decoder(1) for _ in prompts]
    for d, p in zip(singles, prompts):
        d.prefill([p[:2]])
        d.prefill([p[2:]])  # a continued prefill extends the KV cache exactly
    for step in range(5):
        np.testing.assert_allclose(batch.logits(), np.concatenate([d.logits() for d in singles]), rtol=0,
                                   atol=1e-5 * np.abs(batch.logits()).max())
        tokens = [(7 * step + 3 * row) % model.config.vocab_size for row in range(3)]
        batch.step(tokens)
        for d, t in zip(singles, tokens):
            d.step([t])
    assert batch._core.context() == [len(p) + 5 for p in prompts]


def test_save_load_continue(pair):
    model, _ = pair
    whole = model.decoder(2)
    model.generate(["def fib", "import numpy"], 12, state=whole, temperature=0)
    part = model.decoder(2)
    model.generate(["def fib", "import numpy"], 5, state=part, temperature=0)
    restored = model.load_state(part.save_state())
    assert restored._core.context() == part._core.context()
    model.generate(["", ""], 7, state=restored, temperature=0)
    for row in range(2):
        assert restored.history(row) == whole.history(row)


def test_prefill_runs_the_last_mlp_on_the_last_row_alone(pair):
    """A prefill runs the blocks after the last one with state (the last layer's MLP or experts) on
    its last row alone, and not at all in the chunks before it (600 tokens: three chunks): the same
    logits, to the bit, as a prefill that takes every row through every block (all_logits), and the
    same state after it."""
    model, _ = pair
    ids = random_ids(model, 600, 5)
    d = model.decoder(1)
    d.prefill([ids])
    whole = model.decoder(1)
    whole.prefill([ids], all_logits=True)
    np.testing.assert_array_equal(d.logits(), whole.logits())
    step = random_ids(model, 1, 6)
    d.step(step)
    whole.step(step)
    np.testing.assert_array_equal(d.logits(), whole.logits())


def test_scalar_path_matches_too(pair):
    model, hf = pair
    ids = random_ids(model, 70, 8)
    default = _core.isa()
    _core.set_isa("scalar")
    try:
        got = model.logits(ids)
    finally:
        _core.set_isa(default)
    assert rel_err(got, hf_logits(hf, ids)) <= 1e-4


def test_state_without_kv_is_refused(pair):
    model, _ = pair
    from mambart import state

    dec = model.decoder(1)
    dec.prefill([random_ids(model, 5, 1)])
    with pytest.raises(ValueError, match="KV caches"):
        dec._core.restore(dec._core.conv_state(), dec._core.ssm_state(), np.zeros(0, np.float32), [[1, 2]])
    assert state.load(model, state.dump(dec))._core.context() == [5]


def test_state_is_mamba_layers_plus_kv_caches(pair):
    """No conv or SSM state for attention layers, no KV cache for Mamba layers: the saved arrays and a
    row blob hold exactly what `mambart info` says a sequence needs."""
    from mambart.info import _state_sizes

    model, _ = pair
    c = model.config
    sizes = _state_sizes(c)
    dec = model.decoder(2)
    dec.prefill([random_ids(model, 7, 2), random_ids(model, 300, 3)])
    conv, ssm, kv = dec._core.conv_state(), dec._core.ssm_state(), dec._core.kv_state()
    assert conv.shape[0] == ssm.shape[0] == c.mamba_layers == c.layers.count("M")
    assert conv.nbytes + ssm.nbytes == 2 * sizes["state_bytes_fixed"]
    assert kv.nbytes == (7 + 300) * sizes["state_bytes_per_token"]
    blob = dec._core.export_row(0)
    assert sizes["state_bytes_fixed"] + 7 * sizes["state_bytes_per_token"] < len(blob) <= (
        sizes["state_bytes_fixed"] + 7 * sizes["state_bytes_per_token"] + 4 * c.vocab_size + 4 * 7 + 200)
