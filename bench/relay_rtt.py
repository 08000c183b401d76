"""Round trip agent → relay → agent vs the same through a bare aiohttp forwarding server.

Two agents in two processes (neither is the server's): the driver sends a real
signed, encrypted direct envelope to '@echo', the echo agent answers with its
own pre-sealed envelope to '@driver'. The bare server of the same library
forwards each text message to the other connection without parsing; the
client code and the frames are the same for both. Rounds alternate bare and
relay so drift hits both alike. Prints JSON lines; target (issue 3): relay
p50 ≤ 2 × bare p50, p99 reported.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time

import aiohttp

from relay_common import (ENVELOPE_PREFIX, Commands, RelayLimits, ServerProcess, Worker, control_reply, cpu_plan, emit,
                          make_agents, open_link, percentile, shutdown)

SEAL_CAP = 500  # frames sealed per size; the loop cycles through them (the relay does not look at counters)


async def _agent(conn, role: str, urls: dict[str, str], swarm_key: bytes, sizes: list[int]) -> None:
    commands = Commands(conn)
    peer = "driver" if role == "echo" else "echo"
    (swarm,) = await make_agents([role], swarm_key)
    registrations: dict = {}
    http = aiohttp.ClientSession()
    links = {impl: await open_link(http, url, swarm if impl == "relay" else None, [], registrations)
             for impl, url in urls.items()}
    conn.send(("connected",))
    frames: dict[int, list[str]] = {}

    async def seal() -> None:
        for _ in range(200):  # the peer's registration arrives in our welcome or as a member frame
            if peer in registrations:
                break
            await asyncio.sleep(0.05)
        await swarm.register_member(registrations[peer])
        for size in sizes:
            frames[size] = [(await swarm.send_direct(peer, os.urandom(size))).frame.decode() for _ in range(SEAL_CAP)]

    if role == "echo":
        lengths: list[tuple[int, int]] = []
        counters: dict[int, int] = {}

        async def echo(ws) -> None:
            async for message in ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    break
                text = message.data
                if text.startswith(ENVELOPE_PREFIX):
                    size = min(lengths, key=lambda item: abs(item[0] - len(text)))[1]
                    i = counters[size] = counters.get(size, -1) + 1
                    await ws.send_str(frames[size][i % SEAL_CAP])
                else:
                    reply = control_reply(text, registrations)
                    if reply is not None:
                        await ws.send_str(reply)

        echoes = [asyncio.create_task(echo(ws)) for ws in links.values()]  # also reads the driver's member frame
        await seal()
        lengths.extend((len(frames[s][0]), s) for s in sizes)
        conn.send(("sealed",))
        await commands.get()  # stop
        for task in echoes:
            task.cancel()
    else:
        await seal()
        conn.send(("sealed",))
        verified = None
        while True:
            command, *args = await commands.get()
            if command == "stop":
                break
            impl, size, count, max_s = args
            samples, received = await _loop(links[impl], frames[size], count, max_s, registrations)
            if impl == "relay" and verified is None:  # prove the relay delivered real, openable envelopes
                results = await swarm.receive_many(received[:50])
                verified = sum(1 for r in results if not isinstance(r, Exception))
            conn.send(("samples", samples, verified))
    for ws in links.values():
        await ws.close()
    await http.close()
    commands.close()


async def _loop(ws, frames: list[str], count: int, max_s: float, registrations: dict) -> tuple[list[int], list[str]]:
    samples: list[int] = []
    received: list[str] = []
    deadline = time.monotonic() + max_s
    for i in range(count):
        if time.monotonic() > deadline:
            break
        frame = frames[i % len(frames)]
        start = time.perf_counter_ns()
        await ws.send_str(frame)
        while True:
            message = await ws.receive(timeout=5.0)
            if message.type != aiohttp.WSMsgType.TEXT:
                raise ConnectionError(f"link closed: {message.type} {message.data!r}")
            if message.data.startswith(ENVELOPE_PREFIX):
                break
            reply = control_reply(message.data, registrations)
            if reply is not None:
                await ws.send_str(reply)
        samples.append(time.perf_counter_ns() - start)
        if len(received) < 50:
            received.append(message.data)
    return samples, received


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="64,1024,16384", help="payload bytes, comma separated")
    parser.add_argument("--count", type=int, default=2000, help="timed round trips per size, per server, per round")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2, help="alternating bare/relay rounds per size")
    parser.add_argument("--max-seconds", type=float, default=15.0, help="time cap of one loop")
    parser.add_argument("--no-pin", action="store_true", help="do not pin servers and clients to separate CPUs")
    parser.add_argument("--profile", action="store_true", help="cProfile the relay process during relay loops")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    server_cpus, client_cpus = cpu_plan(not args.no_pin)

    # The default token bucket (200/s, burst 400) would throttle a ping-pong loop; raised, and printed below.
    limits = RelayLimits(rate_per_s=1e6, burst=1e6)
    relay = ServerProcess("relay", limits, cpus=server_cpus)
    bare = ServerProcess("bare", cpus=server_cpus)
    urls = {"bare": bare.url, "relay": relay.url}
    key = os.urandom(32)
    workers = []
    try:
        echo = Worker(_agent, "echo", urls, key, sizes, cpus=client_cpus)
        workers.append(echo)
        echo.recv()
        driver = Worker(_agent, "driver", urls, key, sizes, cpus=client_cpus)
        workers.append(driver)
        driver.recv()
        echo.recv()
        driver.recv()
        emit(bench="relay_rtt", event="setup", server_cpus=server_cpus, client_cpus=client_cpus,
             relay_limits=relay.limits.__dict__, topic="@agent (direct envelope)", loadavg=os.getloadavg())
        if args.profile:
            relay.call("profile_on")
        for size in sizes:
            pooled: dict[str, list[int]] = {"bare": [], "relay": []}
            verified = None
            for round_index in range(args.rounds):
                order = ("bare", "relay") if round_index % 2 == 0 else ("relay", "bare")
                for impl in order:
                    driver.send("run", impl, size, args.warmup + args.count, args.max_seconds)
                    _, samples, checked = driver.recv(args.max_seconds + 30)
                    pooled[impl].extend(samples[args.warmup:])
                    verified = checked if checked is not None else verified
            stats = {}
            for impl, samples in pooled.items():
                ordered = sorted(samples)
                stats[impl] = {"p50_us": round(percentile(ordered, 50) / 1000, 1),
                               "p99_us": round(percentile(ordered, 99) / 1000, 1),
                               "mean_us": round(statistics.fmean(ordered) / 1000, 1) if ordered else None,
                               "n": len(ordered)}
                emit(bench="relay_rtt", impl=impl, payload_bytes=size, **stats[impl])
            ratio = stats["relay"]["p50_us"] / stats["bare"]["p50_us"]
            emit(bench="relay_rtt", payload_bytes=size, p50_ratio_relay_vs_bare=round(ratio, 3),
                 p99_ratio_relay_vs_bare=round(stats["relay"]["p99_us"] / stats["bare"]["p99_us"], 3),
                 target_ratio=2.0, met=ratio <= 2.0, relay_frames_verified_by_receiver=verified)
        if args.profile:
            emit(bench="relay_rtt", event="relay_profile", top=relay.call("profile_off", 20))
        emit(bench="relay_rtt", event="relay_stats", **relay.call("stats"))
    finally:
        shutdown(workers, relay, bare)


if __name__ == "__main__":
    main()
