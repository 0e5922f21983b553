"""Checkpoint files: a validating, zero-copy safetensors reader and writer.

Format and checks follow reference doc 6.1 (single file) and 6.3 (sharded
index); `pytorch_model.bin` files are read by `torch_pickle` (doc 6.2). Tensors are numpy views onto a read-only mmap of the file; nothing is
copied until a caller asks for a dtype conversion.
"""
from __future__ import annotations

import json
import mmap
import os
import posixpath
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from . import jsonfile
from .errors import one_line

SAFETENSORS_FILE = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
PYTORCH_FILE = "pytorch_model.bin"
PYTORCH_INDEX = "pytorch_model.bin.index.json"
MISTRAL_FILE = "consolidated.safetensors"  # Mistral's own layout, beside params.json
# Weight formats in order of preference (transformers' order, doc 6.4; then Mistral's).
WEIGHT_FILES = (SAFETENSORS_FILE, SAFETENSORS_INDEX, PYTORCH_FILE, PYTORCH_INDEX, MISTRAL_FILE)

MAX_HEADER_BYTES = 100_000_000  # the reference reader's limit
MAX_DIMS = 8                    # dimensions of one tensor; real checkpoints use up to 3
_MAX_BYTES = 2**64 - 1          # offsets are u64 in the reference reader

# safetensors dtype string -> numpy dtype of the raw little-endian elements.
# BF16 is kept as its bit pattern (uint16); FP8 formats as raw bytes.
_DTYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype("?"), "U8": np.dtype("u1"), "I8": np.dtype("i1"),
    "F8_E5M2": np.dtype("u1"), "F8_E4M3": np.dtype("u1"),
    "I16": np.dtype("<i2"), "U16": np.dtype("<u2"), "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"), "I32": np.dtype("<i4"), "U32": np.dtype("<u4"),
    "F32": np.dtype("<f4"), "F64": np.dtype("<f8"), "I64": np.dtype("<i8"),
    "U64": np.dtype("<u8"),
}
FLOAT_DTYPES = ("F32", "F16", "BF16")


@dataclass(frozen=True)
class RawTensor:
    """One stored tensor: its raw little-endian elements, flat, as stored."""

    name: str
    dtype: str                 # safetensors dtype string: "F32", "F16", "BF16", ...
    shape: tuple[int, ...]
    data: np.ndarray           # 1-D view of the stored elements (BF16 as uint16)

    def float32(self) -> np.ndarray:
        """The tensor as a C-contiguous float32 array of `shape`.

        F32 returns the zero-copy (read-only) view when it is aligned; F16 and
        BF16 are converted exactly. Other dtypes raise ValueError.
        """
        if self.dtype == "F32":
            out = self.data if self.data.flags.aligned else self.data.copy()
        elif self.dtype == "F16":
            out = self.data.astype(np.float32)
        elif self.dtype == "BF16":
            # bf16 is the high half of an f32 word, so the widening is exact.
            out = (self.data.astype(np.uint32) << 16).view(np.float32)
        else:
            raise ValueError(
                f"tensor '{self.name}' has dtype {self.dtype}; only "
                f"{', '.join(FLOAT_DTYPES)} can be loaded")
        return out.reshape(self.shape)


class MappedFile:
    """A file mapped by a reader, with its size and modification time at mapping.

    Reading a mapped page past a file's new end kills the process (SIGBUS), so
    users of the mapping call `check()` first: a file truncated or rewritten
    since it was mapped is then a clear error instead. It holds the mapped
    file open and checks that file, not whatever its path names now: a new
    file renamed into place (or the path deleted) leaves the mapping intact.
    """

    def __init__(self, f) -> None:
        self.path = os.path.abspath(f.name)
        self._fd = os.dup(f.fileno())
        weakref.finalize(self, os.close, self._fd)
        st = os.fstat(self._fd)
        self.size, self.mtime_ns = st.st_size, st.st_mtime_ns

    def check(self) -> None:
        st = os.fstat(self._fd)
        if (st.st_size, st.st_mtime_ns) != (self.size, self.mtime_ns):
            was = f"{self.size} bytes" if st.st_size == self.size else f"{self.size} bytes, now {st.st_size}"
            raise ValueError(f"{self.path}: changed on disk since it was mapped ({was}); "
                             "load the model again")


_MAPPED: "weakref.WeakKeyDictionary[mmap.mmap, MappedFile]" = weakref.WeakKeyDictionary()


def map_file(f) -> mmap.mmap:
    """A read-only mapping of the open file `f`, recorded for `mapped_files`."""
    mapped = MappedFile(f)  # the size before the mapping: never a mapping past the size checked
    mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    _MAPPED[mm] = mapped
    return mm


def _mapping_of(a) -> mmap.mmap | None:
    """The mmap an array's memory belongs to, if any."""
    base = a
    while base is not None and not isinstance(base, mmap.mmap):
        base = base.obj if isinstance(base, memoryview) else getattr(base, "base", None)
    return base


def mapped_files(arrays) -> list[MappedFile]:
    """The mapped files that `arrays` view, each once."""
    found: dict[int, MappedFile] = {}
    for a in arrays:
        mm = _mapping_of(a)
        if mm is not None and mm in _MAPPED:
            found.setdefault(id(mm), _MAPPED[mm])
    return list(found.values())


def check_unchanged(arrays) -> list[MappedFile]:
    """The mapped files under `arrays`, each checked unchanged since mapping."""
    mapped = mapped_files(arrays)
    for m in mapped:
        m.check()
    return mapped


def release_pages(arrays) -> None:
    """Let the mapped checkpoint pages under `arrays` leave this process's
    resident memory (they stay in the page cache, and come back on access).

    After a big matrix was converted at load, the runtime reads its
    converted copy; without this the f32 original would stay counted in the
    process's memory until the OS needs it. Arrays not on a mapped file are
    left alone.
    """
    if not hasattr(mmap, "MADV_DONTNEED"):
        return
    for a in arrays:
        base = _mapping_of(a)
        if base is None or a.size == 0:
            continue
        # The array's byte range within the mapping, widened to whole pages.
        start = a.__array_interface__["data"][0] - np.frombuffer(base, np.uint8).__array_interface__["data"][0]
        end = start + a.nbytes
        start -= start % mmap.PAGESIZE
        base.madvise(mmap.MADV_DONTNEED, start, end - start)


def read_safetensors(path: str | os.PathLike) -> dict[str, RawTensor]:
    """Map a .safetensors file and return its tensors by name, validated.

    Every format violation raises a one-line ValueError starting with the
    file name; the tensors' data stay on the read-only mmap.
    """
    with open(path, "rb") as f:
        n, layout = _read_layout(f, Path(path).name)
        if not layout:
            return {}
        mm = map_file(f)

    tensors = {}
    for key, dtype, shape, begin, count in layout:
        np_dtype = _DTYPES[dtype]
        if count:
            data = np.frombuffer(mm, dtype=np_dtype, count=count, offset=8 + n + begin)
        else:
            data = np.empty(0, dtype=np_dtype)
        tensors[key] = RawTensor(key, dtype, shape, data)
    return tensors


def read_safetensors_header(path: str | os.PathLike) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Name -> (dtype, shape) of a .safetensors file, validated like
    `read_safetensors` but reading only the header."""
    with open(path, "rb") as f:
        _, layout = _read_layout(f, Path(path).name)
    return {key: (dtype, shape) for key, dtype, shape, _, _ in layout}


def _read_layout(f, name: str):
    """Header length and the validated layout (see `_check_layout`) of an open file."""
    def fail(msg: str) -> ValueError:
        return ValueError(one_line(f"{name}: {msg}"))

    size = os.fstat(f.fileno()).st_size
    if size < 8:
        raise fail(f"file is {size} bytes, too short for a safetensors header")
    n = int.from_bytes(f.read(8), "little")
    if n > MAX_HEADER_BYTES:
        raise fail(f"header length {n} exceeds the {MAX_HEADER_BYTES}-byte limit")
    if 8 + n > size:
        raise fail(f"header length {n} runs past the end of the file ({size} bytes)")
    entries = _parse_header(f.read(n), fail)
    return n, _check_layout(entries, size - 8 - n, fail)


def _parse_header(raw: bytes, fail) -> dict[str, Any]:
    """Decode the JSON header into {name: entry}, rejecting duplicate names."""
    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in pairs:
            if k in out:
                raise ValueError(f"header lists '{k}' twice")
            out[k] = v
        return out

    try:
        header = jsonfile.loads(raw, "header", object_pairs_hook=no_duplicates)
    except ValueError as e:
        raise fail(str(e)) from None
    if not isinstance(header, dict):
        raise fail(f"header is a JSON {type(header).__name__}, expected an object")
    header.pop("__metadata__", None)
    return header


def element_count(shape: tuple[int, ...] | list[int], limit: int) -> int | None:
    """The product of `shape` (at most MAX_DIMS non-negative ints, checked by the
    caller), or None when it exceeds `limit`: no product past the limit is formed."""
    if 0 in shape:
        return 0
    n = 1
    for d in shape:
        n *= d
        if n > limit:
            return None
    return n


def _is_uint(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= _MAX_BYTES


def _check_layout(entries: dict[str, Any], buffer_size: int, fail):
    """Validate each entry, then that the byte ranges tile the data buffer.

    Returns (name, dtype, shape, begin, element count) sorted by offset.
    """
    layout = []
    for key, entry in entries.items():
        if not isinstance(entry, dict):
            raise fail(f"tensor '{key}' entry is not an object")
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if not isinstance(dtype, str):
            raise fail(f"tensor '{key}' has no valid 'dtype' (got {dtype!r})")
        if dtype not in _DTYPES:
            raise fail(f"tensor '{key}' has unknown dtype '{dtype}'")
        if isinstance(shape, list) and len(shape) > MAX_DIMS:
            raise fail(f"tensor '{key}' has {len(shape)} dimensions (at most {MAX_DIMS})")
        if not isinstance(shape, list) or not all(_is_uint(d) for d in shape):
            raise fail(f"tensor '{key}' has no valid 'shape' (got {shape!r})")
        if not (isinstance(offsets, list) and len(offsets) == 2
                and all(_is_uint(o) for o in offsets)):
            raise fail(f"tensor '{key}' has no valid 'data_offsets' (got {offsets!r})")
        begin, end = offsets
        if end < begin:
            raise fail(f"tensor '{key}' data_offsets [{begin}, {end}] end before they begin")
        itemsize = _DTYPES[dtype].itemsize
        count = element_count(shape, _MAX_BYTES // itemsize)
        if count is None:
            raise fail(f"tensor '{key}' shape {shape} is too large")
        nbytes = count * itemsize
        if end - begin != nbytes:
            raise fail(f"tensor '{key}' data_offsets [{begin}, {end}] hold {end - begin} bytes, "
                       f"but {dtype} shape {shape} needs {nbytes}")
        if end > buffer_size:
            raise fail(f"tensor '{key}' data_offsets [{begin}, {end}] out of range "
                       f"(data buffer is {buffer_size} bytes)")
        layout.append((key, dtype, tuple(shape), begin, end, count))

    layout.sort(key=lambda t: (t[3], t[4]))
    pos, prev = 0, None
    for key, _, _, begin, end, _ in layout:
        if begin < pos:
            raise fail(f"tensor '{key}' data_offsets [{begin}, {end}] overlap tensor "
                       f"'{prev}' (which ends at {pos})")
        if begin > pos:
            after = f"after tensor '{prev}'" if prev is not None else "at the start of the data"
            raise fail(f"gap of {begin - pos} bytes {after} (tensor '{key}' begins at {begin})")
        pos, prev = end, key
    if pos != buffer_size:
        raise fail(f"{buffer_size - pos} unused bytes after the last tensor "
                   f"(tensors end at {pos}, data buffer is {buffer_size} bytes)")
    return [(key, dtype, shape, begin, count) for key, dtype, shape, begin, _, count in layout]


# --- model directories ---------------------------------------------------------


def read_checkpoint(model_dir: str | os.PathLike) -> dict[str, RawTensor]:
    """All tensors of a model directory, from the first weights format found.

    Looks for `model.safetensors`, `model.safetensors.index.json` with its
    shards, `pytorch_model.bin`, then `pytorch_model.bin.index.json` with its
    shards (the order transformers uses), then Mistral's `consolidated.safetensors`.
    """
    from .torch_pickle import read_torch_bin  # imports RawTensor from this module

    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise FileNotFoundError(f"{model_dir}: not a directory")
    if (model_dir / SAFETENSORS_FILE).is_file():
        return read_safetensors(model_dir / SAFETENSORS_FILE)
    if (model_dir / SAFETENSORS_INDEX).is_file():
        return _read_sharded(model_dir, SAFETENSORS_INDEX, read_safetensors)
    if (model_dir / PYTORCH_FILE).is_file():
        return read_torch_bin(model_dir / PYTORCH_FILE)
    if (model_dir / PYTORCH_INDEX).is_file():
        return _read_sharded(model_dir, PYTORCH_INDEX, read_torch_bin)
    if (model_dir / MISTRAL_FILE).is_file():
        return read_safetensors(model_dir / MISTRAL_FILE)
    raise FileNotFoundError(
        f"{model_dir}: no weights found (looked for {', '.join(WEIGHT_FILES)})")


def weight_files(model_dir: str | os.PathLike) -> list[Path]:
    """The files `read_checkpoint` reads: one weights file, or an index and its shards."""
    model_dir = Path(model_dir)
    for name in WEIGHT_FILES:
        path = model_dir / name
        if path.is_file():
            if not name.endswith(".index.json"):
                return [path]
            shards = sorted(set(read_index(path).values()))
            return [path] + [model_dir / shard for shard in shards]
    raise FileNotFoundError(
        f"{model_dir}: no weights found (looked for {', '.join(WEIGHT_FILES)})")


def read_index(index_path: str | os.PathLike) -> dict[str, str]:
    """The weight_map of a sharded-checkpoint index: tensor name -> shard file.

    Shard names must be relative paths that stay inside the index's directory
    (checked on the names, not on resolved paths: a Hugging Face cache links
    snapshot files to blobs elsewhere).
    """
    index_path = Path(index_path)
    name = index_path.name
    index = jsonfile.read(index_path, name=name)
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise ValueError(one_line(f"{name}: no 'weight_map' object"))
    for tensor, shard in weight_map.items():
        if not isinstance(shard, str) or not shard:
            raise ValueError(one_line(f"{name}: tensor '{tensor}' has shard {shard!r}, expected a file name"))
        norm = posixpath.normpath(shard.replace("\\", "/"))
        if posixpath.isabs(norm) or norm == ".." or norm.startswith("../") \
                or (len(norm) > 1 and norm[1] == ":"):
            raise ValueError(one_line(f"{name}: shard '{shard}' for tensor '{tensor}' is outside "
                             "the model directory"))
    return weight_map


def _read_sharded(model_dir: Path, index_file: str,
                  read_shard: Callable[[Path], dict[str, RawTensor]]) -> dict[str, RawTensor]:
    """Load every shard named by the index; each tensor from its named shard only."""
    weight_map = read_index(model_dir / index_file)
    tensors: dict[str, RawTensor] = {}
    for shard in sorted(set(weight_map.values())):
        path = model_dir / shard
        if not path.is_file():
            raise FileNotFoundError(f"{index_file}: shard '{shard}' not found in {model_dir}")
        for key, tensor in read_shard(path).items():
            owner = weight_map.get(key)
            if owner is None:
                raise ValueError(one_line(f"{index_file}: shard '{shard}' holds tensor '{key}', "
                                 "which the index does not list"))
            if owner != shard:
                raise ValueError(one_line(f"{index_file}: tensor '{key}' is mapped to '{owner}' but "
                                 f"also stored in shard '{shard}'"))
            tensors[key] = tensor
    for key, shard in weight_map.items():
        if key not in tensors:
            raise ValueError(one_line(f"{index_file}: tensor '{key}' not found in shard '{shard}'"))
    return tensors


# --- writing ----------------------------------------------------------------------


def float32_to_bf16_bits(x: np.ndarray) -> np.ndarray:
    """bf16 bit patterns (uint16) of float32 values, rounded to nearest even."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounded = (bits + (0x7FFF + ((bits >> 16) & 1))) >> 16
    # NaN must stay NaN (rounding could carry it into inf): keep it quiet.
    is_nan = (bits & 0x7FFFFFFF) > 0x7F800000
    out = np.where(is_nan, (bits >> 16) | 0x0040, rounded)
    return out.astype(np.uint16)


def write_safetensors(path: str | os.PathLike, tensors: dict[str, np.ndarray | RawTensor],
                      dtype: str | None = None,
                      metadata: dict[str, str] | None = None) -> None:
    """Write tensors as a .safetensors file.

    Arrays are float tensors: `dtype` is "F32", "F16" or "BF16" for every
    one; None keeps float16 arrays as F16 and stores every other array as
    F32. BF16 rounds to nearest even. A RawTensor is written as it is (its
    dtype, shape and bytes). Like the reference writer, tensors are ordered by
    decreasing element size, then name, and the header is padded with spaces
    to a multiple of 8 bytes, so every tensor is aligned to its element size.
    """
    if dtype is not None and dtype not in FLOAT_DTYPES:
        raise ValueError(f"cannot write dtype {dtype!r} (use one of {', '.join(FLOAT_DTYPES)})")
    header: dict[str, Any] = {"__metadata__": dict(metadata or {"format": "pt"})}
    arrays = {key: value if isinstance(value, RawTensor) else np.asarray(value)
              for key, value in tensors.items()}
    kinds = {key: a.dtype if isinstance(a, RawTensor) else dtype or ("F16" if a.dtype == np.float16 else "F32")
             for key, a in arrays.items()}
    blobs = []
    offset = 0
    for key in sorted(arrays, key=lambda k: (-_DTYPES[kinds[k]].itemsize, k)):
        array, kind = arrays[key], kinds[key]
        if isinstance(array, RawTensor):
            raw = np.ascontiguousarray(array.data)
        elif kind == "BF16":
            raw = float32_to_bf16_bits(array)
        else:
            raw = np.ascontiguousarray(array, dtype=_DTYPES[kind])
        data = raw.tobytes()
        header[key] = {"dtype": kind, "shape": list(array.shape),
                       "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-(8 + len(text)) % 8)
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little"))
        f.write(text)
        for data in blobs:
            f.write(data)
