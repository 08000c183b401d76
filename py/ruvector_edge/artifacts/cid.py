"""CIDv1 text form: multibase base32 (lowercase, 'b' prefix), version 1, a multicodec, a sha2-256 multihash.

Real CIDs, so an id means the same thing to any IPFS/multiformats tool: the raw
CIDv1 of b"hello world" here is the one `ipfs add --cid-version 1 --raw-leaves`
prints. Chunks use the raw codec (0x55); manifests of chunked artifacts are
canonical JSON under the json codec (0x0200) - plain JSON holding CID strings,
not dag-json links, so we claim no IPLD semantics we don't implement.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass

from ..errors import InvalidCid

__all__ = ["RAW", "JSON", "Cid", "cid_for", "parse_cid"]

RAW = 0x55
JSON = 0x0200
_SHA2_256 = 0x12
_CODECS = frozenset({RAW, JSON})
_TEXT = re.compile(r"b[a-z2-7]{1,200}")


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    for i in range(pos, min(pos + 9, len(data))):
        byte = data[i]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            if byte == 0 and i > pos:
                raise InvalidCid("varint is not minimally encoded")
            return value, i + 1
        shift += 7
    raise InvalidCid("truncated or overlong varint")


@dataclass(frozen=True)
class Cid:
    codec: int
    digest: bytes

    def __str__(self) -> str:
        binary = _varint(1) + _varint(self.codec) + bytes([_SHA2_256, 32]) + self.digest
        return "b" + base64.b32encode(binary).decode("ascii").rstrip("=").lower()

    def matches(self, data: bytes | memoryview) -> bool:
        return hashlib.sha256(data).digest() == self.digest


def cid_for(data: bytes | memoryview, codec: int = RAW) -> str:
    return str(Cid(codec, hashlib.sha256(data).digest()))


def parse_cid(text: object) -> Cid:
    """Strictly parse the text form; the canonical encoding only (re-encoding gives the same text)."""
    if type(text) is not str or not _TEXT.fullmatch(text):
        raise InvalidCid(f"not a base32 CIDv1: {text!r:.80}")
    body = text[1:].upper()
    try:
        binary = base64.b32decode(body + "=" * (-len(body) % 8))
    except ValueError:
        raise InvalidCid("bad base32") from None
    version, pos = _read_varint(binary, 0)
    codec, pos = _read_varint(binary, pos)
    if version != 1 or codec not in _CODECS:
        raise InvalidCid(f"unsupported CID version {version} or codec {codec:#x}")
    if binary[pos : pos + 2] != bytes([_SHA2_256, 32]) or len(binary) != pos + 34:
        raise InvalidCid("multihash must be sha2-256 with a 32-byte digest")
    cid = Cid(codec, binary[pos + 2 :])
    if str(cid) != text:
        raise InvalidCid("non-canonical CID text")
    return cid
