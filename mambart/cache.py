"""`PromptCache`: states of token prefixes already run, so that a prompt that
extends one prefills only the rest.

A Mamba's whole context is its fixed-size state, so a cached prefix costs
the same few MB whatever its length (`Decoder.export_row` blobs), and a hit
skips the prefill of every token it covers. Entries are keyed by their token
ids and kept in an LRU bounded in bytes (blob plus ids): the byte count
never exceeds `max_bytes`.

Exactness. A prefill runs in chunks of `PREFILL_CHUNK` tokens counted from
where it starts, and the chunked arithmetic (the GEMMs, Mamba-2's SSD) rounds
according to where the chunk boundaries fall; a decode step rounds
differently again. So a state is only bit-identical to what a cold run would
compute for a longer prompt when it was made by prefill chunks at the same
absolute positions: a checkpoint at a multiple of the chunk, prefilled from
position 0 (or from such a checkpoint) in chunk-aligned slices. Those entries
are `extendable`. Every other state (the end of a prompt, the end of a
prompt) is exact only for a prompt of exactly its tokens, and the end of a
completion (whose tokens were decoded one by one, not prefilled) is exact
for nothing. `exact=True` (the default) uses only hits that are exact, so results are identical with and without the cache; `exact=False`
also continues from the end of any earlier prompt or completion (a chat turn
then prefills only its new message), and results equal a cold run up to
float rounding (the same state reached by a different order of operations).
"""
from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Sequence

import numpy as np

# The C++ prefill chunk (cpp/model/decoder.cpp kPrefillChunk).
PREFILL_CHUNK = 256
# Extra checkpoints inside a long prefill, for a shared system prompt or document.
CHECKPOINT_EVERY = 512


def _key(ids: np.ndarray) -> bytes:
    return hashlib.blake2b(ids.tobytes(), digest_size=16).digest()


# How exact a stored state is (see the module doc).
DECODED = 0     # reached by decode steps: approximate hits only
PREFILLED = 1   # prefilled: exact for a prompt of exactly these tokens
EXTENDABLE = 2  # prefilled in aligned chunks to a chunk boundary: exact for any extension


@dataclass
class _Entry:
    ids: np.ndarray      # int32 token ids of the prefix
    blob: bytes          # Decoder.export_row of the state after them
    level: int           # DECODED, PREFILLED or EXTENDABLE

    @property
    def nbytes(self) -> int:
        return len(self.blob) + self.ids.nbytes


@dataclass
class CacheHit:
    length: int          # tokens covered
    blob: bytes | None   # state after them (None: no hit, start from zero)
    level: int = -1      # the entry's exactness (DECODED, PREFILLED, EXTENDABLE)


class PromptCache:
    """An LRU of prefix states, bounded by `max_bytes`; thread-safe.

    Pass one to `Model.generate(..., cache=)` / `Model.stream(..., cache=)`, or
    share it with `mambart serve`'s scheduler. Counters: `hits`, `misses`,
    `hit_tokens` (prompt tokens not prefilled thanks to a hit), `evictions`,
    `nbytes`, `len()`.
    """

    def __init__(self, max_bytes: int = 512 << 20, *, exact: bool = True) -> None:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0:
            raise ValueError(f"max_bytes must be an int >= 0, got {max_bytes!r}")
        self.max_bytes = max_bytes
        self.exact = bool(exact)
        self._entries: OrderedDict[tuple[int, bytes], _Entry] = OrderedDict()
        self._lengths: dict[int, int] = {}  # prefix length -> entries of that length
        self._lock = threading.Lock()
        self.nbytes = 0
        self.hits = self.misses = self.hit_tokens = self.evictions = 0

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, ids: Sequence[int]) -> CacheHit:
        """The longest usable cached prefix of ids (see the module doc for which
        are usable), marked as recently used; counts a hit or a miss."""
        arr = np.asarray(ids, dtype=np.int32)
        with self._lock:
            for length in sorted((n for n in self._lengths if n <= len(arr)), reverse=True):
                entry = self._entries.get((length, _key(arr[:length])))
                if entry is None or not np.array_equal(entry.ids, arr[:length]):
                    continue
                if self.exact and entry.level < (PREFILLED if length == len(arr) else EXTENDABLE):
                    continue
                self._entries.move_to_end((length, _key(arr[:length])))
                self.hits += 1
                self.hit_tokens += length
                return CacheHit(length, entry.blob, entry.level)
            self.misses += 1
            return CacheHit(0, None)

    def store(self, ids: Sequence[int], blob: bytes, level: int) -> bool:
        """Keeps the state `blob` after `ids` (made as `level` says); False when
        it cannot fit at all. Storing the same prefix again refreshes it; a
        more exact state already held is kept."""
        arr = np.asarray(ids, dtype=np.int32).copy()
        if len(arr) == 0:
            return False
        entry = _Entry(arr, bytes(blob), int(level))
        if entry.nbytes > self.max_bytes:
            return False
        k = (len(arr), _key(arr))
        with self._lock:
            old = self._entries.pop(k, None)
            if old is not None:
                if old.level > entry.level:
                    entry = old
                self.nbytes -= old.nbytes
                self._lengths[len(arr)] -= 1
            while self._entries and self.nbytes + entry.nbytes > self.max_bytes:
                _, gone = self._entries.popitem(last=False)
                self.nbytes -= gone.nbytes
                self._forget_length(len(gone.ids))
                self.evictions += 1
            self._entries[k] = entry
            self.nbytes += entry.nbytes
            self._lengths[len(arr)] = self._lengths.get(len(arr), 0) + 1
            assert self.nbytes <= self.max_bytes
        return True

    def _forget_length(self, n: int) -> None:
        self._lengths[n] -= 1
        if self._lengths[n] == 0:
            del self._lengths[n]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._lengths.clear()
            self.nbytes = 0


def prefill_slices(start: int, end: int, slice_tokens: int = PREFILL_CHUNK) -> list[tuple[int, int]]:
    """[start, end) cut at the absolute multiples of slice_tokens (itself a
    multiple of PREFILL_CHUNK): from an aligned start, the C++ chunks then fall
    where one prefill from 0 puts them, so the result is bit-identical."""
    if slice_tokens % PREFILL_CHUNK:
        raise ValueError(f"slice_tokens must be a multiple of {PREFILL_CHUNK}, got {slice_tokens}")
    out, pos = [], start
    while pos < end:
        nxt = min(end, (pos // slice_tokens + 1) * slice_tokens)
        out.append((pos, nxt))
        pos = nxt
    return out


def is_checkpoint(pos: int, start: int, end: int, aligned_start: bool) -> bool:
    """Whether the state at `pos` (a slice end of a prefill of [start, end)) is
    kept as an extendable checkpoint: chunk-aligned positions reached by
    aligned slices, every CHECKPOINT_EVERY tokens and the last one before the
    end (the one the next turn of a chat extends)."""
    if not aligned_start or pos % PREFILL_CHUNK:
        return False
    return pos % CHECKPOINT_EVERY == 0 or pos + PREFILL_CHUNK > end


def cached_prefill(decoder, row: int, ids: Sequence[int], cache: PromptCache | None) -> int:
    """Prefills ids into one row of decoder, from the longest usable hit of
    cache (the row's state is replaced), storing checkpoints and the end
    state. Returns the tokens the hit covered."""
    ids = list(ids)
    hit = cache.lookup(ids) if cache is not None else CacheHit(0, None)
    if hit.blob is None:
        decoder.reset_row(row)
    else:
        decoder.import_row(row, hit.blob)
    run = PrefillRun(decoder, row, ids, hit, cache)
    while not run.done:
        run.advance()
    return hit.length


class PrefillRun:
    """The prefill of ids[start:] into a row, one slice per advance(), so that
    a scheduler can interleave it with decode steps; stores the checkpoints
    and the end-of-prompt state in the cache as it goes."""

    def __init__(self, decoder, row: int, ids: list[int], hit: CacheHit, cache: PromptCache | None,
                 slice_tokens: int = PREFILL_CHUNK) -> None:
        """The row must hold hit's state already (import_row, or reset_row for no hit)."""
        self.decoder, self.row, self.ids, self.cache = decoder, row, ids, cache
        self.start = start = hit.length
        # Aligned chunks all the way from 0: the states it reaches at chunk
        # boundaries are extendable checkpoints.
        self.aligned = start == 0 or hit.level == EXTENDABLE
        self._slices = prefill_slices(start, len(ids), slice_tokens)
        self._next = 0
        self.prefilled = 0
        if not self._slices:  # a full hit: the state and its logits are there already
            self._finish()

    @property
    def done(self) -> bool:
        return self._next >= len(self._slices)

    def advance(self) -> None:
        a, b = self._slices[self._next]
        self.decoder.prefill_row(self.row, self.ids[a:b])
        self.prefilled += b - a
        self._next += 1
        if self.cache is not None and is_checkpoint(b, self.start, len(self.ids), self.aligned) and b < len(self.ids):
            self.cache.store(self.ids[:b], self.decoder.export_row(self.row), EXTENDABLE)
        if self.done:
            self._finish()

    def _finish(self) -> None:
        if self.cache is None:
            return
        end = len(self.ids)
        if end == self.start:
            return  # a full hit: stored already
        level = EXTENDABLE if self.aligned and end % PREFILL_CHUNK == 0 else PREFILLED
        self.cache.store(self.ids, self.decoder.export_row(self.row), level)
