"""`mambart.load()` and the `Model` it returns."""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from . import _core, rope
from .checkpoint import MappedFile, check_unchanged, read_checkpoint, release_pages
from .config import ModelConfig, load_config
from .decoder import Decoder, token_id_list
from .generate import GenerationStats, TextStream, generate_ids
from .hub import resolve, resolve_tokenizer
from .sampling import SamplingParams
from .tokenizer import Tokenizer, check_text
from .convert import WEIGHT_TYPES, convert_matrices
from .weights import TypedWeight, load_weights, weight_arrays

MAX_THREADS = 1024


class Model:
    """A Mamba language model loaded for inference.

    Text in and out: `generate()`, `stream()`. Tokens in and out:
    `tokenizer`, `logits()`, `decoder()`.
    """

    def __init__(self, core: "_core.Model", config: ModelConfig, tokenizer: Tokenizer, path: Path, *,
                 name: str, fingerprint: str, weights_fingerprint: str, mapped: Sequence[MappedFile] = (),
                 weight_bytes_per_token: int = 0, load_seconds: float = 0.0) -> None:
        self._core = core
        self.config = config
        self.tokenizer = tokenizer
        self.path = path
        self.name = name                # as given to load(): hub id or path
        self.fingerprint = fingerprint  # identifies the weights in saved states
        # The weights as run (after a dtype conversion) and their device: what
        # the bits of a state depend on, so what a PromptCache is bound to.
        self.run_fingerprint = f"{weights_fingerprint}@{core.device}"
        self.weight_bytes_per_token = weight_bytes_per_token  # bytes a decode step reads (batch 1)
        self.load_seconds = load_seconds
        self._mapped = list(mapped)     # files the CPU reads the weights from, in place

    def check_files(self) -> None:
        """Raise ValueError if a checkpoint file the weights are mapped from has
        changed since load (a truncated file would kill the process on access).
        Called before each generation and `logits()`; a change during one is not seen."""
        for m in self._mapped:
            m.check()

    @property
    def device(self) -> str:
        return self._core.device

    @property
    def threads(self) -> int:
        return self._core.threads

    @property
    def vocab_limit(self) -> int:
        """Ids that can be sampled: the tokenizer's, never the head's padding rows."""
        return max(1, min(self.tokenizer.vocab_size, self.config.vocab_size))

    def decoder(self, batch: int = 1) -> Decoder:
        """A fresh recurrent state for `batch` sequences (prefill / step / sample)."""
        return Decoder(self, batch)

    def load_state(self, state: bytes | str | os.PathLike) -> Decoder:
        """A decoder restored from `Decoder.save_state()` bytes or a file of them."""
        from .state import load, load_file

        if isinstance(state, (bytes, bytearray, memoryview)):
            return load(self, bytes(state))
        # open() takes an int (a bool too) as a file descriptor, and closes it after.
        if not isinstance(state, (str, os.PathLike)):
            raise TypeError(f"state must be a Decoder, bytes or a path, got {type(state).__name__}")
        return load_file(self, state)

    def _decoder_for(self, state, batch: int) -> Decoder:
        if state is None:
            return self.decoder(batch)
        decoder = state if isinstance(state, Decoder) else self.load_state(state)
        if decoder.model is not self and decoder.model.fingerprint != self.fingerprint:
            raise ValueError("the decoder belongs to another model")
        if decoder.batch != batch:
            raise ValueError(f"the state holds {decoder.batch} sequences, {batch} prompts given")
        return decoder

    def logits(self, token_ids: Sequence[int]) -> np.ndarray:
        """Logits of every position, shape (len(token_ids), vocab_size), float32.

        On a CUDA device, CuPy token ids give a CuPy array of logits that stay in
        device memory (no copy); anything else gives numpy.
        """
        on_device = self.device != "cpu" and hasattr(token_ids, "__cuda_array_interface__")
        ids = _as_id_list(token_ids)
        self.check_files()
        if on_device:
            import cupy

            return cupy.asarray(self.decoder(1).prefill_logits_device(ids))
        return self.decoder(1).prefill([ids], all_logits=True)

    def encode(self, prompt: str, allow_empty: bool = False) -> list[int]:
        check_text(prompt, "prompt")
        if prompt == "":
            if allow_empty:
                return []
            raise ValueError("prompt is empty")
        ids = self.tokenizer.encode(prompt)
        if not ids:
            raise ValueError("prompt encodes to no tokens")
        return ids

    def stream(self, prompt: str, max_new_tokens: int = 128, *, temperature: float = 1.0, top_k: int = 0,
               top_p: float = 1.0, min_p: float = 0.0, repetition_penalty: float = 1.0,
               seed: int | None = None, stop: Sequence[str] = (), state=None,
               progress: Callable[[int, int], object] | None = None, presence_penalty: float = 0.0,
               frequency_penalty: float = 0.0, cache=None) -> TextStream:
        """Generate from `prompt`, yielding text pieces as they become final.

        Sampling follows `SamplingParams` (every filter off by default;
        temperature 0 is greedy). `state` continues a saved state (bytes, a
        file, or a Decoder, which is updated in place); the prompt may then
        be empty. The returned iterator's `.stats` holds token counts and
        timings, and `.decoder` the state, once it has run. progress(done,
        total) is called between chunks of the prompt's prefill. `cache`, a
        `mambart.PromptCache`, starts from the longest cached prefix of the
        prompt and keeps the states this prefill reaches (not with `state`).
        """
        params = SamplingParams(temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p,
                                repetition_penalty=repetition_penalty, seed=seed,
                                presence_penalty=presence_penalty, frequency_penalty=frequency_penalty)
        _check_max_new_tokens(max_new_tokens)
        stop = _check_stop(stop)
        _check_cache(cache, state)
        ids = self.encode(prompt, allow_empty=state is not None)
        if progress is not None and not callable(progress):
            raise TypeError(f"progress must be callable or None, got {type(progress).__name__}")
        self.check_files()
        return TextStream(self._decoder_for(state, 1), self.tokenizer, ids, params, max_new_tokens, stop, progress,
                          cache)

    def generate(self, prompt: str | Sequence[str], max_new_tokens: int = 128, *, temperature: float = 1.0,
                 top_k: int = 0, top_p: float = 1.0, min_p: float = 0.0, repetition_penalty: float = 1.0,
                 seed: int | None = None, stop: Sequence[str] = (), state=None, presence_penalty: float = 0.0,
                 frequency_penalty: float = 0.0, cache=None) -> str | list[str]:
        """Generated text for one prompt (a str), or for a list of prompts run as one batch.

        Row i of a batch samples with seed + i, so row 0 equals a single run
        with the same seed. `state` and `cache` as for `stream()`.
        """
        kwargs = dict(temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p,
                      repetition_penalty=repetition_penalty, seed=seed, stop=stop, state=state,
                      presence_penalty=presence_penalty, frequency_penalty=frequency_penalty, cache=cache)
        if isinstance(prompt, str):
            return "".join(self.stream(prompt, max_new_tokens, **kwargs))
        if not isinstance(prompt, (list, tuple)) or not all(isinstance(p, str) for p in prompt):
            raise TypeError(f"prompt must be a str or a list of str, got {type(prompt).__name__}")
        return self._generate_batch(list(prompt), max_new_tokens, **kwargs)

    def _generate_batch(self, prompts: list[str], max_new_tokens: int, *, stop: Sequence[str] = (), state=None,
                        cache=None, **sampling) -> list[str]:
        if not prompts:
            raise ValueError("no prompts given")
        params = SamplingParams(**sampling)
        _check_max_new_tokens(max_new_tokens)
        stop = _check_stop(stop)
        _check_cache(cache, state)
        ids = [self.encode(p, allow_empty=state is not None) for p in prompts]
        self.check_files()
        decoder = self._decoder_for(state, len(prompts))
        eos = self.tokenizer.eos_token_id
        out: list[list[int]] = [[] for _ in prompts]
        done = [False] * len(prompts)
        stats = GenerationStats()
        steps = generate_ids(decoder, ids, params, max_new_tokens, stats, cache=cache)
        try:
            for tokens in steps:
                for row, token in enumerate(tokens.tolist()):
                    if done[row]:
                        continue
                    if eos is not None and token == eos:
                        done[row] = True
                        continue
                    out[row].append(token)
                    if stop and any(s in self.tokenizer.decode(out[row][-64:]) for s in stop):
                        done[row] = True
                if all(done):
                    break
        finally:
            steps.close()  # frees the decoder for other threads now
        texts = [self.tokenizer.decode(row) for row in out]
        return [_cut_at_stop(t, stop) for t in texts]


def _cut_at_stop(text: str, stop: Sequence[str]) -> str:
    cuts = [i for i in (text.find(s) for s in stop) if i >= 0]
    return text[: min(cuts)] if cuts else text


def _as_id_list(token_ids: Sequence[int]) -> list[int]:
    ids = token_id_list(token_ids)  # a CuPy array too: ids are few, copied
    if not ids:
        raise ValueError("token_ids must not be empty")
    return ids


def _check_max_new_tokens(n: int) -> None:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"max_new_tokens must be an int >= 0, got {n!r}")


def _check_cache(cache, state) -> None:
    from .cache import PromptCache

    if cache is not None and not isinstance(cache, PromptCache):
        raise TypeError(f"cache must be a mambart.PromptCache or None, got {type(cache).__name__}")
    if cache is not None and state is not None:
        raise ValueError("cache= starts from a cached prefix and state= from a saved state: give one")


def _check_stop(stop: Sequence[str]) -> list[str]:
    if isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, (list, tuple)):
        raise TypeError(f"stop must be a str or a list of str, got {type(stop).__name__}")
    for s in stop:
        check_text(s, "each stop string")
        if s == "":
            raise ValueError("stop strings must not be empty")
    return list(stop)


def load(model: str | os.PathLike, device: str = "cpu", threads: int | None = None, *,
         dtype: str | None = None, revision: str | None = None, tokenizer: str | None = None) -> Model:
    """Load a Mamba model from a local directory or a Hugging Face hub id.

    device: "cpu", "cuda" or "cuda:N" (a build with CUDA and a GPU; else
    ValueError saying which is missing). threads: worker threads (default: the physical cores).
    dtype: the type of the big matrices (the Mamba, attention, MLP and expert
    projections, embedding / lm_head): "f32", "f16", "bf16", "q8" (int8, blocks of 32
    with a scale) or "q4" (4-bit, blocks of 32 with a scale and a minimum),
    converted once here; None keeps them as stored. Everything else is f32.
    tokenizer: a directory, tokenizer.json path or hub id; default: the
    model's own, else EleutherAI/gpt-neox-20b (original mamba_ssm repos ship
    none). Only the files needed are downloaded; with HF_HUB_OFFLINE=1 the
    local cache is used.
    """
    cuda_device = _cuda_device(device)
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)
                                or not 1 <= threads <= MAX_THREADS):
        raise ValueError(f"threads must be an int in [1, {MAX_THREADS}] or None, got {threads!r}")
    if dtype is not None and dtype not in WEIGHT_TYPES:
        raise ValueError(f"dtype must be one of {', '.join(WEIGHT_TYPES)} or None, got {dtype!r}")  # before any I/O
    start = time.perf_counter()
    path = resolve(str(model), revision=revision)
    config = load_config(path)
    tok = Tokenizer.from_dir(resolve_tokenizer(path, tokenizer))
    weights = load_weights(read_checkpoint(path), config)
    check_unchanged(weight_arrays(weights))  # the reads below would die of SIGBUS on a truncated file
    fingerprint = _fingerprint(config, weights)  # of the checkpoint: a state outlives a change of dtype
    if dtype is not None:
        weights = convert_matrices(weights, dtype)
    mapped = check_unchanged(weight_arrays(weights))
    weights_fingerprint = _fingerprint(config, weights) if dtype is not None else fingerprint
    core = _core.Model(_core_config(config), {k: _core_weight(w) for k, w in weights.items()}, threads or 0,
                       cuda_device)
    if cuda_device >= 0:
        # The device holds its own copy now.
        release_pages(weight_arrays(weights))
        mapped = []
    return Model(core, config, tok, path, name=str(model), fingerprint=fingerprint,
                 weights_fingerprint=weights_fingerprint, mapped=mapped,
                 weight_bytes_per_token=core.step_bytes, load_seconds=time.perf_counter() - start)


def _cuda_device(device: str) -> int:
    """-1 for "cpu", N for "cuda" / "cuda:N"; the C++ backend reports a missing GPU or driver."""
    if device == "cpu":
        return -1
    if isinstance(device, str) and (device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit())):
        if not _core.cuda_built():
            raise ValueError("device 'cuda': mambart was built without CUDA (rebuild with -DMAMBART_CUDA=ON)")
        _preload_cublas()
        return int(device[5:]) if ":" in device else 0
    raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")


def _preload_cublas() -> None:
    """Loads cuBLAS from the nvidia-cublas wheel ([cuda] extra) when present, so that
    the backend's dlopen("libcublas.so.13") finds it; otherwise the system's is used."""
    import ctypes
    import glob
    import sys

    for base in sys.path:
        for lib in sorted(glob.glob(os.path.join(base, "nvidia", "cu13", "lib", "libcublas.so.13")) +
                          glob.glob(os.path.join(base, "nvidia", "cublas", "lib", "libcublas.so.1[23]"))):
            try:
                ctypes.CDLL(os.path.join(os.path.dirname(lib), os.path.basename(lib).replace("cublas", "cublasLt")),
                            mode=ctypes.RTLD_GLOBAL)
                ctypes.CDLL(lib, mode=ctypes.RTLD_GLOBAL)
                return
            except OSError:
                continue


def _core_weight(w: np.ndarray | TypedWeight):
    return _core.Tensor(w.data, w.dtype, list(w.shape)) if isinstance(w, TypedWeight) else w


def _fingerprint(config: ModelConfig, weights: dict[str, np.ndarray]) -> str:
    """Identifies a model cheaply: its sizes, and the first and last values of
    every tensor (two pages each: spreading samples over a tensor would page
    most of a mapped checkpoint in just to name it)."""
    h = hashlib.sha256(json.dumps(config.to_dict(), sort_keys=True, default=str).encode())
    for name in sorted(weights):
        w = weights[name]
        flat = (w.data if isinstance(w, TypedWeight) else w).reshape(-1)
        h.update(name.encode())
        h.update(flat[:64].tobytes())
        h.update(flat[-64:].tobytes())
    return h.hexdigest()[:32]


def _core_config(config: ModelConfig) -> "_core.ModelConfig":
    c = _core.ModelConfig()
    for name in ("d_model", "n_layer", "vocab_size", "d_inner", "d_state", "d_conv", "eps", "tie_embeddings"):
        setattr(c, name, getattr(config, name))
    if config.family == "mamba2" or (config.family == "hybrid" and not config.dt_rank):
        c.family = _core.Family.MAMBA2  # a hybrid's Mamba layers are Mamba-2, or (dt_rank, Jamba) Mamba-1
        for name in ("n_heads", "head_dim", "n_groups", "dt_min", "dt_max"):
            setattr(c, name, getattr(config, name))
    else:
        c.dt_rank = config.dt_rank
        c.dt_bc_norm, c.dt_bc_eps = config.dt_bc_norm, config.dt_bc_eps
    if config.family == "hybrid":
        for name in ("layers", "attn_heads", "kv_heads", "attn_head_dim", "attn_scale", "rope_dim",
                     "mlp_gated", "mlp_inner", "n_experts", "top_k", "expert_inner", "shared_inner",
                     "router_sigmoid", "norm_topk", "n_group", "topk_group", "routed_scale", "expert_latent",
                     "embedding_multiplier",
                     "residual_multiplier", "logits_scaling",
                     "ssm_out_multiplier", "attn_out_multiplier", "mlp_gate_multiplier", "mlp_down_multiplier",
                     "norm_before_gate", "shared_blocks", "adapter_rank", "attention_adapters", "mlp_gelu",
                     "gated_norm_eps"):
            setattr(c, name, getattr(config, name))
        c.in_proj_multipliers = list(config.in_proj_multipliers)
        if config.rope_dim:
            inv_freq, c.rope_scale = rope.frequencies(config.rope_dim, config.rope_theta, config.rope_scaling)
            c.rope_inv_freq = inv_freq.tolist()
    # c.chunk_size stays 64, CUDA's prefill chunk (the CPU runs token by token).
    return c
