"""scripts/cluster.sh (issue 16): three nats-servers and three relays that print one page link and one
agent invite listing all three relays; both usable, and SIGTERM leaves no process behind."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from relay_fixtures import ROOT, child_env, wait_for
from ruvector_edge.p2p import P2PSwarm
from test_federation_nats import client

pytestmark = pytest.mark.timeout(180)


def free_ports(count: int) -> int:
    """A first port of `count` consecutive free loopback ports (cluster.sh numbers its ports from a base)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = probe.getsockname()[1]
        if base + count > 65535:
            continue
        try:
            for port in range(base, base + count):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise AssertionError(f"no {count} consecutive free ports")


def in_group(pgid: int) -> list[int]:
    """Processes still in process group `pgid` (the script's, as it was started in a session of its own)."""
    left = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            left.append(int(stat.parent.name))
    return left


async def read_lines_until(proc: subprocess.Popen, marker: str, timeout: float) -> list[str]:
    """The script's output lines up to the one containing `marker` (bounded; read in a thread)."""
    lines: list[str] = []

    def read() -> None:
        for line in proc.stdout:
            lines.append(line)
            if marker in line:
                return

    try:
        await asyncio.wait_for(asyncio.to_thread(read), timeout)
    except asyncio.TimeoutError:
        raise AssertionError(f"cluster.sh printed no {marker!r} within {timeout}s: {''.join(lines)}") from None
    return lines


async def test_cluster_sh_prints_a_page_link_and_invite_listing_three_relays_that_work(tmp_path):
    nats, routes, relays = free_ports(3), free_ports(3), free_ports(3)
    env = child_env(NATS_PORT=str(nats), ROUTE_PORT=str(routes), RELAY_PORT=str(relays), CLUSTER_DIR=str(tmp_path))
    proc = subprocess.Popen(["bash", str(ROOT / "scripts" / "cluster.sh")], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT, start_new_session=True)
    try:
        lines = await read_lines_until(proc, "[cluster] try:", 120)
        [page] = [line.split("web app: ", 1)[1].strip() for line in lines if "web app: " in line]
        [invite] = [line.split("invite: ", 1)[1].strip() for line in lines if "invite: " in line]
        link = urlsplit(page)
        fragment = {k: v[0] for k, v in parse_qs(link.fragment, strict_parsing=True).items()}
        urls = [f"ws://127.0.0.1:{relays + i}/ws" for i in range(3)]
        assert fragment["relays"].split(",") == urls
        key = bytes.fromhex(fragment["swarm_key"])
        assert len(key) == 32 and invite == f"{','.join(urls)}#swarm_key={fragment['swarm_key']}"
        async with aiohttp.ClientSession() as http:
            for url in urls:
                async with http.get(url.replace("ws://", "http://").replace("/ws", "/healthz")) as response:
                    assert response.status == 200 and (await response.json())["web_app"] is True
            async with http.get(f"{link.scheme}://{link.netloc}{link.path}") as response:
                assert response.status == 200 and "<html" in (await response.text()).lower()
        # The invite's key and relays make one swarm: alice on the first relay, bob on the last.
        alice, bob = await P2PSwarm.create("alice", key), await P2PSwarm.create("bob", key)
        la, _ = await client(invite.split("#")[0], alice)
        lb, got = await client(",".join(reversed(urls)), bob)
        try:
            assert (la.target, lb.target) == (urls[0], urls[2])
            deadline = time.monotonic() + 20
            while True:  # until bob's relay knows alice (presence crosses NATS), the frame may not reach bob
                sent = await alice.publish("t", b"across the cluster")
                await la.send(sent.frame)
                try:
                    await wait_for(lambda: sent.message_id in got.ids, timeout=1, what="alice's frame at bob")
                    break
                except AssertionError:
                    assert time.monotonic() < deadline, "alice's frames never reached bob on another relay"
        finally:
            await la.stop()
            await lb.stop()
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        finally:
            left = in_group(proc.pid)
            for pid in left:
                os.kill(pid, signal.SIGKILL)
    assert proc.returncode is not None and left == [], f"left running after SIGTERM: {left}"
