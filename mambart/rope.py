"""Rotary frequencies for each rope type, as transformers' rope utilities form them.

A config's `rope_parameters` (or the older `rope_scaling`) names a type; the
static ones are computed here once, in f32 and in the reference's order of
operations, and the core only ever sees (inv_freq, scale):

  default   inv_freq[i] = 1 / theta^(2i / dim)
  linear    inv_freq / factor
  llama3    low frequencies / factor, high ones kept, a smooth ramp between
            (wavelengths against original_max_position_embeddings)
  yarn      the interpolated (/ factor) and original frequencies blended over
            the dims between beta_fast and beta_slow rotations; cos and sin
            times the attention factor (0.1 ln factor + 1 unless given)

"dynamic" and "longrope" change the frequencies with the length of each
forward pass, so the keys already cached were turned by other frequencies
than the new ones: they are refused, as are types transformers adds later.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import jsonfile

SUPPORTED = ("default", "linear", "llama3", "yarn")
_LENGTH_DEPENDENT = ("dynamic", "longrope")


def parse(params: dict[str, Any], max_positions: int) -> tuple[tuple[str, Any], ...]:
    """The scaling of a rope parameters dict, normalised: () for "default", else
    (("rope_type", type), (key, value), ...) with every value the type uses, defaults
    filled in. `max_positions` is the config's max_position_embeddings.
    Raises ValueError for an unsupported type or a bad value."""
    kind = params.get("rope_type", params.get("type", "default"))
    if kind == "default":
        return ()
    if kind in _LENGTH_DEPENDENT:
        raise ValueError(f"rope_type {kind!r} recomputes its frequencies as the context grows, which mambart "
                         f"does not do (supported: {', '.join(SUPPORTED)})")
    if kind not in SUPPORTED:
        raise ValueError(f"rope_type {kind!r} is not supported (supported: {', '.join(SUPPORTED)})")
    if kind == "linear":
        return (("rope_type", kind), ("factor", _positive(params, "factor", None)))
    if isinstance(max_positions, bool) or not isinstance(max_positions, int) or max_positions <= 0 \
            or not jsonfile.finite(max_positions):  # YaRN divides it by the original length
        raise ValueError(f"rope_type {kind!r} needs 'max_position_embeddings' a positive integer, "
                         f"got {max_positions!r}")
    original = _positive(params, "original_max_position_embeddings", max_positions)
    if original != int(original):
        raise ValueError(f"rope_type {kind!r} needs 'original_max_position_embeddings' an integer, got {original!r}")
    original = int(original)
    # YaRN without a factor stretches the original context to max_position_embeddings.
    factor = _positive(params, "factor", max_positions / original if kind == "yarn" else None)
    out: dict[str, Any] = {"rope_type": kind, "factor": factor, "original_max_position_embeddings": original}
    if kind == "llama3":
        low = _positive(params, "low_freq_factor", None)
        high = _positive(params, "high_freq_factor", None)
        if high <= low:
            raise ValueError(f"rope high_freq_factor {high} must exceed low_freq_factor {low}")
        return tuple(dict(out, low_freq_factor=low, high_freq_factor=high).items())
    attention = params.get("attention_factor")
    if attention is None:
        mscale, mscale_all = params.get("mscale"), params.get("mscale_all_dim")
        if mscale and mscale_all:
            attention = _mscale(factor, _positive(params, "mscale", None)) / _mscale(
                factor, _positive(params, "mscale_all_dim", None))
        else:
            attention = _mscale(factor, 1.0)
    else:
        attention = _positive(params, "attention_factor", None)
    # transformers reads beta_* with `or`: a 0 or null there means the default.
    beta_fast = _positive(params, "beta_fast", 32.0) if params.get("beta_fast") else 32.0
    beta_slow = _positive(params, "beta_slow", 1.0) if params.get("beta_slow") else 1.0
    truncate = params.get("truncate", True)
    if not isinstance(truncate, bool):
        raise ValueError(f"rope 'truncate' must be true or false, got {truncate!r}")
    return tuple(dict(out, attention_factor=float(attention), beta_fast=beta_fast, beta_slow=beta_slow,
                      truncate=truncate).items())


def frequencies(dim: int, theta: float, scaling: tuple[tuple[str, Any], ...]) -> tuple[np.ndarray, float]:
    """(inv_freq, scale): the dim / 2 f32 frequencies of `dim` rotated dims and the factor
    on cos and sin, for a scaling that `parse` returned. ValueError when they would not be
    finite f32 numbers (or YaRN's dims between its betas are undefined: theta <= 1)."""
    with np.errstate(all="ignore"):
        inv, scale = _frequencies(dim, theta, scaling)
    if not np.isfinite(inv).all() or not np.isfinite(np.float32(scale)) or scale <= 0:
        raise ValueError(f"rope_theta {theta!r} with {dict(scaling) or 'the default type'} gives frequencies "
                         "or an attention factor that are not finite positive f32 numbers")
    return inv, scale


def _frequencies(dim: int, theta: float, scaling: tuple[tuple[str, Any], ...]) -> tuple[np.ndarray, float]:
    s = dict(scaling)
    kind = s.get("rope_type", "default")
    f32 = np.float32
    exponents = np.arange(0, dim, 2, dtype=f32) / f32(dim)
    powers = (f32(theta) ** exponents).astype(f32)
    inv = (f32(1.0) / powers).astype(f32)
    if kind == "default":
        return inv, 1.0
    factor = f32(s["factor"])
    if kind == "linear":
        return (inv / factor).astype(f32), 1.0
    original = s["original_max_position_embeddings"]
    if kind == "llama3":
        low, high = s["low_freq_factor"], s["high_freq_factor"]
        wavelen = (f32(2 * math.pi) / inv).astype(f32)
        scaled = np.where(wavelen > f32(original / low), inv / factor, inv).astype(f32)
        smooth = ((f32(original) / wavelen - f32(low)) / f32(high - low)).astype(f32)
        smoothed = ((f32(1) - smooth) * scaled / factor + smooth * scaled).astype(f32)
        medium = ~(wavelen < f32(original / high)) & ~(wavelen > f32(original / low))
        return np.where(medium, smoothed, scaled).astype(f32), 1.0
    # yarn
    interpolated = (f32(1.0) / (factor * powers)).astype(f32)
    lo, hi = _correction_range(s["beta_fast"], s["beta_slow"], dim, theta, original, s["truncate"])
    if lo == hi:
        hi += 0.001  # as the reference does, against a zero-width ramp
    ramp = np.clip((np.arange(dim // 2, dtype=f32) - f32(lo)) / f32(hi - lo), 0, 1).astype(f32)
    extrapolate = (f32(1) - ramp).astype(f32)
    inv = (interpolated * (f32(1) - extrapolate) + inv * extrapolate).astype(f32)
    return inv, s["attention_factor"]


def _correction_range(fast: float, slow: float, dim: int, theta: float, original: int,
                      truncate: bool) -> tuple[float, float]:
    """The dims (of dim / 2) between `fast` and `slow` full turns over the original context."""
    if theta <= 1:
        raise ValueError(f"rope_type 'yarn' needs rope_theta > 1, got {theta!r}")

    def dim_of(turns: float) -> float:
        return dim * math.log(original / (turns * 2 * math.pi)) / (2 * math.log(theta))
    lo, hi = dim_of(fast), dim_of(slow)
    if truncate:
        lo, hi = math.floor(lo), math.ceil(hi)
    return max(lo, 0), min(hi, dim - 1)


def _mscale(factor: float, mscale: float) -> float:
    return 1.0 if factor <= 1 else 0.1 * mscale * math.log(factor) + 1.0


def _positive(params: dict[str, Any], key: str, default: float | None) -> float:
    value = params.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not jsonfile.finite(value) or value <= 0:
        kind = params.get("rope_type", params.get("type"))
        raise ValueError(f"rope_type {kind!r} needs '{key}' a positive number, got {value!r}")
    return float(value)
