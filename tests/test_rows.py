"""The decoder's row API (continuous batching): stepping the first n rows,
moving, resetting, prefilling, exporting and importing one row; and the
promise that a row's result never depends on the batch it runs in."""
from __future__ import annotations

import numpy as np
import pytest

import mambart
from mambart import _core
from mambart.sampling import SamplingParams

DTYPES = ["f32", "f16", "bf16", "q8", "q4"]


def _solo(model, prompt, steps, params):
    """Tokens and per-step logits of one sequence run alone at batch 1."""
    d = model.decoder(1)
    d.prefill([prompt])
    s = params.make_sampler()
    toks, logits = [], []
    for _ in range(steps):
        logits.append(d.row_logits(0))
        t = int(d.sample_rows([s])[0])
        toks.append(t)
        d.step([t])
    return toks, logits


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_row_is_the_same_whatever_the_batch(any_model_dir, dtype):
    """8 sequences that join and leave a batch of 8 rows at different steps
    (rows compacted by copy_row) give bit for bit the tokens and logits each
    gives alone; greedy and seeded sampling."""
    path, _ = any_model_dir
    model = mambart.load(path, dtype=dtype, threads=2)
    rng = np.random.default_rng(1)
    V = model.vocab_limit
    seqs = []
    for i in range(8):
        prompt = rng.integers(1, V, int(rng.integers(1, 40))).tolist()
        params = SamplingParams(temperature=0.0) if i % 2 else SamplingParams(temperature=1.0, top_k=20, seed=i)
        seqs.append(dict(prompt=prompt, params=params, steps=int(rng.integers(3, 12)), start=int(rng.integers(0, 8))))
    want = [_solo(model, s["prompt"], s["steps"], s["params"]) for s in seqs]

    dec = model.decoder(8)
    live: list[dict] = []  # live[r] runs in row r
    got = [([], []) for _ in seqs]
    for t in range(40):
        for i, s in enumerate(seqs):
            if s["start"] == t:
                r = len(live)
                dec.reset_row(r)
                dec.prefill_row(r, s["prompt"])
                live.append(dict(i=i, sampler=s["params"].make_sampler()))
        if not live:
            continue
        for r, row in enumerate(live):
            got[row["i"]][1].append(dec.row_logits(r))
        toks = dec.sample_rows([row["sampler"] for row in live])
        for r, row in enumerate(live):
            got[row["i"]][0].append(int(toks[r]))
        dec.step(toks.tolist())
        # Finished rows leave; the last live row moves into the hole.
        r = 0
        while r < len(live):
            i = live[r]["i"]
            if len(got[i][0]) == seqs[i]["steps"]:
                last = len(live) - 1
                if r != last:
                    dec.copy_row(last, r)
                live[r] = live[last]
                live.pop()
            else:
                r += 1
    for i, (toks, logits) in enumerate(want):
        assert got[i][0] == toks, f"sequence {i}"
        for a, b in zip(got[i][1], logits):
            np.testing.assert_array_equal(a, b)


def test_step_first_rows_leaves_the_others(small_model_dir):
    path, _ = small_model_dir
    model = mambart.load(path, threads=2)
    dec = model.decoder(3)
    dec.prefill([[1, 2], [3, 4, 5], [6]])
    before = dec.logits()
    blob2 = dec.export_row(2)
    dec.step([7, 8])
    after = dec.logits()
    np.testing.assert_array_equal(after[2], before[2])
    assert dec.export_row(2) == blob2
    assert dec.history(0) == [1, 2, 7] and dec.history(2) == [6]
    with pytest.raises(ValueError, match="tokens for a decoder of batch 3"):
        dec.step([1, 2, 3, 4])
    with pytest.raises(ValueError, match="tokens for a decoder of batch 3"):
        dec.step([])


def test_export_import_round_trip(any_model_dir):
    path, _ = any_model_dir
    model = mambart.load(path, threads=2)
    a = model.decoder(2)
    a.prefill_row(1, [5, 6, 7, 8])
    blob = a.export_row(1)
    b = model.decoder(4)
    b.import_row(3, blob)
    assert b.history(3) == [5, 6, 7, 8] and b.row_has_logits(3) and not b.row_has_logits(0)
    np.testing.assert_array_equal(b.row_logits(3), a.row_logits(1))
    a.step([1, 9])
    b.step([1, 1, 1, 9])
    np.testing.assert_array_equal(b.row_logits(3), a.row_logits(1))
    b.reset_row(3)
    assert b.history(3) == [] and not b.row_has_logits(3)
    fresh = model.decoder(1)
    assert b.export_row(3) == fresh.export_row(0)
    with pytest.raises(ValueError, match="sample.*row 0 has no logits"):
        fresh.sample_rows([SamplingParams().make_sampler()])


def test_import_refuses_bad_blobs(small_model_dir, small_mamba2_dir):
    m1 = mambart.load(small_model_dir[0], threads=1)
    m2 = mambart.load(small_mamba2_dir[0], threads=1)
    d1, d2 = m1.decoder(1), m2.decoder(1)
    d1.prefill([[1, 2, 3]])
    blob = d1.export_row(0)
    with pytest.raises(ValueError, match="another model shape"):
        d2.import_row(0, blob)
    with pytest.raises(ValueError, match="bad magic"):
        d1.import_row(0, b"nonsense")
    with pytest.raises(ValueError, match="runs past the end|truncated"):
        d1.import_row(0, blob[:-5])
    with pytest.raises(ValueError, match="unknown section"):
        d1.import_row(0, blob + b"kvca" + (0).to_bytes(8, "little"))
    with pytest.raises(ValueError, match="outside"):
        d1.export_row(1)
    assert d1.history(0) == [1, 2, 3]  # the failed imports changed nothing
