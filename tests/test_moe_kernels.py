"""MoE routing kernel against float64 numpy: softmax and sigmoid scoring, selection bias, groups, ties."""
import numpy as np
import pytest

import reference as ref
from mambart import _core

K = _core.kernels


def check(logits, top_k, sigmoid, normalize, **kw):
    index, weight = K.route(logits, top_k, sigmoid, normalize, **kw)
    want_index, want_weight = ref.route(logits, top_k, sigmoid, normalize, **kw)
    np.testing.assert_array_equal(index, want_index)
    np.testing.assert_allclose(weight, want_weight, rtol=2e-6, atol=1e-7)
    return index, weight


@pytest.mark.parametrize("E, top_k", [(1, 1), (4, 2), (7, 3), (32, 8), (62, 6)])
@pytest.mark.parametrize("sigmoid, normalize", [(False, True), (False, False), (True, True), (True, False)])
def test_route(E, top_k, sigmoid, normalize):
    logits = np.random.default_rng(E * 10 + top_k).standard_normal((9, E)).astype(np.float32) * 3
    check(logits, top_k, sigmoid, normalize, scale=2.5)


def test_granite_routing_is_softmax_over_the_chosen_logits():
    logits = np.random.default_rng(1).standard_normal((5, 10)).astype(np.float32)
    index, weight = K.route(logits, 3, False, True)
    chosen = np.take_along_axis(logits.astype(np.float64), index.astype(np.int64), 1)
    want = np.exp(chosen - chosen.max(1, keepdims=True))
    np.testing.assert_allclose(weight, want / want.sum(1, keepdims=True), rtol=2e-6)
    assert (np.diff(chosen, axis=1) <= 0).all()  # best first


def test_ties_go_to_the_lower_index():
    logits = np.array([[1, 3, 3, 0, 3, 2], [0, 0, 0, 0, 0, 0]], np.float32)
    index, _ = check(logits, 2, False, True)
    assert index.tolist() == [[1, 2], [0, 1]]
    index, _ = check(logits, 4, True, False)
    assert index.tolist() == [[1, 2, 4, 5], [0, 1, 2, 3]]


def test_selection_bias_and_groups():
    rng = np.random.default_rng(5)
    logits = rng.standard_normal((11, 16)).astype(np.float32)
    bias = rng.standard_normal(16).astype(np.float32)
    check(logits, 4, True, True, bias=bias, scale=1.5)
    for n_group, topk_group in [(4, 2), (8, 3), (2, 1), (16, 4)]:
        index, _ = check(logits, 4, True, True, bias=bias, n_group=n_group, topk_group=topk_group)
        per = 16 // n_group
        assert all(len(set(row // per)) <= topk_group for row in index)
    # The bias steers the choice, not the weights.
    logits = np.zeros((1, 4), np.float32)
    index, weight = K.route(logits, 1, True, False, bias=np.array([0, 0, 1, 0], np.float32))
    assert index.tolist() == [[2]] and weight[0, 0] == pytest.approx(0.5)


def test_errors():
    logits = np.zeros((2, 6), np.float32)
    with pytest.raises(ValueError, match=r"top_k 7 is outside \[1, 6\]"):
        K.route(logits, 7, False, True)
    with pytest.raises(ValueError, match="n_group 4 must divide n_experts 6"):
        K.route(logits, 2, True, True, n_group=4, topk_group=1)
    with pytest.raises(ValueError, match="topk_group 1"):
        K.route(logits, 4, True, True, n_group=3, topk_group=1)
    with pytest.raises(ValueError, match="bias"):
        K.route(logits, 2, True, True, bias=np.zeros(5, np.float32))
