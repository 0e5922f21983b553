"""`mambart serve` end to end: a subprocess on a free loopback port with a tiny
model, spoken to with the official openai client and raw HTTP (httpx).

References are computed in this process with mambart's own decoder, so the
server is held to exactly what the runtime computes for one sequence alone.
"""
from __future__ import annotations

import concurrent.futures as cf
import json
import signal
import time

import httpx
import numpy as np
import pytest

pytest.importorskip("starlette")
openai = pytest.importorskip("openai")

import mambart  # noqa: E402
from mambart.sampling import SamplingParams  # noqa: E402
from mambart.serve.template import ChatTemplate  # noqa: E402
from serve_util import Server, make_chat_model  # noqa: E402

@pytest.fixture(scope="module")
def server(chat_dir):
    with Server(chat_dir, "--max-batch", "16", "--cache-mb", "64") as s:
        yield s


@pytest.fixture(scope="module")
def client(server):
    with openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=60) as c:
        yield c


def name(chat_dir) -> str:
    return str(chat_dir)


# ---- references: one sequence alone, mambart's own decoder --------------------

def reference(model, ids, max_tokens, params=SamplingParams(temperature=0.0), stop_ids=(), row=0,
              logprobs=False):
    """Tokens (and per-token log-softmax rows) of one sequence run alone."""
    d = model.decoder(1)
    d.prefill([ids])
    s = params.make_sampler(row)
    out, lps = [], []
    eos = model.tokenizer.eos_token_id
    for _ in range(max_tokens):
        logits = d.row_logits(0)[: model.vocab_limit].astype(np.float64)
        t = int(d.sample_rows([s])[0])
        if t == eos or t in stop_ids:
            break
        out.append(t)
        if logprobs:
            m = logits.max()
            lps.append(logits - m - np.log(np.exp(logits - m).sum()))
        d.step([t])
    return (out, lps) if logprobs else out


def text(model, ids) -> str:
    """What the server returns for generated ids: special tokens are no text."""
    return model.tokenizer.decode(ids, skip_special_tokens=True)


def chat_ids(model, chat_dir, messages):
    tpl = ChatTemplate.for_model(chat_dir, model.tokenizer)
    return model.tokenizer.encode(tpl.render(messages, add_generation_prompt=True)), tpl.stop_ids


# ---- basics -------------------------------------------------------------------

def test_models_health_and_metrics(server, client, chat_dir):
    assert [m.id for m in client.models.list().data] == [name(chat_dir)]
    assert client.models.retrieve(name(chat_dir)).id == name(chat_dir)
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such/model")
    assert server.client.get("/health").json()["status"] == "ok"
    r = server.client.get("/metrics")
    assert r.status_code == 200 and "mambart_generated_tokens_total" in r.text


def test_completion_equals_the_runtime_and_counts_usage(client, local, chat_dir):
    prompt = "def fibonacci(n):"
    ids = local.tokenizer.encode(prompt)
    r = client.completions.create(model=name(chat_dir), prompt=prompt, max_tokens=12, temperature=0)
    want = reference(local, ids, 12)
    assert r.choices[0].text == text(local, want)
    assert r.choices[0].finish_reason == "length" if len(want) == 12 else "stop"
    assert r.usage.prompt_tokens == len(ids) and r.usage.completion_tokens == len(want)
    assert r.usage.total_tokens == len(ids) + len(want)
    # token ids as the prompt, and echo
    r2 = client.completions.create(model=name(chat_dir), prompt=ids, max_tokens=12, temperature=0, echo=True)
    assert r2.choices[0].text == prompt + text(local, want)


def test_chat_equals_the_runtime_and_streams_the_same(client, local, chat_dir):
    messages = [{"role": "system", "content": "You write Python."}, {"role": "user", "content": "fibonacci?"}]
    ids, stop_ids = chat_ids(local, chat_dir, messages)
    want = text(local, reference(local, ids, 10, stop_ids=stop_ids))
    r = client.chat.completions.create(model=name(chat_dir), messages=messages, max_tokens=10, temperature=0)
    assert r.choices[0].message.role == "assistant" and r.choices[0].message.content == want
    assert r.usage.prompt_tokens == len(ids)
    pieces, usage, finish = [], None, None
    for chunk in client.chat.completions.create(model=name(chat_dir), messages=messages, max_tokens=10,
                                                temperature=0, stream=True, stream_options={"include_usage": True}):
        if chunk.usage is not None:
            usage = chunk.usage
        for c in chunk.choices:
            pieces.append(c.delta.content or "")
            finish = c.finish_reason or finish
    assert "".join(pieces) == want and finish in ("length", "stop")
    assert usage.prompt_tokens == len(ids) and usage.completion_tokens == r.usage.completion_tokens
    assert usage.prompt_tokens_details.cached_tokens == len(ids)  # the same prompt again: a full hit


def test_streamed_completion_is_sse_ending_in_done(server, chat_dir, local):
    body = {"model": name(chat_dir), "prompt": "import numpy", "max_tokens": 8, "temperature": 0, "stream": True}
    with server.client.stream("POST", "/v1/completions", json=body) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in r.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line[len("data: "):]) for line in lines[:-1]]
    assert all(c["object"] == "text_completion" for c in chunks)
    got = "".join(c["choices"][0]["text"] for c in chunks)
    assert got == text(local, reference(local, local.tokenizer.encode("import numpy"), 8))


def test_logprobs_are_the_log_softmax_of_the_logits(client, local, chat_dir):
    ids = local.tokenizer.encode("The quick brown")
    want, lps = reference(local, ids, 6, logprobs=True)
    r = client.completions.create(model=name(chat_dir), prompt=ids, max_tokens=6, temperature=0, logprobs=3)
    lp = r.choices[0].logprobs
    assert len(lp.token_logprobs) == len(want)
    for i, t in enumerate(want):
        assert lp.token_logprobs[i] == pytest.approx(lps[i][t], abs=1e-9)
        top = np.argsort(-lps[i], kind="stable")[:3]
        assert list(lp.top_logprobs[i].values()) == pytest.approx([lps[i][j] for j in top], abs=1e-9)
    messages = [{"role": "user", "content": "hi"}]
    cids, stop_ids = chat_ids(local, chat_dir, messages)
    want, lps = reference(local, cids, 5, stop_ids=stop_ids, logprobs=True)
    r = client.chat.completions.create(model=name(chat_dir), messages=messages, max_tokens=5, temperature=0,
                                       logprobs=True, top_logprobs=2)
    content = r.choices[0].logprobs.content
    assert [c.logprob for c in content] == pytest.approx([lps[i][t] for i, t in enumerate(want)], abs=1e-9)
    assert all(len(c.top_logprobs) == 2 for c in content)
    assert [c.bytes for c in content] == [list(local.tokenizer.token_bytes(t)) for t in want]


def test_echo_with_logprobs_scores_the_prompt(server, client, local, chat_dir):
    """echo + logprobs: the prompt's tokens come first, the first with no
    logprob, each other with the log-softmax of the logits before it (those of
    a prefill with every position's logits), then the completion's."""
    ids = local.tokenizer.encode("def fibonacci(n):\n    return fibonacci(n - 1)")
    logits = local.decoder(1).prefill([ids], all_logits=True)[:, : local.vocab_limit].astype(np.float64)
    m = logits.max(axis=1, keepdims=True)
    plps = logits - m - np.log(np.exp(logits - m).sum(axis=1, keepdims=True))
    want, lps = reference(local, ids, 4, logprobs=True)
    r = client.completions.create(model=name(chat_dir), prompt=ids, max_tokens=4, temperature=0, echo=True,
                                  logprobs=2)
    lp = r.choices[0].logprobs
    assert r.choices[0].text == text(local, ids) + text(local, want)
    assert lp.tokens == [local.tokenizer.decode([t]) for t in ids + want]
    assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
    assert lp.token_logprobs[1:] == pytest.approx([plps[i - 1][ids[i]] for i in range(1, len(ids))]
                                                  + [lps[i][t] for i, t in enumerate(want)], abs=1e-9)
    for i in range(1, len(ids)):
        top = np.argsort(-plps[i - 1], kind="stable")[:2]
        assert list(lp.top_logprobs[i].values()) == pytest.approx([plps[i - 1][j] for j in top], abs=1e-9)
    assert lp.text_offset[: 3] == [0, len(lp.tokens[0]), len(lp.tokens[0]) + len(lp.tokens[1])]
    # streamed: the prompt's chunk carries its logprobs; max_tokens 0 scores the prompt alone
    body = {"model": name(chat_dir), "prompt": ids, "max_tokens": 0, "echo": True, "logprobs": 1, "stream": True}
    with server.client.stream("POST", "/v1/completions", json=body) as resp:
        chunks = [json.loads(line[6:]) for line in resp.iter_lines() if line.startswith("data: {")]
    first = chunks[0]["choices"][0]
    assert first["text"] == text(local, ids) and first["logprobs"]["token_logprobs"][0] is None
    assert first["logprobs"]["token_logprobs"][1:] == pytest.approx(lp.token_logprobs[1:len(ids)], abs=1e-9)
    assert "".join(c["choices"][0]["text"] for c in chunks) == text(local, ids)


def test_stop_strings(client, local, chat_dir):
    ids = local.tokenizer.encode("def fibonacci(n):")
    full = text(local, reference(local, ids, 24))
    stop = full[len(full) // 2: len(full) // 2 + 2]
    assert stop.strip(), full
    r = client.completions.create(model=name(chat_dir), prompt=ids, max_tokens=24, temperature=0, stop=[stop])
    assert r.choices[0].text == full[: full.find(stop)] and r.choices[0].finish_reason == "stop"
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model=name(chat_dir), prompt=ids, max_tokens=24, temperature=0, stop=stop, stream=True))
    assert streamed == full[: full.find(stop)]


def _seeded_with_special(local, ids, special, stop_ids=()):
    """(seed, tokens) of a sampled text in which the special token `special`
    comes after some text and before its end."""
    for seed in range(200):
        out = reference(local, ids, 40, SamplingParams(temperature=1.5, seed=seed), stop_ids=stop_ids)
        if special in out[1:-1]:
            return seed, out
    raise AssertionError(f"no seed samples token {special}")


def test_special_tokens_are_not_text(server, client, local, chat_dir):
    """Like `mambart chat` (and OpenAI): a sampled special token that does not
    end the text is left out of it, streamed or not, and out of the logprobs'
    token strings; usage still counts it."""
    tok = local.tokenizer
    ids = tok.encode("def fibonacci(n):")
    im_start = tok.token_to_id("<|im_start|>")
    seed, out = _seeded_with_special(local, ids, im_start)
    want = text(local, out)
    assert want != tok.decode(out)
    kw = dict(model=name(chat_dir), prompt=ids, max_tokens=40, temperature=1.5, seed=seed)
    r = client.completions.create(logprobs=1, **kw)
    assert r.choices[0].text == want and r.usage.completion_tokens == len(out)
    lp = r.choices[0].logprobs
    assert lp.tokens == [tok.decode([t], skip_special_tokens=True) for t in out]
    assert lp.tokens[out.index(im_start)] == ""
    assert lp.text_offset == [sum(map(len, lp.tokens[:i])) for i in range(len(lp.tokens))]
    assert "".join(c.choices[0].text for c in client.completions.create(stream=True, **kw)) == want
    # chat: <|im_start|> is no stop token there
    messages = [{"role": "user", "content": "fibonacci?"}]
    cids, stop_ids = chat_ids(local, chat_dir, messages)
    seed, out = _seeded_with_special(local, cids, im_start, stop_ids)
    want = tok.decode(out, skip_special_tokens=True)
    kw = dict(model=name(chat_dir), messages=messages, max_tokens=40, temperature=1.5, seed=seed)
    r = client.chat.completions.create(logprobs=True, **kw)
    assert r.choices[0].message.content == want and r.usage.completion_tokens == len(out)
    content = r.choices[0].logprobs.content
    assert content[out.index(im_start)].token == "" and content[out.index(im_start)].bytes == []
    assert bytes(b for c in content for b in c.bytes).decode("utf-8", "replace") == want
    streamed = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(stream=True, **kw))
    assert streamed == want


def test_a_stop_string_that_is_a_special_token_stops_there(client, local, chat_dir):
    """Special tokens are not text, but a stop string that is one's text (the
    usual stop=["<|im_end|>"] of a completion on a chat model) still ends the
    text at that token."""
    tok = local.tokenizer
    ids = tok.encode("def fibonacci(n):")
    im_end = tok.token_to_id("<|im_end|>")
    seed, out = _seeded_with_special(local, ids, im_end)
    at = out.index(im_end)
    kw = dict(model=name(chat_dir), prompt=ids, max_tokens=40, temperature=1.5, seed=seed, stop=["<|im_end|>"])
    r = client.completions.create(**kw)
    assert r.choices[0].text == tok.decode(out[:at], skip_special_tokens=True)
    assert r.choices[0].finish_reason == "stop" and r.usage.completion_tokens == at + 1
    streamed = "".join(c.choices[0].text for c in client.completions.create(stream=True, **kw))
    assert streamed == r.choices[0].text


def test_n_and_seed(client, local, chat_dir):
    ids = local.tokenizer.encode("Mamba is")
    kw = dict(model=name(chat_dir), prompt=ids, max_tokens=10, temperature=1.0, seed=7)
    a = client.completions.create(n=3, **kw)
    b = client.completions.create(n=3, **kw)
    assert [c.text for c in a.choices] == [c.text for c in b.choices]
    assert [c.index for c in a.choices] == [0, 1, 2]
    for j, c in enumerate(a.choices):  # choice j draws with seed + j
        assert c.text == text(local, reference(local, ids, 10, SamplingParams(temperature=1.0, seed=7), row=j))
    assert len({c.text for c in a.choices}) > 1
    assert a.usage.prompt_tokens == len(ids)


def _openai_penalised_reference(model, ids, max_tokens, presence, frequency):
    """Greedy decoding with OpenAI's formula applied here in numpy (float32)."""
    d = model.decoder(1)
    d.prefill([ids])
    counts: dict[int, int] = {}
    out = []
    for _ in range(max_tokens):
        logits = d.row_logits(0)[: model.vocab_limit].copy()
        for t, c in counts.items():
            logits[t] -= np.float32(frequency) * np.float32(c) + np.float32(presence)
        t = int(np.argmax(logits))
        if t == model.tokenizer.eos_token_id:
            break
        out.append(t)
        counts[t] = counts.get(t, 0) + 1
        d.step([t])
    return out


@pytest.mark.parametrize("presence,frequency", [(1.5, 0.0), (0.0, 1.2), (0.6, 0.4)])
def test_presence_and_frequency_penalties(client, local, chat_dir, presence, frequency):
    ids = local.tokenizer.encode("def fibonacci(n):")
    want = _openai_penalised_reference(local, ids, 16, presence, frequency)
    assert want != reference(local, ids, 16)  # the penalty changes the text
    r = client.completions.create(model=name(chat_dir), prompt=ids, max_tokens=16, temperature=0,
                                  presence_penalty=presence, frequency_penalty=frequency)
    assert r.choices[0].text == text(local, want)


# ---- batching never changes a result --------------------------------------------

def test_sixteen_concurrent_requests_equal_each_alone(server, chat_dir, local):
    rng = np.random.default_rng(3)
    V = local.vocab_limit
    bodies = []
    for i in range(16):
        n = int(rng.choice([3, 17, 90, 300, 700]))  # 300 and 700: prefilled in slices beside the decodes
        body = {"model": name(chat_dir), "prompt": rng.integers(1, V, n).tolist(), "max_tokens": int(rng.integers(8, 30))}
        if i % 2:
            body.update(temperature=0)
        else:
            body.update(temperature=float(rng.choice([0.7, 1.0, 1.3])), top_k=int(rng.choice([0, 20])), seed=100 + i)
        if i % 5 == 0:
            body.update(presence_penalty=0.5, top_p=0.9)
        bodies.append(body)

    def post(body):
        r = httpx.post(server.url + "/v1/completions", json=body, timeout=120)
        assert r.status_code == 200, r.text
        return r.json()["choices"][0]["text"]

    alone = [post(b) for b in bodies]
    with cf.ThreadPoolExecutor(16) as pool:
        together = list(pool.map(post, bodies))
    assert together == alone
    # and alone equals the runtime's own single-sequence run
    for b, got in zip(bodies[1::2], alone[1::2]):
        assert got == text(local, reference(local, b["prompt"], b["max_tokens"]))


# ---- invalid requests -----------------------------------------------------------

def test_invalid_requests_get_openai_errors(server, chat_dir, client):
    m = name(chat_dir)
    ok_chat = {"model": m, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    ok_cmpl = {"model": m, "prompt": "hi", "max_tokens": 2}
    cases = [
        ("/v1/completions", b"{not json", 400),
        ("/v1/completions", b"[1, 2]", 400),
        ("/v1/completions", b"", 400),
        ("/v1/completions", {"prompt": "hi"}, 400),
        ("/v1/completions", {**ok_cmpl, "model": 3}, 400),
        ("/v1/completions", {**ok_cmpl, "model": "no-such-model"}, 404),
        ("/v1/completions", {"model": m}, 400),
        ("/v1/completions", {**ok_cmpl, "prompt": ""}, 400),
        ("/v1/completions", {**ok_cmpl, "prompt": 5}, 400),
        ("/v1/completions", {**ok_cmpl, "prompt": [1, "a"]}, 400),
        ("/v1/completions", {**ok_cmpl, "prompt": [10**9]}, 400),
        ("/v1/completions", {**ok_cmpl, "prompt": [310], "echo": True}, 400),  # the model's id, not the tokenizer's
        ("/v1/completions", {**ok_cmpl, "max_tokens": -1}, 400),
        ("/v1/completions", {**ok_cmpl, "max_tokens": 10**9}, 400),
        ("/v1/completions", {**ok_cmpl, "max_tokens": "16"}, 400),
        ("/v1/completions", {**ok_cmpl, "temperature": 3}, 400),
        ("/v1/completions", {**ok_cmpl, "temperature": "hot"}, 400),
        ("/v1/completions", {**ok_cmpl, "top_p": 0}, 400),
        ("/v1/completions", {**ok_cmpl, "top_p": 1.5}, 400),
        ("/v1/completions", {**ok_cmpl, "n": 0}, 400),
        ("/v1/completions", {**ok_cmpl, "n": 1000}, 400),
        ("/v1/completions", {**ok_cmpl, "stop": 3}, 400),
        ("/v1/completions", {**ok_cmpl, "stop": ["a", "b", "c", "d", "e"]}, 400),
        ("/v1/completions", {**ok_cmpl, "presence_penalty": 5}, 400),
        ("/v1/completions", {**ok_cmpl, "frequency_penalty": -2.5}, 400),
        ("/v1/completions", {**ok_cmpl, "logprobs": 50}, 400),
        ("/v1/completions", {**ok_cmpl, "seed": -1}, 400),
        ("/v1/completions", {**ok_cmpl, "stream": "yes"}, 400),
        ("/v1/completions", {**ok_cmpl, "stream_options": {"include_usage": True}}, 400),
        ("/v1/completions", {**ok_cmpl, "suffix": "x"}, 400),
        ("/v1/completions", {**ok_cmpl, "logit_bias": {"1": 5}}, 400),
        ("/v1/completions", {**ok_cmpl, "prompt": [1] * 40000}, 400),
        ("/v1/completions", {**ok_cmpl, "repetition_penalty": 0}, 400),
        ("/v1/completions", {**ok_cmpl, "min_p": 2}, 400),
        ("/v1/chat/completions", {**ok_chat, "messages": []}, 400),
        ("/v1/chat/completions", {**ok_chat, "messages": "hi"}, 400),
        ("/v1/chat/completions", {**ok_chat, "messages": [{"content": "hi"}]}, 400),
        ("/v1/chat/completions", {**ok_chat, "messages": [{"role": "user", "content": 5}]}, 400),
        ("/v1/chat/completions", {**ok_chat, "messages": [{"role": "wizard", "content": "hi"}]}, 400),
        ("/v1/chat/completions", {**ok_chat, "top_logprobs": 3}, 400),
        ("/v1/chat/completions", {**ok_chat, "logprobs": True, "top_logprobs": 99}, 400),
        ("/v1/chat/completions", {**ok_chat, "max_completion_tokens": -5}, 400),
        ("/v1/chat/completions", {**ok_chat, "tools": [{"type": "function"}]}, 400),
        ("/v1/completions", b'{"model": "' + m.encode() + b'", "prompt": "' + b"a" * (10 << 20) + b'"}', 413),
        ("/v1/nothing", ok_cmpl, 404),
    ]
    assert len(cases) >= 25
    for path, body, status in cases:
        if isinstance(body, bytes):
            r = server.client.post(path, content=body, headers={"content-type": "application/json"})
        else:
            r = server.client.post(path, json=body)
        assert r.status_code == status, (path, body if not isinstance(body, bytes) else body[:60], r.text[:300])
        err = r.json()["error"]
        assert set(err) == {"message", "type", "param", "code"} and isinstance(err["message"], str), err
    assert server.client.get("/v1/completions").status_code == 405
    # ids the model has but the tokenizer does not (padding rows): fine without echo
    assert server.client.post("/v1/completions", json={**ok_cmpl, "prompt": [5, 310]}).status_code == 200
    # still serving
    r = client.completions.create(model=m, prompt="hi", max_tokens=3, temperature=0)
    assert r.usage.completion_tokens >= 0 and server.proc.poll() is None
    # the template's refusal names the role
    r = server.client.post("/v1/chat/completions", json={**ok_chat, "messages": [{"role": "wizard", "content": "x"}]})
    assert "wizard" in r.json()["error"]["message"]


# ---- load and faults ---------------------------------------------------------------------

def _stream_first_chunks(url, body, n_chunks):
    """Opens a streaming request; returns (client, the response's line iterator,
    the first n_chunks lines). Keep the iterator: dropping it closes the stream."""
    c = httpx.Client(timeout=60)
    r = c.send(c.build_request("POST", url + "/v1/completions", json=body), stream=True)
    it = r.iter_lines()
    got = []
    for line in it:
        if line:
            got.append(line)
        if len(got) >= n_chunks:
            break
    return c, (r, it), got


def test_disconnect_frees_the_row_and_full_queue_is_503(chat_dir):
    with Server(chat_dir, "--max-batch", "1", "--max-queue", "1", "--max-tokens", "1000000") as s:
        # greedy on this prompt never meets eos: the row stays busy until the client leaves
        long = {"model": name(chat_dir), "prompt": "def fib", "max_tokens": 1000000, "stream": True,
                "temperature": 0}
        c, (r, it), got = _stream_first_chunks(s.url, long, 2)
        assert got and s.client.get("/health").json()["running"] == 1
        # one waits in the queue, the next is refused
        waiting = httpx.Client(timeout=60)
        fut = cf.ThreadPoolExecutor(1).submit(
            waiting.post, s.url + "/v1/completions", json={"model": name(chat_dir), "prompt": "x", "max_tokens": 2})
        deadline = time.monotonic() + 20
        while s.client.get("/health").json()["queue"] < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        busy = s.client.post("/v1/completions", json={"model": name(chat_dir), "prompt": "y", "max_tokens": 2})
        assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
        assert busy.json()["error"]["code"] == "server_busy"
        # the streaming client goes away: its row is freed, the queued request runs at once
        r.close()
        c.close()
        t0 = time.monotonic()
        assert fut.result(timeout=20).status_code == 200
        assert time.monotonic() - t0 < 10
        waiting.close()
        deadline = time.monotonic() + 10
        while s.client.get("/health").json()["running"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert s.client.get("/health").json() == {"status": "ok", "queue": 0, "running": 0}


def test_sigterm_drains_running_requests(chat_dir):
    s = Server(chat_dir)
    try:
        body = {"model": name(chat_dir), "prompt": "def fib", "max_tokens": 300, "temperature": 0, "stream": True,
                "stream_options": {"include_usage": True}}
        c, (r, it), got = _stream_first_chunks(s.url, body, 2)
        s.signal(signal.SIGTERM)
        lines = got + [line for line in it if line]
        c.close()
        assert lines[-1] == "data: [DONE]"
        usage = json.loads(lines[-2][len("data: "):])["usage"]
        assert usage["completion_tokens"] == 300
        assert s.proc.wait(timeout=30) == 0
        with pytest.raises(httpx.TransportError):
            httpx.get(s.url + "/health", timeout=2)
    finally:
        s.stop()


def test_api_key(chat_dir):
    with Server(chat_dir, "--api-key", "sekret") as s:
        body = {"model": name(chat_dir), "prompt": "hi", "max_tokens": 2}
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "sekret"}):
            r = s.client.post("/v1/completions", json=body, headers=headers)
            assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
        assert s.client.get("/v1/models").status_code == 401
        for auth in ("Bearer sekret", "bearer sekret", "BEARER  sekret"):
            assert s.client.post("/v1/completions", json=body, headers={"Authorization": auth}).status_code == 200
        with openai.OpenAI(base_url=s.url + "/v1", api_key="sekret", max_retries=0) as c:
            assert c.models.list().data[0].id == name(chat_dir)
        with openai.OpenAI(base_url=s.url + "/v1", api_key="nope", max_retries=0) as c:
            with pytest.raises(openai.AuthenticationError):
                c.models.list()


def test_model_without_template_is_400_for_chat(tmp_path):
    plain = make_chat_model(tmp_path / "plain", template=None)
    with Server(plain) as s:
        r = s.client.post("/v1/chat/completions", json={"model": str(plain), "max_tokens": 2,
                                                        "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 400 and "chat template" in r.json()["error"]["message"]
        assert s.client.post("/v1/completions", json={"model": str(plain), "prompt": "hi",
                                                      "max_tokens": 2}).status_code == 200
    tpl = tmp_path / "t.jinja"
    tpl.write_text("{% for m in messages %}{{ m['content'] }}\n{% endfor %}")
    with Server(plain, "--chat-template", str(tpl)) as s:
        r = s.client.post("/v1/chat/completions", json={"model": str(plain), "max_tokens": 2,
                                                        "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 200 and r.json()["usage"]["prompt_tokens"] == len(
            mambart.load(plain, threads=1).tokenizer.encode("hi\n"))


def test_deeply_nested_request_body_is_a_400(server):
    body = '{"model": "m", "prompt": ' + "[" * 100_000 + "]" * 100_000 + "}"
    r = httpx.post(server.url + "/v1/completions", content=body, headers={"Content-Type": "application/json"},
                   timeout=60)
    assert r.status_code == 400 and "nests deeper" in r.text
