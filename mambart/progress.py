"""The prefill progress bar `mambart generate` draws on a terminal."""
from __future__ import annotations

from typing import TextIO


class PrefillBar:
    """progress(done, total) for Decoder.prefill: one line redrawn in place on
    `stream` (a terminal), erased when the prefill ends or is interrupted.
    Prompts shorter than min_tokens draw nothing: they take no time."""

    WIDTH = 30

    def __init__(self, stream: TextIO, min_tokens: int = 1024) -> None:
        self.stream = stream
        self.min_tokens = min_tokens
        self.drawn = False

    def __call__(self, done: int, total: int) -> None:
        if total < self.min_tokens:
            return
        if done >= total:
            self.clear()
            return
        filled = self.WIDTH * done // total
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        self.stream.write(f"\rprefill [{bar}] {done}/{total} tokens ({100 * done // total}%)")
        self.stream.flush()
        self.drawn = True

    def clear(self) -> None:
        if self.drawn:
            self.stream.write("\r\x1b[K")  # back to the line's start, erase it
            self.stream.flush()
            self.drawn = False
