"""Falcon-H1 against transformers (f32, CPU), each shape through every check of
test_hybrids.py (imported below, so that pytest runs them on this file's `pair`)."""
import pytest

from models import load_pair, make_falcon_h1
from test_hybrids import (  # noqa: F401  (collected here)
    test_batch_of_mixed_lengths_equals_single_sequences, test_decode_steps, test_greedy_matches_transformers_generate,
    test_prompt_logits, test_save_load_continue, test_scalar_path_matches_too, test_state_without_kv_is_refused)

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
}


@pytest.fixture(scope="module", params=[(s, "f32") for s in SHAPES] + [("falcon_h1-05b_multipliers", "bf16")],
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


@pytest.mark.parametrize("key,value,message", [
    ("projectors_bias", True, "projectors_bias true is not supported"),
    ("mamba_proj_bias", True, "mamba_proj_bias true is not supported"),
    ("ssm_multipliers", [1.0, 2.0], "'ssm_multipliers' must list 5 numbers"),
    ("mlp_multipliers", [1.0, -2.0], "'mlp_multipliers' must be a positive number"),
    ("mamba_d_head", 7, "mamba_n_heads 4 x mamba_d_head 7 != mamba_d_ssm 128"),
    ("hidden_act", "gelu", "hidden_act 'gelu' is not supported"),
])
def test_falcon_h1_config_errors(small_falcon_h1_dir, key, value, message):
    from mambart.config import config_from_dict, parse_config_json

    raw = parse_config_json((small_falcon_h1_dir[0] / "config.json").read_text())
    raw[key] = value
    with pytest.raises(ValueError, match=message):
        config_from_dict(raw)
