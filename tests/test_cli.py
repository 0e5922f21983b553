"""`mambart generate` as a user runs it: a separate process, text on stdout, summary on stderr."""
import re
import subprocess
import sys
import tempfile

import pytest

SUMMARY = [
    re.compile(r"^load: \d+\.\d+ s$"),
    re.compile(r"^prefill: (\d+) tokens in \d+\.\d+ s \(\d+\.\d tok/s\)$"),
    re.compile(r"^decode: (\d+) tokens in \d+\.\d+ s \(\d+\.\d tok/s\)$"),
]


def run(*args, stdin=None):
    # Run outside the source tree, so the installed package is the one imported.
    return subprocess.run([sys.executable, "-m", "mambart", *args], input=stdin, capture_output=True, text=True,
                          timeout=120, cwd=tempfile.gettempdir())


def test_generate_streams_and_prints_summary(small_model_dir):
    path, _ = small_model_dir
    r = run("generate", "--model", str(path), "--prompt", "def fibonacci(n):", "--max-new-tokens", "12",
            "--temperature", "0", "--threads", "1")
    assert r.returncode == 0, r.stderr
    lines = r.stderr.strip().splitlines()[-3:]
    for pattern, line in zip(SUMMARY, lines):
        assert pattern.match(line), line
    decode_tokens = int(SUMMARY[2].match(lines[2]).group(1))
    assert 1 <= decode_tokens <= 12
    # stdout holds only the generated text: the same as the Python API gives.
    import mambart
    assert r.stdout == mambart.load(path).generate("def fibonacci(n):", max_new_tokens=12, temperature=0)


def test_mamba_ssm_flag_spellings_and_stdin(small_model_dir):
    path, _ = small_model_dir
    a = run("generate", "--model", str(path), "--prompt", "-", "--genlen", "8", "--topk", "5", "--topp", "0.9",
            "--seed", "3", stdin="Mamba is")
    b = run("generate", "--model", str(path), "--prompt", "Mamba is", "--max-new-tokens", "8", "--top-k", "5",
            "--top-p", "0.9", "--seed", "3")
    assert a.returncode == 0 and b.returncode == 0, a.stderr + b.stderr
    assert a.stdout == b.stdout


def test_presence_and_frequency_penalties(small_model_dir):
    path, _ = small_model_dir
    import mambart
    model = mambart.load(path)
    plain = model.generate("def fibonacci(n):", max_new_tokens=24, temperature=0)
    for flags, kw in ((["--frequency-penalty", "2"], dict(frequency_penalty=2.0)),
                      (["--presence-penalty", "-1.5", "--frequency-penalty", "0.5"],
                       dict(presence_penalty=-1.5, frequency_penalty=0.5))):
        r = run("generate", "--model", str(path), "--prompt", "def fibonacci(n):", "-n", "24", "-t", "0", *flags)
        assert r.returncode == 0, r.stderr
        assert r.stdout == model.generate("def fibonacci(n):", max_new_tokens=24, temperature=0, **kw)
    assert r.stdout != plain  # the penalties change this greedy text
    r = run("generate", "--model", str(path), "--prompt", "x", "--presence-penalty", "2.5")
    assert r.returncode == 1 and "presence_penalty must be in [-2, 2]" in r.stderr


def test_version_and_help():
    import mambart
    r = run("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"mambart {mambart.__version__}"
    r = run("generate", "--help")
    assert r.returncode == 0
    for flag in ("--model", "--prompt", "--max-new-tokens", "--temperature", "--top-k", "--top-p", "--min-p",
                 "--repetition-penalty", "--presence-penalty", "--frequency-penalty", "--seed", "--threads"):
        assert flag in r.stdout


@pytest.mark.parametrize("args, message", [
    (["--prompt", "x", "--temperature", "-1"], "temperature"),
    (["--prompt", "x", "--top-p", "0"], "top_p"),
    (["--prompt", ""], "prompt is empty"),
])
def test_bad_input_is_one_line(small_model_dir, args, message):
    r = run("generate", "--model", str(small_model_dir[0]), *args)
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("mambart: error:") and message in r.stderr


def test_missing_model_is_one_line(tmp_path):
    r = run("generate", "--model", str(tmp_path / "nope"), "--prompt", "x")
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and "nope" in r.stderr
