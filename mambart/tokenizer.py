"""Tokenizer (a `tokenizers` tokenizer.json) and incremental detokenization.

The Mamba models use the GPT-NeoX byte-level BPE tokenizer, which adds no
special tokens when encoding (reference doc 5.4). A token may hold only part
of a UTF-8 character, so streamed text is held back until it is final.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import tokenizers

from . import jsonfile

TOKENIZER_FILE = "tokenizer.json"
MAX_TOKENIZER_BYTES = 1 << 30  # tokenizer.json (read by the tokenizers library): tens of MB at most
ENDOFTEXT = "<|endoftext|>"
REPLACEMENT = "\ufffd"  # what lossy UTF-8 decoding gives for bytes that are not (yet) a char


class Tokenizer:
    """Encode text to ids and decode ids back, plus the model's end-of-text id."""

    def __init__(self, tokenizer: tokenizers.Tokenizer, eos_token_id: int | None = None):
        self._tok = tokenizer
        self.eos_token_id = eos_token_id
        self._n_ids = _call(tokenizer.get_vocab_size, True)
        # Read once: the library builds these objects anew on every access.
        self._special = {i for i, t in tokenizer.get_added_tokens_decoder().items() if t.special}
        self._byte_level = isinstance(tokenizer.decoder, tokenizers.decoders.ByteLevel)
        self._byte_fallback = bool(getattr(tokenizer.model, "byte_fallback", False))

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> Tokenizer:
        """Load a tokenizer.json; eos is `<|endoftext|>` if the vocabulary has it."""
        tok = _load(Path(path))
        return cls(tok, _eos_from_vocab(tok))

    @classmethod
    def from_dir(cls, model_dir: str | os.PathLike) -> Tokenizer:
        """Load `tokenizer.json` from a model directory.

        The eos id comes from the first of tokenizer_config.json (`eos_token`),
        generation_config.json and config.json (`eos_token_id`) that gives a
        valid one, else from `<|endoftext|>` in the vocabulary, else None.
        """
        model_dir = Path(model_dir)
        tok = _load(model_dir / TOKENIZER_FILE)
        return cls(tok, _eos_from_dir(model_dir, tok))

    @property
    def vocab_size(self) -> int:
        """Number of ids the tokenizer can produce, added tokens included."""
        return self._n_ids

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`; no special tokens are added.

        Raises TypeError for a non-str and ValueError for text that is not
        valid Unicode (lone surrogates, e.g. undecodable bytes of a command
        line) or that the tokenizer fails on.
        """
        check_text(text, "text")
        return _call(self._tok.encode, text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Each text's `encode`, with Python's GIL released while the library
        works: other threads run meanwhile (a server's event loop, while a
        long prompt is tokenized). The library may use its own thread pool
        for several texts, unless TOKENIZERS_PARALLELISM=false.
        """
        for t in texts:
            check_text(t, "text")
        return [e.ids for e in _call(self._tok.encode_batch, list(texts), add_special_tokens=False)]

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = False) -> str:
        """Text of `ids`; special tokens are written out unless skipped.

        Every id must be an int in [0, vocab_size): ValueError names the first
        that is not.
        """
        ids = list(ids)
        n = self._n_ids
        for i in ids:
            if not (isinstance(i, (int, np.integer)) and not isinstance(i, bool) and 0 <= i < n):
                raise ValueError(f"token id {i!r} is not an id of this tokenizer (0 to {n - 1})")
        return _call(self._tok.decode, [int(i) for i in ids], skip_special_tokens=skip_special_tokens)

    def token_to_id(self, token: str) -> int | None:
        check_text(token, "token")
        return _call(self._tok.token_to_id, token)

    def is_special(self, token_id: int) -> bool:
        """Whether the id is a special added token (`<|endoftext|>`, `<|im_end|>`, ...)."""
        return int(token_id) in self._special

    def token_bytes(self, token_id: int) -> bytes:
        """The bytes a token stands for, which may be part of a UTF-8 character
        (OpenAI's logprobs `bytes`): read through byte-level BPE's alphabet, or a
        byte-fallback token's <0xNN>; else the UTF-8 of its decoded text."""
        token_id = int(token_id)
        piece = self._tok.id_to_token(token_id)
        if piece is not None and token_id not in self._special:
            if self._byte_level and all(c in _BYTE_OF for c in piece):
                return bytes(_BYTE_OF[c] for c in piece)
            fallback = self._byte_fallback and _BYTE_FALLBACK.fullmatch(piece)
            if fallback:
                return bytes([int(fallback[1], 16)])
        return self.decode([token_id]).encode("utf-8")

    def stream_decoder(self, skip_special_tokens: bool = False) -> StreamDecoder:
        """An incremental decoder whose output concatenates to `decode(all ids)`."""
        return StreamDecoder(lambda ids: self.decode(ids, skip_special_tokens))


class StreamDecoder:
    """Incremental detokenizer using the prefix-offset technique.

    Only a short window of recent ids is kept and decoded at each step:
    ids[:_read] were emitted and are decoded again only as context (decoders
    may treat a window's first token specially); ids[_read:] are pending. New
    text is emitted once the window's decoding no longer ends in U+FFFD, i.e.
    no UTF-8 character is cut, and the window then restarts at `_read`.
    """

    # Pending ids after which a safe split point is searched for: a valid
    # character spans at most 4 byte tokens, so only invalid bytes get here.
    _MAX_PENDING = 8
    _SPLIT_CANDIDATES = 4

    def __init__(self, decode: Callable[[list[int]], str]):
        self._decode = decode
        self._ids: list[int] = []
        self._read = 0
        self._read_text = ""  # decode(ids[:_read]), cached

    def push(self, token_id: int) -> str:
        """Add one id; return the text that became final with it (often "")."""
        self._ids.append(int(token_id))
        text = self._decode(self._ids)
        if not text.endswith(REPLACEMENT) and text.startswith(self._read_text):
            return self._advance(len(self._ids), text)
        if len(self._ids) - self._read > self._MAX_PENDING:
            return self._split(text)
        return ""

    def flush(self) -> str:
        """Return whatever is still held back (lossy if it is invalid UTF-8) and reset."""
        out = self._decode(self._ids)[len(self._read_text):] if self._ids else ""
        self._ids, self._read, self._read_text = [], 0, ""
        return out

    def _advance(self, read: int, text: str) -> str:
        """Emit the text of ids[:read] (decoded: `text`) beyond what was emitted."""
        out = text[len(self._read_text):]
        # ids[_read:read] become the next window's context; older ids are done.
        del self._ids[:self._read]
        self._read = read - self._read
        self._read_text = self._decode(self._ids[:self._read])
        return out

    def _split(self, text: str) -> str:
        """Emit up to a recent id boundary whose text can no longer change.

        A boundary j is final when decoding the two sides separately gives
        the same text as decoding them together: then no later byte can join
        a character before j. Only a few recent boundaries are tried, keeping
        the cost per token bounded.
        """
        ids = self._ids
        stop = max(self._read, len(ids) - self._SPLIT_CANDIDATES - 1)
        for j in range(len(ids) - 1, stop, -1):
            head = self._decode(ids[:j])
            if head.startswith(self._read_text) and head + self._decode(ids[j:]) == text:
                return self._advance(j, head)
        return ""


def _byte_level_alphabet() -> dict[str, int]:
    """Byte-level BPE's character for each byte, inverted: the printable
    Latin-1 bytes stand for themselves, the other 68 take U+0100 on, in byte
    order."""
    printable = set(range(0x21, 0x7F)) | set(range(0xA1, 0xAD)) | set(range(0xAE, 0x100))
    out, extra = {}, 0x100
    for b in range(256):
        if b in printable:
            out[chr(b)] = b
        else:
            out[chr(extra)] = b
            extra += 1
    return out


_BYTE_OF = _byte_level_alphabet()
_BYTE_FALLBACK = re.compile(r"<0x([0-9A-Fa-f]{2})>")  # sentencepiece-style byte tokens


def check_text(text: str, what: str) -> None:
    """TypeError unless `text` is a str; ValueError unless it is valid Unicode.

    Undecodable bytes reach Python as lone surrogates (U+DC80-U+DCFF for a
    command line's bytes): they have no UTF-8 form, so no tokenizer can take them.
    """
    if not isinstance(text, str):
        raise TypeError(f"{what} must be a str, got {type(text).__name__}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        c = ord(text[e.start])
        if 0xDC80 <= c <= 0xDCFF:
            raise ValueError(f"{what} is not valid UTF-8 (byte 0x{c - 0xDC00:02x} at character "
                             f"{e.start})") from None
        raise ValueError(f"{what} holds a lone surrogate U+{c:04X} at character {e.start}, "
                         "which is not valid Unicode") from None


def decode_text(raw: bytes, what: str) -> str:
    """UTF-8 bytes (a prompt file, stdin) as text; ValueError naming the first bad byte."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{what} is not valid UTF-8 (byte 0x{raw[e.start]:02x} at offset "
                         f"{e.start})") from None


def _call(fn: Callable, *args, **kwargs):
    """Call into the tokenizers library, turning its failures into ValueError.

    A Rust panic inside it (e.g. a pre-tokenizer regex that exceeds its
    backtracking limit) arrives as pyo3's PanicException, a BaseException
    that would pass every `except Exception`.
    """
    try:
        return fn(*args, **kwargs)
    except (KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except BaseException as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(f"tokenizer failed: {msg}") from None


def _load(path: Path) -> tokenizers.Tokenizer:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: tokenizer file not found")
    size = path.stat().st_size
    if size > MAX_TOKENIZER_BYTES:
        raise ValueError(f"{path}: {size} bytes, over the {MAX_TOKENIZER_BYTES}-byte limit for a tokenizer")
    try:
        return _call(tokenizers.Tokenizer.from_file, str(path))
    except ValueError as e:  # tokenizers raises a bare Exception on bad files
        raise ValueError(f"{path}: cannot load tokenizer ({str(e).removeprefix('tokenizer failed: ')})") from None


def _read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object file, or None if the file does not exist."""
    if not path.is_file():
        return None
    data = jsonfile.read(path)
    return data if isinstance(data, dict) else None


def _valid_id(value: Any, tok: tokenizers.Tokenizer) -> int | None:
    """An eos id from a config value (int, or list of ints: the first)."""
    if isinstance(value, list) and value:
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if 0 <= value < tok.get_vocab_size(with_added_tokens=True) else None


def _eos_from_vocab(tok: tokenizers.Tokenizer) -> int | None:
    return tok.token_to_id(ENDOFTEXT)


def _eos_from_dir(model_dir: Path, tok: tokenizers.Tokenizer) -> int | None:
    tok_cfg = _read_json(model_dir / "tokenizer_config.json") or {}
    eos = tok_cfg.get("eos_token")
    if isinstance(eos, dict):  # older files store an AddedToken object
        eos = eos.get("content")
    if isinstance(eos, str) and tok.token_to_id(eos) is not None:
        return tok.token_to_id(eos)
    for name in ("generation_config.json", "config.json"):
        found = _valid_id((_read_json(model_dir / name) or {}).get("eos_token_id"), tok)
        if found is not None:
            return found
    return _eos_from_vocab(tok)
