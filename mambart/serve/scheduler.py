"""Continuous batching: one thread owns the model and runs every request.

No HTTP here: `mambart serve`, `mambart chat` and the Python API use it alike.

Rows. The decoder has max_batch + max_prefill rows. The live (decoding)
sequences sit in rows [0, n), so a decode step is one `step` of the first n
rows; when one ends, the last live row is copied into its place. A request
joining is prefilled (from its longest cache hit) within a budget: each
iteration spends at most `prefill_tokens` prompt tokens over the requests
being prefilled, oldest first, before one decode step of the live rows, so
a long prompt never freezes the running streams and a burst of short ones
is prefilled in few steps; once it has prefilled _STEP_AFTER tokens, the
iteration ends at the next prompt that finishes, so the live rows wait for
one such prompt at a time. A prompt that the iteration's budget finishes is
prefilled straight into the next live row; a longer one in a prefill row
(from max_batch on), copied into the live rows when done. Its first token is
sampled as soon as its prefill ends (so it never waits for the other
prefills of the iteration), and it is fed at the iteration's decode step
with the others'; each step's tokens are sampled and sent right after it,
not after the next iteration's prefills. Requests join at the next step and
leave when done: nobody waits for a batch to drain, and a row that ended is
not stepped.

A row's tokens never depend on the batch it runs in or on how its prompt
was cut into prefill slices: every kernel of a step computes each row with
the same arithmetic whatever the number of rows (tested exactly,
tests/test_rows.py), a prefill's arithmetic does not depend on its slices
(mambart/cache.py), and each request has its own sampler (seeded from its
own seed).

`prefetch(ids)` prefills ids into the cache with no request (the end of a
chat reply as the next turn's prompt will hold it); it runs before any
request that joins after it.
"""
from __future__ import annotations

import math
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from ..cache import CacheHit, PrefillRun, PromptCache
from ..sampling import SamplingParams


# Once an iteration has prefilled this many tokens, a prompt whose prefill
# ends there is followed by the decode step, not by the next prompt's
# prefill: the live rows (and the row that just joined, whose first token
# often completes no text alone) wait for one prompt at a time, while a
# burst of short prompts still shares one iteration.
_STEP_AFTER = 128


class QueueFull(Exception):
    """More requests are waiting than the scheduler accepts (max_queue)."""


class ShuttingDown(Exception):
    """The scheduler no longer accepts requests."""


@dataclass
class TokenEvent:
    token: int
    logprob: float | None = None                   # log-softmax of the model's logits at this token
    top: list[tuple[int, float]] | None = None     # the top_logprobs most likely (id, logprob)


@dataclass
class PromptEvent:
    """The prompt's tokens with their logprobs (echo): the first has none (no
    context), each other the log-softmax of the logits before it. Sent once,
    before any TokenEvent."""
    tokens: list[TokenEvent]


@dataclass
class DoneEvent:
    reason: str                 # "stop" (a stop token), "length", "cancelled", "error"
    message: str = ""


@dataclass
class Request:
    """One sequence to generate. Events (TokenEvent, then one DoneEvent) go to
    `sink` from the scheduler's thread; the default sink is a queue.Queue
    (`events`)."""

    ids: Sequence[int]
    params: SamplingParams = field(default_factory=SamplingParams)
    max_tokens: int = 16
    stop_ids: frozenset = frozenset()
    logprobs: int | None = None          # None: off; k >= 0: the chosen token's and the k most likely
    sampler_row: int = 0                 # seed offset: choice i of n draws with seed + i
    marks: Sequence[int] = ()            # prompt positions whose states the cache keeps too
    prompt_logprobs: bool = False        # a PromptEvent first (needs logprobs not None)
    sink: Callable[[object], None] | None = None
    # Filled in by the scheduler:
    cached_tokens: int = 0
    generated: int = 0
    submitted_at: float = 0.0
    first_token_at: float = 0.0

    def __post_init__(self) -> None:
        self.ids = list(self.ids)
        self.events: queue.Queue = queue.Queue()
        if self.sink is None:
            self.sink = self.events.put
        self.cancelled = False
        self.finished = False


class Observer:
    """What the scheduler reports as it runs (metrics); every method optional."""

    def first_token(self, seconds: float) -> None: ...
    def finished(self, request: Request, reason: str) -> None: ...


@dataclass
class _Live:
    request: Request
    sampler: object  # _core.Sampler
    out: list[int] = field(default_factory=list)
    pending: int = 0   # the token sampled and sent last, fed at the next step


@dataclass
class _Prefill:
    run: PrefillRun
    request: Request | None      # None: a prefetch


class Scheduler:
    def __init__(self, model, *, max_batch: int = 16, cache: PromptCache | None = None, max_queue: int = 256,
                 prefill_tokens: int = 512, max_prefill: int = 4, observer: Observer | None = None) -> None:
        # Up to 32 rows the decode matmul keeps each row's arithmetic
        # independent of the others (kernels/matmul.h kMatmulDecodeRows);
        # past it a GEMM takes over, so a larger batch could change results.
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or not 1 <= max_batch <= 32:
            raise ValueError(f"max_batch must be an int in [1, 32], got {max_batch!r}")
        if isinstance(max_queue, bool) or not isinstance(max_queue, int) or max_queue < 1:
            raise ValueError(f"max_queue must be an int >= 1, got {max_queue!r}")
        for name, v in (("prefill_tokens", prefill_tokens), ("max_prefill", max_prefill)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an int >= 1, got {v!r}")
        self.model = model
        self.max_batch = max_batch
        self.max_queue = max_queue
        self.cache = cache
        if cache is not None:
            cache.bind(model)  # states of another model would be wrong starts
        self.prefill_tokens = prefill_tokens
        self.max_prefill = max_prefill
        self.observer = observer or Observer()
        self.decoder = model.decoder(max_batch + max_prefill)
        self._eos = model.tokenizer.eos_token_id
        self._side = None  # a decoder(1) for echo's prompt logprobs, made when first needed
        self._vocab = model.vocab_limit
        self._idle_samplers: list = []  # greedy stand-ins: sampling row n samples rows [0, n) too
        self._cv = threading.Condition()
        self._inbox: deque[Request] = deque()
        self._prefetch: deque[list[int]] = deque()
        self._live: list[_Live] = []
        self._prefilling: list[_Prefill] = []   # oldest first
        self._free_rows = list(range(max_batch + max_prefill - 1, max_batch - 1, -1))
        self._accepting = True
        self._stop = False
        # Counters (read by metrics and tests; written by the scheduler thread).
        self.requests = 0
        self.prompt_tokens = 0
        self.prefilled_tokens = 0      # prompt tokens of requests prefilled (not covered by the cache)
        self.prefetched_tokens = 0     # tokens prefilled by prefetch()
        self.cached_tokens = 0
        self.generated_tokens = 0
        self.steps = 0
        self._thread = threading.Thread(target=self._run, name="mambart-scheduler", daemon=True)
        self._thread.start()

    # ---- called from any thread ----

    def submit(self, request: Request) -> Request:
        if not request.ids:
            raise ValueError("a request needs at least one prompt token")
        request.submitted_at = time.perf_counter()
        with self._cv:
            if not self._accepting:
                raise ShuttingDown("the server is shutting down")
            if len(self._inbox) >= self.max_queue:
                raise QueueFull(f"{len(self._inbox)} requests are waiting (max_queue {self.max_queue})")
            self._inbox.append(request)
            self._cv.notify()
        return request

    def cancel(self, request: Request) -> None:
        """The request ends at the next step (its row freed at once)."""
        with self._cv:
            request.cancelled = True
            self._cv.notify()

    def prefetch(self, ids: Sequence[int]) -> None:
        """Puts the state after ids in the cache (from its longest hit), before
        any request submitted later starts; nothing without a cache, or when
        max_queue prefetches wait already."""
        if self.cache is None or not ids:
            return
        with self._cv:
            if self._accepting and len(self._prefetch) < self.max_queue:
                self._prefetch.append(list(ids))
                self._cv.notify()

    @property
    def queue_length(self) -> int:
        return len(self._inbox) + sum(1 for p in self._prefilling if p.request is not None)

    @property
    def live_rows(self) -> int:
        return len(self._live)

    @property
    def busy(self) -> bool:
        return bool(self._inbox or self._prefetch or self._prefilling or self._live)

    def close(self, grace: float = 0.0) -> None:
        """Stops accepting; lets running requests finish for up to `grace`
        seconds; then cancels what is left and ends the thread."""
        with self._cv:
            self._accepting = False
        deadline = time.monotonic() + grace
        while self.busy and time.monotonic() < deadline:
            time.sleep(0.01)
        with self._cv:
            self._stop = True
            self._cv.notify()
        self._thread.join(timeout=30)

    # ---- the scheduler thread ----

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._stop and not self.busy:
                    self._cv.wait()
                if self._stop:
                    break
            try:
                self._iteration()
            except Exception as e:  # noqa: BLE001 - a fault fails the requests in flight, not the server
                self._fail_all(f"{type(e).__name__}: {e}")
        self._fail_all("the server shut down", reason="cancelled")

    def _iteration(self) -> None:
        self._drop_cancelled()
        self._admit()
        self._advance_prefills()
        if self._live:
            self._decode_step()

    def _admit(self) -> None:
        """Takes prefetches, then requests, into the prefills (up to
        max_prefill); a request only once no prefetch is waiting or running
        (it may extend one), and only while a live row will be free for it."""
        while len(self._prefilling) < self.max_prefill:
            with self._cv:
                if self._prefetch:
                    ids, req = self._prefetch.popleft(), None
                elif (self._inbox and not any(p.request is None for p in self._prefilling)
                      and len(self._live) + sum(p.request is not None for p in self._prefilling) < self.max_batch):
                    ids = None
                    req = self._inbox.popleft()
                else:
                    return
            if req is not None and req.cancelled:
                self._finish(req, "cancelled")
                continue
            row = None
            try:
                ids = req.ids if req is not None else ids
                if req is not None and req.prompt_logprobs:
                    hit = self._prompt_logprobs(req)
                    self.prefilled_tokens += len(ids)
                elif self.cache is not None:
                    hit = self.cache.lookup(ids)
                else:
                    hit = CacheHit(0, None)
                row = self._row_for(req, len(ids) - hit.length)
                run = PrefillRun(self.decoder, row, ids, hit, self.cache, req.marks if req is not None else ())
            except Exception as e:  # noqa: BLE001
                self._release_row(row)
                if req is not None:
                    self._finish(req, "error", f"{type(e).__name__}: {e}")
                continue
            if req is not None:
                req.cached_tokens = 0 if req.prompt_logprobs else hit.length
                self.requests += 1
                self.prompt_tokens += len(req.ids)
                self.cached_tokens += req.cached_tokens
            self._prefilling.append(_Prefill(run, req))

    def _row_for(self, req: Request | None, remaining: int) -> int:
        """The next live row, when this iteration's budget finishes this
        prompt and every prefill before it (they all join before it, in
        order) and one is left below max_batch; else a prefill row."""
        if req is not None:
            ahead = sum(p.run.remaining for p in self._prefilling)
            if ahead + remaining <= self.prefill_tokens:
                # Past every prefill's live row too: one that an iteration left
                # unfinished (_STEP_AFTER) keeps its row while live rows before
                # it end, so len(live) + len(prefilling) may be its row.
                row = max([len(self._live) + len(self._prefilling)]
                          + [p.run.row + 1 for p in self._prefilling if p.run.row < self.max_batch])
                if row < self.max_batch:
                    return row
        return self._free_rows.pop()

    def _release_row(self, row: int | None) -> None:
        if row is not None and row >= self.max_batch:  # a live row needs no freeing: it is past the live ones
            self._free_rows.append(row)

    def _advance_prefills(self) -> None:
        budget = self.prefill_tokens
        for p in list(self._prefilling):
            req = p.request
            if req is not None and req.cancelled:
                self._end_prefill(p)
                self._finish(req, "cancelled")
                continue
            try:
                while budget > 0 and not p.run.done:
                    n = p.run.advance(budget)
                    budget -= n
                    if req is None:
                        self.prefetched_tokens += n
                    else:
                        self.prefilled_tokens += n
            except Exception as e:  # noqa: BLE001
                self._end_prefill(p)
                if req is not None:
                    self._finish(req, "error", f"{type(e).__name__}: {e}")
                continue
            if not p.run.done:
                break
            self._end_prefill(p)
            if req is None:
                continue
            if req.max_tokens == 0:
                self._finish(req, "length")
                continue
            self._join(p.run.row, req)
            if self.prefill_tokens - budget >= _STEP_AFTER:
                break  # the next prompt waits one step: the joined row's next token (often its first text) does not

    def _join(self, row: int, req: Request) -> None:
        """The prefilled request becomes live row n and gets its first token
        now, sampled from its prefill's logits (the rows before it sampled by
        greedy stand-ins whose choices are dropped: their own samplers and
        random streams are untouched)."""
        n = len(self._live)
        if row != n:
            self.decoder.copy_row(row, n)
        x = _Live(req, req.params.make_sampler(req.sampler_row))
        while len(self._idle_samplers) < n:
            self._idle_samplers.append(SamplingParams(temperature=0.0).make_sampler())
        (tok,) = self.decoder.sample_rows(self._idle_samplers[:n] + [x.sampler]).tolist()[n:]
        reason = self._emit(x, n, tok)
        if reason is None:
            x.pending = tok
            self._live.append(x)
        else:
            self._finish(req, reason)

    def _end_prefill(self, p: _Prefill) -> None:
        self._prefilling.remove(p)
        self._release_row(p.run.row)

    def _emit(self, x: _Live, row: int, tok: int) -> str | None:
        """Sends row's sampled token to its request; the reason it ends, if it does."""
        req = x.request
        if req.cancelled:
            return "cancelled"
        x.out.append(tok)
        if tok in req.stop_ids or (self._eos is not None and tok == self._eos):
            return "stop"
        ev = TokenEvent(tok)
        if req.logprobs is not None:
            ev.logprob, ev.top = self._logprobs(row, tok, req.logprobs)
        if req.generated == 0:
            req.first_token_at = now = time.perf_counter()
            self.observer.first_token(now - req.submitted_at)
        req.generated += 1
        self.generated_tokens += 1
        req.sink(ev)
        return "length" if req.generated >= req.max_tokens else None

    def _decode_step(self) -> None:
        """Feeds every live row its pending token, then samples and sends each
        row's next one from the step's logits at once: a token never waits
        for the next iteration's prefills, and a row that ends leaves before
        the next step."""
        live = self._live
        self.decoder.step([x.pending for x in live])
        self.steps += 1
        tokens = self.decoder.sample_rows([x.sampler for x in live]).tolist()
        ended: list[tuple[int, str]] = []
        for r, x in enumerate(live):
            x.pending = tokens[r]
            reason = self._emit(x, r, x.pending)
            if reason is not None:
                ended.append((r, reason))
        for r, reason in sorted(ended, reverse=True):  # highest rows first: moves never touch an ended row
            self._finish(live[r].request, reason)
            self._remove_row(r)

    def _prompt_logprobs(self, req: Request) -> CacheHit:
        """Echo with logprobs: the whole prompt prefilled on a side decoder, in
        slices that return the logits of every position; their logprobs go to
        the request as one PromptEvent, and the state after the prompt is then
        the request's start (a full hit: the same state, a prefill's result
        not depending on its slices). The slices run without decode steps
        between them (scoring a prompt is a short job)."""
        if self._side is None:
            self._side = self.model.decoder(1)
        side, ids, k = self._side, req.ids, req.logprobs
        side.reset_row(0)
        events = [TokenEvent(ids[0])]
        last = None
        for a in range(0, len(ids), 256):
            logits = side.prefill([ids[a:a + 256]], all_logits=True)
            for i in range(max(a, 1), min(a + 256, len(ids))):
                before = logits[i - 1 - a] if i > a else last
                events.append(TokenEvent(ids[i], *_pick(before[: self._vocab], ids[i], k)))
            last = logits[-1]
        req.sink(PromptEvent(events))
        return CacheHit(len(ids), side.export_row(0))

    def _logprobs(self, row: int, token: int, k: int) -> tuple[float, list[tuple[int, float]]]:
        return _pick(self.decoder.row_logits(row)[: self._vocab], token, k)

    def _remove_row(self, r: int) -> None:
        last = len(self._live) - 1
        if r != last:
            self.decoder.copy_row(last, r)
            self._live[r] = self._live[last]
        self._live.pop()

    def _drop_cancelled(self) -> None:
        # Waiting requests whose clients went away leave the queue at once
        # (they would hold places that --max-queue counts).
        with self._cv:
            gone = [req for req in self._inbox if req.cancelled]
            if gone:
                self._inbox = deque(req for req in self._inbox if not req.cancelled)
        for req in gone:
            self._finish(req, "cancelled")
        for r in range(len(self._live) - 1, -1, -1):
            if self._live[r].request.cancelled:
                self._finish(self._live[r].request, "cancelled")
                self._remove_row(r)

    def _finish(self, req: Request, reason: str, message: str = "") -> None:
        if req.finished:
            return
        req.finished = True
        self.observer.finished(req, reason)
        req.sink(DoneEvent(reason, message))

    def _fail_all(self, message: str, reason: str = "error") -> None:
        for x in self._live:
            self._finish(x.request, reason, message)
        self._live.clear()
        for p in list(self._prefilling):
            self._end_prefill(p)
            if p.request is not None:
                self._finish(p.request, reason, message)
        with self._cv:
            pending = list(self._inbox)
            self._inbox.clear()
            self._prefetch.clear()
        for req in pending:
            self._finish(req, reason, message)


def _pick(logits: np.ndarray, token: int, k: int) -> tuple[float, list[tuple[int, float]]]:
    """The log-softmax of logits at token, and the k most likely (id, logprob)."""
    logits = logits.astype(np.float64)
    m = logits.max()
    lp = logits - (m + math.log(np.exp(logits - m).sum()))
    top: list[tuple[int, float]] = []
    if k > 0:
        idx = np.argpartition(-lp, min(k, len(lp)) - 1)[:k]
        idx = idx[np.lexsort((idx, -lp[idx]))]
        top = [(int(i), float(lp[i])) for i in idx]
    return float(lp[token]), top
