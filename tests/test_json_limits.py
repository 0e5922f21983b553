"""Every JSON file is read with a size and a nesting limit; configs cannot ask for unbounded work."""
import json
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

import mambart
from mambart import jsonfile
from mambart.checkpoint import read_index, read_safetensors
from mambart.config import load_config
from mambart.tokenizer import Tokenizer

DEEP = "[" * 100_000 + "]" * 100_000
DEEP_OBJECT = '{"a": ' * 100_000 + "1" + "}" * 100_000


def model_copy(src, dst):
    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize("text", [DEEP, DEEP_OBJECT, "[" * 65 + "]" * 65])
def test_deep_nesting_is_a_value_error(text):
    with pytest.raises(ValueError, match=r"^f.json: JSON nests deeper than 64 levels$"):
        jsonfile.loads(text, "f.json")
    assert jsonfile.loads("[" * 64 + "]" * 64, "f.json") is not None  # the limit itself is fine


def test_size_limit_checked_before_reading(tmp_path):
    path = tmp_path / "config.json"
    with open(path, "wb") as f:
        f.truncate(jsonfile.MAX_BYTES + 1)  # sparse: nothing is written
    with pytest.raises(ValueError, match=rf"^{path}: {jsonfile.MAX_BYTES + 1} bytes, over the"):
        load_config(path)


def test_device_file_is_not_read_forever():
    with pytest.raises(ValueError, match="over the .*-byte limit"):
        jsonfile.read("/dev/zero")


def test_config_json_nested(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "mamba", "x": ' + DEEP + "}")
    with pytest.raises(ValueError, match=rf"^{tmp_path / 'config.json'}: JSON nests deeper"):
        load_config(tmp_path)


def test_safetensors_header_nested(tmp_path):
    text = ('{"a": ' + DEEP + "}").encode()
    (tmp_path / "model.safetensors").write_bytes(len(text).to_bytes(8, "little") + text)
    with pytest.raises(ValueError, match="^model.safetensors: header: JSON nests deeper"):
        read_safetensors(tmp_path / "model.safetensors")


def test_index_nested(tmp_path):
    (tmp_path / "model.safetensors.index.json").write_text('{"weight_map": ' + DEEP + "}")
    with pytest.raises(ValueError, match="^model.safetensors.index.json: JSON nests deeper"):
        read_index(tmp_path / "model.safetensors.index.json")


@pytest.mark.parametrize("name", ["tokenizer_config.json", "generation_config.json"])
def test_tokenizer_side_files_nested(tmp_path, small_model_dir, name):
    d = model_copy(small_model_dir[0], tmp_path / "m")
    (d / name).write_text('{"eos_token": ' + DEEP + "}")
    with pytest.raises(ValueError, match=f"{name}: JSON nests deeper"):
        Tokenizer.from_dir(d)


def test_info_prints_one_line_for_nested_config(tmp_path, small_model_dir):
    d = model_copy(small_model_dir[0], tmp_path / "m")
    (d / "config.json").write_text('{"model_type": "mamba", "x": ' + DEEP + "}")
    r = subprocess.run([sys.executable, "-m", "mambart", "info", str(d)], capture_output=True, text=True,
                       timeout=60, cwd=tempfile.gettempdir())
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.startswith("mambart: error: ") and r.stderr.count("\n") == 1, r.stderr
    assert "nests deeper" in r.stderr


@pytest.mark.parametrize("key, layers, message", [
    ("num_hidden_layers", 10**9, "1000000000 layers exceed the 4096-layer limit"),
    ("num_hidden_layers", 4000, "the config's 4000 layers need more tensors than the checkpoint's"),
])
def test_layer_count_bounded_before_any_table(tmp_path, small_model_dir, key, layers, message):
    d = model_copy(small_model_dir[0], tmp_path / "m")
    raw = json.loads((d / "config.json").read_text())
    raw[key] = layers
    (d / "config.json").write_text(json.dumps(raw))
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match=message):
        mambart.load(d)
    with pytest.raises(ValueError, match=message):
        _describe(d)
    assert time.perf_counter() - t0 < 1.0


def _describe(d):
    from mambart.info import describe
    return describe(str(d))


def test_mamba_ssm_layers_bounded(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"d_model": 64, "n_layer": 10**6, "ssm_cfg": {}}))
    with pytest.raises(ValueError, match="layer limit"):
        load_config(tmp_path)


def test_chat_template_config_nested(tmp_path, small_model_dir):
    from mambart.serve.template import ChatTemplate, NoTemplate

    d = model_copy(small_model_dir[0], tmp_path / "m")
    (d / "tokenizer_config.json").write_text('{"chat_template": ' + DEEP + "}")
    with pytest.raises(NoTemplate):  # the file is unreadable, so the model has no template
        ChatTemplate.for_model(d, Tokenizer.from_file(d / "tokenizer.json"))
