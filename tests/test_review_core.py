"""The Decoder's calls given odd uses: a clear error, never a crash or a wrong state."""
import subprocess
import sys

import pytest

import child
import mambart

# A prefill's progress callback (or a signal handler between two layers)
# runs Python on the thread that holds the decoder: a call there that
# changes the decoder freed or outgrew the KV caches the prefill was writing.
REENTER = """
import signal, sys
import mambart
model = mambart.load(sys.argv[1], threads=1)
dec = model.decoder(2)
dec.prefill([[1], [2]])
how = sys.argv[2]
calls = {"reset_row": lambda: dec.reset_row(0), "prefill_row": lambda: dec.prefill_row(0, [3] * 300),
         "step": lambda: dec.step([3, 4]), "prefill": lambda: dec.prefill([[3], [4]]),
         "copy_row": lambda: dec.copy_row(1, 0), "import_row": lambda: dec.import_row(0, dec.export_row(1))}
seen = []
def progress(done, total):
    seen.append(dec.history(0)[-1])  # reading is fine
    if done < total:
        calls[how]()
try:
    dec.prefill([[5] * 700, [6]], progress=progress)
except RuntimeError as e:
    assert "in the middle of a prefill" in str(e), e
    print("refused", str(e).split("]")[0] + "]")
print("context", dec._core.context(), len(dec.history(0)), len(dec.history(1)))
dec.step([1, 2])
print("ok", seen[:1])
"""


@pytest.mark.parametrize("how", ["reset_row", "prefill_row", "step", "prefill", "copy_row", "import_row"])
def test_progress_callback_cannot_change_the_decoder(small_granite_dir, how):
    r = subprocess.run([sys.executable, "-c", REENTER, str(small_granite_dir[0]), how], capture_output=True,
                       text=True, timeout=300, env=child.env(), cwd=child.CWD)
    assert r.returncode == 0, (r.returncode, r.stderr[-2000:])
    lines = r.stdout.splitlines()
    assert lines[0] == f"refused [{how}]"
    # Stopped after the first chunk of row 0: the state is as after those 256 tokens.
    assert lines[1] == "context [257, 1] 257 1"
    assert lines[2] == "ok [5]"


SIGNAL = """
import signal, sys
import mambart
model = mambart.load(sys.argv[1], threads=1)
dec = model.decoder(1)
hits = []
def handler(*_):
    hits.append(1)
    dec.reset_row(0)
signal.signal(signal.SIGALRM, handler)
signal.setitimer(signal.ITIMER_REAL, 0.002, 0.002)
refused = 0
try:
    for _ in range(50):
        try:
            dec.prefill([[5] * 1500])
        except RuntimeError as e:
            assert "in the middle of a prefill" in str(e), e
            refused += 1
finally:
    signal.setitimer(signal.ITIMER_REAL, 0)
assert dec._core.context()[0] == len(dec.history(0)), (dec._core.context(), len(dec.history(0)))
dec.step([1])
print("ok", refused > 0)
"""


def test_signal_handler_cannot_change_the_decoder_mid_prefill(small_granite_dir):
    r = subprocess.run([sys.executable, "-c", SIGNAL, str(small_granite_dir[0])], capture_output=True, text=True,
                       timeout=300, env=child.env(), cwd=child.CWD)
    assert r.returncode == 0, (r.returncode, r.stderr[-2000:])
    assert r.stdout.startswith("ok"), r.stdout


def test_core_decoder_of_none_is_an_error():
    # pybind11 passes None for the model as a null pointer: the decoder dereferenced it (SIGSEGV).
    code = ("from mambart import _core\n"
            "try:\n    _core.Decoder(None, 1)\nexcept ValueError as e:\n    print(e)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=child.env(),
                       cwd=child.CWD)
    assert r.returncode == 0, (r.returncode, r.stderr[-2000:])
    assert r.stdout.strip() == "[decoder] model must be a Model, got None"


def test_penalty_counts_is_refused_while_another_thread_holds_the_decoder(small_model_dir):
    # It read the samplers' counts while the holder's sample() (GIL released) added to them.
    import threading

    import mambart
    from mambart.decoder import BUSY

    model = mambart.load(small_model_dir[0], threads=1)
    dec = model.decoder(1)
    stream = model.stream("Mamba is", 20, temperature=1.0, frequency_penalty=0.5, seed=3, state=dec)
    next(iter(stream))
    out = []
    t = threading.Thread(target=lambda: out.append(_call(dec.penalty_counts)))
    t.start()
    t.join()
    assert isinstance(out[0], RuntimeError) and str(out[0]) == BUSY
    assert sum(dec.penalty_counts()[0].values()) >= 1  # the holder's own thread may look
    stream.close()


def _call(fn):
    try:
        return fn()
    except Exception as e:  # noqa: BLE001 - handed back to the test
        return e


def _resign(data: bytes, edit) -> bytes:
    """A state file with its header changed by `edit` and a valid checksum again."""
    import hashlib
    import json

    from mambart.state import _HEAD, FORMAT, MAGIC

    _, _, n, m, _ = _HEAD.unpack_from(data)
    head = json.loads(data[_HEAD.size:_HEAD.size + n])
    edit(head)
    head = json.dumps(head, separators=(",", ":")).encode()
    body = data[_HEAD.size + n:]
    return _HEAD.pack(MAGIC, FORMAT, len(head), m, hashlib.sha256(head + body).digest()) + head + body


def test_penalty_counts_beyond_the_history_are_refused(small_model_dir):
    # A count near 2**31 overflowed the sampler's int32 on the next draw; the
    # counts of sampled tokens cannot add up to more than the row's history.
    model = mambart.load(small_model_dir[0], threads=1)
    s = model.stream("def f():", 4, temperature=1.0, seed=1, presence_penalty=0.5)
    "".join(s)
    data = s.decoder.save_state()
    assert mambart.load(small_model_dir[0], threads=1).load_state(data).penalty_counts()  # it round-trips
    for count in (2**31 - 1, 10**4):
        def edit(h, count=count):
            h["counts"][0][0][1] = count
        with pytest.raises(ValueError, match="bad penalty counts"):
            model.load_state(_resign(data, edit))
    with pytest.raises(ValueError, match="count"):
        mambart._core.Sampler().counts = {5: 2**31 - 1}


def test_bad_logit_rows_are_refused(small_model_dir):
    model = mambart.load(small_model_dir[0], threads=1)
    dec = model.decoder(2)
    dec.prefill([[1, 2], [3]])
    dec.reset_row(1)
    data = dec.save_state()
    assert model.load_state(data).row_has_logits(0)
    for bad in ([True], [True, 1], [False, False], "yes", None):
        def edit(h, bad=bad):
            h["logit_rows"] = bad
        if bad is None:  # absent: every row of the saved logits is real (files without the key)
            assert model.load_state(_resign(data, edit)).has_logits
            continue
        with pytest.raises(ValueError, match="bad logit_rows"):
            model.load_state(_resign(data, edit))
    with pytest.raises(ValueError, match="bad logit_rows"):  # rows flagged where no logits were saved
        model.load_state(_resign(model.decoder(2).save_state(), lambda h: h.update(logit_rows=[True, False])))
