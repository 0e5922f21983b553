"""Falcon-H1, Zamba2 and Jamba against transformers (f32, CPU), each shape through every check of
test_hybrids.py (imported below, so that pytest runs them on this file's `pair`)."""
import pytest

import mambart
from models import load_pair, make_falcon_h1, make_jamba, make_zamba2
from test_hybrids import (  # noqa: F401  (collected here)
    test_batch_of_mixed_lengths_equals_single_sequences, test_decode_steps, test_greedy_matches_transformers_generate,
    test_prefill_runs_the_last_mlp_on_the_last_row_alone, test_prompt_logits, test_save_load_continue, test_scalar_path_matches_too, test_state_without_kv_is_refused)

# Falcon-H1-0.5B's µP multipliers (its config.json).
FALCON_H1_05B = dict(embedding_multiplier=5.656854249492381, lm_head_multiplier=0.0390625, key_multiplier=0.390625,
                     attention_in_multiplier=1.0, attention_out_multiplier=0.9375, ssm_in_multiplier=1.25,
                     ssm_out_multiplier=0.23570226039551587,
                     ssm_multipliers=[0.3535533905932738, 0.25, 0.3535533905932738, 0.5, 0.3535533905932738],
                     mlp_multipliers=[0.8838834764831844, 0.5859375])
# Every multiplier != 1, the attention's input one too.
ALL_MULTIPLIERS = dict(embedding_multiplier=2.0, lm_head_multiplier=0.5, key_multiplier=0.7,
                       attention_in_multiplier=1.3, attention_out_multiplier=0.9, ssm_in_multiplier=1.25,
                       ssm_out_multiplier=0.8, ssm_multipliers=[0.5, 0.7, 1.1, 0.9, 1.3], mlp_multipliers=[0.8, 0.6])

SHAPES = {
    # The Mamba norm, normalising before the gate (Falcon-H1's default), 2 B/C groups, GQA 2.
    "falcon_h1-05b_multipliers": (make_falcon_h1, dict(multipliers=FALCON_H1_05B)),
    # No Mamba norm (y * silu(z)), one KV head, a tied head, another rope theta.
    "falcon_h1-no_mamba_norm": (make_falcon_h1, dict(multipliers=ALL_MULTIPLIERS, mamba_rms_norm=False,
                                                     num_key_value_heads=1, tie_word_embeddings=True,
                                                     rope_theta=1e6, mamba_n_groups=1)),
    # Gate then norm, a head dim apart from hidden / heads, MHA.
    "falcon_h1-gate_then_norm": (make_falcon_h1, dict(multipliers=ALL_MULTIPLIERS, mamba_norm_before_gate=False,
                                                      head_dim=24, num_key_value_heads=4, num_hidden_layers=2)),
    # One shared block at two layers (tied), MLP adapters only, GQA 2, no rope, gelu; rms_norm_eps apart from
    # the Mamba norm's fixed 1e-5.
    "zamba2-one_block": (make_zamba2, dict(num_key_value_heads=2, rms_norm_eps=1e-6,
                                           layers_block_type=("mamba", "hybrid", "mamba", "mamba", "hybrid"))),
    # Two shared blocks over three applications, q/k/v adapters of rank 4, rope, silu, the first layer
    # hybrid; an untied head, with which transformers ties no weights: each application has its own block,
    # and the adapters its copy holds for the other applications go unused.
    "zamba2-two_blocks": (make_zamba2, dict(num_mem_blocks=2, use_shared_attention_adapter=True, adapter_rank=4,
                                            use_mem_rope=True, hidden_act="silu", tie_word_embeddings=False,
                                            mamba_ngroups=1,
                                            layers_block_type=("hybrid", "mamba", "hybrid", "mamba", "hybrid"))),
    # Attention every 3rd layer from 1, experts (top 2 of 4) every 2nd from 0: "ME AF ME MF AE MF".
    "jamba-moe": (make_jamba, dict()),
    # Attention every 2nd layer from 0, experts (top 1 of 8) every 3rd from 2, one KV head, a tied head,
    # dt_rank 6, rms_norm_eps 1e-5.
    "jamba-periods": (make_jamba, dict(num_hidden_layers=5, attn_layer_period=2, attn_layer_offset=0,
                                       expert_layer_period=3, expert_layer_offset=2, num_experts=8,
                                       num_experts_per_tok=1, num_key_value_heads=1, tie_word_embeddings=True,
                                       mamba_dt_rank=6, rms_norm_eps=1e-5)),
    # One expert: every MLP dense.
    "jamba-dense": (make_jamba, dict(num_hidden_layers=4, num_experts=1, num_experts_per_tok=1,
                                     attn_layer_period=4, attn_layer_offset=3)),
}


@pytest.fixture(scope="module", params=[(s, "f32") for s in SHAPES] + [("falcon_h1-05b_multipliers", "bf16"),
                                                                         ("zamba2-two_blocks", "bf16"),
                                                                         ("jamba-moe", "bf16")],
                ids=lambda p: f"{p[0]}-{p[1]}")
def pair(request, tmp_path_factory):
    return load_pair(SHAPES, request.param, tmp_path_factory)


def test_falcon_h1_info(small_falcon_h1_dir):
    """Every layer holds a Mamba-2 mixer and an attention: both states per layer."""
    from mambart.info import describe

    d = describe(str(small_falcon_h1_dir[0]))
    assert (d["family"], d["naming"], d["layer_pattern"]) == ("hybrid", "falcon_h1", "PF PF PF")
    # 3 layers x (K and V) x 2 KV heads x head dim 16 x 4 bytes.
    assert d["state_bytes_per_token"] == 3 * 2 * 2 * 16 * 4
    # 3 Mamba-2 mixers: conv over x, B, C (128 + 2 * 2 * 16 channels, 4 taps) and the (128, 16) SSM state.
    assert d["state_bytes_fixed"] == 4 * 3 * ((128 + 64) * 4 + 128 * 16)
    assert d["parameters"] == sum(p.numel() for p in small_falcon_h1_dir[1].parameters())


def test_zamba2_info(small_zamba2_dir):
    """Each shared block counts once; every layer has a Mamba-2 mixer, the layers "S" a KV cache too."""
    from mambart.info import describe

    d = describe(str(small_zamba2_dir[0]))
    assert (d["naming"], d["layer_pattern"]) == ("zamba2", "SM M SM M SM")
    # 3 applications x (K and V) x 4 KV heads x head dim 32 (2 * hidden / heads) x 4 bytes.
    assert d["state_bytes_per_token"] == 3 * 2 * 4 * 32 * 4
    assert d["state_bytes_fixed"] == 4 * 5 * ((128 + 64) * 4 + 128 * 16)
    assert d["parameters"] == sum(p.numel() for p in small_zamba2_dir[1].parameters())


@pytest.mark.parametrize("shape,pattern", [("jamba-moe", "ME AF ME MF AE MF"), ("jamba-periods", "AF MF AE MF AF"),
                                           ("jamba-dense", "MF MF MF AF")])
def test_jamba_layer_pattern(shape, pattern, tmp_path):
    """Attention and experts where the periods and offsets put them; the parameters transformers has."""
    from mambart.info import describe

    make, kwargs = SHAPES[shape]
    hf = make(tmp_path, **kwargs)
    d = describe(str(tmp_path))
    assert (d["naming"], d["layer_pattern"]) == ("jamba", pattern)
    assert d["parameters"] == sum(p.numel() for p in hf.parameters())


def test_zamba2_tied_copies_are_ignored(small_zamba2_dir, tmp_path):
    """A checkpoint that repeats a shared block under every layer running it loads the same."""
    import shutil

    from safetensors.numpy import load_file, save_file

    src = small_zamba2_dir[0]
    for name in ("config.json", "tokenizer.json"):
        shutil.copy(src / name, tmp_path / name)
    tensors = load_file(src / "model.safetensors")
    owner = "model.layers.0.shared_transformer."
    tensors.update({"model.layers.4." + k[len("model.layers.0."):]: v for k, v in tensors.items()
                    if k.startswith(owner)})
    save_file(tensors, tmp_path / "model.safetensors")
    ids = list(range(1, 40))
    assert (mambart.load(tmp_path).logits(ids) == mambart.load(src).logits(ids)).all()


@pytest.mark.parametrize("fixture,key,value,message", [
    ("small_falcon_h1_dir", "projectors_bias", True, "projectors_bias true is not supported"),
    ("small_falcon_h1_dir", "mamba_proj_bias", True, "mamba_proj_bias true is not supported"),
    ("small_falcon_h1_dir", "ssm_multipliers", [1.0, 2.0], "'ssm_multipliers' must list 5 numbers"),
    ("small_falcon_h1_dir", "mlp_multipliers", [1.0, -2.0], "'mlp_multipliers' must be a positive number"),
    ("small_falcon_h1_dir", "mamba_d_head", 7, "mamba_n_heads 4 x mamba_d_head 7 != mamba_d_ssm 128"),
    ("small_falcon_h1_dir", "hidden_act", "gelu", "hidden_act 'gelu' is not supported"),
    ("small_zamba2_dir", "num_mem_blocks", 4, "num_mem_blocks 4 exceeds the 3 hybrid layers"),
    ("small_zamba2_dir", "hidden_act", "relu", "hidden_act 'relu' is not supported"),
    ("small_zamba2_dir", "layers_block_type", ["mamba"], "'layers_block_type' must list 5 layer kinds"),
    ("small_zamba2_dir", "add_bias_linear", True, "add_bias_linear true is not supported"),
    ("small_jamba_dir", "attn_layer_offset", 8, r"'attn_layer_offset' must be an int in \[0, attn_layer_period 3\)"),
    ("small_jamba_dir", "num_experts_per_tok", 9, "num_experts_per_tok 9 exceeds num_experts 4"),
    ("small_jamba_dir", "mamba_proj_bias", True, "mamba_proj_bias true is not supported"),
])
def test_config_errors(request, fixture, key, value, message):
    from mambart.config import config_from_dict, parse_config_json

    raw = parse_config_json((request.getfixturevalue(fixture)[0] / "config.json").read_text())
    raw[key] = value
    with pytest.raises(ValueError, match=message):
        config_from_dict(raw)


@pytest.mark.parametrize("dtype", ["f16", "bf16", "q8", "q4"])
def test_jamba_weight_types(small_jamba_dir, dtype, tmp_path):
    """Each weight type's KL from f32 within test_dtypes' bounds; f16 and bf16 equal to transformers
    on the same rounded weights; a converted checkpoint equal to converting at load."""
    import subprocess
    import sys
    import tempfile

    import numpy as np
    import torch

    from models import hf_logits, rel_err
    from test_dtypes import BOUNDS, IDS, mean_kl

    path, hf = small_jamba_dir
    got = mambart.load(path, dtype=dtype).logits(IDS)
    assert mean_kl(mambart.load(path, dtype="f32").logits(IDS), got) <= BOUNDS[dtype][0]
    if dtype in ("f16", "bf16"):
        rounded = {"f16": torch.float16, "bf16": torch.bfloat16}[dtype]
        # The matrices that take the weight type: projections, embedding, head, the experts (stacked 3-D
        # here); not the router, the conv or A_log.
        f32 = ("router", "conv1d", "A_log")
        state = {name: p.to(rounded).float() if p.dim() >= 2 and not any(k in name for k in f32) else p
                 for name, p in hf.state_dict().items()}
        hf_rounded = type(hf)(hf.config).eval()
        hf_rounded.load_state_dict(state)
        assert rel_err(got, hf_logits(hf_rounded, IDS)) <= 1e-4
    out = tmp_path / dtype
    r = subprocess.run([sys.executable, "-m", "mambart", "convert", str(path), str(out), "--dtype", dtype],
                       capture_output=True, text=True, timeout=120, cwd=tempfile.gettempdir())
    assert r.returncode == 0, r.stderr
    np.testing.assert_array_equal(mambart.load(out).logits(IDS), got)


def test_zamba2_step_reads_a_shared_block_per_application(small_zamba2_dir):
    """weight_bytes_per_token (the decode bound) counts a shared block's weights at each of its
    applications: block 0 runs at layers 0 and 4, block 1 at layer 2."""
    path, hf = small_zamba2_dir
    block0 = sum(p.numel() for n, p in hf.named_parameters()
                 if n.startswith("model.layers.0.shared_transformer.") and "adapter_list" not in n)
    params = sum(p.numel() for p in hf.parameters())  # the head is tied: the embedding is read whole
    assert mambart.load(path, dtype="f32", threads=1).weight_bytes_per_token == 4 * (params + block0)
