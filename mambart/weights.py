"""Checkpoint tensor names -> internal names and shapes, validated before C++.

One table per family (reference doc 1.6): Mamba-1 and Mamba-2. The internal names are what the
C++ model reads; every tensor is checked against the table first, so a bad
checkpoint fails here with the tensor's name and both shapes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .checkpoint import RawTensor
from .config import ModelConfig
from .errors import one_line

# The one naming difference between the families (doc 1.6).
EMBEDDING_NAMES = {"hf": "backbone.embeddings.weight", "mamba_ssm": "backbone.embedding.weight"}
# The hybrids' transformers layout (a decoder-only LM's names); Bamba and Falcon-H1 call their last norm
# final_layernorm.
HYBRID_EMBEDDING = {"nemotron_h": "backbone.embeddings.weight"}  # else model.embed_tokens.weight
HYBRID_NORM_F = {"granite": "model.norm.weight", "bamba": "model.final_layernorm.weight",
                 "falcon_h1": "model.final_layernorm.weight", "nemotron_h": "backbone.norm_f.weight",
                 "zamba2": "model.final_layernorm.weight", "jamba": "model.final_layernorm.weight"}
# Checkpoint tensors a family's model does not use (Nemotron-H's multi-token prediction layers).
IGNORED_PREFIX = {"nemotron_h": "mtp."}
LM_HEAD = "lm_head.weight"
_MAX_LISTED = 5  # unexpected names quoted in an error


# The big matrices (internal names' last part): the only weights that take
# another type than f32 (f16 / bf16 as stored, or q8 / q4 from `mambart convert`).
MATRICES = frozenset({"embedding", "lm_head", "in_proj", "x_proj", "dt_proj", "out_proj",
                      "q_proj", "k_proj", "v_proj", "o_proj", "experts_in", "experts_out", "mlp_in", "mlp_gate",
                      "mlp_up", "mlp_out", "linear", "mlp_lora_a", "mlp_lora_b", "q_lora_a", "q_lora_b", "k_lora_a",
                      "k_lora_b", "v_lora_a", "v_lora_b", "latent_in", "latent_out"})
# Bytes per block of 32 weights (cpp/kernels/quantize.h: f32 scale + 32 int8;
# f32 scale + f32 minimum + 16 bytes of 4-bit codes).
_BLOCK = 32
_BLOCK_BYTES = {"q8": 36, "q4": 24}


def is_matrix(internal: str) -> bool:
    return internal.rsplit(".", 1)[-1] in MATRICES


def row_bytes(dtype: str, K: int) -> int:
    """Bytes of one stored row of K weights in a quantized type."""
    return -(-K // _BLOCK) * _BLOCK_BYTES[dtype]


@dataclass(frozen=True)
class TypedWeight:
    """A big matrix kept in its stored type: the raw bytes of a (N, K) weight."""

    dtype: str                 # "f16", "bf16", "q8" or "q4"
    shape: tuple[int, int]     # (N, K)
    data: np.ndarray           # uint16 (N, K), or uint8 (N, row_bytes) for q8 / q4


def weight_arrays(weights: dict[str, "np.ndarray | TypedWeight"]) -> list[np.ndarray]:
    """The arrays holding each weight's data (a TypedWeight's raw bytes)."""
    return [w.data if isinstance(w, TypedWeight) else w for w in weights.values()]


def as_float32(weight: np.ndarray | TypedWeight) -> np.ndarray:
    """A weight as float32 (exact for f16 / bf16; quantized types are not undone here)."""
    if not isinstance(weight, TypedWeight):
        return weight
    if weight.dtype == "f16":
        return weight.data.view(np.float16).astype(np.float32)
    if weight.dtype == "bf16":
        return (weight.data.astype(np.uint32) << 16).view(np.float32)
    raise ValueError(f"a {weight.dtype} weight has no exact float32 form")


@dataclass(frozen=True)
class TensorSpec:
    """One row of a name table."""

    source: str                    # name in the checkpoint
    internal: str                  # name the C++ model reads
    stored: tuple[int, ...]        # shape in the checkpoint
    shape: tuple[int, ...]         # shape handed to C++ (a reshape of `stored`)


def spec(source: str, internal: str, *shape: int) -> TensorSpec:
    """A row whose stored shape is the shape handed to C++."""
    return TensorSpec(source, internal, shape, shape)


def _global_specs(config: ModelConfig) -> list[TensorSpec]:
    """The tensors outside the layers, the same in every family (doc 1.6)."""
    D, V = config.d_model, config.vocab_size
    if config.family == "hybrid":
        embedding = HYBRID_EMBEDDING.get(config.naming, "model.embed_tokens.weight")
        table = [spec(embedding, "embedding", V, D), spec(HYBRID_NORM_F[config.naming], "norm_f", D)]
    else:
        table = [spec(EMBEDDING_NAMES[config.naming], "embedding", V, D), spec("backbone.norm_f.weight", "norm_f", D)]
    if not config.tie_embeddings:
        table.append(spec(LM_HEAD, "lm_head", V, D))
    return table


def mamba1_table(config: ModelConfig) -> list[TensorSpec]:
    """The Mamba-1 tensors this config needs, in load order."""
    table = _global_specs(config)
    for i in range(config.n_layer):
        src, dst = f"backbone.layers.{i}.", f"layers.{i}."
        table.append(spec(src + "norm.weight", dst + "norm", config.d_model))
        table += _mamba1_mixer(config, src + "mixer.", dst)
    return table


def _mamba1_mixer(config: ModelConfig, mixer: str, dst: str) -> list[TensorSpec]:
    """One Mamba-1 mixer's tensors, stored under `mixer`; Jamba's with its dt, B and C norms."""
    D, E = config.d_model, config.d_inner
    N, K, R = config.d_state, config.d_conv, config.dt_rank
    table = [spec(mixer + "in_proj.weight", dst + "in_proj", 2 * E, D)]
    if config.use_bias:
        table.append(spec(mixer + "in_proj.bias", dst + "in_proj_bias", 2 * E))
    # Depthwise conv weight is stored (E, 1, K); the middle axis is 1.
    table.append(TensorSpec(mixer + "conv1d.weight", dst + "conv1d_weight", (E, 1, K), (E, K)))
    if config.use_conv_bias:
        table.append(spec(mixer + "conv1d.bias", dst + "conv1d_bias", E))
    table += [
        spec(mixer + "x_proj.weight", dst + "x_proj", R + 2 * N, E),
        spec(mixer + "dt_proj.weight", dst + "dt_proj", E, R),
        spec(mixer + "dt_proj.bias", dst + "dt_proj_bias", E),
        spec(mixer + "A_log", dst + "A_log", E, N),
        spec(mixer + "D", dst + "D", E),
        spec(mixer + "out_proj.weight", dst + "out_proj", D, E),
    ]
    if config.use_bias:
        table.append(spec(mixer + "out_proj.bias", dst + "out_proj_bias", D))
    if config.naming == "jamba":
        table += [spec(mixer + "dt_layernorm.weight", dst + "dt_norm", R),
                  spec(mixer + "b_layernorm.weight", dst + "b_norm", N),
                  spec(mixer + "c_layernorm.weight", dst + "c_norm", N)]
    return table


def mamba2_table(config: ModelConfig) -> list[TensorSpec]:
    """The Mamba-2 tensors this config needs, in load order (doc 1.6, 3.1)."""
    table = _global_specs(config)
    for i in range(config.n_layer):
        src, dst = f"backbone.layers.{i}.", f"layers.{i}."
        table.append(spec(src + "norm.weight", dst + "norm", config.d_model))
        table += _mamba2_mixer(config, src + "mixer.", dst)
    return table


def _mamba2_mixer(config: ModelConfig, mixer: str, dst: str) -> list[TensorSpec]:
    """One Mamba-2 mixer's tensors, stored under `mixer`."""
    D, E = config.d_model, config.d_inner
    N, K, H, G = config.d_state, config.d_conv, config.n_heads, config.n_groups
    conv_dim = E + 2 * G * N               # the conv runs over [x | B | C]
    proj_dim = 2 * E + 2 * G * N + H       # in_proj rows: [z | xBC | dt]
    table = [spec(mixer + "in_proj.weight", dst + "in_proj", proj_dim, D)]
    if config.use_bias:
        table.append(spec(mixer + "in_proj.bias", dst + "in_proj_bias", proj_dim))
    table.append(TensorSpec(mixer + "conv1d.weight", dst + "conv1d_weight", (conv_dim, 1, K), (conv_dim, K)))
    if config.use_conv_bias:
        table.append(spec(mixer + "conv1d.bias", dst + "conv1d_bias", conv_dim))
    table += [
        spec(mixer + "dt_bias", dst + "dt_bias", H),
        spec(mixer + "A_log", dst + "A_log", H),
        spec(mixer + "D", dst + "D", E if config.d_has_hdim else H),
    ]
    if config.gated_norm:
        table.append(spec(mixer + "norm.weight", dst + "gated_norm", E))
    table.append(spec(mixer + "out_proj.weight", dst + "out_proj", D, E))
    if config.use_bias:
        table.append(spec(mixer + "out_proj.bias", dst + "out_proj_bias", D))
    return table


@dataclass(frozen=True)
class HybridNames:
    """Where a hybrid family keeps each block's tensors, under its layer prefix."""

    layer: str                   # the layer prefix, formatted with its index
    norms: tuple[str, ...]       # the pre-norms of a layer's first and second block
    mamba: str                   # the Mamba-2 mixer
    attention: str               # q_proj, k_proj, v_proj, o_proj under this
    mlp: tuple[tuple[str, str], ...]  # the 'F' block's projections: (internal suffix, name)
    # An 'E' block's: its router (and selection bias, or ""), its experts' in and out projections
    # (stacked (X, ., .), or one per expert when the names hold "{}", then possibly gate, up and
    # down apart), and its shared MLP.
    router: tuple[str, str] = ("", "")
    experts: tuple[str, ...] = ("", "")
    shared: tuple[tuple[str, str], ...] = ()
    latent: tuple[str, str] = ("", "")  # the projections to the experts' width and back (expert_latent)


_GRANITE_SHARED = (("_in", "shared_mlp.input_linear.weight"), ("_out", "shared_mlp.output_linear.weight"))
HYBRID_NAMES = {
    "granite": HybridNames("model.layers.{}.", ("input_layernorm.weight", "post_attention_layernorm.weight"),
                           "mamba.", "self_attn.", _GRANITE_SHARED,
                           ("block_sparse_moe.router.layer.weight", ""),
                           ("block_sparse_moe.input_linear.weight", "block_sparse_moe.output_linear.weight"),
                           _GRANITE_SHARED),
    "bamba": HybridNames("model.layers.{}.", ("input_layernorm.weight", "pre_ff_layernorm.weight"),
                         "mamba.", "self_attn.", (("_gate", "feed_forward.gate_proj.weight"),
                                                  ("_up", "feed_forward.up_proj.weight"),
                                                  ("_out", "feed_forward.down_proj.weight"))),
}
HYBRID_NAMES["falcon_h1"] = HYBRID_NAMES["bamba"]  # the same names; its layers are "PF"
HYBRID_NAMES["jamba"] = HybridNames(
    "model.layers.{}.", ("input_layernorm.weight", "pre_ff_layernorm.weight"), "mamba.", "self_attn.",
    HYBRID_NAMES["bamba"].mlp, ("feed_forward.router.weight", ""),
    ("feed_forward.experts.{}.gate_proj.weight", "feed_forward.experts.{}.up_proj.weight",
     "feed_forward.experts.{}.down_proj.weight"))
# Nemotron-H: one block per layer, its weights under "mixer." whatever its kind.
HYBRID_NAMES["nemotron_h"] = HybridNames(
    "backbone.layers.{}.", ("norm.weight",), "mixer.", "mixer.",
    (("_in", "mixer.up_proj.weight"), ("_out", "mixer.down_proj.weight")),
    ("mixer.gate.weight", "mixer.gate.e_score_correction_bias"),
    ("mixer.experts.{}.up_proj.weight", "mixer.experts.{}.down_proj.weight"),
    (("_in", "mixer.shared_experts.up_proj.weight"), ("_out", "mixer.shared_experts.down_proj.weight")),
    ("mixer.fc1_latent_proj.weight", "mixer.fc2_latent_proj.weight"))


def hybrid_table(config: ModelConfig) -> list[TensorSpec]:
    """An attention hybrid's tensors: per layer, each block's pre-norm and weights
    (ModelConfig.layers), named as the family's HybridNames say."""
    if config.naming == "zamba2":
        return zamba2_table(config)
    names = HYBRID_NAMES[config.naming]
    D = config.d_model
    table = _global_specs(config)
    for i, blocks in enumerate(config.layers.split()):
        src, dst = names.layer.format(i), f"layers.{i}."
        for j, kind in enumerate(blocks):
            table.append(spec(src + names.norms[j], dst + ("norm", "mlp_norm")[j], D))
            if kind == "M":
                mixer = _mamba1_mixer if config.dt_rank else _mamba2_mixer  # Jamba's are Mamba-1
                table += mixer(config, src + names.mamba, dst)
            elif kind == "A":
                table += _attention(config, src + names.attention, dst)
            elif kind == "P":  # Falcon-H1: both mixers on one norm
                table += _mamba2_mixer(config, src + names.mamba, dst) + _attention(config, src + names.attention, dst)
            elif kind == "F":
                table += _mlp(config, src, names.mlp, dst + "mlp", config.mlp_inner)
            elif kind == "E":
                table += _experts(config, src, names, dst)
    return table


def zamba2_owners(config: ModelConfig) -> list[int]:
    """The layer each Zamba2 shared block is stored under: the first that runs it."""
    return [i for i, word in enumerate(config.layers.split()) if word == "SM"][:config.shared_blocks]


def zamba2_table(config: ModelConfig) -> list[TensorSpec]:
    """Zamba2: per layer a norm and a Mamba-2 mixer (under `mamba_decoder.` in the layers "SM"), and
    for the layers "SM" their linear and their adapters; each shared block once, under the first
    layer that runs it, its adapters for every application beside it."""
    D, F, r = config.d_model, config.mlp_inner, config.adapter_rank
    q_dim, kv_dim = config.attn_heads * config.attn_head_dim, config.kv_heads * config.attn_head_dim
    owners = zamba2_owners(config)
    shared = [f"model.layers.{i}.shared_transformer." for i in owners]
    table = _global_specs(config)
    for b, st in enumerate(shared):
        dst = f"shared.{b}."
        table += [spec(st + "input_layernorm.weight", dst + "attn_norm", 2 * D),
                  spec(st + "self_attn.q_proj.weight", dst + "q_proj", q_dim, 2 * D),
                  spec(st + "self_attn.k_proj.weight", dst + "k_proj", kv_dim, 2 * D),
                  spec(st + "self_attn.v_proj.weight", dst + "v_proj", kv_dim, 2 * D),
                  spec(st + "self_attn.o_proj.weight", dst + "o_proj", D, q_dim),
                  spec(st + "pre_ff_layernorm.weight", dst + "mlp_norm", D),
                  spec(st + "feed_forward.gate_up_proj.weight", dst + "mlp_in", 2 * F, D),
                  spec(st + "feed_forward.down_proj.weight", dst + "mlp_out", D, F)]
    j = 0  # applications so far
    for i, word in enumerate(config.layers.split()):
        src, dst = f"model.layers.{i}." + ("mamba_decoder." if word == "SM" else ""), f"layers.{i}."
        table.append(spec(src + "input_layernorm.weight", dst + "norm", D))
        table += _mamba2_mixer(config, src + "mamba.", dst)
        if word != "SM":
            continue
        st = shared[j % config.shared_blocks]
        ff = st + f"feed_forward.gate_up_proj_adapter_list.{j}."
        table += [spec(f"model.layers.{i}.linear.weight", dst + "linear", D, D),
                  spec(ff + "0.weight", dst + "mlp_lora_a", r, D), spec(ff + "1.weight", dst + "mlp_lora_b", 2 * F, r)]
        if config.attention_adapters:
            for x, width in (("q", q_dim), ("k", kv_dim), ("v", kv_dim)):
                a = st + f"self_attn.linear_{x}_adapter_list.{j}."
                table += [spec(a + "0.weight", dst + f"{x}_lora_a", r, 2 * D),
                          spec(a + "1.weight", dst + f"{x}_lora_b", width, r)]
        j += 1
    return table


def _attention(config: ModelConfig, attn: str, dst: str) -> list[TensorSpec]:
    D = config.d_model
    q_dim, kv_dim = config.attn_heads * config.attn_head_dim, config.kv_heads * config.attn_head_dim
    return [spec(attn + "q_proj.weight", dst + "q_proj", q_dim, D),
            spec(attn + "k_proj.weight", dst + "k_proj", kv_dim, D),
            spec(attn + "v_proj.weight", dst + "v_proj", kv_dim, D),
            spec(attn + "o_proj.weight", dst + "o_proj", D, q_dim)]


def _experts(config: ModelConfig, src: str, names: HybridNames, dst: str) -> list[TensorSpec]:
    """A mixture of experts: the router (f32, and its selection bias), the experts (stacked as
    (X * rows, cols) matrices, or one MLP each as experts.<e>.mlp), the shared MLP."""
    D, X, F = config.d_model, config.n_experts, config.expert_inner
    W = config.expert_latent or D  # the experts' rows in and out
    table = [spec(src + names.router[0], dst + "router", X, D)]
    if names.router[1]:
        table.append(spec(src + names.router[1], dst + "router_bias", X))
    if config.expert_latent:
        if not names.latent[0]:
            raise ValueError(f"{config.naming} has no latent expert projections")
        table += [spec(src + names.latent[0], dst + "latent_in", W, D),
                  spec(src + names.latent[1], dst + "latent_out", D, W)]
    up, down = names.experts[-2:]
    rows = 2 * F if config.mlp_gated else F
    if "{}" in up:
        ins = (("_in", up),) if len(names.experts) == 2 else (("_gate", names.experts[0]), ("_up", up))
        for e in range(X):
            projections = tuple((suffix, name.format(e)) for suffix, name in ins + (("_out", down),))
            table += _mlp(config, src, projections, f"{dst}experts.{e}.mlp", F, W)
    else:
        table += [TensorSpec(src + up, dst + "experts_in", (X, rows, W), (X * rows, W)),
                  TensorSpec(src + down, dst + "experts_out", (X, W, F), (X * W, F))]
    if config.shared_inner:
        table += _mlp(config, src, names.shared, dst + "shared.mlp", config.shared_inner)
    return table


def _mlp(config: ModelConfig, src: str, names: tuple[tuple[str, str], ...], dst: str,
         inner: int, width: int = 0) -> list[TensorSpec]:
    """An MLP's projections as `dst` + suffix: _in (SwiGLU: rows [gate | up]), or _gate and _up
    apart, and _out, over rows of `width` (0: d_model)."""
    D = width or config.d_model
    shapes = {"_in": (2 * inner if config.mlp_gated else inner, D), "_gate": (inner, D), "_up": (inner, D),
              "_out": (D, inner)}
    return [spec(src + name, dst + suffix, *shapes[suffix]) for suffix, name in names]


_TABLES = {"mamba": mamba1_table, "mamba2": mamba2_table, "hybrid": hybrid_table}


def weight_table(config: ModelConfig) -> list[TensorSpec]:
    """The name table of the config's family."""
    table_fn = _TABLES.get(config.family)
    if table_fn is None:
        raise ValueError(f"no weight table for model family {config.family!r}")
    return table_fn(config)


def check_layer_count(config: ModelConfig, n_tensors: int) -> None:
    """Refuse a config with more layers than the checkpoint has tensors (each
    layer needs several), before any per-layer table is built: a config may
    claim 10^9 layers. Smaller mismatches are named by the table check."""
    if config.n_layer > n_tensors:
        raise ValueError(f"the config's {config.n_layer} layers need more tensors than the "
                         f"checkpoint's {n_tensors}")


def load_weights(tensors: dict[str, RawTensor], config: ModelConfig) -> dict[str, np.ndarray | TypedWeight]:
    """Validate a checkpoint against the config and return its weights by internal name.

    Arrays are C-contiguous float32; F32 tensors stay zero-copy (read-only
    views on the checkpoint's mmap). The big matrices stored as F16 / BF16,
    or quantized (a converted checkpoint), come back as TypedWeight views of
    their bytes, to be used or converted by the runtime. Raises a one-line
    ValueError naming the first missing tensor, a wrong shape (with both
    shapes), or tensors the model does not use.
    """
    check_layer_count(config, len(tensors))
    table = weight_table(config)
    if config.naming == "mamba_ssm":
        tensors = _without_model_prefix(tensors)
    tensors = _with_embedding_alias(tensors, config)
    if config.naming == "zamba2":
        tensors = _without_unused_copies(tensors, config, table)

    out: dict[str, np.ndarray] = {}
    for spec in table:
        raw = tensors.get(spec.source)
        if raw is None:
            raise ValueError(f"missing tensor '{spec.source}'")
        matrix = is_matrix(spec.internal)
        if matrix and config.quantized:
            out[spec.internal] = _quantized(raw, spec, config.quantized)
            continue
        if tuple(raw.shape) != spec.stored:
            raise ValueError(f"tensor '{raw.name}' has shape {_fmt(raw.shape)}, "
                             f"expected {_fmt(spec.stored)}")
        if matrix and raw.dtype in ("F16", "BF16"):
            out[spec.internal] = TypedWeight(raw.dtype.lower(), spec.shape,
                                             raw.data.view(np.uint16).reshape(spec.shape))
            continue
        array = raw.float32().reshape(spec.shape)
        out[spec.internal] = np.ascontiguousarray(array)  # no copy when already contiguous

    used = {spec.source for spec in table}
    ignored = IGNORED_PREFIX.get(config.naming)
    if ignored:
        used |= {name for name in tensors if name.startswith(ignored)}
    if config.tie_embeddings:
        used.add(LM_HEAD)  # tied: the embedding is the head; a stored copy is ignored
    extra = sorted(name for name in tensors if name not in used)
    if extra:
        listed = ", ".join(f"'{name}'" for name in extra[:_MAX_LISTED])
        more = f" and {len(extra) - _MAX_LISTED} more" if len(extra) > _MAX_LISTED else ""
        raise ValueError(one_line(f"{len(extra)} unexpected tensor(s) for a {config.n_layer}-layer "
                                  f"model: {listed}{more}"))
    return out


def _quantized(raw: RawTensor, spec: TensorSpec, dtype: str) -> TypedWeight:
    N, K = spec.shape
    stored = (N, row_bytes(dtype, K))
    if raw.dtype != "U8" or tuple(raw.shape) != stored:
        raise ValueError(f"tensor '{raw.name}' is {raw.dtype} {_fmt(raw.shape)}; a {dtype} checkpoint stores "
                         f"U8 {_fmt(stored)} for this ({N}, {K}) matrix")
    return TypedWeight(dtype, (N, K), raw.data.reshape(stored))


def _without_model_prefix(tensors: dict[str, RawTensor]) -> dict[str, RawTensor]:
    """mamba_ssm names under a `model.` prefix (Mistral's consolidated.safetensors
    may hold the wrapper's state dict) are the plain names."""
    prefix = "model."
    if not tensors or not all(name.startswith(prefix) for name in tensors):
        return tensors
    return {name[len(prefix):]: raw for name, raw in tensors.items()}


def _with_embedding_alias(tensors: dict[str, RawTensor],
                          config: ModelConfig) -> dict[str, RawTensor]:
    """Accept the other family's embedding name, as transformers' load hook does.

    A config in one layout next to weights saved in the other differs only
    in `embedding` vs `embeddings` (doc 1.6).
    """
    if config.naming not in EMBEDDING_NAMES:
        return tensors
    wanted = EMBEDDING_NAMES[config.naming]
    other = next(n for k, n in EMBEDDING_NAMES.items() if k != config.naming)
    if wanted in tensors or other not in tensors:
        return tensors
    renamed = dict(tensors)
    renamed[wanted] = renamed.pop(other)
    return renamed


def _without_unused_copies(tensors: dict[str, RawTensor], config: ModelConfig,
                           table: list[TensorSpec]) -> dict[str, RawTensor]:
    """Zamba2 tensors that transformers holds but never uses, left out: a shared block repeated
    under a later layer that runs it (tied weights saved in full: the same name under the
    block's first layer is present too), and a block's adapters for the applications of
    another copy of it (with untied embeddings transformers gives every layer its own copy)."""
    owners = zamba2_owners(config)
    hybrid = [i for i, word in enumerate(config.layers.split()) if word == "SM"]
    sources = {spec.source for spec in table}
    out = dict(tensors)
    for name in tensors:
        if ".shared_transformer." not in name or name in sources:
            continue
        layer = name.split(".")[2]
        if "_adapter_list." in name and layer.isdigit() and int(layer) in owners:
            del out[name]
            continue
        j = hybrid.index(int(layer)) if layer.isdigit() and int(layer) in hybrid else -1
        prefix = f"model.layers.{layer}.shared_transformer."
        owner = f"model.layers.{owners[j % len(owners)]}.shared_transformer." if j >= 0 else None
        if owner is not None and owner + name[len(prefix):] in tensors:
            del out[name]
    return out


def _fmt(shape) -> str:
    """(80, 1536) style, also for 1-D shapes: (1536)."""
    return "(" + ", ".join(str(d) for d in shape) + ")"
