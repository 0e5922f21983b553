"""Codestral Mamba in Mistral's own layout: params.json + consolidated.safetensors, mamba_ssm names."""
import json
import shutil

import numpy as np
import pytest

import mambart
from mambart.config import load_config
from mambart.hub import choose_files
from mambart.info import describe
from models import hf_logits, make_mamba2, random_ids, rel_err, save_as_mistral


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    """The same random Codestral-shaped weights (8 groups, Mamba2 mixer defaults) in the
    transformers layout, and in Mistral's with and without the `model.` prefix."""
    root = tmp_path_factory.mktemp("codestral")
    hf = make_mamba2(root / "hf", hidden_size=256, head_dim=64, state_size=128, n_groups=8, num_hidden_layers=2,
                     tie_word_embeddings=False, seed=3)
    save_as_mistral(hf, root / "mistral", tokenizer_from=root / "hf")
    save_as_mistral(hf, root / "prefixed", prefix="model.", tokenizer_from=root / "hf")
    return root, hf


@pytest.mark.parametrize("layout", ["mistral", "prefixed"])
def test_same_logits_as_the_transformers_layout(layouts, layout):
    root, hf = layouts
    ref_model = mambart.load(root / "hf", threads=2)
    model = mambart.load(root / layout, threads=2)
    assert model.config.n_groups == 8 and model.config.naming == "mamba_ssm"
    assert model.config == load_config(root / "mistral")
    ids = random_ids(model, 70, 1)
    got = model.logits(ids)
    np.testing.assert_array_equal(got, ref_model.logits(ids))
    assert rel_err(got, hf_logits(hf, ids)) <= 1e-4
    assert model.generate("def", max_new_tokens=8, temperature=0) == \
        ref_model.generate("def", max_new_tokens=8, temperature=0)


def test_params_map_to_the_mamba2_config(layouts):
    root, _ = layouts
    mistral, hf = load_config(root / "mistral"), load_config(root / "hf")
    keep = ("d_model", "n_layer", "vocab_size", "d_inner", "d_state", "d_conv", "n_heads", "head_dim", "n_groups",
            "eps", "tie_embeddings", "use_bias", "use_conv_bias", "gated_norm", "d_has_hdim", "dt_min", "dt_max")
    assert {k: getattr(mistral, k) for k in keep} == {k: getattr(hf, k) for k in keep}


def test_no_tokenizer_is_a_clear_error(layouts, tmp_path):
    root, _ = layouts
    bare = tmp_path / "bare"
    shutil.copytree(root / "mistral", bare)
    (bare / "tokenizer.json").unlink()
    (bare / "tokenizer.model.v3").write_bytes(b"\x0a\x00")  # what the hub repo ships
    with pytest.raises(FileNotFoundError, match=r"has no tokenizer\.json; it ships only tokenizer\.model\.v3, "
                                                r"which the `tokenizers` library cannot read"):
        mambart.load(bare)
    (bare / "tokenizer.model.v3").unlink()
    with pytest.raises(FileNotFoundError, match="nor any other tokenizer"):
        mambart.load(bare)
    # An explicit tokenizer makes it load.
    model = mambart.load(bare, tokenizer=str(root / "hf"))
    assert model.config.n_groups == 8
    assert describe(str(bare))["tokenizer"].startswith("none")


def test_info_and_hub_file_choice(layouts):
    root, _ = layouts
    d = describe(str(root / "mistral"))
    assert d["family"] == "mamba2" and d["n_groups"] == 8
    assert set(d["files"]) == {"params.json", "tokenizer.json", "consolidated.safetensors"}
    listing = ["params.json", "consolidated.safetensors", "tokenizer.model.v3", "README.md"]
    assert choose_files(listing, lambda index: []) == ["params.json", "consolidated.safetensors"]
    # A repo with both layouts is read in the transformers one.
    both = listing + ["config.json", "model.safetensors", "tokenizer.json"]
    assert choose_files(both, lambda index: []) == ["config.json", "tokenizer.json", "model.safetensors"]


@pytest.mark.parametrize("params, match", [
    ({"dim": 64, "n_layers": 2, "vocab_size": 10, "n_heads": 4, "model_type": "transformer"},
     "model_type 'transformer' in params.json is not supported"),
    ({"dim": 64, "n_layers": 2, "vocab_size": 10}, "model_type None in params.json"),
    ({"model_type": "mamba", "dim": 64, "n_layers": 0}, "'n_layers' must be a positive integer, got 0"),
    ({"model_type": "mamba", "dim": 80}, r"'dim' 80: 2 \* dim must be a multiple of the Mamba2 head size 64"),
    ({"model_type": "mamba", "dim": 96, "n_groups": 2}, r"heads \(2 \* dim / 64\) 3 is not a multiple of n_groups 2"),
])
def test_bad_params_name_file_and_key(tmp_path, params, match):
    (tmp_path / "params.json").write_text(json.dumps(params))
    with pytest.raises(ValueError, match=match) as info:
        load_config(tmp_path)
    assert str(info.value).startswith(str(tmp_path / "params.json"))


@pytest.mark.parametrize("dtype", ["bf16", "q8"])
def test_convert_keeps_the_mistral_config(layouts, tmp_path, dtype):
    from mambart.convert import convert

    root, _ = layouts
    out = convert(root / "mistral", tmp_path / dtype, dtype)
    assert (out / "params.json").is_file() and not (out / "config.json").exists()
    ids = random_ids(mambart.load(out), 20, 2)
    np.testing.assert_array_equal(mambart.load(out).logits(ids), mambart.load(root / "mistral", dtype=dtype).logits(ids))
