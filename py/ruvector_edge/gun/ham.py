"""HAM, GUN's conflict resolution, as `gun/src/root.js` (gun 0.2020.1241) does it.

For one key of one node, with `was`/`known` the stored state/value and
`state`/`val` the incoming ones, GUN's `ham()`:

1. ``state > State()`` (the machine's clock plus ``State.drift``): the update is
   *deferred* and re-run when due (GUN uses ``setTimeout``, capped at 2**31-1 ms
   per wait);
2. ``state < was``: dropped (older);
3. ``state == was`` and (``val === known`` or
   ``JSON.stringify(val) <= JSON.stringify(known)``): dropped (same, or loses the
   lexical tie-break), so at equal states the value whose JSON text sorts higher
   (JavaScript string order: UTF-16 code units) wins;
4. otherwise applied.

An unknown key has ``was = -Infinity``. `js_stringify` reproduces
``JSON.stringify`` for GUN's valid values (null, booleans, finite numbers,
strings, links ``{"#": soul}``) so the tie-break agrees with GUN.js exactly.
"""

from __future__ import annotations

import json
import math
import re
from decimal import Decimal

APPLY, DEFER, DROP = "apply", "defer", "drop"
MAX_DEFER_WAIT_MS = 2_147_483_647  # GUN's "Max Defer 32bit" (one setTimeout)

_LONE_SURROGATE = re.compile("[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]")


def js_number(x: float | int) -> str:
    """ECMAScript Number::toString for a finite number."""
    x = float(x)
    if x == 0:
        return "0"
    if x < 0:
        return "-" + js_number(-x)
    digits, exponent = _shortest_digits(x)
    k = len(digits)
    n = exponent + k  # the decimal point sits after n digits
    if k <= n <= 21:
        return digits + "0" * (n - k)
    if 0 < n <= 21:
        return digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return "0." + "0" * (-n) + digits
    e = n - 1
    sign = "+" if e >= 0 else "-"
    mantissa = digits if k == 1 else digits[0] + "." + digits[1:]
    return f"{mantissa}e{sign}{abs(e)}"


def _shortest_digits(x: float) -> tuple[str, int]:
    # repr() gives the shortest round-tripping digits, as ECMAScript requires.
    sign, digit_tuple, exponent = Decimal(repr(x)).as_tuple()
    digits = "".join(map(str, digit_tuple)).rstrip("0")
    exponent += len(digit_tuple) - len(digits)
    return digits.lstrip("0") or "0", exponent


def _js_string(s: str) -> str:
    text = json.dumps(s, ensure_ascii=False)
    # JSON.stringify (ES2019+) escapes lone surrogates; json.dumps leaves them raw.
    return _LONE_SURROGATE.sub(lambda m: "\\u%04x" % ord(m.group()), text)


def js_stringify(value) -> str:
    """JSON.stringify of a GUN value (null, bool, number, string, or link)."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            return "null"
        return js_number(value)
    if isinstance(value, str):
        return _js_string(value)
    if isinstance(value, dict):
        return "{" + ",".join(_js_string(str(k)) + ":" + js_stringify(v) for k, v in value.items()) + "}"
    raise TypeError(f"not a GUN value: {type(value).__name__}")


def js_less_equal(a: str, b: str) -> bool:
    """JavaScript ``a <= b`` on strings: UTF-16 code unit order."""
    return a.encode("utf-16-be", "surrogatepass") <= b.encode("utf-16-be", "surrogatepass")


def ham(state: float, val, was: float, known, now: float, *, known_present: bool = True) -> str:
    """Decide what to do with an incoming (state, val) against the stored (was, known)."""
    if state > now:
        return DEFER
    if state < was:
        return DROP
    if state == was:
        if not known_present:
            return APPLY  # JSON.stringify(undefined) is undefined: `x <= undefined` is false
        a, b = js_stringify(val), js_stringify(known)
        if a == b or js_less_equal(a, b):
            return DROP
    return APPLY
