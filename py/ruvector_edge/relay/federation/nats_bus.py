"""The backplane's I/O shell: nats-py and JetStream carry out what backplane.py decides.

Commands run one at a time in emission order on one worker task (a subscription is in place
before the publishes that follow it; a stream exists before anything subscribes to it); replays
run beside it, each bounded by the stream's last sequence when it started and by time. Frames and
presence updates are published without waiting for an acknowledgement, so a slow JetStream never
stalls the relay's event loop; the stream still de-duplicates by `Nats-Msg-Id`.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from dataclasses import dataclass
from typing import Callable

import nats
from nats.errors import Error as NatsError
from nats.js import api
from nats.js.errors import BadRequestError, BucketNotFoundError, NotFoundError

from . import backplane as bp

log = logging.getLogger(__name__)

REPLAY_TIMEOUT_S = 10.0  # a replay that has not finished by then hands over to live frames
_KV_OP = "KV-Operation"


@dataclass(frozen=True)
class NatsOptions:
    """How a relay reaches NATS: servers, credentials (user/password or an nkey seed file) and TLS."""

    servers: tuple[str, ...]
    user: str | None = None
    password: str | None = None
    nkey_seed_file: str | None = None
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    connect_timeout_s: float = 5.0

    def tls_context(self) -> ssl.SSLContext | None:
        if not (self.tls_ca or self.tls_cert):
            return None
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.tls_ca)
        if self.tls_cert:
            context.load_cert_chain(self.tls_cert, self.tls_key)
        return context


class NatsBus:
    def __init__(self, options: NatsOptions, config: bp.FederationConfig, sink: bp.FederationSink,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.options = options
        self.config = config
        self.backplane = bp.Backplane(config, sink, self._emit, monotonic)
        self._commands: asyncio.Queue[bp.Command] = asyncio.Queue()
        self._subs: dict[tuple[str, ...], object] = {}
        self._watchers: dict[str, tuple[object, asyncio.Task]] = {}
        self._tasks: list[asyncio.Task] = []
        self._replays: set[asyncio.Task] = set()
        self.nc = None
        self.js = None

    async def start(self) -> None:
        """Connect (raises if NATS refuses us: wrong credentials, bad certificate, nobody listening)."""
        credentials: dict = {}
        if self.options.user is not None:
            credentials.update(user=self.options.user, password=self.options.password)
        if self.options.nkey_seed_file:
            credentials.update(nkeys_seed=self.options.nkey_seed_file)
        # A bounded first connect, so a refusal (credentials, certificate) fails the start instead of
        # retrying forever; once in, reconnect without limit (to any node of the cluster).
        self.nc = await asyncio.wait_for(nats.connect(
            servers=list(self.options.servers), tls=self.options.tls_context(), name=f"edge-relay-{self.config.relay_id}",
            connect_timeout=self.options.connect_timeout_s, allow_reconnect=True, max_reconnect_attempts=2,
            reconnect_time_wait=0.25, ping_interval=2, max_outstanding_pings=2, error_cb=self._error, **credentials,
        ), 3 * self.options.connect_timeout_s * len(self.options.servers))
        self.nc.options["max_reconnect_attempts"] = -1
        self.js = self.nc.jetstream()
        self._tasks = [asyncio.create_task(self._work(), name="nats-bus-worker"),
                       asyncio.create_task(self._tick(), name="nats-bus-tick")]

    async def stop(self) -> None:
        for task in [*self._tasks, *self._replays, *(task for _, task in self._watchers.values())]:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._replays, return_exceptions=True)
        if self.nc is not None:
            try:
                await self.nc.drain()
            except (NatsError, asyncio.TimeoutError, OSError):
                await self.nc.close()

    @staticmethod
    async def _error(exc: Exception) -> None:
        log.warning("nats: %s", exc)

    def _emit(self, command: bp.Command) -> None:
        self._commands.put_nowait(command)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.config.heartbeat_s / 2)
            self.backplane.tick()

    async def _work(self) -> None:
        while True:
            command = await self._commands.get()
            try:
                await self._run(command)
            except (NatsError, asyncio.TimeoutError, OSError) as exc:
                log.warning("nats: %s failed: %s", type(command).__name__, exc)

    async def _run(self, c: bp.Command) -> None:
        nc, js = self.nc, self.js
        assert nc is not None and js is not None
        if isinstance(c, bp.Publish):
            await nc.publish(c.subject, c.data, headers={"Nats-Msg-Id": c.msg_id})
        elif isinstance(c, bp.Put):
            await nc.publish(f"$KV.{c.bucket}.{c.key}", c.value)
        elif isinstance(c, bp.Delete):
            await nc.publish(f"$KV.{c.bucket}.{c.key}", b"", headers={_KV_OP: "DEL"})
        elif isinstance(c, bp.Subscribe):
            key = c.key

            async def deliver(msg) -> None:
                self.backplane.received(key, msg.data, msg.metadata.sequence.stream)

            self._subs[key] = await js.subscribe(c.subject, stream=c.stream, cb=deliver, ordered_consumer=True,
                                                 deliver_policy=api.DeliverPolicy.NEW)
        elif isinstance(c, bp.Unsubscribe):
            sub = self._subs.pop(c.key, None)
            if sub is not None:
                await sub.unsubscribe()  # type: ignore[attr-defined]
        elif isinstance(c, bp.EnsureSwarm):
            await self._ensure_swarm(c)
        elif isinstance(c, bp.ReleaseSwarm):
            watcher = self._watchers.pop(c.swarm, None)
            if watcher is not None:
                watcher[1].cancel()
                await watcher[0].stop()  # type: ignore[attr-defined]
        elif isinstance(c, bp.Replay):
            task = asyncio.create_task(self._replay(c))
            self._replays.add(task)
            task.add_done_callback(self._replays.discard)

    async def _ensure_swarm(self, c: bp.EnsureSwarm) -> None:
        js, cfg = self.js, self.config
        stream = api.StreamConfig(
            name=c.stream, subjects=[c.subjects], storage=api.StorageType.FILE, num_replicas=cfg.replicas,
            max_msgs=cfg.stream_max_msgs, max_bytes=cfg.stream_max_bytes, max_age=cfg.stream_max_age_s,
            discard=api.DiscardPolicy.OLD, duplicate_window=min(120.0, cfg.stream_max_age_s),
            max_msg_size=cfg.max_frame_bytes,
        )
        try:
            await js.add_stream(stream)
        except BadRequestError:  # exists with other bounds (another relay's settings, or changed ones)
            await js.update_stream(stream)
        try:
            kv = await js.key_value(c.bucket)
        except (BucketNotFoundError, NotFoundError):
            kv = await js.create_key_value(bucket=c.bucket, ttl=cfg.presence_ttl_s, history=1, replicas=cfg.replicas)
        watcher = await kv.watchall()
        self._watchers[c.swarm] = (watcher, asyncio.create_task(self._watch(c.swarm, watcher)))

    async def _watch(self, swarm: str, watcher) -> None:
        async for entry in watcher:
            if entry is None:  # "no more history": live updates follow
                continue
            deleted = entry.operation in ("DEL", "PURGE")
            self.backplane.presence(swarm, entry.key, None if deleted else entry.value)

    async def _replay(self, c: bp.Replay) -> None:
        try:
            info = await self.js.stream_info(c.stream)  # type: ignore[union-attr]
            last = info.state.last_seq
            if c.start_seq <= last:
                sub = await self.js.subscribe(  # type: ignore[union-attr]
                    c.subject, stream=c.stream, ordered_consumer=True,
                    deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
                    config=api.ConsumerConfig(opt_start_seq=max(c.start_seq, info.state.first_seq or 1)),
                )
                deadline = time.monotonic() + REPLAY_TIMEOUT_S
                try:
                    for _ in range(last - c.start_seq + 1):
                        msg = await sub.next_msg(timeout=max(0.01, deadline - time.monotonic()))
                        seq = msg.metadata.sequence.stream
                        self.backplane.replayed(c.conn_id, msg.subject, msg.data, seq)
                        if seq >= last:
                            break
                finally:
                    await sub.unsubscribe()
        except (NatsError, asyncio.TimeoutError, OSError) as exc:
            log.warning("nats: replay for connection %d stopped early: %s", c.conn_id, exc)
        finally:
            self.backplane.replay_done(c.conn_id)
