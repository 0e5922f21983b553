"""The sampler against transformers' own logits processors (the oracle),
plus greedy, RNG reproducibility, draw distribution and validation."""
import math

import numpy as np
import pytest
import scipy.stats
import torch
from transformers.generation.logits_process import (
    MinPLogitsWarper,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from mambart import _core
from mambart.sampling import SamplingParams

VOCABS = [1, 2, 7, 33, 257, 4096]
SEEDS = range(12)
MASK64 = 2**64 - 1


# ---- the oracle ------------------------------------------------------------

def hf_process(logits, history=(), temperature=1.0, top_k=0, top_p=1.0, min_p=0.0,
               repetition_penalty=1.0):
    """transformers 5.23's processors in generate()'s order on a (1, V) float32 tensor."""
    vocab = len(logits)
    scores = torch.from_numpy(np.array(logits, dtype=np.float32))[None]
    ids = torch.tensor([[i for i in history if 0 <= i < vocab]], dtype=torch.long).reshape(1, -1)
    processors = []
    if repetition_penalty != 1.0:
        processors.append(RepetitionPenaltyLogitsProcessor(float(repetition_penalty)))
    if temperature != 1.0:
        processors.append(TemperatureLogitsWarper(float(temperature)))
    if top_k > 0:
        processors.append(TopKLogitsWarper(top_k))
    if top_p < 1.0:
        processors.append(TopPLogitsWarper(top_p))
    if min_p > 0.0:
        processors.append(MinPLogitsWarper(min_p))
    for p in processors:
        scores = p(ids, scores)
    return scores[0].numpy()


def ours(logits, history=(), **params):
    sampler = _core.Sampler(**params)
    return sampler.process(np.asarray(logits, np.float32), np.asarray(history, np.int64))


def assert_same(got, want):
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_array_equal(np.isneginf(got), np.isneginf(want), err_msg="-inf masks differ")
    finite = np.isfinite(want)
    np.testing.assert_allclose(got[finite], want[finite], rtol=1e-6, atol=0)


def random_logits(rng, vocab, ties=False):
    if ties:  # few distinct values: many ties, including at the k-th score
        x = rng.integers(-3, 4, vocab).astype(np.float32)
    else:
        x = (rng.standard_normal(vocab) * rng.uniform(0.5, 6)).astype(np.float32)
    if vocab > 2 and rng.random() < 0.3:  # masked tokens from upstream
        x[rng.choice(vocab, vocab // 3, replace=False)] = -np.inf
        x[rng.integers(vocab)] = 0.5
    return x


def random_history(rng, vocab):
    # Repeats and ids outside [0, vocab), which the sampler must ignore.
    return rng.integers(-3, vocab + 3, rng.integers(0, 2 * vocab + 2)).tolist()


def random_params(rng, vocab, which):
    params = {}
    if "repetition_penalty" in which:
        params["repetition_penalty"] = float(rng.choice([0.5, 1.3, 2.0, rng.uniform(0.2, 3)]))
    if "temperature" in which:
        params["temperature"] = float(rng.choice([0.3, 0.7, 1.5, rng.uniform(0.05, 4)]))
    if "top_k" in which:
        params["top_k"] = int(rng.integers(1, vocab + 3))
    if "top_p" in which:
        params["top_p"] = float(rng.choice([0.9, 0.5, rng.uniform(0.01, 1.0)]))
    if "min_p" in which:
        params["min_p"] = float(rng.choice([0.05, 0.3, 1.0, rng.uniform(0.0, 1.0)]))
    return params


# ---- each processor, then all of them, against transformers -----------------

FILTERS = ["repetition_penalty", "temperature", "top_k", "top_p", "min_p"]


@pytest.mark.parametrize("vocab", VOCABS)
@pytest.mark.parametrize("name", FILTERS)
def test_single_filter_matches_transformers(name, vocab):
    for seed in SEEDS:
        rng = np.random.default_rng([seed, vocab])
        logits = random_logits(rng, vocab)
        history = random_history(rng, vocab)
        params = random_params(rng, vocab, [name])
        assert_same(ours(logits, history, **params), hf_process(logits, history, **params))


@pytest.mark.parametrize("vocab", VOCABS)
def test_combined_filters_match_transformers(vocab):
    for seed in SEEDS:
        rng = np.random.default_rng([seed, vocab, 1])
        logits = random_logits(rng, vocab)
        history = random_history(rng, vocab)
        which = [f for f in FILTERS if rng.random() < 0.7]
        params = random_params(rng, vocab, which)
        assert_same(ours(logits, history, **params), hf_process(logits, history, **params))


@pytest.mark.parametrize("scale", [0.05, 1.0, 8.0])
@pytest.mark.parametrize("top_p", [0.3, 0.9, 0.999])
def test_top_p_on_a_real_vocabulary_matches_transformers(scale, top_p):
    # From a few kept tokens to nearly all of V = 50280.
    rng = np.random.default_rng([int(scale * 100), int(top_p * 1000)])
    logits = (rng.standard_normal(50280) * scale).astype(np.float32)
    assert_same(ours(logits, top_p=top_p), hf_process(logits, top_p=top_p))
    params = dict(temperature=0.8, top_k=5000, top_p=top_p, min_p=0.01, repetition_penalty=1.1)
    history = rng.integers(0, 50280, 500).tolist()
    assert_same(ours(logits, history, **params), hf_process(logits, history, **params))


def test_top_p_removes_cumsum_equal_to_threshold():
    # Four equal probabilities of exactly 0.25: cumsums 0.25, 0.5, 0.75, 1.
    logits = np.zeros(4, np.float32)
    for top_p, kept in [(0.5, 2), (0.75, 3), (0.74, 3), (0.76, 4), (0.25, 1), (0.2, 1)]:
        assert np.isfinite(hf_process(logits, top_p=top_p)).sum() == kept
        # ties: the lower ids rank below and go first; -0.0 ties with 0.0
        for tied in (logits, np.array([0.0, -0.0, 0.0, -0.0], np.float32)):
            got = ours(tied, top_p=top_p)
            assert np.isfinite(got).nonzero()[0].tolist() == list(range(4 - kept, 4))


@pytest.mark.parametrize("vocab", [2, 7, 33, 257])
def test_top_k_keeps_ties_like_transformers(vocab):
    # top-p is left out: torch's unstable sort orders tied scores arbitrarily.
    for seed in SEEDS:
        rng = np.random.default_rng([seed, vocab, 2])
        logits = random_logits(rng, vocab, ties=True)
        history = random_history(rng, vocab)
        params = random_params(rng, vocab, ["top_k", "temperature", "repetition_penalty", "min_p"])
        assert_same(ours(logits, history, **params), hf_process(logits, history, **params))
        for k in range(1, vocab + 2):
            assert_same(ours(logits, top_k=k), hf_process(logits, top_k=k))


def test_filters_run_in_pinned_order():
    # Each case gives a different mask in the other order.
    logits = np.array([3.0, 2.9, 1.0, 0.0, -2.0], np.float32)
    got = ours(logits, [0], repetition_penalty=2.0, top_k=1)
    assert np.isfinite(got).nonzero()[0].tolist() == [1]  # penalty before top-k
    got = ours(logits, temperature=4.0, min_p=0.5)
    assert np.isfinite(got).sum() == 3  # temperature before min-p (2 survive at T=1)
    probs = np.log(np.array([0.4, 0.3, 0.2, 0.1], np.float32))
    got = ours(probs, top_k=2, top_p=0.5)
    assert np.isfinite(got).nonzero()[0].tolist() == [0]  # top-p renormalises over top-k
    assert np.isfinite(ours(probs, top_p=0.5)).sum() == 2


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint16])
def test_repetition_penalty_each_distinct_id_once(dtype):
    logits = np.array([2.0, -2.0, 0.0, 4.0], np.float32)
    history = np.array([0, 1, 1, 1, 3, 3, 7], dtype)
    got = _core.Sampler(repetition_penalty=2.0).process(logits, history)
    np.testing.assert_array_equal(got, np.array([1.0, -4.0, 0.0, 2.0], np.float32))
    # a list and an empty history work too
    np.testing.assert_array_equal(_core.Sampler(repetition_penalty=2.0).process(logits, []), logits)
    assert _core.Sampler().process(logits, [2**40, -(2**40)]).tolist() == logits.tolist()


# ---- greedy ------------------------------------------------------------------

@pytest.mark.parametrize("vocab", VOCABS)
def test_greedy_is_argmax_after_penalty(vocab):
    for seed in SEEDS:
        rng = np.random.default_rng([seed, vocab, 3])
        logits = random_logits(rng, vocab, ties=seed % 2 == 0)
        history = random_history(rng, vocab)
        penalty = float(rng.uniform(0.5, 2.0))
        # the other filters are irrelevant in greedy mode
        sampler = _core.Sampler(temperature=0.0, top_k=1 + seed % 3, top_p=0.3, min_p=0.9,
                                repetition_penalty=penalty, seed=seed)
        want = hf_process(logits, history, repetition_penalty=penalty)
        assert sampler.sample(logits, history) == int(np.argmax(want))  # first maximal index
        assert_same(sampler.process(logits, history), want)


def test_greedy_picks_first_of_tied_maxima_and_uses_no_randomness():
    sampler = _core.Sampler(temperature=0, seed=5)
    state = sampler.rng_state
    logits = np.array([1.0, 3.0, -np.inf, 3.0, 3.0], np.float32)
    assert [sampler.sample(logits) for _ in range(20)] == [1] * 20
    assert sampler.rng_state == state
    assert sampler.greedy and SamplingParams(temperature=0).is_greedy
    assert not SamplingParams().is_greedy


# ---- RNG -----------------------------------------------------------------------

def xoshiro_uniforms(seed, n):
    """xoshiro256** seeded by splitmix64, from the published algorithm."""
    def splitmix(x):
        x = (x + 0x9E3779B97F4A7C15) & MASK64
        z = x
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        return x, z ^ (z >> 31)

    def rotl(x, k):
        return ((x << k) | (x >> (64 - k))) & MASK64

    s, x = [], seed
    for _ in range(4):
        x, z = splitmix(x)
        s.append(z)
    state = b"".join(w.to_bytes(8, "little") for w in s)
    out = []
    for _ in range(n):
        result = (rotl((s[1] * 5) & MASK64, 7) * 9) & MASK64
        t = (s[1] << 17) & MASK64
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = rotl(s[3], 45)
        out.append((result >> 11) * 2.0**-53)
    return state, out


@pytest.mark.parametrize("seed", [0, 1, 42, 2**63 + 12345, MASK64])
def test_draws_follow_the_specified_generator(seed):
    # Equal weights over 4 tokens: the draw is floor(4 u), exactly, so the ids
    # pin the generator and its seeding on every platform.
    state, uniforms = xoshiro_uniforms(seed, 200)
    sampler = _core.Sampler(seed=seed)
    assert sampler.rng_state == state
    draws = [sampler.sample(np.zeros(4, np.float32)) for _ in range(200)]
    assert draws == [math.floor(4 * u) for u in uniforms]


def draws(sampler, logits, n):
    return [sampler.sample(logits) for _ in range(n)]


def test_same_seed_same_draws_and_state_round_trip():
    logits = np.random.default_rng(0).standard_normal(50).astype(np.float32)
    params = dict(temperature=1.3, top_k=30, top_p=0.95)
    a = _core.Sampler(seed=7, **params)
    b = _core.Sampler(seed=7, **params)
    assert draws(a, logits, 300) == draws(b, logits, 300)
    assert draws(_core.Sampler(seed=8, **params), logits, 300) != draws(
        _core.Sampler(seed=7, **params), logits, 300)

    saved = a.rng_state
    ahead = draws(a, logits, 100)
    c = _core.Sampler(seed=999, **params)
    c.rng_state = saved
    assert draws(c, logits, 100) == ahead
    d = _core.Sampler(seed=1000, **params)
    d.set_rng_state(saved)
    assert draws(d, logits, 100) == ahead


def test_one_uniform_per_sampled_token():
    # Even when a single token survives, so that the stream does not depend on the logits.
    a, b = _core.Sampler(top_k=1, seed=3), _core.Sampler(seed=3)
    assert draws(a, np.array([0.0, 5.0, 1.0], np.float32), 7) == [1] * 7
    draws(b, np.zeros(9, np.float32), 7)
    assert a.rng_state == b.rng_state


def test_make_sampler_seeds_rows():
    params = SamplingParams(temperature=0.8, top_k=5, seed=100)
    assert params.make_sampler().rng_state == _core.Sampler(seed=100).rng_state
    assert params.make_sampler(3).rng_state == _core.Sampler(seed=103).rng_state
    wrap = SamplingParams(seed=MASK64).make_sampler(2)
    assert wrap.seed == 1 and wrap.rng_state == _core.Sampler(seed=1).rng_state
    s = params.make_sampler(0)
    assert (s.temperature, s.top_k, s.top_p, s.min_p, s.repetition_penalty) == (
        pytest.approx(0.8), 5, 1.0, 0.0, 1.0)
    unseeded = SamplingParams()
    assert unseeded.make_sampler().rng_state != unseeded.make_sampler().rng_state
    with pytest.raises(ValueError, match="row"):
        params.make_sampler(-1)


def test_sampling_module_imports_without_the_extension(monkeypatch):
    import importlib
    import sys

    import mambart
    import mambart.sampling

    # Put the module's own objects back afterwards: a reload makes new
    # classes, which the modules imported before it would not recognise.
    saved = dict(vars(mambart.sampling))
    monkeypatch.setitem(sys.modules, "mambart._core", None)
    monkeypatch.delattr(mambart, "_core", raising=False)
    try:
        module = importlib.reload(mambart.sampling)
        params = module.SamplingParams(top_k=3, seed=1)
        with pytest.raises(ImportError):
            params.make_sampler()
    finally:
        monkeypatch.undo()
        vars(mambart.sampling).clear()
        vars(mambart.sampling).update(saved)


# ---- distribution --------------------------------------------------------------

SMALL = np.array([2.0, 1.5, 1.0, 0.2, -0.5, -1.0], np.float32)


@pytest.mark.parametrize("params,history", [
    ({}, []),
    ({"temperature": 0.5}, []),
    ({"temperature": 2.5}, []),
    ({"top_k": 3}, []),
    ({"top_p": 0.8}, []),
    ({"min_p": 0.2}, []),
    ({"repetition_penalty": 1.8}, [0, 0, 4]),
    ({"temperature": 0.8, "top_k": 5, "top_p": 0.9, "min_p": 0.1,
      "repetition_penalty": 1.3}, [0, 2]),
])
def test_draws_follow_the_processed_distribution(params, history):
    n = 20000
    processed = hf_process(SMALL, history, **params).astype(np.float64)
    expected = np.exp(processed - processed.max())
    expected /= expected.sum()
    sampler = _core.Sampler(seed=20240601, **params)
    hist = np.array(history, np.int64)
    counts = np.bincount([sampler.sample(SMALL, hist) for _ in range(n)], minlength=len(SMALL))
    support = expected > 0
    assert counts[~support].sum() == 0, f"filtered tokens drawn: {counts}"
    assert support.sum() >= 2  # otherwise the test says nothing
    p = scipy.stats.chisquare(counts[support], n * expected[support]).pvalue
    assert p > 1e-4, f"counts {counts}, expected {n * expected}"


def test_sample_leaves_the_callers_logits_alone():
    logits = np.array([1.0, 2.0, 3.0, 4.0], np.float32)
    before = logits.copy()
    sampler = _core.Sampler(temperature=0.5, top_k=2, repetition_penalty=1.5)
    sampler.sample(logits, [3])
    out = sampler.process(logits, [3])
    np.testing.assert_array_equal(logits, before)
    assert out is not logits and np.isneginf(out[:2]).all()


# ---- validation ----------------------------------------------------------------

INVALID = [
    ("temperature", -1.0), ("temperature", math.nan), ("temperature", math.inf),
    ("temperature", 1e-50),
    ("top_k", -1),
    ("top_p", 0.0), ("top_p", 1.5), ("top_p", -0.1), ("top_p", math.nan),
    ("min_p", -0.1), ("min_p", 1.01), ("min_p", math.nan),
    ("repetition_penalty", 0.0), ("repetition_penalty", -1.0),
    ("repetition_penalty", math.nan), ("repetition_penalty", math.inf),
    ("seed", -1), ("seed", 2**64),
]


@pytest.mark.parametrize("name,value", INVALID)
def test_invalid_parameter_rejected_by_core(name, value):
    with pytest.raises(ValueError, match=name):
        _core.Sampler(**{name: value})


@pytest.mark.parametrize("name,value", INVALID + [
    ("temperature", "1"), ("temperature", True), ("top_k", 1.5), ("top_k", True),
    ("top_k", "3"), ("top_p", None), ("min_p", "0"), ("repetition_penalty", False),
    ("seed", 1.5), ("seed", True), ("seed", "1"),
])
def test_invalid_parameter_rejected_by_params(name, value):
    with pytest.raises(ValueError, match=name):
        SamplingParams(**{name: value})


def test_edge_values_accepted():
    for kw in [dict(temperature=0), dict(top_k=0), dict(top_p=1.0), dict(min_p=0.0),
               dict(min_p=1.0), dict(top_k=10**9), dict(seed=MASK64), dict(seed=0)]:
        _core.Sampler(**kw)
        SamplingParams(**kw)
    p = SamplingParams(temperature=np.float32(0.5), top_k=np.int64(4))
    assert type(p.temperature) is float and type(p.top_k) is int
    with pytest.raises(Exception):  # frozen
        p.top_k = 3


@pytest.mark.parametrize("temperature", [0.0, 1.0, 0.7])
@pytest.mark.parametrize("bad,match", [
    ([0.0, math.nan, 1.0], "nan"),
    ([0.0, math.inf, 1.0], "inf"),
    ([], "vocab"),
    ([-math.inf] * 3, "-inf"),
    ([[1.0, 2.0]], "1-D"),
])
def test_bad_logits_raise(temperature, bad, match):
    sampler = _core.Sampler(temperature=temperature, top_p=0.9, min_p=0.1)
    logits = np.array(bad, np.float32)
    with pytest.raises(ValueError, match=match):
        sampler.sample(logits)
    with pytest.raises(ValueError, match=match):
        sampler.process(logits)


def test_overflow_and_bad_history_raise():
    with pytest.raises(ValueError, match="inf"):  # 1e30 / 1e-20 overflows float32
        _core.Sampler(temperature=1e-20).sample(np.array([1e30, 0.0], np.float32))
    sampler = _core.Sampler(repetition_penalty=1.2)
    with pytest.raises(ValueError, match="history"):
        sampler.sample(np.zeros(3, np.float32), np.zeros((2, 2), np.int64))
    with pytest.raises(ValueError, match="history"):
        sampler.sample(np.zeros(3, np.float32), np.array([1.5]))


def test_rng_state_rejects_wrong_length_and_zero_state():
    sampler = _core.Sampler(seed=1)
    with pytest.raises(ValueError, match="32 bytes"):
        sampler.rng_state = b"\x01" * 31
    with pytest.raises(ValueError, match="32 bytes"):
        sampler.set_rng_state(b"")
    with pytest.raises(ValueError, match="zero"):
        sampler.set_rng_state(bytes(32))


# ---- presence / frequency penalties (OpenAI's formula) ----------------------

def openai_penalised(logits, generated, presence, frequency):
    """OpenAI's definition: mu[j] - c[j] * frequency - (c[j] > 0) * presence, c[j]
    the times j was generated so far; in float32, the amount formed as the
    sampler documents (frequency * c + presence, each factor float32)."""
    out = np.array(logits, dtype=np.float32)
    counts = {}
    for t in generated:
        counts[t] = counts.get(t, 0) + 1
    for t, c in counts.items():
        if 0 <= t < len(out):
            out[t] -= np.float32(frequency) * np.float32(c) + np.float32(presence)
    return out


@pytest.mark.parametrize("presence,frequency", [(0.7, 0.0), (0.0, 0.45), (1.3, -0.6), (-2.0, 2.0)])
@pytest.mark.parametrize("rest", [dict(), dict(repetition_penalty=1.3), dict(temperature=0.7, top_k=9, top_p=0.9)])
def test_presence_frequency_follow_openai(presence, frequency, rest):
    """Over a run of draws, each step's processed logits equal OpenAI's
    penalties on the tokens drawn so far (not the prompt history), followed
    by transformers' processors in the documented order."""
    rng = np.random.default_rng(5)
    vocab = 40
    history = list(rng.integers(0, vocab, 10))  # the prompt: repetition penalty only
    params = {"temperature": 1.0, "seed": 3, **rest}
    sampler = _core.Sampler(presence_penalty=presence, frequency_penalty=frequency, **params)
    generated = []
    for _ in range(30):
        logits = rng.normal(0, 2, vocab).astype(np.float32)
        want = hf_repetition(logits, history + generated, rest.get("repetition_penalty", 1.0))
        want = openai_penalised(want, generated, presence, frequency)
        want = hf_process(want, (), **{k: v for k, v in params.items() if k not in ("seed", "repetition_penalty")})
        assert_same(sampler.process(logits, np.asarray(history + generated)), want)
        token = sampler.sample(logits, np.asarray(history + generated))
        generated.append(token)
    assert sampler.counts == {t: generated.count(t) for t in set(generated)}


def hf_repetition(logits, history, penalty):
    if penalty == 1.0:
        return np.asarray(logits, np.float32)
    return hf_process(logits, history, repetition_penalty=penalty)


def test_greedy_argmax_after_presence_penalty():
    logits = np.array([0.0, 3.0, 2.5, 1.0], np.float32)
    s = _core.Sampler(temperature=0.0, presence_penalty=1.0)
    # 3 -> 2 once 1 appears, so 2 (2.5) wins; then 1 (2.0) beats 2 (1.5): presence does not grow
    assert [s.sample(logits) for _ in range(4)] == [1, 2, 1, 1]
    freq = _core.Sampler(temperature=0.0, frequency_penalty=1.0)
    assert [freq.sample(logits) for _ in range(4)] == [1, 2, 1, 2]  # 3,2.5 -> 2,2.5 -> 2,1.5 -> 1,1.5
    off = _core.Sampler(temperature=0.0)
    assert [off.sample(logits) for _ in range(2)] == [1, 1] and off.counts == {}


@pytest.mark.parametrize("name", ["presence_penalty", "frequency_penalty"])
@pytest.mark.parametrize("value", [2.5, -3.0, float("nan"), float("inf"), "1"])
def test_presence_frequency_validated(name, value):
    with pytest.raises(ValueError, match=name):
        SamplingParams(**{name: value})
    if isinstance(value, float) and not math.isfinite(value):
        with pytest.raises(ValueError, match=name):
            _core.Sampler(**{name: value})
