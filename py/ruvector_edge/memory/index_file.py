"""The ANN index file beside a memory store: a cache that is authenticated before anything reads it.

An HNSW graph over 100K memories takes tens of seconds to build and a fraction
of a second to load, so it is saved when a memory closes and loaded when it
opens. It is only a cache: the store (SQLite) stays the source of truth, and a
missing, stale or rejected file means a rebuild from the store, never an error
the agent sees.

The graph library's loader parses raw offsets and counts and was not written
for hostile input, so nothing of the file reaches it until an HMAC-SHA256 over
the whole file checks out under a key that lives *in the store* (written once,
at random). Whoever can forge that MAC can already rewrite the memories
themselves; anyone else — another process dropping a file beside the store, a
file copied from another store, a torn write — gets `IndexFileRejected`.
Writes go to a temporary file that is fsynced and renamed over the old one, so
a crash leaves the old file or the new one, never half of either.

Layout: magic (8) | header length (u32 LE) | header (UTF-8 JSON object) |
payload | HMAC-SHA256 of everything before it (32).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import struct
from dataclasses import dataclass
from typing import Any

from ..errors import IndexFileRejected

__all__ = ["MAX_INDEX_FILE_BYTES", "IndexFile"]

_MAGIC = b"RVXIDX01"
_MAC_BYTES = 32
_MAX_HEADER_BYTES = 64 * 1024 * 1024
MAX_INDEX_FILE_BYTES = 16 * 1024 * 1024 * 1024


@dataclass(frozen=True)
class IndexFile:
    """Where one store's index lives and the key that authenticates it."""

    path: str
    secret: bytes

    def __post_init__(self) -> None:
        if len(self.secret) < 16:
            raise ValueError("the index key must be at least 16 bytes")

    def read(self) -> tuple[dict[str, Any], memoryview] | None:
        """(header, payload) of an authentic file; None when there is none.

        Raises IndexFileRejected (and reads nothing further) for a file that is
        too short or too large, has the wrong magic or MAC, or a header that is
        not a JSON object.
        """
        try:
            with open(self.path, "rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                if size > MAX_INDEX_FILE_BYTES:
                    raise IndexFileRejected(f"{self.path}: {size} bytes exceeds {MAX_INDEX_FILE_BYTES}")
                data = handle.read(MAX_INDEX_FILE_BYTES + 1)
        except FileNotFoundError:
            return None
        if len(data) < len(_MAGIC) + 4 + _MAC_BYTES or not data.startswith(_MAGIC):
            raise IndexFileRejected(f"{self.path}: not an index file")
        body = memoryview(data)[:-_MAC_BYTES]
        if not hmac.compare_digest(hmac.new(self.secret, body, hashlib.sha256).digest(), data[-_MAC_BYTES:]):
            raise IndexFileRejected(f"{self.path}: authentication failed (another store's file, or altered)")
        (header_len,) = struct.unpack_from("<I", data, len(_MAGIC))
        start = len(_MAGIC) + 4
        if header_len > min(_MAX_HEADER_BYTES, len(body) - start):
            raise IndexFileRejected(f"{self.path}: header length out of range")
        try:
            header = json.loads(bytes(body[start : start + header_len]))
        except (UnicodeDecodeError, ValueError) as exc:
            raise IndexFileRejected(f"{self.path}: header is not JSON") from exc
        if not isinstance(header, dict):
            raise IndexFileRejected(f"{self.path}: header is not a JSON object")
        return header, body[start + header_len :]

    def write(self, header: dict[str, Any], payload: bytes | memoryview) -> None:
        """Replace the file atomically (temporary file, fsync, rename)."""
        head = json.dumps(header, separators=(",", ":")).encode()
        if len(head) > _MAX_HEADER_BYTES:
            raise ValueError("index header too large")
        prefix = _MAGIC + struct.pack("<I", len(head)) + head
        mac = hmac.new(self.secret, prefix, hashlib.sha256)
        mac.update(payload)
        temporary = f"{self.path}.tmp{os.getpid()}"
        try:
            with open(temporary, "wb") as handle:
                handle.write(prefix)
                handle.write(payload)
                handle.write(mac.digest())
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            try:
                os.unlink(temporary)
            except FileNotFoundError:
                pass
            raise

    def discard(self) -> None:
        """Remove the file (nothing to keep: the memory is below the size an index is built at)."""
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
