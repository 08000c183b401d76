"""Strict decoding helpers shared by every wire object.

Each helper either returns a value of exactly the expected type and form or
raises `MalformedMessage`; nothing is coerced. Python's json module is lenient
(duplicate keys, NaN, bools that are ints), so these checks close those gaps.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from ..errors import MalformedMessage, OversizedMessage

_ID = re.compile(r"[A-Za-z0-9._:@-]{1,128}")

MAX_SAFE_INT = 2**53 - 1


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise MalformedMessage("duplicate key in JSON object")
    return obj


def _reject_constant(name: str) -> Any:
    raise MalformedMessage(f"{name} is not valid JSON")


_DECODER = json.JSONDecoder(object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant)


def parse_json_object(data: bytes | str, max_bytes: int) -> dict[str, Any]:
    """Parse one JSON object: UTF-8 only, no duplicate keys, no NaN/Infinity, at most `max_bytes`."""
    if len(data) > max_bytes:
        raise OversizedMessage(f"{len(data)} bytes exceeds the {max_bytes}-byte limit")
    try:
        text = data if isinstance(data, str) else bytes(data).decode("utf-8")
        value = _DECODER.decode(text)
    except MalformedMessage:
        raise
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise MalformedMessage(f"not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise MalformedMessage("expected a JSON object")
    return value


def expect_keys(obj: dict[str, Any], keys: frozenset[str], kind: str) -> None:
    """Exactly these keys, so no unsigned field can ride along and no signed one be dropped."""
    if not isinstance(obj, dict):
        raise MalformedMessage(f"{kind} must be a JSON object")
    if obj.keys() != keys:
        missing = sorted(keys - obj.keys())
        extra = sorted(obj.keys() - keys)
        raise MalformedMessage(f"{kind}: missing {missing} unexpected {extra}")


def get_str(obj: dict[str, Any], key: str, max_len: int = 256) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise MalformedMessage(f"{key} must be a string")
    if len(value) > max_len:
        raise MalformedMessage(f"{key} longer than {max_len}")
    return value


def check_id(value: object, what: str) -> str:
    """An identifier: 1-128 characters of [A-Za-z0-9._:@-] (safe in logs, file names and topics)."""
    if type(value) is not str or not _ID.fullmatch(value):
        raise MalformedMessage(f"{what} is not a valid identifier: {value!r:.80}")
    return value


def get_id(obj: dict[str, Any], key: str) -> str:
    return check_id(obj.get(key), key)


def get_int(obj: dict[str, Any], key: str, minimum: int = 0, maximum: int = MAX_SAFE_INT) -> int:
    value = obj.get(key)
    if type(value) is not int:  # bool is an int subclass; refuse it
        raise MalformedMessage(f"{key} must be an integer")
    if not minimum <= value <= maximum:
        raise MalformedMessage(f"{key} out of range [{minimum}, {maximum}]")
    return value


def get_number(obj: dict[str, Any], key: str, minimum: float, maximum: float) -> float:
    value = obj.get(key)
    if type(value) not in (int, float):
        raise MalformedMessage(f"{key} must be a number")
    if not minimum <= value <= maximum:
        raise MalformedMessage(f"{key} out of range [{minimum}, {maximum}]")
    return float(value)


def get_hex(obj: dict[str, Any], key: str, nbytes: int) -> bytes:
    """Lowercase hex of exactly `nbytes` bytes (bytes.fromhex alone would accept spaces and capitals)."""
    value = obj.get(key)
    if type(value) is str and len(value) == 2 * nbytes:
        try:
            decoded = bytes.fromhex(value)
        except ValueError:
            decoded = None
        if decoded is not None and decoded.hex() == value:  # round trip: lowercase, no whitespace
            return decoded
    raise MalformedMessage(f"{key} must be {nbytes} bytes of lowercase hex")


def get_b64(obj: dict[str, Any], key: str, max_bytes: int) -> bytes:
    """Standard padded base64 of at most `max_bytes` decoded bytes."""
    value = obj.get(key)
    if type(value) is not str or len(value) % 4:
        raise MalformedMessage(f"{key} must be padded base64")
    if len(value) // 4 * 3 > max_bytes + 2:
        raise OversizedMessage(f"{key} exceeds {max_bytes} bytes")
    try:  # validate=True refuses anything outside the alphabet, including whitespace
        decoded = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedMessage(f"{key} must be padded base64") from None
    if len(decoded) > max_bytes:
        raise OversizedMessage(f"{key} exceeds {max_bytes} bytes")
    return decoded


def get_str_list(obj: dict[str, Any], key: str, max_items: int = 64, max_len: int = 64) -> list[str]:
    value = obj.get(key)
    if not isinstance(value, list) or len(value) > max_items:
        raise MalformedMessage(f"{key} must be a list of at most {max_items} strings")
    for item in value:
        if not isinstance(item, str) or not item or len(item) > max_len:
            raise MalformedMessage(f"{key} items must be non-empty strings of at most {max_len} characters")
    return list(value)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
