"""Mamba-1 name table and validation (reference doc 1.6)."""
import dataclasses

import numpy as np
import pytest

from mambart.checkpoint import RawTensor, read_safetensors, write_safetensors
from mambart.config import ModelConfig
from mambart.weights import load_weights

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
