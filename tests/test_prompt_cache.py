"""mambart.PromptCache: the prefix-state cache from the Python API, its
exactness, and its byte bound."""
from __future__ import annotations

import numpy as np
import pytest

import mambart
from mambart.cache import CHECKPOINT_EVERY, CacheHit, PrefillRun, cached_prefill


def _cold(model, ids):
    d = model.decoder(1)
    d.prefill([ids])
    return d


@pytest.mark.parametrize("seed", [0, 1])
def test_prefill_does_not_depend_on_how_the_prompt_is_cut(any_model_dir, seed):
    """Slices of any length (1 token, fewer than the decode matmul's 32 rows,
    more than a C++ chunk) leave bit-identical states and logits: the
    property that makes every cached prefix state an exact start."""
    model = mambart.load(any_model_dir[0], threads=2)
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, model.vocab_limit, 700).tolist()
    want = _cold(model, ids)
    cuts = sorted(set(rng.integers(1, len(ids), 6).tolist()) | {1, 2, 40, 41, 300})
    d = model.decoder(2)
    prev = 0
    for c in cuts + [len(ids)]:
        d.prefill_row(1, ids[prev:c])
        prev = c
    np.testing.assert_array_equal(d.row_logits(1), want.row_logits(0))
    assert d.export_row(1) == want.export_row(0)  # states, KV caches, logits, history


@pytest.mark.parametrize("n_first,n_more", [(600, 300), (512, 5), (100, 50), (7, 1)])
def test_hits_continue_exactly(any_model_dir, n_first, n_more):
    path, _ = any_model_dir
    model = mambart.load(path, threads=2)
    rng = np.random.default_rng(n_first)
    a = rng.integers(1, model.vocab_limit, n_first).tolist()
    b = a + rng.integers(1, model.vocab_limit, n_more).tolist()
    cache = mambart.PromptCache(64 << 20)
    d = model.decoder(1)
    assert cached_prefill(d, 0, a, cache) == 0
    np.testing.assert_array_equal(d.row_logits(0), _cold(model, a).row_logits(0))
    d2 = model.decoder(2)
    assert cached_prefill(d2, 1, b, cache) == n_first  # the end of the first prompt
    np.testing.assert_array_equal(d2.row_logits(1), _cold(model, b).row_logits(0))
    assert d2.history(1) == b
    # the same prompt again: a full hit, no prefill
    d3 = model.decoder(1)
    assert cached_prefill(d3, 0, a, cache) == n_first
    np.testing.assert_array_equal(d3.row_logits(0), _cold(model, a).row_logits(0))


def test_generate_with_cache_equals_without(small_mamba2_dir):
    model = mambart.load(small_mamba2_dir[0], threads=2)
    prompt = "def fibonacci(n):\n" * 60
    longer = prompt + "return n\n"  # (a prompt ending in "\n" then spaces would tokenize differently)
    want, want_longer = model.generate([prompt, longer], 12, temperature=0)
    cache = mambart.PromptCache()
    for i in range(2):
        s = model.stream(prompt, 12, temperature=0, cache=cache)
        assert "".join(s) == want
        assert s.stats.cached_tokens == (len(model.tokenizer.encode(prompt)) if i else 0)
    s = model.stream(longer, 12, temperature=0, cache=cache)
    assert "".join(s) == want_longer and s.stats.cached_tokens > 0 and cache.hits == 2
    assert model.generate([prompt, prompt], 12, temperature=0, cache=cache) == [want, want]
    with pytest.raises(ValueError, match="give one"):
        model.generate(prompt, 2, cache=cache, state=model.decoder(1))
    with pytest.raises(TypeError, match="PromptCache"):
        model.generate(prompt, 2, cache={})


def test_a_cache_serves_one_model(small_model_dir):
    """States are exact only for the weights, dtype and device that computed
    them: a cache shared with other weights would start prompts from wrong
    states, so it refuses; the same checkpoint loaded again shares it."""
    path = small_model_dir[0]
    f32, again, q8 = (mambart.load(path, threads=1, dtype=t) for t in ("f32", "f32", "q8"))
    prompt = "def fibonacci(n):\n" * 20
    cache = mambart.PromptCache()
    want = f32.generate(prompt, 8, temperature=0, cache=cache)
    s = again.stream(prompt, 8, temperature=0, cache=cache)
    assert "".join(s) == want and s.stats.cached_tokens > 0
    with pytest.raises(ValueError, match="another model"):
        q8.generate(prompt, 8, temperature=0, cache=cache)
    with pytest.raises(ValueError, match="another model"):
        PrefillRun(q8.decoder(1), 0, [1, 2], CacheHit(0, None), cache)
    cache.clear()
    assert q8.generate(prompt, 8, temperature=0, cache=cache) == q8.generate(prompt, 8, temperature=0)


def test_longest_prefix_wins():
    c = mambart.PromptCache(1 << 20)
    c.store([1, 2], b"two")
    c.store([1, 2, 3], b"three")
    assert c.lookup([1, 2, 3, 4]) == CacheHit(3, b"three")
    assert c.lookup([1, 2, 5]) == CacheHit(2, b"two")
    assert c.lookup([1, 2, 3]).length == 3
    assert c.lookup([9]).blob is None and c.misses == 1 and c.hits == 3 and c.hit_tokens == 8


def test_byte_bound_and_lru_order():
    c = mambart.PromptCache(1000)
    for i in range(20):
        c.store([i, i + 1], bytes(200))
        assert c.nbytes <= 1000
    assert len(c) == 4 and c.evictions == 16
    c.lookup([18, 19])  # recently used: survives the next insertion
    c.store([99, 100], bytes(200))
    assert c.lookup([18, 19]).length == 2 and c.lookup([16, 17]).blob is None
    assert not c.store([1], bytes(5000))  # larger than the whole cache
    c.store([99, 100], bytes(300))  # the same prefix again replaces it
    assert len(c) == 4 and c.nbytes == 3 * 208 + 308
    with pytest.raises(ValueError):
        mambart.PromptCache(-1)


def test_prefill_run_keeps_checkpoints_and_marks(small_model_dir):
    model = mambart.load(small_model_dir[0], threads=1)
    ids = list(range(1, 200)) * 6  # 1194 tokens
    cache = mambart.PromptCache(64 << 20)
    d = model.decoder(1)
    run = PrefillRun(d, 0, ids, CacheHit(0, None), cache, marks=[700])
    sizes = []
    while not run.done:
        sizes.append(run.advance(300))
    # cut at the checkpoints (512, 1024) and the mark as well as by the budget
    assert sizes == [300, 212, 188, 300, 24, 170] and sum(sizes) == len(ids)
    assert sorted(len(e.ids) for e in cache._entries.values()) == [CHECKPOINT_EVERY, 700, 2 * CHECKPOINT_EVERY,
                                                                   len(ids)]
    np.testing.assert_array_equal(d.row_logits(0), _cold(model, ids).row_logits(0))
