"""Sampling parameters: one validated, immutable value per generation."""
from __future__ import annotations

import math
import numbers
import os
from dataclasses import dataclass

_SEED_LIMIT = 2**64
# Temperature and penalty are applied in float32: they must survive the rounding.
_FLOAT32_MIN, _FLOAT32_MAX = 1.1754943508222875e-38, 3.4028234663852886e38


def _real(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    try:
        value = float(value)
    except OverflowError:  # an int beyond float range (not shown: it may have thousands of digits)
        raise ValueError(f"{name} must be finite, got a number beyond float range") from None
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


_MAX_TOP_K = 2**31 - 1


@dataclass(frozen=True)
class SamplingParams:
    """How the next token is chosen from the logits.

    The defaults switch every filter off: temperature 1.0 samples from the
    model's own distribution, top_k=0, top_p=1.0, min_p=0.0 and
    repetition_penalty=1.0 change nothing. temperature=0 is greedy decoding
    (argmax after the repetition penalty; the other filters are ignored).
    seed=None draws a random seed from os.urandom each time a sampler is
    made; an int seed makes the draws reproducible on every platform.

    The filters run in transformers' order, with OpenAI's presence and
    frequency penalties after the repetition penalty, pinned and tested:
    repetition penalty -> presence/frequency -> temperature -> top-k ->
    top-p -> min-p -> draw.

    - repetition_penalty > 0: each distinct id seen so far has its logit
      multiplied (if negative) or divided (otherwise) by it.
    - presence_penalty, frequency_penalty in [-2, 2] (OpenAI's range): the
      logit of token t drops by frequency_penalty * count[t] +
      presence_penalty * (count[t] > 0), count[t] the times t was generated
      so far in this generation (the prompt does not count, as OpenAI
      defines it: how often t was sampled before the current position).
    - temperature >= 0: logits are divided by it.
    - top_k >= 0: keep the scores >= the k-th largest (ties kept).
    - top_p in (0, 1]: keep the most likely tokens whose probabilities sum to
      more than top_p (the most likely token always stays).
    - min_p in [0, 1]: drop tokens less probable than min_p times the most
      likely token's probability.
    """

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0

    def __post_init__(self) -> None:
        temperature = _real("temperature", self.temperature)
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        if temperature != 0 and not _FLOAT32_MIN <= temperature <= _FLOAT32_MAX:
            raise ValueError(f"temperature must be 0 or within float32 range, got {temperature}")
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, numbers.Integral):
            raise ValueError(f"top_k must be an int, got {self.top_k!r}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")
        top_p = _real("top_p", self.top_p)
        if not 0 < top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        min_p = _real("min_p", self.min_p)
        if not 0 <= min_p <= 1:
            raise ValueError(f"min_p must be in [0, 1], got {min_p}")
        penalty = _real("repetition_penalty", self.repetition_penalty)
        if penalty <= 0:
            raise ValueError(f"repetition_penalty must be > 0, got {penalty}")
        if not _FLOAT32_MIN <= penalty <= _FLOAT32_MAX:
            raise ValueError(f"repetition_penalty must be within float32 range, got {penalty}")
        penalties = {}
        for name in ("presence_penalty", "frequency_penalty"):
            penalties[name] = _real(name, getattr(self, name))
            if not -2 <= penalties[name] <= 2:
                raise ValueError(f"{name} must be in [-2, 2], got {penalties[name]}")
        if self.seed is not None:
            if isinstance(self.seed, bool) or not isinstance(self.seed, numbers.Integral):
                raise ValueError(f"seed must be None or an int, got {self.seed!r}")
            if not 0 <= self.seed < _SEED_LIMIT:
                raise ValueError(f"seed must be in [0, 2**64), got {self.seed}")
        # Store plain Python numbers (numpy scalars in, floats and ints out).
        for name, value in (("temperature", temperature), ("top_k", int(self.top_k)),
                            ("top_p", top_p), ("min_p", min_p),
                            ("repetition_penalty", penalty), *penalties.items()):
            object.__setattr__(self, name, value)
        if self.seed is not None:
            object.__setattr__(self, "seed", int(self.seed))

    @property
    def is_greedy(self) -> bool:
        return self.temperature == 0

    def make_sampler(self, row: int = 0) -> "_core.Sampler":  # noqa: F821
        """The C++ sampler for batch row `row`, seeded (seed + row) mod 2**64,
        so that row 0 of a batch draws exactly like a single sequence."""
        from . import _core

        if isinstance(row, bool) or not isinstance(row, numbers.Integral) or row < 0:
            raise ValueError(f"row must be an int >= 0, got {row!r}")
        base = self.seed if self.seed is not None else int.from_bytes(os.urandom(8), "little")
        return _core.Sampler(
            temperature=self.temperature,
            top_k=min(int(self.top_k), _MAX_TOP_K),  # beyond any vocabulary: same as keeping all
            top_p=self.top_p,
            min_p=self.min_p,
            repetition_penalty=self.repetition_penalty,
            presence_penalty=self.presence_penalty,
            frequency_penalty=self.frequency_penalty,
            seed=(base + int(row)) % _SEED_LIMIT,
        )
