"""`mambart serve` and `mambart chat` held to what a client relies on: stop
strings end the text they are in, a client that goes away frees its rows,
text that is not Unicode and numbers past float's range are 400s, a request
that can never fit the queue is no 503, streamed logprobs add up to the
response's, and the chat keeps its conversation through an interrupted
prefill, a failed /load or a message it cannot take, and a long prompt is
tokenized while the server goes on answering."""
from __future__ import annotations

import io
import json
import socket
import time

import pytest

pytest.importorskip("starlette")
openai = pytest.importorskip("openai")

from mambart.sampling import SamplingParams  # noqa: E402
from mambart.serve.chat import Chat  # noqa: E402
from mambart.serve.template import ChatTemplate  # noqa: E402
from serve_util import Server  # noqa: E402
from test_serve import reference, text  # noqa: E402


@pytest.fixture(scope="module")
def server(chat_dir):
    with Server(chat_dir, "--max-tokens", "10000000") as s:
        yield s


def _sampled_stop(local, ids):
    """(seed, its text, a 2-character stop string met early in it, the tokens
    up to the one that completes it): a seeded text that goes on well past
    its stop string."""
    for seed in range(50):
        out = reference(local, ids, 40, SamplingParams(temperature=1.0, seed=seed))
        full = text(local, out)
        for a in range(3, 12):
            stop = full[a:a + 2]
            at = full.find(stop)
            if stop.isascii() and stop.isprintable() and 3 <= at and len(full) > at + 12:
                used = next(k for k in range(1, len(out) + 1) if stop in text(local, out[:k]))
                return seed, full, stop, used
    raise AssertionError("no seed gives a usable stop string")


def test_a_stop_string_ends_the_text_of_every_choice(server, local, chat_dir):
    """Tokens the scheduler sampled before a stop string's cancel reached it
    are past the end of the choice: not in its text, not in its usage."""
    ids = local.tokenizer.encode("Mamba is")
    seed, full, stop, used = _sampled_stop(local, ids)
    want = full[: full.find(stop)]
    # four equal prompts: each a choice with the same seed, whose tokens are
    # all waiting by the time the handler reads it
    body = {"model": str(chat_dir), "prompt": [ids] * 4, "max_tokens": 40, "temperature": 1.0, "seed": seed,
            "stop": stop}
    r = server.client.post("/v1/completions", json=body)
    assert r.status_code == 200, r.text
    assert [c["text"] for c in r.json()["choices"]] == [want] * 4
    assert [c["finish_reason"] for c in r.json()["choices"]] == ["stop"] * 4
    assert r.json()["usage"]["completion_tokens"] == 4 * used


@pytest.mark.parametrize("n", [1, 3])
def test_a_client_that_leaves_a_long_completion_frees_its_rows(server, chat_dir, n):
    """Not streamed: tokens keep coming, yet the client's going away is seen
    and every one of its choices leaves the batch."""
    body = json.dumps({"model": str(chat_dir), "prompt": "def fib", "max_tokens": 5_000_000, "temperature": 0,
                       "n": n}).encode()
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as s:
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        deadline = time.monotonic() + 20
        while server.client.get("/health").json()["running"] < n and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.client.get("/health").json()["running"] == n
    deadline = time.monotonic() + 10
    while server.client.get("/health").json()["running"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert server.client.get("/health").json() == {"status": "ok", "queue": 0, "running": 0}


@pytest.mark.parametrize("path,body", [
    ("/v1/completions", b'{"model": "M", "prompt": "a \\ud800 b"}'),
    ("/v1/completions", b'{"model": "M", "prompt": ["ok", "\\udc80"]}'),
    ("/v1/chat/completions", b'{"model": "M", "messages": [{"role": "user", "content": "\\ud83d"}]}'),
])
def test_text_that_is_not_unicode_is_a_400(server, chat_dir, path, body):
    """JSON can spell a lone surrogate, which no tokenizer takes: the
    request's fault, in OpenAI's error shape, not a 500."""
    r = server.client.post(path, content=body.replace(b'"M"', json.dumps(str(chat_dir)).encode()),
                           headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error"
    assert "surrogate" in err["message"] or "UTF-8" in err["message"]
    assert err["param"] == ("messages" if "chat" in path else "prompt")


# ---- mambart chat --------------------------------------------------------------------

def _chat(local, chat_dir, max_tokens=5):
    tpl = ChatTemplate.for_model(chat_dir, local.tokenizer)
    return Chat(local, tpl, SamplingParams(temperature=0.0), max_tokens, "You write Python.", out=io.StringIO()), tpl


def test_the_turn_after_an_interrupted_prefill_has_the_whole_conversation(local, chat_dir):
    """Ctrl-C in a later turn's prefill drops the state; the next turn then
    prefills the whole conversation, not only its own message."""
    chat, tpl = _chat(local, chat_dir)
    chat.turn("hello there")
    chat.turn("and again")

    def interrupt(done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        chat.turn("a long message " * 40, progress=interrupt)
    reply = chat.turn("short one")
    ids = local.tokenizer.encode(tpl.render(chat.messages[:-1], add_generation_prompt=True))
    assert chat.decoder.history(0)[: len(ids)] == ids and chat.prefilled == len(ids)
    assert reply == text(local, reference(local, ids, 5, stop_ids=tpl.stop_ids))


def test_a_refused_load_keeps_the_conversation(local, chat_dir, tmp_path):
    chat, _ = _chat(local, chat_dir)
    chat.turn("hello there")
    before, history = list(chat.messages), chat.decoder.history(0)
    two = local.decoder(2)
    two.prefill([[1, 2], [3, 4]])
    two.save_state(tmp_path / "two.state")
    with pytest.raises(ValueError, match="2 sequences"):
        chat.load(str(tmp_path / "two.state"))
    assert chat.messages == before and chat.decoder.batch == 1 and chat.decoder.history(0) == history
    chat.turn("and again")  # the conversation goes on
    assert chat.prefilled < 40


def test_a_request_larger_than_the_queue_is_a_400_not_a_503(chat_dir):
    """503 with Retry-After says "later"; a request with more sequences than
    the queue holds never fits, so a client that retries would loop."""
    with Server(chat_dir, "--max-queue", "8", "--max-batch", "4") as s:
        body = {"model": str(chat_dir), "prompt": ["x"] * 3, "n": 3, "max_tokens": 2}
        r = s.client.post("/v1/completions", json=body)
        assert r.status_code == 400, r.text
        assert r.json()["error"]["param"] == "n" and "retry-after" not in r.headers
        assert s.client.post("/v1/completions", json={**body, "n": 2}).status_code == 200  # 6 fit
        assert s.client.get("/health").json() == {"status": "ok", "queue": 0, "running": 0}


def test_streamed_logprobs_are_the_non_streamed_ones(server, chat_dir):
    """Chunk by chunk, a streamed completion's logprobs add up to the
    response's: text_offset counts on across chunks (it restarted at 0 in
    every chunk)."""
    body = {"model": str(chat_dir), "prompt": ["def fib(n):", "import numpy"], "n": 2, "max_tokens": 8,
            "temperature": 1.0, "seed": 5, "logprobs": 2, "echo": True}
    whole = server.client.post("/v1/completions", json=body).json()["choices"]
    got = [{"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []} for _ in whole]
    with server.client.stream("POST", "/v1/completions", json={**body, "stream": True}) as r:
        for line in r.iter_lines():
            if line.startswith("data: {"):
                (c,) = json.loads(line[len("data: "):])["choices"]
                for key, v in (c["logprobs"] or {}).items():
                    got[c["index"]][key] += v
    assert got == [c["logprobs"] for c in whole]


@pytest.mark.parametrize("name", ["temperature", "top_p", "presence_penalty", "repetition_penalty"])
def test_a_number_past_floats_range_is_a_400(server, chat_dir, name):
    """JSON integers have any number of digits; float() of one past 1e308
    overflows, which was a 500."""
    for digits in (b"1" + b"0" * 400, b"-1" + b"0" * 400):
        body = b'{"model": %s, "prompt": "hi", "%s": %s}' % (json.dumps(str(chat_dir)).encode(), name.encode(),
                                                            digits)
        r = server.client.post("/v1/completions", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 400, r.text
        assert r.json()["error"]["param"] == name


def test_a_message_that_cannot_be_tokenized_leaves_the_chat_usable(local, chat_dir):
    """Undecodable bytes from the terminal reach the chat as lone surrogates:
    that turn is an error, and the conversation goes on without it (it was
    kept, and every later turn failed on it)."""
    chat, _ = _chat(local, chat_dir)
    chat.turn("hello there")
    before, history = list(chat.messages), chat.decoder.history(0)
    with pytest.raises(ValueError, match="UTF-8"):
        chat.turn("bad \udcff byte")
    assert chat.messages == before and chat.decoder.history(0) == history
    chat.turn("and again")
    assert chat.prefilled < 40  # only the new message: the state was kept


def test_a_long_prompt_is_tokenized_beside_the_event_loop(server, chat_dir):
    # Tokenizing a body-sized prompt takes seconds; meanwhile the server answers.
    import threading

    prompt = "def f(x):\n    return x + 1\n" * 140_000  # 3.9 MB, under the body limit
    done = threading.Event()
    status = []

    def long_request():
        r = server.client.post("/v1/completions", json={"model": str(chat_dir), "prompt": prompt, "max_tokens": 1},
                               timeout=120)
        status.append(r.status_code)
        done.set()

    t = threading.Thread(target=long_request)
    t.start()
    time.sleep(0.3)  # the body is sent and being tokenized
    health = server.client.get("/health", timeout=60)
    answered_first = not done.is_set()
    t.join()
    assert health.status_code == 200 and status == [400]  # over the prompt-token limit
    assert answered_first


def test_a_seeded_chat_draws_each_reply_from_its_own_stream(local, chat_dir, monkeypatch):
    # Every reply drew from seed itself: the same numbers turn after turn.
    tpl = ChatTemplate.for_model(chat_dir, local.tokenizer)
    rows = []
    make = SamplingParams.make_sampler
    monkeypatch.setattr(SamplingParams, "make_sampler", lambda self, row=0: rows.append(row) or make(self, row))

    def conversation():
        chat = Chat(local, tpl, SamplingParams(temperature=1.5, seed=7), 6, out=io.StringIO())
        return [chat.turn(m) for m in ("hello", "again", "more")], chat

    first, chat = conversation()
    assert rows == [0, 1, 2]
    assert conversation()[0] == first  # a seeded conversation repeats
    chat.reset()
    chat.turn("hello")
    assert rows[-1] == 0  # a reset conversation starts over
