"""Loading, saved states and the Python API given odd values: a clear error, nothing else touched."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import child
import mambart
from mambart.config import load_config
from mambart.sampling import SamplingParams


@pytest.fixture(scope="module")
def model(small_model_dir):
    return mambart.load(small_model_dir[0], threads=1)


@pytest.mark.parametrize("state", [True, 0, 3])
def test_int_state_is_not_a_file_descriptor(model, tmp_path, state):
    # open() would take an int as a descriptor, read it and close it (True is stdout).
    path = tmp_path / "s"
    model.decoder().save_state(path)
    with open(path, "rb") as f:
        fd = f.fileno()
        for call in (lambda: model.generate("", 1, state=fd if state == 3 else state),
                     lambda: model.load_state(fd if state == 3 else state)):
            with pytest.raises(TypeError, match="state must be a Decoder, bytes or a path, got"):
                call()
        os.fstat(fd)  # still open
        os.fstat(1)


@pytest.mark.parametrize("path", [True, 1, 2.5])
def test_int_save_state_path_is_not_a_file_descriptor(model, path):
    dec = model.decoder()
    with pytest.raises(TypeError, match="path must be a str, an os.PathLike or None, got"):
        dec.save_state(path)
    os.fstat(1)


@pytest.mark.parametrize("name", ["temperature", "top_p", "min_p", "repetition_penalty", "presence_penalty",
                                  "frequency_penalty"])
def test_int_beyond_float_range(name):
    with pytest.raises(ValueError, match=f"^{name} must be finite, got a number beyond float range$"):
        SamplingParams(**{name: 10**400})


def test_convert_without_a_tokenizer_writes_nothing(tmp_path, small_model_dir):
    # The tokenizer was looked for after the weights were written: the half-made
    # directory then refused the retry with --tokenizer.
    from mambart.convert import convert

    src = tmp_path / "src"
    src.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copyfile(small_model_dir[0] / name, src / name)
    out = tmp_path / "out"
    with pytest.raises(FileNotFoundError, match="tokenizer path"):
        convert(src, out, "q8", tokenizer=str(tmp_path / "nowhere" / "tokenizer.json"))
    assert not out.exists()
    convert(src, out, "q8", tokenizer=str(small_model_dir[0]))
    assert (out / "tokenizer.json").is_file()


def test_convert_that_fails_while_writing_leaves_nothing(tmp_path, small_model_dir, monkeypatch):
    # A full disk (or a Ctrl-C) during the write left a half-written model dir.
    from mambart import convert as convert_module

    def full_disk(path, *args, **kwargs):
        path.write_bytes(b"\0" * 100)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(convert_module, "write_safetensors", full_disk)
    out = tmp_path / "out"
    with pytest.raises(OSError, match="No space left"):
        convert_module.convert(small_model_dir[0], out, "q8")
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    out.mkdir()  # an empty directory is a fine target
    convert_module.convert(small_model_dir[0], out, "q8")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert mambart.load(out, threads=1).generate("x", 2, temperature=0)


_HUGE = 10**400  # a JSON integer beyond float range: float() of it raises OverflowError


@pytest.mark.parametrize("raw, match", [
    ({"model_type": "mamba", "layer_norm_epsilon": _HUGE}, "'layer_norm_epsilon' must be a positive number"),
    ({"model_type": "mamba", "expand": _HUGE}, "'expand' must be a positive number with expand x d_model"),
    ({"model_type": "mamba2", "time_step_limit": [0, _HUGE]}, "'time_step_limit' must be a pair of numbers in float"),
    ({"model_type": "nemotron_h", "time_step_min": _HUGE}, "'time_step_min' must be a non-negative number"),
    ({"model_type": "zamba2", "time_step_min": _HUGE}, "'time_step_min' must be a positive number"),
    ({"model_type": "falcon_h1", "ssm_multipliers": [_HUGE] * 5}, "'ssm_multipliers' must be a positive number"),
    ({"model_type": "granitemoehybrid", "position_embedding_type": "rope", "rope_theta": _HUGE},
     "'rope_theta' must be a positive number"),
    ({"model_type": "granitemoehybrid", "position_embedding_type": "rope",
      "rope_parameters": {"rope_type": "linear", "factor": _HUGE}}, "rope_type 'linear' needs 'factor' a positive"),
    ({"model_type": "granitemoehybrid", "position_embedding_type": "rope", "max_position_embeddings": _HUGE,
      "rope_parameters": {"rope_type": "yarn", "original_max_position_embeddings": 4096}},
     "rope_type 'yarn' needs 'max_position_embeddings' a positive integer"),
    ({"model_type": "mamba", "layer_norm_epsilon": {"__float__": _HUGE}}, "invalid __float__ value"),
])
def test_config_int_beyond_float_range(tmp_path, raw, match):
    (tmp_path / "config.json").write_text(json.dumps(raw))
    with pytest.raises(ValueError, match=match):
        load_config(tmp_path)


def test_cli_config_int_beyond_float_range(tmp_path, small_model_dir):
    d = tmp_path / "m"
    shutil.copytree(small_model_dir[0], d)
    config = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps(dict(config, layer_norm_epsilon=_HUGE)))
    for args in (["info", str(d)], ["generate", "-m", str(d), "-p", "x", "-n", "1"]):
        r = subprocess.run([sys.executable, "-m", "mambart", *args], capture_output=True, text=True, timeout=120,
                           env=child.env(), cwd=child.CWD)
        assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
        assert r.stderr.startswith(f"mambart: error: {d / 'config.json'}: 'layer_norm_epsilon' must be a positive")


@pytest.mark.parametrize("name", ["config.json", "generation_config.json", "model.safetensors"])
def test_json_integer_too_long_names_the_file(tmp_path, small_model_dir, name):
    # Python's int() refuses over 4300 digits with a message that named no file.
    d = tmp_path / "m"
    shutil.copytree(small_model_dir[0], d)
    if name == "model.safetensors":
        raw = (d / name).read_bytes()
        n = int.from_bytes(raw[:8], "little")
        head = raw[8:8 + n].rstrip(b" ")[:-1] + b',"__metadata__":{"x":' + b"1" * 5000 + b"}}"
        (d / name).write_bytes(len(head).to_bytes(8, "little") + head + raw[8 + n:])
    else:
        raw = json.loads((d / name).read_text())
        (d / name).write_text(json.dumps(raw)[:-1] + ', "x": ' + "1" * 5000 + "}")
    with pytest.raises(ValueError, match=rf"{name}: (header: )?not valid JSON \(an integer of 5000 digits, too long"):
        mambart.load(d)


@pytest.mark.parametrize("ids, bad", [
    (np.array([1, 2**64 - 1], dtype=np.uint64), 2**64 - 1),  # a cast to int64 made it -1
    (np.array([2**40], dtype=np.int64), 2**40),
    ([1, 2**70], 2**70),  # an object array of Python ints
])
def test_token_ids_out_of_range_are_named_as_given(model, ids, bad):
    with pytest.raises(ValueError, match=f"^token id {bad} is out of range"):
        model.logits(ids)
    with pytest.raises(ValueError, match=f"^token id {bad} is out of range"):
        model.decoder(1).prefill([ids])


def test_an_unbuilt_source_tree_says_why_it_has_no_core(tmp_path):
    # Python run from a clone's root imports its mambart/, not the installed one.
    src = tmp_path / "clone"
    shutil.copytree(os.path.dirname(mambart.__file__), src / "mambart",
                    ignore=shutil.ignore_patterns("_core*", "builtin", "__pycache__"))
    (src / "pyproject.toml").write_text("")
    r = subprocess.run([sys.executable, "-c", "import mambart; mambart.load('builtin')"], cwd=src,
                       capture_output=True, text=True, timeout=120, env={k: v for k, v in os.environ.items()
                                                                          if k != "PYTHONPATH"})
    assert r.returncode == 1
    assert "mambart's C++ core is not built in" in r.stderr and "run from another directory" in r.stderr
