"""Loading, saved states and the Python API given odd values: a clear error, nothing else touched."""
import os
import shutil

import pytest

import mambart
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
