"""Saved decoder states: a Mamba's whole context in one small file.

Layout (little-endian):

    8 bytes   magic b"MAMBAST\\x01"
    8 bytes   header length n (uint64)
    n bytes   header, UTF-8 JSON: format version, the model's name and
              fingerprint and sizes, batch, per-row token history and RNG
              state, and the arrays that follow (name, shape)
    ...       float32 arrays in header order: conv, ssm, logits (if any)

Loading checks the magic, the lengths, the model fingerprint and every
shape before anything is put back, so a truncated or foreign file gives a
clear error.
"""
from __future__ import annotations

import json
import struct
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .decoder import Decoder
    from .model import Model

MAGIC = b"MAMBAST\x01"
VERSION = 1
_MAX_HEADER = 1 << 30


def dump(decoder: "Decoder") -> bytes:
    model = decoder.model
    arrays = {"conv": decoder._core.conv_state(), "ssm": decoder._core.ssm_state()}
    if decoder.has_logits:
        arrays["logits"] = decoder.logits()
    rng = decoder.rng_states()
    header = {
        "version": VERSION,
        "model": model.name,
        "fingerprint": model.fingerprint,
        "batch": decoder.batch,
        "history": [decoder.history(row) for row in range(decoder.batch)],
        "rng": [r.hex() for r in rng] if rng else None,
        "arrays": [[name, list(a.shape)] for name, a in arrays.items()],
    }
    head = json.dumps(header, separators=(",", ":")).encode()
    body = b"".join(np.ascontiguousarray(a, dtype="<f4").tobytes() for a in arrays.values())
    return MAGIC + struct.pack("<Q", len(head)) + head + body


def load(model: "Model", data: bytes) -> "Decoder":
    from .decoder import Decoder

    if len(data) < 16 or data[:8] != MAGIC:
        raise ValueError("not a mambart state file (bad magic)")
    (n,) = struct.unpack("<Q", data[8:16])
    if n > _MAX_HEADER or 16 + n > len(data):
        raise ValueError(f"state file is truncated: header of {n} bytes, file of {len(data)}")
    try:
        header = json.loads(data[16:16 + n].decode())
        version, name, fingerprint = header["version"], header["model"], header["fingerprint"]
        batch, history, rng, specs = header["batch"], header["history"], header["rng"], header["arrays"]
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"state file header is corrupt: {e}") from None
    if version != VERSION:
        raise ValueError(f"state file version {version} is not supported (this mambart reads {VERSION})")
    if fingerprint != model.fingerprint:
        raise ValueError(f"state was saved from model {name!r}, which differs from the loaded model {model.name!r}")
    if not isinstance(batch, int) or batch < 1 or not isinstance(history, list) or len(history) != batch:
        raise ValueError("state file header is corrupt: batch and history disagree")
    vocab = model.config.vocab_size
    for row in history:
        if not isinstance(row, list) or not all(type(t) is int and 0 <= t < vocab for t in row):
            raise ValueError(f"state file header is corrupt: token history must hold ids in [0, {vocab})")

    arrays, shapes, offset = {}, {}, 16 + n
    for spec in specs:
        try:
            name_, shape = str(spec[0]), [int(d) for d in spec[1]]
        except (TypeError, ValueError, IndexError):
            raise ValueError(f"state file header is corrupt: bad array entry {spec!r}") from None
        if any(d < 0 for d in shape):
            raise ValueError(f"state file header is corrupt: array {name_!r} has shape {shape}")
        size = int(np.prod(shape, dtype=np.int64)) * 4
        if offset + size > len(data):
            raise ValueError(f"state file is truncated: array {name_!r} needs {size} bytes at offset {offset}, "
                             f"file has {len(data)}")
        arrays[name_] = np.frombuffer(data, dtype="<f4", count=size // 4, offset=offset).astype(np.float32)
        shapes[name_] = shape
        offset += size
    if offset != len(data):
        raise ValueError(f"state file has {len(data) - offset} unexpected trailing bytes")
    if "conv" not in arrays or "ssm" not in arrays:
        raise ValueError("state file is missing the conv or ssm state")

    decoder = Decoder(model, batch)
    for name_, expected in (("conv", decoder._core.conv_state().shape), ("ssm", decoder._core.ssm_state().shape)):
        if arrays[name_].size != int(np.prod(expected)) or tuple(shapes[name_]) != tuple(expected):
            raise ValueError(f"state file's {name_} state has shape {tuple(shapes[name_])}, this model's is "
                             f"{tuple(expected)}")
    empty = np.zeros(0, dtype=np.float32)
    decoder._core.restore(arrays["conv"], arrays["ssm"], arrays.get("logits", empty), history)
    if rng is not None:
        try:
            states = [bytes.fromhex(r) for r in rng]
        except (TypeError, ValueError):
            raise ValueError("state file header is corrupt: bad RNG state") from None
        if len(states) != batch or any(len(s) != 32 for s in states):
            raise ValueError("state file header is corrupt: bad RNG state")
        decoder._rng_states = states
    return decoder
