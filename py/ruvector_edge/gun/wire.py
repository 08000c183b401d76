"""GUN wire messages: parsing, validation and encoding (no I/O).

A frame is one JSON message object or a JSON array of them. Fields used:
``#`` message id, ``@`` id answered, ``><`` peers already passed (comma list; GUN
reads the first 99 characters), ``dam`` ("?" with ``pid`` is the peer-id
handshake, "!" an error report), ``get`` ``{"#": soul, ".": key?}``, ``put`` a graph
``{soul: {"_": {"#": soul, ">": {key: state}}, key: value}}``, ``ok``/``err`` in acks.
Values are GUN's valid ones (gun/src/valid.js): null, string, boolean, finite
number, or a link ``{"#": soul}``.
"""

from __future__ import annotations

import base64
import json
import math
import secrets
from dataclasses import dataclass

MAX_SAFE_INT = 2 ** 53


@dataclass
class WireLimits:
    max_message_bytes: int = 1 << 20   # one WebSocket frame
    max_batch: int = 256               # messages in one array frame
    max_souls: int = 1_000             # nodes in one put
    max_put_keys: int = 1_000          # keys of one node in one put
    max_soul_length: int = 1_024
    max_key_length: int = 1_024
    max_id_length: int = 64


class Malformed(ValueError):
    pass


def random_id() -> str:
    """A message id: 16 alphanumeric characters (80 random bits; GUN's own are 9 of 62 symbols, ~54 bits).
    Base32 of urandom: one call, where choosing characters one by one was a hot spot of the relay."""
    return base64.b32encode(secrets.token_bytes(10)).decode("ascii")


def _reject_constant(name: str):
    raise Malformed(f"non-JSON number {name}")


def _parse_int(text: str):
    v = int(text)
    return v if -MAX_SAFE_INT <= v <= MAX_SAFE_INT else float(v)


def parse_frame(raw: str, limits: WireLimits) -> list:
    """Decode a frame into a list of message dicts (non-dicts are left for the caller to count)."""
    if len(raw) > limits.max_message_bytes or len(raw.encode("utf-8", "surrogatepass")) > limits.max_message_bytes:
        raise Malformed("message too big")
    try:
        data = json.loads(raw, parse_constant=_reject_constant, parse_int=_parse_int)
    except (ValueError, RecursionError) as exc:
        raise Malformed(f"JSON parse error: {exc}") from None
    if isinstance(data, list):
        if len(data) > limits.max_batch:
            raise Malformed("batch too long")
        return data
    return [data]


def encode(msg: dict) -> str:
    return json.dumps(msg, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def valid_value(v) -> bool:
    if v is None or isinstance(v, (str, bool)):
        return True
    if isinstance(v, (int, float)):
        return math.isfinite(v)
    return isinstance(v, dict) and len(v) == 1 and isinstance(v.get("#"), str) and v["#"] != ""


def _short(s) -> str:
    return repr(str(s)[:24])


def validate_put(put, limits: WireLimits) -> list[tuple[str, str, float, object]]:
    """Every (soul, key, state, value) of a put graph, or Malformed for the whole message.

    GUN checks the same things (no node, no meta, soul mismatch, no state, invalid
    value) but may already have merged earlier keys when it meets a bad one; we
    refuse the whole message instead.
    """
    if not isinstance(put, dict) or not put:
        raise Malformed("put is not a graph")
    if "#" in put and "." in put:
        raise Malformed("single-key put form is not supported (GUN ignores it too)")
    if len(put) > limits.max_souls:
        raise Malformed("too many nodes in one put")
    out = []
    for soul, node in put.items():
        if not soul or len(soul) > limits.max_soul_length:
            raise Malformed(f"bad soul length {_short(soul)}")
        if not isinstance(node, dict):
            raise Malformed(f"{_short(soul)} no node")
        meta = node.get("_")
        if not isinstance(meta, dict):
            raise Malformed(f"{_short(soul)} no meta")
        if meta.get("#") != soul:
            raise Malformed(f"{_short(soul)} soul not same")
        states = meta.get(">")
        if not isinstance(states, dict):
            raise Malformed(f"{_short(soul)} no state")
        if len(node) - 1 > limits.max_put_keys:
            raise Malformed(f"{_short(soul)} too many keys")
        for key, value in node.items():
            if key == "_":
                continue
            if len(key) > limits.max_key_length:
                raise Malformed(f"key too long on {_short(soul)}")
            state = states.get(key)
            if isinstance(state, bool) or not isinstance(state, (int, float)) or not math.isfinite(state):
                raise Malformed(f"{_short(key)} on {_short(soul)} no state")
            if not valid_value(value):
                raise Malformed(f"{_short(key)} on {_short(soul)} bad {type(value).__name__}")
            out.append((soul, key, float(state), value))
    return out


def validate_get(get, limits: WireLimits) -> tuple[str, str | None]:
    if not isinstance(get, dict):
        raise Malformed("get is not an object")
    soul = get.get("#")
    if not isinstance(soul, str) or not soul or len(soul) > limits.max_soul_length:
        raise Malformed("get without a soul")
    key = get.get(".")
    if isinstance(key, dict):
        return soul, None  # a LEX query ({"*": prefix}, ...): answered with the whole node, a superset
    if key is not None and (not isinstance(key, str) or len(key) > limits.max_key_length):
        raise Malformed("get with a bad key")
    return soul, key
