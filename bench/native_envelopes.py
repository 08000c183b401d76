"""Envelope seal/open throughput natively, side by side with raw PyNaCl Ed25519 sign/verify.

Prints JSON lines. Targets (issue "Foundation"): sealed/s ≥ 0.5 × raw sign/s,
opened/s ≥ 0.6 × raw verify/s, for 1 KiB payloads. Bounded: a fixed number of
operations per measurement, best of a few rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time

import nacl.signing

from ruvector_edge.p2p import P2PSwarm


def _best_rate(run, count: int, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return count / best


async def _best_rate_async(run, count: int, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        await run()
        best = min(best, time.perf_counter() - start)
    return count / best


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=2000, help="operations per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--payload", type=int, default=1024, help="payload bytes")
    args = parser.parse_args()
    n, rounds = args.count, args.rounds

    key = nacl.signing.SigningKey.generate()
    verify_key = key.verify_key
    messages = [os.urandom(300) for _ in range(n)]
    signed = [key.sign(m) for m in messages]
    sign_rate = _best_rate(lambda: [key.sign(m) for m in messages], n, rounds)
    verify_rate = _best_rate(lambda: [verify_key.verify(s) for s in signed], n, rounds)

    alice = await P2PSwarm.create("alice", capabilities=["bench"])
    payloads = [os.urandom(args.payload) for _ in range(n)]
    seal_rate = await _best_rate_async(lambda: alice.publish_many("bench", payloads), n, rounds)

    frame_sets = []
    openers = []
    for round_index in range(rounds):
        bob = await P2PSwarm.create(f"bob-{round_index}", alice.swarm_key.key, capabilities=["bench"])
        await bob.register_member(alice.registration)
        openers.append(bob)
        frame_sets.append([p.frame for p in await alice.publish_many("bench", payloads)])
    best = float("inf")
    for bob, frames in zip(openers, frame_sets):
        start = time.perf_counter()
        results = await bob.receive_many(frames)
        best = min(best, time.perf_counter() - start)
        failures = [r for r in results if isinstance(r, Exception)]
        if failures:
            raise SystemExit(f"benchmark frames were rejected: {failures[0]!r}")
    open_rate = n / best

    lines = [
        {"bench": "ed25519_sign", "impl": "pynacl-raw", "ops_per_s": round(sign_rate)},
        {"bench": "ed25519_verify", "impl": "pynacl-raw", "ops_per_s": round(verify_rate)},
        {"bench": "envelope_seal", "impl": "ruvector_edge", "payload_bytes": args.payload, "ops_per_s": round(seal_rate),
         "ratio_vs_raw_sign": round(seal_rate / sign_rate, 3), "target_ratio": 0.5},
        {"bench": "envelope_open", "impl": "ruvector_edge", "payload_bytes": args.payload, "ops_per_s": round(open_rate),
         "ratio_vs_raw_verify": round(open_rate / verify_rate, 3), "target_ratio": 0.6},
    ]
    for line in lines:
        print(json.dumps(line))


if __name__ == "__main__":
    asyncio.run(main())
