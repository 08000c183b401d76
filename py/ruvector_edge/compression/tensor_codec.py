"""TensorCodec: five levels over one self-describing container.

- None: the float32 (or opaque) bytes as they are.
- Fast: LZ4 block with a size prefix, the format npm `lz4-wasm` reads in the browser.
- High: for float32, byte-shuffle (all first bytes of every value, then all
  second bytes...) then raw deflate with Huffman coding only; for opaque bytes,
  deflate level 6. Chosen by measurement (bench/compression.py, 1M N(0,1)
  floats): shuffle + Huffman-only deflate gives 1.20× at ~180 MB/s where LZ4-HC
  level 9 gives 1.00× at 50 MB/s and shuffle + LZ4-HC 1.14× at 16 MB/s; on
  float data the exponent/sign byte is what compresses, and LZ77 matching finds
  nothing in mantissas. Deflate decodes in every browser (DecompressionStream
  "deflate-raw", Pyodide's zlib).
- Quantized8 / Quantized4: per-block affine quantization with rounding
  (quantize.py), then lossless packing of the codes. Both choose their block
  size per tensor and send outliers exactly unless given a block size
  (blocking.py has the rules and why).

Decompression is self-describing: any codec decodes any level. Every level
falls back to "stored" when packing would not make the payload smaller.

No numpy here: the array work (shuffle, quantization) sits behind
`Float32Arrays`, which comes with the runtime's `Codec` provider — numpy
natively (quantize.py), JS typed arrays in the browser (browser_codec.py).
"""

from __future__ import annotations

import abc
import math
import operator
import struct
import sys
import zlib
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidCodecConfig, InvalidTensor, MalformedMessage, OversizedMessage
from .container import (
    FLAG_OUTLIERS,
    FLAG_SHUFFLED,
    MAX_BLOCK_SIZE,
    MAX_NDIM,
    CompressionLevel,
    Dtype,
    Header,
    Limits,
    Packing,
    ParamDtype,
    encode_container,
    max_outliers,
    parse_container,
)
from .lz4codec import Codec

__all__ = ["TensorCodec", "DEFAULT_BLOCK_SIZES", "Float32Arrays", "Float32Tensor", "Quantized"]

DEFAULT_BLOCK_SIZES = {CompressionLevel.QUANTIZED8: None, CompressionLevel.QUANTIZED4: None}  # None: chosen per tensor
_LEVELS = {CompressionLevel.QUANTIZED8: 255, CompressionLevel.QUANTIZED4: 15}
_U32 = struct.Struct("<I")

if sys.byteorder != "little":  # pragma: no cover - every runtime we target is little-endian
    raise ImportError("the tensor codec assumes a little-endian host")


def _inflate(data: bytes | memoryview, size: int) -> bytes:
    """Exactly `size` bytes from a raw deflate stream, never inflating past `size` (+1 to detect excess)."""
    z = zlib.decompressobj(-15)
    try:
        out = z.decompress(data, size + 1)
    except zlib.error as exc:
        raise MalformedMessage(f"corrupt deflate stream: {exc}") from None
    if len(out) != size or not z.eof or z.unconsumed_tail or z.unused_data:
        raise MalformedMessage(f"deflate stream does not hold exactly {size} bytes")
    return out


@dataclass(frozen=True)
class Float32Tensor:
    """Packed little-endian float32 values and a shape: what a runtime without numpy gets back (and may pass in)."""

    data: bytes
    shape: tuple[int, ...]

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "shape", tuple(self.shape))
        except TypeError:
            raise InvalidTensor(f"shape {self.shape!r} is not a sequence of integers") from None
        if len(self.shape) > MAX_NDIM or any(type(d) is not int or d < 0 for d in self.shape):
            raise InvalidTensor(f"shape {self.shape} is not at most {MAX_NDIM} non-negative integers")
        if len(self.data) != 4 * math.prod(self.shape):
            raise InvalidTensor(f"{len(self.data)} bytes are not a float32 tensor of shape {self.shape}")

    def tolist(self) -> Any:
        """Nested lists of Python floats (a bare float for shape ())."""
        flat = memoryview(self.data).cast("f").tolist()
        return _nest(flat, self.shape) if self.shape else flat[0]


def _nest(flat: list[float], shape: tuple[int, ...]) -> list[Any]:
    if len(shape) == 1:
        return flat
    step = len(flat) // shape[0] if shape[0] else 0
    return [_nest(flat[i * step : (i + 1) * step], shape[1:]) for i in range(shape[0])]


@dataclass(frozen=True)
class Quantized:
    """An encoder's output: the block size, parameters (offsets then scales), their dtype, the code streams, the outliers."""

    block: int
    params: bytes
    param_dtype: ParamDtype
    plain: bytes  # Quantized4: nibble-packed codes; Quantized8: one byte per code
    high: bytes = b""  # Quantized8 only: the high 2 bits of every code, 4 per byte
    low: bytes = b""  # Quantized8 only: the low 6 bits, 4 codes per 3 bytes
    outlier_index: bytes = b""  # u32 LE, increasing: values sent exactly (their codes are placeholders)
    outlier_value: bytes = b""  # float32 LE


class Float32Arrays(abc.ABC):
    """The float32 array work of the codec, one implementation per runtime: numpy natively, JS typed arrays in the browser.

    Values cross this seam as packed little-endian float32 bytes, and both
    implementations compute in float32 with the same operation order and
    round-half-to-even, so a runtime's container bytes do not depend on where
    they were made (only deflate's bytes may, never what they inflate to).
    """

    @abc.abstractmethod
    def from_tensor(self, tensor: Any, shape: tuple[int, ...] | None) -> tuple[memoryview, tuple[int, ...]]:
        """The tensor's values as packed float32 bytes, and its shape; InvalidTensor when it is not one."""

    @abc.abstractmethod
    def to_tensor(self, raw: bytes, shape: tuple[int, ...]) -> Any:
        """The runtime's tensor type for decoded float32 bytes."""

    @abc.abstractmethod
    def shuffle(self, raw: memoryview, n: int) -> bytes:
        """All first bytes of the n values, then all second bytes, and so on."""

    @abc.abstractmethod
    def unshuffle(self, data: bytes, n: int) -> bytes: ...

    @abc.abstractmethod
    def quantize(self, raw: memoryview, n: int, block: int | None, levels: int) -> Quantized:
        """Per-block affine quantization (quantize.py has the rules); InvalidTensor on non-finite values.

        `block` None: block size and outliers planned per tensor by the level's rules (blocking.py).
        """

    @abc.abstractmethod
    def dequantize(
        self, params: memoryview, param_dtype: ParamDtype, n: int, block: int, levels: int, codes: memoryview | bytes,
        low: memoryview | None = None,
    ) -> bytes:
        """Packed float32 values from parameters and codes (nibbles for 15 levels; bytes, or high+low streams, for 255)."""


def _outlier_section(payload: memoryview, n: int) -> tuple[memoryview, memoryview, memoryview]:
    """(indices, values, the rest of the payload), checked: count within bounds, indices increasing and in range, values finite."""
    if payload.nbytes < 4:
        raise MalformedMessage("payload shorter than its outlier count")
    (k,) = _U32.unpack_from(payload)
    if not 1 <= k <= max_outliers(n):
        raise MalformedMessage(f"{k} outliers: must be 1 to {max_outliers(n)} for {n} values")
    end = 4 + 8 * k
    if payload.nbytes < end:
        raise MalformedMessage("payload shorter than its outliers")
    index, value = payload[4 : 4 + 4 * k].cast("I"), payload[4 + 4 * k : end].cast("f")
    if index[-1] >= n or not all(map(operator.lt, index, index[1:])):
        raise MalformedMessage("outlier indices must increase and stay below the element count")
    if not all(map(math.isfinite, value)):
        raise MalformedMessage("outlier values must be finite")
    return index, value, payload[end:]


def _parse_shape(shape: Any) -> tuple[int, ...] | None:
    if shape is None:
        return None
    try:
        dims = tuple(shape)
    except TypeError:
        raise InvalidTensor(f"shape {shape!r} is not a sequence of integers") from None
    if len(dims) > MAX_NDIM or any(type(d) is not int or d < 0 for d in dims):
        raise InvalidTensor(f"shape {shape!r} is not at most {MAX_NDIM} non-negative integers")
    return dims


def as_float32(tensor: Any) -> Any:
    """A C-contiguous little-endian float32 ndarray of a tensor (numpy runtimes only; the adaptive chooser uses it)."""
    from .quantize import as_float32 as numpy_as_float32

    return numpy_as_float32(tensor)


class TensorCodec:
    """Compress tensors and bytes at one level; decompress any container within the limits."""

    def __init__(
        self,
        level: CompressionLevel = CompressionLevel.FAST,
        *,
        block_size: int | None = None,
        limits: Limits | None = None,
        codec: Codec | None = None,
    ) -> None:
        self.level = CompressionLevel(level)
        self.block_size: int | None
        if self.level.lossy:
            self.block_size = DEFAULT_BLOCK_SIZES[self.level] if block_size is None else block_size
            size = self.block_size
            if size is not None and (type(size) is not int or not 1 <= size <= MAX_BLOCK_SIZE):
                raise InvalidCodecConfig(f"block size must be an integer in [1, {MAX_BLOCK_SIZE}]")
        elif block_size is not None:
            raise InvalidCodecConfig(f"{self.level.name} takes no block size")
        else:
            self.block_size = 0
        self.limits = limits or Limits()
        if codec is None:
            from ..platform import default_codec

            codec = default_codec()
        self.codec = codec
        self.arrays: Float32Arrays = codec.float32_arrays()

    @classmethod
    def with_level(cls, level: CompressionLevel, **kwargs: Any) -> "TensorCodec":
        return cls(level, **kwargs)

    def __repr__(self) -> str:
        return f"TensorCodec({self.level.name}, block_size={self.block_size})"

    # Encoding -------------------------------------------------------------------------------
    def compress_tensor(self, tensor: Any, shape: Any = None) -> bytes:
        """Compress a float32 tensor.

        Natively anything numpy turns into an array of real numbers. Without
        numpy (the browser): a nested list of numbers, an ``array('f')``, a
        memoryview of format 'f' (its own shape is used), a `Float32Tensor`,
        a JS Float32Array, or packed little-endian float32 bytes. `shape`
        reshapes flat input; its product must match the number of values.
        """
        raw, dims = self.arrays.from_tensor(tensor, _parse_shape(shape))
        if raw.nbytes > self.limits.max_decompressed_bytes:
            raise OversizedMessage(f"tensor of {raw.nbytes} bytes exceeds the {self.limits.max_decompressed_bytes}-byte limit")
        if self.level.lossy:
            return self._quantized(raw, dims)
        return self._lossless(raw, Dtype.FLOAT32, dims)

    def compress(self, data: bytes | bytearray | memoryview) -> bytes:
        """Opaque bytes are never quantized: a lossy codec packs them with the High lossless mode."""
        raw = memoryview(data).cast("B")
        if raw.nbytes > self.limits.max_decompressed_bytes:
            raise OversizedMessage(f"{raw.nbytes} bytes exceeds the {self.limits.max_decompressed_bytes}-byte limit")
        return self._lossless(raw, Dtype.BYTES, ())

    def _lossless(self, data: memoryview, dtype: Dtype, shape: tuple[int, ...]) -> bytes:
        level = CompressionLevel.HIGH if self.level.lossy else self.level
        packing, flags, payload = Packing.STORED, 0, data
        if level is CompressionLevel.FAST:
            packing, payload = Packing.LZ4, self.codec.lz4_compress(data)
        elif level is CompressionLevel.HIGH:
            packing = Packing.DEFLATE
            if dtype is Dtype.FLOAT32:
                shuffled = self.arrays.shuffle(data, data.nbytes // 4)
                flags, payload = FLAG_SHUFFLED, self.codec.deflate(shuffled, huffman_only=True)
            else:
                payload = self.codec.deflate(data, huffman_only=False)
        if packing is not Packing.STORED and len(payload) >= data.nbytes:
            packing, flags, payload = Packing.STORED, 0, data
        header = Header(level, dtype, packing, flags, ParamDtype.NONE, 0, data.nbytes, tuple(shape))
        return encode_container(header, payload)

    def _quantized(self, raw: memoryview, shape: tuple[int, ...]) -> bytes:
        n = raw.nbytes // 4
        qz = self.arrays.quantize(raw, n, self.block_size, _LEVELS[self.level])
        if self.level is CompressionLevel.QUANTIZED4:
            packed = self.codec.deflate(qz.plain, huffman_only=True)
            packing = Packing.DEFLATE
        else:
            hi_z = self.codec.deflate(qz.high, huffman_only=True)
            packed = b"".join((_U32.pack(len(hi_z)), hi_z, qz.low))
            packing = Packing.SPLIT_DEFLATE
        if len(packed) >= len(qz.plain):
            packing, packed = Packing.STORED, qz.plain
        flags, outliers = 0, b""
        if qz.outlier_index:
            flags = FLAG_OUTLIERS
            outliers = b"".join((_U32.pack(len(qz.outlier_index) // 4), qz.outlier_index, qz.outlier_value))
        header = Header(self.level, Dtype.FLOAT32, packing, flags, qz.param_dtype, qz.block, 4 * n, tuple(shape))
        return encode_container(header, b"".join((outliers, qz.params, packed)))

    # Decoding -------------------------------------------------------------------------------
    def decompress(self, data: bytes | memoryview) -> bytes:
        """The original bytes of a container made by `compress` (refuses tensor containers)."""
        header, payload = parse_container(data, self.limits)
        if header.dtype is not Dtype.BYTES:
            raise MalformedMessage("container holds a tensor; use decompress_tensor")
        return self._lossless_payload(header, payload)

    def decompress_tensor(self, data: bytes | memoryview) -> Any:
        """The tensor: a numpy array natively, a `Float32Tensor` where the runtime has no numpy."""
        header, payload = parse_container(data, self.limits)
        if header.dtype is not Dtype.FLOAT32:
            raise MalformedMessage("container holds opaque bytes; use decompress")
        if header.level.lossy:
            raw = self._quantized_payload(header, payload)
        else:
            raw = self._lossless_payload(header, payload)
        return self.arrays.to_tensor(raw, header.shape)

    def _lossless_payload(self, h: Header, payload: memoryview) -> bytes:
        if h.packing is Packing.STORED:
            if payload.nbytes != h.raw_len:
                raise MalformedMessage(f"stored payload is {payload.nbytes} bytes, expected {h.raw_len}")
            return bytes(payload)
        if h.packing is Packing.LZ4:
            return self.codec.lz4_decompress(payload, h.raw_len, self.limits.max_decompressed_bytes)
        out = _inflate(payload, h.raw_len)
        return self.arrays.unshuffle(out, h.elements) if h.flags & FLAG_SHUFFLED else out

    def _quantized_payload(self, h: Header, payload: memoryview) -> bytes:
        if not h.flags & FLAG_OUTLIERS:
            return self._codes_payload(h, payload)
        index, value, rest = _outlier_section(payload, h.elements)
        out = bytearray(self._codes_payload(h, rest))
        values = memoryview(out).cast("f")
        for i, v in zip(index, value):
            values[i] = v
        return bytes(out)

    def _codes_payload(self, h: Header, payload: memoryview) -> bytes:
        n = h.elements
        nb = -(-n // h.block_size)
        params_len = 2 * nb * h.params.itemsize
        if payload.nbytes < params_len:
            raise MalformedMessage("payload shorter than its quantization parameters")
        params = payload[:params_len]
        body = payload[params_len:]
        levels = _LEVELS[h.level]
        if h.level is CompressionLevel.QUANTIZED4:
            plain_len = -(-n // 2)
            plain = bytes(body) if h.packing is Packing.STORED else _inflate(body, plain_len)
            if len(plain) != plain_len:
                raise MalformedMessage("Quantized4 code stream has the wrong length")
            return self.arrays.dequantize(params, h.params, n, h.block_size, levels, plain)
        if h.packing is Packing.STORED:
            if body.nbytes != n:
                raise MalformedMessage("Quantized8 code stream has the wrong length")
            return self.arrays.dequantize(params, h.params, n, h.block_size, levels, body)
        quads = -(-n // 4)
        if body.nbytes < 4:
            raise MalformedMessage("split Quantized8 stream too short")
        (hi_len,) = _U32.unpack_from(body)
        if body.nbytes != 4 + hi_len + 3 * quads:
            raise MalformedMessage("split Quantized8 stream lengths do not add up")
        hi = _inflate(body[4 : 4 + hi_len], quads)
        return self.arrays.dequantize(params, h.params, n, h.block_size, levels, hi, body[4 + hi_len :])
