"""Rope types (mambart/rope.py): the frequencies against transformers' own rope functions, and
the hybrids that use rope with each scaling against transformers (f32), over a context longer
than original_max_position_embeddings so that the scaled frequencies matter."""
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

import mambart
from mambart import rope
from mambart.config import load_config
from models import (hf_logits, make_bamba, make_falcon_h1, make_granite_hybrid, make_zamba2, random_ids, rel_err,
                    stepwise_logits)

LINEAR = {"rope_type": "linear", "factor": 3.0}
LLAMA3 = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
          "original_max_position_embeddings": 64}
YARN = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64}
SCALINGS = {
    "linear": LINEAR,
    "llama3": LLAMA3,
    "yarn": YARN,
    # An explicit attention factor and betas, no truncation of the ramp's ends.
    "yarn-attention_betas_untruncated": dict(YARN, attention_factor=0.8, beta_fast=16, beta_slow=2, truncate=False),
    # The factor from mscale / mscale_all_dim (DeepSeek's form).
    "yarn-mscale": dict(YARN, factor=16.0, mscale=1.0, mscale_all_dim=0.5),
}


def _hf_frequencies(config_class, scaling: dict, theta: float, **fields):
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
    config = config_class(rope_parameters=dict(scaling, rope_theta=theta), **fields)
    inv_freq, factor = ROPE_INIT_FUNCTIONS[scaling["rope_type"]](config)
    return inv_freq.numpy(), factor


@pytest.mark.parametrize("name", SCALINGS)
@pytest.mark.parametrize("head_dim, theta", [(16, 10000.0), (64, 5e5), (128, 1e11)])
def test_frequencies_match_transformers(name, head_dim, theta):
    from transformers import FalconH1Config
    fields = dict(hidden_size=4 * head_dim, num_attention_heads=4, head_dim=head_dim, max_position_embeddings=256)
    want, want_factor = _hf_frequencies(FalconH1Config, SCALINGS[name], theta, **fields)
    got, factor = rope.frequencies(head_dim, theta, rope.parse(dict(SCALINGS[name], rope_theta=theta), 256))
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=0)  # a few ulp: f32 pow and division
    assert factor == pytest.approx(want_factor, rel=1e-12)
    # The scaling does something: no type leaves every frequency and the factor as the default's.
    default, _ = rope.frequencies(head_dim, theta, ())
    assert not np.array_equal(got, default) or factor != 1.0


def test_default_frequencies_match_transformers():
    from transformers import BambaConfig
    from transformers.models.bamba.modeling_bamba import BambaRotaryEmbedding
    config = BambaConfig(hidden_size=64, num_attention_heads=4, rope_parameters={"rope_type": "default",
                                                                                  "rope_theta": 777.0})
    want = BambaRotaryEmbedding(config).inv_freq.numpy()  # half of each 16-dim head: 8 dims, 4 frequencies
    got, factor = rope.frequencies(8, 777.0, ())
    np.testing.assert_allclose(got, want, rtol=2e-7, atol=0)
    assert factor == 1.0


def test_yarn_without_factor_stretches_to_max_positions():
    scaling = dict(rope.parse({"rope_type": "yarn", "original_max_position_embeddings": 1024}, 4096))
    assert scaling["factor"] == 4.0 and scaling["attention_factor"] == pytest.approx(0.1 * np.log(4.0) + 1)


_KEYS = ["rope_type", "type", "factor", "original_max_position_embeddings", "low_freq_factor", "high_freq_factor",
         "attention_factor", "beta_fast", "beta_slow", "mscale", "mscale_all_dim", "truncate"]
_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-3, 5000), st.integers(), st.floats(),
                    st.text(max_size=5), st.sampled_from(rope.SUPPORTED + ("dynamic", "longrope")),
                    st.lists(st.integers(), max_size=2))


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.sampled_from(_KEYS), _VALUES, max_size=7),
       st.one_of(st.none(), st.integers(-2, 10**6), st.text(max_size=3)),
       st.sampled_from([1.0, 0.5, 1.5, 1e4, 1e11, 1e300]))
def test_fuzz_parse_and_frequencies(params, max_positions, theta):
    """Any rope parameters: a scaling whose frequencies are finite, or a ValueError."""
    try:
        inv, scale = rope.frequencies(16, theta, rope.parse(params, max_positions))
    except ValueError:
        return
    assert inv.shape == (8,) and np.isfinite(inv).all() and math.isfinite(scale) and scale > 0


SHAPES = {
    "granite-llama3": (make_granite_hybrid, dict(rope_parameters=dict(LLAMA3, rope_theta=10000.0))),
    "granite-yarn_gqa1": (make_granite_hybrid, dict(num_key_value_heads=1, layer_types=("attention", "mamba"),
                                                     rope_parameters=dict(YARN, rope_theta=500.0))),
    "bamba-linear_partial": (make_bamba, dict(rope_parameters=dict(LINEAR, rope_theta=10000.0,
                                                                   partial_rotary_factor=0.5))),
    "bamba-yarn_mscale_partial": (make_bamba, dict(rope_parameters=dict(SCALINGS["yarn-mscale"], rope_theta=1e4,
                                                                        partial_rotary_factor=0.5))),
    "falcon_h1-yarn": (make_falcon_h1, dict(rope_parameters=dict(SCALINGS["yarn-attention_betas_untruncated"],
                                                                 rope_theta=1e6))),
    "zamba2-linear": (make_zamba2, dict(use_mem_rope=True, rope_parameters=dict(LINEAR, rope_theta=10000.0))),
}


@pytest.fixture(scope="module", params=list(SHAPES))
def pair(request, tmp_path_factory):
    make, fields = SHAPES[request.param]
    path = tmp_path_factory.mktemp(request.param)
    hf = make(path, seed=len(request.param), **fields)
    assert dict(load_config(path).rope_scaling)["rope_type"] == fields["rope_parameters"]["rope_type"]
    return mambart.load(path, threads=2), hf


def test_prompt_logits(pair):
    model, hf = pair
    ids = random_ids(model, 200, 7)  # past original_max_position_embeddings 64
    assert rel_err(model.logits(ids), hf_logits(hf, ids)) <= 1e-4


def test_decode_steps(pair):
    model, hf = pair
    ids = random_ids(model, 60 + 32, 3)  # decoding across position 64
    assert rel_err(stepwise_logits(model, ids, 60), hf_logits(hf, ids)[59:]) <= 1e-4


def test_info_shows_the_scaling(pair):
    from mambart.info import describe, format_info
    d = describe(str(pair[0].path))
    scaling = d["rope_scaling"]
    assert scaling["rope_type"] in ("linear", "llama3", "yarn") and scaling["factor"] > 1
    assert "rope_scaling:" in format_info(d) and f"factor {scaling['factor']:g}" in format_info(d)

