"""Mamba-1 name table and validation (reference doc 1.6)."""
import dataclasses

import numpy as np
import pytest

from mambart.checkpoint import RawTensor, read_safetensors, write_safetensors
from mambart.config import ModelConfig
from mambart.weights import TypedWeight, as_float32, load_weights

# D=8, E=16, N=4, K=3, R=2, V=11: every size distinct so a swapped axis shows.
CFG = ModelConfig(family="mamba", naming="hf", d_model=8, n_layer=2, vocab_size=11,
                  d_inner=16, d_state=4, d_conv=3, dt_rank=2, eps=1e-5,
                  tie_embeddings=True, use_bias=False, use_conv_bias=True)


def checkpoint_arrays(cfg, rng=None):
    """Tensors with checkpoint names and shapes for cfg (HF or mamba_ssm naming)."""
    rng = rng or np.random.default_rng(0)
    D, V, E, N, K, R = (cfg.d_model, cfg.vocab_size, cfg.d_inner, cfg.d_state,
                        cfg.d_conv, cfg.dt_rank)
    emb = "backbone.embeddings.weight" if cfg.naming == "hf" else "backbone.embedding.weight"
    shapes = {emb: (V, D), "backbone.norm_f.weight": (D,)}
    if not cfg.tie_embeddings:
        shapes["lm_head.weight"] = (V, D)
    for i in range(cfg.n_layer):
        p = f"backbone.layers.{i}."
        shapes.update({
            p + "norm.weight": (D,), p + "mixer.in_proj.weight": (2 * E, D),
            p + "mixer.conv1d.weight": (E, 1, K), p + "mixer.x_proj.weight": (R + 2 * N, E),
            p + "mixer.dt_proj.weight": (E, R), p + "mixer.dt_proj.bias": (E,),
            p + "mixer.A_log": (E, N), p + "mixer.D": (E,), p + "mixer.out_proj.weight": (D, E),
        })
        if cfg.use_conv_bias:
            shapes[p + "mixer.conv1d.bias"] = (E,)
        if cfg.use_bias:
            shapes[p + "mixer.in_proj.bias"] = (2 * E,)
            shapes[p + "mixer.out_proj.bias"] = (D,)
    return {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}


def as_raw(arrays):
    return {k: RawTensor(k, "F32", a.shape, a.ravel()) for k, a in arrays.items()}


def stored(tmp_path, arrays, dtype=None):
    write_safetensors(tmp_path / "model.safetensors", arrays, dtype=dtype)
    return read_safetensors(tmp_path / "model.safetensors")


def test_internal_names_and_values_hf(tmp_path):
    arrays = checkpoint_arrays(CFG)
    out = load_weights(stored(tmp_path, arrays), CFG)
    layer = ["norm", "in_proj", "conv1d_weight", "conv1d_bias", "x_proj", "dt_proj",
             "dt_proj_bias", "A_log", "D", "out_proj"]
    assert set(out) == {"embedding", "norm_f"} | {f"layers.{i}.{n}" for i in range(2) for n in layer}
    np.testing.assert_array_equal(out["embedding"], arrays["backbone.embeddings.weight"])
    np.testing.assert_array_equal(out["layers.1.x_proj"],
                                  arrays["backbone.layers.1.mixer.x_proj.weight"])
    conv = out["layers.0.conv1d_weight"]
    assert conv.shape == (16, 3)
    np.testing.assert_array_equal(conv, arrays["backbone.layers.0.mixer.conv1d.weight"][:, 0, :])
    for name, a in out.items():
        assert a.dtype == np.float32 and a.flags.c_contiguous, name
        # F32 stays on the mmap: no array owns its memory.
        assert not a.flags.owndata and not a.flags.writeable, name


@pytest.mark.parametrize("dtype", ["F16", "BF16"])
def test_half_precision_converted(tmp_path, dtype):
    arrays = checkpoint_arrays(CFG)
    out = load_weights(stored(tmp_path, arrays, dtype), CFG)
    ref = arrays["backbone.layers.1.mixer.A_log"]
    got = out["layers.1.A_log"]
    assert got.dtype == np.float32 and got.flags.c_contiguous
    np.testing.assert_allclose(got, ref, rtol=1e-2 if dtype == "BF16" else 1e-3)
    matrix = out["layers.1.in_proj"]
    assert isinstance(matrix, TypedWeight) and matrix.dtype == dtype.lower()
    np.testing.assert_allclose(as_float32(matrix), arrays["backbone.layers.1.mixer.in_proj.weight"],
                               rtol=1e-2 if dtype == "BF16" else 1e-3)


def test_mamba_ssm_naming_and_tied_head_ignored():
    cfg = dataclasses.replace(CFG, naming="mamba_ssm")
    arrays = checkpoint_arrays(cfg)
    arrays["lm_head.weight"] = np.zeros((11, 8), np.float32)  # a stored tied copy
    out = load_weights(as_raw(arrays), cfg)
    assert "lm_head" not in out
    np.testing.assert_array_equal(out["embedding"], arrays["backbone.embedding.weight"])


def test_other_embedding_spelling_accepted():
    arrays = checkpoint_arrays(dataclasses.replace(CFG, naming="mamba_ssm"))
    out = load_weights(as_raw(arrays), CFG)  # HF config, mamba_ssm tensor names
    np.testing.assert_array_equal(out["embedding"], arrays["backbone.embedding.weight"])


def test_untied_needs_lm_head():
    cfg = dataclasses.replace(CFG, tie_embeddings=False)
    arrays = checkpoint_arrays(cfg)
    out = load_weights(as_raw(arrays), cfg)
    np.testing.assert_array_equal(out["lm_head"], arrays["lm_head.weight"])
    del arrays["lm_head.weight"]
    with pytest.raises(ValueError, match="^missing tensor 'lm_head.weight'$"):
        load_weights(as_raw(arrays), cfg)


def test_biases_when_configured():
    cfg = dataclasses.replace(CFG, use_bias=True, use_conv_bias=False)
    arrays = checkpoint_arrays(cfg)
    out = load_weights(as_raw(arrays), cfg)
    assert out["layers.0.in_proj_bias"].shape == (32,)
    assert out["layers.1.out_proj_bias"].shape == (8,)
    assert "layers.0.conv1d_bias" not in out
    del arrays["backbone.layers.1.mixer.out_proj.bias"]
    with pytest.raises(ValueError, match="missing tensor 'backbone.layers.1.mixer.out_proj.bias'"):
        load_weights(as_raw(arrays), cfg)


def test_missing_tensor():
    arrays = checkpoint_arrays(CFG)
    del arrays["backbone.layers.1.mixer.D"]
    with pytest.raises(ValueError, match=r"^missing tensor 'backbone.layers.1.mixer.D'$"):
        load_weights(as_raw(arrays), CFG)


@pytest.mark.parametrize("name, shape, message", [
    ("backbone.layers.0.mixer.x_proj.weight", (12, 16),
     r"tensor 'backbone.layers.0.mixer.x_proj.weight' has shape \(12, 16\), expected \(10, 16\)"),
    ("backbone.layers.1.mixer.conv1d.weight", (16, 3),
     r"tensor 'backbone.layers.1.mixer.conv1d.weight' has shape \(16, 3\), expected \(16, 1, 3\)"),
    ("backbone.layers.1.mixer.A_log", (4, 16),
     r"tensor 'backbone.layers.1.mixer.A_log' has shape \(4, 16\), expected \(16, 4\)"),
    ("backbone.embeddings.weight", (12, 8),
     r"tensor 'backbone.embeddings.weight' has shape \(12, 8\), expected \(11, 8\)"),
    ("backbone.norm_f.weight", (9,),
     r"tensor 'backbone.norm_f.weight' has shape \(9\), expected \(8\)"),
])
def test_wrong_shape(name, shape, message):
    arrays = checkpoint_arrays(CFG)
    arrays[name] = np.zeros(shape, np.float32)
    with pytest.raises(ValueError, match="^" + message + "$"):
        load_weights(as_raw(arrays), CFG)


def test_extra_layer_is_unexpected():
    arrays = checkpoint_arrays(dataclasses.replace(CFG, n_layer=3))
    with pytest.raises(ValueError) as info:
        load_weights(as_raw(arrays), CFG)
    msg = str(info.value)
    assert msg.startswith("10 unexpected tensor(s) for a 2-layer model: 'backbone.layers.2.")
    assert msg.endswith("and 5 more") and "\n" not in msg


def test_extra_single_tensor():
    arrays = checkpoint_arrays(CFG)
    arrays["backbone.layers.0.norm.bias"] = np.zeros(8, np.float32)
    with pytest.raises(ValueError, match=r"^1 unexpected tensor\(s\) for a 2-layer model: "
                       r"'backbone.layers.0.norm.bias'$"):
        load_weights(as_raw(arrays), CFG)


def test_non_float_tensor_rejected():
    raw = as_raw(checkpoint_arrays(CFG))
    name = "backbone.layers.0.mixer.D"
    raw[name] = RawTensor(name, "I32", (16,), np.zeros(16, np.int32))
    with pytest.raises(ValueError, match=f"tensor '{name}' has dtype I32"):
        load_weights(raw, CFG)


# --- Mamba-2 (reference doc 1.6, Mamba-2 layer) ------------------------------------------

# D=8, E=16, N=3, K=4, P=4 -> H=4, G=2, V=13: every size distinct where it matters.
CFG2 = ModelConfig(family="mamba2", naming="hf", d_model=8, n_layer=2, vocab_size=13,
                   d_inner=16, d_state=3, d_conv=4, dt_rank=0, eps=1e-5,
                   tie_embeddings=False, use_bias=False, use_conv_bias=True, n_heads=4,
                   head_dim=4, n_groups=2, chunk_size=8, gated_norm=True)


def mamba2_arrays(cfg, rng=None):
    """Tensors with checkpoint names and shapes for a Mamba-2 cfg."""
    rng = rng or np.random.default_rng(1)
    D, V, E, N, K = cfg.d_model, cfg.vocab_size, cfg.d_inner, cfg.d_state, cfg.d_conv
    H, G = cfg.n_heads, cfg.n_groups
    emb = "backbone.embeddings.weight" if cfg.naming == "hf" else "backbone.embedding.weight"
    shapes = {emb: (V, D), "backbone.norm_f.weight": (D,)}
    if not cfg.tie_embeddings:
        shapes["lm_head.weight"] = (V, D)
    for i in range(cfg.n_layer):
        p = f"backbone.layers.{i}."
        shapes.update({
            p + "norm.weight": (D,), p + "mixer.in_proj.weight": (2 * E + 2 * G * N + H, D),
            p + "mixer.conv1d.weight": (E + 2 * G * N, 1, K), p + "mixer.dt_bias": (H,),
            p + "mixer.A_log": (H,), p + "mixer.D": (E if cfg.d_has_hdim else H,),
            p + "mixer.out_proj.weight": (D, E),
        })
        if cfg.gated_norm:
            shapes[p + "mixer.norm.weight"] = (E,)
        if cfg.use_conv_bias:
            shapes[p + "mixer.conv1d.bias"] = (E + 2 * G * N,)
        if cfg.use_bias:
            shapes[p + "mixer.in_proj.bias"] = (2 * E + 2 * G * N + H,)
            shapes[p + "mixer.out_proj.bias"] = (D,)
    return {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}


def test_mamba2_internal_names_and_shapes():
    arrays = mamba2_arrays(CFG2)
    out = load_weights(as_raw(arrays), CFG2)
    layer = {"norm": (8,), "in_proj": (48, 8), "conv1d_weight": (28, 4), "conv1d_bias": (28,),
             "dt_bias": (4,), "A_log": (4,), "D": (4,), "gated_norm": (16,), "out_proj": (8, 16)}
    expected = {"embedding": (13, 8), "norm_f": (8,), "lm_head": (13, 8)}
    expected.update({f"layers.{i}.{n}": s for i in range(2) for n, s in layer.items()})
    assert {k: v.shape for k, v in out.items()} == expected
    np.testing.assert_array_equal(out["layers.1.gated_norm"],
                                  arrays["backbone.layers.1.mixer.norm.weight"])
    np.testing.assert_array_equal(out["layers.0.conv1d_weight"],
                                  arrays["backbone.layers.0.mixer.conv1d.weight"][:, 0, :])
    np.testing.assert_array_equal(out["layers.0.dt_bias"], arrays["backbone.layers.0.mixer.dt_bias"])
    for name, a in out.items():
        assert a.dtype == np.float32 and a.flags.c_contiguous, name


def test_mamba2_options_change_the_table():
    cfg = dataclasses.replace(CFG2, d_has_hdim=True, gated_norm=False, use_bias=True,
                              use_conv_bias=False, tie_embeddings=True, naming="mamba_ssm")
    out = load_weights(as_raw(mamba2_arrays(cfg)), cfg)
    assert out["layers.0.D"].shape == (16,)                 # one D per channel
    assert out["layers.1.in_proj_bias"].shape == (48,) and out["layers.1.out_proj_bias"].shape == (8,)
    assert not {"layers.0.gated_norm", "layers.0.conv1d_bias", "lm_head"} & set(out)


@pytest.mark.parametrize("name, shape, message", [
    ("backbone.layers.0.mixer.in_proj.weight", (46, 8),
     r"tensor 'backbone.layers.0.mixer.in_proj.weight' has shape \(46, 8\), expected \(48, 8\)"),
    ("backbone.layers.1.mixer.conv1d.weight", (16, 1, 4),
     r"tensor 'backbone.layers.1.mixer.conv1d.weight' has shape \(16, 1, 4\), expected \(28, 1, 4\)"),
    ("backbone.layers.0.mixer.D", (16,),
     r"tensor 'backbone.layers.0.mixer.D' has shape \(16\), expected \(4\)"),
    ("backbone.layers.1.mixer.norm.weight", (8,),
     r"tensor 'backbone.layers.1.mixer.norm.weight' has shape \(8\), expected \(16\)"),
])
def test_mamba2_wrong_shape(name, shape, message):
    arrays = mamba2_arrays(CFG2)
    arrays[name] = np.zeros(shape, np.float32)
    with pytest.raises(ValueError, match="^" + message + "$"):
        load_weights(as_raw(arrays), CFG2)


def test_mamba2_missing_and_unexpected():
    arrays = mamba2_arrays(CFG2)
    del arrays["backbone.layers.1.mixer.dt_bias"]
    with pytest.raises(ValueError, match="^missing tensor 'backbone.layers.1.mixer.dt_bias'$"):
        load_weights(as_raw(arrays), CFG2)
    # A Mamba-1 tensor in a Mamba-2 checkpoint is unexpected.
    arrays = mamba2_arrays(CFG2)
    arrays["backbone.layers.0.mixer.x_proj.weight"] = np.zeros((4, 16), np.float32)
    with pytest.raises(ValueError, match=r"^1 unexpected tensor\(s\) for a 2-layer model: "
                       r"'backbone.layers.0.mixer.x_proj.weight'$"):
        load_weights(as_raw(arrays), CFG2)
    # Without the gated norm, mixer.norm.weight is unexpected.
    cfg = dataclasses.replace(CFG2, gated_norm=False)
    with pytest.raises(ValueError, match="unexpected tensor.*'backbone.layers.0.mixer.norm.weight'"):
        load_weights(as_raw(mamba2_arrays(CFG2)), cfg)


def tiny_mamba2(**kw):
    import torch
    from transformers import Mamba2Config, Mamba2ForCausalLM

    torch.manual_seed(0)
    config = Mamba2Config(hidden_size=16, num_heads=4, head_dim=8, n_groups=2, state_size=8,
                          num_hidden_layers=2, vocab_size=48, expand=2, chunk_size=8, **kw)
    model = Mamba2ForCausalLM(config).eval()
    with torch.no_grad():  # norms, D and biases start as constants: make them distinct
        for name, p in model.named_parameters():
            if name.endswith(("norm.weight", ".D", "bias")):
                p.add_(0.2 * torch.randn_like(p))
    return model


def expected_internal(state_dict, n_layer):
    """Internal name -> float32 numpy value, from a torch state dict (HF names)."""
    out = {"embedding": state_dict["backbone.embeddings.weight"],
           "norm_f": state_dict["backbone.norm_f.weight"]}
    for i in range(n_layer):
        p = f"backbone.layers.{i}."
        out.update({f"layers.{i}.norm": state_dict[p + "norm.weight"]})
        for src, dst in [("in_proj.weight", "in_proj"), ("conv1d.bias", "conv1d_bias"),
                         ("dt_bias", "dt_bias"), ("A_log", "A_log"), ("D", "D"),
                         ("norm.weight", "gated_norm"), ("out_proj.weight", "out_proj")]:
            out[f"layers.{i}.{dst}"] = state_dict[p + "mixer." + src]
        out[f"layers.{i}.conv1d_weight"] = state_dict[p + "mixer.conv1d.weight"][:, 0, :]
    return {k: v.detach().float().numpy() for k, v in out.items()}


def test_mamba2_transformers_save_pretrained(tmp_path):
    from mambart.checkpoint import read_checkpoint
    from mambart.config import load_config

    model = tiny_mamba2(tie_word_embeddings=False)
    model.save_pretrained(tmp_path)
    cfg = load_config(tmp_path)
    assert (cfg.family, cfg.n_heads, cfg.n_groups, cfg.tie_embeddings) == ("mamba2", 4, 2, False)
    out = load_weights(read_checkpoint(tmp_path), cfg)
    sd = model.state_dict()
    expected = expected_internal(sd, 2)
    expected["lm_head"] = sd["lm_head.weight"].numpy()
    assert set(out) == set(expected)
    for name, value in expected.items():
        np.testing.assert_array_equal(out[name], value, err_msg=name)


def test_mamba2_mamba_ssm_bin_tied_half(tmp_path):
    """An original-format checkpoint: torch.save of mamba_ssm names, fp16 except D,
    lm_head.weight on the embedding's storage, config with an unpadded vocab."""
    import json

    import torch

    from mambart.checkpoint import read_checkpoint
    from mambart.config import load_config

    model = tiny_mamba2(tie_word_embeddings=True)
    sd = {k.replace("backbone.embeddings.", "backbone.embedding."): v.detach().half()
          if not k.endswith(".D") else v.detach() for k, v in model.state_dict().items()}
    sd["lm_head.weight"] = sd["backbone.embedding.weight"].view(48, 16)  # same storage
    torch.save(sd, tmp_path / "pytorch_model.bin")
    (tmp_path / "config.json").write_text(json.dumps({
        "d_model": 16, "d_intermediate": 0, "n_layer": 2, "vocab_size": 37,
        "ssm_cfg": {"layer": "Mamba2", "d_state": 8, "headdim": 8, "ngroups": 2, "chunk_size": 8},
        "attn_layer_idx": [], "attn_cfg": {}, "rms_norm": True, "residual_in_fp32": True,
        "fused_add_norm": True, "pad_vocab_size_multiple": 16, "tie_embeddings": True}))
    cfg = load_config(tmp_path)
    assert (cfg.naming, cfg.vocab_size, cfg.n_heads, cfg.d_inner) == ("mamba_ssm", 48, 4, 32)
    tensors = read_checkpoint(tmp_path)
    assert tensors["backbone.layers.0.mixer.D"].dtype == "F32"
    assert tensors["backbone.layers.0.mixer.A_log"].dtype == "F16"
    assert np.shares_memory(tensors["lm_head.weight"].data,
                            tensors["backbone.embedding.weight"].data)
    out = load_weights(tensors, cfg)
    assert "lm_head" not in out
    half = {k: v.half().float() if not k.endswith(".D") else v
            for k, v in model.state_dict().items()}
    expected = expected_internal(half, 2)
    assert set(out) == set(expected)
    for name, value in expected.items():
        np.testing.assert_array_equal(as_float32(out[name]), value, err_msg=name)
