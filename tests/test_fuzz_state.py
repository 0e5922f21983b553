"""Fuzz target for the state reader (mambart/state.py), run by hypothesis for a
bounded number of examples: malformed input ends in a ValueError with a
one-line message, never a crash, a hang or another exception.

Byte mutations of a valid file stop at the checksum, so the second target
also gives the header fuzzed JSON values with lengths and checksum that
match: the checks behind the checksum get fuzzed too.
"""
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mambart
from test_state import rebuild, split

FUZZ = settings(max_examples=200, derandomize=True, deadline=2000, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def model(small_model_dir):
    return mambart.load(small_model_dir[0], threads=1)


@pytest.fixture(scope="module")
def state(model):
    dec = model.decoder(2)
    dec.prefill([[5, 6, 7], [8]])
    dec.sample()
    return dec.save_state()


def loads_or_value_error(model, data):
    try:
        model.load_state(data)
    except ValueError as e:
        assert str(e) and "\n" not in str(e), repr(str(e))


edits = st.lists(st.tuples(st.integers(0, 1 << 16), st.sampled_from(["flip", "cut", "insert", "delete"]),
                           st.binary(min_size=1, max_size=8)), max_size=6)


@FUZZ
@given(edits=edits)
def test_fuzz_state_bytes(model, state, edits):
    data = bytearray(state)
    for pos, kind, blob in edits:
        pos %= len(data) + 1
        if kind == "flip" and pos < len(data):
            data[pos] ^= blob[0] or 1
        elif kind == "cut":
            del data[pos:]
        elif kind == "insert":
            data[pos:pos] = blob
        else:
            del data[pos:pos + len(blob)]
    loads_or_value_error(model, bytes(data))


json_values = st.recursive(st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                                       max_size=4),
                           max_leaves=12)
FIELDS = ["model", "fingerprint", "batch", "history", "rng", "arrays"]


@FUZZ
@given(replaced=st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=3),
       dropped=st.sets(st.sampled_from(FIELDS), max_size=1), body_cut=st.integers(0, 64))
def test_fuzz_state_header(model, state, replaced, dropped, body_cut):
    header, body = split(state)
    fingerprint = header["fingerprint"]
    header.update(replaced)
    for name in dropped:
        header.pop(name, None)
    if "fingerprint" not in replaced:
        header["fingerprint"] = fingerprint  # get past the model check most of the time
    loads_or_value_error(model, rebuild(header, body[:len(body) - body_cut]))


@FUZZ
@given(raw=st.binary(max_size=256))
def test_fuzz_state_header_bytes(model, state, raw):
    """Any bytes as the header, lengths and checksum matching."""
    loads_or_value_error(model, rebuild(raw, split(state)[1]))
