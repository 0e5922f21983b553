"""Train mambart's built-in model: a small Mamba-1 that completes Python code.

Recipe
------
* Corpus: the ``*.py`` files of the running Python's standard library
  (``sysconfig.get_paths()["stdlib"]``), top level and packages, sorted by
  relative path; left out are test suites (directories ``test``, ``tests``,
  ``idle_test``), ``site-packages``, and two packages that are data rather
  than code (``encodings``' codec tables, ``pydoc_data``'s topic texts).
  Every tenth file (0, 10, 20, ... in sorted order) is held out for
  evaluation; the others are the training set.
* Tokenizer: byte-level BPE trained with ``tokenizers`` on the training
  files, ``VOCAB_SIZE`` ids, ``<|endoftext|>`` is id 0 and separates files.
* Model: ``transformers.MambaForCausalLM`` (Mamba-1), tied embeddings,
  trained in float32 on the CPU with AdamW, linear warm-up and cosine decay
  on windows of ``SEQ_LEN`` tokens of the training stream. Most windows
  (``line_start_frac``) begin at an unindented line, the rest anywhere: a
  prompt is code from its first column, and a model that only ever saw
  windows starting at random places guesses deep indentation after
  ``def f():``.
* The selective scan: transformers' torch fallback walks the sequence one
  step at a time. Here it is replaced, for training only, by a fused C
  kernel (forward and backward, compiled on first use with the system C
  compiler) that computes the same function; ``--scan mambapy`` uses the
  ``mambapy`` parallel scan instead, ``--scan torch`` transformers' own loop.
* Losses are measured on fixed slices: ``SEQ_LEN + 1`` tokens from the
  middle of each file (files open with licence text and docstrings; the
  middle is code), for the held-out files and for some training files.
* Output: ``save_pretrained`` files (config.json, model.safetensors in
  bfloat16) plus tokenizer.json and TRAINING.json, which records the corpus
  (files, sizes, a hash), the hyper-parameters, the losses and timings.

Rerun (about 35 minutes on two idle CPU cores)::

    pip install torch==2.13.0 transformers tokenizers safetensors numpy
    python tools/train_builtin.py --out mambart/builtin

``--max-steps N`` with ``--out /tmp/x`` gives a quick smoke run. Seeds are
fixed, so a rerun on the same Python version gives the same corpus and
tokenizer and (up to floating-point summation order) the same model.
"""
from __future__ import annotations

import argparse
import ctypes
import hashlib
import json
import math
import os
import platform
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import MambaConfig, MambaForCausalLM

ENDOFTEXT = "<|endoftext|>"
HELD_OUT_EVERY = 10   # file i (sorted) is held out when i % HELD_OUT_EVERY == 0
EXCLUDED_DIRS = {"test", "tests", "idle_test", "site-packages", "encodings", "pydoc_data"}
VOCAB_SIZE = 4096
SEED = 1234

# Model and optimisation defaults (overridable on the command line).
DEFAULTS = dict(
    d_model=320,
    n_layer=6,
    d_state=16,
    expand=2,
    seq_len=256,
    batch=16,
    lr=2e-3,
    min_lr=1e-4,
    weight_decay=0.1,
    warmup=100,
    steps=1000,
    eval_every=200,
    eval_windows=64,
    grad_clip=1.0,
    line_start_frac=0.75,
)


# --------------------------------------------------------------------------
# Corpus and tokenizer
# --------------------------------------------------------------------------

STDLIB = Path(sysconfig.get_paths()["stdlib"])


def stdlib_files() -> list[Path]:
    """The corpus: *.py files of the standard library, sorted by relative path."""
    files = []
    for p in STDLIB.rglob("*.py"):
        rel = p.relative_to(STDLIB)
        if p.is_file() and not EXCLUDED_DIRS.intersection(rel.parts[:-1]):
            files.append(p)
    return sorted(files, key=lambda p: p.relative_to(STDLIB).as_posix())


def split_corpus(files: list[Path]) -> tuple[list[Path], list[Path]]:
    held_out = [f for i, f in enumerate(files) if i % HELD_OUT_EVERY == 0]
    train = [f for i, f in enumerate(files) if i % HELD_OUT_EVERY != 0]
    return train, held_out


def read_text(path: Path) -> str:
    return path.read_bytes().decode("utf-8")


def describe_files(files: list[Path]) -> dict:
    """Names, sizes and one SHA-256 over (name, contents) of every file."""
    h = hashlib.sha256()
    entries = []
    for f in files:
        data = f.read_bytes()
        name = f.relative_to(STDLIB).as_posix()
        h.update(name.encode() + b"\0" + data + b"\0")
        entries.append({"name": name, "bytes": len(data)})
    return {"count": len(files), "bytes": sum(e["bytes"] for e in entries),
            "sha256": h.hexdigest(), "files": entries}


def train_tokenizer(texts: list[str], vocab_size: int) -> Tokenizer:
    """Byte-level BPE (GPT-2 style pre-tokenisation), <|endoftext|> is id 0."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[ENDOFTEXT],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(texts, trainer)
    return tok


def encode_files(tok: Tokenizer, texts: list[str]) -> list[list[int]]:
    return [enc.ids for enc in tok.encode_batch(texts, add_special_tokens=False)]


def token_stream(tok: Tokenizer, per_file: list[list[int]]) -> np.ndarray:
    """All files' ids, each followed by <|endoftext|>, as one int32 array."""
    eos = tok.token_to_id(ENDOFTEXT)
    ids: list[int] = []
    for file_ids in per_file:
        ids.extend(file_ids)
        ids.append(eos)
    return np.asarray(ids, dtype=np.int32)


def line_start_positions(tok: Tokenizer, ids: np.ndarray, seq_len: int) -> np.ndarray:
    """Positions where an unindented line begins: after a newline or a file's end, not whitespace.

    Only positions with a whole window (seq_len + 1 tokens) after them.
    """
    vocab = tok.get_vocab()   # byte-level token strings: "Ċ" is a newline, "Ġ" a space, "ĉ" a tab
    ends_line = np.zeros(len(vocab), dtype=bool)
    starts_blank = np.zeros(len(vocab), dtype=bool)
    for token, i in vocab.items():
        ends_line[i] = token.endswith("Ċ")
        starts_blank[i] = token[0] in "ĠĉĊ"
    eos = tok.token_to_id(ENDOFTEXT)
    ends_line[eos] = starts_blank[eos] = True
    p = np.arange(1, len(ids) - seq_len - 1)
    return p[ends_line[ids[p - 1]] & ~starts_blank[ids[p]]]


def middle_windows(per_file: list[list[int]], seq_len: int, max_windows: int) -> torch.Tensor:
    """seq_len + 1 tokens from the middle of each file of at least 2 * seq_len tokens.

    Files are taken evenly spread over the list when there are more than
    max_windows. A fixed slice, shape (windows, seq_len + 1).
    """
    long = [ids for ids in per_file if len(ids) >= 2 * seq_len]
    if len(long) > max_windows:
        long = [long[i * len(long) // max_windows] for i in range(max_windows)]
    rows = [ids[len(ids) // 2: len(ids) // 2 + seq_len + 1] for ids in long]
    return torch.tensor(rows, dtype=torch.int64)


def unigram_entropy(train_ids: np.ndarray, eval_ids: np.ndarray, vocab_size: int) -> float:
    """Cross-entropy (nats/token) of eval_ids under the add-one-smoothed training unigram."""
    counts = np.bincount(train_ids, minlength=vocab_size).astype(np.float64) + 1.0
    logp = np.log(counts / counts.sum())
    return float(-logp[eval_ids].mean())


# --------------------------------------------------------------------------
# A fused selective scan for training on the CPU
# --------------------------------------------------------------------------

SCAN_C_SOURCE = r"""
/* Mamba-1 selective scan, one (batch row, channel) pair at a time.
 *   h_t = exp(dt_t * A) * h_{t-1} + dt_t * B_t * u_t      (state: N values)
 *   y_t = sum_n h_t[n] * C_t[n]
 * Layouts (contiguous float32): u, dt, y: [Bt, D, T]; A: [D, N];
 * Bm, Cm: [Bt, N, T]. The backward pass recomputes the states. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

void scan_forward(const float *u, const float *dt, const float *A, const float *Bm,
                  const float *Cm, float *y, int Bt, int D, int T, int N) {
    #pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < Bt; b++)
        for (int d = 0; d < D; d++) {
            const float *ub = u + ((size_t)b * D + d) * T, *dtb = dt + ((size_t)b * D + d) * T;
            const float *Bb = Bm + (size_t)b * N * T, *Cb = Cm + (size_t)b * N * T;
            const float *Ad = A + (size_t)d * N;
            float *yb = y + ((size_t)b * D + d) * T;
            float h[64] = {0};
            for (int t = 0; t < T; t++) {
                float acc = 0.f, dtu = dtb[t] * ub[t];
                for (int n = 0; n < N; n++) {
                    h[n] = expf(dtb[t] * Ad[n]) * h[n] + dtu * Bb[(size_t)n * T + t];
                    acc += h[n] * Cb[(size_t)n * T + t];
                }
                yb[t] = acc;
            }
        }
}

/* Gradients of sum(gy * y). gu, gdt: [Bt, D, T] (written);
 * gA: [Bt, D, N], gB, gC: [Bt, N, T] (written; gA is summed over batch
 * by the caller). Parallel over batch rows only, so that gB and gC of a
 * row have a single writer. */
void scan_backward(const float *u, const float *dt, const float *A, const float *Bm,
                   const float *Cm, const float *gy, float *gu, float *gdt, float *gA,
                   float *gB, float *gC, int Bt, int D, int T, int N) {
    #pragma omp parallel
    {
        float *hs = malloc(sizeof(float) * (size_t)(T + 1) * N);
        #pragma omp for schedule(static)
        for (int b = 0; b < Bt; b++) {
            const float *Bb = Bm + (size_t)b * N * T, *Cb = Cm + (size_t)b * N * T;
            float *gBb = gB + (size_t)b * N * T, *gCb = gC + (size_t)b * N * T;
            memset(gBb, 0, sizeof(float) * (size_t)N * T);
            memset(gCb, 0, sizeof(float) * (size_t)N * T);
            for (int d = 0; d < D; d++) {
                size_t row = ((size_t)b * D + d) * T;
                const float *ub = u + row, *dtb = dt + row, *gyb = gy + row;
                const float *Ad = A + (size_t)d * N;
                float *gAd = gA + ((size_t)b * D + d) * N;
                /* hs[t+1] = h_t, hs[0] = 0 */
                memset(hs, 0, sizeof(float) * N);
                for (int t = 0; t < T; t++) {
                    float dtu = dtb[t] * ub[t];
                    for (int n = 0; n < N; n++)
                        hs[(size_t)(t + 1) * N + n] = expf(dtb[t] * Ad[n]) * hs[(size_t)t * N + n]
                                                      + dtu * Bb[(size_t)n * T + t];
                }
                float gh[64] = {0}, ga[64] = {0};
                for (int t = T - 1; t >= 0; t--) {
                    float g_dt = 0.f, g_u = 0.f;
                    const float *h = hs + (size_t)(t + 1) * N, *hp = hs + (size_t)t * N;
                    for (int n = 0; n < N; n++) {
                        float c = Cb[(size_t)n * T + t], bb = Bb[(size_t)n * T + t];
                        gCb[(size_t)n * T + t] += gyb[t] * h[n];
                        float g = gh[n] + gyb[t] * c;          /* dL/dh_t */
                        float da = expf(dtb[t] * Ad[n]);
                        g_dt += g * (Ad[n] * da * hp[n] + bb * ub[t]);
                        g_u += g * dtb[t] * bb;
                        gBb[(size_t)n * T + t] += g * dtb[t] * ub[t];
                        ga[n] += g * dtb[t] * da * hp[n];
                        gh[n] = g * da;                        /* to h_{t-1} */
                    }
                    gdt[row + t] = g_dt;
                    gu[row + t] = g_u;
                }
                for (int n = 0; n < N; n++) gAd[n] = ga[n];
            }
        }
        free(hs);
    }
}
"""

_scan_lib = None


def fused_scan_library() -> ctypes.CDLL:
    """Compile (once, cached by source hash) and load the scan kernel."""
    global _scan_lib
    if _scan_lib is None:
        digest = hashlib.sha256(SCAN_C_SOURCE.encode()).hexdigest()[:16]
        build = Path(tempfile.gettempdir()) / f"mamba-scan-{digest}"
        lib = build / "scan.so"
        if not lib.exists():
            build.mkdir(parents=True, exist_ok=True)
            (build / "scan.c").write_text(SCAN_C_SOURCE)
            cc = os.environ.get("CC", "cc")
            subprocess.run([cc, "-O3", "-march=native", "-ffast-math", "-fopenmp", "-shared", "-fPIC",
                            str(build / "scan.c"), "-o", str(lib), "-lm"], check=True)
        _scan_lib = ctypes.CDLL(str(lib))
    return _scan_lib


def _ptr(t: torch.Tensor):
    return ctypes.c_void_p(t.data_ptr())


class FusedScan(torch.autograd.Function):
    """y = selective_scan(u, dt, A, B, C) without the (batch, T, D, N) states in memory."""

    @staticmethod
    def forward(ctx, u, dt, A, Bm, Cm):
        u, dt, A, Bm, Cm = (x.float().contiguous() for x in (u, dt, A, Bm, Cm))
        bt, d, t = u.shape
        n = A.shape[1]
        y = torch.empty_like(u)
        fused_scan_library().scan_forward(_ptr(u), _ptr(dt), _ptr(A), _ptr(Bm), _ptr(Cm), _ptr(y),
                                          bt, d, t, n)
        ctx.save_for_backward(u, dt, A, Bm, Cm)
        return y

    @staticmethod
    def backward(ctx, gy):
        u, dt, A, Bm, Cm = ctx.saved_tensors
        gy = gy.float().contiguous()
        bt, d, t = u.shape
        n = A.shape[1]
        gu, gdt = torch.empty_like(u), torch.empty_like(dt)
        gA = torch.empty(bt, d, n)
        gB, gC = torch.empty_like(Bm), torch.empty_like(Cm)
        fused_scan_library().scan_backward(_ptr(u), _ptr(dt), _ptr(A), _ptr(Bm), _ptr(Cm), _ptr(gy),
                                           _ptr(gu), _ptr(gdt), _ptr(gA), _ptr(gB), _ptr(gC),
                                           bt, d, t, n)
        return gu, gdt, gA.sum(0), gB, gC


def fused_selective_scan(hidden_states, dt, A, B, C, D=None, z=None, delta_bias=None,
                         delta_softplus=False, return_last_state=False, **kwargs):
    """Drop-in for transformers' `mamba_selective_scan` (training: no last state)."""
    if return_last_state or A.shape[1] > 64:
        raise NotImplementedError("the fused scan serves training only (state size <= 64)")
    if delta_bias is not None:
        dt = dt + delta_bias.to(dt.dtype)[..., None]
    if delta_softplus:
        dt = F.softplus(dt)
    y = FusedScan.apply(hidden_states, dt, A, B, C)
    if D is not None:
        y = y + hidden_states * D[None, :, None]
    if z is not None:
        y = y * F.silu(z)
    return y


def use_scan(model: MambaForCausalLM, scan: str) -> None:
    """Select the selective-scan implementation used by the mixers of `model`.

    The mixers call `mamba_selective_scan` from their module's namespace, so
    the fused kernel is installed there (process-wide).
    """
    import transformers.models.mamba.modeling_mamba as mm

    if not hasattr(mm, "_torch_selective_scan"):
        mm._torch_selective_scan = mm.mamba_selective_scan
    mm.mamba_selective_scan = fused_selective_scan if scan == "fused" else mm._torch_selective_scan
    for layer in model.backbone.layers:
        layer.mixer.use_mambapy = scan == "mambapy"


# --------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------

def make_model(hp: dict, vocab_size: int, eos: int) -> MambaForCausalLM:
    config = MambaConfig(vocab_size=vocab_size, hidden_size=hp["d_model"], num_hidden_layers=hp["n_layer"],
                         state_size=hp["d_state"], expand=hp["expand"], conv_kernel=4,
                         tie_word_embeddings=True, use_bias=False, use_conv_bias=True,
                         bos_token_id=eos, eos_token_id=eos, pad_token_id=eos)
    return MambaForCausalLM(config)


def lr_at(step: int, hp: dict) -> float:
    if step < hp["warmup"]:
        return hp["lr"] * (step + 1) / hp["warmup"]
    progress = (step - hp["warmup"]) / max(1, hp["steps"] - hp["warmup"])
    return hp["min_lr"] + 0.5 * (hp["lr"] - hp["min_lr"]) * (1 + math.cos(math.pi * min(1.0, progress)))


def make_optimizer(model: torch.nn.Module, hp: dict) -> torch.optim.Optimizer:
    """AdamW; no weight decay on norms, biases, A_log and D."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.ndim < 2 or name.endswith(("A_log", ".D")):
            no_decay.append(p)
        else:
            decay.append(p)
    groups = [{"params": decay, "weight_decay": hp["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=hp["lr"], betas=(0.9, 0.95), eps=1e-8)


@torch.no_grad()
def mean_loss(model: MambaForCausalLM, windows: torch.Tensor, batch: int) -> float:
    """Mean next-token cross-entropy (nats) over the rows of `windows`."""
    model.eval()
    x, y = windows[:, :-1], windows[:, 1:]
    total = 0.0
    for i in range(0, len(windows), batch):
        logits = model(input_ids=x[i:i + batch], use_cache=False).logits
        total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y[i:i + batch].reshape(-1),
                                 reduction="sum").item()
    model.train()
    return total / y.numel()


def save_model(model: MambaForCausalLM, tok: Tokenizer, out: Path, dtype: torch.dtype) -> None:
    out.mkdir(parents=True, exist_ok=True)
    copy = make_model_like(model)
    copy.load_state_dict(model.state_dict())
    copy.to(dtype).save_pretrained(out)
    tok.save(str(out / "tokenizer.json"))


def make_model_like(model: MambaForCausalLM) -> MambaForCausalLM:
    return MambaForCausalLM(model.config)


def log(msg: str, fh) -> None:
    line = f"{time.strftime('%H:%M:%S')} {msg}"
    print(line, flush=True)
    if fh is not None:
        fh.write(line + "\n")
        fh.flush()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="output directory (model files)")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "train-builtin",
                        help="checkpoints and the log")
    parser.add_argument("--scan", choices=["fused", "mambapy", "torch"], default="fused")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-steps", type=int, default=None, help="stop early (smoke runs)")
    parser.add_argument("--checkpoint-every", type=int, default=200)
    parser.add_argument("--init-from", type=Path, default=None,
                        help="start from this saved model's weights (same corpus and tokenizer) instead of a "
                             "fresh initialisation: a second stage of training")
    for key, value in DEFAULTS.items():
        parser.add_argument("--" + key.replace("_", "-"), type=type(value), default=value)
    args = parser.parse_args(argv)
    hp = {k: getattr(args, k) for k in DEFAULTS}

    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    torch.manual_seed(SEED)
    rng = np.random.default_rng(SEED)
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    logf = open(work / "train.log", "a")
    start = time.time()

    files = stdlib_files()
    train_files, held_files = split_corpus(files)
    train_texts = [read_text(f) for f in train_files]
    held_texts = [read_text(f) for f in held_files]
    tok = train_tokenizer(train_texts, VOCAB_SIZE)
    vocab = tok.get_vocab_size()
    eos = tok.token_to_id(ENDOFTEXT)
    train_per_file = encode_files(tok, train_texts)
    held_per_file = encode_files(tok, held_texts)
    train_ids = token_stream(tok, train_per_file)
    held_ids = token_stream(tok, held_per_file)
    held_eval = middle_windows(held_per_file, hp["seq_len"], hp["eval_windows"])
    train_eval = middle_windows(train_per_file, hp["seq_len"], hp["eval_windows"])
    unigram = unigram_entropy(train_ids, held_eval[:, 1:].numpy().ravel(), vocab)
    log(f"corpus: {len(train_files)} train files ({len(train_ids)} tokens), {len(held_files)} held-out "
        f"({len(held_ids)} tokens), vocab {vocab}, unigram entropy of the held-out slice {unigram:.4f} nats", logf)

    model = make_model(hp, vocab, eos)
    if args.init_from is not None:
        from transformers import MambaForCausalLM

        model.load_state_dict(MambaForCausalLM.from_pretrained(args.init_from).float().state_dict())
        log(f"initialised from {args.init_from}", logf)
        earlier = json.loads((args.init_from / "TRAINING.json").read_text())
        earlier_stage = {k: earlier[k] for k in ("hyper_parameters", "steps_run", "losses_nats_per_token",
                                                  "training_seconds") if k in earlier}
    use_scan(model, args.scan)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"model: {n_params / 1e6:.2f}M parameters, scan {args.scan}, hyper-parameters {hp}", logf)
    opt = make_optimizer(model, hp)
    train_t = torch.from_numpy(train_ids.astype(np.int64))
    line_starts = line_start_positions(tok, train_ids, hp["seq_len"])
    log(f"{len(line_starts)} unindented line starts in the training stream", logf)

    steps = hp["steps"] if args.max_steps is None else min(hp["steps"], args.max_steps)
    history = []
    model.train()
    t0 = time.time()
    tokens_seen = 0
    smooth = None
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, hp)
        anywhere = rng.integers(0, len(train_t) - hp["seq_len"] - 1, size=hp["batch"])
        at_line = line_starts[rng.integers(0, len(line_starts), size=hp["batch"])]
        starts = np.where(rng.random(hp["batch"]) < hp["line_start_frac"], at_line, anywhere)
        batch = torch.stack([train_t[s: s + hp["seq_len"] + 1] for s in starts])
        logits = model(input_ids=batch[:, :-1], use_cache=False).logits
        loss = F.cross_entropy(logits.reshape(-1, vocab), batch[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), hp["grad_clip"])
        opt.step()
        tokens_seen += batch[:, 1:].numel()
        smooth = loss.item() if smooth is None else 0.95 * smooth + 0.05 * loss.item()
        if step % 10 == 0 or step == steps - 1:
            rate = tokens_seen / (time.time() - t0)
            log(f"step {step}/{steps} loss {loss.item():.4f} (smoothed {smooth:.4f}) "
                f"lr {lr_at(step, hp):.2e} {rate:.0f} tok/s", logf)
        last = step == steps - 1
        if (step + 1) % hp["eval_every"] == 0 or last:
            held = mean_loss(model, held_eval, hp["batch"])
            history.append({"step": step + 1, "train_loss_smoothed": smooth, "held_out_loss": held,
                            "seconds": round(time.time() - t0)})
            log(f"eval step {step + 1}: held-out loss {held:.4f}", logf)
        if (step + 1) % args.checkpoint_every == 0 or last:
            torch.save({"step": step + 1, "model": model.state_dict()}, work / "checkpoint.pt")
            save_model(model, tok, work / "latest", torch.bfloat16)
    train_seconds = time.time() - t0

    # Final losses, measured in float32 on the bfloat16-rounded weights that ship.
    shipped = make_model_like(model)
    shipped.load_state_dict({k: v.to(torch.bfloat16).float() for k, v in model.state_dict().items()})
    use_scan(shipped, args.scan)
    final_train = mean_loss(shipped, train_eval, hp["batch"])
    final_held = mean_loss(shipped, held_eval, hp["batch"])
    log(f"final (bf16 weights): train loss {final_train:.4f}, held-out loss {final_held:.4f}, "
        f"unigram {unigram:.4f}; training took {train_seconds / 60:.1f} min", logf)

    save_model(model, tok, args.out, torch.bfloat16)
    record = {
        "description": "mambart built-in model: Mamba-1 trained on Python standard-library source",
        "script": "tools/train_builtin.py",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": __import__("transformers").__version__,
        "tokenizers": __import__("tokenizers").__version__,
        "seed": SEED,
        "scan": args.scan,
        "threads": args.threads,
        "hyper_parameters": hp,
        "steps_run": steps,
        "initialised_from": earlier_stage if args.init_from is not None else None,
        "parameters": n_params,
        "weights_dtype": "bfloat16",
        "corpus": {
            "source": "*.py files under sysconfig.get_paths()['stdlib'], sorted by relative path",
            "excluded_directories": sorted(EXCLUDED_DIRS),
            "held_out_rule": f"file index % {HELD_OUT_EVERY} == 0 in sorted order",
            "train": {**describe_files(train_files), "tokens": int(len(train_ids))},
            "held_out": {**describe_files(held_files), "tokens": int(len(held_ids))},
        },
        "tokenizer": {"kind": "byte-level BPE (tokenizers)", "vocab_size": vocab, "eos": ENDOFTEXT},
        "losses_nats_per_token": {
            "final_train": final_train,
            "final_train_tokens": int(train_eval[:, 1:].numel()),
            "final_held_out": final_held,
            "final_held_out_tokens": int(held_eval[:, 1:].numel()),
            "slices": "seq_len + 1 tokens from the middle of each file (of >= 2 * seq_len tokens), "
                      "at most eval_windows files, spread evenly",
            "held_out_unigram_entropy": unigram,
            "unigram_note": "cross-entropy of the held-out slice under the add-one smoothed "
                            "unigram distribution of the training tokens",
            "history": history,
        },
        "tokens_trained": tokens_seen,
        "training_seconds": round(train_seconds),
        "total_seconds": round(time.time() - start),
    }
    (args.out / "TRAINING.json").write_text(json.dumps(record, indent=1) + "\n")
    log(f"wrote {args.out}", logf)


if __name__ == "__main__":
    main()
