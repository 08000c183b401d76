"""RFC 8785 JSON Canonicalization Scheme (JCS).

Signatures are computed over these bytes, so a Python agent and a JS agent
must produce *identical* output for the same value: keys sorted by UTF-16 code
units, no whitespace, strings escaped minimally, numbers formatted the way
ECMAScript's `Number.prototype.toString` does.
"""

from __future__ import annotations

import json
import math
from typing import Any

from .errors import CanonicalizationError

__all__ = ["canonicalize", "canonical_flat", "canonical_str", "format_number"]

# json's C string encoder escapes exactly what RFC 8785 §3.2.2.2 requires:
# '"', '\\', \b \f \n \r \t, and other C0 controls as lowercase \u00xx.
_encode_string = json.encoder.encode_basestring

_MAX_SAFE_INT = 2**53
_dumps_sorted = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False).encode


def _utf16_key(key: str) -> bytes:
    return key.encode("utf-16-be", "surrogatepass")


def format_number(value: float | int) -> str:
    """Format a number as ECMAScript's Number::toString does (RFC 8785 §3.2.2.3)."""
    if isinstance(value, int):
        if -_MAX_SAFE_INT <= value <= _MAX_SAFE_INT:
            return int.__repr__(value)  # not str(): an int subclass may override __str__
        try:
            as_float = float(value)
        except OverflowError:
            raise CanonicalizationError(f"integer with {value.bit_length()} bits is beyond the IEEE 754 range") from None
        if int(as_float) != value:
            raise CanonicalizationError(f"integer {value} is not exactly representable as an IEEE 754 double")
        value = as_float
    if not math.isfinite(value):
        raise CanonicalizationError(f"{value!r} has no JSON representation")
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    digits, exponent = _shortest_digits(abs(value))
    k = len(digits)
    n = exponent  # value = 0.digits * 10**n
    if k <= n <= 21:
        return sign + digits + "0" * (n - k)
    if 0 < n <= 21:
        return sign + digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return sign + "0." + "0" * (-n) + digits
    e = n - 1
    mantissa = digits if k == 1 else digits[0] + "." + digits[1:]
    return f"{sign}{mantissa}e{'+' if e >= 0 else '-'}{abs(e)}"


def _shortest_digits(value: float) -> tuple[str, int]:
    """Shortest round-tripping decimal digits of a positive float, and n with value = 0.digits × 10^n."""
    text = repr(value)
    if "e" in text:
        mantissa, exp_text = text.split("e")
        exp = int(exp_text)
    else:
        mantissa, exp = text, 0
    if "." in mantissa:
        int_part, frac_part = mantissa.split(".")
    else:
        int_part, frac_part = mantissa, ""
    if frac_part == "0":
        frac_part = ""
    all_digits = int_part + frac_part
    point = len(int_part) + exp
    stripped = all_digits.lstrip("0")
    point -= len(all_digits) - len(stripped)
    stripped = stripped.rstrip("0")
    return stripped, point


def _write(value: Any, out: list[str]) -> None:
    if isinstance(value, str):
        out.append(_encode_string(value))
    elif value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, (int, float)):
        out.append(format_number(value))
    elif isinstance(value, dict):
        out.append("{")
        first = True
        for key in _sorted_keys(value):
            if not first:
                out.append(",")
            first = False
            out.append(_encode_string(key))
            out.append(":")
            _write(value[key], out)
        out.append("}")
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(",")
            _write(item, out)
        out.append("]")
    else:
        raise CanonicalizationError(f"type {type(value).__name__} has no JSON representation")


def _sorted_keys(mapping: dict) -> list[str]:
    """Keys in UTF-16 code-unit order (RFC 8785 §3.2.3); plain order is the same for ASCII keys."""
    ascii_only = True
    for key in mapping:
        if not isinstance(key, str):
            raise CanonicalizationError(f"object key {key!r} is not a string")
        ascii_only = ascii_only and key.isascii()
    return sorted(mapping) if ascii_only else sorted(mapping, key=_utf16_key)


def canonical_str(value: Any) -> str:
    """The canonical JSON text of a JSON-compatible value."""
    out: list[str] = []
    try:
        _write(value, out)
    except RecursionError as exc:
        raise CanonicalizationError("value is nested too deeply") from exc
    return "".join(out)


def _is_flat_simple(mapping: dict) -> bool:
    """True when json.dumps(sort_keys=True) is already JCS: ASCII keys, values str or safe int.

    For such objects code-point order equals UTF-16 order and the C encoder's
    string escaping is RFC 8785's, so the fast path changes no byte; envelope
    headers and most signed records take it.
    """
    for key, item in mapping.items():
        if type(key) is not str or not key.isascii():
            return False
        kind = type(item)
        if kind is int:
            if not -_MAX_SAFE_INT <= item <= _MAX_SAFE_INT:
                return False
        elif kind is not str:
            return False
    return True


def canonical_flat(mapping: dict[str, str | int]) -> bytes:
    """Canonical bytes of a flat object whose caller guarantees ASCII keys and str / safe-int values."""
    return _dumps_sorted(mapping).encode("utf-8")


def canonicalize(value: Any) -> bytes:
    """The canonical JSON bytes (UTF-8) of a JSON-compatible value; what gets signed and hashed."""
    try:
        if type(value) is dict and _is_flat_simple(value):
            return _dumps_sorted(value).encode("utf-8")
        return canonical_str(value).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise CanonicalizationError("string contains a lone surrogate") from exc
