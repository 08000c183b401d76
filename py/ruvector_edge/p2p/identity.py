"""An agent's long-term keys: Ed25519 to sign, X25519 to agree on session keys."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Sequence

from ..errors import IdentityFileError
from ..platform.base import Clock, CryptoProvider
from .keys import derive_session_key
from .records import Heartbeat, Registration

_FILE_VERSION = 1


def fingerprint(public_key: bytes) -> str:
    """A short, human-comparable name of a public key: 16 bytes of its SHA-256 in groups of 4 hex digits."""
    digest = hashlib.sha256(public_key).hexdigest()[:32]
    return ":".join(digest[i : i + 4] for i in range(0, 32, 4))


class IdentityManager:
    """Holds the private keys; everything else sees only what it signs."""

    def __init__(
        self, crypto: CryptoProvider, ed25519_seed: bytes, ed25519_public: bytes, x25519_private: bytes, x25519_public: bytes
    ) -> None:
        self.crypto = crypto
        self._seed = ed25519_seed
        self.ed25519_public = ed25519_public
        self._x25519_private = x25519_private
        self.x25519_public = x25519_public

    def __repr__(self) -> str:
        return f"IdentityManager(fingerprint={self.fingerprint!r})"

    @classmethod
    async def generate(cls, crypto: CryptoProvider) -> "IdentityManager":
        seed, public = await crypto.ed25519_generate()
        x_private, x_public = await crypto.x25519_generate()
        return cls(crypto, seed, public, x_private, x_public)

    @classmethod
    async def from_secrets(cls, crypto: CryptoProvider, ed25519_seed: bytes, x25519_private: bytes) -> "IdentityManager":
        if len(ed25519_seed) != 32 or len(x25519_private) != 32:
            raise IdentityFileError("identity secrets must be 32 bytes each")
        return cls(
            crypto,
            ed25519_seed,
            await crypto.ed25519_public(ed25519_seed),
            x25519_private,
            await crypto.x25519_public(x25519_private),
        )

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.ed25519_public)

    async def sign_many(self, messages: Sequence[bytes]) -> list[bytes]:
        return await self.crypto.sign_many(self._seed, messages)

    async def sign(self, message: bytes) -> bytes:
        return (await self.sign_many([message]))[0]

    async def session_key(self, peer_x25519_public: bytes, swarm_id: str) -> bytes:
        """The symmetric key both sides of a direct channel derive (see keys.derive_session_key)."""
        return await derive_session_key(
            self.crypto, self._x25519_private, self.x25519_public, peer_x25519_public, swarm_id
        )

    async def create_registration(
        self, agent_id: str, capabilities: Sequence[str], *, swarm: str, clock: Clock | None = None
    ) -> Registration:
        unsigned = Registration(
            swarm=swarm,
            agent_id=agent_id,
            ed25519_pubkey=self.ed25519_public,
            x25519_pubkey=self.x25519_public,
            capabilities=tuple(capabilities),
            joined_at=(clock or Clock()).now_ms(),
        )
        return Registration(**{**unsigned.__dict__, "sig": await self.sign(unsigned.signing_bytes())})

    async def create_heartbeat(
        self, agent_id: str, *, swarm: str, seq: int, timestamp: int, load: float, queue_depth: int
    ) -> Heartbeat:
        unsigned = Heartbeat(
            swarm=swarm, agent_id=agent_id, seq=seq, timestamp=timestamp, load=load, queue_depth=queue_depth
        )
        return Heartbeat(**{**unsigned.__dict__, "sig": await self.sign(unsigned.signing_bytes())})

    # Persistence -----------------------------------------------------------
    def to_secret_json(self) -> str:
        return json.dumps(
            {
                "version": _FILE_VERSION,
                "ed25519_seed": base64.b64encode(self._seed).decode(),
                "x25519_private": base64.b64encode(self._x25519_private).decode(),
            }
        )

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the secrets atomically to a file only the owner can read or write (0600)."""
        target = Path(path)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(tmp, flags, 0o600)
        except OSError as exc:
            raise IdentityFileError(f"cannot create {tmp}: {exc}") from exc
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(self.to_secret_json())
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    @classmethod
    async def load(cls, crypto: CryptoProvider, path: str | os.PathLike[str]) -> "IdentityManager":
        """Read an identity saved by `save`, refusing files that others could read."""
        target = Path(path)
        try:
            info = target.stat()
            if os.name == "posix" and info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise IdentityFileError(f"{target} is accessible by group/others; run: chmod 600 {target}")
            raw = target.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise IdentityFileError(f"cannot read identity {target}: {exc}") from exc
        try:
            doc = json.loads(raw)
            if doc.get("version") != _FILE_VERSION:
                raise IdentityFileError(f"unsupported identity file version {doc.get('version')!r}")
            seed = base64.b64decode(doc["ed25519_seed"], validate=True)
            x_private = base64.b64decode(doc["x25519_private"], validate=True)
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
            raise IdentityFileError(f"malformed identity file {target}: {exc}") from exc
        return await cls.from_secrets(crypto, seed, x_private)
