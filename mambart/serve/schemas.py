"""OpenAI request bodies checked and turned into generation settings.

Every problem is an APIError that the app sends as OpenAI's error shape
{"error": {"message", "type", "param", "code"}} with a 4xx status.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any

from ..sampling import SamplingParams


class APIError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 type: str = "invalid_request_error", headers: dict | None = None) -> None:  # noqa: A002
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.type = status, message, param, code, type
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


@dataclass
class Limits:
    max_prompt_tokens: int = 32768
    max_tokens: int = 4096
    max_n: int = 16


@dataclass
class GenerationRequest:
    """What one /v1/completions or /v1/chat/completions body asks for."""

    model: str
    prompts: list = field(default_factory=list)     # completions: str or list[int] each; chat: filled later
    messages: list | None = None
    max_tokens: int | None = None
    n: int = 1
    stop: list[str] = field(default_factory=list)
    params: SamplingParams = field(default_factory=SamplingParams)
    logprobs: int | None = None                      # None: off; k: the chosen token's and k more
    echo: bool = False
    stream: bool = False
    include_usage: bool = False


def _bad(message: str, param: str | None, code: str | None = "invalid_value") -> APIError:
    return APIError(400, message, param, code)


def _get_number(body: dict, name: str, default: float, lo: float, hi: float, *, lo_open: bool = False) -> float:
    v = body.get(name)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise _bad(f"'{name}' must be a number, got {v!r}", name, "invalid_type")
    try:
        v = float(v)
    except OverflowError:  # an integer past float's range: JSON numbers may have any number of digits
        v = math.inf if v > 0 else -math.inf
    if not math.isfinite(v):
        raise _bad(f"'{name}' must be a number, got {v!r}", name, "invalid_type")
    if v < lo or v > hi or (lo_open and v == lo):
        rng = f"({lo}, {hi}]" if lo_open else f"[{lo}, {hi}]"
        raise _bad(f"'{name}' must be in {rng}, got {v}", name)
    return v


def _get_int(body: dict, name: str, default: int | None, lo: int, hi: int) -> int | None:
    v = body.get(name)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int):
        raise _bad(f"'{name}' must be an integer, got {v!r}", name, "invalid_type")
    if not lo <= v <= hi:
        raise _bad(f"'{name}' must be in [{lo}, {hi}], got {v}", name)
    return v


def _get_bool(body: dict, name: str, default: bool = False) -> bool:
    v = body.get(name)
    if v is None:
        return default
    if not isinstance(v, bool):
        raise _bad(f"'{name}' must be a boolean, got {v!r}", name, "invalid_type")
    return v


def _stop(body: dict) -> list[str]:
    v = body.get("stop")
    if v is None:
        return []
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list) or not all(isinstance(s, str) for s in v):
        raise _bad("'stop' must be a string or a list of strings", "stop", "invalid_type")
    if len(v) > 4:
        raise _bad(f"'stop' takes at most 4 strings, got {len(v)}", "stop")
    if any(s == "" for s in v):
        raise _bad("'stop' strings must not be empty", "stop")
    return v


def _token_list(v: Any) -> bool:
    return isinstance(v, list) and len(v) > 0 and all(isinstance(t, int) and not isinstance(t, bool) for t in v)


def _prompts(body: dict) -> list:
    p = body.get("prompt")
    if p is None:
        raise _bad("'prompt' is required", "prompt", "missing_required_parameter")
    if isinstance(p, str):
        out = [p]
    elif _token_list(p):
        out = [p]
    elif isinstance(p, list) and p and all(isinstance(x, str) for x in p):
        out = list(p)
    elif isinstance(p, list) and p and all(_token_list(x) for x in p):
        out = list(p)
    else:
        raise _bad("'prompt' must be a string, a list of strings, a list of token ids or a list of such lists",
                   "prompt", "invalid_type")
    if any(x == "" for x in out):
        raise _bad("'prompt' must not be empty", "prompt")
    return out


def _messages(body: dict) -> list[dict]:
    msgs = body.get("messages")
    if msgs is None:
        raise _bad("'messages' is required", "messages", "missing_required_parameter")
    if not isinstance(msgs, list):
        raise _bad("'messages' must be a list", "messages", "invalid_type")
    if not msgs:
        raise _bad("'messages' must not be empty", "messages")
    out = []
    for i, m in enumerate(msgs):
        if not isinstance(m, dict):
            raise _bad(f"messages[{i}] must be an object", f"messages[{i}]", "invalid_type")
        role = m.get("role")
        if not isinstance(role, str) or not role:
            raise _bad(f"messages[{i}].role must be a non-empty string", f"messages[{i}].role", "invalid_type")
        content = m.get("content")
        if isinstance(content, list):  # content parts: text only
            texts = []
            for part in content:
                if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                    raise _bad(f"messages[{i}].content: only text parts are supported", f"messages[{i}].content")
                texts.append(part["text"])
            content = "".join(texts)
        if content is None:
            content = ""
        if not isinstance(content, str):
            raise _bad(f"messages[{i}].content must be a string or a list of text parts",
                       f"messages[{i}].content", "invalid_type")
        msg = {"role": role, "content": content}
        if isinstance(m.get("name"), str):
            msg["name"] = m["name"]
        out.append(msg)
    return out


def _reject_unsupported(body: dict) -> None:
    for name, ok in (("suffix", lambda v: v is None), ("best_of", lambda v: v in (None, 1)),
                     ("logit_bias", lambda v: not v), ("tools", lambda v: not v), ("functions", lambda v: not v),
                     ("response_format", lambda v: v is None or (isinstance(v, dict) and v.get("type") == "text"))):
        if name in body and not ok(body[name]):
            raise _bad(f"'{name}' is not supported by this server", name, "unsupported_parameter")


def parse(body: Any, *, chat: bool, limits: Limits) -> GenerationRequest:
    if not isinstance(body, dict):
        raise _bad("the request body must be a JSON object", None, "invalid_type")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("'model' is required and must be a string", "model", "missing_required_parameter")
    _reject_unsupported(body)
    req = GenerationRequest(model=model)
    if chat:
        req.messages = _messages(body)
        mt = body.get("max_completion_tokens", body.get("max_tokens"))
        name = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
        req.max_tokens = _get_int({name: mt}, name, None, 0, limits.max_tokens)
        if _get_bool(body, "logprobs"):
            req.logprobs = _get_int(body, "top_logprobs", 0, 0, 20)
        elif body.get("top_logprobs") is not None:
            raise _bad("'top_logprobs' needs 'logprobs': true", "top_logprobs")
    else:
        req.prompts = _prompts(body)
        req.max_tokens = _get_int(body, "max_tokens", 16, 0, limits.max_tokens)
        req.logprobs = _get_int(body, "logprobs", None, 0, 5)
        req.echo = _get_bool(body, "echo")
    req.n = _get_int(body, "n", 1, 1, limits.max_n)
    req.stop = _stop(body)
    req.stream = _get_bool(body, "stream")
    so = body.get("stream_options")
    if so is not None:
        if not isinstance(so, dict):
            raise _bad("'stream_options' must be an object", "stream_options", "invalid_type")
        if not req.stream:
            raise _bad("'stream_options' is only allowed with 'stream': true", "stream_options")
        req.include_usage = _get_bool(so, "include_usage")
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63):
        raise _bad(f"'seed' must be an integer in [0, 2**63), got {seed!r}", "seed")
    req.params = SamplingParams(
        temperature=_get_number(body, "temperature", 1.0, 0.0, 2.0),
        top_p=_get_number(body, "top_p", 1.0, 0.0, 1.0, lo_open=True),
        top_k=max(0, _get_int(body, "top_k", 0, -1, 2**31 - 1)),  # -1 and 0: off (vLLM takes -1)
        min_p=_get_number(body, "min_p", 0.0, 0.0, 1.0),
        repetition_penalty=_get_number(body, "repetition_penalty", 1.0, 0.0, 10.0, lo_open=True),
        presence_penalty=_get_number(body, "presence_penalty", 0.0, -2.0, 2.0),
        frequency_penalty=_get_number(body, "frequency_penalty", 0.0, -2.0, 2.0),
        seed=seed,
    )
    return req
