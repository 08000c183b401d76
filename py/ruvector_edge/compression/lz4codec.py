"""The `Codec` provider seam: LZ4 *block* format with a 4-byte little-endian size prefix, and raw deflate.

That is the one LZ4 wire format both runtimes speak at speed: natively the `lz4`
package (`lz4.block.compress(x, store_size=True)`), in the browser npm
`lz4-wasm` through the FFI (it reads and writes exactly this, and refuses LZ4
*frames*). The size prefix is read and checked against the caller's limit here,
before any output is allocated, so a four-byte lie cannot make us allocate
gigabytes.

Raw deflate is stdlib zlib everywhere (Pyodide has it); the native provider
only adds parallelism: Huffman-only deflate has no back-references, so pieces
compressed on separate threads, every piece but the last ended with a full
flush (byte-aligned, not final), concatenate into one valid deflate stream, the
way pigz does. The bytes differ from a single-threaded run; what they decode
to does not.
"""

from __future__ import annotations

import abc
import os
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..errors import MalformedMessage, OversizedMessage, ProviderUnavailable

__all__ = ["Codec", "NativeLz4Codec", "deflate_raw", "lz4_declared_size"]

_PREFIX = struct.Struct("<I")


def lz4_declared_size(block: bytes | memoryview) -> int:
    """The decompressed size an LZ4 block claims in its 4-byte little-endian prefix."""
    if len(block) < _PREFIX.size:
        raise MalformedMessage("LZ4 block shorter than its size prefix")
    return _PREFIX.unpack_from(block)[0]


def deflate_raw(data: bytes | memoryview, *, huffman_only: bool, final: bool = True, zlib_module: Any = zlib) -> bytes:
    """`zlib_module` is stdlib zlib or a drop-in with the same API (zlib-ng natively)."""
    zm = zlib_module
    if huffman_only:
        z = zm.compressobj(1, zm.DEFLATED, -15, 9, zm.Z_HUFFMAN_ONLY)
    else:
        z = zm.compressobj(6, zm.DEFLATED, -15)
    return z.compress(data) + z.flush(zm.Z_FINISH if final else zm.Z_FULL_FLUSH)


class Codec(abc.ABC):
    """LZ4 block compression and raw deflate; one implementation per runtime."""

    name: str = "abstract"

    def deflate(self, data: bytes | memoryview, *, huffman_only: bool) -> bytes:
        """One raw deflate stream (RFC 1951), Huffman coding only or level 6."""
        return deflate_raw(data, huffman_only=huffman_only)

    def float32_arrays(self):
        """The tensor codec's array work for this runtime (numpy unless a runtime's codec brings its own)."""
        from .quantize import NumpyFloat32Arrays

        return NumpyFloat32Arrays()

    @abc.abstractmethod
    def lz4_compress(self, data: bytes | memoryview) -> bytes:
        """LZ4 block of `data`, prefixed with its length as u32 little-endian."""

    @abc.abstractmethod
    def _lz4_decompress(self, block: bytes | memoryview, size: int) -> bytes:
        """Decompress a prefixed block whose prefix was already checked to equal `size`."""

    def lz4_decompress(self, block: bytes | memoryview, expected_size: int, max_size: int) -> bytes:
        """Exactly `expected_size` bytes or a typed error; the prefix is checked before decompressing."""
        declared = lz4_declared_size(block)
        if declared > max_size:
            raise OversizedMessage(f"LZ4 block declares {declared} bytes, limit {max_size}")
        if declared != expected_size:
            raise MalformedMessage(f"LZ4 block declares {declared} bytes, container says {expected_size}")
        out = self._lz4_decompress(block, declared)
        if len(out) != expected_size:
            raise MalformedMessage(f"LZ4 block inflated to {len(out)} bytes, expected {expected_size}")
        return out


class NativeLz4Codec(Codec):
    """CPython: the `lz4` package (liblz4)."""

    name = "native-lz4"
    _pool: ThreadPoolExecutor | None = None
    PARALLEL_MIN_BYTES = 1 << 17

    def __init__(self, threads: int | None = None) -> None:
        self.threads = max(1, min(4, os.cpu_count() or 1) if threads is None else threads)
        try:
            import lz4.block as block
        except ImportError as exc:  # pragma: no cover - an environment installed without the wheel's dependencies
            raise ProviderUnavailable("LZ4 needs the lz4 package: pip install lz4") from exc
        self._block = block
        try:  # zlib-ng (a dependency natively) Huffman-codes ~1.8x faster than stdlib zlib; the streams are the same deflate
            from zlib_ng import zlib_ng as zlib_module
        except ImportError:  # pragma: no cover - an environment installed without zlib-ng
            zlib_module = zlib
        self._zlib = zlib_module

    def lz4_compress(self, data: bytes | memoryview) -> bytes:
        return self._block.compress(data, store_size=True)

    def deflate(self, data: bytes | memoryview, *, huffman_only: bool) -> bytes:
        if not huffman_only or self.threads == 1 or len(data) < self.PARALLEL_MIN_BYTES:
            return deflate_raw(data, huffman_only=huffman_only, zlib_module=self._zlib)
        if NativeLz4Codec._pool is None:
            NativeLz4Codec._pool = ThreadPoolExecutor(4, thread_name_prefix="deflate")
        view = memoryview(data).cast("B")
        step = -(-len(view) // self.threads)
        pieces = [view[i : i + step] for i in range(0, len(view), step)]
        last = len(pieces) - 1
        jobs = [
            NativeLz4Codec._pool.submit(deflate_raw, piece, huffman_only=True, final=i == last, zlib_module=self._zlib)
            for i, piece in enumerate(pieces)
        ]
        return b"".join(job.result() for job in jobs)

    def _lz4_decompress(self, block: bytes | memoryview, size: int) -> bytes:
        try:
            return self._block.decompress(block)
        except self._block.LZ4BlockError as exc:
            raise MalformedMessage(f"corrupt LZ4 block: {exc}") from None
