"""Fuzz target: every family's config.json with one value broken.

A tiny checkpoint per family (made by transformers) gets one config value
replaced at a time (zero, negative, huge, a wrong type, removed, a list
shortened or lengthened, ...) and a child process loads it and runs it
(generate and logits): each case must end in a result or a one-line
ValueError, never a crash, a hang or another exception. A deterministic
sample of the cases runs by default; MAMBART_FUZZ_EXAMPLES=N runs N per
family (0: all of them, some 500 each).
"""
import copy
import json
import os
import random
import subprocess
import sys

import pytest

import child
import models

FAMILIES = {
    "mamba": lambda d: models.make_mamba(d),
    "falcon_mamba": lambda d: models.make_mamba(d, mixer_rms_eps=1e-4),
    "mamba2": lambda d: models.make_mamba2(d),
    "granitemoehybrid": lambda d: models.make_granite_hybrid(d, num_local_experts=4),
    "bamba": lambda d: models.make_bamba(d),
    "nemotron_h": lambda d: models.make_nemotron_h(d),
    "falcon_h1": lambda d: models.make_falcon_h1(d),
    "zamba2": lambda d: models.make_zamba2(d, num_mem_blocks=2, use_shared_attention_adapter=True),
    "jamba": lambda d: models.make_jamba(d),
}

_DELETE = "<delete>"


def _values(v):
    if isinstance(v, bool):
        return [0, 2, "true", None, []]
    if isinstance(v, int):
        return [0, -1, 1, 2, 3, 7, v + 1, v - 1, 2 * v, v // 2, 2**31, 2**40, 1.5, "8", None, True, [], {}]
    if isinstance(v, float):
        return [0, 0.0, -1.0, 1e30, -1e30, 1e-40, 2 * v, v / 2, None, "x", True, []]
    if isinstance(v, str):
        return ["", "bogus", 1, None, []]
    if isinstance(v, list):
        return [[], None, 5, v[:-1] if v else [1], v + v[-1:] if v else [0], v[::-1]]
    if isinstance(v, dict):
        return [None, {}, 5]
    return [0, "x"]


def _cases(obj, path=()):
    """(path, new value) for every value of the config, nested ones too."""
    items = obj.items() if isinstance(obj, dict) else enumerate(obj)
    for k, v in list(items):
        p = path + (k,)
        for nv in _values(v):
            yield p, nv
        if isinstance(obj, dict):
            yield p, _DELETE
        if isinstance(v, (list, dict)):
            yield from _cases(v, p)


def _apply(config, path, value):
    c = copy.deepcopy(config)
    o = c
    for k in path[:-1]:
        o = o[k]
    if value == _DELETE:
        del o[path[-1]]
    else:
        o[path[-1]] = value
    return c


# The child: reads (source dir, [config, ...]) from stdin; per case copies
# the checkpoint with that config, loads and runs it; says which case it
# starts on stderr (a crash names it) and prints the failures as JSON.
_CHILD = r"""
import json, os, shutil, sys, tempfile
import numpy as np
import mambart
src, configs = json.load(sys.stdin)
fails = []
with tempfile.TemporaryDirectory() as tmp:
    for i, config in enumerate(configs):
        print(f"case {i}", file=sys.stderr, flush=True)
        d = os.path.join(tmp, str(i))
        os.mkdir(d)
        for f in os.listdir(src):
            if f != "config.json":
                os.symlink(os.path.join(src, f), os.path.join(d, f))
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(config, f)
        try:
            m = mambart.load(d, threads=1)
            m.generate("hello world", max_new_tokens=3, temperature=0)
            m.decoder(2).prefill([[1, 2, 3], [4, 5]])
            assert np.isfinite(m.logits([1, 2, 3, 4])).all(), "non-finite logits"
        except ValueError as e:
            if not str(e) or "\n" in str(e):
                fails.append([i, f"not a one-line ValueError: {e!r}"])
        except Exception as e:
            fails.append([i, f"{type(e).__name__}: {e}"])
        shutil.rmtree(d)
print(json.dumps(fails))
"""


@pytest.mark.parametrize("family", FAMILIES)
def test_broken_config_value(family, tmp_path):
    FAMILIES[family](tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    cases = list(_cases(config))
    n = int(os.environ.get("MAMBART_FUZZ_EXAMPLES", 40))
    if n:
        cases = random.Random(family).sample(cases, min(n, len(cases)))
    configs = [_apply(config, p, v) for p, v in cases]
    r = subprocess.run([sys.executable, "-c", _CHILD], input=json.dumps([str(tmp_path), configs]), text=True,
                       capture_output=True, timeout=60 + 2 * len(cases), cwd=child.CWD, env=child.env())
    if r.returncode != 0:
        started = [line for line in r.stderr.splitlines() if line.startswith("case ")]
        i = int(started[-1].split()[1]) if started else None
        case = cases[i] if i is not None else None
        pytest.fail(f"child died (rc {r.returncode}) on {case}: {r.stderr[-2000:]}")
    fails = json.loads(r.stdout.strip().splitlines()[-1])
    assert not fails, [(cases[i], why) for i, why in fails]
