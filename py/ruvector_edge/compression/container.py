"""The self-describing tensor container: one header, the shape, a payload, a CRC32 trailer.

Layout, all little-endian::

    0   4s  magic "RVTC"
    4   u8  version (1)
    5   u8  level     0 None, 1 Fast, 2 High, 3 Quantized8, 4 Quantized4
    6   u8  dtype     0 opaque bytes, 1 float32
    7   u8  packing   0 stored, 1 LZ4 block (u32 size prefix), 2 raw deflate,
                      3 split: Quantized8 codes as deflated high 2 bits + raw low 6 bits
    8   u8  flags     bit 0: float32 bytes shuffled into 4 byte planes (lossless levels)
                      bit 1: the payload starts with outliers sent exactly (quantized levels):
                      u32 count k (1 ≤ k ≤ elements // 256), k u32 indices (increasing,
                      below the element count), k finite float32 values
    9   u8  params    quantization parameter dtype: 0 none, 1 float16, 2 float32
    10  u8  ndim      0-8 (0 for opaque bytes)
    11  u8  reserved  0
    12  u32 block size (quantized levels; else 0)
    16  u64 raw length: bytes of the decoded value (elements × 4 for float32)
    24  u64 payload length
    32  u64 × ndim shape
    ..  payload
    -4  u32 CRC32 (zlib.crc32) of every byte before it

Decoding checks the whole header and the checksum before it allocates anything
that the sender sized: the declared raw length against the configured limit,
shape × dtype against the raw length, the payload length against the bytes
received. Only then is anything inflated, and inflating is capped at the sizes
the header implies. Both quantized levels pick their block size per tensor (the
field was always per container) and may add outliers (flag bit 1, valid on
either level since it came): containers from before either decode as they did,
Quantized4's fixed 64-value blocks included; a decoder from before the flag
refuses it with MalformedMessage rather than misreading it. zlib's CRC32 exists in every runtime (Pyodide's zlib, a few
lines of JS), unlike xxhash.
"""

from __future__ import annotations

import enum
import math
import struct
import zlib
from dataclasses import dataclass

from ..errors import ChecksumMismatch, InvalidCodecConfig, MalformedMessage, OversizedMessage

__all__ = [
    "CompressionLevel",
    "Dtype",
    "Header",
    "Limits",
    "Packing",
    "HEADER_SIZE",
    "MAGIC",
    "VERSION",
    "encode_container",
    "max_outliers",
    "parse_container",
]

MAGIC = b"RVTC"
VERSION = 1
_HEADER = struct.Struct("<4sBBBBBBBBIQQ")
HEADER_SIZE = _HEADER.size
_CRC = struct.Struct("<I")
FLAG_SHUFFLED = 0x01
FLAG_OUTLIERS = 0x02
OUTLIER_SHARE = 256
MAX_NDIM = 8
MAX_BLOCK_SIZE = 1 << 24
MAX_SAFE_DIM = 1 << 53


def max_outliers(elements: int) -> int:
    """At most one exact outlier per OUTLIER_SHARE values: the side channel (8 bytes each) costs at most ~3% of the ratio."""
    return elements // OUTLIER_SHARE


class CompressionLevel(enum.IntEnum):
    NONE = 0
    FAST = 1
    HIGH = 2
    QUANTIZED8 = 3
    QUANTIZED4 = 4

    @property
    def lossy(self) -> bool:
        return self >= CompressionLevel.QUANTIZED8


class Dtype(enum.IntEnum):
    BYTES = 0
    FLOAT32 = 1


class Packing(enum.IntEnum):
    STORED = 0
    LZ4 = 1
    DEFLATE = 2
    SPLIT_DEFLATE = 3


class ParamDtype(enum.IntEnum):
    NONE = 0
    FLOAT16 = 1
    FLOAT32 = 2

    @property
    def itemsize(self) -> int:
        return (0, 2, 4)[self]


_LOSSLESS_PACKINGS = {
    CompressionLevel.NONE: {Packing.STORED},
    CompressionLevel.FAST: {Packing.STORED, Packing.LZ4},
    CompressionLevel.HIGH: {Packing.STORED, Packing.DEFLATE},
}
_QUANT_PACKINGS = {
    CompressionLevel.QUANTIZED8: {Packing.STORED, Packing.SPLIT_DEFLATE},
    CompressionLevel.QUANTIZED4: {Packing.STORED, Packing.DEFLATE},
}


@dataclass(frozen=True)
class Limits:
    """What a decoder accepts: the decompression-bomb bound is `max_decompressed_bytes`."""

    max_message_bytes: int = 64 << 20
    max_decompressed_bytes: int = 64 << 20

    def __post_init__(self) -> None:
        if self.max_message_bytes < HEADER_SIZE + _CRC.size or self.max_decompressed_bytes < 0:
            raise InvalidCodecConfig("limits too small to hold any container")


@dataclass(frozen=True)
class Header:
    level: CompressionLevel
    dtype: Dtype
    packing: Packing
    flags: int
    params: ParamDtype
    block_size: int
    raw_len: int
    shape: tuple[int, ...]

    @property
    def elements(self) -> int:
        return math.prod(self.shape)


def encode_container(header: Header, payload: bytes | memoryview) -> bytes:
    head = _HEADER.pack(
        MAGIC, VERSION, header.level, header.dtype, header.packing, header.flags, header.params,
        len(header.shape), 0, header.block_size, header.raw_len, len(payload),
    )
    body = b"".join((head, struct.pack(f"<{len(header.shape)}Q", *header.shape), payload))
    return body + _CRC.pack(zlib.crc32(body))


def parse_container(data: bytes | memoryview, limits: Limits) -> tuple[Header, memoryview]:
    """Validate everything but the payload's inner structure; return the header and a view of the payload."""
    if len(data) > limits.max_message_bytes:
        raise OversizedMessage(f"container of {len(data)} bytes exceeds the {limits.max_message_bytes}-byte limit")
    if len(data) < HEADER_SIZE + _CRC.size:
        raise MalformedMessage("truncated container header")
    view = memoryview(data).cast("B")
    (magic, version, level, dtype, packing, flags, params, ndim, reserved, block_size, raw_len,
     payload_len) = _HEADER.unpack_from(view)
    if magic != MAGIC:
        raise MalformedMessage("not a tensor container (bad magic)")
    if version != VERSION:
        raise MalformedMessage(f"unsupported container version {version}")
    try:
        level, dtype, packing, params = CompressionLevel(level), Dtype(dtype), Packing(packing), ParamDtype(params)
    except ValueError as exc:
        raise MalformedMessage(f"unknown container field value: {exc}") from None
    if reserved or ndim > MAX_NDIM:
        raise MalformedMessage("reserved byte set or too many dimensions")
    shape_end = HEADER_SIZE + 8 * ndim
    if len(view) < shape_end + _CRC.size:
        raise MalformedMessage("truncated shape")
    shape = struct.unpack_from(f"<{ndim}Q", view, HEADER_SIZE)
    if raw_len > limits.max_decompressed_bytes:
        raise OversizedMessage(f"declared {raw_len} decoded bytes, limit {limits.max_decompressed_bytes}")
    if len(view) - shape_end - _CRC.size != payload_len:
        raise MalformedMessage(f"payload is {len(view) - shape_end - _CRC.size} bytes, header says {payload_len}")
    header = Header(level, dtype, packing, flags, params, block_size, raw_len, tuple(shape))
    _check_fields(header)
    (crc,) = _CRC.unpack_from(view, len(view) - _CRC.size)
    if zlib.crc32(view[: len(view) - _CRC.size]) != crc:
        raise ChecksumMismatch("container CRC32 mismatch")
    return header, view[shape_end : len(view) - _CRC.size]


def _check_fields(h: Header) -> None:
    if h.dtype is Dtype.BYTES:
        if h.shape or h.level.lossy:
            raise MalformedMessage("opaque bytes carry no shape and are never quantized")
    elif any(d > MAX_SAFE_DIM for d in h.shape) or h.elements * 4 != h.raw_len:
        raise MalformedMessage(f"shape {h.shape} × float32 does not match {h.raw_len} decoded bytes")
    if h.level.lossy:
        if h.packing not in _QUANT_PACKINGS[h.level] or h.flags & ~FLAG_OUTLIERS:
            raise MalformedMessage(f"packing {h.packing.name} / flags {h.flags} invalid for {h.level.name}")
        if h.params is ParamDtype.NONE or not 1 <= h.block_size <= MAX_BLOCK_SIZE:
            raise MalformedMessage("quantized container without parameter dtype or with a bad block size")
    else:
        if h.packing not in _LOSSLESS_PACKINGS[h.level] or h.params is not ParamDtype.NONE or h.block_size:
            raise MalformedMessage(f"packing {h.packing.name} or quantization fields invalid for {h.level.name}")
        if h.flags & ~FLAG_SHUFFLED or (h.flags and (h.dtype is not Dtype.FLOAT32 or h.packing is Packing.STORED)):
            raise MalformedMessage(f"flags {h.flags} invalid here")

