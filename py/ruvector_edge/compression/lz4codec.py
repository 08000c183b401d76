"""The `Codec` provider seam: LZ4 *block* format with a 4-byte little-endian size prefix.

That is the one LZ4 wire format both runtimes speak at speed: natively the `lz4`
package (`lz4.block.compress(x, store_size=True)`), in the browser npm
`lz4-wasm` through the FFI (it reads and writes exactly this, and refuses LZ4
*frames*). The size prefix is read and checked against the caller's limit here,
before any output is allocated, so a four-byte lie cannot make us allocate
gigabytes.
"""

from __future__ import annotations

import abc
import struct

from ..errors import MalformedMessage, OversizedMessage, ProviderUnavailable

__all__ = ["Codec", "NativeLz4Codec", "lz4_declared_size"]

_PREFIX = struct.Struct("<I")


def lz4_declared_size(block: bytes | memoryview) -> int:
    """The decompressed size an LZ4 block claims in its 4-byte little-endian prefix."""
    if len(block) < _PREFIX.size:
        raise MalformedMessage("LZ4 block shorter than its size prefix")
    return _PREFIX.unpack_from(block)[0]


class Codec(abc.ABC):
    """LZ4 block compression; one implementation per runtime."""

    name: str = "abstract"

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

    def __init__(self) -> None:
        try:
            import lz4.block as block
        except ImportError as exc:  # pragma: no cover - exercised only without the [native] extra
            raise ProviderUnavailable("LZ4 needs the 'native' extra: pip install 'ruvector-edge[native]'") from exc
        self._block = block

    def lz4_compress(self, data: bytes | memoryview) -> bytes:
        return self._block.compress(data, store_size=True)

    def _lz4_decompress(self, block: bytes | memoryview, size: int) -> bytes:
        try:
            return self._block.decompress(block)
        except self._block.LZ4BlockError as exc:
            raise MalformedMessage(f"corrupt LZ4 block: {exc}") from None
