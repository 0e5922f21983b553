"""Chat templates: a model's `chat_template` (tokenizer_config.json) rendered
with jinja2 in a sandbox, with the helpers chat templates expect.

The sandbox (ImmutableSandboxedEnvironment) gives a template no access to
Python internals or to mutating its inputs. Templates see `messages`,
`add_generation_prompt`, `bos_token`, `eos_token` and `raise_exception(msg)`,
which they call to refuse a conversation (a role they do not support, say):
that becomes a TemplateError, a 400 from the server.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

try:
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment
except ImportError:  # pragma: no cover - the [serve] extra brings it
    jinja2 = None

from .. import jsonfile
from ..tokenizer import Tokenizer


class TemplateError(ValueError):
    """The template refused the conversation, or could not be rendered."""


class NoTemplate(ValueError):
    """The model has no chat template (and none was given)."""


def _raise(message: str) -> None:
    raise TemplateError(str(message))


def _token_text(value: Any) -> str:
    if isinstance(value, dict):  # older files store an AddedToken object
        value = value.get("content")
    return value if isinstance(value, str) else ""


class ChatTemplate:
    """A compiled chat template and the tokens around it."""

    def __init__(self, source: str, tokenizer: Tokenizer, bos_token: str = "", eos_token: str = "") -> None:
        if jinja2 is None:
            # A ValueError: the CLI's one-line error, not a traceback.
            raise ValueError("chat templates need jinja2, of the serve extra: pip install '.[serve]' in mambart's "
                             "source tree, or pip install jinja2")
        # trim_blocks / lstrip_blocks: the whitespace handling chat templates are written for.
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.globals["raise_exception"] = _raise
        env.filters["tojson"] = lambda v, indent=None: json.dumps(v, ensure_ascii=False, indent=indent)
        try:
            self._template = env.from_string(source)
        except jinja2.TemplateError as e:
            raise TemplateError(f"the chat template does not compile: {e}") from None
        self.source = source
        self.tokenizer = tokenizer
        self.bos_token = bos_token
        self.eos_token = eos_token
        self.after_reply: str | None = None       # the text a template writes after an assistant message
        self.end_of_turn_text = ""                 # its first token, when that is a special token
        self.end_of_turn_id: int | None = None
        self.stop_ids = self._end_of_turn_ids()

    @classmethod
    def for_model(cls, model_dir: str | Path, tokenizer: Tokenizer, override: str | Path | None = None) -> "ChatTemplate":
        """The template of a model directory (or the file `override`); NoTemplate if there is none."""
        cfg: dict = {}
        path = Path(model_dir) / "tokenizer_config.json"
        if path.is_file():
            try:
                cfg = jsonfile.read(path)
            except (OSError, ValueError):
                cfg = {}
            if not isinstance(cfg, dict):
                cfg = {}
        if override is not None:
            source = Path(override).read_text(encoding="utf-8")
        else:
            source = cfg.get("chat_template")
            if isinstance(source, list):  # named templates: the default one
                named = {t.get("name"): t.get("template") for t in source if isinstance(t, dict)}
                source = named.get("default")
            chat_file = Path(model_dir) / "chat_template.jinja"
            if not source and chat_file.is_file():
                source = chat_file.read_text(encoding="utf-8")
        if not isinstance(source, str) or not source.strip():
            raise NoTemplate("this model has no chat template (give one with --chat-template FILE)")
        return cls(source, tokenizer, _token_text(cfg.get("bos_token")), _token_text(cfg.get("eos_token")))

    def render(self, messages: Sequence[dict], add_generation_prompt: bool = True) -> str:
        try:
            return self._template.render(messages=list(messages), add_generation_prompt=add_generation_prompt,
                                         bos_token=self.bos_token, eos_token=self.eos_token)
        except TemplateError:
            raise
        except jinja2.TemplateError as e:
            raise TemplateError(f"the chat template failed: {e}") from None
        except Exception as e:  # noqa: BLE001 - anything a template does wrong is the request's problem
            raise TemplateError(f"the chat template failed: {type(e).__name__}: {e}") from None

    def _end_of_turn_ids(self) -> frozenset:
        """The token a finished assistant turn ends with: render a probe
        conversation and read the token right after the assistant's text
        (`<|im_end|>`, `<|eot_id|>`, `</s>`, ...), plus eos."""
        ids = set()
        eos = self.tokenizer.eos_token_id
        if eos is not None:
            ids.add(eos)
        marker = "XQZMARKERQZX"
        try:
            text = self.render([{"role": "user", "content": "hi"}, {"role": "assistant", "content": marker}],
                               add_generation_prompt=False)
        except TemplateError:
            return frozenset(ids)
        at = text.rfind(marker)
        if at >= 0:
            self.after_reply = after = text[at + len(marker):]
            if after:
                first = self.tokenizer.encode(after)[:1]
                if first and self.tokenizer.is_special(first[0]):
                    ids.add(first[0])
                    self.end_of_turn_id = first[0]
                    self.end_of_turn_text = self.tokenizer.decode(first)
        return frozenset(ids)
