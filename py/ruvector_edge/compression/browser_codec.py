"""Pyodide codec provider: LZ4 from npm lz4-wasm and the float32 array work in JS, behind the worker's `edgeCompression` bridge.

Imported only under Pyodide (``import js`` fails elsewhere). Numpy is not
served to the browser here, so the tensor codec's array work (byte shuffle,
block quantization) runs in JS typed arrays (web/bridges/lz4.js), which
reproduce quantize.py bit for bit: a tensor compressed in the page decodes to
the same values natively, and the other way round. Each operation is one
synchronous FFI crossing with one buffer each way; raw deflate stays in
Pyodide's zlib (the base `Codec`).

LZ4 decompression checks the block's declared size against the caller's limit
in Python (the base class) and again in JS, before lz4_flex allocates it.
"""

from __future__ import annotations

import math
import struct
from array import array
from typing import Any

import js  # type: ignore[import-not-found]
from pyodide.ffi import JsException, JsProxy  # type: ignore[import-not-found]

from ..errors import InvalidTensor, MalformedMessage, ProviderUnavailable
from ..platform.jsffi import js_bridge
from ..platform.jsffi import to_u8 as _u8
from .container import MAX_NDIM, ParamDtype
from .lz4codec import Codec
from .tensor_codec import Float32Arrays, Float32Tensor, Quantized

__all__ = ["JsFloat32Arrays", "JsLz4Codec"]

_ERRORS = {"InvalidTensor": InvalidTensor, "MalformedMessage": MalformedMessage, "ProviderUnavailable": ProviderUnavailable}
_QUANT_HEAD = struct.Struct("<8I")


def _bridge() -> JsProxy:
    return js_bridge("edgeCompression", "web/bridges/lz4.js")


class _Scratch:
    """A reused Uint8Array for inputs: filling a fresh 4 MB one costs ~2.4 ms, a reused one a copy.

    Grows (doubling) to the largest input seen and is kept. Safe because no
    bridge function holds on to its input after returning.
    """

    def __init__(self) -> None:
        self._buf = js.Uint8Array.new(1 << 16)

    def fill(self, data: bytes | bytearray | memoryview) -> JsProxy:
        n = len(data)
        if n > self._buf.length:
            self._buf = js.Uint8Array.new(1 << (n - 1).bit_length())
        view = self._buf.subarray(0, n)
        if n:
            view.assign(data)
        return view


def _call(fn: Any, *args: Any) -> bytes:
    """One crossing; a bridge error "ClassName: message" becomes that typed error (any other JS error propagates)."""
    try:
        return fn(*args).to_bytes()
    except JsException as exc:
        text = str(exc)
        for kind, error in _ERRORS.items():
            if f"{kind}: " in text:
                raise error(text.split(f"{kind}: ", 1)[1]) from None
        raise


class JsLz4Codec(Codec):
    """npm lz4-wasm (LZ4 block with a u32 size prefix, as Python's `lz4.block.compress(store_size=True)`)."""

    name = "lz4-wasm"

    def __init__(self) -> None:
        self._js = _bridge()
        self._scratch = _Scratch()

    def lz4_compress(self, data: bytes | memoryview) -> bytes:
        return _call(self._js.lz4Compress, self._scratch.fill(data))

    def _lz4_decompress(self, block: bytes | memoryview, size: int) -> bytes:
        return _call(self._js.lz4Decompress, self._scratch.fill(block), size)

    def float32_arrays(self) -> Float32Arrays:
        return JsFloat32Arrays(self._js)


def _flatten(value: Any) -> tuple[list[Any], tuple[int, ...]]:
    """Values and shape of a nested list of numbers; InvalidTensor when ragged, too deep or not numbers."""
    shape: list[int] = []
    probe = value
    while isinstance(probe, (list, tuple)):
        if len(shape) == MAX_NDIM:
            raise InvalidTensor(f"more than {MAX_NDIM} dimensions")
        shape.append(len(probe))
        if not probe:
            break
        probe = probe[0]
    level = [value]
    for depth, dim in enumerate(shape):
        nxt: list[Any] = []
        for item in level:
            if not isinstance(item, (list, tuple)) or len(item) != dim:
                raise InvalidTensor(f"ragged nested list at depth {depth}")
            nxt.extend(item)
        level = nxt
    return level, tuple(shape)


def _packed(values: list[Any]) -> bytes:
    for v in values:
        if isinstance(v, (list, tuple)) or not isinstance(v, (int, float)):
            raise InvalidTensor(f"{type(v).__name__} is not a real number")
    try:
        return array("f", values).tobytes()
    except (TypeError, OverflowError) as exc:
        raise InvalidTensor(f"not float32 values: {exc}") from None


class JsFloat32Arrays(Float32Arrays):
    """The codec's array work in JS typed arrays (web/bridges/lz4.js); tensors come back as `Float32Tensor`."""

    def __init__(self, bridge: JsProxy | None = None) -> None:
        self._js = bridge if bridge is not None else _bridge()
        self._scratch = _Scratch()
        self._scratch_low = _Scratch()

    def from_tensor(self, tensor: Any, shape: tuple[int, ...] | None) -> tuple[memoryview, tuple[int, ...]]:
        if isinstance(tensor, Float32Tensor):
            raw, dims = tensor.data, tensor.shape
        elif isinstance(tensor, JsProxy):
            try:
                raw = self._js.float32Bytes(tensor).to_bytes()
            except JsException as exc:
                raise InvalidTensor(f"not a JS array of numbers: {exc}") from None
            dims = (len(raw) // 4,)
        elif isinstance(tensor, (bytes, bytearray)):
            if len(tensor) % 4:
                raise InvalidTensor(f"{len(tensor)} bytes are not packed float32 values")
            raw, dims = bytes(tensor), (len(tensor) // 4,)
        elif isinstance(tensor, (memoryview, array)):
            view = memoryview(tensor)
            if view.format not in ("f", "<f"):
                raise InvalidTensor(f"memoryview of format {view.format!r}; pack float32 ('f') values")
            raw, dims = view.tobytes(), tuple(view.shape or ())
        elif isinstance(tensor, (list, tuple)):
            values, dims = _flatten(tensor)
            raw = _packed(values)
        elif isinstance(tensor, (int, float)):
            raw, dims = _packed([tensor]), ()
        else:
            raise InvalidTensor(f"{type(tensor).__name__} is not a tensor this runtime understands")
        if shape is not None:
            if math.prod(shape) * 4 != len(raw):
                raise InvalidTensor(f"{len(raw) // 4} values do not fill shape {shape}")
            dims = shape
        if len(dims) > MAX_NDIM:
            raise InvalidTensor(f"{len(dims)} dimensions, at most {MAX_NDIM}")
        return memoryview(raw), tuple(dims)

    def to_tensor(self, raw: bytes, shape: tuple[int, ...]) -> Float32Tensor:
        return Float32Tensor(bytes(raw), tuple(shape))

    def shuffle(self, raw: memoryview, n: int) -> bytes:
        return _call(self._js.shuffle, self._scratch.fill(raw), n)

    def unshuffle(self, data: bytes, n: int) -> bytes:
        return _call(self._js.unshuffle, self._scratch.fill(data), n)

    def quantize(self, raw: memoryview, n: int, block: int | None, levels: int) -> Quantized:
        out = _call(self._js.quantize, self._scratch.fill(raw), n, 0 if block is None else block, levels)
        pdtype, used_block, *lengths = _QUANT_HEAD.unpack_from(out)
        parts = []
        at = _QUANT_HEAD.size
        for length in lengths:
            parts.append(out[at : at + length])
            at += length
        params, plain, high, low, index, value = parts
        return Quantized(used_block, params, ParamDtype(pdtype), plain, high, low, index, value)

    def dequantize(
        self, params: memoryview, param_dtype: ParamDtype, n: int, block: int, levels: int, codes: memoryview | bytes,
        low: memoryview | None = None,
    ) -> bytes:
        return _call(
            self._js.dequantize, _u8(params), int(param_dtype), n, block, levels, self._scratch.fill(codes),
            self._scratch_low.fill(b"" if low is None else low),
        )
