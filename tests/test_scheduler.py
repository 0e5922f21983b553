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


def test_a_prompt_never_shares_a_row_with_an_unfinished_prefill(small_model_dir):
    """A prompt given a live row that its iteration leaves unfinished (a longer one joined first,
    past _STEP_AFTER) keeps that row while a live row before it ends; a prompt admitted next must
    not be given the same row. The iterations run by hand, so the order is exact."""
    model = mambart.load(small_model_dir[0], threads=1)
    s = Scheduler(model, max_batch=4, prefill_tokens=512, max_prefill=3)
    with s._cv:  # stop the scheduler's thread: this test runs its iterations
        s._stop = True
        s._cv.notify()
    s._thread.join(timeout=30)
    s._stop = False
    g = SamplingParams(temperature=0.0)
    reqs = [s.submit(Request([1, 2, 3], g, 50, logprobs=0)), s.submit(Request([4, 5, 6], g, 3, logprobs=0))]
    s._iteration()  # both live (rows 0, 1), one step
    reqs += [s.submit(Request(list(range(10, 210)), g, 30, logprobs=0)),  # joins, past _STEP_AFTER
             s.submit(Request(list(range(20, 60)), g, 5, logprobs=0))]   # given live row 3, left unfinished
    s._iteration()  # the 3-token request ends at this step: live rows 0-1, the unfinished prefill in row 3
    assert len(s._live) == 2 and [p.run.row for p in s._prefilling] == [3], "the scenario did not arise"
    reqs.append(s.submit(Request(list(range(100, 140)), g, 5, logprobs=0)))
    s._admit()
    rows = [p.run.row for p in s._prefilling]
    assert len(set(rows)) == len(rows) and min(rows) >= len(s._live), rows
    while s.busy:
        s._iteration()
    for r in reqs:
        got = []
        while not r.events.empty():
            ev = r.events.get()
            if isinstance(ev, TokenEvent):
                got.append((ev.token, ev.logprob))
        assert got == _alone(model, r.ids, r.params, r.max_tokens, 0)


def _counting_copies(s):
    calls = []
    copy = s.decoder.copy_row
    s.decoder.copy_row = lambda src, dst: (calls.append((src, dst)), copy(src, dst))[1]
    return calls


def _three_joiners(model, prompt_len):
    """Three requests queued together (greedy, 4 tokens each): for each, the
    (prefilled tokens, decode steps) when its first token came; the rows
    copied; the steps run; and whether each returned what it returns alone."""
    s = Scheduler(model, max_batch=4, prefill_tokens=1000)
    copies = _counting_copies(s)
    seen = []
    try:
        reqs = []
        with s._cv:  # all three wait in the queue when the scheduler next looks
            for i in range(3):
                req = Request(list(range(1 + i, prompt_len + 1 + i)), SamplingParams(temperature=0.0), 4)
                req.sink = lambda ev, req=req: (seen.append((s.prefilled_tokens, s.steps))
                                                if isinstance(ev, TokenEvent) and req.generated == 1 else None,
                                                req.events.put(ev))
                reqs.append(s.submit(req))
        got = [_collect(r) for r in reqs]
    finally:
        s.close()
    alone = [[(t, None) for t, _ in _alone(model, r.ids, SamplingParams(temperature=0.0), 4, 0)] for r in reqs]
    return seen, copies, s.steps, got == alone


def test_first_token_comes_right_after_its_own_prefill(small_model_dir):
    """Short joiners prefilled in one iteration: each gets its first token
    before the next one's prefill and before any decode step; prompts the
    budget finishes go straight into live rows (no copies), and a row that
    ended is never stepped."""
    model = mambart.load(small_model_dir[0], threads=1)
    seen, copies, steps, same = _three_joiners(model, 40)
    assert seen == [(40, 0), (80, 0), (120, 0)]
    assert copies == []
    assert steps == 3  # 4 tokens each: the 4th is sampled and the rows end unstepped
    assert same


def test_long_joiners_each_get_a_step_before_the_next_prefill(small_model_dir):
    """Past 128 prefilled tokens an iteration ends at the next prompt that
    finishes: the live rows (and the one that just joined) take a step
    before the next prompt's prefill, so they wait for one prompt at a time."""
    model = mambart.load(small_model_dir[0], threads=1)
    seen, copies, _, same = _three_joiners(model, 200)
    assert seen == [(200, 0), (400, 1), (600, 2)]
    assert all(src < 4 for src, _ in copies)  # every one prefilled in a live row (copies: rows that ended)
    assert same


def test_a_prompt_longer_than_the_budget_joins_from_a_prefill_row(small_model_dir):
    model = mambart.load(small_model_dir[0], threads=1)
    s = Scheduler(model, max_batch=4, prefill_tokens=64)
    copies = _counting_copies(s)
    try:
        ids = list(range(1, 151))
        got = _collect(s.submit(Request(ids, SamplingParams(temperature=0.0), 5, logprobs=0)))
    finally:
        s.close()
    assert copies == [(4, 0)]  # prefilled in row max_batch over three iterations, then moved into row 0
    assert got == _alone(model, ids, SamplingParams(temperature=0.0), 5, 0)
