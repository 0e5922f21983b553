"""The built-in model shipped in the package: real Python completion, offline."""
import io
import json
import keyword
import os
import subprocess
import sys
import sysconfig
import tempfile
import tokenize
from pathlib import Path

import numpy as np
import pytest

import mambart
from mambart.builtin import BUILTIN_DIR

RECORD = json.loads((BUILTIN_DIR / "TRAINING.json").read_text())


@pytest.fixture(scope="module")
def model():
    return mambart.load("builtin", threads=2)


def held_out_files() -> list[Path]:
    """The held-out files by the recorded rule: every tenth stdlib file in sorted order."""
    root = Path(sysconfig.get_paths()["stdlib"])
    excluded = set(RECORD["corpus"]["excluded_directories"])
    files = sorted((p for p in root.rglob("*.py") if not excluded & set(p.relative_to(root).parts[:-1])),
                   key=lambda p: p.relative_to(root).as_posix())
    return [p for i, p in enumerate(files) if i % 10 == 0]


def test_held_out_loss_far_below_unigram_entropy(model):
    """Mean next-token loss on mid-file slices of held-out files, with mambart's own logits."""
    tok = model.tokenizer
    ids_per_file = [tok.encode(p.read_text(encoding="utf-8", errors="replace")) for p in held_out_files()]
    counts = np.bincount(np.concatenate([np.asarray(i) for i in ids_per_file if i]), minlength=tok.vocab_size)
    p = counts[counts > 0] / counts.sum()
    unigram_entropy = float(-(p * np.log(p)).sum())
    losses = []
    for ids in [i for i in ids_per_file if len(i) >= 512][:12]:
        mid = len(ids) // 2
        window = ids[mid - 128: mid + 129]
        logits = model.logits(window[:-1]).astype(np.float64)
        logits -= logits.max(-1, keepdims=True)
        logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
        losses.append(-logp[np.arange(len(window) - 1), window[1:]].mean())
    loss = float(np.mean(losses))
    assert len(losses) >= 8
    assert loss < 0.65 * unigram_entropy, (loss, unigram_entropy)


@pytest.mark.parametrize("prompt", ["def fibonacci(n):", "import os\n", "class Stack:"])
def test_greedy_continuation_is_python(model, prompt):
    text = prompt + model.generate(prompt, max_new_tokens=48, temperature=0)
    complete = text[: text.rfind("\n") + 1] if "\n" in text[len(prompt):] else text + "\n"
    tokens = list(tokenize.generate_tokens(io.StringIO(complete).readline))  # raises if not Python
    names = [t.string for t in tokens if t.type == tokenize.NAME]
    assert names and any(keyword.iskeyword(n) for n in names), complete
    assert len(complete) > len(prompt) + 8, complete


def test_logits_match_transformers(model):
    import torch
    from transformers import MambaForCausalLM

    hf = MambaForCausalLM.from_pretrained(BUILTIN_DIR, dtype=torch.float32).eval()
    ids = model.tokenizer.encode("def fibonacci(n):\n    if n < 2:\n        return n\n")
    with torch.no_grad():
        ref = hf(torch.tensor([ids])).logits[0].double().numpy()
    assert np.abs(model.logits(ids) - ref).max() <= 1e-3 * np.abs(ref).max()


def test_cli_default_model_offline(tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"), HF_HUB_CACHE=str(tmp_path / "hf"))
    r = subprocess.run([sys.executable, "-m", "mambart", "generate", "--prompt", "def fibonacci(n):",
                        "--max-new-tokens", "24", "--temperature", "0"], capture_output=True, text=True,
                       timeout=120, env=env, cwd=tempfile.gettempdir())
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip()
    assert [line.split(":")[0] for line in r.stderr.strip().splitlines()[-3:]] == ["load", "prefill", "decode"]
    assert not list((tmp_path / "hf").glob("**/*.safetensors"))  # nothing was fetched


def test_info_lists_the_builtin_model():
    r = subprocess.run([sys.executable, "-m", "mambart", "info"], capture_output=True, text=True, timeout=60,
                       cwd=tempfile.gettempdir())
    assert r.returncode == 0, r.stderr
    assert "family:" in r.stdout and str(BUILTIN_DIR) in r.stdout and "5,364,160" in r.stdout


@pytest.mark.parametrize("dtype, bound", [("q8", 0.01), ("q4", 0.05)])
def test_quantized_builtin_stays_close(dtype, bound):
    """Mean KL of next-token distributions from f32, on held-out code."""
    f32 = mambart.load("builtin", dtype="f32")
    text = held_out_files()[3].read_text(encoding="utf-8")
    ids = f32.tokenizer.encode(text[len(text) // 3:])[:400]

    def log_softmax(x):
        x = x.astype(np.float64) - x.max(-1, keepdims=True)
        return x - np.log(np.exp(x).sum(-1, keepdims=True))

    p, q = log_softmax(f32.logits(ids)), log_softmax(mambart.load("builtin", dtype=dtype).logits(ids))
    assert float((np.exp(p) * (p - q)).sum(-1).mean()) <= bound
