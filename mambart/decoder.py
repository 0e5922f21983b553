"""`Decoder`: the recurrent state of a batch of sequences, and their samplers."""
from __future__ import annotations

import functools
import os
import threading
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from . import _core
from .sampling import SamplingParams

if TYPE_CHECKING:
    from .model import Model


BUSY = ("this Decoder is in use by another thread; give each thread its own Decoder "
        "(a Model can be shared)")


class _Use:
    """Which thread is using a Decoder: one at a time, re-entrant for it.

    A second thread gets RuntimeError(BUSY) at once rather than waiting: two
    threads feeding one sequence is a bug waiting would hide. A generation
    holds the decoder from its first token to its end, and follows its
    iterator when another thread resumes it (`follow`).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owner: int | None = None
        self._depth = 0

    def acquire(self) -> None:
        me = threading.get_ident()
        with self._lock:
            if self._owner not in (None, me):
                raise RuntimeError(BUSY)
            self._owner = me
            self._depth += 1

    def release(self) -> None:
        with self._lock:
            self._depth -= 1
            if self._depth == 0:
                self._owner = None

    def follow(self) -> None:
        """A held generation resumed, maybe on another thread: it moves there,
        unless its former thread is inside a call of its own right now."""
        me = threading.get_ident()
        with self._lock:
            if self._owner != me:
                if self._depth != 1:
                    raise RuntimeError(BUSY)
                self._owner = me

    def __enter__(self) -> None:
        self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _exclusive(method):
    """The decoder is held by the calling thread for the whole call."""
    @functools.wraps(method)
    def held(self, *args, **kwargs):
        with self._use:
            return method(self, *args, **kwargs)
    return held


class Decoder:
    """The state of `batch` sequences over one model: prefill, step, sample.

    A Mamba's whole context is this fixed-size state, so it can be saved and
    restored (`save_state`, `Model.load_state`). Each row has its own
    sampler; the random stream starts from the seed of the first sampling
    parameters and continues across calls and through save and load.

    One thread at a time: a call while another thread is using the decoder
    (in a call, or in a generation that has not ended) raises RuntimeError.
    A Model is shared by any number of threads, each with its own Decoder.
    """

    def __init__(self, model: "Model", batch: int = 1) -> None:
        if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
            raise ValueError(f"batch must be a positive int, got {batch!r}")
        if batch >= 2**63:
            raise ValueError(f"batch {batch} is too large")
        self.model = model
        self._core = _core.Decoder(model._core, int(batch))
        self._samplers: list | None = None
        self._rng_states: list[bytes] | None = None  # restored, applied at the next set_sampling
        self._counts: list[dict[int, int]] | None = None  # the same for the penalties' token counts
        self._use = _Use()

    @property
    def batch(self) -> int:
        return self._core.batch

    @property
    @_exclusive
    def has_logits(self) -> bool:
        return self._core.has_logits

    @_exclusive
    def prefill(self, prompts: Sequence[Sequence[int]], all_logits: bool = False,
                progress: Callable[[int, int], object] | None = None) -> np.ndarray | None:
        """Feed one prompt (token ids) per row, continuing from the current state.

        With all_logits (batch 1) return the logits of every position, (len, vocab_size).
        progress(done, total), if given, is called after each chunk of the
        prompts (tokens fed so far, tokens in all); an exception from it stops
        the prefill at that chunk; it may read the decoder, not change it
        (RuntimeError). Ctrl-C (KeyboardInterrupt) stops it between
        two layers, the chunk it was in undone. Either way each row's state
        and history() then cover exactly the whole chunks fed, and there are
        no logits until the next prefill or step.
        """
        if progress is not None and not callable(progress):
            raise TypeError(f"progress must be callable or None, got {type(progress).__name__}")
        return self._core.prefill([token_id_list(p) for p in prompts], all_logits, progress=progress)

    @_exclusive
    def prefill_logits_device(self, prompt: Sequence[int]):
        """Feed one prompt (batch 1, CUDA) and return the logits of every position,
        (len, vocab_size), in device memory without a copy: an object with
        `__cuda_array_interface__` (e.g. `cupy.asarray(...)`) that owns its memory."""
        interface, owner = self._core.prefill([token_id_list(prompt)], on_device=True)
        return _DeviceArray(interface, owner)

    @_exclusive
    def step(self, tokens: Sequence[int]) -> None:
        """Feed one token to each of the first len(tokens) rows (all rows when
        len(tokens) == batch; the other rows are left as they are)."""
        self._core.step(token_id_list(tokens))

    # ---- one row at a time: continuous batching keeps live rows in [0, n) ----

    @_exclusive
    def sample_rows(self, samplers: Sequence) -> np.ndarray:
        """The next token of rows [0, len(samplers)), each with its own
        `_core.Sampler` (e.g. `SamplingParams.make_sampler()`), (n,) int32."""
        return np.asarray(self._core.sample(list(samplers), self.model.vocab_limit), dtype=np.int32)

    @_exclusive
    def prefill_row(self, row: int, tokens: Sequence[int]) -> None:
        """Feed tokens to one row, continuing its state; the other rows are untouched."""
        self._core.prefill_row(row, token_id_list(tokens))

    @_exclusive
    def reset_row(self, row: int) -> None:
        """Zero one row's state and forget its history and logits."""
        self._core.reset_row(row)

    @_exclusive
    def copy_row(self, src: int, dst: int) -> None:
        """Copy row src's state, logits and history over row dst."""
        self._core.copy_row(src, dst)

    @_exclusive
    def export_row(self, row: int) -> bytes:
        """One row's whole state (recurrent state, logits, history) as one
        opaque blob, for `import_row` on a decoder of the same model."""
        return self._core.export_row(row)

    @_exclusive
    def import_row(self, row: int, blob: bytes) -> None:
        self._core.import_row(row, blob)

    @_exclusive
    def row_logits(self, row: int) -> np.ndarray:
        """One row's current logits, (vocab_size,), a copy."""
        return self._core.row_logits(row)

    @_exclusive
    def row_has_logits(self, row: int) -> bool:
        return self._core.row_has_logits(row)

    @_exclusive
    def logits(self) -> np.ndarray:
        """The current next-token logits, (batch, vocab_size), a copy."""
        return self._core.logits()

    @_exclusive
    def logits_device(self):
        """The current logits in device memory (CUDA), without a copy: an object with
        `__cuda_array_interface__` (e.g. `cupy.asarray(d.logits_device())`), valid until
        the next prefill or step."""
        return _DeviceArray(self._core.logits_interface(), self)

    @_exclusive
    def history(self, row: int = 0) -> list[int]:
        """Token ids fed to `row` so far."""
        return self._core.history(row)

    @_exclusive
    def set_sampling(self, params: SamplingParams) -> None:
        """Sample with `params` from now on (row i seeded with seed + i on first use)."""
        self._samplers, self._rng_states, self._counts = self._make_samplers(params), None, None

    def _make_samplers(self, params: SamplingParams) -> list:
        if not isinstance(params, SamplingParams):
            raise TypeError(f"params must be a mambart.SamplingParams, got {type(params).__name__}")
        samplers = [params.make_sampler(row) for row in range(self.batch)]
        carried = self._rng_states or ([s.rng_state for s in self._samplers] if self._samplers else None)
        if carried:
            for sampler, state in zip(samplers, carried):
                sampler.rng_state = state
        # The presence / frequency penalties' counts go on with the random
        # stream, so that a continued (or saved and loaded) state samples as
        # one uninterrupted run would.
        counts = self.penalty_counts()
        if counts:
            for sampler, c in zip(samplers, counts):
                sampler.counts = c
        return samplers

    @_exclusive
    def sample(self) -> np.ndarray:
        """The next token of every row, (batch,) int32. Does not feed them: call step().

        A call that fails (no logits yet) changes nothing, random streams included.
        """
        samplers = self._samplers if self._samplers is not None else self._make_samplers(SamplingParams())
        tokens = np.asarray(self._core.sample(samplers, self.model.vocab_limit), dtype=np.int32)
        if self._samplers is None:  # installed only once they have drawn
            self._samplers, self._rng_states, self._counts = samplers, None, None
        return tokens

    @_exclusive
    def save_state(self, path: str | os.PathLike | None = None) -> bytes:
        """The whole state as bytes (and written to `path` when given); see mambart.state.

        One consistent snapshot: no other thread can change the decoder meanwhile."""
        from .state import dump

        # open() takes an int (a bool too) as a file descriptor, and closes it after.
        if path is not None and not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a str, an os.PathLike or None, got {type(path).__name__}")
        data = dump(self)
        if path is not None:
            with open(path, "wb") as f:
                f.write(data)
        return data

    @_exclusive
    def rng_states(self) -> list[bytes] | None:
        if self._rng_states is not None:
            return list(self._rng_states)
        return [s.rng_state for s in self._samplers] if self._samplers else None

    @_exclusive
    def penalty_counts(self) -> list[dict[int, int]] | None:
        """Per row, the tokens sampled so far -> times, as the presence and
        frequency penalties count them (empty without those penalties).
        Held like every call: a sample() on another thread (the GIL released)
        adds to the counts it copies."""
        if self._counts is not None:
            return [dict(c) for c in self._counts]
        return [s.counts for s in self._samplers] if self._samplers else None


class _DeviceArray:
    """A device buffer seen through `__cuda_array_interface__`; keeps its owner alive."""

    def __init__(self, interface: dict, owner) -> None:
        self.__cuda_array_interface__ = interface
        self._owner = owner


def token_id_list(tokens: Sequence[int]) -> list[int]:
    """Token ids (a sequence, or a NumPy or CuPy array, of integers) as Python
    ints, for the core; ValueError unless 1-D integers within int32, naming
    the first id out of it (as the ids were given: a cast would wrap it)."""
    arr = np.asarray(tokens.get() if hasattr(tokens, "__cuda_array_interface__") else tokens)
    if arr.ndim != 1:
        raise ValueError(f"token ids must be 1-D, got shape {arr.shape}")
    ids = arr.tolist()
    if arr.size and not np.issubdtype(arr.dtype, np.integer) and not (
            arr.dtype == object and all(isinstance(t, int) and not isinstance(t, bool) for t in ids)):
        raise ValueError(f"token ids must be integers, got {arr.dtype}")  # (object: Python ints past int64)
    bad = next((t for t in ids if not -2**31 <= t < 2**31), None)
    if bad is not None:
        raise ValueError(f"token id {bad} is out of range")
    return ids
