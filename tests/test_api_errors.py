"""Misuse of the Python API gets a ValueError / TypeError naming the argument, never an internal message."""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tokenizers
from tokenizers import Regex, models, pre_tokenizers

import child
import mambart
from mambart.tokenizer import Tokenizer


@pytest.fixture(scope="module")
def model(small_model_dir):
    return mambart.load(small_model_dir[0], threads=1)


def test_tokenizer_panic_is_a_value_error():
    # A pre-tokenizer regex that backtracks past its limit: the library panics
    # (pyo3's PanicException, a BaseException).
    tok = tokenizers.Tokenizer(models.WordLevel({"a": 0, "[UNK]": 1}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"(a|a)+$"), "isolated")
    with pytest.raises(ValueError, match="^tokenizer failed: .*retry-limit"):
        Tokenizer(tok).encode("a" * 40 + "b")


@pytest.mark.parametrize("prompt, message", [
    ("ab\ud800c", "prompt holds a lone surrogate U\\+D800 at character 2"),
    ("ab\udcffc", "prompt is not valid UTF-8 \\(byte 0xff at character 2\\)"),
])
def test_prompt_that_is_not_unicode(model, prompt, message):
    with pytest.raises(ValueError, match=message):
        model.generate(prompt, max_new_tokens=1)
    with pytest.raises(ValueError, match=message.replace("prompt", "text")):
        model.tokenizer.encode(prompt)


@pytest.mark.parametrize("stop, error, message", [
    (5, TypeError, "stop must be a str or a list of str, got int"),
    ([5], TypeError, "each stop string must be a str, got int"),
    ([""], ValueError, "stop strings must not be empty"),
    (["\ud800"], ValueError, "each stop string holds a lone surrogate"),
])
def test_bad_stop(model, stop, error, message):
    with pytest.raises(error, match=message):
        model.generate("x", max_new_tokens=1, stop=stop)
    with pytest.raises(error, match=message):
        model.generate(["x", "y"], max_new_tokens=1, stop=stop)


@pytest.mark.parametrize("ids", [[2**64], [-1], [10**6], [1, 2**40], [True], [1.5]])
def test_decode_out_of_range_names_the_id(model, ids):
    bad = ids[-1]
    with pytest.raises(ValueError, match=rf"^token id {bad!r} is not an id of this tokenizer \(0 to \d+\)$"):
        model.tokenizer.decode(ids)
    assert model.tokenizer.decode([1, 2]) == model.tokenizer.decode(iter([1, 2]))


def test_file_truncated_while_mapped(tmp_path, small_model_dir):
    # The weights are used in place from the mapped file: reading a page past
    # a truncated end would kill the process with SIGBUS. Run in a child so a
    # failure cannot take pytest down with it.
    d = tmp_path / "m"
    shutil.copytree(small_model_dir[0], d)
    code = ("import os, mambart\n"
            f"m = mambart.load({str(d)!r}, threads=1)\n"
            "m.generate('x', max_new_tokens=2)\n"
            f"os.truncate({str(d / 'model.safetensors')!r}, 4096)\n"
            "for call in (lambda: m.generate('x', max_new_tokens=2), lambda: m.logits([1, 2])):\n"
            "    try:\n        call()\n    except ValueError as e:\n        print(e)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env=child.env(), cwd=child.CWD)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 2 and all("model.safetensors: changed on disk since it was mapped" in x for x in lines)
    assert "now 4096" in lines[0]


def test_file_renamed_over_while_mapped(tmp_path, small_model_dir):
    # A new file renamed into place, or the path deleted, leaves the mapped
    # file intact: the loaded model goes on with it, unchanged.
    d = tmp_path / "m"
    shutil.copytree(small_model_dir[0], d)
    weights = d / "model.safetensors"
    model = mambart.load(d, threads=1)
    want = model.logits([1, 2, 3])
    shutil.copy(weights, tmp_path / "new")
    os.truncate(tmp_path / "new", 4096)  # not the mapped file: no effect on the model
    os.replace(tmp_path / "new", weights)
    np.testing.assert_array_equal(model.logits([1, 2, 3]), want)
    os.unlink(weights)
    np.testing.assert_array_equal(model.logits([1, 2, 3]), want)
