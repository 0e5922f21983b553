"""`mambart chat` in a subprocess: turns continue the state, commands, and
Ctrl-C (SIGINT) stopping a long prefill and returning to the prompt."""
from __future__ import annotations

import queue
import signal
import subprocess
import sys
import threading
import time

import pytest

pytest.importorskip("jinja2")

import child  # noqa: E402
from serve_util import make_chat_model  # noqa: E402


class Chat:
    def __init__(self, model_dir, *args):
        env = child.env()
        self.p = subprocess.Popen([sys.executable, "-m", "mambart", "chat", "--model", str(model_dir), "--threads",
                                   "1", "--temperature", "0", *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, env=env, cwd=child.CWD)
        self.err: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: [self.err.put(line) for line in self.p.stderr], daemon=True).start()

    def send(self, line: str) -> None:
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()

    def wait_err(self, prefix: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.err.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line.startswith(prefix):
                return line
        raise AssertionError(f"no stderr line starting with {prefix!r} within {timeout} s")

    def close(self) -> int:
        try:
            self.p.stdin.close()
        except OSError:
            pass
        try:
            return self.p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait(timeout=10)
            raise


@pytest.fixture(scope="module")
def chat_model(tmp_path_factory):
    # Big enough that a long message takes seconds to prefill on one thread.
    return make_chat_model(tmp_path_factory.mktemp("chat-cli"), hidden_size=256, num_hidden_layers=8)


def test_turns_continue_the_state_and_ctrl_c_stops_a_prefill(chat_model, tmp_path):
    c = Chat(chat_model, "--max-tokens", "6", "--system", "You write Python.")
    try:
        c.send("hello there")
        first = int(c.wait_err("(prefilled").split()[1])
        c.send("and again")
        second = int(c.wait_err("(prefilled").split()[1])
        assert second < first and second < 40  # only the new message and its markers
        c.send("x = np.zeros((3, 4)) " * 12000)  # ~100k tokens
        c.wait_err("(prefilling")
        time.sleep(0.3)
        t0 = time.monotonic()
        c.p.send_signal(signal.SIGINT)
        c.wait_err("(stopped)", timeout=10)
        assert time.monotonic() - t0 < 3
        c.send("short one")  # the conversation goes on
        c.wait_err("(prefilled")
        state = tmp_path / "chat.state"
        c.send(f"/save {state}")
        c.wait_err("(saved")
        c.send("/reset")
        c.wait_err("(conversation reset)")
        c.send(f"/load {state}")
        c.wait_err("(loaded")
        c.send("/nonsense")
        c.wait_err("mambart: error: unknown command")
        c.send("/exit")
        assert c.close() == 0
    finally:
        if c.p.poll() is None:
            c.p.kill()
    assert state.stat().st_size > 0
    out = c.p.stdout.read()
    assert out.count("\n") >= 3  # one line per reply


def test_chat_without_template_is_an_error(tmp_path):
    plain = make_chat_model(tmp_path / "plain", template=None)
    r = subprocess.run([sys.executable, "-m", "mambart", "chat", "--model", str(plain)], input="", text=True,
                       capture_output=True, timeout=120, env=child.env(), cwd=child.CWD)
    assert r.returncode == 1 and r.stderr.strip().splitlines()[-1].startswith("mambart: error:")
    assert "chat template" in r.stderr


def test_bare_chat_says_the_builtin_model_is_no_chat_model():
    r = subprocess.run([sys.executable, "-m", "mambart", "chat"], input="hi\n", capture_output=True, text=True,
                       env=child.env(), cwd=child.CWD, timeout=120)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.strip().splitlines()[-1] == ("mambart: error: the built-in model completes Python code and has "
                                                 "no chat template: give --model a chat model (or --chat-template "
                                                 "FILE)")
