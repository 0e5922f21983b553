"""Decoder calls that fail change nothing; an interrupted prefill leaves the
state and the history in agreement at a chunk boundary."""
import numpy as np
import pytest

import mambart
from mambart import SamplingParams


@pytest.fixture(scope="module")
def model(small_model_dir):
    return mambart.load(small_model_dir[0], threads=2)


def draws(dec, n=8):
    out = []
    for _ in range(n):
        (token,) = dec.sample()
        out.append(int(token))
        dec.step([token])
    return out


def seeded(model, seed):
    dec = model.decoder(1)
    dec.prefill([[1, 2, 3]])
    dec.set_sampling(SamplingParams(seed=seed))
    return draws(dec)


def test_a_failed_sample_leaves_no_samplers(model):
    dec = model.decoder(1)
    with pytest.raises(ValueError, match="no logits yet"):
        dec.sample()  # used to install randomly seeded samplers
    assert dec.rng_states() is None
    dec.prefill([[1, 2, 3]])
    dec.set_sampling(SamplingParams(seed=3))
    assert draws(dec) == seeded(model, 3)


def test_a_failed_sample_keeps_the_random_stream(model):
    """A row whose logits are bad fails the call after earlier rows drew: their streams are put back."""
    dec = model.decoder(2)
    dec.prefill([[1, 2], [3, 4]])
    dec.set_sampling(SamplingParams(seed=5))
    before = dec.rng_states()
    conv, ssm = dec._core.conv_state(), dec._core.ssm_state()
    logits = dec.logits()
    logits[1, 7] = np.nan
    dec._core.restore(conv, ssm, logits.reshape(-1), [dec.history(0), dec.history(1)])
    with pytest.raises(ValueError, match="logits"):
        dec.sample()
    assert dec.rng_states() == before


@pytest.mark.parametrize("bad", [None, 3, "temperature=0", dict(temperature=0)])
def test_set_sampling_needs_sampling_params(model, bad):
    dec = model.decoder(1)
    with pytest.raises(TypeError, match="SamplingParams"):
        dec.set_sampling(bad)


class Stop(Exception):
    pass


@pytest.mark.parametrize("stop_after", [1, 2])
def test_interrupted_prefill_is_consistent(model, stop_after):
    """Stopped by its progress callback, a prefill has fed whole chunks: the
    state covers exactly history(), and the rest of the prompt continues it
    as if nothing had happened."""
    prompt = list(np.random.default_rng(0).integers(0, 300, 700))
    calls = []

    def progress(done, total):
        calls.append((done, total))
        if len(calls) == stop_after:
            raise Stop

    dec = model.decoder(1)
    with pytest.raises(Stop):
        dec.prefill([prompt], progress=progress)
    fed = dec.history(0)
    assert fed == prompt[:256 * stop_after] and calls[-1] == (len(fed), 700)
    assert not dec.has_logits
    with pytest.raises(ValueError, match="no logits"):
        dec.sample()
    dec.prefill([prompt[len(fed):]])
    whole = model.decoder(1)
    whole.prefill([prompt])
    assert dec.history(0) == prompt
    np.testing.assert_allclose(dec.logits(), whole.logits(), rtol=0, atol=1e-5 * np.abs(whole.logits()).max())


@pytest.mark.parametrize("at", [0.15, 0.4, 0.6])
def test_a_signal_stops_a_prefill_inside_a_chunk(small_granite_dir, at):
    """A signal is seen between two residual blocks, inside a chunk (a big model's chunk takes
    seconds): the prefill stops there, the Mamba states go back to the chunk's start, and the
    rest of the prompt continues as if nothing had happened (a hybrid: KV caches too)."""
    import signal
    import time

    model = mambart.load(small_granite_dir[0], threads=2)
    prompt = list(np.random.default_rng(1).integers(0, 300, 700))
    whole = model.decoder(1)
    t = time.perf_counter()
    whole.prefill([prompt])
    elapsed = time.perf_counter() - t

    def stop(signum, frame):
        raise Stop

    dec = model.decoder(1)
    old = signal.signal(signal.SIGALRM, stop)
    try:
        signal.setitimer(signal.ITIMER_REAL, at * elapsed)
        with pytest.raises(Stop):
            dec.prefill([prompt])
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    fed = dec.history(0)
    assert len(fed) % 256 == 0 and fed == prompt[:len(fed)] and not dec.has_logits
    dec.prefill([prompt[len(fed):]])
    assert dec.history(0) == prompt
    np.testing.assert_allclose(dec.logits(), whole.logits(), rtol=0, atol=1e-5 * np.abs(whole.logits()).max())


def test_progress_must_be_callable(model):
    with pytest.raises(TypeError, match="progress"):
        model.decoder(1).prefill([[1, 2]], progress=5)
    with pytest.raises(TypeError, match="progress"):
        model.stream("abc", 2, progress="bar")


def test_progress_counts_every_row(model):
    dec = model.decoder(2)
    seen = []
    dec.prefill([[1] * 300, [2] * 10], progress=lambda done, total: seen.append((done, total)))
    assert seen == [(256, 310), (300, 310), (310, 310)]
