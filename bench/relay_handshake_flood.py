"""Silent-connection flood (issue 17 item 7): N WebSockets to /ws that read the challenge and never answer.

The relay runs as `edge-relay` in its own process (default limits, so its hello
deadline and caps are the shipped ones); one client process opens the flood as
fast as it can, while a few honest agents join. Reported as JSON lines: how many
connections were accepted and refused, the relay's RSS before, at the peak and
after, the time from the flood's start until the relay had closed every silent
connection, whether the honest agents joined (and how long that took), and the
relay's own pending/refused/timeout counters from /metrics.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import subprocess
import sys
import time
from pathlib import Path

from relay_common import HOST, emit, make_agents, raise_nofile, relay_handshake, rss_kib

import aiohttp  # noqa: E402  (relay_common puts py/ on the path first)

ROOT = Path(__file__).resolve().parents[1]


def start_relay(port: int) -> subprocess.Popen:
    relay = ROOT / ".venv" / "bin" / "edge-relay"
    proc = subprocess.Popen([str(relay), "--listen", f"{HOST}:{port}", "--memory-only"], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()  # type: ignore[union-attr]
    if "listening" not in line:
        proc.kill()
        raise SystemExit(f"edge-relay did not start: {line!r}")
    return proc


async def metrics(http: aiohttp.ClientSession, port: int) -> dict[str, float]:
    async with http.get(f"http://{HOST}:{port}/metrics") as response:
        text = await response.text()
    wanted = ("edge_relay_connections", "edge_relay_connections_pending", "edge_relay_connections_refused_total",
              "edge_relay_handshake_timeouts_total")
    return {f"{name}{labels}": float(value) for name, labels, value in re.findall(r"^(\w+)(\{[^}]*\})? (\S+)$", text, re.M)
            if name in wanted}


async def silent(session: aiohttp.ClientSession, url: str, deadline: float) -> tuple[str, float]:
    """('refused', 0) or ('closed', seconds from open to the relay's close) or ('open', ...) at the deadline."""
    try:
        ws = await session.ws_connect(url)
    except aiohttp.WSServerHandshakeError:
        return "refused", 0.0
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
    """Seconds until `agent` got its welcome, retrying while the relay refuses (503), or None by the deadline."""
    start = time.monotonic()
    while time.monotonic() < deadline:
        try:
            ws = await http.ws_connect(url)
        except aiohttp.WSServerHandshakeError:
            await asyncio.sleep(0.1)
            continue
        await relay_handshake(ws, agent, {})
        took = time.monotonic() - start
        await ws.close()
        return took
    return None


async def run(args) -> None:
    proc = start_relay(args.port)
    url = f"ws://{HOST}:{args.port}/ws"
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            baseline = rss_kib(proc.pid)
            agents = await make_agents([f"honest{i}" for i in range(args.honest)], bytes(range(32)))
            peak = dict(baseline)

            async def sample_rss() -> None:
                while True:
                    peak["VmRSS"] = max(peak["VmRSS"], rss_kib(proc.pid)["VmRSS"])
                    await asyncio.sleep(0.05)

            sampler = asyncio.create_task(sample_rss())
            start = time.monotonic()
            deadline = start + args.wait
            flood = [asyncio.create_task(silent(http, url, deadline)) for _ in range(args.connections)]
            await asyncio.sleep(0.5)  # the honest agents arrive while the flood is still coming in
            joins = await asyncio.gather(*(honest(http, url, agent, deadline) for agent in agents))
            outcomes = await asyncio.gather(*flood)
            all_closed = time.monotonic() - start
            sampler.cancel()
            counters = await metrics(http, args.port)
            after = rss_kib(proc.pid)
        closes = sorted(seconds for outcome, seconds in outcomes if outcome == "closed")
        emit(bench="relay_handshake_flood", connections=args.connections,
             accepted=sum(o != "refused" and o != "error" for o, _ in outcomes),
             refused=sum(o == "refused" for o, _ in outcomes), errors=sum(o == "error" for o, _ in outcomes),
             still_open=sum(o == "open" for o, _ in outcomes),
             close_after_open_s={"min": round(closes[0], 3), "max": round(closes[-1], 3)} if closes else None,
             all_closed_after_s=round(all_closed, 3),
             rss_kib={"baseline": baseline["VmRSS"], "peak": peak["VmRSS"], "after": after["VmRSS"]},
             honest_joined=sum(j is not None for j in joins),
             honest_join_s=[round(j, 3) if j is not None else None for j in joins], relay_metrics=counters)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=5000)
    parser.add_argument("--honest", type=int, default=3)
    parser.add_argument("--port", type=int, default=18931)
    parser.add_argument("--wait", type=float, default=60.0, help="give up on the flood after this many seconds")
    args = parser.parse_args()
    raise_nofile(args.connections * 2 + 1024)
    asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
