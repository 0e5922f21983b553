"""Every JSON the package reads goes through here: a size and a nesting limit.

Python's json recurses once per nesting level, so a file of `[[[[...` raises
RecursionError (not a ValueError) and, below the recursion limit, hands
deep structures to code that may recurse again (repr, hashing). Real model
files nest a few levels, so anything deeper than MAX_DEPTH is refused here,
as is a file larger than its limit, before it is read whole.
"""
from __future__ import annotations

import json
import math
import os
from typing import Any, Callable

MAX_BYTES = 64 << 20   # config, index, tokenizer and generation configs: kilobytes in practice
MAX_DEPTH = 64         # nesting of arrays / objects; real files nest under 10


def loads(text: str | bytes, name: str, *, max_depth: int = MAX_DEPTH,
          object_hook: Callable[[dict], Any] | None = None,
          object_pairs_hook: Callable[[list], Any] | None = None) -> Any:
    """Parse JSON text; every parse error is a one-line ValueError starting with `name`.

    Errors raised by the hooks pass through unchanged.
    """
    if isinstance(text, (bytes, bytearray, memoryview)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"{name}: not valid UTF-8 (byte {e.start})") from None
    try:
        value = json.loads(text, object_hook=object_hook, object_pairs_hook=object_pairs_hook, parse_int=_int)
    except json.JSONDecodeError as e:
        raise ValueError(f"{name}: not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    except RecursionError:
        raise ValueError(f"{name}: JSON nests deeper than {max_depth} levels") from None
    except _LongInt as e:
        raise ValueError(f"{name}: not valid JSON (an integer of {e.args[0]} digits, too long to read)") from None
    _check_depth(value, name, max_depth)
    return value


def read(path: str | os.PathLike, *, max_bytes: int = MAX_BYTES, name: str | None = None,
         **kwargs) -> Any:
    """Parse a JSON file of at most `max_bytes` bytes (see `loads`).

    The size is checked before reading, and at most max_bytes + 1 bytes are
    ever read (a device or a growing file cannot make it read more).
    """
    name = str(path) if name is None else name
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size > max_bytes:
            raise ValueError(f"{name}: {size} bytes, over the {max_bytes}-byte limit for a JSON file")
        raw = f.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise ValueError(f"{name}: over the {max_bytes}-byte limit for a JSON file")
    return loads(raw, name, **kwargs)


def finite(value: int | float) -> bool:
    """math.isfinite for a JSON number, which may be an int past float range
    (there math.isfinite raises OverflowError): False for it."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


class _LongInt(Exception):
    """An integer literal longer than Python converts (not a ValueError: hooks' errors pass through)."""


def _int(text: str) -> int:
    # int() refuses more than 4300 digits (Python's default limit) with a ValueError
    # that names no file and points at sys.set_int_max_str_digits().
    try:
        return int(text)
    except ValueError:
        raise _LongInt(len(text.lstrip("-"))) from None


def _check_depth(value: Any, name: str, max_depth: int) -> None:
    """Refuse containers nested deeper than max_depth (iteratively: no recursion)."""
    todo = [(value, 1)]
    while todo:
        obj, depth = todo.pop()
        if isinstance(obj, dict):
            children = obj.values()
        elif isinstance(obj, (list, tuple)):
            children = obj
        else:
            continue
        if depth > max_depth:
            raise ValueError(f"{name}: JSON nests deeper than {max_depth} levels")
        todo.extend((child, depth + 1) for child in children if isinstance(child, (dict, list, tuple)))
