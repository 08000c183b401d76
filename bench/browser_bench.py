"""Crypto and envelope throughput inside the Pyodide worker (driven by bench/browser_crypto.mjs).

Exec'd in the worker, so it imports only what the wheel ships. `run(n, rounds,
payload)` returns a dict of rates; every loop is a fixed count, best of `rounds`.
"""

import os
import time

from ruvector_edge.platform import default_runtime


async def _best(run, rounds):
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        await run()
        best = min(best, time.perf_counter() - start)
    return best


async def run(n=500, rounds=3, payload=1024):
    crypto = default_runtime().crypto
    out = {}

    seed, public = await crypto.ed25519_generate()
    messages = [os.urandom(300) for _ in range(n)]
    out["sign_many_per_s"] = n / await _best(lambda: crypto.sign_many(seed, messages), rounds)
    sigs = await crypto.sign_many(seed, messages)
    items = [(public, m, s) for m, s in zip(messages, sigs)]
    out["verify_many_per_s"] = n / await _best(lambda: crypto.verify_many(items), rounds)
    if not all(await crypto.verify_many(items)):
        raise RuntimeError("verify_many rejected good signatures")

    try:
        from ruvector_edge.p2p import P2PSwarm
    except ImportError:  # envelope API not in this wheel
        return out
    alice = await P2PSwarm.create("alice", capabilities=["bench"])
    payloads = [os.urandom(payload) for _ in range(n)]
    out["seal_per_s"] = n / await _best(lambda: alice.publish_many("bench", payloads), rounds)
    best = float("inf")
    for r in range(rounds):
        bob = await P2PSwarm.create(f"bob-{r}", alice.swarm_key.key, capabilities=["bench"])
        await bob.register_member(alice.registration)
        frames = [p.frame for p in await alice.publish_many("bench", payloads)]
        start = time.perf_counter()
        results = await bob.receive_many(frames)
        best = min(best, time.perf_counter() - start)
        bad = [x for x in results if isinstance(x, Exception)]
        if bad:
            raise RuntimeError(f"benchmark frames were rejected: {bad[0]!r}")
    out["open_per_s"] = n / best
    return out
