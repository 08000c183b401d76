"""Pyodide providers: WebCrypto through the worker's `edgeCrypto` JS bridge.

Imported only under Pyodide (``import js`` fails elsewhere). Each batch method
is exactly one awaited crossing into JS: variable-length items are packed into
one buffer plus a little-endian uint32 length table, because per-item
conversions and awaits (~100 µs each) would dominate the cost of the crypto.
Input that cannot be valid (wrong key or signature length) is filtered here,
so the JS side never sees it and `verify_many` never raises.
"""

from __future__ import annotations

import sys
from array import array
from typing import Sequence

from pyodide.ffi import JsProxy  # type: ignore[import-not-found]

from .jsffi import js_bridge
from .jsffi import to_u8 as _u8
from .base import Clock, CryptoProvider, RandomSource, Runtime

__all__ = ["WebCryptoProvider", "browser_runtime"]

_IV_LEN = 12
_TAG_LEN = 16


def _lens(chunks: Sequence[bytes]) -> JsProxy:
    table = array("I", [len(c) for c in chunks])
    if sys.byteorder != "little":  # pragma: no cover - wasm32 is little-endian
        table.byteswap()
    return _u8(table.tobytes())


def _pair(obj: JsProxy) -> tuple[bytes, bytes]:
    return obj.private.to_bytes(), obj.public.to_bytes()


def _need(value: bytes, length: int, what: str) -> bytes:
    if not isinstance(value, (bytes, bytearray, memoryview)) or len(value) != length:
        raise ValueError(f"{what} must be {length} bytes")
    return bytes(value)


class WebCryptoProvider(CryptoProvider):
    """Ed25519, X25519, HKDF-SHA256 and AES-256-GCM from the browser's SubtleCrypto."""

    name = "webcrypto"

    def __init__(self) -> None:
        self._js = js_bridge("edgeCrypto", "web/bridges/crypto.js")

    # Ed25519 -------------------------------------------------------------
    async def ed25519_generate(self) -> tuple[bytes, bytes]:
        return _pair(await self._js.ed25519Generate())

    async def ed25519_public(self, seed: bytes) -> bytes:
        return (await self._js.ed25519Public(_u8(_need(seed, 32, "seed")))).to_bytes()

    async def sign_many(self, seed: bytes, messages: Sequence[bytes]) -> list[bytes]:
        seed = _need(seed, 32, "seed")
        if not messages:
            return []
        packed = await self._js.signMany(_u8(seed), _u8(b"".join(messages)), _lens(messages))
        sigs = packed.to_bytes()
        return [sigs[i : i + 64] for i in range(0, len(sigs), 64)]

    async def verify_many(self, items: Sequence[tuple[bytes, bytes, bytes]]) -> list[bool]:
        results = [False] * len(items)
        idx: list[int] = []
        pubs: list[bytes] = []
        sigs: list[bytes] = []
        msgs: list[bytes] = []
        for i, item in enumerate(items):
            try:
                public, message, signature = item
                if len(public) != 32 or len(signature) != 64:
                    continue
                public, message, signature = bytes(public), bytes(message), bytes(signature)
            except (TypeError, ValueError):
                continue
            idx.append(i)
            pubs.append(public)
            sigs.append(signature)
            msgs.append(message)
        if not idx:
            return results
        try:
            flags = (
                await self._js.verifyMany(_u8(b"".join(pubs)), _u8(b"".join(sigs)), _u8(b"".join(msgs)), _lens(msgs))
            ).to_bytes()
        except Exception:  # the bridge catches per item; anything else is still "does not verify"
            return results
        for i, ok in zip(idx, flags):
            results[i] = ok == 1
        return results

    # X25519 / HKDF -------------------------------------------------------
    async def x25519_generate(self) -> tuple[bytes, bytes]:
        return _pair(await self._js.x25519Generate())

    async def x25519_public(self, private: bytes) -> bytes:
        return (await self._js.x25519Public(_u8(_need(private, 32, "private key")))).to_bytes()

    async def x25519_shared(self, private: bytes, peer_public: bytes) -> bytes:
        sk = _u8(_need(private, 32, "private key"))
        pk = _u8(_need(peer_public, 32, "peer public key"))
        return (await self._js.x25519Shared(sk, pk)).to_bytes()

    async def hkdf_sha256(self, ikm: bytes, salt: bytes, info: bytes, length: int = 32) -> bytes:
        if not 0 < length <= 255 * 32:
            raise ValueError("HKDF-SHA256 output length must be 1..8160 bytes")
        return (await self._js.hkdf(_u8(bytes(ikm)), _u8(bytes(salt or b"")), _u8(bytes(info)), length)).to_bytes()

    # AES-256-GCM ---------------------------------------------------------
    async def aes_gcm_seal_many(self, key: bytes, items: Sequence[tuple[bytes, bytes, bytes]]) -> list[bytes]:
        key = _need(key, 32, "AES-256 key")
        if not items:
            return []
        ivs = [_need(iv, _IV_LEN, "iv") for iv, _, _ in items]
        pts = [bytes(pt) for _, pt, _ in items]
        aads = [bytes(aad) for _, _, aad in items]
        packed = (
            await self._js.aesGcmSealMany(_u8(key), _u8(b"".join(ivs)), _u8(b"".join(pts)), _lens(pts), _u8(b"".join(aads)), _lens(aads))
        ).to_bytes()
        out: list[bytes] = []
        off = 0
        for pt in pts:
            end = off + len(pt) + _TAG_LEN
            out.append(packed[off:end])
            off = end
        return out

    async def aes_gcm_open_many(self, key: bytes, items: Sequence[tuple[bytes, bytes, bytes]]) -> list[bytes | None]:
        key = _need(key, 32, "AES-256 key")
        results: list[bytes | None] = [None] * len(items)
        idx: list[int] = []
        ivs: list[bytes] = []
        cts: list[bytes] = []
        aads: list[bytes] = []
        for i, (iv, ct, aad) in enumerate(items):
            if len(iv) != _IV_LEN or len(ct) < _TAG_LEN:
                continue
            idx.append(i)
            ivs.append(bytes(iv))
            cts.append(bytes(ct))
            aads.append(bytes(aad))
        if not idx:
            return results
        res = await self._js.aesGcmOpenMany(
            _u8(key), _u8(b"".join(ivs)), _u8(b"".join(cts)), _lens(cts), _u8(b"".join(aads)), _lens(aads)
        )
        data = res.data.to_bytes()
        lens = array("i", res.lens.to_bytes())
        off = 0
        for i, n in zip(idx, lens):
            if n >= 0:
                results[i] = data[off : off + n]
                off += n
        return results


def browser_runtime() -> Runtime:
    return Runtime(name="pyodide", crypto=WebCryptoProvider(), clock=Clock(), random=RandomSource())
