"""The page's agent: what the web app's worker calls.

`start(fragment)` creates one SwarmAgent from what the URL fragment asks for
(`parse_fragment`): an open swarm's key (`swarm_key`), an admitted swarm's invite
to trade for a certificate (`invite`), a new admitted swarm with this page as its
admin (`found=admitted`), or the admitted swarm this browser already belongs to
(`swarm`), with the identity this browser keeps for that swarm and id (and, for
its admin, the admin state kept per swarm, so a reload stays admin of the same
swarm with its key, members, revocations and invites); then it joins through the
browser links. `snapshot()` returns everything the page shows
in one call, so one worker request per refresh is enough; `act(name, args)` runs
one of the page's buttons (the admin's "Invite someone" and "Remove" included).

Only `start` needs Pyodide (IndexedDB, the browser links); the rest is plain
agent API, so the panels' data and the roles' behaviour are tested natively too.
"""
from __future__ import annotations

import asyncio
import base64
import collections
import inspect
import json
import logging
import os
import random
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from .errors import EdgeError, IdentityFileError, InvalidPageAction, NotAdmitted, RejectedInput
from .learning.environments import ChainEnv
from .p2p.certificates import Certificate, admitted_swarm_id, is_admitted
from .p2p.identity import IdentityManager
from .p2p.invites import MAX_INVITE_USES, Invite
from .protocol import MessageKind, SwarmMessage
from .transport.relay_urls import websocket_relay_urls

log = logging.getLogger(__name__)

LOG_LIMIT = 200  # messages kept for the log panel
SERIES_LIMIT = 180  # chart points (one a second: three minutes)
CURVE_LIMIT = 200  # learning-curve episodes
PATTERN_ROWS = 40
ARTIFACT_ROWS = 50
LEARN_EVERY_S = 2.0
SAMPLE_EVERY_S = 1.0
PING_EVERY_S = 3.0
INVITE_ROWS = 20  # the admin's most recent invites shown with their uses left
MAX_INVITE_HOURS = 24 * 30
SCOUT_CORPUS = (
    "Ed25519 signs every envelope; the registry is the only source of a sender's key.",
    "AES-256-GCM seals payloads with the canonical header as associated data.",
    "Patterns merge as a CRDT: every origin's entry is kept and the swarm value is visit weighted.",
    "Memories are embedded offline by all-MiniLM-L6-v2 (or feature hashing without it) and searched by cosine similarity.",
    "Tabs of one origin talk over a BroadcastChannel; browsers upgrade to WebRTC data channels.",
    "A relay forwards sealed frames it cannot open; the swarm key never leaves the URL fragment.",
    "Tasks are WebAssembly modules run under fuel and memory limits; receipts are signed.",
    "Artifacts are content addressed (CIDv1, sha2-256) and verified chunk by chunk.",
)


@dataclass(frozen=True)
class JoinRequest:
    """What a URL fragment asks for. `mode`: "open" (a swarm key: anyone holding it is a member), "invite" (an
    admitted swarm's invite to trade for a certificate), "found" (a new admitted swarm, this page its admin),
    "member" (back to the admitted swarm `swarm_id` this browser already belongs to, as admin or member)."""

    mode: str
    role: Any
    agent_id: str
    relays: tuple[str, ...] = ()
    caps: str | None = None
    swarm_key: bytes | None = None
    invite: Invite | None = None
    swarm_id: str | None = None


def parse_fragment(fragment: dict[str, Any]) -> JoinRequest:
    """The join a fragment asks for; ValueError (MalformedMessage for a damaged invite) when it is unusable."""
    from .agent import AgentRole

    role_name = str(fragment.get("role") or "worker").lower()
    try:
        role = AgentRole(role_name)
    except ValueError:
        raise ValueError(f"unknown role {role_name!r}: use one of {[r.value for r in AgentRole]}") from None
    common = dict(role=role, agent_id=str(fragment.get("id") or f"tab-{os.urandom(2).hex()}"),
                  relays=_relays(fragment), caps=fragment.get("caps") or None)
    if fragment.get("invite"):
        return JoinRequest("invite", invite=Invite.from_token(str(fragment["invite"])), **common)
    if fragment.get("found") == "admitted":
        return JoinRequest("found", **common)
    if fragment.get("swarm"):
        swarm_id = str(fragment["swarm"])
        if not is_admitted(swarm_id) or not fragment.get("id"):
            raise ValueError("swarm= names an admitted swarm (adm-...) and needs the id this browser joined as")
        return JoinRequest("member", swarm_id=swarm_id, **common)
    key_hex = str(fragment.get("swarm_key") or "").strip().lower()
    try:
        key = bytes.fromhex(key_hex)
    except ValueError:
        key = b""
    if len(key) != 32:
        raise ValueError("the invite's swarm_key must be 64 hex characters")
    return JoinRequest("open", swarm_key=key, **common)


def _relays(fragment: dict[str, Any]) -> tuple[str, ...]:
    """The relays to join through: the invite's `relays=` list (several relays of a federation, failed over in
    turn) when it has one, else `relay_url` (the page passes its own origin's relay); InvalidRelayUrl for a URL a
    browser cannot open."""
    listed = fragment.get("relays") or fragment.get("relay_url")
    return tuple(websocket_relay_urls(str(listed))) if listed else ()


def role_capabilities(role: Any, extra: str | None = None) -> tuple[str, ...]:
    """What an agent of `role` advertises: workers and specialists run wasm tasks, plus any `extra` ("a,b")."""
    caps = [role.value]
    if role.value in ("worker", "specialist"):
        caps.append("wasm")
    for cap in (extra or "").split(","):
        cap = cap.strip()
        if cap and cap not in caps:
            caps.append(cap)
    return tuple(caps)


# Identity ---------------------------------------------------------------------------
def identity_name(swarm_id: str, agent_id: str) -> str:
    """The IndexedDB key of an identity: one per swarm and agent id (peers pin an id to its first key)."""
    return f"{swarm_id}/{agent_id}"


async def identity_from_secret_json(crypto: Any, raw: str) -> IdentityManager:
    """An identity back from `IdentityManager.to_secret_json()`; IdentityFileError when it is not one."""
    try:
        doc = json.loads(raw)
        if not isinstance(doc, dict) or doc.get("version") != 1:
            raise IdentityFileError("unsupported or missing identity version")
        seed = base64.b64decode(doc["ed25519_seed"], validate=True)
        x_private = base64.b64decode(doc["x25519_private"], validate=True)
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        raise IdentityFileError(f"malformed saved identity: {exc}") from exc
    return await IdentityManager.from_secrets(crypto, seed, x_private)


def membership_name(swarm_id: str, agent_id: str) -> str:
    """Where a member of an admitted swarm keeps its certificate and epoch key beside its identity."""
    return f"{identity_name(swarm_id, agent_id)}#membership"


def membership_json(agent: Any) -> str:
    """A member's certificate and current epoch key, so a reload rejoins without spending another invite.
    The key is as secret as the identity stored beside it, and no more: whoever reads one reads both."""
    admission = agent.swarm.admission
    epoch, key = admission.require_key()
    return json.dumps({"version": 1, "certificate": admission.certificate.to_dict(), "epoch": epoch, "key": key.hex()})


async def resume_membership(identity: IdentityManager, agent_id: str, capabilities: tuple[str, ...], raw: str,
                             runtime: Any = None) -> Any:
    """The swarm state saved by `membership_json`, for `identity`; IdentityFileError when it is not one."""
    from .p2p.swarm import P2PSwarm

    try:
        doc = json.loads(raw)
        if not isinstance(doc, dict) or doc.get("version") != 1:
            raise IdentityFileError("unsupported or missing membership version")
        certificate = Certificate.from_dict(doc["certificate"])
        epoch, key = doc["epoch"], bytes.fromhex(doc["key"])
        if type(epoch) is not int or epoch < 0 or len(key) != 32:
            raise IdentityFileError("membership epoch or key out of range")
    except (ValueError, KeyError, TypeError, RecursionError, RejectedInput) as exc:
        raise IdentityFileError(f"malformed saved membership: {exc}") from exc
    return await P2PSwarm.resume_admitted(agent_id, certificate, epoch, key, capabilities, identity=identity,
                                          runtime=runtime)


async def load_or_create_identity(crypto: Any, name: str, load: Callable[[str], Awaitable[str | None]],
                                  save: Callable[[str, str], Awaitable[Any]]) -> tuple[IdentityManager, bool]:
    """The identity saved under `name`, else a new one saved before it is used; (identity, was it new).

    A damaged record is an error, not a reason to mint a new key: peers would refuse the id under it."""
    raw = await load(name)
    if raw is not None:
        return await identity_from_secret_json(crypto, str(raw)), False
    identity = await IdentityManager.generate(crypto)
    await save(name, identity.to_secret_json())
    return identity, True


# What the panels show ---------------------------------------------------------------
class MessageLog:
    """The most recent messages (kind, sender, time) and a running count, for the log panel and messages/s."""

    def __init__(self, limit: int = LOG_LIMIT) -> None:
        self.recent: collections.deque[tuple[float, str, str]] = collections.deque(maxlen=limit)
        self.total = 0
        self.by_kind: collections.Counter[str] = collections.Counter()

    async def record(self, sender: str, message: SwarmMessage) -> None:
        self.total += 1
        self.by_kind[message.kind.value] += 1
        self.recent.append((time.time() * 1000, message.kind.value, sender))

    def rows(self, n: int = 30) -> list[dict[str, Any]]:
        return [{"t": t, "kind": kind, "sender": sender} for t, kind, sender in list(self.recent)[-n:]][::-1]


class PageAgent:
    """One agent plus what its page shows over time and what its role does in the background."""

    def __init__(self, agent: Any, rng: random.Random | None = None,
                 save_membership: Callable[[str], Awaitable[Any]] | None = None) -> None:
        """`save_membership(json)` keeps an admitted member's certificate and epoch key (IndexedDB in the page)."""
        self.agent = agent
        self.save_membership = save_membership
        self._saved_epoch: int | None = None
        self.invites: collections.deque[Invite] = collections.deque(maxlen=INVITE_ROWS)
        self.log = MessageLog()
        self.curve: collections.deque[float] = collections.deque(maxlen=CURVE_LIMIT)
        self.series: collections.deque[tuple[float, float, int, float | None]] = collections.deque(maxlen=SERIES_LIMIT)
        self.latency_ms: float | None = None
        self._total_at_last_sample = 0
        self.artifact_cids: list[str] = []
        self.rng = rng or random.Random()
        self.env = ChainEnv(length=6)
        self._tasks: list[asyncio.Task] = []
        for kind in MessageKind:
            agent.on(kind, self.log.record)

    def start(self) -> None:
        """Start the samplers and the role's own loop."""
        self._tasks.append(asyncio.create_task(self._every(SAMPLE_EVERY_S, self.sample)))
        self._tasks.append(asyncio.create_task(self._every(PING_EVERY_S, self.measure_latency)))
        if self.save_membership is not None:
            self._tasks.append(asyncio.create_task(self._every(SAMPLE_EVERY_S, self.keep_membership)))
        role = self.agent.config.role.value
        if role == "worker":
            self._tasks.append(asyncio.create_task(self._every(LEARN_EVERY_S, self.learn_episode)))
        elif role == "scout":
            self._tasks.append(asyncio.create_task(self.scout_feed("\n".join(SCOUT_CORPUS), source="corpus")))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._tasks.clear()
        await self.agent.leave()

    @staticmethod
    async def _every(seconds: float, step: Callable[[], Awaitable[Any]]) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await step()
            except Exception as exc:  # one failed step must not end the loop
                log.warning("page agent: %s failed: %s", getattr(step, "__name__", step), exc)

    # Role behaviour ----------------------------------------------------------------
    async def learn_episode(self, max_steps: int = 40, gamma: float = 0.95) -> float:
        """Workers: one epsilon-greedy episode on the built-in corridor, acting on the swarm's best
        actions and folding each step's discounted return into the shared patterns. Exploration
        decays from fully random (0.9 per episode, floor 0.1) so the far goal is found before the
        walk turns greedy. Returns the episode's return."""
        epsilon = max(0.1, 0.9 ** len(self.curve))
        state, path, total = self.env.start, [], 0.0
        for _ in range(max_steps):
            actions = list(self.env.actions(state))
            best = await self.agent.get_best_action(state, actions)
            action = self.rng.choice(actions) if best is None or self.rng.random() < epsilon else best[0]
            step = self.env.step(state, action)
            path.append((state, action, step.reward))
            total += step.reward
            state = step.next_state
            if step.done:
                break
        ret = 0.0
        for s, a, r in reversed(path):
            ret = r + gamma * ret
            await self.agent.learn(s, a, ret)
        self.curve.append(total)
        return total

    async def scout_feed(self, text: str, source: str = "page") -> int:
        """Scouts: store each non-empty line of `text` in the shared memory (once per content)."""
        known = self._own_contents()
        stored = 0
        for line in text.splitlines():
            line = line.strip()
            if line and line not in known:
                await self.agent.store_text(line, metadata={"source": source})
                known.add(line)
                stored += 1
        return stored

    def _own_contents(self) -> set[str]:
        """What this agent already stored (reloaded from IndexedDB too), so a reload feeds nothing twice."""
        contents: set[str] = set()
        since = 0
        while page := self.agent.memory.export_entries(since=since, limit=256):
            contents.update(entry["content"] for entry in page)
            since = page[-1]["seq"]
        return contents

    # Admission (admitted swarms) ---------------------------------------------------------
    def _authority(self) -> Any:
        admission = self.agent.swarm.admission
        return None if admission is None else admission.authority

    async def keep_membership(self) -> bool:
        """Save our certificate and epoch key when the epoch moved (admission, a rekey); True when saved."""
        admission = self.agent.swarm.admission
        if self.save_membership is None or admission is None or not admission.admitted or self._authority() is not None:
            return False
        if admission.epochs.epoch == self._saved_epoch:
            return False
        await self.save_membership(membership_json(self.agent))
        self._saved_epoch = admission.epochs.epoch
        return True

    def _admission_view(self) -> dict[str, Any] | None:
        admission = self.agent.swarm.admission
        if admission is None:
            return None
        authority = admission.authority
        view: dict[str, Any] = {"admin": authority is not None, "epoch": admission.epochs.epoch,
                                "members": self.agent.member_list()}
        if authority is not None:
            view["invites"] = [{"invite_id": i.invite_id, "max_uses": i.max_uses, "expires_at": i.expires_at,
                                "uses_left": authority.ledger.uses_left(i.invite_id)} for i in reversed(self.invites)]
        return view

    # Samplers ------------------------------------------------------------------------
    async def sample(self) -> None:
        """One chart point a second: messages/s since the last point, patterns known, last latency."""
        now = time.time() * 1000
        last = self.series[-1] if self.series else None
        rate = 0.0 if last is None else (self.log.total - self._total_at_last_sample) * 1000 / max(1.0, now - last[0])
        self._total_at_last_sample = self.log.total
        patterns = self.agent.intelligence.get_swarm_stats().total_patterns
        self.series.append((now, round(rate, 2), patterns, self.latency_ms))

    async def measure_latency(self) -> None:
        """A signed ping to one active peer in turn; its round trip is the latency chart's point."""
        active = [row["agent_id"] for row in self.agent.peer_table() if row["status"] == "active"]
        if not active:
            self.latency_ms = None
            return
        peer = active[int(time.time() / PING_EVERY_S) % len(active)]
        try:
            self.latency_ms = round(await self.agent.ping(peer, timeout=2.0) * 1000, 2)
        except (asyncio.TimeoutError, RuntimeError, RejectedInput):
            self.latency_ms = None

    # Views ---------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        agent = self.agent
        now_ms = agent.swarm.runtime.clock.now_ms()
        peers = []
        for row in agent.peer_table():
            hb = row.get("last_heartbeat")
            role = row.get("role")
            peers.append({
                "agent_id": row["agent_id"],
                "role": getattr(role, "value", role),
                "transport": agent.path_to(row["agent_id"]) or getattr(row.get("transport"), "value", row.get("transport")),
                "status": row["status"],
                "last_heartbeat_age_s": None if hb is None else round(max(0, now_ms - hb) / 1000, 1),
            })
        patterns = agent.intelligence.patterns()
        stats = agent.intelligence.get_swarm_stats()
        series = list(self.series)
        tasks = agent.task_table()
        return {
            "joined": True,
            "refusal": agent.refusal,
            "admission": self._admission_view(),
            "agent_id": agent.agent_id,
            "role": agent.config.role.value,
            "capabilities": list(agent.swarm.registration.capabilities),
            "fingerprint": agent.swarm.identity.fingerprint,
            "swarm_id": agent.swarm.swarm_id,
            "peers": peers,
            "log": self.log.rows(),
            "log_total": self.log.total,
            "patterns": [
                {"state": p.state, "action": p.action, "q": round(p.q_value, 4), "visits": p.visits,
                 "confidence": round(p.confidence, 3)}
                for p in sorted(patterns, key=lambda p: (-p.visits, p.state, p.action))[:PATTERN_ROWS]
            ],
            "pattern_stats": {"patterns": stats.total_patterns, "visits": stats.total_visits,
                              "agents": stats.total_agents, "avg_confidence": round(stats.avg_confidence, 3)},
            "curve": list(self.curve),
            "memories": len(agent.memory),
            "embedder": agent.embedder.model_id,
            "series": {
                "t": [p[0] / 1000 for p in series],
                "msgs_per_s": [p[1] for p in series],
                "patterns": [p[2] for p in series],
                "latency_ms": [p[3] for p in series],
            },
            "tasks": tasks,
            "artifacts": self._artifacts_view(tasks),
            "defences": agent.defences(),
        }

    def _artifacts_view(self, tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Artifacts this page stored or its tasks produced, and whether their blocks are held here."""
        cids = [*self.artifact_cids, *(row["output_cid"] for row in tasks if row.get("output_cid"))]
        return [{"cid": cid, "local": self.agent.artifacts.has(cid)} for cid in dict.fromkeys(cids)][-ARTIFACT_ROWS:]

    # The page's buttons ---------------------------------------------------------------
    async def act(self, name: str, args: dict[str, Any]) -> Any:
        """Run one page action by name. Anything the page sends that does not fit an action's
        signature and types is InvalidPageAction (or the agent's own typed error), before any change."""
        handler = getattr(self, f"act_{name}", None) if isinstance(name, str) and name.isidentifier() else None
        if handler is None:
            raise InvalidPageAction(f"unknown action {name!r:.60}")
        if not isinstance(args, dict):
            raise InvalidPageAction(f"{name}: arguments must be an object")
        try:
            inspect.signature(handler).bind(**args)
        except TypeError as exc:
            raise InvalidPageAction(f"{name}: {exc}") from None
        try:
            return await handler(**args)
        except EdgeError:
            raise
        except (TypeError, ValueError, OverflowError) as exc:
            raise InvalidPageAction(f"{name}: {exc}") from exc

    @staticmethod
    def _text(value: Any, what: str, limit: int = 16_384) -> str:
        if not isinstance(value, str) or len(value) > limit:
            raise InvalidPageAction(f"{what} must be a string of at most {limit} characters")
        return value

    @staticmethod
    def _number(value: Any, what: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or value in (float("inf"), float("-inf")):
            raise InvalidPageAction(f"{what} must be a finite number")
        return float(value)

    async def act_create_invite(self, uses: int = 1, hours: float = 1.0) -> dict[str, Any]:
        """Admin only: an invite good for `uses` joins until `hours` from now (the page makes the link)."""
        authority = self._authority()
        if authority is None:
            raise InvalidPageAction("only the admin of an admitted swarm can invite")
        if type(uses) is not int or not 1 <= uses <= MAX_INVITE_USES:
            raise InvalidPageAction(f"uses must be an integer from 1 to {MAX_INVITE_USES}")
        hours = self._number(hours, "hours")
        if not 0 < hours <= MAX_INVITE_HOURS:
            raise InvalidPageAction(f"hours must be in (0, {MAX_INVITE_HOURS}]")
        roles = ("worker", "scout", "specialist", "coordinator", "wasm")
        invite = await authority.create_invite(roles, max_uses=uses, ttl_ms=int(hours * 3600_000))
        self.invites.append(invite)
        return {"token": invite.to_token(), "uses": invite.max_uses, "expires_at": invite.expires_at}

    async def act_remove_member(self, agent_id: str) -> dict[str, Any]:
        """Admin only: revoke a member (relay and members refuse it) and start a new key epoch without it."""
        if self._authority() is None:
            raise InvalidPageAction("only the admin of an admitted swarm can remove members")
        await self.agent.remove_member(self._text(agent_id, "agent_id", limit=64))
        return {"removed": agent_id, "epoch": self.agent.swarm.admission.epochs.epoch}

    async def act_learn(self, state: str, action: str, reward: float) -> dict[str, Any]:
        await self.agent.learn(self._text(state, "state"), self._text(action, "action"), self._number(reward, "reward"))
        await self.agent.sync_patterns()
        return {"ok": True}

    async def act_best_action(self, state: str, actions: list[str] | str) -> dict[str, Any] | None:
        if isinstance(actions, str):
            actions = [a.strip() for a in actions.split(",") if a.strip()]
        if not isinstance(actions, list) or not 1 <= len(actions) <= 256:
            raise InvalidPageAction("actions must be a non-empty list (or comma-separated text) of at most 256")
        best = await self.agent.get_best_action(self._text(state, "state"), [self._text(a, "action") for a in actions])
        return None if best is None else {"action": best[0], "confidence": round(best[1], 3)}

    async def act_store_memory(self, text: str) -> dict[str, Any]:
        text = self._text(text, "text").strip()
        if not text:
            raise InvalidPageAction("nothing to store")
        memory_id = await self.agent.store_text(text, metadata={"source": "page"})
        await self.agent.sync_memories()
        return {"id": memory_id}

    async def act_search_memory(self, query: str, k: int = 5) -> list[dict[str, Any]]:
        if type(k) is not int or not 1 <= k <= 100:
            raise InvalidPageAction("k must be an integer from 1 to 100")
        hits = await self.agent.search_text(self._text(query, "query"), k)
        return [{"id": h.id, "content": h.content, "score": round(h.score, 4), "owner": h.owner,
                 "source": (h.metadata or {}).get("source")} for h in hits]

    async def act_scout_feed(self, text: str) -> dict[str, Any]:
        stored = await self.scout_feed(self._text(text, "text", limit=256 * 1024))
        await self.agent.sync_memories()
        return {"stored": stored}

    async def act_store_artifact(self, text: str) -> dict[str, Any]:
        cid = self.agent.store_artifact(self._text(text, "text", limit=1 << 20).encode())
        self.artifact_cids.append(cid)
        return {"cid": cid}

    async def act_submit_sample_task(self, input: str = "hello from the page", capability: str = "wasm") -> dict[str, Any]:
        """Submit the bundled task-ABI module for members advertising `capability` (a specialist's own
        capability routes it to that specialist); module and input become artifacts the executor fetches."""
        from .tasks.samples import sample_module

        module, data = sample_module(), self._text(input, "input").encode()
        task_id = await self.agent.submit_task(module, data, capability=self._text(capability, "capability").strip() or "wasm")
        self.artifact_cids += [self.agent.store_artifact(module), self.agent.store_artifact(data)]  # same CIDs: content-addressed
        return {"task_id": task_id}

    async def act_wait_receipt(self, task_id: str, timeout: float = 30.0) -> dict[str, Any]:
        """The verified receipt of one of our tasks, with its output fetched (and verified) as text."""
        timeout = self._number(timeout, "timeout")
        if not 0 < timeout <= 120:
            raise InvalidPageAction("timeout must be in (0, 120] seconds")
        receipt = await self.agent.wait_receipt(self._text(task_id, "task_id", limit=200), timeout)
        output = None
        if receipt.output_cid:
            output = (await self.agent.fetch_artifact(receipt.output_cid, timeout=timeout)).decode(errors="replace")
        return {"task_id": receipt.task_id, "executor": receipt.executor,
                "status": getattr(receipt.status, "value", receipt.status), "output_cid": receipt.output_cid,
                "output": output}


_app: PageAgent | None = None


async def start(fragment: dict[str, Any]) -> dict[str, Any]:
    """Create and join the page's agent (once, under Pyodide); returns `snapshot()`."""
    global _app
    if _app is not None:
        return snapshot()
    request = parse_fragment(fragment)
    from .platform.jsffi import js_bridge  # Pyodide only, like the browser links below
    from .transport.browser import join_swarm_browser

    store = js_bridge("edgeIdentity", "web/bridges/identity-idb.js")
    admin_store = js_bridge("edgeAdminState", "web/bridges/admin-idb.js")
    agent, swarm_id = await _new_agent(request, store.load, store.save, admin_store)
    async def save_membership(text: str) -> None:
        await store.save(membership_name(agent.swarm.swarm_id, agent.agent_id), text)

    member = swarm_id is not None and agent.swarm.admission.authority is None
    page = PageAgent(agent, save_membership=save_membership if member else None)
    try:
        await join_swarm_browser(agent, request.relays or None)
    except BaseException:
        await agent.leave()
        raise
    await page.keep_membership()
    page.start()
    _app = page
    return snapshot()


async def _new_agent(request: JoinRequest, load: Callable[[str], Awaitable[str | None]],
                     save: Callable[[str, str], Awaitable[Any]], admin_store: Any = None) -> tuple[Any, str | None]:
    """The page's SwarmAgent for `request` with this browser's identity for that swarm and id, and the admitted
    swarm id (None for an open swarm). A founder's identity is new and saved under the swarm id it makes.
    `admin_store` (load(swarm id), save(swarm id, text)) keeps an admin's state; None keeps it in memory only."""
    from dataclasses import replace

    from .agent import SwarmAgent, SwarmConfig
    from .p2p.keys import swarm_id_for
    from .platform import default_runtime

    crypto = default_runtime().crypto
    caps = role_capabilities(request.role, request.caps)
    config = SwarmConfig(agent_id=request.agent_id, role=request.role, swarm_key=request.swarm_key, capabilities=caps)
    if request.mode == "open":
        identity, _ = await load_or_create_identity(crypto, identity_name(swarm_id_for(request.swarm_key), request.agent_id),
                                                    load, save)
        return await SwarmAgent.new(config, identity=identity), None
    if request.mode == "invite":
        swarm_id = request.invite.swarm
        identity, _ = await load_or_create_identity(crypto, identity_name(swarm_id, request.agent_id), load, save)
        return await SwarmAgent.new(replace(config, invite=request.invite.to_token()), identity=identity), swarm_id
    if request.mode == "found":
        identity = await IdentityManager.generate(crypto)
        swarm_id = admitted_swarm_id(identity.ed25519_public)
        await save(identity_name(swarm_id, request.agent_id), identity.to_secret_json())
        return await SwarmAgent.new(config, await _admin_swarm(identity, request.agent_id, caps, admin_store)), swarm_id
    swarm_id = request.swarm_id
    raw = await load(identity_name(swarm_id, request.agent_id))
    if raw is None:
        raise NotAdmitted(f"this browser holds no identity for {request.agent_id!r} in {swarm_id}: join with an invite link")
    identity = await identity_from_secret_json(crypto, str(raw))
    if admitted_swarm_id(identity.ed25519_public) == swarm_id:  # the founder, back: the same swarm's admin again
        return await SwarmAgent.new(config, await _admin_swarm(identity, request.agent_id, caps, admin_store)), swarm_id
    saved = await load(membership_name(swarm_id, request.agent_id))
    if saved is None:
        raise NotAdmitted(f"{request.agent_id!r} kept no certificate of {swarm_id}: join with a new invite link")
    swarm = await resume_membership(identity, request.agent_id, caps, str(saved))
    return await SwarmAgent.new(config, swarm), swarm_id


async def _admin_swarm(identity: IdentityManager, agent_id: str, caps: tuple[str, ...], admin_store: Any) -> Any:
    """The admitted swarm `identity` is admin of: as its saved admin state says (AdminStateError for one that
    does not check out, rather than a new key over it), or founded now and saved."""
    from .p2p.admin_store import open_admin_swarm
    from .p2p.swarm import P2PSwarm

    if admin_store is None:
        return await P2PSwarm.found_admitted(agent_id, caps, identity=identity)
    swarm_id = admitted_swarm_id(identity.ed25519_public)
    return await open_admin_swarm(identity, caps, lambda: admin_store.load(swarm_id),
                                  lambda text: admin_store.save(swarm_id, text), agent_id=agent_id)


def snapshot() -> dict[str, Any]:
    """This agent, its peers and the panels' data, JSON-friendly; {"joined": False} before start()."""
    return {"joined": False} if _app is None else _app.snapshot()


async def act(name: str, args_json: str) -> Any:
    """One page action (see PageAgent.act_*) with JSON arguments."""
    if _app is None:
        raise RuntimeError("not joined yet")
    return await _app.act(name, json.loads(args_json))


async def leave() -> None:
    """Leave the swarm (the page is closing or a test ends)."""
    global _app
    if _app is not None:
        page, _app = _app, None
        await page.stop()
