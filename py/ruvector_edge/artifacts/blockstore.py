"""Where verified blocks live: a bounded in-memory LRU (by bytes) and a content-addressed directory.

Stores only keep bytes under their CID text; hashing is the artifact store's
job, done on every read, so a block rotted on disk or corrupted in memory is
caught where it is used.
"""

from __future__ import annotations

import abc
import os
import tempfile
from collections import OrderedDict
from pathlib import Path

from ..errors import InvalidCodecConfig
from .cid import parse_cid

__all__ = ["BlockStore", "LruBlockCache", "DiskBlockStore"]


class BlockStore(abc.ABC):
    @abc.abstractmethod
    def get(self, cid: str) -> bytes | None: ...

    @abc.abstractmethod
    def put(self, cid: str, data: bytes) -> None: ...

    @abc.abstractmethod
    def has(self, cid: str) -> bool: ...

    @abc.abstractmethod
    def discard(self, cid: str) -> None: ...


class LruBlockCache(BlockStore):
    """At most `max_bytes` of block data, shared fairly between the owners that put blocks in.

    Each block is held for an owner (the member that delivered it; "" for this agent's own).
    When full, room is taken from the owner holding the most bytes (ties: the owner putting,
    then the greater name), its least recently used block first. So a member flooding blocks
    displaces only its own once it holds the most, and every owner keeps min(what it put, its
    fair share). `over_share` counts the blocks owners lost while putting more than their share.
    """

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise InvalidCodecConfig("cache size must be non-negative")
        self.max_bytes = max_bytes
        self.nbytes = 0
        self.over_share = 0
        self._blocks: dict[str, tuple[bytes, str]] = {}
        self._lru: dict[str, OrderedDict[str, None]] = {}  # owner -> its blocks, least recently used first
        self._held: dict[str, int] = {}  # owner -> bytes

    def __len__(self) -> int:
        return len(self._blocks)

    def get(self, cid: str) -> bytes | None:
        held = self._blocks.get(cid)
        if held is None:
            return None
        self._lru[held[1]].move_to_end(cid)
        return held[0]

    def put(self, cid: str, data: bytes, owner: str = "") -> None:
        if len(data) > self.max_bytes:
            return
        self.discard(cid)
        while self.nbytes + len(data) > self.max_bytes:
            victim = max(self._held, key=lambda o: (self._held[o], o == owner, o))
            self.over_share += victim == owner
            self.discard(next(iter(self._lru[victim])))
        self._blocks[cid] = (data, owner)
        self._lru.setdefault(owner, OrderedDict())[cid] = None
        self._held[owner] = self._held.get(owner, 0) + len(data)
        self.nbytes += len(data)

    def held_by(self, owner: str) -> int:
        """Bytes held for `owner`."""
        return self._held.get(owner, 0)

    def has(self, cid: str) -> bool:
        return cid in self._blocks

    def discard(self, cid: str) -> None:
        held = self._blocks.pop(cid, None)
        if held is None:
            return
        data, owner = held
        self.nbytes -= len(data)
        del self._lru[owner][cid]
        self._held[owner] -= len(data)
        if not self._lru[owner]:
            del self._lru[owner], self._held[owner]


class DiskBlockStore(BlockStore):
    """One file per block, `root/<last two CID characters>/<cid>`, written atomically (temp file, fsync, rename)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, cid: str) -> Path:
        parse_cid(cid)  # a CID's alphabet is [a-z2-7]: no separators, no "..", so never a path escape
        return self.root / cid[-2:] / cid

    def get(self, cid: str) -> bytes | None:
        try:
            return self._path(cid).read_bytes()
        except FileNotFoundError:
            return None

    def put(self, cid: str, data: bytes) -> None:
        path = self._path(cid)
        if path.exists():
            return
        path.parent.mkdir(exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def has(self, cid: str) -> bool:
        return self._path(cid).exists()

    def discard(self, cid: str) -> None:
        self._path(cid).unlink(missing_ok=True)
