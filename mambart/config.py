"""Model configuration: read config.json and normalise every checkpoint family.

Families (reference doc 1.1): transformers "-hf" configs carry a `model_type`
("mamba" for Mamba-1, "mamba2" for Mamba-2); original `mamba_ssm` configs have
no `model_type` but `d_model` / `n_layer` and an `ssm_cfg` naming the mixer.
Everything downstream reads the one normalised `ModelConfig`.
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable

from . import jsonfile, rope

CONFIG_FILE = "config.json"
# Mistral's own layout (Codestral Mamba): params.json beside consolidated.safetensors.
MISTRAL_PARAMS_FILE = "params.json"


def config_path(model_dir: str | os.PathLike) -> Path:
    """The config file of a model directory: config.json, else Mistral's params.json
    (a repo with both is read in its transformers layout)."""
    model_dir = Path(model_dir)
    hf = model_dir / CONFIG_FILE
    if not hf.is_file() and (model_dir / MISTRAL_PARAMS_FILE).is_file():
        return model_dir / MISTRAL_PARAMS_FILE
    return hf


# Every size (d_model, vocab, state, heads, ...): int32, far beyond any model.
MAX_SIZE = 2**31 - 1
# More layers than any published model; the checkpoint's own tensor count
# bounds it further (weights.check_layer_count) before any per-layer table.
MAX_LAYERS = 4096


def parse_config_json(text: str | bytes, name: str = CONFIG_FILE) -> Any:
    """Parse JSON text, accepting the non-standard numbers real configs contain.

    Python's json already accepts the bare tokens `Infinity`, `-Infinity` and
    `NaN` (older transformers wrote `[0.0, Infinity]`); transformers 5 writes
    the object `{"__float__": "Infinity"}` instead, which becomes a float here.
    Errors are ValueErrors starting with `name`.
    """
    return jsonfile.loads(text, name, object_hook=_float_hook(name))


def read_config_json(path: str | os.PathLike) -> Any:
    """A config.json file parsed as `parse_config_json` does, size-limited."""
    return jsonfile.read(path, object_hook=_float_hook(str(path)))


def _float_hook(name: str) -> Callable[[dict], Any]:
    def hook(obj: dict) -> Any:
        if len(obj) == 1 and "__float__" in obj:
            value = obj["__float__"]
            try:
                if isinstance(value, bool) or not isinstance(value, (str, int, float)):
                    raise ValueError
                return float(value)
            except (ValueError, OverflowError):
                raise ValueError(f"{name}: invalid __float__ value {value!r}") from None
        return obj
    return hook


@dataclass(frozen=True)
class ModelConfig:
    """Normalised model hyper-parameters (sizes in the reference doc's notation).

    The Mamba-2 fields default to the values a Mamba-1 model has (0 / False /
    no dt clamp), so Mamba-1 configs leave them out.
    """

    family: str            # "mamba" (Mamba-1) or "mamba2" (Mamba-2)
    naming: str            # tensor naming: "hf" (embeddings) or "mamba_ssm" (embedding)
    d_model: int           # D
    n_layer: int
    vocab_size: int        # V: rows stored in embedding / lm_head (already padded)
    d_inner: int           # E = int(expand * D)
    d_state: int           # N
    d_conv: int            # K
    dt_rank: int           # R (Mamba-1); 0 for Mamba-2
    eps: float             # epsilon of every RMSNorm (Mamba-2: the gated norm too)
    tie_embeddings: bool   # lm_head is the embedding matrix
    use_bias: bool         # in_proj / out_proj have biases
    use_conv_bias: bool    # conv1d has a bias
    n_heads: int = 0       # H = E / P (Mamba-2)
    head_dim: int = 0      # P (Mamba-2)
    n_groups: int = 0      # G: B/C groups, also the gated norm's groups (Mamba-2)
    chunk_size: int = 0    # SSD chunk length (Mamba-2; rounding only)
    dt_min: float = 0.0    # clamp of dt after softplus in prefill (Mamba-2 dt_limit)
    dt_max: float = math.inf
    gated_norm: bool = False   # Mamba-2 gated RMSNorm before out_proj (mixer.norm.weight)
    d_has_hdim: bool = False   # Mamba-2 D has one value per channel (E) instead of per head (H)
    dt_bc_norm: bool = False   # Falcon-Mamba: weightless RMSNorms on dt, B and C after x_proj
    dt_bc_eps: float = 1e-6    # their epsilon (mixer_rms_eps)
    # Attention hybrids (family "hybrid": the Mamba-2 fields above describe its Mamba layers).
    # layers: one word per layer, one letter per residual block, each with its own pre-norm:
    # "M" Mamba-2, "A" attention, "P" both side by side, "F" MLP, "E" mixture of experts (routed
    # experts + the shared MLP); Granite-4.0-H is "MF MF AF ..." ("ME ME AE ..." with experts),
    # Nemotron-H "M E M A F ...". "" for pure Mamba models.
    layers: str = ""
    attn_heads: int = 0        # query heads
    kv_heads: int = 0          # key / value heads (grouped-query when fewer)
    attn_head_dim: int = 0
    attn_scale: float = 0.0    # softmax scale of q.k
    rope_dim: int = 0          # leading dims of each head that rotate; 0: no position encoding
    rope_theta: float = 10000.0
    rope_scaling: tuple[tuple[str, Any], ...] = ()  # rope.parse: () for the default frequencies
    mlp_gated: bool = True     # MLPs are SwiGLU (input rows [gate | up]); else relu(up)^2 (Nemotron-H)
    mlp_inner: int = 0         # channels of the "F" blocks' MLP
    # Mixture of experts ("E" blocks; cpp/kernels/moe.h): top_k of n_experts MLPs of expert_inner channels
    # per token, weighted by the router's softmax or sigmoid scores (plus a selection bias, group-limited
    # choice, normalised if norm_topk, times routed_scale), plus a shared MLP of shared_inner channels.
    n_experts: int = 0
    top_k: int = 0
    expert_inner: int = 0
    shared_inner: int = 0
    router_sigmoid: bool = False
    norm_topk: bool = True
    n_group: int = 1
    topk_group: int = 1
    routed_scale: float = 1.0
    expert_latent: int = 0     # the routed experts' width (Nemotron-H's moe_latent_size); 0: d_model
    embedding_multiplier: float = 1.0
    residual_multiplier: float = 1.0   # each block's output is scaled by this before the residual add
    logits_scaling: float = 1.0        # logits are divided by this
    # Falcon-H1: layers "P", a Mamba-2 mixer and an attention side by side on one norm (cpp/model/falcon_h1.cpp).
    in_proj_multipliers: tuple[float, ...] = ()  # ssm_in_multiplier x ssm_multipliers, on [z | x | B | C | dt]
    ssm_out_multiplier: float = 1.0
    attn_out_multiplier: float = 1.0   # attention_out_multiplier x attention_in_multiplier (v's share of the input)
    mlp_gate_multiplier: float = 1.0
    mlp_down_multiplier: float = 1.0
    norm_before_gate: bool = False     # the Mamba-2 gated norm normalises y first and gates after
    # Zamba2: layers "SM", a shared attention + MLP block before the Mamba-2 mixer (cpp/model/zamba2.cpp).
    shared_blocks: int = 0             # shared blocks, taken in turn by the "S" blocks
    adapter_rank: int = 0              # rank of each application's LoRA adapters
    attention_adapters: bool = False   # adapters on q, k, v too (the MLP's always)
    mlp_gelu: bool = False             # the shared MLP gates with gelu instead of silu
    gated_norm_eps: float = 0.0        # the Mamba-2 gated norm's epsilon; 0: eps
    quantized: str | None = None  # "q8" / "q4": the big matrices are stored so (`mambart convert`)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of all fields (JSON-serialisable)."""
        return asdict(self)

    @property
    def attention_layers(self) -> int:
        """Layers with an attention, hence a KV cache ("A", Falcon-H1's "P", Zamba2's "S")."""
        return sum(any(kind in "APS" for kind in word) for word in self.layers.split())

    @property
    def moe_layers(self) -> int:
        """Layers with a mixture of experts ("E")."""
        return self.layers.count("E")

    @property
    def mamba_layers(self) -> int:
        """Layers with a Mamba mixer, hence a conv and an SSM state."""
        if not self.layers:
            return self.n_layer
        return sum(any(kind in "MP" for kind in word) for word in self.layers.split())


def load_config(path_or_dir: str | os.PathLike) -> ModelConfig:
    """Read `config.json` (or the given file) and normalise it.

    Raises FileNotFoundError when the file is missing and ValueError, naming
    the file, for invalid JSON or an unsupported / inconsistent config.
    """
    path = Path(path_or_dir)
    if path.is_dir():
        path = config_path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: config file not found")
    raw = read_config_json(path)
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(raw).__name__}")
    try:
        return config_from_dict(raw, mistral=path.name == MISTRAL_PARAMS_FILE)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


# config.json key that `mambart convert` adds for quantized checkpoints.
QUANTIZED_KEY = "mambart_quantized"
QUANTIZED_TYPES = ("q8", "q4")


def config_from_dict(raw: dict[str, Any], *, mistral: bool = False) -> ModelConfig:
    """Detect the family of a parsed config.json (or, with mistral, a params.json)
    and normalise it (doc 1.1)."""
    config = _parse_mistral_params(raw) if mistral else _config_from_dict(raw)
    if config.n_layer > MAX_LAYERS:
        raise ValueError(f"{config.n_layer} layers exceed the {MAX_LAYERS}-layer limit")
    quantized = raw.get(QUANTIZED_KEY)
    if quantized is None:
        return config
    if quantized not in QUANTIZED_TYPES:
        raise ValueError(f"{QUANTIZED_KEY} is {quantized!r}; expected one of {', '.join(QUANTIZED_TYPES)}")
    return replace(config, quantized=quantized)


def _config_from_dict(raw: dict[str, Any]) -> ModelConfig:
    model_type = raw.get("model_type")
    if model_type is not None:
        # Decide on model_type alone: -hf configs carry stale mamba_ssm keys.
        parser = _HF_PARSERS.get(model_type) if isinstance(model_type, str) else None
        if parser is None:
            supported = ", ".join(repr(k) for k in _HF_PARSERS)
            raise ValueError(f"unsupported model_type {_short(model_type)} (supported: {supported})")
        return parser(raw)
    if "d_model" in raw and "n_layer" in raw:
        return _parse_mamba_ssm(raw)
    raise ValueError(
        "cannot tell the model family: no 'model_type', and no 'd_model' / 'n_layer' "
        "(original mamba_ssm config)")


# --- transformers layouts ----------------------------------------------------


def _parse_hf_mamba1(raw: dict[str, Any]) -> ModelConfig:
    """transformers MambaConfig (doc 1.3); defaults are that class's."""
    return _hf_mamba1(raw)


def _parse_hf_falcon_mamba(raw: dict[str, Any]) -> ModelConfig:
    """transformers FalconMambaConfig: MambaConfig's keys and defaults, plus
    weightless RMSNorms (epsilon `mixer_rms_eps`) on dt, B and C after x_proj."""
    return replace(_hf_mamba1(raw), dt_bc_norm=True, dt_bc_eps=_eps(raw, "mixer_rms_eps", 1e-6))


def _hf_mamba1(raw: dict[str, Any]) -> ModelConfig:
    d_model = _size(raw, "hidden_size", 768)
    act = raw.get("hidden_act", "silu")
    if act != "silu":
        raise ValueError(f"hidden_act {act!r} is not supported (only 'silu')")
    # intermediate_size is recomputed by transformers from expand, so ignore it.
    return ModelConfig(
        family="mamba",
        naming="hf",
        d_model=d_model,
        n_layer=_size(raw, "num_hidden_layers", 32),
        vocab_size=_size(raw, "vocab_size", 50280),
        d_inner=_inner(raw, "expand", 2, d_model),
        d_state=_size(raw, "state_size", 16),
        d_conv=_size(raw, "conv_kernel", 4),
        dt_rank=_dt_rank(raw, "time_step_rank", d_model),
        eps=_eps(raw, "layer_norm_epsilon", 1e-5),
        tie_embeddings=_flag(raw, "tie_word_embeddings", True),
        use_bias=_flag(raw, "use_bias", False),
        use_conv_bias=_flag(raw, "use_conv_bias", True),
    )


def _parse_hf_mamba2(raw: dict[str, Any]) -> ModelConfig:
    """transformers Mamba2Config (doc 1.4); defaults are that class's (n_groups 8!).

    `norm_before_gate` / `rms_norm` keys are not read by transformers'
    Mamba2Mixer (always gate-then-norm, always the gated RMSNorm), so neither here.
    """
    d_model = _size(raw, "hidden_size", 4096)
    act = raw.get("hidden_act", "silu")
    if act != "silu":
        raise ValueError(f"hidden_act {act!r} is not supported (only 'silu')")
    d_inner = _inner(raw, "expand", 2, d_model)
    n_heads, head_dim = _size(raw, "num_heads", 128), _size(raw, "head_dim", 64)
    if d_inner != n_heads * head_dim:
        raise ValueError(f"hidden_size * expand ({d_inner}) != num_heads * head_dim "
                         f"({n_heads} * {head_dim} = {n_heads * head_dim})")
    n_groups = _size(raw, "n_groups", 8)
    _check_groups(n_heads, n_groups, "num_heads", "n_groups")
    dt_min, dt_max = _dt_limit(raw, "time_step_limit")
    return ModelConfig(
        family="mamba2",
        naming="hf",
        d_model=d_model,
        n_layer=_size(raw, "num_hidden_layers", 64),
        vocab_size=_size(raw, "vocab_size", 32768),
        d_inner=d_inner,
        d_state=_size(raw, "state_size", 128),
        d_conv=_size(raw, "conv_kernel", 4),
        dt_rank=0,
        eps=_eps(raw, "layer_norm_epsilon", 1e-5),
        tie_embeddings=_flag(raw, "tie_word_embeddings", False),  # Mamba-2's default
        use_bias=_flag(raw, "use_bias", False),
        use_conv_bias=_flag(raw, "use_conv_bias", True),
        n_heads=n_heads,
        head_dim=head_dim,
        n_groups=n_groups,
        chunk_size=_size(raw, "chunk_size", 256),
        dt_min=dt_min,
        dt_max=dt_max,
        gated_norm=True,
        d_has_hdim=False,
    )


def _parse_granitemoehybrid(raw: dict[str, Any]) -> ModelConfig:
    """transformers GraniteMoeHybridConfig (Granite-4.0-H); defaults are that class's.

    Each layer is a Mamba-2 mixer or a grouped-query attention, per `layer_types`
    (or the older `layers_block_type`); each is followed by the shared SwiGLU MLP.
    """
    d_model = _size(raw, "hidden_size", 4096)
    n_layer = _size(raw, "num_hidden_layers", 32)
    attn_heads = _size(raw, "num_attention_heads", 32)
    position = raw.get("position_embedding_type")
    if position not in (None, "rope", "nope"):
        raise ValueError(f"position_embedding_type {position!r} is not supported (only 'rope', or none)")
    attn = _hybrid_attention(raw, d_model, attn_heads, kv_default=attn_heads)
    # transformers' Granite rotary turns whole heads, whatever partial_rotary_factor says.
    positions = _rope(raw, attn["attn_head_dim"], 1.0, 2048) if position == "rope" else {}
    return ModelConfig(
        family="hybrid", naming="granite", d_model=d_model, n_layer=n_layer,
        vocab_size=_size(raw, "vocab_size", 32000), eps=_eps(raw, "rms_norm_eps", 1e-6),
        tie_embeddings=_flag(raw, "tie_word_embeddings", False), **_granite_experts(raw, _layer_letters(raw, n_layer)),
        **_hybrid_mamba(raw, d_model), **attn,
        attn_scale=_number(raw, "attention_multiplier", 1.0), **positions,
        embedding_multiplier=_number(raw, "embedding_multiplier", 1.0),
        residual_multiplier=_number(raw, "residual_multiplier", 1.0),
        logits_scaling=_number(raw, "logits_scaling", 1.0),
    )


def _granite_experts(raw: dict[str, Any], letters: str) -> dict[str, Any]:
    """Granite's layers: each mixer followed by the shared MLP ("F"), or with num_local_experts > 0
    by the experts beside it ("E": top num_experts_per_tok by the softmax of the router's chosen logits)."""
    shared = _size(raw, "shared_intermediate_size", 1024)
    experts = raw.get("num_local_experts", 8)
    if experts == 0:
        return dict(layers=_words(letters, "F"), mlp_inner=shared)
    experts = _size(raw, "num_local_experts", 8)
    top_k = _size(raw, "num_experts_per_tok", 2)
    if top_k > experts:
        raise ValueError(f"num_experts_per_tok {top_k} exceeds num_local_experts {experts}")
    return dict(layers=_words(letters, "E"), n_experts=experts, top_k=top_k,
                expert_inner=_size(raw, "intermediate_size", 11008), shared_inner=shared)


def _parse_bamba(raw: dict[str, Any]) -> ModelConfig:
    """transformers BambaConfig (Bamba-9B); defaults are that class's.

    Attention at the layers of `attn_layer_indices`, Mamba-2 elsewhere; each mixer is
    followed by a SwiGLU MLP (gate_proj / up_proj / down_proj). The rotary embedding
    always runs, over partial_rotary_factor of each head: 0.5 unless rope_parameters
    names another factor (BambaConfig forces 0.5 over a top-level key).
    """
    d_model = _size(raw, "hidden_size", 4096)
    n_layer = _size(raw, "num_hidden_layers", 32)
    if _flag(raw, "mlp_bias", False):
        raise ValueError("mlp_bias true is not supported yet")
    attn_heads = _size(raw, "num_attention_heads", 32)
    attn = _hybrid_attention(raw, d_model, attn_heads, kv_default=8)
    params = raw.get("rope_parameters") or {}
    factor = _number(params, "partial_rotary_factor", 0.5) if isinstance(params, dict) else 0.5
    positions = _rope(raw, attn["attn_head_dim"], factor, 262144)
    return ModelConfig(
        family="hybrid", naming="bamba", d_model=d_model, n_layer=n_layer,
        vocab_size=_size(raw, "vocab_size", 128000), eps=_eps(raw, "rms_norm_eps", 1e-5),
        tie_embeddings=_flag(raw, "tie_word_embeddings", False), layers=_words(_attn_indices(raw, n_layer), "F"),
        **_hybrid_mamba(raw, d_model), **attn,
        attn_scale=attn["attn_head_dim"] ** -0.5, **positions,
        mlp_inner=_size(raw, "intermediate_size", 14336),
    )


def _hybrid_mamba(raw: dict[str, Any], d_model: int, d_inner: int | None = None) -> dict[str, Any]:
    """The Mamba-2 layers of Granite-4.0-H, Bamba and Falcon-H1: the same mamba_* keys and defaults;
    d_inner when the config sizes it otherwise than hidden_size * mamba_expand (Falcon-H1's mamba_d_ssm)."""
    act = raw.get("hidden_act", "silu")
    if act != "silu":
        raise ValueError(f"hidden_act {act!r} is not supported (only 'silu')")
    inner_name = "hidden_size * mamba_expand" if d_inner is None else "mamba_d_ssm"
    d_inner = _inner(raw, "mamba_expand", 2, d_model) if d_inner is None else d_inner
    n_heads = _size(raw, "mamba_n_heads", 128)
    head_dim = d_inner // n_heads if raw.get("mamba_d_head", "auto") == "auto" else _size(raw, "mamba_d_head", 0)
    if n_heads * head_dim != d_inner:
        raise ValueError(f"mamba_n_heads {n_heads} x mamba_d_head {head_dim} != {inner_name} {d_inner}")
    n_groups = _size(raw, "mamba_n_groups", 1)
    _check_groups(n_heads, n_groups, "mamba_n_heads", "mamba_n_groups")
    dt_min, dt_max = _dt_limit(raw, "time_step_limit")
    return dict(d_inner=d_inner, d_state=_size(raw, "mamba_d_state", 256), d_conv=_size(raw, "mamba_d_conv", 4),
                dt_rank=0, use_bias=_flag(raw, "mamba_proj_bias", False),
                use_conv_bias=_flag(raw, "mamba_conv_bias", True), n_heads=n_heads, head_dim=head_dim,
                n_groups=n_groups, chunk_size=_size(raw, "mamba_chunk_size", 256), dt_min=dt_min, dt_max=dt_max,
                gated_norm=True)


def _hybrid_attention(raw: dict[str, Any], d_model: int, attn_heads: int, kv_default: int) -> dict[str, Any]:
    """Grouped-query attention heads; a `head_dim` key, where a config has one, overrides
    hidden_size / num_attention_heads (as getattr(config, "head_dim", ...) does)."""
    kv_heads = attn_heads if raw.get("num_key_value_heads", kv_default) is None \
        else _size(raw, "num_key_value_heads", kv_default)
    head_dim = _size(raw, "head_dim", 0) if raw.get("head_dim") is not None else d_model // attn_heads
    if (raw.get("head_dim") is None and d_model % attn_heads) or attn_heads % kv_heads:
        raise ValueError(f"num_attention_heads {attn_heads} must divide hidden_size {d_model}, and "
                         f"num_key_value_heads {kv_heads} must divide num_attention_heads")
    if _flag(raw, "attention_bias", False):
        raise ValueError("attention_bias true is not supported yet")
    return dict(attn_heads=attn_heads, kv_heads=kv_heads, attn_head_dim=head_dim)


def _parse_jamba(raw: dict[str, Any]) -> ModelConfig:
    """transformers JambaConfig (AI21's Jamba); defaults are that class's.

    Mamba-1 layers whose dt, B and C go through RMSNorms with weights, an attention (no
    position encoding) at the layers i with i % attn_layer_period == attn_layer_offset;
    every layer's MLP is a mixture of experts at i % expert_layer_period ==
    expert_layer_offset (when num_experts > 1), a SwiGLU MLP elsewhere. The router takes
    the top num_experts_per_tok of the softmax over all experts, unnormalised.
    """
    act = raw.get("hidden_act", "silu")
    if act != "silu":
        raise ValueError(f"hidden_act {act!r} is not supported (only 'silu')")
    if _flag(raw, "mamba_proj_bias", False):
        raise ValueError("mamba_proj_bias true is not supported yet")
    d_model = _size(raw, "hidden_size", 4096)
    n_layer = _size(raw, "num_hidden_layers", 32)
    periods = {}
    for kind, period, offset in (("attn", 8, 4), ("expert", 2, 1)):
        p, o = _size(raw, f"{kind}_layer_period", period), raw.get(f"{kind}_layer_offset", offset)
        if isinstance(o, bool) or not isinstance(o, int) or not 0 <= o < p:
            raise ValueError(f"'{kind}_layer_offset' must be an int in [0, {kind}_layer_period {p}), got {o!r}")
        periods[kind] = (p, o)
    experts = _size(raw, "num_experts", 16)
    top_k = _size(raw, "num_experts_per_tok", 2)
    if top_k > experts:
        raise ValueError(f"num_experts_per_tok {top_k} exceeds num_experts {experts}")
    words = []
    for i in range(n_layer):
        mixer = "A" if i % periods["attn"][0] == periods["attn"][1] else "M"
        words.append(mixer + ("E" if experts > 1 and i % periods["expert"][0] == periods["expert"][1] else "F"))
    attn = _hybrid_attention(raw, d_model, _size(raw, "num_attention_heads", 32), kv_default=8)
    eps = _eps(raw, "rms_norm_eps", 1e-6)
    inner = _size(raw, "intermediate_size", 14336)
    moe = dict(n_experts=experts, top_k=top_k, expert_inner=inner, norm_topk=False) if experts > 1 else {}
    return ModelConfig(
        family="hybrid", naming="jamba", d_model=d_model, n_layer=n_layer, vocab_size=_size(raw, "vocab_size", 65536),
        d_inner=_inner(raw, "mamba_expand", 2, d_model), d_state=_size(raw, "mamba_d_state", 16),
        d_conv=_size(raw, "mamba_d_conv", 4), dt_rank=_dt_rank(raw, "mamba_dt_rank", d_model), eps=eps,
        tie_embeddings=_flag(raw, "tie_word_embeddings", False), use_bias=False,
        use_conv_bias=_flag(raw, "mamba_conv_bias", True), dt_bc_norm=True, dt_bc_eps=eps, layers=" ".join(words),
        **attn, attn_scale=attn["attn_head_dim"] ** -0.5, mlp_inner=inner, **moe)


def _parse_falcon_h1(raw: dict[str, Any]) -> ModelConfig:
    """transformers FalconH1Config; defaults are that class's.

    Every layer is "P": a Mamba-2 mixer and an attention side by side on the input norm,
    then a SwiGLU MLP. The µP multipliers become those of the C++ config: the attention
    input and key multipliers fold into the softmax scale (q.k carries attention_in^2 x key)
    and into the output multiplier (v carries attention_in).
    """
    for key in ("mlp_bias", "mamba_proj_bias", "projectors_bias"):
        if _flag(raw, key, False):
            raise ValueError(f"{key} true is not supported yet")
    d_model = _size(raw, "hidden_size", 4096)
    n_layer = _size(raw, "num_hidden_layers", 32)
    # transformers builds in_proj and conv1d with mamba_expand * hidden_size whatever mamba_d_ssm says;
    # the checkpoints' shapes follow mamba_d_ssm, and so does mambart.
    d_ssm = _size(raw, "mamba_d_ssm", 1024) if raw.get("mamba_d_ssm", 1024) is not None else None
    mamba = dict(_hybrid_mamba(raw, d_model, d_ssm), gated_norm=_flag(raw, "mamba_rms_norm", False))
    attn = _hybrid_attention(raw, d_model, _size(raw, "num_attention_heads", 32), kv_default=8)
    positions = _rope(raw, attn["attn_head_dim"], 1.0, 8192)  # Llama's rotary: whole heads
    attn_in = _number(raw, "attention_in_multiplier", 1.0)
    ssm_in = _number(raw, "ssm_in_multiplier", 1.0)
    mlp_gate, mlp_down = _numbers(raw, "mlp_multipliers", 2)
    return ModelConfig(
        family="hybrid", naming="falcon_h1", d_model=d_model, n_layer=n_layer,
        vocab_size=_size(raw, "vocab_size", 128000), eps=_eps(raw, "rms_norm_eps", 1e-5),
        tie_embeddings=_flag(raw, "tie_word_embeddings", False), layers=" ".join(["PF"] * n_layer), **mamba, **attn,
        attn_scale=attn["attn_head_dim"] ** -0.5 * attn_in * attn_in * _number(raw, "key_multiplier", 1.0),
        **positions, mlp_inner=_size(raw, "intermediate_size", 14336),
        embedding_multiplier=_number(raw, "embedding_multiplier", 1.0),
        logits_scaling=1.0 / _number(raw, "lm_head_multiplier", 1.0),
        in_proj_multipliers=tuple(ssm_in * m for m in _numbers(raw, "ssm_multipliers", 5)),
        ssm_out_multiplier=_number(raw, "ssm_out_multiplier", 1.0),
        attn_out_multiplier=_number(raw, "attention_out_multiplier", 1.0) * attn_in,
        mlp_gate_multiplier=mlp_gate, mlp_down_multiplier=mlp_down,
        norm_before_gate=_flag(raw, "mamba_norm_before_gate", True),
    )


# Zamba2's layer kinds: a Mamba-2 layer, or the shared block ("S") then one.
_ZAMBA2_KINDS = {"mamba": "M", "linear_attention": "M", "hybrid": "SM"}
# Zamba2Config's layers_block_type when the config has none (Zamba2-2.7B's 54 layers).
_ZAMBA2_DEFAULT_LAYERS = (["mamba"] + (["mamba"] * 5 + ["hybrid"]) * 7 + ["mamba"] * 4 + ["hybrid"] + ["mamba"] * 3
                          + ["hybrid"] + ["mamba"] * 2)


def _parse_zamba2(raw: dict[str, Any]) -> ModelConfig:
    """transformers Zamba2Config (Zyphra's Zamba2); defaults are that class's.

    Mamba-2 layers ("M"), and at the "hybrid" layers ("SM") one of num_mem_blocks shared
    attention + MLP blocks in turn, then the layer's Mamba-2 mixer. The shared attention reads
    the residual stream and the embeddings side by side (2 * hidden_size wide); its softmax
    scale is 1 / sqrt(head_dim / 2).
    """
    for key in ("add_bias_linear", "use_long_context"):
        if _flag(raw, key, False):
            raise ValueError(f"{key} true is not supported yet")
    act = raw.get("hidden_act", "gelu")
    if act not in ("gelu", "silu"):
        raise ValueError(f"hidden_act {act!r} is not supported (only 'gelu' or 'silu')")
    d_model = _size(raw, "hidden_size", 2560)
    n_layer = _size(raw, "num_hidden_layers", 54)
    kinds = raw.get("layers_block_type")
    kinds = _ZAMBA2_DEFAULT_LAYERS if kinds is None and n_layer == len(_ZAMBA2_DEFAULT_LAYERS) else kinds
    layers = " ".join(_layer_kinds(kinds, "layers_block_type", _ZAMBA2_KINDS, n_layer))
    d_inner = _inner(raw, "mamba_expand", 2, d_model)
    n_heads = _size(raw, "n_mamba_heads", 8)
    if d_inner % n_heads:
        raise ValueError(f"n_mamba_heads {n_heads} must divide hidden_size * mamba_expand {d_inner}")
    n_groups = _size(raw, "mamba_ngroups", 1)
    _check_groups(n_heads, n_groups, "n_mamba_heads", "mamba_ngroups")
    attn_heads = _size(raw, "num_attention_heads", 32)
    kv_heads = attn_heads if raw.get("num_key_value_heads") is None else _size(raw, "num_key_value_heads", 0)
    if (2 * d_model) % attn_heads or attn_heads % kv_heads:
        raise ValueError(f"num_attention_heads {attn_heads} must divide 2 * hidden_size {2 * d_model}, and "
                         f"num_key_value_heads {kv_heads} must divide num_attention_heads")
    head_dim = 2 * d_model // attn_heads
    adapters = _flag(raw, "use_shared_attention_adapter", False)
    if adapters and kv_heads != attn_heads:
        raise ValueError("use_shared_attention_adapter needs num_key_value_heads = num_attention_heads "
                         "(the adapters are 2 * hidden_size wide)")
    shared_blocks = _size(raw, "num_mem_blocks", 1)
    if shared_blocks > layers.count("S"):
        raise ValueError(f"num_mem_blocks {shared_blocks} exceeds the {layers.count('S')} hybrid layers")
    positions = _rope(raw, head_dim, 1.0, 4096) if _flag(raw, "use_mem_rope", False) else {}
    tied = _flag(raw, "tie_word_embeddings", True)
    if not tied:  # transformers ties the blocks' weights only with the embeddings: each layer "S" has its own
        shared_blocks = layers.count("S")
    return ModelConfig(
        family="hybrid", naming="zamba2", d_model=d_model, n_layer=n_layer,
        vocab_size=_size(raw, "vocab_size", 32000), d_inner=d_inner, d_state=_size(raw, "mamba_d_state", 64),
        d_conv=_size(raw, "mamba_d_conv", 4), dt_rank=0, eps=_eps(raw, "rms_norm_eps", 1e-5),
        tie_embeddings=tied, use_bias=False, use_conv_bias=True,
        n_heads=n_heads, head_dim=d_inner // n_heads, n_groups=n_groups, chunk_size=_size(raw, "chunk_size", 256),
        dt_min=_number(raw, "time_step_min", 0.001), dt_max=math.inf, gated_norm=True, layers=layers,
        attn_heads=attn_heads, kv_heads=kv_heads, attn_head_dim=head_dim, attn_scale=(head_dim / 2) ** -0.5,
        **positions,
        mlp_inner=_size(raw, "intermediate_size", 4 * d_model) if raw.get("intermediate_size") else 4 * d_model,
        shared_blocks=shared_blocks, adapter_rank=_size(raw, "adapter_rank", 128), attention_adapters=adapters,
        mlp_gelu=act == "gelu", gated_norm_eps=1e-5,  # Zamba2's Mamba norm: eps 1e-5 whatever rms_norm_eps says
    )


def _numbers(raw: dict[str, Any], key: str, count: int) -> tuple[float, ...]:
    """A list of `count` positive numbers (all 1 when absent or null)."""
    value = raw.get(key)
    if value is None:
        return (1.0,) * count
    if not isinstance(value, (list, tuple)) or len(value) != count:
        raise ValueError(f"'{key}' must list {count} numbers, got {value!r}")
    return tuple(_number({key: v}, key, 1.0) for v in value)


_LAYER_LETTERS = {"mamba": "M", "linear_attention": "M", "attention": "A", "full_attention": "A"}


def _layer_letters(raw: dict[str, Any], n_layer: int) -> str:
    """'M' / 'A' per layer from `layer_types` or `layers_block_type` (all Mamba when absent)."""
    key = "layer_types" if raw.get("layer_types") is not None else "layers_block_type"
    kinds = raw.get(key)
    if kinds is None:
        return "M" * n_layer
    return "".join(_layer_kinds(kinds, key, _LAYER_LETTERS, n_layer))


def _layer_kinds(kinds: Any, key: str, names: dict[str, str], n_layer: int | None = None) -> list[str]:
    """A config's list of layer kinds as names' letters; ValueError unless it lists n_layer
    (when given; else at least one) of names' keys."""
    if (not isinstance(kinds, list) or (len(kinds) != n_layer if n_layer is not None else not kinds)
            or any(not isinstance(k, str) or k not in names for k in kinds)):
        count = "" if n_layer is None else f"{n_layer} "
        raise ValueError(f"'{key}' must list {count}layer kinds from {sorted(names)}, got {_short(kinds)}")
    return [names[k] for k in kinds]


def _attn_indices(raw: dict[str, Any], n_layer: int) -> str:
    """'A' at the layers of `attn_layer_indices` (Bamba), 'M' elsewhere."""
    indices = raw.get("attn_layer_indices") or []
    if not isinstance(indices, list) or any(isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < n_layer
                                            for i in indices):
        raise ValueError(f"'attn_layer_indices' must list layer indices in [0, {n_layer}), got {_short(indices)}")
    return "".join("A" if i in indices else "M" for i in range(n_layer))


# Nemotron-H's layer kinds (layers_block_type, legacy names too) and hybrid_override_pattern's letters.
_NEMOTRON_KINDS = {"mamba": "M", "linear_attention": "M", "attention": "A", "full_attention": "A", "mlp": "F",
                   "moe": "E"}
_NEMOTRON_LETTERS = {"M": "M", "*": "A", "-": "F", "E": "E"}


def _parse_nemotron_h(raw: dict[str, Any]) -> ModelConfig:
    """transformers NemotronHConfig (Nemotron-H, NVIDIA-Nemotron-Nano-v2, Nemotron-3-Nano); defaults are
    that class's. Each layer is one residual block with its own norm: a Mamba-2 mixer, a grouped-query
    attention (no position encoding, scale head_dim^-0.5), a squared-ReLU MLP, or a mixture of experts
    (sigmoid scores, a selection bias, group-limited choice, shared experts). The Mamba-2 mixer clamps dt
    below at time_step_min in prefill, whatever time_step_limit says, and norms its gated output per group.
    The head is never tied to the embedding (NemotronHForCausalLM ties no weights, whatever
    tie_word_embeddings says), so lm_head.weight is always read."""
    layers = _nemotron_layers(raw)
    d_model = _size(raw, "hidden_size", 4096)
    if raw.get("mamba_hidden_act", "silu") != "silu":
        raise ValueError(f"mamba_hidden_act {raw['mamba_hidden_act']!r} is not supported (only 'silu')")
    if raw.get("mlp_hidden_act", "relu2") != "relu2":
        raise ValueError(f"mlp_hidden_act {raw['mlp_hidden_act']!r} is not supported (only 'relu2')")
    if _flag(raw, "mlp_bias", False):
        raise ValueError("mlp_bias true is not supported yet")
    n_heads, head_dim = _size(raw, "mamba_num_heads", 128), _size(raw, "mamba_head_dim", 64)
    if n_heads * head_dim > MAX_SIZE:
        raise ValueError(f"mamba_num_heads {n_heads} x mamba_head_dim {head_dim} is over the {MAX_SIZE} limit")
    # The older mamba_* spellings win over the plain keys, as NemotronHConfig pops them.
    key = lambda plain, old: old if old in raw else plain  # noqa: E731
    n_groups = _size(raw, key("n_groups", "mamba_n_groups"), 8)
    _check_groups(n_heads, n_groups, "mamba_num_heads", "n_groups")
    dt_min = raw.get(key("time_step_min", "mamba_dt_min"), 0.001)
    if isinstance(dt_min, bool) or not isinstance(dt_min, (int, float)) or not jsonfile.finite(dt_min) or dt_min < 0:
        raise ValueError(f"'time_step_min' must be a non-negative number, got {_short(dt_min)}")
    attn_heads = _size(raw, "num_attention_heads", 32)
    kv_heads = attn_heads if raw.get("num_key_value_heads", 8) is None else _size(raw, "num_key_value_heads", 8)
    if attn_heads % kv_heads:
        raise ValueError(f"num_key_value_heads {kv_heads} must divide num_attention_heads {attn_heads}")
    attn_head_dim = d_model // attn_heads if raw.get("head_dim", 128) is None else _size(raw, "head_dim", 128)
    return ModelConfig(
        family="hybrid", naming="nemotron_h", d_model=d_model, n_layer=len(layers.split()),
        vocab_size=_size(raw, "vocab_size", 131072), d_inner=n_heads * head_dim,
        d_state=_size(raw, "ssm_state_size", 128), d_conv=_size(raw, key("conv_kernel", "mamba_d_conv"), 4),
        dt_rank=0, eps=_eps(raw, "layer_norm_epsilon", 1e-5), tie_embeddings=False,
        use_bias=_flag(raw, "use_bias", False), use_conv_bias=_flag(raw, key("use_conv_bias", "mamba_conv_bias"), True),
        n_heads=n_heads, head_dim=head_dim, n_groups=n_groups,
        chunk_size=_size(raw, key("chunk_size", "mamba_chunk_size"), 128), dt_min=float(dt_min), gated_norm=True,
        layers=layers, attn_heads=attn_heads, kv_heads=kv_heads, attn_head_dim=attn_head_dim,
        attn_scale=attn_head_dim ** -0.5, mlp_gated=False, mlp_inner=_size(raw, "intermediate_size", 21504),
        **(_nemotron_experts(raw) if "E" in layers else {}),
    )


def _nemotron_layers(raw: dict[str, Any]) -> str:
    """One letter per layer from `layers_block_type`, else the older `hybrid_override_pattern`."""
    kinds = raw.get("layers_block_type")
    if kinds is None and raw.get("hybrid_override_pattern") is not None:
        pattern = raw["hybrid_override_pattern"]
        if not isinstance(pattern, str) or not pattern or any(c not in _NEMOTRON_LETTERS for c in pattern):
            raise ValueError(f"'hybrid_override_pattern' must be a string of {''.join(_NEMOTRON_LETTERS)}, "
                             f"got {_short(pattern)}")
        letters = [_NEMOTRON_LETTERS[c] for c in pattern]
    else:
        kinds = ["linear_attention", "moe", "full_attention", "mlp"] if kinds is None else kinds
        letters = _layer_kinds(kinds, "layers_block_type", _NEMOTRON_KINDS)
    if len(letters) > MAX_LAYERS:
        raise ValueError(f"{len(letters)} layers exceed the {MAX_LAYERS}-layer limit")
    return " ".join(letters)


def _nemotron_experts(raw: dict[str, Any]) -> dict[str, Any]:
    """Nemotron-H's mixture of experts: sigmoid scores plus e_score_correction_bias choose the top
    num_experts_per_tok among the topk_group best of n_group groups; the chosen scores, normalised if
    norm_topk_prob, times routed_scaling_factor, weight them; one shared MLP beside them. With
    moe_latent_size the routed experts run on the rows projected to that width, and their sum is
    projected back."""
    latent = 0 if raw.get("moe_latent_size") is None else _size(raw, "moe_latent_size", 0)
    experts = _size(raw, "n_routed_experts" if "n_routed_experts" in raw else "num_local_experts", 8)
    top_k, n_group = _size(raw, "num_experts_per_tok", 2), _size(raw, "n_group", 1)
    topk_group = _size(raw, "topk_group", 1)
    if experts % n_group or topk_group > n_group or top_k > topk_group * (experts // n_group):
        raise ValueError(f"n_group {n_group} must divide n_routed_experts {experts}, and the topk_group "
                         f"{topk_group} groups kept must hold num_experts_per_tok {top_k} experts")
    return dict(n_experts=experts, top_k=top_k, expert_inner=_size(raw, "moe_intermediate_size", 7688),
                shared_inner=_size(raw, "moe_shared_expert_intermediate_size", 7688), router_sigmoid=True,
                norm_topk=_flag(raw, "norm_topk_prob", True), n_group=n_group, topk_group=topk_group,
                routed_scale=_number(raw, "routed_scaling_factor", 1.0), expert_latent=latent)


def _words(letters: str, ffn: str) -> str:
    """Mixer letters as block words: each mixer followed by the FFN block ("MA", "F" -> "MF AF")."""
    return " ".join(mixer + ffn for mixer in letters)


def _rope(raw: dict[str, Any], head_dim: int, factor: float, max_positions: int) -> dict[str, Any]:
    """rope_dim, rope_theta and rope_scaling (mambart/rope.py) from rope_parameters, or the
    older rope_scaling and top-level keys; `factor` of each head's dims rotate and
    `max_positions` is the family's default max_position_embeddings."""
    params = raw.get("rope_scaling") or raw.get("rope_parameters") or {}  # transformers' precedence
    if not isinstance(params, dict):
        raise ValueError(f"'rope_parameters' must be an object, got {_short(params)}")
    theta = _number(params, "rope_theta", raw.get("rope_theta", 10000.0))
    scaling = rope.parse(params, raw.get("max_position_embeddings") or max_positions)
    rope_dim = int(head_dim * factor)
    # An odd count would rotate one more dim than the frequencies' denominator in transformers.
    if rope_dim <= 0 or rope_dim > head_dim or rope_dim % 2:
        raise ValueError(f"partial_rotary_factor {factor!r} leaves {rope_dim} of {head_dim} dims to rotate "
                         "(an even count from 2 to the head dim is needed)")
    rope.frequencies(rope_dim, theta, scaling)  # a ValueError now rather than at load
    return dict(rope_dim=rope_dim, rope_theta=theta, rope_scaling=scaling)


_HF_PARSERS: dict[str, Callable[[dict[str, Any]], ModelConfig]] = {
    "mamba": _parse_hf_mamba1,
    "mamba2": _parse_hf_mamba2,
    "falcon_mamba": _parse_hf_falcon_mamba,
    "granitemoehybrid": _parse_granitemoehybrid,
    "bamba": _parse_bamba,
    "falcon_h1": _parse_falcon_h1,
    "nemotron_h": _parse_nemotron_h,
    "jamba": _parse_jamba,
    "zamba2": _parse_zamba2,
}


# --- original mamba_ssm layout ----------------------------------------------


def _parse_mamba_ssm(raw: dict[str, Any]) -> ModelConfig:
    """mamba_ssm MambaConfig (doc 1.2): pick the mixer, reject hybrids."""
    ssm_cfg = raw.get("ssm_cfg") or {}
    if not isinstance(ssm_cfg, dict):
        raise ValueError(f"'ssm_cfg' must be an object, got {ssm_cfg!r}")
    layer = ssm_cfg.get("layer", "Mamba1")
    if raw.get("attn_layer_idx"):
        raise ValueError(
            "hybrid models with attention layers (attn_layer_idx "
            f"{raw['attn_layer_idx']!r}) are not supported")
    d_intermediate = raw.get("d_intermediate", 0)
    if d_intermediate:
        raise ValueError(
            f"d_intermediate {d_intermediate!r} > 0 (an MLP sub-block per layer) is not supported")
    if layer not in ("Mamba1", "Mamba2"):
        raise ValueError(f"unsupported mixer layer {layer!r} in ssm_cfg "
                         "(supported: 'Mamba1', 'Mamba2')")
    if not _flag(raw, "rms_norm", True):
        raise ValueError("rms_norm false (LayerNorm blocks) is not supported")

    d_model = _size(raw, "d_model", 2560)
    common = dict(
        naming="mamba_ssm",
        d_model=d_model,
        n_layer=_size(raw, "n_layer", 64),
        vocab_size=_padded_vocab(raw, 50277, 8),
        d_inner=_inner(ssm_cfg, "expand", 2, d_model),
        d_conv=_size(ssm_cfg, "d_conv", 4),
        eps=1e-5,  # hard-coded norm_epsilon in mamba_ssm; no config field
        tie_embeddings=_flag(raw, "tie_embeddings", True),
        use_bias=_flag(ssm_cfg, "bias", False),
        use_conv_bias=_flag(ssm_cfg, "conv_bias", True),
    )
    if layer == "Mamba1":
        return ModelConfig(family="mamba", d_state=_size(ssm_cfg, "d_state", 16),
                           dt_rank=_dt_rank(ssm_cfg, "dt_rank", d_model), **common)
    return _mamba_ssm_mamba2(ssm_cfg, common)


def _mamba_ssm_mamba2(ssm_cfg: dict[str, Any], common: dict[str, Any]) -> ModelConfig:
    """The Mamba2 mixer's ssm_cfg (doc 1.2: d_state 128, headdim 64, ngroups 1)."""
    d_inner = common["d_inner"]
    d_ssm = ssm_cfg.get("d_ssm")
    if d_ssm is not None and d_ssm != d_inner:
        raise ValueError(f"ssm_cfg d_ssm {d_ssm!r} != d_inner {d_inner} (a gated MLP beside "
                         "the SSM) is not supported")
    if _flag(ssm_cfg, "norm_before_gate", False):
        raise ValueError("ssm_cfg norm_before_gate true is not supported "
                         "(only gate-then-norm, as published)")
    head_dim = _size(ssm_cfg, "headdim", 64)
    if d_inner % head_dim:
        raise ValueError(f"d_inner {d_inner} is not a multiple of ssm_cfg headdim {head_dim}")
    n_heads = d_inner // head_dim
    n_groups = _size(ssm_cfg, "ngroups", 1)
    _check_groups(n_heads, n_groups, "heads (d_inner / headdim)", "ngroups")
    dt_min, dt_max = _dt_limit(ssm_cfg, "dt_limit")
    return ModelConfig(
        family="mamba2",
        d_state=_size(ssm_cfg, "d_state", 128),
        dt_rank=0,
        n_heads=n_heads,
        head_dim=head_dim,
        n_groups=n_groups,
        chunk_size=_size(ssm_cfg, "chunk_size", 256),
        dt_min=dt_min,
        dt_max=dt_max,
        gated_norm=_flag(ssm_cfg, "rmsnorm", True),
        d_has_hdim=_flag(ssm_cfg, "D_has_hdim", False),
        **common,
    )


# --- Mistral layout -----------------------------------------------------------


def _parse_mistral_params(raw: dict[str, Any]) -> ModelConfig:
    """mistral-inference's MambaArgs (params.json): a mamba_ssm Mamba-2 model whose
    mixer keeps every Mamba2 default but `ngroups` (n_groups); tensors are named as
    in mamba_ssm. Transformer params.json files (no model_type "mamba") are refused."""
    model_type = raw.get("model_type")
    if model_type != "mamba":
        raise ValueError(f"model_type {model_type!r} in params.json is not supported "
                         "(only Mistral's Mamba models, model_type 'mamba')")
    if not _flag(raw, "rms_norm", True):
        raise ValueError("rms_norm false (LayerNorm blocks) is not supported")
    d_model = _size(raw, "dim", 4096)
    common = dict(
        naming="mamba_ssm",
        d_model=d_model,
        n_layer=_size(raw, "n_layers", 64),
        vocab_size=_padded_vocab(raw, 32768, 1),
        d_inner=2 * d_model,
        d_conv=4,
        eps=1e-5,
        tie_embeddings=_flag(raw, "tie_embeddings", False),
        use_bias=False,
        use_conv_bias=True,
    )
    n_groups = _size(raw, "n_groups", 1)
    if (2 * d_model) % 64:
        raise ValueError(f"'dim' {d_model}: 2 * dim must be a multiple of the Mamba2 head size 64")
    _check_groups(2 * d_model // 64, n_groups, "heads (2 * dim / 64)", "n_groups")
    return _mamba_ssm_mamba2({"ngroups": n_groups}, common)


# --- field readers: each error names the key and the value -------------------


def _size(raw: dict[str, Any], key: str, default: int) -> int:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"'{key}' must be a positive integer, got {_short(value)}")
    if value > MAX_SIZE:
        raise ValueError(f"'{key}' is {_short(value)}, over the {MAX_SIZE} limit")
    return value


def _short(value: Any) -> str:
    """repr for a message, cut short (a config value may be a huge number or list)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _padded_vocab(raw: dict[str, Any], default: int, multiple_default: int) -> int:
    """vocab_size rounded up to pad_vocab_size_multiple, as mamba_ssm pads the rows."""
    vocab = _size(raw, "vocab_size", default)
    multiple = _size(raw, "pad_vocab_size_multiple", multiple_default)
    return vocab + (multiple - vocab % multiple) % multiple


def _inner(raw: dict[str, Any], key: str, default: float, d_model: int) -> int:
    expand = raw.get(key, default)
    if isinstance(expand, bool) or not isinstance(expand, (int, float)) \
            or not jsonfile.finite(expand) or not 0 < expand * d_model <= MAX_SIZE \
            or int(expand * d_model) <= 0:
        raise ValueError(f"'{key}' must be a positive number with {key} x d_model at most "
                         f"{MAX_SIZE}, got {_short(expand)}")
    return int(expand * d_model)  # both references truncate


def _dt_rank(raw: dict[str, Any], key: str, d_model: int) -> int:
    if raw.get(key, "auto") == "auto":
        return math.ceil(d_model / 16)
    return _size(raw, key, 0)


def _number(raw: dict[str, Any], key: str, default: float) -> float:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not jsonfile.finite(value) or value <= 0:
        raise ValueError(f"'{key}' must be a positive number, got {value!r}")
    return float(value)


def _eps(raw: dict[str, Any], key: str, default: float) -> float:
    return _number(raw, key, default)


def _flag(raw: dict[str, Any], key: str, default: bool) -> bool:
    value = raw.get(key, default)
    if not isinstance(value, bool):
        raise ValueError(f"'{key}' must be true or false, got {value!r}")
    return value


def _check_groups(n_heads: int, n_groups: int, heads_key: str, groups_key: str) -> None:
    # Consecutive heads share a B/C group (doc 3), so the groups must divide the heads.
    if n_heads % n_groups:
        raise ValueError(f"{heads_key} {n_heads} is not a multiple of {groups_key} {n_groups}")


def _dt_limit(raw: dict[str, Any], key: str) -> tuple[float, float]:
    """(low, high) clamp of dt; default (0, inf); inf may be spelled as in doc 1.1."""
    value = raw.get(key, (0.0, math.inf))
    if not (isinstance(value, (list, tuple)) and len(value) == 2 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
        raise ValueError(f"'{key}' must be a pair of numbers, got {value!r}")
    try:
        low, high = float(value[0]), float(value[1])
    except OverflowError:  # an int beyond float range
        raise ValueError(f"'{key}' must be a pair of numbers in float range, got {_short(value)}") from None
    if math.isnan(low) or math.isnan(high) or low < 0 or high < low or math.isinf(low):
        raise ValueError(f"'{key}' must satisfy 0 <= low <= high, got {value!r}")
    return low, high
