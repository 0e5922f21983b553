"""Threads: a Decoder is used by one thread at a time (a clear RuntimeError
otherwise, never a crash or a torn state); a Model is shared by any number."""
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import mambart
from mambart.decoder import BUSY

# Run in a subprocess, so that a crash fails the test instead of killing
# pytest. Four threads hammer one decoder with every operation, 100 rounds
# each, through the Python API and straight through _core. Each call either
# works or raises RuntimeError(BUSY); at the end the history must hold
# exactly the tokens of the calls that worked, and every snapshot taken
# meanwhile must be consistent (its logits those of its own history).
HAMMER = textwrap.dedent("""
    import random, sys, threading
    import numpy as np
    import mambart

    model = mambart.load(sys.argv[1], threads=2)
    dec = model.decoder(2)
    dec.prefill([[1, 2, 3], [4, 5, 6]])
    fed = [3]                # tokens per row fed by the calls that worked
    snapshots, unexpected = [], []
    lock = threading.Lock()

    def python_api(r):
        op = r.randrange(7)
        if op == 0:
            dec.step([r.randrange(300), r.randrange(300)]); return 1
        if op == 1:
            k = r.randrange(1, 600)
            dec.prefill([[9] * k, [10] * k]); return k
        if op == 2:
            dec.sample(); return 0
        if op == 3:
            snap = dec.save_state()
            with lock:
                snapshots.append(snap)
            return 0
        if op == 4:
            with dec._use:  # held: what the generation fed is measured exactly
                before = len(dec.history(0))
                try:
                    model.generate(["", ""], 3, state=dec, temperature=0)
                finally:
                    with lock:
                        fed[0] += len(dec.history(0)) - before
            return 0
        dec.history(1); dec.logits(); dec.has_logits
        return 0

    def core(r):  # the C++ decoder alone must never corrupt memory either
        op = r.randrange(5)
        c = dec._core
        if op == 0:
            c.step([7, 8]); return 1
        if op == 1:
            k = r.randrange(1, 600)
            c.prefill([[9] * k, [10] * k]); return k
        if op == 2:
            c.history(r.randrange(2)); c.logits(); return 0
        if op == 3:
            c.conv_state(); c.ssm_state(); return 0
        return 0 if c.has_logits else 0

    def work(api, seed):
        r = random.Random(seed)
        for _ in range(100):
            try:
                n = api(r)
            except RuntimeError as e:
                if "in use by another thread" not in str(e):
                    unexpected.append(repr(e))
                continue
            except Exception as e:
                unexpected.append(repr(e))
                continue
            with lock:
                fed[0] += n

    for api in (python_api, core):
        threads = [threading.Thread(target=work, args=(api, k)) for k in range(4)]
        for t in threads: t.start()
        for t in threads: t.join()
        assert not unexpected, unexpected[:3]
        for row in range(2):
            assert len(dec.history(row)) == fed[0], (api.__name__, len(dec.history(row)), fed[0])
    for snap in snapshots[:8]:
        restored = model.load_state(snap)
        again = model.decoder(2)
        again.prefill([restored.history(0), restored.history(1)])
        got, want = restored.logits(), again.logits()
        assert np.abs(got - want).max() <= 1e-3 * np.abs(want).max(), "torn snapshot"
    print("ok", len(snapshots), fed[0])
""")


def test_threads_hammering_one_decoder_never_corrupt_it(small_model_dir, tmp_path):
    for attempt in range(3):  # the races need luck to show; three runs of 4 x 100 calls per API
        # cwd away from the sources: a checkout's mambart/ would shadow the installed package
        r = subprocess.run([sys.executable, "-c", HAMMER, str(small_model_dir[0])], capture_output=True, text=True,
                           timeout=300, cwd=tmp_path)
        assert r.returncode == 0, (r.returncode, r.stderr[-2000:])
        assert r.stdout.startswith("ok"), r.stdout


@pytest.fixture(scope="module")
def model(small_model_dir):
    return mambart.load(small_model_dir[0], threads=2)


def test_model_is_shared_across_threads(model):
    """Each thread its own decoder over one Model: the same tokens as one at a time."""
    prompts = [[1, 2, 3], [40, 41], [7] * 300, [9, 8, 7, 6]]

    def greedy(ids):
        dec = model.decoder(1)
        dec.prefill([ids])
        dec.set_sampling(mambart.SamplingParams(temperature=0))
        out = []
        for _ in range(40):
            (token,) = dec.sample()
            out.append(int(token))
            dec.step([token])
        return out

    want = [greedy(p) for p in prompts]
    got = [None] * len(prompts)

    def run(i):
        for _ in range(3):
            got[i] = greedy(prompts[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == want


def in_thread(fn):
    """fn() run in another thread: its result, or the exception it raised."""
    out = []

    def run():
        try:
            out.append(fn())
        except Exception as e:  # noqa: BLE001 - handed back to the test
            out.append(e)

    t = threading.Thread(target=run)
    t.start()
    t.join()
    return out[0]


def test_a_generation_holds_its_decoder(model):
    dec = model.decoder(1)
    stream = model.stream("Mamba is", 20, temperature=0, state=dec)
    next(iter(stream))
    err = in_thread(dec.save_state)
    assert isinstance(err, RuntimeError) and str(err) == BUSY
    assert isinstance(in_thread(lambda: dec.step([1])), RuntimeError)
    dec.history(0)  # the thread that runs the generation may look
    stream.close()
    assert isinstance(in_thread(dec.save_state), bytes)


def test_a_generation_follows_its_iterator_to_another_thread(model):
    whole = model.stream("Mamba is", 12, temperature=0)
    "".join(whole)
    dec = model.decoder(1)
    stream = model.stream("Mamba is", 12, temperature=0, state=dec)
    first = next(iter(stream))
    rest = in_thread(lambda: "".join(stream))  # resumed elsewhere: it moves with it
    assert first + rest == "".join(model.tokenizer.decode(whole.token_ids))
    assert dec.history(0) == whole.decoder.history(0)


def test_core_decoder_refuses_a_second_thread(model):
    """The C++ decoder enforces the same rule, whatever calls it: a call made
    while another thread is inside prefill fails at once."""
    dec = model.decoder(1)
    inside, release = threading.Event(), threading.Event()

    def progress(done, total):
        inside.set()
        release.wait(10)

    t = threading.Thread(target=lambda: dec._core.prefill([[5] * 600], progress=progress))
    t.start()
    assert inside.wait(10)
    try:
        with pytest.raises(RuntimeError, match="in use by another thread"):
            dec._core.step([1])
        with pytest.raises(RuntimeError, match="in use by another thread"):
            dec._core.history(0)
    finally:
        release.set()
        t.join()
    assert len(dec.history(0)) == 600


def test_same_thread_may_reenter(model):
    """A progress callback on the prefilling thread may read the decoder."""
    dec = model.decoder(1)
    seen = []
    dec.prefill([[3] * 700], progress=lambda done, total: seen.append((done, total, len(dec.history(0)))))
    assert seen == [(256, 700, 256), (512, 700, 512), (700, 700, 700)]
    assert np.isfinite(dec.logits()).all()
