"""GunEngine: a sans-I/O GUN relay peer (what the official `gun` Node relay does on the wire).

Feed it connection events and text frames; it returns the frames to send as
``(connection, text)`` pairs. Behaviour follows gun 0.2020.1241 (`src/mesh.js`,
`src/root.js`):

- on open we send ``{"#", "dam": "?", "pid"}``; a peer's ``dam:"?"`` sets its pid
  and, unless it is itself an answer (``@``), is answered with ours;
- every message id is remembered in a bounded LRU (``dup``) with the connection it
  came from; a repeated id is ignored; an answer (``@``) to a message we relayed is
  routed back to the connection that sent that message;
- a ``get`` is answered from the graph (the node, or just key ``.``; an empty
  ``{"@"}`` answer when we have nothing) and relayed to the other peers; a large node
  goes out in pages of at most ``page_chars`` characters, each naming the next
  page's id in ``%`` (as GUN's relay pages its answers, see `_answer` and paging.py);
- a ``get`` also subscribes its connection to the soul: a ``put`` is validated, HAM-merged
  (see ham.py / graph.py), acked to its sender with ``ok``, and forwarded only to the
  connections subscribed to one of its souls, with only those souls, as the official relay
  does (its AXE, on by default in Node: `lib/axe.js` routes a put to the peers whose GET
  named the soul). Sending every put to every peer made a burst of 10 writers x 1,000 puts
  overflow each connection's queue. Connections we dialled (`open(conn, upstream=True)`:
  other relays, or a native client's relays) get every put, as GUN.js sends its own puts
  to all its peers. A forwarded put larger than a page is cut into pages (paging.py);
- relayed messages carry ``><`` (the pids of up to 7 of our peers) and are not sent to
  peers named in the incoming ``><``; what `_relay` produces is `Relayed` (lossy under
  pressure, see outbox.py), everything else is a reply to the peer that asked;
- each connection has token buckets for messages and frame bytes a second
  (`GunLimits.rate_*`): a frame over either is dropped and counted (``rate_limited``),
  other connections are unaffected; one frame is at most ``wire.max_message_bytes``;
- malformed input is counted and answered with ``{"dam": "!", "err"}`` (parse
  errors, as GUN does) or an ``err`` ack (bad puts); it never raises.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass, field

from .graph import Graph, GraphLimits, wall_ms
from .paging import pages
from .store import SqliteGraphStore
from .wire import Malformed, WireLimits, encode, parse_frame, random_id, validate_get, validate_put

log = logging.getLogger(__name__)

SELF = object()  # the origin of messages this engine created


@dataclass
class GunLimits:
    wire: WireLimits = field(default_factory=WireLimits)
    graph: GraphLimits = field(default_factory=GraphLimits)
    dup_max: int = 20_000  # message ids remembered
    # per connection, token buckets refilled continuously: messages and frame bytes a second,
    # and the burst a bucket holds; frames over either are dropped and counted, not answered
    rate_messages: float = 10_000.0
    burst_messages: float = 20_000.0
    rate_bytes: float = 16.0 * (1 << 20)
    burst_bytes: float = 32.0 * (1 << 20)
    # one frame carrying data (a GET answer, a forwarded put); GUN.js in Node parses frames in steps of 32,768
    # characters and can lose a key at a step boundary (paging.py), so keep pages well under that (4x margin)
    page_chars: int = 8_192
    # souls one connection may subscribe to by GET; beyond, it gets every put (more traffic, nothing missed)
    max_subscriptions: int = 10_000


class Relayed(str):
    """A frame relayed from another peer (forwarded put or GET), not a reply: the I/O shell may drop it when
    the connection falls behind (GUN is lossy there too), where a reply is never dropped."""

    __slots__ = ()


class _Bucket:
    __slots__ = ("rate", "burst", "tokens", "at")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate, self.burst, self.tokens, self.at = rate / 1000.0, burst, burst, now

    def take(self, amount: float, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if amount > self.tokens:
            return False
        self.tokens -= amount
        return True


@dataclass
class _Peer:
    conn: object
    messages: _Bucket
    frame_bytes: _Bucket
    pid: str | None = None
    subs: set[str] | None = field(default_factory=set)  # souls it asked for; None: every soul


class GunEngine:
    def __init__(self, store: SqliteGraphStore | str | None = None, limits: GunLimits | None = None,
                 clock=wall_ms, pid: str | None = None) -> None:
        if isinstance(store, str):
            store = SqliteGraphStore(store)
        self.limits = limits or GunLimits()
        self.graph = Graph(store, self.limits.graph, clock)
        self.pid = pid or random_id()[:9]  # as short as GUN's: peers read only 99 characters of "><" lists
        self.peers: dict[object, _Peer] = {}
        self._dup: OrderedDict[str, object] = OrderedDict()
        self.counts = {"messages": 0, "duplicates": 0, "malformed": 0, "gets": 0, "puts": 0,
                       "relayed": 0, "acks_routed": 0, "rate_limited": 0, "uninterested": 0,
                       "subscriptions_overflowed": 0}
        self.on_answer = None  # called with the id of our own request when a peer answers it
        # Souls this engine stores (None: every soul, as a relay does). A client engine keeps only the
        # souls it reads or writes, so a relay forwarding every put does not make it mirror the graph.
        self.interest: set[str] | None = None

    # -- connections -------------------------------------------------------
    def open(self, conn, upstream: bool = False) -> list[tuple[object, str]]:
        """A new connection; `upstream`: one we dialled (a relay), which gets every put."""
        now, lim = self.graph.clock(), self.limits
        self.peers[conn] = _Peer(conn, _Bucket(lim.rate_messages, lim.burst_messages, now),
                                 _Bucket(lim.rate_bytes, lim.burst_bytes, now), subs=None if upstream else set())
        msg_id = random_id()
        self._track(msg_id, SELF)
        return [(conn, encode({"#": msg_id, "dam": "?", "pid": self.pid}))]

    def close(self, conn) -> None:
        self.peers.pop(conn, None)

    def close_store(self) -> None:
        if self.graph.store is not None:
            self.graph.store.close()

    # -- dedup -------------------------------------------------------------
    def _track(self, msg_id: str, origin) -> None:
        self._dup[msg_id] = origin
        self._dup.move_to_end(msg_id)
        while len(self._dup) > self.limits.dup_max:
            self._dup.popitem(last=False)

    # -- input -------------------------------------------------------------
    def receive(self, conn, raw: str) -> list[tuple[object, str]]:
        out: list[tuple[object, str]] = []
        peer = self.peers.get(conn)
        now = self.graph.clock()
        if peer is not None and not peer.frame_bytes.take(len(raw), now):
            self.counts["rate_limited"] += 1
            return out
        try:
            messages = parse_frame(raw, self.limits.wire)
        except Malformed as exc:
            self.counts["malformed"] += 1
            out.append((conn, encode({"#": random_id(), "dam": "!", "err": str(exc)})))
            return out
        if peer is not None and not peer.messages.take(len(messages), now):
            self.counts["rate_limited"] += 1
            return out
        for msg in messages:
            try:
                self._one(conn, msg, out)
            except Malformed as exc:
                self.counts["malformed"] += 1
                log.debug("gun: malformed message: %s", exc)
            except Exception:  # never let one message take the connection down
                self.counts["malformed"] += 1
                log.exception("gun: message handling failed")
        self.graph.commit()
        return out

    def _one(self, conn, msg, out) -> None:
        if not isinstance(msg, dict):
            raise Malformed("message is not an object")
        self.counts["messages"] += 1
        msg_id = msg.get("#")
        if msg_id is None:
            msg_id = msg["#"] = random_id()
        if not isinstance(msg_id, str) or not msg_id or len(msg_id) > self.limits.wire.max_id_length:
            raise Malformed("bad message id")
        if msg_id in self._dup:
            self.counts["duplicates"] += 1
            self._dup.move_to_end(msg_id)
            return
        self._track(msg_id, conn)
        peer = self.peers.get(conn)
        dam = msg.get("dam")
        if dam is not None:
            if dam == "?" and peer is not None:
                pid = msg.get("pid")
                if isinstance(pid, str) and pid:
                    if peer.pid is None:
                        peer.pid = pid[:64]
                    if "@" in msg:
                        return
                answer = random_id()
                self._track(answer, SELF)
                out.append((conn, encode({"#": answer, "dam": "?", "pid": self.pid, "@": msg_id})))
            elif dam == "!":
                log.info("gun: peer reports error: %.200s", msg.get("err"))
            return
        seen = set()
        yo = msg.get("><")
        if isinstance(yo, str):
            seen = set(yo[:99].split(","))
        answered = msg.get("@")
        if answered is not None:
            if not isinstance(answered, str):
                raise Malformed("bad @")
            digest = msg.get("##")
            if isinstance(digest, (int, float, str)) and not isinstance(digest, bool):
                answer_key = f"{answered}\x00{digest}"  # DAM: the same answer from several peers goes back once
                if answer_key in self._dup:
                    self.counts["duplicates"] += 1
                    return
                self._track(answer_key, SELF)
            if "put" in msg:
                self._merge_put(msg["put"])
            origin = self._dup.get(answered)
            if origin is SELF and self.on_answer is not None and "%" not in msg:  # a paged answer is whole at its last page
                self.on_answer(answered)
            if origin is not None and origin is not SELF and origin is not conn and origin in self.peers:
                self.counts["acks_routed"] += 1
                out.append((origin, encode(msg)))
            return
        if "put" in msg:
            self.counts["puts"] += 1
            try:
                self._merge_put(msg["put"])
            except Malformed as exc:
                self.counts["malformed"] += 1
                self._ack(conn, msg_id, out, err=f"Error: Invalid graph! {exc}")
                return
            self._relay(conn, msg, seen, out)
            self._ack(conn, msg_id, out)
        elif "get" in msg:
            self.counts["gets"] += 1
            soul, key = validate_get(msg["get"], self.limits.wire)
            self._subscribe(peer, soul)
            self._answer(conn, msg_id, soul, self.graph.node(soul, key), out)
            self._relay(conn, msg, seen, out)
        else:
            raise Malformed("neither get, put nor dam")

    def _merge_put(self, put) -> None:
        rows = validate_put(put, self.limits.wire)
        for _, _, state, _ in rows:
            if self.graph.too_far(state):
                raise Malformed("state too far in the future")
        for soul, key, state, value in rows:
            if self.interest is None or soul in self.interest:
                self.graph.merge(soul, key, state, value)
            else:
                self.counts["uninterested"] += 1

    def _answer(self, conn, msg_id: str, soul: str, node: dict | None, out) -> None:
        """Answer a GET with `node`, in pages (paging.py), each but the last naming the next page's id in "%",
        as GUN's relay does (`Gun.on.get.ack`)."""
        page_id = random_id()
        if node is None:
            self._track(page_id, SELF)
            out.append((conn, encode({"#": page_id, "@": msg_id})))
            return
        frame = len(encode({"#": page_id, "@": msg_id, "%": page_id, "put": {}}))
        parts = pages({soul: node}, self.limits.page_chars, frame)
        for i, part in enumerate(parts):
            reply = {"#": page_id, "@": msg_id}
            self._track(page_id, SELF)
            if i + 1 < len(parts):
                page_id = reply["%"] = random_id()
            reply["put"] = part
            out.append((conn, encode(reply)))

    def _subscribe(self, peer: _Peer | None, soul: str) -> None:
        if peer is None or peer.subs is None or soul in peer.subs:
            return
        if len(peer.subs) >= self.limits.max_subscriptions:
            peer.subs = None
            self.counts["subscriptions_overflowed"] += 1
            return
        peer.subs.add(soul)

    def _ack(self, conn, msg_id, out, err: str | None = None) -> None:
        answer = random_id()
        self._track(answer, SELF)
        reply = {"#": answer, "@": msg_id}
        if err is None:
            reply["ok"] = True
        else:
            reply["err"] = err
        out.append((conn, encode(reply)))

    def _relay(self, sender, msg, seen: set, out) -> None:
        """Send a GET on to every other peer, a put to those subscribed to its souls (see the module docstring)."""
        targets = [p for c, p in self.peers.items() if c is not sender and not (p.pid and p.pid in seen)]
        if not targets:
            return
        pids = [p.pid for p in self.peers.values() if p.pid][:7]
        if len(pids) > 1:
            msg = dict(msg)
            msg["><"] = ",".join(pids)
        if "put" not in msg:
            text = Relayed(encode(msg))
            self.counts["relayed"] += len(targets)
            out.extend((p.conn, text) for p in targets)
            return
        graph = msg["put"]
        groups: dict[tuple[str, ...], list[_Peer]] = {}
        for p in targets:
            souls = tuple(graph) if p.subs is None else tuple(s for s in graph if s in p.subs)
            if souls:
                groups.setdefault(souls, []).append(p)
        for souls, peers in groups.items():
            part = graph if len(souls) == len(graph) else {s: graph[s] for s in souls}
            for text in self._put_frames(msg, part):
                self.counts["relayed"] += len(peers)
                out.extend((p.conn, text) for p in peers)

    def _put_frames(self, msg: dict, graph: dict) -> list[Relayed]:
        """`msg` carrying `graph` as its put, in pages: the first keeps the message id, the others get their own
        (a peer drops a second message with an id it has seen)."""
        whole = encode({**msg, "put": graph})
        if len(whole) <= self.limits.page_chars:
            return [Relayed(whole)]
        frame = len(encode({**msg, "put": {}})) + len(random_id())  # a page's id may be longer than the message's
        parts = pages(graph, self.limits.page_chars, frame)
        frames = []
        for i, part in enumerate(parts):
            page = {**msg, "put": part}
            if i:
                page["#"] = random_id()
                self._track(page["#"], SELF)
            frames.append(Relayed(encode(page)))
        return frames

    # -- time ---------------------------------------------------------------
    def tick(self) -> list[tuple[str, str]]:
        """Merge deferred (future-state) updates that are now due."""
        return self.graph.tick()

    def next_due(self) -> float | None:
        return self.graph.next_due()

    # -- native agents: the same graph through the same rules -----------------
    def put(self, soul: str, values: dict, state: float | None = None) -> list[tuple[object, str]]:
        """Write keys of one node locally (HAM applies) and relay the put to our relays and subscribers."""
        return self.put_tracked(soul, values, state)[1]

    def put_tracked(self, soul: str, values: dict, state: float | None = None) -> tuple[str, list[tuple[object, str]]]:
        """`put`, also returning the message id, whose acks reach `on_answer`."""
        if self.interest is not None:
            self.interest.add(soul)
        state = self.graph.now() if state is None else state
        node = {"_": {"#": soul, ">": {k: state for k in values}}, **values}
        msg_id = random_id()
        self._track(msg_id, SELF)
        msg = {"#": msg_id, "put": {soul: node}}
        self._merge_put(msg["put"])
        self.graph.commit()
        out: list[tuple[object, str]] = []
        self._relay(SELF, msg, set(), out)
        return msg_id, out

    def get(self, soul: str, key: str | None = None) -> dict | None:
        return self.graph.node(soul, key)

    def request(self, soul: str) -> tuple[str, list[tuple[object, str]]]:
        """Ask every peer for a node; answers merge into the graph and reach `on_answer` with the id."""
        if self.interest is not None:
            self.interest.add(soul)
        msg_id = random_id()
        self._track(msg_id, SELF)
        text = encode({"#": msg_id, "get": {"#": soul}})
        return msg_id, [(p.conn, text) for p in self.peers.values()]

    def metrics(self) -> dict:
        return {**self.counts, **self.graph.counts, "deferred_waiting": self.graph.deferred_count(),
                "peers": len(self.peers), "souls": len(self.graph.nodes), "graph_bytes": self.graph.bytes}
