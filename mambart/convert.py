"""`mambart convert`: write a checkpoint whose big matrices are already in a
weight type, so that it loads by mmap with no conversion.

The output is a directory with config.json (the original, plus
`"mambart_quantized": "q8"` for the quantized types), model.safetensors
under the checkpoint's own tensor names (f16 / bf16 as those safetensors
dtypes, q8 / q4 as U8 rows in the formats of cpp/kernels/quantize.h, all
other tensors f32), and the tokenizer files.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from . import _core
from .checkpoint import RawTensor, check_unchanged, read_checkpoint, release_pages, write_safetensors
from .config import (
    MISTRAL_PARAMS_FILE, QUANTIZED_KEY, QUANTIZED_TYPES, config_from_dict, config_path, read_config_json,
)
from .hub import resolve, resolve_tokenizer
from .weights import TypedWeight, as_float32, is_matrix, load_weights, weight_arrays, weight_table

WEIGHT_TYPES = ("f32", "f16", "bf16", "q8", "q4")
_STORED = {"f32": "F32", "f16": "F16", "bf16": "BF16", "q8": "U8", "q4": "U8"}
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def stored_type(weight: np.ndarray | TypedWeight) -> str:
    return weight.dtype if isinstance(weight, TypedWeight) else "f32"


def convert_matrices(weights: dict[str, np.ndarray | TypedWeight], dtype: str) -> dict[str, np.ndarray | TypedWeight]:
    """The big matrices in `dtype` (converted once, here), the other weights as they are.

    Each source matrix's mapped pages are released right after its
    conversion, so peak memory stays near the converted size plus one f32
    matrix rather than both models in full.
    """
    if dtype not in WEIGHT_TYPES:
        raise ValueError(f"dtype must be one of {', '.join(WEIGHT_TYPES)}, got {dtype!r}")
    out = dict(weights)
    for name, w in weights.items():
        if not is_matrix(name) or stored_type(w) == dtype:
            continue
        if stored_type(w) in QUANTIZED_TYPES:
            raise ValueError(f"tensor '{name}' is stored as {stored_type(w)} and cannot be converted to {dtype}: "
                             f"convert the original checkpoint instead")
        stored = _core.kernels.convert(as_float32(w), dtype)
        out[name] = stored if dtype == "f32" else TypedWeight(dtype, tuple(w.shape), stored)
        release_pages([w.data if isinstance(w, TypedWeight) else w])
    return out


def convert(model: str | os.PathLike, out_dir: str | os.PathLike, dtype: str, *, revision: str | None = None,
            tokenizer: str | None = None) -> Path:
    """Convert `model` (a directory or hub id) to `dtype` into out_dir; returns out_dir."""
    if dtype not in WEIGHT_TYPES:
        raise ValueError(f"dtype must be one of {', '.join(WEIGHT_TYPES)}, got {dtype!r}")
    src = resolve(str(model), revision=revision)
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out}: output directory exists and is not empty")
    config_file = config_path(src)  # config.json, or Mistral's params.json (kept as such)
    raw_config = read_config_json(config_file)
    try:
        config = config_from_dict(raw_config, mistral=config_file.name == MISTRAL_PARAMS_FILE)
    except ValueError as e:
        raise ValueError(f"{config_file}: {e}") from None
    if config.quantized:
        raise ValueError(f"{src} is already converted to {config.quantized}: convert the original checkpoint")
    # Before anything is written: a missing tokenizer would leave a directory that
    # blocks the retry (with --tokenizer) after the whole conversion.
    tok_dir = resolve_tokenizer(src, tokenizer)
    weights = load_weights(read_checkpoint(src), config)
    check_unchanged(weight_arrays(weights))
    weights = convert_matrices(weights, dtype)
    check_unchanged(weight_arrays(weights))

    tensors: dict[str, np.ndarray | RawTensor] = {}
    for spec in weight_table(config):
        w = weights[spec.internal]
        if isinstance(w, TypedWeight):
            # f16 / bf16 keep the stored shape (stacked experts: (X, N, K)); q8 / q4 are (N, row bytes).
            shape = spec.stored if dtype in ("f16", "bf16") else tuple(w.data.shape)
            tensors[spec.source] = RawTensor(spec.source, _STORED[dtype], shape, w.data.reshape(shape))
        else:
            tensors[spec.source] = np.asarray(w).reshape(spec.stored)
    if dtype in QUANTIZED_TYPES:
        raw_config[QUANTIZED_KEY] = dtype
    # Written beside out_dir and renamed into place when complete: a full disk
    # or a Ctrl-C leaves no half-written model behind (nor one that blocks a retry).
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        (work / config_file.name).write_text(json.dumps(raw_config, indent=2) + "\n")
        write_safetensors(work / "model.safetensors", tensors, metadata={"format": "pt", "mambart_dtype": dtype})
        for folder, names in ((tok_dir, _TOKENIZER_FILES), (src, ("generation_config.json",))):
            for name in names:
                if (folder / name).is_file():
                    shutil.copyfile(folder / name, work / name)
        if out.exists():
            out.rmdir()  # empty, checked above
        work.rename(out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return out
