"""Weight types: f16, bf16, q8, q4 against f32, and converted checkpoints."""
import subprocess
import sys
import tempfile

import numpy as np
import pytest

import mambart

# Mean KL divergence of next-token distributions from f32, and max |logit diff| / max |logit|.
BOUNDS = {"f32": (0.0, 0.0), "f16": (1e-5, 2e-3), "bf16": (1e-4, 2e-2), "q8": (0.01, 0.05), "q4": (0.05, 0.5)}
IDS = np.random.default_rng(0).integers(0, 300, 96).tolist()


def log_softmax(x):
    x = x.astype(np.float64)
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def mean_kl(ref, got):
    p, q = log_softmax(ref), log_softmax(got)
    return float((np.exp(p) * (p - q)).sum(-1).mean())


@pytest.fixture(scope="module")
def reference(any_model_dir):
    path = any_model_dir[0]
    return path, mambart.load(path, dtype="f32").logits(IDS)


@pytest.mark.parametrize("dtype", list(BOUNDS))
def test_weight_type_accuracy(reference, dtype):
    path, ref = reference
    model = mambart.load(path, dtype=dtype)
    got = model.logits(IDS)
    kl_bound, rel_bound = BOUNDS[dtype]
    assert mean_kl(ref, got) <= kl_bound
    assert np.abs(got - ref).max() <= rel_bound * np.abs(ref).max()
    f32_bytes = mambart.load(path, dtype="f32").weight_bytes_per_token
    assert model.weight_bytes_per_token < f32_bytes or dtype == "f32"


@pytest.mark.parametrize("dtype", ["bf16", "q8", "q4"])
def test_converted_checkpoint_loads_without_conversion(reference, tmp_path, dtype):
    path, _ = reference
    out = tmp_path / f"converted-{dtype}"
    r = subprocess.run([sys.executable, "-m", "mambart", "convert", str(path), str(out), "--dtype", dtype],
                       capture_output=True, text=True, timeout=120, cwd=tempfile.gettempdir())
    assert r.returncode == 0, r.stderr
    converted = mambart.load(out)
    direct = mambart.load(path, dtype=dtype)
    np.testing.assert_array_equal(converted.logits(IDS), direct.logits(IDS))
    assert converted.weight_bytes_per_token == direct.weight_bytes_per_token
    assert converted.generate("def", max_new_tokens=4, temperature=0) == direct.generate(
        "def", max_new_tokens=4, temperature=0)


def test_quantized_checkpoint_refuses_other_types(reference, tmp_path):
    path, _ = reference
    out = tmp_path / "q8"
    from mambart.convert import convert

    convert(path, out, "q8")
    with pytest.raises(ValueError, match="cannot be converted"):
        mambart.load(out, dtype="f32")
    with pytest.raises(ValueError, match="already converted"):
        convert(out, tmp_path / "again", "q4")
    with pytest.raises(FileExistsError):
        convert(path, out, "q4")


def test_bad_dtype(reference):
    with pytest.raises(ValueError, match="dtype"):
        mambart.load(reference[0], dtype="int3")
