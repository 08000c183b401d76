"""Fan-out deliveries/s through the relay vs a bare aiohttp broadcast server, at 100 and 1000 agents.

N receiving agents (spread over a few processes, asyncio in each) are connected
to both servers; on the relay they joined the swarm (signed hello) and
subscribed to one topic. One publisher in its own process sends M real
envelopes (~1 KiB) to that topic as fast as it can; every receiver counts what
arrives. deliveries/s = deliveries / (last delivery − first send), all on the
machine clock. The bare server (same library) forwards each message to every
other connection without parsing. Rounds alternate bare and relay; the best
round of each is compared. Target (issue 3): relay ≥ 0.8 × bare.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

import aiohttp

from relay_common import (ENVELOPE_PREFIX, Commands, RelayLimits, ServerProcess, Worker, connect_many,
                          control_reply, cpu_plan, cpu_seconds, emit, make_agents, open_lite, open_link,
                          payload_for_frame, raise_nofile, shutdown, split)

TOPIC = "fanout"


async def _drain(ws, registrations: dict) -> None:
    async for message in ws:
        if message.type != aiohttp.WSMsgType.TEXT:
            break
        if not message.data.startswith(ENVELOPE_PREFIX):
            reply = control_reply(message.data, registrations, frozenset())
            if reply is not None:
                await ws.send_str(reply)


async def _receivers(conn, names: list[str], urls: dict[str, str], swarm_key: bytes, concurrency: int) -> None:
    commands = Commands(conn)
    agents = await make_agents(names, swarm_key)
    registrations: dict = {}
    want = frozenset({"pub"})
    state = {"impl": None, "count": 0, "target": 0, "last": 0.0, "sample": [], "done": asyncio.Event()}

    def counter(impl: str, first: bool = False):
        def on_envelope(buffer, start, end) -> None:
            if state["impl"] == impl:
                state["count"] += 1
                state["last"] = time.time()
                if first and len(state["sample"]) < 20:  # one agent's copies: each frame once
                    state["sample"].append(bytes(buffer[start:end]).decode())
                if state["count"] >= state["target"]:
                    state["done"].set()
        return on_envelope

    conn.send(("made",))
    await commands.get()  # connect
    start = time.monotonic()
    links = await connect_many(
        [lambda a=a: open_lite(urls["relay"], a, [TOPIC], counter("relay", a is agents[0]), registrations, want) for a in agents],
        concurrency)
    links += await connect_many([lambda: open_lite(urls["bare"], None, [], counter("bare")) for _ in agents],
                                concurrency)
    conn.send(("connected", time.monotonic() - start))
    verified = None
    while True:
        command, *args = await commands.get()
        if command == "stop":
            break
        impl, frames, timeout = args
        state.update(impl=impl, count=0, last=0.0, target=frames * len(agents))
        state["done"].clear()
        conn.send(("armed",))
        try:
            await asyncio.wait_for(state["done"].wait(), timeout)
        except asyncio.TimeoutError:
            pass
        state["impl"] = None
        if verified is None and state["sample"] and "pub" in registrations:
            await agents[0].register_member(registrations["pub"])
            results = await agents[0].receive_many(state["sample"])
            verified = sum(1 for r in results if not isinstance(r, Exception))
        conn.send(("counted", state["count"], state["last"], verified))
    for link in links:
        link.close()
    commands.close()


async def _publisher(conn, urls: dict[str, str], swarm_key: bytes, payload: int, frames: int) -> None:
    commands = Commands(conn)
    (swarm,) = await make_agents(["pub"], swarm_key)
    registrations: dict = {}
    http = aiohttp.ClientSession()
    links = {impl: await open_link(http, url, swarm if impl == "relay" else None, [], registrations)
             for impl, url in urls.items()}
    drains = [asyncio.create_task(_drain(ws, registrations)) for ws in links.values()]
    sealed = [p.frame.decode() for p in await swarm.publish_many(TOPIC, [os.urandom(payload) for _ in range(frames)])]
    conn.send(("ready", len(sealed[0])))
    while True:
        command, *args = await commands.get()
        if command == "stop":
            break
        impl, count = args
        ws = links[impl]
        start = time.time()
        for i in range(count):
            await ws.send_str(sealed[i % len(sealed)])
        conn.send(("published", start, time.time()))
    for task in drains:
        task.cancel()
    for ws in links.values():
        await ws.close()
    await http.close()
    commands.close()


def _run_round(impl: str, frames: int, receivers: list[Worker], publisher: Worker, server: ServerProcess,
               timeout: float) -> dict:
    for worker in receivers:
        worker.send("run", impl, frames, timeout)
    for worker in receivers:
        worker.recv()
    cpu_before = cpu_seconds(server.pid)
    clients_before = sum(cpu_seconds(w.process.pid) for w in receivers)
    publisher.send("publish", impl, frames)
    _, start, sent_end = publisher.recv(timeout + 30)
    results = [worker.recv(timeout + 30) for worker in receivers]
    delivered = sum(r[1] for r in results)
    last = max(r[2] for r in results)
    cpu_used = cpu_seconds(server.pid) - cpu_before
    clients_used = sum(cpu_seconds(w.process.pid) for w in receivers) - clients_before
    elapsed = max(last - start, 1e-9)
    verified = next((r[3] for r in results if r[3] is not None), None)
    return {"deliveries": delivered, "seconds": round(elapsed, 4), "deliveries_per_s": round(delivered / elapsed),
            "publish_seconds": round(sent_end - start, 4), "server_cpu_util": round(cpu_used / elapsed, 2),
            "receivers_cpu_util": round(clients_used / elapsed, 2),
            "verified": verified}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--agents", default="100,1000", help="receiver counts, comma separated")
    parser.add_argument("--frames", default="400,60", help="frames published per round, one per agent count")
    parser.add_argument("--frame-bytes", type=int, default=1024, help="approximate envelope frame size")
    parser.add_argument("--procs", type=int, default=4, help="receiver processes")
    parser.add_argument("--rounds", type=int, default=3, help="alternating bare/relay rounds (after one warm-up each)")
    parser.add_argument("--concurrency", type=int, default=25, help="connects in flight per process")
    parser.add_argument("--timeout", type=float, default=20.0, help="cap on one round, seconds")
    parser.add_argument("--no-pin", action="store_true", help="do not pin servers and clients to separate CPUs")
    parser.add_argument("--profile", action="store_true", help="cProfile the relay process during relay rounds")
    args = parser.parse_args()
    counts = [int(n) for n in args.agents.split(",")]
    frame_counts = [int(m) for m in args.frames.split(",")]
    if len(frame_counts) != len(counts):
        raise SystemExit("--frames needs one value per --agents value")
    nofile = raise_nofile()
    server_cpus, client_cpus = cpu_plan(not args.no_pin)
    # Defaults are 200 frames/s (burst 400) per connection and 1024 queued frames; a benchmark publisher
    # sends a round as fast as it can, and a join storm queues up to N member frames per connection.
    limits = RelayLimits(rate_per_s=1e6, burst=1e6, queue_length=max(frame_counts) + 2 * max(counts) + 1024)
    relay = ServerProcess("relay", limits, cpus=server_cpus)
    bare = ServerProcess("bare", cpus=server_cpus)
    servers = {"relay": relay, "bare": bare}
    urls = {"relay": relay.url, "bare": bare.url}
    key = os.urandom(32)
    emit(bench="relay_fanout", event="setup", server_cpus=server_cpus, client_cpus=client_cpus, nofile=nofile,
         receiver_procs=args.procs, relay_limits=limits.__dict__, loadavg=os.getloadavg(),
         note="relay rate_per_s/burst/queue_length raised for the benchmark publisher and join storm")
    workers: list[Worker] = []
    publisher: Worker | None = None
    try:
        for n, frames in zip(counts, frame_counts):
            names = [f"r{n}-{i}" for i in range(n)]
            receivers = [Worker(_receivers, part, urls, key, args.concurrency, cpus=client_cpus)
                         for part in split(names, args.procs)]
            workers.extend(receivers)
            for worker in receivers:
                worker.recv(120)
            start = time.monotonic()
            for worker in receivers:
                worker.send("connect")
            per_proc = [worker.recv(180)[1] for worker in receivers]
            joined = time.monotonic() - start
            if publisher is None:
                payload = payload_for_frame(args.frame_bytes)
                publisher = Worker(_publisher, urls, key, payload, max(frame_counts), cpus=client_cpus)
                workers.append(publisher)
                frame_len = publisher.recv(120)[1]
            settle = relay.settle()
            emit(bench="relay_fanout", event="joined", agents=n, connect_and_join_s=round(joined, 2),
                 slowest_process_s=round(max(per_proc), 2), relay_queue_settle_s=round(settle, 2),
                 relay=relay.call("stats"))
            for impl in ("bare", "relay"):  # warm-up, not reported
                _run_round(impl, max(1, frames // 4), receivers, publisher, servers[impl], args.timeout)
            best: dict[str, dict] = {}
            for round_index in range(args.rounds):
                order = ("bare", "relay") if round_index % 2 == 0 else ("relay", "bare")
                for impl in order:
                    if impl == "relay" and args.profile:
                        relay.call("profile_on")
                    result = _run_round(impl, frames, receivers, publisher, servers[impl], args.timeout)
                    if impl == "relay" and args.profile:
                        emit(bench="relay_fanout", event="relay_profile", agents=n, top=relay.call("profile_off", 20))
                    emit(bench="relay_fanout", impl=impl, agents=n, frames=frames, frame_bytes=frame_len,
                         round=round_index, expected=frames * n, **result)
                    if impl not in best or result["deliveries_per_s"] > best[impl]["deliveries_per_s"]:
                        best[impl] = result
            ratio = best["relay"]["deliveries_per_s"] / best["bare"]["deliveries_per_s"]
            emit(bench="relay_fanout", agents=n, bare_deliveries_per_s=best["bare"]["deliveries_per_s"],
                 relay_deliveries_per_s=best["relay"]["deliveries_per_s"], ratio_relay_vs_bare=round(ratio, 3),
                 target_ratio=0.8, met=ratio >= 0.8, relay_frames_verified_by_receiver=best["relay"]["verified"],
                 relay=relay.call("stats"))
            for worker in receivers:
                worker.send("stop")
            for worker in receivers:
                worker.join()
                workers.remove(worker)
    finally:
        shutdown(workers, relay, bare)


if __name__ == "__main__":
    main()
