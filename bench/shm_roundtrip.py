"""Ping-pong round trip between two processes: the shared-memory transport beside a Unix-domain socket.

Prints one JSON line per (transport, frame size). The client (this process)
sends a frame, an echo process sends it back; the same layout (one forked
echo process, one frame in flight) for every transport. Goals (issue 3):
shared memory p50 ≤ 50 µs and p99 ≤ 500 µs. Variants:

- `shm`       ShmChannel as shipped (adaptive spin, then doorbell);
- `shm-nospin` spin disabled, every wait sleeps on the doorbell — what the
  spin buys, and what an idle-ish channel costs per hop;
- `shm-async` the client uses `asend`/`arecv` inside an asyncio loop (no spin);
- `uds`       AF_UNIX stream socketpair, 4-byte length prefix, blocking I/O.

`cpu_us_per_rt` is the client's CPU time per round trip: spinning is paid
there. Bounded: `--count` round trips or `--seconds`, whichever ends first.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import socket
import struct
import time
import uuid

from ruvector_edge.transport.shm import ShmChannel

ctx = multiprocessing.get_context("fork")
_LEN = struct.Struct("<I")


def _percentile(sorted_ns: list[int], q: float) -> float:
    return sorted_ns[min(len(sorted_ns) - 1, int(q * len(sorted_ns)))] / 1000


def _report(transport: str, size: int, samples: list[int], cpu_s: float, wall_s: float) -> dict:
    samples.sort()
    line = {
        "bench": "shm_roundtrip", "transport": transport, "frame_bytes": size,
        "round_trips": len(samples), "wall_s": round(wall_s, 3),
        "p50_us": round(_percentile(samples, 0.50), 1), "p90_us": round(_percentile(samples, 0.90), 1),
        "p99_us": round(_percentile(samples, 0.99), 1), "p999_us": round(_percentile(samples, 0.999), 1),
        "max_us": round(samples[-1] / 1000, 1),
        "cpu_us_per_rt": round(cpu_s / len(samples) * 1e6, 1),
        "cpus": os.cpu_count(), "loadavg_1m": round(os.getloadavg()[0], 2),
    }
    if transport.startswith("shm"):
        line["goal_met"] = line["p50_us"] <= 50 and line["p99_us"] <= 500
    return line


# Echo peers -----------------------------------------------------------------------

def _shm_echo(name: str, spin_us: float) -> None:
    ch = ShmChannel.attach(name, wait=10, spin_us=spin_us)
    try:
        while True:
            ch.send(ch.recv(timeout=30), timeout=30)
    except Exception:  # the client closing ends the echo loop (TransportClosed)
        pass
    ch.close()


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:])
        if k == 0:
            raise EOFError
        got += k
    return bytes(buf)


def _uds_echo(sock: socket.socket) -> None:
    try:
        while True:
            (n,) = _LEN.unpack(_recv_exact(sock, 4))
            sock.sendall(_LEN.pack(n) + _recv_exact(sock, n))
    except EOFError:
        pass


# Clients ----------------------------------------------------------------------------

def _bounded_loop(one_round_trip, count: int, seconds: float, warmup: int) -> tuple[list[int], float, float]:
    for _ in range(warmup):
        one_round_trip()
    clock = time.perf_counter_ns
    samples = []
    stop = clock() + int(seconds * 1e9)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for _ in range(count):
        t0 = clock()
        one_round_trip()
        t1 = clock()
        samples.append(t1 - t0)
        if t1 > stop:
            break
    return samples, time.process_time() - cpu0, time.perf_counter() - wall0


def bench_shm(size: int, count: int, seconds: float, warmup: int, spin_us: float) -> dict:
    name = f"bench-{uuid.uuid4().hex[:10]}"
    payload = os.urandom(size)
    with ShmChannel.create(name, 1 << 20, spin_us=spin_us) as ch:
        peer = ctx.Process(target=_shm_echo, args=(name, spin_us), daemon=True)
        peer.start()

        def one() -> None:
            ch.send(payload)
            if ch.recv(timeout=10) != payload:
                raise AssertionError("echo mismatch")

        samples, cpu, wall = _bounded_loop(one, count, seconds, warmup)
    peer.join(10)
    return _report("shm" if spin_us else "shm-nospin", size, samples, cpu, wall)


def bench_shm_async(size: int, count: int, seconds: float, warmup: int) -> dict:
    name = f"bench-{uuid.uuid4().hex[:10]}"
    payload = os.urandom(size)

    async def run(ch: ShmChannel) -> tuple[list[int], float, float]:
        clock = time.perf_counter_ns
        for _ in range(warmup):
            await ch.asend(payload)
            await ch.arecv(timeout=10)
        samples = []
        stop = clock() + int(seconds * 1e9)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for _ in range(count):
            t0 = clock()
            await ch.asend(payload)
            if await ch.arecv(timeout=10) != payload:
                raise AssertionError("echo mismatch")
            t1 = clock()
            samples.append(t1 - t0)
            if t1 > stop:
                break
        return samples, time.process_time() - cpu0, time.perf_counter() - wall0

    with ShmChannel.create(name, 1 << 20) as ch:
        peer = ctx.Process(target=_shm_echo, args=(name, 50.0), daemon=True)
        peer.start()
        samples, cpu, wall = asyncio.run(run(ch))
    peer.join(10)
    return _report("shm-async", size, samples, cpu, wall)


def bench_uds(size: int, count: int, seconds: float, warmup: int) -> dict:
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    peer = ctx.Process(target=_uds_echo, args=(theirs,), daemon=True)
    peer.start()
    theirs.close()
    payload = os.urandom(size)
    frame = _LEN.pack(size) + payload

    def one() -> None:
        mine.sendall(frame)
        (n,) = _LEN.unpack(_recv_exact(mine, 4))
        if _recv_exact(mine, n) != payload:
            raise AssertionError("echo mismatch")

    samples, cpu, wall = _bounded_loop(one, count, seconds, warmup)
    mine.close()
    peer.join(10)
    return _report("uds", size, samples, cpu, wall)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=20_000, help="round trips per measurement")
    parser.add_argument("--seconds", type=float, default=10.0, help="time limit per measurement")
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 1024])
    args = parser.parse_args()
    for size in args.sizes:
        for line in (
            bench_shm(size, args.count, args.seconds, args.warmup, spin_us=50.0),
            bench_uds(size, args.count, args.seconds, args.warmup),
            bench_shm(size, args.count, args.seconds, args.warmup, spin_us=0.0),
            bench_shm_async(size, args.count, args.seconds, args.warmup),
        ):
            print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
