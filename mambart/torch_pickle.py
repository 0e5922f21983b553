"""`pytorch_model.bin` without torch: a ZIP reader and a restricted unpickler.

torch.save (reference doc 6.2) writes a ZIP archive of STORED entries under
one directory: `<prefix>/data.pkl` (a protocol-2 pickle of the state dict)
and `<prefix>/data/<key>`, the raw bytes of each storage. Tensors in the
pickle are views into storages (offset, size, stride), and several tensors
may share one storage (tied weights).

Nothing here imports or calls what a pickle names. The unpickler is a small
stack machine that knows a fixed set of opcodes and a fixed allow-list of
globals, builds plain Python containers and `TensorView` records, and
rejects everything else with a ValueError naming the opcode or the global.
"""
from __future__ import annotations

import mmap
import os
import struct
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .checkpoint import MAX_DIMS, RawTensor, map_file
from .errors import one_line

# --- limits: generous for real state dicts, small enough to stop hostile files ----
MAX_PICKLE_BYTES = 1 << 26   # data.pkl of a 2.8B model is ~100 kB (~110 bytes a tensor)
MAX_STRING = 1 << 20         # a str / bytes operand
MAX_GLOBAL_NAME = 256        # "module\nname\n" operands
MAX_MEMO = 1 << 20           # distinct memo slots
MAX_STACK = 1 << 20          # items on the stack, all marks together
MAX_MARKS = 256              # nesting of MARK
MAX_ENTRIES = 1 << 20        # ZIP central-directory records
# Opcodes run, the unpickler's work and (one object at most per opcode) its
# memory: torch.save spends ~32 opcodes a tensor, so a pickle may run
# BASE_OPS plus OPS_PER_STORAGE for each storage its archive holds, never
# more than MAX_OPS (~3 s). A stream of no-op opcodes stops after BASE_OPS.
BASE_OPS = 1 << 16
OPS_PER_STORAGE = 256
MAX_OPS = 1 << 21

# Storage class -> (dtype string as in safetensors, little-endian numpy dtype).
# BF16 keeps its bit pattern (uint16), as the safetensors reader does.
STORAGE_DTYPES: dict[str, tuple[str, np.dtype]] = {
    "FloatStorage": ("F32", np.dtype("<f4")),
    "HalfStorage": ("F16", np.dtype("<f2")),
    "BFloat16Storage": ("BF16", np.dtype("<u2")),
    "DoubleStorage": ("F64", np.dtype("<f8")),
    "LongStorage": ("I64", np.dtype("<i8")),
    "IntStorage": ("I32", np.dtype("<i4")),
    "ShortStorage": ("I16", np.dtype("<i2")),
    "CharStorage": ("I8", np.dtype("i1")),
    "ByteStorage": ("U8", np.dtype("u1")),
    "BoolStorage": ("BOOL", np.dtype("?")),
}
_NP_DTYPES = {dtype: np_dtype for dtype, np_dtype in STORAGE_DTYPES.values()}


# --- what the unpickler produces ------------------------------------------------


@dataclass(frozen=True)
class StorageRef:
    """A storage named by a persistent id: entry `data/<key>`, `numel` elements."""

    key: str
    dtype: str                 # "F32", "F16", "BF16", ... (STORAGE_DTYPES)
    numel: int                 # elements (not bytes)


@dataclass(frozen=True)
class TensorView:
    """A tensor as torch.save records it: a strided view into a storage."""

    storage: StorageRef
    offset: int                # in elements
    shape: tuple[int, ...]
    stride: tuple[int, ...]    # in elements

    @property
    def dtype(self) -> str:
        return self.storage.dtype

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    def is_contiguous(self) -> bool:
        """Row-major with no gaps (dimensions of size 1 may have any stride)."""
        expected = 1
        for size, stride in zip(reversed(self.shape), reversed(self.stride)):
            if size != 1 and stride != expected:
                return False
            expected *= size
        return True


class _Global:
    """An allow-listed global, as a marker; never the real object."""

    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name

    def __repr__(self) -> str:
        return f"{self.module}.{self.name}"


_ORDERED_DICT = _Global("collections", "OrderedDict")
_REBUILD_TENSOR = _Global("torch._utils", "_rebuild_tensor_v2")
_REBUILD_PARAMETER = _Global("torch._utils", "_rebuild_parameter")
_ALLOWED: dict[tuple[str, str], _Global] = {
    ("collections", "OrderedDict"): _ORDERED_DICT,
    ("torch._utils", "_rebuild_tensor_v2"): _REBUILD_TENSOR,
    ("torch._utils", "_rebuild_parameter"): _REBUILD_PARAMETER,
}
_ALLOWED.update({("torch", name): _Global("torch", name) for name in STORAGE_DTYPES})


# --- the restricted unpickler ------------------------------------------------------


def unpickle(data: bytes | memoryview, max_ops: int = MAX_OPS) -> Any:
    """Run a torch.save pickle on a restricted stack machine.

    Returns plain containers (dict, OrderedDict, list, tuple, str, int, float,
    bool, None) with `TensorView` for each tensor. Raises ValueError, naming
    the opcode or global, for anything outside the allow-list (doc 6.2), and
    once `max_ops` opcodes have run.
    """
    if len(data) > MAX_PICKLE_BYTES:
        raise ValueError(f"data.pkl: {len(data)} bytes, over the {MAX_PICKLE_BYTES}-byte limit")
    return _Unpickler(bytes(data), max_ops).run()


def ops_budget(storages: int) -> int:
    """Opcodes a pickle may run when its archive holds `storages` storages."""
    return min(MAX_OPS, BASE_OPS + OPS_PER_STORAGE * storages)


def _describe(obj: Any) -> str:
    """A short, safe name for an operand in an error message (never a deep repr)."""
    if isinstance(obj, _Global):
        return repr(obj)
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        text = repr(obj)
        return text if len(text) <= 60 else text[:57] + "..."
    return type(obj).__name__


class _Unpickler:
    def __init__(self, data: bytes, max_ops: int) -> None:
        self.data = data
        self.max_ops = max_ops
        self.pos = 0
        self.stack: list[Any] = []
        self.marks: list[int] = []
        self.memo: dict[int, Any] = {}
        self.storages: dict[str, StorageRef] = {}
        self.ops = {
            0x80: self.op_proto, 0x95: self.op_frame, ord("."): None,
            ord("("): self.op_mark, ord("c"): self.op_global, 0x93: self.op_stack_global,
            ord("R"): self.op_reduce, ord("b"): self.op_build, ord("Q"): self.op_binpersid,
            ord(")"): lambda: self.push(()), ord("t"): self.op_tuple,
            0x85: lambda: self.op_tuple_n(1), 0x86: lambda: self.op_tuple_n(2),
            0x87: lambda: self.op_tuple_n(3),
            ord("}"): lambda: self.push({}), ord("s"): self.op_setitem,
            ord("u"): self.op_setitems, ord("]"): lambda: self.push([]),
            ord("a"): self.op_append, ord("e"): self.op_appends,
            ord("q"): lambda: self.put(self.uint(1)), ord("r"): lambda: self.put(self.uint(4)),
            0x94: lambda: self.put(len(self.memo)),
            ord("h"): lambda: self.get(self.uint(1)), ord("j"): lambda: self.get(self.uint(4)),
            ord("J"): lambda: self.push(int.from_bytes(self.read(4), "little", signed=True)),
            ord("K"): lambda: self.push(self.uint(1)), ord("M"): lambda: self.push(self.uint(2)),
            0x8A: lambda: self.push(int.from_bytes(self.read(self.uint(1)), "little", signed=True)),
            ord("X"): lambda: self.push(self.text(self.uint(4), "utf-8")),
            0x8C: lambda: self.push(self.text(self.uint(1), "utf-8")),
            ord("U"): lambda: self.push(self.text(self.uint(1), "latin-1")),
            ord("T"): lambda: self.push(self.text(self.uint(4), "latin-1")),
            ord("N"): lambda: self.push(None), 0x88: lambda: self.push(True),
            0x89: lambda: self.push(False),
            ord("G"): lambda: self.push(struct.unpack(">d", self.read(8))[0]),
        }

    # --- reading operands --------------------------------------------------------

    def fail(self, msg: str) -> ValueError:
        return ValueError(one_line(f"data.pkl: {msg}"))

    def read(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise self.fail(f"pickle ends inside an operand at byte {self.pos} "
                            f"(needs {n} bytes, {len(self.data) - self.pos} left)")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def uint(self, n: int) -> int:
        return int.from_bytes(self.read(n), "little")

    def text(self, n: int, encoding: str) -> str:
        if n > MAX_STRING:
            raise self.fail(f"string of {n} bytes exceeds the {MAX_STRING}-byte limit")
        raw = self.read(n)
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            raise self.fail(f"string at byte {self.pos - n} is not valid {encoding}") from None

    def line(self) -> str:
        end = self.data.find(b"\n", self.pos, self.pos + MAX_GLOBAL_NAME + 1)
        if end < 0:
            raise self.fail(f"GLOBAL operand at byte {self.pos} is not a short line")
        raw = self.data[self.pos:end]
        self.pos = end + 1
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError:
            raise self.fail(f"GLOBAL operand at byte {self.pos} is not ASCII") from None

    # --- stack, marks, memo ------------------------------------------------------------

    def push(self, obj: Any) -> None:
        if len(self.stack) >= MAX_STACK:
            raise self.fail(f"stack exceeds {MAX_STACK} items")
        self.stack.append(obj)

    def pop(self, op: str) -> Any:
        if len(self.stack) <= (self.marks[-1] if self.marks else 0):
            raise self.fail(f"{op} on an empty stack")
        return self.stack.pop()

    def top(self, op: str) -> Any:
        if len(self.stack) <= (self.marks[-1] if self.marks else 0):
            raise self.fail(f"{op} on an empty stack")
        return self.stack[-1]

    def pop_mark(self, op: str) -> list[Any]:
        if not self.marks:
            raise self.fail(f"{op} without a MARK")
        start = self.marks.pop()
        items = self.stack[start:]
        del self.stack[start:]
        return items

    def put(self, index: int) -> None:
        if index not in self.memo and len(self.memo) >= MAX_MEMO:
            raise self.fail(f"memo exceeds {MAX_MEMO} entries")
        self.memo[index] = self.top("PUT")

    def get(self, index: int) -> None:
        if index not in self.memo:
            raise self.fail(f"GET of memo slot {index}, which was never PUT")
        self.push(self.memo[index])

    # --- the opcodes -------------------------------------------------------------------

    def run(self) -> Any:
        for _ in range(self.max_ops):
            if self.pos >= len(self.data):
                raise self.fail("pickle ends without STOP")
            at = self.pos
            code = self.data[at]
            self.pos += 1
            if code not in self.ops:
                name = _OPCODE_NAMES.get(code)
                what = f"opcode {name} (0x{code:02x})" if name else f"unknown opcode 0x{code:02x}"
                raise self.fail(f"{what} at byte {at} is not allowed")
            handler = self.ops[code]
            if handler is None:  # STOP
                if self.marks or len(self.stack) != 1:
                    raise self.fail(f"STOP at byte {at} with {len(self.stack)} items on the "
                                    f"stack and {len(self.marks)} open MARKs (expected 1 and 0)")
                return self.stack[0]
            handler()
        raise self.fail(f"more than {self.max_ops} opcodes (at byte {self.pos}) for the "
                        "tensors this archive holds")

    def op_proto(self) -> None:
        version = self.uint(1)
        if version > 5:
            raise self.fail(f"pickle protocol {version} is not supported")

    def op_frame(self) -> None:
        self.uint(8)  # protocol 4 framing: the frame length is only a hint

    def op_mark(self) -> None:
        if len(self.marks) >= MAX_MARKS:
            raise self.fail(f"MARKs nest deeper than {MAX_MARKS}")
        self.marks.append(len(self.stack))

    def op_global(self) -> None:
        module = self.line()
        name = self.line()
        self.push(self.lookup(module, name))

    def op_stack_global(self) -> None:
        name, module = self.pop("STACK_GLOBAL"), self.pop("STACK_GLOBAL")
        if not isinstance(module, str) or not isinstance(name, str):
            raise self.fail("STACK_GLOBAL operands are not strings")
        self.push(self.lookup(module, name))

    def lookup(self, module: str, name: str) -> _Global:
        found = _ALLOWED.get((module, name))
        if found is None:
            shown = f"{module} {name}".replace("\n", " ")[:120]
            raise self.fail(f"global '{shown}' is not allowed (only OrderedDict, "
                            "torch._utils._rebuild_tensor_v2 / _rebuild_parameter and "
                            "torch storage classes)")
        return found

    def op_tuple(self) -> None:
        self.push(tuple(self.pop_mark("TUPLE")))

    def op_tuple_n(self, n: int) -> None:
        items = [self.pop("TUPLE%d" % n) for _ in range(n)]
        self.push(tuple(reversed(items)))

    def set_items(self, target: Any, items: list[Any], op: str) -> None:
        if not isinstance(target, dict):
            raise self.fail(f"{op} on a {_describe(target)}, expected a dict")
        if len(items) % 2:
            raise self.fail(f"{op} with an odd number of items ({len(items)})")
        for key, value in zip(items[::2], items[1::2]):
            # Only simple keys: hashing a deep tuple could exhaust the C stack.
            if isinstance(key, bool) or not isinstance(key, (str, int)):
                raise self.fail(f"{op} with a {_describe(key)} key (only str or int)")
            target[key] = value

    def op_setitem(self) -> None:
        value, key = self.pop("SETITEM"), self.pop("SETITEM")
        self.set_items(self.top("SETITEM"), [key, value], "SETITEM")

    def op_setitems(self) -> None:
        items = self.pop_mark("SETITEMS")
        self.set_items(self.top("SETITEMS"), items, "SETITEMS")

    def op_append(self) -> None:
        value = self.pop("APPEND")
        target = self.top("APPEND")
        if not isinstance(target, list):
            raise self.fail(f"APPEND on a {_describe(target)}, expected a list")
        target.append(value)

    def op_appends(self) -> None:
        items = self.pop_mark("APPENDS")
        target = self.top("APPENDS")
        if not isinstance(target, list):
            raise self.fail(f"APPENDS on a {_describe(target)}, expected a list")
        target.extend(items)

    def op_build(self) -> None:
        # torch attaches `_metadata` to the state dict with BUILD: discard it.
        self.pop("BUILD")
        target = self.top("BUILD")
        if not isinstance(target, OrderedDict):
            raise self.fail(f"BUILD on a {_describe(target)} (only on an OrderedDict)")

    def op_binpersid(self) -> None:
        pid = self.pop("BINPERSID")
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise self.fail(f"BINPERSID of a {_describe(pid)}, expected "
                            "('storage', class, key, location, numel)")
        _, cls, key, location, numel = pid
        if not (isinstance(cls, _Global) and cls.module == "torch" and cls.name in STORAGE_DTYPES):
            raise self.fail(f"storage class {_describe(cls)} is not a torch storage class")
        if not isinstance(key, str) or not key or not isinstance(location, str):
            raise self.fail(f"storage key {_describe(key)} / location {_describe(location)} "
                            "must be strings")
        if isinstance(numel, bool) or not isinstance(numel, int) or numel < 0:
            raise self.fail(f"storage '{key}' has element count {_describe(numel)}")
        ref = StorageRef(key, STORAGE_DTYPES[cls.name][0], numel)
        seen = self.storages.setdefault(key, ref)
        if seen != ref:
            raise self.fail(f"storage '{key}' is declared as {seen.dtype} x {seen.numel} and "
                            f"as {ref.dtype} x {ref.numel}")
        self.push(ref)

    def op_reduce(self) -> None:
        args = self.pop("REDUCE")
        func = self.pop("REDUCE")
        if not isinstance(args, tuple):
            raise self.fail(f"REDUCE arguments are a {_describe(args)}, expected a tuple")
        if func is _ORDERED_DICT:
            if args:
                raise self.fail("REDUCE of collections.OrderedDict with arguments")
            self.push(OrderedDict())
        elif func is _REBUILD_TENSOR:
            self.push(self.rebuild_tensor(args))
        elif func is _REBUILD_PARAMETER:
            if len(args) != 3 or not isinstance(args[0], TensorView):
                raise self.fail("_rebuild_parameter expects (tensor, requires_grad, hooks)")
            self.push(args[0])
        else:
            raise self.fail(f"REDUCE of {_describe(func)} is not allowed")

    def rebuild_tensor(self, args: tuple) -> TensorView:
        if len(args) not in (6, 7):
            raise self.fail(f"_rebuild_tensor_v2 with {len(args)} arguments (expected 6 or 7)")
        storage, offset, shape, stride = args[:4]
        if not isinstance(storage, StorageRef):
            raise self.fail(f"_rebuild_tensor_v2 storage is a {_describe(storage)}")
        for value in (shape, stride):
            if isinstance(value, tuple) and len(value) > MAX_DIMS:
                raise self.fail(f"tensor on storage '{storage.key}' has {len(value)} dimensions "
                                f"(at most {MAX_DIMS})")

        def ints(value: Any, what: str) -> tuple[int, ...]:
            if not isinstance(value, tuple) or not all(
                    isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value):
                raise self.fail(f"tensor on storage '{storage.key}' has {what} "
                                f"{_describe(value)}, expected a tuple of ints >= 0")
            return value

        shape, stride = ints(shape, "size"), ints(stride, "stride")
        if len(shape) != len(stride):
            raise self.fail(f"tensor on storage '{storage.key}' has size {shape} but "
                            f"stride {stride}")
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise self.fail(f"tensor on storage '{storage.key}' has offset {_describe(offset)}")
        view = TensorView(storage, offset, shape, stride)
        if view.numel:
            last = offset + sum((n - 1) * s for n, s in zip(shape, stride))
            if last >= storage.numel:
                raise self.fail(f"tensor view (offset {offset}, size {shape}, stride {stride}) "
                                f"reaches element {last} of storage '{storage.key}', which has "
                                f"{storage.numel}")
            if not view.is_contiguous() and view.numel > storage.numel:
                raise self.fail(f"tensor view of size {shape} with stride {stride} repeats "
                                f"elements of storage '{storage.key}' ({storage.numel} elements)")
        return view


_OPCODE_NAMES = {ord("i"): "INST", ord("o"): "OBJ", ord("b"): "BUILD", 0x81: "NEWOBJ",
                 0x92: "NEWOBJ_EX", 0x82: "EXT1", 0x83: "EXT2", 0x84: "EXT4",
                 ord("P"): "PERSID", ord("I"): "INT", ord("L"): "LONG", 0x8B: "LONG4",
                 ord("S"): "STRING", ord("V"): "UNICODE", ord("F"): "FLOAT", ord("d"): "DICT",
                 ord("l"): "LIST", ord("p"): "PUT", ord("g"): "GET", ord("0"): "POP",
                 ord("1"): "POP_MARK", ord("2"): "DUP", 0x8D: "BINUNICODE8",
                 0x8E: "BINBYTES8", 0x8F: "EMPTY_SET", 0x90: "ADDITEMS", 0x91: "FROZENSET",
                 ord("B"): "BINBYTES", ord("C"): "SHORT_BINBYTES", 0x96: "BYTEARRAY8",
                 0x97: "NEXT_BUFFER", 0x98: "READONLY_BUFFER"}


# --- the ZIP container ----------------------------------------------------------------


@dataclass(frozen=True)
class ZipEntry:
    """A STORED member: its bytes are file[offset : offset + size]."""

    name: str
    offset: int
    size: int
    method: int


def read_zip_directory(mm: mmap.mmap | bytes, size: int, fail) -> dict[str, ZipEntry]:
    """Members of a ZIP archive from its central directory (ZIP64 included).

    Every offset and length is checked against the file size; data starts
    after the LOCAL header's name and extra field, whose lengths can differ
    from the central record's (torch pads the local extra to align data).
    """
    tail_start = max(0, size - 22 - 0xFFFF)
    eocd = mm.rfind(b"PK\x05\x06", tail_start, size)  # type: ignore[arg-type]
    if eocd < 0 or eocd + 22 > size:
        raise fail("not a complete ZIP archive (no end-of-central-directory record; "
                   "truncated?)")
    (_, disk, cd_disk, _, count, cd_size, cd_offset,
     comment_len) = struct.unpack_from("<IHHHHIIH", mm, eocd)
    if eocd + 22 + comment_len > size:
        raise fail("end-of-central-directory comment runs past the end of the file")
    locator = eocd - 20
    if locator >= 0 and mm[locator:locator + 4] == b"PK\x06\x07":
        _, _, z64_offset, _ = struct.unpack_from("<IIQI", mm, locator)
        if z64_offset + 56 > locator:
            raise fail(f"ZIP64 end-of-central-directory offset {z64_offset} out of range")
        if mm[z64_offset:z64_offset + 4] != b"PK\x06\x06":
            raise fail(f"no ZIP64 end-of-central-directory record at offset {z64_offset}")
        (_, _, _, _, disk, cd_disk, _, count, cd_size,
         cd_offset) = struct.unpack_from("<IQHHIIQQQQ", mm, z64_offset)
        directory_end = z64_offset
    else:
        directory_end = eocd
    if disk != 0 or cd_disk != 0:
        raise fail("multi-disk ZIP archives are not supported")
    if count > MAX_ENTRIES:
        raise fail(f"{count} ZIP entries exceed the {MAX_ENTRIES} limit")
    if cd_offset + cd_size > directory_end:
        raise fail(f"central directory [{cd_offset}, {cd_offset + cd_size}) runs past its end "
                   f"record at {directory_end}")

    entries: dict[str, ZipEntry] = {}
    pos, end = cd_offset, cd_offset + cd_size
    for i in range(count):
        if pos + 46 > end or mm[pos:pos + 4] != b"PK\x01\x02":
            raise fail(f"central directory record {i} at offset {pos} is missing or corrupt")
        (flags, method, csize, usize, name_len, extra_len, comment_len,
         local) = struct.unpack_from("<8xHH8xIIHHH8xI", mm, pos)
        name_end = pos + 46 + name_len
        if name_end + extra_len + comment_len > end:
            raise fail(f"central directory record {i} runs past the directory")
        raw_name = bytes(mm[pos + 46:name_end])
        name = raw_name.decode("utf-8" if flags & 0x800 else "cp437", errors="replace")
        # ZIP64 extended information: 64-bit values for the fields saturated at 0xFFFFFFFF.
        extra = bytes(mm[name_end:name_end + extra_len])
        usize, csize, local = _zip64_values(extra, usize, csize, local, name, fail)
        pos = name_end + extra_len + comment_len
        if flags & 0x1:
            raise fail(f"ZIP entry '{name}' is encrypted")
        if name in entries:
            raise fail(f"ZIP entry '{name}' appears twice")
        if local + 30 > size:
            raise fail(f"ZIP entry '{name}' local header offset {local} out of range "
                       f"(file is {size} bytes)")
        if mm[local:local + 4] != b"PK\x03\x04":
            raise fail(f"ZIP entry '{name}' has no local header at offset {local}")
        local_name_len, local_extra_len = struct.unpack_from("<HH", mm, local + 26)
        data = local + 30 + local_name_len + local_extra_len
        if method == 0 and csize != usize:
            raise fail(f"ZIP entry '{name}' is stored with {csize} bytes but declares {usize}")
        if data + csize > size:
            raise fail(f"ZIP entry '{name}' data [{data}, {data + csize}) runs past the end of "
                       f"the file ({size} bytes)")
        if data + csize > cd_offset:
            raise fail(f"ZIP entry '{name}' data [{data}, {data + csize}) overlaps the central "
                       f"directory at {cd_offset}")
        entries[name] = ZipEntry(name, data, csize, method)
    return entries


def _zip64_values(extra: bytes, usize: int, csize: int, local: int, name: str, fail):
    """Apply the 0x0001 extra field: values appear only for saturated fields, in order."""
    pos = 0
    while pos + 4 <= len(extra):
        tag, length = struct.unpack_from("<HH", extra, pos)
        body = extra[pos + 4:pos + 4 + length]
        pos += 4 + length
        if tag != 0x0001:
            continue
        at = 0
        out = []
        for value in (usize, csize, local):
            if value == 0xFFFFFFFF:
                if at + 8 > len(body):
                    raise fail(f"ZIP entry '{name}' has a short ZIP64 extra field")
                value = struct.unpack_from("<Q", body, at)[0]
                at += 8
            out.append(value)
        return tuple(out)
    return usize, csize, local


# --- torch.save archives --------------------------------------------------------------


class TorchArchive:
    """A torch.save ZIP file opened for reading: its pickle's tensors and storages."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.name = self.path.name
        with open(self.path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(4)
            if head != b"PK\x03\x04":
                kind = ("a legacy (pre-1.6) pickle" if head[:2] == b"\x80\x02"
                        else "not a ZIP archive")
                raise self.fail(f"legacy/unsupported torch.save format ({kind}); re-save it "
                                "with a current torch or convert it to safetensors")
            self.mm = map_file(f)
        self.size = size
        self.entries = read_zip_directory(self.mm, size, self.fail)
        pickles = [n for n in self.entries if n.count("/") == 1 and n.endswith("/data.pkl")]
        if len(pickles) != 1:
            raise self.fail(f"expected one '<dir>/data.pkl' entry, found {len(pickles)}")
        self.prefix = pickles[0][: -len("data.pkl")]
        self.little_endian = self._byteorder()

    def fail(self, msg: str) -> ValueError:
        return ValueError(one_line(f"{self.name}: {msg}"))

    def _check_stored(self, entry: ZipEntry) -> None:
        if entry.method != 0:
            raise self.fail(f"ZIP entry '{entry.name}' is compressed (method {entry.method}); "
                            "only STORED entries are supported")

    def entry_bytes(self, name: str) -> memoryview:
        entry = self.entries[name]
        self._check_stored(entry)
        return memoryview(self.mm)[entry.offset:entry.offset + entry.size]

    def _byteorder(self) -> bool:
        name = self.prefix + "byteorder"
        if name not in self.entries:
            return True  # older torch wrote no byteorder entry: little-endian
        value = bytes(self.entry_bytes(name)).strip()
        if value not in (b"little", b"big"):
            raise self.fail(f"byteorder entry is {value[:20]!r}, expected 'little' or 'big'")
        return value == b"little"

    def tensor_views(self) -> dict[str, TensorView]:
        """Name -> TensorView of the state dict, storages checked; no tensor data read."""
        name = self.prefix + "data.pkl"
        if self.entries[name].size > MAX_PICKLE_BYTES:
            raise self.fail(f"data.pkl is {self.entries[name].size} bytes, over the "
                            f"{MAX_PICKLE_BYTES}-byte limit")
        storages = sum(1 for n in self.entries if n.startswith(self.prefix + "data/"))
        try:
            obj = unpickle(self.entry_bytes(name), ops_budget(storages))
        except ValueError as e:
            raise self.fail(str(e)) from None
        if not isinstance(obj, dict):
            raise self.fail(f"the pickle holds a {_describe(obj)}, expected a state dict")
        views: dict[str, TensorView] = {}
        for key, value in obj.items():
            if not isinstance(key, str):
                raise self.fail(f"state dict key {_describe(key)} is not a string")
            if not isinstance(value, TensorView):
                raise self.fail(f"state dict entry '{key}' is of type {type(value).__name__}, "
                                "not a tensor")
            self._check_storage(value.storage, key)
            views[key] = value
        return views

    def _check_storage(self, storage: StorageRef, tensor: str) -> None:
        entry = self.entries.get(f"{self.prefix}data/{storage.key}")
        if entry is None:
            raise self.fail(f"tensor '{tensor}': storage '{storage.key}' has no "
                            f"'{self.prefix}data/{storage.key}' entry")
        self._check_stored(entry)  # here too, so that a scan refuses what a read would
        need = storage.numel * _NP_DTYPES[storage.dtype].itemsize
        if entry.size != need:
            raise self.fail(f"tensor '{tensor}': storage '{storage.key}' entry holds "
                            f"{entry.size} bytes, but {storage.dtype} x {storage.numel} "
                            f"needs {need}")

    def storage_array(self, storage: StorageRef) -> np.ndarray:
        """The storage's elements as a 1-D array (a read-only view on the mmap)."""
        np_dtype = _NP_DTYPES[storage.dtype]
        if not self.little_endian:
            np_dtype = np_dtype.newbyteorder(">")
        raw = self.entry_bytes(f"{self.prefix}data/{storage.key}")
        return np.frombuffer(raw, dtype=np_dtype, count=storage.numel)

    def materialise(self, view: TensorView) -> np.ndarray:
        """The view's elements, flat in C order: zero-copy when contiguous."""
        base = self.storage_array(view.storage)
        if view.numel == 0:
            out = np.empty(0, dtype=base.dtype)
        elif view.is_contiguous():
            out = base[view.offset:view.offset + view.numel]
        else:
            itemsize = base.dtype.itemsize
            strided = np.lib.stride_tricks.as_strided(
                base[view.offset:], shape=view.shape,
                strides=tuple(s * itemsize for s in view.stride), writeable=False)
            out = np.ascontiguousarray(strided).ravel()
        if not self.little_endian:
            out = out.astype(out.dtype.newbyteorder("<"))
        return out


def scan_torch_bin(path: str | os.PathLike) -> dict[str, TensorView]:
    """Tensor name -> TensorView of a torch.save file, from its pickle only.

    The ZIP directory, every storage size and every view's bounds are
    checked; no tensor data is read.
    """
    return TorchArchive(path).tensor_views()


def read_torch_bin(path: str | os.PathLike) -> dict[str, RawTensor]:
    """The tensors of a torch.save `pytorch_model.bin` as RawTensors.

    Contiguous tensors are zero-copy views on a read-only mmap of the file
    (tied tensors share the bytes); strided views are copied into C order.
    Errors are one-line ValueErrors starting with the file name.
    """
    archive = TorchArchive(path)
    return {name: RawTensor(name, view.dtype, view.shape, archive.materialise(view))
            for name, view in archive.tensor_views().items()}
