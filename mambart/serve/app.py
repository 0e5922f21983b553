"""The OpenAI-compatible HTTP app (Starlette), over one Scheduler.

Endpoints: GET /v1/models, POST /v1/completions, POST /v1/chat/completions
(both streaming as Server-Sent Events when asked), GET /health, GET /metrics.
Handlers turn a body into scheduler Requests (one per prompt and choice),
read their events, and build OpenAI's response or chunk objects; text
assembly (incremental detokenization, stop strings) is per choice here, and
a stop string cancels the request in the scheduler at once.
"""
from __future__ import annotations

import asyncio
import hmac
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from .. import jsonfile
from ..generate import _split_at_stop
from .metrics import Metrics
from .scheduler import DoneEvent, PromptEvent, QueueFull, Request as GenRequest, Scheduler, ShuttingDown, TokenEvent
from .schemas import APIError, GenerationRequest, Limits, parse
from .template import ChatTemplate, NoTemplate, TemplateError

MAX_BODY_BYTES = 4 << 20


@dataclass
class ServerConfig:
    model_name: str
    api_key: str | None = None
    limits: Limits = field(default_factory=Limits)
    max_body_bytes: int = MAX_BODY_BYTES


def error_response(e: APIError) -> JSONResponse:
    return JSONResponse(e.body(), status_code=e.status, headers=e.headers)


class _Choice:
    """One choice's text: incremental detokenization, stop strings, logprobs.
    Special tokens are no text (as in `mambart chat` and OpenAI's replies),
    but a stop string that is in one's text still stops there."""

    def __init__(self, tokenizer, stop: list[str]) -> None:
        self.tok = tokenizer
        self.detok = tokenizer.stream_decoder(skip_special_tokens=True)
        self.stop = stop
        self.held = ""
        self.text = ""
        self.tokens = 0
        self.stopped = False
        self.finish_reason: str | None = None
        self.logprobs: list[TokenEvent] = []
        self.prompt: list[TokenEvent] = []  # echo's prompt tokens with logprobs

    def push(self, ev: TokenEvent) -> str:
        self.tokens += 1
        if ev.logprob is not None:
            self.logprobs.append(ev)
        if self.stop and self.tok.is_special(ev.token) and any(s in self.tok.decode([ev.token]) for s in self.stop):
            emit, _, _ = _split_at_stop(self.held + self.detok.flush(), self.stop, final=True)
            self.held, self.stopped = "", True
            self.text += emit
            return emit
        self.held += self.detok.push(ev.token)
        emit, self.held, stopped = _split_at_stop(self.held, self.stop)
        self.text += emit
        if stopped:
            self.stopped = True
        return emit

    def flush(self) -> str:
        if self.stopped:
            return ""
        self.held += self.detok.flush()
        emit, _, _ = _split_at_stop(self.held, self.stop, final=True)
        self.held = ""
        self.text += emit
        return emit


class App:
    def __init__(self, model, scheduler: Scheduler, config: ServerConfig, template: ChatTemplate | None,
                 template_error: str | None = None, metrics: Metrics | None = None) -> None:
        self.model = model
        self.scheduler = scheduler
        self.config = config
        self.template = template
        self.template_error = template_error
        self.metrics = metrics or Metrics(scheduler)
        self.created = int(time.time())
        routes = [
            Route("/v1/models", self.models, methods=["GET"]),
            Route("/v1/models/{model:path}", self.model_card, methods=["GET"]),  # a hub id has a slash
            Route("/v1/completions", self.completions, methods=["POST"]),
            Route("/v1/chat/completions", self.chat_completions, methods=["POST"]),
            Route("/health", self.health, methods=["GET"]),
            Route("/metrics", self.metrics_endpoint, methods=["GET"]),
        ]
        self.app = Starlette(routes=routes, exception_handlers={404: self._not_found, 405: self._not_allowed,
                                                                Exception: self._internal})
        self.app.add_middleware(_AuthMiddleware, api_key=config.api_key)

    async def __call__(self, scope, receive, send) -> None:
        await self.app(scope, receive, send)

    # ---- small endpoints ----

    async def _not_found(self, request: Request, exc) -> JSONResponse:
        return error_response(APIError(404, f"no route {request.url.path}", None, "not_found"))

    async def _not_allowed(self, request: Request, exc) -> JSONResponse:
        return error_response(APIError(405, f"{request.method} is not allowed on {request.url.path}", None,
                                       "method_not_allowed"))

    async def _internal(self, request: Request, exc: Exception) -> JSONResponse:
        # A bug, still answered in OpenAI's shape, never with a traceback.
        return error_response(APIError(500, f"internal error: {type(exc).__name__}: {exc}", None, "internal_error",
                                       type="server_error"))

    async def health(self, request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "queue": self.scheduler.queue_length,
                             "running": self.scheduler.live_rows})

    def _card(self) -> dict:
        return {"id": self.config.model_name, "object": "model", "created": self.created, "owned_by": "mambart"}

    async def models(self, request: Request) -> JSONResponse:
        return JSONResponse({"object": "list", "data": [self._card()]})

    async def model_card(self, request: Request) -> JSONResponse:
        model = request.path_params["model"]
        if model != self.config.model_name:
            return error_response(APIError(404, f"the model '{model}' does not exist (this server runs "
                                                f"'{self.config.model_name}')", "model", "model_not_found"))
        return JSONResponse(self._card())

    async def metrics_endpoint(self, request: Request) -> Response:
        body, content_type = self.metrics.render()
        return Response(body, media_type=content_type)

    # ---- generation ----

    async def completions(self, request: Request) -> Response:
        return await self._generate(request, chat=False)

    async def chat_completions(self, request: Request) -> Response:
        return await self._generate(request, chat=True)

    async def _read_json(self, request: Request):
        size = 0
        chunks = []
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > self.config.max_body_bytes:
                    raise APIError(413, f"the request body is larger than {self.config.max_body_bytes} bytes",
                                   None, "request_too_large")
                chunks.append(chunk)
        except ClientDisconnect:
            raise APIError(400, "the client went away", None, "client_disconnected") from None
        try:
            return jsonfile.loads(b"".join(chunks), "the request body")
        except (ValueError, UnicodeDecodeError) as e:
            raise APIError(400, f"the request body is not valid JSON: {e}", None, "invalid_json") from None

    def _prompt_ids(self, gen: GenerationRequest, chat: bool) -> list[list[int]]:
        tok = self.model.tokenizer
        limit = self.config.limits.max_prompt_tokens
        if chat:
            if self.template is None:
                raise APIError(400, self.template_error or "this model has no chat template", "messages",
                               "no_chat_template")
            try:
                text = self.template.render(gen.messages, add_generation_prompt=True)
            except TemplateError as e:
                raise APIError(400, str(e), "messages", "invalid_messages") from None
            prompts = [text]
        else:
            prompts = gen.prompts
        out = []
        for i, p in enumerate(prompts):
            try:
                ids = tok.encode_batch([p])[0] if isinstance(p, str) else list(p)  # releases the GIL
            except ValueError as e:  # not valid Unicode (a lone surrogate \ud800 in the JSON), or the tokenizer failed
                raise APIError(400, f"the prompt cannot be tokenized: {e}", "messages" if chat else "prompt",
                               "invalid_value") from None
            if not ids:
                raise APIError(400, "the prompt encodes to no tokens", "prompt", "invalid_value")
            bad = [t for t in ids if not 0 <= t < self.model.config.vocab_size]
            if bad:
                raise APIError(400, f"token id {bad[0]} is out of range [0, {self.model.config.vocab_size})",
                               "prompt", "invalid_value")
            if gen.echo and max(ids) >= self.model.tokenizer.vocab_size:
                raise APIError(400, f"echo needs prompt ids the tokenizer can decode (below "
                                    f"{self.model.tokenizer.vocab_size})", "echo", "invalid_value")
            if len(ids) > limit:
                raise APIError(400, f"the prompt has {len(ids)} tokens, more than this server's limit of {limit}",
                               "messages" if chat else "prompt", "context_length_exceeded")
            out.append(ids)
        return out

    async def _generate(self, request: Request, chat: bool) -> Response:
        try:
            body = await self._read_json(request)
            gen = parse(body, chat=chat, limits=self.config.limits)
            if gen.model != self.config.model_name:
                raise APIError(404, f"the model '{gen.model}' does not exist (this server runs "
                                    f"'{self.config.model_name}')", "model", "model_not_found")
            # In a thread: a multi-megabyte prompt takes seconds to tokenize,
            # which would hold up every stream and /health.
            prompt_ids = await asyncio.to_thread(self._prompt_ids, gen, chat)
            if len(prompt_ids) * gen.n > self.scheduler.max_queue:
                # Never fits, however long the client waits: not a 503 with Retry-After.
                raise APIError(400, f"the request asks for {len(prompt_ids) * gen.n} sequences (prompts times n), "
                                    f"more than this server queues ({self.scheduler.max_queue})", "n",
                               "invalid_value")
            stop_ids = self.template.stop_ids if chat and self.template else frozenset()
            max_tokens = gen.max_tokens if gen.max_tokens is not None else self.config.limits.max_tokens
            loop = asyncio.get_running_loop()
            choices: list[tuple[GenRequest, asyncio.Queue]] = []
            marks = self._history_end(gen, prompt_ids[0]) if chat else ()
            for ids in prompt_ids:
                for j in range(gen.n):
                    q: asyncio.Queue = asyncio.Queue()
                    req = GenRequest(ids, gen.params, max_tokens, stop_ids, gen.logprobs, sampler_row=j,
                                     marks=marks, prompt_logprobs=gen.echo and gen.logprobs is not None,
                                     sink=lambda ev, q=q: loop.call_soon_threadsafe(q.put_nowait, ev))
                    choices.append((req, q))
            try:
                for req, _ in choices:
                    self.scheduler.submit(req)
            except (QueueFull, ShuttingDown) as e:
                for req, _ in choices:
                    self.scheduler.cancel(req)
                raise APIError(503, str(e), None, "server_busy", type="server_error",
                               headers={"Retry-After": "1"}) from None
        except APIError as e:
            self.metrics.rejected(e.status)
            return error_response(e)
        self.metrics.accepted("chat" if chat else "completions")
        rid = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
        prompt_texts = [self.model.tokenizer.decode(ids) for ids in prompt_ids] if gen.echo else []
        if gen.stream:
            return StreamingResponse(self._stream(rid, gen, chat, choices, prompt_texts, request),
                                     media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        return await self._complete(rid, gen, chat, choices, prompt_texts, request)

    async def _events(self, req: GenRequest, q: asyncio.Queue, request: Request) -> AsyncIterator[object]:
        """A request's events; cancels it if the client goes away meanwhile
        (looked at every half second, also while events keep coming: a long
        generation may never leave the queue empty that long)."""
        checked = time.monotonic()
        while True:
            try:
                ev = await asyncio.wait_for(q.get(), timeout=0.5)
            except asyncio.TimeoutError:
                ev = None
            if time.monotonic() - checked >= 0.5:
                checked = time.monotonic()
                if await request.is_disconnected():
                    self.scheduler.cancel(req)
                    return
            if ev is None:
                continue
            yield ev
            if isinstance(ev, DoneEvent):
                return

    @staticmethod
    def _usage(choices, n: int, completion_tokens: list[int]) -> dict:
        """OpenAI counts each prompt once whatever n; choices are prompt-major
        (choice k belongs to prompt k // n). cached_tokens: the first choice's
        hit (the others then find the whole prompt cached)."""
        firsts = [req for k, (req, _) in enumerate(choices) if k % n == 0]
        prompt_tokens = sum(len(req.ids) for req in firsts)
        completion = sum(completion_tokens)  # what the choices used (not what ran past a stop string)
        return {"prompt_tokens": prompt_tokens, "completion_tokens": completion,
                "total_tokens": prompt_tokens + completion,
                "prompt_tokens_details": {"cached_tokens": sum(req.cached_tokens for req in firsts)}}

    async def _complete(self, rid, gen, chat, choices, prompt_texts, request) -> Response:
        results = []
        error = None
        for k, (req, q) in enumerate(choices):
            ch = _Choice(self.model.tokenizer, gen.stop)
            async for ev in self._events(req, q, request):
                if isinstance(ev, TokenEvent):
                    if ch.stopped:
                        continue  # sampled before the cancel took effect: past the stop string
                    ch.push(ev)
                    if ch.stopped:
                        self.scheduler.cancel(req)
                        ch.finish_reason = "stop"
                elif isinstance(ev, PromptEvent):
                    ch.prompt = ev.tokens
                elif isinstance(ev, DoneEvent):
                    if ev.reason == "error":
                        error = ev.message
                    if ch.finish_reason is None:
                        ch.finish_reason = "length" if ev.reason == "length" else "stop"
            if request is not None and req.cancelled and not ch.stopped:
                for other, _ in choices:  # the client is gone: none of its choices keeps a row
                    self.scheduler.cancel(other)
                return Response(status_code=499)
            ch.flush()
            results.append(ch)
        if error:
            return error_response(APIError(500, f"generation failed: {error}", None, "internal_error",
                                           type="server_error"))
        self._prefetch_reply(gen, chat, results)
        usage = self._usage(choices, gen.n, [ch.tokens for ch in results])
        out_choices = []
        for k, ch in enumerate(results):
            if chat:
                c = {"index": k, "message": {"role": "assistant", "content": ch.text},
                     "logprobs": self._chat_logprobs(ch.logprobs) if gen.logprobs is not None else None,
                     "finish_reason": ch.finish_reason}
            else:
                prefix = prompt_texts[k // gen.n] if gen.echo else ""
                c = {"index": k, "text": prefix + ch.text,
                     "logprobs": self._completion_logprobs(ch.prompt + ch.logprobs, prompt=len(ch.prompt))
                     if gen.logprobs is not None else None, "finish_reason": ch.finish_reason}
            out_choices.append(c)
        return JSONResponse({"id": rid, "object": "chat.completion" if chat else "text_completion",
                             "created": int(time.time()), "model": self.config.model_name,
                             "choices": out_choices, "usage": usage})

    def _history_end(self, gen, ids: list[int]) -> tuple[int, ...]:
        """Where the conversation before the last message ends in ids (a shared
        system prompt, or the earlier turns), for the cache to keep that state:
        other questions after the same system prompt continue from it."""
        if self.scheduler.cache is None or len(gen.messages) < 2:
            return ()
        try:
            head = self.model.tokenizer.encode(self.template.render(gen.messages[:-1], add_generation_prompt=False))
        except TemplateError:
            return ()
        return (len(head),) if 0 < len(head) < len(ids) and ids[:len(head)] == head else ()

    def _prefetch_reply(self, gen, chat: bool, results: list[_Choice]) -> None:
        """After a chat reply, before the client has it: the conversation with
        the reply, as the next turn's prompt will begin, prefilled into the
        cache. (The state the decode steps left is no exact start: they round
        unlike a prefill, mambart/cache.py.)"""
        if not chat or self.scheduler.cache is None or len(results) != 1 or results[0].finish_reason is None:
            return
        try:
            text = self.template.render(list(gen.messages) + [{"role": "assistant", "content": results[0].text}],
                                        add_generation_prompt=False)
        except TemplateError:
            return
        self.scheduler.prefetch(self.model.tokenizer.encode(text))

    def _piece(self, token: int, special: bool = False) -> str:
        """A token's text in logprobs: what it adds to the text (a special
        token none), unless special (an echoed prompt's, written out)."""
        return self.model.tokenizer.decode([token], skip_special_tokens=not special)

    def _chat_logprobs(self, evs: list[TokenEvent]) -> dict:
        tok = self.model.tokenizer

        def entry(t, lp):
            return {"token": self._piece(t), "logprob": lp,
                    "bytes": [] if tok.is_special(t) else list(tok.token_bytes(t))}
        return {"content": [dict(entry(e.token, e.logprob), top_logprobs=[entry(t, lp) for t, lp in e.top or []])
                            for e in evs]}

    def _completion_logprobs(self, evs: list[TokenEvent], pos: int = 0, prompt: int = 0) -> dict:
        """OpenAI's legacy logprobs; an echoed prompt's first token has none.
        pos: the text_offset of the first (a stream's chunk goes on from the
        last); prompt: how many of evs are the echoed prompt's."""
        tokens, lps, tops, offsets = [], [], [], []
        for i, e in enumerate(evs):
            special = i < prompt
            s = self._piece(e.token, special)
            tokens.append(s)
            lps.append(e.logprob)
            tops.append(None if e.logprob is None else {self._piece(t, special): lp for t, lp in e.top or []})
            offsets.append(pos)
            pos += len(s)
        return {"tokens": tokens, "token_logprobs": lps, "top_logprobs": tops, "text_offset": offsets}

    async def _stream(self, rid, gen, chat, choices, prompt_texts, request) -> AsyncIterator[bytes]:
        created = int(time.time())
        obj = "chat.completion.chunk" if chat else "text_completion"
        usage_field = {"usage": None} if gen.include_usage else {}
        offsets = [0] * len(choices)  # each choice's text_offset so far

        def chunk(k, text=None, finish=None, role=False, evs=None, prompt=False):
            if chat:
                delta = {}
                if role:
                    delta["role"] = "assistant"
                if text is not None:
                    delta["content"] = text
                c = {"index": k, "delta": delta, "logprobs": None, "finish_reason": finish}
                if evs and gen.logprobs is not None:
                    c["logprobs"] = self._chat_logprobs(evs)
            else:
                c = {"index": k, "text": text or "", "logprobs": None, "finish_reason": finish}
                if evs and gen.logprobs is not None:
                    c["logprobs"] = self._completion_logprobs(evs, offsets[k], len(evs) if prompt else 0)
                    offsets[k] += sum(len(t) for t in c["logprobs"]["tokens"])
            data = {"id": rid, "object": obj, "created": created, "model": self.config.model_name,
                    "choices": [c], **usage_field}
            return f"data: {json.dumps(data, ensure_ascii=False)}\n\n".encode()

        # Choices are merged as their events arrive, so n > 1 streams side by side.
        merged: asyncio.Queue = asyncio.Queue()
        states = [_Choice(self.model.tokenizer, gen.stop) for _ in choices]

        async def pump(k, req, q):
            async for ev in self._events(req, q, request):
                await merged.put((k, ev))
            await merged.put((k, None))

        tasks = [asyncio.ensure_future(pump(k, req, q)) for k, (req, q) in enumerate(choices)]
        open_choices = len(choices)
        try:
            for k in range(len(choices)):
                if chat:
                    yield chunk(k, "", role=True)
                elif gen.echo and gen.logprobs is None:  # with logprobs: when the PromptEvent comes
                    yield chunk(k, prompt_texts[k // gen.n])
            while open_choices:
                k, ev = await merged.get()
                ch = states[k]
                if ev is None:
                    open_choices -= 1
                    continue
                if isinstance(ev, PromptEvent):
                    yield chunk(k, prompt_texts[k // gen.n], evs=ev.tokens, prompt=True)
                elif isinstance(ev, TokenEvent):
                    if ch.stopped:
                        continue
                    text = ch.push(ev)
                    if text or ev.logprob is not None:
                        yield chunk(k, text, evs=[ev])
                    if ch.stopped:
                        self.scheduler.cancel(choices[k][0])
                        ch.finish_reason = "stop"
                        yield chunk(k, None if chat else "", finish="stop")
                elif isinstance(ev, DoneEvent):
                    if ch.finish_reason is not None:
                        continue
                    rest = ch.flush()
                    if rest:
                        yield chunk(k, rest)
                    if ev.reason == "error":
                        err = APIError(500, f"generation failed: {ev.message}", None, "internal_error",
                                       type="server_error")
                        yield f"data: {json.dumps(err.body())}\n\n".encode()
                    ch.finish_reason = "length" if ev.reason == "length" else "stop"
                    yield chunk(k, None if chat else "", finish=ch.finish_reason)
            self._prefetch_reply(gen, chat, states)
            if gen.include_usage:
                data = {"id": rid, "object": obj, "created": created, "model": self.config.model_name,
                        "choices": [], "usage": self._usage(choices, gen.n, [st.tokens for st in states])}
                yield f"data: {json.dumps(data)}\n\n".encode()
            yield b"data: [DONE]\n\n"
        finally:
            # The client went away (the response was cancelled) or we are done:
            # either way no row keeps running for this response.
            for req, _ in choices:
                self.scheduler.cancel(req)
            for t in tasks:
                t.cancel()


class _AuthMiddleware:
    """With an API key, every endpoint but /health needs `Authorization: Bearer KEY`."""

    def __init__(self, app, api_key: str | None) -> None:
        self.app = app
        self.api_key = api_key

    async def __call__(self, scope, receive, send) -> None:
        if self.api_key and scope["type"] == "http" and scope.get("path") != "/health":
            headers = dict(scope.get("headers") or [])
            # The scheme is case-insensitive (RFC 9110); the key is compared as the bytes sent.
            scheme, _, key = headers.get(b"authorization", b"").partition(b" ")
            if not (scheme.lower() == b"bearer" and hmac.compare_digest(key.strip(), self.api_key.encode())):
                e = APIError(401, "a valid API key is required (Authorization: Bearer KEY)", None,
                             "invalid_api_key", type="authentication_error")
                await error_response(e)(scope, receive, send)
                return
        await self.app(scope, receive, send)
