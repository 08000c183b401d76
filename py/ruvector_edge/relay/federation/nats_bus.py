"""The backplane's I/O shell: nats-py and JetStream carry out what backplane.py decides.

Commands run in emission order on lanes: one per swarm (its stream and bucket exist before the
publishes, presence puts and replays that follow them) and one for core-NATS subscriptions, which
need nothing but the connection. So a swarm whose setup waits on JetStream (a stream electing a
leader: ~10 s of retries) stalls neither other swarms nor its own live path: its relay subscribes at
once and takes frames live meanwhile. Replays and fetches run beside the lanes, bounded by time. Live frames are core-NATS publishes and subscriptions
(nats-py re-subscribes them on every reconnect, to any node); the connection does not echo, since
the backplane already delivered a frame to its own relay's subscribers. Frames and presence updates
are published without waiting for an acknowledgement, so a slow JetStream never stalls the relay's
event loop; the stream captures the same subjects and de-duplicates by `Nats-Msg-Id`.

Whether the stream stored a frame is read from the swarm's position feed (store_acks.py), not from a
reply per frame: a frame not stored is published again (bounded). While a replicated stream elects
a leader (its node died) it stores nothing and says nothing, and a frame lost then, live and in
history, would be lost for good for a relay that was reconnecting meanwhile (its gap fetch finds
nothing). Subscribers drop the repeat by message id, the stream by `Nats-Msg-Id`.

The JetStream consumers (the presence watch, the position feed) are ordered push consumers with a
short idle heartbeat: when their node dies, two missed heartbeats make nats-py recreate them from
the last sequence they delivered, on whichever node holds the stream now, and retry until it does.
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
from . import subjects as sj
from .store_acks import StoreAcks

log = logging.getLogger(__name__)

REPLAY_TIMEOUT_S = 10.0  # a replay that has not finished by then hands over to live frames
REPLAY_ROUNDS = 3  # the stream's end is read again after a round: frames stored meanwhile replay too
CONSUMER_HEARTBEAT_S = 1.0  # idle heartbeat of the presence watch and position feed (recreated after 2 missed)
MAX_FETCHES = 16  # gap fetches in flight at once
ENSURE_ATTEMPTS = 8  # setting up a swarm's stream, bucket and consumers: ~10 s of retries
ACK_TIMEOUT_S = 3.0  # a stream whose feed reported none of our frames for this long: overdue ones go again
DRAIN_TIMEOUT_S = 2.0  # a relay stopping flushes what it still has for NATS, this long at most
PUBLISH_ATTEMPTS = 20  # ~60 s of publishing a frame until stored, within the stream's 120 s duplicate window
_KV_OP = "KV-Operation"


@dataclass(frozen=True)
class _Republish:
    """A frame published again because the stream did not store it (its `attempt`th try)."""

    command: bp.Publish
    attempt: int


def _lane_of(c: bp.Command | _Republish) -> str:
    """Subscriptions share a lane; every other command runs on its swarm's, named by the swarm's token
    (which its stream and bucket names carry too)."""
    if isinstance(c, (bp.Subscribe, bp.Unsubscribe)):
        return "subscriptions"
    if isinstance(c, _Republish):
        c = c.command
    if isinstance(c, (bp.EnsureSwarm, bp.ReleaseSwarm, bp.Fetch)):
        return sj.swarm_token(c.swarm)
    if isinstance(c, (bp.Publish, bp.Replay)):
        return sj.token_of_stream(c.stream)
    return sj.token_of_bucket(c.bucket)


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
        self.monotonic = monotonic
        self.backplane = bp.Backplane(config, sink, self._emit, monotonic)
        self._lanes: dict[str, tuple[asyncio.Queue[bp.Command | _Republish], asyncio.Task]] = {}
        self._acks: StoreAcks[bp.Publish] = StoreAcks(ACK_TIMEOUT_S, PUBLISH_ATTEMPTS, config.max_held, monotonic)
        self._subs: dict[tuple[str, ...], object] = {}
        self._watches: dict[str, tuple[object, ...]] = {}  # swarm -> its presence watch and position feed
        self._tasks: list[asyncio.Task] = []
        self._replays: set[asyncio.Task] = set()
        self._fetches = asyncio.Semaphore(MAX_FETCHES)
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
            reconnect_time_wait=0.25, ping_interval=2, max_outstanding_pings=2, error_cb=self._error, no_echo=True,
            **credentials,
        ), 3 * self.options.connect_timeout_s * len(self.options.servers))
        self.nc.options["max_reconnect_attempts"] = -1
        self.js = self.nc.jetstream()
        self._tasks = [asyncio.create_task(self._tick(), name="nats-bus-tick")]

    async def stop(self) -> None:
        tasks = [*self._tasks, *self._replays, *(task for _, task in self._lanes.values())]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._lanes.clear()
        if self.nc is not None:
            if not self.nc.is_connected:  # draining a connection that is reconnecting waits ~30 s for nothing
                await self.nc.close()
                return
            try:
                await asyncio.wait_for(self.nc.drain(), DRAIN_TIMEOUT_S)
            except (NatsError, asyncio.TimeoutError, OSError):
                await self.nc.close()

    @staticmethod
    async def _error(exc: Exception) -> None:
        log.warning("nats: %s", exc)

    def _emit(self, command: bp.Command | _Republish) -> None:
        name = _lane_of(command)
        lane = self._lanes.get(name)
        if lane is None:
            queue: asyncio.Queue[bp.Command | _Republish] = asyncio.Queue()
            lane = self._lanes[name] = (queue, asyncio.get_running_loop().create_task(
                self._work(name, queue), name=f"nats-bus-{name[:12]}"))
        lane[0].put_nowait(command)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.config.heartbeat_s / 2)
            self.backplane.tick()
            self._publish_again(self._acks.due())

    def _publish_again(self, frames: list[tuple[bp.Publish, int]]) -> None:
        for command, attempt in frames:
            log.debug("nats: frame %s not stored, publishing it again (attempt %d)", command.msg_id, attempt)
            self._emit(_Republish(command, attempt))
        for reason, count in (("unstored", self._acks.unstored), ("untracked", self._acks.untracked)):
            if count:
                self.backplane.dropped[reason] = count

    async def _publish_frame(self, c: bp.Publish, attempt: int) -> None:
        self._acks.published(c.stream, c.msg_id, c, attempt)
        await self.nc.publish(c.subject, c.data, headers={"Nats-Msg-Id": c.msg_id})  # type: ignore[union-attr]

    async def _work(self, name: str, queue: asyncio.Queue[bp.Command | _Republish]) -> None:
        while True:
            command = await queue.get()
            try:
                await self._run(command)
            except (NatsError, asyncio.TimeoutError, OSError) as exc:
                log.warning("nats: %s failed: %s", type(command).__name__, exc)
            if isinstance(command, bp.ReleaseSwarm) and queue.empty():  # the swarm is gone from here: so is its lane
                del self._lanes[name]
                return

    async def _run(self, c: bp.Command | _Republish) -> None:
        nc, js = self.nc, self.js
        assert nc is not None and js is not None
        if isinstance(c, bp.Publish):
            await self._publish_frame(c, 1)
        elif isinstance(c, _Republish):
            await self._publish_frame(c.command, c.attempt)
        elif isinstance(c, bp.Put):
            await nc.publish(f"$KV.{c.bucket}.{c.key}", c.value)
        elif isinstance(c, bp.Delete):
            await nc.publish(f"$KV.{c.bucket}.{c.key}", b"", headers={_KV_OP: "DEL"})
        elif isinstance(c, bp.Subscribe):
            key = c.key

            async def deliver(msg) -> None:
                self.backplane.received(key, msg.data)

            self._subs[key] = await nc.subscribe(c.subject, cb=deliver)
        elif isinstance(c, bp.Unsubscribe):
            sub = self._subs.pop(c.key, None)
            if sub is not None:
                await sub.unsubscribe()  # type: ignore[attr-defined]
        elif isinstance(c, bp.EnsureSwarm):
            await self._ensure_swarm_retrying(c)
        elif isinstance(c, bp.ReleaseSwarm):
            self._acks.forget(sj.stream_name(c.swarm))
            for sub in self._watches.pop(c.swarm, ()):
                await sub.unsubscribe()  # type: ignore[attr-defined]
        elif isinstance(c, (bp.Replay, bp.Fetch)):
            task = asyncio.create_task(self._replay(c) if isinstance(c, bp.Replay) else self._fetch(c))
            self._replays.add(task)
            task.add_done_callback(self._replays.discard)

    async def _ensure_swarm_retrying(self, c: bp.EnsureSwarm) -> None:
        """A stream or bucket with replicas has no leader for a moment after it is created or after a
        node dies, and answers nothing meanwhile: retry (bounded), or the swarm has no presence here."""
        for attempt in range(ENSURE_ATTEMPTS):
            try:
                await self._ensure_swarm(c)
                return
            except (NatsError, asyncio.TimeoutError, OSError) as exc:
                log.info("nats: setting up swarm %s (attempt %d): %s", c.stream, attempt + 1, exc)
                await asyncio.sleep(min(2.0, 0.25 * 2 ** attempt))
        log.warning("nats: swarm %s not set up after %d attempts: no presence or positions here", c.stream,
                    ENSURE_ATTEMPTS)
        self.backplane.stream_at(c.swarm, 0)  # no presence watch will answer: frames from unknown senders stop waiting

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
            await js.key_value(c.bucket)
        except (BucketNotFoundError, NotFoundError):
            await js.create_key_value(bucket=c.bucket, ttl=cfg.presence_ttl_s, history=1, replicas=cfg.replicas)
        swarm, prefix = c.swarm, f"$KV.{c.bucket}."

        async def presence(msg) -> None:
            deleted = (msg.headers or {}).get(_KV_OP) in ("DEL", "PURGE")
            self.backplane.presence(swarm, msg.subject[len(prefix):], None if deleted else msg.data)

        async def position(msg) -> None:
            msg_id = (msg.headers or {}).get("Nats-Msg-Id")
            self._publish_again(self._acks.stored(c.stream, msg_id))
            self.backplane.position(swarm, msg.metadata.sequence.stream, msg.subject, msg_id)

        # Not kv.watchall(): its consumer's 5 s heartbeat leaves presence deaf for 10 s after a node dies.
        last = (await js.stream_info(c.stream)).state.last_seq
        if last == 0:  # one opening per stream (relays starting together: de-duplicated by id)
            last = (await js.publish(sj.opening_subject(swarm), b"", stream=c.stream, headers={"Nats-Msg-Id": "open"})).seq
        watch = await js.subscribe(f"{prefix}>", stream=f"KV_{c.bucket}", cb=presence, ordered_consumer=True,
                                   idle_heartbeat=CONSUMER_HEARTBEAT_S, deliver_policy=api.DeliverPolicy.LAST_PER_SUBJECT)
        try:
            feed = await js.subscribe(c.subjects, stream=c.stream, cb=position, ordered_consumer=True, headers_only=True,
                                      idle_heartbeat=CONSUMER_HEARTBEAT_S,
                                      deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
                                      config=api.ConsumerConfig(opt_start_seq=last + 1))
        except BaseException:
            await watch.unsubscribe()
            raise
        self.backplane.stream_at(swarm, last)
        self._watches[swarm] = (watch, feed)
        self._acks.follow(c.stream)

    async def _fetch(self, c: bp.Fetch) -> None:
        try:
            async with self._fetches:
                data = (await self.js.get_msg(c.stream, c.seq)).data  # type: ignore[union-attr]
        except NotFoundError:
            data = None
        except (NatsError, asyncio.TimeoutError, OSError) as exc:
            log.info("nats: fetching frame %d of %s failed, asking again later: %s", c.seq, c.stream, exc)
            self.backplane.fetch_failed(c.swarm, c.key)
            return
        self.backplane.fetched(c.swarm, c.key, data)

    async def _replay(self, c: bp.Replay) -> None:
        """Replay up to the stream's end, then read the end again (a live frame held for the agent
        may have been stored after the first read): the seam's duplicates go by message id. Frames
        are handed over from the subscription's callback, not awaited one by one."""
        try:
            info = await self.js.stream_info(c.stream)  # type: ignore[union-attr]
            target = info.state.last_seq
            if c.start_seq > target:
                return
            reached = asyncio.Event()
            seq = c.start_seq - 1

            async def frame(msg) -> None:
                nonlocal seq
                seq = msg.metadata.sequence.stream
                self.backplane.replayed(c.conn_id, msg.subject, msg.data, seq)
                if seq >= target:
                    reached.set()

            sub = await self.js.subscribe(  # type: ignore[union-attr]
                c.subject, stream=c.stream, ordered_consumer=True, cb=frame,
                deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
                config=api.ConsumerConfig(opt_start_seq=max(c.start_seq, info.state.first_seq or 1)),
            )
            deadline = time.monotonic() + REPLAY_TIMEOUT_S
            try:
                for _ in range(REPLAY_ROUNDS):
                    await asyncio.wait_for(reached.wait(), max(0.01, deadline - time.monotonic()))
                    target = (await self.js.stream_info(c.stream)).state.last_seq  # type: ignore[union-attr]
                    if seq >= target:
                        break
                    reached.clear()  # no await since the check: the callback cannot have run meanwhile
            finally:
                await sub.unsubscribe()
        except (NatsError, asyncio.TimeoutError, OSError) as exc:
            log.warning("nats: replay for connection %d stopped early: %s", c.conn_id, exc)
        finally:
            self.backplane.replay_done(c.conn_id)
