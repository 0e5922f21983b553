"""Whole-model agreement with transformers' MambaForCausalLM and FalconMambaForCausalLM (f32, CPU)."""
import numpy as np
import pytest
import torch

import mambart
from models import greedy_both, hf_logits, make_mamba, random_ids, rel_err, stepwise_logits

SHAPES = {
    # name: make_mamba kwargs
    "base": dict(hidden_size=32, num_hidden_layers=2, state_size=8, vocab_size=320),
    "dt_rank_5": dict(hidden_size=48, num_hidden_layers=3, state_size=16, time_step_rank=5, vocab_size=333),
    "inner_90": dict(hidden_size=45, num_hidden_layers=2, state_size=7, expand=2, vocab_size=301),
    "untied_bias_k3": dict(hidden_size=40, num_hidden_layers=2, state_size=16, time_step_rank=13, conv_kernel=3,
                           tie_word_embeddings=False, use_bias=True, vocab_size=320),
    # Falcon-Mamba: weightless RMSNorms on dt, B and C; a small epsilon, and one large enough to matter.
    "falcon_base": dict(hidden_size=32, num_hidden_layers=2, state_size=8, vocab_size=320, mixer_rms_eps=1e-6),
    "falcon_dt_rank_5": dict(hidden_size=48, num_hidden_layers=3, state_size=16, time_step_rank=5,
                             vocab_size=333, mixer_rms_eps=1e-5),
    "falcon_untied_bias_eps": dict(hidden_size=40, num_hidden_layers=2, state_size=7, time_step_rank=1,
                                   conv_kernel=3, tie_word_embeddings=False, use_bias=True, vocab_size=301,
                                   mixer_rms_eps=0.05),
}
DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}



@pytest.fixture(scope="module", params=[(s, "f32") for s in SHAPES] + [("base", "bf16"), ("dt_rank_5", "f16"),
                                                                      ("falcon_base", "bf16")],
                ids=lambda p: f"{p[0]}-{p[1]}")
def pair(request, tmp_path_factory):
    shape, dtype = request.param
    path = tmp_path_factory.mktemp(f"{shape}-{dtype}")
    hf = make_mamba(path, dtype=DTYPES[dtype], seed=len(shape), **SHAPES[shape])
    return mambart.load(path, threads=2), hf



def test_prompt_logits(pair):
    model, hf = pair
    ids = random_ids(model, 41, 1)
    assert rel_err(model.logits(ids), hf_logits(hf, ids)) <= 1e-4


def test_prompt_longer_than_a_prefill_chunk(pair):
    model, hf = pair
    ids = random_ids(model, 300, 2)  # the decoder prefills in chunks of 256
    assert rel_err(model.logits(ids), hf_logits(hf, ids)) <= 1e-4


def test_decode_steps(pair):
    """Prefill 9 tokens, then 32 single steps; compare with the full forward."""
    model, hf = pair
    ids = random_ids(model, 9 + 32, 3)
    ref = hf_logits(hf, ids)
    assert rel_err(stepwise_logits(model, ids, 9), ref[8:]) <= 1e-4


def test_prefill_continuation_is_exact(pair):
    """A second prefill continues the state: 13 + 7 tokens == 20 tokens (unlike transformers' Mamba-1 cache)."""
    model, hf = pair
    ids = random_ids(model, 20, 4)
    dec = model.decoder(1)
    dec.prefill([ids[:13]])
    dec.prefill([ids[13:]])
    assert rel_err(dec.logits()[0], hf_logits(hf, ids)[-1]) <= 1e-4


def test_greedy_matches_transformers_generate(pair):
    model, hf = pair
    ids = random_ids(model, 7, 5)
    got, expected = greedy_both(model, hf, ids)
    assert got == expected


def test_batch_equals_single_sequences(pair):
    model, _ = pair
    prompts = [random_ids(model, n, 10 + n) for n in (5, 1, 12)]
    batch = model.decoder(3)
    batch.prefill(prompts)
    singles = [model.decoder(1) for _ in prompts]
    for d, p in zip(singles, prompts):
        d.prefill([p])
    for step in range(6):
        np.testing.assert_allclose(batch.logits(), np.concatenate([d.logits() for d in singles]),
                                   rtol=0, atol=1e-5 * np.abs(batch.logits()).max())
        tokens = [(7 * step + 3 * row) % model.config.vocab_size for row in range(3)]
        batch.step(tokens)
        for d, t in zip(singles, tokens):
            d.step([t])


def test_scalar_kernels_match_too(pair):
    """The portable path (MAMBART_CPU_ISA=scalar) gives the same model."""
    from mambart import _core

    model, hf = pair
    ids = random_ids(model, 23, 6)
    default = _core.isa()
    _core.set_isa("scalar")
    try:
        got = model.logits(ids)
    finally:
        _core.set_isa(default)
    assert rel_err(got, hf_logits(hf, ids)) <= 1e-4


def test_sharded_safetensors(tmp_path):
    """model.safetensors.index.json + shards load like the single file."""
    hf = make_mamba(tmp_path / "one", hidden_size=32, num_hidden_layers=3, state_size=8, vocab_size=320)
    hf.save_pretrained(tmp_path / "sharded", max_shard_size="30KB")
    shards = sorted(p.name for p in (tmp_path / "sharded").glob("model-*.safetensors"))
    assert len(shards) > 2 and (tmp_path / "sharded" / "model.safetensors.index.json").exists()
    (tmp_path / "sharded" / "tokenizer.json").write_bytes((tmp_path / "one" / "tokenizer.json").read_bytes())
    ids = random_ids(mambart.load(tmp_path / "one"), 30, 9)
    assert rel_err(mambart.load(tmp_path / "sharded").logits(ids), hf_logits(hf, ids)) <= 1e-4
