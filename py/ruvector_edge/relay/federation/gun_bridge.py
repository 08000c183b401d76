"""GUN across federated relays: a GUN.js peer on relay A sees a put made through relay B.

Each relay's `/gun` graph is one GUN peer (gun/peer.py). The bridge is one more connection of that
engine, dialled "upstream" so it gets every put, whose other end is every other relay on NATS: what
the engine relays to it (puts from its own peers, and their GETs) is published on one subject, and
what the other relays publish there is received as from any GUN peer. So the engine's own rules
apply unchanged: HAM merges, puts go on only to the peers subscribed to their souls, and a message
already seen (GUN message id `#`, in the engine's bounded `dup`) is ignored, which keeps a frame that
reaches a relay twice from being applied or passed on twice. Nothing the engine receives from the
bridge goes back to it (the engine never relays to a message's sender, and the NATS connection does
not echo), so relays never loop.

Of the engine's replies to the bridge only GET answers that carry data are published: acks are
already given by the writer's own relay, and an empty answer says nothing the asker's relay did not.
The greeting (`dam`) is for a GUN peer, not for relays, and is not sent.

Subject: `edge.gun`, one for every relay of the NATS system, because the relay's GUN graph is one
graph, not one per swarm (GUN data is public unless sealed; swarms seal theirs, gun/sealed.py).
Publishing is lossy under pressure, as GUN's own relaying is: at most `OUTBOX` frames wait, more
are dropped and counted.

Counted for the relay's /metrics: `counts` (frames published and received, messages received that the
graph already had, engine replies kept local) and `dropped` by reason (outbox full, oversized, publish
failed; received frames that were malformed or over the bridge's rate). The engine counts duplicates,
malformed input and rate limits for all its peers at once, so the bridge takes the part that came
through it from the difference around its own `receive` call (synchronous: nothing else runs between).
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging

from nats.errors import Error as NatsError

from ...gun.endpoint import _dispatch
from ...gun.peer import GunEngine, Relayed

log = logging.getLogger(__name__)

GUN_SUBJECT = "edge.gun"
OUTBOX = 4096  # frames waiting to be published; more are dropped (counted)
_RECEIVE_DROPS = ("malformed", "rate_limited")  # engine counts that, for frames from the bridge, are its drops


class GunBridge:
    def __init__(self, engine: GunEngine, outbox: int = OUTBOX) -> None:
        self.engine = engine
        self.outbox: collections.deque[bytes] = collections.deque()
        self.outbox_limit = outbox
        self.counts: collections.Counter[str] = collections.Counter()
        self.dropped: collections.Counter[str] = collections.Counter()
        self._ready = asyncio.Event()
        self._nc = None
        self._sub = None
        self._writer: asyncio.Task | None = None
        engine.open(self, upstream=True)  # its greeting is not for relays: dropped

    def __repr__(self) -> str:
        return "<gun federation bridge>"

    # The engine's side ------------------------------------------------------------------
    def push(self, engine: GunEngine, text: str) -> None:
        """A frame the engine sends to the other relays (see the module docstring for what goes)."""
        if not isinstance(text, Relayed) and not _answer_with_data(text):
            self.counts["replies_kept"] += 1
            return
        if len(self.outbox) >= self.outbox_limit:
            self.dropped["outbox_full"] += 1
            return
        self.outbox.append(text.encode("utf-8"))
        self._ready.set()

    def received(self, data: bytes) -> None:
        """A frame another relay published: to the engine, as from any peer (malformed input is counted there)."""
        self.counts["received"] += 1
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            self.engine.counts["malformed"] += 1
            self.dropped["malformed"] += 1
            return
        engine = self.engine.counts
        before = {name: engine.get(name, 0) for name in ("duplicates", *_RECEIVE_DROPS)}
        out = self.engine.receive(self, text)
        self.counts["duplicates"] += engine.get("duplicates", 0) - before["duplicates"]
        for reason in _RECEIVE_DROPS:
            self.dropped[reason] += engine.get(reason, 0) - before[reason]
        _dispatch(self.engine, out)

    # The NATS side ---------------------------------------------------------------------
    async def start(self, nc) -> None:
        self._nc = nc

        async def on_message(msg) -> None:
            self.received(msg.data)

        self._sub = await nc.subscribe(GUN_SUBJECT, cb=on_message)
        self._writer = asyncio.create_task(self._write(), name="gun-bridge-writer")

    async def stop(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)
        if self._sub is not None:
            try:
                await self._sub.unsubscribe()
            except (NatsError, asyncio.TimeoutError, OSError):
                pass
        self.engine.close(self)

    async def _write(self) -> None:
        max_payload = self._nc.max_payload
        while True:
            if not self.outbox:
                self._ready.clear()
                await self._ready.wait()
                continue
            data = self.outbox.popleft()
            if len(data) > max_payload:
                self.dropped["oversized"] += 1
                continue
            try:
                await self._nc.publish(GUN_SUBJECT, data)
                self.counts["published"] += 1
            except (NatsError, asyncio.TimeoutError, OSError) as exc:
                self.dropped["publish_failed"] += 1
                log.info("gun bridge: publish failed: %s", exc)


def _answer_with_data(text: str) -> bool:
    try:
        msg = json.loads(text)
    except ValueError:
        return False
    return isinstance(msg, dict) and "@" in msg and "put" in msg
