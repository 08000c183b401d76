"""Steady load through the relay: 1000 agents, 1 message/s each, topics of 10 subscribers.

Agent i subscribes to topic t(i // 10) and publishes to the next topic, so
each of the 100 topics has 10 subscribers and every message is delivered 10
times (10 000 deliveries/s at the defaults). Sends are spread evenly over each
second. Every payload carries its send time (time.time_ns(), taken just before
sealing, so the ~0.1 ms seal is included) inside a real signed, encrypted
envelope; receivers stamp arrival in `data_received` and decrypt afterwards to
compute now − sent. Agents live in a few client processes; the relay's RSS
comes from /proc/<pid>/status. The same agents then run the same schedule
through a bare aiohttp server that routes by the topic it finds by substring
(no JSON parsing), for reference. Goals (issue 3): p99 ≤ 50 ms, RSS ≤ 300 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time

from relay_common import (Commands, LoopLag, RelayLimits, ServerProcess, Worker, connect_many, cpu_plan, emit,
                          make_agents, open_lite, percentile, raise_nofile, rss_kib, shutdown, split)
from ruvector_edge.p2p.envelope import Envelope, EnvelopeHeader


def _topic(index: int, group: int, topics: int) -> str:
    return f"t{(index // group) % topics}"


async def _agents(conn, indices: list[int], total: int, group: int, urls: dict[str, str], swarm_key: bytes,
                  payload: int, concurrency: int) -> None:
    commands = Commands(conn)
    topics = total // group
    agents = await make_agents([f"a{i}" for i in indices], swarm_key)
    registrations: dict = {}
    received: dict[str, list[tuple[int, bytes]]] = {"relay": [], "bare": []}
    active = {"impl": None}
    sample: list[bytes] = []  # relay frames received by our first agent, opened in full afterwards

    def recorder(impl: str, first: bool):
        log = received[impl]

        def on_envelope(buffer, start, end) -> None:
            if active["impl"] == impl:
                log.append((time.time_ns(), bytes(buffer[start:end])))
                if first and impl == "relay" and len(sample) < 20:
                    sample.append(log[-1][1])
        return on_envelope

    # our first agent's topic is fed by the agents of the previous group: keep their registrations
    first_topic_group = (indices[0] // group - 1) % topics
    want = frozenset(f"a{first_topic_group * group + k}" for k in range(group))
    conn.send(("made",))
    await commands.get()  # connect
    start = time.monotonic()
    links = await connect_many(
        [lambda i=i, a=a: open_lite(urls["relay"], a, [_topic(i, group, topics)], recorder("relay", a is agents[0]),
                                    registrations, want)
         for i, a in zip(indices, agents)], concurrency)
    bare_links = await connect_many(
        [lambda i=i: open_lite(urls["bare"], None, [_topic(i, group, topics)], recorder("bare", False))
         for i in indices], concurrency)
    conn.send(("connected", time.monotonic() - start))
    lag = LoopLag()
    link_of = {"relay": links, "bare": bare_links}
    while True:
        command, *args = await commands.get()
        if command == "stop":
            break
        impl, t0, seconds, grace = args
        received[impl].clear()
        lag.take()
        active["impl"] = impl
        sent, seal_ns = await _send_schedule(agents, indices, link_of[impl], total, group, topics, payload, t0, seconds)
        await asyncio.sleep(max(0.0, t0 + seconds + grace - time.time()))
        active["impl"] = None
        client_lag = lag.take()
        latencies = await _latencies(agents[0], received[impl])
        verified = None
        if impl == "relay" and sample:
            for agent_id in want:
                if agent_id in registrations:
                    await agents[0].register_member(registrations[agent_id])
            results = await agents[0].receive_many(sample)
            verified = sum(1 for r in results if not isinstance(r, Exception))
        conn.send(("done", sent, latencies, seal_ns / max(sent, 1) / 1000, verified, client_lag))
    for link in links + bare_links:
        link.close()
    commands.close()


async def _send_schedule(agents, indices, links, total, group, topics, payload, t0, seconds) -> tuple[int, int]:
    """Agent i sends at t0 + i/total + k for k < seconds: 1 message/s each, evenly spread over the second."""
    slots = sorted(((k + i / total, j) for j, i in enumerate(indices) for k in range(int(seconds))))
    pad = "x" * max(0, payload - 48)
    sent = seal_ns = 0
    for offset, j in slots:
        delay = t0 + offset - time.time()
        if delay > 0.0005:
            await asyncio.sleep(delay)
        i = indices[j]
        target = f"t{(i // group + 1) % topics}"
        stamp = time.time_ns()
        published = await agents[j].publish(target, json.dumps({"sent_ns": stamp, "pad": pad}).encode())
        seal_ns += time.time_ns() - stamp
        links[j].send_text(published.frame.decode())
        sent += 1
    return sent, seal_ns


async def _latencies(agent, log: list[tuple[int, bytes]]) -> list[tuple[float, float]]:
    """(sent, now − sent in ms) for every delivery: decrypt under the swarm key (the sample is fully verified separately)."""
    envelopes = [Envelope.from_json(raw) for _, raw in log]
    items = [(e.iv, e.ciphertext, EnvelopeHeader.aad_of(e.header.canonical())) for e in envelopes]
    plaintexts = await agent.runtime.crypto.aes_gcm_open_many(agent.swarm_key.key, items)
    out = []
    for (arrived, _), plain in zip(log, plaintexts):
        if plain is not None:
            sent = json.loads(plain)["sent_ns"]
            out.append((sent / 1e9, (arrived - sent) / 1e6))
    return out


def _wait_all(workers: list[Worker], timeout: float, relay_pid: int | None, rss: list[int]) -> list[tuple]:
    """Collect one reply from each worker, sampling the relay's RSS every 0.5 s meanwhile."""
    replies: dict[int, tuple] = {}
    deadline = time.monotonic() + timeout
    while len(replies) < len(workers) and time.monotonic() < deadline:
        for index, worker in enumerate(workers):
            if index not in replies and worker.conn.poll(0):
                replies[index] = worker.recv()
        if relay_pid is not None:
            rss.append(rss_kib(relay_pid)["VmRSS"])
        time.sleep(0.5)
    if len(replies) < len(workers):
        raise SystemExit("client processes did not finish in time")
    return [replies[i] for i in range(len(workers))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--group", type=int, default=10, help="subscribers per topic")
    parser.add_argument("--seconds", type=float, default=20.0, help="duration of each phase (relay, then bare)")
    parser.add_argument("--grace", type=float, default=2.0, help="seconds to wait for stragglers after a phase")
    parser.add_argument("--payload", type=int, default=256, help="payload bytes (JSON with the send time, padded)")
    parser.add_argument("--procs", type=int, default=4, help="client processes")
    parser.add_argument("--concurrency", type=int, default=25, help="connects in flight per process")
    parser.add_argument("--queue-length", type=int, default=RelayLimits().queue_length)
    parser.add_argument("--relay-ping-interval", type=float, default=None,
                        help="diagnostic: override the relay's ping period (seconds; default: the relay's own)")
    parser.add_argument("--spread-pings", action="store_true",
                        help="diagnostic: replace the relay's ping-everyone-at-once loop by a prototype that spreads them")
    parser.add_argument("--no-bare", action="store_true", help="skip the bare reference phase")
    parser.add_argument("--profile", action="store_true", help="cProfile the relay during the join and the relay phase")
    parser.add_argument("--no-pin", action="store_true", help="do not pin servers and clients to separate CPUs")
    args = parser.parse_args()
    if args.agents % args.group:
        raise SystemExit("--agents must be a multiple of --group")
    nofile = raise_nofile()
    server_cpus, client_cpus = cpu_plan(not args.no_pin)
    limits = RelayLimits(queue_length=args.queue_length)  # default rate limits: 1 message/s is far below them
    relay = ServerProcess("relay", limits, cpus=server_cpus, ping_interval=args.relay_ping_interval,
                          spread_pings=args.spread_pings)
    bare = ServerProcess("bare-topic", cpus=server_cpus)
    urls = {"relay": relay.url, "bare": bare.url}
    servers = {"relay": relay, "bare": bare}
    key = os.urandom(32)
    rss_start = rss_kib(relay.pid)
    emit(bench="relay_load", event="setup", agents=args.agents, topics=args.agents // args.group,
         subscribers_per_topic=args.group, msgs_per_agent_per_s=1, seconds=args.seconds, payload_bytes=args.payload,
         client_procs=args.procs, server_cpus=server_cpus, client_cpus=client_cpus, nofile=nofile,
         relay_limits=limits.__dict__, loadavg=os.getloadavg())
    workers = [Worker(_agents, part, args.agents, args.group, urls, key, args.payload, args.concurrency,
                      cpus=client_cpus) for part in split(list(range(args.agents)), args.procs)]
    try:
        for worker in workers:
            worker.recv(120)
        if args.profile:
            relay.call("profile_on")
        start = time.monotonic()
        for worker in workers:
            worker.send("connect")
        join_rss: list[int] = []
        _wait_all(workers, 300, relay.pid, join_rss)
        joined = time.monotonic() - start
        if args.profile:
            emit(bench="relay_load", event="relay_profile", phase="join", top=relay.call("profile_off", 20))
        settle = relay.settle()
        emit(bench="relay_load", event="joined", connect_and_join_s=round(joined, 2), relay_queue_settle_s=round(settle, 2),
             relay_rss_mb_before=round(rss_start["VmRSS"] / 1024, 1),
             relay_rss_mb_after_join=round(rss_kib(relay.pid)["VmRSS"] / 1024, 1), relay=relay.call("stats"))
        phases = ["relay"] if args.no_bare else ["relay", "bare"]
        results = {}
        for impl in phases:
            rss: list[int] = []
            servers[impl].call("lag")
            if impl == "relay" and args.profile:
                relay.call("profile_on")
            t0 = time.time() + 1.0
            for worker in workers:
                worker.send("run", impl, t0, args.seconds, args.grace)
            replies = _wait_all(workers, args.seconds + args.grace + 120, relay.pid if impl == "relay" else None, rss)
            sent = sum(r[1] for r in replies)
            pairs = [x for r in replies for x in r[2]]
            latencies = sorted(lat for _, lat in pairs)
            by_second: dict[int, list[float]] = {}
            for sent_at, lat in pairs:
                by_second.setdefault(int(sent_at - t0), []).append(lat)
            p99_by_second = [round(percentile(sorted(by_second.get(s, [])), 99), 1) for s in range(int(args.seconds))]
            expected = sent * args.group
            line = {"sent": sent, "expected_deliveries": expected, "delivered": len(latencies),
                    "lost": expected - len(latencies),
                    "p50_ms": round(percentile(latencies, 50), 3), "p99_ms": round(percentile(latencies, 99), 3),
                    "max_ms": round(latencies[-1], 3) if latencies else None,
                    "seal_us_mean": round(sum(r[3] for r in replies) / len(replies), 1),
                    "p99_ms_by_second": p99_by_second, "server_loop": servers[impl].call("lag"),
                    "client_loops_max_lag_ms": max(r[5]["max_loop_lag_ms"] for r in replies)}
            if impl == "relay":
                hwm = rss_kib(relay.pid)
                line.update(relay_rss_mb_peak=round(max(rss) / 1024, 1), relay_rss_mb_end=round(hwm["VmRSS"] / 1024, 1),
                            relay_vmhwm_mb=round(hwm["VmHWM"] / 1024, 1),
                            relay_frames_verified_by_receiver=next((r[4] for r in replies if r[4] is not None), None),
                            relay=relay.call("stats"))
            results[impl] = line
            if impl == "relay" and args.profile:
                emit(bench="relay_load", event="relay_profile", phase="relay run", top=relay.call("profile_off", 20))
            emit(bench="relay_load", impl=impl, **line)
        relay_line = results["relay"]
        summary = {"p99_ms": relay_line["p99_ms"], "p99_goal_ms": 50, "p99_met": relay_line["p99_ms"] <= 50,
                   "rss_mb_peak": relay_line["relay_rss_mb_peak"], "rss_goal_mb": 300,
                   "rss_met": max(relay_line["relay_vmhwm_mb"], relay_line["relay_rss_mb_peak"]) <= 300, "loadavg": os.getloadavg()}
        if "bare" in results:
            summary["bare_p50_ms"], summary["bare_p99_ms"] = results["bare"]["p50_ms"], results["bare"]["p99_ms"]
        emit(bench="relay_load", relay_p50_ms=relay_line["p50_ms"], **summary)
    finally:
        shutdown(workers, relay, bare)


if __name__ == "__main__":
    main()
