"""`mambart generate` on a long prompt: a progress bar on a terminal's stderr,
none otherwise, and Ctrl-C during the prefill ends the process at once, quietly."""
import os
import pty
import select
import signal
import subprocess
import sys
import time

import pytest

import mambart

# The built-in model takes seconds over 20k tokens here (one thread), so an
# interrupt that waited for the prefill's end would take seconds too.
CMD = [sys.executable, "-m", "mambart", "generate", "--model", "builtin", "--prompt", "-", "-n", "4",
       "--threads", "1", "--temperature", "0"]


@pytest.fixture(scope="module")
def long_prompt():
    tok = mambart.load("builtin").tokenizer
    text = "".join(f"def f{i}(x):\n    return x * {i} + len(str(x))\n\n" for i in range(900))
    n = len(tok.encode(text))
    assert 20000 <= n < 25000
    return text, n


def start_on_a_terminal(prompt, cwd):
    """The CLI with stdin a pipe, stdout a pipe and stderr a terminal."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(CMD, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=slave, cwd=cwd)
    os.close(slave)
    proc.stdin.write(prompt.encode())
    proc.stdin.close()
    return proc, master


def read_until(master, needle, timeout):
    seen, deadline = b"", time.monotonic() + timeout
    while needle not in seen and time.monotonic() < deadline:
        if select.select([master], [], [], 0.1)[0]:
            try:
                seen += os.read(master, 4096)
            except OSError:  # the child closed the terminal
                break
    return seen


def test_ctrl_c_during_a_long_prefill_exits_130_at_once(long_prompt, tmp_path):
    proc, master = start_on_a_terminal(long_prompt[0], tmp_path)
    try:
        seen = read_until(master, b"prefill [", timeout=120)
        assert b"prefill [" in seen, seen[-500:]
        time.sleep(0.2)  # well inside the prefill
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=30)
        elapsed = time.monotonic() - sent
        seen += read_until(master, b"\0", timeout=0.5)
    finally:
        proc.kill()
        os.close(master)
    assert rc == 130, seen[-2000:]
    assert elapsed < 1.0, f"exited {elapsed:.2f} s after SIGINT"
    assert b"Traceback" not in seen and b"KeyboardInterrupt" not in seen, seen[-2000:]
    assert proc.stdout.read() == b""


def test_the_bar_reaches_the_end_and_is_erased(long_prompt, tmp_path):
    text, n = long_prompt
    proc, master = start_on_a_terminal(text, tmp_path)
    try:
        seen = read_until(master, b"decode:", timeout=300)
        rc = proc.wait(timeout=60)
    finally:
        proc.kill()
        os.close(master)
    assert rc == 0, seen[-2000:]
    bar, _, summary = seen.rpartition(b"\r\x1b[K")
    assert f"] 256/{n} tokens (1%)".encode() in bar and f"/{n} tokens (99%)".encode() in bar
    assert summary.lstrip().startswith(b"load:") and b"prefill [" not in summary


def test_no_bar_when_stderr_is_not_a_terminal(long_prompt, tmp_path):
    r = subprocess.run(CMD, input=long_prompt[0][:20000], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "prefill [" not in r.stderr and "\r" not in r.stderr
    assert r.stderr.splitlines()[0].startswith("load:")
