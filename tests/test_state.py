"""Saved states: save -> load -> continue equals one uninterrupted run."""
import hashlib
import json
import struct
import subprocess
import sys
import tempfile

import pytest

import mambart
from models import make_mamba


@pytest.fixture(scope="module")
def model(any_model_dir):
    return mambart.load(any_model_dir[0], threads=2)


SAMPLING = [dict(temperature=0), dict(temperature=0.9, top_k=50, repetition_penalty=1.3, seed=11),
            # the penalties' counts of the tokens sampled so far travel with the state
            dict(temperature=0, presence_penalty=1.0, frequency_penalty=2.0),
            dict(temperature=0.8, presence_penalty=0.5, frequency_penalty=1.0, seed=3)]
IDS = ["greedy", "sampled", "penalties", "sampled-penalties"]


@pytest.mark.parametrize("sampling", SAMPLING, ids=IDS)
@pytest.mark.parametrize("first", [0, 6])
def test_continue_single(model, sampling, first):
    whole = model.stream("def fibonacci(n):", 20, **sampling)
    "".join(whole)
    part = model.stream("def fibonacci(n):", first, **sampling)
    "".join(part)
    saved = part.decoder.save_state()
    rest = model.stream("", 20 - first, state=saved, **sampling)
    "".join(rest)
    assert part.token_ids + rest.token_ids == whole.token_ids
    assert rest.decoder.history(0) == whole.decoder.history(0)


@pytest.mark.parametrize("sampling", SAMPLING, ids=IDS)
def test_continue_batch(model, sampling):
    prompts = ["Mamba is", "import numpy as np", "x"]
    whole = model.decoder(3)
    model.generate(prompts, 16, state=whole, **sampling)
    part = model.decoder(3)
    model.generate(prompts, 7, state=part, **sampling)
    restored = model.load_state(part.save_state())
    model.generate([""] * 3, 9, state=restored, **sampling)
    for row in range(3):
        assert restored.history(row) == whole.history(row)


def test_more_prompt_after_a_state(model):
    """A loaded state plus more text equals the whole text at once."""
    ids = model.tokenizer.encode("The quick brown fox")
    dec = model.decoder(1)
    dec.prefill([ids[:2]])
    again = model.load_state(dec.save_state())
    again.prefill([ids[2:]])
    direct = model.decoder(1)
    direct.prefill([ids])
    assert abs(again.logits() - direct.logits()).max() <= 1e-5 * abs(direct.logits()).max()


@pytest.mark.parametrize("reset", [0, 1])
def test_rows_without_logits(model, reset):
    """A row reset after its prefill has no logits; the other rows keep theirs
    through save and load (they used to lose them all), and the reset row's
    stale values are not saved."""
    dec = model.decoder(3)
    dec.prefill([[1, 2, 3], [4, 5], [6]])
    dec.reset_row(reset)
    want = {r: dec.row_logits(r) for r in range(3) if r != reset}
    data = dec.save_state()
    back = model.load_state(data)
    assert [back.row_has_logits(r) for r in range(3)] == [r != reset for r in range(3)]
    assert not back.has_logits
    for r, logits in want.items():
        assert (back.row_logits(r) == logits).all()
    assert json.loads(data[56:56 + struct.unpack("<Q", data[8:16])[0]])["logit_rows"] == [r != reset for r in range(3)]
    again = model.load_state(back.save_state())
    assert again.save_state() == data
    back.prefill_row(reset, [6])
    assert back.has_logits


def test_state_file_roundtrip(model, tmp_path):
    dec = model.decoder(1)
    dec.prefill([[1, 2, 3]])
    path = tmp_path / "s.state"
    data = dec.save_state(path)
    assert path.read_bytes() == data
    assert model.load_state(path).history(0) == [1, 2, 3]


def test_wrong_model_is_refused(model, tmp_path):
    path = tmp_path / "other"
    make_mamba(path, hidden_size=32, num_hidden_layers=2, state_size=8, vocab_size=320, seed=99)
    other = mambart.load(path)
    dec = other.decoder(1)
    dec.prefill([[4, 5]])
    with pytest.raises(ValueError, match="saved from model"):
        model.load_state(dec.save_state())


def split(data):
    """(header dict, data bytes) of a state file (format 2: see mambart/state.py)."""
    n, m = struct.unpack("<QQ", data[8:24])
    return json.loads(data[56:56 + n]), data[56 + n:]


def rebuild(header, body):
    """A state file of this header (a dict, or raw bytes) and data, its lengths and checksum made to match."""
    head = header if isinstance(header, bytes) else json.dumps(header).encode()
    digest = hashlib.sha256(head + body).digest()
    return b"MAMBAST\x02" + struct.pack("<QQ", len(head), len(body)) + digest + head + body


def corrupt_cases(data):
    header, body = split(data)
    n = len(data) - 56 - len(body)
    bad_json = data[:56] + b"!" + data[57:]
    header["arrays"][0][1][-1] += 1
    return {
        "truncated": (data[: len(data) - 10], "truncated"),
        "truncated header": (data[:20], "truncated"),
        "magic": (b"GARBAGE!" + data[8:], "not a mambart state"),
        "empty": (b"", "not a mambart state"),
        "json": (bad_json, "corrupt"),
        "shape": (rebuild(header, body), "not this model's"),
        "trailing": (data + b"xx", "longer than it declares"),
        "checksum": (data[:24] + bytes(32) + data[56:], "checksum"),
        "format 1": (b"MAMBAST\x01" + data[8:], "format 1"),
        "format 9": (b"MAMBAST\x09" + data[8:], "format 9 is not supported"),
        "huge header": (data[:8] + struct.pack("<Q", 2**62) + data[16:], "declares"),
    }


@pytest.mark.parametrize("case", ["truncated", "truncated header", "magic", "empty", "json", "shape", "trailing",
                                  "checksum", "format 1", "format 9", "huge header"])
def test_corrupt_state_is_refused(model, case):
    dec = model.decoder(1)
    dec.prefill([[1, 2, 3]])
    data, message = corrupt_cases(dec.save_state())[case]
    with pytest.raises(ValueError, match=message):
        model.load_state(data)


def run_cli(*args):
    r = subprocess.run([sys.executable, "-m", "mambart", "generate", *args], capture_output=True, text=True,
                       timeout=120, cwd=tempfile.gettempdir())
    assert r.returncode == 0, r.stderr
    return r.stdout


def state_history(path):
    data = path.read_bytes()
    return split(data)[0]["history"], data


@pytest.mark.parametrize("first", [0, 5])
def test_cli_save_then_load_equals_one_run(any_model_dir, tmp_path, first):
    path = str(any_model_dir[0])
    common = ["--model", path, "--temperature", "0.8", "--top-p", "0.95", "--seed", "21"]
    run_cli(*common, "--prompt", "Mamba is", "-n", "12", "--save-state", str(tmp_path / "whole"))
    out1 = run_cli(*common, "--prompt", "Mamba is", "-n", str(first), "--save-state", str(tmp_path / "a"))
    out2 = run_cli(*common, "--load-state", str(tmp_path / "a"), "-n", str(12 - first),
                   "--save-state", str(tmp_path / "b"))
    whole_history, whole = state_history(tmp_path / "whole")
    split_history, split = state_history(tmp_path / "b")
    assert split_history == whole_history
    assert split == whole  # the same state, logits and random stream included
    if first == 0:
        assert out1 == ""
    assert len(out1) + len(out2) > 0


def test_cli_load_state_errors(small_model_dir, tmp_path):
    bad = tmp_path / "bad.state"
    bad.write_bytes(b"nonsense")
    r = subprocess.run([sys.executable, "-m", "mambart", "generate", "--model", str(small_model_dir[0]),
                        "--load-state", str(bad)], capture_output=True, text=True, timeout=120,
                       cwd=tempfile.gettempdir())
    assert r.returncode == 1 and r.stderr.startswith("mambart: error:") and r.stderr.count("\n") == 1


def test_state_history_is_validated(model):
    dec = model.decoder(1)
    dec.prefill([[1, 2, 3]])
    data = dec.save_state()
    for bad in ([[1.5]], [[2**40]], [[-1]], [["x"]]):
        header, body = split(data)
        header["history"] = bad
        with pytest.raises(ValueError, match="token history"):
            model.load_state(rebuild(header, body))


def test_state_moves_between_weight_types(any_model_dir):
    """A state is f32 whatever the weights: one saved with f32 weights continues with q8 weights."""
    f32 = mambart.load(any_model_dir[0], dtype="f32")
    q8 = mambart.load(any_model_dir[0], dtype="q8")
    dec = f32.decoder(1)
    dec.prefill([[4, 5, 6]])
    assert q8.load_state(dec.save_state()).history(0) == [4, 5, 6]
