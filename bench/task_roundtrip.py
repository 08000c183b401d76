"""Task round trip through the relay: submit → claim → execute a trivial module → verified receipt (issue 7).

The relay runs in its own process, each executor agent in its own process
(a worker with its own wasmtime sandbox), the requester here. Side by side in
the same run: a signed PING/PONG between the requester and an executor through
the same relay (the transport's share of a round trip), and the same task with
no transport at all (TaskExecutor + verify_receipt in one process, as in
bench/tasks.py). Then throughput: a batch of tasks submitted at once, with 1
and with 2 executors, as tasks/s in total and per executor. Prints JSON lines;
bounded by --count and timeouts.

The relay's per-connection rate limit (RelayLimits.rate_per_s, 200 frames/s by
default) drops what exceeds it; frames per task are measured and reported, so
the default limit's cap on tasks/s per member follows. --relay-rate sets it for
the run (the default here is raised so the task machinery, not the limit, is measured).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time

from relay_common import Commands, RelayLimits, ServerProcess, Worker, emit, percentile, shutdown

from ruvector_edge.agent import AgentRole, SwarmAgent, SwarmConfig
from ruvector_edge.artifacts import ArtifactStore
from ruvector_edge.p2p import IdentityManager
from ruvector_edge.platform.base import Clock
from ruvector_edge.platform.native import NativeCryptoProvider
from ruvector_edge.tasks import Budgets, NativeSandbox, TaskEnvelope, TaskExecutor, verify_receipt
from ruvector_edge.tasks.samples import SAMPLE_ENTRYPOINT, sample_module

BUDGETS = Budgets(fuel_limit=1_000_000, memory_mb=2, timeout_ms=5_000)
INPUT = b"hello, swarm"


async def _executor(conn, url: str, key: bytes, agent_id: str, settle_ms: int) -> None:
    commands = Commands(conn)
    agent = await SwarmAgent.new(SwarmConfig(agent_id=agent_id, role=AgentRole.WORKER, swarm_key=key,
                                             coordinator_url=None, task_settle_ms=settle_ms))
    await agent.join_swarm(url, timeout=30)
    conn.send(("joined",))
    try:
        while True:
            command = await commands.get(timeout=600)
            if command[0] == "stop":
                break
            if command[0] == "executed":
                conn.send(("executed", agent.swarm_tasks.executed))
    finally:
        commands.close()
        await agent.leave()


async def _wait_peers(agent: SwarmAgent, ids: set[str], timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while not all(agent.peers.get(p) is not None and agent.peers[p].joined and not agent.peers[p].left for p in ids):
        if time.monotonic() > end:
            raise SystemExit(f"executors {sorted(ids)} did not join within {timeout} s")
        await asyncio.sleep(0.05)


async def _wait_gone(agent: SwarmAgent, ids: set[str], timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while not all(agent.peers[p].left for p in ids):
        if time.monotonic() > end:
            raise SystemExit(f"executors {sorted(ids)} did not leave within {timeout} s")
        await asyncio.sleep(0.05)


def summary(times_ms: list[float]) -> dict:
    times_ms = sorted(times_ms)
    return {"p50_ms": round(statistics.median(times_ms), 3), "p99_ms": round(percentile(times_ms, 99), 3)}


async def in_process(count: int) -> list[float]:
    """The same task with no transport: sign envelope, execute, verify the receipt with artifacts."""
    crypto = NativeCryptoProvider()
    store = ArtifactStore()
    requester, worker = await IdentityManager.generate(crypto), await IdentityManager.generate(crypto)
    module_cid, input_cid = store.store_artifact(sample_module()), store.store_artifact(INPUT)
    times = []
    with NativeSandbox() as box:
        executor = TaskExecutor("exec", worker, box, store, clock=Clock(), crypto=crypto)
        for i in range(count):
            start = time.perf_counter()
            envelope = await TaskEnvelope("bench", f"task-{i}", module_cid, SAMPLE_ENTRYPOINT, input_cid, bytes(32),
                                          BUDGETS, "req", 2**52, 0).sign(requester)
            receipt = await executor.execute(envelope, requester.ed25519_public)
            await verify_receipt(receipt, envelope, worker.ed25519_public, store, crypto=crypto)
            times.append((time.perf_counter() - start) * 1000)
    return times


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=200, help="sequential round trips per measurement")
    parser.add_argument("--batch", type=int, default=300, help="tasks submitted at once for throughput")
    parser.add_argument("--relay-rate", type=float, default=20_000.0, help="relay frames/s per connection")
    args = parser.parse_args()
    key = os.urandom(32)
    rate = args.relay_rate
    relay = ServerProcess("relay", RelayLimits(rate_per_s=rate, burst=2 * rate))
    workers: list[Worker] = []
    requester = None
    try:
        workers.append(Worker(_executor, relay.url, key, "exec-1", SwarmConfig.task_settle_ms))
        workers[0].recv(60)
        requester = await SwarmAgent.new(SwarmConfig(agent_id="requester", role=AgentRole.SCOUT, swarm_key=key,
                                                     coordinator_url=None))
        await requester.join_swarm(relay.url, timeout=30)
        await _wait_peers(requester, {"exec-1"})
        module = sample_module()
        for _ in range(10):  # warm up: module compiled and cached, artifacts fetched once
            await requester.wait_receipt(await requester.submit_task(module, INPUT, budgets=BUDGETS), timeout=30)

        rtt, pings = [], []
        frames_before = relay.call("stats")["frames_in"]
        for i in range(args.count):
            start = time.perf_counter()
            task_id = await requester.submit_task(module, INPUT + i.to_bytes(4, "little"), budgets=BUDGETS)
            receipt = await requester.wait_receipt(task_id, timeout=30)
            rtt.append((time.perf_counter() - start) * 1000)
            assert requester.get_artifact(receipt.output_cid) == (INPUT + i.to_bytes(4, "little")).upper()
        frames = relay.call("stats")["frames_in"] - frames_before
        for i in range(args.count):
            pings.append(await requester.ping("exec-1") * 1000)
        local = await in_process(args.count)
        emit(bench="task_round_trip_relay", tasks=args.count, executors=1, **summary(rtt),
             frames_per_task=round(frames / args.count, 2), relay_rate_per_s=rate,
             relay_drops=relay.call("stats")["drops"],
             note="submit (store + sign + broadcast) -> claim -> fetch input by CID -> run sample module -> "
                  "TASK_RESULT -> requester fetches output, verify_receipt with artifacts")
        emit(bench="signed_ping_relay", pings=args.count, **summary(pings), note="same agents, same relay, same run")
        emit(bench="task_round_trip_in_process", tasks=args.count, **summary(local),
             note="sign envelope + execute + verify_receipt, no transport, no claim")

        shutdown(workers)
        workers.clear()
        await _wait_gone(requester, {"exec-1"})
        for executors, settle_ms in ((1, SwarmConfig.task_settle_ms), (2, SwarmConfig.task_settle_ms), (2, 20)):
            names = [f"exec-{executors}x{settle_ms}-{i}" for i in range(executors)]
            workers = [Worker(_executor, relay.url, key, name, settle_ms) for name in names]
            for w in workers:
                w.recv(60)
            await _wait_peers(requester, set(names))
            for w in workers:
                w.send("executed")
            before = [w.recv(30)[1] for w in workers]
            start = time.perf_counter()
            ids = [await requester.submit_task(module, INPUT + i.to_bytes(4, "little"), budgets=BUDGETS)
                   for i in range(args.batch)]
            for task_id in ids:
                await requester.wait_receipt(task_id, timeout=120)
            elapsed = time.perf_counter() - start
            for w in workers:
                w.send("executed")
            ran = [w.recv(30)[1] - b for w, b in zip(workers, before)]
            shutdown(workers)
            workers.clear()
            await _wait_gone(requester, set(names))
            emit(bench="task_throughput_relay", executors=executors, claim_settle_ms=settle_ms, tasks=args.batch,
                 relay_rate_per_s=rate, relay_drops=relay.call("stats")["drops"],
                 tasks_per_s=round(args.batch / elapsed, 1), tasks_per_s_per_executor=round(args.batch / elapsed / executors, 1),
                 executed_per_executor=ran, cpus=os.cpu_count(),
                 note="batch submitted at once; every receipt verified by the requester with artifacts; "
                      "with 2 executors a claim waits claim_settle_ms for rival claims before running")
    finally:
        if requester is not None:
            await requester.leave()
        shutdown(workers, relay)


if __name__ == "__main__":
    asyncio.run(main())
