"""Helpers for the server tests: a tiny chat model, and `mambart serve` in a
subprocess on a free loopback port (bounded waits, always stopped)."""
from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

import child
from models import CORPUS, make_mamba

CHATML = (
    "{% for m in messages %}"
    "{% if m['role'] not in ['system', 'user', 'assistant'] %}"
    "{{ raise_exception('role ' + m['role'] + ' is not supported') }}"
    "{% endif %}"
    "<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def make_chat_model(out_dir: Path, *, template: str | None = CHATML, make=make_mamba, **kw) -> Path:
    """A tiny random model (make: make_mamba, make_mamba2, make_granite_hybrid
    of tests/models.py, given kw) with a tokenizer that has ChatML's special
    tokens and (unless template is None) a chat template in
    tokenizer_config.json."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(CORPUS, trainer)
    tok.save(str(out_dir / "tokenizer.json"))
    cfg = {"eos_token": "<|endoftext|>", "bos_token": "<|endoftext|>"}
    if template is not None:
        cfg["chat_template"] = template
    (out_dir / "tokenizer_config.json").write_text(json.dumps(cfg))
    make(out_dir, **kw)
    return out_dir


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`mambart serve` on 127.0.0.1:<free port>; .url, .client (httpx), .proc."""

    def __init__(self, model_dir: Path, *args: str, threads: int = 1, startup_s: float = 60.0) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = child.env()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mambart", "serve", "--model", str(model_dir), "--host", "127.0.0.1",
             "--port", str(self.port), "--threads", str(threads), *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=child.CWD, text=True)
        self.client = httpx.Client(base_url=self.url, timeout=30.0)
        deadline = time.monotonic() + startup_s
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}: {self.proc.stdout.read()}")
            try:
                if self.client.get("/health", timeout=2.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("server did not start in time")
            time.sleep(0.1)

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 30.0) -> str:
        """Stops the server (SIGTERM, then SIGKILL); returns its output."""
        self.client.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        with contextlib.suppress(Exception):
            return self.proc.stdout.read()
        return ""

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
