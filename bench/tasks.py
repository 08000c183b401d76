"""Task execution costs natively: sandbox start-up per task against calling the same function in Python,
tasks/s per native executor, and the in-process submit → claim → execute → verified receipt round trip.

Prints JSON lines. Bounded: a fixed number of tasks per measurement. The round
trip here has no transport; bench/task_roundtrip.py measures it through the relay.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import statistics
import time

import wasmtime

from ruvector_edge.artifacts import ArtifactStore
from ruvector_edge.p2p import IdentityManager
from ruvector_edge.platform.base import Clock
from ruvector_edge.platform.native import NativeCryptoProvider
from ruvector_edge.tasks import Budgets, ClaimBook, Coordinator, NativeSandbox, TaskEnvelope, TaskExecutor, verify_receipt

SUM_WAT = """(module
 (memory (export "memory") 2)
 (global $top (mut i32) (i32.const 1024))
 (func $alloc (export "alloc") (param $n i32) (result i32) (local $p i32)
   (local.set $p (global.get $top)) (global.set $top (i32.add (global.get $top) (local.get $n))) (local.get $p))
 (func (export "sum") (param $p i32) (param $n i32) (result i64) (local $i i32) (local $s i32) (local $o i32)
   (block $done (loop $next
     (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
     (local.set $s (i32.add (local.get $s) (i32.load8_u (i32.add (local.get $p) (local.get $i)))))
     (local.set $i (i32.add (local.get $i) (i32.const 1)))
     (br $next)))
   (local.set $o (call $alloc (i32.const 4)))
   (i32.store (local.get $o) (local.get $s))
   (i64.or (i64.shl (i64.extend_i32_u (local.get $o)) (i64.const 32)) (i64.const 4))))"""
BUDGETS = Budgets(fuel_limit=10_000_000, memory_mb=4, timeout_ms=5_000)
SWARM = "bench"


def py_sum(data: bytes) -> bytes:
    return (sum(data) & 0xFFFFFFFF).to_bytes(4, "little")


def per_call_us(fn, count: int, rounds: int = 3) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(count):
            fn()
        best = min(best, time.perf_counter() - start)
    return best / count * 1e6


def emit(**fields) -> None:
    print(json.dumps(fields), flush=True)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=300, help="tasks per measurement")
    args = parser.parse_args()
    n = args.count
    module = wasmtime.wat2wasm(SUM_WAT)
    crypto = NativeCryptoProvider()

    with NativeSandbox() as box:
        for size in (16, 65536):
            data = bytes(range(256)) * (size // 256) if size >= 256 else bytes(range(size))
            assert box.run(module, "sum", data, BUDGETS).output == py_sum(data)
            wasm_us = per_call_us(lambda: box.run(module, "sum", data, BUDGETS), n)
            native_us = per_call_us(lambda: py_sum(data), n)
            emit(bench="sandbox_vs_python", input_bytes=size, sandbox_us_per_task=round(wasm_us, 1),
                 python_us_per_call=round(native_us, 2), ratio=round(wasm_us / native_us, 1))
        def cold_start() -> None:
            with NativeSandbox(module_cache=0) as fresh:
                fresh.run(module, "sum", b"abc", BUDGETS)

        cold = per_call_us(cold_start, max(10, n // 10), 1)
        emit(bench="sandbox_cold_start", us_per_task=round(cold, 1),
             note="new engine + compile + run; modules are then cached by hash, so later tasks pay sandbox_us_per_task")

        store = ArtifactStore()
        requester, worker = await IdentityManager.generate(crypto), await IdentityManager.generate(crypto)
        module_cid = store.store_artifact(module)

        async def envelope(i: int) -> TaskEnvelope:
            return await TaskEnvelope(
                SWARM, f"task-{i}", module_cid, "sum", store.store_artifact(i.to_bytes(4, "little") * 4),
                hashlib.sha256(b"u32le").digest(), BUDGETS, "req", 2**52, 1,
            ).sign(requester)

        for offload in (False, True):
            executor = TaskExecutor("exec", worker, box, store, clock=Clock(), crypto=crypto, offload=offload)
            envelopes = [await envelope(i) for i in range(n)]
            start = time.perf_counter()
            for env in envelopes:
                await executor.execute(env, requester.ed25519_public)
            rate = n / (time.perf_counter() - start)
            emit(bench="executor_tasks_per_s", offload_thread=offload, tasks_per_s=round(rate, 1),
                 note="verify envelope + fetch by CID + run + store output + sign receipt, one task at a time")

        clock = Clock()
        coord = Coordinator()
        book, peer_book = ClaimBook(SWARM), ClaimBook(SWARM)
        executor = TaskExecutor("exec", worker, box, store, clock=clock, crypto=crypto, offload=False)
        times = []
        for i in range(n):
            start = time.perf_counter()
            coord.update_member("exec", {"wasm"}, 0.0, 0, clock.now_ms())
            env = await envelope(n + i)
            parsed = TaskEnvelope.from_json(env.to_json())
            await parsed.verify(crypto, requester.ed25519_public, swarm_id=SWARM)
            coord.submit(parsed, clock.now_ms())
            [assign] = coord.poll(clock.now_ms())
            claim = await book.claim(worker, assign.agent_id, parsed.task_id, parsed.envelope_hash(), clock.now_ms())
            await claim.verify(crypto, worker.ed25519_public, swarm_id=SWARM)
            peer_book.accept(claim, clock.now_ms())
            receipt = await executor.execute(parsed, requester.ed25519_public)
            await verify_receipt(receipt, env, worker.ed25519_public, store, crypto=crypto)
            coord.on_receipt(receipt, clock.now_ms())
            times.append((time.perf_counter() - start) * 1e6)
            book.forget(parsed.task_id)
            peer_book.forget(parsed.task_id)
        times.sort()
        emit(bench="round_trip_in_process", tasks=n, p50_us=round(statistics.median(times), 1),
             p99_us=round(times[int(0.99 * (n - 1))], 1),
             note="sign+verify envelope, coordinator assign, signed claim verified by a peer book, execute, verify_receipt with artifacts; no transport")


if __name__ == "__main__":
    asyncio.run(main())
