"""State files: every changed byte is refused, sizes are checked before they
are trusted, and a reader reads no more than the file declares for this model."""
import os
import threading
import time

import pytest

import mambart
from test_state import rebuild, split


@pytest.fixture(scope="module")
def model(any_model_dir):
    return mambart.load(any_model_dir[0], threads=1)


@pytest.fixture(scope="module")
def state(model):
    dec = model.decoder(1)
    dec.prefill([[5, 6, 7]])
    dec.set_sampling(mambart.SamplingParams(seed=1))
    dec.step([int(dec.sample()[0])])
    return dec.save_state()


def test_every_flipped_byte_is_refused(model, state):
    """A bit flipped at each byte position in turn (and every byte inverted at a
    third of them): never loaded, always a ValueError."""
    for i in range(len(state)):
        for mask in (0x01, 0xFF) if i % 3 == 0 else (0x01,):
            bad = bytearray(state)
            bad[i] ^= mask
            with pytest.raises(ValueError):
                model.load_state(bytes(bad))
    assert model.load_state(state).history(0)[:3] == [5, 6, 7]


def test_huge_declared_arrays_are_refused(model, state):
    """Arrays that would wrap int64 ([2**32, 2**32] floats is 2**66 bytes) or a
    batch beyond the data: refused from the header, before the data is read,
    even with a checksum that matches."""
    header, body = split(state)
    for arrays in ([["conv", [2**32, 2**32]], ["ssm", [0]]], [["conv", [-1, 4]]], [["conv", [2**62] * 4]]):
        header["arrays"] = arrays
        with pytest.raises(ValueError, match="not this model's"):
            model.load_state(rebuild(header, body))
    header, body = split(state)
    for batch in (2**40, 0, -3, 1.0, True, "1"):
        header["batch"] = batch
        with pytest.raises(ValueError, match="batch"):
            model.load_state(rebuild(header, body))


def test_dev_zero_is_refused_at_once(model):
    start = time.perf_counter()
    with pytest.raises(ValueError, match="bad magic"):
        model.load_state("/dev/zero")
    assert time.perf_counter() - start < 5


def test_a_huge_file_is_refused_from_its_size(model, state, tmp_path):
    path = tmp_path / "huge.state"
    with open(path, "wb") as f:
        f.write(state)
        f.truncate(len(state) + (8 << 30))  # 8 GB of (sparse) trailing zeros
    start = time.perf_counter()
    with pytest.raises(ValueError, match="longer than it declares"):
        model.load_state(path)
    assert time.perf_counter() - start < 5


@pytest.mark.parametrize("tail", ["endless", "short"])
def test_a_pipe_is_read_no_further_than_declared(model, state, tmp_path, tail):
    """Through a FIFO (no size to check first): a valid state followed by an
    endless stream stops at one byte past the declared end; one that ends
    early is truncated."""
    fifo = tmp_path / "state.fifo"
    os.mkfifo(fifo)
    written = [0]

    def writer():
        with open(fifo, "wb", buffering=0) as f:  # unbuffered: no flush at close to meet a closed pipe
            try:
                if tail == "short":
                    f.write(state[:-7])
                    return
                f.write(state)
                for _ in range(4096):  # 256 MB unless the reader stops
                    f.write(bytes(1 << 16))
                    written[0] += 1
            except BrokenPipeError:
                pass

    t = threading.Thread(target=writer)
    t.start()
    try:
        with pytest.raises(ValueError, match="trailing" if tail == "endless" else "truncated"):
            model.load_state(fifo)
    finally:
        t.join(30)
    assert written[0] < 64  # the reader stopped it long before 256 MB


def test_a_long_history_round_trips(model):
    dec = model.decoder(2)
    dec.prefill([[3] * 3000, [4] * 10])
    again = model.load_state(dec.save_state())
    assert again.history(0) == [3] * 3000 and again.history(1) == [4] * 10
