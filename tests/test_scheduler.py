"""The scheduler in process (no HTTP): requests prefilled side by side within
a token budget and decoded together return exactly what each returns alone,
for every family; a long prefill never stops the running streams."""
from __future__ import annotations

import numpy as np
import pytest

import mambart
from mambart.sampling import SamplingParams
from mambart.serve.scheduler import DoneEvent, Request, Scheduler, TokenEvent, _pick


def _alone(model, ids, params, max_tokens, row):
    """(token, logprob) of one sequence run alone, prefilled at once."""
    d = model.decoder(1)
    d.prefill([ids])
    s = params.make_sampler(row)
    out = []
    for _ in range(max_tokens):
        t = int(d.sample_rows([s])[0])
        if t == model.tokenizer.eos_token_id:
            break
        out.append((t, _pick(d.row_logits(0)[: model.vocab_limit], t, 0)[0]))
        d.step([t])
    return out


def _collect(req):
    out = []
    while True:
        ev = req.events.get(timeout=120)
        if isinstance(ev, DoneEvent):
            assert ev.reason in ("stop", "length"), ev
            return out
        assert isinstance(ev, TokenEvent)
        out.append((ev.token, ev.logprob))


@pytest.mark.parametrize("budget,cache", [(7, True), (100, False), (512, True)])
def test_requests_together_equal_each_alone(any_model_dir, budget, cache):
    model = mambart.load(any_model_dir[0], threads=2)
    rng = np.random.default_rng(budget)
    jobs = []
    for i in range(12):
        ids = rng.integers(1, model.vocab_limit, int(rng.choice([1, 5, 33, 120, 300]))).tolist()
        if i % 2:
            params = SamplingParams(temperature=0.0)
        else:
            params = SamplingParams(temperature=0.9, top_k=int(rng.choice([0, 20])), seed=7 + i,
                                    frequency_penalty=0.5 if i % 4 == 0 else 0.0)
        jobs.append((ids, params, int(rng.integers(3, 12)), i % 3))
    s = Scheduler(model, max_batch=6, cache=mambart.PromptCache(64 << 20) if cache else None,
                  prefill_tokens=budget, max_prefill=3)
    try:
        reqs = [s.submit(Request(ids, params, n, logprobs=0, sampler_row=row)) for ids, params, n, row in jobs]
        got = [_collect(r) for r in reqs]
        # the same prompts again: with the cache, full hits
        again = [_collect(s.submit(Request(ids, params, n, logprobs=0, sampler_row=row)))
                 for ids, params, n, row in jobs[:4]]
    finally:
        s.close()
    want = [_alone(model, ids, params, n, row) for ids, params, n, row in jobs]
    assert got == want  # the same tokens, and the same logits bit for bit
    assert again == want[:4]


def test_a_long_prefill_does_not_stop_the_streams(small_model_dir):
    model = mambart.load(small_model_dir[0], threads=1)
    s = Scheduler(model, max_batch=4, prefill_tokens=64)
    try:
        running = s.submit(Request([5, 6, 7], SamplingParams(temperature=0.0), 10_000))
        while running.generated < 3:
            running.events.get(timeout=60)
        steps = s.steps
        long = s.submit(Request(list(range(1, 250)) * 12, SamplingParams(temperature=0.0), 1))  # 2988 tokens
        _collect(long)
        # one decode step of the running stream after each 64-token budget
        assert s.steps - steps >= 2988 // 64
        s.cancel(running)
    finally:
        s.close()
