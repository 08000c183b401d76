"""The pattern-state wire format: framing, bounds and the string table.

A state travels as::

    outer  "RVIS" | u8 format (1) | u8 flags (0) | u32 raw length | zlib stream
    raw    u32 strings | u32 blob bytes | u32 entries | u32 reserved (0)
           f64 q[n] | u64 version[n] | u64 last_update[n]          (8-byte aligned)
           u32 state[n] | u32 action[n] | u32 origin[n] | u32 visits[n]
           blob: the strings, UTF-8, joined by NUL

all little-endian. The encoding is canonical: the string table is sorted and
holds exactly the strings the entries use, entries are sorted by
(state, action, origin) and unique. Two replicas holding the same state
therefore send the same bytes, and a decoder can reject duplicates and padding
outright instead of deciding which copy wins.

Everything the sender claims about sizes is checked against the limits before
anything is allocated: the raw length before inflating (inflating is capped at
that length, so a zlib bomb stops at the limit), the counts before the columns
are read. Column decoding and validation belong to the table kernel, which
reads them as numpy arrays or as `array.array`s.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from ..errors import MalformedMessage, OversizedMessage

MAGIC = b"RVIS"
FORMAT = 1
OUTER = struct.Struct("<4sBBI")
HEADER = struct.Struct("<IIII")
ENTRY_BYTES = 8 + 8 + 8 + 4 + 4 + 4 + 4
MAX_VISITS = 0xFFFF_FFFF
MAX_ABS_Q = 1e100
"""|q| bound: a weighted sum of at most 2**32 table entries of q * (visits < 2**32) stays finite,
so no member can make a swarm value (or the page showing it) overflow to inf."""
MAX_INT63 = (1 << 63) - 1
ID_BITS = 21
"""A table interns at most 2**21 strings, so (state, action, origin) packs into one int64."""


@dataclass(frozen=True)
class Limits:
    """Bounds on one received state and on the table it is merged into."""

    max_message_bytes: int = 32 << 20
    max_decompressed_bytes: int = 64 << 20
    max_entries: int = 1_000_000
    max_string_chars: int = 256
    max_table_entries: int = 4_000_000
    max_table_strings: int = 1 << ID_BITS


@dataclass(frozen=True)
class Layout:
    """Where each column of a raw (inflated) state lives."""

    n_strings: int
    n_entries: int
    q: int
    version: int
    last_update: int
    state: int
    action: int
    origin: int
    visits: int
    blob: int
    blob_len: int


def layout(n_strings: int, n_entries: int, blob_len: int) -> Layout:
    n = n_entries
    q = HEADER.size
    return Layout(
        n_strings=n_strings,
        n_entries=n,
        q=q,
        version=q + 8 * n,
        last_update=q + 16 * n,
        state=q + 24 * n,
        action=q + 28 * n,
        origin=q + 32 * n,
        visits=q + 36 * n,
        blob=q + ENTRY_BYTES * n,
        blob_len=blob_len,
    )


def frame(strings: list[str], columns: bytes, n_entries: int, level: int = 1) -> bytes:
    """Assemble and compress a raw state from a sorted string table and packed columns."""
    blob = "\x00".join(strings).encode("utf-8")
    raw = HEADER.pack(len(strings), len(blob), n_entries, 0) + columns + blob
    return OUTER.pack(MAGIC, FORMAT, 0, len(raw)) + zlib.compress(raw, level)


def inflate(data: bytes, limits: Limits) -> bytes:
    """The raw state inside a frame, inflated no further than its declared (and allowed) length."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise MalformedMessage("a pattern state must be bytes")
    if len(data) > limits.max_message_bytes:
        raise OversizedMessage(f"pattern state of {len(data)} bytes exceeds {limits.max_message_bytes}")
    if len(data) < OUTER.size:
        raise MalformedMessage("pattern state shorter than its header")
    magic, fmt, flags, raw_len = OUTER.unpack_from(data, 0)
    if magic != MAGIC:
        raise MalformedMessage("not a pattern state (bad magic)")
    if fmt != FORMAT or flags != 0:
        raise MalformedMessage(f"unsupported pattern state format {fmt} flags {flags}")
    if raw_len > limits.max_decompressed_bytes:
        raise OversizedMessage(f"declared size {raw_len} exceeds {limits.max_decompressed_bytes}")
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(memoryview(data)[OUTER.size :], raw_len)
    except zlib.error as exc:
        raise MalformedMessage(f"pattern state does not inflate: {exc}") from None
    if len(raw) != raw_len or not inflater.eof or inflater.unconsumed_tail or inflater.unused_data:
        raise MalformedMessage("pattern state length does not match its declared size")
    return raw


def parse_layout(raw: bytes, limits: Limits) -> Layout:
    """Check the raw header against the limits and the exact length it implies."""
    if len(raw) < HEADER.size:
        raise MalformedMessage("pattern state shorter than its table header")
    n_strings, blob_len, n_entries, reserved = HEADER.unpack_from(raw, 0)
    if reserved != 0:
        raise MalformedMessage("reserved header field is not zero")
    if n_entries > limits.max_entries:
        raise OversizedMessage(f"{n_entries} entries exceed {limits.max_entries}")
    if n_strings > 3 * n_entries or n_strings > limits.max_table_strings:
        raise MalformedMessage(f"{n_strings} strings for {n_entries} entries")
    if HEADER.size + ENTRY_BYTES * n_entries + blob_len != len(raw):
        raise MalformedMessage("pattern state length does not match its counts")
    return layout(n_strings, n_entries, blob_len)


def parse_strings(raw: bytes, lay: Layout, limits: Limits) -> list[str]:
    """The string table: valid UTF-8, no empty or over-long names, strictly sorted."""
    if lay.n_strings == 0:
        if lay.blob_len:
            raise MalformedMessage("string bytes without strings")
        return []
    try:
        text = raw[lay.blob : lay.blob + lay.blob_len].decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedMessage("string table is not UTF-8") from None
    strings = text.split("\x00")
    if len(strings) != lay.n_strings:
        raise MalformedMessage("string table count does not match")
    if max(map(len, strings)) > limits.max_string_chars:
        raise OversizedMessage(f"a name is longer than {limits.max_string_chars} characters")
    if not strings[0] or any(a >= b for a, b in zip(strings, strings[1:])):
        raise MalformedMessage("string table is not strictly sorted (or has an empty name)")
    return strings


def check_name(name: object, what: str, limits: Limits) -> str:
    """A state, action or agent name that the wire format can carry."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"{what} must be a non-empty string")
    if "\x00" in name or len(name) > limits.max_string_chars:
        raise ValueError(f"{what} must hold no NUL and at most {limits.max_string_chars} characters")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{what} is not encodable as UTF-8") from None
    return name
