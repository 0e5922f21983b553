"""The generation loop: prefill, then sample and step one token at a time.

The hot loop (forward pass and sampling) runs in C++; Python is called
twice per generated token (sample, step), never per layer.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import numpy as np

from .sampling import SamplingParams
from .tokenizer import Tokenizer


@dataclass
class GenerationStats:
    """Token counts and wall-clock seconds of one generation."""

    prefill_tokens: int = 0
    prefill_seconds: float = 0.0
    decode_tokens: int = 0
    decode_seconds: float = 0.0
    stop_reason: str = ""  # "length", "eos" or "stop"
    cached_tokens: int = 0  # prompt tokens a PromptCache hit covered (not prefilled)

    @staticmethod
    def rate(tokens: int, seconds: float) -> float:
        """Tokens per second; 0.0 when nothing was timed (no tokens), never inf."""
        return tokens / seconds if tokens and seconds > 0 else 0.0

    def summary_lines(self) -> list[str]:
        """The lines the CLI prints on stderr; scripts parse them."""
        return [
            f"prefill: {self.prefill_tokens} tokens in {self.prefill_seconds:.3f} s "
            f"({self.rate(self.prefill_tokens, self.prefill_seconds):.1f} tok/s)",
            f"decode: {self.decode_tokens} tokens in {self.decode_seconds:.3f} s "
            f"({self.rate(self.decode_tokens, self.decode_seconds):.1f} tok/s)",
        ]


def generate_ids(
    decoder,
    prompts: Sequence[Sequence[int]],
    params: SamplingParams,
    max_new_tokens: int,
    stats: GenerationStats,
    progress: Callable[[int, int], object] | None = None,
    cache=None,
) -> Iterator[np.ndarray]:
    """Yield the next token of every row, (batch,) int32, up to max_new_tokens times.

    Prefills `prompts` (one per row) from the decoder's current state; with
    no prompts (every one empty) it continues from the state's own logits.
    Each yielded token is fed back before the next one is sampled, so when
    the caller exhausts the iterator the state covers every token. Rows
    keep going after an end-of-text token; callers decide what a row's end is.

    The decoder is held from the first next() until the iterator ends or is
    closed: another thread using it meanwhile gets RuntimeError.
    progress(done, total) is called between prefill chunks (Decoder.prefill).
    With a `mambart.PromptCache`, each row starts from its longest cached
    prefix (its state is replaced) and only the rest is prefilled (no
    progress calls); the result is the same as without the cache.
    """
    if len(prompts) != decoder.batch:
        raise ValueError(f"{len(prompts)} prompts for a decoder of batch {decoder.batch}")
    use = decoder._use
    use.acquire()
    try:
        decoder.set_sampling(params)
        t0 = time.perf_counter()
        if any(len(p) for p in prompts):
            if not all(len(p) for p in prompts):
                raise ValueError("give every row a prompt, or none to continue a saved state")
            if cache is None:
                decoder.prefill(prompts, progress=progress)
            else:
                from .cache import cached_prefill

                stats.cached_tokens = sum(cached_prefill(decoder, row, p, cache) for row, p in enumerate(prompts))
        elif not decoder.has_logits:
            raise ValueError("prompt is empty and there is no state to continue from")
        t1 = time.perf_counter()
        stats.prefill_tokens = sum(len(p) for p in prompts) - stats.cached_tokens
        stats.prefill_seconds = t1 - t0
        for i in range(max_new_tokens):
            tokens = decoder.sample()
            stats.decode_tokens = (i + 1) * len(prompts)
            stats.decode_seconds = time.perf_counter() - t1
            yield tokens
            use.follow()  # the caller may resume it from another thread
            decoder.step(tokens)
    finally:
        use.release()


class TextStream:
    """Iterator of text pieces for one prompt; `.stats` is filled as it runs.

    Text is produced by an incremental detokenizer, so multi-byte characters
    and BPE merges never come out split. Generation ends at max_new_tokens,
    at the end-of-text token (not emitted), or at the first stop string
    (the text before it is emitted, the stop string is not).
    """

    def __init__(
        self,
        decoder,
        tokenizer: Tokenizer,
        prompt_ids: Sequence[int],
        params: SamplingParams,
        max_new_tokens: int,
        stop: Sequence[str] = (),
        progress: Callable[[int, int], object] | None = None,
        cache=None,
    ) -> None:
        self.stats = GenerationStats()
        self.token_ids: list[int] = []
        self.decoder = decoder
        ids = generate_ids(decoder, [prompt_ids], params, max_new_tokens, self.stats, progress, cache)
        self._pieces = self._run(ids, tokenizer, list(stop))

    def __iter__(self) -> Iterator[str]:
        return self._pieces

    def __next__(self) -> str:
        return next(self._pieces)

    def close(self) -> None:
        """End the generation here: the decoder is free for other threads again
        (as when the stream is exhausted or garbage-collected)."""
        self._pieces.close()

    def _run(self, ids: Iterator[np.ndarray], tokenizer, stop) -> Iterator[str]:
        try:
            yield from self._text(ids, tokenizer, stop)
        finally:
            ids.close()  # ends the hold on the decoder now, not at garbage collection

    def _text(self, ids: Iterator[np.ndarray], tokenizer, stop) -> Iterator[str]:
        detok = tokenizer.stream_decoder()
        eos = tokenizer.eos_token_id
        held = ""  # text not yet emitted: it may be the start of a stop string
        self.stats.stop_reason = "length"
        for tokens in ids:
            token = int(tokens[0])
            if eos is not None and token == eos:
                self.stats.stop_reason = "eos"
                break
            self.token_ids.append(token)
            held += detok.push(token)
            emit, held, stopped = _split_at_stop(held, stop)
            if emit:
                yield emit
            if stopped:
                self.stats.stop_reason = "stop"
                return
        held += detok.flush()
        emit, _, _ = _split_at_stop(held, stop, final=True)
        if emit:
            yield emit


def _split_at_stop(text: str, stop: Sequence[str], final: bool = False) -> tuple[str, str, bool]:
    """Split text into (emit now, hold back, stopped).

    Holds back the longest tail that could still grow into a stop string.
    """
    if not stop:
        return text, "", False
    cut = min((i for i in (text.find(s) for s in stop) if i >= 0), default=-1)
    if cut >= 0:
        return text[:cut], "", True
    if final:
        return text, "", False
    keep = 0
    for s in stop:
        for n in range(min(len(s) - 1, len(text)), 0, -1):
            if text.endswith(s[:n]):
                keep = max(keep, n)
                break
    return text[: len(text) - keep], text[len(text) - keep :], False
