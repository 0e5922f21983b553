"""Tiny random Mamba checkpoints made at test time with transformers.

torch and transformers are test-only oracles: imported here, never by mambart.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import MambaConfig, MambaForCausalLM

CORPUS = [
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)\n",
    "The quick brown fox jumps over the lazy dog. Café déjà vu, naïve façade.",
    "Mamba is a state space model. 状態空間モデル。 Ünïcödé 🐍🐍 emoji ✨ text.",
    "import numpy as np\nx = np.zeros((3, 4), dtype=np.float32)\nprint(x.shape)\n",
] * 20


def train_tokenizer(out_dir: Path, vocab_size: int = 300) -> Tokenizer:
    """A byte-level BPE tokenizer with <|endoftext|> as id 0, saved as tokenizer.json."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(CORPUS, trainer)
    out_dir.mkdir(parents=True, exist_ok=True)
    tok.save(str(out_dir / "tokenizer.json"))
    return tok


def make_mamba(out_dir: Path, *, hidden_size: int = 32, num_hidden_layers: int = 2, state_size: int = 8,
               expand: int = 2, time_step_rank: int | str = "auto", conv_kernel: int = 4, vocab_size: int = 320,
               tie_word_embeddings: bool = True, use_bias: bool = False, perturb: bool = True,
               dtype: torch.dtype = torch.float32, seed: int = 0,
               mixer_rms_eps: float | None = None) -> MambaForCausalLM:
    """Save a random MambaForCausalLM (and a tokenizer) to out_dir; return it in f32.

    With mixer_rms_eps, a FalconMambaForCausalLM instead (the Mamba-1 block
    with weightless RMSNorms of that epsilon on dt, B and C).

    The model starts from its own initialisation. With perturb, the
    parameters that initialise to constants (norm weights, D, biases) get
    noise too, so that a mistake in how they are used changes the output.
    The returned model holds exactly the saved values (after rounding to
    `dtype`), in float32, in eval mode.
    """
    torch.manual_seed(seed)
    kwargs = dict(vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=num_hidden_layers,
                  state_size=state_size, expand=expand, time_step_rank=time_step_rank, conv_kernel=conv_kernel,
                  tie_word_embeddings=tie_word_embeddings, use_bias=use_bias, pad_token_id=0, bos_token_id=0,
                  eos_token_id=0)
    if mixer_rms_eps is None:
        model = MambaForCausalLM(MambaConfig(**kwargs)).eval()
    else:
        from transformers import FalconMambaConfig, FalconMambaForCausalLM

        model = FalconMambaForCausalLM(FalconMambaConfig(mixer_rms_eps=mixer_rms_eps, **kwargs)).eval()
    if perturb:
        _perturb(model)
    model = model.to(dtype)
    model.save_pretrained(out_dir)
    if not (out_dir / "tokenizer.json").exists():
        train_tokenizer(out_dir, vocab_size=min(vocab_size, 300))
    return model.float().eval()


def _perturb(model) -> None:
    """Noise on the parameters that initialise to constants (norm weights, D,
    biases), so that a mistake in how they are used changes the output."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("norm.weight", "norm_f.weight", ".D")):
                p.add_(0.2 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))


def rel_err(got, ref) -> float:
    """max |got - ref| / max |ref|."""
    return float(np.abs(np.asarray(got, np.float64) - ref).max() / np.abs(ref).max())


def random_ids(model, n: int, seed: int) -> list[int]:
    return np.random.default_rng(seed).integers(0, model.config.vocab_size, n).tolist()


def stepwise_logits(model, ids: list[int], prefix: int) -> np.ndarray:
    """Logits after prefilling ids[:prefix], then after each single step over the rest."""
    dec = model.decoder(1)
    dec.prefill([ids[:prefix]])
    rows = [dec.logits()[0]]
    for t in ids[prefix:]:
        dec.step([t])
        rows.append(dec.logits()[0])
    return np.stack(rows)


def greedy_both(model, hf, ids: list[int], n: int = 32) -> tuple[list[int], list[int]]:
    """n greedy tokens from mambart's decoder and from transformers' generate."""
    import mambart

    # mambart never samples the head's rows past the tokenizer's vocabulary; tell transformers the same.
    padding_rows = list(range(model.vocab_limit, model.config.vocab_size))
    with torch.no_grad():
        out = hf.generate(torch.tensor([ids]), max_new_tokens=n, do_sample=False, eos_token_id=None,
                          pad_token_id=0, min_new_tokens=n, suppress_tokens=padding_rows or None)
    dec = model.decoder(1)
    dec.prefill([ids])
    dec.set_sampling(mambart.SamplingParams(temperature=0))
    got = []
    for _ in range(n):
        (tok,) = dec.sample()
        got.append(int(tok))
        dec.step([tok])
    return got, out[0, len(ids):].tolist()


def hf_logits(model: MambaForCausalLM, ids: list[int]) -> "torch.Tensor":
    """transformers' full-forward logits, (len(ids), V), float64 numpy."""
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].double().numpy()


def set_model_type(path: Path, model_type: str) -> None:
    cfg = json.loads((path / "config.json").read_text())
    cfg["model_type"] = model_type
    (path / "config.json").write_text(json.dumps(cfg))


def make_mamba2(out_dir: Path, *, hidden_size: int = 64, num_hidden_layers: int = 2, head_dim: int = 32,
                state_size: int = 64, n_groups: int = 1, expand: int = 2, conv_kernel: int = 4,
                vocab_size: int = 320, tie_word_embeddings: bool = True, chunk_size: int = 256,
                dtype: torch.dtype = torch.float32, seed: int = 0):
    """Save a random Mamba2ForCausalLM (and a tokenizer) to out_dir; return it in f32 (as make_mamba)."""
    from transformers import Mamba2Config, Mamba2ForCausalLM

    torch.manual_seed(seed)
    config = Mamba2Config(vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=num_hidden_layers,
                          num_heads=expand * hidden_size // head_dim, head_dim=head_dim, state_size=state_size,
                          n_groups=n_groups, expand=expand, conv_kernel=conv_kernel, chunk_size=chunk_size,
                          tie_word_embeddings=tie_word_embeddings, pad_token_id=0, bos_token_id=0, eos_token_id=0)
    model = Mamba2ForCausalLM(config).eval()
    _perturb(model)
    model = model.to(dtype)
    model.save_pretrained(out_dir)
    if not (out_dir / "tokenizer.json").exists():
        train_tokenizer(out_dir, vocab_size=min(vocab_size, 300))
    return model.float().eval()


def save_as_mamba_ssm(hf_model, out_dir: Path, *, shards: int = 1, pad_vocab_size_multiple: int = 8,
                      vocab_size: int | None = None) -> None:
    """Write hf_model the way mamba_ssm publishes checkpoints: its config.json and
    torch.save'd pytorch_model.bin (or shards with an index), original tensor
    names, and a tied lm_head sharing the embedding's storage. vocab_size is
    the unpadded size written to the config (default: the model's rows)."""
    cfg = hf_model.config
    mamba2 = cfg.model_type == "mamba2"
    tied = bool(cfg.tie_word_embeddings)
    if mamba2:
        ssm_cfg = {"layer": "Mamba2", "d_state": cfg.state_size, "d_conv": cfg.conv_kernel, "expand": cfg.expand,
                   "headdim": cfg.head_dim, "ngroups": cfg.n_groups}
    else:
        ssm_cfg = {"d_state": cfg.state_size, "d_conv": cfg.conv_kernel, "expand": cfg.expand,
                   "dt_rank": cfg.time_step_rank}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.json").write_text(json.dumps({
        "d_model": cfg.hidden_size, "d_intermediate": 0, "n_layer": cfg.num_hidden_layers,
        "vocab_size": vocab_size or cfg.vocab_size, "ssm_cfg": ssm_cfg, "attn_layer_idx": [], "attn_cfg": {},
        "rms_norm": True, "residual_in_fp32": True, "fused_add_norm": True,
        "pad_vocab_size_multiple": pad_vocab_size_multiple, "tie_embeddings": tied,
    }))
    state = {}
    for name, tensor in hf_model.state_dict().items():
        state[name.replace("backbone.embeddings.", "backbone.embedding.")] = tensor
    if tied:
        state["lm_head.weight"] = state["backbone.embedding.weight"]  # one storage, two names
    if shards == 1:
        torch.save(state, out_dir / "pytorch_model.bin")
        return
    names = list(state)
    weight_map = {}
    for i in range(shards):
        part = names[i::shards]
        fname = f"pytorch_model-{i + 1:05d}-of-{shards:05d}.bin"
        torch.save({n: state[n] for n in part}, out_dir / fname)
        weight_map.update({n: fname for n in part})
    (out_dir / "pytorch_model.bin.index.json").write_text(
        json.dumps({"metadata": {"total_size": 0}, "weight_map": weight_map}))


def save_as_mistral(hf_model, out_dir: Path, *, prefix: str = "", tokenizer_from: Path | None = None) -> None:
    """Write a Mamba2ForCausalLM the way Mistral publishes Codestral Mamba: params.json
    (mistral-inference's MambaArgs) and consolidated.safetensors with mamba_ssm names,
    each under `prefix`. The model must have the Mamba2 mixer's defaults (head_dim 64,
    state_size 128, expand 2, conv_kernel 4), which params.json cannot express."""
    from safetensors.torch import save_file

    cfg = hf_model.config
    assert (cfg.head_dim, cfg.state_size, cfg.expand, cfg.conv_kernel) == (64, 128, 2, 4)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "params.json").write_text(json.dumps({
        "dim": cfg.hidden_size, "n_layers": cfg.num_hidden_layers, "vocab_size": cfg.vocab_size,
        "n_groups": cfg.n_groups, "rms_norm": True, "residual_in_fp32": True, "fused_add_norm": True,
        "pad_vocab_size_multiple": 1, "tie_embeddings": bool(cfg.tie_word_embeddings), "model_type": "mamba",
    }))
    state = {prefix + name.replace("backbone.embeddings.", "backbone.embedding."): t.contiguous().clone()
             for name, t in hf_model.state_dict().items()}
    if cfg.tie_word_embeddings:
        state.pop(prefix + "lm_head.weight", None)
    save_file(state, str(out_dir / "consolidated.safetensors"))
    if tokenizer_from is not None:
        (out_dir / "tokenizer.json").write_bytes((tokenizer_from / "tokenizer.json").read_bytes())


def make_granite_hybrid(out_dir: Path, *, hidden_size: int = 64, layer_types=("mamba", "attention", "mamba"),
                        num_attention_heads: int = 4, num_key_value_heads: int = 2, shared_intermediate_size: int = 48,
                        mamba_n_heads: int = 4, mamba_d_state: int = 16, mamba_n_groups: int = 2,
                        position_embedding_type: str | None = "rope", rope_theta: float = 10000.0,
                        partial_rotary_factor: float = 1.0, embedding_multiplier: float = 1.0,
                        attention_multiplier: float | None = None, residual_multiplier: float = 1.0,
                        logits_scaling: float = 1.0, tie_word_embeddings: bool = False, vocab_size: int = 320,
                        rope_parameters: dict | None = None, num_local_experts: int = 0, num_experts_per_tok: int = 2,
                        intermediate_size: int = 32, dtype: torch.dtype = torch.float32, seed: int = 0):
    """Save a random GraniteMoeHybridForCausalLM (Granite-4.0-H; dense unless num_local_experts) and a
    tokenizer to out_dir; return it in f32. attention_multiplier defaults to 1 / sqrt(head_dim);
    rope_parameters, when given, replaces those rope_theta and partial_rotary_factor make."""
    from transformers import GraniteMoeHybridConfig, GraniteMoeHybridForCausalLM

    torch.manual_seed(seed)
    head_dim = hidden_size // num_attention_heads
    rope = {"rope_type": "default", "rope_theta": rope_theta}
    if partial_rotary_factor != 1.0:
        rope["partial_rotary_factor"] = partial_rotary_factor
    rope = rope_parameters or rope
    config = GraniteMoeHybridConfig(
        vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=len(layer_types),
        layer_types=list(layer_types), num_attention_heads=num_attention_heads,
        num_key_value_heads=num_key_value_heads, shared_intermediate_size=shared_intermediate_size,
        num_local_experts=num_local_experts, num_experts_per_tok=num_experts_per_tok,
        intermediate_size=intermediate_size, mamba_n_heads=mamba_n_heads, mamba_d_head=2 * hidden_size // mamba_n_heads,
        mamba_d_state=mamba_d_state, mamba_n_groups=mamba_n_groups, mamba_expand=2,
        position_embedding_type=position_embedding_type, rope_parameters=rope,
        embedding_multiplier=embedding_multiplier, residual_multiplier=residual_multiplier,
        attention_multiplier=head_dim ** -0.5 if attention_multiplier is None else attention_multiplier,
        logits_scaling=logits_scaling, tie_word_embeddings=tie_word_embeddings, pad_token_id=0, bos_token_id=0,
        eos_token_id=0)
    return _save_hybrid(GraniteMoeHybridForCausalLM(config).eval(), out_dir, dtype, vocab_size)


def _save_hybrid(model, out_dir: Path, dtype: torch.dtype, vocab_size: int):
    """Widen the attention projections, perturb the constants, save `model` in `dtype` with a
    tokenizer, and return it reloaded in f32."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            # The initialisation's std 0.02 leaves attention nearly uniform and routers' scores
            # nearly tied, so that a wrong choice of experts would hardly show: widen them.
            if name.endswith(("q_proj.weight", "k_proj.weight", "router.weight", "gate.weight")):
                p.normal_(0, 0.3)
        for name, b in model.named_buffers():
            if name.endswith("e_score_correction_bias"):  # zeros at init: a selection bias that matters
                b.normal_(0, 0.1)
    _perturb(model)
    model.to(dtype).save_pretrained(out_dir)
    if not (out_dir / "tokenizer.json").exists():
        train_tokenizer(out_dir, vocab_size=min(vocab_size, 300))
    # Reloaded in f32 rather than cast back: a cast would keep the rotary frequencies rounded to `dtype`,
    # which a loaded checkpoint recomputes (they are not saved).
    return type(model).from_pretrained(out_dir, dtype=torch.float32).eval()


def make_bamba(out_dir: Path, *, hidden_size: int = 64, attn_layer_indices=(1,), num_hidden_layers: int = 3,
               num_attention_heads: int = 4, num_key_value_heads: int = 2, intermediate_size: int = 48,
               mamba_n_heads: int = 4, mamba_d_state: int = 16, mamba_n_groups: int = 2, mamba_conv_bias: bool = True,
               mamba_proj_bias: bool = False, mamba_chunk_size: int = 256, rope_parameters: dict | None = None,
               tie_word_embeddings: bool = False, vocab_size: int = 320, dtype: torch.dtype = torch.float32,
               seed: int = 0):
    """Save a random BambaForCausalLM and a tokenizer to out_dir; return it in f32."""
    from transformers import BambaConfig, BambaForCausalLM

    torch.manual_seed(seed)
    config = BambaConfig(
        vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=num_hidden_layers,
        attn_layer_indices=list(attn_layer_indices), num_attention_heads=num_attention_heads,
        num_key_value_heads=num_key_value_heads, intermediate_size=intermediate_size, mamba_n_heads=mamba_n_heads,
        mamba_d_state=mamba_d_state, mamba_n_groups=mamba_n_groups, mamba_conv_bias=mamba_conv_bias,
        mamba_proj_bias=mamba_proj_bias, mamba_chunk_size=mamba_chunk_size, rope_parameters=rope_parameters,
        tie_word_embeddings=tie_word_embeddings, pad_token_id=0, bos_token_id=0, eos_token_id=0)
    return _save_hybrid(BambaForCausalLM(config).eval(), out_dir, dtype, vocab_size)


def make_falcon_h1(out_dir: Path, *, hidden_size: int = 64, num_hidden_layers: int = 3, num_attention_heads: int = 4,
                   num_key_value_heads: int = 2, head_dim: int | None = None, intermediate_size: int = 80,
                   mamba_n_heads: int = 4, mamba_d_state: int = 16, mamba_n_groups: int = 2,
                   mamba_rms_norm: bool = True, mamba_norm_before_gate: bool = True, rope_theta: float = 10000.0,
                   rope_parameters: dict | None = None, multipliers: dict | None = None,
                   tie_word_embeddings: bool = False, vocab_size: int = 320, dtype: torch.dtype = torch.float32,
                   seed: int = 0):
    """Save a random FalconH1ForCausalLM and a tokenizer to out_dir; return it in f32.
    `multipliers`: FalconH1Config's µP keys (embedding_multiplier, ssm_multipliers, ...)."""
    from transformers import FalconH1Config, FalconH1ForCausalLM

    torch.manual_seed(seed)
    extra = {"head_dim": head_dim} if head_dim is not None else {}
    config = FalconH1Config(
        vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads, num_key_value_heads=num_key_value_heads,
        intermediate_size=intermediate_size, mamba_d_ssm=2 * hidden_size, mamba_expand=2,
        mamba_n_heads=mamba_n_heads, mamba_d_state=mamba_d_state, mamba_n_groups=mamba_n_groups,
        mamba_rms_norm=mamba_rms_norm, mamba_norm_before_gate=mamba_norm_before_gate,
        rope_parameters=rope_parameters or {"rope_type": "default", "rope_theta": rope_theta},
        tie_word_embeddings=tie_word_embeddings,
        pad_token_id=0, bos_token_id=0, eos_token_id=0, **(multipliers or {}), **extra)
    return _save_hybrid(FalconH1ForCausalLM(config).eval(), out_dir, dtype, vocab_size)


def make_nemotron_h(out_dir: Path, *, hidden_size: int = 64, layers: str = "M*E-ME", num_attention_heads: int = 4,
                    num_key_value_heads: int = 2, head_dim: int = 16, intermediate_size: int = 48,
                    mamba_num_heads: int = 4, mamba_head_dim: int = 32, ssm_state_size: int = 16, n_groups: int = 2,
                    n_routed_experts: int = 8, num_experts_per_tok: int = 2, moe_intermediate_size: int = 24,
                    moe_shared_expert_intermediate_size: int = 40, n_group: int = 1, topk_group: int = 1,
                    norm_topk_prob: bool = True, routed_scaling_factor: float = 1.0, chunk_size: int = 128,
                    moe_latent_size: int | None = None,
                    time_step_min: float = 0.001, layer_norm_epsilon: float = 1e-5, tie_word_embeddings: bool = False,
                    vocab_size: int = 320, dtype: torch.dtype = torch.float32, seed: int = 0):
    """Save a random NemotronHForCausalLM and a tokenizer to out_dir; return it in f32. `layers`
    is hybrid_override_pattern's notation: M Mamba-2, * attention, - MLP, E experts."""
    from transformers import NemotronHConfig, NemotronHForCausalLM

    torch.manual_seed(seed)
    config = NemotronHConfig(
        vocab_size=vocab_size, hidden_size=hidden_size, hybrid_override_pattern=layers,
        num_attention_heads=num_attention_heads, num_key_value_heads=num_key_value_heads, head_dim=head_dim,
        intermediate_size=intermediate_size, mamba_num_heads=mamba_num_heads, mamba_head_dim=mamba_head_dim,
        ssm_state_size=ssm_state_size, n_groups=n_groups, n_routed_experts=n_routed_experts,
        num_experts_per_tok=num_experts_per_tok, moe_intermediate_size=moe_intermediate_size,
        moe_shared_expert_intermediate_size=moe_shared_expert_intermediate_size, n_group=n_group,
        topk_group=topk_group, norm_topk_prob=norm_topk_prob, routed_scaling_factor=routed_scaling_factor,
        moe_latent_size=moe_latent_size, chunk_size=chunk_size, time_step_min=time_step_min,
        layer_norm_epsilon=layer_norm_epsilon, tie_word_embeddings=tie_word_embeddings, pad_token_id=0, bos_token_id=0, eos_token_id=0)
    return _save_hybrid(NemotronHForCausalLM(config).eval(), out_dir, dtype, vocab_size)


HYBRID_DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16}


def load_pair(shapes: dict, param: tuple[str, str], tmp_path_factory):
    """(mambart model, transformers model) of shape `param[0]` of `shapes` (name -> (maker, kwargs))
    saved in dtype `param[1]`, as the hybrids' module-scoped `pair` fixtures make them."""
    import mambart

    shape, dtype = param
    make, kwargs = shapes[shape]
    path = tmp_path_factory.mktemp(f"{shape}-{dtype}")
    hf = make(path, dtype=HYBRID_DTYPES[dtype], seed=len(shape), **kwargs)
    return mambart.load(path, threads=2), hf


def make_zamba2(out_dir: Path, *, hidden_size: int = 64, layers_block_type=("mamba", "hybrid", "mamba", "hybrid"),
                num_attention_heads: int = 4, num_key_value_heads: int | None = None, num_mem_blocks: int = 1,
                use_shared_attention_adapter: bool = False, adapter_rank: int = 8, intermediate_size: int = 96,
                n_mamba_heads: int = 4, mamba_d_state: int = 16, mamba_ngroups: int = 2, use_mem_rope: bool = False,
                rope_parameters: dict | None = None,
                hidden_act: str = "gelu", rms_norm_eps: float = 1e-5, tie_word_embeddings: bool = True,
                adapter_std: float = 0.2, vocab_size: int = 320, dtype: torch.dtype = torch.float32, seed: int = 0):
    """Save a random Zamba2ForCausalLM and a tokenizer to out_dir; return it in f32. The adapters get
    weights of std adapter_std (the initialisation's 0.02 leaves them nearly silent), so that a mistake
    in how they are used shows."""
    from transformers import Zamba2Config, Zamba2ForCausalLM

    torch.manual_seed(seed)
    config = Zamba2Config(
        vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=len(layers_block_type),
        layers_block_type=list(layers_block_type), num_attention_heads=num_attention_heads,
        num_key_value_heads=num_key_value_heads, num_mem_blocks=num_mem_blocks,
        use_shared_attention_adapter=use_shared_attention_adapter, adapter_rank=adapter_rank,
        intermediate_size=intermediate_size, n_mamba_heads=n_mamba_heads, mamba_d_state=mamba_d_state,
        mamba_ngroups=mamba_ngroups, use_mem_rope=use_mem_rope, rope_parameters=rope_parameters,
        hidden_act=hidden_act, rms_norm_eps=rms_norm_eps,
        tie_word_embeddings=tie_word_embeddings, pad_token_id=0, bos_token_id=0, eos_token_id=0)
    model = Zamba2ForCausalLM(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "adapter_list" in name:
                p.normal_(0, adapter_std)
    return _save_hybrid(model, out_dir, dtype, vocab_size)


def make_jamba(out_dir: Path, *, hidden_size: int = 64, num_hidden_layers: int = 6, num_attention_heads: int = 4,
               num_key_value_heads: int = 2, intermediate_size: int = 48, num_experts: int = 4,
               num_experts_per_tok: int = 2, attn_layer_period: int = 3, attn_layer_offset: int = 1,
               expert_layer_period: int = 2, expert_layer_offset: int = 0, mamba_d_state: int = 16,
               mamba_dt_rank: int | str = "auto", rms_norm_eps: float = 1e-6, tie_word_embeddings: bool = False,
               vocab_size: int = 320, dtype: torch.dtype = torch.float32, seed: int = 0):
    """Save a random JambaForCausalLM and a tokenizer to out_dir; return it in f32."""
    from transformers import JambaConfig, JambaForCausalLM

    torch.manual_seed(seed)
    config = JambaConfig(
        vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads, num_key_value_heads=num_key_value_heads,
        intermediate_size=intermediate_size, num_experts=num_experts, num_experts_per_tok=num_experts_per_tok,
        attn_layer_period=attn_layer_period, attn_layer_offset=attn_layer_offset,
        expert_layer_period=expert_layer_period, expert_layer_offset=expert_layer_offset,
        mamba_d_state=mamba_d_state, mamba_dt_rank=mamba_dt_rank, rms_norm_eps=rms_norm_eps,
        tie_word_embeddings=tie_word_embeddings, pad_token_id=0, bos_token_id=0, eos_token_id=0)
    return _save_hybrid(JambaForCausalLM(config).eval(), out_dir, dtype, vocab_size)
