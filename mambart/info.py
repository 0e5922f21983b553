"""`mambart info MODEL`: what a checkpoint is, from its config and tensor headers.

Sizes come from config.json; the parameter count and dtypes from the
checkpoint headers only (the safetensors JSON header, the .bin pickle), so no
tensor data is read. The tied head is counted once, as are names that share
one storage in a .bin file.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .checkpoint import read_safetensors_header, weight_files
from .config import MISTRAL_PARAMS_FILE, config_path, load_config
from .hub import DEFAULT_TOKENIZER, TOKENIZER_FILES, resolve
from .torch_pickle import scan_torch_bin
from .weights import LM_HEAD, check_layer_count, is_matrix, weight_table

# Small files listed when present, besides config.json and the weights.
_SIDE_FILES = TOKENIZER_FILES + ("generation_config.json",)


def describe(model: str, *, revision: str | None = None) -> dict[str, Any]:
    """A summary of `model` (local directory or hub id) as a JSON-serialisable dict.

    Keys: model, path, every ModelConfig field (family, naming, sizes, ...),
    parameters, tensors, dtypes (dtype -> parameters), tokenizer, files
    (name -> bytes), total_bytes, cpu_isa. A hub id is resolved as `load`
    does, so its weights are downloaded if they are not cached.
    """
    path = resolve(str(model), revision=revision)
    config = load_config(path)
    weights = weight_files(path)

    headers = list(_headers(weights))
    # A converted q8 / q4 checkpoint stores each big matrix as U8 rows of
    # packed blocks: count its (N, K) weights, not the packed bytes.
    check_layer_count(config, len(headers))
    unpacked: dict[str, tuple[int, ...]] = {}
    if config.quantized:
        unpacked = {spec.source: spec.shape for spec in weight_table(config) if is_matrix(spec.internal)}
    parameters, stored, dtypes = 0, 0, {}
    seen: set[tuple] = set()
    for name, dtype, shape, identity in headers:
        stored += 1
        if name in unpacked:
            dtype, shape = config.quantized.upper(), unpacked[name]
        if name == LM_HEAD and config.tie_embeddings:
            continue  # the embedding matrix is the head (doc 1.6)
        if identity is not None:
            if identity in seen:
                continue  # the same bytes under another name
            seen.add(identity)
        n = 1
        for d in shape:
            n *= d
        parameters += n
        dtypes[dtype] = dtypes.get(dtype, 0) + n

    listed = [config_path(path)] + [path / f for f in _SIDE_FILES if (path / f).is_file()]
    files = {str(p.relative_to(path)): os.stat(p).st_size for p in listed + weights}
    has_tokenizer = (path / TOKENIZER_FILES[0]).is_file()
    from . import _core  # the kernel set the runtime would use on this machine

    return {
        "model": str(model),
        "path": str(path),
        **config.to_dict(),
        "rope_scaling": dict(config.rope_scaling) or {"rope_type": "default"},
        **_state_sizes(config),
        "parameters": parameters,
        **_active(config, parameters),
        "tensors": stored,
        "dtypes": dict(sorted(dtypes.items())),
        "tokenizer": (TOKENIZER_FILES[0] if has_tokenizer
                      else "none (Mistral layout: pass one)" if config_path(path).name == MISTRAL_PARAMS_FILE
                      else f"{DEFAULT_TOKENIZER} (none in the model)"),
        "files": files,
        "total_bytes": sum(files.values()),
        "cpu_isa": _core.isa(),
    }


def _headers(weights: list[Path]):
    """(name, dtype, shape, storage identity or None) of every stored tensor."""
    for path in weights:
        if path.name.endswith(".index.json"):
            continue  # its shards follow in the list
        if path.suffix == ".safetensors":
            for name, (dtype, shape) in read_safetensors_header(path).items():
                yield name, dtype, shape, None  # safetensors cannot alias
        else:
            for name, view in scan_torch_bin(path).items():
                identity = (path.name, view.storage.key, view.offset, view.shape, view.stride)
                yield name, view.dtype, view.shape, identity


def _active(config, parameters: int) -> dict[str, int]:
    """A mixture of experts' parameters one token uses: all but the unchosen experts'."""
    if not config.n_experts:
        return {}
    rows = 2 * config.expert_inner if config.mlp_gated else config.expert_inner
    per_expert = (rows + config.expert_inner) * (config.expert_latent or config.d_model)
    return {"active_parameters": parameters - config.moe_layers * (config.n_experts - config.top_k) * per_expert}


def _state_sizes(config) -> dict[str, Any]:
    """Bytes of decoder state per sequence: the Mamba layers' fixed part, and (attention
    hybrids) the KV caches' bytes per token of context; the layer pattern."""
    conv = config.d_inner + (2 * config.n_groups * config.d_state if not config.dt_rank else 0)  # Mamba-2's B, C
    out = {"state_bytes_fixed": 4 * config.mamba_layers * (conv * config.d_conv + config.d_inner * config.d_state)}
    if config.layers:
        out["layer_pattern"] = config.layers
        out["state_bytes_per_token"] = 4 * 2 * config.attention_layers * config.kv_heads * config.attn_head_dim
    return out


_HYBRID_FIELDS = {"layers", "attn_heads", "kv_heads", "attn_head_dim", "attn_scale", "rope_dim", "rope_theta",
                  "rope_scaling", "mlp_gated", "mlp_inner", "embedding_multiplier", "residual_multiplier",
                  "logits_scaling", "in_proj_multipliers", "ssm_out_multiplier", "attn_out_multiplier",
                  "mlp_gate_multiplier", "mlp_down_multiplier", "norm_before_gate", "shared_blocks", "adapter_rank",
                  "attention_adapters", "mlp_gelu", "gated_norm_eps"}
_EXPERT_FIELDS = {"n_experts", "top_k", "shared_inner", "expert_inner", "router_sigmoid", "norm_topk", "n_group",
                  "topk_group", "routed_scale", "expert_latent"}
# Fields that do not apply to a family, left out of the text.
_NOT_SHOWN = {
    "mamba": {"n_heads", "head_dim", "n_groups", "chunk_size", "dt_min", "dt_max",
              "gated_norm", "d_has_hdim"} | _HYBRID_FIELDS,
    "mamba2": {"dt_rank", "dt_bc_norm", "dt_bc_eps"} | _HYBRID_FIELDS,
    "hybrid": {"dt_rank", "dt_bc_norm", "dt_bc_eps", "layers"},
}


def format_info(d: dict[str, Any]) -> str:
    """Aligned `key: value` lines for `describe`'s dict."""
    hidden = _NOT_SHOWN.get(d.get("family"), set()) | (set() if d.get("n_experts") else _EXPERT_FIELDS)
    rows: list[tuple[str, str]] = []
    for key, value in d.items():
        if key in hidden:
            continue
        if key == "dt_min":
            rows.append(("dt_limit", f"({_plain(value)}, {_plain(d.get('dt_max'))})"))
        elif key == "dt_max":
            continue
        elif key == "files":
            rows += [(f"file {name}", _bytes(size)) for name, size in value.items()]
        elif key == "dtypes":
            rows.append((key, ", ".join(f"{k} ({v:,})" for k, v in value.items()) or "-"))
        elif key in ("parameters", "active_parameters", "vocab_size"):
            rows.append((key, f"{value:,}"))
        elif key == "total_bytes":
            rows.append((key, _bytes(value)))
        elif key == "rope_scaling":
            rows.append((key, ", ".join(_plain(v) if k == "rope_type" else f"{k} {_plain(v)}"
                                        for k, v in value.items())))
        else:
            rows.append((key, _plain(value)))
    width = max(len(k) for k, _ in rows) + 1
    return "\n".join(f"{k + ':':<{width}} {v}" for k, v in rows)


def _plain(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _bytes(n: int) -> str:
    """'517,685,125 bytes (517.7 MB)'; decimal units, as the Hub shows them."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n:,} bytes ({n / scale:.1f} {unit})"
    return f"{n:,} bytes"
