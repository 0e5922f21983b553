"""config.json parsing and family detection (reference doc 1.1-1.3)."""
import json
import math

import pytest

from mambart.config import ModelConfig, load_config, parse_config_json

# The state-spaces/mamba-130m-hf config, stale mamba_ssm keys included (doc 1.6).
HF_130M = {
    "model_type": "mamba", "architectures": ["MambaForCausalLM"],
    "hidden_size": 768, "num_hidden_layers": 24, "vocab_size": 50280,
    "state_size": 16, "conv_kernel": 4, "expand": 2, "time_step_rank": 48,
    "intermediate_size": 1536, "layer_norm_epsilon": 1e-05, "use_bias": False,
    "use_conv_bias": True, "hidden_act": "silu", "residual_in_fp32": True,
    "bos_token_id": 0, "eos_token_id": 0, "pad_token_id": 0,
    "d_model": 2048, "n_layer": 99, "d_inner": 160, "dt_rank": 7,
    "ssm_cfg": {}, "rms_norm": True, "fused_add_norm": True, "pad_vocab_size_multiple": 8,
}

# The state-spaces/mamba-130m config (original mamba_ssm format).
SSM_130M = {
    "d_model": 768, "n_layer": 24, "vocab_size": 50277, "ssm_cfg": {},
    "rms_norm": True, "residual_in_fp32": True, "fused_add_norm": True,
    "pad_vocab_size_multiple": 8,
}


def write(tmp_path, cfg, name="config.json"):
    path = tmp_path / name
    path.write_text(cfg if isinstance(cfg, str) else json.dumps(cfg))
    return path


def test_parse_infinity_forms():
    out = parse_config_json(
        '{"a": [0.0, Infinity], "b": -Infinity, "c": NaN,'
        ' "d": {"__float__": "Infinity"}, "e": {"__float__": "-Infinity"},'
        ' "f": [{"__float__": "NaN"}], "g": {"__float__": 1.5, "x": 1}}')
    assert out["a"] == [0.0, math.inf]
    assert out["b"] == -math.inf
    assert math.isnan(out["c"])
    assert out["d"] == math.inf and out["e"] == -math.inf
    assert math.isnan(out["f"][0])
    assert out["g"] == {"__float__": 1.5, "x": 1}  # only single-key objects convert


def test_parse_bad_float_object():
    with pytest.raises(ValueError):
        parse_config_json('{"a": {"__float__": "lots"}}')
    with pytest.raises(ValueError):
        parse_config_json('{"a": {"__float__": [1]}}')


def test_hf_mamba1_ignores_stale_keys(tmp_path):
    cfg = load_config(write(tmp_path, HF_130M).parent)  # a directory works too
    assert cfg == ModelConfig(
        family="mamba", naming="hf", d_model=768, n_layer=24, vocab_size=50280,
        d_inner=1536, d_state=16, d_conv=4, dt_rank=48, eps=1e-5,
        tie_embeddings=True, use_bias=False, use_conv_bias=True)
    assert cfg.to_dict()["d_inner"] == 1536
    json.dumps(cfg.to_dict())


def test_hf_mamba1_derived_sizes(tmp_path):
    raw = dict(HF_130M, hidden_size=40, expand=1.5, time_step_rank="auto",
               intermediate_size=999, layer_norm_epsilon=1e-6,
               tie_word_embeddings=False, use_bias=True, use_conv_bias=False)
    cfg = load_config(write(tmp_path, raw))
    assert cfg.d_inner == 60          # int(1.5 * 40), intermediate_size ignored
    assert cfg.dt_rank == 3           # ceil(40 / 16)
    assert cfg.eps == 1e-6
    assert (cfg.tie_embeddings, cfg.use_bias, cfg.use_conv_bias) == (False, True, False)


def test_hf_mamba1_defaults(tmp_path):
    cfg = load_config(write(tmp_path, {"model_type": "mamba"}))
    assert (cfg.d_model, cfg.n_layer, cfg.vocab_size, cfg.d_inner, cfg.dt_rank) == \
        (768, 32, 50280, 1536, 48)
    assert cfg.tie_embeddings is True


def test_mamba_ssm_mamba1(tmp_path):
    cfg = load_config(write(tmp_path, SSM_130M))
    assert cfg == ModelConfig(
        family="mamba", naming="mamba_ssm", d_model=768, n_layer=24, vocab_size=50280,
        d_inner=1536, d_state=16, d_conv=4, dt_rank=48, eps=1e-5,
        tie_embeddings=True, use_bias=False, use_conv_bias=True)


@pytest.mark.parametrize("multiple, padded", [(8, 50280), (16, 50288), (1, 50277)])
def test_mamba_ssm_vocab_padding(tmp_path, multiple, padded):
    raw = dict(SSM_130M, pad_vocab_size_multiple=multiple)
    assert load_config(write(tmp_path, raw)).vocab_size == padded


def test_mamba_ssm_ssm_cfg(tmp_path):
    raw = dict(SSM_130M, d_model=64, tie_embeddings=False, ssm_cfg={
        "layer": "Mamba1", "d_state": 8, "d_conv": 3, "expand": 3, "dt_rank": 5,
        "bias": True, "conv_bias": False, "dt_min": 0.01})
    cfg = load_config(write(tmp_path, raw))
    assert (cfg.d_inner, cfg.d_state, cfg.d_conv, cfg.dt_rank) == (192, 8, 3, 5)
    assert (cfg.tie_embeddings, cfg.use_bias, cfg.use_conv_bias) == (False, True, False)


@pytest.mark.parametrize("raw, match", [
    ({"model_type": "mamba2"}, "Mamba-2 .*not supported yet"),
    ({"model_type": "llama"}, r"unsupported model_type 'llama' \(supported: 'mamba', 'mamba2'\)"),
    (dict(SSM_130M, ssm_cfg={"layer": "Mamba2"}), "Mamba-2 .*not supported yet"),
    (dict(SSM_130M, ssm_cfg={"layer": "Mamba3"}), "unsupported mixer layer 'Mamba3'"),
    (dict(SSM_130M, attn_layer_idx=[9, 18]), "attention"),
    (dict(SSM_130M, d_intermediate=512), "d_intermediate 512"),
    (dict(SSM_130M, rms_norm=False), "LayerNorm"),
    ({"vocab_size": 10}, "cannot tell the model family"),
    (dict(HF_130M, hidden_size=0), "'hidden_size' must be a positive integer, got 0"),
    (dict(HF_130M, num_hidden_layers="24"), "'num_hidden_layers' must be a positive integer"),
    (dict(HF_130M, state_size=True), "'state_size' must be a positive integer"),
    (dict(HF_130M, conv_kernel=4.0), "'conv_kernel' must be a positive integer"),
    (dict(HF_130M, time_step_rank=-1), "'time_step_rank' must be a positive integer"),
    (dict(HF_130M, expand=0), "'expand' must be a positive number"),
    (dict(HF_130M, layer_norm_epsilon=0), "'layer_norm_epsilon' must be a positive number"),
    (dict(HF_130M, tie_word_embeddings="yes"), "'tie_word_embeddings' must be true or false"),
    (dict(HF_130M, hidden_act="gelu"), "hidden_act 'gelu'"),
    (dict(SSM_130M, pad_vocab_size_multiple=0), "'pad_vocab_size_multiple' must be"),
    (dict(SSM_130M, n_layer=-2), "'n_layer' must be a positive integer, got -2"),
])
def test_rejected_configs_name_file_and_reason(tmp_path, raw, match):
    path = write(tmp_path, raw)
    with pytest.raises(ValueError, match=match) as info:
        load_config(path)
    msg = str(info.value)
    assert msg.startswith(str(path)) and "\n" not in msg


def test_missing_config_names_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_config(tmp_path)


@pytest.mark.parametrize("text", ['{"model_type": "mamba",', "", "[1, 2]", "\xff"])
def test_invalid_json_names_file(tmp_path, text):
    path = tmp_path / "config.json"
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(ValueError) as info:
        load_config(path)
    assert str(info.value).startswith(str(path))
