"""Mamba-2 against transformers' Mamba2ForCausalLM (f32, CPU); the chunked prefill and the step.
Codestral Mamba's shape (8 groups) here; its Mistral layout in test_mistral_layout.py."""
import numpy as np
import pytest
import torch

import mambart
from models import greedy_both, hf_logits, make_mamba2, random_ids, rel_err, stepwise_logits

SHAPES = {
    "g1_p64_n128": dict(hidden_size=64, head_dim=64, state_size=128, n_groups=1),
    "g2_p32_n64": dict(hidden_size=64, head_dim=32, state_size=64, n_groups=2, num_hidden_layers=3),
    "g2_p64_n64_untied": dict(hidden_size=128, head_dim=64, state_size=64, n_groups=2, tie_word_embeddings=False,
                              chunk_size=16),
    # Codestral Mamba's grouping: 8 B/C groups, one head each and two heads each.
    "g8_p16_n16": dict(hidden_size=64, head_dim=16, state_size=16, n_groups=8),
    "g8_p8_n32_untied": dict(hidden_size=64, head_dim=8, state_size=32, n_groups=8, tie_word_embeddings=False,
                             num_hidden_layers=3),
}
DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}



@pytest.fixture(scope="module", params=[(s, "f32") for s in SHAPES] + [("g2_p32_n64", "bf16"),
                                                                      ("g1_p64_n128", "f16"),
                                                                      ("g8_p16_n16", "bf16")],
                ids=lambda p: f"{p[0]}-{p[1]}")
def pair(request, tmp_path_factory):
    shape, dtype = request.param
    path = tmp_path_factory.mktemp(f"m2-{shape}-{dtype}")
    hf = make_mamba2(path, dtype=DTYPES[dtype], seed=len(shape), **SHAPES[shape])
    return mambart.load(path, threads=2), hf



@pytest.mark.parametrize("length", [1, 41, 64, 150])  # around 64, the CUDA prefill chunk
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


def test_batch_and_continuation(pair):
    model, _ = pair
    prompts = [random_ids(model, n, 20 + n) for n in (3, 70, 12)]
    batch = model.decoder(3)
    batch.prefill(prompts)
    for row, p in enumerate(prompts):
        single = model.decoder(1)
        single.prefill([p[:2]])
        single.prefill([p[2:]])  # a continued prefill is exact
        np.testing.assert_allclose(single.logits()[0], batch.logits()[row], rtol=0,
                                   atol=1e-5 * np.abs(batch.logits()).max())


def test_scalar_path_matches_too(pair):
    from mambart import _core

    model, hf = pair
    ids = random_ids(model, 70, 8)
    default = _core.isa()
    _core.set_isa("scalar")
    try:
        got = model.logits(ids)
    finally:
        _core.set_isa(default)
    assert rel_err(got, hf_logits(hf, ids)) <= 1e-4
