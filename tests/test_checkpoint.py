"""safetensors reading/writing and sharded checkpoints (reference doc 6.1, 6.3)."""
import json
import struct

import numpy as np
import pytest

from mambart.checkpoint import (
    RawTensor, float32_to_bf16_bits, read_checkpoint, read_index, read_safetensors,
    write_safetensors,
)

RNG = np.random.default_rng(0)


def craft(path, header, data=b"", header_len=None, raw_header=None):
    """Write a file byte by byte, so that any field can be wrong."""
    text = raw_header if raw_header is not None else json.dumps(header).encode()
    n = len(text) if header_len is None else header_len
    path.write_bytes(struct.pack("<Q", n) + text + data)
    return path


def entry(dtype, shape, begin, end):
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


# --- round trips --------------------------------------------------------------


def test_round_trip_f32_is_zero_copy(tmp_path):
    a = RNG.standard_normal((3, 5)).astype(np.float32)
    b = RNG.standard_normal(7).astype(np.float32)
    write_safetensors(tmp_path / "m.safetensors", {"a": a, "b": b, "s": np.float32(2.5)})
    t = read_safetensors(tmp_path / "m.safetensors")
    assert set(t) == {"a", "b", "s"}
    assert t["a"].dtype == "F32" and t["a"].shape == (3, 5)
    out = t["a"].float32()
    np.testing.assert_array_equal(out, a)
    assert out.flags.c_contiguous and out.dtype == np.float32
    assert not out.flags.owndata and not out.flags.writeable  # a view on the mmap
    np.testing.assert_array_equal(t["b"].float32(), b)
    assert t["s"].shape == () and t["s"].float32() == 2.5


def test_round_trip_f16(tmp_path):
    a = np.array([0.0, -0.0, 1.0, 65504.0, 6e-8, np.inf, -2.5], dtype=np.float16)
    write_safetensors(tmp_path / "m.safetensors", {"a": a})
    t = read_safetensors(tmp_path / "m.safetensors")["a"]
    assert t.dtype == "F16"
    out = t.float32()
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, a.astype(np.float32))
    # F32 input stored as F16 on request.
    write_safetensors(tmp_path / "n.safetensors", {"a": a.astype(np.float32)}, dtype="F16")
    assert read_safetensors(tmp_path / "n.safetensors")["a"].dtype == "F16"


def test_round_trip_bf16_exact_and_rounded(tmp_path):
    exact = np.array([1.0, -2.0, 0.15625, 3.0e38, -np.inf, 0.0], dtype=np.float32)
    write_safetensors(tmp_path / "m.safetensors", {"x": exact.reshape(2, 3)}, dtype="BF16")
    t = read_safetensors(tmp_path / "m.safetensors")["x"]
    assert t.dtype == "BF16" and t.shape == (2, 3)
    # 3.0e38 is not a bf16 value: compare with the rounding helper's result.
    expected = (float32_to_bf16_bits(exact).astype(np.uint32) << 16).view(np.float32)
    np.testing.assert_array_equal(t.float32().ravel(), expected)
    np.testing.assert_array_equal(t.float32().ravel()[[0, 1, 2, 4, 5]], exact[[0, 1, 2, 4, 5]])


def test_bf16_round_to_nearest_even():
    def f(bits):
        return np.array([bits], dtype=np.uint32).view(np.float32)
    # Halfway cases round to the even neighbour; above halfway rounds up.
    assert float32_to_bf16_bits(f(0x3F808000))[0] == 0x3F80  # tie, even stays
    assert float32_to_bf16_bits(f(0x3F818000))[0] == 0x3F82  # tie, odd goes up
    assert float32_to_bf16_bits(f(0x3F808001))[0] == 0x3F81
    assert float32_to_bf16_bits(f(0x3F807FFF))[0] == 0x3F80
    assert float32_to_bf16_bits(f(0x7F7FFFFF))[0] == 0x7F80  # max float -> inf
    nan = float32_to_bf16_bits(f(0x7FC00001))[0]
    assert (nan & 0x7F80) == 0x7F80 and (nan & 0x007F) != 0   # NaN stays NaN
    assert float32_to_bf16_bits(f(0xFF800001))[0] & 0x7F != 0  # signalling NaN too


def test_mixed_dtypes_are_aligned(tmp_path):
    tensors = {"h": np.ones(3, np.float16), "f": np.ones(5, np.float32), "z": np.zeros((0, 4))}
    write_safetensors(tmp_path / "m.safetensors", tensors)
    t = read_safetensors(tmp_path / "m.safetensors")
    assert {k: v.dtype for k, v in t.items()} == {"h": "F16", "f": "F32", "z": "F32"}
    assert t["f"].float32().flags.aligned
    assert t["z"].float32().shape == (0, 4)
    np.testing.assert_array_equal(t["h"].float32(), np.ones(3, np.float32))


def test_misaligned_f32_is_copied(tmp_path):
    # A foreign writer may put an F32 tensor at an odd offset.
    data = b"\x00" + np.arange(4, dtype="<f4").tobytes()
    path = craft(tmp_path / "m.safetensors",
                 {"pad": entry("U8", [1], 0, 1), "x": entry("F32", [2, 2], 1, 17)},
                 data, raw_header=b'{"pad":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},'
                                  b'"x":{"dtype":"F32","shape":[2,2],"data_offsets":[1,17]}}')
    out = read_safetensors(path)["x"].float32()
    assert out.flags.aligned and out.flags.c_contiguous
    np.testing.assert_array_equal(out, np.arange(4, dtype=np.float32).reshape(2, 2))


def test_metadata_ignored_and_empty_file_ok(tmp_path):
    path = craft(tmp_path / "m.safetensors", {"__metadata__": {"format": "pt"}})
    assert read_safetensors(path) == {}


def test_other_dtype_readable_but_not_loadable(tmp_path):
    path = craft(tmp_path / "m.safetensors", {"ids": entry("I64", [2], 0, 16)},
                 np.array([1, 2], "<i8").tobytes())
    t = read_safetensors(path)["ids"]
    assert t.dtype == "I64" and list(t.data) == [1, 2]
    with pytest.raises(ValueError, match="tensor 'ids' has dtype I64; only F32, F16, BF16"):
        t.float32()


# --- corrupted files ------------------------------------------------------------

GOOD = {"a": entry("F32", [2, 2], 0, 16), "b": entry("F16", [4], 16, 24)}


@pytest.mark.parametrize("header, data, header_len, raw_header, message", [
    pytest.param(None, b"", None, b"", "header: not valid JSON", id="empty-header"),
    pytest.param(GOOD, bytes(24), 10**9, None,
                 "header length 1000000000 exceeds the 100000000-byte limit", id="huge-header"),
    pytest.param(GOOD, bytes(24), 5000, None,
                 r"header length 5000 runs past the end of the file \(\d+ bytes\)",
                 id="header-past-end"),
    pytest.param(GOOD, bytes(20), None, None,
                 r"tensor 'b' data_offsets \[16, 24\] out of range \(data buffer is 20 bytes\)",
                 id="truncated"),
    pytest.param({"x": entry("F32", [25], 0, 100)}, bytes(64), None, None,
                 r"tensor 'x' data_offsets \[0, 100\] out of range \(data buffer is 64 bytes\)",
                 id="out-of-range"),
    pytest.param({"a": entry("F32", [4], 0, 16), "b": entry("F32", [4], 8, 24)}, bytes(24),
                 None, None, r"tensor 'b' data_offsets \[8, 24\] overlap tensor 'a' "
                 r"\(which ends at 16\)", id="overlap"),
    pytest.param({"a": entry("F32", [4], 0, 16), "b": entry("F32", [1], 20, 24)}, bytes(24),
                 None, None, r"gap of 4 bytes after tensor 'a' \(tensor 'b' begins at 20\)",
                 id="gap"),
    pytest.param({"a": entry("F32", [4], 8, 24)}, bytes(24), None, None,
                 "gap of 8 bytes at the start of the data", id="gap-at-start"),
    pytest.param(GOOD, bytes(32), None, None,
                 r"8 unused bytes after the last tensor \(tensors end at 24, "
                 r"data buffer is 32 bytes\)", id="trailing-bytes"),
    pytest.param({"a": entry("F32", [2, 3], 0, 16)}, bytes(16), None, None,
                 r"tensor 'a' data_offsets \[0, 16\] hold 16 bytes, but F32 shape \[2, 3\] "
                 "needs 24", id="wrong-byte-count"),
    pytest.param({"a": entry("F32", [4], 16, 0)}, bytes(16), None, None,
                 r"tensor 'a' data_offsets \[16, 0\] end before they begin",
                 id="reversed-offsets"),
    pytest.param(None, b"", None, b'{"a": {"dtype": "F32", ', "header: not valid JSON",
                 id="bad-json"),
    pytest.param(None, b"", None, b"\xff\xfe{}", r"header: not valid UTF-8 \(byte 0\)",
                 id="bad-utf8"),
    pytest.param(None, b"", None, b"[1, 2]", "header is a JSON list, expected an object",
                 id="not-an-object"),
    pytest.param({"a": entry("F4", [4], 0, 16)}, bytes(16), None, None,
                 "tensor 'a' has unknown dtype 'F4'", id="unknown-dtype"),
    pytest.param({"a": {"dtype": "F32", "shape": [4]}}, bytes(16), None, None,
                 "tensor 'a' has no valid 'data_offsets' \\(got None\\)", id="no-offsets"),
    pytest.param({"a": entry("F32", [-4], 0, 16)}, bytes(16), None, None,
                 "tensor 'a' has no valid 'shape'", id="negative-dim"),
    pytest.param({"a": entry("F32", [4.0], 0, 16)}, bytes(16), None, None,
                 "tensor 'a' has no valid 'shape'", id="float-dim"),
    pytest.param({"a": {"dtype": 3, "shape": [4], "data_offsets": [0, 16]}}, bytes(16),
                 None, None, "tensor 'a' has no valid 'dtype'", id="dtype-not-string"),
    pytest.param({"a": entry("F32", [4], 0, True)}, bytes(16), None, None,
                 r"tensor 'a' has no valid 'data_offsets' \(got \[0, True\]\)",
                 id="bool-offset"),
    pytest.param({"a": "x"}, b"", None, None, "tensor 'a' entry is not an object",
                 id="entry-not-object"),
    pytest.param({"a": entry("F32", [2**40, 2**40], 0, 16)}, bytes(16), None, None,
                 "tensor 'a' shape .* is too large", id="size-overflow"),
    pytest.param(None, bytes(16), None,
                 b'{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},'
                 b'"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}',
                 "header lists 'a' twice", id="duplicate-name"),
])
def test_corrupt_file_messages(tmp_path, header, data, header_len, raw_header, message):
    path = craft(tmp_path / "model.safetensors", header, data, header_len, raw_header)
    with pytest.raises(ValueError, match="^model.safetensors: " + message) as info:
        read_safetensors(path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("blob", [b"", b"\x05\x00\x00"])
def test_short_file(tmp_path, blob):
    path = tmp_path / "x.safetensors"
    path.write_bytes(blob)
    with pytest.raises(ValueError, match=f"^x.safetensors: file is {len(blob)} bytes, too short "
                       "for a safetensors header$"):
        read_safetensors(path)


def test_every_truncation_is_a_clean_error(tmp_path):
    src = tmp_path / "full.safetensors"
    write_safetensors(src, {"a": np.ones((3, 4), np.float32), "b": np.ones(5, np.float16)})
    blob = src.read_bytes()
    for cut in range(len(blob)):
        path = tmp_path / "cut.safetensors"
        path.write_bytes(blob[:cut])
        with pytest.raises(ValueError, match="^cut.safetensors: "):
            read_safetensors(path)


# --- model directories --------------------------------------------------------------


def make_sharded(tmp_path, tensors, plan):
    """Write shards named in plan {shard: [names]} and a matching index."""
    weight_map = {}
    for shard, names in plan.items():
        write_safetensors(tmp_path / shard, {k: tensors[k] for k in names})
        weight_map.update({k: shard for k in names})
    index = {"metadata": {"total_size": 0}, "weight_map": weight_map}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    return weight_map


TENSORS = {f"t{i}": np.full((2, i + 1), i, np.float32) for i in range(5)}
PLAN = {"model-00001-of-00002.safetensors": ["t0", "t1", "t2"],
        "model-00002-of-00002.safetensors": ["t3", "t4"]}


def test_single_file_preferred(tmp_path):
    write_safetensors(tmp_path / "model.safetensors", {"only": np.zeros(2, np.float32)})
    make_sharded(tmp_path, TENSORS, PLAN)
    assert set(read_checkpoint(tmp_path)) == {"only"}


def test_sharded(tmp_path):
    make_sharded(tmp_path, TENSORS, PLAN)
    t = read_checkpoint(tmp_path)
    assert set(t) == set(TENSORS)
    for k, v in TENSORS.items():
        np.testing.assert_array_equal(t[k].float32(), v)


def test_sharded_missing_tensor(tmp_path):
    weight_map = make_sharded(tmp_path, TENSORS, PLAN)
    weight_map["t9"] = "model-00002-of-00002.safetensors"
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    with pytest.raises(ValueError, match="tensor 't9' not found in shard 'model-00002-of-00002"):
        read_checkpoint(tmp_path)


def test_sharded_name_in_two_shards(tmp_path):
    plan = dict(PLAN)
    plan["model-00002-of-00002.safetensors"] = ["t3", "t4", "t0"]
    write_safetensors(tmp_path / "model-00001-of-00002.safetensors",
                      {k: TENSORS[k] for k in ["t0", "t1", "t2"]})
    write_safetensors(tmp_path / "model-00002-of-00002.safetensors",
                      {k: TENSORS[k] for k in ["t3", "t4", "t0"]})
    weight_map = {k: "model-00001-of-00002.safetensors" for k in ["t0", "t1", "t2"]}
    weight_map.update({k: "model-00002-of-00002.safetensors" for k in ["t3", "t4"]})
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    with pytest.raises(ValueError, match="tensor 't0' is mapped to 'model-00001-of-00002"
                       ".safetensors' but also stored in shard 'model-00002"):
        read_checkpoint(tmp_path)


def test_sharded_unlisted_tensor(tmp_path):
    weight_map = make_sharded(tmp_path, TENSORS, PLAN)
    del weight_map["t4"]
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    with pytest.raises(ValueError, match="holds tensor 't4', which the index does not list"):
        read_checkpoint(tmp_path)


def test_sharded_missing_shard_file(tmp_path):
    make_sharded(tmp_path, TENSORS, PLAN)
    (tmp_path / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="shard 'model-00002-of-00002.safetensors' "
                       "not found"):
        read_checkpoint(tmp_path)


def test_corrupt_shard_names_the_shard(tmp_path):
    make_sharded(tmp_path, TENSORS, PLAN)
    shard = tmp_path / "model-00002-of-00002.safetensors"
    shard.write_bytes(shard.read_bytes()[:-4])
    with pytest.raises(ValueError, match="^model-00002-of-00002.safetensors: .*out of range"):
        read_checkpoint(tmp_path)


@pytest.mark.parametrize("shard", ["../evil.safetensors", "/etc/passwd", "a/../../x",
                                   "..\\x.safetensors", "C:\\x.safetensors", "", 7])
def test_index_shard_must_stay_inside(tmp_path, shard):
    (tmp_path / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"t0": shard}}))
    with pytest.raises(ValueError, match="^model.safetensors.index.json: "):
        read_checkpoint(tmp_path)


def test_index_subdirectory_allowed(tmp_path):
    (tmp_path / "sub").mkdir()
    write_safetensors(tmp_path / "sub" / "s.safetensors", {"t0": TENSORS["t0"]})
    (tmp_path / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"t0": "sub/./s.safetensors"}}))
    assert read_index(tmp_path / "model.safetensors.index.json") == {"t0": "sub/./s.safetensors"}
    assert set(read_checkpoint(tmp_path)) == {"t0"}


@pytest.mark.parametrize("text", ["{", '{"weight_map": []}', '{"metadata": {}}', "[]"])
def test_bad_index(tmp_path, text):
    (tmp_path / "model.safetensors.index.json").write_text(text)
    with pytest.raises(ValueError, match="^model.safetensors.index.json: "):
        read_checkpoint(tmp_path)


def test_pytorch_bin_is_read_after_safetensors(tmp_path):
    (tmp_path / "pytorch_model.bin").write_bytes(b"PK\x03\x04")
    with pytest.raises(ValueError, match="^pytorch_model.bin: not a complete ZIP archive"):
        read_checkpoint(tmp_path)
    write_safetensors(tmp_path / "model.safetensors", {"a": np.zeros(1, np.float32)})
    assert set(read_checkpoint(tmp_path)) == {"a"}


def test_no_weights(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        read_checkpoint(tmp_path)
    msg = str(info.value)
    assert str(tmp_path) in msg and "model.safetensors" in msg and "index.json" in msg


def test_not_a_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a directory"):
        read_checkpoint(tmp_path / "nope")


def test_raw_tensor_is_plain_data():
    t = RawTensor("w", "F32", (2,), np.array([1, 2], np.float32))
    np.testing.assert_array_equal(t.float32(), [1, 2])


def test_write_rejects_other_dtypes(tmp_path):
    with pytest.raises(ValueError, match="cannot write dtype 'I8'"):
        write_safetensors(tmp_path / "x.safetensors", {"a": np.zeros(1)}, dtype="I8")


def test_many_dimensions_refused_quickly(tmp_path):
    import time
    header = {"a": {"dtype": "F32", "shape": [2] * 200_000, "data_offsets": [0, 4]}}
    path = craft(tmp_path / "model.safetensors", header, bytes(4), None, None)
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match="^model.safetensors: tensor 'a' has 200000 dimensions"):
        read_safetensors(path)
    assert time.perf_counter() - t0 < 1.0
