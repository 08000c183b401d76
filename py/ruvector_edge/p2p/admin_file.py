"""Where a native admin keeps its state: one file, 0600, replaced atomically (as identity.py's key files).

The text is admin_store.py's signed document; this module only guards the file: no
one but the owner may read it (it holds the swarm key), a write never leaves half a
file behind, and a file too large to be a state is not read at all. A member's saved
membership (member_file.py) holds a swarm key too and is guarded the same way.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ..errors import AdminStateError, EdgeError
from .admin_store import MAX_STATE_BYTES
from .identity import IdentityManager


class AdminStateFile:
    error: type[EdgeError] = AdminStateError  # what a subclass for another secret state raises
    what = "admin state"
    max_bytes = MAX_STATE_BYTES

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    async def load(self) -> str | None:
        """The saved text, None when there is no file yet; `self.error` when it is unsafe or unreadable."""
        try:
            info = self.path.stat()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self.error(f"cannot read {self.what} {self.path}: {exc}") from None
        if os.name == "posix" and info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise self.error(f"{self.path} is accessible by group/others; run: chmod 600 {self.path}")
        if info.st_size > self.max_bytes:
            raise self.error(f"{self.path} is larger than a saved {self.what} can be ({info.st_size} bytes)")
        try:
            return self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise self.error(f"cannot read {self.what} {self.path}: {type(exc).__name__}") from None

    async def save(self, text: str) -> None:
        """Write `text` to a private temporary file, fsync it, and rename it over the state."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(tmp, flags, 0o600)
        except OSError as exc:
            raise self.error(f"cannot create {tmp}: {exc}") from None
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


async def load_or_create_identity(crypto, path: Path) -> IdentityManager:
    """The identity saved at `path`, else a new one saved there (0600) before it is used."""
    if path.exists():
        return await IdentityManager.load(crypto, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    identity = await IdentityManager.generate(crypto)
    identity.save(path)
    return identity
