"""`Decoder`: the recurrent state of a batch of sequences, and their samplers."""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Sequence

import numpy as np

from . import _core
from .sampling import SamplingParams

if TYPE_CHECKING:
    from .model import Model


class Decoder:
    """The state of `batch` sequences over one model: prefill, step, sample.

    A Mamba's whole context is this fixed-size state, so it can be saved and
    restored (`save_state`, `Model.load_state`). Each row has its own
    sampler; the random stream starts from the seed of the first sampling
    parameters and continues across calls and through save and load.
    """

    def __init__(self, model: "Model", batch: int = 1) -> None:
        if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
            raise ValueError(f"batch must be a positive int, got {batch!r}")
        self.model = model
        self._core = _core.Decoder(model._core, int(batch))
        self._samplers: list | None = None
        self._rng_states: list[bytes] | None = None  # restored, applied at the next set_sampling

    @property
    def batch(self) -> int:
        return self._core.batch

    @property
    def has_logits(self) -> bool:
        return self._core.has_logits

    def prefill(self, prompts: Sequence[Sequence[int]], all_logits: bool = False) -> np.ndarray | None:
        """Feed one prompt (token ids) per row, continuing from the current state.

        With all_logits (batch 1) return the logits of every position, (len, vocab_size).
        """
        return self._core.prefill([_ids(p) for p in prompts], all_logits)

    def prefill_logits_device(self, prompt: Sequence[int]):
        """Feed one prompt (batch 1, CUDA) and return the logits of every position,
        (len, vocab_size), in device memory without a copy: an object with
        `__cuda_array_interface__` (e.g. `cupy.asarray(...)`) that owns its memory."""
        interface, owner = self._core.prefill([_ids(prompt)], on_device=True)
        return _DeviceArray(interface, owner)

    def step(self, tokens: Sequence[int]) -> None:
        """Feed one token per row."""
        self._core.step(_ids(tokens))

    def logits(self) -> np.ndarray:
        """The current next-token logits, (batch, vocab_size), a copy."""
        return self._core.logits()

    def logits_device(self):
        """The current logits in device memory (CUDA), without a copy: an object with
        `__cuda_array_interface__` (e.g. `cupy.asarray(d.logits_device())`), valid until
        the next prefill or step."""
        return _DeviceArray(self._core.logits_interface(), self)

    def history(self, row: int = 0) -> list[int]:
        """Token ids fed to `row` so far."""
        return self._core.history(row)

    def set_sampling(self, params: SamplingParams) -> None:
        """Sample with `params` from now on (row i seeded with seed + i on first use)."""
        samplers = [params.make_sampler(row) for row in range(self.batch)]
        carried = self._rng_states or ([s.rng_state for s in self._samplers] if self._samplers else None)
        if carried:
            for sampler, state in zip(samplers, carried):
                sampler.rng_state = state
        self._samplers, self._rng_states = samplers, None

    def sample(self) -> np.ndarray:
        """The next token of every row, (batch,) int32. Does not feed them: call step()."""
        if self._samplers is None:
            self.set_sampling(SamplingParams())
        return np.asarray(self._core.sample(self._samplers, self.model.vocab_limit), dtype=np.int32)

    def save_state(self, path: str | os.PathLike | None = None) -> bytes:
        """The whole state as bytes (and written to `path` when given); see mambart.state."""
        from .state import dump

        data = dump(self)
        if path is not None:
            with open(path, "wb") as f:
                f.write(data)
        return data

    def rng_states(self) -> list[bytes] | None:
        if self._rng_states is not None:
            return list(self._rng_states)
        return [s.rng_state for s in self._samplers] if self._samplers else None


class _DeviceArray:
    """A device buffer seen through `__cuda_array_interface__`; keeps its owner alive."""

    def __init__(self, interface: dict, owner) -> None:
        self.__cuda_array_interface__ = interface
        self._owner = owner


def _ids(tokens: Sequence[int]) -> list[int]:
    arr = np.asarray(tokens.get() if hasattr(tokens, "__cuda_array_interface__") else tokens)
    if arr.ndim != 1:
        raise ValueError(f"token ids must be 1-D, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"token ids must be integers, got {arr.dtype}")
    if arr.size and (arr.min() < -2**31 or arr.max() >= 2**31):
        raise ValueError("token id out of range")
    return arr.astype(np.int64).tolist()
