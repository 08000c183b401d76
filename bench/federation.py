"""Relays federated over NATS (issue 16) beside one relay carrying the same total load, in one run.

Phases, all on loopback with real processes (nats-server, edge-relay, clients in their own processes):
- load: N agents × R msg/s. Agent i subscribes to topic t(i // group) and publishes to the next
  topic, so every frame has `group` receivers. "single": every agent on one plain edge-relay;
  "federated": agent i on relay i % 3 of three relays, each joined to its own node of a 3-node
  NATS cluster (a topic's subscribers and publishers are spread over the relays). Frames are real
  signed, encrypted envelopes sealed before the run (so sealing does not throttle the senders);
  latency = arrival − send, matched by message id across processes. Reports p50/p99, deliveries/s,
  and the relays' and nats-servers' CPU seconds and RSS per delivered frame.
- failover: an agent (the real RelayClient, default backoff) on relay X with relay Y as its next URL;
  another agent sends 100 frames/s through relay Z; X is SIGKILLed: time until the agent has its
  first frame again through Y, and frames lost once the sender stops.
- replay: an agent leaves after seeing stream sequence S; 10,000 frames are sent on its topic; it
  comes back with `resume: S`: time from its hello to the 10,000th frame.
- scale (--scale N,N,…): N idle agents (answering the relays' pings at the default interval) all
  subscribed to one topic, one relay vs three federated; one agent broadcasts 20 frames, 100 ms
  apart: the p99 of a broadcast's delivery. The curve stops at the first N past 100 ms.
Goals (issue 16): federated p50 ≤ single p50 + 5 ms at 300 × 100 msg/s; deliveries/s ≥ 0.9× single;
failover ≤ 3 s with 0 lost; replay of 10,000 ≤ 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from relay_common import (Commands, LiteLink, Worker, connect_many, cpu_seconds, emit, make_agents, percentile,
                          raise_nofile, rss_kib, shutdown, split)
from ruvector_edge.transport import relay_wire as rw

HOST = "127.0.0.1"
NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"
_MID = re.compile(rb'"message_id":"([0-9a-f]+)"')
_SEQ = re.compile(r',"op":"deliver","seq":(\d+)}$')


# Servers -------------------------------------------------------------------------------------------
def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class Nats:
    """A 3-node nats-server cluster with JetStream (file storage) in a temporary directory."""

    def __init__(self, root: Path, nodes: int = 3) -> None:
        ports = [(free_port(), free_port()) for _ in range(nodes)]
        self.urls = [f"nats://{HOST}:{p}" for p, _ in ports]
        self.procs = []
        for index, (port, cport) in enumerate(ports):
            store = root / f"n{index}"
            store.mkdir()
            conf = root / f"n{index}.conf"
            conf.write_text("max_payload: 2097152\n")  # a relay forwards frames up to its own 2 MiB limit
            routes = ",".join(f"nats://{HOST}:{c}" for i, (_, c) in enumerate(ports) if i != index)
            self.procs.append(subprocess.Popen(
                [NATS_SERVER, "-c", str(conf), "-a", HOST, "-p", str(port), "-js", "-sd", str(store), "-n", f"n{index}",
                 "--cluster_name", "bench", "--cluster", f"nats://{HOST}:{cport}",
                 "--routes", routes], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
        asyncio.run(self._ready())

    async def _ready(self, timeout: float = 60.0) -> None:
        import nats

        deadline = time.monotonic() + timeout
        for url in self.urls:
            while True:
                try:
                    nc = await nats.connect(url, connect_timeout=1, allow_reconnect=False, error_cb=_quiet)
                    try:
                        await nc.jetstream().account_info()
                        break
                    finally:
                        await nc.close()
                except Exception:  # noqa: BLE001 - until the cluster elected its meta leader, bounded
                    if time.monotonic() > deadline:
                        raise SystemExit(f"JetStream at {url} not ready")
                    await asyncio.sleep(0.2)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            proc.wait(10)


async def _quiet(exc: Exception) -> None:
    """nats-py prints every refused connect while the cluster starts; readiness is polled instead."""


class Relay:
    """An edge-relay process (the real CLI), plain or joined to NATS."""

    def __init__(self, nats_url: str | None = None, relay_id: str | None = None) -> None:
        exe = Path(sys.executable).with_name("edge-relay")
        args = [str(exe), "--listen", f"{HOST}:0", "--memory-only"]
        if nats_url:
            args += ["--nats", nats_url, "--relay-id", relay_id or f"bench-{os.urandom(3).hex()}"]
        env = {**os.environ, "EDGE_LOG": "warning"}
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
                                     cwd="/", start_new_session=True)
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        found = re.search(r"listening on http://[^:]+:(\d+)/", line)
        if found is None:
            raise SystemExit(f"edge-relay did not start: {line!r}")
        self.url = f"ws://{HOST}:{found.group(1)}/ws"
        self.pid = self.proc.pid

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:  # still draining an overload: not worth waiting for
                self.kill()


def usage(pids: list[int]) -> tuple[float, int]:
    """(CPU seconds, RSS KiB) summed over processes."""
    return sum(cpu_seconds(p) for p in pids), sum(rss_kib(p)["VmRSS"] for p in pids)


# Clients ---------------------------------------------------------------------------------------------
class FedLink(LiteLink):
    """A LiteLink that also takes a federated relay's deliver frames as envelopes (and keeps their sequence)."""

    last_seq = 0

    @classmethod
    async def connect(cls, url: str, on_envelope, source: str = "127.0.0.1") -> "FedLink":
        """As LiteLink.connect, from a chosen loopback address: a relay admits 256 connections per address."""
        hostport, _, path = url.removeprefix("ws://").partition("/")
        host, _, port = hostport.partition(":")
        loop = asyncio.get_running_loop()
        _, link = await loop.create_connection(lambda: cls(on_envelope), host, int(port), local_addr=(source, 0))
        key = base64.b64encode(os.urandom(16)).decode()
        link.transport.write(  # type: ignore[union-attr]
            f"GET /{path} HTTP/1.1\r\nHost: {hostport}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
        await asyncio.wait_for(link.upgraded, 30)
        return link

    def _control(self, text: str) -> None:
        if text.startswith('{"envelope":'):
            self.last_seq = max(self.last_seq, int(_SEQ.search(text).group(1)))  # type: ignore[union-attr]
            data = text.encode()
            self.on_envelope(data, 0, len(data))
            return
        super()._control(text)

    async def hello(self, swarm, resume: int | None, timeout: float = 60.0) -> None:
        """challenge → hello (with `resume`) → welcome; control frames are handled on arrival afterwards."""
        assert self.controls is not None
        deadline = time.monotonic() + timeout
        try:
            while True:
                frame = rw.decode(await asyncio.wait_for(self.controls.get(), max(0.1, deadline - time.monotonic())),
                                  2 * 1024 * 1024)
                if isinstance(frame, rw.Control) and frame.op == "challenge":
                    reg = swarm.registration
                    proof = await swarm.identity.sign(rw.auth_bytes(reg.swarm, reg.agent_id, rw.challenge_of(frame)))
                    self.send_text(rw.hello(reg, proof, resume))
                elif isinstance(frame, rw.Control) and frame.op == "welcome":
                    return
        finally:
            self.release_controls()


def source_of(index: int) -> str:
    return f"127.0.{1 + index // 200}.1"


async def open_fed(url: str, swarm, topics: list[str], on_envelope, resume: int | None = None,
                   source: str = "127.0.0.1") -> FedLink:
    link = await FedLink.connect(url, on_envelope, source)
    await link.hello(swarm, resume)
    if topics:
        link.send_text(rw.subscribe(topics))
    return link


def arrivals(log: list[tuple[bytes, int]]):
    def on_envelope(buffer, start, end) -> None:
        found = _MID.search(buffer, start, end)
        if found is not None:
            log.append((found.group(1), time.time_ns()))
    return on_envelope


async def _load_clients(conn, indices: list[int], total: int, group: int, rate: int, seconds: float,
                        payload: int, key: bytes, concurrency: int) -> None:
    """Agents `indices`: connect to the relays they are told, then run the paced send schedule."""
    commands = Commands(conn)
    topics = total // group
    agents = await make_agents([f"a{i}" for i in indices], key)
    frames: list[list[tuple[bytes, str]]] = []
    body = os.urandom(max(1, payload))
    count = int(rate * seconds)
    for i, agent in zip(indices, agents):
        published = await agent.publish_many(f"t{(i // group + 1) % topics}", [body] * count)
        frames.append([(p.message_id.encode(), p.frame.decode()) for p in published])
    conn.send(("made",))
    links: list[FedLink] = []
    while True:
        command, *args = await commands.get()
        if command == "stop":
            break
        if command == "connect":
            urls = args[0]
            for link in links:
                link.close()
            received: list[tuple[bytes, int]] = []
            on = arrivals(received)
            links = await connect_many([lambda i=i, a=a: open_fed(urls[i % len(urls)], a, [f"t{(i // group) % topics}"], on,
                                                                  source=source_of(i))
                                        for i, a in zip(indices, agents)], concurrency)
            conn.send(("connected",))
        elif command == "run":
            t0, grace = args
            received.clear()
            sent = await _schedule(links, frames, rate, seconds, t0)
            await asyncio.sleep(max(0.0, t0 + seconds + grace - time.time()))
            conn.send(("done", sent, list(received)))
    for link in links:
        link.close()
    commands.close()


async def _schedule(links, frames, rate: int, seconds: float, t0: float) -> list[tuple[bytes, int]]:
    """Each agent sends `rate` frames/s, agents offset evenly within each period; sent in 2 ms batches."""
    n = len(links)
    period = 1.0 / rate
    slots = sorted((k * period + j * period / n, j, k) for j in range(n) for k in range(len(frames[0])))
    sent: list[tuple[bytes, int]] = []
    pos = 0
    while pos < len(slots):
        now = time.time()
        due = now - t0
        if slots[pos][0] > due:
            await asyncio.sleep(min(0.002, slots[pos][0] - due))
            continue
        stamp = time.time_ns()
        while pos < len(slots) and slots[pos][0] <= due:
            _, j, k = slots[pos]
            mid, text = frames[j][k]
            links[j].send_text(text)
            sent.append((mid, stamp))
            pos += 1
        await asyncio.sleep(0)
    return sent


def run_load(urls: list[str], workers: list[Worker], pids: list[int], group: int, seconds: float,
             grace: float, nats_pids: tuple[int, ...] = ()) -> dict:
    for worker in workers:
        worker.send("connect", urls)
    for worker in workers:
        worker.recv(300)
    time.sleep(2.0)  # presence and subscriptions settle on every relay
    cpu0, _ = usage(pids)
    nats_cpu0, _ = usage(list(nats_pids))
    rss_peak = 0
    t0 = time.time() + 1.0
    for worker in workers:
        worker.send("run", t0, grace)
    replies: dict[int, tuple] = {}
    deadline = time.monotonic() + seconds + grace + 300
    while len(replies) < len(workers) and time.monotonic() < deadline:
        for index, worker in enumerate(workers):
            if index not in replies and worker.conn.poll(0):
                replies[index] = worker.recv()
        rss_peak = max(rss_peak, usage(pids)[1])
        time.sleep(0.25)
    if len(replies) < len(workers):
        raise SystemExit("client processes did not finish in time")
    cpu1, _ = usage(pids)
    nats_cpu = usage(list(nats_pids))[0] - nats_cpu0
    sent_at = {mid: ns for reply in replies.values() for mid, ns in reply[1]}
    latencies = sorted((ns - sent_at[mid]) / 1e6 for reply in replies.values() for mid, ns in reply[2] if mid in sent_at)
    expected = len(sent_at) * group
    delivered = len(latencies)
    return {"sent": len(sent_at), "expected_deliveries": expected, "delivered": delivered, "lost": expected - delivered,
            "deliveries_per_s": round(delivered / seconds), "p50_ms": round(percentile(latencies, 50), 2),
            "p99_ms": round(percentile(latencies, 99), 2), "server_cpu_s": round(cpu1 - cpu0, 2),
            "server_cpu_us_per_delivery": round((cpu1 - cpu0) / max(1, delivered) * 1e6, 1),
            "server_rss_mb_peak": round(rss_peak / 1024, 1),
            "nats_cpu_us_per_delivery": round(nats_cpu / max(1, delivered) * 1e6, 1)}


# Failover and replay (in this process, with the real agent link) ---------------------------------------
async def failover(nats_urls: list[str], rate: int = 100, seconds: float = 6.0, kill_at: float = 2.0) -> dict:
    from ruvector_edge.p2p import P2PSwarm
    from ruvector_edge.transport.websocket import RelayClient

    x, y, z = Relay(nats_urls[0]), Relay(nats_urls[1]), Relay(nats_urls[2])
    key = os.urandom(32)
    alice, bob = await P2PSwarm.create("alice", key), await P2PSwarm.create("bob", key)
    got: dict[str, int] = {}

    async def on_frame(raw: str) -> None:
        got[_MID.search(raw.encode()).group(1).decode()] = time.monotonic_ns()  # type: ignore[union-attr]

    la = RelayClient(f"{x.url},{y.url}", alice, on_envelope=on_frame, topics=["f"])
    lb = RelayClient(z.url, bob, on_envelope=on_frame, topics=["g"])
    try:
        for link in (la, lb):
            await link.start()
            await link.wait_connected(30)
            await link.ping()
        frames = await bob.publish_many("f", [b"x" * 200] * int(rate * seconds))
        await asyncio.sleep(2.0)  # presence
        start = time.monotonic()
        killed_ns = 0
        for k, published in enumerate(frames):
            await asyncio.sleep(max(0.0, start + k / rate - time.monotonic()))
            if not killed_ns and k >= kill_at * rate:
                x.kill()
                killed_ns = time.monotonic_ns()
            await lb.send(published.frame)
        deadline = time.monotonic() + 30
        while len(got) < len(frames) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        after = sorted(ns for mid, ns in got.items() if ns > killed_ns)
        lost = len({p.message_id for p in frames} - set(got))
        return {"frames_sent": len(frames), "frames_lost": lost, "moved_to_next_relay": la.target == y.url,
                "failover_s": round((after[0] - killed_ns) / 1e9, 3) if after else None}
    finally:
        for link in (la, lb):
            await link.stop()
        for relay in (x, y, z):
            relay.stop()


async def replay(nats_urls: list[str], count: int = 10_000) -> dict:
    from ruvector_edge.p2p import P2PSwarm

    y, z = Relay(nats_urls[1]), Relay(nats_urls[2])
    key = os.urandom(32)
    alice, carol = [await P2PSwarm.create(n, key) for n in ("alice", "carol")]
    # the relay lets one connection send 200 frames/s (burst 400): 25 senders of 400 frames each
    senders = await make_agents([f"b{k}" for k in range(25)], key)
    seen: list = []
    witness: list = []
    links = []
    try:
        la = await open_fed(y.url, alice, ["r"], arrivals(seen))
        lc = await open_fed(z.url, carol, ["r"], arrivals(witness))
        lbs = [await open_fed(z.url, b, [], arrivals([])) for b in senders]
        links += [lc, *lbs]
        await asyncio.sleep(2.0)  # presence and subscriptions
        first = await senders[0].publish("r", b"first")
        lbs[0].send_text(first.frame.decode())
        await _until(lambda: la.last_seq > 0, 10, "alice's first sequence")
        resume = la.last_seq
        la.close()
        batches = [await b.publish_many("r", [b"y" * 200] * (count // len(senders))) for b in senders]
        frames = []
        for k in range(count // len(senders)):
            for link, batch in zip(lbs, batches):
                link.send_text(batch[k].frame.decode())
                frames.append(batch[k])
            await asyncio.sleep(0.002)
        await _until(lambda: len(witness) >= count + 1, 60, f"carol to get {count + 1} frames")
        back: list = []
        start = time.monotonic()
        link = await open_fed(y.url, alice, ["r"], arrivals(back), resume=resume)
        links.append(link)
        # Her resume point is the relay's confirmed position, which may lag what she had live: `first`
        # may come again (an agent's replay guard skips it), so count what she had not had.
        first_id = first.message_id.encode()  # arrivals() keeps message ids as bytes
        fresh = lambda: [mid for mid in dict.fromkeys(mid for mid, _ in back) if mid != first_id]  # noqa: E731
        await _until(lambda: len(fresh()) >= count, 30, "alice to catch up")
        elapsed = time.monotonic() - start
        wanted = [mid for mid, _ in witness[1:]]  # the stream's order, as a live subscriber saw it
        got = fresh()[:count]
        first_difference = next((k for k, (a, b) in enumerate(zip(got, wanted)) if a != b), None)
        return {"missed_frames": count, "replay_s": round(elapsed, 3), "frames_per_s": round(count / elapsed),
                "in_order_none_lost": got == wanted, "missing": len(set(wanted) - set(got)),
                "first_out_of_order": first_difference, "repeated": len(back) - count}
    finally:
        for link in links:
            link.close()
        for relay in (y, z):
            relay.stop()


async def _until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


# Scale curve ------------------------------------------------------------------------------------------
async def _idle_clients(conn, indices: list[int], key: bytes, concurrency: int) -> None:
    commands = Commands(conn)
    agents = await make_agents([f"s{i}" for i in indices], key)
    received: list = []
    conn.send(("made",))
    command, urls = await commands.get()
    links = await connect_many([lambda i=i, a=a: open_fed(urls[i % len(urls)], a, ["b"], arrivals(received),
                                                         source=source_of(i))
                                for i, a in zip(indices, agents)], concurrency)
    conn.send(("connected",))
    await commands.get()  # "report"
    conn.send(("done", list(received)))
    await commands.get()  # stop
    for link in links:
        link.close()
    commands.close()


def scale_point(n: int, urls: list[str], procs: int, concurrency: int) -> dict:
    key = os.urandom(32)
    workers = [Worker(_idle_clients, part, key, concurrency) for part in split(list(range(n)), procs)]
    try:
        for worker in workers:
            worker.recv(300)
        for worker in workers:
            worker.send("connect", urls)
        for worker in workers:
            worker.recv(600)
        sends = asyncio.run(_broadcast(urls[0], key))
        for worker in workers:
            worker.send("report")
        got = [item for worker in workers for item in worker.recv(120)[1]]
        latencies = sorted((ns - sends[mid]) / 1e6 for mid, ns in got if mid in sends)
        return {"agents": n, "relays": len(urls), "delivered": len(latencies), "expected": n * len(sends),
                "p50_ms": round(percentile(latencies, 50), 2), "p99_ms": round(percentile(latencies, 99), 2)}
    finally:
        shutdown(workers)


async def _broadcast(url: str, key: bytes, count: int = 20) -> dict[bytes, int]:
    from ruvector_edge.p2p import P2PSwarm

    sender = await P2PSwarm.create("sender", key)
    link = await open_fed(url, sender, [], arrivals([]))
    await asyncio.sleep(3.0)  # idle agents under the relays' default ping interval meanwhile
    frames = await sender.publish_many("b", [b"z" * 200] * count)
    sends = {}
    for published in frames:
        sends[published.message_id.encode()] = time.time_ns()
        link.send_text(published.frame.decode())
        await asyncio.sleep(0.1)
    await asyncio.sleep(3.0)
    link.close()
    return sends


# Main ----------------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=300)
    parser.add_argument("--rate", type=int, default=100, help="frames per agent per second")
    parser.add_argument("--group", type=int, default=2, help="subscribers per topic")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--grace", type=float, default=3.0)
    parser.add_argument("--payload", type=int, default=200)
    parser.add_argument("--procs", type=int, default=3, help="client processes")
    parser.add_argument("--concurrency", type=int, default=15, help="connects in flight per process (a relay lets 64 handshakes wait per address)")
    parser.add_argument("--skip", default="", help="comma-separated phases to skip: load,failover,replay")
    parser.add_argument("--scale", default="", help="agent counts for the scale curve, e.g. 250,500,1000 (off by default)")
    args = parser.parse_args()
    if args.agents % args.group:
        raise SystemExit("--agents must be a multiple of --group")
    skip = set(args.skip.split(","))
    raise_nofile()
    root = Path(tempfile.mkdtemp(prefix="bench-federation-"))
    nats = Nats(root)
    emit(bench="federation", event="setup", agents=args.agents, rate=args.rate, group=args.group, seconds=args.seconds,
         client_procs=args.procs, cpus=os.cpu_count(), loadavg=os.getloadavg())
    try:
        if "load" not in skip:
            key = os.urandom(32)
            workers = [Worker(_load_clients, part, args.agents, args.group, args.rate, args.seconds, args.payload, key,
                              args.concurrency) for part in split(list(range(args.agents)), args.procs)]
            try:
                for worker in workers:
                    worker.recv(600)
                results = {}
                single = Relay()
                try:
                    results["single"] = run_load([single.url], workers, [single.pid], args.group, args.seconds, args.grace)
                finally:
                    single.stop()
                emit(bench="federation", phase="load", impl="single", **results["single"])
                relays = [Relay(url) for url in nats.urls]
                try:
                    results["federated"] = run_load([r.url for r in relays], workers, [r.pid for r in relays] + nats.pids,
                                                    args.group, args.seconds, args.grace, tuple(nats.pids))
                    results["federated"]["relay_rss_mb"] = [round(rss_kib(r.pid)["VmRSS"] / 1024, 1) for r in relays]
                    results["federated"]["nats_rss_mb"] = [round(rss_kib(p)["VmRSS"] / 1024, 1) for p in nats.pids]
                finally:
                    for relay in relays:
                        relay.stop()
                emit(bench="federation", phase="load", impl="federated", **results["federated"])
            finally:
                shutdown(workers)
            s, f = results["single"], results["federated"]
            emit(bench="federation", phase="load", summary=True, p50_single_ms=s["p50_ms"], p50_federated_ms=f["p50_ms"],
                 p50_goal_met=f["p50_ms"] <= s["p50_ms"] + 5,
                 deliveries_ratio=round(f["delivered"] / max(1, s["delivered"]), 3),
                 deliveries_goal_met=f["delivered"] >= 0.9 * s["delivered"], loadavg=os.getloadavg())
        if "failover" not in skip:
            line = asyncio.run(failover(nats.urls))
            emit(bench="federation", phase="failover", **line,
                 goal_met=line["frames_lost"] == 0 and line["failover_s"] is not None and line["failover_s"] <= 3)
        if "replay" not in skip:
            line = asyncio.run(replay(nats.urls))
            emit(bench="federation", phase="replay", **line, goal_met=line["replay_s"] <= 1 and line["in_order_none_lost"])
        for count in (1, 3):  # the curve of one relay, then of three federated ones
            for n in [int(x) for x in args.scale.split(",") if x]:
                relays = [Relay(nats.urls[k] if count > 1 else None) for k in range(count)]
                try:
                    line = scale_point(n, [r.url for r in relays], args.procs, args.concurrency)
                finally:
                    for relay in relays:
                        relay.stop()
                emit(bench="federation", phase="scale", **line, loadavg=os.getloadavg())
                if line["p99_ms"] > 100 or line["delivered"] < line["expected"]:
                    break
    finally:
        nats.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
