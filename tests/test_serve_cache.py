"""`mambart serve`'s prefix-state cache end to end: each chat turn prefills
only its new message and its text equals a run without the cache (Mamba-1,
Mamba-2, a hybrid with attention layers); a shared system prompt is
prefilled once; the byte bound holds."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("starlette")
openai = pytest.importorskip("openai")

import mambart  # noqa: E402
from models import make_granite_hybrid, make_mamba, make_mamba2  # noqa: E402
from mambart.serve.template import ChatTemplate  # noqa: E402
from serve_util import Server, make_chat_model  # noqa: E402
from test_serve import reference, text  # noqa: E402

FAMILIES = {
    "mamba1": (make_mamba, {}),
    "mamba2": (make_mamba2, {"hidden_size": 64, "head_dim": 32, "state_size": 16, "n_groups": 2}),
    "hybrid": (make_granite_hybrid, {"layer_types": ("mamba", "attention", "mamba", "attention")}),
}


@pytest.fixture(scope="module", params=list(FAMILIES))
def family_dir(request, tmp_path_factory):
    make, kw = FAMILIES[request.param]
    return make_chat_model(tmp_path_factory.mktemp(f"chat-{request.param}"), make=make, **kw)


def _counter(server, metric: str) -> float:
    for line in server.client.get("/metrics").text.splitlines():
        if line.startswith(metric + " "):
            return float(line.split()[1])
    raise AssertionError(f"no metric {metric}")


def _client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0, timeout=60)


SYSTEM = "You answer questions about this code.\n" + "\n".join(
    f"x{i} = np.zeros(({i}, 4), dtype=np.float32)  # line {i}" for i in range(60))


@pytest.mark.parametrize("stream", [False, True])
def test_each_chat_turn_prefills_only_its_new_message(family_dir, stream):
    """Turn k finds everything before its new message cached (the previous
    prompt and reply, as the template renders them) and prefills only the
    rest; its text equals a cold run of the whole prompt alone, bit for bit."""
    local = mambart.load(family_dir, threads=1)
    tpl = ChatTemplate.for_model(family_dir, local.tokenizer)
    model = str(family_dir)
    messages = [{"role": "system", "content": SYSTEM}]
    with Server(family_dir) as s, _client(s) as c:
        for k in range(4):
            before = tpl.render(messages, add_generation_prompt=False) if k else ""
            messages.append({"role": "user", "content": f"question {k}: what does line {k} of the code do?"})
            ids = local.tokenizer.encode(tpl.render(messages, add_generation_prompt=True))
            prefilled = _counter(s, "mambart_prefilled_tokens_total")
            if stream:
                chunks = list(c.chat.completions.create(model=model, messages=messages, max_tokens=12, temperature=0,
                                                        stream=True, stream_options={"include_usage": True}))
                got = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
                usage = chunks[-1].usage
            else:
                r = c.chat.completions.create(model=model, messages=messages, max_tokens=12, temperature=0,
                                              logprobs=True)
                got, usage = r.choices[0].message.content, r.usage
            want, lps = reference(local, ids, 12, stop_ids=tpl.stop_ids, logprobs=True)
            assert got == text(local, want), f"turn {k}"
            if not stream:  # the same logits (to float64 rounding of the log-softmax), not only the same argmax
                assert [e.logprob for e in r.choices[0].logprobs.content] == pytest.approx(
                    [lp[t] for lp, t in zip(lps, want)], rel=0, abs=1e-12)
            cached = usage.prompt_tokens_details.cached_tokens
            assert usage.prompt_tokens == len(ids)
            if k == 0:
                assert cached == 0 and len(ids) > 1024
            else:
                assert cached == len(local.tokenizer.encode(before)), (k, len(ids), cached)
                assert len(ids) - cached < 80  # the new message and the template's markers
            assert _counter(s, "mambart_prefilled_tokens_total") - prefilled == len(ids) - cached
            messages.append({"role": "assistant", "content": got})
        assert _counter(s, "mambart_prefetched_tokens_total") > 0  # the replies, prefilled after each turn


def test_shared_system_prompt_is_prefilled_once(chat_dir):
    system = "You are a careful assistant for this project.\n" * 200
    with Server(chat_dir) as s, _client(s) as c:
        lengths, cached = [], []
        for q in range(8):
            messages = [{"role": "system", "content": system}, {"role": "user", "content": f"question {q}?"}]
            r = c.chat.completions.create(model=str(chat_dir), messages=messages, max_tokens=4, temperature=0)
            lengths.append(r.usage.prompt_tokens)
            cached.append(r.usage.prompt_tokens_details.cached_tokens)
        prefilled = _counter(s, "mambart_prefilled_tokens_total")
    local = mambart.load(chat_dir, threads=1)
    tpl = ChatTemplate.for_model(chat_dir, local.tokenizer)
    shared = len(local.tokenizer.encode(tpl.render([{"role": "system", "content": system}],
                                                   add_generation_prompt=False)))
    # the later questions start where the system prompt ends: it was prefilled once
    assert shared > 2000 and cached == [0] + [shared] * 7, (shared, cached)
    assert prefilled == lengths[0] + sum(n - shared for n in lengths[1:])


def test_cache_byte_bound_holds(chat_dir):
    with Server(chat_dir, "--cache-mb", "0.05") as s:
        bound = _counter(s, "mambart_cache_max_bytes")
        rng = np.random.default_rng(0)
        for i in range(20):
            r = s.client.post("/v1/completions", json={"model": str(chat_dir), "max_tokens": 2,
                                                      "prompt": rng.integers(1, 250, 40 + i).tolist()})
            assert r.status_code == 200
            assert _counter(s, "mambart_cache_bytes") <= bound
        assert _counter(s, "mambart_cache_evictions_total") > 0
        assert _counter(s, "mambart_cache_entries") >= 1
