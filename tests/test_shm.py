"""The shared-memory ring (sans-I/O) and channel (real processes): content, order, limits, crashes, corruption.

Peers run in forked processes so that a SIGKILL is a real crash: no `finally`,
no atexit, an unreaped zombie left behind. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import multiprocessing
import os
import signal
import struct
import subprocess
import sys
import time
import uuid
from multiprocessing.shared_memory import SharedMemory

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ruvector_edge.errors import (MalformedMessage, OversizedMessage, SendQueueFull, TransportClosed,
                                  TransportError)
from ruvector_edge.transport import shm_ring
from ruvector_edge.transport.shm import SEGMENT_PREFIX, ShmChannel, reclaim_stale
from ruvector_edge.transport.shm_ring import HEADER_SIZE, Ring, record_size, region_size

ctx = multiprocessing.get_context("fork")


def _name() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


def _segment_exists(name: str) -> bool:
    return os.path.exists(f"/dev/shm/{SEGMENT_PREFIX}{name}")


def _frame(i: int, size: int) -> bytes:
    head = struct.pack("<I", i)
    return (head + hashlib.sha256(head).digest() * (size // 32 + 1))[:size] if size >= 4 else head[:size]


# Sans-I/O ring --------------------------------------------------------------------

def _ring(capacity: int = 256, max_frame: int | None = None) -> Ring:
    if max_frame is None:
        max_frame = capacity - 8
    return Ring.format(bytearray(region_size(capacity)), capacity, max_frame)


def test_ring_round_trip_wraps_around_the_end():
    ring = _ring(256)
    sent = collections.deque()
    for i in range(500):
        frame = _frame(i, (i * 37) % 120)
        assert ring.try_write(frame)
        sent.append(frame)
        if i % 3 != 0:
            assert ring.try_read() == sent.popleft()
        if ring.free() < record_size(120):
            while sent:
                assert ring.try_read() == sent.popleft()
    while sent:
        assert ring.try_read() == sent.popleft()
    assert ring.try_read() is None
    assert ring.pending() == 0


def test_ring_full_refuses_without_writing_and_accepts_again_after_a_read():
    ring = _ring(64)
    assert ring.try_write(b"a" * 24)          # 32 bytes
    assert ring.try_write(b"b" * 20)          # 32 bytes: exactly full
    assert ring.free() == 0
    assert not ring.try_write(b"")
    assert ring.pending() == 64
    assert ring.try_read() == b"a" * 24
    assert ring.try_write(b"c" * 17)          # wraps
    assert ring.try_read() == b"b" * 20
    assert ring.try_read() == b"c" * 17


def test_ring_max_frame_fits_and_one_byte_more_is_oversized():
    ring = _ring(1024, max_frame=1000)
    with pytest.raises(OversizedMessage):
        ring.try_write(b"x" * 1001)
    assert ring.pending() == 0
    assert ring.try_write(memoryview(b"y" * 1000))
    assert ring.try_read() == b"y" * 1000


def test_ring_rejects_geometry_that_cannot_hold_a_max_frame():
    with pytest.raises(ValueError):
        Ring.format(bytearray(region_size(64)), 64, 60)
    with pytest.raises(ValueError):
        Ring.format(bytearray(region_size(64)), 60, 8)


@pytest.mark.parametrize("offset, value", [
    (0, b"NOTARING"),                           # magic
    (8, struct.pack("<I", 99)),                 # version
    (16, struct.pack("<Q", 1 << 40)),           # capacity beyond the buffer
    (24, struct.pack("<Q", 4096)),              # max frame beyond the capacity
])
def test_ring_bad_header_is_a_typed_error(offset, value):
    buf = bytearray(region_size(256))
    Ring.format(buf, 256, 248)
    buf[offset:offset + len(value)] = value
    with pytest.raises(MalformedMessage):
        Ring(buf)


def test_ring_too_small_buffer_is_a_typed_error():
    with pytest.raises(MalformedMessage):
        Ring(bytearray(HEADER_SIZE - 1))


def test_ring_corrupt_length_prefix_is_a_typed_error():
    buf = bytearray(region_size(256))
    ring = Ring.format(buf, 256, 248)
    assert ring.try_write(b"hello")
    struct.pack_into("<II", buf, HEADER_SIZE, 10_000, 10_000 ^ 0xFFFFFFFF)   # length beyond capacity
    with pytest.raises(MalformedMessage):
        ring.try_read()
    struct.pack_into("<II", buf, HEADER_SIZE, 5, 0)                          # complement wrong
    with pytest.raises(MalformedMessage):
        ring.try_read()
    struct.pack_into("<II", buf, HEADER_SIZE, 5, 5 ^ 0xFFFFFFFF)
    assert ring.try_read() == b"hello"


def test_ring_inconsistent_positions_are_a_typed_error():
    buf = bytearray(region_size(256))
    ring = Ring.format(buf, 256, 248)
    struct.pack_into("<Q", buf, 64, 1024)       # tail a whole capacity ahead of head
    with pytest.raises(MalformedMessage):
        ring.try_read()
    with pytest.raises(MalformedMessage):
        ring.try_write(b"x")


@settings(max_examples=300, deadline=None)
@given(capacity=st.integers(2, 64).map(lambda n: n * 8),
       ops=st.lists(st.one_of(st.integers(0, 600), st.none()), max_size=200))
def test_ring_property_random_writes_and_reads_preserve_content_and_order(capacity, ops):
    ring = _ring(capacity)
    model: collections.deque[bytes] = collections.deque()
    used = 0
    for n, op in enumerate(ops):
        if op is None:
            got = ring.try_read()
            if model:
                expected = model.popleft()
                assert got == expected
                used -= record_size(len(expected))
            else:
                assert got is None
            continue
        size = op % (capacity - 7)
        frame = _frame(n, size)
        accepted = ring.try_write(frame)
        assert accepted == (capacity - used >= record_size(size))
        if accepted:
            model.append(frame)
            used += record_size(size)
        assert ring.pending() == used
    while model:
        assert ring.try_read() == model.popleft()
    assert ring.try_read() is None


# Channel across processes ------------------------------------------------------------

def _echo(name: str, count: int) -> None:
    ch = ShmChannel.attach(name, wait=10)
    for _ in range(count):
        ch.send(ch.recv(timeout=10), timeout=10)
    ch.close()


def _send_sequence(name: str, count: int, size: int) -> None:
    ch = ShmChannel.attach(name, wait=10)
    for i in range(count):
        ch.send(_frame(i, size), timeout=10)
    ch.close()


def _attach_then_sleep(name: str, ready, frames: int) -> None:
    ch = ShmChannel.attach(name, wait=10)
    for i in range(frames):
        ch.send(_frame(i, 100))
    ready.set()
    time.sleep(60)


def _create_then_sleep(name: str, ready, frames: int) -> None:
    ch = ShmChannel.create(name, 1 << 16)
    for i in range(frames):
        ch.send(_frame(i, 100))
    ready.set()
    time.sleep(60)


def _start(target, *args) -> multiprocessing.Process:
    proc = ctx.Process(target=target, args=args, daemon=True)
    proc.start()
    return proc


def _kill(proc: multiprocessing.Process) -> None:
    os.kill(proc.pid, signal.SIGKILL)


def test_round_trip_varied_sizes_with_wraparound_and_max_frame():
    name = _name()
    capacity = 1 << 16
    max_frame = capacity - 8
    sizes = [0, 1, 7, 8, 9, 63, 64, 1000, 4095, 30_000, max_frame, max_frame - 1] + \
        [(i * 7919) % 20_000 for i in range(400)]
    with ShmChannel.create(name, capacity) as ch:
        assert ch.max_frame == max_frame
        peer = _start(_echo, name, len(sizes))
        for i, size in enumerate(sizes):
            frame = _frame(i, size)
            ch.send(frame, timeout=10)
            assert ch.recv(timeout=10) == frame
        peer.join(10)
        assert peer.exitcode == 0
    assert not _segment_exists(name)


def test_default_channel_carries_two_mebibyte_frames_and_refuses_bigger():
    name = _name()
    with ShmChannel.create(name) as ch:
        assert ch.max_frame == 2 * 1024 * 1024
        peer = _start(_echo, name, 3)
        for i in range(3):
            frame = _frame(i, ch.max_frame) if i != 1 else _frame(i, 1_500_000)
            ch.send(frame, timeout=10)
            assert ch.recv(timeout=10) == frame
        with pytest.raises(OversizedMessage):
            ch.send(b"x" * (ch.max_frame + 1))
        peer.join(10)
        assert peer.exitcode == 0


def test_ordering_under_backpressure():
    name = _name()
    count = 3000
    with ShmChannel.create(name, 4096) as ch:
        peer = _start(_send_sequence, name, count, 200)
        for i in range(count):
            assert ch.recv(timeout=10) == _frame(i, 200)
        with pytest.raises(TransportClosed):
            ch.recv(timeout=10)     # the sender closed after its last frame
        peer.join(10)


def test_full_ring_raises_send_queue_full_after_the_timeout_and_drops_nothing():
    name = _name()
    with ShmChannel.create(name, 1024) as ch:
        sent = 0
        with pytest.raises(SendQueueFull):
            while True:
                ch.send(_frame(sent, 100), timeout=0.2)
                sent += 1
        assert sent == 1024 // record_size(100)
        start = time.monotonic()
        with pytest.raises(SendQueueFull):
            ch.send(b"late" * 25, timeout=0.3)
        assert 0.25 < time.monotonic() - start < 2
        with ShmChannel.attach(name) as other:
            for i in range(sent):
                assert other.recv(timeout=1) == _frame(i, 100)
            with pytest.raises(TimeoutError):
                other.recv(timeout=0.05)


def test_recv_timeout_and_blocked_recv_does_not_spin_a_core():
    name = _name()
    with ShmChannel.create(name, 4096) as ch, ShmChannel.attach(name):
        cpu, wall = time.process_time(), time.monotonic()
        with pytest.raises(TimeoutError):
            ch.recv(timeout=0.5)
        assert time.monotonic() - wall >= 0.5
        assert time.process_time() - cpu < 0.1


def test_attacher_killed_gives_transport_closed_and_creator_cleans_up():
    name = _name()
    ready = ctx.Event()
    ch = ShmChannel.create(name, 1 << 16)
    peer = _start(_attach_then_sleep, name, ready, 3)
    assert ready.wait(10)
    _kill(peer)                                   # left unreaped: a zombie still "exists" to kill(pid, 0)
    start = time.monotonic()
    for i in range(3):                            # what it published before dying still arrives
        assert ch.recv(timeout=5) == _frame(i, 100)
    with pytest.raises(TransportClosed):
        ch.recv(timeout=10)
    assert time.monotonic() - start < 2
    with pytest.raises(TransportClosed):
        ch.send(b"anyone?")
    ch.close()
    assert not _segment_exists(name)
    peer.join(5)


def test_creator_killed_gives_transport_closed_and_attacher_unlinks_the_segment():
    name = _name()
    ready = ctx.Event()
    peer = _start(_create_then_sleep, name, ready, 2)
    assert ready.wait(10)
    ch = ShmChannel.attach(name, wait=5)
    _kill(peer)
    start = time.monotonic()
    assert ch.recv(timeout=5) == _frame(0, 100)
    assert ch.recv(timeout=5) == _frame(1, 100)
    with pytest.raises(TransportClosed):
        ch.recv(timeout=10)
    assert time.monotonic() - start < 2
    assert not _segment_exists(name)
    ch.close()
    peer.join(5)


def test_stale_segment_of_a_killed_creator_is_reclaimed_on_next_create():
    name = _name()
    ready = ctx.Event()
    peer = _start(_create_then_sleep, name, ready, 5)
    assert ready.wait(10)
    with pytest.raises(TransportError):
        ShmChannel.create(name, 4096)            # its creator is alive: the name is taken
    _kill(peer)
    peer.join(5)
    assert _segment_exists(name)
    with pytest.raises(TransportClosed):
        ShmChannel.attach(name)                  # nobody to talk to, and the attacher reclaims it
    assert not _segment_exists(name)

    ready.clear()
    peer = _start(_create_then_sleep, name, ready, 5)
    assert ready.wait(10)
    _kill(peer)
    peer.join(5)
    with ShmChannel.create(name, 4096) as ch:    # reclaimed: a fresh, empty ring
        with ShmChannel.attach(name) as other:
            with pytest.raises(TimeoutError):
                other.recv(timeout=0.05)
            ch.send(b"fresh")
            assert other.recv(timeout=1) == b"fresh"
    assert not _segment_exists(name)


def test_reclaim_stale_sweeps_only_dead_creators():
    dead, alive = _name(), _name()
    ready = ctx.Event()
    peer = _start(_create_then_sleep, dead, ready, 0)
    assert ready.wait(10)
    _kill(peer)
    peer.join(5)
    with ShmChannel.create(alive, 4096):
        reclaimed = reclaim_stale()
        assert dead in reclaimed and alive not in reclaimed
        assert not _segment_exists(dead) and _segment_exists(alive)


def test_normal_exit_without_close_unlinks_the_segment():
    name = _name()
    script = ("import os, sys\n"
              "from ruvector_edge.transport.shm import ShmChannel, SEGMENT_PREFIX\n"
              f"ShmChannel.create({name!r}, 4096)\n"   # never closed: the atexit hook must unlink
              f"assert os.path.exists('/dev/shm/' + SEGMENT_PREFIX + {name!r})\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    done = subprocess.run([sys.executable, "-c", script], env=env, timeout=30, capture_output=True)
    assert done.returncode == 0, done.stderr
    assert not _segment_exists(name)


def test_graceful_close_delivers_what_was_sent_then_transport_closed():
    name = _name()
    with ShmChannel.create(name, 4096) as ch:
        other = ShmChannel.attach(name)
        other.send(b"one")
        other.send(b"two")
        other.close()
        assert ch.recv(timeout=1) == b"one"
        assert ch.recv(timeout=1) == b"two"
        with pytest.raises(TransportClosed):
            ch.recv(timeout=1)
        with pytest.raises(TransportClosed):
            ch.send(b"three")
    with pytest.raises(TransportClosed):
        ch.recv(timeout=0)


def test_one_creator_one_attacher():
    name = _name()
    with ShmChannel.create(name, 4096):
        with pytest.raises(TransportError):
            ShmChannel.create(name, 4096)
        with ShmChannel.attach(name):
            with pytest.raises(TransportError):
                ShmChannel.attach(name)
        with pytest.raises(TransportError):
            ShmChannel.attach(name)              # used once; a new peer needs a new channel
    with pytest.raises(TransportError):
        ShmChannel.attach(name)                  # gone


def test_corrupt_segment_header_is_a_typed_error_on_attach():
    name = _name()
    with ShmChannel.create(name, 4096):
        raw = SharedMemory(SEGMENT_PREFIX + name)
        raw.buf[0:8] = b"GARBAGE!"
        with pytest.raises(MalformedMessage):
            ShmChannel.attach(name)
        raw.buf[0:8] = shm_ring.MAGIC
        raw.buf[16:24] = struct.pack("<Q", 1 << 40)   # capacity larger than the segment
        with pytest.raises(MalformedMessage):
            ShmChannel.attach(name)
        raw.buf[16:24] = struct.pack("<Q", 4096)
        second = region_size(4096)
        raw.buf[second:second + 8] = b"\xff" * 8      # the other direction's ring
        with pytest.raises(MalformedMessage):
            ShmChannel.attach(name)
        raw.close()


def test_corrupt_record_in_flight_is_a_typed_error_on_recv():
    name = _name()
    with ShmChannel.create(name, 4096) as ch, ShmChannel.attach(name) as other:
        ch.send(b"payload")
        raw = SharedMemory(SEGMENT_PREFIX + name)
        struct.pack_into("<II", raw.buf, HEADER_SIZE, 1 << 20, (1 << 20) ^ 0xFFFFFFFF)
        with pytest.raises(MalformedMessage):
            other.recv(timeout=1)
        raw.close()


def test_bad_names_are_refused():
    for bad in ("", "a/b", "x" * 65, "sp ace"):
        with pytest.raises(ValueError):
            ShmChannel.create(bad, 4096)


# asyncio ---------------------------------------------------------------------------

async def test_async_round_trip_does_not_block_the_loop():
    name = _name()
    count = 300
    with ShmChannel.create(name, 4096) as ch:
        peer = _start(_echo, name, count)
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.005)
                ticks += 1

        tick_task = asyncio.create_task(ticker())
        with pytest.raises(TimeoutError):
            await ch.arecv(timeout=0.2)          # the ticker keeps running meanwhile
        assert ticks >= 10
        for i in range(count):
            frame = _frame(i, (i * 131) % 1500)
            await ch.asend(frame, timeout=10)
            assert await ch.arecv(timeout=10) == frame
        tick_task.cancel()
        peer.join(10)
        assert peer.exitcode == 0


async def test_async_send_waits_for_room_then_reports_full():
    name = _name()
    with ShmChannel.create(name, 256) as ch, ShmChannel.attach(name) as other:
        while True:
            try:
                await ch.asend(b"z" * 100, timeout=0.05)
            except SendQueueFull:
                break

        async def drain_later() -> bytes:
            await asyncio.sleep(0.05)
            return await other.arecv(timeout=1)

        drained = asyncio.create_task(drain_later())
        await ch.asend(b"after room", timeout=2)  # woken by the reader's doorbell
        assert await drained == b"z" * 100


async def test_async_peer_killed_gives_transport_closed():
    name = _name()
    ready = ctx.Event()
    with ShmChannel.create(name, 4096) as ch:
        peer = _start(_attach_then_sleep, name, ready, 0)
        assert await asyncio.get_running_loop().run_in_executor(None, ready.wait, 10)
        _kill(peer)
        start = time.monotonic()
        with pytest.raises(TransportClosed):
            await ch.arecv(timeout=10)
        assert time.monotonic() - start < 2
        peer.join(5)


def test_spin_stops_and_backs_off_when_the_core_is_contended(monkeypatch):
    name = _name()
    with ShmChannel.create(name, 4096) as ch, ShmChannel.attach(name):
        yields = []

        def slow_yield() -> None:               # as if another task ran on this core for 1 ms
            yields.append(1)
            time.sleep(0.001)

        monkeypatch.setattr(os, "sched_yield", slow_yield)
        with pytest.raises(TimeoutError):
            ch.recv(timeout=0.05)
        assert len(yields) == 1
        with pytest.raises(TimeoutError):
            ch.recv(timeout=0.05)
        assert len(yields) == 1                 # still backing off: went straight to the doorbell


def test_sender_that_never_waits_still_learns_the_reader_died():
    name = _name()
    ready = ctx.Event()
    with ShmChannel.create(name, 1 << 20) as ch:
        peer = _start(_attach_then_sleep, name, ready, 0)
        assert ready.wait(10)
        _kill(peer)
        start = time.monotonic()
        with pytest.raises(TransportClosed):
            for _ in range(1000):                # the ring never fills: only the liveness check can tell
                ch.send(b"x" * 64)
                time.sleep(0.002)
        assert time.monotonic() - start < 1.5
        peer.join(5)
