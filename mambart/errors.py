"""Error messages are one line: names taken from a file are shown escaped."""
from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")


def one_line(text: str) -> str:
    """`text` with control characters (newlines included) written as escapes.

    Tensor, entry and key names come from the file being read, and may hold
    anything; a message quoting them must still be one line.
    """
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)
