"""Long prompts to an attention hybrid run in bounded memory: an 8k-token prompt to a
Granite-4.0-H-shaped model peaks at its weights + KV cache + scratch, no (seq x seq) buffers.
Measured in a child process, whose peak RSS (VmHWM) is its own."""
import json
import subprocess
import sys

import pytest

from models import make_granite_hybrid

import child

PROMPT = 8192
SCRATCH = 200e6  # bytes allowed beyond the weights and the KV cache

# The child's peak RSS after importing mambart (its baseline), then after an 8k-token prefill.
CHILD = f"""
import json, sys
import numpy as np

def peak():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024

import mambart
base = peak()
model = mambart.load(sys.argv[1], threads=2)
dec = model.decoder(1)
dec.prefill([np.random.default_rng(0).integers(0, model.config.vocab_size, {PROMPT}).tolist()])
print(json.dumps({{"base": base, "peak": peak(), "weights": model._core.weight_bytes,
                   "context": dec._core.context()[0]}}))
"""


@pytest.fixture(scope="module")
def granite_768(tmp_path_factory):
    path = tmp_path_factory.mktemp("granite-768")
    make_granite_hybrid(path, hidden_size=768, layer_types=("mamba", "attention", "mamba", "attention"),
                        num_attention_heads=12, num_key_value_heads=4, shared_intermediate_size=1024,
                        mamba_n_heads=24, mamba_d_state=128, mamba_n_groups=1, vocab_size=2048)
    return path


def test_8k_prompt_peak_rss_is_weights_kv_and_scratch(granite_768):
    from mambart.info import _state_sizes
    from mambart.config import load_config

    r = subprocess.run([sys.executable, "-c", CHILD, str(granite_768)], capture_output=True, text=True,
                       timeout=600, env=child.env(), cwd=child.CWD)
    assert r.returncode == 0, r.stderr[-2000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["context"] == PROMPT
    sizes = _state_sizes(load_config(granite_768))
    kv = PROMPT * sizes["state_bytes_per_token"] + sizes["state_bytes_fixed"]
    used = got["peak"] - got["base"]
    assert used <= got["weights"] + kv + SCRATCH, (used / 1e6, got["weights"] / 1e6, kv / 1e6)


LOAD_CHILD = """
import json, sys

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024

import pathlib
import mambart
# A first load and forward pays what the process pays once (thread pool, a CUDA build's probe
# of the runtime): only the second load's peak is the weights'.
warm = mambart.load(pathlib.Path(mambart.__file__).parent / "builtin", threads=2)
warm.logits([1, 2, 3])
del warm
base = status("VmHWM:")
model = mambart.load(sys.argv[1], threads=2)
model.logits([1, 2, 3])
print(json.dumps({"peak": status("VmHWM:") - base, "weights": model._core.weight_bytes}))
"""


def test_f32_load_holds_one_copy_of_the_weights(granite_768):
    """Where the CPU backend keeps f32 matrices in its GEMM's panels (a copy), the mapped
    checkpoint's pages leave the process as each matrix is copied: loading peaks at one
    copy of the weights, not two."""
    r = subprocess.run([sys.executable, "-c", LOAD_CHILD, str(granite_768)], capture_output=True, text=True,
                       timeout=600, env=child.env(), cwd=child.CWD)
    assert r.returncode == 0, r.stderr[-2000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["peak"] <= 1.1 * got["weights"] + 50e6, (got["peak"] / 1e6, got["weights"] / 1e6)
