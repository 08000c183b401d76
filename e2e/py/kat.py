"""Known-answer checks for a CryptoProvider, run inside the Pyodide worker by e2e/crypto.spec.js.

Kept independent of ruvector_edge.conformance so the browser provider is checked
against the RFC vectors even before (or apart from) the shared conformance suite.
Also runnable natively: `python e2e/py/kat.py` checks the same vectors with PyNaCl.
"""

H = bytes.fromhex

ED25519 = [  # RFC 8032 §7.1, tests 1-3: (seed, public, message, signature)
    ("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
     "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
     "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"),
    ("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
     "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
     "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"),
    ("c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
     "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025", "af82",
     "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a"),
]

X25519 = [  # RFC 7748 §5.2: (scalar, u-coordinate, output)
    ("a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
     "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
     "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552"),
    ("4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d",
     "e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",
     "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957"),
]

DH = {  # RFC 7748 §6.1
    "alice_private": "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
    "alice_public": "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a",
    "bob_private": "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb",
    "bob_public": "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f",
    "shared": "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742",
}

HKDF = {  # RFC 5869 A.1, test case 1
    "ikm": "0b" * 22, "salt": "000102030405060708090a0b0c", "info": "f0f1f2f3f4f5f6f7f8f9", "length": 42,
    "okm": "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865",
}

AES_GCM = {  # McGrew & Viega, "The GCM mode of operation", test case 16 (AES-256, with AAD)
    "key": "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
    "iv": "cafebabefacedbaddecaf888",
    "aad": "feedfacedeadbeeffeedfacedeadbeefabaddad2",
    "pt": "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
    "ct": "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
    "tag": "76fc6ece0f4e1768cddf8853bb2d551b",
}


async def check(crypto) -> dict:
    """Run every vector; returns {"passed": n, "failed": n, "failures": [names]}."""
    results: list[tuple[str, bool]] = []

    def ok(name, cond):
        results.append((name, bool(cond)))

    for i, (seed, pub, msg, sig) in enumerate(ED25519, 1):
        ok(f"ed25519 #{i} public", await crypto.ed25519_public(H(seed)) == H(pub))
        ok(f"ed25519 #{i} sign", await crypto.sign_many(H(seed), [H(msg)]) == [H(sig)])
        bad = bytearray(H(sig)); bad[0] ^= 1
        flags = await crypto.verify_many([(H(pub), H(msg), H(sig)), (H(pub), H(msg) + b"x", H(sig)),
                                          (H(pub), H(msg), bytes(bad)), (H(pub)[:31], H(msg), H(sig)),
                                          (H(pub), H(msg), H(sig)[:63])])
        ok(f"ed25519 #{i} verify", flags == [True, False, False, False, False])

    for i, (k, u, out) in enumerate(X25519, 1):
        ok(f"x25519 5.2 #{i}", await crypto.x25519_shared(H(k), H(u)) == H(out))
    ok("x25519 6.1 alice public", await crypto.x25519_public(H(DH["alice_private"])) == H(DH["alice_public"]))
    ok("x25519 6.1 bob public", await crypto.x25519_public(H(DH["bob_private"])) == H(DH["bob_public"]))
    ok("x25519 6.1 alice shared", await crypto.x25519_shared(H(DH["alice_private"]), H(DH["bob_public"])) == H(DH["shared"]))
    ok("x25519 6.1 bob shared", await crypto.x25519_shared(H(DH["bob_private"]), H(DH["alice_public"])) == H(DH["shared"]))

    okm = await crypto.hkdf_sha256(H(HKDF["ikm"]), H(HKDF["salt"]), H(HKDF["info"]), HKDF["length"])
    ok("hkdf 5869 tc1", okm == H(HKDF["okm"]))

    g = AES_GCM
    sealed = await crypto.aes_gcm_seal_many(H(g["key"]), [(H(g["iv"]), H(g["pt"]), H(g["aad"]))])
    ok("aes-256-gcm tc16 seal", sealed == [H(g["ct"]) + H(g["tag"])])
    ct = H(g["ct"]) + H(g["tag"])
    tampered = bytearray(ct); tampered[-1] ^= 1
    opened = await crypto.aes_gcm_open_many(H(g["key"]), [(H(g["iv"]), ct, H(g["aad"])),
                                                          (H(g["iv"]), bytes(tampered), H(g["aad"])),
                                                          (H(g["iv"]), ct, H(g["aad"]) + b"x"),
                                                          (H(g["iv"]), ct[:8], H(g["aad"])),
                                                          (H(g["iv"]), ct, H(g["aad"]))])
    ok("aes-256-gcm tc16 open", opened == [H(g["pt"]), None, None, None, H(g["pt"])])

    # round trips through fresh keys
    seed, pub = await crypto.ed25519_generate()
    ok("ed25519 generate", len(seed) == 32 and await crypto.ed25519_public(seed) == pub)
    msgs = [bytes([i]) * i for i in range(50)]
    sigs = await crypto.sign_many(seed, msgs)
    ok("ed25519 batch", await crypto.verify_many([(pub, m, s) for m, s in zip(msgs, sigs)]) == [True] * 50)
    a_sk, a_pk = await crypto.x25519_generate()
    b_sk, b_pk = await crypto.x25519_generate()
    ok("x25519 generate", await crypto.x25519_public(a_sk) == a_pk
       and await crypto.x25519_shared(a_sk, b_pk) == await crypto.x25519_shared(b_sk, a_pk))
    ok("x25519 low-order point gives zeros", await crypto.x25519_shared(a_sk, bytes(32)) == bytes(32))

    failures = [name for name, good in results if not good]
    return {"passed": len(results) - len(failures), "failed": len(failures), "failures": failures}


if __name__ == "__main__":
    import asyncio
    import sys

    sys.path.insert(0, "py")
    from ruvector_edge.platform.native import NativeCryptoProvider

    print(asyncio.run(check(NativeCryptoProvider())))
