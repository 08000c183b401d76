"""The shipped known-answer vectors pass on the native provider, and the runner really catches bad providers.

The same `run_all` runs inside Pyodide against WebCrypto; here it is proved not
to pass vacuously: every deliberately broken provider below must be reported,
with the exact number of failures its defect should cause.
"""

from __future__ import annotations

import hashlib
import hmac

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ruvector_edge import conformance
from ruvector_edge.conformance import SUITES, expected_checks, load_vectors, run_all
from ruvector_edge.platform.native import NativeCryptoProvider

# 5 Ed25519 × 6 + (2 + 4) X25519 + 3 HKDF + 4 GCM × 4 + (2 + 26) JCS; a literal so a vector
# silently dropped from the JSON file fails here.
TOTAL_CHECKS = 83


def _flip(data: bytes) -> bytes:
    return bytes([data[0] ^ 0x80]) + data[1:]


def _assert_consistent(report: dict) -> None:
    assert report["passed"] + report["failed"] == TOTAL_CHECKS
    assert report["failed"] == len(report["failures"])
    assert set(report["by_suite"]) == set(SUITES)
    assert sum(s["passed"] for s in report["by_suite"].values()) == report["passed"]
    assert sum(s["failed"] for s in report["by_suite"].values()) == report["failed"]


# --- the vectors themselves -------------------------------------------------


def test_vectors_load_from_package_resources():
    vectors = load_vectors()
    assert {name: len(vectors[name]) for name in ("ed25519", "x25519", "x25519_exchange", "hkdf_sha256", "aes_256_gcm")} == {
        "ed25519": 5,
        "x25519": 2,
        "x25519_exchange": 1,
        "hkdf_sha256": 3,
        "aes_256_gcm": 4,
    }
    assert len(vectors["jcs_objects"]) == 2 and len(vectors["jcs_numbers"]) == 26
    assert expected_checks(vectors) == TOTAL_CHECKS


def test_ed25519_vectors_agree_with_cryptography():
    """`cryptography` is not what the native provider uses for Ed25519, so this checks the data, not the provider."""
    for case in load_vectors()["ed25519"]:
        key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(case["seed"]))
        public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        assert public.hex() == case["public"], case["name"]
        assert key.sign(bytes.fromhex(case["message"])).hex() == case["signature"], case["name"]


def test_ed25519_long_vectors_have_their_rfc_lengths():
    by_name = {case["name"]: case for case in load_vectors()["ed25519"]}
    assert len(bytes.fromhex(by_name["RFC 8032 7.1 TEST 1024"]["message"])) == 1023
    assert by_name["RFC 8032 7.1 TEST SHA(abc)"]["message"] == hashlib.sha512(b"abc").hexdigest()


def test_x25519_vectors_agree_with_cryptography():
    vectors = load_vectors()
    for case in vectors["x25519"]:
        private = X25519PrivateKey.from_private_bytes(bytes.fromhex(case["scalar"]))
        shared = private.exchange(X25519PublicKey.from_public_bytes(bytes.fromhex(case["u"])))
        assert shared.hex() == case["output"], case["name"]
    (dh,) = vectors["x25519_exchange"]
    for side in ("alice", "bob"):
        private = X25519PrivateKey.from_private_bytes(bytes.fromhex(dh[f"{side}_private"]))
        assert private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex() == dh[f"{side}_public"]
        peer = "bob" if side == "alice" else "alice"
        assert private.exchange(X25519PublicKey.from_public_bytes(bytes.fromhex(dh[f"{peer}_public"]))).hex() == dh["shared"]


def _hkdf_stdlib(ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    prk = hmac.new(salt or bytes(32), ikm, hashlib.sha256).digest()
    okm, block = b"", b""
    for counter in range(1, -(-length // 32) + 1):
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        okm += block
    return okm[:length]


def test_hkdf_vectors_agree_with_a_stdlib_hkdf():
    for case in load_vectors()["hkdf_sha256"]:
        got = _hkdf_stdlib(*(bytes.fromhex(case[k]) for k in ("ikm", "salt", "info")), case["length"])
        assert got.hex() == case["okm"], case["name"]


def test_gcm_case_16_is_case_15_truncated_with_aad():
    """The GCM spec builds case 16 from case 15: 60 bytes of its plaintext and ciphertext, plus AAD."""
    by_name = {case["name"]: case for case in load_vectors()["aes_256_gcm"]}
    c15, c16 = by_name["GCM spec test case 15"], by_name["GCM spec test case 16"]
    assert c16["plaintext"] == c15["plaintext"][:120] and c16["ciphertext"] == c15["ciphertext"][:120]
    assert c16["aad"] and not c15["aad"] and c16["key"] == c15["key"] and c16["iv"] == c15["iv"]


# --- the native provider ----------------------------------------------------


async def test_native_provider_passes_every_vector():
    report = await run_all(NativeCryptoProvider())
    assert report["failures"] == []
    assert report["failed"] == 0
    assert report["passed"] == TOTAL_CHECKS == expected_checks()
    _assert_consistent(report)
    assert report["by_suite"] == {
        "ed25519": {"passed": 30, "failed": 0},
        "x25519": {"passed": 6, "failed": 0},
        "hkdf_sha256": {"passed": 3, "failed": 0},
        "aes_256_gcm": {"passed": 16, "failed": 0},
        "jcs": {"passed": 28, "failed": 0},
    }


async def test_run_all_batches_provider_calls():
    """One sign_many per key and one verify_many in all: what keeps the browser's FFI crossings few."""
    calls: dict[str, int] = {}

    class Counting(NativeCryptoProvider):
        async def sign_many(self, seed, messages):
            calls["sign_many"] = calls.get("sign_many", 0) + 1
            return await super().sign_many(seed, messages)

        async def verify_many(self, items):
            calls["verify_many"] = calls.get("verify_many", 0) + 1
            return await super().verify_many(items)

        async def aes_gcm_open_many(self, key, items):
            calls["open_many"] = calls.get("open_many", 0) + 1
            return await super().aes_gcm_open_many(key, items)

    report = await run_all(Counting())
    assert report["failed"] == 0
    assert calls == {"sign_many": 5, "verify_many": 1, "open_many": 2}


# --- broken providers must be caught ----------------------------------------


class FlippedSignature(NativeCryptoProvider):
    async def sign_many(self, seed, messages):
        return [_flip(sig) for sig in await super().sign_many(seed, messages)]


class AcceptsEverySignature(NativeCryptoProvider):
    async def verify_many(self, items):
        return [True] * len(items)


class TruthyVerify(NativeCryptoProvider):
    """Returns 1/0 instead of booleans: a bridge that forgot to convert must not slip through."""

    async def verify_many(self, items):
        return [int(ok) for ok in await super().verify_many(items)]


class ShortVerifyBatch(NativeCryptoProvider):
    async def verify_many(self, items):
        return (await super().verify_many(items))[:-1]


class FlippedPublicKey(NativeCryptoProvider):
    async def ed25519_public(self, seed):
        return _flip(await super().ed25519_public(seed))


class FlippedSharedSecret(NativeCryptoProvider):
    async def x25519_shared(self, private, peer_public):
        return _flip(await super().x25519_shared(private, peer_public))


class HkdfWithoutSalt(NativeCryptoProvider):
    async def hkdf_sha256(self, ikm, salt, info, length=32):
        return await super().hkdf_sha256(ikm, b"", info, length)


class FlippedSeal(NativeCryptoProvider):
    async def aes_gcm_seal_many(self, key, items):
        return [_flip(box) for box in await super().aes_gcm_seal_many(key, items)]


class OpenIgnoresTag(NativeCryptoProvider):
    """Decrypts without authenticating: the worst AES-GCM bug, and invisible to a round-trip test."""

    async def aes_gcm_open_many(self, key, items):
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

        out = []
        for iv, boxed, _aad in items:
            ctr = Cipher(algorithms.AES(key), modes.CTR(iv + b"\x00\x00\x00\x02")).decryptor()
            out.append(ctr.update(boxed[:-16]) + ctr.finalize())
        return out


class RaisingSigner(NativeCryptoProvider):
    async def sign_many(self, seed, messages):
        raise RuntimeError("bridge exploded")


@pytest.mark.parametrize(
    ("provider", "suite", "failed", "needle"),
    [
        (FlippedSignature(), "ed25519", 5, ": signature: got "),
        (AcceptsEverySignature(), "ed25519", 15, "refused: got True, want False"),
        (TruthyVerify(), "ed25519", 20, "got 1, want True"),
        (ShortVerifyBatch(), "ed25519", 20, "returned 19 results for 20 items"),
        (FlippedPublicKey(), "ed25519", 5, ": public key: got "),
        (FlippedSharedSecret(), "x25519", 4, "shared secret: got "),
        (HkdfWithoutSalt(), "hkdf_sha256", 2, "RFC 5869 A.1 basic: okm"),
        (FlippedSeal(), "aes_256_gcm", 4, "test case 14: seal: got "),
        (OpenIgnoresTag(), "aes_256_gcm", 8, "flipped tag bit refused"),
        (RaisingSigner(), "ed25519", 5, "raised RuntimeError: bridge exploded"),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, NativeCryptoProvider) else None,
)
async def test_broken_provider_is_reported(provider, suite, failed, needle):
    report = await run_all(provider)
    _assert_consistent(report)
    assert report["by_suite"][suite]["failed"] == failed
    assert report["failed"] == failed, report["failures"]
    assert any(needle in failure for failure in report["failures"]), report["failures"]
    assert all(failure.startswith(f"{suite}: ") for failure in report["failures"])


async def test_broken_canonicalizer_is_reported(monkeypatch):
    """The JCS suite checks the package's own code, so break that code instead of a provider."""
    monkeypatch.setattr(conformance, "format_number", lambda value: repr(float(value)))
    report = await run_all(NativeCryptoProvider())
    _assert_consistent(report)
    assert report["by_suite"]["jcs"]["failed"] > 10
    assert any("RFC 8785 Appendix B 7ff0000000000000" in failure for failure in report["failures"])
