"""Provider interfaces: what the core needs from a runtime, and nothing more.

The core never asks "am I in a browser?"; it is handed a `Runtime` whose
providers already know. Crypto calls are coroutines because WebCrypto is
promise-only, and batch-first because in Pyodide each crossing into JS costs
about 100 µs: `sign_many` over 500 messages is one crossing, not 500.
"""

from __future__ import annotations

import abc
import os
import time
from dataclasses import dataclass
from typing import Sequence


class CryptoProvider(abc.ABC):
    """Ed25519, X25519, HKDF-SHA256 and AES-256-GCM, batch-first."""

    name: str = "abstract"

    # Ed25519 -------------------------------------------------------------
    @abc.abstractmethod
    async def ed25519_generate(self) -> tuple[bytes, bytes]:
        """A fresh (32-byte seed, 32-byte public key)."""

    @abc.abstractmethod
    async def ed25519_public(self, seed: bytes) -> bytes:
        """The public key of a 32-byte seed (RFC 8032 secret key)."""

    @abc.abstractmethod
    async def sign_many(self, seed: bytes, messages: Sequence[bytes]) -> list[bytes]:
        """64-byte signatures of each message under one key."""

    @abc.abstractmethod
    async def verify_many(self, items: Sequence[tuple[bytes, bytes, bytes]]) -> list[bool]:
        """For each (public key, message, signature): does it verify? Never raises on bad input."""

    # X25519 / HKDF -------------------------------------------------------
    @abc.abstractmethod
    async def x25519_generate(self) -> tuple[bytes, bytes]:
        """A fresh (32-byte private scalar, 32-byte public key)."""

    @abc.abstractmethod
    async def x25519_public(self, private: bytes) -> bytes:
        """The public key of a 32-byte private scalar."""

    @abc.abstractmethod
    async def x25519_shared(self, private: bytes, peer_public: bytes) -> bytes:
        """The raw 32-byte shared secret (RFC 7748); callers reject all-zero output."""

    @abc.abstractmethod
    async def hkdf_sha256(self, ikm: bytes, salt: bytes, info: bytes, length: int = 32) -> bytes:
        """RFC 5869 HKDF with SHA-256."""

    # AES-256-GCM ---------------------------------------------------------
    @abc.abstractmethod
    async def aes_gcm_seal_many(self, key: bytes, items: Sequence[tuple[bytes, bytes, bytes]]) -> list[bytes]:
        """For each (12-byte iv, plaintext, aad): ciphertext with the 16-byte tag appended."""

    @abc.abstractmethod
    async def aes_gcm_open_many(self, key: bytes, items: Sequence[tuple[bytes, bytes, bytes]]) -> list[bytes | None]:
        """For each (iv, ciphertext+tag, aad): the plaintext, or None when authentication fails."""

    # Single-item conveniences, defined once over the batch calls ---------
    async def sign(self, seed: bytes, message: bytes) -> bytes:
        return (await self.sign_many(seed, [message]))[0]

    async def verify(self, public: bytes, message: bytes, signature: bytes) -> bool:
        return (await self.verify_many([(public, message, signature)]))[0]

    async def aes_gcm_seal(self, key: bytes, iv: bytes, plaintext: bytes, aad: bytes) -> bytes:
        return (await self.aes_gcm_seal_many(key, [(iv, plaintext, aad)]))[0]

    async def aes_gcm_open(self, key: bytes, iv: bytes, ciphertext: bytes, aad: bytes) -> bytes | None:
        return (await self.aes_gcm_open_many(key, [(iv, ciphertext, aad)]))[0]


class Clock:
    """Wall-clock milliseconds; replaced by a fake clock in tests."""

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


class FakeClock(Clock):
    """A clock that moves only when told to, for deterministic tests."""

    def __init__(self, start_ms: int = 1_800_000_000_000) -> None:
        self._now = start_ms

    def now_ms(self) -> int:
        return self._now

    def advance(self, ms: int) -> None:
        self._now += ms

    def set(self, ms: int) -> None:
        self._now = ms


class RandomSource:
    """Cryptographically secure random bytes (os.urandom is getRandomValues under Pyodide)."""

    def token_bytes(self, n: int) -> bytes:
        return os.urandom(n)


@dataclass(frozen=True)
class Runtime:
    """The providers chosen once at start-up for this process or worker."""

    name: str
    crypto: CryptoProvider
    clock: Clock
    random: RandomSource
