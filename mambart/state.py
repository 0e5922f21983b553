"""Saved decoder states: a Mamba's whole context in one small file.

Layout (little-endian), format 2:

    8 bytes   magic b"MAMBAST" and the format version, 2
    8 bytes   header length n (uint64)
    8 bytes   data length m (uint64)
    32 bytes  SHA-256 of the header and the data
    n bytes   header, UTF-8 JSON: the model's name and fingerprint, batch,
              per-row token history, context length, RNG state and the
              presence / frequency penalties' token counts (null when none;
              absent in older files), the rows whose logits are saved
              (logit_rows, only when some are not: a row reset after its
              prefill), and the arrays that follow (name, shape)
    m bytes   float32 arrays in header order: conv (mamba_layers, batch,
              conv_channels, d_conv) and ssm (mamba_layers, batch,
              ssm_state_size), the Mamba layers only (in layer order; an
              attention layer holds no conv or SSM state), logits (batch,
              vocab; if any row has them, zeros in the others), kv (attention hybrids, flat: per attention
              layer and row, the keys then the values of its context,
              (context, kv_heads * head_dim) each)

Reading never trusts a length it has not checked: the fixed head comes
first, then a header of at most _MAX_HEADER bytes, whose batch and array
shapes must be this model's before the data is read, and then exactly m
bytes, which must end the file. Any changed byte fails the checksum, so a
truncated, corrupt or foreign file is always a clear ValueError. Format 1
files (no checksum, mambart 0.1) are refused with a message saying so.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import os
import stat
import struct
from typing import IO, TYPE_CHECKING

import numpy as np

from . import jsonfile

if TYPE_CHECKING:
    from .decoder import Decoder
    from .model import Model

MAGIC = b"MAMBAST"
FORMAT = 2
_HEAD = struct.Struct("<7sBQQ32s")  # magic, format, n, m, digest
_MAX_HEADER = 1 << 30  # a token history of ~100M ids
_READ_CHUNK = 1 << 24  # a file that ends early costs at most its own size


def dump(decoder: "Decoder") -> bytes:
    """The state file's bytes; the caller holds the decoder (one snapshot)."""
    model = decoder.model
    arrays = {"conv": decoder._core.conv_state(), "ssm": decoder._core.ssm_state()}
    rows = [decoder.row_has_logits(r) for r in range(decoder.batch)]
    if any(rows):
        logits = np.array(decoder.logits())
        logits[[not r for r in rows]] = 0  # a row without logits holds stale values: not saved
        arrays["logits"] = logits
    if model.config.layers:  # an attention hybrid: its KV caches
        arrays["kv"] = decoder._core.kv_state()
    rng = decoder.rng_states()
    counts = decoder.penalty_counts()
    header = {
        "model": model.name,
        "fingerprint": model.fingerprint,
        "batch": decoder.batch,
        "history": [decoder.history(row) for row in range(decoder.batch)],
        "context": decoder._core.context(),
        "rng": [r.hex() for r in rng] if rng else None,
        "counts": [sorted(c.items()) for c in counts] if counts and any(counts) else None,
        **({} if all(rows) or not any(rows) else {"logit_rows": rows}),
        "arrays": [[name, list(a.shape)] for name, a in arrays.items()],
    }
    head = json.dumps(header, separators=(",", ":")).encode()
    body = b"".join(np.ascontiguousarray(a, dtype="<f4").tobytes() for a in arrays.values())
    digest = hashlib.sha256(head + body).digest()
    return _HEAD.pack(MAGIC, FORMAT, len(head), len(body), digest) + head + body


def expected_shapes(model: "Model", batch: int, logits: bool,
                    context: list[int] | None = None) -> dict[str, tuple[int, ...]]:
    """The arrays a state of `batch` rows holds for this model, in file order; an attention
    hybrid's KV caches (flat) hold its rows' `context` tokens."""
    c = model._core.config
    shapes = {"conv": (c.mamba_layers, batch, c.conv_channels, c.d_conv),
              "ssm": (c.mamba_layers, batch, c.ssm_state_size)}
    if logits:
        shapes["logits"] = (batch, c.vocab_size)
    if c.layers:
        per_token = 2 * sum(kind in "APS" for kind in c.layers) * c.kv_heads * c.attn_head_dim
        shapes["kv"] = (per_token * sum(context or []),)
    return shapes


def _context(header: dict, batch: int) -> list[int]:
    """Each row's context length: the header's, which must be its history's."""
    history = header["history"]
    if not isinstance(history, list) or len(history) != batch or not all(isinstance(h, list) for h in history):
        raise ValueError("state file header is corrupt: batch and history disagree")
    context = [len(h) for h in history]
    if header.get("context") != context:
        raise ValueError(f"state file header is corrupt: token history lengths {context} are not the context "
                         f"lengths {header.get('context')!r}")
    return context


def load(model: "Model", data: bytes) -> "Decoder":
    return read(model, io.BytesIO(data), len(data))


def load_file(model: "Model", path: str | os.PathLike) -> "Decoder":
    with open(path, "rb") as f:
        st = os.fstat(f.fileno())
        return read(model, f, st.st_size if stat.S_ISREG(st.st_mode) else None)


def _read_exact(f: IO[bytes], n: int, what: str) -> bytes:
    chunks, left = [], n
    while left:
        chunk = f.read(min(left, _READ_CHUNK))
        if not chunk:
            raise ValueError(f"state file is truncated: {what} needs {n} bytes, {n - left} are there")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read(model: "Model", f: IO[bytes], size: int | None) -> "Decoder":
    """A decoder from a state file open in `f` (`size` bytes long, None if unknown: a pipe)."""
    from .decoder import Decoder

    head = f.read(_HEAD.size)
    if len(head) < 8 or head[:7] != MAGIC:
        raise ValueError("not a mambart state file (bad magic)")
    if head[7] != FORMAT:
        if head[7] == 1:
            raise ValueError("state file is format 1 (mambart 0.1, no checksum), which is no longer read: "
                             "save the state again with this mambart")
        raise ValueError(f"state file format {head[7]} is not supported (this mambart reads {FORMAT})")
    if len(head) < _HEAD.size:
        raise ValueError(f"state file is truncated: {len(head)} bytes, the fixed head alone is {_HEAD.size}")
    _, _, n, m, digest = _HEAD.unpack(head)
    if n > _MAX_HEADER:
        raise ValueError(f"state file header is corrupt: it declares {n} bytes (at most {_MAX_HEADER})")
    if size is not None and size != _HEAD.size + n + m:
        kind = "truncated" if size < _HEAD.size + n + m else "longer than it declares"
        raise ValueError(f"state file is {kind}: {size} bytes, its head declares {_HEAD.size + n + m}")
    raw_header = _read_exact(f, n, "the header")
    header = _parse_header(raw_header)
    if header["fingerprint"] != model.fingerprint:
        raise ValueError(f"state was saved from model {header['model']!r}, which differs from the loaded model "
                         f"{model.name!r}")
    batch, specs = header["batch"], header["arrays"]
    if type(batch) is not int or not 1 <= batch <= m:
        raise ValueError(f"state file header is corrupt: batch {batch!r}")
    names = [spec[0] if isinstance(spec, list) and spec else None for spec in specs]
    context = _context(header, batch) if model.config.layers else None
    expected = expected_shapes(model, batch, logits="logits" in names, context=context)
    if names != list(expected) or [_shape(spec) for spec in specs] != list(expected.values()):
        raise ValueError(f"state file's arrays {specs!r} are not this model's for batch {batch}: "
                         f"{[[k, list(v)] for k, v in expected.items()]}")
    sizes = [4 * math.prod(shape) for shape in expected.values()]  # Python ints: no wrap
    if m != sum(sizes):
        raise ValueError(f"state file is corrupt: {m} bytes of data declared, the arrays need {sum(sizes)}")
    body = _read_exact(f, m, "the data")
    if size is None and f.read(1):
        raise ValueError("state file has unexpected trailing bytes")
    if hashlib.sha256(raw_header + body).digest() != digest:
        raise ValueError("state file is corrupt: its checksum does not match its contents")

    history, rng = header["history"], header["rng"]
    vocab = model.config.vocab_size
    if not isinstance(history, list) or len(history) != batch:
        raise ValueError("state file header is corrupt: batch and history disagree")
    for row in history:
        if not isinstance(row, list) or not all(type(t) is int and 0 <= t < vocab for t in row):
            raise ValueError(f"state file header is corrupt: token history must hold ids in [0, {vocab})")
    states = None
    if rng is not None:
        try:
            states = [bytes.fromhex(r) for r in rng]
        except (TypeError, ValueError):
            raise ValueError("state file header is corrupt: bad RNG state") from None
        if len(states) != batch or any(len(s) != 32 for s in states):
            raise ValueError("state file header is corrupt: bad RNG state")
    counts = _counts(header.get("counts"), history, vocab)
    logit_rows = header.get("logit_rows")
    if logit_rows is not None and ("logits" not in names or not isinstance(logit_rows, list)
                                   or len(logit_rows) != batch or not all(type(v) is bool for v in logit_rows)
                                   or not any(logit_rows)):
        raise ValueError("state file header is corrupt: bad logit_rows")
    arrays, offset = {}, 0
    for name, nbytes in zip(expected, sizes):
        arrays[name] = np.frombuffer(body, dtype="<f4", count=nbytes // 4, offset=offset).astype(np.float32)
        offset += nbytes
    decoder = Decoder(model, batch)
    empty = np.zeros(0, dtype=np.float32)
    decoder._core.restore(arrays["conv"], arrays["ssm"], arrays.get("logits", empty), history, arrays.get("kv"),
                          logit_rows or [])
    decoder._rng_states = states
    decoder._counts = counts
    return decoder


def _counts(raw, history: list[list[int]], vocab: int) -> list[dict[int, int]] | None:
    """The penalties' token counts of a header (absent in files written before they were kept).
    A row's counts add up to at most its history's length: the tokens sampled
    are in it (and a count near 2**31 would overflow the sampler's int32)."""
    if raw is None:
        return None
    bad = ValueError("state file header is corrupt: bad penalty counts")
    if not isinstance(raw, list) or len(raw) != len(history):
        raise bad
    out = []
    for row, seen in zip(raw, history):
        if not isinstance(row, list):
            raise bad
        c = {}
        for pair in row:
            if (not isinstance(pair, list) or len(pair) != 2 or not all(type(v) is int for v in pair)
                    or not 0 <= pair[0] < vocab or not 0 < pair[1] < 2**31 or pair[0] in c):
                raise bad
            c[pair[0]] = pair[1]
        if sum(c.values()) > len(seen):
            raise bad
        out.append(c)
    return out


def _parse_header(raw: bytes) -> dict:
    try:
        header = jsonfile.loads(raw, "header")
        for key in ("model", "fingerprint", "batch", "history", "rng", "arrays"):
            header[key]
        if not isinstance(header["arrays"], list):
            raise TypeError("arrays is not a list")
    except (ValueError, KeyError, TypeError, RecursionError) as e:
        raise ValueError(f"state file header is corrupt: {type(e).__name__}: {str(e)[:200]}") from None
    return header


def _shape(spec) -> tuple[int, ...] | None:
    if not isinstance(spec, list) or len(spec) != 2 or not isinstance(spec[1], list):
        return None
    if not all(type(d) is int for d in spec[1]):
        return None
    return tuple(spec[1])
