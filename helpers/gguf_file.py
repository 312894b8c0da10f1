"""Reading GGUF files (llama.cpp's model format) and dequantising their tensors, written from the format's definition.

A GGUF file is: the magic bytes ``GGUF``, a version, the number of tensors and of metadata entries, the
metadata (typed key/value pairs: the architecture's sizes, the tokenizer's vocabulary and merges, the chat
template), one info record per tensor (name, shape, storage type, offset), and then, aligned, the tensor
data. Integers are little-endian; a string is a uint64 length followed by UTF-8 bytes.

A downloaded model file is untrusted input: every count, length, shape and offset in the header is checked
against the size of the file before anything is allocated, and every problem is a ``ValueError`` that names
the file.

Storage types handled here (the ``ggml_type`` numbers of the format). Block formats pack 32 weights into
one block with a float16 scale ``d`` (and an offset ``m`` for the ``_1`` kinds):

    F32, F16, BF16     plain floats
    Q8_0   34 bytes   d, 32 int8 q                       w = d * q
    Q4_0   18 bytes   d, 16 bytes of 4-bit q             w = d * (q - 8)
    Q4_1   20 bytes   d, m, 16 bytes of 4-bit q          w = d * q + m
    Q5_0   22 bytes   d, 32 high bits, 16 bytes low      w = d * (q - 16)
    Q5_1   24 bytes   d, m, 32 high bits, 16 bytes low   w = d * q + m

In the 4-bit and 5-bit kinds byte j holds weight j in its low nibble and weight j + 16 in its high nibble;
the 5-bit kinds add bit j of a little-endian uint32 as bit 4 of weight j.
"""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4  # ggml tensors have at most 4 dimensions
MAX_KEY_BYTES = 65_535

# metadata value types of the format
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9

# ggml storage type -> (name, weights per block, bytes per block)
GGML_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("F32", 1, 4),
    1: ("F16", 1, 2),
    2: ("Q4_0", 32, 18),
    3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22),
    7: ("Q5_1", 32, 24),
    8: ("Q8_0", 32, 34),
    30: ("BF16", 1, 2),
}
TYPE_IDS = {name: tid for tid, (name, _, _) in GGML_TYPES.items()}


@dataclass(frozen=True)
class TensorInfo:
    """Where one tensor sits in the file. ``shape`` is PyTorch's order (rows first): the reverse of ggml's."""

    name: str
    shape: tuple[int, ...]
    ggml_type: int
    offset: int  # absolute, from the start of the file
    n_bytes: int

    @property
    def type_name(self) -> str:
        return GGML_TYPES[self.ggml_type][0]

    @property
    def numel(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1


class _Cursor:
    """Bounds-checked little-endian reads from a byte buffer; every overrun is a ValueError naming the file."""

    def __init__(self, buf: memoryview, source: str):
        self.buf, self.pos, self.source, self.size = buf, 0, source, len(buf)

    def fail(self, what: str) -> ValueError:
        return ValueError(f"GGUF file {self.source}: {what}")

    def need(self, n: int, what: str) -> None:
        if n < 0 or self.pos + n > self.size:
            raise self.fail(f"{what} needs {n} bytes at offset {self.pos}, but the file has {self.size} bytes "
                            "(truncated or corrupt?)")

    def unpack(self, fmt: str, what: str):
        n = struct.calcsize(fmt)
        self.need(n, what)
        value = struct.unpack_from(fmt, self.buf, self.pos)[0]
        self.pos += n
        return value

    def string(self, what: str, limit: int | None = None) -> str:
        n = self.unpack("<Q", f"the length of {what}")
        if limit is not None and n > limit:
            raise self.fail(f"{what} claims {n} bytes, more than the allowed {limit}")
        self.need(n, what)
        raw = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise self.fail(f"{what} is not valid UTF-8: {err}") from err

    def value(self, vtype: int, what: str, depth: int = 0):
        if vtype in _SCALARS:
            return self.unpack(_SCALARS[vtype], what)
        if vtype == _STRING:
            return self.string(what)
        if vtype == _ARRAY:
            if depth > 2:
                raise self.fail(f"{what} nests arrays more than 3 deep")
            etype = self.unpack("<I", f"the element type of {what}")
            count = self.unpack("<Q", f"the length of {what}")
            # every element takes at least one byte (a string at least its 8-byte length): refuse counts the
            # rest of the file cannot hold before building a list of that size
            least = struct.calcsize(_SCALARS[etype]) if etype in _SCALARS else 8 if etype == _STRING else 12
            if etype not in _SCALARS and etype not in (_STRING, _ARRAY):
                raise self.fail(f"{what} has an unknown element type {etype}")
            if count * least > self.size - self.pos:
                raise self.fail(f"{what} claims {count} elements, more than the {self.size - self.pos} bytes "
                                "left in the file can hold (truncated or corrupt?)")
            if etype in _SCALARS:  # numbers in one go
                fmt = _SCALARS[etype]
                n = struct.calcsize(fmt) * count
                values = list(struct.unpack_from(f"<{count}{fmt[1]}", self.buf, self.pos)) if count else []
                self.pos += n
                return values
            return [self.value(etype, f"{what}[{i}]", depth + 1) for i in range(count)]
        raise self.fail(f"{what} has an unknown value type {vtype}")


class GGUFFile:
    """A GGUF file opened for reading: ``metadata`` (dict), ``tensors`` (name -> TensorInfo), ``tensor(name)``.

    The file is memory-mapped; tensor data is read only when asked for.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_file():
            raise ValueError(f"GGUF file {str(self.path)!r} does not exist")
        self.source = repr(str(self.path))
        with open(self.path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size < 24:
                raise ValueError(f"GGUF file {self.source}: only {size} bytes, too short for a GGUF header "
                                 "(truncated?)")
            self._mmap = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        self.size = size
        self.metadata, self.tensors, self.version = self._parse(memoryview(self._mmap))

    def _parse(self, buf: memoryview) -> tuple[dict, dict[str, TensorInfo], int]:
        cur = _Cursor(buf, self.source)
        magic = bytes(buf[:4])
        if magic != MAGIC:
            raise cur.fail(f"starts with {magic!r}, not the GGUF magic bytes {MAGIC!r} (not a GGUF file?)")
        cur.pos = 4
        version = cur.unpack("<I", "the version")
        if version not in SUPPORTED_VERSIONS:
            raise cur.fail(f"has format version {version}; supported: {SUPPORTED_VERSIONS}")
        n_tensors = cur.unpack("<Q", "the tensor count")
        n_kv = cur.unpack("<Q", "the metadata count")
        # each metadata entry takes >= 8 (key length) + 4 (type) + 1 bytes, each tensor info >= 8 + 4 + 8 + 4 + 8
        if n_kv * 13 > self.size or n_tensors * 32 > self.size:
            raise cur.fail(f"claims {n_tensors} tensors and {n_kv} metadata entries, more than its "
                           f"{self.size} bytes can hold (truncated or corrupt?)")
        metadata: dict = {}
        for i in range(n_kv):
            key = cur.string(f"metadata key {i}", MAX_KEY_BYTES)
            vtype = cur.unpack("<I", f"the type of {key!r}")
            metadata[key] = cur.value(vtype, f"metadata {key!r}")
        infos = []
        for i in range(n_tensors):
            name = cur.string(f"tensor name {i}", MAX_KEY_BYTES)
            n_dims = cur.unpack("<I", f"the rank of tensor {name!r}")
            if not 1 <= n_dims <= MAX_DIMS:
                raise cur.fail(f"tensor {name!r} has {n_dims} dimensions; allowed: 1..{MAX_DIMS}")
            dims = [cur.unpack("<Q", f"a dimension of tensor {name!r}") for _ in range(n_dims)]
            ggml_type = cur.unpack("<I", f"the type of tensor {name!r}")
            offset = cur.unpack("<Q", f"the offset of tensor {name!r}")
            infos.append((name, dims, ggml_type, offset))
        alignment = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
        if not isinstance(alignment, int) or alignment < 1 or alignment & (alignment - 1) or alignment > 1 << 20:
            raise cur.fail(f"general.alignment must be a power of two up to 2**20, got {alignment!r}")
        data_start = -(-cur.pos // alignment) * alignment
        tensors: dict[str, TensorInfo] = {}
        for name, dims, ggml_type, offset in infos:
            if name in tensors:
                raise cur.fail(f"tensor {name!r} appears twice")
            if ggml_type not in GGML_TYPES:
                known = ", ".join(f"{n} ({t})" for t, (n, _, _) in GGML_TYPES.items())
                raise cur.fail(f"tensor {name!r} has storage type {ggml_type}, which this reader does not handle; "
                               f"known: {known}")
            _, block, block_bytes = GGML_TYPES[ggml_type]
            if any(d < 1 for d in dims):
                raise cur.fail(f"tensor {name!r} has dimensions {dims}; each must be >= 1")
            numel = 1
            for d in dims:
                numel *= d
            if dims[0] % block:
                raise cur.fail(f"tensor {name!r}: rows of {dims[0]} weights do not split into blocks of {block} "
                               f"({GGML_TYPES[ggml_type][0]})")
            n_bytes = numel // block * block_bytes
            start = data_start + offset
            if offset % alignment or start + n_bytes > self.size:
                raise cur.fail(f"tensor {name!r} ({n_bytes} bytes at offset {offset}) lies outside the file's "
                               f"{self.size} bytes or is misaligned (truncated or corrupt?)")
            tensors[name] = TensorInfo(name, tuple(reversed(dims)), ggml_type, start, n_bytes)
        return metadata, tensors, version

    def raw(self, name: str) -> np.ndarray:
        """The stored bytes of tensor ``name`` (uint8, no copy)."""
        info = self.info(name)
        return np.frombuffer(self._mmap, dtype=np.uint8, count=info.n_bytes, offset=info.offset)

    def info(self, name: str) -> TensorInfo:
        if name not in self.tensors:
            raise ValueError(f"GGUF file {self.source} has no tensor {name!r}")
        return self.tensors[name]

    def tensor(self, name: str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Tensor ``name`` dequantised to float32 (then cast to ``dtype``), in PyTorch's shape."""
        info = self.info(name)
        out = dequantize(self.raw(name), info.ggml_type, info.numel).reshape(info.shape)
        return out if dtype == torch.float32 else out.to(dtype)

    def close(self) -> None:
        self._mmap.close()

    def __enter__(self) -> GGUFFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"GGUFFile({str(self.path)!r}, version={self.version}, tensors={len(self.tensors)}, " \
               f"metadata={len(self.metadata)})"


# ---------------------------------------------------------------------------------------------------------
# Dequantisation: bytes -> float32, one function per block format


def _f16(col: np.ndarray) -> np.ndarray:
    """A (n, 2) uint8 column pair read as little-endian float16, as float32 (n, 1)."""
    return np.ascontiguousarray(col).view("<f2").astype(np.float32)


def _nibbles(qs: np.ndarray) -> np.ndarray:
    """(n, 16) packed bytes -> (n, 32) 4-bit values: the low nibbles are weights 0..15, the high ones 16..31."""
    return np.concatenate([qs & 0x0F, qs >> 4], axis=1)


def _high_bits(qh: np.ndarray) -> np.ndarray:
    """(n, 4) bytes of a little-endian uint32 -> (n, 32) bits, bit j for weight j, already shifted to 16."""
    word = np.ascontiguousarray(qh).view("<u4")  # (n, 1)
    return ((word >> np.arange(32, dtype=np.uint32)) & 1).astype(np.uint8) << 4


CHUNK_BLOCKS = 1 << 15  # blocks dequantised at a time: the temporaries stay a few MB, whatever the tensor


def dequantize(raw: np.ndarray, ggml_type: int, numel: int) -> torch.Tensor:
    """``numel`` weights stored as ``ggml_type`` in the bytes ``raw``, as a flat float32 tensor.

    Block formats go through in chunks written into the result, so that loading a large matrix needs
    little more memory than the matrix itself."""
    if ggml_type not in GGML_TYPES:
        raise ValueError(f"ggml_type must be one of {sorted(GGML_TYPES)}, got {ggml_type!r}")
    name, block, block_bytes = GGML_TYPES[ggml_type]
    if numel % block or raw.size != numel // block * block_bytes:
        raise ValueError(f"{name}: {raw.size} bytes do not hold {numel} weights ({block_bytes} bytes per {block})")
    if block == 1:
        return _dequantize_blocks(raw, name, block_bytes)
    out = np.empty(numel, dtype=np.float32)
    step = CHUNK_BLOCKS * block_bytes
    for start in range(0, raw.size, step):
        piece = raw[start:start + step]
        first = start // block_bytes * block
        out[first:first + piece.size // block_bytes * block] = _dequantize_blocks(piece, name, block_bytes)
    return torch.from_numpy(out)


def _dequantize_blocks(raw: np.ndarray, name: str, block_bytes: int) -> np.ndarray | torch.Tensor:
    if name == "F32":
        return torch.from_numpy(raw.view("<f4").copy())
    if name == "F16":
        return torch.from_numpy(raw.view("<f2").astype(np.float32))
    if name == "BF16":  # the top 16 bits of a float32
        return torch.from_numpy((raw.view("<u2").astype(np.uint32) << 16).view(np.float32))
    b = raw.reshape(-1, block_bytes)
    d = _f16(b[:, 0:2])
    if name == "Q8_0":
        w = d * b[:, 2:].view(np.int8)
    elif name == "Q4_0":
        w = d * (_nibbles(b[:, 2:]).astype(np.int8) - 8)
    elif name == "Q4_1":
        w = d * _nibbles(b[:, 4:]) + _f16(b[:, 2:4])
    elif name == "Q5_0":
        w = d * ((_nibbles(b[:, 6:]) | _high_bits(b[:, 2:6])).astype(np.int8) - 16)
    else:  # Q5_1
        w = d * (_nibbles(b[:, 8:]) | _high_bits(b[:, 4:8])) + _f16(b[:, 2:4])
    return w.reshape(-1)
