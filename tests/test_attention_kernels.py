"""Attention-layer kernels (attention, rope, relu_sq) against float64 numpy, every ISA."""
import numpy as np
import pytest

import reference as ref
from mambart import _core

K = _core.kernels
ISAS = _core.available_isas()
DEFAULT_ISA = _core.isa()


@pytest.fixture(params=ISAS)
def isa(request):
    _core.set_isa(request.param)
    yield request.param
    _core.set_isa(DEFAULT_ISA)


def rel(got, want):
    return np.abs(got - want).max() / np.abs(want).max()


# (n_heads, n_kv_heads, head_dim): MHA, GQA with one and several kv heads, odd head sizes.
HEADS = [(1, 1, 8), (4, 4, 16), (6, 2, 13), (5, 1, 64), (8, 2, 7), (3, 3, 130)]


@pytest.mark.parametrize("n_heads, n_kv_heads, d", HEADS)
@pytest.mark.parametrize("length", [1, 63, 64, 65, 200])  # around the key block of 64
def test_attention_prefill_causal(isa, n_heads, n_kv_heads, d, length):
    """One sequence: query row t sees keys [0, t]."""
    rng = np.random.default_rng(length * 100 + d)
    q = rng.standard_normal((length, n_heads * d)).astype(np.float32)
    k = rng.standard_normal((length + 5, n_kv_heads, d)).astype(np.float32)  # capacity > length
    v = rng.standard_normal((length + 5, n_kv_heads, d)).astype(np.float32)
    lens = list(range(1, length + 1))
    scale = d ** -0.5
    got = K.attention(q, [k] * length, [v] * length, lens, n_heads, n_kv_heads, scale)
    want = ref.attention(q, [k] * length, [v] * length, lens, n_heads, n_kv_heads, scale)
    assert rel(got, want) <= 2e-6


@pytest.mark.parametrize("n_heads, n_kv_heads, d", HEADS[:4])
def test_attention_decode_rows_of_different_lengths(isa, n_heads, n_kv_heads, d):
    """A batch step: each row over its own cache and length; a large scale (peaked softmax)."""
    rng = np.random.default_rng(d)
    lens = [1, 7, 64, 129, 300]
    ks = [rng.standard_normal((n + 3, n_kv_heads, d)).astype(np.float32) for n in lens]
    vs = [rng.standard_normal((n + 3, n_kv_heads, d)).astype(np.float32) for n in lens]
    q = rng.standard_normal((len(lens), n_heads * d)).astype(np.float32)
    for scale in (0.125, 3.0):
        got = K.attention(q, ks, vs, lens, n_heads, n_kv_heads, scale)
        assert rel(got, ref.attention(q, ks, vs, lens, n_heads, n_kv_heads, scale)) <= 5e-6


@pytest.mark.parametrize("n_heads, n_kv_heads, d", [(4, 4, 16), (6, 2, 13), (3, 3, 130)])
def test_attention_prefill_rows_alone_give_the_same_bits(isa, n_heads, n_kv_heads, d):
    """A prefill's rows (tiles of one sequence, pairs and fours of rows over whole blocks, a copy of
    each block) equal each row computed alone over the cache: a prompt gives the same bits however
    it is cut into calls."""
    rng = np.random.default_rng(d + 1)
    length = 203  # tiles of 64 rows, an odd row out, partial blocks
    q = rng.standard_normal((length, n_heads * d)).astype(np.float32)
    k = rng.standard_normal((length, n_kv_heads, d)).astype(np.float32)
    v = rng.standard_normal((length, n_kv_heads, d)).astype(np.float32)
    lens = list(range(1, length + 1))
    whole = K.attention(q, [k] * length, [v] * length, lens, n_heads, n_kv_heads, 0.3)
    for r in (0, 63, 64, 127, 128, 129, 190, 202):
        alone = K.attention(q[r:r + 1], [k], [v], [r + 1], n_heads, n_kv_heads, 0.3)
        np.testing.assert_array_equal(alone[0], whole[r])
    part = K.attention(q[65:140], [k] * 75, [v] * 75, lens[65:140], n_heads, n_kv_heads, 0.3)
    np.testing.assert_array_equal(part, whole[65:140])


def test_attention_strided_q_and_out(isa):
    rng = np.random.default_rng(3)
    big = rng.standard_normal((4, 50)).astype(np.float32)
    q = big[:, 2:2 + 4 * 9]  # a column slice: row stride 50
    k = rng.standard_normal((4, 2, 9)).astype(np.float32)
    v = rng.standard_normal((4, 2, 9)).astype(np.float32)
    out = np.zeros((4, 60), np.float32)
    K.attention(q, [k] * 4, [v] * 4, [1, 2, 3, 4], 4, 2, 0.3, out=out[:, 5:5 + 36])
    assert rel(out[:, 5:41], ref.attention(q, [k] * 4, [v] * 4, [1, 2, 3, 4], 4, 2, 0.3)) <= 2e-6
    assert not out[:, :5].any() and not out[:, 41:].any()


def test_attention_errors():
    q = np.zeros((2, 8), np.float32)
    k = np.zeros((3, 1, 4), np.float32)
    with pytest.raises(ValueError, match="n_kv_heads 3 must divide n_heads 2"):
        K.attention(q, [k, k], [k, k], [1, 1], 2, 3, 1.0)
    with pytest.raises(ValueError, match=r"lens\[1\] = 4 is outside \[1, 3\]"):
        K.attention(q, [k, k], [k, k], [1, 4], 2, 1, 1.0)
    with pytest.raises(ValueError, match="one entry per row"):
        K.attention(q, [k], [k], [1], 2, 1, 1.0)
    with pytest.raises(ValueError, match="ks"):
        K.attention(q, [k, np.zeros((3, 2, 4), np.float32)], [k, k], [1, 1], 2, 1, 1.0)


@pytest.mark.parametrize("n_heads, d, rot, scale", [(1, 8, 8, 1.0), (3, 16, 8, 1.0), (2, 64, 64, 1.2079),
                                                   (4, 10, 4, 1.0), (2, 7, 6, 0.75)])
def test_rope(isa, n_heads, d, rot, scale):
    rng = np.random.default_rng(rot)
    x = rng.standard_normal((9, n_heads * d)).astype(np.float32)
    pos = [0, 1, 2, 5, 17, 100, 1000, 4095, 8191]
    inv_freq = (1.0 / (10000.0 ** (np.arange(0, rot, 2) / rot))).astype(np.float32)
    want = ref.rope(x, pos, inv_freq, n_heads, scale)
    got = x.copy()
    K.rope(got, pos, inv_freq, n_heads, scale)
    assert np.abs(got - want).max() <= 2e-5 * np.abs(want).max()
    if rot < d:
        for h in range(n_heads):  # dims past rot are left alone
            np.testing.assert_array_equal(got[:, h * d + rot:(h + 1) * d], x[:, h * d + rot:(h + 1) * d])


def test_rope_errors():
    x = np.zeros((2, 8), np.float32)
    with pytest.raises(ValueError, match="pos needs one entry per row"):
        K.rope(x, [0], np.ones(2, np.float32), 2)
    with pytest.raises(ValueError, match="inv_freq has 3 values"):
        K.rope(x, [0, 1], np.ones(3, np.float32), 2)


@pytest.mark.parametrize("n", [1, 7, 8, 9, 1000])
def test_relu_sq(isa, n):
    x = np.random.default_rng(n).standard_normal(n).astype(np.float32)
    np.testing.assert_allclose(K.relu_sq(x), ref.relu_sq(x), rtol=1e-6, atol=0)
