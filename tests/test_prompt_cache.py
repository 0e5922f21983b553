"""mambart.PromptCache: the prefix-state cache from the Python API, its
exactness rules, and its byte bound."""
from __future__ import annotations

import numpy as np
import pytest

import mambart
from mambart.cache import DECODED, EXTENDABLE, PREFILLED, PrefillRun, cached_prefill, prefill_slices


def _cold_logits(model, ids):
    d = model.decoder(1)
    d.prefill([ids])
    return d.row_logits(0)


@pytest.mark.parametrize("n_first,n_more", [(600, 300), (512, 5), (256, 1000), (100, 50)])
def test_exact_hits_are_bit_identical(any_model_dir, n_first, n_more):
    path, _ = any_model_dir
    model = mambart.load(path, threads=2)
    rng = np.random.default_rng(n_first)
    a = rng.integers(1, model.vocab_limit, n_first).tolist()
    b = a + rng.integers(1, model.vocab_limit, n_more).tolist()
    cache = mambart.PromptCache(64 << 20)
    d = model.decoder(1)
    assert cached_prefill(d, 0, a, cache) == 0
    np.testing.assert_array_equal(d.row_logits(0), _cold_logits(model, a))
    d2 = model.decoder(2)
    hit = cached_prefill(d2, 1, b, cache)
    assert hit == n_first // 256 * 256  # the last chunk-aligned state of the first prompt
    np.testing.assert_array_equal(d2.row_logits(1), _cold_logits(model, b))
    assert d2.history(1) == b
    # the same prompt again: a full hit, no prefill
    d3 = model.decoder(1)
    assert cached_prefill(d3, 0, a, cache) == n_first
    np.testing.assert_array_equal(d3.row_logits(0), _cold_logits(model, a))


def test_generate_with_cache_equals_without(small_mamba2_dir):
    model = mambart.load(small_mamba2_dir[0], threads=2)
    prompt = "def fibonacci(n):\n" * 60
    cache = mambart.PromptCache()
    want = model.generate(prompt, 12, temperature=0)
    for _ in range(2):
        s = model.stream(prompt + "    return n\n", 12, temperature=0, cache=cache)
        "".join(s)
    s = model.stream(prompt, 12, temperature=0, cache=cache)
    assert "".join(s) == want
    assert s.stats.cached_tokens > 0 and cache.hits >= 2
    assert model.generate([prompt, prompt], 12, temperature=0, cache=cache) == [want, want]
    with pytest.raises(ValueError, match="give one"):
        model.generate(prompt, 2, cache=cache, state=model.decoder(1))
    with pytest.raises(TypeError, match="PromptCache"):
        model.generate(prompt, 2, cache={})


def test_levels_decide_what_exact_mode_uses():
    c = mambart.PromptCache(1 << 20)
    c.store([1, 2, 3], b"decoded", DECODED)
    assert c.lookup([1, 2, 3]).blob is None and c.lookup([1, 2, 3, 4]).blob is None
    c.store([1, 2, 3], b"prefilled", PREFILLED)
    assert c.lookup([1, 2, 3]).blob == b"prefilled" and c.lookup([1, 2, 3, 4]).blob is None
    c.store([1, 2], b"aligned", EXTENDABLE)
    assert c.lookup([1, 2, 3, 4]).length == 2
    c.store([1, 2, 3], b"decoded again", DECODED)  # a less exact state never replaces a more exact one
    assert c.lookup([1, 2, 3]).blob == b"prefilled"
    approx = mambart.PromptCache(1 << 20, exact=False)
    approx.store([1, 2, 3], b"decoded", DECODED)
    assert approx.lookup([1, 2, 3, 4]).length == 3
    assert c.lookup([9]).blob is None and c.misses >= 1


def test_byte_bound_and_lru_order():
    c = mambart.PromptCache(1000)
    for i in range(20):
        c.store([i, i + 1], bytes(200), PREFILLED)
        assert c.nbytes <= 1000
    assert len(c) == 4 and c.evictions == 16
    c.lookup([18, 19])  # recently used: survives the next insertion
    c.store([99, 100], bytes(200), PREFILLED)
    assert c.lookup([18, 19]).length == 2 and c.lookup([16, 17]).blob is None
    assert not c.store([1], bytes(5000), PREFILLED)  # larger than the whole cache
    with pytest.raises(ValueError):
        mambart.PromptCache(-1)


def test_slices_are_cut_at_absolute_multiples():
    assert prefill_slices(0, 600) == [(0, 256), (256, 512), (512, 600)]
    assert prefill_slices(300, 800, 512) == [(300, 512), (512, 800)]
    with pytest.raises(ValueError):
        prefill_slices(0, 10, 100)


def test_prefill_run_advances_one_slice_at_a_time(small_model_dir):
    model = mambart.load(small_model_dir[0], threads=1)
    ids = list(range(1, 200)) * 4  # 796 tokens: 4 slices
    d = model.decoder(1)
    d.reset_row(0)
    from mambart.cache import CacheHit

    run = PrefillRun(d, 0, ids, CacheHit(0, None), None)
    steps = 0
    while not run.done:
        run.advance()
        steps += 1
    assert steps == 4 and run.prefilled == len(ids)
    np.testing.assert_array_equal(d.row_logits(0), _cold_logits(model, ids))
