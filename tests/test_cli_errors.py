"""The command line as a new user meets it: every mistake is one line and status 1."""
import os
import subprocess
import sys
import tempfile

import pytest

from mambart.cli import unescape


def run(*args, stdin=None, text=True):
    return subprocess.run([sys.executable, "-m", "mambart", *args], input=stdin, capture_output=True,
                          text=text, timeout=120, cwd=tempfile.gettempdir())


def one_line_error(r, *words):
    stderr = r.stderr if isinstance(r.stderr, str) else r.stderr.decode()
    assert r.returncode == 1, stderr
    assert stderr.startswith("mambart: error: ") and stderr.count("\n") == 1, stderr
    for w in words:
        assert w in stderr, stderr


@pytest.mark.parametrize("args, words", [
    (["generate", "--bogus"], ["unrecognized arguments: --bogus", "mambart generate --help"]),
    (["generate", "--max-new-tokens", "many"], ["--max-new-tokens", "invalid int value: 'many'"]),
    (["generate", "--dtype", "f8"], ["invalid choice: 'f8'"]),
    (["generate", "--prompt", "a", "--prompt-file", "f"], ["not allowed with argument"]),
    (["convert", "m"], ["required"]),
    (["nope"], ["invalid choice: 'nope'"]),
])
def test_argument_errors_are_one_line(args, words):
    one_line_error(run(*args), *words)


def test_escapes():
    assert unescape(r"\n") == "\n" and unescape(r"a\tb\\c") == "a\tb\\c"
    assert unescape(r"\x41\u00e9\U0001F600\r\0") == "A\u00e9\U0001F600\r\0"
    assert unescape("plain") == "plain" and unescape(r'\"\'') == "\"'"
    for bad, shown in [(r"\q", r"'\q'"), ("end\\", "a trailing"), (r"\xZZ", r"'\x'"), (r"\U00110000", "not a Unicode")]:
        with pytest.raises(ValueError, match="^--stop .*" + shown.replace("\\", "\\\\")):
            unescape(bad)


def test_stop_newline_escape_ends_the_line():
    base = ["generate", "--prompt", "def add(a, b):", "--temperature", "0", "--max-new-tokens", "40"]
    full = run(*base)
    assert full.returncode == 0 and "\n" in full.stdout, full.stderr
    cut = run(*base, "--stop", r"\n")
    assert cut.returncode == 0, cut.stderr
    assert cut.stdout == full.stdout[:full.stdout.index("\n")]
    one_line_error(run(*base, "--stop", r"\q"), "unknown escape")


def test_prompt_file(tmp_path):
    (tmp_path / "p.txt").write_text("def add(a, b):")
    base = ["generate", "--temperature", "0", "--max-new-tokens", "8"]
    a = run(*base, "--prompt-file", str(tmp_path / "p.txt"))
    b = run(*base, "--prompt", "def add(a, b):")
    assert a.returncode == 0 and a.stdout == b.stdout, a.stderr
    (tmp_path / "bad.txt").write_bytes(b"def \xff():")
    one_line_error(run(*base, "--prompt-file", str(tmp_path / "bad.txt")), "not valid UTF-8 (byte 0xff at offset 4)")
    one_line_error(run(*base, "--prompt-file", str(tmp_path / "missing.txt")), "missing.txt")


def test_undecodable_prompt_bytes():
    r = subprocess.run([sys.executable, "-m", "mambart", "generate", "--prompt", b"ab\xffc"],
                       capture_output=True, timeout=120, cwd=tempfile.gettempdir())
    one_line_error(r, "prompt is not valid UTF-8 (byte 0xff at character 2)")
    one_line_error(run("generate", "--prompt", "-", stdin=b"ab\xfe", text=False),
                   "the prompt from stdin is not valid UTF-8 (byte 0xfe at offset 2)")


def test_zero_tokens_summary_has_no_inf():
    r = run("generate", "--prompt", "x = 1", "--max-new-tokens", "0")
    assert r.returncode == 0, r.stderr
    assert "inf" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].endswith("decode: 0 tokens in 0.000 s (0.0 tok/s)"[-25:])


def test_unwritable_save_state_fails_before_generating(tmp_path):
    r = run("generate", "--prompt", "x = 1", "--max-new-tokens", "64",
            "--save-state", str(tmp_path / "no" / "such" / "dir" / "s.state"))
    one_line_error(r, "--save-state", "cannot write")
    assert r.stdout == "" and "decode:" not in r.stderr
    one_line_error(run("generate", "--prompt", "x", "--save-state", str(tmp_path)), "is a directory")
    # A failure after the check leaves no empty file behind.
    r = run("generate", "--prompt", "", "--save-state", str(tmp_path / "new.state"))
    one_line_error(r, "prompt is empty")
    assert not (tmp_path / "new.state").exists()


def test_closed_stdout_still_saves_the_state(tmp_path):
    args = ["generate", "--prompt", "def f(x):", "--max-new-tokens", "30", "--seed", "5"]
    p = subprocess.Popen([sys.executable, "-m", "mambart", *args, "--save-state", str(tmp_path / "cut.state")],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tempfile.gettempdir())
    p.stdout.close()  # the reader is gone before the first piece
    err = p.stderr.read().decode()
    assert p.wait(timeout=120) == 0, err
    assert "Traceback" not in err and "Exception ignored" not in err, err
    full = run(*args, "--save-state", str(tmp_path / "full.state"))
    assert full.returncode == 0, full.stderr
    assert (tmp_path / "cut.state").read_bytes() == (tmp_path / "full.state").read_bytes()


def test_closed_stderr_still_saves_the_state(tmp_path):
    # `2>&1 | head`: the summary after the save fails too. That error removed
    # the state just written (the clean-up of a failed start), with status 0.
    args = ["generate", "--prompt", "def f(x):", "--max-new-tokens", "30", "--seed", "5"]
    p = subprocess.Popen([sys.executable, "-m", "mambart", *args, "--save-state", str(tmp_path / "cut.state")],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=tempfile.gettempdir())
    p.stdout.close()
    assert p.wait(timeout=120) == 0
    full = run(*args, "--save-state", str(tmp_path / "full.state"))
    assert full.returncode == 0, full.stderr
    assert (tmp_path / "cut.state").read_bytes() == (tmp_path / "full.state").read_bytes()


def test_closed_standard_streams(tmp_path):
    # `2>&-` / `>&-`: Python's sys.stderr / sys.stdout are then None. The first
    # write failed (exit 1, no text at all), and print(file=None) writes to stdout.
    args = ["generate", "--prompt", "def f(x):", "--max-new-tokens", "20", "--seed", "5"]

    def closed(redirect, *more):
        return subprocess.run(["sh", "-c", f'exec "$0" -m mambart "$@" {redirect}', sys.executable, *args, *more],
                              capture_output=True, text=True, timeout=120, cwd=tempfile.gettempdir())

    full = run(*args, "--save-state", str(tmp_path / "full.state"))
    assert full.returncode == 0 and full.stdout, full.stderr
    r = closed("2>&-")
    assert r.returncode == 0 and r.stdout == full.stdout
    r = closed(">&-", "--save-state", str(tmp_path / "cut.state"))
    assert r.returncode == 0 and r.stdout == "" and r.stderr.startswith("load: "), r.stderr
    assert (tmp_path / "cut.state").read_bytes() == (tmp_path / "full.state").read_bytes()
    r = subprocess.run(["sh", "-c", 'exec "$0" -m mambart generate --prompt "" 2>&-', sys.executable],
                       capture_output=True, text=True, timeout=120, cwd=tempfile.gettempdir())
    assert r.returncode == 1 and r.stdout == ""  # the error is not written to stdout


def test_ctrl_c_during_start_up_is_quiet(tmp_path):
    # A KeyboardInterrupt while the runtime is being imported, as Ctrl-C right
    # after starting the command gives: status 130 and no traceback.
    code = ("import sys\n"
            "class Interrupt:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name == 'numpy':\n"
            "            raise KeyboardInterrupt\n"
            "sys.meta_path.insert(0, Interrupt())\n"
            "from mambart.cli import main\n"
            "sys.exit(main(['generate', '--prompt', 'x']))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       cwd=tempfile.gettempdir(), env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert r.returncode == 130 and r.stderr.strip() == "", r.stderr


def test_info_counts_parameters_of_quantized_checkpoints(tmp_path, small_model_dir):
    from mambart.convert import convert
    from mambart.info import describe

    original = describe(str(small_model_dir[0]))
    for dtype in ("q8", "q4"):
        d = describe(str(convert(small_model_dir[0], tmp_path / dtype, dtype)))
        assert d["parameters"] == original["parameters"], dtype
        assert set(d["dtypes"]) == {dtype.upper(), "F32"}
        assert sum(d["dtypes"].values()) == d["parameters"]
