"""Fuzz targets, one per reader: safetensors header, `.bin` pickle, `.bin` ZIP, config.

Malformed input of every kind ends in a result or a one-line ValueError,
within hypothesis' deadline per example (see fuzz_util.py for the budget).
"""
import atexit
import io
import json
import os
import shutil
import struct
import tempfile
from collections import OrderedDict

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from fuzz_util import FUZZ, result_or_value_error
from mambart.checkpoint import read_safetensors, read_safetensors_header, write_safetensors
from mambart.config import config_from_dict, load_config
from mambart.torch_pickle import read_torch_bin, scan_torch_bin, unpickle

# One folder for the whole run (hypothesis examples cannot take tmp_path), removed at exit.
_DIR = tempfile.mkdtemp(prefix="mambart-fuzz-")
atexit.register(shutil.rmtree, _DIR, True)


def _file(name: str, data: bytes) -> str:
    path = os.path.join(_DIR, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


def _safetensors_bytes() -> bytes:
    path = os.path.join(_DIR, "base.safetensors")
    write_safetensors(path, {"a": np.arange(6, dtype=np.float32).reshape(2, 3),
                             "b": np.ones(4, np.float16), "c": np.zeros((2, 2, 2), np.float32)})
    with open(path, "rb") as f:
        return f.read()


def _torch_bin_bytes() -> bytes:
    sd = OrderedDict()
    base = torch.arange(12.0).reshape(3, 4)
    sd["w"] = base
    sd["t"] = base.t()
    sd["h"] = torch.ones(5).half()
    sd["p"] = torch.nn.Parameter(torch.zeros(2, 2))
    buf = io.BytesIO()
    torch.save(sd, buf)
    return buf.getvalue()


SAFETENSORS = _safetensors_bytes()
TORCH_BIN = _torch_bin_bytes()


def _pickle_of(archive: bytes) -> bytes:
    import zipfile
    with zipfile.ZipFile(io.BytesIO(archive)) as z:
        return z.read(next(n for n in z.namelist() if n.endswith("/data.pkl")))


PICKLE = _pickle_of(TORCH_BIN)


@st.composite
def mutated(draw, base: bytes):
    """base with a few byte flips, insertions, deletions or a truncation."""
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and data:
            data[at] = draw(st.sampled_from([0, 0xFF, 0x7F, 0x80, ord("["), ord("{"), ord('"'), ord("9")]))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del data[at:at + draw(st.integers(1, 16))]
        elif kind == "truncate":
            del data[at:]
    return bytes(data)


# --- safetensors header --------------------------------------------------------------

_DIMS = st.one_of(st.integers(0, 8), st.integers(-3, 2**66), st.just(2**64 - 1))
_ENTRY = st.fixed_dictionaries({
    "dtype": st.one_of(st.sampled_from(["F32", "F16", "BF16", "U8", "I64", "BOOL", "F8_E4M3", "X"]),
                       st.integers()),
    "shape": st.one_of(st.lists(_DIMS, max_size=10), st.integers(), st.none()),
    "data_offsets": st.one_of(st.lists(st.integers(-2, 200), min_size=0, max_size=3), st.text(max_size=3)),
})


@st.composite
def safetensors_files(draw):
    if draw(st.booleans()):
        return draw(mutated(SAFETENSORS))
    header = draw(st.dictionaries(st.text(max_size=8), _ENTRY, max_size=4))
    text = json.dumps(header).encode()
    n = draw(st.one_of(st.just(len(text)), st.integers(0, 2**64 - 1)))
    return struct.pack("<Q", n) + text + draw(st.binary(max_size=128))


@FUZZ
@given(safetensors_files())
def test_fuzz_safetensors(data):
    path = _file("model.safetensors", data)
    tensors = result_or_value_error(read_safetensors, path)
    header = result_or_value_error(read_safetensors_header, path)
    assert (tensors is None) == (header is None)
    for name, t in (tensors or {}).items():
        assert header[name] == (t.dtype, t.shape)
        assert t.data.size == int(np.prod(t.shape, dtype=object))
        if t.dtype in ("F32", "F16", "BF16"):
            assert t.float32().shape == t.shape


# --- .bin: the pickle, and the ZIP around it ------------------------------------------

# Opcodes the restricted unpickler knows, with short operands, plus a few it refuses.
_OPS = st.sampled_from([
    b"}", b"]", b")", b"(", b"t", b"\x85", b"\x86", b"\x87", b"s", b"u", b"a", b"e", b"R", b"b", b"Q",
    b"N", b"\x88", b"\x89", b"K\x01", b"K\x00", b"M\x00\x01", b"J\xff\xff\xff\xff", b"\x8a\x01\x05",
    b"q\x00", b"q\x01", b"h\x00", b"h\x01", b"\x94", b"X\x01\x00\x00\x00a", b"\x8c\x07storage",
    b"\x8c\x03cpu", b"ctorch\nFloatStorage\n", b"ctorch._utils\n_rebuild_tensor_v2\n",
    b"ctorch._utils\n_rebuild_parameter\n", b"ccollections\nOrderedDict\n", b"cos\nsystem\n",
    b"G\x3f\xf0\x00\x00\x00\x00\x00\x00", b"\x80\x02", b"\x95\x00\x00\x00\x00\x00\x00\x00\x00", b"i", b"\x81",
])


@st.composite
def pickles(draw):
    if draw(st.booleans()):
        return draw(mutated(PICKLE))
    return b"\x80\x02" + b"".join(draw(st.lists(_OPS, max_size=60))) + draw(st.sampled_from([b".", b""]))


@FUZZ
@given(pickles())
def test_fuzz_unpickle(data):
    result_or_value_error(unpickle, data)


@FUZZ
@given(mutated(TORCH_BIN))
def test_fuzz_torch_zip(data):
    path = _file("pytorch_model.bin", data)
    tensors = result_or_value_error(read_torch_bin, path)
    views = result_or_value_error(scan_torch_bin, path)
    assert (tensors is None) == (views is None)
    for name, t in (tensors or {}).items():
        assert t.data.size == int(np.prod(t.shape, dtype=object))


# --- config ----------------------------------------------------------------------------

_VALID = {"model_type": "mamba", "hidden_size": 16, "num_hidden_layers": 2, "vocab_size": 64,
          "state_size": 4, "conv_kernel": 4, "expand": 2}
_VALID_SSM = {"d_model": 16, "n_layer": 2, "vocab_size": 64, "ssm_cfg": {"layer": "Mamba2", "headdim": 8}}
_KEYS = sorted({*_VALID, *_VALID_SSM, "time_step_rank", "layer_norm_epsilon", "tie_word_embeddings",
                "use_bias", "use_conv_bias", "num_heads", "head_dim", "n_groups", "chunk_size",
                "time_step_limit", "hidden_act", "pad_vocab_size_multiple", "d_intermediate",
                "attn_layer_idx", "rms_norm", "mambart_quantized", "model_type"})
_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-5, 100), st.integers(),
                     st.sampled_from([2**31, 2**63, 10**400, 1e300, float("inf")]), st.floats(),
                     st.text(max_size=6), st.sampled_from(["auto", "silu", "mamba", "mamba2", "q8", "Mamba2"]))
_VALUES = st.recursive(_SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                         st.dictionaries(st.sampled_from(_KEYS), inner, max_size=3)),
                       max_leaves=8)


@st.composite
def configs(draw):
    raw = dict(draw(st.sampled_from([_VALID, _VALID_SSM])))
    raw.update(draw(st.dictionaries(st.sampled_from(_KEYS), _VALUES, max_size=4)))
    for key in draw(st.lists(st.sampled_from(_KEYS), max_size=2)):
        raw.pop(key, None)
    return raw


@FUZZ
@given(configs())
def test_fuzz_config_dict(raw):
    result_or_value_error(config_from_dict, raw)


@FUZZ
@given(st.one_of(mutated(json.dumps(_VALID).encode()), st.binary(max_size=64)))
def test_fuzz_config_file(data):
    d = os.path.join(_DIR, "cfg")
    os.makedirs(d, exist_ok=True)
    _file("cfg/config.json", data)
    result_or_value_error(load_config, d)
