"""pytorch_model.bin without torch (reference doc 6.2): ZIP container, restricted
unpickler, storages and views, checked against torch.save / torch.load."""
import json
import os
import pickle
import struct
import subprocess
import sys
import zipfile
import zlib
from collections import OrderedDict

import numpy as np
import pytest
import torch

from mambart import torch_pickle
from mambart.checkpoint import read_checkpoint, write_safetensors
from mambart.torch_pickle import read_torch_bin, scan_torch_bin, unpickle


def to_numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().numpy()


def assert_matches_torch(path, names=None):
    """Every tensor read equals torch.load's value, dtype included."""
    ref = torch.load(path, weights_only=True)
    got = read_torch_bin(path)
    assert list(got) == list(names or ref)
    kinds = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}
    for name, tensor in got.items():
        assert tensor.dtype == kinds[ref[name].dtype], name
        assert tensor.shape == tuple(ref[name].shape), name
        np.testing.assert_array_equal(tensor.float32(), to_numpy(ref[name]), err_msg=name)
    return got


# --- ZIP files laid out like torch's writer ---------------------------------------------


def write_zip(path, members, *, zip64=False, align=64):
    """A ZIP as torch writes it: STORED, flags 0x0808 (sizes 0 in the local header,
    a data descriptor after the data), data aligned by an 'FB' extra field in the
    local header only. zip64: 0xFFFFFFFF in the central records with a 0x0001
    extra field, and a ZIP64 end record + locator."""
    out = bytearray()
    central = bytearray()
    for name, data in members.items():
        raw = name.encode()
        crc = zlib.crc32(data)
        offset = len(out)
        pad = -(offset + 30 + len(raw) + 4) % align
        extra = struct.pack("<HH", 0x4246, pad) + b"Z" * pad
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0x0808, 0, 0, 0, 0, 0, 0,
                           len(raw), len(extra)) + raw + extra + data
        out += struct.pack("<IIII", 0x08074B50, crc, len(data), len(data))
        if zip64:
            cextra = struct.pack("<HHQQQ", 0x0001, 24, len(data), len(data), offset)
            size32 = offset32 = 0xFFFFFFFF
        else:
            cextra, size32, offset32 = b"", len(data), offset
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 45, 45, 0x0808, 0, 0, 0,
                               crc, size32, size32, len(raw), len(cextra), 0, 0, 0, 0,
                               offset32) + raw + cextra
    cd_offset, count = len(out), len(members)
    out += central
    if zip64:
        z64 = len(out)
        out += struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, count, count,
                           len(central), cd_offset)
        out += struct.pack("<IIQI", 0x07064B50, 0, z64, 1)
        out += struct.pack("<IHHHHIIH", 0x06054B50, 0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF,
                           0xFFFFFFFF, 0xFFFFFFFF, 0)
    else:
        out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, count, count, len(central),
                           cd_offset, 0)
    path.write_bytes(bytes(out))
    return path


def torch_members(path):
    """The members of a real torch.save file (read with Python's zipfile)."""
    with zipfile.ZipFile(path) as z:
        return {info.filename: z.read(info) for info in z.infolist()}


@pytest.fixture
def saved(tmp_path):
    """A state dict torch saves with every feature the reader must handle."""
    torch.manual_seed(0)
    emb = torch.randn(6, 4)
    base = torch.arange(15, dtype=torch.float32).reshape(5, 3)
    sd = OrderedDict()
    sd["backbone.embedding.weight"] = emb
    sd["lm_head.weight"] = emb.detach()          # another tensor on the same storage
    sd["alias"] = emb                            # the same tensor object: a memo GET
    sd["half"] = torch.randn(3, 5).half()
    sd["bf16"] = torch.randn(2, 7).bfloat16()
    sd["transposed"] = base.t()                  # size (3, 5), stride (1, 3)
    sd["slice"] = torch.arange(20.0)[7:12]       # storage offset 7
    sd["columns"] = base[1:, 1:]                 # offset + gaps
    sd["scalar"] = torch.tensor(2.5)
    sd["param"] = torch.nn.Parameter(torch.randn(3))
    sd["empty"] = torch.zeros(0, 4)
    path = tmp_path / "pytorch_model.bin"
    torch.save(sd, path)
    return path


def test_values_dtypes_and_views_match_torch(saved):
    got = assert_matches_torch(saved)
    views = scan_torch_bin(saved)
    assert views["transposed"].stride == (1, 3) and not views["transposed"].is_contiguous()
    assert views["slice"].offset == 7 and views["slice"].is_contiguous()
    assert views["scalar"].shape == () and got["scalar"].float32().shape == ()
    # Contiguous tensors stay on the mmap; the tied pair shares its bytes.
    emb, head = got["backbone.embedding.weight"].data, got["lm_head.weight"].data
    for name in ("backbone.embedding.weight", "slice", "half", "param"):
        assert not got[name].data.flags.owndata and not got[name].data.flags.writeable, name
    assert np.shares_memory(emb, head) and np.shares_memory(emb, got["alias"].data)
    assert views["lm_head.weight"].storage == views["backbone.embedding.weight"].storage


def test_module_state_dict_with_metadata(tmp_path):
    module = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3),
                                 torch.nn.Sequential(torch.nn.Linear(3, 2, bias=False)))
    sd = module.state_dict()
    assert hasattr(sd, "_metadata")
    torch.save(sd, tmp_path / "m.bin")
    assert_matches_torch(tmp_path / "m.bin")


def test_same_storage_in_our_zip_writer(tmp_path, saved):
    """The test writer is a valid ZIP (Python reads it) and the reader accepts it."""
    members = torch_members(saved)
    for zip64 in (False, True):
        path = write_zip(tmp_path / f"w{zip64}.bin", members, zip64=zip64)
        with zipfile.ZipFile(path) as z:
            assert z.read("pytorch_model/data.pkl") == members["pytorch_model/data.pkl"]
        for name, t in read_torch_bin(path).items():
            np.testing.assert_array_equal(t.float32(), read_torch_bin(saved)[name].float32())


def test_zip64_from_pythons_zipfile(tmp_path, saved, monkeypatch):
    """Python's writer with a tiny ZIP64 threshold: 0x0001 extra fields in local and
    central records and a ZIP64 end record, all from an independent implementation."""
    monkeypatch.setattr(zipfile, "ZIP64_LIMIT", 16)
    path = tmp_path / "z64.bin"
    with zipfile.ZipFile(path, "w") as z:
        for name, data in torch_members(saved).items():
            with z.open(zipfile.ZipInfo(name), "w", force_zip64=True) as f:
                f.write(data)
    blob = path.read_bytes()
    assert b"PK\x06\x06" in blob and b"PK\x06\x07" in blob
    cd = blob.rindex(b"PK\x01\x02")
    assert struct.unpack_from("<I", blob, cd + 42)[0] == 0xFFFFFFFF  # offset moved to 0x0001
    got = read_torch_bin(path)
    ref = read_torch_bin(saved)
    assert list(got) == list(ref)
    for name in ref:
        np.testing.assert_array_equal(got[name].float32(), ref[name].float32())


def test_big_endian_byteorder(tmp_path):
    values = np.arange(6, dtype=np.float32) - 2.5
    body = tensor_pickle([("w", "FloatStorage", "0", 6, 0, (2, 3), (3, 1))])
    members = {"a/data.pkl": body, "a/byteorder": b"big", "a/data/0": values.astype(">f4").tobytes()}
    got = read_torch_bin(write_zip(tmp_path / "be.bin", members))["w"]
    np.testing.assert_array_equal(got.float32(), values.reshape(2, 3))
    members["a/byteorder"] = b"middle"
    with pytest.raises(ValueError, match="byteorder entry is b'middle'"):
        read_torch_bin(write_zip(tmp_path / "bad.bin", members))


def test_sharded_bin_and_format_order(tmp_path):
    a, b = torch.randn(2, 3), torch.randn(4)
    torch.save({"a": a}, tmp_path / "pytorch_model-00001-of-00002.bin")
    torch.save({"b": b}, tmp_path / "pytorch_model-00002-of-00002.bin")
    index = {"metadata": {"total_size": 40}, "weight_map": {
        "a": "pytorch_model-00001-of-00002.bin", "b": "pytorch_model-00002-of-00002.bin"}}
    (tmp_path / "pytorch_model.bin.index.json").write_text(json.dumps(index))
    got = read_checkpoint(tmp_path)
    np.testing.assert_array_equal(got["a"].float32(), a.numpy())
    np.testing.assert_array_equal(got["b"].float32(), b.numpy())
    torch.save({"single": a}, tmp_path / "pytorch_model.bin")     # .bin beats its index
    assert set(read_checkpoint(tmp_path)) == {"single"}
    write_safetensors(tmp_path / "model.safetensors", {"st": np.zeros(1, np.float32)})
    assert set(read_checkpoint(tmp_path)) == {"st"}                # safetensors first


def test_sharded_bin_wrong_shard(tmp_path):
    torch.save({"a": torch.zeros(1), "b": torch.zeros(1)}, tmp_path / "s1.bin")
    (tmp_path / "pytorch_model.bin.index.json").write_text(
        json.dumps({"weight_map": {"a": "s1.bin"}}))
    with pytest.raises(ValueError, match="shard 's1.bin' holds tensor 'b', which the index"):
        read_checkpoint(tmp_path)


# --- a tiny pickle assembler, so every field can be wrong ----------------------------------


def g(module, name):
    return b"c" + f"{module}\n{name}\n".encode()


def s(text):
    raw = text.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def i(value):
    return b"J" + struct.pack("<i", value)


def tup(items):
    return b"(" + b"".join(items) + b"t"


def tensor_op(cls, key, numel, offset, size, stride):
    pid = tup([s("storage"), g("torch", cls), s(key), s("cpu"), i(numel)])
    args = tup([pid + b"Q", i(offset), tup(map(i, size)), tup(map(i, stride)), b"\x89",
                g("collections", "OrderedDict") + b")R"])
    return g("torch._utils", "_rebuild_tensor_v2") + args + b"R"


def tensor_pickle(tensors):
    """A protocol-2 state dict: [(name, storage class, key, numel, offset, size, stride)]."""
    body = b"".join(s(name) + tensor_op(*rest) for name, *rest in tensors)
    return b"\x80\x02" + g("collections", "OrderedDict") + b")R(" + body + b"u."


def bin_with(tmp_path, pickle_bytes, storages=None, name="pytorch_model.bin"):
    members = {"archive/data.pkl": pickle_bytes, "archive/version": b"3\n"}
    for key, data in (storages or {}).items():
        members[f"archive/data/{key}"] = data
    return write_zip(tmp_path / name, members)


def test_assembled_pickle_reads(tmp_path):
    data = np.arange(6, dtype="<f4")
    path = bin_with(tmp_path, tensor_pickle([("w", "FloatStorage", "0", 6, 1, (2, 2), (1, 2))]),
                    {"0": data.tobytes()})
    np.testing.assert_array_equal(read_torch_bin(path)["w"].float32(), [[1, 3], [2, 4]])


# --- hostile pickles: refused, nothing executed, nothing imported ------------------------


class Evil:
    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


@pytest.mark.parametrize("protocol", [2, 4])
@pytest.mark.parametrize("make, shown", [
    (lambda m: Evil(os.system, f"touch {m}"), "posix system"),
    (lambda m: Evil(eval, f"open({str(m)!r}, 'w')"), "builtins eval"),
    (lambda m: Evil(subprocess.Popen, ["touch", str(m)]), "subprocess Popen"),
])
def test_code_execution_refused(tmp_path, make, shown, protocol):
    marker = tmp_path / "MARKER"
    payload = pickle.dumps(OrderedDict(w=make(marker)), protocol=protocol, fix_imports=False)
    path = bin_with(tmp_path, payload)
    with pytest.raises(ValueError, match=f"^pytorch_model.bin: data.pkl: global '{shown}' is "
                       "not allowed") as info:
        read_torch_bin(path)
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match=shown):
        read_checkpoint(tmp_path)
    assert not marker.exists()
    # The same bytes do run under Python's unpickler: the payload is live.
    ran = pickle.loads(payload)["w"]
    if isinstance(ran, subprocess.Popen):
        ran.wait(timeout=60)
    assert marker.exists()


def test_nothing_is_imported(tmp_path, saved):
    # `this` prints the Zen of Python when imported: an import would show. Reading
    # a real file must not pull in torch either.
    code = ("import sys; from mambart.torch_pickle import read_torch_bin, unpickle\n"
            "try:\n    unpickle(b'\\x80\\x02cthis\\nd\\n)R.')\nexcept ValueError as e:\n"
            "    print(e)\n"
            f"assert read_torch_bin({str(saved)!r})['half'].float32().shape == (3, 5)\n"
            "print('this' in sys.modules, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, cwd=tmp_path)
    lines = out.stdout.strip().splitlines()
    assert lines and "global 'this d' is not allowed" in lines[0], out.stderr
    assert lines[-1] == "False False" and len(lines) == 2


@pytest.mark.parametrize("payload, message", [
    (b"\x80\x02" + g("torch", "FloatStorage") + b")R.", "REDUCE of torch.FloatStorage is not allowed"),
    (b"\x80\x02" + s("eval") + b")R.", "REDUCE of 'eval' is not allowed"),
    (b"\x80\x02" + g("collections", "OrderedDict") + s("x") + b"\x85R.",
     "REDUCE of collections.OrderedDict with arguments"),
    (b"\x80\x02\xff.", "unknown opcode 0xff at byte 2 is not allowed"),
    (b"\x80\x02(" + s("touch MARKER") + b"iposix\nsystem\n.", r"opcode INST \(0x69\) at byte 20"),
    (b"\x80\x02]\x81.", r"opcode NEWOBJ \(0x81\)"),
    (b"\x80\x02}" + s("x") + b"b.", r"BUILD on a dict \(only on an OrderedDict\)"),
    (b"\x80\x02" + tup([s("file"), g("torch", "FloatStorage"), s("0"), s("cpu"), i(1)]) + b"Q.",
     "BINPERSID of a tuple, expected"),
    (b"\x80\x02" + tup([s("storage"), g("collections", "OrderedDict"), s("0"), s("cpu"), i(1)])
     + b"Q.", "storage class collections.OrderedDict is not a torch storage class"),
    (b"\x80\x02h\x05.", "GET of memo slot 5, which was never PUT"),
    (b"\x80\x02}]]s.", "SETITEM with a list key"),
    (b"\x80\x02N\x85" + s("k") + b"Ns.", "SETITEM on a tuple, expected a dict"),
    (b"\x80\x02NN.", "STOP at byte 4 with 2 items on the stack"),
    (b"\x80\x02t.", "TUPLE without a MARK"),
    (b"\x80\x02(R.", "REDUCE on an empty stack"),
    (b"\x80\x02N", "pickle ends without STOP"),
    (b"\x80\x02X\xff\xff\xff\x7f.", "string of 2147483647 bytes exceeds"),
    (b"\x80\x02X\x05\x00\x00\x00ab", "pickle ends inside an operand"),
    (b"\x80\x02" + b"(" * 300 + b".", "MARKs nest deeper than 256"),
    (b"\x80\x06N.", "pickle protocol 6 is not supported"),
    (b"\x80\x02c" + b"a" * 300 + b"\nb\n.", "GLOBAL operand at byte 3 is not a short line"),
])
def test_malformed_pickles(payload, message):
    with pytest.raises(ValueError, match=message) as info:
        unpickle(payload)
    assert str(info.value).startswith("data.pkl: ") and "\n" not in str(info.value)


def test_stack_and_memo_limits(monkeypatch):
    monkeypatch.setattr(torch_pickle, "MAX_STACK", 50)
    with pytest.raises(ValueError, match="stack exceeds 50 items"):
        unpickle(b"\x80\x02" + b"N" * 60 + b".")
    monkeypatch.setattr(torch_pickle, "MAX_MEMO", 10)
    with pytest.raises(ValueError, match="memo exceeds 10 entries"):
        unpickle(b"\x80\x02N" + b"".join(b"q" + bytes([k]) for k in range(20)) + b".")
    assert unpickle(b"\x80\x02N" + b"q\x01" * 20 + b".") is None  # re-PUT of one slot is fine


@pytest.mark.parametrize("tensors, storages, message", [
    ([("w", "FloatStorage", "0", 6, 0, (3, 3), (3, 1))], {"0": bytes(24)},
     r"tensor view \(offset 0, size \(3, 3\), stride \(3, 1\)\) reaches element 8 of storage "
     "'0', which has 6"),
    ([("w", "FloatStorage", "0", 6, 4, (1, 3), (3, 1))], {"0": bytes(24)}, "reaches element 6"),
    ([("w", "FloatStorage", "0", 6, 0, (2, 3), (3, 1))], {"0": bytes(20)},
     "tensor 'w': storage '0' entry holds 20 bytes, but F32 x 6 needs 24"),
    ([("w", "FloatStorage", "0", 6, 0, (2, 3), (3, 1))], {},
     "tensor 'w': storage '0' has no 'archive/data/0' entry"),
    ([("w", "FloatStorage", "0", 6, 0, (6,), (1,)), ("v", "HalfStorage", "0", 6, 0, (6,), (1,))],
     {"0": bytes(24)}, "storage '0' is declared as F32 x 6 and as F16 x 6"),
    ([("w", "FloatStorage", "0", 4, 0, (64,), (0,))], {"0": bytes(16)},
     r"size \(64,\) with stride \(0,\) repeats elements"),
    ([("w", "FloatStorage", "0", 6, 0, (2, 3), (1,))], {"0": bytes(24)},
     r"has size \(2, 3\) but stride \(1,\)"),
    ([("w", "FloatStorage", "0", 6, -1, (2,), (1,))], {"0": bytes(24)}, "has offset -1"),
])
def test_bad_storages_and_views(tmp_path, tensors, storages, message):
    path = bin_with(tmp_path, tensor_pickle(tensors), storages)
    with pytest.raises(ValueError, match="^pytorch_model.bin: .*" + message):
        read_torch_bin(path)


def test_non_tensor_entries_rejected(tmp_path):
    torch.save({"w": torch.zeros(2), "step": 3}, tmp_path / "a.bin")
    with pytest.raises(ValueError, match="state dict entry 'step' is of type int, not a tensor"):
        read_torch_bin(tmp_path / "a.bin")
    torch.save(torch.zeros(2), tmp_path / "b.bin")
    with pytest.raises(ValueError, match="the pickle holds a TensorView, expected a state dict"):
        read_torch_bin(tmp_path / "b.bin")


def test_integer_storage_readable_not_loadable(tmp_path):
    torch.save({"ids": torch.arange(4)}, tmp_path / "i.bin")
    t = read_torch_bin(tmp_path / "i.bin")["ids"]
    assert t.dtype == "I64" and list(t.data) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="tensor 'ids' has dtype I64"):
        t.float32()


# --- broken containers ------------------------------------------------------------------


def test_legacy_and_non_zip_formats(tmp_path):
    torch.save({"w": torch.zeros(2)}, tmp_path / "old.bin", _use_new_zipfile_serialization=False)
    assert (tmp_path / "old.bin").read_bytes()[:2] == b"\x80\x02"
    for name, blob in [("old.bin", None), ("junk.bin", b"hello world"), ("empty.bin", b"")]:
        if blob is not None:
            (tmp_path / name).write_bytes(blob)
        with pytest.raises(ValueError, match=f"^{name}: legacy/unsupported torch.save format"):
            read_torch_bin(tmp_path / name)


def test_every_truncation_is_a_clean_error(tmp_path):
    torch.save({"a": torch.ones(3), "b": torch.ones(2).half()}, tmp_path / "full.bin")
    blob = (tmp_path / "full.bin").read_bytes()
    for cut in range(0, len(blob), 7):
        (tmp_path / "cut.bin").write_bytes(blob[:cut])
        with pytest.raises(ValueError, match="^cut.bin: "):
            read_torch_bin(tmp_path / "cut.bin")


def patched(tmp_path, source, where, value):
    """A copy of `source` with one little-endian field, where(blob) = (format, position),
    overwritten."""
    blob = bytearray(source.read_bytes())
    fmt, pos = where(bytes(blob))
    struct.pack_into(fmt, blob, pos, value)
    out = tmp_path / "patched.bin"
    out.write_bytes(bytes(blob))
    return out


def eocd(blob):
    return blob.rindex(b"PK\x05\x06")


def cd_count(blob):
    """(format, position) of the entry count the reader uses: torch always writes a
    ZIP64 end record, which then wins over the classic one."""
    z64 = blob.find(b"PK\x06\x06")
    return ("<Q", z64 + 32) if z64 >= 0 else ("<H", eocd(blob) + 10)


def cd_offset(blob):
    z64 = blob.find(b"PK\x06\x06")
    return ("<Q", z64 + 48) if z64 >= 0 else ("<I", eocd(blob) + 16)


def first_cd(blob):
    return blob.index(b"PK\x01\x02")


ENTRY = "ZIP entry 'pytorch_model/data.pkl'"


@pytest.mark.parametrize("where, value, message", [
    (cd_offset, 10**9, r"central directory \[1000000000, .* runs past its end record"),
    (cd_offset, 0, "central directory record 0 at offset 0 is missing or corrupt"),
    (cd_count, 500, r"central directory record \d+ at offset \d+ is missing or corrupt"),
    (lambda b: ("<I", first_cd(b) + 42), 10**9,
     f"{ENTRY} local header offset 1000000000 out of range"),
    (lambda b: ("<I", first_cd(b) + 42), 3, f"{ENTRY} has no local header at offset 3"),
    (lambda b: ("<I", first_cd(b) + 20), 10**9,
     f"{ENTRY} is stored with 1000000000 bytes but declares"),
    (lambda b: ("<H", first_cd(b) + 8), 1, f"{ENTRY} is encrypted"),
])
@pytest.mark.parametrize("layout", ["torch", "classic"])
def test_corrupt_central_directory(tmp_path, saved, layout, where, value, message):
    source = saved
    if layout == "classic":  # no ZIP64 end record: the classic fields are the ones read
        source = write_zip(tmp_path / "classic.bin", torch_members(saved))
        assert b"PK\x06\x06" not in source.read_bytes()
    else:
        assert b"PK\x06\x06" in source.read_bytes()
    with pytest.raises(ValueError, match="^patched.bin: " + message):
        read_torch_bin(patched(tmp_path, source, where, value))


def test_data_past_end_and_compressed_entries(tmp_path, saved):
    blob = bytearray(saved.read_bytes())
    cd = first_cd(bytes(blob))
    struct.pack_into("<II", blob, cd + 20, 10**6, 10**6)  # both sizes of data.pkl
    (tmp_path / "long.bin").write_bytes(bytes(blob))
    with pytest.raises(ValueError, match=r"data \[\d+, \d+\) runs past the end of the file"):
        read_torch_bin(tmp_path / "long.bin")
    with zipfile.ZipFile(tmp_path / "deflated.bin", "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in torch_members(saved).items():
            z.writestr(name, data)
    with pytest.raises(ValueError, match=r"is compressed \(method 8\)"):
        read_torch_bin(tmp_path / "deflated.bin")


def test_zip64_locator_out_of_range(tmp_path, saved):
    path = write_zip(tmp_path / "z.bin", torch_members(saved), zip64=True)
    blob = bytearray(path.read_bytes())
    struct.pack_into("<Q", blob, blob.rindex(b"PK\x06\x07") + 8, 10**12)
    path.write_bytes(bytes(blob))
    with pytest.raises(ValueError, match="ZIP64 end-of-central-directory offset 1000000000000"):
        read_torch_bin(path)


def test_pickle_entry_required(tmp_path):
    path = write_zip(tmp_path / "x.bin", {"archive/data/0": bytes(4)})
    with pytest.raises(ValueError, match=r"expected one '<dir>/data.pkl' entry, found 0"):
        read_torch_bin(path)


# --- work bounded by the input: every case ends in well under a second -----------------


def refused_quickly(fn, message):
    import time
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match=message) as info:
        fn()
    assert time.perf_counter() - t0 < 1.0
    assert "\n" not in str(info.value)


def test_many_dimensions_refused_before_any_product(tmp_path):
    # 100k dimensions of 2: multiplied one at a time the element count is quadratic.
    dims = 100_000
    op = tensor_op("FloatStorage", "0", 1, 0, (2,) * dims, (0,) * dims)
    payload = b"\x80\x02" + g("collections", "OrderedDict") + b")R" + s("w") + op + b"s."
    refused_quickly(lambda: unpickle(payload), "has 100000 dimensions \\(at most 8\\)")


def test_no_op_stream_stops_after_the_opcode_budget(tmp_path):
    # 8M PROTO opcodes: minutes of work for nothing, in a file with one storage.
    payload = b"\x80\x02" * 4_000_000 + tensor_pickle([("w", "FloatStorage", "0", 1, 0, (1,), (1,))])
    path = bin_with(tmp_path, payload, {"0": bytes(4)})
    refused_quickly(lambda: read_torch_bin(path), "^pytorch_model.bin: data.pkl: more than "
                    f"{torch_pickle.ops_budget(1)} opcodes")


def test_empty_dicts_do_not_grow_memory(tmp_path):
    # 60 MB of EMPTY_DICT + APPEND: one object per 2 bytes, never on the stack for long.
    payload = b"\x80\x02]" + b"}a" * 30_000_000 + b"."
    path = bin_with(tmp_path, payload)
    # VmHWM: this process's peak (ru_maxrss would count the parent's, from the fork).
    code = ("import re; from mambart.torch_pickle import read_torch_bin\n"
            f"try:\n    read_torch_bin({str(path)!r})\nexcept ValueError as e:\n    print(e)\n"
            "print(int(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)) // 1024)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=tmp_path)
    message, peak_mb = out.stdout.strip().splitlines()
    assert "more than" in message and "opcodes" in message, out.stderr
    assert int(peak_mb) < 300  # the mapped file and one copy of the pickle, not 30M dicts


def test_opcode_budget_fits_real_state_dicts(tmp_path):
    # ~32 opcodes a tensor in torch.save's pickles: far below the budget per storage.
    sd = OrderedDict((f"layers.{k}.w", torch.zeros(2, 3, 4)) for k in range(300))
    torch.save(sd, tmp_path / "pytorch_model.bin")
    assert len(read_torch_bin(tmp_path / "pytorch_model.bin")) == 300
