"""`PromptCache`: states of token prefixes already run, so that a prompt that
extends one prefills only the rest.

A Mamba's whole context is its fixed-size state, so a cached prefix costs
the same few MB whatever its length (`Decoder.export_row` blobs), and a hit
skips the prefill of every token it covers. Entries are keyed by their token
ids and kept in an LRU bounded in bytes (blob plus ids): the byte count
never exceeds `max_bytes`.

Exactness. On the CPU a prefill's arithmetic does not depend on how the
prompt is cut into calls (every linear layer of a prefill takes the GEMM's
order of sums whatever the number of rows, and the scans run token by
token), so the state after prefilling ids[:k] and then ids[k:] is
bit-identical to the state after prefilling ids at once: every prefilled
state is an exact start for any extension, and results are identical with
and without the cache (a cache is bound to the model that first uses it:
other weights, another dtype or device would compute other bits). Decode
steps round differently, so the state at the
end of a completion is stored after prefilling the completion's tokens
again (`PrefillRun` from the end-of-prompt state; the server does it for
chat replies, whose next turn extends them). On CUDA (cuBLAS), hits are
equal up to float rounding.
"""
from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Sequence

import numpy as np

# Extra checkpoints inside a long prefill (at multiples of this position), for
# a shared system prompt or document.
CHECKPOINT_EVERY = 512


def _key(ids: np.ndarray) -> bytes:
    return hashlib.blake2b(ids.tobytes(), digest_size=16).digest()


@dataclass
class _Entry:
    ids: np.ndarray      # int32 token ids of the prefix
    blob: bytes          # Decoder.export_row of the state after them

    @property
    def nbytes(self) -> int:
        return len(self.blob) + self.ids.nbytes


@dataclass
class CacheHit:
    length: int          # tokens covered
    blob: bytes | None   # state after them (None: no hit, start from zero)


class PromptCache:
    """An LRU of prefix states, bounded by `max_bytes`; thread-safe.

    Pass one to `Model.generate(..., cache=)` / `Model.stream(..., cache=)`, or
    share it with `mambart serve`'s scheduler. Counters: `hits`, `misses`,
    `hit_tokens` (prompt tokens not prefilled thanks to a hit), `evictions`,
    `nbytes`, `len()`. It serves one model (weights, dtype and device): the
    first that uses it; `clear()` frees it for another.
    """

    def __init__(self, max_bytes: int = 512 << 20) -> None:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0:
            raise ValueError(f"max_bytes must be an int >= 0, got {max_bytes!r}")
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[int, bytes], _Entry] = OrderedDict()
        self._lengths: dict[int, int] = {}  # prefix length -> entries of that length
        self._lock = threading.Lock()
        self.nbytes = 0
        self.hits = self.misses = self.hit_tokens = self.evictions = 0
        self._model: tuple[str, str] | None = None  # (run_fingerprint, name) of the model it serves

    def bind(self, model) -> None:
        """Marks the cache as serving `model`; ValueError if it already holds
        states of another model (or of the same checkpoint in another dtype or
        on another device), which would start a prompt from wrong states."""
        with self._lock:
            if self._model is None:
                self._model = (model.run_fingerprint, model.name)
            elif self._model[0] != model.run_fingerprint:
                raise ValueError(f"this PromptCache holds states of another model ({self._model[1]}, "
                                 f"{self._model[0]}); use one cache per model, dtype and device, or clear() it")

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, ids: Sequence[int]) -> CacheHit:
        """The longest cached prefix of ids, marked as recently used; counts a
        hit or a miss."""
        arr = np.asarray(ids, dtype=np.int32)
        with self._lock:
            for length in sorted((n for n in self._lengths if n <= len(arr)), reverse=True):
                k = (length, _key(arr[:length]))
                entry = self._entries.get(k)
                if entry is None or not np.array_equal(entry.ids, arr[:length]):
                    continue
                self._entries.move_to_end(k)
                self.hits += 1
                self.hit_tokens += length
                return CacheHit(length, entry.blob)
            self.misses += 1
            return CacheHit(0, None)

    def store(self, ids: Sequence[int], blob: bytes) -> bool:
        """Keeps the state `blob` after `ids` (a prefilled state); False when
        it cannot fit at all. Storing the same prefix again refreshes it."""
        arr = np.asarray(ids, dtype=np.int32).copy()
        if len(arr) == 0:
            return False
        entry = _Entry(arr, bytes(blob))
        if entry.nbytes > self.max_bytes:
            return False
        k = (len(arr), _key(arr))
        with self._lock:
            old = self._entries.pop(k, None)
            if old is not None:
                self.nbytes -= old.nbytes
                self._forget_length(len(arr))
            while self._entries and self.nbytes + entry.nbytes > self.max_bytes:
                _, gone = self._entries.popitem(last=False)
                self.nbytes -= gone.nbytes
                self._forget_length(len(gone.ids))
                self.evictions += 1
            self._entries[k] = entry
            self.nbytes += entry.nbytes
            self._lengths[len(arr)] = self._lengths.get(len(arr), 0) + 1
        return True

    def _forget_length(self, n: int) -> None:
        self._lengths[n] -= 1
        if self._lengths[n] == 0:
            del self._lengths[n]

    def clear(self) -> None:
        """Forgets every entry, and the model served."""
        with self._lock:
            self._model = None
            self._entries.clear()
            self._lengths.clear()
            self.nbytes = 0


def cached_prefill(decoder, row: int, ids: Sequence[int], cache: PromptCache | None) -> int:
    """Prefills ids into one row of decoder, from the longest hit of cache (the
    row's state is replaced), storing checkpoints and the end state. Returns
    the tokens the hit covered."""
    ids = list(ids)
    if cache is not None:
        cache.bind(decoder.model)
    hit = cache.lookup(ids) if cache is not None else CacheHit(0, None)
    run = PrefillRun(decoder, row, ids, hit, cache)
    while not run.done:
        run.advance(len(ids))
    return hit.length


class PrefillRun:
    """The prefill of ids[hit.length:] into a row, a slice per advance(), so
    that a scheduler can interleave it with decode steps; stores the states
    at multiples of CHECKPOINT_EVERY and at the end of ids in the cache as it
    goes, and at the positions in `marks` (the end of a chat's system prompt:
    where other conversations continue)."""

    def __init__(self, decoder, row: int, ids: list[int], hit: CacheHit, cache: PromptCache | None,
                 marks: Sequence[int] = ()) -> None:
        """Puts hit's state into the row (zeros for no hit)."""
        if cache is not None:
            cache.bind(decoder.model)
        self.decoder, self.row, self.ids, self.cache = decoder, row, ids, cache
        self.start = self.pos = hit.length
        self.marks = sorted(m for m in marks if hit.length < m < len(ids))
        if hit.blob is None:
            decoder.reset_row(row)
        else:
            decoder.import_row(row, hit.blob)  # a full hit: its logits are there too

    @property
    def done(self) -> bool:
        return self.pos >= len(self.ids)

    @property
    def remaining(self) -> int:
        return len(self.ids) - self.pos

    def advance(self, budget: int) -> int:
        """Prefills up to `budget` (>= 1) more tokens, stopping at the next
        checkpoint; returns how many."""
        end = min(len(self.ids), self.pos + budget)
        if self.cache is not None:
            end = min(end, (self.pos // CHECKPOINT_EVERY + 1) * CHECKPOINT_EVERY,
                      *(m for m in self.marks if m > self.pos))
        self.decoder.prefill_row(self.row, self.ids[self.pos:end])
        n, self.pos = end - self.pos, end
        if self.cache is not None and (self.done or self.pos % CHECKPOINT_EVERY == 0 or self.pos in self.marks):
            self.cache.store(self.ids[:self.pos], self.decoder.export_row(self.row))
        return n
