"""Sizes a user controls never wrap: every product of shapes, batch and
config sizes is checked for int64 overflow (a clear ValueError), in C++."""
import numpy as np
import pytest

import mambart
from mambart import _core

HUGE_SHAPES = [
    ("f16", [2**62, 4]),         # 2**64 elements x 2 bytes wraps to 0
    ("f16", [2**31, 2**33]),
    ("f32", [2**61]),             # elements fit, bytes do not
    ("bf16", [3, 2**62, 2**2]),
    ("q8", [2**62, 64]),          # rows x row bytes
    ("q4", [4, 2**63 - 1]),       # the row's block count itself
    ("q8", [2**40, 2**40]),
]


@pytest.mark.parametrize("dtype,shape", HUGE_SHAPES, ids=[f"{d}{s}" for d, s in HUGE_SHAPES])
def test_tensor_shape_overflow_is_refused(dtype, shape):
    with pytest.raises(ValueError, match="too large"):
        _core.Tensor(np.zeros(0, np.uint8), dtype, shape)


@pytest.mark.parametrize("shape", [[-1, 4], [-2, -2], [4, -8], [-(2**62), 4]])
def test_negative_dimensions_are_refused(shape):
    # [-2, -2] used to pass: (-2) * (-2) * 2 bytes = 8, the size of the array given
    with pytest.raises(ValueError, match="negative dimension"):
        _core.Tensor(np.zeros(8, np.uint8), "f16", shape)


def test_an_exact_shape_still_works():
    t = _core.Tensor(np.zeros((3, 72), np.uint8), "q8", [3, 40])  # 2 blocks of 36 bytes a row
    assert t.nbytes == 3 * 72 and t.shape == [3, 40]
    with pytest.raises(ValueError, match="needs 216 bytes"):
        _core.Tensor(np.zeros((3, 36), np.uint8), "q8", [3, 40])


@pytest.fixture(scope="module")
def model(small_model_dir):
    return mambart.load(small_model_dir[0], threads=1)


@pytest.mark.parametrize("batch", [2**62, 2**61 + 1, 2**63 - 1])
def test_decoder_batch_overflow_names_batch(model, batch):
    with pytest.raises(ValueError, match=f"batch {batch} is too large"):
        model.decoder(batch)
    with pytest.raises(ValueError, match=f"batch {batch} is too large"):
        _core.Decoder(model._core, batch)


@pytest.mark.parametrize("batch", [2**63, 2**64, 10**30])
def test_decoder_batch_beyond_int64(model, batch):
    with pytest.raises(ValueError, match="batch .* is too large"):
        model.decoder(batch)


def test_decoder_batch_that_fits_no_memory_is_a_memory_error(model):
    with pytest.raises(MemoryError, match="cannot allocate"):
        model.decoder(2**40)


def core_config(**sizes):
    c = _core.ModelConfig()
    for name, value in {**dict(d_model=8, n_layer=1, vocab_size=16, d_inner=16, d_state=4, d_conv=4, dt_rank=1),
                        **sizes}.items():
        setattr(c, name, value)
    return c


@pytest.mark.parametrize("sizes", [dict(d_inner=2**62), dict(d_state=2**62), dict(dt_rank=2**63 - 1),
                                   dict(d_inner=2**40, d_state=2**40)])
def test_model_config_sizes_that_overflow(sizes):
    with pytest.raises(ValueError, match="overflows int64"):
        _core.Model(core_config(**sizes), {}, 1)


@pytest.mark.parametrize("sizes", [dict(n_heads=2**62, head_dim=4, d_inner=16, n_groups=1),
                                   dict(n_heads=4, head_dim=4, d_inner=16, n_groups=2**62),
                                   dict(n_heads=4, head_dim=4, d_inner=16, n_groups=1, d_state=2**62)])
def test_mamba2_config_sizes_that_overflow(sizes):
    c = core_config(**{k: v for k, v in sizes.items() if k in ("d_inner", "d_state")})
    c.family = _core.Family.MAMBA2
    for name in ("n_heads", "head_dim", "n_groups"):
        setattr(c, name, sizes[name])
    with pytest.raises(ValueError, match="overflows int64|must equal|must divide"):
        _core.Model(c, {}, 1)
