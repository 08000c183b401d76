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

The library saves and loads by path only, so the file is first copied into a
private scratch file (an anonymous memfd where Linux has one): the MAC is
checked on that copy and the library reads that copy, so the bytes it loads are
the ones that were checked, whatever happens to the file meanwhile. The graph
comes first in the file so the scratch copy is cut to it in place — one copy of
~180 MB at 100K memories, not three. Writes go to a temporary file that is
fsynced and renamed over the old one, so a crash leaves the old file or the new
one, never half of either.

Layout: graph | header (UTF-8 JSON object) | header length (u32 LE) |
graph length (u64 LE) | magic (8) | HMAC-SHA256 of everything before it (32).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import mmap
import os
import struct
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ..errors import IndexFileRejected

__all__ = ["MAX_INDEX_FILE_BYTES", "IndexFile"]

_MAGIC = b"RVXIDX02"
_TRAILER = struct.Struct("<IQ8s")  # header length, graph length, magic
_MAC_BYTES = 32
_MAX_HEADER_BYTES = 64 * 1024 * 1024
MAX_INDEX_FILE_BYTES = 16 * 1024 * 1024 * 1024
_COPY_CHUNK = 64 * 1024 * 1024


@contextlib.contextmanager
def _scratch() -> Iterator[tuple[str, int]]:
    """(path, fd) of an empty private file that vanishes on exit."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("ruvector-index")
        try:
            yield f"/proc/self/fd/{fd}", fd
        finally:
            os.close(fd)
        return
    with tempfile.TemporaryDirectory() as directory:  # 0700: nobody else can swap it
        path = os.path.join(directory, "graph")
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            yield path, fd
        finally:
            os.close(fd)


def _copy(source: int, target: int, count: int) -> None:
    """`count` bytes from the current offset of `source` to that of `target`, in the kernel where it can."""
    left = count
    while left > 0:
        try:
            sent = os.sendfile(target, source, None, min(left, _COPY_CHUNK))
        except OSError:  # no sendfile between these two: through a buffer
            sent = os.write(target, os.read(source, min(left, _COPY_CHUNK)))
        if sent == 0:
            raise IndexFileRejected("index file shrank while it was read")
        left -= sent


def _mac(secret: bytes, fd: int, size: int) -> bytes:
    digest = hmac.new(secret, digestmod=hashlib.sha256)
    if size:
        with mmap.mmap(fd, size, prot=mmap.PROT_READ) as view:
            digest.update(view)
    return digest.digest()


@dataclass(frozen=True)
class IndexFile:
    """Where one store's index lives and the key that authenticates it."""

    path: str
    secret: bytes

    def __post_init__(self) -> None:
        if len(self.secret) < 16:
            raise ValueError("the index key must be at least 16 bytes")

    @contextlib.contextmanager
    def read(self) -> Iterator[tuple[dict[str, Any], str] | None]:
        """Within the block: (header, path of the authenticated graph bytes), or None when there is no file.

        Raises IndexFileRejected, with nothing passed on, for a file that is too
        short or too large, has the wrong magic or MAC, or a header that is not
        a JSON object.
        """
        try:
            source = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            yield None
            return
        with _scratch() as (path, fd):
            try:
                size = os.fstat(source).st_size
                if size > MAX_INDEX_FILE_BYTES:
                    raise IndexFileRejected(f"{self.path}: {size} bytes exceeds {MAX_INDEX_FILE_BYTES}")
                _copy(source, fd, size)
            finally:
                os.close(source)
            body = size - _MAC_BYTES
            if body < _TRAILER.size:
                raise IndexFileRejected(f"{self.path}: not an index file")
            if not hmac.compare_digest(_mac(self.secret, fd, body), os.pread(fd, _MAC_BYTES, body)):
                raise IndexFileRejected(f"{self.path}: authentication failed (another store's file, or altered)")
            header_len, graph_len, magic = _TRAILER.unpack(os.pread(fd, _TRAILER.size, body - _TRAILER.size))
            if magic != _MAGIC or header_len > _MAX_HEADER_BYTES or header_len + graph_len != body - _TRAILER.size:
                raise IndexFileRejected(f"{self.path}: not an index file of this version")
            try:
                header = json.loads(os.pread(fd, header_len, graph_len))
            except (UnicodeDecodeError, ValueError) as exc:
                raise IndexFileRejected(f"{self.path}: header is not JSON") from exc
            if not isinstance(header, dict):
                raise IndexFileRejected(f"{self.path}: header is not a JSON object")
            os.ftruncate(fd, graph_len)
            yield header, path

    def write(self, header: dict[str, Any], save: Callable[[str], None]) -> None:
        """Replace the file atomically with the graph `save(path)` writes and `header`."""
        head = json.dumps(header, separators=(",", ":")).encode()
        if len(head) > _MAX_HEADER_BYTES:
            raise ValueError("index header too large")
        temporary = f"{self.path}.tmp{os.getpid()}"
        with _scratch() as (path, fd):
            save(path)
            graph_len = os.fstat(fd).st_size
            tail = head + _TRAILER.pack(len(head), graph_len, _MAGIC)
            digest = hmac.new(self.secret, digestmod=hashlib.sha256)
            if graph_len:
                with mmap.mmap(fd, graph_len, prot=mmap.PROT_READ) as view:
                    digest.update(view)
            digest.update(tail)
            try:
                out = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                try:
                    os.lseek(fd, 0, os.SEEK_SET)
                    _copy(fd, out, graph_len)
                    with open(out, "wb", closefd=False) as handle:
                        handle.write(tail + digest.digest())
                    os.fsync(out)
                finally:
                    os.close(out)
                os.replace(temporary, self.path)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temporary)
                raise

    def discard(self) -> None:
        """Remove the file (nothing to keep: the memory is below the size an index is built at)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
