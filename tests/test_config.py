"""config.json parsing and family detection (reference doc 1.1-1.4)."""
import dataclasses
import json
import math

import pytest

from mambart.config import ModelConfig, config_from_dict, load_config, parse_config_json

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


def test_hf_falcon_mamba(tmp_path):
    """A FalconMambaConfig as transformers writes it: Mamba-1 sizes plus mixer_rms_eps."""
    raw = dict(HF_130M, model_type="falcon_mamba", architectures=["FalconMambaForCausalLM"], hidden_size=64,
               time_step_rank="auto", mixer_rms_eps=1e-3, tie_word_embeddings=False)
    cfg = load_config(write(tmp_path, raw))
    assert cfg == dataclasses.replace(load_config(write(tmp_path, dict(raw, model_type="mamba"))),
                                      dt_bc_norm=True, dt_bc_eps=1e-3)
    assert (cfg.family, cfg.dt_rank, cfg.d_inner, cfg.tie_embeddings) == ("mamba", 4, 128, False)
    assert load_config(write(tmp_path, {"model_type": "falcon_mamba"})).dt_bc_eps == 1e-6  # the class default
    with pytest.raises(ValueError, match="'mixer_rms_eps' must be a positive number, got 0"):
        load_config(write(tmp_path, dict(raw, mixer_rms_eps=0)))


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
    ({"model_type": "llama"},
     r"unsupported model_type 'llama' \(supported: 'mamba', 'mamba2', 'falcon_mamba', 'granitemoehybrid', 'bamba', "
     r"'falcon_h1', 'nemotron_h', 'jamba', 'zamba2'\)"),
    (dict(SSM_130M, ssm_cfg={"layer": "Mamba3"}),
     r"unsupported mixer layer 'Mamba3' in ssm_cfg \(supported: 'Mamba1', 'Mamba2'\)"),
    (dict(SSM_130M, attn_layer_idx=[9, 18]), "attention"),
    (dict(SSM_130M, d_intermediate=512), "d_intermediate 512"),
    (dict(SSM_130M, rms_norm=False), "LayerNorm"),
    ({"vocab_size": 10}, "cannot tell the model family"),
    ({"model_type": "granitemoehybrid", "num_local_experts": 4, "num_experts_per_tok": 5},
     "num_experts_per_tok 5 exceeds num_local_experts 4"),
    ({"model_type": "granitemoehybrid", "num_local_experts": -1}, "'num_local_experts' must be a positive integer"),
    ({"model_type": "granitemoehybrid", "num_local_experts": 0, "layer_types": ["mamba", "mlp"],
      "num_hidden_layers": 2}, "'layer_types' must list 2 layer kinds"),
    ({"model_type": "granitemoehybrid", "num_local_experts": 0, "position_embedding_type": "rope",
      "rope_parameters": {"rope_type": "dynamic", "rope_theta": 1e4, "factor": 2.0}},
     "rope_type 'dynamic' recomputes its frequencies as the context grows"),
    ({"model_type": "bamba", "rope_parameters": {"rope_type": "longrope", "short_factor": [1.0]}},
     "rope_type 'longrope' recomputes"),
    ({"model_type": "bamba", "rope_parameters": {"rope_type": "su"}},
     r"rope_type 'su' is not supported \(supported: default, linear, llama3, yarn\)"),
    ({"model_type": "bamba", "rope_parameters": {"rope_type": "linear"}}, "rope_type 'linear' needs 'factor'"),
    ({"model_type": "falcon_h1", "rope_parameters": {"rope_type": "linear", "factor": -2}}, "'factor' a positive"),
    ({"model_type": "bamba", "rope_parameters": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 4.0,
                                                 "high_freq_factor": 1.0}}, "high_freq_factor 1.0 must exceed"),
    ({"model_type": "bamba", "rope_parameters": {"rope_type": "yarn", "factor": 4.0, "truncate": 1}},
     "'truncate' must be true or false"),
    ({"model_type": "bamba", "rope_parameters": [1, 2]}, "'rope_parameters' must be an object"),
    ({"model_type": "bamba", "max_position_embeddings": "4k",
      "rope_parameters": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 1024}},
     "needs 'max_position_embeddings' a positive integer, got '4k'"),
    ({"model_type": "granitemoehybrid", "num_local_experts": 0, "num_key_value_heads": 5},
     "num_key_value_heads 5 must divide num_attention_heads"),
    ({"model_type": "nemotron_h", "mlp_hidden_act": "silu"}, "mlp_hidden_act 'silu' is not supported"),
    ({"model_type": "nemotron_h", "moe_latent_size": 0}, "'moe_latent_size' must be a positive integer"),
    ({"model_type": "nemotron_h", "hybrid_override_pattern": "M-X"}, "'hybrid_override_pattern' must be a string of"),
    ({"model_type": "nemotron_h", "layers_block_type": ["mamba", "ssm"]}, "'layers_block_type' must list layer kinds"),
    ({"model_type": "nemotron_h", "layers_block_type": ["mamba", ["moe"]]}, "'layers_block_type' must list layer kinds"),
    ({"model_type": "granitemoehybrid", "num_local_experts": 0, "layer_types": ["mamba", {}],
      "num_hidden_layers": 2}, "'layer_types' must list 2 layer kinds"),
    ({"model_type": "zamba2", "num_hidden_layers": 2, "layers_block_type": ["mamba", []]},
     "'layers_block_type' must list 2 layer kinds"),
    ({"model_type": "nemotron_h", "n_routed_experts": 6, "n_group": 4},
     "n_group 4 must divide n_routed_experts 6"),
    ({"model_type": "nemotron_h", "n_group": 4, "topk_group": 1, "num_experts_per_tok": 3},
     "must hold num_experts_per_tok 3 experts"),
    ({"model_type": "nemotron_h", "mamba_num_heads": 6}, "mamba_num_heads 6 is not a multiple of n_groups 8"),
    ({"model_type": "bamba", "mlp_bias": True}, "mlp_bias true is not supported yet"),
    ({"model_type": "bamba", "attention_bias": True}, "attention_bias true is not supported yet"),
    ({"model_type": "bamba", "num_hidden_layers": 4, "attn_layer_indices": [1, 4]},
     r"'attn_layer_indices' must list layer indices in \[0, 4\), got \[1, 4\]"),
    ({"model_type": "bamba", "hidden_size": 96, "num_attention_heads": 16, "num_key_value_heads": 4},
     "partial_rotary_factor 0.5 leaves 3 of 6 dims to rotate"),
    ({"model_type": "bamba", "rope_scaling": {"type": "dynamic", "factor": 2.0}}, "rope_type 'dynamic' recomputes"),
    ({"model_type": "bamba", "num_attention_heads": 12}, "num_key_value_heads 8 must divide num_attention_heads"),
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


# --- Mamba-2 -----------------------------------------------------------------------

# An AntonV/mamba2-130m-hf style config as older transformers wrote it (bare Infinity).
HF2_130M_TEXT = """{
  "model_type": "mamba2", "architectures": ["Mamba2ForCausalLM"],
  "hidden_size": 768, "num_hidden_layers": 24, "vocab_size": 50288, "num_heads": 24,
  "head_dim": 64, "n_groups": 1, "state_size": 128, "expand": 2, "conv_kernel": 4,
  "chunk_size": 256, "use_bias": false, "use_conv_bias": true, "layer_norm_epsilon": 1e-05,
  "time_step_limit": [0.0, Infinity], "tie_word_embeddings": true, "norm_before_gate": false,
  "rms_norm": true, "hidden_act": "silu", "bos_token_id": 0, "eos_token_id": 0,
  "pad_token_id": 0, "time_step_rank": 48
}"""

# The state-spaces/mamba2-130m config (original mamba_ssm format).
SSM2_130M = {
    "d_model": 768, "d_intermediate": 0, "n_layer": 24, "vocab_size": 50277,
    "ssm_cfg": {"layer": "Mamba2"}, "attn_layer_idx": [], "attn_cfg": {}, "rms_norm": True,
    "residual_in_fp32": True, "fused_add_norm": True, "pad_vocab_size_multiple": 16,
    "tie_embeddings": True,
}

MAMBA2_130M = ModelConfig(
    family="mamba2", naming="hf", d_model=768, n_layer=24, vocab_size=50288, d_inner=1536,
    d_state=128, d_conv=4, dt_rank=0, eps=1e-5, tie_embeddings=True, use_bias=False,
    use_conv_bias=True, n_heads=24, head_dim=64, n_groups=1, chunk_size=256, dt_min=0.0,
    dt_max=math.inf, gated_norm=True, d_has_hdim=False)


def test_mamba1_has_mamba2_fields_at_rest(tmp_path):
    cfg = load_config(write(tmp_path, HF_130M))
    assert (cfg.n_heads, cfg.head_dim, cfg.n_groups, cfg.chunk_size) == (0, 0, 0, 0)
    assert (cfg.dt_min, cfg.dt_max, cfg.gated_norm, cfg.d_has_hdim) == (0.0, math.inf, False, False)


def test_hf_mamba2_bare_infinity(tmp_path):
    cfg = load_config(write(tmp_path, HF2_130M_TEXT))
    assert cfg == MAMBA2_130M
    assert json.loads(json.dumps(cfg.to_dict()))["dt_max"] == math.inf


def test_hf_mamba2_float_object_and_defaults(tmp_path):
    # transformers 5 writes {"__float__": "Infinity"}; n_groups and tie default to 8 / false.
    raw = json.loads(HF2_130M_TEXT.replace("Infinity", '{"__float__": "Infinity"}'))
    assert raw["time_step_limit"] == [0.0, {"__float__": "Infinity"}]
    del raw["n_groups"], raw["tie_word_embeddings"]
    cfg = load_config(write(tmp_path, raw))
    assert cfg.n_groups == 8 and cfg.tie_embeddings is False and cfg.dt_max == math.inf


def test_hf_mamba2_from_transformers(tmp_path):
    from transformers import Mamba2Config

    Mamba2Config(hidden_size=48, num_heads=12, head_dim=8, n_groups=3, state_size=16,
                 num_hidden_layers=3, vocab_size=100, expand=2, chunk_size=64,
                 time_step_limit=(0.01, float("inf")), use_bias=True,
                 layer_norm_epsilon=1e-6).save_pretrained(tmp_path)
    assert '"__float__": "Infinity"' in (tmp_path / "config.json").read_text()
    cfg = load_config(tmp_path)
    assert (cfg.family, cfg.naming, cfg.d_model, cfg.d_inner, cfg.n_layer) == \
        ("mamba2", "hf", 48, 96, 3)
    assert (cfg.n_heads, cfg.head_dim, cfg.n_groups, cfg.d_state, cfg.chunk_size) == \
        (12, 8, 3, 16, 64)
    assert (cfg.dt_min, cfg.dt_max, cfg.eps, cfg.use_bias) == (0.01, math.inf, 1e-6, True)
    assert (cfg.dt_rank, cfg.gated_norm, cfg.tie_embeddings) == (0, True, False)


def test_bamba_from_transformers(tmp_path):
    """BambaConfig's defaults, and its partial rotary factor: 0.5 over a top-level key,
    rope_parameters' own factor where it names one."""
    from transformers import BambaConfig

    BambaConfig(partial_rotary_factor=1.0).save_pretrained(tmp_path)
    cfg = load_config(tmp_path)
    assert (cfg.family, cfg.naming, cfg.d_model, cfg.n_layer, cfg.vocab_size, cfg.layers) == \
        ("hybrid", "bamba", 4096, 32, 128000, " ".join(["MF"] * 32))
    assert (cfg.attn_heads, cfg.kv_heads, cfg.attn_head_dim, cfg.rope_dim, cfg.rope_theta) == (32, 8, 128, 64, 1e4)
    assert (cfg.n_heads, cfg.head_dim, cfg.n_groups, cfg.d_state, cfg.mlp_inner, cfg.eps) == \
        (128, 64, 1, 256, 14336, 1e-5)
    assert cfg.attn_scale == 128 ** -0.5 and not cfg.tie_embeddings
    BambaConfig(num_hidden_layers=4, attn_layer_indices=[0, 2], hidden_size=64, num_attention_heads=4,
                num_key_value_heads=None, mamba_n_heads=4, head_dim=8,
                rope_parameters={"rope_type": "default", "rope_theta": 5e5,
                                 "partial_rotary_factor": 0.25}).save_pretrained(tmp_path)
    cfg = load_config(tmp_path)
    assert (cfg.layers, cfg.kv_heads, cfg.attn_head_dim, cfg.rope_dim, cfg.rope_theta) == ("AF MF AF MF", 4, 8, 2, 5e5)


def test_hf_mamba2_all_defaults(tmp_path):
    cfg = load_config(write(tmp_path, {"model_type": "mamba2"}))
    assert (cfg.d_model, cfg.n_layer, cfg.vocab_size, cfg.d_inner, cfg.d_state) == \
        (4096, 64, 32768, 8192, 128)
    assert (cfg.n_heads, cfg.head_dim, cfg.n_groups, cfg.chunk_size) == (128, 64, 8, 256)


def test_mamba_ssm_mamba2_defaults(tmp_path):
    cfg = load_config(write(tmp_path, SSM2_130M))
    assert cfg == dataclasses.replace(MAMBA2_130M, naming="mamba_ssm")


def test_mamba_ssm_mamba2_vocab_padding(tmp_path):
    raw = dict(SSM2_130M, vocab_size=50277, pad_vocab_size_multiple=16)
    assert load_config(write(tmp_path, raw)).vocab_size == 50288   # 50277 -> 50288
    raw = dict(SSM2_130M, vocab_size=33)
    assert load_config(write(tmp_path, raw)).vocab_size == 48


def test_mamba_ssm_mamba2_options(tmp_path):
    raw = dict(SSM2_130M, d_model=64, tie_embeddings=False, ssm_cfg={
        "layer": "Mamba2", "d_state": 16, "d_conv": 3, "expand": 3, "headdim": 16,
        "ngroups": 4, "d_ssm": 192, "D_has_hdim": True, "rmsnorm": False,
        "norm_before_gate": False, "dt_limit": [0.001, 0.1], "chunk_size": 32,
        "bias": True, "conv_bias": False, "dt_min": 0.5, "A_init_range": [1, 16]})
    cfg = load_config(write(tmp_path, raw))
    assert (cfg.d_inner, cfg.d_state, cfg.d_conv, cfg.n_heads, cfg.head_dim) == (192, 16, 3, 12, 16)
    assert (cfg.n_groups, cfg.chunk_size, cfg.dt_min, cfg.dt_max) == (4, 32, 0.001, 0.1)
    assert (cfg.d_has_hdim, cfg.gated_norm, cfg.tie_embeddings) == (True, False, False)
    assert (cfg.use_bias, cfg.use_conv_bias, cfg.eps, cfg.dt_rank) == (True, False, 1e-5, 0)


def test_mamba_ssm_dt_limit_infinity_text(tmp_path):
    text = json.dumps(dict(SSM2_130M, ssm_cfg={"layer": "Mamba2", "dt_limit": [0.0, 99]}))
    cfg = load_config(write(tmp_path, text.replace("99", "Infinity")))
    assert (cfg.dt_min, cfg.dt_max) == (0.0, math.inf)


HF2 = json.loads(HF2_130M_TEXT)


@pytest.mark.parametrize("raw, match", [
    (dict(SSM2_130M, ssm_cfg={"layer": "Mamba2", "d_ssm": 1024}),
     "ssm_cfg d_ssm 1024 != d_inner 1536"),
    (dict(SSM2_130M, ssm_cfg={"layer": "Mamba2", "norm_before_gate": True}),
     "norm_before_gate true is not supported"),
    (dict(SSM2_130M, rms_norm=False), r"rms_norm false \(LayerNorm blocks\)"),
    (dict(SSM2_130M, ssm_cfg={"layer": "Mamba3"}), "unsupported mixer layer 'Mamba3'"),
    (dict(SSM2_130M, attn_layer_idx=[9, 18]), "attention layers"),
    (dict(SSM2_130M, d_intermediate=3072), "d_intermediate 3072 > 0"),
    (dict(SSM2_130M, ssm_cfg={"layer": "Mamba2", "headdim": 100}),
     "d_inner 1536 is not a multiple of ssm_cfg headdim 100"),
    (dict(SSM2_130M, ssm_cfg={"layer": "Mamba2", "ngroups": 5}),
     r"heads \(d_inner / headdim\) 24 is not a multiple of ngroups 5"),
    (dict(SSM2_130M, ssm_cfg={"layer": "Mamba2", "dt_limit": [0.1, 0.01]}),
     r"'dt_limit' must satisfy 0 <= low <= high, got \[0.1, 0.01\]"),
    (dict(SSM2_130M, ssm_cfg={"layer": "Mamba2", "dt_limit": 5}), "'dt_limit' must be a pair"),
    (dict(SSM2_130M, ssm_cfg={"layer": "Mamba2", "D_has_hdim": 1}),
     "'D_has_hdim' must be true or false"),
    (dict(HF2, num_heads=20), r"hidden_size \* expand \(1536\) != num_heads \* head_dim "
     r"\(20 \* 64 = 1280\)"),
    (dict(HF2, n_groups=5), "num_heads 24 is not a multiple of n_groups 5"),
    (dict(HF2, time_step_limit=[0.0, float("nan")]), "'time_step_limit' must satisfy"),
    (dict(HF2, time_step_limit=[-1.0, 1.0]), "'time_step_limit' must satisfy"),
    (dict(HF2, time_step_limit=[0.0]), "'time_step_limit' must be a pair of numbers"),
    (dict(HF2, chunk_size=0), "'chunk_size' must be a positive integer, got 0"),
    (dict(HF2, hidden_act="gelu"), "hidden_act 'gelu'"),
])
def test_rejected_mamba2_configs(tmp_path, raw, match):
    path = write(tmp_path, raw)
    with pytest.raises(ValueError, match=match) as info:
        load_config(path)
    msg = str(info.value)
    assert msg.startswith(str(path)) and "\n" not in msg


def test_granite_experts_from_transformers(tmp_path):
    """GraniteMoeHybridConfig's defaults: 8 experts, top 2, beside the shared MLP in every layer."""
    from transformers import GraniteMoeHybridConfig

    GraniteMoeHybridConfig(num_hidden_layers=3, layer_types=["mamba", "attention", "mamba"]).save_pretrained(tmp_path)
    cfg = load_config(tmp_path)
    assert (cfg.layers, cfg.n_experts, cfg.top_k, cfg.expert_inner, cfg.shared_inner, cfg.mlp_inner) == \
        ("ME AE ME", 8, 2, 11008, 1024, 0)
    assert (cfg.router_sigmoid, cfg.norm_topk, cfg.n_group, cfg.topk_group, cfg.routed_scale) == \
        (False, True, 1, 1, 1.0)


def test_nemotron_h_from_transformers(tmp_path):
    """NemotronHConfig's defaults (4 layers, one of each kind), its older hybrid_override_pattern and
    mamba_* spellings, and a head never tied."""
    from transformers import NemotronHConfig

    NemotronHConfig(tie_word_embeddings=True).save_pretrained(tmp_path)
    cfg = load_config(tmp_path)
    assert (cfg.family, cfg.naming, cfg.layers, cfg.n_layer, cfg.d_model, cfg.vocab_size, cfg.tie_embeddings) == \
        ("hybrid", "nemotron_h", "M E A F", 4, 4096, 131072, False)
    assert (cfg.n_heads, cfg.head_dim, cfg.d_inner, cfg.n_groups, cfg.d_state, cfg.chunk_size, cfg.dt_min) == \
        (128, 64, 8192, 8, 128, 128, 0.001)
    assert (cfg.attn_heads, cfg.kv_heads, cfg.attn_head_dim, cfg.attn_scale, cfg.rope_dim) == (32, 8, 128, 128 ** -0.5, 0)
    assert (cfg.mlp_gated, cfg.mlp_inner, cfg.eps) == (False, 21504, 1e-5)
    assert (cfg.n_experts, cfg.top_k, cfg.expert_inner, cfg.shared_inner, cfg.router_sigmoid, cfg.norm_topk) == \
        (8, 2, 7688, 7688, True, True)
    raw = {"model_type": "nemotron_h", "hybrid_override_pattern": "M-M*-", "mamba_n_groups": 4, "n_groups": 8,
           "mamba_dt_min": 0.01, "num_hidden_layers": 5}
    cfg = config_from_dict(raw)
    assert (cfg.layers, cfg.n_groups, cfg.dt_min, cfg.n_experts) == ("M F M A F", 4, 0.01, 0)
