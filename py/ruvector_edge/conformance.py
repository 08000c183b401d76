"""Known-answer tests for a `CryptoProvider` and for the JCS code, runnable in any runtime.

Signatures made in a browser tab must verify on a native node and the other way
round, so both runtimes have to produce the standards' exact bytes. The vectors
(RFC 8032, RFC 7748, RFC 5869, the GCM spec, RFC 8785) ship inside the package
so the very wheel loaded into Pyodide can check WebCrypto-through-the-FFI with
the same code that checks PyNaCl/`cryptography` under pytest. Provider calls
are batched (one `sign_many` per key, one `verify_many` for the whole suite)
because in the browser every call is an FFI crossing.

A provider that raises, returns the wrong type or the wrong number of results
gets failures, never an exception out of `run_all`: the report is the result.
"""

from __future__ import annotations

import json
import struct
from importlib import resources
from typing import Any, Awaitable, Callable, Sequence

from .canonical import canonicalize, format_number
from .errors import CanonicalizationError
from .platform.base import CryptoProvider

__all__ = ["SUITES", "load_vectors", "expected_checks", "run_all"]

SUITES = ("ed25519", "x25519", "hkdf_sha256", "aes_256_gcm", "jcs")

_VECTORS_FILE = "conformance_vectors.json"

# Checks made per vector; `expected_checks` uses these so a test can tell a
# silently skipped check from a passing one.
_ED25519_CHECKS = 6  # public key, signature, verifies, flipped signature, altered message, other key
_X25519_CHECKS = 1  # scalar multiplication output
_EXCHANGE_CHECKS = 4  # both public keys, both sides' shared secret
_HKDF_CHECKS = 1  # okm
_GCM_CHECKS = 4  # seal, open, flipped tag refused, altered AAD refused
_JCS_CHECKS = 1  # canonical bytes, or the number's text (or its refusal)


def load_vectors() -> dict[str, Any]:
    """The vectors shipped in the package (importlib.resources also reads them from a wheel in Pyodide)."""
    text = resources.files(__package__).joinpath(_VECTORS_FILE).read_text(encoding="utf-8")
    return json.loads(text)


def expected_checks(vectors: dict[str, Any] | None = None) -> int:
    """How many checks `run_all` makes over these vectors when every provider call answers."""
    v = load_vectors() if vectors is None else vectors
    return (
        _ED25519_CHECKS * len(v["ed25519"])
        + _X25519_CHECKS * len(v["x25519"])
        + _EXCHANGE_CHECKS * len(v["x25519_exchange"])
        + _HKDF_CHECKS * len(v["hkdf_sha256"])
        + _GCM_CHECKS * len(v["aes_256_gcm"])
        + _JCS_CHECKS * (len(v["jcs_objects"]) + len(v["jcs_numbers"]))
    )


class _Report:
    def __init__(self) -> None:
        self.by_suite = {suite: {"passed": 0, "failed": 0} for suite in SUITES}
        self.failures: list[str] = []

    def check(self, suite: str, what: str, ok: bool, detail: str = "") -> None:
        if ok:
            self.by_suite[suite]["passed"] += 1
        else:
            self.by_suite[suite]["failed"] += 1
            self.failures.append(f"{suite}: {what}" + (f": {detail}" if detail else ""))

    def fail_all(self, suite: str, whats: Sequence[str], detail: str) -> None:
        for what in whats:
            self.check(suite, what, False, detail)

    def as_dict(self) -> dict[str, Any]:
        return {
            "passed": sum(s["passed"] for s in self.by_suite.values()),
            "failed": sum(s["failed"] for s in self.by_suite.values()),
            "failures": list(self.failures),
            "by_suite": {suite: dict(counts) for suite, counts in self.by_suite.items()},
        }


def _hex(data: str) -> bytes:
    return bytes.fromhex(data)


def _as_bytes(value: Any) -> bytes | None:
    """Bytes-like results are accepted as bytes (a JS bridge may hand back a memoryview)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    return None


def _short(value: Any) -> str:
    data = _as_bytes(value)
    if data is None:
        return repr(value)[:40]
    text = data.hex()
    return text if len(text) <= 32 else f"{text[:32]}…({len(data)} bytes)"


def _flip_bit(data: bytes) -> bytes:
    return bytes([data[0] ^ 0x01]) + data[1:] if data else b"\x00"


def _flip_last_bit(data: bytes) -> bytes:
    return data[:-1] + bytes([data[-1] ^ 0x01])


async def _call(report: _Report, suite: str, whats: Sequence[str], call: Callable[[], Awaitable[Any]], count: int | None = None) -> Any:
    """Await one provider call; on an exception or a batch of the wrong length, fail every check that needed it."""
    try:
        result = await call()
    except Exception as exc:  # a provider bug must show up as failures, not abort the run
        report.fail_all(suite, whats, f"raised {type(exc).__name__}: {exc}")
        return None
    if count is not None:
        try:
            result = list(result)
        except TypeError:
            report.fail_all(suite, whats, f"returned {type(result).__name__}, not a list")
            return None
        if len(result) != count:
            report.fail_all(suite, whats, f"returned {len(result)} results for {count} items")
            return None
    return result


def _expect_bytes(report: _Report, suite: str, what: str, got: Any, want: bytes) -> None:
    data = _as_bytes(got)
    report.check(suite, what, data == want, "" if data == want else f"got {_short(got)}, want {_short(want)}")


async def _run_ed25519(crypto: CryptoProvider, cases: list[dict], report: _Report) -> None:
    suite = "ed25519"
    publics = [_hex(case["public"]) for case in cases]
    items: list[tuple[bytes, bytes, bytes]] = []
    labels: list[tuple[str, bool]] = []
    for index, case in enumerate(cases):
        name = case["name"]
        seed, message, signature = _hex(case["seed"]), _hex(case["message"]), _hex(case["signature"])
        public = await _call(report, suite, [f"{name}: public key"], lambda: crypto.ed25519_public(seed))
        if public is not None:
            _expect_bytes(report, suite, f"{name}: public key", public, publics[index])
        signed = await _call(report, suite, [f"{name}: signature"], lambda: crypto.sign_many(seed, [message]), count=1)
        if signed is not None:
            _expect_bytes(report, suite, f"{name}: signature", signed[0], signature)
        other = publics[(index + 1) % len(publics)]
        items += [
            (publics[index], message, signature),
            (publics[index], message, _flip_bit(signature)),
            (publics[index], _flip_bit(message), signature),
            (other, message, signature),
        ]
        labels += [
            (f"{name}: verifies", True),
            (f"{name}: flipped signature bit refused", False),
            (f"{name}: altered message refused", False),
            (f"{name}: another key refused", False),
        ]
    whats = [label for label, _ in labels]
    results = await _call(report, suite, whats, lambda: crypto.verify_many(items), count=len(items))
    if results is None:
        return
    for (what, want), got in zip(labels, results):
        ok = isinstance(got, bool) and got is want
        report.check(suite, what, ok, "" if ok else f"got {got!r}, want {want!r}")


async def _run_x25519(crypto: CryptoProvider, cases: list[dict], exchanges: list[dict], report: _Report) -> None:
    suite = "x25519"
    for case in cases:
        what = f"{case['name']}: output"
        scalar, u = _hex(case["scalar"]), _hex(case["u"])
        got = await _call(report, suite, [what], lambda: crypto.x25519_shared(scalar, u))
        if got is not None:
            _expect_bytes(report, suite, what, got, _hex(case["output"]))
    for case in exchanges:
        name = case["name"]
        alice, bob = _hex(case["alice_private"]), _hex(case["bob_private"])
        alice_public, bob_public = _hex(case["alice_public"]), _hex(case["bob_public"])
        for what, call, want in (
            (f"{name}: Alice's public key", lambda: crypto.x25519_public(alice), alice_public),
            (f"{name}: Bob's public key", lambda: crypto.x25519_public(bob), bob_public),
            (f"{name}: Alice's shared secret", lambda: crypto.x25519_shared(alice, bob_public), _hex(case["shared"])),
            (f"{name}: Bob's shared secret", lambda: crypto.x25519_shared(bob, alice_public), _hex(case["shared"])),
        ):
            got = await _call(report, suite, [what], call)
            if got is not None:
                _expect_bytes(report, suite, what, got, want)


async def _run_hkdf(crypto: CryptoProvider, cases: list[dict], report: _Report) -> None:
    suite = "hkdf_sha256"
    for case in cases:
        what = f"{case['name']}: okm"
        ikm, salt, info, length = _hex(case["ikm"]), _hex(case["salt"]), _hex(case["info"]), case["length"]
        got = await _call(report, suite, [what], lambda: crypto.hkdf_sha256(ikm, salt, info, length))
        if got is not None:
            _expect_bytes(report, suite, what, got, _hex(case["okm"]))


async def _run_aes_gcm(crypto: CryptoProvider, cases: list[dict], report: _Report) -> None:
    suite = "aes_256_gcm"
    by_key: dict[str, list[dict]] = {}
    for case in cases:
        by_key.setdefault(case["key"], []).append(case)
    for key_hex, group in by_key.items():
        key = _hex(key_hex)
        seal_items = [(_hex(c["iv"]), _hex(c["plaintext"]), _hex(c["aad"])) for c in group]
        seal_whats = [f"{c['name']}: seal" for c in group]
        sealed = await _call(report, suite, seal_whats, lambda: crypto.aes_gcm_seal_many(key, seal_items), count=len(group))
        if sealed is not None:
            for what, got, c in zip(seal_whats, sealed, group):
                _expect_bytes(report, suite, what, got, _hex(c["ciphertext"]) + _hex(c["tag"]))
        open_items: list[tuple[bytes, bytes, bytes]] = []
        open_labels: list[tuple[str, bytes | None]] = []
        for c in group:
            iv, aad, plaintext = _hex(c["iv"]), _hex(c["aad"]), _hex(c["plaintext"])
            boxed = _hex(c["ciphertext"]) + _hex(c["tag"])
            open_items += [(iv, boxed, aad), (iv, _flip_last_bit(boxed), aad), (iv, boxed, aad + b"\x00")]
            open_labels += [
                (f"{c['name']}: open", plaintext),
                (f"{c['name']}: flipped tag bit refused", None),
                (f"{c['name']}: altered AAD refused", None),
            ]
        whats = [label for label, _ in open_labels]
        opened = await _call(report, suite, whats, lambda: crypto.aes_gcm_open_many(key, open_items), count=len(open_items))
        if opened is None:
            continue
        for (what, want), got in zip(open_labels, opened):
            if want is None:
                report.check(suite, what, got is None, "" if got is None else f"got {_short(got)}, want None")
            else:
                _expect_bytes(report, suite, what, got, want)


def _run_jcs(objects: list[dict], numbers: list[dict], report: _Report) -> None:
    suite = "jcs"
    for case in objects:
        what = case["name"]
        want = case["expected"].encode("utf-8")
        try:
            got = canonicalize(json.loads(case["input"]))
        except Exception as exc:
            report.check(suite, what, False, f"raised {type(exc).__name__}: {exc}")
            continue
        report.check(suite, what, got == want, "" if got == want else f"got {got!r}, want {want!r}")
    for case in numbers:
        what = case["name"]
        value = struct.unpack(">d", _hex(case["ieee754"]))[0]
        want = case["expected"]
        try:
            got = format_number(value)
        except CanonicalizationError:
            report.check(suite, what, want is None, f"refused, want {want!r}")
            continue
        except Exception as exc:
            report.check(suite, what, False, f"raised {type(exc).__name__}: {exc}")
            continue
        ok = want is not None and got == want
        report.check(suite, what, ok, "" if ok else f"got {got!r}, want {'a CanonicalizationError' if want is None else repr(want)}")


async def run_all(crypto: CryptoProvider) -> dict[str, Any]:
    """Run every vector against `crypto` and the JCS code; {"passed", "failed", "failures", "by_suite"}."""
    vectors = load_vectors()
    report = _Report()
    await _run_ed25519(crypto, vectors["ed25519"], report)
    await _run_x25519(crypto, vectors["x25519"], vectors["x25519_exchange"], report)
    await _run_hkdf(crypto, vectors["hkdf_sha256"], report)
    await _run_aes_gcm(crypto, vectors["aes_256_gcm"], report)
    _run_jcs(vectors["jcs_objects"], vectors["jcs_numbers"], report)
    return report.as_dict()
