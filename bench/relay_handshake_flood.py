"""Silent-connection floods (issue 17 item 7): sockets that never prove anything, in two phases.

ws:  N WebSockets to /ws that read the challenge and never answer (the hello deadline and handshake caps).
tcp: N TCP connections that never send a byte (the request-head deadline and the caps at accept), opened
     from --sources loopback addresses in turn, so both the per-address and the overall cap can be reached.

The relay runs as `edge-relay` in its own process (default limits, so its deadlines
and caps are the shipped ones), a fresh one per phase; one client process opens the
flood as fast as it can, while a few honest agents join (in the tcp phase from a
loopback address of their own, as honest hosts are not the flooding one). Reported
as one JSON line per phase: how many connections were accepted, refused and left
open, the relay's RSS before, at the peak and after, the time from the flood's start
until the relay had closed every silent connection, whether the honest agents joined
(and how long that took), and the relay's own counters from /metrics.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

from relay_common import HOST, emit, make_agents, raise_nofile, relay_handshake, rss_kib

import aiohttp  # noqa: E402  (relay_common puts py/ on the path first)

ROOT = Path(__file__).resolve().parents[1]
REFUSAL_S = 5.0  # tcp phase: half the relay's default head deadline; a busy client sees refusals late
HONEST_SOURCE = "127.0.0.2"  # tcp phase: honest agents' own address (the flood's are 127.0.0.10 and up)


def start_relay(port: int, nofile: int | None = None) -> subprocess.Popen:
    """edge-relay with this process's descriptor limit, or `nofile` (to see a flood reach a small one)."""
    relay = ROOT / ".venv" / "bin" / "edge-relay"

    def limit_descriptors() -> None:
        if nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))

    proc = subprocess.Popen([str(relay), "--listen", f"{HOST}:{port}", "--memory-only"], stdout=subprocess.PIPE, text=True,
                            preexec_fn=limit_descriptors)
    line = proc.stdout.readline()  # type: ignore[union-attr]
    if "listening" not in line:
        proc.kill()
        raise SystemExit(f"edge-relay did not start: {line!r}")
    return proc


async def metrics(http: aiohttp.ClientSession, port: int) -> dict[str, float] | None:
    """The relay's own counters, or None when it cannot answer (out of descriptors, say) within 10 s."""
    try:
        async with http.get(f"http://{HOST}:{port}/metrics", timeout=aiohttp.ClientTimeout(total=10)) as response:
            text = await response.text()
    except (aiohttp.ClientError, asyncio.TimeoutError):
        return None
    wanted = ("edge_relay_connections", "edge_relay_connections_pending", "edge_relay_connections_refused_total",
              "edge_relay_handshake_timeouts_total", "edge_relay_tcp_connections", "edge_relay_request_head_timeouts_total")
    return {f"{name}{labels}": float(value) for name, labels, value in re.findall(r"^(\w+)(\{[^}]*\})? (\S+)$", text, re.M)
            if name in wanted}


async def silent(session: aiohttp.ClientSession, url: str, deadline: float) -> tuple[str, float]:
    """('refused', 0) for a 503, ('aborted', 0) for a socket closed unanswered (a TCP cap at accept), or
    ('closed', seconds from open to the relay's close) or ('open', ...) at the deadline."""
    try:
        ws = await session.ws_connect(url)
    except aiohttp.WSServerHandshakeError:
        return "refused", 0.0
    except aiohttp.ClientConnectionError:
        return "aborted", 0.0
    except aiohttp.ClientError:
        return "error", 0.0
    opened = time.monotonic()
    try:
        while time.monotonic() < deadline:
            message = await asyncio.wait_for(ws.receive(), max(0.01, deadline - time.monotonic()))
            if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                return "closed", time.monotonic() - opened
    except asyncio.TimeoutError:
        pass
    finally:
        await ws.close()
    return "open", time.monotonic() - opened


async def honest(http: aiohttp.ClientSession, url: str, agent, deadline: float) -> float | None:
    """Seconds until `agent` got its welcome, retrying while the relay refuses (503, or a socket closed at accept
    by a per-address cap), or None by the deadline."""
    start = time.monotonic()
    while time.monotonic() < deadline:
        try:
            ws = await asyncio.wait_for(http.ws_connect(url), max(0.1, deadline - time.monotonic()))
        except (aiohttp.WSServerHandshakeError, aiohttp.ClientConnectionError, asyncio.TimeoutError):
            await asyncio.sleep(0.1)
            continue
        await relay_handshake(ws, agent, {})
        took = time.monotonic() - start
        await ws.close()
        return took
    return None


async def silent_tcp(port: int, source: str, deadline: float) -> tuple[str, float]:
    """('closed', seconds from connect to the relay's close), ('open', ...) at the deadline, or ('error', 0)."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port, local_addr=(source, 0)),
                                                max(0.01, deadline - time.monotonic()))
    except (OSError, asyncio.TimeoutError):
        return "error", 0.0
    opened = time.monotonic()
    outcome = "closed"
    try:
        await asyncio.wait_for(reader.read(1), max(0.01, deadline - time.monotonic()))
    except ConnectionResetError:
        pass
    except asyncio.TimeoutError:
        outcome = "open"
    finally:
        writer.close()
    return outcome, time.monotonic() - opened


class PeakRss:
    """The relay's RSS sampled every 50 ms while the flood runs."""

    def __init__(self, pid: int) -> None:
        self.pid, self.baseline = pid, rss_kib(pid)["VmRSS"]
        self.peak = self.baseline
        self._task = asyncio.create_task(self._sample())

    async def _sample(self) -> None:
        while True:
            self.peak = max(self.peak, rss_kib(self.pid)["VmRSS"])
            await asyncio.sleep(0.05)

    def stop(self) -> dict[str, int]:
        self._task.cancel()
        return {"baseline": self.baseline, "peak": self.peak, "after": rss_kib(self.pid)["VmRSS"]}


async def run_ws(args) -> None:
    proc = start_relay(args.port)
    url = f"ws://{HOST}:{args.port}/ws"
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            agents = await make_agents([f"honest{i}" for i in range(args.honest)], bytes(range(32)))
            rss = PeakRss(proc.pid)
            start = time.monotonic()
            deadline = start + args.wait
            flood = [asyncio.create_task(silent(http, url, deadline)) for _ in range(args.connections)]
            await asyncio.sleep(0.5)  # the honest agents arrive while the flood is still coming in
            joins = await asyncio.gather(*(honest(http, url, agent, deadline) for agent in agents))
            outcomes = await asyncio.gather(*flood)
            all_closed = time.monotonic() - start
            memory = rss.stop()
            counters = await metrics(http, args.port)
        closes = sorted(seconds for outcome, seconds in outcomes if outcome == "closed")
        emit(bench="relay_handshake_flood", phase="ws", connections=args.connections,
             accepted=sum(o in ("closed", "open") for o, _ in outcomes), refused=sum(o == "refused" for o, _ in outcomes),
             aborted_at_accept=sum(o == "aborted" for o, _ in outcomes), errors=sum(o == "error" for o, _ in outcomes),
             still_open=sum(o == "open" for o, _ in outcomes),
             close_after_open_s={"min": round(closes[0], 3), "max": round(closes[-1], 3)} if closes else None,
             all_closed_after_s=round(all_closed, 3), rss_kib=memory,
             honest_joined=sum(j is not None for j in joins),
             honest_join_s=[round(j, 3) if j is not None else None for j in joins], relay_metrics=counters)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def run_tcp(args) -> None:
    """Sockets that send nothing: the relay aborts those past a cap at once and the rest at the head deadline
    (told apart here by how long the relay took: under REFUSAL_S is a refusal; the relay's counters are exact)."""
    proc = start_relay(args.port, args.relay_nofile)
    url = f"ws://{HOST}:{args.port}/ws"
    sources = [f"127.0.0.{10 + i}" for i in range(args.sources)]
    try:
        connector = aiohttp.TCPConnector(limit=0, local_addr=(HONEST_SOURCE, 0))
        async with aiohttp.ClientSession(connector=connector) as http:
            agents = await make_agents([f"honest{i}" for i in range(args.honest)], bytes(range(32)))
            rss = PeakRss(proc.pid)
            start = time.monotonic()
            deadline = start + args.wait
            flood = [asyncio.create_task(silent_tcp(args.port, sources[i % len(sources)], deadline))
                     for i in range(args.connections)]
            await asyncio.sleep(0.5)  # the honest agents arrive while the flood is held
            held = await metrics(http, args.port)
            joins = await asyncio.gather(*(honest(http, url, agent, deadline) for agent in agents))
            outcomes = await asyncio.gather(*flood)
            all_closed = time.monotonic() - start
            memory = rss.stop()
            counters = await metrics(http, args.port)
        at_once = [seconds for outcome, seconds in outcomes if outcome == "closed" and seconds < REFUSAL_S]
        later = sorted(seconds for outcome, seconds in outcomes if outcome == "closed" and seconds >= REFUSAL_S)
        emit(bench="relay_handshake_flood", phase="tcp", connections=args.connections, sources=len(sources),
             relay_nofile=args.relay_nofile,
             refused_at_once=len(at_once), closed_at_deadline=len(later), errors=sum(o == "error" for o, _ in outcomes),
             # connected as far as the client knows, never heard of by the relay: the kernel's accept queue
             # was full and dropped the handshake's last ACK (the relay's counters add up without them)
             unanswered=sum(o == "open" for o, _ in outcomes),
             close_after_open_s={"min": round(later[0], 3), "max": round(later[-1], 3)} if later else None,
             all_closed_after_s=round(all_closed, 3), rss_kib=memory,
             honest_joined=sum(j is not None for j in joins),
             honest_join_s=[round(j, 3) if j is not None else None for j in joins],
             relay_metrics_while_held=held, relay_metrics=counters)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=5000)
    parser.add_argument("--honest", type=int, default=3)
    parser.add_argument("--port", type=int, default=18931)
    parser.add_argument("--wait", type=float, default=60.0, help="give up on the flood after this many seconds")
    parser.add_argument("--phase", choices=("ws", "tcp", "both"), default="both")
    parser.add_argument("--sources", type=int, default=4, help="tcp phase: loopback addresses the flood comes from")
    parser.add_argument("--relay-nofile", type=int, default=None, metavar="N",
                        help="tcp phase: the relay's descriptor limit (default: this process's, raised for the flood)")
    args = parser.parse_args()
    raise_nofile(args.connections * 2 + 1024)
    if args.phase in ("ws", "both"):
        asyncio.run(run_ws(args))
    if args.phase in ("tcp", "both"):
        asyncio.run(run_tcp(args))


if __name__ == "__main__":
    sys.exit(main())
